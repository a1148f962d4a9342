/* `ftrpc registry ls|watch` against a dir:// registry fed by real echo-servers: ls prints what is
 * registered (with each registration's instance id: the one given by --id, or the UUID the server
 * made), watch prints a new list when a server joins and when it leaves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "discovery_util.h"

static void registry_ls_prints_every_registered_endpoint_with_its_weight_tags_and_id(void **state)
{
    (void)state;
    h_server a, b;
    const char *wa[] = {"--weight", "50", "--tags", "blue|v2", "--id", "micro-a", NULL};
    assert_int_equal(d_server_start(&a, d_dir, "5", "1", wa), 0);
    assert_int_equal(d_server_start(&b, d_dir, "5", "1", NULL), 0);
    char *out = NULL, *err = NULL, la[128], lb[128];
    const char *args[] = {"registry", "ls", d_url, NULL};
    assert_int_equal(h_cli_run(args, 5000, &out, &err), 0);
    snprintf(la, sizeof la, "127.0.0.1:%d weight=50 tags=blue|v2 id=micro-a\n", a.port);
    snprintf(lb, sizeof lb, "127.0.0.1:%d weight=100 id=", b.port);
    print_message("registry ls:\n%s", out);
    assert_non_null(strstr(out, la));
    const char *idb = strstr(out, lb);
    assert_non_null(idb);
    idb += strlen(lb); /* a UUID v4 the server made at start */
    assert_int_equal(strcspn(idb, "\n"), 36);
    assert_int_equal(idb[14], '4');
    free(out);
    free(err);
    assert_int_equal(h_server_stop(&a, 10000), 0);
    /* a clean stop removed its entry */
    const char *args2[] = {"registry", "ls", d_url, NULL};
    assert_int_equal(h_cli_run(args2, 5000, &out, &err), 0);
    assert_null(strstr(out, la));
    assert_non_null(strstr(out, lb));
    free(out);
    free(err);
    assert_int_equal(h_server_stop(&b, 10000), 0);
}

static void registry_watch_prints_a_server_that_joins_and_leaves(void **state)
{
    (void)state;
    h_server w, s;
    const char *args[] = {"registry", "watch", d_url, NULL};
    assert_int_equal(h_child_start(&w, args), 0);
    char buf[8192], line[128];
    size_t len = 0;
    /* the first answer: an empty registry */
    assert_true(h_child_wait_output(&w, buf, sizeof buf, &len, "0 endpoint(s)", 3000));
    int64_t t0 = h_now_us();
    assert_int_equal(d_server_start(&s, d_dir, "5", "1", NULL), 0);
    snprintf(line, sizeof line, "127.0.0.1:%d weight=100 id=", s.port);
    int found = h_child_wait_output(&w, buf, sizeof buf, &len, line, 2000);
    print_message("registry watch printed the new server %lld ms after it was started\n",
                  (long long)((h_now_us() - t0) / 1000));
    if (!found) print_error("watch output:\n%s\n", buf);
    assert_true(found);
    assert_int_equal(h_server_stop(&s, 10000), 0);
    /* its departure: the next version lists nothing (versions: 1 empty, 2 joined, 3 left) */
    int left = h_child_wait_output(&w, buf, sizeof buf, &len, "-- version 3: 0 endpoint(s)", 2000);
    if (!left) print_error("watch output:\n%s\n", buf);
    assert_true(left);
    assert_int_equal(h_server_stop(&w, 5000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            registry_ls_prints_every_registered_endpoint_with_its_weight_tags_and_id,
            d_setup_registry, d_teardown),
        cmocka_unit_test_setup_teardown(registry_watch_prints_a_server_that_joins_and_leaves,
                                        d_setup_registry, d_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
