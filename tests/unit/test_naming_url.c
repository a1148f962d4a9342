/* Naming URLs, endpoint specs, list:// and the file:// line format: table-driven, good and bad. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "ftrpc/log.h"
#include "naming/naming.h"

static void quiet(ftrpc_log_level level, const char *msg, void *arg) {}

static void url_parse_accepts_good_urls(void **state)
{
    ft_naming_url u;
    assert_int_equal(ft_naming_url_parse("dir:///tmp/reg?service=example.Echo", &u), 0);
    assert_string_equal(u.scheme, "dir");
    assert_string_equal(u.body, "/tmp/reg");
    assert_int_equal(u.nparams, 1);
    assert_string_equal(ft_naming_url_param(&u, "service"), "example.Echo");
    assert_null(ft_naming_url_param(&u, "fsync"));
    ft_naming_url_fini(&u);

    assert_int_equal(ft_naming_url_parse("LIST://127.0.0.1:80", &u), 0);
    assert_string_equal(u.scheme, "list");
    assert_string_equal(u.body, "127.0.0.1:80");
    assert_int_equal(u.nparams, 0);
    ft_naming_url_fini(&u);

    assert_int_equal(ft_naming_url_parse("etcd+tls://a:1,b:2/prefix?a=1&b&c=", &u), 0);
    assert_string_equal(u.scheme, "etcd+tls");
    assert_string_equal(u.body, "a:1,b:2/prefix");
    assert_int_equal(u.nparams, 3);
    assert_string_equal(ft_naming_url_param(&u, "a"), "1");
    assert_string_equal(ft_naming_url_param(&u, "b"), "");
    assert_string_equal(ft_naming_url_param(&u, "c"), "");
    static const char *const allowed[] = {"a", "b", NULL};
    assert_int_equal(ft_naming_url_only_params(&u, allowed), FTRPC_EADDR);
    static const char *const allowed2[] = {"a", "b", "c", NULL};
    assert_int_equal(ft_naming_url_only_params(&u, allowed2), 0);
    ft_naming_url_fini(&u);
}

static void url_parse_rejects_bad_urls(void **state)
{
    static const char *const bad[] = {
        "",
        "dir:/tmp",
        "://x",
        "1dir:///x",
        "d_r:///x",
        "averyveryverylongscheme://x",
        "dir:///tmp?service=a&service=b",
        "dir:///tmp?Service=a",
        "dir:///tmp?=a",
        "dir:///tmp?a=1&",
        "dir:///tmp?a=1?b",
        "dir:///tmp?a=b=c",
        "dir:///tmp\n?a=1",
        "dir:///tmp?a=1&b=2&c=3&d=4&e=5&f=6&g=7&h=8&i=9",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ft_naming_url u;
        int rc = ft_naming_url_parse(bad[i], &u);
        if (rc != FTRPC_EADDR) fail_msg("accepted bad URL \"%s\"", bad[i]);
    }
    ft_naming_url u;
    assert_int_equal(ft_naming_url_parse(NULL, &u), FTRPC_EADDR);
    char big[FT_URL_MAX + 16];
    memcpy(big, "list://", 7);
    memset(big + 7, 'a', sizeof big - 8);
    big[sizeof big - 1] = '\0';
    assert_int_equal(ft_naming_url_parse(big, &u), FTRPC_EADDR);
}

static void addr_check_table(void **state)
{
    static const struct {
        const char *addr;
        int rc;
    } cases[] = {
        {"127.0.0.1:8000", 0},
        {"localhost:1", 0},
        {"svc-1.example.com:65535", 0},
        {"[::1]:80", 0},
        {"[fe80::1:2]:8080", 0},
        {"127.0.0.1:0", FTRPC_EADDR},
        {"127.0.0.1:65536", FTRPC_EADDR},
        {"127.0.0.1:", FTRPC_EADDR},
        {"127.0.0.1", FTRPC_EADDR},
        {":80", FTRPC_EADDR},
        {"a b:80", FTRPC_EADDR},
        {"-host:80", FTRPC_EADDR},
        {"host.:80", FTRPC_EADDR},
        {"[::1:80", FTRPC_EADDR},
        {"[]:80", FTRPC_EADDR},
        {"[zz]:80", FTRPC_EADDR},
        {"host:+80", FTRPC_EADDR},
        {"host:99999999999999999999", FTRPC_EADDR},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = ft_addr_check(cases[i].addr, strlen(cases[i].addr));
        if (rc != cases[i].rc) fail_msg("ft_addr_check(\"%s\") = %d", cases[i].addr, rc);
    }
}

static void endpoint_parse_reads_weight_and_tags(void **state)
{
    ft_endpoint ep;
    const char *s = "  127.0.0.1:8000 w=50\ttag=a|b.c  ";
    assert_int_equal(ft_endpoint_parse(s, strlen(s), &ep), 0);
    assert_string_equal(ep.addr, "127.0.0.1:8000");
    assert_int_equal(ep.weight, 50);
    assert_string_equal(ep.tags, "a|b.c");
    assert_true(ft_endpoint_has_tag(&ep, "a"));
    assert_true(ft_endpoint_has_tag(&ep, "b.c"));
    assert_false(ft_endpoint_has_tag(&ep, "b"));
    assert_false(ft_endpoint_has_tag(&ep, ""));

    s = "host:1;weight=7;tags=x";
    assert_int_equal(ft_endpoint_parse(s, strlen(s), &ep), 0);
    assert_int_equal(ep.weight, 7);
    assert_string_equal(ep.tags, "x");

    s = "host:1";
    assert_int_equal(ft_endpoint_parse(s, strlen(s), &ep), 0);
    assert_int_equal(ep.weight, FT_WEIGHT_DEFAULT);
    assert_string_equal(ep.tags, "");
}

static void endpoint_parse_rejects_bad_specs(void **state)
{
    static const char *const bad[] = {
        "",
        "   ",
        "host",
        "host:1 w=0",
        "host:1 w=65536",
        "host:1 w=",
        "host:1 w=-1",
        "host:1 w=1 w=2",
        "host:1 tag=a||b",
        "host:1 tag=|a",
        "host:1 tag=a|",
        "host:1 tag=a b",
        "host:1 colour=red",
        "host:1 w",
        "host:1 tag=a/b",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ft_endpoint ep;
        memset(&ep, 0x5a, sizeof ep);
        int rc = ft_endpoint_parse(bad[i], strlen(bad[i]), &ep);
        if (rc == 0) fail_msg("accepted bad endpoint \"%s\"", bad[i]);
        assert_int_equal((unsigned char)ep.addr[0], 0x5a); /* untouched on failure */
    }
}

