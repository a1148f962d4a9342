/* ftrpc_client: calls methods of a service reached through a naming URL.
 *
 * A client is long-lived and thread-safe: any thread may call through it concurrently. Each call is
 * pinned to one IO thread (its "home loop") for its whole life; the client keeps at most one
 * connection per endpoint per IO thread, opened lazily and shared by all calls on that loop
 * (multiplexed by correlation id).
 *
 * Naming URLs: "list://host:port,host:port" (or a bare "host:port"). Other schemes come with the
 * discovery layer.
 */
#ifndef FTRPC_CLIENT_H
#define FTRPC_CLIENT_H

#include "ftrpc/buf.h"
#include "ftrpc/common.h"
#include "ftrpc/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ftrpc_client ftrpc_client;

/* What a call does when an attempt fails (docs/fault-tolerance.md). */
typedef enum {
    FTRPC_FAIL_DEFAULT = 0, /* per call: the client's mode; per client: FTRPC_FAILOVER */
    FTRPC_FAILFAST = 1,     /* one attempt; its error is the call's (rpcx, Kitex) */
    FTRPC_FAILOVER = 2,     /* retry on an endpoint not tried yet, when one is usable (brpc) */
    FTRPC_FAILTRY = 3,      /* retry on the same endpoint (rpcx Failtry) */
    FTRPC_FAILBACKUP = 4,   /* send a backup request after a delay (backup-request issue);
                             * until that lands it behaves as FTRPC_FAILOVER */
} ftrpc_fail_mode;

/* `retries` value for "no retry at all" (0 means the default, 3). */
#define FTRPC_NO_RETRY (-1)
#define FTRPC_MAX_CODES 16

typedef enum {
    FTRPC_BACKOFF_NONE = 0,        /* default: retry at once */
    FTRPC_BACKOFF_FIXED = 1,       /* wait initial_ms before each retry */
    FTRPC_BACKOFF_EXPONENTIAL = 2, /* full jitter: uniform in [0, min(max_ms, initial_ms *
                                    * multiplier^(n-1))] before retry n (AWS's "full jitter") */
} ftrpc_backoff_kind;

typedef struct ftrpc_backoff {
    ftrpc_backoff_kind kind;
    int initial_ms;    /* default 10 */
    double multiplier; /* default 2 */
    int max_ms;        /* default 1000 */
} ftrpc_backoff;

/* Endpoint health (docs/endpoint-health.md). Zero means the default shown. */
typedef struct ftrpc_health_options {
    int64_t initial_suspension_ms; /* default 1000 (brpc 100, WSO2/Envoy 30000); -1: never suspend */
    double progression_factor;     /* default 2 (brpc doubles; WSO2 1) */
    int64_t maximum_suspension_ms; /* default 30000 (brpc; Envoy 300000) */
    int retries_before_suspension; /* default 0 (WSO2): the first timeout-class error suspends */
    int64_t retry_delay_ms;        /* default 0 (WSO2): a TIMEOUT endpoint stays usable */
    /* zero-terminated; default {ERPCTIMEDOUT, EFAILEDSOCKET, EEOF}: ACTIVE -> TIMEOUT */
    int mark_codes[FTRPC_MAX_CODES];
    /* zero-terminated; default {ECONNREFUSED, ECONNECT, ETLS, ELOGOFF}: suspend at once */
    int suspend_codes[FTRPC_MAX_CODES];
    double max_suspended_ratio;    /* default 0.5: share of a service's endpoints suspended at once */
    double breaker_error_ratio;    /* default 0.5 (Hystrix); the breaker trips at or above it */
    int breaker_min_calls;         /* default 20 (Hystrix) calls in the window before a verdict */
    int64_t breaker_window_ms;     /* default 10000 (Hystrix) */
} ftrpc_health_options;

/* Decides whether a business error (code >= FTRPC_BUSINESS_CODE_MIN or negative on the wire) is
 * worth a retry; business errors are never retried without one. Any IO thread; must not block. */
typedef int (*ftrpc_retry_classifier)(int business_code, const char *text, void *arg);

