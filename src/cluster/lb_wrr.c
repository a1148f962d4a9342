/* "wrr": smooth weighted round robin, the sequence of nginx's ngx_http_upstream_get_peer: each step
 * adds every endpoint's weight to its `current`, picks the largest (first in list order on a tie)
 * and subtracts the total from it. Weights {5, 1, 1} give a a b a c a a, never a a a a a b c.
 *
 * nginx's step is O(N) and mutates shared state, which at 1,000 endpoints costs microseconds and a
 * lock. The sequence is periodic, with period P = sum of weights / their gcd (after P steps every
 * `current` is back at 0), so it is computed once at build time into a schedule of P slots, and a
 * pick takes the next slot from one shared atomic counter: O(1), lock-free, and across all threads
 * together the picks follow nginx's sequence exactly (each thread sees an interleaved part of it).
 *
 * When a slot's endpoint is unusable or excluded the pick takes another ticket (ft_lb_ticket_pick,
 * as "rr" does), rather than walking to the next slot: the refused endpoint's slots simply drop out
 * of the sequence, so the others keep their exact mutual proportions (as in nginx, where a down
 * peer drops out of the step), whereas handing a slot to its neighbour would favour whichever
 * endpoint happens to follow it in the schedule (the unit test catches that). Past the probes one
 * weighted reservoir scan decides.
 *
 * When P exceeds opts->wrr_max_schedule, or P x N exceeds WRR_MAX_BUILD_STEPS, precomputing costs
 * too much memory or time; the balancer then runs nginx's step itself under `mu` (exact, O(N) per
 * pick, skipping unusable and excluded endpoints like nginx skips failed and tried peers). Unlike
 * nginx, weights are static: health is the caller's predicate, not an effective_weight here. */
#include "cluster/lb_impl.h"

#include <stdalign.h>
#include <pthread.h>
#include <stdlib.h>

#include "base/aligned_alloc.h"

#define WRR_DEFAULT_MAX_SCHEDULE (1u << 20)
#define WRR_MAX_BUILD_STEPS (UINT64_C(1) << 27)

typedef struct wrr_state {
    alignas(64) _Atomic uint64_t next; /* schedule mode: next slot to hand out */
    uint32_t *schedule;                /* P endpoint indices, or NULL in locked mode */
    uint64_t period;
    pthread_mutex_t mu; /* locked mode: guards current[] */
    int mu_ready;       /* mu was initialised */
    int64_t *current;   /* locked mode: nginx's current_weight per endpoint */
} wrr_state;

static uint64_t gcd64(uint64_t a, uint64_t b)
{
    while (b != 0) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* One nginx step over the endpoints `req` accepts (req NULL: all). Returns the index or SIZE_MAX.
 */
static size_t nginx_step(const ft_lb *lb, int64_t *current, const ft_lb_pick *req)
{
    int64_t total = 0;
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < lb->n; i++) {
        if (req != NULL && !ft_lb_ok(req, i)) continue;
        current[i] += lb->eps[i].weight;
        total += lb->eps[i].weight;
        if (best == SIZE_MAX || current[i] > current[best]) best = i;
    }
    if (best != SIZE_MAX) current[best] -= total;
    return best;
}

/* Endpoints of one weight, in list order, and how many slots the group has taken so far. */
typedef struct wrr_group {
    int64_t weight;
    uint64_t taken;
    const uint32_t *members;
    size_t size;
} wrr_group;

