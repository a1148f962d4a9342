/* Fallback functions (client.h, docs/fallback.md), end to end through an in-process server: which
 * outcomes each policy kind sees, at client and at call level; Kitex's rules for what the function
 * returns; what the per-method metrics report with and without report_as_fallback; and that the
 * function runs once per call, after retries and backups.
 *
 * Outcomes and how they are made:
 *   success        the method "Ok" answers "real"
 *   business error the method "Biz" fails with 3001
 *   timeout        the method "Slow" answers after the call's 150 ms deadline (FTRPC_ERPCTIMEDOUT)
 *   no endpoint    file:// naming an empty file: the service has no endpoint at all
 *                  (FTRPC_ENOENDPOINT, which FTRPC_FALLBACK_TIMEOUTS_AND_BREAKER still covers)
 *   breaker open   EINTERNAL answers trip the only endpoint's breaker; the next call is rejected
 *                  with FTRPC_EBREAKER without being sent
 *   connection     a port nothing listens on (FTRPC_ECONNREFUSED)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client/client_internal.h"
#include "ftrpc/ftrpc.h"

#define SVC "test.FallbackService"
#define BIZ_CODE 3001
#define CALL_TIMEOUT_MS 150
#define NSERVERS 3

/* ---- the servers ---- */

static ftrpc_server *servers[NSERVERS];
static char url_one[64], url_all[256], url_dead[64], url_empty[600], empty_path[512];

static void reply_text(ftrpc_server_call *call, const char *text)
{
    ftrpc_buf *b = ftrpc_buf_new();
    ftrpc_buf_append(b, text, strlen(text));
    ftrpc_server_call_reply(call, b, NULL);
    ftrpc_buf_free(b);
}

static void on_ok(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    reply_text(call, "real");
}

static void on_biz(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    ftrpc_server_call_fail(call, BIZ_CODE, "out of stock");
}

static void on_internal(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    ftrpc_server_call_fail(call, 2001, "internal"); /* EINTERNAL: an RPC error, retried */
}

static void on_bad_status(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    reply_text(call, "status=DEGRADED");
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* On a worker: answers once the client gave up (it cancels) or after 2 s, whichever is first. */
static void on_slow(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    for (int i = 0; i < 200 && !ftrpc_server_call_is_canceled(call); i++)
        sleep_ms(10);
    reply_text(call, "late");
}

static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    close(fd); /* nothing listens there now: connecting is refused */
    return ntohs(a.sin_port);
}

static int group_setup(void **state)
{
    (void)state;
    ftrpc_method_options worker = {.run_mode = FTRPC_RUN_IN_WORKER};
    url_all[0] = '\0';
    for (int i = 0; i < NSERVERS; i++) {
        if (ftrpc_server_new(NULL, &servers[i]) != 0) return -1;
        ftrpc_server_add_method(servers[i], SVC, "Ok", on_ok, NULL, NULL);
        ftrpc_server_add_method(servers[i], SVC, "Biz", on_biz, NULL, NULL);
        ftrpc_server_add_method(servers[i], SVC, "Internal", on_internal, NULL, NULL);
        ftrpc_server_add_method(servers[i], SVC, "BadStatus", on_bad_status, NULL, NULL);
        ftrpc_server_add_method(servers[i], SVC, "Slow", on_slow, NULL, &worker);
        if (ftrpc_server_start(servers[i], "127.0.0.1:0") != 0) return -1;
        char ep[32];
        snprintf(ep, sizeof ep, "%s127.0.0.1:%d", i ? "," : "", ftrpc_server_port(servers[i]));
        strcat(url_all, ep);
    }
    snprintf(url_one, sizeof url_one, "127.0.0.1:%d", ftrpc_server_port(servers[0]));
    snprintf(url_dead, sizeof url_dead, "127.0.0.1:%d", dead_port());
    snprintf(empty_path, sizeof empty_path, "/tmp/ftrpc_test_fallback_XXXXXX");
    int fd = mkstemp(empty_path);
    if (fd < 0) return -1;
    close(fd);
    snprintf(url_empty, sizeof url_empty, "file://%s", empty_path);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < NSERVERS; i++)
        ftrpc_server_free(servers[i]);
    unlink(empty_path);
    return 0;
}

/* ---- a recording fallback ---- */

typedef enum { ACT_NEITHER, ACT_RESPONSE, ACT_RPC_ERROR, ACT_BIZ_ERROR, ACT_BOTH } action;

#define FB_BIZ_CODE 3777

