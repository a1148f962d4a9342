/* The runtime's IO loops: one libuv loop per IO thread, a lock-free task queue into each, and a
 * timer heap per loop.
 *
 * Everything that touches a connection, a call or a timer runs on that object's loop; other threads
 * reach a loop only through ft_loop_post (an MPSC queue plus one uv_async_t wake-up, which libuv
 * coalesces). Writes produced during one loop iteration are flushed together at the end of it (the
 * "dirty" list, see conn.c), which is where write batching comes from.
 */
#ifndef FT_IO_LOOP_H
#define FT_IO_LOOP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "base/mpsc.h"
#include "ftrpc/runtime.h"

typedef struct ft_loop ft_loop;
typedef struct ft_task ft_task;
typedef struct ft_timer ft_timer;
struct ft_conn;

typedef void (*ft_task_fn)(ft_task *task);
struct ft_task {
    ft_mpsc_node node;
    ft_task_fn run;
};

typedef void (*ft_timer_fn)(ft_timer *timer);
/* A one-shot timer on a loop (loop thread only). Embedded in its owner; zero-initialize, then
 * ft_timer_start / ft_timer_stop as often as needed. Stopping an idle timer does nothing.
 * A due timer runs after the IO callbacks of the iteration in which it fell due, not before them
 * (libuv's order): a deadline must not expire a call whose answer is already in the socket,
 * waiting to be read, just because the loop was late. */
struct ft_timer {
    int64_t due_ns;
    uint32_t heap_index; /* 0 when not in the heap (the heap is 1-based) */
    int expired;         /* due and waiting in the loop's expired list to run */
    ft_timer *prev_expired, *next_expired;
    ft_timer_fn fn;
};

struct ft_loop {
    uv_loop_t uv;
    uv_async_t wakeup;
    int timer_fd;               /* a timerfd armed at the earliest due time (runtime.c) */
    uv_poll_t timer_poll;       /* polls it */
    uv_check_t flush_check;     /* flushes writes produced by IO callbacks */
    uv_prepare_t flush_prepare; /* flushes writes produced by timers, before the loop sleeps */
    uv_idle_t expired_pending;  /* active while timers wait to run: keeps the poll from blocking */
    ft_timer *expired_head, *expired_tail; /* due timers, run after this iteration's IO */
    ft_mpsc tasks;
    pthread_t thread;
    int index;
    ftrpc_runtime *rt;
    struct ft_conn *dirty; /* connections with bytes to flush, singly linked */
    ft_timer **heap;       /* 1-based binary min-heap on due_ns */
    uint32_t heap_len, heap_cap;
    int64_t armed_due_ns;        /* what timer_fd is set for, INT64_MAX when idle */
    int64_t now_ns;              /* cached: see ft_loop_now */
    int now_fresh;               /* now_ns was read in the current phase of this iteration */
    pthread_mutex_t owner;       /* held by whoever runs the loop: its IO thread, or a borrower */
    atomic_int reclaiming;       /* the IO thread woke and wants `owner` back: do not borrow */
    atomic_int borrowable_asked; /* a borrower asked the loop to release `owner` while asleep */
    ft_task switch_task;         /* posted once, for that */
    atomic_int pins;             /* ft_loop_pin */
    /* times timer_fd woke the loop with no timer due (read by bench_tail) */
    atomic_ullong timer_wakes_empty;
    /* when the loop last read timer_fd (its clock at on_timer): a timer's callback, which runs
     * after the IO callbacks of that iteration, tells the kernel's wake-up from the wait behind
     * them (the client's backup lateness counters) */
    int64_t timer_read_ns;
};

struct ftrpc_runtime {
    int nloops;
    ft_loop *loops;
    atomic_uint next_loop;
    int is_default;
};

/* The loop the calling thread runs, or NULL on a non-IO thread. */
ft_loop *ft_loop_current(void);
/* Any thread: runs task->run(task) on the loop soon. Never fails: the task is intrusive. */
void ft_loop_post(ft_loop *loop, ft_task *task);
/* Any non-IO thread (or the loop itself): runs fn(arg) on the loop and waits for it to return. */
void ft_loop_run_sync(ft_loop *loop, void (*fn)(void *arg), void *arg);
/* The loop a new call or connection should live on: the current one when the caller is an IO
 * thread of this runtime, otherwise the next in round-robin order. */
ft_loop *ft_runtime_pick_loop(ftrpc_runtime *rt);
ftrpc_runtime *ft_runtime_or_default(ftrpc_runtime *rt);

/* Any non-IO thread: takes over the loop if its IO thread is asleep (1), else 0. While borrowed,
 * the caller runs as the loop's thread (ft_loop_current() is the loop) and may do anything the
 * loop's thread may; the IO thread waits for ft_loop_return. Keep it short, never block. The loop
 * does not see what the borrower changed until it wakes: ft_loop_return(loop, 1) wakes it, for
 * anything that needs the loop's attention (a new connection, a pending write, a timer earlier
 * than the loop's sleep); with wake = 0 the borrower answers for whatever it left (for example it
 * calls ft_loop_wake itself by the time its timer is due). */
int ft_loop_try_borrow(ft_loop *loop);
void ft_loop_return(ft_loop *loop, int wake);
/* Any non-IO thread, on a loop borrowed before (so it releases `owner` when asleep): borrows it,
 * waiting for its IO thread to finish the current iteration if it is awake. For a borrower that
 * must undo something it did to the loop; otherwise prefer ft_loop_try_borrow. */
void ft_loop_borrow(ft_loop *loop);
/* A borrower that gives the loop back but will touch it again (borrow it, wake it) after another
 * thread may have completed its call, and so after the client may have been freed: the pin keeps
 * ftrpc_runtime_free from freeing the loop meanwhile (it waits for the pins to go). Pin while the
 * loop is known alive (borrowed), unpin after the last touch. */
static inline void ft_loop_pin(ft_loop *l)
{
    atomic_fetch_add_explicit(&l->pins, 1, memory_order_relaxed);
}
static inline void ft_loop_unpin(ft_loop *l)
{
    atomic_fetch_sub_explicit(&l->pins, 1, memory_order_release);
}
/* Any thread: makes the loop run an iteration soon (and so see timers a borrower armed). */
void ft_loop_wake(ft_loop *loop);

/* Monotonic time in ns, fresh (a clock read). */
int64_t ft_loop_now_ns(ft_loop *loop);

int64_t ft_now_ns(void);
/* Monotonic time in ns as of the current loop phase; the loop's thread only. Clock reads are
 * syscalls on some virtual machines; the call path reads the time many times per call, so it
 * reads it once per loop phase (timers, IO callbacks) instead. Staleness is bounded by one phase,
 * the time the loop spends on one batch of events. */
static inline int64_t ft_loop_now(ft_loop *loop)
{
    if (!loop->now_fresh) {
        loop->now_ns = ft_now_ns();
        loop->now_fresh = 1;
    }
    return loop->now_ns;
}

void ft_timer_start(ft_loop *loop, ft_timer *t, int64_t due_ns, ft_timer_fn fn);
void ft_timer_stop(ft_loop *loop, ft_timer *t);
static inline int ft_timer_armed(const ft_timer *t)
{
    return t->heap_index != 0 || t->expired;
}

#endif
