/* Latency recorder: cumulative histogram plus a ring of snapshots (see latency_recorder.h). */
#include "metrics/latency_recorder.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base/aligned_alloc.h"
#include "ftrpc/common.h"

#define RELAXED memory_order_relaxed
#define DEFAULT_WINDOW 10
#define DEFAULT_INTERVAL_NS INT64_C(1000000000)

struct ftrpc_latency_recorder {
    /* Read by every record; written only at creation, except last_epoch (once an interval). */
    const ft_clock *clock;
    int64_t interval_ns;
    int window;
    int slots; /* window + 1: snapshots for epochs T-window .. T */
    int64_t created_ns;
    _Atomic int64_t last_epoch; /* the newest epoch with a snapshot */
    /* Per-interval maxima, slot epoch % slots: the epoch's low MAX_TAG_BITS bits above the value
     * (see pack_max). */
    _Atomic uint64_t *max_ring;

    pthread_mutex_t lock;  /* guards snap_epoch, snaps and scratch; never held by a record */
    int64_t *snap_epoch;   /* epoch whose start each snapshot marks */
    ft_histogram *snaps;   /* `slots` snapshots of `total`, mmap'd (snaps_alloc) */
    ft_histogram *scratch; /* the last window difference computed */

    ft_histogram total; /* cumulative, never reset; records go here */
};

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static size_t slot_of(const ft_latency_recorder *r, int64_t epoch)
{
    int64_t m = epoch % r->slots;
    return (size_t)(m < 0 ? m + r->slots : m);
}

/* A max-ring word is (epoch tag << MAX_VALUE_BITS) | value, swapped with one CAS. Values fit in
 * MAX_VALUE_BITS because the histogram clamps at FT_HIST_MAX_VALUE; the tag is what is left, 22
 * bits: it repeats every 4M intervals (48 days of 1 s), and a slot idle that long whose stale tag
 * matches again can only offer a max that window_locked clamps into the window's top bucket. */
#define MAX_VALUE_BITS (FT_HIST_MAX_EXP + 1)
#define MAX_TAG_BITS (64 - MAX_VALUE_BITS)
#define MAX_TAG_MASK ((UINT64_C(1) << MAX_TAG_BITS) - 1)

static uint64_t epoch_tag(int64_t epoch)
{
    return (uint64_t)epoch & MAX_TAG_MASK;
}

static uint64_t pack_max(int64_t epoch, int64_t value)
{
    return (epoch_tag(epoch) << MAX_VALUE_BITS) | (uint64_t)value;
}

static uint64_t max_tag(uint64_t word)
{
    return word >> MAX_VALUE_BITS;
}

static int64_t max_value(uint64_t word)
{
    return (int64_t)(word & (uint64_t)FT_HIST_MAX_VALUE);
}

/* Whether tag a names a later epoch than tag b (modulo the tag's range: they are never more than
 * half of it apart when it matters). */
static int tag_after(uint64_t a, uint64_t b)
{
    uint64_t d = (a - b) & MAX_TAG_MASK;
    return d != 0 && d < (UINT64_C(1) << (MAX_TAG_BITS - 1));
}

/* Copies the cumulative histogram into the slot of `epoch`. Lock held. The copy races records:
 * each bucket is read once, so a racing record is in this snapshot or in the next interval. */
static void snapshot_locked(ft_latency_recorder *r, int64_t epoch)
{
    size_t s = slot_of(r, epoch);
    ft_histogram_copy(&r->snaps[s], &r->total);
    r->snap_epoch[s] = epoch;
    atomic_store_explicit(&r->last_epoch, epoch, memory_order_release);
}

static void rotate_locked(ft_latency_recorder *r, int64_t epoch)
{
    if (epoch > atomic_load_explicit(&r->last_epoch, RELAXED)) snapshot_locked(r, epoch);
}

/* The window's snapshots: `n` histograms (37 KiB each: 412 KiB with the default window) that stay
 * all zero until intervals with calls have passed. They come from mmap, whose pages cost no memory
 * until written, rather than from ft_aligned_calloc, whose memset writes them all at creation: a
 * method never called, or a server that idles, then holds none of it (issue #26: an idle
 * echo-server held 9 MiB). Page-aligned, so aligned for ft_histogram. Zero bytes are an
 * initialized empty histogram: its fields are lock-free atomic integers, whose zero is all-zero
 * bits on every target ftrpc builds for, so the pages are not written by ft_histogram_init
 * either. */
