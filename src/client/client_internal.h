/* Internals of ftrpc_client shared by client.c (lifecycle, endpoints, connections), call.c (the
 * call engine: attempts, fail modes acted on, health reporting), call_blocking.c (ftrpc_call and
 * its borrowed-loop fast path) and selective.c. The fail-mode decisions are fail_policy.h's. */
#ifndef FT_CLIENT_INTERNAL_H
#define FT_CLIENT_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "base/call_context.h"
#include "base/idmap.h"
#include "base/iobuf.h"
#include "base/list.h"
#include "client/client_metrics.h"
#include "client/fail_policy.h"
#include "metrics/counter.h"
#include "metrics/rpcz.h"
#include "client/retry_budget.h"
#include "client/throttle.h"
#include "cluster/cluster.h"
#include "cluster/endpoint_health.h"
#include "cluster/health_set.h"
#include "cluster/lb.h"
#include "ftrpc/client.h"
#include "io/conn.h"
#include "io/loop.h"
#include "io/tls.h"
#include "naming/naming_view.h"
#include "protocol/baidu_std.h"

typedef struct ft_cconn ft_cconn;
struct ft_attempt;

/* backup_request_us's upper bound: backup_request_ms's range, so that ns never overflow */
#define FT_BACKUP_US_MAX ((int64_t)INT_MAX * 1000)

/* One level's (backup_request_us, backup_request_ms) as a delay in us: 0 when both are 0 (the
 * next level decides), -1 off, else the delay. A non-zero us takes priority over ms. */
static inline int64_t ft_backup_delay_us(int64_t us, int ms)
{
    if (us != 0) return us > 0 ? us : -1;
    return ms > 0 ? (int64_t)ms * 1000 : ms < 0 ? -1 : 0;
}
typedef struct ft_call ft_call;

/* The client's endpoint: the cluster's endpoint (cluster/cluster.h: name, health, in-flight
 * counts, references) and what only the client needs, its socket address and a connection per
 * loop. conns[i] is touched only by loop i; sa is immutable. Every connection to it holds a
 * reference, as every cluster that lists it does. */
typedef struct ft_client_endpoint {
    ft_cluster_endpoint base; /* first: the cluster's pointers are the client's */
    struct sockaddr_storage sa;
    ft_cconn **conns; /* [nloops] */
    /* Set once the endpoint answered a cancel with "no such method" (a brpc server): no more
     * cancels go to it (client.c). Any loop reads and sets it. */
    atomic_int no_cancel;
} ft_client_endpoint;

static inline ft_client_endpoint *ft_client_endpoint_of(ft_cluster_endpoint *ep)
{
    return (ft_client_endpoint *)ep;
}

/* Cancels remembered per connection: the first "no such method" answer needs to be matched. */
#define FT_CCONN_CANCEL_CIDS 4

/* A client connection: one per (loop, endpoint); its loop's thread only. */
struct ft_cconn {
    ft_conn *conn;
    struct ftrpc_client *client;
    ft_loop *loop;
    ft_client_endpoint *ep; /* referenced (ep->base) */
    ft_list node;           /* in the loop's cconns */
    ft_idmap pending;       /* correlation id -> ft_attempt */
    int64_t last_cid;       /* correlation ids are the connection's own: 1, 2, ... */
    /* the correlation ids of the latest cancels sent, so that their answers are recognised */
    int64_t cancel_cids[FT_CCONN_CANCEL_CIDS];
    unsigned cancel_next;
    int credential_sent; /* the first request (with authentication_data) went out */
    /* The health check (client.c, on_health_check): armed while requests wait on the
     * connection. Quiet time counts from the later of the last read and the arming. */
    ft_timer check_timer;
    int check_armed;
    int64_t last_read_ns;  /* loop time of the last read */
    int64_t last_send_ns;  /* loop time of the last request queued (ft_client_conn_busy) */
    int64_t watch_from_ns; /* when the check was armed */
    int64_t probe_sent_ns; /* a ftrpc.Control/Ping (gRPC: a PING) is out since then; 0: none */
    /* ft_conn_bytes_sent at the check's last look, and when a look last found the kernel taking
     * bytes of a write still in progress: a sign of life, as a read is */
    uint64_t taken_seen;
    int64_t last_taken_ns;
    struct ft_grpc_cconn *grpc; /* grpc_client.c: the HTTP/2 session, when the protocol is gRPC */
};

/* ---- grpc_client.c (the connection's loop) ---- */

