/* The JSON transcoder (protocol/json_pb.h) and run-time descriptors (protocol/pb_descset.h):
 *   - every field kind round-trips JSON -> message -> JSON in protobuf's canonical form, through
 *     protoc-c's generated descriptors and through descriptors built from a descriptor set, and
 *     both pack the same JSON to the same bytes (so the run-time layout is what protobuf-c wants);
 *   - input variants canonical JSON allows (proto names, numbers as strings, enum numbers, URL-safe
 *     base64, null) are read;
 *   - every refusal names the field's path (table-driven);
 *   - bad descriptor sets are refused with a reason, never a crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "echo.pb-c.h"
#include "ftrpc/json.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "json_test.pb-c.h"
#include "json_test2.pb-c.h"
#include "protocol/json_pb.h"
#include "protocol/pb_descset.h"

static uint8_t *read_protoset(size_t *len)
{
    FILE *f = fopen(FTRPC_TEST_PROTOSET, "rb");
    assert_non_null(f);
    static uint8_t buf[1 << 16];
    *len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_true(*len > 0 && *len < sizeof buf);
    return buf;
}

static ft_descset *load_set(void)
{
    size_t len;
    uint8_t *data = read_protoset(&len);
    ft_descset *set = NULL;
    char err[256] = "";
    int rc = ft_descset_new(data, len, &set, err, sizeof err);
    if (rc) fprintf(stderr, "descset: %s\n", err);
    assert_int_equal(rc, 0);
    return set;
}

/* JSON -> packed bytes through desc. */
static size_t to_bytes(const ProtobufCMessageDescriptor *desc, const char *json, uint8_t *out,
                       size_t cap)
{
    ft_iobuf b;
    ft_iobuf_init(&b);
    char err[256] = "";
    int rc = ft_json_to_pb_bytes(desc, json, strlen(json), &b, err, sizeof err);
    if (rc) fprintf(stderr, "json_to_pb: %s\n", err);
    assert_int_equal(rc, 0);
    size_t n = ft_iobuf_size(&b);
    assert_true(n <= cap);
    ft_iobuf_copy_at(&b, 0, out, n);
    ft_iobuf_fini(&b);
    return n;
}

/* bytes -> JSON through desc, compared with want. */
static void expect_json(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                        const char *want)
{
    ft_strbuf sb;
    ft_strbuf_init(&sb, 0);
    char err[256] = "";
    int rc = ft_pb_bytes_to_json(desc, data, len, &sb, err, sizeof err);
    if (rc) fprintf(stderr, "pb_to_json: %s\n", err);
    assert_int_equal(rc, 0);
    assert_string_equal(ft_strbuf_cstr(&sb), want);
    ft_strbuf_fini(&sb);
}

/* Every kind of field, written as protobuf's canonical JSON writes it (field number order). */
static const char *ALL_CANONICAL =
    "{\"i32\":-5,\"i64\":\"-9007199254740993\",\"u32\":4294967295,"
    "\"u64\":\"18446744073709551615\",\"s32\":-7,\"s64\":\"-8\",\"f32\":9,\"f64\":\"10\","
    "\"sf32\":-11,\"sf64\":\"-12\",\"fl\":1.5,\"db\":0.1,\"flag\":true,"
    "\"text\":\"h\\u00e9llo \\\"q\\\"\\n\",\"data\":\"AAEC/w==\",\"color\":\"GREEN\","
    "\"inner\":{\"name\":\"in\",\"n\":3},\"nums\":[1,2,-3],\"words\":[\"a\",\"\"],"
    "\"items\":[{\"name\":\"x\"},{}],\"counts\":{\"k\":1},\"byId\":{\"-4\":{\"n\":4}},"
    "\"choiceInner\":{\"n\":1},\"snakeCaseName\":\"s\",\"colors\":[\"RED\",7],"
    "\"child\":{\"child\":{\"i32\":1}},\"flags\":{\"true\":\"yes\"}}";

