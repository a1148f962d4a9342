/* gRPC over HTTP/2 on the server's port: one nghttp2 server session per connection, each stream a
 * unary call handed to the same admission path as baidu_std and HTTP/1.1 (start_call in
 * server.c), so the method table, limits, worker pool, metrics and graceful stop apply unchanged.
 *
 * nghttp2 does HTTP/2 itself: frames, HPACK, SETTINGS, flow control (windows are updated as data
 * arrives; what a stream may hold is bounded here by max_body_size). Its cost per call is kept
 * down here: its memory comes from the connection's free lists (protocol/h2_mem.h), answers are
 * encoded once per read or loop turn for every stream (nghttp2_session_mem_send from the read's
 * end or the loop's flush, ft_conn_handler.on_flush), header values are static strings nghttp2
 * does not copy, and an answer's trailers are grpc-status alone. This file turns a stream's
 * headers and body into a call, and a call's answer into HEADERS, DATA and trailers
 * (grpc-status, grpc-message, and ftrpc-code for a business code). A RST_STREAM from the client
 * marks the call cancelled, as ftrpc.Control/Cancel does on baidu_std.
 *
 * Limits against greedy peers: SETTINGS_MAX_CONCURRENT_STREAMS, SETTINGS_MAX_HEADER_LIST_SIZE
 * (counted here too: nghttp2 advertises it but does not enforce it on what it receives), the
 * flow-control windows, answers held for the peer's window (counted in max_unwritten_bytes, and
 * closed after idle_timeout_ms without progress), a stream's request bounded in time
 * (read_timeout_ms from its HEADERS), and token buckets on the client's RST_STREAM ("rapid
 * reset", CVE-2023-44487), PING and SETTINGS frames; a peer past one is sent GOAWAY and closed,
 * the reason logged. nghttp2's own flood guards (queued ACKs, SETTINGS
 * entries, its reset limit) stay on.
 *
 * Invariants: everything runs on the connection's loop. A stream's state (gstream) lives from its
 * first HEADERS to nghttp2's on_stream_close; a call refers to its stream only by id, so an
 * answer for a stream that is gone is dropped. Not here: streaming calls (a second message is
 * answered UNIMPLEMENTED), server push, the builtin pages over HTTP/2 (HTTP/1.1 serves them).
 */
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"
#include "protocol/grpc.h"
#include "protocol/h2_mem.h"
#include "server/server_internal.h"

#define GRPC_CONTENT_TYPE "application/grpc"

typedef struct gstream {
    struct gstream *prev, *next; /* in the connection's list: freed with it */
    int32_t id;
    ft_iobuf body; /* DATA received, at most max_body_size + 5 bytes */
    char path[256];
    int post, grpc_type, gzip, bad_encoding, bad_timeout, too_big, header_too_big;
    int64_t timeout_ms; /* -1: no grpc-timeout */
    char *auth;         /* the authorization header, malloc'ed */
    char *meta;         /* custom metadata, "key\0value\0" pairs */
    size_t meta_len, meta_cap;
    size_t header_bytes;
    int ended;          /* the request's END_STREAM came (or its read timeout reset it) */
    int64_t due_ns;     /* when the request must have ended: read_timeout_ms after its HEADERS */
    int dispatched;     /* a call was started: a reset before the answer cancels it */
    int replied;        /* a response was submitted */
    ft_iobuf out;       /* the response's DATA, read by the data provider */
    const char *status; /* grpc-status, a static string */
    char message[512], code[16];
    char pushback[16]; /* grpc-retry-pushback-ms of a limiter's refusal (gRPC A6); "": none */
} gstream;

typedef struct ft_grpc_conn {
    nghttp2_session *h2;
    ft_h2_mem mem; /* nghttp2's allocator: outlives h2 */
    ft_session *sess;
    const char *close_reason; /* set by a callback that tears the connection down */
    char error[128];          /* nghttp2's last error message: the reason of its own GOAWAY */
    ft_rate_bucket rst, ping, settings;
    int in_recv;         /* inside mem_recv: deliveries only queue, the read's flush sends */
    int goaway;          /* the graceful stop's GOAWAY was submitted */
    gstream *streams;    /* open streams (nghttp2_session_del does not report their close) */
    size_t buffered;     /* request bytes the streams hold: counted in max_pending_request_bytes */
    size_t held;         /* answer bytes the streams hold for the peer's flow-control window:
                            counted in max_unwritten_bytes */
    uint64_t sent;       /* answer bytes nghttp2 took from the streams, ever */
    uint64_t held_sent;  /* `sent` when held_timer was armed */
    ft_timer held_timer; /* armed while answers are held: idle_timeout_ms without progress */
} ft_grpc_conn;

