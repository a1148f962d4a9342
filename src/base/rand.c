/* The per-thread default generator (see rand.h). Seeding mixes the monotonic clock, the address of
 * the thread-local state and a global counter: the counter alone guarantees distinct seeds for
 * threads started within one clock tick. */
#include "base/rand.h"

#include <stdatomic.h>

#include "base/clock.h"

static _Thread_local ft_rand thread_rand;
static _Thread_local int thread_rand_ready;
static _Atomic uint64_t seed_counter;

ft_rand *ft_rand_thread(void)
{
    if (!thread_rand_ready) {
        uint64_t n = atomic_fetch_add_explicit(&seed_counter, 1, memory_order_relaxed);
        ft_rand mix;
        ft_rand_seed(&mix, (uint64_t)ft_now_ns() ^ (uint64_t)(uintptr_t)&thread_rand ^ (n << 48));
        ft_rand_seed(&thread_rand, ft_rand_next(&mix) + n);
        thread_rand_ready = 1;
    }
    return &thread_rand;
}
