/* Suspension cap, all-unusable fallback and breaker rejection over one service's endpoints (see
 * health_set.h). The cap is a single atomic counter that endpoints take a slot from under their
 * own lock, so two endpoints failing at once on two threads cannot both squeeze past the limit. */
#include "cluster/health_set.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "ftrpc/common.h"

static ft_health_set_options with_defaults(const ft_health_set_options *in)
{
    ft_health_set_options o = {0};
    if (in) o = *in;
    if (o.max_suspended_ratio == 0) o.max_suspended_ratio = 0.5;
    return o;
}

int ft_health_set_options_validate(const ft_health_set_options *opts)
{
    ft_health_set_options o = with_defaults(opts);
    if (o.max_suspended_ratio != FT_HEALTH_SET_NO_CAP &&
        !(o.max_suspended_ratio > 0 && o.max_suspended_ratio <= 1)) {
        FT_ERROR("health set: max_suspended_ratio %g must be in (0, 1], or -1: no cap",
                 o.max_suspended_ratio);
        return FTRPC_EINVAL;
    }
    if (o.breaker_reject < -1 || o.breaker_reject > 1) {
        FT_ERROR("health set: breaker_reject %d must be 0 (default: reject), 1 (reject) or -1 "
                 "(send anyway)",
                 o.breaker_reject);
        return FTRPC_EINVAL;
    }
    return 0;
}

int ft_health_set_init(ft_health_set *set, const ft_health_set_options *opts,
                       ft_endpoint_health *const *endpoints, size_t count)
{
    int rc = ft_health_set_options_validate(opts);
    if (rc != 0) return rc;
    if (count > 0 && !endpoints) {
        FT_ERROR("health set: %zu endpoints but no array", count);
        return FTRPC_EINVAL;
    }
    memset(set, 0, sizeof(*set));
    set->opts = with_defaults(opts);
    if (count > 0) {
        set->endpoints = malloc(count * sizeof(*set->endpoints));
        if (!set->endpoints) return FTRPC_ENOMEM;
        memcpy(set->endpoints, endpoints, count * sizeof(*set->endpoints));
    }
    set->count = count;
    double ratio =
        set->opts.max_suspended_ratio == FT_HEALTH_SET_NO_CAP ? 1.0 : set->opts.max_suspended_ratio;
    double limit = floor(ratio * (double)count);
    set->cap.limit = limit < 1 ? 1 : (int)limit;
    atomic_init(&set->cap.held, 0);
    for (size_t i = 0; i < count; i++)
        ft_health_attach_cap(set->endpoints[i], &set->cap);
    return 0;
}

void ft_health_set_fini(ft_health_set *set)
{
    for (size_t i = 0; i < set->count; i++)
        ft_health_detach_cap(set->endpoints[i], &set->cap);
    free(set->endpoints);
    set->endpoints = NULL;
    set->count = 0;
}

int ft_health_set_suspension_limit(const ft_health_set *set)
{
    return set->cap.limit;
}

int ft_health_set_suspended(const ft_health_set *set)
{
    return atomic_load(&((ft_health_set *)set)->cap.held);
}

size_t ft_health_set_usable_count(const ft_health_set *set, int64_t now_ns)
{
    size_t n = 0;
    for (size_t i = 0; i < set->count; i++)
        if (ft_health_usable(set->endpoints[i], now_ns)) n++;
    return n;
}

int ft_health_set_soonest(const ft_health_set *set, int64_t now_ns, size_t *index_out,
                          int64_t *wait_ns_out)
{
    if (set->count == 0) return FTRPC_ENOENDPOINT;
    if (set->opts.breaker_reject >= 0) {
        size_t open = 0;
        while (open < set->count && ft_health_breaker_open(set->endpoints[open], now_ns))
            open++;
        if (open == set->count) return FTRPC_EBREAKER;
    }
    size_t best = 0;
    int64_t best_wait = INT64_MAX; /* what an OFF endpoint reports: never chosen */
    for (size_t i = 0; i < set->count; i++) {
        int64_t wait = ft_health_usable_in_ns(set->endpoints[i], now_ns);
        if (wait < best_wait) {
            best = i;
            best_wait = wait;
        }
    }
    if (best_wait == INT64_MAX) return FTRPC_ENOENDPOINT;
    *index_out = best;
    *wait_ns_out = best_wait;
    return 0;
}

int ft_health_set_fallback(ft_health_set *set, int64_t now_ns, size_t *index_out,
                           ft_health_grant *grant_out)
{
    size_t best;
    int64_t wait;
    int rc = ft_health_set_soonest(set, now_ns, &best, &wait);
    if (rc != 0) return rc;
    ft_health_grant g = ft_health_acquire_anyway(set->endpoints[best], now_ns);
    if (g == FT_HEALTH_DENIED) return FTRPC_ENOENDPOINT; /* switched OFF meanwhile */
    *index_out = best;
    if (grant_out) *grant_out = g;
    return 0;
}
