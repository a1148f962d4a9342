/* Fail modes and retry rules against echo-server children that fail on purpose: failtry retries
 * a flaky server on the same endpoint until it succeeds; failfast makes exactly one attempt and
 * returns its error; business errors are never retried unless a retry_classifier says so; a code
 * in no_retry_codes ends the call at once; with every server down the retry budget lets a few
 * retries through at first, then attempts per call fall toward 1; a refused request is re-sent
 * free once per endpoint the call may go to (failtry: once, to its endpoint). Every call
 * completes exactly once with its attempt count (h_load counts completions per call id). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "client/client_internal.h"
#include "harness.h"

typedef struct servers {
    int n;
    h_server srv[3];
    char addr[3][64];
    char url[256];
} servers;

static void servers_start(servers *s, int n, const char *const *const args[])
{
    s->n = n;
    snprintf(s->url, sizeof s->url, "list://");
    for (int i = 0; i < n; i++) {
        assert_int_equal(h_server_start(&s->srv[i], args[i]), 0);
        h_server_url(&s->srv[i], s->addr[i], sizeof s->addr[i]);
        strcat(s->url, s->addr[i]);
        if (i + 1 < n) strcat(s->url, ",");
    }
}

static void servers_kill(servers *s)
{
    for (int i = 0; i < s->n; i++)
        h_server_kill(&s->srv[i]);
}

/* Runs `ncalls` async calls (8 in flight) through the client and waits for all of them; each
 * must have completed exactly once. */
static void run_load(h_load *l, ftrpc_client *client, const servers *s,
                     const ftrpc_call_options *co, int ncalls)
{
    memset(l, 0, sizeof *l);
    l->client = client;
    l->call_opts = co;
    l->window = 8;
    l->max_calls = ncalls;
    for (int i = 0; i < s->n; i++)
        l->endpoints[i] = s->addr[i];
    l->nendpoints = s->n;
    assert_int_equal(h_load_start(l), 0);
    assert_true(h_load_wait_done(l, ncalls, 15000));
    assert_true(h_load_stop(l, 5000));
    for (int i = 0; i < ncalls; i++)
        assert_int_equal(atomic_load(&l->recs[i].completions), 1);
    assert_int_equal(atomic_load(&l->duplicates), 0);
}

/* Frees the client first, so that no callback can run when the load's records go. */
static void finish(ftrpc_client *client, h_load *l, servers *s)
{
    ftrpc_client_free(client);
    h_load_fini(l);
    if (s) servers_kill(s);
}

static const char *const FLAKY_2001[] = {"--error-rate", "0.5", "--error-code", "2001", NULL};
static const char *const FAIL_2001[] = {"--error-rate", "1", "--error-code", "2001", NULL};
static const char *const FAIL_2004[] = {"--error-rate", "1", "--error-code", "2004", NULL};
static const char *const FAIL_3001[] = {"--error-rate", "1", "--error-code", "3001", NULL};

/* The flaky server is first in a priority list, a healthy one second: failtry keeps every call on
 * the flaky one (every success names it); failover sends the retries to the healthy one. Retries
 * 20 so that no call runs out (0.5^21 per call); the budget opened wide because a 50% error rate
 * needs one retry per call on average, more than the default 20%; the breaker raised to 90% so
 * that it does not suspend the flaky server (at 50% errors the default 50% would, and this test is
 * about where the retries go, not about the breaker). */
