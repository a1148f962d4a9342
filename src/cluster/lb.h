/* Load balancers: given an immutable snapshot of a service's endpoints, pick one for an attempt.
 *
 * A balancer (ft_lb) is built by name from a snapshot of endpoints and never changes its endpoint
 * set afterwards; a new set means a new balancer, published with the cluster it belongs to
 * (cluster/cluster.h). Each
 * pick (ft_lb_select) receives, from the caller, everything that belongs to the call rather than to
 * the balancer: the key for consistent hashing, the endpoints this call already tried (excluded),
 * the health predicate (usable) and the random state. The balancer never decides health: it only
 * asks `usable`, and it never blocks on I/O.
 *
 * Algorithms (name: behaviour; see docs/load-balancing.md for when to use which):
 *   "random"   uniform over usable endpoints
 *   "rr"       round robin, shared atomic counters; one turn per call (not per attempt); a down
 *              endpoint's turns are dropped, so its share spreads evenly over the others
 *   "wrr"      smooth weighted round robin, nginx's sequence (precomputed schedule, lock-free)
 *   "wrandom"  weighted random (an alias table: O(1) a pick)
 *   "chash"    consistent hashing by Maglev's lookup table; the key travels in each pick
 *   "p2c"      power of two choices with peak-EWMA cost, as Finagle/linkerd (the default)
 *   "priority" the first usable endpoint in list order (WSO2's failover group); optionally sticky
 *
 * Invariants: every index the API takes or returns is an index into the snapshot the balancer was
 * built from (0 .. ft_lb_size() - 1). A call must therefore pin one balancer (its cluster) for all
 * its attempts, so that its excluded indices keep their meaning across retries.
 *
 * Threads: ft_lb_select may run concurrently on any number of threads on the same balancer.
 * Creation and the last release happen on one thread.
 *
 * Not here: health (endpoint_health.*), connection handling, the choice of what to do when no
 * endpoint is usable (the caller's fallback rule), and latency bookkeeping (the health module owns
 * the EWMA and in-flight figures; balancers only read them). */
#ifndef FT_CLUSTER_LB_H
#define FT_CLUSTER_LB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "base/rand.h"
#include "ftrpc/common.h"

/* Weight used when an endpoint's weight is 0 (as brpc's and Dubbo's default of 100). */
#define FT_LB_DEFAULT_WEIGHT 100u
/* Largest accepted weight; above it ft_lb_new returns FTRPC_EINVAL. Bounds sums and table sizes. */
#define FT_LB_MAX_WEIGHT 100000u
/* Exclusion lists longer than this are refused (FTRPC_EINVAL): they are scanned on every probe. */
#define FT_LB_MAX_EXCLUDED 16u
/* "p2c": what an endpoint whose recent attempts all failed adds to its cost, in us of latency:
 * 1 s, the default call deadline (what a failure may cost a caller). A node that fails one attempt
 * in ten pays 100 ms, more than a healthy node's answer and queue, and one failure among a busy
 * node's thousands of successes next to nothing. */
#define FT_LB_P2C_FAILURE_PENALTY_US 1e6

/* One endpoint of the snapshot handed to ft_lb_new. The balancer copies the struct and the address
 * string; it does not copy what id, ewma_latency_us and inflight point to: those must stay valid
 * until the balancer's last reference is released (the health module owns them and outlives the
 * balancers built over it). */
typedef struct ft_lb_endpoint {
    /* Opaque to the balancer: the caller's handle for the endpoint (e.g. its health record). */
    void *id;
    /* "host:port" or any stable name: consistent hashing places the endpoint's table slots by
     * hashing it, so the same set of addresses gives the same table in every snapshot and process.
     * Required (non-NULL) for "chash"; may be NULL for the others. */
    const char *addr;
    /* Relative weight, 1 .. FT_LB_MAX_WEIGHT; 0 means FT_LB_DEFAULT_WEIGHT. Used by "wrr",
     * "wrandom" and "chash" (share of table slots); ignored by the others. */
    uint32_t weight;
    /* Peak-EWMA latency in microseconds, updated atomically by the health module; 0 means "no
     * sample yet". Read (relaxed) by "p2c" only. NULL is read as 0. */
    const _Atomic int64_t *ewma_latency_us;
    /* When that figure was last updated (ns, the clock of ft_lb_pick.now_ns) and its decay time
     * constant (ns): "p2c" decays an idle endpoint's figure toward 0 at read time, as Finagle's
     * PeakEwma does, so a node that had one slow answer and is then never picked recovers. NULL or
     * 0: read as it is. */
    const _Atomic int64_t *ewma_stamp_ns;
    int64_t ewma_decay_ns;
    /* Share of the endpoint's recent attempts that failed, in millionths (0 .. 1,000,000), kept by
     * the health module with the EWMA's stamp and decay. Read (relaxed) by "p2c" only, which adds
     * ratio x FT_LB_P2C_FAILURE_PENALTY_US to the cost, so that a node failing fast (a refused
     * connect, an overload rejection) is not the cheapest. NULL is read as 0. */
    const _Atomic int64_t *failure_ppm;
    /* Requests currently in flight to the endpoint, updated atomically by its owner. Read (relaxed)
     * by "p2c" only. NULL is read as 0. With inflight_shards > 1 the figure is the sum of that many
     * counters, inflight_stride bytes apart (one per IO loop, so that each loop counts its own
     * without a locked add); 0 or 1: the one counter. */
    const atomic_int *inflight;
    size_t inflight_shards;
    size_t inflight_stride;
} ft_lb_endpoint;

