/* Backup requests (FTRPC_FAILBACKUP) over real sockets against in-process servers whose handlers
 * run on a worker pool and are told, per server, how long to take and how to answer:
 *
 * - no backup goes out before its delay, one goes out after it, and the fast copy wins; a delay
 *   in microseconds (300 us) is kept, not rounded to a millisecond;
 * - no backup at all when its delay is not shorter than the call's deadline;
 * - the first success wins and the late response is dropped: one completion per call;
 * - an error from the first copy does not end the call while the backup is in flight;
 * - the loser is cancelled (ftrpc.Control/Cancel): a running handler sees
 *   ftrpc_server_call_is_canceled(), and a request still queued for a busy worker is never run.
 *
 * The client uses "rr" on a fresh client, so its first pick is endpoint 0 of the cluster; the two
 * servers' roles are given after their ports are known, so that the "first" server is the one at
 * index 0 whether the view sorts addresses or keeps the list's order (the URL lists it first).
 *
 * The machine these run on may be loaded (and the ASan build is several times slower), so what a
 * case proves rests on counts and on the order of events, not on a race between two short delays:
 * where one copy must not answer before another event, its handler waits for that event (a gate on
 * the other server's counters); where a timer must fire, or must not, the delays on either side of
 * it differ by hundreds of milliseconds (scaled by SLOW under ASan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netinet/in.h>

#include "base/iobuf.h"
#include "client/backup_policy.h"   /* the rate-limited policy's counts */
#include "client/client_internal.h" /* its rpcz ring: when the backup went out */
#include "protocol/baidu_std.h"     /* the fake brpc server */
#include "harness.h"

#if defined(__SANITIZE_ADDRESS__) || H_UNDER_TSAN
#define SLOW 4
#else
#define SLOW 1
#endif

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* ---- in-process servers with scripted handlers ---- */

typedef struct srv {
    ftrpc_server *server;
    char addr[64];
    atomic_int delay_ms;       /* how long the handler takes (after the gate, if any) */
    atomic_int slow_every;     /* > 0: only every slow_every-th request received takes delay_ms */
    atomic_int fail_code;      /* 0: echo; otherwise fail the call with it */
    atomic_int stop_on_cancel; /* poll ftrpc_server_call_is_canceled and finish early */
    atomic_int *_Atomic gate;  /* NULL, or: the n-th handler run first waits until *gate >= n */
    atomic_int gate_at;        /* > 0: every handler run waits until *gate >= gate_at instead */
    atomic_int handled;        /* handler runs (counted when they start) */
    atomic_int finished;       /* handler runs that have answered */
    atomic_int saw_cancel;     /* handler runs that saw the cancel */
    atomic_int winner;         /* hedged(): this server's copy answers; the others wait */
} srv;

static void scripted(ftrpc_server_call *call, void *arg)
{
    srv *s = arg;
    int nth = atomic_fetch_add(&s->handled, 1) + 1;
    /* bounded: a copy that never comes (a bug) shows up in the counts the case asserts */
    atomic_int *gate = atomic_load(&s->gate);
    int at = atomic_load(&s->gate_at);
    if (gate) h_wait_atomic_ge(gate, at > 0 ? at : nth, 5000 * SLOW);
    int every = atomic_load(&s->slow_every);
    int64_t until = h_now_ms() + (every > 0 && nth % every ? 0 : atomic_load(&s->delay_ms));
    while (h_now_ms() < until) {
        if (atomic_load(&s->stop_on_cancel) && ftrpc_server_call_is_canceled(call)) {
            atomic_fetch_add(&s->saw_cancel, 1);
            break;
        }
        sleep_ms(1);
    }
    int code = atomic_load(&s->fail_code);
    if (code)
        ftrpc_server_call_fail(call, code, "scripted failure");
    else
        ftrpc_server_call_reply(call, ftrpc_server_call_request(call),
                                ftrpc_server_call_attachment(call));
    atomic_fetch_add(&s->finished, 1);
}

static void srv_start_with(srv *s, int workers, ftrpc_handler_cb handler)
{
    memset(s, 0, sizeof *s);
    assert_int_equal(
        ftrpc_server_new(&(ftrpc_server_options){.worker_threads = workers}, &s->server), 0);
    ftrpc_method_options mo = {.run_mode = FTRPC_RUN_IN_WORKER};
    assert_int_equal(ftrpc_server_add_method(s->server, "test.Svc", "M", handler, s, &mo), 0);
    assert_int_equal(ftrpc_server_start(s->server, "127.0.0.1:0"), 0);
    snprintf(s->addr, sizeof s->addr, "127.0.0.1:%d", ftrpc_server_port(s->server));
}

static void srv_start(srv *s, int workers)
{
    srv_start_with(s, workers, scripted);
}

static ftrpc_method_stats srv_stats(srv *s)
{
    ftrpc_method_stats st;
    assert_int_equal(ftrpc_server_method_stats(s->server, "test.Svc", "M", &st), 0);
    return st;
}

static int srv_idle_cond(void *arg)
{
    return srv_stats(arg).concurrency == 0;
}

/* Waits (bounded) until no call of the server is in flight, then stops and frees it. */
static void srv_stop(srv *s)
{
    assert_true(h_wait_until(srv_idle_cond, s, 5000));
    assert_int_equal(ftrpc_server_stop(s->server, 3000), 0);
    ftrpc_server_free(s->server);
}

/* Two servers; *first is the one the client's "rr" picks first. */
typedef struct pair {
    srv a, b;
    srv *first, *second;
    char url[160];
} pair;

static void pair_start(pair *p, int workers)
{
    srv_start(&p->a, workers);
    srv_start(&p->b, workers);
    int a_first = strcmp(p->a.addr, p->b.addr) < 0;
    p->first = a_first ? &p->a : &p->b;
    p->second = a_first ? &p->b : &p->a;
    snprintf(p->url, sizeof p->url, "list://%s,%s", p->first->addr, p->second->addr);
}

static void pair_stop(pair *p)
{
    srv_stop(&p->a);
    srv_stop(&p->b);
}

static ftrpc_client *backup_client(const char *url, int timeout_ms, int backup_ms)
{
    ftrpc_client *c = NULL;
    ftrpc_client_options o = {.timeout_ms = timeout_ms,
                              .fail_mode = FTRPC_FAILBACKUP,
                              .backup_request_ms = backup_ms,
                              .lb = "rr"};
    assert_int_equal(ftrpc_client_new(url, &o, &c), 0);
    return c;
}

static int call_once(ftrpc_client *c, const ftrpc_call_options *co, ftrpc_result *r)
{
    ftrpc_buf *req = h_pattern_buf(64, 7);
    int rc = ftrpc_call(c, "test.Svc", "M", req, NULL, co, r);
    if (rc == 0) assert_true(h_pattern_check(r->response, 64, 7));
    ftrpc_buf_free(req);
    return rc;
}

/* One call of c against a pair whose first server holds its copy until cancelled: the backup is
 * sent and wins, and the slow copy stops. Returns the call's latency. */
static int64_t backup_wins(ftrpc_client *c, const ftrpc_call_options *co, pair *p)
{
    ftrpc_result r;
    assert_int_equal(call_once(c, co, &r), 0);
    print_message("attempts %d, backups %d, backup won %d, answered by the %s server, %lld us\n",
                  r.attempts, r.backups, r.backup_won,
                  strcmp(r.endpoint, p->second->addr) ? "first" : "second",
                  (long long)r.latency_us);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(r.backups, 1);
    assert_int_equal(r.backup_won, 1);
    assert_string_equal(r.endpoint, p->second->addr);
    int64_t latency_us = r.latency_us;
    ftrpc_result_fini(&r);
    assert_true(h_wait_until(srv_idle_cond, p->first, 2000 * SLOW));
    return latency_us;
}

/* ---- the delay ---- */

static void backup_goes_out_after_its_delay_and_the_fast_copy_wins(void **state)
{
    (void)state;
    pair p;
    pair_start(&p, 4);
    atomic_store(&p.first->delay_ms, 2000 * SLOW); /* cut short by the cancel */
    atomic_store(&p.first->stop_on_cancel, 1);
    /* the backup answers once the slow handler runs, so the cancel finds it running (had it come
     * first, the request would have been skipped, unstarted) */
    atomic_store(&p.second->gate, &p.first->handled);
    ftrpc_client *c = backup_client(p.url, 4000 * SLOW, 30);
    ftrpc_result r;
    assert_int_equal(call_once(c, NULL, &r), 0);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(r.backups, 1);
    assert_int_equal(r.backup_won, 1);
    assert_string_equal(r.endpoint, p.second->addr);
    /* not before the delay, and well before the slow copy's 2 s */
    assert_true(r.latency_us >= 29000); /* libuv timers have 1 ms resolution */
    assert_true(r.latency_us < 1000000 * SLOW);
    ftrpc_result_fini(&r);
    /* the loser was cancelled: the slow handler saw it and stopped early */
    assert_true(h_wait_atomic_ge(&p.first->saw_cancel, 1, 2000 * SLOW));
    assert_int_equal(atomic_load(&p.first->handled), 1);
    assert_int_equal(atomic_load(&p.second->handled), 1);
    ftrpc_client_free(c);
    pair_stop(&p);
}

/* The backup of a call whose first copy is still out at 300 us (its handler waits until the
 * backup has reached the other server) and whose client's whole-ms delay is seconds away. */
