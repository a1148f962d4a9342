/* ftrpc_client: calls methods of a service reached through a naming URL.
 *
 * A client is long-lived and thread-safe: any thread may call through it concurrently. Each call is
 * pinned to one IO thread (its "home loop") for its whole life; the client keeps at most one
 * connection per endpoint per IO thread, opened lazily and shared by all calls on that loop
 * (multiplexed by correlation id).
 *
 * Naming URLs (docs/discovery.md): "list://host:port,host:port" (or a bare "host:port[,...]"),
 * "file:///path", "dir:///folder?service=NAME" (the embedded registry), "etcd://...". The client
 * keeps a cached view of the endpoints that survives registry outages.
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
typedef struct ftrpc_result ftrpc_result;
/* A call a server is serving (ftrpc/server.h): the parent of the calls its handler makes. */
typedef struct ftrpc_server_call ftrpc_server_call;

/* A backup-request policy (brpc's BackupRequestPolicy, docs/backup-requests.md): embed this struct
 * first in your own and fill the hooks. A policy takes priority over backup_request_ms and
 * backup_request_us. The client
 * does not own it: it must outlive every client that uses it. Hooks run on IO threads,
 * concurrently, and must not block. */
typedef struct ftrpc_backup_policy ftrpc_backup_policy;
struct ftrpc_backup_policy {
    /* The backup delay for this call in ms; < 0: no backup for it. Not asked when backup_delay_us
     * is set. */
    int (*backup_delay_ms)(ftrpc_backup_policy *self, const char *service, const char *method);
    /* Asked when the delay has passed and the first attempt is still out: send the backup now? */
    int (*should_backup)(ftrpc_backup_policy *self, const char *service, const char *method);
    /* Told at the end of every call (backup or not), with its result as the service gave it,
     * before any fallback replaced it. May be NULL. */
    void (*on_call_end)(ftrpc_backup_policy *self, const ftrpc_result *result);
    /* Frees the policy (ftrpc_backup_policy_free calls it). May be NULL. */
    void (*destroy)(ftrpc_backup_policy *self);
    /* Told when a backup should_backup agreed to was not sent after all, because the client's
     * retry budget refused it: a policy that counts backups when it decides takes it back here.
     * May be NULL. (Last, so that policies written before it still initialise in order.) */
    void (*on_backup_refused)(ftrpc_backup_policy *self, const char *service, const char *method);
    /* The backup delay for this call in microseconds, for delays under a millisecond; < 0: no
     * backup for it. When set it is asked instead of backup_delay_ms. May be NULL. (It took the
     * first reserved slot: the struct's size and the other hooks' places are unchanged.) */
    int64_t (*backup_delay_us)(ftrpc_backup_policy *self, const char *service, const char *method);
    /* Zero (a designated initializer leaves them so): hooks of later versions take these slots,
     * so that a policy built against this header keeps its layout. */
    void (*reserved[5])(void);
};

/* brpc's RateLimitedBackupPolicy: at most max_backup_ratio of the calls in a sliding window get a
 * backup. Backups are counted when decided and calls when they end, so the limit reacts at once
 * to a latency spike. */
typedef struct ftrpc_backup_policy_ratelimited_options {
    int backup_request_ms;   /* default 0 (or -1): the call's or client's delay (backup_request_us
                              * or backup_request_ms) */
    double max_backup_ratio; /* (0, 1], default 0.1 */
    int window_size_seconds; /* [1, 3600], default 10 */
    int update_interval_seconds; /* >= 1, default 5: how often the window's sums are refreshed */
} ftrpc_backup_policy_ratelimited_options;

/* Hedging at a latency quantile ("The Tail at Scale"): the delay is the p(1 - max_extra_load)
 * latency of recent calls of the client in microseconds, refreshed periodically, never below the
 * floor (floor_us, else floor_ms); no backup until min_samples calls were seen. Backups draw from
 * the client's retry budget like retries. */
typedef struct ftrpc_backup_policy_adaptive_options {
    double max_extra_load; /* (0, 0.5], default 0.05: the delay is the p95 latency */
    int floor_ms;          /* default 1 */
    int window_seconds;    /* [1, 60], default 10 */
    int refresh_ms;        /* default 500 */
    int min_samples;       /* default 100 */
    /* The floor in microseconds, for services whose p95 is under a millisecond. Default 0:
     * floor_ms (whose default, 1 ms, stays); > 0: this floor, taking priority over floor_ms;
     * -1: no floor (the delay is the measured quantile, at least 1 us) */
    int floor_us;
} ftrpc_backup_policy_adaptive_options;

/* Makes a built-in policy; NULL options mean the defaults. FTRPC_EINVAL (logged) for bad values.
 * The caller owns *out: ftrpc_backup_policy_free() once no client uses it. Any thread. */