static void failtry_retries_a_flaky_server_on_the_same_endpoint_until_it_succeeds(void **state)
{
    (void)state;
    enum { NCALLS = 2000 };
    servers s;
    servers_start(&s, 2, (const char *const *const[]){FLAKY_2001, NULL});
    ftrpc_client_options o = {
        .fail_mode = FTRPC_FAILTRY,
        .retries = 20,
        .lb = "priority",
        .retry_budget_ratio = 1,
        .retry_budget_min_per_sec = 10000,
        /* judged over 100 calls, not 20: 18 failures in the first 20 attempts (about 2 in
         * 10,000 runs at 50% errors) tripped it once in CI, and the 1 s suspension outlasted the
         * run */
        .health = {.breaker_error_ratio = 0.9, .breaker_min_calls = 100},
    };
    ftrpc_client *client = NULL;
    assert_int_equal(ftrpc_client_new(s.url, &o, &client), 0);
    h_load l;
    run_load(&l, client, &s, NULL, NCALLS);
    int retried = 0, max_attempts = 0, on_flaky = 0;
    for (int i = 0; i < NCALLS; i++) {
        retried += l.recs[i].attempts > 1;
        on_flaky += l.recs[i].endpoint == 0;
        if (l.recs[i].attempts > max_attempts) max_attempts = l.recs[i].attempts;
    }
    print_message("failtry: %d calls, %d failed, %d on the flaky server, %d retried (at most %d "
                  "attempts)\n",
                  NCALLS, atomic_load(&l.failed), on_flaky, retried, max_attempts);
    assert_int_equal(atomic_load(&l.failed), 0);
    assert_int_equal(on_flaky, NCALLS);
    assert_true(retried > NCALLS / 4); /* about half the calls needed a retry */
    h_load_fini(&l);

    /* the same calls with failover: retries leave the flaky server */
    ftrpc_call_options failover = {.fail_mode = FTRPC_FAILOVER};
    run_load(&l, client, &s, &failover, 500);
    int on_healthy = 0;
    for (int i = 0; i < 500; i++)
        on_healthy += l.recs[i].endpoint == 1 && l.recs[i].attempts == 2;
    print_message("failover: %d of 500 calls answered by the second server on their retry\n",
                  on_healthy);
    assert_int_equal(atomic_load(&l.failed), 0);
    assert_true(on_healthy > 50);
    finish(client, &l, &s);
}

/* Two servers that always fail, each with its own code, the 2001 one first in a priority list:
 * failfast returns 2001 after one attempt; failover (one retry) returns the second server's 2004
 * after two, which shows the difference. Suspension is off so that the first server stays first. */
static void failfast_makes_exactly_one_attempt_and_returns_the_first_error(void **state)
{
    (void)state;
    enum { NCALLS = 500 };
    servers s;
    servers_start(&s, 2, (const char *const *const[]){FAIL_2001, FAIL_2004});
    ftrpc_client_options o = {
        .fail_mode = FTRPC_FAILFAST, .lb = "priority", .health = {.initial_suspension_ms = -1}};
    ftrpc_client *client = NULL;
    assert_int_equal(ftrpc_client_new(s.url, &o, &client), 0);
    h_load l;
    run_load(&l, client, &s, NULL, NCALLS);
    for (int i = 0; i < NCALLS; i++) {
        assert_int_equal(l.recs[i].attempts, 1);
        assert_int_equal(l.recs[i].kind, FTRPC_RESULT_RPC_ERROR);
        assert_int_equal(l.recs[i].code, FTRPC_EINTERNAL);
        assert_int_equal(l.recs[i].endpoint, 0); /* the server that sent the error is named */
    }
    h_load_fini(&l);
    ftrpc_call_options failover = {.fail_mode = FTRPC_FAILOVER, .retries = 1};
    run_load(&l, client, &s, &failover, 100);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(l.recs[i].attempts, 2);
        assert_int_equal(l.recs[i].code, FTRPC_ELIMIT);
        assert_int_equal(l.recs[i].endpoint, 1);
    }
    print_message("failfast: %d calls, 1 attempt each, EINTERNAL; failover: 2 attempts, ELIMIT\n",
                  NCALLS);
    finish(client, &l, &s);
}

static atomic_int classifier_calls;

static int retry_everything(int business_code, const char *text, void *arg)
{
    (void)text;
    (void)arg;
    atomic_fetch_add(&classifier_calls, 1);
    return business_code == 3001;
}

