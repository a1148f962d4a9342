/* bench_echo: ftrpc's echo held to a raw-socket echo written in C, measured in the same run.
 *
 * What it measures. For each number of requests in flight (default 1, 16, 64) and each of two load
 * shapes, it runs a closed-loop client against an ftrpc echo server and against a raw epoll echo
 * server, and reports QPS, p50/p99 latency, the servers' RSS and CPU, and the ftrpc/raw ratios.
 *
 * Why the comparison is fair (the same argument is in docs/performance.md):
 *  - Both servers are separate processes started by this program, as users run them: the ftrpc
 *    one is `ftrpc echo-server --listen 127.0.0.1:0` (the CLI, default options, handler on the IO
 *    thread), the raw one is this binary re-executed with --raw-server. Both stay up for the whole
 *    run, so every cell meets a warm, long-running server.
 *  - The raw server is the honest minimum of an echo service: one thread, level-triggered epoll,
 *    per connection it reads whatever is available, walks the 4-byte length prefixes, and writes
 *    every complete frame back in one write (a partial frame waits for its tail; pending output
 *    pauses reading). It does framing, as any request/response server must, and nothing else.
 *  - Same payload bytes (16 B default), same number of requests in flight, same cell duration, the
 *    same warm-up (excluded from the figures), the same histogram and clock for both. A call's
 *    latency is taken in the client from just before issuing it to just after its reply is seen.
 *  - Two load shapes, each paired with the raw client of the same shape:
 *      async: ONE ftrpc_client on a runtime of one IO thread (so: one connection), N async calls
 *             outstanding, each re-issued from its completion callback. Raw: ONE connection, one
 *             thread, N length-prefixed requests pipelined, a new one sent for each reply (replies
 *             of one read are answered with one write, as ftrpc batches its writes per loop turn).
 *      sync:  N threads doing blocking ftrpc_call through ONE ftrpc_client (one IO thread, one
 *             connection): brpc's example shape (50 synchronous callers, one connection). Raw: N
 *             threads, each with its own blocking connection (a raw socket cannot share one
 *             connection between blocking callers without becoming an RPC framework), so this raw
 *             floor has no multiplexing to pay for; ftrpc does.
 *  - The machine is shared and noisy: cells are interleaved (raw, ftrpc, ftrpc, raw, ...: the order
 *    alternates every repetition) and repeated --reps times (default 5); each figure is the median
 *    over repetitions. The load average is printed before and after.
 *  - Every reply is checked (size, and its first bytes); errors are counted and printed, never
 *    silently counted as throughput.
 *
 *  - Typed (on unless --no-typed): the same echo through protoc-c's generated code (ftrpc/typed.h),
 *    against a third ftrpc server, this binary re-executed with --typed-server (a
 *    benchecho.Echo service whose implementation answers with its request message, on the IO
 *    thread), called through the generated stub (async) or ftrpc_typed_call (sync). Interleaved
 *    with the others, and reported as typed/bytes ratios: what packing and unpacking on both
 *    sides cost over passing bytes (issue 22's target: QPS ratio >= 0.9).
 *
 *  - TLS (on unless --no-tls): the same ftrpc cells against a third server, `ftrpc echo-server
 *    --tls-cert --tls-key` (a self-signed P-256 certificate made at start by the openssl
 *    command), with a client that verifies it. Interleaved with the other two like them, and
 *    reported as TLS/plain ratios of QPS and latency: what encryption costs on the same machine.
 *
 *  - gRPC (on unless --no-grpc): the same ftrpc cells with the client speaking gRPC over HTTP/2
 *    (ftrpc_client_options.protocol = FTRPC_PROTOCOL_GRPC, nghttp2) to another `ftrpc echo-server`,
 *    whose port serves gRPC beside baidu_std. Interleaved like the others, reported as
 *    grpc/baidu_std ratios: what HTTP/2 framing, HPACK and the gRPC layer cost over baidu_std.
 *
 *  - gRPC C++ (on with the gRPC cells when the peer was built: tests/integration/grpc_cpp_peer.cc,
 *    gRPC C++ 1.51's callback API): the reference implementation beside ftrpc, at 1 and 50 calls
 *    outstanding on ONE connection. The C++ peer's closed-loop client (its own process) drives
 *    ftrpc's gRPC server (the gRPC echo-server above) and a gRPC C++ echo server (the peer,
 *    `grpc_cpp_peer server`); the ftrpc client (async shape, protocol gRPC) drives both; the
 *    ftrpc client over baidu_std drives ftrpc's server, the baseline of the gRPC cells. Interleaved
 *    (the order turns every repetition), medians of paired ratios, and each server's CPU per call
 *    (user+sys of its process over the cell's calls: a cost that load does not change as it
 *    changes QPS). Targets: ftrpc's gRPC server >= 2x the gRPC C++ server's QPS (C++ client), and
 *    the ftrpc client over gRPC >= 0.5x over baidu_std.
 *
 *  - rpcz (with --rpcz): the same ftrpc cells with rpcz recording every call on both sides, the
 *    server an `ftrpc echo-server --rpcz` and the client's process with ftrpc_rpcz_enable(0) for
 *    the cell's length. Interleaved like the others, reported as rpcz/plain ratios: what the
 *    record of recent calls costs (docs/observability.md, rpcz).
 *
 * What it does not do: pin threads to cores, tune the kernel, or measure anything but loopback.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#define BENCH_NAME "bench_echo"
#include "bench_proc.h"
#include "echo.pb-c.h"
#include "ftrpc/ftrpc.h"
#include "ftrpc/typed.h"

#define MAX_INFLIGHT 4096
#define MAX_PAYLOAD (64u << 20)
#define CHECK_BYTES 64 /* how many leading bytes of each reply are compared with the request */

/* ---- latency histogram: log-linear, 64 linear sub-buckets per power of two (error < 1.6%) ---- */

enum { SUB_BITS = 6, SUB = 1 << SUB_BITS, NBUCKETS = (41 - SUB_BITS + 1) * SUB };

typedef struct hist {
    uint64_t b[NBUCKETS];
} hist;

static int hist_index(uint64_t v)
{
    if (v < 2 * SUB) return (int)v;
    int msb = 63 - __builtin_clzll(v);
    if (msb > 40) return NBUCKETS - 1; /* beyond 18 minutes: clamp */
    int shift = msb - SUB_BITS;
    return (shift + 1) * SUB + (int)((v >> shift) - SUB);
}

/* The middle of bucket i, in ns. */
static double hist_value(int i)
{
    if (i < 2 * SUB) return i;
    int shift = i / SUB - 1;
    uint64_t mant = (uint64_t)(i % SUB + SUB);
    return (double)(mant << shift) + (double)((UINT64_C(1) << shift) - 1) / 2.0;
}

static double hist_quantile(const hist *h, double q)
{
    uint64_t total = 0;
    for (int i = 0; i < NBUCKETS; i++)
        total += h->b[i];
    if (!total) return 0;
    uint64_t rank = (uint64_t)(q * (double)total);
    if (rank >= total) rank = total - 1;
    uint64_t seen = 0;
    for (int i = 0; i < NBUCKETS; i++) {
        seen += h->b[i];
        if (seen > rank) return hist_value(i);
    }
    return hist_value(NBUCKETS - 1);
}

/* ---- per-thread statistics of one cell ---- */

/* Owned by the one thread that records into it (no atomics on the hot path); merged by the main
 * thread after every worker has stopped. */
typedef struct stats {
    uint64_t count;  /* completed in the measured window */
    uint64_t errors; /* failed or wrong replies, in any phase */
    int first_error;
    char first_error_text[256];
    hist h;
} stats;

enum { PHASE_WARMUP = 0, PHASE_MEASURE = 1, PHASE_STOP = 2 };

typedef struct cell {
    int inflight;
    atomic_int phase;
    int gen;              /* distinguishes cells for the thread-local stats pointer */
    pthread_mutex_t lock; /* guards the stats list */
    stats **all;
    int nall, capall;
    /* the request */
    const unsigned char *payload;
    size_t payload_len;
    ftrpc_buf *req;
    ftrpc_client *client;
    ProtobufCService *typed; /* the typed cells: a service over client */
    Benchecho__EchoMsg msg;  /* the typed request: payload as its data */
    atomic_int outstanding;  /* async shape: calls not yet completed for good */
} cell;

static _Thread_local stats *tl_stats;
static _Thread_local int tl_gen;
static int next_gen = 1;

/* The calling thread's stats for cell c: made on first use, so that callbacks on whatever IO thread
 * each record into their own. */
static stats *my_stats(cell *c)
{
    if (tl_stats && tl_gen == c->gen) return tl_stats;
    stats *s = calloc(1, sizeof *s);
    if (!s) abort();
    pthread_mutex_lock(&c->lock);
    if (c->nall == c->capall) {
        c->capall = c->capall ? 2 * c->capall : 16;
        c->all = realloc(c->all, (size_t)c->capall * sizeof *c->all);
        if (!c->all) abort();
    }
    c->all[c->nall++] = s;
    pthread_mutex_unlock(&c->lock);
    tl_stats = s;
    tl_gen = c->gen;
    return s;
}

static void record(cell *c, int64_t issued_ns, int64_t done_ns)
{
    if (atomic_load_explicit(&c->phase, memory_order_relaxed) != PHASE_MEASURE) return;
    stats *s = my_stats(c);
    s->count++;
    s->h.b[hist_index((uint64_t)(done_ns - issued_ns))]++;
}

static void record_error(cell *c, int code, const char *text)
{
    stats *s = my_stats(c);
    if (!s->errors++) {
        s->first_error = code;
        snprintf(s->first_error_text, sizeof s->first_error_text, "%s", text);
    }
}

/* ---- process helpers ---- */

/* Busy and total CPU ticks of the whole machine (every CPU, every process, also those of other
 * containers that ps does not show): what is left after our own use is the noise we ran under. */
typedef struct machine_ticks {
    unsigned long long busy, total;
} machine_ticks;

