/* The wire walk (see pb_wire.h). */
#include "protocol/pb_wire.h"

#include "base/pb_codec.h"

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t c = *(*p)++;
        *v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) return 0;
    }
    return -1;
}

int ft_pb_wire_each_len(const uint8_t *p, const uint8_t *end, ft_pb_wire_len_cb cb, void *arg)
{
    while (p < end) {
        uint64_t tag, v;
        if (read_varint(&p, end, &tag)) return 0;
        switch (tag & 7) {
        case 0:
            if (read_varint(&p, end, &v)) return 0;
            break;
        case 1:
            if (end - p < 8) return 0;
            p += 8;
            break;
        case 5:
            if (end - p < 4) return 0;
            p += 4;
            break;
        case 2: {
            if (read_varint(&p, end, &v) || v > (uint64_t)(end - p)) return 0;
            int rc = cb(tag >> 3, p, (size_t)v, arg);
            if (rc) return rc;
            p += v;
            break;
        }
        default:
            return 0;
        }
    }
    return 0;
}

typedef struct wire_at {
    const ProtobufCMessageDescriptor *md;
    int level, max;
} wire_at;

/* -1 when a message field nests deeper than at->max below here. */
static int wire_field(uint64_t field, const uint8_t *p, size_t len, void *arg)
{
    const wire_at *at = arg;
    const ProtobufCFieldDescriptor *f =
        field <= INT32_MAX ? protobuf_c_message_descriptor_get_field(at->md, (unsigned)field)
                           : NULL;
    if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE) return 0;
    wire_at sub = {f->descriptor, at->level + 1, at->max};
    if (sub.level > sub.max) return -1;
    return ft_pb_wire_each_len(p, p + len, wire_field, &sub);
}

int ft_pb_wire_too_deep(const ProtobufCMessageDescriptor *md, const void *p, size_t len,
                        int max_depth)
{
    /* each level below the top costs at least a tag byte and a length byte: fewer bytes than
     * that cannot nest too deep, and most messages are that small (no walk at all) */
    if (max_depth < 1 || len < 2 * (size_t)max_depth) return max_depth < 1;
    wire_at top = {md, 1, max_depth};
    return ft_pb_wire_each_len(p, (const uint8_t *)p + len, wire_field, &top) < 0;
}

/* Depth-first over the message fields' types; a recursive type runs past max at once. */
static int bounded_below(const ProtobufCMessageDescriptor *md, int level, int max, int *budget)
{
    if (level > max || --*budget < 0) return 0;
    for (unsigned i = 0; i < md->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &md->fields[i];
        if (f->type == PROTOBUF_C_TYPE_MESSAGE &&
            !bounded_below(f->descriptor, level + 1, max, budget))
            return 0;
    }
    return 1;
}

int ft_pb_type_depth_bounded(const ProtobufCMessageDescriptor *md, int max_depth)
{
    int budget = 4096; /* a type graph wide and deep enough to exceed it is treated as unbounded */
    return bounded_below(md, 1, max_depth, &budget);
}

ProtobufCMessage *ft_pb_unpack_bounded(const ProtobufCMessageDescriptor *md, ft_iobuf *in,
                                       ProtobufCAllocator *alloc, int max_depth, int *too_deep)
{
    *too_deep = 0;
    size_t n = ft_iobuf_size(in);
    if (max_depth > 0 && n >= 2 * (size_t)max_depth) { /* fewer bytes cannot nest too deep */
        const uint8_t *data = ft_iobuf_flatten(in);
        if (!data) return NULL;
        if (ft_pb_wire_too_deep(md, data, n, max_depth)) {
            *too_deep = 1;
            return NULL;
        }
    }
    return ft_pb_unpack(md, in, alloc);
}
