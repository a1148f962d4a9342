/* HTTP/1.1 on the server's port: builtin pages and method calls over one keep-alive connection.
 *
 * HTTP/1.1 has no correlation id: responses must leave in request order even when a call made
 * from request 1 is answered from a worker thread after the page of request 2 is ready. Each
 * parsed request takes the next slot of a small ring (FT_HTTP_MAX_PIPELINE); a page fills its slot
 * at once, a call fills it when its reply lands on the loop; the slots are written from the head
 * while the head is filled. With the ring full the session stops parsing (the bytes wait in the
 * read buffer, bounded by header + body limits) until replies drain it.
 *
 * Invariants: everything here runs on the connection's loop; a call made from a request holds a
 * reference on the connection, and delivers only while it is open (so the session, freed in
 * on_close, is alive then). A response with "Connection: close" (asked for, HTTP/1.0, or an error
 * that leaves the stream out of sync) is the last: the session parses nothing after it and closes
 * the connection once it is flushed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"
#include "protocol/http.h"
#include "protocol/json_pb.h"
#include "server/server_internal.h"

#define FT_HTTP_MAX_PIPELINE 16

typedef struct ft_http_slot {
    int done;
    ft_iobuf bytes; /* the whole response, once done */
} ft_http_slot;

typedef struct ft_http_conn {
    ft_http_parser parser;
    ft_http_slot slots[FT_HTTP_MAX_PIPELINE]; /* slot of seq is slots[seq % FT_HTTP_MAX_PIPELINE] */
    uint64_t head;                            /* oldest response not yet written */
    uint64_t next;                            /* seq of the next request */
    uint64_t last_seq; /* seq of the response that closes the connection (when closing) */
    int closing;       /* a closing response is queued: parse nothing more */
    int reading;       /* inside on_read: deliveries do not re-enter the parse loop */
    /* when the first byte of the request being read arrived (0: none pending), and the deadline
     * the read timer is set to for it */
    int64_t request_start_ns, request_due_ns;
    int keep_alive[FT_HTTP_MAX_PIPELINE];
    int head_only[FT_HTTP_MAX_PIPELINE];
} ft_http_conn;

static ft_http_conn *http_of(ft_session *sess)
{
    if (sess->http) return sess->http;
    ft_http_conn *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    ft_http_parser_init(&h->parser);
    for (int i = 0; i < FT_HTTP_MAX_PIPELINE; i++)
        ft_iobuf_init(&h->slots[i].bytes);
    sess->http = h;
    return h;
}

void ft_http_session_free(ft_session *sess)
{
    ft_http_conn *h = sess->http;
    if (!h) return;
    ft_http_parser_fini(&h->parser);
    for (int i = 0; i < FT_HTTP_MAX_PIPELINE; i++)
        ft_iobuf_fini(&h->slots[i].bytes);
    free(h);
    sess->http = NULL;
}

/* Writes every filled response from the head on; closes after the last one. */
static void flush_in_order(ft_session *sess)
{
    ft_http_conn *h = sess->http;
    ft_conn *c = sess->conn;
    while (h->head < h->next && ft_conn_is_open(c)) {
        ft_http_slot *slot = &h->slots[h->head % FT_HTTP_MAX_PIPELINE];
        if (!slot->done) break;
        int rc = ft_conn_write(c, &slot->bytes);
        ft_iobuf_clear(&slot->bytes);
        slot->done = 0;
        if (rc != 0) {
            FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "closing %s: peer does not read its responses",
                               c->peer);
            ft_conn_close(c, rc, 1);
            return;
        }
        if (h->closing && h->head == h->last_seq) {
            h->head++;
            ft_conn_close(c, 0, 0); /* orderly: the response goes out first */
            return;
        }
        h->head++;
    }
    /* curl waits (1 s) for "100 Continue" before sending a body: answer once the responses
     * before that request are out, so the interim line does not jump the queue */
    if (h->head == h->next && !h->closing && ft_conn_is_open(c) &&
        ft_http_parser_take_continue(&h->parser)) {
        ft_iobuf cont;
        ft_iobuf_init(&cont);
        if (ft_iobuf_append(&cont, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0)
            ft_conn_write(c, &cont);
        ft_iobuf_fini(&cont);
    }
}

