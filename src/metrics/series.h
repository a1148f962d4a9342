/* A bounded history of a call path's figures, one point per sample: calls per second, errors per
 * second and the p99 latency, for charts of the last minutes (brpc's /vars series). The server
 * keeps one per method and samples it once a second (server_metrics.c).
 *
 * Why points are computed at sampling time rather than at each call: the call path already counts
 * calls and errors (cumulative counters) and records latencies; a sampler that reads those once a
 * second adds nothing to a call. A point's rates are the growth of the cumulative counts since the
 * previous sample over the time between the two, so a late or missed tick gives a longer step with
 * the right average, not a spike. The first sample only sets the base.
 *
 * The ring keeps the newest `capacity` points and overwrites the oldest. Times come from the
 * caller (the sampler's clock), which is what lets tests drive them by hand.
 *
 * Threads: one sampler (ft_series_sample) and any number of readers (ft_series_points); a mutex
 * guards the ring, held for one point written or at most `capacity` copied, never by a call. */
#ifndef FT_METRICS_SERIES_H
#define FT_METRICS_SERIES_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ft_series_point {
    int64_t at_ns;       /* when the sample was taken, on the sampler's clock */
    double calls_per_s;  /* since the previous sample */
    double errors_per_s; /* since the previous sample */
    int64_t p99_ns;      /* as the sampler read it (the server: over the last second) */
} ft_series_point;

typedef struct ft_series {
    pthread_mutex_t lock;    /* guards everything below */
    ft_series_point *points; /* `capacity` slots; the newest point is at next - 1 */
    size_t capacity, next, count;
    int primed; /* a base sample was taken: the next one makes a point */
    int64_t base_ns;
    uint64_t base_calls, base_errors;
} ft_series;

/* 0, FTRPC_EINVAL (capacity 0) or FTRPC_ENOMEM. */
int ft_series_init(ft_series *s, size_t capacity);
void ft_series_fini(ft_series *s);

/* One sample at now_ns of the cumulative counts (which only grow; a count that went down, as after
 * a reset, counts as no growth) and the p99 of the period. A sample no later than the previous one
 * is ignored: rates need time to pass. */
void ft_series_sample(ft_series *s, int64_t now_ns, uint64_t calls, uint64_t errors,
                      int64_t p99_ns);

/* Copies the newest points, at most cap, oldest first, into out; returns how many. */
size_t ft_series_points(ft_series *s, ft_series_point *out, size_t cap);

#endif
