/* The selective client (ftrpc/selective.h) over real sockets: clusters of `ftrpc echo-server`
 * children (slow, failing or healthy by their flags) and "dead" endpoints that refuse connections
 * (a socket bound but not listening, held for the test so that nothing else takes its port).
 *
 * - a backup request goes to the other cluster: cluster A answers in 1 s, B at once; with a
 *   20 ms backup delay every call ends well before A's answer, answered by B, one backup each;
 * - failover retries into another cluster, not into A's other endpoints, when A refuses
 *   connections or answers a retryable error;
 * - a cluster whose endpoints are all down is skipped; with every cluster down the call fails with
 *   the connection error at once, not at its deadline;
 * - the call options work as on a plain client (per-call backup opt-out, failfast, fallback);
 * - async calls complete exactly once, also when the client is freed under them, and the
 *   selective client frees its sub-clients (a sub-client's own free is refused meanwhile).
 *
 * The balancer over the clusters is "priority" where a test needs calls to start on cluster A
 * (index 0): the first cluster with a usable endpoint. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/client_internal.h" /* the client's backup and retry counters */
#include "harness.h"

#define MAX_EPS 3

/* One cluster: echo-server children or refusing sockets, and its list:// URL. */
typedef struct cluster {
    int n;
    h_server srv[MAX_EPS];
    int dead_fd[MAX_EPS]; /* >= 0: a refusing socket instead of a server */
    char addr[MAX_EPS][64];
    char url[256];
} cluster;

static void url_add(cluster *c, int i)
{
    strcat(c->url, i == 0 ? "list://" : ",");
    strcat(c->url, c->addr[i]);
}

static void cluster_start(cluster *c, int n, const char *const *args)
{
    memset(c, 0, sizeof *c);
    c->n = n;
    for (int i = 0; i < n; i++) {
        c->dead_fd[i] = -1;
        assert_int_equal(h_server_start(&c->srv[i], args), 0);
        h_server_url(&c->srv[i], c->addr[i], sizeof c->addr[i]);
        url_add(c, i);
    }
}

/* n endpoints that refuse every connection: bound, never listening. */
static void cluster_dead(cluster *c, int n)
{
    memset(c, 0, sizeof *c);
    c->n = n;
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof sa;
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
        c->dead_fd[i] = fd;
        snprintf(c->addr[i], sizeof c->addr[i], "127.0.0.1:%d", ntohs(sa.sin_port));
        url_add(c, i);
    }
}

static void cluster_stop(cluster *c)
{
    for (int i = 0; i < c->n; i++) {
        if (c->dead_fd[i] >= 0)
            close(c->dead_fd[i]);
        else
            h_server_kill(&c->srv[i]);
    }
}

static int in_cluster(const cluster *c, const char *endpoint)
{
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->addr[i], endpoint)) return 1;
    return 0;
}

/* A sub-client of the cluster; its health may suspend every endpoint of it (a cluster "all
 * down"), for 10 s so that no suspension ends during a test. */
static ftrpc_client *sub_client(const cluster *c)
{
    ftrpc_client_options o = {.lb = "rr",
                              .health = {.max_suspended_ratio = 1, .initial_suspension_ms = 10000}};
    ftrpc_client *sub = NULL;
    assert_int_equal(ftrpc_client_new(c->url, &o, &sub), 0);
    return sub;
}

/* A selective client over the clusters, which it then owns. */
static ftrpc_client *selective(cluster *const *cs, int n, const ftrpc_client_options *o)
{
    ftrpc_client *subs[MAX_EPS];
    for (int i = 0; i < n; i++)
        subs[i] = sub_client(cs[i]);
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_selective_client_new(subs, (size_t)n, o, &c), 0);
    return c;
}

/* Frees the client (and so its sub-clients) first, then stops the clusters. */
static void finish(ftrpc_client *c, cluster *const *cs, int n)
{
    ftrpc_client_free(c);
    for (int i = 0; i < n; i++)
        cluster_stop(cs[i]);
}

