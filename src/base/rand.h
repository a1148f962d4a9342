/* A small, fast, seedable pseudo-random generator for load balancing and jitter: splitmix64
 * (Steele, Lea and Flood; the seeder of xoshiro), one add and two multiply-xorshifts per draw, good
 * statistical quality (passes BigCrush) and 8 bytes of state, so each call or thread can own one.
 *
 * Invariants: a given seed always yields the same sequence on every platform (tests rely on it).
 * Not thread-safe: one ft_rand belongs to one thread at a time; ft_rand_thread() hands out a
 * per-thread one. Not cryptographic: never use it for tokens, ids others must not guess, or keys.
 */
#ifndef FT_BASE_RAND_H
#define FT_BASE_RAND_H

#include <stdint.h>

typedef struct ft_rand {
    uint64_t state;
} ft_rand;

/* Seeds r; any seed (including 0) is fine. */
static inline void ft_rand_seed(ft_rand *r, uint64_t seed)
{
    r->state = seed;
}

/* The next 64 random bits. */
static inline uint64_t ft_rand_next(ft_rand *r)
{
    uint64_t z = (r->state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* A draw in [0, n), n > 0, by Lemire's multiply-shift: no division, and a bias of at most n / 2^64,
 * which no test or balancer can observe. Returns 0 when n is 0. */
static inline uint64_t ft_rand_below(ft_rand *r, uint64_t n)
{
    __extension__ typedef unsigned __int128 u128;
    return (uint64_t)(((u128)ft_rand_next(r) * n) >> 64);
}

/* A uniform draw in [0, 1) with 53 bits. */
static inline double ft_rand_uniform(ft_rand *r)
{
    return (double)(ft_rand_next(r) >> 11) / (double)(UINT64_C(1) << 53);
}

/* The calling thread's generator, seeded once per thread from the clock, the thread's address and a
 * process-wide counter, so two threads never share a sequence. Valid until the thread exits. */
ft_rand *ft_rand_thread(void);

#endif
