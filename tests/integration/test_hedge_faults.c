/* Hedged and tied calls under faults, from outside (docs/backup-requests.md, issue #24's review):
 * the existing tests race copies between healthy servers; these kill, freeze and stop the servers
 * while copies are out, and free or cancel the calls themselves, with every call counted:
 *  - a steady async load of tied calls (and of hedged calls, 3 copies) on three echo-server
 *    children while one is killed with SIGKILL, frozen with SIGSTOP past the calls' deadline, or
 *    stopped gracefully (SIGTERM): every call completes exactly once (ok + errors = calls, no
 *    duplicate callback), a call fails only with the code the fault explains (ERPCTIMEDOUT for a
 *    copy that started on a frozen server), and the survivors answered at least the calls the
 * client counts OK from them (--stats-on-exit);
 *  - cancel storms: thousands of tied / hedged async calls cancelled right after they start, and a
 *    client freed with thousands in flight on frozen servers: each callback runs once, with
 *    ECANCELED / ESTOPPED or a success.
 * Bounded waits only; no assertion on how long anything took. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#if defined(__SANITIZE_ADDRESS__) || H_UNDER_TSAN
#define SLOW 4
#else
#define SLOW 1
#endif

enum { NSRV = 3 };

typedef enum { F_KILL, F_FREEZE, F_STOP } fault;
typedef enum { M_TIED, M_HEDGED } mode;

static const char *fault_name[] = {"SIGKILL", "SIGSTOP", "graceful stop"};
static const char *mode_name[] = {"tied", "hedged x3"};

/* Three single-worker servers whose handler holds the worker 10 ms: queues form under a window of
 * 12 calls, which is what tied requests are for. */
static void servers_start(h_server *s)
{
    const char *args[] = {"--workers", "--worker-threads", "1", "--work-ms", "10", "--grace-ms",
                          "3000",      "--stats-on-exit",  NULL};
    for (int i = 0; i < NSRV; i++)
        assert_int_equal(h_server_start(&s[i], args), 0);
}

static ftrpc_client *client_of(h_server *s, mode m, int timeout_ms, h_load *l)
{
    char url[128] = "list://";
    for (int i = 0; i < NSRV; i++) {
        char a[32];
        h_server_url(&s[i], a, sizeof a);
        strcat(url, a);
        if (i + 1 < NSRV) strcat(url, ",");
        if (l) {
            l->endpoints[i] = strdup(a);
            l->nendpoints = i + 1;
        }
    }
    ftrpc_client_options o = {.lb = "rr", .timeout_ms = timeout_ms, .throttle_k = -1};
    if (m == M_TIED)
        o.tied = 1;
    else {
        o.fail_mode = FTRPC_FAILBACKUP;
        o.max_attempts = 3;
        o.backup_request_ms = 5;
        o.backup_budget = FTRPC_BACKUP_BUDGET_NONE;
    }
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(url, &o, &c), 0);
    return c;
}

static void load_endpoints_free(h_load *l)
{
    for (int i = 0; i < l->nendpoints; i++)
        free((char *)l->endpoints[i]);
}

/* The load runs; at 40 calls done the fault hits server 0; 120 calls later (bounded) the load
 * stops. Then the accounting. */
static void run_fault(mode m, fault f)
{
    h_server s[NSRV];
    servers_start(s);
    h_load l = {.window = 12, .max_calls = 4000};
    /* a deadline the frozen server outlives: copies that started there end in ERPCTIMEDOUT */
    int timeout_ms = 400 * SLOW;
    l.client = client_of(s, m, timeout_ms, &l);
    assert_int_equal(h_load_start(&l), 0);
    assert_true(h_load_wait_done(&l, 40, 10000 * SLOW));
    int64_t fault_us = h_now_us();
    if (f == F_KILL)
        h_server_kill(&s[0]);
    else if (f == F_FREEZE)
        h_server_signal(&s[0], SIGSTOP);
    else
        kill(s[0].pid, SIGTERM);
    int base = atomic_load(&l.done);
    assert_true(h_load_wait_done(&l, base + 120, 20000 * SLOW));
    if (f == F_FREEZE) { /* frozen past the deadline of every call that was waiting there */
        h_sleep_ms(timeout_ms + 100);
        h_server_resume(&s[0]);
    }
    assert_true(h_load_stop(&l, 10000 * SLOW));
    ftrpc_client_free(l.client);

    h_load_tally t;
    h_load_tally_get(&l, 0, INT64_MAX, &t);
    int timed_out = 0, other = 0, other_code = 0;
    int ok_after = 0;
    for (int i = 0; i < t.calls; i++) {
        const h_call_rec *r = &l.recs[i];
        if (r->kind == FTRPC_RESULT_OK) {
            if (r->start_us >= fault_us) ok_after++;
            continue;
        }
        if (r->code == FTRPC_ERPCTIMEDOUT)
            timed_out++;
        else {
            other++;
            other_code = r->code;
        }
    }
    long answered[NSRV];
    for (int i = 0; i < NSRV; i++)
        answered[i] = f == F_KILL && i == 0 ? -1 : h_server_stop_answered(&s[i], 10000 * SLOW);
    print_message("%s, %s of server 0: %d calls, %d ok (%d issued after the fault), %d errors "
                  "(%d timed out, %d other, last other %s), %d lost, %d duplicates, max %d "
                  "attempts; servers answered %ld / %ld / %ld, client ok from them %d / %d / %d\n",
                  mode_name[m], fault_name[f], t.calls, t.ok, ok_after, t.errors, timed_out, other,
                  other ? ftrpc_err_name(other_code) : "-", t.lost, t.duplicates, t.max_attempts,
                  answered[0], answered[1], answered[2], atomic_load(&l.answered[0]),
                  atomic_load(&l.answered[1]), atomic_load(&l.answered[2]));
    assert_int_equal(t.lost, 0);
    assert_int_equal(t.duplicates, 0);
    assert_int_equal(t.ok + t.errors, t.calls);
    assert_true(ok_after > 0);
    /* two healthy servers were left at every moment: no call fails for the fault, except one whose
     * only running copy sat on the frozen server (a tied call's started copy, or every copy of a
     * hedged call that went there) until the deadline */
    assert_int_equal(other, 0);
    if (f != F_FREEZE) assert_int_equal(timed_out, 0);
    for (int i = 0; i < NSRV; i++) {
        if (answered[i] < 0) continue; /* killed: its count went with it */
        assert_true(answered[i] >= atomic_load(&l.answered[i]));
    }
    load_endpoints_free(&l);
    h_load_fini(&l);
}

