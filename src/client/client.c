/* ftrpc_client: the call path of DESIGN.md section 2.
 *
 * A call is made on any thread, then lives on its home loop: its deadline timer, its attempts and
 * its completion all run there, so none of them needs a lock. Each loop keeps, per endpoint, at
 * most one connection (ft_cconn) shared by every call homed on that loop, with a map from
 * correlation id to the attempt waiting on it.
 *
 * Invariants: an attempt is in exactly one connection's pending map while it waits for a response
 * and in none otherwise; a call completes exactly once (complete_call), and after that nothing
 * refers to it; `inflight` counts calls from submission to completion, which ftrpc_client_free
 * waits on.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/event.h"
#include "base/idmap.h"
#include "base/list.h"
#include "base/log.h"
#include "ftrpc/client.h"
#include "io/conn.h"
#include "io/loop.h"
#include "protocol/baidu_std.h"

typedef struct ft_endpoint_addr {
    char name[64]; /* "ip:port" as given */
    struct sockaddr_storage sa;
} ft_endpoint_addr;

typedef struct ft_cconn ft_cconn;
typedef struct ft_call ft_call;

/* A client connection: one per (loop, endpoint); loop thread only. */
struct ft_cconn {
    ft_conn *conn;
    struct ftrpc_client *client;
    ft_loop *loop;
    int endpoint;
    ft_idmap pending; /* correlation id -> ft_attempt */
};

typedef struct ft_client_loop {
    ft_cconn **conns; /* [nendpoints], NULL when there is none */
    ft_list calls;    /* calls homed on this loop */
} ft_client_loop;

typedef struct ft_attempt {
    ft_call *call;
    ft_cconn *cc; /* non-NULL while in cc->pending */
    int64_t cid;
    int endpoint;
} ft_attempt;

struct ft_call {
    ft_task task;
    ft_list node; /* in its loop's calls */
    struct ftrpc_client *client;
    ft_loop *loop;
    const char *service;
    const char *method;
    ft_iobuf request;
    ft_iobuf attachment;
    int64_t start_ns;
    int64_t deadline_ns;
    int64_t log_id;
    ft_timer deadline_timer;
    ft_attempt attempt;
    int attempts;
    ftrpc_call_cb cb; /* async */
    void *arg;
    ftrpc_result *sync_result; /* sync: the caller's result, filled before waking it */
    ft_event *sync_done;
    int *sync_rc;
    char names[]; /* service \0 method \0 */
};

struct ftrpc_client {
    ftrpc_runtime *rt;
    ftrpc_client_options opts;
    ft_endpoint_addr *endpoints;
    int nendpoints;
    ft_client_loop *loops; /* [rt->nloops] */
    atomic_uint next_endpoint;
    atomic_int stopping;
    atomic_int inflight;   /* calls submitted and not completed */
    atomic_int open_conns; /* ft_cconn alive */
    pthread_mutex_t free_lock; /* guards nothing but the condition below */
    pthread_cond_t free_cond;  /* signalled when inflight or open_conns reach 0 while stopping */
};

static _Atomic int64_t next_correlation_id = 1;

/* ---- results ---- */

void ftrpc_result_fini(ftrpc_result *r)
{
    if (!r) return;
    ftrpc_buf_free(r->response);
    ftrpc_buf_free(r->attachment);
    r->response = NULL;
    r->attachment = NULL;
}

static void result_reset(ftrpc_result *r)
{
    memset(r, 0, sizeof *r);
}

/* A wire error_code from a response meta, as the result sees it (see FTRPC_BUSINESS_CODE_MIN). */
static void classify_wire_error(int32_t wire, ftrpc_result *r)
{
    if (wire == 0) {
        r->kind = FTRPC_RESULT_OK;
        r->code = 0;
    } else if (wire >= 1000 && wire < FTRPC_BUSINESS_CODE_MIN) {
        r->kind = FTRPC_RESULT_RPC_ERROR;
        r->code = -wire;
    } else if (wire > 0 && wire < 1000) {
        /* a system errno from a brpc server: an RPC error without an ftrpc equivalent */
        r->kind = FTRPC_RESULT_RPC_ERROR;
        r->code = FTRPC_EINTERNAL;
    } else {
        r->kind = FTRPC_RESULT_BUSINESS_ERROR;
        r->code = wire;
    }
}

