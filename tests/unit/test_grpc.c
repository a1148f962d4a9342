/* gRPC's wire pieces (src/protocol/grpc.c): the HTTP/2 preface sniff, grpc-timeout, the status
 * table both ways, one message cut from a body (gzip, streaming and bad sizes refused), the
 * grpc-message encoding and the flood token bucket on a manual clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <zlib.h>

#include "ftrpc/common.h"
#include "protocol/grpc.h"

static void preface_is_sniffed_byte_by_byte(void **state)
{
    (void)state;
    ft_iobuf b;
    ft_iobuf_init(&b);
    assert_int_equal(ft_h2_sniff(&b), -1);
    for (size_t i = 0; i < FT_H2_PREFACE_LEN; i++) {
        ft_iobuf_append(&b, &FT_H2_PREFACE[i], 1);
        assert_int_equal(ft_h2_sniff(&b), i + 1 < FT_H2_PREFACE_LEN ? -1 : 1);
    }
    ft_iobuf_clear(&b);
    ft_iobuf_append(&b, "PRI * HTTP/1.1\r\n", 16);
    assert_int_equal(ft_h2_sniff(&b), 0);
    ft_iobuf_clear(&b);
    ft_iobuf_append(&b, "PRPC", 4);
    assert_int_equal(ft_h2_sniff(&b), 0);
    ft_iobuf_fini(&b);
}

static void timeouts_parse_in_every_unit(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        int64_t ms;
    } CASES[] = {
        {"1H", 0, 3600000},
        {"2M", 0, 120000},
        {"3S", 0, 3000},
        {"250m", 0, 250},
        {"1500u", 0, 2},
        {"1n", 0, 1},
        {"99999999H", 0, INT32_MAX},
        {"", -1, 0},
        {"m", -1, 0},
        {"12", -1, 0},
        {"1x", -1, 0},
        {"123456789m", -1, 0},
        {"-1m", -1, 0},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        int64_t ms = -7;
        int rc = ft_grpc_parse_timeout(CASES[i].text, strlen(CASES[i].text), &ms);
        assert_int_equal(rc, CASES[i].rc);
        if (rc == 0) assert_int_equal(ms, CASES[i].ms);
    }
    char out[12];
    assert_int_equal(ft_grpc_format_timeout(1500, out), 5);
    assert_string_equal(out, "1500m");
    ft_grpc_format_timeout(INT64_MAX / 2, out);
    assert_string_equal(out, "99999999S");
}

static void statuses_map_both_ways(void **state)
{
    (void)state;
    assert_int_equal(ft_grpc_status_of(0), 0);
    assert_int_equal(ft_grpc_status_of(-FTRPC_ENOMETHOD), 12);
    assert_int_equal(ft_grpc_status_of(-FTRPC_ENOSERVICE), 12);
    assert_int_equal(ft_grpc_status_of(-FTRPC_ERPCTIMEDOUT), 4);
    assert_int_equal(ft_grpc_status_of(-FTRPC_ELIMIT), 8);
    assert_int_equal(ft_grpc_status_of(-FTRPC_ERPCAUTH), 16);
    assert_int_equal(ft_grpc_status_of(-FTRPC_ELOGOFF), 14);
    assert_int_equal(ft_grpc_status_of(3005), 5);
    assert_int_equal(ft_grpc_status_of(4242), 2);
    assert_int_equal(ft_grpc_status_of(3016), 2); /* UNAUTHENTICATED is ERPCAUTH's */
    assert_int_equal(ft_grpc_status_of(-7), 2);
    /* every status an ftrpc server sends reads back as the code it came from */
    static const int32_t ROUND[] = {0,
                                    -FTRPC_ENOMETHOD,
                                    -FTRPC_EREQUEST,
                                    -FTRPC_ERPCAUTH,
                                    -FTRPC_ERPCTIMEDOUT,
                                    -FTRPC_EINTERNAL,
                                    -FTRPC_ELOGOFF,
                                    -FTRPC_ELIMIT,
                                    3005,
                                    3015};
    for (size_t i = 0; i < sizeof ROUND / sizeof ROUND[0]; i++)
        assert_int_equal(ft_grpc_wire_code_of(ft_grpc_status_of(ROUND[i])), ROUND[i]);
    assert_int_equal(ft_grpc_wire_code_of(2), -FTRPC_EINTERNAL);
    assert_int_equal(ft_grpc_wire_code_of(99), -FTRPC_EINTERNAL);
}

static void put_prefix(ft_iobuf *b, int flag, uint32_t len)
{
    uint8_t h[5] = {(uint8_t)flag, (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                    (uint8_t)len};
    ft_iobuf_append(b, h, 5);
}

/* gzip of data into z (cap bytes): the compressed length. */
static uint32_t gzip_into(const void *data, size_t len, uint8_t *z, size_t cap)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    zs.next_in = (Bytef *)data;
    zs.avail_in = (uInt)len;
    zs.next_out = z;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    deflateEnd(&zs);
    return (uint32_t)(cap - zs.avail_out);
}

