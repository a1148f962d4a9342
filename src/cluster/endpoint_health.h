/* Endpoint health: one state machine per endpoint, shared by every IO thread, with WSO2's
 * semantics (markForSuspension / suspendOnFailure), a circuit breaker and a peak-EWMA latency for
 * the load balancer. (Calls in flight are counted by the client, per IO thread: client_internal.h.)
 *
 *   ACTIVE --(mark code)--> TIMEOUT --(retries_before_suspension more mark codes)--> SUSPENDED
 *   ACTIVE/TIMEOUT --(suspend code, or breaker trips)--------------------------------> SUSPENDED
 *   TIMEOUT --(success)--> ACTIVE
 *   SUSPENDED --(suspension over; ONE ft_health_try_acquire wins)--> PROBING
 *   PROBING --(success)--> ACTIVE (counters and progression reset)
 *   PROBING --(failure)--> SUSPENDED, n+1:  duration = min(initial * factor^(n-1), maximum)
 *   any --(ft_health_switch off)--> OFF --(ft_health_switch on)--> ACTIVE (an operator's word)
 *
 * docs/endpoint-health.md has the full story; the rules in brief:
 *  - A result's code is classified once: success (0, or a positive business code: the endpoint
 *    answered), neutral (not the endpoint's fault: ECANCELED, EBACKUPREQUEST, ENOENDPOINT, EINVAL,
 *    ENOMEM, ESTOPPED, EIOTHREAD; ignored by everything), mark code, suspend code, or other error
 *    (counted by the breaker only). A code in both lists counts as a suspend code.
 *  - Results that arrive while SUSPENDED come from calls sent before the suspension: ignored
 *    except for the EWMA. While PROBING, the first decisive result settles the probe, whichever
 *    call it came from; a neutral one (the probe was cancelled) hands the probe back at once.
 *  - A probe that never reports is presumed lost after maximum_duration_ms; another is let through.
 *  - OFF is an operator's decision: no call is let through (not even the all-unusable fallback),
 *    results are ignored, and it holds no cap slot. Switching ON starts afresh, as ACTIVE.
 *  - When the endpoint belongs to a health set whose suspension cap is full, an endpoint that
 *    would be suspended goes to (or stays in) TIMEOUT instead, usable at once (retry_delay does not
 *    apply); its next failure tries again to suspend it. A refused connection (FTRPC_ECONNREFUSED
 *    while it is a suspend code) is the exception: a certain verdict, it suspends whatever the cap
 *    says and holds no slot.
 *
 * Threads: every function may be called from any thread. State changes happen under `mu`, one
 * short lock per endpoint; what the load balancer reads on every pick (usable, state, EWMA) is
 * atomic and lock-free. Time is never read here: callers pass now_ns from their
 * ft_clock, so tests drive it by hand.
 *
 * Not here: which endpoint to pick (load balancers), the service-wide cap and the all-unusable
 * fallback (health_set.h), retries (client/).
 */
#ifndef FT_CLUSTER_ENDPOINT_HEALTH_H
#define FT_CLUSTER_ENDPOINT_HEALTH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cluster/breaker.h"

#define FT_HEALTH_MAX_CODES 16

/* As the only element of suspend_codes (or mark_codes): the list is empty, no code at all. With
 * suspend_codes = {FT_HEALTH_CODES_NONE} no error suspends at once (WSO2's errorCodes -1). */
#define FT_HEALTH_CODES_NONE 1
/* initial_duration_ms value that disables suspension altogether: nothing ever reaches SUSPENDED;
 * mark codes still lead to TIMEOUT and its retry_delay. */
#define FT_HEALTH_NO_SUSPENSION (-1)
/* Upper bound for every duration option (one week): keeps now_ns + duration far from overflow. */
#define FT_HEALTH_MAX_DURATION_MS (INT64_C(7) * 24 * 3600 * 1000)

/* Zero in any field means its default; designated initializers, e.g.
 *   ft_health_options o = {.initial_duration_ms = 500, .retries_before_suspension = 2};
 *
 * Why these defaults: RPC calls within a datacenter take milliseconds and a client usually has
 * other endpoints to retry on, so a suspension is cheap to lift and costly to prolong. WSO2's and
 * Envoy's 30 s first suspension suits HTTP gateways; for RPC one spurious timeout would take a
 * node away for half a minute. brpc's 100 ms lets a dead node eat ten probe calls a second. 1 s
 * doubling (brpc's progression) up to 30 s (brpc's cap; Envoy goes to 300 s) costs a dead node one
 * probe per 30 s after five failed probes (~31 s), and a node back from a restart is used again
 * within 30 s. */
