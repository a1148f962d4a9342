/* Integration test harness (see harness.h). */
#include <pthread.h>
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/iobuf.h"
#include "protocol/baidu_std.h"

/* ---- time and waiting ---- */

int64_t h_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t h_now_ms(void)
{
    return h_now_us() / 1000;
}

void h_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

int h_wait_until(int (*cond)(void *arg), void *arg, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    for (;;) {
        if (cond(arg)) return 1;
        if (h_now_ms() >= deadline) return cond(arg) ? 1 : 0;
        h_sleep_ms(1);
    }
}

struct atomic_ge {
    _Atomic int *counter;
    int target;
};

static int atomic_ge_cond(void *arg)
{
    struct atomic_ge *a = arg;
    return atomic_load(a->counter) >= a->target;
}

int h_wait_atomic_ge(_Atomic int *counter, int target, int timeout_ms)
{
    struct atomic_ge a = {counter, target};
    return h_wait_until(atomic_ge_cond, &a, timeout_ms);
}

/* ---- children ---- */

enum { MAX_CHILDREN = 64 };
static pid_t children[MAX_CHILDREN];
static int atexit_set;

static void kill_all_children(void)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] > 0) {
            kill(children[i], SIGKILL);
            waitpid(children[i], NULL, 0);
            children[i] = 0;
        }
    }
}

static void track(pid_t pid)
{
    if (!atexit_set) {
        atexit(kill_all_children);
        atexit_set = 1;
    }
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] == 0) {
            children[i] = pid;
            return;
        }
    }
}

static void untrack(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] == pid) children[i] = 0;
}

/* Under valgrind a child runs 20-50 times slower and checks for leaks as it exits: the waits for a
 * child's exit (h_server_stop, h_cli_run) and its output (its first line, h_child_wait_output) are
 * 10 times longer there. */
enum { CHILD_WAIT_SCALE = H_UNDER_VALGRIND ? 10 : 1 };

static const char *cli_path(void)
{
    const char *p = getenv("FTRPC_CLI");
    return p && *p ? p : "ftrpc";
}

static const char *scratch_dir(void)
{
    const char *d = getenv("FTRPC_SCRATCH");
    if (!d || !*d) d = "/tmp";
    mkdir(d, 0755);
    return d;
}

static atomic_uint child_uid; /* h_children_run_as */

void h_children_run_as(unsigned uid)
{
    atomic_store(&child_uid, uid);
}

/* Forks and execs path with argv; stdout to out_pipe's write end (or /dev/null), stderr to
 * err_fd. In the child: runs as h_children_run_as's uid, and dies with the parent. */
static pid_t spawn(const char *path, char *const *argv, int out_fd, int err_fd)
{
    pid_t parent = getpid();
    unsigned uid = atomic_load(&child_uid);
    pid_t pid = fork();
    if (pid != 0) return pid;
    /* before PR_SET_PDEATHSIG: a change of credentials clears it */
    if (uid && (setgroups(0, NULL) != 0 || setgid(uid) != 0 || setuid(uid) != 0)) _exit(126);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, 0);
    dup2(out_fd >= 0 ? out_fd : devnull, 1);
    dup2(err_fd >= 0 ? err_fd : devnull, 2);
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
    execv(path, argv);
    _exit(127);
}

/* Starts `ftrpc PRE... ARGS...` (both NULL-terminated, may be NULL) as a tracked child: stdout on
 * s->out_fd, stderr into FTRPC_SCRATCH/NAME-PID-N.stderr. 0 or -1. */
static int start_program(h_server *s, const char *path, const char *name, const char *const *pre,
                         const char *const *args);
static int start_child(h_server *s, const char *name, const char *const *pre,
                       const char *const *args)
{
    return start_program(s, cli_path(), name, pre, args);
}

