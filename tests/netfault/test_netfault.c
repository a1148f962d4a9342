/* Faults between hosts: what a partition, a black hole, a stalled link or a registry member cut
 * off from its peers does to calls under load, and that ftrpc notices and routes around each one.
 *
 * Every chaos test before this one killed or froze processes behind 127.0.0.1, where a dead peer
 * answers with a RST at once. Here the hosts are loopback addresses of a private network
 * namespace (netfault_rig.h): the servers run on 127.0.0.2-4 as their hosts' uids, etcd members on
 * 127.0.0.11-13, the client is this process on 127.0.0.1, and a fault is an nftables rule that
 * drops packets silently, or the fault proxy (fault_proxy.h) on 127.0.0.5. Nothing outside the
 * namespace is ever addressed.
 *
 * Each scenario keeps 16 calls in flight through a failover client (attempt timeout 100 ms, x3
 * under ASan; deadline 2 s) and accounts for every call at the end: client side, every issued call
 * completed exactly once and none failed after the fault was detected; server side, each server
 * stopped with SIGTERM says how many requests it answered (--stats-on-exit), at least the OK calls
 * the client got from it, and the surplus over all servers is at most the client's extra
 * attempts. Each prints "NETFAULT| scenario | calls | ok | errors | max attempts | detected ms |
 * avoided ms |" for `make chaos-net`'s table.
 *
 * Short form (CTest, label netfault, well under a minute); long form (NETFAULT_LONG=1,
 * `make chaos-net`): longer faults and more calls. If the namespace cannot be made (not root, no
 * nft), the test fails and says why. Every wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "client/client_internal.h"
#include "fault_proxy.h"
#include "harness.h"
#include "netfault_rig.h"
#ifdef FTRPC_NETFAULT_ETCD
#include "etcd_fixture.h"
#include "naming/etcd_json.h"
#endif

#if defined(__SANITIZE_ADDRESS__)
#define SLOW 3
#else
#define SLOW 1
#endif

enum { NSRV = 3, ATTEMPT_MS = 100 * SLOW, DEADLINE_MS = 2000, TTL_S = 3 };

static struct {
    int longf;
    int blackhole_ms, stall_ms, phase_ms;
} P;

static char scratch_dir[512];

/* ---- what the client logs: when a connection was found dead ---- */

static struct {
    pthread_mutex_t lock;
    char addr[64];   /* the peer watched for */
    int64_t dead_ms; /* h_now_ms of its first "is dead" line since the watch began; 0: none */
    int dead_lines;
} LOGW = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* "moving the watch" lines of the watch test's etcd:// watch (prefix /nfw/) */
static struct {
    pthread_mutex_t lock;
    int moved;
    int late; /* "counted as a registry outage": a read slower than half the TTL */
} WATCHLOG = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void log_sink(ftrpc_log_level level, const char *msg, void *arg)
{
    (void)level;
    (void)arg;
    fprintf(stderr, "ftrpc: %s\n", msg);
    pthread_mutex_lock(&LOGW.lock);
    if (strstr(msg, "moving the watch of /nfw/") || strstr(msg, "counted as a registry outage")) {
        pthread_mutex_lock(&WATCHLOG.lock);
        if (strstr(msg, "moving the watch of /nfw/")) WATCHLOG.moved++;
        if (strstr(msg, "counted as a registry outage")) WATCHLOG.late++;
        pthread_mutex_unlock(&WATCHLOG.lock);
    }
    if (LOGW.addr[0] && strstr(msg, " is dead") && strstr(msg, LOGW.addr)) {
        if (!LOGW.dead_ms) LOGW.dead_ms = h_now_ms();
        LOGW.dead_lines++;
    }
    pthread_mutex_unlock(&LOGW.lock);
}

static void watch_dead(const char *addr)
{
    pthread_mutex_lock(&LOGW.lock);
    snprintf(LOGW.addr, sizeof LOGW.addr, "%s", addr);
    LOGW.dead_ms = 0;
    LOGW.dead_lines = 0;
    pthread_mutex_unlock(&LOGW.lock);
}

static int64_t dead_at_ms(void)
{
    pthread_mutex_lock(&LOGW.lock);
    int64_t t = LOGW.dead_ms;
    pthread_mutex_unlock(&LOGW.lock);
    return t;
}

/* ---- the client's view, read as a call reads it ---- */

/* 1 when the balancers may pick addr now, 0 when health keeps calls away from it, -1 when the
 * client does not list it. */
static int endpoint_usable(ftrpc_client *c, const char *addr)
{
    ft_cluster *cl = ft_client_cluster_acquire(c);
    int usable = -1;
    for (size_t i = 0; i < cl->n; i++)
        if (!strcmp(cl->eps[i]->name, addr))
            usable = ft_health_usable(&cl->eps[i]->health, ft_now_ns());
    ft_cluster_release(cl);
    return usable;
}

static int view_size(ftrpc_client *c)
{
    ft_cluster *cl = ft_client_cluster_acquire(c);
    int n = (int)cl->n;
    ft_cluster_release(cl);
    return n;
}

/* ---- servers on their hosts ---- */

