/* Endpoint health state machine: every transition, the duration formula, option validation, the
 * single probe under racing threads, peak-EWMA and in-flight. Time is an ft_manual_clock. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/clock.h"
#include "cluster/endpoint_health.h"
#include "ftrpc/common.h"

#define MS(x) ((int64_t)(x)*FT_NS_PER_MS)
#define T0 MS(1000000) /* a clock that does not start at zero */

typedef struct fixture {
    ft_manual_clock clock;
    ft_endpoint_health h;
} fixture;

static int64_t now(fixture *f)
{
    return ft_clock_now_ns(&f->clock.base);
}

static void advance_ms(fixture *f, int64_t ms)
{
    ft_manual_clock_advance(&f->clock, MS(ms));
}

static fixture *make(const ft_health_options *opts)
{
    fixture *f = test_calloc(1, sizeof(*f));
    ft_manual_clock_init(&f->clock, T0);
    assert_int_equal(ft_health_init(&f->h, opts), 0);
    return f;
}

static void destroy(fixture *f)
{
    ft_health_fini(&f->h);
    test_free(f);
}

static void result(fixture *f, int code)
{
    ft_health_on_result(&f->h, code, 1000, now(f));
}

static ft_health_state state(fixture *f)
{
    return ft_health_state_get(&f->h);
}

static void starts_active_and_usable_with_defaults(void **s)
{
    fixture *f = make(NULL);
    assert_int_equal(state(f), FT_HEALTH_ACTIVE);
    assert_true(ft_health_usable(&f->h, now(f)));
    assert_int_equal(ft_health_usable_in_ns(&f->h, now(f)), 0);
    assert_int_equal(ft_health_try_acquire(&f->h, now(f)), FT_HEALTH_GRANTED);
    assert_int_equal(f->h.opts.initial_duration_ms, 1000);
    assert_int_equal(f->h.opts.maximum_duration_ms, 30000);
    assert_true(f->h.opts.progression_factor == 2.0);
    assert_int_equal(f->h.opts.retries_before_suspension, 0);
    assert_int_equal(f->h.opts.mark_codes[0], FTRPC_ERPCTIMEDOUT);
    assert_int_equal(f->h.opts.suspend_codes[0], FTRPC_ECONNREFUSED);
    destroy(f);
}

static void first_mark_code_suspends_with_default_retries(void **s)
{
    static const int codes[] = {FTRPC_ERPCTIMEDOUT, FTRPC_EFAILEDSOCKET, FTRPC_EEOF};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        fixture *f = make(NULL);
        result(f, codes[i]);
        assert_int_equal(state(f), FT_HEALTH_SUSPENDED);
        assert_false(ft_health_usable(&f->h, now(f)));
        assert_int_equal(ft_health_usable_in_ns(&f->h, now(f)), MS(1000));
        destroy(f);
    }
}

static void mark_code_moves_active_to_timeout_usable_after_retry_delay(void **s)
{
    ft_health_options o = {.retries_before_suspension = 2, .retry_delay_ms = 50};
    fixture *f = make(&o);
    result(f, FTRPC_ERPCTIMEDOUT);
    assert_int_equal(state(f), FT_HEALTH_TIMEOUT);
    assert_false(ft_health_usable(&f->h, now(f)));
    assert_int_equal(ft_health_try_acquire(&f->h, now(f)), FT_HEALTH_DENIED);
    assert_int_equal(ft_health_usable_in_ns(&f->h, now(f)), MS(50));
    advance_ms(f, 49);
    assert_int_equal(ft_health_try_acquire(&f->h, now(f)), FT_HEALTH_DENIED);
    advance_ms(f, 1);
    assert_true(ft_health_usable(&f->h, now(f)));
    assert_int_equal(ft_health_try_acquire(&f->h, now(f)), FT_HEALTH_GRANTED);
    assert_int_equal(state(f), FT_HEALTH_TIMEOUT);
    destroy(f);
}

/* Another IO thread may pick with a clock reading taken just before this thread's report. */
static void timeout_without_retry_delay_stays_usable_for_an_earlier_clock_reading(void **s)
{
    for (int nosusp = 0; nosusp < 2; nosusp++) {
        ft_health_options o = {.retries_before_suspension = 2};
        if (nosusp) o.initial_duration_ms = FT_HEALTH_NO_SUSPENSION;
        fixture *f = make(&o);
        for (int i = 0; i < (nosusp ? 3 : 1); i++)
            result(f, FTRPC_ERPCTIMEDOUT);
        assert_int_equal(state(f), FT_HEALTH_TIMEOUT);
        assert_true(ft_health_usable(&f->h, now(f) - MS(1)));
        assert_int_equal(ft_health_try_acquire(&f->h, now(f) - MS(1)), FT_HEALTH_GRANTED);
        destroy(f);
    }
}

static void timeout_suspends_after_retries_before_suspension_more_errors(void **s)
{
    ft_health_options o = {.retries_before_suspension = 2};
    fixture *f = make(&o);
    result(f, FTRPC_EEOF);
    assert_int_equal(state(f), FT_HEALTH_TIMEOUT);
    result(f, FTRPC_ERPCTIMEDOUT);
    assert_int_equal(state(f), FT_HEALTH_TIMEOUT);
    result(f, FTRPC_EFAILEDSOCKET);
    assert_int_equal(state(f), FT_HEALTH_SUSPENDED);
    ft_health_stats st;
    ft_health_stats_get(&f->h, &st);
    assert_int_equal(st.suspensions, 1);
    assert_int_equal(st.suspension_level, 1);
    destroy(f);
}

