/* Adaptive throttling (client/throttle.h): the SRE book's formula, k = 2 letting half the attempts
 * be refused before anything is shed, locally rejected calls counting as requests, the window
 * sliding back to 0, off, and validation. Time is an ft_manual_clock; the random draw is chosen. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <time.h>

#include "base/clock.h"
#include "base/rand.h"
#include "client/throttle.h"
#include "ftrpc/common.h"

#define MS(x) ((int64_t)(x)*FT_NS_PER_MS)

typedef struct fixture {
    ft_manual_clock clock;
    ft_throttle t;
} fixture;

static int64_t now(fixture *f)
{
    return ft_clock_now_ns(&f->clock.base);
}

static fixture *make(const ft_throttle_options *o)
{
    fixture *f = test_calloc(1, sizeof(*f));
    ft_manual_clock_init(&f->clock, MS(123456000)); /* on a bucket boundary */
    assert_int_equal(ft_throttle_init(&f->t, o), 0);
    return f;
}

static void destroy(fixture *f)
{
    ft_throttle_fini(&f->t);
    test_free(f);
}

/* n calls (admitted whatever the draw: u close to 1), answered: `accepted` of them accepted, the
 * others refused for overload. */
static void traffic(fixture *f, int n, int accepted)
{
    for (int i = 0; i < n; i++) {
        assert_true(ft_throttle_admit(&f->t, now(f), 0.999999));
        ft_throttle_on_answer(&f->t, now(f), i < accepted);
    }
}

static void healthy_service_is_never_throttled(void **s)
{
    (void)s;
    fixture *f = make(NULL);
    traffic(f, 1000, 1000);
    assert_true(ft_throttle_probability(&f->t, now(f)) == 0);
    assert_true(ft_throttle_admit(&f->t, now(f), 0.0)); /* even the lowest draw */
    destroy(f);
}

static void k_two_sheds_nothing_until_half_are_refused(void **s)
{
    (void)s;
    fixture *f = make(NULL);
    traffic(f, 100, 50); /* 100 - 2 * 50 = 0 */
    assert_true(ft_throttle_probability(&f->t, now(f)) == 0);
    traffic(f, 100, 0); /* 200 - 2 * 50 = 100 over 201 */
    assert_float_equal(ft_throttle_probability(&f->t, now(f)), 100.0 / 201.0, 1e-9);
    destroy(f);
}

static void rejection_probability_follows_the_sre_formula(void **s)
{
    (void)s;
    /* table: requests, accepts, k -> max(0, (requests - k * accepts) / (requests + 1)) */
    static const struct {
        int requests, accepts;
        double k, p;
    } cases[] = {
        {1, 0, 2, 1.0 / 2}, {10, 0, 2, 10.0 / 11}, {10, 2, 2, 6.0 / 11},
        {10, 5, 2, 0},      {10, 2, 1, 8.0 / 11},  {10, 1, 3, 7.0 / 11},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ft_throttle_options o = {.k = cases[i].k};
        fixture *f = make(&o);
        traffic(f, cases[i].requests, cases[i].accepts);
        assert_float_equal(ft_throttle_probability(&f->t, now(f)), cases[i].p, 1e-9);
        destroy(f);
    }
}

static void rejected_calls_count_as_requests(void **s)
{
    (void)s;
    fixture *f = make(NULL);
    traffic(f, 10, 0);                                   /* p = 10/11 */
    assert_false(ft_throttle_admit(&f->t, now(f), 0.5)); /* rejected, and counted */
    assert_float_equal(ft_throttle_probability(&f->t, now(f)), 11.0 / 12.0, 1e-9);
    assert_true(ft_throttle_admit(&f->t, now(f), 0.99)); /* a draw above p goes through */
    destroy(f);
}

static void every_answered_attempt_is_a_request(void **s)
{
    (void)s;
    fixture *f = make(NULL);
    traffic(f, 4, 4);
    for (int i = 0; i < 12; i++) /* retries of admitted calls, refused for overload */
        ft_throttle_on_answer(&f->t, now(f), false);
    assert_float_equal(ft_throttle_probability(&f->t, now(f)), (16.0 - 8.0) / 17.0, 1e-9);
    destroy(f);
}