static machine_ticks sample_machine(void)
{
    machine_ticks t = {0, 0};
    unsigned long long v[10] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (f) {
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]) >= 8) {
            /* user nice system idle iowait irq softirq steal [guest guest_nice: inside user] */
            for (int i = 0; i < 8; i++)
                t.total += v[i];
            t.busy = t.total - v[3] - v[4];
        }
        fclose(f);
    }
    return t;
}

/* ---- the raw server: one thread, level-triggered epoll, length-prefixed echo ---- */

typedef struct raw_conn {
    int fd;
    unsigned char *in;
    size_t in_len, in_cap;
    unsigned char *out; /* unwritten bytes of the last reply batch */
    size_t out_off, out_len;
} raw_conn;

static void raw_close(int ep, raw_conn *rc)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, rc->fd, NULL);
    close(rc->fd);
    free(rc->in);
    free(rc->out);
    free(rc);
}

/* Writes what it can of rc's pending output; 0 when all is written, 1 when some is left, -1 on a
 * broken connection. */
static int raw_flush(raw_conn *rc)
{
    while (rc->out_off < rc->out_len) {
        ssize_t n = write(rc->fd, rc->out + rc->out_off, rc->out_len - rc->out_off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return 1;
        if (n <= 0) return -1;
        rc->out_off += (size_t)n;
    }
    rc->out_off = rc->out_len = 0;
    return 0;
}

/* One readable event: read once, echo every complete frame with one write. -1 closes. */
static int raw_on_readable(int ep, raw_conn *rc)
{
    if (rc->in_cap - rc->in_len < 4096) {
        size_t cap = rc->in_cap * 2;
        unsigned char *p = realloc(rc->in, cap);
        if (!p) return -1;
        rc->in = p;
        rc->in_cap = cap;
    }
    ssize_t n = read(rc->fd, rc->in + rc->in_len, rc->in_cap - rc->in_len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    if (n <= 0) return -1;
    rc->in_len += (size_t)n;
    size_t done = 0;
    for (;;) {
        if (rc->in_len - done < 4) break;
        uint32_t len;
        memcpy(&len, rc->in + done, 4);
        len = ntohl(len);
        if (len > MAX_PAYLOAD) return -1;
        if (rc->in_len - done < 4 + (size_t)len) {
            /* make room for the whole frame so the next reads complete it */
            if (rc->in_cap < 4 + (size_t)len + 4096) {
                unsigned char *p = realloc(rc->in, 4 + (size_t)len + 4096);
                if (!p) return -1;
                rc->in = p;
                rc->in_cap = 4 + (size_t)len + 4096;
            }
            break;
        }
        done += 4 + (size_t)len;
    }
    if (!done) return 0;
    /* try to write straight from the input buffer; keep only what the socket did not take */
    size_t off = 0;
    while (off < done) {
        ssize_t w = write(rc->fd, rc->in + off, done - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) break;
        if (w <= 0) return -1;
        off += (size_t)w;
    }
    if (off < done) {
        rc->out = malloc(done - off);
        if (!rc->out) return -1;
        memcpy(rc->out, rc->in + off, done - off);
        rc->out_off = 0;
        rc->out_len = done - off;
        /* back-pressure: stop reading until the client takes its replies */
        struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = rc};
        epoll_ctl(ep, EPOLL_CTL_MOD, rc->fd, &ev);
    }
    memmove(rc->in, rc->in + done, rc->in_len - done);
    rc->in_len -= done;
    return 0;
}

static int raw_server_main(const char *listen_host)
{
    int ep, one = 1;
    int lfd = raw_listen(listen_host, &ep);
    if (lfd < 0) return 1;
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return 1;
        for (int i = 0; i < n; i++) {
            raw_conn *rc = evs[i].data.ptr;
            if (!rc) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    raw_conn *c = calloc(1, sizeof *c);
                    if (!c || !(c->in = malloc(65536))) {
                        free(c);
                        close(fd);
                        continue;
                    }
                    c->fd = fd;
                    c->in_cap = 65536;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            if (rc->out_len) { /* waiting to write */
                int r = raw_flush(rc);
                if (r < 0) {
                    raw_close(ep, rc);
                } else if (r == 0) {
                    free(rc->out);
                    rc->out = NULL;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = rc};
                    epoll_ctl(ep, EPOLL_CTL_MOD, rc->fd, &cev);
                }
                continue;
            }
            if (raw_on_readable(ep, rc) < 0) raw_close(ep, rc);
        }
    }
}

/* ---- raw clients ---- */

static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fprintf(stderr, "bench_echo: connect to raw server: %s\n", strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* The request frame: 4-byte big-endian length, then the payload. */
static unsigned char *raw_frame(const cell *c)
{
    unsigned char *f = malloc(4 + c->payload_len);
    if (!f) abort();
    uint32_t len = htonl((uint32_t)c->payload_len);
    memcpy(f, &len, 4);
    memcpy(f + 4, c->payload, c->payload_len);
    return f;
}

static int reply_ok(const cell *c, const unsigned char *p, size_t len)
{
    size_t k = len < CHECK_BYTES ? len : CHECK_BYTES;
    return len == c->payload_len && memcmp(p, c->payload, k) == 0;
}

typedef struct raw_sync_arg {
    cell *c;
    int port;
} raw_sync_arg;

/* sync shape: one thread, one blocking connection, one request at a time. */
static void *raw_sync_thread(void *p)
{
    raw_sync_arg *a = p;
    cell *c = a->c;
    int fd = raw_connect(a->port);
    if (fd < 0) {
        record_error(c, -1, "connect failed");
        return NULL;
    }
    size_t flen = 4 + c->payload_len;
    unsigned char *frame = raw_frame(c), *reply = malloc(flen);
    while (atomic_load_explicit(&c->phase, memory_order_relaxed) != PHASE_STOP) {
        int64_t t0 = now_ns();
        size_t off = 0;
        while (off < flen) {
            ssize_t n = write(fd, frame + off, flen - off);
            if (n <= 0) goto broken;
            off += (size_t)n;
        }
        off = 0;
        while (off < flen) {
            ssize_t n = read(fd, reply + off, flen - off);
            if (n <= 0) goto broken;
            off += (size_t)n;
        }
        int64_t t1 = now_ns();
        if (memcmp(reply, frame, 4) != 0 || !reply_ok(c, reply + 4, c->payload_len))
            record_error(c, -1, "wrong reply");
        else
            record(c, t0, t1);
    }
    goto out;
broken:
    record_error(c, -1, "connection broke");
out:
    close(fd);
    free(frame);
    free(reply);
    return NULL;
}

/* async shape: one thread, one connection, `inflight` requests pipelined. Replies come back in
 * request order, so a ring of issue times is enough to time them. */
static int raw_pipelined(cell *c, int port)
{
    int fd = raw_connect(port);
    if (fd < 0) return -1;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    size_t flen = 4 + c->payload_len;
    unsigned char *frame = raw_frame(c);
    int n = c->inflight;
    int64_t *issued = malloc((size_t)n * sizeof *issued);
    size_t in_cap = flen * (size_t)n + 65536, in_len = 0;
    size_t out_cap = flen * (size_t)n, out_off = 0, out_len = 0;
    unsigned char *in = malloc(in_cap), *out = malloc(out_cap);
    int head = 0, outstanding = 0, rc = 0;
    int64_t now = now_ns();
    for (int i = 0; i < n; i++) {
        memcpy(out + out_len, frame, flen);
        out_len += flen;
        issued[(head + outstanding++) % n] = now;
    }
    int64_t stall_since = 0;
    while (outstanding > 0) {
        int progress = 0;
        if (out_off < out_len) {
            ssize_t w = write(fd, out + out_off, out_len - out_off);
            if (w < 0 && errno != EAGAIN && errno != EINTR) goto broken;
            if (w > 0) {
                out_off += (size_t)w;
                progress = 1;
                if (out_off == out_len) out_off = out_len = 0;
            }
        }
        ssize_t r = read(fd, in + in_len, in_cap - in_len);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) goto broken;
        if (r > 0) {
            progress = 1;
            in_len += (size_t)r;
            size_t done = 0;
            now = now_ns();
            int phase = atomic_load_explicit(&c->phase, memory_order_relaxed);
            while (in_len - done >= flen) {
                uint32_t len;
                memcpy(&len, in + done, 4);
                if (ntohl(len) != c->payload_len || !reply_ok(c, in + done + 4, c->payload_len))
                    record_error(c, -1, "wrong reply");
                else
                    record(c, issued[head], now);
                head = (head + 1) % n;
                outstanding--;
                done += flen;
                if (phase != PHASE_STOP) { /* closed loop: one new request per reply */
                    if (out_off > 0 && out_off == out_len) out_off = out_len = 0;
                    if (out_len + flen > out_cap) { /* compact what is unwritten */
                        memmove(out, out + out_off, out_len - out_off);
                        out_len -= out_off;
                        out_off = 0;
                    }
                    memcpy(out + out_len, frame, flen);
                    out_len += flen;
                    issued[(head + outstanding++) % n] = now_ns();
                }
            }
            memmove(in, in + done, in_len - done);
            in_len -= done;
        }
        if (!progress) {
            if (!stall_since)
                stall_since = now_ns();
            else if (now_ns() - stall_since > 10 * INT64_C(1000000000)) {
                fprintf(stderr, "bench_echo: raw client: no progress for 10 s, %d outstanding\n",
                        outstanding);
                rc = -1;
                break;
            }
            struct pollfd pfd = {.fd = fd, .events = POLLIN | (out_len > out_off ? POLLOUT : 0)};
            poll(&pfd, 1, 100);
        } else {
            stall_since = 0;
        }
    }
    goto out;
broken:
    record_error(c, -1, "connection broke");
    rc = -1;
out:
    close(fd);
    free(frame);
    free(issued);
    free(in);
    free(out);
    return rc;
}

static void *raw_pipelined_thread(void *p)
{
    raw_sync_arg *a = p;
    return raw_pipelined(a->c, a->port) == 0 ? NULL : (void *)1;
}

/* ---- ftrpc clients ---- */

static const char *SERVICE = "example.EchoService", *METHOD = "Echo";

