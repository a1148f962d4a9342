/* The built-in backup-request policies, driven by an ft_manual_clock through the internal
 * constructors: the rate limiter keeps backups within max_backup_ratio of the calls over its window
 * even when every call is slow, the adaptive policy's delay follows the p(1 - max_extra_load)
 * latency above its floor and stays off before min_samples, and bad options are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "client/backup_policy.h"
#include "ftrpc/client.h"

#define MS(x) ((int64_t)(x)*FT_NS_PER_MS)
#define SEC(x) ((int64_t)(x)*1000000000)

static ftrpc_result ok_result(int64_t latency_us)
{
    ftrpc_result r;
    memset(&r, 0, sizeof r);
    r.kind = FTRPC_RESULT_OK;
    r.latency_us = latency_us;
    return r;
}

/* ---- rate-limited ---- */

/* Past the warm-up a fresh policy opens at its first decision (update_interval_seconds, brpc's
 * start): one backup decided (and counted) in it, then the clock moved past its end. */
static void past_warm_up(ftrpc_backup_policy *p, ft_manual_clock *clock, int update_s)
{
    assert_int_equal(p->should_backup(p, "svc", "m"), 1);
    p->on_backup_refused(p, "svc", "m"); /* as if the budget refused it: counts stay clean */
    ft_manual_clock_advance(clock, SEC(update_s));
}

/* One call whose first attempt outlives the delay (every call is slow in a latency spike): the
 * engine asks should_backup, then the call ends. Returns 1 when a backup was granted. */
static int slow_call(ftrpc_backup_policy *p)
{
    int granted = p->should_backup(p, "svc", "m");
    ftrpc_result r = ok_result(50000);
    p->on_call_end(p, &r);
    return granted;
}

/* brpc's RateLimitedBackupPolicy at start (apache/brpc, backup_request_policy.cpp): its first
 * ShouldAllow finds no traffic ("true cold-start: allow freely"), caches the ratio 0 and keeps it
 * until the next refresh, update_interval_seconds later; so the first calls of a fresh client that
 * wait past the delay all get their backup, and the ratio holds from then on, over a window that
 * counts the warm-up's backups. Here: 2 ms backups, every call slow (brpc's example's shape in a
 * spike), one call every 10 ms. */
static void ratelimited_backs_up_the_first_calls_of_a_fresh_client_as_brpc(void **s)
{
    (void)s;
    ft_manual_clock clock;
    ft_manual_clock_init(&clock, SEC(1000));
    ftrpc_backup_policy *p = NULL;
    ftrpc_backup_policy_ratelimited_options o = {.backup_request_ms = 2}; /* 0.1, 10 s, 5 s */
    assert_int_equal(ft_backup_policy_ratelimited_new(&o, &clock.base, &p), 0);
    int first = 0;
    for (int i = 0; i < 10; i++) {
        first += slow_call(p);
        ft_manual_clock_advance(&clock, MS(10));
    }
    assert_int_equal(first, 10); /* the first calls: every one backed up */
    /* the warm-up lasts the update interval: 5 s of calls, all backed up */
    int warm = 0, n = 0;
    while (ft_clock_now_ns(&clock.base) < SEC(1005)) {
        warm += slow_call(p);
        n++;
        ft_manual_clock_advance(&clock, MS(10));
    }
    assert_int_equal(warm, n);
    /* then the ratio: the window (10 s) holds 500 backups for 500 calls, so none until they age
     * out, and from then on 10% */
    int after = 0;
    for (int i = 0; i < 400; i++) {
        after += slow_call(p);
        ft_manual_clock_advance(&clock, MS(10));
    }
    assert_int_equal(after, 0);
    ft_manual_clock_advance(&clock, SEC(20));
    after = 0;
    for (int i = 0; i < 100; i++)
        after += slow_call(p);
    assert_true(after >= 9 && after <= 10);
    ftrpc_backup_policy_free(p);
}

typedef struct spike_case {
    double ratio;
    int window_s;
    int update_s;
    int64_t step_ns; /* time between calls */
} spike_case;

/* 10,000 calls, all slow. Over every sliding window of the run (each window_s seconds starting
 * on a whole second), backups stay within ratio x calls plus a slack of 1: the limiter decides on
 * sums refreshed every update interval, so at a window edge a decision can be made against a sum
 * that still holds calls of the second that just left; that lets one more through at most. Over
 * the whole run the bound holds without slack. */
