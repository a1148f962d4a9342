/* ftrpc_server: exposes methods over baidu_std on one TCP port.
 *
 * Lifecycle: ftrpc_server_new -> ftrpc_server_add_method (any number) -> ftrpc_server_start ->
 * ... -> ftrpc_server_stop (graceful) -> ftrpc_server_free. Methods cannot be added after start.
 * These lifecycle functions may be called from any thread except an IO thread, and not
 * concurrently with each other on the same server.
 *
 * A request reaches its handler as an ftrpc_server_call. The handler runs on the connection's IO
 * thread (default) or on a worker thread (per-method option). It must finish the call exactly once,
 * with ftrpc_server_call_reply or ftrpc_server_call_fail, from any thread, at once or later; after
 * that the call pointer is invalid. A handler on an IO thread must not block.
 */
#ifndef FTRPC_SERVER_H
#define FTRPC_SERVER_H

#include "ftrpc/buf.h"
#include "ftrpc/common.h"
#include "ftrpc/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ftrpc_server ftrpc_server;
typedef struct ftrpc_server_call ftrpc_server_call;

/* A method handler. `call` stays valid until the handler finishes it; `arg` is the pointer given
 * at registration. */
typedef void (*ftrpc_handler_cb)(ftrpc_server_call *call, void *arg);

typedef enum {
    FTRPC_RUN_IN_IO_THREAD = 0, /* default: lowest latency; the handler must not block */
    FTRPC_RUN_IN_WORKER = 1,    /* a worker pool thread: for handlers that block or compute */
} ftrpc_run_mode;

/* Options structs grow at their end only and travel with their size (ftrpc/common.h, "Versions").
 */
/* Values of max_concurrency besides a count (docs/overload.md). 0 and -1 mean unlimited. */
/* brpc's "auto" limiter: the limit follows max_qps x ((2 + 0.3) x min_latency - latency),
 * recomputed once a second from the calls' latencies; never below the threads that run them */
#define FTRPC_CONCURRENCY_AUTO (-2)
/* brpc's "timeout" limiter: a call whose deadline (timeout_ms it was sent with; 500 ms when none)
 * is not longer than the average latency now is refused at once; at most 100 in flight */
#define FTRPC_CONCURRENCY_TIMEOUT (-3)

typedef struct ftrpc_method_options {
    ftrpc_run_mode run_mode; /* default FTRPC_RUN_IN_IO_THREAD */
    /* default 0: unlimited; past it requests get FTRPC_ELIMIT at once, with a pushback hint
     * (brpc's max_concurrency). Or FTRPC_CONCURRENCY_AUTO / FTRPC_CONCURRENCY_TIMEOUT */
    int max_concurrency;
} ftrpc_method_options;

/* Authentication (brpc's Authenticator): called on a connection's first request with its
 * authentication_data (NULL, 0 when the client sent none). Return 0 to accept (and optionally
 * write an identity, at most 127 bytes, that handlers read with ftrpc_server_call_identity), or
 * non-zero to refuse: the request gets FTRPC_ERPCAUTH and the connection closes. Runs on an IO
 * thread; must not block. */
typedef int (*ftrpc_authenticator_cb)(const uint8_t *auth_data, size_t len, char *identity,
                                      size_t identity_size, void *arg);

/* Client certificates of a TLS server (mutual TLS). */
typedef enum {
    FTRPC_TLS_CLIENT_CERT_NONE = 0,     /* default: not asked for */
    FTRPC_TLS_CLIENT_CERT_REQUIRED = 1, /* a client without a certificate that client_ca_file
                                         * verifies is refused (the handshake fails) */
    FTRPC_TLS_CLIENT_CERT_OPTIONAL = 2, /* asked for and verified when sent; a client without
                                         * one is served */
} ftrpc_tls_client_cert;

/* TLS on the server's port (docs/security.md). Zero means off. Files are PEM and are read by
 * ftrpc_server_new: the strings need not outlive it, and a later change to a file has no effect. */
typedef struct ftrpc_server_tls_options {
    const char *cert_file; /* default NULL: no TLS. The certificate chain, leaf first */
    const char *key_file;  /* the private key of cert_file (required with it) */
    /* default NULL: no client certificates. The CA bundle client certificates are checked
     * against; client_cert then says whether one is required (the default when this is set) */
    const char *client_ca_file;
    ftrpc_tls_client_cert client_cert;
    /* default 0: one port serves plain and TLS connections (a first byte 0x16, a ClientHello,
     * starts TLS; baidu_std and HTTP are sniffed from the decrypted bytes). 1: plain connections
     * are closed at their first byte (counted in ftrpc_server_stats.plain_refused) */
    int force;
    int64_t reserved[4]; /* zero: room for fields to come without moving the server's options */
} ftrpc_server_tls_options;

