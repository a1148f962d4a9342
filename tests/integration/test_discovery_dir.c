/* Discovery on the embedded dir:// registry with real server processes: calls spread over every
 * registered server, a new one is called within a second, a killed one leaves after its TTL
 * without failing calls (failover), a stopped one leaves at once, the client rides out a
 * registry outage and a wiped folder on its cached view (and, with a stale bound, drops expired
 * registrations after a long one), a call in flight to a leaving server
 * completes, weights drive "wrr", and hostile files planted in the folder (garbage, oversize, a
 * symlink out of it, a FIFO, a folder, a time far in the future, thousands of files) change
 * nothing a client sees, and a registry on a full or read-only filesystem (a 64 KiB tmpfs in this
 * test's own mount namespace) costs no call and is written again as soon as it can be. Every wait
 * polls under a bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <stdatomic.h>
#include <stdio.h>

#include "discovery_util.h"

/* The servers of one test (registered in d_dir) and one client on d_url. */
enum { MAXS = 4 };
static h_server srv[MAXS];
static char addr[MAXS][64];
static int nsrv;
static ftrpc_client *cli;

static int setup(void **state)
{
    nsrv = 0;
    cli = NULL;
    return d_setup_registry(state);
}

/* Starts servers [from, to) with the CLI's --ttl/--interval (seconds) and extra args. */
static void servers(int from, int to, const char *ttl, const char *interval,
                    const char *const *extra)
{
    for (int i = from; i < to; i++) {
        assert_int_equal(d_server_start(&srv[i], d_dir, ttl, interval, extra), 0);
        h_server_url(&srv[i], addr[i], sizeof addr[i]);
    }
    if (to > nsrv) nsrv = to;
}

/* A client with balancer lb, once its view lists every server started so far. */
static void client(const char *lb)
{
    cli = d_client(d_url, lb);
    assert_non_null(cli);
    for (int i = 0; i < nsrv; i++)
        assert_true(d_wait_view(cli, addr[i], 1, 2000 * H_VG) >= 0);
}

static void stop_all(void)
{
    ftrpc_client_free(cli);
    for (int i = 0; i < nsrv; i++) {
        if (!srv[i].pid) continue;
        /* A graceful stop may take a while under ASan on a loaded machine (grace period, a
         * two-pass close of the connections, the leak check at exit): the bound is generous so
         * that only a server that really hangs fails here; its stderr then says where it was. */
        int64_t t0 = h_now_ms();
        int rc = h_server_stop(&srv[i], 30000);
        if (rc != 0) {
            char *err = h_server_stderr(&srv[i]);
            print_error("server %d exited %d after %lld ms; its stderr:\n%s\n", i, rc,
                        (long long)(h_now_ms() - t0), err ? err : "(none)");
            free(err);
        }
        assert_int_equal(rc, 0);
    }
}

static int index_of(const char *ep)
{
    for (int i = 0; i < nsrv; i++)
        if (!strcmp(addr[i], ep)) return i;
    return -1;
}

static void three_servers_share_the_calls_and_a_fourth_is_called_within_a_second(void **state)
{
    (void)state;
    servers(0, 3, "1", "0.2", NULL);
    client("rr");
    int hits[MAXS] = {0};
    char ep[64];
    for (int i = 0; i < 60; i++) {
        assert_int_equal(d_call(cli, ep, sizeof ep), 0);
        int k = index_of(ep);
        assert_true(k >= 0);
        hits[k]++;
    }
    print_message("60 calls over 3 servers: %d %d %d\n", hits[0], hits[1], hits[2]);
    for (int i = 0; i < 3; i++)
        assert_true(hits[i] >= 15); /* rr: 20 each; slack for a list rebuilt mid-way */

    /* a new server: from its "listening" line to the first call it answers */
    servers(3, 4, "1", "0.2", NULL);
    int64_t t0 = h_now_us(), took_ms = -1;
    while (h_now_us() - t0 < 3000000 * H_VG) {
        assert_int_equal(d_call(cli, ep, sizeof ep), 0);
        if (index_of(ep) == 3) {
            took_ms = (h_now_us() - t0) / 1000;
            break;
        }
    }
    print_message("new server answered its first call %lld ms after it said listening\n",
                  (long long)took_ms);
    assert_true(took_ms >= 0 && took_ms < 1000 * H_VG);
    stop_all();
}