static void expect_a_backup_at_300_us(pair *p, ftrpc_client *c, const ftrpc_call_options *co)
{
    /* the us delay decided, not the ms one: the answer came long before the ms delay */
    assert_true(backup_wins(c, co, p) < 3000000LL * SLOW);
    /* rpcz says when the backup went out: not before its 300 us (no upper bound is asserted, the
     * machine may be loaded; the figure is printed) */
    ftrpc_client *cl = c;
    ft_rpcz_span *spans = NULL;
    size_t n = ft_rpcz_ring_copy(cl->rpcz, &spans);
    assert_true(n >= 1);
    assert_int_equal(spans[0].nattempts, 2);
    assert_int_equal(spans[0].attempt[0].backup, 0);
    assert_int_equal(spans[0].attempt[1].backup, 1);
    assert_true(spans[0].attempt[1].sent_us >= 300);
    /* the client's lateness counters hold this backup: one, sent by its timer, to the other
     * server (rpcz's sent_us is the loop's time of the phase, read before the timer's callback:
     * it may be a few us earlier than the lateness figure, which reads the clock) */
    long long counted = 0;
    for (int i = 0; i < FT_BACKUP_LATE_BUCKETS; i++)
        counted += atomic_load(&cl->backup_late[i]);
    long long late_us = atomic_load(&cl->backup_late_ns_sum) / 1000;
    assert_int_equal(counted, 1);
    assert_true(late_us >= 0);
    assert_int_equal(atomic_load(&cl->backup_same_endpoint), 0);
    print_message("backup sent %lld us after the call's start (delay 300 us), its timer %lld us "
                  "late\n",
                  (long long)spans[0].attempt[1].sent_us, late_us);
    free(spans);
}

/* backup_request_us: a delay under a millisecond, taking priority over backup_request_ms, given
 * by the client or by the call. */
static void a_backup_at_300_us_goes_out_after_its_delay_not_at_the_ms_one(void **state)
{
    (void)state;
    assert_int_equal(ftrpc_rpcz_enable(0), 0);
    pair p;
    pair_start(&p, 4);
    atomic_store(&p.first->gate, &p.second->handled);
    atomic_store(&p.first->delay_ms, 2000 * SLOW); /* cut short by the cancel */
    atomic_store(&p.first->stop_on_cancel, 1);
    ftrpc_client_options o = {.timeout_ms = 8000 * SLOW,
                              .lb = "rr",
                              .backup_request_ms = 3000 * SLOW,
                              .backup_request_us = 300};
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(p.url, &o, &c), 0);
    expect_a_backup_at_300_us(&p, c, NULL);
    ftrpc_client_free(c);

    /* the call's own: 300 us against the client's 3 s */
    o.backup_request_us = 0;
    assert_int_equal(ftrpc_client_new(p.url, &o, &c), 0);
    ftrpc_call_options co = {.backup_request_us = 300};
    atomic_store(&p.second->handled, 0);
    atomic_store(&p.first->handled, 0);
    expect_a_backup_at_300_us(&p, c, &co);
    ftrpc_client_free(c);
    ftrpc_rpcz_disable();
    pair_stop(&p);
}

/* A first copy that answers (in 50 ms) before the delay (500 ms, x4 under ASan) gets no backup:
 * the result counts one attempt and the second server never hears of the call. A per-call delay
 * overrides the client's, and -1 turns backups off for one call. Each part uses a fresh client, so
 * that its call starts on the first server whatever the others did. */
static void no_backup_before_its_delay(void **state)
{
    (void)state;
    pair p;
    pair_start(&p, 4);
    atomic_store(&p.first->delay_ms, 50);
    ftrpc_client *c = backup_client(p.url, 4000 * SLOW, 500 * SLOW);
    ftrpc_result r;
    assert_int_equal(call_once(c, NULL, &r), 0);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.backups, 0);
    assert_int_equal(r.backup_won, 0);
    assert_string_equal(r.endpoint, p.first->addr);
    assert_true(r.latency_us >= 49000);
    ftrpc_result_fini(&r);
    ftrpc_client_free(c);
    assert_int_equal(atomic_load(&p.second->handled), 0);

    /* a per-call delay overrides the client's: 30 ms against a first copy of 2 s, cut short by
     * the cancel once the backup has answered */
    atomic_store(&p.first->delay_ms, 2000 * SLOW);
    atomic_store(&p.first->stop_on_cancel, 1);
    c = backup_client(p.url, 4000 * SLOW, 500 * SLOW);
    ftrpc_call_options co = {.backup_request_ms = 30};
    assert_int_equal(call_once(c, &co, &r), 0);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(r.backups, 1);
    assert_int_equal(r.backup_won, 1);
    assert_string_equal(r.endpoint, p.second->addr);
    ftrpc_result_fini(&r);
    ftrpc_client_free(c);
    /* the slow copy stopped at the cancel, or never started (skipped) */
    assert_true(h_wait_until(srv_idle_cond, p.first, 2000 * SLOW));

    /* -1 turns it off for one call: against a client delay of 30 ms, a first copy of 300 ms is
     * waited out */
    atomic_store(&p.first->delay_ms, 300);
    atomic_store(&p.first->stop_on_cancel, 0);
    c = backup_client(p.url, 4000 * SLOW, 30);
    co.backup_request_ms = -1;
    assert_int_equal(call_once(c, &co, &r), 0);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.backups, 0);
    assert_string_equal(r.endpoint, p.first->addr);
    assert_true(r.latency_us >= 299000);
    ftrpc_result_fini(&r);
    ftrpc_client_free(c);
    assert_int_equal(atomic_load(&p.second->handled), 1); /* the one backup, of the second part */
    pair_stop(&p);
}

/* A backup that could only start at or after the deadline is never sent: the call times out with
 * one attempt, and the second server never hears of it. (The deadline, x4 under ASan, also leaves
 * the first copy's handler time to start, so that it sees the cancel.) */
static void no_backup_when_its_delay_is_not_shorter_than_the_deadline(void **state)
{
    (void)state;
    static const struct {
        int timeout_ms, backup_ms;
    } cases[] = {{300 * SLOW, 300 * SLOW}, {300 * SLOW, 500 * SLOW}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pair p;
        pair_start(&p, 4);
        atomic_store(&p.first->delay_ms, 4000 * SLOW); /* cut short by the cancel */
        atomic_store(&p.first->stop_on_cancel, 1);
        ftrpc_client *c = backup_client(p.url, cases[i].timeout_ms, cases[i].backup_ms);
        ftrpc_result r;
        assert_int_equal(call_once(c, NULL, &r), FTRPC_ERPCTIMEDOUT);
        assert_int_equal(r.attempts, 1);
        assert_int_equal(r.backups, 0);
        ftrpc_result_fini(&r);
        assert_true(h_wait_atomic_ge(&p.first->saw_cancel, 1, 2000 * SLOW));
        assert_int_equal(atomic_load(&p.second->handled), 0);
        ftrpc_client_free(c);
        pair_stop(&p);
    }
}

/* A user policy through the public hooks: a 30 ms delay and a yes to every backup. */
typedef struct always_policy {
    ftrpc_backup_policy base;
    atomic_int ended;
} always_policy;

static int always_delay(ftrpc_backup_policy *self, const char *service, const char *method)
{
    (void)self;
    (void)service;
    (void)method;
    return 30;
}

static int always_backup(ftrpc_backup_policy *self, const char *service, const char *method)
{
    (void)self;
    (void)service;
    (void)method;
    return 1;
}

static void always_end(ftrpc_backup_policy *self, const ftrpc_result *result)
{
    (void)result;
    atomic_fetch_add(&((always_policy *)self)->ended, 1);
}

static int64_t forever_us(ftrpc_backup_policy *self, const char *service, const char *method)
{
    (void)self;
    (void)service;
    (void)method;
    return INT64_MAX;
}

/* A policy's backup_delay_us is outside input: one far beyond any deadline (INT64_MAX us, whose
 * ns would overflow) sends no backup and ends the call normally (UBSan checks the arithmetic). */
static void a_policy_delay_beyond_any_deadline_sends_no_backup(void **state)
{
    (void)state;
    pair p;
    pair_start(&p, 4);
    atomic_store(&p.first->delay_ms, 50);
    always_policy policy = {{.should_backup = always_backup, .backup_delay_us = forever_us}, 0};
    ftrpc_client_options o = {.timeout_ms = 4000 * SLOW, .backup_policy = &policy.base, .lb = "rr"};
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(p.url, &o, &c), 0);
    ftrpc_result r;
    assert_int_equal(call_once(c, NULL, &r), 0);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.backups, 0);
    assert_string_equal(r.endpoint, p.first->addr);
    ftrpc_result_fini(&r);
    ftrpc_client_free(c);
    assert_int_equal(atomic_load(&p.second->handled), 0);
    pair_stop(&p);
}

/* A call that opts out (backup_request_ms -1, e.g. because it is not idempotent) gets no backup,
 * even when the client has a policy that would give it one. Each call is the first of a fresh
 * client, so it starts on the slow server (300 ms, x4 under ASan; the policy says 30 ms). */