static void stream_free(ft_grpc_conn *g, gstream *st)
{
    if (st->prev)
        st->prev->next = st->next;
    else
        g->streams = st->next;
    if (st->next) st->next->prev = st->prev;
    g->buffered -= ft_iobuf_size(&st->body);
    g->held -= ft_iobuf_size(&st->out);
    ft_iobuf_fini(&st->body);
    ft_iobuf_fini(&st->out);
    free(st->auth);
    free(st->meta);
    free(st);
}

/* ---- the answer ---- */

/* A header field whose name and value nghttp2 need not copy: static strings, or strings in the
 * stream's gstream, which lives until the stream closes, after its frames were encoded. */
#define NV(name, value)                                                                            \
    {                                                                                              \
        (uint8_t *)(name), (uint8_t *)(value), sizeof(name) - 1, strlen(value),                    \
            NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE                           \
    }

/* grpc-status values (0 ... 16) as text: no formatting on the answer's path */
static const char *status_text(int grpc_status)
{
    static const char *const TEXT[] = {"0", "1",  "2",  "3",  "4",  "5",  "6",  "7", "8",
                                       "9", "10", "11", "12", "13", "14", "15", "16"};
    return grpc_status >= 0 && grpc_status <= 16 ? TEXT[grpc_status] : "2"; /* UNKNOWN */
}

static const char *http_status_text(int http_status)
{
    switch (http_status) {
    case 200:
        return "200";
    case 405:
        return "405";
    case 415:
        return "415";
    default:
        return "500";
    }
}

