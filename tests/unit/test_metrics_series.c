/* ft_series: rates from cumulative counts over the time between samples (times given by hand, as
 * the server's timer gives them), the ring bounded to its capacity, oldest first, across the
 * wrap-around, and a reader copying while the sampler overwrites. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdatomic.h>

#include "base/clock.h"
#include "ftrpc/common.h"
#include "metrics/series.h"

#define SEC FT_NS_PER_SEC

static void capacity_must_be_positive(void **state)
{
    (void)state;
    ft_series s;
    assert_int_equal(ft_series_init(&s, 0), FTRPC_EINVAL);
    assert_int_equal(ft_series_init(&s, 1), 0);
    ft_series_fini(&s);
    ft_series_fini(&s); /* twice is harmless */
}

static void rates_are_growth_over_the_time_between_samples(void **state)
{
    (void)state;
    ft_series s;
    assert_int_equal(ft_series_init(&s, 8), 0);
    ft_series_point p[8];
    ft_series_sample(&s, 100 * SEC, 1000, 10, 5); /* the base: no point yet */
    assert_int_equal(ft_series_points(&s, p, 8), 0);

    ft_series_sample(&s, 101 * SEC, 1500, 12, 420);
    assert_int_equal(ft_series_points(&s, p, 8), 1);
    assert_int_equal(p[0].at_ns, 101 * SEC);
    assert_true(p[0].calls_per_s == 500.0);
    assert_true(p[0].errors_per_s == 2.0);
    assert_int_equal(p[0].p99_ns, 420);

    /* a late tick: 3 s since the last sample, the average over the 3 s */
    ft_series_sample(&s, 104 * SEC, 2100, 12, 900);
    assert_int_equal(ft_series_points(&s, p, 8), 2);
    assert_true(p[1].calls_per_s == 200.0);
    assert_true(p[1].errors_per_s == 0.0);

    /* no time passed: ignored; counts that went down: no growth, not a huge unsigned one */
    ft_series_sample(&s, 104 * SEC, 9999, 99, 1);
    assert_int_equal(ft_series_points(&s, p, 8), 2);
    ft_series_sample(&s, 104 * SEC + SEC / 2, 100, 0, 7);
    assert_int_equal(ft_series_points(&s, p, 8), 3);
    assert_true(p[2].calls_per_s == 0.0 && p[2].errors_per_s == 0.0);
    /* and the next point grows from the lowered base */
    ft_series_sample(&s, 105 * SEC, 150, 1, 7);
    assert_int_equal(ft_series_points(&s, p, 8), 4);
    assert_true(fabs(p[3].calls_per_s - 100.0) < 1e-9);
    assert_true(fabs(p[3].errors_per_s - 2.0) < 1e-9);
    ft_series_fini(&s);
}

static void the_ring_keeps_the_newest_points_oldest_first(void **state)
{
    (void)state;
    enum { CAP = 5 };
    ft_series s;
    assert_int_equal(ft_series_init(&s, CAP), 0);
    ft_series_point p[CAP + 3];
    for (int64_t t = 0; t <= 13; t++) { /* 13 points into 5 slots: wrapped twice and a bit */
        ft_series_sample(&s, t * SEC, (uint64_t)(t * t), 0, t);
        size_t n = ft_series_points(&s, p, CAP + 3);
        assert_int_equal(n, t < CAP ? t : CAP);
        for (size_t i = 0; i < n; i++) {
            int64_t at = t - (int64_t)n + 1 + (int64_t)i;
            assert_int_equal(p[i].at_ns, at * SEC);
            assert_int_equal(p[i].p99_ns, at);
            assert_true(p[i].calls_per_s == (double)(at * at - (at - 1) * (at - 1)));
        }
    }
    /* a smaller buffer gets the newest points */
    assert_int_equal(ft_series_points(&s, p, 2), 2);
    assert_int_equal(p[0].at_ns, 12 * SEC);
    assert_int_equal(p[1].at_ns, 13 * SEC);
    assert_int_equal(ft_series_points(&s, p, 0), 0);
    ft_series_fini(&s);
}

/* ---- a reader racing the sampler ---- */

enum { RACE_CAP = 16, RACE_SAMPLES = 200000 };

static ft_series race;
static atomic_int sampling;

static void *sampler(void *arg)
{
    (void)arg;
    for (int64_t t = 1; t <= RACE_SAMPLES; t++)
        ft_series_sample(&race, t * SEC, (uint64_t)t * 3, (uint64_t)t, t);
    atomic_store(&sampling, 0);
    return NULL;
}

static void a_reader_sees_whole_ordered_points_while_the_ring_wraps(void **state)
{
    (void)state;
    assert_int_equal(ft_series_init(&race, RACE_CAP), 0);
    atomic_store(&sampling, 1);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, sampler, NULL), 0);
    ft_series_point p[RACE_CAP];
    int reads = 0;
    while (atomic_load(&sampling) || reads == 0) {
        size_t n = ft_series_points(&race, p, RACE_CAP);
        assert_true(n <= RACE_CAP);
        for (size_t i = 0; i < n; i++) {
            assert_true(p[i].calls_per_s == 3.0 && p[i].errors_per_s == 1.0);
            assert_int_equal(p[i].at_ns, p[i].p99_ns * SEC);           /* never half written */
            if (i) assert_int_equal(p[i].at_ns, p[i - 1].at_ns + SEC); /* consecutive */
        }
        reads++;
    }
    pthread_join(t, NULL);
    assert_int_equal(ft_series_points(&race, p, RACE_CAP), RACE_CAP);
    assert_int_equal(p[RACE_CAP - 1].at_ns, RACE_SAMPLES * SEC);
    ft_series_fini(&race);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(capacity_must_be_positive),
        cmocka_unit_test(rates_are_growth_over_the_time_between_samples),
        cmocka_unit_test(the_ring_keeps_the_newest_points_oldest_first),
        cmocka_unit_test(a_reader_sees_whole_ordered_points_while_the_ring_wraps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
