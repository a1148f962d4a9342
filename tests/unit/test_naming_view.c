/* The cached view: snapshots, stale and grace rules on a manual clock, listeners, readers racing
 * an updater, and views fed by real list:// and file:// watches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "ftrpc/log.h"
#include "naming/naming_view.h"

static atomic_int error_lines;
static pthread_mutex_t last_line_lock = PTHREAD_MUTEX_INITIALIZER;
/* the last WARN or ERROR line; the watch tests log from their own thread */
static char last_line[1024];
static void sink(ftrpc_log_level level, const char *msg, void *arg)
{
    if (level == FTRPC_LOG_ERROR) atomic_fetch_add(&error_lines, 1);
    if (level >= FTRPC_LOG_WARN) {
        pthread_mutex_lock(&last_line_lock);
        snprintf(last_line, sizeof last_line, "%s", msg);
        pthread_mutex_unlock(&last_line_lock);
    }
}

static ft_endpoint_list make_list(const char *spec)
{
    ft_endpoint_list l = {0};
    char buf[512];
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        ft_endpoint ep;
        assert_int_equal(ft_endpoint_parse(tok, strlen(tok), &ep), 0);
        assert_int_equal(ft_endpoint_list_add(&l, &ep), 0);
    }
    return l;
}

static void apply_spec(ft_naming_view *v, const char *spec)
{
    ft_endpoint_list l = make_list(spec);
    ft_naming_view_apply(v, &l, 0);
    ft_endpoint_list_fini(&l);
}

static size_t current_n(ft_naming_view *v, uint64_t *version)
{
    ft_naming_snapshot *s = ft_naming_view_get(v);
    size_t n = s->n;
    if (version) *version = s->version;
    ft_naming_snapshot_release(s);
    return n;
}

typedef struct {
    int calls;
    uint64_t last_version;
    size_t last_n;
} seen_t;

static void on_change(ft_naming_snapshot *s, void *arg)
{
    seen_t *seen = arg;
    seen->calls++;
    seen->last_version = s->version;
    seen->last_n = s->n;
}

static ft_manual_clock clk;

static ft_naming_view *manual_view(int64_t stale_max_ms, int64_t grace_ms)
{
    ft_manual_clock_init(&clk, 1000 * FT_NS_PER_MS);
    ft_naming_view_opts o = {
        .clock = &clk.base, .stale_max_ms = stale_max_ms, .empty_grace_ms = grace_ms};
    ft_naming_view *v;
    assert_int_equal(ft_naming_view_new(&o, &v), 0);
    return v;
}

static void advance_ms(int64_t ms)
{
    ft_manual_clock_advance(&clk, ms * FT_NS_PER_MS);
}

static void first_answer_publishes_in_order_without_duplicates(void **state)
{
    ft_naming_view *v = manual_view(0, 0);
    uint64_t ver;
    assert_int_equal(current_n(v, &ver), 0);
    assert_int_equal(ver, 0);
    assert_int_equal(ft_naming_view_wait_ready(v, 1), FTRPC_ERPCTIMEDOUT);
    apply_spec(v, "b:1,a:1 w=3,b:1");
    assert_int_equal(ft_naming_view_wait_ready(v, 0), 0);
    ft_naming_snapshot *s = ft_naming_view_get(v);
    assert_int_equal(s->version, 1);
    assert_int_equal(s->n, 2);
    /* the naming service's order is kept (the priority balancer relies on it); the first
     * occurrence of a duplicated address wins */
    assert_string_equal(s->eps[0].addr, "b:1");
    assert_string_equal(s->eps[1].addr, "a:1");
    assert_int_equal(s->eps[1].weight, 3);
    /* the same list without the duplicate is no change */
    apply_spec(v, "b:1,a:1 w=3");
    assert_int_equal(current_n(v, &ver), 2);
    assert_int_equal(ver, 1);
    /* a weight change is a change */
    apply_spec(v, "b:1,a:1 w=4");
    assert_int_equal(current_n(v, &ver), 2);
    assert_int_equal(ver, 2);
    /* so is a new order: it changes which endpoint a priority balancer prefers */
    apply_spec(v, "a:1 w=4,b:1");
    assert_int_equal(current_n(v, &ver), 2);
    assert_int_equal(ver, 3);
    /* the snapshot taken earlier is unchanged and still valid */
    assert_int_equal(s->version, 1);
    assert_int_equal(s->eps[1].weight, 3);
    ft_naming_snapshot_release(s);
    ft_naming_view_free(v);
}

