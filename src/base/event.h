/* ft_event: a one-shot wake-up between two threads (a futex), used by blocking calls.
 *
 * The waiter spins briefly before sleeping because on the call path the answer often comes back
 * within microseconds, and a futex sleep/wake pair costs more than that. The setter never touches
 * the event after a waiter may have returned unless the waiter announced it was asleep.
 */
#ifndef FT_BASE_EVENT_H
#define FT_BASE_EVENT_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct ft_event {
    atomic_int state; /* 0 unset, 1 set, 2 unset with a sleeping waiter */
} ft_event;

static inline void ft_event_init(ft_event *ev)
{
    atomic_init(&ev->state, 0);
}

/* Any thread. Wakes the waiter; at most once per init. */
void ft_event_set(ft_event *ev);
/* The waiter. Returns 0 once set, FTRPC_ERPCTIMEDOUT after timeout_ns (< 0: no limit). */
int ft_event_wait(ft_event *ev, int64_t timeout_ns);
/* How long ft_event_wait spins before sleeping, in ns (default 0 up to two cores, 20 us beyond;
 * FTRPC_SPIN_US in the environment overrides). */
int64_t ft_event_spin_ns(void);

#endif
