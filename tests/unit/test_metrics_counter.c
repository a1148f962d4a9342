/* ft_counter and ft_gauge: exact sums under concurrency (owned and shared stripes), reset,
 * callback gauges. */
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "metrics/counter.h"
#include "metrics/histogram.h"

#define THREADS 4
#define ADDS 250000

static ft_counter shared_counter;
static ft_gauge shared_gauge;

static void *adder(void *arg)
{
    (void)arg;
    for (int i = 0; i < ADDS; i++) {
        ft_counter_inc(&shared_counter);
        ft_counter_add(&shared_counter, 2);
        ft_gauge_add(&shared_gauge, 1);
        ft_gauge_add(&shared_gauge, -1);
        ft_gauge_add(&shared_gauge, 1);
    }
    return NULL;
}

static void counter_from_4_threads_loses_nothing(void **state)
{
    (void)state;
    ft_counter_init(&shared_counter);
    ft_gauge_init(&shared_gauge);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, adder, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(ft_counter_get(&shared_counter), (uint64_t)THREADS * ADDS * 3);
    assert_int_equal(ft_gauge_get(&shared_gauge), (int64_t)THREADS * ADDS);
}

static void *stripe_of(void *arg)
{
    *(unsigned *)arg = ft_metrics_thread_stripe();
    return NULL;
}

static void threads_get_distinct_stable_stripes(void **state)
{
    (void)state;
    unsigned mine = ft_metrics_thread_stripe();
    assert_true(mine < FT_COUNTER_STRIPES);
    assert_int_equal(ft_metrics_thread_stripe(), mine);
    unsigned a = 0, b = 0;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, stripe_of, &a), 0);
    pthread_join(t, NULL);
    assert_int_equal(pthread_create(&t, NULL, stripe_of, &b), 0);
    pthread_join(t, NULL);
    /* round-robin: consecutive new threads never share a cell while there are spare cells */
    assert_int_not_equal(a, b);
}

/* Owners add with a load and a store: nothing may be lost beside threads that share cells with
 * atomic adds, while a reader sums all along. */
#define MIXED_THREADS (FT_COUNTER_OWNED_STRIPES + 2)
static ft_histogram *mixed_hist;
static pthread_barrier_t mixed_start;
static atomic_int mixed_owners, mixed_done;

static void *mixed_adder(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&mixed_start); /* every thread claims before any exits */
    if (ft_metrics_own_stripe()) {
        atomic_fetch_add(&mixed_owners, 1);
        assert_true(ft_metrics_thread_stripe() < FT_COUNTER_OWNED_STRIPES);
    } else {
        assert_true(ft_metrics_thread_stripe() >= FT_COUNTER_OWNED_STRIPES);
    }
    pthread_barrier_wait(&mixed_start);
    for (int i = 0; i < ADDS; i++) {
        ft_counter_add(&shared_counter, 3);
        ft_histogram_record(mixed_hist, 7);
    }
    atomic_fetch_add(&mixed_done, 1);
    return NULL;
}

static void owners_and_sharers_lose_nothing(void **state)
{
    (void)state;
    ft_counter_init(&shared_counter);
    assert_int_equal(ft_histogram_new(&mixed_hist), 0);
    atomic_store(&mixed_owners, 0);
    atomic_store(&mixed_done, 0);
    pthread_barrier_init(&mixed_start, NULL, MIXED_THREADS);
    pthread_t t[MIXED_THREADS];
    for (int i = 0; i < MIXED_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, mixed_adder, NULL), 0);
    uint64_t last = 0;
    while (atomic_load(&mixed_done) < MIXED_THREADS) { /* a racing reader sees the sum grow */
        uint64_t now = ft_counter_get(&shared_counter);
        assert_true(now >= last);
        last = now;
    }
    for (int i = 0; i < MIXED_THREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&mixed_owners), FT_COUNTER_OWNED_STRIPES);
    assert_int_equal(ft_counter_get(&shared_counter), (uint64_t)MIXED_THREADS * ADDS * 3);
    assert_int_equal(ft_histogram_count(mixed_hist), (uint64_t)MIXED_THREADS * ADDS);
    assert_int_equal(ft_histogram_sum(mixed_hist), (uint64_t)MIXED_THREADS * ADDS * 7);
    ft_histogram_free(mixed_hist);
    pthread_barrier_destroy(&mixed_start);
}

static void *claim_once(void *arg)
{
    *(int *)arg = ft_metrics_own_stripe();
    return NULL;
}

/* An owner's stripe is free again once its thread has exited. */
static void owned_stripes_return_at_thread_exit(void **state)
{
    (void)state;
    for (int round = 0; round < 3; round++) {
        int got[FT_COUNTER_OWNED_STRIPES + 1];
        pthread_t t[FT_COUNTER_OWNED_STRIPES + 1];
        for (int i = 0; i <= FT_COUNTER_OWNED_STRIPES; i++) {
            assert_int_equal(pthread_create(&t[i], NULL, claim_once, &got[i]), 0);
            pthread_join(t[i], NULL); /* one at a time: each exits before the next claims */
            assert_int_equal(got[i], 1);
        }
    }
    assert_int_equal(ft_metrics_own_stripe(), 1); /* the main thread keeps this one */
    assert_true(ft_metrics_thread_stripe() < FT_COUNTER_OWNED_STRIPES);
    assert_int_equal(ft_metrics_own_stripe(), 1); /* claiming again keeps it */
}

static void counter_reset_and_get(void **state)
{
    (void)state;
    ft_counter c;
    ft_counter_init(&c);
    assert_int_equal(ft_counter_get(&c), 0);
    ft_counter_add(&c, UINT64_C(5000000000));
    ft_counter_inc(&c);
    assert_int_equal(ft_counter_get(&c), UINT64_C(5000000001));
    ft_counter_reset(&c);
    assert_int_equal(ft_counter_get(&c), 0);
}

static int64_t table_size(void *arg)
{
    return *(int *)arg * 10;
}

static void gauge_set_add_and_callback(void **state)
{
    (void)state;
    ft_gauge g;
    ft_gauge_init(&g);
    ft_gauge_set(&g, -42);
    assert_int_equal(ft_gauge_get(&g), -42);
    ft_gauge_add(&g, 50);
    assert_int_equal(ft_gauge_get(&g), 8);

    int n = 3;
    ft_gauge f;
    ft_gauge_init_fn(&f, table_size, &n);
    assert_int_equal(ft_gauge_get(&f), 30);
    n = 7; /* computed at read time, not at init */
    assert_int_equal(ft_gauge_get(&f), 70);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(counter_from_4_threads_loses_nothing),
        cmocka_unit_test(threads_get_distinct_stable_stripes),
        cmocka_unit_test(owners_and_sharers_lose_nothing),
        cmocka_unit_test(owned_stripes_return_at_thread_exit),
        cmocka_unit_test(counter_reset_and_get),
        cmocka_unit_test(gauge_set_add_and_callback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
