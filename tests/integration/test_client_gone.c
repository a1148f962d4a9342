/* A client that goes away while the server still holds its calls: the server answers into a
 * closed connection without touching the session that is gone (the ASan build checks it), keeps
 * serving, and stops cleanly. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(server_survives_a_client_that_leaves_with_calls_in_flight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