typedef struct fleet {
    h_server srv[NSRV];
    char addr[NSRV][64]; /* where the client reaches each one (the proxy, for a proxied one) */
    int host[NSRV];
} fleet;

/* Server i on host 2 + i, as that host's uid, with extra args (NULL-terminated, may be NULL). */
static void fleet_start(fleet *f, const char *const *extra)
{
    for (int i = 0; i < NSRV; i++) {
        const char *args[16] = {"--stats-on-exit"};
        int n = 1;
        for (int k = 0; extra && extra[k] && n < 15; k++)
            args[n++] = extra[k];
        args[n] = NULL;
        char listen[64];
        f->host[i] = 2 + i;
        snprintf(listen, sizeof listen, "127.0.0.%d:0", f->host[i]);
        h_children_run_as(NF_HOST_UID(f->host[i]));
        int rc = h_server_start_at(&f->srv[i], listen, args);
        h_children_run_as(0);
        assert_int_equal(rc, 0);
        snprintf(f->addr[i], sizeof f->addr[i], "127.0.0.%d:%d", f->host[i], f->srv[i].port);
    }
}

/* Round robin: every server keeps its share of the calls through each fault, so that each fault
 * meets calls and every server answers after a heal. p2c, the default, rightly shuns a server
 * that answered slowly or timed out, for as long as its latency figure takes to decay (seconds),
 * and a fault could then meet no call at all: that is the balancer's business, not this test's. */
static ftrpc_client *client_new(const char *url)
{
    ftrpc_client_options o = {
        .fail_mode = FTRPC_FAILOVER,
        .timeout_ms = DEADLINE_MS,
        .attempt_timeout_ms = ATTEMPT_MS,
        .lb = "rr",
        /* back soon after a heal: suspensions of 1, 2, 2, ... s; and a
         * healthy server that missed an attempt timeout on the loaded
         * machine does not take the one suspension slot of three */
        .health = {.maximum_suspension_ms = 2000, .max_suspended_ratio = 0.67}};
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(url, &o, &c), 0);
    return c;
}

static void wait_answered_by(h_load *l, int ep, int n, int timeout_ms)
{
    int since = atomic_load(&l->answered[ep]);
    if (!h_load_wait_answered(l, ep, since, n, timeout_ms))
        fail_msg("server %d did not answer %d more calls within %d ms", ep, n, timeout_ms);
}

/* A client of url (NULL: list:// of the fleet's addresses) with 16 calls in flight, once every
 * server has answered 50 of them. */
static ftrpc_client *load_start(h_load *l, const fleet *f, const char *url)
{
    char list[256];
    snprintf(list, sizeof list, "list://%s,%s,%s", f->addr[0], f->addr[1], f->addr[2]);
    ftrpc_client *c = client_new(url ? url : list);
    memset(l, 0, sizeof *l);
    l->client = c;
    l->window = 16;
    l->pace_us = P.longf ? 200 : 400;
    l->max_calls = 1000000;
    for (int i = 0; i < NSRV; i++)
        l->endpoints[i] = f->addr[i];
    l->nendpoints = NSRV;
    assert_int_equal(h_load_start(l), 0);
    for (int i = 0; i < NSRV; i++)
        wait_answered_by(l, i, 50, 10000 * SLOW);
    return c;
}

/* Runs the load on for ms, checking every millisecond when the endpoint addr stops being
 * usable: the first time into *avoided_ms (if still 0). view_min (may be NULL) gets the smallest
 * view seen. */
static void run_for(h_load *l, int ms, const char *addr, int64_t *avoided_ms, int *view_min)
{
    int64_t until = h_now_ms() + ms;
    while (h_now_ms() < until) {
        if (addr && avoided_ms && !*avoided_ms && endpoint_usable(l->client, addr) == 0)
            *avoided_ms = h_now_ms();
        if (view_min) {
            int n = view_size(l->client);
            if (n < *view_min) *view_min = n;
        }
        h_sleep_ms(1);
    }
}

typedef struct outcome {
    const char *name;
    int64_t fault_us;    /* when the fault began (h_now_us) */
    int64_t detected_ms; /* after the fault began: the connection found dead; -1: not needed */
    int64_t avoided_ms;  /* after the fault began: health kept calls away; -1: not measured */
} outcome;

