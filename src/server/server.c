/* ftrpc_server: accepts connections, parses baidu_std requests, dispatches them to handlers on the
 * IO thread or the worker pool, and writes replies from any thread back through the connection's
 * loop.
 *
 * Invariants: a call holds a reference on its connection until it is finished, so a reply that
 * comes after the peer left is dropped rather than written to freed memory; `inflight` counts
 * calls from dispatch to finish, which is what graceful stop waits on; every request that is
 * parsed gets exactly one reply unless its connection is gone.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/aligned_alloc.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/sized_options.h"
#include "protocol/baidu_std.h"
#include "server/server_internal.h"
#include "protocol/grpc.h"
#include "protocol/http.h"

/* ---- method table ---- */

static uint64_t name_hash(const char *service, const char *method)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = service; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    h = (h ^ '/') * 1099511628211ull;
    for (const char *p = method; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    return h;
}

static ft_method *find_method(const ftrpc_server *s, const char *service, const char *method)
{
    if (!s->table) return NULL;
    size_t i = (size_t)name_hash(service, method) & s->table_mask;
    while (s->table[i]) {
        ft_method *m = s->table[i];
        if (strcmp(m->service, service) == 0 && strcmp(m->method, method) == 0) return m;
        i = (i + 1) & s->table_mask;
    }
    return NULL;
}

static int service_known(const ftrpc_server *s, const char *service)
{
    for (size_t i = 0; i < s->nmethods; i++)
        if (strcmp(s->methods[i]->service, service) == 0) return 1;
    return 0;
}

static int rebuild_table(ftrpc_server *s)
{
    size_t cap = 16;
    while (cap < s->nmethods * 2)
        cap *= 2;
    ft_method **t = calloc(cap, sizeof *t);
    if (!t) return FTRPC_ENOMEM;
    for (size_t k = 0; k < s->nmethods; k++) {
        ft_method *m = s->methods[k];
        size_t i = (size_t)name_hash(m->service, m->method) & (cap - 1);
        while (t[i])
            i = (i + 1) & (cap - 1);
        t[i] = m;
    }
    free(s->table);
    s->table = t;
    s->table_mask = cap - 1;
    return 0;
}

/* ---- lifecycle ---- */

int ftrpc_server_new_sized(const ftrpc_server_options *opts, size_t opts_size, ftrpc_server **out)
{
    ftrpc_server_options o;
    if (!out || ft_sized_options_read(&o, sizeof o, opts, opts_size) != 0) return FTRPC_EINVAL;
    if (o.worker_threads < 0 || o.stop_grace_ms < 0) return FTRPC_EINVAL;
    if (o.max_body_size == 0) o.max_body_size = FT_BAIDU_STD_DEFAULT_MAX_BODY;
    if (o.max_unwritten_bytes == 0) o.max_unwritten_bytes = (size_t)64 << 20;
    if (o.stop_grace_ms == 0) o.stop_grace_ms = 5000;
    if (o.http_header_timeout_ms < 0) return FTRPC_EINVAL;
    if (o.http_header_timeout_ms == 0) o.http_header_timeout_ms = 10000;
    if (o.max_connections < 0 || o.idle_timeout_ms < -1 || o.read_timeout_ms < -1 ||
        o.max_inflight_per_connection < 0)
        return FTRPC_EINVAL;
    if (!ft_keepalive_settings_valid(o.tcp_keepalive_idle_s, o.tcp_keepalive_interval_s,
                                     o.tcp_keepalive_count, o.tcp_user_timeout_ms)) {
        FT_WARN("server options: a dead-connection setting is out of range (keepalive idle -1 to "
                "32767, interval 0 to 32767, count 0 to 127, user timeout -1 or more)");
        return FTRPC_EINVAL;
    }
    ft_keepalive_fill_defaults(&o.tcp_keepalive_idle_s, &o.tcp_keepalive_interval_s,
                               &o.tcp_keepalive_count);
    if (o.max_connections == 0) o.max_connections = 10000;
    if (o.idle_timeout_ms == 0) o.idle_timeout_ms = 600000;
    if (o.read_timeout_ms == 0) o.read_timeout_ms = 10000;
    if (o.max_inflight_per_connection == 0) o.max_inflight_per_connection = 1024;
    if (o.max_pending_request_bytes == 0) o.max_pending_request_bytes = (size_t)256 << 20;
    if (o.max_concurrency < -1 && o.max_concurrency != FTRPC_CONCURRENCY_AUTO &&
        o.max_concurrency != FTRPC_CONCURRENCY_TIMEOUT) {
        FT_WARN("server options: max_concurrency %d is neither a count nor "
                "FTRPC_CONCURRENCY_AUTO / _TIMEOUT",
                o.max_concurrency);
        return FTRPC_EINVAL;
    }
    if (o.grpc.enabled < -1 || o.grpc.enabled > 0 || o.grpc.initial_window_size > 0x7fffffffu) {
        FT_WARN("server options: grpc.enabled is 0 or -1, grpc.initial_window_size < 2^31");
        return FTRPC_EINVAL;
    }
    if (o.grpc.max_concurrent_streams == 0) o.grpc.max_concurrent_streams = 100;
    if (o.grpc.max_header_list_size == 0) o.grpc.max_header_list_size = 16384;
    if (o.grpc.initial_window_size == 0) o.grpc.initial_window_size = 1u << 20;
    if (o.grpc.rst_stream_burst == 0) o.grpc.rst_stream_burst = 1000;
    if (o.grpc.rst_stream_per_second == 0) o.grpc.rst_stream_per_second = 33;
    if (o.grpc.ping_settings_burst == 0) o.grpc.ping_settings_burst = 100;
    if (o.grpc.ping_settings_per_second == 0) o.grpc.ping_settings_per_second = 10;
    if (o.tls.client_cert < FTRPC_TLS_CLIENT_CERT_NONE ||
        o.tls.client_cert > FTRPC_TLS_CLIENT_CERT_OPTIONAL || (o.tls.force && !o.tls.cert_file) ||
        (!o.tls.cert_file && (o.tls.key_file || o.tls.client_ca_file))) {
        FT_WARN("server options: TLS needs tls.cert_file (with key_file) for its other options");
        return FTRPC_EINVAL;
    }
    ft_tls_ctx *tls_ctx = NULL;
    if (o.tls.cert_file) {
        static const enum ft_tls_peer_cert PEER[] = {
            [FTRPC_TLS_CLIENT_CERT_NONE] = FT_TLS_PEER_CERT_REQUIRED,
            [FTRPC_TLS_CLIENT_CERT_REQUIRED] = FT_TLS_PEER_CERT_REQUIRED,
            [FTRPC_TLS_CLIENT_CERT_OPTIONAL] = FT_TLS_PEER_CERT_OPTIONAL};
        ft_tls_ctx_options to = {
            .is_server = 1,
            .cert_file = o.tls.cert_file,
            .key_file = o.tls.key_file,
            .ca_file = o.tls.client_ca_file,
            /* a client CA without a mode means required: asking for certificates and then
             * serving clients without one is a choice to make explicitly */
            .peer_cert = o.tls.client_ca_file ? PEER[o.tls.client_cert] : FT_TLS_PEER_CERT_NONE};
        int rc = ft_tls_ctx_new(&to, &tls_ctx, NULL, 0);
        if (rc != 0) return rc;
    }
    o.tls.cert_file = o.tls.key_file = o.tls.client_ca_file = NULL; /* read; not kept */
    ftrpc_runtime *rt = ft_runtime_or_default(o.runtime);
    ftrpc_server *s = rt ? calloc(1, sizeof *s) : NULL;
    if (!s) {
        ft_tls_ctx_free(tls_ctx);
        return FTRPC_ENOMEM;
    }
    s->tls_ctx = tls_ctx;
    s->rt = rt;
    s->opts = o;
    /* the caller's strings need not outlive new: the server keeps copies (register_* are read in
     * start only) */
    s->opts.auth_token = s->opts.register_url = s->opts.register_addr = s->opts.register_tags =
        s->opts.register_id = NULL;
    s->auth_token = o.auth_token ? strdup(o.auth_token) : NULL;
    s->register_url = o.register_url ? strdup(o.register_url) : NULL;
    s->register_addr = o.register_addr ? strdup(o.register_addr) : NULL;
    s->register_tags = o.register_tags ? strdup(o.register_tags) : NULL;
    s->register_id = o.register_id ? strdup(o.register_id) : NULL;
    s->opts.auth_token = s->auth_token;
    s->loop_sessions = calloc((size_t)rt->nloops, sizeof(ft_list));
    s->per_loop = calloc((size_t)rt->nloops, sizeof *s->per_loop);
    if ((o.auth_token && !s->auth_token) || (o.register_url && !s->register_url) ||
        (o.register_addr && !s->register_addr) || (o.register_tags && !s->register_tags) ||
        (o.register_id && !s->register_id) || !s->loop_sessions || !s->per_loop) {
        free(s->auth_token);
        free(s->register_url);
        free(s->register_addr);
        free(s->register_tags);
        free(s->register_id);
        free(s->loop_sessions);
        free(s->per_loop);
        ft_tls_ctx_free(tls_ctx);
        free(s);
        return FTRPC_ENOMEM;
    }
    atomic_init(&s->state, FT_SERVER_NEW);
    /* the auto limit's floor: the worker pool (one thread a core by default, as the loops) */
    ft_limit_init(&s->limit, o.max_concurrency, ft_server_default_workers(s));
    pthread_mutex_init(&s->stop_lock, NULL);
    pthread_cond_init(&s->stop_cond, NULL);
    for (int i = 0; i < s->rt->nloops; i++)
        ft_list_init(&s->loop_sessions[i]);
    *out = s;
    return 0;
}