static void every_field_kind_round_trips_through_generated_descriptors(void **state)
{
    (void)state;
    uint8_t buf[4096];
    size_t n = to_bytes(&ftrpc__test__all__descriptor, ALL_CANONICAL, buf, sizeof buf);
    Ftrpc__Test__All *m = ftrpc__test__all__unpack(NULL, n, buf);
    assert_non_null(m);
    assert_int_equal(m->i64, -9007199254740993LL);
    assert_true(m->u64 == UINT64_MAX);
    assert_int_equal(m->data.len, 4);
    assert_int_equal(m->data.data[3], 0xff);
    assert_int_equal(m->color, FTRPC__TEST__COLOR__GREEN);
    assert_int_equal(m->n_by_id, 1);
    assert_int_equal(m->by_id[0]->key, -4);
    assert_int_equal(m->choice_case, FTRPC__TEST__ALL__CHOICE_CHOICE_INNER);
    assert_int_equal(m->colors[1], 7);
    assert_string_equal(m->snake_case_name, "s");
    ftrpc__test__all__free_unpacked(m, NULL);
    /* written back in field number order, strings as UTF-8 */
    const char *want =
        "{\"i32\":-5,\"i64\":\"-9007199254740993\",\"u32\":4294967295,"
        "\"u64\":\"18446744073709551615\",\"s32\":-7,\"s64\":\"-8\",\"f32\":9,\"f64\":\"10\","
        "\"sf32\":-11,\"sf64\":\"-12\",\"fl\":1.5,\"db\":0.1,\"flag\":true,"
        "\"text\":\"h\xc3\xa9llo \\\"q\\\"\\n\",\"data\":\"AAEC/w==\",\"color\":\"GREEN\","
        "\"inner\":{\"name\":\"in\",\"n\":3},\"nums\":[1,2,-3],\"words\":[\"a\",\"\"],"
        "\"items\":[{\"name\":\"x\"},{}],\"counts\":{\"k\":1},\"byId\":{\"-4\":{\"n\":4}},"
        "\"choiceInner\":{\"n\":1},\"snakeCaseName\":\"s\",\"colors\":[\"RED\",7],"
        "\"child\":{\"child\":{\"i32\":1}},\"flags\":{\"true\":\"yes\"}}";
    expect_json(&ftrpc__test__all__descriptor, buf, n, want);
}

static void runtime_descriptors_pack_what_generated_ones_pack(void **state)
{
    (void)state;
    ft_descset *set = load_set();
    const ProtobufCMessageDescriptor *all = ft_descset_message(set, "ftrpc.test.All");
    assert_non_null(all);
    uint8_t a[4096], b[4096];
    size_t na = to_bytes(&ftrpc__test__all__descriptor, ALL_CANONICAL, a, sizeof a);
    size_t nb = to_bytes(all, ALL_CANONICAL, b, sizeof b);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    /* and read bytes the generated code packed into the same JSON */
    ft_strbuf x, y;
    ft_strbuf_init(&x, 0);
    ft_strbuf_init(&y, 0);
    assert_int_equal(ft_pb_bytes_to_json(&ftrpc__test__all__descriptor, a, na, &x, NULL, 0), 0);
    assert_int_equal(ft_pb_bytes_to_json(all, a, na, &y, NULL, 0), 0);
    assert_string_equal(ft_strbuf_cstr(&x), ft_strbuf_cstr(&y));
    ft_strbuf_fini(&x);
    ft_strbuf_fini(&y);
    /* the proto2 file: required, has_ flags, packed and unpacked repeated fields */
    const char *legacy = "{\"id\":\"x\",\"n\":0,\"blob\":\"\",\"packedNums\":[1,2],"
                         "\"loose\":[\"-1\"],\"next\":{\"id\":\"y\"}}";
    na = to_bytes(&ftrpc__test2__legacy__descriptor, legacy, a, sizeof a);
    nb = to_bytes(ft_descset_message(set, "ftrpc.test2.Legacy"), legacy, b, sizeof b);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    /* present proto2 fields are written even at zero */
    expect_json(ft_descset_message(set, "ftrpc.test2.Legacy"), a, na, legacy);
    /* proto3 optional: present at zero is written, absent is not */
    const ProtobufCMessageDescriptor *pres = ft_descset_message(set, "ftrpc.test3.Presence");
    assert_non_null(pres);
    na = to_bytes(pres, "{\"maybe\":0,\"label\":\"\",\"plain\":0}", a, sizeof a);
    assert_int_equal(na, 4); /* 08 00 12 00 */
    expect_json(pres, a, na, "{\"maybe\":0,\"label\":\"\"}");
    na = to_bytes(pres, "{}", a, sizeof a);
    expect_json(pres, a, na, "{}");
    /* the service's method */
    const ProtobufCMethodDescriptor *m = ft_descset_method(set, "example.EchoService", "Echo");
    assert_non_null(m);
    assert_string_equal(m->input->name, "example.EchoRequest");
    assert_string_equal(m->output->name, "example.EchoResponse");
    assert_null(ft_descset_method(set, "example.EchoService", "Nope"));
    assert_null(ft_descset_method(set, "example.Nope", "Echo"));
    ft_descset_free(set);
}

