/* The flat-message reader (pb_flat.h).
 *
 * Why: protobuf-c's unpack is general: it scans every field into slabs, checks required fields,
 * counts repeated ones, and parses in a second pass, ~400 instructions for a message of one
 * 16-byte bytes field, the largest single cost of a small typed call. A flat type needs none of
 * that: one pass, each field decoded in place.
 *
 * Invariant: for the bytes this reader takes, the message is the one protobuf-c 1.4 makes, field
 * for field: values decoded by its rules (a 32-bit varint from its first five bytes, the fifth
 * unmasked; a bool true when any of its bits is; a field seen twice keeps the last; empty bytes
 * have data NULL; a string is NUL-terminated; `has_` set for a field that has one). Whatever else
 * it sees (and from FLAT_MAX_BYTES on), it gives up (NULL) and the caller asks protobuf-c, so
 * that protobuf-c stays the judge of bad input. unit.test_pb_flat checks the two against each other
 * on made and random bytes.
 *
 * The writer does the same for a flat message going out: protobuf-c's get_packed_size and pack
 * walk every field through its general per-label code; this one pass (run twice: to size, then
 * to write) writes the bytes protobuf-c writes, byte for byte: a proto3 field only when it is not
 * zero (an empty string, bytes of length 0 and -0.0 count as zero, as protobuf-c counts them), an
 * optional one when its has_ flag is set (a string: when it is not NULL nor its default), a
 * negative int32 or enum as ten bytes.
 * What it does not do: nested or repeated fields.
 */
#include "base/pb_flat.h"

#include <stdint.h>
#include <string.h>

/* The size from which the reader gives a message up to protobuf-c, so as never to take one that
 * protobuf-c refuses for having more than 134,217,712 fields (16 * (2^23 - 1): its scan slabs of
 * 16, 32, ... members, 23 of them, "too many fields"). A field takes two bytes at least (a key, a
 * value or length prefix of one byte or more), so a message shorter than this cannot hold that
 * many: one comparison a message instead of a count a field. */
#define FLAT_MAX_BYTES ((size_t)2 * (134217712 + 1))

int ft_pb_is_flat(const ProtobufCMessageDescriptor *d)
{
    if (!d || d->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC || !d->message_init) return 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if ((f->label != PROTOBUF_C_LABEL_NONE && f->label != PROTOBUF_C_LABEL_OPTIONAL) ||
            (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) || f->type >= PROTOBUF_C_TYPE_MESSAGE)
            return 0;
    }
    return 1;
}

/* The length of the varint at p (at most 10 bytes, within end), 0 when it does not end there. */
static size_t varint_len(const uint8_t *p, const uint8_t *end)
{
    size_t max = (size_t)(end - p) < 10 ? (size_t)(end - p) : 10;
    for (size_t i = 0; i < max; i++)
        if (!(p[i] & 0x80)) return i + 1;
    return 0;
}

/* protobuf-c's 32-bit reading of a varint of n bytes: seven bits from each of the first four,
 * then the fifth byte whole, shifted by 28 (what lies past bit 31 falls off). */
static uint32_t varint32(const uint8_t *p, size_t n)
{
    uint32_t v = p[0] & 0x7f;
    for (size_t i = 1; i < n && i < 4; i++)
        v |= (uint32_t)(p[i] & 0x7f) << (7 * i);
    if (n > 4) v |= (uint32_t)p[4] << 28;
    return v;
}

/* protobuf-c's 64-bit reading: the 32-bit one under five bytes, else seven bits from each. */
static uint64_t varint64(const uint8_t *p, size_t n)
{
    if (n < 5) return varint32(p, n);
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
    return v;
}

static int32_t unzigzag32(uint32_t v)
{
    return (int32_t)((v >> 1) ^ (0u - (v & 1)));
}

static int64_t unzigzag64(uint64_t v)
{
    return (int64_t)((v >> 1) ^ (0u - (v & 1)));
}

