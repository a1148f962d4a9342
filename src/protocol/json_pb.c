/* JSON <-> protobuf by descriptor (see json_pb.h).
 *
 * JSON in: base/json_text.c reads the text strictly into a json-c tree (bounded depth, UTF-8
 * checked); the tree is then walked against the descriptor, building the message field by field
 * with the caller's allocator, so that protobuf_c_message_free_unpacked frees a finished message
 * and a half-built one alike (counts are set with their arrays, a oneof's case with its member).
 * JSON out: the message is walked in field-number order and written with ft_strbuf; float and
 * double take the shortest of %.{6,15}g and %.{9,17}g that reads back the same value.
 *
 * Wire bytes in (ft_pb_bytes_to_json): protobuf-c's unpack recurses once per nested message and
 * has no limit of its own, so the bytes are walked against the descriptor first and refused past
 * FT_JSON_PB_DEPTH levels (ft_pb_wire_too_deep, protocol/pb_wire.h). */
#include "protocol/json_pb.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base64.h"
#include "base/json_text.h"
#include "ftrpc/common.h"
#include "protocol/pb_wire.h"

#define MEMBER(msg, off) ((void *)((char *)(msg) + (off)))
#define CMEMBER(msg, off) ((const void *)((const char *)(msg) + (off)))

/* ---- shared: names, paths, errors ---- */

/* The field's JSON name: protoc's ToJsonName, an underscore dropped and the next letter raised. */
static void json_name(const char *name, char *out, size_t cap)
{
    size_t o = 0;
    bool up = false;
    for (const char *p = name; *p && o + 1 < cap; p++) {
        if (*p == '_') {
            up = true;
            continue;
        }
        out[o++] = up ? (char)toupper((unsigned char)*p) : *p;
        up = false;
    }
    out[o] = '\0';
}

/* A map field: repeated, of a message protoc made for it, "<CamelField>Entry" with key = 1 and
 * value = 2, neither repeated, the key a scalar (protobuf-c's descriptors do not carry the
 * map_entry option, so the shape decides; a message of the user's own may share the names, and
 * read as a map one with a repeated field would have scalars written over its array pointers). */
static bool is_map(const ProtobufCFieldDescriptor *f)
{
    if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE) return false;
    const ProtobufCMessageDescriptor *e = f->descriptor;
    if (!e || e->n_fields != 2 || e->fields[0].id != 1 || e->fields[1].id != 2 ||
        strcmp(e->fields[0].name, "key") || strcmp(e->fields[1].name, "value") ||
        e->fields[0].label == PROTOBUF_C_LABEL_REPEATED ||
        e->fields[1].label == PROTOBUF_C_LABEL_REPEATED ||
        e->fields[0].type == PROTOBUF_C_TYPE_MESSAGE)
        return false;
    char camel[256];
    json_name(f->name, camel, sizeof camel - 5); /* protoc: ToCamelCase(name) + "Entry" */
    camel[0] = (char)toupper((unsigned char)camel[0]);
    strcat(camel, "Entry");
    return !strcmp(e->short_name, camel);
}

typedef struct walk {
    char *err;
    size_t errlen;
    char path[256]; /* "a.b[2].c" of the value at hand */
    size_t plen;
    int depth;
    int rc;
} walk;

static size_t path_push(walk *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t path_push(walk *w, const char *fmt, ...)
{
    size_t was = w->plen;
    if (w->plen < sizeof w->path - 1) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(w->path + w->plen, sizeof w->path - w->plen, fmt, ap);
        va_end(ap);
        if (n > 0) w->plen += (size_t)n;
        if (w->plen > sizeof w->path - 1) w->plen = sizeof w->path - 1;
    }
    return was;
}

static void path_pop(walk *w, size_t was)
{
    w->plen = was;
    w->path[was] = '\0';
}

