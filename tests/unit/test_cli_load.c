/* The CLI's load generator (src/cli/load.c, compiled into this test: the CLI is no library), run
 * against an in-process server: the counts a progress line reads while calls complete on IO
 * threads never show more outcomes than calls, and once the run is over they add up.
 *
 * `ftrpc bench` once printed "-1 errors": errors were `done - ok`, two counters read one after the
 * other, and a reader descheduled between the two reads saw calls answered meanwhile as ok but
 * not as done. Such a reading goes negative when more calls succeed during the pause than have
 * failed so far, so the server here fails only one call in a thousand (some errors to count, few
 * enough to be outrun), and several readers on two cores get descheduled often. With the old
 * computation this test failed 20 runs out of 20; the readers spin for the run's one second. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "cli/load.h"
#include "ftrpc/ftrpc.h"

static atomic_long handled;

static void rarely_fail(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    /* the first early, so that a slow (valgrind) run has one too */
    if (atomic_fetch_add(&handled, 1) % 1000 == 99)
        ftrpc_server_call_fail(call, FTRPC_EINTERNAL, "one call in a thousand fails");
    else
        ftrpc_server_call_reply(call, ftrpc_server_call_request(call), NULL);
}

static const ft_load_stats *watched;
static atomic_int stop_watching;

typedef struct watcher {
    long reads, out_of_bounds;
    ft_load_counts first_bad;
} watcher;

/* Reads the counts as often as it can while the run goes on, as a progress line does now and
 * then. More readers than cores, so that readers are descheduled mid-read. */
enum { WATCHERS = 4 };
static void *watch(void *arg)
{
    watcher *w = arg;
    while (!atomic_load(&stop_watching)) {
        ft_load_counts n = ft_load_counts_get(watched);
        w->reads++;
        if (n.ok < 0 || n.errors < 0 || n.ok + n.errors > n.calls) {
            if (w->out_of_bounds++ == 0) w->first_bad = n;
        }
    }
    return NULL;
}

static void counts_read_mid_run_never_show_more_outcomes_than_calls(void **state)
{
    (void)state;
    ftrpc_server *server = NULL;
    assert_int_equal(ftrpc_server_new(NULL, &server), 0);
    assert_int_equal(
        ftrpc_server_add_method(server, "example.EchoService", "Echo", rarely_fail, NULL, NULL), 0);
    assert_int_equal(ftrpc_server_start(server, "127.0.0.1:0"), 0);
    char url[64];
    snprintf(url, sizeof url, "127.0.0.1:%d", ftrpc_server_port(server));
    ftrpc_client *client = NULL;
    ftrpc_client_options co = {.fail_mode = FTRPC_FAILFAST};
    assert_int_equal(ftrpc_client_new(url, &co, &client), 0);

    ft_load_stats stats;
    assert_int_equal(ft_load_stats_init(&stats), 0);
    watched = &stats;
    watcher w[WATCHERS] = {0};
    pthread_t readers[WATCHERS];
    for (int i = 0; i < WATCHERS; i++)
        assert_int_equal(pthread_create(&readers[i], NULL, watch, &w[i]), 0);
    ft_load_opts lo = {.client = client,
                       .service = "example.EchoService",
                       .method = "Echo",
                       .concurrency = 8,
                       .duration_s = 1.0,
                       .payload = 16};
    assert_int_equal(ft_load_run(&lo, &stats), 0);
    atomic_store(&stop_watching, 1);
    for (int i = 0; i < WATCHERS; i++)
        pthread_join(readers[i], NULL);
    long reads = 0;
    for (int i = 0; i < WATCHERS; i++) {
        reads += w[i].reads;
        if (w[i].out_of_bounds)
            fail_msg("%ld reads out of bounds, the first: %ld calls, %ld ok, %ld errors",
                     w[i].out_of_bounds, w[i].first_bad.calls, w[i].first_bad.ok,
                     w[i].first_bad.errors);
    }
    ft_load_counts end = ft_load_counts_get(&stats);
    print_message("%ld calls (%ld ok, %ld errors), counts read %ld times meanwhile\n", end.calls,
                  end.ok, end.errors, reads);
    assert_true(end.calls > 0);
    assert_int_equal(end.ok + end.errors, end.calls);
    assert_true(end.errors > 0 && end.ok > 0);
    ft_load_stats_fini(&stats);
    ftrpc_client_free(client);
    ftrpc_server_stop(server, 0);
    ftrpc_server_free(server);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(counts_read_mid_run_never_show_more_outcomes_than_calls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
