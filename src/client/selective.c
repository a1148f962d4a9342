/* The selective client (brpc's SelectiveChannel) and the targets of a call.
 *
 * A selective client is an ordinary ftrpc_client without discovery of its own (client.c makes the
 * shell: options, budget, loops, metrics) plus an ft_selective: the sub-clients it owns and a load
 * balancer whose "endpoints" are the clusters. The call engine (call.c) does not know which kind
 * of client it serves: it asks ft_call_targets_acquire for the clusters a call may use and, when
 * there are several, ft_selective_pick_target for the cluster of each attempt. Everything else
 * (fail modes, retries, backups and their race, cancellation, deadlines, fallback) is the one
 * engine, so a selective call behaves as a plain call whose endpoints are grouped in clusters.
 *
 * Choosing the cluster of a call's first attempt reuses the endpoint balancers (cluster/lb.h):
 * index i is sub-client i and `usable` says whether its pinned cluster has a usable endpoint now,
 * so a cluster whose endpoints are all suspended is skipped. A retry or a backup goes to the next
 * cluster in the given order that has a usable endpoint and was not tried by the call (a tried one
 * when no other is usable), so the balancer's spread holds over calls, not attempts.
 *
 * Invariants: the sub-clients share the selective client's runtime (checked at creation), so an
 * attempt uses the sub-client's connection of the call's home loop; the sub-clients outlive every
 * call of the selective client (ftrpc_client_free frees them after waiting for those calls).
 * Immutable after creation: read from any thread without a lock.
 *
 * Not here: nesting (a selective client over selective clients) and per-cluster weights.
 */
#include "client/selective.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sized_options.h"
#include "base/log.h"
#include "ftrpc/selective.h"

struct ft_selective {
    size_t n;
    ftrpc_client **subs; /* owned */
    char (*names)[32];   /* "cluster<i>": the balancer's addresses (chash places them) */
    ft_lb *lb;           /* over the clusters; index i is subs[i] */
};

/* ---- the targets of a call ---- */

int ft_call_targets_acquire(ft_call *call)
{
    ftrpc_client *c = call->client;
    ft_selective *s = c->selective;
    if (!s) {
        call->one.client = c;
        call->one.cluster = ft_client_cluster_borrow(c, call->loop, &call->one.borrow_epoch);
        call->targets = &call->one;
        call->ntargets = 1;
        call->retry.free_resends_left =
            ft_fail_free_resends(call->retry.mode, call->one.cluster->n);
        return 0;
    }
    ft_call_target *t = malloc(s->n * sizeof *t);
    if (!t) return FTRPC_ENOMEM;
    size_t endpoints = 0;
    for (size_t i = 0; i < s->n; i++) {
        t[i].client = s->subs[i];
        t[i].cluster = ft_client_cluster_borrow(s->subs[i], call->loop, &t[i].borrow_epoch);
        endpoints += t[i].cluster->n;
    }
    call->targets = t;
    call->ntargets = (int)s->n;
    call->retry.free_resends_left = ft_fail_free_resends(call->retry.mode, endpoints);
    return 0;
}

void ft_call_targets_release(ft_call *call)
{
    for (int i = 0; i < call->ntargets; i++)
        ft_client_cluster_return(call->targets[i].client, call->loop, call->targets[i].cluster,
                                 call->targets[i].borrow_epoch);
    if (call->targets != &call->one) free(call->targets);
    call->targets = NULL;
    call->ntargets = 0;
}

/* ---- choosing the cluster ---- */

struct cluster_ctx {
    const ft_call *call;
    int64_t now;
};

static int cluster_usable(void *arg, size_t index)
{
    const struct cluster_ctx *u = arg;
    return ft_health_set_usable_count(&u->call->targets[index].cluster->set, u->now) > 0;
}

/* When its first endpoint comes back (0: usable now); INT64_MAX for an empty cluster. */
static int64_t cluster_usable_in(const ft_cluster *cl, int64_t now)
{
    int64_t best = INT64_MAX;
    for (size_t i = 0; i < cl->n; i++) {
        int64_t in = ft_health_usable_in_ns(&cl->eps[i]->health, now);
        if (in < best) best = in;
    }
    return best;
}

int ft_selective_pick_target(ft_call *call, int64_t now)
{
    ft_selective *s = call->client->selective;
    struct cluster_ctx u = {call, now};
    uint64_t tried = 0; /* bit t: the call tried cluster t (FTRPC_SELECTIVE_MAX_CLUSTERS <= 64) */
    for (size_t i = 0; i < call->retry.ntried; i++)
        tried |= UINT64_C(1) << call->tried.target[i];
    if (!tried) {
        /* the first attempt: the balancer's choice among the clusters with a usable endpoint */
        ft_lb_pick req = {.key_hash = call->key_hash,
                          .has_key = call->has_key,
                          .usable = cluster_usable,
                          .usable_arg = &u};
        size_t idx;
        if (ft_lb_select(s->lb, &req, &idx) == 0) return (int)idx;
    } else {
        /* A retry or a backup: the next cluster after the last one tried, in the order given,
         * that has a usable endpoint and was not tried, else the next usable one. Not a balancer
         * pick: with "rr" it would take a ticket per attempt, and with two clusters and a backup
         * in every call all first attempts would land on the same cluster. */
        for (int pass = 0; pass < 2; pass++)
            for (int k = 1; k <= call->ntargets; k++) {
                int t = (call->retry.last_target + k) % call->ntargets;
                if ((pass == 1 || !(tried >> t & 1)) && cluster_usable(&u, (size_t)t)) return t;
            }
    }
    /* No cluster has a usable endpoint: as a plain client sends to the endpoint whose suspension
     * ends first, go to the cluster where that happens first (untried first), whose balancer
     * then falls back to that endpoint. */
    int best = -1, best_tried = 1;
    int64_t best_in = INT64_MAX;
    for (int t = 0; t < call->ntargets; t++) {
        int64_t in = cluster_usable_in(call->targets[t].cluster, now);
        if (in == INT64_MAX) continue; /* empty */
        int was_tried = (int)(tried >> t & 1);
        if (best < 0 || was_tried < best_tried || (was_tried == best_tried && in < best_in)) {
            best = t;
            best_tried = was_tried;
            best_in = in;
        }
    }
    return best;
}

