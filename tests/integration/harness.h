/* Integration test harness: echo-server child processes, raw TCP clients, hand-built baidu_std
 * frames and bounded waits.
 *
 * Children are started from FTRPC_CLI with PR_SET_PDEATHSIG, tracked in a table and killed at exit
 * (and by h_server_kill/h_server_stop in teardown), so none outlives its test. Every wait is
 * bounded by a deadline and polls with short sleeps: nothing here sleeps for a fixed long time.
 */
#ifndef FTRPC_TEST_HARNESS_H
#define FTRPC_TEST_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ftrpc/ftrpc.h"

/* ---- time and waiting ---- */

int64_t h_now_ms(void);
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
    char err_path[512]; /* the child's stderr, captured in FTRPC_SCRATCH */
    int exit_status;    /* after h_server_stop/kill: the raw wait status */
} h_server;

/* Starts `ftrpc echo-server --listen 127.0.0.1:0 ARGS...` (args NULL-terminated, may be NULL) and
 * waits (bounded, 5 s) for its "listening on" line. 0 on success. */
int h_server_start(h_server *s, const char *const *args);
/* SIGTERM, then waits up to timeout_ms for the exit (SIGKILL after that). Returns the exit code
 * (0..255), 128+signal when killed by a signal, or -1 when SIGKILL was needed. */
int h_server_stop(h_server *s, int timeout_ms);
/* SIGKILL and reap. Does nothing when already reaped. */
void h_server_kill(h_server *s);
/* Sends sig (SIGSTOP, SIGCONT, ...) without reaping. */
void h_server_signal(h_server *s, int sig);
/* 1 while the child has not exited. */
int h_server_alive(h_server *s);
/* Number of lines of the child's stderr containing needle. */
int h_server_stderr_count(const h_server *s, const char *needle);
/* The whole captured stderr (malloc'ed, NUL-terminated; caller frees), for failure messages. */
char *h_server_stderr(const h_server *s);
/* "127.0.0.1:PORT" into buf. */
void h_server_url(const h_server *s, char *buf, size_t len);

/* Runs FTRPC_CLI with args (NULL-terminated) to completion (bounded by timeout_ms), capturing
 * stdout and stderr into malloc'ed strings (may be NULL when not wanted). Returns the exit code,
 * or -1 on timeout / failure to run. */
int h_cli_run(const char *const *args, int timeout_ms, char **out, char **err);

/* Starts `ftrpc ARGS...` (args NULL-terminated) as a tracked child with its stdout on s->out_fd
 * and its stderr captured like a server's; does not wait for anything (port stays 0). Stop it
 * with h_server_stop/h_server_kill. 0 on success. */
int h_child_start(h_server *s, const char *const *args);
/* Reads the child's stdout, appending to buf (NUL-terminated, *len bytes so far, cap bytes in
 * all), until buf holds needle or timeout_ms passes. 1 found, 0 timed out or EOF. */
int h_child_wait_output(h_server *s, char *buf, size_t cap, size_t *len, const char *needle,
                        int timeout_ms);

/* ---- raw TCP ---- */

/* Connects to 127.0.0.1:port (blocking, bounded to 2 s). fd or -1. */
int h_raw_connect(int port);
/* Sends all bytes. 0, or -1 when the peer is gone. */
int h_raw_send(int fd, const void *data, size_t len);
/* Reads exactly len bytes within timeout_ms. 1 on success, 0 on EOF/reset, -1 on timeout. */
int h_raw_read_exact(int fd, void *buf, size_t len, int timeout_ms);
/* Waits for the peer to close (EOF or reset), discarding what it sends. 1 closed, 0 timed out. */
int h_raw_wait_closed(int fd, int timeout_ms);

/* One response frame read from a raw connection, decoded. */
typedef struct h_response {
    int64_t correlation_id;
    int32_t error_code;
    char error_text[256];
    size_t payload_len;
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

/* A buffer holding len bytes of a deterministic pattern seeded by seed. */
ftrpc_buf *h_pattern_buf(size_t len, unsigned seed);
/* 1 when buf holds exactly the pattern of h_pattern_buf(len, seed). */
int h_pattern_check(const ftrpc_buf *buf, size_t len, unsigned seed);

#endif
