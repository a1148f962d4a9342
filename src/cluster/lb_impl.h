/* Private to src/cluster/lb*.c: the balancer object, the per-algorithm operations and the helpers
 * they share. Nothing outside the lb files includes this; the interface is lb.h. */
#ifndef FT_CLUSTER_LB_IMPL_H
#define FT_CLUSTER_LB_IMPL_H

#include "cluster/lb.h"

/* Random-draw probes a pick makes before it falls back to one O(N) scan. With a share f of the
 * endpoints usable, all probes fail with probability (1 - f)^8: 0.4 % at f = 0.5, so the scan is
 * for bad days only. */
#define FT_LB_PROBES 8

/* Tickets a round-robin pick ("rr", "wrr") takes before it falls back to one O(N) scan. A pick's
 * tickets follow each other unless other threads take some in between, so it runs out of them only
 * when about this many slots in a row refuse it: a run of 32 adjacent endpoints down for "rr", a
 * heavy endpoint down for "wrr". */
#define FT_LB_TICKET_PROBES 32

typedef struct ft_lb_ops {
    const char *name;
    /* Builds lb->impl from lb->eps; returns 0 or a negative FTRPC_E*. */
    int (*init)(ft_lb *lb, const ft_lb_options *opts);
    /* Frees lb->impl (may be NULL after a failed init). */
    void (*fini)(ft_lb *lb);
    /* One pick; lb->n > 0, req validated, rng never NULL. Returns 0 or FTRPC_ENOENDPOINT. */
    int (*select)(ft_lb *lb, const ft_lb_pick *req, ft_rand *rng, size_t *out);
} ft_lb_ops;

/* Immutable after ft_lb_new except refs and what impl keeps in atomics or behind its own lock. */
struct ft_lb {
    const ft_lb_ops *ops;
    _Atomic long refs;
    size_t n;
    ft_lb_endpoint *eps; /* weights defaulted, addr pointing into addr_arena */
    char *addr_arena;
    uint64_t total_weight;
    void *impl;
};

extern const ft_lb_ops ft_lb_random_ops;
extern const ft_lb_ops ft_lb_rr_ops;
extern const ft_lb_ops ft_lb_wrr_ops;
extern const ft_lb_ops ft_lb_wrandom_ops;
extern const ft_lb_ops ft_lb_chash_ops;
extern const ft_lb_ops ft_lb_p2c_ops;
extern const ft_lb_ops ft_lb_priority_ops;

static inline int ft_lb_is_excluded(const ft_lb_pick *req, size_t index)
{
    for (size_t k = 0; k < req->n_excluded; k++)
        if (req->excluded[k] == index) return 1;
    return 0;
}

/* Whether this pick may return index: not excluded (checked first: it is cheaper) and usable. */
static inline int ft_lb_ok(const ft_lb_pick *req, size_t index)
{
    if (ft_lb_is_excluded(req, index)) return 0;
    return req->usable == NULL || req->usable(req->usable_arg, index);
}

/* The slow path shared by the balancers: one pass over every endpoint, choosing among those
 * ft_lb_ok accepts (and that differ from `skip`, SIZE_MAX for none) uniformly (weighted == 0)
 * or in proportion to weight, by reservoir sampling, so the fallback keeps the balancer's
 * distribution. Returns 0 or FTRPC_ENOENDPOINT. */
int ft_lb_scan_pick(const ft_lb *lb, const ft_lb_pick *req, ft_rand *rng, int weighted, size_t skip,
                    size_t *out);

/* The pick of the round robins ("rr", "wrr"): takes tickets from `counter` until one falls on an
 * endpoint this pick may use; ticket t falls on schedule[t % period], or on t % period itself when
 * schedule is NULL. A refused endpoint's tickets are dropped rather than handed to the next slot:
 * every usable endpoint gets its own tickets and no others, so a down endpoint's share is spread
 * over the rest in proportion to theirs (as in Envoy's and Finagle's round robin, where a down host
 * leaves the rotation), instead of doubling the load on the one after it. A miss costs one more
 * atomic increment; past FT_LB_TICKET_PROBES tickets one ft_lb_scan_pick (weighted or not)
 * decides. Returns 0 or FTRPC_ENOENDPOINT. */
static inline int ft_lb_ticket_pick(const ft_lb *lb, const ft_lb_pick *req, ft_rand *rng,
                                    _Atomic uint64_t *counter, const uint32_t *schedule,
                                    uint64_t period, int weighted, size_t *out)
{
    for (int k = 0; k < FT_LB_TICKET_PROBES; k++) {
        uint64_t slot = atomic_fetch_add_explicit(counter, 1, memory_order_relaxed) % period;
        size_t i = schedule != NULL ? schedule[slot] : (size_t)slot;
        if (ft_lb_ok(req, i)) {
            *out = i;
            return 0;
        }
    }
    return ft_lb_scan_pick(lb, req, rng, weighted, SIZE_MAX, out);
}

/* "wrr" only, for tests and the bench: 1 when picks run from the precomputed schedule, 0 when they
 * run nginx's step under the lock. */
int ft_lb_wrr_is_scheduled(const ft_lb *lb);

/* "chash": the Maglev table size ft_lb_new chooses for n endpoints and a chash_table_size option
 * (0: default); and, for tests and the bench, the size a built balancer uses. */
uint32_t ft_lb_chash_table_size(size_t n, uint32_t min_size);
uint32_t ft_lb_chash_slots(const ft_lb *lb);

#endif
