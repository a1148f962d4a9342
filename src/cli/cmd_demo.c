/* `ftrpc demo`: fault tolerance at work on a local cluster, scenario by scenario, with figures
 * measured in the run (what `make demo` shows a new user).
 *
 * The cluster is echo servers, child processes of this one (its own binary, /proc/self/exe
 * echo-server), each registered with a short TTL in the embedded dir:// registry of a temporary
 * folder: no daemon. Every scenario starts a fresh cluster under its own registry service name, so
 * no scenario inherits another's dead nodes or suspensions, applies its fault (kill -9, SIGSTOP,
 * injected delays or errors) and loads it with a fixed number of calls per client policy, each
 * row a new client. The figures of each run go into one table, an HTML report with a CDF per
 * scenario, and optionally JSON.
 *
 * No child outlives the demo: children die with it (PR_SET_PDEATHSIG, SIGKILL), and SIGINT or
 * SIGTERM kill them from the handler (async-signal-safe: a fixed pid table and kill(2)) before
 * the demo exits.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ftrpc/ftrpc.h>

#include "cli.h"
#include "demo.h"
#include "load.h"

#define NODES 3
#define MAX_CHILDREN 64
#define SERVICE "example.EchoService"
#define METHOD "Echo"

/* Children alive now, for the signal handler: a slot is a pid or 0. */
static volatile pid_t live_children[MAX_CHILDREN];
static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        pid_t p = live_children[i];
        if (p > 0) {
            kill(p, SIGCONT); /* a stopped child still dies of SIGKILL; this is for waitpid */
            kill(p, SIGKILL);
        }
    }
    got_signal = sig;
    static const char msg[] = "\nftrpc demo: interrupted; the cluster was killed\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
    _exit(128 + sig);
}

typedef struct node {
    pid_t pid; /* 0 when not running */
    char addr[64];
} node;

typedef struct demo {
    char tmp[256];      /* the temporary folder */
    char registry[300]; /* tmp/registry */
    int quick;
    long calls;   /* calls per row */
    double ttl_s; /* of the nodes' registry entries */
    demo_report report;
    node nodes[NODES];
    char service[64]; /* registry name of the current scenario's cluster */
    int scenario_no, scenario_total;
    const char *const *every_node; /* flags every node of the next cluster gets; NULL: none */
} demo;

static void track(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (live_children[i] == 0) {
            live_children[i] = pid;
            return;
        }
    }
}

static void untrack(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (live_children[i] == pid) live_children[i] = 0;
}

static void node_kill(node *n)
{
    if (n->pid <= 0) return;
    kill(n->pid, SIGKILL);
    kill(n->pid, SIGCONT);
    while (waitpid(n->pid, NULL, 0) < 0 && errno == EINTR) {
    }
    untrack(n->pid);
    n->pid = 0;
}

/* Starts one echo server registered under d->service with extra fault flags. 0 or -1. */
static int node_start(demo *d, node *n, double ttl_s, const char *const *extra)
{
    char reg[400], ttl[32], interval[32];
    snprintf(reg, sizeof reg, "dir://%s", d->registry);
    snprintf(ttl, sizeof ttl, "%g", ttl_s);
    snprintf(interval, sizeof interval, "%g", ttl_s / 4);
    const char *argv[32] = {"ftrpc",      "echo-server", "--listen",   "127.0.0.1:0",
                            "--register", reg,           "--service",  d->service,
                            "--ttl",      ttl,           "--interval", interval};
    size_t argc = 12;
    for (size_t i = 0; extra && extra[i] && argc < 31; i++)
        argv[argc++] = extra[i];
    for (size_t i = 0; d->every_node && d->every_node[i] && argc < 31; i++)
        argv[argc++] = d->every_node[i];
    argv[argc] = NULL;
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1); /* the demo died before prctl */
        dup2(fds[1], STDOUT_FILENO);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv("/proc/self/exe", (char *const *)argv);
        _exit(127);
    }
    track(pid);
    if (d->report.npids < sizeof d->report.pids / sizeof d->report.pids[0])
        d->report.pids[d->report.npids++] = pid;
    n->pid = pid;
    close(fds[1]);
    /* "listening on HOST:PORT\n", within 10 s even on a loaded machine */
    char line[72]; /* "listening on " and an address that fits node.addr */
    size_t len = 0;
    int64_t deadline = ft_load_now_ns() + 10000000000LL;
    while (len < sizeof line - 1 && !memchr(line, '\n', len)) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        int left = (int)((deadline - ft_load_now_ns()) / 1000000);
        if (left <= 0 || poll(&p, 1, left) <= 0) break;
        ssize_t r = read(fds[0], line + len, sizeof line - 1 - len);
        if (r <= 0) break;
        len += (size_t)r;
    }
    close(fds[0]);
    line[len] = '\0';
    char *nl = strchr(line, '\n');
    if (!nl || strncmp(line, "listening on ", 13) != 0) {
        fprintf(stderr, "ftrpc demo: an echo server did not start\n");
        node_kill(n);
        return -1;
    }
    *nl = '\0';
    snprintf(n->addr, sizeof n->addr, "%s", line + 13);
    return 0;
}

static void naming_url(const demo *d, char *buf, size_t len)
{
    snprintf(buf, len, "dir://%s?service=%s", d->registry, d->service);
}

