/* TLS on the server port (docs/security.md), with certificates the test makes at run time with the
 * openssl command (h_tls_make: a CA, a server certificate for 127.0.0.1 and localhost, a client
 * certificate, a second CA that signed nothing, and a certificate for another name).
 *
 * Shown through the CLI (echo-server children, `ftrpc call`, curl): a TLS call works and a plain
 * call and curl's https and http share its port; a wrong CA or a wrong name fails the call with
 * FTRPC_ETLS and OpenSSL's reason after one attempt; mutual TLS refuses a client without a
 * certificate (and, optional, serves it); --force-tls refuses plain calls. Through the API (an
 * in-process server): plain and TLS clients under load on one port while connections that send
 * garbage after 0x16, or stall in the handshake, are closed; large payloads cross TLS intact; a
 * TLS failure is FTRPC_ETLS, not retried on another endpoint, with its reason in the result.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static h_tls_files tls;

static int setup(void **state)
{
    (void)state;
    return h_tls_make(&tls);
}

static int teardown(void **state)
{
    (void)state;
    h_tls_remove(&tls);
    return 0;
}

/* `ftrpc call URL example.EchoService/Echo --data DATA --verbose EXTRA...`: exit code; out, err
 * (may be NULL) are the caller's to free. */
static int cli_call(const char *url, const char *data, const char *const *extra, char **out,
                    char **err)
{
    const char *args[32] = {"call", url, "example.EchoService/Echo", "--data", data, "--verbose"};
    int n = 6;
    /* under memcheck a TLS handshake alone can outlast the CLI's default 1 s deadline
     * (FTRPC_ERPCTIMEDOUT after 1,026 ms instead of the call's real outcome): 10 times it */
    if (H_UNDER_VALGRIND) {
        args[n++] = "--timeout-ms";
        args[n++] = "10000";
    }
    for (int i = 0; extra && extra[i] && n < 31; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    return h_cli_run(args, 15000, out, err);
}

/* The call succeeds and prints its payload back. */
static void expect_echo(const char *url, const char *data, const char *const *extra)
{
    char *out = NULL, *err = NULL;
    int rc = cli_call(url, data, extra, &out, &err);
    if (rc != 0) print_message("ftrpc call %s failed: %s", url, err);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, data));
    free(out);
    free(err);
}

static void tls_call_works_and_plain_calls_and_curl_https_share_its_port(void **state)
{
    (void)state;
    h_server s;
    const char *sargs[] = {"--tls-cert", tls.server_cert, "--tls-key", tls.server_key, NULL};
    assert_int_equal(h_server_start(&s, sargs), 0);
    char url[64], *out = NULL;
    h_server_url(&s, url, sizeof url);

    const char *with_ca[] = {"--tls", "--tls-ca", tls.ca, NULL};
    expect_echo(url, "over-tls", with_ca);
    /* by name: the certificate's DNS SAN, and SNI */
    char by_name[64];
    snprintf(by_name, sizeof by_name, "localhost:%d", s.port);
    expect_echo(by_name, "by-name", with_ca);
    /* the same port, plain */
    expect_echo(url, "plain", NULL);

    /* curl: the health page over TLS, then over plain HTTP, on that same port */
    char args[1024];
    snprintf(args, sizeof args, "--cacert %s https://127.0.0.1:%d/health", tls.ca, s.port);
    assert_int_equal(h_curl(args, &out), 0);
    print_message("curl https /health: %s\n", out);
    assert_non_null(strstr(out, "OK"));
    free(out);
    snprintf(args, sizeof args, "http://127.0.0.1:%d/health", s.port);
    assert_int_equal(h_curl(args, &out), 0);
    assert_non_null(strstr(out, "OK"));
    free(out);
    /* curl with the wrong CA fails on its side, and the server logs the closed handshake */
    snprintf(args, sizeof args, "--cacert %s https://127.0.0.1:%d/health", tls.wrong_ca, s.port);
    assert_int_not_equal(h_curl(args, NULL), 0);
    assert_int_equal(h_server_stop(&s, 10000), 0);
}

