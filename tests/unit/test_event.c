/* ft_event: set before wait, timeouts, and wake-ups from another thread. FTRPC_SPIN_US is read
 * once per process, so main runs the group with the default spin and then re-runs this binary
 * with FTRPC_SPIN_US=0 (sleep at once) and with a spin far longer than the timeouts used. */
#include <pthread.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/clock.h"
#include "base/event.h"
#include "ftrpc/common.h"

extern char **environ;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void spin_comes_from_the_environment(void **state)
{
    (void)state;
    const char *e = getenv("FTRPC_SPIN_US");
    int64_t want = e ? atoll(e) * 1000 : (sysconf(_SC_NPROCESSORS_ONLN) > 2 ? 20000 : 0);
    assert_int_equal(ft_event_spin_ns(), want);
    assert_int_equal(ft_event_spin_ns(), want); /* read once, stable */
}

static void set_before_wait_returns_at_once(void **state)
{
    (void)state;
    ft_event ev;
    ft_event_init(&ev);
    ft_event_set(&ev);
    int64_t t0 = ft_now_ns();
    assert_int_equal(ft_event_wait(&ev, -1), 0);
    assert_int_equal(ft_event_wait(&ev, 0), 0);
    assert_true(ft_now_ns() - t0 < 1000 * FT_NS_PER_MS); /* generous: shared, loaded CI cores */
}

typedef struct timeout_case {
    int timeout_ms;
} timeout_case;

static void wait_times_out_after_about_the_timeout(void **state)
{
    (void)state;
    /* even when the spin is longer than the timeout, the timeout wins */
    static const timeout_case cases[] = {{0}, {1}, {10}, {40}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ft_event ev;
        ft_event_init(&ev);
        int64_t t0 = ft_now_ns();
        assert_int_equal(ft_event_wait(&ev, cases[i].timeout_ms * FT_NS_PER_MS),
                         FTRPC_ERPCTIMEDOUT);
        int64_t took = ft_now_ns() - t0;
        assert_true(took >= cases[i].timeout_ms * FT_NS_PER_MS);
        /* generous for loaded machines, yet far below the 2 s spin of the last configuration */
        assert_true(took < (cases[i].timeout_ms + 1000) * FT_NS_PER_MS);
        /* a set after the timeout is harmless and a later wait sees it */
        ft_event_set(&ev);
        assert_int_equal(ft_event_wait(&ev, 0), 0);
    }
}

typedef struct setter_arg {
    ft_event *ev;
    int delay_ms;
} setter_arg;

static void *set_later(void *arg)
{
    setter_arg *a = arg;
    if (a->delay_ms) sleep_ms(a->delay_ms);
    ft_event_set(a->ev);
    return NULL;
}

static void set_from_another_thread_wakes_a_sleeping_waiter(void **state)
{
    (void)state;
    static const int delays_ms[] = {0, 1, 20};
    for (size_t i = 0; i < sizeof delays_ms / sizeof delays_ms[0]; i++) {
        for (int with_timeout = 0; with_timeout < 2; with_timeout++) {
            ft_event ev;
            ft_event_init(&ev);
            setter_arg a = {&ev, delays_ms[i]};
            pthread_t t;
            int64_t t0 = ft_now_ns();
            assert_int_equal(pthread_create(&t, NULL, set_later, &a), 0);
            assert_int_equal(ft_event_wait(&ev, with_timeout ? 5000 * FT_NS_PER_MS : -1), 0);
            assert_true(ft_now_ns() - t0 < 2000 * FT_NS_PER_MS);
            assert_int_equal(pthread_join(t, NULL), 0);
        }
    }
}

static void racing_set_and_timeout_never_lose_a_wakeup(void **state)
{
    (void)state;
    /* the setter lands around the deadline: either result is fine, but a 0 must mean set */
    for (int i = 0; i < 200; i++) {
        ft_event ev;
        ft_event_init(&ev);
        setter_arg a = {&ev, 0};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, set_later, &a), 0);
        int rc = ft_event_wait(&ev, (i % 3) * 50000);
        assert_true(rc == 0 || rc == FTRPC_ERPCTIMEDOUT);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_int_equal(atomic_load(&ev.state), 1);
        assert_int_equal(ft_event_wait(&ev, -1), 0); /* set is sticky */
    }
}

static int run_group(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(spin_comes_from_the_environment),
        cmocka_unit_test(set_before_wait_returns_at_once),
        cmocka_unit_test(wait_times_out_after_about_the_timeout),
        cmocka_unit_test(set_from_another_thread_wakes_a_sleeping_waiter),
        cmocka_unit_test(racing_set_and_timeout_never_lose_a_wakeup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Re-runs this binary with FTRPC_SPIN_US set; returns its exit status (nonzero on failure). */
static int rerun_with_spin(const char *spin_us)
{
    setenv("FTRPC_SPIN_US", spin_us, 1);
    printf("--- FTRPC_SPIN_US=%s ---\n", spin_us);
    fflush(stdout);
    char *argv[] = {"test_event", NULL};
    /* the path, not /proc/self/exe itself: under valgrind the latter is valgrind's own tool binary,
     * while readlink gives the program it runs */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 1;
    self[n] = '\0';
    pid_t pid;
    int rc = posix_spawn(&pid, self, NULL, NULL, argv, environ);
    unsetenv("FTRPC_SPIN_US");
    if (rc != 0) return 1;
    int status;
    if (waitpid(pid, &status, 0) != pid) return 1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int main(void)
{
    if (getenv("FTRPC_SPIN_US")) return run_group();
    int failed = run_group();
    failed += rerun_with_spin("0");
    failed += rerun_with_spin("2000000"); /* 2 s: far beyond every timeout above */
    return failed ? 1 : 0;
}
