/* How late deadlines fire on a machine loaded on purpose (docs/reliability.md, "Deadline
 * lateness").
 *
 * Spinner children keep every core busy several times over. Meanwhile calls to a server that never
 * answers can only end by their deadline, and a plain thread sleeping to a schedule of instants
 * (clock_nanosleep to an absolute time, what any program waiting for a time gets from the OS)
 * measures, in the same run and under the same load, how late the OS alone wakes a thread. Three
 * series of lateness, each the time from a due instant to when the waiter had it:
 *   baseline  the plain thread;
 *   async     ftrpc_call_async (h_load), on a runtime of its own whose loops run libuv's own run
 *             mode; from just before the call to its callback;
 *   blocking  ftrpc_call from several threads on another runtime, whose loops the callers borrow;
 *             from just before the call to its return.
 * Asserted: every call ended by its deadline, once, and none before it; ftrpc's lateness exceeds
 * the baseline's by at most a margin, at the median and at the maximum (the OS's own outliers,
 * which a loaded machine has, are in the baseline too); and an absolute bound on the median. It
 * runs alone and not under valgrind (tests/CMakeLists.txt says why).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* Sanitizers slow ftrpc's threads (the spinners are /bin/sh and run at full speed), so each
 * iteration of a loop takes longer and weighs more when the OS preempts it. */
#if defined(__SANITIZE_ADDRESS__)
#define SAN_SCALE 2
#elif H_UNDER_TSAN
#define SAN_SCALE 4
#else
#define SAN_SCALE 1
#endif

enum {
    DEADLINE_MS = 100,
    SPINNERS_PER_CORE = 3,
    MAX_SPINNERS = 16,
    ASYNC_PACE_US = 2000, /* about 500 deadlines a second, 50 calls in flight */
    BLOCKING_THREADS = 4,
    BASELINE_PERIOD_US = 2000, /* as dense as the async deadlines */
    /* samples wanted: about 3 s of each */
    WANT_BASELINE = 1500,
    WANT_ASYNC = 1500,
    WANT_BLOCKING = 100,
    MAX_SAMPLES = 20000,
    /* the server never answers, so it counts every call in flight on its connection (one per IO
     * thread) for good: these stay well below its cap of 1024 a connection, past which it would
     * refuse them */
    MAX_ASYNC_CALLS = WANT_ASYNC + 100,
    /* what ftrpc may add to the OS's lateness: its loop's work on a preempted thread, one more
     * thread hand-off on the blocking path */
    MARGIN_MEDIAN_MS = 20 * SAN_SCALE,
    MARGIN_MAX_MS = 250 * SAN_SCALE,
    /* and whatever the baseline, the median deadline fires within a fraction of the deadline */
    ABSOLUTE_MEDIAN_MS = 50 * SAN_SCALE,
};

typedef struct series {
    const char *name;
    int64_t late_us[MAX_SAMPLES];
    atomic_int n;
} series;

static void series_add(series *s, int64_t late_us)
{
    int i = atomic_fetch_add(&s->n, 1);
    if (i < MAX_SAMPLES) s->late_us[i] = late_us;
}

static int series_count(series *s)
{
    int n = atomic_load(&s->n);
    return n < MAX_SAMPLES ? n : MAX_SAMPLES;
}

static series baseline = {.name = "baseline"}, async_calls = {.name = "async"},
              blocking_calls = {.name = "blocking"};
static atomic_int stop;
static atomic_int blocking_not_timed_out, blocking_threads_done;

static void *baseline_main(void *arg)
{
    (void)arg;
    struct timespec due;
    clock_gettime(CLOCK_MONOTONIC, &due);
    while (!atomic_load(&stop)) {
        due.tv_nsec += BASELINE_PERIOD_US * 1000L;
        if (due.tv_nsec >= 1000000000L) {
            due.tv_sec++;
            due.tv_nsec -= 1000000000L;
        }
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL) != 0) {
        }
        series_add(&baseline, h_now_us() - ((int64_t)due.tv_sec * 1000000 + due.tv_nsec / 1000));
    }
    return NULL;
}

static void *blocking_main(void *arg)
{
    ftrpc_client *c = arg;
    while (!atomic_load(&stop)) {
        ftrpc_result r;
        int64_t start_us = h_now_us();
        int rc = ftrpc_call(c, "example.EchoService", "Echo", NULL, NULL, NULL, &r);
        int64_t late_us = h_now_us() - start_us - DEADLINE_MS * 1000;
        ftrpc_result_fini(&r);
        if (rc == FTRPC_ERPCTIMEDOUT)
            series_add(&blocking_calls, late_us);
        else
            atomic_fetch_add(&blocking_not_timed_out, 1);
    }
    atomic_fetch_add(&blocking_threads_done, 1);
    return NULL;
}

static int enough_samples(void *arg)
{
    h_load *load = arg;
    return series_count(&baseline) >= WANT_BASELINE && atomic_load(&load->done) >= WANT_ASYNC &&
           series_count(&blocking_calls) >= WANT_BLOCKING;
}

static int blocking_threads_returned(void *arg)
{
    (void)arg;
    return atomic_load(&blocking_threads_done) == BLOCKING_THREADS;
}

