/* Tail latency with backup requests: what each backup policy does to p99 when one server of three
 * is slow some of the time, against the healthy cluster measured in the same run.
 *
 * The servers are `ftrpc echo-server` children (found next to this binary, handlers on the worker
 * pool). The healthy cluster is three plain ones. Two sick shapes replace one of them with:
 *   spike5  --delay-ms 50 --delay-rate 0.05  (5% of its requests take 50 ms)
 *   brpc    --delay-ms 20 --delay-rate 0.5   (brpc's backup-request example: every other request
 *                                             sleeps 20 ms)
 * Each cell starts fresh server processes and a fresh client ("rr", 1 s deadline), warms up, then
 * runs a closed loop of IN_FLIGHT async calls until `calls` have completed, and reads the
 * servers' "calls=... canceled_unstarted=..." line at their exit. Policies: none (failover), fixed
 * (backup_request_us = the healthy p95, in microseconds), fixed ms (the same rounded up to whole
 * ms, as backup_request_ms has to: what the bench measured before backup_request_us, kept as a
 * row to compare), ratelimited (max ratio 0.1, the p95 delay), adaptive (p95 of recent calls in
 * microseconds, floor_us 100).
 *
 * Printed: p50 / p99 / p99.9 in us, extra requests (backups / calls), requests cancelled before a
 * worker ran them (warm-up included), and p99 over the healthy p99. Last, the targets with PASS
 * or FAIL: for the 5% spike, p99 <= 1.5x the healthy p99 with <= 6% extra requests (fixed at p95
 * and adaptive); for brpc's shape, p99 under half the 20 ms sleep.
 *
 * --brpc-example runs brpc's own example instead, side by side with the figures brpc publishes for
 * it (docs/backup-requests.md): ONE server that sleeps 20 ms on every other request it receives,
 * backups included (`echo-server --delay-ms 20 --delay-every 2`), ONE caller in a closed loop of
 * blocking calls, backups at 2 ms. Rows: no backup (the baseline), backups at 2 ms by default,
 * the same drawing on a retry budget of 20% + 10/s (ftrpc's default before issue 20) and of 1.0;
 * p50 / p99 / p99.9, backups sent and refused, p99 over the baseline's, and the latency of the
 * calls their backup won (delay + the backup's round trip: how late the backup timer fired).
 * Target: p99 at or under brpc's 3.1 ms with backups at 2 ms by default.
 *
 * Why the tail is what it is (issue 25): for each cell with backups, the slowest 1% of its calls
 * sorted by cause (no backup sent; the backup won, so the call took the delay plus the backup's
 * round trip; a backup went but the first copy still won, so both copies were slow; answered by
 * the sick server), the latency minus the delay of the calls a backup won, and how late the
 * client's backup timer ran (its lateness counters, client_internal.h) and whether a backup ever
 * went to an endpoint a copy was already on. The healthy cell, whose p95 is the fixed delay, runs
 * at least HEALTHY_MIN_CALLS calls even with --quick, and its p95's 95% confidence interval is
 * printed: from 1,000 calls the p95 rests on 50 of them.
 *
 * Usage: bench_tail [--quick] [--calls N] [--brpc-example] [--help]
 *        (default 5000 calls a cell; --quick: 1000; --brpc-example: 2000 calls a row) */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "client/backup_policy.h"
#include "client/client_internal.h"
#include "io/loop.h"
#include "bench_cli.h"
#include "ftrpc/ftrpc.h"

#define IN_FLIGHT 8
#define WARMUP 300
#define WARMUP_MS 700
#define ADAPTIVE_WARMUP_MS 2500 /* > its 2 s window */
/* > the rate-limited policy's warm-up (its update interval, set to 1 s here), in which it allows
 * every backup as brpc's does: the cell measures the ratio at work */
#define RATELIMITED_WARMUP_MS 1500
#define NSERVERS 3
#define HEALTHY_MIN_CALLS 5000

static char cli_path[PATH_MAX];

/* ---- echo-server children ---- */

