/* HTTP on the server's port (docs/observability.md): the builtin pages report known traffic, calls
 * made with curl-like requests go through the same dispatch with brpc-like status codes, keep-alive
 * and pipelined requests are answered in request order even when a reply comes from a worker
 * thread, /health turns 503 while the server stops, the endpoint reporter hook feeds /endpoints,
 * an admin port serves the same pages, and bad HTTP input (oversized header, slow drip, garbage,
 * a connection that never names its protocol) is closed with a logged reason while a baidu_std
 * client and an HTTP client keep succeeding. One in-process server; raw sockets as HTTP clients.
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
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "metrics/endpoint_report.h"

enum { HEADER_TIMEOUT_MS = 800 };

static ftrpc_server *server;
static int port;
static ftrpc_client *client;

/* ---- handlers ---- */

static pthread_mutex_t hold_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cond = PTHREAD_COND_INITIALIZER;
static int hold_released;
static atomic_int holding;

static void on_echo(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    ftrpc_server_call_reply(call, ftrpc_server_call_request(call), NULL);
}

static void on_fail(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    ftrpc_server_call_fail(call, 3001, "bad thing");
}

/* Worker: replies 60 ms later, from the worker thread. */
static void on_slow(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    usleep(60 * 1000);
    ftrpc_server_call_reply(call, ftrpc_server_call_request(call), NULL);
}

/* Worker: blocks until released. */
static void on_hold(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    atomic_fetch_add(&holding, 1);
    pthread_mutex_lock(&hold_lock);
    while (!hold_released)
        pthread_cond_wait(&hold_cond, &hold_lock);
    pthread_mutex_unlock(&hold_lock);
    atomic_fetch_sub(&holding, 1);
    ftrpc_server_call_reply(call, NULL, NULL);
}

static void release_holds(void)
{
    pthread_mutex_lock(&hold_lock);
    hold_released = 1;
    pthread_cond_broadcast(&hold_cond);
    pthread_mutex_unlock(&hold_lock);
}

/* ---- captured log lines ---- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_text[64 * 1024];
static size_t log_len;

static void log_sink(ftrpc_log_level level, const char *msg, void *arg)
{
    (void)level;
    (void)arg;
    pthread_mutex_lock(&log_lock);
    size_t n = strlen(msg);
    if (log_len + n + 2 < sizeof log_text) {
        memcpy(log_text + log_len, msg, n);
        log_len += n;
        log_text[log_len++] = '\n';
        log_text[log_len] = '\0';
    }
    pthread_mutex_unlock(&log_lock);
}

static int logged(void *needle)
{
    pthread_mutex_lock(&log_lock);
    int found = strstr(log_text, needle) != NULL;
    pthread_mutex_unlock(&log_lock);
    return found;
}

/* ---- a raw HTTP client ---- */

typedef struct http_resp {
    int status;
    char headers[2048];
    char *body; /* malloc'ed, NUL-terminated */
    size_t body_len;
} http_resp;

static void resp_fini(http_resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* Reads one response from fd. 1 on success, 0 on close or timeout. */
static int read_resp(int fd, http_resp *r, int timeout_ms)
{
    memset(r, 0, sizeof *r);
    size_t hl = 0;
    while (hl + 1 < sizeof r->headers) {
        if (h_raw_read_exact(fd, r->headers + hl, 1, timeout_ms) != 1) return 0;
        hl++;
        if (hl >= 4 && memcmp(r->headers + hl - 4, "\r\n\r\n", 4) == 0) break;
    }
    r->headers[hl] = '\0';
    if (sscanf(r->headers, "HTTP/1.1 %d", &r->status) != 1) return 0;
    const char *cl = strcasestr(r->headers, "Content-Length:");
    r->body_len = cl ? strtoul(cl + 15, NULL, 10) : 0;
    r->body = calloc(1, r->body_len + 1);
    if (r->body_len && h_raw_read_exact(fd, r->body, r->body_len, timeout_ms) != 1) return 0;
    return 1;
}

/* One request on a fresh connection (closed after). 1 on success. */
static int http(const char *method, const char *path, const char *body, const char *extra,
                http_resp *r)
{
    int fd = h_raw_connect(port);
    if (fd < 0) return 0;
    char req[4096];
    int n =
        snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n%s",
                 method, path, extra ? extra : "", body ? strlen(body) : 0, body ? body : "");
    int ok = h_raw_send(fd, req, (size_t)n) == 0 && read_resp(fd, r, 5000);
    close(fd);
    return ok;
}

