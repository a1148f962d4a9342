/* "random": each pick is uniform over the usable, non-excluded endpoints.
 *
 * Up to FT_LB_PROBES independent draws, each checked against exclusions and health; when all fail
 * (most endpoints down or excluded) one reservoir scan keeps the result exactly uniform over what
 * is left. Stateless: nothing is shared between threads but the immutable snapshot. Weights
 * ignored. */
#include "cluster/lb_impl.h"

static int random_init(ft_lb *lb, const ft_lb_options *opts)
{
    return 0;
}

static int random_select(ft_lb *lb, const ft_lb_pick *req, ft_rand *rng, size_t *out)
{
    for (int k = 0; k < FT_LB_PROBES; k++) {
        size_t i = (size_t)ft_rand_below(rng, lb->n);
        if (ft_lb_ok(req, i)) {
            *out = i;
            return 0;
        }
    }
    return ft_lb_scan_pick(lb, req, rng, 0, SIZE_MAX, out);
}

const ft_lb_ops ft_lb_random_ops = {
    .name = "random",
    .init = random_init,
    .select = random_select,
};
