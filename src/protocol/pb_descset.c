/* Run-time message descriptors from a FileDescriptorSet (see pb_descset.h).
 *
 * Three passes over the unpacked set: name every message and enum (nested ones included) and
 * allocate their descriptors, so that a field may refer to a type declared later or in another
 * file; fill enums and messages (fields sorted by number, the field ranges protobuf-c searches,
 * the in-memory layout of each message struct); fill services. Everything lives in one arena freed
 * with the set.
 *
 * The layout of a message follows what protoc-c generates, field by field in declaration order
 * after the ProtobufCMessage header: a repeated field is a size_t count then a pointer to the
 * array; a proto2 optional scalar or bytes field an int has_ flag then the value; a oneof one
 * uint32 case shared by its members, each member at its own offset (generated code overlays them
 * in a union; protobuf-c reads only the member the case names, so separate offsets are as good).
 *
 * protobuf-c's unpack recurses once per level of message nesting: the wire nesting of the set
 * itself is checked first (nest_field), so a hostile set cannot run it out of stack. */
#include "protocol/pb_descset.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ftrpc/common.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "protocol/pb_wire.h"

typedef Google__Protobuf__FileDescriptorProto FileProto;
typedef Google__Protobuf__DescriptorProto MsgProto;
typedef Google__Protobuf__FieldDescriptorProto FieldProto;
typedef Google__Protobuf__EnumDescriptorProto EnumProto;

enum { KIND_MESSAGE, KIND_ENUM };

/* One named type of the set. */
typedef struct type_entry {
    const char *name; /* full name, no leading dot */
    int kind;
    void *desc; /* ProtobufCMessageDescriptor or ProtobufCEnumDescriptor */
    const void *proto;
    const FileProto *file;
} type_entry;

typedef struct arena_block {
    struct arena_block *next;
    max_align_t data[];
} arena_block;

struct ft_descset {
    arena_block *blocks;
    type_entry *types; /* sorted by name once the first pass is done */
    size_t ntypes, cap;
    ProtobufCServiceDescriptor **services;
    size_t nservices;
};

/* ---- arena ---- */

static void *arena_alloc(ft_descset *set, size_t n)
{
    arena_block *b = calloc(1, sizeof *b + (n ? n : 1));
    if (!b) return NULL;
    b->next = set->blocks;
    set->blocks = b;
    return b->data;
}

