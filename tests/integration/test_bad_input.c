/* A server under a continuous well-behaved load gets malformed input on other connections: each
 * case gets the behaviour docs/protocol.md (Bad input) describes (close with a logged reason, or
 * an error answer with the connection kept), the server stays up, and not one well-behaved call
 * fails. */
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
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

enum { LOAD_THREADS = 4 };

static h_server server;
static ftrpc_client *client;
static pthread_t load[LOAD_THREADS];
static atomic_int load_stop, load_calls, load_failures, load_first_error;
static int load_running;

static void stop_load(void)
{
    if (!load_running) return;
    atomic_store(&load_stop, 1);
    for (int i = 0; i < LOAD_THREADS; i++)
        pthread_join(load[i], NULL);
    load_running = 0;
}

static void *load_main(void *arg)
{
    (void)arg;
    ftrpc_buf *req = ftrpc_buf_new();
    ftrpc_buf_append(req, "well-behaved", 12);
    while (!atomic_load(&load_stop)) {
        ftrpc_result r;
        int rc = ftrpc_call(client, "example.EchoService", "Echo", req, NULL, NULL, &r);
        if (rc != 0 || ftrpc_buf_size(r.response) != 12) {
            if (atomic_fetch_add(&load_failures, 1) == 0) atomic_store(&load_first_error, rc);
        }
        atomic_fetch_add(&load_calls, 1);
        ftrpc_result_fini(&r);
    }
    ftrpc_buf_free(req);
    return NULL;
}

static int group_setup(void **state)
{
    (void)state;
    if (h_server_start(&server, NULL) != 0) return -1;
    char url[64];
    h_server_url(&server, url, sizeof url);
    if (ftrpc_client_new(url, &(ftrpc_client_options){.timeout_ms = 5000}, &client) != 0) return -1;
    for (int i = 0; i < LOAD_THREADS; i++)
        pthread_create(&load[i], NULL, load_main, NULL);
    load_running = 1;
    /* the load is running once some calls have completed */
    return h_wait_atomic_ge(&load_calls, 20, 5000) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    stop_load();
    ftrpc_client_free(client);
    h_server_kill(&server);
    return 0;
}

/* Waits (bounded) until the server's stderr holds at least `n` lines with `needle`. */
struct log_wait {
    const char *needle;
    int n;
};

static int log_has(void *arg)
{
    struct log_wait *w = arg;
    return h_server_stderr_count(&server, w->needle) >= w->n;
}

static void assert_logged(const char *needle, int n)
{
    struct log_wait w = {needle, n};
    if (!h_wait_until(log_has, &w, 3000)) {
        char *all = h_server_stderr(&server);
        print_error("expected %d line(s) with '%s' in the server's stderr:\n%s\n", n, needle, all);
        free(all);
        fail();
    }
}

/* Sends bytes on a fresh connection and asserts that the server closes it and logs needle. */
static void assert_closed_with_log(const void *bytes, size_t len, const char *needle)
{
    int before = h_server_stderr_count(&server, needle);
    int fd = h_raw_connect(server.port);
    assert_true(fd >= 0);
    assert_int_equal(h_raw_send(fd, bytes, len), 0);
    assert_int_equal(h_raw_wait_closed(fd, 3000), 1);
    close(fd);
    assert_logged(needle, before + 1);
    assert_true(h_server_alive(&server));
}

/* Asserts that a valid Echo request on fd is answered: the connection is still usable. */
static void assert_connection_still_serves(int fd, int64_t cid)
{
    uint8_t frame[2048];
    size_t n = h_request_frame(frame, sizeof frame, "example.EchoService", "Echo", cid, "hello", 5);
    assert_int_equal(h_raw_send(fd, frame, n), 0);
    h_response r;
    assert_int_equal(h_raw_read_response(fd, 3000, &r), 1);
    assert_int_equal(r.correlation_id, cid);
    assert_int_equal(r.error_code, 0);
    assert_int_equal(r.payload_len, 5);
}

static void random_bytes_close_the_connection_with_a_logged_reason(void **state)
{
    (void)state;
    uint8_t junk[256];
    uint32_t x = 0x9e3779b9u;
    for (size_t i = 0; i < sizeof junk; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        junk[i] = (uint8_t)x;
    }
    junk[0] = 'X'; /* never a magic any protocol claims */
    assert_closed_with_log(junk, sizeof junk, "bad magic");
}

static void body_size_over_the_limit_closes_the_connection(void **state)
{
    (void)state;
    uint8_t hdr[12];
    h_header(hdr, "PRPC", (64u << 20) + 1, 16);
    assert_closed_with_log(hdr, sizeof hdr, "body_size larger than max_body");
}

static void meta_size_over_body_size_closes_the_connection(void **state)
{
    (void)state;
    uint8_t frame[12 + 8];
    h_header(frame, "PRPC", 8, 100);
    memset(frame + 12, 0, 8);
    assert_closed_with_log(frame, sizeof frame, "meta_size larger than body");
}

