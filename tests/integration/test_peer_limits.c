/* Limits against slow and greedy peers, over real sockets:
 *  - 1,000 connections that send half a frame and stall, plus 200 that never send, cost the
 *    echo-server child a bounded amount of memory (VmRSS from /proc), are all closed by the read
 *    and idle timeouts within a bounded wait, and a well-behaved client sees no failed call;
 *  - a peer that keeps completing frames is not cut off by the read timeout, even when its buffer
 *    never drains (the timeout is about one frame that does not complete, not about a busy peer);
 *  - past max_connections new connections are closed at once and counted;
 *  - past max_inflight_per_connection a connection's extra requests get ELIMIT while another
 *    connection is served;
 *  - a peer that sends requests but never reads the replies is still closed by the idle timeout,
 *    and does not hold up a graceful stop past its bound;
 *  - a correlation_id already in flight on a connection is refused, and calls that outlive their
 *    connection finish safely (the sanitizer build checks the memory).
 * The numbers measured here are quoted in docs/security.md. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "harness.h"

enum { STALLED = 1000, SILENT = 200, READ_TIMEOUT_MS = 2000, IDLE_TIMEOUT_MS = 2500 };

/* The child's RSS growth bound during the attack, above its RSS before it: measured +5.7 MB in
 * release, the worst case is about 11 MB (docs/security.md explains both). The sanitizers'
 * allocator pads and quarantines every block, hence their own bound; TSan also maps 4 bytes of
 * shadow for every byte the child touches (measured +33 MB at -O1): 4 times the plain bound. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_GROWTH_BOUND_KB (32 * 1024)
#elif H_UNDER_TSAN
#define RSS_GROWTH_BOUND_KB (64 * 1024)
#else
#define RSS_GROWTH_BOUND_KB (16 * 1024)
#endif

/* The first half of a request frame: a header that promises body bytes that never come. */
static size_t half_frame(uint8_t *out, size_t cap)
{
    uint8_t whole[512];
    size_t n =
        h_request_frame(whole, sizeof whole, "example.EchoService", "Echo", 1, "0123456789", 10);
    assert_true(n / 2 <= cap);
    memcpy(out, whole, n / 2);
    return n / 2;
}

