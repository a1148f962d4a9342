/* Graceful stop: calls in flight finish with success; calls arriving during the stop on a
 * connection the server already has are answered FTRPC_ELOGOFF; every call completes exactly once.
 * The CLI's echo-server does the same on SIGTERM and exits 0.
 *
 * A call that needs a new connection during the stop gets a connection error, because the
 * listener closes first. Which one depends on how far the handshake got when it did:
 *   - SYN after the listener closed: FTRPC_ECONNREFUSED (the common case, asserted exactly below);
 *   - handshake completed by the kernel in the listen backlog, reset when the listener closed:
 *     the connect reports ECONNRESET, which the client maps to FTRPC_ECONNECT;
 *   - accepted just before the listener closed, then closed by the stopping server without a
 *     read: FTRPC_EEOF or FTRPC_EFAILEDSOCKET;
 *   - a reconnect the kernel gave the dead listener's own port (port 0 took it from the ephemeral
 *     range), which connects to itself: the client takes that as refused, FTRPC_ECONNREFUSED,
 *     where it used to read its own request back and fail with FTRPC_ERESPONSE.
 * The load test accepts exactly these. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

enum { IN_FLIGHT = 8, DURING_STOP = 20, NCALLS = IN_FLIGHT + DURING_STOP };

static atomic_int entered;
static atomic_int completions[NCALLS];
static atomic_int codes[NCALLS];
static atomic_int done;
/* The calls in flight are held until the test has seen every call of the stop answered: with a
 * fixed handler time instead, a slow run (TSan on a loaded machine) let them finish, and the stop
 * close the connections, before the later calls were even sent. */
static atomic_int release_in_flight;

static void slow(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    atomic_fetch_add(&entered, 1);
    /* a worker thread: blocking is allowed; bounded so that a failing test cannot hang here */
    h_wait_atomic_ge(&release_in_flight, 1, 10000 * H_VG);
    ftrpc_server_call_reply(call, ftrpc_server_call_request(call), NULL);
}

static void on_done(ftrpc_result *r, void *arg)
{
    int id = (int)(intptr_t)arg;
    atomic_store(&codes[id], r->kind == FTRPC_RESULT_OK ? 0 : r->code);
    atomic_fetch_add(&completions[id], 1);
    atomic_fetch_add(&done, 1);
}

struct stopper {
    ftrpc_server *server;
    int rc;
    int64_t took_ms;
};

static void *stop_main(void *arg)
{
    struct stopper *st = arg;
    int64_t t0 = h_now_ms();
    st->rc = ftrpc_server_stop(st->server, 2000 * H_VG);
    st->took_ms = h_now_ms() - t0;
    return NULL;
}

static int port_refuses(void *arg)
{
    int fd = h_raw_connect(*(int *)arg);
    if (fd < 0) return 1;
    close(fd);
    return 0;
}