/* Decrements a counter ftrpc_client_free may wait on; under free_lock once stopping, so that the
 * waiter cannot see zero and free the client while this thread still touches it. */
static void count_down(ftrpc_client *c, atomic_int *counter)
{
    if (!atomic_load_explicit(&c->stopping, memory_order_acquire)) {
        atomic_fetch_sub(counter, 1);
        return;
    }
    pthread_mutex_lock(&c->free_lock);
    if (atomic_fetch_sub(counter, 1) == 1) pthread_cond_broadcast(&c->free_cond);
    pthread_mutex_unlock(&c->free_lock);
}

/* ---- completion ---- */

static void detach_attempt(ft_attempt *a)
{
    if (!a->cc) return;
    ft_idmap_take(&a->cc->pending, a->cid);
    a->cc = NULL;
}

/* Completes the call exactly once. `frame` (may be NULL) is a response whose payload and
 * attachment move into the result; otherwise kind/code/text say what happened. */
static void complete_call(ft_call *call, ftrpc_result_kind kind, int code, const char *text,
                          ft_rpc_frame *frame)
{
    ftrpc_client *client = call->client;
    ft_timer_stop(call->loop, &call->deadline_timer);
    detach_attempt(&call->attempt);
    ft_list_remove(&call->node);

    ftrpc_result local;
    ftrpc_result *r = call->sync_result ? call->sync_result : &local;
    result_reset(r);
    r->kind = kind;
    r->code = code;
    if (text) snprintf(r->error_text, sizeof r->error_text, "%s", text);
    else if (code < 0) snprintf(r->error_text, sizeof r->error_text, "%s", ftrpc_strerror(code));
    r->attempts = call->attempts;
    r->latency_us = (ft_now_ns() - call->start_ns) / 1000;
    if (frame) {
        snprintf(r->endpoint, sizeof r->endpoint, "%s", client->endpoints[call->attempt.endpoint].name);
        if (kind == FTRPC_RESULT_OK) {
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
    }
    ft_iobuf_fini(&call->request);
    ft_iobuf_fini(&call->attachment);

    if (call->sync_result) {
        ft_event *done = call->sync_done;
        *call->sync_rc = r->kind == FTRPC_RESULT_OK              ? 0
                         : r->kind == FTRPC_RESULT_BUSINESS_ERROR ? FTRPC_EBUSINESS
                                                                  : r->code;
        free(call);
        count_down(client, &client->inflight);
        ft_event_set(done); /* last touch: the caller may return and free everything now */
        return;
    }
    ftrpc_call_cb cb = call->cb;
    void *arg = call->arg;
    free(call);
    cb(r, arg);
    ftrpc_result_fini(r);
    count_down(client, &client->inflight);
}

static void fail_call(ft_call *call, int code, const char *text)
{
    complete_call(call, FTRPC_RESULT_RPC_ERROR, code, text, NULL);
}

/* ---- connections ---- */

static int cconn_on_read(ft_conn *conn);
static void cconn_on_close(ft_conn *conn, int reason);
static const ft_conn_handler CCONN_HANDLER = {cconn_on_read, NULL, cconn_on_close};

static ft_cconn *get_cconn(ftrpc_client *c, ft_loop *loop, int endpoint, int *err)
{
    ft_client_loop *cl = &c->loops[loop->index];
    ft_cconn *cc = cl->conns[endpoint];
    if (cc && ft_conn_is_open(cc->conn)) return cc;
    if (cc) {
        /* closing: it leaves the table when its close completes; open a fresh one meanwhile */
        cl->conns[endpoint] = NULL;
    }
    cc = calloc(1, sizeof *cc);
    if (!cc) {
        *err = FTRPC_ENOMEM;
        return NULL;
    }
    cc->client = c;
    cc->loop = loop;
    cc->endpoint = endpoint;
    ft_idmap_init(&cc->pending);
    int rc = ft_conn_connect(loop, (struct sockaddr *)&c->endpoints[endpoint].sa,
                             c->opts.connect_timeout_ms, c->opts.max_unwritten_bytes,
                             &CCONN_HANDLER, cc, &cc->conn);
    if (rc != 0) {
        ft_idmap_fini(&cc->pending);
        free(cc);
        *err = rc;
        return NULL;
    }
    atomic_fetch_add(&c->open_conns, 1);
    cl->conns[endpoint] = cc;
    return cc;
}

static int cconn_on_read(ft_conn *conn)
{
    ft_cconn *cc = conn->owner;
    while (conn->state == FT_CONN_OPEN) {
        ft_rpc_frame f;
        const char *reason = NULL;
        ft_rpc_frame_init(&f);
        ft_parse_status st = ft_baidu_std_parse(&conn->in, cc->client->opts.max_body_size, &f, &reason);
        if (st == FT_PARSE_NEED_MORE) break;
        if (st == FT_PARSE_CLOSE || (st == FT_PARSE_OK && f.is_request)) {
            FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "closing connection to %s: %s", conn->peer,
                               st == FT_PARSE_OK ? "server sent a request frame" : reason);
            ft_rpc_frame_fini(&f);
            return FTRPC_ERESPONSE;
        }
        ft_attempt *a = f.correlation_id > 0 ? ft_idmap_take(&cc->pending, f.correlation_id) : NULL;
        if (!a) {
            /* a late answer to an attempt that already ended (timeout): nothing waits for it */
            ft_rpc_frame_fini(&f);
            continue;
        }
        a->cc = NULL;
        if (st == FT_PARSE_BAD_FRAME) {
            fail_call(a->call, FTRPC_ERESPONSE, reason);
        } else {
            ftrpc_result probe;
            classify_wire_error(f.error_code, &probe);
            if (probe.kind == FTRPC_RESULT_OK)
                complete_call(a->call, FTRPC_RESULT_OK, 0, NULL, &f);
            else
                complete_call(a->call, probe.kind, probe.code, f.error_text, &f);
        }
        ft_rpc_frame_fini(&f);
    }
    return 0;
}