/* Records the first failure: "<path>: <reason>" (or the reason alone at the top). */
static int fail(walk *w, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(walk *w, int rc, const char *fmt, ...)
{
    if (w->rc) return w->rc;
    w->rc = rc;
    if (w->err && w->errlen) {
        int n = w->plen ? snprintf(w->err, w->errlen, "%s: ", w->path) : 0;
        if (n < 0 || (size_t)n >= w->errlen) n = 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->err + n, w->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return rc;
}

#define NOMEM(w) fail(w, FTRPC_ENOMEM, "out of memory")

/* ---- JSON in ---- */

/* Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF): json-c's own check
 * lets overlong forms through, and protobuf strings must be UTF-8 both ways. */
static bool utf8_valid(const unsigned char *s)
{
    while (*s) {
        unsigned c = *s++, n = c < 0x80             ? 0
                               : (c & 0xe0) == 0xc0 ? 1
                               : (c & 0xf0) == 0xe0 ? 2
                               : (c & 0xf8) == 0xf0 ? 3
                                                    : 9;
        if (n == 9 || (n == 1 && c < 0xc2) || (n == 3 && c > 0xf4)) return false;
        unsigned cp = c & (0x3fu >> n);
        for (unsigned i = 0; i < n; i++) {
            if ((*s & 0xc0) != 0x80) return false;
            cp = cp << 6 | (*s++ & 0x3fu);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
    }
    return true;
}

typedef struct dec {
    walk w;
    ProtobufCAllocator *a;
} dec;

static void *dalloc(dec *d, size_t n)
{
    void *p = d->a->alloc(d->a->allocator_data, n ? n : 1);
    if (p) memset(p, 0, n ? n : 1);
    return p;
}

/* A zeroed message of type md made ready: generated types have their init function, run-time
 * ones (pb_descset.c) start at zero. */
static void msg_init(const ProtobufCMessageDescriptor *md, ProtobufCMessage *msg)
{
    if (md->message_init)
        md->message_init(msg);
    else
        msg->descriptor = md;
}

static const char *type_name(json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_null:
        return "null";
    case json_type_boolean:
        return "a boolean";
    case json_type_double:
    case json_type_int:
        return "a number";
    case json_type_object:
        return "an object";
    case json_type_array:
        return "an array";
    default:
        return "a string";
    }
}

/* An integer from a JSON number (integral) or a decimal string, within [min, max] (signed) or
 * [0, umax] (unsigned). */
static int dec_int(dec *d, json_object *v, bool is_unsigned, int64_t min, int64_t max,
                   uint64_t umax, int64_t *s, uint64_t *u)
{
    walk *w = &d->w;
    bool neg = false;
    uint64_t mag = 0; /* |value| */
    if (json_object_is_type(v, json_type_int)) {
        int64_t i = json_object_get_int64(v);
        if (i < 0) {
            neg = true;
            mag = (uint64_t)0 - (uint64_t)i;
        } else {
            mag = i == INT64_MAX ? json_object_get_uint64(v) : (uint64_t)i;
        }
    } else if (json_object_is_type(v, json_type_double)) {
        double x = json_object_get_double(v);
        if (!isfinite(x) || x != floor(x) || fabs(x) >= 18446744073709551616.0)
            return fail(w, FTRPC_EINVAL, "%g is not an integer in range", x);
        neg = x < 0;
        mag = (uint64_t)fabs(x);
    } else if (json_object_is_type(v, json_type_string)) {
        const char *t = json_object_get_string(v);
        size_t n = (size_t)json_object_get_string_len(v);
        int64_t i;
        if (n > 0 && t[0] == '-' && ft_json_i64_text(t, n, &i) == 0) {
            neg = true;
            mag = (uint64_t)0 - (uint64_t)i;
        } else if (ft_json_u64_text(t, n, &mag) != 0) {
            return fail(w, FTRPC_EINVAL, "\"%.40s\" is not an integer", t);
        }
    } else {
        return fail(w, FTRPC_EINVAL, "expected an integer, not %s", type_name(v));
    }
    if (neg && mag == 0) neg = false;
    if (is_unsigned) {
        if (neg || mag > umax) return fail(w, FTRPC_EINVAL, "integer out of range");
        *u = mag;
        return 0;
    }
    if (neg ? mag > (uint64_t)0 - (uint64_t)min : mag > (uint64_t)max)
        return fail(w, FTRPC_EINVAL, "integer out of range");
    *s = neg ? (int64_t)((uint64_t)0 - mag) : (int64_t)mag;
    return 0;
}

static int dec_float(dec *d, json_object *v, bool is_float, double *out)
{
    walk *w = &d->w;
    double x;
    if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) {
        x = json_object_get_double(v);
    } else if (json_object_is_type(v, json_type_string)) {
        const char *t = json_object_get_string(v);
        if (!strcmp(t, "NaN")) {
            x = NAN;
        } else if (!strcmp(t, "Infinity")) {
            x = INFINITY;
        } else if (!strcmp(t, "-Infinity")) {
            x = -INFINITY;
        } else {
            char *end;
            errno = 0;
            x = strtod(t, &end);
            if (!*t || *end || errno || isspace((unsigned char)*t) || !isfinite(x))
                return fail(w, FTRPC_EINVAL, "\"%.40s\" is not a number", t);
        }
    } else {
        return fail(w, FTRPC_EINVAL, "expected a number, not %s", type_name(v));
    }
    /* past FLT_MAX by half a unit in the last place it rounds to infinity: refused (and the
     * conversion of such a double to float would be undefined) */
    if (is_float && isfinite(x) && fabs(x) >= (double)FLT_MAX + ldexp(1.0, 103))
        return fail(w, FTRPC_EINVAL, "number out of range for a float");
    *out = x;
    return 0;
}

static int dec_bytes(dec *d, json_object *v, ProtobufCBinaryData *out)
{
    walk *w = &d->w;
    if (!json_object_is_type(v, json_type_string))
        return fail(w, FTRPC_EINVAL, "expected a base64 string, not %s", type_name(v));
    const char *t = json_object_get_string(v);
    size_t n = (size_t)json_object_get_string_len(v);
    /* the URL-safe alphabet and missing padding are accepted, as protobuf's parsers do */
    char *std = malloc(n + 4);
    uint8_t *data = dalloc(d, n / 4 * 3 + 3);
    if (!std || !data) {
        free(std);
        if (data) d->a->free(d->a->allocator_data, data);
        return NOMEM(w);
    }
    for (size_t i = 0; i < n; i++)
        std[i] = t[i] == '-' ? '+' : t[i] == '_' ? '/' : t[i];
    size_t sn = n;
    while (sn % 4)
        std[sn++] = '=';
    size_t len = 0;
    int rc = ft_b64_decode(std, sn, data, n / 4 * 3 + 3, &len);
    free(std);
    if (rc != 0) {
        d->a->free(d->a->allocator_data, data);
        return fail(w, FTRPC_EINVAL, "not base64");
    }
    out->data = data;
    out->len = len;
    return 0;
}

static int dec_message(dec *d, const ProtobufCMessageDescriptor *md, json_object *obj,
                       ProtobufCMessage **out);

/* One value of field f (an element, for a repeated field) into dst. */
static int dec_value(dec *d, const ProtobufCFieldDescriptor *f, json_object *v, void *dst)
{
    walk *w = &d->w;
    int64_t s = 0;
    uint64_t u = 0;
    double x = 0;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if (dec_int(d, v, false, INT32_MIN, INT32_MAX, 0, &s, &u)) return w->rc;
        *(int32_t *)dst = (int32_t)s;
        return 0;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (dec_int(d, v, true, 0, 0, UINT32_MAX, &s, &u)) return w->rc;
        *(uint32_t *)dst = (uint32_t)u;
        return 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (dec_int(d, v, false, INT64_MIN, INT64_MAX, 0, &s, &u)) return w->rc;
        *(int64_t *)dst = s;
        return 0;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if (dec_int(d, v, true, 0, 0, UINT64_MAX, &s, &u)) return w->rc;
        *(uint64_t *)dst = u;
        return 0;
    case PROTOBUF_C_TYPE_FLOAT:
        if (dec_float(d, v, true, &x)) return w->rc;
        *(float *)dst = (float)x;
        return 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        if (dec_float(d, v, false, &x)) return w->rc;
        *(double *)dst = x;
        return 0;
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_object_is_type(v, json_type_boolean))
            return fail(w, FTRPC_EINVAL, "expected true or false, not %s", type_name(v));
        *(protobuf_c_boolean *)dst = json_object_get_boolean(v) ? 1 : 0;
        return 0;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        if (json_object_is_type(v, json_type_string)) {
            const ProtobufCEnumValue *ev =
                protobuf_c_enum_descriptor_get_value_by_name(ed, json_object_get_string(v));
            if (!ev)
                return fail(w, FTRPC_EINVAL, "\"%.60s\" is not a value of %s",
                            json_object_get_string(v), ed->name);
            *(int32_t *)dst = ev->value;
            return 0;
        }
        /* a number: proto3 enums are open, so any int32 is kept */
        if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
            return fail(w, FTRPC_EINVAL, "expected an enum name or number, not %s", type_name(v));
        if (dec_int(d, v, false, INT32_MIN, INT32_MAX, 0, &s, &u)) return w->rc;
        *(int32_t *)dst = (int32_t)s;
        return 0;
    }
    case PROTOBUF_C_TYPE_STRING: {
        if (!json_object_is_type(v, json_type_string))
            return fail(w, FTRPC_EINVAL, "expected a string, not %s", type_name(v));
        size_t n = (size_t)json_object_get_string_len(v);
        char *str = dalloc(d, n + 1);
        if (!str) return NOMEM(w);
        memcpy(str, json_object_get_string(v), n);
        /* protobuf-c's strings end at their first NUL: the rest would be dropped unseen */
        int nul = memchr(str, '\0', n) != NULL;
        if (nul || !utf8_valid((const unsigned char *)str)) {
            d->a->free(d->a->allocator_data, str);
            return fail(w, FTRPC_EINVAL,
                        nul ? "string holds U+0000 (protobuf-c strings end there)"
                            : "string is not valid UTF-8");
        }
        *(char **)dst = str;
        return 0;
    }
    case PROTOBUF_C_TYPE_BYTES:
        return dec_bytes(d, v, dst);
    case PROTOBUF_C_TYPE_MESSAGE:
        return dec_message(d, f->descriptor, v, (ProtobufCMessage **)dst);
    }
    return fail(w, FTRPC_EINVAL, "field type %d not supported", (int)f->type);
}

