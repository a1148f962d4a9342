/* Endpoints that refuse connections among live ones (issue #20, point 4), with real sockets and
 * echo-server children under a steady async load: 7 of 10 servers killed with SIGKILL, failover
 * loses no call after the first second; 199 of 200 endpoints refusing (bound, never listening)
 * and p2c, the calls still get through. Every call is counted: ok + failed = issued, and each
 * completes exactly once (h_load counts completions per call id).
 *
 * Before the fix, with the ejection cap (max_suspended_ratio 0.5) only 5 of the 7 dead servers
 * could be suspended; the other 2 stayed in rotation, their free re-sends drew on the retry budget
 * until it was empty, and 36 % of the calls failed with ECONNREFUSED. With 1,000 endpoints and one
 * alive, p2c took a refused connect's microseconds for speed and 1 call in 210,614 got through. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

/* 4 calls in flight as in the measurement, paced so that a run stays within its records
 * and the test does not saturate the shared machine. The deadline is far above what a refused
 * connect costs (microseconds), so that only the faults, not a slow sanitized run, can fail a
 * call. */
enum { WINDOW = 4, PACE_US = 100, RUN_MS = 3000, MAX_CALLS = 200000, DEADLINE_MS = 5000 };

/* Runs the load for RUN_MS and stops it; every issued call must have completed once. */
static void run_load(h_load *l, ftrpc_client *client, const char *const *addrs, int naddrs)
{
    memset(l, 0, sizeof *l);
    l->client = client;
    l->window = WINDOW;
    l->pace_us = PACE_US;
    l->max_calls = MAX_CALLS;
    for (int i = 0; i < naddrs && i < H_LOAD_MAX_ENDPOINTS; i++)
        l->endpoints[i] = addrs[i];
    l->nendpoints = naddrs < H_LOAD_MAX_ENDPOINTS ? naddrs : 0;
    assert_int_equal(h_load_start(l), 0);
    h_sleep_ms(RUN_MS * H_VG);
    assert_true(h_load_stop(l, 10000 * H_VG));
    int issued = atomic_load(&l->issued), done = atomic_load(&l->done);
    assert_int_equal(done, issued);
    for (int i = 0; i < issued; i++)
        assert_int_equal(atomic_load(&l->recs[i].completions), 1);
    assert_int_equal(atomic_load(&l->duplicates), 0);
}

typedef struct tally {
    int calls, ok, failed;       /* all of the run */
    int late_calls, late_failed; /* issued after the first second */
    int first_failed_code;       /* of the first failed call, 0 if none */
} tally;

static tally count(const h_load *l)
{
    tally t = {0};
    int n = atomic_load(&l->issued);
    int64_t t0 = n > 0 ? l->recs[0].start_us : 0;
    for (int i = 0; i < n; i++) {
        const h_call_rec *r = &l->recs[i];
        int ok = r->kind == FTRPC_RESULT_OK;
        int late = r->start_us - t0 >= 1000000;
        t.calls++;
        t.ok += ok;
        t.failed += !ok;
        t.late_calls += late;
        t.late_failed += late && !ok;
        if (!ok && !t.first_failed_code) t.first_failed_code = r->code;
    }
    return t;
}

static void print_tally(const char *what, const tally *t)
{
    print_message("%s: %d calls, %d ok, %d failed (first code %d); after the first second %d "
                  "calls, %d failed\n",
                  what, t->calls, t->ok, t->failed, t->first_failed_code, t->late_calls,
                  t->late_failed);
}

enum { NSERVERS = 10, NKILLED = 7 };

/* Ten servers, seven of them killed before the client exists: their ports refuse. Failover, the
 * default balancer (p2c) and every other default, as in the measurement. */
static void
failover_loses_no_call_after_the_first_second_with_7_of_10_endpoints_refusing(void **state)
{
    (void)state;
    h_server srv[NSERVERS];
    char addr[NSERVERS][64];
    const char *addrs[NSERVERS];
    char url[1024] = "list://";
    for (int i = 0; i < NSERVERS; i++) {
        assert_int_equal(h_server_start(&srv[i], NULL), 0);
        h_server_url(&srv[i], addr[i], sizeof addr[i]);
        addrs[i] = addr[i];
        strcat(url, addr[i]);
        if (i + 1 < NSERVERS) strcat(url, ",");
    }
    for (int i = 0; i < NKILLED; i++)
        h_server_kill(&srv[i]); /* kill -9: the port refuses from now on */
    ftrpc_client_options o = {.fail_mode = FTRPC_FAILOVER, .timeout_ms = DEADLINE_MS};
    ftrpc_client *client = NULL;
    assert_int_equal(ftrpc_client_new(url, &o, &client), 0);
    h_load l;
    run_load(&l, client, addrs, NSERVERS);
    tally t = count(&l);
    print_tally("7 of 10 refusing, failover", &t);
    int answered_by_dead = 0;
    for (int i = 0; i < NKILLED; i++)
        answered_by_dead += atomic_load(&l.answered[i]);
    ftrpc_client_free(client);
    h_load_fini(&l);
    for (int i = 0; i < NSERVERS; i++)
        h_server_kill(&srv[i]);
    assert_int_equal(t.ok + t.failed, t.calls);
    assert_true(t.late_calls > 1000);
    assert_int_equal(t.late_failed, 0);
    assert_int_equal(answered_by_dead, 0);
}

enum { NMANY = 200 };

/* 199 loopback ports bound but never listening (a connect there is refused; the sockets stay
 * bound for the whole test, so no other process can take a port meanwhile) and one echo server,
 * listed in a file (the list is too long for a list:// URL). p2c, the default. */
static void p2c_gets_the_calls_through_with_1_of_200_endpoints_alive(void **state)
{
    (void)state;
    int fds[NMANY - 1];
    char path[512];
    const char *dir = getenv("FTRPC_SCRATCH");
    snprintf(path, sizeof path, "%s/refused-endpoints-%d.txt", dir && *dir ? dir : "/tmp",
             (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < NMANY - 1; i++) {
        int port = h_refusing_port(&fds[i]);
        assert_true(port > 0);
        fprintf(f, "127.0.0.1:%d\n", port);
    }
    h_server live;
    assert_int_equal(h_server_start(&live, NULL), 0);
    char live_addr[64];
    h_server_url(&live, live_addr, sizeof live_addr);
    fprintf(f, "%s\n", live_addr);
    assert_int_equal(fclose(f), 0);

    char url[600];
    snprintf(url, sizeof url, "file://%s", path);
    ftrpc_client_options o = {.timeout_ms = DEADLINE_MS}; /* p2c, failover */
    ftrpc_client *client = NULL;
    assert_int_equal(ftrpc_client_new(url, &o, &client), 0);
    h_load l;
    run_load(&l, client, NULL, 0);
    tally t = count(&l);
    print_tally("1 of 200 alive, p2c", &t);
    ftrpc_client_free(client);
    h_load_fini(&l);
    h_server_kill(&live);
    for (int i = 0; i < NMANY - 1; i++)
        close(fds[i]);
    unlink(path);
    assert_int_equal(t.ok + t.failed, t.calls);
    assert_true(t.calls > 1000);
    assert_true(t.ok >= t.calls / 100 * 99); /* most calls: in fact all of them */
    assert_int_equal(t.late_failed, 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            failover_loses_no_call_after_the_first_second_with_7_of_10_endpoints_refusing),
        cmocka_unit_test(p2c_gets_the_calls_through_with_1_of_200_endpoints_alive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