static void cconn_on_close(ft_conn *conn, int reason)
{
    ft_cconn *cc = conn->owner;
    ftrpc_client *c = cc->client;
    ft_client_loop *cl = &c->loops[cc->loop->index];
    if (cl->conns[cc->endpoint] == cc) cl->conns[cc->endpoint] = NULL;
    int code = reason ? reason : FTRPC_ESTOPPED;
    if (reason) FT_DEBUG("connection to %s closed: %s", conn->peer, ftrpc_strerror(reason));
    ft_attempt *a;
    while ((a = ft_idmap_take_any(&cc->pending)) != NULL) {
        a->cc = NULL;
        fail_call(a->call, code, NULL);
    }
    ft_idmap_fini(&cc->pending);
    free(cc);
    count_down(c, &c->open_conns);
}

/* ---- the call ---- */

static void on_deadline(ft_timer *t)
{
    ft_call *call = ft_container_of(t, ft_call, deadline_timer);
    fail_call(call, FTRPC_ERPCTIMEDOUT, NULL);
}

static int pick_endpoint(ftrpc_client *c)
{
    unsigned i = atomic_fetch_add_explicit(&c->next_endpoint, 1, memory_order_relaxed);
    return (int)(i % (unsigned)c->nendpoints);
}

static void send_attempt(ft_call *call)
{
    ftrpc_client *c = call->client;
    int endpoint = pick_endpoint(c);
    int err = 0;
    ft_cconn *cc = get_cconn(c, call->loop, endpoint, &err);
    if (!cc) {
        fail_call(call, err, NULL);
        return;
    }
    int64_t now = ft_now_ns();
    int64_t left_ms = (call->deadline_ns - now) / FT_NS_PER_MS;
    ft_request_header h = {
        .service = call->service,
        .method = call->method,
        .correlation_id = atomic_fetch_add_explicit(&next_correlation_id, 1, memory_order_relaxed),
        .timeout_ms = left_ms < 1 ? 1 : (left_ms > INT32_MAX ? INT32_MAX : (int32_t)left_ms),
        .log_id = call->log_id,
    };
    ft_iobuf frame;
    ft_iobuf_init(&frame);
    int rc = ft_baidu_std_pack_request(&frame, &h, &call->request, &call->attachment);
    if (rc == 0) rc = ft_idmap_put(&cc->pending, h.correlation_id, &call->attempt);
    if (rc == 0) {
        call->attempt = (ft_attempt){call, cc, h.correlation_id, endpoint};
        rc = ft_conn_write(cc->conn, &frame);
        if (rc != 0) detach_attempt(&call->attempt);
    }
    ft_iobuf_fini(&frame);
    call->attempts++;
    call->attempt.endpoint = endpoint;
    if (rc != 0) fail_call(call, rc, NULL);
}

