/* The ftrpc CLI: `call` prints the response and exits 0, exits non-zero with the error code on
 * stderr for an unknown method and for a dead address; `--help` works for every command; usage
 * errors (a bad client flag, a stray argument, an output file that cannot be written) exit 2 at
 * once with a message naming what is wrong; a server that cannot listen says why. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static h_server server;
static char url[64];

static int group_setup(void **state)
{
    (void)state;
    if (h_server_start(&server, NULL) != 0) return -1;
    h_server_url(&server, url, sizeof url);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return h_server_stop(&server, 10000) == 0 ? 0 : -1;
}

static void call_prints_the_response_and_exits_zero(void **state)
{
    (void)state;
    char *out = NULL, *err = NULL;
    const char *args[] = {"call", url, "example.EchoService/Echo", "--data", "hello", NULL};
    assert_int_equal(h_cli_run(args, 10000, &out, &err), 0);
    assert_string_equal(out, "hello\n");
    free(out);
    free(err);
}

static void call_prints_the_attachment_too(void **state)
{
    (void)state;
    char *out = NULL;
    const char *args[] = {
        "call", url, "example.EchoService/Echo", "--data", "hello", "--attachment", "att", NULL};
    assert_int_equal(h_cli_run(args, 10000, &out, NULL), 0);
    assert_string_equal(out, "hello\nattachment: att\n");
    free(out);
}

static void call_to_an_unknown_method_exits_nonzero_with_the_code(void **state)
{
    (void)state;
    char *out = NULL, *err = NULL;
    const char *args[] = {"call", url, "example.EchoService/Nope", NULL};
    int rc = h_cli_run(args, 10000, &out, &err);
    assert_true(rc > 0);
    assert_non_null(strstr(err, "-1002"));
    assert_non_null(strstr(err, "FTRPC_ENOMETHOD"));
    assert_string_equal(out, "");
    free(out);
    free(err);
}

static void call_to_a_dead_address_exits_nonzero_with_the_code(void **state)
{
    (void)state;
    h_server dead;
    assert_int_equal(h_server_start(&dead, NULL), 0);
    char dead_url[64];
    h_server_url(&dead, dead_url, sizeof dead_url);
    h_server_kill(&dead);
    char *err = NULL;
    /* a 20 s deadline: an exit well before it shows the refusal was not waited out (the bound
     * below leaves room for a sanitizer build's slow process start and exit) */
    const char *args[] = {"call",         dead_url, "example.EchoService/Echo",
                          "--timeout-ms", "20000",  NULL};
    int64_t t0 = h_now_ms();
    int rc = h_cli_run(args, 10000, NULL, &err);
    assert_true(rc > 0);
    assert_non_null(strstr(err, "FTRPC_ECONNREFUSED"));
    assert_true(h_now_ms() - t0 < 10000);
    free(err);
}