/* A failed call's stderr names FTRPC_ETLS, the reason, and one attempt: TLS failures are not
 * retried (the client's default is failover with 3 retries). */
static void expect_tls_failure(const char *url, const char *const *extra, const char *reason)
{
    char *out = NULL, *err = NULL;
    assert_int_equal(cli_call(url, "x", extra, &out, &err), 1);
    print_message("%s", err);
    assert_non_null(strstr(err, "FTRPC_ETLS"));
    assert_non_null(strstr(err, reason));
    assert_non_null(strstr(err, "attempts=1 "));
    free(out);
    free(err);
}

static void wrong_ca_or_wrong_name_fails_the_call_with_etls_after_one_attempt(void **state)
{
    (void)state;
    h_server s, other;
    const char *sargs[] = {"--tls-cert", tls.server_cert, "--tls-key", tls.server_key, NULL};
    const char *oargs[] = {"--tls-cert", tls.other_cert, "--tls-key", tls.other_key, NULL};
    assert_int_equal(h_server_start(&s, sargs), 0);
    assert_int_equal(h_server_start(&other, oargs), 0);
    char url[64], ourl[64];
    h_server_url(&s, url, sizeof url);
    h_server_url(&other, ourl, sizeof ourl);

    const char *wrong_ca[] = {"--tls", "--tls-ca", tls.wrong_ca, NULL};
    expect_tls_failure(url, wrong_ca, "certificate verify failed");
    const char *wrong_name[] = {"--tls-ca", tls.ca, "--tls-server-name", "wrong.example", NULL};
    expect_tls_failure(url, wrong_name, "hostname mismatch");
    /* a certificate for other.example, reached at 127.0.0.1: no IP SAN matches */
    const char *right_ca[] = {"--tls", "--tls-ca", tls.ca, NULL};
    expect_tls_failure(ourl, right_ca, "IP address mismatch");
    /* its own name passes */
    const char *its_name[] = {"--tls-ca", tls.ca, "--tls-server-name", "other.example", NULL};
    expect_echo(ourl, "named", its_name);
    /* the server side: a logged, closed connection */
    assert_true(h_server_stderr_count(&s, "TLS handshake with") >= 1);
    assert_int_equal(h_server_stop(&s, 10000), 0);
    assert_int_equal(h_server_stop(&other, 10000), 0);
}

static void mutual_tls_refuses_a_client_without_a_certificate(void **state)
{
    (void)state;
    h_server req, opt;
    const char *rargs[] = {"--tls-cert",      tls.server_cert, "--tls-key", tls.server_key,
                           "--tls-client-ca", tls.ca,          NULL};
    const char *oargs[] = {"--tls-cert", tls.server_cert, "--tls-key", tls.server_key,
                           "--tls-ca",   tls.ca,          NULL};
    assert_int_equal(h_server_start(&req, rargs), 0);
    assert_int_equal(h_server_start(&opt, oargs), 0);
    char url[64], ourl[64], *out = NULL, *err = NULL;
    h_server_url(&req, url, sizeof url);
    h_server_url(&opt, ourl, sizeof ourl);

    const char *no_cert[] = {"--tls-ca", tls.ca, NULL};
    expect_tls_failure(url, no_cert, "certificate required");
    /* a certificate from another CA is refused too */
    const char *self_signed[] = {"--tls-ca",  tls.ca, "--tls-cert", tls.wrong_ca,
                                 "--tls-key", NULL,   NULL};
    char wrong_key[700];
    snprintf(wrong_key, sizeof wrong_key, "%s/wrong-ca.key", tls.dir);
    self_signed[5] = wrong_key;
    assert_int_equal(cli_call(url, "x", self_signed, &out, &err), 1);
    assert_non_null(strstr(err, "FTRPC_ETLS"));
    free(out);
    free(err);
    const char *with_cert[] = {"--tls-ca",  tls.ca,         "--tls-cert", tls.client_cert,
                               "--tls-key", tls.client_key, NULL};
    expect_echo(url, "mutual", with_cert);
    assert_true(h_server_stderr_count(&req, "TLS handshake with") >= 1);

    /* optional: asked for, not required */
    expect_echo(ourl, "anonymous", no_cert);
    expect_echo(ourl, "known", with_cert);
    assert_int_equal(h_server_stop(&req, 10000), 0);
    assert_int_equal(h_server_stop(&opt, 10000), 0);
}