static int64_t json_int(const char *json, const char *after, const char *key)
{
    const char *p = after ? strstr(json, after) : json;
    if (!p) return -1;
    p = strstr(p, key);
    if (!p) return -1;
    return strtoll(p + strlen(key), NULL, 10);
}

/* The numbers of a column ("age_s", "qps", ...) of the series of the method whose object `method`
 * starts, from /status?format=json&series=N. */
static size_t series_column(const char *json, const char *method, const char *column, double *out,
                            size_t cap)
{
    char key[32];
    snprintf(key, sizeof key, "\"%s\":[", column);
    const char *p = strstr(json, method);
    if (p) p = strstr(p, "\"series\":{");
    if (p) p = strstr(p, key);
    if (!p) return 0;
    p += strlen(key);
    size_t n = 0;
    while (*p && *p != ']' && n < cap) {
        char *end;
        out[n++] = strtod(p, &end);
        if (end == p) return 0;
        p = *end == ',' ? end + 1 : end;
    }
    return n;
}

/* ---- setup ---- */

static int group_setup(void **state)
{
    (void)state;
    ftrpc_log_set_sink(log_sink, NULL);
    ftrpc_server_options so = {.http_header_timeout_ms = HEADER_TIMEOUT_MS, .worker_threads = 2};
    ftrpc_method_options worker = {.run_mode = FTRPC_RUN_IN_WORKER};
    ftrpc_method_options limited = {.run_mode = FTRPC_RUN_IN_WORKER, .max_concurrency = 1};
    if (ftrpc_server_new(&so, &server) != 0 ||
        ftrpc_server_add_method(server, "example.EchoService", "Echo", on_echo, NULL, NULL) ||
        ftrpc_server_add_method(server, "example.EchoService", "Fail", on_fail, NULL, NULL) ||
        ftrpc_server_add_method(server, "example.EchoService", "Slow", on_slow, NULL, &worker) ||
        ftrpc_server_add_method(server, "example.EchoService", "Hold", on_hold, NULL, &limited) ||
        ftrpc_server_start(server, "127.0.0.1:0") != 0)
        return -1;
    port = ftrpc_server_port(server);
    char url[64];
    snprintf(url, sizeof url, "127.0.0.1:%d", port);
    return ftrpc_client_new(url, &(ftrpc_client_options){.timeout_ms = 5000}, &client);
}

static int group_teardown(void **state)
{
    (void)state;
    release_holds();
    ftrpc_client_free(client);
    ftrpc_server_free(server);
    ftrpc_log_set_sink(NULL, NULL);
    return 0;
}

/* ---- tests ---- */

