/* Endpoint health state machine (see endpoint_health.h for the rules and threads).
 *
 * Why a lock at all: a transition reads and writes several fields (state, deadline, counters, the
 * breaker window, the cap slot) that must move together, and the one contested moment (who gets
 * the probe) must have exactly one winner. The lock is per endpoint and held for a few dozen
 * instructions; the per-pick reads of the load balancer never take it. */
#include "cluster/endpoint_health.h"

#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "cluster/ewma_decay.h"
#include "ftrpc/common.h"

enum code_class {
    CLASS_SUCCESS,
    CLASS_NEUTRAL,
    CLASS_MARK,
    CLASS_SUSPEND,
    CLASS_TIMEOUT, /* a per-endpoint non-retry code: TIMEOUT, never suspended by it */
    CLASS_OTHER
};

static const int DEFAULT_MARK[] = {FTRPC_ERPCTIMEDOUT, FTRPC_EFAILEDSOCKET, FTRPC_EEOF};
static const int DEFAULT_SUSPEND[] = {FTRPC_ECONNREFUSED, FTRPC_ECONNECT, FTRPC_ETLS,
                                      FTRPC_ELOGOFF};
/* The endpoint answered, and the request was at fault: an unknown service or method, bytes it
 * could not parse, a credential it refused. A live, correct server says this to every such
 * request, so it counts as an answer, as a business error does: counted against the endpoint, a
 * wrong method name or token would open the breaker of a healthy service and hide the real error
 * behind FTRPC_EBREAKER. */
static const int REQUEST_FAULTS[] = {FTRPC_ENOSERVICE, FTRPC_ENOMETHOD, FTRPC_EREQUEST,
                                     FTRPC_ERPCAUTH};
/* Errors that say nothing about the endpoint: the caller gave up, or never really sent. */
static const int NEUTRAL[] = {FTRPC_ECANCELED, FTRPC_EBACKUPREQUEST, FTRPC_ENOENDPOINT,
                              FTRPC_EINVAL,    FTRPC_ENOMEM,         FTRPC_ESTOPPED,
                              FTRPC_EIOTHREAD, FTRPC_EBREAKER};

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

static void fill_codes(int *dst, const int *src, size_t n)
{
    if (dst[0] != 0) return;
    for (size_t i = 0; i < n; i++)
        dst[i] = src[i];
}

static ft_health_options with_defaults(const ft_health_options *in)
{
    ft_health_options o;
    memset(&o, 0, sizeof(o));
    if (in) o = *in;
    fill_codes(o.mark_codes, DEFAULT_MARK, COUNT_OF(DEFAULT_MARK));
    fill_codes(o.suspend_codes, DEFAULT_SUSPEND, COUNT_OF(DEFAULT_SUSPEND));
    if (o.initial_duration_ms == 0) o.initial_duration_ms = 1000;
    if (o.progression_factor == 0) o.progression_factor = 2.0;
    if (o.maximum_duration_ms == 0)
        o.maximum_duration_ms = o.initial_duration_ms > 30000 ? o.initial_duration_ms : 30000;
    if (o.ewma_decay_ms == 0) o.ewma_decay_ms = 10000;
    return o;
}

static int validate_codes(const char *what, const int *codes)
{
    bool terminated = false;
    for (int i = 0; i < FT_HEALTH_MAX_CODES; i++) {
        int c = codes[i];
        if (c == 0) {
            terminated = true;
            break;
        }
        if (c == FT_HEALTH_CODES_NONE && i == 0) continue;
        if (c > 0) {
            FT_ERROR("endpoint health: %s[%d] = %d is not an FTRPC_E* code (those are negative; "
                     "business errors never count)",
                     what, i, c);
            return FTRPC_EINVAL;
        }
    }
    if (!terminated) {
        FT_ERROR("endpoint health: %s must be zero-terminated (at most %d codes)", what,
                 FT_HEALTH_MAX_CODES - 1);
        return FTRPC_EINVAL;
    }
    return 0;
}

