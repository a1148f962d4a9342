/* Server-side overload control over real sockets (docs/overload.md): the server-wide
 * max_concurrency refuses the call past it at once with ELIMIT and a pushback hint in the
 * response meta; a limit changed while the server runs applies to the next call; the admin page
 * POST /limits changes a limit and always wants the credential; the timeout limiter refuses a
 * request whose deadline is shorter than the latency it measured, with "do not retry"; HTTP and
 * gRPC refusals carry the hint too (Retry-After, grpc-retry-pushback-ms). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/iobuf.h"
#include "harness.h"
#include "protocol/baidu_std.h"

#define HELD_MAX 8
static ftrpc_server_call *_Atomic held[HELD_MAX];
static atomic_int nheld;

/* "hold": kept unfinished until release_held; "slow": 10 ms of work (in a worker); else echo. */
static void handler(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    const ftrpc_buf *req = ftrpc_server_call_request(call);
    char word[8] = {0};
    if (ftrpc_buf_size(req) < sizeof word) ftrpc_buf_copy_to(req, word, ftrpc_buf_size(req));
    if (strcmp(word, "hold") == 0) {
        int i = atomic_fetch_add(&nheld, 1);
        assert_true(i < HELD_MAX);
        atomic_store(&held[i], call);
        return;
    }
    if (strcmp(word, "slow") == 0) usleep(10 * 1000);
    ftrpc_server_call_reply(call, req, NULL);
}

static void release_held(void)
{
    int n = atomic_exchange(&nheld, 0);
    for (int i = 0; i < n; i++)
        ftrpc_server_call_reply(atomic_exchange(&held[i], NULL), NULL, NULL);
}

static ftrpc_server *start_server(const ftrpc_server_options *o, int method_limit)
{
    ftrpc_server *s = NULL;
    assert_int_equal(ftrpc_server_new(o, &s), 0);
    ftrpc_method_options mo = {.run_mode = FTRPC_RUN_IN_WORKER, .max_concurrency = method_limit};
    assert_int_equal(ftrpc_server_add_method(s, "test.Svc", "M", handler, NULL, &mo), 0);
    /* what grpc_peer.py calls */
    assert_int_equal(ftrpc_server_add_method(s, "example.EchoService", "Echo", handler, NULL, &mo),
                     0);
    assert_int_equal(ftrpc_server_start(s, "127.0.0.1:0"), 0);
    return s;
}

/* Sends one request of test.Svc/M with payload word and timeout_ms (0: a minute; baidu_std always
 * carries one). */
static void send_call(int fd, int64_t cid, const char *word, int32_t timeout_ms)
{
    ft_request_header h = {.service = "test.Svc",
                           .method = "M",
                           .correlation_id = cid,
                           .timeout_ms = timeout_ms ? timeout_ms : 60000};
    ft_iobuf payload, frame;
    ft_iobuf_init(&payload);
    ft_iobuf_init(&frame);
    assert_int_equal(ft_iobuf_append(&payload, word, strlen(word)), 0);
    assert_int_equal(ft_baidu_std_pack_request(&frame, &h, &payload, NULL), 0);
    uint8_t bytes[512];
    size_t n = ft_iobuf_copy_at(&frame, 0, bytes, sizeof bytes);
    assert_int_equal(n, ft_iobuf_size(&frame));
    assert_int_equal(h_raw_send(fd, bytes, n), 0);
    ft_iobuf_fini(&payload);
    ft_iobuf_fini(&frame);
}

static h_response read_answer(int fd)
{
    h_response r;
    memset(&r, 0, sizeof r);
    assert_int_equal(h_raw_read_response(fd, 5000 * H_VG, &r), 1);
    return r;
}

static int held_at_least_1(void *arg)
{
    (void)arg;
    return atomic_load(&nheld) >= 1;
}

static int held_at_least_2(void *arg)
{
    (void)arg;
    return atomic_load(&nheld) >= 2;
}