/* gRPC over HTTP/2 on the server's port (docs/grpc.md). Zero means the default; the limits guard
 * against greedy peers, each as gRPC or nghttp2 sets it where they have one. */
typedef struct ftrpc_server_grpc_options {
    /* default 100 (as nghttp2's and Envoy's advice for servers facing the internet): the
     * SETTINGS_MAX_CONCURRENT_STREAMS sent; a stream past it is refused by nghttp2. It is also
     * bounded by max_inflight_per_connection */
    uint32_t max_concurrent_streams;
    /* default 16 KiB (gRPC C-core's hard limit on metadata): SETTINGS_MAX_HEADER_LIST_SIZE; a
     * stream whose header block is larger is reset */
    uint32_t max_header_list_size;
    /* default 1 MiB: the stream and connection flow-control windows offered (SETTINGS and a
     * connection WINDOW_UPDATE); a stream's request is bounded by max_body_size as well */
    uint32_t initial_window_size;
    /* default 1000 frames at once, then 33 a second (as nghttp2 1.57's fix of CVE-2023-44487,
     * "rapid reset"): RST_STREAM frames a client may send; past it the connection is closed */
    uint32_t rst_stream_burst;
    uint32_t rst_stream_per_second;
    /* default 100 at once, then 10 a second: PING and SETTINGS frames (each counted apart) a
     * client may send; past it the connection is closed with a logged reason */
    uint32_t ping_settings_burst;
    uint32_t ping_settings_per_second;
    int enabled; /* default 0: on. -1: off (the HTTP/2 preface is answered as HTTP/1.1 with 505) */
    int64_t reserved[4]; /* zero: room for fields to come */
} ftrpc_server_grpc_options;