static size_t value_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    default:
        return 4;
    }
}

/* A map key (always a JSON string) into the entry's key field. */
static int dec_map_key(dec *d, const ProtobufCFieldDescriptor *kf, const char *key, void *dst)
{
    walk *w = &d->w;
    if (kf->type == PROTOBUF_C_TYPE_BOOL) {
        if (strcmp(key, "true") && strcmp(key, "false"))
            return fail(w, FTRPC_EINVAL, "map key \"%.40s\" is not true or false", key);
        *(protobuf_c_boolean *)dst = key[0] == 't';
        return 0;
    }
    json_object *k = json_object_new_string(key);
    if (!k) return NOMEM(w);
    int rc = dec_value(d, kf, k, dst);
    json_object_put(k);
    return rc;
}

/* A repeated field (array) or a map field (object). */
static int dec_repeated(dec *d, const ProtobufCFieldDescriptor *f, json_object *v, void *msg)
{
    walk *w = &d->w;
    bool map = is_map(f);
    if (map ? !json_object_is_type(v, json_type_object) : !json_object_is_type(v, json_type_array))
        return fail(w, FTRPC_EINVAL, "expected %s, not %s", map ? "an object" : "an array",
                    type_name(v));
    size_t n = map ? (size_t)json_object_object_length(v) : json_object_array_length(v);
    if (n == 0) return 0;
    void *arr = dalloc(d, n * value_size(f));
    if (!arr) return NOMEM(w);
    *(void **)MEMBER(msg, f->offset) = arr;
    *(size_t *)MEMBER(msg, f->quantifier_offset) = n;
    if (!map) {
        for (size_t i = 0; i < n; i++) {
            size_t was = path_push(w, "[%zu]", i);
            json_object *e = json_object_array_get_idx(v, i);
            if (!e || json_object_is_type(e, json_type_null))
                return fail(w, FTRPC_EINVAL, "null in an array");
            if (dec_value(d, f, e, (char *)arr + i * value_size(f))) return w->rc;
            path_pop(w, was);
        }
        return 0;
    }
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    size_t i = 0;
    json_object_object_foreach(v, key, val)
    {
        size_t was = path_push(w, "[\"%.40s\"]", key);
        ProtobufCMessage *entry = dalloc(d, ed->sizeof_message);
        if (!entry) return NOMEM(w);
        msg_init(ed, entry);
        ((ProtobufCMessage **)arr)[i++] = entry;
        if (dec_map_key(d, &ed->fields[0], key, MEMBER(entry, ed->fields[0].offset))) return w->rc;
        const ProtobufCFieldDescriptor *vf = &ed->fields[1];
        if (val && !json_object_is_type(val, json_type_null)) {
            if (dec_value(d, vf, val, MEMBER(entry, vf->offset))) return w->rc;
            if (vf->label == PROTOBUF_C_LABEL_OPTIONAL && vf->type != PROTOBUF_C_TYPE_STRING &&
                vf->type != PROTOBUF_C_TYPE_MESSAGE)
                *(protobuf_c_boolean *)MEMBER(entry, vf->quantifier_offset) = 1;
        }
        if (ed->fields[0].label == PROTOBUF_C_LABEL_OPTIONAL &&
            ed->fields[0].type != PROTOBUF_C_TYPE_STRING)
            *(protobuf_c_boolean *)MEMBER(entry, ed->fields[0].quantifier_offset) = 1;
        path_pop(w, was);
    }
    return 0;
}

