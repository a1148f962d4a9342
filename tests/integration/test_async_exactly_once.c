/* 1,000 concurrent async calls from one client complete exactly once each, with payload and
 * attachment round-tripping byte-exact: against an in-process server and against echo-server
 * children (IO-thread handler, and worker handler with delays that reorder replies). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

enum { NCALLS = 1000 };

static atomic_int completions[NCALLS];
static atomic_int done, ok, bad_payload;
static atomic_int first_error;

static size_t payload_len(int id)
{
    return id % 100 == 0 ? 65536 + (size_t)id : 1 + (size_t)(id % 7) * 97;
}

static size_t attachment_len(int id)
{
    return (size_t)(id % 13);
}

static void on_done(ftrpc_result *r, void *arg)
{
    int id = (int)(intptr_t)arg;
    atomic_fetch_add(&completions[id], 1);
    if (r->kind == FTRPC_RESULT_OK) {
        if (h_pattern_check(r->response, payload_len(id), (unsigned)id) &&
            h_pattern_check(r->attachment, attachment_len(id), (unsigned)id + 50000))
            atomic_fetch_add(&ok, 1);
        else
            atomic_fetch_add(&bad_payload, 1);
    } else {
        int zero = 0;
        atomic_compare_exchange_strong(&first_error, &zero, r->code);
    }
    atomic_fetch_add(&done, 1);
}

static void run_calls(const char *url)
{
    for (int i = 0; i < NCALLS; i++)
        atomic_store(&completions[i], 0);
    atomic_store(&done, 0);
    atomic_store(&ok, 0);
    atomic_store(&bad_payload, 0);
    atomic_store(&first_error, 0);
    ftrpc_client *client = NULL;
    assert_int_equal(ftrpc_client_new(url, &(ftrpc_client_options){.timeout_ms = 10000}, &client),
                     0);
    for (int i = 0; i < NCALLS; i++) {
        ftrpc_buf *req = h_pattern_buf(payload_len(i), (unsigned)i);
        ftrpc_buf *att = h_pattern_buf(attachment_len(i), (unsigned)i + 50000);
        assert_int_equal(ftrpc_call_async(client, "example.EchoService", "Echo", req, att, NULL,
                                          on_done, (void *)(intptr_t)i, NULL),
                         0);
        /* the call shares the bytes: freeing our buffers at once must be safe */
        ftrpc_buf_free(req);
        ftrpc_buf_free(att);
    }
    assert_true(h_wait_atomic_ge(&done, NCALLS, 15000));
    /* after free no callback can run any more: a second completion would show now */
    ftrpc_client_free(client);
    int ones = 0, more = 0, none = 0;
    for (int i = 0; i < NCALLS; i++) {
        int n = atomic_load(&completions[i]);
        ones += n == 1;
        more += n > 1;
        none += n == 0;
    }
    if (atomic_load(&first_error))
        print_error("first error: %s\n", ftrpc_err_name(atomic_load(&first_error)));
    assert_int_equal(more, 0);
    assert_int_equal(none, 0);
    assert_int_equal(ones, NCALLS);
    assert_int_equal(atomic_load(&bad_payload), 0);
    assert_int_equal(atomic_load(&ok), NCALLS);
}

static void echo(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    ftrpc_server_call_reply(call, ftrpc_server_call_request(call),
                            ftrpc_server_call_attachment(call));
}

static void in_process_server_completes_each_async_call_exactly_once(void **state)
{
    (void)state;
    ftrpc_server *s = NULL;
    assert_int_equal(ftrpc_server_new(NULL, &s), 0);
    assert_int_equal(ftrpc_server_add_method(s, "example.EchoService", "Echo", echo, NULL, NULL),
                     0);
    assert_int_equal(ftrpc_server_start(s, "127.0.0.1:0"), 0);
    char url[64];
    snprintf(url, sizeof url, "127.0.0.1:%d", ftrpc_server_port(s));
    run_calls(url);
    assert_int_equal(ftrpc_server_stop(s, 2000), 0);
    ftrpc_server_free(s);
}

static void echo_server_child_completes_each_async_call_exactly_once(void **state)
{
    (void)state;
    h_server srv;
    assert_int_equal(h_server_start(&srv, NULL), 0);
    char url[64];
    h_server_url(&srv, url, sizeof url);
    run_calls(url);
    assert_int_equal(h_server_stop(&srv, 10000), 0);
}

static void reordered_replies_from_workers_complete_each_call_exactly_once(void **state)
{
    (void)state;
    h_server srv;
    const char *args[] = {"--workers", "--delay-ms", "20", "--delay-rate", "0.5", NULL};
    assert_int_equal(h_server_start(&srv, args), 0);
    char url[64];
    h_server_url(&srv, url, sizeof url);
    run_calls(url);
    assert_int_equal(h_server_stop(&srv, 10000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(in_process_server_completes_each_async_call_exactly_once),
        cmocka_unit_test(echo_server_child_completes_each_async_call_exactly_once),
        cmocka_unit_test(reordered_replies_from_workers_complete_each_call_exactly_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