/* start_child of another program than the CLI (path). */
static int start_program(h_server *s, const char *path, const char *name, const char *const *pre,
                         const char *const *args)
{
    static atomic_int seq;
    memset(s, 0, sizeof *s);
    s->out_fd = -1;
    snprintf(s->err_path, sizeof s->err_path, "%s/%s-%d-%d.stderr", scratch_dir(), name,
             (int)getpid(), atomic_fetch_add(&seq, 1));
    int err_fd = open(s->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (err_fd < 0) return -1;
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        close(err_fd);
        return -1;
    }
    char *argv[64];
    int n = 0;
    argv[n++] = (char *)path;
    for (int i = 0; pre && pre[i] && n < 63; i++)
        argv[n++] = (char *)pre[i];
    for (int i = 0; args && args[i] && n < 63; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    pid_t pid = spawn(path, argv, p[1], err_fd);
    close(p[1]);
    close(err_fd);
    if (pid < 0) {
        close(p[0]);
        return -1;
    }
    track(pid);
    s->pid = pid;
    s->out_fd = p[0];
    return 0;
}

int h_child_start(h_server *s, const char *const *args)
{
    return start_child(s, "child", NULL, args);
}

int h_program_start(h_server *s, const char *path, const char *const *args)
{
    const char *base = strrchr(path, '/');
    if (start_program(s, path, base ? base + 1 : path, NULL, args) != 0) return -1;
    char out[256];
    size_t len = 0;
    const char *line;
    if (!h_child_wait_output(s, out, sizeof out, &len, "\n", 5000) ||
        !(line = strstr(out, "listening on ")) || !strrchr(line, ':')) {
        h_server_kill(s);
        return -1;
    }
    s->port = atoi(strrchr(line, ':') + 1);
    return s->port > 0 ? 0 : -1;
}

const char *h_grpc_cpp_peer(void)
{
#ifdef FTRPC_GRPC_CPP_PEER
    return FTRPC_GRPC_CPP_PEER;
#else
    fprintf(stderr,
            "the gRPC C++ peer was not built: grpc++ was not found. Install libgrpc++-dev and "
            "protobuf-compiler-grpc (scripts/install-deps.sh --test), then reconfigure\n");
    return NULL;
#endif
}

int h_child_wait_output(h_server *s, char *buf, size_t cap, size_t *len, const char *needle,
                        int timeout_ms)
{
    int64_t deadline = h_now_ms() + (int64_t)timeout_ms * CHILD_WAIT_SCALE;
    buf[*len] = '\0';
    while (!strstr(buf, needle)) {
        int left = (int)(deadline - h_now_ms());
        if (left <= 0 || *len + 1 >= cap || s->out_fd < 0) return 0;
        struct pollfd pfd = {s->out_fd, POLLIN, 0};
        if (poll(&pfd, 1, left) <= 0) continue;
        ssize_t r = read(s->out_fd, buf + *len, cap - 1 - *len);
        if (r <= 0) return 0;
        *len += (size_t)r;
        buf[*len] = '\0';
    }
    return 1;
}

int h_spinner_start(h_server *s)
{
    memset(s, 0, sizeof *s);
    s->out_fd = -1;
    char *const argv[] = {(char *)"sh", (char *)"-c", (char *)"while :; do :; done", NULL};
    pid_t pid = spawn("/bin/sh", argv, -1, -1);
    if (pid < 0) return -1;
    track(pid);
    s->pid = pid;
    return 0;
}

int h_server_start(h_server *s, const char *const *args)
{
    return h_server_start_on(s, 0, args);
}

int h_server_start_on(h_server *s, int port, const char *const *args)
{
    char listen_addr[32];
    snprintf(listen_addr, sizeof listen_addr, "127.0.0.1:%d", port);
    return h_server_start_at(s, listen_addr, args);
}

int h_server_start_at(h_server *s, const char *listen_addr, const char *const *args)
{
    const char *const pre[] = {"echo-server", "--listen", listen_addr, NULL};
    if (start_child(s, "echo-server", pre, args) != 0) return -1;
    /* read the "listening on 127.0.0.1:PORT" line, bounded */
    char line[256];
    size_t len = 0;
    int64_t deadline = h_now_ms() + 5000 * CHILD_WAIT_SCALE;
    while (len < sizeof line - 1 && !memchr(line, '\n', len)) {
        int left = (int)(deadline - h_now_ms());
        if (left <= 0) break;
        struct pollfd pfd = {s->out_fd, POLLIN, 0};
        if (poll(&pfd, 1, left) <= 0) continue;
        ssize_t r = read(s->out_fd, line + len, sizeof line - 1 - len);
        if (r <= 0) break;
        len += (size_t)r;
    }
    line[len] = '\0';
    const char *colon = strrchr(line, ':');
    if (strncmp(line, "listening on ", 13) != 0 || !colon || atoi(colon + 1) <= 0) {
        h_server_kill(s);
        return -1;
    }
    s->port = atoi(colon + 1);
    return 0;
}

static int reap(h_server *s, int timeout_ms)
{
    int64_t deadline = h_now_ms() + (int64_t)timeout_ms * CHILD_WAIT_SCALE;
    for (;;) {
        int st;
        pid_t r = waitpid(s->pid, &st, WNOHANG);
        if (r == s->pid) {
            untrack(s->pid);
            s->pid = 0;
            s->exit_status = st;
            if (s->out_fd >= 0) close(s->out_fd);
            s->out_fd = -1;
            /* the child is gone: so is its log, unless a failure report points at it */
            if (s->err_path[0] && !s->keep_err) unlink(s->err_path);
            return 1;
        }
        if (h_now_ms() >= deadline) return 0;
        h_sleep_ms(2);
    }
}

/* ---- diagnosing a child that does not exit ---- */

/* Copies the lines of /proc/PID/<file> that start with one of the prefixes (all when NULL) to
 * stderr, each indented. */
static void dump_proc_lines(const char *path, const char *const *prefixes)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "    (%s: %s)\n", path, strerror(errno));
        return;
    }
    char line[512];
    while (fgets(line, sizeof line, f)) {
        int want = !prefixes;
        for (int i = 0; prefixes && prefixes[i] && !want; i++)
            want = !strncmp(line, prefixes[i], strlen(prefixes[i]));
        if (want) fprintf(stderr, "    %s%s", line, strchr(line, '\n') ? "" : "\n");
    }
    fclose(f);
}