static void truncated_frame_then_close_is_logged(void **state)
{
    (void)state;
    int before = h_server_stderr_count(&server, "mid-frame");
    uint8_t frame[2048];
    size_t n =
        h_request_frame(frame, sizeof frame, "example.EchoService", "Echo", 5, "0123456789", 10);
    int fd = h_raw_connect(server.port);
    assert_true(fd >= 0);
    assert_int_equal(h_raw_send(fd, frame, n - 4), 0);
    shutdown(fd, SHUT_WR);
    /* the server sees the end of the stream mid-frame: it closes too, and says why */
    assert_int_equal(h_raw_wait_closed(fd, 3000), 1);
    close(fd);
    assert_logged("mid-frame", before + 1);
    assert_true(h_server_alive(&server));
}

static void meta_that_does_not_parse_closes_the_connection(void **state)
{
    (void)state;
    uint8_t frame[12 + 10];
    h_header(frame, "PRPC", 10, 10);
    memset(frame + 12, 0xff, 10);
    assert_closed_with_log(frame, sizeof frame, "RpcMeta does not parse");
}

static void streaming_magic_closes_the_connection(void **state)
{
    (void)state;
    uint8_t frame[2048];
    size_t n = h_request_frame(frame, sizeof frame, "example.EchoService", "Echo", 9, "x", 1);
    memcpy(frame, "STRM", 4);
    assert_closed_with_log(frame, n, "STRM");
}

/* Unknown names answer with an error and keep the connection (table-driven). */
static void unknown_names_are_answered_and_the_connection_is_kept(void **state)
{
    (void)state;
    static const struct {
        const char *service, *method;
        int32_t code;
    } cases[] = {
        {"NoSuchService", "Echo", 1001},         /* no package: ENOSERVICE */
        {"example.NoSuchService", "Echo", 1002}, /* package.Service unknown: ENOMETHOD */
        {"example.EchoService", "NoSuchMethod", 1002},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int fd = h_raw_connect(server.port);
        assert_true(fd >= 0);
        uint8_t frame[2048];
        int64_t cid = 100 + (int64_t)i;
        size_t n =
            h_request_frame(frame, sizeof frame, cases[i].service, cases[i].method, cid, "abc", 3);
        assert_int_equal(h_raw_send(fd, frame, n), 0);
        h_response r;
        assert_int_equal(h_raw_read_response(fd, 3000, &r), 1);
        assert_int_equal(r.correlation_id, cid);
        assert_int_equal(r.error_code, cases[i].code);
        if (cases[i].code == 1002) {
            char want[256];
            snprintf(want, sizeof want, "Fail to find method=%s/%s", cases[i].service,
                     cases[i].method);
            assert_string_equal(r.error_text, want);
        }
        assert_connection_still_serves(fd, cid + 1000);
        close(fd);
    }
}

static void attachment_larger_than_body_answers_erequest_and_keeps_the_connection(void **state)
{
    (void)state;
    uint8_t meta[1024], frame[2048];
    size_t ml = h_meta_request(meta, sizeof meta, "example.EchoService", "Echo", 77, 1000);
    h_header(frame, "PRPC", (uint32_t)(ml + 4), (uint32_t)ml);
    memcpy(frame + 12, meta, ml);
    memcpy(frame + 12 + ml, "abcd", 4);
    int fd = h_raw_connect(server.port);
    assert_true(fd >= 0);
    assert_int_equal(h_raw_send(fd, frame, 12 + ml + 4), 0);
    h_response r;
    assert_int_equal(h_raw_read_response(fd, 3000, &r), 1);
    assert_int_equal(r.correlation_id, 77);
    assert_int_equal(r.error_code, 1003);
    assert_connection_still_serves(fd, 78);
    close(fd);
}

/* Runs last: the load ran through every case above. */
static void well_behaved_calls_never_failed_and_the_server_stayed_up(void **state)
{
    (void)state;
    int before = atomic_load(&load_calls);
    assert_true(h_wait_atomic_ge(&load_calls, before + 20, 5000));
    stop_load();
    if (atomic_load(&load_failures) != 0)
        print_error("first failure: %s\n", ftrpc_err_name(atomic_load(&load_first_error)));
    assert_int_equal(atomic_load(&load_failures), 0);
    assert_true(atomic_load(&load_calls) > 0);
    assert_true(h_server_alive(&server));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(random_bytes_close_the_connection_with_a_logged_reason),
        cmocka_unit_test(body_size_over_the_limit_closes_the_connection),
        cmocka_unit_test(meta_size_over_body_size_closes_the_connection),
        cmocka_unit_test(truncated_frame_then_close_is_logged),
        cmocka_unit_test(meta_that_does_not_parse_closes_the_connection),
        cmocka_unit_test(streaming_magic_closes_the_connection),
        cmocka_unit_test(unknown_names_are_answered_and_the_connection_is_kept),
        cmocka_unit_test(attachment_larger_than_body_answers_erequest_and_keeps_the_connection),
        cmocka_unit_test(well_behaved_calls_never_failed_and_the_server_stayed_up),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