static void input_variants_of_canonical_json_are_read(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        /* proto names and JSON names alike */
        {"{\"snake_case_name\":\"a\"}", "{\"snakeCaseName\":\"a\"}"},
        {"{\"snakeCaseName\":\"a\"}", "{\"snakeCaseName\":\"a\"}"},
        /* 64-bit integers as numbers, 32-bit ones as strings, exponents that are integral */
        {"{\"i64\":12,\"u64\":18446744073709551615,\"i32\":\"-3\",\"u32\":1e3}",
         "{\"i32\":-3,\"i64\":\"12\",\"u32\":1000,\"u64\":\"18446744073709551615\"}"},
        /* enums by number, bytes URL-safe and unpadded */
        {"{\"color\":1,\"data\":\"-_8\"}", "{\"data\":\"+/8=\",\"color\":\"RED\"}"},
        /* null is the default; defaults are not written */
        {"{\"text\":null,\"inner\":null,\"i32\":0,\"text\":\"\"}", "{}"},
        /* floats' special values, and the shortest text that reads back */
        {"{\"fl\":\"NaN\",\"db\":\"-Infinity\"}", "{\"fl\":\"NaN\",\"db\":\"-Infinity\"}"},
        {"{\"fl\":0.1,\"db\":\"1e300\"}", "{\"fl\":0.1,\"db\":1e+300}"},
        /* FLT_MAX as written reads back (it rounds down to FLT_MAX) */
        {"{\"fl\":3.40282347e+38}", "{\"fl\":3.40282347e+38}"},
        /* a oneof string member at its default is still written */
        {"{\"choiceText\":\"\"}", "{\"choiceText\":\"\"}"},
        {"  {}  ", "{}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t buf[512];
        size_t n = to_bytes(&ftrpc__test__all__descriptor, cases[i].in, buf, sizeof buf);
        expect_json(&ftrpc__test__all__descriptor, buf, n, cases[i].out);
    }
}