static ssize_t read_out(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                        nghttp2_data_source *src, void *user)
{
    ft_grpc_conn *g = user;
    gstream *st = src->ptr;
    size_t n = ft_iobuf_copy_at(&st->out, 0, buf, len);
    ft_iobuf_pop_front(&st->out, n);
    g->held -= n;
    g->sent += n;
    if (ft_iobuf_size(&st->out) == 0) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        /* the trailers of an answer with data: grpc-status 0 alone, as gRPC's own servers send
         * it (grpc-message is optional and empty) */
        nghttp2_nv tr[1] = {NV("grpc-status", st->status)};
        if (nghttp2_submit_trailer(h2, id, tr, 1) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return (ssize_t)n;
}

/* Submits the stream's response: HEADERS, the message (when data), then trailers; or, without
 * data, one HEADERS carrying everything ("Trailers-Only"). http_status other than 200 for a
 * request that is not gRPC at all. */
static void respond(ft_grpc_conn *g, gstream *st, int http_status, int grpc_status,
                    const char *text, int32_t wire_code, ft_iobuf *data)
{
    if (st->replied) return;
    st->replied = 1;
    const char *hs = http_status_text(http_status);
    st->status = status_text(grpc_status);
    st->code[0] = '\0';
    /* a code gRPC has no status for travels too, so that an ftrpc client reads it exactly */
    if (wire_code != 0 && ft_grpc_wire_code_of(grpc_status) != wire_code)
        snprintf(st->code, sizeof st->code, "%d", (int)wire_code);
    if (data) {
        /* static strings only: copied by nobody */
        nghttp2_nv h[2] = {NV(":status", hs), NV("content-type", GRPC_CONTENT_TYPE)};
        ft_iobuf_move(&st->out, data);
        g->held += ft_iobuf_size(&st->out);
        nghttp2_data_provider p = {.source.ptr = st, .read_callback = read_out};
        nghttp2_submit_response(g->h2, st->id, h, 2, &p);
        return;
    }
    ft_grpc_message_encode(text ? text : "", st->message, sizeof st->message);
    nghttp2_nv h[7] = {NV(":status", hs),
                       NV("content-type", GRPC_CONTENT_TYPE),
                       NV("grpc-status", st->status),
                       NV("grpc-message", st->message),
                       NV("grpc-accept-encoding", "identity,gzip"),
                       NV("ftrpc-code", st->code)};
    size_t n = st->code[0] ? 6 : 5;
    if (st->pushback[0]) h[n++] = (nghttp2_nv)NV("grpc-retry-pushback-ms", st->pushback);
    nghttp2_submit_response(g->h2, st->id, h, n, NULL);
}

/* Answers held for a shut window that made no progress for idle_timeout_ms: the peer is closed,
 * as one that does not read its replies is (server.c's idle timeout), which a peer that keeps
 * pinging never reaches. */
static void on_held_timeout(ft_timer *t)
{
    ft_grpc_conn *g = ft_container_of(t, ft_grpc_conn, held_timer);
    ft_session *sess = g->sess;
    int idle = sess->server->opts.idle_timeout_ms;
    if (g->held == 0 || !ft_conn_is_open(sess->conn)) return;
    if (g->sent != g->held_sent) {
        g->held_sent = g->sent;
        ft_timer_start(sess->loop, t, ft_loop_now(sess->loop) + (int64_t)idle * FT_NS_PER_MS,
                       on_held_timeout);
        return;
    }
    FT_LOG_RATELIMITED(FTRPC_LOG_WARN,
                       "closing gRPC connection from %s: peer does not open its flow-control "
                       "window (%zu bytes of answers held, none of them sent for %d ms)",
                       sess->conn->peer, g->held, idle);
    ft_conn_close(sess->conn, FTRPC_EOVERCROWDED, 1);
}

/* Sends what nghttp2 has queued. 0, or a negative code to close. */
static int flush(ft_grpc_conn *g)
{
    ft_conn *c = g->sess->conn;
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(g->h2, &data);
        if (n < 0) {
            FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "closing gRPC connection from %s: %s", c->peer,
                               nghttp2_strerror((int)n));
            return FTRPC_EREQUEST;
        }
        if (n == 0) break;
        if (!ft_conn_is_open(c)) return 0;
        if (ft_conn_write_bytes(c, data, (size_t)n) == FTRPC_EOVERCROWDED) {
            FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "closing %s: peer does not read its replies",
                               c->peer);
            return FTRPC_EOVERCROWDED;
        }
    }
    /* What nghttp2 could not send waits for the peer's flow-control window: a peer that keeps it
     * shut (SETTINGS_INITIAL_WINDOW_SIZE 0, no WINDOW_UPDATE) while it sends requests would
     * otherwise have the server hold every answer (gzip inflates them 1000-fold) for as long as
     * it keeps the connection. Held answers count as unwritten bytes do. */
    if (g->held > 0 && g->held + ft_conn_unwritten(c) > g->sess->server->opts.max_unwritten_bytes) {
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN,
                           "closing gRPC connection from %s: peer does not open its flow-control "
                           "window (%zu bytes of answers held, past max_unwritten_bytes)",
                           c->peer, g->held + ft_conn_unwritten(c));
        return FTRPC_EOVERCROWDED;
    }
    int idle = g->sess->server->opts.idle_timeout_ms;
    if (g->held > 0 && idle > 0 && !ft_timer_armed(&g->held_timer)) {
        g->held_sent = g->sent;
        ft_timer_start(g->sess->loop, &g->held_timer,
                       ft_loop_now(g->sess->loop) + (int64_t)idle * FT_NS_PER_MS, on_held_timeout);
    }
    if (!nghttp2_session_want_read(g->h2) && !nghttp2_session_want_write(g->h2)) {
        /* GOAWAY sent and every stream done */
        ft_conn_close(c, FTRPC_EEOF, 0);
    }
    return 0;
}

void ft_grpc_call_pack(ftrpc_server_call *call, int32_t wire_code, const char *text,
                       const ft_iobuf *payload)
{
    ft_iobuf_clear(&call->reply);
    call->http_code = wire_code;
    if (wire_code == 0) {
        if (ft_grpc_frame(&call->reply, payload) == 0) return;
        ft_iobuf_clear(&call->reply);
        call->http_code = -FTRPC_EINTERNAL;
        text = "server out of memory";
    }
    if (text) ft_iobuf_append(&call->reply, text, strlen(text));
}

