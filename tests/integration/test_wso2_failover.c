/* WSO2's failover-endpoint semantics (docs/endpoint-health.md, "WSO2's semantics") over real echo
 * servers on 127.0.0.1: one case per behaviour, written as WSO2 writes its configurations.
 *
 *  - Example 1 (a failover group whose child has markForSuspension errorCodes for timeouts and
 *    closed connections, retriesBeforeSuspension 3, retryDelay 10; suspendOnFailure
 *    initialDuration 1000, progressionFactor 2; "for all the other errors, it will be marked as
 *    Suspended"): a primary answering EINTERNAL loses the traffic at the first call.
 *  - Example 2 (retriesBeforeSuspension 3, retryDelay 100 on a Timeout endpoint): a primary whose
 *    every answer is a timeout is tried four times, 100 ms apart, before the call fails over.
 *  - retry_delay_ms paces retries to a lone endpoint in TIMEOUT (ftrpc's own rule, any profile).
 *  - Per-endpoint codes: a non-retry code ends the call and puts that endpoint in TIMEOUT; a retry
 *    code overrides the client-wide no_retry_codes.
 *  - OFF and ON through the admin page, which wants the credential even with public pages.
 *  - A sticky priority group (WSO2 dynamic="false") stays on the secondary after the primary is
 *    back; the default goes back to the primary.
 *  - `ftrpc demo --wso2` shows Timeout, growing suspensions and the return to the primary.
 * Every wait is bounded; the durations are short (100-200 ms suspensions and delays). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* An echo server's fault flags: every call answered with the RPC error `wire` (a positive wire
 * code: 2001 EINTERNAL, 1008 ERPCTIMEDOUT). */
#define FAILING(wire) ((const char *const[]){"--error-rate", "1", "--error-code", wire, NULL})

typedef struct pair {
    h_server primary, secondary;
    char p[64], s[64], url[160];
} pair;

static void pair_start(pair *g, const char *const *primary_faults)
{
    assert_int_equal(h_server_start(&g->primary, primary_faults), 0);
    assert_int_equal(h_server_start(&g->secondary, NULL), 0);
    h_server_url(&g->primary, g->p, sizeof g->p);
    h_server_url(&g->secondary, g->s, sizeof g->s);
    snprintf(g->url, sizeof g->url, "list://%s,%s", g->p, g->s);
}

static void pair_stop(pair *g)
{
    h_server_kill(&g->primary);
    h_server_kill(&g->secondary);
}

typedef struct outcome {
    int rc, attempts;
    char endpoint[64];
    int64_t latency_ms;
} outcome;

static outcome echo(ftrpc_client *c)
{
    ftrpc_result r;
    outcome o;
    o.rc = ftrpc_call(c, "example.EchoService", "Echo", NULL, NULL, NULL, &r);
    o.attempts = r.attempts;
    o.latency_ms = r.latency_us / 1000;
    snprintf(o.endpoint, sizeof o.endpoint, "%s", r.endpoint);
    ftrpc_result_fini(&r);
    return o;
}

/* WSO2's example 1 as ftrpc options. */
static ftrpc_health_options wso2_example1(void)
{
    ftrpc_health_options h;
    ftrpc_health_options_wso2(&h);
    /* markForSuspension errorCodes 101504 (timeout), 101505 (connection closed): */
    h.mark_codes[0] = FTRPC_ERPCTIMEDOUT;
    h.mark_codes[1] = FTRPC_EFAILEDSOCKET;
    h.mark_codes[2] = FTRPC_EEOF;
    h.retries_before_suspension = 3;
    h.retry_delay_ms = 10;
    h.initial_suspension_ms = 1000; /* suspendOnFailure */
    h.progression_factor = 2;
    h.maximum_suspension_ms = 64000;
    return h;
}

/* Point 1: an error in neither list suspends under the WSO2 profile, so a failing primary gets one
 * call; ftrpc's default leaves it to the breaker, which needs 20 calls. */