static void force_tls_refuses_plain_calls(void **state)
{
    (void)state;
    h_server s;
    const char *sargs[] = {"--tls-cert",   tls.server_cert, "--tls-key",
                           tls.server_key, "--force-tls",   NULL};
    assert_int_equal(h_server_start(&s, sargs), 0);
    char url[64], *out = NULL, *err = NULL;
    h_server_url(&s, url, sizeof url);
    const char *failfast[] = {"--fail-mode", "failfast", NULL};
    assert_int_equal(cli_call(url, "plain", failfast, &out, &err), 1);
    print_message("plain call to a --force-tls server: %s", err);
    free(out);
    free(err);
    const char *with_ca[] = {"--tls-ca", tls.ca, NULL};
    expect_echo(url, "secure", with_ca);
    char args[1024];
    snprintf(args, sizeof args, "http://127.0.0.1:%d/health", s.port);
    assert_int_not_equal(h_curl(args, NULL), 0);
    snprintf(args, sizeof args, "--cacert %s https://127.0.0.1:%d/health", tls.ca, s.port);
    assert_int_equal(h_curl(args, NULL), 0);
    assert_true(h_server_stderr_count(&s, "TLS is forced") >= 1);
    assert_int_equal(h_server_stop(&s, 10000), 0);
}

/* ---- the API, in process ---- */

static void on_echo(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    ftrpc_server_call_reply(call, ftrpc_server_call_request(call),
                            ftrpc_server_call_attachment(call));
}

static ftrpc_server *tls_server(const ftrpc_server_tls_options *to, int header_timeout_ms)
{
    ftrpc_server *s = NULL;
    ftrpc_server_options so = {.tls = *to, .http_header_timeout_ms = header_timeout_ms};
    assert_int_equal(ftrpc_server_new(&so, &s), 0);
    assert_int_equal(ftrpc_server_add_method(s, "example.EchoService", "Echo", on_echo, NULL, NULL),
                     0);
    assert_int_equal(ftrpc_server_start(s, "127.0.0.1:0"), 0);
    return s;
}

static ftrpc_client *client_to(const char *url, const ftrpc_client_tls_options *to)
{
    ftrpc_client *c = NULL;
    ftrpc_client_options co = {.timeout_ms = 5000};
    if (to) co.tls = *to;
    assert_int_equal(ftrpc_client_new(url, &co, &c), 0);
    return c;
}

