/* etcd:// wire pieces on canned inputs: base64 (round trip, strictness), request bodies, the range,
 * grant, keepalive, header, error and watch parsers (good answers as etcd 3.4 writes them, garbage,
 * truncated, oversized, wrong types), the registration value, the stream splitter (messages cut
 * at every byte, garbage, oversize), and etcd:// URL validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ftrpc/log.h"
#include "base/base64.h"
#include "naming/etcd_json.h"

static void quiet(ftrpc_log_level level, const char *msg, void *arg) {}

static char *b64(const char *s)
{
    char *o = malloc(ft_b64_len(strlen(s)) + 1);
    ft_b64_encode(s, strlen(s), o);
    return o;
}

/* A kv element for a range answer, as etcd writes it. */
static void kv(char *out, size_t cap, const char *key, const char *value)
{
    char *k = b64(key), *v = b64(value);
    snprintf(out, cap,
             "{\"key\":\"%s\",\"create_revision\":\"2\",\"mod_revision\":\"2\",\"version\":\"1\","
             "\"value\":\"%s\",\"lease\":\"4111120192703084044\"}",
             k, v);
    free(k);
    free(v);
}

#define HDR                                                                                        \
    "\"header\":{\"cluster_id\":\"15118495548433857066\",\"member_id\":\"13668033151171901709\","  \
    "\"revision\":\"7\",\"raft_term\":\"2\"}"

static const char PREFIX[] = "/ftrpc/example.EchoService/";

/* ---- base64 ---- */

static void b64_round_trips_and_is_strict(void **state)
{
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar", "/ftrpc/svc/\xff\x01"};
    const char *want[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy", NULL};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        char enc[64], dec[64];
        size_t n = strlen(in[i]), dl = 99;
        ft_b64_encode(in[i], n, enc);
        assert_int_equal(strlen(enc), ft_b64_len(n));
        if (want[i]) assert_string_equal(enc, want[i]);
        assert_int_equal(ft_b64_decode(enc, strlen(enc), dec, sizeof dec, &dl), 0);
        assert_int_equal(dl, n);
        assert_memory_equal(dec, in[i], n);
    }
    const char *bad[] = {"Zg=", "Zg", "Z===", "Zh==", "Zm9=", "Zm 9", "Zg==Zg==", "=Zg=", "Zm8*"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char dec[64];
        size_t dl;
        assert_int_equal(ft_b64_decode(bad[i], strlen(bad[i]), dec, sizeof dec, &dl), FTRPC_EINVAL);
    }
    char small[2];
    size_t dl;
    assert_int_equal(ft_b64_decode("Zm9v", 4, small, sizeof small, &dl), FTRPC_EINVAL);
}

static void prefix_end_increments_the_last_byte(void **state)
{
    char out[32];
    assert_int_equal(ft_etcd_prefix_end("/ftrpc/svc/", out, sizeof out), 0);
    assert_string_equal(out, "/ftrpc/svc0");
    assert_int_equal(ft_etcd_prefix_end("a\xff\xff", out, sizeof out), 0);
    assert_string_equal(out, "b");
    assert_int_equal(ft_etcd_prefix_end("\xff", out, sizeof out), FTRPC_EINVAL);
    assert_int_equal(ft_etcd_prefix_end("/ftrpc/svc/", out, 5), FTRPC_EINVAL);
}

static void requests_are_the_json_etcd_expects(void **state)
{
    char *s = ft_etcd_req_range("/a/", "/a0", false, 10);
    assert_string_equal(s, "{\"key\":\"L2Ev\",\"range_end\":\"L2Ew\",\"limit\":\"10\"}");
    free(s);
    s = ft_etcd_req_range("/a/x", NULL, true, 0);
    assert_string_equal(s, "{\"key\":\"L2EveA==\",\"count_only\":true,\"limit\":\"0\"}");
    free(s);
    s = ft_etcd_req_put("k", "v", 42);
    assert_string_equal(s, "{\"key\":\"aw==\",\"value\":\"dg==\",\"lease\":\"42\"}");
    free(s);
    s = ft_etcd_req_grant(2);
    assert_string_equal(s, "{\"TTL\":\"2\"}");
    free(s);
    s = ft_etcd_req_lease(-5);
    assert_string_equal(s, "{\"ID\":\"-5\"}");
    free(s);
    s = ft_etcd_req_watch("/a/", "/a0", 8);
    assert_string_equal(s, "{\"create_request\":{\"key\":\"L2Ev\",\"range_end\":\"L2Ew\","
                           "\"start_revision\":\"8\"}}");
    free(s);
}

