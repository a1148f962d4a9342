/* Retry budget (see retry_budget.h): windowed request and retry counts in lock-free buckets. */
#include "client/retry_budget.h"

#include <math.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "ftrpc/common.h"

static ft_retry_budget_options with_defaults(const ft_retry_budget_options *in)
{
    ft_retry_budget_options o = {0};
    if (in) o = *in;
    if (o.ratio == 0) o.ratio = 0.2;
    if (o.min_per_sec == 0) o.min_per_sec = 10;
    if (o.window_ms == 0) o.window_ms = 10000;
    if (o.buckets == 0) o.buckets = 10;
    return o;
}

int ft_retry_budget_options_validate(const ft_retry_budget_options *opts)
{
    ft_retry_budget_options o = with_defaults(opts);
    if (!(o.ratio > 0 && o.ratio <= 1) && o.ratio != FT_RETRY_BUDGET_OFF) {
        FT_ERROR("retry budget: ratio %g must be in (0, 1], or -1 for no budget", o.ratio);
        return FTRPC_EINVAL;
    }
    if (o.min_per_sec < 0 && o.min_per_sec != FT_RETRY_BUDGET_NO_FLOOR) {
        FT_ERROR("retry budget: min_per_sec %d must be > 0 or FT_RETRY_BUDGET_NO_FLOOR",
                 o.min_per_sec);
        return FTRPC_EINVAL;
    }
    if (o.buckets < 1 || o.buckets > FT_RETRY_BUDGET_MAX_BUCKETS) {
        FT_ERROR("retry budget: buckets %d must be in [1, %d]", o.buckets,
                 FT_RETRY_BUDGET_MAX_BUCKETS);
        return FTRPC_EINVAL;
    }
    if (o.window_ms < 0 || o.window_ms > INT64_C(86400000) ||
        o.window_ms * FT_NS_PER_MS < o.buckets) {
        FT_ERROR("retry budget: window_ms %lld must be in (0, one day] and hold %d buckets",
                 (long long)o.window_ms, o.buckets);
        return FTRPC_EINVAL;
    }
    return 0;
}

int ft_retry_budget_init(ft_retry_budget *b, const ft_retry_budget_options *opts)
{
    int rc = ft_retry_budget_options_validate(opts);
    if (rc != 0) return rc;
    memset(b, 0, sizeof(*b));
    b->opts = with_defaults(opts);
    b->off = b->opts.ratio == FT_RETRY_BUDGET_OFF;
    b->bucket_ns = b->opts.window_ms * FT_NS_PER_MS / b->opts.buckets;
    b->floor = b->opts.min_per_sec == FT_RETRY_BUDGET_NO_FLOOR
                   ? 0
                   : (int64_t)b->opts.min_per_sec * b->opts.window_ms / 1000;
    for (int i = 0; i < FT_RETRY_BUDGET_MAX_BUCKETS; i++) {
        /* Count 0 under any epoch reads as empty, so no sentinel is needed. */
        for (int s = 0; s < FT_COUNTER_STRIPES; s++)
            atomic_init(&b->requests[s].ring[i], 0);
        atomic_init(&b->retries[i], 0);
    }
    for (int s = 0; s < FT_COUNTER_STRIPES; s++)
        atomic_init(&b->requests[s].total, 0);
    atomic_init(&b->total_retries, 0);
    atomic_init(&b->total_exhausted, 0);
    return 0;
}

void ft_retry_budget_fini(ft_retry_budget *b)
{
    (void)b; /* nothing allocated; here so that the client's teardown reads symmetrically */
}

/* The bucket now_ns falls in, counted from the clock's zero (floor division). */
static int64_t bucket_of(const ft_retry_budget *b, int64_t now_ns)
{
    int64_t q = now_ns / b->bucket_ns;
    if (now_ns % b->bucket_ns < 0) q--;
    return q;
}

/* Epochs are kept modulo 2^32: with 1 ms buckets that wraps after 49 days, and only a bucket left
 * untouched for exactly a multiple of that could be misread. */
static uint32_t epoch_of(const ft_retry_budget *b, int64_t now_ns)
{
    return (uint32_t)bucket_of(b, now_ns);
}

