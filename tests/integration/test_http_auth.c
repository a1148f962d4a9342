/* Authentication over HTTP on the server's port: a server started with a token answers an HTTP
 * method call and every builtin page with 401 (ERPCAUTH in the body) when the request carries no
 * credential or a wrong one, and serves it with "Authorization: Bearer TOKEN"; plain and over
 * TLS with --force-tls. /health stays open for load balancers; --public-pages opens the other
 * pages but not the methods. In process: a custom authenticator gets the whole header value, the
 * refusals are counted as baidu_std refusals are, and the admin port follows the same rule.
 *
 * curl is the client, as a user's would be: it shows the HTTP status and body a user sees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define TOKEN "s3cret-token"

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

/* The pages a token guards (GET), and the method call (POST). */
static const char *const GUARDED[] = {"/status",  "/vars",      "/vars/rpc_server_count",
                                      "/metrics", "/endpoints", "/rpcz",
                                      "/console", "/",          NULL};

typedef struct http_answer {
    int status; /* 0: curl failed */
    char *body;
} http_answer;

/* One request with curl. base is "http://127.0.0.1:PORT" or "--cacert CA https://...";
 * credential NULL sends no Authorization header; data non-NULL makes it a POST. */
static http_answer request(const char *base, const char *path, const char *credential,
                           const char *data)
{
    char args[2048], auth[256] = "", body[256] = "";
    if (credential) snprintf(auth, sizeof auth, "-H 'Authorization: %s'", credential);
    if (data) snprintf(body, sizeof body, "--data-binary '%s'", data);
    snprintf(args, sizeof args, "%s %s -w '\\n%%{http_code}' %s%s", auth, body, base, path);
    http_answer a = {0, NULL};
    char *out = NULL;
    if (h_curl(args, &out) == 0 && out) {
        char *nl = strrchr(out, '\n');
        if (nl) {
            a.status = atoi(nl + 1);
            *nl = '\0';
        }
    }
    a.body = out;
    return a;
}

static void expect(const char *base, const char *path, const char *credential, const char *data,
                   int status, const char *in_body)
{
    http_answer a = request(base, path, credential, data);
    if (a.status != status || (in_body && (!a.body || !strstr(a.body, in_body))))
        print_message("%s%s with %s: %d %s\n", base, path, credential ? credential : "nothing",
                      a.status, a.body ? a.body : "(no body)");
    assert_int_equal(a.status, status);
    if (in_body) assert_non_null(strstr(a.body, in_body));
    free(a.body);
}

/* Every guarded page and the method: 401 without a credential, with a wrong one, and with the
 * token sent the wrong way; answered with "Bearer TOKEN". /health: answered without one. */
static void expect_guarded(const char *base)
{
    const char *wrong[] = {NULL, "Bearer nope", TOKEN /* not a Bearer credential */,
                           "Bearer " TOKEN "x"};
    for (size_t w = 0; w < sizeof wrong / sizeof wrong[0]; w++) {
        expect(base, "/example.EchoService/Echo", wrong[w], "hi", 401, "[1004]");
        for (int i = 0; GUARDED[i]; i++)
            expect(base, GUARDED[i], wrong[w], NULL, 401, "authentication failed");
    }
    expect(base, "/example.EchoService/Echo", "Bearer " TOKEN, "hi", 200, "hi");
    for (int i = 0; GUARDED[i]; i++)
        expect(base, GUARDED[i], "Bearer " TOKEN, NULL, 200, NULL);
    expect(base, "/health", NULL, NULL, 200, "OK");
}

static void http_calls_and_pages_need_the_token(void **state)
{
    (void)state;
    h_server s;
    const char *sargs[] = {"--auth-token", TOKEN, NULL};
    assert_int_equal(h_server_start(&s, sargs), 0);
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", s.port);
    expect_guarded(base);
    assert_true(h_server_stderr_count(&s, "authentication failed") >= 1);
    assert_int_equal(h_server_stop(&s, 10000), 0);
}