typedef struct ft_health_options {
    /* Timeout-class errors: ACTIVE -> TIMEOUT, then SUSPENDED. Zero-terminated; default
     * {FTRPC_ERPCTIMEDOUT, FTRPC_EFAILEDSOCKET, FTRPC_EEOF} (WSO2: connection timeout and
     * connection closed). Report FTRPC_ERPCTIMEDOUT only when this endpoint's attempt timed out,
     * not when a call ended while the attempt was still in the air for another reason. */
    int mark_codes[FT_HEALTH_MAX_CODES];
    /* Errors that suspend at once. Zero-terminated; default {FTRPC_ECONNREFUSED, FTRPC_ECONNECT,
     * FTRPC_ETLS, FTRPC_ELOGOFF}: the connection-level failures, plus a server saying it is
     * stopping, for which waiting is the only cure. Business errors never suspend. Overload
     * (FTRPC_ELIMIT, FTRPC_EOVERCROWDED) is left to the breaker: suspending a busy node at once
     * moves its load onto the others and can cascade. {FT_HEALTH_CODES_NONE}: none. */
    int suspend_codes[FT_HEALTH_MAX_CODES];
    /* Mark codes tolerated in TIMEOUT after the first one before suspending. Default 0 (WSO2):
     * the first mark code suspends. */
    int retries_before_suspension;
    /* While in TIMEOUT, the endpoint is used again only this long after its last mark code.
     * Default 0 (WSO2): it keeps receiving calls, so that a success clears it or further
     * failures suspend it quickly. */
    int64_t retry_delay_ms;
    /* First suspension. Default 1000 (see above; WSO2/Envoy 30000, brpc 100).
     * FT_HEALTH_NO_SUSPENSION disables suspension. */
    int64_t initial_duration_ms;
    /* Each further suspension without a successful probe in between: x factor. Default 2 (brpc
     * doubles; WSO2 1, Envoy linear). Must be >= 1. */
    double progression_factor;
    /* Longest suspension. Default 30000 (brpc; Envoy 300000). Must be >= initial_duration_ms. */
    int64_t maximum_duration_ms;
    /* Time constant of the peak-EWMA latency. Default 10000 (Finagle's and linkerd's decayTime). */
    int64_t ewma_decay_ms;
    /* The breaker; its defaults are in breaker.h. */
    ft_breaker_options breaker;
    /* An RPC error in neither list (and not neutral) suspends at once, as a suspend code does.
     * Default false: it only feeds the breaker. WSO2 suspends on "all other errors". */
    bool suspend_other_errors;
    /* This endpoint's non-retry codes (WSO2's per-endpoint disabled error codes): such an error
     * puts the endpoint in (or keeps it in) TIMEOUT, usable again after retry_delay, and never
     * suspends it by itself; a failure for the breaker. Zero-terminated; default none. Checked
     * before the other lists: a code here is neither a mark nor a suspend code. */
    int timeout_codes[FT_HEALTH_MAX_CODES];
} ft_health_options;

typedef enum ft_health_state {
    FT_HEALTH_ACTIVE = 0,
    FT_HEALTH_TIMEOUT = 1,   /* had a mark code; usable after retry_delay */
    FT_HEALTH_SUSPENDED = 2, /* unusable until its suspension ends */
    FT_HEALTH_PROBING = 3,   /* suspension over, one probe call in the air; unusable to others */
    FT_HEALTH_OFF = 4,       /* switched off by an operator (WSO2's OFF): unusable until ON */
} ft_health_state;

/* What ft_health_try_acquire grants. Non-zero means "send". */
typedef enum ft_health_grant {
    FT_HEALTH_DENIED = 0,
    FT_HEALTH_GRANTED = 1,
    FT_HEALTH_GRANTED_PROBE = 2, /* this call is the probe that decides the endpoint's fate */
} ft_health_grant;

/* The service-wide cap on suspended endpoints (owned by a health set, see health_set.h). A slot is
 * taken when an endpoint enters SUSPENDED and given back when it becomes ACTIVE again. */