/* Makes cc a gRPC connection: an nghttp2 client session, its preface and SETTINGS queued. 0 or a
 * negative code (the caller closes the connection). */
int ft_grpc_cconn_start(ft_cconn *cc);
/* On close, once the pending attempts were failed: frees the session. */
void ft_grpc_cconn_free(ft_cconn *cc);
/* Sends the attempt as a new stream, files it in cc->pending under its stream id (a->cid). The
 * credential (NULL: none) goes as the authorization metadata. 0 or a negative code (not filed). */
int ft_grpc_cconn_send(ft_cconn *cc, struct ft_attempt *a, const char *service, const char *method,
                       int32_t timeout_ms, const ft_iobuf *request, const uint8_t *credential,
                       size_t credential_len);
/* Resets the attempt's stream (RST_STREAM CANCEL): the server sees the call cancelled. */
void ft_grpc_cconn_cancel(ft_cconn *cc, int64_t id);
/* Reads HTTP/2 frames: answers go to their attempts. 0 or a negative code to close. */
int ft_grpc_cconn_on_read(ft_cconn *cc);
/* The loop flushes cc's connection (ft_conn_handler.on_flush): what nghttp2 queued this turn (every
 * stream submitted in it) is written in one pass. 0 or a negative code to close. */
int ft_grpc_cconn_on_flush(ft_cconn *cc);
/* The health check's probe over HTTP/2: a PING, whose ACK a live peer sends at once. 0, or why
 * it could not be queued. */
int ft_grpc_cconn_ping(ft_cconn *cc);

typedef struct ft_client_loop {
    ft_list calls;              /* calls homed on this loop */
    ft_list cconns;             /* connections of this loop */
    struct ft_call *free_calls; /* finished calls kept for reuse (standard size only) */
    int nfree_calls;
    /* The client's cluster as this loop last saw it, referenced, and the generation it had then.
     * Calls of this loop borrow it without a reference of their own (no locked add): `borrows`
     * counts them, and `borrow_epoch` tells a returning call whether its borrow still stands or
     * was turned into a real reference when the loop moved to a newer cluster (client.c,
     * ft_client_cluster_borrow). */
    ft_cluster *cluster;
    unsigned cluster_gen;
    unsigned borrow_epoch;
    int borrows;
    /* Calls submitted on this loop's thread and not completed: the loop's share of the client's
     * in-flight count, written only while running the loop (a load and a store, no locked add);
     * calls submitted from other threads count in ftrpc_client.inflight. */
    atomic_int local_inflight;
    /* Async calls started with an id (ftrpc_call_async's handle) and not completed: id -> call,
     * for ftrpc_call_cancel. Only such calls are filed, so that calls without a handle pay
     * nothing. */
    ft_idmap cancelable;
} ft_client_loop;

/* One request of a call, sent to one endpoint. A call has `nslots` slots: the attempt (first try
 * or a retry) and, in failbackup, the copies racing it (max_attempts - 1 of them). */
typedef struct ft_attempt {
    ft_call *call;
    ft_cconn *cc; /* non-NULL while in cc->pending (waiting for its response) */
    int64_t cid;
    int endpoint; /* index in the call's cluster; -1 before the first send */
    int64_t sent_ns;
    ft_timer timer; /* the per-attempt timeout */
    int in_flight;  /* sent and not settled: counted in the endpoint's in-flight figure */
    int is_backup;
    int target; /* index in the call's targets: whose cluster `endpoint` indexes */
    int rpcz;   /* its entry in the call's rpcz_att; -1: not recorded (read only when call->rpcz) */
} ft_attempt;

/* What rpcz keeps of an attempt while its call runs (metrics/rpcz.h has the record it becomes):
 * indices rather than the endpoint's name, which is copied once, when the call is recorded. */
typedef struct ft_rpcz_call_attempt {
    int target, endpoint;
    int64_t sent_ns, done_ns; /* done_ns 0: not settled */
    int32_t code;             /* as settle_attempt got it */
    uint8_t backup, cancelled;
} ft_rpcz_call_attempt;

/* Where a call's attempts may go: one cluster and the client that owns its endpoints'
 * connections. A plain client's call has one target (its own cluster); a selective client's call
 * has one per sub-client (selective.h). Pinned for the call's whole life. */
typedef struct ft_call_target {
    struct ftrpc_client *client; /* owns the endpoints' connections and credentials */
    ft_cluster *cluster; /* borrowed from the client's loop cell (ft_client_cluster_borrow) */
    unsigned borrow_epoch;
} ft_call_target;