static void wso2_example1_other_errors_move_the_group_at_the_first_call(void **state)
{
    (void)state;
    pair g;
    pair_start(&g, FAILING("2001"));
    for (int profile = 1; profile >= 0; profile--) {
        ftrpc_client_options o = {.lb = "priority", .timeout_ms = 2000};
        if (profile) o.health = wso2_example1();
        ftrpc_client *c = NULL;
        assert_int_equal(ftrpc_client_new(g.url, &o, &c), 0);
        int to_primary = 0;
        for (int i = 0; i < 20; i++) {
            outcome r = echo(c);
            assert_int_equal(r.rc, 0); /* failover: every call answered by the secondary */
            assert_string_equal(r.endpoint, g.s);
            to_primary += r.attempts - 1;
        }
        int64_t left = -1;
        int st = ftrpc_client_endpoint_state(c, g.p, &left);
        print_message("%s: the failing primary got %d of 20 calls, then %s\n",
                      profile ? "WSO2 profile" : "ftrpc default", to_primary,
                      st == FTRPC_ENDPOINT_SUSPENDED ? "SUSPENDED" : "not suspended");
        if (profile) {
            assert_int_equal(to_primary, 1);
            assert_int_equal(st, FTRPC_ENDPOINT_SUSPENDED);
            assert_true(left > 0 && left <= 1000);
        } else {
            assert_int_equal(to_primary, 20); /* the breaker trips at its 20th call */
        }
        ftrpc_client_free(c);
    }
    pair_stop(&g);
}

/* Point 2: WSO2's example 2. A primary whose every answer is a timeout-class error: with
 * retries_before_suspension 3 and retry_delay_ms 100 the call tries it four times, 100 ms apart,
 * then fails over to the secondary; the primary ends SUSPENDED. ftrpc's default (retry_in_timeout
 * 0) fails over at once. */
static void wso2_example2_timeout_endpoint_is_retried_before_failover(void **state)
{
    (void)state;
    pair g;
    pair_start(&g, FAILING("1008"));
    for (int profile = 1; profile >= 0; profile--) {
        ftrpc_client_options o = {.lb = "priority", .timeout_ms = 3000};
        o.health = wso2_example1();
        o.health.retry_delay_ms = 100;
        o.health.retry_in_timeout = profile;
        ftrpc_client *c = NULL;
        assert_int_equal(ftrpc_client_new(g.url, &o, &c), 0);
        outcome r = echo(c);
        int st = ftrpc_client_endpoint_state(c, g.p, NULL);
        print_message("retry_in_timeout %d: %d attempts, %lld ms, answered by %s\n", profile,
                      r.attempts, (long long)r.latency_ms, r.endpoint);
        assert_int_equal(r.rc, 0);
        assert_string_equal(r.endpoint, g.s);
        if (profile) {
            assert_int_equal(r.attempts, 5);  /* 1 + retriesBeforeSuspension on the primary, +1 */
            assert_true(r.latency_ms >= 300); /* three retry delays */
            assert_int_equal(st, FTRPC_ENDPOINT_SUSPENDED);
        } else {
            assert_int_equal(r.attempts, 2);
            assert_true(r.latency_ms < 300); /* no retry delay waited for */
            assert_int_equal(st, FTRPC_ENDPOINT_TIMEOUT);
        }
        ftrpc_client_free(c);
    }
    pair_stop(&g);
}

/* Point 2, ftrpc's rule in any profile: with no other endpoint usable, a retry waits for the
 * TIMEOUT endpoint's retry_delay_ms instead of going out at once (four attempts took 1.5 ms
 * before), and a wait that would pass the deadline ends the call with its last error at once. */
