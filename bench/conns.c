/* bench_conns: many connections against one server, and what a connection and an idle server cost.
 *
 * What it measures, for an `ftrpc echo-server` (default options, as users run it) beside a raw
 * epoll server of the same frames, both started by this program and up for the whole run:
 *  - QPS with --conns connections (default 1,000), one call in flight on each, from --procs client
 *    processes (default 4, forked by this program) that each hold their share of the connections
 *    in one level-triggered epoll loop. The load generator speaks baidu_std itself (a prebuilt
 *    request frame: "PRPC" header, an RpcMeta naming example.EchoService/Echo, 16 bytes of
 *    payload) so that the client side costs the same against both servers, and a client library
 *    with one connection per endpoint per IO thread does not decide how many connections there
 *    are. A call is done when a whole frame (12-byte header and the body it announces) is back.
 *  - the servers' memory per idle connection: (RSS with the connections open and idle) minus (RSS
 *    before they were opened), over the connections. Twice: right after the connections are
 *    accepted (no call made yet) and after the load, every connection idle again (what stays
 *    after traffic: buffers kept, caches grown).
 *  - the idle ftrpc server before any connection: RSS and threads.
 *
 * The raw server is the honest minimum of the same service: one thread, level-triggered epoll, per
 * connection a small struct and a buffer only while a frame is incomplete, every complete frame of
 * a read written back with one write (it echoes the request frame: same framing, no meta to parse
 * or build). Its per-connection figure is the kernel's and libc's floor for an accepted socket.
 *
 * Fairness as in bench/echo.c: cells alternate (raw, ftrpc, ftrpc, raw, ...), --reps repetitions
 * (default 3), each figure the median, each ratio the median of the repetitions' paired ratios, the
 * load average printed before and after; the servers' CPU per call (from /proc) is printed beside
 * QPS as the steadier figure on a busy machine. Targets (issue #26) are printed as PASS or FAIL:
 * QPS ftrpc/raw >= 0.8 at 1,000 connections; ftrpc bytes per idle connection <= 8 KiB; idle ftrpc
 * server RSS <= 4 MiB.
 *
 * What it does not do: open more connections than the file limit allows (it says so), measure
 * latency (bench_echo does), or TLS.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#define BENCH_NAME "bench_conns"
#include "bench_proc.h"

#define PAYLOAD 16
#define MAX_BODY (1u << 20)

/* ---- the request frame ---- */

static size_t put_varint(unsigned char *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

static size_t put_string(unsigned char *p, unsigned field, const char *s)
{
    size_t n = put_varint(p, (uint64_t)field << 3 | 2), len = strlen(s);
    n += put_varint(p + n, len);
    memcpy(p + n, s, len);
    return n + len;
}

/* A baidu_std request for example.EchoService/Echo with correlation id 1 and PAYLOAD bytes. Every
 * connection has one call in flight at a time, so one id does. */
static size_t make_request(unsigned char *out)
{
    unsigned char req[128], meta[160];
    size_t rn = put_string(req, 1, "example.EchoService");
    rn += put_string(req + rn, 2, "Echo");
    size_t mn = put_varint(meta, 1 << 3 | 2);
    mn += put_varint(meta + mn, rn);
    memcpy(meta + mn, req, rn);
    mn += rn;
    mn += put_varint(meta + mn, 4 << 3 | 0);
    mn += put_varint(meta + mn, 1);
    uint32_t body = htonl((uint32_t)(mn + PAYLOAD)), msize = htonl((uint32_t)mn);
    memcpy(out, "PRPC", 4);
    memcpy(out + 4, &body, 4);
    memcpy(out + 8, &msize, 4);
    memcpy(out + 12, meta, mn);
    memset(out + 12 + mn, 'x', PAYLOAD);
    return 12 + mn + PAYLOAD;
}

/* Bytes of the whole frame that starts at p (12-byte header and body), 0 while the header is not
 * all there, -1 for what is no baidu_std frame. */
static long frame_len(const unsigned char *p, size_t have)
{
    if (have < 12) return 0;
    if (memcmp(p, "PRPC", 4) != 0) return -1;
    uint32_t body;
    memcpy(&body, p + 4, 4);
    body = ntohl(body);
    if (body > MAX_BODY) return -1;
    return 12 + (long)body;
}

/* ---- the raw server: one thread, level-triggered epoll, echoes every whole frame ---- */

typedef struct raw_conn {
    int fd;
    unsigned char *in; /* only while a frame is incomplete */
    size_t len;
} raw_conn;

static void raw_drop(int ep, raw_conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in);
    free(c);
}