static void killed_server_leaves_after_its_ttl_and_no_call_fails_meanwhile(void **state)
{
    (void)state;
    /* under memcheck a refresh may come late on a loaded machine, and the bounds below are about
     * the TTL: the TTL, the interval and the bounds are all K times longer */
    enum { K = H_UNDER_VALGRIND ? 4 : 1 };
    servers(0, 3, K == 1 ? "1" : "4", K == 1 ? "0.2" : "0.8", NULL);
    client("rr");
    char ep[64];
    int64_t t0 = h_now_us();
    h_server_kill(&srv[0]);
    int calls = 0;
    int64_t gone_ms = -1;
    while (h_now_us() - t0 < 4000000 * K) {
        assert_int_equal(d_call(cli, ep, sizeof ep), 0); /* failover hides the dead server */
        calls++;
        if (!d_view_has(cli, addr[0])) {
            gone_ms = (h_now_us() - t0) / 1000;
            break;
        }
    }
    print_message("killed server left the view %lld ms after SIGKILL (TTL %d ms), %d calls, "
                  "none failed\n",
                  (long long)gone_ms, 1000 * K, calls);
    /* its entry was refreshed at most 200 ms before the kill, so it dies 800..1000 ms after it;
     * other servers' refreshes make the client re-read the folder every ~200 ms */
    assert_true(gone_ms >= 700 * K && gone_ms < 2000 * K);
    for (int i = 0; i < 30; i++) {
        assert_int_equal(d_call(cli, ep, sizeof ep), 0);
        assert_string_not_equal(ep, addr[0]);
    }
    stop_all();
}

static void stopped_server_leaves_at_once_well_under_its_ttl(void **state)
{
    (void)state;
    servers(0, 2, "5", "1", NULL);
    client("rr");
    h_server_signal(&srv[0], SIGTERM);
    int64_t gone_ms = d_wait_view(cli, addr[0], 0, 5000 * H_VG);
    print_message("stopped server left the view %lld ms after SIGTERM (TTL 5000 ms)\n",
                  (long long)gone_ms);
    assert_true(gone_ms >= 0 && gone_ms < 500 * H_VG);
    assert_int_equal(h_server_stop(&srv[0], 10000), 0);
    for (int i = 0; i < 10; i++) {
        char ep[64];
        assert_int_equal(d_call(cli, ep, sizeof ep), 0);
        assert_string_not_equal(ep, addr[0]);
    }
    stop_all();
}

/* The outage: the folder moves away and a plain file takes its place, so neither the registrars
 * (ENOTDIR, retried every interval) nor the clients' watches can read it. One atomic exchange:
 * between a rename and a create, a registrar would make the folder anew. The folder's place while
 * away goes to `moved`. */
