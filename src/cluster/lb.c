/* The balancer factory, references, the shared pick wrapper and the holder (see lb.h).
 *
 * ft_lb_select validates the request once here, resolves the default RNG and applies the
 * allow_excluded_fallback rule, so each algorithm file only implements its own choice. */
#include "cluster/lb_impl.h"

#include <stdlib.h>
#include <string.h>

static const ft_lb_ops *const all_ops[] = {
    &ft_lb_random_ops, &ft_lb_rr_ops,  &ft_lb_wrr_ops,      &ft_lb_wrandom_ops,
    &ft_lb_chash_ops,  &ft_lb_p2c_ops, &ft_lb_priority_ops,
};

static const ft_lb_ops *find_ops(const char *name)
{
    if (name == NULL) return NULL;
    for (size_t i = 0; i < sizeof(all_ops) / sizeof(all_ops[0]); i++)
        if (strcmp(all_ops[i]->name, name) == 0) return all_ops[i];
    return NULL;
}

int ft_lb_name_valid(const char *name)
{
    return find_ops(name) != NULL;
}

const char *ft_lb_default_name(void)
{
    return ft_lb_p2c_ops.name;
}

static void lb_destroy(ft_lb *lb)
{
    if (lb->ops != NULL && lb->ops->fini != NULL) lb->ops->fini(lb);
    free(lb->eps);
    free(lb->addr_arena);
    free(lb);
}

/* Copies the snapshot: the endpoints, their addresses into one arena, weights defaulted. */
static int copy_endpoints(ft_lb *lb, const ft_lb_endpoint *eps, size_t n)
{
    size_t arena_len = 0;
    for (size_t i = 0; i < n; i++) {
        if (eps[i].weight > FT_LB_MAX_WEIGHT) return FTRPC_EINVAL;
        if (eps[i].addr != NULL) arena_len += strlen(eps[i].addr) + 1;
    }
    lb->eps = calloc(n ? n : 1, sizeof(*lb->eps));
    lb->addr_arena = malloc(arena_len ? arena_len : 1);
    if (lb->eps == NULL || lb->addr_arena == NULL) return FTRPC_ENOMEM;
    char *p = lb->addr_arena;
    for (size_t i = 0; i < n; i++) {
        lb->eps[i] = eps[i];
        if (lb->eps[i].weight == 0) lb->eps[i].weight = FT_LB_DEFAULT_WEIGHT;
        lb->total_weight += lb->eps[i].weight;
        if (eps[i].addr != NULL) {
            size_t len = strlen(eps[i].addr) + 1;
            memcpy(p, eps[i].addr, len);
            lb->eps[i].addr = p;
            p += len;
        }
    }
    lb->n = n;
    return 0;
}

int ft_lb_new(const char *name, const ft_lb_endpoint *eps, size_t n, const ft_lb_options *opts,
              ft_lb **out)
{
    static const ft_lb_options defaults;
    const ft_lb_ops *ops = find_ops(name);
    if (ops == NULL || out == NULL || (eps == NULL && n > 0) || n > UINT32_MAX) return FTRPC_EINVAL;
    ft_lb *lb = calloc(1, sizeof(*lb));
    if (lb == NULL) return FTRPC_ENOMEM;
    atomic_init(&lb->refs, 1);
    int rc = copy_endpoints(lb, eps, n);
    if (rc == 0) {
        lb->ops = ops;
        rc = ops->init(lb, opts != NULL ? opts : &defaults);
    }
    if (rc != 0) {
        lb_destroy(lb);
        return rc;
    }
    *out = lb;
    return 0;
}

void ft_lb_retain(ft_lb *lb)
{
    atomic_fetch_add_explicit(&lb->refs, 1, memory_order_relaxed);
}

void ft_lb_release(ft_lb *lb)
{
    if (lb == NULL) return;
    /* acq_rel: the freeing thread must see every other holder's last use of the balancer. */
    if (atomic_fetch_sub_explicit(&lb->refs, 1, memory_order_acq_rel) == 1) lb_destroy(lb);
}

const char *ft_lb_name(const ft_lb *lb)
{
    return lb->ops->name;
}

size_t ft_lb_size(const ft_lb *lb)
{
    return lb->n;
}

const ft_lb_endpoint *ft_lb_endpoint_at(const ft_lb *lb, size_t index)
{
    return index < lb->n ? &lb->eps[index] : NULL;
}

int ft_lb_select(ft_lb *lb, const ft_lb_pick *req, size_t *out_index)
{
    if (lb == NULL || req == NULL || out_index == NULL || req->n_excluded > FT_LB_MAX_EXCLUDED ||
        (req->n_excluded > 0 && req->excluded == NULL))
        return FTRPC_EINVAL;
    if (lb->n == 0) return FTRPC_ENOENDPOINT;
    if (lb->n == 1) {
        /* What every algorithm picks among one endpoint, without its draws: the only one when it
         * is acceptable, or (the fallback below) when only its exclusion stands in the way. */
        int usable = req->usable == NULL || req->usable(req->usable_arg, 0);
        if (!usable || (ft_lb_is_excluded(req, 0) && !req->allow_excluded_fallback))
            return FTRPC_ENOENDPOINT;
        *out_index = 0;
        return 0;
    }
    ft_rand *rng = req->rng != NULL ? req->rng : ft_rand_thread();
    int rc = lb->ops->select(lb, req, rng, out_index);
    if (rc == FTRPC_ENOENDPOINT && req->allow_excluded_fallback && req->n_excluded > 0) {
        /* Nothing outside the exclusions is usable, so whatever a pick without exclusions returns
         * is a usable excluded endpoint, chosen by the algorithm's own rule. */
        ft_lb_pick again = *req;
        again.excluded = NULL;
        again.n_excluded = 0;
        rc = lb->ops->select(lb, &again, rng, out_index);
    }
    return rc;
}

int ft_lb_scan_pick(const ft_lb *lb, const ft_lb_pick *req, ft_rand *rng, int weighted, size_t skip,
                    size_t *out)
{
    uint64_t seen = 0;
    size_t chosen = SIZE_MAX;
    for (size_t i = 0; i < lb->n; i++) {
        if (i == skip || !ft_lb_ok(req, i)) continue;
        uint64_t w = weighted ? lb->eps[i].weight : 1;
        seen += w;
        /* Keeps i with probability w / seen: after the pass each candidate has been kept with
         * probability w_i / total. */
        if (ft_rand_below(rng, seen) < w) chosen = i;
    }
    if (chosen == SIZE_MAX) return FTRPC_ENOENDPOINT;
    *out = chosen;
    return 0;
}