static void business_errors_are_not_retried_unless_the_classifier_says_so(void **state)
{
    (void)state;
    enum { NCALLS = 300 };
    servers s;
    servers_start(&s, 3, (const char *const *const[]){FAIL_3001, FAIL_3001, FAIL_3001});
    ftrpc_client *client = NULL;
    assert_int_equal(ftrpc_client_new(s.url, NULL, &client), 0);
    h_load l;
    run_load(&l, client, &s, NULL, NCALLS);
    for (int i = 0; i < NCALLS; i++) {
        assert_int_equal(l.recs[i].attempts, 1);
        assert_int_equal(l.recs[i].kind, FTRPC_RESULT_BUSINESS_ERROR);
        assert_int_equal(l.recs[i].code, 3001);
        assert_true(l.recs[i].endpoint >= 0); /* the endpoint that answered is named */
    }
    ftrpc_client_free(client);
    h_load_fini(&l);

    /* with a classifier that says yes: every call takes its 3 retries (budget opened wide) */
    ftrpc_client_options o = {.retry_classifier = retry_everything,
                              .retry_budget_min_per_sec = 10000};
    assert_int_equal(ftrpc_client_new(s.url, &o, &client), 0);
    run_load(&l, client, &s, NULL, NCALLS);
    for (int i = 0; i < NCALLS; i++) {
        assert_int_equal(l.recs[i].attempts, 4);
        assert_int_equal(l.recs[i].kind, FTRPC_RESULT_BUSINESS_ERROR);
        assert_int_equal(l.recs[i].code, 3001);
        assert_true(l.recs[i].endpoint >= 0); /* the server of the last attempt is named */
    }
    print_message("business errors: 1 attempt by default; 4 with the classifier, which was asked "
                  "%d times for %d calls\n",
                  atomic_load(&classifier_calls), NCALLS);
    assert_int_equal(atomic_load(&classifier_calls), 4 * NCALLS);
    finish(client, &l, &s);
}

static void a_code_in_no_retry_codes_ends_the_call_at_once(void **state)
{
    (void)state;
    enum { NCALLS = 300 };
    servers s;
    servers_start(&s, 3, (const char *const *const[]){FAIL_2004, FAIL_2004, FAIL_2004});
    /* every answer is ELIMIT: adaptive throttling (on by default) would shed most of these calls
     * locally, which is not what this case is about */
    ftrpc_client_options o = {.no_retry_codes = {FTRPC_ELIMIT},
                              .health = {.initial_suspension_ms = -1},
                              .throttle_k = -1};
    ftrpc_client *client = NULL;
    assert_int_equal(ftrpc_client_new(s.url, &o, &client), 0);
    h_load l;
    run_load(&l, client, &s, NULL, NCALLS);
    for (int i = 0; i < NCALLS; i++) {
        assert_int_equal(l.recs[i].attempts, 1);
        assert_int_equal(l.recs[i].code, FTRPC_ELIMIT);
    }
    ftrpc_client_free(client);
    h_load_fini(&l);
    /* without it, the same error is retried: 3 retries, budget opened wide */
    o = (ftrpc_client_options){.retry_budget_min_per_sec = 10000,
                               .health = {.initial_suspension_ms = -1},
                               .throttle_k = -1};
    assert_int_equal(ftrpc_client_new(s.url, &o, &client), 0);
    run_load(&l, client, &s, NULL, 100);
    for (int i = 0; i < 100; i++)
        assert_int_equal(l.recs[i].attempts, 4);
    print_message("ELIMIT: 1 attempt with no_retry_codes = {FTRPC_ELIMIT}, 4 without\n");
    finish(client, &l, &s);
}

/* Every server down (started, then killed: their ports refuse). Default budget: 20% of calls plus
 * a floor of 10/s over a 10 s window, i.e. 100 retries before the ratio matters. The first calls
 * get their retries (each refused request is re-sent for free up to once per endpoint, then the 3
 * retries: up to 7 attempts, all drawing on the budget); once the floor is spent a call gets about
 * 0.2 retries, so the mean attempts of the last 100 calls falls below 1.5. */
static void budget_stops_retries_when_every_server_is_down(void **state)
{
    (void)state;
    enum { NCALLS = 1500 };
    servers s;
    servers_start(&s, 3, (const char *const *const[]){NULL, NULL, NULL});
    servers_kill(&s);
    ftrpc_client *client = NULL;
    assert_int_equal(ftrpc_client_new(s.url, NULL, &client), 0);
    h_load l;
    run_load(&l, client, &s, NULL, NCALLS);
    int first = 0, last = 0, total = 0;
    for (int i = 0; i < NCALLS; i++) {
        assert_int_not_equal(l.recs[i].kind, FTRPC_RESULT_OK);
        total += l.recs[i].attempts;
        if (i < 10) first += l.recs[i].attempts;
        if (i >= NCALLS - 100) last += l.recs[i].attempts;
    }
    print_message("all down: mean attempts %.2f over the first 10 calls, %.2f over the last 100, "
                  "%.2f overall (%d calls)\n",
                  first / 10.0, last / 100.0, (double)total / NCALLS, NCALLS);
    assert_true(first > 10 * 2);     /* the floor lets retries through at the start */
    assert_true(last < 100 * 3 / 2); /* then the budget stops them */
    finish(client, &l, NULL);
}