static ft_histogram *snaps_alloc(size_t n)
{
    void *p = mmap(NULL, n * sizeof(ft_histogram), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void snaps_free(ft_histogram *snaps, size_t n)
{
    if (snaps) munmap(snaps, n * sizeof *snaps);
}

int ft_latency_recorder_new(const ft_latency_recorder_options *opts, ft_latency_recorder **out)
{
    ft_latency_recorder_options o = {0};
    if (opts) o = *opts;
    if (!o.clock) o.clock = ft_clock_monotonic();
    if (o.window == 0) o.window = DEFAULT_WINDOW;
    if (o.interval_ns == 0) o.interval_ns = DEFAULT_INTERVAL_NS;
    if (o.window < 1 || o.window > FT_LATENCY_WINDOW_MAX || o.interval_ns < 0 || !out)
        return FTRPC_EINVAL;

    ft_latency_recorder *r = ft_aligned_calloc(1, sizeof *r, alignof(ft_latency_recorder));
    if (!r) return FTRPC_ENOMEM;
    r->clock = o.clock;
    r->interval_ns = o.interval_ns;
    r->window = o.window;
    r->slots = o.window + 1;
    r->max_ring = calloc((size_t)r->slots, sizeof *r->max_ring);
    r->snap_epoch = calloc((size_t)r->slots, sizeof *r->snap_epoch);
    r->snaps = snaps_alloc((size_t)r->slots);
    r->scratch = ft_aligned_calloc(1, sizeof *r->scratch, alignof(ft_histogram));
    if (!r->max_ring || !r->snap_epoch || !r->snaps || !r->scratch ||
        pthread_mutex_init(&r->lock, NULL) != 0) {
        free(r->max_ring);
        free(r->snap_epoch);
        snaps_free(r->snaps, (size_t)r->slots);
        free(r->scratch);
        free(r);
        return FTRPC_ENOMEM;
    }
    ft_histogram_init(&r->total);
    ft_histogram_init(r->scratch);
    r->created_ns = ft_clock_now_ns(r->clock);
    int64_t epoch = floor_div(r->created_ns, r->interval_ns);
    /* Every slot starts as an empty snapshot of the creation epoch: the state before anything. A
     * slot whose label is older than a query's window start is never used as a base. */
    for (int i = 0; i < r->slots; i++) {
        r->snap_epoch[i] = epoch - r->slots; /* older than any window: unused */
        atomic_init(&r->max_ring[i], pack_max(epoch - r->slots, 0));
    }
    r->snap_epoch[slot_of(r, epoch)] = epoch;
    atomic_init(&r->last_epoch, epoch);
    *out = r;
    return 0;
}

void ft_latency_recorder_free(ft_latency_recorder *r)
{
    if (!r) return;
    pthread_mutex_destroy(&r->lock);
    free(r->max_ring);
    free(r->snap_epoch);
    snaps_free(r->snaps, (size_t)r->slots);
    free(r->scratch);
    free(r);
}

static void raise_window_max(ft_latency_recorder *r, int64_t epoch, int64_t v)
{
    _Atomic uint64_t *slot = &r->max_ring[slot_of(r, epoch)];
    uint64_t tag = epoch_tag(epoch);
    uint64_t want = pack_max(epoch, v);
    uint64_t w = atomic_load_explicit(slot, RELAXED);
    for (;;) {
        uint64_t cur_tag = max_tag(w);
        if (cur_tag == tag) {
            if (max_value(w) >= v) return;
        } else if (tag_after(cur_tag, tag)) {
            return; /* the slot already serves a newer epoch: this record came late */
        }
        if (atomic_compare_exchange_weak_explicit(slot, &w, want, RELAXED, RELAXED)) return;
    }
}

void ft_latency_recorder_record_at(ft_latency_recorder *r, int64_t latency_ns, int64_t now_ns)
{
    int64_t epoch = floor_div(now_ns, r->interval_ns);
    if (__builtin_expect(epoch > atomic_load_explicit(&r->last_epoch, RELAXED), 0)) {
        /* First record of a new interval: snapshot before adding, so that this record counts in
         * its own interval. Never wait: whoever holds the lock is rotating or reading. */
        if (pthread_mutex_trylock(&r->lock) == 0) {
            rotate_locked(r, epoch);
            pthread_mutex_unlock(&r->lock);
        }
    }
    ft_histogram_record(&r->total, latency_ns);
    int64_t v = latency_ns < 0                   ? 0
                : latency_ns > FT_HIST_MAX_VALUE ? FT_HIST_MAX_VALUE
                                                 : latency_ns;
    raise_window_max(r, epoch, v);
}

void ft_latency_recorder_record(ft_latency_recorder *r, int64_t latency_ns)
{
    ft_latency_recorder_record_at(r, latency_ns, ft_clock_now_ns(r->clock));
}

uint64_t ft_latency_recorder_count(const ft_latency_recorder *r)
{
    return ft_histogram_count(&r->total);
}

uint64_t ft_latency_recorder_sum(const ft_latency_recorder *r)
{
    return ft_histogram_sum(&r->total);
}

int64_t ft_latency_recorder_max(const ft_latency_recorder *r)
{
    return ft_histogram_max(&r->total);
}

int ft_latency_recorder_window_size(const ft_latency_recorder *r)
{
    return r->window;
}

int64_t ft_latency_recorder_interval_ns(const ft_latency_recorder *r)
{
    return r->interval_ns;
}

/* Computes the window's difference into r->scratch (count, sum, buckets; max = window max) and
 * its span. Lock held. */
static int window_locked(ft_latency_recorder *r, int window, int64_t *span_ns)
{
    if (window == 0) window = r->window;
    if (window < 1 || window > r->window) return FTRPC_EINVAL;
    int64_t now = ft_clock_now_ns(r->clock);
    int64_t cur = floor_div(now, r->interval_ns);
    rotate_locked(r, cur);
    int64_t first = cur - window;

    /* The base is the snapshot of the oldest epoch >= first: nothing was recorded between the
     * start of `first` and that snapshot, or a snapshot would have been taken earlier. One exists:
     * rotate_locked just made sure last_epoch >= cur. */
    size_t base = 0;
    int64_t base_epoch = INT64_MAX;
    for (int i = 0; i < r->slots; i++) {
        if (r->snap_epoch[i] >= first && r->snap_epoch[i] < base_epoch) {
            base_epoch = r->snap_epoch[i];
            base = (size_t)i;
        }
    }
    ft_histogram *d = r->scratch;
    ft_histogram_subtract(d, &r->total, &r->snaps[base]);
    int64_t last_nonempty = -1;
    for (size_t i = FT_HIST_BUCKETS; i-- > 0;) {
        if (atomic_load_explicit(&d->buckets[i], RELAXED)) {
            last_nonempty = (int64_t)i;
            break;
        }
    }
    int64_t max = 0;
    for (int64_t e = first; e <= cur; e++) {
        uint64_t w = atomic_load_explicit(&r->max_ring[slot_of(r, e)], RELAXED);
        if (max_tag(w) == epoch_tag(e) && max_value(w) > max) max = max_value(w);
    }
    /* A record racing this read may be in the buckets but not yet in the max ring (or the other
     * way round); keep max inside the top bucket so that percentiles stay sane. */
    if (last_nonempty < 0) {
        max = 0;
    } else {
        int64_t lo = ft_histogram_bucket_low((size_t)last_nonempty);
        int64_t hi = ft_histogram_bucket_high((size_t)last_nonempty);
        if (max < lo || max > hi) max = hi;
    }
    atomic_store_explicit(&d->max, max, RELAXED);

    int64_t start = first * r->interval_ns;
    if (start < r->created_ns) start = r->created_ns;
    int64_t span = now - start;
    *span_ns = span < r->interval_ns ? r->interval_ns : span;
    return 0;
}

int ft_latency_recorder_stats(ft_latency_recorder *r, int window, ft_latency_stats *out)
{
    int64_t span;
    pthread_mutex_lock(&r->lock);
    int rc = window_locked(r, window, &span);
    if (rc == 0) {
        const ft_histogram *d = r->scratch;
        ft_latency_stats s;
        s.count = ft_histogram_count(d);
        s.sum_ns = ft_histogram_sum(d);
        s.mean_ns = ft_histogram_mean(d);
        s.max_ns = ft_histogram_max(d);
        s.span_ns = span;
        s.qps = (double)s.count * 1e9 / (double)span;
        s.p50_ns = ft_histogram_percentile(d, 0.5);
        s.p90_ns = ft_histogram_percentile(d, 0.9);
        s.p99_ns = ft_histogram_percentile(d, 0.99);
        s.p999_ns = ft_histogram_percentile(d, 0.999);
        s.total_count = ft_histogram_count(&r->total);
        s.total_sum_ns = ft_histogram_sum(&r->total);
        s.total_max_ns = ft_histogram_max(&r->total);
        *out = s;
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

int ft_latency_recorder_percentiles(ft_latency_recorder *r, int window, const double *ps,
                                    int64_t *out_ns, size_t n)
{
    if (n > 0 && (!ps || !out_ns)) return FTRPC_EINVAL;
    int64_t span;
    pthread_mutex_lock(&r->lock);
    int rc = window_locked(r, window, &span);
    if (rc == 0) {
        for (size_t i = 0; i < n; i++)
            out_ns[i] = ft_histogram_percentile(r->scratch, ps[i]);
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

int ft_latency_recorder_cdf(ft_latency_recorder *r, int window, ft_cdf_point *out, size_t cap,
                            size_t *n)
{
    if (!n || (!out && cap > 0)) return FTRPC_EINVAL;
    int64_t span;
    pthread_mutex_lock(&r->lock);
    int rc = window_locked(r, window, &span);
    if (rc == 0) rc = ft_histogram_cdf(r->scratch, out, cap, n);
    pthread_mutex_unlock(&r->lock);
    return rc;
}

int ft_latency_recorder_window_histogram(ft_latency_recorder *r, int window, ft_histogram *out)
{
    if (!out) return FTRPC_EINVAL;
    int64_t span;
    pthread_mutex_lock(&r->lock);
    int rc = window_locked(r, window, &span);
    if (rc == 0) {
        ft_histogram_reset(out);
        ft_histogram_merge(out, r->scratch);
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}
