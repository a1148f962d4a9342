/* Sliding-window breaker on its own, then as endpoint health uses it: a trip suspends, the probe is
 * the half-open step. Time is passed by hand (ft_manual_clock for the health part). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/clock.h"
#include "cluster/breaker.h"
#include "cluster/endpoint_health.h"
#include "ftrpc/common.h"

#define MS(x) ((int64_t)(x)*FT_NS_PER_MS)
#define T0 MS(5000000)

static void record_n(ft_breaker *br, int64_t t, int n, bool failed, bool expect_trip_on_last)
{
    for (int i = 0; i < n; i++) {
        bool tripped = ft_breaker_record(br, t, failed);
        if (i == n - 1)
            assert_int_equal(tripped, expect_trip_on_last);
        else
            assert_false(tripped);
    }
}

static void breaker_defaults_are_hystrix_like(void **s)
{
    ft_breaker br;
    assert_int_equal(ft_breaker_init(&br, NULL), 0);
    assert_int_equal(br.opts.window_ms, 10000);
    assert_int_equal(br.opts.buckets, 10);
    assert_int_equal(br.opts.min_calls, 20);
    assert_true(br.opts.error_ratio == 0.5);
    assert_int_equal(br.bucket_ns, MS(1000));
}

static void breaker_does_not_trip_below_min_calls(void **s)
{
    ft_breaker br;
    ft_breaker_init(&br, NULL);
    record_n(&br, T0, 19, true, false); /* 100% errors, but only 19 calls */
    assert_true(ft_breaker_record(&br, T0, true));
}

static void breaker_trips_when_error_ratio_reached(void **s)
{
    ft_breaker_options o = {.min_calls = 10, .error_ratio = 0.5};
    ft_breaker br;
    ft_breaker_init(&br, &o);
    record_n(&br, T0, 10, false, false);
    record_n(&br, T0, 9, true, false);             /* 9 / 19 < 0.5 */
    assert_true(ft_breaker_record(&br, T0, true)); /* 10 / 20 */
    assert_int_equal(br.trips, 1);
}

static void breaker_success_never_trips(void **s)
{
    ft_breaker_options o = {.min_calls = 4, .error_ratio = 0.5};
    ft_breaker br;
    ft_breaker_init(&br, &o);
    record_n(&br, T0, 3, true, false);
    /* 4 calls, 3 errors: over threshold, but a success is not a reason to open. */
    assert_false(ft_breaker_record(&br, T0, false));
    assert_true(ft_breaker_record(&br, T0, true));
}

static void breaker_empties_its_window_after_a_trip(void **s)
{
    ft_breaker_options o = {.min_calls = 2, .error_ratio = 1};
    ft_breaker br;
    ft_breaker_init(&br, &o);
    record_n(&br, T0, 2, true, true);
    uint32_t calls = 99, errors = 99;
    ft_breaker_counts(&br, T0, &calls, &errors);
    assert_int_equal(calls, 0);
    assert_int_equal(errors, 0);
    assert_false(ft_breaker_record(&br, T0, true));
}

static void breaker_forgets_calls_older_than_the_window(void **s)
{
    ft_breaker_options o = {.window_ms = 1000, .buckets = 4, .min_calls = 4, .error_ratio = 0.5};
    ft_breaker br;
    ft_breaker_init(&br, &o);
    record_n(&br, T0, 3, true, false);
    uint32_t calls, errors;
    /* Still inside the window three buckets later. */
    ft_breaker_counts(&br, T0 + MS(999), &calls, &errors);
    assert_int_equal(calls, 3);
    /* One window later the errors are gone: a fourth error alone does not trip. */
    ft_breaker_counts(&br, T0 + MS(1000), &calls, &errors);
    assert_int_equal(calls, 0);
    assert_false(ft_breaker_record(&br, T0 + MS(1000), true));
    ft_breaker_counts(&br, T0 + MS(1000), &calls, &errors);
    assert_int_equal(calls, 1);
    assert_int_equal(errors, 1);
}

