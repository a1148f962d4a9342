/* ft_latency_recorder: sliding windows driven by a manual clock (values fall out as time
 * advances), QPS, percentiles and CDF of the window, all-time totals, and exact counts when four
 * threads record while the clock moves and windows rotate under them. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>
#include <unistd.h>

#include "ftrpc/common.h"
#include "metrics/latency_recorder.h"

#define SEC INT64_C(1000000000)

static ft_latency_recorder *make(ft_manual_clock *clk, int window, int64_t interval_ns)
{
    ft_latency_recorder_options o = {
        .clock = &clk->base, .window = window, .interval_ns = interval_ns};
    ft_latency_recorder *r = NULL;
    assert_int_equal(ft_latency_recorder_new(&o, &r), 0);
    return r;
}

static ft_latency_stats stats(ft_latency_recorder *r, int window)
{
    ft_latency_stats s;
    assert_int_equal(ft_latency_recorder_stats(r, window, &s), 0);
    return s;
}

static void options_are_validated(void **state)
{
    (void)state;
    ft_latency_recorder *r = NULL;
    ft_latency_recorder_options bad[] = {{.window = 61}, {.window = -1}, {.interval_ns = -5}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(ft_latency_recorder_new(&bad[i], &r), FTRPC_EINVAL);
    assert_int_equal(ft_latency_recorder_new(NULL, &r), 0); /* defaults: 10 x 1 s, real clock */
    assert_int_equal(ft_latency_recorder_window_size(r), 10);
    assert_int_equal(ft_latency_recorder_interval_ns(r), SEC);
    ft_latency_recorder_record(r, 5);
    assert_int_equal(stats(r, 0).count, 1);
    ft_latency_stats s;
    assert_int_equal(ft_latency_recorder_stats(r, 11, &s), FTRPC_EINVAL);
    assert_int_equal(ft_latency_recorder_stats(r, -1, &s), FTRPC_EINVAL);
    ft_latency_recorder_free(r);
    ft_latency_recorder_free(NULL);
}

static void values_fall_out_of_the_window_as_time_advances(void **state)
{
    (void)state;
    ft_manual_clock clk;
    ft_manual_clock_init(&clk, 1000 * SEC);
    ft_latency_recorder *r = make(&clk, 5, SEC);

    for (int i = 0; i < 100; i++)
        ft_latency_recorder_record(r, 1000);
    ft_latency_stats s = stats(r, 0);
    assert_int_equal(s.count, 100); /* visible at once, in the current partial interval */
    assert_int_equal(s.p50_ns, 1000);
    assert_int_equal(s.max_ns, 1000);

    ft_manual_clock_advance(&clk, SEC);
    for (int i = 0; i < 100; i++)
        ft_latency_recorder_record(r, 2000);
    s = stats(r, 0);
    assert_int_equal(s.count, 200);
    assert_true(labs((long)(s.p50_ns - 1000)) <= 10); /* bucket middle: within 1% */
    assert_true(labs((long)(s.p99_ns - 2000)) <= 20);
    assert_int_equal(s.max_ns, 2000);
    assert_true(fabs(s.mean_ns - 1500.0) < 1e-9);
    /* window 1 = the previous full interval plus this one: only the 2000s... */
    assert_int_equal(stats(r, 1).count, 200);
    ft_manual_clock_advance(&clk, SEC);
    s = stats(r, 1);
    assert_int_equal(s.count, 100);
    assert_int_equal(s.p50_ns, 2000);

    /* 5 s after the first batch: still inside the 5-interval window */
    ft_manual_clock_advance(&clk, 3 * SEC);
    assert_int_equal(stats(r, 0).count, 200);
    /* 6 s after: the first batch fell out, and the window max with it */
    ft_manual_clock_advance(&clk, SEC);
    s = stats(r, 0);
    assert_int_equal(s.count, 100);
    assert_int_equal(s.p50_ns, 2000);
    assert_int_equal(s.max_ns, 2000);
    /* 7 s after: nothing left in the window; the all-time totals stay */
    ft_manual_clock_advance(&clk, SEC);
    s = stats(r, 0);
    assert_int_equal(s.count, 0);
    assert_int_equal(s.max_ns, 0);
    assert_int_equal(s.p99_ns, 0);
    assert_true(s.qps == 0.0);
    assert_int_equal(s.total_count, 200);
    assert_int_equal(s.total_sum_ns, 300000);
    assert_int_equal(s.total_max_ns, 2000);
    assert_int_equal(ft_latency_recorder_count(r), 200);
    assert_int_equal(ft_latency_recorder_sum(r), 300000);
    assert_int_equal(ft_latency_recorder_max(r), 2000);
    ft_latency_recorder_free(r);
}