int ftrpc_server_add_method_sized(ftrpc_server *s, const char *service, const char *method,
                                  ftrpc_handler_cb handler, void *arg,
                                  const ftrpc_method_options *mopts_in, size_t mopts_size)
{
    ftrpc_method_options mo;
    if (ft_sized_options_read(&mo, sizeof mo, mopts_in, mopts_size) != 0) return FTRPC_EINVAL;
    return ft_server_add_method(s, service, method, handler, arg, &mo, NULL);
}

int ft_server_has_method(const ftrpc_server *s, const char *service, const char *method)
{
    return find_method(s, service, method) != NULL;
}

int ft_server_add_method(ftrpc_server *s, const char *service, const char *method,
                         ftrpc_handler_cb handler, void *arg, const ftrpc_method_options *mopts,
                         const ProtobufCMethodDescriptor *pb_method)
{
    if (!s || !service || !method || !handler || !*service || !*method) return FTRPC_EINVAL;
    if ((mopts->max_concurrency < -1 && mopts->max_concurrency != FTRPC_CONCURRENCY_AUTO &&
         mopts->max_concurrency != FTRPC_CONCURRENCY_TIMEOUT) ||
        (mopts->run_mode != FTRPC_RUN_IN_IO_THREAD && mopts->run_mode != FTRPC_RUN_IN_WORKER))
        return FTRPC_EINVAL;
    if (atomic_load(&s->state) != FT_SERVER_NEW) return FTRPC_ESTOPPED;
    if (find_method(s, service, method)) return FTRPC_EEXIST;
    ft_method *m = ft_aligned_calloc(1, sizeof *m, alignof(ft_method));
    ft_method **grown = realloc(s->methods, (s->nmethods + 1) * sizeof *grown);
    if (!m || !grown) {
        free(m);
        if (grown) s->methods = grown;
        return FTRPC_ENOMEM;
    }
    s->methods = grown;
    m->service = strdup(service);
    m->method = strdup(method);
    m->service_len = strlen(service);
    m->method_len = strlen(method);
    m->nloops = s->rt->nloops;
    m->loop_concurrency = calloc((size_t)m->nloops, sizeof *m->loop_concurrency);
    ft_counter_init(&m->calls);
    if (!m->service || !m->method || !m->loop_concurrency || ft_method_metrics_init(m) != 0) {
        free(m->service);
        free(m->method);
        free(m->loop_concurrency);
        free(m);
        return FTRPC_ENOMEM;
    }
    m->handler = handler;
    m->arg = arg;
    m->opts = *mopts;
    /* the auto limit's floor: the threads that run the method's calls */
    ft_limit_init(&m->limit, mopts->max_concurrency,
                  mopts->run_mode == FTRPC_RUN_IN_WORKER ? ft_server_default_workers(s)
                                                         : s->rt->nloops);
    m->pb_method = pb_method;
    s->methods[s->nmethods++] = m;
    return rebuild_table(s);
}

static void session_on_close(ft_conn *c, int reason);
static int session_on_read(ft_conn *c);
static int session_on_flush(ft_conn *c)
{
    ft_session *sess = c->owner;
    return sess->grpc ? ft_grpc_session_on_flush(sess) : 0;
}
static const ft_conn_handler SESSION_HANDLER = {session_on_read, NULL, session_on_close,
                                                session_on_flush};

struct accept_task {
    ft_task task;
    ftrpc_server *server;
    ft_loop *loop;
    int fd;
};

/* A loop's own count (per_loop[].inflight, loop_concurrency[].n): only the thread running the
 * loop writes it, so a load and a store do; the release pairs with the sums' acquire loads. */
static void loop_count_add(atomic_int *n, int delta)
{
    atomic_store_explicit(n, atomic_load_explicit(n, memory_order_relaxed) + delta,
                          memory_order_release);
}

int ft_server_calls_in_flight(ftrpc_server *s)
{
    int n = 0;
    for (int i = 0; i < s->rt->nloops; i++)
        n += atomic_load_explicit(&s->per_loop[i].inflight, memory_order_acquire);
    return n;
}

static int sessions_open(ftrpc_server *s)
{
    return atomic_load(&s->sessions);
}

int ft_method_concurrency(ft_method *m)
{
    int n = atomic_load_explicit(&m->limit.inflight, memory_order_relaxed);
    for (int i = 0; i < m->nloops; i++)
        n += atomic_load_explicit(&m->loop_concurrency[i].n, memory_order_relaxed);
    return n;
}

/* The loop's call is finished: its loop's in-flight count goes down, and a stop waiting for the
 * last call hears of it. */
static void count_down_call(ftrpc_server *s, ft_loop *loop)
{
    atomic_int *n = &s->per_loop[loop->index].inflight;
    if (atomic_load_explicit(&s->state, memory_order_acquire) == FT_SERVER_RUNNING) {
        loop_count_add(n, -1);
        return;
    }
    pthread_mutex_lock(&s->stop_lock);
    loop_count_add(n, -1);
    pthread_cond_broadcast(&s->stop_cond); /* the waiter sums the loops' counts again */
    pthread_mutex_unlock(&s->stop_lock);
}

/* Decrements a counter that ftrpc_server_stop/free may be waiting on. While the server runs
 * nobody waits, so no lock; otherwise the decrement happens under stop_lock, so that the waiter
 * cannot see zero and free the server before this thread is done touching it. */
static void count_down(ftrpc_server *s, atomic_int *counter)
{
    if (atomic_load_explicit(&s->state, memory_order_acquire) == FT_SERVER_RUNNING) {
        atomic_fetch_sub(counter, 1);
        return;
    }
    pthread_mutex_lock(&s->stop_lock);
    if (atomic_fetch_sub(counter, 1) == 1) pthread_cond_broadcast(&s->stop_cond);
    pthread_mutex_unlock(&s->stop_lock);
}

static void on_idle_timeout(ft_timer *t);

/* (Re)starts the session's idle timer: idle_timeout_ms from now, when the server has one. */
static void idle_timer_restart(ft_session *sess)
{
    int idle_ms = sess->server->opts.idle_timeout_ms;
    if (idle_ms > 0)
        ft_timer_start(sess->loop, &sess->idle_timer,
                       ft_loop_now(sess->loop) + (int64_t)idle_ms * FT_NS_PER_MS, on_idle_timeout);
}

static void on_idle_timeout(ft_timer *t)
{
    ft_session *sess = ft_container_of(t, ft_session, idle_timer);
    ftrpc_server *s = sess->server;
    if (ft_idmap_count(&sess->calls) > 0) {
        idle_timer_restart(sess); /* waiting for our own handlers is not idleness */
        return;
    }
    /* A peer that sends nothing but still reads a large reply, however slowly, is not idle: the
     * kernel took bytes of it since the last look. One that stopped reading is cut off one or two
     * idle timeouts after it stopped (the kernel's buffers fill first). The first look only takes
     * the count: a reply queued in this very loop turn, before its first flush, has had no chance
     * to be taken. */
    size_t unwritten = ft_conn_unwritten(sess->conn);
    uint64_t sent = ft_conn_bytes_sent(sess->conn);
    if (unwritten > 0 && sent != sess->idle_sent) {
        sess->idle_sent = sent;
        idle_timer_restart(sess);
        return;
    }
    atomic_fetch_add(&s->idle_closed, 1);
    /* replies still queued are ones the silent peer is not reading either: waiting to flush them
     * would keep the connection, and its queue, for ever */
    if (unwritten > 0) {
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN,
                           "closing %s: peer does not read its replies (%zu bytes unwritten, "
                           "none taken for %d ms)",
                           sess->conn->peer, unwritten, s->opts.idle_timeout_ms);
        ft_conn_close(sess->conn, FTRPC_EOVERCROWDED, 1);
    } else {
        FT_LOG_RATELIMITED(FTRPC_LOG_INFO, "closing %s: idle for %d ms", sess->conn->peer,
                           s->opts.idle_timeout_ms);
        ft_conn_close(sess->conn, 0, 0);
    }
}

void ft_server_count_read_timeout(ft_session *sess)
{
    atomic_fetch_add(&sess->server->read_timeouts, 1);
}

static void on_read_timeout(ft_timer *t)
{
    ft_session *sess = ft_container_of(t, ft_session, read_timer);
    ftrpc_server *s = sess->server;
    ft_server_count_read_timeout(sess);
    FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "closing %s: a frame did not complete within %d ms",
                       sess->conn->peer, s->opts.read_timeout_ms);
    ft_conn_close(sess->conn, FTRPC_EREQUEST, 1);
}