static void error_keeps_last_good_list_and_marks_stale(void **state)
{
    ft_naming_view *v = manual_view(10000, 0);
    apply_spec(v, "a:1,b:1");
    ft_naming_view_apply(v, NULL, FTRPC_ESYS);
    ft_naming_view_stats st;
    ft_naming_view_stats_get(v, &st);
    assert_true(st.stale);
    assert_int_equal(st.errors, 1);
    uint64_t ver;
    assert_int_equal(current_n(v, &ver), 2);
    assert_int_equal(ver, 1);

    atomic_store(&error_lines, 0);
    advance_ms(9999);
    ft_naming_view_apply(v, NULL, FTRPC_ESYS);
    assert_int_equal(atomic_load(&error_lines), 0); /* not yet stale_max */
    advance_ms(1);
    ft_naming_view_apply(v, NULL, FTRPC_ESYS);
    assert_int_equal(atomic_load(&error_lines), 1); /* loud */
    advance_ms(5000);
    ft_naming_view_apply(v, NULL, FTRPC_ESYS);
    assert_int_equal(atomic_load(&error_lines), 1); /* rate-limited: once per stale_max */
    advance_ms(5000);
    ft_naming_view_apply(v, NULL, FTRPC_ESYS);
    assert_int_equal(atomic_load(&error_lines), 2);
    ft_naming_view_stats_get(v, &st);
    assert_int_equal(st.errors, 5);
    assert_int_equal(st.stale_ms, 20000);
    assert_int_equal(current_n(v, NULL), 2); /* still serving */

    apply_spec(v, "a:1,b:1");
    ft_naming_view_stats_get(v, &st);
    assert_false(st.stale);
    assert_int_equal(st.stale_ms, 0);
    assert_int_equal(current_n(v, &ver), 2);
    assert_int_equal(ver, 1);
    ft_naming_view_free(v);
}

/* A registry cut off for longer than the TTL lets every registration expire; after it, the
 * registrars come back one at a time. Removals wait out the hold, additions do not. */
static void after_an_outage_answers_add_endpoints_but_remove_none_for_the_hold(void **state)
{
    (void)state;
    ft_manual_clock_init(&clk, 1000 * FT_NS_PER_MS);
    ft_naming_view_opts o = {.clock = &clk.base, .outage_hold_ms = 5000};
    ft_naming_view *v;
    assert_int_equal(ft_naming_view_new(&o, &v), 0);
    apply_spec(v, "a:1,b:1,c:1");
    apply_spec(v, "a:1,b:1"); /* no outage: believed at once */
    assert_int_equal(current_n(v, NULL), 2);
    apply_spec(v, "a:1,b:1,c:1");
    ft_naming_view_apply(v, NULL, FTRPC_ERPCTIMEDOUT);
    advance_ms(6000);
    apply_spec(v, "b:1"); /* the first registrar back */
    assert_int_equal(current_n(v, NULL), 3);
    apply_spec(v, "b:1,d:1"); /* a new one is added at once */
    assert_int_equal(current_n(v, NULL), 4);
    advance_ms(4999);
    apply_spec(v, "a:1,b:1,d:1");
    assert_int_equal(current_n(v, NULL), 4);
    advance_ms(1); /* the hold is over: c, which never came back, goes */
    apply_spec(v, "a:1,b:1,d:1");
    assert_int_equal(current_n(v, NULL), 3);
    ft_naming_view_free(v);
    /* negative: off */
    ft_naming_view *w = manual_view(0, -1);
    apply_spec(w, "a:1,b:1");
    ft_naming_view_apply(w, NULL, FTRPC_ERPCTIMEDOUT);
    apply_spec(w, "a:1");
    assert_int_equal(current_n(w, NULL), 1);
    ft_naming_view_free(w);
}

