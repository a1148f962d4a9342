/* The built-in backup-request policies.
 *
 * Rate-limited (brpc's RateLimitedBackupPolicy): a window of one-second buckets counts calls (when
 * they end) and backups (when they are decided). Summing the window on every decision would cost
 * O(window); instead the sums are refreshed every update_interval_seconds and what happened since
 * the refresh is added from two running counters, so a decision is a few atomic loads and a burst
 * of backups during a latency spike is seen at once, not one interval later. A backup it agreed to
 * that the retry budget then refused is taken back (on_backup_refused): the ratio bounds backups
 * sent, not backups wished for.
 *
 * At start it does what brpc's does: brpc's first decision finds no backups in its counts, caches
 * the ratio 0 and keeps it until its next refresh, update_interval_seconds later, so a fresh
 * policy allows every backup for that long. Here the first decision opens the same warm-up; the
 * backups are counted and, after it, the ratio is judged on the window that holds them. (The
 * client's retry budget, which a policy's backups draw on by default, still bounds the warm-up.)
 *
 * Adaptive: the delay is the p(1 - max_extra_load) latency of recent calls in microseconds (the
 * engine asks backup_delay_us, so a p95 of 160 us is a 160 us delay), read from a windowed
 * latency recorder and cached for refresh_ms; if latency is well behaved, about max_extra_load of
 * the calls outlive the delay and get a backup ("The Tail at Scale": hedge at the p95). Backups
 * also draw from the client's retry budget (the call engine does that for every backup).
 */
#include "client/backup_policy.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "base/sized_options.h"
#include "base/log.h"
#include "metrics/latency_recorder.h"

/* ---- rate-limited ---- */

typedef struct rl_bucket {
    _Atomic int64_t second; /* which second this bucket counts; reset when a newer one arrives */
    atomic_llong calls;
    atomic_llong backups;
} rl_bucket;

typedef struct ratelimited {
    ftrpc_backup_policy base;
    ftrpc_backup_policy_ratelimited_options o;
    const ft_clock *clock;
    rl_bucket *buckets; /* window_size_seconds of them */
    _Atomic int64_t next_update_ns;
    /* brpc's start: the first decision opens a warm-up of update_interval_seconds in which every
     * backup is allowed (0: no decision yet) */
    _Atomic int64_t warm_until_ns;
    atomic_llong win_calls, win_backups;     /* window sums at the last refresh */
    atomic_llong since_calls, since_backups; /* counted since the last refresh */
    pthread_mutex_t update_lock;             /* one refresher at a time (trylock: no waiting) */
} ratelimited;

static rl_bucket *bucket_for(ratelimited *p, int64_t now_ns)
{
    int64_t sec = now_ns / 1000000000;
    rl_bucket *b = &p->buckets[sec % p->o.window_size_seconds];
    int64_t seen = atomic_load_explicit(&b->second, memory_order_acquire);
    if (seen != sec && atomic_compare_exchange_strong(&b->second, &seen, sec)) {
        /* a count racing this reset may be lost: one call in a window of thousands */
        atomic_store(&b->calls, 0);
        atomic_store(&b->backups, 0);
    }
    return b;
}

static void maybe_refresh(ratelimited *p, int64_t now_ns)
{
    if (now_ns < atomic_load_explicit(&p->next_update_ns, memory_order_relaxed)) return;
    if (pthread_mutex_trylock(&p->update_lock) != 0) return;
    if (now_ns >= atomic_load(&p->next_update_ns)) {
        int64_t sec = now_ns / 1000000000;
        long long calls = 0, backups = 0;
        for (int i = 0; i < p->o.window_size_seconds; i++) {
            rl_bucket *b = &p->buckets[i];
            if (sec - atomic_load(&b->second) >= p->o.window_size_seconds) continue;
            calls += atomic_load(&b->calls);
            backups += atomic_load(&b->backups);
        }
        atomic_store(&p->win_calls, calls);
        atomic_store(&p->win_backups, backups);
        atomic_store(&p->since_calls, 0);
        atomic_store(&p->since_backups, 0);
        atomic_store(&p->next_update_ns,
                     now_ns + (int64_t)p->o.update_interval_seconds * 1000000000);
    }
    pthread_mutex_unlock(&p->update_lock);
}

