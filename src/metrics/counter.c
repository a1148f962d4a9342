/* Striped counters and gauges (see counter.h). */
#include "metrics/counter.h"

#include <assert.h>
#include <stddef.h>

#include "base/aligned_alloc.h"
#include "base/thread_exit.h"

static atomic_uint next_stripe;
static atomic_uint owned_stripes; /* bit i: cell i has an owner */
_Thread_local unsigned ft_metrics_stripe_plus1;
_Thread_local int ft_metrics_stripe_owned;

unsigned ft_metrics_assign_stripe(void)
{
    /* Round-robin over the shared cells rather than a hash of the thread id: with few threads
     * (one per core) each gets its own cell for sure. */
    enum { SHARED = FT_COUNTER_STRIPES - FT_COUNTER_OWNED_STRIPES };
    unsigned s = FT_COUNTER_OWNED_STRIPES +
                 atomic_fetch_add_explicit(&next_stripe, 1, memory_order_relaxed) % SHARED;
    ft_metrics_stripe_plus1 = s + 1;
    return s;
}

/* At the owner's exit. Release: the next owner's first load must see this one's last store. */
static void disown_stripe(void)
{
    unsigned s = ft_metrics_stripe_plus1 - 1;
    ft_metrics_stripe_owned = 0;
    ft_metrics_stripe_plus1 = 0;
    atomic_fetch_and_explicit(&owned_stripes, ~(1u << s), memory_order_release);
}

int ft_metrics_own_stripe(void)
{
    if (ft_metrics_stripe_owned) return 1;
    unsigned taken = atomic_load_explicit(&owned_stripes, memory_order_relaxed);
    for (;;) {
        unsigned s = 0;
        while (s < FT_COUNTER_OWNED_STRIPES && (taken & (1u << s)))
            s++;
        if (s == FT_COUNTER_OWNED_STRIPES) return 0;
        /* acquire: pairs with the previous owner's release in disown_stripe */
        if (atomic_compare_exchange_weak_explicit(&owned_stripes, &taken, taken | (1u << s),
                                                  memory_order_acquire, memory_order_relaxed)) {
            if (ft_thread_at_exit(disown_stripe) != 0) {
                atomic_fetch_and_explicit(&owned_stripes, ~(1u << s), memory_order_release);
                return 0;
            }
            ft_metrics_stripe_plus1 = s + 1;
            ft_metrics_stripe_owned = 1;
            return 1;
        }
    }
}

void ft_counter_init(ft_counter *c)
{
    assert(ft_is_aligned(c, alignof(ft_counter))); /* allocate holders with ft_aligned_calloc */
    for (size_t i = 0; i < FT_COUNTER_STRIPES; i++)
        atomic_init(&c->cells[i].v, 0);
}

uint64_t ft_counter_get(const ft_counter *c)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < FT_COUNTER_STRIPES; i++)
        sum += atomic_load_explicit(&c->cells[i].v, memory_order_relaxed);
    return sum;
}

void ft_counter_reset(ft_counter *c)
{
    for (size_t i = 0; i < FT_COUNTER_STRIPES; i++)
        atomic_store_explicit(&c->cells[i].v, 0, memory_order_relaxed);
}

void ft_gauge_init(ft_gauge *g)
{
    atomic_init(&g->value, 0);
    g->fn = NULL;
    g->arg = NULL;
}

void ft_gauge_init_fn(ft_gauge *g, ft_gauge_fn fn, void *arg)
{
    atomic_init(&g->value, 0);
    g->fn = fn;
    g->arg = arg;
}

int64_t ft_gauge_get(const ft_gauge *g)
{
    if (g->fn) return g->fn(g->arg);
    return atomic_load_explicit(&g->value, memory_order_relaxed);
}
