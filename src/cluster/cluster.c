/* Building and releasing clusters (see cluster.h). */
#include "cluster/cluster.h"

#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
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
    for (size_t i = 0; i < cl->n; i++)
        ft_cluster_endpoint_release(cl->eps[i]);
    free(cl->eps);
    free(cl);
}

/* The previous cluster's endpoint of that name, or NULL. */
static ft_cluster_endpoint *listed_before(const ft_cluster *prev, const char *name)
{
    for (size_t j = 0; prev && j < prev->n; j++)
        if (!strcmp(prev->eps[j]->name, name)) return prev->eps[j];
    return NULL;
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
        ft_cluster_endpoint *e = listed_before(prev, snap->eps[i].addr);
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
    if (cl) free(cl->eps);
    free(cl);
    free(hs);
    free(lbe);
    return NULL;
}
