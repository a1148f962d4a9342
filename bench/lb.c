/* Selection cost of every load balancer (src/cluster/lb.h) at 10, 100 and 1,000 endpoints, beside a
 * baseline measured in the same run: one ft_rand_below draw plus one array read, the least any
 * randomised pick can do. Printed: ns per pick and the ratio to the baseline.
 *
 * Each cell runs for about cell_ms of wall time on one thread (the best of 3 runs of a third each),
 * with a health predicate that reads a byte array (as the health module's will read a state) and,
 * for chash, a fresh key hash per pick drawn from a table of 4,096 (so the ring search is not
 * always served from the same cache line). A second table repeats the picks on a bad day: 10 % of
 * the endpoints unusable and 2 excluded. Then the one-off costs: building a balancer (the chash
 * Maglev table, the wrr schedule), and rebuilding a whole cluster (ft_cluster_build: endpoints,
 * health set, balancer) after one of 1,000 endpoints left, the view change of a big service; the
 * target is under 1 ms (issue #26), printed PASS or FAIL.
 *
 * Last, churn: one thread makes "calls" (take the current cluster under the client's lock, one
 * ft_lb_select, release it: what a call does before its IO) and times each, while another thread,
 * in alternate phases, does nothing or republishes the cluster every 100 ms with one endpoint
 * joining or leaving (as the naming watch thread does, off the IO threads). The row compares the
 * calls' p99 without and with churn, same run, phases interleaved; PASS when the ratio is at most
 * 1.25 (the figure is tens of ns; the phases share the machine's noise).
 *
 * Usage: bench_lb [cell_ms | --quick]   (default 60) */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/hash.h"
#include "cluster/cluster.h"
#include "cluster/lb.h"
#include "naming/naming_view.h"

#define MAX_N 1000
#define N_KEYS 4096
#define REPEATS 3

static const char *const names[] = {"random", "rr", "wrr", "wrandom", "chash", "p2c", "priority"};
#define N_NAMES (sizeof(names) / sizeof(names[0]))
static const size_t sizes[] = {10, 100, 1000};
#define N_SIZES (sizeof(sizes) / sizeof(sizes[0]))

static ft_lb_endpoint eps[MAX_N];
static char addrs[MAX_N][64];
static _Atomic int64_t ewma[MAX_N];
static atomic_int inflight[MAX_N];
static unsigned char up[MAX_N];
static uint64_t keys[N_KEYS];
static int64_t cell_ns = 60 * FT_NS_PER_MS;
static volatile size_t sink;

static int is_up(void *arg, size_t index)
{
    return ((const unsigned char *)arg)[index];
}

static void setup(void)
{
    ft_rand r;
    ft_rand_seed(&r, 1);
    for (size_t i = 0; i < MAX_N; i++) {
        snprintf(addrs[i], sizeof(addrs[i]), "10.%zu.%zu.%zu:8000", i >> 16, (i >> 8) & 255,
                 i & 255);
        atomic_init(&ewma[i], 500 + (int64_t)ft_rand_below(&r, 1000));
        atomic_init(&inflight[i], (int)ft_rand_below(&r, 8));
        up[i] = 1;
        eps[i] = (ft_lb_endpoint){
            .id = &eps[i],
            .addr = addrs[i],
            .weight = 100 * (uint32_t)(1 + i % 3),
            .ewma_latency_us = &ewma[i],
            .inflight = &inflight[i],
        };
    }
    for (size_t k = 0; k < N_KEYS; k++)
        keys[k] = ft_hash64(&k, sizeof(k), 0);
}

#define BATCH 4096

/* What one timed cell runs: BATCH picks (or baseline steps), returning a value to keep them live.
 */
typedef struct cell {
    ft_lb *lb;       /* NULL: the baseline */
    ft_lb_pick *req; /* the balancer's request; for the baseline, its rng and nothing else */
    size_t n;
} cell;

static size_t run_batch(const cell *c)
{
    size_t acc = 0;
    if (c->lb == NULL) {
        /* the floor: one bounded draw and one array read, plus the key load the picks do */
        for (int i = 0; i < BATCH; i++) {
            size_t idx = (size_t)ft_rand_below(c->req->rng, c->n);
            acc += up[idx] + idx + (size_t)(keys[(size_t)i & (N_KEYS - 1)] & 1);
        }
        return acc;
    }
    for (int i = 0; i < BATCH; i++) {
        size_t out = 0;
        c->req->key_hash = keys[(size_t)i & (N_KEYS - 1)];
        if (ft_lb_select(c->lb, c->req, &out) != 0) {
            fprintf(stderr, "bench_lb: %s: select failed\n", ft_lb_name(c->lb));
            exit(1);
        }
        acc += out;
    }
    return acc;
}

