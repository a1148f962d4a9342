/* Integration test harness: echo-server child processes, raw TCP clients, hand-built baidu_std
 * frames and bounded waits.
 *
 * Children are started from FTRPC_CLI with PR_SET_PDEATHSIG, tracked in a table and killed at exit
 * (and by h_server_kill/h_server_stop in teardown), so none outlives its test. Every wait is
 * bounded by a deadline and polls with short sleeps: nothing here sleeps for a fixed long time.
 */
#ifndef FTRPC_TEST_HARNESS_H
#define FTRPC_TEST_HARNESS_H

#include <stdatomic.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ftrpc/ftrpc.h"

/* 1 in a ThreadSanitizer build (gcc defines __SANITIZE_THREAD__, clang 14 only has
 * __has_feature): tests scale their time and memory bounds by it, as they do for
 * __SANITIZE_ADDRESS__. */
#if defined(__SANITIZE_THREAD__)
#define H_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define H_UNDER_TSAN 1
#endif
#endif
#ifndef H_UNDER_TSAN
#define H_UNDER_TSAN 0
#endif
/* 1 when the tests and their ftrpc children run under valgrind memcheck (make valgrind: 20-50
 * times slower; tests/CMakeLists.txt defines FTRPC_UNDER_VALGRIND). */
#ifdef FTRPC_UNDER_VALGRIND
#define H_UNDER_VALGRIND 1
#else
#define H_UNDER_VALGRIND 0
#endif
/* The factor a test multiplies a time bound by under memcheck (10, as the harness's own waits for
 * a child's first line and exit); 1 otherwise, so plain, ASan and TSan bounds are untouched. */
#define H_VG (H_UNDER_VALGRIND ? 10 : 1)

/* ---- time and waiting ---- */

int64_t h_now_ms(void);
/* A short sleep, for pacing; waits on events use h_wait_until instead. */
void h_sleep_ms(int ms);
int64_t h_now_us(void);
/* Polls cond(arg) every ~1 ms until it returns non-zero (1 is returned) or timeout_ms passes (0).
 */
int h_wait_until(int (*cond)(void *arg), void *arg, int timeout_ms);
/* Waits until the atomic *counter reaches at least target, bounded. 1 on success. */
int h_wait_atomic_ge(_Atomic int *counter, int target, int timeout_ms);

/* ---- echo-server child ---- */

typedef struct h_server {
    pid_t pid;          /* 0 once reaped */
    int port;           /* the port the child printed */
    int out_fd;         /* read end of the child's stdout */
    char err_path[512]; /* the child's stderr in FTRPC_SCRATCH, removed once it is reaped */
    int keep_err;       /* 1: a failure report named err_path; the reap leaves it in place */
    int exit_status;    /* after h_server_stop/kill: the raw wait status */
} h_server;

/* Starts `ftrpc echo-server --listen 127.0.0.1:0 ARGS...` (args NULL-terminated, may be NULL) and
 * waits (bounded, 5 s) for its "listening on" line. 0 on success. */
int h_server_start(h_server *s, const char *const *args);
/* Same, on a given port of 127.0.0.1 (to restart a server where a client expects it). */
int h_server_start_on(h_server *s, int port, const char *const *args);
/* The same on a given listen address ("HOST:PORT", port 0: any), e.g. to restart a killed server
 * on its old port, or to listen on another loopback address. */
int h_server_start_at(h_server *s, const char *listen, const char *const *args);
/* Children started from now on (servers, CLI runs, spinners) run as this uid, with it as their
 * gid and no supplementary groups; 0: as this process (the default). For tests that tell hosts
 * apart by uid (tests/netfault/netfault_rig.h); needs root. */
void h_children_run_as(unsigned uid);
/* SIGCONT when the child is stopped (SIGSTOP), nothing otherwise: a child that is not stopped
 * may be exiting, and in an ASan build LeakSanitizer suspends the exiting child's threads with
 * PTRACE_ATTACH, whose SIGSTOP a SIGCONT would discard; its tracer then waits for ever and the
 * child never exits. A stopped child cannot be exiting, so checking first leaves no race. */
void h_server_resume(h_server *s);
/* Resumes the child if stopped (h_server_resume), sends SIGTERM, then waits up to timeout_ms for
 * the exit (SIGKILL after that). Returns the exit code (0..255), 128+signal when killed by a
 * signal, or -1 when SIGKILL was needed. */
