/* The client over gRPC (ftrpc_client_options.protocol = FTRPC_PROTOCOL_GRPC) against real grpcio
 * servers (tests/integration/grpc_peer.py server) and gRPC C++ servers
 * (tests/integration/grpc_cpp_peer.cc server, the same command line and output): answers, every
 * status read back as docs/grpc.md says, the deadline sent as grpc-timeout (the server sees the
 * call cancelled when it passes), failover past a killed gRPC server with no call lost, and a
 * backup to a slow server that wins while the slow server sees the loser cancelled (RST_STREAM).
 * And against ftrpc's own gRPC server, the CLI's --protocol grpc. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ftrpc/ftrpc.h"
#include "harness.h"

/* A gRPC server program (NULL: the C++ peer, h_grpc_cpp_peer) and the script it runs, if any. A
 * test's state is the peer it runs with (none: grpcio). */
typedef struct grpc_peer {
    const char *program, *script;
} grpc_peer;

static const grpc_peer GRPCIO = {"/usr/bin/python3", FTRPC_TESTS_DIR "/integration/grpc_peer.py"};
static const grpc_peer GRPC_CPP = {NULL, NULL};

static void start_peer(const grpc_peer *who, h_server *s, const char *delay_ms)
{
    const char *args[6], **a = args;
    if (who->script) *a++ = who->script;
    *a++ = "server";
    if (delay_ms) {
        *a++ = "--delay-ms";
        *a++ = delay_ms;
    }
    *a = NULL;
    const char *program = who->program ? who->program : h_grpc_cpp_peer();
    assert_non_null(program);
    assert_int_equal(h_program_start(s, program, args), 0);
}

static ftrpc_client *grpc_client(const char *url, ftrpc_client_options o)
{
    o.protocol = FTRPC_PROTOCOL_GRPC;
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(url, &o, &c), 0);
    return c;
}

static int call(ftrpc_client *c, const char *method, const char *data, int timeout_ms,
                ftrpc_result *r)
{
    ftrpc_buf *req = ftrpc_buf_new();
    ftrpc_buf_append(req, data, strlen(data));
    ftrpc_call_options co = {.timeout_ms = timeout_ms};
    int rc = ftrpc_call(c, "example.EchoService", method, req, NULL, &co, r);
    ftrpc_buf_free(req);
    return rc;
}

/* Answers and each status mapped back to ftrpc's codes. */
static void statuses_of_a_grpcio_server_read_back(void **state)
{
    const grpc_peer *who = *state ? *state : &GRPCIO;
    h_server s;
    start_peer(who, &s, NULL);
    char url[64];
    snprintf(url, sizeof url, "list://127.0.0.1:%d", s.port);
    ftrpc_client *c = grpc_client(url, (ftrpc_client_options){.fail_mode = FTRPC_FAILFAST});
    ftrpc_result r;
    assert_int_equal(call(c, "Echo", "hello grpc", 5000, &r), 0);
    assert_int_equal(r.kind, FTRPC_RESULT_OK);
    char out[32] = "";
    ftrpc_buf_copy_to(r.response, out, sizeof out - 1);
    assert_string_equal(out, "hello grpc");
    ftrpc_result_fini(&r);

    static const struct {
        const char *status;
        ftrpc_result_kind kind;
        int code;
    } CASES[] = {
        {"NOT_FOUND", FTRPC_RESULT_BUSINESS_ERROR, 3005},
        {"PERMISSION_DENIED", FTRPC_RESULT_BUSINESS_ERROR, 3007},
        {"FAILED_PRECONDITION", FTRPC_RESULT_BUSINESS_ERROR, 3009},
        {"INVALID_ARGUMENT", FTRPC_RESULT_RPC_ERROR, FTRPC_EREQUEST},
        {"RESOURCE_EXHAUSTED", FTRPC_RESULT_RPC_ERROR, FTRPC_ELIMIT},
        {"UNAVAILABLE", FTRPC_RESULT_RPC_ERROR, FTRPC_ELOGOFF},
        {"INTERNAL", FTRPC_RESULT_RPC_ERROR, FTRPC_EINTERNAL},
        {"UNKNOWN", FTRPC_RESULT_RPC_ERROR, FTRPC_EINTERNAL},
        {"UNAUTHENTICATED", FTRPC_RESULT_RPC_ERROR, FTRPC_ERPCAUTH},
        {"UNIMPLEMENTED", FTRPC_RESULT_RPC_ERROR, FTRPC_ENOMETHOD},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        call(c, "Fail", CASES[i].status, 5000, &r);
        if ((int)r.kind != (int)CASES[i].kind || r.code != CASES[i].code)
            print_message("%s: kind %d code %d (%s)\n", CASES[i].status, r.kind, r.code,
                          r.error_text);
        assert_int_equal(r.kind, CASES[i].kind);
        assert_int_equal(r.code, CASES[i].code);
        assert_non_null(strstr(r.error_text, "failed with"));
        ftrpc_result_fini(&r);
    }
    /* an unknown method, as grpcio answers it */
    call(c, "NoSuchMethod", "", 5000, &r);
    assert_int_equal(r.code, FTRPC_ENOMETHOD);
    ftrpc_result_fini(&r);
    /* the deadline: the server is told (grpc-timeout) and sees the call cancelled */
    call(c, "Slow", "", 300, &r);
    assert_int_equal(r.code, FTRPC_ERPCTIMEDOUT);
    ftrpc_result_fini(&r);
    char buf[512] = "";
    size_t len = 0;
    assert_true(h_child_wait_output(&s, buf, sizeof buf, &len, "cancelled Slow", 5000));
    ftrpc_client_free(c);
    h_server_kill(&s);
}