/* The scenarios, one cmocka test each (named in main). */
typedef struct scenario {
    mode m;
    fault f;
} scenario;

static void fault_scenario(void **state)
{
    const scenario *sc = *state;
    run_fault(sc->m, sc->f);
}

/* ---- cancel storms ---- */

typedef struct storm {
    atomic_int done, twice, ok, canceled, stopped, limited, other, other_code;
    atomic_int *seen; /* per call: callbacks that ran */
} storm;

typedef struct storm_arg {
    storm *s;
    int i;
} storm_arg;

static void storm_cb(ftrpc_result *r, void *arg)
{
    storm_arg *a = arg;
    storm *s = a->s;
    if (atomic_fetch_add(&s->seen[a->i], 1) > 0) {
        atomic_fetch_add(&s->twice, 1);
        return;
    }
    if (r->kind == FTRPC_RESULT_OK)
        atomic_fetch_add(&s->ok, 1);
    else if (r->code == FTRPC_ECANCELED)
        atomic_fetch_add(&s->canceled, 1);
    else if (r->code == FTRPC_ESTOPPED)
        atomic_fetch_add(&s->stopped, 1);
    else if (r->code == FTRPC_ELIMIT) /* a server's per-connection cap (1024 calls in flight) */
        atomic_fetch_add(&s->limited, 1);
    else {
        atomic_fetch_add(&s->other, 1);
        atomic_store(&s->other_code, r->code);
    }
    atomic_fetch_add(&s->done, 1);
}

enum { STORM = 3000 };

/* Starts STORM async calls; cancel_every: cancel call i when i % cancel_every == 0 (0: none),
 * right after it started. Returns how many started. */
static int storm_run(ftrpc_client *c, storm *s, storm_arg *args, int cancel_every)
{
    ftrpc_buf *req = h_pattern_buf(32, 1);
    int started = 0;
    for (int i = 0; i < STORM; i++) {
        args[i] = (storm_arg){s, i};
        ftrpc_call_id id = 0;
        if (ftrpc_call_async(c, "example.EchoService", "Echo", req, NULL, NULL, storm_cb, &args[i],
                             &id) != 0)
            continue;
        started++;
        if (cancel_every && i % cancel_every == 0) assert_int_equal(ftrpc_call_cancel(c, id), 0);
    }
    ftrpc_buf_free(req);
    return started;
}

static int storm_done(void *arg)
{
    storm *s = ((storm_arg *)arg)->s;
    return atomic_load(&s->done) + atomic_load(&s->twice) >= ((storm_arg *)arg)->i;
}

static void storm_check(storm *s, int started, const char *what)
{
    print_message("%s: %d started, %d ok, %d cancelled, %d stopped, %d ELIMIT, %d other (last "
                  "%s), %d twice\n",
                  what, started, atomic_load(&s->ok), atomic_load(&s->canceled),
                  atomic_load(&s->stopped), atomic_load(&s->limited), atomic_load(&s->other),
                  atomic_load(&s->other) ? ftrpc_err_name(atomic_load(&s->other_code)) : "-",
                  atomic_load(&s->twice));
    assert_int_equal(started, STORM);
    assert_int_equal(atomic_load(&s->done), started);
    assert_int_equal(atomic_load(&s->twice), 0);
}

/* Every other call of a storm on three busy servers is cancelled as soon as it started: each
 * callback runs once; the cancelled ones end ECANCELED (or OK when the answer came first), the
 * others OK, or ELIMIT when their copies met a server's per-connection cap (1024 calls in flight:
 * 1500 hedged calls of up to 3 copies on 3 connections reach it); and each server still serves
 * afterwards. */
