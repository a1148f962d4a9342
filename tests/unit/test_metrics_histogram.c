/* ft_histogram: bucket layout, percentile accuracy on known distributions, edges, clamping, merge,
 * reset and CDF. Accuracy is checked against the exact sample of the same rank. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "ftrpc/common.h"
#include "base/aligned_alloc.h"
#include "metrics/histogram.h"
#include "metrics/latency_recorder.h"

static uint64_t rng_state = 88172645463325252ull;

static uint64_t xorshift(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static double uniform01(void)
{
    return (double)(xorshift() >> 11) / 9007199254740992.0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int64_t exact_percentile(const int64_t *sorted, size_t n, double p)
{
    double r = p * (double)n;
    size_t rank = (size_t)r;
    if ((double)rank < r) rank++;
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return sorted[rank - 1];
}

static void bucket_layout_is_exact_below_256_and_log_linear_above(void **state)
{
    (void)state;
    for (int64_t v = 0; v < 256; v++) {
        size_t i = ft_histogram_bucket_index(v);
        assert_int_equal(i, (size_t)v);
        assert_int_equal(ft_histogram_bucket_low(i), v);
        assert_int_equal(ft_histogram_bucket_high(i), v);
    }
    /* Every bucket is contiguous with the next, and narrow: width <= low / 128. */
    for (size_t i = 0; i + 1 < FT_HIST_BUCKETS; i++) {
        assert_int_equal(ft_histogram_bucket_high(i) + 1, ft_histogram_bucket_low(i + 1));
        int64_t width = ft_histogram_bucket_high(i) - ft_histogram_bucket_low(i) + 1;
        if (i >= 256) assert_true(width * 128 <= ft_histogram_bucket_low(i));
    }
    assert_int_equal(ft_histogram_bucket_high(FT_HIST_BUCKETS - 1), FT_HIST_MAX_VALUE);
    /* Values map into the bucket that contains them. */
    const int64_t probes[] = {256,
                              257,
                              511,
                              512,
                              1000,
                              1023,
                              1024,
                              99999,
                              100000000,
                              FT_HIST_MAX_VALUE - 1,
                              FT_HIST_MAX_VALUE};
    for (size_t k = 0; k < sizeof probes / sizeof probes[0]; k++) {
        size_t i = ft_histogram_bucket_index(probes[k]);
        assert_true(i < FT_HIST_BUCKETS);
        assert_true(ft_histogram_bucket_low(i) <= probes[k]);
        assert_true(ft_histogram_bucket_high(i) >= probes[k]);
    }
}

static void check_distribution(int64_t (*gen)(void), size_t n)
{
    ft_histogram *h;
    assert_int_equal(ft_histogram_new(&h), 0);
    int64_t *v = malloc(n * sizeof *v);
    assert_non_null(v);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        v[i] = gen();
        sum += (uint64_t)v[i];
        ft_histogram_record(h, v[i]);
    }
    qsort(v, n, sizeof *v, cmp_i64);
    assert_int_equal(ft_histogram_count(h), n);
    assert_int_equal(ft_histogram_sum(h), sum);
    assert_int_equal(ft_histogram_max(h), v[n - 1]);
    const double ps[] = {0.0, 0.001, 0.01, 0.1,   0.25,   0.5, 0.75,
                         0.9, 0.95,  0.99, 0.999, 0.9999, 1.0};
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
        int64_t want = exact_percentile(v, n, ps[k]);
        int64_t got = ft_histogram_percentile(h, ps[k]);
        double err = want ? fabs((double)(got - want)) / (double)want : (double)got;
        if (err > 0.01)
            fail_msg("p=%g want %lld got %lld (err %.4f)", ps[k], (long long)want, (long long)got,
                     err);
        assert_true(err <= 1.0 / 256 + 1e-12); /* the documented bound, tighter than 1% */
    }
    assert_int_equal(ft_histogram_percentile(h, 1.0), v[n - 1]);
    free(v);
    ft_histogram_free(h);
}

static int64_t gen_uniform(void)
{
    return 1 + (int64_t)(uniform01() * 100000.0); /* 1 us .. 100 ms */
}

static int64_t gen_exponential(void)
{
    return (int64_t)(-log(1.0 - uniform01()) * 2000.0); /* mean 2 ms */
}