/* The longest authentication_data a client sends (a longer auth_token is not sent at all). */
#define FT_CLIENT_MAX_CREDENTIAL 1024
#define FT_BACKUP_LATE_BUCKETS 8
extern const int ft_backup_late_bounds_us[FT_BACKUP_LATE_BUCKETS - 1];

/* The most copies of a call in flight at once: gRPC's cap on hedging's max_attempts. */
#define FT_CALL_SLOTS 5
/* Calls whose "service\0method\0" fits this many bytes are recycled per loop (call.c). */
#define FT_CALL_NAMES_MAX 96

/* A call, its fields grouped by concern. Everything before `request` is zeroed when a call is made
 * (call.c, call_zero); nothing here is a pointer to more per-call memory but `targets` of a
 * selective client. */
struct ft_call {
    /* identity: where the call lives and what it calls */
    ft_task task; /* first: a recycled call's free-list link overlays it (call.c, call_alloc) */
    ft_list node; /* in its loop's calls */
    struct ftrpc_client *client;
    ft_loop *loop;
    const char *service; /* in names[] */
    const char *method;
    size_t method_len; /* strlen(method); the service's is method - service - 1 */
    int64_t log_id;
    uint64_t key_hash;
    int has_key;
    int standard_size;          /* allocated with FT_CALL_NAMES_MAX bytes of names: reusable */
    ft_method_metrics *metrics; /* NULL when they could not be made */

    /* deadline and timers */
    int64_t start_ns;
    int64_t deadline_ns;
    int attempt_timeout_ms;
    ft_timer deadline_timer;
    ft_timer retry_timer;  /* backoff */
    ft_timer backup_timer; /* failbackup */

    /* attempts and retry state: what the fail-mode decisions read and spend (fail_policy.h) */
    int nslots; /* slot[0, nslots) in use: max_attempts, 2 by default */
    int attempts;
    ft_fail_state retry;
    /* the last failure, returned when the call gives up (its text: last_text) */
    ftrpc_result_kind last_kind;
    int last_code;
    int last_answered_by; /* the endpoint whose answer was the last failure; -1: none answered */
    int last_answered_target;

    /* backup state (failbackup) */
    int64_t backup_us;  /* < 0: no backup for this call */
    int backup_opt_out; /* the call asked for none (-1): a policy may not override that */
    int backups;
    int backups_refused; /* the budget refused the backup (ftrpc_result) */

    /* overload control (docs/overload-client.md) */
    int chain_retry;     /* made on behalf of a retry (chain-stop): its requests say attempt >= 1 */
    int retries_stopped; /* a server's pushback said -1: the call retries no more */
    int pushbacks;       /* answers that carried a pushback */
    int32_t last_hold_ms; /* the hold (pushback > 0) the last pushback asked for; 0: none */
    /* the served call this call is made for, when chain-stop is on (0: none): an RPC error after
     * spent retries is noted for it, so that its answer stops its caller's retries too */
    uint64_t parent_serial;
    int parent_deadline;    /* deadline_ns is the served call's (less the margin), not its own */
    int64_t hedge_delay_us; /* the delay between copies, as resolved at the start; < 0: none */
    int hedging;            /* the backup timer was armed or the call is tied: more copies may go */
    int tied;               /* copies ask their servers for a "started" notice (ftrpc_tied) */
    ftrpc_backup_policy *backup_policy; /* the call's, else the client's; NULL: none */

    /* targets: pinned for the whole call so that `tried` keeps its meaning: &one, or a selective
     * client's array (freed with the call) */
    ft_call_target *targets;
    int ntargets;
    ft_call_target one;

    /* the outcome's way back: the fallback, then an async callback or a blocking caller */
    ftrpc_fallback fallback;
    uint64_t id;      /* async, with a handle: in its loop's `cancelable` until it completes */
    ftrpc_call_cb cb; /* async */
    void *arg;
    ftrpc_result *sync_result; /* sync: the caller's result, filled before waking it */
    struct ft_event *sync_done;
    int *sync_rc;
    ft_call_note *sync_retried; /* sync: what the caller notes on its thread (serial 0: none) */
    int sync_wake_fd;    /* >= 0: the caller also waits on this eventfd; whoever completes the call
                          * on another thread writes it first (call_blocking.c, read_own_answer) */
    int sync_reading;    /* the caller reads the answer itself, now (read_own_answer) */
    int counted_on_loop; /* in its loop's local_inflight rather than the client's inflight */

