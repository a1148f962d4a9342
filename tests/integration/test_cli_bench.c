/* `ftrpc bench` against an `ftrpc echo-server` child: the final table, --json with every key the
 * docs promise (and figures that add up: every call counted once), --cdf writing an SVG that a
 * real XML parser accepts with a plotted line, the open loop (--rate) and the plain progress
 * lines off a terminal (their error counts within their call counts), the blocking-callers shape
 * (--threads) and the report naming the shape that ran, --fallback-default
 * answering every call to a dead address, and what would fail every call or lose the figures
 * (a payload no frame can carry, an output file that cannot be written) refused before the run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static void scratch_file(char *buf, size_t len, const char *name)
{
    const char *s = getenv("FTRPC_SCRATCH");
    if (!s || !*s) s = "/tmp";
    mkdir(s, 0755);
    snprintf(buf, len, "%s/bench-%d-%s", s, (int)getpid(), name);
}

static int64_t get_int(json_object *root, const char *key)
{
    json_object *v;
    if (!json_object_object_get_ex(root, key, &v)) fail_msg("--json lacks \"%s\"", key);
    return json_object_get_int64(v);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void bench_prints_the_table_and_writes_json_and_a_valid_svg(void **state)
{
    (void)state;
    h_server srv;
    assert_int_equal(h_server_start(&srv, NULL), 0);
    char url[64], json[600], svg[600];
    h_server_url(&srv, url, sizeof url);
    scratch_file(json, sizeof json, "out.json");
    scratch_file(svg, sizeof svg, "cdf.svg");
    const char *args[] = {"bench",   url,           "example.EchoService/Echo",
                          "--count", "3000",        "--concurrency",
                          "4",       "--fail-mode", "failover",
                          "--json",  json,          "--cdf",
                          svg,       NULL};
    char *out = NULL, *err = NULL;
    int rc = h_cli_run(args, 60000, &out, &err);
    if (rc != 0) fprintf(stderr, "bench exit %d\n%s\n%s\n", rc, out, err);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "qps"));
    assert_non_null(strstr(out, "p99.9"));
    assert_non_null(strstr(out, "backups"));
    assert_non_null(strstr(out, "fallbacks"));
    assert_non_null(strstr(out, "3000 ok, 0 errors"));

    json_object *root = json_object_from_file(json);
    assert_non_null(root);
    static const char *const keys[] = {"calls",       "ok",        "errors",        "qps",
                                       "p50_ms",      "p90_ms",    "p99_ms",        "p999_ms",
                                       "max_ms",      "attempts",  "retries",       "backups",
                                       "backup_wins", "fallbacks", "errors_by_code"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_object *v;
        if (!json_object_object_get_ex(root, keys[i], &v)) fail_msg("--json lacks %s", keys[i]);
    }
    assert_int_equal(get_int(root, "calls"), 3000);
    assert_int_equal(get_int(root, "ok") + get_int(root, "errors"), 3000);
    assert_true(get_int(root, "attempts") >= 3000);
    json_object *p50, *p99, *codes;
    json_object_object_get_ex(root, "p50_ms", &p50);
    json_object_object_get_ex(root, "p99_ms", &p99);
    assert_true(json_object_get_double(p50) > 0);
    assert_true(json_object_get_double(p99) >= json_object_get_double(p50));
    json_object_object_get_ex(root, "errors_by_code", &codes);
    assert_true(json_object_is_type(codes, json_type_object));
    json_object_put(root);

    /* a real XML parser accepts it, and its root is <svg> */
    char cmd[1400];
    snprintf(
        cmd, sizeof cmd,
        "python3 -c \"import xml.etree.ElementTree as E,sys; r=E.parse(sys.argv[1]).getroot(); "
        "assert r.tag.endswith('svg'), r.tag; "
        "ps=[p for p in r.iter() if p.tag.endswith('polyline') or p.tag.endswith('path')]; "
        "assert ps and len((ps[0].get('points') or ps[0].get('d') or '').split()) >= 2\" %s",
        svg);
    assert_int_equal(system(cmd), 0);
    char *text = slurp(svg);
    assert_non_null(text);
    assert_non_null(strstr(text, "<polyline"));
    assert_non_null(strstr(text, "points=\""));
    free(text);
    free(out);
    free(err);
    h_server_stop(&srv, 5000);
    unlink(json);
    unlink(svg);
}

#if H_UNDER_TSAN
#define MIN_PACED_CALLS 150
#else
#define MIN_PACED_CALLS 600
#endif

