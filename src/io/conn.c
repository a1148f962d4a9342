/* TCP connections with batched writes and bounded output (see conn.h).
 *
 * Why a dirty list instead of writing at once: a loop iteration often produces many frames for one
 * socket (a read of 40 requests produces 40 replies), and one writev for all of them is far cheaper
 * than 40 write calls. The flush runs in the loop's check and prepare phases, i.e. right after the
 * IO callbacks and timers that produced the frames, so batching adds no latency.
 */
#include "io/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef FTRPC_HAVE_UV_IO_WATCHER
#include <sys/epoll.h>
#endif

#include "base/list.h"
#include "base/log.h"
#include "ftrpc/common.h"
#include "io/tls.h"

/* COPY_MAX: slices up to this size are copied into the output rather than shared (ft_conn_write);
 * past it a copy costs more than the extra iovec. */
enum { MAX_IOV = 256, READ_MIN_SPACE = 2048, COPY_MAX = 512 };

static void conn_free(ft_conn *c)
{
    ft_tls_free(c->tls);
    ft_iobuf_fini(&c->in);
    ft_iobuf_fini(&c->out);
    ft_iobuf_fini(&c->inflight);
    free(c);
}

void ft_conn_ref(ft_conn *c)
{
    c->refs++;
}

void ft_conn_unref(ft_conn *c)
{
    if (--c->refs == 0) conn_free(c);
}

static void free_unopened(uv_handle_t *h)
{
    conn_free(h->data);
}

static ft_conn *conn_new(ft_loop *loop, size_t max_unwritten, const ft_conn_handler *handler,
                         void *owner)
{
    ft_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->loop = loop;
    c->handler = handler;
    c->owner = owner;
    c->max_unwritten = max_unwritten ? max_unwritten : (size_t)64 << 20;
    c->refs = 1; /* the loop's: dropped after on_close */
    ft_iobuf_init(&c->in);
    ft_iobuf_init(&c->out);
    ft_iobuf_init(&c->inflight);
    uv_tcp_init(&loop->uv, &c->tcp);
    c->tcp.data = c;
    return c;
}

void ft_sockaddr_format(const struct sockaddr *sa, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
        port = ntohs(s4->sin_port);
        snprintf(buf, len, "%s:%d", ip, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
        port = ntohs(s6->sin6_port);
        snprintf(buf, len, "[%s]:%d", ip, port);
    } else {
        snprintf(buf, len, "?");
    }
}

int ft_sockaddr_parse(const char *hostport, struct sockaddr_storage *out)
{
    char host[256];
    const char *colon;
    const char *h = hostport;
    size_t hl;
    if (*h == '[') {
        const char *rb = strchr(h, ']');
        if (!rb || rb[1] != ':') return FTRPC_EADDR;
        h++;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(h, ':');
        if (!colon) return FTRPC_EADDR;
        hl = (size_t)(colon - h);
    }
    if (hl == 0 || hl >= sizeof host) return FTRPC_EADDR;
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || end == colon + 1 || port < 0 || port > 65535) return FTRPC_EADDR;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) return FTRPC_EADDR;
    memset(out, 0, sizeof *out);
    memcpy(out, res->ai_addr, res->ai_addrlen);
    if (out->ss_family == AF_INET)
        ((struct sockaddr_in *)out)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)out)->sin6_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return 0;
}

/* ---- reading ---- */

static int conn_fd(const ft_conn *c)
{
    uv_os_fd_t fd;
    return uv_fileno((const uv_handle_t *)&c->tcp, &fd) == 0 ? fd : -1;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    ft_conn *c = h->data;
    char *p;
    size_t len;
    (void)suggested;
    if (c->tls) {
        ft_tls_read_buffer(buf); /* ciphertext: decrypted into c->in by ft_tls_on_read */
        return;
    }
    size_t min = READ_MIN_SPACE, have = ft_iobuf_size(&c->in);
    if (c->read_want > have) {
        /* the rest of a frame: into the current block when it holds the rest or is itself a large
         * block, else into a new block sized for the rest when that is large */
        size_t rest = c->read_want - have;
        const ft_block *wb = c->in.write_block;
        size_t room = wb ? wb->cap - wb->used : 0;
        if (room >= (rest < FT_CONN_READ_BLOCK_MIN ? rest : FT_CONN_READ_BLOCK_MIN))
            min = 1;
        else if (rest >= FT_CONN_READ_BLOCK_MIN)
            min = rest < FT_CONN_READ_BLOCK_MAX ? rest : FT_CONN_READ_BLOCK_MAX;
    }
    if (ft_iobuf_reserve(&c->in, min, &p, &len) != 0) {
        buf->base = NULL;
        buf->len = 0; /* libuv reports UV_ENOBUFS */
        return;
    }
    buf->base = p;
    buf->len = len;
}

