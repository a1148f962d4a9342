/* libFuzzer target for the run-time descriptor builder (protocol/pb_descset.h): a descriptor set
 * is a file a user names (--protoset), and what protoc writes from any .proto. A set that builds
 * must give descriptors protobuf-c can use: every message type packs its empty message, unpacks
 * a few fixed bytes (and packs what it got), and goes through the JSON transcoder both ways, all
 * under ASan, so a layout that puts two fields in the same bytes or past the message's size shows.
 * A refused set must come with a reason. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/json_pb.h"
#include "protocol/pb_descset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok) abort();
}

/* Field 1 as a varint, field 2 as 3 bytes, field 3 as a fixed64, field 4 as a fixed32, field 5
 * as an empty length-delimited value: enough to touch every kind of member somewhere. */
static const uint8_t SAMPLE[] = {0x08, 0x96, 0x01, 0x12, 0x03, 'a',  'b', 'c', 0x19, 1, 2,    3,
                                 4,    5,    6,    7,    8,    0x25, 1,   2,   3,    4, 0x2a, 0};

static void exercise(const ProtobufCMessageDescriptor *md)
{
    ProtobufCMessage *m = protobuf_c_message_unpack(md, NULL, sizeof SAMPLE, SAMPLE);
    if (m) {
        size_t n = protobuf_c_message_get_packed_size(m);
        uint8_t *b = malloc(n ? n : 1);
        check(b && protobuf_c_message_pack(m, b) == n);
        free(b);
        ft_strbuf sb;
        ft_strbuf_init(&sb, 0);
        char err[256];
        if (ft_pb_to_json(m, &sb, err, sizeof err) == 0) {
            ProtobufCMessage *back = NULL;
            /* an enum number this side knows no name for is written as a number: reads back */
            if (ft_json_to_pb(md, ft_strbuf_cstr(&sb), sb.len, NULL, &back, err, sizeof err) == 0)
                protobuf_c_message_free_unpacked(back, NULL);
        }
        ft_strbuf_fini(&sb);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    ProtobufCMessage *e = NULL;
    char err[256];
    if (ft_json_to_pb(md, "{}", 2, NULL, &e, err, sizeof err) == 0) {
        size_t n = protobuf_c_message_get_packed_size(e);
        uint8_t *b = malloc(n ? n : 1);
        check(b && protobuf_c_message_pack(e, b) == n);
        free(b);
        protobuf_c_message_free_unpacked(e, NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ft_descset *set = NULL;
    char err[256] = "";
    if (ft_descset_new(data, size, &set, err, sizeof err) != 0) {
        check(set == NULL && err[0] != '\0');
        return 0;
    }
    for (size_t i = 0; i < 64; i++) {
        const ProtobufCMessageDescriptor *md = ft_descset_message_at(set, i);
        if (!md) break;
        exercise(md);
    }
    ft_descset_free(set);
    return 0;
}