static void registry_away(char *moved, size_t cap)
{
    snprintf(moved, cap, "%s.away", d_dir);
    FILE *f = fopen(moved, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(renameat2(AT_FDCWD, d_dir, AT_FDCWD, moved, RENAME_EXCHANGE), 0);
}

/* The folder is back (its entries are stale by now); the registrars write again. */
static void registry_back(const char *moved)
{
    assert_int_equal(renameat2(AT_FDCWD, moved, AT_FDCWD, d_dir, RENAME_EXCHANGE), 0);
    assert_int_equal(unlink(moved), 0);
}

static void registry_outage_keeps_the_last_list_and_recovery_is_seen(void **state)
{
    (void)state;
    servers(0, 2, "1", "0.2", NULL);
    client("rr");
    char moved[300], ep[64];
    registry_away(moved, sizeof moved);
    int64_t t0 = h_now_ms();
    int calls = 0;
    ft_naming_view_stats st = {0};
    /* steady load for 1.5 s: longer than the TTL, so every entry would be dead by now */
    while (h_now_ms() - t0 < 1500) {
        assert_int_equal(d_call(cli, ep, sizeof ep), 0);
        calls++;
    }
    ft_naming_view_stats_get(cli->view, &st);
    print_message("registry down 1.5 s: %d calls, none failed; view stale=%d errors=%llu, "
                  "%zu endpoints kept\n",
                  calls, (int)st.stale, (unsigned long long)st.errors, d_view_size(cli));
    assert_true(st.stale);
    assert_true(st.errors >= 1);
    assert_int_equal(d_view_size(cli), 2);

    registry_back(moved);
    int64_t deadline = h_now_ms() + 3000 * H_VG;
    do {
        ft_naming_view_stats_get(cli->view, &st);
        if (!st.stale && d_view_size(cli) == 2) break;
        usleep(2000);
    } while (h_now_ms() < deadline);
    assert_false(st.stale);
    assert_int_equal(d_view_size(cli), 2);
    /* and later changes are seen */
    servers(2, 3, "1", "0.2", NULL);
    assert_true(d_wait_view(cli, addr[2], 1, 1000 * H_VG) >= 0);
    stop_all();
}

/* One Echo call's code, quietly (the bounded client's calls are expected to fail at the end). */
static int call_rc(ftrpc_client *c)
{
    ftrpc_result r;
    int rc = ftrpc_call(c, D_SERVICE, "Echo", NULL, NULL, NULL, &r);
    ftrpc_result_fini(&r);
    return rc;
}

static int no_endpoint(void *arg)
{
    return call_rc(arg) == FTRPC_ENOENDPOINT;
}

static int answers(void *arg)
{
    return call_rc(arg) == 0;
}

/* The instance id of addr in a client's view ("" when not listed). */
static void view_id(ftrpc_client *c, const char *a, char *out, size_t cap)
{
    ft_naming_snapshot *s = ft_naming_view_get(c->view);
    snprintf(out, cap, "%s", "");
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->eps[i].addr, a)) snprintf(out, cap, "%s", s->eps[i].id);
    ft_naming_snapshot_release(s);
}

/* go-micro's terms, scaled down: servers register with TTL 1 s and interval 0.5 s (go-micro's
 * --register_ttl 30 --register_interval 15), one with an id of its own (--id), one with the UUID
 * made at start; ids show in the registry and the clients' views. Then the registry becomes
 * unreachable (the folder swapped for a file) while the servers run on. The default client keeps
 * calling on its last list; the client with naming_max_stale_ms 1000 drops both registrations
 * once the outage has lasted 1 s and their TTL has passed, and its calls then fail with
 * FTRPC_ENOENDPOINT; when the registry is back it calls again. */