/* The field named `key` (proto name or JSON name), or NULL. */
static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *md,
                                                  const char *key)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(md, key);
    if (f) return f;
    char jn[256];
    for (unsigned i = 0; i < md->n_fields; i++) {
        json_name(md->fields[i].name, jn, sizeof jn);
        if (!strcmp(jn, key)) return &md->fields[i];
    }
    return NULL;
}

static int dec_message(dec *d, const ProtobufCMessageDescriptor *md, json_object *obj,
                       ProtobufCMessage **out)
{
    walk *w = &d->w;
    if (!json_object_is_type(obj, json_type_object))
        return fail(w, FTRPC_EINVAL, "expected an object (%s), not %s", md->name, type_name(obj));
    if (++w->depth > FT_JSON_PB_DEPTH)
        return fail(w, FTRPC_EINVAL, "messages nested deeper than %d", FT_JSON_PB_DEPTH);
    ProtobufCMessage *msg = dalloc(d, md->sizeof_message);
    if (!msg) return NOMEM(w);
    msg_init(md, msg);
    *out = msg; /* from here on the caller's free_unpacked frees what is built */
    uint8_t *seen = calloc(md->n_fields + 1, 1);
    if (!seen) return NOMEM(w);
    json_object_object_foreach(obj, key, val)
    {
        size_t was = path_push(w, w->plen ? ".%s" : "%s", key);
        const ProtobufCFieldDescriptor *f = find_field(md, key);
        if (!f) {
            char full[sizeof w->path];
            memcpy(full, w->path, sizeof full);
            path_pop(w, 0); /* the path is in the quotes */
            fail(w, FTRPC_EINVAL, "unknown field \"%s\" (%s has no such field)", full, md->name);
            break;
        }
        size_t fi = (size_t)(f - md->fields);
        if (seen[fi]) {
            fail(w, FTRPC_EINVAL, "field given twice (as %s and its other name)", key);
            break;
        }
        if (!val || json_object_is_type(val, json_type_null)) {
            seen[fi] = 2; /* null: the field left out (a required one is then missing) */
            path_pop(w, was);
            continue;
        }
        seen[fi] = 1;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            if (dec_repeated(d, f, val, msg)) break;
        } else {
            if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
                uint32_t *c = MEMBER(msg, f->quantifier_offset);
                if (*c != 0) {
                    fail(w, FTRPC_EINVAL, "another member of its oneof is set already");
                    break;
                }
                *c = f->id; /* set first: free_unpacked then frees a half-built member */
            }
            if (dec_value(d, f, val, MEMBER(msg, f->offset))) break;
            if (f->label == PROTOBUF_C_LABEL_OPTIONAL &&
                !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && f->type != PROTOBUF_C_TYPE_STRING &&
                f->type != PROTOBUF_C_TYPE_MESSAGE)
                *(protobuf_c_boolean *)MEMBER(msg, f->quantifier_offset) = 1;
        }
        path_pop(w, was);
    }
    for (unsigned i = 0; i < md->n_fields && w->rc == 0; i++)
        if (md->fields[i].label == PROTOBUF_C_LABEL_REQUIRED && seen[i] != 1)
            fail(w, FTRPC_EINVAL, "required field \"%s\" missing (%s)", md->fields[i].name,
                 md->name);
    free(seen);
    w->depth--;
    return w->rc;
}

