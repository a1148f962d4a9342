/* The console (GET /) in a real browser: headless Chromium opens the page of a server under load,
 * lets its script run (--virtual-time-budget) and dumps the DOM; the test checks that the method
 * table (latencies with a fractional microsecond figure, as "8.54 µs", and the errors of Work), the
 * per-second charts of the last minutes (QPS, p99 and errors of each method: an <svg> with a
 * <polyline> of several points each), the endpoint table (coloured by state: one ACTIVE endpoint
 * fed by the load, one SUSPENDED) and a latency CDF chart (<svg> with a <path>) show live data,
 * and that the page refreshed itself more than once. A screenshot goes to the build directory
 * (console.png).
 *
 * Endpoint rows come through the endpoint reporter hook (metrics/endpoint_report.h) from real
 * ft_endpoint_health state machines that this test feeds, standing in for a client's endpoints.
 *
 * Needs Debian's `chromium` (scripts/install-deps.sh --test); without it the test fails and says
 * so. FTRPC_CHROMIUM overrides the binary.
 */
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
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "cluster/endpoint_health.h"
#include "harness.h"
#include "metrics/endpoint_report.h"

enum { LOAD_THREADS = 2, SERIES_SECONDS = 5 };

static ftrpc_server *server;
static ftrpc_client *client;
static char server_addr[64];
static ft_endpoint_health live, dead;
static ft_endpoint_reporter *reporter;
static pthread_t load[LOAD_THREADS];
static atomic_int load_stop, load_calls;

static void on_echo(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    ftrpc_server_call_reply(call, ftrpc_server_call_request(call), NULL);
}

enum { WORK_ERROR_CODE = 3001, WORK_FAILS_ONE_IN = 8 };

/* Worker: a few hundred microseconds to a few milliseconds, so the CDF has a shape; one call in
 * WORK_FAILS_ONE_IN fails, so the errors chart has something to show. */
static void on_work(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    static atomic_uint n;
    unsigned i = atomic_fetch_add(&n, 1);
    usleep(200 + (i * 7919u) % 3000u);
    if (i % WORK_FAILS_ONE_IN == 0)
        ftrpc_server_call_fail(call, WORK_ERROR_CODE, "Work fails now and then");
    else
        ftrpc_server_call_reply(call, ftrpc_server_call_request(call), NULL);
}

static atomic_int live_inflight; /* the load's calls in the air, shown on /endpoints */
/* the load's calls that failed with more than Work's business error, and the last one's code:
 * said if the live endpoint is not ACTIVE (it was SUSPENDED once in a CI run) */
static atomic_int load_failures, load_failure_code;

static void *load_main(void *arg)
{
    (void)arg;
    ftrpc_buf *req = ftrpc_buf_new();
    ftrpc_buf_append(req, "load", 4);
    for (unsigned i = 0; !atomic_load(&load_stop); i++) {
        ftrpc_result r;
        atomic_fetch_add(&live_inflight, 1);
        int64_t t0 = ft_now_ns();
        int rc =
            ftrpc_call(client, "example.EchoService", i % 2 ? "Echo" : "Work", req, NULL, NULL, &r);
        int64_t t1 = ft_now_ns();
        atomic_fetch_sub(&live_inflight, 1);
        /* Work's business errors say nothing about the endpoint's health */
        ft_health_on_result(&live, rc == FTRPC_EBUSINESS ? 0 : rc, (t1 - t0) / 1000, t1);
        if (rc != 0 && rc != FTRPC_EBUSINESS) {
            atomic_fetch_add(&load_failures, 1);
            atomic_store(&load_failure_code, rc);
        }
        ftrpc_result_fini(&r);
        atomic_fetch_add(&load_calls, 1);
    }
    ftrpc_buf_free(req);
    return NULL;
}

static void row_of(ft_endpoint_report *rep, const char *addr, ft_endpoint_health *h)
{
    int64_t now = ft_now_ns();
    ft_health_stats st;
    ft_health_stats_get(h, &st);
    ft_endpoint_row row = {.address = addr,
                           .state = ft_health_state_name(ft_health_state_get(h)),
                           .usable_in_ms = ft_health_usable_in_ns(h, now) / FT_NS_PER_MS,
                           .ewma_us = ft_health_ewma_us(h, now),
                           .inflight = h == &live ? atomic_load(&live_inflight) : 0,
                           .suspensions = st.suspensions};
    ft_endpoint_report_add(rep, &row);
}