static void adopt_on_loop(ft_task *t)
{
    struct accept_task *at = (struct accept_task *)t;
    ftrpc_server *s = at->server;
    if (atomic_load(&s->state) != FT_SERVER_RUNNING) {
        close(at->fd);
        free(at);
        count_down(s, &s->sessions);
        return;
    }
    ft_session *sess = calloc(1, sizeof *sess);
    ft_conn *c = NULL;
    if (!sess || ft_conn_adopt(at->loop, at->fd, s->opts.max_unwritten_bytes, &SESSION_HANDLER,
                               sess, &c) != 0) {
        if (!sess) close(at->fd);
        free(sess);
        free(at);
        count_down(s, &s->sessions);
        return;
    }
    /* a client host that vanished (power loss, a partition) sends no RST: keepalive finds its
     * idle connections, as the client's own does (a failure to set it is logged, not fatal) */
    (void)ft_conn_set_keepalive(c, s->opts.tcp_keepalive_idle_s, s->opts.tcp_keepalive_interval_s,
                                s->opts.tcp_keepalive_count, s->opts.tcp_user_timeout_ms);
    sess->conn = c;
    sess->server = s;
    sess->loop = at->loop;
    sess->idle_sent = UINT64_MAX; /* no look yet: the first finds the peer taking bytes */
    ft_idmap_init(&sess->calls);
    idle_timer_restart(sess);
    ft_list_push_back(&s->loop_sessions[at->loop->index], &sess->node);
    FT_DEBUG("accepted connection from %s on loop %d", c->peer, at->loop->index);
    free(at);
}

static void on_accept(ft_listener *l, int fd, void *arg)
{
    ftrpc_server *s = arg;
    (void)l;
    if (atomic_load(&s->sessions) >= s->opts.max_connections) {
        /* accept and close at once: the peer learns now instead of waiting in the backlog */
        atomic_fetch_add(&s->connections_refused, 1); /* first: whoever sees the close sees it */
        close(fd);
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "server: %d connections open, refusing a new one",
                           s->opts.max_connections);
        return;
    }
    struct accept_task *at = malloc(sizeof *at);
    if (!at) {
        close(fd);
        return;
    }
    unsigned i = atomic_fetch_add(&s->next_loop, 1);
    at->task.run = adopt_on_loop;
    at->server = s;
    at->loop = &s->rt->loops[i % (unsigned)s->rt->nloops];
    at->fd = fd;
    atomic_fetch_add(&s->sessions, 1); /* counted from now, so stop waits for it */
    ft_loop_post(at->loop, &at->task);
}

/* Registers the server in discovery. A registry that is down is not an error here (the
 * registrar keeps trying); bad options are. */
static int start_registrar(ftrpc_server *s, const char *listen_addr)
{
    char addr[160];
    if (s->register_addr) {
        snprintf(addr, sizeof addr, "%s", s->register_addr);
    } else {
        char host[128];
        snprintf(host, sizeof host, "%s", listen_addr);
        char *colon = strrchr(host, ':');
        if (colon) *colon = '\0';
        /* a wildcard listen address is not something a client can dial */
        if (!strcmp(host, "0.0.0.0") || !strcmp(host, "")) snprintf(host, sizeof host, "127.0.0.1");
        if (!strcmp(host, "[::]")) snprintf(host, sizeof host, "[::1]");
        snprintf(addr, sizeof addr, "%s:%d", host, s->port);
    }
    ft_registrar_opts ro = {.url = s->register_url,
                            .addr = addr,
                            .weight = s->opts.register_weight,
                            .tags = s->register_tags,
                            .register_ttl_ms = s->opts.register_ttl_ms,
                            .register_interval_ms = s->opts.register_interval_ms,
                            .id = s->register_id};
    int rc = ft_registrar_start(&ro, &s->registrar);
    if (rc == 0)
        snprintf(s->registered_id, sizeof s->registered_id, "%s", ft_registrar_id(s->registrar));
    if (rc != 0)
        FT_ERROR("server: cannot register %s at %s: %s", addr, s->register_url, ftrpc_strerror(rc));
    return rc;
}

/* A server holds a descriptor per connection: the soft RLIMIT_NOFILE (1,024 on many systems) is
 * raised to the hard one, as Go's runtime and nginx's worker_rlimit_nofile do, and a
 * max_connections the limit cannot honour is said out loud: past the limit accept() fails and
 * the listener sheds new connections instead. */
static void fit_descriptor_limit(const ftrpc_server *s)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit raised = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
    }
    /* what a process needs besides its connections: loops, the listener, logs, clients */
    enum { OWN_DESCRIPTORS = 64 };
    if (rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)s->opts.max_connections + OWN_DESCRIPTORS > rl.rlim_cur)
        FT_WARN("server: max_connections is %d but RLIMIT_NOFILE allows %llu descriptors: past "
                "about %llu connections new ones are closed at accept (raise the hard limit, "
                "ulimit -Hn, or lower max_connections)",
                s->opts.max_connections, (unsigned long long)rl.rlim_cur,
                (unsigned long long)(rl.rlim_cur > OWN_DESCRIPTORS ? rl.rlim_cur - OWN_DESCRIPTORS
                                                                   : 0));
}

int ftrpc_server_start(ftrpc_server *s, const char *listen_addr)
{
    if (!s || !listen_addr) return FTRPC_EINVAL;
    if (ftrpc_in_io_thread()) return FTRPC_EIOTHREAD;
    if (atomic_load(&s->state) != FT_SERVER_NEW) return FTRPC_ESTOPPED;
    int need_pool = 0;
    for (size_t i = 0; i < s->nmethods; i++)
        need_pool |= s->methods[i]->opts.run_mode == FTRPC_RUN_IN_WORKER;
    if (need_pool) {
        int rc = ft_workpool_start(&s->pool, s->opts.worker_threads);
        if (rc != 0) return rc;
        s->pool_started = 1;
    }
    fit_descriptor_limit(s);
    s->started_ns = ft_now_ns();
    atomic_store(&s->state, FT_SERVER_RUNNING);
    int rc = ft_listener_start(&s->rt->loops[0], listen_addr, on_accept, s, &s->listener);
    if (rc != 0) {
        atomic_store(&s->state, FT_SERVER_NEW);
        if (s->pool_started) ft_workpool_stop(&s->pool);
        s->pool_started = 0;
        return rc;
    }
    s->port = s->listener->port;
    if (s->nmethods > 0) { /* an admin port has no calls to record */
        const char *colon = strrchr(listen_addr, ':');
        char name[300];
        snprintf(name, sizeof name, "%.*s:%d", colon ? (int)(colon - listen_addr) : 0, listen_addr,
                 s->port);
        ft_rpcz_ring *ring = NULL;
        ft_rpcz_ring_new(FT_RPCZ_SERVER, name, &ring); /* none: its calls are not recorded */
        atomic_store_explicit(&s->rpcz, ring, memory_order_release);
    }
    for (size_t i = 0; i < s->nmethods; i++)
        ft_method_metrics_register(s->methods[i]);
    ft_server_series_start(s);
    if (s->register_url) {
        rc = start_registrar(s, listen_addr);
        if (rc != 0) {
            ftrpc_server_stop(s, 0);
            return rc;
        }
    }
    return 0;
}

int ftrpc_server_port(const ftrpc_server *s)
{
    return s ? s->port : 0;
}

const char *ftrpc_server_register_id(const ftrpc_server *s)
{
    return s ? s->registered_id : "";
}

struct close_sessions_args {
    ftrpc_server *server;
    int index;
    int abortive; /* second pass: for peers whose replies could not be flushed */
};

static void close_sessions_on_loop(void *arg)
{
    struct close_sessions_args *a = arg;
    ft_list *head = &a->server->loop_sessions[a->index];
    /* ft_conn_close may run on_close (and unlink the session) later, never synchronously for an
     * orderly close with bytes queued; walk with a saved next all the same */
    for (ft_list *n = head->next, *next; n != head; n = next) {
        next = n->next;
        ft_session *sess = ft_container_of(n, ft_session, node);
        ft_conn_close(sess->conn, a->abortive ? FTRPC_ESTOPPED : 0, a->abortive);
    }
}

/* Graceful stop, first step on each loop: every gRPC connection is sent GOAWAY, so that its client
 * sends no new streams here while the calls it has in flight are answered (baidu_std and HTTP/1.1
 * have no such frame: a request that still comes is answered ELOGOFF). */
static void goaway_sessions_on_loop(void *arg)
{
    struct close_sessions_args *a = arg;
    ft_list *head = &a->server->loop_sessions[a->index];
    for (ft_list *n = head->next, *next; n != head; n = next) {
        next = n->next; /* a session with nothing in flight closes (later, on the loop) */
        ft_grpc_session_goaway(ft_container_of(n, ft_session, node));
    }
}

/* Waits until *counter is 0 or the deadline passes; returns the final value. */
/* Until count(s) is 0 or the deadline; returns what is left. Counts going down while stopping
 * broadcast stop_cond; the 50 ms step bounds the wait for one that went down just before it saw
 * the stop. */
static int wait_for_zero(ftrpc_server *s, int (*count)(ftrpc_server *), int64_t deadline_ns)
{
    pthread_mutex_lock(&s->stop_lock);
    while (count(s) > 0) {
        int64_t left = deadline_ns - ft_now_ns();
        if (left <= 0) break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t step = left < 50 * FT_NS_PER_MS ? left : 50 * FT_NS_PER_MS;
        ts.tv_nsec += step;
        ts.tv_sec += ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        pthread_cond_timedwait(&s->stop_cond, &s->stop_lock, &ts);
    }
    pthread_mutex_unlock(&s->stop_lock);
    return count(s);
}

