/* ftrpc_call_cancel over real sockets: an async call cancelled before its attempt is sent (its
 * connection still opening), while its attempt waits on a slow server, while it waits out a retry
 * backoff, and after it completed. In each case the callback runs exactly once: with
 * FTRPC_ECANCELED when the cancel came first, without retry or fallback after it, and with the
 * call's own outcome when the call came first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

typedef struct outcome {
    atomic_int runs;
    int code;
    int attempts;
    int from_fallback;
    int64_t done_ms;
} outcome;

static void record(ftrpc_result *r, void *arg)
{
    outcome *o = arg;
    o->code = r->code;
    o->attempts = r->attempts;
    o->from_fallback = r->from_fallback;
    o->done_ms = h_now_ms();
    atomic_fetch_add(&o->runs, 1); /* last: the test reads the fields once it sees this */
}

static void fallback_answers(const ftrpc_fallback_input *in, ftrpc_fallback_output *out, void *arg)
{
    (void)in;
    (void)arg;
    out->response = ftrpc_buf_new();
    ftrpc_buf_append(out->response, "fallback", 8);
}

static ftrpc_client *client_for(const h_server *s, const ftrpc_client_options *base)
{
    char url[64];
    h_server_url(s, url, sizeof url);
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(url, base, &c), 0);
    return c;
}

/* Starts a call, cancels it after `cancel_after_ms` (0: at once), waits for its callback, and
 * checks it ran exactly once. */
static outcome call_and_cancel(ftrpc_client *c, int cancel_after_ms, int64_t *cancel_ms)
{
    outcome o = {0};
    ftrpc_call_id id = 0;
    assert_int_equal(
        ftrpc_call_async(c, "example.EchoService", "Echo", NULL, NULL, NULL, record, &o, &id), 0);
    assert_true(id != 0);
    if (cancel_after_ms) h_sleep_ms(cancel_after_ms);
    *cancel_ms = h_now_ms();
    assert_int_equal(ftrpc_call_cancel(c, id), 0);
    assert_true(h_wait_atomic_ge(&o.runs, 1, 5000 * H_VG));
    h_sleep_ms(50); /* a second run would come from the loop right after the first */
    assert_int_equal(atomic_load(&o.runs), 1);
    return o;
}

static void cancelled_before_its_attempt_is_sent(void **state)
{
    (void)state;
    h_server s;
    assert_int_equal(h_server_start(&s, NULL), 0);
    /* a fresh client: the call's connection is still opening when the cancel arrives */
    ftrpc_client *c = client_for(&s, &(ftrpc_client_options){.timeout_ms = 5000});
    int64_t at;
    outcome o = call_and_cancel(c, 0, &at);
    /* the cancel and the call share the loop's queue, in order: the call started, then ended */
    assert_int_equal(o.code, FTRPC_ECANCELED);
    ftrpc_client_free(c);
    assert_int_equal(h_server_stop(&s, 10000), 0);
}

static void cancelled_while_the_server_works_ends_at_once(void **state)
{
    (void)state;
    h_server s;
    const char *args[] = {"--delay-ms", "2000", NULL};
    assert_int_equal(h_server_start(&s, args), 0);
    ftrpc_fallback fb = {.kind = FTRPC_FALLBACK_ERRORS, .fn = fallback_answers};
    ftrpc_client *c = client_for(&s, &(ftrpc_client_options){.timeout_ms = 10000, .fallback = fb});
    int64_t at;
    outcome o = call_and_cancel(c, 100, &at);
    print_message("cancelled 100 ms into a 2 s handler: callback %lld ms after the cancel\n",
                  (long long)(o.done_ms - at));
    assert_int_equal(o.code, FTRPC_ECANCELED);
    assert_int_equal(o.attempts, 1);
    assert_int_equal(o.from_fallback, 0); /* the caller gave up: no answer in its place */
    assert_true(o.done_ms - at < 1000 * H_VG);
    ftrpc_client_free(c);
    h_server_kill(&s);
}

static void cancelled_during_a_retry_backoff_sends_no_retry(void **state)
{
    (void)state;
    h_server s;
    /* ELIMIT is retried; a 2 s backoff leaves the call waiting between its attempts */
    const char *args[] = {"--error-rate", "1", "--error-code", "2004", NULL};
    assert_int_equal(h_server_start(&s, args), 0);
    ftrpc_client *c = client_for(
        &s, &(ftrpc_client_options){.timeout_ms = 10000,
                                    .fail_mode = FTRPC_FAILTRY,
                                    .backoff = {.kind = FTRPC_BACKOFF_FIXED, .initial_ms = 2000}});
    int64_t at;
    outcome o = call_and_cancel(c, 300, &at);
    assert_int_equal(o.code, FTRPC_ECANCELED);
    assert_int_equal(o.attempts, 1);
    assert_true(o.done_ms - at < 1000 * H_VG);
    ftrpc_client_free(c);
    assert_int_equal(h_server_stop(&s, 10000), 0);
}

static void cancelled_after_it_completed_changes_nothing(void **state)
{
    (void)state;
    h_server s;
    assert_int_equal(h_server_start(&s, NULL), 0);
    ftrpc_client *c = client_for(&s, &(ftrpc_client_options){.timeout_ms = 5000});
    outcome o = {0};
    ftrpc_call_id id = 0;
    assert_int_equal(
        ftrpc_call_async(c, "example.EchoService", "Echo", NULL, NULL, NULL, record, &o, &id), 0);
    assert_true(h_wait_atomic_ge(&o.runs, 1, 5000 * H_VG));
    assert_int_equal(o.code, 0);
    assert_int_equal(ftrpc_call_cancel(c, id), 0);
    h_sleep_ms(50);
    assert_int_equal(atomic_load(&o.runs), 1);
    assert_int_equal(o.code, 0);
    /* ids that are no handle */
    assert_int_equal(ftrpc_call_cancel(c, 0), FTRPC_EINVAL);
    assert_int_equal(ftrpc_call_cancel(c, (ftrpc_call_id)1 << 16 | 0xffff), FTRPC_EINVAL);
    assert_int_equal(ftrpc_call_cancel(NULL, id), FTRPC_EINVAL);
    ftrpc_client_free(c);
    assert_int_equal(h_server_stop(&s, 10000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cancelled_before_its_attempt_is_sent),
        cmocka_unit_test(cancelled_while_the_server_works_ends_at_once),
        cmocka_unit_test(cancelled_during_a_retry_backoff_sends_no_retry),
        cmocka_unit_test(cancelled_after_it_completed_changes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