static void error_before_any_answer_leaves_view_empty(void **state)
{
    ft_naming_view *v = manual_view(0, 0);
    ft_naming_view_apply(v, NULL, FTRPC_ESYS);
    uint64_t ver;
    assert_int_equal(current_n(v, &ver), 0);
    assert_int_equal(ver, 0);
    assert_int_equal(ft_naming_view_wait_ready(v, 0), FTRPC_ERPCTIMEDOUT);
    ft_naming_view_free(v);
}

static void sudden_empty_is_kept_out_for_the_grace_period(void **state)
{
    ft_naming_view *v = manual_view(0, 3000);
    seen_t seen = {0};
    int id;
    apply_spec(v, "a:1,b:1");
    assert_int_equal(ft_naming_view_listen(v, on_change, &seen, &id), 0);
    assert_int_equal(seen.calls, 1); /* the current snapshot, at once */

    ft_endpoint_list empty = {0};
    ft_naming_view_apply(v, &empty, 0);
    advance_ms(2999);
    ft_naming_view_apply(v, &empty, 0);
    assert_int_equal(current_n(v, NULL), 2);
    ft_naming_view_stats st;
    ft_naming_view_stats_get(v, &st);
    assert_int_equal(st.empty_rejected, 2);
    assert_int_equal(seen.calls, 1);

    /* endpoints come back: the grace clock resets */
    apply_spec(v, "a:1,b:1");
    advance_ms(2000);
    ft_naming_view_apply(v, &empty, 0);
    advance_ms(2000);
    ft_naming_view_apply(v, &empty, 0);
    assert_int_equal(current_n(v, NULL), 2);
    advance_ms(1000);
    ft_naming_view_apply(v, &empty, 0); /* 3000 ms of empty: accepted */
    uint64_t ver;
    assert_int_equal(current_n(v, &ver), 0);
    assert_int_equal(ver, 2);
    assert_int_equal(seen.calls, 2);
    assert_int_equal(seen.last_n, 0);
    assert_int_equal(seen.last_version, 2);

    /* empty to something is never delayed */
    apply_spec(v, "c:1");
    assert_int_equal(current_n(v, NULL), 1);
    assert_int_equal(seen.calls, 3);
    ft_naming_view_unlisten(v, id);
    apply_spec(v, "d:1");
    assert_int_equal(seen.calls, 3);
    ft_naming_view_free(v);
}

/* The number the last WARN or ERROR line gives right after `words`; fails when it has none. */
static size_t logged_count(const char *words)
{
    pthread_mutex_lock(&last_line_lock);
    char line[sizeof last_line];
    snprintf(line, sizeof line, "%s", last_line);
    last_line[0] = '\0';
    pthread_mutex_unlock(&last_line_lock);
    const char *at = strstr(line, words);
    size_t n = 0;
    if (!at || sscanf(at + strlen(words), "%zu", &n) != 1)
        fail_msg("no count after \"%s\" in the last line: \"%s\"", words, line);
    return n;
}

/* What an operator reads in the middle of an outage: every line that says how many endpoints are
 * still served gives the size of the list the view serves. */
static void outage_lines_give_the_size_of_the_list_served(void **state)
{
    ft_naming_view *v = manual_view(10000, 3000);
    ft_endpoint_list empty = {0};
    apply_spec(v, "a:1,b:1,c:1");
    /* a registry folder wiped as `rm *.entry` does it: a scan between two unlinks is believed */
    apply_spec(v, "b:1,c:1");
    apply_spec(v, "c:1");
    ft_naming_view_apply(v, &empty, 0);
    assert_int_equal(logged_count("keeping "), current_n(v, NULL));
    /* then the folder itself goes */
    ft_naming_view_apply(v, NULL, FTRPC_ESYS);
    assert_int_equal(logged_count("last good list of "), current_n(v, NULL));
    advance_ms(10000);
    ft_naming_view_apply(v, NULL, FTRPC_ESYS);
    assert_int_equal(logged_count("stale list of "), current_n(v, NULL));
    assert_int_equal(current_n(v, NULL), 1);

    /* the servers register again; the next outage starts from all three */
    apply_spec(v, "a:1,b:1,c:1");
    ft_naming_view_apply(v, NULL, FTRPC_ESYS);
    assert_int_equal(logged_count("last good list of "), 3);
    apply_spec(v, "a:1,b:1,c:1");
    ft_naming_view_apply(v, &empty, 0);
    assert_int_equal(logged_count("keeping "), 3);
    assert_int_equal(current_n(v, NULL), 3);
    ft_naming_view_free(v);
}

