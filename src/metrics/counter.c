/* Striped counters and gauges (see counter.h). */
#include "metrics/counter.h"

#include <stddef.h>

static atomic_uint next_stripe;
_Thread_local unsigned ft_metrics_stripe_plus1;

unsigned ft_metrics_assign_stripe(void)
{
    /* Round-robin rather than a hash of the thread id: with few threads (one per core) each gets
     * its own cell for sure. */
    unsigned s =
        atomic_fetch_add_explicit(&next_stripe, 1, memory_order_relaxed) % FT_COUNTER_STRIPES;
    ft_metrics_stripe_plus1 = s + 1;
    return s;
}

void ft_counter_init(ft_counter *c)
{
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