static void unanswered_attempts_count_for_nothing(void **s)
{
    (void)s;
    fixture *f = make(NULL);
    for (int i = 0; i < 100; i++) /* admitted, and never answered (refused connects, timeouts) */
        assert_true(ft_throttle_admit(&f->t, now(f), 0.0));
    assert_true(ft_throttle_probability(&f->t, now(f)) == 0);
    destroy(f);
}

static void window_slides_back_to_zero(void **s)
{
    (void)s;
    fixture *f = make(NULL); /* 30 s in 1 s buckets */
    traffic(f, 100, 0);
    ft_manual_clock_advance(&f->clock, MS(15000));
    traffic(f, 10, 10);
    double mid = ft_throttle_probability(&f->t, now(f));
    assert_float_equal(mid, (110.0 - 20.0) / 111.0, 1e-9);
    ft_manual_clock_advance(&f->clock, MS(15000)); /* the refused hundred leave the window */
    assert_true(ft_throttle_probability(&f->t, now(f)) == 0);
    ft_manual_clock_advance(&f->clock, MS(30000)); /* and everything else */
    assert_true(ft_throttle_admit(&f->t, now(f), 0.0));
    destroy(f);
}

/* The window's counts straight from the ring: what the throttle's running sums must equal. */
static double ring_probability(const ft_throttle *t, int64_t now_ns)
{
    int64_t e = now_ns / t->bucket_ns; /* the test's times are positive */
    double requests = 0, accepts = 0;
    for (int i = 0; i < FT_THROTTLE_BUCKETS; i++)
        if (t->ring[i].epoch > e - FT_THROTTLE_BUCKETS && t->ring[i].epoch <= e) {
            requests += t->ring[i].requests;
            accepts += t->ring[i].accepts;
        }
    double p = (requests - t->k * accepts) / (requests + 1);
    return p > 0 ? p : 0;
}

/* A clock step chosen by r: within a bucket, across one, across the window, and back (a monotonic
 * clock never goes back, a caller's now_ns might). */
static int64_t random_step(uint64_t r)
{
    static const int64_t steps_ms[] = {0,    1,     400,   999, 1000,  1500,
                                       7000, 29000, 31000, -1,  -1500, -31000};
    return MS(steps_ms[r % (sizeof steps_ms / sizeof steps_ms[0])]);
}

/* n random steps from seed: answers, admits and clock steps; each admit checked against the ring
 * (admitted exactly when u >= the ring's probability just before it) and, now and then, the
 * probability too. With `phases`, the answers come in phases of 2,000 steps where 1 in 8, then 7
 * in 8, are refusals (probability 0, then not); without, 2 in 3 are. Counts the admits at
 * probability 0 and the rejections. */
static void random_traffic(fixture *f, uint64_t seed, int n, int phases, int *at_zero,
                           int *rejected)
{
    ft_rand rng;
    ft_rand_seed(&rng, seed);
    int64_t t = now(f);
    *at_zero = *rejected = 0;
    for (int i = 0; i < n; i++) {
        uint64_t r = ft_rand_next(&rng);
        int refused_in_8 = !phases ? 0 : (i / 2000) % 2 ? 7 : 1;
        switch (r % 4) {
        case 0:
        case 1:
            ft_throttle_on_answer(
                &f->t, t, phases ? (r >> 8) % 8 >= (uint64_t)refused_in_8 : (r >> 8) % 3 == 0);
            break;
        case 2: {
            double u = (double)(r >> 11) / 9007199254740992.0;
            double p = ring_probability(&f->t, t);
            bool got = ft_throttle_admit(&f->t, t, u);
            assert_int_equal(got, u >= p);
            *at_zero += got && p == 0;
            *rejected += !got;
            break;
        }
        default:
            t += random_step(r >> 8);
            break;
        }
        if ((r >> 20) % 4 == 0) /* not after every step: time may move away and back between */
            assert_float_equal(ft_throttle_probability(&f->t, t), ring_probability(&f->t, t), 1e-9);
    }
}