/* Failover over gRPC: a server killed between calls costs no call. */
static void failover_past_a_killed_grpc_server(void **state)
{
    const grpc_peer *who = *state ? *state : &GRPCIO;
    h_server a, b;
    start_peer(who, &a, NULL);
    start_peer(who, &b, NULL);
    char url[96];
    snprintf(url, sizeof url, "list://127.0.0.1:%d,127.0.0.1:%d", a.port, b.port);
    ftrpc_client *c = grpc_client(
        url, (ftrpc_client_options){.fail_mode = FTRPC_FAILOVER, .lb = "rr", .retries = 3});
    int ok = 0, answered_by_b = 0;
    char b_name[32];
    snprintf(b_name, sizeof b_name, "127.0.0.1:%d", b.port);
    for (int i = 0; i < 40; i++) {
        if (i == 10) h_server_kill(&a);
        ftrpc_result r;
        if (call(c, "Echo", "x", 5000, &r) == 0 && r.kind == FTRPC_RESULT_OK) ok++;
        if (i >= 10 && !strcmp(r.endpoint, b_name)) answered_by_b++;
        ftrpc_result_fini(&r);
    }
    assert_int_equal(ok, 40);
    assert_int_equal(answered_by_b, 30);
    ftrpc_client_free(c);
    h_server_kill(&b);
}

/* A backup to another server wins over a slow one; the slow one sees its call cancelled. */
static void backup_wins_and_the_slow_server_sees_the_loser_cancelled(void **state)
{
    const grpc_peer *who = *state ? *state : &GRPCIO;
    h_server slow, fast;
    start_peer(who, &slow, "3000");
    start_peer(who, &fast, NULL);
    char url[96];
    snprintf(url, sizeof url, "list://127.0.0.1:%d,127.0.0.1:%d", slow.port, fast.port);
    ftrpc_client *c =
        grpc_client(url, (ftrpc_client_options){
                             .fail_mode = FTRPC_FAILBACKUP, .backup_request_ms = 100, .lb = "rr"});
    int won = 0;
    for (int i = 0; i < 2; i++) { /* round robin: one of the two goes to the slow one first */
        ftrpc_result r;
        assert_int_equal(call(c, "Echo", "b", 10000, &r), 0);
        assert_int_equal(r.kind, FTRPC_RESULT_OK);
        won += r.backup_won;
        ftrpc_result_fini(&r);
    }
    assert_int_equal(won, 1);
    char buf[512] = "";
    size_t len = 0;
    assert_true(h_child_wait_output(&slow, buf, sizeof buf, &len, "cancelled Echo", 5000));
    ftrpc_client_free(c);
    h_server_kill(&slow);
    h_server_kill(&fast);
}

/* protocol=grpc in the naming URL makes a client with default options speak gRPC, whatever the
 * scheme (list:// and file:// here; the rest in unit.test_naming_url); an unknown value, or
 * options that say otherwise, are named errors. */