static int held_at_least_3(void *arg)
{
    (void)arg;
    return atomic_load(&nheld) >= 3;
}

static void server_wide_limit_refuses_with_elimit_and_pushback(void **state)
{
    (void)state;
    ftrpc_server *s = start_server(&(ftrpc_server_options){.max_concurrency = 2}, 0);
    int fd = h_raw_connect(ftrpc_server_port(s));
    assert_true(fd >= 0);
    send_call(fd, 1, "hold", 0);
    send_call(fd, 2, "hold", 0);
    assert_true(h_wait_until(held_at_least_2, NULL, 5000 * H_VG));
    send_call(fd, 3, "echo", 0);
    h_response r = read_answer(fd);
    assert_int_equal(r.correlation_id, 3);
    assert_int_equal(r.error_code, -FTRPC_ELIMIT);
    assert_true(r.retry_after_ms >= 1 && r.retry_after_ms <= 1000);
    int value = 0, effective = 0;
    assert_int_equal(ftrpc_server_get_max_concurrency(s, NULL, NULL, &value, &effective), 0);
    assert_int_equal(value, 2);
    assert_int_equal(effective, 2);

    /* raised while running: the next call is admitted */
    assert_int_equal(ftrpc_server_set_max_concurrency(s, NULL, NULL, 3), 0);
    send_call(fd, 4, "echo", 0);
    r = read_answer(fd);
    assert_int_equal(r.correlation_id, 4);
    assert_int_equal(r.error_code, 0);
    assert_int_equal(r.retry_after_ms, 0); /* a success carries no hint */

    /* a method's own limit: it counts the calls admitted after it was set (the two held ones
     * came before), so one more is held and the next refused */
    assert_int_equal(ftrpc_server_set_max_concurrency(s, NULL, NULL, 0), 0);
    assert_int_equal(ftrpc_server_set_max_concurrency(s, "test.Svc", "M", 1), 0);
    send_call(fd, 5, "hold", 0);
    assert_true(h_wait_until(held_at_least_3, NULL, 5000 * H_VG));
    send_call(fd, 6, "echo", 0);
    r = read_answer(fd);
    assert_int_equal(r.correlation_id, 6);
    assert_int_equal(r.error_code, -FTRPC_ELIMIT);
    assert_true(r.retry_after_ms >= 1);
    assert_int_equal(ftrpc_server_set_max_concurrency(s, "test.Svc", "Nope", 1), FTRPC_ENOMETHOD);
    assert_int_equal(ftrpc_server_set_max_concurrency(s, "test.Svc", NULL, 1), FTRPC_EINVAL);
    assert_int_equal(ftrpc_server_set_max_concurrency(s, NULL, NULL, -7), FTRPC_EINVAL);

    release_held();
    for (int i = 0; i < 3; i++)
        assert_int_equal(read_answer(fd).error_code, 0);
    close(fd);
    assert_int_equal(ftrpc_server_stop(s, 1000), 0);
    ftrpc_server_free(s);
}

/* The same refusal over HTTP carries Retry-After (whole seconds, the hint rounded up: 1 for any
 * hint up to 1000 ms) and over gRPC grpc-retry-pushback-ms (gRPC A6), read by curl and by grpcio
 * (grpc_peer.py). */
