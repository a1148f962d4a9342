/* The wire walk (see pb_wire.h). */
#include "protocol/pb_wire.h"

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
