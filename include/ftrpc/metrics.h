/* ftrpc metrics for the application's own measurements: histograms and latency recorders
 * (docs/metrics.md).
 *
 * A histogram keeps the distribution of every value recorded into it, for as long as it lives: the
 * figures of one benchmark run, say. A latency recorder (brpc's bvar::LatencyRecorder) keeps
 * latencies over a sliding window of recent seconds as well as all-time totals, and, given a
 * name, shows them on the /vars and /metrics pages of the process's servers and admin ports next
 * to ftrpc's own.
 *
 * Both record without locks from any number of threads at once; queries may run meanwhile.
 */
#ifndef FTRPC_METRICS_H
#define FTRPC_METRICS_H

#include "ftrpc/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- histograms ---- */

/* A log-linear histogram of integers in the caller's unit (nanoseconds, microseconds, bytes...).
 * Values 0..255 are exact; above, each power of two is cut into 128 buckets, so a percentile is
 * within 0.39 % of the true sample of its rank, and p = 1 is the exact maximum. Range 0 .. 2^42-1
 * (73 minutes in nanoseconds): larger values are recorded as 2^42-1, negative ones as 0.
 * 36 KiB each.
 *
 * Threads: record and every query from any thread, concurrently; a query running beside records
 * sees some of them. copy, merge and reset write their destination: the caller keeps other
 * writers of that histogram away meanwhile (a record racing a reset may survive it or not). */
typedef struct ftrpc_histogram ftrpc_histogram;

/* One point of a cumulative distribution: `fraction` of the samples are <= `value`. */
typedef struct ftrpc_cdf_point {
    int64_t value;
    double fraction;
} ftrpc_cdf_point;

/* Makes an empty histogram: 0 and *out, the caller's (ftrpc_histogram_free), or FTRPC_ENOMEM.
 * Any thread. */
FTRPC_API int ftrpc_histogram_new(ftrpc_histogram **out);
/* Frees it; no record or query may run during or after. NULL does nothing. */
FTRPC_API void ftrpc_histogram_free(ftrpc_histogram *h);

/* Records one value: two relaxed atomic adds, no lock (about 20 ns). Any thread. */
FTRPC_API void ftrpc_histogram_record(ftrpc_histogram *h, int64_t value);
/* dst = src, a snapshot of src while it is recorded into (for a report row that must not move). */
FTRPC_API void ftrpc_histogram_copy(ftrpc_histogram *dst, const ftrpc_histogram *src);
/* dst += src (counts and sum; max = the larger): per-thread or per-run histograms added up. */
FTRPC_API void ftrpc_histogram_merge(ftrpc_histogram *dst, const ftrpc_histogram *src);
/* Empties it. */
FTRPC_API void ftrpc_histogram_reset(ftrpc_histogram *h);

/* The number of values recorded. Like every query below, a walk of the 4608 buckets (about a
 * microsecond): meant for reports, not for every record. */
FTRPC_API uint64_t ftrpc_histogram_count(const ftrpc_histogram *h);
/* The number of values >= `value`, to the histogram's resolution: the values of value's own
 * bucket count too, and a bucket spans at most 1/128 of its lower end, so values down to 0.8 %
 * below `value` may be counted. */
FTRPC_API uint64_t ftrpc_histogram_count_at_least(const ftrpc_histogram *h, int64_t value);
/* The sum of the values (clamped as recorded), and their mean (0 when empty). */
FTRPC_API uint64_t ftrpc_histogram_sum(const ftrpc_histogram *h);
FTRPC_API double ftrpc_histogram_mean(const ftrpc_histogram *h);
/* The largest value recorded; 0 when empty. */
FTRPC_API int64_t ftrpc_histogram_max(const ftrpc_histogram *h);
/* The value at quantile p in [0, 1] (clamped): the sample of rank ceil(p * count), at least the
 * first, answered as its bucket's middle and never above the max. 0 when empty. */
FTRPC_API int64_t ftrpc_histogram_percentile(const ftrpc_histogram *h, double p);
/* The cumulative distribution, for plots: fills out[0 .. cap) with points of ascending value, the
 * last at fraction 1.0, and sets *n to how many. When no more than cap buckets hold values, one
 * point per such bucket at its highest value (the exact fraction of values <= it); otherwise cap
 * points at quantiles 1/cap, 2/cap, ..., 1. Empty histogram: *n = 0. The caller owns out.
 * 0, or FTRPC_EINVAL when n is NULL, or out is NULL with cap > 0. */
FTRPC_API int ftrpc_histogram_cdf(const ftrpc_histogram *h, ftrpc_cdf_point *out, size_t cap,
                                  size_t *n);