static void a_call_that_opts_out_gets_no_backup_even_with_a_policy(void **state)
{
    (void)state;
    pair p;
    pair_start(&p, 4);
    atomic_store(&p.first->delay_ms, 300 * SLOW);
    always_policy policy = {{always_delay, always_backup, always_end, NULL}, 0};
    ftrpc_client_options o = {.timeout_ms = 4000 * SLOW,
                              .fail_mode = FTRPC_FAILBACKUP,
                              .backup_policy = &policy.base,
                              .lb = "rr"};
    ftrpc_result r;
    /* the policy backs the call up, into the fast server, which answers once the slow copy runs;
     * that copy stops at the cancel */
    atomic_store(&p.first->stop_on_cancel, 1);
    atomic_store(&p.second->gate, &p.first->handled);
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(p.url, &o, &c), 0);
    assert_int_equal(call_once(c, NULL, &r), 0);
    assert_int_equal(r.backups, 1);
    assert_int_equal(r.backup_won, 1);
    ftrpc_result_fini(&r);
    ftrpc_client_free(c);
    /* the call that opts out waits the slow server out */
    assert_true(h_wait_atomic_ge(&p.first->finished, 1, 2000 * SLOW));
    atomic_store(&p.first->stop_on_cancel, 0);
    assert_int_equal(ftrpc_client_new(p.url, &o, &c), 0);
    ftrpc_call_options co = {.backup_request_ms = -1};
    assert_int_equal(call_once(c, &co, &r), 0);
    assert_string_equal(r.endpoint, p.first->addr);
    assert_int_equal(r.backups, 0);
    assert_int_equal(r.attempts, 1);
    assert_true(r.latency_us >= 300000 * SLOW - 1000);
    ftrpc_result_fini(&r);
    ftrpc_client_free(c);
    assert_int_equal(atomic_load(&p.second->handled), 1); /* the first call's backup only */
    assert_int_equal(atomic_load(&policy.ended), 2);      /* told of every call */
    pair_stop(&p);
}

/* Backups drawing on the retry budget (a fixed delay when backup_budget says so; a policy's by
 * default): with no floor and a ratio that one call cannot earn a token of, the backup is refused
 * and the call waits for its first copy; the result says so. With the rate-limited policy, which
 * agrees to the backup before the budget refuses it, the policy does not count it either: its
 * window holds the call and no backup. */
static void a_backup_the_retry_budget_refuses_is_not_sent(void **state)
{
    (void)state;
    for (int with_policy = 0; with_policy < 2; with_policy++) {
        pair p;
        pair_start(&p, 4);
        atomic_store(&p.first->delay_ms, 200);
        ftrpc_backup_policy *policy = NULL;
        ftrpc_backup_policy_ratelimited_options ro = {.backup_request_ms = 30,
                                                      .max_backup_ratio = 1};
        if (with_policy) assert_int_equal(ftrpc_backup_policy_ratelimited_new(&ro, &policy), 0);
        ftrpc_client *c = NULL;
        ftrpc_client_options o = {.timeout_ms = 2000,
                                  .fail_mode = FTRPC_FAILBACKUP,
                                  .backup_request_ms = 30,
                                  .backup_policy = policy,
                                  .lb = "rr",
                                  .retry_budget_ratio = 0.01,
                                  .retry_budget_min_per_sec = -1,
                                  .backup_budget = with_policy ? FTRPC_BACKUP_BUDGET_DEFAULT
                                                               : FTRPC_BACKUP_BUDGET_RETRY};
        assert_int_equal(ftrpc_client_new(p.url, &o, &c), 0);
        ftrpc_result r;
        assert_int_equal(call_once(c, NULL, &r), 0);
        assert_int_equal(r.backups, 0);
        assert_int_equal(r.backups_refused, 1);
        assert_int_equal(r.attempts, 1);
        assert_string_equal(r.endpoint, p.first->addr);
        assert_true(r.latency_us >= 199000);
        ftrpc_result_fini(&r);
        assert_int_equal(atomic_load(&p.second->handled), 0);
        ftrpc_client_free(c);
        if (policy) {
            int64_t backups = -1, calls = -1;
            ft_backup_policy_ratelimited_counts(policy, &backups, &calls);
            assert_int_equal(backups, 0);
            assert_int_equal(calls, 1);
            ftrpc_backup_policy_free(policy);
        }
        pair_stop(&p);
    }
}

/* The backup races the first attempt only: when that attempt failed at once and the call has
 * moved on to a retry (failover), the backup timer, which fires while the retry is out, does not
 * add a third request. The delay (300 ms, x4 under ASan) leaves the first attempt ample time to
 * fail before it, and the retry takes twice the delay. */
static void a_call_already_retrying_sends_no_backup(void **state)
{
    (void)state;
    enum { BACKUP_MS = 300 * SLOW };
    pair p;
    pair_start(&p, 4);
    atomic_store(&p.first->fail_code, FTRPC_ELIMIT); /* at once: retried elsewhere */
    atomic_store(&p.second->delay_ms, 2 * BACKUP_MS);
    ftrpc_client *c = backup_client(p.url, 4 * BACKUP_MS, BACKUP_MS);
    ftrpc_result r;
    assert_int_equal(call_once(c, NULL, &r), 0);
    assert_string_equal(r.endpoint, p.second->addr);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(r.backups, 0);
    assert_true(r.latency_us >= 2000 * BACKUP_MS - 1000);
    ftrpc_result_fini(&r);
    assert_int_equal(atomic_load(&p.first->handled), 1);
    assert_int_equal(atomic_load(&p.second->handled), 1);
    ftrpc_client_free(c);
    pair_stop(&p);
}

/* ---- where the copies go ---- */

/* With "rr" and a backup in every call, first attempts still alternate between the two servers:
 * the backup goes to the other one and takes no turn of the rotation. (When it took one, ticket 2k
 * went to each first attempt and 2k + 1 to its backup: every call started on endpoint 0.) Each
 * server holds a copy until the other server has its call's other copy, so every call has its
 * backup whatever the load; backup_won then says which server had the first attempt. */
static void with_a_backup_in_every_call_rr_still_alternates_first_attempts(void **state)
{
    (void)state;
    enum { CALLS = 8 };
    pair p;
    pair_start(&p, 4);
    atomic_store(&p.a.gate, &p.b.handled);
    atomic_store(&p.b.gate, &p.a.handled);
    ftrpc_client *c = backup_client(p.url, 4000 * SLOW, 20);
    int started_on[2] = {0, 0}; /* first, second */
    for (int i = 0; i < CALLS; i++) {
        ftrpc_result r;
        assert_int_equal(call_once(c, NULL, &r), 0);
        print_message(
            "call %d: attempts %d, backups %d, backup won %d, answered by the %s server\n", i,
            r.attempts, r.backups, r.backup_won,
            strcmp(r.endpoint, p.first->addr) ? "second" : "first");
        assert_int_equal(r.attempts, 2);
        assert_int_equal(r.backups, 1);
        int answered_by_first = !strcmp(r.endpoint, p.first->addr);
        int started_on_first = r.backup_won ? !answered_by_first : answered_by_first;
        started_on[started_on_first ? 0 : 1]++;
        if (started_on_first != (i % 2 == 0))
            fail_msg("call %d started on the %s server", i, started_on_first ? "first" : "second");
        ftrpc_result_fini(&r);
    }
    print_message(
        "first attempts: %d on the first server, %d on the second; handler runs %d and %d\n",
        started_on[0], started_on[1], atomic_load(&p.first->handled),
        atomic_load(&p.second->handled));
    assert_int_equal(started_on[0], CALLS / 2);
    assert_int_equal(atomic_load(&p.first->handled), CALLS);
    assert_int_equal(atomic_load(&p.second->handled), CALLS);
    ftrpc_client_free(c);
    pair_stop(&p);
}

/* ---- the race ---- */

#define RACE_CALLS 20

typedef struct race {
    atomic_int completions[RACE_CALLS];
    atomic_int done, ok, backups, backup_wins, from_fast;
    const char *fast_addr;
} race;

typedef struct race_arg {
    race *race;
    int index;
} race_arg;

static void race_cb(ftrpc_result *r, void *arg)
{
    race_arg *a = arg;
    atomic_fetch_add(&a->race->completions[a->index], 1);
    if (r->kind == FTRPC_RESULT_OK) atomic_fetch_add(&a->race->ok, 1);
    atomic_fetch_add(&a->race->backups, r->backups);
    atomic_fetch_add(&a->race->backup_wins, r->backup_won);
    if (!strcmp(r->endpoint, a->race->fast_addr)) atomic_fetch_add(&a->race->from_fast, 1);
    atomic_fetch_add(&a->race->done, 1);
}

/* Every call races a slow copy against a fast one: the first success completes it, and the slow
 * answer that arrives later is dropped. In order, whatever the load (a race between two delays
 * failed on a loaded CI machine): the slow server answers only once every call has completed, so
 * that each of its answers is a late one, and the fast server answers only once the slow one has
 * started a copy, so that there is a late answer to drop. Each server has a worker per call, so no
 * copy queues behind another. */