static int ftrpc_reply_ok(const cell *c, const ftrpc_result *r)
{
    unsigned char head[CHECK_BYTES];
    size_t len = ftrpc_buf_size(r->response);
    size_t k = ftrpc_buf_copy_to(r->response, head, sizeof head);
    return len == c->payload_len && k == (len < CHECK_BYTES ? len : CHECK_BYTES) &&
           memcmp(head, c->payload, k) == 0;
}

typedef struct async_slot {
    cell *c;
    int64_t issued_ns;
} async_slot;

static void on_async_done(ftrpc_result *r, void *arg)
{
    async_slot *s = arg;
    cell *c = s->c;
    int64_t now = now_ns();
    if (r->kind != FTRPC_RESULT_OK)
        record_error(c, r->code, r->error_text);
    else if (!ftrpc_reply_ok(c, r))
        record_error(c, -1, "wrong reply");
    else
        record(c, s->issued_ns, now);
    if (atomic_load_explicit(&c->phase, memory_order_relaxed) != PHASE_STOP) {
        /* the completion's clock read doubles as the next issue time, as the raw client reads the
         * clock once per reply too (a read costs ~30 ns on the dev VM's kvm-clock); the latency of
         * the next call then includes this callback's rest, never less than the truth */
        s->issued_ns = now;
        int rc = ftrpc_call_async(c->client, SERVICE, METHOD, c->req, NULL, NULL, on_async_done, s,
                                  NULL);
        if (rc == 0) return;
        record_error(c, rc, ftrpc_strerror(rc));
    }
    atomic_fetch_sub_explicit(&c->outstanding, 1, memory_order_release);
}

static void *ftrpc_sync_thread(void *p)
{
    cell *c = p;
    while (atomic_load_explicit(&c->phase, memory_order_relaxed) != PHASE_STOP) {
        ftrpc_result r;
        int64_t t0 = now_ns();
        int rc = ftrpc_call(c->client, SERVICE, METHOD, c->req, NULL, NULL, &r);
        int64_t t1 = now_ns();
        if (rc != 0)
            record_error(c, rc, r.error_text);
        else if (!ftrpc_reply_ok(c, &r))
            record_error(c, -1, "wrong reply");
        else
            record(c, t0, t1);
        ftrpc_result_fini(&r);
    }
    return NULL;
}

/* ---- typed clients (the generated stub, ftrpc_typed_call) ---- */

static int typed_reply_ok(const cell *c, const Benchecho__EchoMsg *m)
{
    size_t k = m->data.len < CHECK_BYTES ? m->data.len : CHECK_BYTES;
    return m->data.len == c->payload_len && memcmp(m->data.data, c->payload, k) == 0;
}

static void on_typed_done(const Benchecho__EchoMsg *reply, void *arg)
{
    async_slot *s = arg;
    cell *c = s->c;
    int64_t now = now_ns();
    if (!reply) {
        const ftrpc_result *r = ftrpc_typed_result();
        record_error(c, r->code, r->error_text);
    } else if (!typed_reply_ok(c, reply)) {
        record_error(c, -1, "wrong reply");
    } else {
        record(c, s->issued_ns, now);
    }
    if (atomic_load_explicit(&c->phase, memory_order_relaxed) != PHASE_STOP) {
        s->issued_ns = now;
        /* the closure runs exactly once; a call that cannot start runs it here, at once, so the
         * slot is given back by that run (when the cell stops) */
        benchecho__echo__echo(c->typed, &c->msg, on_typed_done, s);
        return;
    }
    atomic_fetch_sub_explicit(&c->outstanding, 1, memory_order_release);
}

static void *typed_sync_thread(void *p)
{
    cell *c = p;
    while (atomic_load_explicit(&c->phase, memory_order_relaxed) != PHASE_STOP) {
        ProtobufCMessage *out = NULL;
        ftrpc_result r;
        int64_t t0 = now_ns();
        int rc = ftrpc_typed_call(c->typed, "Echo", &c->msg.base, NULL, NULL, &out, &r);
        int64_t t1 = now_ns();
        if (rc != 0)
            record_error(c, rc, r.error_text);
        else if (!typed_reply_ok(c, (Benchecho__EchoMsg *)out))
            record_error(c, -1, "wrong reply");
        else
            record(c, t0, t1);
        if (out) protobuf_c_message_free_unpacked(out, NULL);
        ftrpc_result_fini(&r);
    }
    return NULL;
}

/* --typed-server: benchecho.Echo on an ftrpc server with default options, the implementation
 * answering with its request message (packed again) on the IO thread. */
static void typed_echo(Benchecho__Echo_Service *service, const Benchecho__EchoMsg *req,
                       Benchecho__EchoMsg_Closure closure, void *closure_data)
{
    (void)service;
    closure(req, closure_data);
}

static int typed_server_main(const char *listen_host)
{
    static Benchecho__Echo_Service impl = BENCHECHO__ECHO__INIT(typed_);
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    char listen[300];
    snprintf(listen, sizeof listen, "%s:0", listen_host);
    ftrpc_server *server;
    int rc = ftrpc_server_new(NULL, &server);
    if (rc == 0) rc = ftrpc_server_add_service(server, &impl.base, NULL);
    if (rc == 0) rc = ftrpc_server_start(server, listen);
    if (rc != 0) {
        fprintf(stderr, "bench_echo --typed-server: %s\n", ftrpc_strerror(rc));
        return 1;
    }
    printf("listening on %s:%d\n", listen_host, ftrpc_server_port(server));
    fflush(stdout);
    int sig;
    sigwait(&stop, &sig);
    ftrpc_server_free(server);
    return 0;
}

/* ---- one cell ---- */

/* SYS_TLS: the same ftrpc echo over TLS (its own echo-server with --tls-cert, one port for
 * plain and TLS as users run it; the client verifies the certificate), held to plain ftrpc. */
typedef enum {
    SYS_RAW = 0,
    SYS_FTRPC = 1,
    SYS_TLS = 2,
    SYS_TYPED = 3,
    SYS_RPCZ = 4,
    SYS_GRPC = 5,
    NSYS = 6
} sys_kind;
typedef enum { SHAPE_ASYNC = 0, SHAPE_SYNC = 1 } shape_kind;
static const char *SYS_NAME[] = {"raw", "ftrpc", "tls", "typed", "rpcz", "grpc"};
static const char *SHAPE_NAME[] = {"async", "sync"};

typedef struct config {
    size_t payload;
    double seconds, warmup;
    int reps;
    int inflight[8], ninflight;
    int shapes; /* bit 1 << shape */
    int client_io_threads;
    int timeout_ms;
    const char *json;
    const char *ftrpc_path;
    int tls;              /* also run the TLS cells (default on) */
    int typed;            /* also run the typed cells (default on) */
    int rpcz;             /* also run the rpcz cells (--rpcz) */
    int grpc;             /* also run the gRPC cells (default on) */
    const char *grpc_cpp; /* the gRPC C++ peer (default: the one the tests built), NULL: none */
    char tls_cert[600];   /* self-signed for 127.0.0.1, made at start with openssl */
    char tls_key[600];
} config;

typedef struct result {
    double qps, p50_us, p99_us;
    long rss_kb;
    double srv_cpu, cli_cpu; /* CPU seconds per measured second (1.0 = one core busy) */
    double other_cpu;        /* cores busy with neither this client nor the server measured */
    /* ftrpc's summary only: the median over repetitions of ftrpc/raw, each repetition's ftrpc cell
     * paired with its raw cell run next to it (pairing cancels the machine's slow drifts) */
    double qps_ratio, p50_ratio, p99_ratio;
    uint64_t count, errors;
    int first_error;
    char first_error_text[256];
} result;

typedef struct run_ctx {
    const config *cfg;
    server_proc servers[NSYS];
    ftrpc_runtime *rt;
    unsigned char *payload;
} run_ctx;