/* The last `max` bytes of the child's stderr (from the first line start in them). */
static void dump_stderr_tail(const h_server *s, size_t max)
{
    char *all = h_server_stderr(s);
    size_t len = strlen(all);
    const char *from = all;
    if (len > max) {
        from = all + len - max;
        const char *nl = strchr(from, '\n');
        if (nl) from = nl + 1;
    }
    fprintf(stderr, "  stderr (%s, %zu bytes%s):\n%s%s", s->err_path, len,
            len > max ? ", tail" : "", from, len && all[len - 1] != '\n' ? "\n" : "");
    free(all);
}

/* Every thread of process pid: name, state, signals, tracer, wait channel and kernel stack; then
 * the user-space stacks from gdb when there is one (bounded: a wedged ptrace must not wedge us;
 * a process already traced, e.g. by LeakSanitizer's tracer, refuses gdb). */
static void dump_process(pid_t pid)
{
    char path[400];
    static const char *const status_keys[] = {
        "Name:",   "State:",  "PPid:",   "TracerPid:", "Threads:", "SigQ:",
        "SigPnd:", "ShdPnd:", "SigBlk:", "SigIgn:",    "SigCgt:",  NULL};
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    fprintf(stderr, "  %s:\n", path);
    dump_proc_lines(path, status_keys);
    static const char *const task_keys[] = {
        "Name:", "State:", "TracerPid:", "SigPnd:", "SigBlk:", NULL};
    char tdir[64];
    snprintf(tdir, sizeof tdir, "/proc/%d/task", (int)pid);
    DIR *d = opendir(tdir);
    while (d) {
        struct dirent *e = readdir(d);
        if (!e) break;
        if (e->d_name[0] == '.') continue;
        fprintf(stderr, "  thread %s:\n", e->d_name);
        snprintf(path, sizeof path, "%s/%s/status", tdir, e->d_name);
        dump_proc_lines(path, task_keys);
        snprintf(path, sizeof path, "%s/%s/wchan", tdir, e->d_name);
        FILE *w = fopen(path, "r");
        char wc[128] = "?";
        if (w) {
            size_t n = fread(wc, 1, sizeof wc - 1, w);
            wc[n] = '\0';
            fclose(w);
        }
        fprintf(stderr, "    wchan: %s\n    kernel stack:\n", wc);
        snprintf(path, sizeof path, "%s/%s/stack", tdir, e->d_name);
        dump_proc_lines(path, NULL);
    }
    if (d) closedir(d);
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "command -v gdb >/dev/null && timeout -s KILL 60 gdb -p %d -batch -nx -q "
             "-ex 'set pagination off' -ex 'thread apply all bt' </dev/null 2>&1 | "
             "grep -v '^\\[New LWP\\|^warning: \\|^Download' 1>&2",
             (int)pid);
    fflush(stderr);
    if (system(cmd) != 0) fprintf(stderr, "  (no gdb stacks)\n");
}

void h_child_diagnose(h_server *s, const char *why)
{
    if (s->pid <= 0) return;
    pid_t pid = s->pid;
    s->keep_err = 1; /* the report below names the file: keep it after the reap */
    fprintf(stderr, "==== child %d: %s ====\n", (int)pid, why);
    dump_stderr_tail(s, 4096);
    dump_process(pid);
    /* the child's own children, e.g. the tracer an ASan build's LeakSanitizer clones at exit */
    char path[64], kids[512] = "";
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(kids, 1, sizeof kids - 1, f);
        kids[n] = '\0';
        fclose(f);
    }
    for (char *tok = strtok(kids, " \n"); tok; tok = strtok(NULL, " \n")) {
        fprintf(stderr, "  -- its child %s:\n", tok);
        dump_process((pid_t)atoi(tok));
    }
    fprintf(stderr, "==== end of child %d ====\n", (int)pid);
    fflush(stderr);
}

static char proc_state(pid_t pid);

/* Only a stopped child gets SIGCONT (harness.h says why): the server of test_discovery_dir that
 * got SIGTERM mid-call was exiting, in LeakSanitizer's check, when the teardown's stop came, and
 * hung there in one CI run in three. The state checked is group-stop 'T'; LSan's ptrace stop
 * shows as 't' and must not be resumed. */
