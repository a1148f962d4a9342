/* baidu_std codec: golden bytes written by hand from the field table of
 * docs/protocol.md, round trips, and every way a frame can be bad.
 *
 * Protobuf tags in the comments: tag byte = field_number << 3 | wire_type, wire type 0 = varint,
 * 2 = length-delimited. Frames for the bad cases are built with protobuf-c so that one field at
 * a time can be made wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "base/crc32c.h"
#include "ftrpc/common.h"
#include "protocol/baidu_std.h"
#include "rpc_meta.pb-c.h"

/* ---- helpers ---- */

static void assert_buf_equals(const ft_iobuf *b, const uint8_t *expect, size_t n)
{
    assert_int_equal(ft_iobuf_size(b), n);
    uint8_t *got = malloc(n ? n : 1);
    assert_non_null(got);
    assert_int_equal(ft_iobuf_copy_at(b, 0, got, n), n);
    assert_memory_equal(got, expect, n);
    free(got);
}
#define ASSERT_BYTES(buf, arr) assert_buf_equals((buf), (arr), sizeof(arr))

static void assert_buf_is_string(const ft_iobuf *b, const char *s)
{
    assert_buf_equals(b, (const uint8_t *)s, strlen(s));
}

static void buf_from(ft_iobuf *b, const void *data, size_t n)
{
    ft_iobuf_init(b);
    assert_int_equal(ft_iobuf_append(b, data, n), 0);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Appends "PRPC", body_size, meta_size as given (so they can lie), then meta and rest. */
static void append_raw_frame(ft_iobuf *b, const char *magic, uint32_t body_size, uint32_t meta_size,
                             const void *meta, size_t meta_len, const void *rest, size_t rest_len)
{
    uint8_t h[12];
    memcpy(h, magic, 4);
    put_be32(h + 4, body_size);
    put_be32(h + 8, meta_size);
    assert_int_equal(ft_iobuf_append(b, h, sizeof h), 0);
    if (meta_len) assert_int_equal(ft_iobuf_append(b, meta, meta_len), 0);
    if (rest_len) assert_int_equal(ft_iobuf_append(b, rest, rest_len), 0);
}

/* Appends a well-framed frame whose meta is `m` packed by protobuf-c. */
static void append_meta_frame(ft_iobuf *b, const Brpc__Policy__RpcMeta *m, const void *rest,
                              size_t rest_len)
{
    size_t n = brpc__policy__rpc_meta__get_packed_size(m);
    uint8_t *meta = malloc(n ? n : 1);
    assert_non_null(meta);
    brpc__policy__rpc_meta__pack(m, meta);
    append_raw_frame(b, "PRPC", (uint32_t)(n + rest_len), (uint32_t)n, meta, n, rest, rest_len);
    free(meta);
}

static ft_parse_status parse(ft_iobuf *in, ft_rpc_frame *f, const char **reason)
{
    *reason = NULL;
    return ft_baidu_std_parse(in, FT_BAIDU_STD_DEFAULT_MAX_BODY, f, reason);
}

/* Parses one frame expected to be BAD_FRAME with the given reason; checks it was consumed. */
static void expect_bad_frame(ft_iobuf *in, int64_t cid, const char *reason_expected)
{
    ft_rpc_frame f;
    const char *reason;
    assert_int_equal(parse(in, &f, &reason), FT_PARSE_BAD_FRAME);
    assert_string_equal(reason, reason_expected);
    assert_int_equal(f.correlation_id, cid);
    assert_int_equal(ft_iobuf_size(&f.payload), 0);
    assert_int_equal(ft_iobuf_size(&f.attachment), 0);
    ft_rpc_frame_fini(&f);
}

static void expect_close(ft_iobuf *in, const char *reason_expected)
{
    ft_rpc_frame f;
    const char *reason;
    size_t before = ft_iobuf_size(in);
    assert_int_equal(parse(in, &f, &reason), FT_PARSE_CLOSE);
    assert_non_null(reason);
    assert_string_equal(reason, reason_expected);
    assert_int_equal(ft_iobuf_size(in), before);
    ft_rpc_frame_fini(&f);
}

/* A frame that must parse OK after a bad one, proving the stream stayed in sync. */
static void append_ok_response(ft_iobuf *b, int64_t cid)
{
    assert_int_equal(ft_baidu_std_pack_response(b, cid, 0, NULL, NULL, NULL), 0);
}

static void expect_ok_response(ft_iobuf *in, int64_t cid)
{
    ft_rpc_frame f;
    const char *reason;
    assert_int_equal(parse(in, &f, &reason), FT_PARSE_OK);
    assert_false(f.is_request);
    assert_int_equal(f.correlation_id, cid);
    ft_rpc_frame_fini(&f);
}

/* ---- golden bytes ---- */

/* example.EchoService/Echo, correlation_id 1, timeout_ms 500, payload "hi" */
static const uint8_t echo_request[] = {
    'P',  'R',  'P',  'C',  /* magic */
    0x00, 0x00, 0x00, 0x24, /* body_size 36 = 34 + 2 */
    0x00, 0x00, 0x00, 0x22, /* meta_size 34 */
    0x0a, 0x1e,             /* RpcMeta.request (1), 30 */
    0x0a, 0x13,             /*   service_name (1), 19 */
    'e',  'x',  'a',  'm',  'p', 'l', 'e',
    '.',  'E',  'c',  'h',  'o', 'S', /*   "example.EchoService" */
    'e',  'r',  'v',  'i',  'c', 'e', /*                     */
    0x12, 0x04, 'E',  'c',  'h', 'o', /*   method_name (2) "Echo" */
    0x40, 0xf4, 0x03,                 /*   timeout_ms (8) 500 */
    0x20, 0x01,                       /* correlation_id (4) 1 */
    'h',  'i',                        /* payload */
};

/* success response to correlation_id 1 with payload "hi" */
static const uint8_t echo_response[] = {
    'P',  'R',  'P',  'C',  /* magic */
    0x00, 0x00, 0x00, 0x08, /* body_size 8 = 6 + 2 */
    0x00, 0x00, 0x00, 0x06, /* meta_size 6 */
    0x12, 0x02,             /* RpcMeta.response (2), 2 bytes */
    0x08, 0x00,             /*   error_code (1) 0: always sent, as brpc does */
    0x20, 0x01,             /* correlation_id (4) 1 */
    'h',  'i',              /* payload */
};

/* error response to correlation_id 7: ENOMETHOD 1002 with text "no", no payload */
static const uint8_t error_response[] = {
    'P',  'R',  'P',  'C',  /* magic */
    0x00, 0x00, 0x00, 0x0b, /* body_size 11 */
    0x00, 0x00, 0x00, 0x0b, /* meta_size 11 */
    0x12, 0x07,             /* RpcMeta.response (2), 7 bytes */
    0x08, 0xea, 0x07,       /*   error_code (1) 1002 = 0x3ea: varint 0xea 0x07 */
    0x12, 0x02, 'n',  'o',  /*   error_text (2) "no" */
    0x20, 0x07,             /* correlation_id (4) 7 */
};

/* a.S/M, correlation_id 2, timeout 0 (sent as 1), payload "x", attachment "yz" */
static const uint8_t attachment_request[] = {
    'P',  'R',  'P',  'C',       /* magic */
    0x00, 0x00, 0x00, 0x13,      /* body_size 19 = 16 + 1 + 2 */
    0x00, 0x00, 0x00, 0x10,      /* meta_size 16 */
    0x0a, 0x0a,                  /* RpcMeta.request (1), 10 bytes */
    0x0a, 0x03, 'a',  '.',  'S', /*   service_name (1) "a.S" */
    0x12, 0x01, 'M',             /*   method_name (2) "M" */
    0x40, 0x01,                  /*   timeout_ms (8) 1 */
    0x20, 0x02,                  /* correlation_id (4) 2 */
    0x28, 0x02,                  /* attachment_size (5) 2 */
    'x',                         /* payload */
    'y',  'z',                   /* attachment */
};

/* a.S/M, correlation_id 3, timeout 9, log_id 300, authentication_data "tok", no payload */
static const uint8_t auth_request[] = {
    'P',  'R',  'P',  'C',       /* magic */
    0x00, 0x00, 0x00, 0x16,      /* body_size 22 */
    0x00, 0x00, 0x00, 0x16,      /* meta_size 22 = 2 + 13 + 2 + 5 */
    0x0a, 0x0d,                  /* RpcMeta.request (1), 13 bytes */
    0x0a, 0x03, 'a',  '.',  'S', /*   service_name (1) "a.S" */
    0x12, 0x01, 'M',             /*   method_name (2) "M" */
    0x18, 0xac, 0x02,            /*   log_id (3) 300 = 0x12c: varint 0xac 0x02 */
    0x40, 0x09,                  /*   timeout_ms (8) 9 */
    0x20, 0x03,                  /* correlation_id (4) 3 */
    0x3a, 0x03, 't',  'o',  'k', /* authentication_data (7) "tok" */
};

static void request_packs_to_hand_written_bytes(void **state)
{
    (void)state;
    ft_iobuf out, payload;
    ft_iobuf_init(&out);
    buf_from(&payload, "hi", 2);
    ft_request_header h = {
        .service = "example.EchoService", .method = "Echo", .correlation_id = 1, .timeout_ms = 500};
    assert_int_equal(ft_baidu_std_pack_request(&out, &h, &payload, NULL), 0);
    ASSERT_BYTES(&out, echo_request);
    ft_iobuf_fini(&out);
    ft_iobuf_fini(&payload);
}

/* ftrpc_retry_after_ms (1000): packed only on a pushback, read back by the parser; a frame without
 * it parses as 0 */
static void pushback_hint_travels_in_response_meta(void **state)
{
    (void)state;
    static const int32_t HINTS[] = {25, -1, 0};
    for (size_t i = 0; i < sizeof HINTS / sizeof HINTS[0]; i++) {
        ft_iobuf out;
        ft_iobuf_init(&out);
        assert_int_equal(ft_baidu_std_pack_pushback(&out, 9, 2004, "limit", HINTS[i]), 0);
        ft_rpc_frame f;
        const char *reason = NULL;
        assert_int_equal(parse(&out, &f, &reason), FT_PARSE_OK);
        assert_false(f.is_request);
        assert_int_equal(f.correlation_id, 9);
        assert_int_equal(f.error_code, 2004);
        assert_string_equal(f.error_text, "limit");
        assert_int_equal(f.retry_after_ms, HINTS[i]);
        ft_rpc_frame_fini(&f);
        ft_iobuf_fini(&out);
    }
}

static void success_response_packs_error_code_zero(void **state)
{
    (void)state;
    ft_iobuf out, payload;
    ft_iobuf_init(&out);
    buf_from(&payload, "hi", 2);
    assert_int_equal(ft_baidu_std_pack_response(&out, 1, 0, NULL, &payload, NULL), 0);
    ASSERT_BYTES(&out, echo_response);
    ft_iobuf_fini(&out);
    ft_iobuf_fini(&payload);
}

static void error_response_packs_code_and_text(void **state)
{
    (void)state;
    ft_iobuf out;
    ft_iobuf_init(&out);
    assert_int_equal(ft_baidu_std_pack_response(&out, 7, 1002, "no", NULL, NULL), 0);
    ASSERT_BYTES(&out, error_response);
    ft_iobuf_fini(&out);
}

static void request_with_attachment_sends_attachment_size_and_timeout_one(void **state)
{
    (void)state;
    ft_iobuf out, payload, att;
    ft_iobuf_init(&out);
    buf_from(&payload, "x", 1);
    buf_from(&att, "yz", 2);
    ft_request_header h = {.service = "a.S", .method = "M", .correlation_id = 2, .timeout_ms = 0};
    assert_int_equal(ft_baidu_std_pack_request(&out, &h, &payload, &att), 0);
    ASSERT_BYTES(&out, attachment_request);
    ft_iobuf_fini(&out);
    ft_iobuf_fini(&payload);
    ft_iobuf_fini(&att);
}

static void request_with_log_id_and_auth_sends_fields_3_and_7(void **state)
{
    (void)state;
    ft_iobuf out;
    ft_iobuf_init(&out);
    ft_request_header h = {.service = "a.S",
                           .method = "M",
                           .correlation_id = 3,
                           .timeout_ms = 9,
                           .log_id = 300,
                           .auth_data = (const uint8_t *)"tok",
                           .auth_len = 3};
    assert_int_equal(ft_baidu_std_pack_request(&out, &h, NULL, NULL), 0);
    ASSERT_BYTES(&out, auth_request);
    ft_iobuf_fini(&out);
}

static void negative_timeout_is_sent_as_one(void **state)
{
    (void)state;
    ft_iobuf out;
    ft_iobuf_init(&out);
    ft_request_header h = {.service = "a.S", .method = "M", .correlation_id = 2, .timeout_ms = -5};
    assert_int_equal(ft_baidu_std_pack_request(&out, &h, NULL, NULL), 0);
    ft_rpc_frame f;
    const char *reason;
    assert_int_equal(parse(&out, &f, &reason), FT_PARSE_OK);
    assert_int_equal(f.timeout_ms, 1);
    ft_rpc_frame_fini(&f);
    ft_iobuf_fini(&out);
}

/* Parses the one frame in `wire` (freed) into *f after checking whether its bytes hold field 1001
 * set to true (key 8008 = c8 3e, value 01). */
static void parse_checking_field_1001(ft_iobuf *wire, int want_1001, ft_rpc_frame *f)
{
    const uint8_t *p = ft_iobuf_flatten(wire);
    size_t n = ft_iobuf_size(wire);
    int found = 0;
    for (size_t i = 0; i + 2 < n; i++)
        found |= p[i] == 0xc8 && p[i + 1] == 0x3e && p[i + 2] == 0x01;
    assert_int_equal(found, want_1001);
    const char *reason;
    assert_int_equal(parse(wire, f, &reason), FT_PARSE_OK);
    ft_iobuf_fini(wire);
}

/* Tied requests (docs/protocol.md): ftrpc_tied = 1001 in RpcRequestMeta goes out only when asked
 * and reads back, by both meta decoders; the "started" notice is a response meta with
 * ftrpc_started = 1001, the correlation id, no error code and no body. */
static void tied_request_and_started_notice_carry_field_1001(void **state)
{
    (void)state;
    for (int fast = 0; fast < 2; fast++) {
        ft_baidu_std_fast_meta = fast;
        ft_iobuf wire;
        ft_rpc_frame f;
        for (int tied = 0; tied < 2; tied++) {
            ft_iobuf_init(&wire);
            ft_request_header h = {
                .service = "a.S", .method = "M", .correlation_id = 7, .tied = tied};
            assert_int_equal(ft_baidu_std_pack_request(&wire, &h, NULL, NULL), 0);
            parse_checking_field_1001(&wire, tied, &f);
            assert_true(f.is_request && f.correlation_id == 7 && !f.started);
            assert_int_equal(f.tied, tied);
            ft_rpc_frame_fini(&f);
        }
        ft_iobuf_init(&wire);
        assert_int_equal(ft_baidu_std_pack_started(&wire, 12345), 0);
        parse_checking_field_1001(&wire, 1, &f);
        assert_true(!f.is_request && f.started && f.correlation_id == 12345 && f.error_code == 0);
        assert_int_equal(ft_iobuf_size(&f.payload), 0);
        ft_rpc_frame_fini(&f);
        ft_iobuf_init(&wire); /* an ordinary answer is no notice */
        append_ok_response(&wire, 5);
        parse_checking_field_1001(&wire, 0, &f);
        assert_int_equal(f.started, 0);
        ft_rpc_frame_fini(&f);
    }
    ft_baidu_std_fast_meta = 1;
}

static void golden_request_parses_to_its_fields(void **state)
{
    (void)state;
    ft_iobuf in;
    buf_from(&in, echo_request, sizeof echo_request);
    ft_rpc_frame f;
    const char *reason;
    assert_int_equal(parse(&in, &f, &reason), FT_PARSE_OK);
    assert_int_equal(ft_iobuf_size(&in), 0);
    assert_true(f.is_request);
    assert_int_equal(f.correlation_id, 1);
    assert_string_equal(f.service, "example.EchoService");
    assert_string_equal(f.method, "Echo");
    assert_int_equal(f.timeout_ms, 500);
    assert_int_equal(f.log_id, 0);
    assert_null(f.auth_data);
    assert_int_equal(f.compress_type, FT_COMPRESS_NONE);
    assert_buf_is_string(&f.payload, "hi");
    assert_int_equal(ft_iobuf_size(&f.attachment), 0);
    ft_rpc_frame_fini(&f);

    buf_from(&in, auth_request, sizeof auth_request);
    assert_int_equal(parse(&in, &f, &reason), FT_PARSE_OK);
    assert_int_equal(f.log_id, 300);
    assert_int_equal(f.timeout_ms, 9);
    assert_int_equal(f.auth_len, 3);
    assert_memory_equal(f.auth_data, "tok", 3);
    ft_rpc_frame_fini(&f);

    buf_from(&in, attachment_request, sizeof attachment_request);
    assert_int_equal(parse(&in, &f, &reason), FT_PARSE_OK);
    assert_buf_is_string(&f.payload, "x");
    assert_buf_is_string(&f.attachment, "yz");
    ft_rpc_frame_fini(&f);
    ft_iobuf_fini(&in);
}

static void golden_responses_parse_to_their_fields(void **state)
{
    (void)state;
    ft_iobuf in;
    ft_iobuf_init(&in);
    assert_int_equal(ft_iobuf_append(&in, echo_response, sizeof echo_response), 0);
    assert_int_equal(ft_iobuf_append(&in, error_response, sizeof error_response), 0);
    ft_rpc_frame f;
    const char *reason;
    assert_int_equal(parse(&in, &f, &reason), FT_PARSE_OK);
    assert_false(f.is_request);
    assert_int_equal(f.correlation_id, 1);
    assert_int_equal(f.error_code, 0);
    assert_string_equal(f.error_text, "");
    assert_null(f.service);
    assert_buf_is_string(&f.payload, "hi");
    ft_rpc_frame_fini(&f);
    assert_int_equal(parse(&in, &f, &reason), FT_PARSE_OK);
    assert_int_equal(f.correlation_id, 7);
    assert_int_equal(f.error_code, 1002);
    assert_string_equal(f.error_text, "no");
    assert_int_equal(ft_iobuf_size(&f.payload), 0);
    ft_rpc_frame_fini(&f);
    assert_int_equal(parse(&in, &f, &reason), FT_PARSE_NEED_MORE);
    ft_rpc_frame_fini(&f);
    ft_iobuf_fini(&in);
}

static void meta_with_only_correlation_id_is_a_successful_response(void **state)
{
    (void)state;
    /* brpc: "a response meta holding only field 4 is a success" */
    static const uint8_t frame[] = {'P', 'R', 'P', 'C', 0, 0, 0, 3, 0, 0, 0, 2, 0x20, 0x05, 'z'};
    ft_iobuf in;
    buf_from(&in, frame, sizeof frame);
    ft_rpc_frame f;
    const char *reason;
    assert_int_equal(parse(&in, &f, &reason), FT_PARSE_OK);
    assert_false(f.is_request);
    assert_int_equal(f.correlation_id, 5);
    assert_int_equal(f.error_code, 0);
    assert_string_equal(f.error_text, "");
    assert_buf_is_string(&f.payload, "z");
    ft_rpc_frame_fini(&f);
    ft_iobuf_fini(&in);
}

static void empty_meta_is_a_response_without_correlation_id(void **state)
{
    (void)state;
    static const uint8_t frame[] = {'P', 'R', 'P', 'C', 0, 0, 0, 0, 0, 0, 0, 0};
    ft_iobuf in;
    buf_from(&in, frame, sizeof frame);
    ft_rpc_frame f;
    const char *reason;
    assert_int_equal(parse(&in, &f, &reason), FT_PARSE_OK);
    assert_false(f.is_request);
    assert_int_equal(f.correlation_id, -1);
    ft_rpc_frame_fini(&f);
    ft_iobuf_fini(&in);
}

/* ---- round trips ---- */

static void large_request_round_trips_sharing_payload_blocks(void **state)
{
    (void)state;
    enum { PAYLOAD = 3 * FT_IOBUF_BLOCK_SIZE + 123, ATT = FT_IOBUF_BLOCK_SIZE + 5 };
    uint8_t *p = malloc(PAYLOAD), *a = malloc(ATT);
    assert_non_null(p);
    assert_non_null(a);
    for (size_t i = 0; i < PAYLOAD; i++)
        p[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < ATT; i++)
        a[i] = (uint8_t)(i * 13 + 1);
    ft_iobuf payload, att, wire;
    buf_from(&payload, p, PAYLOAD);
    buf_from(&att, a, ATT);
    ft_iobuf_init(&wire);
    ft_request_header h = {.service = "pkg.Svc",
                           .method = "Method",
                           .correlation_id = -9, /* negative ids are 10-byte varints */
                           .timeout_ms = 123456,
                           .log_id = -1};
    assert_int_equal(ft_baidu_std_pack_request(&wire, &h, &payload, &att), 0);
    ft_rpc_frame f;
    const char *reason;
    assert_int_equal(parse(&wire, &f, &reason), FT_PARSE_OK);
    assert_int_equal(ft_iobuf_size(&wire), 0);
    assert_true(f.is_request);
    assert_int_equal(f.correlation_id, -9);
    assert_string_equal(f.service, "pkg.Svc");
    assert_string_equal(f.method, "Method");
    assert_int_equal(f.timeout_ms, 123456);
    assert_int_equal(f.log_id, -1);
    assert_buf_equals(&f.payload, p, PAYLOAD);
    assert_buf_equals(&f.attachment, a, ATT);
    /* zero copy end to end: the parsed payload points into the caller's original blocks */
    assert_ptr_equal(f.payload.slices[f.payload.start].block, payload.slices[payload.start].block);
    assert_ptr_equal(f.attachment.slices[f.attachment.end - 1].block,
                     att.slices[att.end - 1].block);
    ft_rpc_frame_fini(&f);
    ft_iobuf_fini(&wire);
    ft_iobuf_fini(&payload);
    ft_iobuf_fini(&att);
    free(p);
    free(a);
}

static void meta_larger_than_stack_round_trips(void **state)
{
    (void)state;
    /* 10 KiB of auth data: packed through the iobuf sink, unpacked with arena spill */
    enum { AUTH = 10000 };
    uint8_t *auth = malloc(AUTH);
    assert_non_null(auth);
    for (size_t i = 0; i < AUTH; i++)
        auth[i] = (uint8_t)(i ^ (i >> 8));
    char service[600];
    memset(service, 's', sizeof service - 1);
    service[sizeof service - 1] = '\0';
    ft_iobuf wire;
    ft_iobuf_init(&wire);
    ft_request_header h = {.service = service,
                           .method = "M",
                           .correlation_id = 77,
                           .timeout_ms = 5,
                           .auth_data = auth,
                           .auth_len = AUTH};
    assert_int_equal(ft_baidu_std_pack_request(&wire, &h, NULL, NULL), 0);
    ft_rpc_frame f;
    const char *reason;
    assert_int_equal(parse(&wire, &f, &reason), FT_PARSE_OK);
    assert_int_equal(f.correlation_id, 77);
    assert_string_equal(f.service, service);
    assert_int_equal(f.auth_len, AUTH);
    assert_memory_equal(f.auth_data, auth, AUTH);
    ft_rpc_frame_fini(&f);
    ft_iobuf_fini(&wire);
    free(auth);
}

/* The hand-written encoder (ft_baidu_std_fast_meta = 1) against protobuf-c's bytes (= 0). */
static void assert_same_bytes_both_encoders(const ft_request_header *h, int64_t cid, int32_t code,
                                            const char *text, size_t psize, size_t asize)
{
    ft_iobuf a, b, payload, att;
    ft_iobuf_init(&a);
    ft_iobuf_init(&b);
    ft_iobuf_init(&payload);
    ft_iobuf_init(&att);
    for (size_t i = 0; i < psize; i++)
        assert_int_equal(ft_iobuf_append(&payload, "p", 1), 0);
    for (size_t i = 0; i < asize; i++)
        assert_int_equal(ft_iobuf_append(&att, "a", 1), 0);
    for (int fast = 1; fast >= 0; fast--) {
        ft_baidu_std_fast_meta = fast;
        ft_iobuf *out = fast ? &a : &b;
        if (h)
            assert_int_equal(ft_baidu_std_pack_request(out, h, &payload, &att), 0);
        else
            assert_int_equal(ft_baidu_std_pack_response(out, cid, code, text, &payload, &att), 0);
    }
    ft_baidu_std_fast_meta = 1;
    assert_int_equal(ft_iobuf_size(&a), ft_iobuf_size(&b));
    uint8_t *pa = malloc(ft_iobuf_size(&a)), *pb = malloc(ft_iobuf_size(&b));
    assert_non_null(pa);
    assert_non_null(pb);
    ft_iobuf_copy_at(&a, 0, pa, ft_iobuf_size(&a));
    ft_iobuf_copy_at(&b, 0, pb, ft_iobuf_size(&b));
    assert_memory_equal(pa, pb, ft_iobuf_size(&a));
    /* the stack encoder writes the same frame whenever header + meta and the bodies fit */
    uint8_t small[FT_BAIDU_STD_SMALL_FRAME];
    size_t n = h ? ft_baidu_std_encode_request(small, h, &payload, &att)
                 : ft_baidu_std_encode_response(small, cid, code, text, &payload, &att);
    size_t head = ft_iobuf_size(&a) - psize - asize;
    if (head <= 256 && psize + asize <= 256) {
        assert_int_equal(n, ft_iobuf_size(&a));
        assert_memory_equal(small, pa, n);
    } else {
        assert_int_equal(n, 0);
    }
    if (!h && code == 0 && !text && asize == 0) {
        /* a success from the caller's memory (a typed reply packed on the stack): the same frame */
        uint8_t raw[1024], frame[FT_BAIDU_STD_SMALL_FRAME];
        ft_iobuf_copy_at(&payload, 0, raw, psize < sizeof raw ? psize : sizeof raw);
        size_t m =
            psize <= sizeof raw ? ft_baidu_std_encode_reply_bytes(frame, cid, raw, psize) : 0;
        assert_int_equal(m, n);
        if (m) assert_memory_equal(frame, pa, m);
    }
    free(pa);
    free(pb);
    ft_iobuf_fini(&a);
    ft_iobuf_fini(&b);
    ft_iobuf_fini(&payload);
    ft_iobuf_fini(&att);
}

static void hand_written_encoder_writes_protobuf_c_bytes(void **state)
{
    (void)state;
    static const uint8_t tok[] = {'t', 0, 'k'};
    char long_name[300];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    const ft_request_header reqs[] = {
        {.service = "example.EchoService",
         .method = "Echo",
         .correlation_id = 1,
         .timeout_ms = 500},
        {.service = "a", .method = "b", .correlation_id = INT64_MAX, .timeout_ms = INT32_MAX},
        {.service = "a", .method = "b", .correlation_id = -1, .timeout_ms = 0, .log_id = -7},
        {.service = "", .method = "", .correlation_id = 0, .timeout_ms = 1, .log_id = INT64_MIN},
        {.service = "s",
         .method = "m",
         .correlation_id = 128,
         .timeout_ms = 16384,
         .auth_data = tok,
         .auth_len = sizeof tok},
        {.service = "s", .method = "m", .correlation_id = 3, .auth_data = tok, .auth_len = 0},
        {.service = long_name, .method = "m", .correlation_id = 3}, /* too long: protobuf-c */
    };
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        assert_same_bytes_both_encoders(&reqs[i], 0, 0, NULL, 0, 0);
        assert_same_bytes_both_encoders(&reqs[i], 0, 0, NULL, 300, 129);
    }
    const struct {
        int64_t cid;
        int32_t code;
        const char *text;
    } resps[] = {{1, 0, NULL}, {INT64_MAX, 0, NULL},        {7, 1002, "no"},
                 {-5, -1, ""}, {INT64_MIN, INT32_MIN, "x"}, {1 << 20, 2001, long_name}};
    for (size_t i = 0; i < sizeof resps / sizeof resps[0]; i++) {
        assert_same_bytes_both_encoders(NULL, resps[i].cid, resps[i].code, resps[i].text, 0, 0);
        assert_same_bytes_both_encoders(NULL, resps[i].cid, resps[i].code, resps[i].text, 20, 1);
        /* the sizes about the small frame's bound: the last is left to the pack functions */
        static const size_t PSIZES[] = {16, 256, 257};
        for (size_t k = 0; k < sizeof PSIZES / sizeof PSIZES[0]; k++)
            assert_same_bytes_both_encoders(NULL, resps[i].cid, resps[i].code, resps[i].text,
                                            PSIZES[k], 0);
    }
}

