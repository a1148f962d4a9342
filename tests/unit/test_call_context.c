/* The served call's context (base/call_context.h): serials are never 0 and never repeat, on one
 * thread or across threads, and the "retries spent below" note matches only the served call it
 * names, on the thread that wrote it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>

#include "base/call_context.h"

enum { PER_THREAD = 1000, THREADS = 4 };

static void *take_serials(void *arg)
{
    uint64_t *out = arg;
    for (int i = 0; i < PER_THREAD; i++)
        out[i] = ft_call_context_new_serial();
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void serials_are_never_zero_and_never_repeat_across_threads(void **state)
{
    (void)state;
    uint64_t *all = test_calloc(THREADS * PER_THREAD, sizeof *all);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, take_serials, all + i * PER_THREAD), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    qsort(all, THREADS * PER_THREAD, sizeof *all, cmp_u64);
    assert_true(all[0] != 0);
    for (int i = 1; i < THREADS * PER_THREAD; i++)
        assert_true(all[i] != all[i - 1]);
    test_free(all);
}

static void *sees_note(void *arg)
{
    return (void *)(intptr_t)ft_call_context_retried(*(uint64_t *)arg);
}

static void a_note_names_one_served_call_on_its_own_thread(void **state)
{
    (void)state;
    uint64_t a = ft_call_context_new_serial(), b = ft_call_context_new_serial();
    assert_false(ft_call_context_retried(a));
    assert_false(ft_call_context_retried(0)); /* 0 is "no served call": never noted */
    ft_call_context_note_retried(a);
    assert_true(ft_call_context_retried(a));
    assert_false(ft_call_context_retried(b));
    ft_call_context_note_retried(0); /* "nothing to note" leaves the note alone */
    assert_true(ft_call_context_retried(a));
    pthread_t t;
    void *seen = (void *)1;
    assert_int_equal(pthread_create(&t, NULL, sees_note, &a), 0);
    pthread_join(t, &seen);
    assert_null(seen);               /* another thread's answers are not marked */
    ft_call_context_note_retried(b); /* one note a thread: the last */
    assert_false(ft_call_context_retried(a));
    assert_true(ft_call_context_retried(b));
}

/* A hold (pushback > 0) travels in the same note as chain-stop's -1: the last note wins, and a
 * note for another served call reads as no pushback. */
static void a_note_carries_a_hold_or_chain_stops_mark(void **state)
{
    (void)state;
    uint64_t a = ft_call_context_new_serial(), b = ft_call_context_new_serial();
    ft_call_context_note((ft_call_note){a, 25});
    assert_int_equal(ft_call_context_pushback(a), 25);
    assert_false(ft_call_context_retried(a)); /* a hold is not chain-stop's mark */
    assert_int_equal(ft_call_context_pushback(b), 0);
    ft_call_context_note((ft_call_note){0, 40}); /* serial 0: nothing to note */
    assert_int_equal(ft_call_context_pushback(a), 25);
    ft_call_context_note_retried(a);
    assert_int_equal(ft_call_context_pushback(a), -1);
    ft_call_context_note((ft_call_note){b, 7});
    assert_int_equal(ft_call_context_pushback(a), 0);
    assert_int_equal(ft_call_context_pushback(b), 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(serials_are_never_zero_and_never_repeat_across_threads),
        cmocka_unit_test(a_note_names_one_served_call_on_its_own_thread),
        cmocka_unit_test(a_note_carries_a_hold_or_chain_stops_mark),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
