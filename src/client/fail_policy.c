/* The fail-mode decisions (fail_policy.h): pure functions of a call's retry state, the failed
 * attempt's circumstances, the retry budget and the time given. */
#include "client/fail_policy.h"

#include <math.h>

#include "base/clock.h"

int ft_fail_free_resends(ftrpc_fail_mode mode, size_t endpoints)
{
    if (mode == FTRPC_FAILFAST || endpoints == 0) return 0;
    if (mode == FTRPC_FAILTRY) return 1;
    return endpoints > INT32_MAX ? INT32_MAX : (int)endpoints;
}

void ft_fail_classify_wire(int32_t wire, ftrpc_result_kind *kind, int *code)
{
    if (wire == 0) {
        *kind = FTRPC_RESULT_OK;
        *code = 0;
    } else if (wire >= 1000 && wire < FTRPC_BUSINESS_CODE_MIN) {
        *kind = FTRPC_RESULT_RPC_ERROR;
        *code = -wire;
    } else if (wire > 0 && wire < 1000) {
        /* a system errno from a brpc server: an RPC error without an ftrpc equivalent */
        *kind = FTRPC_RESULT_RPC_ERROR;
        *code = FTRPC_EINTERNAL;
    } else {
        *kind = FTRPC_RESULT_BUSINESS_ERROR;
        *code = wire;
    }
}

int ft_fail_health_code(ftrpc_result_kind kind, int code)
{
    if (kind == FTRPC_RESULT_OK) return 0;
    if (kind == FTRPC_RESULT_BUSINESS_ERROR) return code > 0 ? code : 1; /* the endpoint answered */
    return code;
}

static int listed(const int *codes, int code)
{
    for (int i = 0; i < FTRPC_MAX_CODES && codes[i]; i++)
        if (codes[i] == code) return 1;
    return 0;
}

/* RPC errors that a retry cannot cure: the request itself is wrong, or the client is going away. */
static int is_retryable_rpc(const ftrpc_client_options *o, int code)
{
    if (listed(o->no_retry_codes, code)) return 0;
    switch (code) {
    case FTRPC_ENOSERVICE:
    case FTRPC_ENOMETHOD:
    case FTRPC_EREQUEST:
    case FTRPC_ERPCAUTH:
    case FTRPC_ERESPONSE:
    case FTRPC_ETLS:
    case FTRPC_EINVAL:
    case FTRPC_ENOMEM:
    case FTRPC_ESTOPPED:
    case FTRPC_EIOTHREAD:
    case FTRPC_ECANCELED:
    case FTRPC_ENOENDPOINT:
    case FTRPC_EBREAKER:
        return 0;
    default:
        return 1;
    }
}

/* Errors no per-endpoint list can make retryable: the call itself is wrong or going away. */
static int never_retryable(int code)
{
    return code == FTRPC_EINVAL || code == FTRPC_ENOMEM || code == FTRPC_ESTOPPED ||
           code == FTRPC_EIOTHREAD || code == FTRPC_ECANCELED || code == FTRPC_ENOENDPOINT;
}

int ft_fail_retryable(const ftrpc_client_options *o, const ftrpc_endpoint_codes *ep,
                      ftrpc_result_kind kind, int code, const char *text)
{
    if (kind == FTRPC_RESULT_BUSINESS_ERROR)
        return o->retry_classifier && o->retry_classifier(code, text, o->retry_classifier_arg);
    if (ep && listed(ep->no_retry_codes, code)) return 0; /* "Non Retry" wins */
    if (ep && listed(ep->retry_codes, code)) return !never_retryable(code);
    return is_retryable_rpc(o, code);
}

int ft_fail_reuse_endpoint(const ft_fail_state *st, int *target)
{
    if ((st->mode != FTRPC_FAILTRY && !st->reuse_next) || st->last_endpoint < 0) return -1;
    *target = st->last_target;
    return st->last_endpoint;
}

size_t ft_fail_excluded(const ft_fail_state *st, const ft_fail_tried *tried, int target,
                        size_t *out)
{
    size_t n = 0;
    if (st->mode != FTRPC_FAILTRY)
        for (size_t i = 0; i < st->ntried; i++)
            if (tried->target[i] == target) out[n++] = tried->endpoint[i];
    return n;
}

void ft_fail_note_sent(ft_fail_state *st, ft_fail_tried *tried, int endpoint, int target)
{
    st->reuse_next = 0;
    st->last_endpoint = endpoint;
    st->last_target = target;
    if (st->mode == FTRPC_FAILTRY || st->ntried >= FT_LB_MAX_EXCLUDED) return;
    for (size_t i = 0; i < st->ntried; i++)
        if (tried->endpoint[i] == (size_t)endpoint && tried->target[i] == target) return;
    tried->target[st->ntried] = target;
    tried->endpoint[st->ntried++] = (size_t)endpoint;
}

int64_t ft_fail_backoff_ns(const ftrpc_backoff *b, int step, double u)
{
    switch (b->kind) {
    case FTRPC_BACKOFF_FIXED:
        return (int64_t)b->initial_ms * FT_NS_PER_MS;
    case FTRPC_BACKOFF_EXPONENTIAL: {
        double cap = b->initial_ms * pow(b->multiplier, step - 1);
        if (cap > b->max_ms) cap = b->max_ms;
        return (int64_t)(u * cap * (double)FT_NS_PER_MS); /* full jitter */
    }
    default:
        return 0;
    }
}