int ftrpc_server_stop(ftrpc_server *s, int grace_ms)
{
    if (!s) return FTRPC_EINVAL;
    if (ftrpc_in_io_thread()) return FTRPC_EIOTHREAD;
    int expected = FT_SERVER_RUNNING;
    if (!atomic_compare_exchange_strong(&s->state, &expected, FT_SERVER_STOPPING)) return 0;
    if (grace_ms < 0) grace_ms = s->opts.stop_grace_ms;
    /* leave discovery first, so that clients stop choosing this server while it drains */
    ft_registrar_stop(s->registrar);
    s->registrar = NULL;
    ft_listener_stop(s->listener);
    s->listener = NULL;
    ft_server_series_stop(s);
    for (int i = 0; i < s->rt->nloops; i++) {
        struct close_sessions_args a = {s, i, 0};
        ft_loop_run_sync(&s->rt->loops[i], goaway_sessions_on_loop, &a);
    }
    int64_t deadline = ft_now_ns() + (int64_t)grace_ms * FT_NS_PER_MS;
    int left = wait_for_zero(s, ft_server_calls_in_flight, deadline);
    if (left > 0) FT_WARN("server stop: %d calls still in flight after %d ms", left, grace_ms);
    /* connections close once their replies are flushed; a peer that does not read them would
     * hold its connection (and the freed server) for ever, so after a bound the rest are reset */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < s->rt->nloops; i++) {
            struct close_sessions_args a = {s, i, pass};
            ft_loop_run_sync(&s->rt->loops[i], close_sessions_on_loop, &a);
        }
        if (wait_for_zero(s, sessions_open, ft_now_ns() + 2000 * FT_NS_PER_MS) == 0) break;
    }
    if (s->pool_started) {
        ft_workpool_stop(&s->pool);
        s->pool_started = 0;
    }
    atomic_store(&s->state, FT_SERVER_STOPPED);
    return left > 0 ? FTRPC_ERPCTIMEDOUT : 0;
}

void ftrpc_server_free(ftrpc_server *s)
{
    if (!s) return;
    if (atomic_load(&s->state) == FT_SERVER_RUNNING) ftrpc_server_stop(s, -1);
    /* Replies finished on other threads are still on their way to the loops; they touch the
     * server when they land. A handler that never finishes its call would keep us here forever:
     * after a bound, leak the server rather than free memory a late reply will touch. */
    int unfinished =
        wait_for_zero(s, ft_server_calls_in_flight, ft_now_ns() + 10000 * FT_NS_PER_MS);
    if (unfinished > 0) {
        FT_ERROR("server free: %d calls were never finished by their handlers; leaking the server",
                 unfinished);
        return;
    }
    for (size_t i = 0; i < s->nmethods; i++) {
        ft_method_metrics_fini(s->methods[i]);
        free(s->methods[i]->service);
        free(s->methods[i]->method);
        free(s->methods[i]->loop_concurrency);
        ft_limit_fini(&s->methods[i]->limit);
        free(s->methods[i]);
    }
    free(s->methods);
    free(s->table);
    ft_typed_services_free(s);
    free(s->loop_sessions);
    for (int i = 0; i < s->rt->nloops; i++) {
        while (s->per_loop[i].free_calls) {
            ftrpc_server_call *call = s->per_loop[i].free_calls;
            s->per_loop[i].free_calls = *(ftrpc_server_call **)call;
            free(call);
        }
    }
    free(s->per_loop);
    ft_rpcz_ring_free(atomic_load(&s->rpcz)); /* every call finished: no record is being written */
    free(s->auth_token);
    free(s->register_url);
    free(s->register_addr);
    free(s->register_tags);
    free(s->register_id);
    ft_tls_ctx_free(s->tls_ctx);
    pthread_cond_destroy(&s->stop_cond);
    pthread_mutex_destroy(&s->stop_lock);
    ft_limit_fini(&s->limit);
    free(s);
}

/* ---- requests ---- */

/* brpc's wire number for an FTRPC_E* code or a handler's code. */
static int32_t wire_code(int code)
{
    return ft_server_wire_code(code);
}

int32_t ft_server_wire_code(int code)
{
    if (code < 0 && -code >= 1000 && -code < FTRPC_BUSINESS_CODE_MIN) return -code;
    if (code < 0 && code >= -99)
        return -FTRPC_EINTERNAL; /* ftrpc-local codes mean nothing remotely */
    return code;
}

/* After queueing a reply on c: a peer that does not read its replies is cut off. */
static void reply_queued(ft_conn *c, int rc)
{
    if (rc == FTRPC_EOVERCROWDED) {
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "closing %s: peer does not read its replies", c->peer);
        ft_conn_close(c, FTRPC_EOVERCROWDED, 1);
    }
}

/* An error answer; retry_after_ms: its pushback hint (0: none). */
static void write_pushback(ft_conn *c, int64_t cid, int code, const char *text,
                           int32_t retry_after_ms)
{
    ft_iobuf frame;
    ft_iobuf_init(&frame);
    if (ft_baidu_std_pack_pushback(&frame, cid, wire_code(code), text, retry_after_ms) == 0)
        reply_queued(c, ft_conn_write(c, &frame));
    ft_iobuf_fini(&frame);
}

static void write_error(ft_conn *c, int64_t cid, int code, const char *text)
{
    write_pushback(c, cid, code, text, 0);
}

/* A connection's calls are kept by correlation_id, in a map whose key 0 means "empty": id 0,
 * which a peer may send, is filed under INT64_MIN instead (a peer that uses both gets the second
 * refused as already in flight, which is harmless). */
static int64_t call_key(int64_t correlation_id)
{
    return correlation_id != 0 ? correlation_id : INT64_MIN;
}

enum { CALL_CACHE_MAX = 256 };

/* A call zeroed up to `identity` (the rest start_call writes), from the loop's cache when it has
 * one. The loop's thread only. */
static ftrpc_server_call *call_alloc(ftrpc_server *s, ft_loop *loop)
{
    struct ft_server_loop *pl = &s->per_loop[loop->index];
    ftrpc_server_call *call = pl->free_calls;
    if (!call) return calloc(1, sizeof *call);
    pl->free_calls = *(ftrpc_server_call **)call; /* the link lives in the call's first bytes */
    pl->nfree--;
    memset(call, 0, offsetof(ftrpc_server_call, identity));
    return call;
}

static void call_release(ftrpc_server *s, ftrpc_server_call *call)
{
    struct ft_server_loop *pl = &s->per_loop[call->loop->index];
    if (pl->nfree >= CALL_CACHE_MAX) {
        free(call);
        return;
    }
    *(ftrpc_server_call **)call = pl->free_calls;
    pl->free_calls = call;
    pl->nfree++;
}

/* The limits that counted a call (ftrpc_server_call.limited). */
enum { LIMITED_METHOD = 1, LIMITED_SERVER = 2 };

/* A call of m starts running on loop (the thread running it), under the server-wide limit first,
 * then the method's: the LIMITED_* bits of the limits that counted it, or -1 when a limit is
 * reached (*retry_after_ms: the pushback). */
static int method_enter(ftrpc_server *s, ft_method *m, ft_loop *loop, int32_t timeout_ms,
                        int32_t *retry_after_ms)
{
    int server = ft_limit_enter(&s->limit, timeout_ms, retry_after_ms);
    if (server < 0) return -1;
    int method = ft_limit_enter(&m->limit, timeout_ms, retry_after_ms);
    if (method < 0) {
        if (server) ft_limit_leave(&s->limit);
        return -1;
    }
    if (!method) loop_count_add(&m->loop_concurrency[loop->index].n, 1);
    return (method ? LIMITED_METHOD : 0) | (server ? LIMITED_SERVER : 0);
}

/* On the loop method_enter ran on; limited: what it returned. */
static void method_leave(ftrpc_server *s, ft_method *m, ft_loop *loop, int limited)
{
    if (limited & LIMITED_METHOD)
        ft_limit_leave(&m->limit);
    else
        loop_count_add(&m->loop_concurrency[loop->index].n, -1);
    if (limited & LIMITED_SERVER) ft_limit_leave(&s->limit);
}

_Static_assert(sizeof(((ft_rpcz_span *)0)->peer) == sizeof(((ft_conn *)0)->peer),
               "rpcz_record copies a connection's peer whole");

/* Writes the finished call into its server's ring (metrics/rpcz.h). On the call's loop. */
static void rpcz_record(ftrpc_server_call *call)
{
    ft_rpcz_span *sp = ft_rpcz_begin(call->rpcz);
    if (!sp) return;
    int64_t end_ns = call->rpcz_replied ? call->rpcz_replied_ns : ft_loop_now(call->loop);
    int64_t latency_ns = end_ns - call->start_ns;
    sp->start_ns = call->start_ns;
    sp->latency_us = latency_ns > 0 ? latency_ns / 1000 : 0;
    ft_rpcz_set_method(sp, call->method->service, call->method->service_len, call->method->method,
                       call->method->method_len);
    memcpy(sp->peer, call->conn->peer, sizeof sp->peer); /* both 64 bytes, NUL-terminated */
    sp->kind = 0;
    sp->code = call->rpcz_replied ? call->rpcz_code : 0;
    sp->attempts = sp->backups = 0;
    sp->log_id = 0;
    sp->id = (uint64_t)call->correlation_id;
    sp->nattempts = 0;
    sp->cancelled = (uint8_t)atomic_load_explicit(&call->canceled, memory_order_acquire);
    sp->replied = (uint8_t)call->rpcz_replied;
    sp->http = (uint8_t)call->is_http;
    ft_rpcz_commit(sp);
}