int h_server_stop(h_server *s, int timeout_ms);
/* For a child that did not do what it should (typically: did not exit in time), before it is
 * killed: prints to stderr the tail of its stderr (whose file is then kept after the reap),
 * /proc's view of it (state, tracer, signals pending, blocked and caught; per thread its wait
 * channel and kernel stack), every thread's stack from gdb when gdb exists, and the same for the
 * child's own children (e.g. the tracer LeakSanitizer clones at exit in an ASan build). */
void h_child_diagnose(h_server *s, const char *why);
/* SIGKILL and reap. Does nothing when already reaped. */
void h_server_kill(h_server *s);
/* Sends sig without reaping; for SIGSTOP/SIGCONT, returns once the child is stopped/running. */
void h_server_signal(h_server *s, int sig);
/* 1 while the child has not exited. */
int h_server_alive(h_server *s);
/* Starts a child that does nothing but burn CPU (`/bin/sh -c 'while :; do :; done'`: no sanitizer,
 * no valgrind), tracked like a server: it dies with the test, and h_server_kill stops it. For tests
 * that load the machine on purpose. 0 on success. */
int h_spinner_start(h_server *s);
/* Number of lines of the child's stderr containing needle. */
int h_server_stderr_count(const h_server *s, const char *needle);
/* The whole captured stderr (malloc'ed, NUL-terminated; caller frees), for failure messages. */
char *h_server_stderr(const h_server *s);
/* "127.0.0.1:PORT" into buf. */
void h_server_url(const h_server *s, char *buf, size_t len);

/* A client of the child's address with the given call timeout (ms). NULL on failure. */
ftrpc_client *h_client_of(const h_server *s, int timeout_ms);
/* Starts n async example.EchoService/Echo calls with empty payloads, each with cb and arg.
 * 0 when every one started. */
int h_echo_async(ftrpc_client *client, int n, ftrpc_call_cb cb, void *arg);

/* Runs FTRPC_CLI with args (NULL-terminated) to completion (bounded by timeout_ms), capturing
 * stdout and stderr into malloc'ed strings (may be NULL when not wanted). Returns the exit code,
 * or -1 on timeout / failure to run. */
int h_cli_run(const char *const *args, int timeout_ms, char **out, char **err);

/* Starts `ftrpc ARGS...` (args NULL-terminated) as a tracked child with its stdout on s->out_fd
 * and its stderr captured like a server's; does not wait for anything (port stays 0). Stop it
 * with h_server_stop/h_server_kill. 0 on success. */
int h_child_start(h_server *s, const char *const *args);
/* Starts another program than the CLI (path, e.g. a built example) with args, tracked as a server,
 * and waits (bounded) for its first line, "listening on HOST:PORT", whose port goes to s->port.
 * 0 on success. */
int h_program_start(h_server *s, const char *path, const char *const *args);
/* The gRPC C++ peer program (tests/integration/grpc_cpp_peer.cc, built when grpc++ is found), or
 * NULL after printing to stderr what to install when it was not built. */
const char *h_grpc_cpp_peer(void);
/* Reads the child's stdout, appending to buf (NUL-terminated, *len bytes so far, cap bytes in
 * all), until buf holds needle or timeout_ms passes. 1 found, 0 timed out or EOF. */
int h_child_wait_output(h_server *s, char *buf, size_t cap, size_t *len, const char *needle,
                        int timeout_ms);

/* ---- TLS material, made at run time with the openssl command ---- */

/* Paths (PEM) in a fresh folder of FTRPC_SCRATCH. Every certificate is EC P-256, valid 2 days. */
typedef struct h_tls_files {
    char dir[512];
    char ca[640];                           /* the test CA (self-signed) */
    char server_cert[640], server_key[640]; /* by ca: SAN IP:127.0.0.1, DNS:localhost */
    char client_cert[640], client_key[640]; /* by ca: CN=test-client, clientAuth */
    char wrong_ca[640];                     /* another CA that signed nothing here */
    char other_cert[640], other_key[640];   /* by ca, but for DNS:other.example only */
} h_tls_files;
/* Generates them all (about 0.1 s). 0, or -1 when openssl failed (its output is printed). */
int h_tls_make(h_tls_files *f);
/* Runs `curl -sS --max-time 10 ARGS` (a shell line) and returns its exit code; *out (may be
 * NULL) gets its stdout and stderr, the caller's to free. */