static void stale_bound_drops_expired_registrations_and_calls_see_no_endpoint(void **state)
{
    (void)state;
    const char *const own_id[] = {"--id", "micro-a", NULL};
    servers(0, 1, "1", "0.5", own_id);
    servers(1, 2, "1", "0.5", NULL);
    client("rr");
    ftrpc_client_options bo = {.timeout_ms = 2000 * H_VG, .naming_max_stale_ms = 1000};
    ftrpc_client *bounded = NULL;
    assert_int_equal(ftrpc_client_new(d_url, &bo, &bounded), 0);
    for (int i = 0; i < 2; i++)
        assert_true(d_wait_view(bounded, addr[i], 1, 2000 * H_VG) >= 0);

    /* instance ids: the one given, a UUID for the other; the same in the registry's listing */
    char id0[64], id1[64];
    view_id(bounded, addr[0], id0, sizeof id0);
    view_id(bounded, addr[1], id1, sizeof id1);
    assert_string_equal(id0, "micro-a");
    assert_int_equal(strlen(id1), 36);
    assert_int_equal(id1[14], '4'); /* UUID version 4 */
    ftrpc_endpoint_list *l = NULL;
    assert_int_equal(ftrpc_naming_list(d_url, &l), 0);
    assert_int_equal(ftrpc_endpoint_list_size(l), 2);
    for (size_t i = 0; i < 2; i++) {
        const char *a = ftrpc_endpoint_list_addr(l, i);
        assert_string_equal(ftrpc_endpoint_list_id(l, i), !strcmp(a, addr[0]) ? id0 : id1);
        assert_int_equal(ftrpc_endpoint_list_ttl_ms(l, i), 1000);
    }
    ftrpc_endpoint_list_free(l);

    char moved[300];
    registry_away(moved, sizeof moved);
    int64_t t0 = h_now_ms();
    assert_int_equal(call_rc(bounded), 0); /* stale, still served */
    /* the bound is met once the outage is 1 s old and the TTL passed; the view notices at the
     * watch's next re-read (every 5 s by default) */
    assert_true(h_wait_until(no_endpoint, bounded, 15000 * H_VG));
    int64_t took = h_now_ms() - t0;
    ft_naming_view_stats st;
    ft_naming_view_stats_get(bounded->view, &st);
    print_message("registry down: the bounded client saw FTRPC_ENOENDPOINT after %lld ms "
                  "(stale_dropped=%llu); the default client still answers\n",
                  (long long)took, (unsigned long long)st.stale_dropped);
    assert_true(took >= 1000);
    assert_int_equal(st.stale_dropped, 2);
    assert_int_equal(d_view_size(bounded), 0);
    assert_int_equal(d_view_size(cli), 2);
    assert_int_equal(call_rc(cli), 0); /* the default: the last list, as long as it takes */

    registry_back(moved); /* the registrars write again, the bounded client calls again */
    assert_true(h_wait_until(answers, bounded, 5000 * H_VG));
    ftrpc_client_free(bounded);
    stop_all();
}

static int entry_exists(int i)
{
    char p[600];
    snprintf(p, sizeof p, "%s/" D_SERVICE "@127.0.0.1_%d.entry", d_dir, srv[i].port);
    return access(p, F_OK) == 0;
}

static void wiped_registry_is_distrusted_and_calls_keep_succeeding(void **state)
{
    (void)state;
    /* a slow refresh, so the folder stays empty for a while after the wipe */
    servers(0, 2, "5", "2", NULL);
    client("rr");
    ft_naming_view_stats st0, st;
    ft_naming_view_stats_get(cli->view, &st0);
    char cmd[600], ep[64];
    snprintf(cmd, sizeof cmd, "rm -f %s/*.entry", d_dir);
    assert_int_equal(system(cmd), 0);
    /* calls until the servers have re-registered (at their next interval, <= 2 s) */
    int calls = 0;
    int64_t deadline = h_now_ms() + 5000 * H_VG;
    for (;;) {
        assert_int_equal(d_call(cli, ep, sizeof ep), 0);
        calls++;
        ft_naming_view_stats_get(cli->view, &st);
        if (st.empty_rejected > st0.empty_rejected && entry_exists(0) && entry_exists(1)) break;
        assert_true(h_now_ms() < deadline);
        /* `rm` unlinks one file at a time: a scan between the two sees one entry, which is
         * believed; only "none" is distrusted, so at least one endpoint stays listed */
        assert_true(d_view_size(cli) >= 1);
    }
    for (int i = 0; i < 2; i++)
        assert_true(d_wait_view(cli, addr[i], 1, 2000 * H_VG) >= 0);
    print_message("wiped registry: %llu empty answers distrusted, %d calls, none failed\n",
                  (unsigned long long)(st.empty_rejected - st0.empty_rejected), calls);
    stop_all();
}