static void pages_report_known_traffic(void **state)
{
    (void)state;
    enum { N = 7, M = 3 };
    for (int i = 0; i < N; i++) {
        http_resp r;
        assert_true(http("POST", "/example.EchoService/Echo", "ping", NULL, &r));
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "ping");
        resp_fini(&r);
    }
    for (int i = 0; i < M; i++) { /* errors made over baidu_std: both protocols feed one figure */
        ftrpc_result res;
        ftrpc_call(client, "example.EchoService", "Fail", NULL, NULL, NULL, &res);
        assert_int_equal(res.kind, FTRPC_RESULT_BUSINESS_ERROR);
        ftrpc_result_fini(&res);
    }
    http_resp r;
    assert_true(http("GET", "/status?format=json", NULL, NULL, &r));
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.headers, "application/json"));
    assert_int_equal(json_int(r.body, "\"method\":\"Echo\"", "\"count\":"), N);
    assert_int_equal(json_int(r.body, "\"method\":\"Echo\"", "\"errors\":"), 0);
    assert_int_equal(json_int(r.body, "\"method\":\"Fail\"", "\"count\":"), M);
    assert_int_equal(json_int(r.body, "\"method\":\"Fail\"", "\"errors\":"), M);
    assert_int_equal(json_int(r.body, "\"method\":\"Fail\"", "\"3001\":"), M);
    assert_non_null(strstr(r.body, "\"cdf\":[["));
    assert_null(strstr(r.body, "\"series\"")); /* only when asked for */
    /* latencies in us with the 3 decimals of their nanoseconds */
    const char *p50 = strstr(strstr(r.body, "\"method\":\"Echo\""), "\"p50_us\":");
    assert_non_null(p50);
    p50 += strlen("\"p50_us\":");
    size_t units = strspn(p50, "0123456789");
    assert_true(units > 0 && p50[units] == '.' && strspn(p50 + units + 1, "0123456789") == 3);
    resp_fini(&r);

    assert_true(http("GET", "/status", NULL, NULL, &r));
    assert_non_null(strstr(r.body, "example.EchoService/Echo\n  count: 7\n"));
    assert_non_null(strstr(r.body, "example.EchoService/Fail\n  count: 3\n"));
    assert_non_null(strstr(r.body, "errors: 3 3001=3"));
    resp_fini(&r);

    assert_true(http("GET", "/vars/rpc_server_count", NULL, NULL, &r));
    assert_int_equal(r.status, 200);
    assert_non_null(
        strstr(r.body, "rpc_server_count{service=\"example.EchoService\",method=\"Echo\"} : 7"));
    resp_fini(&r);
    assert_true(http("GET", "/vars/rpc_server_errors?format=json", NULL, NULL, &r));
    assert_non_null(strstr(r.body, "\"code\":\"3001\"},\"value\":3"));
    resp_fini(&r);
    assert_true(http("GET", "/vars", NULL, NULL, &r));
    assert_non_null(strstr(r.body, "rpc_server_latency_p99{service=\"example.EchoService\""));
    resp_fini(&r);
    assert_true(http("GET", "/vars/no_such_var", NULL, NULL, &r));
    assert_int_equal(r.status, 404);
    resp_fini(&r);

    assert_true(http("GET", "/metrics", NULL, NULL, &r));
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.headers, "Content-Type: text/plain; version=0.0.4"));
    assert_non_null(strstr(r.body, "# TYPE rpc_server summary"));
    assert_non_null(
        strstr(r.body, "rpc_server_count{service=\"example.EchoService\",method=\"Echo\"} 7\n"));
    assert_non_null(strstr(
        r.body,
        "rpc_server_errors{service=\"example.EchoService\",method=\"Fail\",code=\"3001\"} 3\n"));
    resp_fini(&r);

    assert_true(http("GET", "/health", NULL, NULL, &r));
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "OK");
    resp_fini(&r);
    assert_true(http("GET", "/", NULL, NULL, &r));
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.headers, "text/html"));
    assert_non_null(strstr(r.body, "cdfSvg"));
    resp_fini(&r);
}

/* /status?format=json&series=SECONDS: a point a second per method, as columns, over the last
 * SECONDS; errors made now show in the errors column. */
static void status_series_cover_the_last_seconds(void **state)
{
    (void)state;
    enum { FAILS = 20, CAP = 700 };
    for (int i = 0; i < FAILS; i++) {
        ftrpc_result res;
        ftrpc_call(client, "example.EchoService", "Fail", NULL, NULL, NULL, &res);
        ftrpc_result_fini(&res);
    }
    /* three ticks at least (a point a second from the server's start): the calls fall in a point,
     * and the oldest point is over 2 s old for the series=2 request below */
    usleep(3200 * 1000);
    http_resp r;
    assert_true(http("GET", "/status?format=json&series=600", NULL, NULL, &r));
    assert_int_equal(r.status, 200);
    static double age[CAP], qps[CAP], errors[CAP], p99[CAP];
    const char *fail = "\"method\":\"Fail\"";
    size_t n = series_column(r.body, fail, "age_s", age, CAP);
    assert_true(n >= 2);
    assert_int_equal(series_column(r.body, fail, "qps", qps, CAP), n);
    assert_int_equal(series_column(r.body, fail, "errors_per_s", errors, CAP), n);
    assert_int_equal(series_column(r.body, fail, "p99_us", p99, CAP), n);
    double most_errors = 0, most_calls = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(age[i] >= 0 && (i == 0 || age[i] < age[i - 1])); /* oldest first */
        if (errors[i] > most_errors) most_errors = errors[i];
        if (qps[i] > most_calls) most_calls = qps[i];
    }
    assert_true(most_errors > 0 && most_calls > 0);
    assert_non_null(strstr(r.body, "\"series\":{\"interval_s\":1,\"age_s\":["));
    resp_fini(&r);

    /* the last 2 s: the newest point or two, none older */
    assert_true(http("GET", "/status?format=json&series=2", NULL, NULL, &r));
    size_t recent = series_column(r.body, fail, "age_s", age, CAP);
    assert_true(recent >= 1 && recent < n);
    for (size_t i = 0; i < recent; i++)
        assert_true(age[i] <= 2.0);
    resp_fini(&r);
}

