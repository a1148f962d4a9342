/* ft_conn: one TCP connection on one loop, for client and server alike.
 *
 * Reads land in `in` (an iobuf filled in place, so frames are sliced out without copies) and the
 * owner's on_read parses every complete frame there. Writes (ft_conn_write) queue whole frames;
 * the loop flushes each dirty connection once per iteration with one writev of all its frames
 * (uv_try_write first, uv_write for what the kernel did not take). Unwritten bytes are bounded:
 * past max_unwritten a write fails with FTRPC_EOVERCROWDED and nothing is queued.
 *
 * Lifetime: the loop owns the connection. The owner gets on_close exactly once, after the socket is
 * closed; the memory is freed when the last reference is dropped (ft_conn_ref/unref, loop thread
 * only), so objects that outlive the socket (a server call being handled) can still hold it.
 * Every function here runs on the connection's loop only.
 */
#ifndef FT_IO_CONN_H
#define FT_IO_CONN_H

#include <netinet/in.h>
#include <sys/socket.h>
#include <uv.h>

#include "base/iobuf.h"
#include "io/loop.h"

typedef struct ft_conn ft_conn;

typedef struct ft_conn_handler {
    /* Bytes arrived in c->in. Return 0, or a negative FTRPC_E* code to close the connection at
     * once (abortive). May call ft_conn_close itself. */
    int (*on_read)(ft_conn *c);
    /* Client side: the connection is established (status 0) or failed (status < 0; on_close
     * follows). May be NULL. */
    void (*on_connect)(ft_conn *c, int status);
    /* The socket is closed; `reason` is 0 for a local orderly close, else why (FTRPC_EEOF,
     * FTRPC_EFAILEDSOCKET, FTRPC_ECONNREFUSED, ...). Last callback of the connection; c->in
     * still holds the bytes the owner left unparsed. */
    void (*on_close)(ft_conn *c, int reason);
    /* The loop is about to write c's output (ft_conn_flush_dirty, once per loop turn for a
     * connection marked by a write or ft_conn_flush_soon), or an orderly close (ft_conn_close)
     * is about to decide what is left to write: a protocol that encodes lazily (HTTP/2, whose
     * session batches every stream's frames into one pass) queues its bytes now. Return 0, or a
     * negative FTRPC_E* code to close the connection at once (abortive). May be NULL. */
    int (*on_flush)(ft_conn *c);
} ft_conn_handler;

enum ft_conn_state { FT_CONN_CONNECTING, FT_CONN_OPEN, FT_CONN_CLOSING, FT_CONN_CLOSED };

/* The largest block a read reserves for the rest of a frame (read_want); a frame's body beyond it
 * comes in further blocks of this size. Bounds what a peer that announces a large body and sends
 * nothing more makes the connection reserve (the pages are untouched until data arrives). */
#define FT_CONN_READ_BLOCK_MAX (4u << 20)
/* Below this rest, reads use the standard blocks (8 KiB): one more block costs less than a big
 * allocation. */
#define FT_CONN_READ_BLOCK_MIN (32u << 10)

struct ft_conn {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t write_req;
    ft_timer connect_timer;
    ft_loop *loop;
    const ft_conn_handler *handler;
    void *owner;
    ft_iobuf in; /* read, not yet parsed */
    /* Bytes the reader needs in `in` before it can parse the next frame, 0 when unknown; set by
     * the protocol handler after it found a frame incomplete. When the rest is large, the next
     * read goes into one block sized for it (at most FT_CONN_READ_BLOCK_MAX), so a 1 MiB body
     * lands in one or two slices, read in few syscalls, instead of 128 blocks of 8 KiB. */
    size_t read_want;
    ft_iobuf out;      /* queued, not yet given to the kernel */
    ft_iobuf inflight; /* given to uv_write, awaiting completion */
    size_t max_unwritten;
    enum ft_conn_state state;
    int close_reason;
    int refs;
    int writing;  /* a uv_write is in progress */
    int in_dirty; /* on the loop's dirty list */
    int close_when_flushed;
    int owner_flushing; /* inside handler->on_flush (which may close c: no second call) */
    ft_conn *dirty_next;
    char peer[64]; /* "ip:port" */
    uint64_t bytes_read, bytes_written;
    struct ft_tls *tls; /* NULL: plain TCP; else the TLS transport (io/tls.h), freed with c */
};

/* Starts connecting to addr; writes may be queued at once (sent when connected). The connect
 * fails with FTRPC_ECONNREFUSED, FTRPC_ECONNECT, or FTRPC_ECONNECT after connect_timeout_ms. A
 * connect that ends connected to itself (ft_sock_is_self_connected) fails with FTRPC_ECONNREFUSED
 * and is closed before anything queued is written. */
int ft_conn_connect(ft_loop *loop, const struct sockaddr *addr, int connect_timeout_ms,
                    size_t max_unwritten, const ft_conn_handler *handler, void *owner,
                    ft_conn **out);
/* TCP's own detection of a dead peer, for a peer that may vanish without a RST (a partition, a
 * host that lost power): keepalive probes after idle_s seconds without traffic, every
 * interval_s, and the connection fails after count unanswered ones; and TCP_USER_TIMEOUT, data
 * left unacknowledged for user_timeout_ms fails it. Either failure reaches on_close as
 * FTRPC_EFAILEDSOCKET. A value <= 0 leaves that setting to the kernel (idle_s <= 0: no
 * keepalive). Right after ft_conn_connect or ft_conn_adopt, on a connection whose socket exists.
 * 0, or FTRPC_ESYS when the kernel refused a setting (logged). */
