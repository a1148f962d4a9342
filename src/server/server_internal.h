/* Internals of ftrpc_server shared by the files of src/server/. */
#ifndef FT_SERVER_INTERNAL_H
#define FT_SERVER_INTERNAL_H

#include <protobuf-c/protobuf-c.h>
#include <pthread.h>
#include <stdatomic.h>

#include "base/call_context.h"
#include "base/idmap.h"
#include "base/iobuf.h"
#include "base/list.h"
#include "base/strbuf.h"
#include "base/workpool.h"
#include "ftrpc/server.h"
#include "io/conn.h"
#include "io/listener.h"
#include "io/loop.h"
#include "io/tls.h"
#include "naming/naming.h"
#include "metrics/counter.h"
#include "metrics/latency_recorder.h"
#include "metrics/rpcz.h"
#include "metrics/series.h"
#include "server/concurrency_limiter.h"

/* ---- concurrency limits (server_limits.c, docs/overload.md) ---- */

/* A limit: its configured value (0 or -1: none, > 0: fixed, FTRPC_CONCURRENCY_AUTO or _TIMEOUT),
 * the calls admitted under it, and its limiter. Admission and the figures are atomics (any
 * thread); the state machine is behind `lock`. */
typedef struct ft_limit {
    _Atomic int value;
    atomic_int inflight;            /* admitted under the limit, not finished */
    _Atomic int auto_max;           /* the auto limiter's limit now */
    _Atomic int64_t avg_latency_ns; /* the last window's average: timeout limiter and pushback */
    int floor;                      /* the auto limit's least: the threads that run the calls */
    pthread_mutex_t lock;           /* guards sm */
    ft_limiter sm;
} ft_limit;

/* FTRPC_EINVAL for a bad value. floor: the auto limit never goes below it. */
int ft_limit_init(ft_limit *l, int value, int floor);
void ft_limit_fini(ft_limit *l);
int ft_limit_set(ft_limit *l, int value);
int ft_limit_value(const ft_limit *l);
/* The limit in force: the fixed value, the auto limiter's figure, the timeout limiter's cap; 0
 * for none. */
int ft_limit_effective(const ft_limit *l);
/* Admits a call whose caller allows timeout_ms (0: none sent). 1: admitted and counted (call
 * ft_limit_leave once it finishes, ft_limit_on_response when it replies); 0: no limit, not
 * counted; -1: refused, *retry_after_ms set to the pushback (docs/protocol.md). Any thread. */
int ft_limit_enter(ft_limit *l, int32_t timeout_ms, int32_t *retry_after_ms);
void ft_limit_leave(ft_limit *l);
/* A call admitted with 1 ran and replied: ok, and its latency from admission. Any thread. */
void ft_limit_on_response(ft_limit *l, int ok, int64_t latency_ns, int64_t now_ns);
/* The worker pool's size: worker_threads, or one per core. */
int ft_server_default_workers(const struct ftrpc_server *s);

enum ft_server_state { FT_SERVER_NEW, FT_SERVER_RUNNING, FT_SERVER_STOPPING, FT_SERVER_STOPPED };

/* ---- per-method metrics (server_metrics.c; docs/observability.md lists the variables) ---- */

#define FT_METHOD_ERROR_CODES 16    /* distinct codes counted apart; the rest go to code="other" */
#define FT_METHOD_SERIES_POINTS 600 /* per-second points kept for the console's charts: 10 min */

enum ft_reject_reason { FT_REJECT_LIMIT, FT_REJECT_DEADLINE, FT_REJECT_STOPPING, FT_REJECT_KINDS };

/* Written from any thread (counters, recorder); the error-code table grows under `codes_lock`
 * and is read lock-free up to `ncodes` (release/acquire). */
typedef struct ft_method_metrics {
    ft_latency_recorder *latency; /* "rpc_server": every call that reached its handler */
    ft_counter rejected[FT_REJECT_KINDS];
    ft_gauge concurrency;
    pthread_mutex_t codes_lock;
    atomic_int ncodes;
    int32_t codes[FT_METHOD_ERROR_CODES];
    ft_counter *errors[FT_METHOD_ERROR_CODES];
    ft_counter errors_other;
    int registered;   /* in the default registry (set at start, cleared at free) */
    ft_series series; /* QPS, errors/s and p99 once a second, sampled on the server's first loop */
} ft_method_metrics;