/* HTTP status codes of calls (docs/observability.md): brpc's mapping. */
static void calls_over_http_map_errors_to_status_codes(void **state)
{
    (void)state;
    static const struct {
        const char *method, *path, *body;
        int status;
        const char *code; /* x-bd-error-code, NULL: none */
    } cases[] = {
        {"POST", "/example.EchoService/Echo", "abc", 200, NULL},
        {"GET", "/example.EchoService/Echo", "", 200, NULL},
        {"POST", "/example.EchoService/Fail", "x", 500, "3001"},
        {"POST", "/example.EchoService/Nope", "x", 404, "1002"},
        {"POST", "/NoService/Echo", "x", 404, "1001"},
        {"GET", "/no/such/page", "", 404, NULL},
        {"PUT", "/example.EchoService/Echo", "x", 405, NULL},
        /* a page asked with a method it does not take */
        {"POST", "/status", "x", 405, NULL},
        {"POST", "/rpcz", "x", 405, NULL},
        {"DELETE", "/metrics", "", 405, NULL},
        {"PUT", "/limits", "x", 405, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        http_resp r;
        assert_true(http(cases[i].method, cases[i].path, cases[i].body, NULL, &r));
        if (r.status != cases[i].status)
            print_error("%s %s: %d\n%s%s\n", cases[i].method, cases[i].path, r.status, r.headers,
                        r.body);
        assert_int_equal(r.status, cases[i].status);
        if (cases[i].code) {
            char want[64];
            snprintf(want, sizeof want, "x-bd-error-code: %s\r\n", cases[i].code);
            assert_non_null(strstr(r.headers, want));
        }
        if (cases[i].status == 200) assert_string_equal(r.body, cases[i].body);
        if (cases[i].status == 405 && cases[i].path[1] != 'e')
            assert_non_null(strstr(r.headers, strcmp(cases[i].path, "/limits") == 0
                                                  ? "Allow: GET, HEAD, POST\r\n"
                                                  : "Allow: GET, HEAD\r\n"));
        resp_fini(&r);
    }
    http_resp r;
    assert_true(http("POST", "/example.EchoService/Fail", "x", NULL, &r));
    assert_string_equal(r.body, "[3001] bad thing\n");
    resp_fini(&r);
}

struct async_done {
    atomic_int done;
    int code;
};

static void on_async(ftrpc_result *res, void *arg)
{
    struct async_done *d = arg;
    d->code = res->code;
    atomic_store(&d->done, 1);
}

static int holding_one(void *arg)
{
    (void)arg;
    return atomic_load(&holding) >= 1;
}

/* ELIMIT -> 503 and a deadline that passed in the worker queue -> 504, both counted as rejected. */
static void limits_and_deadlines_over_http(void **state)
{
    (void)state;
    hold_released = 0;
    struct async_done d = {0};
    assert_int_equal(ftrpc_call_async(client, "example.EchoService", "Hold", NULL, NULL, NULL,
                                      on_async, &d, NULL),
                     0);
    assert_true(h_wait_until(holding_one, NULL, 3000));
    http_resp r;
    assert_true(http("POST", "/example.EchoService/Hold", "x", NULL, &r));
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.headers, "x-bd-error-code: 2004"));
    resp_fini(&r);
    /* both workers busy: the Slow call waits in the queue past its 20 ms deadline */
    struct async_done d2 = {0};
    assert_int_equal(ftrpc_call_async(client, "example.EchoService", "Slow", NULL, NULL, NULL,
                                      on_async, &d2, NULL),
                     0);
    int fd = h_raw_connect(port);
    assert_true(fd >= 0);
    const char *req = "POST /example.EchoService/Slow HTTP/1.1\r\nx-timeout-ms: 20\r\n"
                      "Content-Length: 1\r\n\r\nx";
    assert_int_equal(h_raw_send(fd, req, strlen(req)), 0);
    usleep(30 * 1000);
    release_holds();
    assert_true(read_resp(fd, &r, 5000));
    close(fd);
    /* either the deadline was seen before the handler ran (504), or a worker was free already */
    assert_true(r.status == 504 || r.status == 200);
    int deadline_seen = r.status == 504;
    resp_fini(&r);
    assert_true(h_wait_atomic_ge(&d.done, 1, 5000));
    assert_true(h_wait_atomic_ge(&d2.done, 1, 5000));
    assert_true(http("GET", "/status?format=json", NULL, NULL, &r));
    assert_true(json_int(r.body, "\"method\":\"Hold\"", "\"limit\":") >= 1);
    if (deadline_seen) assert_true(json_int(r.body, "\"method\":\"Slow\"", "\"deadline\":") >= 1);
    resp_fini(&r);
}

