/* The call engine: one call, its attempts, and what happens when an attempt fails (the path of a
 * call: docs/architecture.md, One call through the files).
 *
 * A call is made on any thread, then lives on its home loop: its deadline, its attempts, its
 * backoff and its completion all run there, so none of them needs a lock. Each attempt picks an
 * endpoint through the load balancer (asking endpoint health which ones are usable), sends one
 * request, and reports its outcome to that endpoint's health. The fail mode decides what a failed
 * attempt leads to: failfast ends the call, failover retries on an endpoint not tried yet, failtry
 * retries on the same one. Retries are bounded by `retries`, the deadline, and the client's retry
 * budget; a request that never reached the wire (its connection was refused) is re-sent without
 * using up a retry, and draws on the budget only when no untried endpoint is usable, so that a
 * dead cluster is not hammered (fail_policy.h).
 *
 * Where attempts go is the call's targets: one cluster for a plain client; one per sub-client for
 * a selective client (selective.c), which picks the cluster of each attempt (for a retry or a
 * backup, one the call has not tried while one is usable) before that cluster's own balancer
 * picks the endpoint.
 *
 * Hedging (failbackup): the first copy is followed by another every backup delay, and at once
 * when a copy fails with an error a retry may cure, up to max_attempts copies (2 by default: one
 * backup, brpc's rule); a tied call (ftrpc_tied) sends its second copy at once, and the first
 * server to start executing its copy says so (ft_call_on_started), which cancels the others.
 *
 * Invariants: a call completes exactly once (complete_call) and nothing refers to it afterwards;
 * at most nslots attempts of a call are in flight (the first copy and its hedges; a retry starts
 * only once none is); an attempt in flight is counted once in its endpoint's in-flight figure and
 * reports exactly one result to its health.
 */
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

#include "base/sized_options.h"
#include "base/call_context.h"
#include "base/clock.h"
#include "base/event.h"
#include "base/hash.h"
#include "base/log.h"
#include "base/rand.h"
#include "client/backup_policy.h"
#include "client/client_internal.h"
#include "client/selective.h"

/* ---- results ---- */

void ftrpc_result_fini(ftrpc_result *r)
{
    if (!r) return;
    ftrpc_buf_free(r->response);
    ftrpc_buf_free(r->attachment);
    r->response = NULL;
    r->attachment = NULL;
}

/* ---- attempts ---- */

static int attempts_in_flight(const ft_call *call)
{
    int n = 0;
    for (int i = 0; i < call->nslots; i++)
        n += call->slot[i].in_flight;
    return n;
}

/* Takes the attempt out of its connection's map and stops its timer: a late response is dropped. */
static void detach_attempt(ft_attempt *a)
{
    ft_timer_stop(a->call->loop, &a->timer);
    if (a->cc) {
        ft_cconn *cc = a->cc;
        ft_idmap_take(&cc->pending, a->cid);
        a->cc = NULL;
        ft_client_close_if_retired(cc); /* no answer may ever come to notice it is idle */
    }
}

/* Settles the attempt: reports its outcome to its endpoint's health, once. `code` as
 * ft_health_on_result wants it: 0, a positive business code, or a negative RPC error; health is
 * told health_code (the same but for an overload answer that carried a pushback, which the hold
 * handles and the breaker is not told: docs/overload-client.md). */
static void settle_attempt_as(ft_attempt *a, int code, int health_code)
{
    if (!a->in_flight) return;
    a->in_flight = 0;
    ft_cluster_endpoint *ep = a->call->targets[a->target].cluster->eps[a->endpoint];
    int64_t now = ft_loop_now(a->call->loop);
    ft_cluster_endpoint_inflight_add(ep, a->call->loop->index, -1);
    ft_health_on_result(&ep->health, health_code, (now - a->sent_ns) / 1000, now);
    if (a->call->rpcz && a->rpcz >= 0) {
        a->call->rpcz_att[a->rpcz].done_ns = now;
        a->call->rpcz_att[a->rpcz].code = code;
    }
}

static void settle_attempt(ft_attempt *a, int code)
{
    settle_attempt_as(a, code, code);
}

/* The loser of a race (or an attempt outlived by its call) may still sit in a server's queue: tell
 * that server, on the same connection, so it can drop the work (docs/protocol.md, Cancellation).
 * The cancel's own answer finds no pending attempt and is dropped, unless it says the server has
 * no such method (a brpc server, whose error counter each cancel raises): then the endpoint gets
 * no more cancels (client.c, cconn_on_read). */
static void send_cancel(ft_attempt *a)
{
    if (a->call->rpcz && a->rpcz >= 0) a->call->rpcz_att[a->rpcz].cancelled = 1;
    ft_cconn *cc = a->cc;
    if (cc && cc->grpc && cc->conn->state == FT_CONN_OPEN) {
        ft_grpc_cconn_cancel(cc, a->cid); /* RST_STREAM: gRPC's own cancellation */
        return;
    }
    if (!cc || cc->conn->state != FT_CONN_OPEN ||
        atomic_load_explicit(&cc->ep->no_cancel, memory_order_relaxed))
        return;
    uint8_t payload[8];
    for (int i = 0; i < 8; i++)
        payload[i] = (uint8_t)((uint64_t)a->cid >> (56 - 8 * i));
    if (ft_client_send_control(cc, FT_CONTROL_CANCEL, payload, sizeof payload, 1000) == 0) {
        /* the correlation id it went out with, so that its answer is recognised */
        cc->cancel_cids[cc->cancel_next++ % FT_CCONN_CANCEL_CIDS] = cc->last_cid;
        atomic_fetch_add_explicit(&a->call->client->cancels, 1, memory_order_relaxed);
    }
}

/* ---- fallback ---- */

/* Lets the call's fallback replace the outcome in *r (Kitex's rules: neither = the original
 * stands; both = only the error; an error may be returned). *reported is what the metrics count:
 * the original, unless report_as_fallback is set and the original is an RPC error, which is then
 * reported as whatever the fallback made of it (Kitex: reportErr = fbErr); a success or a business
 * error is reported as itself either way. */
static void run_fallback(ft_call *call, ftrpc_result *r, ft_call_report *reported)
{
    const ftrpc_fallback *fb = &call->fallback;
    if (!ft_fail_fallback_applies(fb, r)) return;
    ftrpc_fallback_input in = {call->service, call->method, &call->request, r};
    ftrpc_fallback_output out = {0};
    fb->fn(&in, &out, fb->arg);
    ftrpc_result_kind original = r->kind;
    if (out.error_code != 0) {
        ftrpc_buf_free(out.response);
        ftrpc_result_fini(r);
        r->kind = out.error_code < 0 && out.error_code > -FTRPC_BUSINESS_CODE_MIN
                      ? FTRPC_RESULT_RPC_ERROR
                      : FTRPC_RESULT_BUSINESS_ERROR;
        r->code = out.error_code;
        snprintf(r->error_text, sizeof r->error_text, "%s",
                 out.error_text[0] ? out.error_text
                                   : (out.error_code < 0 ? ftrpc_strerror(out.error_code) : ""));
        r->from_fallback = 1;
        if (fb->report_as_fallback && original == FTRPC_RESULT_RPC_ERROR) reported->kind = r->kind;
    } else if (out.response) {
        ftrpc_result_fini(r);
        r->kind = FTRPC_RESULT_OK;
        r->code = 0;
        r->error_text[0] = '\0';
        r->response = out.response;
        r->attachment = ftrpc_buf_new();
        r->from_fallback = 1;
        if (fb->report_as_fallback && original == FTRPC_RESULT_RPC_ERROR)
            reported->kind = FTRPC_RESULT_OK;
    }
}

/* ---- call objects ----
 *
 * A call is freed on its home loop, so each loop of the client keeps the calls it finished for
 * reuse by the next call made on that loop (an async call issued from a callback, the common case
 * of a busy client): no malloc and free per call. Calls made on other threads are malloc'ed and
 * land in the cache when they finish. */

enum { CALL_CACHE_MAX = 256 };