/* Metas the hand-written decoder does not read itself still parse, as protobuf-c reads them. */
static void metas_beyond_the_common_fields_parse_as_protobuf_c_reads_them(void **state)
{
    (void)state;
    ft_iobuf in;
    ft_iobuf_init(&in);
    ft_rpc_frame f;
    const char *reason;

    /* a request with trace ids (brpc's tracing) and user fields */
    Brpc__Policy__RpcRequestMeta rq = BRPC__POLICY__RPC_REQUEST_META__INIT;
    rq.service_name = "a.S";
    rq.method_name = "M";
    rq.has_trace_id = 1;
    rq.trace_id = 99;
    rq.has_timeout_ms = 1;
    rq.timeout_ms = 12;
    Brpc__Policy__UserFieldsEntry uf = BRPC__POLICY__USER_FIELDS_ENTRY__INIT;
    uf.key = "k";
    uf.value = "v";
    Brpc__Policy__UserFieldsEntry *ufs[] = {&uf};
    Brpc__Policy__RpcMeta m = BRPC__POLICY__RPC_META__INIT;
    m.request = &rq;
    m.has_correlation_id = 1;
    m.correlation_id = 41;
    m.n_user_fields = 1;
    m.user_fields = ufs;
    append_meta_frame(&in, &m, "x", 1);
    assert_int_equal(parse(&in, &f, &reason), FT_PARSE_OK);
    assert_true(f.is_request);
    assert_int_equal(f.correlation_id, 41);
    assert_string_equal(f.service, "a.S");
    assert_string_equal(f.method, "M");
    assert_int_equal(f.timeout_ms, 12);
    assert_buf_is_string(&f.payload, "x");
    ft_rpc_frame_fini(&f);

    /* correlation_id twice: the last one counts */
    static const uint8_t twice[] = {0x12, 0x02, 0x08, 0x00, 0x20, 0x01, 0x20, 0x05};
    append_raw_frame(&in, "PRPC", sizeof twice, sizeof twice, twice, sizeof twice, NULL, 0);
    assert_int_equal(parse(&in, &f, &reason), FT_PARSE_OK);
    assert_false(f.is_request);
    assert_int_equal(f.correlation_id, 5);
    ft_rpc_frame_fini(&f);

    /* a request without its required method_name does not parse */
    static const uint8_t no_method[] = {0x0a, 0x03, 0x0a, 0x01, 's', 0x20, 0x01};
    append_raw_frame(&in, "PRPC", sizeof no_method, sizeof no_method, no_method, sizeof no_method,
                     NULL, 0);
    expect_close(&in, "RpcMeta does not parse");
    ft_iobuf_fini(&in);
}