static void close_now(ft_conn *c, int reason);

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    ft_conn *c = s->data;
    if (nread > 0 && c->tls) {
        c->bytes_read += (uint64_t)nread;
        ft_tls_on_read(c, buf->base, (size_t)nread);
        return;
    }
    if (nread > 0) {
        ft_iobuf_commit(&c->in, (size_t)nread);
        c->bytes_read += (uint64_t)nread;
        if (c->state != FT_CONN_OPEN) return;
        int rc = c->handler->on_read(c);
        if (rc < 0 && c->state != FT_CONN_CLOSED) close_now(c, rc);
        /* Every byte read was taken: give the block being read into back to the thread's cache
         * rather than keep it until the next read. An idle connection then holds no 8 KiB block
         * (issue #26: a server's memory per idle connection); a busy one takes a block from the
         * cache again on its next read, the cost of a list pop. */
        else if (ft_iobuf_size(&c->in) == 0 && c->in.write_block)
            ft_iobuf_fini(&c->in);
        return;
    }
    if (nread == 0) return; /* EAGAIN */
    close_now(c, nread == UV_EOF ? FTRPC_EEOF : FTRPC_EFAILEDSOCKET);
}

int ft_conn_read_now(ft_conn *c)
{
    int fd = conn_fd(c);
    if (c->state != FT_CONN_OPEN || fd < 0) return 0;
    int got = 0;
    /* as libuv's stream reader: read until the kernel has less than a buffer's worth, bounded so
     * that a peer that never stops sending cannot keep the borrower here */
    for (int i = 0; i < 32 && c->state == FT_CONN_OPEN; i++) {
        uv_buf_t buf;
        on_alloc((uv_handle_t *)&c->tcp, READ_MIN_SPACE, &buf);
        if (!buf.base) {
            on_read((uv_stream_t *)&c->tcp, UV_ENOBUFS, &buf);
            return 1;
        }
        ssize_t n;
        do
            n = read(fd, buf.base, buf.len);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return got;
        got = 1;
        on_read((uv_stream_t *)&c->tcp,
                n > 0    ? n
                : n == 0 ? UV_EOF
                         : uv_translate_sys_error(errno),
                &buf);
        if (n < (ssize_t)buf.len) return got;
    }
    return got;
}

/* The only place that reads libuv's private state: io_watcher.events, libuv's record of the epoll
 * interest it registered for the socket (EPOLLIN while reading, EPOLLOUT while writing), which the
 * kernel registration is set back to after a borrower's wait. Checked at build time
 * (CMakeLists.txt, FTRPC_HAVE_UV_IO_WATCHER); without it borrowers do not unwatch (the caller
 * then waits as an async call does). tests/unit/test_conn.c checks the semantics: a socket
 * unwatched is not read by its loop, and watched again it is. */
static unsigned libuv_interest(const ft_conn *c)
{
#ifdef FTRPC_HAVE_UV_IO_WATCHER
    return c->tcp.io_watcher.events;
#else
    (void)c;
    return 0;
#endif
}

/* Sets the kernel's interest in c's socket on its loop's epoll set; -1 when it cannot. */
static int set_kernel_interest(ft_conn *c, unsigned events)
{
#ifdef FTRPC_HAVE_UV_IO_WATCHER
    int fd = conn_fd(c);
    if (fd < 0) return -1;
    struct epoll_event e = {.events = events, .data.fd = fd};
    return epoll_ctl(uv_backend_fd(&c->loop->uv), EPOLL_CTL_MOD, fd, &e) == 0 ? fd : -1;
#else
    (void)c;
    (void)events;
    return -1;
#endif
}

