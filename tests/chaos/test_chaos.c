/* Chaos: no call is lost or answered twice while nodes die, freeze and the registry goes away.
 *
 * Three echo-server children register on a registry with a short TTL (dir:// or a real etcd) and a
 * failover client (attempt timeout 100 ms, deadline 2 s) keeps a steady async load on them. Each
 * round kills one server with SIGKILL and starts a replacement on a new port (it registers itself,
 * the dead entry expires), then freezes another with SIGSTOP for longer than the TTL (its entry
 * expires too) and lets it go with SIGCONT (it refreshes its entry and is used again). On etcd://
 * etcd itself is killed with SIGKILL and restarted on the same ports and data folder mid-round.
 *
 * Accounting from both sides at the end of a scenario:
 *   client: every issued call completed exactly once (ok + errors = issued, no duplicate
 *           callback) and, since a healthy replica was left at every moment, none failed;
 *   server: each server stopped with SIGTERM prints how many requests it answered
 *           (--stats-on-exit); answered >= the OK calls the client got from it, and the surplus,
 *           summed over those servers, is at most the client's extra attempts (attempts beyond the
 *           one that succeeded: timed-out attempts a frozen server answered after SIGCONT,
 *           probes...). The servers killed with SIGKILL take their count with them.
 *
 * Short form (CTest, label chaos): one round per registry. Long form (`make chaos`):
 * CHAOS_ROUNDS rounds (default 1) at a higher load with CHAOS_LONG=1; each scenario prints one
 * line "CHAOS| scenario | calls | ok | errors | duplicates | max attempts | p99 ms |".
 * Every wait is bounded by a count of completed calls or a deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define _XOPEN_SOURCE 700
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#ifdef FTRPC_CHAOS_ETCD
#include "etcd_fixture.h"
#endif

/* Sanitizers make everything several times slower: the phases are counted in calls, and the
 * bounds on them are scaled. */
#if defined(__SANITIZE_ADDRESS__)
#define SLOW 4
#else
#define SLOW 1
#endif

enum { NLIVE = 3, ATTEMPT_MS = 100, DEADLINE_MS = 2000 };

static struct {
    int rounds;
    int window, pace_us;
    int phase_calls; /* completed calls each phase lasts at least */
} P;

static char scratch_dir[512];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* ---- the etcd under test (same data folder and ports across restarts) ---- */

#ifdef FTRPC_CHAOS_ETCD
static h_etcd E;
#endif

/* ---- one scenario ---- */

typedef struct scenario {
    const char *name;
    char reg_url[700];    /* what servers register with (--register) */
    char client_url[700]; /* what the client resolves */
    const char *ttl, *interval;
    int registry_restart; /* kill and restart etcd mid-round */
    /* every server ever started: [0..NLIVE) first, then one replacement per round */
    h_server srv[H_LOAD_MAX_ENDPOINTS];
    char addr[H_LOAD_MAX_ENDPOINTS][64];
    int killed[H_LOAD_MAX_ENDPOINTS];
    int nsrv;        /* NLIVE + rounds */
    int live[NLIVE]; /* indexes into srv of the servers that should be up */
} scenario;

/* Starts server i on its port, chosen up front so that the load knows every address before it
 * starts (its callbacks read endpoints[] without a lock). */
static void server_start(scenario *s, int i)
{
    const char *args[] = {"--register", s->reg_url,   "--service", "example.EchoService", "--ttl",
                          s->ttl,       "--interval", s->interval, "--stats-on-exit",     NULL};
    int port = atoi(strrchr(s->addr[i], ':') + 1);
    assert_int_equal(h_server_start_on(&s->srv[i], port, args), 0);
}

static void wait_more_calls(h_load *l, int n)
{
    int target = atomic_load(&l->done) + n;
    assert_true(h_load_wait_done(l, target, 30000 * SLOW));
}

static void wait_answered_by(h_load *l, int ep, int n)
{
    int since = atomic_load(&l->answered[ep]);
    if (!h_load_wait_answered(l, ep, since, n, 30000 * SLOW))
        fail_msg("server %d did not answer %d more calls within %d ms", ep, n, 30000 * SLOW);
}

