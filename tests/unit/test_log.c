/* Logging: the sink gets exactly the messages at or above the level, formatted; the rate limiter
 * lets 10 lines a window through and reports how many it dropped. The limiter's window is tested
 * by moving its start back rather than by sleeping for a second. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/clock.h"
#include "base/log.h"

typedef struct captured {
    int count;
    int per_level[5];
    ftrpc_log_level last_level;
    char last[2048];
} captured;

static void capture(ftrpc_log_level level, const char *msg, void *arg)
{
    captured *c = arg;
    c->count++;
    c->per_level[level]++;
    c->last_level = level;
    strncpy(c->last, msg, sizeof c->last - 1);
}

static int teardown_sink(void **state)
{
    (void)state;
    ftrpc_log_set_sink(NULL, NULL);
    ftrpc_log_set_level(FTRPC_LOG_WARN);
    return 0;
}

static void emit_one_of_each(void)
{
    FT_DEBUG("debug %d", 0);
    FT_INFO("info %d", 1);
    FT_WARN("warn %d", 2);
    FT_ERROR("error %d", 3);
}

static void sink_receives_messages_at_or_above_the_level(void **state)
{
    (void)state;
    static const struct {
        ftrpc_log_level level;
        int want;
    } cases[] = {{FTRPC_LOG_DEBUG, 4},
                 {FTRPC_LOG_INFO, 3},
                 {FTRPC_LOG_WARN, 2},
                 {FTRPC_LOG_ERROR, 1},
                 {FTRPC_LOG_OFF, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        captured c;
        memset(&c, 0, sizeof c);
        ftrpc_log_set_sink(capture, &c);
        ftrpc_log_set_level(cases[i].level);
        emit_one_of_each();
        assert_int_equal(c.count, cases[i].want);
        for (int l = 0; l < 4; l++)
            assert_int_equal(c.per_level[l], l >= (int)cases[i].level ? 1 : 0);
    }
}

static void messages_are_formatted_and_long_ones_truncated(void **state)
{
    (void)state;
    captured c;
    memset(&c, 0, sizeof c);
    ftrpc_log_set_sink(capture, &c);
    ftrpc_log_set_level(FTRPC_LOG_DEBUG);
    FT_WARN("peer %s sent %d bytes", "1.2.3.4:5", 42);
    assert_string_equal(c.last, "peer 1.2.3.4:5 sent 42 bytes");
    assert_int_equal(c.last_level, FTRPC_LOG_WARN);
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    FT_ERROR("%s", big);
    assert_int_equal(c.count, 2);
    assert_true(strlen(c.last) < 2000);
    assert_true(strlen(c.last) > 500);
}

static void set_sink_swaps_the_sink_and_its_argument(void **state)
{
    (void)state;
    captured a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    ftrpc_log_set_level(FTRPC_LOG_WARN);
    ftrpc_log_set_sink(capture, &a);
    FT_WARN("one");
    ftrpc_log_set_sink(capture, &b);
    FT_WARN("two");
    assert_int_equal(a.count, 1);
    assert_string_equal(a.last, "one");
    assert_int_equal(b.count, 1);
    assert_string_equal(b.last, "two");
}

static void limiter_lets_ten_a_window_through_and_counts_the_rest(void **state)
{
    (void)state;
    ft_log_limiter lim;
    memset(&lim, 0, sizeof lim);
    int allowed = 0, dropped = 0;
    for (int i = 0; i < 25; i++) {
        int d = 0;
        if (ft_log_limiter_allow(&lim, &d)) allowed++;
        dropped += d;
    }
    assert_int_equal(allowed, 10);
    assert_int_equal(dropped, 0); /* reported only when a new window opens */
    /* the next window: the first line through carries the count of the 15 dropped */
    atomic_fetch_sub(&lim.window_start_ms, 1000);
    int d = -1;
    assert_true(ft_log_limiter_allow(&lim, &d));
    assert_int_equal(d, 15);
    allowed = 1;
    for (int i = 0; i < 20; i++) {
        d = 0;
        if (ft_log_limiter_allow(&lim, &d)) allowed++;
        assert_int_equal(d, 0);
    }
    assert_int_equal(allowed, 10);
    /* a window with nothing dropped reports zero */
    atomic_fetch_sub(&lim.window_start_ms, 1000);
    d = -1;
    assert_true(ft_log_limiter_allow(&lim, &d));
    assert_int_equal(d, 11);
    atomic_fetch_sub(&lim.window_start_ms, 1000);
    d = -1;
    assert_true(ft_log_limiter_allow(&lim, &d));
    assert_int_equal(d, 0);
}

typedef struct limiter_arg {
    ft_log_limiter *lim;
    int allowed;
} limiter_arg;

static void *hammer_limiter(void *arg)
{
    limiter_arg *a = arg;
    for (int i = 0; i < 2000; i++) {
        int d = 0;
        if (ft_log_limiter_allow(a->lim, &d)) a->allowed++;
    }
    return NULL;
}

static void limiter_allows_ten_in_total_across_threads(void **state)
{
    (void)state;
    ft_log_limiter lim;
    memset(&lim, 0, sizeof lim);
    int d = 0;
    assert_true(ft_log_limiter_allow(&lim, &d)); /* opens the window */
    /* keep the window fresh so that a slow run cannot cross into the next one */
    atomic_store(&lim.window_start_ms, ft_clock_real_ms() + 60000);
    enum { T = 4 };
    pthread_t t[T];
    limiter_arg args[T];
    for (int i = 0; i < T; i++) {
        args[i] = (limiter_arg){&lim, 0};
        assert_int_equal(pthread_create(&t[i], NULL, hammer_limiter, &args[i]), 0);
    }
    int allowed = 1;
    for (int i = 0; i < T; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        allowed += args[i].allowed;
    }
    assert_int_equal(allowed, 10);
    assert_int_equal(atomic_load(&lim.dropped), T * 2000 - 9);
}

static void ratelimited_macro_passes_ten_lines_per_call_site(void **state)
{
    (void)state;
    captured c;
    memset(&c, 0, sizeof c);
    ftrpc_log_set_sink(capture, &c);
    ftrpc_log_set_level(FTRPC_LOG_WARN);
    for (int i = 0; i < 50; i++)
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "bad frame %d", i);
    assert_int_equal(c.count, 10);
    assert_string_equal(c.last, "bad frame 9");
    /* below the level nothing is counted or written */
    for (int i = 0; i < 50; i++)
        FT_LOG_RATELIMITED(FTRPC_LOG_DEBUG, "quiet %d", i);
    assert_int_equal(c.count, 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(sink_receives_messages_at_or_above_the_level, teardown_sink),
        cmocka_unit_test_teardown(messages_are_formatted_and_long_ones_truncated, teardown_sink),
        cmocka_unit_test_teardown(set_sink_swaps_the_sink_and_its_argument, teardown_sink),
        cmocka_unit_test(limiter_lets_ten_a_window_through_and_counts_the_rest),
        cmocka_unit_test(limiter_allows_ten_in_total_across_threads),
        cmocka_unit_test_teardown(ratelimited_macro_passes_ten_lines_per_call_site, teardown_sink),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