/* How many entries the registry lists for the current service; -1 when it cannot be read. */
static int registry_count(const demo *d)
{
    char url[512];
    naming_url(d, url, sizeof url);
    ftrpc_endpoint_list *list;
    if (ftrpc_naming_list(url, &list) != 0) return -1;
    int n = (int)ftrpc_endpoint_list_size(list);
    ftrpc_endpoint_list_free(list);
    return n;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void cluster_stop(demo *d)
{
    for (int i = 0; i < NODES; i++)
        node_kill(&d->nodes[i]);
}

/* A fresh cluster of NODES echo servers under registry name `name`; node 0 gets `faults`. Waits
 * until the registry lists all of them. */
static int cluster_start(demo *d, const char *name, double ttl_s, const char *const *faults)
{
    snprintf(d->service, sizeof d->service, "%s", name);
    for (int i = 0; i < NODES; i++) {
        if (node_start(d, &d->nodes[i], ttl_s, i == 0 ? faults : NULL) != 0) {
            cluster_stop(d);
            return -1;
        }
    }
    for (int waited = 0; registry_count(d) < NODES; waited += 20) {
        if (waited > 10000) {
            fprintf(stderr, "ftrpc demo: the cluster did not register\n");
            cluster_stop(d);
            return -1;
        }
        sleep_ms(20);
    }
    return 0;
}

/* A client of `url`, or of the current scenario's registry service when url is NULL. */
static int client_new(const demo *d, const char *url_or_null, ftrpc_client_options *o,
                      ftrpc_client **out)
{
    char url[512];
    if (url_or_null)
        snprintf(url, sizeof url, "%s", url_or_null);
    else
        naming_url(d, url, sizeof url);
    if (o->timeout_ms == 0) o->timeout_ms = 1000;
    int rc = ftrpc_client_new(url, o, out);
    if (rc != 0) fprintf(stderr, "ftrpc demo: client for %s: %s\n", url, ftrpc_strerror(rc));
    return rc;
}

/* A run's fault hook: acts once when `at` calls have completed. */
typedef struct at_call {
    long at;
    int done;
    void (*act)(demo *d, const ft_load_stats *s, void *arg);
    demo *d;
    void *arg;
} at_call;

static void at_tick(ft_load *load, const ft_load_stats *s, void *arg)
{
    (void)load;
    at_call *a = arg;
    if (!a || a->done || atomic_load(&s->done) < a->at) return;
    a->done = 1;
    a->act(a->d, s, a->arg);
}

/* Runs `calls` calls (rate 0: closed loop with `in_flight` calls out, 0 meaning 4) against `url`
 * (NULL: the scenario's registry service) and adds the row. NULL on failure. */
static demo_row *run_row_at(demo *d, const char *url, int in_flight, const char *scenario,
                            const char *policy, ftrpc_client_options *o, long calls, double rate,
                            at_call *hook, ft_load_stats *keep)
{
    fprintf(stderr, "  %-22s %-22s ", scenario, policy);
    fflush(stderr);
    ftrpc_client *client = NULL;
    if (client_new(d, url, o, &client) != 0) return NULL;
    ft_load_stats local, *s = keep ? keep : &local;
    if (ft_load_stats_init(s) != 0) {
        ftrpc_client_free(client);
        return NULL;
    }
    ft_load_opts lo = {.client = client,
                       .service = SERVICE,
                       .method = METHOD,
                       .concurrency = rate > 0        ? 64
                                      : in_flight > 0 ? in_flight
                                                      : 4,
                       .latency_from_send = 1,
                       .rate = rate,
                       .count = calls,
                       .payload = 16,
                       .tick = hook ? at_tick : NULL,
                       .tick_arg = hook};
    int rc = ft_load_run(&lo, s);
    ftrpc_client_free(client);
    demo_row *row = rc == 0 ? demo_add_row(&d->report, scenario, policy, s) : NULL;
    if (row)
        fprintf(stderr, "%6.2f%% ok, p99 %.2f ms (%.1f s)\n",
                100.0 * (double)row->ok / (double)(row->calls ? row->calls : 1), row->p99_ms,
                ft_load_elapsed(s));
    if (!keep) ft_load_stats_fini(s);
    return row;
}

static demo_row *run_row(demo *d, const char *scenario, const char *policy, ftrpc_client_options *o,
                         long calls, double rate, at_call *hook, ft_load_stats *keep)
{
    return run_row_at(d, NULL, 0, scenario, policy, o, calls, rate, hook, keep);
}

static void header(demo *d, const char *what)
{
    fprintf(stderr, "[%d/%d] %s\n", ++d->scenario_no, d->scenario_total, what);
}

/* ---- the scenarios ---- */

static double scenario_healthy(demo *d)
{
    header(d, "healthy cluster: the baseline");
    if (cluster_start(d, "healthy", d->ttl_s, NULL) != 0) return -1;
    ft_load_stats s;
    ftrpc_client_options o = {.fail_mode = FTRPC_FAILOVER};
    demo_row *row = run_row(d, "healthy", "failover", &o, d->calls, 0, NULL, &s);
    double p95 = row ? (double)ftrpc_histogram_percentile(s.hist, 0.95) / 1000.0 : -1;
    if (row) snprintf(row->note, sizeof row->note, "3 nodes; p95 %.2f ms", p95);
    if (row) ft_load_stats_fini(&s);
    cluster_stop(d);
    return p95;
}

/* Kills the node that has answered the most calls so far (node 0 if none has). Not a fixed node:
 * p2c sends next to nothing to the costliest of three equal nodes (it wins no draw), so a fixed
 * victim may be one that gets no call after its death, and failfast would then lose none. */
static void act_kill_busiest(demo *d, const ft_load_stats *s, void *arg)
{
    (void)arg;
    int victim = 0;
    long most = -1;
    for (int i = 0; i < NODES; i++) {
        long n = d->nodes[i].pid > 0 ? ft_load_answers_from(s, d->nodes[i].addr) : -1;
        if (n > most) {
            most = n;
            victim = i;
        }
    }
    node_kill(&d->nodes[victim]);
}

/* Share of a run's answers that came from `addr`, in percent. */
static double answer_share(const ft_load_stats *s, const char *addr)
{
    long ok = atomic_load(&s->ok);
    return ok ? 100.0 * (double)ft_load_answers_from(s, addr) / (double)ok : 0;
}

static void failures_note(demo_row *row, const char *prefix)
{
    long failed = row->calls - row->ok;
    if (failed)
        snprintf(row->note, sizeof row->note, "%s%ld calls failed (%s)", prefix, failed,
                 row->errors);
    else
        snprintf(row->note, sizeof row->note, "%sno call failed; %ld retries", prefix,
                 row->retries);
}

static int scenario_killed(demo *d)
{
    header(d, "the busiest node killed (kill -9) after 30% of the calls");
    static const struct {
        const char *name;
        ftrpc_fail_mode mode;
    } modes[] = {{"failfast", FTRPC_FAILFAST}, {"failover", FTRPC_FAILOVER}};
    /* Paced over a few seconds, as a service's steady traffic: the dead node's suspension ends
     * (1 s, then 2 s) within the run, and what each probe costs shows. */
    double rate = (double)d->calls / (d->quick ? 1.5 : 3.0);
    for (size_t i = 0; i < 2; i++) {
        char name[64];
        snprintf(name, sizeof name, "killed-%s", modes[i].name);
        if (cluster_start(d, name, d->ttl_s, NULL) != 0) return -1;
        at_call hook = {.at = d->calls * 3 / 10, .act = act_kill_busiest, .d = d};
        ftrpc_client_options o = {.fail_mode = modes[i].mode};
        demo_row *row = run_row(d, "node killed", modes[i].name, &o, d->calls, rate, &hook, NULL);
        if (row) failures_note(row, "");
        cluster_stop(d);
        if (!row) return -1;
    }
    return 0;
}

/* Kills (kill -9) the first 7 of the 10 nodes in `arg` (a node[10]). */
static void act_kill_seven(demo *d, const ft_load_stats *s, void *arg)
{
    (void)d;
    (void)s;
    node *nodes = arg;
    for (int i = 0; i < 7; i++)
        node_kill(&nodes[i]);
}

/* 7 of 10 nodes killed at once (issue #20, point 4): their ports refuse, and a refused connect
 * suspends its node past the ejection cap (which keeps half of a service in rotation for
 * timeouts and errors), so failover sends every call to the 3 left; each refused request is
 * re-sent at once to another node, free of the retry budget. A cluster of its own, ten nodes with
 * a long registry TTL, so that the dead stay listed for the whole run as a static list would keep
 * them. */
static int scenario_seven_of_ten_killed(demo *d)
{
    enum { N = 10 };
    header(d, "7 of 10 nodes killed (kill -9) after 30% of the calls");
    static const struct {
        const char *name;
        ftrpc_fail_mode mode;
    } modes[] = {{"failfast", FTRPC_FAILFAST}, {"failover", FTRPC_FAILOVER}};
    double rate = (double)d->calls / (d->quick ? 1.5 : 3.0); /* probes at 1 s and 3 s show */
    for (size_t m = 0; m < 2; m++) {
        node nodes[N] = {{0}};
        snprintf(d->service, sizeof d->service, "seven-of-ten-%s", modes[m].name);
        int rc = 0;
        for (int i = 0; i < N && rc == 0; i++)
            rc = node_start(d, &nodes[i], 60, NULL);
        for (int waited = 0; rc == 0 && registry_count(d) < N; waited += 20) {
            if (waited > 10000) {
                fprintf(stderr, "ftrpc demo: the cluster did not register\n");
                rc = -1;
            }
            sleep_ms(20);
        }
        demo_row *row = NULL;
        if (rc == 0) {
            at_call hook = {.at = d->calls * 3 / 10, .act = act_kill_seven, .d = d, .arg = nodes};
            ftrpc_client_options o = {.fail_mode = modes[m].mode};
            row = run_row(d, "7 of 10 killed", modes[m].name, &o, d->calls, rate, &hook, NULL);
        }
        if (row)
            snprintf(row->note, sizeof row->note,
                     "%ld ok + %ld failed = %ld calls%s%s; %ld retries", row->ok,
                     row->calls - row->ok, row->calls, row->errors[0] ? ": " : "", row->errors,
                     row->retries);
        for (int i = 0; i < N; i++)
            node_kill(&nodes[i]);
        if (!row) return -1;
    }
    return 0;
}

static int scenario_frozen(demo *d)
{
    header(d, "one node frozen (SIGSTOP), 50 ms attempt timeout, then thawed (SIGCONT)");
    /* A long TTL here: a frozen server cannot refresh its entry, and this scenario is about
     * endpoint health, not about the registry. */
    if (cluster_start(d, "frozen", 30, NULL) != 0) return -1;
    kill(d->nodes[0].pid, SIGSTOP);
    /* Short suspensions so the thaw shows within the run: 300 ms, doubling up to 1.2 s. */
    /* Round robin: p2c's peak-EWMA latency would remember the timeouts for seconds and keep the
     * thawed node nearly idle, which hides the recovery this scenario is about. */
    ftrpc_client_options o = {
        .fail_mode = FTRPC_FAILOVER,
        .lb = "rr",
        .attempt_timeout_ms = 50,
        .health = {.initial_suspension_ms = 300, .maximum_suspension_ms = 1200}};
    /* One client for the three phases, so its endpoint health carries over. */
    char url[512];
    naming_url(d, url, sizeof url);
    o.timeout_ms = 1000;
    ftrpc_client *client = NULL;
    int rc = ftrpc_client_new(url, &o, &client);
    if (rc != 0) {
        cluster_stop(d);
        return -1;
    }
    static const char *const phases[] = {"frozen: first calls", "frozen: later calls",
                                         "after SIGCONT"};
    long counts[] = {60, d->calls, d->calls};
    for (int p = 0; p < 3; p++) {
        if (p == 2) kill(d->nodes[0].pid, SIGCONT);
        fprintf(stderr, "  %-22s %-22s ", "node frozen", phases[p]);
        ft_load_stats s;
        if (ft_load_stats_init(&s) != 0) break;
        /* The thaw phase is paced over ~2.5 s so that the node's suspension can end inside it. */
        double rate = p == 2 ? (double)counts[p] / (d->quick ? 1.5 : 2.5) : 0;
        ft_load_opts lo = {.client = client,
                           .service = SERVICE,
                           .method = METHOD,
                           .concurrency = rate > 0 ? 64 : 4,
                           .latency_from_send = 1,
                           .rate = rate,
                           .count = counts[p],
                           .payload = 16};
        ft_load_run(&lo, &s);
        demo_row *row = demo_add_row(&d->report, "node frozen", phases[p], &s);
        if (row) {
            if (p < 2) {
                /* Every retry here follows an attempt that hit the 50 ms attempt timeout on the
                 * frozen node: the only fault of the scenario. (Counting calls slower than 50 ms
                 * would also count a loaded machine's scheduling stalls.) */
                snprintf(row->note, sizeof row->note,
                         "%ld calls paid the 50 ms attempt timeout, then failed over",
                         row->retries);
            } else {
                int64_t first = -1;
                for (size_t k = 0; k < s.nendpoints; k++)
                    if (!strcmp(s.endpoints[k].addr, d->nodes[0].addr))
                        first = s.endpoints[k].first_ms;
                if (first >= 0)
                    snprintf(row->note, sizeof row->note,
                             "thawed node answers again %lld ms after SIGCONT (%.0f%% of answers)",
                             (long long)first, answer_share(&s, d->nodes[0].addr));
                else
                    snprintf(row->note, sizeof row->note,
                             "the thawed node was not used again within the phase");
            }
            fprintf(stderr, "%6.2f%% ok, p99 %.2f ms; %s\n",
                    100.0 * (double)row->ok / (double)(row->calls ? row->calls : 1), row->p99_ms,
                    row->note);
        }
        ft_load_stats_fini(&s);
    }
    ftrpc_client_free(client);
    cluster_stop(d);
    return 0;
}

static int scenario_slow(demo *d, double healthy_p95_ms)
{
    header(d, "one node slow on 5% of calls (50 ms): backup requests");
    static const char *const faults[] = {"--delay-ms", "50", "--delay-rate", "0.05", NULL};
    if (cluster_start(d, "slow", d->ttl_s, faults) != 0) return -1;
    /* Round robin, so the slow node gets its third of the calls: p2c would steer around it while
     * it holds a delayed call and hide part of the problem the backups are here to show. */
    int backup_ms = (int)ceil(healthy_p95_ms > 0 ? healthy_p95_ms : 1);
    if (backup_ms < 1) backup_ms = 1;
    long calls = d->quick ? 4000 : 2 * d->calls; /* p99 of a 1.7% tail needs enough calls */
    for (int k = 0; k < 4; k++) {
        ftrpc_client_options o = {.lb = "rr", .fail_mode = FTRPC_FAILOVER};
        ftrpc_backup_policy *policy = NULL;
        char policy_name[64];
        if (k == 0) {
            snprintf(policy_name, sizeof policy_name, "no backup");
        } else {
            o.fail_mode = FTRPC_FAILBACKUP;
            o.backup_request_ms = backup_ms;
            if (k == 1) snprintf(policy_name, sizeof policy_name, "backup at %d ms", backup_ms);
            if (k == 2) {
                ftrpc_backup_policy_ratelimited_options ro = {.backup_request_ms = backup_ms,
                                                              .max_backup_ratio = 0.1};
                ftrpc_backup_policy_ratelimited_new(&ro, &policy);
                snprintf(policy_name, sizeof policy_name, "rate-limited 10%%");
            }
            if (k == 3) {
                /* refreshed often and from fewer samples than the defaults (500 ms, 100): a
                 * demo run lasts about a second */
                ftrpc_backup_policy_adaptive_options ao = {.refresh_ms = 100, .min_samples = 50};
                ftrpc_backup_policy_adaptive_new(&ao, &policy);
                snprintf(policy_name, sizeof policy_name, "adaptive (p95)");
            }
            o.backup_policy = policy;
        }
        demo_row *row = run_row(d, "slow node", policy_name, &o, calls, 0, NULL, NULL);
        ftrpc_backup_policy_free(policy);
        if (!row) {
            cluster_stop(d);
            return -1;
        }
        if (k == 0)
            snprintf(row->note, sizeof row->note, "%llu calls took >= 50 ms",
                     (unsigned long long)ftrpc_histogram_count_at_least(row->hist, 50000));
        else
            snprintf(row->note, sizeof row->note, "%ld backups sent, %ld won; %llu calls >= 50 ms",
                     row->backups, row->backup_wins,
                     (unsigned long long)ftrpc_histogram_count_at_least(row->hist, 50000));
    }
    cluster_stop(d);
    return 0;
}

static int scenario_flaky(demo *d)
{
    header(d, "one flaky node: half of its calls fail (EINTERNAL)");
    static const char *const faults[] = {"--error-rate", "0.5", "--error-code", "2001", NULL};
    if (cluster_start(d, "flaky", d->ttl_s, faults) != 0) return -1;
    /* The first two rows keep the breaker out of the way (it trips at 100% errors only), so the
     * flaky node keeps its third of the calls and the retry policies alone make the difference;
     * the third shows a breaker steering calls away. It trips at 30% errors there: at the default
     * 50%, a node failing half its calls sits right at the threshold and trips or not by chance. */
    static const struct {
        const char *name;
        ftrpc_fail_mode mode;
        double breaker;
    } modes[] = {{"failtry, no breaker", FTRPC_FAILTRY, 1.0},
                 {"failover, no breaker", FTRPC_FAILOVER, 1.0},
                 {"failover, breaker 30%", FTRPC_FAILOVER, 0.3}};
    for (size_t i = 0; i < 3; i++) {
        ftrpc_client_options o = {.fail_mode = modes[i].mode,
                                  .lb = "rr",
                                  .health = {.breaker_error_ratio = modes[i].breaker}};
        ft_load_stats s;
        demo_row *row = run_row(d, "flaky node", modes[i].name, &o, d->calls, 0, NULL, &s);
        if (!row) {
            cluster_stop(d);
            return -1;
        }
        /* the flaky node's share of the answers shows the breaker steering calls away */
        char prefix[96];
        snprintf(prefix, sizeof prefix, "flaky node gave %.0f%% of answers; ",
                 answer_share(&s, d->nodes[0].addr));
        failures_note(row, prefix);
        /* The client's retry budget (defaults: 20% of the calls of the last 10 s, plus 10 a
         * second) caps retries: say so when a run used it up, since it explains the failures. */
        long retries = row->retries;
        double budget = 0.2 * (double)row->calls + 10 * 10;
        size_t len = strlen(row->note);
        if ((double)retries >= budget - 5 && len < sizeof row->note)
            snprintf(row->note + len, sizeof row->note - len, "; retry budget spent (%ld retries)",
                     retries);
        ft_load_stats_fini(&s);
    }
    cluster_stop(d);
    return 0;
}

/* A flash crowd (docs/overload.md): every node's handler holds one of 2 workers for 5 ms, so the
 * cluster serves NODES x 400 calls/s; 30% of that first (the limiter learns the no-load latency),
 * then 3x for 2 s (1 s with --quick), without and with the adaptive limiter. The breaker trips only
 * at 100% errors, as in bench/overload.c: it counts ELIMIT as a failure. */
static int scenario_flash_crowd(demo *d)
{
    header(d, "flash crowd: 3x capacity on 5 ms handlers, 2 workers a node");
    const double capacity = NODES * 2 * 1000.0 / 5;
    for (int limited = 0; limited < 2; limited++) {
        const char *const flags[] = {
            "--workers",         "--worker-threads",        "2", "--work-ms", "5",
            "--max-concurrency", limited ? "auto" : "none", NULL};
        d->every_node = flags;
        int rc = cluster_start(d, limited ? "crowd-auto" : "crowd", d->ttl_s, NULL);
        d->every_node = NULL;
        if (rc != 0) return -1;
        ftrpc_client_options o = {.lb = "rr", .health = {.breaker_error_ratio = 1}};
        ftrpc_client *client = NULL;
        ft_load_stats warm;
        rc = client_new(d, NULL, &o, &client);
        if (rc == 0 && ft_load_stats_init(&warm) == 0) {
            ft_load_opts lo = {.client = client,
                               .service = SERVICE,
                               .method = METHOD,
                               .concurrency = 64,
                               .rate = 0.3 * capacity,
                               .duration_s = 1.5,
                               .payload = 16};
            rc = ft_load_run(&lo, &warm);
            ft_load_stats_fini(&warm);
        }
        ftrpc_client_free(client);
        ftrpc_client_options co = {.lb = "rr", .health = {.breaker_error_ratio = 1}};
        long calls = (long)(3 * capacity * (d->quick ? 1 : 2));
        ft_load_stats s;
        demo_row *row = rc == 0 ? run_row(d, "flash crowd", limited ? "auto limiter" : "no limiter",
                                          &co, calls, 3 * capacity, NULL, &s)
                                : NULL;
        if (!row) {
            cluster_stop(d);
            return -1;
        }
        double span = ft_load_elapsed(&s);
        double goodput = span > 0 ? (double)row->ok / span : 0;
        snprintf(row->note, sizeof row->note,
                 "goodput %.0f/s = %.0f%% of capacity (%.0f/s); served p99 %.1f ms", goodput,
                 100 * goodput / capacity, capacity,
                 (double)ftrpc_histogram_percentile(s.ok_hist, 0.99) / 1000);
        ft_load_stats_fini(&s);
        cluster_stop(d);
    }
    return 0;
}

static int scenario_expiry(demo *d)
{
    char what[128];
    snprintf(what, sizeof what, "a crashed node's registry entry expires (TTL %g s)", d->ttl_s);
    header(d, what);
    if (cluster_start(d, "expiry", d->ttl_s, NULL) != 0) return -1;
    int before = registry_count(d);
    int64_t t0 = ft_load_now_ns();
    node_kill(&d->nodes[0]);
    int after = before;
    d->report.expiry_s = -1;
    while (ft_load_now_ns() - t0 < (int64_t)(d->ttl_s * 3 * 1e9)) {
        after = registry_count(d);
        if (after >= 0 && after < before) {
            d->report.expiry_s = (double)(ft_load_now_ns() - t0) / 1e9;
            break;
        }
        sleep_ms(50);
    }
    if (d->report.expiry_s >= 0)
        fprintf(stderr, "  registry ls: %d entries -> %d, %.2f s after kill -9 (TTL %g s)\n",
                before, after, d->report.expiry_s, d->ttl_s);
    else
        fprintf(stderr, "  registry ls: still %d entries after %g s\n", after, 3 * d->ttl_s);
    /* With the dead entry gone, even failfast no longer meets the dead node. */
    ftrpc_client_options o = {.fail_mode = FTRPC_FAILFAST};
    demo_row *row = run_row(d, "entry expired", "failfast", &o, d->calls, 0, NULL, NULL);
    if (row) {
        if (d->report.expiry_s >= 0)
            snprintf(row->note, sizeof row->note,
                     "registry: %d -> %d entries %.1f s after kill -9 (TTL %g s)", before, after,
                     d->report.expiry_s, d->ttl_s);
        else
            snprintf(row->note, sizeof row->note, "registry still lists %d entries", after);
    }
    cluster_stop(d);
    return row ? 0 : -1;
}

static void fallback_default(const ftrpc_fallback_input *in, ftrpc_fallback_output *out, void *arg)
{
    (void)in;
    (void)arg;
    out->response = ftrpc_buf_new();
    if (out->response) ftrpc_buf_append(out->response, "default", 7);
}

static int scenario_outage(demo *d)
{
    header(d, "total outage (every node killed): a fallback answers \"default\"");
    if (cluster_start(d, "outage", d->ttl_s, NULL) != 0) return -1;
    cluster_stop(d);
    long calls = d->calls / 2;
    for (int k = 0; k < 2; k++) {
        ftrpc_client_options o = {.fail_mode = FTRPC_FAILOVER, .timeout_ms = 200};
        if (k == 1)
            o.fallback = (ftrpc_fallback){.kind = FTRPC_FALLBACK_ERRORS, .fn = fallback_default};
        demo_row *row = run_row(d, "total outage", k ? "fallback \"default\"" : "no fallback", &o,
                                calls, 0, NULL, NULL);
        if (!row) return -1;
        snprintf(row->note, sizeof row->note, "%ld answers from the fallback", row->fallbacks);
    }
    return 0;
}

/* ---- `ftrpc demo --wso2`: a WSO2 failover group, its primary's states as they change ---- */

typedef struct wso2_watch {
    ftrpc_client *client;
    const char *primary;
    int64_t t0;
    atomic_int stop;
    pthread_t thread;
} wso2_watch;

static double since_s(int64_t t0)
{
    return (double)(ft_load_now_ns() - t0) / 1e9;
}

/* Polls the primary's state every millisecond and prints each change, with the suspension's
 * length when it enters SUSPENDED (read at once, so a few ms short at most). */
static void *wso2_watch_run(void *arg)
{
    wso2_watch *w = arg;
    static const char *const NAMES[] = {"ACTIVE", "TIMEOUT", "SUSPENDED", "PROBING", "OFF"};
    int last = -1;
    while (!atomic_load(&w->stop)) {
        int64_t left = 0;
        int st = ftrpc_client_endpoint_state(w->client, w->primary, &left);
        if (st >= 0 && st <= 4 && st != last) {
            if (st == FTRPC_ENDPOINT_SUSPENDED)
                printf("  %6.3f s  primary SUSPENDED (for %lld ms)\n", since_s(w->t0),
                       (long long)left);
            else if (st == FTRPC_ENDPOINT_TIMEOUT)
                printf("  %6.3f s  primary TIMEOUT (retried in %lld ms)\n", since_s(w->t0),
                       (long long)left);
            else
                printf("  %6.3f s  primary %s\n", since_s(w->t0), NAMES[st]);
            fflush(stdout);
            last = st;
        }
        sleep_ms(1);
    }
    return NULL;
}

/* Calls every 10 ms for `ms` (or, with until_primary, until the primary answers again, at most
 * `ms`); prints who answered. */
static void wso2_phase(ftrpc_client *client, const char *primary, int ms, int until_primary,
                       int64_t t0)
{
    long calls = 0, by_primary = 0, failed = 0, max_attempts = 0;
    int64_t end = ft_load_now_ns() + (int64_t)ms * 1000000;
    while (ft_load_now_ns() < end) {
        ftrpc_result r;
        int rc = ftrpc_call(client, SERVICE, METHOD, NULL, NULL, NULL, &r);
        calls++;
        failed += rc != 0;
        by_primary += rc == 0 && strcmp(r.endpoint, primary) == 0;
        if (r.attempts > max_attempts) max_attempts = r.attempts;
        ftrpc_result_fini(&r);
        if (until_primary && by_primary > 0) break;
        sleep_ms(10);
    }
    sleep_ms(5); /* the watcher prints the state change the last call caused first */
    printf("  %6.3f s  %ld calls: %ld by the primary, %ld by the secondary, %ld failed; at most "
           "%ld attempts a call\n",
           since_s(t0), calls, by_primary, calls - by_primary - failed, failed, max_attempts);
}

static int scenario_wso2(demo *d)
{
    snprintf(d->service, sizeof d->service, "wso2");
    node *primary = &d->nodes[0], *secondary = &d->nodes[1];
    if (node_start(d, primary, d->ttl_s, NULL) != 0 || node_start(d, secondary, d->ttl_s, NULL))
        return -1;
    char url[160];
    snprintf(url, sizeof url, "list://%s,%s", primary->addr, secondary->addr);
    /* WSO2's example 1, its durations halved: markForSuspension retriesBeforeSuspension 2,
     * retryDelay 100; suspendOnFailure initialDuration 500, progressionFactor 2 */
    ftrpc_client_options o = {.lb = "priority", .timeout_ms = 2000, .attempt_timeout_ms = 100};
    ftrpc_health_options_wso2(&o.health);
    o.health.retries_before_suspension = 2;
    o.health.retry_delay_ms = 100;
    o.health.initial_suspension_ms = 500;
    o.health.progression_factor = 2;
    o.health.maximum_suspension_ms = 4000;
    ftrpc_client *client = NULL;
    int rc = ftrpc_client_new(url, &o, &client);
    if (rc != 0) {
        fprintf(stderr, "ftrpc demo: client for %s: %s\n", url, ftrpc_strerror(rc));
        return -1;
    }
    printf("WSO2 failover group: primary %s, secondary %s; the WSO2 profile with\n"
           "  retriesBeforeSuspension 2, retryDelay 100 ms, initialDuration 500 ms, "
           "progressionFactor 2;\n"
           "  attempt timeout 100 ms; one call every 10 ms\n",
           primary->addr, secondary->addr);
    wso2_watch w = {.client = client, .primary = primary->addr, .t0 = ft_load_now_ns()};
    atomic_init(&w.stop, 0);
    pthread_create(&w.thread, NULL, wso2_watch_run, &w);
    wso2_phase(client, primary->addr, 500, 0, w.t0);
    printf("  %6.3f s  primary frozen (SIGSTOP): its attempts time out\n", since_s(w.t0));
    kill(primary->pid, SIGSTOP);
    wso2_phase(client, primary->addr, 3000, 0, w.t0);
    printf("  %6.3f s  primary thawed (SIGCONT)\n", since_s(w.t0));
    kill(primary->pid, SIGCONT);
    wso2_phase(client, primary->addr, 5000, 1, w.t0);
    wso2_phase(client, primary->addr, 300, 0, w.t0);
    atomic_store(&w.stop, 1);
    pthread_join(w.thread, NULL);
    ftrpc_client_free(client);
    cluster_stop(d);
    return 0;
}

/* ---- the command ---- */

/* ---- tied requests against backup requests, on servers that queue work ---- */

/* Holds the server's one worker for 5 ms, as work that occupies a thread does (not a timer), so
 * that requests queue behind it. Long against the few hundred µs a "started" notice and its cancel
 * take on a loaded machine: the window in which both copies of a tied call start. */
static void queued_work(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    sleep_ms(5);
    ftrpc_server_call_reply(call, ftrpc_server_call_request(call),
                            ftrpc_server_call_attachment(call));
}

typedef struct queued_cluster {
    ftrpc_server *servers[NODES];
    char url[256];
} queued_cluster;

static void queued_cluster_stop(queued_cluster *q)
{
    for (int i = 0; i < NODES; i++) {
        if (!q->servers[i]) continue;
        ftrpc_server_stop(q->servers[i], 2000);
        ftrpc_server_free(q->servers[i]);
        q->servers[i] = NULL;
    }
}

/* NODES servers in this process (the scenario counts their handler runs), one worker each. */
static int queued_cluster_start(queued_cluster *q)
{
    memset(q, 0, sizeof *q);
    size_t off = (size_t)snprintf(q->url, sizeof q->url, "list://");
    ftrpc_method_options mo = {.run_mode = FTRPC_RUN_IN_WORKER};
    for (int i = 0; i < NODES; i++) {
        ftrpc_server_options so = {.worker_threads = 1};
        int rc = ftrpc_server_new(&so, &q->servers[i]);
        if (rc == 0)
            rc = ftrpc_server_add_method(q->servers[i], SERVICE, METHOD, queued_work, NULL, &mo);
        if (rc == 0) rc = ftrpc_server_start(q->servers[i], "127.0.0.1:0");
        if (rc != 0) {
            fprintf(stderr, "ftrpc demo: in-process server: %s\n", ftrpc_strerror(rc));
            queued_cluster_stop(q);
            return -1;
        }
        off += (size_t)snprintf(q->url + off, sizeof q->url - off, "%s127.0.0.1:%d", i ? "," : "",
                                ftrpc_server_port(q->servers[i]));
    }
    return 0;
}

/* Handler runs and cancelled-while-queued skips over the cluster, once no call is in flight
 * there (the losers' cancels have landed; bounded). */
static void queued_cluster_counts(queued_cluster *q, long long *executed, long long *skipped)
{
    *executed = *skipped = 0;
    for (int i = 0; i < NODES; i++) {
        ftrpc_method_stats st = {0};
        for (int tries = 0; tries < 500; tries++) {
            ftrpc_server_method_stats(q->servers[i], SERVICE, METHOD, &st);
            if (st.concurrency == 0) break;
            sleep_ms(2);
        }
        *executed += st.calls;
        *skipped += st.canceled_unstarted;
    }
}

static int scenario_tied(demo *d)
{
    header(d, "servers that queue work (1 worker, 5 ms a call): tied requests vs backups");
    queued_cluster q;
    if (queued_cluster_start(&q) != 0) return -1;
    long calls = d->quick ? 500 : d->calls / 5;
    long long before = 0, skipped_before = 0;
    static const char *const names[] = {"no backup", "backup at 1 ms", "tied",
                                        "tied, twin at 1 ms"};
    for (int k = 0; k < 4; k++) {
        ftrpc_client_options o = {.lb = "rr"};
        const char *name = names[k];
        if (k == 1 || k == 3) o.backup_request_ms = 1; /* k 3: the paper's small delay */
        if (k >= 2) o.tied = 1;
        /* 12 calls out over 3 workers: queues of about 4 (8 copies for tied and backups) */
        demo_row *row = run_row_at(d, q.url, 12, "queued servers", name, &o, calls, 0, NULL, NULL);
        if (!row) {
            queued_cluster_stop(&q);
            return -1;
        }
        long long executed, skipped;
        queued_cluster_counts(&q, &executed, &skipped);
        row->executed_per_call = row->calls ? (double)(executed - before) / (double)row->calls : 0;
        snprintf(row->note, sizeof row->note,
                 "%.3f handler runs a call; %lld copies skipped once cancelled",
                 row->executed_per_call, skipped - skipped_before);
        before = executed;
        skipped_before = skipped;
    }
    queued_cluster_stop(&q);
    return 0;
}

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: ftrpc demo [--quick] [--calls N] [--report FILE.html] [--json FILE] [--verbose]\n\n"
        "Starts a local cluster of echo servers (child processes registered in a dir://\n"
        "registry in a temporary folder) and plays fault scenarios against it: healthy, a\n"
        "node killed, a node frozen, a slow node, a flaky node, a registry entry expiring,\n"
        "a total outage with a fallback. Prints one table, writes an HTML report with a\n"
        "latency CDF per scenario and prints its path. About 20 s; leaves no process.\n\n"
        "  --quick          fewer calls per row (about 10 s)\n"
        "  --calls N        calls per row (default 5000; --quick 1000)\n"
        "  --report FILE    the HTML report's path (default: in the temporary folder)\n"
        "  --json FILE      also write the figures as JSON\n"
        "  --verbose        show the library's warnings (connection refused, ...)\n"
        "  --wso2           only a WSO2 failover group (primary, secondary) in the WSO2\n"
        "                   profile: the primary's Timeout, growing suspensions and return\n"
        "                   (docs/endpoint-health.md); about 5 s, no table or report\n");
}