static void first_success_wins_and_the_late_response_is_dropped(void **state)
{
    (void)state;
    pair p;
    pair_start(&p, RACE_CALLS);
    static race rc;
    memset(&rc, 0, sizeof rc);
    rc.fast_addr = p.second->addr;
    atomic_store(&p.first->gate_at, RACE_CALLS);
    atomic_store(&p.first->gate, &rc.done);
    atomic_store(&p.second->gate_at, 1);
    atomic_store(&p.second->gate, &p.first->handled);
    ftrpc_client *c = backup_client(p.url, 3000 * SLOW, 40);
    static race_arg args[RACE_CALLS];
    for (int i = 0; i < RACE_CALLS; i++) {
        args[i] = (race_arg){&rc, i};
        assert_int_equal(
            ftrpc_call_async(c, "test.Svc", "M", NULL, NULL, NULL, race_cb, &args[i], NULL), 0);
    }
    int all_done = h_wait_atomic_ge(&rc.done, RACE_CALLS, 5000 * SLOW);
    /* every slow copy answers now, to a call that no longer waits */
    int slow_handled = atomic_load(&p.first->handled);
    assert_true(h_wait_until(srv_idle_cond, p.first, 5000 * SLOW));
    sleep_ms(50); /* the late answers cross the loopback (a second completion would show below) */
    int completed_twice = 0;
    for (int i = 0; i < RACE_CALLS; i++)
        completed_twice += atomic_load(&rc.completions[i]) > 1;
    print_message("%d calls: %d done, %d ok, %d answered by the fast server, %d backups (%d won), "
                  "%d slow copies answered late, %d calls completed twice\n",
                  RACE_CALLS, atomic_load(&rc.done), atomic_load(&rc.ok),
                  atomic_load(&rc.from_fast), atomic_load(&rc.backups),
                  atomic_load(&rc.backup_wins), slow_handled, completed_twice);
    assert_true(all_done);
    assert_true(slow_handled >= 1);
    for (int i = 0; i < RACE_CALLS; i++)
        assert_int_equal(atomic_load(&rc.completions[i]), 1);
    assert_int_equal(atomic_load(&rc.done), RACE_CALLS);
    assert_int_equal(atomic_load(&rc.ok), RACE_CALLS);
    /* the fast copy won every race: as the backup when the call started on the slow server, as
     * the first copy otherwise (which the fast server holds until the slow one has a copy) */
    assert_int_equal(atomic_load(&rc.from_fast), RACE_CALLS);
    assert_true(atomic_load(&rc.backup_wins) >= 1);
    ftrpc_client_free(c);
    pair_stop(&p);
}

/* The first copy fails while the backup is still out: the call waits for the backup and succeeds.
 * In order, whatever the load: the first copy fails only once the backup (30 ms) has reached the
 * second server, whose handler answers 150 ms (x4 under ASan) after that failure. rpcx ends a
 * backup call on its first completion, error or not; brpc and ftrpc wait for the other copy. */
static void an_error_from_the_first_copy_does_not_end_the_call_while_the_backup_is_out(void **state)
{
    (void)state;
    static const int codes[] = {FTRPC_EINTERNAL, FTRPC_ELIMIT, FTRPC_BUSINESS_CODE_MIN + 1};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        pair p;
        pair_start(&p, 4);
        atomic_store(&p.first->gate, &p.second->handled);
        atomic_store(&p.first->fail_code, codes[i]);
        atomic_store(&p.second->gate, &p.first->finished);
        atomic_store(&p.second->delay_ms, 150 * SLOW);
        ftrpc_client *c = backup_client(p.url, 4000 * SLOW, 30);
        ftrpc_result r;
        int rc = call_once(c, NULL, &r);
        print_message("first copy failing %d: rc %d, backups %d, backup won %d, attempts %d, "
                      "%lld us, first server answered %d\n",
                      codes[i], rc, r.backups, r.backup_won, r.attempts, (long long)r.latency_us,
                      atomic_load(&p.first->finished));
        assert_int_equal(rc, 0);
        assert_int_equal(r.kind, FTRPC_RESULT_OK);
        assert_int_equal(r.backups, 1);
        assert_int_equal(r.backup_won, 1);
        assert_int_equal(r.attempts, 2);
        assert_string_equal(r.endpoint, p.second->addr);
        assert_true(r.latency_us >= 179000); /* libuv timers have 1 ms resolution */
        ftrpc_result_fini(&r);
        assert_int_equal(atomic_load(&p.first->finished), 1); /* it failed, and was not retried */
        ftrpc_client_free(c);
        pair_stop(&p);
    }
}

/* the_call_fails_once_both_copies_failed's handler: each copy fails with its own code, the first
 * one received only once the second (the backup) has failed, and delay_ms after that. */
static void first_fails_after_the_second(ftrpc_server_call *call, void *arg)
{
    srv *s = arg;
    int nth = atomic_fetch_add(&s->handled, 1) + 1;
    if (nth == 1) {
        h_wait_atomic_ge(&s->finished, 1, 5000 * SLOW); /* bounded: a backup that never comes */
        sleep_ms(atomic_load(&s->delay_ms));
    }
    ftrpc_server_call_fail(call, FTRPC_BUSINESS_CODE_MIN + nth, "scripted failure");
    atomic_fetch_add(&s->finished, 1);
}

/* Both copies fail: the call ends with an error (the last one) once neither is out. In order,
 * whatever the load: both copies go to the one server (a backup takes the same endpoint when there
 * is no other), so both answers come on one connection; the backup (30 ms) fails at once, and the
 * first copy fails only after that failure has been handed to the connection, and 100 ms (x4 under
 * ASan) later. (With a server per copy, the backup's failure had to cross the loopback within those
 * 100 ms, which a loaded machine need not grant.) */
static void the_call_fails_once_both_copies_failed(void **state)
{
    (void)state;
    srv s;
    srv_start_with(&s, 2, first_fails_after_the_second);
    atomic_store(&s.delay_ms, 100 * SLOW);
    char url[80];
    snprintf(url, sizeof url, "list://%s", s.addr);
    ftrpc_client *c = backup_client(url, 4000 * SLOW, 30);
    ftrpc_result r;
    /* business errors are not retried without a classifier */
    int rc = call_once(c, NULL, &r);
    print_message("rc %d, code %d (the first copy's %d), backups %d, attempts %d, %lld us\n", rc,
                  r.code, FTRPC_BUSINESS_CODE_MIN + 1, r.backups, r.attempts,
                  (long long)r.latency_us);
    assert_int_equal(rc, FTRPC_EBUSINESS);
    assert_int_equal(r.backups, 1);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(r.code, FTRPC_BUSINESS_CODE_MIN + 1); /* the last to answer */
    assert_true(r.latency_us >= 129000);
    ftrpc_result_fini(&r);
    assert_int_equal(atomic_load(&s.handled), 2);
    ftrpc_client_free(c);
    srv_stop(&s);
}

/* ---- cancellation on the server ---- */

typedef struct counter {
    atomic_int done, timed_out;
} counter;

static void count_cb(ftrpc_result *r, void *arg)
{
    counter *k = arg;
    if (r->code == FTRPC_ERPCTIMEDOUT) atomic_fetch_add(&k->timed_out, 1);
    atomic_fetch_add(&k->done, 1);
}

typedef struct settled_arg {
    srv *s;
    int n;
} settled_arg;

static int all_settled(void *arg)
{
    settled_arg *a = arg;
    ftrpc_method_stats st = srv_stats(a->s);
    return st.calls + st.rejected + st.canceled_unstarted >= a->n && st.concurrency == 0;
}

/* A failfast client of one server (no retry hides what the server did). */
static ftrpc_client *single_client(const srv *s, int timeout_ms)
{
    char url[80];
    snprintf(url, sizeof url, "list://%s", s->addr);
    ftrpc_client *c = NULL;
    ftrpc_client_options o = {.timeout_ms = timeout_ms, .fail_mode = FTRPC_FAILFAST};
    assert_int_equal(ftrpc_client_new(url, &o, &c), 0);
    return c;
}

/* Starts n async calls counted by k. */
static void start_calls(ftrpc_client *c, int n, counter *k)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(ftrpc_call_async(c, "test.Svc", "M", NULL, NULL, NULL, count_cb, k, NULL),
                         0);
}

static int dispatched_at_least(void *arg)
{
    settled_arg *a = arg;
    return srv_stats(a->s).concurrency >= a->n;
}

/* One worker, held by a first call; four calls queued behind it whose deadline (300 ms, x4 under
 * ASan) passes: the client cancels them, and the worker, once free, skips them (canceled_unstarted)
 * rather than run them or even answer them. In order, whatever the load (a loaded CI machine once
 * ran this on the deadline alone): the four are sent once the first runs, and the first holds the
 * worker until all four have timed out on the client (which sends each cancel before it completes
 * the call) and a marker call sent after them on the same connection (one IO thread) has reached
 * the server, so their cancels have too. Without the cancels the worker would still skip them for
 * their passed deadline, but count them as rejected. */
static void a_cancelled_request_still_queued_is_never_executed(void **state)
{
    (void)state;
    enum { DEADLINE_MS = 300 * SLOW, QUEUED = 4 };
    srv s;
    srv_start(&s, 1);
    atomic_int release = 0;
    atomic_store(&s.gate, &release);
    ftrpc_runtime *rt = NULL;
    assert_int_equal(ftrpc_runtime_new(&(ftrpc_runtime_options){.io_threads = 1}, &rt), 0);
    char url[80];
    snprintf(url, sizeof url, "list://%s", s.addr);
    ftrpc_client *c = NULL;
    ftrpc_client_options o = {
        .runtime = rt, .timeout_ms = DEADLINE_MS, .fail_mode = FTRPC_FAILFAST};
    assert_int_equal(ftrpc_client_new(url, &o, &c), 0);
    ftrpc_call_options patient = {.timeout_ms = 10000 * SLOW};
    counter held = {0}, k = {0}, marker = {0};
    assert_int_equal(
        ftrpc_call_async(c, "test.Svc", "M", NULL, NULL, &patient, count_cb, &held, NULL), 0);
    assert_true(h_wait_atomic_ge(&s.handled, 1, 5000 * SLOW));
    start_calls(c, QUEUED, &k);
    int timed_out_all = h_wait_atomic_ge(&k.done, QUEUED, 5000 * SLOW);
    assert_int_equal(
        ftrpc_call_async(c, "test.Svc", "M", NULL, NULL, &patient, count_cb, &marker, NULL), 0);
    settled_arg behind = {&s, 1 + QUEUED + 1}; /* the marker behind the running and queued ones */
    int marker_arrived = h_wait_until(dispatched_at_least, &behind, 5000 * SLOW);
    atomic_store(&release, 100);
    assert_true(h_wait_atomic_ge(&held.done, 1, 5000 * SLOW));
    assert_true(h_wait_atomic_ge(&marker.done, 1, 5000 * SLOW));
    settled_arg sa = {&s, 1 + QUEUED + 1};
    assert_true(h_wait_until(all_settled, &sa, 5000 * SLOW));
    ftrpc_method_stats st = srv_stats(&s);
    print_message("handler runs %lld, cancelled unstarted %lld, rejected %lld; queued calls timed "
                  "out %d of %d; marker %s\n",
                  (long long)st.calls, (long long)st.canceled_unstarted, (long long)st.rejected,
                  atomic_load(&k.timed_out), QUEUED, marker_arrived ? "arrived" : "late");
    assert_true(timed_out_all);
    assert_true(marker_arrived);
    assert_int_equal(st.calls, 2); /* the first and the marker */
    assert_int_equal(atomic_load(&s.handled), 2);
    assert_int_equal(st.canceled_unstarted, QUEUED);
    assert_int_equal(st.rejected, 0);
    assert_int_equal(atomic_load(&k.timed_out), QUEUED);
    assert_int_equal(atomic_load(&held.timed_out) + atomic_load(&marker.timed_out), 0);
    ftrpc_client_free(c);
    ftrpc_runtime_free(rt);
    srv_stop(&s);
}