static int empty_was_rejected(void *arg)
{
    ft_naming_view_stats st;
    ft_naming_view_stats_get(((ftrpc_client *)arg)->view, &st);
    return st.empty_rejected > 0;
}

/* The last server's clean stop: by default the empty folder is distrusted like a wipe and the old
 * endpoint stays listed; a client that believes empty lists at once (naming_empty_grace_ms = -1)
 * sees FTRPC_ENOENDPOINT as soon as the entry is gone. */
static void last_server_stopping_leaves_an_empty_list_only_when_told_to_believe_it(void **state)
{
    (void)state;
    servers(0, 1, "5", "1", NULL);
    client("rr");
    ftrpc_client *believer = NULL;
    ftrpc_client_options o = {.naming_empty_grace_ms = -1, .timeout_ms = 2000 * H_VG};
    assert_int_equal(ftrpc_client_new(d_url, &o, &believer), 0);
    assert_true(d_wait_view(believer, addr[0], 1, 2000 * H_VG) >= 0);
    assert_int_equal(d_call(believer, NULL, 0), 0);
    assert_int_equal(h_server_stop(&srv[0], 10000), 0);
    int64_t gone_ms = d_wait_view(believer, addr[0], 0, 5000 * H_VG);
    print_message("believer's view emptied %lld ms after the stop\n", (long long)gone_ms);
    assert_true(gone_ms >= 0 && gone_ms < 1000 * H_VG);
    ftrpc_result r;
    assert_int_equal(ftrpc_call(believer, D_SERVICE, "Echo", NULL, NULL, NULL, &r),
                     FTRPC_ENOENDPOINT);
    ftrpc_result_fini(&r);
    /* the default client, watching the same folder, distrusts the empty answer and still holds
     * the stopped server */
    assert_true(h_wait_until(empty_was_rejected, cli, 5000 * H_VG));
    assert_true(d_view_has(cli, addr[0]));
    ftrpc_client_free(believer);
    stop_all();
}

static atomic_int slow_done, slow_failed;
static char slow_ep[2][64];

static void on_slow(ftrpc_result *r, void *arg)
{
    snprintf(slow_ep[(intptr_t)arg], sizeof slow_ep[0], "%s", r->endpoint);
    if (r->code != 0) atomic_fetch_add(&slow_failed, 1);
    atomic_fetch_add(&slow_done, 1);
}

static void call_in_flight_to_a_deregistering_server_completes(void **state)
{
    (void)state;
    /* two servers: the last one leaving would be distrusted as "no endpoints" (grace). Under
     * memcheck every duration is K times longer, the delay staying under the server's 5 s grace
     * period for calls in flight. */
    enum { K = H_UNDER_VALGRIND ? 5 : 1 };
    char delay[16];
    snprintf(delay, sizeof delay, "%d", 600 * K);
    const char *slow[] = {"--delay-ms", delay, NULL};
    servers(0, 2, "5", "1", slow);
    client("rr");
    atomic_store(&slow_done, 0);
    atomic_store(&slow_failed, 0);
    /* rr: one call to each server, both held there for 600 ms */
    for (intptr_t i = 0; i < 2; i++)
        assert_int_equal(
            ftrpc_call_async(cli, D_SERVICE, "Echo", NULL, NULL, NULL, on_slow, (void *)i, NULL),
            0);
    usleep(150 * 1000 * K);
    assert_int_equal(atomic_load(&slow_done), 0);
    h_server_signal(&srv[0], SIGTERM); /* deregisters first, then waits for its calls in flight */
    int64_t gone_ms = d_wait_view(cli, addr[0], 0, 1000 * K);
    assert_true(gone_ms >= 0);
    assert_int_equal(atomic_load(&slow_done), 0);
    assert_true(h_wait_atomic_ge(&slow_done, 2, 3000 * K));
    assert_int_equal(atomic_load(&slow_failed), 0);
    assert_true(!strcmp(slow_ep[0], addr[0]) || !strcmp(slow_ep[1], addr[0]));
    print_message("server left the view %lld ms after SIGTERM; its call in flight then "
                  "completed\n",
                  (long long)gone_ms);
    stop_all();
}

