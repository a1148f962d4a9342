/* The call API's contracts over real sockets: EIOTHREAD for a sync call on an IO thread, business
 * vs RPC errors, deadlines (client side, sent on the wire, and honoured by a queued worker
 * request), per-method concurrency limits, ESTOPPED on client free, large payloads, and a
 * request frame larger than max_unwritten_bytes failing at once with EREQUEST. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

/* ---- an in-process server with one method ---- */

typedef struct inproc {
    ftrpc_server *server;
    ftrpc_client *client;
} inproc;

static void inproc_start(inproc *p, ftrpc_handler_cb h, const ftrpc_method_options *mo,
                         int worker_threads, int timeout_ms)
{
    assert_int_equal(
        ftrpc_server_new(&(ftrpc_server_options){.worker_threads = worker_threads}, &p->server), 0);
    assert_int_equal(ftrpc_server_add_method(p->server, "test.Svc", "M", h, NULL, mo), 0);
    assert_int_equal(ftrpc_server_start(p->server, "127.0.0.1:0"), 0);
    char url[64];
    snprintf(url, sizeof url, "127.0.0.1:%d", ftrpc_server_port(p->server));
    /* adaptive throttling off: the ELIMIT cases count the server's answers, which a client that
     * sheds after a few of them (its default, docs/overload-client.md) would not all send */
    assert_int_equal(
        ftrpc_client_new(url, &(ftrpc_client_options){.timeout_ms = timeout_ms, .throttle_k = -1},
                         &p->client),
        0);
}

static void inproc_stop(inproc *p)
{
    ftrpc_client_free(p->client);
    assert_int_equal(ftrpc_server_stop(p->server, 3000 * H_VG), 0);
    ftrpc_server_free(p->server);
}

static void echo(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    ftrpc_server_call_reply(call, ftrpc_server_call_request(call),
                            ftrpc_server_call_attachment(call));
}

/* ---- EIOTHREAD ---- */

static ftrpc_client *cb_client;
static atomic_int cb_done, cb_rc, cb_code;
static _Atomic int64_t cb_took_us;

static void call_sync_from_callback(ftrpc_result *r, void *arg)
{
    (void)r;
    (void)arg;
    ftrpc_result inner;
    int64_t t0 = h_now_us();
    atomic_store(&cb_rc, ftrpc_call(cb_client, "test.Svc", "M", NULL, NULL, NULL, &inner));
    atomic_store(&cb_took_us, h_now_us() - t0);
    atomic_store(&cb_code, inner.code);
    ftrpc_result_fini(&inner);
    atomic_store(&cb_done, 1);
}

static void sync_call_on_an_io_thread_fails_at_once_with_eiothread(void **state)
{
    (void)state;
    inproc p;
    inproc_start(&p, echo, NULL, 0, 2000);
    cb_client = p.client;
    assert_int_equal(ftrpc_call_async(p.client, "test.Svc", "M", NULL, NULL, NULL,
                                      call_sync_from_callback, NULL, NULL),
                     0);
    assert_true(h_wait_atomic_ge(&cb_done, 1, 5000 * H_VG));
    assert_int_equal(atomic_load(&cb_rc), FTRPC_EIOTHREAD);
    assert_int_equal(atomic_load(&cb_code), FTRPC_EIOTHREAD);
    assert_true(atomic_load(&cb_took_us) < 50000 * H_VG);
    inproc_stop(&p);
}

/* ---- error kinds, from an echo-server child ---- */

static void call_child(const char *const *args, int timeout_ms, size_t payload, int *rc,
                       ftrpc_result *r, int64_t *took_ms)
{
    h_server srv;
    assert_int_equal(h_server_start(&srv, args), 0);
    ftrpc_client *client = h_client_of(&srv, timeout_ms);
    assert_non_null(client);
    ftrpc_buf *req = h_pattern_buf(payload, 7);
    int64_t t0 = h_now_ms();
    *rc = ftrpc_call(client, "example.EchoService", "Echo", req, NULL, NULL, r);
    *took_ms = h_now_ms() - t0;
    ftrpc_buf_free(req);
    ftrpc_client_free(client);
    h_server_kill(&srv);
}