static void *sys_alloc(void *data, size_t n)
{
    (void)data;
    return malloc(n);
}

static void sys_free(void *data, void *p)
{
    (void)data;
    free(p);
}

static ProtobufCAllocator SYS_ALLOC = {sys_alloc, sys_free, NULL};

int ft_json_to_pb(const ProtobufCMessageDescriptor *desc, const char *json, size_t len,
                  ProtobufCAllocator *alloc, ProtobufCMessage **out, char *err, size_t errlen)
{
    dec d = {.w = {.err = err, .errlen = errlen}, .a = alloc ? alloc : &SYS_ALLOC};
    if (len > FT_JSON_PB_MAX_BYTES)
        return fail(&d.w, FTRPC_EINVAL, "JSON text larger than %zu bytes", FT_JSON_PB_MAX_BYTES);
    const char *why = NULL;
    /* a message level takes up to two JSON levels (a repeated or map field, then the message):
     * whatever ft_pb_to_json writes reads back; the message depth is bounded in dec_message */
    json_object *root = ft_json_parse_object(json, len, 2 * FT_JSON_PB_DEPTH + 1, &why);
    if (!root) return fail(&d.w, FTRPC_EINVAL, "%s", why ? why : "not JSON");
    ProtobufCMessage *msg = NULL;
    dec_message(&d, desc, root, &msg);
    json_object_put(root);
    if (d.w.rc) {
        protobuf_c_message_free_unpacked(msg, d.a);
        return d.w.rc;
    }
    *out = msg;
    return 0;
}

