/* Whether two messages of one flat type hold the same fields, as protobuf-c's struct holds them:
 * equal values, the same has_ flags, the same NULL-ness of strings and bytes, a string at its
 * default pointer in both or neither, and no unknown field. Shared by unit/test_pb_flat.c and
 * fuzz/fuzz_pb_flat.c, which compare ft_pb_unpack_flat's message with protobuf-c's. */
#ifndef FT_TESTS_PB_FLAT_SAME_H
#define FT_TESTS_PB_FLAT_SAME_H

#include <protobuf-c/protobuf-c.h>
#include <string.h>

static inline int pb_flat_same_message(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
    const ProtobufCMessageDescriptor *d = a->descriptor;
    if (b->descriptor != d || a->n_unknown_fields || b->n_unknown_fields) return 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *pa = (const char *)a + f->offset, *pb = (const char *)b + f->offset;
        if (f->quantifier_offset &&
            *(const protobuf_c_boolean *)((const char *)a + f->quantifier_offset) !=
                *(const protobuf_c_boolean *)((const char *)b + f->quantifier_offset))
            return 0;
        switch (f->type) {
        case PROTOBUF_C_TYPE_STRING: {
            const char *sa = *(char *const *)pa, *sb = *(char *const *)pb;
            if ((sa == NULL) != (sb == NULL)) return 0;
            if ((sa == f->default_value) != (sb == f->default_value)) return 0;
            if (sa && strcmp(sa, sb) != 0) return 0;
            break;
        }
        case PROTOBUF_C_TYPE_BYTES: {
            const ProtobufCBinaryData *ba = (const void *)pa, *bb = (const void *)pb;
            if (ba->len != bb->len || (ba->data == NULL) != (bb->data == NULL)) return 0;
            if (ba->len && memcmp(ba->data, bb->data, ba->len) != 0) return 0;
            break;
        }
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_FIXED64:
        case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_DOUBLE:
            if (memcmp(pa, pb, 8) != 0) return 0;
            break;
        default: /* the 32-bit numbers, enums, floats and bools */
            if (memcmp(pa, pb, 4) != 0) return 0;
        }
    }
    return 1;
}

#endif