static void negative_grace_accepts_empty_at_once(void **state)
{
    ft_naming_view *v = manual_view(0, -1);
    apply_spec(v, "a:1");
    ft_endpoint_list empty = {0};
    ft_naming_view_apply(v, &empty, 0);
    assert_int_equal(current_n(v, NULL), 0);
    ft_naming_view_free(v);
}

static void first_empty_answer_is_accepted(void **state)
{
    ft_naming_view *v = manual_view(0, 3000);
    ft_endpoint_list empty = {0};
    ft_naming_view_apply(v, &empty, 0);
    uint64_t ver;
    assert_int_equal(current_n(v, &ver), 0);
    assert_int_equal(ver, 1);
    assert_int_equal(ft_naming_view_wait_ready(v, 0), 0);
    ft_naming_view_free(v);
}

static void bad_options_are_refused(void **state)
{
    ft_naming_view *v = NULL;
    ft_naming_view_opts o = {.stale_max_ms = -1};
    assert_int_equal(ft_naming_view_new(&o, &v), FTRPC_EINVAL);
    assert_null(v);
    ft_naming_view_opts drop = {.stale_drop_ms = -2};
    assert_int_equal(ft_naming_view_new(&drop, &v), FTRPC_EINVAL);
    assert_null(v);
    ft_naming_view_free(NULL);
    ft_naming_snapshot_release(NULL);
}

/* ---- the stale bound (go-micro's cache, "periodically TTLed out") ---- */

/* A registration as a registry lists it: address, instance id, TTL (0: none, as list://). */
static ft_endpoint reg_entry(const char *addr, const char *id, int64_t ttl_ms)
{
    ft_endpoint ep;
    assert_int_equal(ft_endpoint_parse(addr, strlen(addr), &ep), 0);
    snprintf(ep.id, sizeof ep.id, "%s", id);
    ep.ttl_ms = ttl_ms;
    return ep;
}

static void apply_entries(ft_naming_view *v, const ft_endpoint *eps, size_t n)
{
    ft_endpoint_list l = {0};
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ft_endpoint_list_add(&l, &eps[i]), 0);
    ft_naming_view_apply(v, &l, 0);
    ft_endpoint_list_fini(&l);
}

static ft_naming_view *bounded_view(int64_t stale_drop_ms)
{
    ft_manual_clock_init(&clk, 1000 * FT_NS_PER_MS);
    ft_naming_view_opts o = {.clock = &clk.base, .stale_drop_ms = stale_drop_ms};
    ft_naming_view *v;
    assert_int_equal(ft_naming_view_new(&o, &v), 0);
    return v;
}

/* The registry lists, every 15 s (go-micro's register_interval 15), a server registered with
 * go-micro's register_ttl 30 s, one with a 300 s TTL and a static entry (no TTL); then it stays
 * unreachable, answering errors every 5 s (the rescan). */
#define TTL_S 30
#define INTERVAL_S 15
static void run_outage(ft_naming_view *v, const ft_endpoint *eps, size_t n, int64_t until_s,
                       int64_t *t_s)
{
    for (; *t_s <= 45; *t_s += INTERVAL_S, advance_ms(INTERVAL_S * 1000))
        apply_entries(v, eps, n); /* t = 0, 15, 30, 45: last listed at 45 */
    /* *t_s is 60: the registry is down from here */
    for (; *t_s < until_s; *t_s += 5, advance_ms(5000))
        ft_naming_view_apply(v, NULL, FTRPC_ESYS);
}