static void success_in_timeout_returns_to_active_and_resets_count(void **s)
{
    ft_health_options o = {.retries_before_suspension = 1, .retry_delay_ms = 10};
    fixture *f = make(&o);
    result(f, FTRPC_ERPCTIMEDOUT);
    assert_int_equal(state(f), FT_HEALTH_TIMEOUT);
    advance_ms(f, 10);
    result(f, 0);
    assert_int_equal(state(f), FT_HEALTH_ACTIVE);
    assert_true(ft_health_usable(&f->h, now(f)));
    /* The count started again: one mark code is TIMEOUT, not SUSPENDED. */
    result(f, FTRPC_ERPCTIMEDOUT);
    assert_int_equal(state(f), FT_HEALTH_TIMEOUT);
    result(f, FTRPC_ERPCTIMEDOUT);
    assert_int_equal(state(f), FT_HEALTH_SUSPENDED);
    destroy(f);
}

static void business_error_in_timeout_counts_as_success(void **s)
{
    ft_health_options o = {.retries_before_suspension = 1};
    fixture *f = make(&o);
    result(f, FTRPC_EEOF);
    assert_int_equal(state(f), FT_HEALTH_TIMEOUT);
    result(f, FTRPC_BUSINESS_CODE_MIN + 7);
    assert_int_equal(state(f), FT_HEALTH_ACTIVE);
    destroy(f);
}

static void suspend_code_suspends_active_at_once(void **s)
{
    static const int codes[] = {FTRPC_ECONNREFUSED, FTRPC_ECONNECT, FTRPC_ETLS, FTRPC_ELOGOFF};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        ft_health_options o = {.retries_before_suspension = 5};
        fixture *f = make(&o);
        result(f, codes[i]);
        assert_int_equal(state(f), FT_HEALTH_SUSPENDED);
        destroy(f);
    }
}

static void suspend_code_in_timeout_suspends_at_once(void **s)
{
    ft_health_options o = {.retries_before_suspension = 5};
    fixture *f = make(&o);
    result(f, FTRPC_ERPCTIMEDOUT);
    assert_int_equal(state(f), FT_HEALTH_TIMEOUT);
    result(f, FTRPC_ECONNREFUSED);
    assert_int_equal(state(f), FT_HEALTH_SUSPENDED);
    destroy(f);
}

static void business_and_overload_errors_never_suspend(void **s)
{
    fixture *f = make(NULL);
    /* Fewer than the breaker's 20 calls, so only the state machine speaks. */
    for (int i = 0; i < 5; i++) {
        result(f, FTRPC_BUSINESS_CODE_MIN + i);
        result(f, FTRPC_ELIMIT);
        result(f, FTRPC_EOVERCROWDED);
    }
    assert_int_equal(state(f), FT_HEALTH_ACTIVE);
    destroy(f);
}

/* An answer that blames the request (unknown method, bad token, ...) counts as an answer: a
 * hundred of them open no breaker and suspend nothing, even with WSO2's suspend_other_errors, and
 * one of them clears a TIMEOUT as a success would; listed by the user, such a code counts as
 * listed. */
static void request_faults_count_as_answers_unless_listed(void **s)
{
    (void)s;
    ft_health_options o = {.suspend_other_errors = true};
    fixture *f = make(&o);
    const int faults[] = {FTRPC_ENOSERVICE, FTRPC_ENOMETHOD, FTRPC_EREQUEST, FTRPC_ERPCAUTH};
    for (int i = 0; i < 100; i++)
        result(f, faults[i % 4]);
    assert_int_equal(state(f), FT_HEALTH_ACTIVE);
    ft_health_stats st;
    ft_health_stats_get(&f->h, &st);
    assert_int_equal(st.suspensions, 0);
    assert_int_equal(st.breaker_trips, 0);
    destroy(f);

    ft_health_options listed = {.suspend_codes = {FTRPC_ENOMETHOD}, .retries_before_suspension = 1};
    f = make(&listed);
    result(f, FTRPC_ERPCTIMEDOUT);
    assert_int_equal(state(f), FT_HEALTH_TIMEOUT);
    result(f, FTRPC_ERPCAUTH); /* an answer: back to ACTIVE */
    assert_int_equal(state(f), FT_HEALTH_ACTIVE);
    result(f, FTRPC_ENOMETHOD); /* listed as a suspend code */
    assert_int_equal(state(f), FT_HEALTH_SUSPENDED);
    destroy(f);
}

static void neutral_codes_change_nothing(void **s)
{
    ft_health_options o = {.retries_before_suspension = 1, .retry_delay_ms = 10};
    fixture *f = make(&o);
    for (int i = 0; i < 50; i++)
        result(f, FTRPC_ECANCELED);
    assert_int_equal(state(f), FT_HEALTH_ACTIVE);
    result(f, FTRPC_ERPCTIMEDOUT);
    assert_int_equal(state(f), FT_HEALTH_TIMEOUT);
    result(f, FTRPC_EBACKUPREQUEST);
    result(f, FTRPC_ENOENDPOINT);
    assert_int_equal(state(f), FT_HEALTH_TIMEOUT);
    /* Still one mark code short of suspension. */
    uint32_t calls;
    ft_breaker_counts(&f->h.breaker, now(f), &calls, NULL);
    assert_int_equal(calls, 1);
    destroy(f);
}

static void suspended_is_unusable_until_its_duration_ends(void **s)
{
    fixture *f = make(NULL);
    result(f, FTRPC_ECONNREFUSED);
    advance_ms(f, 999);
    assert_false(ft_health_usable(&f->h, now(f)));
    assert_int_equal(ft_health_usable_in_ns(&f->h, now(f)), MS(1));
    assert_int_equal(ft_health_try_acquire(&f->h, now(f)), FT_HEALTH_DENIED);
    assert_int_equal(state(f), FT_HEALTH_SUSPENDED);
    advance_ms(f, 1);
    assert_true(ft_health_usable(&f->h, now(f)));
    destroy(f);
}