static int echo(ftrpc_client *c, const ftrpc_call_options *co, ftrpc_result *r)
{
    return ftrpc_call(c, "example.EchoService", "Echo", NULL, NULL, co, r);
}

static const char *const SLOW_1000[] = {"--delay-ms", "1000", NULL};
static const char *const FAIL_ELIMIT[] = {"--error-rate", "1", "--error-code", "2004", NULL};

/* ---- backups ---- */

/* Every call starts on cluster A (priority), whose servers take 1 s; at 20 ms the backup goes
 * to cluster B, not to A's other server, and answers: one backup per call, won by B. */
static void a_backup_goes_to_the_other_cluster(void **state)
{
    (void)state;
    cluster a, b;
    cluster_start(&a, 2, SLOW_1000);
    cluster_start(&b, 1, NULL);
    ftrpc_client_options o = {.timeout_ms = 3000,
                              .fail_mode = FTRPC_FAILBACKUP,
                              .backup_request_ms = 20,
                              .lb = "priority"};
    ftrpc_client *c = selective((cluster *[]){&a, &b}, 2, &o);
    const int calls = 6;
    for (int i = 0; i < calls; i++) {
        ftrpc_result r;
        assert_int_equal(echo(c, NULL, &r), 0);
        assert_int_equal(r.backups, 1);
        assert_int_equal(r.backup_won, 1);
        assert_int_equal(r.attempts, 2);
        assert_int_equal(r.cluster, 1);
        assert_string_equal(r.endpoint, b.addr[0]);
        assert_true(r.latency_us >= 19000); /* not before the delay (1 ms timer resolution) */
        assert_true(r.latency_us < 500000); /* well before A's 1000 ms */
        ftrpc_result_fini(&r);
    }
    assert_int_equal(atomic_load(&c->backups), calls);
    assert_int_equal(atomic_load(&c->backup_wins), calls);
    finish(c, (cluster *[]){&a, &b}, 2);
}

/* Round robin over the clusters spreads the calls, not their attempts: first attempts alternate
 * A, B, A, ... (the backups take no turn). A call that starts on the slow cluster is backed up into
 * the fast one and won by that backup; one that starts on the fast cluster is answered by it
 * (a loaded machine may back it up into A too, where the backup then loses). Either way B
 * answers, fast. */
static void with_round_robin_every_call_is_answered_by_the_fast_cluster(void **state)
{
    (void)state;
    cluster a, b;
    cluster_start(&a, 1, SLOW_1000);
    cluster_start(&b, 1, NULL);
    ftrpc_client_options o = {
        .timeout_ms = 3000, .fail_mode = FTRPC_FAILBACKUP, .backup_request_ms = 20};
    ftrpc_client *c = selective((cluster *[]){&a, &b}, 2, &o);
    const int calls = 8;
    int backups = 0, wins = 0;
    for (int i = 0; i < calls; i++) {
        ftrpc_result r;
        assert_int_equal(echo(c, NULL, &r), 0);
        assert_int_equal(r.cluster, 1);
        assert_string_equal(r.endpoint, b.addr[0]);
        assert_int_equal(r.attempts, 1 + r.backups);
        assert_true(r.latency_us < 500000);
        if (i % 2 == 0)
            assert_int_equal(r.backup_won, 1); /* started on A */
        else
            assert_int_equal(r.backup_won, 0);
        backups += r.backups;
        wins += r.backup_won;
        ftrpc_result_fini(&r);
    }
    print_message("%d backups for %d calls, %d won\n", backups, calls, wins);
    assert_int_equal(wins, calls / 2);
    assert_true(backups >= calls / 2);
    assert_int_equal(atomic_load(&c->backups), backups);
    finish(c, (cluster *[]){&a, &b}, 2);
}

/* ---- failover ---- */

/* Cluster A refuses connections: the request never left, so it is re-sent at once, to cluster B
 * (not to A's other endpoint). */