/* The probability is kept as running sums, summed again from the ring only when time moves to
 * another bucket: after any mix of admits, answers and clock steps, it equals the ring's. */
static void running_sums_match_the_ring_whatever_the_clock_does(void **s)
{
    (void)s;
    fixture *f = make(NULL); /* 30 s in 1 s buckets */
    int at_zero, rejected;
    random_traffic(f, 26, 20000, 0, &at_zero, &rejected);
    destroy(f);
}

/* The admission that takes no lock (the zero hint) decides as the locked path would: in phases
 * where the service refuses little (probability 0: the hint admits) and much (the lock decides),
 * with the clock stepping forward and back, every admit is u >= the ring's probability. */
static void admit_matches_the_ring_whatever_the_clock_does(void **s)
{
    (void)s;
    fixture *f = make(NULL); /* 30 s in 1 s buckets */
    int at_zero, rejected;
    random_traffic(f, 2612, 40000, 1, &at_zero, &rejected);
    assert_true(at_zero > 1000 && rejected > 1000); /* both paths were taken */
    destroy(f);
}

typedef struct admit_arg {
    fixture *f;
    int64_t now;
    atomic_int done;
} admit_arg;

static void *admit_thread(void *p)
{
    admit_arg *a = p;
    (void)ft_throttle_admit(&a->f->t, a->now, 0.0);
    atomic_store(&a->done, 1);
    return NULL;
}

/* A healthy service's call is admitted without the throttle's lock (every call asks, on every IO
 * and user thread): with the lock held elsewhere, admit still returns. The wait is bounded: if
 * admit blocked, the test fails after 5 s and then lets it go. */
static void healthy_admit_takes_no_lock(void **s)
{
    (void)s;
    fixture *f = make(NULL);
    traffic(f, 100, 100);
    assert_true(ft_throttle_admit(&f->t, now(f), 0.0)); /* now's bucket is summed: the hint */
    admit_arg a = {.f = f, .now = now(f)};
    atomic_init(&a.done, 0);
    pthread_mutex_lock(&f->t.lock);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, admit_thread, &a), 0);
    for (int i = 0; i < 5000 && !atomic_load(&a.done); i++)
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    int done = atomic_load(&a.done);
    pthread_mutex_unlock(&f->t.lock);
    pthread_join(th, NULL);
    assert_true(done);
    destroy(f);
}

static void off_admits_everything(void **s)
{
    (void)s;
    ft_throttle_options o = {.k = FT_THROTTLE_OFF};
    fixture *f = make(&o);
    for (int i = 0; i < 100; i++)
        assert_true(ft_throttle_admit(&f->t, now(f), 0.0));
    assert_true(ft_throttle_probability(&f->t, now(f)) == 0);
    destroy(f);
}

static void bad_options_are_refused(void **s)
{
    (void)s;
    static const ft_throttle_options bad[] = {
        {.k = 0.5}, {.k = -2}, {.k = 1e9}, {.window_ms = 10}, {.window_ms = -1}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(ft_throttle_options_validate(&bad[i]), FTRPC_EINVAL);
    ft_throttle_options ok = {.k = 1, .window_ms = 30};
    assert_int_equal(ft_throttle_options_validate(&ok), 0);
    assert_int_equal(ft_throttle_options_validate(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(healthy_service_is_never_throttled),
        cmocka_unit_test(k_two_sheds_nothing_until_half_are_refused),
        cmocka_unit_test(rejection_probability_follows_the_sre_formula),
        cmocka_unit_test(rejected_calls_count_as_requests),
        cmocka_unit_test(every_answered_attempt_is_a_request),
        cmocka_unit_test(unanswered_attempts_count_for_nothing),
        cmocka_unit_test(window_slides_back_to_zero),
        cmocka_unit_test(running_sums_match_the_ring_whatever_the_clock_does),
        cmocka_unit_test(admit_matches_the_ring_whatever_the_clock_does),
        cmocka_unit_test(healthy_admit_takes_no_lock),
        cmocka_unit_test(off_admits_everything),
        cmocka_unit_test(bad_options_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
