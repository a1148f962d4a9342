/* The IO runtime: loops start and stop, tasks posted from many threads run once each on the
 * right loop, run_sync, loop picking, and the per-loop timer heap (order, stop, restart, 10k
 * random timers, random stops), one sleep per timer, a borrowable loop's flush before it sleeps,
 * and the loop's sleep after a stall. Timers run on a real loop with delays of at most 50 ms, but
 * for the stall tests' 700 ms. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/clock.h"
#include "base/event.h"
#include "base/list.h"
#include "io/conn.h"
#include "io/loop.h"

static uint64_t rng_state = 0x853C49E6748FEA9Bu;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static const int64_t WAIT_NS = 10000 * FT_NS_PER_MS; /* upper bound on any wait below */

static ftrpc_runtime *new_runtime(int threads)
{
    ftrpc_runtime_options opts = {.io_threads = threads};
    ftrpc_runtime *rt = NULL;
    assert_int_equal(ftrpc_runtime_new(&opts, &rt), 0);
    assert_non_null(rt);
    return rt;
}

static void runtime_starts_and_stops_with_one_and_three_threads(void **state)
{
    (void)state;
    static const int threads[] = {1, 3};
    for (size_t i = 0; i < sizeof threads / sizeof threads[0]; i++) {
        ftrpc_runtime *rt = new_runtime(threads[i]);
        assert_int_equal(ftrpc_runtime_io_threads(rt), threads[i]);
        ftrpc_runtime_free(rt);
    }
    ftrpc_runtime_free(NULL);
    ftrpc_runtime_options bad = {.io_threads = -1};
    ftrpc_runtime *rt = NULL;
    assert_int_equal(ftrpc_runtime_new(&bad, &rt), FTRPC_EINVAL);
    assert_null(rt);
}

/* ---- tasks ---- */

typedef struct count_task {
    ft_task task;
    ft_loop *want;
    atomic_int runs;
} count_task;

static atomic_int tasks_ran, tasks_wrong_loop;

static void count_run(ft_task *t)
{
    count_task *ct = (count_task *)t;
    if (ft_loop_current() != ct->want || !ftrpc_in_io_thread())
        atomic_fetch_add(&tasks_wrong_loop, 1);
    atomic_fetch_add(&ct->runs, 1);
    atomic_fetch_add(&tasks_ran, 1);
}

enum { POSTERS = 4, PER_POSTER = 20000 };

typedef struct poster {
    ftrpc_runtime *rt;
    count_task *tasks;
    int id;
} poster;

static void *post_many(void *arg)
{
    poster *p = arg;
    for (int i = 0; i < PER_POSTER; i++) {
        ft_loop *l = &p->rt->loops[(i + p->id) % p->rt->nloops];
        p->tasks[i].task.run = count_run;
        p->tasks[i].want = l;
        ft_loop_post(l, &p->tasks[i].task);
    }
    return NULL;
}