static void
stalled_and_silent_peers_cost_bounded_memory_and_are_closed_by_the_timeouts(void **state)
{
    (void)state;
    int stalled = STALLED, silent = SILENT;
    long limit = h_raise_fd_limit();
    /* ours plus the child's (it inherits the limit): each connection is one fd on both sides */
    if (limit < stalled + silent + 200) {
        int room = (int)(limit - 200) > 0 ? (int)(limit - 200) : 0;
        stalled = room * 5 / 6;
        silent = room / 6;
        print_message("RLIMIT_NOFILE is %ld: lowering the attack to %d stalled + %d silent\n",
                      limit, stalled, silent);
        assert_true(stalled >= 10);
    }
    char rt[16], it[16];
    snprintf(rt, sizeof rt, "%d", READ_TIMEOUT_MS);
    snprintf(it, sizeof it, "%d", IDLE_TIMEOUT_MS);
    h_server s;
    const char *args[] = {"--read-timeout-ms", rt, "--idle-timeout-ms", it, NULL};
    assert_int_equal(h_server_start(&s, args), 0);

    ftrpc_client *good = h_client_of(&s, 2000);
    assert_non_null(good);
    h_load load = {.client = good, .window = 4, .pace_us = 500, .max_calls = 1000000};
    assert_int_equal(h_load_start(&load), 0);
    assert_true(h_load_wait_done(&load, 100, 5000));
    long rss_before = h_rss_kb(s.pid);

    int n = stalled + silent;
    int *fds = malloc(sizeof(int) * (size_t)n);
    assert_non_null(fds);
    uint8_t half[256];
    size_t hlen = half_frame(half, sizeof half);
    int64_t t0 = h_now_ms();
    long rss_peak = rss_before;
    for (int i = 0; i < n; i++) {
        fds[i] = h_raw_connect(s.port);
        assert_true(fds[i] >= 0);
        if (i < stalled) assert_int_equal(h_raw_send(fds[i], half, hlen), 0);
        if (i % 100 == 99) {
            long r = h_rss_kb(s.pid);
            if (r > rss_peak) rss_peak = r;
        }
    }
    int64_t opened_ms = h_now_ms() - t0;
    /* the peak: every connection open and its half frame buffered, before any timeout fired */
    for (int i = 0; i < 5; i++) {
        long r = h_rss_kb(s.pid);
        if (r > rss_peak) rss_peak = r;
        h_sleep_ms(20);
    }
    int64_t sampled_ms = h_now_ms() - t0;

    /* stalled ones go at the read timeout, silent ones at the idle timeout; the bound leaves room
     * for a slow (sanitizer) build and for opening them all */
    int closed_stalled = h_wait_all_closed(fds, stalled, READ_TIMEOUT_MS + 5000);
    int64_t stalled_closed_ms = h_now_ms() - t0;
    int closed_silent = h_wait_all_closed(fds + stalled, silent, IDLE_TIMEOUT_MS + 5000);
    int64_t silent_closed_ms = h_now_ms() - t0;
    long rss_after = h_rss_kb(s.pid);

    int before = atomic_load(&load.done);
    assert_true(h_load_wait_done(&load, before + 100, 5000)); /* still served afterwards */
    assert_true(h_load_stop(&load, 5000));
    ftrpc_client_free(good);
    print_message("%d stalled + %d silent: opened in %lld ms (RSS sampled by %lld ms); VmRSS "
                  "before %ld kB, peak %ld kB (+%ld kB, %ld B a connection), after %ld kB; "
                  "stalled closed by %lld ms, silent by %lld ms; good calls %d, failed %d\n",
                  stalled, silent, (long long)opened_ms, (long long)sampled_ms, rss_before,
                  rss_peak, rss_peak - rss_before, (rss_peak - rss_before) * 1024 / n, rss_after,
                  (long long)stalled_closed_ms, (long long)silent_closed_ms,
                  atomic_load(&load.done), atomic_load(&load.failed));
    assert_int_equal(closed_stalled, stalled);
    assert_int_equal(closed_silent, silent);
    /* nothing closes them early: the stalled ones not before the read timeout */
    assert_true(stalled_closed_ms >= READ_TIMEOUT_MS - 100);
    /* after the closes too: freed memory is not handed back at once (the sanitizers' allocator
     * even holds it in quarantine), so that is where the high-water mark may be */
    assert_true((rss_peak > rss_after ? rss_peak : rss_after) - rss_before < RSS_GROWTH_BOUND_KB);
    assert_int_equal(atomic_load(&load.failed), 0);
    assert_int_equal(atomic_load(&load.duplicates), 0);
    h_load_fini(&load);
    free(fds);
    assert_int_equal(h_server_stop(&s, 10000), 0);
}

static void a_busy_peer_whose_buffer_never_drains_is_not_cut_off_by_the_read_timeout(void **state)
{
    (void)state;
    h_server s;
    const char *args[] = {"--read-timeout-ms", "300", NULL};
    assert_int_equal(h_server_start(&s, args), 0);
    int fd = h_raw_connect(s.port);
    assert_true(fd >= 0);
    /* every write completes the previous frame and starts the next: frames keep completing, yet
     * the server's input buffer is never empty after a read */
    enum { FRAMES = 12 };
    uint8_t frames[FRAMES][256];
    size_t len[FRAMES];
    for (int i = 0; i < FRAMES; i++)
        len[i] = h_request_frame(frames[i], sizeof frames[i], "example.EchoService", "Echo",
                                 100 + i, "abc", 3);
    assert_int_equal(h_raw_send(fd, frames[0], len[0] / 2), 0);
    for (int i = 0; i < FRAMES; i++) {
        h_sleep_ms(100); /* 12 x 100 ms: four read timeouts long */
        assert_int_equal(h_raw_send(fd, frames[i] + len[i] / 2, len[i] - len[i] / 2), 0);
        if (i + 1 < FRAMES) assert_int_equal(h_raw_send(fd, frames[i + 1], len[i + 1] / 2), 0);
        h_response r;
        assert_int_equal(h_raw_read_response(fd, 2000, &r), 1);
        assert_int_equal(r.correlation_id, 100 + i);
        assert_int_equal(r.error_code, 0);
    }
    close(fd);
    assert_int_equal(h_server_stop(&s, 10000), 0);
}

