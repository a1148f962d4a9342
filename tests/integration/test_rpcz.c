/* rpcz over real sockets: two `ftrpc echo-server --rpcz` children, one slow (every reply 300 ms
 * late) and one fast; clients in this process and an admin port whose /rpcz page shows them.
 *
 * Off (the default), the page says so and a call leaves no record. On: a failbackup call whose
 * first attempt went to the slow server shows that attempt cancelled and the backup to the fast
 * one the winner, sent no sooner than the backup delay, each with its real endpoint; a call the
 * fast server answered first shows one winning attempt; a call the caller cancelled shows the
 * cancel; a call of 11 attempts keeps 8 and says 11; and the slow server's own page shows the
 * Control/Cancel it received. Each check compares the page with the ftrpc_result the call
 * returned. Last, `ftrpc call --rpcz` prints its call's record and `ftrpc bench --rpcz FILE`
 * writes its run's. */
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

static h_server slow, fast;
static ftrpc_admin *admin;
static char slow_addr[64], fast_addr[64];

static int setup(void **state)
{
    (void)state;
    const char *slow_args[] = {"--rpcz", "--delay-ms", "300", NULL};
    const char *fast_args[] = {"--rpcz", NULL};
    if (h_server_start(&slow, slow_args) != 0 || h_server_start(&fast, fast_args) != 0) return -1;
    h_server_url(&slow, slow_addr, sizeof slow_addr);
    h_server_url(&fast, fast_addr, sizeof fast_addr);
    return ftrpc_admin_new("127.0.0.1:0", NULL, &admin);
}

static int teardown(void **state)
{
    (void)state;
    ftrpc_admin_free(admin);
    h_server_stop(&slow, 5000);
    h_server_stop(&fast, 5000);
    return 0;
}