static void each_refusal_names_the_field(void **state)
{
    (void)state;
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{\"text\":\"a\"", "truncated JSON"},
        {"{\"text\":\"a\"}x", "trailing bytes"},
        {"{\"text\":'a'}", "not JSON"},
        {"[1]", "not a JSON object"},
        {"", "empty JSON text"},
        {"{\"nope\":1}", "unknown field \"nope\" (ftrpc.test.All has no such field)"},
        {"{\"inner\":{\"nope\":1}}", "unknown field \"inner.nope\""},
        {"{\"items\":[{},{\"zz\":1}]}", "unknown field \"items[1].zz\""},
        {"{\"text\":5}", "text: expected a string, not a number"},
        {"{\"i32\":2147483648}", "i32: integer out of range"},
        {"{\"u32\":-1}", "u32: integer out of range"},
        {"{\"i64\":\"12x\"}", "i64: \"12x\" is not an integer"},
        {"{\"i32\":1.5}", "i32: 1.5 is not an integer in range"},
        {"{\"flag\":\"true\"}", "flag: expected true or false, not a string"},
        {"{\"color\":\"BLUE\"}", "color: \"BLUE\" is not a value of ftrpc.test.Color"},
        {"{\"data\":\"a\"}", "data: not base64"},
        {"{\"nums\":[1,null]}", "nums[1]: null in an array"},
        {"{\"nums\":{}}", "nums: expected an array, not an object"},
        {"{\"counts\":[]}", "counts: expected an object, not an array"},
        {"{\"counts\":{\"k\":\"v\"}}", "counts[\"k\"]: \"v\" is not an integer"},
        {"{\"byId\":{\"k\":{}}}", "byId[\"k\"]: \"k\" is not an integer"},
        {"{\"flags\":{\"yes\":\"\"}}", "map key \"yes\" is not true or false"},
        {"{\"choiceText\":\"a\",\"choiceInner\":{}}", "another member of its oneof"},
        {"{\"text\":\"a\",\"text\":\"b\"}", NULL}, /* json-c keeps the last: not an error */
        {"{\"snake_case_name\":\"a\",\"snakeCaseName\":\"b\"}", "field given twice"},
        {"{\"fl\":1e39}", "fl: number out of range for a float"},
        {"{\"inner\":[]}", "inner: expected an object (ftrpc.test.Inner), not an array"},
        /* json-c turns an unpaired surrogate escape into U+FFFD; protobuf's JSON parsers refuse
         * it (a pair is one code point: "\ud83d\ude00" is accepted) */
        {"{\"text\":\"\\ud800\"}", "unpaired surrogate"},
        {"{\"text\":\"a\\udc00b\"}", "unpaired surrogate"},
        {"{\"text\":\"\\ud800\\u0041\"}", "unpaired surrogate"},
        {"{\"text\":\"\\uD83D\\uDE00\\\\ud800\"}", NULL},
        /* protobuf-c's strings end at a NUL: "a\u0000b" would reach the server as "a" */
        {"{\"text\":\"\\u0000\"}", "text: string holds U+0000"},
        {"{\"text\":\"a\\u0000b\"}", "text: string holds U+0000"},
        {"{\"words\":[\"ok\",\"a\\u0000\"]}", "words[1]: string holds U+0000"},
        /* json-c's keys are C strings: "text\u0000junk" would name the field text */
        {"{\"text\\u0000junk\":\"a\"}", "U+0000 in an object key"},
        {"{\"counts\":{\"k\\u0000\" :1}}", "U+0000 in an object key"},
        /* json-c lets an overlong form through; a protobuf string must be UTF-8 (found by
         * fuzz_json_pb: the message then could not be written back) */
        {"{\"text\":\"h\xc0\xa3\"}", "text: string is not valid UTF-8"},
        {"{\"counts\":{\"\xc0\xa3\":1}}", "string is not valid UTF-8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ProtobufCMessage *m = NULL;
        char err[256] = "";
        int rc = ft_json_to_pb(&ftrpc__test__all__descriptor, cases[i].json, strlen(cases[i].json),
                               NULL, &m, err, sizeof err);
        if (!cases[i].want) {
            assert_int_equal(rc, 0);
            protobuf_c_message_free_unpacked(m, NULL);
            continue;
        }
        if (rc != FTRPC_EINVAL || !strstr(err, cases[i].want))
            fail_msg("%s: got %d \"%s\", want \"%s\"", cases[i].json, rc, err, cases[i].want);
    }
    /* proto2: a required field left out */
    ProtobufCMessage *m = NULL;
    char err[256] = "";
    assert_int_equal(ft_json_to_pb(&ftrpc__test2__legacy__descriptor, "{\"next\":{}}", 11, NULL, &m,
                                   err, sizeof err),
                     FTRPC_EINVAL);
    assert_string_equal(err, "next: required field \"id\" missing (ftrpc.test2.Legacy)");
    /* null is the field left out (protobuf's mapping), so a required one is still missing: on
     * main it passed and sent "" */
    assert_int_equal(ft_json_to_pb(&ftrpc__test2__legacy__descriptor, "{\"id\":null}", 11, NULL, &m,
                                   err, sizeof err),
                     FTRPC_EINVAL);
    assert_string_equal(err, "required field \"id\" missing (ftrpc.test2.Legacy)");
}