/* Reads what there is and writes every whole frame back (a client with one call in flight never
 * fills the socket, so a short write ends the connection rather than queue). -1 closes. */
static int raw_readable(raw_conn *c)
{
    unsigned char buf[65536];
    size_t have = 0;
    if (c->len) {
        memcpy(buf, c->in, c->len);
        have = c->len;
    }
    ssize_t n = read(c->fd, buf + have, sizeof buf - have);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    if (n <= 0) return -1;
    have += (size_t)n;
    size_t done = 0;
    for (;;) {
        long f = frame_len(buf + done, have - done);
        if (f < 0 || f > (long)sizeof buf) return -1;
        if (f == 0 || have - done < (size_t)f) break;
        done += (size_t)f;
    }
    if (done && write(c->fd, buf, done) != (ssize_t)done) return -1;
    free(c->in);
    c->in = NULL;
    c->len = have - done;
    if (c->len) {
        if (!(c->in = malloc(c->len))) return -1;
        memcpy(c->in, buf + done, c->len);
    }
    return 0;
}

static int raw_server_main(void)
{
    int ep, one = 1;
    int lfd = raw_listen("127.0.0.1", &ep);
    if (lfd < 0) return 1;
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return 1;
        for (int i = 0; i < n; i++) {
            raw_conn *c = evs[i].data.ptr;
            if (c) {
                if (raw_readable(c) < 0) raw_drop(ep, c);
                continue;
            }
            int fd;
            while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                raw_conn *nc = calloc(1, sizeof *nc);
                if (!nc) {
                    close(fd);
                    continue;
                }
                nc->fd = fd;
                struct epoll_event cev = {.events = EPOLLIN, .data.ptr = nc};
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
            }
        }
    }
}

/* ---- the load: client processes, each an epoll loop over its connections ---- */

typedef struct cli_conn {
    int fd;
    size_t have; /* bytes of the reply read so far */
    unsigned char in[256];
} cli_conn;

typedef struct child_report {
    long calls, errors;
} child_report;

/* Reads one byte from fd (the parent's go-ahead); -1 when the parent is gone. */
static int wait_byte(int fd)
{
    char b;
    ssize_t n;
    while ((n = read(fd, &b, 1)) < 0 && errno == EINTR) {
    }
    return n == 1 ? 0 : -1;
}

/* One client process: opens nconn connections to port, says "ready" (one byte on out), waits for
 * the go-ahead on in, keeps one call in flight on each connection for duration_ns, reports its
 * counts on out, then holds the connections open, idle, until the next byte on in. */