FTRPC_API int
ftrpc_backup_policy_ratelimited_new_sized(const ftrpc_backup_policy_ratelimited_options *opts,
                                          size_t opts_size, ftrpc_backup_policy **out);
FTRPC_API int
ftrpc_backup_policy_adaptive_new_sized(const ftrpc_backup_policy_adaptive_options *opts,
                                       size_t opts_size, ftrpc_backup_policy **out);
static inline int
ftrpc_backup_policy_ratelimited_new(const ftrpc_backup_policy_ratelimited_options *opts,
                                    ftrpc_backup_policy **out)
{
    return ftrpc_backup_policy_ratelimited_new_sized(
        opts, sizeof(ftrpc_backup_policy_ratelimited_options), out);
}
static inline int ftrpc_backup_policy_adaptive_new(const ftrpc_backup_policy_adaptive_options *opts,
                                                   ftrpc_backup_policy **out)
{
    return ftrpc_backup_policy_adaptive_new_sized(
        opts, sizeof(ftrpc_backup_policy_adaptive_options), out);
}
FTRPC_API void ftrpc_backup_policy_free(ftrpc_backup_policy *policy);

/* What a call does when an attempt fails (docs/fault-tolerance.md). */
typedef enum {
    FTRPC_FAIL_DEFAULT = 0, /* per call: the client's mode; per client: FTRPC_FAILOVER */
    FTRPC_FAILFAST = 1,     /* one attempt; its error is the call's (rpcx, Kitex) */
    FTRPC_FAILOVER = 2,     /* retry on an endpoint not tried yet, when one is usable (brpc) */
    FTRPC_FAILTRY = 3,      /* retry on the same endpoint (rpcx Failtry) */
    FTRPC_FAILBACKUP = 4,   /* send a backup request to another endpoint when the first has not
                             * answered within backup_request_ms; the first success wins
                             * (brpc); failed attempts are then retried as failover does.
                             * Failover with a positive backup_request_ms or a backup policy is
                             * this mode */
} ftrpc_fail_mode;

/* What pays for a backup request (docs/backup-requests.md, The budget). */
typedef enum {
    /* a fixed delay (backup_request_ms, no policy): nothing but the call's bound of one backup
     * (brpc's rule); with a backup policy: the retry budget, as FTRPC_BACKUP_BUDGET_RETRY */
    FTRPC_BACKUP_BUDGET_DEFAULT = 0,
    FTRPC_BACKUP_BUDGET_RETRY = 1, /* every backup draws on the retry budget, shared with retries */
    FTRPC_BACKUP_BUDGET_NONE = -1, /* no backup draws on it, with a policy too */
} ftrpc_backup_budget;

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
    int initial_ms;      /* default 10 */
    double multiplier;   /* default 2 */
    int max_ms;          /* default 1000 */
    int64_t reserved[4]; /* zero: room for fields to come without moving what follows */
} ftrpc_backoff;

/* Endpoint health (docs/endpoint-health.md). Zero means the default shown. */
typedef struct ftrpc_health_options {
    /* default 1000 (brpc 100, WSO2/Envoy 30000); -1: never suspend */
    int64_t initial_suspension_ms;
    double progression_factor;     /* default 2 (brpc doubles; WSO2 1) */
    int64_t maximum_suspension_ms; /* default 30000 (brpc; Envoy 300000) */
    int retries_before_suspension; /* default 0 (WSO2): the first timeout-class error suspends */
    int64_t retry_delay_ms;        /* default 0 (WSO2): a TIMEOUT endpoint stays usable */
    /* zero-terminated; default {ERPCTIMEDOUT, EFAILEDSOCKET, EEOF}: ACTIVE -> TIMEOUT */
    int mark_codes[FTRPC_MAX_CODES];
    /* zero-terminated; default {ECONNREFUSED, ECONNECT, ETLS, ELOGOFF}: suspend at once */
    int suspend_codes[FTRPC_MAX_CODES];
    /* default 0.5: share of a service's endpoints suspended at once for timeouts, errors and
     * breaker trips (a refused connection suspends past it); 1 or -1: no cap */
    double max_suspended_ratio;
    double breaker_error_ratio; /* default 0.5 (Hystrix); the breaker trips at or above it */
    int breaker_min_calls;      /* default 20 (Hystrix) calls in the window before a verdict */
    int64_t breaker_window_ms;  /* default 10000 (Hystrix) */
    /* default 0: an RPC error in neither list (FTRPC_EINTERNAL, FTRPC_ELIMIT, ...) only feeds the
     * breaker; 1: it suspends the endpoint at once, as a suspend code does (WSO2: "for all the
     * other errors, it will be marked as Suspended"). Business errors and the neutral codes never
     * count either way. */
    int suspend_other_errors;
    /* default 0: a failed attempt is retried as the fail mode says (failover: on another
     * endpoint); 1: when the attempt's mark code left its endpoint in TIMEOUT, the retry goes back
     * to that endpoint once retry_delay_ms has passed, up to retries_before_suspension times a
     * call and within its deadline, before the fail mode's rule applies (WSO2's retries of a
     * Timeout endpoint). Such retries draw on the retry budget but not on `retries`. */
    int retry_in_timeout;
    /* Default 0: when every endpoint of the service is open by its breaker (suspended by a trip,
     * not by connection errors or timeouts), a call is rejected at once with FTRPC_EBREAKER, as
     * Kitex's and Hystrix's open circuits reject; -1: such a call is sent anyway to the endpoint
     * whose suspension ends first (ftrpc's rule before the option); 1: the default, said
     * explicitly. (Taken from the reserved room: the struct keeps its size.) */
    int breaker_reject;
    int reserved_int;    /* zero */
    int64_t reserved[2]; /* zero: room for fields to come without moving what follows */
} ftrpc_health_options;

