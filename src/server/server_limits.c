/* Concurrency limits of a server, per method and server-wide (docs/overload.md): a count of the
 * calls admitted under a limit, the admission decision, and the limiter state machine
 * (concurrency_limiter.c) fed with every finished call, behind one lock per limit.
 *
 * Invariants: `inflight` counts exactly the calls that ft_limit_enter admitted with 1 and whose
 * ft_limit_leave has not run; a limit changed while calls run applies to the calls admitted after
 * the change (the calls admitted without a limit are not counted by it). The limiter's figures
 * are read lock-free from the atomics it publishes after each window.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "server/server_internal.h"

/* A call admitted by the timeout limiter waits at most this many others (brpc's
 * timeout_cl_max_concurrency) and is taken to have this deadline when it carries none
 * (timeout_cl_default_timeout_ms). */
enum { TIMEOUT_LIMITER_CAP = 100, TIMEOUT_LIMITER_DEFAULT_MS = 500 };

static int value_valid(int value)
{
    return value >= -1 || value == FTRPC_CONCURRENCY_AUTO || value == FTRPC_CONCURRENCY_TIMEOUT;
}

static int limited(int value)
{
    return value > 0 || value == FTRPC_CONCURRENCY_AUTO || value == FTRPC_CONCURRENCY_TIMEOUT;
}

/* Resets the state machine for `value` and publishes its figures. Under l->lock. */
static void restart_locked(ft_limit *l, int value, int64_t now_ns)
{
    ft_limiter_params p = {.min_max = l->floor};
    ft_limiter_init(&l->sm, &p, now_ns);
    atomic_store_explicit(&l->auto_max, l->sm.max_concurrency, memory_order_relaxed);
    atomic_store_explicit(&l->avg_latency_ns, l->sm.avg_latency_ns, memory_order_relaxed);
    atomic_store_explicit(&l->value, value, memory_order_release);
}

int ft_limit_init(ft_limit *l, int value, int floor)
{
    if (!value_valid(value)) return FTRPC_EINVAL;
    atomic_init(&l->inflight, 0);
    atomic_init(&l->value, 0);
    atomic_init(&l->auto_max, 0);
    atomic_init(&l->avg_latency_ns, 0);
    l->floor = floor > 0 ? floor : 1;
    pthread_mutex_init(&l->lock, NULL);
    restart_locked(l, value, ft_now_ns());
    return 0;
}

void ft_limit_fini(ft_limit *l)
{
    pthread_mutex_destroy(&l->lock);
}

int ft_limit_set(ft_limit *l, int value)
{
    if (!value_valid(value)) return FTRPC_EINVAL;
    pthread_mutex_lock(&l->lock);
    restart_locked(l, value, ft_now_ns());
    pthread_mutex_unlock(&l->lock);
    return 0;
}

int ft_limit_value(const ft_limit *l)
{
    return atomic_load_explicit(&((ft_limit *)l)->value, memory_order_acquire);
}

int ft_limit_effective(const ft_limit *l)
{
    ft_limit *m = (ft_limit *)l; /* atomics: reading writes nothing */
    int v = ft_limit_value(l);
    if (v == FTRPC_CONCURRENCY_AUTO)
        return atomic_load_explicit(&m->auto_max, memory_order_relaxed);
    if (v == FTRPC_CONCURRENCY_TIMEOUT) return TIMEOUT_LIMITER_CAP;
    return v > 0 ? v : 0;
}