/* Fills slot seq with a response. */
static void fill(ft_http_conn *h, uint64_t seq, int status, const char *content_type,
                 const char *extra_headers, const ft_iobuf *body)
{
    int i = (int)(seq % FT_HTTP_MAX_PIPELINE);
    ft_http_slot *slot = &h->slots[i];
    ft_iobuf_clear(&slot->bytes);
    if (ft_http_pack_response(&slot->bytes, status, content_type, h->keep_alive[i], extra_headers,
                              body, h->head_only[i]) != 0) {
        ft_iobuf_clear(&slot->bytes);
        h->keep_alive[i] = 0;
        ft_http_pack_response(&slot->bytes, 503, NULL, 0, NULL, NULL, 0);
    }
    if (!h->keep_alive[i] && !h->closing) {
        h->closing = 1;
        h->last_seq = seq;
    }
    slot->done = 1;
}

static void fill_text(ft_http_conn *h, uint64_t seq, int status, const char *text,
                      const char *extra_headers)
{
    ft_iobuf body;
    ft_iobuf_init(&body);
    ft_iobuf_append(&body, text, strlen(text));
    fill(h, seq, status, "text/plain; charset=utf-8", extra_headers, &body);
    ft_iobuf_fini(&body);
}

/* HTTP status for a wire code, as brpc maps its error codes (ErrorCodeToStatusCode). */
static int status_of(int32_t wire)
{
    switch (-wire) {
    case 0:
        return 200;
    case FTRPC_ENOSERVICE:
    case FTRPC_ENOMETHOD:
        return 404;
    case FTRPC_EREQUEST:
        return 400;
    case FTRPC_ERPCAUTH:
        return 403; /* a handler's refusal; a credential the server refuses is 401 (handle) */
    case FTRPC_ELIMIT:
    case FTRPC_ELOGOFF:
    case FTRPC_EOVERCROWDED:
        return 503;
    case FTRPC_ERPCTIMEDOUT:
        return 504;
    default:
        return 500; /* EINTERNAL, business errors, the rest */
    }
}

/* The handler's response bytes as JSON of the method's output type, into call->reply. 0, or -1
 * with the reply set to a 500 naming why (the handler answered bytes that are not its type). */
static int pack_json(ftrpc_server_call *call, const ft_iobuf *payload)
{
    const ProtobufCMessageDescriptor *out = call->method->pb_method->output;
    size_t n = payload ? ft_iobuf_size(payload) : 0;
    char *flat = malloc(n ? n : 1);
    ft_strbuf sb;
    ft_strbuf_init(&sb, 0);
    char why[256] = "out of memory";
    int rc = FTRPC_ENOMEM;
    if (flat) {
        if (n) ft_iobuf_copy_at(payload, 0, flat, n);
        rc = ft_pb_bytes_to_json(out, flat, n, &sb, why, sizeof why);
    }
    free(flat);
    if (rc == 0 && ft_iobuf_append(&call->reply, ft_strbuf_cstr(&sb), sb.len) == 0) {
        ft_strbuf_fini(&sb);
        return 0;
    }
    ft_strbuf_fini(&sb);
    ft_iobuf_clear(&call->reply);
    call->http_code = -FTRPC_EINTERNAL;
    call->http_status = 500;
    char line[400];
    int len = snprintf(line, sizeof line, "[%d] response to JSON: %s\n", -FTRPC_EINTERNAL, why);
    if (len < 0) len = 0;
    if ((size_t)len >= sizeof line) len = (int)sizeof line - 1;
    ft_iobuf_append(&call->reply, line, (size_t)len);
    return -1;
}

