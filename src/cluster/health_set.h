/* The service-level rules over the endpoints of one service: a cap on how many may be suspended
 * at once, and what to do when none is usable.
 *
 * The cap: at most limit = max(1, floor(max_suspended_ratio * count)) endpoints are SUSPENDED or
 * PROBING at the same time. An endpoint that would be suspended while the cap is full is put in
 * (or left in) TIMEOUT instead, usable at once (retry_delay does not apply); a success clears it,
 * and its next failure asks the cap again, which succeeds once another endpoint has come back.
 * "At least one" keeps a dead node of a small service (1 to 3 endpoints) from being used forever,
 * as Envoy ejects at least one host whatever max_ejection_percent says. The cap is for uncertain
 * verdicts (timeouts, errors, breaker trips): an endpoint that refuses connections is suspended
 * past it and holds no slot (endpoint_health.h).
 *
 * All unusable: ft_health_set_fallback picks the endpoint whose suspension ends first (smallest
 * ft_health_usable_in_ns, lowest index on a tie) and lets the call through anyway, rather than
 * failing with FTRPC_ENOENDPOINT. That call is the endpoint's probe when it is SUSPENDED, so one
 * success brings it back. An endpoint an operator switched OFF is never chosen.
 *
 * Breaker rejection (Kitex's and Hystrix's open circuit): when every endpoint is open by its
 * breaker (ft_health_breaker_open), the fallback refuses with FTRPC_EBREAKER instead, unless
 * breaker_reject is -1. Only the breaker's suspensions reject: an endpoint that trips its breaker
 * still answers, with errors, usually because it is overloaded, and sending more is what a breaker
 * exists to stop (the probe at the end of its suspension is the half-open step). An endpoint
 * suspended for refused connections or timeouts is sent to anyway, as before: an early probe costs
 * a refused connect (no server work) and brings a restarted node back at once, where rejecting
 * would keep it out for the rest of a suspension of up to 30 s. With the cap, every endpoint can be
 * open at once only when the limit allows it: a single endpoint, or max_suspended_ratio = 1.
 *
 * Threads: the set is built and torn down by one thread (the one that owns the service's endpoint
 * list) while no call uses it; between init and fini every function may be called from any thread.
 * The set does not own the endpoints; an endpoint belongs to at most one set at a time.
 *
 * Not here: choosing among usable endpoints (the load balancers do, reading the same health).
 */
#ifndef FT_CLUSTER_HEALTH_SET_H
#define FT_CLUSTER_HEALTH_SET_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/endpoint_health.h"

/* max_suspended_ratio value for "no cap": every endpoint may be suspended (as 1). */
#define FT_HEALTH_SET_NO_CAP (-1.0)

/* Zero means default. */
typedef struct ft_health_set_options {
    /* Share of the endpoints that may be suspended at once; (0, 1], or FT_HEALTH_SET_NO_CAP.
     * Default 0.5: Envoy's 10% suits
     * large meshes behind a proxy, but in a 3-to-10-node RPC service it would let at most one node
     * go however many are dead; half keeps a majority in rotation, so a client-side fault that
     * makes every endpoint look bad (its own network, its own GC) cannot empty the service. */
    double max_suspended_ratio;
    /* Default 0: reject with FTRPC_EBREAKER when every endpoint is open by its breaker (Kitex,
     * Hystrix); -1: send anyway to the endpoint whose suspension ends first (ftrpc's rule before
     * the option); 1: the default, said explicitly. */
    int breaker_reject;
} ft_health_set_options;

typedef struct ft_health_set {
    ft_endpoint_health **endpoints; /* not owned; immutable between init and fini */
    size_t count;
    ft_health_set_options opts; /* defaults filled in */
    ft_suspension_cap cap;
} ft_health_set;

/* 0, or FTRPC_EINVAL with the reason logged. `opts` may be NULL. */
int ft_health_set_options_validate(const ft_health_set_options *opts);

/* Attaches `count` endpoints (the array is copied; the endpoints must outlive the set) to one
 * cap. Slots the endpoints already hold move with them. 0, FTRPC_EINVAL or FTRPC_ENOMEM. */
int ft_health_set_init(ft_health_set *set, const ft_health_set_options *opts,
                       ft_endpoint_health *const *endpoints, size_t count);
/* Detaches the endpoints (they keep their state, uncapped) and frees the copy of the array. */
void ft_health_set_fini(ft_health_set *set);

/* limit above, and how many slots are held now (SUSPENDED or PROBING endpoints). */
int ft_health_set_suspension_limit(const ft_health_set *set);
int ft_health_set_suspended(const ft_health_set *set);

/* How many endpoints ft_health_usable says yes to at now_ns. */
size_t ft_health_set_usable_count(const ft_health_set *set, int64_t now_ns);

/* The endpoint whose suspension (or retry delay) ends first, the lowest index on a tie, without
 * claiming it: its index to *index_out and how long until it is usable to *wait_ns_out (0: now).
 * Endpoints switched OFF never qualify. FTRPC_ENOENDPOINT when the set is empty or all are OFF. */
int ft_health_set_soonest(const ft_health_set *set, int64_t now_ns, size_t *index_out,
                          int64_t *wait_ns_out);

/* For when no endpoint is usable: writes the index of the one whose suspension ends first to
 * *index_out and claims it with ft_health_acquire_anyway (the grant goes to *grant_out, which may
 * be NULL). FTRPC_ENOENDPOINT only when the set is empty or every endpoint is switched OFF;
 * FTRPC_EBREAKER, claiming nothing, when every endpoint is open by its breaker and breaker_reject
 * is not -1. */
int ft_health_set_fallback(ft_health_set *set, int64_t now_ns, size_t *index_out,
                           ft_health_grant *grant_out);

#endif
