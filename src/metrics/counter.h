/* Counters and gauges: the cheap scalar metrics.
 *
 * ft_counter is a monotonically increasing uint64 (requests, errors, bytes), added to from many
 * threads on the hot path. It is striped: FT_COUNTER_STRIPES cells, each on its own cache line, and
 * each thread adds to the cell chosen by a small per-thread index (assigned round-robin the first
 * time a thread touches any striped metric). A read sums the cells. Why not one atomic:
 * bench/metrics.c on the 2-core dev VM measured a relaxed fetch_add on one shared word at 6.8 ns
 * from 1 thread and 8.5-10.8 ns from 2 (the line ping-pongs whenever both threads really run at
 * once), against 6.4-6.6 ns for the striped counter from 1 or 2 threads: never worse, better under
 * contention, and the gap grows with cores. The price is 512 bytes a counter and a read that
 * touches 8 lines, which is nothing for a read that happens a few times a second. Reads racing
 * adds see some of them; counters are statistics, not sequence numbers.
 *
 * Owned stripes: the first FT_COUNTER_OWNED_STRIPES cells can each belong to one thread (an IO
 * thread claims one when its loop starts: ft_metrics_own_stripe), which then adds with a relaxed
 * load and store instead of a locked add. A locked add costs a full barrier on x86; an IO thread
 * makes a dozen of them a call, and on the 2-core dev VM they were the hottest instructions of
 * the echo path (docs/performance.md, fourth pass). Every other thread shares the remaining cells
 * round-robin, with atomic adds. The price: a reset racing an owner's add can be undone by it
 * (resets are for tests and scratch histograms, never for live metrics).
 *
 * ft_gauge is an int64 level (in-flight calls, connections, queue depth) that is set or added to,
 * or, when made with a callback, computed at read time (e.g. the size of a table behind its lock).
 *
 * Neither allocates after init, and neither knows its name: the registry (registry.h) does. */
#ifndef FT_METRICS_COUNTER_H
#define FT_METRICS_COUNTER_H

#include <stdatomic.h>
#include <stdint.h>

#define FT_COUNTER_STRIPES 8
#define FT_COUNTER_OWNED_STRIPES 4 /* cells 0..3 can be owned; threads share cells 4..7 */

/* Threads: add from any thread; read from any thread; init/reset by the owner. */
typedef struct ft_counter {
    struct {
        _Alignas(64) _Atomic uint64_t v;
    } cells[FT_COUNTER_STRIPES];
} ft_counter;

void ft_counter_init(ft_counter *c);
/* The calling thread's stripe plus one; 0 until assigned. Read through ft_metrics_thread_stripe. */
extern _Thread_local unsigned ft_metrics_stripe_plus1;
/* Whether the calling thread owns its stripe (ft_metrics_own_stripe). */
extern _Thread_local int ft_metrics_stripe_owned;
unsigned ft_metrics_assign_stripe(void);

/* The calling thread's stripe; stable for the thread's life, except that ft_metrics_own_stripe
 * moves it to an owned one. */
static inline unsigned ft_metrics_thread_stripe(void)
{
    unsigned s = ft_metrics_stripe_plus1;
    if (__builtin_expect(s == 0, 0)) return ft_metrics_assign_stripe();
    return s - 1;
}

/* Gives the calling thread a stripe of its own until it exits, when one is free: returns 1, or 0
 * when all FT_COUNTER_OWNED_STRIPES are taken (the thread keeps a shared one). For threads that
 * add often and live long (IO threads). */
int ft_metrics_own_stripe(void);

/* Adds n to the calling thread's cell of a striped set (cells[FT_COUNTER_STRIPES] of any striped
 * metric). Only the owner writes an owned cell, so a load and a store lose nothing; the atomic
 * load and store still let readers sum the cells at any time. */
static inline void ft_stripe_add(_Atomic uint64_t *cell, uint64_t n)
{
    if (ft_metrics_stripe_owned)
        atomic_store_explicit(cell, atomic_load_explicit(cell, memory_order_relaxed) + n,
                              memory_order_relaxed);
    else
        atomic_fetch_add_explicit(cell, n, memory_order_relaxed);
}

static inline void ft_counter_add(ft_counter *c, uint64_t n)
{
    ft_stripe_add(&c->cells[ft_metrics_thread_stripe() % FT_COUNTER_STRIPES].v, n);
}

static inline void ft_counter_inc(ft_counter *c)
{
    ft_counter_add(c, 1);
}

/* The sum of all cells. Any thread. */
uint64_t ft_counter_get(const ft_counter *c);
/* Zeroes the cells; adds racing it may survive or not. */
void ft_counter_reset(ft_counter *c);

/* Computes a gauge's value at read time. Runs on the reading thread (e.g. whoever dumps the
 * registry), possibly with the registry's lock held: it must be quick and must not touch the
 * registry. */
typedef int64_t (*ft_gauge_fn)(void *arg);

/* Threads: set/add/get from any thread; init by the owner. */
typedef struct ft_gauge {
    _Atomic int64_t value;
    ft_gauge_fn fn; /* when not NULL, get() returns fn(arg) and value is unused */
    void *arg;
} ft_gauge;

/* A gauge holding a value, starting at 0. */
void ft_gauge_init(ft_gauge *g);
/* A gauge computed by fn(arg) at each read; fn must not be NULL. arg is the caller's. */
void ft_gauge_init_fn(ft_gauge *g, ft_gauge_fn fn, void *arg);

static inline void ft_gauge_set(ft_gauge *g, int64_t v)
{
    atomic_store_explicit(&g->value, v, memory_order_relaxed);
}

static inline void ft_gauge_add(ft_gauge *g, int64_t delta)
{
    atomic_fetch_add_explicit(&g->value, delta, memory_order_relaxed);
}

int64_t ft_gauge_get(const ft_gauge *g);

#endif
