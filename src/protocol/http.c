/* Bounded incremental HTTP/1.1 request parsing and response packing (see http.h).
 *
 * Why scan byte by byte with a rolling match instead of memmem: the header may span many slices
 * of the read buffer, and the scan doubles as a validator, so garbage that happens to start with
 * "GET " is refused at its first bad byte rather than after 8 KiB or a timeout.
 */
#include "protocol/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ftrpc/common.h"

static const struct {
    const char *name;
    size_t len;
    ft_http_method method;
} METHODS[] = {
    {"GET", 3, FT_HTTP_GET}, {"POST", 4, FT_HTTP_POST},     {"HEAD", 4, FT_HTTP_HEAD},
    {"PUT", 3, FT_HTTP_PUT}, {"DELETE", 6, FT_HTTP_DELETE}, {"OPTIONS", 7, FT_HTTP_OPTIONS},
};
#define NMETHODS (sizeof METHODS / sizeof METHODS[0])

void ft_http_request_init(ft_http_request *r)
{
    memset(r, 0, sizeof *r);
    r->path = "";
    r->query = "";
    ft_iobuf_init(&r->body);
}

void ft_http_request_fini(ft_http_request *r)
{
    free(r->storage);
    r->storage = NULL;
    ft_iobuf_fini(&r->body);
}

void ft_http_parser_init(ft_http_parser *p)
{
    memset(p, 0, sizeof *p);
    ft_http_request_init(&p->pending);
}

void ft_http_parser_fini(ft_http_parser *p)
{
    ft_http_request_fini(&p->pending);
    p->header_len = 0;
    p->scanned = 0;
}

const char *ft_http_request_header(const ft_http_request *r, const char *name)
{
    for (int i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0) return r->headers[i].value;
    return NULL;
}

int ft_http_query_param(const char *query, const char *key, char *buf, size_t len)
{
    size_t klen = strlen(key);
    for (const char *p = query; p && *p;) {
        const char *end = strchr(p, '&');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n >= klen && strncmp(p, key, klen) == 0 && (n == klen || p[klen] == '=')) {
            const char *v = n == klen ? p + n : p + klen + 1;
            size_t vn = (size_t)(p + n - v);
            if (len > 0) {
                if (vn >= len) vn = len - 1;
                memcpy(buf, v, vn);
                buf[vn] = '\0';
            }
            return 1;
        }
        p = end ? end + 1 : NULL;
    }
    return 0;
}

int ft_http_parser_take_continue(ft_http_parser *p)
{
    if (!p->header_len || p->continue_sent || p->pending.version_minor < 1) return 0;
    const char *e = ft_http_request_header(&p->pending, "Expect");
    if (!e || strcasecmp(e, "100-continue") != 0) return 0;
    p->continue_sent = 1;
    return 1;
}

int ft_http_sniff(const ft_iobuf *in)
{
    char tmp[8];
    size_t n = ft_iobuf_size(in) < sizeof tmp ? ft_iobuf_size(in) : sizeof tmp;
    if (n == 0) return -1;
    const char *p = ft_iobuf_fetch(in, tmp, n);
    int maybe = 0;
    for (size_t i = 0; i < NMETHODS; i++) {
        size_t want = METHODS[i].len + 1; /* the token and its space */
        size_t cmp = n < want ? n : want;
        if (memcmp(p, METHODS[i].name, cmp < METHODS[i].len ? cmp : METHODS[i].len) != 0) continue;
        if (cmp > METHODS[i].len && p[METHODS[i].len] != ' ') continue;
        if (n >= want) return 1;
        maybe = 1;
    }
    return maybe ? -1 : 0;
}

static int is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* Word tests from "Bit Twiddling Hacks", eight bytes at a time: non-zero when some byte of x is
 * below n (n <= 128), or above n (n <= 127). Exact as to whether there is one, not as to which. */
#define ONES8 0x0101010101010101u
static uint64_t bytes_below(uint64_t x, unsigned n)
{
    return (x - ONES8 * n) & ~x & (ONES8 * 0x80);
}
static uint64_t bytes_above(uint64_t x, unsigned n)
{
    return ((x + ONES8 * (127 - n)) | x) & (ONES8 * 0x80);
}
static uint64_t load8(const void *p)
{
    uint64_t x;
    memcpy(&x, p, sizeof x);
    return x;
}