static void protocol_in_the_naming_url(void **state)
{
    const grpc_peer *who = *state ? *state : &GRPCIO;
    h_server s;
    start_peer(who, &s, NULL);
    char dir[512], path[600], url[700];
    assert_int_equal(h_scratch_mkdtemp("grpc_url", dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/servers", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "127.0.0.1:%d\n", s.port);
    fclose(f);
    for (int i = 0; i < 2; i++) {
        if (i == 0)
            snprintf(url, sizeof url, "list://127.0.0.1:%d?protocol=grpc", s.port);
        else
            snprintf(url, sizeof url, "file://%s?protocol=grpc", path);
        ftrpc_client *c = NULL;
        assert_int_equal(ftrpc_client_new(url, NULL, &c), 0);
        ftrpc_result r;
        assert_int_equal(call(c, "Echo", "by url", 5000, &r), 0);
        if (r.kind != FTRPC_RESULT_OK) print_message("%s: %s\n", url, r.error_text);
        assert_int_equal(r.kind, FTRPC_RESULT_OK);
        ftrpc_result_fini(&r);
        ftrpc_client_free(c);
    }
    ftrpc_client *c = NULL;
    snprintf(url, sizeof url, "127.0.0.1:%d?protocol=h3", s.port);
    assert_int_equal(ftrpc_client_new(url, NULL, &c), FTRPC_EADDR);
    snprintf(url, sizeof url, "list://127.0.0.1:%d?protocol=grpc", s.port);
    ftrpc_client_options o = {.protocol = FTRPC_PROTOCOL_BAIDU_STD};
    assert_int_equal(ftrpc_client_new(url, &o, &c), FTRPC_EINVAL);
    assert_null(c);
    h_rmtree(dir);
    h_server_kill(&s);
}

/* The CLI calls ftrpc's own gRPC server with --protocol grpc; a wrong value is named. */
static void cli_calls_over_grpc(void **state)
{
    (void)state;
    h_server s;
    assert_int_equal(h_server_start(&s, NULL), 0);
    char url[64];
    snprintf(url, sizeof url, "127.0.0.1:%d", s.port);
    const char *args[] = {
        "call", url, "example.EchoService/Echo", "--data", "via grpc", "--protocol", "grpc", NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(h_cli_run(args, 10000, &out, &err), 0);
    assert_non_null(strstr(out, "via grpc"));
    free(out);
    free(err);
    const char *bad[] = {"call", url, "example.EchoService/Echo", "--protocol", "h3", NULL};
    assert_int_equal(h_cli_run(bad, 10000, &out, &err), 2);
    assert_non_null(strstr(err, "--protocol wants baidu_std or grpc"));
    free(out);
    free(err);
    h_server_stop(&s, 5000);

    /* over TLS: the client offers ALPN h2, the server takes it and sniffs gRPC's preface */
    h_tls_files tls;
    assert_int_equal(h_tls_make(&tls), 0);
    const char *targs[] = {"--tls-cert", tls.server_cert, "--tls-key", tls.server_key, NULL};
    assert_int_equal(h_server_start(&s, targs), 0);
    snprintf(url, sizeof url, "127.0.0.1:%d", s.port);
    const char *sargs[] = {"call",   url,          "example.EchoService/Echo",
                           "--data", "via h2 tls", "--protocol",
                           "grpc",   "--tls-ca",   tls.ca,
                           NULL};
    assert_int_equal(h_cli_run(sargs, 10000, &out, &err), 0);
    assert_non_null(strstr(out, "via h2 tls"));
    free(out);
    free(err);
    h_server_stop(&s, 5000);
    h_tls_remove(&tls);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(statuses_of_a_grpcio_server_read_back),
        cmocka_unit_test(failover_past_a_killed_grpc_server),
        cmocka_unit_test(backup_wins_and_the_slow_server_sees_the_loser_cancelled),
        /* the same cases against gRPC C++ servers */
        {"statuses_of_a_grpc_cpp_server_read_back", statuses_of_a_grpcio_server_read_back, NULL,
         NULL, (void *)&GRPC_CPP},
        {"failover_past_a_killed_grpc_cpp_server", failover_past_a_killed_grpc_server, NULL, NULL,
         (void *)&GRPC_CPP},
        {"backup_wins_and_the_slow_grpc_cpp_server_sees_the_loser_cancelled",
         backup_wins_and_the_slow_server_sees_the_loser_cancelled, NULL, NULL, (void *)&GRPC_CPP},
        cmocka_unit_test(protocol_in_the_naming_url),
        cmocka_unit_test(cli_calls_over_grpc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
