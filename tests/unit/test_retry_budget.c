/* Retry budget: the ratio, the floor, exhaustion and refill as the window slides, validation, and
 * the bound on overdraw when threads race. Time is an ft_manual_clock. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/clock.h"
#include "metrics/counter.h"
#include "client/retry_budget.h"
#include "ftrpc/common.h"

#define MS(x) ((int64_t)(x)*FT_NS_PER_MS)

typedef struct fixture {
    ft_manual_clock clock;
    ft_retry_budget b;
} fixture;

static int64_t now(fixture *f)
{
    return ft_clock_now_ns(&f->clock.base);
}

static fixture *make(const ft_retry_budget_options *o)
{
    fixture *f = test_calloc(1, sizeof(*f));
    /* On a bucket boundary, so that "one window later" is exact. */
    ft_manual_clock_init(&f->clock, MS(123456000));
    assert_int_equal(ft_retry_budget_init(&f->b, o), 0);
    return f;
}

static void destroy(fixture *f)
{
    ft_retry_budget_fini(&f->b);
    test_free(f);
}

static void requests(fixture *f, int n)
{
    for (int i = 0; i < n; i++)
        ft_retry_budget_on_request(&f->b, now(f));
}

/* Spends until refused; returns how many were spent. */
static int spend_all(fixture *f)
{
    int n = 0;
    while (ft_retry_budget_try_spend(&f->b, now(f)))
        n++;
    return n;
}

static void defaults_are_finagle_retry_budget(void **s)
{
    fixture *f = make(NULL);
    assert_true(f->b.opts.ratio == 0.2);
    assert_int_equal(f->b.opts.min_per_sec, 10);
    assert_int_equal(f->b.opts.window_ms, 10000);
    assert_int_equal(f->b.floor, 100);
    destroy(f);
}

static void floor_allows_min_per_sec_times_window_without_requests(void **s)
{
    fixture *f = make(NULL);
    assert_int_equal(ft_retry_budget_balance(&f->b, now(f)), 100);
    assert_int_equal(spend_all(f), 100);
    ft_retry_budget_stats st;
    ft_retry_budget_stats_get(&f->b, &st);
    assert_int_equal(st.retries, 100);
    assert_int_equal(st.exhausted, 1);
    destroy(f);
}

static void retries_are_limited_to_ratio_of_recent_requests(void **s)
{
    ft_retry_budget_options o = {.min_per_sec = FT_RETRY_BUDGET_NO_FLOOR};
    fixture *f = make(&o);
    assert_false(ft_retry_budget_try_spend(&f->b, now(f)));
    requests(f, 4);
    assert_false(ft_retry_budget_try_spend(&f->b, now(f))); /* 0.8 of a retry is none */
    requests(f, 96);
    assert_int_equal(spend_all(f), 20);
    ft_retry_budget_stats st;
    ft_retry_budget_stats_get(&f->b, &st);
    assert_int_equal(st.requests, 100);
    assert_int_equal(st.retries, 20);
    assert_int_equal(st.exhausted, 3);
    destroy(f);
}

static void ratio_and_floor_add_up(void **s)
{
    ft_retry_budget_options o = {.ratio = 0.5, .min_per_sec = 2, .window_ms = 5000};
    fixture *f = make(&o);
    requests(f, 10);
    assert_int_equal(ft_retry_budget_balance(&f->b, now(f)), 5 + 10);
    assert_int_equal(spend_all(f), 15);
    destroy(f);
}

static void retries_stop_when_dry_and_resume_as_requests_refill(void **s)
{
    ft_retry_budget_options o = {.min_per_sec = FT_RETRY_BUDGET_NO_FLOOR};
    fixture *f = make(&o);
    requests(f, 50);
    assert_int_equal(spend_all(f), 10);
    assert_false(ft_retry_budget_try_spend(&f->b, now(f)));
    ft_manual_clock_advance(&f->clock, MS(1000));
    requests(f, 10); /* 60 requests in the window: 12 retries, 10 spent */
    assert_int_equal(spend_all(f), 2);
    destroy(f);
}