/* The eight bytes at p are visible ASCII (0x21-0x7e), as a request target must be. */
static int visible8(const void *p)
{
    uint64_t x = load8(p);
    return !(bytes_below(x, 0x21) | bytes_above(x, 0x7e));
}

/* The eight bytes at p are plain header bytes and none of them a tab: none below 0x20, none 0x7f
 * (bytes_below(.., 1): a zero byte). */
static int plain8(const void *p)
{
    uint64_t x = load8(p);
    return !(bytes_below(x, 0x20) | bytes_below(x ^ (ONES8 * 0x7f), 1));
}

/* Parses the header block in r->storage (len bytes, ending in CRLFCRLF) into r. */
static int parse_header(ft_http_request *r, size_t len, const ft_http_limits *lim, int *status,
                        const char **reason)
{
    char *s = r->storage;
    char *end = s + len;
    /* request line */
    char *eol = memchr(s, '\r', len);
    char *sp1 = memchr(s, ' ', (size_t)(eol - s));
    if (!sp1) goto bad_line;
    *sp1 = '\0';
    r->method_name = s;
    size_t i;
    for (i = 0; i < NMETHODS; i++)
        if (strcmp(s, METHODS[i].name) == 0) break;
    if (i == NMETHODS) {
        *status = 405;
        *reason = "unknown HTTP method";
        return -1;
    }
    r->method = METHODS[i].method;
    char *target = sp1 + 1;
    char *sp2 = memchr(target, ' ', (size_t)(eol - target));
    if (!sp2 || sp2 == target) goto bad_line;
    *sp2 = '\0';
    if (target[0] != '/' && !(r->method == FT_HTTP_OPTIONS && strcmp(target, "*") == 0))
        goto bad_line;
    size_t tl = (size_t)(sp2 - target), ti = 0;
    while (ti + 8 <= tl && visible8(target + ti))
        ti += 8;
    for (; ti < tl; ti++)
        if ((unsigned char)target[ti] <= ' ' || (unsigned char)target[ti] >= 0x7f) goto bad_line;
    char *ver = sp2 + 1;
    *eol = '\0';
    if (strncmp(ver, "HTTP/1.", 7) != 0 || (ver[7] != '0' && ver[7] != '1') || ver[8] != '\0') {
        if (strncmp(ver, "HTTP/", 5) == 0) {
            *status = 505;
            *reason = "HTTP version not supported";
            return -1;
        }
        goto bad_line;
    }
    r->version_minor = ver[7] - '0';
    char *q = strchr(target, '?');
    if (q) {
        *q = '\0';
        r->query = q + 1;
    }
    r->path = target;

    /* header lines */
    int have_cl = 0, conn_close = 0, conn_keep = 0;
    for (char *line = eol + 2; line < end - 2;) {
        /* the scan let no CR through without its LF: the first CR ends the line */
        char *le = memchr(line, '\r', (size_t)(end - line));
        *le = '\0';
        if (*line == ' ' || *line == '\t') {
            *status = 400;
            *reason = "obsolete header line folding";
            return -1;
        }
        char *colon = strchr(line, ':');
        if (!colon || colon == line) {
            *status = 400;
            *reason = "header line without a name";
            return -1;
        }
        for (char *n = line; n < colon; n++)
            if (!is_tchar((unsigned char)*n)) {
                *status = 400;
                *reason = "bad character in a header name";
                return -1;
            }
        if (r->nheaders >= lim->max_headers) {
            *status = 431;
            *reason = "too many header lines";
            return -1;
        }
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        char *ve = le;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            *--ve = '\0';
        r->headers[r->nheaders].name = line;
        r->headers[r->nheaders].value = v;
        r->nheaders++;
        if (strcasecmp(line, "Content-Length") == 0) {
            uint64_t n = 0;
            if (*v == '\0') goto bad_cl;
            for (char *d = v; *d; d++) {
                if (*d < '0' || *d > '9' || n > (UINT64_MAX - 9) / 10) goto bad_cl;
                n = n * 10 + (uint64_t)(*d - '0');
            }
            if (have_cl && n != r->content_length) goto bad_cl;
            have_cl = 1;
            r->content_length = n;
        } else if (strcasecmp(line, "Transfer-Encoding") == 0) {
            *status = 411;
            *reason = "Transfer-Encoding (chunked) request bodies are not accepted";
            return -1;
        } else if (strcasecmp(line, "Connection") == 0) {
            if (strcasestr(v, "close")) conn_close = 1;
            if (strcasestr(v, "keep-alive")) conn_keep = 1;
        }
        line = le + 2;
    }
    r->keep_alive = conn_close ? 0 : (r->version_minor >= 1 || conn_keep);
    if (r->content_length > lim->max_body) {
        *status = 413;
        *reason = "Content-Length larger than max_body_size";
        return -1;
    }
    return 0;
bad_cl:
    *status = 400;
    *reason = "bad Content-Length";
    return -1;
bad_line:
    *status = 400;
    *reason = "bad HTTP request line";
    return -1;
}