static void stop_finishes_calls_in_flight_and_answers_new_ones_elogoff(void **state)
{
    (void)state;
    ftrpc_server *server = NULL;
    assert_int_equal(
        ftrpc_server_new(&(ftrpc_server_options){.worker_threads = IN_FLIGHT}, &server), 0);
    ftrpc_method_options mo = {.run_mode = FTRPC_RUN_IN_WORKER};
    assert_int_equal(ftrpc_server_add_method(server, "test.Svc", "Slow", slow, NULL, &mo), 0);
    assert_int_equal(ftrpc_server_start(server, "127.0.0.1:0"), 0);
    int port = ftrpc_server_port(server);
    char url[64];
    snprintf(url, sizeof url, "127.0.0.1:%d", port);
    ftrpc_client *client = NULL;
    assert_int_equal(
        ftrpc_client_new(url, &(ftrpc_client_options){.timeout_ms = 5000 * H_VG}, &client), 0);
    ftrpc_buf *req = h_pattern_buf(32, 3);
    /* async calls from this thread are homed round-robin, so every IO loop gets a connection */
    for (int i = 0; i < IN_FLIGHT; i++)
        assert_int_equal(ftrpc_call_async(client, "test.Svc", "Slow", req, NULL, NULL, on_done,
                                          (void *)(intptr_t)i, NULL),
                         0);
    assert_true(h_wait_atomic_ge(&entered, IN_FLIGHT, 5000 * H_VG));

    struct stopper st = {server, -100, 0};
    pthread_t stopper;
    pthread_create(&stopper, NULL, stop_main, &st);
    /* the listener closes as the stop begins: once the port refuses, the server is stopping */
    assert_true(h_wait_until(port_refuses, &port, 2000 * H_VG));
    for (int i = IN_FLIGHT; i < NCALLS; i++)
        assert_int_equal(ftrpc_call_async(client, "test.Svc", "Slow", req, NULL, NULL, on_done,
                                          (void *)(intptr_t)i, NULL),
                         0);
    /* a new client needs a new connection: the listener is gone, so it is refused */
    ftrpc_client *late = NULL;
    assert_int_equal(ftrpc_client_new(url, NULL, &late), 0);
    ftrpc_result r;
    assert_int_equal(ftrpc_call(late, "test.Svc", "Slow", req, NULL, NULL, &r), FTRPC_ECONNREFUSED);
    ftrpc_result_fini(&r);
    ftrpc_client_free(late);
    /* the calls in flight cannot complete while held: `done` counts the calls of the stop */
    assert_true(h_wait_atomic_ge(&done, DURING_STOP, 5000 * H_VG));
    atomic_store(&release_in_flight, 1);

    pthread_join(stopper, NULL);
    assert_int_equal(st.rc, 0);
    assert_true(st.took_ms < 2000 * H_VG);
    assert_true(h_wait_atomic_ge(&done, NCALLS, 5000 * H_VG));
    ftrpc_client_free(client);
    ftrpc_buf_free(req);
    for (int i = 0; i < NCALLS; i++) {
        assert_int_equal(atomic_load(&completions[i]), 1);
        if (i < IN_FLIGHT)
            assert_int_equal(atomic_load(&codes[i]), 0);
        else
            assert_int_equal(atomic_load(&codes[i]), FTRPC_ELOGOFF);
    }
    /* the handler ran only for the calls in flight */
    assert_int_equal(atomic_load(&entered), IN_FLIGHT);
    ftrpc_server_free(server);
}

static atomic_int cli_done, cli_ok, cli_code;

static void on_cli_done(ftrpc_result *r, void *arg)
{
    (void)arg;
    if (r->kind == FTRPC_RESULT_OK)
        atomic_fetch_add(&cli_ok, 1);
    else
        atomic_store(&cli_code, r->code);
    atomic_fetch_add(&cli_done, 1);
}

static void sigterm_lets_delayed_calls_succeed_and_exits_zero(void **state)
{
    (void)state;
    h_server srv;
    /* under memcheck the delay, the wait for the requests and every bound are 10 times longer */
    char delay[16];
    snprintf(delay, sizeof delay, "%d", 500 * H_VG);
    const char *args[] = {"--delay-ms", delay, NULL};
    assert_int_equal(h_server_start(&srv, args), 0);
    ftrpc_client *client = h_client_of(&srv, 5000 * H_VG);
    assert_non_null(client);
    /* warm up: one call per IO loop (async calls from here are homed round-robin), so that every
     * connection is open and served before the calls under test go out */
    int loops = ftrpc_runtime_io_threads(ftrpc_runtime_default());
    assert_int_equal(h_echo_async(client, loops, on_cli_done, NULL), 0);
    assert_true(h_wait_atomic_ge(&cli_done, loops, 5000 * H_VG));
    assert_int_equal(atomic_load(&cli_ok), loops);
    atomic_store(&cli_done, 0);
    atomic_store(&cli_ok, 0);
    assert_int_equal(h_echo_async(client, 20, on_cli_done, NULL), 0);
    h_sleep_ms(200 * H_VG); /* the requests reach the server well within its 500 ms delay */
    assert_int_equal(atomic_load(&cli_done), 0);
    assert_int_equal(h_server_stop(&srv, 10000), 0);
    assert_true(h_wait_atomic_ge(&cli_done, 20, 5000 * H_VG));
    if (atomic_load(&cli_ok) != 20)
        print_error("a call failed with %s\n", ftrpc_err_name(atomic_load(&cli_code)));
    assert_int_equal(atomic_load(&cli_ok), 20);
    ftrpc_client_free(client);
}