static void list_scheme_parses_elements(void **state)
{
    ft_naming *ns;
    assert_int_equal(ft_naming_open("list://127.0.0.1:8000 w=50 tag=a|b,127.0.0.1:8001", &ns), 0);
    ft_endpoint_list l = {0};
    assert_int_equal(ft_naming_fetch(ns, &l), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.v[0].addr, "127.0.0.1:8000");
    assert_int_equal(l.v[0].weight, 50);
    assert_string_equal(l.v[0].tags, "a|b");
    assert_string_equal(l.v[1].addr, "127.0.0.1:8001");
    assert_int_equal(l.v[1].weight, FT_WEIGHT_DEFAULT);
    ft_endpoint_list_fini(&l);
    ft_naming_close(ns);
}

static void list_scheme_rejects_bad_lists(void **state)
{
    static const char *const bad[] = {
        "list://",
        "list://a:1,",
        "list://a:1,,b:2",
        "list://a:1,b",
        "list://a:1?x=1",
        "nosuch://a:1",
        "file://relative/path",
        "file:///",
        "dir://relative",
        "dir:///tmp/reg",
        "dir:///tmp/reg?service=bad/name",
        "dir:///tmp/reg?service=a&colour=1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ft_naming *ns = NULL;
        int rc = ft_naming_open(bad[i], &ns);
        if (rc == 0) fail_msg("opened bad URL \"%s\"", bad[i]);
        assert_null(ns);
    }
}

/* protocol= is the one key every scheme takes (the clients' wire protocol); its value is checked
 * there, once for all schemes. */