/* Stops the load and the client, then checks both sides of the ledger (see the top). */
static void account(h_load *l, ftrpc_client *c, fleet *f, const outcome *o)
{
    assert_true(h_load_stop(l, 10000 * SLOW));
    ftrpc_client_free(c);
    h_load_tally all, after;
    h_load_tally_get(l, 0, INT64_MAX, &all);
    /* "after detection": calls issued once the fault was found (or, without a detection to wait
     * for, from the start) */
    int64_t from = o->detected_ms >= 0 ? o->fault_us + o->detected_ms * 1000 : 0;
    h_load_tally_get(l, from, INT64_MAX, &after);
    int64_t p99 = h_load_latency_quantile(l, 0, INT64_MAX, 0.99, NULL);
    printf("NETFAULT| %-34s | %7d | %7d | %6d | %12d | %11lld | %10lld | %6.1f |\n", o->name,
           all.calls, all.ok, all.errors, all.max_attempts, (long long)o->detected_ms,
           (long long)o->avoided_ms, (double)p99 / 1000.0);
    fflush(stdout);
    if (all.errors)
        print_message("%s: %d errors, %d of them after detection; first: %s\n", o->name, all.errors,
                      after.errors, ftrpc_err_name(atomic_load(&l->first_fail_code)));
    assert_int_equal(all.lost, 0);
    assert_int_equal(all.duplicates, 0);
    assert_int_equal(all.ok + all.errors, all.calls);
    assert_int_equal(after.errors, 0);
    long surplus = 0, answered_total = 0;
    for (int i = 0; i < NSRV; i++) {
        long answered = h_server_stop_answered(&f->srv[i], 10000 * SLOW);
        int ok_here = atomic_load(&l->answered[i]);
        print_message("%s: server %d (%s) answered %ld, the client got %d OK from it\n", o->name, i,
                      f->addr[i], answered, ok_here);
        assert_true(ok_here > 0);
        assert_true(answered >= ok_here);
        surplus += answered - ok_here;
        answered_total += answered;
    }
    long extra = all.attempts - all.ok;
    print_message("%s: %d calls, %d ok, %d errors; %ld attempts, %ld extra; servers answered %ld, "
                  "%ld more than the OK calls they served\n",
                  o->name, all.calls, all.ok, all.errors, all.attempts, extra, answered_total,
                  surplus);
    assert_true(surplus <= extra);
    h_load_fini(l);
}

/* ---- black hole ---- */

/* Host 2 drops off the network: every packet to or from it vanishes, nothing answers. */
static void
blackholed_server_is_found_dead_within_attempt_timeout_plus_1s_and_used_after_heal(void **state)
{
    (void)state;
    static fleet f;
    fleet_start(&f, NULL);
    static h_load l;
    ftrpc_client *c = load_start(&l, &f, NULL);

    outcome o = {.name = "black hole, 1 of 3 servers"};
    watch_dead(f.addr[0]);
    int cut = nf_cut_add("127.0.0.2", NULL);
    assert_true(cut >= 0);
    /* timed from when nft has committed the rule (it runs for tens of milliseconds) */
    int64_t t0 = h_now_ms(), avoided = 0;
    o.fault_us = h_now_us();
    run_for(&l, P.blackhole_ms, f.addr[0], &avoided, NULL);
    assert_int_equal(nf_cut_remove(cut), 0);
    int64_t healed = h_now_ms();
    wait_answered_by(&l, 0, 50, 10000 * SLOW);
    print_message("black hole: used again %lld ms after the heal\n",
                  (long long)(h_now_ms() - healed));
    int64_t dead = dead_at_ms();
    o.detected_ms = dead ? dead - t0 : -1;
    o.avoided_ms = avoided ? avoided - t0 : -1;
    print_message("black hole: connection found dead after %lld ms, endpoint avoided after %lld ms "
                  "(bound: attempt timeout %d ms + 1 s)\n",
                  (long long)o.detected_ms, (long long)o.avoided_ms, ATTEMPT_MS);
    if (!dead) fail_msg("the client never found its connection to %s dead", f.addr[0]);
    assert_true(o.detected_ms <= ATTEMPT_MS + 1000);
    assert_true(o.avoided_ms >= 0 && o.avoided_ms <= ATTEMPT_MS + 1000);
    account(&l, c, &f, &o);
}

/* A connect to a host that drops everything fails within connect_timeout_ms (a refused one,
 * with a RST, at once). */
static void connect_to_blackholed_host_fails_within_connect_timeout(void **state)
{
    (void)state;
    ftrpc_client_options o = {.fail_mode = FTRPC_FAILFAST,
                              .timeout_ms = 3000,
                              .connect_timeout_ms = 200,
                              .retries = FTRPC_NO_RETRY};
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new("list://127.0.0.6:7000", &o, &c), 0);
    ftrpc_result r;
    int rc = ftrpc_call(c, "example.EchoService", "Echo", NULL, NULL, NULL, &r);
    print_message("nothing listening, no cut: %s after %lld us\n", ftrpc_err_name(rc),
                  (long long)r.latency_us);
    assert_int_equal(rc, FTRPC_ECONNREFUSED);
    ftrpc_result_fini(&r);
    int cut = nf_cut_add("127.0.0.6", NULL);
    assert_true(cut >= 0);
    rc = ftrpc_call(c, "example.EchoService", "Echo", NULL, NULL, NULL, &r);
    print_message("black-holed host: %s after %lld us (connect_timeout_ms 200)\n",
                  ftrpc_err_name(rc), (long long)r.latency_us);
    assert_int_equal(rc, FTRPC_ECONNECT);
    assert_true(r.latency_us >= 190 * 1000 && r.latency_us <= (200 + 150 * SLOW) * 1000);
    ftrpc_result_fini(&r);
    nf_cut_remove(cut);
    ftrpc_client_free(c);
}

/* ---- the fault proxy: latency, slow link, resets, stall ---- */

