/* The selective client (brpc's SelectiveChannel): one client over several clusters.
 *
 * Each cluster is a full ftrpc_client, made with ftrpc_client_new from its own naming URL and
 * options, so it keeps its own discovery, load balancer, endpoint health and connections. The
 * selective client is an ftrpc_client too: call it with ftrpc_call / ftrpc_call_async and free it
 * with ftrpc_client_free, as any client. For every attempt of a call, a balancer over the clusters
 * picks one (round robin by default), skipping clusters with no usable endpoint; then that
 * cluster's own balancer picks the endpoint. A retry (failover) and a backup request go to a
 * cluster the call has not tried yet while one is usable, so a slow or broken cluster costs a
 * call one attempt, not all of them. ftrpc_result.cluster says which cluster answered.
 *
 * The selective client's options decide how a call behaves (deadline, fail mode, retries, backoff,
 * backups, budget, fallback); the sub-clients' options decide how their endpoints are reached
 * (naming, balancer, health, connect timeout, credentials). See docs/backup-requests.md.
 */
#ifndef FTRPC_SELECTIVE_H
#define FTRPC_SELECTIVE_H

#include "ftrpc/client.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most sub-clients one selective client takes. */
#define FTRPC_SELECTIVE_MAX_CLUSTERS 64

/* Makes a selective client over subs[0 .. n-1].
 *
 * opts (may be NULL) are read as for ftrpc_client_new, with these differences:
 *   - lb names the balancer over the clusters (not over endpoints): "rr" (the default, as brpc's
 *     examples), "random", "wrr"/"wrandom" (equal weights), "chash" (ftrpc_call_options.hash_key
 *     picks the cluster), "priority" (the first cluster with a usable endpoint: a primary cluster
 *     and standbys), "p2c" (sees no latency across clusters: two random choices);
 *   - what a call does comes from here: timeout_ms, fail_mode, retries, attempt_timeout_ms,
 *     backoff, no_retry_codes, retry_classifier, retry_budget_*, backup_request_ms,
 *     backup_policy, max_attempts, tied, fallback; the sub-clients' values of these are not used
 *     by its calls;
 *   - how endpoints are reached comes from each sub-client: naming_wait_ms, connect_timeout_ms,
 *     max_body_size, max_unwritten_bytes, health, credential, auth_token and transport
 *     (TLS) options are ignored here;
 *   - runtime: NULL or the sub-clients' runtime; every sub-client must use the same runtime
 *     (a call lives on one IO thread and uses the sub-clients' connections of that thread).
 *
 * Ownership: on success the selective client owns every sub-client and frees them in its
 * ftrpc_client_free, after its own calls ended (brpc's SelectiveChannel owns its sub-channels
 * too). From then on ftrpc_client_free(sub) is refused (logged, nothing freed); the sub-clients
 * may still be called directly until the selective client is freed. On failure nothing is taken:
 * the caller still owns every sub-client. *out is the caller's; free it with ftrpc_client_free.
 *
 * Errors: FTRPC_EINVAL (logged) for subs or out NULL, n of 0 or above
 * FTRPC_SELECTIVE_MAX_CLUSTERS, a NULL or repeated sub-client, a sub-client that is itself
 * selective or already belongs to one, sub-clients on different runtimes, bad options;
 * FTRPC_ENOMEM. Any thread. */
FTRPC_API int ftrpc_selective_client_new_sized(ftrpc_client *const *subs, size_t n,
                                               const ftrpc_client_options *opts, size_t opts_size,
                                               ftrpc_client **out);
static inline int ftrpc_selective_client_new(ftrpc_client *const *subs, size_t n,
                                             const ftrpc_client_options *opts, ftrpc_client **out)
{
    return ftrpc_selective_client_new_sized(subs, n, opts, sizeof(ftrpc_client_options), out);
}

#ifdef __cplusplus
}
#endif
#endif