int ft_health_options_validate(const ft_health_options *opts)
{
    ft_health_options o = with_defaults(opts);
    int rc = validate_codes("mark_codes", o.mark_codes);
    if (rc == 0) rc = validate_codes("suspend_codes", o.suspend_codes);
    if (rc == 0) rc = validate_codes("timeout_codes", o.timeout_codes);
    if (rc != 0) return rc;
    if (o.retries_before_suspension < 0) {
        FT_ERROR("endpoint health: retries_before_suspension %d must be >= 0",
                 o.retries_before_suspension);
        return FTRPC_EINVAL;
    }
    if (o.retry_delay_ms < 0) {
        FT_ERROR("endpoint health: retry_delay_ms %lld must be >= 0", (long long)o.retry_delay_ms);
        return FTRPC_EINVAL;
    }
    if (o.initial_duration_ms < 0 && o.initial_duration_ms != FT_HEALTH_NO_SUSPENSION) {
        FT_ERROR("endpoint health: initial_duration_ms %lld must be > 0 or "
                 "FT_HEALTH_NO_SUSPENSION",
                 (long long)o.initial_duration_ms);
        return FTRPC_EINVAL;
    }
    if (!(o.progression_factor >= 1.0) || isinf(o.progression_factor)) {
        FT_ERROR("endpoint health: progression_factor %g must be a finite number >= 1",
                 o.progression_factor);
        return FTRPC_EINVAL;
    }
    if (o.maximum_duration_ms < 0 ||
        (o.initial_duration_ms > 0 && o.maximum_duration_ms < o.initial_duration_ms)) {
        FT_ERROR("endpoint health: maximum_duration_ms %lld must be >= initial_duration_ms %lld",
                 (long long)o.maximum_duration_ms, (long long)o.initial_duration_ms);
        return FTRPC_EINVAL;
    }
    if (o.ewma_decay_ms < 0) {
        FT_ERROR("endpoint health: ewma_decay_ms %lld must be > 0", (long long)o.ewma_decay_ms);
        return FTRPC_EINVAL;
    }
    if (o.retry_delay_ms > FT_HEALTH_MAX_DURATION_MS ||
        o.maximum_duration_ms > FT_HEALTH_MAX_DURATION_MS ||
        o.ewma_decay_ms > FT_HEALTH_MAX_DURATION_MS) {
        FT_ERROR("endpoint health: durations must not exceed %lld ms (one week)",
                 (long long)FT_HEALTH_MAX_DURATION_MS);
        return FTRPC_EINVAL;
    }
    return ft_breaker_options_validate(&o.breaker);
}

int64_t ft_health_suspension_duration_ms(const ft_health_options *opts, int n)
{
    ft_health_options o = with_defaults(opts);
    if (o.initial_duration_ms <= 0) return 0;
    if (n < 1) n = 1;
    /* Multiply step by step and stop at the cap, so a long run of failures cannot overflow. */
    double d = (double)o.initial_duration_ms;
    for (int i = 1; i < n && d < (double)o.maximum_duration_ms; i++)
        d *= o.progression_factor;
    if (d >= (double)o.maximum_duration_ms) return o.maximum_duration_ms;
    return (int64_t)d;
}

int ft_health_init(ft_endpoint_health *h, const ft_health_options *opts)
{
    int rc = ft_health_options_validate(opts);
    if (rc != 0) return rc;
    memset(h, 0, sizeof(*h));
    h->opts = with_defaults(opts);
    rc = ft_breaker_init(&h->breaker, &h->opts.breaker);
    if (rc != 0) return rc;
    h->opts.breaker = h->breaker.opts;
    if (pthread_mutex_init(&h->mu, NULL) != 0) return FTRPC_ENOMEM;
    atomic_init(&h->state, FT_HEALTH_ACTIVE);
    atomic_init(&h->usable_at_ns, INT64_MIN);
    atomic_init(&h->ewma_bits, 0);
    atomic_init(&h->ewma_stamp_ns, 0);
    atomic_init(&h->ewma_us, 0);
    atomic_init(&h->failure_ppm, 0);
    atomic_init(&h->by_breaker, false);
    atomic_init(&h->hold_until_ns, INT64_MIN);
    return 0;
}