static char *arena_strdup(ft_descset *set, const char *s)
{
    size_t n = strlen(s);
    char *d = arena_alloc(set, n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

/* "a" + "." + "b", or "b" when a is empty. */
static char *arena_join(ft_descset *set, const char *a, const char *b)
{
    size_t an = strlen(a), bn = strlen(b);
    char *d = arena_alloc(set, an + bn + 2);
    if (!d) return NULL;
    if (an) {
        memcpy(d, a, an);
        d[an++] = '.';
    }
    memcpy(d + an, b, bn + 1);
    return d;
}

void ft_descset_free(ft_descset *set)
{
    if (!set) return;
    for (arena_block *b = set->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(set->types);
    free(set);
}

/* ---- errors ---- */

typedef struct build {
    ft_descset *set;
    char *err;
    size_t errlen;
    int rc;
} build;

static int fail(build *b, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(build *b, int rc, const char *fmt, ...)
{
    if (b->rc == 0) {
        b->rc = rc;
        if (b->err && b->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(b->err, b->errlen, fmt, ap);
            va_end(ap);
        }
    }
    return b->rc;
}

#define NOMEM(b) fail(b, FTRPC_ENOMEM, "out of memory")

/* ---- the nesting check on the wire bytes ---- */

/* Where the walk is: a message of `kind` (0 the set, 1 a file, 2 a message type) at `level`. */
typedef struct nest {
    int kind, level;
} nest;

/* -1 when DescriptorProto.nested_type goes deeper than FT_DESCSET_MAX_NESTING below here. */
static int nest_field(uint64_t field, const uint8_t *p, size_t len, void *arg)
{
    const nest *at = arg;
    nest sub = {at->kind == 0 && field == 1   ? 1 /* FileDescriptorSet.file */
                : at->kind == 1 && field == 4 ? 2 /* FileDescriptorProto.message_type */
                : at->kind == 2 && field == 3 ? 2 /* DescriptorProto.nested_type */
                                              : -1,
                at->kind == 2 ? at->level + 1 : at->level};
    if (sub.kind < 0) return 0;
    if (sub.level > FT_DESCSET_MAX_NESTING) return -1;
    return ft_pb_wire_each_len(p, p + len, nest_field, &sub);
}

/* ---- pass 1: name every type ---- */

static int add_type(build *b, const char *name, int kind, const void *proto, const FileProto *f)
{
    ft_descset *set = b->set;
    if (set->ntypes >= FT_DESCSET_MAX_TYPES)
        return fail(b, FTRPC_EINVAL, "more than %d message and enum types", FT_DESCSET_MAX_TYPES);
    if (set->ntypes == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 64;
        type_entry *t = realloc(set->types, cap * sizeof *t);
        if (!t) return NOMEM(b);
        set->types = t;
        set->cap = cap;
    }
    void *desc = arena_alloc(set, kind == KIND_MESSAGE ? sizeof(ProtobufCMessageDescriptor)
                                                       : sizeof(ProtobufCEnumDescriptor));
    if (!desc) return NOMEM(b);
    set->types[set->ntypes++] =
        (type_entry){.name = name, .kind = kind, .desc = desc, .proto = proto, .file = f};
    return 0;
}

static int name_enum(build *b, const char *scope, const EnumProto *e, const FileProto *f)
{
    if (!e->name || !e->name[0]) return fail(b, FTRPC_EINVAL, "an enum in %s has no name", f->name);
    char *name = arena_join(b->set, scope, e->name);
    if (!name) return NOMEM(b);
    return add_type(b, name, KIND_ENUM, e, f);
}

static int name_message(build *b, const char *scope, const MsgProto *m, const FileProto *f)
{
    if (!m->name || !m->name[0])
        return fail(b, FTRPC_EINVAL, "a message in %s has no name", f->name);
    char *name = arena_join(b->set, scope, m->name);
    if (!name) return NOMEM(b);
    if (add_type(b, name, KIND_MESSAGE, m, f)) return b->rc;
    for (size_t i = 0; i < m->n_nested_type; i++)
        if (name_message(b, name, m->nested_type[i], f)) return b->rc;
    for (size_t i = 0; i < m->n_enum_type; i++)
        if (name_enum(b, name, m->enum_type[i], f)) return b->rc;
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const type_entry *)a)->name, ((const type_entry *)b)->name);
}

static const type_entry *find_type(const ft_descset *set, const char *name)
{
    type_entry key = {.name = name};
    if (!set->types) return NULL;
    return bsearch(&key, set->types, set->ntypes, sizeof key, by_name);
}

/* ---- pass 2: enums ---- */

static int value_cmp(const void *a, const void *b)
{
    int x = ((const ProtobufCEnumValue *)a)->value, y = ((const ProtobufCEnumValue *)b)->value;
    return (x > y) - (x < y);
}

static int value_name_cmp(const void *a, const void *b)
{
    return strcmp(((const ProtobufCEnumValueIndex *)a)->name,
                  ((const ProtobufCEnumValueIndex *)b)->name);
}

/* n_ranges runs of consecutive values in sorted[0..n) (whose i-th value is value(i)) into ranges,
 * plus the sentinel protobuf-c's range search reads. */
static unsigned make_ranges(ProtobufCIntRange *ranges, unsigned n, const void *sorted,
                            size_t stride, size_t value_off)
{
    unsigned nr = 0;
    int prev = 0;
    for (unsigned i = 0; i < n; i++) {
        int v;
        memcpy(&v, (const char *)sorted + i * stride + value_off, sizeof v);
        if (i == 0 || v != prev + 1) ranges[nr++] = (ProtobufCIntRange){v, i};
        prev = v;
    }
    ranges[nr] = (ProtobufCIntRange){0, n};
    return nr;
}

static int fill_enum(build *b, const type_entry *t)
{
    ft_descset *set = b->set;
    const EnumProto *e = t->proto;
    ProtobufCEnumDescriptor *d = t->desc;
    if (e->n_value > FT_DESCSET_MAX_FIELDS)
        return fail(b, FTRPC_EINVAL, "enum %s has too many values", t->name);
    unsigned n = (unsigned)e->n_value;
    ProtobufCEnumValue *vals = arena_alloc(set, (n + 1) * sizeof *vals);
    ProtobufCEnumValueIndex *names = arena_alloc(set, (n + 1) * sizeof *names);
    ProtobufCIntRange *ranges = arena_alloc(set, (n + 1) * sizeof *ranges);
    if (!vals || !names || !ranges) return NOMEM(b);
    for (unsigned i = 0; i < n; i++) {
        const Google__Protobuf__EnumValueDescriptorProto *v = e->value[i];
        if (!v->name || !v->name[0])
            return fail(b, FTRPC_EINVAL, "a value of enum %s has no name", t->name);
        vals[i] = (ProtobufCEnumValue){v->name, v->name, v->number};
    }
    qsort(vals, n, sizeof *vals, value_cmp);
    /* aliases (allow_alias): one entry per number, as protoc-c generates; every name still maps */
    unsigned nv = 0;
    for (unsigned i = 0; i < n; i++)
        if (nv == 0 || vals[i].value != vals[nv - 1].value) vals[nv++] = vals[i];
    for (unsigned i = 0; i < n; i++) {
        const Google__Protobuf__EnumValueDescriptorProto *v = e->value[i];
        ProtobufCEnumValue key = {.value = v->number};
        const ProtobufCEnumValue *hit = bsearch(&key, vals, nv, sizeof key, value_cmp);
        names[i] = (ProtobufCEnumValueIndex){v->name, (unsigned)(hit - vals)};
    }
    qsort(names, n, sizeof *names, value_name_cmp);
    for (unsigned i = 1; i < n; i++)
        if (!strcmp(names[i].name, names[i - 1].name))
            return fail(b, FTRPC_EINVAL, "enum %s names %s twice", t->name, names[i].name);
    *d = (ProtobufCEnumDescriptor){
        .magic = PROTOBUF_C__ENUM_DESCRIPTOR_MAGIC,
        .name = t->name,
        .short_name = e->name,
        .c_name = t->name,
        .package_name = t->file->package ? t->file->package : "",
        .n_values = nv,
        .values = vals,
        .n_value_names = n,
        .values_by_name = names,
        .value_ranges = ranges,
    };
    d->n_value_ranges =
        make_ranges(ranges, nv, vals, sizeof *vals, offsetof(ProtobufCEnumValue, value));
    return 0;
}

/* ---- pass 2: messages ---- */

static const struct {
    ProtobufCType type;
    unsigned size; /* in the message struct; also its alignment */
} TYPES[19] = {
    [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_DOUBLE] = {PROTOBUF_C_TYPE_DOUBLE, 8},
    [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_FLOAT] = {PROTOBUF_C_TYPE_FLOAT, 4},
    [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_INT64] = {PROTOBUF_C_TYPE_INT64, 8},
    [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_UINT64] = {PROTOBUF_C_TYPE_UINT64, 8},
    [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_INT32] = {PROTOBUF_C_TYPE_INT32, 4},
    [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_FIXED64] = {PROTOBUF_C_TYPE_FIXED64, 8},
    [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_FIXED32] = {PROTOBUF_C_TYPE_FIXED32, 4},
    [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_BOOL] = {PROTOBUF_C_TYPE_BOOL,
                                                                   sizeof(protobuf_c_boolean)},
    [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_STRING] = {PROTOBUF_C_TYPE_STRING,
                                                                     sizeof(char *)},
    [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_MESSAGE] = {PROTOBUF_C_TYPE_MESSAGE,
                                                                      sizeof(void *)},
    [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_BYTES] = {PROTOBUF_C_TYPE_BYTES,
                                                                    sizeof(ProtobufCBinaryData)},
    [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_UINT32] = {PROTOBUF_C_TYPE_UINT32, 4},
    [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_ENUM] = {PROTOBUF_C_TYPE_ENUM, 4},
    [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_SFIXED32] = {PROTOBUF_C_TYPE_SFIXED32, 4},
    [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_SFIXED64] = {PROTOBUF_C_TYPE_SFIXED64, 8},
    [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_SINT32] = {PROTOBUF_C_TYPE_SINT32, 4},
    [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_SINT64] = {PROTOBUF_C_TYPE_SINT64, 8},
};

/* Reserves size bytes aligned to align (a power of two) at *off: their offset. */
static unsigned place(size_t *off, unsigned size, unsigned align)
{
    *off = (*off + align - 1) & ~(size_t)(align - 1);
    unsigned at = (unsigned)*off;
    *off += size;
    return at;
}

static int id_cmp(const void *a, const void *b)
{
    uint32_t x = ((const ProtobufCFieldDescriptor *)a)->id;
    uint32_t y = ((const ProtobufCFieldDescriptor *)b)->id;
    return (x > y) - (x < y);
}

/* qsort has no argument: the fields being sorted by name */
static _Thread_local const ProtobufCFieldDescriptor *sort_fields;
static int field_name_cmp(const void *a, const void *b)
{
    return strcmp(sort_fields[*(const unsigned *)a].name, sort_fields[*(const unsigned *)b].name);
}

static int fill_field(build *b, const type_entry *t, const FieldProto *fp, int proto3,
                      ProtobufCFieldDescriptor *fd, size_t *off, unsigned *oneof_case)
{
    const MsgProto *m = t->proto;
    if (!fp->name || !fp->name[0])
        return fail(b, FTRPC_EINVAL, "a field of %s has no name", t->name);
    if (!fp->has_number || fp->number < 1 || fp->number > 536870911)
        return fail(b, FTRPC_EINVAL, "field %s.%s has no valid number", t->name, fp->name);
    unsigned pt = fp->has_type ? (unsigned)fp->type : 0;
    if (pt == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_GROUP)
        return fail(b, FTRPC_EINVAL, "field %s.%s is a group (not supported)", t->name, fp->name);
    if (pt >= sizeof TYPES / sizeof TYPES[0] || TYPES[pt].size == 0) {
        /* protoc always writes the type; a missing one is a message or enum to look up */
        const type_entry *ref =
            fp->type_name && fp->type_name[0] == '.' ? find_type(b->set, fp->type_name + 1) : NULL;
        if (!ref) return fail(b, FTRPC_EINVAL, "field %s.%s has no valid type", t->name, fp->name);
        pt = ref->kind == KIND_ENUM ? GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_ENUM
                                    : GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_MESSAGE;
    }
    fd->name = fp->name;
    fd->id = (uint32_t)fp->number;
    fd->type = TYPES[pt].type;
    if (fd->type == PROTOBUF_C_TYPE_MESSAGE || fd->type == PROTOBUF_C_TYPE_ENUM) {
        /* protoc writes fully qualified names (".pkg.Type") in descriptor sets */
        const type_entry *ref =
            fp->type_name && fp->type_name[0] == '.' ? find_type(b->set, fp->type_name + 1) : NULL;
        int want = fd->type == PROTOBUF_C_TYPE_MESSAGE ? KIND_MESSAGE : KIND_ENUM;
        if (!ref || ref->kind != want)
            return fail(b, FTRPC_EINVAL, "field %s.%s: type %s is not in the set%s", t->name,
                        fp->name, fp->type_name ? fp->type_name : "(none)",
                        " (protoc --include_imports)");
        fd->descriptor = ref->desc;
    }
    int label = fp->has_label ? (int)fp->label
                              : GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_OPTIONAL;
    int in_oneof = fp->has_oneof_index && !fp->proto3_optional;
    unsigned size = TYPES[pt].size, align = size > 8 ? 8 : size;
    if (label == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED) {
        fd->label = PROTOBUF_C_LABEL_REPEATED;
        fd->quantifier_offset = place(off, sizeof(size_t), sizeof(size_t));
        fd->offset = place(off, sizeof(void *), sizeof(void *));
        int scalar = fd->type != PROTOBUF_C_TYPE_STRING && fd->type != PROTOBUF_C_TYPE_BYTES &&
                     fd->type != PROTOBUF_C_TYPE_MESSAGE;
        int packed = proto3;
        if (fp->options && fp->options->has_packed) packed = fp->options->packed;
        if (scalar && packed) fd->flags |= PROTOBUF_C_FIELD_FLAG_PACKED;
        return 0;
    }
    if (in_oneof) {
        if (fp->oneof_index < 0 || (size_t)fp->oneof_index >= m->n_oneof_decl)
            return fail(b, FTRPC_EINVAL, "field %s.%s names no oneof", t->name, fp->name);
        unsigned *c = &oneof_case[fp->oneof_index];
        if (*c == 0) *c = place(off, sizeof(uint32_t), sizeof(uint32_t));
        fd->label = PROTOBUF_C_LABEL_OPTIONAL;
        fd->flags |= PROTOBUF_C_FIELD_FLAG_ONEOF;
        fd->quantifier_offset = *c;
    } else if (label == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REQUIRED) {
        fd->label = PROTOBUF_C_LABEL_REQUIRED;
    } else if (proto3 && !fp->proto3_optional) {
        fd->label = PROTOBUF_C_LABEL_NONE;
    } else {
        fd->label = PROTOBUF_C_LABEL_OPTIONAL;
        /* strings and messages are present when their pointer is not NULL */
        if (fd->type != PROTOBUF_C_TYPE_STRING && fd->type != PROTOBUF_C_TYPE_MESSAGE)
            fd->quantifier_offset =
                place(off, sizeof(protobuf_c_boolean), sizeof(protobuf_c_boolean));
    }
    fd->offset = place(off, size, align);
    return 0;
}

static int fill_message(build *b, const type_entry *t)
{
    ft_descset *set = b->set;
    const MsgProto *m = t->proto;
    ProtobufCMessageDescriptor *d = t->desc;
    if (m->n_field > FT_DESCSET_MAX_FIELDS)
        return fail(b, FTRPC_EINVAL, "message %s has more than %d fields", t->name,
                    FT_DESCSET_MAX_FIELDS);
    if (m->n_extension > 0)
        return fail(b, FTRPC_EINVAL, "message %s declares extensions (not supported)", t->name);
    unsigned n = (unsigned)m->n_field;
    int proto3 = t->file->syntax && !strcmp(t->file->syntax, "proto3");
    ProtobufCFieldDescriptor *fields = arena_alloc(set, (n + 1) * sizeof *fields);
    unsigned *sorted = arena_alloc(set, (n + 1) * sizeof *sorted);
    ProtobufCIntRange *ranges = arena_alloc(set, (n + 1) * sizeof *ranges);
    unsigned *oneof_case = calloc(m->n_oneof_decl + 1, sizeof *oneof_case);
    if (!fields || !sorted || !ranges || !oneof_case) {
        free(oneof_case);
        return NOMEM(b);
    }
    size_t off = sizeof(ProtobufCMessage);
    for (unsigned i = 0; i < n && b->rc == 0; i++)
        fill_field(b, t, m->field[i], proto3, &fields[i], &off, oneof_case);
    free(oneof_case);
    if (b->rc) return b->rc;
    qsort(fields, n, sizeof *fields, id_cmp);
    for (unsigned i = 0; i < n; i++) {
        sorted[i] = i;
        if (i > 0 && fields[i].id == fields[i - 1].id)
            return fail(b, FTRPC_EINVAL, "message %s numbers two fields %u", t->name,
                        (unsigned)fields[i].id);
    }
    sort_fields = fields;
    qsort(sorted, n, sizeof *sorted, field_name_cmp);
    for (unsigned i = 1; i < n; i++)
        if (!strcmp(fields[sorted[i]].name, fields[sorted[i - 1]].name))
            return fail(b, FTRPC_EINVAL, "message %s names two fields %s", t->name,
                        fields[sorted[i]].name);
    *d = (ProtobufCMessageDescriptor){
        .magic = PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
        .name = t->name,
        .short_name = m->name,
        .c_name = t->name,
        .package_name = t->file->package ? t->file->package : "",
        .sizeof_message = (off + 7) & ~(size_t)7,
        .n_fields = n,
        .fields = fields,
        .fields_sorted_by_name = sorted,
        .field_ranges = ranges,
        .message_init = NULL, /* protobuf-c then zeroes and sets the descriptor itself */
    };
    d->n_field_ranges =
        make_ranges(ranges, n, fields, sizeof *fields, offsetof(ProtobufCFieldDescriptor, id));
    return 0;
}

/* ---- pass 3: services ---- */

static int fill_services(build *b, const Google__Protobuf__FileDescriptorSet *fs)
{
    ft_descset *set = b->set;
    size_t total = 0;
    for (size_t i = 0; i < fs->n_file; i++)
        total += fs->file[i]->n_service;
    if (total > FT_DESCSET_MAX_TYPES)
        return fail(b, FTRPC_EINVAL, "more than %d services", FT_DESCSET_MAX_TYPES);
    set->services = arena_alloc(set, (total + 1) * sizeof *set->services);
    if (!set->services) return NOMEM(b);
    for (size_t i = 0; i < fs->n_file; i++) {
        const FileProto *f = fs->file[i];
        for (size_t j = 0; j < f->n_service; j++) {
            const Google__Protobuf__ServiceDescriptorProto *sp = f->service[j];
            if (!sp->name || !sp->name[0] || sp->n_method > FT_DESCSET_MAX_FIELDS)
                return fail(b, FTRPC_EINVAL, "a service in %s has no name or too many methods",
                            f->name);
            ProtobufCServiceDescriptor *sd = arena_alloc(set, sizeof *sd);
            ProtobufCMethodDescriptor *md = arena_alloc(set, (sp->n_method + 1) * sizeof *md);
            char *name = arena_join(set, f->package ? f->package : "", sp->name);
            if (!sd || !md || !name) return NOMEM(b);
            for (size_t k = 0; k < sp->n_method; k++) {
                const Google__Protobuf__MethodDescriptorProto *mp = sp->method[k];
                const type_entry *in = mp->input_type && mp->input_type[0] == '.'
                                           ? find_type(set, mp->input_type + 1)
                                           : NULL;
                const type_entry *out = mp->output_type && mp->output_type[0] == '.'
                                            ? find_type(set, mp->output_type + 1)
                                            : NULL;
                if (!mp->name || !in || in->kind != KIND_MESSAGE || !out ||
                    out->kind != KIND_MESSAGE)
                    return fail(b, FTRPC_EINVAL,
                                "a method of %s has no name or a type not in the set", name);
                md[k] = (ProtobufCMethodDescriptor){mp->name, in->desc, out->desc};
            }
            *sd = (ProtobufCServiceDescriptor){
                .magic = PROTOBUF_C__SERVICE_DESCRIPTOR_MAGIC,
                .name = name,
                .short_name = sp->name,
                .c_name = name,
                .package = f->package ? f->package : "",
                .n_methods = (unsigned)sp->n_method,
                .methods = md,
            };
            set->services[set->nservices++] = sd;
        }
    }
    return 0;
}

/* Copies every string the descriptors point to out of the unpacked set, which is freed after the
 * build. */
static int own_strings(build *b)
{
    ft_descset *set = b->set;
    for (size_t i = 0; i < set->nservices; i++) {
        ProtobufCServiceDescriptor *sd = set->services[i];
        if (!(sd->short_name = arena_strdup(set, sd->short_name)) ||
            !(sd->package = arena_strdup(set, sd->package)))
            return NOMEM(b);
        ProtobufCMethodDescriptor *md = (ProtobufCMethodDescriptor *)sd->methods;
        for (unsigned k = 0; k < sd->n_methods; k++)
            if (!(md[k].name = arena_strdup(set, md[k].name))) return NOMEM(b);
    }
    for (size_t i = 0; i < set->ntypes; i++) {
        type_entry *t = &set->types[i];
        if (t->kind == KIND_ENUM) {
            ProtobufCEnumDescriptor *d = t->desc;
            if (!(d->short_name = arena_strdup(set, d->short_name)) ||
                !(d->package_name = arena_strdup(set, d->package_name)))
                return NOMEM(b);
            ProtobufCEnumValue *v = (ProtobufCEnumValue *)d->values;
            for (unsigned k = 0; k < d->n_values; k++)
                if (!(v[k].name = v[k].c_name = arena_strdup(set, v[k].name))) return NOMEM(b);
            ProtobufCEnumValueIndex *x = (ProtobufCEnumValueIndex *)d->values_by_name;
            for (unsigned k = 0; k < d->n_value_names; k++)
                if (!(x[k].name = arena_strdup(set, x[k].name))) return NOMEM(b);
        } else {
            ProtobufCMessageDescriptor *d = t->desc;
            if (!(d->short_name = arena_strdup(set, d->short_name)) ||
                !(d->package_name = arena_strdup(set, d->package_name)))
                return NOMEM(b);
            ProtobufCFieldDescriptor *f = (ProtobufCFieldDescriptor *)d->fields;
            for (unsigned k = 0; k < d->n_fields; k++)
                if (!(f[k].name = arena_strdup(set, f[k].name))) return NOMEM(b);
        }
        t->proto = NULL;
        t->file = NULL;
    }
    return 0;
}

int ft_descset_new(const void *data, size_t len, ft_descset **out, char *err, size_t errlen)
{
    ft_descset *set = calloc(1, sizeof *set);
    if (!set) return FTRPC_ENOMEM;
    build b = {.set = set, .err = err, .errlen = errlen};
    Google__Protobuf__FileDescriptorSet *fs = NULL;
    if (len > FT_DESCSET_MAX_BYTES) {
        fail(&b, FTRPC_EINVAL, "descriptor set larger than %zu bytes", FT_DESCSET_MAX_BYTES);
        goto done;
    }
    nest top = {0, 0};
    if (ft_pb_wire_each_len(data, (const uint8_t *)data + len, nest_field, &top) < 0) {
        fail(&b, FTRPC_EINVAL, "message types nested deeper than %d", FT_DESCSET_MAX_NESTING);
        goto done;
    }
    fs = google__protobuf__file_descriptor_set__unpack(NULL, len, data);
    if (!fs) {
        fail(&b, FTRPC_EINVAL, "not a FileDescriptorSet (protoc --descriptor_set_out)");
        goto done;
    }
    for (size_t i = 0; i < fs->n_file && b.rc == 0; i++) {
        const FileProto *f = fs->file[i];
        const char *pkg = f->package ? f->package : "";
        if (f->syntax && strcmp(f->syntax, "proto2") && strcmp(f->syntax, "proto3")) {
            fail(&b, FTRPC_EINVAL, "file %s: syntax %s is not supported",
                 f->name ? f->name : "(unnamed)", f->syntax);
            break;
        }
        if (f->n_extension > 0) {
            fail(&b, FTRPC_EINVAL, "file %s declares extensions (not supported)",
                 f->name ? f->name : "(unnamed)");
            break;
        }
        for (size_t j = 0; j < f->n_message_type && b.rc == 0; j++)
            name_message(&b, pkg, f->message_type[j], f);
        for (size_t j = 0; j < f->n_enum_type && b.rc == 0; j++)
            name_enum(&b, pkg, f->enum_type[j], f);
    }
    if (b.rc) goto done;
    if (set->ntypes) qsort(set->types, set->ntypes, sizeof *set->types, by_name);
    for (size_t i = 1; i < set->ntypes; i++)
        if (!strcmp(set->types[i].name, set->types[i - 1].name)) {
            fail(&b, FTRPC_EINVAL, "type %s is declared twice", set->types[i].name);
            goto done;
        }
    for (size_t i = 0; i < set->ntypes && b.rc == 0; i++)
        if (set->types[i].kind == KIND_ENUM) fill_enum(&b, &set->types[i]);
    for (size_t i = 0; i < set->ntypes && b.rc == 0; i++)
        if (set->types[i].kind == KIND_MESSAGE) fill_message(&b, &set->types[i]);
    if (b.rc == 0) fill_services(&b, fs);
    if (b.rc == 0) own_strings(&b);
done:
    if (fs) google__protobuf__file_descriptor_set__free_unpacked(fs, NULL);
    if (b.rc) {
        ft_descset_free(set);
        return b.rc;
    }
    *out = set;
    return 0;
}

const ProtobufCMessageDescriptor *ft_descset_message(const ft_descset *set, const char *name)
{
    const type_entry *t = set && name ? find_type(set, name) : NULL;
    return t && t->kind == KIND_MESSAGE ? t->desc : NULL;
}

const ProtobufCMessageDescriptor *ft_descset_message_at(const ft_descset *set, size_t i)
{
    for (size_t k = 0; set && k < set->ntypes; k++)
        if (set->types[k].kind == KIND_MESSAGE && i-- == 0) return set->types[k].desc;
    return NULL;
}

const ProtobufCMethodDescriptor *ft_descset_method(const ft_descset *set, const char *service,
                                                   const char *method)
{
    if (!set || !service || !method) return NULL;
    for (size_t i = 0; i < set->nservices; i++) {
        const ProtobufCServiceDescriptor *sd = set->services[i];
        if (strcmp(sd->name, service) != 0) continue;
        for (unsigned k = 0; k < sd->n_methods; k++)
            if (!strcmp(sd->methods[k].name, method)) return &sd->methods[k];
    }
    return NULL;
}
