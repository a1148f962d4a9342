/* ft_mpsc: FIFO order on one thread, and 4 producers racing one consumer: every node comes out
 * exactly once and each producer's nodes in the order it pushed them. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "base/mpsc.h"

typedef struct item {
    ft_mpsc_node node; /* first: a node pointer is an item pointer */
    int producer;
    int seq;
} item;

static void single_thread_pops_in_push_order(void **state)
{
    (void)state;
    ft_mpsc q;
    ft_mpsc_init(&q);
    assert_null(ft_mpsc_pop(&q));
    item items[100];
    for (int round = 0; round < 3; round++) { /* the queue is reusable once drained */
        for (int i = 0; i < 100; i++) {
            items[i].seq = i;
            ft_mpsc_push(&q, &items[i].node);
        }
        for (int i = 0; i < 100; i++) {
            item *it = (item *)ft_mpsc_pop(&q);
            assert_non_null(it);
            assert_int_equal(it->seq, i);
        }
        assert_null(ft_mpsc_pop(&q));
    }
    /* interleaved push and pop */
    ft_mpsc_push(&q, &items[0].node);
    ft_mpsc_push(&q, &items[1].node);
    assert_ptr_equal(ft_mpsc_pop(&q), &items[0].node);
    ft_mpsc_push(&q, &items[2].node);
    assert_ptr_equal(ft_mpsc_pop(&q), &items[1].node);
    assert_ptr_equal(ft_mpsc_pop(&q), &items[2].node);
    assert_null(ft_mpsc_pop(&q));
}

enum { PRODUCERS = 4, PER_PRODUCER = 100000 };

typedef struct producer_arg {
    ft_mpsc *q;
    item *items;
    int id;
} producer_arg;

static void *produce(void *arg)
{
    producer_arg *p = arg;
    for (int i = 0; i < PER_PRODUCER; i++) {
        p->items[i].producer = p->id;
        p->items[i].seq = i;
        ft_mpsc_push(p->q, &p->items[i].node);
    }
    return NULL;
}

static void many_producers_each_node_popped_once_in_producer_order(void **state)
{
    (void)state;
    ft_mpsc q;
    ft_mpsc_init(&q);
    item *items = calloc((size_t)PRODUCERS * PER_PRODUCER, sizeof *items);
    assert_non_null(items);
    pthread_t threads[PRODUCERS];
    producer_arg args[PRODUCERS];
    for (int p = 0; p < PRODUCERS; p++) {
        args[p] = (producer_arg){&q, items + (size_t)p * PER_PRODUCER, p};
        assert_int_equal(pthread_create(&threads[p], NULL, produce, &args[p]), 0);
    }
    int next[PRODUCERS] = {0};
    long popped = 0;
    while (popped < (long)PRODUCERS * PER_PRODUCER) {
        item *it = (item *)ft_mpsc_pop(&q);
        if (!it) {
            sched_yield(); /* empty, or a push half done */
            continue;
        }
        assert_true(it->producer >= 0 && it->producer < PRODUCERS);
        assert_int_equal(it->seq, next[it->producer]); /* once each, in order */
        next[it->producer]++;
        popped++;
    }
    for (int p = 0; p < PRODUCERS; p++) {
        assert_int_equal(pthread_join(threads[p], NULL), 0);
        assert_int_equal(next[p], PER_PRODUCER);
    }
    assert_null(ft_mpsc_pop(&q));
    free(items);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(single_thread_pops_in_push_order),
        cmocka_unit_test(many_producers_each_node_popped_once_in_producer_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