static void one_message_is_cut_and_others_refused(void **state)
{
    (void)state;
    ft_iobuf body, msg;
    ft_iobuf_init(&body);
    ft_iobuf_init(&msg);
    int status;
    const char *reason;
    /* a plain message */
    put_prefix(&body, 0, 5);
    ft_iobuf_append(&body, "hello", 5);
    assert_int_equal(ft_grpc_unframe(&body, 0, 100, &msg, &status, &reason), 0);
    assert_int_equal(ft_iobuf_size(&msg), 5);
    ft_iobuf_clear(&msg);
    /* gzip */
    uint8_t z[128];
    uint32_t zn = gzip_into("hello hello hello", 17, z, sizeof z);
    ft_iobuf_clear(&body);
    put_prefix(&body, 1, zn);
    ft_iobuf_append(&body, z, zn);
    assert_int_equal(ft_grpc_unframe(&body, 1, 100, &msg, &status, &reason), 0);
    assert_int_equal(ft_iobuf_size(&msg), 17);
    ft_iobuf_clear(&msg);
    /* within the limit compressed, past it once inflated */
    static char big[4096];
    memset(big, 'a', sizeof big);
    uint32_t bn = gzip_into(big, sizeof big, z, sizeof z);
    ft_iobuf_clear(&body);
    put_prefix(&body, 1, bn);
    ft_iobuf_append(&body, z, bn);
    assert_int_equal(ft_grpc_unframe(&body, 1, 1000, &msg, &status, &reason), -1);
    assert_int_equal(status, 13);
    assert_int_equal(ft_iobuf_size(&msg), 0);
    zn = gzip_into("hello hello hello", 17, z, sizeof z);
    /* compressed without grpc-encoding gzip */
    ft_iobuf_clear(&body);
    put_prefix(&body, 1, zn);
    ft_iobuf_append(&body, z, zn);
    assert_int_equal(ft_grpc_unframe(&body, 0, 100, &msg, &status, &reason), -1);
    assert_int_equal(status, 12);
    /* two messages: streaming */
    ft_iobuf_clear(&body);
    put_prefix(&body, 0, 1);
    ft_iobuf_append(&body, "a", 1);
    put_prefix(&body, 0, 1);
    ft_iobuf_append(&body, "b", 1);
    assert_int_equal(ft_grpc_unframe(&body, 0, 100, &msg, &status, &reason), -1);
    assert_int_equal(status, 12);
    assert_non_null(strstr(reason, "streaming"));
    /* larger than max, cut short, no prefix, a bad flag */
    ft_iobuf_clear(&body);
    put_prefix(&body, 0, 1000);
    assert_int_equal(ft_grpc_unframe(&body, 0, 100, &msg, &status, &reason), -1);
    assert_int_equal(status, 8);
    assert_int_equal(ft_grpc_unframe(&body, 0, 5000, &msg, &status, &reason), -1);
    assert_int_equal(status, 13);
    ft_iobuf_clear(&body);
    ft_iobuf_append(&body, "ab", 2);
    assert_int_equal(ft_grpc_unframe(&body, 0, 100, &msg, &status, &reason), -1);
    ft_iobuf_clear(&body);
    put_prefix(&body, 7, 0);
    assert_int_equal(ft_grpc_unframe(&body, 0, 100, &msg, &status, &reason), -1);
    /* an empty message is a message */
    ft_iobuf_clear(&body);
    put_prefix(&body, 0, 0);
    assert_int_equal(ft_grpc_unframe(&body, 0, 100, &msg, &status, &reason), 0);
    assert_int_equal(ft_iobuf_size(&msg), 0);
    /* and framing puts the prefix back */
    ft_iobuf_append(&msg, "xyz", 3);
    ft_iobuf_clear(&body);
    assert_int_equal(ft_grpc_frame(&body, &msg), 0);
    uint8_t out[8];
    assert_int_equal(ft_iobuf_copy_at(&body, 0, out, sizeof out), 8);
    assert_memory_equal(out, "\0\0\0\0\3xyz", 8);
    ft_iobuf_fini(&body);
    ft_iobuf_fini(&msg);
}

static void messages_are_percent_encoded(void **state)
{
    (void)state;
    char out[64];
    ft_grpc_message_encode("50% off\n\xc3\xa9", out, sizeof out);
    assert_string_equal(out, "50%25 off%0A%C3%A9");
    size_t n = ft_grpc_message_decode(out, strlen(out));
    assert_int_equal(n, 10);
    assert_string_equal(out, "50% off\n\xc3\xa9");
    char tiny[6];
    ft_grpc_message_encode("abc\ndef", tiny, sizeof tiny); /* an escape is never cut in two */
    assert_string_equal(tiny, "abc");
}

static void bucket_allows_a_burst_then_the_rate(void **state)
{
    (void)state;
    ft_rate_bucket b = {0};
    int64_t t = 1000000000;
    for (int i = 0; i < 10; i++)
        assert_int_equal(ft_rate_bucket_take(&b, 10, 2, t), 0);
    assert_int_equal(ft_rate_bucket_take(&b, 10, 2, t), -1);
    assert_int_equal(ft_rate_bucket_take(&b, 10, 2, t + 400000000), -1); /* 0.8 token */
    assert_int_equal(ft_rate_bucket_take(&b, 10, 2, t + 500000000), 0);  /* 1 token */
    assert_int_equal(ft_rate_bucket_take(&b, 10, 2, t + 500000000), -1);
    /* a long quiet spell refills to the burst, no more */
    t += 3600LL * 1000000000;
    for (int i = 0; i < 10; i++)
        assert_int_equal(ft_rate_bucket_take(&b, 10, 2, t), 0);
    assert_int_equal(ft_rate_bucket_take(&b, 10, 2, t), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(preface_is_sniffed_byte_by_byte),
        cmocka_unit_test(timeouts_parse_in_every_unit),
        cmocka_unit_test(statuses_map_both_ways),
        cmocka_unit_test(one_message_is_cut_and_others_refused),
        cmocka_unit_test(messages_are_percent_encoded),
        cmocka_unit_test(bucket_allows_a_burst_then_the_rate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
