/* The blocking call, ftrpc_call, and its fast path: a caller that borrows its call's loop.
 *
 * A blocking call could simply post its call to the home loop and sleep until the loop completes
 * it. That costs two thread hand-offs per call: the IO thread must wake to send the request, and
 * the caller must be woken to see the answer the IO thread read. When the home loop is asleep,
 * this file saves both:
 *
 *  - the send: the caller borrows the loop (ft_loop_try_borrow) and starts the call on its own
 *    thread, as the loop would; the loop learns what happened when it wakes next;
 *  - the answer: when the call's only attempt is the only one waiting on its connection
 *    (own_answer_conn), the caller takes that socket from the loop (ft_conn_unwatch), waits on it
 *    with ppoll and reads the answer as the loop (read_own_answer), so the call completes on the
 *    caller's thread;
 *  - the deadline: the caller watches it too, and past it times the call out itself when it can
 *    take the loop (time_out_here), rather than wait for an IO thread that may not know it is due.
 *
 * Invariants: the caller touches the call only with the loop borrowed and the call not done
 * (`done` not set), because a completed call is freed. Whoever completes the call on another
 * thread writes the caller's eventfd (thread_wake_fd) before it sets `done`, so the caller's ppoll
 * never misses a completion. A socket taken from the loop is watched again before the loop is
 * returned for good, and only once drained, so that the sleeping loop does not wake for bytes the
 * caller reads. Anything the call leaves for the loop (a connection being opened, a write the
 * kernel did not take, a timer other than the deadline) wakes the loop at once; otherwise it stays
 * asleep. When the loop is busy, none of this applies: the call is posted and the caller waits on
 * a futex event, bounded by the call's deadline timer.
 */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/call_context.h"
#include "base/clock.h"
#include "base/event.h"
#include "base/sized_options.h"
#include "base/thread_exit.h"
#include "client/client_internal.h"

/* Whether a copy other than the first is in flight (a backup, a hedge, a tied twin). */
static int other_copies_in_flight(const ft_call *call)
{
    for (int i = 1; i < call->nslots; i++)
        if (call->slot[i].in_flight) return 1;
    return 0;
}

/* After a borrowed start (ftrpc_call): whether the call left nothing the sleeping loop must act on
 * before the deadline, other than reading the response. `done` is checked first because a
 * completed call is freed. */
static int borrow_left_call_quiet(ft_call *call, ft_event *done)
{
    if (atomic_load_explicit(&done->state, memory_order_acquire) != 0) return 0;
    const ft_attempt *a = &call->slot[0];
    if (!a->in_flight || !a->cc || other_copies_in_flight(call) || ft_timer_armed(&a->timer) ||
        ft_timer_armed(&call->retry_timer) || ft_timer_armed(&call->backup_timer))
        return 0;
    const ft_conn *conn = a->cc->conn;
    return conn->state == FT_CONN_OPEN && !conn->writing && conn->out.size == 0;
}

/* The connection a borrowed sync call may read its answer from itself: the one its only attempt
 * waits on, when no other attempt waits there (reading would complete those on this thread, and
 * run async callbacks off their IO thread). NULL otherwise. With the loop borrowed, call not done.
 */
static ft_conn *own_answer_conn(ft_call *call)
{
    const ft_attempt *a = &call->slot[0];
    if (!a->in_flight || !a->cc || other_copies_in_flight(call) ||
        ft_idmap_count(&a->cc->pending) != 1)
        return NULL;
    return a->cc->conn;
}

static int event_is_set(ft_event *ev)
{
    return atomic_load_explicit(&ev->state, memory_order_acquire) == 1;
}

/* A blocking call past its deadline, with the loop borrowed and the call not done: its caller
 * completes it, as the loop's timer would (on_deadline). Leaving it to the loop costs two more
 * thread wake-ups in a row, the IO thread's and then the caller's again, each a scheduling delay on
 * a loaded machine; and the loop's timer, rounded up to libuv's milliseconds, may not even be due
 * when the IO thread wakes. What the completion leaves for the loop (the cancel to flush, a
 * connection retired meanwhile to close) the caller flushes or wakes the loop for. */
static void time_out_here(ft_call *call)
{
    call->sync_wake_fd = -1; /* completed by its own caller: nobody to wake */
    ft_call_time_out(call);
}

/* Waits for a blocking call to complete. Past the deadline, a loop asleep since a borrower armed
 * the call's timer may not know it is due: the caller times the call out itself if it can take the
 * loop (returns 1), or else wakes it (0: the loop completed the call). `call` is touched only with
 * the loop borrowed and `done` not set (a completed call is freed). */