int ft_conn_unwatch(ft_conn *c)
{
    if (c->state != FT_CONN_OPEN || libuv_interest(c) == 0) return -1;
    return set_kernel_interest(c, 0);
}

void ft_conn_watch_again(ft_conn *c)
{
    unsigned events = libuv_interest(c);
    if (c->state == FT_CONN_OPEN && events != 0) set_kernel_interest(c, events);
}

static void mark_dirty(ft_conn *c);

/* ---- closing ---- */

static void on_closed(uv_handle_t *h)
{
    ft_conn *c = h->data;
    c->state = FT_CONN_CLOSED;
    ft_iobuf_clear(&c->out);
    ft_iobuf_clear(&c->inflight);
    /* `in` is cleared after on_close, which may look at what the peer left unparsed */
    c->handler->on_close(c, c->close_reason);
    ft_iobuf_clear(&c->in);
    ft_conn_unref(c);
}

/* reset: send RST. An orderly close must never reset, whatever its reason: a reset makes the
 * kernel discard bytes that were flushed to it but not yet sent, and the peer may see ECONNRESET
 * before it has read the rest. */
static void close_socket(ft_conn *c, int reason, int reset)
{
    if (c->state == FT_CONN_CLOSED || uv_is_closing((uv_handle_t *)&c->tcp)) return;
    c->close_reason = reason;
    c->state = FT_CONN_CLOSING;
    ft_timer_stop(c->loop, &c->connect_timer);
    uv_read_stop((uv_stream_t *)&c->tcp);
    /* A reset tells the peer at once that this side is gone (errors, abortive closes). */
    if (reset && uv_tcp_close_reset(&c->tcp, on_closed) == 0) return;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void close_now(ft_conn *c, int reason)
{
    /* a TLS peer's alert may explain a broken socket (io/tls.h) */
    if (c->tls && (reason == FTRPC_EEOF || reason == FTRPC_EFAILEDSOCKET))
        reason = ft_tls_close_reason(c, reason);
    close_socket(c, reason, reason != 0);
}

/* handler->on_flush, once at a time: 0, or its negative code */
static int owner_flush(ft_conn *c)
{
    if (c->state != FT_CONN_OPEN || !c->handler->on_flush || c->owner_flushing) return 0;
    c->owner_flushing = 1;
    int rc = c->handler->on_flush(c);
    c->owner_flushing = 0;
    return rc;
}

void ft_conn_close(ft_conn *c, int reason, int abortive)
{
    if (c->state == FT_CONN_CLOSED || uv_is_closing((uv_handle_t *)&c->tcp)) return;
    /* what the owner encodes lazily (answers submitted to an HTTP/2 session this turn) is part of
     * what an orderly close flushes first */
    if (!abortive && owner_flush(c) < 0) abortive = 1;
    if (c->state == FT_CONN_CLOSED || uv_is_closing((uv_handle_t *)&c->tcp)) return;
    if (c->tls && !abortive && c->state == FT_CONN_OPEN) ft_tls_shutdown(c); /* close_notify */
    /* a write in progress ends (on_written) before the socket closes, even when the kernel
     * has taken all its bytes: bytes_written then counts them at on_close */
    if (abortive || c->state == FT_CONN_CONNECTING || c->out.size + c->inflight.size == 0) {
        close_socket(c, reason, abortive && reason != 0);
        return;
    }
    c->state = FT_CONN_CLOSING;
    c->close_reason = reason;
    c->close_when_flushed = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    mark_dirty(c);
}

/* ---- writing ---- */

static void mark_dirty(ft_conn *c)
{
    if (c->in_dirty) return;
    c->in_dirty = 1;
    ft_conn_ref(c);
    c->dirty_next = c->loop->dirty;
    c->loop->dirty = c;
}

int ft_conn_write(ft_conn *c, ft_iobuf *frame)
{
    if (c->state != FT_CONN_OPEN && c->state != FT_CONN_CONNECTING) return FTRPC_EFAILEDSOCKET;
    if (ft_conn_unwritten(c) + frame->size > c->max_unwritten) return FTRPC_EOVERCROWDED;
    /* small pieces (a header and meta, a short payload) are copied: 64 replies of 35 bytes go out
     * as one iovec instead of 128, and each frame's block goes back to the cache at once */
    if (ft_iobuf_cut_all_coalesced(frame, &c->out, COPY_MAX) != 0) return FTRPC_ENOMEM;
    if (c->state == FT_CONN_OPEN) mark_dirty(c);
    return 0;
}

int ft_conn_write_bytes(ft_conn *c, const void *data, size_t len)
{
    if (c->state != FT_CONN_OPEN && c->state != FT_CONN_CONNECTING) return FTRPC_EFAILEDSOCKET;
    if (ft_conn_unwritten(c) + len > c->max_unwritten) return FTRPC_EOVERCROWDED;
    if (ft_iobuf_append(&c->out, data, len) != 0) {
        close_now(c, FTRPC_ENOMEM);
        return FTRPC_ENOMEM;
    }
    if (c->state == FT_CONN_OPEN) mark_dirty(c);
    return 0;
}

static void flush(ft_conn *c);

void ft_conn_flush_soon(ft_conn *c)
{
    if (c->state == FT_CONN_OPEN) mark_dirty(c);
}

static void on_written(uv_write_t *req, int status)
{
    ft_conn *c = req->data;
    c->writing = 0;
    c->bytes_written += c->inflight.size;
    ft_iobuf_clear(&c->inflight);
    if (status < 0) {
        if (c->state != FT_CONN_CLOSED) close_now(c, FTRPC_EFAILEDSOCKET);
    } else if (c->state == FT_CONN_OPEN || c->close_when_flushed) {
        flush(c);
    }
    ft_conn_unref(c); /* the write's reference */
}

static void flush_wire(ft_conn *c)
{
    if (c->writing || uv_is_closing((uv_handle_t *)&c->tcp)) return;
    while (c->out.size > 0) {
        struct iovec iov[MAX_IOV];
        int n = ft_iobuf_to_iovec(&c->out, iov, MAX_IOV);
        int rc = uv_try_write((uv_stream_t *)&c->tcp, (uv_buf_t *)iov, (unsigned)n);
        if (rc > 0) {
            ft_iobuf_pop_front(&c->out, (size_t)rc);
            c->bytes_written += (uint64_t)rc;
            continue;
        }
        if (rc != UV_EAGAIN && rc != UV_ENOSYS) {
            close_now(c, FTRPC_EFAILEDSOCKET);
            return;
        }
        /* The kernel is full: hand everything queued to libuv, which writes it when it can. */
        ft_iobuf_cut(&c->out, &c->inflight, c->out.size);
        size_t nseg = ft_iobuf_slice_count(&c->inflight);
        uv_buf_t small[MAX_IOV];
        uv_buf_t *bufs = nseg <= MAX_IOV ? small : malloc(nseg * sizeof(uv_buf_t));
        if (!bufs) {
            close_now(c, FTRPC_ENOMEM);
            return;
        }
        ft_iobuf_to_iovec(&c->inflight, (struct iovec *)bufs, (int)nseg);
        c->write_req.data = c;
        ft_conn_ref(c);
        rc = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, bufs, (unsigned)nseg, on_written);
        if (bufs != small) free(bufs);
        if (rc != 0) {
            ft_conn_unref(c);
            close_now(c, FTRPC_EFAILEDSOCKET);
            return;
        }
        c->writing = 1;
        return;
    }
    if (c->close_when_flushed && !c->writing) close_socket(c, c->close_reason, 0);
}

