/* The fault proxy (fault_proxy.h).
 *
 * One thread polls the listening socket and every forwarded pair. Each direction of a pair holds
 * what it read in a buffer, as segments stamped with the time they may leave (now + delay); a
 * segment goes out once due, and no faster than the rate allows (a budget refilled with the time
 * that passed). A direction stops reading while its buffer or segment queue is full, so a slow
 * upstream slows the client down through TCP, as a real link does. Stalled, the thread neither
 * reads nor writes a pair, and the kernel's buffers fill and then hold. */
#include "fault_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { MAX_PAIRS = 64, BUF_CAP = 1 << 16, MAX_SEGS = 512 };

typedef struct dir {
    int from, to;
    char buf[BUF_CAP];
    size_t len;
    struct {
        int64_t at_us;
        size_t len;
    } seg[MAX_SEGS];
    int nseg;
    int eof;           /* `from` ended: shut `to` down for writing once the buffer is out */
    double budget;     /* bytes the rate lets out now */
    int64_t refill_us; /* when budget was last refilled */
} dir;

typedef struct pair {
    int used;
    dir d[2]; /* [0] client -> upstream, [1] upstream -> client */
} pair;

struct nf_proxy {
    int lfd, port;
    struct sockaddr_in upstream;
    pthread_t thread;
    atomic_int stop, delay_ms, stall, reset_gen;
    /* A setter bumps ctl_gen and waits until the thread has read its controls at a later
     * generation: once a setter returns, the thread acts on the new value (ctl_seen). */
    atomic_int ctl_gen, ctl_seen;
    atomic_llong rate, accepted;
    pair pairs[MAX_PAIRS];
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Closes both sockets; reset: with a RST rather than a FIN. */
static void pair_close(pair *pr, int reset)
{
    int fds[2] = {pr->d[0].from, pr->d[0].to};
    for (int i = 0; i < 2; i++) {
        if (reset) {
            struct linger l = {1, 0};
            setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &l, sizeof l);
        }
        close(fds[i]);
    }
    pr->used = 0;
}

static void accept_one(nf_proxy *p)
{
    int c = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) return;
    int u = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    /* a blocking connect on loopback: done at once, or refused at once */
    if (u < 0 || connect(u, (struct sockaddr *)&p->upstream, sizeof p->upstream) != 0) {
        struct linger l = {1, 0};
        setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        close(c);
        if (u >= 0) close(u);
        return;
    }
    fcntl(u, F_SETFL, fcntl(u, F_GETFL) | O_NONBLOCK);
    int one = 1;
    setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (int i = 0; i < MAX_PAIRS; i++) {
        pair *pr = &p->pairs[i];
        if (pr->used) continue;
        memset(pr, 0, sizeof *pr);
        pr->used = 1;
        pr->d[0].from = pr->d[1].to = c;
        pr->d[0].to = pr->d[1].from = u;
        pr->d[0].refill_us = pr->d[1].refill_us = now_us();
        atomic_fetch_add(&p->accepted, 1);
        return;
    }
    close(c);
    close(u);
}

static int can_read(const dir *d)
{
    return !d->eof && d->len < BUF_CAP && d->nseg < MAX_SEGS;
}

/* Reads what `from` has into the buffer, stamped now + delay. -1: the pair is broken. */
static int dir_read(dir *d, int64_t now, int delay_ms)
{
    while (can_read(d)) {
        ssize_t n = read(d->from, d->buf + d->len, BUF_CAP - d->len);
        if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
        if (n == 0) {
            d->eof = 1;
            return 0;
        }
        int64_t at = now + (int64_t)delay_ms * 1000;
        if (d->nseg > 0 && d->seg[d->nseg - 1].at_us == at) {
            d->seg[d->nseg - 1].len += (size_t)n;
        } else {
            d->seg[d->nseg].at_us = at;
            d->seg[d->nseg].len = (size_t)n;
            d->nseg++;
        }
        d->len += (size_t)n;
    }
    return 0;
}

