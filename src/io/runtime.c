/* IO threads, their task queues and timer heaps (see loop.h).
 *
 * A timer heap per loop instead of one uv_timer_t per call: starting and stopping an ft_timer is a
 * heap operation with no libuv handle to close, so a call that finishes early costs nothing more.
 * One timerfd per loop, polled by libuv, is armed at the earliest due time: libuv's own timers
 * count whole milliseconds of a loop clock cached when the iteration began, so a 2 ms backup went
 * out at 2.0 to 3.25 ms; the timerfd takes the due time in nanoseconds, absolute on the monotonic
 * clock the heap uses, and the kernel wakes the loop at it (within its timer slack, 50 us).
 */
#include "io/loop.h"

#include <poll.h>
#include <signal.h>
#include <sys/timerfd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/sized_options.h"
#include "base/clock.h"
#include "base/event.h"
#include "base/list.h"
#include "base/log.h"
#include "io/conn.h"
#include "metrics/counter.h"

static _Thread_local ft_loop *current_loop;

ft_loop *ft_loop_current(void)
{
    return current_loop;
}

int ftrpc_in_io_thread(void)
{
    return current_loop != NULL;
}

int64_t ft_loop_now_ns(ft_loop *loop)
{
    (void)loop;
    return ft_now_ns();
}

/* ---- tasks ---- */

static void on_wakeup(uv_async_t *h)
{
    ft_loop *loop = h->data;
    ft_mpsc_node *n;
    /* Bounded drain: tasks past the bound run on the next wake-up, so timers and IO are not
     * starved by a producer that never pauses. */
    int i = 0;
    for (; i < 4096 && (n = ft_mpsc_pop(&loop->tasks)) != NULL; i++) {
        ft_task *t = (ft_task *)n;
        t->run(t);
    }
    if (i == 4096) uv_async_send(&loop->wakeup);
}

void ft_loop_post(ft_loop *loop, ft_task *task)
{
    ft_mpsc_push(&loop->tasks, &task->node);
    uv_async_send(&loop->wakeup);
}

struct sync_task {
    ft_task task;
    void (*fn)(void *);
    void *arg;
    ft_event done;
};

static void run_sync_task(ft_task *t)
{
    struct sync_task *st = (struct sync_task *)t;
    st->fn(st->arg);
    ft_event_set(&st->done);
}

void ft_loop_run_sync(ft_loop *loop, void (*fn)(void *arg), void *arg)
{
    if (current_loop == loop) {
        fn(arg);
        return;
    }
    struct sync_task st = {.task.run = run_sync_task, .fn = fn, .arg = arg};
    ft_event_init(&st.done);
    ft_loop_post(loop, &st.task);
    ft_event_wait(&st.done, -1);
}

/* ---- timers ---- */

static void heap_swap(ft_loop *l, uint32_t a, uint32_t b)
{
    ft_timer *t = l->heap[a];
    l->heap[a] = l->heap[b];
    l->heap[b] = t;
    l->heap[a]->heap_index = a;
    l->heap[b]->heap_index = b;
}

static void heap_up(ft_loop *l, uint32_t i)
{
    while (i > 1 && l->heap[i / 2]->due_ns > l->heap[i]->due_ns) {
        heap_swap(l, i, i / 2);
        i /= 2;
    }
}

static void heap_down(ft_loop *l, uint32_t i)
{
    for (;;) {
        uint32_t m = i, c = 2 * i;
        if (c <= l->heap_len && l->heap[c]->due_ns < l->heap[m]->due_ns) m = c;
        if (c + 1 <= l->heap_len && l->heap[c + 1]->due_ns < l->heap[m]->due_ns) m = c + 1;
        if (m == i) return;
        heap_swap(l, i, m);
        i = m;
    }
}

static void on_timer(uv_poll_t *h, int status, int events);

static int64_t earliest_due(const ft_loop *l)
{
    return l->heap_len ? l->heap[1]->due_ns : INT64_MAX;
}

/* Arms the loop's timerfd at `due` (INT64_MAX: disarms it), absolute on CLOCK_MONOTONIC, the
 * clock of ft_now_ns. Any thread that runs the loop (its IO thread or a borrower): the kernel
 * wakes the loop's poll at the due time whoever armed it. */