/* A handler that is already running sees ftrpc_server_call_is_canceled() become 1 once the caller
 * gave up (its deadline passed). The deadline (500 ms, x4 under ASan) leaves the worker ample time
 * to start the handler, but a loaded machine need not grant it: a request still queued when its
 * cancel comes is never run at all (the case above), and its handler never sees anything. Such a
 * call proves nothing here; the case says so and calls again with twice the deadline (up to 3
 * times), and asserts on the call whose handler ran. */
static void a_running_handler_sees_the_cancel(void **state)
{
    (void)state;
    enum { DELAY_MS = 10000 * SLOW, TRIES = 3 };
    srv s;
    srv_start(&s, 1);
    atomic_store(&s.delay_ms, DELAY_MS);
    atomic_store(&s.stop_on_cancel, 1);
    ftrpc_client *c = single_client(&s, 500 * SLOW);
    int ran = 0, saw = 0;
    int64_t elapsed = 0;
    for (int i = 0; i < TRIES && !ran; i++) {
        ftrpc_call_options co = {.timeout_ms = (500 * SLOW) << i};
        ftrpc_result r;
        int64_t t0 = h_now_ms();
        assert_int_equal(call_once(c, &co, &r), FTRPC_ERPCTIMEDOUT);
        ftrpc_result_fini(&r);
        settled_arg sa = {&s, i + 1};
        int settled = h_wait_until(all_settled, &sa, DELAY_MS / 2);
        elapsed = h_now_ms() - t0;
        ftrpc_method_stats st = srv_stats(&s);
        ran = st.calls > 0;
        saw = atomic_load(&s.saw_cancel);
        print_message("deadline %d ms: handler runs %lld, saw the cancel %d, settled %d, %lld ms "
                      "after the call began; skipped unstarted %lld, rejected %lld\n",
                      co.timeout_ms, (long long)st.calls, saw, settled, (long long)elapsed,
                      (long long)st.canceled_unstarted, (long long)st.rejected);
    }
    assert_true(ran);
    assert_int_equal(saw, 1);
    assert_true(elapsed < DELAY_MS); /* it did not sit out its delay */
    ftrpc_client_free(c);
    srv_stop(&s);
}

static int three_dispatched(void *arg)
{
    return srv_stats(arg).concurrency >= 3;
}

/* The client goes away (its connection closes) while its request still waits for the worker: the
 * server later finishes that call without touching the connection's freed state. The running
 * handler holds the one worker until the client's calls have ended, so two calls are queued when
 * the connection closes whatever the load. */
static void a_call_queued_when_its_connection_closes_finishes_cleanly(void **state)
{
    (void)state;
    srv s;
    srv_start(&s, 1);
    counter k = {0};
    atomic_store(&s.gate, &k.done);
    ftrpc_client *c = single_client(&s, 10000 * SLOW);
    start_calls(c, 3, &k);
    assert_true(h_wait_until(three_dispatched, &s, 5000 * SLOW)); /* one running, two queued */
    ftrpc_client_free(c); /* the calls fail ESTOPPED; the connection closes */
    assert_int_equal(atomic_load(&k.done), 3);
    settled_arg sa = {&s, 3};
    assert_true(h_wait_until(all_settled, &sa, 3000 * SLOW));
    srv_stop(&s);
}

/* ---- in brpc's terms: its example, 2 ms backups against a 20 ms sleep ---- */

/* One call of c (then freed) against a pair whose first server holds its copy until cancelled:
 * the backup is sent and wins. */
static void call_expecting_the_backup_to_win(ftrpc_client *c, const ftrpc_call_options *co, pair *p)
{
    backup_wins(c, co, p);
    ftrpc_client_free(c);
}

/* brpc's rule (its client guide): ChannelOptions.backup_request_ms alone turns backups on. A
 * positive delay does so here too, on the client or on one call, under the default fail mode; a
 * positive delay with failfast or failtry, which cannot send it, is refused with FTRPC_EINVAL
 * rather than ignored; a call that chooses failfast gets no backup from its client's delay. The
 * first server holds its copy for 2 s (cut short by the cancel) and the second answers once the
 * first has its copy, so that the backup, not the first copy, wins whatever the load. */
static void a_positive_delay_alone_turns_backups_on_as_in_brpc(void **state)
{
    (void)state;
    pair p;
    pair_start(&p, 4);
    atomic_store(&p.first->delay_ms, 2000 * SLOW);
    atomic_store(&p.first->stop_on_cancel, 1);
    atomic_store(&p.second->gate, &p.first->handled);
    for (int per_call = 0; per_call < 2; per_call++) {
        ftrpc_client *c = NULL;
        ftrpc_client_options o = {
            .timeout_ms = 4000 * SLOW, .lb = "rr", .backup_request_ms = per_call ? 0 : 2};
        assert_int_equal(ftrpc_client_new(p.url, &o, &c), 0);
        ftrpc_call_options co = {.backup_request_ms = 2};
        call_expecting_the_backup_to_win(c, per_call ? &co : NULL, &p);
    }
    /* the combinations that cannot send a backup are refused, on the client and on a call */
    ftrpc_fail_mode no_backup_modes[] = {FTRPC_FAILFAST, FTRPC_FAILTRY};
    for (int i = 0; i < 2; i++) {
        ftrpc_client *c = NULL;
        ftrpc_client_options o = {.fail_mode = no_backup_modes[i], .backup_request_ms = 2};
        assert_int_equal(ftrpc_client_new(p.url, &o, &c), FTRPC_EINVAL);
        o.backup_request_ms = 0;
        assert_int_equal(ftrpc_client_new(p.url, &o, &c), 0);
        ftrpc_call_options co = {.backup_request_ms = 2};
        ftrpc_result r;
        assert_int_equal(call_once(c, &co, &r), FTRPC_EINVAL);
        ftrpc_result_fini(&r);
        ftrpc_client_free(c);
    }
    /* a call that asks for failfast gets no backup from its client's delay: one request, answered
     * by the first server once its (now 100 ms) copy is done */
    atomic_store(&p.first->delay_ms, 100);
    atomic_store(&p.first->stop_on_cancel, 0);
    int second_before = atomic_load(&p.second->handled);
    ftrpc_client *c = NULL;
    ftrpc_client_options o = {.timeout_ms = 4000 * SLOW, .lb = "rr", .backup_request_ms = 2};
    assert_int_equal(ftrpc_client_new(p.url, &o, &c), 0);
    ftrpc_call_options failfast = {.fail_mode = FTRPC_FAILFAST};
    ftrpc_result r;
    assert_int_equal(call_once(c, &failfast, &r), 0);
    print_message("failfast call: attempts %d, backups %d\n", r.attempts, r.backups);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.backups, 0);
    assert_string_equal(r.endpoint, p.first->addr);
    ftrpc_result_fini(&r);
    ftrpc_client_free(c);
    assert_int_equal(atomic_load(&p.second->handled), second_before);
    pair_stop(&p);
}

/* A policy counting what it is asked, with a fixed delay (2 ms, brpc's example). */
typedef struct counting_policy {
    ftrpc_backup_policy base;
    atomic_int delays, asked, ended;
} counting_policy;

static int counting_delay(ftrpc_backup_policy *self, const char *service, const char *method)
{
    (void)service;
    (void)method;
    atomic_fetch_add(&((counting_policy *)self)->delays, 1);
    return 2;
}

static int counting_should(ftrpc_backup_policy *self, const char *service, const char *method)
{
    (void)service;
    (void)method;
    atomic_fetch_add(&((counting_policy *)self)->asked, 1);
    return 1;
}

static void counting_end(ftrpc_backup_policy *self, const ftrpc_result *result)
{
    (void)result;
    atomic_fetch_add(&((counting_policy *)self)->ended, 1);
}

static counting_policy counting_policy_make(void)
{
    counting_policy p = {.base = {.backup_delay_ms = counting_delay,
                                  .should_backup = counting_should,
                                  .on_call_end = counting_end}};
    return p;
}

/* brpc injects a backup policy per call (Controller::set_backup_request_policy). Given in
 * ftrpc_call_options, a policy turns backups on for that call of a client that has none, and on a
 * client with its own policy it is the one asked and told, the client's is not. */