/* Fills *opts with WSO2's endpoint semantics (docs/endpoint-health.md, "WSO2 profile"): every
 * field as WSO2's defaults have it (first suspension 30 s, progression factor 1, no breaker, no
 * cap on suspended endpoints), suspend_other_errors and retry_in_timeout on. Start from it and
 * change what your configuration sets, e.g. retries_before_suspension and retry_delay_ms from
 * markForSuspension. Whatever *opts held is overwritten. Any thread. */
FTRPC_API void ftrpc_health_options_wso2(ftrpc_health_options *opts);

/* One endpoint's own error codes (WSO2's retry config of a failover group's child endpoint): an
 * RPC error this endpoint returns is judged by these lists before the client-wide ones. */
typedef struct ftrpc_endpoint_codes {
    const char *endpoint; /* "host:port" as the naming service lists it; copied by _new */
    /* Negative FTRPC_E* codes, zero-terminated. An error listed here is retried (on the next
     * endpoint under failover) even when the client's no_retry_codes name it. Default none. */
    int retry_codes[FTRPC_MAX_CODES];
    /* An error listed here ends the call's retries at once and puts this endpoint in TIMEOUT
     * (usable again after health.retry_delay_ms; never suspended by it). Wins over retry_codes
     * when a code is in both, as WSO2's "Non Retry" does. Default none. */
    int no_retry_codes[FTRPC_MAX_CODES];
    int64_t reserved[4]; /* zero: room for fields to come */
} ftrpc_endpoint_codes;

/* Fallback (Kitex >= 0.5 semantics, docs/fallback.md): after retries and backups are exhausted, a
 * function may replace the call's outcome with a response or an error, e.g. a default answer
 * during an outage or a degraded answer when a response carries a bad status. */
typedef enum {
    FTRPC_FALLBACK_OFF = 0,
    FTRPC_FALLBACK_ERRORS_AND_RESPONSES = 1, /* every outcome, successes included: the function may
                                              * look inside a response and replace it */
    FTRPC_FALLBACK_ERRORS = 2,               /* RPC and business errors */
    FTRPC_FALLBACK_TIMEOUTS_AND_BREAKER = 3, /* Kitex's TimeoutAndCBFallback: FTRPC_ERPCTIMEDOUT
                                              * and FTRPC_EBREAKER (every endpoint open by its
                                              * breaker, health.breaker_reject); also
                                              * FTRPC_ENOENDPOINT, which stood for the breaker's
                                              * rejection before FTRPC_EBREAKER existed */
} ftrpc_fallback_kind;

typedef struct ftrpc_fallback_input {
    const char *service;
    const char *method;
    const ftrpc_buf *request;
    const ftrpc_result *result; /* the original outcome (its response may be read, not kept) */
} ftrpc_fallback_input;

/* What the function decides. Leave both unset: the original outcome stands. Set both: only the
 * error counts (the response is freed). */
typedef struct ftrpc_fallback_output {
    ftrpc_buf *response; /* a replacement response, made with ftrpc_buf_new: the library owns it */
    int error_code;      /* non-zero: a replacement error; negative FTRPC_E* = RPC error, other =
                          * business error */
    char error_text[256];
} ftrpc_fallback_output;

/* Runs on the call's IO thread, once per call, after the last attempt; must not block. The
 * input's pointers are valid during the call only. */
typedef void (*ftrpc_fallback_cb)(const ftrpc_fallback_input *in, ftrpc_fallback_output *out,
                                  void *arg);

