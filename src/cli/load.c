/* The load generator of `ftrpc bench` and `ftrpc demo` (see load.h).
 *
 * Exactly-once accounting: every call counted in `started` reaches record() exactly once, either
 * from its completion callback or, when ftrpc_call_async refuses it, right away. The caller's
 * thread learns the end from `live`: the closed-loop chains still running (a chain ends when its
 * callback cannot claim another call), or the calls in flight in the open loop. The decrement of
 * `live` is each callback's last touch of the run, so the run may be freed once it reads 0.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "load.h"

struct ft_load {
    ft_load_opts opts;
    ft_load_stats *stats;
    ftrpc_buf *request;
    int64_t deadline_ns; /* duration mode: no call starts after it */
    _Atomic int stopping;
    _Atomic long live;
};

typedef struct call_ctx {
    ft_load *load;
    int64_t start_ns;
} call_ctx;

int64_t ft_load_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ns(int64_t ns)
{
    if (ns <= 0) return;
    struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
    nanosleep(&ts, NULL);
}

int ft_load_stats_init(ft_load_stats *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    int rc = ftrpc_histogram_new(&s->hist);
    if (rc == 0) rc = ftrpc_histogram_new(&s->ok_hist);
    return rc;
}

void ft_load_stats_fini(ft_load_stats *s)
{
    ftrpc_histogram_free(s->hist);
    ftrpc_histogram_free(s->ok_hist);
    s->hist = s->ok_hist = NULL;
    pthread_mutex_destroy(&s->lock);
}

double ft_load_elapsed(const ft_load_stats *s)
{
    int64_t end = s->end_ns ? s->end_ns : ft_load_now_ns();
    return (double)(end - s->start_ns) / 1e9;
}

ft_load_counts ft_load_counts_get(const ft_load_stats *s)
{
    /* the outcomes first: record() counts a call in `done` before its outcome, so no outcome read
     * here belongs to a call that the later read of `done` misses */
    ft_load_counts c = {.ok = atomic_load(&s->ok), .errors = atomic_load(&s->errors)};
    c.calls = atomic_load(&s->done);
    return c;
}

long ft_load_answers_from(const ft_load_stats *s, const char *addr)
{
    /* the lock is not part of the figures the const promises to leave alone */
    pthread_mutex_t *lock = (pthread_mutex_t *)&s->lock;
    long n = 0;
    pthread_mutex_lock(lock);
    for (size_t i = 0; i < s->nendpoints; i++)
        if (!strcmp(s->endpoints[i].addr, addr)) n = s->endpoints[i].count;
    pthread_mutex_unlock(lock);
    return n;
}

void ft_load_stop(ft_load *load)
{
    atomic_store(&load->stopping, 1);
}

/* Takes one call from the run's allowance; 0 when the run is over. */
static int claim(ft_load *l)
{
    if (atomic_load(&l->stopping)) return 0;
    if (l->opts.count > 0) {
        long s = atomic_load(&l->stats->started);
        do {
            if (s >= l->opts.count) return 0;
        } while (!atomic_compare_exchange_weak(&l->stats->started, &s, s + 1));
        return 1;
    }
    if (ft_load_now_ns() >= l->deadline_ns) return 0;
    atomic_fetch_add(&l->stats->started, 1);
    return 1;
}

static void count_code(ft_load_stats *s, int code)
{
    pthread_mutex_lock(&s->lock);
    size_t i = 0;
    while (i < s->ncodes && s->codes[i].code != code)
        i++;
    if (i == s->ncodes && s->ncodes < FT_LOAD_MAX_CODES) {
        s->codes[i].code = code;
        s->codes[i].count = 0;
        s->ncodes++;
    }
    if (i < s->ncodes) s->codes[i].count++;
    pthread_mutex_unlock(&s->lock);
}