static void suspension_end_lets_exactly_one_probe_through(void **s)
{
    fixture *f = make(NULL);
    result(f, FTRPC_ECONNREFUSED);
    advance_ms(f, 1000);
    assert_int_equal(ft_health_try_acquire(&f->h, now(f)), FT_HEALTH_GRANTED_PROBE);
    assert_int_equal(state(f), FT_HEALTH_PROBING);
    assert_false(ft_health_usable(&f->h, now(f)));
    assert_int_equal(ft_health_try_acquire(&f->h, now(f)), FT_HEALTH_DENIED);
    advance_ms(f, 5000);
    assert_int_equal(ft_health_try_acquire(&f->h, now(f)), FT_HEALTH_DENIED);
    ft_health_stats st;
    ft_health_stats_get(&f->h, &st);
    assert_int_equal(st.probes, 1);
    destroy(f);
}

static void probe_success_returns_to_active_and_resets_progression(void **s)
{
    fixture *f = make(NULL);
    result(f, FTRPC_ECONNREFUSED);
    advance_ms(f, 1000);
    assert_int_equal(ft_health_try_acquire(&f->h, now(f)), FT_HEALTH_GRANTED_PROBE);
    result(f, FTRPC_ECONNREFUSED); /* probe fails: 2 s */
    assert_int_equal(ft_health_usable_in_ns(&f->h, now(f)), MS(2000));
    advance_ms(f, 2000);
    assert_int_equal(ft_health_try_acquire(&f->h, now(f)), FT_HEALTH_GRANTED_PROBE);
    result(f, 0);
    assert_int_equal(state(f), FT_HEALTH_ACTIVE);
    assert_true(ft_health_usable(&f->h, now(f)));
    ft_health_stats st;
    ft_health_stats_get(&f->h, &st);
    assert_int_equal(st.suspension_level, 0);
    assert_int_equal(st.probe_failures, 1);
    /* Progression reset: the next suspension is the initial one again. */
    result(f, FTRPC_ECONNREFUSED);
    assert_int_equal(ft_health_usable_in_ns(&f->h, now(f)), MS(1000));
    destroy(f);
}

static void suspension_grows_by_factor_until_max(void **s)
{
    ft_health_options o = {
        .initial_duration_ms = 100, .progression_factor = 3, .maximum_duration_ms = 2000};
    static const int64_t expect_ms[] = {100, 300, 900, 2000, 2000, 2000};
    fixture *f = make(&o);
    result(f, FTRPC_ECONNECT);
    for (size_t i = 0; i < sizeof(expect_ms) / sizeof(expect_ms[0]); i++) {
        assert_int_equal(state(f), FT_HEALTH_SUSPENDED);
        assert_int_equal(ft_health_usable_in_ns(&f->h, now(f)), MS(expect_ms[i]));
        advance_ms(f, expect_ms[i]);
        assert_int_equal(ft_health_try_acquire(&f->h, now(f)), FT_HEALTH_GRANTED_PROBE);
        result(f, FTRPC_ERPCTIMEDOUT); /* a failed probe, whatever the failure class */
    }
    ft_health_stats st;
    ft_health_stats_get(&f->h, &st);
    assert_int_equal(st.suspensions, 7);
    assert_int_equal(st.probes, 6);
    destroy(f);
}

static void probe_failing_with_other_error_resuspends(void **s)
{
    fixture *f = make(NULL);
    result(f, FTRPC_ECONNREFUSED);
    advance_ms(f, 1000);
    ft_health_try_acquire(&f->h, now(f));
    result(f, FTRPC_ELIMIT);
    assert_int_equal(state(f), FT_HEALTH_SUSPENDED);
    assert_int_equal(ft_health_usable_in_ns(&f->h, now(f)), MS(2000));
    destroy(f);
}

static void cancelled_probe_hands_the_probe_back_at_once(void **s)
{
    fixture *f = make(NULL);
    result(f, FTRPC_ECONNREFUSED);
    advance_ms(f, 1000);
    assert_int_equal(ft_health_try_acquire(&f->h, now(f)), FT_HEALTH_GRANTED_PROBE);
    result(f, FTRPC_ECANCELED);
    assert_int_equal(state(f), FT_HEALTH_SUSPENDED);
    assert_true(ft_health_usable(&f->h, now(f)));
    assert_int_equal(ft_health_try_acquire(&f->h, now(f)), FT_HEALTH_GRANTED_PROBE);
    result(f, 0);
    assert_int_equal(state(f), FT_HEALTH_ACTIVE);
    destroy(f);
}

static void lost_probe_is_replaced_after_maximum_duration(void **s)
{
    fixture *f = make(NULL);
    result(f, FTRPC_ECONNREFUSED);
    advance_ms(f, 1000);
    assert_int_equal(ft_health_try_acquire(&f->h, now(f)), FT_HEALTH_GRANTED_PROBE);
    advance_ms(f, 29999);
    assert_int_equal(ft_health_try_acquire(&f->h, now(f)), FT_HEALTH_DENIED);
    advance_ms(f, 1);
    assert_int_equal(ft_health_try_acquire(&f->h, now(f)), FT_HEALTH_GRANTED_PROBE);
    assert_int_equal(ft_health_try_acquire(&f->h, now(f)), FT_HEALTH_DENIED);
    destroy(f);
}

