/* What the benchmarks of bench/ share, as static functions in one header (each bench is one .c file
 * built into its own program): the monotonic clock, a process's RSS and CPU from /proc, and the
 * servers they start as child processes and stop, and the listening side of their raw servers.
 * Define BENCH_NAME (the program's name, for messages) before including it.
 */
#ifndef FT_BENCH_PROC_H
#define FT_BENCH_PROC_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ns(int64_t ns)
{
    struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

typedef struct proc_sample {
    long rss_kb, hwm_kb;
    double cpu_s; /* user + system */
} proc_sample;

static proc_sample sample_proc(pid_t pid)
{
    proc_sample p = {0};
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f) {
        while (fgets(line, sizeof line, f)) {
            if (!strncmp(line, "VmRSS:", 6))
                p.rss_kb = atol(line + 6);
            else if (!strncmp(line, "VmHWM:", 6))
                p.hwm_kb = atol(line + 6);
        }
        fclose(f);
    }
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f) {
        char buf[1024];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        fclose(f);
        char *p2 = strrchr(buf, ')'); /* the command name may hold spaces */
        unsigned long ut = 0, st = 0;
        if (p2 &&
            sscanf(p2 + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
            p.cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    }
    return p;
}

typedef struct server_proc {
    const char *name;
    pid_t pid;
    int out_fd; /* the child's stdout, kept open so a late print never meets a closed pipe */
    int port;
} server_proc;

/* Starts argv as a child process that prints "listening on HOST:PORT" on its stdout; waits for that
 * line (5 s at most). The child dies with us (PR_SET_PDEATHSIG) so an aborted run leaves no server.
 */
static int start_server(server_proc *sp, const char *name, char *const argv[])
{
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(1);
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], argv);
        fprintf(stderr, BENCH_NAME ": cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    sp->name = name;
    sp->pid = pid;
    sp->out_fd = fds[0];
    sp->port = 0;
    char line[256];
    size_t have = 0;
    int64_t deadline = now_ns() + 5 * INT64_C(1000000000);
    while (have < sizeof line - 1) {
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        int left_ms = (int)((deadline - now_ns()) / 1000000);
        if (left_ms <= 0 || poll(&pfd, 1, left_ms) <= 0) break;
        ssize_t n = read(fds[0], line + have, 1); /* byte by byte: stop exactly at the line's end */
        if (n <= 0) break;
        if (line[have++] == '\n') break;
    }
    line[have] = 0;
    const char *colon = strrchr(line, ':');
    if (strncmp(line, "listening on ", 13) != 0 || !colon || atoi(colon + 1) <= 0) {
        fprintf(stderr, BENCH_NAME ": %s (%s) did not report its port (got '%s')\n", name, argv[0],
                line);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    sp->port = atoi(colon + 1);
    return 0;
}

static int stop_server(server_proc *sp)
{
    if (sp->pid <= 0) return 0;
    kill(sp->pid, SIGTERM);
    int status = 0;
    for (int i = 0; i < 1000; i++) { /* 10 s for a graceful stop, then no more patience */
        if (waitpid(sp->pid, &status, WNOHANG) == sp->pid) goto reaped;
        sleep_ns(10000000);
    }
    fprintf(stderr, BENCH_NAME ": %s did not stop on SIGTERM within 10 s; killing it\n", sp->name);
    kill(sp->pid, SIGKILL);
    waitpid(sp->pid, &status, 0);
reaped:
    close(sp->out_fd);
    sp->pid = 0;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* The listening side of a raw server: ignores SIGPIPE, listens on host (an IPv4 address) at a port
 * the kernel picks, prints "listening on HOST:PORT" (start_server's line), and adds the socket to
 * a new epoll set (*ep) with a NULL data.ptr. The listening socket, or -1 after a message. */
static int raw_listen(const char *host, int *ep)
{
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
        bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 4096) != 0) {
        fprintf(stderr, BENCH_NAME " --raw-server: cannot listen on %s: %s\n", host,
                strerror(errno));
        return -1;
    }
    socklen_t sl = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    printf("listening on %s:%d\n", host, ntohs(sa.sin_port));
    fflush(stdout);
    *ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(*ep, EPOLL_CTL_ADD, lfd, &ev);
    return lfd;
}

#endif