/* A uniform draw in [0, 1) from the top 53 bits, which a double holds exactly. */
ft_fail_decision ft_fail_after_error(ft_fail_state *st, const ft_fail_event *ev,
                                     const ftrpc_client_options *o, ft_retry_budget *budget,
                                     ft_rand *rng)
{
    const ftrpc_backoff *backoff = &o->backoff;
    ft_fail_decision d = {.action = FT_FAIL_COMPLETE};
    if (ev->in_flight > 0) {
        d.action = FT_FAIL_WAIT;
        return d;
    }
    if (!ft_fail_retryable(o, ev->endpoint_codes, ev->kind, ev->code, ev->text) ||
        st->mode == FTRPC_FAILFAST || ev->stopping || ev->retries_stopped)
        return d;
    int free_resend = ev->never_on_wire && st->free_resends_left > 0;
    /* WSO2: an endpoint in TIMEOUT is retried, retry_delay apart, before the call moves on; a wait
     * that would reach the deadline leaves the call to the fail mode's own rule instead */
    int same = !free_resend && ev->in_timeout && st->mode != FTRPC_FAILTRY &&
               st->timeout_retries < ev->timeout_retries_max &&
               ev->timeout_usable_at_ns < ev->deadline_ns;
    if (!free_resend && !same && st->retries_left <= 0) return d;
    /* the re-send goes to an endpoint not tried yet (failtry goes back to the same one) */
    int costs_nothing = free_resend && ev->untried_usable && st->mode != FTRPC_FAILTRY;
    if (!costs_nothing && !ft_retry_budget_try_spend(budget, ev->now_ns)) {
        d.budget_refused = 1;
        return d;
    }
    if (free_resend)
        st->free_resends_left--;
    else if (same)
        st->timeout_retries++;
    else
        st->retries_left--;
    st->retries_done++;
    d.retry_spent = 1;
    if (same) {
        st->reuse_next = 1;
        d.same_endpoint = 1;
        if (ev->timeout_usable_at_ns > ev->now_ns) {
            d.action = FT_FAIL_RETRY_AT;
            d.at_ns = ev->timeout_usable_at_ns;
        } else {
            d.action = FT_FAIL_RETRY_NOW;
        }
        return d;
    }
    /* a request that never left has nothing to wait for: it is re-sent at once */
    int64_t delay = 0;
    if (!free_resend) {
        int step = ++st->backoff_step;
        double u = backoff->kind == FTRPC_BACKOFF_EXPONENTIAL ? ft_rand_uniform(rng) : 0;
        delay = ft_fail_backoff_ns(backoff, step, u);
    }
    if (delay <= 0) {
        d.action = FT_FAIL_RETRY_NOW;
    } else if (ev->now_ns + delay < ev->deadline_ns) {
        d.action = FT_FAIL_RETRY_AT;
        d.at_ns = ev->now_ns + delay;
    } /* else never back off past the deadline: complete */
    return d;
}

ft_fail_decision ft_fail_pace_retry(int64_t now_ns, int64_t usable_at_ns, int64_t deadline_ns)
{
    ft_fail_decision d = {.action = FT_FAIL_COMPLETE};
    if (usable_at_ns <= now_ns) {
        d.action = FT_FAIL_RETRY_NOW;
    } else if (usable_at_ns < deadline_ns) {
        d.action = FT_FAIL_RETRY_AT;
        d.at_ns = usable_at_ns;
    }
    return d;
}

int ft_fail_hedge_after_error(const ft_fail_state *st, const ft_fail_event *ev,
                              const ftrpc_client_options *o, int attempts, int max_copies)
{
    return st->mode == FTRPC_FAILBACKUP && ev->in_flight > 0 && attempts < max_copies &&
           st->retries_done == 0 && !ev->stopping &&
           ft_fail_retryable(o, ev->endpoint_codes, ev->kind, ev->code, ev->text);
}

ft_backup_verdict ft_fail_backup(ft_fail_state *st, int in_flight, int attempts, int max_copies,
                                 int counts_as_retry, ftrpc_backup_policy *policy,
                                 const char *service, const char *method, ft_retry_budget *budget,
                                 int64_t now_ns)
{
    /* only copies of a call still hedging are raced; a call already retrying has moved on */
    if (in_flight < 1 || attempts >= max_copies || st->retries_done > 0) return FT_BACKUP_SKIP;
    /* brpc: "backup request consumes one retry", and max_retry 0 leaves none for a backup */
    if (counts_as_retry && st->retries_left <= 0) return FT_BACKUP_SKIP;
    if (policy && policy->should_backup && !policy->should_backup(policy, service, method))
        return FT_BACKUP_SKIP;
    if (!budget || ft_retry_budget_try_spend(budget, now_ns)) {
        if (counts_as_retry) st->retries_left--;
        return FT_BACKUP_SEND;
    }
    /* a policy that counted this backup when it agreed must not count it as sent */
    if (policy && policy->on_backup_refused) policy->on_backup_refused(policy, service, method);
    return FT_BACKUP_REFUSED;
}

int ft_fail_fallback_applies(const ftrpc_fallback *fb, const ftrpc_result *r)
{
    if (!fb->fn || r->code == FTRPC_ECANCELED) return 0;
    switch (fb->kind) {
    case FTRPC_FALLBACK_ERRORS_AND_RESPONSES:
        return 1;
    case FTRPC_FALLBACK_ERRORS:
        return r->kind != FTRPC_RESULT_OK;
    case FTRPC_FALLBACK_TIMEOUTS_AND_BREAKER:
        return r->kind == FTRPC_RESULT_RPC_ERROR &&
               (r->code == FTRPC_ERPCTIMEDOUT || r->code == FTRPC_EBREAKER ||
                r->code == FTRPC_ENOENDPOINT);
    default:
        return 0;
    }
}
