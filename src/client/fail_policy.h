/* The fail-mode decisions of a call, apart from its IO: which errors a retry may cure, where a
 * retry goes, whether the call retries now, after a backoff, or gives up, whether a backup is
 * sent, and whether the fallback sees the outcome. call.c asks and acts (sends, arms timers,
 * completes); nothing here touches a connection, a loop, a timer or a socket, and time comes in
 * as now_ns, so tests drive every fail mode on a manual clock (tests/unit/test_fail_policy.c).
 *
 * The rules (docs/fault-tolerance.md): failfast ends the call at its first failure; failover
 * retries on an endpoint the call has not tried (per target); failtry retries on the same one;
 * failbackup races the first attempt with up to max_attempts - 1 copies (one backup by default;
 * a copy at once after a retryable error, gRPC's hedging) and retries failures as failover does.
 * Retries are bounded by `retries` (which a backup uses up too under brpc's accounting), the
 * client's retry budget (which backups draw on when the client says so) and the
 * deadline: a backoff that would end at or past it ends the call instead. A request that never
 * reached the wire (its connection was refused) is re-sent without using up a retry, once per
 * endpoint the call may go to (ft_fail_free_resends: failtry has one). Such a re-send draws on the
 * budget only when no endpoint the call has not tried is usable: while one is, the re-send goes
 * there and costs no server anything (the refusing one is suspended, endpoint_health.h); when
 * none is, the budget keeps a dead cluster from being hammered.
 *
 * Threads: an ft_fail_state belongs to its call's loop; the budget is shared (retry_budget.h).
 */
#ifndef FT_CLIENT_FAIL_POLICY_H
#define FT_CLIENT_FAIL_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "base/rand.h"
#include "client/retry_budget.h"
#include "cluster/lb.h"
#include "ftrpc/client.h"

/* A call's retry state: zeroed with the call (call.c, call_zero), then set by ft_call_make. */
typedef struct ft_fail_state {
    ftrpc_fail_mode mode;
    int retries_left;
    int free_resends_left; /* re-sends of requests that never reached the wire */
    int retries_done;      /* retries and free re-sends spent */
    int backoff_step;      /* backoffs drawn so far: the exponent of the next one */
    int last_endpoint;     /* of the latest attempt sent (-1: none yet): failtry goes back to it */
    int last_target;       /* and its target */
    int timeout_retries;   /* retries spent on an endpoint in TIMEOUT (health.retry_in_timeout) */
    int reuse_next;        /* the next attempt goes back to last_endpoint (a TIMEOUT retry) */
    size_t ntried;         /* entries of ft_fail_tried in use */
} ft_fail_state;

/* The endpoints a call tried, each with its target ([0, ft_fail_state.ntried)): failover and
 * failbackup exclude them from the next pick on that target. Kept apart from ft_fail_state so that
 * a new call need not zero them: an entry is written before it is counted. */
typedef struct ft_fail_tried {
    size_t endpoint[FT_LB_MAX_EXCLUDED];
    int target[FT_LB_MAX_EXCLUDED];
} ft_fail_tried;

/* How many free re-sends (of requests that never reached the wire) a call of `mode` gets over a
 * service of `endpoints`: one per endpoint it may go to. failtry goes back to one endpoint, so one
 * (a second refusal there is a certain verdict, not worth an immediate re-send); failfast none. */
int ft_fail_free_resends(ftrpc_fail_mode mode, size_t endpoints);

/* A wire error_code as the result sees it (see FTRPC_BUSINESS_CODE_MIN in common.h). */
void ft_fail_classify_wire(int32_t wire, ftrpc_result_kind *kind, int *code);
/* An outcome as ft_health_on_result wants it: 0, a positive business code (the endpoint answered),
 * or a negative RPC error. */
int ft_fail_health_code(ftrpc_result_kind kind, int code);
/* Whether a retry may cure the failure: an RPC error unless the request itself is wrong, the
 * client is going away, or `no_retry_codes` names it; a business error only when the client's
 * retry_classifier says so. `ep` (may be NULL) is the failing endpoint's own codes, judged first:
 * its no_retry_codes end the retries, its retry_codes allow one whatever the client-wide list
 * says (but never for the errors that mean the request is wrong or the client is going away). */
int ft_fail_retryable(const ftrpc_client_options *o, const ftrpc_endpoint_codes *ep,
                      ftrpc_result_kind kind, int code, const char *text);

/* failtry with an attempt already sent, or a retry of an endpoint in TIMEOUT
 * (ft_fail_decision.same_endpoint): the endpoint to go back to (its target in *target); -1
 * otherwise, and the balancer picks. */
int ft_fail_reuse_endpoint(const ft_fail_state *st, int *target);
/* The endpoints of `target` the next pick excludes (none in failtry) into out[FT_LB_MAX_EXCLUDED];
 * returns how many. */
size_t ft_fail_excluded(const ft_fail_state *st, const ft_fail_tried *tried, int target,
                        size_t *out);
/* An attempt goes to (endpoint, target): remembered for failtry, and added once to the tried list
 * (while it has room) for the others. */