static int64_t gen_lognormal(void)
{
    /* Box-Muller; median 1 ms, long tail up to seconds. */
    double u1 = uniform01(), u2 = uniform01();
    double z = sqrt(-2.0 * log(1.0 - u1)) * cos(2 * M_PI * u2);
    return (int64_t)exp(log(1000.0) + 1.5 * z);
}

static int64_t gen_wide(void)
{
    /* Log-uniform over 1 us .. 100 s: every octave of the range gets samples. */
    return (int64_t)exp(uniform01() * log(1e8));
}

static void percentiles_of_uniform_within_1_percent(void **state)
{
    (void)state;
    check_distribution(gen_uniform, 200000);
}

static void percentiles_of_exponential_within_1_percent(void **state)
{
    (void)state;
    check_distribution(gen_exponential, 200000);
}

static void percentiles_of_lognormal_within_1_percent(void **state)
{
    (void)state;
    check_distribution(gen_lognormal, 200000);
}

static void percentiles_over_1us_to_100s_within_1_percent(void **state)
{
    (void)state;
    check_distribution(gen_wide, 200000);
}

static void empty_histogram_answers_zero(void **state)
{
    (void)state;
    ft_histogram h;
    ft_histogram_init(&h);
    assert_int_equal(ft_histogram_count(&h), 0);
    assert_int_equal(ft_histogram_percentile(&h, 0.5), 0);
    assert_int_equal(ft_histogram_percentile(&h, 1.0), 0);
    assert_true(ft_histogram_mean(&h) == 0.0);
    ft_cdf_point pts[4];
    size_t n = 99;
    assert_int_equal(ft_histogram_cdf(&h, pts, 4, &n), 0);
    assert_int_equal(n, 0);
}

static void edge_values_are_exact(void **state)
{
    (void)state;
    ft_histogram h;
    ft_histogram_init(&h);
    ft_histogram_record(&h, 0);
    assert_int_equal(ft_histogram_percentile(&h, 0.5), 0);
    ft_histogram_record(&h, 1);
    ft_histogram_record(&h, 255);
    assert_int_equal(ft_histogram_percentile(&h, 0.0), 0);
    assert_int_equal(ft_histogram_percentile(&h, 0.5), 1);
    assert_int_equal(ft_histogram_percentile(&h, 1.0), 255);
    /* p outside [0, 1] and NaN are clamped, not trusted */
    assert_int_equal(ft_histogram_percentile(&h, -3.0), 0);
    assert_int_equal(ft_histogram_percentile(&h, 7.0), 255);
    assert_int_equal(ft_histogram_percentile(&h, NAN), 0);
    /* a single large sample: every percentile is the exact max */
    ft_histogram_reset(&h);
    ft_histogram_record(&h, 123456789);
    assert_int_equal(ft_histogram_percentile(&h, 0.0), 123456789);
    assert_int_equal(ft_histogram_percentile(&h, 0.99), 123456789);
}

static void huge_and_negative_values_clamp(void **state)
{
    (void)state;
    ft_histogram h;
    ft_histogram_init(&h);
    ft_histogram_record(&h, INT64_MAX);
    ft_histogram_record(&h, (int64_t)1 << 50);
    ft_histogram_record(&h, -5);
    assert_int_equal(ft_histogram_count(&h), 3);
    assert_int_equal(ft_histogram_max(&h), FT_HIST_MAX_VALUE);
    assert_int_equal(ft_histogram_sum(&h), 2 * (uint64_t)FT_HIST_MAX_VALUE);
    assert_int_equal(ft_histogram_percentile(&h, 0.0), 0);
    assert_int_equal(ft_histogram_percentile(&h, 1.0), FT_HIST_MAX_VALUE);
    assert_int_equal(atomic_load(&h.buckets[FT_HIST_BUCKETS - 1]), 2);
}