    /* rpcz (metrics/rpcz.h): whether this call is recorded, decided when it is made; its attempts
     * in rpcz_att[0, rpcz_n) */
    int rpcz;
    int rpcz_n;
    int rpcz_last_answered; /* rpcz entry of the attempt whose answer was the last failure */
    int rpcz_cancelled;     /* ftrpc_call_cancel ended it */

    /* Not zeroed when a call is made: each is written before it is read (ft_call_make inits the two
     * buffers; tried entries count once written). Zeroing their ~650 bytes was half of making a
     * call. */
    ft_iobuf request;
    ft_iobuf attachment;
    ft_attempt slot[FT_CALL_SLOTS]; /* [0, nslots) zeroed by ft_call_make */
    ft_fail_tried tried;            /* [0, retry.ntried) */
    char last_text[256];            /* set with last_code by every failed attempt */
    ft_rpcz_call_attempt rpcz_att[FTRPC_RPCZ_MAX_ATTEMPTS]; /* [0, rpcz_n), when rpcz */
    char names[];                                           /* service \0 method \0 */
};

struct ftrpc_client {
    ftrpc_runtime *rt;
    ftrpc_client_options opts; /* defaults filled in */
    ft_naming_view *view;
    int view_listener;
    pthread_mutex_t cluster_lock; /* guards `cluster` (the pointer and taking a reference) */
    ft_cluster *cluster;
    atomic_uint cluster_gen; /* bumped after each new `cluster`: loops refresh their copy */
    ft_cluster_endpoint_ops endpoint_ops; /* how clusters make this client's endpoints */
    ft_retry_budget budget;
    ft_throttle throttle;  /* adaptive throttling of the client's calls (throttle.h) */
    ft_client_loop *loops; /* [rt->nloops] */
    atomic_int stopping;
    atomic_int inflight;   /* calls submitted and not completed */
    atomic_int open_conns; /* ft_cconn alive */
    atomic_llong retries, budget_exhausted, backups, backup_wins, cancels, backups_refused;
    atomic_llong tied_cancels; /* copies cancelled by a tied twin's "started" notice */
    /* Backups sent by their timer, by how late the timer ran against its due time (a clock read
     * at the callback): bucket i counts lateness below ft_backup_late_bounds_us[i], the last one
     * the rest. And backups that found no other endpoint than one a copy of the call is already
     * on. Read by bench_tail, to tell the timer's share of a backup's latency. */
    atomic_llong backup_late[FT_BACKUP_LATE_BUCKETS];
    atomic_llong backup_late_ns_sum, backup_same_endpoint;
    /* the lateness split: due to the loop's read of its timerfd (the kernel's wake-up, or the
     * loop busy when it fell due), and from that read to the callback (the IO callbacks of the
     * same iteration, which run first) */
    atomic_llong backup_late_wake_ns_sum, backup_late_queue_ns_sum;
    atomic_llong
        answers_read_by_caller; /* blocking calls completed by read_own_answer (call_blocking.c) */
    atomic_ullong next_call_id; /* the sequence part of the async calls' handles */
    ft_client_metrics metrics;
    char *auth_token;      /* copy of opts.auth_token */
    ft_tls_ctx *tls_ctx;   /* NULL: plain TCP; shared by every loop (read-only once made) */
    char *tls_server_name; /* copy of opts.tls.server_name */
    ftrpc_endpoint_codes *endpoint_codes;  /* copy of opts.endpoint_codes (names included) */
    struct ft_endpoint_reporter *reporter; /* the /endpoints page's view of this client */
    ft_rpcz_ring *rpcz;                    /* its recent calls for /rpcz; NULL: none */
    ft_gauge naming_size, naming_updates, naming_stale; /* discovery figures, read on demand */
    ft_gauge cancels_gauge, budget_exhausted_gauge, backups_refused_gauge; /* counters above */
    pthread_mutex_t free_lock; /* guards nothing but the condition below */
    pthread_cond_t free_cond;  /* signalled when inflight or open_conns reach 0 while stopping */
    /* A selective client's sub-clients and cluster balancer (selective.h); NULL for a plain
     * client, which then has a naming view. Immutable after creation. */
    struct ft_selective *selective;
    /* Set once a selective client owns this client: only that one may free it. */
    atomic_int owned;
};

