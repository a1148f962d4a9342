/* libFuzzer target for the JSON transcoder (protocol/json_pb.h): JSON bodies arrive from any HTTP
 * client, and the bytes it turns into JSON from any server the CLI calls. Each input is read both
 * ways against ftrpc.test.All (tests/proto/json_test.proto: every field kind, maps, a oneof,
 * recursion):
 *   - as JSON text: when it decodes, the message encodes to JSON, that JSON decodes again, and
 *     both messages pack to the same bytes (what the transcoder writes, it reads, losslessly);
 *   - as wire bytes: when they unpack and encode to JSON, that JSON decodes, and encoding again is
 *     stable (one more round gives the same text).
 * Every refusal must come with a reason. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json_test.pb-c.h"
#include "protocol/json_pb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const ProtobufCMessageDescriptor *const ALL = &ftrpc__test__all__descriptor;

static void check(int ok)
{
    if (!ok) abort();
}

/* JSON text -> message, with the reason checked on failure. */
static ProtobufCMessage *from_json(const char *text, size_t len)
{
    ProtobufCMessage *m = NULL;
    char err[256] = "";
    int rc = ft_json_to_pb(ALL, text, len, NULL, &m, err, sizeof err);
    check(rc == 0 ? m != NULL : err[0] != '\0');
    return rc == 0 ? m : NULL;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *n)
{
    *n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*n ? *n : 1);
    check(b != NULL);
    check(protobuf_c_message_pack(m, b) == *n);
    return b;
}

static void json_side(const char *text, size_t len)
{
    ProtobufCMessage *m = from_json(text, len);
    if (!m) return;
    ft_strbuf sb;
    ft_strbuf_init(&sb, 0);
    char err[256];
    /* json-c checked the UTF-8 of every string: the message encodes */
    check(ft_pb_to_json(m, &sb, err, sizeof err) == 0);
    ProtobufCMessage *m2 = from_json(ft_strbuf_cstr(&sb), sb.len);
    check(m2 != NULL);
    size_t n1, n2;
    uint8_t *b1 = pack(m, &n1), *b2 = pack(m2, &n2);
    check(n1 == n2 && memcmp(b1, b2, n1) == 0);
    free(b1);
    free(b2);
    protobuf_c_message_free_unpacked(m, NULL);
    protobuf_c_message_free_unpacked(m2, NULL);
    ft_strbuf_fini(&sb);
}

static void wire_side(const uint8_t *data, size_t size)
{
    ft_strbuf a, b;
    ft_strbuf_init(&a, 0);
    ft_strbuf_init(&b, 0);
    char err[256] = "";
    if (ft_pb_bytes_to_json(ALL, data, size, &a, err, sizeof err) != 0) {
        check(err[0] != '\0' && a.len == 0);
        goto out;
    }
    ProtobufCMessage *m = from_json(ft_strbuf_cstr(&a), a.len);
    check(m != NULL);
    check(ft_pb_to_json(m, &b, err, sizeof err) == 0);
    protobuf_c_message_free_unpacked(m, NULL);
    /* map keys repeated on the wire collapse to the last one in JSON: compare the second round */
    ProtobufCMessage *m2 = from_json(ft_strbuf_cstr(&b), b.len);
    check(m2 != NULL);
    ft_strbuf_reset(&a);
    check(ft_pb_to_json(m2, &a, err, sizeof err) == 0);
    check(a.len == b.len && memcmp(ft_strbuf_cstr(&a), ft_strbuf_cstr(&b), a.len) == 0);
    protobuf_c_message_free_unpacked(m2, NULL);
out:
    ft_strbuf_fini(&a);
    ft_strbuf_fini(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536) return 0;
    json_side((const char *)data, size);
    wire_side(data, size);
    return 0;
}
