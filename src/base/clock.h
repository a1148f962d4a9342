/* Clocks. Time-driven state machines (endpoint health, breakers, budgets, backup policies) take an
 * ft_clock so that tests can drive time by hand instead of sleeping. ft_clock_monotonic() is the
 * real one; ft_manual_clock is the test double. Times are nanoseconds on a monotonic scale. */
#ifndef FT_BASE_CLOCK_H
#define FT_BASE_CLOCK_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct ft_clock ft_clock;
struct ft_clock {
    int64_t (*now_ns)(const ft_clock *clock);
};

/* The process-wide monotonic clock (CLOCK_MONOTONIC). Never NULL, never freed. */
const ft_clock *ft_clock_monotonic(void);

/* A clock that moves only when told to; safe to read from any thread. */
typedef struct ft_manual_clock {
    ft_clock base;
    _Atomic int64_t now;
} ft_manual_clock;

void ft_manual_clock_init(ft_manual_clock *clock, int64_t start_ns);
void ft_manual_clock_advance(ft_manual_clock *clock, int64_t delta_ns);

static inline int64_t ft_clock_now_ns(const ft_clock *clock)
{
    return clock->now_ns(clock);
}

/* Shortcuts on the real clocks. */
int64_t ft_now_ns(void);        /* CLOCK_MONOTONIC, ns */
int64_t ft_now_us(void);        /* CLOCK_MONOTONIC, us */
int64_t ft_clock_real_ms(void); /* CLOCK_MONOTONIC_COARSE, ms: cheap, for rate limits */

#define FT_NS_PER_SEC INT64_C(1000000000)
#define FT_NS_PER_MS INT64_C(1000000)
#define FT_NS_PER_US INT64_C(1000)

#endif
