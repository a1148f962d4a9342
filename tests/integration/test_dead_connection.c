/* A connection that dies without a RST, on one host and without privileges: the fault proxy
 * (tests/netfault/fault_proxy.h) between the client and a server stops forwarding and keeps every
 * connection up, as a stalled middlebox does, and TCP sees nothing wrong. The client's health
 * check (client.md, Dead connections) finds such a connection dead and fails the attempts
 * waiting on it, which failover sends elsewhere; a slow handler on a live connection is not taken
 * for a dead one. Over gRPC the probe is an HTTP/2 PING, and the same holds. The netfault tests
 * (tests/netfault/) play the same between hosts, with black holes; this one runs in every build,
 * TSan and valgrind included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_proxy.h"
#include "harness.h"

enum { NCALLS = 20 };

typedef struct rec {
    atomic_int done;
    int rc[NCALLS], attempts[NCALLS];
    int64_t latency_us[NCALLS];
    char endpoint[NCALLS][64];
} rec;

typedef struct slot {
    rec *r;
    int i;
} slot;

static void on_done(ftrpc_result *res, void *arg)
{
    slot *s = arg;
    s->r->rc[s->i] = res->code;
    s->r->attempts[s->i] = res->attempts;
    s->r->latency_us[s->i] = res->latency_us;
    snprintf(s->r->endpoint[s->i], sizeof s->r->endpoint[s->i], "%s", res->endpoint);
    atomic_fetch_add(&s->r->done, 1);
}

/* NCALLS calls at once through client c; waits (bounded) for all of them. */
static void call_all(ftrpc_client *c, rec *r)
{
    static slot slots[NCALLS];
    memset(r, 0, sizeof *r);
    for (int i = 0; i < NCALLS; i++) {
        slots[i] = (slot){r, i};
        assert_int_equal(ftrpc_call_async(c, "example.EchoService", "Echo", NULL, NULL, NULL,
                                          on_done, &slots[i], NULL),
                         0);
    }
    assert_true(h_wait_atomic_ge(&r->done, NCALLS, 10000 * H_VG));
}

/* Server A direct, server B behind the proxy; round robin, no attempt timeout: only the health
 * check frees an attempt stuck on the stalled link before the deadline. */
static ftrpc_client *client_over(const h_server *a, const nf_proxy *px, int health_check_ms,
                                 int deadline_ms, ftrpc_protocol protocol)
{
    char url[128];
    snprintf(url, sizeof url, "list://127.0.0.1:%d,127.0.0.1:%d", a->port, nf_proxy_port(px));
    ftrpc_client_options o = {.fail_mode = FTRPC_FAILOVER,
                              .timeout_ms = deadline_ms,
                              .lb = "rr",
                              .health_check_ms = health_check_ms,
                              .protocol = protocol};
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(url, &o, &c), 0);
    return c;
}

/* Servers A and B, the proxy in front of B, a client over both; every call answered, then the
 * link to B stalled. */
typedef struct stalled {
    h_server a, b;
    nf_proxy *px;
    ftrpc_client *c;
} stalled;

static void stall_setup(stalled *t, int health_check_ms, int deadline_ms, ftrpc_protocol protocol,
                        rec *r)
{
    assert_int_equal(h_server_start(&t->a, NULL), 0);
    assert_int_equal(h_server_start(&t->b, NULL), 0);
    char up[64];
    h_server_url(&t->b, up, sizeof up);
    assert_int_equal(nf_proxy_start("127.0.0.1", up, &t->px), 0);
    t->c = client_over(&t->a, t->px, health_check_ms, deadline_ms, protocol);
    call_all(t->c, r); /* both connections open and answering */
    for (int i = 0; i < NCALLS; i++)
        assert_int_equal(r->rc[i], 0);
    nf_proxy_set_stall(t->px, 1);
}