static int run_cell(run_ctx *x, sys_kind sys, shape_kind shape, int inflight, result *out)
{
    const config *cfg = x->cfg;
    cell c = {.inflight = inflight,
              .gen = next_gen++,
              .payload = x->payload,
              .payload_len = cfg->payload};
    pthread_mutex_init(&c.lock, NULL);
    atomic_init(&c.phase, PHASE_WARMUP);
    atomic_init(&c.outstanding, 0);
    int port = x->servers[sys].port, rc = 0;
    pthread_t *threads = NULL;
    raw_sync_arg rsa = {&c, port};
    async_slot *slots = NULL;
    pthread_t pipeline_thread;
    int nthreads = 0;

    if (sys != SYS_RAW) {
        char url[64];
        snprintf(url, sizeof url, "127.0.0.1:%d", port);
        ftrpc_client_options co = {.runtime = x->rt, .timeout_ms = cfg->timeout_ms};
        if (sys == SYS_TLS)
            co.tls = (ftrpc_client_tls_options){.enable = 1, .ca_file = cfg->tls_cert};
        if (sys == SYS_RPCZ) ftrpc_rpcz_enable(0); /* this cell's calls only */
        if (sys == SYS_GRPC) co.protocol = FTRPC_PROTOCOL_GRPC;
        if ((rc = ftrpc_client_new(url, &co, &c.client)) != 0) {
            fprintf(stderr, "bench_echo: ftrpc_client_new: %s\n", ftrpc_strerror(rc));
            return -1;
        }
        c.req = ftrpc_buf_new();
        ftrpc_buf_append(c.req, c.payload, c.payload_len);
    }
    if (sys == SYS_TYPED) {
        if ((rc = ftrpc_typed_client_new(c.client, &benchecho__echo__descriptor, NULL, &c.typed))) {
            fprintf(stderr, "bench_echo: ftrpc_typed_client_new: %s\n", ftrpc_strerror(rc));
            ftrpc_client_free(c.client);
            ftrpc_buf_free(c.req);
            return -1;
        }
        benchecho__echo_msg__init(&c.msg);
        c.msg.data.data = (uint8_t *)c.payload;
        c.msg.data.len = c.payload_len;
    }
    if (shape == SHAPE_SYNC) {
        threads = calloc((size_t)inflight, sizeof *threads);
        for (; nthreads < inflight; nthreads++)
            pthread_create(&threads[nthreads], NULL,
                           sys == SYS_RAW     ? raw_sync_thread
                           : sys == SYS_TYPED ? typed_sync_thread
                                              : ftrpc_sync_thread,
                           sys == SYS_RAW ? (void *)&rsa : (void *)&c);
    } else if (sys != SYS_RAW) {
        slots = calloc((size_t)inflight, sizeof *slots);
        atomic_store(&c.outstanding, inflight);
        for (int i = 0; i < inflight; i++) {
            slots[i] = (async_slot){&c, now_ns()};
            if (sys == SYS_TYPED) { /* its closure gives the slot back, whatever happens */
                benchecho__echo__echo(c.typed, &c.msg, on_typed_done, &slots[i]);
                continue;
            }
            int r = ftrpc_call_async(c.client, SERVICE, METHOD, c.req, NULL, NULL, on_async_done,
                                     &slots[i], NULL);
            if (r != 0) {
                record_error(&c, r, ftrpc_strerror(r));
                atomic_fetch_sub(&c.outstanding, 1);
            }
        }
    } else {
        pthread_create(&pipeline_thread, NULL, raw_pipelined_thread, &rsa);
    }

    sleep_ns((int64_t)(cfg->warmup * 1e9));
    proc_sample s0 = sample_proc(x->servers[sys].pid), me0 = sample_proc(getpid());
    machine_ticks m0 = sample_machine();
    int64_t t0 = now_ns();
    atomic_store(&c.phase, PHASE_MEASURE);
    sleep_ns((int64_t)(cfg->seconds * 1e9));
    atomic_store(&c.phase, PHASE_STOP);
    int64_t t1 = now_ns();
    proc_sample s1 = sample_proc(x->servers[sys].pid), me1 = sample_proc(getpid());
    machine_ticks m1 = sample_machine();

    /* drain: every call started must end (success, error or timeout); if not, that is a bug */
    if (shape == SHAPE_SYNC) {
        for (int i = 0; i < nthreads; i++)
            pthread_join(threads[i], NULL);
    } else if (sys != SYS_RAW) {
        int64_t limit = now_ns() + (int64_t)(cfg->timeout_ms + 10000) * 1000000;
        while (atomic_load_explicit(&c.outstanding, memory_order_acquire) > 0) {
            if (now_ns() > limit) {
                fprintf(stderr,
                        "bench_echo: BUG? %d ftrpc async calls never completed (deadline %d ms)\n",
                        atomic_load(&c.outstanding), cfg->timeout_ms);
                rc = -1;
                break;
            }
            sleep_ns(1000000);
        }
    } else {
        void *ret;
        pthread_join(pipeline_thread, &ret);
        if (ret) rc = -1;
    }
    ftrpc_typed_client_free(c.typed);
    if (c.client) ftrpc_client_free(c.client);
    ftrpc_rpcz_disable();
    ftrpc_buf_free(c.req);

    hist h = {0};
    memset(out, 0, sizeof *out);
    for (int i = 0; i < c.nall; i++) {
        stats *s = c.all[i];
        out->count += s->count;
        if (s->errors && !out->errors) {
            out->first_error = s->first_error;
            snprintf(out->first_error_text, sizeof out->first_error_text, "%s",
                     s->first_error_text);
        }
        out->errors += s->errors;
        for (int b = 0; b < NBUCKETS; b++)
            h.b[b] += s->h.b[b];
        free(s);
    }
    free(c.all);
    free(threads);
    free(slots);
    pthread_mutex_destroy(&c.lock);
    double secs = (double)(t1 - t0) / 1e9;
    out->qps = (double)out->count / secs;
    out->p50_us = hist_quantile(&h, 0.50) / 1e3;
    out->p99_us = hist_quantile(&h, 0.99) / 1e3;
    out->rss_kb = s1.rss_kb;
    out->srv_cpu = (s1.cpu_s - s0.cpu_s) / secs;
    out->cli_cpu = (me1.cpu_s - me0.cpu_s) / secs;
    if (m1.total > m0.total) {
        double busy = (double)(m1.busy - m0.busy) / (double)(m1.total - m0.total) *
                      (double)sysconf(_SC_NPROCESSORS_ONLN);
        out->other_cpu = busy - out->srv_cpu - out->cli_cpu;
        if (out->other_cpu < 0) out->other_cpu = 0; /* tick rounding */
    }
    return rc;
}

/* ---- report ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    double tmp[64];
    memcpy(tmp, v, (size_t)n * sizeof *v);
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_double);
    return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

/* The median of each figure over repetitions (each figure on its own), errors summed. */
static result summarize(const result *reps, int n)
{
    double v[64];
    result m = {0};
#define MEDIAN_OF(field)                                                                           \
    do {                                                                                           \
        for (int i = 0; i < n; i++)                                                                \
            v[i] = (double)reps[i].field;                                                          \
        m.field = median(v, n);                                                                    \
    } while (0)
    MEDIAN_OF(qps);
    MEDIAN_OF(p50_us);
    MEDIAN_OF(p99_us);
    MEDIAN_OF(srv_cpu);
    MEDIAN_OF(cli_cpu);
    MEDIAN_OF(other_cpu);
    for (int i = 0; i < n; i++)
        v[i] = (double)reps[i].rss_kb;
    m.rss_kb = (long)median(v, n);
#undef MEDIAN_OF
    for (int i = 0; i < n; i++) {
        if (reps[i].errors && !m.errors) {
            m.first_error = reps[i].first_error;
            memcpy(m.first_error_text, reps[i].first_error_text, sizeof m.first_error_text);
        }
        m.errors += reps[i].errors;
        m.count += reps[i].count;
    }
    return m;
}

typedef struct machine {
    long nproc;
    char cpu[128], kernel[256], os[128];
    double load_before[3], load_after[3];
} machine;

static void read_machine(machine *m)
{
    m->nproc = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(m->cpu, sizeof m->cpu, "unknown");
    snprintf(m->os, sizeof m->os, "unknown");
    char line[256];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (!strncmp(line, "model name", 10) && colon) {
            snprintf(m->cpu, sizeof m->cpu, "%s", colon + 2);
            m->cpu[strcspn(m->cpu, "\n")] = 0;
            break;
        }
    }
    if (f) fclose(f);
    struct utsname u;
    uname(&u);
    snprintf(m->kernel, sizeof m->kernel, "%s %s", u.sysname, u.release);
    f = fopen("/etc/os-release", "r");
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, "PRETTY_NAME=", 12)) {
            char *p = line + 12 + (line[12] == '"');
            p[strcspn(p, "\"\n")] = 0;
            snprintf(m->os, sizeof m->os, "%s", p);
        }
    }
    if (f) fclose(f);
    getloadavg(m->load_before, 3);
}

/* Every cell's figures [shape][in-flight index][system][repetition], and their summaries. */
static result g_reps[2][8][NSYS][64];
static result g_sum[2][8][NSYS];

/* The kernel's CPU pressure (share of time some runnable task waited for a CPU, last 10 s), or -1:
 * near 100 means every wake-up of ours queued behind other work. */
static double cpu_pressure(void)
{
    double v = -1;
    FILE *f = fopen("/proc/pressure/cpu", "r");
    if (f) {
        if (fscanf(f, "some avg10=%lf", &v) != 1) v = -1;
        fclose(f);
    }
    return v;
}

static double ratio(double a, double b)
{
    return b > 0 ? a / b : 0;
}

static const char *SHAPE_TITLE[] = {
    "async: ONE ftrpc_client (1 IO thread, one connection), N async calls re-issued from their "
    "callbacks | raw: one connection, one thread, N requests pipelined",
    "sync: N threads calling ftrpc_call on ONE ftrpc_client (1 IO thread, one connection) | raw: N "
    "threads, each with its own blocking connection"};

/* num/den ratios of system `num` to system `den`, kept in num's summary. */
static void paired_ratios(const config *cfg, int sh, int i, sys_kind num, sys_kind den)
{
    double q[64], p50[64], p99[64];
    for (int k = 0; k < cfg->reps; k++) {
        const result *f = &g_reps[sh][i][num][k], *r = &g_reps[sh][i][den][k];
        q[k] = ratio(f->qps, r->qps);
        p50[k] = ratio(f->p50_us, r->p50_us);
        p99[k] = ratio(f->p99_us, r->p99_us);
    }
    result *f = &g_sum[sh][i][num];
    f->qps_ratio = median(q, cfg->reps);
    f->p50_ratio = median(p50, cfg->reps);
    f->p99_ratio = median(p99, cfg->reps);
}

static void print_table(const config *cfg, int shape, result sum[][NSYS])
{
    printf("\n### shape %s\n%s\n\nFigures are medians over %d repetition(s); a ratio is the median "
           "of the repetitions' ftrpc/raw ratios, each ftrpc cell paired with the raw cell run "
           "next to it.\n\n",
           SHAPE_NAME[shape], SHAPE_TITLE[shape], cfg->reps);
    printf("| in flight | ftrpc QPS | raw QPS | QPS ratio | ftrpc p50 us | raw p50 us | p50 ratio "
           "| ftrpc p99 us | raw p99 us | ftrpc RSS MiB | raw RSS MiB |\n");
    printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < cfg->ninflight; i++) {
        result *f = &sum[i][SYS_FTRPC], *r = &sum[i][SYS_RAW];
        printf("| %d | %.0f | %.0f | %.2f | %.1f | %.1f | %.2f | %.1f | %.1f | %.1f | %.1f |\n",
               cfg->inflight[i], f->qps, r->qps, f->qps_ratio, f->p50_us, r->p50_us, f->p50_ratio,
               f->p99_us, r->p99_us, f->rss_kb / 1024.0, r->rss_kb / 1024.0);
    }
    printf("\nCPU: cores busy during the measured window (1.00 = one core busy), CPU time per "
           "call (us), and cores busy with other work on the machine meanwhile (the noise):\n\n");
    printf("| in flight | ftrpc server cores | raw server cores | ftrpc client cores | raw client "
           "cores | ftrpc server us/call | raw server us/call | ftrpc client us/call | raw client "
           "us/call | other load (ftrpc cell) | other load (raw cell) |\n");
    printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < cfg->ninflight; i++) {
        result *f = &sum[i][SYS_FTRPC], *r = &sum[i][SYS_RAW];
        printf("| %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n",
               cfg->inflight[i], f->srv_cpu, r->srv_cpu, f->cli_cpu, r->cli_cpu,
               ratio(f->srv_cpu * 1e6, f->qps), ratio(r->srv_cpu * 1e6, r->qps),
               ratio(f->cli_cpu * 1e6, f->qps), ratio(r->cli_cpu * 1e6, r->qps), f->other_cpu,
               r->other_cpu);
    }
    for (int i = 0; i < cfg->ninflight; i++)
        for (int s = 0; s < NSYS; s++)
            if (sum[i][s].errors)
                printf("ERRORS: %s %s in-flight %d: %llu failed calls, first: %d %s\n",
                       SHAPE_NAME[shape], SYS_NAME[s], cfg->inflight[i],
                       (unsigned long long)sum[i][s].errors, sum[i][s].first_error,
                       sum[i][s].first_error_text);
}