static int u64_ascending(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Fills st->schedule with nginx's sequence in O(P x G) for G distinct weights instead of nginx's
 * O(P x N). After t steps endpoint i's `current` is t x w_i - W x k_i (k_i: the times it was
 * picked), so among endpoints of one weight the largest `current` belongs to those picked least,
 * and nginx's first-in-list-order tie break makes a group take its turns in list order, round and
 * round. A step therefore only compares each group's next member: the one at taken % size, picked
 * taken / size times. Between groups the same rule holds: the largest value wins, the smaller
 * index on a tie. Returns 0, FTRPC_ENOMEM, or 1 when P x G exceeds WRR_MAX_BUILD_STEPS (the caller
 * then runs nginx's step under the lock). */
static int build_schedule(ft_lb *lb, wrr_state *st)
{
    /* (weight << 32 | index) sorted: the groups by weight, each in list order */
    uint64_t *keys = malloc(lb->n * sizeof(uint64_t));
    uint32_t *order = malloc(lb->n * sizeof(uint32_t));
    wrr_group *groups = malloc(lb->n * sizeof(wrr_group));
    if (keys == NULL || order == NULL || groups == NULL) {
        free(keys);
        free(order);
        free(groups);
        return FTRPC_ENOMEM;
    }
    for (size_t i = 0; i < lb->n; i++)
        keys[i] = (uint64_t)lb->eps[i].weight << 32 | i;
    qsort(keys, lb->n, sizeof(uint64_t), u64_ascending);
    for (size_t i = 0; i < lb->n; i++)
        order[i] = (uint32_t)keys[i];
    free(keys);
    size_t ng = 0;
    for (size_t i = 0; i < lb->n; i++) {
        int64_t w = lb->eps[order[i]].weight;
        if (ng == 0 || groups[ng - 1].weight != w)
            groups[ng++] = (wrr_group){.weight = w, .members = &order[i]};
        groups[ng - 1].size++;
    }
    int rc = 1;
    if (st->period <= WRR_MAX_BUILD_STEPS / ng) {
        rc = FTRPC_ENOMEM;
        st->schedule = malloc(st->period * sizeof(uint32_t));
    }
    if (st->schedule != NULL) {
        int64_t total = (int64_t)lb->total_weight;
        for (uint64_t s = 0; s < st->period; s++) {
            size_t best = 0;
            int64_t best_value = 0;
            uint32_t best_index = 0;
            for (size_t g = 0; g < ng; g++) {
                const wrr_group *gr = &groups[g];
                uint32_t index = gr->members[gr->taken % gr->size];
                int64_t value =
                    (int64_t)(s + 1) * gr->weight - total * (int64_t)(gr->taken / gr->size);
                if (g == 0 || value > best_value || (value == best_value && index < best_index)) {
                    best = g;
                    best_value = value;
                    best_index = index;
                }
            }
            groups[best].taken++;
            st->schedule[s] = best_index;
        }
        free(st->current); /* not needed in schedule mode */
        st->current = NULL;
        rc = 0;
    }
    free(order);
    free(groups);
    return rc;
}

static void wrr_fini(ft_lb *lb)
{
    wrr_state *st = lb->impl;
    if (st == NULL) return;
    free(st->schedule);
    free(st->current);
    if (st->mu_ready) pthread_mutex_destroy(&st->mu);
    free(st);
}

static int wrr_init(ft_lb *lb, const ft_lb_options *opts)
{
    wrr_state *st = ft_aligned_calloc(1, sizeof *st, alignof(wrr_state));
    if (st == NULL) return FTRPC_ENOMEM;
    st->schedule = NULL;
    st->mu_ready = 0;
    st->current = calloc(lb->n ? lb->n : 1, sizeof(int64_t));
    atomic_init(&st->next, 0);
    lb->impl = st;
    if (st->current == NULL) return FTRPC_ENOMEM;

    uint64_t g = 0;
    for (size_t i = 0; i < lb->n; i++)
        g = gcd64(g, lb->eps[i].weight);
    st->period = g ? lb->total_weight / g : 0;
    uint64_t max_schedule =
        opts->wrr_max_schedule ? opts->wrr_max_schedule : WRR_DEFAULT_MAX_SCHEDULE;
    if (lb->n > 0 && st->period <= max_schedule) {
        int rc = build_schedule(lb, st);
        if (rc <= 0) return rc;
    }
    if (pthread_mutex_init(&st->mu, NULL) != 0) return FTRPC_ESYS;
    st->mu_ready = 1;
    return 0;
}

static int wrr_select(ft_lb *lb, const ft_lb_pick *req, ft_rand *rng, size_t *out)
{
    wrr_state *st = lb->impl;
    if (st->schedule == NULL) {
        pthread_mutex_lock(&st->mu);
        size_t i = nginx_step(lb, st->current, req);
        pthread_mutex_unlock(&st->mu);
        if (i == SIZE_MAX) return FTRPC_ENOENDPOINT;
        *out = i;
        return 0;
    }
    return ft_lb_ticket_pick(lb, req, rng, &st->next, st->schedule, st->period, 1, out);
}

int ft_lb_wrr_is_scheduled(const ft_lb *lb)
{
    const wrr_state *st = lb->impl;
    return st->schedule != NULL;
}

const ft_lb_ops ft_lb_wrr_ops = {
    .name = "wrr",
    .init = wrr_init,
    .fini = wrr_fini,
    .select = wrr_select,
};