struct ft_method;
int ft_method_metrics_init(struct ft_method *m);
void ft_method_metrics_fini(struct ft_method *m);
/* Registers the method's variables in ft_metrics_default_registry(), labels (service, method).
 * A clash (another server in the process serves the same method) is logged and left out: the
 * figures still show on this server's /status. */
void ft_method_metrics_register(struct ft_method *m);
void ft_method_metrics_unregister(struct ft_method *m);
/* One outcome: code 0 (success) or the wire code of an error; latency recorded when start_ns. */
void ft_method_metrics_on_reply(struct ft_method *m, int32_t wire_code, int64_t start_ns,
                                int64_t now_ns);
void ft_method_metrics_on_reject(struct ft_method *m, enum ft_reject_reason why, int32_t wire_code);
uint64_t ft_method_metrics_errors(struct ft_method *m);
/* Arms / disarms the timer that adds a point to every method's series once a second (from start
 * to stop; not for a server without methods). Not on an IO thread: they run on the first loop. */
void ft_server_series_start(struct ftrpc_server *s);
void ft_server_series_stop(struct ftrpc_server *s);
/* Calls of the method in flight now (any thread). */
int ft_method_concurrency(struct ft_method *m);
/* Calls dispatched and not yet finished, summed over the loops (any thread). */
int ft_server_calls_in_flight(struct ftrpc_server *s);

typedef struct ft_method {
    char *service;
    char *method;
    size_t service_len, method_len; /* their strlen, for rpcz records */
    ftrpc_handler_cb handler;
    void *arg;
    ftrpc_method_options opts;
    /* The method's protobuf types: set for a typed method (ftrpc_server_add_service), NULL for a
     * method of bytes (ftrpc_server_add_method). Read-only once set. With them the HTTP port
     * answers `Content-Type: application/json` requests in JSON (http_session.c, docs/json.md). */
    const ProtobufCMethodDescriptor *pb_method;
    /* Calls of this method in flight. Under a limit the limit needs one shared count
     * (`limit.inflight`); without one each loop counts its own (`loop_concurrency`, a padded cell
     * per loop, a load and a store): ft_method_concurrency sums both. */
    ft_limit limit;
    struct ft_loop_count {
        atomic_int n;
        char pad[64 - sizeof(int)];
    } * loop_concurrency;
    int nloops;                      /* of loop_concurrency: the server's runtime's */
    ft_counter calls;                /* handled (handler started); striped: counted on IO threads */
    atomic_llong rejected;           /* ELIMIT, deadline passed, stopping */
    atomic_llong canceled_unstarted; /* cancelled while queued: never executed */
    ft_method_metrics metrics;       /* server_metrics.c */
} ft_method;

/* One accepted connection; owned by its loop (touched on that loop only). */
typedef struct ft_session {
    ft_list node; /* in server->loop_sessions[loop->index] */
    ft_conn *conn;
    struct ftrpc_server *server;
    ft_loop *loop;
    ft_idmap calls;      /* correlation id -> ftrpc_server_call in flight (for cancellation) */
    ft_timer idle_timer; /* closes a connection that sends nothing for idle_timeout_ms */
    /* ft_conn_bytes_sent when idle_timer last fired (UINT64_MAX before the first time): a peer
     * still reading its replies is not idle */
    uint64_t idle_sent;
    /* the protocol's first bytes, an HTTP header, or a started baidu_std frame must complete
     * before it fires (slowloris) */
    ft_timer read_timer;
    int authenticated;
    size_t pending_bytes; /* of the server's pending_bytes: this connection's unparsed bytes */
    /* the method of this connection's last request: a client calls the same method again and
     * again, and two strcmp cost less than the hash and probe of find_method */
    struct ft_method *last_method;
    char identity[128];
    int proto;                 /* FT_PROTO_*: decided by the connection's first bytes */
    int transport_known;       /* plain or TLS was decided (by the first byte) */
    struct ft_http_conn *http; /* http_session.c, when proto is FT_PROTO_HTTP */
    struct ft_grpc_conn *grpc; /* grpc_session.c, when proto is FT_PROTO_GRPC */
} ft_session;

enum { FT_PROTO_UNKNOWN, FT_PROTO_BAIDU_STD, FT_PROTO_HTTP, FT_PROTO_GRPC };