typedef struct ftrpc_server_options {
    ftrpc_runtime *runtime;     /* default NULL: the shared default runtime */
    uint32_t max_body_size;     /* default 64 MiB, as brpc: larger frames close the connection */
    int worker_threads;         /* default 0: one per core; used by FTRPC_RUN_IN_WORKER methods */
    size_t max_unwritten_bytes; /* default 64 MiB per connection: past it replies fail
                                   (EOVERCROWDED); over HTTP/2 the answers waiting for the
                                   peer's flow-control window count too */
    int stop_grace_ms; /* default 5000: how long ftrpc_server_stop waits for work in flight */
    /* Discovery (docs/discovery.md): when set, the server registers itself there once started,
     * refreshes its entry every register_interval_ms, and removes it first thing on stop. Every
     * string of these options is copied by ftrpc_server_new. */
    const char *register_url;  /* default NULL: not registered; e.g. "dir:///tmp/reg?service=X" */
    const char *register_addr; /* default: the listen address ("0.0.0.0" becomes 127.0.0.1) */
    uint32_t register_weight;  /* default 100 */
    const char *register_tags; /* default none; "a|b" */
    int64_t register_ttl_ms;   /* default 90000 (go-micro) */
    int64_t register_interval_ms; /* default 30000 (go-micro); must be < register_ttl_ms */
    /* Security and limits (docs/security.md). */
    ftrpc_authenticator_cb authenticator; /* default NULL: no authentication */
    void *authenticator_arg;
    const char *auth_token; /* shortcut: accept exactly this token (constant-time compare) */
    int max_connections;    /* default 10000; past it new connections close at once */
    int idle_timeout_ms;    /* default 600000 (brpc's idle_timeout_s is off by default;
                             * 10 min bounds what idle peers cost); -1: never */
    int read_timeout_ms;    /* default 10000: a started frame must complete within it
                             * (slowloris), as must an HTTP/2 stream's request within it of its
                             * HEADERS (the stream is reset); -1: never */
    int max_inflight_per_connection; /* default 1024; past it requests get FTRPC_ELIMIT */
    /* default 10000: an HTTP request whose header is not complete this long after its first byte
     * (or a connection whose first bytes do not name a protocol) is closed (slowloris guard) */
    int http_header_timeout_ms;
    /* default off. A TLS handshake must also complete within http_header_timeout_ms. */
    ftrpc_server_tls_options tls;
    /* default 0: with authentication configured, HTTP requests need the credential too
     * ("Authorization: Bearer TOKEN"), builtin pages included, except /health. 1: the builtin
     * pages (/status, /vars, /metrics, /endpoints, /rpcz, the console) are served to anyone, as
     * brpc serves them; method calls still need the credential (docs/security.md) */
    int public_builtin_pages;
    /* default 256 MiB: the bytes that requests not yet whole may hold, summed over every
     * connection (a started baidu_std frame, an HTTP request whose body is arriving). A read that
     * takes the sum past it closes its connection (counted in pending_refused), so that many slow
     * senders cannot each hold max_body_size until read_timeout_ms */
    size_t max_pending_request_bytes;
    /* default NULL: a new UUID v4 per start, as go-micro's uuid.New() per server. The instance id
     * the registration carries (register_url): 1..63 chars of [A-Za-z0-9_.-], shown in the
     * registry entry, by `ftrpc registry ls` and in clients' views (docs/discovery.md). A bad id
     * fails ftrpc_server_start with FTRPC_EINVAL. Copied by ftrpc_server_new */
    const char *register_id;
    /* default 0: unlimited. The calls in flight over every method (brpc's
     * ServerOptions.max_concurrency): past it requests get FTRPC_ELIMIT at once with a pushback
     * hint, before the methods' own limits. A count, FTRPC_CONCURRENCY_AUTO or _TIMEOUT; the auto
     * limit never goes below worker_threads (docs/overload.md) */
    int max_concurrency;
    /* gRPC on the same port (docs/grpc.md): on by default, with the limits above */
    ftrpc_server_grpc_options grpc;
    /* TCP keepalive on accepted connections, as the client's on its own (docs/server.md, Dead
     * clients): the first probe after this many idle seconds. Default 10 (the client's; brpc's
     * keepalive idle when enabled; the kernel's 7200); -1: off. Up to 32767, the interval too,
     * the count up to 127 (Linux's bounds; past them ftrpc_server_new says FTRPC_EINVAL) */
    int tcp_keepalive_idle_s;
    int tcp_keepalive_interval_s; /* default 2: between unanswered probes */
    int tcp_keepalive_count;      /* default 3: unanswered probes before the connection closes */
    /* TCP_USER_TIMEOUT on accepted connections: an answer the client has not acknowledged for
     * this long closes the connection. Default 0 and -1: off (the client's default is 5000: a
     * server's answers wait on its clients' reading, which max_unwritten_bytes bounds already) */
    int tcp_user_timeout_ms;
} ftrpc_server_options;

/* Makes a server. opts may be NULL. On success *out is the caller's (ftrpc_server_free).
 * FTRPC_EINVAL for a bad option; FTRPC_ETLS when a TLS file cannot be used (OpenSSL's reason is
 * logged). */
FTRPC_API int ftrpc_server_new_sized(const ftrpc_server_options *opts, size_t opts_size,
                                     ftrpc_server **out);
static inline int ftrpc_server_new(const ftrpc_server_options *opts, ftrpc_server **out)
{
    return ftrpc_server_new_sized(opts, sizeof(ftrpc_server_options), out);
}
/* Registers service/method (e.g. "example.EchoService", "Echo"): both strings are copied. mopts
 * may be NULL. FTRPC_EEXIST when registered already, FTRPC_ESTOPPED after start. */
FTRPC_API int ftrpc_server_add_method_sized(ftrpc_server *server, const char *service,
                                            const char *method, ftrpc_handler_cb handler, void *arg,
                                            const ftrpc_method_options *mopts, size_t mopts_size);
static inline int ftrpc_server_add_method(ftrpc_server *server, const char *service,
                                          const char *method, ftrpc_handler_cb handler, void *arg,
                                          const ftrpc_method_options *mopts)
{
    return ftrpc_server_add_method_sized(server, service, method, handler, arg, mopts,
                                         sizeof(ftrpc_method_options));
}
/* Listens on "host:port" (port 0 picks a free one) and starts serving. Listening
 * fails with FTRPC_EADDR for an address that is malformed, unresolvable or not this host's,
 * FTRPC_EADDRINUSE when the port is taken, FTRPC_ESYS for any other reason (logged with errno). */
FTRPC_API int ftrpc_server_start(ftrpc_server *server, const char *listen_addr);
/* The port actually listened on (after start), or 0. */
FTRPC_API int ftrpc_server_port(const ftrpc_server *server);
/* The instance id the server registered with (register_id, or the UUID made at start), "" when
 * it has no register_url or was not started. Static storage of the server: valid until
 * ftrpc_server_free. Any thread, after ftrpc_server_start returned. */