void h_server_resume(h_server *s)
{
    if (s->pid > 0 && proc_state(s->pid) == 'T') h_server_signal(s, SIGCONT);
}

int h_server_stop(h_server *s, int timeout_ms)
{
    if (s->pid <= 0) return -1;
    h_server_resume(s);
    kill(s->pid, SIGTERM);
    if (!reap(s, timeout_ms)) {
        char why[96];
        snprintf(why, sizeof why, "not exited %d ms after SIGTERM; SIGKILL follows", timeout_ms);
        h_child_diagnose(s, why);
        h_server_kill(s);
        return -1;
    }
    if (WIFEXITED(s->exit_status)) return WEXITSTATUS(s->exit_status);
    return 128 + WTERMSIG(s->exit_status);
}

void h_server_kill(h_server *s)
{
    if (s->pid <= 0) return;
    kill(s->pid, SIGKILL);
    reap(s, 10000);
}

/* The state letter of /proc/PID/stat ('T' when stopped), or 0. */
static char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' ? rp[2] : 0;
}

void h_server_signal(h_server *s, int sig)
{
    if (s->pid <= 0) return;
    kill(s->pid, sig);
    /* kill() returns before the child is stopped or resumed: wait (bounded) until it is */
    int64_t deadline = h_now_ms() + 2000;
    if (sig == SIGSTOP)
        while (proc_state(s->pid) != 'T' && h_now_ms() < deadline)
            h_sleep_ms(1);
    else if (sig == SIGCONT)
        while (proc_state(s->pid) == 'T' && h_now_ms() < deadline)
            h_sleep_ms(1);
}

int h_server_alive(h_server *s)
{
    if (s->pid <= 0) return 0;
    return !reap(s, 0);
}

char *h_server_stderr(const h_server *s)
{
    FILE *f = fopen(s->err_path, "r");
    if (!f) return strdup("");
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += r;
        if (cap - len < 2) buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    fclose(f);
    return buf;
}

int h_server_stderr_count(const h_server *s, const char *needle)
{
    char *all = h_server_stderr(s);
    int n = 0;
    for (char *line = all, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        if (strstr(line, needle)) n++;
    }
    free(all);
    return n;
}

void h_server_url(const h_server *s, char *buf, size_t len)
{
    snprintf(buf, len, "127.0.0.1:%d", s->port);
}

static char *read_all_fd(int fd)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    ssize_t r;
    lseek(fd, 0, SEEK_SET);
    while ((r = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)r;
        if (cap - len < 2) buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    return buf;
}

ftrpc_client *h_client_of(const h_server *s, int timeout_ms)
{
    char url[64];
    h_server_url(s, url, sizeof url);
    ftrpc_client *c = NULL;
    if (ftrpc_client_new(url, &(ftrpc_client_options){.timeout_ms = timeout_ms}, &c) != 0)
        return NULL;
    return c;
}

int h_echo_async(ftrpc_client *client, int n, ftrpc_call_cb cb, void *arg)
{
    for (int i = 0; i < n; i++) {
        int rc = ftrpc_call_async(client, "example.EchoService", "Echo", NULL, NULL, NULL, cb, arg,
                                  NULL);
        if (rc != 0) return rc;
    }
    return 0;
}