typedef struct ftrpc_fallback {
    ftrpc_fallback_kind kind; /* default FTRPC_FALLBACK_OFF */
    ftrpc_fallback_cb fn;
    void *arg;
    /* Metrics report the original outcome by default. With this set (Kitex's
     * EnableReportAsFallback), an RPC failure the fallback replaced is reported as the fallback's
     * outcome: a response as a success, an error as that error (a business error the fallback
     * returned counts as a business error). A success or a business error is reported as itself
     * whatever the fallback did (Kitex's rule). */
    int report_as_fallback;
    int64_t reserved[4]; /* zero: room for fields to come without moving what follows */
} ftrpc_fallback;

/* Decides whether a business error (code >= FTRPC_BUSINESS_CODE_MIN or negative on the wire) is
 * worth a retry; business errors are never retried without one. Any IO thread; must not block. */
typedef int (*ftrpc_retry_classifier_cb)(int business_code, const char *text, void *arg);

/* A credential generator (brpc's Authenticator::GenerateCredential): fills the
 * authentication_data sent on the first request of every connection. Return the length written
 * (at most `size`), or < 0 to send none. Runs on an IO thread; must not block. */
typedef int (*ftrpc_credential_cb)(uint8_t *buf, size_t size, void *arg);

/* TLS to the service's endpoints (docs/security.md). Zero means off. Files are PEM and are read
 * by ftrpc_client_new: the strings need not outlive it. */
typedef struct ftrpc_client_tls_options {
    int enable;          /* default 0: plain TCP */
    const char *ca_file; /* default NULL: the system's trust store (openssl's default paths) */
    /* default NULL: each endpoint's own host. The name (DNS SAN) or IP literal (IP SAN) the
     * server's certificate must carry; also sent as SNI when it is a name */
    const char *server_name;
    int skip_name_check;   /* default 0: the name is checked. 1: any name (the chain still is) */
    const char *cert_file; /* default NULL: no client certificate. Mutual TLS: chain, leaf first */
    const char *key_file;  /* the private key of cert_file (required with it) */
    int64_t reserved[4];   /* zero: room for fields to come without moving what follows */
} ftrpc_client_tls_options;