static void window_max_is_per_window_not_all_time(void **state)
{
    (void)state;
    ft_manual_clock clk;
    ft_manual_clock_init(&clk, 0);
    ft_latency_recorder *r = make(&clk, 3, SEC);
    ft_latency_recorder_record(r, 900000); /* one slow call */
    for (int sec = 0; sec < 6; sec++) {
        ft_manual_clock_advance(&clk, SEC);
        ft_latency_recorder_record(r, 100 + sec);
    }
    ft_latency_stats s = stats(r, 0);
    assert_int_equal(s.max_ns, 105);
    assert_int_equal(s.count, 4); /* 3 full seconds (3, 4, 5) and the current one (6) */
    assert_int_equal(s.total_max_ns, 900000);
    ft_latency_recorder_free(r);
}

/* Nanoseconds: a 10 s latency is past the 32 bits a window max was once packed in, and the
 * intervals here cross the point where the max ring's 22-bit epoch tag wraps to 0. */
static void long_latencies_in_nanoseconds_across_the_tag_wrap(void **state)
{
    (void)state;
    ft_manual_clock clk;
    ft_manual_clock_init(&clk, ((INT64_C(1) << 22) - 2) * SEC);
    ft_latency_recorder *r = make(&clk, 3, SEC);
    ft_latency_recorder_record(r, 10 * SEC);
    ft_latency_recorder_record(r, 420);
    ft_latency_stats s = stats(r, 0);
    assert_int_equal(s.max_ns, 10 * SEC);
    assert_true(labs((long)(s.p50_ns - 420)) <= 2); /* exact below 256, then within 1/256 */
    ft_manual_clock_advance(&clk, 2 * SEC);         /* the tag wraps here */
    ft_latency_recorder_record(r, 7 * SEC);
    s = stats(r, 0);
    assert_int_equal(s.count, 3);
    assert_int_equal(s.max_ns, 10 * SEC);
    ft_manual_clock_advance(&clk, 2 * SEC); /* the 10 s record left the window, the 7 s one not */
    s = stats(r, 0);
    assert_int_equal(s.count, 1);
    assert_int_equal(s.max_ns, 7 * SEC);
    assert_int_equal(s.total_max_ns, 10 * SEC);
    ft_latency_recorder_free(r);
}

static void qps_is_count_over_the_window_span(void **state)
{
    (void)state;
    ft_manual_clock clk;
    ft_manual_clock_init(&clk, 50 * SEC);
    ft_latency_recorder *r = make(&clk, 5, SEC);
    /* Young recorder: the span is at least one interval, so 30 calls in 10 ms read as 30/s. */
    for (int i = 0; i < 30; i++)
        ft_latency_recorder_record(r, 10);
    ft_manual_clock_advance(&clk, 10 * FT_NS_PER_MS);
    assert_true(fabs(stats(r, 0).qps - 30.0) < 1e-9);
    ft_manual_clock_advance(&clk, SEC - 10 * FT_NS_PER_MS);
    /* 10 calls at the start of each of 10 seconds; read at a boundary: 5 full intervals. */
    for (int sec = 0; sec < 10; sec++) {
        for (int i = 0; i < 10; i++)
            ft_latency_recorder_record(r, 10);
        ft_manual_clock_advance(&clk, SEC);
    }
    ft_latency_stats s = stats(r, 0);
    assert_int_equal(s.span_ns, 5 * SEC);
    assert_int_equal(s.count, 50);
    assert_true(fabs(s.qps - 10.0) < 1e-9);
    /* Half-way through the next interval: 5.5 s of span, 55 calls. */
    for (int i = 0; i < 5; i++)
        ft_latency_recorder_record(r, 10);
    ft_manual_clock_advance(&clk, SEC / 2);
    s = stats(r, 0);
    assert_int_equal(s.count, 55);
    assert_true(fabs(s.qps - 10.0) < 1e-9);
    ft_latency_recorder_free(r);
}

static void idle_gaps_need_no_rotation(void **state)
{
    (void)state;
    ft_manual_clock clk;
    ft_manual_clock_init(&clk, 7 * SEC);
    ft_latency_recorder *r = make(&clk, 10, SEC);
    ft_latency_recorder_record(r, 300);
    ft_manual_clock_advance(&clk, 4 * SEC); /* nobody records or reads for 4 intervals */
    ft_latency_recorder_record(r, 400);
    assert_int_equal(stats(r, 0).count, 2);
    assert_int_equal(stats(r, 3).count, 1);
    ft_manual_clock_advance(&clk, 1000 * SEC); /* the ring wrapped many times over */
    assert_int_equal(stats(r, 0).count, 0);
    ft_latency_recorder_record(r, 500);
    ft_latency_stats s = stats(r, 0);
    assert_int_equal(s.count, 1);
    assert_int_equal(s.p50_ns, 500);
    assert_int_equal(s.total_count, 3);
    ft_latency_recorder_free(r);
}