static void https_with_force_tls_needs_the_token_too(void **state)
{
    (void)state;
    h_server s;
    const char *sargs[] = {"--auth-token", TOKEN,          "--tls-cert",  tls.server_cert,
                           "--tls-key",    tls.server_key, "--force-tls", NULL};
    assert_int_equal(h_server_start(&s, sargs), 0);
    char base[1024];
    snprintf(base, sizeof base, "--cacert %s https://127.0.0.1:%d", tls.ca, s.port);
    expect_guarded(base);
    assert_int_equal(h_server_stop(&s, 10000), 0);
}

static void public_pages_open_the_pages_but_not_the_methods(void **state)
{
    (void)state;
    h_server s;
    const char *sargs[] = {"--auth-token", TOKEN, "--public-pages", NULL};
    assert_int_equal(h_server_start(&s, sargs), 0);
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", s.port);
    for (int i = 0; GUARDED[i]; i++)
        expect(base, GUARDED[i], NULL, NULL, 200, NULL);
    expect(base, "/example.EchoService/Echo", NULL, "hi", 401, "[1004]");
    expect(base, "/example.EchoService/Echo", "Bearer " TOKEN, "hi", 200, "hi");
    /* a path that is no page is not a page: it still needs the credential */
    expect(base, "/no-such-page", NULL, NULL, 401, NULL);
    assert_int_equal(h_server_stop(&s, 10000), 0);
}

/* ---- in process: a custom authenticator, the counters, the admin port ---- */

static int verify_header(const uint8_t *data, size_t len, char *identity, size_t size, void *arg)
{
    (void)arg;
    static const char WANT[] = "Signature alice:42";
    if (!data || len != sizeof WANT - 1 || memcmp(data, WANT, len) != 0) return -1;
    snprintf(identity, size, "alice");
    return 0;
}

static void whoami(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    ftrpc_buf *b = ftrpc_buf_new();
    const char *who = ftrpc_server_call_identity(call);
    ftrpc_buf_append(b, who, strlen(who));
    ftrpc_server_call_reply(call, b, NULL);
    ftrpc_buf_free(b);
}

static void a_custom_authenticator_gets_the_whole_header_and_refusals_are_counted(void **state)
{
    (void)state;
    ftrpc_server *server = NULL;
    assert_int_equal(
        ftrpc_server_new(&(ftrpc_server_options){.authenticator = verify_header}, &server), 0);
    assert_int_equal(ftrpc_server_add_method(server, "example.Who", "Am", whoami, NULL, NULL), 0);
    assert_int_equal(ftrpc_server_start(server, "127.0.0.1:0"), 0);
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", ftrpc_server_port(server));
    expect(base, "/example.Who/Am", "Signature alice:42", "x", 200, "alice");
    expect(base, "/example.Who/Am", "Signature mallory:1", "x", 401, "[1004]");
    expect(base, "/example.Who/Am", NULL, "x", 401, "[1004]");
    expect(base, "/metrics", NULL, NULL, 401, NULL);
    ftrpc_server_stats st;
    ftrpc_server_stats_get(server, &st);
    assert_int_equal(st.auth_failures, 3);
    ftrpc_server_free(server);
}

static void the_admin_port_follows_the_same_rule(void **state)
{
    (void)state;
    ftrpc_admin *admin = NULL;
    assert_int_equal(
        ftrpc_admin_new("127.0.0.1:0", &(ftrpc_server_options){.auth_token = TOKEN}, &admin), 0);
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", ftrpc_admin_port(admin));
    expect(base, "/metrics", NULL, NULL, 401, NULL);
    expect(base, "/metrics", "Bearer nope", NULL, 401, NULL);
    expect(base, "/metrics", "Bearer " TOKEN, NULL, 200, NULL);
    expect(base, "/health", NULL, NULL, 200, "OK");
    ftrpc_admin_free(admin);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(http_calls_and_pages_need_the_token),
        cmocka_unit_test(https_with_force_tls_needs_the_token_too),
        cmocka_unit_test(public_pages_open_the_pages_but_not_the_methods),
        cmocka_unit_test(a_custom_authenticator_gets_the_whole_header_and_refusals_are_counted),
        cmocka_unit_test(the_admin_port_follows_the_same_rule),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