static void late_results_while_suspended_are_ignored(void **s)
{
    fixture *f = make(NULL);
    result(f, FTRPC_ECONNREFUSED);
    result(f, 0);
    assert_int_equal(state(f), FT_HEALTH_SUSPENDED);
    result(f, FTRPC_ECONNREFUSED);
    result(f, FTRPC_EEOF);
    assert_int_equal(state(f), FT_HEALTH_SUSPENDED);
    assert_int_equal(ft_health_usable_in_ns(&f->h, now(f)), MS(1000));
    ft_health_stats st;
    ft_health_stats_get(&f->h, &st);
    assert_int_equal(st.suspensions, 1);
    destroy(f);
}

static void suspend_codes_none_disables_immediate_suspension(void **s)
{
    ft_health_options o = {.suspend_codes = {FT_HEALTH_CODES_NONE}};
    fixture *f = make(&o);
    for (int i = 0; i < 10; i++)
        result(f, FTRPC_ECONNREFUSED);
    assert_int_equal(state(f), FT_HEALTH_ACTIVE);
    result(f, FTRPC_ERPCTIMEDOUT); /* mark codes still apply */
    assert_int_equal(state(f), FT_HEALTH_SUSPENDED);
    destroy(f);
}

static void no_suspension_keeps_endpoint_in_timeout(void **s)
{
    ft_health_options o = {.initial_duration_ms = FT_HEALTH_NO_SUSPENSION, .retry_delay_ms = 20};
    fixture *f = make(&o);
    result(f, FTRPC_ERPCTIMEDOUT);
    assert_int_equal(state(f), FT_HEALTH_TIMEOUT);
    result(f, FTRPC_ECONNREFUSED);
    assert_int_equal(state(f), FT_HEALTH_TIMEOUT);
    assert_int_equal(ft_health_usable_in_ns(&f->h, now(f)), MS(20));
    advance_ms(f, 20);
    result(f, 0);
    assert_int_equal(state(f), FT_HEALTH_ACTIVE);
    ft_health_stats st;
    ft_health_stats_get(&f->h, &st);
    assert_int_equal(st.suspensions, 0);
    destroy(f);
}

static void custom_codes_replace_the_defaults(void **s)
{
    ft_health_options o = {.mark_codes = {FTRPC_ELIMIT},
                           .suspend_codes = {FTRPC_EOVERCROWDED},
                           .retries_before_suspension = 1};
    fixture *f = make(&o);
    result(f, FTRPC_ERPCTIMEDOUT); /* no longer a mark code: breaker only */
    assert_int_equal(state(f), FT_HEALTH_ACTIVE);
    result(f, FTRPC_ELIMIT);
    assert_int_equal(state(f), FT_HEALTH_TIMEOUT);
    result(f, FTRPC_EOVERCROWDED);
    assert_int_equal(state(f), FT_HEALTH_SUSPENDED);
    destroy(f);
}

typedef struct duration_case {
    int64_t initial, max;
    double factor;
    int n;
    int64_t expect;
} duration_case;

static void suspension_duration_follows_formula(void **s)
{
    static const duration_case cases[] = {
        /* defaults: 1 s doubling to 30 s */
        {0, 0, 0, 1, 1000},
        {0, 0, 0, 2, 2000},
        {0, 0, 0, 5, 16000},
        {0, 0, 0, 6, 30000},
        {0, 0, 0, 1000000, 30000},
        /* WSO2: 30 s, factor 1 */
        {30000, 30000, 1, 1, 30000},
        {30000, 30000, 1, 9, 30000},
        /* brpc-like: 100 ms doubling to 30 s */
        {100, 30000, 2, 1, 100},
        {100, 30000, 2, 9, 25600},
        {100, 30000, 2, 10, 30000},
        /* factor 1.5, not an integer */
        {1000, 10000, 1.5, 3, 2250},
        /* n below 1 is treated as the first */
        {500, 1000, 2, 0, 500},
        /* huge factor does not overflow */
        {1000, 60000, 1e300, 50, 60000},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const duration_case *c = &cases[i];
        ft_health_options o = {.initial_duration_ms = c->initial,
                               .maximum_duration_ms = c->max,
                               .progression_factor = c->factor};
        print_message("case %zu\n", i);
        assert_int_equal(ft_health_suspension_duration_ms(&o, c->n), c->expect);
    }
}

typedef struct validation_case {
    const char *what;
    ft_health_options opts;
    int expect;
} validation_case;