void ft_grpc_session_deliver(ftrpc_server_call *call)
{
    ft_session *sess = call->conn->owner;
    ft_grpc_conn *g = sess->grpc;
    if (!g) return;
    gstream *st = nghttp2_session_get_stream_user_data(g->h2, (int32_t)call->correlation_id);
    if (!st || st->replied) return; /* reset by the client: nothing to send */
    if (call->http_code == 0) {
        respond(g, st, 200, FT_GRPC_OK, NULL, 0, &call->reply);
    } else {
        char text[512];
        size_t n = ft_iobuf_copy_at(&call->reply, 0, text, sizeof text - 1);
        text[n] = '\0';
        respond(g, st, 200, ft_grpc_status_of(call->http_code), text, call->http_code, NULL);
    }
    /* the read's flush sends it, or else the loop's flush of this turn (ft_grpc_session_on_flush):
     * every answer of the turn in one nghttp2_session_mem_send pass */
    if (!g->in_recv) ft_conn_flush_soon(call->conn);
}

int ft_grpc_session_on_flush(ft_session *sess)
{
    /* inside mem_recv (a close from a callback) nghttp2 must not be re-entered: the read's own
     * flush follows */
    return sess->grpc && !sess->grpc->in_recv ? flush(sess->grpc) : 0;
}

void ft_grpc_session_goaway(ft_session *sess)
{
    ft_grpc_conn *g = sess->grpc;
    if (!g || g->goaway || !ft_conn_is_open(sess->conn)) return;
    g->goaway = 1;
    /* One GOAWAY(NO_ERROR) naming the last stream this session processed: nghttp2 then ignores
     * newer streams, which the client knows were not processed and may send elsewhere; the
     * streams up to it run to their answers, and flush closes the connection once none is left
     * (nghttp2_session_want_read turns 0). */
    int32_t last = nghttp2_session_get_last_proc_stream_id(g->h2);
    if (nghttp2_submit_goaway(g->h2, NGHTTP2_FLAG_NONE, last, NGHTTP2_NO_ERROR, NULL, 0) != 0)
        return;
    FT_DEBUG("gRPC connection from %s: GOAWAY (graceful stop), last stream %d", sess->conn->peer,
             (int)last);
    int rc = flush(g);
    if (rc < 0) ft_conn_close(sess->conn, rc, 1);
}

/* ---- the request ---- */

/* A stream's request is whole: check it, then start its call or answer the error. */
static void dispatch(ft_grpc_conn *g, gstream *st)
{
    ft_session *sess = g->sess;
    ftrpc_server *s = sess->server;
    if (st->replied) return;
    if (!st->post) {
        respond(g, st, 405, FT_GRPC_UNIMPLEMENTED, "gRPC requests are POSTs", 0, NULL);
        return;
    }
    if (!st->grpc_type) {
        respond(g, st, 415, FT_GRPC_UNKNOWN,
                "content-type is not application/grpc (HTTP/2 serves gRPC only)", 0, NULL);
        return;
    }
    if (st->too_big) {
        respond(g, st, 200, FT_GRPC_RESOURCE_EXHAUSTED, "request message larger than max_body_size",
                0, NULL);
        return;
    }
    if (st->bad_encoding) {
        respond(g, st, 200, FT_GRPC_UNIMPLEMENTED,
                "grpc-encoding not supported (identity and gzip are)", 0, NULL);
        return;
    }
    if (st->bad_timeout) {
        respond(g, st, 200, FT_GRPC_INTERNAL, "malformed grpc-timeout", 0, NULL);
        return;
    }
    char service[128], method[128];
    if (!ft_split_method_path(st->path, service, sizeof service, method, sizeof method)) {
        respond(g, st, 200, FT_GRPC_UNIMPLEMENTED, "malformed method name (want /Service/Method)",
                0, NULL);
        return;
    }
    if (ft_server_needs_auth(s) && !ft_server_authenticate_http(sess, st->auth)) {
        ft_server_count_auth_refused(sess);
        respond(g, st, 200, FT_GRPC_UNAUTHENTICATED, "authentication failed", 0, NULL);
        return;
    }
    if (st->timeout_ms == 0) {
        respond(g, st, 200, FT_GRPC_DEADLINE_EXCEEDED, "deadline passed before the call arrived", 0,
                NULL);
        return;
    }
    ft_iobuf msg;
    ft_iobuf_init(&msg);
    g->buffered -= ft_iobuf_size(&st->body); /* the call's now, or answered and dropped */
    int status;
    const char *reason = NULL;
    if (ft_grpc_unframe(&st->body, st->gzip, s->opts.max_body_size, &msg, &status, &reason) != 0) {
        ft_iobuf_clear(&st->body); /* no longer counted in buffered */
        ft_iobuf_fini(&msg);
        respond(g, st, 200, status, reason, 0, NULL);
        return;
    }
    char text[512];
    char *meta = st->meta;
    int32_t timeout = st->timeout_ms > 0 ? (int32_t)st->timeout_ms : 0;
    st->dispatched = 1;
    int32_t after = 0;
    int rc = ft_server_start_grpc_call(sess, service, method, timeout, &msg, st->id, &meta,
                                       st->meta_len, text, sizeof text, &after);
    if (rc == 0) {
        st->meta = NULL; /* the call's now */
    } else {
        st->dispatched = 0;
        int32_t wire = ft_server_wire_code(rc);
        /* gRPC A6: a negative value means "do not retry", as ftrpc's -1 does */
        if (after != 0) snprintf(st->pushback, sizeof st->pushback, "%d", (int)after);
        respond(g, st, 200, ft_grpc_status_of(wire), text, wire, NULL);
    }
    ft_iobuf_fini(&msg);
}