/* Zeroes a call but for the fields written before they are read (client_internal.h). */
static void call_zero(ft_call *call)
{
    memset(call, 0, offsetof(ft_call, request));
}

static ft_call *call_alloc(ftrpc_client *c, ft_loop *loop, size_t names)
{
    if (names > FT_CALL_NAMES_MAX) {
        ft_call *call = malloc(sizeof *call + names);
        if (call) call_zero(call);
        return call;
    }
    ft_client_loop *cl = &c->loops[loop->index];
    ft_call *call = NULL;
    if (ft_loop_current() == loop && cl->free_calls) {
        call = cl->free_calls;
        cl->free_calls = *(ft_call **)call; /* the link lives in the call's first bytes */
        cl->nfree_calls--;
    } else {
        call = malloc(sizeof *call + FT_CALL_NAMES_MAX);
    }
    if (call) {
        call_zero(call);
        call->standard_size = 1;
    }
    return call;
}

/* On the call's home loop (or on the caller's thread before the call was submitted). */
static void call_release(ft_call *call)
{
    ft_client_loop *cl = &call->client->loops[call->loop->index];
    if (!call->standard_size || cl->nfree_calls >= CALL_CACHE_MAX ||
        ft_loop_current() != call->loop) {
        free(call);
        return;
    }
    *(ft_call **)call = cl->free_calls;
    cl->free_calls = call;
    cl->nfree_calls++;
}

void ft_call_cache_drain(ft_client_loop *cl)
{
    while (cl->free_calls) {
        ft_call *call = cl->free_calls;
        cl->free_calls = *(ft_call **)call;
        free(call);
    }
    cl->nfree_calls = 0;
}

/* ---- rpcz (metrics/rpcz.h) ---- */

/* A sent attempt gets the call's next rpcz entry while there is one. */
/* The loop's time, never before the call's start: a call started on another thread read the clock
 * itself, after the loop's phase began, so its start may lie past the loop's cached time. What is
 * measured from the start (its latency, what is left of its deadline) counts from here. */
static int64_t call_now(const ft_call *call)
{
    int64_t now = ft_loop_now(call->loop);
    return now > call->start_ns ? now : call->start_ns;
}

static void rpcz_note_sent(ft_call *call, ft_attempt *a, int64_t now)
{
    if (call->rpcz_n >= FTRPC_RPCZ_MAX_ATTEMPTS) {
        a->rpcz = -1;
        return;
    }
    a->rpcz = call->rpcz_n++;
    call->rpcz_att[a->rpcz] = (ft_rpcz_call_attempt){.target = a->target,
                                                     .endpoint = a->endpoint,
                                                     .sent_ns = now,
                                                     .backup = (uint8_t)a->is_backup};
}

_Static_assert(sizeof(((ft_rpcz_attempt *)0)->endpoint) == sizeof(((ft_cluster_endpoint *)0)->name),
               "rpcz_record copies an endpoint's name whole");

/* Writes the completed call (before any fallback) into its client's ring: the targets are still
 * pinned, so the endpoints' names are there to copy. `winner`: the rpcz entry whose answer is r. */
static void rpcz_record(ft_call *call, const ftrpc_result *r, int winner)
{
    ft_rpcz_span *sp = ft_rpcz_begin(call->client->rpcz);
    if (!sp) return;
    sp->start_ns = call->start_ns;
    sp->latency_us = r->latency_us;
    ft_rpcz_set_method(sp, call->service, (size_t)(call->method - call->service - 1), call->method,
                       call->method_len);
    sp->kind = (int32_t)r->kind;
    sp->code = r->code;
    sp->attempts = call->attempts;
    sp->backups = call->backups;
    sp->log_id = call->log_id;
    sp->id = call->id;
    sp->peer[0] = '\0';
    sp->nattempts = (uint8_t)call->rpcz_n;
    sp->cancelled = (uint8_t)call->rpcz_cancelled;
    sp->replied = sp->http = 0;
    for (int i = 0; i < call->rpcz_n; i++) {
        const ft_rpcz_call_attempt *ca = &call->rpcz_att[i];
        ft_rpcz_attempt *a = &sp->attempt[i];
        /* both 64 bytes: names are checked to fit when endpoints are made */
        memcpy(a->endpoint, call->targets[ca->target].cluster->eps[ca->endpoint]->name,
               sizeof a->endpoint);
        a->sent_us = (ca->sent_ns - call->start_ns) / FT_NS_PER_US;
        a->done_us = ca->done_ns ? (ca->done_ns - call->start_ns) / FT_NS_PER_US : -1;
        a->code = ca->code;
        a->backup = ca->backup;
        a->winner = i == winner;
        a->cancelled = ca->cancelled;
    }
    ft_rpcz_commit(sp);
}

/* ---- completion ---- */

/* The call ftrpc_call_async is starting on this thread, inside its own loop, before returning: a
 * completion now (no endpoint, the breaker's rejection, a stopping client) must not run the
 * callback inside that ftrpc_call_async, where a callback that calls again (a closed-loop
 * caller) would recurse without bound. */
static _Thread_local ft_call *starting_inline;

/* The async callback, then the call's count given back: the last touch of the client. The
 * callback may answer the served call the call was made for: `retried` (0: none) is noted first,
 * on this thread (base/call_context.h). */
static void run_callback(ftrpc_client *client, ft_loop *loop, ftrpc_call_cb cb, void *arg,
                         ftrpc_result *r, int counted_on_loop, ft_call_note retried)
{
    ft_call_context_note(retried);
    cb(r, arg);
    ftrpc_result_fini(r);
    if (counted_on_loop)
        ft_client_count_down_here(client, loop);
    else
        ft_client_count_down(client, &client->inflight);
}

/* A completion that came while its own ftrpc_call_async was still running: the callback runs as
 * the loop's next task instead (the call still counts as in flight until then, so the client
 * waits for it). */
typedef struct deferred_callback {
    ft_task task;
    ftrpc_client *client;
    ft_loop *loop;
    ftrpc_call_cb cb;
    void *arg;
    ftrpc_result result;
    int counted_on_loop;
    ft_call_note retried;
} deferred_callback;

static void deferred_callback_run(ft_task *t)
{
    deferred_callback *d = ft_container_of(t, deferred_callback, task);
    run_callback(d->client, d->loop, d->cb, d->arg, &d->result, d->counted_on_loop, d->retried);
    free(d);
}

/* 1 when the callback was handed to the loop; 0 (out of memory) leaves it to the caller. */
static int defer_callback(ftrpc_client *client, ft_loop *loop, ftrpc_call_cb cb, void *arg,
                          const ftrpc_result *r, int counted_on_loop, ft_call_note retried)
{
    deferred_callback *d = malloc(sizeof *d);
    if (!d) return 0;
    *d = (deferred_callback){.task = {.run = deferred_callback_run},
                             .client = client,
                             .loop = loop,
                             .cb = cb,
                             .arg = arg,
                             .result = *r,
                             .counted_on_loop = counted_on_loop,
                             .retried = retried};
    ft_loop_post(loop, &d->task);
    return 1;
}

/* Completes the call exactly once. `winner` (may be NULL) is the attempt whose response `frame`
 * carries; attempts still in flight are cancelled and settled with `loser_code`. */