static void nesting_is_bounded_both_ways(void **state)
{
    (void)state;
    /* JSON nested past the limit */
    char json[4096];
    size_t n = 0;
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(json + n, sizeof json - n, "{\"child\":");
    json[n++] = '1';
    for (int i = 0; i < 200; i++)
        json[n++] = '}';
    ProtobufCMessage *m = NULL;
    char err[256] = "";
    assert_int_equal(
        ft_json_to_pb(&ftrpc__test__all__descriptor, json, n, NULL, &m, err, sizeof err),
        FTRPC_EINVAL);
    assert_non_null(strstr(err, "nested too deep"));
    /* 100 messages deep in JSON nests fewer JSON levels than json-c allows: the message depth
     * check refuses it, naming where */
    n = 0;
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(json + n, sizeof json - n, "{\"child\":");
    json[n++] = '1';
    for (int i = 0; i < 100; i++)
        json[n++] = '}';
    assert_int_equal(
        ft_json_to_pb(&ftrpc__test__all__descriptor, json, n, NULL, &m, err, sizeof err),
        FTRPC_EINVAL);
    assert_non_null(strstr(err, "messages nested deeper than 64"));
    /* wire bytes nested past the limit: field 28 (child) inside itself */
    uint8_t wire[1024];
    size_t len = 0;
    for (int depth = 0; depth < 100; depth++) {
        /* wrap: tag 28 LEN, then the previous bytes */
        uint8_t tmp[1024];
        size_t t = 0;
        tmp[t++] = (uint8_t)(28 << 3 | 2) & 0xff;
        tmp[t++] = (uint8_t)((28 << 3 | 2) >> 7);
        if (len < 128) {
            tmp[t++] = (uint8_t)len;
        } else {
            tmp[t++] = (uint8_t)(len | 0x80);
            tmp[t++] = (uint8_t)(len >> 7);
        }
        tmp[0] |= 0x80;
        memcpy(tmp + t, wire, len);
        len += t;
        memcpy(wire, tmp, len);
    }
    ft_strbuf sb;
    ft_strbuf_init(&sb, 0);
    assert_int_equal(
        ft_pb_bytes_to_json(&ftrpc__test__all__descriptor, wire, len, &sb, err, sizeof err),
        FTRPC_EINVAL);
    assert_non_null(strstr(err, "nested deeper than"));
    /* bytes that are not the message */
    const uint8_t junk[] = {0xff, 0xff, 0xff};
    assert_int_equal(
        ft_pb_bytes_to_json(&ftrpc__test__all__descriptor, junk, sizeof junk, &sb, err, sizeof err),
        FTRPC_EINVAL);
    assert_string_equal(err, "not a ftrpc.test.All");
    ft_strbuf_fini(&sb);
}