/* ns per pick: the best of REPEATS runs of cell_ns / REPEATS each (on shared cores the minimum is
 * the figure least disturbed by other processes). */
static double time_cell(const cell *c)
{
    double best = 0;
    for (int r = 0; r < REPEATS; r++) {
        size_t acc = 0;
        long picks = 0;
        int64_t start = ft_now_ns(), now;
        do {
            acc += run_batch(c);
            picks += BATCH;
            now = ft_now_ns();
        } while (now - start < cell_ns / REPEATS);
        sink = acc;
        double t = (double)(now - start) / (double)picks;
        best = (r == 0 || t < best) ? t : best;
    }
    return best;
}

static void run_table(const char *title, int bad_day)
{
    double base[N_SIZES], cost[N_NAMES][N_SIZES];
    ft_rand rng;
    ft_rand_seed(&rng, 42);
    for (size_t s = 0; s < N_SIZES; s++) {
        size_t n = sizes[s];
        memset(up, 1, sizeof(up));
        size_t excluded[2] = {1, 2};
        if (bad_day)
            for (size_t i = 0; i < n; i += 10)
                up[i + 5 < n ? i + 5 : i] = 0;
        ft_lb_pick base_req = {.rng = &rng};
        base[s] = time_cell(&(cell){.req = &base_req, .n = n});
        for (size_t k = 0; k < N_NAMES; k++) {
            ft_lb *lb = NULL;
            if (ft_lb_new(names[k], eps, n, NULL, &lb) != 0) {
                fprintf(stderr, "bench_lb: cannot build %s\n", names[k]);
                exit(1);
            }
            ft_lb_pick req = {.usable = is_up, .usable_arg = up, .rng = &rng, .has_key = 1};
            if (bad_day) {
                req.excluded = excluded;
                req.n_excluded = 2;
            }
            cost[k][s] = time_cell(&(cell){.lb = lb, .req = &req, .n = n});
            ft_lb_release(lb);
        }
    }
    printf("\n%s\n", title);
    printf("| balancer | N=10 ns | ratio | N=100 ns | ratio | N=1000 ns | ratio |\n");
    printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    printf("| baseline (draw + index) | %.1f | 1.0 | %.1f | 1.0 | %.1f | 1.0 |\n", base[0], base[1],
           base[2]);
    for (size_t k = 0; k < N_NAMES; k++) {
        printf("| %s |", names[k]);
        for (size_t s = 0; s < N_SIZES; s++)
            printf(" %.1f | %.1f |", cost[k][s], cost[k][s] / base[s]);
        printf("\n");
    }
}

static int64_t cpu_now_ns(void);

static void run_build_costs(void)
{
    printf("\nOne-off costs (not per pick), CPU time\n");
    printf("| operation | N=10 CPU us | N=100 CPU us | N=1000 CPU us |\n");
    printf("| --- | ---: | ---: | ---: |\n");
    for (size_t k = 0; k < N_NAMES; k++) {
        printf("| ft_lb_new(\"%s\") + release |", names[k]);
        for (size_t s = 0; s < N_SIZES; s++) {
            int reps = 0;
            int64_t start = ft_now_ns(), cpu_start = cpu_now_ns(), now;
            do {
                ft_lb *lb = NULL;
                if (ft_lb_new(names[k], eps, sizes[s], NULL, &lb) != 0) exit(1);
                ft_lb_release(lb);
                reps++;
                now = ft_now_ns();
            } while (now - start < cell_ns / 4);
            printf(" %.1f |", (double)(cpu_now_ns() - cpu_start) / reps / 1000.0);
        }
        printf("\n");
    }
}