static void complete_call(ft_call *call, ftrpc_result_kind kind, int code, const char *text,
                          ft_rpc_frame *frame, ft_attempt *winner, int loser_code)
{
    ftrpc_client *client = call->client;
    ft_timer_stop(call->loop, &call->deadline_timer);
    ft_timer_stop(call->loop, &call->retry_timer);
    ft_timer_stop(call->loop, &call->backup_timer);
    for (int i = 0; i < call->nslots; i++) {
        ft_attempt *a = &call->slot[i];
        if (!a->in_flight) continue;
        send_cancel(a);
        detach_attempt(a);
        settle_attempt(a, loser_code);
    }
    ft_list_remove(&call->node);
    if (call->id) ft_idmap_take(&client->loops[call->loop->index].cancelable, (int64_t)call->id);

    ftrpc_result local;
    ftrpc_result *r = call->sync_result ? call->sync_result : &local;
    /* every field set, rather than the 400 bytes zeroed first: the strings need only their end */
    r->kind = kind;
    r->code = code;
    r->error_text[0] = '\0';
    r->response = r->attachment = NULL;
    r->endpoint[0] = '\0';
    r->from_fallback = 0;
    if (text && *text)
        snprintf(r->error_text, sizeof r->error_text, "%s", text);
    else if (code < 0)
        snprintf(r->error_text, sizeof r->error_text, "%s", ftrpc_strerror(code));
    r->attempts = call->attempts;
    r->backups = call->backups;
    r->backups_refused = call->backups_refused;
    r->backup_won = winner && winner->is_backup;
    r->cluster = winner ? winner->target : -1;
    int64_t now = call_now(call);
    int64_t latency_ns = now - call->start_ns;
    r->latency_us = latency_ns / FT_NS_PER_US;
    if (winner) /* both buffers are 64 bytes: names are checked to fit when endpoints are made */
        memcpy(r->endpoint, call->targets[winner->target].cluster->eps[winner->endpoint]->name,
               sizeof r->endpoint);
    if (frame && kind == FTRPC_RESULT_OK) {
        r->response = ftrpc_buf_new();
        r->attachment = ftrpc_buf_new();
        if (!r->response || !r->attachment) {
            ftrpc_result_fini(r);
            r->kind = FTRPC_RESULT_RPC_ERROR;
            r->code = FTRPC_ENOMEM;
            snprintf(r->error_text, sizeof r->error_text, "%s", ftrpc_strerror(FTRPC_ENOMEM));
        } else {
            ft_iobuf_move(r->response, &frame->payload);
            ft_iobuf_move(r->attachment, &frame->attachment);
        }
    }
    if (r->backup_won) atomic_fetch_add_explicit(&client->backup_wins, 1, memory_order_relaxed);
    if (call->rpcz) rpcz_record(call, r, winner ? winner->rpcz : -1);
    /* the backup policy learns how the service behaved: the outcome before any fallback */
    ftrpc_backup_policy *policy = call->backup_policy;
    if (policy && policy->on_call_end) policy->on_call_end(policy, r);
    ft_call_report reported = {
        .kind = r->kind,
        .attempts = r->attempts,
        .backups = r->backups,
        .backup_won = r->backup_won,
        .breaker_rejected = r->kind == FTRPC_RESULT_RPC_ERROR && r->code == FTRPC_EBREAKER,
        .throttled = r->kind == FTRPC_RESULT_RPC_ERROR && r->code == FTRPC_ETHROTTLED,
        .pushbacks = call->pushbacks,
        .latency_ns = latency_ns};
    run_fallback(call, r, &reported);
    if (call->metrics)
        ft_method_metrics_record(call->metrics, &reported, call->retry.retries_done,
                                 r->from_fallback, now);
    ft_iobuf_fini(&call->request);
    ft_iobuf_fini(&call->attachment);
    ft_call_targets_release(call);
    /* the way back (docs/overload-client.md): an overload refusal that held its endpoint makes the
     * served call's ELIMIT answer hold its caller as long (not a plain ELIMIT, which one hop up
     * trips the caller's breaker and feeds its throttle while the bottom of the chain idles);
     * else chain-stop's: an RPC error after this call retried, was refused retries (made for a
     * retry) or was told to stop (pushback -1) makes the served call's error answer a pushback
     * -1 too; the fallback's outcome counts, as the handler sees it */
    ft_call_note retried = {0, 0};
    if (r->kind == FTRPC_RESULT_RPC_ERROR && call->attempts > 0) {
        if (r->code == FTRPC_ELIMIT && call->last_hold_ms > 0)
            retried = (ft_call_note){call->parent_serial, call->last_hold_ms};
        else if (call->attempts > 1 || call->chain_retry || call->retries_stopped)
            retried = (ft_call_note){call->parent_serial, -1};
    }

    if (call->sync_result) {
        ft_event *done = call->sync_done;
        if (call->sync_wake_fd >= 0) eventfd_write(call->sync_wake_fd, 1); /* before: see there */
        if (call->sync_reading) /* while the call counts as in flight: the client is still here */
            atomic_fetch_add_explicit(&client->answers_read_by_caller, 1, memory_order_relaxed);
        *call->sync_retried = retried;
        *call->sync_rc = r->kind == FTRPC_RESULT_OK               ? 0
                         : r->kind == FTRPC_RESULT_BUSINESS_ERROR ? FTRPC_EBUSINESS
                                                                  : r->code;
        call_release(call);
        ft_client_count_down(client, &client->inflight); /* a sync call is never counted_on_loop */
        ft_event_set(done); /* last touch: the caller may return and free everything now */
        return;
    }
    ftrpc_call_cb cb = call->cb;
    void *arg = call->arg;
    ft_loop *loop = call->loop;
    int counted_on_loop = call->counted_on_loop;
    int defer = call == starting_inline;
    call_release(call);
    if (defer && defer_callback(client, loop, cb, arg, r, counted_on_loop, retried)) return;
    run_callback(client, loop, cb, arg, r, counted_on_loop, retried);
}

static void fail_call(ft_call *call, int code, const char *text)
{
    complete_call(call, FTRPC_RESULT_RPC_ERROR, code, text, NULL, NULL, FTRPC_ECANCELED);
}

/* The last failure becomes the call's; when a server sent it, the result names that server. */
static void complete_with_last_error(ft_call *call)
{
    ft_attempt named = {.endpoint = call->last_answered_by,
                        .target = call->last_answered_target,
                        .rpcz = call->rpcz_last_answered};
    complete_call(call, call->last_kind, call->last_code, call->last_text, NULL,
                  call->last_answered_by >= 0 ? &named : NULL, FTRPC_ECANCELED);
}

/* ---- choosing an endpoint ---- */

struct usable_ctx {
    ft_cluster *cluster;
    int64_t now;
};

static int endpoint_usable(void *arg, size_t index)
{
    struct usable_ctx *u = arg;
    return ft_health_usable(&u->cluster->eps[index]->health, u->now);
}

/* The endpoint for the next attempt, claimed from its health, and its target in *target;
 * FTRPC_ENOENDPOINT when the service (every cluster of a selective client) is empty or switched
 * OFF, FTRPC_EBREAKER when every endpoint of the chosen cluster is open by its breaker; CHOSE_WAIT
 * when this is a retry, nothing is usable, and the endpoint whose turn comes first is in TIMEOUT
 * or held by a server's pushback until *wait_until (its retry_delay or the server's pause paces
 * retries: the fallback does not skip it); CHOSE_HELD when a backup finds every endpoint it could
 * use held by a pushback (nothing may be sent before *wait_until). A first attempt that finds
 * every endpoint held goes to the one whose hold ends first: a hold steers calls to the other
 * endpoints, it never stops a cluster (the servers would sit idle while the client refused calls
 * itself: docs/overload-client.md, Pushback). */