static void help_works_for_every_command(void **state)
{
    (void)state;
    static const char *const cases[][3] = {
        {"--help", NULL, NULL},
        {"help", NULL, NULL},
        {"echo-server", "--help", NULL},
        {"call", "--help", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = NULL;
        assert_int_equal(h_cli_run(cases[i], 10000, &out, NULL), 0);
        assert_non_null(strstr(out, "usage: ftrpc"));
        free(out);
    }
}

static void bad_usage_exits_two(void **state)
{
    (void)state;
    static const char *const cases[][5] = {
        {NULL},
        {"no-such-command", NULL},
        {"call", NULL},
        {"call", "127.0.0.1:1", "NoSlash", NULL},
        {"echo-server", NULL},
        {"echo-server", "--listen", "127.0.0.1:0", "--error-rate", NULL},
    };
    static const char *const bad_rate[] = {"echo-server",  "--listen", "127.0.0.1:0",
                                           "--error-rate", "2",        NULL};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(h_cli_run(cases[i], 10000, NULL, NULL), 2);
    assert_int_equal(h_cli_run(bad_rate, 10000, NULL, NULL), 2);
}

/* Runs `ftrpc ARGS` and checks its exit code and that stderr says `says` (and does not say
 * `never`, when given). A child that does not exit within 10 s fails the check. */
static void check_run(const char *const *args, int code, const char *says, const char *never)
{
    char *err = NULL;
    int rc = h_cli_run(args, 10000, NULL, &err);
    if (rc != code || !err || !strstr(err, says) || (never && strstr(err, never)))
        fail_msg("ftrpc %s ...: exit %d (expected %d), stderr:\n%s\n(expected \"%s\"%s%s)", args[0],
                 rc, code, err ? err : "", says, never ? ", not " : "", never ? never : "");
    free(err);
}

static void echo_server_on_a_busy_port_says_the_address_is_in_use(void **state)
{
    (void)state;
    char busy[32], says[96];
    snprintf(busy, sizeof busy, "127.0.0.1:%d", server.port);
    snprintf(says, sizeof says, "cannot serve on %s: address already in use", busy);
    const char *args[] = {"echo-server", "--listen", busy, NULL};
    check_run(args, 1, says, "bad address");
    /* an address that is not this host's (TEST-NET-1) is a bad address */
    const char *foreign[] = {"echo-server", "--listen", "192.0.2.1:0", NULL};
    check_run(foreign, 1, "bad address", NULL);
}

static void bad_client_flags_are_named(void **state)
{
    (void)state;
    const char *lb[] = {"call", url, "example.EchoService/Echo", "--lb", "nope", NULL};
    check_run(lb, 2, "--lb", "naming URL");
    const char *cert[] = {"call", url, "example.EchoService/Echo", "--tls-cert", "c.pem", NULL};
    check_run(cert, 2, "--tls-cert needs --tls-key", "naming URL");
    const char *key[] = {"bench", url, "example.EchoService/Echo", "--tls-key", "k.pem", NULL};
    check_run(key, 2, "--tls-key needs --tls-cert", "make a client");
    const char *server_cert[] = {"echo-server", "--listen", "127.0.0.1:0",
                                 "--tls-cert",  "c.pem",    NULL};
    check_run(server_cert, 2, "--tls-cert needs --tls-key", NULL);
    /* a naming URL at fault is still called one */
    const char *bad_url[] = {"call", "nope://x", "example.EchoService/Echo", NULL};
    check_run(bad_url, 2, "bad naming URL 'nope://x'", NULL);
}

/* --backup-ms takes fractions for services faster than a millisecond (0.2: backup_request_us
 * 200); what is no delay, or below a microsecond, is a usage error naming the flag. */
static void backup_ms_takes_a_fraction_of_a_millisecond(void **state)
{
    (void)state;
    char *out = NULL;
    const char *args[] = {"call", url, "example.EchoService/Echo", "--data", "hello", "--backup-ms",
                          "0.2",  NULL};
    assert_int_equal(h_cli_run(args, 10000, &out, NULL), 0);
    assert_string_equal(out, "hello\n");
    free(out);
    static const char *const bad[] = {"0", "0.0001", "-1", "abc", "nan", "inf", "0.2ms", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *b[] = {"call", url, "example.EchoService/Echo", "--backup-ms", bad[i], NULL};
        check_run(b, 2, "--backup-ms wants a delay in ms", "naming URL");
    }
}

static void stray_arguments_are_usage_errors_naming_them(void **state)
{
    (void)state;
    /* --workers takes no value: the "2" used to be ignored and the server started */
    const char *workers[] = {"echo-server", "--listen", "127.0.0.1:0", "--workers", "2", NULL};
    check_run(workers, 2, "unexpected argument '2'", NULL);
    const char *call[] = {"call", url, "example.EchoService/Echo", "extra", NULL};
    check_run(call, 2, "unexpected argument 'extra'", NULL);
    const char *bench[] = {"bench", url, "example.EchoService/Echo", "--count", "1", "extra", NULL};
    check_run(bench, 2, "unexpected argument 'extra'", NULL);
    const char *registry[] = {"registry", "ls", url, "extra", NULL};
    check_run(registry, 2, "unexpected argument 'extra'", NULL);
    const char *demo[] = {"demo", "--quick", "now", NULL};
    check_run(demo, 2, "unexpected argument 'now'", NULL);
}

static void demo_refuses_an_output_it_cannot_write_before_the_run(void **state)
{
    (void)state;
    const char *scratch = getenv("FTRPC_SCRATCH");
    char path[600];
    snprintf(path, sizeof path, "%s/no-such-folder-%d/demo.json",
             scratch && *scratch ? scratch : "/tmp", (int)getpid());
    /* at once: a quick demo would take 10 s before finding it out */
    const char *json[] = {"demo", "--quick", "--json", path, NULL};
    check_run(json, 2, "--json", NULL);
    const char *report[] = {"demo", "--quick", "--report", path, NULL};
    check_run(report, 2, "--report", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(call_prints_the_response_and_exits_zero),
        cmocka_unit_test(call_prints_the_attachment_too),
        cmocka_unit_test(call_to_an_unknown_method_exits_nonzero_with_the_code),
        cmocka_unit_test(call_to_a_dead_address_exits_nonzero_with_the_code),
        cmocka_unit_test(help_works_for_every_command),
        cmocka_unit_test(bad_usage_exits_two),
        cmocka_unit_test(echo_server_on_a_busy_port_says_the_address_is_in_use),
        cmocka_unit_test(bad_client_flags_are_named),
        cmocka_unit_test(backup_ms_takes_a_fraction_of_a_millisecond),
        cmocka_unit_test(stray_arguments_are_usage_errors_naming_them),
        cmocka_unit_test(demo_refuses_an_output_it_cannot_write_before_the_run),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
