/* A cluster: the endpoints of one service as a call sees them, with their health, the health set
 * that caps how many may be suspended at once, and a load balancer over them. Immutable once
 * built: a discovery update builds a new cluster from the naming snapshot and the previous cluster,
 * keeping the endpoints still listed (their health, and the connections the layer above keeps for
 * them, carry over). A call pins one cluster for its whole life, so the indices its attempts
 * excluded keep their meaning across retries.
 *
 * The layer above (the client) keeps state of its own per endpoint (its address as a socket
 * address, its connections): it embeds ft_cluster_endpoint first in a struct of its own, which the
 * cluster allocates and frees through the ops it is given. The cluster never sees a socket.
 *
 * Threads: building runs on one thread (discovery's); a built cluster is read from any thread.
 * Endpoints and clusters are reference-counted: every cluster that lists an endpoint holds one
 * reference, and the layer above may take more (a connection to it does).
 *
 * Not here: how a call borrows the current cluster (the client's per-loop cell), connections. */
#ifndef FT_CLUSTER_CLUSTER_H
#define FT_CLUSTER_CLUSTER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/endpoint_health.h"
#include "cluster/health_set.h"
#include "cluster/lb.h"
#include "naming/naming_view.h"

typedef struct ft_cluster_endpoint ft_cluster_endpoint;

/* How the layer above makes and frees its endpoints. */
typedef struct ft_cluster_endpoint_ops {
    /* Allocates a zeroed struct that starts with ft_cluster_endpoint and fills the layer's own
     * fields for spec; the cluster fills the base. NULL when it cannot (it logs why). */
    ft_cluster_endpoint *(*make)(const ft_endpoint *spec, void *arg);
    /* Frees what make allocated, the struct included (the base is finalised already). */
    void (*destroy)(ft_cluster_endpoint *ep, void *arg);
    /* May be NULL. Adjusts a new endpoint's health options (a copy of the cluster's) for that
     * endpoint, e.g. its own error codes; runs before the health is made. */
    void (*health_options)(const ft_endpoint *spec, ft_health_options *ho, void *arg);
    void *arg;
} ft_cluster_endpoint_ops;

/* Attempts in flight to an endpoint, one padded cell per IO thread: a thread writes its own cell
 * with a load and a store (no locked add); readers (p2c, the endpoints page) sum the cells. */
typedef struct ft_shard_count {
    atomic_int n;
    char pad[64 - sizeof(int)];
} ft_shard_count;

/* One endpoint of the service. Its health is thread-safe; `removed` is set when it is no longer
 * listed (the layer above then closes its idle connections); the rest is immutable. */
struct ft_cluster_endpoint {
    char name[64]; /* "ip:port" as the naming service listed it */
    uint32_t weight;
    ft_endpoint_health health;
    atomic_int refs;
    atomic_int removed;
    ft_shard_count *inflight; /* [nshards] */
    int nshards;
    const ft_cluster_endpoint_ops *ops;
};

typedef struct ft_cluster_options {
    const char *lb;                  /* the balancer's name (NULL: the default) */
    const ft_health_options *health; /* each new endpoint's health options */
    double max_suspended_ratio;      /* the health set's cap */
    int breaker_reject;              /* the health set's breaker rejection (health_set.h) */
    int nshards;                     /* in-flight cells per endpoint: the IO threads */
    int priority_sticky;             /* the balancer's option (lb.h, ft_lb_options) */
    const ft_cluster_endpoint_ops *ops;
} ft_cluster_options;

typedef struct ft_cluster {
    atomic_int refs;
    uint64_t version; /* the naming snapshot's */
    size_t n;
    ft_cluster_endpoint **eps;
    ft_health_set set;
    ft_lb *lb;
    /* Open addressing on the endpoints' names (hash of the name, linear probing): index + 1 of
     * eps, 0 for an empty cell; mask + 1 cells, at least twice n. So that the next build and the
     * client's retirement of the endpoints that left cost O(N), not O(N^2) string compares. */
    uint32_t *by_name;
    size_t by_name_mask;
} ft_cluster;

/* The cluster's endpoint named `name` (the first, if the snapshot listed it twice), or NULL. Any
 * thread holding a reference. O(1) expected. */
ft_cluster_endpoint *ft_cluster_find(const ft_cluster *cl, const char *name);

/* Builds the cluster for a snapshot, reusing the endpoints of prev (may be NULL) whose name is
 * still listed. An endpoint that cannot be made is left out (logged). One reference, the
 * caller's; NULL on allocation failure. */
ft_cluster *ft_cluster_build(const ft_cluster_options *opts, const ft_naming_snapshot *snap,
                             const ft_cluster *prev);
/* Takes a reference. Any thread. */
static inline void ft_cluster_retain(ft_cluster *cl)
{
    atomic_fetch_add_explicit(&cl->refs, 1, memory_order_relaxed);
}
/* Drops a reference; the last frees the cluster and its references to its endpoints. NULL does
 * nothing. Any thread. */
void ft_cluster_release(ft_cluster *cl);

static inline void ft_cluster_endpoint_retain(ft_cluster_endpoint *ep)
{
    atomic_fetch_add_explicit(&ep->refs, 1, memory_order_relaxed);
}
/* Drops a reference; the last finalises the base and hands the endpoint to its ops' destroy. */
void ft_cluster_endpoint_release(ft_cluster_endpoint *ep);

/* The shard's in-flight count moves by delta; only the thread that owns shard writes it. */
static inline void ft_cluster_endpoint_inflight_add(ft_cluster_endpoint *ep, int shard, int delta)
{
    atomic_int *n = &ep->inflight[shard].n;
    atomic_store_explicit(n, atomic_load_explicit(n, memory_order_relaxed) + delta,
                          memory_order_relaxed);
}
/* Attempts in flight to ep, summed over the shards. Any thread. */
int ft_cluster_endpoint_inflight(const ft_cluster_endpoint *ep);

#endif