typedef struct ftrpc_client_options {
    ftrpc_runtime *runtime;     /* default NULL: the shared default runtime */
    int timeout_ms;             /* default 1000: the whole call's deadline, over all attempts
                                 * (brpc: 500 ms) */
    int connect_timeout_ms;     /* default 200, as brpc */
    uint32_t max_body_size;     /* default 64 MiB: larger responses close the connection */
    size_t max_unwritten_bytes; /* default 64 MiB per connection: past it calls fail EOVERCROWDED */
    ftrpc_fail_mode fail_mode;  /* default FTRPC_FAILOVER */
    int retries;                /* default 3 (at most 4 attempts); FTRPC_NO_RETRY: none */
    int attempt_timeout_ms;     /* default 0: an attempt is bounded by the call's deadline only */
    ftrpc_backoff backoff;      /* default none */
    /* RPC error codes (negative FTRPC_E*) that end a call's retries at once, zero-terminated
     * (WSO2 disabledErrorCodes). Default none. */
    int no_retry_codes[FTRPC_MAX_CODES];
    ftrpc_retry_classifier retry_classifier; /* default NULL: business errors are not retried */
    void *retry_classifier_arg;
    const char *lb; /* "random", "rr", "wrr", "wrandom", "chash", "p2c" (default), "priority" */
    ftrpc_health_options health;
    /* The retry budget shared by retries and backup requests (gRPC retry throttling, Finagle's
     * RetryBudget): retries in the last 10 s may not exceed ratio x calls + min_per_sec x 10. */
    double retry_budget_ratio;    /* default 0.2 */
    int retry_budget_min_per_sec; /* default 10; -1: no floor */
} ftrpc_client_options;

typedef struct ftrpc_call_options {
    int timeout_ms;             /* default 0: the client's timeout_ms */
    int64_t log_id;             /* default 0: not sent */
    ftrpc_fail_mode fail_mode;  /* default: the client's */
    int retries;                /* default 0: the client's; FTRPC_NO_RETRY: none */
    int attempt_timeout_ms;     /* default 0: the client's */
    const void *hash_key;       /* consistent hashing ("chash"): the request's key */
    size_t hash_key_len;
} ftrpc_call_options;

typedef enum {
    FTRPC_RESULT_OK = 0,
    FTRPC_RESULT_RPC_ERROR = 1,      /* transport, timeout, no endpoint, overload, protocol... */
    FTRPC_RESULT_BUSINESS_ERROR = 2, /* the handler failed the call with its own code */
} ftrpc_result_kind;

/* The outcome of one call. Filled by the library; release with ftrpc_result_fini(). */
typedef struct ftrpc_result {
    ftrpc_result_kind kind;
    int code;               /* 0; a negative FTRPC_E* (RPC error); or the handler's code (business) */
    char error_text[256];   /* "" on success */
    ftrpc_buf *response;    /* the response payload on success (never NULL then); owned by the
                             * result: steal it by setting the field to NULL */
    ftrpc_buf *attachment;  /* idem, possibly empty */
    int attempts;           /* requests sent for this call (1 without retries), including any
                             * whose connection never opened */
    char endpoint[64];      /* "ip:port" of the endpoint that answered (also with the error it
                             * sent), "" if none did (timeout, connection error, ...) */
    int64_t latency_us;     /* from the call's start to its completion */
} ftrpc_result;

/* Frees what the result owns (response, attachment). The struct itself is the caller's. */
FTRPC_API void ftrpc_result_fini(ftrpc_result *result);

/* Makes a client for naming_url. opts may be NULL. On success *out is the caller's. */
FTRPC_API int ftrpc_client_new(const char *naming_url, const ftrpc_client_options *opts,
                               ftrpc_client **out);
/* Frees the client. Calls still in flight complete with FTRPC_ESTOPPED before it returns; their
 * callbacks run on IO threads meanwhile. Never call it from an IO thread or from a callback. */
FTRPC_API void ftrpc_client_free(ftrpc_client *client);

/* Synchronous call: blocks until the call completes and fills *result (always, also on error).
 * Returns 0 on success, the negative FTRPC_E* code on an RPC error, and FTRPC_EBUSINESS on a
 * business error (result->code then holds the handler's code). request and attachment may be
 * NULL; their bytes are shared, not copied. Refused with FTRPC_EIOTHREAD on an IO thread (it would
 * deadlock); *result is filled then too. */
FTRPC_API int ftrpc_call(ftrpc_client *client, const char *service, const char *method,
                         const ftrpc_buf *request, const ftrpc_buf *attachment,
                         const ftrpc_call_options *opts, ftrpc_result *result);

/* Completion of an async call. Runs exactly once, on an IO thread; it must not block. `result` is
 * valid only during the callback (steal its buffers by setting the pointers to NULL). */
typedef void (*ftrpc_call_cb)(ftrpc_result *result, void *arg);

/* Asynchronous call: returns 0 and cb runs exactly once later (success, error, timeout alike), or
 * returns an error at once and cb never runs. request/attachment are shared before it returns:
 * the caller may free its buffers right after. Any thread, including IO threads and callbacks. */
FTRPC_API int ftrpc_call_async(ftrpc_client *client, const char *service, const char *method,
                               const ftrpc_buf *request, const ftrpc_buf *attachment,
                               const ftrpc_call_options *opts, ftrpc_call_cb cb, void *arg);

#ifdef __cplusplus
}
#endif
#endif