enum { CHOSE_WAIT = INT_MIN, CHOSE_HELD = INT_MIN + 1 };
static int choose_endpoint(ft_call *call, int64_t now, int is_backup, int *target,
                           int64_t *wait_until)
{
    int again = ft_fail_reuse_endpoint(&call->retry, target);
    /* failtry goes back whatever health says; a TIMEOUT retry only while health still lets it */
    if (again >= 0 && (call->retry.mode == FTRPC_FAILTRY ||
                       ft_health_try_acquire(&call->targets[*target].cluster->eps[again]->health,
                                             now) != FT_HEALTH_DENIED))
        return again;
    int t = call->ntargets > 1 ? ft_selective_pick_target(call, now) : 0;
    if (t < 0) return FTRPC_ENOENDPOINT;
    *target = t;
    ft_cluster *cl = call->targets[t].cluster;
    struct usable_ctx u = {cl, now};
    size_t excluded[FT_LB_MAX_EXCLUDED];
    size_t n = ft_fail_excluded(&call->retry, &call->tried, t, excluded);
    ft_lb_pick req = {.key_hash = call->key_hash,
                      .has_key = call->has_key,
                      .excluded = excluded,
                      .usable = endpoint_usable,
                      .usable_arg = &u,
                      .allow_excluded_fallback = 1,
                      .now_ns = now};
    /* The balancer asks `usable`, a lock-free hint; the claim below decides. Losing the race for a
     * probe means another caller is probing that endpoint: pick again without it. */
    for (int tries = 0; tries < 4; tries++) {
        size_t idx;
        req.n_excluded = n;
        if (ft_lb_select(cl->lb, &req, &idx) != 0) break;
        if (ft_health_try_acquire(&cl->eps[idx]->health, now) != FT_HEALTH_DENIED) return (int)idx;
        if (n < FT_LB_MAX_EXCLUDED) excluded[n++] = idx;
    }
    /* Nothing usable: try the endpoint whose suspension ends first rather than fail the call
     * (unless every endpoint is open by its breaker, health_set.h); but a retry waits for an
     * endpoint in TIMEOUT to be usable again rather than cut its delay. */
    size_t idx;
    int64_t wait;
    if (ft_health_set_soonest(&cl->set, now, &idx, &wait) == 0 && wait > 0) {
        int held = ft_health_held(cl->set.endpoints[idx], now);
        if (call->attempts > 0 && !is_backup &&
            (held || ft_health_state_get(cl->set.endpoints[idx]) == FT_HEALTH_TIMEOUT)) {
            *wait_until = now + wait;
            return CHOSE_WAIT;
        }
        /* the state's grant, or else the all-unusable fallback's, as without the hold (an
         * endpoint in TIMEOUT inside its retry_delay, a SUSPENDED one as its early probe) */
        if (held && call->attempts == 0 && !is_backup &&
            (ft_health_try_acquire_past_hold(cl->set.endpoints[idx], now) != FT_HEALTH_DENIED ||
             ft_health_acquire_anyway_past_hold(cl->set.endpoints[idx], now) != FT_HEALTH_DENIED))
            return (int)idx;
        if (held) {
            *wait_until = now + wait;
            return CHOSE_HELD;
        }
    }
    int rc = ft_health_set_fallback(&cl->set, now, &idx, NULL);
    return rc == 0 ? (int)idx : rc;
}

/* Whether an endpoint this call has not tried is usable now: a refused request re-sent there
 * costs the retry budget nothing (fail_policy.h). O(endpoints), asked only after a refused
 * connect, which suspends its endpoint: a service's refusals are about one per dead endpoint and
 * suspension. */
static int untried_usable(const ft_call *call, int64_t now)
{
    for (int t = 0; t < call->ntargets; t++) {
        const ft_cluster *cl = call->targets[t].cluster;
        size_t tried[FT_LB_MAX_EXCLUDED];
        size_t n = ft_fail_excluded(&call->retry, &call->tried, t, tried);
        for (size_t i = 0; i < cl->n; i++) {
            if (!ft_health_usable(&cl->eps[i]->health, now)) continue;
            size_t k = 0;
            while (k < n && tried[k] != i)
                k++;
            if (k == n) return 1;
        }
    }
    return 0;
}

/* ---- sending ---- */

static void attempt_error(ft_attempt *a, ftrpc_result_kind kind, int code, const char *text,
                          int never_on_wire, int answered);

static void on_attempt_timeout(ft_timer *t)
{
    ft_attempt *a = ft_container_of(t, ft_attempt, timer);
    send_cancel(a);
    detach_attempt(a);
    settle_attempt(a, FTRPC_ERPCTIMEDOUT);
    attempt_error(a, FTRPC_RESULT_RPC_ERROR, FTRPC_ERPCTIMEDOUT, "attempt timed out", 0, 0);
}

/* Files the attempt under the request's correlation id and queues the request on cc. A small
 * request (the common case) is encoded on the stack and copied straight into the connection's
 * output; a larger one goes through a frame buffer whose bodies share the call's blocks. */
static int send_request(ft_cconn *cc, ft_attempt *a, const ft_request_header *h,
                        const ft_call *call, size_t *frame_len)
{
    uint8_t small[FT_BAIDU_STD_SMALL_FRAME];
    size_t n = ft_baidu_std_encode_request(small, h, &call->request, &call->attachment);
    ft_iobuf frame;
    ft_iobuf_init(&frame);
    int rc = n ? 0 : ft_baidu_std_pack_request(&frame, h, &call->request, &call->attachment);
    *frame_len = n ? n : frame.size;
    if (rc == 0) rc = ft_idmap_put(&cc->pending, h->correlation_id, a);
    if (rc == 0) {
        a->cc = cc;
        a->cid = h->correlation_id;
        rc = n ? ft_conn_write_bytes(cc->conn, small, n) : ft_conn_write(cc->conn, &frame);
        if (rc != 0)
            detach_attempt(a);
        else
            ft_client_conn_busy(cc);
    }
    ft_iobuf_fini(&frame);
    return rc;
}

static void on_retry_timer(ft_timer *t);