struct ftrpc_server {
    ftrpc_runtime *rt;
    ftrpc_server_options opts;
    ft_method **methods; /* registration order */
    size_t nmethods;
    ft_method **table; /* open addressing on (service, method); read-only once running */
    size_t table_mask;
    ft_listener *listener;
    int port;
    ft_registrar *registrar; /* NULL when not registered */
    _Atomic int state;
    atomic_int sessions;    /* open connections */
    ft_list *loop_sessions; /* one list per loop, touched on that loop only */
    /* What each loop keeps of its own, touched on that loop only: a call is made and finished on
     * its session's loop, so the hot path needs no malloc, no lock and no locked add. */
    struct ft_server_loop {
        struct ftrpc_server_call *free_calls; /* finished calls kept for reuse */
        int nfree;
        /* calls dispatched on this loop and not yet finished: written with a load and a store by
         * the loop, summed by stop and free (server_calls_in_flight) */
        atomic_int inflight;
        char pad[64 - sizeof(void *) - 2 * sizeof(int)]; /* loops write their own cache line */
    } * per_loop;
    atomic_uint next_loop;
    ft_workpool pool;
    int pool_started;
    char *auth_token; /* copies of the option strings the server keeps */
    char *register_url, *register_addr, *register_tags, *register_id;
    char registered_id[64]; /* the id in use, written by start before it returns */
    atomic_llong connections_refused, idle_closed, read_timeouts, auth_failures;
    atomic_llong tls_failures, plain_refused, pending_refused;
    /* bytes of requests read and not yet whole (started frames, HTTP requests, pipelined requests
     * waiting), over every connection: bounded by max_pending_request_bytes */
    atomic_llong pending_bytes;
    ft_tls_ctx *tls_ctx;       /* NULL: plain only; shared by every loop (read-only once made) */
    pthread_mutex_t stop_lock; /* guards nothing but the condition below */
    pthread_cond_t stop_cond;  /* signalled when inflight or sessions reach 0 while stopping */
    int64_t started_ns;
    ft_timer series_timer; /* on loops[0]: ft_server_series_start */
    /* its recent calls for /rpcz: made once the port is known (a server with methods), so read
     * with acquire by calls that may have started first; NULL: none */
    _Atomic(ft_rpcz_ring *) rpcz;
    struct ft_typed_service *typed; /* typed_server.c: the services' method entries, a list */
    ft_limit limit;                 /* server-wide max_concurrency (server_limits.c) */
};

struct ftrpc_server_call {
    /* first: the client reads a parent call's deadline and attempt through it without knowing the
     * rest (base/call_context.h; ftrpc_call_options.parent) */
    ft_call_context ctx;
    ft_task task; /* posts a reply made on another thread back to the loop */
    ft_job job;   /* queues the handler on the worker pool */
    /* A tied call's "started" notice (server.c), made on the loop with a reference to conn;
     * handed by the worker to the loop, which frees it: it may outlive the call. */
    struct ft_started_notice *notice;
    struct ftrpc_server *server;
    ft_method *method;
    ft_conn *conn;       /* referenced until the call is finished */
    ft_session *session; /* NULL once the connection closed (the session is gone) */
    ft_loop *loop;
    atomic_int canceled;
    int64_t correlation_id;
    int64_t deadline_ns; /* 0: the caller sent no timeout */
    int64_t start_ns;    /* when the request was dispatched */
    int rejected;        /* refused before the handler ran: no latency sample */
    int limited;         /* LIMITED_*: the limits that counted it (server.c) */
    int is_http; /* 0: baidu_std; else the reply goes back as an HTTP response (http_session.c) in
                  * the form of the request's body, an FT_HTTP_BODY_* */
    uint64_t http_seq; /* its place in the connection's response order */
    int http_status;
    int32_t http_code; /* wire code of an error, 0 on success */
    /* 1: a gRPC call (grpc_session.c); correlation_id is its HTTP/2 stream id, and the reply is
     * the framed message (success) or the error's text (http_code non-zero) */
    int is_grpc;
    /* the request's custom metadata, "key\0value\0" pairs (malloc'ed, freed with the call) */
    char *metadata;
    size_t metadata_len;
    /* rpcz: the ring the call is recorded in (NULL: not recorded) and what send_reply saw */
    ft_rpcz_ring *rpcz;
    int32_t rpcz_code;
    int rpcz_replied;
    int64_t rpcz_replied_ns;
    /* Not zeroed when a call is made (server.c, call_alloc): start_call writes each before it is
     * read. Zeroing them was a third of dispatching a call. */
    char identity[128]; /* the connection's, copied: the call may outlive the session */
    ft_iobuf request;
    ft_iobuf attachment;
    ft_iobuf reply; /* the packed response frame; for HTTP the body */
};