static void error_response_round_trips(void **state)
{
    (void)state;
    ft_iobuf wire, att;
    ft_iobuf_init(&wire);
    buf_from(&att, "A", 1);
    assert_int_equal(ft_baidu_std_pack_response(&wire, INT64_MAX, -3, "business", NULL, &att), 0);
    ft_rpc_frame f;
    const char *reason;
    assert_int_equal(parse(&wire, &f, &reason), FT_PARSE_OK);
    assert_false(f.is_request);
    assert_int_equal(f.correlation_id, INT64_MAX);
    assert_int_equal(f.error_code, -3);
    assert_string_equal(f.error_text, "business");
    assert_int_equal(ft_iobuf_size(&f.payload), 0);
    assert_buf_is_string(&f.attachment, "A");
    ft_rpc_frame_fini(&f);
    ft_iobuf_fini(&wire);
    ft_iobuf_fini(&att);
}

static void pack_rejects_missing_names(void **state)
{
    (void)state;
    ft_iobuf out;
    ft_iobuf_init(&out);
    ft_request_header h = {.service = NULL, .method = "M"};
    assert_int_equal(ft_baidu_std_pack_request(&out, &h, NULL, NULL), FTRPC_EINVAL);
    h.service = "S";
    h.method = NULL;
    assert_int_equal(ft_baidu_std_pack_request(&out, &h, NULL, NULL), FTRPC_EINVAL);
    assert_int_equal(ft_baidu_std_pack_request(&out, NULL, NULL, NULL), FTRPC_EINVAL);
    assert_int_equal(ft_iobuf_size(&out), 0);
    ft_iobuf_fini(&out);
}