/* memcpy for a string's or bytes' value: one of 4 to 16 bytes (short names, ids, small payloads)
 * copied as two overlapping loads and stores, without a call into the C library's memcpy. */
static inline void copy_value(void *dst, const void *src, size_t n)
{
    if (n >= 8 && n <= 16) {
        uint64_t head, tail;
        memcpy(&head, src, 8);
        memcpy(&tail, (const char *)src + n - 8, 8);
        memcpy(dst, &head, 8);
        memcpy((char *)dst + n - 8, &tail, 8);
    } else if (n >= 4 && n < 8) {
        uint32_t head, tail;
        memcpy(&head, src, 4);
        memcpy(&tail, (const char *)src + n - 4, 4);
        memcpy(dst, &head, 4);
        memcpy((char *)dst + n - 4, &tail, 4);
    } else {
        memcpy(dst, src, n);
    }
}

/* The wire type a field of this type must come with (protobuf-c refuses the others; a bool it
 * reads from any, which is left to it): a table, read once per field each way, not a switch. */
static const uint8_t WIRE_TYPE[PROTOBUF_C_TYPE_MESSAGE + 1] = {
    [PROTOBUF_C_TYPE_SFIXED32] = PROTOBUF_C_WIRE_TYPE_32BIT,
    [PROTOBUF_C_TYPE_FIXED32] = PROTOBUF_C_WIRE_TYPE_32BIT,
    [PROTOBUF_C_TYPE_FLOAT] = PROTOBUF_C_WIRE_TYPE_32BIT,
    [PROTOBUF_C_TYPE_SFIXED64] = PROTOBUF_C_WIRE_TYPE_64BIT,
    [PROTOBUF_C_TYPE_FIXED64] = PROTOBUF_C_WIRE_TYPE_64BIT,
    [PROTOBUF_C_TYPE_DOUBLE] = PROTOBUF_C_WIRE_TYPE_64BIT,
    [PROTOBUF_C_TYPE_STRING] = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
    [PROTOBUF_C_TYPE_BYTES] = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
}; /* the rest: PROTOBUF_C_WIRE_TYPE_VARINT, 0 (a message is never flat) */

static int wire_type_of(ProtobufCType t)
{
    return (unsigned)t <= PROTOBUF_C_TYPE_MESSAGE ? WIRE_TYPE[t] : PROTOBUF_C_WIRE_TYPE_VARINT;
}

/* The field numbered id: the one after the previous field first (fields usually come in order),
 * else protobuf-c's lookup. */
static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *d, uint32_t id,
                                                  unsigned *next)
{
    const ProtobufCFieldDescriptor *f;
    if (*next < d->n_fields && d->fields[*next].id == id)
        f = &d->fields[*next];
    else if (!(f = protobuf_c_message_descriptor_get_field(d, id)))
        return NULL;
    *next = (unsigned)(f - d->fields) + 1;
    return f;
}

/* Decodes one field's value at p (n bytes: the varint, the fixed bytes, or the length-prefixed
 * body without its prefix) into the message. 0, or -1 when out of memory. */
static int store(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const uint8_t *p, size_t n,
                 ft_arena *arena)
{
    void *member = (char *)m + f->offset;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_ENUM:
    case PROTOBUF_C_TYPE_UINT32: {
        uint32_t v = varint32(p, n);
        memcpy(member, &v, sizeof v);
        break;
    }
    case PROTOBUF_C_TYPE_SINT32:
        *(int32_t *)member = unzigzag32(varint32(p, n));
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_UINT64:
        *(uint64_t *)member = varint64(p, n);
        break;
    case PROTOBUF_C_TYPE_SINT64:
        *(int64_t *)member = unzigzag64(varint64(p, n));
        break;
    case PROTOBUF_C_TYPE_BOOL: {
        protobuf_c_boolean b = 0;
        for (size_t i = 0; i < n; i++)
            if (p[i] & 0x7f) b = 1;
        *(protobuf_c_boolean *)member = b;
        break;
    }
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        memcpy(member, p, n); /* little-endian, as the wire */
        break;
    case PROTOBUF_C_TYPE_STRING: {
        char *s = ft_arena_alloc(arena, n + 1);
        if (!s) return -1;
        copy_value(s, p, n);
        s[n] = '\0';
        *(char **)member = s;
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *bd = member;
        bd->data = NULL;
        if (n) {
            if (!(bd->data = ft_arena_alloc(arena, n))) return -1;
            copy_value(bd->data, p, n);
        }
        bd->len = n;
        break;
    }
    default:
        return -1; /* not a flat type: ft_pb_is_flat said so */
    }
    if (f->quantifier_offset) *(protobuf_c_boolean *)((char *)m + f->quantifier_offset) = 1;
    return 0;
}