typedef struct fb_rec {
    action act;
    atomic_int calls;
    /* what the last invocation saw */
    char service[64], method[64], request[64], response[64];
    int had_response;
    ftrpc_result_kind kind;
    int code, attempts, backups;
} fb_rec;

static void copy_buf(char *dst, size_t cap, const ftrpc_buf *b)
{
    size_t n = ftrpc_buf_copy_to(b, dst, cap - 1);
    dst[n] = '\0';
}

/* The fallback runs on the call's IO thread: concurrent async calls on several loops run it at the
 * same time on one fb_rec (a data race on its fields, caught by TSan), hence the lock. The test
 * thread reads the fields only after a sync call returned, which orders it after the writes. */
static pthread_mutex_t record_lock = PTHREAD_MUTEX_INITIALIZER;

static void record_fb(const ftrpc_fallback_input *in, ftrpc_fallback_output *out, void *arg)
{
    fb_rec *f = arg;
    pthread_mutex_lock(&record_lock);
    atomic_fetch_add(&f->calls, 1);
    snprintf(f->service, sizeof f->service, "%s", in->service);
    snprintf(f->method, sizeof f->method, "%s", in->method);
    copy_buf(f->request, sizeof f->request, in->request);
    f->had_response = in->result->response != NULL;
    f->response[0] = '\0';
    if (in->result->response) copy_buf(f->response, sizeof f->response, in->result->response);
    f->kind = in->result->kind;
    f->code = in->result->code;
    f->attempts = in->result->attempts;
    f->backups = in->result->backups;
    if (f->act == ACT_RESPONSE || f->act == ACT_BOTH) {
        out->response = ftrpc_buf_new();
        ftrpc_buf_append(out->response, "fallback", 8);
    }
    if (f->act == ACT_RPC_ERROR) out->error_code = FTRPC_ELIMIT;
    if (f->act == ACT_BIZ_ERROR || f->act == ACT_BOTH) {
        out->error_code = FB_BIZ_CODE;
        snprintf(out->error_text, sizeof out->error_text, "fallback says no");
    }
    pthread_mutex_unlock(&record_lock);
}

/* ---- calling and reading the metrics ---- */

typedef struct counts {
    uint64_t calls, ok, rpc_errors, business_errors, fallbacks, attempts;
} counts;

static counts read_counts(ftrpc_client *c, const char *method)
{
    ft_method_metrics *mm = ft_client_metrics_get(&c->metrics, SVC, method);
    assert_non_null(mm);
    return (counts){ft_counter_get(&mm->calls),      ft_counter_get(&mm->ok),
                    ft_counter_get(&mm->rpc_errors), ft_counter_get(&mm->business_errors),
                    ft_counter_get(&mm->fallbacks),  ft_counter_get(&mm->attempts)};
}

/* Calls expected to answer get a deadline long enough for a loaded machine (ASan, shared cores);
 * only the timeout outcome uses CALL_TIMEOUT_MS. */
static ftrpc_client *new_client_timeout(const char *url, const ftrpc_fallback *client_fb,
                                        int timeout_ms)
{
    ftrpc_client_options o = {.timeout_ms = timeout_ms, .connect_timeout_ms = 1000};
    if (client_fb) o.fallback = *client_fb;
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(url, &o, &c), 0);
    return c;
}

static ftrpc_client *new_client(const char *url, const ftrpc_fallback *client_fb)
{
    return new_client_timeout(url, client_fb, 5000);
}

static int call_with(ftrpc_client *c, const char *method, const ftrpc_fallback *call_fb,
                     ftrpc_result *r)
{
    ftrpc_buf *req = ftrpc_buf_new();
    ftrpc_buf_append(req, "req", 3);
    ftrpc_call_options co = {.fallback = call_fb};
    int rc = ftrpc_call(c, SVC, method, req, NULL, &co, r);
    ftrpc_buf_free(req);
    return rc;
}

static int response_is(const ftrpc_result *r, const char *want)
{
    char got[64];
    if (!r->response) return 0;
    copy_buf(got, sizeof got, r->response);
    return strcmp(got, want) == 0;
}

/* A failed expectation names the table row. */
#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            print_error("case %s: expected %s (got kind %d code %d)\n", label, #cond, (int)r.kind, \
                        r.code);                                                                   \
            fail();                                                                                \
        }                                                                                          \
    } while (0)

/* ---- outcomes ---- */

typedef enum { O_SUCCESS, O_BUSINESS, O_TIMEOUT, O_NOENDPOINT, O_CONNREFUSED, O_COUNT } outcome;

