/* A client that goes away while the server still holds its calls: the server answers into a
 * closed connection without touching the session that is gone (the ASan build checks it), keeps
 * serving, and stops cleanly; and the calls of a closed connection still queued for a worker are
 * never run (nobody can receive their answers), whether the client left or a graceful stop closed
 * the connection once its grace period ran out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "harness.h"

static atomic_int done;

static void on_done(ftrpc_result *r, void *arg)
{
    (void)r;
    (void)arg;
    atomic_fetch_add(&done, 1);
}

static void server_survives_a_client_that_leaves_with_calls_in_flight(void **state)
{
    (void)state;
    h_server srv;
    const char *args[] = {"--delay-ms", "300", NULL};
    assert_int_equal(h_server_start(&srv, args), 0);
    char url[64];
    h_server_url(&srv, url, sizeof url);
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(url, NULL, &c), 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(ftrpc_call_async(c, "example.EchoService", "Echo", NULL, NULL, NULL,
                                          on_done, NULL, NULL),
                         0);
    usleep(100 * 1000);   /* the server holds the 20 calls for 300 ms */
    ftrpc_client_free(c); /* closes the connection: the calls end ESTOPPED here */
    assert_int_equal(atomic_load(&done), 20);
    usleep(400 * 1000); /* the server's replies come due and meet the closed session */
    assert_true(h_server_alive(&srv));
    /* still serving */
    assert_int_equal(ftrpc_client_new(url, NULL, &c), 0);
    ftrpc_result r;
    assert_int_equal(ftrpc_call(c, "example.EchoService", "Echo", NULL, NULL, NULL, &r), 0);
    ftrpc_result_fini(&r);
    ftrpc_client_free(c);
    int rc = h_server_stop(&srv, 10000);
    if (rc != 0) {
        char *err = h_server_stderr(&srv);
        print_error("server stderr:\n%s\n", err);
        free(err);
    }
    assert_int_equal(rc, 0);
}

/* ---- queued calls of a closed connection ---- */

enum { QUEUED = 300 }; /* 300 calls of 20 ms on one worker: 6 s of work */

static const char *const queue_args[] = {"--workers", "--worker-threads", "1",   "--work-ms",
                                         "20",        "--grace-ms",       "300", "--stats-on-exit",
                                         NULL};

static ftrpc_client *queue_calls(h_server *srv)
{
    assert_int_equal(h_server_start(srv, queue_args), 0);
    char url[64];
    h_server_url(srv, url, sizeof url);
    ftrpc_client_options o = {.timeout_ms = 60000, .retries = FTRPC_NO_RETRY};
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(url, &o, &c), 0);
    atomic_store(&done, 0);
    for (int i = 0; i < QUEUED; i++)
        assert_int_equal(ftrpc_call_async(c, "example.EchoService", "Echo", NULL, NULL, NULL,
                                          on_done, NULL, NULL),
                         0);
    return c;
}

/* The client leaves with 300 calls queued on a one-worker server: the server skips them as it
 * would had each been cancelled (brpc and gRPC servers take a broken connection as a cancel), so
 * a graceful stop right after finds nothing left to run. Before, the worker ran all 300 for a
 * client that was gone (6 s of work), and the stop's grace period ran out on them. */
static void queued_calls_of_a_client_that_left_are_never_run(void **state)
{
    (void)state;
    h_server srv;
    ftrpc_client *c = queue_calls(&srv);
    usleep(100 * 1000); /* the requests are read and queued; a few run */
    ftrpc_client_free(c);
    assert_int_equal(atomic_load(&done), QUEUED);
    usleep(100 * 1000); /* the server sees the connection close */
    long answered = h_server_stop_answered(&srv, 20000);
    print_message("%d calls queued, the client left: the server answered %ld\n", QUEUED, answered);
    assert_true(answered >= 0);
    assert_true(answered < QUEUED / 2);
}

/* A graceful stop whose grace period (300 ms) ends with 300 calls queued: the connections are
 * closed, and the calls still queued are not run after all (nobody could receive the answers); the
 * stop ends soon after the grace period instead of when the queue is worked off. Each client call
 * ends once, with the connection's loss. */
static void a_stop_past_its_grace_period_skips_the_queued_calls(void **state)
{
    (void)state;
    h_server srv;
    ftrpc_client *c = queue_calls(&srv);
    usleep(100 * 1000);
    long answered = h_server_stop_answered(&srv, 20000);
    assert_true(h_wait_atomic_ge(&done, QUEUED, 10000));
    ftrpc_client_free(c);
    print_message("%d calls queued, grace 300 ms: the server answered %ld\n", QUEUED, answered);
    assert_int_equal(atomic_load(&done), QUEUED);
    assert_true(answered >= 0);
    assert_true(answered < QUEUED / 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(server_survives_a_client_that_leaves_with_calls_in_flight),
        cmocka_unit_test(queued_calls_of_a_client_that_left_are_never_run),
        cmocka_unit_test(a_stop_past_its_grace_period_skips_the_queued_calls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
