/* Building and releasing clusters (see cluster.h). */
#include "cluster/cluster.h"

#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/hash.h"
#include "base/log.h"

static ft_cluster_endpoint *endpoint_new(const ft_cluster_options *o, const ft_endpoint *spec)
{
    if (strlen(spec->addr) >= sizeof((ft_cluster_endpoint *)0)->name) {
        FT_WARN("cluster: endpoint name '%s' is too long", spec->addr);
        return NULL;
    }
    ft_cluster_endpoint *e = o->ops->make(spec, o->ops->arg);
    if (!e) return NULL;
    e->inflight = calloc((size_t)o->nshards, sizeof *e->inflight);
    ft_health_options ho = {0};
    if (o->health) ho = *o->health;
    if (o->ops->health_options) o->ops->health_options(spec, &ho, o->ops->arg);
    if (!e->inflight || ft_health_init(&e->health, &ho) != 0) {
        FT_WARN("cluster: cannot keep endpoint '%s': out of memory", spec->addr);
        free(e->inflight);
        o->ops->destroy(e, o->ops->arg);
        return NULL;
    }
    memcpy(e->name, spec->addr, strlen(spec->addr) + 1); /* fits: checked above */
    e->weight = spec->weight;
    e->nshards = o->nshards;
    e->ops = o->ops;
    atomic_init(&e->refs, 1);
    atomic_init(&e->removed, 0);
    return e;
}

void ft_cluster_endpoint_release(ft_cluster_endpoint *ep)
{
    if (atomic_fetch_sub_explicit(&ep->refs, 1, memory_order_acq_rel) != 1) return;
    ft_health_fini(&ep->health);
    free(ep->inflight);
    ep->ops->destroy(ep, ep->ops->arg);
}

int ft_cluster_endpoint_inflight(const ft_cluster_endpoint *ep)
{
    int n = 0;
    for (int i = 0; i < ep->nshards; i++)
        n += atomic_load_explicit(&ep->inflight[i].n, memory_order_relaxed);
    return n;
}

void ft_cluster_release(ft_cluster *cl)
{
    if (!cl || atomic_fetch_sub_explicit(&cl->refs, 1, memory_order_acq_rel) != 1) return;
    ft_health_set_fini(&cl->set);
    ft_lb_release(cl->lb);
    free(cl->by_name);
    for (size_t i = 0; i < cl->n; i++)
        ft_cluster_endpoint_release(cl->eps[i]);
    free(cl->eps);
    free(cl);
}

ft_cluster_endpoint *ft_cluster_find(const ft_cluster *cl, const char *name)
{
    if (!cl || !cl->by_name) return NULL;
    for (size_t at = ft_hash64_str(name) & cl->by_name_mask;; at = (at + 1) & cl->by_name_mask) {
        uint32_t k = cl->by_name[at];
        if (k == 0) return NULL;
        if (!strcmp(cl->eps[k - 1]->name, name)) return cl->eps[k - 1];
    }
}

/* Fills cl->by_name once cl->eps is final. */
static int index_names(ft_cluster *cl)
{
    size_t cells = 16;
    while (cells < 2 * cl->n)
        cells *= 2;
    cl->by_name = calloc(cells, sizeof *cl->by_name);
    if (!cl->by_name) return -1;
    cl->by_name_mask = cells - 1;
    for (size_t i = 0; i < cl->n; i++) {
        size_t at = ft_hash64_str(cl->eps[i]->name) & cl->by_name_mask;
        while (cl->by_name[at] != 0) {
            if (!strcmp(cl->eps[cl->by_name[at] - 1]->name, cl->eps[i]->name)) break;
            at = (at + 1) & cl->by_name_mask;
        }
        if (cl->by_name[at] == 0) cl->by_name[at] = (uint32_t)i + 1;
    }
    return 0;
}

ft_cluster *ft_cluster_build(const ft_cluster_options *o, const ft_naming_snapshot *snap,
                             const ft_cluster *prev)
{
    ft_cluster *cl = calloc(1, sizeof *cl);
    ft_endpoint_health **hs = calloc(snap->n + 1, sizeof *hs);
    ft_lb_endpoint *lbe = calloc(snap->n + 1, sizeof *lbe);
    if (!cl || !hs || !lbe) goto fail;
    cl->eps = calloc(snap->n + 1, sizeof *cl->eps);
    if (!cl->eps) goto fail;
    atomic_init(&cl->refs, 1);
    cl->version = snap->version;
    for (size_t i = 0; i < snap->n; i++) {
        ft_cluster_endpoint *e = ft_cluster_find(prev, snap->eps[i].addr);
        if (e)
            ft_cluster_endpoint_retain(e);
        else
            e = endpoint_new(o, &snap->eps[i]);
        if (!e) continue; /* logged; the others still serve */
        e->weight = snap->eps[i].weight;
        atomic_store(&e->removed, 0);
        hs[cl->n] = &e->health;
        lbe[cl->n] = (ft_lb_endpoint){.id = e,
                                      .addr = e->name,
                                      .weight = e->weight,
                                      .ewma_latency_us = &e->health.ewma_us,
                                      .ewma_stamp_ns = &e->health.ewma_stamp_ns,
                                      .ewma_decay_ns = e->health.opts.ewma_decay_ms * FT_NS_PER_MS,
                                      .failure_ppm = &e->health.failure_ppm,
                                      .inflight = &e->inflight[0].n,
                                      .inflight_shards = (size_t)e->nshards,
                                      .inflight_stride = sizeof *e->inflight};
        cl->eps[cl->n++] = e;
    }
    if (index_names(cl) != 0) goto fail;
    ft_health_set_options so = {.max_suspended_ratio = o->max_suspended_ratio,
                                .breaker_reject = o->breaker_reject};
    if (ft_health_set_init(&cl->set, &so, hs, cl->n) != 0) goto fail;
    ft_lb_options lo = {.priority_sticky = o->priority_sticky};
    if (ft_lb_new(o->lb, lbe, cl->n, &lo, &cl->lb) != 0) {
        ft_health_set_fini(&cl->set);
        goto fail;
    }
    free(hs);
    free(lbe);
    return cl;
fail:
    if (cl && cl->eps)
        for (size_t i = 0; i < cl->n; i++)
            ft_cluster_endpoint_release(cl->eps[i]);
    if (cl) {
        free(cl->eps);
        free(cl->by_name);
    }
    free(cl);
    free(hs);
    free(lbe);
    return NULL;
}