ProtobufCMessage *ft_pb_unpack_flat(const ProtobufCMessageDescriptor *d, ft_arena *arena,
                                    ft_iobuf *in)
{
    size_t len = ft_iobuf_size(in);
    if (len >= FLAT_MAX_BYTES) return NULL;
    /* an empty message has no bytes to point at: p and end both NULL (NULL + 0 is undefined) */
    const uint8_t *p = NULL;
    if (ft_iobuf_slice_count(in) == 1) /* as a frame cut from a read buffer usually comes */
        p = (const uint8_t *)in->slices[in->start].block->data + in->slices[in->start].off;
    else if (len && !(p = ft_iobuf_flatten(in)))
        return NULL;
    const uint8_t *end = len ? p + len : p;
    ProtobufCMessage *m = ft_arena_alloc(arena, d->sizeof_message);
    if (!m) return NULL;
    d->message_init(m);
    unsigned next = 0;
    while (p < end) {
        /* the key: field numbers up to 2047 (one or two bytes), as small messages have them */
        uint32_t id;
        int wire = p[0] & 7;
        if (!(p[0] & 0x80)) {
            id = p[0] >> 3;
            p += 1;
        } else if (end - p >= 2 && !(p[1] & 0x80)) {
            id = (uint32_t)(p[0] & 0x7f) >> 3 | (uint32_t)p[1] << 4;
            p += 2;
        } else {
            return NULL;
        }
        const ProtobufCFieldDescriptor *f = id ? find_field(d, id, &next) : NULL;
        if (!f || wire != wire_type_of(f->type)) return NULL; /* unknown, or protobuf-c's call */
        size_t n;
        switch (wire) {
        case PROTOBUF_C_WIRE_TYPE_VARINT:
            if (!(n = varint_len(p, end))) return NULL;
            break;
        case PROTOBUF_C_WIRE_TYPE_32BIT:
            n = 4;
            break;
        case PROTOBUF_C_WIRE_TYPE_64BIT:
            n = 8;
            break;
        default: { /* length-prefixed: a prefix of at most four bytes (bodies under 256 MiB) */
            if (p < end && !(p[0] & 0x80)) { /* under 128 bytes, as small messages' are */
                n = p[0];
                p += 1;
                break;
            }
            size_t k = varint_len(p, end);
            if (!k || k > 4) return NULL;
            n = varint32(p, k);
            p += k;
            break;
        }
        }
        if ((size_t)(end - p) < n) return NULL;
        if (store(m, f, p, n, arena) != 0) return NULL;
        p += n;
    }
    return m;
}

/* Writes the varint of v at out (when out is not NULL); returns its length. */
static size_t put_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        if (out) out[n] = (uint8_t)(v | 0x80);
        v >>= 7;
        n++;
    }
    if (out) out[n] = (uint8_t)v;
    return n + 1;
}

static size_t put_fixed(uint8_t *out, const void *member, size_t n)
{
    if (out) memcpy(out, member, n);
    return n;
}