static const struct {
    const char *name;
    const char *method;
    ftrpc_result_kind kind;
    int code;
} OUTCOMES[O_COUNT] = {
    [O_SUCCESS] = {"success", "Ok", FTRPC_RESULT_OK, 0},
    [O_BUSINESS] = {"business", "Biz", FTRPC_RESULT_BUSINESS_ERROR, BIZ_CODE},
    [O_TIMEOUT] = {"timeout", "Slow", FTRPC_RESULT_RPC_ERROR, FTRPC_ERPCTIMEDOUT},
    [O_NOENDPOINT] = {"no-endpoint", "Ok", FTRPC_RESULT_RPC_ERROR, FTRPC_ENOENDPOINT},
    [O_CONNREFUSED] = {"conn-refused", "Ok", FTRPC_RESULT_RPC_ERROR, FTRPC_ECONNREFUSED},
};

static const char *outcome_url(outcome o)
{
    return o == O_NOENDPOINT ? url_empty : o == O_CONNREFUSED ? url_dead : url_one;
}

static int outcome_timeout_ms(int o)
{
    return o == O_TIMEOUT ? CALL_TIMEOUT_MS : 5000;
}

static int rc_of(ftrpc_result_kind kind, int code)
{
    return kind == FTRPC_RESULT_OK               ? 0
           : kind == FTRPC_RESULT_BUSINESS_ERROR ? FTRPC_EBUSINESS
                                                 : code;
}

/* Which counter a result of this kind lands in: 0 ok, 1 rpc_errors, 2 business_errors. */
static int bucket_of(ftrpc_result_kind kind)
{
    return kind == FTRPC_RESULT_OK ? 0 : kind == FTRPC_RESULT_RPC_ERROR ? 1 : 2;
}

static void expect_reported(const char *label, const ftrpc_result r, counts m, int bucket)
{
    EXPECT(m.calls == 1);
    EXPECT(m.ok == (bucket == 0));
    EXPECT(m.rpc_errors == (bucket == 1));
    EXPECT(m.business_errors == (bucket == 2));
}

/* ---- every kind x outcome x level x reporting ---- */

static const char *KIND_NAMES[] = {"off", "errors+responses", "errors", "timeouts+breaker"};

static int kind_applies(ftrpc_fallback_kind k, outcome o)
{
    switch (k) {
    case FTRPC_FALLBACK_ERRORS_AND_RESPONSES:
        return 1;
    case FTRPC_FALLBACK_ERRORS:
        return o != O_SUCCESS;
    case FTRPC_FALLBACK_TIMEOUTS_AND_BREAKER:
        return o == O_TIMEOUT || o == O_NOENDPOINT;
    default:
        return 0;
    }
}

static void each_kind_sees_exactly_its_outcomes_at_client_and_call_level(void **state)
{
    (void)state;
    int cases = 0;
    for (outcome o = 0; o < O_COUNT; o++)
        for (ftrpc_fallback_kind k = FTRPC_FALLBACK_ERRORS_AND_RESPONSES;
             k <= FTRPC_FALLBACK_TIMEOUTS_AND_BREAKER; k++)
            for (int call_level = 0; call_level <= 1; call_level++)
                for (int report = 0; report <= 1; report++) {
                    char label[128];
                    snprintf(label, sizeof label, "%s/%s/%s/%s", OUTCOMES[o].name, KIND_NAMES[k],
                             call_level ? "call" : "client",
                             report ? "report-as-fallback" : "report-original");
                    fb_rec rec = {.act = ACT_RESPONSE};
                    ftrpc_fallback fb = {
                        .kind = k, .fn = record_fb, .arg = &rec, .report_as_fallback = report};
                    ftrpc_client *c = new_client_timeout(outcome_url(o), call_level ? NULL : &fb,
                                                         outcome_timeout_ms(o));
                    ftrpc_result r;
                    int rc = call_with(c, OUTCOMES[o].method, call_level ? &fb : NULL, &r);
                    counts m = read_counts(c, OUTCOMES[o].method);
                    int applies = kind_applies(k, o);
                    EXPECT(atomic_load(&rec.calls) == applies);
                    if (applies) {
                        /* the function saw the original outcome and the request */
                        EXPECT(strcmp(rec.service, SVC) == 0);
                        EXPECT(strcmp(rec.method, OUTCOMES[o].method) == 0);
                        EXPECT(strcmp(rec.request, "req") == 0);
                        EXPECT(rec.kind == OUTCOMES[o].kind);
                        EXPECT(rec.code == OUTCOMES[o].code);
                        EXPECT(rec.had_response == (o == O_SUCCESS));
                        if (o == O_SUCCESS) EXPECT(strcmp(rec.response, "real") == 0);
                        /* and its response is the call's */
                        EXPECT(rc == 0);
                        EXPECT(r.kind == FTRPC_RESULT_OK);
                        EXPECT(response_is(&r, "fallback"));
                        EXPECT(r.from_fallback == 1);
                        EXPECT(r.error_text[0] == '\0');
                    } else {
                        EXPECT(rc == rc_of(OUTCOMES[o].kind, OUTCOMES[o].code));
                        EXPECT(r.kind == OUTCOMES[o].kind);
                        EXPECT(r.code == OUTCOMES[o].code);
                        EXPECT(r.from_fallback == 0);
                        if (o == O_SUCCESS) EXPECT(response_is(&r, "real"));
                    }
                    /* reported: the original, but an RPC error answered by the fallback counts
                     * as a success with report_as_fallback; a business error never moves */
                    int bucket = bucket_of(OUTCOMES[o].kind);
                    if (applies && report && OUTCOMES[o].kind == FTRPC_RESULT_RPC_ERROR) bucket = 0;
                    expect_reported(label, r, m, bucket);
                    EXPECT(m.fallbacks == (uint64_t)applies);
                    ftrpc_result_fini(&r);
                    ftrpc_client_free(c);
                    cases++;
                }
    print_message("%d cases\n", cases);
}