void ft_http_call_pack(ftrpc_server_call *call, int32_t wire_code, const char *text,
                       const ft_iobuf *payload, const ft_iobuf *attachment)
{
    ft_iobuf_clear(&call->reply);
    call->http_code = wire_code;
    call->http_status = status_of(wire_code);
    if (wire_code == 0 && call->is_http == FT_HTTP_BODY_JSON && call->method->pb_method) {
        /* JSON has no place for an attachment: the message alone */
        pack_json(call, payload);
        return;
    }
    if (wire_code == 0) {
        /* the attachment has no place of its own in an HTTP body: it follows the payload */
        if ((payload && ft_iobuf_append_buf(&call->reply, payload) != 0) ||
            (attachment && ft_iobuf_append_buf(&call->reply, attachment) != 0)) {
            ft_iobuf_clear(&call->reply);
            call->http_code = -FTRPC_EINTERNAL;
            call->http_status = 500;
            ft_iobuf_append(&call->reply, "server out of memory\n", 21);
        }
        return;
    }
    char line[600];
    int n = snprintf(line, sizeof line, "[%d] %s\n", (int)wire_code, text ? text : "");
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof line) n = (int)sizeof line - 1;
    ft_iobuf_append(&call->reply, line, (size_t)n);
}

void ft_http_session_deliver(ftrpc_server_call *call)
{
    ft_session *sess = call->conn->owner;
    ft_http_conn *h = sess->http;
    if (!h) return;
    char hdr[64] = "";
    if (call->http_code != 0)
        snprintf(hdr, sizeof hdr, "x-bd-error-code: %d\r\n", (int)call->http_code);
    const char *type = call->http_code != 0                  ? "text/plain; charset=utf-8"
                       : call->is_http == FT_HTTP_BODY_PROTO ? "application/proto"
                       : call->is_http == FT_HTTP_BODY_JSON && call->method->pb_method
                           ? "application/json"
                           : "application/octet-stream";
    fill(h, call->http_seq, call->http_status, type, hdr, &call->reply);
    flush_in_order(sess);
    /* the ring may have been full: requests waiting in the read buffer can go on now */
    if (!h->reading && ft_conn_is_open(call->conn) && ft_iobuf_size(&call->conn->in) > 0) {
        int rc = ft_http_session_on_read(sess);
        if (rc == 0) rc = ft_server_account_pending(sess);
        if (rc < 0) ft_conn_close(call->conn, rc, 1);
    }
}

int ft_split_method_path(const char *path, char *service, size_t slen, char *method, size_t mlen)
{
    const char *a = path + 1, *slash = strchr(a, '/');
    if (!slash || slash == a || !slash[1] || strchr(slash + 1, '/')) return 0;
    size_t an = (size_t)(slash - a), bn = strlen(slash + 1);
    if (an >= slen || bn >= mlen) return 0;
    memcpy(service, a, an);
    service[an] = '\0';
    memcpy(method, slash + 1, bn + 1);
    return 1;
}

/* The form of a request's body by its Content-Type (parameters such as charset ignored). */
static int body_kind(const char *content_type)
{
    if (!content_type) return FT_HTTP_BODY_OCTET;
    size_t n = strcspn(content_type, "; \t");
    if (n == 16 && !strncasecmp(content_type, "application/json", n)) return FT_HTTP_BODY_JSON;
    /* brpc's HTTP client sends application/proto and refuses another type in the answer */
    if ((n == 17 && !strncasecmp(content_type, "application/proto", n)) ||
        (n == 22 && !strncasecmp(content_type, "application/x-protobuf", n)))
        return FT_HTTP_BODY_PROTO;
    return FT_HTTP_BODY_OCTET;
}

/* A JSON body for a method with protobuf types becomes the request message's bytes (brpc's
 * json2pb over HTTP); an empty body is the empty message. 0, or -1 with a 400 filled naming the
 * field at fault. */