static int rl_delay(ftrpc_backup_policy *self, const char *service, const char *method)
{
    ratelimited *p = (ratelimited *)self;
    (void)service;
    (void)method;
    return p->o.backup_request_ms <= 0 ? FT_BACKUP_DELAY_INHERIT : p->o.backup_request_ms;
}

static int rl_should(ftrpc_backup_policy *self, const char *service, const char *method)
{
    ratelimited *p = (ratelimited *)self;
    (void)service;
    (void)method;
    int64_t now = ft_clock_now_ns(p->clock);
    int64_t warm = atomic_load_explicit(&p->warm_until_ns, memory_order_relaxed);
    if (warm == 0) {
        int64_t until = now + (int64_t)p->o.update_interval_seconds * 1000000000;
        warm = atomic_compare_exchange_strong(&p->warm_until_ns, &warm, until) ? until : warm;
    }
    if (now < warm) { /* brpc's cached ratio is 0 until its first refresh: allowed, and counted */
        atomic_fetch_add_explicit(&bucket_for(p, now)->backups, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&p->since_backups, 1, memory_order_relaxed);
        return 1;
    }
    maybe_refresh(p, now);
    long long calls = atomic_load_explicit(&p->win_calls, memory_order_relaxed) +
                      atomic_load_explicit(&p->since_calls, memory_order_relaxed);
    long long backups = atomic_load_explicit(&p->win_backups, memory_order_relaxed) +
                        atomic_load_explicit(&p->since_backups, memory_order_relaxed);
    /* the backup being decided counts too: never exceed the ratio, even by one */
    if ((double)(backups + 1) > p->o.max_backup_ratio * (double)(calls > 0 ? calls : 1)) return 0;
    atomic_fetch_add_explicit(&bucket_for(p, now)->backups, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->since_backups, 1, memory_order_relaxed);
    return 1;
}

/* The engine asks the retry budget right after should_backup agreed, on the same thread, so the
 * bucket of "now" is the one the backup was counted in (short of a second boundary falling between
 * the two, where the window's sum is still right and only the split between two buckets is off by
 * one). since_backups may go to -1 when a refresh ran in between: the refreshed window sum holds
 * the backup, so the total is still right. */
static void rl_refused(ftrpc_backup_policy *self, const char *service, const char *method)
{
    ratelimited *p = (ratelimited *)self;
    (void)service;
    (void)method;
    int64_t now = ft_clock_now_ns(p->clock);
    atomic_fetch_sub_explicit(&bucket_for(p, now)->backups, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&p->since_backups, 1, memory_order_relaxed);
}

static void rl_end(ftrpc_backup_policy *self, const ftrpc_result *result)
{
    ratelimited *p = (ratelimited *)self;
    (void)result;
    int64_t now = ft_clock_now_ns(p->clock);
    atomic_fetch_add_explicit(&bucket_for(p, now)->calls, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->since_calls, 1, memory_order_relaxed);
    maybe_refresh(p, now);
}

static void rl_destroy(ftrpc_backup_policy *self)
{
    ratelimited *p = (ratelimited *)self;
    pthread_mutex_destroy(&p->update_lock);
    free(p->buckets);
    free(p);
}