static void options_validation_rejects_bad_values(void **s)
{
    static const validation_case cases[] = {
        {"defaults", {.retries_before_suspension = 0}, 0},
        {"factor below 1", {.progression_factor = 0.5}, FTRPC_EINVAL},
        {"negative factor", {.progression_factor = -2}, FTRPC_EINVAL},
        {"factor exactly 1", {.progression_factor = 1}, 0},
        {"maximum below initial",
         {.initial_duration_ms = 5000, .maximum_duration_ms = 1000},
         FTRPC_EINVAL},
        {"maximum equal to initial", {.initial_duration_ms = 5000, .maximum_duration_ms = 5000}, 0},
        {"initial above default maximum", {.initial_duration_ms = 60000}, 0},
        {"negative initial", {.initial_duration_ms = -5}, FTRPC_EINVAL},
        {"suspension disabled", {.initial_duration_ms = FT_HEALTH_NO_SUSPENSION}, 0},
        {"negative retries", {.retries_before_suspension = -1}, FTRPC_EINVAL},
        {"negative retry delay", {.retry_delay_ms = -1}, FTRPC_EINVAL},
        {"negative ewma decay", {.ewma_decay_ms = -1}, FTRPC_EINVAL},
        {"business code as mark code", {.mark_codes = {FTRPC_EEOF, 3001}}, FTRPC_EINVAL},
        {"list not terminated",
         {.suspend_codes = {-1, -2, -3, -4, -5, -6, -7, -8, -9, -10, -11, -12, -13, -14, -15, -16}},
         FTRPC_EINVAL},
        {"maximum beyond a week",
         {.maximum_duration_ms = FT_HEALTH_MAX_DURATION_MS + 1},
         FTRPC_EINVAL},
        {"retry delay beyond a week", {.retry_delay_ms = INT64_MAX}, FTRPC_EINVAL},
        {"bad breaker ratio", {.breaker = {.error_ratio = 1.5}}, FTRPC_EINVAL},
        {"bad breaker buckets", {.breaker = {.buckets = 100}}, FTRPC_EINVAL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        print_message("case: %s\n", cases[i].what);
        assert_int_equal(ft_health_options_validate(&cases[i].opts), cases[i].expect);
        ft_endpoint_health h;
        int rc = ft_health_init(&h, &cases[i].opts);
        assert_int_equal(rc, cases[i].expect);
        if (rc == 0) ft_health_fini(&h);
    }
    assert_int_equal(ft_health_options_validate(NULL), 0);
}

/* --- exactly one probe under racing threads --- */

#define RACERS 4
#define ROUNDS 300

typedef struct race {
    fixture *f;
    pthread_barrier_t start, done;
    _Atomic int probes, granted;
} race;

static void *racer(void *arg)
{
    race *r = arg;
    for (int round = 0; round < ROUNDS; round++) {
        pthread_barrier_wait(&r->start);
        ft_health_grant g = ft_health_try_acquire(&r->f->h, now(r->f));
        if (g == FT_HEALTH_GRANTED_PROBE)
            atomic_fetch_add(&r->probes, 1);
        else if (g == FT_HEALTH_GRANTED)
            atomic_fetch_add(&r->granted, 1);
        pthread_barrier_wait(&r->done);
    }
    return NULL;
}

static void exactly_one_of_four_racing_threads_wins_the_probe(void **s)
{
    static race r;
    r.f = make(NULL);
    pthread_barrier_init(&r.start, NULL, RACERS + 1);
    pthread_barrier_init(&r.done, NULL, RACERS + 1);
    pthread_t t[RACERS];
    for (int i = 0; i < RACERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, racer, &r), 0);
    for (int round = 0; round < ROUNDS; round++) {
        /* Suspend, let the suspension end, release the racers. */
        result(r.f, FTRPC_ECONNREFUSED);
        assert_int_equal(state(r.f), FT_HEALTH_SUSPENDED);
        advance_ms(r.f, 30000);
        atomic_store(&r.probes, 0);
        atomic_store(&r.granted, 0);
        pthread_barrier_wait(&r.start);
        pthread_barrier_wait(&r.done);
        assert_int_equal(atomic_load(&r.probes), 1);
        assert_int_equal(atomic_load(&r.granted), 0);
        assert_int_equal(state(r.f), FT_HEALTH_PROBING);
        result(r.f, 0); /* the probe succeeds: ACTIVE for the next round */
        assert_int_equal(state(r.f), FT_HEALTH_ACTIVE);
    }
    for (int i = 0; i < RACERS; i++)
        pthread_join(t[i], NULL);
    ft_health_stats st;
    ft_health_stats_get(&r.f->h, &st);
    assert_int_equal(st.probes, ROUNDS);
    pthread_barrier_destroy(&r.start);
    pthread_barrier_destroy(&r.done);
    destroy(r.f);
}

/* --- peak EWMA and in-flight --- */

/* A node back from a suspension must not be shunned for the failure that suspended it: p2c reads
 * an endpoint without a figure as cheap while idle, so the probe comes as soon as it may. */
static void suspension_forgets_the_latency_figure_and_the_probe_measures_afresh(void **s)
{
    (void)s;
    fixture *f = make(NULL);
    ft_health_on_result(&f->h, 0, 300, now(f));
    ft_health_on_result(&f->h, FTRPC_ERPCTIMEDOUT, 100000, now(f)); /* suspends */
    assert_int_equal(ft_health_state_get(&f->h), FT_HEALTH_SUSPENDED);
    assert_true(ft_health_ewma_us(&f->h, now(f)) == 0.0);
    /* late results of attempts sent before the suspension (another loop's timeout, a dead
     * connection's) do not bring the figure back */
    ft_health_on_result(&f->h, FTRPC_EFAILEDSOCKET, 1000000, now(f));
    assert_true(ft_health_ewma_us(&f->h, now(f)) == 0.0);
    advance_ms(f, 1000);
    assert_true(ft_health_try_acquire(&f->h, now(f)) != FT_HEALTH_DENIED);
    ft_health_on_result(&f->h, 0, 250, now(f));
    assert_int_equal(ft_health_state_get(&f->h), FT_HEALTH_ACTIVE);
    assert_true(ft_health_ewma_us(&f->h, now(f)) == 250.0);
    destroy(f);
}