static void stall_teardown(stalled *t)
{
    nf_proxy_set_stall(t->px, 0);
    ftrpc_client_free(t->c);
    nf_proxy_stop(t->px);
    h_server_stop(&t->a, 5000);
    h_server_stop(&t->b, 5000);
}

static void stalled_link_is_found_dead_and_its_calls_fail_over(void **state)
{
    (void)state;
    static stalled t;
    static rec r;
    stall_setup(&t, 0, 5000 * H_VG, FTRPC_PROTOCOL_BAIDU_STD, &r);
    call_all(t.c, &r);
    int moved = 0;
    for (int i = 0; i < NCALLS; i++) {
        assert_int_equal(r.rc[i], 0);
        if (r.attempts[i] < 2) continue;
        /* sent through the stall, failed over once the connection was found dead: 300 ms of
         * silence, a ping, 500 ms more (the connection was busy, so its silence counts from the
         * stall's first request) */
        moved++;
        print_message("call %d: %d attempts, %lld ms\n", i, r.attempts[i],
                      (long long)(r.latency_us[i] / 1000));
        assert_true(r.latency_us[i] >= 700 * 1000);
        assert_true(r.latency_us[i] <= 2000 * 1000 * H_VG);
    }
    assert_true(moved > 0);
    stall_teardown(&t);
}

/* The same stall with the health check off: the attempts on the stalled link wait for the whole
 * deadline (what every call sent there did before the health check). */
static void without_the_health_check_a_stalled_link_holds_calls_to_their_deadline(void **state)
{
    (void)state;
    static stalled t;
    static rec r;
    stall_setup(&t, -1, 1500 * H_VG, FTRPC_PROTOCOL_BAIDU_STD, &r);
    call_all(t.c, &r);
    int timed_out = 0;
    for (int i = 0; i < NCALLS; i++) {
        timed_out += r.rc[i] == FTRPC_ERPCTIMEDOUT;
        if (getenv("DEBUG_DC"))
            print_message("call %d: %s, %d attempts, %lld ms, %s\n", i, ftrpc_err_name(r.rc[i]),
                          r.attempts[i], (long long)(r.latency_us[i] / 1000), r.endpoint[i]);
    }
    print_message("%d of %d calls timed out on the stalled link\n", timed_out, NCALLS);
    assert_true(timed_out > 0);
    stall_teardown(&t);
}

/* Over gRPC the probe is an HTTP/2 PING (its ACK is nghttp2's, at once): the calls sent into the
 * stall fail over and succeed well inside their 5 s deadline, where without a probe they would
 * wait for it and fail with ERPCTIMEDOUT. */
static void stalled_grpc_link_is_found_dead_by_an_http2_ping(void **state)
{
    (void)state;
    static stalled t;
    static rec r;
    stall_setup(&t, 0, 5000 * H_VG, FTRPC_PROTOCOL_GRPC, &r);
    call_all(t.c, &r);
    int moved = 0;
    for (int i = 0; i < NCALLS; i++) {
        if (r.rc[i] != 0)
            print_message("call %d: %s after %d attempts\n", i, ftrpc_err_name(r.rc[i]),
                          r.attempts[i]);
        assert_int_equal(r.rc[i], 0);
        moved += r.attempts[i] >= 2;
    }
    print_message("%d of %d calls failed over from the stalled gRPC link\n", moved, NCALLS);
    assert_true(moved > 0);
    stall_teardown(&t);
}

/* A slow handler over gRPC: the PING is answered while the call waits, which then succeeds on
 * its one attempt. */