/* The session's read_timer while it speaks gRPC: a stream's request must end within
 * read_timeout_ms of its HEADERS, as an HTTP/1.1 request must complete (a peer that pings is not
 * idle, and would hold a stream that never ends for ever). The timer is armed for the earliest
 * due stream only when it fires or finds none armed, so a request costs no timer work. */
static void on_request_timeout(ft_timer *t)
{
    ft_session *sess = ft_container_of(t, ft_session, read_timer);
    ft_grpc_conn *g = sess->grpc;
    if (!g || !ft_conn_is_open(sess->conn)) return;
    int64_t now = ft_loop_now(sess->loop), next = INT64_MAX;
    for (gstream *st = g->streams; st; st = st->next) {
        if (st->ended) continue;
        if (st->due_ns > now) {
            if (st->due_ns < next) next = st->due_ns;
            continue;
        }
        st->ended = 1;
        ft_server_count_read_timeout(sess);
        FT_LOG_RATELIMITED(
            FTRPC_LOG_WARN,
            "gRPC stream %d from %s reset: its request did not complete within %d ms", (int)st->id,
            sess->conn->peer, sess->server->opts.read_timeout_ms);
        nghttp2_submit_rst_stream(g->h2, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
    }
    if (next != INT64_MAX) ft_timer_start(sess->loop, t, next, on_request_timeout);
    int rc = flush(g);
    if (rc < 0) ft_conn_close(sess->conn, rc, 1);
}

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    gstream *st = calloc(1, sizeof *st);
    if (!st) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    st->id = frame->hd.stream_id;
    st->timeout_ms = -1;
    ft_iobuf_init(&st->body);
    ft_iobuf_init(&st->out);
    nghttp2_session_set_stream_user_data(h2, st->id, st);
    ft_grpc_conn *g = user;
    ft_session *sess = g->sess;
    int timeout = sess->server->opts.read_timeout_ms;
    if (timeout > 0) {
        st->due_ns = ft_loop_now(sess->loop) + (int64_t)timeout * FT_NS_PER_MS;
        if (!ft_timer_armed(&sess->read_timer))
            ft_timer_start(sess->loop, &sess->read_timer, st->due_ns, on_request_timeout);
    } else {
        st->ended = 1; /* no timeout: never looked at */
    }
    st->next = g->streams;
    if (st->next) st->next->prev = st;
    g->streams = st;
    return 0;
}

/* Headers gRPC itself uses: not handed to the handler as metadata. By length first: this runs
 * for every header of every request. */