static void sub_second_intervals(void **state)
{
    (void)state;
    ft_manual_clock clk;
    ft_manual_clock_init(&clk, 0);
    ft_latency_recorder *r = make(&clk, 10, 100 * FT_NS_PER_MS); /* 1 s in 10 steps */
    for (int i = 0; i < 20; i++) {
        ft_latency_recorder_record(r, 1000 + i);
        ft_manual_clock_advance(&clk, 100 * FT_NS_PER_MS);
    }
    ft_latency_stats s = stats(r, 0);
    assert_int_equal(s.count, 10);
    assert_true(fabs(s.qps - 10.0) < 1e-9);
    assert_int_equal(s.max_ns, 1019);
    ft_latency_recorder_free(r);
}

static void record_at_uses_the_given_time(void **state)
{
    (void)state;
    ft_manual_clock clk;
    ft_manual_clock_init(&clk, 100 * SEC);
    ft_latency_recorder *r = make(&clk, 2, SEC);
    ft_latency_recorder_record_at(r, 77, 100 * SEC + 5);
    ft_manual_clock_advance(&clk, 3 * SEC);
    ft_latency_recorder_record_at(r, 88, ft_clock_now_ns(&clk.base));
    ft_latency_stats s = stats(r, 0);
    assert_int_equal(s.count, 1);
    assert_int_equal(s.max_ns, 88);
    ft_latency_recorder_free(r);
}

static void window_percentiles_and_cdf(void **state)
{
    (void)state;
    ft_manual_clock clk;
    ft_manual_clock_init(&clk, 0);
    ft_latency_recorder *r = make(&clk, 10, SEC);
    for (int v = 1; v <= 1000; v++)
        ft_latency_recorder_record(r, v * 100);
    const double ps[] = {0.0, 0.5, 0.9, 0.99, 1.0};
    const int64_t want[] = {100, 50000, 90000, 99000, 100000};
    int64_t got[5];
    assert_int_equal(ft_latency_recorder_percentiles(r, 0, ps, got, 5), 0);
    for (int i = 0; i < 5; i++)
        assert_true(fabs((double)(got[i] - want[i])) <= 0.01 * (double)want[i]);
    assert_int_equal(got[4], 100000);

    ft_cdf_point pts[16];
    size_t n = 0;
    assert_int_equal(ft_latency_recorder_cdf(r, 0, pts, 16, &n), 0);
    assert_int_equal(n, 16);
    assert_true(pts[n - 1].fraction == 1.0);
    assert_int_equal(pts[n - 1].value, 100000);
    for (size_t i = 1; i < n; i++)
        assert_true(pts[i].value > pts[i - 1].value && pts[i].fraction > pts[i - 1].fraction);

    ft_histogram *h;
    assert_int_equal(ft_histogram_new(&h), 0);
    ft_histogram_record(h, 5); /* overwritten by the copy */
    assert_int_equal(ft_latency_recorder_window_histogram(r, 0, h), 0);
    assert_int_equal(ft_histogram_count(h), 1000);
    assert_int_equal(ft_histogram_max(h), 100000);
    ft_manual_clock_advance(&clk, 11 * SEC);
    assert_int_equal(ft_latency_recorder_window_histogram(r, 0, h), 0);
    assert_int_equal(ft_histogram_count(h), 0);
    assert_int_equal(ft_latency_recorder_cdf(r, 0, pts, 16, &n), 0);
    assert_int_equal(n, 0);
    ft_histogram_free(h);
    ft_latency_recorder_free(r);
}

/* ---- concurrency ---- */

#define REC_THREADS 4
#define PER_THREAD 200000
/* Recorder 0 moves the clock 1 ms every 16 records: 12.5 s of manual time in 250 ms intervals,
 * so about 50 rotations race the other recorders, and the whole run fits the 15 s window. */
#define INTERVAL (250 * FT_NS_PER_MS)

typedef struct shared {
    ft_manual_clock clk;
    ft_latency_recorder *r;
    _Atomic int running;
    uint64_t sums[REC_THREADS];
} shared;

typedef struct worker {
    shared *sh;
    int id;
} worker;

/* ThreadSanitizer gives the pages of every mapping shadow state of its own (240 KiB a recorder
 * in its build): under it the resident figure says nothing about the recorder (gcc defines
 * __SANITIZE_THREAD__, clang 14 only has __has_feature). */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

/* Resident bytes of this process, from /proc/self/statm; -1 when unreadable. */
static long resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size, resident = -1;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &resident) != 2) resident = -1;
        fclose(f);
    }
    return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