int h_cli_run(const char *const *args, int timeout_ms, char **out, char **err)
{
    static atomic_int seq;
    char opath[600], epath[sizeof((h_server *)0)->err_path];
    int k = atomic_fetch_add(&seq, 1);
    snprintf(opath, sizeof opath, "%s/cli-%d-%d.stdout", scratch_dir(), (int)getpid(), k);
    snprintf(epath, sizeof epath, "%s/cli-%d-%d.stderr", scratch_dir(), (int)getpid(), k);
    int ofd = open(opath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int efd = open(epath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    char *argv[64];
    int n = 0;
    argv[n++] = (char *)cli_path();
    for (int i = 0; args[i] && n < 63; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    pid_t pid = spawn(cli_path(), argv, ofd, efd);
    int rc = -1;
    if (pid > 0) {
        track(pid);
        h_server tmp = {.pid = pid, .out_fd = -1};
        snprintf(tmp.err_path, sizeof tmp.err_path, "%s", epath);
        if (reap(&tmp, timeout_ms)) {
            rc = WIFEXITED(tmp.exit_status) ? WEXITSTATUS(tmp.exit_status) : -1;
        } else {
            char why[96];
            snprintf(why, sizeof why, "`ftrpc %s` not done after %d ms; SIGKILL follows",
                     args[0] ? args[0] : "", timeout_ms);
            h_child_diagnose(&tmp, why);
            h_server_kill(&tmp);
        }
    }
    if (out) *out = read_all_fd(ofd);
    if (err) *err = read_all_fd(efd);
    close(ofd);
    close(efd);
    unlink(opath);
    unlink(epath);
    return rc;
}

/* ---- TLS material ---- */

/* Runs one openssl command line in f->dir; 0 when it succeeded. */
static int openssl_run(const h_tls_files *f, const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && openssl %s >openssl.log 2>&1 || { cat openssl.log; exit 1; }", f->dir,
             args);
    int rc = system(cmd);
    if (rc != 0) fprintf(stderr, "h_tls_make: openssl %s failed\n", args);
    return rc == 0 ? 0 : -1;
}

/* A key and a certificate signed by ca.crt, with the extensions in `ext`. */
static int signed_cert(const h_tls_files *f, const char *name, const char *cn, const char *ext)
{
    char path[700], args[1024];
    snprintf(path, sizeof path, "%s/%s.ext", f->dir, name);
    FILE *fp = fopen(path, "w");
    if (!fp) return -1;
    fprintf(fp, "%s\n", ext);
    fclose(fp);
    snprintf(args, sizeof args,
             "req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=%s "
             "-keyout %s.key -out %s.csr",
             cn, name, name);
    if (openssl_run(f, args) != 0) return -1;
    snprintf(
        args, sizeof args,
        "x509 -req -in %s.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile %s.ext "
        "-out %s.crt",
        name, name, name);
    return openssl_run(f, args);
}

int h_tls_make(h_tls_files *f)
{
    static atomic_int seq;
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "%s/tls-%d-%d", scratch_dir(), (int)getpid(),
             atomic_fetch_add(&seq, 1));
    mkdir(f->dir, 0700);
    static const char CA[] = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                             "-days 2 -subj /CN=%s -keyout %s.key -out %s.crt";
    char args[512];
    snprintf(args, sizeof args, CA, "ftrpc-test-ca", "ca", "ca");
    if (openssl_run(f, args) != 0) return -1;
    snprintf(args, sizeof args, CA, "ftrpc-wrong-ca", "wrong-ca", "wrong-ca");
    if (openssl_run(f, args) != 0 ||
        signed_cert(f, "server", "localhost",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth") !=
            0 ||
        signed_cert(f, "client", "test-client", "extendedKeyUsage=clientAuth") != 0 ||
        signed_cert(f, "other", "other.example",
                    "subjectAltName=DNS:other.example\nextendedKeyUsage=serverAuth") != 0)
        return -1;
    snprintf(f->ca, sizeof f->ca, "%s/ca.crt", f->dir);
    snprintf(f->wrong_ca, sizeof f->wrong_ca, "%s/wrong-ca.crt", f->dir);
    snprintf(f->server_cert, sizeof f->server_cert, "%s/server.crt", f->dir);
    snprintf(f->server_key, sizeof f->server_key, "%s/server.key", f->dir);
    snprintf(f->client_cert, sizeof f->client_cert, "%s/client.crt", f->dir);
    snprintf(f->client_key, sizeof f->client_key, "%s/client.key", f->dir);
    snprintf(f->other_cert, sizeof f->other_cert, "%s/other.crt", f->dir);
    snprintf(f->other_key, sizeof f->other_key, "%s/other.key", f->dir);
    return 0;
}

void h_tls_remove(const h_tls_files *f)
{
    char cmd[600];
    if (!f->dir[0]) return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0) fprintf(stderr, "h_tls_remove: could not remove %s\n", f->dir);
}

/* ---- raw TCP ---- */

int h_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &al) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

int h_refusing_port(int *fd)
{
    *fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (*fd >= 0 && bind(*fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(*fd, (struct sockaddr *)&a, &al) == 0)
        return ntohs(a.sin_port);
    if (*fd >= 0) close(*fd);
    *fd = -1;
    return -1;
}

int h_raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int h_raw_send(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int h_raw_read_exact(int fd, void *buf, size_t len, int timeout_ms)
{
    uint8_t *p = buf;
    int64_t deadline = h_now_ms() + timeout_ms;
    while (len > 0) {
        int left = (int)(deadline - h_now_ms());
        if (left <= 0) return -1;
        struct pollfd pfd = {fd, POLLIN, 0};
        int pr = poll(&pfd, 1, left);
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) return -1;
        ssize_t r = recv(fd, p, len, 0);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (r <= 0) return 0;
        p += r;
        len -= (size_t)r;
    }
    return 1;
}

int h_raw_wait_closed(int fd, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    char junk[4096];
    for (;;) {
        int left = (int)(deadline - h_now_ms());
        if (left <= 0) return 0;
        struct pollfd pfd = {fd, POLLIN, 0};
        int pr = poll(&pfd, 1, left);
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) return 0;
        ssize_t r = recv(fd, junk, sizeof junk, 0);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (r <= 0) return 1;
    }
}