static int reserved_header(const uint8_t *name, size_t len)
{
#define R(lit) (memcmp(name, lit, sizeof(lit) - 1) == 0)
    switch (len) {
    case 2:
        return R("te");
    case 10:
        return R("user-agent");
    case 12:
        return R("content-type") || R("grpc-timeout");
    case 13:
        return R("grpc-encoding") || R("authorization");
    case 14:
        return R("content-length");
    case 20:
        return R("grpc-accept-encoding");
    default:
        return 0;
    }
#undef R
}

static int meta_add(gstream *st, const uint8_t *name, size_t nlen, const uint8_t *value,
                    size_t vlen)
{
    size_t need = st->meta_len + nlen + vlen + 2;
    if (need > st->meta_cap) {
        size_t cap = st->meta_cap ? st->meta_cap * 2 : 256;
        while (cap < need)
            cap *= 2;
        char *p = realloc(st->meta, cap);
        if (!p) return -1;
        st->meta = p;
        st->meta_cap = cap;
    }
    memcpy(st->meta + st->meta_len, name, nlen);
    st->meta[st->meta_len + nlen] = '\0';
    memcpy(st->meta + st->meta_len + nlen + 1, value, vlen);
    st->meta[st->meta_len + nlen + 1 + vlen] = '\0';
    st->meta_len = need;
    return 0;
}

#define IS(lit) (nlen == sizeof(lit) - 1 && memcmp(name, lit, nlen) == 0)

static int on_header(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
                     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
    ft_grpc_conn *g = user;
    (void)flags;
    gstream *st = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
    if (!st || frame->hd.type != NGHTTP2_HEADERS) return 0;
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0; /* request trailers: ignored */
    /* RFC 9113 §6.5.2: name, value and 32 bytes each */
    st->header_bytes += nlen + vlen + 32;
    if (st->header_bytes > g->sess->server->opts.grpc.max_header_list_size) {
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "gRPC stream from %s reset: header list over %u bytes",
                           g->sess->conn->peer, g->sess->server->opts.grpc.max_header_list_size);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* nghttp2 resets the stream */
    }
    if (IS(":method")) {
        st->post = vlen == 4 && memcmp(value, "POST", 4) == 0;
    } else if (IS(":path")) {
        size_t n = vlen < sizeof st->path - 1 ? vlen : sizeof st->path - 1;
        memcpy(st->path, value, n);
        st->path[n] = '\0';
    } else if (IS("content-type")) {
        st->grpc_type =
            vlen >= sizeof GRPC_CONTENT_TYPE - 1 &&
            memcmp(value, GRPC_CONTENT_TYPE, sizeof GRPC_CONTENT_TYPE - 1) == 0 &&
            (vlen == sizeof GRPC_CONTENT_TYPE - 1 || value[sizeof GRPC_CONTENT_TYPE - 1] == '+' ||
             value[sizeof GRPC_CONTENT_TYPE - 1] == ';');
    } else if (IS("grpc-encoding")) {
        if (vlen == 4 && memcmp(value, "gzip", 4) == 0)
            st->gzip = 1;
        else if (!(vlen == 8 && memcmp(value, "identity", 8) == 0))
            st->bad_encoding = 1;
    } else if (IS("grpc-timeout")) {
        int64_t ms;
        if (ft_grpc_parse_timeout((const char *)value, vlen, &ms) != 0)
            st->bad_timeout = 1;
        else
            st->timeout_ms = ms;
    } else if (IS("authorization")) {
        free(st->auth);
        st->auth = strndup((const char *)value, vlen);
        if (!st->auth) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    } else if (nlen > 0 && name[0] != ':' && !reserved_header(name, nlen)) {
        if (meta_add(st, name, nlen, value, vlen) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    ft_grpc_conn *g = user;
    (void)flags;
    gstream *st = nghttp2_session_get_stream_user_data(h2, id);
    if (!st || st->too_big) return 0;
    /* one message and its prefix at most: more is dropped, and answered at the stream's end */
    if (ft_iobuf_size(&st->body) + len > (size_t)g->sess->server->opts.max_body_size + 5 + 5) {
        st->too_big = 1;
        g->buffered -= ft_iobuf_size(&st->body);
        ft_iobuf_clear(&st->body);
        return 0;
    }
    if (ft_iobuf_append(&st->body, data, len) != 0) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    g->buffered += len;
    return 0;
}

/* A flood: the connection is torn down with GOAWAY(ENHANCE_YOUR_CALM) and the reason logged. */
static int flood(ft_grpc_conn *g, const char *what)
{
    g->close_reason = what;
    nghttp2_session_terminate_session(g->h2, NGHTTP2_ENHANCE_YOUR_CALM);
    return 0;
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
    ft_grpc_conn *g = user;
    const ftrpc_server_grpc_options *o = &g->sess->server->opts.grpc;
    int64_t now = ft_loop_now(g->sess->loop);
    switch (frame->hd.type) {
    case NGHTTP2_RST_STREAM:
        if (ft_rate_bucket_take(&g->rst, o->rst_stream_burst, o->rst_stream_per_second, now))
            return flood(g, "RST_STREAM flood (rapid reset, CVE-2023-44487)");
        return 0;
    case NGHTTP2_PING:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) &&
            ft_rate_bucket_take(&g->ping, o->ping_settings_burst, o->ping_settings_per_second, now))
            return flood(g, "PING flood");
        return 0;
    case NGHTTP2_SETTINGS:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) &&
            ft_rate_bucket_take(&g->settings, o->ping_settings_burst, o->ping_settings_per_second,
                                now))
            return flood(g, "SETTINGS flood");
        return 0;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            gstream *st = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
            if (st) {
                st->ended = 1;
                dispatch(g, st);
            }
        }
        return 0;
    default:
        return 0;
    }
}