static void give_slot(ft_endpoint_health *h)
{
    if (h->holds_slot && h->cap) atomic_fetch_sub(&h->cap->held, 1);
    h->holds_slot = false;
}

static bool take_slot(ft_suspension_cap *cap)
{
    int held = atomic_load(&cap->held);
    while (held < cap->limit) {
        if (atomic_compare_exchange_weak(&cap->held, &held, held + 1)) return true;
    }
    return false;
}

void ft_health_fini(ft_endpoint_health *h)
{
    pthread_mutex_lock(&h->mu);
    give_slot(h);
    h->cap = NULL;
    pthread_mutex_unlock(&h->mu);
    pthread_mutex_destroy(&h->mu);
}

void ft_health_attach_cap(ft_endpoint_health *h, ft_suspension_cap *cap)
{
    pthread_mutex_lock(&h->mu);
    if (h->cap != cap) {
        bool held = h->holds_slot;
        give_slot(h);
        h->cap = cap;
        if (held && cap) {
            atomic_fetch_add(&cap->held, 1);
        }
        h->holds_slot = held;
    }
    pthread_mutex_unlock(&h->mu);
}

void ft_health_detach_cap(ft_endpoint_health *h, ft_suspension_cap *cap)
{
    pthread_mutex_lock(&h->mu);
    if (h->cap == cap) {
        bool held = h->holds_slot;
        give_slot(h);
        h->cap = NULL;
        h->holds_slot = held; /* a set that attaches it later counts the slot, as attach does */
    }
    pthread_mutex_unlock(&h->mu);
}

static bool in_codes(const int *codes, int code)
{
    for (int i = 0; i < FT_HEALTH_MAX_CODES && codes[i] != 0; i++)
        if (code == codes[i]) return true;
    return false;
}

static enum code_class classify(const ft_endpoint_health *h, int code)
{
    if (code >= 0) return CLASS_SUCCESS;
    for (size_t i = 0; i < COUNT_OF(NEUTRAL); i++)
        if (code == NEUTRAL[i]) return CLASS_NEUTRAL;
    if (in_codes(h->opts.timeout_codes, code)) return CLASS_TIMEOUT;
    if (in_codes(h->opts.suspend_codes, code)) return CLASS_SUSPEND;
    if (in_codes(h->opts.mark_codes, code)) return CLASS_MARK;
    for (size_t i = 0; i < COUNT_OF(REQUEST_FAULTS); i++) /* unless listed above */
        if (code == REQUEST_FAULTS[i]) return CLASS_SUCCESS;
    return h->opts.suspend_other_errors ? CLASS_SUSPEND : CLASS_OTHER;
}

static void set_state(ft_endpoint_health *h, ft_health_state state, int64_t usable_at_ns)
{
    /* usable_at first: a lock-free reader that sees the new state must not pair it with the old
     * deadline (release/acquire on state orders the two). */
    atomic_store_explicit(&h->usable_at_ns, usable_at_ns, memory_order_relaxed);
    atomic_store_explicit(&h->state, (int)state, memory_order_release);
}

static void become_active(ft_endpoint_health *h)
{
    h->timeout_errors = 0;
    h->suspension_level = 0;
    give_slot(h);
    set_state(h, FT_HEALTH_ACTIVE, INT64_MIN);
}

/* When a TIMEOUT endpoint becomes usable again. With no retry delay it never stops being usable:
 * `now_ns` is this thread's clock, and a pick on another IO thread may read an earlier one; a
 * usable_at of now_ns would deny that pick for a moment (caught by tsan's slowdown in
 * test_fail_modes, where a priority pick then went to the second server). */
static int64_t timeout_usable_at(const ft_endpoint_health *h, int64_t now_ns)
{
    return h->opts.retry_delay_ms > 0 ? now_ns + h->opts.retry_delay_ms * FT_NS_PER_MS : INT64_MIN;
}