FTRPC_API const char *ftrpc_server_register_id(const ftrpc_server *server);
/* Graceful stop: stops accepting, answers new requests FTRPC_ELOGOFF, waits up to grace_ms
 * (negative: the server's stop_grace_ms) for calls in flight to finish, then closes every
 * connection. Blocks the caller. Returns 0, or FTRPC_ERPCTIMEDOUT when calls were still in flight
 * at the end of the grace period (their connections close; a late reply is dropped). Calling it
 * again does nothing. The listener closes first, so a client that needs a new connection during
 * the stop gets a connection error: FTRPC_ECONNREFUSED, or FTRPC_ECONNECT / FTRPC_EEOF when its
 * handshake raced the close (tests/integration/test_graceful_stop.c). */
FTRPC_API int ftrpc_server_stop(ftrpc_server *server, int grace_ms);
/* Stops (if still running, with the default grace) and frees. NULL does nothing. */
FTRPC_API void ftrpc_server_free(ftrpc_server *server);

/* ---- admin port: the builtin pages (/health, /status, /vars, /metrics, /endpoints, /rpcz, the
 * console) for a process that serves no methods, e.g. one that is only a client. ---- */
typedef struct ftrpc_admin ftrpc_admin;
/* Listens on "host:port" (port 0: any free one) and serves the builtin pages over HTTP. opts may
 * be NULL; they are a server's options (authentication, public_builtin_pages, TLS and the limits
 * apply as on a server's port) and are read as ftrpc_server_new reads them. On success *out is
 * the caller's (ftrpc_admin_free). Any thread except an IO thread. */
FTRPC_API int ftrpc_admin_new_sized(const char *listen_addr, const ftrpc_server_options *opts,
                                    size_t opts_size, ftrpc_admin **out);
static inline int ftrpc_admin_new(const char *listen_addr, const ftrpc_server_options *opts,
                                  ftrpc_admin **out)
{
    return ftrpc_admin_new_sized(listen_addr, opts, sizeof(ftrpc_server_options), out);
}
/* The port listened on. */
FTRPC_API int ftrpc_admin_port(const ftrpc_admin *admin);
/* Stops serving and frees. NULL does nothing. Any thread except an IO thread. */
FTRPC_API void ftrpc_admin_free(ftrpc_admin *admin);

/* ---- inside a handler: the request (valid until the call is finished) ---- */
FTRPC_API const char *ftrpc_server_call_service(const ftrpc_server_call *call);
FTRPC_API const char *ftrpc_server_call_method(const ftrpc_server_call *call);
/* The request payload and attachment; the handler may read them, or share them into its reply. */
FTRPC_API const ftrpc_buf *ftrpc_server_call_request(const ftrpc_server_call *call);
FTRPC_API const ftrpc_buf *ftrpc_server_call_attachment(const ftrpc_server_call *call);
/* Milliseconds left until the caller's deadline (from the request's timeout_ms); may be <= 0. */
FTRPC_API int64_t ftrpc_server_call_remaining_ms(const ftrpc_server_call *call);
/* The peer's address, "ip:port". */
FTRPC_API const char *ftrpc_server_call_peer(const ftrpc_server_call *call);
/* The identity the authenticator attached to this call's connection ("" without one). */
FTRPC_API const char *ftrpc_server_call_identity(const ftrpc_server_call *call);
/* The value of the request's metadata `key` (a gRPC call's custom headers, compared without
 * regard to case; a "-bin" key's value as sent, base64), or NULL when the call has none of that
 * name. baidu_std and HTTP/1.1 calls have no metadata: always NULL. Valid until the call is
 * finished; any thread the handler runs on. */
FTRPC_API const char *ftrpc_server_call_metadata(const ftrpc_server_call *call, const char *key);
/* The i-th metadata entry (0 <= i): 1 with *key and *value set (valid until the call is
 * finished), 0 past the last. Pseudo-headers and the headers gRPC itself uses (content-type, te,
 * grpc-timeout, grpc-encoding, grpc-accept-encoding, authorization, user-agent) are left out. */
FTRPC_API int ftrpc_server_call_metadata_at(const ftrpc_server_call *call, size_t i,
                                            const char **key, const char **value);