/* ---- lifecycle ---- */

void ft_selective_free(ft_selective *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) {
        atomic_store(&s->subs[i]->owned, 0);
        ftrpc_client_free(s->subs[i]);
    }
    ft_lb_release(s->lb);
    free(s->names);
    free(s->subs);
    free(s);
}

/* The checks that need no allocation; 0 or FTRPC_EINVAL (logged). */
static int check_subs(ftrpc_client *const *subs, size_t n, const ftrpc_client_options *opts)
{
    if (!subs || n == 0 || n > FTRPC_SELECTIVE_MAX_CLUSTERS) {
        FT_WARN("selective client: needs 1 to %d sub-clients (got %zu%s)",
                FTRPC_SELECTIVE_MAX_CLUSTERS, n, subs ? "" : ", NULL array");
        return FTRPC_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!subs[i]) {
            FT_WARN("selective client: sub-client %zu is NULL", i);
            return FTRPC_EINVAL;
        }
        if (subs[i]->selective) {
            FT_WARN("selective client: sub-client %zu is itself selective (not supported)", i);
            return FTRPC_EINVAL;
        }
        if (subs[i]->rt != subs[0]->rt) {
            FT_WARN("selective client: sub-client %zu runs on another runtime than sub-client 0",
                    i);
            return FTRPC_EINVAL;
        }
        for (size_t j = 0; j < i; j++)
            if (subs[j] == subs[i]) {
                FT_WARN("selective client: sub-client %zu is listed twice", i);
                return FTRPC_EINVAL;
            }
    }
    if (opts && opts->runtime && opts->runtime != subs[0]->rt) {
        FT_WARN("selective client: options name another runtime than the sub-clients'");
        return FTRPC_EINVAL;
    }
    return 0;
}

static ft_selective *selective_new(ftrpc_client *const *subs, size_t n, const char *lb)
{
    ft_selective *s = calloc(1, sizeof *s);
    ft_lb_endpoint *eps = calloc(n, sizeof *eps);
    if (!s || !eps) goto fail;
    s->n = n;
    s->subs = malloc(n * sizeof *s->subs);
    s->names = calloc(n, sizeof *s->names);
    if (!s->subs || !s->names) goto fail;
    for (size_t i = 0; i < n; i++) {
        s->subs[i] = subs[i];
        snprintf(s->names[i], sizeof s->names[i], "cluster%zu", i);
        eps[i] = (ft_lb_endpoint){.id = subs[i], .addr = s->names[i]};
    }
    if (ft_lb_new(lb, eps, n, NULL, &s->lb) != 0) goto fail;
    free(eps);
    return s;
fail:
    if (s) {
        free(s->subs);
        free(s->names);
    }
    free(s);
    free(eps);
    return NULL;
}

int ftrpc_selective_client_new_sized(ftrpc_client *const *subs, size_t n,
                                     const ftrpc_client_options *opts_in, size_t opts_size,
                                     ftrpc_client **out)
{
    ftrpc_client_options o;
    if (!out || ft_sized_options_read(&o, sizeof o, opts_in, opts_size) != 0) return FTRPC_EINVAL;
    const ftrpc_client_options *opts = &o;
    int rc = check_subs(subs, n, opts);
    if (rc != 0) return rc;
    o.runtime = subs[0]->rt;
    if (!o.lb) o.lb = "rr"; /* brpc's SelectiveChannel examples; p2c sees no cluster latency */
    ftrpc_client *c = NULL;
    rc = ft_client_new_without_naming(&o, &c); /* validates the options */
    if (rc != 0) return rc;
    ft_selective *s = selective_new(subs, n, c->opts.lb);
    if (!s) {
        ftrpc_client_free(c);
        return FTRPC_ENOMEM;
    }
    /* take the sub-clients, all or none: another selective client may be taking one of them */
    for (size_t i = 0; i < n; i++) {
        int free_ = 0;
        if (atomic_compare_exchange_strong(&subs[i]->owned, &free_, 1)) continue;
        FT_WARN("selective client: sub-client %zu already belongs to a selective client", i);
        while (i-- > 0)
            atomic_store(&subs[i]->owned, 0);
        s->n = 0; /* owns none of them */
        ft_selective_free(s);
        ftrpc_client_free(c);
        return FTRPC_EINVAL;
    }
    c->selective = s;
    *out = c;
    return 0;
}