static void a_backup_policy_given_to_one_call_decides_for_that_call(void **state)
{
    (void)state;
    pair p;
    pair_start(&p, 4);
    atomic_store(&p.first->delay_ms, 2000 * SLOW);
    atomic_store(&p.first->stop_on_cancel, 1);
    atomic_store(&p.second->gate, &p.first->handled);
    counting_policy client_policy = counting_policy_make(), call_policy = counting_policy_make();
    for (int client_has_one = 0; client_has_one < 2; client_has_one++) {
        ftrpc_client *c = NULL;
        ftrpc_client_options o = {.timeout_ms = 4000 * SLOW,
                                  .lb = "rr",
                                  .backup_policy = client_has_one ? &client_policy.base : NULL};
        assert_int_equal(ftrpc_client_new(p.url, &o, &c), 0);
        ftrpc_call_options co = {.backup_policy = &call_policy.base};
        call_expecting_the_backup_to_win(c, &co, &p);
    }
    print_message("call's policy asked %d/%d/%d, client's %d/%d/%d (delay/should/end)\n",
                  atomic_load(&call_policy.delays), atomic_load(&call_policy.asked),
                  atomic_load(&call_policy.ended), atomic_load(&client_policy.delays),
                  atomic_load(&client_policy.asked), atomic_load(&client_policy.ended));
    assert_int_equal(atomic_load(&call_policy.delays), 2);
    assert_int_equal(atomic_load(&call_policy.asked), 2);
    assert_int_equal(atomic_load(&call_policy.ended), 2);
    assert_int_equal(atomic_load(&client_policy.delays), 0);
    assert_int_equal(atomic_load(&client_policy.asked), 0);
    assert_int_equal(atomic_load(&client_policy.ended), 0);
    pair_stop(&p);
}

/* brpc: "backup request consumes one retry"; with max_retry 0 it sends none. Under
 * backup_counts_as_retry, a call with no retry left sends no backup and waits for its first copy
 * (100 ms); by default the backup leaves `retries` alone and goes out at 2 ms. (That a backup then
 * leaves no retry for the failure, 2 requests where ftrpc sends 3, is test_fail_policy's
 * a_backup_uses_up_a_retry_under_brpc_accounting.) */
static void a_backup_uses_up_a_retry_with_brpcs_accounting(void **state)
{
    (void)state;
    pair p;
    pair_start(&p, 4);
    atomic_store(&p.first->delay_ms, 100);
    atomic_store(&p.second->gate, &p.first->handled);
    for (int counts = 0; counts < 2; counts++) {
        ftrpc_client *c = NULL;
        ftrpc_client_options o = {.timeout_ms = 4000 * SLOW,
                                  .lb = "rr",
                                  .backup_request_ms = 2,
                                  .retries = FTRPC_NO_RETRY,
                                  .backup_counts_as_retry = counts};
        assert_int_equal(ftrpc_client_new(p.url, &o, &c), 0);
        ftrpc_result r;
        assert_int_equal(call_once(c, NULL, &r), 0);
        print_message("backup_counts_as_retry %d: backups %d, attempts %d\n", counts, r.backups,
                      r.attempts);
        assert_int_equal(r.backups, counts ? 0 : 1);
        assert_int_equal(r.attempts, counts ? 1 : 2);
        ftrpc_result_fini(&r);
        assert_true(h_wait_until(srv_idle_cond, p.first, 2000 * SLOW));
        ftrpc_client_free(c);
    }
    pair_stop(&p);
}

/* brpc's own example: one server that sleeps 20 ms on every other request it receives, backups
 * included; backups at 2 ms; one caller in a closed loop. From the second call on, every call's
 * first copy is a slow one and needs its backup; brpc sends them all (one per call, which is its
 * only bound). With the default budget, no backup at a fixed delay is refused: every call whose
 * delay passed with its first copy out (a backup sent, or refused) sent one. 300 calls need about
 * 300 backups, where a retry budget of 20% + 10/s would grant 160 in these 10 s. */
static void in_brpcs_example_no_backup_is_refused_by_default(void **state)
{
    (void)state;
    enum { CALLS = 300 };
    srv s;
    srv_start(&s, 4);
    atomic_store(&s.delay_ms, 20);
    atomic_store(&s.slow_every, 2);
    char url[96];
    snprintf(url, sizeof url, "list://%s", s.addr);
    ftrpc_client *c = NULL;
    ftrpc_client_options o = {.timeout_ms = 1000 * SLOW, .backup_request_ms = 2};
    assert_int_equal(ftrpc_client_new(url, &o, &c), 0);
    int backups = 0, refused = 0;
    for (int i = 0; i < CALLS; i++) {
        ftrpc_result r;
        assert_int_equal(call_once(c, NULL, &r), 0);
        backups += r.backups;
        refused += r.backups_refused;
        ftrpc_result_fini(&r);
    }
    print_message("%d calls: %d waited past the delay, %d backups sent, %d refused\n", CALLS,
                  backups + refused, backups, refused);
    assert_int_equal(refused, 0);
    assert_true(backups + refused > 160); /* the shape needs more than the retry budget had */
    ftrpc_client_free(c);
    srv_stop(&s);
}

/* A fake brpc server: baidu_std on one connection, each call's first copy held until its backup
 * has come and been answered (so that the backup wins whatever the load: brpc's example, which
 * held every other request 20 ms against 2 ms backups, left that to the machine's speed), and
 * ftrpc.Control/Cancel answered as brpc answers a method it does not have: ENOMETHOD, "Fail to
 * find method=...". Counts the requests and the cancels. */
typedef struct fake_brpc {
    int listen_fd;
    int port;
    pthread_t thread;
    atomic_int stop;
    atomic_int requests, cancels;
} fake_brpc;

typedef struct held_reply {
    int64_t due_ms;
    int64_t cid;
    ft_iobuf payload;
} held_reply;

static void fake_reply(int fd, int64_t cid, int32_t code, const char *text, const ft_iobuf *body)
{
    ft_iobuf out;
    ft_iobuf_init(&out);
    assert_int_equal(ft_baidu_std_pack_response(&out, cid, code, text, body, NULL), 0);
    size_t n = ft_iobuf_size(&out);
    const void *bytes = ft_iobuf_flatten(&out);
    h_raw_send(fd, bytes, n);
    ft_iobuf_fini(&out);
}

static void *fake_brpc_main(void *arg)
{
    fake_brpc *f = arg;
    int fd = -1;
    ft_iobuf in;
    ft_iobuf_init(&in);
    held_reply held[64];
    int nheld = 0;
    while (!atomic_load(&f->stop)) {
        int64_t now = h_now_ms();
        for (int i = 0; i < nheld;) {
            if (held[i].due_ms > now) {
                i++;
                continue;
            }
            fake_reply(fd, held[i].cid, 0, NULL, &held[i].payload);
            /* moved, not copied: an iobuf points into itself (its inline slices) */
            if (i != --nheld) {
                held[i].due_ms = held[nheld].due_ms;
                held[i].cid = held[nheld].cid;
                ft_iobuf_move(&held[i].payload, &held[nheld].payload); /* releases i's first */
            }
            ft_iobuf_fini(&held[nheld].payload);
        }
        struct pollfd pfd = {.fd = fd >= 0 ? fd : f->listen_fd, .events = POLLIN};
        if (poll(&pfd, 1, 1) <= 0) continue;
        if (fd < 0) {
            fd = accept(f->listen_fd, NULL, NULL);
            continue;
        }
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) break;
        ft_iobuf_append(&in, buf, (size_t)n);
        for (;;) {
            ft_rpc_frame fr;
            const char *reason = NULL;
            ft_rpc_frame_init(&fr);
            ft_parse_status st = ft_baidu_std_parse(&in, 1 << 20, &fr, &reason);
            if (st == FT_PARSE_NEED_MORE) break;
            assert_int_equal(st, FT_PARSE_OK);
            if (!strcmp(fr.service, "ftrpc.Control")) {
                atomic_fetch_add(&f->cancels, 1);
                char text[128];
                snprintf(text, sizeof text, "Fail to find method=%s/%s", fr.service, fr.method);
                fake_reply(fd, fr.correlation_id, 1002, text, NULL);
            } else {
                atomic_fetch_add(&f->requests, 1);
                if (nheld == 0) {
                    /* a call's first copy: held until the next request (its backup) has an answer.
                     * The next call starts only once that answer was read, after this loop's turn
                     * released the held one: a first copy never finds one held. */
                    held[nheld].due_ms = INT64_MAX;
                    held[nheld].cid = fr.correlation_id;
                    ft_iobuf_init(&held[nheld].payload);
                    ft_iobuf_move(&held[nheld].payload, &fr.payload);
                    nheld++;
                } else {
                    fake_reply(fd, fr.correlation_id, 0, NULL, &fr.payload);
                    for (int i = 0; i < nheld; i++)
                        held[i].due_ms = 0; /* answered after it, on the same connection: late */
                }
            }
            ft_rpc_frame_fini(&fr);
        }
    }
    for (int i = 0; i < nheld; i++)
        ft_iobuf_fini(&held[i].payload);
    ft_iobuf_fini(&in);
    if (fd >= 0) close(fd);
    return NULL;
}

static void fake_brpc_start(fake_brpc *f)
{
    memset(f, 0, sizeof *f);
    f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->listen_fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(f->listen_fd, 4), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(f->listen_fd, (struct sockaddr *)&sa, &len), 0);
    f->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_brpc_main, f), 0);
}

