/* etcd:// against a real etcd (Debian's etcd-server), started by this test on free loopback ports
 * with its data in a temp folder, and killed at the end:
 *   - a registered server is discovered (weight and tags included), through a URL whose first
 *     etcd endpoint is dead (endpoints tried in turn); a clean stop removes it at once;
 *   - a watching view sees registrations and clean stops within 1 s (the rescan period is a
 *     minute, so only the watch stream can be the source);
 *   - a registrar in a child killed with SIGKILL disappears after its lease TTL, not before;
 *   - a lease lost behind the registrar's back is replaced (new lease, key put again), and a key
 *     deleted by hand is put back;
 *   - etcd killed and restarted during a steady watch: the view keeps the last good list all
 *     along, the registrar registers again under a new lease, and the watch sees later changes;
 *   - etcd killed with a stale bound: the bounded view drops the registration once the bound and
 *     the lease's TTL have passed (instance ids and TTLs travel in the value);
 *   - etcd frozen (SIGSTOP) for longer than the lease TTL under a steady load of calls: on waking
 *     it revokes every lease, yet the client keeps both servers, no call fails, and both servers
 *     register again under new leases;
 *   - a watching client frozen while 15,000 changes and a compaction pass resumes on etcd's list.
 * A missing etcd binary FAILS the test with a message (CI installs it: scripts/install-deps.sh
 * --test). Every wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define _XOPEN_SOURCE 700
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/base64.h"
#include "base/strbuf.h"
#include "discovery_util.h"
#include "etcd_fixture.h"
#include "harness.h"
#include "naming/etcd_json.h"
#include "naming/naming_view.h"

/* ---- the etcd under test ---- */