/* ---- what the function returns ---- */

static const char *ACT_NAMES[] = {"neither", "response", "rpc-error", "business-error", "both"};

static void returned_response_error_or_neither_follow_kitex_rules(void **state)
{
    (void)state;
    const outcome outs[] = {O_SUCCESS, O_BUSINESS, O_CONNREFUSED};
    int cases = 0;
    for (size_t oi = 0; oi < sizeof outs / sizeof outs[0]; oi++)
        for (action act = ACT_NEITHER; act <= ACT_BOTH; act++)
            for (int report = 0; report <= 1; report++) {
                outcome o = outs[oi];
                char label[128];
                snprintf(label, sizeof label, "%s/%s/%s", OUTCOMES[o].name, ACT_NAMES[act],
                         report ? "report-as-fallback" : "report-original");
                fb_rec rec = {.act = act};
                ftrpc_fallback fb = {.kind = FTRPC_FALLBACK_ERRORS_AND_RESPONSES,
                                     .fn = record_fb,
                                     .arg = &rec,
                                     .report_as_fallback = report};
                ftrpc_client *c = new_client_timeout(outcome_url(o), &fb, outcome_timeout_ms(o));
                ftrpc_result r;
                int rc = call_with(c, OUTCOMES[o].method, NULL, &r);
                counts m = read_counts(c, OUTCOMES[o].method);
                EXPECT(atomic_load(&rec.calls) == 1);
                ftrpc_result_kind want_kind = OUTCOMES[o].kind;
                int want_code = OUTCOMES[o].code;
                switch (act) {
                case ACT_NEITHER:
                    break; /* the original stands */
                case ACT_RESPONSE:
                    want_kind = FTRPC_RESULT_OK, want_code = 0;
                    break;
                case ACT_RPC_ERROR:
                    want_kind = FTRPC_RESULT_RPC_ERROR, want_code = FTRPC_ELIMIT;
                    break;
                case ACT_BIZ_ERROR:
                case ACT_BOTH: /* both: only the error */
                    want_kind = FTRPC_RESULT_BUSINESS_ERROR, want_code = FB_BIZ_CODE;
                    break;
                }
                EXPECT(r.kind == want_kind);
                EXPECT(r.code == want_code);
                EXPECT(rc == rc_of(want_kind, want_code));
                EXPECT(r.from_fallback == (act != ACT_NEITHER));
                if (want_kind == FTRPC_RESULT_OK)
                    EXPECT(response_is(&r, act == ACT_NEITHER ? "real" : "fallback"));
                else
                    EXPECT(r.response == NULL);
                if (act == ACT_RPC_ERROR)
                    EXPECT(strcmp(r.error_text, ftrpc_strerror(FTRPC_ELIMIT)) == 0);
                if (act == ACT_BIZ_ERROR || act == ACT_BOTH)
                    EXPECT(strcmp(r.error_text, "fallback says no") == 0);
                /* Kitex's rule: only an RPC error with report_as_fallback is reported as what
                 * the fallback made of it (a response: ok; an error: that error's kind) */
                int bucket = bucket_of(OUTCOMES[o].kind);
                if (act != ACT_NEITHER && report && OUTCOMES[o].kind == FTRPC_RESULT_RPC_ERROR)
                    bucket = bucket_of(want_kind);
                expect_reported(label, r, m, bucket);
                /* the counter counts outcomes a fallback produced: "neither" produced none */
                EXPECT(m.fallbacks == (act != ACT_NEITHER));
                ftrpc_result_fini(&r);
                ftrpc_client_free(c);
                cases++;
            }
    print_message("%d cases\n", cases);
}