/* Writes the due segments, within the rate. -1: the pair is broken. */
static int dir_write(dir *d, int64_t now, int64_t rate)
{
    double budget = 1e18;
    if (rate > 0) {
        /* at most 100 ms worth of burst (and never less than one byte a turn) */
        d->budget += (double)(now - d->refill_us) * (double)rate / 1e6;
        double cap = (double)rate / 10 > 1 ? (double)rate / 10 : 1;
        if (d->budget > cap) d->budget = cap;
        budget = d->budget;
    }
    d->refill_us = now;
    while (d->nseg > 0 && d->seg[0].at_us <= now && budget >= 1) {
        size_t n = d->seg[0].len;
        if ((double)n > budget) n = (size_t)budget;
        ssize_t w = write(d->to, d->buf, n);
        if (w < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
        memmove(d->buf, d->buf + w, d->len - (size_t)w);
        d->len -= (size_t)w;
        d->seg[0].len -= (size_t)w;
        if (d->seg[0].len == 0) memmove(&d->seg[0], &d->seg[1], --d->nseg * sizeof d->seg[0]);
        budget -= (double)w;
        if (rate > 0) d->budget -= (double)w;
    }
    if (d->eof && d->len == 0) shutdown(d->to, SHUT_WR);
    return 0;
}

static void *proxy_main(void *arg)
{
    nf_proxy *p = arg;
    int seen_reset = atomic_load(&p->reset_gen);
    while (!atomic_load(&p->stop)) {
        int gen = atomic_load(&p->ctl_gen);
        int reset = atomic_load(&p->reset_gen);
        if (reset != seen_reset) {
            seen_reset = reset;
            for (int i = 0; i < MAX_PAIRS; i++)
                if (p->pairs[i].used) pair_close(&p->pairs[i], 1);
        }
        int stall = atomic_load(&p->stall);
        int delay = atomic_load(&p->delay_ms);
        int64_t rate = atomic_load(&p->rate);
        atomic_store(&p->ctl_seen, gen);
        struct pollfd pf[1 + 2 * MAX_PAIRS];
        int n = 0, pending = 0;
        pf[n++] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
        for (int i = 0; i < MAX_PAIRS && !stall; i++) {
            pair *pr = &p->pairs[i];
            if (!pr->used) continue;
            for (int k = 0; k < 2; k++) {
                pf[n++] = (struct pollfd){.fd = pr->d[k].from,
                                          .events = (short)(can_read(&pr->d[k]) ? POLLIN : 0)};
                pending |= pr->d[k].nseg > 0;
            }
        }
        poll(pf, (nfds_t)n, pending ? 1 : 20);
        if (pf[0].revents & POLLIN) accept_one(p);
        if (stall) continue;
        int64_t now = now_us();
        for (int i = 0; i < MAX_PAIRS; i++) {
            pair *pr = &p->pairs[i];
            if (!pr->used) continue;
            int broken = 0;
            for (int k = 0; k < 2 && !broken; k++)
                broken =
                    dir_read(&pr->d[k], now, delay) != 0 || dir_write(&pr->d[k], now, rate) != 0;
            if (broken)
                pair_close(pr, 1);
            else if (pr->d[0].eof && pr->d[1].eof && !pr->d[0].len && !pr->d[1].len)
                pair_close(pr, 0);
        }
    }
    for (int i = 0; i < MAX_PAIRS; i++)
        if (p->pairs[i].used) pair_close(&p->pairs[i], 1);
    return NULL;
}

int nf_proxy_start(const char *listen_host, const char *upstream, nf_proxy **out)
{
    nf_proxy *p = calloc(1, sizeof *p);
    if (!p) return -1;
    char host[64];
    snprintf(host, sizeof host, "%s", upstream);
    char *colon = strrchr(host, ':');
    if (!colon) {
        free(p);
        return -1;
    }
    *colon = '\0';
    p->upstream.sin_family = AF_INET;
    p->upstream.sin_port = htons((uint16_t)atoi(colon + 1));
    struct sockaddr_in la = {.sin_family = AF_INET};
    socklen_t ll = sizeof la;
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (inet_pton(AF_INET, host, &p->upstream.sin_addr) != 1 ||
        inet_pton(AF_INET, listen_host, &la.sin_addr) != 1 || p->lfd < 0 ||
        bind(p->lfd, (struct sockaddr *)&la, sizeof la) != 0 || listen(p->lfd, 128) != 0 ||
        getsockname(p->lfd, (struct sockaddr *)&la, &ll) != 0) {
        if (p->lfd >= 0) close(p->lfd);
        free(p);
        return -1;
    }
    p->port = ntohs(la.sin_port);
    if (pthread_create(&p->thread, NULL, proxy_main, p) != 0) {
        close(p->lfd);
        free(p);
        return -1;
    }
    *out = p;
    return 0;
}

void nf_proxy_stop(nf_proxy *p)
{
    if (!p) return;
    atomic_store(&p->stop, 1);
    pthread_join(p->thread, NULL);
    close(p->lfd);
    free(p);
}

int nf_proxy_port(const nf_proxy *p)
{
    return p->port;
}

/* Waits (bounded: the thread's poll lasts at most 20 ms) until the thread has read the controls
 * as they are now. */
static void controls_sync(nf_proxy *p)
{
    int gen = atomic_fetch_add(&p->ctl_gen, 1) + 1;
    for (int i = 0; i < 2000 && atomic_load(&p->ctl_seen) < gen; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

void nf_proxy_set_delay_ms(nf_proxy *p, int ms)
{
    atomic_store(&p->delay_ms, ms);
    controls_sync(p);
}

void nf_proxy_set_stall(nf_proxy *p, int on)
{
    atomic_store(&p->stall, on);
    controls_sync(p);
}

void nf_proxy_set_rate(nf_proxy *p, int64_t bytes_per_s)
{
    atomic_store(&p->rate, (long long)bytes_per_s);
    controls_sync(p);
}

void nf_proxy_reset_all(nf_proxy *p)
{
    atomic_fetch_add(&p->reset_gen, 1);
    controls_sync(p);
}

int64_t nf_proxy_accepted(const nf_proxy *p)
{
    return atomic_load(&((nf_proxy *)p)->accepted);
}
