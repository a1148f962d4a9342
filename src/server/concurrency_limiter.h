/* Concurrency limiters of a server (docs/overload.md): pure state machines fed with the outcome
 * and latency of finished calls and a time given by the caller (an ft_clock in tests), with no
 * lock, thread or clock of their own. The server keeps one per limited method and one for the
 * whole server, and serialises the calls into it (server.c).
 *
 * Two algorithms, both brpc's (apache/brpc, `auto_concurrency_limiter.cpp` and
 * `timeout_concurrency_limiter.cpp`):
 *  - auto: max_concurrency = max_qps x ((2 + alpha) x min_latency - latency), recomputed once per
 *    sample window; min_latency is re-measured every remeasure interval by lowering the limit to
 *    what the measured throughput needs, so that a latency learnt once does not stick;
 *  - timeout: the average latency of the last window; a request whose deadline is shorter cannot
 *    finish in time and is refused at once.
 * What it deliberately does not do: count calls in flight (the server does, with atomics) or
 * decide the pushback a refused call carries (server.c, from ft_limiter_retry_after_ms).
 */
#ifndef FT_SERVER_CONCURRENCY_LIMITER_H
#define FT_SERVER_CONCURRENCY_LIMITER_H

#include <stdint.h>

typedef struct ft_limiter_params {
    int64_t window_ns;          /* default 1 s (brpc's auto_cl_sample_window_size_ms) */
    int min_samples;            /* default 100: a window with fewer is dropped (brpc) */
    int max_samples;            /* default 200: a window ends early with this many (brpc) */
    double alpha;               /* default 0.3 (brpc's doc): the headroom over min_latency */
    int initial_max;            /* default 40 (brpc's auto_cl_initial_max_concurrency) */
    int min_max;                /* default 1: the limit never goes below it */
    int64_t remeasure_ns;       /* default 50 s (brpc): the mean interval of min_latency checks */
    int64_t initial_latency_ns; /* default 500 us (brpc's timeout_cl_initial_avg_latency_us) */
    double ema;                 /* default 0.1 (brpc's auto_cl_alpha_factor_for_ema) */
    uint64_t seed;              /* default 0: from the clock and the address (tests fix it) */
} ft_limiter_params;

/* The figures of a limiter; written by the functions below only. */
typedef struct ft_limiter {
    ft_limiter_params p;
    int max_concurrency;      /* auto: the limit now */
    int64_t min_latency_ns;   /* auto: the no-load latency learnt; -1 before the first window */
    double max_qps;           /* auto: an EMA of the best throughput seen, calls/s */
    int64_t avg_latency_ns;   /* the last window's average latency (failures weigh in, as brpc) */
    int64_t remeasure_at_ns;  /* auto: when min_latency is checked next */
    int64_t forget_min_at_ns; /* auto: != 0 while the limit is lowered for the check */
    uint64_t rand;            /* spreads remeasure times: servers do not check together */
    /* the window being filled */
    int64_t win_start_ns; /* 0: none yet */
    int win_ok, win_failed;
    int64_t win_ok_ns, win_failed_ns;
    int64_t windows; /* windows that changed the figures */
} ft_limiter;

/* Fills unset (zero) params with the defaults above. */
void ft_limiter_params_default(ft_limiter_params *p);
/* p NULL: the defaults. now_ns: the caller's clock. */
void ft_limiter_init(ft_limiter *l, const ft_limiter_params *p, int64_t now_ns);
/* One finished call that ran (not one the limiter refused): ok 1 on success, latency_ns from its
 * admission to its reply. 1 when it closed a window (the figures changed), else 0. */
int ft_limiter_on_response(ft_limiter *l, int ok, int64_t latency_ns, int64_t now_ns);
/* The pushback of a refused call: the mean time between two calls that finish when
 * `concurrency` calls share `avg_latency_ns`, in whole ms, at least 1 and at most 1000. */
int32_t ft_limiter_retry_after_ms(int64_t avg_latency_ns, int concurrency);

#endif