static int body_from_json(ft_http_conn *h, uint64_t seq, const ProtobufCMethodDescriptor *pm,
                          ft_iobuf *body)
{
    size_t n = ft_iobuf_size(body);
    char *json = malloc(n ? n : 1);
    char why[300] = "out of memory";
    int rc = FTRPC_ENOMEM;
    ft_iobuf pb;
    ft_iobuf_init(&pb);
    if (json) {
        ft_iobuf_copy_at(body, 0, json, n);
        rc = n == 0 ? 0 : ft_json_to_pb_bytes(pm->input, json, n, &pb, why, sizeof why);
    }
    free(json);
    if (rc == 0) {
        ft_iobuf_clear(body);
        ft_iobuf_move(body, &pb);
        return 0;
    }
    ft_iobuf_fini(&pb);
    int32_t wire = rc == FTRPC_ENOMEM ? -FTRPC_EINTERNAL : -FTRPC_EREQUEST;
    char line[400], hdr[64];
    snprintf(line, sizeof line, "[%d] request JSON: %s\n", (int)wire, why);
    snprintf(hdr, sizeof hdr, "x-bd-error-code: %d\r\n", (int)wire);
    fill_text(h, seq, status_of(wire), line, hdr);
    return -1;
}

/* 1 when the request may go on: no authentication configured, a page open to anyone, or a
 * credential the server accepts. HTTP has no connection-level handshake a proxy would respect, so
 * every request carries its own credential and is checked (brpc checks each HTTP request too). */
static int request_authorized(ft_session *sess, const ft_http_request *req)
{
    ftrpc_server *s = sess->server;
    if (!ft_server_needs_auth(s)) return 1;
    if (req->method == FT_HTTP_GET || req->method == FT_HTTP_HEAD) {
        /* a load balancer's health check carries no credential */
        if (strcmp(req->path, "/health") == 0) return 1;
        if (s->opts.public_builtin_pages && ft_builtin_page_known(req->path)) return 1;
    }
    return ft_server_authenticate_http(sess, ft_http_request_header(req, "authorization"));
}