static void plain_and_tls_clients_share_a_port_while_bad_handshakes_are_closed(void **state)
{
    (void)state;
    ftrpc_server_tls_options sto = {.cert_file = tls.server_cert, .key_file = tls.server_key};
    ftrpc_server *s = tls_server(&sto, 1000);
    int port = ftrpc_server_port(s);
    char url[64];
    snprintf(url, sizeof url, "127.0.0.1:%d", port);
    ftrpc_client_tls_options cto = {.enable = 1, .ca_file = tls.ca};
    ftrpc_client *plain = client_to(url, NULL), *secure = client_to(url, &cto);

    h_load lp = {.client = plain, .window = 8, .max_calls = 1000000};
    h_load ls = {.client = secure, .window = 8, .max_calls = 1000000};
    assert_int_equal(h_load_start(&lp), 0);
    assert_int_equal(h_load_start(&ls), 0);
    assert_true(h_load_wait_done(&lp, 200, 10000));
    assert_true(h_load_wait_done(&ls, 200, 10000));

    /* garbage after a first byte 0x16: each such connection is closed, nothing else is hurt */
    static const char garbage[] = "\x16\x03\x01\x00\x05hello, this is not a ClientHello at all";
    for (int i = 0; i < 20; i++) {
        int fd = h_raw_connect(port);
        assert_true(fd >= 0);
        assert_int_equal(h_raw_send(fd, garbage, sizeof garbage - 1), 0);
        assert_true(h_raw_wait_closed(fd, 3000));
        close(fd);
    }
    /* a handshake that never completes is closed by the header timeout (1 s here) */
    int stalled = h_raw_connect(port);
    assert_true(stalled >= 0);
    assert_int_equal(h_raw_send(stalled, "\x16\x03\x01", 3), 0);
    int64_t t0 = h_now_ms();
    assert_true(h_raw_wait_closed(stalled, 5000));
    print_message("a stalled handshake was closed after %lld ms\n", (long long)(h_now_ms() - t0));
    close(stalled);

    /* large payloads: many records each way, and the writev of more than the kernel takes */
    for (size_t len = 100000; len <= 4000000; len *= 40) {
        ftrpc_buf *req = h_pattern_buf(len, (unsigned)len);
        ftrpc_result r;
        assert_int_equal(ftrpc_call(secure, "example.EchoService", "Echo", req, req, NULL, &r), 0);
        assert_true(h_pattern_check(r.response, len, (unsigned)len));
        assert_true(h_pattern_check(r.attachment, len, (unsigned)len));
        ftrpc_result_fini(&r);
        ftrpc_buf_free(req);
    }

    int bp = atomic_load(&lp.done), bs = atomic_load(&ls.done);
    assert_true(h_load_wait_done(&lp, bp + 200, 10000));
    assert_true(h_load_wait_done(&ls, bs + 200, 10000));
    assert_true(h_load_stop(&lp, 10000));
    assert_true(h_load_stop(&ls, 10000));
    print_message("plain calls %d (failed %d), TLS calls %d (failed %d)\n", atomic_load(&lp.done),
                  atomic_load(&lp.failed), atomic_load(&ls.done), atomic_load(&ls.failed));
    assert_int_equal(atomic_load(&lp.failed), 0);
    assert_int_equal(atomic_load(&ls.failed), 0);
    assert_int_equal(atomic_load(&ls.duplicates), 0);
    ftrpc_client_free(plain);
    ftrpc_client_free(secure);
    h_load_fini(&lp);
    h_load_fini(&ls);
    ftrpc_server_stats st;
    ftrpc_server_stats_get(s, &st);
    print_message("server: tls_failures %lld\n", (long long)st.tls_failures);
    assert_true(st.tls_failures >= 20);
    assert_int_equal(st.plain_refused, 0);
    ftrpc_server_free(s);
}