/* ---- server.c, for http_session.c ---- */

/* What an HTTP request's body is, by its Content-Type; the answer's body takes the same form. */
enum {
    FT_HTTP_BODY_OCTET = 1, /* bytes as they are (application/octet-stream, or no type) */
    FT_HTTP_BODY_PROTO = 2, /* application/proto: bytes, answered as application/proto (brpc) */
    FT_HTTP_BODY_JSON = 3,  /* application/json: transcoded when the method has pb_method */
};

/* Gives a method its protobuf types (NULL: none), before the server starts: then its HTTP calls
 * may be made in JSON. 0, FTRPC_EINVAL, FTRPC_ENOMETHOD (no such method) or FTRPC_ESTOPPED
 * (started already). For tests until services with descriptors are added by the public API. */
int ft_server_set_method_descriptor(ftrpc_server *s, const char *service, const char *method,
                                    const ProtobufCMethodDescriptor *d);
/* The protobuf types of service/method, or NULL (no such method, or a method of bytes). Any
 * thread once the server runs (the method table is read-only then). */
const ProtobufCMethodDescriptor *
ft_server_method_descriptor(const ftrpc_server *s, const char *service, const char *method);

/* Starts a call of service/method with `payload` (moved; `body` says its form, an FT_HTTP_BODY_*)
 * the way a baidu_std request does (limits, worker pool, graceful stop). 0: the handler has it and
 * the reply arrives through ft_http_session_deliver. Otherwise a negative code, its text in
 * text[len] and in *retry_after_ms the pushback hint of a limiter's refusal (0: none, -1: do not
 * retry, > 0: come back in that many ms; docs/overload.md). */
int ft_server_start_http_call(ft_session *sess, const char *service, const char *method,
                              int32_t timeout_ms, ft_iobuf *payload, int body, uint64_t seq,
                              char *text, size_t len, int32_t *retry_after_ms);
int32_t ft_server_wire_code(int code);
/* Starts a gRPC call as ft_server_start_http_call does: stream_id names it (cancellation, the
 * in-flight cap); *metadata ("key\0value\0" pairs, malloc'ed, may be NULL) is taken by the call
 * on success and left to the caller otherwise. */
int ft_server_start_grpc_call(ft_session *sess, const char *service, const char *method,
                              int32_t timeout_ms, ft_iobuf *payload, int32_t stream_id,
                              char **metadata, size_t metadata_len, char *text, size_t len,
                              int32_t *retry_after_ms);
/* The call in flight on this session's stream, or NULL. */
ftrpc_server_call *ft_server_session_call(ft_session *sess, int64_t id);
/* Counts a refused credential without closing the connection (a gRPC stream is refused alone). */
void ft_server_count_auth_refused(ft_session *sess);
/* "/package.Service/Method" into service and method; 0 when the path is not of that shape
 * (http_session.c). */
int ft_split_method_path(const char *path, char *service, size_t slen, char *method, size_t mlen);

/* 1 when the server checks credentials (auth_token or authenticator). */
int ft_server_needs_auth(const ftrpc_server *s);
/* Checks an HTTP request's Authorization header value (NULL when absent): "Bearer TOKEN" for the
 * token, the whole value for an authenticator. 1 when accepted (the session's identity is set). */
int ft_server_authenticate_http(ft_session *sess, const char *authorization);
/* Counts a connection closed because a request did not complete within read_timeout_ms. */
void ft_server_count_read_timeout(ft_session *sess);
/* After the session's bytes were parsed: updates the server's count of bytes held by unfinished
 * requests. FTRPC_EOVERCROWDED (the caller closes the connection) when this connection's growth
 * took the count past max_pending_request_bytes; else 0. */
int ft_server_account_pending(ft_session *sess);
/* Counts and logs (rate-limited) a refused credential. */
void ft_server_count_auth_failure(ft_session *sess);
/* The session's read_timer callback: closes a connection too slow to name its protocol, or hands
 * a slow HTTP header to ft_http_session_on_timeout. */
void ft_server_read_timer_fired(ft_timer *t);