static void merge_adds_counts_and_keeps_larger_max(void **state)
{
    (void)state;
    ft_histogram *a, *b;
    assert_int_equal(ft_histogram_new(&a), 0);
    assert_int_equal(ft_histogram_new(&b), 0);
    for (int i = 1; i <= 100; i++)
        ft_histogram_record(a, i);
    for (int i = 101; i <= 200; i++)
        ft_histogram_record(b, i);
    ft_histogram_record_n(b, 1000, 0); /* n = 0 changes only max */
    ft_histogram_merge(a, b);
    assert_int_equal(ft_histogram_count(a), 200);
    assert_int_equal(ft_histogram_sum(a), 200 * 201 / 2);
    assert_int_equal(ft_histogram_max(a), 1000);
    assert_int_equal(ft_histogram_percentile(a, 0.5), 100);
    assert_int_equal(ft_histogram_percentile(a, 0.75), 150);
    assert_true(fabs(ft_histogram_mean(a) - 100.5) < 1e-9);
    ft_histogram_reset(a);
    assert_int_equal(ft_histogram_count(a), 0);
    assert_int_equal(ft_histogram_max(a), 0);
    assert_int_equal(ft_histogram_percentile(a, 0.5), 0);
    ft_histogram_free(a);
    ft_histogram_free(b);
    ft_histogram_free(NULL);
}

static void cdf_is_monotone_and_ends_at_one(void **state)
{
    (void)state;
    ft_histogram *h;
    assert_int_equal(ft_histogram_new(&h), 0);
    /* 10 distinct values, each 10 times: one point per value when cap allows */
    for (int v = 1; v <= 10; v++)
        ft_histogram_record_n(h, v * 10, 10);
    ft_cdf_point pts[64];
    size_t n = 0;
    assert_int_equal(ft_histogram_cdf(h, pts, 64, &n), 0);
    assert_int_equal(n, 10);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(pts[i].value, (int64_t)(i + 1) * 10);
        assert_true(fabs(pts[i].fraction - (double)(i + 1) / 10.0) < 1e-12);
    }
    /* Many distinct values, few points: quantile points, ascending, last at 1.0 and the max. */
    for (int v = 1; v <= 100000; v += 7)
        ft_histogram_record(h, v);
    ft_histogram_record(h,
                        100140); /* in the upper half of its bucket: the last point is still it */
    assert_int_equal(ft_histogram_cdf(h, pts, 20, &n), 0);
    assert_true(n >= 2 && n <= 20);
    for (size_t i = 1; i < n; i++) {
        assert_true(pts[i].value > pts[i - 1].value);
        assert_true(pts[i].fraction > pts[i - 1].fraction);
    }
    assert_true(pts[n - 1].fraction == 1.0);
    assert_int_equal(pts[n - 1].value, ft_histogram_max(h));
    assert_int_equal(ft_histogram_cdf(h, NULL, 4, &n), FTRPC_EINVAL);
    assert_int_equal(ft_histogram_cdf(h, pts, 4, NULL), FTRPC_EINVAL);
    ft_histogram_free(h);
}

/* The striped cells are 64-byte aligned so that two threads never share a line; a heap histogram
 * (or a recorder holding them) must start on a 64-byte boundary, which plain malloc does not give
 * (glibc: 16). Small allocations in between move where the next one lands. Plain builds only
 * tell: ASan's allocator happens to align such sizes. */
static void heap_histograms_and_recorders_are_cache_line_aligned(void **state)
{
    (void)state;
    for (int i = 0; i < 16; i++) {
        void *nudge = malloc((size_t)(16 + i * 16));
        ft_histogram *h = NULL;
        ft_latency_recorder *r = NULL;
        assert_int_equal(ft_histogram_new(&h), 0);
        assert_int_equal(ft_latency_recorder_new(NULL, &r), 0);
        assert_true(ft_is_aligned(h, alignof(ft_histogram)));
        assert_true(ft_is_aligned(r, 64));
        ft_latency_recorder_free(r);
        ft_histogram_free(h);
        free(nudge);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bucket_layout_is_exact_below_256_and_log_linear_above),
        cmocka_unit_test(percentiles_of_uniform_within_1_percent),
        cmocka_unit_test(percentiles_of_exponential_within_1_percent),
        cmocka_unit_test(percentiles_of_lognormal_within_1_percent),
        cmocka_unit_test(percentiles_over_1us_to_100s_within_1_percent),
        cmocka_unit_test(empty_histogram_answers_zero),
        cmocka_unit_test(edge_values_are_exact),
        cmocka_unit_test(huge_and_negative_values_clamp),
        cmocka_unit_test(merge_adds_counts_and_keeps_larger_max),
        cmocka_unit_test(cdf_is_monotone_and_ends_at_one),
        cmocka_unit_test(heap_histograms_and_recorders_are_cache_line_aligned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