/* A client's wire protocol (ftrpc_client_options.protocol). */
typedef enum ftrpc_protocol {
    FTRPC_PROTOCOL_DEFAULT = 0,   /* baidu_std */
    FTRPC_PROTOCOL_BAIDU_STD = 1, /* brpc's baidu_std (docs/protocol.md) */
    FTRPC_PROTOCOL_GRPC = 2,      /* gRPC over HTTP/2, unary (docs/grpc.md) */
} ftrpc_protocol;

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
    ftrpc_retry_classifier_cb retry_classifier; /* default NULL: business errors are not retried */
    void *retry_classifier_arg;
    const char *lb; /* "random", "rr", "wrr", "wrandom", "chash", "p2c" (default), "priority" */
    ftrpc_health_options health;
    /* The retry budget shared by retries and backup requests (gRPC retry throttling, Finagle's
     * RetryBudget): retries in the last 10 s may not exceed ratio x calls + min_per_sec x 10. */
    double retry_budget_ratio;    /* default 0.2; -1: no budget (retries and backups are then
                                   * bounded only by `retries` per call) */
    int retry_budget_min_per_sec; /* default 10; -1: no floor */
    /* ftrpc_client_new waits up to this long for discovery's first answer. Default 2000. */
    int naming_wait_ms;
    /* How long a registry that suddenly lists no endpoints is distrusted (the last list is kept
     * meanwhile: a wiped folder or a half-finished deploy, docs/discovery.md). Default 0 means
     * 30000; -1: believed at once, so that the last server's clean stop shows as
     * FTRPC_ENOENDPOINT without delay. */
    int naming_empty_grace_ms;
    /* The backup delay. Default 0 means off, as does -1 (brpc: -1). A positive delay turns backups
     * on, as in brpc: the default fail mode (failover) becomes FTRPC_FAILBACKUP; with
     * FTRPC_FAILFAST or FTRPC_FAILTRY it is refused (FTRPC_EINVAL, logged). A backup is never sent
     * when the delay is not shorter than the call's remaining deadline. backup_request_us, when
     * not 0, takes priority over it. */
    int backup_request_ms;
    /* default NULL; takes priority over backup_request_ms and, like a positive delay, turns
     * backups on */
    ftrpc_backup_policy *backup_policy;
    ftrpc_fallback fallback;        /* default off; a call's own fallback takes priority */
    ftrpc_credential_cb credential; /* default NULL: no authentication_data */
    void *credential_arg;
    const char *auth_token; /* shortcut: send this token as the credential */
    /* default off. A failed handshake or certificate check fails the calls waiting on that
     * connection with FTRPC_ETLS (OpenSSL's reason in error_text): never retried, and the endpoint
     * is suspended like one that refuses connections (FTRPC_ETLS is in health.suspend_codes) */
    ftrpc_client_tls_options tls;
    /* Per-endpoint error codes (ftrpc_endpoint_codes): n_endpoint_codes entries, copied by
     * ftrpc_client_new; an endpoint named twice is refused. Default none. Entries for endpoints the
     * service does not list are kept and apply when discovery lists them. */
    const ftrpc_endpoint_codes *endpoint_codes;
    int n_endpoint_codes;
    /* lb "priority" only. Default 0: every call goes to the first usable endpoint in list order,
     * so traffic returns to the primary once it is usable (WSO2 dynamic="true"). 1: sticky
     * (WSO2 dynamic="false"): calls stay on the endpoint failed over to while it is usable, and
     * move on (to the first usable in list order) only when it is not. */
    int priority_sticky;
    /* The stale bound of the client's cached view (go-micro's cache is "periodically TTLed out";
     * docs/discovery.md): once the registry has been unreachable for this long, endpoints whose
     * own registration TTL has passed since the registry last listed them are dropped, and with
     * none left calls fail with FTRPC_ENOENDPOINT. Default 0 (and -1): off, the last list is
     * served for as long as the outage lasts. Endpoints without a TTL (list://, file://) are
     * never dropped. */
    int naming_max_stale_ms;
    /* What pays for a backup request (docs/backup-requests.md, The budget). Default
     * FTRPC_BACKUP_BUDGET_DEFAULT: a fixed backup_request_ms is bounded per call only (one backup
     * per call, as brpc bounds it) and a backup policy's backups draw on the retry budget. */
    ftrpc_backup_budget backup_budget;
    /* 1: a backup uses up one of `retries`, as in brpc (its max_retry counts the backup), and a
     * call with no retry left sends none. Default 0: backups leave `retries` to failures. */
    int backup_counts_as_retry;
    /* Dead connections that no RST announces: a partition, a black-holed or powered-off host, a
     * proxy that stopped forwarding (docs/client.md, Dead connections). Zero means the default;
     * -1 turns a mechanism off. */
    /* TCP keepalive on client connections: the first probe after this many idle seconds.
     * Default 10 (brpc's keepalive_idle 10 s when enabled; the kernel's is 7200); -1: off.
     * Up to 32767, the interval too, the count up to 127 (Linux's; FTRPC_EINVAL past them) */
    int tcp_keepalive_idle_s;
    int tcp_keepalive_interval_s; /* default 2: between unanswered probes */
    int tcp_keepalive_count;      /* default 3: unanswered probes before the connection fails */
    /* TCP_USER_TIMEOUT: data the peer has not acknowledged for this long fails the connection
     * (FTRPC_EFAILEDSOCKET), instead of TCP's ~15 minutes of retransmissions. Default 5000;
     * -1: the kernel's */
    int tcp_user_timeout_ms;
    /* The health check of a busy connection: when requests wait on a connection that has read
     * nothing for this long, a probe (ftrpc.Control/Ping, which a server answers at once on its
     * IO thread; over gRPC an HTTP/2 PING, which the peer's HTTP/2 layer acknowledges at once) is
     * sent. Default 300; -1: off */
    int health_check_ms;
    /* ...and when nothing at all arrives within this long after the probe, the connection is
     * closed as dead: the attempts waiting on it fail with FTRPC_EFAILEDSOCKET (retried
     * elsewhere by failover) and the endpoint is marked. Default 500 */
    int health_check_timeout_ms;
    /* Adaptive throttling (docs/overload-client.md; Google SRE book, client-side throttling): k of
     * the rule "reject a call locally with probability max(0, (requests - k x accepts) /
     * (requests + 1))" over a sliding window, where accepts are the attempts a server answered
     * with anything but FTRPC_ELIMIT. A rejected call fails with FTRPC_ETHROTTLED without being
     * sent. Default 0 means 2 (on: it sheds nothing until more than half of the attempts are
     * refused for overload); -1: off. At least 1. */
    double throttle_k;
    int throttle_window_ms; /* default 0 means 30000 (gRPC's adaptive throttler); >= 30 */
    /* Deadline propagation (Finagle's deadline context, gRPC): a call made inside a handler (on
     * the IO thread or worker that runs it) or with ftrpc_call_options.parent ends no later than
     * the served call's deadline, less deadline_margin_ms. Default 0: on; -1: off (only the
     * explicit parent is followed). */
    int deadline_propagation;
    /* Subtracted from the inherited deadline, so that the handler still has time to answer its
     * caller. Default 0 (gRPC and Finagle propagate the deadline as it is); >= 0. */
    int deadline_margin_ms;
    /* Chain-stop (Kitex): a call made on behalf of a served call that is itself a retry (its
     * request's ftrpc_attempt > 0) sends no retry and no backup, and its requests carry
     * ftrpc_attempt > 0 in turn, so that retries do not multiply down a chain of services. And
     * the way back: when such a call (made for a served call, on its handler's thread, in its
     * callback, or with `parent`) ends with an RPC error after it retried, was refused retries
     * by this rule or was told to stop by a pushback -1, the served call's RPC error answer,
     * made on that same thread, carries pushback -1, so that its caller does not retry either
     * (docs/overload-client.md, Chain-stop). Default 0: on; -1: off (both halves). */
    int retry_chain_stop;
    /* Hedging with several copies (gRPC A6's max_attempts, docs/backup-requests.md): how many
     * copies of a failbackup call may be sent, the first one included: a further copy every
     * backup delay while no answer came, and at once when a copy fails with an error a retry may
     * cure. The first success wins and every other copy is cancelled. Each copy past the first is
     * a backup: it draws on what backup_budget says and, with backup_counts_as_retry, uses up a
     * retry. Default 0 means 2 (one backup, brpc's rule); 2 to 5 (gRPC's cap); anything else is
     * refused (FTRPC_EINVAL, logged). */
    int max_attempts;
    /* Tied requests ("The Tail at Scale", docs/backup-requests.md): 1 sends every call's first two
     * copies at once to two endpoints; the server that starts executing its copy first (takes it
     * from its worker queue) tells the client, which cancels the other copy at once, so that
     * one copy runs in the common case. With a backup_request_ms the twin waits that long
     * instead (the paper's small delay: a first copy an idle server starts at once then cancels
     * it before it is sent). A server that does not know the notice (brpc) lets the two race as
     * backups. Needs failover or failbackup (FTRPC_EINVAL with failfast and failtry); draws on
     * the budget as a backup does. Default 0: off. */
    int tied;
    /* The wire protocol (docs/grpc.md). Default FTRPC_PROTOCOL_BAIDU_STD; FTRPC_PROTOCOL_GRPC:
     * unary gRPC over HTTP/2, each call a stream on the one connection per endpoint and loop, the
     * deadline sent as grpc-timeout, a cancelled attempt reset with RST_STREAM (CLI: --protocol).
     * Left at FTRPC_PROTOCOL_DEFAULT, the naming URL's ?protocol=grpc|baidu_std decides; the
     * other protocol there than here fails ftrpc_client_new with FTRPC_EINVAL. */
    ftrpc_protocol protocol;
    /* The backup delay in microseconds, for services that answer in under a millisecond
     * (docs/backup-requests.md, The delay's resolution). Default 0: backup_request_ms decides.
     * Non-zero, it takes priority over backup_request_ms: > 0 is the delay (it turns backups on
     * like a positive backup_request_ms), -1 is off whatever backup_request_ms says. Range -1 to
     * 2147483647000 (backup_request_ms's range); below -1 or above is refused (FTRPC_EINVAL). */
    int64_t backup_request_us;
} ftrpc_client_options;