/* Creation options; a zeroed struct (or NULL) means every default. */
typedef struct ft_lb_options {
    /* "chash": the least number of slots of the Maglev table; rounded up to the next of its
     * primes (65,537 .. 16,777,213), and never below 64 slots per endpoint. Default 0: 65,537
     * (Envoy's and Maglev's default), or more at above 1,024 endpoints. */
    uint32_t chash_table_size;
    /* "wrr": largest precomputed schedule, in slots. Default 1 << 20 (4 MiB). When the smooth
     * sequence's period (sum of weights / their gcd) is longer, or building it would take more than
     * 2^27 steps, the balancer runs nginx's O(N) loop under a mutex instead (exact, but slower). */
    uint32_t wrr_max_schedule;
    /* "priority": 0 (default) picks the first usable endpoint in list order on every pick; nonzero
     * is sticky (WSO2's dynamic="false"): picks stay on the endpoint last moved to while it is
     * usable, and move (to the first usable in list order) only when it is not. */
    int priority_sticky;
} ft_lb_options;

/* The health predicate: nonzero when the endpoint at `index` may take this attempt. Called on the
 * picking thread, possibly several times per pick and for several indices; it must be cheap, must
 * not block and must not call back into the balancer. */
typedef int (*ft_lb_usable_fn)(void *arg, size_t index);

/* One pick's request. Zero-initialise it and set what applies; it is only read during the call. */
typedef struct ft_lb_pick {
    /* "chash": the request key's hash, ft_hash64(key, len, 0) (base/hash.h); used only when has_key
     * is nonzero. Without a key "chash" picks a random table slot (no affinity). */
    uint64_t key_hash;
    int has_key;
    /* Indices this call already tried, at most FT_LB_MAX_EXCLUDED; duplicates are harmless. A pick
     * with exclusions is a later pick of the call: "rr" takes no turn of its rotation of first
     * attempts for it (it has a second rotation for those), so retries and backups leave the
     * spread of calls alone. */
    const size_t *excluded;
    size_t n_excluded;
    /* Health predicate; NULL means every endpoint is usable. */
    ft_lb_usable_fn usable;
    void *usable_arg;
    /* Random state for this pick ("random", "wrandom", "p2c", keyless "chash", and the fallback
     * scan of "rr" and "wrr"); NULL means the calling thread's generator (ft_rand_thread). Tests
     * pass a seeded one. */
    ft_rand *rng;
    /* When every usable endpoint is excluded: 0 (default) fails with FTRPC_ENOENDPOINT; nonzero
     * picks among the usable excluded ones as if nothing were excluded (a retry may then go back to
     * a node it tried, which is better than failing when the call has budget left and it is the
     * only one up). */
    int allow_excluded_fallback;
    /* The current time for "p2c"'s decay of stale EWMA figures (same clock as ewma_stamp_ns);
     * 0 reads the figures without decay. */
    int64_t now_ns;
} ft_lb_pick;

typedef struct ft_lb ft_lb;

/* Builds a balancer of algorithm `name` over a copy of eps[0 .. n - 1] (n may be 0: every pick then
 * fails with FTRPC_ENOENDPOINT). opts may be NULL. On success *out holds one reference, released
 * with ft_lb_release. Errors: FTRPC_EINVAL (unknown name, NULL name or out, eps NULL with n > 0,
 * weight above FT_LB_MAX_WEIGHT, "chash" with a NULL addr), FTRPC_ENOMEM. Any thread. Cost: O(N)
 * for most, O(N log N) for "wrandom", O(M log M) for "chash" (M table slots, 65,537 up to 1,024
 * endpoints: under 1 ms), O(period x distinct weights) for "wrr". */
int ft_lb_new(const char *name, const ft_lb_endpoint *eps, size_t n, const ft_lb_options *opts,
              ft_lb **out);

/* Takes one more reference. Any thread that already holds one. */
void ft_lb_retain(ft_lb *lb);
/* Drops one reference; the last one frees the balancer. NULL does nothing. Any thread. */
void ft_lb_release(ft_lb *lb);

/* Picks an endpoint for one attempt and writes its index to *out_index (only on success).
 * Never returns an excluded index unless req->allow_excluded_fallback applies, and never one for
 * which req->usable said 0 during this pick.
 * Returns 0; FTRPC_ENOENDPOINT when no non-excluded endpoint is usable (and the fallback does not
 * apply or finds none); FTRPC_EINVAL for NULL arguments or too many exclusions.
 * Any thread, concurrently. Cost: O(1) expected while most endpoints are usable; a pick whose first
 * few probes all fail falls back to one O(N) scan (O(table) for "chash"), so its cost degrades
 * gracefully as health drops but never loops forever. */
int ft_lb_select(ft_lb *lb, const ft_lb_pick *req, size_t *out_index);

/* The algorithm's name as given to ft_lb_new ("p2c", ...). */
const char *ft_lb_name(const ft_lb *lb);
/* Number of endpoints in the snapshot. */
size_t ft_lb_size(const ft_lb *lb);
/* The snapshot's endpoint at index (a copy of what was passed in, addr pointing at the balancer's
 * own copy; weight already defaulted); NULL when out of range. Valid while the reference is held.
 */
const ft_lb_endpoint *ft_lb_endpoint_at(const ft_lb *lb, size_t index);
/* Nonzero when name is one of the algorithms above. */
int ft_lb_name_valid(const char *name);
/* The default algorithm's name: "p2c". */
const char *ft_lb_default_name(void);

#endif
