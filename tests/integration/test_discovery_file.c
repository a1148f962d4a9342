/* Discovery through a file:// list with real server processes: an edit (atomic replace) that adds
 * or removes an address is followed within a second, a half-written bad file keeps the last good
 * list, and an endpoint removed while a call to it is in flight finishes that call, then has its
 * connection closed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdatomic.h>

#include "discovery_util.h"

static char path[300];

static int setup(void **state)
{
    (void)state;
    d_tmpdir(d_dir, sizeof d_dir, "file");
    snprintf(path, sizeof path, "%s/servers", d_dir);
    snprintf(d_url, sizeof d_url, "file://%s", path);
    return 0;
}

/* Writes text to a temp file and renames it over the list, as deploy tools do. */
static void replace_list(const char *text)
{
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s/.servers.tmp", d_dir);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0);
}

static void list_of(char *buf, size_t len, h_server *a, h_server *b)
{
    char x[64] = "", y[64] = "";
    if (a) h_server_url(a, x, sizeof x);
    if (b) h_server_url(b, y, sizeof y);
    snprintf(buf, len, "# test list\n%s%s%s%s", x, a ? "\n" : "", y, b ? "\n" : "");
}

/* Server A (and B when asked), a list holding A alone, and a client on it. */
static h_server A, B;
static char aa[64], ba[64];
static ftrpc_client *cli;

static void up(const char *const *a_args, int with_b)
{
    char text[256];
    assert_int_equal(h_server_start(&A, a_args), 0);
    h_server_url(&A, aa, sizeof aa);
    B.pid = 0;
    if (with_b) {
        assert_int_equal(h_server_start(&B, NULL), 0);
        h_server_url(&B, ba, sizeof ba);
    }
    list_of(text, sizeof text, &A, NULL);
    replace_list(text);
    cli = d_client(d_url, "rr");
    assert_non_null(cli);
    assert_true(d_wait_view(cli, aa, 1, 2000) >= 0);
}

static void down(void)
{
    ftrpc_client_free(cli);
    if (A.pid) assert_int_equal(h_server_stop(&A, 10000), 0);
    if (B.pid) assert_int_equal(h_server_stop(&B, 10000), 0);
}

static void edits_adding_and_removing_an_address_are_followed_within_a_second(void **state)
{
    (void)state;
    up(NULL, 1);
    char text[256], ep[64];
    assert_int_equal(d_call(cli, ep, sizeof ep), 0);
    assert_string_equal(ep, aa);

    list_of(text, sizeof text, &A, &B);
    int64_t t0 = h_now_us(), add_ms = -1;
    replace_list(text);
    while (h_now_us() - t0 < 3000000) {
        assert_int_equal(d_call(cli, ep, sizeof ep), 0);
        if (!strcmp(ep, ba)) {
            add_ms = (h_now_us() - t0) / 1000;
            break;
        }
    }
    list_of(text, sizeof text, &B, NULL);
    t0 = h_now_us();
    replace_list(text);
    int64_t del_ms = d_wait_view(cli, aa, 0, 3000);
    print_message("file edit followed: added address called after %lld ms, removed address gone "
                  "after %lld ms\n",
                  (long long)add_ms, (long long)del_ms);
    assert_true(add_ms >= 0 && add_ms < 1000);
    assert_true(del_ms >= 0 && del_ms < 1000);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(d_call(cli, ep, sizeof ep), 0);
        assert_string_equal(ep, ba);
    }
    down();
}

static void half_written_bad_file_keeps_the_last_good_list(void **state)
{
    (void)state;
    up(NULL, 0);
    char text[256], ep[64];
    list_of(text, sizeof text, &A, NULL);

    /* written in place and cut short: the second line is half an address */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%s\n127.0.0.", aa);
    assert_int_equal(fclose(f), 0);
    ft_naming_view_stats st = {0};
    int64_t deadline = h_now_ms() + 2000;
    while (!st.stale && h_now_ms() < deadline) {
        usleep(2000);
        ft_naming_view_stats_get(cli->view, &st);
    }
    assert_true(st.stale);
    assert_int_equal(d_view_size(cli), 1);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(d_call(cli, ep, sizeof ep), 0);
        assert_string_equal(ep, aa);
    }
    /* fixed: fresh again */
    replace_list(text);
    deadline = h_now_ms() + 2000;
    while (st.stale && h_now_ms() < deadline) {
        usleep(2000);
        ft_naming_view_stats_get(cli->view, &st);
    }
    assert_false(st.stale);
    down();
}