static void retry_delay_paces_retries_to_a_lone_timeout_endpoint(void **state)
{
    (void)state;
    h_server s;
    assert_int_equal(h_server_start(&s, FAILING("1008")), 0);
    char url[80];
    h_server_url(&s, url, sizeof url);
    ftrpc_client_options o = {.timeout_ms = 3000,
                              .retries = 3,
                              .health = {.retry_delay_ms = 200,
                                         .retries_before_suspension = 100,
                                         .breaker_error_ratio = -1}};
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(url, &o, &c), 0);
    outcome r = echo(c);
    print_message("4 attempts to a lone endpoint, retry_delay_ms 200: %lld ms\n",
                  (long long)r.latency_ms);
    assert_int_equal(r.rc, FTRPC_ERPCTIMEDOUT);
    assert_int_equal(r.attempts, 4);
    assert_true(r.latency_ms >= 600 && r.latency_ms < 3000);
    ftrpc_client_free(c);

    /* retry_delay_ms 400 and a deadline of 1000 ms: attempts at 0, 400 and 800 ms; the next would
     * come after the deadline, so the call ends at 800 ms rather than wait for it */
    o.timeout_ms = 1000;
    o.retries = 10;
    o.health.retry_delay_ms = 400;
    assert_int_equal(ftrpc_client_new(url, &o, &c), 0);
    r = echo(c);
    print_message("deadline 1000 ms: %d attempts, %lld ms\n", r.attempts, (long long)r.latency_ms);
    assert_int_equal(r.rc, FTRPC_ERPCTIMEDOUT);
    assert_int_equal(r.attempts, 3);
    assert_true(r.latency_ms >= 800 && r.latency_ms < 1000);
    ftrpc_client_free(c);
    h_server_kill(&s);
}

/* Point 3: per-endpoint codes. The primary's non-retry code ends the call at its first attempt
 * and puts the primary in TIMEOUT (the default retries it on the secondary and leaves the primary
 * ACTIVE); its retry code overrides the client-wide no_retry_codes. */
static void endpoint_codes_non_retry_marks_timeout_and_retry_overrides_the_client(void **state)
{
    (void)state;
    pair g;
    pair_start(&g, FAILING("2001"));
    ftrpc_endpoint_codes codes = {.endpoint = g.p, .no_retry_codes = {FTRPC_EINTERNAL}};
    ftrpc_client_options o = {.lb = "priority",
                              .timeout_ms = 2000,
                              .health = {.retry_delay_ms = 5000},
                              .endpoint_codes = &codes,
                              .n_endpoint_codes = 1};
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(g.url, &o, &c), 0);
    outcome r = echo(c);
    assert_int_equal(r.rc, FTRPC_EINTERNAL);
    assert_int_equal(r.attempts, 1);
    int64_t left = 0;
    assert_int_equal(ftrpc_client_endpoint_state(c, g.p, &left), FTRPC_ENDPOINT_TIMEOUT);
    assert_true(left > 4000);
    r = echo(c); /* the primary waits out its retry delay: the secondary answers */
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.endpoint, g.s);
    ftrpc_client_free(c);

    /* the default: retried on the secondary, the primary left ACTIVE */
    o.n_endpoint_codes = 0;
    o.endpoint_codes = NULL;
    assert_int_equal(ftrpc_client_new(g.url, &o, &c), 0);
    r = echo(c);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(ftrpc_client_endpoint_state(c, g.p, NULL), FTRPC_ENDPOINT_ACTIVE);
    ftrpc_client_free(c);

    /* a client-wide non-retry code that this endpoint's retry code overrides */
    ftrpc_endpoint_codes retry = {.endpoint = g.p, .retry_codes = {FTRPC_EINTERNAL}};
    ftrpc_client_options o2 = {.lb = "priority",
                               .timeout_ms = 2000,
                               .no_retry_codes = {FTRPC_EINTERNAL},
                               .endpoint_codes = &retry,
                               .n_endpoint_codes = 1};
    assert_int_equal(ftrpc_client_new(g.url, &o2, &c), 0);
    r = echo(c);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.attempts, 2);
    ftrpc_client_free(c);
    pair_stop(&g);
}

/* POST (data non-NULL: an empty body) or GET with curl; the status, and the body in *body when
 * body is not NULL (the caller frees it). */

/* Point 5: OFF and ON through the admin page. With public builtin pages the page is open to GET,
 * but the switch (a POST) needs the token; OFF takes every call off the primary, ON brings them
 * back; a server without authentication refuses to switch at all. */