/* ---- in-process servers ---- */

static void echo(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    ftrpc_server_call_reply(call, ftrpc_server_call_request(call), NULL);
}

static void slow_echo(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    h_sleep_ms(300); /* on a worker thread: blocking is allowed there */
    ftrpc_server_call_reply(call, ftrpc_server_call_request(call), NULL);
}

static ftrpc_server *start_server(const ftrpc_server_options *so, ftrpc_handler_cb h,
                                  ftrpc_run_mode mode)
{
    ftrpc_server *s = NULL;
    assert_int_equal(ftrpc_server_new(so, &s), 0);
    ftrpc_method_options mo = {.run_mode = mode};
    assert_int_equal(ftrpc_server_add_method(s, "test.Svc", "M", h, NULL, &mo), 0);
    assert_int_equal(ftrpc_server_start(s, "127.0.0.1:0"), 0);
    return s;
}

static int echo_once(int fd, int64_t cid)
{
    uint8_t frame[256];
    size_t n = h_request_frame(frame, sizeof frame, "test.Svc", "M", cid, "x", 1);
    h_response r;
    return h_raw_send(fd, frame, n) == 0 && h_raw_read_response(fd, 2000, &r) == 1 &&
           r.error_code == 0 && r.correlation_id == cid;
}

static int connections_at_most(void *arg)
{
    ftrpc_server_stats st;
    ftrpc_server_stats_get(arg, &st);
    return st.connections <= 45;
}

static void past_max_connections_new_ones_are_closed_at_once_and_counted(void **state)
{
    (void)state;
    enum { MAX = 50, EXTRA = 10 };
    ftrpc_server *s =
        start_server(&(ftrpc_server_options){.max_connections = MAX}, echo, FTRPC_RUN_IN_IO_THREAD);
    int port = ftrpc_server_port(s);
    int fds[MAX + EXTRA];
    for (int i = 0; i < MAX; i++) {
        fds[i] = h_raw_connect(port);
        assert_true(fds[i] >= 0);
        assert_true(echo_once(fds[i], 1)); /* answered: adopted, counted */
    }
    for (int i = MAX; i < MAX + EXTRA; i++) {
        fds[i] = h_raw_connect(port);
        assert_true(fds[i] >= 0);
        int64_t t0 = h_now_ms();
        assert_int_equal(h_raw_wait_closed(fds[i], 1000), 1);
        assert_true(h_now_ms() - t0 < 1000);
        close(fds[i]);
    }
    ftrpc_server_stats st;
    ftrpc_server_stats_get(s, &st);
    assert_int_equal(st.connections, MAX);
    assert_int_equal(st.connections_refused, EXTRA);
    /* those already in are untouched */
    for (int i = 0; i < MAX; i++)
        assert_true(echo_once(fds[i], 2));
    /* room again once some leave */
    for (int i = 0; i < 5; i++)
        close(fds[i]);
    assert_true(h_wait_until(connections_at_most, s, 2000));
    int fd = h_raw_connect(port);
    assert_true(fd >= 0);
    assert_true(echo_once(fd, 3));
    close(fd);
    for (int i = 5; i < MAX; i++)
        close(fds[i]);
    assert_int_equal(ftrpc_server_stop(s, 1000), 0);
    ftrpc_server_free(s);
}