int ft_backup_policy_ratelimited_new(const ftrpc_backup_policy_ratelimited_options *opts,
                                     const ft_clock *clock, ftrpc_backup_policy **out)
{
    ftrpc_backup_policy_ratelimited_options o =
        opts ? *opts : (ftrpc_backup_policy_ratelimited_options){0};
    if (o.max_backup_ratio == 0) o.max_backup_ratio = 0.1;
    if (o.window_size_seconds == 0) o.window_size_seconds = 10;
    if (o.update_interval_seconds == 0) o.update_interval_seconds = 5;
    /* brpc's checks, with its messages' spirit */
    if (o.backup_request_ms < -1) {
        FT_WARN("backup policy: backup_request_ms must be >= -1 (got %d)", o.backup_request_ms);
        return FTRPC_EINVAL;
    }
    if (!(o.max_backup_ratio > 0 && o.max_backup_ratio <= 1)) {
        FT_WARN("backup policy: max_backup_ratio must be in (0, 1] (got %g)", o.max_backup_ratio);
        return FTRPC_EINVAL;
    }
    if (o.window_size_seconds < 1 || o.window_size_seconds > 3600) {
        FT_WARN("backup policy: window_size_seconds must be in [1, 3600] (got %d)",
                o.window_size_seconds);
        return FTRPC_EINVAL;
    }
    if (o.update_interval_seconds < 1) {
        FT_WARN("backup policy: update_interval_seconds must be >= 1 (got %d)",
                o.update_interval_seconds);
        return FTRPC_EINVAL;
    }
    ratelimited *p = calloc(1, sizeof *p);
    if (!p) return FTRPC_ENOMEM;
    p->buckets = calloc((size_t)o.window_size_seconds, sizeof *p->buckets);
    if (!p->buckets) {
        free(p);
        return FTRPC_ENOMEM;
    }
    for (int i = 0; i < o.window_size_seconds; i++)
        atomic_init(&p->buckets[i].second, -1);
    p->o = o;
    p->clock = clock ? clock : ft_clock_monotonic();
    pthread_mutex_init(&p->update_lock, NULL);
    p->base = (ftrpc_backup_policy){rl_delay, rl_should, rl_end, rl_destroy, rl_refused};
    *out = &p->base;
    return 0;
}

void ft_backup_policy_ratelimited_counts(ftrpc_backup_policy *self, int64_t *backups,
                                         int64_t *calls)
{
    ratelimited *p = (ratelimited *)self;
    *backups = atomic_load(&p->win_backups) + atomic_load(&p->since_backups);
    *calls = atomic_load(&p->win_calls) + atomic_load(&p->since_calls);
}

int ftrpc_backup_policy_ratelimited_new_sized(const ftrpc_backup_policy_ratelimited_options *opts,
                                              size_t opts_size, ftrpc_backup_policy **out)
{
    ftrpc_backup_policy_ratelimited_options o;
    if (!out || ft_sized_options_read(&o, sizeof o, opts, opts_size) != 0) return FTRPC_EINVAL;
    return ft_backup_policy_ratelimited_new(&o, NULL, out);
}

/* ---- adaptive ---- */

typedef struct adaptive {
    ftrpc_backup_policy base;
    ftrpc_backup_policy_adaptive_options o;
    const ft_clock *clock;
    ft_latency_recorder *latency;
    int64_t floor_us;         /* floor_us, else floor_ms in us; 1 for no floor */
    _Atomic int64_t delay_us; /* cached; -1: too few samples */
    _Atomic int64_t next_refresh_ns;
} adaptive;

static void ad_refresh(adaptive *p, int64_t now)
{
    int64_t due = atomic_load_explicit(&p->next_refresh_ns, memory_order_relaxed);
    if (now < due || !atomic_compare_exchange_strong(&p->next_refresh_ns, &due,
                                                     now + (int64_t)p->o.refresh_ms * FT_NS_PER_MS))
        return;
    ft_latency_stats st;
    int window = ft_latency_recorder_window_size(p->latency);
    if (ft_latency_recorder_stats(p->latency, window, &st) != 0 ||
        st.count < (uint64_t)p->o.min_samples) {
        atomic_store(&p->delay_us, -1);
        return;
    }
    double q = 1.0 - p->o.max_extra_load;
    int64_t ns = 0;
    ft_latency_recorder_percentiles(p->latency, window, &q, &ns, 1);
    int64_t us = (ns + FT_NS_PER_US - 1) / FT_NS_PER_US;
    atomic_store(&p->delay_us, us < p->floor_us ? p->floor_us : us);
}

/* A delay in us as whole ms, rounded up (a policy's ms hook; -1 stays -1) */
static int us_to_ms_up(int64_t us)
{
    return us < 0 ? (int)us : (int)((us + 999) / 1000);
}

static int64_t ad_delay_us(ftrpc_backup_policy *self, const char *service, const char *method)
{
    adaptive *p = (adaptive *)self;
    (void)service;
    (void)method;
    ad_refresh(p, ft_clock_now_ns(p->clock));
    return atomic_load_explicit(&p->delay_us, memory_order_relaxed);
}