/* Where ftrpc differed from Kitex until issue 20: an RPC error that the fallback replaced with an
 * error was reported as the original RPC error even with report_as_fallback. Kitex reports the
 * fallback's error then (client.go: `if reportAsFB { reportErr = fbErr }`), so a business error the
 * fallback returns lands in business_errors; without report_as_fallback the original stays. */
static void report_as_fallback_reports_the_fallbacks_error_in_place_of_an_rpc_error(void **state)
{
    (void)state;
    static const struct {
        action act;
        int report;
        int bucket; /* 0 ok, 1 rpc_errors, 2 business_errors */
    } rows[] = {
        {ACT_BIZ_ERROR, 1, 2}, {ACT_BIZ_ERROR, 0, 1}, {ACT_RPC_ERROR, 1, 1},
        {ACT_RPC_ERROR, 0, 1}, {ACT_RESPONSE, 1, 0},  {ACT_RESPONSE, 0, 1},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char label[96];
        snprintf(label, sizeof label, "conn-refused/%s/%s", ACT_NAMES[rows[i].act],
                 rows[i].report ? "report-as-fallback" : "report-original");
        fb_rec rec = {.act = rows[i].act};
        ftrpc_fallback fb = {.kind = FTRPC_FALLBACK_ERRORS,
                             .fn = record_fb,
                             .arg = &rec,
                             .report_as_fallback = rows[i].report};
        ftrpc_client *c = new_client(url_dead, &fb);
        ftrpc_result r;
        call_with(c, "Ok", NULL, &r);
        counts m = read_counts(c, "Ok");
        EXPECT(rec.code == FTRPC_ECONNREFUSED);
        expect_reported(label, r, m, rows[i].bucket);
        ftrpc_result_fini(&r);
        ftrpc_client_free(c);
    }
}

/* ---- the breaker's rejection ---- */

/* Kitex's TimeoutAndCBFallback fires on a circuit-breaker rejection: once the only endpoint's
 * breaker is open, a call is rejected at once with FTRPC_EBREAKER (no attempt), the fallback sees
 * it, and rpc_client_breaker_rejections counts it. With breaker_reject = -1 the call is sent. */
static void timeouts_and_breaker_kind_sees_the_breakers_rejection(void **state)
{
    (void)state;
    for (int reject_off = 0; reject_off <= 1; reject_off++) {
        fb_rec rec = {.act = ACT_RESPONSE};
        ftrpc_client_options o = {
            .timeout_ms = 5000,
            .connect_timeout_ms = 1000,
            .retries = FTRPC_NO_RETRY,
            .health = {.breaker_min_calls = 4, .breaker_reject = reject_off ? -1 : 0},
            .fallback = {.kind = FTRPC_FALLBACK_TIMEOUTS_AND_BREAKER, .fn = record_fb, .arg = &rec},
        };
        ftrpc_client *c = NULL;
        assert_int_equal(ftrpc_client_new(url_one, &o, &c), 0);
        ftrpc_result r;
        for (int i = 0; i < 4; i++) { /* EINTERNAL x 4: the breaker trips on the 4th */
            assert_int_equal(call_with(c, "Internal", NULL, &r), FTRPC_EINTERNAL);
            ftrpc_result_fini(&r);
        }
        assert_int_equal(atomic_load(&rec.calls), 0); /* errors are not this kind's */
        int rc = call_with(c, "Ok", NULL, &r);
        ft_method_metrics *mm = ft_client_metrics_get(&c->metrics, SVC, "Ok");
        if (!reject_off) {
            assert_int_equal(atomic_load(&rec.calls), 1);
            assert_int_equal(rec.code, FTRPC_EBREAKER);
            assert_int_equal(rec.attempts, 0);
            assert_int_equal(rc, 0); /* the fallback's answer */
            assert_true(response_is(&r, "fallback"));
            assert_int_equal(ft_counter_get(&mm->breaker_rejections), 1);
        } else {
            assert_int_equal(atomic_load(&rec.calls), 0);
            assert_int_equal(rc, 0); /* sent anyway: the real answer, as the early probe */
            assert_true(response_is(&r, "real"));
            assert_int_equal(ft_counter_get(&mm->breaker_rejections), 0);
        }
        ftrpc_result_fini(&r);
        ftrpc_client_free(c);
    }
}