/* ---- range ---- */

static void range_answer_yields_endpoints_and_skips_bad_entries(void **state)
{
    char a[512], b[512], c[512], d[512], e[512], buf[4096];
    kv(a, sizeof a, "/ftrpc/example.EchoService/127.0.0.1:8000",
       "{\"addr\":\"127.0.0.1:8000\",\"weight\":50,\"tags\":[\"a\",\"b\"]}");
    kv(b, sizeof b, "/ftrpc/example.EchoService/127.0.0.1:8001", "{\"addr\":\"127.0.0.1:8001\"}");
    kv(c, sizeof c, "/ftrpc/example.EchoService/127.0.0.1:8002", "not json");
    kv(d, sizeof d, "/ftrpc/other/127.0.0.1:8003", "{\"addr\":\"127.0.0.1:8003\"}");
    kv(e, sizeof e, "/ftrpc/example.EchoService/127.0.0.1:8004", "{\"addr\":\"127.0.0.1:9999\"}");
    snprintf(buf, sizeof buf, "{" HDR ",\"kvs\":[%s,%s,%s,%s,%s],\"count\":\"5\"}\n", a, b, c, d,
             e);
    ft_endpoint_list l = {0};
    ft_etcd_range_info info;
    assert_int_equal(ft_etcd_parse_range(buf, strlen(buf), PREFIX, &l, &info, NULL), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.v[0].addr, "127.0.0.1:8000");
    assert_int_equal(l.v[0].weight, 50);
    assert_string_equal(l.v[0].tags, "a|b");
    assert_string_equal(l.v[1].addr, "127.0.0.1:8001");
    assert_int_equal(l.v[1].weight, FT_WEIGHT_DEFAULT);
    assert_string_equal(l.v[1].tags, "");
    assert_int_equal(info.revision, 7);
    assert_int_equal(info.count, 5);
    assert_int_equal(info.skipped, 3);
    assert_false(info.more);
    assert_true(strlen(info.why) > 0);
    ft_endpoint_list_fini(&l);

    /* No kvs, no count (proto3 omits empties): a valid empty answer. */
    const char *empty = "{" HDR "}";
    assert_int_equal(ft_etcd_parse_range(empty, strlen(empty), PREFIX, &l, &info, NULL), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(info.count, 0);
}

static void range_refuses_bad_answers_as_a_whole(void **state)
{
    const char *bad[] = {
        "",
        "garbage",
        "{",
        "{" HDR ",\"kvs\":[",
        "{" HDR "} x",
        "[]",
        "\"str\"",
        "{\"kvs\":[]}",                                         /* no header */
        "{\"header\":{\"revision\":\"x\"}}",                    /* bad revision */
        "{\"header\":{\"revision\":\"-1\"}}",                   /* negative */
        "{\"header\":{\"revision\":\"01\"}}",                   /* leading zero */
        "{\"header\":{\"revision\":\"99999999999999999999\"}}", /* overflow */
        "{\"header\":{\"revision\":1.5}}",                      /* not an integer */
        "{\"header\":\"x\"}",
        "{" HDR ",\"kvs\":{}}", /* kvs not an array */
        "{" HDR ",\"more\":\"yes\"}",
        "{" HDR ",\"count\":\"-3\"}",
        "{\"header\":{},}",                    /* trailing comma: not JSON */
        "{\"header\":{\"revision\":\"1\"}}\0", /* NUL (length includes it below) */
        "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}", /* deep
                                                                                              */
        "{\"header\":{\"revision\":\"1\"},\"s\":\"\xff\xfe\"}", /* invalid UTF-8 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ft_endpoint_list l = {0};
        const char *why = NULL;
        size_t len = strlen(bad[i]) + (i == 18 ? 1 : 0);
        if (ft_etcd_parse_range(bad[i], len, PREFIX, &l, NULL, &why) != FTRPC_ERESPONSE)
            fail_msg("bad answer %zu accepted", i);
        assert_non_null(why);
        assert_int_equal(l.n, 0);
    }
    /* Oversized: refused before parsing. */
    size_t big = FT_ETCD_RESPONSE_MAX + 1;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    huge[0] = '{';
    huge[big - 1] = '}';
    ft_endpoint_list l = {0};
    const char *why = NULL;
    assert_int_equal(ft_etcd_parse_range(huge, big, PREFIX, &l, NULL, &why), FTRPC_ERESPONSE);
    assert_string_equal(why, "response too large");
    free(huge);
}

static void range_bad_kv_elements_are_skipped(void **state)
{
    char *k = b64("/ftrpc/example.EchoService/127.0.0.1:1");
    char *v = b64("{\"addr\":\"127.0.0.1:1\"}");
    char buf[2048];
    const char *elems[] = {
        "1",                                 /* not an object */
        "{\"key\":5}",                       /* key not a string */
        "{\"key\":\"!!!!\"}",                /* key not base64 */
        "{\"key\":\"%s\"}",                  /* no value */
        "{\"key\":\"%s\",\"value\":\"@@\"}", /* value not base64 */
    };
    for (size_t i = 0; i < sizeof elems / sizeof elems[0]; i++) {
        char e[512];
        snprintf(e, sizeof e, elems[i], k);
        snprintf(buf, sizeof buf, "{" HDR ",\"kvs\":[%s,{\"key\":\"%s\",\"value\":\"%s\"}]}", e, k,
                 v);
        ft_endpoint_list l = {0};
        ft_etcd_range_info info;
        assert_int_equal(ft_etcd_parse_range(buf, strlen(buf), PREFIX, &l, &info, NULL), 0);
        assert_int_equal(l.n, 1);
        assert_int_equal(info.skipped, 1);
        ft_endpoint_list_fini(&l);
    }
    free(k);
    free(v);
}

/* ---- leases, headers, errors ---- */

static void lease_answers_parse_and_refuse_garbage(void **state)
{
    int64_t id = 0, ttl = 0, rev = 0;
    const char *g = "{" HDR ",\"ID\":\"4111120192703084044\",\"TTL\":\"2\"}";
    assert_int_equal(ft_etcd_parse_grant(g, strlen(g), &id, &ttl, NULL), 0);
    assert_int_equal(id, 4111120192703084044LL);
    assert_int_equal(ttl, 2);
    const char *bad_grant[] = {"{" HDR ",\"TTL\":\"2\"}", "{" HDR ",\"ID\":\"5\"}",
                               "{" HDR ",\"ID\":\"5\",\"TTL\":\"2\",\"error\":\"too many\"}",
                               "{\"ID\":\"5\",\"TTL\":\"2\"}", "{" HDR ",\"ID\":[],\"TTL\":\"2\"}"};
    for (size_t i = 0; i < sizeof bad_grant / sizeof bad_grant[0]; i++)
        assert_int_equal(ft_etcd_parse_grant(bad_grant[i], strlen(bad_grant[i]), &id, &ttl, NULL),
                         FTRPC_ERESPONSE);

    const char *ka = "{\"result\":{" HDR ",\"ID\":\"5\",\"TTL\":\"2\"}}\n";
    assert_int_equal(ft_etcd_parse_keepalive(ka, strlen(ka), &ttl, NULL), 0);
    assert_int_equal(ttl, 2);
    const char *gone = "{\"result\":{" HDR ",\"ID\":\"5\"}}"; /* TTL omitted: 0, lease gone */
    assert_int_equal(ft_etcd_parse_keepalive(gone, strlen(gone), &ttl, NULL), 0);
    assert_int_equal(ttl, 0);
    const char *bad_ka[] = {"{" HDR ",\"TTL\":\"2\"}", "{\"result\":5}",
                            "{\"result\":{" HDR ",\"TTL\":\"-2\"}}",
                            "{\"error\":{\"grpc_code\":5,\"message\":\"x\"}}"};
    for (size_t i = 0; i < sizeof bad_ka / sizeof bad_ka[0]; i++)
        assert_int_equal(ft_etcd_parse_keepalive(bad_ka[i], strlen(bad_ka[i]), &ttl, NULL),
                         FTRPC_ERESPONSE);

    const char *h = "{" HDR "}";
    assert_int_equal(ft_etcd_parse_header(h, strlen(h), &rev, NULL), 0);
    assert_int_equal(rev, 7);
    assert_int_equal(ft_etcd_parse_header("{}", 2, &rev, NULL), FTRPC_ERESPONSE);

    char msg[64];
    int code = 0;
    const char *e = "{\"error\":\"etcdserver: requested lease not found\",\"message\":"
                    "\"etcdserver: requested lease not found\",\"code\":5}";
    assert_int_equal(ft_etcd_parse_error(e, strlen(e), msg, sizeof msg, &code), 0);
    assert_string_equal(msg, "etcdserver: requested lease not found");
    assert_int_equal(code, 5);
    const char *se = "{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":\"no leader\"}}";
    assert_int_equal(ft_etcd_parse_error(se, strlen(se), msg, 4, &code), 0);
    assert_string_equal(msg, "no ");
    assert_int_equal(code, 14);
    assert_int_equal(ft_etcd_parse_error("{}", 2, msg, sizeof msg, &code), FTRPC_ERESPONSE);
    assert_int_equal(ft_etcd_parse_error("nope", 4, msg, sizeof msg, &code), FTRPC_ERESPONSE);
}

/* ---- watch ---- */

static void watch_messages_parse(void **state)
{
    ft_etcd_watch_msg m;
    const char *created = "{\"result\":{" HDR ",\"created\":true}}";
    assert_int_equal(ft_etcd_parse_watch(created, strlen(created), &m, NULL), 0);
    assert_true(m.created);
    assert_int_equal(m.events, 0);
    assert_int_equal(m.revision, 7);
    const char *ev = "{\"result\":{" HDR ",\"events\":[{\"kv\":{}},{\"type\":\"DELETE\"}]}}";
    assert_int_equal(ft_etcd_parse_watch(ev, strlen(ev), &m, NULL), 0);
    assert_false(m.created);
    assert_int_equal(m.events, 2);
    const char *comp = "{\"result\":{" HDR ",\"canceled\":true,\"compact_revision\":\"5\"}}";
    assert_int_equal(ft_etcd_parse_watch(comp, strlen(comp), &m, NULL), 0);
    assert_true(m.canceled);
    assert_int_equal(m.compact_revision, 5);
    const char *bad[] = {"{\"error\":{\"grpc_code\":14,\"message\":\"x\"}}",
                         "{\"result\":[]}",
                         "{\"result\":{" HDR ",\"events\":{}}}",
                         "{\"result\":{" HDR ",\"created\":\"true\"}}",
                         "{\"result\":{}}",
                         "{}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *why = NULL;
        assert_int_equal(ft_etcd_parse_watch(bad[i], strlen(bad[i]), &m, &why), FTRPC_ERESPONSE);
        assert_non_null(why);
    }
}

typedef struct {
    int n;
    char last[256];
} collected;

static int on_msg(const char *msg, size_t len, void *arg)
{
    collected *c = arg;
    c->n++;
    snprintf(c->last, sizeof c->last, "%.*s", (int)len, msg);
    return 0;
}

static void splitter_cuts_messages_wherever_the_bytes_split(void **state)
{
    const char stream[] = "{\"result\":{\"a\":\"}{\\\"\"}}\n{\"b\":[1,{\"c\":2}]}\r\n  {\"d\":3}";
    size_t n = strlen(stream);
    for (size_t cut = 0; cut <= n; cut++) {
        ft_etcd_splitter sp;
        ft_etcd_splitter_init(&sp, 1024);
        collected c = {0};
        assert_int_equal(ft_etcd_splitter_feed(&sp, stream, cut, on_msg, &c), 0);
        assert_int_equal(ft_etcd_splitter_feed(&sp, stream + cut, n - cut, on_msg, &c), 0);
        assert_int_equal(c.n, 3);
        assert_string_equal(c.last, "{\"d\":3}");
        ft_etcd_splitter_fini(&sp);
    }
    ft_etcd_splitter sp;
    ft_etcd_splitter_init(&sp, 16);
    collected c = {0};
    assert_int_equal(ft_etcd_splitter_feed(&sp, "x{}", 3, on_msg, &c), FTRPC_ERESPONSE);
    ft_etcd_splitter_reset(&sp);
    assert_int_equal(ft_etcd_splitter_feed(&sp, "{} ]", 4, on_msg, &c), FTRPC_ERESPONSE);
    assert_int_equal(c.n, 1);
    ft_etcd_splitter_reset(&sp);
    const char *big = "{\"aaaaaaaaaaaaaaaaaaaa\":1}";
    assert_int_equal(ft_etcd_splitter_feed(&sp, big, strlen(big), on_msg, &c), FTRPC_ERESPONSE);
    ft_etcd_splitter_fini(&sp);
}

/* ---- the registration value ---- */

static void value_round_trips_and_refuses_bad_values(void **state)
{
    ft_endpoint ep = {.addr = "[::1]:8000", .weight = 7, .tags = "blue|v2"};
    char buf[FT_ETCD_VALUE_MAX + 1];
    int n = ft_etcd_value_format(&ep, buf, sizeof buf);
    assert_true(n > 0);
    assert_string_equal(buf, "{\"addr\":\"[::1]:8000\",\"weight\":7,\"tags\":[\"blue\",\"v2\"]}");
    ft_endpoint back;
    assert_int_equal(ft_etcd_value_parse(buf, (size_t)n, &back, NULL), 0);
    assert_memory_equal(&back, &ep, sizeof ep);
    ft_endpoint none = {.addr = "h:1", .weight = 1};
    assert_true(ft_etcd_value_format(&none, buf, sizeof buf) > 0);
    assert_string_equal(buf, "{\"addr\":\"h:1\",\"weight\":1,\"tags\":[]}");
    assert_int_equal(ft_etcd_value_format(&ep, buf, 10), FTRPC_EINVAL);
    ft_endpoint badw = {.addr = "h:1", .weight = 0};
    assert_int_equal(ft_etcd_value_format(&badw, buf, sizeof buf), FTRPC_EINVAL);

    const char *extra = "{\"addr\":\"h:1\",\"future\":{\"x\":1}}";
    assert_int_equal(ft_etcd_value_parse(extra, strlen(extra), &back, NULL), 0);
    assert_int_equal(back.weight, FT_WEIGHT_DEFAULT);

    const char *bad[] = {
        "{}",
        "{\"addr\":5}",
        "{\"addr\":\"nope\"}",
        "{\"addr\":\"h:1\",\"weight\":0}",
        "{\"addr\":\"h:1\",\"weight\":65536}",
        "{\"addr\":\"h:1\",\"weight\":\"5\"}",
        "{\"addr\":\"h:1\",\"weight\":1.0}",
        "{\"addr\":\"h:1\",\"tags\":\"a|b\"}",
        "{\"addr\":\"h:1\",\"tags\":[\"a|b\"]}",
        "{\"addr\":\"h:1\",\"tags\":[\"\"]}",
        "{\"addr\":\"h:1\",\"tags\":[\"a b\"]}",
        "{\"addr\":\"h:1\",\"tags\":[1]}",
        ("{\"addr\":\"h:1\",\"tags\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\","
         "\"k\",\"l\",\"m\",\"n\",\"o\",\"p\",\"q\"]}"),
        "{\"addr\":\"h:1\"",
        "[\"h:1\"]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *why = NULL;
        assert_int_equal(ft_etcd_value_parse(bad[i], strlen(bad[i]), &back, &why), FTRPC_ERESPONSE);
        assert_non_null(why);
    }
    char longv[FT_ETCD_VALUE_MAX + 2];
    memset(longv, ' ', sizeof longv);
    memcpy(longv, "{\"addr\":\"h:1\"}", 14);
    assert_int_equal(ft_etcd_value_parse(longv, sizeof longv, &back, NULL), FTRPC_ERESPONSE);
}

/* The instance id and the lease's TTL travel in the value; older values have neither. */
static void value_carries_the_instance_id_and_the_ttl(void **state)
{
    ft_endpoint ep = {.addr = "h:1", .weight = 1, .id = "0b5c6f2e-6a1d", .ttl_ms = 2000};
    char buf[FT_ETCD_VALUE_MAX + 1];
    assert_true(ft_etcd_value_format(&ep, buf, sizeof buf) > 0);
    assert_string_equal(
        buf,
        "{\"addr\":\"h:1\",\"weight\":1,\"tags\":[],\"id\":\"0b5c6f2e-6a1d\",\"ttl_ms\":2000}");
    ft_endpoint back;
    assert_int_equal(ft_etcd_value_parse(buf, strlen(buf), &back, NULL), 0);
    assert_memory_equal(&back, &ep, sizeof ep);
    const char *old = "{\"addr\":\"h:1\"}";
    assert_int_equal(ft_etcd_value_parse(old, strlen(old), &back, NULL), 0);
    assert_string_equal(back.id, "");
    assert_int_equal(back.ttl_ms, 0);
    const char *bad[] = {
        "{\"addr\":\"h:1\",\"id\":\"\"}",      "{\"addr\":\"h:1\",\"id\":\"a b\"}",
        "{\"addr\":\"h:1\",\"id\":7}",         "{\"addr\":\"h:1\",\"ttl_ms\":0}",
        "{\"addr\":\"h:1\",\"ttl_ms\":\"5\"}", "{\"addr\":\"h:1\",\"ttl_ms\":86400001}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *why = NULL;
        assert_int_equal(ft_etcd_value_parse(bad[i], strlen(bad[i]), &back, &why), FTRPC_ERESPONSE);
        assert_non_null(why);
    }
    ft_endpoint badid = {.addr = "h:1", .weight = 1, .id = "a/b"};
    assert_int_equal(ft_etcd_value_format(&badid, buf, sizeof buf), FTRPC_EINVAL);
}

/* ---- URLs ---- */

static void etcd_urls_are_validated_at_open(void **state)
{
    const char *good[] = {
        "etcd://127.0.0.1:2379/ftrpc?service=example.EchoService",
        "etcd://127.0.0.1:2379?service=a",
        "etcd://127.0.0.1:2379/?service=a",
        "etcd://127.0.0.1:2379,localhost:2380,[::1]:2381/a/b.c_d-e/?service=a",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ft_naming *ns = NULL;
        assert_int_equal(ft_naming_open(good[i], &ns), 0);
        ft_naming_close(ns);
    }
    const char *bad[] = {
        "etcd://127.0.0.1:2379/ftrpc",                           /* no service */
        "etcd:///ftrpc?service=a",                               /* no endpoint */
        "etcd://127.0.0.1/ftrpc?service=a",                      /* no port */
        "etcd://127.0.0.1:2379,/ftrpc?service=a",                /* empty endpoint */
        "etcd://127.0.0.1:2379/ft rpc?service=a",                /* bad prefix char */
        "etcd://127.0.0.1:2379//ftrpc?service=a",                /* empty segment */
        "etcd://127.0.0.1:2379/ftrpc?service=a/b",               /* bad service */
        "etcd://127.0.0.1:2379/ftrpc?service=a&fsync=1",         /* unknown key */
        "etcd://h:1,h:2,h:3,h:4,h:5,h:6,h:7,h:8,h:9/?service=a", /* too many endpoints */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ft_naming *ns = NULL;
        assert_int_not_equal(ft_naming_open(bad[i], &ns), 0);
    }
}

int main(void)
{
    ftrpc_log_set_sink(quiet, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(b64_round_trips_and_is_strict),
        cmocka_unit_test(prefix_end_increments_the_last_byte),
        cmocka_unit_test(requests_are_the_json_etcd_expects),
        cmocka_unit_test(range_answer_yields_endpoints_and_skips_bad_entries),
        cmocka_unit_test(range_refuses_bad_answers_as_a_whole),
        cmocka_unit_test(range_bad_kv_elements_are_skipped),
        cmocka_unit_test(lease_answers_parse_and_refuse_garbage),
        cmocka_unit_test(watch_messages_parse),
        cmocka_unit_test(splitter_cuts_messages_wherever_the_bytes_split),
        cmocka_unit_test(value_round_trips_and_refuses_bad_values),
        cmocka_unit_test(value_carries_the_instance_id_and_the_ttl),
        cmocka_unit_test(etcd_urls_are_validated_at_open),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