static void http_and_grpc_refusals_carry_the_pushback(void **state)
{
    (void)state;
    ftrpc_server *s = start_server(&(ftrpc_server_options){.max_concurrency = 1}, 0);
    int port = ftrpc_server_port(s);
    int fd = h_raw_connect(port);
    assert_true(fd >= 0);
    send_call(fd, 1, "hold", 0);
    assert_true(h_wait_until(held_at_least_1, NULL, 5000 * H_VG));

    char args[256], *out = NULL;
    snprintf(args, sizeof args, "-i -X POST --data-binary echo http://127.0.0.1:%d/test.Svc/M",
             port);
    assert_int_equal(h_curl(args, &out), 0);
    print_message("%s\n", out);
    assert_non_null(strstr(out, " 503"));
    assert_non_null(strstr(out, "\r\nRetry-After: 1\r\n"));
    free(out);

    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "timeout 60 /usr/bin/python3 %s/integration/grpc_peer.py client 127.0.0.1:%d pushback",
             FTRPC_TESTS_DIR, port);
    assert_int_equal(h_shell(cmd, &out), 0);
    print_message("%s", out);
    /* ELIMIT is gRPC's RESOURCE_EXHAUSTED; the hint is 1 .. 1000 ms */
    assert_non_null(strstr(out, "pushback RESOURCE_EXHAUSTED "));
    int after = atoi(strstr(out, "RESOURCE_EXHAUSTED ") + strlen("RESOURCE_EXHAUSTED "));
    assert_true(after >= 1 && after <= 1000);
    free(out);

    /* ftrpc's own gRPC client obeys it as it does over baidu_std: the endpoint is held */
    char url[64];
    snprintf(url, sizeof url, "list://127.0.0.1:%d", port);
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(url,
                                      &(ftrpc_client_options){.protocol = FTRPC_PROTOCOL_GRPC,
                                                              .fail_mode = FTRPC_FAILFAST},
                                      &c),
                     0);
    ftrpc_result r;
    assert_int_equal(ftrpc_call(c, "test.Svc", "M", NULL, NULL, NULL, &r), FTRPC_ELIMIT);
    ftrpc_result_fini(&r);
    /* the hint is short here (the held call gives no latency yet: 1 ms), so the client's count of
     * answers that carried one is what shows it was read */
    char *metrics = NULL;
    assert_int_equal(h_http(port, "GET /metrics", NULL, &metrics), 200);
    int counted = 0;
    for (const char *l = strstr(metrics, "\nrpc_client_pushbacks{"); l;
         l = strstr(l + 1, "\nrpc_client_pushbacks{")) {
        const char *end = strchr(l + 1, '\n');
        if (end && end - l > 3 && strncmp(end - 3, "} 1", 3) == 0 &&
            strstr(l, "service=\"test.Svc\"") < end)
            counted = 1;
    }
    assert_true(counted);
    free(metrics);
    ftrpc_client_free(c);

    release_held();
    assert_int_equal(read_answer(fd).error_code, 0);
    close(fd);
    assert_int_equal(ftrpc_server_stop(s, 1000), 0);
    ftrpc_server_free(s);
}

static void bad_max_concurrency_fails_creation(void **state)
{
    (void)state;
    ftrpc_server *s = NULL;
    assert_int_equal(ftrpc_server_new(&(ftrpc_server_options){.max_concurrency = -9}, &s),
                     FTRPC_EINVAL);
    assert_null(s);
}

static int post(int port, const char *path, const char *credential, char **body)
{
    char method_path[512];
    snprintf(method_path, sizeof method_path, "POST %s", path);
    return h_http(port, method_path, credential, body);
}