static void stale_bound_drops_entries_whose_ttl_passed_once_the_outage_is_long_enough(void **state)
{
    (void)state;
    ftrpc_log_set_sink(sink, NULL);
    ft_naming_view *v = bounded_view(60000); /* go-micro's cache TTL: a minute */
    const ft_endpoint eps[] = {reg_entry("127.0.0.1:8000", "a-1", TTL_S * 1000),
                               reg_entry("127.0.0.1:8001", "b-2", 300000),
                               reg_entry("127.0.0.1:8002", "", 0)};
    int64_t t = 0;
    /* stale from t = 60; the 30 s TTL passed at 45 + 30 = 75, long before the bound */
    run_outage(v, eps, 3, 120, &t); /* errors at 60 .. 115: stale for 55 s */
    assert_int_equal(current_n(v, NULL), 3);
    ft_naming_view_apply(v, NULL, FTRPC_ESYS); /* t = 120: stale for 60 s */
    ft_naming_snapshot *s = ft_naming_view_get(v);
    assert_int_equal(s->n, 2); /* the 30 s registration is gone, the others stay */
    assert_string_equal(s->eps[0].addr, "127.0.0.1:8001");
    assert_string_equal(s->eps[0].id, "b-2");
    assert_string_equal(s->eps[1].addr, "127.0.0.1:8002");
    ft_naming_snapshot_release(s);
    ft_naming_view_stats st;
    ft_naming_view_stats_get(v, &st);
    assert_int_equal(st.stale_dropped, 1);
    assert_true(st.stale);
    /* the 300 s registration goes once its TTL has passed too: 45 + 300 = 345 */
    for (t = 120; t < 345; t += 5, advance_ms(5000))
        ft_naming_view_apply(v, NULL, FTRPC_ESYS);
    assert_int_equal(current_n(v, NULL), 2);
    ft_naming_view_apply(v, NULL, FTRPC_ESYS);
    assert_int_equal(current_n(v, NULL), 1); /* the static entry has no TTL: never dropped */
    /* the registry answers again: its list is taken at once */
    apply_entries(v, eps, 3);
    assert_int_equal(current_n(v, NULL), 3);
    ft_naming_view_free(v);
    ftrpc_log_set_sink(NULL, NULL);
}

/* Every entry dropped: the view is empty (a client then fails calls with FTRPC_ENOENDPOINT), at
 * once, without the empty grace: the registry did not say "empty", the bound did. */
static void stale_bound_empties_the_view_when_every_ttl_passed(void **state)
{
    (void)state;
    ftrpc_log_set_sink(sink, NULL);
    ft_naming_view *v = bounded_view(10000); /* shorter than the TTL: the TTL decides */
    seen_t seen = {0};
    int id;
    assert_int_equal(ft_naming_view_listen(v, on_change, &seen, &id), 0);
    const ft_endpoint eps[] = {reg_entry("127.0.0.1:8000", "a-1", TTL_S * 1000),
                               reg_entry("127.0.0.1:8001", "b-2", TTL_S * 1000)};
    int64_t t = 0;
    run_outage(v, eps, 2, 75, &t); /* errors at 60 .. 70: the TTL passes at 75 */
    assert_int_equal(current_n(v, NULL), 2);
    ft_naming_view_apply(v, NULL, FTRPC_ESYS); /* t = 75 */
    uint64_t version = 0;
    assert_int_equal(current_n(v, &version), 0);
    assert_int_equal(seen.last_n, 0);
    assert_int_equal(seen.last_version, version);
    ft_naming_view_unlisten(v, id);
    ft_naming_view_free(v);
    ftrpc_log_set_sink(NULL, NULL);
}

/* The default keeps serving the last list however long the outage (what kept 22,998 calls alive
 * in a test): a day of errors drops nothing. */
static void without_a_stale_bound_the_last_list_is_served_for_a_day(void **state)
{
    (void)state;
    ftrpc_log_set_sink(sink, NULL);
    ft_naming_view *v = bounded_view(0);
    const ft_endpoint eps[] = {reg_entry("127.0.0.1:8000", "a-1", TTL_S * 1000)};
    int64_t t = 0;
    run_outage(v, eps, 1, 60, &t);
    for (int i = 0; i < 24 * 60; i++) { /* an error a minute for a day */
        advance_ms(60000);
        ft_naming_view_apply(v, NULL, FTRPC_ESYS);
    }
    assert_int_equal(current_n(v, NULL), 1);
    ft_naming_view_free(v);
    ftrpc_log_set_sink(NULL, NULL);
}