/* ---- JSON out ---- */

typedef struct enc {
    walk w;
    ft_strbuf *sb;
} enc;

static int put(enc *e, const char *s)
{
    if (ft_strbuf_appends(e->sb, s)) return NOMEM(&e->w);
    return 0;
}

static int put_string(enc *e, const char *s)
{
    if (!s) s = "";
    if (!utf8_valid((const unsigned char *)s))
        return fail(&e->w, FTRPC_EINVAL, "string is not valid UTF-8");
    if (ft_strbuf_append_json(e->sb, s)) return NOMEM(&e->w);
    return 0;
}

/* The shortest %g of x (at `lo` digits, else `hi`) that reads back as x; NaN and infinities as
 * protobuf's strings. */
static int put_float(enc *e, double x, bool is_float)
{
    if (isnan(x)) return put(e, "\"NaN\"");
    if (isinf(x)) return put(e, x > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    char buf[40];
    snprintf(buf, sizeof buf, "%.*g", is_float ? 6 : 15, x);
    double back = strtod(buf, NULL);
    if (is_float ? (float)back != (float)x : back != x)
        snprintf(buf, sizeof buf, "%.*g", is_float ? 9 : 17, x);
    return put(e, buf);
}

static int enc_message(enc *e, const ProtobufCMessage *m);

static int enc_value(enc *e, const ProtobufCFieldDescriptor *f, const void *v)
{
    char buf[48];
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        snprintf(buf, sizeof buf, "%" PRId32, *(const int32_t *)v);
        return put(e, buf);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        snprintf(buf, sizeof buf, "%" PRIu32, *(const uint32_t *)v);
        return put(e, buf);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        snprintf(buf, sizeof buf, "\"%" PRId64 "\"", *(const int64_t *)v);
        return put(e, buf);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        snprintf(buf, sizeof buf, "\"%" PRIu64 "\"", *(const uint64_t *)v);
        return put(e, buf);
    case PROTOBUF_C_TYPE_FLOAT:
        return put_float(e, *(const float *)v, true);
    case PROTOBUF_C_TYPE_DOUBLE:
        return put_float(e, *(const double *)v, false);
    case PROTOBUF_C_TYPE_BOOL:
        return put(e, *(const protobuf_c_boolean *)v ? "true" : "false");
    case PROTOBUF_C_TYPE_ENUM: {
        int32_t n = *(const int32_t *)v;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, n);
        if (ev) return put_string(e, ev->name);
        snprintf(buf, sizeof buf, "%" PRId32, n); /* a value this side does not know */
        return put(e, buf);
    }
    case PROTOBUF_C_TYPE_STRING:
        return put_string(e, *(const char *const *)v);
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = v;
        char *t = malloc(ft_b64_len(b->len) + 3);
        if (!t) return NOMEM(&e->w);
        t[0] = '"';
        ft_b64_encode(b->data, b->len, t + 1);
        strcat(t, "\"");
        int rc = put(e, t);
        free(t);
        return rc;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)v;
        return sub ? enc_message(e, sub) : put(e, "{}");
    }
    }
    return fail(&e->w, FTRPC_EINVAL, "field type %d not supported", (int)f->type);
}