/* Registers a method as ftrpc_server_add_method does, with pb_method its descriptor (NULL for a
 * method of bytes). mopts already read at its full size. */
int ft_server_add_method(ftrpc_server *s, const char *service, const char *method,
                         ftrpc_handler_cb handler, void *arg, const ftrpc_method_options *mopts,
                         const ProtobufCMethodDescriptor *pb_method);
/* 1 when service/method is registered. */
int ft_server_has_method(const ftrpc_server *s, const char *service, const char *method);

/* ---- typed_server.c ---- */

/* Frees what ftrpc_server_add_service kept (ftrpc_server_free, after the last call). */
void ft_typed_services_free(ftrpc_server *s);
/* ftrpc_server_call_reply with the response's len bytes in the caller's memory (a typed reply
 * packed on the stack): copied before it returns, straight into the frame when the reply is made
 * on the call's loop, so that a small reply needs no buffer of its own. */
int ft_server_call_reply_bytes(ftrpc_server_call *call, const void *data, size_t len);

/* ---- http_session.c ---- */

/* Reads HTTP requests from the session's connection (on_read of an HTTP session). */
int ft_http_session_on_read(ft_session *sess);
/* The read timer fired: too slow a header. */
void ft_http_session_on_timeout(ft_session *sess);
/* On close: frees the HTTP state. */
void ft_http_session_free(ft_session *sess);
/* Any thread: turns the handler's answer into the call's HTTP status and body. */
void ft_http_call_pack(ftrpc_server_call *call, int32_t wire_code, const char *text,
                       const ft_iobuf *payload, const ft_iobuf *attachment);
/* On the call's loop, connection open: queues the call's response in request order. */
void ft_http_session_deliver(ftrpc_server_call *call);

/* ---- grpc_session.c ---- */

/* Reads HTTP/2 frames from the session's connection (on_read of a gRPC session): 0, or a negative
 * code to close (the reason is logged). */
int ft_grpc_session_on_read(ft_session *sess);
/* On close: frees the HTTP/2 state. */
void ft_grpc_session_free(ft_session *sess);
/* The request bytes the session's streams hold (not yet whole calls), for
 * max_pending_request_bytes. */
size_t ft_grpc_session_buffered(const ft_session *sess);
/* Any thread: turns the handler's answer into the call's reply (framed message or error text). */
void ft_grpc_call_pack(ftrpc_server_call *call, int32_t wire_code, const char *text,
                       const ft_iobuf *payload);
/* On the call's loop, connection open: sends the response on the call's stream, when the stream
 * is still there (a stream the client reset gets nothing). */
void ft_grpc_session_deliver(ftrpc_server_call *call);
/* The connection's loop flushes (ft_conn_handler.on_flush): what nghttp2 queued this turn is
 * written in one pass. 0, or a negative code to close. */
int ft_grpc_session_on_flush(ft_session *sess);
/* Graceful stop, on the session's loop: sends GOAWAY(NO_ERROR) with the last stream processed;
 * the streams up to it are answered, then the connection closes. Does nothing for a session
 * that is not gRPC, or twice. */
void ft_grpc_session_goaway(ft_session *sess);

/* ---- builtin_pages.c ---- */

typedef struct ft_page {
    int status;
    const char *content_type;
    ft_strbuf body;
} ft_page;
/* /protobufs, and ftrpc.Control/ListServices (server.c): lists the services, their methods and
 * message types (bytes methods say "bytes"): text, or JSON
 * {"services":[{"name":..,"methods":[{"name":..,"input":..,"output":..}]}]}. */
void ft_server_list_services(const ftrpc_server *s, int json, ft_strbuf *out);
/* 1 when path names a builtin page. */
int ft_builtin_page_known(const char *path);
/* Renders the builtin page for path (GET or HEAD). 1 when path is a builtin page, 0 when not. */
int ft_builtin_page(struct ftrpc_server *s, const char *path, const char *query, ft_page *out);
/* Handles a POST to a builtin page: today only /endpoints?off=HOST:PORT or ?on=HOST:PORT
 * [&client=NAME], the operator's switch of docs/endpoint-health.md. The request's credential was
 * checked already (a POST is never public); this refuses the switch on a server without
 * authentication. 1 when path takes POSTs (out filled), 0 when not. */
int ft_builtin_post(struct ftrpc_server *s, const char *path, const char *query, ft_page *out);

#endif