static void frames_outlive_later_parses(void **state)
{
    (void)state;
    /* more frames alive at once than the per-thread arena cache holds */
    enum { N = 80 };
    ft_iobuf wire;
    ft_iobuf_init(&wire);
    char name[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(name[i], sizeof name[i], "svc.S%d", i);
        ft_request_header h = {.service = name[i], .method = "M", .correlation_id = i};
        assert_int_equal(ft_baidu_std_pack_request(&wire, &h, NULL, NULL), 0);
    }
    ft_rpc_frame f[N];
    const char *reason;
    for (int i = 0; i < N; i++)
        assert_int_equal(parse(&wire, &f[i], &reason), FT_PARSE_OK);
    for (int i = 0; i < N; i++) {
        assert_string_equal(f[i].service, name[i]);
        assert_int_equal(f[i].correlation_id, i);
        ft_rpc_frame_fini(&f[i]);
    }
    ft_iobuf_fini(&wire);
}

/* ---- framing: NEED_MORE, CLOSE ---- */

static void frame_split_into_one_byte_appends_needs_more_until_complete(void **state)
{
    (void)state;
    /* twice: bytes merged into one block by ft_iobuf_append, and one slice per byte (user
     * memory), which forces the header and meta to be gathered across slices */
    for (int separate_slices = 0; separate_slices < 2; separate_slices++) {
        ft_iobuf in;
        ft_iobuf_init(&in);
        ft_rpc_frame f;
        const char *reason;
        for (size_t i = 0; i < sizeof echo_request; i++) {
            assert_int_equal(parse(&in, &f, &reason), FT_PARSE_NEED_MORE);
            assert_int_equal(ft_iobuf_size(&in), i);
            ft_rpc_frame_fini(&f);
            if (separate_slices)
                assert_int_equal(ft_iobuf_append_user(&in, echo_request + i, 1, NULL, NULL), 0);
            else
                assert_int_equal(ft_iobuf_append(&in, echo_request + i, 1), 0);
        }
        assert_int_equal(parse(&in, &f, &reason), FT_PARSE_OK);
        assert_string_equal(f.service, "example.EchoService");
        assert_buf_is_string(&f.payload, "hi");
        ft_rpc_frame_fini(&f);
        assert_int_equal(ft_iobuf_size(&in), 0);
        ft_iobuf_fini(&in);
    }
}

