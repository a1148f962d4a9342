/* gRPC as the client's wire protocol (ftrpc_client_options.protocol = FTRPC_PROTOCOL_GRPC): one
 * nghttp2 client session per client connection (ft_cconn), each attempt a stream multiplexed on
 * it, so the call engine above (fail modes, backups, health, balancers, budget, fallback) works
 * unchanged: an attempt is filed in the connection's pending map under its stream id, as a
 * baidu_std attempt is under its correlation id, and the answer comes back to it as a frame
 * (ft_call_on_response) with the gRPC status read as an ftrpc code (protocol/grpc.h).
 *
 * A cancelled attempt (a lost backup race, an attempt timeout, a call that ended) is reset with
 * RST_STREAM(CANCEL), which a gRPC server sees as the call cancelled. The remaining time goes as
 * grpc-timeout, the credential as the authorization metadata ("Bearer TOKEN" for auth_token) on
 * every request, as gRPC sends it. Requests submitted in one loop turn are encoded together at the
 * loop's flush (ft_conn_handler.on_flush), nghttp2's memory comes from the connection's free lists
 * (protocol/h2_mem.h), and grpc-timeout, which changes every call, is not indexed by HPACK.
 *
 * Invariants: everything runs on the connection's loop. A stream's state lives from
 * submit_request to on_stream_close, where the answer is handed over (or dropped when nobody waits
 * for it). Not here: streaming, compressed requests (answers in gzip are inflated).
 */
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "client/client_internal.h"
#include "protocol/grpc.h"
#include "protocol/h2_mem.h"

typedef struct cstream {
    struct cstream *prev, *next; /* in the connection's list: freed with it */
    ft_iobuf out;                /* the framed request, read by the data provider */
    ft_iobuf body;               /* DATA received, at most max_body_size + 5 bytes */
    int http_status, grpc_status, has_status, gzip, too_big;
    int32_t ftrpc_code;
    int has_code;
    int32_t pushback_ms; /* grpc-retry-pushback-ms read as ftrpc_retry_after_ms; 0: none */
    char message[512];
} cstream;

struct ft_grpc_cconn {
    nghttp2_session *h2;
    ft_h2_mem mem; /* nghttp2's allocator: outlives h2 */
    ft_cconn *cc;
    cstream *streams; /* open streams (nghttp2_session_del does not report their close) */
    int in_recv;      /* inside mem_recv: nghttp2 is not re-entered, the read's flush sends */
};

static void cstream_unlink(struct ft_grpc_cconn *g, cstream *st)
{
    if (st->prev)
        st->prev->next = st->next;
    else if (g->streams == st)
        g->streams = st->next;
    if (st->next) st->next->prev = st->prev;
    st->prev = st->next = NULL;
}

static void cstream_free(cstream *st)
{
    ft_iobuf_fini(&st->out);
    ft_iobuf_fini(&st->body);
    free(st);
}