static void retries_resume_as_the_window_slides(void **s)
{
    fixture *f = make(NULL); /* floor 100 per 10 s */
    assert_int_equal(spend_all(f), 100);
    ft_manual_clock_advance(&f->clock, MS(9999));
    assert_false(ft_retry_budget_try_spend(&f->b, now(f)));
    ft_manual_clock_advance(&f->clock, MS(1));
    /* The bucket of the spent retries has left the window. */
    assert_int_equal(ft_retry_budget_balance(&f->b, now(f)), 100);
    assert_true(ft_retry_budget_try_spend(&f->b, now(f)));
    destroy(f);
}

static void old_requests_stop_earning_retries(void **s)
{
    ft_retry_budget_options o = {
        .min_per_sec = FT_RETRY_BUDGET_NO_FLOOR, .window_ms = 2000, .buckets = 2};
    fixture *f = make(&o);
    requests(f, 100);
    assert_int_equal(ft_retry_budget_balance(&f->b, now(f)), 20);
    ft_manual_clock_advance(&f->clock, MS(1000));
    assert_int_equal(ft_retry_budget_balance(&f->b, now(f)), 20);
    ft_manual_clock_advance(&f->clock, MS(1000));
    assert_int_equal(ft_retry_budget_balance(&f->b, now(f)), 0);
    assert_false(ft_retry_budget_try_spend(&f->b, now(f)));
    destroy(f);
}

typedef struct budget_validation_case {
    const char *what;
    ft_retry_budget_options opts;
    int expect;
} budget_validation_case;

/* An IO thread owns a metrics stripe and counts its requests without a CAS, keeping its bucket's
 * bounds to skip a division: its counts must slide out of the window like anyone's, and add up
 * with those of threads that share a stripe. */
struct owner_arg {
    fixture *f;
    int64_t at;
    int n;
    int owned;
};

static void *owner_requests(void *p)
{
    struct owner_arg *a = p;
    a->owned = ft_metrics_own_stripe();
    for (int i = 0; i < a->n; i++)
        ft_retry_budget_on_request(&a->f->b, a->at);
    return NULL;
}

static void run_owner(fixture *f, int64_t at, int n)
{
    struct owner_arg a = {f, at, n, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, owner_requests, &a), 0);
    pthread_join(t, NULL);
    assert_int_equal(a.owned, 1);
}

static void owned_stripe_requests_slide_out_of_the_window(void **s)
{
    ft_retry_budget_options o = {.min_per_sec = FT_RETRY_BUDGET_NO_FLOOR}; /* 10 s, 10 buckets */
    fixture *f = make(&o);
    run_owner(f, now(f), 50);            /* bucket 0 */
    run_owner(f, now(f) + MS(2500), 50); /* bucket 2: the owner's cached bounds move on */
    requests(f, 25);                     /* bucket 0, by a thread that owns no stripe */
    assert_int_equal(ft_retry_budget_balance(&f->b, now(f) + MS(2500)), 25); /* 0.2 x 125 */
    /* 10 s on, bucket 0 (both threads' counts in it) has left the window, bucket 2 not yet */
    assert_int_equal(ft_retry_budget_balance(&f->b, now(f) + MS(10000)), 10);
    run_owner(f, now(f) + MS(10000), 50); /* back to bucket 0's cell, a new epoch */
    assert_int_equal(ft_retry_budget_balance(&f->b, now(f) + MS(10000)), 20);
    ft_retry_budget_stats st;
    ft_retry_budget_stats_get(&f->b, &st);
    assert_int_equal(st.requests, 175);
    destroy(f);
}

static void a_budget_turned_off_never_refuses(void **s)
{
    ft_retry_budget_options o = {.ratio = FT_RETRY_BUDGET_OFF,
                                 .min_per_sec = FT_RETRY_BUDGET_NO_FLOOR};
    assert_int_equal(ft_retry_budget_options_validate(&o), 0);
    fixture *f = make(&o);
    /* no requests, no floor: a budget on would refuse the first spend */
    for (int i = 0; i < 10000; i++)
        assert_true(ft_retry_budget_try_spend(&f->b, now(f)));
    ft_retry_budget_stats st;
    ft_retry_budget_stats_get(&f->b, &st);
    assert_int_equal(st.exhausted, 0);
    destroy(f);
    /* other negative ratios are still mistakes */
    o.ratio = -0.5;
    assert_int_equal(ft_retry_budget_options_validate(&o), FTRPC_EINVAL);
}