typedef struct ftrpc_call_options {
    int timeout_ms;            /* default 0: the client's timeout_ms */
    int64_t log_id;            /* default 0: not sent */
    ftrpc_fail_mode fail_mode; /* default: the client's */
    int retries;               /* default 0: the client's; FTRPC_NO_RETRY: none */
    int attempt_timeout_ms;    /* default 0: the client's */
    const void *hash_key;      /* consistent hashing ("chash"): the request's key */
    size_t hash_key_len;
    /* default 0: the client's; -1: no backup for this call. A positive delay turns backups on for
     * this call under failover (the default); with failfast or failtry (the call's or the
     * client's) the call is refused with FTRPC_EINVAL. A call whose own fail_mode is failfast or
     * failtry sends no backup for the client's delay. */
    int backup_request_ms;
    const ftrpc_fallback *fallback; /* default NULL: the client's; read when the call starts */
    /* default NULL: the client's. A policy for this call only (brpc's
     * Controller::set_backup_request_policy): it decides the call's delay and backup, and is told
     * the call's end, instead of the client's. Not owned: it must outlive the call. */
    ftrpc_backup_policy *backup_policy;
    /* default NULL: the served call the calling thread runs a handler for, if any (and the
     * client's deadline_propagation is on). The served call on whose behalf this call is made:
     * the call ends no later than its deadline (less the client's deadline_margin_ms), and under
     * retry_chain_stop it does not retry when the served call is a retry. Read when the call is
     * made; valid until the handler replies to it (ftrpc_server_call_reply / _fail). */
    const ftrpc_server_call *parent;
    /* default 0: the client's max_attempts; 2 to 5: the copies this call may send (above) */
    int max_attempts;
    /* default 0: the client's `tied`; 1: tied for this call; -1: not tied for this call */
    int tied;
    /* The call's backup delay in microseconds. Default 0: backup_request_ms above decides.
     * Non-zero, it takes priority over the call's backup_request_ms: > 0 is the delay (as a
     * positive backup_request_ms), -1 no backup for this call (as backup_request_ms -1). The
     * delay of a call is the first of these that is not 0: the call's backup_request_us, the
     * call's backup_request_ms, the client's backup_request_us, the client's backup_request_ms. */
    int64_t backup_request_us;
} ftrpc_call_options;