int h_raw_read_response(int fd, int timeout_ms, h_response *out)
{
    uint8_t hdr[12];
    int rc = h_raw_read_exact(fd, hdr, sizeof hdr, timeout_ms);
    if (rc != 1) return rc;
    if (memcmp(hdr, "PRPC", 4) != 0) return -1;
    uint32_t body =
        ((uint32_t)hdr[4] << 24) | ((uint32_t)hdr[5] << 16) | ((uint32_t)hdr[6] << 8) | hdr[7];
    if (body > (1u << 26)) return -1;
    uint8_t *buf = malloc(12 + (size_t)body);
    memcpy(buf, hdr, 12);
    rc = h_raw_read_exact(fd, buf + 12, body, timeout_ms);
    if (rc != 1) {
        free(buf);
        return rc;
    }
    ft_iobuf in;
    ft_iobuf_init(&in);
    ft_iobuf_append(&in, buf, 12 + (size_t)body);
    free(buf);
    ft_rpc_frame f;
    ft_rpc_frame_init(&f);
    const char *reason = NULL;
    ft_parse_status st = ft_baidu_std_parse(&in, 1u << 26, &f, &reason);
    rc = -1;
    if (st == FT_PARSE_OK && !f.is_request) {
        out->correlation_id = f.correlation_id;
        out->error_code = f.error_code;
        snprintf(out->error_text, sizeof out->error_text, "%s", f.error_text ? f.error_text : "");
        out->payload_len = ft_iobuf_size(&f.payload);
        out->retry_after_ms = f.retry_after_ms;
        rc = 1;
    }
    ft_rpc_frame_fini(&f);
    ft_iobuf_fini(&in);
    return rc;
}

/* ---- frames ---- */

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static size_t put_bytes(uint8_t *p, uint32_t field, const void *data, size_t len)
{
    size_t n = put_varint(p, (uint64_t)field << 3 | 2);
    n += put_varint(p + n, len);
    memcpy(p + n, data, len);
    return n + len;
}

size_t h_meta_request(uint8_t *out, size_t cap, const char *service, const char *method,
                      int64_t correlation_id, int32_t attachment_size)
{
    uint8_t req[1024];
    size_t rl = put_bytes(req, 1, service, strlen(service));
    rl += put_bytes(req + rl, 2, method, strlen(method));
    if (cap < rl + 64) return 0;
    size_t n = put_bytes(out, 1, req, rl);
    n += put_varint(out + n, 4 << 3 | 0);
    n += put_varint(out + n, (uint64_t)correlation_id);
    if (attachment_size >= 0) {
        n += put_varint(out + n, 5 << 3 | 0);
        n += put_varint(out + n, (uint64_t)(uint32_t)attachment_size);
    }
    return n;
}

void h_header(uint8_t out[12], const char *magic, uint32_t body_size, uint32_t meta_size)
{
    memcpy(out, magic, 4);
    uint32_t b = htonl(body_size), m = htonl(meta_size);
    memcpy(out + 4, &b, 4);
    memcpy(out + 8, &m, 4);
}

size_t h_request_frame(uint8_t *out, size_t cap, const char *service, const char *method,
                       int64_t correlation_id, const void *payload, size_t payload_len)
{
    uint8_t meta[1200];
    size_t ml = h_meta_request(meta, sizeof meta, service, method, correlation_id, -1);
    if (cap < 12 + ml + payload_len) return 0;
    h_header(out, "PRPC", (uint32_t)(ml + payload_len), (uint32_t)ml);
    memcpy(out + 12, meta, ml);
    if (payload_len) memcpy(out + 12 + ml, payload, payload_len);
    return 12 + ml + payload_len;
}

/* ---- misc ---- */

static uint8_t pattern_byte(size_t i, unsigned seed)
{
    uint32_t x = (uint32_t)i * 2654435761u ^ seed * 40503u;
    return (uint8_t)(x >> 13 ^ x);
}

ftrpc_buf *h_pattern_buf(size_t len, unsigned seed)
{
    ftrpc_buf *b = ftrpc_buf_new();
    uint8_t chunk[4096];
    for (size_t off = 0; off < len;) {
        size_t n = len - off < sizeof chunk ? len - off : sizeof chunk;
        for (size_t i = 0; i < n; i++)
            chunk[i] = pattern_byte(off + i, seed);
        ftrpc_buf_append(b, chunk, n);
        off += n;
    }
    return b;
}