/* ---- levels ---- */

static void call_level_fallback_wins_over_the_clients(void **state)
{
    (void)state;
    fb_rec client_rec = {.act = ACT_RESPONSE}, call_rec = {.act = ACT_RPC_ERROR};
    ftrpc_fallback client_fb = {FTRPC_FALLBACK_ERRORS, record_fb, &client_rec, 0};
    ftrpc_fallback call_fb = {FTRPC_FALLBACK_ERRORS, record_fb, &call_rec, 0};
    ftrpc_client *c = new_client(url_one, &client_fb);
    ftrpc_result r;
    assert_int_equal(call_with(c, "Biz", &call_fb, &r), FTRPC_ELIMIT);
    assert_int_equal(atomic_load(&client_rec.calls), 0);
    assert_int_equal(atomic_load(&call_rec.calls), 1);
    ftrpc_result_fini(&r);
    /* without a call-level fallback the client's runs */
    assert_int_equal(call_with(c, "Biz", NULL, &r), 0);
    assert_true(response_is(&r, "fallback"));
    assert_int_equal(atomic_load(&client_rec.calls), 1);
    ftrpc_result_fini(&r);
    ftrpc_client_free(c);
}

static void call_level_off_turns_the_clients_fallback_off_for_that_call(void **state)
{
    (void)state;
    fb_rec rec = {.act = ACT_RESPONSE};
    ftrpc_fallback client_fb = {FTRPC_FALLBACK_ERRORS, record_fb, &rec, 0};
    ftrpc_fallback off = {.kind = FTRPC_FALLBACK_OFF};
    ftrpc_client *c = new_client(url_one, &client_fb);
    ftrpc_result r;
    assert_int_equal(call_with(c, "Biz", &off, &r), FTRPC_EBUSINESS);
    assert_int_equal(r.code, BIZ_CODE);
    assert_int_equal(r.from_fallback, 0);
    assert_int_equal(atomic_load(&rec.calls), 0);
    ftrpc_result_fini(&r);
    ftrpc_client_free(c);
}

static void invalid_fallbacks_are_refused_at_client_and_call_level(void **state)
{
    (void)state;
    fb_rec rec = {0};
    const ftrpc_fallback bad[] = {
        {FTRPC_FALLBACK_ERRORS, NULL, NULL, 0},       /* a kind without a function */
        {(ftrpc_fallback_kind)4, record_fb, &rec, 0}, /* an unknown kind */
        {(ftrpc_fallback_kind)-1, record_fb, &rec, 0},
    };
    ftrpc_client *c = new_client(url_one, NULL);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ftrpc_client *c2 = NULL;
        assert_int_equal(
            ftrpc_client_new(url_one, &(ftrpc_client_options){.fallback = bad[i]}, &c2),
            FTRPC_EINVAL);
        ftrpc_result r;
        assert_int_equal(call_with(c, "Ok", &bad[i], &r), FTRPC_EINVAL);
        ftrpc_result_fini(&r);
    }
    assert_int_equal(atomic_load(&rec.calls), 0);
    ftrpc_client_free(c);
}

/* ---- once per call, after retries and backups ---- */

static void fallback_runs_once_after_failover_retries_are_exhausted(void **state)
{
    (void)state;
    fb_rec rec = {.act = ACT_RESPONSE};
    ftrpc_fallback fb = {FTRPC_FALLBACK_ERRORS, record_fb, &rec, 0};
    ftrpc_client_options o = {
        .timeout_ms = 2000, .fail_mode = FTRPC_FAILOVER, .retries = 2, .fallback = fb};
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(url_all, &o, &c), 0);
    ftrpc_method_stats before[NSERVERS];
    for (int i = 0; i < NSERVERS; i++)
        assert_int_equal(ftrpc_server_method_stats(servers[i], SVC, "Internal", &before[i]), 0);
    ftrpc_result r;
    assert_int_equal(call_with(c, "Internal", NULL, &r), 0);
    assert_true(response_is(&r, "fallback"));
    assert_int_equal(atomic_load(&rec.calls), 1);
    /* the function saw the last attempt's error, after 3 attempts on 3 different servers */
    assert_int_equal(rec.kind, FTRPC_RESULT_RPC_ERROR);
    assert_int_equal(rec.code, FTRPC_EINTERNAL);
    assert_int_equal(rec.attempts, 3);
    assert_int_equal(r.attempts, 3);
    for (int i = 0; i < NSERVERS; i++) {
        ftrpc_method_stats after;
        assert_int_equal(ftrpc_server_method_stats(servers[i], SVC, "Internal", &after), 0);
        assert_int_equal(after.calls - before[i].calls, 1);
    }
    counts m = read_counts(c, "Internal");
    assert_int_equal(m.attempts, 3);
    assert_int_equal(m.fallbacks, 1);
    assert_int_equal(m.rpc_errors, 1);
    ftrpc_result_fini(&r);
    ftrpc_client_free(c);
}

