/* Where a call's attempts go (its targets), and the selective client that gives a call several.
 *
 * A plain client's call has one target: the client's current cluster. A selective client's call
 * has one per sub-client (ftrpc/selective.h), each that sub-client's current cluster, pinned for
 * the call's life; for each attempt a balancer over the clusters picks the target before that
 * cluster's balancer picks the endpoint (call.c, choose_endpoint). */
#ifndef FT_CLIENT_SELECTIVE_H
#define FT_CLIENT_SELECTIVE_H

#include <stdint.h>

#include "client/client_internal.h"

typedef struct ft_selective ft_selective;

/* On the call's loop, when it starts: pins the targets (call->targets, ntargets) and sets the
 * free re-sends to the number of endpoints over all of them. 0, or FTRPC_ENOMEM (nothing pinned).
 */
int ft_call_targets_acquire(ft_call *call);
/* Releases what ft_call_targets_acquire pinned; nothing when it pinned nothing. */
void ft_call_targets_release(ft_call *call);

/* A selective client's call (ntargets > 1): the target of the next attempt. The first attempt:
 * the cluster balancer's pick among clusters with a usable endpoint. A retry or backup: the next
 * cluster after the last one tried (in the given order) with a usable endpoint, untried first.
 * Nothing usable anywhere: the non-empty cluster whose first endpoint comes back soonest, untried
 * first. -1 when every cluster is empty. Call's loop only. */
int ft_selective_pick_target(ft_call *call, int64_t now);

/* Frees the sub-clients (ftrpc_client_free each) and the balancer. NULL does nothing. Called by
 * ftrpc_client_free once no call of the selective client is left. */
void ft_selective_free(ft_selective *s);

#endif
