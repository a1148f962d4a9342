/* Adaptive throttling (see throttle.h): a ring of per-bucket request and accept counts. */
#include "client/throttle.h"

#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "ftrpc/common.h"

static ft_throttle_options with_defaults(const ft_throttle_options *in)
{
    ft_throttle_options o = {0};
    if (in) o = *in;
    if (o.k == 0) o.k = 2;
    if (o.window_ms == 0) o.window_ms = 30000;
    return o;
}

int ft_throttle_options_validate(const ft_throttle_options *opts)
{
    ft_throttle_options o = with_defaults(opts);
    if (o.k != FT_THROTTLE_OFF && !(o.k >= 1 && o.k <= 1000)) {
        FT_ERROR("adaptive throttling: k %g must be in [1, 1000] (below 1 a healthy service is "
                 "throttled), or -1 for off",
                 o.k);
        return FTRPC_EINVAL;
    }
    if (o.window_ms < FT_THROTTLE_BUCKETS || o.window_ms > INT64_C(86400000)) {
        FT_ERROR("adaptive throttling: window %lld ms must be in [%d, one day]",
                 (long long)o.window_ms, FT_THROTTLE_BUCKETS);
        return FTRPC_EINVAL;
    }
    return 0;
}

int ft_throttle_init(ft_throttle *t, const ft_throttle_options *opts)
{
    int rc = ft_throttle_options_validate(opts);
    if (rc != 0) return rc;
    ft_throttle_options o = with_defaults(opts);
    memset(t, 0, sizeof *t);
    t->k = o.k;
    t->off = o.k == FT_THROTTLE_OFF;
    t->bucket_ns = o.window_ms * FT_NS_PER_MS / FT_THROTTLE_BUCKETS;
    for (int i = 0; i < FT_THROTTLE_BUCKETS; i++)
        t->ring[i].epoch = INT64_MIN; /* no bucket of time yet */
    t->sum_epoch = INT64_MIN;
    atomic_init(&t->zero_hint, 0);
    pthread_mutex_init(&t->lock, NULL);
    return 0;
}

void ft_throttle_fini(ft_throttle *t)
{
    pthread_mutex_destroy(&t->lock);
}

/* The bucket now_ns falls in, counted from the clock's zero (floor division). */
static int64_t epoch_of(const ft_throttle *t, int64_t now_ns)
{
    int64_t q = now_ns / t->bucket_ns;
    return now_ns % t->bucket_ns < 0 ? q - 1 : q;
}

enum { HINT_EPOCH_BITS = 62 };
#define FT_THROTTLE_ZERO_BIT (UINT64_C(1) << 63)

/* zero_hint's value for bucket e: the zero bit and e's low bits (a bucket 2^62 buckets away
 * would share them: more than 146 years of 1 ms buckets) */
static uint64_t zero_hint_of(int64_t e)
{
    return FT_THROTTLE_ZERO_BIT | ((uint64_t)e & ((UINT64_C(1) << HINT_EPOCH_BITS) - 1));
}

/* Under lock, after the sums changed: the hint for admit, set when the sums are those of bucket
 * e and give a probability of 0 (requests <= k * accepts), cleared otherwise. */
static void publish_hint(ft_throttle *t, int64_t e)
{
    uint64_t h =
        t->sum_epoch == e && t->sum_requests - t->k * t->sum_accepts <= 0 ? zero_hint_of(e) : 0;
    atomic_store_explicit(&t->zero_hint, h, memory_order_relaxed);
}

/* Under lock: now's bucket, emptied first when it last counted an older bucket of time. */
static ft_throttle_bucket *current(ft_throttle *t, int64_t now_ns)
{
    int64_t e = epoch_of(t, now_ns);
    int64_t slot = e % FT_THROTTLE_BUCKETS;
    ft_throttle_bucket *b = &t->ring[slot < 0 ? slot + FT_THROTTLE_BUCKETS : slot];
    if (b->epoch != e) {
        *b = (ft_throttle_bucket){.epoch = e};
        if (t->sum_epoch != e) { /* another bucket of time: sum again, and no hint until then */
            t->sum_epoch = INT64_MIN;
            atomic_store_explicit(&t->zero_hint, 0, memory_order_relaxed);
        }
    }
    return b;
}

/* Under lock: the probability from the window's sums. */
static double probability(ft_throttle *t, int64_t now_ns)
{
    int64_t e = epoch_of(t, now_ns);
    if (e != t->sum_epoch) { /* once a bucket of time (default 1 s), not once a call */
        double requests = 0, accepts = 0;
        for (int i = 0; i < FT_THROTTLE_BUCKETS; i++) {
            const ft_throttle_bucket *b = &t->ring[i];
            if (b->epoch > e - FT_THROTTLE_BUCKETS && b->epoch <= e) {
                requests += b->requests;
                accepts += b->accepts;
            }
        }
        t->sum_epoch = e;
        t->sum_requests = requests;
        t->sum_accepts = accepts;
        publish_hint(t, e);
    }
    double p = (t->sum_requests - t->k * t->sum_accepts) / (t->sum_requests + 1);
    return p > 0 ? p : 0;
}

/* Under lock: one more request (or accept) in b, now's bucket, and in the window's sums when b is
 * in their window. */
static void count(ft_throttle *t, ft_throttle_bucket *b, bool accept)
{
    uint32_t *n = accept ? &b->accepts : &b->requests;
    if (*n == UINT32_MAX) return;
    (*n)++;
    int64_t s = t->sum_epoch; /* b is in the summed window: now's bucket, or one the clock went
                               * back to */
    if (s != INT64_MIN && b->epoch > s - FT_THROTTLE_BUCKETS && b->epoch <= s)
        *(accept ? &t->sum_accepts : &t->sum_requests) += 1;
}

bool ft_throttle_admit(ft_throttle *t, int64_t now_ns, double u)
{
    if (t->off) return true;
    /* probability 0 in now's bucket as of the last change: admitted whatever u, and an admitted
     * call is counted at its answer, so there is nothing to write. A change racing this read is
     * ordered after it, as it would be behind the lock. */
    if (atomic_load_explicit(&t->zero_hint, memory_order_relaxed) ==
        zero_hint_of(epoch_of(t, now_ns)))
        return true;
    pthread_mutex_lock(&t->lock);
    /* judged by what came before it (as gRPC's throttler does: counted first, the first call
     * after a quiet window would be refused one time in two); an admitted call counts when its
     * answer comes, a rejected one now */
    bool admitted = u >= probability(t, now_ns);
    if (!admitted) {
        ft_throttle_bucket *b = current(t, now_ns);
        count(t, b, false);
        publish_hint(t, b->epoch);
    }
    pthread_mutex_unlock(&t->lock);
    return admitted;
}

void ft_throttle_on_answer(ft_throttle *t, int64_t now_ns, bool accepted)
{
    if (t->off) return;
    pthread_mutex_lock(&t->lock);
    ft_throttle_bucket *b = current(t, now_ns);
    count(t, b, false);
    if (accepted) count(t, b, true);
    publish_hint(t, b->epoch);
    pthread_mutex_unlock(&t->lock);
}

double ft_throttle_probability(ft_throttle *t, int64_t now_ns)
{
    if (t->off) return 0;
    pthread_mutex_lock(&t->lock);
    double p = probability(t, now_ns);
    pthread_mutex_unlock(&t->lock);
    return p;
}