static void finish_call(ftrpc_server_call *call)
{
    ftrpc_server *s = call->server;
    if (call->rpcz) rpcz_record(call);
    if (call->session) ft_idmap_take(&call->session->calls, call_key(call->correlation_id));
    method_leave(s, call->method, call->loop, call->limited);
    ft_conn_unref(call->conn);
    ft_iobuf_fini(&call->request);
    ft_iobuf_fini(&call->attachment);
    ft_iobuf_fini(&call->reply);
    free(call->metadata);
    ft_loop *loop = call->loop;
    call_release(s, call);
    count_down_call(s, loop);
}

/* On the call's loop: hand the packed reply to the connection (if it is still there). */
static void deliver_reply(ftrpc_server_call *call)
{
    ft_conn *c = call->conn;
    if (call->is_http) {
        /* a cancelled call has no reply, but HTTP answers in order: its slot still needs one */
        if (ft_conn_is_open(c)) ft_http_session_deliver(call);
    } else if (call->is_grpc) {
        if (ft_conn_is_open(c)) ft_grpc_session_deliver(call);
    } else if (ft_conn_is_open(c) && call->reply.size > 0) {
        reply_queued(c, ft_conn_write(c, &call->reply));
    }
    finish_call(call);
}

static void deliver_reply_task(ft_task *t)
{
    deliver_reply(ft_container_of(t, ftrpc_server_call, task));
}

/* raw, when not NULL, is the payload (raw_len bytes of the caller's memory, payload NULL): copied
 * into the frame on the common path, into a buffer of the reply's own otherwise. */
static int send_reply_raw(ftrpc_server_call *call, int32_t code, const char *text,
                          const ft_iobuf *payload, const ft_iobuf *attachment, const void *raw,
                          size_t raw_len)
{
    int64_t now = ft_now_ns();
    ft_method_metrics_on_reply(call->method, code, call->rejected ? 0 : call->start_ns, now);
    if (call->limited && !call->rejected && code != -FTRPC_ELIMIT) {
        /* the limiters learn from the calls that ran (a handler's own ELIMIT is not one) */
        if (call->limited & LIMITED_METHOD)
            ft_limit_on_response(&call->method->limit, code == 0, now - call->start_ns, now);
        if (call->limited & LIMITED_SERVER)
            ft_limit_on_response(&call->server->limit, code == 0, now - call->start_ns, now);
    }
    if (call->rpcz) { /* read on the call's loop, after the post that carries the reply there */
        call->rpcz_code = code;
        call->rpcz_replied = 1;
        call->rpcz_replied_ns = now;
    }
    /* an RPC error after a call made on this call's behalf spent its retries: our caller must not
     * retry it either (docs/overload-client.md, Chain-stop); an ELIMIT after such a call was
     * refused with a hold: our caller holds us as long (Pushback); business errors and successes
     * never carry either, and HTTP and gRPC answers carry no hint */
    int32_t retry_after_ms =
        code > 0 && code < FTRPC_BUSINESS_CODE_MIN && !call->is_http && !call->is_grpc
            ? ft_call_context_pushback(call->ctx.serial)
            : 0;
    if (retry_after_ms > 0 && code != -FTRPC_ELIMIT) retry_after_ms = 0; /* a hold: overload only */
    if (!call->is_http && !call->is_grpc && !retry_after_ms && ft_loop_current() == call->loop) {
        /* the common reply, small and made on the loop: encoded on the stack and copied straight
         * into the connection's output, with no reply buffer and no block of its own */
        uint8_t small[FT_BAIDU_STD_SMALL_FRAME];
        size_t n = raw ? ft_baidu_std_encode_reply_bytes(small, call->correlation_id, raw, raw_len)
                       : ft_baidu_std_encode_response(small, call->correlation_id, code, text,
                                                      payload, attachment);
        if (n) {
            if (ft_conn_is_open(call->conn))
                reply_queued(call->conn, ft_conn_write_bytes(call->conn, small, n));
            finish_call(call);
            return 0;
        }
    }
    int rc = 0;
    ft_iobuf copy;
    ft_iobuf_init(&copy);
    if (raw) {
        if (ft_iobuf_append(&copy, raw, raw_len) != 0) {
            code = -FTRPC_EINTERNAL;
            text = "server out of memory";
        }
        payload = &copy;
    }
    if (call->is_http)
        ft_http_call_pack(call, code, text, payload, attachment);
    else if (call->is_grpc)
        ft_grpc_call_pack(call, code, text, payload); /* gRPC has no attachment */
    else if (retry_after_ms)
        rc = ft_baidu_std_pack_pushback(&call->reply, call->correlation_id, code, text,
                                        retry_after_ms);
    else
        rc = ft_baidu_std_pack_response(&call->reply, call->correlation_id, code, text, payload,
                                        attachment);
    if (rc != 0) {
        /* still answer: a reply lost here would leave the client waiting for its deadline */
        ft_iobuf_clear(&call->reply);
        ft_baidu_std_pack_response(&call->reply, call->correlation_id, -FTRPC_EINTERNAL,
                                   "server out of memory", NULL, NULL);
    }
    ft_iobuf_fini(&copy);
    if (ft_loop_current() == call->loop)
        deliver_reply(call);
    else
        ft_loop_post(call->loop, &call->task);
    return rc;
}

static int send_reply(ftrpc_server_call *call, int32_t code, const char *text,
                      const ft_iobuf *payload, const ft_iobuf *attachment)
{
    return send_reply_raw(call, code, text, payload, attachment, NULL, 0);
}

int ft_server_call_reply_bytes(ftrpc_server_call *call, const void *data, size_t len)
{
    return send_reply_raw(call, 0, NULL, NULL, NULL, data, len);
}

int ftrpc_server_call_reply(ftrpc_server_call *call, const ftrpc_buf *response,
                            const ftrpc_buf *attachment)
{
    return send_reply(call, 0, NULL, response, attachment);
}

int ftrpc_server_call_fail(ftrpc_server_call *call, int code, const char *text)
{
    if (code == 0) code = FTRPC_EINTERNAL;
    if (!text) text = code < 0 ? ftrpc_strerror(code) : "";
    return send_reply(call, wire_code(code), text, NULL, NULL);
}

const char *ftrpc_server_call_service(const ftrpc_server_call *call)
{
    return call->method->service;
}

const char *ftrpc_server_call_method(const ftrpc_server_call *call)
{
    return call->method->method;
}

const ftrpc_buf *ftrpc_server_call_request(const ftrpc_server_call *call)
{
    return &call->request;
}

const ftrpc_buf *ftrpc_server_call_attachment(const ftrpc_server_call *call)
{
    return &call->attachment;
}

int64_t ftrpc_server_call_remaining_ms(const ftrpc_server_call *call)
{
    if (!call->deadline_ns) return INT64_MAX;
    return (call->deadline_ns - ft_now_ns()) / FT_NS_PER_MS;
}

const char *ftrpc_server_call_peer(const ftrpc_server_call *call)
{
    return call->conn->peer;
}

const char *ftrpc_server_call_identity(const ftrpc_server_call *call)
{
    return call->identity;
}

int ftrpc_server_call_metadata_at(const ftrpc_server_call *call, size_t i, const char **key,
                                  const char **value)
{
    size_t off = 0;
    while (off < call->metadata_len) {
        const char *k = call->metadata + off;
        const char *v = k + strlen(k) + 1;
        if (i-- == 0) {
            *key = k;
            *value = v;
            return 1;
        }
        off = (size_t)(v + strlen(v) + 1 - call->metadata);
    }
    return 0;
}

const char *ftrpc_server_call_metadata(const ftrpc_server_call *call, const char *key)
{
    const char *k, *v;
    for (size_t i = 0; key && ftrpc_server_call_metadata_at(call, i, &k, &v); i++)
        if (strcasecmp(k, key) == 0) return v;
    return NULL;
}

void ftrpc_server_stats_get_sized(const ftrpc_server *cs, ftrpc_server_stats *out, size_t out_size)
{
    ftrpc_server *s =
        (ftrpc_server *)cs; /* the counters are atomics: reading them writes nothing */
    ftrpc_server_stats st = {.connections = atomic_load(&s->sessions),
                             .connections_refused = atomic_load(&s->connections_refused),
                             .idle_closed = atomic_load(&s->idle_closed),
                             .read_timeouts = atomic_load(&s->read_timeouts),
                             .auth_failures = atomic_load(&s->auth_failures),
                             .tls_failures = atomic_load(&s->tls_failures),
                             .plain_refused = atomic_load(&s->plain_refused),
                             .pending_refused = atomic_load(&s->pending_refused),
                             .pending_request_bytes = atomic_load(&s->pending_bytes)};
    ft_sized_result_write(out, out_size, &st, sizeof st);
}

int ftrpc_server_call_is_canceled(const ftrpc_server_call *call)
{
    return atomic_load_explicit(&((ftrpc_server_call *)call)->canceled, memory_order_acquire);
}

int ftrpc_server_method_stats_sized(const ftrpc_server *s, const char *service, const char *method,
                                    ftrpc_method_stats *out, size_t out_size)
{
    ft_method *m = s && service && method ? find_method(s, service, method) : NULL;
    if (!m) return FTRPC_ENOMETHOD;
    ftrpc_method_stats st = {.calls = (int64_t)ft_counter_get(&m->calls),
                             .rejected = atomic_load(&m->rejected),
                             .canceled_unstarted = atomic_load(&m->canceled_unstarted),
                             .concurrency = ft_method_concurrency(m)};
    ft_sized_result_write(out, out_size, &st, sizeof st);
    return 0;
}

