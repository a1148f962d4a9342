/* JSON calls (docs/json.md), with real processes and sockets:
 *   - `ftrpc call --protoset F --data-json '{"message":"hi"}'` against `ftrpc echo-server` prints
 *     the answer as JSON; `--proto F.proto` (protoc run by the CLI) does the same;
 *   - malformed JSON, an unknown field and a wrong type each give one line on stderr naming the
 *     field and exit 2, and no request reaches the server (its count of answers says so);
 *   - over HTTP, a method with protobuf types answers `Content-Type: application/json` in JSON,
 *     refuses bad JSON with a 400 naming the field and keeps serving; an `application/proto`
 *     request is answered as application/proto (what brpc's HTTP client requires), octet-stream
 *     as octet-stream; a method of bytes takes JSON text as bytes, as before. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "echo.pb-c.h"
#include "harness.h"
#include "server/server_internal.h"

/* ---- the CLI against echo-server ---- */

static int answered_reported(void *arg)
{
    return h_server_stderr_count(arg, "answered") > 0;
}

static void cli_calls_in_json_and_refuses_bad_json_without_calling(void **state)
{
    (void)state;
    h_server srv;
    const char *sargs[] = {"--stats-on-exit", NULL};
    assert_int_equal(h_server_start(&srv, sargs), 0);
    char url[64];
    h_server_url(&srv, url, sizeof url);

    char *out = NULL, *err = NULL;
    const char *ok[] = {"call",
                        url,
                        "example.EchoService/Echo",
                        "--protoset",
                        FTRPC_TEST_PROTOSET,
                        "--data-json",
                        "{\"message\":\"hi\"}",
                        NULL};
    assert_int_equal(h_cli_run(ok, 10000, &out, &err), 0);
    assert_string_equal(out, "{\"message\":\"hi\"}\n");
    free(out);
    free(err);

    static const struct {
        const char *json, *want;
    } bad[] = {
        {"{\"message\":", "ftrpc call: --data-json: truncated JSON\n"},
        {"{\"mesage\":\"hi\"}",
         "ftrpc call: --data-json: unknown field \"mesage\" (example.EchoRequest has no such "
         "field)\n"},
        {"{\"message\":7}", "ftrpc call: --data-json: message: expected a string, not a number\n"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *args[] = {"call",
                              url,
                              "example.EchoService/Echo",
                              "--protoset",
                              FTRPC_TEST_PROTOSET,
                              "--data-json",
                              bad[i].json,
                              NULL};
        assert_int_equal(h_cli_run(args, 10000, &out, &err), 2);
        assert_string_equal(out, "");
        assert_string_equal(err, bad[i].want);
        free(out);
        free(err);
    }
    /* --data-json without types, a method the set does not have: usage errors too */
    const char *untyped[] = {"call", url, "example.EchoService/Echo", "--data-json", "{}", NULL};
    assert_int_equal(h_cli_run(untyped, 10000, NULL, NULL), 2);
    const char *nomethod[] = {
        "call", url, "example.EchoService/Nope", "--protoset", FTRPC_TEST_PROTOSET, NULL};
    assert_int_equal(h_cli_run(nomethod, 10000, NULL, &err), 2);
    assert_non_null(strstr(err, "has no method example.EchoService/Nope"));
    free(err);

    /* only the good call reached the server */
    h_server_signal(&srv, SIGTERM);
    assert_true(h_wait_until(answered_reported, &srv, 10000));
    char *log = h_server_stderr(&srv);
    const char *answered = strstr(log, "answered ");
    assert_non_null(answered);
    assert_int_equal(atoi(answered + 9), 1);
    free(log);
    h_server_stop(&srv, 10000);
}

static void cli_compiles_a_proto_with_protoc(void **state)
{
    (void)state;
    if (system("protoc --version >/dev/null 2>&1") != 0) skip();
    h_server srv;
    assert_int_equal(h_server_start(&srv, NULL), 0);
    char url[64], proto[600];
    h_server_url(&srv, url, sizeof url);
    snprintf(proto, sizeof proto, "%s/tests/proto/echo.proto", FTRPC_SOURCE_DIR);
    char *out = NULL;
    const char *args[] = {"call", url,           "example.EchoService/Echo",          "--proto",
                          proto,  "--data-json", "{\"message\":\"\\u00e9t\\u00e9\"}", NULL};
    assert_int_equal(h_cli_run(args, 20000, &out, NULL), 0);
    assert_string_equal(out, "{\"message\":\"\xc3\xa9t\xc3\xa9\"}\n");
    free(out);
    /* bench takes the same flags: every call sends the JSON's request */
    const char *bench[] = {
        "bench", url, "example.EchoService/Echo", "--proto", proto, "--data-json", "{}", "--count",
        "20",    NULL};
    assert_int_equal(h_cli_run(bench, 20000, &out, NULL), 0);
    assert_non_null(strstr(out, "20 ok, 0 errors"));
    free(out);
    /* a .proto protoc refuses: its message, then ours, exit 2; --payload with --data-json too */
    char bad[600], *err = NULL;
    snprintf(bad, sizeof bad, "%s/json-bad-%d.proto", getenv("FTRPC_SCRATCH"), (int)getpid());
    FILE *f = fopen(bad, "w");
    assert_non_null(f);
    fputs("syntax = \"proto3\";\nmessage {\n", f);
    fclose(f);
    const char *broken[] = {"call", url, "example.EchoService/Echo", "--proto", bad, NULL};
    assert_int_equal(h_cli_run(broken, 20000, NULL, &err), 2);
    assert_non_null(strstr(err, "--proto: protoc could not compile"));
    free(err);
    unlink(bad);
    const char *both[] = {"bench",   url,         "example.EchoService/Echo",
                          "--proto", proto,       "--data-json",
                          "{}",      "--payload", "8",
                          NULL};
    assert_int_equal(h_cli_run(both, 20000, NULL, &err), 2);
    assert_non_null(strstr(err, "--payload and --data-json"));
    free(err);
    h_server_stop(&srv, 10000);
}

/* ---- HTTP against an in-process server ---- */

static ftrpc_server *server;
static int port;

static void on_echo(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    ftrpc_server_call_reply(call, ftrpc_server_call_request(call), NULL);
}

/* answers bytes that are no EchoResponse */
static void on_garbage(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    ftrpc_buf *b = ftrpc_buf_new();
    ftrpc_buf_append(b, "\xff\xff\xff", 3);
    ftrpc_server_call_reply(call, b, NULL);
    ftrpc_buf_free(b);
}

static int setup(void **state)
{
    (void)state;
    const ProtobufCMethodDescriptor *echo = &example__echo_service__descriptor.methods[0];
    if (ftrpc_server_new(NULL, &server) != 0 ||
        ftrpc_server_add_method(server, "example.EchoService", "Echo", on_echo, NULL, NULL) ||
        ftrpc_server_add_method(server, "example.EchoService", "Garbage", on_garbage, NULL, NULL) ||
        ftrpc_server_add_method(server, "example.Bytes", "Echo", on_echo, NULL, NULL) ||
        ft_server_set_method_descriptor(server, "example.EchoService", "Echo", echo) ||
        ft_server_set_method_descriptor(server, "example.EchoService", "Garbage", echo) ||
        ftrpc_server_start(server, "127.0.0.1:0") != 0)
        return -1;
    port = ftrpc_server_port(server);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ftrpc_server_free(server);
    return 0;
}

/* curl -i of one POST; the response (headers and body) in a malloc'ed string. */
static char *post(const char *path, const char *type, const char *data_arg)
{
    char args[1024], *out = NULL;
    snprintf(args, sizeof args, "-i -H 'Content-Type: %s' %s http://127.0.0.1:%d%s", type, data_arg,
             port, path);
    assert_int_equal(h_curl(args, &out), 0);
    return out;
}

static void expect(const char *resp, const char *status, const char *type, const char *body)
{
    if (!strstr(resp, status) || !strstr(resp, type) || !strstr(resp, body))
        fail_msg("want %s, %s and body %s in:\n%s", status, type, body, resp);
}

/* One POST and what its answer must hold. */
static void exchange(const char *path, const char *type, const char *data_arg, const char *status,
                     const char *resp_type, const char *body)
{
    char *r = post(path, type, data_arg);
    expect(r, status, resp_type, body);
    free(r);
}

static void http_json_calls_a_method_with_types(void **state)
{
    (void)state;
    exchange("/example.EchoService/Echo", "application/json", "-d '{\"message\":\"x\"}'",
             "HTTP/1.1 200", "Content-Type: application/json", "\r\n\r\n{\"message\":\"x\"}");
    /* with a charset; an empty body is the empty message */
    exchange("/example.EchoService/Echo", "application/json; charset=utf-8", "-d ''",
             "HTTP/1.1 200", "Content-Type: application/json", "\r\n\r\n{}");
}

static void http_bad_json_is_a_400_naming_the_field(void **state)
{
    (void)state;
    static const struct {
        const char *data, *want;
    } bad[] = {
        {"-d '{\"msg\":\"x\"}'",
         "[1003] request JSON: unknown field \"msg\" (example.EchoRequest has no such field)\n"},
        {"-d '{\"message\":[1]}'", "[1003] request JSON: message: expected a string, not an "
                                   "array\n"},
        {"-d '{\"message\"'", "[1003] request JSON: truncated JSON\n"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        exchange("/example.EchoService/Echo", "application/json", bad[i].data, "HTTP/1.1 400",
                 "text/plain", bad[i].want);
    }
    /* the server is unharmed */
    exchange("/example.EchoService/Echo", "application/json", "-d '{\"message\":\"ok\"}'",
             "HTTP/1.1 200", "application/json", "{\"message\":\"ok\"}");
    /* a handler whose bytes are not its response type: a 500 that says so */
    exchange("/example.EchoService/Garbage", "application/json", "-d '{}'", "HTTP/1.1 500",
             "text/plain", "response to JSON: not a example.EchoResponse");
}

static void http_answers_in_the_form_it_was_asked(void **state)
{
    (void)state;
    char path[600];
    snprintf(path, sizeof path, "%s/json-proto-%d.bin", getenv("FTRPC_SCRATCH"), (int)getpid());
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite("\x0a\x02hi", 1, 4, f); /* EchoRequest{message: "hi"} */
    fclose(f);
    char arg[700];
    snprintf(arg, sizeof arg, "--data-binary @%s", path);
    exchange("/example.EchoService/Echo", "application/proto", arg, "HTTP/1.1 200",
             "Content-Type: application/proto", "\r\n\r\n\x0a\x02hi");
    exchange("/example.EchoService/Echo", "application/octet-stream", arg, "HTTP/1.1 200",
             "Content-Type: application/octet-stream", "\r\n\r\n\x0a\x02hi");
    unlink(path);
    /* a method of bytes takes JSON as bytes */
    exchange("/example.Bytes/Echo", "application/json", "-d '{\"any\":1}'", "HTTP/1.1 200",
             "Content-Type: application/octet-stream", "\r\n\r\n{\"any\":1}");
}

int main(void)
{
    const struct CMUnitTest cli[] = {
        cmocka_unit_test(cli_calls_in_json_and_refuses_bad_json_without_calling),
        cmocka_unit_test(cli_compiles_a_proto_with_protoc),
    };
    const struct CMUnitTest http[] = {
        cmocka_unit_test(http_json_calls_a_method_with_types),
        cmocka_unit_test(http_bad_json_is_a_400_naming_the_field),
        cmocka_unit_test(http_answers_in_the_form_it_was_asked),
    };
    int failed = cmocka_run_group_tests(cli, NULL, NULL);
    return failed + cmocka_run_group_tests(http, setup, teardown);
}