/* Plain TCP writes c->out as it is; TLS first turns it into ciphertext (while the handshake runs,
 * only its records go out and the frames wait in `held`). */
static void flush(ft_conn *c)
{
    if (!c->tls) {
        flush_wire(c);
        return;
    }
    if (c->writing || uv_is_closing((uv_handle_t *)&c->tcp)) return;
    ft_iobuf held;
    ft_iobuf_init(&held);
    int rc = ft_tls_encrypt(c, &held);
    if (rc != 0) {
        ft_iobuf_fini(&held);
        close_now(c, rc);
        return;
    }
    flush_wire(c);
    if (ft_iobuf_size(&held) > 0) ft_iobuf_cut(&held, &c->out, ft_iobuf_size(&held));
    ft_iobuf_fini(&held);
}

void ft_conn_flush_dirty(ft_loop *loop)
{
    while (loop->dirty) {
        ft_conn *c = loop->dirty;
        loop->dirty = c->dirty_next;
        c->dirty_next = NULL;
        /* still marked while the owner queues: its writes do not put c on the list again */
        int rc = owner_flush(c);
        if (rc < 0 && c->state == FT_CONN_OPEN) close_now(c, rc);
        c->in_dirty = 0;
        if (c->state == FT_CONN_OPEN || c->close_when_flushed) flush(c);
        ft_conn_unref(c);
    }
}