static void budget_options_validation_rejects_bad_values(void **s)
{
    static const budget_validation_case cases[] = {
        {"defaults", {.ratio = 0}, 0},
        {"ratio above 1", {.ratio = 1.5}, FTRPC_EINVAL},
        {"negative ratio", {.ratio = -0.2}, FTRPC_EINVAL},
        {"ratio 1", {.ratio = 1}, 0},
        {"negative floor", {.min_per_sec = -5}, FTRPC_EINVAL},
        {"no floor", {.min_per_sec = FT_RETRY_BUDGET_NO_FLOOR}, 0},
        {"negative window", {.window_ms = -1}, FTRPC_EINVAL},
        {"window beyond a day", {.window_ms = INT64_MAX}, FTRPC_EINVAL},
        {"too many buckets", {.buckets = FT_RETRY_BUDGET_MAX_BUCKETS + 1}, FTRPC_EINVAL},
        {"negative buckets", {.buckets = -2}, FTRPC_EINVAL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        print_message("case: %s\n", cases[i].what);
        assert_int_equal(ft_retry_budget_options_validate(&cases[i].opts), cases[i].expect);
        ft_retry_budget b;
        assert_int_equal(ft_retry_budget_init(&b, &cases[i].opts), cases[i].expect);
    }
    assert_int_equal(ft_retry_budget_options_validate(NULL), 0);
}

#define SPENDERS 4

typedef struct race {
    fixture *f;
    pthread_barrier_t start;
    _Atomic int spent;
} race;

static void *spender(void *arg)
{
    race *r = arg;
    pthread_barrier_wait(&r->start);
    for (int i = 0; i < 1000; i++) {
        ft_retry_budget_on_request(&r->f->b, now(r->f));
        if (ft_retry_budget_try_spend(&r->f->b, now(r->f))) atomic_fetch_add(&r->spent, 1);
    }
    return NULL;
}

static void racing_spenders_overdraw_by_at_most_their_number(void **s)
{
    static race r;
    ft_retry_budget_options o = {.min_per_sec = FT_RETRY_BUDGET_NO_FLOOR};
    r.f = make(&o);
    atomic_store(&r.spent, 0);
    pthread_barrier_init(&r.start, NULL, SPENDERS);
    pthread_t t[SPENDERS];
    for (int i = 0; i < SPENDERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, spender, &r), 0);
    for (int i = 0; i < SPENDERS; i++)
        pthread_join(t[i], NULL);
    int spent = atomic_load(&r.spent);
    /* 4000 requests at 20%: 800, plus at most SPENDERS-1 from racing checks. */
    assert_true(spent >= 790);
    assert_true(spent <= 800 + SPENDERS - 1);
    ft_retry_budget_stats st;
    ft_retry_budget_stats_get(&r.f->b, &st);
    assert_int_equal(st.requests, 4000);
    assert_int_equal(st.retries, (uint64_t)spent);
    assert_int_equal(st.retries + st.exhausted, 4000);
    pthread_barrier_destroy(&r.start);
    destroy(r.f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_are_finagle_retry_budget),
        cmocka_unit_test(a_budget_turned_off_never_refuses),
        cmocka_unit_test(floor_allows_min_per_sec_times_window_without_requests),
        cmocka_unit_test(retries_are_limited_to_ratio_of_recent_requests),
        cmocka_unit_test(ratio_and_floor_add_up),
        cmocka_unit_test(retries_stop_when_dry_and_resume_as_requests_refill),
        cmocka_unit_test(retries_resume_as_the_window_slides),
        cmocka_unit_test(old_requests_stop_earning_retries),
        cmocka_unit_test(owned_stripe_requests_slide_out_of_the_window),
        cmocka_unit_test(budget_options_validation_rejects_bad_values),
        cmocka_unit_test(racing_spenders_overdraw_by_at_most_their_number),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
