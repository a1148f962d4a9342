/* "rr": round robin over the usable, non-excluded endpoints.
 *
 * One atomic counter shared by every picking thread hands out consecutive tickets, ticket t falling
 * on endpoint t % N, so with all endpoints usable K picks from any mix of threads spread exactly
 * evenly (each endpoint gets floor or ceil of K / N). A ticket that falls on an unusable or
 * excluded endpoint is dropped and the pick takes the next one (ft_lb_ticket_pick): each usable
 * endpoint still gets exactly its own tickets, so a down endpoint's share is spread evenly over the
 * others, as in Envoy's and Finagle's round robin. Walking forward from the down endpoint instead,
 * as brpc's and nginx's round robin do, handed its whole share to the endpoint after it: with one
 * of three down, that one served two thirds of the calls, twice the other's load, which invites a
 * cascade. Past FT_LB_TICKET_PROBES refused tickets in a row a uniform scan decides. Weights
 * ignored.
 *
 * A pick with exclusions is a later pick of a call that already has an endpoint (a retry, a
 * backup, or another go after a refused claim), and takes its ticket from a second counter: the
 * rotation of first attempts is one turn per call, not per attempt. With one counter for both,
 * two endpoints and a backup in every call, ticket 2k went to each first attempt and 2k + 1 to its
 * backup, so every call started on endpoint 0. The later picks still rotate among themselves, so
 * the retries of calls that failed on one endpoint spread over the others.
 *
 * Each counter has its own cache line, so it does not drag the snapshot's lines between cores. */
#include "cluster/lb_impl.h"

#include <stdalign.h>
#include <stdlib.h>

#include "base/aligned_alloc.h"

typedef struct rr_state {
    alignas(64) _Atomic uint64_t next;  /* picks without exclusions: the first of each call */
    alignas(64) _Atomic uint64_t later; /* picks with exclusions: retries and backups */
} rr_state;

static int rr_init(ft_lb *lb, const ft_lb_options *opts)
{
    rr_state *st = ft_aligned_calloc(1, sizeof *st, alignof(rr_state));
    if (st == NULL) return FTRPC_ENOMEM;
    atomic_init(&st->next, 0);
    atomic_init(&st->later, 0);
    lb->impl = st;
    return 0;
}

static void rr_fini(ft_lb *lb)
{
    free(lb->impl);
}

static int rr_select(ft_lb *lb, const ft_lb_pick *req, ft_rand *rng, size_t *out)
{
    rr_state *st = lb->impl;
    _Atomic uint64_t *counter = req->n_excluded > 0 ? &st->later : &st->next;
    return ft_lb_ticket_pick(lb, req, rng, counter, NULL, lb->n, 0, out);
}

const ft_lb_ops ft_lb_rr_ops = {
    .name = "rr",
    .init = rr_init,
    .fini = rr_fini,
    .select = rr_select,
};