static void admin_switches_an_endpoint_off_and_on_with_the_credential_only(void **state)
{
    (void)state;
    pair g;
    pair_start(&g, NULL);
    ftrpc_client_options o = {.lb = "priority", .timeout_ms = 2000};
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(g.url, &o, &c), 0);
    ftrpc_admin *admin = NULL;
    assert_int_equal(
        ftrpc_admin_new("127.0.0.1:0",
                        &(ftrpc_server_options){.auth_token = "s3cret", .public_builtin_pages = 1},
                        &admin),
        0);
    int port = ftrpc_admin_port(admin);
    char path[256];
    snprintf(path, sizeof path, "POST /endpoints?off=%s&client=%s", g.p, g.url);
    assert_int_equal(h_http(port, "GET /endpoints", NULL, NULL), 200); /* public */
    assert_int_equal(h_http(port, path, NULL, NULL), 401);             /* the switch is not */
    assert_int_equal(h_http(port, path, "wrong", NULL), 401);
    char get[256];
    snprintf(get, sizeof get, "GET /endpoints?off=%s", g.p);
    assert_int_equal(h_http(port, get, "s3cret", NULL), 405);
    assert_int_equal(echo(c).rc, 0);
    assert_string_equal(echo(c).endpoint, g.p);

    char *body = NULL;
    assert_int_equal(h_http(port, path, "s3cret", &body), 200);
    assert_non_null(strstr(body, "switched OFF in 1 client"));
    free(body);
    assert_int_equal(ftrpc_client_endpoint_state(c, g.p, NULL), FTRPC_ENDPOINT_OFF);
    assert_int_equal(h_http(port, "GET /endpoints", NULL, &body), 200);
    assert_non_null(strstr(body, "state=OFF"));
    free(body);
    for (int i = 0; i < 10; i++) {
        outcome r = echo(c);
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.attempts, 1);
        assert_string_equal(r.endpoint, g.s);
    }
    snprintf(path, sizeof path, "POST /endpoints?on=%s", g.p); /* every client that lists it */
    assert_int_equal(h_http(port, path, "s3cret", NULL), 200);
    assert_int_equal(ftrpc_client_endpoint_state(c, g.p, NULL), FTRPC_ENDPOINT_ACTIVE);
    assert_string_equal(echo(c).endpoint, g.p);
    assert_int_equal(h_http(port, "POST /endpoints?off=127.0.0.1:1", "s3cret", NULL), 404);
    ftrpc_admin_free(admin);

    /* both OFF through the API: nothing may take the call */
    assert_int_equal(ftrpc_client_endpoint_switch(c, g.p, 0), 0);
    assert_int_equal(ftrpc_client_endpoint_switch(c, g.s, 0), 0);
    assert_int_equal(echo(c).rc, FTRPC_ENOENDPOINT);
    assert_int_equal(ftrpc_client_endpoint_switch(c, g.s, 1), 0);
    assert_int_equal(echo(c).rc, 0);

    /* an admin without authentication: the pages, but no switch */
    assert_int_equal(ftrpc_admin_new("127.0.0.1:0", NULL, &admin), 0);
    snprintf(path, sizeof path, "POST /endpoints?off=%s", g.s);
    assert_int_equal(h_http(ftrpc_admin_port(admin), path, NULL, NULL), 403);
    assert_int_equal(ftrpc_client_endpoint_state(c, g.s, NULL), FTRPC_ENDPOINT_ACTIVE);
    ftrpc_admin_free(admin);
    ftrpc_client_free(c);
    pair_stop(&g);
}

struct usable_arg {
    ftrpc_client *client;
    const char *endpoint;
};

static int usable_again(void *arg)
{
    struct usable_arg *u = arg;
    int64_t left = -1;
    int st = ftrpc_client_endpoint_state(u->client, u->endpoint, &left);
    return st == FTRPC_ENDPOINT_SUSPENDED && left == 0;
}

/* Point 5: a sticky priority group (WSO2 dynamic="false"). The primary is killed, calls fail over
 * to the secondary; the primary restarts on its port and its suspension ends; the sticky group
 * stays on the secondary, the default goes back to the primary. */