static void every_scheme_takes_protocol_and_checks_its_value(void **state)
{
    static const struct {
        const char *url;
        int rc;
        ft_url_protocol p;
    } CASES[] = {
        {"list://a:1", 0, FT_URL_PROTOCOL_NONE},
        {"list://a:1?protocol=grpc", 0, FT_URL_PROTOCOL_GRPC},
        {"list://a:1?protocol=baidu_std", 0, FT_URL_PROTOCOL_BAIDU_STD},
        {"file:///tmp/no-such-list?protocol=grpc", 0, FT_URL_PROTOCOL_GRPC},
        {"dir:///tmp/reg?service=example.Echo&protocol=grpc", 0, FT_URL_PROTOCOL_GRPC},
        {"etcd://127.0.0.1:2379?protocol=grpc&service=example.Echo", 0, FT_URL_PROTOCOL_GRPC},
        {"list://a:1?protocol=h3", FTRPC_EADDR, 0},
        {"list://a:1?protocol=GRPC", FTRPC_EADDR, 0},
        {"list://a:1?protocol=", FTRPC_EADDR, 0},
        {"dir:///tmp/reg?service=example.Echo&protocol=http", FTRPC_EADDR, 0},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        ft_naming_url u;
        assert_int_equal(ft_naming_url_parse(CASES[i].url, &u), 0);
        ft_url_protocol p = FT_URL_PROTOCOL_NONE;
        int rc = ft_naming_url_protocol(&u, &p);
        ft_naming_url_fini(&u);
        if (rc != CASES[i].rc || (rc == 0 && p != CASES[i].p))
            fail_msg("%s: rc %d protocol %d", CASES[i].url, rc, (int)p);
        if (!strncmp(CASES[i].url, "etcd:", 5) && !ft_naming_find_ops("etcd"))
            continue; /* a build without libcurl has no etcd:// */
        ft_naming *ns = NULL;
        rc = ft_naming_open(CASES[i].url, &ns);
        if (rc != CASES[i].rc) fail_msg("open %s: %d", CASES[i].url, rc);
        ft_naming_close(ns);
    }
}

static int delivered;
static void count_cb(const ft_endpoint_list *list, int err, void *arg)
{
    assert_non_null(list);
    *(size_t *)arg = list->n;
    delivered++;
}

static void list_watch_delivers_once_at_start(void **state)
{
    ft_naming *ns;
    assert_int_equal(ft_naming_open("list://a:1,b:2,c:3", &ns), 0);
    size_t n = 0;
    delivered = 0;
    assert_int_equal(ft_naming_watch_start(ns, NULL, count_cb, &n), 0);
    assert_int_equal(delivered, 1);
    assert_int_equal(n, 3);
    ft_naming_close(ns);
}

static void file_list_parse_skips_comments_and_blanks(void **state)
{
    const char *text = "# servers\n"
                       "\n"
                       "127.0.0.1:8000 w=50 tag=a|b   # primary\r\n"
                       "   \t\n"
                       "127.0.0.1:8001\n"
                       "[::1]:9000 tag=v6";
    ft_endpoint_list l = {0};
    assert_int_equal(ft_file_list_parse(text, strlen(text), &l), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.v[0].addr, "127.0.0.1:8000");
    assert_int_equal(l.v[0].weight, 50);
    assert_string_equal(l.v[2].addr, "[::1]:9000");
    assert_string_equal(l.v[2].tags, "v6");
    ft_endpoint_list_fini(&l);
}

static void file_list_parse_rejects_a_bad_line_whole(void **state)
{
    static const char *const bad[] = {
        "127.0.0.1:8000\nnot-an-address\n",
        "127.0.0.1:8000 w=abc\n",
        "127.0.0.1:8000\n127.0.0.1:8001 extra\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ft_endpoint_list l = {0};
        assert_int_equal(ft_file_list_parse(bad[i], strlen(bad[i]), &l), FTRPC_EINVAL);
        assert_int_equal(l.n, 0);
        assert_null(l.v);
    }
    const char nul[] = "127.0.0.1:8000\n127.0\0.0.1:8001\n";
    ft_endpoint_list l = {0};
    assert_int_equal(ft_file_list_parse(nul, sizeof nul - 1, &l), FTRPC_EINVAL);
}