static void failover_goes_to_another_cluster_when_a_refuses_connections(void **state)
{
    (void)state;
    cluster a, b;
    cluster_dead(&a, 2);
    cluster_start(&b, 1, NULL);
    ftrpc_client_options o = {.timeout_ms = 3000, .lb = "priority"};
    ftrpc_client *c = selective((cluster *[]){&a, &b}, 2, &o);
    ftrpc_result r;
    assert_int_equal(echo(c, NULL, &r), 0);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(r.cluster, 1);
    assert_string_equal(r.endpoint, b.addr[0]);
    assert_true(r.latency_us < 1000000);
    ftrpc_result_fini(&r);
    finish(c, (cluster *[]){&a, &b}, 2);
}

/* Cluster A's two servers answer ELIMIT (retryable; it suspends nothing): every call's retry goes
 * to cluster B, so it takes two attempts, never three (a plain failover client over A's endpoints
 * would have tried A's second server next). */
static void failover_goes_to_another_cluster_on_a_retryable_error(void **state)
{
    (void)state;
    cluster a, b;
    cluster_start(&a, 2, FAIL_ELIMIT);
    cluster_start(&b, 1, NULL);
    ftrpc_client_options o = {.timeout_ms = 3000, .lb = "priority"};
    ftrpc_client *c = selective((cluster *[]){&a, &b}, 2, &o);
    for (int i = 0; i < 5; i++) {
        ftrpc_result r;
        assert_int_equal(echo(c, NULL, &r), 0);
        assert_int_equal(r.attempts, 2);
        assert_int_equal(r.cluster, 1);
        assert_string_equal(r.endpoint, b.addr[0]);
        ftrpc_result_fini(&r);
    }
    assert_int_equal(atomic_load(&c->retries), 5);
    /* failfast: the one attempt's error, named by A's endpoint that sent it */
    ftrpc_call_options once = {.fail_mode = FTRPC_FAILFAST};
    ftrpc_result r;
    assert_int_equal(echo(c, &once, &r), FTRPC_ELIMIT);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.cluster, 0);
    assert_true(in_cluster(&a, r.endpoint));
    ftrpc_result_fini(&r);
    finish(c, (cluster *[]){&a, &b}, 2);
}

/* ---- clusters down ---- */

/* Cluster A (two endpoints, both refusing) is tried until its endpoints are suspended; from then
 * on round robin skips it: every call takes one attempt and B and C share them. */
static void a_cluster_whose_endpoints_are_all_down_is_skipped(void **state)
{
    (void)state;
    cluster a, b, cc;
    cluster_dead(&a, 2);
    cluster_start(&b, 1, NULL);
    cluster_start(&cc, 1, NULL);
    ftrpc_client_options o = {.timeout_ms = 3000};
    ftrpc_client *c = selective((cluster *[]){&a, &b, &cc}, 3, &o);
    /* warm-up: a call that lands on A is refused there and re-sent to another cluster; each
     * refusal suspends the endpoint, so A's two endpoints are both out after two such calls */
    for (int i = 0; i < 6; i++) {
        ftrpc_result r;
        assert_int_equal(echo(c, NULL, &r), 0);
        assert_int_not_equal(r.cluster, 0);
        ftrpc_result_fini(&r);
    }
    int per_cluster[3] = {0};
    for (int i = 0; i < 20; i++) {
        ftrpc_result r;
        assert_int_equal(echo(c, NULL, &r), 0);
        assert_int_equal(r.attempts, 1);
        assert_true(r.cluster == 1 || r.cluster == 2);
        assert_true(in_cluster(r.cluster == 1 ? &b : &cc, r.endpoint));
        per_cluster[r.cluster]++;
        ftrpc_result_fini(&r);
    }
    print_message("after A went down: B answered %d, C %d\n", per_cluster[1], per_cluster[2]);
    assert_true(per_cluster[1] >= 5 && per_cluster[2] >= 5);
    finish(c, (cluster *[]){&a, &b, &cc}, 3);
}

