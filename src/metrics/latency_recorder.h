/* A latency recorder: all-time totals and sliding-window statistics of latencies in nanoseconds,
 * recorded from any thread without locks. Nanoseconds because a fast method answers in well under a
 * microsecond: whole microseconds would show 0 for every one of its percentiles.
 *
 * How: every record goes into one cumulative histogram (histogram.h) that is never reset. Once per
 * interval (1 s by default) a snapshot of it is copied into a ring of window+1 slots, labelled
 * with the interval number ("epoch") whose start it marks. The statistics of the last N intervals
 * are the difference between the cumulative histogram now and the snapshot at the start of epoch
 * (current - N). So the window is N full intervals plus the current partial one: a record is seen
 * at once and falls out between N and N+1 intervals later. Percentiles, CDF, count, mean and QPS
 * all come from that difference; the window max comes from a small ring of per-interval maxima.
 *
 * Rotation is lazy: the first record or query of an epoch takes the snapshot. A recorder never
 * waits for it: it tries the lock and, if someone else holds it, records anyway. Because nothing
 * is ever cleared, a record is never lost; a record racing a snapshot is counted in the interval
 * before or after. If nothing at all happens during an epoch no snapshot is taken, which is
 * harmless: the state at the start of that epoch equals the next snapshot taken.
 *
 * Cost: a record is a clock read (none with ft_latency_recorder_record_at), two relaxed atomic adds
 * (bucket, this thread's sum cell), a load of the all-time max and of this interval's max (a CAS
 * only when one grows) and a load of the last epoch. bench/metrics.c on the 2-core dev VM:
 * record_at 17-21 ns, record 50-60 ns (its kvm-clock read alone is 33-40 ns), against 6.8 ns for
 * one relaxed fetch_add on a shared word; callers that already hold the time should use record_at.
 * Memory: (window + 3) histograms of 36 KiB, about 470 KiB with the default 10-interval window.
 * Queries take the lock and walk the 4608 buckets a few times: microseconds, meant for a few reads
 * a second. The all-time sum is a uint64 of nanoseconds: it wraps after 584 years of summed
 * latency, which a method taking 1 ms a call at a million calls a second reaches in 213 days.
 *
 * It does not sample, decay or downsample old data; and window statistics beyond `window`
 * intervals are not kept (the all-time count, sum and max are). */
#ifndef FT_METRICS_LATENCY_RECORDER_H
#define FT_METRICS_LATENCY_RECORDER_H

#include <stddef.h>
#include <stdint.h>

#include "base/clock.h"
#include "metrics/histogram.h"

#define FT_LATENCY_WINDOW_MAX 60

typedef struct ft_latency_recorder_options {
    const ft_clock *clock; /* drives rotation; default ft_clock_monotonic() */
    int window;            /* intervals kept for window queries, 1..60; default 10 (as brpc's
                            * bvar_dump_interval) */
    int64_t interval_ns;   /* length of one interval; default 1 s. Must be > 0 when set. */
} ft_latency_recorder_options;

/* Threads: record and query from any thread. new/free by the owner; no record or query may run
 * during or after free (unregister it from a registry first). The public ftrpc_latency_recorder
 * (ftrpc/metrics.h) is this type. */
typedef struct ftrpc_latency_recorder ft_latency_recorder;

/* opts may be NULL (all defaults). Returns 0 and *out, FTRPC_EINVAL (window outside 1..60,
 * interval_ns < 0) or FTRPC_ENOMEM. */
int ft_latency_recorder_new(const ft_latency_recorder_options *opts, ft_latency_recorder **out);
/* _free(NULL) does nothing. */
void ft_latency_recorder_free(ft_latency_recorder *r);

/* Records one latency in nanoseconds (clamped to [0, FT_HIST_MAX_VALUE]). Lock-free. */
void ft_latency_recorder_record(ft_latency_recorder *r, int64_t latency_ns);
/* The same with the time already known to the caller (read from the recorder's clock), which
 * saves a clock read when the caller just took one to compute the latency. */
void ft_latency_recorder_record_at(ft_latency_recorder *r, int64_t latency_ns, int64_t now_ns);

/* All-time totals since creation. Lock-free reads. */
uint64_t ft_latency_recorder_count(const ft_latency_recorder *r);
uint64_t ft_latency_recorder_sum(const ft_latency_recorder *r);
int64_t ft_latency_recorder_max(const ft_latency_recorder *r);
/* The window length given at creation, in intervals, and the interval in ns. */
int ft_latency_recorder_window_size(const ft_latency_recorder *r);
int64_t ft_latency_recorder_interval_ns(const ft_latency_recorder *r);

/* Statistics over the last `window` intervals (0 = the recorder's window; otherwise 1..its
 * window) plus the current partial interval: the public struct (ftrpc/metrics.h), where "second"
 * reads "interval" for a recorder whose interval is not the default. */
typedef ftrpc_latency_stats ft_latency_stats;

/* Recorders hold nanoseconds; what people read (pages, /vars, /metrics) is microseconds, as in
 * brpc, with the fraction that tells sub-microsecond figures apart. */
static inline double ft_latency_us(double ns)
{
    return ns / (double)FT_NS_PER_US;
}

/* Fills *out. 0 or FTRPC_EINVAL (bad window). */
int ft_latency_recorder_stats(ft_latency_recorder *r, int window, ft_latency_stats *out);
/* Writes the value at quantile ps[i] (each in [0, 1]) to out_ns[i] for i < n. 0 or FTRPC_EINVAL. */
int ft_latency_recorder_percentiles(ft_latency_recorder *r, int window, const double *ps,
                                    int64_t *out_ns, size_t n);
/* CDF points of the window, as ft_histogram_cdf. 0 or FTRPC_EINVAL. */
int ft_latency_recorder_cdf(ft_latency_recorder *r, int window, ft_cdf_point *out, size_t cap,
                            size_t *n);
/* Copies the window's histogram into *out (overwritten; its max is the window max), for any
 * other query. 0 or FTRPC_EINVAL. */
int ft_latency_recorder_window_histogram(ft_latency_recorder *r, int window, ft_histogram *out);

#endif
