/* ftrpc_client: lifecycle, the service's endpoints and their health, and the per-loop connections.
 * The call engine (attempts, fail modes, retries) is in call.c.
 *
 * Each loop keeps, per endpoint, at most one connection (ft_cconn) shared by every call homed on
 * that loop, with a map from correlation id to the attempt waiting on it. An attempt is in exactly
 * one connection's map while it waits and in none otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sized_options.h"
#include "base/aligned_alloc.h"
#include "base/clock.h"
#include "base/log.h"
#include "client/client_internal.h"
#include "client/selective.h"
#include "metrics/endpoint_report.h"
#include "metrics/registry.h"

/* Decrements a counter ftrpc_client_free may wait on; under free_lock once stopping, so that the
 * waiter cannot see zero and free the client while this thread still touches it. */
void ft_client_count_down(ftrpc_client *c, atomic_int *counter)
{
    if (!atomic_load_explicit(&c->stopping, memory_order_acquire)) {
        atomic_fetch_sub(counter, 1);
        return;
    }
    pthread_mutex_lock(&c->free_lock);
    if (atomic_fetch_sub(counter, 1) == 1) pthread_cond_broadcast(&c->free_cond);
    pthread_mutex_unlock(&c->free_lock);
}

/* ---- endpoints and clusters ---- */

ft_cluster *ft_client_cluster_acquire(ftrpc_client *c)
{
    pthread_mutex_lock(&c->cluster_lock);
    ft_cluster *cl = c->cluster;
    ft_cluster_retain(cl);
    pthread_mutex_unlock(&c->cluster_lock);
    return cl;
}

/* The loop's cell holds a reference, so lending it needs no lock; the lock is taken once per
 * cluster change and loop. A generation read before a newer cluster is taken only makes the next
 * call refresh again. */
ft_cluster *ft_client_cluster_borrow(ftrpc_client *c, const ft_loop *loop, unsigned *epoch)
{
    ft_client_loop *cl = &c->loops[loop->index];
    unsigned gen = atomic_load_explicit(&c->cluster_gen, memory_order_acquire);
    if (!cl->cluster || cl->cluster_gen != gen) {
        ft_cluster *fresh = ft_client_cluster_acquire(c);
        if (cl->cluster) {
            /* the calls still on the old cluster now hold a reference each, which their return
             * drops (their epoch is no longer the cell's) */
            if (cl->borrows > 0)
                atomic_fetch_add_explicit(&cl->cluster->refs, (unsigned)cl->borrows,
                                          memory_order_relaxed);
            ft_cluster_release(cl->cluster);
        }
        cl->cluster = fresh;
        cl->cluster_gen = gen;
        cl->borrows = 0;
        cl->borrow_epoch++;
    }
    cl->borrows++;
    *epoch = cl->borrow_epoch;
    return cl->cluster;
}

void ft_client_cluster_return(ftrpc_client *c, const ft_loop *loop, ft_cluster *cluster,
                              unsigned epoch)
{
    ft_client_loop *cl = &c->loops[loop->index];
    if (epoch == cl->borrow_epoch)
        cl->borrows--;
    else
        ft_cluster_release(cluster);
}

/* Only the thread running the loop writes local_inflight; the release store pairs with the
 * acquire loads of ftrpc_client_free, which frees what the call touched before. */