static void count_endpoint(ft_load_stats *s, const char *addr, int64_t now_ns)
{
    pthread_mutex_lock(&s->lock);
    size_t i = 0;
    while (i < s->nendpoints && strcmp(s->endpoints[i].addr, addr) != 0)
        i++;
    if (i == s->nendpoints && s->nendpoints < FT_LOAD_MAX_ENDPOINTS) {
        snprintf(s->endpoints[i].addr, sizeof s->endpoints[i].addr, "%s", addr);
        s->endpoints[i].count = 0;
        s->endpoints[i].first_ms = (now_ns - s->start_ns) / 1000000;
        s->nendpoints++;
    }
    if (i < s->nendpoints) s->endpoints[i].count++;
    pthread_mutex_unlock(&s->lock);
}

static void record(ft_load *l, int64_t start_ns, const ftrpc_result *r, int refused_code)
{
    ft_load_stats *s = l->stats;
    int64_t now = ft_load_now_ns();
    ftrpc_histogram_record(s->hist, (now - start_ns) / 1000);
    if (r && r->code == 0) ftrpc_histogram_record(s->ok_hist, (now - start_ns) / 1000);
    /* before the outcome: ft_load_counts_get relies on it */
    atomic_fetch_add(&s->done, 1);
    if (r) {
        atomic_fetch_add(&s->attempts, r->attempts);
        atomic_fetch_add(&s->backups, r->backups);
        /* per call, so that a call that never got an attempt out cannot hide another's retry */
        if (r->attempts > 1 + r->backups)
            atomic_fetch_add(&s->retries, r->attempts - 1 - r->backups);
        if (r->backup_won) atomic_fetch_add(&s->backup_wins, 1);
        if (r->backups_refused) atomic_fetch_add(&s->backups_refused, 1);
        if (r->from_fallback) atomic_fetch_add(&s->fallbacks, 1);
        if (r->attempts == 0 && r->code != 0) atomic_fetch_add(&s->unsent, 1);
        if (r->kind == FTRPC_RESULT_OK) {
            atomic_fetch_add(&s->ok, 1);
            if (r->endpoint[0]) count_endpoint(s, r->endpoint, now);
        } else {
            count_code(s, r->code);
            atomic_fetch_add(&s->errors, 1);
        }
    } else {
        count_code(s, refused_code);
        atomic_fetch_add(&s->errors, 1);
    }
}

static void on_closed_done(ftrpc_result *result, void *arg);

/* Starts the chain's next call; on a refusal counts it and tries again. 0 when the chain ended
 * (nothing was started), 1 when a call is out. */
static int chain_next(ft_load *l)
{
    while (claim(l)) {
        call_ctx *c = malloc(sizeof *c);
        int rc = FTRPC_ENOMEM;
        int64_t start = ft_load_now_ns();
        if (c) {
            *c = (call_ctx){.load = l, .start_ns = start};
            rc = ftrpc_call_async(l->opts.client, l->opts.service, l->opts.method, l->request, NULL,
                                  l->opts.call_opts, on_closed_done, c, NULL);
            if (rc == 0) return 1;
            free(c);
        }
        record(l, start, NULL, rc);
    }
    return 0;
}

static void on_closed_done(ftrpc_result *result, void *arg)
{
    call_ctx *c = arg;
    ft_load *l = c->load;
    record(l, c->start_ns, result, 0);
    free(c);
    if (!chain_next(l)) atomic_fetch_sub(&l->live, 1); /* last touch of l */
}

static void on_open_done(ftrpc_result *result, void *arg)
{
    call_ctx *c = arg;
    ft_load *l = c->load;
    record(l, c->start_ns, result, 0);
    free(c);
    atomic_fetch_sub(&l->live, 1); /* last touch of l */
}

/* One blocking caller: claims and makes calls until the run is over. */
static void *blocking_caller(void *arg)
{
    ft_load *l = arg;
    while (claim(l)) {
        ftrpc_result r;
        int64_t start = ft_load_now_ns();
        ftrpc_call(l->opts.client, l->opts.service, l->opts.method, l->request, NULL,
                   l->opts.call_opts, &r);
        record(l, start, &r, 0);
        ftrpc_result_fini(&r);
    }
    atomic_fetch_sub(&l->live, 1); /* last touch of l */
    return NULL;
}