static void ewma_jumps_up_on_slow_sample_and_decays_with_time(void **s)
{
    ft_health_options o = {.ewma_decay_ms = 1000};
    fixture *f = make(&o);
    assert_true(ft_health_ewma_us(&f->h, now(f)) == 0.0);
    ft_health_on_result(&f->h, 0, 100, now(f));
    assert_true(ft_health_ewma_us(&f->h, now(f)) == 100.0);
    ft_health_on_result(&f->h, 0, 5000, now(f)); /* peak: replaces at once */
    assert_true(ft_health_ewma_us(&f->h, now(f)) == 5000.0);
    /* No samples for one time constant: decays by e. */
    advance_ms(f, 1000);
    double v = ft_health_ewma_us(&f->h, now(f));
    assert_true(v > 5000.0 * 0.3678 && v < 5000.0 * 0.3679);
    /* A fast sample right after a slow one barely moves it (dt = 0: weight 1 on the past). */
    fixture *g = make(&o);
    ft_health_on_result(&g->h, 0, 5000, now(g));
    ft_health_on_result(&g->h, 0, 10, now(g));
    assert_true(ft_health_ewma_us(&g->h, now(g)) == 5000.0);
    /* After a long gap, a fast sample dominates. */
    advance_ms(g, 10000);
    ft_health_on_result(&g->h, 0, 10, now(g));
    v = ft_health_ewma_us(&g->h, now(g));
    assert_true(v > 10.0 && v < 10.5);
    /* Cancelled calls are no sample. */
    ft_health_on_result(&g->h, FTRPC_ECANCELED, 900000, now(g));
    assert_true(ft_health_ewma_us(&g->h, now(g)) < 10.5);
    destroy(f);
    destroy(g);
}

/* The failure ratio p2c reads: a run of failures drives it to 1 whatever their latency (a refused
 * connect takes microseconds); one failure among a busy endpoint's successes moves it little; it
 * decays with the EWMA's time constant; neutral outcomes and business errors are no failure. */
static void failure_ratio_follows_recent_failures_with_the_ewma_time_weight(void **s)
{
    ft_health_options o = {.ewma_decay_ms = 1000, .suspend_codes = {FT_HEALTH_CODES_NONE}};
    fixture *f = make(&o);
    assert_true(ft_health_failure_ratio(&f->h, now(f)) == 0.0);
    ft_health_on_result(&f->h, FTRPC_ECONNREFUSED, 0, now(f));
    assert_true(ft_health_failure_ratio(&f->h, now(f)) > 0.999); /* the first sample: all of it */
    for (int i = 0; i < 5; i++) {
        advance_ms(f, 100);
        ft_health_on_result(&f->h, FTRPC_ECONNREFUSED, 0, now(f));
    }
    assert_true(ft_health_failure_ratio(&f->h, now(f)) > 0.999);
    /* no samples for one time constant: decays by e */
    advance_ms(f, 1000);
    double v = ft_health_failure_ratio(&f->h, now(f));
    assert_true(v > 0.367 && v < 0.369);
    /* successes pull it down with their time weight: 1 s of them every ms leaves ~e^-1 */
    for (int i = 0; i < 1000; i++) {
        advance_ms(f, 1);
        ft_health_on_result(&f->h, 0, 100, now(f));
    }
    v = ft_health_failure_ratio(&f->h, now(f));
    assert_true(v > 0.13 && v < 0.14); /* 0.368 x e^-1 */
    destroy(f);

    /* a busy endpoint: one failure among successes a millisecond apart barely counts */
    fixture *g = make(&o);
    for (int i = 0; i < 100; i++) {
        advance_ms(g, 1);
        ft_health_on_result(&g->h, i == 50 ? FTRPC_EINTERNAL : 3001, 100, now(g));
    }
    v = ft_health_failure_ratio(&g->h, now(g));
    assert_true(v > 0.0005 && v < 0.001); /* (1 - e^-0.001) x e^-0.049 */
    ft_health_on_result(&g->h, FTRPC_ECANCELED, 100, now(g) + FT_NS_PER_MS);
    assert_true(ft_health_failure_ratio(&g->h, now(g)) == v);
    destroy(g);
}

static void state_names_are_stable(void **s)
{
    assert_string_equal(ft_health_state_name(FT_HEALTH_ACTIVE), "ACTIVE");
    assert_string_equal(ft_health_state_name(FT_HEALTH_TIMEOUT), "TIMEOUT");
    assert_string_equal(ft_health_state_name(FT_HEALTH_SUSPENDED), "SUSPENDED");
    assert_string_equal(ft_health_state_name(FT_HEALTH_PROBING), "PROBING");
}

/* WSO2's example 1 (a failover endpoint's child: markForSuspension errorCodes for timeouts and
 * closed connections, retriesBeforeSuspension 3, retryDelay 10; suspendOnFailure initialDuration
 * 1000, progressionFactor 2, maximumDuration 64000) with "for all the other errors, it will be
 * marked as Suspended": an EINTERNAL suspends at the first call, at 1 s then 2 s; a business
 * error, a neutral code and a mark code do not. */
static const ft_health_options WSO2_EXAMPLE1 = {
    .mark_codes = {FTRPC_ERPCTIMEDOUT, FTRPC_EFAILEDSOCKET, FTRPC_EEOF},
    .retries_before_suspension = 3,
    .retry_delay_ms = 10,
    .initial_duration_ms = 1000,
    .progression_factor = 2,
    .maximum_duration_ms = 64000,
    .suspend_other_errors = true,
};