void ft_fail_note_sent(ft_fail_state *st, ft_fail_tried *tried, int endpoint, int target);

/* Backoff before retry `step` (from 1), in ns; u in [0, 1) is the jitter's uniform draw. */
int64_t ft_fail_backoff_ns(const ftrpc_backoff *b, int step, double u);

/* What a failed attempt leads to. */
typedef enum ft_fail_action {
    FT_FAIL_WAIT,      /* the other copy of a failbackup race is still out: its outcome decides */
    FT_FAIL_COMPLETE,  /* give up: the call completes with its last error */
    FT_FAIL_RETRY_NOW, /* send the next attempt now */
    FT_FAIL_RETRY_AT,  /* send it at `at_ns`, after a backoff */
} ft_fail_action;

typedef struct ft_fail_decision {
    ft_fail_action action;
    int64_t at_ns;      /* FT_FAIL_RETRY_AT */
    int retry_spent;    /* a retry was taken from `retries` (or a free re-send) and, unless it
                         * was a free re-send to an untried usable endpoint, from the budget */
    int budget_refused; /* COMPLETE because the budget was empty (the budget counted it) */
    int same_endpoint;  /* the retry goes back to the endpoint in TIMEOUT (not a `retries` one) */
} ft_fail_decision;

/* One failed attempt (already settled) and the call's circumstances. */
typedef struct ft_fail_event {
    ftrpc_result_kind kind;
    int code;
    const char *text;   /* for the retry classifier */
    int never_on_wire;  /* the request never left: its connection was refused */
    int untried_usable; /* an endpoint this call has not tried is usable (asked when never_on_wire)
                         */
    int in_flight;      /* the call's attempts still in flight */
    /* The failed attempt's endpoint (zero: nothing known). */
    const ftrpc_endpoint_codes *endpoint_codes; /* its own codes (ftrpc_client_options), or NULL */
    /* health.retry_in_timeout applies: the attempt's result left its endpoint in TIMEOUT, usable
     * again at timeout_usable_at_ns; up to timeout_retries_max (retries_before_suspension) such
     * retries a call */
    int in_timeout;
    int64_t timeout_usable_at_ns;
    int timeout_retries_max;
    int stopping;        /* the client is being freed */
    int retries_stopped; /* the server's pushback said -1 (ftrpc_retry_after_ms): no retry */
    int64_t now_ns;
    int64_t deadline_ns;
} ft_fail_event;

/* Decides, and spends what a retry costs (st's counters, one unit of the budget). `o` gives what
 * is retryable (ft_fail_retryable: asked only once no other copy is out) and the backoff; `rng`
 * the backoff's jitter. */
ft_fail_decision ft_fail_after_error(ft_fail_state *st, const ft_fail_event *ev,
                                     const ftrpc_client_options *o, ft_retry_budget *budget,
                                     ft_rand *rng);

/* gRPC A6's hedging: a copy of a failbackup call failed (ft_fail_after_error said WAIT, other
 * copies are out) with an error a retry may cure, fewer than max_copies were sent and no retry was
 * spent: 1 when the next copy goes at once instead of after the delay (ft_fail_backup then rules
 * on it as on a timed one). A fatal error leaves the other copies to decide, as before. */
int ft_fail_hedge_after_error(const ft_fail_state *st, const ft_fail_event *ev,
                              const ftrpc_client_options *o, int attempts, int max_copies);

/* A retry found no usable endpoint but one in TIMEOUT whose retry delay ends at usable_at_ns (the
 * soonest of the service): RETRY_AT that moment when it comes before the deadline, else COMPLETE
 * (waiting could only end in the deadline). retry_delay_ms paces retries this way instead of
 * letting them through at once. */
ft_fail_decision ft_fail_pace_retry(int64_t now_ns, int64_t usable_at_ns, int64_t deadline_ns);

/* What the backup timer leads to. */
typedef enum ft_backup_verdict {
    FT_BACKUP_SKIP,    /* no copy out, all copies sent, a retry spent, no retry left to use, or
                        * the policy declined */
    FT_BACKUP_SEND,    /* send it (the budget, if any, paid for it) */
    FT_BACKUP_REFUSED, /* the budget was empty; the policy was told (on_backup_refused) */
} ft_backup_verdict;

/* Only a call still hedging is raced: a copy still waiting, fewer than max_copies sent (2: one
 * backup, brpc's rule; up to 5 with max_attempts), and no retry spent (a call already retrying
 * has moved on). With counts_as_retry (brpc's accounting) each copy needs a retry left in st and
 * uses it up; `policy` (may be NULL) may decline; `budget` (NULL: backups draw on none) pays. */
ft_backup_verdict ft_fail_backup(ft_fail_state *st, int in_flight, int attempts, int max_copies,
                                 int counts_as_retry, ftrpc_backup_policy *policy,
                                 const char *service, const char *method, ft_retry_budget *budget,
                                 int64_t now_ns);

/* Whether the call's fallback sees the outcome r: a function set, its kind covering r, and the
 * call not cancelled (a caller that cancelled wants no answer in its place). */
int ft_fail_fallback_applies(const ftrpc_fallback *fb, const ftrpc_result *r);

#endif