static int on_stream_close(nghttp2_session *h2, int32_t id, uint32_t error_code, void *user)
{
    ft_grpc_conn *g = user;
    gstream *st = nghttp2_session_get_stream_user_data(h2, id);
    if (!st) return 0;
    nghttp2_session_set_stream_user_data(h2, id, NULL);
    if (st->dispatched && !st->replied) {
        /* the client reset the stream (gave up, lost a backup race): as ftrpc.Control/Cancel */
        ftrpc_server_call *call = ft_server_session_call(g->sess, id);
        if (call) atomic_store_explicit(&call->canceled, 1, memory_order_release);
        FT_DEBUG("gRPC stream %d from %s closed before its answer (%s)", (int)id,
                 g->sess->conn->peer, nghttp2_http2_strerror(error_code));
    }
    stream_free(g, st);
    return 0;
}

/* nghttp2 tears a session down itself on most malformed frames (a bad header block, DATA on
 * stream 0, a window overflow): it sends GOAWAY and its mem_recv still succeeds. Its last error
 * message, kept here, names the reason when that GOAWAY goes out. */
static int on_error(nghttp2_session *h2, int lib_error_code, const char *msg, size_t len,
                    void *user)
{
    ft_grpc_conn *g = user;
    (void)h2;
    (void)lib_error_code;
    if (len >= sizeof g->error) len = sizeof g->error - 1;
    memcpy(g->error, msg, len);
    g->error[len] = '\0';
    return 0;
}

static int on_frame_send(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
    ft_grpc_conn *g = user;
    (void)h2;
    if (frame->hd.type != NGHTTP2_GOAWAY || frame->goaway.error_code == NGHTTP2_NO_ERROR ||
        g->close_reason)
        return 0; /* a graceful stop's, or one whose reason was logged */
    /* nghttp2 1.52 gives no message for a header block it cannot decode */
    const char *why =
        g->error[0] ? g->error
        : frame->goaway.error_code == NGHTTP2_COMPRESSION_ERROR
            ? "a header block HPACK cannot decode (a field over 64 KiB, or bad encoding)"
            : "malformed frame";
    FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "closing gRPC connection from %s: %s (GOAWAY %s)",
                       g->sess->conn->peer, why, nghttp2_http2_strerror(frame->goaway.error_code));
    return 0;
}

/* ---- the session ---- */