/* The endpoint should be suspended (already holding a slot if it failed its probe). by_breaker:
 * the breaker asked for it now (counted as a trip); breaker_cause: the suspension counts as the
 * breaker's (a trip, or a failed probe that continues one). `refused`: its connection was refused,
 * a certain and cheap verdict that suspends past the cap and takes no slot (a slot it held for an
 * earlier, uncertain failure is given back), so that the cap keeps its places for the slow and
 * the erroring (docs/endpoint-health.md, The ejection cap). */
static void suspend(ft_endpoint_health *h, int64_t now_ns, int code, bool by_breaker,
                    bool breaker_cause, bool refused)
{
    if (h->opts.initial_duration_ms == FT_HEALTH_NO_SUSPENSION) {
        set_state(h, FT_HEALTH_TIMEOUT, timeout_usable_at(h, now_ns));
        return;
    }
    if (refused) {
        give_slot(h);
    } else if (!h->holds_slot) {
        if (h->cap && !take_slot(h->cap)) {
            /* The cap is full: stay in the service, in TIMEOUT so that a success still clears
             * the mark and the next failure asks again. */
            atomic_fetch_add_explicit(&h->cap_denials, 1, memory_order_relaxed);
            set_state(h, FT_HEALTH_TIMEOUT, INT64_MIN); /* usable at once (see timeout_usable_at) */
            FT_DEBUG("endpoint health %p: suspension on %d refused by the cap", (void *)h, code);
            return;
        }
        h->holds_slot = true;
    }
    h->suspension_level++;
    int64_t ms = ft_health_suspension_duration_ms(&h->opts, h->suspension_level);
    /* The latency figure and the failure ratio were measured on a node that has since failed:
     * forget them, and let the probe measure the node afresh. Kept, the failure's peak (an attempt
     * timeout, hundreds of times a healthy answer) or its failures would make p2c shun the node
     * long after its suspension ended, so that the probe itself never came (seen in
     * tests/netfault: 7-10 s after a healed partition). */
    atomic_store_explicit(&h->ewma_bits, 0, memory_order_relaxed);
    atomic_store_explicit(&h->ewma_stamp_ns, now_ns, memory_order_relaxed);
    atomic_store_explicit(&h->ewma_us, 0, memory_order_relaxed);
    atomic_store_explicit(&h->failure_ppm, 0, memory_order_relaxed);
    ft_breaker_reset(&h->breaker);
    atomic_fetch_add_explicit(&h->suspensions, 1, memory_order_relaxed);
    if (by_breaker) atomic_fetch_add_explicit(&h->breaker_trips, 1, memory_order_relaxed);
    atomic_store_explicit(&h->by_breaker, breaker_cause, memory_order_relaxed);
    set_state(h, FT_HEALTH_SUSPENDED, now_ns + ms * FT_NS_PER_MS);
    FT_DEBUG("endpoint health %p: suspended for %lld ms (n=%d, code %d%s)", (void *)h,
             (long long)ms, h->suspension_level, code, by_breaker ? ", breaker" : "");
}

static void update_ewma(ft_endpoint_health *h, int64_t latency_us, bool failed, int64_t now_ns)
{
    uint64_t bits = atomic_load_explicit(&h->ewma_bits, memory_order_relaxed);
    double cost;
    memcpy(&cost, &bits, sizeof(cost));
    int64_t stamp = atomic_load_explicit(&h->ewma_stamp_ns, memory_order_relaxed);
    double w = ft_ewma_decay_weight(now_ns - stamp, h->opts.ewma_decay_ms * FT_NS_PER_MS);
    double rtt = (double)latency_us;
    if (rtt > cost)
        cost = rtt; /* peak: a slow sample counts in full at once */
    else
        cost = cost * w + rtt * (1.0 - w);
    /* The failure ratio is a plain (not peak) average with the same time weight: one failure
     * among a busy endpoint's many successes moves it little, a run of failures drives it to 1. */
    double ratio = (double)atomic_load_explicit(&h->failure_ppm, memory_order_relaxed) / 1e6;
    ratio = ratio * w + (failed ? 1.0 - w : 0.0);
    memcpy(&bits, &cost, sizeof(bits));
    atomic_store_explicit(&h->ewma_stamp_ns, now_ns, memory_order_relaxed);
    atomic_store_explicit(&h->ewma_bits, bits, memory_order_relaxed);
    atomic_store_explicit(&h->ewma_us, (int64_t)cost, memory_order_relaxed);
    atomic_store_explicit(&h->failure_ppm, (int64_t)(ratio * 1e6 + 0.5), memory_order_relaxed);
}