static void send_attempt(ft_call *call, int is_backup)
{
    ft_attempt *a = NULL;
    for (int i = 0; i < call->nslots && !a; i++)
        if (!call->slot[i].in_flight) a = &call->slot[i];
    if (!a) return; /* cannot happen: a hedge needs attempts < nslots, a retry none in flight */
    int64_t now = ft_loop_now(call->loop);
    int target = 0;
    int64_t wait_until = 0;
    int idx = choose_endpoint(call, now, is_backup, &target, &wait_until);
    if (idx == CHOSE_HELD) {
        if (attempts_in_flight(call) != 0) return; /* a backup: the first copy goes on alone */
        char text[256];
        snprintf(text, sizeof text,
                 "%s: every endpoint asked for a pause (pushback), the first ends in %lld ms",
                 ftrpc_strerror(FTRPC_ELIMIT),
                 (long long)((wait_until - now + FT_NS_PER_MS - 1) / FT_NS_PER_MS));
        complete_call(call, FTRPC_RESULT_RPC_ERROR, FTRPC_ELIMIT, text, NULL, NULL,
                      FTRPC_ECANCELED);
        return;
    }
    if (idx == CHOSE_WAIT) {
        ft_fail_decision d = ft_fail_pace_retry(now, wait_until, call->deadline_ns);
        if (d.action == FT_FAIL_RETRY_AT)
            ft_timer_start(call->loop, &call->retry_timer, d.at_ns, on_retry_timer);
        else if (attempts_in_flight(call) == 0)
            complete_with_last_error(call);
        return;
    }
    if (idx < 0) {
        /* a backup finds nothing to go to: the first copy goes on alone */
        if (attempts_in_flight(call) != 0) return;
        char text[256] = "";
        if (idx == FTRPC_EBREAKER && call->attempts > 0) /* a retry the breaker refused */
            snprintf(text, sizeof text,
                     "%s: every endpoint is open by its breaker (last error: %.160s)",
                     ftrpc_strerror(FTRPC_EBREAKER), call->last_text);
        else if (idx == FTRPC_EBREAKER)
            snprintf(text, sizeof text, "%s: every endpoint is open by its breaker",
                     ftrpc_strerror(FTRPC_EBREAKER));
        complete_call(call, FTRPC_RESULT_RPC_ERROR, idx, text, NULL, NULL, FTRPC_ECANCELED);
        return;
    }
    ft_cluster_endpoint *ep = call->targets[target].cluster->eps[idx];
    for (int i = 0; is_backup && i < call->nslots; i++)
        if (call->slot[i].in_flight && call->slot[i].target == target &&
            call->slot[i].endpoint == idx) {
            atomic_fetch_add_explicit(&call->client->backup_same_endpoint, 1, memory_order_relaxed);
            break;
        }
    a->endpoint = idx;
    a->target = target;
    a->sent_ns = now;
    a->in_flight = 1;
    a->is_backup = is_backup;
    a->cc = NULL;
    if (call->rpcz) rpcz_note_sent(call, a, now);
    ft_cluster_endpoint_inflight_add(ep, call->loop->index, 1);
    call->attempts++;
    ft_fail_note_sent(&call->retry, &call->tried, idx, target);

    int err = 0;
    /* the connection and its credential belong to the client that owns the endpoint: for a
     * selective client's call, a sub-client */
    ftrpc_client *c = call->targets[target].client;
    ft_cconn *cc = ft_client_get_conn(c, call->loop, ep, &err);
    if (!cc) {
        settle_attempt(a, err);
        attempt_error(a, FTRPC_RESULT_RPC_ERROR, err, NULL,
                      err == FTRPC_ECONNREFUSED || err == FTRPC_ECONNECT, 0);
        return;
    }
    /* from call_now: the loop's time would tell the server more than the call's own timeout
     * (1201 ms of 1200 were sent under ThreadSanitizer) */
    int64_t left_ms = (call->deadline_ns - call_now(call)) / FT_NS_PER_MS;
    int64_t attempt_ms = call->attempt_timeout_ms > 0 && call->attempt_timeout_ms < left_ms
                             ? call->attempt_timeout_ms
                             : left_ms;
    ft_request_header h = {
        .service = call->service,
        .method = call->method,
        .correlation_id = ++cc->last_cid, /* unique on the connection, all baidu_std asks */
        /* the server learns how long this attempt may take, so it can drop it once too late */
        .timeout_ms =
            attempt_ms < 1 ? 1 : (attempt_ms > INT32_MAX ? INT32_MAX : (int32_t)attempt_ms),
        .log_id = call->log_id,
        /* 0 for a first attempt, unless the call is made on behalf of a retry (chain-stop) */
        .attempt = call->attempts > 1 ? call->attempts - 1 : call->chain_retry,
        .tied = call->tied,
        .service_len = (size_t)(call->method - call->service - 1),
        .method_len = call->method_len,
    };
    uint8_t credential[FT_CLIENT_MAX_CREDENTIAL];
    if (cc->grpc) /* gRPC has no connection credential: every request carries its own */
        cc->credential_sent = 0;
    if (!cc->credential_sent && (c->opts.credential || c->auth_token)) {
        /* brpc's rule: authentication_data travels on a connection's first request only */
        int n = -1;
        if (c->auth_token) {
            size_t len = strlen(c->auth_token);
            n = len <= sizeof credential ? (int)len : -1;
            if (n >= 0) memcpy(credential, c->auth_token, (size_t)n);
        } else {
            n = c->opts.credential(credential, sizeof credential, c->opts.credential_arg);
        }
        if (n >= 0 && (size_t)n <= sizeof credential) {
            h.auth_data = credential;
            h.auth_len = (size_t)n;
        }
        cc->credential_sent = 1;
    }
    size_t frame_len = 0;
    int rc = cc->grpc ? ft_grpc_cconn_send(cc, a, h.service, h.method, h.timeout_ms, &call->request,
                                           h.auth_data, h.auth_len)
                      : send_request(cc, a, &h, call, &frame_len);
    if (rc == FTRPC_EOVERCROWDED && frame_len > cc->conn->max_unwritten) {
        /* no connection will ever take it: not overload, and not worth a retry; says nothing
         * about the endpoint either (settled as a caller's error) */
        char text[160];
        snprintf(text, sizeof text,
                 "%s: a request frame of %zu bytes is larger than max_unwritten_bytes (%zu)",
                 ftrpc_strerror(FTRPC_EREQUEST), frame_len, cc->conn->max_unwritten);
        settle_attempt_as(a, FTRPC_EREQUEST, FTRPC_EINVAL);
        attempt_error(a, FTRPC_RESULT_RPC_ERROR, FTRPC_EREQUEST, text, 0, 0);
        return;
    }
    if (rc != 0) {
        settle_attempt(a, rc);
        attempt_error(a, FTRPC_RESULT_RPC_ERROR, rc, NULL, 0, 0);
        return;
    }
    if (call->attempt_timeout_ms > 0 && attempt_ms < left_ms)
        ft_timer_start(call->loop, &a->timer, now + attempt_ms * FT_NS_PER_MS, on_attempt_timeout);
}

static void on_retry_timer(ft_timer *t)
{
    send_attempt(ft_container_of(t, ft_call, retry_timer), 0);
}

/* Whether the call's backups draw on the client's retry budget (ftrpc_backup_budget). */
static int backup_draws_on_budget(const ft_call *call)
{
    switch (call->client->opts.backup_budget) {
    case FTRPC_BACKUP_BUDGET_RETRY:
        return 1;
    case FTRPC_BACKUP_BUDGET_NONE:
        return 0;
    default: /* a fixed delay is bounded per call, as brpc's; a policy's backups by the budget */
        return call->backup_policy != NULL;
    }
}

static void on_backup_timer(ft_timer *t);

const int ft_backup_late_bounds_us[FT_BACKUP_LATE_BUCKETS - 1] = {5, 10, 25, 50, 100, 200, 500};

/* Counts a backup its timer sent late_ns after the timer's due time (client_internal.h), and
 * splits it at the loop's read of its timerfd. */
static void note_backup_late(const ft_call *call, int64_t late_ns)
{
    ftrpc_client *c = call->client;
    int64_t wake = call->loop->timer_read_ns - call->backup_timer.due_ns;
    if (wake >= 0 && wake <= late_ns) {
        atomic_fetch_add_explicit(&c->backup_late_wake_ns_sum, wake, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->backup_late_queue_ns_sum, late_ns - wake,
                                  memory_order_relaxed);
    }
    int b = 0;
    while (b < FT_BACKUP_LATE_BUCKETS - 1 && late_ns >= ft_backup_late_bounds_us[b] * FT_NS_PER_US)
        b++;
    atomic_fetch_add_explicit(&c->backup_late[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->backup_late_ns_sum, late_ns, memory_order_relaxed);
}

/* Sends the call's next copy (a backup, a hedge or the tied twin) if the rules let it
 * (ft_fail_backup), then arms the timer for the one after it: gRPC's hedging delay runs again
 * from each copy sent. The call may complete inside (the copy found no connection). late_ns: how
 * late the backup timer ran, < 0 when the copy is not sent by the timer. */
static void send_hedge(ft_call *call, int64_t late_ns)
{
    ftrpc_client *c = call->client;
    ft_timer_stop(call->loop, &call->backup_timer);
    int64_t now = ft_loop_now(call->loop);
    switch (ft_fail_backup(&call->retry, attempts_in_flight(call), call->attempts, call->nslots,
                           c->opts.backup_counts_as_retry, call->backup_policy, call->service,
                           call->method, backup_draws_on_budget(call) ? &c->budget : NULL, now)) {
    case FT_BACKUP_SEND:
        call->backups++;
        atomic_fetch_add_explicit(&c->backups, 1, memory_order_relaxed);
        if (late_ns >= 0) note_backup_late(call, late_ns);
        /* armed first: send_attempt may complete the call, which stops every timer */
        if (call->attempts + 1 < call->nslots && call->hedge_delay_us > 0 &&
            call->hedge_delay_us <= (call->deadline_ns - now - 1) / FT_NS_PER_US)
            ft_timer_start(call->loop, &call->backup_timer,
                           now + call->hedge_delay_us * FT_NS_PER_US, on_backup_timer);
        send_attempt(call, 1);
        break;
    case FT_BACKUP_REFUSED:
        call->backups_refused = 1;
        atomic_fetch_add_explicit(&c->budget_exhausted, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->backups_refused, 1, memory_order_relaxed);
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN,
                           "backup of %s/%s refused by the retry budget (ratio %g, %d/s): the "
                           "call waits for its first copy; raise retry_budget_ratio or set "
                           "backup_budget (docs/backup-requests.md, The budget)",
                           call->service, call->method, c->budget.opts.ratio,
                           c->budget.opts.min_per_sec);
        break;
    case FT_BACKUP_SKIP:
        break;
    }
}

static void on_backup_timer(ft_timer *t)
{
    ft_call *call = ft_container_of(t, ft_call, backup_timer);
    send_hedge(call, ft_now_ns() - t->due_ns);
}

