/* Peers that read their replies slowly, over a real socket to a server in this process, with a
 * short idle timeout: a peer that keeps reading a large reply, however slowly, is served to the
 * end, even when the reply takes many idle timeouts to drain; one that stops reading in the middle
 * of a reply is cut off after an idle timeout (with the log line), and the server goes on serving
 * everyone else. Each case takes a second or two. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

enum { IDLE_MS = 300, REPLY = 16 << 20 };

static atomic_int unread_logs;

static void sink(ftrpc_log_level level, const char *msg, void *arg)
{
    (void)level;
    (void)arg;
    if (strstr(msg, "does not read its replies")) atomic_fetch_add(&unread_logs, 1);
}

/* "big": a reply of REPLY bytes; anything else is echoed */
static void handler(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    const ftrpc_buf *req = ftrpc_server_call_request(call);
    if (ftrpc_buf_size(req) == 3) {
        ftrpc_buf *big = h_pattern_buf(REPLY, 7);
        ftrpc_server_call_reply(call, big, NULL);
        ftrpc_buf_free(big);
        return;
    }
    ftrpc_server_call_reply(call, req, NULL);
}

/* The log's counter starts from 0 and counts this server's lines. */
static ftrpc_server *start_server(void)
{
    atomic_store(&unread_logs, 0);
    ftrpc_log_set_sink(sink, NULL);
    ftrpc_server *s = NULL;
    assert_int_equal(ftrpc_server_new(&(ftrpc_server_options){.idle_timeout_ms = IDLE_MS}, &s), 0);
    assert_int_equal(ftrpc_server_add_method(s, "test.Svc", "M", handler, NULL, NULL), 0);
    assert_int_equal(ftrpc_server_start(s, "127.0.0.1:0"), 0);
    return s;
}

/* A connected socket with a small receive buffer (the kernel then holds little of a reply for the
 * peer), that has asked for the big reply. */
static int ask_big(ftrpc_server *s)
{
    int fd = -1;
    for (int tries = 0; tries < 3 && fd < 0; tries++)
        fd = h_raw_connect(ftrpc_server_port(s));
    assert_true(fd >= 0);
    int small = 16384;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    uint8_t frame[256];
    size_t n = h_request_frame(frame, sizeof frame, "test.Svc", "M", 1, "big", 3);
    assert_int_equal(h_raw_send(fd, frame, n), 0);
    return fd;
}

/* Reads up to `want` bytes in pieces of `piece`, waiting pause_ms after each: returns how many
 * arrived before the peer closed, or before 10 s without a byte. */
static size_t read_slowly(int fd, size_t want, size_t piece, int pause_ms)
{
    static uint8_t buf[64 << 10];
    size_t got = 0;
    while (got < want) {
        size_t ask = want - got < piece ? want - got : piece;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 10000) != 1) break;
        ssize_t r = recv(fd, buf, ask, 0);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (r <= 0) break;
        got += (size_t)r;
        if (pause_ms > 0) h_sleep_ms(pause_ms);
    }
    return got;
}

static void peer_reading_a_large_reply_slowly_but_steadily_is_served_to_the_end(void **state)
{
    (void)state;
    ftrpc_server *s = start_server();
    int fd = ask_big(s);
    int64_t t0 = h_now_ms();
    /* 16 KiB every 2 ms at most: 16 MiB take two seconds or more, many idle timeouts, but bytes
     * never stop moving for long */
    size_t want = 12 + 64 + (size_t)REPLY; /* header, meta (under 64 bytes), body */
    size_t got = read_slowly(fd, want, 16384, 2);
    int64_t took = h_now_ms() - t0;
    ftrpc_server_stats st;
    ftrpc_server_stats_get(s, &st);
    print_message("read %zu bytes in %lld ms (idle timeout %d ms): %lld idle closed, %d unread "
                  "log(s)\n",
                  got, (long long)took, IDLE_MS, (long long)st.idle_closed,
                  atomic_load(&unread_logs));
    /* the whole frame arrived: the header and body are all there, and the meta is shorter than
     * the 64 bytes asked beyond them, so the read ended at the server's orderly idle close */
    assert_true(got > (size_t)REPLY + 12);
    assert_true(got < want);
    assert_int_equal(atomic_load(&unread_logs), 0);
    close(fd);
    ftrpc_log_set_sink(NULL, NULL);
    assert_int_equal(ftrpc_server_stop(s, 1000), 0);
    ftrpc_server_free(s);
}

static int unread_logged(void *arg)
{
    (void)arg;
    return atomic_load(&unread_logs) >= 1;
}

static void peer_that_stops_reading_mid_reply_is_cut_off_and_others_are_served(void **state)
{
    (void)state;
    ftrpc_server *s = start_server();
    int fd = ask_big(s);
    /* a first megabyte, then nothing more */
    assert_int_equal(read_slowly(fd, 1 << 20, 65536, 0), (size_t)1 << 20);
    assert_int_equal(h_wait_until(unread_logged, NULL, 10000), 1);
    /* the rest the kernel still held, then the reset: far from the whole reply */
    size_t rest = read_slowly(fd, REPLY, 65536, 0);
    print_message("after the first MiB, %zu bytes more before the cut-off\n", rest);
    assert_true(rest < (size_t)REPLY - (1 << 20));
    close(fd);
    /* another peer is served, during and after */
    char url[64];
    snprintf(url, sizeof url, "127.0.0.1:%d", ftrpc_server_port(s));
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(url, &(ftrpc_client_options){.timeout_ms = 5000 * H_VG}, &c),
                     0);
    ftrpc_buf *req = ftrpc_buf_new();
    ftrpc_buf_append(req, "hello", 5);
    ftrpc_result r;
    assert_int_equal(ftrpc_call(c, "test.Svc", "M", req, NULL, NULL, &r), 0);
    assert_int_equal(ftrpc_buf_size(r.response), 5);
    ftrpc_result_fini(&r);
    ftrpc_buf_free(req);
    ftrpc_client_free(c);
    ftrpc_log_set_sink(NULL, NULL);
    assert_int_equal(ftrpc_server_stop(s, 1000), 0);
    ftrpc_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(peer_reading_a_large_reply_slowly_but_steadily_is_served_to_the_end),
        cmocka_unit_test(peer_that_stops_reading_mid_reply_is_cut_off_and_others_are_served),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
