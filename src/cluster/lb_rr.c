/* "rr": round robin over the usable, non-excluded endpoints.
 *
 * One atomic counter shared by every picking thread hands out consecutive start positions, so with
 * all endpoints usable K picks from any mix of threads spread exactly evenly (each endpoint gets
 * floor or ceil of K / N). From the start position the pick walks forward past unusable or excluded
 * endpoints; the endpoint after a down one therefore takes its share too (as brpc's and nginx's
 * round robin do), which is the price of O(1) picks without per-pick coordination. Weights ignored.
 * The counter sits on its own cache line so it does not drag the snapshot's lines between cores. */
#include "cluster/lb_impl.h"

#include <stdalign.h>
#include <stdlib.h>

typedef struct rr_state {
    alignas(64) _Atomic uint64_t next;
    char pad[64 - sizeof(uint64_t)];
} rr_state;

static int rr_init(ft_lb *lb, const ft_lb_options *opts)
{
    rr_state *st = aligned_alloc(64, sizeof(rr_state));
    if (st == NULL) return FTRPC_ENOMEM;
    atomic_init(&st->next, 0);
    lb->impl = st;
    return 0;
}

static void rr_fini(ft_lb *lb)
{
    free(lb->impl);
}

static int rr_select(ft_lb *lb, const ft_lb_pick *req, ft_rand *rng, size_t *out)
{
    rr_state *st = lb->impl;
    uint64_t ticket = atomic_fetch_add_explicit(&st->next, 1, memory_order_relaxed);
    size_t i = (size_t)(ticket % lb->n);
    for (size_t k = 0; k < lb->n; k++) {
        if (ft_lb_ok(req, i)) {
            *out = i;
            return 0;
        }
        if (++i == lb->n) i = 0;
    }
    return FTRPC_ENOENDPOINT;
}

const ft_lb_ops ft_lb_rr_ops = {
    .name = "rr",
    .init = rr_init,
    .fini = rr_fini,
    .select = rr_select,
};