double ft_health_ewma_us(const ft_endpoint_health *h, int64_t now_ns)
{
    ft_endpoint_health *m = (ft_endpoint_health *)h;
    uint64_t bits = atomic_load_explicit(&m->ewma_bits, memory_order_relaxed);
    int64_t stamp = atomic_load_explicit(&m->ewma_stamp_ns, memory_order_relaxed);
    double cost;
    memcpy(&cost, &bits, sizeof(cost));
    return cost * ft_ewma_decay_weight(now_ns - stamp, h->opts.ewma_decay_ms * FT_NS_PER_MS);
}

double ft_health_failure_ratio(const ft_endpoint_health *h, int64_t now_ns)
{
    ft_endpoint_health *m = (ft_endpoint_health *)h;
    int64_t ppm = atomic_load_explicit(&m->failure_ppm, memory_order_relaxed);
    int64_t stamp = atomic_load_explicit(&m->ewma_stamp_ns, memory_order_relaxed);
    return (double)ppm / 1e6 *
           ft_ewma_decay_weight(now_ns - stamp, h->opts.ewma_decay_ms * FT_NS_PER_MS);
}

void ft_health_on_result(ft_endpoint_health *h, int code, int64_t latency_us, int64_t now_ns)
{
    enum code_class cls = classify(h, code);
    pthread_mutex_lock(&h->mu);
    ft_health_state state = (ft_health_state)atomic_load(&h->state);
    /* While suspended, results are late ones of attempts sent before: the figures were forgotten
     * at the suspension (suspend) and restart with the probe. */
    if (cls != CLASS_NEUTRAL && latency_us >= 0 && state != FT_HEALTH_SUSPENDED)
        update_ewma(h, latency_us, cls != CLASS_SUCCESS, now_ns);
    bool refused = cls == CLASS_SUSPEND && code == FTRPC_ECONNREFUSED;

    if (state == FT_HEALTH_OFF) { /* the operator's word stands, whatever calls sent before say */
        pthread_mutex_unlock(&h->mu);
        return;
    }
    if (state == FT_HEALTH_SUSPENDED || cls == CLASS_NEUTRAL) {
        /* A late answer to a call sent before the suspension, or no verdict at all. A cancelled
         * probe hands the probe back at once. */
        if (state == FT_HEALTH_PROBING) set_state(h, FT_HEALTH_SUSPENDED, now_ns);
        pthread_mutex_unlock(&h->mu);
        return;
    }
    if (state == FT_HEALTH_PROBING) {
        if (cls == CLASS_SUCCESS) {
            ft_breaker_reset(&h->breaker);
            become_active(h);
            FT_DEBUG("endpoint health %p: probe succeeded, active", (void *)h);
        } else {
            atomic_fetch_add_explicit(&h->probe_failures, 1, memory_order_relaxed);
            /* an overloaded endpoint that still answers errors stays open by its breaker; one
             * that now refuses connections or times out is down for another reason */
            suspend(h, now_ns, code, false,
                    cls == CLASS_OTHER &&
                        atomic_load_explicit(&h->by_breaker, memory_order_relaxed),
                    refused);
        }
        pthread_mutex_unlock(&h->mu);
        return;
    }

    /* ACTIVE or TIMEOUT. */
    bool tripped = ft_breaker_record(&h->breaker, now_ns, cls != CLASS_SUCCESS);
    bool asked = false; /* suspend() already ran for this result: do not ask the cap twice */
    switch (cls) {
    case CLASS_SUCCESS:
        if (state == FT_HEALTH_TIMEOUT) become_active(h);
        break;
    case CLASS_MARK:
        if (state == FT_HEALTH_ACTIVE)
            h->timeout_errors = 0;
        else
            h->timeout_errors++;
        if (h->timeout_errors >= h->opts.retries_before_suspension) {
            suspend(h, now_ns, code, false, false, false);
            asked = true;
        } else
            set_state(h, FT_HEALTH_TIMEOUT, timeout_usable_at(h, now_ns));
        break;
    case CLASS_SUSPEND:
        suspend(h, now_ns, code, false, false, refused);
        asked = true;
        break;
    case CLASS_TIMEOUT:
        set_state(h, FT_HEALTH_TIMEOUT, timeout_usable_at(h, now_ns));
        break;
    default:
        break;
    }
    if (tripped && !asked) suspend(h, now_ns, code, true, true, false);
    pthread_mutex_unlock(&h->mu);
}