/* A recorder's window of snapshots (11 histograms of 37 KiB with the default window) costs no
 * memory until calls fill it: a method never called, or a server that idles, holds only the
 * recorder's running histogram (issue #26). 16 recorders, each under 160 KiB resident (each was
 * about 490 KiB when the window was zeroed at creation); and they still answer. */
static void an_unused_recorder_leaves_its_window_untouched(void **state)
{
    (void)state;
    enum { N = 16 };
    ft_latency_recorder *r[N];
    long before = resident_bytes();
    assert_true(before > 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(ft_latency_recorder_new(NULL, &r[i]), 0);
    long grown = resident_bytes() - before;
    if (!UNDER_TSAN && grown > N * 160L * 1024)
        fail_msg("%d new recorders took %ld KiB resident (%ld KiB each)", N, grown / 1024,
                 grown / 1024 / N);
    ft_latency_recorder_record(r[0], 1000);
    assert_int_equal(ft_latency_recorder_count(r[0]), 1);
    for (int i = 0; i < N; i++)
        ft_latency_recorder_free(r[i]);
}

static void *recorder_thread(void *arg)
{
    worker *w = arg;
    uint64_t sum = 0;
    for (int i = 0; i < PER_THREAD; i++) {
        int64_t v = (int64_t)((i * 7919 + w->id * 104729) % 50000);
        sum += (uint64_t)v;
        ft_latency_recorder_record(w->sh->r, v);
        if (w->id == 0 && i % 16 == 0) ft_manual_clock_advance(&w->sh->clk, FT_NS_PER_MS);
    }
    w->sh->sums[w->id] = sum;
    atomic_fetch_sub(&w->sh->running, 1);
    return NULL;
}

static void *reader_thread(void *arg)
{
    shared *sh = arg;
    while (atomic_load(&sh->running) > 0) {
        ft_latency_stats s;
        assert_int_equal(ft_latency_recorder_stats(sh->r, 0, &s), 0);
        assert_true(s.count <= s.total_count + (uint64_t)REC_THREADS);
    }
    return NULL;
}

static void concurrent_records_across_rotations_lose_nothing(void **state)
{
    (void)state;
    static shared sh;
    ft_manual_clock_init(&sh.clk, 0);
    ft_latency_recorder_options o = {.clock = &sh.clk.base, .window = 60, .interval_ns = INTERVAL};
    assert_int_equal(ft_latency_recorder_new(&o, &sh.r), 0);
    atomic_store(&sh.running, REC_THREADS);
    worker w[REC_THREADS];
    pthread_t t[REC_THREADS + 1];
    for (int i = 0; i < REC_THREADS; i++) {
        w[i] = (worker){&sh, i};
        assert_int_equal(pthread_create(&t[i], NULL, recorder_thread, &w[i]), 0);
    }
    assert_int_equal(pthread_create(&t[REC_THREADS], NULL, reader_thread, &sh), 0);
    for (int i = 0; i < REC_THREADS + 1; i++)
        pthread_join(t[i], NULL);

    uint64_t want_sum = 0;
    for (int i = 0; i < REC_THREADS; i++)
        want_sum += sh.sums[i];
    const uint64_t want = (uint64_t)REC_THREADS * PER_THREAD;
    assert_int_equal(ft_latency_recorder_count(sh.r), want);
    assert_int_equal(ft_latency_recorder_sum(sh.r), want_sum);
    /* The whole run fits in the window: the window, made of differences across every rotation
     * that happened meanwhile, holds every record exactly once. */
    ft_latency_stats s = stats(sh.r, 0);
    assert_int_equal(s.count, want);
    assert_int_equal(s.sum_ns, want_sum);
    assert_int_equal(s.max_ns, 49999);
    /* And they all leave it once the window has passed. */
    ft_manual_clock_advance(&sh.clk, 61 * INTERVAL);
    assert_int_equal(stats(sh.r, 0).count, 0);
    ft_latency_recorder_free(sh.r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(options_are_validated),
        cmocka_unit_test(an_unused_recorder_leaves_its_window_untouched),
        cmocka_unit_test(values_fall_out_of_the_window_as_time_advances),
        cmocka_unit_test(window_max_is_per_window_not_all_time),
        cmocka_unit_test(long_latencies_in_nanoseconds_across_the_tag_wrap),
        cmocka_unit_test(qps_is_count_over_the_window_span),
        cmocka_unit_test(idle_gaps_need_no_rotation),
        cmocka_unit_test(sub_second_intervals),
        cmocka_unit_test(record_at_uses_the_given_time),
        cmocka_unit_test(window_percentiles_and_cdf),
        cmocka_unit_test(concurrent_records_across_rotations_lose_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