enum { NDEAD = 6 };

/* NDEAD ports that refuse connections (h_refusing_port) into fds and a list:// url. */
static void dead_ports(int fds[NDEAD], char *url, size_t len)
{
    snprintf(url, len, "list://");
    for (int i = 0; i < NDEAD; i++) {
        int port = h_refusing_port(&fds[i]);
        assert_true(port > 0);
        size_t used = strlen(url);
        snprintf(url + used, len - used, "%s127.0.0.1:%d", i ? "," : "", port);
    }
}

/* How many of the client's endpoints have had an attempt report to their health (a refused one
 * included): their EWMA has a time stamp. */
static int endpoints_tried(ftrpc_client *client)
{
    ft_cluster *cl = ft_client_cluster_acquire(client);
    int n = 0;
    for (size_t i = 0; i < cl->n; i++)
        n += atomic_load(&cl->eps[i]->health.ewma_stamp_ns) != 0;
    ft_cluster_release(cl);
    return n;
}

/* Issue #20, point 16: failtry re-sent a refused request to its one dead endpoint once per
 * endpoint of the service (here 6 times) where the docs promise one free re-send per endpoint.
 * Now it gets one, then its real retries, all on that endpoint; failover gets one per endpoint,
 * each to another. Six dead endpoints, one call each way: */
static void a_refused_request_is_re_sent_free_once_per_endpoint(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        ftrpc_fail_mode mode;
        int retries;
        int attempts;  /* 1 + free re-sends + retries */
        int endpoints; /* that saw an attempt */
    } cases[] = {
        {"failtry, no retry", FTRPC_FAILTRY, FTRPC_NO_RETRY, 2, 1},
        {"failtry, 3 retries", FTRPC_FAILTRY, 3, 5, 1},
        {"failover, no retry", FTRPC_FAILOVER, FTRPC_NO_RETRY, 1 + NDEAD, NDEAD},
        {"failfast", FTRPC_FAILFAST, 3, 1, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int fds[NDEAD];
        char url[512];
        dead_ports(fds, url, sizeof url);
        ftrpc_client_options o = {.fail_mode = cases[c].mode, .retries = cases[c].retries};
        ftrpc_client *client = NULL;
        assert_int_equal(ftrpc_client_new(url, &o, &client), 0);
        ftrpc_buf *req = ftrpc_buf_new();
        ftrpc_result r;
        int rc = ftrpc_call(client, "example.EchoService", "Echo", req, NULL, NULL, &r);
        int tried = endpoints_tried(client);
        print_message("%s: %s after %d attempts on %d of %d endpoints\n", cases[c].what,
                      ftrpc_err_name(rc), r.attempts, tried, NDEAD);
        ftrpc_result_fini(&r);
        ftrpc_buf_free(req);
        ftrpc_client_free(client);
        for (int i = 0; i < NDEAD; i++)
            close(fds[i]);
        assert_int_equal(rc, FTRPC_ECONNREFUSED);
        assert_int_equal(r.attempts, cases[c].attempts);
        assert_int_equal(tried, cases[c].endpoints);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(failtry_retries_a_flaky_server_on_the_same_endpoint_until_it_succeeds),
        cmocka_unit_test(failfast_makes_exactly_one_attempt_and_returns_the_first_error),
        cmocka_unit_test(business_errors_are_not_retried_unless_the_classifier_says_so),
        cmocka_unit_test(a_code_in_no_retry_codes_ends_the_call_at_once),
        cmocka_unit_test(budget_stops_retries_when_every_server_is_down),
        cmocka_unit_test(a_refused_request_is_re_sent_free_once_per_endpoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