void ft_call_on_started(ft_attempt *a)
{
    ft_call *call = a->call;
    if (!call->tied || !a->in_flight) return;
    /* one copy runs: the others are dropped from their queues, and no further copy follows */
    call->hedging = 0;
    ft_timer_stop(call->loop, &call->backup_timer);
    for (int i = 0; i < call->nslots; i++) {
        ft_attempt *b = &call->slot[i];
        if (b == a || !b->in_flight) continue;
        send_cancel(b);
        detach_attempt(b);
        settle_attempt(b, FTRPC_ECANCELED);
        atomic_fetch_add_explicit(&call->client->tied_cancels, 1, memory_order_relaxed);
    }
}

/* The call's backup delay in us (< 0: none): its policy's (in us when the policy can say so),
 * else its own. */
static int64_t backup_delay_us(const ft_call *call)
{
    ftrpc_backup_policy *p = call->backup_policy;
    int64_t d = call->backup_us;
    if (p && p->backup_delay_us)
        d = p->backup_delay_us(p, call->service, call->method);
    else if (p && p->backup_delay_ms) {
        int ms = p->backup_delay_ms(p, call->service, call->method);
        d = ms > 0 ? (int64_t)ms * 1000 : ms;
    }
    return d == FT_BACKUP_DELAY_INHERIT ? call->backup_us : d;
}

/* An attempt failed (already detached and settled). While the other copy of a failbackup race is
 * still out the call waits for it; otherwise the fail mode decides. */
static void attempt_error(ft_attempt *a, ftrpc_result_kind kind, int code, const char *text,
                          int never_on_wire, int answered)
{
    ft_call *call = a->call;
    ftrpc_client *c = call->client;
    call->last_answered_by = answered ? a->endpoint : -1;
    call->rpcz_last_answered = answered ? a->rpcz : -1;
    call->last_answered_target = a->target;
    call->last_kind = kind;
    call->last_code = code;
    snprintf(call->last_text, sizeof call->last_text, "%s",
             text && *text ? text : (code < 0 ? ftrpc_strerror(code) : ""));
    int64_t now = ft_loop_now(call->loop);
    ft_fail_event ev = {
        .kind = kind,
        .code = code,
        .text = call->last_text,
        .never_on_wire = never_on_wire,
        .untried_usable = never_on_wire && untried_usable(call, ft_loop_now(call->loop)),
        .in_flight = attempts_in_flight(call),
        .stopping = atomic_load(&c->stopping),
        .retries_stopped = call->retries_stopped,
        .now_ns = now,
        .deadline_ns = call->deadline_ns,
    };
    /* the endpoint's own codes and its TIMEOUT, as the client that owns it configured them */
    const ftrpc_client *owner = call->targets[a->target].client;
    ft_cluster_endpoint *ep = call->targets[a->target].cluster->eps[a->endpoint];
    if (owner->opts.n_endpoint_codes > 0)
        ev.endpoint_codes = ft_client_endpoint_codes(owner, ep->name);
    if (owner->opts.health.retry_in_timeout &&
        ft_health_state_get(&ep->health) == FT_HEALTH_TIMEOUT) {
        ev.in_timeout = 1;
        ev.timeout_usable_at_ns = now + ft_health_usable_in_ns(&ep->health, now);
        ev.timeout_retries_max = owner->opts.health.retries_before_suspension;
    }
    ft_fail_decision d =
        ft_fail_after_error(&call->retry, &ev, &c->opts, &c->budget, ft_rand_thread());
    if (d.retry_spent) atomic_fetch_add_explicit(&c->retries, 1, memory_order_relaxed);
    if (d.budget_refused) atomic_fetch_add_explicit(&c->budget_exhausted, 1, memory_order_relaxed);
    switch (d.action) {
    case FT_FAIL_WAIT:
        /* gRPC A6: a copy that failed with an error a retry may cure sends the next at once */
        if (call->hedging &&
            ft_fail_hedge_after_error(&call->retry, &ev, &c->opts, call->attempts, call->nslots))
            send_hedge(call, -1);
        break;
    case FT_FAIL_COMPLETE:
        complete_with_last_error(call);
        break;
    case FT_FAIL_RETRY_AT:
        ft_timer_start(call->loop, &call->retry_timer, d.at_ns, on_retry_timer);
        break;
    case FT_FAIL_RETRY_NOW:
        send_attempt(call, 0);
        break;
    }
}

/* ---- events from the connections ---- */

/* The longest hold a server's pushback (ftrpc_retry_after_ms) may put on its endpoint. */
enum { FT_PUSHBACK_MAX_MS = 60000 };

void ft_call_on_response(ft_attempt *a, ft_parse_status st, ft_rpc_frame *f, const char *reason)
{
    ft_call *call = a->call;
    ft_timer_stop(call->loop, &a->timer);
    if (st == FT_PARSE_BAD_FRAME) {
        settle_attempt(a, FTRPC_ERESPONSE);
        attempt_error(a, FTRPC_RESULT_RPC_ERROR, FTRPC_ERESPONSE, reason, 0, 0);
        return;
    }
    ftrpc_result_kind kind;
    int code;
    ft_fail_classify_wire(f->error_code, &kind, &code);
    int overload = kind == FTRPC_RESULT_RPC_ERROR && code == FTRPC_ELIMIT;
    int health_code = ft_fail_health_code(kind, code);
    call->last_hold_ms = 0; /* the last answer's alone */
    if (f->retry_after_ms != 0) {
        /* the server's pushback (docs/overload-client.md): > 0 holds its endpoint, -1 ends the
         * call's retries, and so does any other negative value, as gRPC A6 reads a negative
         * grpc-retry-pushback-ms (the gRPC path hands it over as -1): one answer must not mean
         * "stop" on one protocol and nothing on the other; either way the overload it answered is
         * the hold's business, not the breaker's, so that a cluster under pressure is not also
         * suspended endpoint by endpoint */
        ft_cluster_endpoint *ep = call->targets[a->target].cluster->eps[a->endpoint];
        int64_t now = ft_loop_now(call->loop);
        call->pushbacks++;
        /* capped: a bad value must not take an endpoint away for weeks */
        int64_t hold_ms =
            f->retry_after_ms < FT_PUSHBACK_MAX_MS ? f->retry_after_ms : FT_PUSHBACK_MAX_MS;
        call->last_hold_ms = (int32_t)(hold_ms > 0 ? hold_ms : 0);
        if (hold_ms > 0)
            ft_health_hold(&ep->health, now + hold_ms * FT_NS_PER_MS);
        else
            call->retries_stopped = 1;
        if (overload) health_code = FTRPC_ECANCELED; /* neutral */
    }
    /* what the throttle weighs: an answer, accepted unless it was an overload rejection; but an
     * overload rejection with a hold (pushback > 0) is the hold's alone. It says "full now, a slot
     * frees in that long", not "send less": counted as a refusal as well, the throttle would shed
     * on top of the hold, which leaves a limiter with few slots idle (a loss system needs several
     * times its capacity offered to stay busy), and its 30 s window would keep shedding long after
     * the crowd left (docs/overload-client.md, Adaptive throttling) */
    if (!overload || f->retry_after_ms <= 0)
        ft_throttle_on_answer(&call->client->throttle, ft_loop_now(call->loop), !overload);
    settle_attempt_as(a, ft_fail_health_code(kind, code), health_code);
    if (kind == FTRPC_RESULT_OK) {
        complete_call(call, kind, 0, NULL, f, a, FTRPC_ECANCELED);
        return;
    }
    if (kind == FTRPC_RESULT_BUSINESS_ERROR && !call->client->opts.retry_classifier &&
        attempts_in_flight(call) == 0) {
        complete_call(call, kind, code, f->error_text, f, a, FTRPC_ECANCELED);
        return;
    }
    attempt_error(a, kind, code, f->error_text, 0, 1);
}