/* What the header scan tells apart, a byte at a time: plain bytes (0: every byte not listed, tab
 * and bytes >= 0x80 included), CR, LF, and the control bytes no header may hold. Eight to a row,
 * which clang-format would not keep. */
enum { HB_PLAIN, HB_CR, HB_LF, HB_BAD };
/* clang-format off */
static const unsigned char HEADER_BYTE[256] = {
    HB_BAD, HB_BAD,   HB_BAD, HB_BAD, HB_BAD, HB_BAD, HB_BAD, HB_BAD, /* 0x00 */
    HB_BAD, HB_PLAIN, HB_LF,  HB_BAD, HB_BAD, HB_CR,  HB_BAD, HB_BAD, /* 0x08: \t \n \r */
    HB_BAD, HB_BAD,   HB_BAD, HB_BAD, HB_BAD, HB_BAD, HB_BAD, HB_BAD, /* 0x10 */
    HB_BAD, HB_BAD,   HB_BAD, HB_BAD, HB_BAD, HB_BAD, HB_BAD, HB_BAD, /* 0x18 */
    [0x7f] = HB_BAD,                                                   /* DEL */
};
/* clang-format on */

/* Looks for the end of the header block from p->scanned on, validating bytes as it goes.
 * Returns the header length (> 0), 0 when not complete yet, -1 on a bad byte. The rest of a run
 * of plain bytes goes eight at a time, then one table look-up a byte: only its first byte can be
 * wrong (after a CR), and it only resets the CRLFCRLF match. */
static long find_header_end(ft_http_parser *p, const ft_iobuf *in, size_t limit)
{
    size_t avail = ft_iobuf_size(in) < limit ? ft_iobuf_size(in) : limit;
    /* resume 3 bytes back so that a CRLFCRLF split across reads is still seen */
    size_t pos = p->scanned >= 3 ? p->scanned - 3 : 0;
    int match = 0;
    unsigned char prev = 0;
    if (pos > 0) ft_iobuf_copy_at(in, pos - 1, &prev, 1);
    unsigned char chunk[1024];
    while (pos < avail) {
        size_t n = avail - pos < sizeof chunk ? avail - pos : sizeof chunk;
        ft_iobuf_copy_at(in, pos, chunk, n);
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = chunk[i];
            unsigned char cls = HEADER_BYTE[ch];
            if (cls == HB_PLAIN) {
                if (prev == '\r') return -1; /* a CR not followed by LF */
                while (i + 9 <= n && plain8(chunk + i + 1))
                    i += 8;
                while (i + 1 < n && HEADER_BYTE[chunk[i + 1]] == HB_PLAIN)
                    i++;
                match = 0;
                prev = chunk[i];
                continue;
            }
            if (cls == HB_BAD) return -1;
            if ((cls == HB_LF) != (prev == '\r')) return -1; /* LF without CR, or CR CR */
            match = ch == "\r\n\r\n"[match] ? match + 1 : ch == '\r';
            prev = ch;
            if (match == 4) return (long)(pos + i + 1);
        }
        pos += n;
    }
    p->scanned = avail;
    return 0;
}

