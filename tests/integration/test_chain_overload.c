/* A chain A -> B -> C whose bottom is overloaded, from outside (docs/overload.md,
 * docs/overload-client.md): C is an echo-server child with the auto limiter and two 5 ms workers
 * (400 calls/s); B is a server in this process whose worker handler calls C with a 10 s timeout
 * of its own and 3 retries; A is a load of 32 async calls in flight with a 300 ms deadline and 3
 * retries: about 8 times what C serves. Checked, every call counted:
 *  - at A every call completes exactly once, OK or ELIMIT / ERPCTIMEDOUT: B's ELIMIT carries the
 *    hold C's limiter asked for, so A's breaker and throttle stay out of it (they did not);
 *  - the deadline shrinks down the chain: no handler at B sees more than A's 300 ms left, and B's
 *    10 s calls to C end with A's deadline: once A's load ends, B has nothing in flight within
 *    a bounded wait far shorter than 10 s;
 *  - retries do not multiply: B's attempts at C stay within A's attempts x (1 + B's retries);
 *  - C answered at least what B counts OK from it (--stats-on-exit), and the limiter recovers:
 *    once the crowd is gone, calls through the chain at a light pace all succeed.
 * Bounded waits only; no assertion on how long anything took. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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

enum { A_TIMEOUT_MS = 300 };

/* B: its handler's figures, written by the workers */
typedef struct middle {
    ftrpc_client *to_c;
    atomic_int running;        /* handlers in progress */
    atomic_int handled;        /* handler runs */
    atomic_int ok;             /* downstream calls that succeeded */
    atomic_long attempts;      /* downstream attempts (result.attempts summed) */
    atomic_long max_remaining; /* the most a handler had left of its caller's deadline, ms */
    atomic_int over_deadline;  /* downstream calls that ended after the served call's deadline
                                * by more than 1 s (a 10 s call that did not inherit it) */
    atomic_int limited, timed_out, throttled, other; /* how its downstream calls failed */
} middle;

static void middle_handler(ftrpc_server_call *call, void *arg)
{
    middle *m = arg;
    atomic_fetch_add(&m->running, 1);
    atomic_fetch_add(&m->handled, 1);
    int64_t left = ftrpc_server_call_remaining_ms(call);
    int64_t seen = atomic_load(&m->max_remaining);
    while (left > seen && !atomic_compare_exchange_weak(&m->max_remaining, &seen, left)) {
    }
    int64_t t0 = h_now_ms();
    ftrpc_call_options co = {.timeout_ms = 10000};
    ftrpc_result r;
    int rc = ftrpc_call(m->to_c, "example.EchoService", "Echo", ftrpc_server_call_request(call),
                        NULL, &co, &r);
    if (h_now_ms() - t0 > left + 1000) atomic_fetch_add(&m->over_deadline, 1);
    atomic_fetch_add(&m->attempts, r.attempts);
    if (rc == 0) {
        atomic_fetch_add(&m->ok, 1);
        ftrpc_server_call_reply(call, r.response, NULL);
    } else {
        atomic_fetch_add(rc == FTRPC_ELIMIT         ? &m->limited
                         : rc == FTRPC_ERPCTIMEDOUT ? &m->timed_out
                         : rc == FTRPC_ETHROTTLED   ? &m->throttled
                                                    : &m->other,
                         1);
        /* shed here (throttled) or refused below: tell A we are overloaded too */
        int wire = rc == FTRPC_ETHROTTLED ? -FTRPC_ELIMIT : (rc == FTRPC_EBUSINESS ? r.code : -rc);
        ftrpc_server_call_fail(call, wire, r.error_text);
    }
    ftrpc_result_fini(&r);
    atomic_fetch_sub(&m->running, 1);
}

static int middle_idle(void *arg)
{
    return atomic_load(&((middle *)arg)->running) == 0;
}

