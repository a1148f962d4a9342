/* Authentication over real sockets: an echo-server child started with --auth-token answers a
 * missing or wrong credential with ERPCAUTH and closes that connection, while callers holding the
 * right token on their own connections see no error at all; `ftrpc call --auth-token` gets
 * through; and an in-process server's custom authenticator attaches an identity that the handler
 * reads. */
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

#include "harness.h"

#define TOKEN "s3cret-token"

/* A request frame whose RpcMeta also carries authentication_data (field 7), as a brpc client's
 * first request on a connection does. token NULL: none. */
static size_t auth_frame(uint8_t *out, size_t cap, int64_t cid, const char *token)
{
    uint8_t meta[512];
    size_t mlen = h_meta_request(meta, sizeof meta, "example.EchoService", "Echo", cid, -1);
    if (token) {
        size_t tlen = strlen(token);
        assert_true(tlen < 128 && mlen + 2 + tlen <= sizeof meta);
        meta[mlen++] = (7 << 3) | 2;
        meta[mlen++] = (uint8_t)tlen;
        memcpy(meta + mlen, token, tlen);
        mlen += tlen;
    }
    static const char payload[] = "hello";
    size_t plen = sizeof payload - 1;
    assert_true(12 + mlen + plen <= cap);
    h_header(out, "PRPC", (uint32_t)(mlen + plen), (uint32_t)mlen);
    memcpy(out + 12, meta, mlen);
    memcpy(out + 12 + mlen, payload, plen);
    return 12 + mlen + plen;
}

/* One raw connection presenting `token`: 1 when it got ERPCAUTH and then EOF. */
static int raw_attempt_refused(int port, const char *token)
{
    uint8_t frame[1024];
    size_t n = auth_frame(frame, sizeof frame, 7, token);
    int fd = h_raw_connect(port);
    if (fd < 0) return 0;
    int ok = 0;
    h_response r;
    if (h_raw_send(fd, frame, n) == 0 && h_raw_read_response(fd, 3000, &r) == 1 &&
        r.correlation_id == 7 && r.error_code == 1004)
        ok = h_raw_wait_closed(fd, 3000);
    close(fd);
    return ok;
}

/* The right token on a raw connection is answered, and the connection stays usable for requests
 * that carry no credential (brpc sends it on the first request only). */
static int raw_attempt_accepted(int port)
{
    uint8_t frame[1024];
    int fd = h_raw_connect(port);
    if (fd < 0) return 0;
    int ok = 1;
    for (int i = 0; i < 2 && ok; i++) {
        size_t n = auth_frame(frame, sizeof frame, 10 + i, i == 0 ? TOKEN : NULL);
        h_response r;
        ok = h_raw_send(fd, frame, n) == 0 && h_raw_read_response(fd, 3000, &r) == 1 &&
             r.error_code == 0 && r.payload_len == 5;
    }
    close(fd);
    return ok;
}

static ftrpc_client *client_with_token(const h_server *s, const char *token)
{
    char url[64];
    h_server_url(s, url, sizeof url);
    ftrpc_client *c = NULL;
    /* failfast: the refusal reaches the caller as it is, not after retries elsewhere */
    ftrpc_client_options o = {.timeout_ms = 2000, .fail_mode = FTRPC_FAILFAST, .auth_token = token};
    assert_int_equal(ftrpc_client_new(url, &o, &c), 0);
    return c;
}

