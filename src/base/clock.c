/* Real and manual clocks (see clock.h). */
#include "base/clock.h"

#include <time.h>

int64_t ft_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t ft_now_us(void)
{
    return ft_now_ns() / 1000;
}

int64_t ft_clock_real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t monotonic_now(const ft_clock *clock)
{
    (void)clock;
    return ft_now_ns();
}

static const ft_clock MONOTONIC = {monotonic_now};

const ft_clock *ft_clock_monotonic(void)
{
    return &MONOTONIC;
}

static int64_t manual_now(const ft_clock *clock)
{
    const ft_manual_clock *m = (const ft_manual_clock *)clock;
    return atomic_load(&((ft_manual_clock *)m)->now);
}

void ft_manual_clock_init(ft_manual_clock *clock, int64_t start_ns)
{
    clock->base.now_ns = manual_now;
    atomic_init(&clock->now, start_ns);
}

void ft_manual_clock_advance(ft_manual_clock *clock, int64_t delta_ns)
{
    atomic_fetch_add(&clock->now, delta_ns);
}