static void wso2_other_errors_suspend_at_the_first_call(void **s)
{
    fixture *f = make(&WSO2_EXAMPLE1);
    result(f, 2002);            /* a business error: the endpoint answered */
    result(f, FTRPC_ECANCELED); /* neutral */
    assert_int_equal(state(f), FT_HEALTH_ACTIVE);
    result(f, FTRPC_ERPCTIMEDOUT); /* a mark code: TIMEOUT, not suspended */
    assert_int_equal(state(f), FT_HEALTH_TIMEOUT);
    result(f, 0);
    result(f, FTRPC_EINTERNAL);
    assert_int_equal(state(f), FT_HEALTH_SUSPENDED);
    assert_int_equal(ft_health_usable_in_ns(&f->h, now(f)), MS(1000));
    advance_ms(f, 1000);
    assert_int_equal(ft_health_try_acquire(&f->h, now(f)), FT_HEALTH_GRANTED_PROBE);
    result(f, FTRPC_ELIMIT); /* overload too, in this profile */
    assert_int_equal(ft_health_usable_in_ns(&f->h, now(f)), MS(2000));
    destroy(f);
    /* ftrpc's default: the same error leaves the endpoint to the breaker */
    ft_health_options dflt = WSO2_EXAMPLE1;
    dflt.suspend_other_errors = false;
    fixture *g = make(&dflt);
    for (int i = 0; i < 19; i++)
        result(g, FTRPC_EINTERNAL);
    assert_int_equal(state(g), FT_HEALTH_ACTIVE);
    destroy(g);
}

/* A per-endpoint non-retry code (WSO2: a disabled error code puts the endpoint into Timeout): the
 * endpoint goes to TIMEOUT with its retry delay, however often it comes, and a success clears it.
 */
static void non_retry_code_puts_the_endpoint_in_timeout_and_never_suspends(void **s)
{
    ft_health_options o = {.retry_delay_ms = 50,
                           .timeout_codes = {FTRPC_EINTERNAL},
                           .suspend_other_errors = true,
                           .breaker = {.error_ratio = FT_BREAKER_OFF}};
    fixture *f = make(&o);
    for (int i = 0; i < 5; i++) {
        result(f, FTRPC_EINTERNAL);
        assert_int_equal(state(f), FT_HEALTH_TIMEOUT);
        assert_false(ft_health_usable(&f->h, now(f)));
        advance_ms(f, 50);
        assert_true(ft_health_usable(&f->h, now(f)));
    }
    result(f, 0);
    assert_int_equal(state(f), FT_HEALTH_ACTIVE);
    result(f, FTRPC_ELIMIT); /* another error still suspends under suspend_other_errors */
    assert_int_equal(state(f), FT_HEALTH_SUSPENDED);
    destroy(f);
}

/* WSO2's OFF: no call is let through, not even by the all-unusable fallback; results of calls
 * sent before are ignored; ON starts afresh. */
/* A server's pushback: nothing is granted until the hold ends, not even by the all-unusable
 * fallback, and the state is not touched (a hold is not a suspension); a later hold extends it,
 * an earlier one does not shorten it. */
static void a_hold_denies_every_grant_until_it_ends_and_leaves_the_state(void **s)
{
    (void)s;
    fixture *f = make(NULL);
    ft_health_hold(&f->h, now(f) + MS(100));
    assert_int_equal(state(f), FT_HEALTH_ACTIVE);
    assert_false(ft_health_usable(&f->h, now(f)));
    assert_true(ft_health_held(&f->h, now(f)));
    assert_int_equal(ft_health_usable_in_ns(&f->h, now(f)), MS(100));
    assert_int_equal(ft_health_try_acquire(&f->h, now(f)), FT_HEALTH_DENIED);
    assert_int_equal(ft_health_acquire_anyway(&f->h, now(f)), FT_HEALTH_DENIED);
    ft_health_hold(&f->h, now(f) + MS(50)); /* earlier: no change */
    assert_int_equal(ft_health_usable_in_ns(&f->h, now(f)), MS(100));
    advance_ms(f, 100);
    assert_true(ft_health_usable(&f->h, now(f)));
    assert_int_equal(ft_health_try_acquire(&f->h, now(f)), FT_HEALTH_GRANTED);
    ft_health_hold(&f->h, now(f) + MS(10));
    ft_health_hold(&f->h, now(f) + MS(30)); /* later: extends */
    advance_ms(f, 10);
    assert_false(ft_health_usable(&f->h, now(f)));
    advance_ms(f, 20);
    assert_true(ft_health_usable(&f->h, now(f)));
    assert_int_equal(state(f), FT_HEALTH_ACTIVE);
    destroy(f);
}

/* A first attempt that finds every endpoint held goes to the one whose hold ends first
 * (call.c): ft_health_try_acquire_past_hold passes the hold, and only the hold: the state still
 * decides (a suspension, a probe taken, OFF). */
static void a_grant_past_the_hold_still_follows_the_state(void **s)
{
    (void)s;
    fixture *f = make(NULL);
    ft_health_hold(&f->h, now(f) + MS(100));
    assert_int_equal(ft_health_try_acquire(&f->h, now(f)), FT_HEALTH_DENIED);
    assert_int_equal(ft_health_try_acquire_past_hold(&f->h, now(f)), FT_HEALTH_GRANTED);
    assert_true(ft_health_held(&f->h, now(f))); /* the grant does not end the hold */
    assert_int_equal(state(f), FT_HEALTH_ACTIVE);
    result(f, FTRPC_ECONNREFUSED); /* a suspend code */
    assert_int_equal(state(f), FT_HEALTH_SUSPENDED);
    assert_int_equal(ft_health_try_acquire_past_hold(&f->h, now(f)), FT_HEALTH_DENIED);
    advance_ms(f, 100000); /* past the suspension and the hold */
    ft_health_hold(&f->h, now(f) + MS(100));
    assert_int_equal(ft_health_try_acquire_past_hold(&f->h, now(f)), FT_HEALTH_GRANTED_PROBE);
    assert_int_equal(ft_health_try_acquire_past_hold(&f->h, now(f)),
                     FT_HEALTH_DENIED); /* one probe */
    ft_health_switch(&f->h, true);
    assert_int_equal(ft_health_try_acquire_past_hold(&f->h, now(f)), FT_HEALTH_DENIED);
    destroy(f);
}