static void fake_brpc_stop(fake_brpc *f)
{
    atomic_store(&f->stop, 1);
    pthread_join(f->thread, NULL);
    close(f->listen_fd);
}

/* A brpc server has no ftrpc.Control: it answers each cancel "Fail to find method" (ENOMETHOD,
 * 1002) and raises its server-wide error counter each time. After the first such answer the
 * client sends that endpoint no more cancels. Every call has a backup that wins and a held first
 * copy to cancel. One IO thread, so that every call uses the one connection, on which the first
 * cancel's answer comes before the next call's. */
static void cancels_stop_after_a_server_answers_no_such_method(void **state)
{
    (void)state;
    fake_brpc f;
    fake_brpc_start(&f);
    ftrpc_runtime *rt = NULL;
    assert_int_equal(ftrpc_runtime_new(&(ftrpc_runtime_options){.io_threads = 1}, &rt), 0);
    char url[64];
    snprintf(url, sizeof url, "list://127.0.0.1:%d", f.port);
    ftrpc_client *c = NULL;
    ftrpc_client_options o = {.runtime = rt, .timeout_ms = 2000 * SLOW, .backup_request_ms = 2};
    assert_int_equal(ftrpc_client_new(url, &o, &c), 0);
    int won = 0;
    for (int i = 0; i < 40 && won < 5; i++) {
        ftrpc_result r;
        assert_int_equal(call_once(c, NULL, &r), 0);
        won += r.backup_won;
        ftrpc_result_fini(&r);
    }
    print_message("%d calls won by their backup, %d requests and %d cancels received\n", won,
                  atomic_load(&f.requests), atomic_load(&f.cancels));
    assert_int_equal(won, 5);
    assert_int_equal(atomic_load(&f.cancels), 1);
    ftrpc_client_free(c);
    ftrpc_runtime_free(rt);
    fake_brpc_stop(&f);
}

/* ---- hedging with several copies (max_attempts), tied requests ---- */

/* The hedging case's handler: every copy takes 12 ms. Then the winner's copy (the first sent)
 * answers once all three copies have come (the gate counts them over the three servers), so that
 * the third copy is surely sent before any answer; the others wait (bounded) for their cancel. */
static void hedged(ftrpc_server_call *call, void *arg)
{
    srv *s = arg;
    atomic_int *received = atomic_load(&s->gate);
    atomic_fetch_add(&s->handled, 1);
    atomic_fetch_add(received, 1);
    sleep_ms(12);
    if (atomic_load(&s->winner)) {
        h_wait_atomic_ge(received, 3, 5000 * SLOW);
    } else {
        for (int64_t until = h_now_ms() + 5000 * SLOW; h_now_ms() < until; sleep_ms(1))
            if (ftrpc_server_call_is_canceled(call)) {
                atomic_fetch_add(&s->saw_cancel, 1);
                break;
            }
    }
    ftrpc_server_call_reply(call, ftrpc_server_call_request(call),
                            ftrpc_server_call_attachment(call));
    atomic_fetch_add(&s->finished, 1);
}

/* 1 to 3: which of the three servers (in list order) has this address; 0: none. */
static int server_no(const char *endpoint, srv *const by_addr[3])
{
    for (int i = 0; i < 3; i++)
        if (!strcmp(endpoint, by_addr[i]->addr)) return i + 1;
    return 0;
}

static int cmp_srv_addr(const void *a, const void *b)
{
    return strcmp((*(srv *const *)a)->addr, (*(srv *const *)b)->addr);
}

/* gRPC A6's hedging: with max_attempts 3, a 5 ms delay and servers that all take 12 ms, a copy
 * goes out every delay until three are out; the first copy's answer wins and the two others are
 * cancelled (their handlers see it). Counted at the servers: copies received and cancels seen. */
