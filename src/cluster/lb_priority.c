/* "priority": the first usable, non-excluded endpoint in list order (WSO2's failover group).
 *
 * The list order is the priority: index 0 is the primary. Nothing is remembered between picks, so
 * traffic returns to the primary on the very first pick after `usable` says it is back, and a retry
 * (the primary excluded) goes to the next in line. Cost: O(position of the first usable endpoint),
 * O(1) while the primary is up. Weights ignored. */
#include "cluster/lb_impl.h"

static int priority_init(ft_lb *lb, const ft_lb_options *opts)
{
    return 0;
}

static int priority_select(ft_lb *lb, const ft_lb_pick *req, ft_rand *rng, size_t *out)
{
    for (size_t i = 0; i < lb->n; i++) {
        if (ft_lb_ok(req, i)) {
            *out = i;
            return 0;
        }
    }
    return FTRPC_ENOENDPOINT;
}

const ft_lb_ops ft_lb_priority_ops = {
    .name = "priority",
    .init = priority_init,
    .select = priority_select,
};