typedef enum {
    FTRPC_RESULT_OK = 0,
    FTRPC_RESULT_RPC_ERROR = 1,      /* transport, timeout, no endpoint, overload, protocol... */
    FTRPC_RESULT_BUSINESS_ERROR = 2, /* the handler failed the call with its own code */
} ftrpc_result_kind;

/* The outcome of one call. Filled by the library; release with ftrpc_result_fini(). */
struct ftrpc_result {
    ftrpc_result_kind kind;
    int code;             /* 0; a negative FTRPC_E* (RPC error); or the handler's code (business) */
    char error_text[256]; /* "" on success */
    ftrpc_buf *response;  /* the response payload on success (never NULL then); owned by the
                           * result: steal it by setting the field to NULL */
    ftrpc_buf *attachment; /* idem, possibly empty */
    int attempts;          /* requests sent for this call (1 without retries), including any
                            * whose connection never opened */
    char endpoint[64];     /* "ip:port" of the endpoint that answered (also with the error it
                            * sent), "" if none did (timeout, connection error, ...) */
    int64_t latency_us;    /* from the call's start to its completion */
    int backups;           /* copies sent past the first: backups, hedges and the tied twin
                            * (0 to max_attempts - 1) */
    int backup_won;        /* the answer came from the backup request */
    int from_fallback;     /* a fallback function produced this outcome */
    int cluster;           /* the cluster of `endpoint`: for a selective client the index of its
                            * sub-client (ftrpc/selective.h), 0 for a plain client; -1 when no
                            * endpoint answered */
    int backups_refused;   /* 1: the backup delay passed and the retry budget refused the backup
                            * (the call waited for its first copy); counted in the client's
                            * rpc_client_backups_refused */
};

/* Frees what the result owns (response, attachment). The struct itself is the caller's. */
FTRPC_API void ftrpc_result_fini(ftrpc_result *result);

/* Makes a client for naming_url. opts may be NULL. On success *out is the caller's.
 * FTRPC_ETLS when a TLS file cannot be used (OpenSSL's reason is logged). */
FTRPC_API int ftrpc_client_new_sized(const char *naming_url, const ftrpc_client_options *opts,
                                     size_t opts_size, ftrpc_client **out);
static inline int ftrpc_client_new(const char *naming_url, const ftrpc_client_options *opts,
                                   ftrpc_client **out)
{
    return ftrpc_client_new_sized(naming_url, opts, sizeof(ftrpc_client_options), out);
}
/* Frees the client. Calls still in flight complete with FTRPC_ESTOPPED before it returns; their
 * callbacks run on IO threads meanwhile. Never call it from an IO thread or from a callback. */
FTRPC_API void ftrpc_client_free(ftrpc_client *client);

/* Synchronous call: blocks until the call completes and fills *result (always, also on error).
 * Returns 0 on success, the negative FTRPC_E* code on an RPC error, and FTRPC_EBUSINESS on a
 * business error (result->code then holds the handler's code). request and attachment may be
 * NULL; their bytes are shared, not copied. opts may be NULL. Refused with FTRPC_EIOTHREAD on an
 * IO thread (it would deadlock); *result is filled then too. */
FTRPC_API int ftrpc_call_sized(ftrpc_client *client, const char *service, const char *method,
                               const ftrpc_buf *request, const ftrpc_buf *attachment,
                               const ftrpc_call_options *opts, size_t opts_size,
                               ftrpc_result *result, size_t result_size);
static inline int ftrpc_call(ftrpc_client *client, const char *service, const char *method,
                             const ftrpc_buf *request, const ftrpc_buf *attachment,
                             const ftrpc_call_options *opts, ftrpc_result *result)
{
    return ftrpc_call_sized(client, service, method, request, attachment, opts,
                            sizeof(ftrpc_call_options), result, sizeof(ftrpc_result));
}

/* Completion of an async call. Runs exactly once, on an IO thread; it must not block. `result` is
 * valid only during the callback (steal its buffers by setting the pointers to NULL). */
typedef void (*ftrpc_call_cb)(ftrpc_result *result, void *arg);

/* The handle of an async call, for ftrpc_call_cancel; never 0. A plain number, not a pointer: it
 * stays safe to use after the call completed (the cancel then does nothing). */
typedef uint64_t ftrpc_call_id;

/* Asynchronous call: returns 0 and cb runs exactly once later (success, error, timeout and
 * cancellation alike), or returns an error at once and cb never runs. request/attachment are
 * shared before it returns: the caller may free its buffers right after. id may be NULL; else it
 * receives the call's handle before the call can complete. Any thread, including IO threads and
 * callbacks. */