static void many_frames_in_one_buffer_parse_in_order(void **state)
{
    (void)state;
    ft_iobuf in, payload;
    ft_iobuf_init(&in);
    for (int i = 0; i < 50; i++) {
        char text[16];
        snprintf(text, sizeof text, "p%d", i);
        buf_from(&payload, text, strlen(text));
        if (i % 2) {
            assert_int_equal(ft_baidu_std_pack_response(&in, i, 0, NULL, &payload, NULL), 0);
        } else {
            ft_request_header h = {.service = "a.S", .method = "M", .correlation_id = i};
            assert_int_equal(ft_baidu_std_pack_request(&in, &h, &payload, NULL), 0);
        }
        ft_iobuf_fini(&payload);
    }
    /* and half of one more */
    assert_int_equal(ft_iobuf_append(&in, echo_request, 20), 0);
    ft_rpc_frame f;
    const char *reason;
    for (int i = 0; i < 50; i++) {
        char text[16];
        snprintf(text, sizeof text, "p%d", i);
        assert_int_equal(parse(&in, &f, &reason), FT_PARSE_OK);
        assert_int_equal(f.correlation_id, i);
        assert_int_equal(f.is_request, i % 2 == 0);
        assert_buf_is_string(&f.payload, text);
        ft_rpc_frame_fini(&f);
    }
    assert_int_equal(parse(&in, &f, &reason), FT_PARSE_NEED_MORE);
    assert_int_equal(ft_iobuf_size(&in), 20);
    ft_iobuf_fini(&in);
}

