/* The flat-message reader (src/base/pb_flat.c) against protobuf-c's unpack: which types are flat;
 * made messages of every scalar type, proto3 and proto2 (has_ flags, defaults), read the same;
 * and on random bytes, whatever the reader takes, protobuf-c takes too and reads to the same
 * message, while what the reader leaves (unknown fields, wrong wire types, truncation, over-long
 * varints) goes to protobuf-c; and the writer writes protobuf-c's bytes. Types: pb_flat_test.proto,
 * pb_flat_test2.proto. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "base/pb_flat.h"
#include "pb_flat_same.h"
#include "pb_flat_test.pb-c.h"
#include "pb_flat_test2.pb-c.h"

/* Reads n bytes both ways. Returns 1 when the flat reader took them (and then protobuf-c read the
 * same message), 0 when it left them to protobuf-c. */
static int read_both(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t n)
{
    ft_arena arena;
    ft_arena_init(&arena);
    ft_iobuf in;
    ft_iobuf_init(&in);
    /* in two slices when it can be, so that the reader's flatten runs too */
    size_t half = n / 2;
    if (half) assert_int_equal(ft_iobuf_append(&in, data, half), 0);
    ft_iobuf tail;
    ft_iobuf_init(&tail);
    if (n > half) {
        assert_int_equal(ft_iobuf_append(&tail, data + half, n - half), 0);
        assert_int_equal(ft_iobuf_append_buf(&in, &tail), 0);
    }
    ProtobufCMessage *flat = ft_pb_unpack_flat(d, &arena, &in);
    ProtobufCMessage *pc = protobuf_c_message_unpack(d, NULL, n, data);
    if (flat) {
        assert_non_null(pc); /* never accepts what protobuf-c refuses */
        assert_true(pb_flat_same_message(flat, pc));
    }
    protobuf_c_message_free_unpacked(pc, NULL);
    ft_iobuf_fini(&tail);
    ft_iobuf_fini(&in);
    ft_arena_fini(&arena);
    return flat != NULL;
}

static void flat_types_are_singular_scalars_strings_and_bytes(void **state)
{
    (void)state;
    assert_true(ft_pb_is_flat(&flattest__flat3__descriptor));
    assert_true(ft_pb_is_flat(&flattest2__flat2__descriptor));
    assert_false(ft_pb_is_flat(&flattest__outer__descriptor));
    assert_false(ft_pb_is_flat(&flattest2__with_required__descriptor));
    assert_false(ft_pb_is_flat(&flattest2__with_repeated__descriptor));
    assert_false(ft_pb_is_flat(&flattest2__with_oneof__descriptor));
    assert_false(ft_pb_is_flat(NULL));
}

/* Every scalar type at its edges, packed by protobuf-c: the reader takes them all. */
static void made_messages_read_as_protobuf_c_reads_them(void **state)
{
    (void)state;
    static const uint8_t blob[] = {0, 1, 0xff, 0x80};
    Flattest__Flat3 cases[4];
    for (int i = 0; i < 4; i++)
        flattest__flat3__init(&cases[i]);
    /* the maxima */
    cases[1] = (Flattest__Flat3){.base = cases[1].base,
                                 .i32 = INT32_MAX,
                                 .i64 = INT64_MAX,
                                 .u32 = UINT32_MAX,
                                 .u64 = UINT64_MAX,
                                 .s32 = INT32_MAX,
                                 .s64 = INT64_MAX,
                                 .f32 = UINT32_MAX,
                                 .f64 = UINT64_MAX,
                                 .sf32 = INT32_MAX,
                                 .sf64 = INT64_MAX,
                                 .fl = 3.5f,
                                 .db = 1e300,
                                 .flag = 1,
                                 .text = "caf\xc3\xa9",
                                 .data = {sizeof blob, (uint8_t *)blob},
                                 .kind = FLATTEST__KIND__KIND_BIG,
                                 .far = 1};
    /* the minima: negative int32 takes ten bytes on the wire */
    cases[2] = (Flattest__Flat3){.base = cases[2].base,
                                 .i32 = INT32_MIN,
                                 .i64 = INT64_MIN,
                                 .s32 = INT32_MIN,
                                 .s64 = INT64_MIN,
                                 .sf32 = INT32_MIN,
                                 .sf64 = INT64_MIN,
                                 .fl = -0.25f,
                                 .db = -2.0,
                                 .text = "x",
                                 .kind = -1};
    /* small values, one byte each */
    cases[3] = (Flattest__Flat3){.base = cases[3].base,
                                 .i32 = 1,
                                 .u64 = 127,
                                 .s32 = -1,
                                 .text = "",
                                 .data = {1, (uint8_t *)blob}};
    int taken = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t buf[512];
        size_t n = flattest__flat3__pack(&cases[i], buf);
        int t = read_both(&flattest__flat3__descriptor, buf, n);
        /* far (3000) needs a three-byte key: that case is protobuf-c's */
        if (cases[i].far == 0) assert_true(t);
        taken += t;
    }
    assert_int_equal(taken, 3);

    /* proto2: has_ flags, defaults kept when absent, and fields out of declaration order */
    Flattest2__Flat2 p2 = FLATTEST2__FLAT2__INIT;
    uint8_t buf[512];
    size_t n = flattest2__flat2__pack(&p2, buf);
    assert_true(read_both(&flattest2__flat2__descriptor, buf, n)); /* empty: all defaults */
    p2.has_n = 1;
    p2.n = -5;
    p2.has_on = 1;
    p2.has_z = 1;
    p2.z = -1;
    p2.name = "";
    p2.has_blob = 1; /* empty bytes: data NULL after either reader */
    p2.has_big = 1;
    p2.big = UINT64_MAX;
    n = flattest2__flat2__pack(&p2, buf);
    assert_true(read_both(&flattest2__flat2__descriptor, buf, n));
}