/* The cell's value after one more count in `epoch`. */
static uint64_t counted(uint64_t v, uint32_t epoch)
{
    if ((uint32_t)(v >> 32) != epoch) return ((uint64_t)epoch << 32) | 1;
    return (uint32_t)v != UINT32_MAX ? v + 1 : v; /* saturate rather than carry into the epoch */
}

/* Counts one in ring's bucket of `epoch`. owned: only the calling thread writes this ring (its
 * owned metrics stripe), so a load and a store do; others race and need the CAS. */
static void count_in(const ft_retry_budget *b, _Atomic uint64_t *ring, uint32_t epoch, int owned)
{
    _Atomic uint64_t *cell = &ring[epoch % (uint32_t)b->opts.buckets];
    uint64_t v = atomic_load_explicit(cell, memory_order_relaxed);
    if (owned) {
        atomic_store_explicit(cell, counted(v, epoch), memory_order_relaxed);
        return;
    }
    while (!atomic_compare_exchange_weak_explicit(cell, &v, counted(v, epoch), memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

static int64_t sum(const ft_retry_budget *b, const _Atomic uint64_t *ring, int64_t now_ns)
{
    uint32_t epoch = epoch_of(b, now_ns);
    int64_t total = 0;
    for (int i = 0; i < b->opts.buckets; i++) {
        uint64_t v = atomic_load_explicit(&ring[i], memory_order_relaxed);
        uint32_t age = epoch - (uint32_t)(v >> 32); /* modular: wrap-safe */
        if (age < (uint32_t)b->opts.buckets) total += (uint32_t)v;
    }
    return total;
}

void ft_retry_budget_on_request(ft_retry_budget *b, int64_t now_ns)
{
    if (b->off) return;
    struct ft_budget_stripe *row = &b->requests[ft_metrics_thread_stripe() % FT_COUNTER_STRIPES];
    uint32_t epoch;
    if (ft_metrics_stripe_owned) {
        /* the owner keeps its current bucket's bounds: no division while the bucket lasts */
        if (now_ns < row->from_ns || now_ns >= row->until_ns) {
            int64_t q = bucket_of(b, now_ns);
            row->epoch = (uint32_t)q;
            row->from_ns = q * b->bucket_ns;
            row->until_ns = row->from_ns + b->bucket_ns;
        }
        epoch = row->epoch;
    } else {
        epoch = epoch_of(b, now_ns);
    }
    count_in(b, row->ring, epoch, ft_metrics_stripe_owned);
    ft_stripe_add(&row->total, 1);
}

int64_t ft_retry_budget_balance(ft_retry_budget *b, int64_t now_ns)
{
    int64_t requests = 0;
    for (int s = 0; s < FT_COUNTER_STRIPES; s++)
        requests += sum(b, b->requests[s].ring, now_ns);
    double allowed = b->opts.ratio * (double)requests + (double)b->floor;
    /* floor(): 4 requests at 20% earn no retry yet, not a rounded-up one. */
    return (int64_t)floor(allowed + 1e-9) - sum(b, b->retries, now_ns);
}

bool ft_retry_budget_try_spend(ft_retry_budget *b, int64_t now_ns)
{
    if (b->off) return true;
    if (ft_retry_budget_balance(b, now_ns) < 1) {
        atomic_fetch_add_explicit(&b->total_exhausted, 1, memory_order_relaxed);
        return false;
    }
    count_in(b, b->retries, epoch_of(b, now_ns), 0);
    atomic_fetch_add_explicit(&b->total_retries, 1, memory_order_relaxed);
    return true;
}

void ft_retry_budget_stats_get(ft_retry_budget *b, ft_retry_budget_stats *out)
{
    out->requests = 0;
    for (int s = 0; s < FT_COUNTER_STRIPES; s++)
        out->requests += atomic_load_explicit(&b->requests[s].total, memory_order_relaxed);
    out->retries = atomic_load_explicit(&b->total_retries, memory_order_relaxed);
    out->exhausted = atomic_load_explicit(&b->total_exhausted, memory_order_relaxed);
}