static void sticky_priority_stays_on_the_secondary_after_the_primary_is_back(void **state)
{
    (void)state;
    for (int sticky = 1; sticky >= 0; sticky--) {
        pair g;
        pair_start(&g, NULL);
        ftrpc_client_options o = {.lb = "priority",
                                  .timeout_ms = 2000,
                                  .priority_sticky = sticky,
                                  .health = {.initial_suspension_ms = 100}};
        ftrpc_client *c = NULL;
        assert_int_equal(ftrpc_client_new(g.url, &o, &c), 0);
        assert_string_equal(echo(c).endpoint, g.p);
        h_server_kill(&g.primary);
        outcome r = echo(c); /* refused: suspended, re-sent to the secondary */
        assert_int_equal(r.rc, 0);
        assert_string_equal(r.endpoint, g.s);
        char listen[64];
        snprintf(listen, sizeof listen, "127.0.0.1:%d", g.primary.port);
        assert_int_equal(h_server_start_at(&g.primary, listen, NULL), 0);
        struct usable_arg u = {c, g.p};
        assert_true(h_wait_until(usable_again, &u, 5000));
        /* the IO thread's cached time may trail this thread's by a loop turn */
        h_sleep_ms(20);
        int to_primary = 0;
        for (int i = 0; i < 20; i++) {
            r = echo(c);
            assert_int_equal(r.rc, 0);
            to_primary += strcmp(r.endpoint, g.p) == 0;
        }
        print_message("sticky %d: %d of 20 calls back on the primary\n", sticky, to_primary);
        if (sticky)
            assert_int_equal(to_primary, 0);
        else
            assert_int_equal(to_primary, 20);
        ftrpc_client_free(c);
        pair_stop(&g);
    }
}

/* Point 6: `ftrpc demo --wso2` plays a WSO2 failover group: the frozen primary goes to TIMEOUT,
 * then SUSPENDED for growing durations (500, 1000, 2000 ms), and takes the calls back once
 * thawed; no call fails. */
static void demo_wso2_shows_timeout_growing_suspensions_and_the_return(void **state)
{
    (void)state;
    static const char *const args[] = {"demo", "--wso2", NULL};
    char *out = NULL, *err = NULL;
    int rc = h_cli_run(args, 30000 * H_VG, &out, &err);
    if (rc != 0) print_error("exit %d\n%s\n%s\n", rc, out ? out : "", err ? err : "");
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "primary TIMEOUT"));
    long last = 0;
    int suspensions = 0;
    for (const char *p = out; (p = strstr(p, "primary SUSPENDED (for ")) != NULL; p++) {
        long ms = strtol(p + strlen("primary SUSPENDED (for "), NULL, 10);
        assert_true(ms > last); /* each longer than the one before */
        last = ms;
        suspensions++;
    }
    assert_true(suspensions >= 2);
    const char *thawed = strstr(out, "primary thawed");
    assert_non_null(thawed);
    assert_non_null(strstr(thawed, "primary ACTIVE"));
    /* the last phase: every call answered by the primary ("N calls: N by the primary") */
    const char *last_phase = NULL;
    for (const char *p = out; (p = strstr(p, " calls: ")) != NULL; p++)
        last_phase = p;
    assert_non_null(last_phase);
    while (last_phase > out && last_phase[-1] != ' ')
        last_phase--; /* back to the count */
    long calls = 0, by_primary = -1;
    assert_int_equal(sscanf(last_phase, "%ld calls: %ld by the primary", &calls, &by_primary), 2);
    assert_true(calls > 0 && by_primary == calls);
    free(out);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(wso2_example1_other_errors_move_the_group_at_the_first_call),
        cmocka_unit_test(wso2_example2_timeout_endpoint_is_retried_before_failover),
        cmocka_unit_test(retry_delay_paces_retries_to_a_lone_timeout_endpoint),
        cmocka_unit_test(endpoint_codes_non_retry_marks_timeout_and_retry_overrides_the_client),
        cmocka_unit_test(admin_switches_an_endpoint_off_and_on_with_the_credential_only),
        cmocka_unit_test(sticky_priority_stays_on_the_secondary_after_the_primary_is_back),
        cmocka_unit_test(demo_wso2_shows_timeout_growing_suspensions_and_the_return),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