typedef struct ft_suspension_cap {
    _Atomic int held; /* endpoints in SUSPENDED or PROBING */
    int limit;        /* immutable once endpoints are attached */
} ft_suspension_cap;

typedef struct ft_health_stats {
    uint64_t suspensions;    /* entries into SUSPENDED (including after a failed probe) */
    uint64_t probes;         /* probes let through */
    uint64_t probe_failures; /* probes that failed */
    uint64_t breaker_trips;  /* suspensions the breaker asked for */
    uint64_t cap_denials;    /* suspensions refused by the service-wide cap */
    int suspension_level;    /* n in the duration formula of the current/last suspension */
} ft_health_stats;

/* Embedded in the endpoint object; shared by all threads (see the file comment). Fields marked
 * [mu] are touched only under mu; the others are atomics readable without it. */
typedef struct ft_endpoint_health {
    ft_health_options opts; /* defaults filled in; immutable after init */
    pthread_mutex_t mu;     /* guards the [mu] fields and every state transition */
    _Atomic int state;      /* ft_health_state; written under mu */
    /* TIMEOUT: end of retry_delay; SUSPENDED: end of suspension; PROBING: when the probe is
     * presumed lost. Written under mu. */
    _Atomic int64_t usable_at_ns;
    int timeout_errors;         /* [mu] mark codes since entering TIMEOUT, beyond the first */
    int suspension_level;       /* [mu] n of the current progression; 0 when ACTIVE */
    bool holds_slot;            /* [mu] counted in cap->held */
    ft_suspension_cap *cap;     /* [mu] NULL: no cap */
    ft_breaker breaker;         /* [mu] */
    _Atomic uint64_t ewma_bits; /* peak-EWMA latency in us, a double's bits */
    _Atomic int64_t ewma_us;    /* the same as of its last sample, rounded: what p2c reads */
    _Atomic int64_t ewma_stamp_ns;
    /* Share of recent outcomes that were failures, in millionths: an average with the EWMA's time
     * weight and stamp, read by p2c so that an endpoint failing fast does not look cheap. */
    _Atomic int64_t failure_ppm;
    _Atomic uint64_t suspensions, probes, probe_failures, breaker_trips, cap_denials;
    /* The running suspension (and its probe) was asked by the breaker: a trip, or a failed probe
     * of such a suspension whose error was neither a mark nor a suspend code. Written under mu;
     * read lock-free by ft_health_breaker_open. */
    _Atomic bool by_breaker;
    /* A server's pushback (ftrpc_retry_after_ms > 0): no call goes to the endpoint before this
     * time, whatever its state, not even through the all-unusable fallback, except a first
     * attempt that finds every endpoint held (ft_health_try_acquire_past_hold); the state itself is
     * left alone (a hold is not a suspension: it neither grows nor counts against the cap). Raised
     * only (ft_health_hold); lock-free. */
    _Atomic int64_t hold_until_ns;
} ft_endpoint_health;

/* 0, or FTRPC_EINVAL with the reason logged (factor < 1, maximum < initial, bad codes, ...).
 * `opts` may be NULL (all defaults). Any thread. */
int ft_health_options_validate(const ft_health_options *opts);

/* Validates `opts` (NULL: defaults), copies it and starts ACTIVE. 0 or FTRPC_EINVAL (then `h`
 * needs no fini). `h` is owned by the caller; it must not be in use by another thread yet. */
int ft_health_init(ft_endpoint_health *h, const ft_health_options *opts);
/* Gives back a cap slot if it holds one. No other thread may touch `h` afterwards. */
void ft_health_fini(ft_endpoint_health *h);

/* Suspension n (n >= 1) under `opts` (NULL: defaults), in ms: min(initial * factor^(n-1), max). */
int64_t ft_health_suspension_duration_ms(const ft_health_options *opts, int n);

/* Whether a call may be sent now: ACTIVE, TIMEOUT past retry_delay, or SUSPENDED past its end (a
 * probe is available). Lock-free; a hint for load balancers: ft_health_try_acquire decides. */
bool ft_health_usable(const ft_endpoint_health *h, int64_t now_ns);

/* Claims the right to send one call. When a suspension has ended exactly one caller, across all
 * threads, gets FT_HEALTH_GRANTED_PROBE and the endpoint turns PROBING; the others are DENIED
 * until the probe reports. Lock-free unless a probe is up for grabs. */