/* Three requests in one write; the first is answered from a worker 60 ms later, yet the responses
 * come back in request order on the same connection, which stays open. */
static void pipelined_requests_are_answered_in_order(void **state)
{
    (void)state;
    int fd = h_raw_connect(port);
    assert_true(fd >= 0);
    const char *reqs = "POST /example.EchoService/Slow HTTP/1.1\r\nContent-Length: 5\r\n\r\nfirst"
                       "GET /health HTTP/1.1\r\n\r\n"
                       "POST /example.EchoService/Echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nthird";
    assert_int_equal(h_raw_send(fd, reqs, strlen(reqs)), 0);
    const char *want[] = {"first", "OK", "third"};
    for (int i = 0; i < 3; i++) {
        http_resp r;
        assert_true(read_resp(fd, &r, 5000));
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, want[i]);
        resp_fini(&r);
    }
    /* keep-alive: the connection serves again */
    const char *again = "GET /health HTTP/1.1\r\n\r\n";
    assert_int_equal(h_raw_send(fd, again, strlen(again)), 0);
    http_resp r;
    assert_true(read_resp(fd, &r, 5000));
    assert_int_equal(r.status, 200);
    resp_fini(&r);
    /* Connection: close is honoured after the response */
    const char *bye = "GET /health HTTP/1.1\r\nConnection: close\r\n\r\n";
    assert_int_equal(h_raw_send(fd, bye, strlen(bye)), 0);
    assert_true(read_resp(fd, &r, 5000));
    assert_non_null(strstr(r.headers, "Connection: close"));
    resp_fini(&r);
    assert_int_equal(h_raw_wait_closed(fd, 3000), 1);
    close(fd);
}

static void report_two(ft_endpoint_report *rep, void *arg)
{
    (void)arg;
    ft_endpoint_report_add(
        rep, &(ft_endpoint_row){
                 .address = "10.0.0.1:8000", .state = "ACTIVE", .ewma_us = 250, .inflight = 2});
    ft_endpoint_report_add(rep, &(ft_endpoint_row){.address = "10.0.0.2:8000",
                                                   .state = "SUSPENDED",
                                                   .usable_in_ms = 1500,
                                                   .suspensions = 1});
}

static void endpoints_page_shows_what_reporters_report(void **state)
{
    (void)state;
    ft_endpoint_reporter *rep = NULL;
    assert_int_equal(ft_endpoint_reporter_add("list://test", report_two, NULL, &rep), 0);
    http_resp r;
    assert_true(http("GET", "/endpoints", NULL, NULL, &r));
    assert_non_null(strstr(r.body, "list://test 10.0.0.1:8000 state=ACTIVE usable_in_ms=0 "
                                   "ewma_us=250.0 inflight=2"));
    assert_non_null(strstr(r.body, "10.0.0.2:8000 state=SUSPENDED usable_in_ms=1500"));
    resp_fini(&r);
    assert_true(http("GET", "/endpoints?format=json", NULL, NULL, &r));
    /* other reporters (the clients this test makes) may be listed too: look for ours */
    assert_non_null(strstr(r.body, "{\"client\":\"list://test\",\"endpoints\":[{\"address\":"
                                   "\"10.0.0.1:8000\",\"state\":\"ACTIVE\""));
    resp_fini(&r);
    ft_endpoint_reporter_remove(rep);
    assert_true(http("GET", "/endpoints?format=json", NULL, NULL, &r));
    assert_null(strstr(r.body, "list://test")); /* gone once removed */
    resp_fini(&r);
}