static void report(ft_endpoint_report *rep, void *arg)
{
    (void)arg;
    row_of(rep, server_addr, &live);
    row_of(rep, "127.0.0.1:1", &dead);
}

static int group_setup(void **state)
{
    (void)state;
    ftrpc_method_options worker = {.run_mode = FTRPC_RUN_IN_WORKER};
    if (ftrpc_server_new(NULL, &server) != 0 ||
        ftrpc_server_add_method(server, "example.EchoService", "Echo", on_echo, NULL, NULL) ||
        ftrpc_server_add_method(server, "example.EchoService", "Work", on_work, NULL, &worker) ||
        ftrpc_server_start(server, "127.0.0.1:0") != 0)
        return -1;
    snprintf(server_addr, sizeof server_addr, "127.0.0.1:%d", ftrpc_server_port(server));
    if (ftrpc_client_new(server_addr, &(ftrpc_client_options){.timeout_ms = 5000}, &client) != 0)
        return -1;
    ft_health_options o = {.initial_duration_ms = 30000, .maximum_duration_ms = 30000};
    if (ft_health_init(&live, NULL) != 0 || ft_health_init(&dead, &o) != 0) return -1;
    ft_health_on_result(&dead, FTRPC_ECONNREFUSED, -1, ft_now_ns()); /* suspends at once */
    if (ft_endpoint_reporter_add(server_addr, report, NULL, &reporter) != 0) return -1;
    for (int i = 0; i < LOAD_THREADS; i++)
        pthread_create(&load[i], NULL, load_main, NULL);
    if (!h_wait_atomic_ge(&load_calls, 50, 5000)) return -1;
    /* the server adds a point to each series once a second (real time, whatever Chromium's virtual
     * clock does): let a few accumulate */
    sleep(SERIES_SECONDS);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    atomic_store(&load_stop, 1);
    for (int i = 0; i < LOAD_THREADS; i++)
        pthread_join(load[i], NULL);
    ft_endpoint_reporter_remove(reporter);
    ftrpc_client_free(client);
    ftrpc_server_free(server);
    ft_health_fini(&live);
    ft_health_fini(&dead);
    return 0;
}

static const char *chromium_path(void)
{
    const char *env = getenv("FTRPC_CHROMIUM");
    if (env && *env) return env;
    static const char *const candidates[] = {"/usr/bin/chromium", "/usr/bin/chromium-browser"};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++)
        if (access(candidates[i], X_OK) == 0) return candidates[i];
    return NULL;
}

/* Runs chromium headless on the console with `what` ("--dump-dom" or "--screenshot=..."), its
 * stdout into a malloc'ed string (NULL on failure). */
static char *run_chromium(const char *chromium, const char *what)
{
    char profile[] = "/tmp/ftrpc-chromium-XXXXXX";
    if (!mkdtemp(profile)) return NULL;
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "timeout 90 '%s' --headless --no-sandbox --disable-gpu --disable-quic "
             "--no-first-run --disable-background-networking --disable-component-update "
             "--disable-sync --user-data-dir=%s --window-size=1200,1400 "
             "--virtual-time-budget=5000 %s http://%s/ 2>/dev/null",
             chromium, profile, what, server_addr);
    FILE *p = popen(cmd, "r");
    char *out = NULL;
    size_t len = 0, cap = 0;
    if (p) {
        char buf[8192];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, p)) > 0) {
            if (len + n + 1 > cap) {
                cap = (len + n + 1) * 2;
                char *grown = realloc(out, cap);
                if (!grown) break;
                out = grown;
            }
            memcpy(out + len, buf, n);
            len += n;
            out[len] = '\0';
        }
        pclose(p);
    }
    char rm[256];
    snprintf(rm, sizeof rm, "rm -rf '%s'", profile);
    if (system(rm) != 0) print_message("could not remove %s\n", profile);
    return out;
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Whether a method row shows a latency with a fraction of a microsecond, as /\d+\.\d+ µs/. */
static int shows_fractional_us(const char *dom)
{
    const char *rows = strstr(dom, "<tbody><tr class=\"method\">");
    for (const char *p = rows ? strstr(rows, " µs</td>") : NULL; p; p = strstr(p + 1, " µs</td>")) {
        const char *q = p;
        int decimals = 0, units = 0;
        while (q > dom && q[-1] >= '0' && q[-1] <= '9')
            q--, decimals++;
        if (decimals == 0 || q == dom || q[-1] != '.') continue;
        for (q--; q > dom && q[-1] >= '0' && q[-1] <= '9'; q--)
            units++;
        if (units > 0) return 1;
    }
    return 0;
}