/* For callers that ask the ms hook (the engine asks backup_delay_us) */
static int ad_delay(ftrpc_backup_policy *self, const char *service, const char *method)
{
    return us_to_ms_up(ad_delay_us(self, service, method));
}

static int ad_should(ftrpc_backup_policy *self, const char *service, const char *method)
{
    (void)self;
    (void)service;
    (void)method;
    return 1; /* the delay and the retry budget bound the extra load */
}

static void ad_end(ftrpc_backup_policy *self, const ftrpc_result *result)
{
    adaptive *p = (adaptive *)self;
    /* only answers say how fast the service is; failures would drag the quantile to deadlines */
    if (result->kind == FTRPC_RESULT_RPC_ERROR) return;
    ft_latency_recorder_record_at(p->latency, result->latency_us * FT_NS_PER_US,
                                  ft_clock_now_ns(p->clock));
}

static void ad_destroy(ftrpc_backup_policy *self)
{
    adaptive *p = (adaptive *)self;
    ft_latency_recorder_free(p->latency);
    free(p);
}

int ft_backup_policy_adaptive_new(const ftrpc_backup_policy_adaptive_options *opts,
                                  const ft_clock *clock, ftrpc_backup_policy **out)
{
    ftrpc_backup_policy_adaptive_options o =
        opts ? *opts : (ftrpc_backup_policy_adaptive_options){0};
    if (o.max_extra_load == 0) o.max_extra_load = 0.05;
    if (o.floor_ms == 0) o.floor_ms = 1;
    if (o.window_seconds == 0) o.window_seconds = 10;
    if (o.refresh_ms == 0) o.refresh_ms = 500;
    if (o.min_samples == 0) o.min_samples = 100;
    if (!(o.max_extra_load > 0 && o.max_extra_load <= 0.5) || o.floor_ms < 0 || o.floor_us < -1 ||
        o.window_seconds < 1 || o.window_seconds > 60 || o.refresh_ms < 0 || o.min_samples < 0) {
        FT_WARN("backup policy: adaptive options out of range (max_extra_load in (0, 0.5], "
                "window_seconds in [1, 60], floor_us >= -1, others >= 0)");
        return FTRPC_EINVAL;
    }
    adaptive *p = calloc(1, sizeof *p);
    if (!p) return FTRPC_ENOMEM;
    p->o = o;
    p->clock = clock ? clock : ft_clock_monotonic();
    ft_latency_recorder_options ro = {.clock = p->clock, .window = o.window_seconds};
    if (ft_latency_recorder_new(&ro, &p->latency) != 0) {
        free(p);
        return FTRPC_ENOMEM;
    }
    /* floor_us, when set, says it in us; -1: none, but a delay of 0 would race the first copy */
    p->floor_us = o.floor_us > 0 ? o.floor_us : o.floor_us == -1 ? 1 : (int64_t)o.floor_ms * 1000;
    atomic_init(&p->delay_us, -1);
    atomic_init(&p->next_refresh_ns, 0);
    p->base = (ftrpc_backup_policy){.backup_delay_ms = ad_delay,
                                    .should_backup = ad_should,
                                    .on_call_end = ad_end,
                                    .destroy = ad_destroy,
                                    .backup_delay_us = ad_delay_us};
    *out = &p->base;
    return 0;
}

int ft_backup_policy_adaptive_delay_ms(ftrpc_backup_policy *self)
{
    return us_to_ms_up(ft_backup_policy_adaptive_delay_us(self));
}

int64_t ft_backup_policy_adaptive_delay_us(ftrpc_backup_policy *self)
{
    return atomic_load(&((adaptive *)self)->delay_us);
}

int ftrpc_backup_policy_adaptive_new_sized(const ftrpc_backup_policy_adaptive_options *opts,
                                           size_t opts_size, ftrpc_backup_policy **out)
{
    ftrpc_backup_policy_adaptive_options o;
    if (!out || ft_sized_options_read(&o, sizeof o, opts, opts_size) != 0) return FTRPC_EINVAL;
    return ft_backup_policy_adaptive_new(&o, NULL, out);
}

void ftrpc_backup_policy_free(ftrpc_backup_policy *policy)
{
    if (policy && policy->destroy) policy->destroy(policy);
}