static void admin_port_serves_the_pages(void **state)
{
    (void)state;
    ftrpc_admin *admin = NULL;
    assert_int_equal(ftrpc_admin_new("127.0.0.1:0", NULL, &admin), 0);
    int saved = port;
    port = ftrpc_admin_port(admin);
    assert_true(port > 0);
    http_resp r;
    assert_true(http("GET", "/health", NULL, NULL, &r));
    assert_int_equal(r.status, 200);
    resp_fini(&r);
    assert_true(http("GET", "/metrics", NULL, NULL, &r)); /* the process-wide registry */
    assert_non_null(strstr(r.body, "rpc_server_count{service=\"example.EchoService\""));
    resp_fini(&r);
    assert_true(http("GET", "/status?format=json", NULL, NULL, &r));
    assert_non_null(strstr(r.body, "\"methods\":[]"));
    resp_fini(&r);
    port = saved;
    ftrpc_admin_free(admin);
}

/* ---- bad input while good clients keep going ---- */

static atomic_int good_stop, good_rpc_ok, good_rpc_fail, good_http_ok, good_http_fail;

static void *good_rpc_main(void *arg)
{
    (void)arg;
    ftrpc_buf *req = ftrpc_buf_new();
    ftrpc_buf_append(req, "good", 4);
    while (!atomic_load(&good_stop)) {
        ftrpc_result res;
        int rc = ftrpc_call(client, "example.EchoService", "Echo", req, NULL, NULL, &res);
        atomic_fetch_add(
            rc == 0 && ftrpc_buf_size(res.response) == 4 ? &good_rpc_ok : &good_rpc_fail, 1);
        ftrpc_result_fini(&res);
        usleep(2000);
    }
    ftrpc_buf_free(req);
    return NULL;
}

static void *good_http_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&good_stop)) {
        http_resp r;
        int ok = http("POST", "/example.EchoService/Echo", "good", NULL, &r) && r.status == 200 &&
                 strcmp(r.body, "good") == 0;
        resp_fini(&r);
        atomic_fetch_add(ok ? &good_http_ok : &good_http_fail, 1);
        usleep(2000);
    }
    return NULL;
}

static int closed_with_status(int fd, int status)
{
    http_resp r;
    int ok = read_resp(fd, &r, 5000) && r.status == status;
    resp_fini(&r);
    return ok && h_raw_wait_closed(fd, 3000) == 1;
}

static void bad_http_input_is_closed_and_never_blocks_others(void **state)
{
    (void)state;
    pthread_t t1, t2;
    pthread_create(&t1, NULL, good_rpc_main, NULL);
    pthread_create(&t2, NULL, good_http_main, NULL);
    assert_true(h_wait_atomic_ge(&good_rpc_ok, 5, 5000));
    assert_true(h_wait_atomic_ge(&good_http_ok, 5, 5000));

    /* all four bad connections are open at once */
    int big = h_raw_connect(port), drip = h_raw_connect(port), junk = h_raw_connect(port),
        mute = h_raw_connect(port), huge = h_raw_connect(port);
    assert_true(big >= 0 && drip >= 0 && junk >= 0 && mute >= 0 && huge >= 0);
    assert_int_equal(h_raw_send(drip, "GET /status HTTP/1.1\r\nX: ", 25), 0);
    assert_int_equal(h_raw_send(mute, "P", 1), 0); /* PRPC or POST? never says */
    char hdr[10000];
    memcpy(hdr, "GET /status HTTP/1.1\r\nX: ", 25);
    memset(hdr + 25, 'a', sizeof hdr - 25);
    assert_int_equal(h_raw_send(big, hdr, sizeof hdr), 0);
    const char *garbage = "GET /\x01\x02\x03 HTTP/1.1\r\n\r\n";
    assert_int_equal(h_raw_send(junk, garbage, strlen(garbage)), 0);
    const char *toolarge =
        "POST /example.EchoService/Echo HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n";
    assert_int_equal(h_raw_send(huge, toolarge, strlen(toolarge)), 0);
    assert_true(closed_with_status(big, 431));
    assert_true(closed_with_status(junk, 400));
    assert_true(closed_with_status(huge, 413));
    /* the drip sends a byte every 100 ms: the header timer closes it anyway */
    int64_t start = h_now_ms();
    int closed = 0;
    while (!closed && h_now_ms() - start < 5000) {
        if (h_raw_send(drip, "a", 1) != 0) break;
        usleep(100 * 1000);
        char c;
        ssize_t n = recv(drip, &c, 1, MSG_DONTWAIT | MSG_PEEK);
        closed = n > 0 || n == 0;
    }
    assert_true(closed_with_status(drip, 408));
    assert_true(h_now_ms() - start < 3 * HEADER_TIMEOUT_MS);
    assert_int_equal(h_raw_wait_closed(mute, 3000), 1);
    close(big);
    close(drip);
    close(junk);
    close(mute);
    close(huge);
    assert_true(h_wait_until(logged, "HTTP header larger than 8 KiB", 3000));
    assert_true(h_wait_until(logged, "bad byte in an HTTP header", 3000));
    assert_true(h_wait_until(logged, "Content-Length larger than max_body_size", 3000));
    assert_true(h_wait_until(logged, "request header not complete within", 3000));
    assert_true(h_wait_until(logged, "protocol not recognised within", 3000));

    int rpc_before = atomic_load(&good_rpc_ok), http_before = atomic_load(&good_http_ok);
    assert_true(h_wait_atomic_ge(&good_rpc_ok, rpc_before + 5, 5000));
    assert_true(h_wait_atomic_ge(&good_http_ok, http_before + 5, 5000));
    atomic_store(&good_stop, 1);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    assert_int_equal(atomic_load(&good_rpc_fail), 0);
    assert_int_equal(atomic_load(&good_http_fail), 0);
}