static void past_max_inflight_per_connection_extra_requests_get_elimit(void **state)
{
    (void)state;
    enum { CAP = 2, SENT = 6 };
    ftrpc_server *s = start_server(
        &(ftrpc_server_options){.max_inflight_per_connection = CAP, .worker_threads = 4}, slow_echo,
        FTRPC_RUN_IN_WORKER);
    int port = ftrpc_server_port(s);
    int fd = h_raw_connect(port);
    assert_true(fd >= 0);
    static uint8_t bytes[SENT * 256];
    size_t len = 0;
    for (int i = 0; i < SENT; i++)
        len += h_request_frame(bytes + len, sizeof bytes - len, "test.Svc", "M", 1 + i, "y", 1);
    assert_int_equal(h_raw_send(fd, bytes, len), 0);
    /* meanwhile another connection is served: the cap is per connection */
    int other = h_raw_connect(port);
    assert_true(other >= 0);
    assert_true(echo_once(other, 99));
    close(other);
    int ok = 0, limited = 0;
    for (int i = 0; i < SENT; i++) {
        h_response r;
        assert_int_equal(h_raw_read_response(fd, 3000, &r), 1);
        if (r.error_code == 0)
            ok++;
        else if (r.error_code == 2004)
            limited++;
        else
            fail_msg("unexpected error %d: %s", r.error_code, r.error_text);
    }
    assert_int_equal(ok, CAP);
    assert_int_equal(limited, SENT - CAP);
    /* once they finish, the connection takes requests again */
    assert_true(echo_once(fd, 50));
    close(fd);
    ftrpc_method_stats ms;
    assert_int_equal(ftrpc_server_method_stats(s, "test.Svc", "M", &ms), 0);
    assert_int_equal(ms.rejected, SENT - CAP);
    assert_int_equal(ftrpc_server_stop(s, 2000), 0);
    ftrpc_server_free(s);
}

static int no_connections(void *arg);

/* A peer that sends requests, never reads the replies and then goes silent: when the idle timeout
 * closes it, the replies stuck in its connection cannot be flushed, so waiting for them would
 * hold the connection (and up to max_unwritten_bytes of replies) for ever. */