void ft_call_on_conn_lost(ft_attempt *a, int code, const char *text)
{
    ft_timer_stop(a->call->loop, &a->timer);
    settle_attempt(a, code == FTRPC_ESTOPPED ? FTRPC_ECANCELED : code);
    attempt_error(a, FTRPC_RESULT_RPC_ERROR, code, text,
                  code == FTRPC_ECONNREFUSED || code == FTRPC_ECONNECT, 0);
}

void ft_call_stop_all(ft_client_loop *cl)
{
    while (!ft_list_empty(&cl->calls)) {
        ft_call *call = ft_container_of(cl->calls.next, ft_call, node);
        fail_call(call, FTRPC_ESTOPPED, "client is being freed");
    }
}

/* ---- starting a call ---- */

void ft_call_time_out(ft_call *call)
{
    /* attempts still in the air took the whole deadline: their endpoints timed out */
    complete_call(call, FTRPC_RESULT_RPC_ERROR, FTRPC_ERPCTIMEDOUT, NULL, NULL, NULL,
                  FTRPC_ERPCTIMEDOUT);
}

static void on_deadline(ft_timer *t)
{
    ft_call_time_out(ft_container_of(t, ft_call, deadline_timer));
}

void ft_call_start(ft_call *call)
{
    ftrpc_client *c = call->client;
    ft_list_push_back(&c->loops[call->loop->index].calls, &call->node);
    if (atomic_load(&c->stopping)) {
        fail_call(call, FTRPC_ESTOPPED, NULL);
        return;
    }
    if (call->id &&
        ft_idmap_put(&c->loops[call->loop->index].cancelable, (int64_t)call->id, call) != 0) {
        call->id = 0; /* not filed: nothing to take out */
        fail_call(call, FTRPC_ENOMEM, NULL);
        return;
    }
    if (ft_call_targets_acquire(call) != 0) {
        fail_call(call, FTRPC_ENOMEM, NULL);
        return;
    }
    if (call->parent_deadline && call->deadline_ns <= call->start_ns) {
        complete_call(call, FTRPC_RESULT_RPC_ERROR, FTRPC_ERPCTIMEDOUT,
                      "the deadline of the call being served has passed (deadline propagation)",
                      NULL, NULL, FTRPC_ECANCELED);
        return;
    }
    if (!ft_throttle_admit(&c->throttle, call->start_ns, ft_rand_uniform(ft_rand_thread()))) {
        complete_call(call, FTRPC_RESULT_RPC_ERROR, FTRPC_ETHROTTLED, NULL, NULL, NULL,
                      FTRPC_ECANCELED);
        return;
    }
    ft_retry_budget_on_request(&c->budget, call->start_ns);
    ft_timer_start(call->loop, &call->deadline_timer, call->deadline_ns, on_deadline);
    if (call->retry.mode == FTRPC_FAILBACKUP && !call->backup_opt_out) {
        int64_t delay = backup_delay_us(call);
        call->hedge_delay_us = delay;
        /* a tied call's twin goes now, unless the call has a delay ("The Tail at Scale" waits
         * about two network trips, so that a first copy an idle server starts at once has its
         * notice cancel the twin before it is sent): the timer fires on the loop's next turn,
         * after the first copy is sent (and when the call already ended, completion stopped it) */
        if (call->tied && delay < 0) delay = 0;
        /* a backup that could only start after the deadline is pointless (brpc skips it too);
         * compared in us, so that no policy's delay can overflow the ns */
        if (delay >= 0 && delay <= (call->deadline_ns - call->start_ns - 1) / FT_NS_PER_US) {
            call->hedging = 1;
            ft_timer_start(call->loop, &call->backup_timer, call->start_ns + delay * FT_NS_PER_US,
                           on_backup_timer);
        }
    }
    send_attempt(call, 0);
}

static void start_call_task(ft_task *t)
{
    ft_call_start(ft_container_of(t, ft_call, task));
}

/* Deadline propagation and chain-stop (docs/overload-client.md): the served call this call is
 * made for, explicitly (opts->parent) or as the thread's current one, bounds its deadline and,
 * when it is a retry, takes away its retries and backups. */
static void inherit_from_parent(ft_call *call, const ftrpc_call_options *opts)
{
    const ftrpc_client_options *o = &call->client->opts;
    const ft_call_context *p = opts && opts->parent           ? ft_call_context_of(opts->parent)
                               : o->deadline_propagation >= 0 ? ft_call_context_current()
                                                              : NULL;
    if (!p) return;
    if (p->deadline_ns) {
        int64_t d = p->deadline_ns - (int64_t)o->deadline_margin_ms * FT_NS_PER_MS;
        if (d < call->deadline_ns) {
            call->deadline_ns = d;
            call->parent_deadline = 1;
        }
    }
    if (o->retry_chain_stop >= 0) call->parent_serial = p->serial;
    if (p->attempt > 0 && o->retry_chain_stop >= 0) {
        call->chain_retry = 1;
        call->retry.retries_left = 0;
        call->backup_us = -1;
        call->backup_opt_out = 1;
        if (call->retry.mode == FTRPC_FAILBACKUP) call->retry.mode = FTRPC_FAILOVER;
    }
}

ft_call *ft_call_make(ftrpc_client *c, const char *service, const char *method,
                      const ftrpc_buf *request, const ftrpc_buf *attachment,
                      const ftrpc_call_options *opts)
{
    size_t sl = strlen(service), ml = strlen(method);
    ft_loop *loop = ft_runtime_pick_loop(c->rt);
    ft_call *call = call_alloc(c, loop, sl + ml + 2);
    if (!call) return NULL;
    call->loop = loop;
    memcpy(call->names, service, sl + 1);
    memcpy(call->names + sl + 1, method, ml + 1);
    call->service = call->names;
    call->method = call->names + sl + 1;
    call->method_len = ml;
    call->client = c;
    ft_list_init(&call->node);
    ft_iobuf_init(&call->request);
    ft_iobuf_init(&call->attachment);
    if ((request && ft_iobuf_append_buf(&call->request, request) != 0) ||
        (attachment && ft_iobuf_append_buf(&call->attachment, attachment) != 0)) {
        ft_iobuf_fini(&call->request);
        ft_iobuf_fini(&call->attachment);
        call_release(call);
        return NULL;
    }
    const ftrpc_client_options *o = &c->opts;
    int timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms : o->timeout_ms;
    call->retry.mode =
        opts && opts->fail_mode != FTRPC_FAIL_DEFAULT ? opts->fail_mode : o->fail_mode;
    /* the first level that says something decides: the call's, else the client's */
    int64_t own = opts ? ft_backup_delay_us(opts->backup_request_us, opts->backup_request_ms) : 0;
    int64_t backup_us =
        own != 0 ? own : ft_backup_delay_us(o->backup_request_us, o->backup_request_ms);
    call->backup_us = backup_us > 0 ? backup_us : -1;
    call->backup_opt_out = own == -1;
    call->backup_policy = opts && opts->backup_policy ? opts->backup_policy : o->backup_policy;
    /* a delay or a policy turns backups on under failover, as in brpc (ft_call_check_args refused
     * them with failfast and failtry when the call asked) */
    if (call->retry.mode == FTRPC_FAILOVER && !call->backup_opt_out &&
        (call->backup_us > 0 || call->backup_policy))
        call->retry.mode = FTRPC_FAILBACKUP;
    int max_attempts = opts && opts->max_attempts != 0 ? opts->max_attempts : o->max_attempts;
    call->nslots = max_attempts >= 2 && max_attempts <= FT_CALL_SLOTS ? max_attempts : 2;
    int tied = opts && opts->tied != 0 ? opts->tied : o->tied;
    /* a call whose own mode is failfast or failtry sends no twin for the client's `tied`, as it
     * sends no backup for the client's delay */
    call->tied = tied == 1 && !call->backup_opt_out &&
                 (call->retry.mode == FTRPC_FAILOVER || call->retry.mode == FTRPC_FAILBACKUP);
    if (call->tied && call->retry.mode == FTRPC_FAILOVER) call->retry.mode = FTRPC_FAILBACKUP;
    int retries = opts && opts->retries != 0 ? opts->retries : o->retries;
    call->retry.retries_left = retries == FTRPC_NO_RETRY ? 0 : retries;
    call->attempt_timeout_ms =
        opts && opts->attempt_timeout_ms > 0 ? opts->attempt_timeout_ms : o->attempt_timeout_ms;
    call->fallback = opts && opts->fallback ? *opts->fallback : o->fallback;
    call->metrics = ft_client_metrics_get(&c->metrics, service, method);
    call->rpcz = c->rpcz && ft_rpcz_on(); /* all that rpcz costs a call while it is off */
    if (opts && opts->hash_key) {
        call->key_hash = ft_hash64(opts->hash_key, opts->hash_key_len, 0);
        call->has_key = 1;
    }
    memset(call->slot, 0, (size_t)call->nslots * sizeof call->slot[0]);
    for (int i = 0; i < call->nslots; i++) {
        call->slot[i].call = call;
        call->slot[i].endpoint = -1;
    }
    call->retry.last_endpoint = -1;
    call->last_answered_by = -1;
    call->sync_wake_fd = -1;
    /* on the home loop already (a call made from a callback): the loop's time is fresh enough */
    call->start_ns = ft_loop_current() == call->loop ? ft_loop_now(call->loop) : ft_now_ns();
    call->deadline_ns = call->start_ns + (int64_t)timeout_ms * FT_NS_PER_MS;
    call->log_id = opts ? opts->log_id : 0;
    inherit_from_parent(call, opts);
    call->task.run = start_call_task;
    return call;
}