static int client_main(int port, int nconn, int64_t duration_ns, int in, int out)
{
    signal(SIGPIPE, SIG_IGN);
    unsigned char req[256];
    size_t req_len = make_request(req);
    cli_conn *conns = calloc((size_t)nconn, sizeof *conns);
    int ep = epoll_create1(EPOLL_CLOEXEC), one = 1;
    if (!conns || ep < 0) return 1;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < nconn; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            fprintf(stderr, "bench_conns: connection %d: %s\n", i, strerror(errno));
            return 1;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(fd, F_SETFL, O_NONBLOCK);
        conns[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    child_report rep = {0, 0};
    if (write(out, "r", 1) != 1 || wait_byte(in) != 0) return 1;
    for (int i = 0; i < nconn; i++)
        if (write(conns[i].fd, req, req_len) != (ssize_t)req_len) rep.errors++;
    int64_t end = now_ns() + duration_ns;
    long outstanding = nconn - rep.errors;
    struct epoll_event evs[256];
    /* past the end, the calls in flight are drained (not counted) so the connections go idle */
    while (outstanding > 0) {
        int n = epoll_wait(ep, evs, 256, 1000);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break; /* a second without any reply: the server stalled */
        int over = now_ns() >= end;
        for (int i = 0; i < n; i++) {
            cli_conn *c = evs[i].data.ptr;
            ssize_t r = read(c->fd, c->in + c->have, sizeof c->in - c->have);
            if (r < 0 && errno == EAGAIN) continue;
            if (r <= 0) {
                rep.errors++;
                outstanding--;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            c->have += (size_t)r;
            long f = frame_len(c->in, c->have);
            if (f < 0 || f > (long)sizeof c->in) {
                rep.errors++;
                outstanding--;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            if (f == 0 || c->have < (size_t)f) continue;
            c->have = 0; /* one call in flight: nothing follows its reply */
            if (over) {
                outstanding--;
                continue;
            }
            rep.calls++;
            if (write(c->fd, req, req_len) != (ssize_t)req_len) {
                rep.errors++;
                outstanding--;
            }
        }
    }
    rep.errors += outstanding;
    if (write(out, &rep, sizeof rep) != sizeof rep) return 1;
    wait_byte(in); /* idle until told to go */
    return 0;
}

typedef struct fleet {
    int n;
    pid_t pid[64];
    int to[64], from[64];
} fleet;

static void fleet_end(fleet *f)
{
    for (int i = 0; i < f->n; i++) {
        close(f->to[i]); /* the child's wait_byte returns: it exits, closing its connections */
        close(f->from[i]);
        waitpid(f->pid[i], NULL, 0);
    }
    f->n = 0;
}

/* Forks nprocs clients holding nconns connections in all, and waits until all are connected. */
static int fleet_start(fleet *f, int nprocs, int nconns, int port, int64_t duration_ns)
{
    f->n = 0;
    for (int i = 0; i < nprocs; i++) {
        int to[2], from[2];
        if (pipe(to) != 0 || pipe(from) != 0) return -1;
        int share = nconns / nprocs + (i < nconns % nprocs);
        pid_t pid = fork();
        if (pid < 0) return -1;
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            close(to[1]);
            close(from[0]);
            for (int k = 0; k < f->n; k++) { /* the earlier siblings' pipes are not ours */
                close(f->to[k]);
                close(f->from[k]);
            }
            _exit(client_main(port, share, duration_ns, to[0], from[1]));
        }
        close(to[0]);
        close(from[1]);
        f->pid[f->n] = pid;
        f->to[f->n] = to[1];
        f->from[f->n] = from[0];
        f->n++;
    }
    for (int i = 0; i < f->n; i++)
        if (wait_byte(f->from[i]) != 0) return -1;
    return 0;
}

/* ---- cells ---- */

typedef struct cell {
    double qps, srv_us_per_call;
    long errors;
    double fresh_b, used_b; /* server RSS bytes per idle connection: before and after traffic */
} cell;

static int run_cell(pid_t server, int port, int nprocs, int nconns, double seconds, cell *out)
{
    fleet f;
    /* a little settling after the previous cell's connections closed */
    sleep_ns(200000000);
    proc_sample before = sample_proc(server);
    if (fleet_start(&f, nprocs, nconns, port, (int64_t)(seconds * 1e9)) != 0) {
        fleet_end(&f);
        return -1;
    }
    sleep_ns(300000000); /* every accept handled */
    proc_sample fresh = sample_proc(server);
    int64_t t0 = now_ns();
    for (int i = 0; i < f.n; i++)
        if (write(f.to[i], "g", 1) != 1) return -1;
    child_report total = {0, 0};
    for (int i = 0; i < f.n; i++) {
        child_report r;
        if (read(f.from[i], &r, sizeof r) != sizeof r) {
            fleet_end(&f);
            return -1;
        }
        total.calls += r.calls;
        total.errors += r.errors;
    }
    int64_t t1 = now_ns();
    proc_sample busy = sample_proc(server);
    sleep_ns(300000000);
    proc_sample used = sample_proc(server);
    fleet_end(&f);
    double secs = (double)(t1 - t0) / 1e9;
    out->qps = (double)total.calls / (seconds < secs ? seconds : secs);
    out->errors = total.errors;
    out->srv_us_per_call = total.calls ? (busy.cpu_s - fresh.cpu_s) * 1e6 / (double)total.calls : 0;
    out->fresh_b = (double)(fresh.rss_kb - before.rss_kb) * 1024.0 / nconns;
    out->used_b = (double)(used.rss_kb - before.rss_kb) * 1024.0 / nconns;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int thread_count(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    int n = 0;
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "Threads:", 8)) n = atoi(line + 8);
    fclose(f);
    return n;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bench_conns [--ftrpc PATH] [--conns N] [--procs N] [--seconds S] [--reps N]\n"
            "                   [--quick]\n\n"
            "ftrpc echo-server beside a raw epoll server of the same baidu_std frames: QPS with\n"
            "N connections (default 1000) holding one call in flight each, from --procs client\n"
            "processes (default 4); server RSS per idle connection; the idle server's RSS and\n"
            "threads. --reps repetitions (default 3) of --seconds (default 2) a cell; --quick:\n"
            "1 repetition of 1 s. Prints each target as PASS or FAIL. Exit status 0 unless a cell\n"
            "could not run or a call failed.\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"ftrpc", required_argument, 0, 'f'},
                                         {"conns", required_argument, 0, 'c'},
                                         {"procs", required_argument, 0, 'p'},
                                         {"seconds", required_argument, 0, 's'},
                                         {"reps", required_argument, 0, 'r'},
                                         {"quick", no_argument, 0, 'q'},
                                         {"raw-server", no_argument, 0, 'R'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    char ftrpc_path[4096];
    snprintf(ftrpc_path, sizeof ftrpc_path, "%s", argv[0]);
    char *slash = strrchr(ftrpc_path, '/');
    snprintf(slash ? slash + 1 : ftrpc_path,
             sizeof ftrpc_path - (size_t)(slash ? slash + 1 - ftrpc_path : 0), "ftrpc");
    int nconns = 1000, nprocs = 4, reps = 3, c;
    double seconds = 2;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            snprintf(ftrpc_path, sizeof ftrpc_path, "%s", optarg);
            break;
        case 'c':
            nconns = atoi(optarg);
            break;
        case 'p':
            nprocs = atoi(optarg);
            break;
        case 's':
            seconds = atof(optarg);
            break;
        case 'r':
            reps = atoi(optarg);
            break;
        case 'q':
            reps = 1;
            seconds = 1;
            break;
        case 'R':
            return raw_server_main();
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (nconns < 1 || nconns > 100000 || nprocs < 1 || nprocs > 64 || nprocs > nconns || reps < 1 ||
        reps > 64 || !(seconds > 0) || seconds > 3600) {
        fprintf(stderr, "bench_conns: --conns 1..100000, --procs 1..64 (at most --conns), "
                        "--reps 1..64, --seconds in (0, 3600]\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)nconns + 64) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)nconns + 64 ? rl.rlim_max : (rlim_t)nconns + 64;
        setrlimit(RLIMIT_NOFILE, &rl); /* inherited by the servers */
        if (rl.rlim_cur < (rlim_t)nconns + 64) {
            fprintf(stderr, "bench_conns: the file limit (%lu) is below %d connections\n",
                    (unsigned long)rl.rlim_cur, nconns);
            return 2;
        }
    }
    char self[4096];
    ssize_t sn = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sn <= 0) return 1;
    self[sn] = 0;
    char *raw_argv[] = {self, "--raw-server", NULL};
    char *ftrpc_argv[] = {ftrpc_path, "echo-server", "--listen", "127.0.0.1:0", NULL};
    server_proc raw = {0}, ft = {0};
    double load0[3] = {0}, load1[3] = {0};
    getloadavg(load0, 3);
    if (start_server(&raw, "raw server", raw_argv) != 0 ||
        start_server(&ft, "ftrpc echo-server", ftrpc_argv) != 0) {
        stop_server(&raw);
        return 1;
    }
    sleep_ns(500000000); /* the ftrpc server's start-up work done: what an idle one holds */
    proc_sample idle = sample_proc(ft.pid);
    int idle_threads = thread_count(ft.pid);
    printf("bench_conns: %d connections from %d client processes, one call in flight each, "
           "%d B payload; %d repetitions of %.1f s a cell; load average before %.2f %.2f %.2f\n",
           nconns, nprocs, PAYLOAD, reps, seconds, load0[0], load0[1], load0[2]);
    cell cells[64][2];
    int failed = 0;
    for (int r = 0; r < reps && !failed; r++) {
        for (int k = 0; k < 2; k++) {
            int sys = (k + r) % 2; /* 0 raw, 1 ftrpc; the order alternates every repetition */
            server_proc *sp = sys ? &ft : &raw;
            if (run_cell(sp->pid, sp->port, nprocs, nconns, seconds, &cells[r][sys]) != 0) {
                fprintf(stderr, "bench_conns: the %s cell could not run\n", sp->name);
                failed = 1;
                break;
            }
            cell *x = &cells[r][sys];
            printf("  rep %d %-5s %9.0f qps  %6.2f server us/call  %7.0f B/conn fresh  %7.0f "
                   "B/conn after use%s\n",
                   r + 1, sys ? "ftrpc" : "raw", x->qps, x->srv_us_per_call, x->fresh_b, x->used_b,
                   x->errors ? "  ERRORS" : "");
            fflush(stdout);
            if (x->errors) failed = 1;
        }
    }
    getloadavg(load1, 3);
    int ft_ok = stop_server(&ft) == 0;
    stop_server(&raw); /* SIGTERM is how it ends */
    if (failed) return 1;
    /* Memory: the largest figure over the repetitions, which is the first cell's (a fresh
     * server): the heap a later cell finds free from the earlier ones is not new RSS, so its
     * delta understates what a connection costs. */
    double v[4][64], braw = 0, bft = 0, bfresh = 0;
    for (int r = 0; r < reps; r++) {
        v[0][r] = cells[r][0].qps;
        v[1][r] = cells[r][1].qps;
        v[2][r] = cells[r][1].qps / cells[r][0].qps;
        v[3][r] = cells[r][1].srv_us_per_call / cells[r][0].srv_us_per_call;
        if (cells[r][0].used_b > braw) braw = cells[r][0].used_b;
        if (cells[r][1].used_b > bft) bft = cells[r][1].used_b;
        if (cells[r][1].fresh_b > bfresh) bfresh = cells[r][1].fresh_b;
    }
    double qraw = median(v[0], reps), qft = median(v[1], reps), ratio = median(v[2], reps);
    double cpu_ratio = median(v[3], reps);
    double idle_mib = (double)idle.rss_kb / 1024.0;
    printf("\n| connections | raw QPS | ftrpc QPS | QPS ratio ftrpc/raw | server CPU/call ratio "
           "ftrpc/raw | raw B/idle conn | ftrpc B/idle conn (fresh) | ftrpc B/idle conn (after "
           "use) |\n"
           "|---:|---:|---:|---:|---:|---:|---:|---:|\n"
           "| %d | %.0f | %.0f | %.2f | %.2f | %.0f | %.0f | %.0f |\n",
           nconns, qraw, qft, ratio, cpu_ratio, braw, bfresh, bft);
    printf("\nidle ftrpc echo-server: RSS %.1f MiB, %d threads; load average after %.2f %.2f "
           "%.2f\n\n",
           idle_mib, idle_threads, load1[0], load1[1], load1[2]);
    double worst_b = bft > bfresh ? bft : bfresh;
    /* the QPS of a shared 2-core machine swings by 2x from one second to the next; the server's
     * CPU per call is the steadier figure and is printed beside it, not judged */
    printf("target: QPS ftrpc/raw at %d connections = %.2f, want >= 0.8: %s\n", nconns, ratio,
           ratio >= 0.8 ? "PASS" : "FAIL");
    printf("target: ftrpc server bytes per idle connection = %.0f, want <= 8192: %s (ratio to "
           "target %.2f)\n",
           worst_b, worst_b <= 8192 ? "PASS" : "FAIL", worst_b / 8192.0);
    printf("target: idle ftrpc echo-server RSS = %.2f MiB, want <= 4.0: %s (ratio to target "
           "%.2f)\n",
           idle_mib, idle_mib <= 4.0 ? "PASS" : "FAIL", idle_mib / 4.0);
    if (!ft_ok) fprintf(stderr, "bench_conns: the ftrpc echo-server did not exit cleanly\n");
    return ft_ok ? 0 : 1;
}