/* A handler's error code reaches the caller as a business error from FTRPC_BUSINESS_CODE_MIN up,
 * and as the RPC error it names in brpc's framework range (table-driven). */
static void handler_error_codes_are_business_or_rpc_errors_by_range(void **state)
{
    (void)state;
    static const struct {
        const char *code;
        int rc;
        ftrpc_result_kind kind;
        int result_code;
    } cases[] = {
        {"3001", FTRPC_EBUSINESS, FTRPC_RESULT_BUSINESS_ERROR, 3001},
        {"-5000", FTRPC_EBUSINESS, FTRPC_RESULT_BUSINESS_ERROR, -5000},
        {"2004", FTRPC_ELIMIT, FTRPC_RESULT_RPC_ERROR, FTRPC_ELIMIT},
        {"2001", FTRPC_EINTERNAL, FTRPC_RESULT_RPC_ERROR, FTRPC_EINTERNAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *args[] = {"--error-rate", "1", "--error-code", cases[i].code, NULL};
        int rc;
        int64_t took;
        ftrpc_result r;
        call_child(args, 2000 * H_VG, 10, &rc, &r, &took);
        assert_int_equal(rc, cases[i].rc);
        assert_int_equal(r.kind, cases[i].kind);
        assert_int_equal(r.code, cases[i].result_code);
        assert_string_equal(r.error_text, "injected fault");
        ftrpc_result_fini(&r);
    }
}

static void slow_reply_times_out_at_the_call_deadline(void **state)
{
    (void)state;
    /* under memcheck the reply is delayed 10 times longer, so that a late timer still fires
     * first; the 100 ms deadline stays */
    char delay[16];
    snprintf(delay, sizeof delay, "%d", 300 * H_VG);
    const char *args[] = {"--delay-ms", delay, NULL};
    int rc;
    int64_t took;
    ftrpc_result r;
    call_child(args, 100, 10, &rc, &r, &took);
    assert_int_equal(rc, FTRPC_ERPCTIMEDOUT);
    assert_int_equal(r.kind, FTRPC_RESULT_RPC_ERROR);
    print_message("timed out after %lld ms\n", (long long)took);
    assert_true(took >= 100 && took < 100 + 300 * H_VG);
    ftrpc_result_fini(&r);
}

static void large_payload_round_trips_byte_exact(void **state)
{
    (void)state;
    int rc;
    int64_t took;
    ftrpc_result r;
    call_child(NULL, 10000 * H_VG, (size_t)8 << 20, &rc, &r, &took);
    assert_int_equal(rc, 0);
    assert_true(h_pattern_check(r.response, (size_t)8 << 20, 7));
    ftrpc_result_fini(&r);
}

static void request_larger_than_max_unwritten_bytes_fails_as_a_bad_request(void **state)
{
    (void)state;
    h_server srv;
    assert_int_equal(h_server_start(&srv, NULL), 0);
    char url[64];
    h_server_url(&srv, url, sizeof url);
    ftrpc_client *client = NULL;
    assert_int_equal(
        ftrpc_client_new(url, &(ftrpc_client_options){.max_unwritten_bytes = 1024}, &client), 0);
    ftrpc_buf *req = h_pattern_buf(65536, 1);
    ftrpc_result r;
    /* no connection could ever take it: a caller's error at once, not overload to retry */
    assert_int_equal(ftrpc_call(client, "example.EchoService", "Echo", req, NULL, NULL, &r),
                     FTRPC_EREQUEST);
    assert_int_equal(r.kind, FTRPC_RESULT_RPC_ERROR);
    assert_int_equal(r.attempts, 1);
    ftrpc_result_fini(&r);
    /* a small request still goes through on the same client */
    ftrpc_buf *small = h_pattern_buf(100, 1);
    assert_int_equal(ftrpc_call(client, "example.EchoService", "Echo", small, NULL, NULL, &r), 0);
    ftrpc_result_fini(&r);
    ftrpc_buf_free(small);
    ftrpc_buf_free(req);
    ftrpc_client_free(client);
    assert_int_equal(h_server_stop(&srv, 10000), 0);
}

/* ---- ESTOPPED on free ---- */

static atomic_int free_done, free_stopped;

static void on_free_done(ftrpc_result *r, void *arg)
{
    (void)arg;
    if (r->kind == FTRPC_RESULT_RPC_ERROR && r->code == FTRPC_ESTOPPED)
        atomic_fetch_add(&free_stopped, 1);
    atomic_fetch_add(&free_done, 1);
}

static void client_free_completes_calls_in_flight_with_estopped(void **state)
{
    (void)state;
    h_server srv;
    const char *args[] = {"--hang-rate", "1", NULL};
    assert_int_equal(h_server_start(&srv, args), 0);
    ftrpc_client *client = h_client_of(&srv, 10000 * H_VG);
    assert_non_null(client);
    assert_int_equal(h_echo_async(client, 50, on_free_done, NULL), 0);
    h_sleep_ms(50);
    int64_t t0 = h_now_ms();
    ftrpc_client_free(client);
    assert_true(h_now_ms() - t0 < 1000 * H_VG);
    assert_int_equal(atomic_load(&free_done), 50);
    assert_int_equal(atomic_load(&free_stopped), 50);
    h_server_kill(&srv);
}

/* ---- server-side limits and deadlines ---- */

static atomic_int held_entered, held_release, handler_runs;
static _Atomic int64_t seen_remaining_ms;

static void hold_until_released(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    atomic_fetch_add(&handler_runs, 1);
    atomic_fetch_add(&held_entered, 1);
    int64_t deadline = h_now_ms() + 5000 * H_VG;
    while (!atomic_load(&held_release) && h_now_ms() < deadline)
        h_sleep_ms(1);
    ftrpc_server_call_reply(call, NULL, NULL);
}

static atomic_int async_done, async_ok;

static void on_async_done(ftrpc_result *r, void *arg)
{
    (void)arg;
    if (r->kind == FTRPC_RESULT_OK) atomic_fetch_add(&async_ok, 1);
    atomic_fetch_add(&async_done, 1);
}

static void reset_counters(void)
{
    atomic_store(&held_entered, 0);
    atomic_store(&held_release, 0);
    atomic_store(&handler_runs, 0);
    atomic_store(&async_done, 0);
    atomic_store(&async_ok, 0);
}

static void method_past_max_concurrency_answers_elimit(void **state)
{
    (void)state;
    reset_counters();
    inproc p;
    ftrpc_method_options mo = {.run_mode = FTRPC_RUN_IN_WORKER, .max_concurrency = 2};
    inproc_start(&p, hold_until_released, &mo, 4, 5000 * H_VG);
    for (int i = 0; i < 2; i++)
        assert_int_equal(ftrpc_call_async(p.client, "test.Svc", "M", NULL, NULL, NULL,
                                          on_async_done, NULL, NULL),
                         0);
    assert_true(h_wait_atomic_ge(&held_entered, 2, 5000 * H_VG));
    ftrpc_result r;
    assert_int_equal(ftrpc_call(p.client, "test.Svc", "M", NULL, NULL, NULL, &r), FTRPC_ELIMIT);
    assert_int_equal(r.kind, FTRPC_RESULT_RPC_ERROR);
    ftrpc_result_fini(&r);
    atomic_store(&held_release, 1);
    assert_true(h_wait_atomic_ge(&async_done, 2, 5000 * H_VG));
    assert_int_equal(atomic_load(&async_ok), 2);
    /* the slots are free again */
    assert_int_equal(ftrpc_call(p.client, "test.Svc", "M", NULL, NULL, NULL, &r), 0);
    ftrpc_result_fini(&r);
    assert_int_equal(atomic_load(&handler_runs), 3);
    inproc_stop(&p);
}

static void queued_worker_request_past_its_deadline_is_not_executed(void **state)
{
    (void)state;
    reset_counters();
    inproc p;
    ftrpc_method_options mo = {.run_mode = FTRPC_RUN_IN_WORKER};
    inproc_start(&p, hold_until_released, &mo, 1, 5000 * H_VG);
    /* the only worker is held; the next request queues behind it */
    assert_int_equal(
        ftrpc_call_async(p.client, "test.Svc", "M", NULL, NULL, NULL, on_async_done, NULL, NULL),
        0);
    assert_true(h_wait_atomic_ge(&held_entered, 1, 5000 * H_VG));
    ftrpc_result r;
    ftrpc_call_options short_deadline = {.timeout_ms = 100};
    assert_int_equal(ftrpc_call(p.client, "test.Svc", "M", NULL, NULL, &short_deadline, &r),
                     FTRPC_ERPCTIMEDOUT);
    ftrpc_result_fini(&r);
    /* the server's deadline is the request's arrival plus the timeout_ms it carried, a little
     * later than the client's: give the arrival a generous 300 ms before the worker frees up */
    h_sleep_ms(300 * H_VG);
    /* a third request queues behind the expired one: once it has run, the worker has passed the
     * expired one */
    assert_int_equal(
        ftrpc_call_async(p.client, "test.Svc", "M", NULL, NULL, NULL, on_async_done, NULL, NULL),
        0);
    atomic_store(&held_release, 1);
    assert_true(h_wait_atomic_ge(&async_done, 2, 5000 * H_VG));
    assert_int_equal(atomic_load(&async_ok), 2);
    assert_int_equal(atomic_load(&handler_runs), 2);
    inproc_stop(&p);
}

static void record_remaining(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    atomic_store(&seen_remaining_ms, ftrpc_server_call_remaining_ms(call));
    ftrpc_server_call_reply(call, NULL, NULL);
}

static void server_sees_the_callers_remaining_deadline(void **state)
{
    (void)state;
    inproc p;
    /* under memcheck both deadlines and the 200 ms allowed for the way there are 10 times longer */
    inproc_start(&p, record_remaining, NULL, 0, 700 * H_VG);
    ftrpc_result r;
    assert_int_equal(ftrpc_call(p.client, "test.Svc", "M", NULL, NULL, NULL, &r), 0);
    ftrpc_result_fini(&r);
    int64_t seen = atomic_load(&seen_remaining_ms);
    print_message("server saw %lld ms left of %d\n", (long long)seen, 700 * H_VG);
    assert_true(seen > 500 * H_VG && seen <= 700 * H_VG);
    ftrpc_call_options o = {.timeout_ms = 3000 * H_VG};
    assert_int_equal(ftrpc_call(p.client, "test.Svc", "M", NULL, NULL, &o, &r), 0);
    ftrpc_result_fini(&r);
    seen = atomic_load(&seen_remaining_ms);
    assert_true(seen > 2800 * H_VG && seen <= 3000 * H_VG);
    inproc_stop(&p);
}

/* ---- buffers freed on threads that exit ---- */

static void *free_buffers_and_exit(void *arg)
{
    (void)arg;
    for (int i = 0; i < 8; i++) {
        ftrpc_buf *b = h_pattern_buf(100, (unsigned)i);
        ftrpc_buf_free(b); /* the block lands in this thread's block cache */
    }
    return NULL;
}

/* Checked by LeakSanitizer at exit (the sanitizer build): a thread's block cache must not die
 * with the thread. */
static void buffers_freed_on_a_thread_that_exits_are_not_leaked(void **state)
{
    (void)state;
    for (int i = 0; i < 4; i++) {
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, free_buffers_and_exit, NULL), 0);
        pthread_join(t, NULL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sync_call_on_an_io_thread_fails_at_once_with_eiothread),
        cmocka_unit_test(handler_error_codes_are_business_or_rpc_errors_by_range),
        cmocka_unit_test(slow_reply_times_out_at_the_call_deadline),
        cmocka_unit_test(large_payload_round_trips_byte_exact),
        cmocka_unit_test(request_larger_than_max_unwritten_bytes_fails_as_a_bad_request),
        cmocka_unit_test(client_free_completes_calls_in_flight_with_estopped),
        cmocka_unit_test(method_past_max_concurrency_answers_elimit),
        cmocka_unit_test(queued_worker_request_past_its_deadline_is_not_executed),
        cmocka_unit_test(server_sees_the_callers_remaining_deadline),
        cmocka_unit_test(buffers_freed_on_a_thread_that_exits_are_not_leaked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