/* Every cluster refuses: the call ends with the connection error, at once (each endpoint gets one
 * free re-send, then the retries), not at its deadline; a fallback may replace it. */
static void every_cluster_down_gives_the_connection_error_at_once(void **state)
{
    (void)state;
    cluster a, b;
    cluster_dead(&a, 1);
    cluster_dead(&b, 2);
    ftrpc_client_options o = {.timeout_ms = 5000};
    ftrpc_client *c = selective((cluster *[]){&a, &b}, 2, &o);
    ftrpc_result r;
    assert_int_equal(echo(c, NULL, &r), FTRPC_ECONNREFUSED);
    assert_int_equal(r.kind, FTRPC_RESULT_RPC_ERROR);
    assert_int_equal(r.cluster, -1);
    assert_string_equal(r.endpoint, "");
    assert_true(r.attempts >= 3); /* every endpoint of both clusters was tried */
    assert_true(r.latency_us < 2000000);
    print_message("all down: attempts=%d code=%d (%s) in %lld us\n", r.attempts, r.code,
                  r.error_text, (long long)r.latency_us);
    ftrpc_result_fini(&r);
    /* again, with every endpoint suspended now: each cluster's first endpoint back is probed (as a
     * plain client probes its endpoint back first), refused, and the call ends at once */
    assert_int_equal(echo(c, NULL, &r), FTRPC_ECONNREFUSED);
    assert_int_equal(r.cluster, -1);
    assert_true(r.latency_us < 2000000);
    ftrpc_result_fini(&r);
    finish(c, (cluster *[]){&a, &b}, 2);
}

static void fallback_answer(const ftrpc_fallback_input *in, ftrpc_fallback_output *out, void *arg)
{
    (void)in;
    (void)arg;
    out->response = ftrpc_buf_new();
    ftrpc_buf_append(out->response, "fb", 2);
}

/* ---- call options ---- */

/* A call that opts out of backups waits for slow cluster A; a fallback of the client answers
 * when every cluster is down. */
static void call_options_work_as_on_a_plain_client(void **state)
{
    (void)state;
    cluster a, b;
    cluster_start(&a, 1, SLOW_1000);
    cluster_start(&b, 1, NULL);
    ftrpc_client_options o = {.timeout_ms = 3000,
                              .fail_mode = FTRPC_FAILBACKUP,
                              .backup_request_ms = 20,
                              .lb = "priority"};
    ftrpc_client *c = selective((cluster *[]){&a, &b}, 2, &o);
    ftrpc_call_options no_backup = {.backup_request_ms = -1};
    ftrpc_result r;
    assert_int_equal(echo(c, &no_backup, &r), 0);
    assert_int_equal(r.backups, 0);
    assert_int_equal(r.cluster, 0);
    assert_string_equal(r.endpoint, a.addr[0]);
    assert_true(r.latency_us >= 999000);
    ftrpc_result_fini(&r);
    /* a per-call deadline shorter than A's delay and no backup: the call times out */
    ftrpc_call_options short_deadline = {.timeout_ms = 100, .backup_request_ms = -1};
    assert_int_equal(echo(c, &short_deadline, &r), FTRPC_ERPCTIMEDOUT);
    ftrpc_result_fini(&r);
    finish(c, (cluster *[]){&a, &b}, 2);

    cluster dead;
    cluster_dead(&dead, 1);
    ftrpc_client_options fo = {.timeout_ms = 3000,
                               .fallback = {.kind = FTRPC_FALLBACK_ERRORS, .fn = fallback_answer}};
    c = selective((cluster *[]){&dead}, 1, &fo);
    assert_int_equal(echo(c, NULL, &r), 0);
    assert_int_equal(r.from_fallback, 1);
    assert_int_equal(ftrpc_buf_size(r.response), 2);
    ftrpc_result_fini(&r);
    finish(c, (cluster *[]){&dead}, 1);
}