/* A map key as JSON wants it: a string. */
static int enc_map_key(enc *e, const ProtobufCFieldDescriptor *kf, const void *v)
{
    if (kf->type == PROTOBUF_C_TYPE_STRING) return put_string(e, *(const char *const *)v);
    if (kf->type == PROTOBUF_C_TYPE_BOOL)
        return put(e, *(const protobuf_c_boolean *)v ? "\"true\"" : "\"false\"");
    bool quoted = kf->type == PROTOBUF_C_TYPE_INT64 || kf->type == PROTOBUF_C_TYPE_SINT64 ||
                  kf->type == PROTOBUF_C_TYPE_SFIXED64 || kf->type == PROTOBUF_C_TYPE_UINT64 ||
                  kf->type == PROTOBUF_C_TYPE_FIXED64;
    if (!quoted && put(e, "\"")) return e->w.rc;
    if (enc_value(e, kf, v)) return e->w.rc;
    return quoted ? 0 : put(e, "\"");
}

/* Whether a field is there to be written: proto3 fields at their default and absent optional
 * ones are left out. */
static bool present(const ProtobufCFieldDescriptor *f, const ProtobufCMessage *m)
{
    const void *v = CMEMBER(m, f->offset);
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return *(const size_t *)CMEMBER(m, f->quantifier_offset) > 0;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)CMEMBER(m, f->quantifier_offset) == f->id;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE) return *(const void *const *)v != NULL;
    if (f->type == PROTOBUF_C_TYPE_STRING) {
        const char *s = *(const char *const *)v;
        return s && (f->label != PROTOBUF_C_LABEL_NONE || s[0]);
    }
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL)
        return *(const protobuf_c_boolean *)CMEMBER(m, f->quantifier_offset) != 0;
    if (f->label == PROTOBUF_C_LABEL_REQUIRED) return true;
    if (f->type == PROTOBUF_C_TYPE_BYTES) return ((const ProtobufCBinaryData *)v)->len > 0;
    if (f->type == PROTOBUF_C_TYPE_FLOAT)
        return *(const float *)v != 0 || signbit(*(const float *)v);
    if (f->type == PROTOBUF_C_TYPE_DOUBLE)
        return *(const double *)v != 0 || signbit(*(const double *)v);
    static const char zero[8];
    return memcmp(v, zero, value_size(f)) != 0;
}