ft_health_grant ft_health_try_acquire(ft_endpoint_health *h, int64_t now_ns);
/* Like try_acquire, but a server's pushback hold does not deny: for a first attempt that finds
 * every endpoint of its cluster held and goes to the one whose hold ends first, so that a hold
 * never stops a whole cluster's traffic (docs/overload-client.md). The health state decides as in
 * try_acquire (when it denies, the caller asks acquire_anyway_past_hold, as the fallback would). */
ft_health_grant ft_health_try_acquire_past_hold(ft_endpoint_health *h, int64_t now_ns);

/* Like try_acquire, but denies only an endpoint switched OFF: for the health set's all-unusable
 * fallback. A SUSPENDED endpoint turns PROBING early (this call is its probe), so that a success
 * brings it back. */
ft_health_grant ft_health_acquire_anyway(ft_endpoint_health *h, int64_t now_ns);
/* acquire_anyway past a hold: for the first attempt of try_acquire_past_hold when the state denies
 * it, which without the hold the all-unusable fallback would send (a hold adds no stop of its own).
 */
ft_health_grant ft_health_acquire_anyway_past_hold(ft_endpoint_health *h, int64_t now_ns);

/* Records the result of one call sent to this endpoint. `code`: 0 on success, a positive
 * business code, or the call's negative FTRPC_E* RPC error (see the file comment). `latency_us`
 * feeds the EWMA (negative: no sample). Any thread. */
void ft_health_on_result(ft_endpoint_health *h, int code, int64_t latency_us, int64_t now_ns);

/* Holds the endpoint until until_ns (a server's pushback): a later hold extends it, an earlier
 * one changes nothing. Any thread; lock-free. */
void ft_health_hold(ft_endpoint_health *h, int64_t until_ns);
/* Whether a hold is running at now_ns. Lock-free. */
bool ft_health_held(const ft_endpoint_health *h, int64_t now_ns);

/* Switches the endpoint OFF (off = true: from any state; a held cap slot is given back) or back ON
 * (off = false: OFF -> ACTIVE with its counters and breaker reset; other states are left alone).
 * Any thread. */
void ft_health_switch(ft_endpoint_health *h, bool off);
/* Whether the endpoint is open by its breaker at now_ns: SUSPENDED by a breaker trip and its
 * suspension not over, or PROBING after one with the probe still in the air. An endpoint
 * suspended by connection errors or timeouts is not (health_set.h says why the difference
 * matters). Lock-free. */
bool ft_health_breaker_open(const ft_endpoint_health *h, int64_t now_ns);

/* Current state (lock-free). */
ft_health_state ft_health_state_get(const ft_endpoint_health *h);
/* "ACTIVE", "TIMEOUT", "SUSPENDED", "PROBING", "OFF". */
const char *ft_health_state_name(ft_health_state state);
/* 0 when usable now; otherwise ns until ft_health_usable turns true (for PROBING: until the probe
 * is presumed lost). Lock-free. */
int64_t ft_health_usable_in_ns(const ft_endpoint_health *h, int64_t now_ns);
/* A snapshot of the counters. */
void ft_health_stats_get(ft_endpoint_health *h, ft_health_stats *out);

/* The failure ratio (0 .. 1) at now_ns: failure_ppm decayed like the EWMA since its last sample.
 * Lock-free. */
double ft_health_failure_ratio(const ft_endpoint_health *h, int64_t now_ns);

/* Peak-EWMA latency in us at now_ns (Finagle/linkerd): a slower sample replaces the value, a
 * faster one pulls it down with weight exp(-dt/decay), and with no samples it decays towards 0 so
 * that an idle endpoint gets tried again. Lock-free. */
double ft_health_ewma_us(const ft_endpoint_health *h, int64_t now_ns);

/* Moves `h` under `cap` (NULL: no cap). A held slot moves with it, even beyond the new limit, so
 * the count stays true. Used by health_set.c. Any thread. */
void ft_health_attach_cap(ft_endpoint_health *h, ft_suspension_cap *cap);
/* Detaches `h` from `cap` only if it is still attached to it (a newer set may have taken it over
 * meanwhile, when a service's endpoint list changes). Any thread. */
void ft_health_detach_cap(ft_endpoint_health *h, ft_suspension_cap *cap);

#endif