_Static_assert(offsetof(ftrpc_server_call, ctx) == 0,
               "a served call begins with its context (base/call_context.h)");

/* Runs the handler with the call's context as the thread's current one, so that the calls it
 * makes inherit its deadline and attempt (docs/overload-client.md). A copy: the handler may reply,
 * and so free the call, before it returns. */
static void run_handler(ftrpc_server_call *call)
{
    ft_call_context ctx = call->ctx;
    const ft_call_context *prev = ft_call_context_swap(&ctx);
    call->method->handler(call, call->method->arg);
    ft_call_context_swap(prev);
}

static int deadline_passed(const ftrpc_server_call *call)
{
    return call->deadline_ns && ft_now_ns() >= call->deadline_ns;
}

/* A tied request's "started" notice (docs/protocol.md, Tied requests): the client cancels the
 * request's twin on the other server. On the connection's loop; the reply comes after it (one
 * loop's queue keeps its order, and a reply made on the loop is made after the handler started). */
static void write_started(ft_conn *conn, int64_t correlation_id)
{
    if (!ft_conn_is_open(conn)) return;
    ft_iobuf frame;
    ft_iobuf_init(&frame);
    if (ft_baidu_std_pack_started(&frame, correlation_id) == 0)
        reply_queued(conn, ft_conn_write(conn, &frame));
    ft_iobuf_fini(&frame);
}

/* The notice of a worker's call travels on its own: the call may finish (its reply made on the
 * loop) before the loop runs the task, and the connection is kept by the notice's reference. */
typedef struct ft_started_notice {
    ft_task task;
    ft_conn *conn; /* referenced */
    int64_t correlation_id;
    int skip; /* the call was not started after all (cancelled or late): nothing to tell */
} ft_started_notice;

static void started_notice_run(ft_task *t)
{
    ft_started_notice *n = ft_container_of(t, ft_started_notice, task);
    if (!n->skip) write_started(n->conn, n->correlation_id);
    ft_conn_unref(n->conn);
    free(n);
}

/* On the loop: a notice that was never handed to a worker. */
static void started_notice_drop(ftrpc_server_call *call)
{
    if (!call->notice) return;
    ft_conn_unref(call->notice->conn);
    free(call->notice);
    call->notice = NULL;
}

static void run_in_worker(ft_job *job)
{
    ftrpc_server_call *call = ft_container_of(job, ftrpc_server_call, job);
    int canceled = atomic_load_explicit(&call->canceled, memory_order_acquire);
    int late = !canceled && deadline_passed(call);
    if (call->notice) {
        /* taken from the queue: the moment "The Tail at Scale" has a tied server say so */
        call->notice->skip = canceled || late;
        ft_loop_post(call->loop, &call->notice->task);
        call->notice = NULL;
    }
    if (canceled) {
        /* the client no longer waits: skip the work and send nothing */
        atomic_fetch_add(&call->method->canceled_unstarted, 1);
        ft_loop_post(call->loop, &call->task); /* finishes it on its loop, with no reply */
        return;
    }
    if (late) {
        /* the caller has given up: running the handler would be wasted work */
        atomic_fetch_add(&call->method->rejected, 1);
        ft_method_metrics_on_reject(call->method, FT_REJECT_DEADLINE, -FTRPC_ERPCTIMEDOUT);
        call->rejected = 1;
        send_reply(call, -FTRPC_ERPCTIMEDOUT, "deadline passed before the handler started", NULL,
                   NULL);
        return;
    }
    ft_counter_inc(&call->method->calls);
    run_handler(call);
}

/* Constant time in the token's content, so that a peer cannot find it byte by byte by timing. */
static int token_equal(const uint8_t *a, size_t alen, const char *token)
{
    size_t tlen = strlen(token);
    unsigned diff = (unsigned)(alen ^ tlen);
    for (size_t i = 0; i < tlen; i++)
        diff |= (unsigned)(token[i] ^ (i < alen ? a[i] : 0));
    return diff == 0;
}

/* Checks one credential (NULL, 0 when the peer sent none) against the token or the
 * authenticator (brpc's Authenticator::VerifyCredential); an accepted one writes the session's
 * identity. 1 when accepted. */
static int credential_accepted(ft_session *sess, const uint8_t *data, size_t len)
{
    ftrpc_server *s = sess->server;
    if (s->auth_token) {
        if (!data || !token_equal(data, len, s->auth_token)) return 0;
        snprintf(sess->identity, sizeof sess->identity, "token");
        return 1;
    }
    return s->opts.authenticator(data, data ? len : 0, sess->identity, sizeof sess->identity,
                                 s->opts.authenticator_arg) == 0;
}

int ft_server_needs_auth(const ftrpc_server *s)
{
    return s->auth_token || s->opts.authenticator;
}

void ft_server_count_auth_failure(ft_session *sess)
{
    atomic_fetch_add(&sess->server->auth_failures, 1);
    FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "closing %s: authentication failed", sess->conn->peer);
}

int ft_server_authenticate_http(ft_session *sess, const char *authorization)
{
    if (!authorization) return credential_accepted(sess, NULL, 0);
    /* the token shortcut takes "Bearer TOKEN"; an authenticator of its own gets the whole value,
     * as brpc's HTTP protocol hands its Authenticator the Authorization header */
    if (sess->server->auth_token) {
        static const char BEARER[] = "Bearer ";
        if (strncasecmp(authorization, BEARER, sizeof BEARER - 1) != 0) return 0;
        authorization += sizeof BEARER - 1;
        while (*authorization == ' ')
            authorization++;
    }
    return credential_accepted(sess, (const uint8_t *)authorization, strlen(authorization));
}

/* ftrpc.Control/Cancel (docs/protocol.md, Cancellation): marks the named call of this
 * connection. */
static void handle_cancel(ft_session *sess, ft_rpc_frame *f)
{
    uint8_t b[8];
    if (ft_iobuf_copy_at(&f->payload, 0, b, sizeof b) != sizeof b) {
        write_error(sess->conn, f->correlation_id, FTRPC_EREQUEST, "cancel wants an 8-byte id");
        return;
    }
    int64_t cid = 0;
    for (int i = 0; i < 8; i++)
        cid = (int64_t)(((uint64_t)cid << 8) | b[i]);
    ftrpc_server_call *call = ft_idmap_get(&sess->calls, call_key(cid));
    if (call) atomic_store_explicit(&call->canceled, 1, memory_order_release);
    write_error(sess->conn, f->correlation_id, 0, NULL); /* a plain success */
}

/* ftrpc.Control/ListServices: the listing of /protobufs, over baidu_std (for `ftrpc list`, which
 * then needs nothing but a client: its TLS and credential flags apply). */
static void handle_list(ft_session *sess, ft_rpc_frame *f)
{
    char want[8] = {0};
    ft_iobuf_copy_at(&f->payload, 0, want, sizeof want - 1);
    ft_strbuf text;
    ft_strbuf_init(&text, (size_t)16 << 20);
    ft_server_list_services(sess->server, strcmp(want, "json") == 0, &text);
    ft_iobuf payload, frame;
    ft_iobuf_init(&payload);
    ft_iobuf_init(&frame);
    if (ft_iobuf_append(&payload, ft_strbuf_cstr(&text), text.len) == 0 &&
        ft_baidu_std_pack_response(&frame, f->correlation_id, 0, NULL, &payload, NULL) == 0)
        reply_queued(sess->conn, ft_conn_write(sess->conn, &frame));
    else
        write_error(sess->conn, f->correlation_id, FTRPC_EINTERNAL, "server out of memory");
    ft_iobuf_fini(&frame);
    ft_iobuf_fini(&payload);
    ft_strbuf_fini(&text);
}

/* Admits one request (method table, stopping, limits) and hands it to its handler, the same way
 * for baidu_std and HTTP. 0: the call is the handler's and its reply comes through send_reply.
 * Otherwise the request was refused: a negative code, its text in text[len], and in
 * *retry_after_ms the pushback hint to send with it (0: none; docs/protocol.md). */