static ftrpc_client *client_on_own_runtime(const h_server *srv, ftrpc_runtime **rt)
{
    assert_int_equal(ftrpc_runtime_new(&(ftrpc_runtime_options){.io_threads = 2}, rt), 0);
    char url[64];
    h_server_url(srv, url, sizeof url);
    ftrpc_client *c = NULL;
    ftrpc_client_options o = {.timeout_ms = DEADLINE_MS, .runtime = *rt};
    assert_int_equal(ftrpc_client_new(url, &o, &c), 0);
    return c;
}

typedef struct figures {
    int n;
    double min_ms, p50_ms, p99_ms, max_ms;
} figures;

static figures summarize(series *s)
{
    figures f = {.n = series_count(s)};
    f.min_ms = (double)h_quantile(s->late_us, f.n, 0.0) / 1000.0;
    f.p50_ms = (double)h_quantile(s->late_us, f.n, 0.50) / 1000.0;
    f.p99_ms = (double)h_quantile(s->late_us, f.n, 0.99) / 1000.0;
    f.max_ms = (double)h_quantile(s->late_us, f.n, 1.0) / 1000.0;
    print_message("%-9s %5d deadlines, late by p50 %6.1f ms, p99 %6.1f ms, max %6.1f ms\n", s->name,
                  f.n, f.p50_ms, f.p99_ms, f.max_ms);
    return f;
}

static void check_against_baseline(const figures *f, const figures *base)
{
    assert_true(f->min_ms >= 0); /* never early */
    assert_true(f->p50_ms <= base->p50_ms + MARGIN_MEDIAN_MS);
    assert_true(f->p50_ms <= ABSOLUTE_MEDIAN_MS);
    assert_true(f->max_ms <= base->max_ms + MARGIN_MAX_MS);
}

static void deadlines_fire_about_as_late_as_the_os_wakes_a_thread(void **state)
{
    (void)state;
    h_server srv;
    assert_int_equal(h_server_start(&srv, (const char *const[]){"--hang-rate", "1", NULL}), 0);
    ftrpc_runtime *async_rt, *blocking_rt;
    ftrpc_client *async_client = client_on_own_runtime(&srv, &async_rt);
    ftrpc_client *blocking_client = client_on_own_runtime(&srv, &blocking_rt);

    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int nspinners = (int)(cores > 0 ? cores : 1) * SPINNERS_PER_CORE;
    if (nspinners > MAX_SPINNERS) nspinners = MAX_SPINNERS;
    h_server spinners[MAX_SPINNERS];
    for (int i = 0; i < nspinners; i++)
        assert_int_equal(h_spinner_start(&spinners[i]), 0);

    pthread_t baseline_thread, blocking_threads[BLOCKING_THREADS];
    assert_int_equal(pthread_create(&baseline_thread, NULL, baseline_main, NULL), 0);
    for (int i = 0; i < BLOCKING_THREADS; i++)
        assert_int_equal(pthread_create(&blocking_threads[i], NULL, blocking_main, blocking_client),
                         0);
    h_load load = {.client = async_client,
                   .window = 64,
                   .pace_us = ASYNC_PACE_US,
                   .max_calls = MAX_ASYNC_CALLS};
    assert_int_equal(h_load_start(&load), 0);

    int enough = h_wait_until(enough_samples, &load, 12000);
    atomic_store(&stop, 1);
    /* every call in flight ends by its deadline: a lost timer or wake-up would not */
    int async_all_ended = h_load_stop(&load, DEADLINE_MS + 5000);
    int blocking_all_returned = h_wait_until(blocking_threads_returned, NULL, DEADLINE_MS + 5000);
    double loadavg[1] = {0};
    getloadavg(loadavg, 1);
    for (int i = 0; i < nspinners; i++)
        h_server_kill(&spinners[i]);
    assert_true(enough);
    assert_true(async_all_ended);
    assert_true(blocking_all_returned);
    pthread_join(baseline_thread, NULL);
    for (int i = 0; i < BLOCKING_THREADS; i++)
        pthread_join(blocking_threads[i], NULL);
    ftrpc_client_free(async_client);
    ftrpc_client_free(blocking_client);
    ftrpc_runtime_free(async_rt);
    ftrpc_runtime_free(blocking_rt);
    h_server_kill(&srv);

    assert_int_equal(atomic_load(&load.duplicates), 0);
    int issued = atomic_load(&load.issued);
    for (int i = 0; i < issued; i++) {
        const h_call_rec *r = &load.recs[i];
        assert_int_equal(r->code, FTRPC_ERPCTIMEDOUT);
        series_add(&async_calls, r->end_us - r->start_us - DEADLINE_MS * 1000);
    }
    assert_int_equal(atomic_load(&blocking_not_timed_out), 0);
    h_load_fini(&load);

    print_message("%d spinners on %ld cores, load average %.1f, deadlines of %d ms\n", nspinners,
                  cores, loadavg[0], DEADLINE_MS);
    figures base = summarize(&baseline);
    figures async_f = summarize(&async_calls);
    figures blocking_f = summarize(&blocking_calls);
    check_against_baseline(&async_f, &base);
    check_against_baseline(&blocking_f, &base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(deadlines_fire_about_as_late_as_the_os_wakes_a_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