static void proxied_server_survives_latency_slow_link_resets_and_a_stall(void **state)
{
    (void)state;
    static fleet f;
    fleet_start(&f, NULL);
    nf_proxy *px = NULL;
    assert_int_equal(nf_proxy_start("127.0.0.5", f.addr[2], &px), 0);
    snprintf(f.addr[2], sizeof f.addr[2], "127.0.0.5:%d", nf_proxy_port(px));
    static h_load l;
    ftrpc_client *c = load_start(&l, &f, NULL);

    /* 20 ms each way: slower, never failing */
    nf_proxy_set_delay_ms(px, 20);
    run_for(&l, P.phase_ms, NULL, NULL, NULL);
    nf_proxy_set_delay_ms(px, 0);
    /* a slow link: 4 KB/s each way */
    nf_proxy_set_rate(px, 4096);
    run_for(&l, P.phase_ms, NULL, NULL, NULL);
    nf_proxy_set_rate(px, 0);
    wait_answered_by(&l, 2, 20, 10000 * SLOW);
    /* every connection through it reset: the attempts on them are retried elsewhere */
    nf_proxy_reset_all(px);
    wait_answered_by(&l, 2, 50, 10000 * SLOW);

    /* a stall: the link stops forwarding but every TCP connection stays up */
    outcome o = {.name = "proxy: latency, slow, reset, stall"};
    watch_dead(f.addr[2]);
    int64_t t0 = h_now_ms(), avoided = 0;
    o.fault_us = h_now_us();
    nf_proxy_set_stall(px, 1);
    run_for(&l, P.stall_ms, f.addr[2], &avoided, NULL);
    nf_proxy_set_stall(px, 0);
    wait_answered_by(&l, 2, 50, 10000 * SLOW);
    int64_t dead = dead_at_ms();
    o.detected_ms = dead ? dead - t0 : -1;
    o.avoided_ms = avoided ? avoided - t0 : -1;
    print_message("stall: connection found dead after %lld ms, endpoint avoided after %lld ms; "
                  "the proxy accepted %lld connections in all\n",
                  (long long)o.detected_ms, (long long)o.avoided_ms,
                  (long long)nf_proxy_accepted(px));
    if (!dead) fail_msg("the client never found its connection through the stalled proxy dead");
    assert_true(o.detected_ms <= ATTEMPT_MS + 1000);
    assert_true(o.avoided_ms >= 0 && o.avoided_ms <= ATTEMPT_MS + 1000);
    account(&l, c, &f, &o);
    nf_proxy_stop(px);
}

/* ---- etcd as a cluster ---- */

#ifdef FTRPC_NETFAULT_ETCD

enum { NMEMBERS = 3, MEMBER_HOST0 = 11 };
static h_etcd M[NMEMBERS];

static void member_addr(int i, char *buf, size_t len)
{
    nf_host_addr(MEMBER_HOST0 + i, buf, len);
}

/* The value of "name":"..." in json (the first), into out; 0 or -1. */
static int json_str(const char *json, const char *name, char *out, size_t len)
{
    char key[64];
    snprintf(key, sizeof key, "\"%s\":\"", name);
    const char *p = json ? strstr(json, key) : NULL;
    if (!p) return -1;
    p += strlen(key);
    const char *e = strchr(p, '"');
    if (!e || (size_t)(e - p) >= len) return -1;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = '\0';
    return 0;
}

/* The index of the member that leads, as the running members see it; -1: none. */
static int leader(void)
{
    for (int i = 0; i < NMEMBERS; i++) {
        if (M[i].pid <= 0) continue;
        char *st = h_etcd_post(&M[i], "/v3/maintenance/status", "{}");
        char me[32], lead[32];
        int is = st && json_str(st, "member_id", me, sizeof me) == 0 &&
                 json_str(st, "leader", lead, sizeof lead) == 0 && !strcmp(me, lead);
        free(st);
        if (is) return i;
    }
    return -1;
}

/* Keys under the service's prefix, read from member i; -1 when it does not answer. */
static int keys_on(int i)
{
    const char *prefix = "/nf/example.EchoService/";
    char end[128];
    ft_etcd_prefix_end(prefix, end, sizeof end);
    char *req = ft_etcd_req_range(prefix, end, true, 0);
    char *ans = req ? h_etcd_post(&M[i], "/v3/kv/range", req) : NULL;
    free(req);
    ft_etcd_range_info info;
    ft_endpoint_list none = {0};
    int n = ans && ft_etcd_parse_range(ans, strlen(ans), prefix, &none, &info, NULL) == 0
                ? (int)info.count
                : -1;
    ft_endpoint_list_fini(&none);
    free(ans);
    return n;
}

/* Keys under the service's prefix as the first running member to answer says, retried for up to
 * 5 s: right after a member cut off from its peers comes back, its higher term forces an election,
 * and reads wait for it. -1 when none answered. */
static int keys(void)
{
    int64_t until = h_now_ms() + 5000;
    do {
        for (int i = 0; i < NMEMBERS; i++) {
            int n = M[i].pid > 0 ? keys_on(i) : -1;
            if (n >= 0) return n;
        }
        h_sleep_ms(50);
    } while (h_now_ms() < until);
    return -1;
}

/* The member that this namespace's etcd clients (the client's watch, the registrars) hold the
 * most connections to: the one a partition hurts most. */