static void incomplete_body_needs_more_and_consumes_nothing(void **state)
{
    (void)state;
    ft_iobuf in;
    buf_from(&in, echo_request, sizeof echo_request - 1);
    ft_rpc_frame f;
    const char *reason;
    assert_int_equal(parse(&in, &f, &reason), FT_PARSE_NEED_MORE);
    assert_int_equal(ft_iobuf_size(&in), sizeof echo_request - 1);
    ft_rpc_frame_fini(&f);
    ft_iobuf_fini(&in);
}

/* Every way the framing itself is broken: CLOSE, with the reason the server will log. */
static void broken_framing_closes_with_its_reason(void **state)
{
    (void)state;
    /* a request meta without the required method_name */
    static const char no_method[] = "\x0a\x03\x0a\x01S\x20\x01";
    static const struct {
        const char *raw; /* sent as is when set */
        const char *magic;
        uint32_t body_size, meta_size;
        const char *meta; /* body bytes actually sent */
        size_t meta_len;
        const char *reason;
    } cases[] = {
        {"GET / HTTP/1.1\r\n", NULL, 0, 0, NULL, 0, "bad magic: not a baidu_std (PRPC) frame"},
        {"PX", NULL, 0, 0, NULL, 0, "bad magic: not a baidu_std (PRPC) frame"},
        {NULL, "STRM", 2, 0, "ab", 2, "streaming frame (STRM) not supported"},
        {NULL, "PRPC", 2, 3, "\x20\x01", 2, "meta_size larger than body"},
        /* the default bound is brpc's 64 MiB; the body need not have arrived */
        {NULL, "PRPC", FT_BAIDU_STD_DEFAULT_MAX_BODY + 1, 0, NULL, 0,
         "body_size larger than max_body"},
        /* field 4 varint announced, then the end: a truncated varint */
        {NULL, "PRPC", 2, 2, "\x20\xff", 2, "RpcMeta does not parse"},
        {NULL, "PRPC", 7, 7, no_method, 7, "RpcMeta does not parse"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ft_iobuf in;
        ft_iobuf_init(&in);
        if (cases[i].raw)
            assert_int_equal(ft_iobuf_append(&in, cases[i].raw, strlen(cases[i].raw)), 0);
        else
            append_raw_frame(&in, cases[i].magic, cases[i].body_size, cases[i].meta_size,
                             cases[i].meta, cases[i].meta_len, NULL, 0);
        expect_close(&in, cases[i].reason);
        ft_iobuf_fini(&in);
    }
}

static void partial_magic_needs_more(void **state)
{
    (void)state;
    ft_iobuf in;
    buf_from(&in, "PRP", 3);
    ft_rpc_frame f;
    const char *reason;
    assert_int_equal(parse(&in, &f, &reason), FT_PARSE_NEED_MORE);
    ft_iobuf_fini(&in);
    buf_from(&in, "ST", 2);
    assert_int_equal(parse(&in, &f, &reason), FT_PARSE_NEED_MORE);
    ft_iobuf_fini(&in);
}

static void body_larger_than_max_body_closes(void **state)
{
    (void)state;
    static const uint8_t body[64] = {0};
    ft_iobuf in;
    ft_iobuf_init(&in);
    append_raw_frame(&in, "PRPC", 65, 0, NULL, 0, NULL, 0);
    ft_rpc_frame f;
    const char *reason = NULL;
    assert_int_equal(ft_baidu_std_parse(&in, 64, &f, &reason), FT_PARSE_CLOSE);
    assert_string_equal(reason, "body_size larger than max_body");
    ft_iobuf_fini(&in);
    /* exactly max_body is fine */
    ft_iobuf_init(&in);
    append_raw_frame(&in, "PRPC", 64, 0, NULL, 0, body, sizeof body);
    assert_int_equal(ft_baidu_std_parse(&in, 64, &f, &reason), FT_PARSE_OK);
    assert_int_equal(ft_iobuf_size(&f.payload), 64);
    ft_rpc_frame_fini(&f);
    ft_iobuf_fini(&in);
}

/* ---- BAD_FRAME: consumed, correlation id known, stream in sync ---- */

static void bad_attachment_size_is_a_bad_frame(void **state)
{
    (void)state;
    const int32_t sizes[] = {-1, 4, INT32_MAX}; /* the body after the meta holds 3 bytes */
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        ft_iobuf in;
        ft_iobuf_init(&in);
        Brpc__Policy__RpcMeta m = BRPC__POLICY__RPC_META__INIT;
        m.has_correlation_id = 1;
        m.correlation_id = 40 + (int64_t)i;
        m.has_attachment_size = 1;
        m.attachment_size = sizes[i];
        append_meta_frame(&in, &m, "abc", 3);
        append_ok_response(&in, 99);
        expect_bad_frame(&in, 40 + (int64_t)i, "attachment_size negative or larger than the body");
        expect_ok_response(&in, 99);
        ft_iobuf_fini(&in);
    }
}