static void strings_that_are_not_utf8_are_refused_on_output(void **state)
{
    (void)state;
    Example__EchoResponse r = EXAMPLE__ECHO_RESPONSE__INIT;
    r.message = (char *)"bad \xff";
    ft_strbuf sb;
    ft_strbuf_init(&sb, 0);
    char err[128] = "";
    assert_int_equal(ft_pb_to_json(&r.base, &sb, err, sizeof err), FTRPC_EINVAL);
    assert_string_equal(err, "message: string is not valid UTF-8");
    assert_int_equal(sb.len, 0);
    r.message = (char *)"ok \xe2\x82\xac";
    assert_int_equal(ft_pb_to_json(&r.base, &sb, err, sizeof err), 0);
    assert_string_equal(ft_strbuf_cstr(&sb), "{\"message\":\"ok \xe2\x82\xac\"}");
    ft_strbuf_fini(&sb);
}

/* A serialized set with one file, made with the generated descriptor.proto code; `mutate`
 * spoils it. */
static size_t make_set(uint8_t *out, void (*mutate)(Google__Protobuf__FileDescriptorProto *,
                                                    Google__Protobuf__DescriptorProto *,
                                                    Google__Protobuf__FieldDescriptorProto *))
{
    Google__Protobuf__FieldDescriptorProto fd = GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__INIT;
    fd.name = (char *)"f";
    fd.has_number = 1;
    fd.number = 1;
    fd.has_type = 1;
    fd.type = GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_MESSAGE;
    fd.type_name = (char *)".p.M";
    fd.has_label = 1;
    fd.label = GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_OPTIONAL;
    Google__Protobuf__FieldDescriptorProto *fields[] = {&fd, &fd};
    Google__Protobuf__DescriptorProto md = GOOGLE__PROTOBUF__DESCRIPTOR_PROTO__INIT;
    md.name = (char *)"M";
    md.n_field = 1;
    md.field = fields;
    Google__Protobuf__DescriptorProto *msgs[] = {&md};
    Google__Protobuf__FileDescriptorProto f = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT;
    f.name = (char *)"p.proto";
    f.package = (char *)"p";
    f.syntax = (char *)"proto3";
    f.n_message_type = 1;
    f.message_type = msgs;
    if (mutate) mutate(&f, &md, &fd);
    Google__Protobuf__FileDescriptorProto *files[] = {&f};
    Google__Protobuf__FileDescriptorSet s = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_SET__INIT;
    s.n_file = 1;
    s.file = files;
    return google__protobuf__file_descriptor_set__pack(&s, out);
}

static void unresolved(Google__Protobuf__FileDescriptorProto *f,
                       Google__Protobuf__DescriptorProto *m,
                       Google__Protobuf__FieldDescriptorProto *fd)
{
    (void)f;
    (void)m;
    fd->type_name = (char *)".other.Missing";
}

static void two_fields_one_number(Google__Protobuf__FileDescriptorProto *f,
                                  Google__Protobuf__DescriptorProto *m,
                                  Google__Protobuf__FieldDescriptorProto *fd)
{
    (void)f;
    (void)fd;
    m->n_field = 2;
}

static void a_group(Google__Protobuf__FileDescriptorProto *f, Google__Protobuf__DescriptorProto *m,
                    Google__Protobuf__FieldDescriptorProto *fd)
{
    (void)f;
    (void)m;
    fd->type = GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_GROUP;
}

static void editions(Google__Protobuf__FileDescriptorProto *f, Google__Protobuf__DescriptorProto *m,
                     Google__Protobuf__FieldDescriptorProto *fd)
{
    (void)m;
    (void)fd;
    f->syntax = (char *)"editions";
}

/* A message of the user's own that looks like a map entry by name ("XEntry" under field "x", fields
 * "key" = 1 and "value" = 2) but whose key is repeated: protoc accepts it as a plain message, and
 * protobuf-c's descriptors carry no map_entry option to tell it apart. */
typedef struct look_entry {
    ProtobufCMessage base;
    size_t n_key;
    int32_t *key;
    int32_t value;
} look_entry;

typedef struct look_m {
    ProtobufCMessage base;
    size_t n_x;
    look_entry **x;
} look_m;