/* client.c */
/* The client's own codes for `endpoint` (opts.endpoint_codes), or NULL. Any thread. */
const ftrpc_endpoint_codes *ft_client_endpoint_codes(const ftrpc_client *c, const char *endpoint);
ft_cconn *ft_client_get_conn(ftrpc_client *c, ft_loop *loop, ft_cluster_endpoint *ep, int *err);
void ft_client_count_down(ftrpc_client *c, atomic_int *counter);
/* The current cluster, referenced (never NULL once the client exists). Any thread. */
ft_cluster *ft_client_cluster_acquire(ftrpc_client *c);
/* While running `loop`: the current cluster, borrowed from the loop's cell (no lock, no locked
 * add while the cluster does not change); *epoch receives what ft_client_cluster_return needs.
 * Every borrow is returned on the same loop. */
ft_cluster *ft_client_cluster_borrow(ftrpc_client *c, const ft_loop *loop, unsigned *epoch);
void ft_client_cluster_return(ftrpc_client *c, const ft_loop *loop, ft_cluster *cl, unsigned epoch);
/* Counts a call submitted while running its loop in that loop's share of the in-flight count,
 * and counts it down there when it completes (on the same loop). */
void ft_client_count_up_here(ftrpc_client *c, const ft_loop *loop);
void ft_client_count_down_here(ftrpc_client *c, const ft_loop *loop);
/* On cc's loop: closes cc (gracefully: queued frames go out first) when its endpoint left the
 * service and no attempt waits on it any more. Call it after taking an attempt out of
 * cc->pending other than on a read (timeout, cancel): nothing else would notice it went idle. */
void ft_client_close_if_retired(ft_cconn *cc);
/* On cc's loop, after a request was queued on cc: arms the connection's health check unless it
 * runs already (client options health_check_ms, health_check_timeout_ms). */
void ft_client_conn_busy(ft_cconn *cc);
/* Queues a request to the builtin service ftrpc.Control (docs/protocol.md) on cc, whose answer
 * no attempt waits for (it is dropped on arrival). 0, or why it could not be queued. */
int ft_client_send_control(ft_cconn *cc, const char *method, const void *payload, size_t len,
                           int32_t timeout_ms);

/* client.c: a client without discovery (naming_url NULL in all but name): the selective
 * client's shell. Options validated and defaulted as ftrpc_client_new does. */
int ft_client_new_without_naming(const ftrpc_client_options *opts, ftrpc_client **out);

/* call.c: a response (or a bad frame) for an attempt of this connection's pending map, already
 * removed from it. */
void ft_call_on_response(ft_attempt *a, ft_parse_status st, ft_rpc_frame *f, const char *reason);
/* call.c: the server of a tied attempt (still in cc->pending) started executing it: the call's
 * other copies are cancelled. */
void ft_call_on_started(ft_attempt *a);
/* call.c: the connection the attempt waited on is gone; text (may be NULL) says why. */
void ft_call_on_conn_lost(ft_attempt *a, int code, const char *text);
/* call.c: fail every call of the loop with FTRPC_ESTOPPED (client free). */
void ft_call_stop_all(ft_client_loop *cl);
/* call.c: frees the loop's recycled calls (client free, once no call runs). */
void ft_call_cache_drain(ft_client_loop *cl);

/* call.c, for the blocking path (call_blocking.c) as for the async one: */
/* 0, or why the call may not be made (FTRPC_EINVAL, FTRPC_ESTOPPED). */
int ft_call_check_args(ftrpc_client *c, const char *service, const char *method,
                       const ftrpc_call_options *opts);
/* A call with its home loop picked and its options resolved, not yet started; NULL: no memory. */
ft_call *ft_call_make(ftrpc_client *c, const char *service, const char *method,
                      const ftrpc_buf *request, const ftrpc_buf *attachment,
                      const ftrpc_call_options *opts);
/* Starts the call on its home loop now when this thread runs that loop (async), else posts it. */
void ft_call_submit(ft_call *call);
/* ftrpc_call_async_sized with no attachment and a request the call takes over: the first len
 * bytes (0 < len <= request->used) of `request`, a block whose reference the caller holds (NULL:
 * an empty request). On
 * success the call owns that reference (the block becomes its request buffer's one slice, with no
 * block shared, moved or dropped); on failure it is still the caller's. For the typed client,
 * whose request is packed in place for the call alone. */
int ft_call_async_owned(ftrpc_client *c, const char *service, const char *method, ft_block *request,
                        uint32_t len, const ftrpc_call_options *opts, size_t opts_size,
                        ftrpc_call_cb cb, void *arg, ftrpc_call_id *id);
/* Starts the call: on its home loop, or with that loop borrowed. */
void ft_call_start(ft_call *call);
/* Completes the call with FTRPC_ERPCTIMEDOUT, as its deadline timer does. */
void ft_call_time_out(ft_call *call);

#endif