static void start_call(ft_call *call)
{
    ftrpc_client *c = call->client;
    ft_list_push_back(&c->loops[call->loop->index].calls, &call->node);
    if (atomic_load(&c->stopping)) {
        fail_call(call, FTRPC_ESTOPPED, NULL);
        return;
    }
    ft_timer_start(call->loop, &call->deadline_timer, call->deadline_ns, on_deadline);
    send_attempt(call);
}

static void start_call_task(ft_task *t)
{
    start_call(ft_container_of(t, ft_call, task));
}

static ft_call *make_call(ftrpc_client *c, const char *service, const char *method,
                          const ftrpc_buf *request, const ftrpc_buf *attachment,
                          const ftrpc_call_options *opts)
{
    size_t sl = strlen(service), ml = strlen(method);
    ft_call *call = malloc(sizeof *call + sl + ml + 2);
    if (!call) return NULL;
    memset(call, 0, sizeof *call);
    memcpy(call->names, service, sl + 1);
    memcpy(call->names + sl + 1, method, ml + 1);
    call->service = call->names;
    call->method = call->names + sl + 1;
    call->client = c;
    ft_list_init(&call->node);
    ft_iobuf_init(&call->request);
    ft_iobuf_init(&call->attachment);
    if ((request && ft_iobuf_append_buf(&call->request, request) != 0) ||
        (attachment && ft_iobuf_append_buf(&call->attachment, attachment) != 0)) {
        ft_iobuf_fini(&call->request);
        ft_iobuf_fini(&call->attachment);
        free(call);
        return NULL;
    }
    int timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms : c->opts.timeout_ms;
    call->start_ns = ft_now_ns();
    call->deadline_ns = call->start_ns + (int64_t)timeout_ms * FT_NS_PER_MS;
    call->log_id = opts ? opts->log_id : 0;
    call->task.run = start_call_task;
    call->loop = ft_runtime_pick_loop(c->rt);
    return call;
}

static int check_call_args(ftrpc_client *c, const char *service, const char *method)
{
    if (!c || !service || !method || !*service || !*method) return FTRPC_EINVAL;
    if (atomic_load(&c->stopping)) return FTRPC_ESTOPPED;
    return 0;
}

static void submit(ft_call *call)
{
    atomic_fetch_add(&call->client->inflight, 1);
    if (ft_loop_current() == call->loop) start_call(call);
    else ft_loop_post(call->loop, &call->task);
}

int ftrpc_call_async(ftrpc_client *c, const char *service, const char *method,
                     const ftrpc_buf *request, const ftrpc_buf *attachment,
                     const ftrpc_call_options *opts, ftrpc_call_cb cb, void *arg)
{
    int rc = check_call_args(c, service, method);
    if (rc != 0) return rc;
    if (!cb) return FTRPC_EINVAL;
    ft_call *call = make_call(c, service, method, request, attachment, opts);
    if (!call) return FTRPC_ENOMEM;
    call->cb = cb;
    call->arg = arg;
    submit(call);
    return 0;
}

int ftrpc_call(ftrpc_client *c, const char *service, const char *method, const ftrpc_buf *request,
               const ftrpc_buf *attachment, const ftrpc_call_options *opts, ftrpc_result *result)
{
    result_reset(result);
    int rc = ftrpc_in_io_thread() ? FTRPC_EIOTHREAD : check_call_args(c, service, method);
    ft_call *call = NULL;
    if (rc == 0) {
        call = make_call(c, service, method, request, attachment, opts);
        if (!call) rc = FTRPC_ENOMEM;
    }
    if (rc != 0) {
        result->kind = FTRPC_RESULT_RPC_ERROR;
        result->code = rc;
        snprintf(result->error_text, sizeof result->error_text, "%s", ftrpc_strerror(rc));
        return rc;
    }
    ft_event done;
    ft_event_init(&done);
    call->sync_result = result;
    call->sync_done = &done;
    call->sync_rc = &rc;
    submit(call);
    ft_event_wait(&done, -1); /* bounded: the call's deadline timer completes it */
    return rc;
}

/* ---- client lifecycle ---- */