int h_curl(const char *args, char **out);
/* Runs a shell line (bound its time yourself, e.g. with `timeout 60`) and returns its exit code;
 * *out (may be NULL) gets its stdout and stderr, the caller's to free. */
int h_shell(const char *line, char **out);
/* One HTTP request to 127.0.0.1:port with curl: method_path is "GET /path?q" or "POST /path?q"
 * (an empty body), token NULL sends no Authorization, else "Bearer TOKEN". Returns the status
 * code (0 when curl failed); *body (may be NULL) gets the body, the caller's to free. */
int h_http(int port, const char *method_path, const char *token, char **body);
/* Removes the folder. */
void h_tls_remove(const h_tls_files *f);
/* A cmocka group's setup and teardown that make and remove h_tls (the group's TLS files). */
extern h_tls_files h_tls;
int h_tls_group_setup(void **state);
int h_tls_group_teardown(void **state);

/* ---- raw TCP ---- */

/* Connects to 127.0.0.1:port (blocking, bounded to 2 s). fd or -1. */
int h_raw_connect(int port);
/* A loopback TCP port that was free a moment ago (bound, read, closed), or -1. */
int h_free_port(void);
/* A loopback TCP port that refuses connections: bound but never listening, for as long as *fd
 * (the bound socket, the caller's to close) stays open, so no other process can take it
 * meanwhile. The port, or -1. */
int h_refusing_port(int *fd);
/* Sends all bytes. 0, or -1 when the peer is gone. */
int h_raw_send(int fd, const void *data, size_t len);
/* Reads exactly len bytes within timeout_ms. 1 on success, 0 on EOF/reset, -1 on timeout. */
int h_raw_read_exact(int fd, void *buf, size_t len, int timeout_ms);
/* Waits for the peer to close (EOF or reset), discarding what it sends. 1 closed, 0 timed out. */
int h_raw_wait_closed(int fd, int timeout_ms);
/* Waits until every fd in fds sees EOF or a reset (bounded). Closed fds are closed and set to -1.
 * Returns how many were closed. */
int h_wait_all_closed(int *fds, int n, int timeout_ms);
/* Raises this process's soft RLIMIT_NOFILE to the hard one; returns how many descriptors it may
 * hold. Children started afterwards inherit it. */
long h_raise_fd_limit(void);
/* A process's resident set (VmRSS) in kB, or -1. */
long h_rss_kb(pid_t pid);
/* Whether the process maps a file whose path holds `name` (from /proc/PID/maps): 1 or 0; -1 if
 * unreadable. */
int h_maps_file(pid_t pid, const char *name);

/* One response frame read from a raw connection, decoded. */
typedef struct h_response {
    int64_t correlation_id;
    int32_t error_code;
    char error_text[256];
    size_t payload_len;
    int32_t retry_after_ms; /* the pushback hint (ftrpc_retry_after_ms), 0 when absent */
} h_response;
/* Reads and decodes one baidu_std response. 1 on success, 0 on close, -1 on timeout or garbage. */
int h_raw_read_response(int fd, int timeout_ms, h_response *out);

/* ---- hand-built baidu_std frames ---- */

/* Serialized RpcMeta for a request: service, method, correlation_id, and attachment_size when >= 0
 * (field 5, written even when it lies). Returns the length written into out (cap bytes). */
size_t h_meta_request(uint8_t *out, size_t cap, const char *service, const char *method,
                      int64_t correlation_id, int32_t attachment_size);
/* A 12-byte header: magic (4 chars), body_size, meta_size (big-endian). */
void h_header(uint8_t out[12], const char *magic, uint32_t body_size, uint32_t meta_size);
/* A whole, honest request frame: header + meta + payload. Returns its length. */
size_t h_request_frame(uint8_t *out, size_t cap, const char *service, const char *method,
                       int64_t correlation_id, const void *payload, size_t payload_len);

/* ---- misc ---- */

/* Makes a new folder FTRPC_SCRATCH/NAME-XXXXXX (or under /tmp), its path into out. 0 or -1. */
int h_scratch_mkdtemp(const char *name, char *out, size_t len);
/* Removes a folder and everything below it (not following links). */
void h_rmtree(const char *dir);