/* Instance ids reach the snapshot, and a new id on the same address (a restarted server) is a
 * change the view publishes. */
static void instance_ids_reach_the_snapshot_and_a_new_id_is_a_change(void **state)
{
    (void)state;
    ft_naming_view *v = bounded_view(0);
    ft_endpoint ep = reg_entry("127.0.0.1:8000", "first-run", TTL_S * 1000);
    apply_entries(v, &ep, 1);
    uint64_t v1 = 0, v2 = 0;
    current_n(v, &v1);
    apply_entries(v, &ep, 1);
    current_n(v, &v2);
    assert_int_equal(v1, v2);
    snprintf(ep.id, sizeof ep.id, "second-run");
    apply_entries(v, &ep, 1);
    ft_naming_snapshot *s = ft_naming_view_get(v);
    assert_int_equal(s->version, v1 + 1);
    assert_string_equal(s->eps[0].id, "second-run");
    assert_int_equal(s->eps[0].ttl_ms, TTL_S * 1000);
    ft_naming_snapshot_release(s);
    ft_naming_view_free(v);
}

/* Readers take and drop snapshots while a writer swaps them: under ASan a use-after-free or a
 * leak in the ref counting shows up here. */
static atomic_bool stop_readers;
static atomic_int reader_faults; /* cmocka's asserts are for the main thread only */
static void *reader(void *arg)
{
    ft_naming_view *v = arg;
    uint64_t last = 0;
    while (!atomic_load(&stop_readers)) {
        ft_naming_snapshot *s = ft_naming_view_get(v);
        if (s->version < last) atomic_fetch_add(&reader_faults, 1);
        last = s->version;
        for (size_t i = 0; i < s->n; i++)
            if (s->eps[i].addr[0] != 'h') atomic_fetch_add(&reader_faults, 1);
        ft_naming_snapshot_release(s);
    }
    return NULL;
}

static void readers_race_updates_safely(void **state)
{
    ft_naming_view *v = manual_view(0, -1);
    pthread_t th[2];
    atomic_store(&stop_readers, false);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, reader, v), 0);
    for (int i = 0; i < 2000; i++) {
        char spec[64];
        snprintf(spec, sizeof spec, "h%d:1,h:%d", i % 7, 1 + i % 5);
        apply_spec(v, spec);
    }
    atomic_store(&stop_readers, true);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&reader_faults), 0);
    uint64_t ver;
    current_n(v, &ver);
    assert_true(ver > 100);
    ft_naming_view_free(v);
}

static void view_over_list_url_is_ready_at_once(void **state)
{
    ft_naming_view *v;
    assert_int_equal(ft_naming_view_open("list://127.0.0.1:1,127.0.0.1:2", NULL, &v), 0);
    assert_int_equal(ft_naming_view_wait_ready(v, 0), 0);
    assert_int_equal(current_n(v, NULL), 2);
    ft_naming_view_free(v);
    assert_int_equal(ft_naming_view_open("list://nope", NULL, &v), FTRPC_EADDR);
}

/* ---- file:// through a real watch ---- */

static int64_t mono_ms(void)
{
    return ft_now_ns() / FT_NS_PER_MS;
}

/* Polls `cond` for up to ms milliseconds. */
static bool wait_for(ft_naming_view *v, size_t n, const char *first, int64_t ms)
{
    int64_t end = mono_ms() + ms;
    while (mono_ms() < end) {
        ft_naming_snapshot *s = ft_naming_view_get(v);
        bool ok = s->n == n && (!first || (n > 0 && strcmp(s->eps[0].addr, first) == 0));
        ft_naming_snapshot_release(s);
        if (ok) return true;
        usleep(5000);
    }
    return false;
}