static void set_timer(ft_loop *l, int64_t due)
{
    l->armed_due_ns = due;
    struct itimerspec its = {{0, 0}, {0, 0}};
    if (due != INT64_MAX) {
        if (due < 1) due = 1; /* a zero it_value would disarm it */
        its.it_value.tv_sec = (time_t)(due / 1000000000);
        its.it_value.tv_nsec = (long)(due % 1000000000);
    }
    timerfd_settime(l->timer_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void rearm(ft_loop *l)
{
    int64_t due = earliest_due(l);
    if (due != l->armed_due_ns) set_timer(l, due);
}

void ft_timer_start(ft_loop *l, ft_timer *t, int64_t due_ns, ft_timer_fn fn)
{
    if (t->heap_index || t->expired) ft_timer_stop(l, t);
    if (l->heap_len + 1 >= l->heap_cap) {
        uint32_t ncap = l->heap_cap ? l->heap_cap * 2 : 256;
        ft_timer **nh = realloc(l->heap, ncap * sizeof *nh);
        if (!nh) abort(); /* a few KB for the heap: nothing sensible to do without it */
        l->heap = nh;
        l->heap_cap = ncap;
    }
    t->due_ns = due_ns;
    t->fn = fn;
    t->heap_index = ++l->heap_len;
    l->heap[t->heap_index] = t;
    heap_up(l, t->heap_index);
    if (due_ns < l->armed_due_ns) rearm(l);
}

static void unlink_expired(ft_loop *l, ft_timer *t)
{
    if (t->prev_expired)
        t->prev_expired->next_expired = t->next_expired;
    else
        l->expired_head = t->next_expired;
    if (t->next_expired)
        t->next_expired->prev_expired = t->prev_expired;
    else
        l->expired_tail = t->prev_expired;
    t->prev_expired = t->next_expired = NULL;
    t->expired = 0;
}

void ft_timer_stop(ft_loop *l, ft_timer *t)
{
    if (t->expired) {
        unlink_expired(l, t);
        return;
    }
    uint32_t i = t->heap_index;
    if (!i) return;
    t->heap_index = 0;
    if (i != l->heap_len) {
        l->heap[i] = l->heap[l->heap_len];
        l->heap[i]->heap_index = i;
        l->heap_len--;
        heap_down(l, i);
        heap_up(l, i);
    } else {
        l->heap_len--;
    }
    /* Leave the timerfd armed: an early wake-up with nothing due only re-arms. Re-arming here
     * instead costs a syscall whenever the stopped timer was the armed one, which with backups on
     * is nearly every call (the oldest call's backup timer, stopped by its answer), against the
     * 0.01-0.2 empty wake-ups a call bench_tail measured (issue 25, timer_wakes_empty). */
}

static void expired_noop(uv_idle_t *h)
{
    (void)h;
}

/* Moves due timers to the expired list; they run in the check phase, after this iteration's IO
 * callbacks (the timerfd is read in the poll phase, with them). The idle handle makes the next
 * poll non-blocking while any wait to run. */
static void on_timer(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    ft_loop *l = h->data;
    uint64_t expirations;
    if (read(l->timer_fd, &expirations, sizeof expirations) < 0) {
        /* EAGAIN: woken with nothing to read (a re-arm raced the wake-up); the heap decides */
    }
    l->armed_due_ns = INT64_MAX;
    l->now_fresh = 0;
    int64_t now = ft_loop_now(l);
    l->timer_read_ns = now;
    if (!l->heap_len || l->heap[1]->due_ns > now)
        atomic_fetch_add_explicit(&l->timer_wakes_empty, 1, memory_order_relaxed);
    while (l->heap_len && l->heap[1]->due_ns <= now) {
        ft_timer *t = l->heap[1];
        ft_timer_stop(l, t);
        t->expired = 1;
        t->prev_expired = l->expired_tail;
        t->next_expired = NULL;
        if (l->expired_tail)
            l->expired_tail->next_expired = t;
        else
            l->expired_head = t;
        l->expired_tail = t;
    }
    if (l->expired_head) uv_idle_start(&l->expired_pending, expired_noop);
    rearm(l);
}

static void run_expired(ft_loop *l)
{
    /* timers that a callback here starts with a past due time wait for the next iteration */
    ft_timer *last = l->expired_tail;
    while (l->expired_head) {
        ft_timer *t = l->expired_head;
        unlink_expired(l, t);
        t->fn(t);
        if (t == last) break;
    }
    if (!l->expired_head) uv_idle_stop(&l->expired_pending);
}

/* ---- write flushing ---- */

static void on_flush_check(uv_check_t *h)
{
    ft_loop *l = h->data;
    run_expired(l);
    ft_conn_flush_dirty(l);
    l->now_fresh = 0; /* the next phase (timers of the next iteration) reads the clock again */
}

/* What the loop does last before it may sleep: flush what the phases since the check phase wrote
 * (libuv's pending callbacks and the closing handles: a call re-sent when its connection's close
 * failed it). The timerfd needs nothing: it holds the due time itself. */
static void before_sleep(ft_loop *l)
{
    ft_conn_flush_dirty(l);
    l->now_fresh = 0; /* IO callbacks after the sleep read the clock again */
}

/* libuv's run mode computes its sleep right after this phase */
static void on_flush_prepare(uv_prepare_t *h)
{
    before_sleep(h->data);
}

/* ---- threads ----
 *
 * The IO thread owns its loop through `owner`, a mutex it holds while it runs libuv. A loop starts
 * in libuv's own run mode and never lets go of the mutex. Once a blocking call wants to borrow it
 * (ft_loop_try_borrow), the loop switches for good to running libuv one iteration at a time and
 * releasing the mutex while it sleeps, waiting for the loop's epoll fd to become ready (libuv's own
 * poll then runs with a zero timeout). A thread that finds such a loop asleep may borrow it: with
 * the mutex it *is* the loop thread, so everything loop-owned (calls, timers, connections) stays
 * single-threaded. A blocking call uses this to send its request itself instead of waking the IO
 * thread to do it (one thread hand-off less, docs/performance.md). The switch is not the default
 * because the extra poll per iteration costs a few microseconds of latency at one call in flight:
 * loops of servers and of async-only clients never pay it. */

static void switch_to_borrowable(ft_task *t)
{
    ft_loop *l = ft_container_of(t, ft_loop, switch_task);
    uv_stop(&l->uv); /* uv_run returns after this iteration; loop_main goes on borrowable */
}

static void *loop_main(void *arg)
{
    ft_loop *l = arg;
    current_loop = l;
    /* the calls' metrics are recorded here: plain stores instead of locked adds (counter.h) */
    ft_metrics_own_stripe();
    pthread_mutex_lock(&l->owner);
    uv_run(&l->uv, UV_RUN_DEFAULT);
    while (uv_run(&l->uv, UV_RUN_NOWAIT) != 0 || uv_loop_alive(&l->uv)) {
        /* the prepare phase came before this iteration's IO; the closing phase came after */
        before_sleep(l);
        int timeout = uv_backend_timeout(&l->uv);
        if (timeout != 0) {
            struct pollfd p = {.fd = uv_backend_fd(&l->uv), .events = POLLIN};
            pthread_mutex_unlock(&l->owner);
            poll(&p, 1, timeout);
            /* borrowers stand back while the loop takes its mutex again, so that a stream of them
             * cannot keep it from the events that woke it */
            atomic_store_explicit(&l->reclaiming, 1, memory_order_relaxed);
            pthread_mutex_lock(&l->owner);
            atomic_store_explicit(&l->reclaiming, 0, memory_order_relaxed);
        }
        l->now_fresh = 0; /* a borrower or the sleep may have left it stale */
    }
    pthread_mutex_unlock(&l->owner);
    current_loop = NULL;
    return NULL;
}

int ft_loop_try_borrow(ft_loop *l)
{
    if (current_loop) return 0;
    if (!atomic_load_explicit(&l->borrowable_asked, memory_order_relaxed)) {
        if (!atomic_exchange(&l->borrowable_asked, 1)) ft_loop_post(l, &l->switch_task);
        return 0;
    }
    if (atomic_load_explicit(&l->reclaiming, memory_order_relaxed) ||
        pthread_mutex_trylock(&l->owner) != 0)
        return 0;
    current_loop = l;
    l->now_fresh = 0;
    return 1;
}

void ft_loop_borrow(ft_loop *l)
{
    pthread_mutex_lock(&l->owner);
    current_loop = l;
    l->now_fresh = 0;
}

void ft_loop_return(ft_loop *l, int wake)
{
    l->now_fresh = 0;
    current_loop = NULL;
    pthread_mutex_unlock(&l->owner);
    if (wake) uv_async_send(&l->wakeup);
}

void ft_loop_wake(ft_loop *l)
{
    uv_async_send(&l->wakeup);
}

static int loop_init(ft_loop *l, ftrpc_runtime *rt, int index)
{
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->owner, NULL);
    l->switch_task.run = switch_to_borrowable;
    l->rt = rt;
    l->index = index;
    l->armed_due_ns = INT64_MAX;
    ft_mpsc_init(&l->tasks);
    if (uv_loop_init(&l->uv) != 0) return FTRPC_ESYS;
    uv_async_init(&l->uv, &l->wakeup, on_wakeup);
    l->wakeup.data = l;
    l->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (l->timer_fd < 0 || uv_poll_init(&l->uv, &l->timer_poll, l->timer_fd) != 0) {
        if (l->timer_fd >= 0) close(l->timer_fd);
        l->timer_fd = -1;
        uv_close((uv_handle_t *)&l->wakeup, NULL);
        uv_run(&l->uv, UV_RUN_NOWAIT);
        uv_loop_close(&l->uv);
        return FTRPC_ESYS;
    }
    l->timer_poll.data = l;
    uv_poll_start(&l->timer_poll, UV_READABLE, on_timer);
    uv_unref((uv_handle_t *)&l->timer_poll);
    uv_check_init(&l->uv, &l->flush_check);
    l->flush_check.data = l;
    uv_check_start(&l->flush_check, on_flush_check);
    uv_unref((uv_handle_t *)&l->flush_check);
    uv_prepare_init(&l->uv, &l->flush_prepare);
    l->flush_prepare.data = l;
    uv_prepare_start(&l->flush_prepare, on_flush_prepare);
    uv_unref((uv_handle_t *)&l->flush_prepare);
    uv_idle_init(&l->uv, &l->expired_pending);
    l->expired_pending.data = l;
    uv_unref((uv_handle_t *)&l->expired_pending);
    return 0;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void stop_loop(void *arg)
{
    ft_loop *l = arg;
    uv_walk(&l->uv, close_walk, NULL);
}

struct stop_task {
    ft_task task;
    ft_loop *loop;
};

static void run_stop(ft_task *t)
{
    stop_loop(((struct stop_task *)t)->loop);
}

/* A write to a connection the peer has reset raises SIGPIPE, whose default action kills the whole
 * process; libuv writes with plain write()/writev(), not send(MSG_NOSIGNAL). As brpc and gRPC do,
 * the first runtime ignores SIGPIPE (the write then fails with EPIPE, handled as a broken
 * connection), unless the program has installed a handler or ignore of its own. */
static void ignore_sigpipe(void)
{
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && !(old.sa_flags & SA_SIGINFO) &&
        old.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
}

static void ignore_sigpipe_once(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, ignore_sigpipe);
}

int ftrpc_runtime_new_sized(const ftrpc_runtime_options *opts_in, size_t opts_size,
                            ftrpc_runtime **out)
{
    ftrpc_runtime_options o;
    if (!out || ft_sized_options_read(&o, sizeof o, opts_in, opts_size) != 0) return FTRPC_EINVAL;
    const ftrpc_runtime_options *opts = &o;
    int n = opts->io_threads > 0 ? opts->io_threads : 0;
    if (opts->io_threads < 0) return FTRPC_EINVAL;
    if (n == 0) {
        const char *e = getenv("FTRPC_IO_THREADS");
        n = e ? atoi(e) : (int)sysconf(_SC_NPROCESSORS_ONLN);
        if (n <= 0) n = 1;
    }
    ignore_sigpipe_once();
    ftrpc_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) return FTRPC_ENOMEM;
    rt->loops = calloc((size_t)n, sizeof(ft_loop));
    if (!rt->loops) {
        free(rt);
        return FTRPC_ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        int rc = loop_init(&rt->loops[i], rt, i);
        if (rc == 0 && pthread_create(&rt->loops[i].thread, NULL, loop_main, &rt->loops[i]) != 0)
            rc = FTRPC_ESYS;
        if (rc != 0) {
            rt->nloops = i;
            ftrpc_runtime_free(rt);
            return rc;
        }
        rt->nloops = i + 1;
    }
    *out = rt;
    return 0;
}

