/* "priority": the first usable, non-excluded endpoint in list order (WSO2's failover group).
 *
 * The list order is the priority: index 0 is the primary. By default nothing is remembered between
 * picks, so traffic returns to the primary on the very first pick after `usable` says it is back,
 * and a retry (the primary excluded) goes to the next in line. Cost: O(position of the first
 * usable endpoint), O(1) while the primary is up. Weights ignored.
 *
 * Sticky (ft_lb_options.priority_sticky, WSO2's dynamic="false"): the balancer remembers the
 * endpoint traffic last moved to (`current`, one atomic) and every pick returns it while it is
 * usable and not excluded. Only an unusable `current` moves it, to the first usable endpoint in
 * list order; an exclusion alone (a retry after one failed attempt on a healthy endpoint) picks
 * the next in line for that attempt without moving traffic, so one stray error does not shift a
 * whole service. A new endpoint list (discovery) builds a new balancer, which starts at the
 * primary again. */
#include <stdlib.h>

#include "cluster/lb_impl.h"

typedef struct priority_impl {
    _Atomic size_t current; /* sticky: where traffic stays */
} priority_impl;

static int priority_init(ft_lb *lb, const ft_lb_options *opts)
{
    if (!opts->priority_sticky) return 0;
    priority_impl *p = calloc(1, sizeof *p);
    if (!p) return FTRPC_ENOMEM;
    atomic_init(&p->current, 0);
    lb->impl = p;
    return 0;
}

static void priority_fini(ft_lb *lb)
{
    free(lb->impl);
}

static int first_ok(const ft_lb *lb, const ft_lb_pick *req, size_t *out)
{
    for (size_t i = 0; i < lb->n; i++) {
        if (ft_lb_ok(req, i)) {
            *out = i;
            return 0;
        }
    }
    return FTRPC_ENOENDPOINT;
}

static int priority_select(ft_lb *lb, const ft_lb_pick *req, ft_rand *rng, size_t *out)
{
    (void)rng;
    priority_impl *p = lb->impl;
    if (!p) return first_ok(lb, req, out);
    size_t cur = atomic_load_explicit(&p->current, memory_order_relaxed);
    int usable = req->usable == NULL || req->usable(req->usable_arg, cur);
    if (usable) {
        if (!ft_lb_is_excluded(req, cur)) {
            *out = cur;
            return 0;
        }
        return first_ok(lb, req, out); /* this attempt only: traffic stays on cur */
    }
    int rc = first_ok(lb, req, out);
    if (rc == 0) {
        /* traffic moves on; a pick that raced with another one leaves the later winner */
        atomic_compare_exchange_strong_explicit(&p->current, &cur, *out, memory_order_relaxed,
                                                memory_order_relaxed);
    }
    return rc;
}

const ft_lb_ops ft_lb_priority_ops = {
    .name = "priority",
    .init = priority_init,
    .fini = priority_fini,
    .select = priority_select,
};