static void a_tls_failure_is_etls_with_its_reason_and_is_not_retried_elsewhere(void **state)
{
    (void)state;
    ftrpc_server_tls_options sto = {.cert_file = tls.server_cert, .key_file = tls.server_key};
    ftrpc_server *a = tls_server(&sto, 0), *b = tls_server(&sto, 0);
    char url[128];
    snprintf(url, sizeof url, "list://127.0.0.1:%d,127.0.0.1:%d", ftrpc_server_port(a),
             ftrpc_server_port(b));
    /* failover with 3 retries and two endpoints: a retryable error would try the other one */
    ftrpc_client_tls_options wrong = {.enable = 1, .ca_file = tls.wrong_ca};
    ftrpc_client *c = client_to(url, &wrong);
    ftrpc_result r;
    assert_int_equal(ftrpc_call(c, "example.EchoService", "Echo", NULL, NULL, NULL, &r),
                     FTRPC_ETLS);
    print_message("result: %s\n", r.error_text);
    assert_int_equal(r.kind, FTRPC_RESULT_RPC_ERROR);
    assert_int_equal(r.attempts, 1);
    assert_non_null(strstr(r.error_text, "certificate verify failed"));
    ftrpc_result_fini(&r);
    ftrpc_client_free(c);

    /* options are checked at creation */
    ftrpc_client_tls_options no_key = {
        .enable = 1, .ca_file = tls.ca, .cert_file = tls.client_cert};
    ftrpc_client_options co = {.tls = no_key};
    assert_int_equal(ftrpc_client_new(url, &co, &c), FTRPC_EINVAL);
    co.tls = (ftrpc_client_tls_options){.enable = 1, .ca_file = "/nonexistent/ca.pem"};
    assert_int_equal(ftrpc_client_new(url, &co, &c), FTRPC_ETLS);
    ftrpc_server *bad = NULL;
    ftrpc_server_options so = {.tls = {.cert_file = tls.server_cert, .key_file = tls.client_key}};
    assert_int_equal(ftrpc_server_new(&so, &bad), FTRPC_ETLS); /* key of another certificate */
    so.tls = (ftrpc_server_tls_options){.force = 1};
    assert_int_equal(ftrpc_server_new(&so, &bad), FTRPC_EINVAL);

    /* mutual TLS through the API: the client's certificate opens the door */
    ftrpc_server_tls_options mto = {
        .cert_file = tls.server_cert, .key_file = tls.server_key, .client_ca_file = tls.ca};
    ftrpc_server *m = tls_server(&mto, 0);
    snprintf(url, sizeof url, "localhost:%d", ftrpc_server_port(m));
    ftrpc_client_tls_options mine = {
        .enable = 1, .ca_file = tls.ca, .cert_file = tls.client_cert, .key_file = tls.client_key};
    c = client_to(url, &mine);
    assert_int_equal(ftrpc_call(c, "example.EchoService", "Echo", NULL, NULL, NULL, &r), 0);
    ftrpc_result_fini(&r);
    ftrpc_client_free(c);

    ftrpc_server_stats st;
    ftrpc_server_stats_get(a, &st);
    ftrpc_server_stats sb;
    ftrpc_server_stats_get(b, &sb);
    print_message("tls_failures a %lld b %lld\n", (long long)st.tls_failures,
                  (long long)sb.tls_failures);
    assert_true(st.tls_failures + sb.tls_failures <= 1); /* one attempt, one handshake */
    ftrpc_server_free(a);
    ftrpc_server_free(b);
    ftrpc_server_free(m);
}

/* OpenSSL is loaded at the first TLS context, not linked: an echo-server without TLS maps neither
 * libssl nor libcrypto (1.7 MiB of an idle server's 4.9 MiB RSS, issue #26), and one with a
 * certificate loads them at its start and serves TLS. */
static void openssl_is_loaded_only_by_a_process_that_uses_tls(void **state)
{
    (void)state;
    h_server plain, secure;
    assert_int_equal(h_server_start(&plain, NULL), 0);
    const char *sargs[] = {"--tls-cert", tls.server_cert, "--tls-key", tls.server_key, NULL};
    assert_int_equal(h_server_start(&secure, sargs), 0);
    char url[64];
    h_server_url(&plain, url, sizeof url);
    expect_echo(url, "plain-only", NULL);
    assert_int_equal(h_maps_file(plain.pid, "libssl"), 0);
    assert_int_equal(h_maps_file(plain.pid, "libcrypto"), 0);
    assert_int_equal(h_maps_file(secure.pid, "libssl"), 1);
    assert_int_equal(h_maps_file(secure.pid, "libcrypto"), 1);
    h_server_url(&secure, url, sizeof url);
    const char *with_ca[] = {"--tls", "--tls-ca", tls.ca, NULL};
    expect_echo(url, "loaded-late", with_ca);
    assert_int_equal(h_server_stop(&secure, 10000), 0);
    assert_int_equal(h_server_stop(&plain, 10000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tls_call_works_and_plain_calls_and_curl_https_share_its_port),
        cmocka_unit_test(wrong_ca_or_wrong_name_fails_the_call_with_etls_after_one_attempt),
        cmocka_unit_test(mutual_tls_refuses_a_client_without_a_certificate),
        cmocka_unit_test(force_tls_refuses_plain_calls),
        cmocka_unit_test(plain_and_tls_clients_share_a_port_while_bad_handshakes_are_closed),
        cmocka_unit_test(a_tls_failure_is_etls_with_its_reason_and_is_not_retried_elsewhere),
        cmocka_unit_test(openssl_is_loaded_only_by_a_process_that_uses_tls),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
