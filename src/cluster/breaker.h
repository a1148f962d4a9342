/* Circuit breaker: the error rate of one endpoint over a sliding window of time buckets.
 *
 * The breaker only decides *when* to open; it holds no open/half-open state of its own. Endpoint
 * health (endpoint_health.h) turns a trip into its SUSPENDED state, and its single probe call is
 * the half-open step, so one endpoint never has two competing notions of "down".
 *
 * Invariants: the window is `buckets` buckets of window_ms / buckets each, driven only by the
 * `now_ns` the caller passes (never a clock read here); a bucket older than the window counts
 * nothing; a trip needs at least `min_calls` calls in the window and errors >= error_ratio * calls.
 *
 * Threads: an ft_breaker is NOT synchronised. Its owner serialises access (endpoint health calls it
 * under its per-endpoint lock). It does not allocate, log on the hot path, or know what an error
 * code means: the caller says whether a call failed.
 */
#ifndef FT_CLUSTER_BREAKER_H
#define FT_CLUSTER_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

#define FT_BREAKER_MAX_BUCKETS 60

/* error_ratio value that turns the breaker off (it then never trips). */
#define FT_BREAKER_OFF (-1.0)

/* Zero in any field means its default. Defaults follow Hystrix / Resilience4j, the two breakers
 * most RPC stacks copy: a 10 s window is long enough to hold a meaningful sample at modest rates
 * and short enough that a recovered endpoint's past stops counting quickly. */
typedef struct ft_breaker_options {
    int64_t window_ms;  /* default 10000 (Hystrix metrics.rollingStats.timeInMilliseconds) */
    int buckets;        /* default 10, i.e. 1 s buckets (Hystrix numBuckets); 1..60 */
    int min_calls;      /* default 20 (Hystrix requestVolumeThreshold): no verdict on 3 calls */
    double error_ratio; /* default 0.5 (Hystrix errorThresholdPercentage 50); (0, 1], or
                           FT_BREAKER_OFF */
} ft_breaker_options;

typedef struct ft_breaker_bucket {
    int64_t epoch; /* now_ns / bucket_ns of the calls counted here */
    uint32_t calls;
    uint32_t errors;
} ft_breaker_bucket;

/* Embedded in its owner; see the file comment for threads. */
typedef struct ft_breaker {
    ft_breaker_options opts; /* defaults filled in */
    int64_t bucket_ns;
    uint64_t trips; /* times ft_breaker_record returned true */
    ft_breaker_bucket bucket[FT_BREAKER_MAX_BUCKETS];
} ft_breaker;

/* 0, or FTRPC_EINVAL with the reason logged. `opts` may be NULL (all defaults). */
int ft_breaker_options_validate(const ft_breaker_options *opts);

/* Validates, fills in defaults, and empties the window. 0 or FTRPC_EINVAL. */
int ft_breaker_init(ft_breaker *br, const ft_breaker_options *opts);

/* Counts one call at `now_ns`. Returns true when this call is a failure that makes the window
 * cross the threshold: the caller should open (suspend). The window is then emptied, so that the
 * endpoint starts from a clean slate after its probe. A success never trips. */
bool ft_breaker_record(ft_breaker *br, int64_t now_ns, bool failed);

/* Empties the window (after a successful probe, for example). */
void ft_breaker_reset(ft_breaker *br);

/* Calls and errors in the window that ends at `now_ns`. Either pointer may be NULL. */
void ft_breaker_counts(const ft_breaker *br, int64_t now_ns, uint32_t *calls, uint32_t *errors);

#endif
