/* Sliding-window error-rate breaker (see breaker.h). Buckets are a ring indexed by
 * epoch % buckets; a bucket whose epoch is not the current one is recycled on first touch, and one
 * whose epoch fell out of the window is skipped when summing, so no timer is needed. */
#include "cluster/breaker.h"

#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "ftrpc/common.h"

static ft_breaker_options with_defaults(const ft_breaker_options *in)
{
    ft_breaker_options o = {0};
    if (in) o = *in;
    if (o.window_ms == 0) o.window_ms = 10000;
    if (o.buckets == 0) o.buckets = 10;
    if (o.min_calls == 0) o.min_calls = 20;
    if (o.error_ratio == 0) o.error_ratio = 0.5;
    return o;
}

int ft_breaker_options_validate(const ft_breaker_options *opts)
{
    ft_breaker_options o = with_defaults(opts);
    if (o.window_ms < 0 || o.window_ms > INT64_C(86400000)) {
        FT_ERROR("breaker: window_ms %lld must be in (0, one day]", (long long)o.window_ms);
        return FTRPC_EINVAL;
    }
    if (o.buckets < 1 || o.buckets > FT_BREAKER_MAX_BUCKETS) {
        FT_ERROR("breaker: buckets %d must be in [1, %d]", o.buckets, FT_BREAKER_MAX_BUCKETS);
        return FTRPC_EINVAL;
    }
    if (o.window_ms * FT_NS_PER_MS < o.buckets) {
        FT_ERROR("breaker: window_ms %lld is too short for %d buckets", (long long)o.window_ms,
                 o.buckets);
        return FTRPC_EINVAL;
    }
    if (o.min_calls < 1) {
        FT_ERROR("breaker: min_calls %d must be >= 1", o.min_calls);
        return FTRPC_EINVAL;
    }
    if (o.error_ratio != FT_BREAKER_OFF && !(o.error_ratio > 0 && o.error_ratio <= 1)) {
        FT_ERROR("breaker: error_ratio %g must be in (0, 1] or FT_BREAKER_OFF", o.error_ratio);
        return FTRPC_EINVAL;
    }
    return 0;
}

int ft_breaker_init(ft_breaker *br, const ft_breaker_options *opts)
{
    int rc = ft_breaker_options_validate(opts);
    if (rc != 0) return rc;
    memset(br, 0, sizeof(*br));
    br->opts = with_defaults(opts);
    br->bucket_ns = br->opts.window_ms * FT_NS_PER_MS / br->opts.buckets;
    ft_breaker_reset(br);
    return 0;
}

void ft_breaker_reset(ft_breaker *br)
{
    for (int i = 0; i < br->opts.buckets; i++) {
        /* An epoch no clock can produce, so that every bucket reads as empty. */
        br->bucket[i].epoch = INT64_MIN;
        br->bucket[i].calls = 0;
        br->bucket[i].errors = 0;
    }
}

static int64_t epoch_of(const ft_breaker *br, int64_t now_ns)
{
    /* Floor division, so that a manual clock may start below zero without splitting a bucket. */
    int64_t q = now_ns / br->bucket_ns;
    if (now_ns % br->bucket_ns < 0) q--;
    return q;
}

void ft_breaker_counts(const ft_breaker *br, int64_t now_ns, uint32_t *calls, uint32_t *errors)
{
    int64_t now_epoch = epoch_of(br, now_ns);
    uint32_t c = 0, e = 0;
    for (int i = 0; i < br->opts.buckets; i++) {
        const ft_breaker_bucket *b = &br->bucket[i];
        if (b->epoch != INT64_MIN && b->epoch <= now_epoch &&
            b->epoch > now_epoch - br->opts.buckets) {
            c += b->calls;
            e += b->errors;
        }
    }
    if (calls) *calls = c;
    if (errors) *errors = e;
}

bool ft_breaker_record(ft_breaker *br, int64_t now_ns, bool failed)
{
    int64_t epoch = epoch_of(br, now_ns);
    int64_t slot = epoch % br->opts.buckets;
    if (slot < 0) slot += br->opts.buckets;
    ft_breaker_bucket *b = &br->bucket[slot];
    if (b->epoch != epoch) {
        b->epoch = epoch;
        b->calls = 0;
        b->errors = 0;
    }
    b->calls++;
    if (failed) b->errors++;
    if (!failed || br->opts.error_ratio == FT_BREAKER_OFF) return false;

    uint32_t calls, errors;
    ft_breaker_counts(br, now_ns, &calls, &errors);
    if (calls < (uint32_t)br->opts.min_calls) return false;
    if ((double)errors < br->opts.error_ratio * (double)calls) return false;
    br->trips++;
    ft_breaker_reset(br);
    return true;
}