static void
wrong_or_missing_token_gets_erpcauth_and_a_closed_connection_while_right_token_callers_see_no_error(
    void **state)
{
    (void)state;
    h_server s;
    const char *args[] = {"--auth-token", TOKEN, NULL};
    assert_int_equal(h_server_start(&s, args), 0);

    /* the steady load: right token, its own connections */
    ftrpc_client *good = client_with_token(&s, TOKEN);
    h_load load = {.client = good, .window = 8, .max_calls = 1000000};
    assert_int_equal(h_load_start(&load), 0);
    assert_true(h_load_wait_done(&load, 200, 5000));

    for (int round = 0; round < 5; round++) {
        assert_true(raw_attempt_refused(s.port, NULL));
        assert_true(raw_attempt_refused(s.port, "wrong"));
        assert_true(raw_attempt_refused(s.port, TOKEN "x")); /* a longer token is not a match */
        assert_true(raw_attempt_refused(s.port, "s3cret-toke"));
        assert_true(raw_attempt_accepted(s.port));

        const char *bad[] = {NULL, "wrong"};
        for (int b = 0; b < 2; b++) {
            ftrpc_client *c = client_with_token(&s, bad[b]);
            ftrpc_result r;
            assert_int_not_equal(ftrpc_call(c, "example.EchoService", "Echo", NULL, NULL, NULL, &r),
                                 0);
            assert_int_equal(r.kind, FTRPC_RESULT_RPC_ERROR);
            assert_int_equal(r.code, FTRPC_ERPCAUTH);
            ftrpc_result_fini(&r);
            ftrpc_client_free(c);
        }
    }
    int before = atomic_load(&load.done);
    assert_true(h_load_wait_done(&load, before + 200, 5000)); /* still flowing */
    assert_true(h_load_stop(&load, 5000));
    ftrpc_client_free(good);
    print_message("right-token calls during the bad attempts: %d, failed %d\n",
                  atomic_load(&load.done), atomic_load(&load.failed));
    assert_int_equal(atomic_load(&load.failed), 0);
    assert_int_equal(atomic_load(&load.duplicates), 0);
    h_load_fini(&load);
    assert_true(h_server_stderr_count(&s, "authentication failed") >= 1);
    assert_int_equal(h_server_stop(&s, 10000), 0);
}

typedef struct refused_calls {
    atomic_int done, erpcauth, attempts;
} refused_calls;

static void count_refusal(ftrpc_result *r, void *arg)
{
    refused_calls *rc = arg;
    if (r->code == FTRPC_ERPCAUTH) atomic_fetch_add(&rc->erpcauth, 1);
    atomic_fetch_add(&rc->attempts, r->attempts);
    atomic_fetch_add(&rc->done, 1);
}

/* A refused credential ends the call once, in every fail mode: no retry, no second attempt on the
 * connection the server is closing (it used to give EEOF and EFAILEDSOCKET, which failover then
 * retried: 339 attempts for 200 calls). One caller at a time, and 8 calls in flight. */
static void wrong_token_calls_each_get_erpcauth_after_exactly_one_attempt(void **state)
{
    (void)state;
    h_server s;
    const char *args[] = {"--auth-token", TOKEN, NULL};
    assert_int_equal(h_server_start(&s, args), 0);
    char url[64];
    h_server_url(&s, url, sizeof url);
    const ftrpc_fail_mode modes[] = {FTRPC_FAILFAST, FTRPC_FAILOVER, FTRPC_FAILTRY,
                                     FTRPC_FAILBACKUP};
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        ftrpc_client *c = NULL;
        ftrpc_client_options o = {.timeout_ms = 2000, .fail_mode = modes[m], .auth_token = "nope"};
        assert_int_equal(ftrpc_client_new(url, &o, &c), 0);
        int erpcauth = 0, attempts = 0;
        for (int i = 0; i < 200; i++) {
            ftrpc_result r;
            ftrpc_call(c, "example.EchoService", "Echo", NULL, NULL, NULL, &r);
            erpcauth += r.code == FTRPC_ERPCAUTH;
            attempts += r.attempts;
            ftrpc_result_fini(&r);
        }
        refused_calls async = {0};
        for (int round = 0; round < 25; round++) {
            assert_int_equal(h_echo_async(c, 8, count_refusal, &async), 0);
            assert_true(h_wait_atomic_ge(&async.done, 8 * (round + 1), 5000));
        }
        print_message("fail mode %d: 200 blocking calls, %d ERPCAUTH in %d attempts; 200 async "
                      "(8 in flight), %d ERPCAUTH in %d attempts\n",
                      (int)modes[m], erpcauth, attempts, atomic_load(&async.erpcauth),
                      atomic_load(&async.attempts));
        assert_int_equal(erpcauth, 200);
        assert_int_equal(attempts, 200);
        assert_int_equal(atomic_load(&async.erpcauth), 200);
        assert_int_equal(atomic_load(&async.attempts), 200);
        ftrpc_client_free(c);
    }
    assert_int_equal(h_server_stop(&s, 10000), 0);
}