static h_etcd E;
static char E_dir[512];     /* temp folder: data/ and etcd.log */
static char E_url_base[64]; /* "etcd://127.0.0.1:PORT" */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int group_setup(void **state)
{
    (void)state;
    const char *scratch = getenv("FTRPC_SCRATCH");
    char base[400];
    snprintf(base, sizeof base, "%s", scratch && *scratch ? scratch : "/tmp");
    mkdir(base, 0777);
    snprintf(E_dir, sizeof E_dir, "%s/etcd-XXXXXX", base);
    if (!mkdtemp(E_dir) || h_etcd_init(&E, E_dir) != 0) return -1;
    snprintf(E_url_base, sizeof E_url_base, "etcd://127.0.0.1:%d", E.cport);
    if (h_etcd_start(&E) != 0) {
        fprintf(stderr, "FAIL: etcd (%s) did not become healthy on 127.0.0.1:%d\n", E.bin, E.cport);
        h_etcd_dump_log(&E);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    h_etcd_kill(&E);
    if (E_dir[0]) nftw(E_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* ---- helpers ---- */

static ft_registrar *reg_start(const char *service, const char *addr, uint32_t weight,
                               const char *tags, int64_t ttl, int64_t interval)
{
    char url[256];
    snprintf(url, sizeof url, "%s/ftrpc-test?service=%s", E_url_base, service);
    ft_registrar_opts o = {.url = url,
                           .addr = addr,
                           .weight = weight,
                           .tags = tags,
                           .register_ttl_ms = ttl,
                           .register_interval_ms = interval};
    ft_registrar *r = NULL;
    assert_int_equal(ft_registrar_start(&o, &r), 0);
    return r;
}

static ft_naming_view *view_open(const char *service, int64_t rescan_ms)
{
    char url[256];
    snprintf(url, sizeof url, "%s/ftrpc-test?service=%s", E_url_base, service);
    /* empty_grace_ms < 0: an empty answer shows at once, so a wrongly empty list would be seen */
    ft_naming_view_opts vo = {.rescan_ms = rescan_ms, .empty_grace_ms = -1};
    ft_naming_view *v = NULL;
    assert_int_equal(ft_naming_view_open(url, &vo, &v), 0);
    assert_int_equal(ft_naming_view_wait_ready(v, 3000), 0);
    return v;
}

static size_t view_count(ft_naming_view *v)
{
    ft_naming_snapshot *s = ft_naming_view_get(v);
    size_t n = s->n;
    ft_naming_snapshot_release(s);
    return n;
}

/* Waits up to timeout_ms for the view to hold n endpoints; the time it took, or -1. */
static int64_t wait_count(ft_naming_view *v, size_t n, int timeout_ms)
{
    int64_t t0 = h_now_ms();
    while (h_now_ms() - t0 <= timeout_ms) {
        if (view_count(v) == n) return h_now_ms() - t0;
        usleep(5 * 1000);
    }
    return -1;
}

/* The lease a key is bound to (0: no such key, -1: etcd unreachable), read directly. */
static int64_t key_lease(const char *key)
{
    char *req = ft_etcd_req_range(key, NULL, false, 0);
    char *r = h_etcd_post(&E, "/v3/kv/range", req);
    free(req);
    if (!r) return -1;
    int64_t lease = 0;
    json_object *o = json_tokener_parse(r), *kvs, *l;
    if (o && json_object_object_get_ex(o, "kvs", &kvs) && json_object_array_length(kvs) == 1 &&
        json_object_object_get_ex(json_object_array_get_idx(kvs, 0), "lease", &l))
        lease = strtoll(json_object_get_string(l), NULL, 10);
    json_object_put(o);
    free(r);
    return lease;
}

/* ---- tests ---- */

static void registered_server_is_discovered_and_clean_stop_removes_it(void **state)
{
    ft_registrar *r = reg_start("t1.Svc", "127.0.0.1:7001", 50, "blue|v2", 2000, 500);
    assert_int_equal(ft_registrar_status(r), 0);

    /* The first endpoint is dead: the second must answer. */
    char url[256];
    snprintf(url, sizeof url, "etcd://127.0.0.1:%d,127.0.0.1:%d/ftrpc-test?service=t1.Svc",
             h_free_port(), E.cport);
    ft_naming *ns;
    assert_int_equal(ft_naming_open(url, &ns), 0);
    ft_endpoint_list l = {0};
    assert_int_equal(ft_naming_fetch(ns, &l), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.v[0].addr, "127.0.0.1:7001");
    assert_int_equal(l.v[0].weight, 50);
    assert_string_equal(l.v[0].tags, "blue|v2");
    ft_endpoint_list_fini(&l);

    ft_registrar_stop(r); /* revokes the lease: the key goes with it */
    assert_int_equal(ft_naming_fetch(ns, &l), 0);
    assert_int_equal(l.n, 0);
    ft_endpoint_list_fini(&l);
    ft_naming_close(ns);
}

static void watch_sees_registrations_and_stops_within_1s(void **state)
{
    ft_naming_view *v = view_open("t2.Svc", 60000);
    assert_int_equal(view_count(v), 0);
    ft_registrar *a = reg_start("t2.Svc", "127.0.0.1:7101", 0, NULL, 2000, 500);
    int64_t t = wait_count(v, 1, 1000);
    fprintf(stderr, "registration seen after %lld ms\n", (long long)t);
    assert_true(t >= 0);
    ft_registrar *b = reg_start("t2.Svc", "127.0.0.1:7102", 0, NULL, 2000, 500);
    t = wait_count(v, 2, 1000);
    fprintf(stderr, "second registration seen after %lld ms\n", (long long)t);
    assert_true(t >= 0);
    ft_registrar_stop(a);
    t = wait_count(v, 1, 1000);
    fprintf(stderr, "clean stop seen after %lld ms\n", (long long)t);
    assert_true(t >= 0);
    ft_naming_snapshot *s = ft_naming_view_get(v);
    assert_string_equal(s->eps[0].addr, "127.0.0.1:7102");
    ft_naming_snapshot_release(s);
    ft_registrar_stop(b);
    assert_true(wait_count(v, 0, 1000) >= 0);
    ft_naming_view_free(v);
}

static void killed_registrar_disappears_after_its_ttl(void **state)
{
    /* Forked while this process runs no other thread (earlier tests joined theirs). */
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(pfd[0]);
        char url[256];
        snprintf(url, sizeof url, "%s/ftrpc-test?service=t3.Svc", E_url_base);
        ft_registrar_opts o = {.url = url,
                               .addr = "127.0.0.1:7201",
                               .register_ttl_ms = 2000,
                               .register_interval_ms = 500};
        ft_registrar *r;
        char ok = ft_registrar_start(&o, &r) == 0 && ft_registrar_status(r) == 0 ? 'y' : 'n';
        if (write(pfd[1], &ok, 1) != 1) _exit(1);
        for (;;)
            pause();
    }
    close(pfd[1]);
    struct pollfd p = {.fd = pfd[0], .events = POLLIN};
    char ok = 0;
    assert_int_equal(poll(&p, 1, 10000), 1);
    assert_int_equal(read(pfd[0], &ok, 1), 1);
    close(pfd[0]);
    assert_int_equal(ok, 'y');

    ft_naming_view *v = view_open("t3.Svc", 60000);
    assert_true(wait_count(v, 1, 2000) >= 0);
    usleep(700 * 1000); /* let the child keep its lease alive at least once */
    int64_t t0 = h_now_ms();
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    int64_t t = wait_count(v, 0, 6000);
    fprintf(stderr, "killed registrar gone after %lld ms (TTL 2000 ms, interval 500 ms)\n",
            (long long)(t < 0 ? -1 : h_now_ms() - t0));
    assert_true(t >= 0);
    /* Its last keepalive was at most one interval before the kill: the lease had >= 1.5 s left. */
    assert_true(t >= 1000);
    assert_true(t <= 2000 + 2500);
    ft_naming_view_free(v);
}

/* Waits (bounded) until the key is bound to a lease other than `not` (and exists). */
static int64_t wait_new_lease(const char *key, int64_t not, int timeout_ms)
{
    int64_t t0 = h_now_ms();
    while (h_now_ms() - t0 <= timeout_ms) {
        int64_t l = key_lease(key);
        if (l > 0 && l != not ) return l;
        usleep(10 * 1000);
    }
    return -1;
}

static void
registrar_takes_a_new_lease_when_its_lease_is_lost_and_puts_back_a_deleted_key(void **state)
{
    ft_registrar *r = reg_start("t5.Svc", "127.0.0.1:7401", 0, NULL, 2000, 300);
    ft_naming_view *v = view_open("t5.Svc", 60000);
    assert_true(wait_count(v, 1, 1000) >= 0);
    const char *key = "/ftrpc-test/t5.Svc/127.0.0.1:7401";
    int64_t lease0 = key_lease(key);
    assert_true(lease0 > 0);

    /* The lease is lost (revoked behind the registrar's back: as after expiry in a partition):
     * the key goes with it, and the next keepalive answers TTL 0. */
    char *req = ft_etcd_req_lease(lease0);
    free(h_etcd_post(&E, "/v3/lease/revoke", req));
    free(req);
    int64_t lease1 = wait_new_lease(key, lease0, 2000);
    fprintf(stderr, "lease lost: %lld -> %lld\n", (long long)lease0, (long long)lease1);
    assert_true(lease1 > 0);
    assert_true(wait_count(v, 1, 1000) >= 0);

    /* The key is deleted while the lease lives: the registrar puts it back under the same lease. */
    char *k64 = malloc(ft_b64_len(strlen(key)) + 1);
    ft_b64_encode(key, strlen(key), k64);
    char body[256];
    snprintf(body, sizeof body, "{\"key\":\"%s\"}", k64);
    free(k64);
    free(h_etcd_post(&E, "/v3/kv/deleterange", body));
    /* The delete has completed when etcd_post returns: the key reappears only if put back. (The
     * view may show the gap for just a few ms, too briefly to assert on.) */
    int64_t t0 = h_now_ms();
    while (key_lease(key) != lease1 && h_now_ms() - t0 < 2000)
        usleep(10 * 1000);
    assert_int_equal(key_lease(key), lease1);
    assert_true(wait_count(v, 1, 1000) >= 0);

    ft_registrar_stop(r);
    assert_true(wait_count(v, 0, 1000) >= 0);
    ft_naming_view_free(v);
}

typedef struct {
    ft_naming_view *v;
    size_t want;
    int bad_samples;
} sampler;

static void sample(sampler *s)
{
    if (view_count(s->v) != s->want) s->bad_samples++;
}

static void view_survives_etcd_restart_and_registrar_takes_a_new_lease(void **state)
{
    ft_registrar *a = reg_start("t4.Svc", "127.0.0.1:7301", 0, NULL, 2000, 300);
    ft_naming_view *v = view_open("t4.Svc", 60000);
    assert_true(wait_count(v, 1, 1000) >= 0);
    const char *key = "/ftrpc-test/t4.Svc/127.0.0.1:7301";
    int64_t lease0 = key_lease(key);
    assert_true(lease0 > 0);
    uint64_t ok0, failed0;
    ft_registrar_counts(a, &ok0, &failed0);

    sampler s = {.v = v, .want = 1};
    h_etcd_kill(&E);
    int64_t t0 = h_now_ms();
    while (h_now_ms() - t0 < 1500) { /* down for several keepalive intervals */
        sample(&s);
        usleep(20 * 1000);
    }
    ft_naming_view_stats st;
    ft_naming_view_stats_get(v, &st);
    assert_true(st.stale);
    if (h_etcd_start(&E) != 0) {
        h_etcd_dump_log(&E);
        fail_msg("etcd did not come back");
    }
    /* The registrar notices, registers again under a new lease; the view never empties. */
    int64_t lease1 = 0;
    t0 = h_now_ms();
    while (h_now_ms() - t0 < 10000) {
        sample(&s);
        lease1 = key_lease(key);
        if (lease1 > 0 && lease1 != lease0) break;
        usleep(20 * 1000);
    }
    fprintf(stderr, "lease %lld -> %lld\n", (long long)lease0, (long long)lease1);
    assert_true(lease1 > 0 && lease1 != lease0);
    /* The old lease expires (etcd renews leases on restart, then ~TTL): the key must stay. */
    t0 = h_now_ms();
    while (h_now_ms() - t0 < 3500) {
        sample(&s);
        usleep(20 * 1000);
    }
    assert_int_equal(key_lease(key), lease1);
    /* Read after the wait: the put is seen before the registrar's attempt returns and counts. */
    uint64_t ok1, failed1;
    ft_registrar_counts(a, &ok1, &failed1);
    assert_true(failed1 > failed0);
    assert_true(ok1 > ok0);
    assert_int_equal(s.bad_samples, 0);
    ft_naming_view_stats_get(v, &st);
    assert_true(st.errors > 0);
    assert_false(st.stale);

    /* The watch stream is back: a later change shows within 1 s (rescan is a minute). */
    ft_registrar *b = reg_start("t4.Svc", "127.0.0.1:7302", 0, NULL, 2000, 300);
    int64_t t = wait_count(v, 2, 1000);
    fprintf(stderr, "change after restart seen after %lld ms\n", (long long)t);
    assert_true(t >= 0);
    ft_registrar_stop(b);
    assert_true(wait_count(v, 1, 1000) >= 0);
    ft_registrar_stop(a);
    assert_true(wait_count(v, 0, 1000) >= 0);
    ft_naming_view_free(v);
}

/* go-micro's TTL 30 / interval 15 scaled to etcd's shortest lease: TTL 2 s, interval 1 s, with an
 * instance id of the server's choosing. etcd killed: the view with a 1 s stale bound drops the
 * registration once etcd has been unreachable for 1 s and the lease's TTL has passed since etcd
 * last listed it; a view without a bound keeps it. etcd back: the registrar puts the key under a
 * new lease and the bounded view lists it again. */
static void stale_bound_drops_a_registration_whose_lease_ttl_passed_while_etcd_is_down(void **state)
{
    char url[256];
    snprintf(url, sizeof url, "%s/ftrpc-test?service=t5.Svc", E_url_base);
    ft_registrar_opts o = {.url = url,
                           .addr = "127.0.0.1:7401",
                           .register_ttl_ms = 2000,
                           .register_interval_ms = 1000,
                           .id = "micro-e"};
    ft_registrar *a = NULL;
    assert_int_equal(ft_registrar_start(&o, &a), 0);
    assert_string_equal(ft_registrar_id(a), "micro-e");
    ft_naming_view *plain = view_open("t5.Svc", 60000);
    ft_naming_view_opts bo = {.rescan_ms = 60000, .empty_grace_ms = -1, .stale_drop_ms = 1000};
    ft_naming_view *bounded = NULL;
    assert_int_equal(ft_naming_view_open(url, &bo, &bounded), 0);
    assert_int_equal(ft_naming_view_wait_ready(bounded, 3000), 0);
    assert_true(wait_count(bounded, 1, 1000) >= 0);
    assert_true(wait_count(plain, 1, 1000) >= 0);
    ft_naming_snapshot *s = ft_naming_view_get(bounded);
    assert_string_equal(s->eps[0].id, "micro-e");
    assert_int_equal(s->eps[0].ttl_ms, 2000);
    ft_naming_snapshot_release(s);

    h_etcd_kill(&E);
    int64_t t0 = h_now_ms();
    int64_t took = wait_count(bounded, 0, 10000);
    fprintf(stderr, "etcd down: the bounded view emptied after %lld ms\n", (long long)took);
    assert_true(took >= 1000); /* not before the bound */
    assert_int_equal(view_count(plain), 1);
    ft_naming_view_stats st;
    ft_naming_view_stats_get(bounded, &st);
    assert_int_equal(st.stale_dropped, 1);
    assert_true(h_now_ms() - t0 >= 1000);

    if (h_etcd_start(&E) != 0) {
        h_etcd_dump_log(&E);
        fail_msg("etcd did not come back");
    }
    assert_true(wait_count(bounded, 1, 10000) >= 0);
    ft_registrar_stop(a);
    assert_true(wait_count(bounded, 0, 2000) >= 0);
    ft_naming_view_free(bounded);
    ft_naming_view_free(plain);
}

/* etcd frozen (SIGSTOP) for longer than the lease TTL while calls run, then let go (SIGCONT): it
 * answers nothing while frozen (reads and keepalives time out after 2 s), and on waking finds every
 * lease past its TTL and revokes them all; a keepalive then answers "lease not found". One server
 * refreshes every 0.3 s, the other every 1.5 s, so for a while after the wake etcd lists only the
 * first: a list that shrinks without emptying, which only the view's outage hold (15 s after an
 * outage, answers add endpoints but remove none) keeps from dropping the second. Pinned: every call
 * succeeds, the view never loses a server, and both registrars notice the lost lease and register
 * again under a new one within a bounded time. */
static void etcd_frozen_longer_than_the_ttl_keeps_the_view_and_every_call_succeeds(void **state)
{
    (void)state;
    char reg[256], url[300];
    snprintf(reg, sizeof reg, "%s/ftrpc-test", E_url_base);
    snprintf(url, sizeof url, "%s?service=t8.Svc", reg);
    const char *interval[2] = {"0.3", "1.5"};
    h_server s[2];
    char key[2][128];
    int64_t lease0[2];
    for (int i = 0; i < 2; i++) {
        const char *args[] = {"--register", reg,          "--service", "t8.Svc", "--ttl",
                              "2",          "--interval", interval[i], NULL};
        assert_int_equal(h_server_start(&s[i], args), 0);
        snprintf(key[i], sizeof key[i], "/ftrpc-test/t8.Svc/127.0.0.1:%d", s[i].port);
        lease0[i] = key_lease(key[i]);
        assert_true(lease0[i] > 0);
    }
    ftrpc_client *c = NULL;
    ftrpc_client_options o = {.timeout_ms = 1000 * H_VG};
    assert_int_equal(ftrpc_client_new(url, &o, &c), 0);
    int64_t t0 = h_now_ms();
    while (d_view_size(c) != 2 && h_now_ms() - t0 < 3000)
        usleep(5 * 1000);
    assert_int_equal(d_view_size(c), 2);

    int calls = 0, ok = 0, shrunk = 0;
    /* frozen for 3.5 s: past the 2 s TTL of a lease kept alive at most 1.5 s before */
    kill(E.pid, SIGSTOP);
    t0 = h_now_ms();
    while (h_now_ms() - t0 < 3500) {
        calls++;
        ok += d_call(c, NULL, 0) == 0;
        shrunk += d_view_size(c) != 2;
        usleep(2 * 1000);
    }
    ft_naming_view_stats st;
    ft_naming_view_stats_get(c->view, &st);
    assert_true(st.stale);
    kill(E.pid, SIGCONT);
    int64_t lease1[2] = {0, 0}, back_ms = -1;
    t0 = h_now_ms();
    while (h_now_ms() - t0 < 10000 * H_VG) {
        calls++;
        ok += d_call(c, NULL, 0) == 0;
        shrunk += d_view_size(c) != 2;
        for (int i = 0; i < 2; i++)
            lease1[i] = key_lease(key[i]);
        if (back_ms < 0 && lease1[0] > 0 && lease1[0] != lease0[0] && lease1[1] > 0 &&
            lease1[1] != lease0[1])
            back_ms = h_now_ms() - t0;
        if (back_ms >= 0 && h_now_ms() - t0 >= back_ms + 1000) break; /* and a second more */
        usleep(2 * 1000);
    }
    ft_naming_view_stats_get(c->view, &st);
    fprintf(stderr,
            "etcd frozen 3.5 s: %d calls, %d ok; view short of a server in %d samples; both "
            "registered again (new leases) %lld ms after SIGCONT; view errors %llu, stale %d\n",
            calls, ok, shrunk, (long long)back_ms, (unsigned long long)st.errors, (int)st.stale);
    assert_int_equal(ok, calls);
    assert_int_equal(shrunk, 0);
    assert_true(back_ms >= 0);
    assert_true(st.errors > 0);
    assert_false(st.stale);
    ftrpc_client_free(c);
    for (int i = 0; i < 2; i++)
        assert_int_equal(h_server_stop(&s[i], 10000), 0);
}

/* Puts key = value (no lease) straight into the test etcd; 0 on success. */
static int raw_put(const char *key, const char *value)
{
    char *req = ft_etcd_req_put(key, value, 0);
    char *r = h_etcd_post(&E, "/v3/kv/put", req);
    free(req);
    int rc = r ? 0 : -1;
    free(r);
    return rc;
}

/* A client that cannot read its stream for a while (here `ftrpc registry watch`, frozen with
 * SIGSTOP) while 15,000 changes pass (150 transactions of 100 puts of 1 KiB under its prefix, then
 * deleted) and etcd compacts its history up to the present: once it runs again it must end on
 * etcd's list, whatever it missed, either from the events its stream had queued or from a full
 * read (a stream etcd cancels as compacted makes the watch read everything again). */
static void watch_frozen_through_a_flood_and_a_compaction_resumes_on_etcds_list(void **state)
{
    (void)state;
    char url[300];
    snprintf(url, sizeof url, "%s/ftrpc-test?service=t9.Svc", E_url_base);
    assert_int_equal(raw_put("/ftrpc-test/t9.Svc/127.0.0.1:1000", "{\"addr\":\"127.0.0.1:1000\"}"),
                     0);
    h_server w;
    const char *args[] = {"registry", "watch", url, NULL};
    assert_int_equal(h_child_start(&w, args), 0);
    char buf[8192] = "";
    size_t len = 0;
    assert_true(h_child_wait_output(&w, buf, sizeof buf, &len, "1 endpoint(s)", 5000 * H_VG));
    h_server_signal(&w, SIGSTOP);

    static char big[1001];
    memset(big, 'x', 1000);
    char *b64big = malloc(ft_b64_len(1000) + 1);
    ft_b64_encode(big, 1000, b64big);
    size_t cap = 100 * (ft_b64_len(64) + ft_b64_len(1000) + 64) + 64;
    char *txn = malloc(cap);
    int64_t t0 = h_now_ms();
    for (int t = 0; t < 150; t++) {
        size_t n = (size_t)snprintf(txn, cap, "{\"success\":[");
        for (int i = 0; i < 100; i++) {
            char key[64], k64[128];
            snprintf(key, sizeof key, "/ftrpc-test/t9.Svc/127.0.0.1:%d", 20000 + t * 100 + i);
            ft_b64_encode(key, strlen(key), k64);
            n += (size_t)snprintf(txn + n, cap - n,
                                  "%s{\"requestPut\":{\"key\":\"%s\",\"value\":\"%s\"}}",
                                  i ? "," : "", k64, b64big);
        }
        snprintf(txn + n, cap - n, "]}");
        char *r = h_etcd_post(&E, "/v3/kv/txn", txn);
        assert_non_null(r);
        free(r);
    }
    free(txn);
    free(b64big);
    /* delete the flood: every key from 127.0.0.1:2 up to (not including) 127.0.0.1:3 */
    char from[64], to[64], body[256];
    ft_b64_encode("/ftrpc-test/t9.Svc/127.0.0.1:2", strlen("/ftrpc-test/t9.Svc/127.0.0.1:2"), from);
    ft_b64_encode("/ftrpc-test/t9.Svc/127.0.0.1:3", strlen("/ftrpc-test/t9.Svc/127.0.0.1:3"), to);
    snprintf(body, sizeof body, "{\"key\":\"%s\",\"range_end\":\"%s\"}", from, to);
    free(h_etcd_post(&E, "/v3/kv/deleterange", body));
    assert_int_equal(raw_put("/ftrpc-test/t9.Svc/127.0.0.1:3000", "{\"addr\":\"127.0.0.1:3000\"}"),
                     0);
    /* compact everything up to the present revision */
    char *r = h_etcd_post(&E, "/v3/kv/range", "{\"key\":\"AA==\"}");
    assert_non_null(r);
    json_object *o = json_tokener_parse(r), *hdr = NULL, *rev = NULL;
    assert_true(o && json_object_object_get_ex(o, "header", &hdr) &&
                json_object_object_get_ex(hdr, "revision", &rev));
    snprintf(body, sizeof body, "{\"revision\":\"%s\",\"physical\":true}",
             json_object_get_string(rev));
    json_object_put(o);
    free(r);
    r = h_etcd_post(&E, "/v3/kv/compaction", body);
    assert_non_null(r);
    free(r);
    int64_t flood_ms = h_now_ms() - t0;

    h_server_signal(&w, SIGCONT);
    t0 = h_now_ms();
    int found = h_child_wait_output(&w, buf, sizeof buf, &len, "2 endpoint(s)", 5000 * H_VG);
    int64_t took = h_now_ms() - t0;
    len = 0;
    buf[0] = '\0';
    fprintf(stderr,
            "frozen watch: flood and compaction took %lld ms; 2 endpoints listed %lld ms after "
            "SIGCONT\n",
            (long long)flood_ms, (long long)(found ? took : -1));
    assert_true(found);
    h_server_stop(&w, 5000);
}

/* libcurl is loaded at the first etcd:// use, not linked: an echo-server that never names etcd maps
 * none of it (3.8 MiB of an idle server's RSS with its dependencies, issue #26), and one that
 * registers in etcd loads it and registers. */
static void libcurl_is_loaded_only_by_a_process_that_names_etcd(void **state)
{
    (void)state;
    h_server plain, registered;
    assert_int_equal(h_server_start(&plain, NULL), 0);
    assert_int_equal(h_maps_file(plain.pid, "libcurl"), 0);
    char url[600];
    snprintf(url, sizeof url, "%s/ftrpc-test?service=lazy.Svc", E_url_base);
    const char *args[] = {"--register", url, NULL};
    assert_int_equal(h_server_start(&registered, args), 0);
    ft_naming_view *view = view_open("lazy.Svc", 60000);
    assert_true(wait_count(view, 1, 5000) >= 0);
    assert_int_equal(h_maps_file(registered.pid, "libcurl"), 1);
    ft_naming_view_free(view);
    h_server_stop(&registered, 5000);
    h_server_stop(&plain, 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(registered_server_is_discovered_and_clean_stop_removes_it),
        cmocka_unit_test(watch_sees_registrations_and_stops_within_1s),
        cmocka_unit_test(killed_registrar_disappears_after_its_ttl),
        cmocka_unit_test(
            registrar_takes_a_new_lease_when_its_lease_is_lost_and_puts_back_a_deleted_key),
        cmocka_unit_test(view_survives_etcd_restart_and_registrar_takes_a_new_lease),
        cmocka_unit_test(
            stale_bound_drops_a_registration_whose_lease_ttl_passed_while_etcd_is_down),
        cmocka_unit_test(etcd_frozen_longer_than_the_ttl_keeps_the_view_and_every_call_succeeds),
        cmocka_unit_test(watch_frozen_through_a_flood_and_a_compaction_resumes_on_etcds_list),
        cmocka_unit_test(libcurl_is_loaded_only_by_a_process_that_names_etcd),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