static const ProtobufCFieldDescriptor LOOK_ENTRY_FIELDS[2] = {
    {.name = "key",
     .id = 1,
     .label = PROTOBUF_C_LABEL_REPEATED,
     .type = PROTOBUF_C_TYPE_INT32,
     .quantifier_offset = offsetof(look_entry, n_key),
     .offset = offsetof(look_entry, key)},
    {.name = "value",
     .id = 2,
     .label = PROTOBUF_C_LABEL_NONE,
     .type = PROTOBUF_C_TYPE_INT32,
     .offset = offsetof(look_entry, value)},
};
static const unsigned LOOK_SORTED[2] = {0, 1};
static const ProtobufCIntRange LOOK_ENTRY_RANGES[2] = {{1, 0}, {0, 2}};
static const ProtobufCMessageDescriptor LOOK_ENTRY = {
    .magic = PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    .name = "look.M.XEntry",
    .short_name = "XEntry",
    .c_name = "look_entry",
    .package_name = "look",
    .sizeof_message = sizeof(look_entry),
    .n_fields = 2,
    .fields = LOOK_ENTRY_FIELDS,
    .fields_sorted_by_name = LOOK_SORTED,
    .n_field_ranges = 1,
    .field_ranges = LOOK_ENTRY_RANGES,
};
static const ProtobufCFieldDescriptor LOOK_M_FIELDS[1] = {
    {.name = "x",
     .id = 1,
     .label = PROTOBUF_C_LABEL_REPEATED,
     .type = PROTOBUF_C_TYPE_MESSAGE,
     .quantifier_offset = offsetof(look_m, n_x),
     .offset = offsetof(look_m, x),
     .descriptor = &LOOK_ENTRY},
};
static const ProtobufCIntRange LOOK_M_RANGES[2] = {{1, 0}, {0, 1}};
static const ProtobufCMessageDescriptor LOOK_M = {
    .magic = PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    .name = "look.M",
    .short_name = "M",
    .c_name = "look_m",
    .package_name = "look",
    .sizeof_message = sizeof(look_m),
    .n_fields = 1,
    .fields = LOOK_M_FIELDS,
    .fields_sorted_by_name = LOOK_SORTED,
    .n_field_ranges = 1,
    .field_ranges = LOOK_M_RANGES,
};