static void bench_open_loop_paces_calls_and_reports_progress(void **state)
{
    (void)state;
    h_server srv;
    assert_int_equal(h_server_start(&srv, NULL), 0);
    char url[64], json[600];
    h_server_url(&srv, url, sizeof url);
    scratch_file(json, sizeof json, "rate.json");
    const char *args[] = {
        "bench", url, "example.EchoService/Echo", "--rate", "500", "--duration", "1.5", "--json",
        json,    NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(h_cli_run(args, 60000, &out, &err), 0);
    json_object *root = json_object_from_file(json);
    assert_non_null(root);
    /* 500 per second for 1.5 s: about 750 calls, never more (the schedule is not exceeded). Under
     * TSan (5-15 times slower, and on a loaded machine) the CLI may fall behind the schedule:
     * there the floor is a fifth of the schedule. */
    int64_t calls = get_int(root, "calls");
    if (!(calls >= MIN_PACED_CALLS && calls <= 751))
        print_error("calls %lld, expected %d..751\n", (long long)calls, MIN_PACED_CALLS);
    assert_true(calls >= MIN_PACED_CALLS && calls <= 751);
    /* not a terminal: a plain progress line once a second on stderr */
    assert_non_null(strstr(err, "qps"));
    assert_null(strchr(err, '\r'));
    assert_int_equal(get_int(root, "errors"), 0);
    json_object_put(root);
    free(out);
    free(err);
    h_server_stop(&srv, 5000);
    unlink(json);
}

static void bench_fallback_default_answers_a_dead_address(void **state)
{
    (void)state;
    char json[600];
    scratch_file(json, sizeof json, "fallback.json");
    const char *args[] = {
        "bench",       "127.0.0.1:1", "example.EchoService/Echo", "--count", "200",
        "--fail-mode", "failfast",    "--fallback-default",       "default", "--json",
        json,          NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(h_cli_run(args, 60000, &out, &err), 0);
    json_object *root = json_object_from_file(json);
    assert_non_null(root);
    assert_int_equal(get_int(root, "calls"), 200);
    assert_int_equal(get_int(root, "ok"), 200);
    assert_int_equal(get_int(root, "fallbacks"), 200);
    json_object_put(root);

    /* without it, the same calls fail and are counted by code */
    const char *args2[] = {"bench",    "127.0.0.1:1", "example.EchoService/Echo",
                           "--count",  "200",         "--fail-mode",
                           "failfast", "--json",      json,
                           NULL};
    free(out);
    free(err);
    assert_int_equal(h_cli_run(args2, 60000, &out, &err), 0);
    root = json_object_from_file(json);
    assert_non_null(root);
    assert_int_equal(get_int(root, "errors"), 200);
    json_object *codes;
    json_object_object_get_ex(root, "errors_by_code", &codes);
    int64_t sum = 0;
    json_object_object_foreach(codes, key, val)
    {
        (void)key;
        sum += json_object_get_int64(val);
    }
    assert_int_equal(sum, 200);
    json_object_put(root);
    free(out);
    free(err);
    unlink(json);
}

/* An echo-server failing a share `rate` of calls with EINTERNAL; its URL into url. */
static void failing_server(h_server *srv, const char *rate, char *url, size_t len)
{
    const char *faults[] = {"--error-rate", rate, NULL};
    assert_int_equal(h_server_start(srv, faults), 0);
    h_server_url(srv, url, len);
}

/* Every progress line's errors lie within its calls, and the table's ok and errors add up. */
static void bench_progress_lines_count_errors_within_calls(void **state)
{
    (void)state;
    h_server srv;
    char url[64];
    failing_server(&srv, "0.5", url, sizeof url);
    const char *args[] = {"bench",      url,   "example.EchoService/Echo",
                          "--duration", "2.5", "--fail-mode",
                          "failfast",   NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(h_cli_run(args, 60000, &out, &err), 0);
    int lines = 0;
    long last_errors = 0;
    for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n")) {
        double t, qps;
        long calls, errors;
        if (sscanf(line, "%lfs %lf qps %ld calls %ld errors", &t, &qps, &calls, &errors) != 4)
            continue;
        lines++;
        if (errors < 0 || errors > calls) fail_msg("progress line out of bounds: %s", line);
        last_errors = errors;
    }
    /* off a terminal, one line a second */
    assert_true(lines >= 2);
    assert_true(last_errors > 0);
    long calls, ok, errors;
    const char *table = strstr(out, "calls ");
    assert_non_null(table);
    assert_int_equal(sscanf(table, "calls %ld in %*f s: %ld ok, %ld errors", &calls, &ok, &errors),
                     3);
    assert_int_equal(ok + errors, calls);
    assert_true(errors > 0);
    free(out);
    free(err);
    h_server_stop(&srv, 5000);
}

/* The breaker rejects most calls without a request: the share of extra requests is over the calls
 * that sent one, never negative (on main: (attempts - calls) / calls, -98% here). */
static void bench_extra_requests_count_only_calls_that_sent_one(void **state)
{
    (void)state;
    h_server srv;
    char url[64];
    failing_server(&srv, "1", url, sizeof url);
    const char *args[] = {"bench",    url,         "example.EchoService/Echo",
                          "--count",  "2000",      "--fail-mode",
                          "failfast", "--retries", "0",
                          NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(h_cli_run(args, 60000, &out, &err), 0);
    long calls, attempts, retries;
    double extra;
    const char *table = strstr(out, "calls ");
    assert_non_null(table);
    assert_int_equal(sscanf(table, "calls %ld", &calls), 1);
    const char *line = strstr(out, "attempts ");
    assert_non_null(line);
    assert_int_equal(sscanf(line, "attempts %ld (retries %ld, extra requests %lf%%)", &attempts,
                            &retries, &extra),
                     3);
    assert_non_null(strstr(out, "FTRPC_EBREAKER"));
    assert_true(attempts < calls); /* the case at hand: calls that sent nothing */
    assert_int_equal(retries, 0);
    if (extra != 0.0)
        fail_msg("extra requests %.2f%%, want 0 (no retry, no backup)\n%s", extra, out);
    free(out);
    free(err);
    h_server_stop(&srv, 5000);
}

/* Refused at once with exit 2 and a message naming the flag, before any call: the run would have
 * failed every call, or its figures would have had nowhere to go. */
static void bench_refuses_before_the_run_what_would_spoil_it(void **state)
{
    (void)state;
    h_server srv;
    assert_int_equal(h_server_start(&srv, NULL), 0);
    char url[64], unwritable[600];
    h_server_url(&srv, url, sizeof url);
    scratch_file(unwritable, sizeof unwritable, "no-such-folder/out");
    /* 64 MiB of payload leaves no room in a 64 MiB frame for the header and the meta; the output
     * files are in a folder that does not exist */
    static const char *const cases[][2] = {
        {"--payload", "67108864"}, {"--json", NULL}, {"--cdf", NULL}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *flag = cases[i][0], *value = cases[i][1] ? cases[i][1] : unwritable;
        const char *args[] = {"bench", url, "example.EchoService/Echo", "--count", "20", flag,
                              value,   NULL};
        char *out = NULL, *err = NULL;
        int rc = h_cli_run(args, 60000, &out, &err);
        if (rc != 2 || !strstr(err, flag) || strstr(out, "calls"))
            fail_msg("bench %s: exit %d, stdout:\n%s\nstderr:\n%s", flag, rc, out, err);
        free(out);
        free(err);
    }
    h_server_stop(&srv, 5000);
}

/* --threads N: N blocking callers through one client (brpc's multi_threaded_echo shape) make every
 * call of --count exactly once, and the table and the JSON say that this shape ran, where an async
 * run says its own; --threads with --rate or --concurrency is refused before the run. */
static void bench_threads_runs_blocking_callers_and_says_which_shape_ran(void **state)
{
    (void)state;
    h_server srv;
    assert_int_equal(h_server_start(&srv, NULL), 0);
    char url[64], json[600];
    h_server_url(&srv, url, sizeof url);
    scratch_file(json, sizeof json, "threads.json");
    static const char *const shapes[][4] = {
        {"--threads", "8", "threads", "8 blocking callers (ftrpc_call)"},
        {"--concurrency", "6", "async", "async, 6 in flight"}};
    for (size_t i = 0; i < 2; i++) {
        const char *args[] = {"bench",      url,      "example.EchoService/Echo",
                              "--count",    "2000",   shapes[i][0],
                              shapes[i][1], "--json", json,
                              NULL};
        char *out = NULL, *err = NULL;
        int rc = h_cli_run(args, 60000, &out, &err);
        if (rc != 0 || !strstr(out, "2000 ok, 0 errors") || !strstr(out, shapes[i][3]) ||
            !strstr(err, shapes[i][3]))
            fail_msg("bench %s %s: exit %d\n%s\n%s", shapes[i][0], shapes[i][1], rc, out, err);
        free(out);
        free(err);
        json_object *root = json_object_from_file(json), *v;
        assert_non_null(root);
        assert_true(json_object_object_get_ex(root, "shape", &v));
        assert_string_equal(json_object_get_string(v), shapes[i][2]);
        assert_int_equal(get_int(root, i == 0 ? "threads" : "concurrency"), atoi(shapes[i][1]));
        assert_int_equal(get_int(root, "calls"), 2000);
        assert_int_equal(get_int(root, "ok"), 2000);
        json_object_put(root);
        unlink(json);
    }
    static const char *const refused[][2] = {{"--rate", "100"}, {"--concurrency", "4"}};
    for (size_t i = 0; i < 2; i++) {
        const char *args[] = {"bench",   url,           "example.EchoService/Echo",
                              "--count", "20",          "--threads",
                              "4",       refused[i][0], refused[i][1],
                              NULL};
        char *out = NULL, *err = NULL;
        int rc = h_cli_run(args, 60000, &out, &err);
        if (rc != 2 || !strstr(err, "--threads") || strstr(out, "calls"))
            fail_msg("bench --threads %s: exit %d\n%s\n%s", refused[i][0], rc, out, err);
        free(out);
        free(err);
    }
    h_server_stop(&srv, 5000);
}

/* One bench run of brpc's backup example against srv's URL, its --json read back. */
static json_object *bench_brpc_example(const char *url, const char *const *extra, char **err_out)
{
    char json[600];
    scratch_file(json, sizeof json, "brpc-example.json");
    const char *args[24] = {"bench",   url,           "example.EchoService/Echo",
                            "--count", "300",         "--concurrency",
                            "1",       "--backup-ms", "2",
                            "--json",  json};
    size_t n = 11;
    for (size_t i = 0; extra[i]; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    char *out = NULL, *err = NULL;
    int rc = h_cli_run(args, 60000, &out, &err);
    if (rc != 0) fail_msg("bench exit %d\n%s\n%s", rc, out, err);
    assert_non_null(strstr(out, "refused by the retry budget"));
    free(out);
    if (err_out)
        *err_out = err;
    else
        free(err);
    json_object *root = json_object_from_file(json);
    assert_non_null(root);
    unlink(json);
    return root;
}

/* brpc's backup example from the command line: `echo-server --delay-ms 20 --delay-every 2` sleeps
 * on every other request it receives, and `bench --concurrency 1 --backup-ms 2` is its one caller.
 * By default no backup is refused; asking backups to draw on a 20% + 10/s retry budget
 * (--backup-budget retry, --retry-budget-ratio, --retry-budget-min-per-sec) has some refused,
 * and the output says how many; a ratio of 1 pays for them all again. --backup-ms with failfast
 * is refused before the run. */
static void bench_runs_brpcs_backup_example_and_reports_refused_backups(void **state)
{
    (void)state;
    h_server srv;
    const char *const server_args[] = {"--delay-ms", "20", "--delay-every", "2", NULL};
    assert_int_equal(h_server_start(&srv, server_args), 0);
    char url[64];
    h_server_url(&srv, url, sizeof url);

    const char *const none[] = {NULL};
    json_object *root = bench_brpc_example(url, none, NULL);
    assert_int_equal(get_int(root, "backups_refused"), 0);
    assert_true(get_int(root, "backups") > 160); /* more than 20% + 10/s would have paid for */
    json_object_put(root);

    const char *const budgeted[] = {"--backup-budget",
                                    "retry",
                                    "--retry-budget-ratio",
                                    "0.2",
                                    "--retry-budget-min-per-sec",
                                    "10",
                                    NULL};
    char *log = NULL;
    root = bench_brpc_example(url, budgeted, &log);
    int64_t refused = get_int(root, "backups_refused");
    /* and the client's log line says why, rate-limited */
    assert_non_null(strstr(log, "refused by the retry budget"));
    free(log);
    print_message("budget 20%% + 10/s: %lld backups sent, %lld refused\n",
                  (long long)get_int(root, "backups"), (long long)refused);
    assert_true(refused > 0);
    json_object_put(root);

    const char *const whole[] = {"--backup-budget", "retry", "--retry-budget-ratio", "1", NULL};
    root = bench_brpc_example(url, whole, NULL);
    assert_int_equal(get_int(root, "backups_refused"), 0);
    json_object_put(root);

    const char *const args[] = {"bench",   url,           "example.EchoService/Echo",
                                "--count", "1",           "--backup-ms",
                                "2",       "--fail-mode", "failfast",
                                NULL};
    char *out = NULL, *err = NULL;
    int rc = h_cli_run(args, 60000, &out, &err);
    if (rc != 2 || !strstr(err, "--fail-mode") || strstr(out, "calls"))
        fail_msg("bench --backup-ms with failfast: exit %d, stdout:\n%s\nstderr:\n%s", rc, out,
                 err);
    free(out);
    free(err);
    h_server_stop(&srv, 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bench_prints_the_table_and_writes_json_and_a_valid_svg),
        cmocka_unit_test(bench_open_loop_paces_calls_and_reports_progress),
        cmocka_unit_test(bench_fallback_default_answers_a_dead_address),
        cmocka_unit_test(bench_progress_lines_count_errors_within_calls),
        cmocka_unit_test(bench_extra_requests_count_only_calls_that_sent_one),
        cmocka_unit_test(bench_refuses_before_the_run_what_would_spoil_it),
        cmocka_unit_test(bench_threads_runs_blocking_callers_and_says_which_shape_ran),
        cmocka_unit_test(bench_runs_brpcs_backup_example_and_reports_refused_backups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