static void a_cancel_storm_of_tied_and_hedged_calls_ends_each_once(void **state)
{
    (void)state;
    h_server s[NSRV];
    servers_start(s);
    for (int m = M_TIED; m <= M_HEDGED; m++) {
        ftrpc_client *c = client_of(s, (mode)m, 30000 * SLOW, NULL);
        storm st = {0};
        st.seen = calloc(STORM, sizeof *st.seen);
        storm_arg *args = calloc(STORM, sizeof *args);
        int started = storm_run(c, &st, args, 2);
        storm_arg all = {&st, started};
        assert_true(h_wait_until(storm_done, &all, 60000 * SLOW));
        storm_check(&st, started, mode_name[m]);
        assert_int_equal(atomic_load(&st.other), 0);
        assert_int_equal(atomic_load(&st.stopped), 0);
        assert_true(atomic_load(&st.canceled) >= 1);
        assert_true(atomic_load(&st.canceled) <= STORM / 2);
        /* the client and the servers still serve */
        ftrpc_result r;
        ftrpc_buf *req = h_pattern_buf(8, 2);
        assert_int_equal(ftrpc_call(c, "example.EchoService", "Echo", req, NULL, NULL, &r), 0);
        ftrpc_result_fini(&r);
        ftrpc_buf_free(req);
        ftrpc_client_free(c);
        free(st.seen);
        free(args);
    }
    for (int i = 0; i < NSRV; i++)
        h_server_stop(&s[i], 10000 * SLOW);
}

/* A client freed with thousands of tied / hedged calls in flight on frozen servers (no answer can
 * come): ftrpc_client_free returns, and every callback has run once, ESTOPPED. Resumed, the
 * servers find the connections closed and run none of the queued copies: what they answered in
 * all stays below one per call (before the fix, each ran every copy it held, 10 ms apiece, and its
 * stop outlived its grace period by seconds). */
static void a_client_freed_with_tied_and_hedged_calls_in_flight_ends_each_once(void **state)
{
    (void)state;
    for (int m = M_TIED; m <= M_HEDGED; m++) {
        h_server s[NSRV];
        servers_start(s);
        ftrpc_client *c = client_of(s, (mode)m, 30000 * SLOW, NULL);
        /* connected first, so that the calls go out and sit in the frozen servers' sockets */
        for (int i = 0; i < NSRV; i++) {
            ftrpc_result r;
            assert_int_equal(ftrpc_call(c, "example.EchoService", "Echo", NULL, NULL, NULL, &r), 0);
            ftrpc_result_fini(&r);
        }
        for (int i = 0; i < NSRV; i++)
            h_server_signal(&s[i], SIGSTOP);
        storm st = {0};
        st.seen = calloc(STORM, sizeof *st.seen);
        storm_arg *args = calloc(STORM, sizeof *args);
        int started = storm_run(c, &st, args, 0);
        ftrpc_client_free(c);
        storm_check(&st, started, mode_name[m]);
        assert_int_equal(atomic_load(&st.stopped), started);
        for (int i = 0; i < NSRV; i++)
            h_server_resume(&s[i]);
        h_sleep_ms(100); /* the servers read the requests and the close */
        long answered = 0;
        for (int i = 0; i < NSRV; i++) {
            long n = h_server_stop_answered(&s[i], 10000 * SLOW);
            assert_true(n >= 0);
            answered += n;
        }
        print_message("%s: the servers answered %ld of the %d calls (and their copies) of the "
                      "freed client\n",
                      mode_name[m], answered, STORM);
        assert_true(answered < STORM / 2);
        free(st.seen);
        free(args);
    }
}

int main(void)
{
    static scenario sc[] = {{M_TIED, F_KILL},     {M_HEDGED, F_KILL}, {M_TIED, F_FREEZE},
                            {M_HEDGED, F_FREEZE}, {M_TIED, F_STOP},   {M_HEDGED, F_STOP}};
    const struct CMUnitTest tests[] = {
        {"tied_calls_end_once_when_a_server_is_killed", fault_scenario, NULL, NULL, &sc[0]},
        {"hedged_calls_end_once_when_a_server_is_killed", fault_scenario, NULL, NULL, &sc[1]},
        {"tied_calls_end_once_when_a_server_is_frozen", fault_scenario, NULL, NULL, &sc[2]},
        {"hedged_calls_end_once_when_a_server_is_frozen", fault_scenario, NULL, NULL, &sc[3]},
        {"tied_calls_end_once_when_a_server_stops_gracefully", fault_scenario, NULL, NULL, &sc[4]},
        {"hedged_calls_end_once_when_a_server_stops_gracefully", fault_scenario, NULL, NULL,
         &sc[5]},
        cmocka_unit_test(a_cancel_storm_of_tied_and_hedged_calls_ends_each_once),
        cmocka_unit_test(a_client_freed_with_tied_and_hedged_calls_in_flight_ends_each_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