static int wait_done(ft_call *call, ft_loop *loop, ft_event *done, int64_t deadline_ns)
{
    int64_t left = deadline_ns - ft_now_ns();
    if (ft_event_wait(done, left > 0 ? left : 0) == 0) return 0;
    if (ft_loop_try_borrow(loop)) {
        int timed_out_here = !event_is_set(done);
        if (timed_out_here) time_out_here(call);
        ft_loop_return(loop, timed_out_here);
        if (timed_out_here) return 1;
    } else {
        ft_loop_wake(loop);
    }
    ft_event_wait(done, -1);
    return 0;
}

/* This thread's eventfd for read_own_answer, made on first use and closed when the thread exits. */
static _Thread_local int wake_fd = -1;

static void close_wake_fd(void)
{
    close(wake_fd);
    wake_fd = -1;
}

static int thread_wake_fd(void)
{
    if (wake_fd < 0) {
        int fd = eventfd(0, EFD_CLOEXEC);
        if (fd < 0) return -1;
        if (ft_thread_at_exit(close_wake_fd) != 0) {
            close(fd);
            return -1;
        }
        wake_fd = fd;
    }
    return wake_fd;
}

/* After a quiet borrowed send, with the loop still borrowed: waits for the answer on the
 * connection's socket itself and reads it as the loop, so that the call completes on this thread
 * instead of the IO thread waking it (the last hand-off of a blocking call; the raw-socket client
 * that bench/echo.c compares with is woken by the kernel alone). Meanwhile the loop does not watch
 * that socket (ft_conn_unwatch), so the sleeping IO thread does not wake for the same bytes. If
 * anything else completes the call meanwhile (the deadline, a closed connection seen by the loop,
 * the client being freed), its completer writes this thread's eventfd before it sets `done`.
 * Returns with the loop returned. */
static void read_own_answer(ft_call *call, ft_loop *loop, ft_conn *conn, ft_event *done,
                            int64_t deadline_ns)
{
    int efd = thread_wake_fd();
    int sock = efd >= 0 ? ft_conn_unwatch(conn) : -1;
    if (sock < 0) {
        ft_loop_return(loop, 0);
        wait_done(call, loop, done, deadline_ns);
        return;
    }
    ft_conn_ref(conn); /* kept through the waits: watched again whatever becomes of the call */
    call->sync_wake_fd = efd;
    ft_loop_return(loop, 0);
    int completer_wrote = 1, wake = 0;
    for (;;) {
        int64_t left = deadline_ns - ft_now_ns();
        struct pollfd p[2] = {{.fd = sock, .events = POLLIN}, {.fd = efd, .events = POLLIN}};
        struct timespec ts = {.tv_sec = left / FT_NS_PER_SEC, .tv_nsec = left % FT_NS_PER_SEC};
        /* past the deadline, one more look without waiting: an answer already in the socket is
         * read first, as the loop runs a due timer after the IO it has seen (loop.h) */
        int n = ppoll(p, 2, left > 0 ? &ts : &(struct timespec){0}, NULL);
        if ((n < 0 && errno == EINTR) || (n == 0 && left > 0)) continue;
        ft_loop_borrow(loop);
        if (n == 0 && !event_is_set(done) && own_answer_conn(call) == conn) {
            time_out_here(call);
        } else if (n < 0 || p[1].revents || event_is_set(done) || own_answer_conn(call) != conn) {
            wake = 1; /* whatever the loop has to do about the call */
            break;
        } else {
            call->sync_wake_fd = -1; /* completed here, if at all: nobody to wake */
            call->sync_reading = 1;
            ft_conn_read_now(conn);
        }
        ft_conn_flush_dirty(loop);
        if (event_is_set(done)) {
            /* the call is gone; the loop need not wake unless the connection needs it */
            completer_wrote = 0;
            wake = conn->state != FT_CONN_OPEN || conn->writing;
            break;
        }
        call->sync_wake_fd = efd;
        call->sync_reading = 0;
        if (!borrow_left_call_quiet(call, done) || own_answer_conn(call) != conn) {
            wake = 1;
            break;
        }
        ft_loop_return(loop, 0); /* part of the answer: wait for the rest */
    }
    /* watched again only now, with the socket drained: watched with bytes waiting, the sleeping
     * loop would wake for nothing */
    ft_conn_watch_again(conn);
    ft_conn_unref(conn);
    ft_loop_return(loop, wake);
    if (!completer_wrote || wait_done(call, loop, done, deadline_ns)) return;
    eventfd_t v;
    eventfd_read(efd, &v); /* what the completer wrote before it set `done` */
}