static void handle(ft_session *sess, ft_http_conn *h, ft_http_request *req)
{
    uint64_t seq = h->next++;
    int i = (int)(seq % FT_HTTP_MAX_PIPELINE);
    h->keep_alive[i] = req->keep_alive;
    h->head_only[i] = req->method == FT_HTTP_HEAD;
    h->slots[i].done = 0;

    if (!request_authorized(sess, req)) {
        /* closed after the answer, as a refused baidu_std connection is: a peer guessing tokens
         * pays a connection per guess */
        ft_server_count_auth_failure(sess);
        h->keep_alive[i] = 0;
        char line[64], hdr[96];
        snprintf(line, sizeof line, "[%d] authentication failed\n", -FTRPC_ERPCAUTH);
        snprintf(hdr, sizeof hdr, "WWW-Authenticate: Bearer\r\nx-bd-error-code: %d\r\n",
                 -FTRPC_ERPCAUTH);
        fill_text(h, seq, 401, line, hdr);
        return;
    }
    if (req->method == FT_HTTP_GET || req->method == FT_HTTP_HEAD || req->method == FT_HTTP_POST) {
        ft_page page;
        memset(&page, 0, sizeof page);
        ft_strbuf_init(&page.body, (size_t)16 << 20);
        int served = req->method == FT_HTTP_POST
                         ? ft_builtin_post(sess->server, req->path, req->query, &page)
                         : ft_builtin_page(sess->server, req->path, req->query, &page);
        if (served) {
            ft_iobuf body;
            ft_iobuf_init(&body);
            if (ft_iobuf_append(&body, ft_strbuf_cstr(&page.body), page.body.len) != 0) {
                ft_iobuf_clear(&body);
                page.status = 503;
            }
            fill(h, seq, page.status, page.content_type, "Cache-Control: no-cache\r\n", &body);
            ft_iobuf_fini(&body);
            ft_strbuf_fini(&page.body);
            return;
        }
        ft_strbuf_fini(&page.body);
    }
    if (ft_builtin_page_known(req->path) && req->method != FT_HTTP_GET &&
        req->method != FT_HTTP_HEAD) {
        /* a page asked with a method it does not take: 405 names the ones it does (RFC 9110) */
        int posts = strcmp(req->path, "/limits") == 0 || strcmp(req->path, "/endpoints") == 0;
        fill_text(h, seq, 405, "this page is read with GET\n",
                  posts ? "Allow: GET, HEAD, POST\r\n" : "Allow: GET, HEAD\r\n");
        return;
    }
    char service[256], method[256];
    if (!ft_split_method_path(req->path, service, sizeof service, method, sizeof method)) {
        fill_text(h, seq, 404,
                  "no such page; try /status, /vars, /metrics, /endpoints, /rpcz, /health or /\n",
                  NULL);
        return;
    }
    if (req->method != FT_HTTP_POST && req->method != FT_HTTP_GET) {
        fill_text(h, seq, 405, "methods are called with POST (or GET without a body)\n",
                  "Allow: GET, POST\r\n");
        return;
    }
    /* brpc's and gRPC's way of sending a deadline over HTTP: the remaining time in ms */
    const char *tmo = ft_http_request_header(req, "x-timeout-ms");
    long timeout_ms = tmo ? strtol(tmo, NULL, 10) : 0;
    if (timeout_ms < 0 || timeout_ms > INT32_MAX) timeout_ms = 0;
    int body = body_kind(ft_http_request_header(req, "content-type"));
    if (body == FT_HTTP_BODY_JSON) {
        /* a method of bytes takes the JSON text as its bytes, as before it had types */
        const ProtobufCMethodDescriptor *pm =
            ft_server_method_descriptor(sess->server, service, method);
        if (pm && body_from_json(h, seq, pm, &req->body) != 0) return;
    }
    char text[512];
    int32_t after = 0;
    int rc = ft_server_start_http_call(sess, service, method, (int32_t)timeout_ms, &req->body, body,
                                       seq, text, sizeof text, &after);
    if (rc != 0) {
        int32_t wire = ft_server_wire_code(rc);
        char line[600], hdr[96];
        snprintf(line, sizeof line, "[%d] %s\n", (int)wire, text);
        int n = snprintf(hdr, sizeof hdr, "x-bd-error-code: %d\r\n", (int)wire);
        /* the limiter's pushback: Retry-After counts whole seconds (RFC 9110), so the hint is
         * rounded up; a -1 (do not retry) has no HTTP form and sends none */
        if (after > 0)
            snprintf(hdr + n, sizeof hdr - (size_t)n, "Retry-After: %d\r\n", (after + 999) / 1000);
        fill_text(h, seq, status_of(wire), line, hdr);
    }
}

/* A request must be whole in time, as a baidu_std frame must: its header within
 * http_header_timeout_ms of its first byte, and header and body within read_timeout_ms (a body
 * trickled a byte a second would otherwise hold its connection, and its buffered bytes, for ever).
 * Called whenever the parser wants more bytes. */
static void arm_request_timer(ft_session *sess, ft_http_conn *h)
{
    const ftrpc_server_options *o = &sess->server->opts;
    if (ft_iobuf_size(&sess->conn->in) == 0) {
        h->request_start_ns = 0;
        ft_timer_stop(sess->loop, &sess->read_timer);
        return;
    }
    if (h->request_start_ns == 0) h->request_start_ns = ft_loop_now_ns(sess->loop);
    int64_t whole = o->read_timeout_ms > 0 ? (int64_t)o->read_timeout_ms * FT_NS_PER_MS : -1;
    int64_t header = (int64_t)o->http_header_timeout_ms * FT_NS_PER_MS;
    int64_t budget = ft_http_parser_in_body(&h->parser) ? whole
                     : whole < 0 || header < whole      ? header
                                                        : whole;
    if (budget < 0) {
        ft_timer_stop(sess->loop, &sess->read_timer);
        return;
    }
    int64_t due = h->request_start_ns + budget;
    if (ft_timer_armed(&sess->read_timer) && h->request_due_ns == due) return;
    h->request_due_ns = due;
    ft_timer_start(sess->loop, &sess->read_timer, due, ft_server_read_timer_fired);
}