static void run_scenario(scenario *s)
{
    memset(s->srv, 0, sizeof s->srv);
    s->nsrv = NLIVE + P.rounds;
    for (int i = 0; i < s->nsrv; i++)
        snprintf(s->addr[i], sizeof s->addr[i], "127.0.0.1:%d", h_free_port());
    for (int i = 0; i < NLIVE; i++) {
        server_start(s, i);
        s->live[i] = i;
    }
    ftrpc_client *client = NULL;
    ftrpc_client_options o = {.fail_mode = FTRPC_FAILOVER,
                              .timeout_ms = DEADLINE_MS,
                              .attempt_timeout_ms = ATTEMPT_MS * SLOW,
                              /* a dead entry that has not expired yet and a frozen server may be
                               * suspended at the same time, out of three or four endpoints */
                              .health = {.max_suspended_ratio = 0.67}};
    assert_int_equal(ftrpc_client_new(s->client_url, &o, &client), 0);
    h_load l;
    memset(&l, 0, sizeof l);
    l.client = client;
    l.window = P.window;
    l.pace_us = P.pace_us;
    l.max_calls = 100000 + P.rounds * 60 * P.phase_calls;
    for (int i = 0; i < s->nsrv; i++)
        l.endpoints[i] = s->addr[i];
    l.nendpoints = s->nsrv;
    assert_int_equal(h_load_start(&l), 0);
    for (int i = 0; i < NLIVE; i++)
        wait_answered_by(&l, i, 50); /* warm-up: every server discovered and connected */

    for (int r = 0; r < P.rounds; r++) {
        /* kill -9 one live server; a replacement registers on a new port */
        int victim = r % NLIVE, frozen = (r + 1) % NLIVE;
        int v = s->live[victim];
        h_server_kill(&s->srv[v]);
        s->killed[v] = 1;
        wait_more_calls(&l, P.phase_calls);
        server_start(s, NLIVE + r);
        s->live[victim] = NLIVE + r;
        wait_answered_by(&l, s->live[victim], 50);
#ifdef FTRPC_CHAOS_ETCD
        if (s->registry_restart) {
            h_etcd_kill(&E);
            wait_more_calls(&l, P.phase_calls);
            assert_int_equal(h_etcd_start(&E), 0);
            wait_more_calls(&l, P.phase_calls);
        }
#endif
        /* SIGSTOP another for longer than the TTL, then SIGCONT: it is used again */
        int f = s->live[frozen];
        h_server_signal(&s->srv[f], SIGSTOP);
        int64_t until = h_now_ms() + 2500;
        while (h_now_ms() < until)
            wait_more_calls(&l, P.phase_calls / 4);
        h_server_signal(&s->srv[f], SIGCONT);
        wait_answered_by(&l, f, 50);
        wait_more_calls(&l, P.phase_calls);
    }
    assert_true(h_load_stop(&l, 10000 * SLOW));
    ftrpc_client_free(client);

    /* client side */
    h_load_tally t;
    h_load_tally_get(&l, 0, INT64_MAX, &t);
    assert_int_equal(t.lost, 0);
    assert_int_equal(t.duplicates, 0);
    int issued = t.calls, ok = t.ok, errors = t.errors, max_attempts = t.max_attempts;
    long attempts = t.attempts;
    int dups = atomic_load(&l.duplicates);
    int64_t p99 = h_load_latency_quantile(&l, 0, INT64_MAX, 0.99, NULL);
    printf("CHAOS| %-24s | %7d | %7d | %6d | %10d | %12d | %6.1f |\n", s->name, issued, ok, errors,
           dups, max_attempts, (double)p99 / 1000.0);
    fflush(stdout);

    /* server side: the servers still up stop cleanly and say how many requests they answered */
    long surplus = 0, answered_total = 0;
    for (int i = 0; i < s->nsrv; i++) {
        if (s->killed[i] || s->srv[i].pid <= 0) continue;
        long answered = h_server_stop_answered(&s->srv[i], 10000 * SLOW);
        int ok_here = atomic_load(&l.answered[i]);
        print_message("%s: server %d (%s) answered %ld, the client got %d OK from it\n", s->name, i,
                      s->addr[i], answered, ok_here);
        assert_true(answered >= ok_here);
        surplus += answered - ok_here;
        answered_total += answered;
    }
    long extra = attempts - ok; /* attempts beyond the one that answered each OK call */
    print_message("%s: %d issued, %d ok, %d errors, %d duplicates; %ld attempts, %ld extra; "
                  "servers answered %ld, %ld more than the OK calls they served\n",
                  s->name, issued, ok, errors, dups, attempts, extra, answered_total, surplus);
    if (errors) print_error("first failure: %s\n", ftrpc_err_name(atomic_load(&l.first_fail_code)));
    assert_int_equal(ok + errors, issued);
    assert_int_equal(dups, 0);
    assert_int_equal(errors, 0);
    assert_true(surplus <= extra);
    h_load_fini(&l);
}