typedef struct verdict {
    int shape;
    const char *what;
    int inflight;
    double value, limit;
    int pass;
    int at_least; /* the value wants >= limit (otherwise: >= when limit < 1, else <=) */
} verdict;

/* System `num` beside plain ftrpc (`name`/`den_name` label the two), same shape, same run, with
 * its median paired ratios and the CPU each side spent per call. */
static void print_beside_table(const config *cfg, result sum[][NSYS], sys_kind num,
                               const char *name, const char *den_name)
{
    printf("| in flight | %s QPS | %s QPS | QPS ratio %s/%s | %s p50 us | %s p50 us | p50 ratio | "
           "%s p99 us | %s p99 us | %s server us/call | %s server us/call | %s client us/call | "
           "%s client us/call |\n",
           name, den_name, name, den_name, name, den_name, name, den_name, name, den_name, name,
           den_name);
    printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < cfg->ninflight; i++) {
        result *t = &sum[i][num], *f = &sum[i][SYS_FTRPC];
        printf(
            "| %d | %.0f | %.0f | %.2f | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f | %.2f | %.2f | "
            "%.2f |\n",
            cfg->inflight[i], t->qps, f->qps, t->qps_ratio, t->p50_us, f->p50_us, t->p50_ratio,
            t->p99_us, f->p99_us, ratio(t->srv_cpu * 1e6, t->qps), ratio(f->srv_cpu * 1e6, f->qps),
            ratio(t->cli_cpu * 1e6, t->qps), ratio(f->cli_cpu * 1e6, f->qps));
    }
}

/* TLS echo beside plain ftrpc echo, same shape, same run. */
static void print_tls_table(const config *cfg, int shape, result sum[][NSYS])
{
    printf("\n### shape %s over TLS\nThe same ftrpc echo over TLS (the client verifies the "
           "server's certificate; one connection, handshake done in the warm-up) beside plain "
           "ftrpc; a ratio is the median of each repetition's TLS/plain ratio.\n\n",
           SHAPE_NAME[shape]);
    print_beside_table(cfg, sum, SYS_TLS, "TLS", "plain");
}

/* Typed echo beside the bytes echo, same shape, same run. */
static void print_typed_table(const config *cfg, int shape, result sum[][NSYS])
{
    printf("\n### shape %s, typed\nThe same echo through protoc-c's generated code (ftrpc/typed.h: "
           "the request packed by the client and unpacked by the server, the reply packed by the "
           "server and unpacked by the client) beside the bytes API; a ratio is the median of each "
           "repetition's typed/bytes ratio.\n\n",
           SHAPE_NAME[shape]);
    print_beside_table(cfg, sum, SYS_TYPED, "typed", "bytes");
}

/* rpcz on beside rpcz off, same shape, same run. */
static void print_rpcz_table(const config *cfg, int shape, result sum[][NSYS])
{
    printf("\n### shape %s with rpcz\nThe same ftrpc echo with rpcz on in the client and the "
           "server (every call recorded on both sides) beside plain ftrpc, rpcz off; a ratio is "
           "the median of each repetition's rpcz/plain ratio.\n\n",
           SHAPE_NAME[shape]);
    print_beside_table(cfg, sum, SYS_RPCZ, "rpcz", "plain");
}

/* From this payload on, the large-message targets apply. */
#define LARGE_PAYLOAD (64u << 10)

/* The targets of issue #26 (small messages): QPS ftrpc/raw >= 0.75 with 64 in flight, p50
 * ftrpc/raw <= 1.15 with 1 in flight (they were 0.5 and 1.3); typed/bytes >= 0.9 (issue 22). */
static int acceptance(const config *cfg, int shape, result sum[][NSYS], verdict *v)
{
    int n = 0;
    for (int i = 0; i < cfg->ninflight; i++) {
        result *t = &sum[i][SYS_TYPED];
        if (cfg->typed && cfg->inflight[i] == 64) {
            double q = t->qps_ratio;
            v[n++] = (verdict){shape, "QPS typed/bytes", 64, q, 0.9, q >= 0.9 && !t->errors};
        }
    }
    for (int i = 0; i < cfg->ninflight; i++) {
        result *f = &sum[i][SYS_FTRPC];
        if (cfg->inflight[i] == 64) {
            double q = f->qps_ratio;
            v[n++] = (verdict){shape, "QPS ftrpc/raw", 64, q, 0.75, q >= 0.75 && !f->errors};
        }
        if (cfg->inflight[i] == 1) {
            double q = f->p50_ratio;
            v[n++] =
                (verdict){shape, "p50 ftrpc/raw", 1, q, 1.15, q <= 1.15 && q > 0 && !f->errors};
        }
        /* large messages (issue #26): QPS within 0.85 of the raw echo at 1 and 16 in flight */
        if (cfg->payload >= LARGE_PAYLOAD && (cfg->inflight[i] == 1 || cfg->inflight[i] == 16)) {
            double q = f->qps_ratio;
            v[n++] = (verdict){shape,
                               cfg->payload >= (1u << 20) ? "QPS ftrpc/raw (>= 1 MiB)"
                                                          : "QPS ftrpc/raw (>= 64 KiB)",
                               cfg->inflight[i],
                               q,
                               0.85,
                               q >= 0.85 && !f->errors};
        }
    }
    return n;
}

static void write_json(const config *cfg, const machine *m, result sum[2][8][NSYS],
                       result reps[2][8][NSYS][64], const verdict *v, int nv)
{
    FILE *f = fopen(cfg->json, "w");
    if (!f) {
        fprintf(stderr, "bench_echo: cannot write %s: %s\n", cfg->json, strerror(errno));
        return;
    }
    fprintf(f,
            "{\n  \"machine\": {\"nproc\": %ld, \"cpu\": \"%s\", \"kernel\": \"%s\", \"os\": "
            "\"%s\", \"loadavg_before\": [%.2f, %.2f, %.2f], \"loadavg_after\": [%.2f, %.2f, "
            "%.2f]},\n",
            m->nproc, m->cpu, m->kernel, m->os, m->load_before[0], m->load_before[1],
            m->load_before[2], m->load_after[0], m->load_after[1], m->load_after[2]);
    fprintf(f,
            "  \"config\": {\"payload\": %zu, \"seconds\": %g, \"warmup\": %g, \"reps\": %d, "
            "\"client_io_threads\": %d, \"timeout_ms\": %d},\n",
            cfg->payload, cfg->seconds, cfg->warmup, cfg->reps, cfg->client_io_threads,
            cfg->timeout_ms);
    fprintf(f, "  \"cells\": [");
    int first = 1;
    for (int sh = 0; sh < 2; sh++) {
        if (!(cfg->shapes & (1 << sh))) continue;
        for (int i = 0; i < cfg->ninflight; i++)
            for (int s = 0; s < NSYS; s++) {
                if ((s == SYS_TLS && !cfg->tls) || (s == SYS_TYPED && !cfg->typed) ||
                    (s == SYS_RPCZ && !cfg->rpcz) || (s == SYS_GRPC && !cfg->grpc))
                    continue;
                result *r = &sum[sh][i][s];
                /* the raw and ftrpc cells carry ftrpc/raw; the tls, typed and rpcz cells their
                 * own ratio to ftrpc */
                const result *ratios = &sum[sh][i][s >= SYS_TLS ? s : SYS_FTRPC];
                fprintf(f,
                        "%s\n    {\"shape\": \"%s\", \"system\": \"%s\", \"inflight\": %d, "
                        "\"qps\": %.1f, \"p50_us\": %.2f, \"p99_us\": %.2f, \"server_rss_kb\": "
                        "%ld, \"server_cpu\": %.3f, \"client_cpu\": %.3f, \"other_cpu\": %.3f, "
                        "\"errors\": %llu, \"qps_ratio\": %.3f, \"p50_ratio\": %.3f, "
                        "\"p99_ratio\": %.3f, "
                        "\"qps_reps\": [",
                        first ? "" : ",", SHAPE_NAME[sh], SYS_NAME[s], cfg->inflight[i], r->qps,
                        r->p50_us, r->p99_us, r->rss_kb, r->srv_cpu, r->cli_cpu, r->other_cpu,
                        (unsigned long long)r->errors, ratios->qps_ratio, ratios->p50_ratio,
                        ratios->p99_ratio);
                for (int k = 0; k < cfg->reps; k++)
                    fprintf(f, "%s%.1f", k ? ", " : "", reps[sh][i][s][k].qps);
                fprintf(f, "]}");
                first = 0;
            }
    }
    fprintf(f, "\n  ],\n  \"acceptance\": [");
    for (int i = 0; i < nv; i++)
        fprintf(f,
                "%s\n    {\"shape\": \"%s\", \"what\": \"%s\", \"inflight\": %d, \"value\": %.3f, "
                "\"limit\": %.2f, \"pass\": %s}",
                i ? "," : "", SHAPE_NAME[v[i].shape], v[i].what, v[i].inflight, v[i].value,
                v[i].limit, v[i].pass ? "true" : "false");
    fprintf(f, "\n  ]\n}\n");
    fclose(f);
}