static void fallback_runs_once_after_the_backup_request_also_failed(void **state)
{
    (void)state;
    fb_rec rec = {.act = ACT_RESPONSE};
    ftrpc_fallback fb = {FTRPC_FALLBACK_TIMEOUTS_AND_BREAKER, record_fb, &rec, 0};
    ftrpc_client_options o = {
        .timeout_ms = 300, .fail_mode = FTRPC_FAILBACKUP, .backup_request_ms = 30, .fallback = fb};
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(url_all, &o, &c), 0);
    ftrpc_result r;
    assert_int_equal(call_with(c, "Slow", NULL, &r), 0);
    assert_int_equal(atomic_load(&rec.calls), 1);
    assert_int_equal(rec.code, FTRPC_ERPCTIMEDOUT);
    assert_int_equal(rec.backups, 1); /* the backup had been sent when the function ran */
    assert_int_equal(rec.attempts, 2);
    assert_int_equal(r.from_fallback, 1);
    ftrpc_result_fini(&r);
    ftrpc_client_free(c);
}

enum { NASYNC = 64 };
static atomic_int async_done, async_flagged;

static void on_async_done(ftrpc_result *r, void *arg)
{
    (void)arg;
    if (r->kind == FTRPC_RESULT_OK && r->from_fallback && response_is(r, "fallback"))
        atomic_fetch_add(&async_flagged, 1);
    atomic_fetch_add(&async_done, 1);
}

static void async_calls_get_the_fallbacks_answer_once_each(void **state)
{
    (void)state;
    fb_rec rec = {.act = ACT_RESPONSE};
    ftrpc_fallback fb = {FTRPC_FALLBACK_ERRORS, record_fb, &rec, 0};
    ftrpc_client *c = new_client(url_dead, &fb);
    atomic_store(&async_done, 0);
    atomic_store(&async_flagged, 0);
    for (int i = 0; i < NASYNC; i++)
        assert_int_equal(
            ftrpc_call_async(c, SVC, "Ok", NULL, NULL, NULL, on_async_done, NULL, NULL), 0);
    for (int i = 0; i < 500 && atomic_load(&async_done) < NASYNC; i++)
        sleep_ms(10);
    assert_int_equal(atomic_load(&async_done), NASYNC);
    assert_int_equal(atomic_load(&async_flagged), NASYNC);
    assert_int_equal(atomic_load(&rec.calls), NASYNC);
    counts m = read_counts(c, "Ok");
    assert_int_equal(m.calls, NASYNC);
    assert_int_equal(m.fallbacks, NASYNC);
    assert_int_equal(m.rpc_errors, NASYNC);
    ftrpc_client_free(c);
}

static atomic_int stopped_done, stopped_flagged;

static void on_stopped_done(ftrpc_result *r, void *arg)
{
    (void)arg;
    atomic_store(&stopped_flagged, r->from_fallback && response_is(r, "fallback"));
    atomic_fetch_add(&stopped_done, 1);
}

static void calls_failed_by_client_free_go_through_the_fallback(void **state)
{
    (void)state;
    fb_rec rec = {.act = ACT_RESPONSE};
    ftrpc_fallback fb = {FTRPC_FALLBACK_ERRORS, record_fb, &rec, 0};
    ftrpc_client *c = new_client(url_one, &fb);
    atomic_store(&stopped_done, 0);
    assert_int_equal(
        ftrpc_call_async(c, SVC, "Slow", NULL, NULL, NULL, on_stopped_done, NULL, NULL), 0);
    sleep_ms(50);         /* the request is out, the handler waits */
    ftrpc_client_free(c); /* fails the call with FTRPC_ESTOPPED before it returns */
    assert_int_equal(atomic_load(&stopped_done), 1);
    assert_int_equal(atomic_load(&rec.calls), 1);
    assert_int_equal(rec.code, FTRPC_ESTOPPED);
    assert_true(atomic_load(&stopped_flagged));
}

