/* protocol/http: the bounded request parser, table-driven: what is accepted (and what is taken
 * from it), what is refused with which status, incremental arrival, and the sniffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "protocol/http.h"

static ft_parse_status parse_all(const char *bytes, size_t len, uint64_t max_body,
                                 ft_http_request *req, int *status, const char **reason)
{
    ft_iobuf in;
    ft_http_parser p;
    ft_iobuf_init(&in);
    ft_http_parser_init(&p);
    ft_iobuf_append(&in, bytes, len);
    ft_http_limits lim = {.max_body = max_body};
    ft_parse_status st = ft_http_parse(&p, &in, &lim, req, status, reason);
    ft_http_parser_fini(&p);
    ft_iobuf_fini(&in);
    return st;
}

static void refused_requests_get_the_documented_status(void **state)
{
    (void)state;
    static const struct {
        const char *req;
        int status;
        const char *reason_part;
    } cases[] = {
        {"GET / HTTP/2.0\r\n\r\n", 505, "version"},
        {"BREW / HTTP/1.1\r\n\r\n", 405, "method"},
        {"GET nopath HTTP/1.1\r\n\r\n", 400, "request line"},
        {"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400, "folding"},
        {"GET / HTTP/1.1\nHost: x\n\n", 400, "bad byte"},
        {"GET / HTTP/1.1\r\n: v\r\n\r\n", 400, "without a name"},
        {"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400, "Content-Length"},
        {"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400,
         "Content-Length"},
        {"POST /a.B/C HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 413, "max_body_size"},
        {"POST /a.B/C HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411, "chunked"},
        /* request smuggling shapes: no second reading of the body's length gets a chance */
        {"POST /a.B/C HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         411, "chunked"},
        {"POST /a.B/C HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 411, "chunked"},
        {"POST /a.B/C HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\nabc", 411, "chunked"},
        {"POST /a.B/C HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc", 400, "Content-Length"},
        {"POST /a.B/C HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc", 400, "Content-Length"},
        {"POST /a.B/C HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 400,
         "Content-Length"},
        {"POST /a.B/C HTTP/1.1\r\nContent-Length : 3\r\n\r\nabc", 400, "header name"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ft_http_request req;
        int status = 0;
        const char *reason = NULL;
        ft_parse_status st =
            parse_all(cases[i].req, strlen(cases[i].req), 100, &req, &status, &reason);
        if (st != FT_PARSE_CLOSE || status != cases[i].status)
            print_error("case %zu: st=%d status=%d reason=%s\n", i, st, status,
                        reason ? reason : "-");
        assert_int_equal(st, FT_PARSE_CLOSE);
        assert_int_equal(status, cases[i].status);
        assert_non_null(strstr(reason, cases[i].reason_part));
    }
}

static void header_over_8k_and_too_many_lines_are_431(void **state)
{
    (void)state;
    static char big[10000];
    int n = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nX: ");
    memset(big + n, 'a', sizeof big - (size_t)n);
    ft_http_request req;
    int status;
    const char *reason;
    assert_int_equal(parse_all(big, sizeof big, 0, &req, &status, &reason), FT_PARSE_CLOSE);
    assert_int_equal(status, 431);
    char many[4096];
    n = snprintf(many, sizeof many, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 65; i++)
        n += snprintf(many + n, sizeof many - (size_t)n, "H%d: v\r\n", i);
    n += snprintf(many + n, sizeof many - (size_t)n, "\r\n");
    assert_int_equal(parse_all(many, (size_t)n, 0, &req, &status, &reason), FT_PARSE_CLOSE);
    assert_int_equal(status, 431);
}

static void request_fields_are_parsed(void **state)
{
    (void)state;
    const char *r =
        "POST /example.EchoService/Echo?format=json&x HTTP/1.0\r\n"
        "Connection: keep-alive\r\nX-Timeout-Ms:  25 \r\nContent-Length: 5\r\n\r\nhello";
    ft_http_request req;
    int status;
    const char *reason;
    assert_int_equal(parse_all(r, strlen(r), 0, &req, &status, &reason), FT_PARSE_OK);
    assert_int_equal(req.method, FT_HTTP_POST);
    assert_string_equal(req.path, "/example.EchoService/Echo");
    assert_string_equal(req.query, "format=json&x");
    assert_int_equal(req.version_minor, 0);
    assert_int_equal(req.keep_alive, 1);
    assert_string_equal(ft_http_request_header(&req, "x-timeout-ms"), "25");
    assert_int_equal(ft_iobuf_size(&req.body), 5);
    char v[16];
    assert_true(ft_http_query_param(req.query, "format", v, sizeof v));
    assert_string_equal(v, "json");
    assert_true(ft_http_query_param(req.query, "x", v, sizeof v));
    assert_string_equal(v, "");
    assert_false(ft_http_query_param(req.query, "form", v, sizeof v));
    ft_http_request_fini(&req);
}

/* A request dripped one byte at a time parses exactly once, at its last byte, and the next one
 * (pipelined behind it) stays in the buffer. */
static void dripped_bytes_parse_once_complete(void **state)
{
    (void)state;
    const char *r = "POST /a.B/C HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"
                    "GET /health HTTP/1.1\r\n\r\n";
    size_t first = strlen(r) - strlen("GET /health HTTP/1.1\r\n\r\n");
    ft_iobuf in;
    ft_http_parser p;
    ft_iobuf_init(&in);
    ft_http_parser_init(&p);
    int oks = 0, continues = 0;
    for (size_t i = 0; i < strlen(r); i++) {
        ft_iobuf_append(&in, r + i, 1);
        ft_http_request req;
        int status;
        const char *reason;
        ft_parse_status st = ft_http_parse(&p, &in, NULL, &req, &status, &reason);
        continues += ft_http_parser_take_continue(&p);
        if (st == FT_PARSE_OK) {
            oks++;
            assert_true(i == first - 1 || i == strlen(r) - 1);
            ft_http_request_fini(&req);
        } else {
            assert_int_equal(st, FT_PARSE_NEED_MORE);
        }
    }
    assert_int_equal(oks, 2);
    assert_int_equal(continues, 1);
    assert_int_equal(ft_iobuf_size(&in), 0);
    ft_http_parser_fini(&p);
    ft_iobuf_fini(&in);
}

/* A header of 6 KB dripped one byte per block of its own, so one slice per byte (a transport that
 * hands over every small record in a fresh block): it parses at its last byte, whole. Each resumed
 * scan reads only what arrived since, so the 6,000 parses cost about as much as one; they used to
 * walk every earlier slice, 36 million steps (docs/reliability.md, Fuzzers). */
static void header_dripped_in_one_byte_blocks_parses_once_whole(void **state)
{
    (void)state;
    static char r[6000];
    const char *head = "GET /x HTTP/1.1\r\nX-Pad: ", *tail = "\r\n\r\n";
    size_t hl = strlen(head), tl = strlen(tail);
    memcpy(r, head, hl);
    memset(r + hl, 'a', sizeof r - hl - tl);
    memcpy(r + sizeof r - tl, tail, tl);
    ft_iobuf in;
    ft_http_parser p;
    ft_iobuf_init(&in);
    ft_http_parser_init(&p);
    for (size_t i = 0; i < sizeof r; i++) {
        assert_int_equal(ft_iobuf_append_user(&in, r + i, 1, NULL, NULL), 0);
        ft_http_request req;
        int status;
        const char *reason;
        ft_parse_status st = ft_http_parse(&p, &in, NULL, &req, &status, &reason);
        if (i + 1 < sizeof r) {
            assert_int_equal(st, FT_PARSE_NEED_MORE);
            continue;
        }
        assert_int_equal(st, FT_PARSE_OK);
        assert_string_equal(req.path, "/x");
        assert_int_equal(strlen(ft_http_request_header(&req, "X-Pad")), sizeof r - hl - tl);
        ft_http_request_fini(&req);
    }
    assert_int_equal(ft_iobuf_size(&in), 0);
    ft_http_parser_fini(&p);
    ft_iobuf_fini(&in);
}

static void sniff_tells_methods_from_other_bytes(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        int want;
    } cases[] = {{"GET ", 1}, {"POST /", 1}, {"OPTIONS *", 1}, {"G", -1},       {"P", -1},
                 {"PO", -1},  {"GETX", 0},   {"PRPC", 0},      {"\x16\x03", 0}, {"get ", 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ft_iobuf in;
        ft_iobuf_init(&in);
        ft_iobuf_append(&in, cases[i].bytes, strlen(cases[i].bytes));
        assert_int_equal(ft_http_sniff(&in), cases[i].want);
        ft_iobuf_fini(&in);
    }
}

static void response_has_status_length_and_close(void **state)
{
    (void)state;
    ft_iobuf out, body;
    ft_iobuf_init(&out);
    ft_iobuf_init(&body);
    ft_iobuf_append(&body, "OK", 2);
    assert_int_equal(ft_http_pack_response(&out, 503, "text/plain", 0, "X-A: b\r\n", &body, 0), 0);
    char buf[256] = {0};
    ft_iobuf_copy_at(&out, 0, buf, sizeof buf - 1);
    assert_string_equal(buf, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                             "Content-Length: 2\r\nConnection: close\r\nX-A: b\r\n\r\nOK");
    ft_iobuf_fini(&out);
    ft_iobuf_fini(&body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(refused_requests_get_the_documented_status),
        cmocka_unit_test(header_over_8k_and_too_many_lines_are_431),
        cmocka_unit_test(request_fields_are_parsed),
        cmocka_unit_test(dripped_bytes_parse_once_complete),
        cmocka_unit_test(header_dripped_in_one_byte_blocks_parses_once_whole),
        cmocka_unit_test(sniff_tells_methods_from_other_bytes),
        cmocka_unit_test(response_has_status_length_and_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
