/* The public metrics API (ftrpc/metrics.h), through its own functions only, except where a test
 * looks at what the pages would show (the default registry's dump): histograms record, answer
 * percentiles, counts and a CDF, copy, merge and reset; latency recorders check their options,
 * answer window statistics, and a named one appears on the pages until it is freed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <time.h>

#include "ftrpc/metrics.h"
#include "metrics/registry.h"

static void histogram_answers_percentiles_counts_and_a_cdf(void **state)
{
    ftrpc_histogram *h;
    assert_int_equal(ftrpc_histogram_new(&h), 0);
    assert_int_equal(ftrpc_histogram_count(h), 0);
    assert_int_equal(ftrpc_histogram_percentile(h, 0.5), 0);
    for (int64_t v = 1; v <= 1000; v++)
        ftrpc_histogram_record(h, v);
    assert_int_equal(ftrpc_histogram_count(h), 1000);
    assert_int_equal(ftrpc_histogram_sum(h), 500500);
    assert_true(ftrpc_histogram_mean(h) == 500.5);
    assert_int_equal(ftrpc_histogram_max(h), 1000);
    assert_int_equal(ftrpc_histogram_percentile(h, 1), 1000);
    int64_t p50 = ftrpc_histogram_percentile(h, 0.5);
    assert_in_range(p50, 498, 502); /* within 0.39 % of 500 */
    /* 900 starts its bucket (900..903 are 4 wide at this size): exactly the values 900..1000 */
    assert_int_equal(ftrpc_histogram_count_at_least(h, 900), 101);
    assert_int_equal(ftrpc_histogram_count_at_least(h, 5000), 0);

    ftrpc_cdf_point pts[2048];
    size_t n = 0;
    assert_int_equal(ftrpc_histogram_cdf(h, pts, 2048, &n), 0);
    assert_true(n > 0 && n <= 1000);
    for (size_t i = 1; i < n; i++) {
        assert_true(pts[i].value > pts[i - 1].value);
        assert_true(pts[i].fraction > pts[i - 1].fraction);
    }
    assert_int_equal(pts[n - 1].value, 1000);
    assert_true(pts[n - 1].fraction == 1.0);
    assert_int_equal(ftrpc_histogram_cdf(h, pts, 2048, NULL), FTRPC_EINVAL);
    assert_int_equal(ftrpc_histogram_cdf(h, NULL, 4, &n), FTRPC_EINVAL);
    ftrpc_histogram_free(h);
    ftrpc_histogram_free(NULL);
}

static void histogram_copies_merges_and_resets(void **state)
{
    ftrpc_histogram *a, *b;
    assert_int_equal(ftrpc_histogram_new(&a), 0);
    assert_int_equal(ftrpc_histogram_new(&b), 0);
    ftrpc_histogram_record(a, 10);
    ftrpc_histogram_record(a, 20);
    ftrpc_histogram_record(b, 99); /* overwritten by the copy */
    ftrpc_histogram_copy(b, a);
    assert_int_equal(ftrpc_histogram_count(b), 2);
    assert_int_equal(ftrpc_histogram_max(b), 20);
    ftrpc_histogram_record(b, 30);
    ftrpc_histogram_merge(a, b);
    assert_int_equal(ftrpc_histogram_count(a), 5);
    assert_int_equal(ftrpc_histogram_sum(a), 90);
    assert_int_equal(ftrpc_histogram_max(a), 30);
    ftrpc_histogram_reset(a);
    assert_int_equal(ftrpc_histogram_count(a), 0);
    assert_int_equal(ftrpc_histogram_max(a), 0);
    ftrpc_histogram_free(a);
    ftrpc_histogram_free(b);
}

static void recorder_options_are_checked(void **state)
{
    ftrpc_latency_recorder *r = NULL; /* written only on success */
    ftrpc_latency_recorder_options bad_window = {.window_seconds = 61};
    assert_int_equal(ftrpc_latency_recorder_new(&bad_window, &r), FTRPC_EINVAL);
    ftrpc_latency_recorder_options bad_name = {.name = "has space"};
    assert_int_equal(ftrpc_latency_recorder_new(&bad_name, &r), FTRPC_EINVAL);
    assert_null(r);
    assert_int_equal(ftrpc_latency_recorder_new(NULL, NULL), FTRPC_EINVAL);
}

static void recorder_answers_window_statistics(void **state)
{
    ftrpc_latency_recorder *r;
    assert_int_equal(ftrpc_latency_recorder_new(NULL, &r), 0);
    for (int i = 0; i < 100; i++)
        ftrpc_latency_recorder_record(r, 200); /* exact: below 256 every value has its bucket */
    ftrpc_latency_recorder_record(r, 5000);
    ftrpc_latency_stats s;
    assert_int_equal(ftrpc_latency_recorder_stats(r, 0, &s), 0);
    assert_int_equal(s.count, 101);
    assert_int_equal(s.p50_ns, 200);
    assert_int_equal(s.max_ns, 5000);
    assert_int_equal(s.total_count, 101);
    assert_int_equal(s.total_sum_ns, 25000);
    assert_true(s.qps > 0);
    assert_int_equal(ftrpc_latency_recorder_stats(r, 1, &s), 0);
    assert_int_equal(ftrpc_latency_recorder_stats(r, 11, &s), FTRPC_EINVAL); /* window is 10 */

    ftrpc_histogram *h;
    assert_int_equal(ftrpc_histogram_new(&h), 0);
    assert_int_equal(ftrpc_latency_recorder_window_histogram(r, 0, h), 0);
    assert_int_equal(ftrpc_histogram_count(h), 101);
    assert_int_equal(ftrpc_histogram_percentile(h, 0.99), 200);
    assert_int_equal(ftrpc_histogram_percentile(h, 1), 5000);
    ftrpc_histogram_free(h);
    ftrpc_latency_recorder_free(r);
    ftrpc_latency_recorder_free(NULL);
}

static int pages_show(const char *text)
{
    ft_strbuf sb;
    ft_strbuf_init(&sb, 0);
    assert_int_equal(
        ft_metrics_registry_dump(ft_metrics_default_registry(), FT_METRICS_TEXT, NULL, &sb, NULL),
        0);
    int found = sb.data && strstr(sb.data, text) != NULL;
    ft_strbuf_fini(&sb);
    return found;
}

static void a_named_recorder_is_on_the_pages_until_freed(void **state)
{
    ftrpc_latency_recorder_options o = {.window_seconds = 5, .name = "test_public_rpc"};
    ftrpc_latency_recorder *r, *twin;
    assert_int_equal(ftrpc_latency_recorder_new(&o, &r), 0);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    ftrpc_latency_recorder_record(r, 2000);
    ftrpc_latency_recorder_record_at(r, 4000, (int64_t)now.tv_sec * 1000000000 + now.tv_nsec);
    assert_true(pages_show("test_public_rpc_count : 2\n"));
    assert_int_equal(ftrpc_latency_recorder_new(&o, &twin), FTRPC_EEXIST);
    ftrpc_latency_recorder_free(r);
    assert_false(pages_show("test_public_rpc"));
    /* the name is free again */
    assert_int_equal(ftrpc_latency_recorder_new(&o, &twin), 0);
    ftrpc_latency_recorder_free(twin);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(histogram_answers_percentiles_counts_and_a_cdf),
        cmocka_unit_test(histogram_copies_merges_and_resets),
        cmocka_unit_test(recorder_options_are_checked),
        cmocka_unit_test(recorder_answers_window_statistics),
        cmocka_unit_test(a_named_recorder_is_on_the_pages_until_freed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
