/* ft_counter and ft_gauge: exact sums under concurrency, reset, callback gauges. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "metrics/counter.h"

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
        cmocka_unit_test(counter_reset_and_get),
        cmocka_unit_test(gauge_set_add_and_callback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
