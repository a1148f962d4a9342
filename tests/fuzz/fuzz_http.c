/* libFuzzer target for the HTTP request parser (protocol/http.h).
 *
 * Each input is parsed twice: once with all its bytes in the buffer, once arriving in a few pieces
 * cut where the input says (pieces.h) with a parse after each piece (the incremental path a slow
 * peer drives, resuming the header scan where it stopped). Both must give the same sequence of
 * requests and the same final verdict. Every request must satisfy the parser's promises: a path
 * starting with '/' (or "*"), a body of exactly Content-Length bytes within max_body, at most
 * FT_HTTP_MAX_HEADERS headers; a CLOSE always carries a reason and a 4xx/5xx status and consumes
 * nothing. max_body is 64 KiB so that a large declared body is refused cheaply. The sniffer must
 * agree with a direct check.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pieces.h"
#include "protocol/http.h"

#define FUZZ_MAX_BODY (64u * 1024)
#define MAX_RECORDS 64

typedef struct record {
    ft_parse_status status;
    int http_status;
    const char *reason;
    ft_http_method method;
    char path[64];
    size_t body;
    int keep_alive, nheaders;
} record;

typedef struct run {
    record r[MAX_RECORDS];
    size_t n;
} run;

static void check(int ok)
{
    if (!ok) abort();
}

/* Parses what `in` holds until it needs more or must close, appending records. Returns 1 when the
 * stream ended in CLOSE, or when MAX_RECORDS requests were read: every request starts from a
 * fresh parser state, so more of them in one input add work, not behaviour, and both passes stop
 * there (an input of a hundred pipelined requests cost a millisecond). */
static int drain(ft_http_parser *p, ft_iobuf *in, run *out)
{
    static const ft_http_limits lim = {.max_body = FUZZ_MAX_BODY};
    while (out->n < MAX_RECORDS) {
        ft_http_request req;
        int status = 0;
        const char *reason = NULL;
        size_t before = ft_iobuf_size(in);
        ft_parse_status st = ft_http_parse(p, in, &lim, &req, &status, &reason);
        if (st == FT_PARSE_NEED_MORE) {
            check(ft_iobuf_size(in) == before);
            return 0;
        }
        record *r = &out->r[out->n++];
        memset(r, 0, sizeof *r);
        r->status = st;
        if (st == FT_PARSE_CLOSE) {
            check(reason != NULL && status >= 400 && status <= 599);
            check(ft_iobuf_size(in) == before);
            r->http_status = status;
            r->reason = reason;
            return 1;
        }
        check(st == FT_PARSE_OK);
        check(req.path[0] == '/' || strcmp(req.path, "*") == 0);
        check(ft_iobuf_size(&req.body) == req.content_length);
        check(req.content_length <= FUZZ_MAX_BODY);
        check(req.nheaders <= FT_HTTP_MAX_HEADERS);
        check(before - ft_iobuf_size(in) > req.content_length); /* a header was consumed too */
        check(req.version_minor == 0 || req.version_minor == 1);
        /* the first and the last header are found by name (the last one past all the others;
         * every one of them was 64 x 64 case-insensitive compares a request) */
        if (req.nheaders > 0) {
            check(ft_http_request_header(&req, req.headers[0].name) == req.headers[0].value);
            check(ft_http_request_header(&req, req.headers[req.nheaders - 1].name) != NULL);
        }
        r->method = req.method;
        strncpy(r->path, req.path, sizeof r->path - 1);
        r->body = ft_iobuf_size(&req.body);
        r->keep_alive = req.keep_alive;
        r->nheaders = req.nheaders;
        ft_http_request_fini(&req);
    }
    return 1;
}

static int expected_sniff(const uint8_t *data, size_t size)
{
    static const char *const tokens[] = {"GET ", "POST ", "HEAD ", "PUT ", "DELETE ", "OPTIONS "};
    if (size == 0) return -1;
    int maybe = 0;
    for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++) {
        size_t tl = strlen(tokens[i]);
        size_t n = size < tl ? size : tl;
        if (memcmp(data, tokens[i], n) != 0) continue;
        if (size >= tl) return 1;
        maybe = 1;
    }
    return maybe ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static run a, b;
    ft_iobuf in;
    ft_http_parser p;

    ft_iobuf_init(&in);
    if (size > 0) check(ft_iobuf_append(&in, data, size) == 0);
    check(ft_http_sniff(&in) == expected_sniff(data, size));
    ft_http_parser_init(&p);
    a.n = 0;
    int stopped_a = drain(&p, &in, &a);
    ft_http_parser_fini(&p);
    ft_iobuf_fini(&in);

    /* the same bytes arriving in pieces (pieces.h), each its own block of user memory, with a
     * parse after each */
    size_t ends[FUZZ_MAX_PIECES];
    size_t npieces = fuzz_pieces(data, size, ends);
    ft_iobuf_init(&in);
    ft_http_parser_init(&p);
    b.n = 0;
    int stopped_b = 0;
    for (size_t k = 0, off = 0; k < npieces && !stopped_b; off = ends[k++]) {
        check(ft_iobuf_append_user(&in, data + off, ends[k] - off, NULL, NULL) == 0);
        stopped_b = drain(&p, &in, &b);
    }
    ft_http_parser_fini(&p);
    ft_iobuf_fini(&in);

    check(stopped_a == stopped_b && a.n == b.n);
    for (size_t i = 0; i < a.n; i++) {
        check(a.r[i].status == b.r[i].status && a.r[i].http_status == b.r[i].http_status);
        check(a.r[i].reason == b.r[i].reason || strcmp(a.r[i].reason, b.r[i].reason) == 0);
        check(a.r[i].method == b.r[i].method && strcmp(a.r[i].path, b.r[i].path) == 0);
        check(a.r[i].body == b.r[i].body && a.r[i].keep_alive == b.r[i].keep_alive);
        check(a.r[i].nheaders == b.r[i].nheaders);
    }
    return 0;
}