static int call_and_wait(ftrpc_client *c, const char *service, const char *method,
                         const ftrpc_buf *request, const ftrpc_buf *attachment,
                         const ftrpc_call_options *opts, int refused, ftrpc_result *result);

int ftrpc_call_sized(ftrpc_client *c, const char *service, const char *method,
                     const ftrpc_buf *request, const ftrpc_buf *attachment,
                     const ftrpc_call_options *opts_in, size_t opts_size, ftrpc_result *result,
                     size_t result_size)
{
    /* a result too small to hold even the outcome and the response cannot be filled at all */
    if (!result || result_size < offsetof(ftrpc_result, attempts)) return FTRPC_EINVAL;
    ftrpc_call_options o;
    int bad;
    const ftrpc_call_options *opts = ft_sized_options_view(&o, sizeof o, opts_in, opts_size, &bad);
    int refused = bad ? FTRPC_EINVAL : 0;
    if (result_size >= sizeof(ftrpc_result)) /* today's layout: filled in place */
        return call_and_wait(c, service, method, request, attachment, opts, refused, result);
    ftrpc_result full;
    int rc = call_and_wait(c, service, method, request, attachment, opts, refused, &full);
    ft_sized_result_write(result, result_size, &full, sizeof full);
    return rc;
}

static int call_and_wait(ftrpc_client *c, const char *service, const char *method,
                         const ftrpc_buf *request, const ftrpc_buf *attachment,
                         const ftrpc_call_options *opts, int refused, ftrpc_result *result)
{
    memset(result, 0, sizeof *result);
    int rc = refused                ? refused
             : ftrpc_in_io_thread() ? FTRPC_EIOTHREAD
                                    : ft_call_check_args(c, service, method, opts);
    ft_call *call = NULL;
    if (rc == 0) {
        call = ft_call_make(c, service, method, request, attachment, opts);
        if (!call) rc = FTRPC_ENOMEM;
    }
    if (rc != 0) {
        result->kind = FTRPC_RESULT_RPC_ERROR;
        result->code = rc;
        snprintf(result->error_text, sizeof result->error_text, "%s", ftrpc_strerror(rc));
        return rc;
    }
    /* The call took the thread's served call (deadline, attempt) when it was made. Whatever this
     * thread runs while it waits with the loop borrowed (other calls' answers and callbacks) is
     * not on that served call's behalf: none of it inherits it. */
    const ft_call_context *served = ft_call_context_swap(NULL);
    ft_event done;
    ft_event_init(&done);
    call->sync_result = result;
    call->sync_done = &done;
    call->sync_rc = &rc;
    ft_call_note retried = {0, 0};
    call->sync_retried = &retried;
    ft_loop *loop = call->loop;
    int64_t deadline_ns = call->deadline_ns;
    if (!ft_loop_try_borrow(loop)) {
        ft_call_submit(call);
        ft_event_wait(&done, -1); /* bounded: the call's deadline timer completes it */
        ft_call_context_swap(served);
        ft_call_context_note(retried); /* for the answer this thread makes next */
        return rc;
    }
    /* The IO thread sleeps: send the request from this thread instead of waking it to do so (one
     * hand-off less per call), and when nothing else waits on that connection, read the answer
     * too (read_own_answer: the other hand-off). Otherwise the loop learns what this did when it
     * wakes next, normally for the response. Until then nothing but the deadline may need it, and
     * that is this thread's to watch: it wakes the loop when the deadline comes. Anything else the
     * call left for the loop (a connection being opened, a write the kernel did not take, another
     * timer) wakes it now. */
    atomic_fetch_add(&call->client->inflight, 1);
    ft_loop_pin(loop); /* this thread may touch the loop after the call is done: see there */
    ft_call_start(call);
    ft_conn_flush_dirty(loop);
    int quiet = borrow_left_call_quiet(call, &done);
    ft_conn *conn = quiet ? own_answer_conn(call) : NULL;
    if (conn) {
        read_own_answer(call, loop, conn, &done, deadline_ns);
    } else {
        ft_loop_return(loop, !quiet);
        wait_done(call, loop, &done, deadline_ns);
    }
    ft_loop_unpin(loop);
    ft_call_context_swap(served);
    ft_call_context_note(retried);
    return rc;
}