void ft_client_count_up_here(ftrpc_client *c, const ft_loop *loop)
{
    atomic_int *n = &c->loops[loop->index].local_inflight;
    atomic_store_explicit(n, atomic_load_explicit(n, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

void ft_client_count_down_here(ftrpc_client *c, const ft_loop *loop)
{
    atomic_int *n = &c->loops[loop->index].local_inflight;
    int left = atomic_load_explicit(n, memory_order_relaxed) - 1;
    if (!atomic_load_explicit(&c->stopping, memory_order_acquire)) {
        atomic_store_explicit(n, left, memory_order_release);
        return;
    }
    pthread_mutex_lock(&c->free_lock);
    atomic_store_explicit(n, left, memory_order_release);
    pthread_cond_broadcast(&c->free_cond); /* the waiter sums the shares again */
    pthread_mutex_unlock(&c->free_lock);
}

/* ---- connections ---- */

/* An answer no attempt waits for: a late one, or a cancel's. A server without ftrpc's Control
 * service (brpc) answers a cancel "Fail to find method" (ENOMETHOD, or ENOSERVICE) and raises its
 * error counter each time: the first such answer stops the cancels to that endpoint. */
static void check_cancel_answer(ft_cconn *cc, const ft_rpc_frame *f)
{
    if (f->error_code != -FTRPC_ENOMETHOD && f->error_code != -FTRPC_ENOSERVICE) return;
    for (int i = 0; i < FT_CCONN_CANCEL_CIDS; i++) {
        if (cc->cancel_cids[i] != f->correlation_id) continue;
        if (!atomic_exchange(&cc->ep->no_cancel, 1))
            FT_INFO("%s has no %s/%s (a brpc server?): no more cancels are sent to it",
                    cc->ep->base.name, FT_CONTROL_SERVICE, FT_CONTROL_CANCEL);
        return;
    }
}

static int cconn_on_read(ft_conn *conn);
static void cconn_on_close(ft_conn *conn, int reason);
static int cconn_on_flush(ft_conn *conn)
{
    ft_cconn *cc = conn->owner;
    return cc->grpc ? ft_grpc_cconn_on_flush(cc) : 0;
}
static const ft_conn_handler CCONN_HANDLER = {cconn_on_read, NULL, cconn_on_close, cconn_on_flush};

/* The name a TLS endpoint's certificate must carry: the option, else the endpoint's host. */
static void tls_peer_name(const ftrpc_client *c, const ft_cluster_endpoint *ep, char *buf,
                          size_t len)
{
    if (c->tls_server_name) {
        snprintf(buf, len, "%s", c->tls_server_name);
        return;
    }
    const char *h = ep->name, *end = strrchr(h, ':');
    if (*h == '[') { /* [v6]:port */
        h++;
        end = strchr(h, ']');
    }
    size_t n = end ? (size_t)(end - h) : strlen(h);
    snprintf(buf, len, "%.*s", (int)(n < len ? n : len - 1), h);
}

ft_cconn *ft_client_get_conn(ftrpc_client *c, ft_loop *loop, ft_cluster_endpoint *base, int *err)
{
    ft_client_endpoint *ep = ft_client_endpoint_of(base);
    ft_cconn *cc = ep->conns[loop->index];
    if (cc && ft_conn_is_open(cc->conn)) return cc;
    /* a closing connection leaves the table when its close completes; open a fresh one meanwhile */
    ep->conns[loop->index] = NULL;
    cc = calloc(1, sizeof *cc);
    if (!cc) {
        *err = FTRPC_ENOMEM;
        return NULL;
    }
    cc->client = c;
    cc->loop = loop;
    cc->ep = ep;
    ft_idmap_init(&cc->pending);
    int rc = ft_conn_connect(loop, (struct sockaddr *)&ep->sa, c->opts.connect_timeout_ms,
                             c->opts.max_unwritten_bytes, &CCONN_HANDLER, cc, &cc->conn);
    if (rc != 0) {
        ft_idmap_fini(&cc->pending);
        free(cc);
        *err = rc;
        return NULL;
    }
    /* a failure is logged and left at that: the health check still watches the connection */
    (void)ft_conn_set_keepalive(cc->conn, c->opts.tcp_keepalive_idle_s,
                                c->opts.tcp_keepalive_interval_s, c->opts.tcp_keepalive_count,
                                c->opts.tcp_user_timeout_ms);
    ft_cluster_endpoint_retain(base);
    atomic_fetch_add(&c->open_conns, 1);
    ft_list_push_back(&c->loops[loop->index].cconns, &cc->node);
    ep->conns[loop->index] = cc;
    if (c->tls_ctx) {
        char name[256];
        tls_peer_name(c, base, name, sizeof name);
        rc = ft_conn_start_tls(cc->conn, c->tls_ctx, c->opts.tls.skip_name_check ? NULL : name);
        if (rc != 0) {
            ft_conn_close(cc->conn, rc, 1); /* on_close frees cc */
            *err = rc;
            return NULL;
        }
    }
    if (c->opts.protocol == FTRPC_PROTOCOL_GRPC && (rc = ft_grpc_cconn_start(cc)) != 0) {
        ft_conn_close(cc->conn, rc, 1);
        *err = rc;
        return NULL;
    }
    return cc;
}

/* An endpoint that left the service keeps its connections until their calls are done. */
void ft_client_close_if_retired(ft_cconn *cc)
{
    if (atomic_load_explicit(&cc->ep->base.removed, memory_order_relaxed) &&
        ft_idmap_count(&cc->pending) == 0 && ft_conn_is_open(cc->conn))
        ft_conn_close(cc->conn, 0, 0);
}

/* ---- the health check of a busy connection ----
 *
 * A peer that vanished without a RST (a partition, a black-holed host, a proxy that stopped
 * forwarding) leaves its connection open: writes go into the kernel's buffer and nothing comes
 * back. Attempt timeouts fail the attempts, but the connection would stay and take the next
 * attempts too. So once a request is queued, a timer watches what the connection reads: after
 * health_check_ms with nothing read it sends ftrpc.Control/Ping (over gRPC an HTTP/2 PING), which
 * a live server answers at once on its IO thread whatever its handlers are doing; when nothing at
 * all arrives within health_check_timeout_ms after that, the connection is closed as dead, the
 * attempts waiting on it fail with FTRPC_EFAILEDSOCKET (failover retries them elsewhere, health
 * marks the endpoint), and the next attempt opens a new connection, whose connect is bounded by
 * connect_timeout_ms. The check rests once nothing waits and something was read after the last
 * request; an idle connection is left to TCP keepalive (ft_conn_set_keepalive).
 *
 * A large request on a slow link is not a dead connection: the server answers nothing before it
 * has the whole request, and the probe waits behind it. While a write is in progress, the kernel
 * taking more of it since the last look counts as a sign of life, as a read does (the kernel takes
 * bytes only as the peer acknowledges them, once the socket's buffer is full). A probe that cannot
 * even be queued (the output is at max_unwritten_bytes) waits the same way for a read or for the
 * kernel to take bytes. */

int ft_client_send_control(ft_cconn *cc, const char *method, const void *payload, size_t len,
                           int32_t timeout_ms)
{
    ft_iobuf body, frame;
    ft_iobuf_init(&body);
    ft_iobuf_init(&frame);
    ft_request_header h = {
        .service = FT_CONTROL_SERVICE,
        .method = method,
        .correlation_id = ++cc->last_cid, /* unique on the connection, all baidu_std asks */
        .timeout_ms = timeout_ms,
    };
    int rc = len ? ft_iobuf_append(&body, payload, len) : 0;
    if (rc == 0) rc = ft_baidu_std_pack_request(&frame, &h, &body, NULL);
    if (rc == 0) rc = ft_conn_write(cc->conn, &frame);
    ft_iobuf_fini(&body);
    ft_iobuf_fini(&frame);
    return rc;
}

static void on_health_check(ft_timer *t);

static void check_arm(ft_cconn *cc, int64_t due_ns)
{
    cc->check_armed = 1;
    ft_timer_start(cc->loop, &cc->check_timer, due_ns, on_health_check);
}

void ft_client_conn_busy(ft_cconn *cc)
{
    int check_ms = cc->client->opts.health_check_ms;
    if (check_ms <= 0) return;
    int64_t now = ft_loop_now(cc->loop);
    cc->last_send_ns = now;
    if (cc->check_armed) return;
    cc->watch_from_ns = now;
    check_arm(cc, now + (int64_t)check_ms * FT_NS_PER_MS);
}

static void on_health_check(ft_timer *t)
{
    ft_cconn *cc = ft_container_of(t, ft_cconn, check_timer);
    const ftrpc_client_options *o = &cc->client->opts;
    ft_conn *conn = cc->conn;
    cc->check_armed = 0;
    if (conn->state != FT_CONN_OPEN && conn->state != FT_CONN_CONNECTING) return;
    int64_t now = ft_loop_now(cc->loop);
    uint64_t taken = ft_conn_bytes_sent(conn);
    if (taken != cc->taken_seen && ft_conn_unwritten(conn) > 0) cc->last_taken_ns = now;
    cc->taken_seen = taken;
    int64_t quiet_from =
        cc->last_read_ns > cc->watch_from_ns ? cc->last_read_ns : cc->watch_from_ns;
    if (cc->last_taken_ns > quiet_from) quiet_from = cc->last_taken_ns;
    if (cc->probe_sent_ns && cc->last_read_ns < cc->probe_sent_ns &&
        cc->last_taken_ns <= cc->probe_sent_ns) {
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN,
                           "connection to %s is dead: nothing received for %lld ms after requests "
                           "(%zu still waiting), nor an answer to a health check within %d ms; "
                           "closing it",
                           conn->peer, (long long)((now - quiet_from) / FT_NS_PER_MS),
                           ft_idmap_count(&cc->pending), o->health_check_timeout_ms);
        ft_conn_close(conn, FTRPC_EFAILEDSOCKET, 1); /* on_close fails the attempts */
        return;
    }
    cc->probe_sent_ns = 0;
    /* Idle: nothing waits, and something was read after the last request. A request that timed
     * out unanswered keeps the check armed: its connection may be the dead one. */
    if (ft_idmap_count(&cc->pending) == 0 && cc->last_read_ns >= cc->last_send_ns) return;
    if (conn->state == FT_CONN_CONNECTING) { /* the connect timeout watches that part */
        cc->watch_from_ns = now;
        check_arm(cc, now + (int64_t)o->health_check_ms * FT_NS_PER_MS);
        return;
    }
    int64_t due = quiet_from + (int64_t)o->health_check_ms * FT_NS_PER_MS;
    if (now < due) {
        check_arm(cc, due);
        return;
    }
    int rc = cc->grpc
                 ? ft_grpc_cconn_ping(cc)
                 : ft_client_send_control(cc, FT_CONTROL_PING, NULL, 0, o->health_check_timeout_ms);
    if (rc != 0 && rc != FTRPC_EOVERCROWDED) {
        /* the output is failing: nothing more to learn from a probe */
        ft_conn_close(conn, FTRPC_EFAILEDSOCKET, 1);
        return;
    }
    cc->probe_sent_ns = now;
    check_arm(cc, now + (int64_t)o->health_check_timeout_ms * FT_NS_PER_MS);
}

static int cconn_on_read(ft_conn *conn)
{
    ft_cconn *cc = conn->owner;
    cc->last_read_ns = ft_loop_now(cc->loop);
    if (cc->grpc) {
        int rc = ft_grpc_cconn_on_read(cc);
        if (rc == 0) ft_client_close_if_retired(cc);
        return rc;
    }
    while (conn->state == FT_CONN_OPEN) {
        ft_rpc_frame f;
        const char *reason = NULL;
        /* ft_baidu_std_parse initializes f */
        ft_parse_status st =
            ft_baidu_std_parse(&conn->in, cc->client->opts.max_body_size, &f, &reason);
        if (st == FT_PARSE_NEED_MORE) {
            conn->read_want = ft_baidu_std_frame_size(&conn->in, cc->client->opts.max_body_size);
            break;
        }
        conn->read_want = 0;
        if (st == FT_PARSE_CLOSE || (st == FT_PARSE_OK && f.is_request)) {
            FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "closing connection to %s: %s", conn->peer,
                               st == FT_PARSE_OK ? "server sent a request frame" : reason);
            ft_rpc_frame_fini(&f);
            return FTRPC_ERESPONSE;
        }
        if (st == FT_PARSE_OK && f.started) {
            /* a tied copy's "started" notice (docs/protocol.md, Tied requests): the attempt still
             * waits for its answer; one the client never asked for is dropped, never taken for
             * an empty success */
            ft_attempt *a =
                f.correlation_id > 0 ? ft_idmap_get(&cc->pending, f.correlation_id) : NULL;
            if (a) ft_call_on_started(a);
            ft_rpc_frame_fini(&f);
            continue;
        }
        ft_attempt *a = f.correlation_id > 0 ? ft_idmap_take(&cc->pending, f.correlation_id) : NULL;
        if (a) {
            a->cc = NULL;
            ft_call_on_response(a, st, &f, reason);
        } else if (st == FT_PARSE_OK)
            check_cancel_answer(cc, &f);
        /* else: a late answer to an attempt that already ended; nothing waits for it */
        int refused = st == FT_PARSE_OK && f.error_code == -FTRPC_ERPCAUTH;
        ft_rpc_frame_fini(&f);
        /* the server refused this connection's credential and closes it after this answer: the
         * requests still pending on it are refused with it (they would otherwise end in EEOF and
         * be retried), and the next call opens a new connection instead of writing to this one */
        if (refused) return FTRPC_ERPCAUTH;
    }
    ft_client_close_if_retired(cc);
    return 0;
}

static void cconn_on_close(ft_conn *conn, int reason)
{
    ft_cconn *cc = conn->owner;
    ftrpc_client *c = cc->client;
    if (cc->ep->conns[cc->loop->index] == cc) cc->ep->conns[cc->loop->index] = NULL;
    ft_list_remove(&cc->node);
    ft_timer_stop(cc->loop, &cc->check_timer);
    if (reason) FT_DEBUG("connection to %s closed: %s", conn->peer, ftrpc_strerror(reason));
    ft_attempt *a;
    while ((a = ft_idmap_take_any(&cc->pending)) != NULL) {
        a->cc = NULL;
        ft_call_on_conn_lost(a, reason ? reason : FTRPC_ESTOPPED,
                             reason == FTRPC_ETLS ? ft_conn_tls_error(conn) : NULL);
    }
    ft_grpc_cconn_free(cc);
    ft_idmap_fini(&cc->pending);
    ft_cluster_endpoint_release(&cc->ep->base);
    free(cc);
    ft_client_count_down(c, &c->open_conns);
}

struct retire_task {
    ft_task task;
    ftrpc_client *client;
    ft_loop *loop;
};

static void retire_on_loop(ft_task *t)
{
    struct retire_task *rt = (struct retire_task *)t;
    ft_list *head = &rt->client->loops[rt->loop->index].cconns;
    for (ft_list *n = head->next, *next; n != head; n = next) {
        next = n->next;
        ft_client_close_if_retired(ft_container_of(n, ft_cconn, node));
    }
    ft_client_count_down(rt->client, &rt->client->inflight);
    free(rt);
}

/* ---- options ---- */

static void to_health_options(const ftrpc_health_options *in, ft_health_options *out)
{
    memset(out, 0, sizeof *out);
    memcpy(out->mark_codes, in->mark_codes, sizeof out->mark_codes);
    memcpy(out->suspend_codes, in->suspend_codes, sizeof out->suspend_codes);
    out->retries_before_suspension = in->retries_before_suspension;
    out->retry_delay_ms = in->retry_delay_ms;
    out->initial_duration_ms = in->initial_suspension_ms;
    out->progression_factor = in->progression_factor;
    out->maximum_duration_ms = in->maximum_suspension_ms;
    out->breaker.error_ratio = in->breaker_error_ratio;
    out->breaker.min_calls = in->breaker_min_calls;
    out->breaker.window_ms = in->breaker_window_ms;
    out->suspend_other_errors = in->suspend_other_errors != 0;
}

_Static_assert((int)FTRPC_ENDPOINT_ACTIVE == (int)FT_HEALTH_ACTIVE &&
                   (int)FTRPC_ENDPOINT_TIMEOUT == (int)FT_HEALTH_TIMEOUT &&
                   (int)FTRPC_ENDPOINT_SUSPENDED == (int)FT_HEALTH_SUSPENDED &&
                   (int)FTRPC_ENDPOINT_PROBING == (int)FT_HEALTH_PROBING &&
                   (int)FTRPC_ENDPOINT_OFF == (int)FT_HEALTH_OFF,
               "the public endpoint states are health's");
_Static_assert(sizeof(((ftrpc_health_options *)0)->reserved) == 2 * sizeof(int64_t) &&
                   offsetof(ftrpc_health_options, reserved) ==
                       offsetof(ftrpc_health_options, suspend_other_errors) + 16,
               "health options keep their size: new fields took two reserved slots");

void ftrpc_health_options_wso2(ftrpc_health_options *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->initial_suspension_ms = 30000; /* suspendOnFailure initialDuration */
    o->progression_factor = 1;        /* progressionFactor */
    o->maximum_suspension_ms = 30000; /* maximumDuration (WSO2: Long.MAX_VALUE; with factor 1
                                       * every suspension is the initial one anyway) */
    o->retries_before_suspension = 0; /* markForSuspension retriesBeforeSuspension */
    o->retry_delay_ms = 0;            /* retryDelay */
    o->breaker_error_ratio = -1;      /* WSO2 has no error-ratio breaker */
    o->max_suspended_ratio = 1;       /* nor a cap on suspended endpoints */
    o->suspend_other_errors = 1;      /* "all the other errors" suspend */
    o->retry_in_timeout = 1;          /* a Timeout endpoint is retried before failing over */
}

/* The client's copy of opts.endpoint_codes: one block, the entries then their names. */
static int copy_endpoint_codes(const ftrpc_client_options *o, ftrpc_endpoint_codes **out)
{
    *out = NULL;
    if (o->n_endpoint_codes == 0) return 0;
    size_t n = (size_t)o->n_endpoint_codes, names = 0;
    for (size_t i = 0; i < n; i++)
        names += strlen(o->endpoint_codes[i].endpoint) + 1;
    ftrpc_endpoint_codes *copy = malloc(n * sizeof *copy + names);
    if (!copy) return FTRPC_ENOMEM;
    char *p = (char *)(copy + n);
    for (size_t i = 0; i < n; i++) {
        copy[i] = o->endpoint_codes[i];
        size_t len = strlen(o->endpoint_codes[i].endpoint) + 1;
        memcpy(p, o->endpoint_codes[i].endpoint, len);
        copy[i].endpoint = p;
        p += len;
    }
    *out = copy;
    return 0;
}

const ftrpc_endpoint_codes *ft_client_endpoint_codes(const ftrpc_client *c, const char *endpoint)
{
    for (int i = 0; i < c->opts.n_endpoint_codes; i++)
        if (!strcmp(c->opts.endpoint_codes[i].endpoint, endpoint))
            return &c->opts.endpoint_codes[i];
    return NULL;
}

static int codes_valid(const int *codes)
{
    for (int i = 0; i < FTRPC_MAX_CODES; i++) {
        if (codes[i] == 0) return 1;
        if (codes[i] > 0) return 0;
    }
    return 0; /* not zero-terminated */
}

/* 0, or FTRPC_EINVAL with the reason logged. */
static int validate_endpoint_codes(const ftrpc_client_options *o)
{
    if (o->n_endpoint_codes < 0 || o->n_endpoint_codes > 4096 ||
        (o->n_endpoint_codes > 0 && !o->endpoint_codes)) {
        FT_WARN("client options: n_endpoint_codes %d must be in [0, 4096] with endpoint_codes set",
                o->n_endpoint_codes);
        return FTRPC_EINVAL;
    }
    for (int i = 0; i < o->n_endpoint_codes; i++) {
        const ftrpc_endpoint_codes *e = &o->endpoint_codes[i];
        if (!e->endpoint || !*e->endpoint || strlen(e->endpoint) >= 64) {
            FT_WARN("client options: endpoint_codes[%d] needs an endpoint \"host:port\"", i);
            return FTRPC_EINVAL;
        }
        if (!codes_valid(e->retry_codes) || !codes_valid(e->no_retry_codes)) {
            FT_WARN("client options: endpoint_codes[%d] (%s): codes must be negative FTRPC_E* "
                    "codes, zero-terminated (at most %d)",
                    i, e->endpoint, FTRPC_MAX_CODES - 1);
            return FTRPC_EINVAL;
        }
        for (size_t k = 0; k < sizeof e->reserved / sizeof e->reserved[0]; k++)
            if (e->reserved[k] != 0) {
                FT_WARN("client options: endpoint_codes[%d].reserved must be zero", i);
                return FTRPC_EINVAL;
            }
        for (int j = 0; j < i; j++)
            if (!strcmp(o->endpoint_codes[j].endpoint, e->endpoint)) {
                FT_WARN("client options: endpoint_codes names %s twice", e->endpoint);
                return FTRPC_EINVAL;
            }
    }
    return 0;
}

/* The cluster's hook: an endpoint's own non-retry codes put it in TIMEOUT (health's
 * timeout_codes). */
static void endpoint_health_options(const ft_endpoint *spec, ft_health_options *ho, void *arg)
{
    const ftrpc_endpoint_codes *e = ft_client_endpoint_codes(arg, spec->addr);
    if (e) memcpy(ho->timeout_codes, e->no_retry_codes, sizeof ho->timeout_codes);
}

int ftrpc_lb_name_valid(const char *name)
{
    return ft_lb_name_valid(name);
}

int ftrpc_max_request_payload(const char *service, const char *method, size_t max_frame,
                              size_t *out)
{
    if (!service || !*service || !method || !*method || !out) return FTRPC_EINVAL;
    if (max_frame == 0) max_frame = FTRPC_DEFAULT_MAX_BODY_SIZE;
    static const uint8_t longest_credential[FT_CLIENT_MAX_CREDENTIAL];
    /* a negative int64 is a varint's widest (10 bytes); a timeout is sent as a positive int32 */
    ft_request_header h = {.service = service,
                           .method = method,
                           .correlation_id = -1,
                           .timeout_ms = INT32_MAX,
                           .log_id = -1,
                           .auth_data = longest_credential,
                           .auth_len = sizeof longest_credential};
    ft_iobuf frame;
    ft_iobuf_init(&frame);
    int rc = ft_baidu_std_pack_request(&frame, &h, NULL, NULL);
    size_t overhead = ft_iobuf_size(&frame);
    ft_iobuf_fini(&frame);
    if (rc != 0) return rc;
    if (overhead > max_frame) return FTRPC_EINVAL;
    *out = max_frame - overhead;
    return 0;
}

static int validate_and_default(ftrpc_client_options *o)
{
    if (o->timeout_ms < 0 || o->connect_timeout_ms < 0 || o->attempt_timeout_ms < 0 ||
        o->retries < FTRPC_NO_RETRY || o->fail_mode < FTRPC_FAIL_DEFAULT ||
        o->fail_mode > FTRPC_FAILBACKUP || o->backoff.kind < FTRPC_BACKOFF_NONE ||
        o->backoff.kind > FTRPC_BACKOFF_EXPONENTIAL || o->backoff.initial_ms < 0 ||
        o->backoff.max_ms < 0 || (o->backoff.multiplier != 0 && o->backoff.multiplier < 1)) {
        FT_WARN("client options: a value is out of range (negative timeout, retries, backoff?)");
        return FTRPC_EINVAL;
    }
    if (o->protocol < FTRPC_PROTOCOL_DEFAULT || o->protocol > FTRPC_PROTOCOL_GRPC) {
        FT_WARN("client options: unknown protocol %d", (int)o->protocol);
        return FTRPC_EINVAL;
    }
    if (o->protocol == FTRPC_PROTOCOL_DEFAULT) o->protocol = FTRPC_PROTOCOL_BAIDU_STD;
    if (o->lb && !ft_lb_name_valid(o->lb)) {
        FT_WARN("client options: unknown load balancer '%s'", o->lb);
        return FTRPC_EINVAL;
    }
    if (validate_endpoint_codes(o) != 0) return FTRPC_EINVAL;
    if (o->priority_sticky < 0 || o->priority_sticky > 1 || o->health.suspend_other_errors < 0 ||
        o->health.suspend_other_errors > 1 || o->health.retry_in_timeout < 0 ||
        o->health.retry_in_timeout > 1) {
        FT_WARN("client options: priority_sticky, health.suspend_other_errors and "
                "health.retry_in_timeout take 0 or 1");
        return FTRPC_EINVAL;
    }
    if (o->naming_wait_ms < 0 || o->naming_empty_grace_ms < -1 || o->backup_request_ms < -1 ||
        o->naming_max_stale_ms < -1 || o->fallback.kind < FTRPC_FALLBACK_OFF ||
        o->fallback.kind > FTRPC_FALLBACK_TIMEOUTS_AND_BREAKER ||
        (o->fallback.kind != FTRPC_FALLBACK_OFF && !o->fallback.fn))
        return FTRPC_EINVAL;
    if (o->backup_budget < FTRPC_BACKUP_BUDGET_NONE ||
        o->backup_budget > FTRPC_BACKUP_BUDGET_RETRY || o->backup_counts_as_retry < 0 ||
        o->backup_counts_as_retry > 1) {
        FT_WARN("client options: backup_budget %d must be -1, 0 or 1 and backup_counts_as_retry "
                "%d 0 or 1",
                (int)o->backup_budget, o->backup_counts_as_retry);
        return FTRPC_EINVAL;
    }
    if (o->max_attempts != 0 && (o->max_attempts < 2 || o->max_attempts > FT_CALL_SLOTS)) {
        FT_WARN("client options: max_attempts %d must be 0 (the default, 2) or from 2 to %d "
                "(gRPC's cap on hedged copies)",
                o->max_attempts, FT_CALL_SLOTS);
        return FTRPC_EINVAL;
    }
    if (o->tied < 0 || o->tied > 1) {
        FT_WARN("client options: tied %d must be 0 or 1", o->tied);
        return FTRPC_EINVAL;
    }
    /* brpc's rule: a backup delay (or policy) is enough to turn backups on. failover with
     * backups is failbackup; failfast (one request) and failtry (the same endpoint again) cannot
     * send a copy to another endpoint, and a delay that would do nothing is refused, not ignored */
    if (o->backup_request_us < -1 || o->backup_request_us > FT_BACKUP_US_MAX) {
        FT_WARN("client options: backup_request_us must be -1 (off), 0 (backup_request_ms "
                "decides) or a delay up to %lld us (got %lld)",
                (long long)FT_BACKUP_US_MAX, (long long)o->backup_request_us);
        return FTRPC_EINVAL;
    }
    int wants_backup = ft_backup_delay_us(o->backup_request_us, o->backup_request_ms) > 0 ||
                       o->backup_policy || o->tied;
    if (wants_backup && (o->fail_mode == FTRPC_FAILFAST || o->fail_mode == FTRPC_FAILTRY)) {
        FT_WARN("client options: %s with fail_mode %s: backups need failover (the default) or "
                "failbackup",
                o->backup_policy ? "a backup_policy"
                : o->tied        ? "tied requests"
                                 : "a positive backup delay",
                o->fail_mode == FTRPC_FAILFAST ? "failfast" : "failtry");
        return FTRPC_EINVAL;
    }
    if (wants_backup && (o->fail_mode == FTRPC_FAIL_DEFAULT || o->fail_mode == FTRPC_FAILOVER))
        o->fail_mode = FTRPC_FAILBACKUP;
    /* rpcx's Failbackup has a default delay (10 ms); ftrpc has none, since a fixed one is wrong
     * for most services: say so rather than let the mode do nothing unnoticed */
    if (o->fail_mode == FTRPC_FAILBACKUP && !wants_backup)
        FT_WARN("client options: failbackup without backup_request_ms or a backup_policy: only "
                "calls that give their own delay or policy send a backup");
    if (!ft_keepalive_settings_valid(o->tcp_keepalive_idle_s, o->tcp_keepalive_interval_s,
                                     o->tcp_keepalive_count, o->tcp_user_timeout_ms) ||
        o->health_check_ms < -1 || o->health_check_timeout_ms < 0) {
        FT_WARN("client options: a dead-connection setting is out of range (keepalive idle -1 to "
                "32767 s, interval 0 to 32767 s, count 0 to 127, user timeout and health check "
                ">= 0, or -1 for off where allowed)");
        return FTRPC_EINVAL;
    }
    ft_keepalive_fill_defaults(&o->tcp_keepalive_idle_s, &o->tcp_keepalive_interval_s,
                               &o->tcp_keepalive_count);
    if (o->tcp_user_timeout_ms == 0) o->tcp_user_timeout_ms = 5000;
    if (o->health_check_ms == 0) o->health_check_ms = 300;
    if (o->health_check_timeout_ms == 0) o->health_check_timeout_ms = 500;
    if (o->naming_wait_ms == 0) o->naming_wait_ms = 2000;
    if (o->timeout_ms == 0) o->timeout_ms = 1000;
    if (o->connect_timeout_ms == 0) o->connect_timeout_ms = 200;
    if (o->max_body_size == 0) o->max_body_size = FT_BAIDU_STD_DEFAULT_MAX_BODY;
    if (o->max_unwritten_bytes == 0) o->max_unwritten_bytes = (size_t)64 << 20;
    if (o->fail_mode == FTRPC_FAIL_DEFAULT) o->fail_mode = FTRPC_FAILOVER;
    if (o->retries == 0) o->retries = 3;
    if (o->backoff.initial_ms == 0) o->backoff.initial_ms = 10;
    if (o->backoff.multiplier == 0) o->backoff.multiplier = 2;
    if (o->backoff.max_ms == 0) o->backoff.max_ms = 1000;
    if (!o->lb) o->lb = ft_lb_default_name();
    /* keep a static copy of the name: clusters are rebuilt long after the caller's string is gone
     */
    static const char *const LB_NAMES[] = {"random", "rr",  "wrr",     "wrandom",
                                           "chash",  "p2c", "priority"};
    for (size_t i = 0; i < sizeof LB_NAMES / sizeof LB_NAMES[0]; i++)
        if (!strcmp(o->lb, LB_NAMES[i])) o->lb = LB_NAMES[i];
    ft_health_options ho;
    to_health_options(&o->health, &ho);
    if (ft_health_options_validate(&ho) != 0) return FTRPC_EINVAL;
    ft_health_set_options so = {.max_suspended_ratio = o->health.max_suspended_ratio,
                                .breaker_reject = o->health.breaker_reject};
    if (ft_health_set_options_validate(&so) != 0) return FTRPC_EINVAL;
    ft_retry_budget_options bo = {.ratio = o->retry_budget_ratio,
                                  .min_per_sec = o->retry_budget_min_per_sec};
    if (ft_retry_budget_options_validate(&bo) != 0) return FTRPC_EINVAL;
    ft_throttle_options to = {.k = o->throttle_k, .window_ms = o->throttle_window_ms};
    if (ft_throttle_options_validate(&to) != 0) return FTRPC_EINVAL;
    if (o->deadline_propagation < -1 || o->deadline_propagation > 1 || o->deadline_margin_ms < 0 ||
        o->retry_chain_stop < -1 || o->retry_chain_stop > 1) {
        FT_WARN("client options: deadline_propagation and retry_chain_stop take -1, 0 or 1, "
                "deadline_margin_ms >= 0 (got %d, %d, %d)",
                o->deadline_propagation, o->retry_chain_stop, o->deadline_margin_ms);
        return FTRPC_EINVAL;
    }
    return 0;
}

/* ---- discovery updates ---- */

/* The cluster's hooks: a client endpoint is the cluster's with a socket address and a
 * connection slot per loop. */
static ft_cluster_endpoint *endpoint_make(const ft_endpoint *spec, void *arg)
{
    ftrpc_client *c = arg;
    ft_client_endpoint *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->conns = calloc((size_t)c->rt->nloops, sizeof *e->conns);
    if (!e->conns || ft_sockaddr_parse(spec->addr, &e->sa) != 0) {
        FT_WARN("client: cannot use endpoint '%s' (bad or unresolvable address)", spec->addr);
        free(e->conns);
        free(e);
        return NULL;
    }
    return &e->base;
}

static void endpoint_destroy(ft_cluster_endpoint *base, void *arg)
{
    (void)arg;
    ft_client_endpoint *e = ft_client_endpoint_of(base);
    free(e->conns);
    free(e);
}

/* Builds the cluster for a snapshot (the endpoints still listed keep their health). */
static ft_cluster *cluster_build(ftrpc_client *c, const ft_naming_snapshot *snap,
                                 const ft_cluster *prev)
{
    ft_health_options ho;
    to_health_options(&c->opts.health, &ho);
    ft_cluster_options co = {.lb = c->opts.lb,
                             .health = &ho,
                             .max_suspended_ratio = c->opts.health.max_suspended_ratio,
                             .breaker_reject = c->opts.health.breaker_reject,
                             .nshards = c->rt->nloops,
                             .priority_sticky = c->opts.priority_sticky,
                             .ops = &c->endpoint_ops};
    return ft_cluster_build(&co, snap, prev);
}

/* The view's listener (its watch thread): publish a new cluster, retire endpoints that left. */
static void on_endpoints(ft_naming_snapshot *snap, void *arg)
{
    ftrpc_client *c = arg;
    ft_cluster *prev = c->cluster;
    ft_cluster *cl = cluster_build(c, snap, prev);
    if (!cl) {
        FT_ERROR("client: out of memory applying an endpoint update; keeping the old list");
        return;
    }
    pthread_mutex_lock(&c->cluster_lock);
    c->cluster = cl;
    atomic_fetch_add_explicit(&c->cluster_gen, 1, memory_order_release);
    pthread_mutex_unlock(&c->cluster_lock);
    int retired = 0;
    for (size_t i = 0; prev && i < prev->n; i++) {
        if (ft_cluster_find(cl, prev->eps[i]->name) != prev->eps[i]) {
            atomic_store(&prev->eps[i]->removed, 1);
            retired = 1;
        }
    }
    if (retired && !atomic_load(&c->stopping)) {
        for (int i = 0; i < c->rt->nloops; i++) {
            struct retire_task *rt = malloc(sizeof *rt);
            if (!rt) continue; /* idle connections then close at their next response or at free */
            rt->task.run = retire_on_loop;
            rt->client = c;
            rt->loop = &c->rt->loops[i];
            atomic_fetch_add(&c->inflight, 1); /* keeps the client alive until the task ran */
            ft_loop_post(rt->loop, &rt->task);
        }
    }
    FT_INFO("client: %zu endpoints (version %llu)", cl->n, (unsigned long long)cl->version);
    ft_cluster_release(prev);
}

/* "host:port" and "h:p,h:p" are shorthands for list:// */
static char *normalize_url(const char *url)
{
    if (strstr(url, "://")) return strdup(url);
    size_t n = strlen(url) + 8;
    char *u = malloc(n);
    if (u) snprintf(u, n, "list://%s", url);
    return u;
}

/* ---- the /endpoints page ---- */

/* Runs on the thread rendering the page: reads the current cluster like a call does. */
static void report_endpoints(ft_endpoint_report *rep, void *arg)
{
    ftrpc_client *c = arg;
    ft_cluster *cl = ft_client_cluster_acquire(c);
    int64_t now = ft_now_ns();
    for (size_t i = 0; i < cl->n; i++) {
        ft_cluster_endpoint *e = cl->eps[i];
        ft_health_stats st;
        ft_health_stats_get(&e->health, &st);
        ft_endpoint_report_add(
            rep, &(ft_endpoint_row){.address = e->name,
                                    .state = ft_health_state_name(ft_health_state_get(&e->health)),
                                    .usable_in_ms =
                                        ft_health_usable_in_ns(&e->health, now) / FT_NS_PER_MS,
                                    .ewma_us = ft_health_ewma_us(&e->health, now),
                                    .inflight = ft_cluster_endpoint_inflight(e),
                                    .suspensions = st.suspensions});
    }
    ft_cluster_release(cl);
}

/* The admin page's switch (POST /endpoints?off=...): under the reporters' lock, as the report. */
static int switch_endpoint(const char *address, int on, void *arg)
{
    return ftrpc_client_endpoint_switch(arg, address, on);
}

/* ---- discovery figures (registry gauges, computed when a page reads them) ---- */

static int64_t naming_size(void *arg)
{
    ftrpc_client *c = arg;
    ft_cluster *cl = ft_client_cluster_acquire(c);
    int64_t n = (int64_t)cl->n;
    ft_cluster_release(cl);
    return n;
}

static int64_t naming_updates(void *arg)
{
    ft_naming_view_stats st;
    ft_naming_view_stats_get(((ftrpc_client *)arg)->view, &st);
    return (int64_t)st.updates;
}

static int64_t naming_stale(void *arg)
{
    ft_naming_view_stats st;
    ft_naming_view_stats_get(((ftrpc_client *)arg)->view, &st);
    return st.stale ? (st.stale_ms > 0 ? st.stale_ms : 1) : 0;
}

static int64_t cancels(void *arg)
{
    return atomic_load_explicit(&((ftrpc_client *)arg)->cancels, memory_order_relaxed);
}

static int64_t budget_exhausted(void *arg)
{
    return atomic_load_explicit(&((ftrpc_client *)arg)->budget_exhausted, memory_order_relaxed);
}

static int64_t backups_refused(void *arg)
{
    return atomic_load_explicit(&((ftrpc_client *)arg)->backups_refused, memory_order_relaxed);
}

static void register_naming_gauges(ftrpc_client *c, const char *url)
{
    ft_metrics_registry *reg = ft_metrics_default_registry();
    ft_metric_label labels[] = {{"client", c->metrics.client_id}, {"naming", url}};
    ft_gauge_init_fn(&c->naming_size, naming_size, c);
    ft_gauge_init_fn(&c->naming_updates, naming_updates, c);
    ft_gauge_init_fn(&c->naming_stale, naming_stale, c);
    ft_metrics_registry_add(reg, FT_METRIC_GAUGE, &c->naming_size, "rpc_client_naming_endpoints",
                            "endpoints in the client's current view", labels, 2);
    ft_metrics_registry_add(reg, FT_METRIC_GAUGE, &c->naming_updates, "rpc_client_naming_updates",
                            "good answers from the naming service", labels, 2);
    ft_metrics_registry_add(reg, FT_METRIC_GAUGE, &c->naming_stale, "rpc_client_naming_stale_ms",
                            "0 while fresh; how long the view has served a stale list", labels, 2);
    ft_gauge_init_fn(&c->cancels_gauge, cancels, c);
    ft_gauge_init_fn(&c->budget_exhausted_gauge, budget_exhausted, c);
    ft_metrics_registry_add(reg, FT_METRIC_GAUGE, &c->cancels_gauge, "rpc_client_cancels",
                            "ftrpc.Control/Cancel sent for attempts outlived by their call", labels,
                            2);
    ft_metrics_registry_add(reg, FT_METRIC_GAUGE, &c->budget_exhausted_gauge,
                            "rpc_client_budget_exhausted",
                            "retries and backups refused by the empty retry budget", labels, 2);
    ft_gauge_init_fn(&c->backups_refused_gauge, backups_refused, c);
    ft_metrics_registry_add(
        reg, FT_METRIC_GAUGE, &c->backups_refused_gauge, "rpc_client_backups_refused",
        "backups the retry budget refused (calls left to their first copy)", labels, 2);
}

/* ---- lifecycle ---- */

/* A naming URL's protocol= (docs/discovery.md, Query parameters): the wire protocol when the
 * options leave it at the default; a different one in both places is a conflict, named. */
static int protocol_from_url(const char *url, ftrpc_client_options *o)
{
    ft_naming_url u;
    ft_url_protocol p = FT_URL_PROTOCOL_NONE;
    int rc = ft_naming_url_parse(url, &u);
    if (rc != 0) return rc;
    rc = ft_naming_url_protocol(&u, &p);
    ft_naming_url_fini(&u);
    if (rc != 0 || p == FT_URL_PROTOCOL_NONE) return rc;
    ftrpc_protocol want =
        p == FT_URL_PROTOCOL_GRPC ? FTRPC_PROTOCOL_GRPC : FTRPC_PROTOCOL_BAIDU_STD;
    if (o->protocol != FTRPC_PROTOCOL_DEFAULT && o->protocol != want) {
        FT_WARN("client: the naming URL says protocol=%s, the options another protocol",
                want == FTRPC_PROTOCOL_GRPC ? "grpc" : "baidu_std");
        return FTRPC_EINVAL;
    }
    o->protocol = want;
    return 0;
}

/* naming_url NULL: no discovery, no /endpoints page, no naming gauges (a selective client). */
static int client_new(const char *naming_url, const ftrpc_client_options *opts, ftrpc_client **out)
{
    ftrpc_client_options o = opts ? *opts : (ftrpc_client_options){0};
    int rc = 0;
    if (naming_url) {
        char *u = normalize_url(naming_url);
        rc = u ? protocol_from_url(u, &o) : FTRPC_ENOMEM;
        free(u);
    }
    if (rc == 0) rc = validate_and_default(&o);
    if (rc != 0) return rc;
    if (rc != 0) return rc;
    ftrpc_client *c = ft_aligned_calloc(1, sizeof *c, alignof(ftrpc_client));
    if (!c) return FTRPC_ENOMEM;
    c->opts = o;
    if (o.auth_token && !(c->auth_token = strdup(o.auth_token))) {
        free(c);
        return FTRPC_ENOMEM;
    }
    c->opts.auth_token = c->auth_token;
    if (copy_endpoint_codes(&o, &c->endpoint_codes) != 0) {
        free(c->auth_token);
        free(c);
        return FTRPC_ENOMEM;
    }
    c->opts.endpoint_codes = c->endpoint_codes;
    if (o.tls.enable) {
        ft_tls_ctx_options to = {.cert_file = o.tls.cert_file,
                                 .key_file = o.tls.key_file,
                                 .ca_file = o.tls.ca_file,
                                 .peer_cert = FT_TLS_PEER_CERT_REQUIRED,
                                 /* gRPC servers want ALPN h2 */
                                 .alpn_h2 = o.protocol == FTRPC_PROTOCOL_GRPC};
        rc = ft_tls_ctx_new(&to, &c->tls_ctx, NULL, 0);
        if (rc == 0 && o.tls.server_name && !(c->tls_server_name = strdup(o.tls.server_name)))
            rc = FTRPC_ENOMEM;
        if (rc != 0) {
            ft_tls_ctx_free(c->tls_ctx);
            free(c->auth_token);
            free(c->endpoint_codes);
            free(c);
            return rc;
        }
    }
    c->opts.tls.ca_file = c->opts.tls.cert_file = c->opts.tls.key_file = NULL; /* read; not kept */
    c->opts.tls.server_name = c->tls_server_name;
    c->rt = ft_runtime_or_default(o.runtime);
    pthread_mutex_init(&c->cluster_lock, NULL);
    c->endpoint_ops =
        (ft_cluster_endpoint_ops){endpoint_make, endpoint_destroy, endpoint_health_options, c};
    ft_client_metrics_init(&c->metrics);
    pthread_mutex_init(&c->free_lock, NULL);
    pthread_cond_init(&c->free_cond, NULL);
    ft_retry_budget_options bo = {.ratio = o.retry_budget_ratio,
                                  .min_per_sec = o.retry_budget_min_per_sec};
    ft_retry_budget_init(&c->budget, &bo);
    ft_throttle_options to = {.k = o.throttle_k, .window_ms = o.throttle_window_ms};
    ft_throttle_init(&c->throttle, &to); /* validated with the rest */
    rc = c->rt ? 0 : FTRPC_ENOMEM;
    if (rc == 0) {
        c->loops = calloc((size_t)c->rt->nloops, sizeof *c->loops);
        if (!c->loops) rc = FTRPC_ENOMEM;
    }
    for (int i = 0; rc == 0 && i < c->rt->nloops; i++) {
        ft_list_init(&c->loops[i].calls);
        ft_list_init(&c->loops[i].cconns);
        ft_idmap_init(&c->loops[i].cancelable);
    }
    /* an empty cluster until discovery answers: calls then fail with FTRPC_ENOENDPOINT */
    static const ft_naming_snapshot EMPTY = {.version = 0, .n = 0};
    if (rc == 0) {
        c->cluster = cluster_build(c, &EMPTY, NULL);
        if (!c->cluster) rc = FTRPC_ENOMEM;
    }
    char *url = rc == 0 && naming_url ? normalize_url(naming_url) : NULL;
    if (rc == 0 && naming_url && !url) rc = FTRPC_ENOMEM;
    /* the view's own default applies to 0; its "believe at once" is any negative value */
    ft_naming_view_opts view_opts = {.empty_grace_ms = o.naming_empty_grace_ms,
                                     .stale_drop_ms = o.naming_max_stale_ms};
    if (rc == 0 && naming_url) rc = ft_naming_view_open(url, &view_opts, &c->view);
    free(url);
    if (rc == 0 && naming_url) {
        /* wait a little for the first list, so that the first calls do not fail for nothing */
        ft_naming_view_wait_ready(c->view, o.naming_wait_ms);
        rc = ft_naming_view_listen(c->view, on_endpoints, c, &c->view_listener);
    }
    /* a client without a page is still a client: a failure here is not the caller's problem */
    if (rc == 0 && naming_url) {
        if (ft_endpoint_reporter_add(naming_url, report_endpoints, c, &c->reporter) == 0)
            ft_endpoint_reporter_set_switch(c->reporter, switch_endpoint);
        register_naming_gauges(c, naming_url);
    }
    if (rc == 0) {
        char name[600];
        snprintf(name, sizeof name, "%s %s", c->metrics.client_id,
                 naming_url ? naming_url : "(selective)");
        ft_rpcz_ring_new(FT_RPCZ_CLIENT, name, &c->rpcz); /* none: its calls are not recorded */
    }
    if (rc != 0) {
        ft_naming_view_free(c->view);
        ft_cluster_release(c->cluster);
        free(c->loops);
        ft_retry_budget_fini(&c->budget);
        ft_throttle_fini(&c->throttle);
        ft_client_metrics_fini(&c->metrics);
        pthread_cond_destroy(&c->free_cond);
        pthread_mutex_destroy(&c->free_lock);
        pthread_mutex_destroy(&c->cluster_lock);
        ft_tls_ctx_free(c->tls_ctx);
        free(c->tls_server_name);
        free(c->auth_token);
        free(c->endpoint_codes);
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

int ftrpc_client_new_sized(const char *naming_url, const ftrpc_client_options *opts,
                           size_t opts_size, ftrpc_client **out)
{
    ftrpc_client_options o;
    if (!naming_url || !out || ft_sized_options_read(&o, sizeof o, opts, opts_size) != 0)
        return FTRPC_EINVAL;
    return client_new(naming_url, &o, out);
}

int ft_client_new_without_naming(const ftrpc_client_options *opts, ftrpc_client **out)
{
    return client_new(NULL, opts, out);
}

static void stop_on_loop(void *arg)
{
    ft_client_loop *cl = arg;
    ft_call_stop_all(cl);
    for (ft_list *n = cl->cconns.next, *next; n != &cl->cconns; n = next) {
        next = n->next;
        ft_conn_close(ft_container_of(n, ft_cconn, node)->conn, 0, 1);
    }
}

static int calls_in_flight(ftrpc_client *c)
{
    int n = atomic_load(&c->inflight);
    for (int i = 0; i < c->rt->nloops; i++)
        n += atomic_load_explicit(&c->loops[i].local_inflight, memory_order_acquire);
    return n;
}

static int conns_open(ftrpc_client *c)
{
    return atomic_load(&c->open_conns);
}

/* Until count(c) is 0; counters going down while stopping broadcast free_cond, and the 50 ms
 * step bounds the wait for one that went down just before it saw `stopping`. */
static void wait_zero(ftrpc_client *c, int (*count)(ftrpc_client *))
{
    pthread_mutex_lock(&c->free_lock);
    while (count(c) > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000;
        ts.tv_sec += ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        pthread_cond_timedwait(&c->free_cond, &c->free_lock, &ts);
    }
    pthread_mutex_unlock(&c->free_lock);
}

void ftrpc_client_free(ftrpc_client *c)
{
    if (!c) return;
    if (atomic_load(&c->owned)) { /* a sub-client: its selective client frees it */
        FT_ERROR("ftrpc_client_free: this client belongs to a selective client, which frees it");
        return;
    }
    ft_endpoint_reporter_remove(c->reporter); /* the page stops reading the clusters first */
    ft_metrics_registry_remove(ft_metrics_default_registry(), &c->naming_size);
    ft_metrics_registry_remove(ft_metrics_default_registry(), &c->naming_updates);
    ft_metrics_registry_remove(ft_metrics_default_registry(), &c->naming_stale);
    ft_metrics_registry_remove(ft_metrics_default_registry(), &c->cancels_gauge);
    ft_metrics_registry_remove(ft_metrics_default_registry(), &c->budget_exhausted_gauge);
    ft_metrics_registry_remove(ft_metrics_default_registry(), &c->backups_refused_gauge);
    /* no more endpoint updates: the listener is not running once unlisten returns */
    if (c->view) ft_naming_view_unlisten(c->view, c->view_listener);
    ft_naming_view_free(c->view);
    atomic_store(&c->stopping, 1);
    for (int i = 0; i < c->rt->nloops; i++)
        ft_loop_run_sync(&c->rt->loops[i], stop_on_loop, &c->loops[i]);
    /* calls posted before `stopping` was seen still start, fail ESTOPPED and finish */
    wait_zero(c, calls_in_flight);
    wait_zero(c, conns_open);
    ft_selective_free(c->selective); /* its sub-clients, once no call of its own uses them */
    for (int i = 0; i < c->rt->nloops; i++) {
        ft_call_cache_drain(&c->loops[i]);
        ft_idmap_fini(&c->loops[i].cancelable);  /* empty: every call completed */
        ft_cluster_release(c->loops[i].cluster); /* no call borrows it any more */
    }
    free(c->loops);
    ft_cluster_release(c->cluster);
    ft_retry_budget_fini(&c->budget);
    ft_throttle_fini(&c->throttle);
    ft_client_metrics_fini(&c->metrics);
    ft_rpcz_ring_free(c->rpcz); /* every call completed: no record is being written */
    pthread_cond_destroy(&c->free_cond);
    pthread_mutex_destroy(&c->free_lock);
    pthread_mutex_destroy(&c->cluster_lock);
    free(c->auth_token);
    free(c->endpoint_codes);
    ft_tls_ctx_free(c->tls_ctx);
    free(c->tls_server_name);
    free(c);
}

/* The endpoint of that name in the current cluster, referenced (release with
 * ft_cluster_endpoint_release), or NULL. */
static ft_cluster_endpoint *find_endpoint(ftrpc_client *c, const char *name)
{
    ft_cluster *cl = ft_client_cluster_acquire(c);
    ft_cluster_endpoint *found = NULL;
    for (size_t i = 0; i < cl->n && !found; i++)
        if (!strcmp(cl->eps[i]->name, name)) found = cl->eps[i];
    if (found) ft_cluster_endpoint_retain(found);
    ft_cluster_release(cl);
    return found;
}

int ftrpc_client_endpoint_state(ftrpc_client *c, const char *endpoint, int64_t *usable_in_ms)
{
    if (!c || !endpoint || c->selective) return FTRPC_EINVAL;
    ft_cluster_endpoint *e = find_endpoint(c, endpoint);
    if (!e) return FTRPC_ENOENDPOINT;
    ft_health_state st = ft_health_state_get(&e->health);
    int64_t in_ns = ft_health_usable_in_ns(&e->health, ft_now_ns());
    ft_cluster_endpoint_release(e);
    if (usable_in_ms) *usable_in_ms = in_ns == INT64_MAX ? INT64_MAX : in_ns / FT_NS_PER_MS;
    return (int)st;
}

int ftrpc_client_endpoint_switch(ftrpc_client *c, const char *endpoint, int on)
{
    if (!c || !endpoint || c->selective) return FTRPC_EINVAL;
    ft_cluster_endpoint *e = find_endpoint(c, endpoint);
    if (!e) return FTRPC_ENOENDPOINT;
    ft_health_switch(&e->health, !on);
    FT_INFO("client: endpoint %s switched %s", endpoint, on ? "ON" : "OFF");
    ft_cluster_endpoint_release(e);
    return 0;
}