static void cli_call_with_the_token_succeeds_and_without_it_fails_with_erpcauth(void **state)
{
    (void)state;
    h_server s;
    const char *args[] = {"--auth-token", TOKEN, NULL};
    assert_int_equal(h_server_start(&s, args), 0);
    char url[64];
    h_server_url(&s, url, sizeof url);
    char *out = NULL, *err = NULL;
    const char *ok[] = {"call", url, "example.EchoService/Echo", "--data", "hi", "--auth-token",
                        TOKEN,  NULL};
    assert_int_equal(h_cli_run(ok, 10000, &out, &err), 0);
    assert_non_null(strstr(out, "hi"));
    free(out);
    free(err);
    const char *bad[] = {"call",        url,        "example.EchoService/Echo",
                         "--fail-mode", "failfast", "--auth-token",
                         "nope",        NULL};
    out = err = NULL;
    assert_int_equal(h_cli_run(bad, 10000, &out, &err), 1);
    assert_non_null(strstr(err, "ERPCAUTH"));
    free(out);
    free(err);
    assert_int_equal(h_server_stop(&s, 10000), 0);
}

/* ---- custom authenticator, in process ---- */

static int authenticator(const uint8_t *data, size_t len, char *identity, size_t size, void *arg)
{
    (void)arg;
    static const char prefix[] = "user:";
    size_t plen = sizeof prefix - 1;
    if (!data || len <= plen || len - plen >= size || memcmp(data, prefix, plen) != 0) return -1;
    if (len - plen == 5 && !memcmp(data + plen, "mallo", 5)) return -1; /* a banned user */
    memcpy(identity, data + plen, len - plen);
    identity[len - plen] = '\0';
    return 0;
}

static void whoami(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    const char *id = ftrpc_server_call_identity(call);
    ftrpc_buf *b = ftrpc_buf_new();
    ftrpc_buf_append(b, id, strlen(id));
    ftrpc_server_call_reply(call, b, NULL);
    ftrpc_buf_free(b);
}

static int credential(uint8_t *buf, size_t size, void *arg)
{
    const char *text = arg;
    size_t n = strlen(text);
    if (n > size) return -1;
    memcpy(buf, text, n);
    return (int)n;
}

static int call_whoami(int port, const char *cred, char *out, size_t cap)
{
    char url[64];
    snprintf(url, sizeof url, "127.0.0.1:%d", port);
    ftrpc_client_options o = {.timeout_ms = 2000, .fail_mode = FTRPC_FAILFAST};
    if (cred) {
        o.credential = credential;
        o.credential_arg = (void *)cred;
    }
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(url, &o, &c), 0);
    int code = 0;
    for (int i = 0; i < 3 && code == 0; i++) { /* later calls ride the authenticated connection */
        ftrpc_result r;
        if (ftrpc_call(c, "test.Auth", "WhoAmI", NULL, NULL, NULL, &r) == 0) {
            size_t n = ftrpc_buf_size(r.response);
            assert_true(n < cap);
            ftrpc_buf_copy_to(r.response, out, n);
            out[n] = '\0';
        } else {
            code = r.code;
        }
        ftrpc_result_fini(&r);
    }
    ftrpc_client_free(c);
    return code;
}

static void custom_authenticator_attaches_an_identity_the_handler_reads(void **state)
{
    (void)state;
    ftrpc_server *s = NULL;
    ftrpc_server_options so = {.authenticator = authenticator};
    assert_int_equal(ftrpc_server_new(&so, &s), 0);
    assert_int_equal(ftrpc_server_add_method(s, "test.Auth", "WhoAmI", whoami, NULL, NULL), 0);
    assert_int_equal(ftrpc_server_start(s, "127.0.0.1:0"), 0);
    int port = ftrpc_server_port(s);
    char who[128];

    assert_int_equal(call_whoami(port, "user:alice", who, sizeof who), 0);
    assert_string_equal(who, "alice");
    assert_int_equal(call_whoami(port, "user:bob", who, sizeof who), 0);
    assert_string_equal(who, "bob");
    assert_int_equal(call_whoami(port, "user:mallo", who, sizeof who), FTRPC_ERPCAUTH);
    assert_int_equal(call_whoami(port, "garbage", who, sizeof who), FTRPC_ERPCAUTH);
    assert_int_equal(call_whoami(port, NULL, who, sizeof who), FTRPC_ERPCAUTH);

    ftrpc_server_stats st;
    ftrpc_server_stats_get(s, &st);
    assert_int_equal(st.auth_failures, 3);
    assert_int_equal(ftrpc_server_stop(s, 1000), 0);
    ftrpc_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            wrong_or_missing_token_gets_erpcauth_and_a_closed_connection_while_right_token_callers_see_no_error),
        cmocka_unit_test(wrong_token_calls_each_get_erpcauth_after_exactly_one_attempt),
        cmocka_unit_test(cli_call_with_the_token_succeeds_and_without_it_fails_with_erpcauth),
        cmocka_unit_test(custom_authenticator_attaches_an_identity_the_handler_reads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
