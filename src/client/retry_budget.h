/* Retry budget: one per client, shared by retries and backup requests, so that a sick service is
 * not hit by a retry storm on top of its normal load (gRPC retry throttling, Finagle RetryBudget).
 *
 * Rule: a retry may be spent while
 *     retries in the window < ratio * requests in the window + min_per_sec * window seconds
 * i.e. retries stay within `ratio` of recent traffic, plus a small floor so that a client with
 * little traffic can still retry. The window slides in `buckets` steps; nothing decays otherwise.
 *
 * Invariants: requests and retries are counted per bucket in one 64-bit atomic each (epoch in the
 * high half, count in the low half), so a bucket is recycled and counted with a single CAS and no
 * count is lost on a bucket change. Requests, counted once per call, are striped like the metrics
 * (metrics/counter.h): an IO thread that owns its stripe updates its own ring with a load and a
 * store, no CAS; the window's count sums the stripes (only retries read it, and they are rare).
 * Check-then-spend is not one atomic step: under N racing spenders the budget may be overdrawn by
 * at most N-1 retries; that is the price of no lock.
 *
 * Threads: every function may be called from any thread after init; init/fini by the owner while
 * no other thread uses it. Time comes from the caller (now_ns from the client's ft_clock).
 *
 * Not here: whether an error is retryable or which endpoint a retry goes to (the fail-mode engine).
 */
#ifndef FT_CLIENT_RETRY_BUDGET_H
#define FT_CLIENT_RETRY_BUDGET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "metrics/counter.h"

#define FT_RETRY_BUDGET_MAX_BUCKETS 60
/* min_per_sec value for "no floor": retries only within ratio * requests. */
#define FT_RETRY_BUDGET_NO_FLOOR (-1)
/* ratio value for "no budget": every retry and backup may be spent, nothing is counted (the
 * client's retry_budget_ratio -1: retries are then bounded only by `retries` per call). */
#define FT_RETRY_BUDGET_OFF (-1.0)

/* Zero means default. Defaults are Finagle's RetryBudget (ttl 10 s, percentCanRetry 0.2,
 * minRetriesPerSec 10): 20% extra load is what a healthy service absorbs without noticing, and a
 * floor of 10/s keeps a quiet client (a CLI, a cron job) able to retry at all. */
typedef struct ft_retry_budget_options {
    double ratio;      /* retries per request; (0, 1]. Default 0.2; FT_RETRY_BUDGET_OFF: none */
    int min_per_sec;   /* floor, retries per second; default 10; FT_RETRY_BUDGET_NO_FLOOR: none */
    int64_t window_ms; /* default 10000 */
    int buckets;       /* window granularity; default 10 (1 s); 1..60 */
} ft_retry_budget_options;

typedef struct ft_retry_budget {
    ft_retry_budget_options opts; /* defaults filled in; immutable */
    bool off;                     /* ratio FT_RETRY_BUDGET_OFF: spends always succeed */
    int64_t bucket_ns;
    int64_t floor; /* min_per_sec * window seconds */
    /* one ring (epoch << 32 | count) and one total per metrics stripe; a row is ~500 bytes, so
     * stripes do not share cache lines (no alignment asked of the embedding struct) */
    struct ft_budget_stripe {
        _Atomic uint64_t ring[FT_RETRY_BUDGET_MAX_BUCKETS];
        _Atomic uint64_t total;
        /* the owner's last bucket, [from_ns, until_ns): spares it a division per request; only
         * the stripe's owner reads or writes these */
        int64_t from_ns, until_ns;
        uint32_t epoch;
    } requests[FT_COUNTER_STRIPES];
    _Atomic uint64_t retries[FT_RETRY_BUDGET_MAX_BUCKETS];
    _Atomic uint64_t total_retries, total_exhausted;
} ft_retry_budget;

typedef struct ft_retry_budget_stats {
    uint64_t requests;  /* ft_retry_budget_on_request calls */
    uint64_t retries;   /* successful spends */
    uint64_t exhausted; /* spends refused: the budget was empty */
} ft_retry_budget_stats;

/* 0, or FTRPC_EINVAL with the reason logged. `opts` may be NULL. */
int ft_retry_budget_options_validate(const ft_retry_budget_options *opts);
/* 0 or FTRPC_EINVAL. `b` is owned by the caller (embedded in the client). */
int ft_retry_budget_init(ft_retry_budget *b, const ft_retry_budget_options *opts);
void ft_retry_budget_fini(ft_retry_budget *b);

/* Counts one original call (not its retries or backups). Lock-free. */
void ft_retry_budget_on_request(ft_retry_budget *b, int64_t now_ns);
/* Spends one retry or backup request. False when the budget is empty (counted as exhausted);
 * the caller then gives up on retrying. Lock-free. */
bool ft_retry_budget_try_spend(ft_retry_budget *b, int64_t now_ns);
/* Retries that could be spent now (may be negative after racing overdraws). */
int64_t ft_retry_budget_balance(ft_retry_budget *b, int64_t now_ns);
void ft_retry_budget_stats_get(ft_retry_budget *b, ft_retry_budget_stats *out);

#endif