/* Runs last: stops the server. A keep-alive connection sees /health turn 503 while a held call
 * keeps the server in its grace period, and a new call there gets 503 (ELOGOFF). */
struct stopper {
    pthread_t thread;
    int rc;
};

static void *stop_main(void *arg)
{
    struct stopper *st = arg;
    st->rc = ftrpc_server_stop(server, 5000);
    return NULL;
}

static void health_turns_503_while_stopping(void **state)
{
    (void)state;
    hold_released = 0;
    atomic_store(&holding, 0);
    int fd = h_raw_connect(port);
    assert_true(fd >= 0);
    const char *health = "GET /health HTTP/1.1\r\n\r\n";
    http_resp r;
    assert_int_equal(h_raw_send(fd, health, strlen(health)), 0);
    assert_true(read_resp(fd, &r, 5000));
    assert_int_equal(r.status, 200);
    resp_fini(&r);
    struct async_done d = {0};
    assert_int_equal(ftrpc_call_async(client, "example.EchoService", "Hold", NULL, NULL, NULL,
                                      on_async, &d, NULL),
                     0);
    assert_true(h_wait_until(holding_one, NULL, 3000));
    struct stopper st = {0};
    pthread_create(&st.thread, NULL, stop_main, &st);
    int status = 200;
    int64_t start = h_now_ms();
    while (status == 200 && h_now_ms() - start < 3000) {
        usleep(10 * 1000);
        assert_int_equal(h_raw_send(fd, health, strlen(health)), 0);
        assert_true(read_resp(fd, &r, 5000));
        status = r.status;
        assert_string_equal(r.body, status == 200 ? "OK" : "stopping");
        resp_fini(&r);
    }
    assert_int_equal(status, 503);
    const char *call = "POST /example.EchoService/Echo HTTP/1.1\r\nContent-Length: 1\r\n\r\nx";
    assert_int_equal(h_raw_send(fd, call, strlen(call)), 0);
    assert_true(read_resp(fd, &r, 5000));
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.headers, "x-bd-error-code: 2003"));
    resp_fini(&r);
    release_holds();
    pthread_join(st.thread, NULL);
    assert_int_equal(st.rc, 0);
    assert_true(h_wait_atomic_ge(&d.done, 1, 5000));
    assert_int_equal(d.code, 0);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pages_report_known_traffic),
        cmocka_unit_test(status_series_cover_the_last_seconds),
        cmocka_unit_test(calls_over_http_map_errors_to_status_codes),
        cmocka_unit_test(limits_and_deadlines_over_http),
        cmocka_unit_test(pipelined_requests_are_answered_in_order),
        cmocka_unit_test(endpoints_page_shows_what_reporters_report),
        cmocka_unit_test(admin_port_serves_the_pages),
        cmocka_unit_test(bad_http_input_is_closed_and_never_blocks_others),
        cmocka_unit_test(health_turns_503_while_stopping),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