static void unsupported_compress_type_is_a_bad_frame(void **state)
{
    (void)state;
    const int32_t types[] = {1 /* snappy: not linked */, 4 /* lz4 */, -1, 1000};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        ft_iobuf in;
        ft_iobuf_init(&in);
        Brpc__Policy__RpcMeta m = BRPC__POLICY__RPC_META__INIT;
        m.has_correlation_id = 1;
        m.correlation_id = 11;
        m.has_compress_type = 1;
        m.compress_type = types[i];
        append_meta_frame(&in, &m, "abc", 3);
        append_ok_response(&in, 12);
        expect_bad_frame(&in, 11, "unsupported compress_type");
        expect_ok_response(&in, 12);
        ft_iobuf_fini(&in);
    }
}

/* Compresses with zlib framing (gzip = 0) or gzip framing (gzip = 1). */
static size_t deflate_bytes(const void *src, size_t n, int gzip, uint8_t *dst, size_t cap)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, gzip ? 15 + 16 : 15, 8, Z_DEFAULT_STRATEGY),
                     Z_OK);
    zs.next_in = (Bytef *)src;
    zs.avail_in = (uInt)n;
    zs.next_out = dst;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    size_t out = cap - zs.avail_out;
    deflateEnd(&zs);
    return out;
}

static void append_compressed_frame(ft_iobuf *in, int32_t type, int64_t cid, const void *z,
                                    size_t zlen, const char *att)
{
    Brpc__Policy__RpcMeta m = BRPC__POLICY__RPC_META__INIT;
    m.has_correlation_id = 1;
    m.correlation_id = cid;
    m.has_compress_type = 1;
    m.compress_type = type;
    size_t alen = att ? strlen(att) : 0;
    if (alen) {
        m.has_attachment_size = 1;
        m.attachment_size = (int32_t)alen;
    }
    uint8_t *rest = malloc(zlen + alen + 1);
    assert_non_null(rest);
    if (zlen) memcpy(rest, z, zlen);
    if (alen) memcpy(rest + zlen, att, alen);
    append_meta_frame(in, &m, rest, zlen + alen);
    free(rest);
}

static void gzip_and_zlib_payloads_are_decompressed(void **state)
{
    (void)state;
    enum { N = 40000 }; /* several output blocks */
    char *text = malloc(N + 1);
    assert_non_null(text);
    for (size_t i = 0; i < N; i++)
        text[i] = (char)('a' + (i * i) % 26);
    text[N] = '\0';
    uint8_t z[2 * N];
    for (int gzip = 0; gzip < 2; gzip++) {
        size_t zlen = deflate_bytes(text, N, gzip, z, sizeof z);
        ft_iobuf in;
        ft_iobuf_init(&in);
        int32_t type = gzip ? FT_COMPRESS_GZIP : FT_COMPRESS_ZLIB;
        append_compressed_frame(&in, type, 5, z, zlen, "raw");
        ft_rpc_frame f;
        const char *reason;
        assert_int_equal(parse(&in, &f, &reason), FT_PARSE_OK);
        assert_int_equal(f.compress_type, type);
        assert_buf_is_string(&f.payload, text);
        assert_buf_is_string(&f.attachment, "raw"); /* never compressed */
        assert_null(f.payload.write_block);
        ft_rpc_frame_fini(&f);
        ft_iobuf_fini(&in);
    }
    free(text);
}

static void empty_compressed_payload_is_an_empty_payload(void **state)
{
    (void)state;
    ft_iobuf in;
    ft_iobuf_init(&in);
    append_compressed_frame(&in, FT_COMPRESS_GZIP, 5, NULL, 0, NULL);
    ft_rpc_frame f;
    const char *reason;
    assert_int_equal(parse(&in, &f, &reason), FT_PARSE_OK);
    assert_int_equal(ft_iobuf_size(&f.payload), 0);
    ft_rpc_frame_fini(&f);
    ft_iobuf_fini(&in);
}

static void corrupt_truncated_or_padded_compressed_payload_is_a_bad_frame(void **state)
{
    (void)state;
    uint8_t z[256];
    size_t zlen = deflate_bytes("hello hello hello", 17, 1, z, sizeof z);
    ft_iobuf in;
    ft_iobuf_init(&in);
    /* gzip bytes announced as zlib: wrong header */
    append_compressed_frame(&in, FT_COMPRESS_ZLIB, 1, z, zlen, NULL);
    /* cut short */
    append_compressed_frame(&in, FT_COMPRESS_GZIP, 2, z, zlen - 5, NULL);
    /* followed by junk */
    uint8_t padded[300];
    memcpy(padded, z, zlen);
    memcpy(padded + zlen, "JUNK", 4);
    append_compressed_frame(&in, FT_COMPRESS_GZIP, 3, padded, zlen + 4, NULL);
    append_ok_response(&in, 4);
    expect_bad_frame(&in, 1, "compressed payload does not decompress");
    expect_bad_frame(&in, 2, "compressed payload is truncated");
    expect_bad_frame(&in, 3, "trailing bytes after the compressed payload");
    expect_ok_response(&in, 4);
    ft_iobuf_fini(&in);
}

static void decompressed_payload_over_max_body_is_a_bad_frame(void **state)
{
    (void)state;
    enum { N = 100000 };
    uint8_t *zeros = calloc(1, N);
    assert_non_null(zeros);
    uint8_t z[1024];
    size_t zlen = deflate_bytes(zeros, N, 0, z, sizeof z); /* ~100 bytes */
    ft_iobuf in;
    ft_iobuf_init(&in);
    append_compressed_frame(&in, FT_COMPRESS_ZLIB, 8, z, zlen, NULL);
    ft_rpc_frame f;
    const char *reason = NULL;
    assert_int_equal(ft_baidu_std_parse(&in, 50000, &f, &reason), FT_PARSE_BAD_FRAME);
    assert_string_equal(reason, "decompressed payload larger than max_body");
    assert_int_equal(f.correlation_id, 8);
    assert_int_equal(ft_iobuf_size(&f.payload), 0);
    assert_int_equal(ft_iobuf_size(&in), 0);
    ft_rpc_frame_fini(&f);
    /* the same frame under a limit that fits decompresses */
    append_compressed_frame(&in, FT_COMPRESS_ZLIB, 8, z, zlen, NULL);
    assert_int_equal(ft_baidu_std_parse(&in, N, &f, &reason), FT_PARSE_OK);
    assert_int_equal(ft_iobuf_size(&f.payload), N);
    ft_rpc_frame_fini(&f);
    ft_iobuf_fini(&in);
    free(zeros);
}

/* A frame with checksum_type 1 over "payload" (+ "att" when with_att); `flip` spoils it. */
static void append_checksummed_frame(ft_iobuf *in, int64_t cid, int with_att, int flip)
{
    uint32_t crc = ft_crc32c("payload", 7);
    if (with_att) crc = ft_crc32c_extend(crc, "att", 3);
    uint32_t masked = ft_crc32c_mask(crc) ^ (flip ? 1u : 0u);
    uint8_t value[4];
    put_be32(value, masked);
    Brpc__Policy__RpcMeta m = BRPC__POLICY__RPC_META__INIT;
    m.has_correlation_id = 1;
    m.correlation_id = cid;
    m.has_attachment_size = 1;
    m.attachment_size = 3;
    m.has_checksum_type = 1;
    m.checksum_type = 1;
    m.has_checksum_value = 1;
    m.checksum_value.data = value;
    m.checksum_value.len = 4;
    if (with_att) {
        m.has_checksum_with_attachment = 1;
        m.checksum_with_attachment = 1;
    }
    append_meta_frame(in, &m, "payloadatt", 10);
}