static int parse_endpoints(ftrpc_client *c, const char *url)
{
    const char *list = url;
    if (strncmp(url, "list://", 7) == 0) list = url + 7;
    else if (strstr(url, "://")) return FTRPC_EADDR; /* other schemes: the discovery layer */
    char *copy = strdup(list);
    if (!copy) return FTRPC_ENOMEM;
    int n = 1;
    for (const char *p = copy; *p; p++) n += *p == ',';
    c->endpoints = calloc((size_t)n, sizeof *c->endpoints);
    if (!c->endpoints) {
        free(copy);
        return FTRPC_ENOMEM;
    }
    int rc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        if (!*tok) continue;
        ft_endpoint_addr *e = &c->endpoints[c->nendpoints];
        if (strlen(tok) >= sizeof e->name || ft_sockaddr_parse(tok, &e->sa) != 0) {
            FT_WARN("bad endpoint address '%s' in '%s'", tok, url);
            rc = FTRPC_EADDR;
            break;
        }
        snprintf(e->name, sizeof e->name, "%s", tok);
        c->nendpoints++;
    }
    free(copy);
    if (rc == 0 && c->nendpoints == 0) rc = FTRPC_EADDR;
    return rc;
}

int ftrpc_client_new(const char *naming_url, const ftrpc_client_options *opts, ftrpc_client **out)
{
    if (!naming_url || !out) return FTRPC_EINVAL;
    ftrpc_client_options o = opts ? *opts : (ftrpc_client_options){0};
    if (o.timeout_ms < 0 || o.connect_timeout_ms < 0) return FTRPC_EINVAL;
    if (o.timeout_ms == 0) o.timeout_ms = 1000;
    if (o.connect_timeout_ms == 0) o.connect_timeout_ms = 200;
    if (o.max_body_size == 0) o.max_body_size = FT_BAIDU_STD_DEFAULT_MAX_BODY;
    if (o.max_unwritten_bytes == 0) o.max_unwritten_bytes = (size_t)64 << 20;
    ftrpc_client *c = calloc(1, sizeof *c);
    if (!c) return FTRPC_ENOMEM;
    c->opts = o;
    c->rt = ft_runtime_or_default(o.runtime);
    int rc = c->rt ? parse_endpoints(c, naming_url) : FTRPC_ENOMEM;
    if (rc == 0) {
        c->loops = calloc((size_t)c->rt->nloops, sizeof *c->loops);
        if (!c->loops) rc = FTRPC_ENOMEM;
    }
    for (int i = 0; rc == 0 && i < c->rt->nloops; i++) {
        ft_list_init(&c->loops[i].calls);
        c->loops[i].conns = calloc((size_t)c->nendpoints, sizeof(ft_cconn *));
        if (!c->loops[i].conns) rc = FTRPC_ENOMEM;
    }
    if (rc != 0) {
        for (int i = 0; c->loops && i < c->rt->nloops; i++) free(c->loops[i].conns);
        free(c->loops);
        free(c->endpoints);
        free(c);
        return rc;
    }
    pthread_mutex_init(&c->free_lock, NULL);
    pthread_cond_init(&c->free_cond, NULL);
    *out = c;
    return 0;
}

struct stop_args {
    ftrpc_client *client;
    int index;
};

static void stop_on_loop(void *arg)
{
    struct stop_args *a = arg;
    ft_client_loop *cl = &a->client->loops[a->index];
    while (!ft_list_empty(&cl->calls)) {
        ft_call *call = ft_container_of(cl->calls.next, ft_call, node);
        fail_call(call, FTRPC_ESTOPPED, "client is being freed");
    }
    for (int e = 0; e < a->client->nendpoints; e++)
        if (cl->conns[e]) ft_conn_close(cl->conns[e]->conn, 0, 1);
}

static void wait_zero(ftrpc_client *c, atomic_int *counter)
{
    pthread_mutex_lock(&c->free_lock);
    while (atomic_load(counter) > 0) {
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
    atomic_store(&c->stopping, 1);
    for (int i = 0; i < c->rt->nloops; i++) {
        struct stop_args a = {c, i};
        ft_loop_run_sync(&c->rt->loops[i], stop_on_loop, &a);
    }
    /* calls posted before `stopping` was seen still start, fail ESTOPPED and finish */
    wait_zero(c, &c->inflight);
    wait_zero(c, &c->open_conns);
    for (int i = 0; i < c->rt->nloops; i++) free(c->loops[i].conns);
    free(c->loops);
    free(c->endpoints);
    pthread_cond_destroy(&c->free_cond);
    pthread_mutex_destroy(&c->free_lock);
    free(c);
}