static void weights_100_and_300_split_wrr_calls_one_to_three(void **state)
{
    (void)state;
    const char *w100[] = {"--weight", "100", NULL}, *w300[] = {"--weight", "300", NULL};
    servers(0, 1, "2", "0.5", w100);
    servers(1, 2, "2", "0.5", w300);
    client("wrr");
    enum { N = 400 };
    int hits[2] = {0};
    char ep[64];
    for (int i = 0; i < N; i++) {
        assert_int_equal(d_call(cli, ep, sizeof ep), 0);
        int k = index_of(ep);
        assert_true(k >= 0);
        hits[k]++;
    }
    double share = (double)hits[1] / N;
    print_message("wrr 100/300 over %d calls: %d / %d (share of the heavy one %.3f)\n", N, hits[0],
                  hits[1], share);
    /* wrr is deterministic: exactly 3 in 4 per cycle of 4 picks. The slack (0.70..0.80) covers
     * a cycle cut short by a rebuilt balancer, not randomness. */
    assert_true(share >= 0.70 && share <= 0.80);
    stop_all();
}

/* Writes a well-formed live-looking entry of D_SERVICE for addr to path, refreshed at refreshed_ms
 * with ttl_ms. */
static void write_entry(const char *path, const char *eaddr, int64_t ttl_ms, int64_t refreshed_ms)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "ftrpc-dir-entry 1\nservice=" D_SERVICE "\naddr=%s\nweight=100\ntags=\npid=1\n"
            "ttl_ms=%lld\nrefreshed_ms=%lld\n",
            eaddr, (long long)ttl_ms, (long long)refreshed_ms);
    fclose(f);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Anyone who can write the folder can plant files in it. Each kind is skipped on its own, and the
 * files that name nothing listening (ports 1..6) must never reach the view: a symlink to a valid
 * live entry elsewhere (read only without following links), a FIFO (opened without blocking: it
 * would freeze the process's one watcher thread, and with it every dir:// and file:// watch), an
 * entry refreshed three TTLs ahead (a bogus clock must not pin an entry), a long-dead entry
 * (reaped), plus 2000 garbage files of the service and 2000 of another. Calls run throughout and a
 * server started afterwards is still seen within a second (the watcher is not stuck). */
static void hostile_files_in_the_folder_change_nothing_a_client_sees(void **state)
{
    (void)state;
    servers(0, 2, "1", "0.2", NULL);
    client("rr");
    char path[600], outside[256], target[600];
    d_tmpdir(outside, sizeof outside, "outside");
    snprintf(target, sizeof target, "%s/live.entry", outside);
    int64_t now = wall_ms();
    write_entry(target, "127.0.0.1:3", 86400000, now); /* valid and live, but not in the folder */
#define PLANT(port) snprintf(path, sizeof path, "%s/" D_SERVICE "@127.0.0.1_%d.entry", d_dir, port)
    PLANT(1);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("garbage\n", f);
    fclose(f);
    PLANT(2);
    write_entry(path, "127.0.0.1:2", 86400000, now); /* live, then 2 MiB more: over 1024 bytes */
    f = fopen(path, "a");
    assert_non_null(f);
    for (int i = 0; i < 2048; i++)
        fprintf(f, "%1023s\n", "#");
    fclose(f);
    PLANT(3);
    assert_int_equal(symlink(target, path), 0);
    PLANT(4);
    assert_int_equal(mkfifo(path, 0644), 0);
    PLANT(5);
    assert_int_equal(mkdir(path, 0755), 0);
    char planted_dir[600];
    snprintf(planted_dir, sizeof planted_dir, "%s", path);
    PLANT(6);
    write_entry(path, "127.0.0.1:6", 1000, now + 3000); /* three TTLs ahead */
    PLANT(7);
    write_entry(path, "127.0.0.1:7", 1000, now - 3600 * 1000); /* dead an hour: reaped */
    char dead[600];
    snprintf(dead, sizeof dead, "%s", path);
    for (int i = 0; i < 2000; i++) {
        PLANT(10000 + i);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs("x\n", f);
        fclose(f);
        snprintf(path, sizeof path, "%s/other.Svc@127.0.0.1_%d.entry", d_dir, 10000 + i);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs("x\n", f);
        fclose(f);
    }
#undef PLANT
    /* Calls for 1.5 s (several refreshes, each a full re-read of the folder) */
    int calls = 0, ok = 0, wrong = 0;
    char ep[64];
    int64_t t0 = h_now_ms();
    while (h_now_ms() - t0 < 1500) {
        calls++;
        ok += d_call(cli, ep, sizeof ep) == 0;
        wrong += index_of(ep) < 0 || d_view_size(cli) != 2;
        usleep(1000);
    }
    struct stat st;
    int reaped = stat(dead, &st) != 0;
    int target_kept = stat(target, &st) == 0;
    servers(2, 3, "1", "0.2", NULL);
    int64_t seen = d_wait_view(cli, addr[2], 1, 1000 * H_VG);
    print_message(
        "hostile files: %d calls, %d ok, %d answered elsewhere or with a wrong view; dead "
        "entry reaped %d; a new server seen after %lld ms\n",
        calls, ok, wrong, reaped, (long long)seen);
    assert_int_equal(ok, calls);
    assert_int_equal(wrong, 0);
    assert_true(reaped);
    assert_true(target_kept);
    assert_true(seen >= 0);
    assert_int_equal(d_view_size(cli), 3);
    stop_all();
    rmdir(planted_dir);
    d_rmdir(outside);
}

/* 1: main() moved this process into its own mount namespace (root only), where a test may mount
 * a small tmpfs over its registry folder without the rest of the machine seeing it. */
static int private_mounts;

/* What `ftrpc registry ls` lists for d_url: the number of endpoints, or -1 when it fails. */
static int registry_ls_count(void)
{
    const char *args[] = {"registry", "ls", d_url, NULL};
    char *out = NULL;
    int rc = h_cli_run(args, 5000 * H_VG, &out, NULL);
    int n = 0;
    for (const char *p = out; rc == 0 && p && (p = strstr(p, "127.0.0.1:")) != NULL; p++)
        n++;
    free(out);
    return rc == 0 ? n : -1;
}

/* Polls (20 ms) until `ftrpc registry ls` lists n endpoints, at most timeout_ms: ms taken, or -1.
 */
static int64_t wait_registry_count(int n, int timeout_ms)
{
    int64_t t0 = h_now_ms();
    while (registry_ls_count() != n) {
        if (h_now_ms() - t0 > timeout_ms) return -1;
        usleep(20 * 1000);
    }
    return h_now_ms() - t0;
}

static void calls_for(int ms, int *calls, int *ok)
{
    int64_t t0 = h_now_ms();
    while (h_now_ms() - t0 < ms) {
        (*calls)++;
        *ok += d_call(cli, NULL, 0) == 0;
        usleep(1000);
    }
}

/* The registry folder on a 64 KiB tmpfs, filled up, then freed, then remounted read-only and
 * read-write again, while calls run. A registrar that cannot write its entry logs it once per kind
 * of failure, leaves no temp file behind and keeps serving; its entry expires after its TTL like a
 * dead server's (a reader cannot tell the two apart), and it is written again within an interval
 * once the filesystem takes writes. */
static void full_or_read_only_registry_costs_no_call_and_servers_register_again(void **state)
{
    (void)state;
    if (!private_mounts) {
        print_message("skipped: needs root (a private mount namespace for a 64 KiB tmpfs)\n");
        skip();
    }
    assert_int_equal(mount("tmpfs", d_dir, "tmpfs", 0, "size=64k"), 0);
    servers(0, 2, "1", "0.2", NULL);
    client("rr");
    int calls = 0, ok = 0;
    char filler[600];
    snprintf(filler, sizeof filler, "%s/filler", d_dir);
    int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    static const char zeros[4096];
    while (write(fd, zeros, sizeof zeros) > 0) {
    }
    close(fd);
    int64_t expired_full = wait_registry_count(0, 3000 * H_VG); /* TTL 1 s */
    calls_for(300, &calls, &ok);
    unlink(filler);
    int64_t back_full = wait_registry_count(2, 2000 * H_VG); /* interval 0.2 s */
    calls_for(300, &calls, &ok);

    assert_int_equal(mount(NULL, d_dir, NULL, MS_REMOUNT | MS_RDONLY, "size=64k"), 0);
    int64_t expired_ro = wait_registry_count(0, 3000 * H_VG);
    calls_for(300, &calls, &ok);
    assert_int_equal(mount(NULL, d_dir, NULL, MS_REMOUNT, "size=64k"), 0);
    int64_t back_ro = wait_registry_count(2, 2000 * H_VG);
    calls_for(300, &calls, &ok);

    int temps = 0;
    DIR *d = opendir(d_dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        temps += strstr(e->d_name, ".tmp") != NULL;
    closedir(d);
    int nospc = 0, rofs = 0;
    for (int i = 0; i < 2; i++) {
        nospc += h_server_stderr_count(&srv[i], "No space left on device");
        rofs += h_server_stderr_count(&srv[i], "Read-only file system");
    }
    print_message("registry full: entries expired after %lld ms, written again %lld ms after "
                  "the space was freed; read-only: expired after %lld ms, written again %lld ms "
                  "after the remount; %d calls, %d ok; temp files left %d; log lines ENOSPC %d "
                  "EROFS %d\n",
                  (long long)expired_full, (long long)back_full, (long long)expired_ro,
                  (long long)back_ro, calls, ok, temps, nospc, rofs);
    assert_true(expired_full >= 0 && back_full >= 0 && expired_ro >= 0 && back_ro >= 0);
    assert_int_equal(ok, calls);
    assert_int_equal(temps, 0);
    assert_int_equal(nospc, 2); /* once per server, not every interval */
    assert_int_equal(rofs, 2);
    assert_int_equal(d_view_size(cli), 2);
    stop_all();
    assert_int_equal(umount(d_dir), 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, d_teardown)

int main(void)
{
    /* Now, while this process has one thread: unshare(CLONE_NEWNS) refuses a threaded process.
     * Private propagation keeps the test's mounts from leaking to the host's namespace. */
    private_mounts =
        unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0;
    const struct CMUnitTest tests[] = {
        T(three_servers_share_the_calls_and_a_fourth_is_called_within_a_second),
        T(killed_server_leaves_after_its_ttl_and_no_call_fails_meanwhile),
        T(stopped_server_leaves_at_once_well_under_its_ttl),
        T(registry_outage_keeps_the_last_list_and_recovery_is_seen),
        T(stale_bound_drops_expired_registrations_and_calls_see_no_endpoint),
        T(wiped_registry_is_distrusted_and_calls_keep_succeeding),
        T(last_server_stopping_leaves_an_empty_list_only_when_told_to_believe_it),
        T(call_in_flight_to_a_deregistering_server_completes),
        T(weights_100_and_300_split_wrr_calls_one_to_three),
        T(hostile_files_in_the_folder_change_nothing_a_client_sees),
        T(full_or_read_only_registry_costs_no_call_and_servers_register_again),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