/* ---- opening ---- */

static void set_nodelay(ft_conn *c)
{
    uv_tcp_nodelay(&c->tcp, 1);
}

/* Whether the kernel already holds the connect's outcome (connected or refused). */
static int connect_outcome_ready(ft_conn *c)
{
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) return 0;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLOUT | POLLERR | POLLHUP));
}

static void on_connect_timeout(ft_timer *t)
{
    ft_conn *c = ft_container_of(t, ft_conn, connect_timer);
    if (c->state != FT_CONN_CONNECTING) return;
    /* libuv runs timers before it polls: after an iteration that overran the timeout (a burst of
     * calls, a descheduled thread) the timer fires although the connect completed meanwhile.
     * Then on_connected, in this same iteration, reports what really happened. */
    if (connect_outcome_ready(c)) return;
    if (c->handler->on_connect) c->handler->on_connect(c, FTRPC_ECONNECT);
    close_now(c, FTRPC_ECONNECT);
}

int ft_sock_is_self_connected(int fd)
{
    struct sockaddr_storage local, peer;
    socklen_t local_len = sizeof local, peer_len = sizeof peer;
    if (getsockname(fd, (struct sockaddr *)&local, &local_len) != 0 ||
        getpeername(fd, (struct sockaddr *)&peer, &peer_len) != 0 ||
        local.ss_family != peer.ss_family)
        return 0;
    if (local.ss_family == AF_INET) {
        const struct sockaddr_in *l4 = (const struct sockaddr_in *)&local;
        const struct sockaddr_in *p4 = (const struct sockaddr_in *)&peer;
        return l4->sin_port == p4->sin_port && l4->sin_addr.s_addr == p4->sin_addr.s_addr;
    }
    if (local.ss_family == AF_INET6) {
        const struct sockaddr_in6 *l6 = (const struct sockaddr_in6 *)&local;
        const struct sockaddr_in6 *p6 = (const struct sockaddr_in6 *)&peer;
        return l6->sin6_port == p6->sin6_port &&
               memcmp(&l6->sin6_addr, &p6->sin6_addr, sizeof l6->sin6_addr) == 0;
    }
    return 0;
}

static int connect_error_code(int uv_status)
{
    return uv_status == UV_ECONNREFUSED ? FTRPC_ECONNREFUSED : FTRPC_ECONNECT;
}

static void on_connected(uv_connect_t *req, int status)
{
    ft_conn *c = req->data;
    ft_timer_stop(c->loop, &c->connect_timer);
    if (c->state != FT_CONN_CONNECTING) {
        ft_conn_unref(c); /* the connect request's reference */
        return;
    }
    int code = status < 0 ? connect_error_code(status) : 0;
    /* A connect to a port of this host where nothing listens, when that port lies in the ephemeral
     * range, may be given that very port as its own: TCP's simultaneous open then connects the
     * socket to itself, and the client would read its own requests back as if a server had sent
     * them. Nothing listens there, so it is what it would otherwise have been: refused. Checked
     * before the connection opens, so nothing queued on it is ever written. */
    if (code == 0 && ft_sock_is_self_connected(conn_fd(c))) {
        FT_DEBUG("connect to %s met itself (TCP self-connect): taken as refused", c->peer);
        code = FTRPC_ECONNREFUSED;
    }
    if (code != 0) {
        if (c->handler->on_connect) c->handler->on_connect(c, code);
        close_now(c, code);
        ft_conn_unref(c);
        return;
    }
    c->state = FT_CONN_OPEN;
    set_nodelay(c);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (c->handler->on_connect) c->handler->on_connect(c, 0);
    if ((c->out.size > 0 || c->tls) && c->state == FT_CONN_OPEN) mark_dirty(c);
    ft_conn_unref(c);
}