static void tasks_posted_from_many_threads_run_once_on_their_loop(void **state)
{
    (void)state;
    ftrpc_runtime *rt = new_runtime(3);
    count_task *tasks = calloc((size_t)POSTERS * PER_POSTER, sizeof *tasks);
    atomic_store(&tasks_ran, 0);
    atomic_store(&tasks_wrong_loop, 0);
    pthread_t threads[POSTERS];
    poster posters[POSTERS];
    for (int i = 0; i < POSTERS; i++) {
        posters[i] = (poster){rt, tasks + (size_t)i * PER_POSTER, i};
        assert_int_equal(pthread_create(&threads[i], NULL, post_many, &posters[i]), 0);
    }
    for (int i = 0; i < POSTERS; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    int64_t deadline = ft_now_ns() + WAIT_NS;
    while (atomic_load(&tasks_ran) < POSTERS * PER_POSTER && ft_now_ns() < deadline)
        sched_yield();
    assert_int_equal(atomic_load(&tasks_ran), POSTERS * PER_POSTER);
    assert_int_equal(atomic_load(&tasks_wrong_loop), 0);
    for (int i = 0; i < POSTERS * PER_POSTER; i++)
        assert_int_equal(atomic_load(&tasks[i].runs), 1);
    ftrpc_runtime_free(rt);
    free(tasks);
}

typedef struct sync_arg {
    ft_loop *seen;
    int in_io;
    int nested_ran;
    ft_loop *loop;
} sync_arg;

static void note_nested(void *arg)
{
    sync_arg *a = arg;
    a->nested_ran = ft_loop_current() == a->loop;
}

static void note_loop(void *arg)
{
    sync_arg *a = arg;
    a->seen = ft_loop_current();
    a->in_io = ftrpc_in_io_thread();
    /* run_sync from the loop itself runs inline instead of deadlocking */
    ft_loop_run_sync(a->loop, note_nested, a);
}

static void run_sync_runs_on_the_loop_and_waits(void **state)
{
    (void)state;
    ftrpc_runtime *rt = new_runtime(3);
    assert_int_equal(ftrpc_in_io_thread(), 0);
    assert_null(ft_loop_current());
    for (int i = 0; i < rt->nloops; i++) {
        sync_arg a = {.loop = &rt->loops[i]};
        ft_loop_run_sync(&rt->loops[i], note_loop, &a);
        assert_ptr_equal(a.seen, &rt->loops[i]);
        assert_int_equal(a.in_io, 1);
        assert_int_equal(a.nested_ran, 1);
    }
    ftrpc_runtime_free(rt);
}

typedef struct pick_arg {
    ftrpc_runtime *rt;
    ft_loop *picked[4];
} pick_arg;

static void pick_from_loop(void *arg)
{
    pick_arg *p = arg;
    for (int i = 0; i < 4; i++)
        p->picked[i] = ft_runtime_pick_loop(p->rt);
}

static void pick_loop_is_round_robin_off_loop_and_current_on_loop(void **state)
{
    (void)state;
    ftrpc_runtime *rt = new_runtime(3);
    ftrpc_runtime *other = new_runtime(1);
    ft_loop *first = ft_runtime_pick_loop(rt);
    int idx = first->index;
    for (int i = 1; i <= 7; i++) {
        ft_loop *l = ft_runtime_pick_loop(rt);
        assert_ptr_equal(l, &rt->loops[(idx + i) % 3]);
    }
    for (int i = 0; i < 3; i++) {
        pick_arg p = {.rt = rt};
        ft_loop_run_sync(&rt->loops[i], pick_from_loop, &p);
        for (int k = 0; k < 4; k++)
            assert_ptr_equal(p.picked[k], &rt->loops[i]);
    }
    /* an IO thread of another runtime gets round robin over this one */
    pick_arg p = {.rt = rt};
    ft_loop_run_sync(&other->loops[0], pick_from_loop, &p);
    for (int k = 1; k < 4; k++)
        assert_ptr_equal(p.picked[k], &rt->loops[(p.picked[0]->index + k) % 3]);
    ftrpc_runtime_free(other);
    ftrpc_runtime_free(rt);
}

/* ---- timers ---- */

typedef struct ttimer {
    ft_timer timer;
    int id;
    int fired;
    int stopped;
    int64_t fired_at;
    struct tfix *fix;
} ttimer;

typedef struct tfix {
    ftrpc_runtime *rt;
    ft_loop *loop;
    ttimer *timers;
    int n;
    int *order; /* ids in firing order */
    int nfired;
    int expect; /* fires to wait for */
    int stop_others_when_firing;
    ft_event done;
} tfix;

static void on_fire(ft_timer *t)
{
    ttimer *tt = ft_container_of(t, ttimer, timer);
    tfix *f = tt->fix;
    tt->fired++;
    tt->fired_at = ft_now_ns();
    f->order[f->nfired++] = tt->id;
    if (f->stop_others_when_firing) {
        /* stop a random other timer from inside a callback */
        ttimer *victim = &f->timers[rng() % (uint64_t)f->n];
        if (ft_timer_armed(&victim->timer)) {
            ft_timer_stop(f->loop, &victim->timer);
            victim->stopped = 1;
            f->expect--;
        }
    }
    if (f->nfired == f->expect) ft_event_set(&f->done);
}

static void fix_init(tfix *f, int n)
{
    memset(f, 0, sizeof *f);
    f->rt = new_runtime(1);
    f->loop = &f->rt->loops[0];
    f->n = n;
    f->timers = calloc((size_t)n, sizeof *f->timers);
    f->order = calloc((size_t)n, sizeof *f->order);
    for (int i = 0; i < n; i++) {
        f->timers[i].id = i;
        f->timers[i].fix = f;
    }
    f->expect = n;
    ft_event_init(&f->done);
}

static void noop(void *arg)
{
    (void)arg;
}

/* Waits for the expected fires, then long enough for anything that should not fire to have
 * fired (every due is at most 50 ms out), then syncs with the loop so its writes are visible. */
static void fix_wait(tfix *f)
{
    assert_int_equal(ft_event_wait(&f->done, WAIT_NS), 0);
    struct timespec ts = {0, 80 * 1000000};
    nanosleep(&ts, NULL);
    ft_loop_run_sync(f->loop, noop, NULL);
}

static void fix_free(tfix *f)
{
    ftrpc_runtime_free(f->rt);
    free(f->timers);
    free(f->order);
}

/* Each fired timer fired once, at or after its due time, in due order; stopped ones never. */
static void check_fired_in_order(const tfix *f)
{
    int64_t prev_due = INT64_MIN;
    for (int k = 0; k < f->nfired; k++) {
        const ttimer *t = &f->timers[f->order[k]];
        assert_true(t->timer.due_ns >= prev_due);
        prev_due = t->timer.due_ns;
        assert_true(t->fired_at >= t->timer.due_ns);
    }
    int fired = 0;
    for (int i = 0; i < f->n; i++) {
        assert_int_equal(f->timers[i].fired, f->timers[i].stopped ? 0 : 1);
        assert_false(ft_timer_armed(&f->timers[i].timer));
        fired += f->timers[i].fired;
    }
    assert_int_equal(fired, f->nfired);
    assert_int_equal(f->nfired, f->expect);
}

static void arm(tfix *f, int i, int64_t delay_ns)
{
    ft_timer_start(f->loop, &f->timers[i].timer, ft_loop_now_ns(f->loop) + delay_ns, on_fire);
}

static const int fixed_delays_ms[] = {30, 10, 20, 5, 40, 10, 0};

static void arm_fixed(void *arg)
{
    tfix *f = arg;
    for (int i = 0; i < f->n; i++)
        arm(f, i, fixed_delays_ms[i] * FT_NS_PER_MS);
}

static void timers_fire_in_due_order(void **state)
{
    (void)state;
    tfix f;
    fix_init(&f, sizeof fixed_delays_ms / sizeof fixed_delays_ms[0]);
    ft_loop_run_sync(f.loop, arm_fixed, &f);
    fix_wait(&f);
    check_fired_in_order(&f);
    assert_int_equal(f.order[0], 6);       /* the 0 ms one */
    assert_int_equal(f.order[f.n - 1], 4); /* the 40 ms one */
    fix_free(&f);
}

static void arm_and_stop_some(void *arg)
{
    tfix *f = arg;
    ft_timer idle = {0};
    ft_timer_stop(f->loop, &idle); /* stopping an idle timer does nothing */
    arm(f, 0, 10 * FT_NS_PER_MS);
    arm(f, 1, 20 * FT_NS_PER_MS);
    arm(f, 2, 30 * FT_NS_PER_MS);
    for (int i = 0; i < 3; i += 2) {
        ft_timer_stop(f->loop, &f->timers[i].timer);
        ft_timer_stop(f->loop, &f->timers[i].timer); /* twice is fine */
        f->timers[i].stopped = 1;
    }
    f->expect = 1;
}

static void stop_before_due_prevents_firing(void **state)
{
    (void)state;
    tfix f;
    fix_init(&f, 3);
    ft_loop_run_sync(f.loop, arm_and_stop_some, &f);
    fix_wait(&f);
    check_fired_in_order(&f);
    assert_int_equal(f.order[0], 1);
    fix_free(&f);
}

static int64_t armed_at;

static void arm_and_restart(void *arg)
{
    tfix *f = arg;
    armed_at = ft_now_ns();
    arm(f, 0, 5 * FT_NS_PER_MS);
    arm(f, 1, 45 * FT_NS_PER_MS);
    arm(f, 0, 40 * FT_NS_PER_MS); /* later */
    arm(f, 1, 5 * FT_NS_PER_MS);  /* earlier */
}

static void restart_moves_the_due_time(void **state)
{
    (void)state;
    tfix f;
    fix_init(&f, 2);
    ft_loop_run_sync(f.loop, arm_and_restart, &f);
    fix_wait(&f);
    check_fired_in_order(&f);
    assert_int_equal(f.order[0], 1);
    assert_int_equal(f.order[1], 0);
    assert_true(f.timers[0].fired_at - armed_at >= 40 * FT_NS_PER_MS);
    fix_free(&f);
}

static void arm_random(void *arg)
{
    tfix *f = arg;
    for (int i = 0; i < f->n; i++)
        arm(f, i, (int64_t)(rng() % 50000) * 1000); /* 0 to 50 ms, us granularity */
}

static void ten_thousand_random_timers_fire_in_order(void **state)
{
    (void)state;
    tfix f;
    fix_init(&f, 10000);
    ft_loop_run_sync(f.loop, arm_random, &f);
    fix_wait(&f);
    check_fired_in_order(&f);
    fix_free(&f);
}

static void arm_random_then_stop_half(void *arg)
{
    tfix *f = arg;
    arm_random(f);
    for (int k = 0; k < f->n / 2; k++) {
        ttimer *t = &f->timers[rng() % (uint64_t)f->n];
        if (!ft_timer_armed(&t->timer)) continue;
        ft_timer_stop(f->loop, &t->timer);
        t->stopped = 1;
        f->expect--;
    }
    f->stop_others_when_firing = 1;
}

static void timers_stopped_at_random_never_fire(void **state)
{
    (void)state;
    tfix f;
    fix_init(&f, 10000);
    ft_loop_run_sync(f.loop, arm_random_then_stop_half, &f);
    fix_wait(&f);
    check_fired_in_order(&f);
    assert_true(f.nfired < f.n * 3 / 4);
    fix_free(&f);
}

typedef struct periodic {
    ft_timer timer;
    ft_loop *loop;
    int fires;
    ft_event done;
} periodic;

static void on_periodic(ft_timer *t)
{
    periodic *p = ft_container_of(t, periodic, timer);
    if (++p->fires == 5) {
        ft_event_set(&p->done);
        return;
    }
    ft_timer_start(p->loop, t, ft_loop_now_ns(p->loop) + 2 * FT_NS_PER_MS, on_periodic);
}

static void start_periodic(void *arg)
{
    periodic *p = arg;
    ft_timer_start(p->loop, &p->timer, ft_loop_now_ns(p->loop) + 2 * FT_NS_PER_MS, on_periodic);
}

static void a_timer_can_rearm_itself_from_its_callback(void **state)
{
    (void)state;
    ftrpc_runtime *rt = new_runtime(1);
    periodic p = {.loop = &rt->loops[0]};
    ft_event_init(&p.done);
    int64_t t0 = ft_now_ns();
    ft_loop_run_sync(p.loop, start_periodic, &p);
    assert_int_equal(ft_event_wait(&p.done, WAIT_NS), 0);
    assert_true(ft_now_ns() - t0 >= 10 * FT_NS_PER_MS);
    ft_loop_run_sync(p.loop, noop, NULL);
    assert_int_equal(p.fires, 5);
    assert_false(ft_timer_armed(&p.timer));
    ftrpc_runtime_free(rt);
}

typedef struct heap_fuzz {
    ft_loop *loop;
    int ok;
} heap_fuzz;

static void never_fires(ft_timer *t)
{
    (void)t;
    fail_msg("a timer an hour out fired");
}

/* The heap stays a heap with consistent back-indexes, and holds exactly the armed timers. */
static int heap_consistent(const ft_loop *l, const ft_timer *timers, int n)
{
    for (uint32_t i = 1; i <= l->heap_len; i++) {
        if (l->heap[i]->heap_index != i) return 0;
        if (i > 1 && l->heap[i / 2]->due_ns > l->heap[i]->due_ns) return 0;
    }
    uint32_t armed = 0;
    for (int i = 0; i < n; i++)
        if (ft_timer_armed(&timers[i])) {
            armed++;
            if (l->heap[timers[i].heap_index] != &timers[i]) return 0;
        }
    return armed == l->heap_len;
}

static void random_heap_operations(void *arg)
{
    heap_fuzz *h = arg;
    enum { N = 2000, OPS = 40000 };
    ft_timer *timers = calloc(N, sizeof *timers);
    int64_t far = ft_loop_now_ns(h->loop) + 3600 * INT64_C(1000000000);
    h->ok = 1;
    for (int op = 0; op < OPS && h->ok; op++) {
        ft_timer *t = &timers[rng() % N];
        if (rng() % 3 == 0)
            ft_timer_stop(h->loop, t);
        else
            ft_timer_start(h->loop, t, far + (int64_t)(rng() % 1000000), never_fires); /* ties */
        if (op % 97 == 0) h->ok = heap_consistent(h->loop, timers, N);
    }
    h->ok = h->ok && heap_consistent(h->loop, timers, N);
    /* popping in order: the earliest is always at the top */
    int64_t prev = INT64_MIN;
    while (h->ok && h->loop->heap_len) {
        ft_timer *top = h->loop->heap[1];
        h->ok = top->due_ns >= prev;
        prev = top->due_ns;
        ft_timer_stop(h->loop, top);
    }
    free(timers);
}

static void random_start_stop_restart_keeps_the_heap_consistent(void **state)
{
    (void)state;
    ftrpc_runtime *rt = new_runtime(1);
    heap_fuzz h = {&rt->loops[0], 0};
    ft_loop_run_sync(h.loop, random_heap_operations, &h);
    assert_true(h.ok);
    ftrpc_runtime_free(rt);
}

/* ---- one sleep per timer ----
 *
 * An idle loop with one timer armed sleeps once, until the timer is due. Waking before it (libuv
 * counts whole milliseconds) would find nothing due and sleep again: a second wake-up, one more
 * scheduling delay on a loaded machine. Counted as the IO thread's voluntary context switches
 * between arming the timer and its callback (a sleep the thread was preempted into counts as an
 * involuntary one, so a timer may show none, never two). Due times at every fraction of a
 * millisecond, and the loop busy for up to two milliseconds after arming (more callbacks of the
 * same iteration), so that it goes to sleep at every fraction of one too. */
enum { SLEEP_CHECKS = 40 };

typedef struct sleep_count {
    ft_loop *loop;
    ft_timer timer;
    long switches_at_arm, switches_at_fire;
    ft_event fired;
} sleep_count;

/* The calling thread's voluntary context switches so far: one per sleep. */
static long voluntary_switches(void)
{
    FILE *f = fopen("/proc/thread-self/status", "r");
    char line[128];
    long n = -1;
    while (f && fgets(line, sizeof line, f) &&
           sscanf(line, "voluntary_ctxt_switches: %ld", &n) != 1) {
    }
    if (f) fclose(f);
    return n;
}

static void on_counted_fire(ft_timer *t)
{
    sleep_count *c = ft_container_of(t, sleep_count, timer);
    c->switches_at_fire = voluntary_switches();
    ft_event_set(&c->fired);
}

static void arm_counted(void *arg)
{
    sleep_count *c = arg;
    c->switches_at_arm = voluntary_switches();
    int64_t due = ft_now_ns() + 5 * FT_NS_PER_MS + (int64_t)(rng() % FT_NS_PER_MS);
    ft_timer_start(c->loop, &c->timer, due, on_counted_fire);
    int64_t busy_until = ft_now_ns() + (int64_t)(rng() % (2 * FT_NS_PER_MS));
    while (ft_now_ns() < busy_until) {
    }
}

/* ---- the loop's sleep after a stall ----
 *
 * A loop iteration can take long in wall time: a long batch of callbacks, or, on a loaded machine,
 * the IO thread descheduled in the middle of it. The sleep that follows must be computed from the
 * clock as it is then, not as it was before the stall, or the next timer fires a whole stall late
 * (the bound leaves room for a loaded machine's wake-up; without a fresh reading the timer is at
 * least STALL_MS late, since nothing else wakes the loop). */
enum { STALL_MS = 600, DUE_AFTER_STALL_MS = 100, LATE_BOUND_MS = 400 };

typedef struct stall_fix {
    ft_loop *loop;
    ft_timer timer;
    int64_t due_ns, fired_ns;
    ft_event fired;
    uv_timer_t stall_in_timers_phase; /* closed by ftrpc_runtime_free with the loop's handles */
} stall_fix;

static void on_timer_after_stall(ft_timer *t)
{
    stall_fix *s = ft_container_of(t, stall_fix, timer);
    s->fired_ns = ft_now_ns();
    ft_event_set(&s->fired);
}

static void stall_thread(void)
{
    struct timespec ts = {STALL_MS / 1000, (STALL_MS % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void arm_due_after_stall(stall_fix *s)
{
    s->due_ns = ft_now_ns() + (STALL_MS + DUE_AFTER_STALL_MS) * FT_NS_PER_MS;
    ft_timer_start(s->loop, &s->timer, s->due_ns, on_timer_after_stall);
}

/* A borrowable loop computes its sleep itself (runtime.c, loop_main), after the IO callbacks and
 * the timers' callbacks: the stall is a task, in the IO phase. */
static void arm_then_stall(void *arg)
{
    arm_due_after_stall(arg);
    stall_thread();
}

static void stall_now(uv_timer_t *h)
{
    (void)h;
    stall_thread();
}

/* A loop in libuv's own run mode sleeps as libuv computes, after the timers, pending and prepare
 * phases, from the clock libuv read as the iteration began: the stall is in the timers phase. */
static void arm_then_stall_in_next_timers_phase(void *arg)
{
    stall_fix *s = arg;
    arm_due_after_stall(s);
    uv_timer_init(&s->loop->uv, &s->stall_in_timers_phase);
    uv_timer_start(&s->stall_in_timers_phase, stall_now, 0, 0);
}

/* The loop switches to borrowable running when a blocking caller first asks (runtime.c). It runs
 * a task first: a loop whose thread has not yet taken its mutex could be borrowed before it ever
 * ran, and would then still be in libuv's run mode. */
static void make_borrowable(ft_loop *l)
{
    ft_loop_run_sync(l, noop, NULL);
    int64_t deadline = ft_now_ns() + WAIT_NS;
    while (!ft_loop_try_borrow(l)) {
        assert_true(ft_now_ns() < deadline);
        sched_yield();
    }
    ft_loop_return(l, 0);
}

static void check_one_sleep_per_timer(int borrowable)
{
    ftrpc_runtime *rt = new_runtime(1);
    sleep_count c = {.loop = &rt->loops[0]};
    if (borrowable) make_borrowable(c.loop);
    int slept_again = 0;
    for (int i = 0; i < SLEEP_CHECKS; i++) {
        ft_event_init(&c.fired);
        ft_loop_run_sync(c.loop, arm_counted, &c);
        assert_int_equal(ft_event_wait(&c.fired, WAIT_NS), 0);
        assert_true(c.switches_at_arm >= 0);
        slept_again += c.switches_at_fire - c.switches_at_arm > 1;
    }
    print_message("%s loop: %d of %d timers woke the loop before they were due\n",
                  borrowable ? "borrowable" : "libuv-run", slept_again, SLEEP_CHECKS);
    assert_int_equal(slept_again, 0);
    ftrpc_runtime_free(rt);
}

static void an_idle_loop_sleeps_once_until_its_timer_is_due(void **state)
{
    (void)state;
    check_one_sleep_per_timer(0);
}

static void an_idle_borrowable_loop_sleeps_once_until_its_timer_is_due(void **state)
{
    (void)state;
    check_one_sleep_per_timer(1);
}

/* ---- what the closing phase writes ----
 *
 * A handle's close callback may write (the client re-sends a call when its connection's close
 * fails it): libuv runs close callbacks last in an iteration, after the check phase's flush. A
 * borrowable loop, which runs libuv one iteration at a time and sleeps in between, must flush that
 * write before it sleeps, not when something next wakes it (never, with no timer armed). */
typedef struct closing_write {
    ft_loop *loop;
    int fd;
    ft_conn *conn;
    uv_idle_t handle; /* any handle: closed to run a close callback */
} closing_write;

static int discard_read(ft_conn *c)
{
    ft_iobuf_clear(&c->in);
    return 0;
}

static void ignore_close(ft_conn *c, int reason)
{
    (void)c;
    (void)reason;
}

static const ft_conn_handler DISCARDING = {discard_read, NULL, ignore_close};

static void write_on_close(uv_handle_t *h)
{
    closing_write *w = h->data;
    assert_int_equal(ft_conn_write_bytes(w->conn, "x", 1), 0);
}

static void adopt(void *arg)
{
    closing_write *w = arg;
    assert_int_equal(ft_conn_adopt(w->loop, w->fd, 0, &DISCARDING, w, &w->conn), 0);
}

static void close_conn(void *arg)
{
    closing_write *w = arg;
    ft_conn_close(w->conn, 0, 1);
}

static void close_a_handle(void *arg)
{
    closing_write *w = arg;
    uv_idle_init(&w->loop->uv, &w->handle);
    w->handle.data = w;
    uv_close((uv_handle_t *)&w->handle, write_on_close);
}

/* Two ends of a loopback TCP connection. */
static void tcp_pair(int fds[2])
{
    int lis = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(lis, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lis, 1), 0);
    assert_int_equal(getsockname(lis, (struct sockaddr *)&sa, &len), 0);
    fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(fds[0], (struct sockaddr *)&sa, sizeof sa), 0);
    fds[1] = accept4(lis, NULL, NULL, SOCK_CLOEXEC);
    assert_true(fds[1] >= 0);
    close(lis);
}

static void a_borrowable_loop_flushes_what_its_closing_phase_wrote_before_it_sleeps(void **state)
{
    (void)state;
    ftrpc_runtime *rt = new_runtime(1);
    int fds[2];
    tcp_pair(fds);
    closing_write w = {.loop = &rt->loops[0], .fd = fds[0]};
    make_borrowable(w.loop);
    /* apart: the adoption's watcher makes the loop run once more, which would flush anyway */
    ft_loop_run_sync(w.loop, adopt, &w);
    ft_loop_run_sync(w.loop, close_a_handle, &w);
    struct pollfd p = {.fd = fds[1], .events = POLLIN};
    assert_int_equal(poll(&p, 1, 2000), 1);
    char c = 0;
    assert_int_equal(read(fds[1], &c, 1), 1);
    assert_int_equal(c, 'x');
    ft_loop_run_sync(w.loop, close_conn, &w); /* freed once closed, before the loop ends */
    ftrpc_runtime_free(rt);
    close(fds[1]);
}

static void check_timer_after_stall(int borrowable, void (*arm_and_stall)(void *arg))
{
    ftrpc_runtime *rt = new_runtime(1);
    stall_fix s = {.loop = &rt->loops[0]};
    ft_event_init(&s.fired);
    if (borrowable) make_borrowable(s.loop);
    ft_loop_run_sync(s.loop, arm_and_stall, &s);
    assert_int_equal(ft_event_wait(&s.fired, WAIT_NS), 0);
    int64_t late_ms = (s.fired_ns - s.due_ns) / FT_NS_PER_MS;
    print_message("%s loop: timer due %d ms after a %d ms stall fired %lld ms late\n",
                  borrowable ? "borrowable" : "libuv-run", DUE_AFTER_STALL_MS, STALL_MS,
                  (long long)late_ms);
    assert_true(late_ms >= 0);
    assert_true(late_ms < LATE_BOUND_MS);
    ftrpc_runtime_free(rt);
}

static void a_stall_in_a_borrowable_loop_does_not_delay_its_next_timer(void **state)
{
    (void)state;
    check_timer_after_stall(1, arm_then_stall);
}

static void a_stall_before_libuv_sleeps_does_not_delay_the_next_timer(void **state)
{
    (void)state;
    check_timer_after_stall(0, arm_then_stall_in_next_timers_phase);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(runtime_starts_and_stops_with_one_and_three_threads),
        cmocka_unit_test(tasks_posted_from_many_threads_run_once_on_their_loop),
        cmocka_unit_test(run_sync_runs_on_the_loop_and_waits),
        cmocka_unit_test(pick_loop_is_round_robin_off_loop_and_current_on_loop),
        cmocka_unit_test(timers_fire_in_due_order),
        cmocka_unit_test(stop_before_due_prevents_firing),
        cmocka_unit_test(restart_moves_the_due_time),
        cmocka_unit_test(ten_thousand_random_timers_fire_in_order),
        cmocka_unit_test(timers_stopped_at_random_never_fire),
        cmocka_unit_test(a_timer_can_rearm_itself_from_its_callback),
        cmocka_unit_test(random_start_stop_restart_keeps_the_heap_consistent),
        cmocka_unit_test(an_idle_loop_sleeps_once_until_its_timer_is_due),
        cmocka_unit_test(an_idle_borrowable_loop_sleeps_once_until_its_timer_is_due),
        cmocka_unit_test(a_borrowable_loop_flushes_what_its_closing_phase_wrote_before_it_sleeps),
        cmocka_unit_test(a_stall_in_a_borrowable_loop_does_not_delay_its_next_timer),
        cmocka_unit_test(a_stall_before_libuv_sleeps_does_not_delay_the_next_timer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