/* ---- the degraded answer: looking inside a successful response ---- */

static void degrade(const ftrpc_fallback_input *in, ftrpc_fallback_output *out, void *arg)
{
    (void)arg;
    char body[64];
    if (in->result->kind != FTRPC_RESULT_OK) return;
    copy_buf(body, sizeof body, in->result->response);
    if (strcmp(body, "status=OK") == 0) return;
    out->response = ftrpc_buf_new();
    ftrpc_buf_append(out->response, "status=OK;cached", 16);
}

static void errors_and_responses_kind_replaces_a_response_with_a_bad_status(void **state)
{
    (void)state;
    ftrpc_fallback fb = {FTRPC_FALLBACK_ERRORS_AND_RESPONSES, degrade, NULL, 1};
    ftrpc_client *c = new_client(url_one, &fb);
    ftrpc_result r;
    assert_int_equal(call_with(c, "BadStatus", NULL, &r), 0);
    assert_true(response_is(&r, "status=OK;cached"));
    assert_int_equal(r.from_fallback, 1);
    ftrpc_result_fini(&r);
    assert_int_equal(call_with(c, "Ok", NULL, &r), 0); /* "real": replaced too */
    ftrpc_result_fini(&r);
    counts m = read_counts(c, "BadStatus");
    assert_int_equal(m.ok, 1);
    assert_int_equal(m.fallbacks, 1);
    ftrpc_client_free(c);
}

/* ---- the backup policy learns from what the service did, not from the fallback ---- */

typedef struct seen_policy {
    ftrpc_backup_policy base;
    atomic_int ends, rpc_errors;
} seen_policy;

static int no_backup(ftrpc_backup_policy *self, const char *s, const char *m)
{
    (void)self, (void)s, (void)m;
    return -1;
}

static void seen_end(ftrpc_backup_policy *self, const ftrpc_result *result)
{
    seen_policy *p = (seen_policy *)self;
    atomic_fetch_add(&p->ends, 1);
    if (result->kind == FTRPC_RESULT_RPC_ERROR) atomic_fetch_add(&p->rpc_errors, 1);
}

static void backup_policy_sees_the_original_outcome_not_the_fallbacks(void **state)
{
    (void)state;
    seen_policy pol = {.base = {.backup_delay_ms = no_backup, .on_call_end = seen_end}};
    fb_rec rec = {.act = ACT_RESPONSE};
    ftrpc_client_options o = {
        .timeout_ms = CALL_TIMEOUT_MS,
        .fail_mode = FTRPC_FAILBACKUP,
        .backup_policy = &pol.base,
        .fallback = {FTRPC_FALLBACK_TIMEOUTS_AND_BREAKER, record_fb, &rec, 0}};
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(url_one, &o, &c), 0);
    ftrpc_result r;
    assert_int_equal(call_with(c, "Slow", NULL, &r), 0);
    assert_int_equal(r.from_fallback, 1);
    ftrpc_result_fini(&r);
    /* an adaptive policy would otherwise record a deadline-long "answer" in its latency quantile */
    assert_int_equal(atomic_load(&pol.ends), 1);
    assert_int_equal(atomic_load(&pol.rpc_errors), 1);
    ftrpc_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(each_kind_sees_exactly_its_outcomes_at_client_and_call_level),
        cmocka_unit_test(returned_response_error_or_neither_follow_kitex_rules),
        cmocka_unit_test(report_as_fallback_reports_the_fallbacks_error_in_place_of_an_rpc_error),
        cmocka_unit_test(timeouts_and_breaker_kind_sees_the_breakers_rejection),
        cmocka_unit_test(call_level_fallback_wins_over_the_clients),
        cmocka_unit_test(call_level_off_turns_the_clients_fallback_off_for_that_call),
        cmocka_unit_test(invalid_fallbacks_are_refused_at_client_and_call_level),
        cmocka_unit_test(fallback_runs_once_after_failover_retries_are_exhausted),
        cmocka_unit_test(fallback_runs_once_after_the_backup_request_also_failed),
        cmocka_unit_test(async_calls_get_the_fallbacks_answer_once_each),
        cmocka_unit_test(calls_failed_by_client_free_go_through_the_fallback),
        cmocka_unit_test(errors_and_responses_kind_replaces_a_response_with_a_bad_status),
        cmocka_unit_test(backup_policy_sees_the_original_outcome_not_the_fallbacks),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
