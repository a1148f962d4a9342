/* Log-linear histogram (see histogram.h for the bucket layout and the error bound). */
#include "metrics/histogram.h"

#include <assert.h>
#include <stdlib.h>

#include "base/aligned_alloc.h"
#include "ftrpc/common.h"

#define RELAXED memory_order_relaxed

static int64_t clamp_value(int64_t v)
{
    if (v < 0) return 0;
    if (v > FT_HIST_MAX_VALUE) return FT_HIST_MAX_VALUE;
    return v;
}

size_t ft_histogram_bucket_index(int64_t value)
{
    uint64_t v = (uint64_t)clamp_value(value);
    if (v < FT_HIST_EXACT_LIMIT) return (size_t)v;
    int e = 63 - __builtin_clzll(v); /* 8 .. FT_HIST_MAX_EXP */
    int shift = e - FT_HIST_SUB_BITS;
    uint64_t top = v >> shift; /* in [128, 256) */
    return FT_HIST_EXACT_LIMIT + (size_t)(e - FT_HIST_SUB_BITS - 1) * FT_HIST_SUB_COUNT +
           (size_t)(top - FT_HIST_SUB_COUNT);
}

int64_t ft_histogram_bucket_low(size_t index)
{
    if (index < FT_HIST_EXACT_LIMIT) return (int64_t)index;
    size_t k = index - FT_HIST_EXACT_LIMIT;
    int shift = (int)(k / FT_HIST_SUB_COUNT) + 1;
    uint64_t top = FT_HIST_SUB_COUNT + k % FT_HIST_SUB_COUNT;
    return (int64_t)(top << shift);
}

int64_t ft_histogram_bucket_high(size_t index)
{
    if (index < FT_HIST_EXACT_LIMIT) return (int64_t)index;
    int shift = (int)((index - FT_HIST_EXACT_LIMIT) / FT_HIST_SUB_COUNT) + 1;
    return ft_histogram_bucket_low(index) + ((int64_t)1 << shift) - 1;
}

void ft_histogram_init(ft_histogram *h)
{
    assert(ft_is_aligned(h, alignof(ft_histogram))); /* allocate holders with ft_aligned_calloc */
    for (size_t i = 0; i < FT_COUNTER_STRIPES; i++)
        atomic_init(&h->sum[i].v, 0);
    atomic_init(&h->max, 0);
    for (size_t i = 0; i < FT_HIST_BUCKETS; i++)
        atomic_init(&h->buckets[i], 0);
}

int ft_histogram_new(ft_histogram **out)
{
    ft_histogram *h = ft_aligned_calloc(1, sizeof *h, alignof(ft_histogram));
    if (!h) return FTRPC_ENOMEM;
    ft_histogram_init(h);
    *out = h;
    return 0;
}

void ft_histogram_free(ft_histogram *h)
{
    free(h);
}

static void raise_max(_Atomic int64_t *max, int64_t v)
{
    int64_t cur = atomic_load_explicit(max, RELAXED);
    while (v > cur && !atomic_compare_exchange_weak_explicit(max, &cur, v, RELAXED, RELAXED)) {
    }
}

void ft_histogram_record_n(ft_histogram *h, int64_t value, uint64_t n)
{
    int64_t v = clamp_value(value);
    atomic_fetch_add_explicit(&h->buckets[ft_histogram_bucket_index(v)], n, RELAXED);
    ft_stripe_add(&h->sum[ft_metrics_thread_stripe() % FT_COUNTER_STRIPES].v, (uint64_t)v * n);
    raise_max(&h->max, v);
}

void ft_histogram_record(ft_histogram *h, int64_t value)
{
    ft_histogram_record_n(h, value, 1);
}

void ft_histogram_reset(ft_histogram *h)
{
    for (size_t i = 0; i < FT_HIST_BUCKETS; i++)
        atomic_store_explicit(&h->buckets[i], 0, RELAXED);
    for (size_t i = 0; i < FT_COUNTER_STRIPES; i++)
        atomic_store_explicit(&h->sum[i].v, 0, RELAXED);
    atomic_store_explicit(&h->max, 0, RELAXED);
}

void ft_histogram_merge(ft_histogram *dst, const ft_histogram *src)
{
    for (size_t i = 0; i < FT_HIST_BUCKETS; i++) {
        uint64_t c = atomic_load_explicit(&src->buckets[i], RELAXED);
        if (c) atomic_fetch_add_explicit(&dst->buckets[i], c, RELAXED);
    }
    atomic_fetch_add_explicit(&dst->sum[0].v, ft_histogram_sum(src), RELAXED);
    raise_max(&dst->max, atomic_load_explicit(&src->max, RELAXED));
}

static void set_sum(ft_histogram *h, uint64_t sum)
{
    atomic_store_explicit(&h->sum[0].v, sum, RELAXED);
    for (size_t i = 1; i < FT_COUNTER_STRIPES; i++)
        atomic_store_explicit(&h->sum[i].v, 0, RELAXED);
}

void ft_histogram_copy(ft_histogram *dst, const ft_histogram *src)
{
    for (size_t i = 0; i < FT_HIST_BUCKETS; i++)
        atomic_store_explicit(&dst->buckets[i], atomic_load_explicit(&src->buckets[i], RELAXED),
                              RELAXED);
    set_sum(dst, ft_histogram_sum(src));
    atomic_store_explicit(&dst->max, atomic_load_explicit(&src->max, RELAXED), RELAXED);
}

