/* "wrandom": weighted random; endpoint i is chosen with probability weight_i / sum of weights among
 * the usable, non-excluded ones.
 *
 * prefix[i] holds the sum of weights 0..i; a draw r in [0, total) selects the first i with
 * prefix[i] > r by binary search: O(log N) with no shared writes. Up to FT_LB_PROBES draws, then
 * one weighted reservoir scan, which keeps the proportions exact over what is left. */
#include "cluster/lb_impl.h"

#include <stdlib.h>

static int wrandom_init(ft_lb *lb, const ft_lb_options *opts)
{
    uint64_t *prefix = malloc(lb->n * sizeof(*prefix) + 1);
    if (prefix == NULL) return FTRPC_ENOMEM;
    uint64_t sum = 0;
    for (size_t i = 0; i < lb->n; i++) {
        sum += lb->eps[i].weight;
        prefix[i] = sum;
    }
    lb->impl = prefix;
    return 0;
}

static void wrandom_fini(ft_lb *lb)
{
    free(lb->impl);
}

static int wrandom_select(ft_lb *lb, const ft_lb_pick *req, ft_rand *rng, size_t *out)
{
    const uint64_t *prefix = lb->impl;
    for (int k = 0; k < FT_LB_PROBES; k++) {
        uint64_t r = ft_rand_below(rng, lb->total_weight);
        size_t lo = 0, hi = lb->n - 1;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (prefix[mid] > r)
                hi = mid;
            else
                lo = mid + 1;
        }
        if (ft_lb_ok(req, lo)) {
            *out = lo;
            return 0;
        }
    }
    return ft_lb_scan_pick(lb, req, rng, 1, SIZE_MAX, out);
}

const ft_lb_ops ft_lb_wrandom_ops = {
    .name = "wrandom",
    .init = wrandom_init,
    .fini = wrandom_fini,
    .select = wrandom_select,
};