#define SPIKE_MAX_SECONDS 128
static void check_spike(const spike_case *c)
{
    ft_manual_clock clock;
    ft_manual_clock_init(&clock, SEC(1000));
    ftrpc_backup_policy *p = NULL;
    ftrpc_backup_policy_ratelimited_options o = {.backup_request_ms = 10,
                                                 .max_backup_ratio = c->ratio,
                                                 .window_size_seconds = c->window_s,
                                                 .update_interval_seconds = c->update_s};
    assert_int_equal(ft_backup_policy_ratelimited_new(&o, &clock.base, &p), 0);
    assert_int_equal(p->backup_delay_ms(p, "svc", "m"), 10);
    past_warm_up(p, &clock, c->update_s);
    const int n = 10000;
    long total = 0, sec_backups[SPIKE_MAX_SECONDS] = {0}, sec_calls[SPIKE_MAX_SECONDS] = {0};
    int last_sec = 0;
    const int64_t t0 = ft_clock_now_ns(&clock.base);
    for (int i = 0; i < n; i++) {
        int sec = (int)((ft_clock_now_ns(&clock.base) - t0) / SEC(1));
        assert_true(sec < SPIKE_MAX_SECONDS);
        int b = slow_call(p);
        total += b;
        sec_backups[sec] += b;
        sec_calls[sec]++;
        last_sec = sec;
        ft_manual_clock_advance(&clock, c->step_ns);
    }
    long worst_excess = -1000000;
    for (int start = 0; start <= last_sec; start++) {
        long wb = 0, wc = 0;
        for (int k = start; k < start + c->window_s && k <= last_sec; k++) {
            wb += sec_backups[k];
            wc += sec_calls[k];
        }
        long excess = wb - (long)(c->ratio * (double)wc + 1e-9);
        if (excess > worst_excess) worst_excess = excess;
        assert_true(excess <= 1);
    }
    assert_true(total <= (long)(c->ratio * n + 1e-9));
    /* and the limiter does let backups through: at least 90% of the allowance over the run */
    assert_true(total >= (long)(c->ratio * n * 0.9));
    print_message("ratio %.2f window %d s update %d s step %lld us: %ld backups for %d calls, "
                  "worst window excess %ld\n",
                  c->ratio, c->window_s, c->update_s, (long long)(c->step_ns / 1000), total, n,
                  worst_excess);
    ftrpc_backup_policy_free(p);
}