static void an_idle_peer_that_never_reads_its_replies_is_still_closed(void **state)
{
    (void)state;
    ftrpc_server *s =
        start_server(&(ftrpc_server_options){.idle_timeout_ms = 300}, echo, FTRPC_RUN_IN_IO_THREAD);
    int fd = h_raw_connect(ftrpc_server_port(s));
    assert_true(fd >= 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    enum { PAYLOAD = 128 << 10, FRAMES = 64 }; /* 8 MB of replies: more than socket buffers hold */
    static uint8_t payload[PAYLOAD], frame[PAYLOAD + 256];
    size_t n = h_request_frame(frame, sizeof frame, "test.Svc", "M", 1, payload, sizeof payload);
    for (int i = 0; i < FRAMES; i++)
        if (h_raw_send(fd, frame, n) != 0) break;
    /* silent from now on; the idle timeout must close it all the same */
    int64_t t0 = h_now_ms();
    assert_true(h_wait_until(no_connections, s, 3000));
    print_message("closed %lld ms after the peer went silent\n", (long long)(h_now_ms() - t0));
    close(fd);
    ftrpc_server_stats st;
    ftrpc_server_stats_get(s, &st);
    assert_int_equal(st.idle_closed, 1);
    assert_int_equal(ftrpc_server_stop(s, 1000), 0);
    ftrpc_server_free(s);
}

/* The same peer at a graceful stop: its replies cannot be flushed, so the stop must not wait for
 * them past its bound, and the connection must be gone before the server is freed. */
static void stop_closes_a_peer_that_never_reads_its_replies(void **state)
{
    (void)state;
    ftrpc_server *s = start_server(NULL, echo, FTRPC_RUN_IN_IO_THREAD);
    int fd = h_raw_connect(ftrpc_server_port(s));
    assert_true(fd >= 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    enum { PAYLOAD = 128 << 10, FRAMES = 64 };
    static uint8_t payload[PAYLOAD], frame[PAYLOAD + 256];
    size_t n = h_request_frame(frame, sizeof frame, "test.Svc", "M", 1, payload, sizeof payload);
    for (int i = 0; i < FRAMES; i++)
        if (h_raw_send(fd, frame, n) != 0) break;
    h_sleep_ms(100);
    int64_t t0 = h_now_ms();
    assert_int_equal(ftrpc_server_stop(s, 200), 0);
    int64_t took = h_now_ms() - t0;
    print_message("stop took %lld ms\n", (long long)took);
    ftrpc_server_stats st;
    ftrpc_server_stats_get(s, &st);
    assert_int_equal(st.connections, 0);
    ftrpc_server_free(s);
    close(fd); /* after the free: nothing may be left to notice */
    h_sleep_ms(100);
    assert_true(took < 4000); /* 2 s for replies to flush, then the reset */
}

static ftrpc_server_call *_Atomic held[8];
static atomic_int nheld;

static void hold(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    int i = atomic_fetch_add(&nheld, 1);
    if (i < 8)
        atomic_store(&held[i], call);
    else
        ftrpc_server_call_fail(call, FTRPC_ELIMIT, "test holds 8 at most");
}

static int no_connections(void *arg)
{
    ftrpc_server_stats st;
    ftrpc_server_stats_get(arg, &st);
    return st.connections == 0;
}

static void
a_correlation_id_already_in_flight_is_refused_and_held_calls_outlive_their_connection(void **state)
{
    (void)state;
    atomic_store(&nheld, 0);
    ftrpc_server *s = start_server(&(ftrpc_server_options){.max_inflight_per_connection = 4}, hold,
                                   FTRPC_RUN_IN_IO_THREAD);
    int fd = h_raw_connect(ftrpc_server_port(s));
    assert_true(fd >= 0);
    /* 5 and 0 twice each: the repeats must neither replace the first in the connection's table
     * nor slip past the in-flight cap */
    static const int64_t cids[] = {5, 5, 0, 0, 0, 0, 0, 0};
    enum { N = sizeof cids / sizeof cids[0] };
    static uint8_t bytes[N * 256];
    size_t len = 0;
    for (int i = 0; i < N; i++)
        len += h_request_frame(bytes + len, sizeof bytes - len, "test.Svc", "M", cids[i], "z", 1);
    assert_int_equal(h_raw_send(fd, bytes, len), 0);
    for (int i = 0; i < N - 2; i++) {
        h_response r;
        assert_int_equal(h_raw_read_response(fd, 2000, &r), 1);
        assert_int_not_equal(r.error_code, 0);
    }
    assert_int_equal(atomic_load(&nheld), 2);
    close(fd);
    assert_true(h_wait_until(no_connections, s, 2000));
    /* the held calls finish after their connection is gone: dropped, nothing touched */
    for (int i = 0; i < 2; i++)
        assert_int_equal(ftrpc_server_call_reply(atomic_load(&held[i]), NULL, NULL), 0);
    assert_int_equal(ftrpc_server_stop(s, 1000), 0);
    ftrpc_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            stalled_and_silent_peers_cost_bounded_memory_and_are_closed_by_the_timeouts),
        cmocka_unit_test(a_busy_peer_whose_buffer_never_drains_is_not_cut_off_by_the_read_timeout),
        cmocka_unit_test(past_max_connections_new_ones_are_closed_at_once_and_counted),
        cmocka_unit_test(past_max_inflight_per_connection_extra_requests_get_elimit),
        cmocka_unit_test(an_idle_peer_that_never_reads_its_replies_is_still_closed),
        cmocka_unit_test(stop_closes_a_peer_that_never_reads_its_replies),
        cmocka_unit_test(
            a_correlation_id_already_in_flight_is_refused_and_held_calls_outlive_their_connection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