static void write_replace(const char *dir, const char *name, const char *text)
{
    char tmp[512], path[512];
    snprintf(tmp, sizeof tmp, "%s/.%s.new", dir, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(rename(tmp, path), 0); /* what editors do */
}

static void file_view_follows_replacements_and_survives_bad_edits(void **state)
{
    char dir[] = "/tmp/ftrpc-file-XXXXXX";
    assert_non_null(mkdtemp(dir));
    write_replace(dir, "servers", "127.0.0.1:1\n127.0.0.1:2 w=5\n");
    char url[600];
    snprintf(url, sizeof url, "file://%s/servers", dir);
    /* a long rescan: only inotify can make the deadlines below */
    ft_naming_view_opts o = {.rescan_ms = 60000, .empty_grace_ms = -1};
    ft_naming_view *v;
    assert_int_equal(ft_naming_view_open(url, &o, &v), 0);
    assert_int_equal(ft_naming_view_wait_ready(v, 1000), 0);
    assert_true(wait_for(v, 2, "127.0.0.1:1", 1000));

    write_replace(dir, "servers", "# one left\n127.0.0.1:9\n");
    assert_true(wait_for(v, 1, "127.0.0.1:9", 1000));

    /* a bad edit: the old list stays, the view is stale */
    write_replace(dir, "servers", "127.0.0.1:9\nthis is not an address\n");
    int64_t end = mono_ms() + 1000;
    ft_naming_view_stats st = {0};
    while (mono_ms() < end) {
        ft_naming_view_stats_get(v, &st);
        if (st.stale) break;
        usleep(5000);
    }
    assert_true(st.stale);
    assert_true(wait_for(v, 1, "127.0.0.1:9", 10));

    /* fixed: fresh again */
    write_replace(dir, "servers", "127.0.0.1:7\n127.0.0.1:8\n");
    assert_true(wait_for(v, 2, "127.0.0.1:7", 1000));
    ft_naming_view_stats_get(v, &st);
    assert_false(st.stale);

    /* stop is prompt although the rescan period is a minute */
    int64_t t0 = mono_ms();
    ft_naming_view_free(v);
    assert_true(mono_ms() - t0 < 5000); /* not the minute of the rescan period */
    char path[600];
    snprintf(path, sizeof path, "%s/servers", dir);
    unlink(path);
    rmdir(dir);
}

static void file_view_of_a_missing_file_is_not_ready(void **state)
{
    ft_naming_view *v;
    ft_naming_view_opts o = {.rescan_ms = 20};
    assert_int_equal(ft_naming_view_open("file:///nonexistent-ftrpc/servers", &o, &v), 0);
    assert_int_equal(ft_naming_view_wait_ready(v, 100), FTRPC_ERPCTIMEDOUT);
    ft_naming_view_stats st;
    int64_t end = mono_ms() + 5000;
    do {
        usleep(5000);
        ft_naming_view_stats_get(v, &st);
    } while (st.errors < 3 && mono_ms() < end);
    assert_true(st.errors >= 3); /* rescans keep trying */
    ft_naming_view_free(v);
}

int main(void)
{
    ftrpc_log_set_sink(sink, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(first_answer_publishes_in_order_without_duplicates),
        cmocka_unit_test(error_keeps_last_good_list_and_marks_stale),
        cmocka_unit_test(error_before_any_answer_leaves_view_empty),
        cmocka_unit_test(after_an_outage_answers_add_endpoints_but_remove_none_for_the_hold),
        cmocka_unit_test(sudden_empty_is_kept_out_for_the_grace_period),
        cmocka_unit_test(outage_lines_give_the_size_of_the_list_served),
        cmocka_unit_test(negative_grace_accepts_empty_at_once),
        cmocka_unit_test(first_empty_answer_is_accepted),
        cmocka_unit_test(bad_options_are_refused),
        cmocka_unit_test(stale_bound_drops_entries_whose_ttl_passed_once_the_outage_is_long_enough),
        cmocka_unit_test(stale_bound_empties_the_view_when_every_ttl_passed),
        cmocka_unit_test(without_a_stale_bound_the_last_list_is_served_for_a_day),
        cmocka_unit_test(instance_ids_reach_the_snapshot_and_a_new_id_is_a_change),
        cmocka_unit_test(readers_race_updates_safely),
        cmocka_unit_test(view_over_list_url_is_ready_at_once),
        cmocka_unit_test(file_view_follows_replacements_and_survives_bad_edits),
        cmocka_unit_test(file_view_of_a_missing_file_is_not_ready),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