static int start_call(ft_session *sess, const char *service, const char *method, int32_t timeout_ms,
                      int32_t attempt, ft_iobuf *payload, ft_iobuf *attachment,
                      int64_t correlation_id, int is_http, uint64_t http_seq, int tied,
                      char **metadata, size_t metadata_len, char *text, size_t len,
                      int32_t *retry_after_ms)
{
    *retry_after_ms = 0;
    ftrpc_server *s = sess->server;
    ft_conn *c = sess->conn;
    ft_method *m = sess->last_method;
    if (!m || strcmp(m->method, method) != 0 || strcmp(m->service, service) != 0)
        m = sess->last_method = find_method(s, service, method);
    if (!m) {
        snprintf(text, len, "Fail to find method=%s/%s", service, method);
        return (!strchr(service, '.') && !service_known(s, service)) ? FTRPC_ENOSERVICE
                                                                     : FTRPC_ENOMETHOD;
    }
    if (atomic_load_explicit(&s->state, memory_order_acquire) != FT_SERVER_RUNNING) {
        ft_method_metrics_on_reject(m, FT_REJECT_STOPPING, -FTRPC_ELOGOFF);
        snprintf(text, len, "server is stopping");
        /* no hint: ELOGOFF already suspends this endpoint at the client, which retries
         * elsewhere; a hold would turn a lone endpoint's "stopping" into the client's own ELIMIT */
        *retry_after_ms = 0;
        return FTRPC_ELOGOFF;
    }
    /* baidu_std calls are tracked per connection (for cancellation and the in-flight cap) */
    int tracked = !is_http;
    if (tracked && ft_idmap_get(&sess->calls, call_key(correlation_id))) {
        /* filing it would drop the first from the map: its session pointer would then outlive
         * the session, and the in-flight cap would not count it */
        atomic_fetch_add(&m->rejected, 1);
        snprintf(text, len, "correlation_id already in flight on this connection");
        return FTRPC_EREQUEST;
    }
    if (tracked && (int)ft_idmap_count(&sess->calls) >= s->opts.max_inflight_per_connection) {
        atomic_fetch_add(&m->rejected, 1);
        ft_method_metrics_on_reject(m, FT_REJECT_LIMIT, -FTRPC_ELIMIT);
        snprintf(text, len, "too many requests in flight on this connection");
        return FTRPC_ELIMIT;
    }
    int limited = method_enter(s, m, sess->loop, timeout_ms, retry_after_ms);
    if (limited < 0) {
        atomic_fetch_add(&m->rejected, 1);
        ft_method_metrics_on_reject(m, FT_REJECT_LIMIT, -FTRPC_ELIMIT);
        snprintf(text, len,
                 *retry_after_ms < 0 ? "deadline shorter than the latency now (timeout limiter)"
                                     : "concurrency limit reached");
        return FTRPC_ELIMIT;
    }
    ftrpc_server_call *call = call_alloc(s, sess->loop);
    if (!call) {
        method_leave(s, m, sess->loop, limited);
        *retry_after_ms = 0;
        snprintf(text, len, "server out of memory");
        return FTRPC_EINTERNAL;
    }
    call->task.run = deliver_reply_task;
    call->job.run = run_in_worker;
    call->notice = NULL;
    call->server = s;
    call->method = m;
    call->limited = limited;
    call->conn = c;
    ft_conn_ref(c);
    call->session = tracked ? sess : NULL;
    if (sess->identity[0]) { /* an authenticated connection; most have none to copy */
        size_t idlen = strnlen(sess->identity, sizeof call->identity - 1);
        memcpy(call->identity, sess->identity, idlen);
        call->identity[idlen] = '\0';
    } else {
        call->identity[0] = '\0';
    }
    atomic_init(&call->canceled, 0);
    call->loop = sess->loop;
    call->correlation_id = correlation_id;
    call->is_http = is_http;
    call->http_seq = http_seq;
    if (metadata) { /* a gRPC call (grpc_session.c): its metadata, possibly none */
        call->is_grpc = 1;
        call->metadata = *metadata;
        call->metadata_len = metadata_len;
        *metadata = NULL;
    }
    call->start_ns = ft_loop_now(sess->loop);
    /* all that rpcz costs a call while it is off: one relaxed load */
    call->rpcz = ft_rpcz_on() ? atomic_load_explicit(&s->rpcz, memory_order_acquire) : NULL;
    call->deadline_ns = timeout_ms > 0 ? call->start_ns + (int64_t)timeout_ms * FT_NS_PER_MS : 0;
    call->ctx.deadline_ns = call->deadline_ns;
    call->ctx.attempt = attempt > 0 ? attempt : 0;
    call->ctx.serial = ft_call_context_new_serial();
    ft_iobuf_init(&call->request);
    ft_iobuf_init(&call->attachment);
    ft_iobuf_init(&call->reply);
    ft_iobuf_move(&call->request, payload);
    if (attachment && ft_iobuf_size(attachment)) /* most calls have none: no move of nothing */
        ft_iobuf_move(&call->attachment, attachment);
    loop_count_add(&s->per_loop[sess->loop->index].inflight, 1);
    if (tracked && ft_idmap_put(&sess->calls, call_key(correlation_id), call) != 0)
        call->session = NULL;
    if (m->opts.run_mode == FTRPC_RUN_IN_WORKER) {
        if (tied && !is_http) {
            /* no memory: no notice, and the copies race as backups do */
            ft_started_notice *n = malloc(sizeof *n);
            if (n) {
                *n = (ft_started_notice){.task = {.run = started_notice_run},
                                         .conn = c,
                                         .correlation_id = correlation_id};
                ft_conn_ref(c);
                call->notice = n;
            }
        }
        if (ft_workpool_submit(&s->pool, &call->job) != 0) {
            started_notice_drop(call);
            ft_method_metrics_on_reject(m, FT_REJECT_STOPPING, -FTRPC_ELOGOFF);
            call->rejected = 1;
            send_reply(call, -FTRPC_ELOGOFF, "server is stopping", NULL, NULL);
        }
        return 0;
    }
    if (tied && !is_http) write_started(c, correlation_id); /* runs now: no queue to wait in */
    ft_counter_inc(&m->calls);
    run_handler(call);
    return 0;
}

static void dispatch(ft_session *sess, ft_rpc_frame *f)
{
    ftrpc_server *s = sess->server;
    ft_conn *c = sess->conn;
    if (ft_server_needs_auth(s) && !sess->authenticated) {
        if (!credential_accepted(sess, f->auth_data, f->auth_len)) {
            ft_server_count_auth_failure(sess);
            write_error(c, f->correlation_id, FTRPC_ERPCAUTH, "authentication failed");
            ft_conn_close(c, FTRPC_ERPCAUTH, 0); /* after the error is flushed */
            return;
        }
        sess->authenticated = 1;
    }
    /* the first letter spares nearly every request a strcmp call */
    if (f->service[0] == FT_CONTROL_SERVICE[0] && !strcmp(f->service, FT_CONTROL_SERVICE)) {
        if (!strcmp(f->method, FT_CONTROL_CANCEL)) {
            handle_cancel(sess, f);
            return;
        }
        if (!strcmp(f->method, FT_CONTROL_LIST)) {
            handle_list(sess, f);
            return;
        }
        if (!strcmp(f->method, FT_CONTROL_PING)) {
            write_error(c, f->correlation_id, 0, NULL); /* alive: a plain success, at once */
            return;
        }
    }
    char text[512];
    int32_t retry_after_ms;
    int rc = start_call(sess, f->service, f->method, f->timeout_ms, f->attempt, &f->payload,
                        &f->attachment, f->correlation_id, 0, 0, f->tied, NULL, 0, text,
                        sizeof text, &retry_after_ms);
    if (rc != 0) write_pushback(c, f->correlation_id, rc, text, retry_after_ms);
}

int ft_server_start_http_call(ft_session *sess, const char *service, const char *method,
                              int32_t timeout_ms, ft_iobuf *payload, int body, uint64_t seq,
                              char *text, size_t len, int32_t *retry_after_ms)
{
    return start_call(sess, service, method, timeout_ms, 0, payload, NULL, -1, body, seq, 0, NULL,
                      0, text, len, retry_after_ms);
}

int ft_server_start_grpc_call(ft_session *sess, const char *service, const char *method,
                              int32_t timeout_ms, ft_iobuf *payload, int32_t stream_id,
                              char **metadata, size_t metadata_len, char *text, size_t len,
                              int32_t *retry_after_ms)
{
    char *none = NULL; /* a call without metadata is still a gRPC call */
    char *m = *metadata;
    int rc = start_call(sess, service, method, timeout_ms, 0, payload, NULL, stream_id, 0, 0, 0,
                        m ? &m : &none, metadata_len, text, len, retry_after_ms);
    if (rc == 0) *metadata = NULL;
    return rc;
}

ftrpc_server_call *ft_server_session_call(ft_session *sess, int64_t id)
{
    return ft_idmap_get(&sess->calls, call_key(id));
}

void ft_server_count_auth_refused(ft_session *sess)
{
    atomic_fetch_add(&sess->server->auth_failures, 1);
    FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "gRPC call from %s refused: authentication failed",
                       sess->conn->peer);
}

int ft_server_set_method_descriptor(ftrpc_server *s, const char *service, const char *method,
                                    const ProtobufCMethodDescriptor *d)
{
    if (!s || !service || !method) return FTRPC_EINVAL;
    if (atomic_load(&s->state) != FT_SERVER_NEW) return FTRPC_ESTOPPED;
    ft_method *m = find_method(s, service, method);
    if (!m) return FTRPC_ENOMETHOD;
    m->pb_method = d;
    return 0;
}

const ProtobufCMethodDescriptor *
ft_server_method_descriptor(const ftrpc_server *s, const char *service, const char *method)
{
    ft_method *m = find_method(s, service, method);
    return m ? m->pb_method : NULL;
}

void ft_server_read_timer_fired(ft_timer *t)
{
    ft_session *sess = ft_container_of(t, ft_session, read_timer);
    if (sess->proto == FT_PROTO_HTTP) {
        ft_http_session_on_timeout(sess);
        return;
    }
    FT_LOG_RATELIMITED(FTRPC_LOG_WARN,
                       "closing connection from %s: protocol not recognised within %d ms",
                       sess->conn->peer, sess->server->opts.http_header_timeout_ms);
    ft_conn_close(sess->conn, FTRPC_ERPCTIMEDOUT, 1);
}

/* The first bytes decide the protocol: "PRPC" baidu_std, an HTTP method token HTTP; anything else
 * goes to the baidu_std parser, which closes the connection with the reason it finds ("bad magic",
 * "STRM", ...). Returns 0 while too few bytes have arrived to tell. */