void ft_http_session_on_timeout(ft_session *sess)
{
    ft_http_conn *h = sess->http;
    const ftrpc_server_options *o = &sess->server->opts;
    int in_body = h && ft_http_parser_in_body(&h->parser);
    /* the time arm_request_timer gave this request */
    int64_t allowed_ms =
        h ? (h->request_due_ns - h->request_start_ns) / FT_NS_PER_MS : o->http_header_timeout_ms;
    if (in_body) ft_server_count_read_timeout(sess);
    FT_LOG_RATELIMITED(FTRPC_LOG_WARN,
                       "closing HTTP connection from %s: request %s not complete within %lld ms",
                       sess->conn->peer, in_body ? "body" : "header", (long long)allowed_ms);
    if (!h || h->closing || h->next - h->head >= FT_HTTP_MAX_PIPELINE) {
        ft_conn_close(sess->conn, FTRPC_ERPCTIMEDOUT, 1);
        return;
    }
    uint64_t seq = h->next++;
    h->keep_alive[seq % FT_HTTP_MAX_PIPELINE] = 0;
    h->head_only[seq % FT_HTTP_MAX_PIPELINE] = 0;
    fill_text(h, seq, 408,
              in_body ? "request body not complete in time\n"
                      : "request header not complete in time\n",
              NULL);
    flush_in_order(sess);
}

int ft_http_session_on_read(ft_session *sess)
{
    ft_conn *c = sess->conn;
    ftrpc_server *s = sess->server;
    ft_http_conn *h = http_of(sess);
    if (!h) return FTRPC_ENOMEM;
    ft_http_limits lim = {.max_body = s->opts.max_body_size};
    h->reading = 1;
    while (c->state == FT_CONN_OPEN && !h->closing) {
        if (h->next - h->head >= FT_HTTP_MAX_PIPELINE) {
            /* the ring is full; what waits in the read buffer is bounded by one request */
            if (ft_iobuf_size(&c->in) > FT_HTTP_MAX_HEADER_BYTES + (size_t)s->opts.max_body_size) {
                FT_LOG_RATELIMITED(FTRPC_LOG_WARN,
                                   "closing HTTP connection from %s: pipelines past %d responses "
                                   "without reading them",
                                   c->peer, FT_HTTP_MAX_PIPELINE);
                h->reading = 0;
                return FTRPC_EOVERCROWDED;
            }
            break;
        }
        ft_http_request req;
        int status = 0;
        const char *reason = NULL;
        ft_parse_status st = ft_http_parse(&h->parser, &c->in, &lim, &req, &status, &reason);
        if (st == FT_PARSE_NEED_MORE) {
            arm_request_timer(sess, h);
            break;
        }
        ft_timer_stop(sess->loop, &sess->read_timer);
        h->request_start_ns = 0;
        if (st != FT_PARSE_OK) {
            FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "closing HTTP connection from %s: %s (%d)", c->peer,
                               reason ? reason : "bad request", status);
            uint64_t seq = h->next++;
            h->keep_alive[seq % FT_HTTP_MAX_PIPELINE] = 0;
            h->head_only[seq % FT_HTTP_MAX_PIPELINE] = 0;
            char line[160];
            snprintf(line, sizeof line, "%s\n", reason ? reason : "bad request");
            fill_text(h, seq, status ? status : 400, line, NULL);
            break;
        }
        handle(sess, h, &req);
        ft_http_request_fini(&req);
        flush_in_order(sess);
    }
    flush_in_order(sess);
    h->reading = 0;
    return 0;
}