int ft_limit_enter(ft_limit *l, int32_t timeout_ms, int32_t *retry_after_ms)
{
    int v = atomic_load_explicit(&l->value, memory_order_acquire);
    if (!limited(v)) return 0;
    int running = atomic_fetch_add_explicit(&l->inflight, 1, memory_order_relaxed);
    int64_t avg = atomic_load_explicit(&l->avg_latency_ns, memory_order_relaxed);
    if (v == FTRPC_CONCURRENCY_TIMEOUT) {
        int64_t deadline_ns =
            (int64_t)(timeout_ms > 0 ? timeout_ms : TIMEOUT_LIMITER_DEFAULT_MS) * FT_NS_PER_MS;
        /* one call alone always runs: it is how the average is measured again (brpc) */
        if (running == 0) return 1;
        if (avg >= deadline_ns) {
            atomic_fetch_sub_explicit(&l->inflight, 1, memory_order_relaxed);
            *retry_after_ms = -1; /* at this latency the call cannot finish in time anywhere */
            return -1;
        }
        if (running < TIMEOUT_LIMITER_CAP) return 1;
    } else {
        int max = v > 0 ? v : atomic_load_explicit(&l->auto_max, memory_order_relaxed);
        if (running < max) return 1;
    }
    atomic_fetch_sub_explicit(&l->inflight, 1, memory_order_relaxed);
    *retry_after_ms = ft_limiter_retry_after_ms(avg, running);
    return -1;
}

void ft_limit_leave(ft_limit *l)
{
    atomic_fetch_sub_explicit(&l->inflight, 1, memory_order_relaxed);
}

void ft_limit_on_response(ft_limit *l, int ok, int64_t latency_ns, int64_t now_ns)
{
    pthread_mutex_lock(&l->lock);
    if (ft_limiter_on_response(&l->sm, ok, latency_ns, now_ns)) {
        atomic_store_explicit(&l->auto_max, l->sm.max_concurrency, memory_order_relaxed);
        atomic_store_explicit(&l->avg_latency_ns, l->sm.avg_latency_ns, memory_order_relaxed);
    }
    pthread_mutex_unlock(&l->lock);
}

int ftrpc_max_concurrency_parse(const char *text, int *out)
{
    if (!text || !out) return FTRPC_EINVAL;
    if (!strcmp(text, "auto")) {
        *out = FTRPC_CONCURRENCY_AUTO;
    } else if (!strcmp(text, "timeout")) {
        *out = FTRPC_CONCURRENCY_TIMEOUT;
    } else if (!strcmp(text, "none") || !strcmp(text, "unlimited")) {
        *out = 0;
    } else {
        char *end;
        long v = strtol(text, &end, 10);
        if (end == text || *end || v < 0 || v > 1000000) return FTRPC_EINVAL;
        *out = (int)v;
    }
    return 0;
}

int ft_server_default_workers(const ftrpc_server *s)
{
    if (s->opts.worker_threads > 0) return s->opts.worker_threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN); /* what ft_workpool_start makes */
    return n > 0 ? (int)n : 1;
}

static ft_limit *find_limit(ftrpc_server *s, const char *service, const char *method)
{
    if (!service && !method) return &s->limit;
    if (!service || !method) return NULL;
    for (size_t i = 0; i < s->nmethods; i++)
        if (!strcmp(s->methods[i]->service, service) && !strcmp(s->methods[i]->method, method))
            return &s->methods[i]->limit;
    return NULL;
}

int ftrpc_server_set_max_concurrency(ftrpc_server *s, const char *service, const char *method,
                                     int value)
{
    if (!s || !value_valid(value)) return FTRPC_EINVAL;
    ft_limit *l = find_limit(s, service, method);
    if (!l) return service && method ? FTRPC_ENOMETHOD : FTRPC_EINVAL;
    return ft_limit_set(l, value);
}

int ftrpc_server_get_max_concurrency(const ftrpc_server *s, const char *service, const char *method,
                                     int *value, int *effective)
{
    if (!s) return FTRPC_EINVAL;
    ft_limit *l = find_limit((ftrpc_server *)s, service, method);
    if (!l) return service && method ? FTRPC_ENOMETHOD : FTRPC_EINVAL;
    if (value) *value = ft_limit_value(l);
    if (effective) *effective = ft_limit_effective(l);
    return 0;
}