static int busiest_member(void)
{
    int count[NMEMBERS] = {0};
    FILE *fp = fopen("/proc/net/tcp", "r");
    char line[512];
    while (fp && fgets(line, sizeof line, fp)) {
        unsigned lip, lport, rip, rport, st;
        if (sscanf(line, " %*d: %x:%x %x:%x %x", &lip, &lport, &rip, &rport, &st) != 5) continue;
        for (int i = 0; i < NMEMBERS; i++) /* 127.0.0.N in /proc's byte order is 0x0N00007f */
            if (st == 1 && rport == 2379 && rip == ((unsigned)(MEMBER_HOST0 + i) << 24 | 0x7f))
                count[i]++;
    }
    if (fp) fclose(fp);
    int best = 0;
    for (int i = 1; i < NMEMBERS; i++)
        if (count[i] > count[best]) best = i;
    print_message("etcd: connections to the members' client port: %d, %d, %d\n", count[0], count[1],
                  count[2]);
    return best;
}

/* Starts every member not running (all of them at first; a member killed by an earlier test
 * rejoins with its data) and waits until each serves. */
static void cluster_up(void)
{
    char cluster[512] = "";
    for (int i = 0; i < NMEMBERS; i++) {
        char a[32];
        member_addr(i, a, sizeof a);
        size_t cl = strlen(cluster);
        snprintf(cluster + cl, sizeof cluster - cl, "%sm%d=http://%s:2380", i ? "," : "", i, a);
    }
    for (int i = 0; i < NMEMBERS; i++) {
        if (M[i].pid > 0) continue;
        if (!M[i].bin[0]) {
            char dir[540], a[32], name[8];
            snprintf(dir, sizeof dir, "%s/m%d", scratch_dir, i);
            snprintf(name, sizeof name, "m%d", i);
            member_addr(i, a, sizeof a);
            if (h_etcd_init_member(&M[i], dir, a, name, cluster, NF_HOST_UID(MEMBER_HOST0 + i)) !=
                0)
                fail_msg("etcd is not installed, or its folder cannot be made (see above)");
        }
        assert_int_equal(h_etcd_spawn(&M[i]), 0);
    }
    for (int i = 0; i < NMEMBERS; i++)
        if (h_etcd_wait_healthy(&M[i]) != 0) {
            h_etcd_dump_log(&M[i]);
            fail_msg("etcd member %d did not become healthy", i);
        }
}

/* "m0:2379,m1:2379,m2:2379" */
static void member_hosts(char *buf, size_t len)
{
    buf[0] = '\0';
    for (int i = 0; i < NMEMBERS; i++) {
        char a[32];
        member_addr(i, a, sizeof a);
        size_t ul = strlen(buf);
        snprintf(buf + ul, len - ul, "%s%s:2379", i ? "," : "", a);
    }
}

static int leases_lost(fleet *f)
{
    int n = 0;
    for (int i = 0; i < NSRV; i++)
        n += h_server_stderr_count(&f->srv[i], "is gone (expired or lost)");
    return n;
}

/* The etcd cluster up, the fleet registered on it (TTL_S, refresh every 0.5 s), and a client of
 * etcd:// under load once every server answers. */
static ftrpc_client *etcd_fleet_start(fleet *f, h_load *l)
{
    char urlhosts[256];
    member_hosts(urlhosts, sizeof urlhosts);
    cluster_up();
    char reg[400], curl_[400], ttl[8];
    snprintf(reg, sizeof reg, "etcd://%s/nf", urlhosts);
    snprintf(curl_, sizeof curl_, "etcd://%s/nf?service=example.EchoService", urlhosts);
    snprintf(ttl, sizeof ttl, "%d", TTL_S);
    const char *args[] = {"--register", reg,   "--service", "example.EchoService", "--ttl", ttl,
                          "--interval", "0.5", NULL};
    fleet_start(f, args);
    ftrpc_client *c = load_start(l, f, curl_);
    assert_int_equal(view_size(c), NSRV);
    return c;
}