int ft_conn_connect(ft_loop *loop, const struct sockaddr *addr, int connect_timeout_ms,
                    size_t max_unwritten, const ft_conn_handler *handler, void *owner,
                    ft_conn **out)
{
    ft_conn *c = conn_new(loop, max_unwritten, handler, owner);
    if (!c) return FTRPC_ENOMEM;
    c->state = FT_CONN_CONNECTING;
    ft_sockaddr_format(addr, c->peer, sizeof c->peer);
    c->connect_req.data = c;
    int rc = uv_tcp_connect(&c->connect_req, &c->tcp, addr, on_connected);
    if (rc != 0) {
        c->state = FT_CONN_CLOSING;
        c->handler = handler;
        uv_close((uv_handle_t *)&c->tcp, free_unopened);
        return connect_error_code(rc);
    }
    ft_conn_ref(c); /* held by the connect request until on_connected */
    if (connect_timeout_ms > 0)
        ft_timer_start(loop, &c->connect_timer,
                       ft_loop_now_ns(loop) + (int64_t)connect_timeout_ms * 1000000,
                       on_connect_timeout);
    *out = c;
    return 0;
}

int ft_conn_set_keepalive(ft_conn *c, int idle_s, int interval_s, int count, int user_timeout_ms)
{
    int fd = conn_fd(c);
    if (fd < 0) return FTRPC_ESYS;
    struct {
        int level, name, value;
        const char *what;
    } opts[] = {
        {SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE"},
        {IPPROTO_TCP, TCP_KEEPIDLE, idle_s, "TCP_KEEPIDLE"},
        {IPPROTO_TCP, TCP_KEEPINTVL, interval_s, "TCP_KEEPINTVL"},
        {IPPROTO_TCP, TCP_KEEPCNT, count, "TCP_KEEPCNT"},
        {IPPROTO_TCP, TCP_USER_TIMEOUT, user_timeout_ms, "TCP_USER_TIMEOUT"},
    };
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        /* without keepalive its three settings mean nothing; the user timeout stands alone */
        if (opts[i].value <= 0 || (idle_s <= 0 && i < 4)) continue;
        if (setsockopt(fd, opts[i].level, opts[i].name, &opts[i].value, sizeof(int)) != 0) {
            FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "connection to %s: cannot set %s to %d: %s", c->peer,
                               opts[i].what, opts[i].value, strerror(errno));
            return FTRPC_ESYS;
        }
    }
    return 0;
}

int ft_keepalive_settings_valid(int idle_s, int interval_s, int count, int user_timeout_ms)
{
    return idle_s >= -1 && idle_s <= 32767 && interval_s >= 0 && interval_s <= 32767 &&
           count >= 0 && count <= 127 && user_timeout_ms >= -1;
}

void ft_keepalive_fill_defaults(int *idle_s, int *interval_s, int *count)
{
    if (*idle_s == 0) *idle_s = 10;
    if (*interval_s == 0) *interval_s = 2;
    if (*count == 0) *count = 3;
}

int ft_conn_adopt(ft_loop *loop, int fd, size_t max_unwritten, const ft_conn_handler *handler,
                  void *owner, ft_conn **out)
{
    ft_conn *c = conn_new(loop, max_unwritten, handler, owner);
    if (!c) return FTRPC_ENOMEM;
    if (uv_tcp_open(&c->tcp, fd) != 0) {
        c->state = FT_CONN_CLOSING;
        uv_close((uv_handle_t *)&c->tcp, free_unopened);
        close(fd);
        return FTRPC_ESYS;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
        ft_sockaddr_format((struct sockaddr *)&ss, c->peer, sizeof c->peer);
    c->state = FT_CONN_OPEN;
    set_nodelay(c);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    *out = c;
    return 0;
}