static void three_hedged_copies_one_wins_and_two_are_cancelled(void **state)
{
    (void)state;
    srv s[3];
    srv *by_addr[3];
    atomic_int received = 0;
    for (int i = 0; i < 3; i++) {
        srv_start_with(&s[i], 2, hedged);
        atomic_store(&s[i].gate, &received);
        by_addr[i] = &s[i];
    }
    qsort(by_addr, 3, sizeof by_addr[0], cmp_srv_addr); /* "rr" picks the first listed first */
    atomic_store(&by_addr[0]->winner, 1);
    char url[256];
    snprintf(url, sizeof url, "list://%s,%s,%s", by_addr[0]->addr, by_addr[1]->addr,
             by_addr[2]->addr);
    ftrpc_client *c = NULL;
    ftrpc_client_options o = {
        .timeout_ms = 20000 * SLOW, .backup_request_ms = 5, .max_attempts = 3, .lb = "rr"};
    assert_int_equal(ftrpc_client_new(url, &o, &c), 0);
    ftrpc_result r;
    assert_int_equal(call_once(c, NULL, &r), 0);
    print_message("attempts %d, backups %d, backup won %d, answered by server %d of 3\n",
                  r.attempts, r.backups, r.backup_won, server_no(r.endpoint, by_addr));
    assert_int_equal(r.attempts, 3);
    assert_int_equal(r.backups, 2);
    assert_int_equal(r.backup_won, 0);
    assert_string_equal(r.endpoint, by_addr[0]->addr);
    ftrpc_result_fini(&r);
    int saw1 = h_wait_atomic_ge(&by_addr[1]->saw_cancel, 1, 5000 * SLOW);
    int saw2 = h_wait_atomic_ge(&by_addr[2]->saw_cancel, 1, 5000 * SLOW);
    for (int i = 0; i < 3; i++)
        assert_true(h_wait_atomic_ge(&s[i].finished, 1, 5000 * SLOW));
    print_message("copies received %d (per server %d %d %d), cancels seen %d\n",
                  atomic_load(&received), atomic_load(&by_addr[0]->handled),
                  atomic_load(&by_addr[1]->handled), atomic_load(&by_addr[2]->handled),
                  atomic_load(&by_addr[1]->saw_cancel) + atomic_load(&by_addr[2]->saw_cancel));
    assert_true(saw1 && saw2);
    assert_int_equal(atomic_load(&received), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(atomic_load(&s[i].handled), 1);
    assert_int_equal(atomic_load(&by_addr[0]->saw_cancel), 0);
    ftrpc_client_free(c);
    for (int i = 0; i < 3; i++)
        srv_stop(&s[i]);
}

/* gRPC A6: a copy that fails with an error a retry may cure sends the next copy at once. The
 * delay (400 ms, x4 under ASan) is more than half the deadline (780 ms): the timer can send the
 * second copy but never the third, so the call succeeds only if the second copy's failure sends
 * the third. The first copy is held until its cancel; the second fails at once (EINTERNAL); the
 * third answers. What the load can take is the deadline less the delay (380 ms, x4 under ASan: the
 * second copy's failure and the third copy's answer), as close to the delay as the timer's 800 ms
 * for the third copy allows. */
static void a_retryable_error_of_a_hedged_copy_sends_the_next_at_once(void **state)
{
    (void)state;
    srv s[3];
    srv *by_addr[3];
    for (int i = 0; i < 3; i++) {
        srv_start(&s[i], 2);
        by_addr[i] = &s[i];
    }
    qsort(by_addr, 3, sizeof by_addr[0], cmp_srv_addr); /* "rr": copies go in list order */
    atomic_store(&by_addr[0]->delay_ms, 10000 * SLOW);
    atomic_store(&by_addr[0]->stop_on_cancel, 1);
    atomic_store(&by_addr[1]->fail_code, FTRPC_EINTERNAL);
    char url[256];
    snprintf(url, sizeof url, "list://%s,%s,%s", by_addr[0]->addr, by_addr[1]->addr,
             by_addr[2]->addr);
    ftrpc_client *c = NULL;
    ftrpc_client_options o = {
        .timeout_ms = 780 * SLOW, .backup_request_ms = 400 * SLOW, .max_attempts = 3, .lb = "rr"};
    assert_int_equal(ftrpc_client_new(url, &o, &c), 0);
    ftrpc_result r;
    int rc = call_once(c, NULL, &r);
    print_message("rc %d, attempts %d, backups %d, answered by server %d of 3, %lld us of %d ms\n",
                  rc, r.attempts, r.backups, server_no(r.endpoint, by_addr),
                  (long long)r.latency_us, 780 * SLOW);
    assert_int_equal(rc, 0);
    assert_int_equal(r.attempts, 3);
    assert_int_equal(r.backups, 2);
    assert_string_equal(r.endpoint, by_addr[2]->addr);
    ftrpc_result_fini(&r);
    assert_true(h_wait_atomic_ge(&by_addr[0]->saw_cancel, 1, 5000 * SLOW));
    for (int i = 0; i < 3; i++)
        assert_int_equal(atomic_load(&s[i].handled), 1);
    ftrpc_client_free(c);
    for (int i = 0; i < 3; i++)
        srv_stop(&s[i]);
}

/* Bad values of the new options are refused where they are given. */
static void max_attempts_outside_2_to_5_and_tied_with_failfast_are_refused(void **state)
{
    (void)state;
    ftrpc_client *c = NULL;
    static const ftrpc_client_options bad[] = {{.max_attempts = 1},
                                               {.max_attempts = 6},
                                               {.max_attempts = -1},
                                               {.tied = 2},
                                               {.tied = 1, .fail_mode = FTRPC_FAILFAST},
                                               {.tied = 1, .fail_mode = FTRPC_FAILTRY}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(ftrpc_client_new("list://127.0.0.1:1", &bad[i], &c), FTRPC_EINVAL);
    ftrpc_client_options o = {.max_attempts = 5, .tied = 1};
    assert_int_equal(ftrpc_client_new("list://127.0.0.1:1", &o, &c), 0);
    ftrpc_result r;
    ftrpc_call_options co = {.max_attempts = 6};
    assert_int_equal(ftrpc_call(c, "test.Svc", "M", NULL, NULL, &co, &r), FTRPC_EINVAL);
    co = (ftrpc_call_options){.tied = 1, .fail_mode = FTRPC_FAILFAST};
    assert_int_equal(ftrpc_call(c, "test.Svc", "M", NULL, NULL, &co, &r), FTRPC_EINVAL);
    co = (ftrpc_call_options){.tied = -2};
    assert_int_equal(ftrpc_call(c, "test.Svc", "M", NULL, NULL, &co, &r), FTRPC_EINVAL);
    ftrpc_client_free(c);
}

typedef struct wave {
    atomic_int done;
    atomic_int failed;
} wave;

static void wave_cb(ftrpc_result *r, void *arg)
{
    wave *w = arg;
    if (r->kind != FTRPC_RESULT_OK) atomic_fetch_add(&w->failed, 1);
    atomic_fetch_add(&w->done, 1);
}

/* One way of sending copies (tied, tied with a delay, backups) measured against its own two
 * servers of one worker each whose handlers take hold_ms, so that queues form. */
typedef struct copy_mode {
    pair p;
    ftrpc_client *c;
    wave w;
    int sent;
} copy_mode;

enum { MODE_CALLS = 160, MODE_WAVE = 8 };

static void copy_mode_start(copy_mode *m, const ftrpc_client_options *o, int hold_ms)
{
    memset(m, 0, sizeof *m);
    pair_start(&m->p, 1);
    atomic_store(&m->p.a.delay_ms, hold_ms);
    atomic_store(&m->p.b.delay_ms, hold_ms);
    ftrpc_client_options co = *o;
    assert_int_equal(ftrpc_client_new(m->p.url, &co, &m->c), 0);
}

/* A wave of calls at once, waited for. */
static void copy_mode_wave(copy_mode *m)
{
    for (int i = 0; i < MODE_WAVE; i++)
        assert_int_equal(
            ftrpc_call_async(m->c, "test.Svc", "M", NULL, NULL, NULL, wave_cb, &m->w, NULL), 0);
    m->sent += MODE_WAVE;
    assert_true(h_wait_atomic_ge(&m->w.done, m->sent, 10000 * SLOW));
}

/* The handlers executed per call (counted by the servers once every queued copy was run or
 * skipped); frees the mode. */
static double copy_mode_finish(copy_mode *m, const char *name)
{
    assert_int_equal(atomic_load(&m->w.failed), 0);
    assert_true(h_wait_until(srv_idle_cond, &m->p.a, 5000 * SLOW));
    assert_true(h_wait_until(srv_idle_cond, &m->p.b, 5000 * SLOW));
    ftrpc_method_stats a = srv_stats(&m->p.a), b = srv_stats(&m->p.b);
    ftrpc_client_free(m->c);
    pair_stop(&m->p);
    print_message("  %s: executed %lld + %lld, skipped once cancelled %lld + %lld\n", name,
                  (long long)a.calls, (long long)b.calls, (long long)a.canceled_unstarted,
                  (long long)b.canceled_unstarted);
    return (double)(a.calls + b.calls) / m->sent;
}

static int cmp_int64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* An idle server and its client, to time empty calls. */
typedef struct rtt_probe {
    srv s;
    ftrpc_client *c;
} rtt_probe;

/* The median latency of RTT_CALLS empty calls now, in us: about the time the "started" notice and
 * the cancel each take on this machine under its present load. */
static int64_t rtt_probe_us(rtt_probe *p)
{
    enum { RTT_CALLS = 15 };
    int64_t us[RTT_CALLS];
    for (int i = 0; i < RTT_CALLS; i++) {
        ftrpc_result r;
        assert_int_equal(call_once(p->c, NULL, &r), 0);
        us[i] = r.latency_us;
        ftrpc_result_fini(&r);
    }
    qsort(us, RTT_CALLS, sizeof us[0], cmp_int64);
    return us[RTT_CALLS / 2];
}

/* "The Tail at Scale"'s tied requests: the server that takes its copy from its queue first says
 * so, and the client cancels the other copy, which its server then skips: about one copy runs per
 * call (1.00 to 1.09 on a quiet shared VM, sent together or with the paper's small delay before
 * the twin, 1 ms here). Backup requests run more: theirs is cancelled only when the first copy has
 * answered, a whole handler (5 ms) later. A loaded machine delays the "started" notice and the
 * cancels too and brings the figures closer (an absolute bound of 1.05 for the 1 ms twin failed on
 * a loaded CI machine; starved of CPU, tied ran more than backups), so the handlers hold their
 * worker 4 times the slowest round trip of an empty call measured before each wave (5 ms when that
 * is less), and the three ways send their waves in turn, each against its own servers, and are
 * compared with one another under the same load. */
static void tied_requests_run_one_copy_per_call_where_backups_run_more(void **state)
{
    (void)state;
    ftrpc_client_options tied = {.timeout_ms = 10000 * SLOW, .tied = 1, .lb = "rr"};
    ftrpc_client_options tied_1ms = tied;
    tied_1ms.backup_request_ms = 1;
    ftrpc_client_options backup = {.timeout_ms = 10000 * SLOW, .backup_request_ms = 2, .lb = "rr"};
    static rtt_probe probe;
    srv_start(&probe.s, 1);
    probe.c = single_client(&probe.s, 10000 * SLOW);
    int hold_ms = 5;
    int64_t rtt_min = INT64_MAX, rtt_max = 0;
    static copy_mode modes[3];
    copy_mode_start(&modes[0], &tied, hold_ms);
    copy_mode_start(&modes[1], &tied_1ms, hold_ms);
    copy_mode_start(&modes[2], &backup, hold_ms);
    for (int sent = 0; sent < MODE_CALLS; sent += MODE_WAVE) {
        int64_t rtt = rtt_probe_us(&probe);
        if (rtt < rtt_min) rtt_min = rtt;
        if (rtt > rtt_max) rtt_max = rtt;
        if (4 * rtt_max / 1000 + 1 > hold_ms) hold_ms = (int)(4 * rtt_max / 1000) + 1;
        for (int i = 0; i < 3; i++) {
            atomic_store(&modes[i].p.a.delay_ms, hold_ms);
            atomic_store(&modes[i].p.b.delay_ms, hold_ms);
        }
        for (int i = 0; i < 3; i++)
            copy_mode_wave(&modes[i]);
    }
    ftrpc_client_free(probe.c);
    srv_stop(&probe.s);
    print_message("an empty call's round trip %lld to %lld us (medians of 15 before each wave): "
                  "handlers held 5 to %d ms\n",
                  (long long)rtt_min, (long long)rtt_max, hold_ms);
    double t = copy_mode_finish(&modes[0], "tied");
    double t1 = copy_mode_finish(&modes[1], "tied, twin at 1 ms");
    double b = copy_mode_finish(&modes[2], "backups at 2 ms");
    print_message("copies executed per call: tied %.3f, tied with the twin at 1 ms %.3f, backup "
                  "requests (2 ms) %.3f\n",
                  t, t1, b);
    assert_true(t < b);
    assert_true(t1 < b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(backup_goes_out_after_its_delay_and_the_fast_copy_wins),
        cmocka_unit_test(no_backup_before_its_delay),
        cmocka_unit_test(a_backup_at_300_us_goes_out_after_its_delay_not_at_the_ms_one),
        cmocka_unit_test(no_backup_when_its_delay_is_not_shorter_than_the_deadline),
        cmocka_unit_test(a_call_that_opts_out_gets_no_backup_even_with_a_policy),
        cmocka_unit_test(a_policy_delay_beyond_any_deadline_sends_no_backup),
        cmocka_unit_test(a_backup_the_retry_budget_refuses_is_not_sent),
        cmocka_unit_test(a_call_already_retrying_sends_no_backup),
        cmocka_unit_test(with_a_backup_in_every_call_rr_still_alternates_first_attempts),
        cmocka_unit_test(first_success_wins_and_the_late_response_is_dropped),
        cmocka_unit_test(
            an_error_from_the_first_copy_does_not_end_the_call_while_the_backup_is_out),
        cmocka_unit_test(the_call_fails_once_both_copies_failed),
        cmocka_unit_test(a_cancelled_request_still_queued_is_never_executed),
        cmocka_unit_test(a_running_handler_sees_the_cancel),
        cmocka_unit_test(a_call_queued_when_its_connection_closes_finishes_cleanly),
        cmocka_unit_test(a_positive_delay_alone_turns_backups_on_as_in_brpc),
        cmocka_unit_test(a_backup_policy_given_to_one_call_decides_for_that_call),
        cmocka_unit_test(a_backup_uses_up_a_retry_with_brpcs_accounting),
        cmocka_unit_test(in_brpcs_example_no_backup_is_refused_by_default),
        cmocka_unit_test(cancels_stop_after_a_server_answers_no_such_method),
        cmocka_unit_test(three_hedged_copies_one_wins_and_two_are_cancelled),
        cmocka_unit_test(a_retryable_error_of_a_hedged_copy_sends_the_next_at_once),
        cmocka_unit_test(max_attempts_outside_2_to_5_and_tied_with_failfast_are_refused),
        cmocka_unit_test(tied_requests_run_one_copy_per_call_where_backups_run_more),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