static void
etcd_cluster_keeps_view_and_leases_through_leader_kill_member_cut_and_partition(void **state)
{
    (void)state;
    static fleet f;
    static h_load l;
    ftrpc_client *c = etcd_fleet_start(&f, &l);
    outcome o = {.name = "etcd: leader kill, cut, partition",
                 .detected_ms = -1,
                 .avoided_ms = -1,
                 .fault_us = h_now_us()};

    /* 1. the leader killed: a new one is elected, leases carry over */
    int lead = leader();
    assert_true(lead >= 0);
    print_message("etcd: killing the leader, member %d\n", lead);
    h_etcd_kill(&M[lead]);
    int view_min = NSRV;
    run_for(&l, (TTL_S + 1) * 1000, NULL, NULL, &view_min);
    int nkeys = keys();
    print_message("etcd: after the leader's death: leader %d, %d keys, smallest view %d, "
                  "leases lost %d\n",
                  leader(), nkeys, view_min, leases_lost(&f));
    assert_int_equal(view_min, NSRV);
    assert_int_equal(nkeys, NSRV);
    assert_int_equal(leases_lost(&f), 0);
    if (h_etcd_start(&M[lead]) != 0) {
        h_etcd_dump_log(&M[lead]);
        fail_msg("etcd member %d did not rejoin", lead);
    }

    /* 2. the member the clients use most cut off from its peers (its clients still reach it) */
    int cut_m = busiest_member();
    char a[32], peers[64] = "";
    member_addr(cut_m, a, sizeof a);
    for (int i = 0, n = 0; i < NMEMBERS; i++) {
        if (i == cut_m) continue;
        char b[32];
        member_addr(i, b, sizeof b);
        size_t pl = strlen(peers);
        snprintf(peers + pl, sizeof peers - pl, "%s%s", n++ ? ", " : "", b);
    }
    print_message("etcd: cutting member %d (%s) off from %s\n", cut_m, a, peers);
    int cut = nf_cut_add(a, peers);
    assert_true(cut >= 0);
    run_for(&l, (TTL_S + 1) * 1000, NULL, NULL, &view_min);
    int majority = (cut_m + 1) % NMEMBERS;
    nkeys = keys_on(majority);
    print_message("etcd: with member %d cut off: %d keys on member %d, smallest view %d, leases "
                  "lost %d\n",
                  cut_m, nkeys, majority, view_min, leases_lost(&f));
    assert_int_equal(nf_cut_remove(cut), 0);
    assert_int_equal(view_min, NSRV);
    assert_int_equal(nkeys, NSRV);
    assert_int_equal(leases_lost(&f), 0);

    /* 3. the registry partitioned away from the client for longer than the TTL (its servers still
     * reach it and keep their leases): the client serves the view it had, and reads again after */
    ft_naming_view_stats before, after;
    ft_naming_view_stats_get(c->view, &before);
    cut = nf_cut_add("127.0.0.11, 127.0.0.12, 127.0.0.13", "127.0.0.1");
    assert_true(cut >= 0);
    run_for(&l, (TTL_S + 2) * 1000, NULL, NULL, &view_min);
    ft_naming_view_stats_get(c->view, &after);
    print_message("etcd: registry partitioned from the client for %d s: smallest view %d, %llu "
                  "good reads during it\n",
                  TTL_S + 2, view_min, (unsigned long long)(after.updates - before.updates));
    assert_int_equal(view_min, NSRV);
    assert_int_equal(nf_cut_remove(cut), 0);
    int64_t healed = h_now_ms();
    ft_naming_view_stats_get(c->view, &before);
    do
        run_for(&l, 50, NULL, NULL, &view_min);
    while (ft_naming_view_stats_get(c->view, &after),
           after.updates == before.updates && h_now_ms() < healed + 15000);
    int64_t read_again = h_now_ms() - healed;
    nkeys = keys();
    print_message("etcd: after the heal: the client read the registry again after %lld ms; %d "
                  "keys, smallest view %d, leases lost %d\n",
                  (long long)read_again, nkeys, view_min, leases_lost(&f));
    assert_true(after.updates > before.updates);
    assert_int_equal(view_min, NSRV);
    assert_int_equal(view_size(c), NSRV);
    assert_int_equal(nkeys, NSRV);
    assert_int_equal(leases_lost(&f), 0);
    for (int i = 0; i < NSRV; i++)
        wait_answered_by(&l, i, 50, 10000 * SLOW);
    account(&l, c, &f, &o);
    for (int i = 0; i < NMEMBERS; i++)
        h_etcd_kill(&M[i]);
}

/* The registry cut off from everyone, servers and client alike, for longer than the TTL: etcd
 * expires every lease, and its first answers after the heal list only the servers that have
 * registered again. The client must hear of the outage before those answers (its reads are paced
 * at a third of the TTL, and a late one counts as an outage), so the view holds its endpoints
 * until every server is back: it never shrinks. The cut begins just after a read, as the one that
 * shrank the view in a trial did: with reads only every rescan_ms (5 s) none would meet it. */
static void etcd_cut_off_from_everyone_longer_than_ttl_never_shrinks_the_view(void **state)
{
    (void)state;
    static fleet f;
    static h_load l;
    ftrpc_client *c = etcd_fleet_start(&f, &l);
    outcome o = {.name = "etcd: cut off from everyone > TTL",
                 .detected_ms = -1,
                 .avoided_ms = -1,
                 .fault_us = h_now_us()};
    ft_naming_view_stats before, after;
    ft_naming_view_stats_get(c->view, &before);
    do
        h_sleep_ms(1);
    while (ft_naming_view_stats_get(c->view, &after), after.updates == before.updates);
    before = after;
    int cut = nf_cut_add("127.0.0.11, 127.0.0.12, 127.0.0.13",
                         "127.0.0.1, 127.0.0.2, 127.0.0.3, 127.0.0.4");
    assert_true(cut >= 0);
    int view_min = NSRV;
    int cut_ms = (TTL_S + (P.longf ? 3 : 1)) * 1000;
    run_for(&l, cut_ms, NULL, NULL, &view_min);
    assert_int_equal(nf_cut_remove(cut), 0);
    int64_t healed = h_now_ms();
    /* every server registers again (its lease expired), then the view must still be whole for a
     * while: the reads that list the servers one by one come within a TTL */
    int nkeys = -1, again = 0;
    do {
        run_for(&l, 100, NULL, NULL, &view_min);
        again = 0;
        for (int i = 0; i < NSRV; i++)
            again += h_server_stderr_count(&f.srv[i], "registered again") > 0;
    } while (again < NSRV && h_now_ms() < healed + 15000);
    int64_t back_ms = h_now_ms() - healed;
    run_for(&l, TTL_S * 1000, NULL, NULL, &view_min);
    nkeys = keys();
    ft_naming_view_stats_get(c->view, &after);
    print_message(
        "etcd: cut off from everyone for %d ms: %d of %d servers registered again "
        "within %lld ms of the heal, %d keys, smallest view %d, outages the view heard of "
        "%llu\n",
        cut_ms, again, NSRV, (long long)back_ms, nkeys, view_min,
        (unsigned long long)(after.errors - before.errors));
    assert_int_equal(again, NSRV); /* the leases did expire: the fault was played */
    assert_int_equal(view_min, NSRV);
    assert_int_equal(view_size(c), NSRV);
    assert_int_equal(nkeys, NSRV);
    for (int i = 0; i < NSRV; i++)
        wait_answered_by(&l, i, 50, 10000 * SLOW);
    account(&l, c, &f, &o);
    for (int i = 0; i < NMEMBERS; i++)
        h_etcd_kill(&M[i]);
}