static void list_normalize_keeps_order_and_drops_later_duplicates(void **state)
{
    ft_endpoint_list l = {0}, m = {0};
    const char *addrs[] = {"c:1", "a:1", "b:1", "a:1"};
    for (int i = 0; i < 4; i++) {
        ft_endpoint ep;
        assert_int_equal(ft_endpoint_parse(addrs[i], strlen(addrs[i]), &ep), 0);
        assert_int_equal(ft_endpoint_list_add(&l, &ep), 0);
        if (i < 3) assert_int_equal(ft_endpoint_list_add(&m, &ep), 0);
    }
    assert_false(ft_endpoint_list_equal(&l, &m));
    ft_endpoint_list_normalize(&l);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.v[0].addr, "c:1");
    assert_string_equal(l.v[1].addr, "a:1");
    assert_string_equal(l.v[2].addr, "b:1");
    ft_endpoint_list_normalize(&m);
    assert_true(ft_endpoint_list_equal(&l, &m));
    ft_endpoint_list_sort(&m);
    assert_string_equal(m.v[0].addr, "a:1");
    assert_string_equal(m.v[2].addr, "c:1");
    assert_false(ft_endpoint_list_equal(&l, &m));
    ft_endpoint_list_normalize(&m);
    ft_endpoint_list_normalize(&l);
    ft_endpoint_list_sort(&l);
    m.v[1].weight = 3;
    assert_false(ft_endpoint_list_equal(&l, &m));
    ft_endpoint_list_fini(&l);
    ft_endpoint_list_fini(&m);
}

static int dummy_open(const ft_naming_url *url, ft_naming **out)
{
    return FTRPC_ENOENDPOINT;
}
static void dummy_close(ft_naming *ns) {}
static int dummy_fetch(ft_naming *ns, ft_endpoint_list *out)
{
    return 0;
}
static int dummy_watch_start(ft_naming *ns, const ft_naming_watch_opts *o, ft_naming_watch_cb cb,
                             void *arg)
{
    return 0;
}
static void dummy_watch_stop(ft_naming *ns) {}

static void new_scheme_plugs_in_by_vtable(void **state)
{
    static const ft_naming_ops dummy = {.scheme = "dummy",
                                        .open = dummy_open,
                                        .close = dummy_close,
                                        .fetch = dummy_fetch,
                                        .watch_start = dummy_watch_start,
                                        .watch_stop = dummy_watch_stop};
    static const ft_naming_ops clash = {.scheme = "dir",
                                        .open = dummy_open,
                                        .close = dummy_close,
                                        .fetch = dummy_fetch,
                                        .watch_start = dummy_watch_start,
                                        .watch_stop = dummy_watch_stop};
    ft_naming *ns;
    assert_int_equal(ft_naming_open("dummy://x", &ns), FTRPC_EADDR);
    assert_int_equal(ft_naming_register_ops(&dummy), 0);
    assert_int_equal(ft_naming_register_ops(&dummy), FTRPC_EEXIST);
    assert_int_equal(ft_naming_register_ops(&clash), FTRPC_EEXIST);
    assert_ptr_equal(ft_naming_find_ops("dummy"), &dummy);
    /* the backend's own error comes back unchanged */
    assert_int_equal(ft_naming_open("dummy://x", &ns), FTRPC_ENOENDPOINT);
}

int main(void)
{
    ftrpc_log_set_sink(quiet, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(url_parse_accepts_good_urls),
        cmocka_unit_test(url_parse_rejects_bad_urls),
        cmocka_unit_test(addr_check_table),
        cmocka_unit_test(endpoint_parse_reads_weight_and_tags),
        cmocka_unit_test(endpoint_parse_rejects_bad_specs),
        cmocka_unit_test(list_scheme_parses_elements),
        cmocka_unit_test(list_scheme_rejects_bad_lists),
        cmocka_unit_test(every_scheme_takes_protocol_and_checks_its_value),
        cmocka_unit_test(list_watch_delivers_once_at_start),
        cmocka_unit_test(file_list_parse_skips_comments_and_blanks),
        cmocka_unit_test(file_list_parse_rejects_a_bad_line_whole),
        cmocka_unit_test(list_normalize_keeps_order_and_drops_later_duplicates),
        cmocka_unit_test(new_scheme_plugs_in_by_vtable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