static double load_average(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

/* ---- cluster rebuilds and churn ---- */

static ft_cluster_endpoint *bench_ep_make(const ft_endpoint *spec, void *arg)
{
    (void)spec;
    (void)arg;
    return calloc(1, sizeof(ft_cluster_endpoint));
}

static void bench_ep_destroy(ft_cluster_endpoint *ep, void *arg)
{
    (void)arg;
    free(ep);
}

static const ft_cluster_endpoint_ops bench_ep_ops = {.make = bench_ep_make,
                                                     .destroy = bench_ep_destroy};

/* The first n of the bench's endpoints, without endpoint `skip` (SIZE_MAX: none). */
static ft_naming_snapshot *snapshot_of(size_t n, size_t skip, uint64_t version)
{
    ft_naming_snapshot *s = calloc(1, sizeof(*s) + n * sizeof(ft_endpoint));
    if (!s) exit(1);
    atomic_init(&s->refs, 1);
    s->version = version;
    for (size_t i = 0; i < n; i++) {
        if (i == skip) continue;
        ft_endpoint *e = &s->eps[s->n++];
        snprintf(e->addr, sizeof e->addr, "%s", addrs[i]);
        e->weight = eps[i].weight;
    }
    return s;
}

static ft_cluster *build_cluster(const char *lb, const ft_naming_snapshot *snap,
                                 const ft_cluster *prev)
{
    ft_cluster_options co = {.lb = lb, .nshards = 1, .ops = &bench_ep_ops};
    ft_cluster *cl = ft_cluster_build(&co, snap, prev);
    if (!cl) {
        fprintf(stderr, "bench_lb: ft_cluster_build(%s) failed\n", lb);
        exit(1);
    }
    return cl;
}

static const char *const rebuild_names[] = {"chash", "wrr", "p2c"};
#define N_REBUILD (sizeof(rebuild_names) / sizeof(rebuild_names[0]))
#define REBUILD_TARGET_US 1000.0

/* CPU us (this thread's CPU time, which other processes on the shared machine do not inflate as
 * they do wall time) per ft_cluster_build of 1,000 endpoints from the previous cluster, one
 * endpoint leaving or joining in turn: the best of REPEATS means. */
static int64_t cpu_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double time_rebuild(const char *lb)
{
    ft_naming_snapshot *full = snapshot_of(MAX_N, SIZE_MAX, 1), *less = snapshot_of(MAX_N, 500, 2);
    ft_cluster *cur = build_cluster(lb, full, NULL);
    double best = 0;
    for (int r = 0; r < REPEATS; r++) {
        int reps = 0;
        int64_t start = ft_now_ns(), cpu_start = cpu_now_ns(), now;
        do {
            ft_cluster *next = build_cluster(lb, reps % 2 ? full : less, cur);
            ft_cluster_release(cur);
            cur = next;
            reps++;
            now = ft_now_ns();
        } while (now - start < cell_ns / 2);
        double us = (double)(cpu_now_ns() - cpu_start) / reps / 1000.0;
        best = (r == 0 || us < best) ? us : best;
    }
    ft_cluster_release(cur);
    free(full);
    free(less);
    return best;
}

static void run_rebuild_costs(void)
{
    printf("\nView change at N=1000: ft_cluster_build from the previous cluster, one endpoint "
           "leaving or joining (load average %.2f)\n",
           load_average());
    printf("| balancer | CPU us per rebuild | target us | result |\n");
    printf("| --- | ---: | ---: | --- |\n");
    for (size_t k = 0; k < N_REBUILD; k++) {
        double us = time_rebuild(rebuild_names[k]);
        printf("| %s | %.1f | %.0f | %s (ratio to target %.2f) |\n", rebuild_names[k], us,
               REBUILD_TARGET_US, us <= REBUILD_TARGET_US ? "PASS" : "FAIL",
               us / REBUILD_TARGET_US);
    }
}

#define CHURN_PERIOD_MS 100
#define CHURN_MAX_SAMPLES (1 << 23)
#define CHURN_TARGET_RATIO 1.25
/* Alternating quiet and churn phases: many short ones, so that the machine's drift (other
 * processes come and go) falls on both sides alike. */
#define CHURN_PHASES 8

typedef struct churn {
    const char *lb;
    pthread_mutex_t lock; /* guards cur, as the client's cluster_lock */
    ft_cluster *cur;
    ft_naming_snapshot *full, *less;
    atomic_int phase_churn; /* 1: the churn thread republishes every CHURN_PERIOD_MS */
    atomic_int stop;
    long rebuilds;
    int64_t rebuild_ns_max;
} churn;

static void *churn_main(void *arg)
{
    churn *ch = arg;
    int leave = 1;
    int64_t next = ft_now_ns();
    while (!atomic_load(&ch->stop)) {
        int64_t now = ft_now_ns();
        if (now < next || !atomic_load(&ch->phase_churn)) {
            struct timespec ts = {0,
                                  5 * 1000 * 1000}; /* polls the phase; never in the timed path */
            nanosleep(&ts, NULL);
            continue;
        }
        next = now + CHURN_PERIOD_MS * FT_NS_PER_MS;
        pthread_mutex_lock(&ch->lock);
        ft_cluster *prev = ch->cur;
        ft_cluster_retain(prev);
        pthread_mutex_unlock(&ch->lock);
        int64_t t0 = ft_now_ns();
        ft_cluster *cl = build_cluster(ch->lb, leave ? ch->less : ch->full, prev);
        int64_t took = ft_now_ns() - t0;
        if (took > ch->rebuild_ns_max) ch->rebuild_ns_max = took;
        ch->rebuilds++;
        leave = !leave;
        pthread_mutex_lock(&ch->lock);
        ch->cur = cl;
        pthread_mutex_unlock(&ch->lock);
        ft_cluster_release(prev); /* the lock's reference */
        ft_cluster_release(prev); /* ours */
    }
    return NULL;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

static int32_t samples[2][CHURN_MAX_SAMPLES];

/* The calls of one phase, appended to samples[which] from *count on. */
static void churn_calls(churn *ch, int64_t ns, int32_t *out, size_t *count)
{
    ft_rand rng;
    ft_rand_seed(&rng, 99);
    ft_lb_pick req = {.rng = &rng, .has_key = 1};
    int64_t end = ft_now_ns() + ns;
    for (size_t k = 0; ft_now_ns() < end && *count < CHURN_MAX_SAMPLES; k++) {
        req.key_hash = keys[k & (N_KEYS - 1)];
        int64_t t0 = ft_now_ns();
        pthread_mutex_lock(&ch->lock);
        ft_cluster *cl = ch->cur;
        ft_cluster_retain(cl);
        pthread_mutex_unlock(&ch->lock);
        size_t idx = 0;
        if (ft_lb_select(cl->lb, &req, &idx) != 0) exit(1);
        sink = idx;
        ft_cluster_release(cl);
        out[(*count)++] = (int32_t)(ft_now_ns() - t0);
    }
}

static void run_churn(void)
{
    int64_t phase_ns = cell_ns * 4; /* 0.24 s phases by default (0.12 s with --quick) */
    printf(
        "\nChurn at N=1000: p99 of a call's cluster acquire + pick + release, without churn and "
        "with one endpoint joining or leaving every %d ms (%d alternating phases of %lld ms; load "
        "average %.2f)\n",
        CHURN_PERIOD_MS, CHURN_PHASES, (long long)(phase_ns / FT_NS_PER_MS), load_average());
    printf("| balancer | calls | p99 ns quiet | p99 ns churn | ratio | p99.9 quiet | p99.9 churn | "
           "rebuilds | slowest rebuild us | result |\n");
    printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    for (size_t k = 0; k < N_REBUILD; k++) {
        churn ch = {.lb = rebuild_names[k]};
        pthread_mutex_init(&ch.lock, NULL);
        ch.full = snapshot_of(MAX_N, SIZE_MAX, 1);
        ch.less = snapshot_of(MAX_N, 500, 2);
        ch.cur = build_cluster(ch.lb, ch.full, NULL);
        pthread_t th;
        if (pthread_create(&th, NULL, churn_main, &ch) != 0) exit(1);
        size_t count[2] = {0, 0};
        for (int phase = 0; phase < CHURN_PHASES; phase++) {
            int churning = phase % 2;
            atomic_store(&ch.phase_churn, churning);
            churn_calls(&ch, phase_ns, samples[churning], &count[churning]);
        }
        atomic_store(&ch.stop, 1);
        pthread_join(th, NULL);
        double p99[2], p999[2];
        for (int w = 0; w < 2; w++) {
            qsort(samples[w], count[w], sizeof(int32_t), cmp_i32);
            p99[w] = samples[w][count[w] * 99 / 100];
            p999[w] = samples[w][count[w] * 999 / 1000];
        }
        double ratio = p99[1] / p99[0];
        printf("| %s | %zu | %.0f | %.0f | %.2f | %.0f | %.0f | %ld | %.0f | %s |\n", ch.lb,
               count[0] + count[1], p99[0], p99[1], ratio, p999[0], p999[1], ch.rebuilds,
               (double)ch.rebuild_ns_max / 1000.0, ratio <= CHURN_TARGET_RATIO ? "PASS" : "FAIL");
        ft_cluster_release(ch.cur);
        free(ch.full);
        free(ch.less);
        pthread_mutex_destroy(&ch.lock);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--help")) {
        printf("usage: bench_lb [CELL_MS | --quick]\n"
               "ns per pick for every balancer at 10, 100 and 1,000 endpoints beside a baseline\n"
               "(one RNG draw and an array read); --quick: 30 ms cells (scripts/bench.sh)\n");
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "--quick"))
        cell_ns = 30 * FT_NS_PER_MS;
    else if (argc > 1)
        cell_ns = atoi(argv[1]) * FT_NS_PER_MS;
    if (cell_ns <= 0) cell_ns = 60 * FT_NS_PER_MS;
    setup();
    printf("bench_lb: load average %.2f at the start\n", load_average());
    printf("bench_lb: ns per ft_lb_select on one thread, best of %d runs in %" PRId64
           " ms per cell; ratio = ns / baseline ns measured in the same run\n",
           REPEATS, cell_ns / FT_NS_PER_MS);
    printf("endpoints: weights 100/200/300 in turn, EWMA 500-1500 us, 0-7 in flight; chash keyed "
           "(4,096 distinct keys)\n");
    run_table("All endpoints usable, nothing excluded", 0);
    run_table("Bad day: 10 % of endpoints unusable, 2 excluded by the call", 1);
    run_build_costs();
    run_rebuild_costs();
    run_churn();
    return 0;
}