static int enc_field(enc *e, const ProtobufCFieldDescriptor *f, const ProtobufCMessage *m)
{
    const void *v = CMEMBER(m, f->offset);
    if (f->label != PROTOBUF_C_LABEL_REPEATED) return enc_value(e, f, v);
    size_t n = *(const size_t *)CMEMBER(m, f->quantifier_offset);
    const void *arr = *(const void *const *)v;
    bool map = is_map(f);
    if (put(e, map ? "{" : "[")) return e->w.rc;
    for (size_t i = 0; i < n; i++) {
        size_t was = path_push(&e->w, "[%zu]", i);
        if (i > 0 && put(e, ",")) return e->w.rc;
        if (map) {
            const ProtobufCMessage *entry = ((const ProtobufCMessage *const *)arr)[i];
            const ProtobufCMessageDescriptor *ed = f->descriptor;
            if (!entry) return fail(&e->w, FTRPC_EINVAL, "map entry missing");
            if (enc_map_key(e, &ed->fields[0], CMEMBER(entry, ed->fields[0].offset)) ||
                put(e, ":") || enc_value(e, &ed->fields[1], CMEMBER(entry, ed->fields[1].offset)))
                return e->w.rc;
        } else if (enc_value(e, f, (const char *)arr + i * value_size(f))) {
            return e->w.rc;
        }
        path_pop(&e->w, was);
    }
    return put(e, map ? "}" : "]");
}

static int enc_message(enc *e, const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *md = m->descriptor;
    if (++e->w.depth > FT_JSON_PB_DEPTH)
        return fail(&e->w, FTRPC_EINVAL, "messages nested deeper than %d", FT_JSON_PB_DEPTH);
    if (put(e, "{")) return e->w.rc;
    bool first = true;
    for (unsigned i = 0; i < md->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &md->fields[i];
        if (!present(f, m)) continue;
        char jn[256];
        json_name(f->name, jn, sizeof jn);
        size_t was = path_push(&e->w, e->w.plen ? ".%s" : "%s", jn);
        if ((!first && put(e, ",")) || put_string(e, jn) || put(e, ":") || enc_field(e, f, m))
            return e->w.rc;
        first = false;
        path_pop(&e->w, was);
    }
    e->w.depth--;
    return put(e, "}");
}

int ft_pb_to_json(const ProtobufCMessage *msg, ft_strbuf *out, char *err, size_t errlen)
{
    enc e = {.w = {.err = err, .errlen = errlen}, .sb = out};
    size_t was = out->len;
    if (enc_message(&e, msg) && out->data) {
        out->len = was;
        out->data[was] = '\0';
    }
    return e.w.rc;
}

/* ---- wire bytes ---- */

int ft_json_to_pb_bytes(const ProtobufCMessageDescriptor *desc, const char *json, size_t len,
                        ft_iobuf *out, char *err, size_t errlen)
{
    ProtobufCMessage *msg = NULL;
    int rc = ft_json_to_pb(desc, json, len, NULL, &msg, err, errlen);
    if (rc) return rc;
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        rc = FTRPC_ENOMEM;
    } else {
        protobuf_c_message_pack(msg, buf);
        rc = ft_iobuf_append(out, buf, n);
    }
    free(buf);
    protobuf_c_message_free_unpacked(msg, &SYS_ALLOC);
    if (rc && err && errlen) snprintf(err, errlen, "out of memory");
    return rc;
}

int ft_pb_bytes_to_json(const ProtobufCMessageDescriptor *desc, const void *data, size_t len,
                        ft_strbuf *out, char *err, size_t errlen)
{
    walk w = {.err = err, .errlen = errlen};
    if (ft_pb_wire_too_deep(desc, data, len, FT_JSON_PB_DEPTH))
        return fail(&w, FTRPC_EINVAL, "%s nested deeper than %d", desc->name, FT_JSON_PB_DEPTH);
    ProtobufCMessage *msg = protobuf_c_message_unpack(desc, &SYS_ALLOC, len, data);
    if (!msg) return fail(&w, FTRPC_EINVAL, "not a %s", desc->name);
    int rc = ft_pb_to_json(msg, out, err, errlen);
    protobuf_c_message_free_unpacked(msg, &SYS_ALLOC);
    return rc;
}