static void slow_grpc_handler_is_not_taken_for_a_dead_connection(void **state)
{
    (void)state;
    const char *const args[] = {"--delay-ms", "1500", NULL};
    h_server s;
    assert_int_equal(h_server_start(&s, args), 0);
    char url[64];
    h_server_url(&s, url, sizeof url);
    ftrpc_client *c = NULL;
    ftrpc_client_options o = {.timeout_ms = 5000 * H_VG, .protocol = FTRPC_PROTOCOL_GRPC};
    assert_int_equal(ftrpc_client_new(url, &o, &c), 0);
    ftrpc_result r;
    int rc = ftrpc_call(c, "example.EchoService", "Echo", NULL, NULL, NULL, &r);
    print_message("slow gRPC call: %s, %d attempt(s)\n", ftrpc_err_name(rc), r.attempts);
    assert_int_equal(rc, 0);
    assert_int_equal(r.attempts, 1);
    ftrpc_result_fini(&r);
    ftrpc_client_free(c);
    h_server_stop(&s, 5000);
}

/* A handler that takes 1.5 s on a live connection: nothing arrives for longer than the health
 * check waits, but the server answers its ping at once, and the call succeeds. */
static void slow_handler_is_not_taken_for_a_dead_connection(void **state)
{
    (void)state;
    const char *const args[] = {"--delay-ms", "1500", NULL};
    h_server s;
    assert_int_equal(h_server_start(&s, args), 0);
    ftrpc_client *c = h_client_of(&s, 5000 * H_VG);
    assert_non_null(c);
    ftrpc_result r;
    int rc = ftrpc_call(c, "example.EchoService", "Echo", NULL, NULL, NULL, &r);
    print_message("slow call: %s after %lld ms, %d attempt(s)\n", ftrpc_err_name(rc),
                  (long long)(r.latency_us / 1000), r.attempts);
    assert_int_equal(rc, 0);
    assert_int_equal(r.attempts, 1);
    ftrpc_result_fini(&r);
    ftrpc_client_free(c);
    h_server_stop(&s, 5000);
}

/* A 24 MiB request over a link of 16 MiB/s: for a second and a half the server answers nothing
 * (it has not the whole request yet) and the health check's ping waits behind the request, but
 * the kernel keeps taking the request's bytes: the connection is alive, and the call succeeds on
 * its first attempt with the default health check (300 ms, then 500 ms for an answer). */
static void large_request_on_a_slow_link_is_not_taken_for_a_dead_connection(void **state)
{
    (void)state;
    enum { SIZE = 24 << 20 };
    h_server s;
    assert_int_equal(h_server_start(&s, NULL), 0);
    char up[64], url[64];
    h_server_url(&s, up, sizeof up);
    nf_proxy *px = NULL;
    assert_int_equal(nf_proxy_start("127.0.0.1", up, &px), 0);
    nf_proxy_set_rate(px, 16 << 20);
    snprintf(url, sizeof url, "127.0.0.1:%d", nf_proxy_port(px));
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(url, &(ftrpc_client_options){.timeout_ms = 20000 * H_VG}, &c),
                     0);
    ftrpc_buf *req = h_pattern_buf(SIZE, 5);
    ftrpc_result r;
    int rc = ftrpc_call(c, "example.EchoService", "Echo", req, NULL, NULL, &r);
    print_message("large call over the slow link: %s after %lld ms, %d attempt(s)\n",
                  ftrpc_err_name(rc), (long long)(r.latency_us / 1000), r.attempts);
    assert_int_equal(rc, 0);
    assert_int_equal(r.attempts, 1);
    assert_true(h_pattern_check(r.response, SIZE, 5));
    ftrpc_result_fini(&r);
    ftrpc_buf_free(req);
    ftrpc_client_free(c);
    nf_proxy_stop(px);
    h_server_stop(&s, 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stalled_link_is_found_dead_and_its_calls_fail_over),
        cmocka_unit_test(without_the_health_check_a_stalled_link_holds_calls_to_their_deadline),
        cmocka_unit_test(slow_handler_is_not_taken_for_a_dead_connection),
        cmocka_unit_test(stalled_grpc_link_is_found_dead_by_an_http2_ping),
        cmocka_unit_test(slow_grpc_handler_is_not_taken_for_a_dead_connection),
        cmocka_unit_test(large_request_on_a_slow_link_is_not_taken_for_a_dead_connection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