/* When the state denies that first attempt, call.c asks ft_health_acquire_anyway_past_hold: the
 * all-unusable fallback's grant past the hold (a hold adds no stop of its own); OFF stays denied.
 */
static void the_fallback_past_the_hold_takes_a_suspended_endpoint_but_not_off(void **s)
{
    (void)s;
    fixture *f = make(NULL);
    result(f, FTRPC_ECONNREFUSED);
    assert_int_equal(state(f), FT_HEALTH_SUSPENDED);
    ft_health_hold(&f->h, now(f) + MS(100));
    assert_int_equal(ft_health_acquire_anyway(&f->h, now(f)), FT_HEALTH_DENIED);
    assert_int_equal(ft_health_acquire_anyway_past_hold(&f->h, now(f)), FT_HEALTH_GRANTED_PROBE);
    assert_true(ft_health_held(&f->h, now(f))); /* the grant does not end the hold */
    ft_health_switch(&f->h, true);
    assert_int_equal(ft_health_acquire_anyway_past_hold(&f->h, now(f)), FT_HEALTH_DENIED);
    destroy(f);
}

static void off_is_never_granted_and_on_makes_it_active_afresh(void **s)
{
    fixture *f = make(NULL);
    result(f, FTRPC_ECONNREFUSED);
    assert_int_equal(state(f), FT_HEALTH_SUSPENDED);
    ft_health_switch(&f->h, true);
    assert_int_equal(state(f), FT_HEALTH_OFF);
    advance_ms(f, 100000);
    assert_false(ft_health_usable(&f->h, now(f)));
    assert_int_equal(ft_health_usable_in_ns(&f->h, now(f)), INT64_MAX);
    assert_int_equal(ft_health_try_acquire(&f->h, now(f)), FT_HEALTH_DENIED);
    assert_int_equal(ft_health_acquire_anyway(&f->h, now(f)), FT_HEALTH_DENIED);
    result(f, 0);
    result(f, FTRPC_ECONNREFUSED);
    assert_int_equal(state(f), FT_HEALTH_OFF);
    ft_health_switch(&f->h, false);
    assert_int_equal(state(f), FT_HEALTH_ACTIVE);
    assert_int_equal(ft_health_try_acquire(&f->h, now(f)), FT_HEALTH_GRANTED);
    result(f, FTRPC_ECONNREFUSED); /* a fresh history: the first suspension again */
    assert_int_equal(ft_health_usable_in_ns(&f->h, now(f)), MS(1000));
    assert_string_equal(ft_health_state_name(FT_HEALTH_OFF), "OFF");
    destroy(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(starts_active_and_usable_with_defaults),
        cmocka_unit_test(first_mark_code_suspends_with_default_retries),
        cmocka_unit_test(mark_code_moves_active_to_timeout_usable_after_retry_delay),
        cmocka_unit_test(timeout_without_retry_delay_stays_usable_for_an_earlier_clock_reading),
        cmocka_unit_test(timeout_suspends_after_retries_before_suspension_more_errors),
        cmocka_unit_test(success_in_timeout_returns_to_active_and_resets_count),
        cmocka_unit_test(business_error_in_timeout_counts_as_success),
        cmocka_unit_test(suspend_code_suspends_active_at_once),
        cmocka_unit_test(suspend_code_in_timeout_suspends_at_once),
        cmocka_unit_test(business_and_overload_errors_never_suspend),
        cmocka_unit_test(request_faults_count_as_answers_unless_listed),
        cmocka_unit_test(neutral_codes_change_nothing),
        cmocka_unit_test(suspended_is_unusable_until_its_duration_ends),
        cmocka_unit_test(suspension_end_lets_exactly_one_probe_through),
        cmocka_unit_test(probe_success_returns_to_active_and_resets_progression),
        cmocka_unit_test(suspension_grows_by_factor_until_max),
        cmocka_unit_test(probe_failing_with_other_error_resuspends),
        cmocka_unit_test(cancelled_probe_hands_the_probe_back_at_once),
        cmocka_unit_test(lost_probe_is_replaced_after_maximum_duration),
        cmocka_unit_test(late_results_while_suspended_are_ignored),
        cmocka_unit_test(suspend_codes_none_disables_immediate_suspension),
        cmocka_unit_test(no_suspension_keeps_endpoint_in_timeout),
        cmocka_unit_test(custom_codes_replace_the_defaults),
        cmocka_unit_test(suspension_duration_follows_formula),
        cmocka_unit_test(options_validation_rejects_bad_values),
        cmocka_unit_test(exactly_one_of_four_racing_threads_wins_the_probe),
        cmocka_unit_test(ewma_jumps_up_on_slow_sample_and_decays_with_time),
        cmocka_unit_test(failure_ratio_follows_recent_failures_with_the_ewma_time_weight),
        cmocka_unit_test(suspension_forgets_the_latency_figure_and_the_probe_measures_afresh),
        cmocka_unit_test(state_names_are_stable),
        cmocka_unit_test(wso2_other_errors_suspend_at_the_first_call),
        cmocka_unit_test(non_retry_code_puts_the_endpoint_in_timeout_and_never_suspends),
        cmocka_unit_test(off_is_never_granted_and_on_makes_it_active_afresh),
        cmocka_unit_test(a_hold_denies_every_grant_until_it_ends_and_leaves_the_state),
        cmocka_unit_test(a_grant_past_the_hold_still_follows_the_state),
        cmocka_unit_test(the_fallback_past_the_hold_takes_a_suspended_endpoint_but_not_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