/* GET path on 127.0.0.1:port; malloc'ed body (the caller frees), NULL when curl failed. */
static char *get(int port, const char *path)
{
    char args[256];
    snprintf(args, sizeof args, "'http://127.0.0.1:%d%s'", port, path);
    char *out = NULL;
    if (h_curl(args, &out) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* ---- one async call, waited for ---- */

typedef struct outcome {
    atomic_int done;
    ftrpc_result r; /* without its buffers */
} outcome;

static void on_done(ftrpc_result *r, void *arg)
{
    outcome *o = arg;
    o->r = *r;
    o->r.response = o->r.attachment = NULL; /* the library frees them after the callback */
    atomic_store(&o->done, 1);
}

/* Calls Echo; *id is the call's handle, the key of its record on the page. cancel: cancel it at
 * once. */
static void call(ftrpc_client *c, int cancel, ftrpc_call_id *id, outcome *o)
{
    memset(o, 0, sizeof *o);
    ftrpc_buf *req = ftrpc_buf_new();
    ftrpc_buf_append(req, "hi", 2);
    assert_int_equal(
        ftrpc_call_async(c, "example.EchoService", "Echo", req, NULL, NULL, on_done, o, id), 0);
    ftrpc_buf_free(req);
    if (cancel) assert_int_equal(ftrpc_call_cancel(c, *id), 0);
    assert_true(h_wait_atomic_ge(&o->done, 1, 5000 * H_VG));
}

/* ---- reading the JSON page (its fields come in a fixed order, docs/observability.md) ---- */

/* The record of the call with this handle, copied into out; 0 when the page has none. Handles
 * are unique per client only: the search keeps to the ring of the newest client of `url`. */
static int record_of(const char *page, const char *url, ftrpc_call_id id, char *out, size_t cap)
{
    char key[256];
    snprintf(key, sizeof key, " %s\",\"dropped\":", url);
    const char *ring = NULL;
    for (const char *p = strstr(page, key); p; p = strstr(p + 1, key))
        ring = p;
    if (!ring) return 0;
    const char *ring_end = strstr(ring, "{\"kind\":");
    snprintf(key, sizeof key, "\"call_id\":%llu,", (unsigned long long)id);
    const char *at = strstr(ring, key);
    if (!at || (ring_end && at > ring_end)) return 0;
    const char *start = at;
    while (start > page && strncmp(start, "{\"seq\":", 7) != 0)
        start--;
    const char *end = strstr(at, "]}"); /* the end of its spans: nothing inside has a ']' */
    if (!end || (size_t)(end + 2 - start) >= cap) return 0;
    memcpy(out, start, (size_t)(end + 2 - start));
    out[end + 2 - start] = '\0';
    return 1;
}

static long long num(const char *obj, const char *key)
{
    const char *p = strstr(obj, key);
    assert_non_null(p);
    return strtoll(p + strlen(key), NULL, 10);
}

static int flag(const char *obj, const char *key)
{
    const char *p = strstr(obj, key);
    assert_non_null(p);
    return strncmp(p + strlen(key), "true", 4) == 0;
}

typedef struct span {
    char endpoint[64];
    long long sent_us, done_us, code;
    int backup, winner, cancelled;
} span;

static int spans_of(const char *record, span *out, int cap)
{
    int n = 0;
    for (const char *p = strstr(record, "{\"endpoint\":\""); p && n < cap;
         p = strstr(p + 1, "{\"endpoint\":\"")) {
        char obj[512];
        const char *end = strchr(p, '}');
        assert_non_null(end);
        snprintf(obj, sizeof obj, "%.*s", (int)(end - p + 1), p);
        span *s = &out[n++];
        sscanf(obj, "{\"endpoint\":\"%63[^\"]\"", s->endpoint);
        s->sent_us = num(obj, "\"sent_us\":");
        s->done_us = num(obj, "\"done_us\":");
        s->code = num(obj, "\"code\":");
        s->backup = flag(obj, "\"backup\":");
        s->winner = flag(obj, "\"winner\":");
        s->cancelled = flag(obj, "\"cancelled\":");
    }
    return n;
}

/* rpcz on, and a client of the slow server alone; its URL (the name of its ring) in url. */
static ftrpc_client *slow_client(const ftrpc_client_options *co, char *url, size_t len)
{
    assert_int_equal(ftrpc_rpcz_enable(0), 0);
    snprintf(url, len, "list://%s", slow_addr);
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(url, co, &c), 0);
    return c;
}

/* ---- tests ---- */

static void off_the_page_says_so_and_nothing_is_recorded(void **state)
{
    (void)state;
    assert_int_equal(ftrpc_rpcz_capacity(), 0);
    ftrpc_client *c = h_client_of(&fast, 2000);
    assert_non_null(c);
    ftrpc_call_id id;
    outcome o;
    call(c, 0, &id, &o);
    assert_int_equal(o.r.kind, FTRPC_RESULT_OK);
    char *text = get(ftrpc_admin_port(admin), "/rpcz");
    char *json = get(ftrpc_admin_port(admin), "/rpcz?format=json");
    assert_non_null(text);
    assert_non_null(json);
    assert_non_null(strstr(text, "rpcz is off"));
    assert_non_null(strstr(json, "{\"enabled\":false,\"capacity\":0,\"rings\":["));
    assert_null(strstr(json, "\"seq\":")); /* no call anywhere */
    free(text);
    free(json);
    ftrpc_client_free(c);
}

static void a_backup_race_is_recorded_as_it_ran(void **state)
{
    (void)state;
    assert_int_equal(ftrpc_rpcz_enable(0), 0);
    char url[160];
    snprintf(url, sizeof url, "list://%s,%s", slow_addr, fast_addr);
    ftrpc_client_options co = {.fail_mode = FTRPC_FAILBACKUP,
                               .backup_request_ms = 50,
                               .lb = "rr",
                               .timeout_ms = 2000,
                               .retry_budget_ratio = -1};
    ftrpc_client *c;
    assert_int_equal(ftrpc_client_new(url, &co, &c), 0);
    /* round robin over the two: within a few calls one starts at each */
    ftrpc_call_id raced = 0, direct = 0;
    outcome raced_o, direct_o, o;
    for (int i = 0; i < 20 && (!raced || !direct); i++) {
        ftrpc_call_id id;
        call(c, 0, &id, &o);
        assert_int_equal(o.r.kind, FTRPC_RESULT_OK);
        if (o.r.backup_won && !raced) {
            raced = id;
            raced_o = o;
        } else if (!o.r.backups && !direct) {
            direct = id;
            direct_o = o;
        }
    }
    assert_true(raced && direct);
    assert_string_equal(raced_o.r.endpoint, fast_addr);
    assert_string_equal(direct_o.r.endpoint, fast_addr);

    char *page = get(ftrpc_admin_port(admin), "/rpcz?format=json");
    assert_non_null(page);
    assert_non_null(strstr(page, "{\"enabled\":true,\"capacity\":256,"));
    char rec[4096];
    span s[FTRPC_RPCZ_MAX_ATTEMPTS];

    assert_true(record_of(page, url, raced, rec, sizeof rec));
    assert_non_null(strstr(rec, "\"method\":\"example.EchoService/Echo\""));
    assert_non_null(strstr(rec, "\"result\":\"OK\",\"code\":0,"));
    assert_int_equal(num(rec, "\"latency_us\":"), raced_o.r.latency_us);
    assert_int_equal(num(rec, "\"attempts\":"), 2);
    assert_int_equal(num(rec, "\"backups\":"), 1);
    assert_false(flag(rec, "\"cancelled\":")); /* the call's own: the caller did not cancel */
    assert_int_equal(spans_of(rec, s, FTRPC_RPCZ_MAX_ATTEMPTS), 2);
    /* the first copy: to the slow server, outlived by the call, cancelled */
    assert_string_equal(s[0].endpoint, slow_addr);
    assert_false(s[0].backup);
    assert_false(s[0].winner);
    assert_true(s[0].cancelled);
    assert_int_equal(s[0].code, FTRPC_ECANCELED);
    assert_true(s[0].sent_us < 50000);
    /* the backup: to the fast one, no sooner than the backup delay, the winner */
    assert_string_equal(s[1].endpoint, fast_addr);
    assert_true(s[1].backup);
    assert_true(s[1].winner);
    assert_false(s[1].cancelled);
    assert_int_equal(s[1].code, 0);
    assert_true(s[1].sent_us >= 50000 && s[1].sent_us < 300000);
    assert_true(s[1].done_us >= s[1].sent_us && s[1].done_us <= raced_o.r.latency_us);
    assert_true(s[0].done_us >= s[1].done_us); /* abandoned when the winner answered */

    assert_true(record_of(page, url, direct, rec, sizeof rec));
    assert_int_equal(num(rec, "\"attempts\":"), 1);
    assert_int_equal(num(rec, "\"backups\":"), 0);
    assert_int_equal(spans_of(rec, s, FTRPC_RPCZ_MAX_ATTEMPTS), 1);
    assert_string_equal(s[0].endpoint, fast_addr);
    assert_true(s[0].winner);
    assert_false(s[0].backup);
    assert_false(s[0].cancelled);
    free(page);
    ftrpc_client_free(c);
}

static int slow_saw_a_cancel(void *arg)
{
    (void)arg;
    char *page = get(slow.port, "/rpcz?format=json");
    int seen = page && strstr(page, "\"replied\":true,\"cancelled\":true}");
    free(page);
    return seen;
}

static void the_server_records_the_cancel_it_received(void **state)
{
    (void)state;
    /* the race above cancelled its copy on the slow server, whose reply goes out 300 ms late */
    assert_true(h_wait_until(slow_saw_a_cancel, NULL, 3000 * H_VG));
    char *page = get(slow.port, "/rpcz");
    assert_non_null(page);
    char head[128];
    snprintf(head, sizeof head, "server %s: ", slow_addr);
    assert_non_null(strstr(page, head));
    assert_non_null(strstr(page, "example.EchoService/Echo from 127.0.0.1:"));
    assert_non_null(strstr(page, " cancelled\n"));
    free(page);
}

static void a_call_over_http_is_recorded_by_its_server(void **state)
{
    (void)state;
    char args[256], *out = NULL;
    snprintf(args, sizeof args, "-d hello 'http://127.0.0.1:%d/example.EchoService/Echo'",
             fast.port);
    assert_int_equal(h_curl(args, &out), 0);
    assert_string_equal(out, "hello");
    free(out);
    char *page = get(fast.port, "/rpcz?format=json");
    assert_non_null(page);
    char name[128];
    snprintf(name, sizeof name, "{\"kind\":\"server\",\"name\":\"%s\",", fast_addr);
    assert_non_null(strstr(page, name));
    /* the newest record first: the call just made */
    const char *first = strstr(page, "\"calls\":[{\"seq\":");
    assert_non_null(first);
    assert_non_null(strstr(first, "\"method\":\"example.EchoService/Echo\",\"peer\":\"127.0.0.1:"));
    const char *http = strstr(first, "\"protocol\":\"http\",\"correlation_id\":-1,\"code\":0,"
                                     "\"error\":\"\",\"replied\":true,\"cancelled\":false}");
    assert_non_null(http);
    const char *rec = strchr(first, '{');
    assert_null(memchr(rec + 1, '{', (size_t)(http - rec - 1))); /* in that first record */
    free(page);
}

static void a_call_the_caller_cancelled_says_so(void **state)
{
    (void)state;
    char url[96];
    ftrpc_client *c = slow_client(&(ftrpc_client_options){.timeout_ms = 2000}, url, sizeof url);
    ftrpc_call_id id;
    outcome o;
    call(c, 1, &id, &o);
    assert_int_equal(o.r.code, FTRPC_ECANCELED);
    char *page = get(ftrpc_admin_port(admin), "/rpcz?format=json");
    assert_non_null(page);
    char rec[4096];
    span s[FTRPC_RPCZ_MAX_ATTEMPTS];
    assert_true(record_of(page, url, id, rec, sizeof rec));
    assert_non_null(
        strstr(rec, "\"result\":\"RPC_ERROR\",\"code\":-8,\"error\":\"FTRPC_ECANCELED\""));
    assert_true(flag(rec, "\"cancelled\":"));
    assert_int_equal(spans_of(rec, s, FTRPC_RPCZ_MAX_ATTEMPTS), 1);
    assert_string_equal(s[0].endpoint, slow_addr);
    assert_true(s[0].cancelled);
    assert_false(s[0].winner);
    assert_int_equal(s[0].code, FTRPC_ECANCELED);
    free(page);
    ftrpc_client_free(c);
}

static void attempts_past_the_bound_are_counted_not_kept(void **state)
{
    (void)state;
    /* every attempt times out after 20 ms on the slow server: 1 + 10 retries */
    ftrpc_client_options co = {.fail_mode = FTRPC_FAILTRY,
                               .retries = 10,
                               .attempt_timeout_ms = 20,
                               .timeout_ms = 3000,
                               .retry_budget_ratio = -1};
    char url[96];
    ftrpc_client *c = slow_client(&co, url, sizeof url);
    ftrpc_call_id id;
    outcome o;
    call(c, 0, &id, &o);
    assert_int_equal(o.r.attempts, 11);
    char *page = get(ftrpc_admin_port(admin), "/rpcz?format=json");
    assert_non_null(page);
    char rec[8192];
    span s[FTRPC_RPCZ_MAX_ATTEMPTS + 1];
    assert_true(record_of(page, url, id, rec, sizeof rec));
    assert_int_equal(num(rec, "\"attempts\":"), 11);
    assert_int_equal(spans_of(rec, s, FTRPC_RPCZ_MAX_ATTEMPTS + 1), FTRPC_RPCZ_MAX_ATTEMPTS);
    for (int i = 0; i < FTRPC_RPCZ_MAX_ATTEMPTS; i++) {
        assert_string_equal(s[i].endpoint, slow_addr);
        assert_int_equal(s[i].code, FTRPC_ERPCTIMEDOUT);
        assert_true(s[i].cancelled);
        if (i) assert_true(s[i].sent_us >= s[i - 1].done_us); /* one after the other */
    }
    free(page);
    ftrpc_client_free(c);
    ftrpc_rpcz_disable();
}

static int count_of(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void the_cli_prints_a_call_and_writes_a_run(void **state)
{
    (void)state;
    char url[160];
    snprintf(url, sizeof url, "list://%s,%s", slow_addr, fast_addr);
    char *out = NULL, *err = NULL;
    const char *call_args[] = {"call",   url,      "example.EchoService/Echo",
                               "--data", "hi",     "--backup-ms",
                               "20",     "--rpcz", NULL};
    assert_int_equal(h_cli_run(call_args, 10000 * H_VG, &out, &err), 0);
    char head[256];
    snprintf(head, sizeof head, "client c1 %s: 1 call kept, newest first; 0 dropped\n", url);
    if (!strstr(err, "rpcz is on") || !strstr(err, head) ||
        !strstr(err, "example.EchoService/Echo OK code=0") || !strstr(err, "    #0 127.0.0.1:") ||
        !strstr(err, " winner\n"))
        fail_msg("ftrpc call --rpcz printed:\n%s", err);
    free(out);
    free(err);

    const char *dir = getenv("FTRPC_SCRATCH");
    char path[512];
    snprintf(path, sizeof path, "%s/rpcz-%d.json", dir && *dir ? dir : "/tmp", (int)getpid());
    const char *bench_args[] = {"bench",   url,           "example.EchoService/Echo",
                                "--count", "20",          "--concurrency",
                                "2",       "--backup-ms", "20",
                                "--rpcz",  path,          NULL};
    out = err = NULL;
    assert_int_equal(h_cli_run(bench_args, 30000 * H_VG, &out, &err), 0);
    free(out);
    free(err);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *json = calloc(1, 1 << 20);
    size_t n = fread(json, 1, (1 << 20) - 1, f);
    fclose(f);
    unlink(path);
    assert_true(n > 0);
    assert_non_null(strstr(json, "{\"enabled\":true,\"capacity\":256,"));
    snprintf(head, sizeof head, "{\"kind\":\"client\",\"name\":\"c1 %s\",", url);
    assert_non_null(strstr(json, head));
    assert_int_equal(count_of(json, "\"seq\":"), 20); /* every call of the run */
    assert_int_equal(count_of(json, "\"winner\":true"), 20);
    free(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(off_the_page_says_so_and_nothing_is_recorded),
        cmocka_unit_test(a_backup_race_is_recorded_as_it_ran),
        cmocka_unit_test(the_server_records_the_cancel_it_received),
        cmocka_unit_test(a_call_over_http_is_recorded_by_its_server),
        cmocka_unit_test(a_call_the_caller_cancelled_says_so),
        cmocka_unit_test(attempts_past_the_bound_are_counted_not_kept),
        cmocka_unit_test(the_cli_prints_a_call_and_writes_a_run),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