static void a_message_shaped_like_a_map_entry_with_a_repeated_key_is_no_map(void **state)
{
    (void)state;
    /* on main: read as a map, 5 was written into the key array's pointer, which the free after
     * packing then freed (SIGSEGV; the path of JSON over HTTP and --data-json); written back, the
     * array's address was printed as the key */
    ft_iobuf bytes;
    ft_iobuf_init(&bytes);
    char err[256] = "";
    assert_int_equal(ft_json_to_pb_bytes(&LOOK_M, "{\"x\":{\"5\":1}}", 13, &bytes, err, sizeof err),
                     FTRPC_EINVAL);
    assert_string_equal(err, "x: expected an array, not an object");
    ft_iobuf_fini(&bytes);
    ProtobufCMessage *m = NULL;
    const char *json = "{\"x\":[{\"key\":[5,6],\"value\":1}]}";
    assert_int_equal(ft_json_to_pb(&LOOK_M, json, strlen(json), NULL, &m, err, sizeof err), 0);
    ft_strbuf sb;
    ft_strbuf_init(&sb, 0);
    assert_int_equal(ft_pb_to_json(m, &sb, err, sizeof err), 0);
    assert_string_equal(ft_strbuf_cstr(&sb), json);
    ft_strbuf_fini(&sb);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void bad_descriptor_sets_are_refused_with_a_reason(void **state)
{
    (void)state;
    uint8_t buf[512];
    ft_descset *set = NULL;
    char err[256];
    /* the good one, recursive */
    size_t n = make_set(buf, NULL);
    assert_int_equal(ft_descset_new(buf, n, &set, err, sizeof err), 0);
    assert_non_null(ft_descset_message(set, "p.M"));
    ft_descset_free(set);
    static const struct {
        void (*mutate)(Google__Protobuf__FileDescriptorProto *, Google__Protobuf__DescriptorProto *,
                       Google__Protobuf__FieldDescriptorProto *);
        const char *want;
    } cases[] = {
        {unresolved, "field p.M.f: type .other.Missing is not in the set"},
        {two_fields_one_number, "message p.M numbers two fields 1"},
        {a_group, "field p.M.f is a group (not supported)"},
        {editions, "file p.proto: syntax editions is not supported"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        n = make_set(buf, cases[i].mutate);
        set = NULL;
        assert_int_equal(ft_descset_new(buf, n, &set, err, sizeof err), FTRPC_EINVAL);
        assert_null(set);
        if (!strstr(err, cases[i].want)) fail_msg("got \"%s\", want \"%s\"", err, cases[i].want);
    }
    const uint8_t junk[] = {0x0a, 0x05, 0x01};
    assert_int_equal(ft_descset_new(junk, sizeof junk, &set, err, sizeof err), FTRPC_EINVAL);
    assert_string_equal(err, "not a FileDescriptorSet (protoc --descriptor_set_out)");
    /* message types nested 40 deep: set{file{message_type{nested_type{...}}}} */
    uint8_t deep[256];
    size_t len = 0;
    for (int level = 0; level < 42; level++) {
        uint8_t tag = level == 40 ? (4 << 3 | 2) : level == 41 ? (1 << 3 | 2) : (3 << 3 | 2);
        memmove(deep + 2, deep, len);
        deep[0] = tag;
        deep[1] = (uint8_t)len;
        len += 2;
    }
    assert_int_equal(ft_descset_new(deep, len, &set, err, sizeof err), FTRPC_EINVAL);
    assert_string_equal(err, "message types nested deeper than 32");
    ft_descset_free(NULL);
}

static void the_public_api_round_trips_an_echo_request(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = read_protoset(&len);
    ftrpc_protoset *set = NULL;
    char err[256] = "";
    assert_int_equal(ftrpc_protoset_new(data, len, &set, err, sizeof err), 0);
    const ProtobufCMethodDescriptor *m = ftrpc_protoset_method(set, "example.EchoService", "Echo");
    assert_non_null(m);
    ftrpc_buf *b = ftrpc_buf_new();
    assert_int_equal(ftrpc_json_to_pb(m->input, "{\"message\":\"hi\"}", 16, b, err, sizeof err), 0);
    assert_int_equal(ftrpc_buf_size(b), 4); /* 0a 02 'h' 'i' */
    char *json = NULL;
    assert_int_equal(ftrpc_pb_to_json(m->output, b, &json, err, sizeof err), 0);
    assert_string_equal(json, "{\"message\":\"hi\"}");
    free(json);
    assert_int_equal(ftrpc_json_to_pb(m->input, "{\"msg\":1}", 9, b, err, sizeof err),
                     FTRPC_EINVAL);
    assert_string_equal(err, "unknown field \"msg\" (example.EchoRequest has no such field)");
    assert_non_null(ftrpc_protoset_message(set, "example.EchoResponse"));
    ftrpc_buf_free(b);
    ftrpc_protoset_free(set);
    assert_int_equal(ftrpc_protoset_new("x", 1, &set, err, sizeof err), FTRPC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_field_kind_round_trips_through_generated_descriptors),
        cmocka_unit_test(runtime_descriptors_pack_what_generated_ones_pack),
        cmocka_unit_test(input_variants_of_canonical_json_are_read),
        cmocka_unit_test(each_refusal_names_the_field),
        cmocka_unit_test(nesting_is_bounded_both_ways),
        cmocka_unit_test(strings_that_are_not_utf8_are_refused_on_output),
        cmocka_unit_test(a_message_shaped_like_a_map_entry_with_a_repeated_key_is_no_map),
        cmocka_unit_test(bad_descriptor_sets_are_refused_with_a_reason),
        cmocka_unit_test(the_public_api_round_trips_an_echo_request),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