/* ---- async and ownership ---- */

typedef struct counts {
    atomic_int done, ok, stopped, twice;
    atomic_int seen[64];
} counts;

typedef struct call_arg {
    counts *k;
    int i;
} call_arg;

static void count_cb(ftrpc_result *r, void *arg)
{
    call_arg *a = arg;
    if (atomic_fetch_add(&a->k->seen[a->i], 1) != 0) atomic_fetch_add(&a->k->twice, 1);
    if (r->kind == FTRPC_RESULT_OK) atomic_fetch_add(&a->k->ok, 1);
    if (r->code == FTRPC_ESTOPPED) atomic_fetch_add(&a->k->stopped, 1);
    atomic_fetch_add(&a->k->done, 1);
}

/* 32 async calls race A (1 s) against B's backups and all complete once; then 16 calls without
 * backups, half of them on A, are cut short by the client's free (ESTOPPED), once each. Freeing a
 * sub-client while the selective client owns it is refused; the selective client frees it (ASan
 * would see a double free or a leak). */
static void async_calls_complete_once_and_the_client_frees_its_sub_clients(void **state)
{
    (void)state;
    cluster a, b;
    cluster_start(&a, 1, SLOW_1000);
    cluster_start(&b, 1, NULL);
    ftrpc_client *subs[2] = {sub_client(&a), sub_client(&b)};
    ftrpc_client_options o = {
        .timeout_ms = 3000, .fail_mode = FTRPC_FAILBACKUP, .backup_request_ms = 20};
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_selective_client_new(subs, 2, &o, &c), 0);
    ftrpc_client_free(subs[0]); /* refused: logged, nothing freed */

    static counts k;
    static call_arg args[64];
    memset(&k, 0, sizeof k);
    for (int i = 0; i < 32; i++) {
        args[i] = (call_arg){&k, i};
        assert_int_equal(ftrpc_call_async(c, "example.EchoService", "Echo", NULL, NULL, NULL,
                                          count_cb, &args[i], NULL),
                         0);
    }
    assert_true(h_wait_atomic_ge(&k.done, 32, 5000));
    assert_int_equal(atomic_load(&k.ok), 32);

    /* the sub-client still serves its own calls */
    ftrpc_result r;
    assert_int_equal(echo(subs[1], NULL, &r), 0);
    ftrpc_result_fini(&r);

    /* no backups: the calls round robin put on A are still out when the client goes */
    ftrpc_call_options slow_only = {.backup_request_ms = -1};
    for (int i = 32; i < 48; i++) {
        args[i] = (call_arg){&k, i};
        assert_int_equal(ftrpc_call_async(c, "example.EchoService", "Echo", NULL, NULL, &slow_only,
                                          count_cb, &args[i], NULL),
                         0);
    }
    ftrpc_client_free(c); /* the calls still out end ESTOPPED before it returns */
    assert_int_equal(atomic_load(&k.done), 48);
    assert_int_equal(atomic_load(&k.twice), 0);
    assert_true(atomic_load(&k.stopped) >= 1);
    print_message("of 16 calls cut short by the free: %d ESTOPPED, %d answered\n",
                  atomic_load(&k.stopped), atomic_load(&k.ok) - 32);
    cluster_stop(&a);
    cluster_stop(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_backup_goes_to_the_other_cluster),
        cmocka_unit_test(with_round_robin_every_call_is_answered_by_the_fast_cluster),
        cmocka_unit_test(failover_goes_to_another_cluster_when_a_refuses_connections),
        cmocka_unit_test(failover_goes_to_another_cluster_on_a_retryable_error),
        cmocka_unit_test(a_cluster_whose_endpoints_are_all_down_is_skipped),
        cmocka_unit_test(every_cluster_down_gives_the_connection_error_at_once),
        cmocka_unit_test(call_options_work_as_on_a_plain_client),
        cmocka_unit_test(async_calls_complete_once_and_the_client_frees_its_sub_clients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