/* Changes a concurrency limit while the server runs (or before): service and method NULL for the
 * server-wide one, else the method's. value as max_concurrency (a count, 0 or -1 for none,
 * FTRPC_CONCURRENCY_AUTO, FTRPC_CONCURRENCY_TIMEOUT); an adaptive limiter starts learning again.
 * Calls in flight finish; the new limit counts the calls admitted from now on. 0, FTRPC_EINVAL
 * (bad value, or one of service/method NULL), FTRPC_ENOMETHOD. Any thread; the admin page
 * POST /limits does the same (docs/overload.md). */
FTRPC_API int ftrpc_server_set_max_concurrency(ftrpc_server *server, const char *service,
                                               const char *method, int value);
/* Reads a max_concurrency value as text: a count, "auto", "timeout", or "none" / "unlimited" (0).
 * 0 with *out set, or FTRPC_EINVAL. Any thread. */
FTRPC_API int ftrpc_max_concurrency_parse(const char *text, int *out);
/* Reads a limit (service and method as above): *value the configured value, *effective the limit
 * in force now (the auto limiter's figure; 0: none). Either may be NULL. Any thread. */
FTRPC_API int ftrpc_server_get_max_concurrency(const ftrpc_server *server, const char *service,
                                               const char *method, int *value, int *effective);

/* Server-wide figures of the limits (for tests and tools). */
typedef struct ftrpc_server_stats {
    int connections;               /* open now */
    int64_t connections_refused;   /* closed at accept: max_connections reached */
    int64_t idle_closed;           /* closed by idle_timeout_ms */
    int64_t read_timeouts;         /* closed by read_timeout_ms (a frame that did not complete) */
    int64_t auth_failures;         /* connections refused by the authenticator */
    int64_t tls_failures;          /* TLS connections closed by a failed handshake or record */
    int64_t plain_refused;         /* plain connections closed because tls.force is set */
    int64_t pending_refused;       /* closed: max_pending_request_bytes reached */
    int64_t pending_request_bytes; /* held now by requests not yet whole */
} ftrpc_server_stats;
FTRPC_API void ftrpc_server_stats_get_sized(const ftrpc_server *server, ftrpc_server_stats *out,
                                            size_t out_size);
/* Fills *out. Any thread. */
static inline void ftrpc_server_stats_get(const ftrpc_server *server, ftrpc_server_stats *out)
{
    ftrpc_server_stats_get_sized(server, out, sizeof(ftrpc_server_stats));
}

/* 1 once the client cancelled this call (it lost a backup race or the caller gave up) or its
 * connection closed (nobody can receive the answer any more, as brpc and gRPC): a
 * long-running handler may stop early and finish the call with any answer (it is dropped). A
 * cancelled call still queued for a worker is never started. Any thread. */
FTRPC_API int ftrpc_server_call_is_canceled(const ftrpc_server_call *call);

/* Per-method figures (for tests and tools; the metrics pages show more). */
typedef struct ftrpc_method_stats {
    int64_t calls;              /* handlers started */
    int64_t rejected;           /* ELIMIT, deadline passed before start, stopping */
    int64_t canceled_unstarted; /* cancelled while queued: never executed */
    int concurrency;            /* in flight now */
} ftrpc_method_stats;
/* 0, or FTRPC_ENOMETHOD when the method is not registered. Any thread. */
FTRPC_API int ftrpc_server_method_stats_sized(const ftrpc_server *server, const char *service,
                                              const char *method, ftrpc_method_stats *out,
                                              size_t out_size);
static inline int ftrpc_server_method_stats(const ftrpc_server *server, const char *service,
                                            const char *method, ftrpc_method_stats *out)
{
    return ftrpc_server_method_stats_sized(server, service, method, out,
                                           sizeof(ftrpc_method_stats));
}

/* Finishes the call with a response. response and attachment may be NULL (empty); their bytes are
 * shared, not copied, and the caller keeps its buffers. Any thread. Returns 0, or an error when the
 * reply could not be queued (the call is finished either way). */
FTRPC_API int ftrpc_server_call_reply(ftrpc_server_call *call, const ftrpc_buf *response,
                                      const ftrpc_buf *attachment);
/* Finishes the call with an error. A code >= FTRPC_BUSINESS_CODE_MIN (or negative) is a business
 * error the client sees as such; a code in brpc's framework range (e.g. 2004) is seen as that RPC
 * error (useful to shed load: ELIMIT is retried elsewhere). text may be NULL. Any thread. */
FTRPC_API int ftrpc_server_call_fail(ftrpc_server_call *call, int code, const char *text);

#ifdef __cplusplus
}
#endif
#endif