static int sniff(ft_session *sess)
{
    ft_conn *c = sess->conn;
    if (sess->server->opts.grpc.enabled == 0) {
        int g = ft_h2_sniff(&c->in);
        if (g == 1) {
            ft_timer_stop(sess->loop, &sess->read_timer);
            sess->proto = FT_PROTO_GRPC;
            return 1;
        }
        if (g == -1) {
            /* a start of the preface ("PR" is also baidu_std's "PRPC" so far): wait for the
             * bytes that tell, within the header timeout */
            if (!ft_timer_armed(&sess->read_timer))
                ft_timer_start(sess->loop, &sess->read_timer,
                               ft_loop_now(sess->loop) +
                                   (int64_t)sess->server->opts.http_header_timeout_ms *
                                       FT_NS_PER_MS,
                               ft_server_read_timer_fired);
            return 0;
        }
    }
    int b = ft_baidu_std_sniff(&c->in), h = ft_http_sniff(&c->in);
    if ((b == -1 || h == -1) && b != 1 && h != 1) {
        if (!ft_timer_armed(&sess->read_timer))
            ft_timer_start(sess->loop, &sess->read_timer,
                           ft_loop_now(sess->loop) +
                               (int64_t)sess->server->opts.http_header_timeout_ms * FT_NS_PER_MS,
                           ft_server_read_timer_fired);
        return 0;
    }
    ft_timer_stop(sess->loop, &sess->read_timer);
    sess->proto = h == 1 ? FT_PROTO_HTTP : FT_PROTO_BAIDU_STD;
    return 1;
}

/* After a read: the peer is not idle; and a frame left half-read must complete in time. The
 * clock restarts whenever a frame completed, so a busy peer whose buffer never drains (it keeps
 * starting the next frame) is not mistaken for one that stalls mid-frame. */
static void arm_timeouts(ft_session *sess, int frames_completed)
{
    ftrpc_server *s = sess->server;
    if (sess->conn->state != FT_CONN_OPEN) return;
    int64_t now = ft_loop_now(sess->loop);
    idle_timer_restart(sess);
    if (s->opts.read_timeout_ms <= 0) return;
    if (ft_iobuf_size(&sess->conn->in) == 0)
        ft_timer_stop(sess->loop, &sess->read_timer);
    else if (frames_completed || !ft_timer_armed(&sess->read_timer))
        ft_timer_start(sess->loop, &sess->read_timer,
                       now + (int64_t)s->opts.read_timeout_ms * FT_NS_PER_MS, on_read_timeout);
}

/* On a server with TLS, the first byte of a connection decides its transport: a handshake record
 * (0x16) starts TLS, whose decrypted bytes then come back here to be sniffed as plain ones are.
 * No baidu_std or HTTP request starts with 0x16. Returns 1 when the caller goes on with the bytes
 * in c->in, 0 when TLS took them, or a negative code to close. */
static int sniff_transport(ft_session *sess)
{
    ft_conn *c = sess->conn;
    ftrpc_server *s = sess->server;
    uint8_t first;
    if (ft_iobuf_copy_at(&c->in, 0, &first, 1) != 1) return 0;
    sess->transport_known = 1;
    if (first == FT_TLS_HANDSHAKE_BYTE) {
        int rc = ft_conn_start_tls(c, s->tls_ctx, NULL);
        if (rc != 0) return rc;
        /* the handshake, then the protocol's first bytes, must come within the header timeout */
        ft_timer_start(sess->loop, &sess->read_timer,
                       ft_loop_now(sess->loop) +
                           (int64_t)s->opts.http_header_timeout_ms * FT_NS_PER_MS,
                       ft_server_read_timer_fired);
        return 0;
    }
    if (s->opts.tls.force) {
        atomic_fetch_add(&s->plain_refused, 1);
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "closing %s: a plain connection, and TLS is forced",
                           c->peer);
        return FTRPC_EREQUEST;
    }
    return 1;
}

int ft_server_account_pending(ft_session *sess)
{
    ftrpc_server *s = sess->server;
    /* what the read buffer holds, and the bodies of gRPC streams not yet whole */
    size_t now = sess->conn->state == FT_CONN_OPEN
                     ? ft_iobuf_size(&sess->conn->in) + ft_grpc_session_buffered(sess)
                     : 0;
    if (now == sess->pending_bytes) return 0; /* the common case: every request was whole */
    long long delta = (long long)now - (long long)sess->pending_bytes;
    sess->pending_bytes = now;
    long long total = atomic_fetch_add(&s->pending_bytes, delta) + delta;
    if (delta <= 0 || (unsigned long long)total <= s->opts.max_pending_request_bytes) return 0;
    atomic_fetch_add(&s->pending_refused, 1);
    FT_LOG_RATELIMITED(FTRPC_LOG_WARN,
                       "closing %s: unfinished requests hold %lld bytes on this server, past "
                       "max_pending_request_bytes (%zu); this connection holds %zu",
                       sess->conn->peer, total, s->opts.max_pending_request_bytes, now);
    return FTRPC_EOVERCROWDED;
}

/* Drops the session's share of the pending bytes (on close). */
static void release_pending(ft_session *sess)
{
    if (sess->pending_bytes == 0) return;
    atomic_fetch_sub(&sess->server->pending_bytes, (long long)sess->pending_bytes);
    sess->pending_bytes = 0;
}

static int read_requests(ft_conn *c);

static int session_on_read(ft_conn *c)
{
    int rc = read_requests(c);
    if (rc != 0) return rc;
    return ft_server_account_pending(c->owner);
}

/* Parses and dispatches what the connection has read. 0, or a negative code to close. */
static int read_requests(ft_conn *c)
{
    ft_session *sess = c->owner;
    ftrpc_server *s = sess->server;
    if (s->tls_ctx && !sess->transport_known) {
        int rc = sniff_transport(sess);
        if (rc <= 0) return rc;
    }
    if (sess->proto == FT_PROTO_UNKNOWN && !sniff(sess)) return 0;
    if (sess->proto == FT_PROTO_HTTP || sess->proto == FT_PROTO_GRPC) {
        /* HTTP sessions time their own headers (408); a request is not idleness either */
        idle_timer_restart(sess);
        return sess->proto == FT_PROTO_HTTP ? ft_http_session_on_read(sess)
                                            : ft_grpc_session_on_read(sess);
    }
    int frames = 0;
    while (c->state == FT_CONN_OPEN) {
        ft_rpc_frame f;
        const char *reason = NULL;
        /* ft_baidu_std_parse initializes f */
        ft_parse_status st = ft_baidu_std_parse(&c->in, s->opts.max_body_size, &f, &reason);
        if (st == FT_PARSE_NEED_MORE) {
            c->read_want = ft_baidu_std_frame_size(&c->in, s->opts.max_body_size);
            break;
        }
        c->read_want = 0;
        frames++;
        if (st == FT_PARSE_CLOSE) {
            FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "closing connection from %s: %s", c->peer,
                               reason ? reason : "bad frame");
            ft_rpc_frame_fini(&f);
            return FTRPC_EREQUEST;
        }
        if (st == FT_PARSE_BAD_FRAME) {
            FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "bad request from %s: %s", c->peer,
                               reason ? reason : "bad frame");
            if (f.correlation_id >= 0) write_error(c, f.correlation_id, FTRPC_EREQUEST, reason);
            ft_rpc_frame_fini(&f);
            continue;
        }
        if (!f.is_request) {
            FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "closing connection from %s: %s", c->peer,
                               "a response frame sent to a server");
            ft_rpc_frame_fini(&f);
            return FTRPC_EREQUEST;
        }
        dispatch(sess, &f);
        ft_rpc_frame_fini(&f);
    }
    arm_timeouts(sess, frames);
    return 0;
}

static void session_on_close(ft_conn *c, int reason)
{
    ft_session *sess = c->owner;
    ftrpc_server *s = sess->server;
    if (reason == FTRPC_ETLS) atomic_fetch_add(&s->tls_failures, 1); /* tls.c logged why */
    if (reason == FTRPC_EEOF && ft_iobuf_size(&c->in) > 0)
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN,
                           "connection from %s closed mid-frame (%zu bytes unparsed)", c->peer,
                           ft_iobuf_size(&c->in));
    else
        FT_DEBUG("connection from %s closed (%s)", c->peer, ftrpc_strerror(reason));
    /* calls still being handled outlive the session: they must not reach back into it. Nobody can
     * receive their answers any more, so they are cancelled too (brpc's and gRPC's servers take a
     * broken connection as a cancel): one still queued is never run, and a handler may stop early.
     * Without it a worker ran every queued call of a client that had left, and a graceful stop,
     * which closes the connections once its grace period ran out, waited for the whole queue. */
    ftrpc_server_call *call;
    while ((call = ft_idmap_take_any(&sess->calls)) != NULL) {
        call->session = NULL;
        atomic_store_explicit(&call->canceled, 1, memory_order_release);
    }
    ft_idmap_fini(&sess->calls);
    release_pending(sess);
    ft_timer_stop(sess->loop, &sess->idle_timer);
    ft_timer_stop(sess->loop, &sess->read_timer);
    ft_http_session_free(sess);
    ft_grpc_session_free(sess);
    ft_list_remove(&sess->node);
    free(sess);
    count_down(s, &s->sessions);
}