ft_parse_status ft_http_parse(ft_http_parser *p, ft_iobuf *in, const ft_http_limits *lim,
                              ft_http_request *out, int *status, const char **reason)
{
    ft_http_limits l = lim ? *lim : (ft_http_limits){0};
    if (l.max_header_bytes == 0) l.max_header_bytes = FT_HTTP_MAX_HEADER_BYTES;
    if (l.max_headers <= 0 || l.max_headers > FT_HTTP_MAX_HEADERS)
        l.max_headers = FT_HTTP_MAX_HEADERS;
    if (l.max_body == 0) l.max_body = FT_BAIDU_STD_DEFAULT_MAX_BODY;
    *status = 0;
    *reason = NULL;

    if (!p->header_len) {
        long hl = find_header_end(p, in, l.max_header_bytes);
        if (hl < 0) {
            *status = 400;
            *reason = "bad byte in an HTTP header";
            return FT_PARSE_CLOSE;
        }
        if (hl == 0) {
            if (ft_iobuf_size(in) >= l.max_header_bytes) {
                *status = 431;
                *reason = "HTTP header larger than 8 KiB";
                return FT_PARSE_CLOSE;
            }
            return FT_PARSE_NEED_MORE;
        }
        ft_http_request *r = &p->pending;
        ft_http_request_fini(r);
        ft_http_request_init(r);
        r->storage = malloc((size_t)hl + 1);
        if (!r->storage) {
            *status = 503;
            *reason = "out of memory";
            return FT_PARSE_CLOSE;
        }
        ft_iobuf_copy_at(in, 0, r->storage, (size_t)hl);
        r->storage[hl] = '\0';
        if (parse_header(r, (size_t)hl, &l, status, reason) != 0) {
            ft_http_request_fini(r);
            ft_http_request_init(r);
            p->scanned = 0;
            return FT_PARSE_CLOSE;
        }
        p->header_len = (size_t)hl;
        p->continue_sent = 0;
    }
    ft_http_request *r = &p->pending;
    if (ft_iobuf_size(in) - p->header_len < r->content_length) return FT_PARSE_NEED_MORE;

    /* whole request in: hand it over (a buffer is never struct-copied: it may point at its own
     * inline slices) */
    ft_iobuf body;
    ft_iobuf_init(&body);
    ft_iobuf_pop_front(in, p->header_len);
    if (r->content_length > 0 && ft_iobuf_cut(in, &body, (size_t)r->content_length) != 0) {
        /* nothing sensible to keep: the stream is now out of sync */
        *status = 503;
        *reason = "out of memory";
        ft_iobuf_fini(&body);
        ft_http_parser_fini(p);
        ft_http_parser_init(p);
        return FT_PARSE_CLOSE;
    }
    *out = *r;
    ft_iobuf_init(&out->body);
    ft_iobuf_move(&out->body, &body);
    ft_iobuf_fini(&body);
    /* the pending request's storage now belongs to out */
    ft_iobuf_fini(&r->body);
    ft_http_request_init(r);
    p->header_len = 0;
    p->scanned = 0;
    p->continue_sent = 0;
    return FT_PARSE_OK;
}

const char *ft_http_status_text(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

int ft_http_pack_response(ft_iobuf *out, int status, const char *content_type, int keep_alive,
                          const char *extra_headers, const ft_iobuf *body, int head_only)
{
    char head[1024];
    size_t blen = body ? ft_iobuf_size(body) : 0;
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\n%s%s%sContent-Length: %zu\r\n%s", status,
                     ft_http_status_text(status), content_type ? "Content-Type: " : "",
                     content_type ? content_type : "", content_type ? "\r\n" : "", blen,
                     keep_alive ? "" : "Connection: close\r\n");
    if (n < 0 || (size_t)n >= sizeof head) return FTRPC_ENOMEM;
    int rc = ft_iobuf_append(out, head, (size_t)n);
    if (rc == 0 && extra_headers) rc = ft_iobuf_append(out, extra_headers, strlen(extra_headers));
    if (rc == 0) rc = ft_iobuf_append(out, "\r\n", 2);
    if (rc == 0 && body && blen > 0 && !head_only) rc = ft_iobuf_append_buf(out, body);
    return rc;
}