/* ---- the TLS cells' certificate ---- */

/* A self-signed EC certificate for 127.0.0.1 in a fresh folder (mkdtemp of dir): the TLS client
 * trusts it as its own CA. One openssl command; its output shows only when it fails. */
static int make_tls_cert(char *dir, config *cfg)
{
    if (!mkdtemp(dir)) {
        fprintf(stderr, "bench_echo: mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    snprintf(cfg->tls_cert, sizeof cfg->tls_cert, "%s/cert.pem", dir);
    snprintf(cfg->tls_key, sizeof cfg->tls_key, "%s/key.pem", dir);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
             "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout %s -out %s "
             ">%s/openssl.log 2>&1 || cat %s/openssl.log >&2",
             cfg->tls_key, cfg->tls_cert, dir, dir);
    if (system(cmd) != 0 || access(cfg->tls_cert, R_OK) != 0) {
        fprintf(stderr, "bench_echo: openssl could not make a certificate (--no-tls skips TLS)\n");
        return -1;
    }
    return 0;
}

static void remove_tls_cert(const char *dir, const config *cfg)
{
    char log[700];
    snprintf(log, sizeof log, "%s/openssl.log", dir);
    unlink(cfg->tls_cert);
    unlink(cfg->tls_key);
    unlink(log);
    rmdir(dir);
}

/* ---- main ---- */

/* ---- gRPC C++ rows: the reference implementation on either side ---- */

enum { NCPP_CALLERS = 2, NCPP = 5 };
static const int CPP_CALLERS[NCPP_CALLERS] = {1, 50};
typedef enum {
    CPP_TO_FTRPC = 0, /* gRPC C++ client -> ftrpc's gRPC server */
    CPP_TO_CPP,       /* gRPC C++ client -> gRPC C++ server */
    FT_TO_FTRPC,      /* ftrpc client (gRPC) -> ftrpc's gRPC server */
    FT_TO_CPP,        /* ftrpc client (gRPC) -> gRPC C++ server */
    FT_STD,           /* ftrpc client (baidu_std) -> ftrpc server: the baseline */
} cpp_cell;
static const char *CPP_CELL_NAME[NCPP] = {
    "gRPC C++ client -> ftrpc gRPC server", "gRPC C++ client -> gRPC C++ server",
    "ftrpc client (grpc) -> ftrpc gRPC server", "ftrpc client (grpc) -> gRPC C++ server",
    "ftrpc client (baidu_std) -> ftrpc server"};

typedef struct cpp_result {
    double qps, srv_us, cli_us; /* calls a second; the server's and the client's CPU a call, us */
    int failed;
} cpp_result;
static cpp_result g_cpp[NCPP_CALLERS][NCPP][64];

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* One cell of the C++ peer's client against `srv`: its QPS, and the server's user+sys CPU over
 * every call of the run (warm-up included: the peer reports both counts). */
static int run_cpp_client(const config *cfg, const server_proc *srv, int callers, cpp_result *out)
{
    char cmd[4800], line[256] = "";
    snprintf(cmd, sizeof cmd,
             "%s bench 127.0.0.1:%d --callers %d --seconds %g --warmup %g --bytes %zu",
             cfg->grpc_cpp, srv->port, callers, cfg->seconds, cfg->warmup, cfg->payload);
    proc_sample s0 = sample_proc(srv->pid);
    struct rusage c0, c1; /* the peer's CPU: the only child waited for meanwhile */
    getrusage(RUSAGE_CHILDREN, &c0);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char *got = fgets(line, sizeof line, p);
    int rc = pclose(p);
    proc_sample s1 = sample_proc(srv->pid);
    getrusage(RUSAGE_CHILDREN, &c1);
    double qps = 0;
    long calls = 0, errors = 0, total = 0;
    memset(out, 0, sizeof *out);
    if (!got || rc != 0 ||
        sscanf(line, "qps %lf calls %ld errors %ld total %ld", &qps, &calls, &errors, &total) !=
            4 ||
        errors || total <= 0) {
        fprintf(stderr, "bench_echo: %s: exit %d, '%s'\n", cmd, rc, got ? line : "");
        out->failed = 1;
        return -1;
    }
    out->qps = qps;
    out->srv_us = (s1.cpu_s - s0.cpu_s) / (double)total * 1e6;
    double cli_s = tv_s(c1.ru_utime) + tv_s(c1.ru_stime) - tv_s(c0.ru_utime) - tv_s(c0.ru_stime);
    out->cli_us = cli_s / (double)total * 1e6;
    return 0;
}

/* One cell of the ftrpc client (async shape: N calls outstanding on one connection) against
 * `srv`, through run_cell: `sys` says the protocol, `srv` stands in for that system's server. */
static int run_ftrpc_client(run_ctx *x, sys_kind sys, const server_proc *srv, int callers,
                            cpp_result *out)
{
    server_proc saved = x->servers[sys];
    x->servers[sys] = *srv;
    result r;
    int rc = run_cell(x, sys, SHAPE_ASYNC, callers, &r);
    x->servers[sys] = saved;
    out->qps = r.qps;
    out->srv_us = r.qps > 0 ? r.srv_cpu / r.qps * 1e6 : 0;
    out->cli_us = r.qps > 0 ? r.cli_cpu / r.qps * 1e6 : 0;
    out->failed = rc != 0 || r.errors;
    if (r.errors)
        fprintf(stderr, "bench_echo: %s: %llu errors, first %d %s\n", srv->name,
                (unsigned long long)r.errors, r.first_error, r.first_error_text);
    return out->failed ? -1 : 0;
}

/* The median over repetitions of cell a's QPS (or server CPU per call) over cell b's, each
 * repetition's pair run side by side. */
static double cpp_ratio(const config *cfg, int i, cpp_cell a, cpp_cell b, int cpu)
{
    double q[64];
    for (int k = 0; k < cfg->reps; k++)
        q[k] = cpu ? ratio(g_cpp[i][a][k].srv_us, g_cpp[i][b][k].srv_us)
                   : ratio(g_cpp[i][a][k].qps, g_cpp[i][b][k].qps);
    return median(q, cfg->reps);
}

/* Runs the rows (cfg->reps times, interleaved), prints them, appends the targets to v. Returns 1
 * when a cell failed. */
static int grpc_cpp_rows(run_ctx *x, const server_proc *cpp_srv, verdict *v, int *nv)
{
    const config *cfg = x->cfg;
    const server_proc *ft_grpc = &x->servers[SYS_GRPC], *ft_std = &x->servers[SYS_FTRPC];
    int failed = 0;
    for (int rep = 0; rep < cfg->reps; rep++)
        for (int i = 0; i < NCPP_CALLERS; i++)
            for (int k = 0; k < NCPP; k++) {
                cpp_cell c = (cpp_cell)((k + rep + i) % NCPP);
                cpp_result *r = &g_cpp[i][c][rep];
                int n = CPP_CALLERS[i];
                int rc = c == CPP_TO_FTRPC  ? run_cpp_client(cfg, ft_grpc, n, r)
                         : c == CPP_TO_CPP  ? run_cpp_client(cfg, cpp_srv, n, r)
                         : c == FT_TO_FTRPC ? run_ftrpc_client(x, SYS_GRPC, ft_grpc, n, r)
                         : c == FT_TO_CPP   ? run_ftrpc_client(x, SYS_GRPC, cpp_srv, n, r)
                                            : run_ftrpc_client(x, SYS_FTRPC, ft_std, n, r);
                if (rc != 0) failed = 1;
                printf("rep %d/%d  callers %2d  %-42s  QPS %8.0f  CPU us/call server %6.1f "
                       "client %6.1f%s\n",
                       rep + 1, cfg->reps, n, CPP_CELL_NAME[c], r->qps, r->srv_us, r->cli_us,
                       r->failed ? "  FAILED" : "");
                fflush(stdout);
            }
    printf("\n### gRPC C++ beside ftrpc (one connection, N calls outstanding)\n"
           "The gRPC C++ peer (tests/integration/grpc_cpp_peer.cc: gRPC C++'s callback API, "
           "generic calls) as client and as server; the ftrpc client in the async shape. QPS and "
           "server CPU per call are medians over %d repetition(s); a ratio is the median of each "
           "repetition's ratio of cells run side by side.\n\n",
           cfg->reps);
    printf("| callers | cell | QPS | server CPU us/call | client CPU us/call |\n"
           "|---|---|---|---|---|\n");
    for (int i = 0; i < NCPP_CALLERS; i++)
        for (int c = 0; c < NCPP; c++) {
            double q[64], u[64], w[64];
            for (int k = 0; k < cfg->reps; k++) {
                q[k] = g_cpp[i][c][k].qps;
                u[k] = g_cpp[i][c][k].srv_us;
                w[k] = g_cpp[i][c][k].cli_us;
            }
            printf("| %d | %s | %.0f | %.1f | %.1f |\n", CPP_CALLERS[i], CPP_CELL_NAME[c],
                   median(q, cfg->reps), median(u, cfg->reps), median(w, cfg->reps));
        }
    printf("\n| callers | QPS ftrpc gRPC server / gRPC C++ server (C++ client) | server CPU per "
           "call, same servers (C++ client) | QPS ftrpc gRPC server / gRPC C++ server (ftrpc "
           "client) | QPS ftrpc client grpc / baidu_std |\n"
           "|---|---|---|---|---|\n");
    for (int i = 0; i < NCPP_CALLERS; i++) {
        double srv = cpp_ratio(cfg, i, CPP_TO_FTRPC, CPP_TO_CPP, 0);
        double std = cpp_ratio(cfg, i, FT_TO_FTRPC, FT_STD, 0);
        printf("| %d | %.2f | %.2f | %.2f | %.2f |\n", CPP_CALLERS[i], srv,
               cpp_ratio(cfg, i, CPP_TO_FTRPC, CPP_TO_CPP, 1),
               cpp_ratio(cfg, i, FT_TO_FTRPC, FT_TO_CPP, 0), std);
        v[(*nv)++] = (verdict){SHAPE_ASYNC,
                               "QPS ftrpc gRPC server / gRPC C++ server (C++ client)",
                               CPP_CALLERS[i],
                               srv,
                               2,
                               srv >= 2 && !failed,
                               1};
        v[(*nv)++] = (verdict){
            SHAPE_ASYNC,          "QPS ftrpc client grpc / baidu_std", CPP_CALLERS[i], std, 0.5,
            std >= 0.5 && !failed};
    }
    return failed;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bench_echo [options]\n\n"
            "Runs ftrpc echo and a raw-socket echo baseline side by side and prints the ratios.\n\n"
            "  --payload BYTES        request and reply payload (default 16)\n"
            "  --seconds S            measured time per cell (default 2)\n"
            "  --warmup S             warm-up per cell, not measured (default 0.5)\n"
            "  --reps R               repetitions of each cell; figures are medians, ratios are\n"
            "                         medians of each repetition's paired ratio (default 5)\n"
            "  --inflight LIST        requests in flight, comma-separated (default 1,16,64)\n"
            "  --shape async|sync|both  client shapes (default both)\n"
            "  --client-io-threads K  IO threads of the ftrpc client runtime (default 1: one\n"
            "                         connection, like the raw client)\n"
            "  --timeout-ms MS        ftrpc call deadline (default 10000)\n"
            "  --ftrpc PATH           the ftrpc CLI (default: ftrpc next to this binary)\n"
            "  --json FILE            also write the figures as JSON\n"
            "  --quick                1 s cells, 0.3 s warm-up, 1 repetition\n"
            "  --no-tls               skip the TLS cells (default: TLS echo beside plain, with a\n"
            "                         self-signed certificate made at start by openssl)\n"
            "  --no-typed             skip the typed cells (default: the echo through protoc-c's\n"
            "                         generated code beside the bytes echo)\n"
            "  --no-grpc              skip the gRPC cells (default: the ftrpc client over gRPC to\n"
            "                         an ftrpc server beside baidu_std)\n"
            "  --grpc-cpp PATH        the gRPC C++ peer for the gRPC C++ rows (default: the one\n"
            "                         built with the tests, when grpc++ was found)\n"
            "  --no-grpc-cpp          skip the gRPC C++ rows (also skipped by --no-grpc)\n"
            "  --rpcz                 also run the ftrpc cells with rpcz on in client and server\n"
            "                         (docs/observability.md, rpcz), reported as rpcz/plain\n"
            "  --raw-server HOST      (internal) run the raw echo server on HOST, any port\n"
            "  --typed-server HOST    (internal) run the typed echo server on HOST, any port\n\n"
            "Exit status: 0 when every cell ran without failed calls (targets may still FAIL),\n"
            "1 on failed calls, a hang or a server that would not start, 2 on bad options.\n");
}