static ft_grpc_conn *grpc_of(ft_session *sess)
{
    if (sess->grpc) return sess->grpc;
    ftrpc_server *s = sess->server;
    ft_grpc_conn *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->sess = sess;
    ft_h2_mem_init(&g->mem);
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    if (nghttp2_session_callbacks_new(&cb) != 0) {
        free(g);
        return NULL;
    }
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cb);
        free(g);
        return NULL;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_error_callback2(cb, on_error);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    /* nghttp2's own reset limit stays as a backstop, above ours (whose reason is logged) */
    nghttp2_option_set_stream_reset_rate_limit(opt, 2 * (uint64_t)s->opts.grpc.rst_stream_burst,
                                               2 * (uint64_t)s->opts.grpc.rst_stream_per_second);
    nghttp2_option_set_max_settings(opt, 32);
    int rc = nghttp2_session_server_new3(&g->h2, cb, g, opt, &g->mem.mem);
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    if (rc != 0) {
        free(g);
        return NULL;
    }
    uint32_t streams = s->opts.grpc.max_concurrent_streams;
    if ((int)streams > s->opts.max_inflight_per_connection)
        streams = (uint32_t)s->opts.max_inflight_per_connection;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, streams},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, s->opts.grpc.max_header_list_size},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, s->opts.grpc.initial_window_size},
        /* RFC 9218: no RFC 7540 priority tree to keep per stream (gRPC sends no priorities) */
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
    };
    if (nghttp2_submit_settings(g->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
        nghttp2_session_set_local_window_size(g->h2, NGHTTP2_FLAG_NONE, 0,
                                              (int32_t)s->opts.grpc.initial_window_size) != 0) {
        nghttp2_session_del(g->h2);
        ft_h2_mem_fini(&g->mem);
        free(g);
        return NULL;
    }
    sess->grpc = g;
    return g;
}

size_t ft_grpc_session_buffered(const ft_session *sess)
{
    return sess->grpc ? sess->grpc->buffered : 0;
}

void ft_grpc_session_free(ft_session *sess)
{
    ft_grpc_conn *g = sess->grpc;
    if (!g) return;
    sess->grpc = NULL;
    ft_timer_stop(sess->loop, &g->held_timer);
    nghttp2_session_del(g->h2);
    ft_h2_mem_fini(&g->mem);
    while (g->streams)
        stream_free(g, g->streams);
    free(g);
}

/* Closes a misbehaving peer's connection after nghttp2's GOAWAY, when what is queued is small
 * enough to be written at once; a peer that also stopped reading is reset instead (a close that
 * waits on its reads would let it hold the connection). Returns what on_read returns. */
static int close_after_goaway(ft_grpc_conn *g)
{
    ft_conn *c = g->sess->conn;
    if (flush(g) != 0 || ft_conn_unwritten(c) > 64 * 1024) return FTRPC_EREQUEST;
    ft_conn_close(c, FTRPC_EREQUEST, 0);
    return 0;
}

int ft_grpc_session_on_read(ft_session *sess)
{
    ft_conn *c = sess->conn;
    ft_grpc_conn *g = grpc_of(sess);
    if (!g) return FTRPC_ENOMEM;
    g->in_recv = 1;
    while (ft_iobuf_size(&c->in) > 0 && !g->close_reason) {
        struct iovec iov[16];
        int n = ft_iobuf_to_iovec(&c->in, iov, 16);
        size_t used = 0;
        for (int i = 0; i < n && !g->close_reason; i++) {
            ssize_t r = nghttp2_session_mem_recv(g->h2, iov[i].iov_base, iov[i].iov_len);
            if (r < 0) {
                g->in_recv = 0;
                FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "closing gRPC connection from %s: %s", c->peer,
                                   nghttp2_strerror((int)r));
                g->close_reason = nghttp2_strerror((int)r); /* logged: its GOAWAY is not again */
                /* nghttp2's GOAWAY, when it queued one, goes out before the close */
                return close_after_goaway(g);
            }
            used += (size_t)r;
        }
        ft_iobuf_pop_front(&c->in, used);
        if (!sess->grpc || c->state != FT_CONN_OPEN) break;
    }
    g->in_recv = 0;
    int rc = flush(g);
    if (g->close_reason) {
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "closing gRPC connection from %s: %s", c->peer,
                           g->close_reason);
        return rc != 0 ? FTRPC_EREQUEST : close_after_goaway(g);
    }
    return rc;
}