void ftrpc_runtime_free(ftrpc_runtime *rt)
{
    if (!rt) return;
    /* Blocking callers whose calls the freed clients completed may still be on their way out of
     * a loop (ft_loop_pin); with every client gone that takes microseconds. */
    for (int i = 0; i < rt->nloops; i++)
        while (atomic_load_explicit(&rt->loops[i].pins, memory_order_acquire) != 0)
            nanosleep(&(struct timespec){.tv_nsec = 100000}, NULL);
    for (int i = 0; i < rt->nloops; i++) {
        struct stop_task st = {.task.run = run_stop, .loop = &rt->loops[i]};
        ft_loop_post(&rt->loops[i], &st.task);
        pthread_join(rt->loops[i].thread, NULL);
        uv_loop_close(&rt->loops[i].uv);
        close(rt->loops[i].timer_fd);
        free(rt->loops[i].heap);
        pthread_mutex_destroy(&rt->loops[i].owner);
    }
    free(rt->loops);
    free(rt);
}

int ftrpc_runtime_io_threads(const ftrpc_runtime *rt)
{
    return rt->nloops;
}

static ftrpc_runtime *default_rt;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void make_default(void)
{
    if (ftrpc_runtime_new(NULL, &default_rt) != 0)
        default_rt = NULL;
    else
        default_rt->is_default = 1;
}

ftrpc_runtime *ftrpc_runtime_default(void)
{
    pthread_once(&default_once, make_default);
    return default_rt;
}

ftrpc_runtime *ft_runtime_or_default(ftrpc_runtime *rt)
{
    return rt ? rt : ftrpc_runtime_default();
}

ft_loop *ft_runtime_pick_loop(ftrpc_runtime *rt)
{
    ft_loop *cur = current_loop;
    if (cur && cur->rt == rt) return cur;
    unsigned i = atomic_fetch_add_explicit(&rt->next_loop, 1, memory_order_relaxed);
    return &rt->loops[i % (unsigned)rt->nloops];
}