static ssize_t read_out(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                        nghttp2_data_source *src, void *user)
{
    (void)h2;
    (void)id;
    (void)user;
    cstream *st = src->ptr;
    size_t n = ft_iobuf_copy_at(&st->out, 0, buf, len);
    ft_iobuf_pop_front(&st->out, n);
    if (ft_iobuf_size(&st->out) == 0) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

#define IS(lit) (nlen == sizeof(lit) - 1 && memcmp(name, lit, nlen) == 0)

static int on_header(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
                     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
    (void)flags;
    (void)user;
    cstream *st = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
    if (!st) return 0;
    char v[24];
    size_t n = vlen < sizeof v - 1 ? vlen : sizeof v - 1;
    if (IS(":status")) {
        memcpy(v, value, n);
        v[n] = '\0';
        st->http_status = atoi(v);
    } else if (IS("grpc-status")) {
        memcpy(v, value, n);
        v[n] = '\0';
        st->grpc_status = atoi(v);
        st->has_status = 1;
    } else if (IS("ftrpc-code")) {
        memcpy(v, value, n);
        v[n] = '\0';
        st->ftrpc_code = (int32_t)atol(v);
        st->has_code = 1;
    } else if (IS("grpc-message")) {
        size_t m = vlen < sizeof st->message - 1 ? vlen : sizeof st->message - 1;
        memcpy(st->message, value, m);
        ft_grpc_message_decode(st->message, m);
    } else if (IS("grpc-encoding")) {
        st->gzip = vlen == 4 && memcmp(value, "gzip", 4) == 0;
    } else if (IS("grpc-retry-pushback-ms")) {
        st->pushback_ms = ft_grpc_parse_pushback((const char *)value, vlen);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    (void)flags;
    struct ft_grpc_cconn *g = user;
    cstream *st = nghttp2_session_get_stream_user_data(h2, id);
    if (!st || st->too_big) return 0;
    if (ft_iobuf_size(&st->body) + len > (size_t)g->cc->client->opts.max_body_size + 5) {
        st->too_big = 1;
        ft_iobuf_clear(&st->body);
        return 0;
    }
    if (ft_iobuf_append(&st->body, data, len) != 0) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

/* The stream ended: its answer (or its failure) goes to the attempt waiting for it, if any. */
static int on_stream_close(nghttp2_session *h2, int32_t id, uint32_t error_code, void *user)
{
    struct ft_grpc_cconn *g = user;
    cstream *st = nghttp2_session_get_stream_user_data(h2, id);
    if (!st) return 0;
    nghttp2_session_set_stream_user_data(h2, id, NULL);
    cstream_unlink(g, st);
    ft_attempt *a = ft_idmap_take(&g->cc->pending, id);
    if (a) {
        a->cc = NULL;
        ft_rpc_frame f;
        ft_rpc_frame_init(&f);
        f.correlation_id = id;
        f.error_text = "";
        ft_parse_status ps = FT_PARSE_OK;
        const char *reason = NULL;
        if (!st->has_status) {
            /* reset, refused or cut short before any status: the server did not answer */
            ps = FT_PARSE_BAD_FRAME;
            reason = error_code == NGHTTP2_REFUSED_STREAM ? "gRPC stream refused by the server"
                     : st->http_status && st->http_status != 200
                         ? "HTTP error from the gRPC server"
                         : "gRPC stream ended without grpc-status";
            if (error_code == NGHTTP2_REFUSED_STREAM) {
                ps = FT_PARSE_OK;
                f.error_code = -FTRPC_ELIMIT; /* never processed: safe to retry elsewhere */
                f.error_text = reason;
            }
        } else if (st->grpc_status != 0) {
            f.error_code = st->has_code ? st->ftrpc_code : ft_grpc_wire_code_of(st->grpc_status);
            f.error_text = st->message;
            f.retry_after_ms = st->pushback_ms;
        } else if (st->too_big) {
            ps = FT_PARSE_BAD_FRAME;
            reason = "response message larger than max_body_size";
        } else {
            int status;
            if (ft_grpc_unframe(&st->body, st->gzip, g->cc->client->opts.max_body_size, &f.payload,
                                &status, &reason) != 0)
                ps = FT_PARSE_BAD_FRAME;
        }
        ft_call_on_response(a, ps, &f, reason);
        ft_rpc_frame_fini(&f);
    }
    cstream_free(st);
    return 0;
}

/* Sends what nghttp2 queued. 0, or a negative code (the caller closes). */
static int flush(struct ft_grpc_cconn *g)
{
    ft_conn *c = g->cc->conn;
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(g->h2, &data);
        if (n < 0) return FTRPC_ERESPONSE;
        if (n == 0) return 0;
        if (!ft_conn_is_open(c)) return 0;
        int rc = ft_conn_write_bytes(c, data, (size_t)n);
        if (rc != 0) return rc;
    }
}

int ft_grpc_cconn_on_flush(ft_cconn *cc)
{
    return cc->grpc && !cc->grpc->in_recv ? flush(cc->grpc) : 0;
}

/* Has what nghttp2 queued written: at the loop's flush of this turn when the connection is open
 * (every stream submitted in the turn in one pass), at once while it connects (the bytes wait in
 * the output, which the connect then flushes). */
static int flush_later(struct ft_grpc_cconn *g)
{
    ft_conn *c = g->cc->conn;
    if (g->in_recv) return 0; /* the read's flush sends it */
    if (c->state != FT_CONN_OPEN) return flush(g);
    ft_conn_flush_soon(c);
    return 0;
}

int ft_grpc_cconn_start(ft_cconn *cc)
{
    struct ft_grpc_cconn *g = calloc(1, sizeof *g);
    if (!g) return FTRPC_ENOMEM;
    g->cc = cc;
    ft_h2_mem_init(&g->mem);
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0) {
        free(g);
        return FTRPC_ENOMEM;
    }
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    int rc = nghttp2_session_client_new3(&g->h2, cb, g, NULL, &g->mem.mem);
    nghttp2_session_callbacks_del(cb);
    if (rc != 0) {
        free(g);
        return FTRPC_ENOMEM;
    }
    /* RFC 9218's SETTINGS_NO_RFC7540_PRIORITIES: no priority tree kept per stream */
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                   {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1u << 20},
                                   {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1}};
    nghttp2_submit_settings(g->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
    nghttp2_session_set_local_window_size(g->h2, NGHTTP2_FLAG_NONE, 0, 1 << 20);
    cc->grpc = g;
    return flush(g); /* the preface and SETTINGS go out first (after TLS's handshake) */
}

void ft_grpc_cconn_free(ft_cconn *cc)
{
    struct ft_grpc_cconn *g = cc->grpc;
    if (!g) return;
    cc->grpc = NULL;
    nghttp2_session_del(g->h2);
    ft_h2_mem_fini(&g->mem);
    while (g->streams) {
        cstream *st = g->streams;
        cstream_unlink(g, st);
        cstream_free(st);
    }
    free(g);
}

/* A header field: the name is a literal, which nghttp2 need not copy; `flags` adds
 * NGHTTP2_NV_FLAG_NO_COPY_VALUE for a value that outlives the stream's HEADERS (a literal, the
 * endpoint's name) and NGHTTP2_NV_FLAG_NO_INDEX for one that changes every call (grpc-timeout:
 * indexed, it would add and evict an HPACK table entry on both sides per call). */
#define NV(name, value, vlen, flags)                                                               \
    {                                                                                              \
        (uint8_t *)(name), (uint8_t *)(value), sizeof(name) - 1, (vlen),                           \
            NGHTTP2_NV_FLAG_NO_COPY_NAME | (flags)                                                 \
    }
#define KEEP NGHTTP2_NV_FLAG_NO_COPY_VALUE

int ft_grpc_cconn_send(ft_cconn *cc, ft_attempt *a, const char *service, const char *method,
                       int32_t timeout_ms, const ft_iobuf *request, const uint8_t *credential,
                       size_t credential_len)
{
    struct ft_grpc_cconn *g = cc->grpc;
    /* the server sent GOAWAY (a graceful stop): no new stream here; ELOGOFF, as a stopping
     * baidu_std server answers, is retried elsewhere */
    if (!nghttp2_session_check_request_allowed(g->h2)) return FTRPC_ELOGOFF;
    cstream *st = calloc(1, sizeof *st);
    if (!st) return FTRPC_ENOMEM;
    ft_iobuf_init(&st->out);
    ft_iobuf_init(&st->body);
    if (ft_grpc_frame(&st->out, request) != 0) {
        cstream_free(st);
        return FTRPC_ENOMEM;
    }
    char path[512], timeout[12], auth[320];
    size_t slen = strlen(service), mlen = strlen(method);
    if (slen + mlen + 2 >= sizeof path) {
        cstream_free(st);
        return FTRPC_EINVAL;
    }
    path[0] = '/';
    memcpy(path + 1, service, slen);
    path[1 + slen] = '/';
    memcpy(path + 2 + slen, method, mlen);
    size_t plen = slen + mlen + 2;
    size_t tlen = ft_grpc_format_timeout(timeout_ms, timeout);
    const char *authority = cc->ep->base.name;
    nghttp2_nv h[9] = {
        NV(":method", "POST", 4, KEEP),
        NV(":scheme", cc->client->tls_ctx ? "https" : "http", cc->client->tls_ctx ? 5 : 4, KEEP),
        NV(":path", path, plen, 0),
        NV(":authority", authority, strlen(authority), KEEP),
        NV("content-type", "application/grpc", 16, KEEP),
        NV("te", "trailers", 8, KEEP),
        NV("grpc-timeout", timeout, tlen, NGHTTP2_NV_FLAG_NO_INDEX),
        NV("grpc-accept-encoding", "identity,gzip", 13, KEEP),
    };
    size_t nh = 8;
    if (credential) {
        /* the token shortcut as an HTTP client sends it; a credential function's bytes as they are
         */
        int n = cc->client->auth_token
                    ? snprintf(auth, sizeof auth, "Bearer %.*s", (int)credential_len, credential)
                    : snprintf(auth, sizeof auth, "%.*s", (int)credential_len, credential);
        if (n > 0 && (size_t)n < sizeof auth)
            h[nh++] = (nghttp2_nv)NV("authorization", auth, (size_t)n, 0);
    }
    nghttp2_data_provider p = {.source.ptr = st, .read_callback = read_out};
    int32_t id = nghttp2_submit_request(g->h2, NULL, h, nh, &p, st);
    if (id < 0) {
        cstream_free(st);
        return id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE ? FTRPC_EFAILEDSOCKET : FTRPC_ENOMEM;
    }
    st->next = g->streams;
    if (st->next) st->next->prev = st;
    g->streams = st;
    int rc = ft_idmap_put(&cc->pending, id, a);
    if (rc != 0) {
        nghttp2_submit_rst_stream(g->h2, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
        return rc; /* st is freed when the stream closes */
    }
    a->cc = cc;
    a->cid = id;
    rc = flush_later(g);
    if (rc == 0) ft_client_conn_busy(cc); /* the health check watches the connection */
    return rc;
}

void ft_grpc_cconn_cancel(ft_cconn *cc, int64_t id)
{
    struct ft_grpc_cconn *g = cc->grpc;
    if (!g || id <= 0 || id > INT32_MAX) return;
    /* out of the map first: sending the reset closes the stream within flush, and its close must
     * not answer an attempt that is being ended (detach_attempt, next, finds it gone) */
    ft_idmap_take(&cc->pending, id);
    nghttp2_submit_rst_stream(g->h2, NGHTTP2_FLAG_NONE, (int32_t)id, NGHTTP2_CANCEL);
    if (flush_later(g) != 0) ft_conn_close(cc->conn, FTRPC_EOVERCROWDED, 1);
}

int ft_grpc_cconn_ping(ft_cconn *cc)
{
    struct ft_grpc_cconn *g = cc->grpc;
    if (!g) return FTRPC_EINVAL;
    /* nghttp2 answers the peer's PINGs itself; this one's ACK is a read like any other */
    if (nghttp2_submit_ping(g->h2, NGHTTP2_FLAG_NONE, NULL) != 0) return FTRPC_ENOMEM;
    return flush_later(g);
}

int ft_grpc_cconn_on_read(ft_cconn *cc)
{
    struct ft_grpc_cconn *g = cc->grpc;
    ft_conn *c = cc->conn;
    g->in_recv = 1;
    while (ft_iobuf_size(&c->in) > 0 && c->state == FT_CONN_OPEN) {
        struct iovec iov[16];
        int n = ft_iobuf_to_iovec(&c->in, iov, 16);
        size_t used = 0;
        for (int i = 0; i < n; i++) {
            ssize_t r = nghttp2_session_mem_recv(g->h2, iov[i].iov_base, iov[i].iov_len);
            if (r < 0) {
                g->in_recv = 0;
                FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "closing gRPC connection to %s: %s", c->peer,
                                   nghttp2_strerror((int)r));
                return FTRPC_ERESPONSE;
            }
            used += (size_t)r;
        }
        ft_iobuf_pop_front(&c->in, used);
    }
    g->in_recv = 0;
    int rc = flush(g);
    if (rc == 0 && !nghttp2_session_want_read(g->h2) && !nghttp2_session_want_write(g->h2))
        rc = FTRPC_EEOF; /* GOAWAY: this connection takes no more calls */
    return rc;
}