static void breaker_window_slides_bucket_by_bucket(void **s)
{
    ft_breaker_options o = {.window_ms = 1000, .buckets = 4, .min_calls = 4, .error_ratio = 0.75};
    ft_breaker br;
    ft_breaker_init(&br, &o);
    /* One error in each 250 ms bucket; the first falls out just as the fourth comes in. */
    assert_false(ft_breaker_record(&br, T0, true));
    assert_false(ft_breaker_record(&br, T0 + MS(250), true));
    assert_false(ft_breaker_record(&br, T0 + MS(500), false));
    assert_false(ft_breaker_record(&br, T0 + MS(1000), true)); /* T0's bucket gone: 2 of 3 */
    assert_true(ft_breaker_record(&br, T0 + MS(1100), true));  /* 3 of 4 */
}

static void breaker_off_never_trips(void **s)
{
    ft_breaker_options o = {.error_ratio = FT_BREAKER_OFF, .min_calls = 1};
    ft_breaker br;
    assert_int_equal(ft_breaker_init(&br, &o), 0);
    record_n(&br, T0, 1000, true, false);
}

typedef struct breaker_validation_case {
    const char *what;
    ft_breaker_options opts;
    int expect;
} breaker_validation_case;

static void breaker_options_validation_rejects_bad_values(void **s)
{
    static const breaker_validation_case cases[] = {
        {"defaults", {.window_ms = 0}, 0},
        {"ratio above 1", {.error_ratio = 1.01}, FTRPC_EINVAL},
        {"negative ratio", {.error_ratio = -0.5}, FTRPC_EINVAL},
        {"ratio 1", {.error_ratio = 1}, 0},
        {"off", {.error_ratio = FT_BREAKER_OFF}, 0},
        {"negative window", {.window_ms = -1}, FTRPC_EINVAL},
        {"window beyond a day", {.window_ms = INT64_C(86400001)}, FTRPC_EINVAL},
        {"too many buckets", {.buckets = FT_BREAKER_MAX_BUCKETS + 1}, FTRPC_EINVAL},
        {"negative buckets", {.buckets = -1}, FTRPC_EINVAL},
        {"negative min calls", {.min_calls = -3}, FTRPC_EINVAL},
        {"one bucket", {.buckets = 1}, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        print_message("case: %s\n", cases[i].what);
        assert_int_equal(ft_breaker_options_validate(&cases[i].opts), cases[i].expect);
        ft_breaker br;
        assert_int_equal(ft_breaker_init(&br, &cases[i].opts), cases[i].expect);
    }
}

/* --- inside endpoint health: open = SUSPENDED, half-open = the probe --- */

typedef struct fixture {
    ft_manual_clock clock;
    ft_endpoint_health h;
} fixture;

static int64_t now(fixture *f)
{
    return ft_clock_now_ns(&f->clock.base);
}

static void setup(fixture *f)
{
    /* ELIMIT is neither a mark nor a suspend code: only the breaker reacts to it. */
    ft_health_options o = {.breaker = {.min_calls = 10, .error_ratio = 0.5}};
    ft_manual_clock_init(&f->clock, T0);
    assert_int_equal(ft_health_init(&f->h, &o), 0);
}

static void trip(fixture *f)
{
    for (int i = 0; i < 5; i++)
        ft_health_on_result(&f->h, 0, 100, now(f));
    for (int i = 0; i < 4; i++) {
        ft_health_on_result(&f->h, FTRPC_ELIMIT, 100, now(f));
        assert_int_equal(ft_health_state_get(&f->h), FT_HEALTH_ACTIVE);
    }
    ft_health_on_result(&f->h, FTRPC_ELIMIT, 100, now(f)); /* 5 of 10 */
}

/* Trips the breaker, waits out the first suspension and takes the half-open probe. */
static void open_and_take_probe(fixture *f)
{
    setup(f);
    trip(f);
    ft_manual_clock_advance(&f->clock, MS(1000));
    assert_int_equal(ft_health_try_acquire(&f->h, now(f)), FT_HEALTH_GRANTED_PROBE);
}

static void breaker_trip_suspends_the_endpoint(void **s)
{
    fixture f;
    setup(&f);
    trip(&f);
    assert_int_equal(ft_health_state_get(&f.h), FT_HEALTH_SUSPENDED);
    assert_int_equal(ft_health_usable_in_ns(&f.h, now(&f)), MS(1000));
    ft_health_stats st;
    ft_health_stats_get(&f.h, &st);
    assert_int_equal(st.breaker_trips, 1);
    assert_int_equal(st.suspensions, 1);
    ft_health_fini(&f.h);
}

static void breaker_half_open_probe_success_closes_with_a_clean_window(void **s)
{
    fixture f;
    open_and_take_probe(&f);
    ft_health_on_result(&f.h, 0, 100, now(&f));
    assert_int_equal(ft_health_state_get(&f.h), FT_HEALTH_ACTIVE);
    /* The old errors are forgotten: 9 errors in a row are below min_calls, no trip. */
    for (int i = 0; i < 9; i++)
        ft_health_on_result(&f.h, FTRPC_ELIMIT, 100, now(&f));
    assert_int_equal(ft_health_state_get(&f.h), FT_HEALTH_ACTIVE);
    ft_health_on_result(&f.h, FTRPC_ELIMIT, 100, now(&f));
    assert_int_equal(ft_health_state_get(&f.h), FT_HEALTH_SUSPENDED);
    ft_health_fini(&f.h);
}

static void breaker_half_open_probe_failure_reopens_for_longer(void **s)
{
    fixture f;
    open_and_take_probe(&f);
    ft_health_on_result(&f.h, FTRPC_ELIMIT, 100, now(&f));
    assert_int_equal(ft_health_state_get(&f.h), FT_HEALTH_SUSPENDED);
    assert_int_equal(ft_health_usable_in_ns(&f.h, now(&f)), MS(2000));
    ft_health_fini(&f.h);
}

static void breaker_trips_from_timeout_state_too(void **s)
{
    ft_health_options o = {.retries_before_suspension = 100,
                           .breaker = {.min_calls = 4, .error_ratio = 0.75}};
    fixture f;
    ft_manual_clock_init(&f.clock, T0);
    assert_int_equal(ft_health_init(&f.h, &o), 0);
    ft_health_on_result(&f.h, 0, 100, now(&f));
    ft_health_on_result(&f.h, FTRPC_ERPCTIMEDOUT, 100, now(&f));
    ft_health_on_result(&f.h, FTRPC_ERPCTIMEDOUT, 100, now(&f));
    assert_int_equal(ft_health_state_get(&f.h), FT_HEALTH_TIMEOUT);
    ft_health_on_result(&f.h, FTRPC_ERPCTIMEDOUT, 100, now(&f)); /* 3 of 4 */
    assert_int_equal(ft_health_state_get(&f.h), FT_HEALTH_SUSPENDED);
    ft_health_fini(&f.h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(breaker_defaults_are_hystrix_like),
        cmocka_unit_test(breaker_does_not_trip_below_min_calls),
        cmocka_unit_test(breaker_trips_when_error_ratio_reached),
        cmocka_unit_test(breaker_success_never_trips),
        cmocka_unit_test(breaker_empties_its_window_after_a_trip),
        cmocka_unit_test(breaker_forgets_calls_older_than_the_window),
        cmocka_unit_test(breaker_window_slides_bucket_by_bucket),
        cmocka_unit_test(breaker_off_never_trips),
        cmocka_unit_test(breaker_options_validation_rejects_bad_values),
        cmocka_unit_test(breaker_trip_suspends_the_endpoint),
        cmocka_unit_test(breaker_half_open_probe_success_closes_with_a_clean_window),
        cmocka_unit_test(breaker_half_open_probe_failure_reopens_for_longer),
        cmocka_unit_test(breaker_trips_from_timeout_state_too),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