/* Bytes protobuf-c refuses or reads differently are left to it: each case here is not taken. */
static void bytes_the_reader_does_not_know_go_to_protobuf_c(void **state)
{
    (void)state;
    static const struct {
        const char *why;
        uint8_t bytes[16];
        size_t n;
    } cases[] = {
        {"unknown field 99", {0x98, 0x06, 0x01}, 3},
        {"i32 as fixed32", {0x0d, 1, 2, 3, 4}, 5},
        {"bool as length-delimited", {0x6a, 0x01, 0x01}, 3},
        {"truncated varint", {0x08, 0x80}, 2},
        {"varint of 11 bytes",
         {0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0},
         12},
        {"bytes longer than the message", {0x7a, 0x05, 'a'}, 3},
        {"fixed64 cut short", {0x41, 1, 2, 3}, 4},
        {"field number 0", {0x00, 0x01}, 2},
        {"group start", {0x0b}, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int taken = read_both(&flattest__flat3__descriptor, cases[i].bytes, cases[i].n);
        if (taken) fail_msg("taken: %s", cases[i].why);
    }
    /* a field twice: the last wins, as in protobuf-c (taken) */
    static const uint8_t twice[] = {0x08, 0x01, 0x72, 0x01, 'a', 0x08, 0x02, 0x72, 0x02, 'b', 'c'};
    assert_true(read_both(&flattest__flat3__descriptor, twice, sizeof twice));
    /* a bool varint of 2 and a 32-bit varint of ten bytes read as protobuf-c reads them */
    static const uint8_t odd[] = {0x68, 0x02, 0x18, 0xff, 0xff, 0xff, 0xff,
                                  0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    assert_true(read_both(&flattest__flat3__descriptor, odd, sizeof odd));
    /* a bool whose over-long varint has only continuation bits set is false */
    static const uint8_t long_false[] = {0x68, 0x80, 0x80, 0x00};
    assert_true(read_both(&flattest__flat3__descriptor, long_false, sizeof long_false));
    /* a string that is not UTF-8: protobuf-c 1.4 does not check, nor does the reader */
    static const uint8_t bad_utf8[] = {0x72, 0x02, 0xff, 0xfe};
    read_both(&flattest__flat3__descriptor, bad_utf8, sizeof bad_utf8);
}

static void no_free(void *data, void *arg)
{
    (void)data;
    (void)arg;
}

/* protobuf-c refuses a message of more than 134,217,712 fields ("too many fields"), so the reader
 * must not take one: it leaves every message of 2 * 134,217,713 bytes or more (the fewest bytes
 * that many two-byte fields take) to protobuf-c, before reading it. Here 256 MiB of `i32 = 1`
 * fields, the same 1 MiB wrapped 256 times without a copy. */
static void reader_leaves_messages_of_256_mib_to_protobuf_c(void **state)
{
    (void)state;
    enum { MIB = 1 << 20 };
    static uint8_t chunk[MIB];
    for (size_t i = 0; i < MIB; i += 2) {
        chunk[i] = 0x08;
        chunk[i + 1] = 0x01;
    }
    ft_iobuf in;
    ft_iobuf_init(&in);
    for (int i = 0; i < 256; i++)
        assert_int_equal(ft_iobuf_append_user(&in, chunk, MIB, no_free, NULL), 0);
    assert_true(ft_iobuf_size(&in) >= (size_t)2 * (134217712 + 1));
    ft_arena arena;
    ft_arena_init(&arena);
    assert_null(ft_pb_unpack_flat(&flattest__flat3__descriptor, &arena, &in));
    ft_arena_fini(&arena);
    ft_iobuf_fini(&in);
}

static uint64_t rng = 0x9e3779b97f4a7c15u;
static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/* Appends a varint of value v, padded to at least `len` bytes (over-long forms protobuf-c accepts
 * up to ten bytes). */
static size_t put_varint(uint8_t *p, uint64_t v, size_t len)
{
    size_t n = 0;
    do {
        p[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        n++;
        if (v || n < len) p[n - 1] |= 0x80;
    } while (v || n < len);
    return n;
}

/* Random messages near the valid ones: known and unknown fields, right and wrong wire types,
 * varints of every length, bodies cut short. */
static void random_bytes_read_as_protobuf_c_reads_them_or_go_to_it(void **state)
{
    (void)state;
    static const uint32_t IDS[] = {1,  2,  3,  4,  5,  6,  7,  8,    9,  10,
                                   11, 12, 13, 14, 15, 16, 17, 3000, 200};
    const ProtobufCMessageDescriptor *types[] = {&flattest__flat3__descriptor,
                                                 &flattest2__flat2__descriptor};
    int taken = 0, runs = 20000;
    for (int r = 0; r < runs; r++) {
        uint8_t buf[600];
        size_t n = 0;
        int nf = (int)(next_rand() % 8);
        for (int k = 0; k < nf; k++) {
            uint32_t id = IDS[next_rand() % (sizeof IDS / sizeof IDS[0])];
            uint32_t wire = next_rand() % 16 < 14 ? next_rand() % 3 : next_rand() % 8;
            /* mostly the right wire type for Flat3's field, so that many messages are taken */
            if (next_rand() % 4 && id >= 1 && id <= 16) {
                wire = (id == 7 || id == 9 || id == 11)    ? 5
                       : (id == 8 || id == 10 || id == 12) ? 1
                       : (id == 14 || id == 15)            ? 2
                                                           : 0;
            }
            n += put_varint(buf + n, (uint64_t)id << 3 | wire, 0);
            switch (wire) {
            case 0: {
                uint64_t v = (uint64_t)next_rand() << 32 | next_rand();
                v >>= next_rand() % 64;
                n += put_varint(buf + n, v, next_rand() % 8 ? 0 : next_rand() % 11);
                break;
            }
            case 1:
            case 5:
                for (int i = 0; i < (wire == 1 ? 8 : 4); i++)
                    buf[n++] = (uint8_t)next_rand();
                break;
            case 2: {
                size_t len = next_rand() % 20;
                n += put_varint(buf + n, len, next_rand() % 8 ? 0 : 1 + next_rand() % 5);
                for (size_t i = 0; i < len; i++)
                    buf[n++] = (uint8_t)next_rand();
                break;
            }
            default:
                buf[n++] = (uint8_t)next_rand();
            }
        }
        if (n && next_rand() % 10 == 0) n -= 1 + next_rand() % n; /* cut short */
        taken += read_both(types[r % 2], buf, n);
    }
    /* the test means something only if the reader took a good share */
    assert_true(taken > runs / 10);
}

/* Packs m both ways: the same bytes, and the same size first. */
static void assert_packs_as_protobuf_c(const ProtobufCMessage *m)
{
    uint8_t a[1024], b[1024];
    size_t n = protobuf_c_message_get_packed_size(m);
    assert_true(n <= sizeof a);
    assert_int_equal(ft_pb_flat_packed_size(m), n);
    assert_int_equal(protobuf_c_message_pack(m, a), n);
    assert_int_equal(ft_pb_flat_pack(m, b), n);
    assert_memory_equal(a, b, n);
    /* in one pass into a bounded room: the same bytes when it has 20 to spare, refused when it
     * is short, never written past */
    uint8_t c[1024 + 64];
    memset(c, 0xa5, sizeof c);
    assert_int_equal(ft_pb_flat_pack_into(m, c, n + 20), n);
    assert_memory_equal(a, c, n);
    if (n) {
        memset(c, 0xa5, sizeof c);
        assert_int_equal(ft_pb_flat_pack_into(m, c, n - 1), SIZE_MAX);
        for (size_t i = n - 1; i < sizeof c; i++)
            assert_int_equal(c[i], 0xa5);
    }
}

/* The writer against protobuf-c's pack: every field at its edges and at zero (which proto3 does
 * not send, -0.0 included), proto2's has_ flags and string defaults, and random values. */
static void flat_messages_pack_to_protobuf_c_bytes(void **state)
{
    (void)state;
    static uint8_t blob[40];
    Flattest__Flat3 m = FLATTEST__FLAT3__INIT;
    assert_packs_as_protobuf_c(&m.base);
    m.fl = -0.0f;
    m.db = -0.0;
    m.text = "";
    m.data = (ProtobufCBinaryData){0, blob};
    assert_packs_as_protobuf_c(&m.base);
    m = (Flattest__Flat3){.base = m.base,
                          .i32 = -1,
                          .i64 = INT64_MIN,
                          .u32 = UINT32_MAX,
                          .u64 = UINT64_MAX,
                          .s32 = INT32_MIN,
                          .s64 = INT64_MIN,
                          .f32 = 1,
                          .f64 = 2,
                          .sf32 = -3,
                          .sf64 = -4,
                          .fl = 1e-3f,
                          .db = -1e300,
                          .flag = 7, /* any non-zero bool is sent as 1 */
                          .text = "text",
                          .data = {sizeof blob, blob},
                          .kind = -2,
                          .far = INT32_MAX};
    assert_packs_as_protobuf_c(&m.base);
    for (int r = 0; r < 5000; r++) {
        m.i32 = (int32_t)next_rand() >> (next_rand() % 32);
        m.i64 = (int64_t)((uint64_t)next_rand() << 32 | next_rand()) >> (next_rand() % 64);
        m.u32 = next_rand() >> (next_rand() % 32);
        m.u64 = ((uint64_t)next_rand() << 32 | next_rand()) >> (next_rand() % 64);
        m.s32 = (int32_t)next_rand() >> (next_rand() % 32);
        m.s64 = (int64_t)((uint64_t)next_rand() << 32 | next_rand()) >> (next_rand() % 64);
        m.kind = (int)(next_rand() % 3) - 1;
        m.flag = (int)(next_rand() % 3);
        m.data.len = next_rand() % (sizeof blob + 1);
        m.text = next_rand() % 2 ? NULL : "x";
        m.fl = next_rand() % 2 ? 0 : (float)next_rand();
        assert_packs_as_protobuf_c(&m.base);
    }
    Flattest2__Flat2 p2 = FLATTEST2__FLAT2__INIT;
    assert_packs_as_protobuf_c(&p2.base); /* the default string is not sent */
    p2.name = "other";
    p2.has_n = 1; /* sent even at its default */
    p2.has_blob = 1;
    p2.has_d = 1;
    p2.d = 0;
    p2.has_big = 1;
    assert_packs_as_protobuf_c(&p2.base);
    p2.name = NULL;
    p2.has_on = 1;
    p2.on = 1;
    p2.has_z = 1;
    p2.z = -7;
    p2.has_fx = 1;
    assert_packs_as_protobuf_c(&p2.base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(flat_types_are_singular_scalars_strings_and_bytes),
        cmocka_unit_test(made_messages_read_as_protobuf_c_reads_them),
        cmocka_unit_test(bytes_the_reader_does_not_know_go_to_protobuf_c),
        cmocka_unit_test(reader_leaves_messages_of_256_mib_to_protobuf_c),
        cmocka_unit_test(random_bytes_read_as_protobuf_c_reads_them_or_go_to_it),
        cmocka_unit_test(flat_messages_pack_to_protobuf_c_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