/* The q-quantile (0..1) of v[0..n), nearest rank; sorts v. -1 when n is 0. */
int64_t h_quantile(int64_t *v, int n, double q);

/* A buffer holding len bytes of a deterministic pattern seeded by seed. */
ftrpc_buf *h_pattern_buf(size_t len, unsigned seed);
/* 1 when buf holds exactly the pattern of h_pattern_buf(len, seed). */
int h_pattern_check(const ftrpc_buf *buf, size_t len, unsigned seed);

/* ---- steady load: async calls with a fixed number in flight ---- */

#define H_LOAD_MAX_ENDPOINTS 16

typedef struct h_load h_load;

/* One call of a load, written by its completion callback before `done` counts it. */
typedef struct h_call_rec {
    h_load *load;
    atomic_int completions; /* how many times the callback ran: must end at exactly 1 */
    int64_t start_us;       /* when it was issued (h_now_us) */
    int64_t end_us;         /* when its callback ran */
    int64_t latency_us;     /* result.latency_us */
    int attempts;           /* result.attempts */
    int kind, code;         /* result.kind, result.code */
    int endpoint;           /* index of result.endpoint in h_load.endpoints; -1: none answered */
} h_call_rec;

/* A driver thread issues ftrpc_call_async ("example.EchoService", "Echo", 64 bytes) keeping
 * `window` calls in flight, pausing pace_us after each issue, until h_load_stop or max_calls.
 * Completions are counted per call id with atomics, so a call answered twice shows up. */
struct h_load {
    /* set before h_load_start */
    ftrpc_client *client;
    const ftrpc_call_options *call_opts;         /* may be NULL */
    int window;                                  /* default 8 */
    int pace_us;                                 /* default 0 */
    int max_calls;                               /* default 100000; the driver stops there */
    const char *endpoints[H_LOAD_MAX_ENDPOINTS]; /* "ip:port", to index result.endpoint */
    int nendpoints;
    /* filled by the load */
    h_call_rec *recs;        /* [max_calls] */
    atomic_int issued, done; /* done: callbacks that ran (first time per call) */
    atomic_int failed;       /* calls that did not end OK */
    atomic_int duplicates;   /* callbacks that ran a second time for a call */
    atomic_int first_fail_code;
    atomic_int answered[H_LOAD_MAX_ENDPOINTS]; /* OK results per endpoint */
    atomic_int inflight, stop;
    pthread_t thread;
    ftrpc_buf *request;
};

/* Starts the driver thread. 0 on success. */
int h_load_start(h_load *l);
/* Stops issuing and waits (bounded) until every issued call has completed. 1 when all did. */
int h_load_stop(h_load *l, int timeout_ms);
/* Frees what h_load_start allocated (after h_load_stop, and after ftrpc_client_free so that no
 * callback can run any more). */
void h_load_fini(h_load *l);
/* Waits until `done` reaches target (bounded). 1 on success. */
int h_load_wait_done(h_load *l, int target, int timeout_ms);
/* Waits until endpoint ep has answered `count` more calls than `since` (bounded). 1 on success. */
int h_load_wait_answered(h_load *l, int ep, int since, int count, int timeout_ms);
/* The q-quantile (0..1) of latency_us over the completed calls issued in [t0_us, t1_us);
 * *n_out (may be NULL) gets how many there were. -1 when there were none. */
int64_t h_load_latency_quantile(const h_load *l, int64_t t0_us, int64_t t1_us, double q,
                                int *n_out);

/* How the calls of a load ended, over those issued in [t0_us, t1_us) (0, INT64_MAX: all). Every
 * issued call is counted once: ok + errors + lost = calls. */
typedef struct h_load_tally {
    int calls;        /* issued in the window */
    int ok, errors;   /* completed once, with their kind */
    int lost;         /* never completed */
    int duplicates;   /* completed more than once */
    int max_attempts; /* result.attempts, the most any call took */
    long attempts;    /* result.attempts summed over completed calls */
} h_load_tally;
void h_load_tally_get(const h_load *l, int64_t t0_us, int64_t t1_us, h_load_tally *out);

/* For a server started with --stats-on-exit: resumes it if frozen, sends SIGTERM, reads the
 * "answered N" line it prints once stopped, and reaps it (all bounded by timeout_ms). N, or -1
 * when no such line came. */
long h_server_stop_answered(h_server *s, int timeout_ms);

#endif
