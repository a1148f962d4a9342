/* http: a bounded, incremental HTTP/1.1 request parser and a response packer, for the builtin
 * pages and curl-able calls on the server's port (docs/protocol.md, HTTP and TLS on the same port;
 * docs/observability.md).
 *
 * The parser cuts whole requests out of a connection's read buffer: it waits until the header
 * block ("\r\n\r\n") is in, parses it from a private copy, then waits until Content-Length bytes
 * of body are in and slices them out without copying. It never holds a pointer into `in` between
 * calls; its only state is how far it has already scanned for the end of the header (so a peer
 * dripping one byte at a time costs O(n), not O(n^2)) and the parsed header of a request whose
 * body is still arriving.
 *
 * Limits (outside input never reaches an assert): the header block at most max_header_bytes
 * (default 8 KiB, request line included), at most max_headers header lines (default 64), a body
 * at most max_body bytes (Content-Length), no Transfer-Encoding (chunked bodies are refused with
 * 411: the body's size must be known before it is read, which is what keeps the bound simple),
 * no obsolete line folding, CRLF line ends only, HTTP/1.0 and HTTP/1.1 only. Anything else is
 * FT_PARSE_CLOSE with a reason and the status to answer before closing (400, 405, 411, 413, 431,
 * 505). It does not time out: the caller arms a timer (the server closes a connection whose header
 * is not complete within http_header_timeout_ms).
 *
 * Not here: percent-decoding, cookies, multipart, trailers, HTTP/2, keep-alive timers.
 */
#ifndef FT_PROTOCOL_HTTP_H
#define FT_PROTOCOL_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "base/iobuf.h"
#include "protocol/baidu_std.h" /* ft_parse_status */

#define FT_HTTP_MAX_HEADER_BYTES 8192
#define FT_HTTP_MAX_HEADERS 64

typedef enum ft_http_method {
    FT_HTTP_GET,
    FT_HTTP_HEAD,
    FT_HTTP_POST,
    FT_HTTP_PUT,
    FT_HTTP_DELETE,
    FT_HTTP_OPTIONS,
} ft_http_method;

typedef struct ft_http_limits {
    size_t max_header_bytes; /* default FT_HTTP_MAX_HEADER_BYTES */
    int max_headers;         /* default FT_HTTP_MAX_HEADERS */
    uint64_t max_body;       /* default 64 MiB (the server passes its max_body_size) */
} ft_http_limits;

typedef struct ft_http_header {
    const char *name;  /* as sent; compare with strcasecmp */
    const char *value; /* leading and trailing blanks removed */
} ft_http_header;

/* One parsed request. Strings point into `storage`, owned by the request until fini. */
typedef struct ft_http_request {
    ft_http_method method;
    const char *method_name;
    const char *path;  /* the target up to '?', e.g. "/vars/rpc_server_count" */
    const char *query; /* after '?', "" when absent */
    int version_minor; /* 0 or 1 (HTTP/1.x) */
    int keep_alive;    /* 1.1 unless "Connection: close"; 1.0 only with "Connection: keep-alive" */
    ft_http_header headers[FT_HTTP_MAX_HEADERS];
    int nheaders;
    uint64_t content_length;
    ft_iobuf body; /* sliced from the read buffer */
    char *storage; /* the header block, NUL-separated */
} ft_http_request;

/* Parser state of one connection (zero-initialise, or ft_http_parser_init). */
typedef struct ft_http_parser {
    size_t scanned;          /* bytes of `in` already searched for the end of the header */
    size_t header_len;       /* > 0: the header of the current request is parsed, body pending */
    ft_http_request pending; /* that header, while its body is arriving */
    int continue_sent;       /* "100 Continue" was answered for the pending request */
} ft_http_parser;

void ft_http_parser_init(ft_http_parser *p);
void ft_http_parser_fini(ft_http_parser *p);
/* 1 while the header of a request is complete and its body is not (the header timer may stop). */
static inline int ft_http_parser_in_body(const ft_http_parser *p)
{
    return p->header_len > 0;
}
/* 1 once per request when the pending request sent "Expect: 100-continue" and its body has not
 * arrived yet: the caller answers "HTTP/1.1 100 Continue" (curl waits a second for it). */
int ft_http_parser_take_continue(ft_http_parser *p);

void ft_http_request_init(ft_http_request *r);
void ft_http_request_fini(ft_http_request *r);
/* The value of the first header named `name` (case-insensitive), or NULL. */
const char *ft_http_request_header(const ft_http_request *r, const char *name);
/* The value of `key` in the query string into buf (not decoded), 1 when present, else 0. */
int ft_http_query_param(const char *query, const char *key, char *buf, size_t len);

/* Tries to cut one request from the front of `in`. FT_PARSE_OK: the request's bytes are consumed
 * and *out (init'ed by this call) must be fini'ed by the caller. FT_PARSE_NEED_MORE: nothing
 * consumed. FT_PARSE_CLOSE: *reason (static) says why and *status is the HTTP status to answer
 * before closing; nothing consumed. Never returns FT_PARSE_BAD_FRAME. lim may be NULL (defaults).
 */
ft_parse_status ft_http_parse(ft_http_parser *p, ft_iobuf *in, const ft_http_limits *lim,
                              ft_http_request *out, int *status, const char **reason);

/* How the first bytes of a connection look: 1 = an HTTP method token and a space (GET, POST,
 * HEAD, PUT, DELETE, OPTIONS), 0 = not HTTP, -1 = too few bytes to tell. */
int ft_http_sniff(const ft_iobuf *in);

/* The reason phrase of a status ("Not Found"), "Unknown" for others. */
const char *ft_http_status_text(int status);

/* Appends a whole response: status line, Content-Type (NULL: none), Content-Length, "Connection:
 * close" when !keep_alive, extra header lines (NULL or "Name: value\r\n..."), then body (shared,
 * not copied) unless head_only. body may be NULL. 0 or FTRPC_ENOMEM. */
int ft_http_pack_response(ft_iobuf *out, int status, const char *content_type, int keep_alive,
                          const char *extra_headers, const ft_iobuf *body, int head_only);

#endif
