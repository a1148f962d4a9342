/* A lock-free intrusive multi-producer single-consumer queue (Vyukov's design).
 *
 * Producers on any thread push nodes embedded in their own structs; one consumer (an IO thread)
 * pops. Push is wait-free (one atomic exchange); pop may briefly see a push in progress and then
 * reports "empty for now" (the producer's wake-up follows, so nothing is lost).
 */
#ifndef FT_BASE_MPSC_H
#define FT_BASE_MPSC_H

#include <stdatomic.h>
#include <stddef.h>

typedef struct ft_mpsc_node {
    _Atomic(struct ft_mpsc_node *) next;
} ft_mpsc_node;

typedef struct ft_mpsc {
    _Atomic(ft_mpsc_node *) head; /* producers push here */
    ft_mpsc_node *tail;           /* the consumer pops here */
    ft_mpsc_node stub;
} ft_mpsc;

static inline void ft_mpsc_init(ft_mpsc *q)
{
    atomic_init(&q->stub.next, NULL);
    atomic_init(&q->head, &q->stub);
    q->tail = &q->stub;
}

/* Any thread. The producer wakes the consumer itself afterwards (uv_async_send coalesces). */
static inline void ft_mpsc_push(ft_mpsc *q, ft_mpsc_node *n)
{
    atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
    ft_mpsc_node *prev = atomic_exchange_explicit(&q->head, n, memory_order_acq_rel);
    atomic_store_explicit(&prev->next, n, memory_order_release);
}

/* The consumer only. NULL when empty (or when a push is half done: its wake-up will come). */
static inline ft_mpsc_node *ft_mpsc_pop(ft_mpsc *q)
{
    ft_mpsc_node *tail = q->tail;
    ft_mpsc_node *next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (tail == &q->stub) {
        if (!next) return NULL;
        q->tail = next;
        tail = next;
        next = atomic_load_explicit(&next->next, memory_order_acquire);
    }
    if (next) {
        q->tail = next;
        return tail;
    }
    ft_mpsc_node *head = atomic_load_explicit(&q->head, memory_order_acquire);
    if (tail != head) return NULL;
    ft_mpsc_push(q, &q->stub);
    next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (next) {
        q->tail = next;
        return tail;
    }
    return NULL;
}

#endif
