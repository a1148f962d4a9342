/* The server's dead-connection settings (ftrpc_server_options.tcp_keepalive_*, tcp_user_timeout_ms)
 * reach the sockets it accepts: a client makes a call, then the test finds the server's side of
 * that connection among its own descriptors (the server runs in this process) and reads the
 * options back with getsockopt. Table-driven: the defaults, values of one's own, and off. Bad
 * values fail ftrpc_server_new with FTRPC_EINVAL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ftrpc/ftrpc.h"
#include "harness.h"

static void echo(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    ftrpc_server_call_reply(call, ftrpc_server_call_request(call), NULL);
}

/* The descriptor of the server's side of a connection accepted on `port`: bound to the port and
 * connected (the listener has no peer; the client's side is bound elsewhere). -1 if none. */
static int accepted_fd(int port)
{
    DIR *d = opendir("/proc/self/fd");
    int found = -1;
    struct dirent *e;
    while (d && found < 0 && (e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        struct sockaddr_in self, peer;
        socklen_t sl = sizeof self, pl = sizeof peer;
        if (e->d_name[0] == '.' || getsockname(fd, (struct sockaddr *)&self, &sl) != 0 ||
            self.sin_family != AF_INET || ntohs(self.sin_port) != port ||
            getpeername(fd, (struct sockaddr *)&peer, &pl) != 0)
            continue;
        found = fd;
    }
    if (d) closedir(d);
    return found;
}

static int sockopt(int fd, int level, int name)
{
    int v = -1;
    socklen_t l = sizeof v;
    assert_int_equal(getsockopt(fd, level, name, &v, &l), 0);
    return v;
}

typedef struct keepalive_case {
    const char *name;
    ftrpc_server_options opts;
    int keepalive, idle_s, interval_s, count; /* expected; idle etc. only checked when keepalive */
    int user_timeout_ms;
} keepalive_case;

static void accepted_connections_carry_the_servers_keepalive_settings(void **state)
{
    (void)state;
    static const keepalive_case cases[] = {
        {"defaults", {0}, 1, 10, 2, 3, 0},
        {"own values",
         {.tcp_keepalive_idle_s = 7,
          .tcp_keepalive_interval_s = 3,
          .tcp_keepalive_count = 4,
          .tcp_user_timeout_ms = 1234},
         1,
         7,
         3,
         4,
         1234},
        {"off", {.tcp_keepalive_idle_s = -1, .tcp_user_timeout_ms = -1}, 0, 0, 0, 0, 0},
        {"the kernel's largest",
         {.tcp_keepalive_idle_s = 32767,
          .tcp_keepalive_interval_s = 32767,
          .tcp_keepalive_count = 127},
         1,
         32767,
         32767,
         127,
         0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const keepalive_case *k = &cases[i];
        ftrpc_server *s = NULL;
        assert_int_equal(ftrpc_server_new(&k->opts, &s), 0);
        assert_int_equal(ftrpc_server_add_method(s, "test.Svc", "Echo", echo, NULL, NULL), 0);
        assert_int_equal(ftrpc_server_start(s, "127.0.0.1:0"), 0);
        int port = ftrpc_server_port(s);
        char url[64];
        snprintf(url, sizeof url, "list://127.0.0.1:%d", port);
        ftrpc_client *c = NULL;
        assert_int_equal(ftrpc_client_new(url, NULL, &c), 0);
        ftrpc_buf *req = ftrpc_buf_new();
        ftrpc_buf_append(req, "hi", 2);
        ftrpc_result r;
        /* answered: the server has adopted the connection, options set */
        assert_int_equal(ftrpc_call(c, "test.Svc", "Echo", req, NULL, NULL, &r), 0);
        ftrpc_result_fini(&r);
        ftrpc_buf_free(req);
        int fd = accepted_fd(port);
        assert_true(fd >= 0);
        int ka = sockopt(fd, SOL_SOCKET, SO_KEEPALIVE);
        int ut = sockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT);
        print_message(
            "%s: SO_KEEPALIVE %d, idle %d s, interval %d s, count %d, user timeout %d ms\n",
            k->name, ka, sockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE),
            sockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL), sockopt(fd, IPPROTO_TCP, TCP_KEEPCNT), ut);
        assert_int_equal(ka != 0, k->keepalive);
        if (k->keepalive) {
            assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE), k->idle_s);
            assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL), k->interval_s);
            assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_KEEPCNT), k->count);
        }
        assert_int_equal(ut, k->user_timeout_ms);
        ftrpc_client_free(c);
        assert_int_equal(ftrpc_server_stop(s, 1000), 0);
        ftrpc_server_free(s);
    }
}

static void out_of_range_keepalive_settings_are_refused(void **state)
{
    (void)state;
    static const ftrpc_server_options bad[] = {
        {.tcp_keepalive_idle_s = -2},
        {.tcp_keepalive_interval_s = -1},
        {.tcp_keepalive_count = -1},
        {.tcp_user_timeout_ms = -2},
        /* past the kernel's bounds (MAX_TCP_KEEPIDLE, _KEEPINTVL, _KEEPCNT): refused here, not at
         * every connection's setsockopt, which left SO_KEEPALIVE on with the kernel's 7200 s */
        {.tcp_keepalive_idle_s = 32768},
        {.tcp_keepalive_interval_s = 32768},
        {.tcp_keepalive_count = 128},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ftrpc_server *s = NULL;
        assert_int_equal(ftrpc_server_new(&bad[i], &s), FTRPC_EINVAL);
        assert_null(s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepted_connections_carry_the_servers_keepalive_settings),
        cmocka_unit_test(out_of_range_keepalive_settings_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