static atomic_int slow_done, slow_code;
static char slow_ep[64];

static void on_slow(ftrpc_result *r, void *arg)
{
    (void)arg;
    snprintf(slow_ep, sizeof slow_ep, "%s", r->endpoint);
    atomic_store(&slow_code, r->code);
    atomic_store(&slow_done, 1);
}

static int conns_at_most_one(void *arg)
{
    return atomic_load(&((ftrpc_client *)arg)->open_conns) <= 1;
}

static void removed_endpoint_finishes_its_call_in_flight_then_its_connection_closes(void **state)
{
    (void)state;
    const char *slow[] = {"--delay-ms", "600", NULL};
    up(slow, 1);
    char text[256], ep[64];
    atomic_store(&slow_done, 0);
    assert_int_equal(
        ftrpc_call_async(cli, D_SERVICE, "Echo", NULL, NULL, NULL, on_slow, NULL, NULL), 0);
    usleep(150 * 1000); /* the request reaches A, which holds it for 600 ms */
    list_of(text, sizeof text, &B, NULL);
    replace_list(text);
    assert_true(d_wait_view(cli, aa, 0, 1000) >= 0);
    assert_int_equal(atomic_load(&slow_done), 0);
    assert_true(h_wait_atomic_ge(&slow_done, 1, 3000));
    assert_int_equal(atomic_load(&slow_code), 0);
    assert_string_equal(slow_ep, aa);
    assert_int_equal(d_call(cli, ep, sizeof ep), 0);
    assert_string_equal(ep, ba);
    /* A's connection is closed once its last call is answered: only B's remains */
    assert_true(h_wait_until(conns_at_most_one, cli, 2000));
    assert_int_equal(atomic_load(&cli->open_conns), 1);
    down();
}

static void removed_endpoint_whose_call_timed_out_has_its_connection_closed(void **state)
{
    (void)state;
    const char *hang[] = {"--hang-rate", "1", NULL};
    up(hang, 1);
    char text[256], ep[64];
    atomic_store(&slow_done, 0);
    ftrpc_call_options once = {.timeout_ms = 400, .fail_mode = FTRPC_FAILFAST};
    assert_int_equal(
        ftrpc_call_async(cli, D_SERVICE, "Echo", NULL, NULL, &once, on_slow, NULL, NULL), 0);
    usleep(100 * 1000);           /* the request reaches A, which never answers */
    h_server_signal(&A, SIGSTOP); /* nor answers the cancel sent at the timeout: nothing is read */
    list_of(text, sizeof text, &B, NULL);
    replace_list(text);
    assert_true(d_wait_view(cli, aa, 0, 1000) >= 0);
    assert_true(h_wait_atomic_ge(&slow_done, 1, 3000));
    assert_int_equal(atomic_load(&slow_code), FTRPC_ERPCTIMEDOUT);
    assert_int_equal(d_call(cli, ep, sizeof ep), 0);
    assert_string_equal(ep, ba);
    /* no answer will ever come on A's connection: the timeout left it idle, so it closes */
    assert_true(h_wait_until(conns_at_most_one, cli, 2000));
    h_server_kill(&A); /* it holds a hung call: a graceful stop would wait its grace out */
    down();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            edits_adding_and_removing_an_address_are_followed_within_a_second, setup, d_teardown),
        cmocka_unit_test_setup_teardown(half_written_bad_file_keeps_the_last_good_list, setup,
                                        d_teardown),
        cmocka_unit_test_setup_teardown(
            removed_endpoint_finishes_its_call_in_flight_then_its_connection_closes, setup,
            d_teardown),
        cmocka_unit_test_setup_teardown(
            removed_endpoint_whose_call_timed_out_has_its_connection_closed, setup, d_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