int h_pattern_check(const ftrpc_buf *buf, size_t len, unsigned seed)
{
    if (!buf || ftrpc_buf_size(buf) != len) return 0;
    size_t off = 0;
    for (size_t s = 0; s < ftrpc_buf_segment_count(buf); s++) {
        size_t sl;
        const uint8_t *p = ftrpc_buf_segment(buf, s, &sl);
        for (size_t i = 0; i < sl; i++)
            if (p[i] != pattern_byte(off + i, seed)) return 0;
        off += sl;
    }
    return off == len;
}

/* ---- steady load ---- */

static void sleep_us(int us)
{
    struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static void load_on_done(ftrpc_result *r, void *arg)
{
    h_call_rec *rec = arg;
    h_load *l = rec->load;
    if (atomic_fetch_add(&rec->completions, 1) != 0) {
        atomic_fetch_add(&l->duplicates, 1);
        return;
    }
    rec->end_us = h_now_us();
    rec->latency_us = r->latency_us;
    rec->attempts = r->attempts;
    rec->kind = (int)r->kind;
    rec->code = r->code;
    rec->endpoint = -1;
    for (int i = 0; i < l->nendpoints; i++)
        if (r->endpoint[0] && strcmp(r->endpoint, l->endpoints[i]) == 0) rec->endpoint = i;
    if (r->kind == FTRPC_RESULT_OK) {
        if (rec->endpoint >= 0) atomic_fetch_add(&l->answered[rec->endpoint], 1);
    } else {
        int zero = 0;
        atomic_compare_exchange_strong(&l->first_fail_code, &zero, r->code);
        atomic_fetch_add(&l->failed, 1);
    }
    atomic_fetch_sub(&l->inflight, 1);
    atomic_fetch_add(&l->done, 1); /* last: the fields above are visible to whoever sees it */
}

static void *load_main(void *arg)
{
    h_load *l = arg;
    while (!atomic_load(&l->stop)) {
        int id = atomic_load(&l->issued);
        if (id >= l->max_calls) break;
        if (atomic_load(&l->inflight) >= l->window) {
            sleep_us(100);
            continue;
        }
        h_call_rec *rec = &l->recs[id];
        rec->load = l;
        rec->start_us = h_now_us();
        atomic_fetch_add(&l->inflight, 1);
        atomic_store(&l->issued, id + 1);
        int rc = ftrpc_call_async(l->client, "example.EchoService", "Echo", l->request, NULL,
                                  l->call_opts, load_on_done, rec, NULL);
        if (rc != 0) { /* refused at once: the callback never runs, so count it here */
            ftrpc_result r = {.kind = FTRPC_RESULT_RPC_ERROR, .code = rc};
            load_on_done(&r, rec);
        }
        if (l->pace_us > 0) sleep_us(l->pace_us);
    }
    return NULL;
}

int h_load_start(h_load *l)
{
    if (l->window <= 0) l->window = 8;
    if (l->max_calls <= 0) l->max_calls = 100000;
    l->recs = calloc((size_t)l->max_calls, sizeof *l->recs);
    l->request = h_pattern_buf(64, 7);
    if (!l->recs || !l->request) return -1;
    return pthread_create(&l->thread, NULL, load_main, l) == 0 ? 0 : -1;
}

int h_load_stop(h_load *l, int timeout_ms)
{
    atomic_store(&l->stop, 1);
    pthread_join(l->thread, NULL);
    int64_t deadline = h_now_ms() + timeout_ms;
    while (atomic_load(&l->done) < atomic_load(&l->issued)) {
        if (h_now_ms() >= deadline) return 0;
        sleep_us(1000);
    }
    return 1;
}

void h_load_fini(h_load *l)
{
    free(l->recs);
    l->recs = NULL;
    ftrpc_buf_free(l->request);
    l->request = NULL;
}

int h_load_wait_done(h_load *l, int target, int timeout_ms)
{
    return h_wait_atomic_ge(&l->done, target, timeout_ms);
}

int h_load_wait_answered(h_load *l, int ep, int since, int count, int timeout_ms)
{
    return h_wait_atomic_ge(&l->answered[ep], since + count, timeout_ms);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int64_t h_quantile(int64_t *v, int n, double q)
{
    if (n <= 0) return -1;
    qsort(v, (size_t)n, sizeof *v, cmp_i64);
    return v[(int)(q * (double)(n - 1) + 0.5)];
}

int64_t h_load_latency_quantile(const h_load *l, int64_t t0_us, int64_t t1_us, double q, int *n_out)
{
    int issued = atomic_load(&l->issued);
    int64_t *v = malloc(((size_t)issued + 1) * sizeof *v);
    int n = 0;
    for (int i = 0; v && i < issued; i++) {
        const h_call_rec *r = &l->recs[i];
        if (atomic_load(&r->completions) > 0 && r->start_us >= t0_us && r->start_us < t1_us)
            v[n++] = r->latency_us;
    }
    if (n_out) *n_out = n;
    int64_t out = h_quantile(v, n, q);
    free(v);
    return out;
}

void h_load_tally_get(const h_load *l, int64_t t0_us, int64_t t1_us, h_load_tally *out)
{
    memset(out, 0, sizeof *out);
    int issued = atomic_load(&l->issued);
    for (int i = 0; i < issued; i++) {
        const h_call_rec *r = &l->recs[i];
        if (r->start_us < t0_us || r->start_us >= t1_us) continue;
        out->calls++;
        int n = atomic_load(&((h_call_rec *)r)->completions);
        if (n == 0) {
            out->lost++;
            continue;
        }
        if (n > 1) out->duplicates++;
        out->attempts += r->attempts;
        if (r->attempts > out->max_attempts) out->max_attempts = r->attempts;
        if (r->kind == FTRPC_RESULT_OK)
            out->ok++;
        else
            out->errors++;
    }
}

#define H_ANSWERED_LINE "ftrpc echo-server: answered "

static int printed_answered(void *arg)
{
    return h_server_stderr_count(arg, H_ANSWERED_LINE) > 0;
}

long h_server_stop_answered(h_server *s, int timeout_ms)
{
    h_server_resume(s); /* only if frozen: see harness.h */
    kill(s->pid, SIGTERM);
    long n = -1;
    if (h_wait_until(printed_answered, s, timeout_ms)) {
        char *err = h_server_stderr(s);
        const char *p = err ? strstr(err, H_ANSWERED_LINE) : NULL;
        if (p) n = atol(p + strlen(H_ANSWERED_LINE));
        free(err);
    }
    h_server_stop(s, timeout_ms);
    return n;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int h_scratch_mkdtemp(const char *name, char *out, size_t len)
{
    if ((size_t)snprintf(out, len, "%s/%s-XXXXXX", scratch_dir(), name) >= len) return -1;
    return mkdtemp(out) ? 0 : -1;
}

void h_rmtree(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int h_curl(const char *args, char **out)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "curl -sS --max-time 10 %s", args);
    return h_shell(cmd, out);
}

int h_shell(const char *line, char **out)
{
    char cmd[2560];
    snprintf(cmd, sizeof cmd, "%s 2>&1", line);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t cap = 65536, len = 0;
    char *buf = calloc(1, cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - 1 - len, p)) > 0)
        len += n;
    int st = pclose(p);
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

long h_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

int h_maps_file(pid_t pid, const char *name)
{
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, name) != NULL;
    fclose(f);
    return found;
}

