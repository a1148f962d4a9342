/* A log-linear histogram of non-negative integer values in the caller's unit (the latency recorder
 * records nanoseconds, the CLI's load generator microseconds).
 *
 * Buckets: values 0..255 each have their own bucket (exact). Above, every power of two [2^e, 2^e+1)
 * is cut into 128 equal sub-buckets, so a bucket's width is at most 1/128 of its lower bound.
 * Queries answer with the middle of the bucket, so a percentile is within 1/256 (0.39%) of the true
 * sample of that rank; the top bucket is clamped to the recorded max, which makes p=1 exact.
 * Range: 0 .. FT_HIST_MAX_VALUE (2^42-1: about 73 minutes in nanoseconds, so that latencies keep
 * their sub-microsecond digits without losing the long ones); larger values are recorded as
 * FT_HIST_MAX_VALUE and negative ones as 0. 4608 buckets of 8 bytes: 36 KiB per histogram.
 *
 * Recording is two relaxed adds (an atomic one to the bucket, one to this thread's sum cell: a
 * load and store on an owned stripe, see counter.h) and a load of the max
 * (plus a CAS only when a new maximum is seen): no locks, any thread. Queries read the buckets with
 * relaxed loads while records may go on; they see some consistent-enough prefix (buckets only
 * grow), and compute the total from the buckets they walk so that a percentile never runs off the
 * end. Reset and merge-into are not atomic as a whole: a record racing ft_histogram_reset may
 * survive it or not (callers that need "never lost" take differences of cumulative histograms
 * instead of resetting; see latency_recorder.h).
 *
 * It does not keep a minimum, time windows (latency_recorder.h does), or values above 2^42. */
#ifndef FT_METRICS_HISTOGRAM_H
#define FT_METRICS_HISTOGRAM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ftrpc/metrics.h"
#include "metrics/counter.h"

#define FT_HIST_SUB_BITS 7                          /* 128 sub-buckets per power of two */
#define FT_HIST_SUB_COUNT (1 << FT_HIST_SUB_BITS)   /* 128 */
#define FT_HIST_EXACT_LIMIT (2 * FT_HIST_SUB_COUNT) /* values below 256 are exact */
#define FT_HIST_MAX_EXP 41                          /* highest power of two covered */
#define FT_HIST_MAX_VALUE ((INT64_C(1) << (FT_HIST_MAX_EXP + 1)) - 1)
#define FT_HIST_BUCKETS                                                                            \
    (FT_HIST_EXACT_LIMIT + (FT_HIST_MAX_EXP - FT_HIST_SUB_BITS) * FT_HIST_SUB_COUNT) /* 4608 */

/* Threads: record from any thread; query from any thread; init/reset/merge-into by its owner.
 * There is no count word: the count is the sum of the buckets, which spares every record one
 * atomic add on a shared line (reads walk the buckets anyway). The sum is striped like ft_counter
 * (counter.h) for the same reason. The public ftrpc_histogram (ftrpc/metrics.h) is this type. */
typedef struct ftrpc_histogram {
    _Atomic int64_t max; /* largest (clamped) value; 0 when empty */
    struct {
        _Alignas(64) _Atomic uint64_t v;
    } sum[FT_COUNTER_STRIPES]; /* sum of (clamped) values, one cell per thread stripe */
    _Atomic uint64_t buckets[FT_HIST_BUCKETS];
} ft_histogram;

/* One point of a cumulative distribution: the fraction of samples <= value. */
typedef ftrpc_cdf_point ft_cdf_point;

void ft_histogram_init(ft_histogram *h);
/* Heap versions for callers that do not want 36 KiB on their stack or in their struct.
 * _new returns 0 and sets *out, or FTRPC_ENOMEM. _free(NULL) does nothing. */
int ft_histogram_new(ft_histogram **out);
void ft_histogram_free(ft_histogram *h);

/* Records one value (clamped to [0, FT_HIST_MAX_VALUE]). Lock-free, any thread. */
void ft_histogram_record(ft_histogram *h, int64_t value);
/* Records `n` samples of the same value at once. */
void ft_histogram_record_n(ft_histogram *h, int64_t value, uint64_t n);

/* Zeroes everything. See the file comment about records racing a reset. */
void ft_histogram_reset(ft_histogram *h);
/* dst += src (counts, sums, buckets; max = the larger). src may be recorded into meanwhile. */
void ft_histogram_merge(ft_histogram *dst, const ft_histogram *src);
/* dst = src, each word read once (a snapshot while src is recorded into). dst is the owner's. */
void ft_histogram_copy(ft_histogram *dst, const ft_histogram *src);
/* dst = a - b, bucket by bucket (never below 0), sum likewise; max = a's max. For differences of
 * a cumulative histogram and an earlier copy of it. dst is the owner's. */
void ft_histogram_subtract(ft_histogram *dst, const ft_histogram *a, const ft_histogram *b);

/* The number of samples: a walk of the buckets (about 1 us). */
uint64_t ft_histogram_count(const ft_histogram *h);
/* The number of samples in value's bucket and above it: every sample >= value, and those of its
 * bucket below it (within 1/128 of value). */
uint64_t ft_histogram_count_at_least(const ft_histogram *h, int64_t value);
uint64_t ft_histogram_sum(const ft_histogram *h);
int64_t ft_histogram_max(const ft_histogram *h);
/* Mean of the values; 0 when empty. */
double ft_histogram_mean(const ft_histogram *h);

/* The value at quantile p (p in [0, 1], clamped): the sample of rank ceil(p * n) (at least 1),
 * answered as its bucket's middle, clamped to max. 0 when empty. */
int64_t ft_histogram_percentile(const ft_histogram *h, double p);

/* Fills out[0..cap) with points of the CDF, values ascending, the last one with fraction 1.0, and
 * sets *n to how many. With no more non-empty buckets than cap, one point per non-empty bucket,
 * at the bucket's highest value (clamped to max): the exact fraction of samples <= that value.
 * Otherwise cap points at quantiles 1/cap, 2/cap, ..., 1. Empty histogram: *n = 0.
 * Returns 0, or FTRPC_EINVAL when out is NULL with cap > 0 or n is NULL. */
int ft_histogram_cdf(const ft_histogram *h, ft_cdf_point *out, size_t cap, size_t *n);

/* Bucket arithmetic, exposed for tests and for code that walks buckets itself. */
size_t ft_histogram_bucket_index(int64_t value);
int64_t ft_histogram_bucket_low(size_t index);  /* smallest value in the bucket */
int64_t ft_histogram_bucket_high(size_t index); /* largest value in the bucket */

#endif
