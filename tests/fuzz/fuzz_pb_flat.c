/* libFuzzer target for the flat-message codec (base/pb_flat.h), differential against protobuf-c:
 * the typed calls read requests (server) and replies (client) from the network with it first, and
 * protobuf-c must stay the judge of what is valid. The first byte picks a type of
 * tests/unit/pb_flat_test.proto or pb_flat_test2.proto (proto3 with every scalar kind, proto2 with
 * has_ flags and defaults, field numbers at the edges of the reader's keys) and where the rest is
 * cut in two slices (so that the reader's flatten runs); the rest is the message. Then:
 *   - what ft_pb_unpack_flat reads into an arena, protobuf-c's unpack reads too, field for field
 *     the same (has_ flags, NULL-ness of strings and bytes included): the reader may leave bytes
 *     to protobuf-c, never accept what it refuses nor read them otherwise;
 *   - bytes protobuf-c writes itself (its canonical form) with keys of at most two bytes, the
 *     reader takes (the fast path is not quietly lost);
 *   - a message read packs with ft_pb_flat_packed_size / ft_pb_flat_pack to protobuf-c's size and
 *     bytes, and ft_pb_flat_pack_into gives those bytes whenever it has 20 bytes to spare, and with
 *     less either gives them or says SIZE_MAX, never writing past its room (ASan's bounds: the
 *     room is a malloc of exactly that size).
 * Any disagreement aborts. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/pb_flat_same.h"
#include "base/pb_flat.h"
#include "pb_flat_test.pb-c.h"
#include "pb_flat_test2.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const ProtobufCMessageDescriptor *const TYPES[] = {
    &flattest__flat3__descriptor,
    &flattest2__flat2__descriptor,
    &flattest__edge__descriptor,
};
enum { N_TYPES = sizeof TYPES / sizeof TYPES[0] };

static void check(int ok)
{
    if (!ok) abort();
}

/* The length of the varint at p within end, 0 when it does not end there. */
static size_t varint_len(const uint8_t *p, const uint8_t *end)
{
    for (size_t i = 0; p + i < end && i < 10; i++)
        if (!(p[i] & 0x80)) return i + 1;
    return 0;
}

/* 1 when every key of well-formed bytes (protobuf-c's own packing) takes at most two bytes. */
static int keys_short(const uint8_t *p, const uint8_t *end)
{
    while (p < end) {
        size_t k = varint_len(p, end);
        if (!k || k > 2) return 0;
        int wire = p[0] & 7;
        p += k;
        size_t n = varint_len(p, end);
        if (!n) return 0;
        if (wire == PROTOBUF_C_WIRE_TYPE_32BIT) {
            n = 4;
        } else if (wire == PROTOBUF_C_WIRE_TYPE_64BIT) {
            n = 8;
        } else if (wire == PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED) {
            uint64_t len = 0;
            for (size_t i = 0; i < n; i++)
                len |= (uint64_t)(p[i] & 0x7f) << (7 * i);
            p += n;
            n = (size_t)len;
        }
        if ((size_t)(end - p) < n) return 0;
        p += n;
    }
    return 1;
}

/* The writer against protobuf-c's packing of the same message (pc). */
static void check_pack(const ProtobufCMessage *flat, const ProtobufCMessage *pc, uint8_t spare)
{
    size_t n = protobuf_c_message_get_packed_size(pc);
    check(ft_pb_flat_packed_size(flat) == n);
    uint8_t *want = malloc(n + 1), *got = malloc(n + 1);
    check(want && got);
    check(protobuf_c_message_pack(pc, want) == n);
    check(ft_pb_flat_pack(flat, got) == n && memcmp(want, got, n) == 0);
    free(got);
    /* one pass into a room of n + 20: always fits */
    got = malloc(n + 20);
    check(got != NULL);
    check(ft_pb_flat_pack_into(flat, got, n + 20) == n && memcmp(want, got, n) == 0);
    free(got);
    /* into a tighter room (0 to n + 19 bytes): the bytes or SIZE_MAX, within the room */
    size_t room = spare % (n + 20);
    got = malloc(room ? room : 1);
    check(got != NULL);
    size_t w = ft_pb_flat_pack_into(flat, got, room);
    check(w == SIZE_MAX || (w == n && memcmp(want, got, n) == 0));
    free(got);
    free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 65536) return 0;
    const ProtobufCMessageDescriptor *d = TYPES[data[0] % N_TYPES];
    uint8_t spare = data[1];
    data += 2;
    size -= 2;

    ft_arena arena;
    ft_arena_init(&arena);
    ft_iobuf in, tail;
    ft_iobuf_init(&in);
    ft_iobuf_init(&tail);
    size_t cut = size ? spare % (size + 1) : 0;
    if (cut) check(ft_iobuf_append(&in, data, cut) == 0);
    if (size > cut) {
        check(ft_iobuf_append(&tail, data + cut, size - cut) == 0);
        check(ft_iobuf_append_buf(&in, &tail) == 0);
    }
    ProtobufCMessage *flat = ft_pb_unpack_flat(d, &arena, &in);
    ProtobufCMessage *pc = protobuf_c_message_unpack(d, NULL, size, data);
    if (flat) {
        check(pc != NULL); /* never accepts what protobuf-c refuses */
        check(pb_flat_same_message(flat, pc));
        check_pack(flat, pc, spare);
    } else if (pc && pc->n_unknown_fields == 0) {
        /* protobuf-c's canonical bytes with short keys are the reader's to take */
        size_t n = protobuf_c_message_get_packed_size(pc);
        uint8_t *b = malloc(n + 1);
        check(b != NULL);
        check(protobuf_c_message_pack(pc, b) == n);
        if (n == size && memcmp(b, data, n) == 0 && keys_short(b, b + n)) abort();
        free(b);
    }
    protobuf_c_message_free_unpacked(pc, NULL);
    ft_iobuf_fini(&tail);
    ft_iobuf_fini(&in);
    ft_arena_fini(&arena);
    return 0;
}
