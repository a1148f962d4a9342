/* A server out of file descriptors: an echo-server child whose RLIMIT_NOFILE is cut to 1,024
 * (soft and hard, so it cannot raise it) is flooded with 2,000 connections that stay open. While
 * the flood holds, accept() fails with EMFILE; the server must not spin on its level-triggered
 * listener (measured: a whole core, 4.2 million failed accepts in 12 s, before the fix) but shed
 * what waits in the backlog, using under 10% of a core; once descriptors free up, a new client is
 * served. The child's CPU time comes from /proc/PID/stat. In process: start raises the soft limit
 * to the hard one and warns when max_connections is above it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "harness.h"

enum { CHILD_FD_LIMIT = 1024, FLOOD = 2000, MEASURE_MS = 2000 };

/* utime + stime of a process, in clock ticks, or -1. */
static long long cpu_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* the command name may hold spaces: fields are counted after its closing parenthesis */
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    unsigned long long utime = 0, stime = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        return -1;
    return (long long)(utime + stime);
}

static int call_succeeds(void *arg)
{
    ftrpc_client *client = arg;
    ftrpc_buf *req = ftrpc_buf_new();
    ftrpc_buf_append(req, "hi", 2);
    ftrpc_result res;
    int ok = ftrpc_call(client, "example.EchoService", "Echo", req, NULL, NULL, &res) == 0;
    ftrpc_result_fini(&res);
    ftrpc_buf_free(req);
    return ok;
}

static void out_of_descriptors_the_server_sheds_instead_of_spinning(void **state)
{
    (void)state;
    if (h_raise_fd_limit() < FLOOD + 200) {
        print_message("this process may not hold %d descriptors: skipped\n", FLOOD + 200);
        skip();
    }
    h_server s;
    assert_int_equal(h_server_start(&s, NULL), 0);
    struct rlimit cut = {CHILD_FD_LIMIT, CHILD_FD_LIMIT};
    assert_int_equal(prlimit(s.pid, RLIMIT_NOFILE, &cut, NULL), 0);

    int *fds = malloc(sizeof(int) * FLOOD);
    assert_non_null(fds);
    int opened = 0;
    for (int i = 0; i < FLOOD; i++) {
        fds[i] = h_raw_connect(s.port);
        if (fds[i] >= 0) opened++;
    }
    h_sleep_ms(200); /* let the child accept what it can */
    long long t0 = cpu_ticks(s.pid);
    h_sleep_ms(MEASURE_MS);
    long long t1 = cpu_ticks(s.pid);
    double core_share = (double)(t1 - t0) / (double)sysconf(_SC_CLK_TCK) * 1000.0 / MEASURE_MS;
    int shed_lines = h_server_stderr_count(&s, "waiting connections");
    print_message("%d of %d connections opened; the child used %.1f%% of a core over %d ms with "
                  "the flood holding; %d shed lines logged\n",
                  opened, FLOOD, core_share * 100, MEASURE_MS, shed_lines);
    assert_true(t0 >= 0 && t1 >= 0);
    assert_true(core_share < 0.10);
    assert_true(shed_lines >= 1);

    /* descriptors free up: a new client is served */
    for (int i = 0; i < FLOOD; i++)
        if (fds[i] >= 0) close(fds[i]);
    free(fds);
    ftrpc_client *client = h_client_of(&s, 1000);
    assert_non_null(client);
    assert_true(h_wait_until(call_succeeds, client, 10000 * H_VG));
    ftrpc_client_free(client);
    assert_int_equal(h_server_stop(&s, 10000), 0);
}

static atomic_int limit_warnings;

static void count_limit_warnings(ftrpc_log_level level, const char *msg, void *arg)
{
    (void)arg;
    if (level == FTRPC_LOG_WARN && strstr(msg, "RLIMIT_NOFILE allows"))
        atomic_fetch_add(&limit_warnings, 1);
}

/* In process: start raises the soft limit to the hard one, and says so when max_connections
 * cannot be honoured under it. */
static void start_raises_the_soft_limit_and_warns_when_max_connections_is_above_it(void **state)
{
    (void)state;
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max < 256 || rl.rlim_max > 10000000) skip();
    struct rlimit lowered = {128, rl.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &lowered), 0);
    ftrpc_log_set_sink(count_limit_warnings, NULL);

    ftrpc_server *fits = NULL, *too_many = NULL;
    assert_int_equal(ftrpc_server_new(&(ftrpc_server_options){.max_connections = 100}, &fits), 0);
    assert_int_equal(ftrpc_server_start(fits, "127.0.0.1:0"), 0);
    struct rlimit now;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &now), 0);
    assert_true(now.rlim_cur == rl.rlim_max);
    assert_int_equal(atomic_load(&limit_warnings), 0);

    ftrpc_server_options big = {.max_connections = (int)rl.rlim_max + 1};
    assert_int_equal(ftrpc_server_new(&big, &too_many), 0);
    assert_int_equal(ftrpc_server_start(too_many, "127.0.0.1:0"), 0);
    assert_int_equal(atomic_load(&limit_warnings), 1);

    ftrpc_log_set_sink(NULL, NULL);
    ftrpc_server_free(too_many);
    ftrpc_server_free(fits);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(out_of_descriptors_the_server_sheds_instead_of_spinning),
        cmocka_unit_test(start_raises_the_soft_limit_and_warns_when_max_connections_is_above_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