int h_wait_all_closed(int *fds, int n, int timeout_ms)
{
    struct pollfd *p = calloc((size_t)n, sizeof *p);
    if (!p) return 0;
    int closed = 0;
    int64_t deadline = h_now_ms() + timeout_ms;
    while (closed < n && h_now_ms() < deadline) {
        int m = 0;
        for (int i = 0; i < n; i++) {
            if (fds[i] < 0) continue;
            p[m].fd = fds[i];
            p[m].events = POLLIN;
            p[m].revents = 0;
            m++;
        }
        if (poll(p, (nfds_t)m, 50) <= 0) continue;
        for (int k = 0; k < m; k++) {
            if (!p[k].revents) continue;
            char b[256];
            ssize_t r = recv(p[k].fd, b, sizeof b, MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                for (int i = 0; i < n; i++)
                    if (fds[i] == p[k].fd) fds[i] = -1;
                close(p[k].fd);
                closed++;
            }
        }
    }
    free(p);
    return closed;
}

long h_raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    return rl.rlim_cur == RLIM_INFINITY ? 1L << 20 : (long)rl.rlim_cur;
}

int h_http(int port, const char *method_path, const char *token, char **body)
{
    char args[512], auth[128] = "";
    if (token) snprintf(auth, sizeof auth, "-H 'Authorization: Bearer %s'", token);
    int post = strncmp(method_path, "POST ", 5) == 0;
    snprintf(args, sizeof args, "%s %s -w '\\n%%{http_code}' 'http://127.0.0.1:%d%s'", auth,
             post ? "--data-binary ''" : "", port, method_path + (post ? 5 : 4));
    char *out = NULL;
    int status = 0;
    if (h_curl(args, &out) == 0 && out) {
        char *nl = strrchr(out, '\n');
        if (nl) {
            status = atoi(nl + 1);
            *nl = '\0';
        }
    }
    if (body)
        *body = out;
    else
        free(out);
    return status;
}

h_tls_files h_tls;

int h_tls_group_setup(void **state)
{
    (void)state;
    return h_tls_make(&h_tls);
}

int h_tls_group_teardown(void **state)
{
    (void)state;
    h_tls_remove(&h_tls);
    return 0;
}