int ft_call_check_args(ftrpc_client *c, const char *service, const char *method,
                       const ftrpc_call_options *opts)
{
    if (!c || !service || !method || !*service || !*method) return FTRPC_EINVAL;
    if (opts &&
        (opts->timeout_ms < 0 || opts->attempt_timeout_ms < 0 || opts->backup_request_ms < -1 ||
         opts->backup_request_us < -1 || opts->backup_request_us > FT_BACKUP_US_MAX ||
         opts->retries < FTRPC_NO_RETRY || opts->fail_mode < FTRPC_FAIL_DEFAULT ||
         opts->fail_mode > FTRPC_FAILBACKUP || opts->tied < -1 || opts->tied > 1 ||
         (opts->max_attempts != 0 &&
          (opts->max_attempts < 2 || opts->max_attempts > FT_CALL_SLOTS)) ||
         (opts->fallback && (opts->fallback->kind < FTRPC_FALLBACK_OFF ||
                             opts->fallback->kind > FTRPC_FALLBACK_TIMEOUTS_AND_BREAKER ||
                             (opts->fallback->kind != FTRPC_FALLBACK_OFF && !opts->fallback->fn)))))
        return FTRPC_EINVAL;
    if (opts && (ft_backup_delay_us(opts->backup_request_us, opts->backup_request_ms) > 0 ||
                 opts->backup_policy || opts->tied == 1)) {
        ftrpc_fail_mode mode =
            opts->fail_mode != FTRPC_FAIL_DEFAULT ? opts->fail_mode : c->opts.fail_mode;
        if (mode == FTRPC_FAILFAST || mode == FTRPC_FAILTRY) {
            FT_LOG_RATELIMITED(FTRPC_LOG_WARN,
                               "call of %s/%s refused: it asks for a backup or a tied copy, which "
                               "fail mode %s cannot send (they need failover or failbackup)",
                               service, method, mode == FTRPC_FAILFAST ? "failfast" : "failtry");
            return FTRPC_EINVAL;
        }
    }
    if (atomic_load(&c->stopping)) return FTRPC_ESTOPPED;
    return 0;
}

void ft_call_submit(ft_call *call)
{
    if (ft_loop_current() == call->loop && !call->sync_result) {
        call->counted_on_loop = 1;
        ft_client_count_up_here(call->client, call->loop);
        ft_call *outer = starting_inline;
        starting_inline = call;
        ft_call_start(call);
        starting_inline = outer; /* `call` may be gone: it completed (its callback deferred) */
    } else {
        atomic_fetch_add(&call->client->inflight, 1);
        ft_loop_post(call->loop, &call->task);
    }
}

/* A handle names its call's loop in its low 16 bits, so that a cancel goes straight there. */
#define FT_CALL_ID_LOOP_BITS 16

static unsigned call_id_loop(ftrpc_call_id id)
{
    return (unsigned)(id & ((1u << FT_CALL_ID_LOOP_BITS) - 1));
}

/* ftrpc_call_async_sized; a request given as the block `owned` (owned_len bytes) becomes the
 * call's (ft_call_async_owned) rather than shared. */
static int call_async(ftrpc_client *c, const char *service, const char *method,
                      const ftrpc_buf *request, ft_block *owned, uint32_t owned_len,
                      const ftrpc_buf *attachment, const ftrpc_call_options *opts_in,
                      size_t opts_size, ftrpc_call_cb cb, void *arg, ftrpc_call_id *id)
{
    ftrpc_call_options o;
    int bad;
    const ftrpc_call_options *opts = ft_sized_options_view(&o, sizeof o, opts_in, opts_size, &bad);
    if (bad) return FTRPC_EINVAL;
    int rc = ft_call_check_args(c, service, method, opts);
    if (rc != 0) return rc;
    if (!cb) return FTRPC_EINVAL;
    ft_call *call = ft_call_make(c, service, method, request, attachment, opts);
    if (!call) return FTRPC_ENOMEM;
    if (owned) ft_iobuf_init_block(&call->request, owned, owned_len);
    call->cb = cb;
    call->arg = arg;
    call->id = 0;
    if (id) {
        uint64_t seq = atomic_fetch_add_explicit(&c->next_call_id, 1, memory_order_relaxed) + 1;
        call->id = seq << FT_CALL_ID_LOOP_BITS | (uint64_t)call->loop->index;
        *id = call->id;
    }
    ft_call_submit(call);
    return 0;
}

int ftrpc_call_async_sized(ftrpc_client *c, const char *service, const char *method,
                           const ftrpc_buf *request, const ftrpc_buf *attachment,
                           const ftrpc_call_options *opts, size_t opts_size, ftrpc_call_cb cb,
                           void *arg, ftrpc_call_id *id)
{
    return call_async(c, service, method, request, NULL, 0, attachment, opts, opts_size, cb, arg,
                      id);
}

int ft_call_async_owned(ftrpc_client *c, const char *service, const char *method, ft_block *request,
                        uint32_t len, const ftrpc_call_options *opts, size_t opts_size,
                        ftrpc_call_cb cb, void *arg, ftrpc_call_id *id)
{
    return call_async(c, service, method, NULL, request, len, NULL, opts, opts_size, cb, arg, id);
}

struct cancel_task {
    ft_task task;
    ftrpc_client *client;
    uint64_t id;
};

static void cancel_on_loop(ft_task *t)
{
    struct cancel_task *ct = (struct cancel_task *)t;
    ftrpc_client *c = ct->client;
    ft_client_loop *cl = &c->loops[call_id_loop(ct->id)];
    ft_call *call = ft_idmap_get(&cl->cancelable, (int64_t)ct->id);
    if (call) {
        call->rpcz_cancelled = 1;
        fail_call(call, FTRPC_ECANCELED, "cancelled by the caller");
    }
    ft_client_count_down(c, &c->inflight);
    free(ct);
}

int ftrpc_call_cancel(ftrpc_client *c, ftrpc_call_id id)
{
    if (!c || id == 0 || call_id_loop(id) >= (unsigned)c->rt->nloops) return FTRPC_EINVAL;
    if (atomic_load(&c->stopping)) return FTRPC_ESTOPPED;
    struct cancel_task *ct = malloc(sizeof *ct);
    if (!ct) return FTRPC_ENOMEM;
    ct->task.run = cancel_on_loop;
    ct->client = c;
    ct->id = id;
    atomic_fetch_add(&c->inflight, 1); /* keeps the client until the task ran */
    /* after the call's own start task, if it is still queued: one loop's queue keeps its order */
    ft_loop_post(&c->rt->loops[call_id_loop(id)], &ct->task);
    return 0;
}