static void remove_tree(const char *path)
{
    DIR *dir = opendir(path);
    if (dir) {
        struct dirent *e;
        while ((e = readdir(dir)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char child[600];
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            unlink(child);
        }
        closedir(dir);
    }
    rmdir(path);
}

int ft_cli_demo(int argc, char **argv)
{
    static const struct option opts[] = {
        {"quick", no_argument, 0, 'q'},      {"report", required_argument, 0, 'r'},
        {"json", required_argument, 0, 'j'}, {"calls", required_argument, 0, 'n'},
        {"verbose", no_argument, 0, 'v'},    {"wso2", no_argument, 0, 'w'},
        {"help", no_argument, 0, 'h'},       {0, 0, 0, 0}};
    const char *report_path = NULL, *json_path = NULL;
    int quick = 0, verbose = 0, wso2 = 0, c;
    long calls = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'q':
            quick = 1;
            break;
        case 'r':
            report_path = optarg;
            break;
        case 'j':
            json_path = optarg;
            break;
        case 'v':
            verbose = 1;
            break;
        case 'w':
            wso2 = 1;
            break;
        case 'n':
            if (ft_cli_parse_int("--calls", optarg, 100, 1000000, &calls)) return 2;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (ft_cli_no_stray_args("demo", argc, argv, optind)) return 2;
    /* opened before the run, so that a path that cannot be written costs no run */
    FILE *html_file = NULL, *json_file = NULL;
    if (report_path && !(html_file = ft_cli_open_output("demo", "--report", report_path))) return 2;
    if (json_path && !(json_file = ft_cli_open_output("demo", "--json", json_path))) {
        if (html_file) fclose(html_file);
        return 2;
    }
    demo *d = calloc(1, sizeof *d);
    const char *base = getenv("TMPDIR");
    if (d) snprintf(d->tmp, sizeof d->tmp, "%s/ftrpc-demo-XXXXXX", base && *base ? base : "/tmp");
    if (!d || !mkdtemp(d->tmp)) {
        if (d) fprintf(stderr, "ftrpc demo: cannot make a temporary folder: %s\n", strerror(errno));
        if (html_file) fclose(html_file);
        if (json_file) fclose(json_file);
        free(d);
        return 1;
    }
    d->quick = quick;
    d->calls = calls ? calls : quick ? 1000 : 5000;
    d->ttl_s = 2;
    d->report.quick = quick;
    d->report.ttl_s = d->ttl_s;
    d->scenario_total = 10;
    snprintf(d->registry, sizeof d->registry, "%s/registry", d->tmp);
    mkdir(d->registry, 0700);

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (!verbose) ftrpc_log_set_level(FTRPC_LOG_OFF); /* refused connections are the point here */

    if (wso2) {
        int wrc = scenario_wso2(d);
        remove_tree(d->registry);
        if (html_file) fclose(html_file);
        if (json_file) fclose(json_file);
        rmdir(d->tmp);
        demo_report_fini(&d->report);
        free(d);
        return wrc == 0 ? 0 : 1;
    }

    time_t now = time(NULL);
    strftime(d->report.started_at, sizeof d->report.started_at, "%Y-%m-%d %H:%M:%S UTC",
             gmtime(&now));
    gethostname(d->report.host, sizeof d->report.host - 1);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    fprintf(stderr,
            "ftrpc demo: %d echo servers per scenario, registered in dir://%s (TTL %g s); "
            "%ld calls per row, 4 in flight; %ld CPUs\n",
            NODES, d->registry, d->ttl_s, d->calls, cpus);
    int64_t t0 = ft_load_now_ns();
    int rc = 0;
    double p95 = scenario_healthy(d);
    if (p95 < 0) rc = -1;
    if (rc == 0) rc = scenario_killed(d);
    if (rc == 0) rc = scenario_seven_of_ten_killed(d);
    if (rc == 0) rc = scenario_frozen(d);
    if (rc == 0) rc = scenario_slow(d, p95);
    if (rc == 0) rc = scenario_flaky(d);
    if (rc == 0) rc = scenario_expiry(d);
    if (rc == 0) rc = scenario_outage(d);
    if (rc == 0) rc = scenario_flash_crowd(d);
    if (rc == 0) rc = scenario_tied(d);
    cluster_stop(d);
    d->report.elapsed_s = (double)(ft_load_now_ns() - t0) / 1e9;
    remove_tree(d->registry);

    char html[600];
    if (report_path)
        snprintf(html, sizeof html, "%s", report_path);
    else
        snprintf(html, sizeof html, "%s/report.html", d->tmp);
    int status = rc == 0 ? 0 : 1;
    printf("\n");
    demo_print_table(stdout, &d->report);
    printf("\nextra = requests beyond one per call (retries and backups). %.1f s in all.\n",
           d->report.elapsed_s);
    /* the default report goes to the temporary folder made above */
    if (!html_file) html_file = ft_cli_open_output("demo", "the report", html);
    if (html_file) demo_write_html(html_file, &d->report);
    if (html_file && ft_cli_close_output("demo", html_file, html) == 0)
        printf("report: %s\n", html);
    else
        status = 1;
    if (json_file) {
        demo_write_json(json_file, &d->report, html);
        if (ft_cli_close_output("demo", json_file, json_path)) status = 1;
    }
    /* Without --report the temporary folder keeps the report; with it, it is empty now. */
    if (report_path) rmdir(d->tmp);
    if (rc != 0) fprintf(stderr, "ftrpc demo: a scenario could not run (see above)\n");
    demo_report_fini(&d->report);
    free(d);
    return status;
}