static void admin_post_changes_a_limit_and_needs_the_credential(void **state)
{
    (void)state;
    /* public builtin pages: the GETs are open, the POST still needs the credential */
    ftrpc_server *s =
        start_server(&(ftrpc_server_options){.auth_token = "sesame", .public_builtin_pages = 1}, 0);
    int port = ftrpc_server_port(s);
    int value = -5;
    assert_int_equal(post(port, "/limits?max_concurrency=auto", NULL, NULL), 401);
    assert_int_equal(post(port, "/limits?max_concurrency=auto", "wrong", NULL), 401);
    assert_int_equal(ftrpc_server_get_max_concurrency(s, NULL, NULL, &value, NULL), 0);
    assert_int_equal(value, 0);

    char *body = NULL;
    assert_int_equal(post(port, "/limits?max_concurrency=auto", "sesame", &body), 200);
    assert_non_null(strstr(body, "server max_concurrency=auto"));
    free(body);
    assert_int_equal(ftrpc_server_get_max_concurrency(s, NULL, NULL, &value, NULL), 0);
    assert_int_equal(value, FTRPC_CONCURRENCY_AUTO);

    assert_int_equal(
        post(port, "/limits?service=test.Svc&method=M&max_concurrency=7", "sesame", NULL), 200);
    assert_int_equal(ftrpc_server_get_max_concurrency(s, "test.Svc", "M", &value, NULL), 0);
    assert_int_equal(value, 7);
    assert_int_equal(
        post(port, "/limits?service=test.Svc&method=X&max_concurrency=7", "sesame", NULL), 404);
    assert_int_equal(post(port, "/limits?max_concurrency=lots", "sesame", NULL), 400);
    assert_int_equal(post(port, "/limits?service=test.Svc&max_concurrency=1", "sesame", NULL), 400);
    assert_int_equal(ftrpc_server_stop(s, 1000), 0);
    ftrpc_server_free(s);

    /* a server without authentication takes no POST at all */
    s = start_server(NULL, 0);
    assert_int_equal(post(ftrpc_server_port(s), "/limits?max_concurrency=1", NULL, NULL), 403);
    assert_int_equal(ftrpc_server_get_max_concurrency(s, NULL, NULL, &value, NULL), 0);
    assert_int_equal(value, 0);
    assert_int_equal(ftrpc_server_stop(s, 1000), 0);
    ftrpc_server_free(s);
}

static void timeout_limiter_refuses_deadline_shorter_than_latency(void **state)
{
    (void)state;
    ftrpc_server *s =
        start_server(&(ftrpc_server_options){.worker_threads = 8}, FTRPC_CONCURRENCY_TIMEOUT);
    int fd = h_raw_connect(ftrpc_server_port(s));
    assert_true(fd >= 0);
    /* before it measured anything (brpc's 500 us to start with) a 5 ms deadline is admitted */
    send_call(fd, 1, "hold", 0);
    send_call(fd, 2, "echo", 5);
    h_response r = read_answer(fd);
    assert_int_equal(r.correlation_id, 2);
    assert_int_equal(r.error_code, 0);
    /* a window of samples: 250 calls of 10 ms on 8 workers, 50 at a time */
    int64_t cid = 100;
    for (int batch = 0; batch < 5; batch++) {
        for (int i = 0; i < 50; i++)
            send_call(fd, cid++, "slow", 10000);
        for (int i = 0; i < 50; i++)
            assert_int_equal(read_answer(fd).error_code, 0);
    }
    /* the average is now 10 ms or more: a 5 ms deadline cannot be met, and retrying it would
     * not help; a long one still runs */
    send_call(fd, 3, "echo", 5);
    r = read_answer(fd);
    assert_int_equal(r.correlation_id, 3);
    assert_int_equal(r.error_code, -FTRPC_ELIMIT);
    assert_int_equal(r.retry_after_ms, -1);
    assert_non_null(strstr(r.error_text, "deadline"));
    send_call(fd, 4, "echo", 10000);
    r = read_answer(fd);
    assert_int_equal(r.correlation_id, 4);
    assert_int_equal(r.error_code, 0);
    release_held();
    assert_int_equal(read_answer(fd).error_code, 0);
    close(fd);
    assert_int_equal(ftrpc_server_stop(s, 1000), 0);
    ftrpc_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(server_wide_limit_refuses_with_elimit_and_pushback),
        cmocka_unit_test(http_and_grpc_refusals_carry_the_pushback),
        cmocka_unit_test(bad_max_concurrency_fails_creation),
        cmocka_unit_test(admin_post_changes_a_limit_and_needs_the_credential),
        cmocka_unit_test(timeout_limiter_refuses_deadline_shorter_than_latency),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