static int watch_moved(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&WATCHLOG.lock);
    int n = WATCHLOG.moved;
    pthread_mutex_unlock(&WATCHLOG.lock);
    return n > 0;
}

struct view_has {
    ft_naming_view *v;
    size_t n;
};

static int view_has(void *arg)
{
    struct view_has *w = arg;
    ft_naming_snapshot *s = ft_naming_view_get(w->v);
    int ok = s->n == w->n;
    ft_naming_snapshot_release(s);
    return ok;
}

/* Puts a service's key for addr, its value saying ttl_ms (0: none), straight to a member. */
static void put_key_ttl(int member, const char *dir, const char *addr, int64_t ttl_ms)
{
    char key[128], value[256];
    snprintf(key, sizeof key, "%s%s", dir, addr);
    ft_endpoint ep = {.weight = 100, .ttl_ms = ttl_ms};
    snprintf(ep.addr, sizeof ep.addr, "%s", addr);
    assert_true(ft_etcd_value_format(&ep, value, sizeof value) > 0);
    char *req = ft_etcd_req_put(key, value, 0);
    char *ans = h_etcd_post(&M[member], "/v3/kv/put", req);
    free(req);
    assert_non_null(ans);
    free(ans);
}

static void put_key(int member, const char *addr)
{
    put_key_ttl(member, "/nfw/w/", addr, 0);
}

static int late_reads(void)
{
    pthread_mutex_lock(&WATCHLOG.lock);
    int n = WATCHLOG.late;
    pthread_mutex_unlock(&WATCHLOG.lock);
    return n;
}

/* The rule behind the cut-off case above, alone: a read that hangs for more than half the
 * registrations' TTL and then succeeds is told to the view as an outage (an error before its
 * list), and the reads come every third of the TTL, so such a stall meets one. The only etcd
 * endpoint is the fault proxy, stalled 900 ms (TTL 1 s: reads every 333 ms, late past 500 ms),
 * well under the 2 s request timeout: no read fails. */
static void etcd_read_slower_than_half_the_ttl_counts_as_an_outage(void **state)
{
    (void)state;
    cluster_up();
    char m0[32], up[64];
    member_addr(0, m0, sizeof m0);
    snprintf(up, sizeof up, "%s:2379", m0);
    nf_proxy *px = NULL;
    assert_int_equal(nf_proxy_start("127.0.0.5", up, &px), 0);
    char url[256];
    snprintf(url, sizeof url, "etcd://127.0.0.5:%d/nfl?service=l", nf_proxy_port(px));
    put_key_ttl(0, "/nfl/l/", "127.0.0.2:1", 1000);
    ft_naming_view_opts vo = {.rescan_ms = 5000};
    ft_naming_view *v = NULL;
    assert_int_equal(ft_naming_view_open(url, &vo, &v), 0);
    struct view_has w = {v, 1};
    assert_true(h_wait_until(view_has, &w, 5000 * SLOW));
    ft_naming_view_stats before, after;
    ft_naming_view_stats_get(v, &before);
    int late0 = late_reads();
    nf_proxy_set_stall(px, 1);
    h_sleep_ms(900);
    nf_proxy_set_stall(px, 0);
    int64_t t = h_now_ms();
    do
        h_sleep_ms(10);
    while (ft_naming_view_stats_get(v, &after),
           after.errors == before.errors && h_now_ms() < t + 2000 * SLOW);
    print_message("etcd: a 900 ms stall under a 1 s TTL: %llu outages told to the view, %d late "
                  "reads logged, %llu good reads\n",
                  (unsigned long long)(after.errors - before.errors), late_reads() - late0,
                  (unsigned long long)(after.updates - before.updates));
    assert_true(after.errors > before.errors);
    assert_true(late_reads() > late0); /* late, not failed */
    assert_true(h_wait_until(view_has, &w, 1000 * SLOW));
    ft_naming_view_free(v);
    nf_proxy_stop(px);
}