/* Whether the field is written: protobuf-c's rule for its label (see the top of the file). */
static int present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const void *member)
{
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL) {
        if (f->type == PROTOBUF_C_TYPE_STRING) {
            const char *str = *(char *const *)member;
            return str && str != f->default_value;
        }
        return *(const protobuf_c_boolean *)((const char *)m + f->quantifier_offset) != 0;
    }
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return *(const uint64_t *)member != 0;
    case PROTOBUF_C_TYPE_FLOAT:
        return *(const float *)member != 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *)member != 0;
    case PROTOBUF_C_TYPE_STRING: {
        const char *str = *(char *const *)member;
        return str && *str;
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)member)->len != 0;
    default: /* the 32-bit numbers, enums and bools */
        return *(const uint32_t *)member != 0;
    }
}

/* Writes (out not NULL) or sizes (out NULL) the message. */
/* Writes (out not NULL: at most room bytes) or sizes (out NULL) the message. SIZE_MAX when it may
 * not fit in room: each field is checked against its largest encoding before it is written. */
static size_t flat_pack(const ProtobufCMessage *m, uint8_t *out, size_t room)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    size_t n = 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const void *member = (const char *)m + f->offset;
        if (!present(m, f, member)) continue;
        if (out && room != SIZE_MAX) {
            /* key (at most 5 bytes) and value (10), or prefix (5) and body */
            size_t body = f->type == PROTOBUF_C_TYPE_BYTES
                              ? ((const ProtobufCBinaryData *)member)->len
                          : f->type == PROTOBUF_C_TYPE_STRING ? strlen(*(char *const *)member)
                                                              : 10;
            if (room - n < 10 + body || body > room) return SIZE_MAX;
        }
        n += put_varint(out ? out + n : NULL,
                        (uint64_t)f->id << 3 | (unsigned)wire_type_of(f->type));
        uint8_t *at = out ? out + n : NULL;
        switch (f->type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_ENUM: /* a negative one sign-extended to ten bytes */
            n += put_varint(at, (uint64_t)(int64_t) * (const int32_t *)member);
            break;
        case PROTOBUF_C_TYPE_UINT32:
            n += put_varint(at, *(const uint32_t *)member);
            break;
        case PROTOBUF_C_TYPE_SINT32: {
            int32_t v = *(const int32_t *)member;
            n += put_varint(at, v < 0 ? ~((uint32_t)v << 1) : (uint32_t)v << 1);
            break;
        }
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_UINT64:
            n += put_varint(at, *(const uint64_t *)member);
            break;
        case PROTOBUF_C_TYPE_SINT64: {
            int64_t v = *(const int64_t *)member;
            n += put_varint(at, v < 0 ? ~((uint64_t)v << 1) : (uint64_t)v << 1);
            break;
        }
        case PROTOBUF_C_TYPE_BOOL:
            n += put_varint(at, *(const protobuf_c_boolean *)member ? 1 : 0);
            break;
        case PROTOBUF_C_TYPE_SFIXED32:
        case PROTOBUF_C_TYPE_FIXED32:
        case PROTOBUF_C_TYPE_FLOAT:
            n += put_fixed(at, member, 4);
            break;
        case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_FIXED64:
        case PROTOBUF_C_TYPE_DOUBLE:
            n += put_fixed(at, member, 8);
            break;
        case PROTOBUF_C_TYPE_STRING: {
            const char *str = *(char *const *)member;
            size_t len = str ? strlen(str) : 0;
            n += put_varint(at, len);
            if (out && len) copy_value(out + n, str, len);
            n += len;
            break;
        }
        default: { /* bytes */
            const ProtobufCBinaryData *bd = member;
            n += put_varint(at, bd->len);
            if (out && bd->len) copy_value(out + n, bd->data, bd->len);
            n += bd->len;
            break;
        }
        }
    }
    return n;
}

size_t ft_pb_flat_packed_size(const ProtobufCMessage *msg)
{
    return flat_pack(msg, NULL, 0);
}

size_t ft_pb_flat_pack(const ProtobufCMessage *msg, uint8_t *out)
{
    return flat_pack(msg, out, SIZE_MAX);
}

size_t ft_pb_flat_pack_into(const ProtobufCMessage *msg, uint8_t *out, size_t room)
{
    return flat_pack(msg, out, room);
}