static void ratelimited_keeps_backups_within_ratio_when_every_call_is_slow(void **s)
{
    (void)s;
    static const spike_case cases[] = {
        {0.1, 10, 5, MS(1)},  /* 10 s of calls: one window, refreshed twice */
        {0.1, 10, 5, MS(10)}, /* 100 s: ten windows */
        {0.05, 2, 1, MS(3)},  /* short window, every second refreshed */
        {0.5, 1, 1, MS(1)},
        {1.0, 10, 5, MS(1)}, /* ratio 1: a backup for every call, never more */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_spike(&cases[i]);
}

static void ratelimited_recovers_its_allowance_once_the_spike_leaves_the_window(void **s)
{
    (void)s;
    ft_manual_clock clock;
    ft_manual_clock_init(&clock, SEC(1000));
    ftrpc_backup_policy *p = NULL;
    ftrpc_backup_policy_ratelimited_options o = {
        .max_backup_ratio = 0.1, .window_size_seconds = 2, .update_interval_seconds = 1};
    assert_int_equal(ft_backup_policy_ratelimited_new(&o, &clock.base, &p), 0);
    past_warm_up(p, &clock, 1);
    /* backup_request_ms 0: the client's own delay */
    assert_int_equal(p->backup_delay_ms(p, "svc", "m"), FT_BACKUP_DELAY_INHERIT);
    /* 1000 fast calls (no backup asked) over one second fill the window with calls */
    for (int i = 0; i < 1000; i++) {
        ftrpc_result r = ok_result(1000);
        p->on_call_end(p, &r);
        ft_manual_clock_advance(&clock, MS(1));
    }
    /* a spike: 10% of them may now be backed up at once, not one more */
    int granted = 0;
    for (int i = 0; i < 500; i++)
        granted += p->should_backup(p, "svc", "m");
    assert_int_equal(granted, 100); /* backups <= 0.1 x 1000 */
    /* nothing happens for longer than window + update interval: the window forgets the spike */
    ft_manual_clock_advance(&clock, SEC(4));
    for (int i = 0; i < 100; i++) {
        ftrpc_result r = ok_result(1000);
        p->on_call_end(p, &r);
    }
    granted = 0;
    for (int i = 0; i < 100; i++)
        granted += p->should_backup(p, "svc", "m");
    assert_int_equal(granted, 10);
    ftrpc_backup_policy_free(p);
}

static void ratelimited_refuses_invalid_options(void **s)
{
    (void)s;
    static const ftrpc_backup_policy_ratelimited_options bad[] = {
        {.max_backup_ratio = -0.1},  {.max_backup_ratio = 1.01},    {.max_backup_ratio = 2},
        {.window_size_seconds = -1}, {.window_size_seconds = 3601}, {.update_interval_seconds = -1},
        {.backup_request_ms = -2},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ftrpc_backup_policy *p = (ftrpc_backup_policy *)&bad; /* must stay untouched */
        assert_int_equal(ftrpc_backup_policy_ratelimited_new(&bad[i], &p), FTRPC_EINVAL);
        assert_ptr_equal(p, (ftrpc_backup_policy *)&bad);
    }
    assert_int_equal(ftrpc_backup_policy_ratelimited_new(NULL, NULL), FTRPC_EINVAL);
    /* the edges that are allowed */
    static const ftrpc_backup_policy_ratelimited_options good[] = {
        {0},
        {.max_backup_ratio = 1, .window_size_seconds = 3600, .update_interval_seconds = 1},
        {.max_backup_ratio = 0.001, .window_size_seconds = 1, .backup_request_ms = -1},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ftrpc_backup_policy *p = NULL;
        assert_int_equal(ftrpc_backup_policy_ratelimited_new(&good[i], &p), 0);
        ftrpc_backup_policy_free(p);
    }
}

/* Zero means "the default" in every ftrpc option struct; brpc's own checks refuse ratio 0, window
 * 0 and update interval 0 because it has no such convention. What the defaults are is checked
 * here, so that "0" can never silently mean "no limit". */
static void ratelimited_zero_options_mean_brpc_defaults(void **s)
{
    (void)s;
    ft_manual_clock clock;
    ft_manual_clock_init(&clock, SEC(1000));
    ftrpc_backup_policy *p = NULL;
    assert_int_equal(ft_backup_policy_ratelimited_new(NULL, &clock.base, &p), 0);
    past_warm_up(p, &clock, 5); /* default update interval 5 s */
    for (int i = 0; i < 1000; i++) {
        ftrpc_result r = ok_result(1000);
        p->on_call_end(p, &r);
    }
    int granted = 0;
    for (int i = 0; i < 1000; i++)
        granted += p->should_backup(p, "svc", "m");
    assert_int_equal(granted, 100); /* default ratio 0.1 */
    ftrpc_backup_policy_free(p);
    ftrpc_backup_policy_free(NULL);
}

/* The engine asks the retry budget after the policy agreed; a backup the budget refuses is never
 * sent, so the policy takes it back (on_backup_refused): the ratio bounds backups sent. Without
 * that, a client whose budget is empty would use up its backup allowance on backups that never
 * went out, and have none left once the budget refills. Also across a refresh of the window sums
 * between the decision and the refusal. */
static void ratelimited_does_not_count_a_backup_the_budget_refused(void **s)
{
    (void)s;
    ft_manual_clock clock;
    ft_manual_clock_init(&clock, SEC(1000));
    ftrpc_backup_policy *p = NULL;
    ftrpc_backup_policy_ratelimited_options o = {
        .max_backup_ratio = 0.1, .window_size_seconds = 10, .update_interval_seconds = 1};
    assert_int_equal(ft_backup_policy_ratelimited_new(&o, &clock.base, &p), 0);
    assert_non_null(p->on_backup_refused);
    past_warm_up(p, &clock, 1);
    for (int i = 0; i < 100; i++) {
        ftrpc_result r = ok_result(1000);
        p->on_call_end(p, &r);
    }
    int64_t backups, calls;
    /* 50 backups agreed to and refused by the budget: none counts, each could go */
    for (int i = 0; i < 50; i++) {
        assert_int_equal(p->should_backup(p, "svc", "m"), 1);
        p->on_backup_refused(p, "svc", "m");
    }
    ft_backup_policy_ratelimited_counts(p, &backups, &calls);
    assert_int_equal(backups, 0);
    assert_int_equal(calls, 100);
    /* one agreed, then the window's sums are refreshed, then the budget refuses it */
    assert_int_equal(p->should_backup(p, "svc", "m"), 1);
    ft_manual_clock_advance(&clock, MS(1500));
    ftrpc_result r = ok_result(1000);
    p->on_call_end(p, &r); /* refreshes: the agreed backup moves into the window's sum */
    p->on_backup_refused(p, "svc", "m");
    ft_backup_policy_ratelimited_counts(p, &backups, &calls);
    assert_int_equal(backups, 0);
    assert_int_equal(calls, 101);
    /* the whole allowance is still there for backups that are sent: 10% of 101 */
    int granted = 0;
    for (int i = 0; i < 50; i++)
        granted += p->should_backup(p, "svc", "m");
    assert_int_equal(granted, 10);
    /* and it stays right at the next refresh, which sums the buckets again */
    ft_manual_clock_advance(&clock, MS(1500));
    p->on_call_end(p, &r);
    ft_backup_policy_ratelimited_counts(p, &backups, &calls);
    assert_int_equal(backups, 10);
    assert_int_equal(calls, 102);
    ftrpc_backup_policy_free(p);
}

/* ---- adaptive ---- */

static void record(ftrpc_backup_policy *p, int64_t latency_us, int n)
{
    for (int i = 0; i < n; i++) {
        ftrpc_result r = ok_result(latency_us);
        p->on_call_end(p, &r);
    }
}

static void adaptive_gives_no_backup_before_min_samples(void **s)
{
    (void)s;
    ft_manual_clock clock;
    ft_manual_clock_init(&clock, SEC(1000));
    ftrpc_backup_policy *p = NULL;
    ftrpc_backup_policy_adaptive_options o = {.min_samples = 50, .refresh_ms = 100};
    assert_int_equal(ft_backup_policy_adaptive_new(&o, &clock.base, &p), 0);
    assert_true(p->backup_delay_ms(p, "svc", "m") < 0);
    record(p, 5000, 49);
    ft_manual_clock_advance(&clock, MS(100));
    assert_true(p->backup_delay_ms(p, "svc", "m") < 0);
    /* RPC errors are not latency samples: they would drag the quantile to the deadline */
    for (int i = 0; i < 10; i++) {
        ftrpc_result r = ok_result(900000);
        r.kind = FTRPC_RESULT_RPC_ERROR;
        r.code = FTRPC_ERPCTIMEDOUT;
        p->on_call_end(p, &r);
    }
    ft_manual_clock_advance(&clock, MS(100));
    assert_true(p->backup_delay_ms(p, "svc", "m") < 0);
    record(p, 5000, 1);
    /* the cached value holds until refresh_ms has passed */
    assert_true(p->backup_delay_ms(p, "svc", "m") < 0);
    ft_manual_clock_advance(&clock, MS(100));
    int d = p->backup_delay_ms(p, "svc", "m");
    assert_true(d >= 5 && d <= 6);
    assert_int_equal(ft_backup_policy_adaptive_delay_ms(p), d);
    assert_int_equal(p->should_backup(p, "svc", "m"), 1);
    ftrpc_backup_policy_free(p);
}

static void adaptive_delay_follows_the_quantile_above_its_floor(void **s)
{
    (void)s;
    ft_manual_clock clock;
    ft_manual_clock_init(&clock, SEC(1000));
    ftrpc_backup_policy *p = NULL;
    /* max_extra_load 0.05: the delay is the p95 */
    ftrpc_backup_policy_adaptive_options o = {.min_samples = 100, .refresh_ms = 100, .floor_ms = 3};
    assert_int_equal(ft_backup_policy_adaptive_new(&o, &clock.base, &p), 0);
    /* 94% at 2 ms, 6% at 40 ms: the p95 is 40 ms */
    record(p, 2000, 940);
    record(p, 40000, 60);
    ft_manual_clock_advance(&clock, MS(100));
    int d = p->backup_delay_ms(p, "svc", "m");
    assert_true(d >= 39 && d <= 42);
    /* 96% at 2 ms: the p95 falls to 2 ms, under the 3 ms floor */
    record(p, 2000, 1500);
    ft_manual_clock_advance(&clock, MS(100));
    assert_int_equal(p->backup_delay_ms(p, "svc", "m"), 3);
    /* the window slides: after it only new samples count (10 s window by default) */
    ft_manual_clock_advance(&clock, SEC(12));
    record(p, 20000, 200);
    ft_manual_clock_advance(&clock, MS(100));
    d = p->backup_delay_ms(p, "svc", "m");
    assert_true(d >= 19 && d <= 21);
    ftrpc_backup_policy_free(p);

    /* max_extra_load 0.2: the p80 */
    o = (ftrpc_backup_policy_adaptive_options){
        .max_extra_load = 0.2, .min_samples = 10, .refresh_ms = 1};
    assert_int_equal(ft_backup_policy_adaptive_new(&o, &clock.base, &p), 0);
    record(p, 1000, 700);
    record(p, 10000, 150); /* up to the 85th percentile */
    record(p, 80000, 150);
    ft_manual_clock_advance(&clock, MS(1));
    d = p->backup_delay_ms(p, "svc", "m");
    assert_true(d >= 9 && d <= 11);
    ftrpc_backup_policy_free(p);
}

/* An adaptive policy on `clock` deciding after 100 samples, refreshed every 100 ms. */
static ftrpc_backup_policy *adaptive_on(ft_manual_clock *clock, int floor_us)
{
    ftrpc_backup_policy *p = NULL;
    ftrpc_backup_policy_adaptive_options o = {
        .min_samples = 100, .refresh_ms = 100, .floor_us = floor_us};
    assert_int_equal(ft_backup_policy_adaptive_new(&o, &clock->base, &p), 0);
    return p;
}

/* A loopback service answers in 160 us: the delay is its p95 in microseconds (asked through
 * backup_delay_us, which the engine prefers), not rounded up to a whole millisecond; the floor is
 * floor_us when set, floor_ms (1 ms by default) when not, and none with floor_us -1. */
static void adaptive_delay_is_the_p95_in_microseconds_above_floor_us(void **s)
{
    (void)s;
    ft_manual_clock clock;
    ft_manual_clock_init(&clock, SEC(1000));
    ftrpc_backup_policy *p = adaptive_on(&clock, 100);
    assert_non_null(p->backup_delay_us);
    assert_true(p->backup_delay_us(p, "svc", "m") < 0); /* no samples yet */
    /* 90% at 160 us, 10% at 300 us: the p95 is 300 us */
    record(p, 160, 900);
    record(p, 300, 100);
    ft_manual_clock_advance(&clock, MS(100));
    int64_t d = p->backup_delay_us(p, "svc", "m");
    assert_true(d >= 290 && d <= 320);
    assert_int_equal(ft_backup_policy_adaptive_delay_us(p), d);
    /* the ms hook, for callers that ask it, rounds up */
    assert_int_equal(p->backup_delay_ms(p, "svc", "m"), 1);
    /* 98% at 60 us: the p95 falls under the 100 us floor */
    record(p, 60, 50000);
    ft_manual_clock_advance(&clock, MS(100));
    assert_int_equal(p->backup_delay_us(p, "svc", "m"), 100);
    ftrpc_backup_policy_free(p);

    /* floor_us 0: floor_ms decides, 1 ms by default */
    p = adaptive_on(&clock, 0);
    record(p, 160, 1000);
    ft_manual_clock_advance(&clock, MS(100));
    assert_int_equal(p->backup_delay_us(p, "svc", "m"), 1000);
    ftrpc_backup_policy_free(p);

    /* floor_us -1: no floor, the measured p95 itself */
    p = adaptive_on(&clock, -1);
    record(p, 40, 1000);
    ft_manual_clock_advance(&clock, MS(100));
    d = p->backup_delay_us(p, "svc", "m");
    assert_true(d >= 38 && d <= 42);
    ftrpc_backup_policy_free(p);
}

static void adaptive_refuses_invalid_options(void **s)
{
    (void)s;
    static const ftrpc_backup_policy_adaptive_options bad[] = {
        {.max_extra_load = -0.1}, {.max_extra_load = 0.51}, {.window_seconds = -1},
        {.window_seconds = 61},   {.floor_ms = -1},         {.refresh_ms = -1},
        {.min_samples = -1},      {.floor_us = -2},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ftrpc_backup_policy *p = NULL;
        assert_int_equal(ftrpc_backup_policy_adaptive_new(&bad[i], &p), FTRPC_EINVAL);
        assert_null(p);
    }
    ftrpc_backup_policy *p = NULL;
    assert_int_equal(ftrpc_backup_policy_adaptive_new(NULL, &p), 0);
    ftrpc_backup_policy_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ratelimited_backs_up_the_first_calls_of_a_fresh_client_as_brpc),
        cmocka_unit_test(ratelimited_keeps_backups_within_ratio_when_every_call_is_slow),
        cmocka_unit_test(ratelimited_recovers_its_allowance_once_the_spike_leaves_the_window),
        cmocka_unit_test(ratelimited_refuses_invalid_options),
        cmocka_unit_test(ratelimited_zero_options_mean_brpc_defaults),
        cmocka_unit_test(ratelimited_does_not_count_a_backup_the_budget_refused),
        cmocka_unit_test(adaptive_gives_no_backup_before_min_samples),
        cmocka_unit_test(adaptive_delay_follows_the_quantile_above_its_floor),
        cmocka_unit_test(adaptive_delay_is_the_p95_in_microseconds_above_floor_us),
        cmocka_unit_test(adaptive_refuses_invalid_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