/* The client's watch stream sits on a member whose link stalls (the fault proxy in front of it):
 * the stream stays open and silent. The next full read fails over to another member, and the
 * stream follows it there, so changes arrive as events again, not at the next rescan. */
static void etcd_watch_follows_the_member_that_answers_when_its_own_goes_silent(void **state)
{
    (void)state;
    cluster_up();
    char m0[32];
    member_addr(0, m0, sizeof m0);
    char up[64];
    snprintf(up, sizeof up, "%s:2379", m0);
    nf_proxy *px = NULL;
    assert_int_equal(nf_proxy_start("127.0.0.5", up, &px), 0);
    char url[256], m1[32];
    member_addr(1, m1, sizeof m1);
    snprintf(url, sizeof url, "etcd://127.0.0.5:%d,%s:2379/nfw?service=w", nf_proxy_port(px), m1);
    put_key(1, "127.0.0.2:1");
    enum { RESCAN_MS = 3000 };
    ft_naming_view_opts vo = {.rescan_ms = RESCAN_MS};
    ft_naming_view *v = NULL;
    assert_int_equal(ft_naming_view_open(url, &vo, &v), 0);
    struct view_has w = {v, 1};
    assert_true(h_wait_until(view_has, &w, 5000 * SLOW));
    /* the stream is up through the proxy: a change comes as an event */
    put_key(1, "127.0.0.2:2");
    w.n = 2;
    int64_t t = h_now_ms();
    assert_true(h_wait_until(view_has, &w, 1000 * SLOW));
    print_message("etcd watch: a change seen after %lld ms through the proxy\n",
                  (long long)(h_now_ms() - t));

    nf_proxy_set_stall(px, 1);
    t = h_now_ms();
    /* a full read within RESCAN_MS, 2 s on the stalled member, then the next member */
    if (!h_wait_until(watch_moved, NULL, (RESCAN_MS + 4000) * SLOW))
        fail_msg("the watch stayed on the silent member");
    print_message("etcd watch: moved %lld ms after the stall began\n", (long long)(h_now_ms() - t));
    put_key(1, "127.0.0.2:3");
    w.n = 3;
    t = h_now_ms();
    assert_true(h_wait_until(view_has, &w, RESCAN_MS * SLOW));
    int64_t seen = h_now_ms() - t;
    print_message("etcd watch: a change seen after %lld ms on the member it moved to (rescan every "
                  "%d ms)\n",
                  (long long)seen, RESCAN_MS);
    assert_true(seen < 500 * SLOW);
    ft_naming_view_free(v);
    nf_proxy_stop(px);
}

#endif /* FTRPC_NETFAULT_ETCD */

/* ---- set-up ---- */

static int group_setup(void **state)
{
    (void)state;
    if (h_scratch_mkdtemp("netfault", scratch_dir, sizeof scratch_dir) != 0) return -1;
    chmod(scratch_dir, 0755); /* the hosts' uids open their folders below */
    ftrpc_log_set_sink(log_sink, NULL);
    if (getenv("NETFAULT_DEBUG")) ftrpc_log_set_level(FTRPC_LOG_DEBUG);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    nf_cut_clear();
#ifdef FTRPC_NETFAULT_ETCD
    for (int i = 0; i < NMEMBERS; i++)
        h_etcd_kill(&M[i]);
#endif
    ftrpc_log_set_sink(NULL, NULL);
    if (scratch_dir[0]) h_rmtree(scratch_dir);
    return 0;
}

int main(void)
{
    char why[512];
    if (nf_netns_enter(why, sizeof why) != 0) {
        fprintf(stderr, "FAIL: test_netfault: %s\n", why);
        return 1;
    }
    int hosts[] = {2, 3, 4, 5, 6, 11, 12, 13}; /* servers, the proxy, a dead host, etcd members */
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++)
        if (nf_host_add(hosts[i]) != 0) {
            fprintf(stderr, "FAIL: test_netfault: cannot route host %d (output above)\n", hosts[i]);
            return 1;
        }
    P.longf = getenv("NETFAULT_LONG") && atoi(getenv("NETFAULT_LONG")) > 0;
    P.blackhole_ms = P.longf ? 5000 : 2000;
    P.stall_ms = P.longf ? 5000 : 2000;
    P.phase_ms = P.longf ? 3000 : 1000;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (getenv("NETFAULT_ONLY")) cmocka_set_test_filter(getenv("NETFAULT_ONLY"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(connect_to_blackholed_host_fails_within_connect_timeout),
        cmocka_unit_test(
            blackholed_server_is_found_dead_within_attempt_timeout_plus_1s_and_used_after_heal),
        cmocka_unit_test(proxied_server_survives_latency_slow_link_resets_and_a_stall),
#ifdef FTRPC_NETFAULT_ETCD
        cmocka_unit_test(
            etcd_cluster_keeps_view_and_leases_through_leader_kill_member_cut_and_partition),
        cmocka_unit_test(etcd_cut_off_from_everyone_longer_than_ttl_never_shrinks_the_view),
        cmocka_unit_test(etcd_watch_follows_the_member_that_answers_when_its_own_goes_silent),
        cmocka_unit_test(etcd_read_slower_than_half_the_ttl_counts_as_an_outage),
#endif
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