void ft_histogram_subtract(ft_histogram *dst, const ft_histogram *a, const ft_histogram *b)
{
    for (size_t i = 0; i < FT_HIST_BUCKETS; i++) {
        uint64_t x = atomic_load_explicit(&a->buckets[i], RELAXED);
        uint64_t y = atomic_load_explicit(&b->buckets[i], RELAXED);
        atomic_store_explicit(&dst->buckets[i], x > y ? x - y : 0, RELAXED);
    }
    uint64_t sa = ft_histogram_sum(a), sb = ft_histogram_sum(b);
    set_sum(dst, sa > sb ? sa - sb : 0);
    atomic_store_explicit(&dst->max, atomic_load_explicit(&a->max, RELAXED), RELAXED);
}

static uint64_t bucket_total(const ft_histogram *h)
{
    uint64_t total = 0;
    for (size_t i = 0; i < FT_HIST_BUCKETS; i++)
        total += atomic_load_explicit(&h->buckets[i], RELAXED);
    return total;
}

uint64_t ft_histogram_count(const ft_histogram *h)
{
    return bucket_total(h);
}

uint64_t ft_histogram_count_at_least(const ft_histogram *h, int64_t value)
{
    uint64_t n = 0;
    for (size_t i = ft_histogram_bucket_index(value); i < FT_HIST_BUCKETS; i++)
        n += atomic_load_explicit(&h->buckets[i], RELAXED);
    return n;
}

uint64_t ft_histogram_sum(const ft_histogram *h)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < FT_COUNTER_STRIPES; i++)
        sum += atomic_load_explicit(&h->sum[i].v, RELAXED);
    return sum;
}

int64_t ft_histogram_max(const ft_histogram *h)
{
    return atomic_load_explicit(&h->max, RELAXED);
}

double ft_histogram_mean(const ft_histogram *h)
{
    uint64_t n = ft_histogram_count(h);
    return n ? (double)ft_histogram_sum(h) / (double)n : 0.0;
}

/* The bucket's representative: its middle, or max when max falls below the middle inside the
 * bucket (so no answer exceeds the max). The caller answers max itself for the top rank. */
static int64_t representative(size_t index, int64_t max)
{
    int64_t low = ft_histogram_bucket_low(index);
    int64_t high = ft_histogram_bucket_high(index);
    int64_t mid = low + (high - low + 1) / 2;
    if (mid > high) mid = high;
    if (max >= low && max < mid) return max;
    return mid;
}

static uint64_t rank_of(double p, uint64_t total)
{
    if (!(p > 0.0)) /* also catches NaN */
        p = 0.0;
    if (p > 1.0) p = 1.0;
    double r = p * (double)total;
    uint64_t rank = (uint64_t)r;
    if ((double)rank < r) rank++;
    if (rank < 1) rank = 1;
    if (rank > total) rank = total;
    return rank;
}

/* Index of the bucket holding the sample of this rank (1-based). Buckets only grow while we walk,
 * so the prefix sums reach `rank` no later than they did when `rank` was computed. */
static size_t bucket_of_rank(const ft_histogram *h, uint64_t rank)
{
    uint64_t seen = 0;
    size_t last = 0;
    for (size_t i = 0; i < FT_HIST_BUCKETS; i++) {
        uint64_t c = atomic_load_explicit(&h->buckets[i], RELAXED);
        if (!c) continue;
        last = i;
        seen += c;
        if (seen >= rank) return i;
    }
    return last; /* only after a racing reset */
}

static int64_t value_at_rank(const ft_histogram *h, uint64_t rank, uint64_t total, int64_t max)
{
    size_t i = bucket_of_rank(h, rank);
    /* The last sample is the max: answer it exactly when the max really lies in its bucket (a
     * racing record may have moved one but not the other). */
    if (rank == total && max >= ft_histogram_bucket_low(i) && max <= ft_histogram_bucket_high(i))
        return max;
    return representative(i, max);
}

int64_t ft_histogram_percentile(const ft_histogram *h, double p)
{
    uint64_t total = bucket_total(h);
    if (total == 0) return 0;
    return value_at_rank(h, rank_of(p, total), total, ft_histogram_max(h));
}

int ft_histogram_cdf(const ft_histogram *h, ft_cdf_point *out, size_t cap, size_t *n)
{
    if (!n || (!out && cap > 0)) return FTRPC_EINVAL;
    /* Work on a consistent copy of the counts: the fractions must end at exactly 1.0. */
    uint64_t total = 0;
    size_t nonempty = 0;
    for (size_t i = 0; i < FT_HIST_BUCKETS; i++) {
        uint64_t c = atomic_load_explicit(&h->buckets[i], RELAXED);
        total += c;
        nonempty += c != 0;
    }
    *n = 0;
    if (total == 0 || cap == 0) return 0;
    int64_t max = ft_histogram_max(h);
    size_t k = 0;
    if (nonempty <= cap) {
        uint64_t seen = 0;
        for (size_t i = 0; i < FT_HIST_BUCKETS && seen < total; i++) {
            uint64_t c = atomic_load_explicit(&h->buckets[i], RELAXED);
            if (!c) continue;
            seen += c;
            if (seen > total) seen = total; /* records landed after we counted */
            int64_t high = ft_histogram_bucket_high(i);
            int64_t low = ft_histogram_bucket_low(i);
            out[k].value = (max >= low && max < high) ? max : high;
            out[k].fraction = (double)seen / (double)total;
            k++;
        }
    } else {
        for (size_t j = 1; j <= cap; j++) {
            uint64_t rank = rank_of((double)j / (double)cap, total);
            int64_t v = value_at_rank(h, rank, total, max);
            if (k > 0 && out[k - 1].value >= v) {
                out[k - 1].fraction = (double)rank / (double)total;
                continue; /* several quantiles in one bucket: keep the highest */
            }
            out[k].value = v;
            out[k].fraction = (double)rank / (double)total;
            k++;
        }
    }
    if (k > 0) out[k - 1].fraction = 1.0;
    *n = k;
    return 0;
}