FTRPC_API int ftrpc_call_async_sized(ftrpc_client *client, const char *service, const char *method,
                                     const ftrpc_buf *request, const ftrpc_buf *attachment,
                                     const ftrpc_call_options *opts, size_t opts_size,
                                     ftrpc_call_cb cb, void *arg, ftrpc_call_id *id);
static inline int ftrpc_call_async(ftrpc_client *client, const char *service, const char *method,
                                   const ftrpc_buf *request, const ftrpc_buf *attachment,
                                   const ftrpc_call_options *opts, ftrpc_call_cb cb, void *arg,
                                   ftrpc_call_id *id)
{
    return ftrpc_call_async_sized(client, service, method, request, attachment, opts,
                                  sizeof(ftrpc_call_options), cb, arg, id);
}

/* Cancels the async call `id` of this client (libuv's uv_cancel, brpc's StartCancel): unless it
 * completed first, its callback runs with FTRPC_ECANCELED ("cancelled by the caller"), its
 * attempts in flight are abandoned and their servers told (ftrpc.Control/Cancel), and no retry,
 * backup or fallback follows. The callback still runs exactly once, on the call's IO thread, maybe
 * before this returns. Returns 0 when the cancel was handed to the call's IO thread (whether the
 * call was still running or not), FTRPC_EINVAL for an id that is no handle of this client's
 * runtime, FTRPC_ESTOPPED while the client is being freed. Any thread, including callbacks. */
FTRPC_API int ftrpc_call_cancel(ftrpc_client *client, ftrpc_call_id id);

/* ---- an endpoint's health, for operators ---- */

/* The health states of docs/endpoint-health.md. */
typedef enum {
    FTRPC_ENDPOINT_ACTIVE = 0,
    FTRPC_ENDPOINT_TIMEOUT = 1,   /* had a mark code; used again after retry_delay_ms */
    FTRPC_ENDPOINT_SUSPENDED = 2, /* used again when its suspension ends, by one probe */
    FTRPC_ENDPOINT_PROBING = 3,   /* one probe call in the air */
    FTRPC_ENDPOINT_OFF = 4,       /* switched off by an operator (WSO2's OFF) */
} ftrpc_endpoint_state;

/* The state of `endpoint` ("host:port" as listed) in this client's current endpoint list (>= 0,
 * an ftrpc_endpoint_state), and in *usable_in_ms (may be NULL) the ms until it is usable again (0:
 * now; INT64_MAX: OFF), a server's pushback hold included (the state stays as it was during one).
 * FTRPC_ENOENDPOINT when it is not listed, FTRPC_EINVAL for NULL arguments or a selective client.
 * Any thread. */
FTRPC_API int ftrpc_client_endpoint_state(ftrpc_client *client, const char *endpoint,
                                          int64_t *usable_in_ms);

/* Switches `endpoint` OFF (on = 0): no call goes to it, not even when nothing else is usable
 * (calls then fail with FTRPC_ENOENDPOINT), until it is switched back ON (on = 1), which makes
 * it ACTIVE with a fresh history. The state stays while discovery keeps listing the endpoint; one
 * that leaves the list and comes back starts ACTIVE. The admin page does the same over HTTP
 * (POST /endpoints?off=HOST:PORT, docs/endpoint-health.md). 0, FTRPC_ENOENDPOINT when it is not
 * listed, FTRPC_EINVAL for NULL arguments or a selective client. Any thread. */
FTRPC_API int ftrpc_client_endpoint_switch(ftrpc_client *client, const char *endpoint, int on);

/* ---- checks for tools that take options from their users ---- */

/* 1 when ftrpc_client_options.lb accepts `name` ("random", "rr", "wrr", "wrandom", "chash", "p2c",
 * "priority"), else 0 (NULL too): a tool can name its own flag in the message, where
 * ftrpc_client_new would only answer FTRPC_EINVAL. Any thread. */
FTRPC_API int ftrpc_lb_name_valid(const char *name);

/* The largest request payload a call of service/method can carry in a frame of at most max_frame
 * bytes (0: FTRPC_DEFAULT_MAX_BODY_SIZE, which a server with the default max_body_size and a client
 * with the default max_unwritten_bytes both let through; every attempt of a call whose frame is
 * larger fails). The frame is counted whole: its 12-byte header, and the request meta at its
 * widest (the largest correlation id, timeout and log id, and the longest credential a client
 * sends, 1 KiB). An attachment takes its bytes from the same room. 0 and *out; FTRPC_EINVAL when
 * service or method is NULL or empty, or when the meta alone exceeds max_frame. Any thread. */
FTRPC_API int ftrpc_max_request_payload(const char *service, const char *method, size_t max_frame,
                                        size_t *out);

#ifdef __cplusplus
}
#endif
#endif