/* The series charts' <polyline>s (the page's script holds the markup once, followed by a quote,
 * not by a point): how many, and the fewest points one has. */
static void polylines(const char *dom, int *count, int *fewest_points)
{
    static const char MARK[] = "<polyline points=\"";
    *count = 0;
    *fewest_points = 0;
    for (const char *p = strstr(dom, MARK); p; p = strstr(p + 1, MARK)) {
        const char *a = p + strlen(MARK);
        if (*a < '0' || *a > '9') continue;
        int points = 1;
        for (; *a && *a != '"'; a++)
            points += *a == ' ';
        if (*count == 0 || points < *fewest_points) *fewest_points = points;
        (*count)++;
    }
}

static void console_shows_live_methods_series_endpoints_and_cdf(void **state)
{
    (void)state;
    const char *chromium = chromium_path();
    if (!chromium) {
        print_error("chromium is not installed: apt-get install -y chromium "
                    "(scripts/install-deps.sh --test), or set FTRPC_CHROMIUM\n");
        fail();
    }
    char *dom = run_chromium(chromium, "--dump-dom");
    if (!dom) {
        print_error("%s --dump-dom gave no output\n", chromium);
        fail();
    }
    const char *dir = getenv("FTRPC_BUILD_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/console_dom.html", dir && *dir ? dir : ".");
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(dom, f);
        fclose(f);
    }
    int active = count_of(dom, "<tr class=\"ep ACTIVE\">"),
        suspended = count_of(dom, "<tr class=\"ep SUSPENDED\">"),
        methods = count_of(dom, "<tr class=\"method\">") - 1, /* one is in the script */
        charts = count_of(dom, "<svg class=\"cdfchart\" data-method=\"example."),
        paths = count_of(dom, "<path d=\"M"),
        series = count_of(dom, "<svg class=\"serieschart\" data-method=\"example."), lines,
        fewest_points;
    polylines(dom, &lines, &fewest_points);
    const char *work = strstr(dom, "<td class=\"l\">example.EchoService/Work</td>");
    const char *work_end = work ? strstr(work, "</tr>") : NULL;
    char code[32];
    snprintf(code, sizeof code, "(%d:", WORK_ERROR_CODE); /* "errors (code:count)" */
    const char *work_errors = work ? strstr(work, code) : NULL;
    int fractional = shows_fractional_us(dom);
    const char *u = strstr(dom, "id=\"updates\">");
    int updates = u ? atoi(u + strlen("id=\"updates\">")) : 0;
    /* the load's own client lists its (healthy) endpoint too: at least the reporter's one; 3 series
     * charts a method, each a line of a point a second: SERIES_SECONDS - 1 points at least */
    if (active < 1 || suspended != 1 || methods != 2 || charts != 2 || paths != 2 || updates < 2 ||
        series != 6 || lines != 6 || fewest_points < SERIES_SECONDS - 1 || !fractional ||
        !work_errors || work_errors > work_end) {
        print_error("the console's DOM (%s) lacks live data: ACTIVE rows %d, SUSPENDED rows %d, "
                    "method rows %d, charts %d, paths %d, updates %d, series charts %d, lines %d "
                    "(fewest points %d), a fractional µs figure %s, Work's errors %s; the load's "
                    "failed calls %d (last: %s)\n",
                    path, active, suspended, methods, charts, paths, updates, series, lines,
                    fewest_points, fractional ? "yes" : "no",
                    work_errors && work_errors < work_end ? "yes" : "no",
                    atomic_load(&load_failures), ftrpc_err_name(atomic_load(&load_failure_code)));
        free(dom);
        fail();
    }
    free(dom);

    char shot[1024], arg[1100];
    snprintf(shot, sizeof shot, "%s/console.png", dir && *dir ? dir : ".");
    unlink(shot);
    snprintf(arg, sizeof arg, "--screenshot=%s", shot);
    free(run_chromium(chromium, arg));
    struct stat st;
    if (stat(shot, &st) != 0 || st.st_size < 1000) {
        print_error("no screenshot at %s\n", shot);
        fail();
    }
    print_message("screenshot: %s (%lld bytes)\n", shot, (long long)st.st_size);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(console_shows_live_methods_series_endpoints_and_cdf),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
