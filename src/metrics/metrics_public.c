/* The public metrics API (ftrpc/metrics.h): ftrpc_histogram is ft_histogram and
 * ftrpc_latency_recorder is ft_latency_recorder with its interval fixed at one second, so these
 * are thin wrappers; a named recorder is one registered in the default registry that the
 * builtin pages dump. */
#include "base/sized_options.h"
#include "ftrpc/metrics.h"

#include "metrics/histogram.h"
#include "metrics/latency_recorder.h"
#include "metrics/registry.h"

int ftrpc_histogram_new(ftrpc_histogram **out)
{
    return ft_histogram_new(out);
}

void ftrpc_histogram_free(ftrpc_histogram *h)
{
    ft_histogram_free(h);
}

void ftrpc_histogram_record(ftrpc_histogram *h, int64_t value)
{
    ft_histogram_record(h, value);
}

void ftrpc_histogram_copy(ftrpc_histogram *dst, const ftrpc_histogram *src)
{
    ft_histogram_copy(dst, src);
}

void ftrpc_histogram_merge(ftrpc_histogram *dst, const ftrpc_histogram *src)
{
    ft_histogram_merge(dst, src);
}

void ftrpc_histogram_reset(ftrpc_histogram *h)
{
    ft_histogram_reset(h);
}

uint64_t ftrpc_histogram_count(const ftrpc_histogram *h)
{
    return ft_histogram_count(h);
}

uint64_t ftrpc_histogram_count_at_least(const ftrpc_histogram *h, int64_t value)
{
    return ft_histogram_count_at_least(h, value);
}

uint64_t ftrpc_histogram_sum(const ftrpc_histogram *h)
{
    return ft_histogram_sum(h);
}

double ftrpc_histogram_mean(const ftrpc_histogram *h)
{
    return ft_histogram_mean(h);
}

int64_t ftrpc_histogram_max(const ftrpc_histogram *h)
{
    return ft_histogram_max(h);
}

int64_t ftrpc_histogram_percentile(const ftrpc_histogram *h, double p)
{
    return ft_histogram_percentile(h, p);
}

int ftrpc_histogram_cdf(const ftrpc_histogram *h, ftrpc_cdf_point *out, size_t cap, size_t *n)
{
    return ft_histogram_cdf(h, out, cap, n);
}

int ftrpc_latency_recorder_new_sized(const ftrpc_latency_recorder_options *opts_in,
                                     size_t opts_size, ftrpc_latency_recorder **out)
{
    ftrpc_latency_recorder_options o;
    if (!out || ft_sized_options_read(&o, sizeof o, opts_in, opts_size) != 0) return FTRPC_EINVAL;
    const ftrpc_latency_recorder_options *opts = &o;
    /* the default clock and interval: record_at's now_ns is documented as CLOCK_MONOTONIC, which
     * is what ft_clock_monotonic reads */
    ft_latency_recorder_options ro = {.window = opts ? opts->window_seconds : 0};
    ft_latency_recorder *r;
    int rc = ft_latency_recorder_new(&ro, &r);
    if (rc != 0) return rc;
    if (opts && opts->name) {
        rc = ft_metrics_registry_add(ft_metrics_default_registry(), FT_METRIC_LATENCY, r,
                                     opts->name, NULL, NULL, 0);
        if (rc != 0) {
            ft_latency_recorder_free(r);
            return rc;
        }
    }
    *out = r;
    return 0;
}

void ftrpc_latency_recorder_free(ftrpc_latency_recorder *r)
{
    if (!r) return;
    /* once remove returns no dump reads the recorder; FTRPC_EINVAL just means it had no name */
    ft_metrics_registry_remove(ft_metrics_default_registry(), r);
    ft_latency_recorder_free(r);
}

void ftrpc_latency_recorder_record(ftrpc_latency_recorder *r, int64_t latency_ns)
{
    ft_latency_recorder_record(r, latency_ns);
}

void ftrpc_latency_recorder_record_at(ftrpc_latency_recorder *r, int64_t latency_ns, int64_t now_ns)
{
    ft_latency_recorder_record_at(r, latency_ns, now_ns);
}

int ftrpc_latency_recorder_stats_sized(ftrpc_latency_recorder *r, int window_seconds,
                                       ftrpc_latency_stats *out, size_t out_size)
{
    ftrpc_latency_stats st;
    int rc = ft_latency_recorder_stats(r, window_seconds, &st);
    if (rc == 0) ft_sized_result_write(out, out_size, &st, sizeof st);
    return rc;
}

int ftrpc_latency_recorder_window_histogram(ftrpc_latency_recorder *r, int window_seconds,
                                            ftrpc_histogram *out)
{
    return ft_latency_recorder_window_histogram(r, window_seconds, out);
}