/* ---- latency recorders ---- */

/* Latencies in nanoseconds: all-time count, sum and max, and the statistics of a sliding window
 * of the last N seconds (N whole seconds plus the current partial one: a record shows at once
 * and leaves N to N+1 seconds later). Nothing is ever cleared, so no record is lost to a window
 * moving on. (window_seconds + 3) x 36 KiB each: 470 KiB at the default window of 10 s.
 *
 * Threads: record from any thread without locks; stats and window_histogram from any thread
 * (they take the recorder's lock, which records never wait for). */
typedef struct ftrpc_latency_recorder ftrpc_latency_recorder;

typedef struct ftrpc_latency_recorder_options {
    int window_seconds; /* default 10 (brpc's bvar_dump_interval); 1..60 */
    /* default NULL: shown nowhere. A name (printable, no spaces, braces, quotes or backslashes)
     * shows the recorder on /vars and /metrics of every server and admin port of the process,
     * latencies in microseconds: NAME_count, NAME_qps, NAME_latency_avg, NAME_latency_p50 .. _p999
     * and NAME_max_latency (brpc's LatencyRecorder::expose). Copied. */
    const char *name;
} ftrpc_latency_recorder_options;

/* Statistics of a window, and all-time totals. Latencies in nanoseconds. */
typedef struct ftrpc_latency_stats {
    uint64_t count;  /* samples in the window */
    uint64_t sum_ns; /* their sum */
    double mean_ns;  /* sum / count, 0 when empty */
    int64_t max_ns;  /* largest sample in the window, 0 when empty */
    double qps;      /* count / span, span being the window's time since the recorder was made,
                      * at least one second (so a young recorder does not report spikes) */
    int64_t span_ns; /* the span qps divides by */
    int64_t p50_ns, p90_ns, p99_ns, p999_ns;
    uint64_t total_count; /* all-time */
    uint64_t total_sum_ns;
    int64_t total_max_ns;
} ftrpc_latency_stats;

/* Makes a recorder; opts may be NULL (defaults). 0 and *out, the caller's
 * (ftrpc_latency_recorder_free); FTRPC_EINVAL for a window outside 1..60 or a bad name;
 * FTRPC_EEXIST when the name is shown already; FTRPC_ENOMEM. Any thread. */
FTRPC_API int ftrpc_latency_recorder_new_sized(const ftrpc_latency_recorder_options *opts,
                                               size_t opts_size, ftrpc_latency_recorder **out);
static inline int ftrpc_latency_recorder_new(const ftrpc_latency_recorder_options *opts,
                                             ftrpc_latency_recorder **out)
{
    return ftrpc_latency_recorder_new_sized(opts, sizeof(ftrpc_latency_recorder_options), out);
}
/* Takes it off the pages, then frees it; no record or query may run during or after. NULL does
 * nothing. Any thread. */
FTRPC_API void ftrpc_latency_recorder_free(ftrpc_latency_recorder *r);

/* Records one latency in nanoseconds. Reads the clock (CLOCK_MONOTONIC) to place it in the
 * window: about 50 ns, most of it the clock read. Any thread. */
FTRPC_API void ftrpc_latency_recorder_record(ftrpc_latency_recorder *r, int64_t latency_ns);
/* The same with the time already known: now_ns is the CLOCK_MONOTONIC reading in nanoseconds
 * that the caller took to compute the latency (about 20 ns: no clock read). Any thread. */
FTRPC_API void ftrpc_latency_recorder_record_at(ftrpc_latency_recorder *r, int64_t latency_ns,
                                                int64_t now_ns);

/* Fills *out for the last window_seconds (0: the recorder's window; else 1..its window).
 * 0, or FTRPC_EINVAL for a bad window. Any thread. */
FTRPC_API int ftrpc_latency_recorder_stats_sized(ftrpc_latency_recorder *r, int window_seconds,
                                                 ftrpc_latency_stats *out, size_t out_size);
static inline int ftrpc_latency_recorder_stats(ftrpc_latency_recorder *r, int window_seconds,
                                               ftrpc_latency_stats *out)
{
    return ftrpc_latency_recorder_stats_sized(r, window_seconds, out, sizeof(ftrpc_latency_stats));
}
/* Copies the window's distribution into out (overwritten; its max is the window's), for any other
 * quantile or a CDF. 0, or FTRPC_EINVAL for a bad window. Any thread. */
FTRPC_API int ftrpc_latency_recorder_window_histogram(ftrpc_latency_recorder *r, int window_seconds,
                                                      ftrpc_histogram *out);

#ifdef __cplusplus
}
#endif
#endif