int ft_conn_set_keepalive(ft_conn *c, int idle_s, int interval_s, int count, int user_timeout_ms);
/* Whether options' keepalive settings are ones ft_conn_set_keepalive can set: idle_s -1 (off) to
 * 32767, interval_s 0 to 32767, count 0 to 127 (Linux's MAX_TCP_KEEPIDLE, _KEEPINTVL, _KEEPCNT:
 * a value past them is refused by setsockopt on every connection), user_timeout_ms -1 or more;
 * 0 is "the default" for each. For the client's and the server's checks at creation. */
int ft_keepalive_settings_valid(int idle_s, int interval_s, int count, int user_timeout_ms);
/* Replaces the keepalive settings left at 0 with ftrpc's defaults, the same for clients and
 * servers: first probe after 10 idle seconds (brpc's keepalive idle when enabled; the kernel's is
 * 7200), then every 2 s, and the connection fails after 3 unanswered ones. */
void ft_keepalive_fill_defaults(int *idle_s, int *interval_s, int *count);
/* Adopts an accepted socket fd (the connection takes it over). */
int ft_conn_adopt(ft_loop *loop, int fd, size_t max_unwritten, const ft_conn_handler *handler,
                  void *owner, ft_conn **out);
/* Queues a whole frame, taking all of `frame`'s bytes (it is left empty on success; untouched on
 * error). FTRPC_EOVERCROWDED past the bound, FTRPC_EFAILEDSOCKET when closing or closed. */
int ft_conn_write(ft_conn *c, ft_iobuf *frame);
/* Queues a whole frame given as len contiguous bytes (a small frame encoded on the caller's
 * stack): copied into the output's tail block, with no frame buffer in between. Same bound and
 * errors as ft_conn_write; on FTRPC_ENOMEM the connection is reset, since its output may then end
 * with part of the frame. */
int ft_conn_write_bytes(ft_conn *c, const void *data, size_t len);
/* Closes. abortive = 0: stop reading, flush what is queued, then close; abortive = 1: reset now,
 * dropping what is queued. `reason` is handed to on_close. Closing twice does nothing. */
void ft_conn_close(ft_conn *c, int reason, int abortive);
void ft_conn_ref(ft_conn *c);
void ft_conn_unref(ft_conn *c);
static inline int ft_conn_is_open(const ft_conn *c)
{
    return c->state == FT_CONN_OPEN || c->state == FT_CONN_CONNECTING;
}
/* Unwritten bytes: queued, plus what the kernel has not yet taken of the write in progress.
 * libuv writes a large uv_write in pieces as the peer reads and counts down what is left
 * (uv_stream_get_write_queue_size), while `inflight` keeps every byte until the whole write
 * completes: counting `inflight` would hold bytes the kernel took long ago against the bound. */
static inline size_t ft_conn_unwritten(const ft_conn *c)
{
    return c->out.size + (c->writing ? uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp)
                                     : c->inflight.size);
}
/* Bytes the kernel has taken from this connection: what writes completed, plus what it took of
 * the write in progress. Grows while the peer reads (the kernel's buffers drain), stands still
 * when it does not: the server's idle timeout tells a slow reader from a stalled one by it. */
static inline uint64_t ft_conn_bytes_sent(const ft_conn *c)
{
    return c->bytes_written +
           (c->writing
                ? c->inflight.size - uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp)
                : 0);
}

/* Reads what the socket holds now and hands it to the owner's on_read, as the loop does when the
 * socket is readable; EOF and errors close the connection as they would there. For a borrower of
 * the loop (ft_loop_try_borrow) that waited on the socket itself. Returns 1 when it read bytes or
 * saw EOF or an error, 0 when there was nothing to read. */
int ft_conn_read_now(ft_conn *c);
/* For a borrower that waits on the socket itself (client/call.c): the loop stops watching it, so
 * that the sleeping IO thread does not wake for the same bytes, until ft_conn_watch_again, which
 * must come before the loop is returned for good. Returns the socket, or -1 when it cannot (not
 * open, or built without libuv's io_watcher: see conn.c). Only the kernel's epoll registration
 * changes; libuv's own record of it (io_watcher.events) is what ft_conn_watch_again restores, and
 * libuv rewrites the registration itself whenever its interest changes, so the two cannot
 * disagree for long. */
int ft_conn_unwatch(ft_conn *c);
void ft_conn_watch_again(ft_conn *c);
/* Called by the loop once per iteration: flushes every dirty connection. */
void ft_conn_flush_dirty(ft_loop *loop);
/* Has c flushed at the end of this loop turn even when nothing new was queued (the TLS transport
 * has handshake records to send). Does nothing unless c is open. */
void ft_conn_flush_soon(ft_conn *c);

/* Nonzero when the connected socket fd has equal local and peer addresses: a TCP self-connect,
 * which a connect to an unused port of this host inside the ephemeral range can end in. 0 when
 * not, or when either address cannot be read. */
int ft_sock_is_self_connected(int fd);

/* "ip:port" of a sockaddr into buf. */
void ft_sockaddr_format(const struct sockaddr *sa, char *buf, size_t len);
/* Parses "host:port" (IPv4, [IPv6] or a resolvable name) into *out. 0 or FTRPC_EADDR. */
int ft_sockaddr_parse(const char *hostport, struct sockaddr_storage *out);

#endif