static void crc32c_checksum_is_verified(void **state)
{
    (void)state;
    ft_iobuf in;
    ft_iobuf_init(&in);
    append_checksummed_frame(&in, 1, 0, 0);
    append_checksummed_frame(&in, 2, 1, 0);
    append_checksummed_frame(&in, 3, 0, 1);
    append_checksummed_frame(&in, 4, 1, 1);
    ft_rpc_frame f;
    const char *reason;
    for (int cid = 1; cid <= 2; cid++) {
        assert_int_equal(parse(&in, &f, &reason), FT_PARSE_OK);
        assert_int_equal(f.correlation_id, cid);
        assert_buf_is_string(&f.payload, "payload");
        assert_buf_is_string(&f.attachment, "att");
        ft_rpc_frame_fini(&f);
    }
    expect_bad_frame(&in, 3, "checksum mismatch");
    expect_bad_frame(&in, 4, "checksum mismatch");
    assert_int_equal(ft_iobuf_size(&in), 0);
    ft_iobuf_fini(&in);
}

static void checksum_over_payload_only_ignores_attachment_bytes(void **state)
{
    (void)state;
    /* checksum_with_attachment absent: a checksum that covered the attachment must not match */
    uint32_t crc = ft_crc32c_extend(ft_crc32c("payload", 7), "att", 3);
    uint8_t value[4];
    put_be32(value, ft_crc32c_mask(crc));
    Brpc__Policy__RpcMeta m = BRPC__POLICY__RPC_META__INIT;
    m.has_correlation_id = 1;
    m.correlation_id = 6;
    m.has_attachment_size = 1;
    m.attachment_size = 3;
    m.has_checksum_type = 1;
    m.checksum_type = 1;
    m.has_checksum_value = 1;
    m.checksum_value.data = value;
    m.checksum_value.len = 4;
    ft_iobuf in;
    ft_iobuf_init(&in);
    append_meta_frame(&in, &m, "payloadatt", 10);
    expect_bad_frame(&in, 6, "checksum mismatch");
    ft_iobuf_fini(&in);
}

static void unknown_checksum_type_or_bad_value_length_is_a_bad_frame(void **state)
{
    (void)state;
    uint8_t value[5] = {1, 2, 3, 4, 5};
    ft_iobuf in;
    ft_iobuf_init(&in);
    Brpc__Policy__RpcMeta m = BRPC__POLICY__RPC_META__INIT;
    m.has_correlation_id = 1;
    m.correlation_id = 21;
    m.has_checksum_type = 1;
    m.checksum_type = 2;
    m.has_checksum_value = 1;
    m.checksum_value.data = value;
    m.checksum_value.len = 4;
    append_meta_frame(&in, &m, "p", 1);
    m.correlation_id = 22;
    m.checksum_type = 1;
    m.checksum_value.len = 5;
    append_meta_frame(&in, &m, "p", 1);
    m.correlation_id = 23;
    m.has_checksum_value = 0;
    append_meta_frame(&in, &m, "p", 1);
    append_ok_response(&in, 24);
    expect_bad_frame(&in, 21, "unsupported checksum_type");
    expect_bad_frame(&in, 22, "checksum_value is not 4 bytes");
    expect_bad_frame(&in, 23, "checksum_value is not 4 bytes");
    expect_ok_response(&in, 24);
    ft_iobuf_fini(&in);
}

/* ---- sniffing ---- */

static void sniff_tells_prpc_from_others_and_waits_for_four_bytes(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        int expect;
    } cases[] = {
        {"", -1}, {"P", -1},   {"PRP", -1}, {"PRPC", 1}, {"PRPC\0\0", 1},
        {"G", 0}, {"GET ", 0}, {"STRM", 0}, {"PRPD", 0}, {"\x16\x03\x01", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ft_iobuf in;
        buf_from(&in, cases[i].bytes, strlen(cases[i].bytes) + (i == 4 ? 2 : 0));
        assert_int_equal(ft_baidu_std_sniff(&in), cases[i].expect);
        ft_iobuf_fini(&in);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(request_packs_to_hand_written_bytes),
        cmocka_unit_test(success_response_packs_error_code_zero),
        cmocka_unit_test(pushback_hint_travels_in_response_meta),
        cmocka_unit_test(error_response_packs_code_and_text),
        cmocka_unit_test(request_with_attachment_sends_attachment_size_and_timeout_one),
        cmocka_unit_test(request_with_log_id_and_auth_sends_fields_3_and_7),
        cmocka_unit_test(tied_request_and_started_notice_carry_field_1001),
        cmocka_unit_test(negative_timeout_is_sent_as_one),
        cmocka_unit_test(golden_request_parses_to_its_fields),
        cmocka_unit_test(golden_responses_parse_to_their_fields),
        cmocka_unit_test(meta_with_only_correlation_id_is_a_successful_response),
        cmocka_unit_test(empty_meta_is_a_response_without_correlation_id),
        cmocka_unit_test(large_request_round_trips_sharing_payload_blocks),
        cmocka_unit_test(meta_larger_than_stack_round_trips),
        cmocka_unit_test(hand_written_encoder_writes_protobuf_c_bytes),
        cmocka_unit_test(metas_beyond_the_common_fields_parse_as_protobuf_c_reads_them),
        cmocka_unit_test(error_response_round_trips),
        cmocka_unit_test(pack_rejects_missing_names),
        cmocka_unit_test(frames_outlive_later_parses),
        cmocka_unit_test(frame_split_into_one_byte_appends_needs_more_until_complete),
        cmocka_unit_test(many_frames_in_one_buffer_parse_in_order),
        cmocka_unit_test(incomplete_body_needs_more_and_consumes_nothing),
        cmocka_unit_test(broken_framing_closes_with_its_reason),
        cmocka_unit_test(partial_magic_needs_more),
        cmocka_unit_test(body_larger_than_max_body_closes),
        cmocka_unit_test(bad_attachment_size_is_a_bad_frame),
        cmocka_unit_test(unsupported_compress_type_is_a_bad_frame),
        cmocka_unit_test(gzip_and_zlib_payloads_are_decompressed),
        cmocka_unit_test(empty_compressed_payload_is_an_empty_payload),
        cmocka_unit_test(corrupt_truncated_or_padded_compressed_payload_is_a_bad_frame),
        cmocka_unit_test(decompressed_payload_over_max_body_is_a_bad_frame),
        cmocka_unit_test(crc32c_checksum_is_verified),
        cmocka_unit_test(checksum_over_payload_only_ignores_attachment_bytes),
        cmocka_unit_test(unknown_checksum_type_or_bad_value_length_is_a_bad_frame),
        cmocka_unit_test(sniff_tells_prpc_from_others_and_waits_for_four_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