static int parse_inflight(const char *s, config *cfg)
{
    cfg->ninflight = 0;
    char *copy = strdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int v = atoi(t);
        if (v < 1 || v > MAX_INFLIGHT || cfg->ninflight == 8) {
            free(copy);
            return -1;
        }
        cfg->inflight[cfg->ninflight++] = v;
    }
    free(copy);
    return cfg->ninflight ? 0 : -1;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"payload", required_argument, 0, 'p'},
                                         {"seconds", required_argument, 0, 's'},
                                         {"warmup", required_argument, 0, 'w'},
                                         {"reps", required_argument, 0, 'r'},
                                         {"inflight", required_argument, 0, 'n'},
                                         {"shape", required_argument, 0, 'S'},
                                         {"client-io-threads", required_argument, 0, 'c'},
                                         {"timeout-ms", required_argument, 0, 't'},
                                         {"ftrpc", required_argument, 0, 'f'},
                                         {"json", required_argument, 0, 'j'},
                                         {"quick", no_argument, 0, 'q'},
                                         {"no-tls", no_argument, 0, 'T'},
                                         {"raw-server", required_argument, 0, 'R'},
                                         {"no-typed", no_argument, 0, 'Y'},
                                         {"rpcz", no_argument, 0, 'z'},
                                         {"no-grpc", no_argument, 0, 'G'},
                                         {"typed-server", required_argument, 0, 'Z'},
                                         {"grpc-cpp", required_argument, 0, 'C'},
                                         {"no-grpc-cpp", no_argument, 0, 'N'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    config cfg = {.payload = 16,
                  .seconds = 2,
                  .warmup = 0.5,
                  .reps = 5,
                  .shapes = 3,
                  .client_io_threads = 1,
                  .timeout_ms = 10000,
                  .tls = 1,
                  .typed = 1,
                  .grpc = 1,
#ifdef FTRPC_GRPC_CPP_PEER
                  .grpc_cpp = FTRPC_GRPC_CPP_PEER
#endif
    };
    parse_inflight("1,16,64", &cfg);
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            cfg.payload = (size_t)atol(optarg);
            break;
        case 's':
            cfg.seconds = atof(optarg);
            break;
        case 'w':
            cfg.warmup = atof(optarg);
            break;
        case 'r':
            cfg.reps = atoi(optarg);
            break;
        case 'n':
            if (parse_inflight(optarg, &cfg)) {
                fprintf(stderr, "bench_echo: --inflight wants numbers in [1, %d], at most 8\n",
                        MAX_INFLIGHT);
                return 2;
            }
            break;
        case 'S':
            cfg.shapes = !strcmp(optarg, "async")  ? 1
                         : !strcmp(optarg, "sync") ? 2
                         : !strcmp(optarg, "both") ? 3
                                                   : 0;
            if (!cfg.shapes) {
                fprintf(stderr, "bench_echo: --shape is async, sync or both\n");
                return 2;
            }
            break;
        case 'c':
            cfg.client_io_threads = atoi(optarg);
            break;
        case 't':
            cfg.timeout_ms = atoi(optarg);
            break;
        case 'f':
            cfg.ftrpc_path = optarg;
            break;
        case 'j':
            cfg.json = optarg;
            break;
        case 'q':
            cfg.seconds = 1;
            cfg.warmup = 0.3;
            cfg.reps = 1;
            break;
        case 'T':
            cfg.tls = 0;
            break;
        case 'R':
            return raw_server_main(optarg);
        case 'Y':
            cfg.typed = 0;
            break;
        case 'z':
            cfg.rpcz = 1;
            break;
        case 'G':
            cfg.grpc = 0;
            break;
        case 'Z':
            return typed_server_main(optarg);
        case 'C':
            cfg.grpc_cpp = optarg;
            break;
        case 'N':
            cfg.grpc_cpp = NULL;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (cfg.payload < 1 || cfg.payload > MAX_PAYLOAD || cfg.seconds <= 0 || cfg.warmup < 0 ||
        cfg.reps < 1 || cfg.reps > 64 || cfg.client_io_threads < 1 || cfg.timeout_ms < 1) {
        fprintf(stderr,
                "bench_echo: an option is out of range (payload 1..%u B, seconds > 0, "
                "warmup >= 0, reps 1..64, client-io-threads >= 1, timeout-ms >= 1)\n",
                MAX_PAYLOAD);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    char self[4096], ftrpc_default[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) return 1;
    self[sl] = 0;
    if (!cfg.ftrpc_path) {
        snprintf(ftrpc_default, sizeof ftrpc_default, "%s", self);
        char *slash = strrchr(ftrpc_default, '/');
        snprintf(slash + 1, sizeof ftrpc_default - (size_t)(slash + 1 - ftrpc_default), "ftrpc");
        cfg.ftrpc_path = ftrpc_default;
    }
    if (access(cfg.ftrpc_path, X_OK) != 0) {
        fprintf(stderr, "bench_echo: no ftrpc CLI at %s (build it, or pass --ftrpc PATH)\n",
                cfg.ftrpc_path);
        return 1;
    }

    machine m;
    read_machine(&m);
    printf("# bench_echo: ftrpc echo vs raw-socket echo\n\n");
    printf("machine: %ld cores, %s, %s, %s; load average before: %.2f %.2f %.2f; CPU pressure "
           "(some, avg10) %.0f%%\n",
           m.nproc, m.cpu, m.kernel, m.os, m.load_before[0], m.load_before[1], m.load_before[2],
           cpu_pressure());
    printf("config: payload %zu B, %g s measured + %g s warm-up per cell, %d repetition(s) "
           "(figures are medians), ftrpc client IO threads %d, servers: %s echo-server, %s "
           "--raw-server\n",
           cfg.payload, cfg.seconds, cfg.warmup, cfg.reps, cfg.client_io_threads, cfg.ftrpc_path,
           self);
    /* the environment knobs that change what is measured, so that a run says how it was made */
    const char *spin = getenv("FTRPC_SPIN_US"), *iot = getenv("FTRPC_IO_THREADS");
    printf("environment: FTRPC_SPIN_US=%s (sync callers' spin before sleeping; unset: 20 us on "
           "more than one core), FTRPC_IO_THREADS=%s (the echo-server's IO threads; unset: one "
           "per core)\n",
           spin ? spin : "unset", iot ? iot : "unset");
    fflush(stdout);

    run_ctx x = {.cfg = &cfg};
    x.payload = malloc(cfg.payload);
    for (size_t i = 0; i < cfg.payload; i++)
        x.payload[i] = (unsigned char)('a' + i % 26);
    char *raw_argv[] = {self, "--raw-server", "127.0.0.1", NULL};
    char *ftrpc_argv[] = {(char *)cfg.ftrpc_path, "echo-server", "--listen", "127.0.0.1:0", NULL};
    char *tls_argv[] = {
        (char *)cfg.ftrpc_path, "echo-server", "--listen",  "127.0.0.1:0", "--tls-cert",
        cfg.tls_cert,           "--tls-key",   cfg.tls_key, NULL};
    char *typed_argv[] = {self, "--typed-server", "127.0.0.1", NULL};
    char *rpcz_argv[] = {(char *)cfg.ftrpc_path, "echo-server", "--listen",
                         "127.0.0.1:0",          "--rpcz",      NULL};
    char tls_dir[] = "/tmp/bench_echo_tls.XXXXXX";
    /* the systems this run measures */
    sys_kind active[NSYS] = {SYS_RAW, SYS_FTRPC};
    int nsys = 2;
    if (cfg.tls) active[nsys++] = SYS_TLS;
    if (cfg.typed) active[nsys++] = SYS_TYPED;
    if (cfg.rpcz) active[nsys++] = SYS_RPCZ;
    if (cfg.grpc) active[nsys++] = SYS_GRPC;
    if (cfg.tls && make_tls_cert(tls_dir, &cfg) != 0) return 1;
    if (start_server(&x.servers[SYS_RAW], "raw server", raw_argv) != 0) return 1;
    if (start_server(&x.servers[SYS_FTRPC], "ftrpc echo-server", ftrpc_argv) != 0 ||
        (cfg.tls && start_server(&x.servers[SYS_TLS], "ftrpc TLS echo-server", tls_argv) != 0) ||
        (cfg.typed && start_server(&x.servers[SYS_TYPED], "typed server", typed_argv) != 0) ||
        (cfg.rpcz &&
         start_server(&x.servers[SYS_RPCZ], "ftrpc rpcz echo-server", rpcz_argv) != 0) ||
        (cfg.grpc &&
         start_server(&x.servers[SYS_GRPC], "ftrpc gRPC echo-server", ftrpc_argv) != 0)) {
        stop_server(&x.servers[SYS_RAW]);
        stop_server(&x.servers[SYS_FTRPC]);
        stop_server(&x.servers[SYS_TLS]);
        stop_server(&x.servers[SYS_TYPED]);
        stop_server(&x.servers[SYS_RPCZ]);
        return 1;
    }
    printf("servers: raw pid %d port %d, ftrpc pid %d port %d", (int)x.servers[SYS_RAW].pid,
           x.servers[SYS_RAW].port, (int)x.servers[SYS_FTRPC].pid, x.servers[SYS_FTRPC].port);
    if (cfg.tls)
        printf(", ftrpc TLS pid %d port %d (%s)", (int)x.servers[SYS_TLS].pid,
               x.servers[SYS_TLS].port, OpenSSL_version(OPENSSL_VERSION));
    if (cfg.typed)
        printf(", typed pid %d port %d", (int)x.servers[SYS_TYPED].pid, x.servers[SYS_TYPED].port);
    if (cfg.rpcz)
        printf(", ftrpc rpcz pid %d port %d", (int)x.servers[SYS_RPCZ].pid,
               x.servers[SYS_RPCZ].port);
    if (cfg.grpc)
        printf(", ftrpc gRPC pid %d port %d", (int)x.servers[SYS_GRPC].pid,
               x.servers[SYS_GRPC].port);
    printf("\n\n");
    int rc =
        ftrpc_runtime_new(&(ftrpc_runtime_options){.io_threads = cfg.client_io_threads}, &x.rt);
    if (rc != 0) {
        fprintf(stderr, "bench_echo: ftrpc_runtime_new: %s\n", ftrpc_strerror(rc));
        stop_server(&x.servers[SYS_RAW]);
        stop_server(&x.servers[SYS_FTRPC]);
        stop_server(&x.servers[SYS_TLS]);
        stop_server(&x.servers[SYS_TYPED]);
        stop_server(&x.servers[SYS_RPCZ]);
        stop_server(&x.servers[SYS_GRPC]);
        return 1;
    }

    int failed = 0;
    for (int rep = 0; rep < cfg.reps; rep++)
        for (int sh = 0; sh < 2; sh++) {
            if (!(cfg.shapes & (1 << sh))) continue;
            for (int i = 0; i < cfg.ninflight; i++)
                for (int k = 0; k < nsys; k++) {
                    /* alternate which system goes first, so neither always meets a warmer or a
                     * cooler machine */
                    sys_kind s = active[(k + rep + i) % nsys];
                    result *r = &g_reps[sh][i][s][rep];
                    if (run_cell(&x, s, (shape_kind)sh, cfg.inflight[i], r) != 0) failed = 1;
                    if (r->errors) failed = 1;
                    printf("rep %d/%d  %-5s  in-flight %3d  %-5s  QPS %8.0f  p50 %8.1f us  p99 "
                           "%8.1f us  server RSS %6.1f MiB  CPU server %.2f client %.2f others "
                           "%.2f%s\n",
                           rep + 1, cfg.reps, SHAPE_NAME[sh], cfg.inflight[i], SYS_NAME[s], r->qps,
                           r->p50_us, r->p99_us, r->rss_kb / 1024.0, r->srv_cpu, r->cli_cpu,
                           r->other_cpu, r->errors ? "  ERRORS" : "");
                    fflush(stdout);
                }
        }
    verdict v[24];
    int nv = 0;
    if (cfg.grpc && cfg.grpc_cpp && access(cfg.grpc_cpp, X_OK) == 0) {
        server_proc cpp_srv = {0};
        char *cpp_argv[] = {(char *)cfg.grpc_cpp, "server", NULL};
        if (start_server(&cpp_srv, "gRPC C++ echo server", cpp_argv) != 0)
            failed = 1;
        else if (grpc_cpp_rows(&x, &cpp_srv, v, &nv) != 0)
            failed = 1;
        stop_server(&cpp_srv); /* SIGTERM is how it ends: its status means nothing */
    } else if (cfg.grpc) {
        printf("\ngRPC C++ rows skipped: no gRPC C++ peer%s%s (the tests build it where grpc++ is "
               "found: libgrpc++-dev; or --grpc-cpp PATH)\n",
               cfg.grpc_cpp ? " at " : "", cfg.grpc_cpp ? cfg.grpc_cpp : "");
    }
    ftrpc_runtime_free(x.rt);
    proc_sample hwm[NSYS] = {sample_proc(x.servers[SYS_RAW].pid),
                             sample_proc(x.servers[SYS_FTRPC].pid),
                             cfg.tls ? sample_proc(x.servers[SYS_TLS].pid) : (proc_sample){0},
                             cfg.typed ? sample_proc(x.servers[SYS_TYPED].pid) : (proc_sample){0}};
    if (stop_server(&x.servers[SYS_FTRPC]) != 0 || stop_server(&x.servers[SYS_TLS]) != 0 ||
        stop_server(&x.servers[SYS_TYPED]) != 0 || stop_server(&x.servers[SYS_RPCZ]) != 0 ||
        stop_server(&x.servers[SYS_GRPC]) != 0) {
        fprintf(stderr, "bench_echo: the ftrpc echo-server did not exit cleanly\n");
        failed = 1;
    }
    stop_server(&x.servers[SYS_RAW]); /* SIGTERM is how it ends: its status means nothing */
    getloadavg(m.load_after, 3);

    for (int sh = 0; sh < 2; sh++) {
        if (!(cfg.shapes & (1 << sh))) continue;
        for (int i = 0; i < cfg.ninflight; i++)
            for (int k = 0; k < nsys; k++)
                g_sum[sh][i][active[k]] = summarize(g_reps[sh][i][active[k]], cfg.reps);
        for (int i = 0; i < cfg.ninflight; i++) {
            paired_ratios(&cfg, sh, i, SYS_FTRPC, SYS_RAW);
            if (cfg.tls) paired_ratios(&cfg, sh, i, SYS_TLS, SYS_FTRPC);
            if (cfg.typed) paired_ratios(&cfg, sh, i, SYS_TYPED, SYS_FTRPC);
            if (cfg.rpcz) paired_ratios(&cfg, sh, i, SYS_RPCZ, SYS_FTRPC);
            if (cfg.grpc) paired_ratios(&cfg, sh, i, SYS_GRPC, SYS_FTRPC);
        }
        print_table(&cfg, sh, g_sum[sh]);
        if (cfg.tls) print_tls_table(&cfg, sh, g_sum[sh]);
        if (cfg.typed) print_typed_table(&cfg, sh, g_sum[sh]);
        if (cfg.rpcz) print_rpcz_table(&cfg, sh, g_sum[sh]);
        if (cfg.grpc) { /* gRPC over HTTP/2 beside baidu_std, same shape, same run */
            printf("\n### shape %s over gRPC\nThe same ftrpc echo with the client speaking gRPC "
                   "(HTTP/2 through nghttp2) to an ftrpc server, beside baidu_std; a ratio is the "
                   "median of each repetition's grpc/baidu_std ratio.\n\n",
                   SHAPE_NAME[sh]);
            print_beside_table(&cfg, g_sum[sh], SYS_GRPC, "grpc", "baidu_std");
        }
        nv += acceptance(&cfg, sh, g_sum[sh], v + nv);
    }
    /* the clients of both systems live in this process: its peak says what they hold at most */
    printf(
        "\nserver peak RSS (VmHWM): ftrpc %.1f MiB, ftrpc TLS %.1f MiB, typed %.1f MiB, raw %.1f "
        "MiB; this client process: %.1f MiB; "
        "load average after: %.2f %.2f %.2f; CPU pressure (some, avg10) %.0f%%\n",
        hwm[SYS_FTRPC].hwm_kb / 1024.0, hwm[SYS_TLS].hwm_kb / 1024.0,
        hwm[SYS_TYPED].hwm_kb / 1024.0, hwm[SYS_RAW].hwm_kb / 1024.0,
        sample_proc(getpid()).hwm_kb / 1024.0, m.load_after[0], m.load_after[1], m.load_after[2],
        cpu_pressure());
    printf("\n");
    for (int i = 0; i < nv; i++)
        printf("target (%s shape): %s at %d in flight = %.2f, want %s %g: %s\n",
               SHAPE_NAME[v[i].shape], v[i].what, v[i].inflight, v[i].value,
               v[i].at_least || v[i].limit < 1 ? ">=" : "<=", v[i].limit,
               v[i].pass ? "PASS" : "FAIL");
    if (cfg.json) write_json(&cfg, &m, g_sum, g_reps, v, nv);
    if (cfg.tls) remove_tls_cert(tls_dir, &cfg);
    free(x.payload);
    return failed ? 1 : 0;
}