static ft_health_grant grant_probe(ft_endpoint_health *h, int64_t now_ns)
{
    atomic_fetch_add_explicit(&h->probes, 1, memory_order_relaxed);
    /* If the probe never reports, another is let through after the longest suspension. */
    set_state(h, FT_HEALTH_PROBING, now_ns + h->opts.maximum_duration_ms * FT_NS_PER_MS);
    return FT_HEALTH_GRANTED_PROBE;
}

void ft_health_hold(ft_endpoint_health *h, int64_t until_ns)
{
    int64_t cur = atomic_load_explicit(&h->hold_until_ns, memory_order_relaxed);
    while (cur < until_ns &&
           !atomic_compare_exchange_weak_explicit(&h->hold_until_ns, &cur, until_ns,
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

bool ft_health_held(const ft_endpoint_health *h, int64_t now_ns)
{
    ft_endpoint_health *m = (ft_endpoint_health *)h;
    return now_ns < atomic_load_explicit(&m->hold_until_ns, memory_order_relaxed);
}

ft_health_grant ft_health_try_acquire(ft_endpoint_health *h, int64_t now_ns)
{
    if (ft_health_held(h, now_ns)) return FT_HEALTH_DENIED;
    return ft_health_try_acquire_past_hold(h, now_ns);
}

ft_health_grant ft_health_try_acquire_past_hold(ft_endpoint_health *h, int64_t now_ns)
{
    int state = atomic_load_explicit(&h->state, memory_order_acquire);
    int64_t at = atomic_load_explicit(&h->usable_at_ns, memory_order_relaxed);
    if (state == FT_HEALTH_ACTIVE) return FT_HEALTH_GRANTED;
    if (state == FT_HEALTH_OFF || now_ns < at) return FT_HEALTH_DENIED;
    if (state == FT_HEALTH_TIMEOUT) return FT_HEALTH_GRANTED;

    /* A probe may be up for grabs: decide under the lock, so exactly one caller wins it. */
    ft_health_grant g;
    pthread_mutex_lock(&h->mu);
    state = atomic_load(&h->state);
    at = atomic_load(&h->usable_at_ns);
    if (state == FT_HEALTH_ACTIVE)
        g = FT_HEALTH_GRANTED;
    else if (state == FT_HEALTH_OFF || now_ns < at)
        g = FT_HEALTH_DENIED;
    else if (state == FT_HEALTH_TIMEOUT)
        g = FT_HEALTH_GRANTED;
    else
        g = grant_probe(h, now_ns);
    pthread_mutex_unlock(&h->mu);
    return g;
}

ft_health_grant ft_health_acquire_anyway(ft_endpoint_health *h, int64_t now_ns)
{
    if (ft_health_held(h, now_ns)) return FT_HEALTH_DENIED; /* the server asked for the pause */
    return ft_health_acquire_anyway_past_hold(h, now_ns);
}

ft_health_grant ft_health_acquire_anyway_past_hold(ft_endpoint_health *h, int64_t now_ns)
{
    ft_health_grant g = FT_HEALTH_GRANTED;
    pthread_mutex_lock(&h->mu);
    if (atomic_load(&h->state) == FT_HEALTH_OFF)
        g = FT_HEALTH_DENIED; /* only the operator's word overrides the fallback */
    else if (atomic_load(&h->state) == FT_HEALTH_SUSPENDED)
        g = grant_probe(h, now_ns);
    else if (atomic_load(&h->state) == FT_HEALTH_PROBING && now_ns >= atomic_load(&h->usable_at_ns))
        g = grant_probe(h, now_ns);
    pthread_mutex_unlock(&h->mu);
    return g;
}

bool ft_health_breaker_open(const ft_endpoint_health *h, int64_t now_ns)
{
    int state = atomic_load_explicit(&h->state, memory_order_acquire);
    if (state != FT_HEALTH_SUSPENDED && state != FT_HEALTH_PROBING) return false;
    if (now_ns >= atomic_load_explicit(&h->usable_at_ns, memory_order_relaxed)) return false;
    return atomic_load_explicit(&h->by_breaker, memory_order_relaxed);
}

bool ft_health_usable(const ft_endpoint_health *h, int64_t now_ns)
{
    return ft_health_usable_in_ns(h, now_ns) == 0;
}

int64_t ft_health_usable_in_ns(const ft_endpoint_health *h, int64_t now_ns)
{
    ft_endpoint_health *m = (ft_endpoint_health *)h;
    int state = atomic_load_explicit(&m->state, memory_order_acquire);
    if (state == FT_HEALTH_OFF) return INT64_MAX;
    int64_t at = state == FT_HEALTH_ACTIVE
                     ? INT64_MIN
                     : atomic_load_explicit(&m->usable_at_ns, memory_order_relaxed);
    int64_t hold = atomic_load_explicit(&m->hold_until_ns, memory_order_relaxed);
    if (hold > at) at = hold;
    return now_ns >= at ? 0 : at - now_ns;
}

void ft_health_switch(ft_endpoint_health *h, bool off)
{
    pthread_mutex_lock(&h->mu);
    ft_health_state state = (ft_health_state)atomic_load(&h->state);
    if (off && state != FT_HEALTH_OFF) {
        /* the slot is for suspensions health decided; an operator's OFF does not count in it */
        give_slot(h);
        set_state(h, FT_HEALTH_OFF, INT64_MAX);
        FT_INFO("endpoint health %p: switched OFF", (void *)h);
    } else if (!off && state == FT_HEALTH_OFF) {
        ft_breaker_reset(&h->breaker);
        become_active(h);
        FT_INFO("endpoint health %p: switched ON, active", (void *)h);
    }
    pthread_mutex_unlock(&h->mu);
}

ft_health_state ft_health_state_get(const ft_endpoint_health *h)
{
    return (ft_health_state)atomic_load_explicit(&((ft_endpoint_health *)h)->state,
                                                 memory_order_acquire);
}

const char *ft_health_state_name(ft_health_state state)
{
    switch (state) {
    case FT_HEALTH_ACTIVE:
        return "ACTIVE";
    case FT_HEALTH_TIMEOUT:
        return "TIMEOUT";
    case FT_HEALTH_SUSPENDED:
        return "SUSPENDED";
    case FT_HEALTH_PROBING:
        return "PROBING";
    case FT_HEALTH_OFF:
        return "OFF";
    }
    return "UNKNOWN";
}

void ft_health_stats_get(ft_endpoint_health *h, ft_health_stats *out)
{
    pthread_mutex_lock(&h->mu);
    out->suspensions = atomic_load(&h->suspensions);
    out->probes = atomic_load(&h->probes);
    out->probe_failures = atomic_load(&h->probe_failures);
    out->breaker_trips = atomic_load(&h->breaker_trips);
    out->cap_denials = atomic_load(&h->cap_denials);
    out->suspension_level = h->suspension_level;
    pthread_mutex_unlock(&h->mu);
}