static void make_scratch(void)
{
    const char *base = getenv("FTRPC_SCRATCH");
    char b[400];
    snprintf(b, sizeof b, "%s", base && *base ? base : "/tmp");
    mkdir(b, 0777);
    snprintf(scratch_dir, sizeof scratch_dir, "%s/chaos-XXXXXX", b);
    assert_non_null(mkdtemp(scratch_dir));
}

static void remove_scratch(void)
{
    if (scratch_dir[0]) nftw(scratch_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    scratch_dir[0] = '\0';
}

static void dir_registry_loses_and_duplicates_no_call_when_servers_die_and_freeze(void **state)
{
    (void)state;
    make_scratch();
    static scenario s;
    memset(&s, 0, sizeof s);
    s.name = "dir:// kill+freeze";
    snprintf(s.reg_url, sizeof s.reg_url, "dir://%s/reg", scratch_dir);
    snprintf(s.client_url, sizeof s.client_url, "dir://%s/reg?service=example.EchoService",
             scratch_dir);
    s.ttl = "1";
    s.interval = "0.25";
    run_scenario(&s);
    remove_scratch();
}

#ifdef FTRPC_CHAOS_ETCD
static void
etcd_registry_loses_and_duplicates_no_call_when_servers_die_freeze_and_etcd_restarts(void **state)
{
    (void)state;
    make_scratch();
    if (h_etcd_init(&E, scratch_dir) != 0) fail_msg("etcd is not installed (see above)");
    if (h_etcd_start(&E) != 0) {
        h_etcd_dump_log(&E);
        fail_msg("etcd (%s) did not become healthy on 127.0.0.1:%d", E.bin, E.cport);
    }
    static scenario s;
    memset(&s, 0, sizeof s);
    s.name = "etcd:// kill+freeze+etcd";
    snprintf(s.reg_url, sizeof s.reg_url, "etcd://127.0.0.1:%d/chaos", E.cport);
    snprintf(s.client_url, sizeof s.client_url,
             "etcd://127.0.0.1:%d/chaos?service=example.EchoService", E.cport);
    s.ttl = "2"; /* etcd raises shorter leases to its minimum TTL anyway */
    s.interval = "0.5";
    s.registry_restart = 1;
    run_scenario(&s);
    h_etcd_kill(&E);
    remove_scratch();
}
#endif

int main(void)
{
    const char *rounds = getenv("CHAOS_ROUNDS");
    int longf = getenv("CHAOS_LONG") && atoi(getenv("CHAOS_LONG")) > 0;
    P.rounds = rounds && atoi(rounds) > 0 ? atoi(rounds) : 1;
    if (P.rounds > H_LOAD_MAX_ENDPOINTS - NLIVE) P.rounds = H_LOAD_MAX_ENDPOINTS - NLIVE;
    /* short: ~2,000 calls a second; long: about twice that, with more in flight */
    P.window = longf ? 16 : 8;
    P.pace_us = longf ? 200 : 500;
    P.phase_calls = (longf ? 3000 : 1500) / SLOW;
    setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dir_registry_loses_and_duplicates_no_call_when_servers_die_and_freeze),
#ifdef FTRPC_CHAOS_ETCD
        cmocka_unit_test(
            etcd_registry_loses_and_duplicates_no_call_when_servers_die_freeze_and_etcd_restarts),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