static void maybe_tick(ft_load *l, int64_t *next_tick)
{
    int64_t now = ft_load_now_ns();
    if (now < *next_tick) return;
    *next_tick = now + 5000000;
    if (l->opts.tick) l->opts.tick(l, l->stats, l->opts.tick_arg);
}

static void run_open(ft_load *l)
{
    int64_t start = l->stats->start_ns, next_tick = 0;
    double period_ns = 1e9 / l->opts.rate;
    for (long i = 0;; i++) {
        int64_t due = start + (int64_t)((double)i * period_ns);
        for (;;) {
            maybe_tick(l, &next_tick);
            int64_t now = ft_load_now_ns();
            if (now >= due && atomic_load(&l->live) < l->opts.concurrency) break;
            if (atomic_load(&l->stopping)) break;
            int64_t wait = due - now;
            sleep_ns(wait > 2000000 ? 2000000 : wait > 0 ? wait : 100000);
        }
        if (!claim(l)) break;
        call_ctx *c = malloc(sizeof *c);
        int rc = FTRPC_ENOMEM;
        if (c) {
            *c = (call_ctx){.load = l,
                            .start_ns = l->opts.latency_from_send ? ft_load_now_ns() : due};
            atomic_fetch_add(&l->live, 1);
            rc = ftrpc_call_async(l->opts.client, l->opts.service, l->opts.method, l->request, NULL,
                                  l->opts.call_opts, on_open_done, c, NULL);
            if (rc == 0) continue;
            atomic_fetch_sub(&l->live, 1);
            free(c);
        }
        record(l, due, NULL, rc);
    }
}

int ft_load_run(const ft_load_opts *opts, ft_load_stats *stats)
{
    if (!opts->client || (opts->concurrency < 1 && opts->threads < 1) || opts->threads < 0 ||
        (opts->threads > 0 && opts->rate > 0) || (opts->count <= 0 && opts->duration_s <= 0))
        return FTRPC_EINVAL;
    ft_load *l = calloc(1, sizeof *l);
    if (!l) return FTRPC_ENOMEM;
    l->opts = *opts;
    l->stats = stats;
    l->request = ftrpc_buf_new();
    if (opts->request) {
        ftrpc_buf_append_buf(l->request, opts->request);
    } else if (opts->payload > 0) {
        char *p = malloc(opts->payload);
        if (p) {
            for (size_t i = 0; i < opts->payload; i++)
                p[i] = (char)('a' + i % 26);
            ftrpc_buf_append(l->request, p, opts->payload);
            free(p);
        }
    }
    stats->start_ns = ft_load_now_ns();
    l->deadline_ns = stats->start_ns + (int64_t)(opts->duration_s * 1e9);
    pthread_t *callers = NULL;
    int ncallers = 0;
    if (opts->threads > 0) {
        /* the callers are joined below, after the last has left the run (live 0) */
        callers = calloc((size_t)opts->threads, sizeof *callers);
        atomic_store(&l->live, opts->threads);
        for (int i = 0; i < opts->threads; i++) {
            if (callers && pthread_create(&callers[ncallers], NULL, blocking_caller, l) == 0)
                ncallers++;
            else
                atomic_fetch_sub(&l->live, 1);
        }
    } else if (opts->rate > 0) {
        run_open(l);
    } else {
        atomic_store(&l->live, opts->concurrency);
        for (int i = 0; i < opts->concurrency; i++)
            if (!chain_next(l)) atomic_fetch_sub(&l->live, 1);
    }
    int64_t next_tick = 0;
    while (atomic_load(&l->live) > 0) {
        maybe_tick(l, &next_tick);
        sleep_ns(1000000);
    }
    stats->end_ns = ft_load_now_ns();
    for (int i = 0; i < ncallers; i++)
        pthread_join(callers[i], NULL);
    free(callers);
    if (opts->threads > 0 && ncallers == 0) { /* not one caller could start */
        ftrpc_buf_free(l->request);
        free(l);
        return FTRPC_ENOMEM;
    }
    if (opts->tick) opts->tick(l, stats, opts->tick_arg);
    ftrpc_buf_free(l->request);
    free(l);
    return 0;
}