typedef struct child {
    pid_t pid;
    int port;
    char err_path[64];
} child;

/* delay_rate: a share ("0.05"), or "every:N" for every N-th request received */
static int child_start(child *ch, const char *delay_ms, const char *delay_rate)
{
    snprintf(ch->err_path, sizeof ch->err_path, "/tmp/bench_tail_XXXXXX");
    int err_fd = mkstemp(ch->err_path);
    int out[2];
    if (err_fd < 0 || pipe(out) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(out[1], 1);
        dup2(err_fd, 2);
        close(out[0]);
        const char *argv[] = {cli_path, "echo-server", "--listen", "127.0.0.1:0", "--workers",
                              NULL,     NULL,          NULL,       NULL,          NULL};
        if (delay_ms) {
            argv[5] = "--delay-ms";
            argv[6] = delay_ms;
            int every = !strncmp(delay_rate, "every:", 6);
            argv[7] = every ? "--delay-every" : "--delay-rate";
            argv[8] = every ? delay_rate + 6 : delay_rate;
        }
        execv(cli_path, (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    close(err_fd);
    ch->pid = pid;
    ch->port = bench_read_port(out[0]);
    return ch->port > 0 ? 0 : -1;
}

/* SIGTERM, wait, and add the child's canceled_unstarted count to *canceled. */
static void child_stop(child *ch, long long *canceled)
{
    kill(ch->pid, SIGTERM);
    int status;
    waitpid(ch->pid, &status, 0);
    FILE *f = fopen(ch->err_path, "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "canceled_unstarted=");
        if (p) *canceled += atoll(p + strlen("canceled_unstarted="));
    }
    if (f) fclose(f);
    unlink(ch->err_path);
}

/* ---- a closed loop of async calls ---- */

typedef struct run {
    ftrpc_client *client;
    int total;  /* calls of this loop */
    int warmup; /* the first `warmup` completions are not recorded */
    atomic_int issued, claimed, done;
    int64_t *lat_us;    /* [total - warmup], in completion order */
    unsigned char *how; /* [total - warmup]: HOW_* bits of the same call, or NULL */
    const char *sick;   /* "127.0.0.1:port" of the sick server, or NULL */
    atomic_llong backups, errors;
    pthread_mutex_t lock;
    pthread_cond_t finished;
} run;

enum { HOW_BACKUP = 1, HOW_BACKUP_WON = 2, HOW_SICK = 4 };

static void on_done(ftrpc_result *res, void *arg);

static void issue(run *r)
{
    static const char payload[16] = "tail-latency....";
    if (atomic_fetch_add(&r->issued, 1) >= r->total) return;
    ftrpc_buf *req = ftrpc_buf_new();
    ftrpc_buf_append(req, payload, sizeof payload);
    int rc = ftrpc_call_async(r->client, "example.EchoService", "Echo", req, NULL, NULL, on_done, r,
                              NULL);
    ftrpc_buf_free(req);
    if (rc != 0) {
        fprintf(stderr, "bench_tail: call refused: %s\n", ftrpc_strerror(rc));
        exit(1);
    }
}

static void on_done(ftrpc_result *res, void *arg)
{
    run *r = arg;
    int slot = atomic_fetch_add(&r->claimed, 1);
    if (slot >= r->warmup) {
        r->lat_us[slot - r->warmup] = res->latency_us;
        if (r->how)
            r->how[slot - r->warmup] =
                (unsigned char)((res->backups > 0 ? HOW_BACKUP : 0) |
                                (res->backup_won ? HOW_BACKUP_WON : 0) |
                                (r->sick && !strcmp(res->endpoint, r->sick) ? HOW_SICK : 0));
        atomic_fetch_add(&r->backups, res->backups);
        if (res->kind != FTRPC_RESULT_OK) atomic_fetch_add(&r->errors, 1);
    }
    /* completions run on several IO threads: `done` moves only once the slot is written */
    int d = atomic_fetch_add(&r->done, 1) + 1;
    if (d == r->total) {
        pthread_mutex_lock(&r->lock);
        pthread_cond_signal(&r->finished);
        pthread_mutex_unlock(&r->lock);
        return;
    }
    issue(r);
}

/* Runs `total` calls, IN_FLIGHT at a time, and returns once all completed. */
static void loop_calls(run *r, ftrpc_client *client, int total, int warmup, int64_t *lat,
                       unsigned char *how, const char *sick)
{
    memset(r, 0, sizeof *r);
    r->how = how;
    r->sick = sick;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->finished, NULL);
    r->client = client;
    r->total = total;
    r->warmup = warmup;
    r->lat_us = lat;
    for (int i = 0; i < IN_FLIGHT; i++)
        issue(r);
    pthread_mutex_lock(&r->lock);
    while (atomic_load(&r->done) < r->total)
        pthread_cond_wait(&r->finished, &r->lock);
    pthread_mutex_unlock(&r->lock);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->finished);
}

typedef struct cell {
    int64_t p50, p95, p99, p999;
    int64_t p95_lo, p95_hi; /* the p95's 95% confidence interval (order statistics) */
    double extra;
    long long errors, canceled;
    int64_t delay_us; /* the backup delay in force at the end (-1: none) */
    /* why the slowest 1% were slow (calls at or above the p99): */
    int tail_n, tail_no_backup, tail_backup_won, tail_first_won, tail_sick;
    /* the backup's share: latency - delay of the calls a backup won (timer lateness plus the
     * backup's round trip), p50 / p90 */
    int64_t won_extra_p50, won_extra_p90;
    /* the client's timer lateness counters over the measured calls (client_internal.h) */
    long long late[FT_BACKUP_LATE_BUCKETS], late_n, same_endpoint;
    double empty_wakes; /* per call: the IO loops' timerfd woke them with nothing due */
    double late_mean_us, late_wake_us, late_queue_us; /* mean; its split (client_internal.h) */
} cell;

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int64_t quantile(const int64_t *sorted, int n, double q)
{
    int i = (int)(q * n);
    return sorted[i >= n ? n - 1 : i];
}

/* The default runtime's (the client's) IO loops: wake-ups of their timerfd with nothing due. */
static long long empty_wakes(void)
{
    ftrpc_runtime *rt = ft_runtime_or_default(NULL);
    long long n = 0;
    for (int i = 0; i < rt->nloops; i++)
        n += (long long)atomic_load(&rt->loops[i].timer_wakes_empty);
    return n;
}

/* Fills the cell's tail figures from the calls' latencies and HOW_* bits (completion order;
 * neither is sorted yet). */
static void tail_causes(cell *c, const int64_t *lat, const unsigned char *how, int n,
                        int64_t delay_us)
{
    int64_t *sorted = malloc((size_t)n * sizeof *sorted), *won = malloc((size_t)n * sizeof *won);
    if (!sorted || !won) exit(1);
    memcpy(sorted, lat, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_i64);
    int64_t p99 = quantile(sorted, n, 0.99);
    int nwon = 0;
    for (int i = 0; i < n; i++) {
        if ((how[i] & HOW_BACKUP_WON) && delay_us >= 0) won[nwon++] = lat[i] - delay_us;
        if (lat[i] < p99) continue;
        c->tail_n++;
        c->tail_no_backup += !(how[i] & HOW_BACKUP);
        c->tail_backup_won += !!(how[i] & HOW_BACKUP_WON);
        c->tail_first_won += (how[i] & HOW_BACKUP) && !(how[i] & HOW_BACKUP_WON);
        c->tail_sick += !!(how[i] & HOW_SICK);
    }
    if (nwon) {
        qsort(won, (size_t)nwon, sizeof *won, cmp_i64);
        c->won_extra_p50 = quantile(won, nwon, 0.50);
        c->won_extra_p90 = quantile(won, nwon, 0.90);
    }
    free(sorted);
    free(won);
}

typedef enum {
    POLICY_NONE,
    POLICY_FIXED,
    POLICY_FIXED_MS,
    POLICY_RATELIMITED,
    POLICY_ADAPTIVE
} policy_kind;
static const char *const policy_names[] = {"none", "fixed p95", "fixed p95 in ms",
                                           "ratelimited 0.1", "adaptive"};

static cell run_cell(const char *delay_ms, const char *delay_rate, policy_kind pk,
                     int64_t backup_us, int calls)
{
    child ch[NSERVERS];
    char url[256] = "list://";
    for (int i = 0; i < NSERVERS; i++) {
        /* the sick server is the last one; "rr" spreads calls evenly whatever the order */
        int sick = i == NSERVERS - 1 && delay_ms;
        if (child_start(&ch[i], sick ? delay_ms : NULL, sick ? delay_rate : NULL) != 0) {
            fprintf(stderr, "bench_tail: cannot start %s echo-server\n", cli_path);
            exit(1);
        }
        char ep[40];
        snprintf(ep, sizeof ep, "%s127.0.0.1:%d", i ? "," : "", ch[i].port);
        strcat(url, ep);
    }
    ftrpc_backup_policy *policy = NULL;
    if (pk == POLICY_RATELIMITED) {
        /* backup_request_ms 0: the client's delay, backup_request_us */
        ftrpc_backup_policy_ratelimited_options o = {.max_backup_ratio = 0.1,
                                                     .update_interval_seconds = 1};
        if (ftrpc_backup_policy_ratelimited_new(&o, &policy) != 0) exit(1);
    } else if (pk == POLICY_ADAPTIVE) {
        /* a 2 s window refreshed every 200 ms (defaults 10 s, 500 ms): a cell lasts seconds, and
         * the window must not still hold the noisy start of the fresh server processes; a floor
         * of 100 us (default 1 ms, far above a loopback p95) */
        ftrpc_backup_policy_adaptive_options o = {
            .window_seconds = 2, .refresh_ms = 200, .floor_us = 100};
        if (ftrpc_backup_policy_adaptive_new(&o, &policy) != 0) exit(1);
    }
    ftrpc_client_options co = {
        .timeout_ms = 1000,
        .lb = "rr",
        .fail_mode = pk == POLICY_NONE ? FTRPC_FAILOVER : FTRPC_FAILBACKUP,
        .backup_request_ms = pk == POLICY_FIXED_MS ? (int)((backup_us + 999) / 1000) : 0,
        .backup_request_us = pk == POLICY_NONE || pk == POLICY_FIXED_MS ? 0 : backup_us,
        .backup_policy = policy};
    static run r;
    int64_t *lat = calloc((size_t)calls, sizeof *lat);
    unsigned char *how = calloc((size_t)calls, 1);
    char sick[40] = "";
    if (delay_ms) snprintf(sick, sizeof sick, "127.0.0.1:%d", ch[NSERVERS - 1].port);
    ftrpc_client *client = NULL;
    if (!lat || !how || ftrpc_client_new(url, &co, &client) != 0) {
        fprintf(stderr, "bench_tail: cannot make the client\n");
        exit(1);
    }
    /* warm up connections, health and the adaptive policy's window (it refreshes every 500 ms
     * and wants 100 samples): WARMUP calls, repeated until WARMUP_MS have passed */
    int warm_ms = pk == POLICY_ADAPTIVE      ? ADAPTIVE_WARMUP_MS
                  : pk == POLICY_RATELIMITED ? RATELIMITED_WARMUP_MS
                                             : WARMUP_MS;
    int64_t warm_until = ft_now_ns() + warm_ms * FT_NS_PER_MS;
    do
        loop_calls(&r, client, WARMUP, WARMUP, lat, NULL, NULL);
    while (ft_now_ns() < warm_until);
    long long late0[FT_BACKUP_LATE_BUCKETS];
    long long late_sum0 = atomic_load(&client->backup_late_ns_sum);
    long long same0 = atomic_load(&client->backup_same_endpoint);
    long long wake0 = atomic_load(&client->backup_late_wake_ns_sum);
    long long queue0 = atomic_load(&client->backup_late_queue_ns_sum);
    for (int i = 0; i < FT_BACKUP_LATE_BUCKETS; i++)
        late0[i] = atomic_load(&client->backup_late[i]);
    long long wakes0 = empty_wakes();
    loop_calls(&r, client, calls, 0, lat, how, sick[0] ? sick : NULL);
    cell c = {0};
    c.empty_wakes = (double)(empty_wakes() - wakes0) / calls;
    for (int i = 0; i < FT_BACKUP_LATE_BUCKETS; i++) {
        c.late[i] = atomic_load(&client->backup_late[i]) - late0[i];
        c.late_n += c.late[i];
    }
    c.late_mean_us = c.late_n ? (double)(atomic_load(&client->backup_late_ns_sum) - late_sum0) /
                                    (double)c.late_n / 1000.0
                              : 0;
    c.same_endpoint = atomic_load(&client->backup_same_endpoint) - same0;
    if (c.late_n) {
        c.late_wake_us = (double)(atomic_load(&client->backup_late_wake_ns_sum) - wake0) /
                         (double)c.late_n / 1000.0;
        c.late_queue_us = (double)(atomic_load(&client->backup_late_queue_ns_sum) - queue0) /
                          (double)c.late_n / 1000.0;
    }
    int64_t in_force_us = pk == POLICY_NONE       ? -1
                          : pk == POLICY_ADAPTIVE ? ft_backup_policy_adaptive_delay_us(policy)
                          : pk == POLICY_FIXED_MS ? (backup_us + 999) / 1000 * 1000
                                                  : backup_us;
    ftrpc_client_free(client);
    ftrpc_backup_policy_free(policy);
    r.lat_us = lat;

    for (int i = 0; i < NSERVERS; i++)
        child_stop(&ch[i], &c.canceled);
    tail_causes(&c, lat, how, calls, in_force_us);
    free(how);
    qsort(r.lat_us, (size_t)calls, sizeof *r.lat_us, cmp_i64);
    c.p50 = quantile(r.lat_us, calls, 0.50);
    c.p95 = quantile(r.lat_us, calls, 0.95);
    /* the rank of the sample p95 is binomial(n, 0.95): +-1.96 standard deviations of it */
    double sd = sqrt(calls * 0.95 * 0.05);
    c.p95_lo = quantile(r.lat_us, calls, (calls * 0.95 - 1.96 * sd) / calls);
    c.p95_hi = quantile(r.lat_us, calls, (calls * 0.95 + 1.96 * sd) / calls);
    c.p99 = quantile(r.lat_us, calls, 0.99);
    c.p999 = quantile(r.lat_us, calls, 0.999);
    c.extra = (double)atomic_load(&r.backups) / calls;
    c.errors = atomic_load(&r.errors);
    c.delay_us = in_force_us;
    free(lat);
    return c;
}

static void print_row(const char *shape, const char *policy, const cell *c, int64_t healthy_p99)
{
    char delay[32] = "-";
    if (c->delay_us >= 0) snprintf(delay, sizeof delay, "%lld us", (long long)c->delay_us);
    printf("| %-7s | %-15s | %8s | %6lld | %7lld | %8lld | %6.2f%% | %9lld | %7.2fx |%s\n", shape,
           policy, delay, (long long)c->p50, (long long)c->p99, (long long)c->p999, 100 * c->extra,
           c->canceled, (double)c->p99 / (double)healthy_p99, c->errors ? " (errors!)" : "");
}

/* Why the slowest 1% of a cell with backups were slow, and how late its backups left. */
static void print_causes(const char *shape, const char *policy, const cell *c)
{
    printf("| %-7s | %-15s | %4d | %9d | %10d | %9d | %6d | %6lld / %6lld | %5.1f = %5.1f + "
           "%5.1f | ",
           shape, policy, c->tail_n, c->tail_no_backup, c->tail_backup_won, c->tail_first_won,
           c->tail_sick, (long long)c->won_extra_p50, (long long)c->won_extra_p90, c->late_mean_us,
           c->late_wake_us, c->late_queue_us);
    for (int i = 0; i < FT_BACKUP_LATE_BUCKETS; i++)
        printf("%s%lld", i ? "/" : "", c->late[i]);
    printf(" | %4lld | %5.2f |\n", c->same_endpoint, c->empty_wakes);
}

/* ---- brpc's own example ---- */

typedef enum { EX_NONE, EX_DEFAULT, EX_BUDGET_20, EX_BUDGET_100 } example_row;
static const char *const example_names[] = {"no backup", "backup 2 ms (default)",
                                            "2 ms, retry budget 0.2+10/s",
                                            "2 ms, retry budget 1.0+10/s"};

typedef struct example_cell {
    int64_t p50, p99, p999;
    int64_t won_min, won_p50, won_p99, won_max; /* latency of the calls their backup won */
    long long backups, refused, errors;
} example_cell;

static example_cell run_example(example_row row, int calls)
{
    child ch;
    if (child_start(&ch, "20", "every:2") != 0) {
        fprintf(stderr, "bench_tail: cannot start %s echo-server\n", cli_path);
        exit(1);
    }
    char url[64];
    snprintf(url, sizeof url, "list://127.0.0.1:%d", ch.port);
    ftrpc_client_options co = {
        .timeout_ms = 1000,
        .backup_request_ms = row == EX_NONE ? 0 : 2,
        .backup_budget = row >= EX_BUDGET_20 ? FTRPC_BACKUP_BUDGET_RETRY : 0,
        .retry_budget_ratio = row == EX_BUDGET_100 ? 1.0 : 0,
    };
    ftrpc_client *client = NULL;
    int64_t *lat = calloc((size_t)calls, sizeof *lat), *won = calloc((size_t)calls, sizeof *won);
    if (!lat || !won || ftrpc_client_new(url, &co, &client) != 0) {
        fprintf(stderr, "bench_tail: cannot make the client\n");
        exit(1);
    }
    static const char payload[16] = "brpc-example....";
    ftrpc_buf *req = ftrpc_buf_new();
    ftrpc_buf_append(req, payload, sizeof payload);
    example_cell c = {0};
    int nwon = 0;
    for (int i = -WARMUP; i < calls; i++) { /* one caller, a closed loop */
        ftrpc_result r;
        int rc = ftrpc_call(client, "example.EchoService", "Echo", req, NULL, NULL, &r);
        if (i >= 0) {
            lat[i] = r.latency_us;
            if (r.backup_won) won[nwon++] = r.latency_us;
            c.backups += r.backups;
            c.refused += r.backups_refused;
            c.errors += rc != 0;
        }
        ftrpc_result_fini(&r);
    }
    ftrpc_buf_free(req);
    ftrpc_client_free(client);
    long long canceled = 0;
    child_stop(&ch, &canceled);
    qsort(lat, (size_t)calls, sizeof *lat, cmp_i64);
    c.p50 = quantile(lat, calls, 0.50);
    c.p99 = quantile(lat, calls, 0.99);
    c.p999 = quantile(lat, calls, 0.999);
    if (nwon > 0) {
        qsort(won, (size_t)nwon, sizeof *won, cmp_i64);
        c.won_min = won[0];
        c.won_p50 = quantile(won, nwon, 0.50);
        c.won_p99 = quantile(won, nwon, 0.99);
        c.won_max = won[nwon - 1];
    }
    free(lat);
    free(won);
    return c;
}

static int brpc_example(int calls)
{
    printf("brpc's backup-request example: one echo-server (--delay-ms 20 --delay-every 2), one "
           "caller, %d calls a row after %d warm-up calls\n",
           calls, WARMUP);
    printf("brpc's client, in the same example (issue 20): p99 2.9-3.1 ms, backups sent at "
           "2.0-2.5 ms\n\n");
    printf("| row                          | p50 us | p99 us | p99.9 us | backups | refused | "
           "p99/none | backup won: min / p50 / p99 / max us |\n");
    printf("|------------------------------|--------|--------|----------|---------|---------|"
           "----------|--------------------------------------|\n");
    example_cell none = {0}, dflt = {0};
    for (int row = EX_NONE; row <= EX_BUDGET_100; row++) {
        example_cell c = run_example((example_row)row, calls);
        if (row == EX_NONE) none = c;
        if (row == EX_DEFAULT) dflt = c;
        printf("| %-28s | %6lld | %6lld | %8lld | %7lld | %7lld | %7.3fx | %6lld / %6lld / %6lld / "
               "%6lld |%s\n",
               example_names[row], (long long)c.p50, (long long)c.p99, (long long)c.p999, c.backups,
               c.refused, (double)c.p99 / (double)none.p99, (long long)c.won_min,
               (long long)c.won_p50, (long long)c.won_p99, (long long)c.won_max,
               c.errors ? " (errors!)" : "");
        fflush(stdout);
    }
    int ok = dflt.p99 <= 3100 && dflt.refused == 0;
    printf("\ntarget: backups at 2 ms by default, p99 %lld us <= brpc's 3100 us, none refused: "
           "%s\n",
           (long long)dflt.p99, ok ? "PASS" : "FAIL");
    return 0;
}

int main(int argc, char **argv)
{
    int calls = 5000, example = 0, calls_set = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--brpc-example"))
            example = 1;
        else if (!strcmp(argv[i], "--quick"))
            calls = 1000;
        else if (!strcmp(argv[i], "--calls") && i + 1 < argc) {
            calls = atoi(argv[++i]);
            calls_set = 1;
        } else {
            int help = !strcmp(argv[i], "--help");
            fprintf(help ? stdout : stderr,
                    "usage: bench_tail [--quick] [--calls N] [--brpc-example]\n"
                    "  p99 with backup requests when one server of three is slow some of the "
                    "time,\n"
                    "  against the healthy cluster measured in the same run "
                    "(docs/performance.md, Tail latency).\n"
                    "  Target: with the backup at the healthy p95 (sub-millisecond), p99 <= 1.5x "
                    "the\n"
                    "  healthy p99 with <= 6%% extra requests, on a quiet machine.\n"
                    "  --quick          1000 calls a cell instead of 5000 (the healthy cell keeps "
                    "%d)\n"
                    "  --calls N        N calls a cell\n"
                    "  --brpc-example   brpc's own backup-request example instead\n",
                    HEALTHY_MIN_CALLS);
            return help ? 0 : 2;
        }
    }
    if (calls < 100) calls = 100;
    if (bench_find_cli(cli_path, "bench_tail") != 0) return 1;
    signal(SIGPIPE, SIG_IGN);
    if (example) return brpc_example(calls_set ? calls : 2000);
    int64_t t0 = ft_now_ns();

    /* the backup delay is this cell's p95: never from fewer than HEALTHY_MIN_CALLS calls, whose
     * p95 is known to a few percent (its confidence interval is printed) */
    int healthy_calls = calls > HEALTHY_MIN_CALLS ? calls : HEALTHY_MIN_CALLS;
    cell healthy = run_cell(NULL, NULL, POLICY_NONE, 0, healthy_calls);
    int64_t backup_us = healthy.p95 > 0 ? healthy.p95 : 1;
    printf("%d calls a cell (after >= %d warm-up calls and %d ms), %d in flight, lb rr, %d "
           "echo-server processes "
           "(worker pool)\n",
           calls, WARMUP, WARMUP_MS, IN_FLIGHT, NSERVERS);
    printf("healthy cluster: p50 %lld us, p95 %lld us (95%% CI %lld..%lld us over %d calls), p99 "
           "%lld us, p99.9 %lld us -> backup delay %lld us; empty timer wakes %.2f a call\n\n",
           (long long)healthy.p50, (long long)healthy.p95, (long long)healthy.p95_lo,
           (long long)healthy.p95_hi, healthy_calls, (long long)healthy.p99,
           (long long)healthy.p999, (long long)backup_us, healthy.empty_wakes);
    printf("| shape   | policy          | delay    | p50 us | p99 us  | p99.9 us | extra   | "
           "cancelled | p99/healthy |\n");
    printf(
        "|---------|-----------------|----------|--------|---------|----------|---------|--------"
        "---|-------------|\n");
    print_row("healthy", "none", &healthy, healthy.p99);

    static const struct {
        const char *name, *delay_ms, *delay_rate;
    } shapes[] = {{"spike5", "50", "0.05"}, {"brpc", "20", "0.5"}};
    int pass = 1;
    char verdicts[2048] = "";
    struct {
        const char *shape, *policy;
        cell c;
    } with_backups[16];
    int nwb = 0;
    for (size_t s = 0; s < 2; s++) {
        for (int pk = POLICY_NONE; pk <= POLICY_ADAPTIVE; pk++) {
            cell c = run_cell(shapes[s].delay_ms, shapes[s].delay_rate, (policy_kind)pk, backup_us,
                              calls);
            print_row(shapes[s].name, policy_names[pk], &c, healthy.p99);
            fflush(stdout);
            if (pk != POLICY_NONE && nwb < 16) {
                with_backups[nwb].shape = shapes[s].name;
                with_backups[nwb].policy = policy_names[pk];
                with_backups[nwb++].c = c;
            }
            /* the 1.5x / 6% target is for the 5% spike; in brpc's shape one call in six sleeps,
             * so no policy can cut its p99 with fewer than ~17% extra requests: there the target
             * is a p99 far below the 20 ms sleep */
            char v[256] = "";
            if (!strcmp(shapes[s].name, "spike5") &&
                (pk == POLICY_FIXED || pk == POLICY_ADAPTIVE)) {
                double ratio = (double)c.p99 / (double)healthy.p99;
                int ok = ratio <= 1.5 && c.extra <= 0.06;
                pass &= ok;
                snprintf(v, sizeof v,
                         "spike5 %s: p99 %.2fx healthy (<= 1.5x), extra %.2f%% (<= 6%%): %s\n",
                         policy_names[pk], ratio, 100 * c.extra, ok ? "PASS" : "FAIL");
            }
            if (!strcmp(shapes[s].name, "brpc") && (pk == POLICY_FIXED || pk == POLICY_ADAPTIVE)) {
                int ok = c.p99 < 20000 / 2; /* far below the 20 ms sleep: under half of it */
                pass &= ok;
                snprintf(v, sizeof v, "brpc %s: p99 %lld us vs the 20 ms sleep (< 10000 us): %s\n",
                         policy_names[pk], (long long)c.p99, ok ? "PASS" : "FAIL");
            }
            strncat(verdicts, v, sizeof verdicts - strlen(verdicts) - 1);
        }
    }
    printf("\nthe slowest 1%% (calls >= the p99): how many; sent no backup; their backup won; "
           "a backup went but the first copy won (both slow); answered by the sick server. "
           "backup won: latency - delay (timer lateness + the backup's round trip), p50 / p90. "
           "timer: mean lateness of the backup timer (us) = until the loop read its timerfd "
           "(wake-up, or the loop busy) + from there to the callback (the iteration's IO "
           "callbacks run first); backups by lateness "
           "<5/<10/<25/<50/<100/<200/<500/>=500 us. same ep: backups sent to an endpoint "
           "a copy was already on. empty wakes: the client's IO loops woken by their timer with "
           "nothing due, per call\n\n");
    printf("| shape   | policy          | tail | no backup | backup won | first won | sick   | "
           "backup won - delay | timer = wake + queue | lateness buckets | same ep | empty wakes "
           "|\n");
    printf("|---------|-----------------|------|-----------|------------|-----------|--------|"
           "--------------------|----------------------|------------------|---------|-------------"
           "|\n");
    for (int i = 0; i < nwb; i++)
        print_causes(with_backups[i].shape, with_backups[i].policy, &with_backups[i].c);
    printf("\ntargets:\n%s", verdicts);
    printf("overall: %s (%.1f s)\n", pass ? "PASS" : "FAIL", (double)(ft_now_ns() - t0) / 1e9);
    return 0;
}