/* ---- stop under continuous load ---- */

enum { LOAD_THREADS = 4 };

struct load {
    ftrpc_client *client;
    atomic_int *stop;
    atomic_int *ok_total;
    int calls, ok, logoff, conn_err, other, other_code;
};

static void echo_io(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    ftrpc_server_call_reply(call, ftrpc_server_call_request(call), NULL);
}

static void *load_main(void *arg)
{
    struct load *l = arg;
    ftrpc_call_options o = {.timeout_ms = 5000 * H_VG};
    while (!atomic_load(l->stop)) {
        ftrpc_result r;
        int rc = ftrpc_call(l->client, "test.Svc", "Echo", NULL, NULL, &o, &r);
        l->calls++;
        if (rc == 0) {
            l->ok++;
            atomic_fetch_add(l->ok_total, 1);
        } else if (rc == FTRPC_ELOGOFF)
            l->logoff++;
        else if (rc == FTRPC_ECONNREFUSED || rc == FTRPC_ECONNECT || rc == FTRPC_EEOF ||
                 rc == FTRPC_EFAILEDSOCKET)
            l->conn_err++;
        else {
            l->other++;
            l->other_code = rc;
        }
        ftrpc_result_fini(&r);
    }
    return NULL;
}

static void stop_under_continuous_load_ends_every_call_with_a_stop_outcome(void **state)
{
    (void)state;
    for (int round = 0; round < 10; round++) {
        ftrpc_server *server = NULL;
        assert_int_equal(ftrpc_server_new(NULL, &server), 0);
        assert_int_equal(ftrpc_server_add_method(server, "test.Svc", "Echo", echo_io, NULL, NULL),
                         0);
        assert_int_equal(ftrpc_server_start(server, "127.0.0.1:0"), 0);
        char url[64];
        snprintf(url, sizeof url, "127.0.0.1:%d", ftrpc_server_port(server));
        ftrpc_client *client = NULL;
        assert_int_equal(ftrpc_client_new(url, NULL, &client), 0);
        atomic_int stop = 0, ok_total = 0;
        struct load loads[LOAD_THREADS];
        pthread_t threads[LOAD_THREADS];
        for (int i = 0; i < LOAD_THREADS; i++) {
            loads[i] = (struct load){.client = client, .stop = &stop, .ok_total = &ok_total};
            pthread_create(&threads[i], NULL, load_main, &loads[i]);
        }
        assert_true(h_wait_atomic_ge(&ok_total, 50, 5000 * H_VG)); /* the load is flowing */
        assert_int_equal(ftrpc_server_stop(server, 1000 * H_VG), 0);
        h_sleep_ms(20); /* calls keep coming at the stopped server */
        atomic_store(&stop, 1);
        int calls = 0, ok = 0, other = 0;
        for (int i = 0; i < LOAD_THREADS; i++) {
            pthread_join(threads[i], NULL);
            calls += loads[i].calls;
            ok += loads[i].ok;
            other += loads[i].other;
            if (loads[i].other)
                print_error("round %d: unexpected %s\n", round,
                            ftrpc_err_name(loads[i].other_code));
        }
        assert_int_equal(other, 0);
        assert_true(ok > 0);
        assert_true(calls > ok);
        ftrpc_client_free(client);
        ftrpc_server_free(server);
    }
}

int main(void)
{
    /* the first test needs a connection on every IO loop before the stop: IN_FLIGHT calls
     * spread round-robin over 2 loops give each one */
    setenv("FTRPC_IO_THREADS", "2", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stop_finishes_calls_in_flight_and_answers_new_ones_elogoff),
        cmocka_unit_test(sigterm_lets_delayed_calls_succeed_and_exits_zero),
        cmocka_unit_test(stop_under_continuous_load_ends_every_call_with_a_stop_outcome),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
