/* Selection cost of every load balancer (src/cluster/lb.h) at 10, 100 and 1,000 endpoints, beside a
 * baseline measured in the same run: one ft_rand_below draw plus one array read, the least any
 * randomised pick can do. Printed: ns per pick and the ratio to the baseline.
 *
 * Each cell runs for about cell_ms of wall time on one thread (the best of 3 runs of a third each),
 * with a health predicate that reads a byte array (as the health module's will read a state) and,
 * for chash, a fresh key hash per pick drawn from a table of 4,096 (so the ring search is not
 * always served from the same cache line). A second table repeats the picks on a bad day: 10 % of
 * the endpoints unusable and 2 excluded. Last, the one-off costs: building a balancer (the chash
 * ring, the wrr schedule).
 *
 * Usage: bench_lb [cell_ms]   (default 60) */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/hash.h"
#include "cluster/lb.h"

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

static void run_build_costs(void)
{
    printf("\nOne-off costs (not per pick)\n");
    printf("| operation | N=10 us | N=100 us | N=1000 us |\n");
    printf("| --- | ---: | ---: | ---: |\n");
    for (size_t k = 0; k < N_NAMES; k++) {
        printf("| ft_lb_new(\"%s\") + release |", names[k]);
        for (size_t s = 0; s < N_SIZES; s++) {
            int reps = 0;
            int64_t start = ft_now_ns(), now;
            do {
                ft_lb *lb = NULL;
                if (ft_lb_new(names[k], eps, sizes[s], NULL, &lb) != 0) exit(1);
                ft_lb_release(lb);
                reps++;
                now = ft_now_ns();
            } while (now - start < cell_ns / 4);
            printf(" %.1f |", (double)(now - start) / reps / 1000.0);
        }
        printf("\n");
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
    printf("bench_lb: ns per ft_lb_select on one thread, best of %d runs in %" PRId64
           " ms per cell; ratio = ns / baseline ns measured in the same run\n",
           REPEATS, cell_ns / FT_NS_PER_MS);
    printf("endpoints: weights 100/200/300 in turn, EWMA 500-1500 us, 0-7 in flight; chash keyed "
           "(4,096 distinct keys)\n");
    run_table("All endpoints usable, nothing excluded", 0);
    run_table("Bad day: 10 % of endpoints unusable, 2 excluded by the call", 1);
    run_build_costs();
    return 0;
}