static void an_overloaded_bottom_of_a_chain_sheds_without_multiplying_and_recovers(void **state)
{
    (void)state;
    h_server c;
    const char *args[] = {"--workers", "--worker-threads",  "2",    "--work-ms",
                          "5",         "--max-concurrency", "auto", "--stats-on-exit",
                          NULL};
    assert_int_equal(h_server_start(&c, args), 0);
    char url[64];
    h_server_url(&c, url, sizeof url);

    middle m = {0};
    ftrpc_client_options bo = {.retries = 3};
    assert_int_equal(ftrpc_client_new(url, &bo, &m.to_c), 0);
    ftrpc_server *b = NULL;
    assert_int_equal(ftrpc_server_new(&(ftrpc_server_options){.worker_threads = 48}, &b), 0);
    ftrpc_method_options mo = {.run_mode = FTRPC_RUN_IN_WORKER};
    assert_int_equal(
        ftrpc_server_add_method(b, "example.EchoService", "Echo", middle_handler, &m, &mo), 0);
    assert_int_equal(ftrpc_server_start(b, "127.0.0.1:0"), 0);
    char b_url[64];
    snprintf(b_url, sizeof b_url, "127.0.0.1:%d", ftrpc_server_port(b));

    /* light traffic first, so that C's limiter learns the no-load latency (docs/overload.md) */
    ftrpc_client_options ao = {.timeout_ms = A_TIMEOUT_MS * SLOW, .retries = 3};
    ftrpc_client *a = NULL;
    assert_int_equal(ftrpc_client_new(b_url, &ao, &a), 0);
    for (int i = 0; i < 150; i++) {
        ftrpc_result r;
        assert_int_equal(ftrpc_call(a, "example.EchoService", "Echo", NULL, NULL, NULL, &r), 0);
        ftrpc_result_fini(&r);
        h_sleep_ms(2);
    }

    /* the crowd */
    h_load l = {.client = a, .window = 32, .max_calls = 200000};
    int ok_before = atomic_load(&m.ok);
    int64_t t0 = h_now_us();
    assert_int_equal(h_load_start(&l), 0);
    h_sleep_ms(1000); /* a pace, not a bound: the figures below are counts */
    assert_true(h_load_stop(&l, 10000 * SLOW));
    double crowd_s = (double)(h_now_us() - t0) / 1e6;
    /* B's calls to C inherited A's deadline: nothing of them outlives it for long */
    assert_true(h_wait_until(middle_idle, &m, 3000 * SLOW));

    h_load_tally t;
    h_load_tally_get(&l, 0, INT64_MAX, &t);
    int limited = 0, timed_out = 0, throttled = 0, odd = 0, odd_code = 0;
    for (int i = 0; i < t.calls; i++) {
        const h_call_rec *r = &l.recs[i];
        if (r->kind == FTRPC_RESULT_OK) continue;
        if (r->code == FTRPC_ELIMIT)
            limited++;
        else if (r->code == FTRPC_ERPCTIMEDOUT)
            timed_out++;
        else if (r->code == FTRPC_ETHROTTLED)
            throttled++;
        else {
            odd++;
            odd_code = r->code;
        }
    }
    print_message("A: %d calls, %d ok, %d errors (ELIMIT %d, ERPCTIMEDOUT %d, ETHROTTLED %d, "
                  "other %d: %s), %d lost, %d duplicates, %ld attempts\n",
                  t.calls, t.ok, t.errors, limited, timed_out, throttled, odd,
                  odd ? ftrpc_err_name(odd_code) : "-", t.lost, t.duplicates, t.attempts);
    print_message("goodput: %.0f calls/s OK at A, C served %.0f/s through B (its capacity: 400/s; "
                  "figures taken under the machine's load)\n",
                  t.ok / crowd_s, (atomic_load(&m.ok) - ok_before) / crowd_s);
    print_message("B: %d handler runs, %d ok from C, %ld attempts at C, at most %ld ms left of A's "
                  "deadline, %d calls past it; its calls failed ELIMIT %d, timed out %d, "
                  "throttled %d, other %d\n",
                  atomic_load(&m.handled), atomic_load(&m.ok), atomic_load(&m.attempts),
                  atomic_load(&m.max_remaining), atomic_load(&m.over_deadline),
                  atomic_load(&m.limited), atomic_load(&m.timed_out), atomic_load(&m.throttled),
                  atomic_load(&m.other));
    assert_int_equal(t.lost, 0);
    assert_int_equal(t.duplicates, 0);
    assert_int_equal(t.ok + t.errors, t.calls);
    /* only the bottom's own overload answer, ELIMIT: B's ELIMIT carries C's hold, which neither
     * trips A's breaker (EBREAKER) nor feeds its throttle (ETHROTTLED); before, a plain ELIMIT
     * from B did both, and A failed most calls itself while C idled */
    assert_int_equal(odd, 0);
    assert_int_equal(throttled, 0);
    assert_true(t.ok > 0);
    assert_true(atomic_load(&m.max_remaining) <= A_TIMEOUT_MS * SLOW);
    assert_int_equal(atomic_load(&m.over_deadline), 0);
    /* B ran at most one handler per attempt of A, and retried each at most 3 times */
    assert_true(atomic_load(&m.handled) <= t.attempts + 150);
    assert_true(atomic_load(&m.attempts) <= 4L * atomic_load(&m.handled));

    /* the crowd is gone: a light pace through the chain succeeds again (the limiter at C and the
     * throttles at A and B let it through) */
    h_sleep_ms(200);
    int ok = 0;
    for (int i = 0; i < 50; i++) {
        ftrpc_result r;
        if (ftrpc_call(a, "example.EchoService", "Echo", NULL, NULL, NULL, &r) == 0) ok++;
        ftrpc_result_fini(&r);
        h_sleep_ms(5);
    }
    print_message("after the crowd: %d of 50 calls ok\n", ok);
    assert_int_equal(ok, 50);

    ftrpc_client_free(a);
    assert_int_equal(ftrpc_server_stop(b, 3000), 0);
    ftrpc_server_free(b);
    ftrpc_client_free(m.to_c);
    long answered = h_server_stop_answered(&c, 10000 * SLOW);
    print_message("C answered %ld; B got %d ok from it\n", answered, atomic_load(&m.ok));
    assert_true(answered >= atomic_load(&m.ok));
    h_load_fini(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(an_overloaded_bottom_of_a_chain_sheds_without_multiplying_and_recovers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
