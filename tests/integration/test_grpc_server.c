/* gRPC on the server's port, with real gRPC peers: grpcio (tests/integration/grpc_peer.py) and gRPC
 * C++ (tests/integration/grpc_cpp_peer.cc, the same command line) call methods registered once with
 * ftrpc_server_add_method, over cleartext HTTP/2 (prior knowledge) and over TLS with ALPN h2, on
 * the same port that serves baidu_std. Answers, statuses, the
 * deadline, cancellation, gzip, metadata and authentication as a gRPC client sees them; then a raw
 * HTTP/2 peer floods RST_STREAM, PING and SETTINGS frames and is closed with a logged reason, and
 * sees a graceful stop's GOAWAY before the answer of its call in flight. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ftrpc/ftrpc.h"
#include "harness.h"

#define TOKEN "grpc-s3cret"

static atomic_int saw_cancel;
static atomic_int slow_started;

static void reply_text(ftrpc_server_call *call, const char *text)
{
    ftrpc_buf *b = ftrpc_buf_new();
    ftrpc_buf_append(b, text, strlen(text));
    ftrpc_server_call_reply(call, b, NULL);
    ftrpc_buf_free(b);
}

static void on_echo(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    ftrpc_server_call_reply(call, ftrpc_server_call_request(call), NULL);
}

/* Fails with the code named by the request: "limit", "business5" (3005), "business42" (3042). */
static void on_fail(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    char what[32] = "";
    const ftrpc_buf *req = ftrpc_server_call_request(call);
    ftrpc_buf_copy_to(req, what, sizeof what - 1);
    if (!strcmp(what, "limit"))
        ftrpc_server_call_fail(call, FTRPC_ELIMIT, "too busy");
    else if (!strcmp(what, "business5"))
        ftrpc_server_call_fail(call, 3005, "no such thing");
    else
        ftrpc_server_call_fail(call, 3042, "business says no");
}

/* On a worker: waits (bounded) for the client to give up, and records that it saw it. */
static void on_slow(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    atomic_fetch_add(&slow_started, 1);
    for (int i = 0; i < 500 && !ftrpc_server_call_is_canceled(call); i++)
        usleep(10000);
    if (ftrpc_server_call_is_canceled(call)) atomic_fetch_add(&saw_cancel, 1);
    reply_text(call, "slow");
}

static atomic_int hold_started, hold_release;

/* On a worker: holds the call until the test releases it (10 s at most). */
static void on_hold(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    atomic_store(&hold_started, 1);
    for (int i = 0; i < 1000 && !atomic_load(&hold_release); i++)
        usleep(10000);
    reply_text(call, "held");
}

static void on_remaining(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    char text[32];
    snprintf(text, sizeof text, "%lld", (long long)ftrpc_server_call_remaining_ms(call));
    reply_text(call, text);
}

/* Answers the value of the metadata named by the request, and how many entries there were. */
static void on_meta(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    char key[64] = "", text[200];
    ftrpc_buf_copy_to(ftrpc_server_call_request(call), key, sizeof key - 1);
    const char *v = ftrpc_server_call_metadata(call, key);
    size_t n = 0;
    const char *k, *val;
    while (ftrpc_server_call_metadata_at(call, n, &k, &val))
        n++;
    snprintf(text, sizeof text, "%s/%zu", v ? v : "(none)", n);
    reply_text(call, text);
}

static ftrpc_server *start_server(const ftrpc_server_options *o)
{
    ftrpc_server *s = NULL;
    assert_int_equal(ftrpc_server_new(o, &s), 0);
    ftrpc_method_options worker = {.run_mode = FTRPC_RUN_IN_WORKER};
    assert_int_equal(ftrpc_server_add_method(s, "example.EchoService", "Echo", on_echo, NULL, NULL),
                     0);
    assert_int_equal(ftrpc_server_add_method(s, "example.EchoService", "Fail", on_fail, NULL, NULL),
                     0);
    assert_int_equal(
        ftrpc_server_add_method(s, "example.EchoService", "Slow", on_slow, NULL, &worker), 0);
    assert_int_equal(
        ftrpc_server_add_method(s, "example.EchoService", "Remaining", on_remaining, NULL, NULL),
        0);
    assert_int_equal(
        ftrpc_server_add_method(s, "example.EchoService", "Hold", on_hold, NULL, &worker), 0);
    assert_int_equal(ftrpc_server_add_method(s, "example.EchoService", "Meta", on_meta, NULL, NULL),
                     0);
    assert_int_equal(ftrpc_server_start(s, "127.0.0.1:0"), 0);
    return s;
}

/* A gRPC client program (NULL: the C++ peer, h_grpc_cpp_peer), and whether it sends client streams
 * (grpcio does; the C++ peer's cases are unary only). A test's state is the peer it runs with
 * (none: grpcio). */
typedef struct grpc_peer {
    const char *run;
    int streams;
} grpc_peer;

static const grpc_peer GRPCIO = {"/usr/bin/python3 " FTRPC_TESTS_DIR "/integration/grpc_peer.py",
                                 1};
static const grpc_peer GRPC_CPP = {NULL, 0};

/* Runs the peer's client with args and returns its stdout (the caller's). */
static char *peer(const grpc_peer *who, const char *args)
{
    const char *run = who->run ? who->run : h_grpc_cpp_peer();
    assert_non_null(run);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "timeout 60 %s client %s", run, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, len = 0;
    char *out = calloc(1, cap);
    size_t n;
    while ((n = fread(out + len, 1, cap - 1 - len, p)) > 0)
        len += n;
    int rc = pclose(p);
    if (rc != 0) print_message("%s client %s: exit %d\n%s\n", run, args, rc, out);
    assert_int_equal(rc, 0);
    return out;
}

static void expect_line(const char *out, const char *line)
{
    if (!strstr(out, line)) print_message("want \"%s\" in:\n%s\n", line, out);
    assert_non_null(strstr(out, line));
}

/* One method table, three protocols: a baidu_std client and grpcio on the same port, every status
 * mapped as docs/grpc.md says, the deadline from grpc-timeout, metadata, gzip, streaming refused.
 */
static void grpcio_calls_methods_on_the_baidu_std_port(void **state)
{
    const grpc_peer *who = *state ? *state : &GRPCIO;
    ftrpc_server *s = start_server(NULL);
    int port = ftrpc_server_port(s);
    char args[256];
    snprintf(args, sizeof args,
             "127.0.0.1:%d echo gzip unknown unknown_service fail_limit fail_business5 "
             "fail_business42 remaining meta deadline%s",
             port, who->streams ? " stream" : "");
    char *out = peer(who, args);
    expect_line(out, "echo OK hello grpc\n");
    expect_line(out, "gzip OK 4000 bytes\n");
    expect_line(out,
                "unknown UNIMPLEMENTED Fail to find method=example.EchoService/NoSuchMethod\n");
    expect_line(out, "unknown_service UNIMPLEMENTED");
    expect_line(out, "fail_limit RESOURCE_EXHAUSTED too busy\n");
    expect_line(out, "fail_business5 NOT_FOUND no such thing\n");
    expect_line(out, "fail_business42 UNKNOWN business says no\n");
    expect_line(out, "meta OK abc123/2\n");
    if (who->streams)
        expect_line(out, "stream UNIMPLEMENTED more than one request message: streaming calls "
                         "are not supported");
    expect_line(out, "deadline DEADLINE_EXCEEDED");
    /* grpc-timeout became the call's deadline: 5 s, less the time on the way (the deadline is
     * counted from the loop's clock of the read, which may lag the handler's reading by a few
     * ms: hence the allowance) */
    const char *r = strstr(out, "remaining OK ");
    assert_non_null(r);
    long left = atol(r + strlen("remaining OK "));
    if (left <= 0 || left > 5100) print_message("%s\n", out);
    assert_true(left > 0 && left <= 5100);
    free(out);

    /* the same method over baidu_std on the same port */
    char url[64];
    snprintf(url, sizeof url, "list://127.0.0.1:%d", port);
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(url, NULL, &c), 0);
    ftrpc_buf *req = ftrpc_buf_new();
    ftrpc_buf_append(req, "std", 3);
    ftrpc_result res;
    assert_int_equal(ftrpc_call(c, "example.EchoService", "Echo", req, NULL, NULL, &res), 0);
    assert_int_equal(ftrpc_buf_size(res.response), 3);
    ftrpc_result_fini(&res);
    ftrpc_buf_free(req);
    ftrpc_client_free(c);
    ftrpc_server_free(s);
}

/* A call the client cancels (RST_STREAM) sets the handler's cancelled flag. */
static void client_reset_cancels_the_handler(void **state)
{
    const grpc_peer *who = *state ? *state : &GRPCIO;
    atomic_store(&saw_cancel, 0);
    atomic_store(&slow_started, 0);
    ftrpc_server *s = start_server(NULL);
    char args[64];
    snprintf(args, sizeof args, "127.0.0.1:%d cancel", ftrpc_server_port(s));
    char *out = peer(who, args);
    expect_line(out, "cancel sent");
    free(out);
    assert_true(h_wait_atomic_ge(&saw_cancel, 1, 5000));
    assert_int_equal(atomic_load(&slow_started), 1);
    ftrpc_server_free(s);
}

/* TLS with ALPN h2 on the port that also takes plain connections; the credential comes from the
 * authorization metadata, through the same check as baidu_std's. */
static void grpcio_over_tls_with_a_token(void **state)
{
    const grpc_peer *who = *state ? *state : &GRPCIO;
    ftrpc_server_options o = {
        .auth_token = TOKEN, .tls = {.cert_file = h_tls.server_cert, .key_file = h_tls.server_key}};
    ftrpc_server *s = start_server(&o);
    char args[1024];
    snprintf(args, sizeof args, "127.0.0.1:%d --ca %s --token %s echo gzip", ftrpc_server_port(s),
             h_tls.ca, TOKEN);
    char *out = peer(who, args);
    expect_line(out, "echo OK hello grpc\n");
    expect_line(out, "gzip OK 4000 bytes\n");
    free(out);
    snprintf(args, sizeof args, "127.0.0.1:%d --ca %s --token wrong echo", ftrpc_server_port(s),
             h_tls.ca);
    out = peer(who, args);
    expect_line(out, "echo UNAUTHENTICATED authentication failed\n");
    free(out);
    snprintf(args, sizeof args, "127.0.0.1:%d echo", ftrpc_server_port(s));
    out = peer(who, args); /* plain, no credential */
    expect_line(out, "echo UNAUTHENTICATED");
    free(out);
    ftrpc_server_stats st;
    ftrpc_server_stats_get(s, &st);
    assert_true(st.auth_failures >= 2);
    ftrpc_server_free(s);
}

/* ---- a raw HTTP/2 peer that floods ---- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_seen[65536]; /* debug lines too (the graceful stop's GOAWAY) */

static void log_sink(ftrpc_log_level level, const char *msg, void *arg)
{
    (void)level;
    (void)arg;
    pthread_mutex_lock(&log_lock);
    size_t n = strlen(log_seen);
    snprintf(log_seen + n, sizeof log_seen - n, "%s\n", msg);
    pthread_mutex_unlock(&log_lock);
}

static int logged(const char *needle)
{
    pthread_mutex_lock(&log_lock);
    int yes = strstr(log_seen, needle) != NULL;
    pthread_mutex_unlock(&log_lock);
    return yes;
}

static size_t frame(uint8_t *out, uint8_t type, uint8_t flags, uint32_t stream, const void *p,
                    size_t len)
{
    out[0] = (uint8_t)(len >> 16);
    out[1] = (uint8_t)(len >> 8);
    out[2] = (uint8_t)len;
    out[3] = type;
    out[4] = flags;
    out[5] = (uint8_t)(stream >> 24);
    out[6] = (uint8_t)(stream >> 16);
    out[7] = (uint8_t)(stream >> 8);
    out[8] = (uint8_t)stream;
    if (len) memcpy(out + 9, p, len);
    return 9 + len;
}

enum { F_DATA = 0, F_HEADERS = 1, F_RST = 3, F_SETTINGS = 4, F_PING = 6, F_GOAWAY = 7 };

/* Reads the server's frames until one of `type` on `stream` (RST_STREAM: its error code into
 * *code; GOAWAY: its error code, after the last stream id): 1, or 0 when none came within 5 s or
 * the connection closed first. */
static int wait_frame(int fd, uint8_t type, uint32_t stream, uint32_t *code)
{
    uint8_t h[9], p[16384];
    while (h_raw_read_exact(fd, h, sizeof h, 5000) == 1) {
        size_t len = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
        uint32_t id = ((uint32_t)h[5] << 24 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 8 | h[8]) &
                      0x7fffffffu;
        if (len > sizeof p || (len && h_raw_read_exact(fd, p, len, 5000) != 1)) return 0;
        size_t at = type == 7 ? 4 : 0; /* GOAWAY: the code follows the last stream id */
        if (h[3] == type && id == stream && len >= at + 4) {
            *code = (uint32_t)p[at] << 24 | (uint32_t)p[at + 1] << 16 | (uint32_t)p[at + 2] << 8 |
                    p[at + 3];
            return 1;
        }
    }
    return 0;
}

/* Connects, sends the preface and an empty SETTINGS, then `count` rounds of what `kind` floods:
 * 'r' a HEADERS (POST, http, /) then its RST_STREAM; 'p' a PING; 's' an empty SETTINGS. Returns
 * 1 when the server closed the connection within 5 s. */
static int flood(int port, char kind, int count)
{
    int fd = h_raw_connect(port);
    assert_true(fd >= 0);
    size_t cap = 64 + (size_t)count * 40, n = 0;
    uint8_t *buf = malloc(cap);
    memcpy(buf, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    n = 24;
    n += frame(buf + n, F_SETTINGS, 0, 0, NULL, 0);
    static const uint8_t HDR[] = {0x83, 0x86, 0x84}; /* :method POST, :scheme http, :path / */
    static const uint8_t CANCEL[4] = {0, 0, 0, 8};
    static const uint8_t PING[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (int i = 0; i < count; i++) {
        uint32_t id = 1 + 2 * (uint32_t)i;
        if (kind == 'r') {
            n += frame(buf + n, F_HEADERS, 0x4 /* END_HEADERS */, id, HDR, sizeof HDR);
            n += frame(buf + n, F_RST, 0, id, CANCEL, sizeof CANCEL);
        } else if (kind == 'p') {
            n += frame(buf + n, F_PING, 0, 0, PING, sizeof PING);
        } else {
            n += frame(buf + n, F_SETTINGS, 0, 0, NULL, 0);
        }
    }
    h_raw_send(fd, buf, n);
    free(buf);
    /* a peer torn down gets GOAWAY(ENHANCE_YOUR_CALM) first */
    uint32_t code = 0;
    if (count > 20 && (!wait_frame(fd, F_GOAWAY, 0, &code) || code != 11)) {
        close(fd);
        return 0;
    }
    int closed = h_raw_wait_closed(fd, 5000) == 1;
    close(fd);
    return closed;
}

static void flooding_peers_are_closed_with_a_reason(void **state)
{
    (void)state;
    ftrpc_log_set_sink(log_sink, NULL);
    ftrpc_server_options o = {.grpc = {.rst_stream_burst = 50,
                                       .rst_stream_per_second = 1,
                                       .ping_settings_burst = 20,
                                       .ping_settings_per_second = 1}};
    ftrpc_server *s = start_server(&o);
    int port = ftrpc_server_port(s);
    /* within the limits, a peer stays */
    assert_false(flood(port, 'r', 10));
    assert_true(flood(port, 'r', 200));
    assert_true(logged("RST_STREAM flood (rapid reset, CVE-2023-44487)"));
    assert_true(flood(port, 'p', 100));
    assert_true(logged("PING flood"));
    assert_true(flood(port, 's', 100));
    assert_true(logged("SETTINGS flood"));
    ftrpc_log_set_sink(NULL, NULL);
    ftrpc_server_free(s);
}

/* A header block: hdr, then the literal "x-big" (new name, not indexed) with a value of `len`
 * bytes of 'v' (HPACK integers: 7-bit prefix). The bytes written into out. */
static size_t big_header_block(uint8_t *out, const uint8_t *hdr, size_t hdr_len, size_t len)
{
    size_t b = hdr_len;
    memcpy(out, hdr, hdr_len);
    memcpy(out + b, "\x00\x05x-big", 7);
    b += 7;
    size_t v = len;
    if (v < 127) {
        out[b++] = (uint8_t)v;
    } else {
        out[b++] = 127;
        for (v -= 127; v >= 128; v >>= 7)
            out[b++] = (uint8_t)(v | 128);
        out[b++] = (uint8_t)v;
    }
    memset(out + b, 'v', len);
    return b + len;
}

/* SETTINGS_MAX_CONCURRENT_STREAMS: a stream past it is refused (REFUSED_STREAM, so a client may
 * retry it elsewhere); a header list past max_header_list_size resets its stream. The connection
 * stays for both. */
static void streams_past_the_limits_are_reset(void **state)
{
    (void)state;
    ftrpc_server_options o = {.grpc = {.max_concurrent_streams = 2, .max_header_list_size = 4096}};
    ftrpc_server *s = start_server(&o);
    int fd = h_raw_connect(ftrpc_server_port(s));
    assert_true(fd >= 0);
    static uint8_t buf[32768];
    static const uint8_t HDR[] = {0x83, 0x86, 0x84, 0x01, 0x09, 'l', 'o',
                                  'c',  'a',  'l',  'h',  'o',  's', 't'};
    size_t n = 0;
    memcpy(buf, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    n = 24;
    n += frame(buf + n, F_SETTINGS, 0, 0, NULL, 0);
    for (uint32_t id = 1; id <= 5; id += 2) /* three streams open, none ended */
        n += frame(buf + n, F_HEADERS, 0x4, id, HDR, sizeof HDR);
    h_raw_send(fd, buf, n);
    uint32_t code = 0;
    assert_true(wait_frame(fd, F_RST, 5, &code));
    assert_int_equal(code, 7); /* REFUSED_STREAM */
    /* an 8000-byte header value */
    static uint8_t big[8100];
    size_t b = big_header_block(big, HDR, sizeof HDR, 8000);
    /* stream 7 after closing 1 and 3 with RST_STREAM: room for it again */
    static const uint8_t CANCEL[4] = {0, 0, 0, 8};
    n = frame(buf, F_RST, 0, 1, CANCEL, 4);
    n += frame(buf + n, F_RST, 0, 3, CANCEL, 4);
    n += frame(buf + n, F_HEADERS, 0x4, 7, big, b);
    h_raw_send(fd, buf, n);
    assert_true(wait_frame(fd, F_RST, 7, &code));
    /* the connection is still served */
    assert_int_equal(h_raw_wait_closed(fd, 200), 0);
    close(fd);
    ftrpc_server_free(s);
}

/* A preface cut after "PRI" (which baidu_std's "PRPC" does not rule out before the third byte)
 * still starts gRPC: the server answers with its SETTINGS. */
static void a_preface_in_pieces_is_still_recognised(void **state)
{
    (void)state;
    ftrpc_server *s = start_server(NULL);
    int fd = h_raw_connect(ftrpc_server_port(s));
    assert_true(fd >= 0);
    static const char PRE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    uint8_t settings[9];
    h_raw_send(fd, PRE, 3);
    h_sleep_ms(50); /* lets the server read the piece alone (the test holds without it too) */
    h_raw_send(fd, PRE + 3, 24 - 3);
    h_raw_send(fd, settings, frame(settings, F_SETTINGS, 0, 0, NULL, 0));
    uint32_t unused;
    assert_true(wait_frame(fd, F_SETTINGS, 0, &unused));
    close(fd);
    ftrpc_server_free(s);
}

/* Reads one frame: 1 with its header fields and payload (at most cap bytes), 0 on a timeout
 * (5 s), a close or a frame too large. */
static int read_frame(int fd, uint8_t *type, uint8_t *flags, uint32_t *id, uint8_t *p, size_t cap,
                      size_t *len)
{
    uint8_t h[9];
    if (h_raw_read_exact(fd, h, sizeof h, 5000) != 1) return 0;
    *len = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
    *type = h[3];
    *flags = h[4];
    *id = ((uint32_t)h[5] << 24 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 8 | h[8]) & 0x7fffffffu;
    return *len <= cap && (*len == 0 || h_raw_read_exact(fd, p, *len, 5000) == 1);
}

static void *stop_server_thread(void *arg)
{
    return (void *)(intptr_t)ftrpc_server_stop(arg, 5000);
}

/* A graceful stop sends GOAWAY(NO_ERROR) naming the last stream processed, before the answer of
 * the call in flight on it; the call is then answered in full (HEADERS, DATA, trailers) and the
 * connection closed. Before, the peer learnt of the stop only when its connection closed. */
static void graceful_stop_sends_goaway_then_finishes_the_call_in_flight(void **state)
{
    (void)state;
    atomic_store(&hold_started, 0);
    atomic_store(&hold_release, 0);
    ftrpc_server *s = start_server(NULL);
    int fd = h_raw_connect(ftrpc_server_port(s));
    assert_true(fd >= 0);
    /* POST /example.EchoService/Hold, content-type application/grpc: HPACK literals without
     * indexing, names from the static table (:path 4, :authority 1, content-type 31) */
    static const char PATH[] = "/example.EchoService/Hold", TYPE[] = "application/grpc";
    uint8_t hdr[128], buf[512];
    size_t h = 0, n = 0;
    hdr[h++] = 0x83; /* :method POST */
    hdr[h++] = 0x86; /* :scheme http */
    hdr[h++] = 0x04;
    hdr[h++] = (uint8_t)(sizeof PATH - 1);
    memcpy(hdr + h, PATH, sizeof PATH - 1);
    h += sizeof PATH - 1;
    memcpy(hdr + h, "\x01\x09localhost", 11);
    h += 11;
    hdr[h++] = 0x0f;
    hdr[h++] = 0x10;
    hdr[h++] = (uint8_t)(sizeof TYPE - 1);
    memcpy(hdr + h, TYPE, sizeof TYPE - 1);
    h += sizeof TYPE - 1;
    static const uint8_t MSG[] = {0, 0, 0, 0, 2, 'h', 'i'};
    memcpy(buf, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    n = 24;
    n += frame(buf + n, F_SETTINGS, 0, 0, NULL, 0);
    n += frame(buf + n, F_HEADERS, 0x4 /* END_HEADERS */, 1, hdr, h);
    n += frame(buf + n, F_DATA, 0x1 /* END_STREAM */, 1, MSG, sizeof MSG);
    h_raw_send(fd, buf, n);
    assert_true(h_wait_atomic_ge(&hold_started, 1, 5000));

    pthread_t stopper;
    assert_int_equal(pthread_create(&stopper, NULL, stop_server_thread, s), 0);
    uint8_t type, flags, p[1024];
    uint32_t id;
    size_t len;
    int goaway = 0, answer_frames = 0, data = 0, trailers = 0;
    while (!trailers && read_frame(fd, &type, &flags, &id, p, sizeof p, &len)) {
        if (type == F_GOAWAY) {
            assert_int_equal(id, 0);
            assert_true(len >= 8);
            uint32_t last =
                ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]) &
                0x7fffffffu;
            uint32_t code =
                (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
            assert_int_equal(last, 1);
            assert_int_equal(code, 0);          /* NO_ERROR */
            assert_int_equal(answer_frames, 0); /* before the answer */
            goaway = 1;
            atomic_store(&hold_release, 1); /* now the call may end */
        } else if (id == 1 && (type == F_HEADERS || type == F_DATA)) {
            answer_frames++;
            if (type == F_DATA && len == 9 && memcmp(p + 5, "held", 4) == 0) data = 1;
            if (type == F_HEADERS && (flags & 0x1)) trailers = 1; /* END_STREAM */
        }
    }
    atomic_store(&hold_release, 1);
    assert_true(goaway);
    assert_true(data);
    assert_true(trailers);
    assert_int_equal(h_raw_wait_closed(fd, 5000), 1);
    close(fd);
    void *rc;
    pthread_join(stopper, &rc);
    assert_int_equal((int)(intptr_t)rc, 0);
    ftrpc_server_free(s);
}

struct peer_run {
    char args[128];
    char *out;
};

static void *peer_thread(void *arg)
{
    struct peer_run *r = arg;
    r->out = peer(&GRPCIO, r->args);
    return NULL;
}

static int goaway_logged(void *arg)
{
    (void)arg;
    return logged("GOAWAY (graceful stop), last stream 1");
}

/* grpcio's side of it: a call in flight when the stop begins gets its GOAWAY first (the log says
 * it went out before the handler is let go), then its whole answer, OK; a call after the stop
 * finds no server (UNAVAILABLE). */
static void grpcio_call_in_flight_is_answered_after_the_goaway_of_a_graceful_stop(void **state)
{
    (void)state;
    atomic_store(&hold_started, 0);
    atomic_store(&hold_release, 0);
    log_seen[0] = '\0';
    ftrpc_log_set_sink(log_sink, NULL);
    ftrpc_log_set_level(FTRPC_LOG_DEBUG);
    ftrpc_server *s = start_server(NULL);
    static struct peer_run run;
    snprintf(run.args, sizeof run.args, "127.0.0.1:%d hold echo", ftrpc_server_port(s));
    pthread_t pt, stopper;
    assert_int_equal(pthread_create(&pt, NULL, peer_thread, &run), 0);
    assert_true(h_wait_atomic_ge(&hold_started, 1, 20000));
    assert_int_equal(pthread_create(&stopper, NULL, stop_server_thread, s), 0);
    int sent = h_wait_until(goaway_logged, NULL, 5000);
    atomic_store(&hold_release, 1);
    pthread_join(pt, NULL);
    void *rc;
    pthread_join(stopper, &rc);
    ftrpc_log_set_level(FTRPC_LOG_WARN); /* the default */
    ftrpc_log_set_sink(NULL, NULL);
    assert_true(sent);
    expect_line(run.out, "hold OK held\n");
    expect_line(run.out, "echo UNAVAILABLE");
    free(run.out);
    assert_int_equal((int)(intptr_t)rc, 0);
    ftrpc_server_free(s);
}

static int pending_released(void *arg)
{
    ftrpc_server_stats st;
    ftrpc_server_stats_get(arg, &st);
    return st.pending_request_bytes == 0;
}

/* Streams that send their bodies and never end them count in max_pending_request_bytes, as a
 * started baidu_std frame does: past it the connection is closed. */
static void unfinished_stream_bodies_count_in_pending_bytes(void **state)
{
    (void)state;
    ftrpc_server_options o = {.max_pending_request_bytes = 256 * 1024};
    ftrpc_server *s = start_server(&o);
    int fd = h_raw_connect(ftrpc_server_port(s));
    assert_true(fd >= 0);
    static uint8_t buf[64 + 8 * (32 + 3 * (9 + 16384))];
    /* :method POST, :scheme http, :path /, :authority localhost (a request nghttp2 accepts) */
    static const uint8_t HDR[] = {0x83, 0x86, 0x84, 0x01, 0x09, 'l', 'o',
                                  'c',  'a',  'l',  'h',  'o',  's', 't'};
    static uint8_t chunk[16384];
    size_t n = 0;
    memcpy(buf, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    n = 24;
    n += frame(buf + n, F_SETTINGS, 0, 0, NULL, 0);
    /* eight streams of 48 KiB each, none ended: 384 KiB held, within the streams' first windows
     * (64 KiB until the peer acknowledges ftrpc's SETTINGS) and the connection's 1 MiB */
    for (uint32_t id = 1; id <= 15; id += 2) {
        n += frame(buf + n, F_HEADERS, 0x4, id, HDR, sizeof HDR);
        for (int i = 0; i < 3; i++)
            n += frame(buf + n, F_DATA, 0, id, chunk, sizeof chunk);
    }
    h_raw_send(fd, buf, n);
    assert_int_equal(h_raw_wait_closed(fd, 5000), 1);
    close(fd);
    /* the count is given back when the session's close completes, just after the socket's */
    assert_true(h_wait_until(pending_released, s, 5000));
    ftrpc_server_stats st;
    ftrpc_server_stats_get(s, &st);
    assert_int_equal(st.pending_refused, 1);
    ftrpc_server_free(s);
}

/* HEADERS for POST /example.EchoService/Echo, content-type application/grpc, :authority localhost
 * (HPACK: indexed :method and :scheme, literals without indexing on indexed names) */
static const uint8_t ECHO_HDR[] = {0x83, 0x86, 0x04, 25,  '/',  'e',  'x', 'a', 'm', 'p', 'l', 'e',
                                   '.',  'E',  'c',  'h', 'o',  'S',  'e', 'r', 'v', 'i', 'c', 'e',
                                   '/',  'E',  'c',  'h', 'o',  0x01, 9,   'l', 'o', 'c', 'a', 'l',
                                   'h',  'o',  's',  't', 0x0f, 0x10, 16,  'a', 'p', 'p', 'l', 'i',
                                   'c',  'a',  't',  'i', 'o',  'n',  '/', 'g', 'r', 'p', 'c'};

/* Appends to buf one echo call on stream id whose message is `size` bytes of 'e', in DATA frames
 * of at most 16 KiB, the last ending the stream. Returns the bytes appended. */
static size_t echo_request(uint8_t *buf, uint32_t id, size_t size)
{
    static uint8_t body[5 + 64 * 1024];
    assert_true(size <= sizeof body - 5);
    body[0] = 0;
    body[1] = (uint8_t)(size >> 24);
    body[2] = (uint8_t)(size >> 16);
    body[3] = (uint8_t)(size >> 8);
    body[4] = (uint8_t)size;
    memset(body + 5, 'e', size);
    size_t n = frame(buf, F_HEADERS, 0x4, id, ECHO_HDR, sizeof ECHO_HDR);
    for (size_t at = 0; at < 5 + size; at += 16384) {
        size_t len = 5 + size - at < 16384 ? 5 + size - at : 16384;
        n += frame(buf + n, F_DATA, at + len == 5 + size ? 0x1 : 0, id, body + at, len);
    }
    return n;
}

/* The client preface and an empty SETTINGS, into buf: the bytes written */
static size_t preface(uint8_t *buf)
{
    memcpy(buf, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    return 24 + frame(buf + 24, F_SETTINGS, 0, 0, NULL, 0);
}

/* Calls Echo on stream id of the connection fd: 1 when its answer's DATA came */
static int echo_served(int fd, uint32_t id)
{
    static uint8_t req[256];
    h_raw_send(fd, req, echo_request(req, id, 16));
    uint32_t unused;
    return wait_frame(fd, F_DATA, id, &unused);
}

/* The client preface, SETTINGS_INITIAL_WINDOW_SIZE 0 (a window the peer never opens) and the
 * acknowledgement of the server's SETTINGS, into buf: the bytes written */
static size_t shut_window_preface(uint8_t *buf)
{
    static const uint8_t SHUT[6] = {0, 4, 0, 0, 0, 0};
    memcpy(buf, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    size_t n = 24 + frame(buf + 24, F_SETTINGS, 0, 0, SHUT, sizeof SHUT);
    return n + frame(buf + n, F_SETTINGS, 0x1 /* ACK */, 0, NULL, 0);
}

/* A peer that keeps its flow-control window shut (SETTINGS_INITIAL_WINDOW_SIZE 0 and no
 * WINDOW_UPDATE) while it sends requests: their answers wait in the server for a window that never
 * opens, as a baidu_std answer waits for a peer that does not read, and count in the same
 * max_unwritten_bytes. Within it the peer stays; past it the connection is closed with the reason
 * logged, and other connections are served. Found with gzip bombs: 3.8 MB of requests held 1.1
 * GB of inflated answers on one connection. */
static void answers_held_by_a_shut_window_count_in_max_unwritten_bytes(void **state)
{
    (void)state;
    ftrpc_log_set_sink(log_sink, NULL);
    ftrpc_server_options o = {.max_unwritten_bytes = 128 * 1024};
    ftrpc_server *s = start_server(&o);
    int port = ftrpc_server_port(s);
    int fd = h_raw_connect(port);
    assert_true(fd >= 0);
    static uint8_t buf[8 * (64 + 4 * (9 + 16384))];
    size_t n = shut_window_preface(buf);
    /* two answers of 40 KiB held: within the bound */
    for (uint32_t id = 1; id <= 3; id += 2)
        n += echo_request(buf + n, id, 40 * 1024);
    h_raw_send(fd, buf, n);
    assert_int_equal(h_raw_wait_closed(fd, 300), 0);
    assert_false(logged("flow-control window"));
    /* six more: 320 KiB held */
    n = 0;
    for (uint32_t id = 5; id <= 15; id += 2)
        n += echo_request(buf + n, id, 40 * 1024);
    h_raw_send(fd, buf, n);
    assert_int_equal(h_raw_wait_closed(fd, 5000), 1);
    close(fd);
    assert_true(logged("does not open its flow-control window"));
    /* another peer is served meanwhile */
    fd = h_raw_connect(port);
    assert_true(fd >= 0);
    h_raw_send(fd, buf, preface(buf));
    assert_true(echo_served(fd, 1));
    close(fd);
    ftrpc_log_set_sink(NULL, NULL);
    ftrpc_server_free(s);
}

/* A stream whose request never ends (HEADERS and part of a body, then nothing, the peer pinging
 * to look alive): as an HTTP/1.1 request must complete within read_timeout_ms, so must a stream's;
 * past it the stream is reset (CANCEL) with the reason logged, and the connection serves on.
 * Before, only the idle timeout (600 s) would end it, and a peer that pings never idles. */
static void a_stream_whose_request_never_ends_is_reset_at_read_timeout(void **state)
{
    (void)state;
    ftrpc_log_set_sink(log_sink, NULL);
    ftrpc_server_options o = {.read_timeout_ms = 300};
    ftrpc_server *s = start_server(&o);
    int fd = h_raw_connect(ftrpc_server_port(s));
    assert_true(fd >= 0);
    static uint8_t buf[1024];
    static const uint8_t PART[2] = {0, 0}; /* two bytes of a message prefix */
    static const uint8_t PING[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    size_t n = preface(buf);
    n += frame(buf + n, F_HEADERS, 0x4, 1, ECHO_HDR, sizeof ECHO_HDR);
    n += frame(buf + n, F_DATA, 0, 1, PART, sizeof PART);
    h_raw_send(fd, buf, n);
    for (int i = 0; i < 4; i++) { /* a peer that looks alive */
        h_sleep_ms(100);
        h_raw_send(fd, buf, frame(buf, F_PING, 0, 0, PING, sizeof PING));
    }
    uint32_t code = 0;
    assert_true(wait_frame(fd, F_RST, 1, &code));
    assert_int_equal(code, 8); /* CANCEL */
    assert_true(logged("did not complete within 300 ms"));
    assert_true(echo_served(fd, 3)); /* the connection serves the next call */
    close(fd);
    ftrpc_log_set_sink(NULL, NULL);
    ftrpc_server_free(s);
}

/* Malformed frames that nghttp2 answers itself, with GOAWAY and no error to ftrpc: the connection
 * closes and the log says why, as for the frames ftrpc refuses. Before, such a close left no line.
 */
static void malformed_frames_close_the_connection_with_a_logged_reason(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        uint32_t goaway;  /* the code nghttp2 sends */
        const char *line; /* in the log */
    } CASES[] = {
        {"DATA on stream 0", 1, "(GOAWAY PROTOCOL_ERROR)"},
        {"a header field of 70,000 bytes", 9, "(GOAWAY COMPRESSION_ERROR)"},
        {"a WINDOW_UPDATE past 2^31-1", 3, "(GOAWAY FLOW_CONTROL_ERROR)"},
    };
    static uint8_t buf[128 * 1024], block[72 * 1024];
    ftrpc_log_set_sink(log_sink, NULL);
    ftrpc_server *s = start_server(NULL);
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        print_message("%s\n", CASES[i].what);
        int fd = h_raw_connect(ftrpc_server_port(s));
        assert_true(fd >= 0);
        size_t n = preface(buf);
        if (i == 0) {
            n += frame(buf + n, F_DATA, 0, 0, "x", 1);
        } else if (i == 1) {
            size_t b = big_header_block(block, ECHO_HDR, sizeof ECHO_HDR, 70000);
            for (size_t at = 0; at < b; at += 16384) {
                size_t len = b - at < 16384 ? b - at : 16384;
                n += frame(buf + n, at == 0 ? F_HEADERS : 9 /* CONTINUATION */,
                           at + len == b ? 0x4 : 0, 1, block + at, len);
            }
        } else {
            static const uint8_t MAX[4] = {0x7f, 0xff, 0xff, 0xff};
            n += frame(buf + n, 8 /* WINDOW_UPDATE */, 0, 0, MAX, 4);
        }
        h_raw_send(fd, buf, n);
        uint32_t code = 0;
        assert_true(wait_frame(fd, F_GOAWAY, 0, &code));
        assert_int_equal(code, CASES[i].goaway);
        assert_int_equal(h_raw_wait_closed(fd, 5000), 1);
        close(fd);
        if (!logged(CASES[i].line)) print_message("no \"%s\" in:\n%s\n", CASES[i].line, log_seen);
        assert_true(logged(CASES[i].line));
    }
    ftrpc_log_set_sink(NULL, NULL);
    ftrpc_server_free(s);
}

/* Below max_unwritten_bytes, answers held for a shut window are still bounded in time: when none
 * of their bytes left for idle_timeout_ms the connection is closed, however often the peer pings
 * (a PING is read, so the idle timeout alone never came). */
static void answers_held_without_progress_for_the_idle_timeout_close_the_connection(void **state)
{
    (void)state;
    ftrpc_log_set_sink(log_sink, NULL);
    ftrpc_server_options o = {.idle_timeout_ms = 300};
    ftrpc_server *s = start_server(&o);
    int fd = h_raw_connect(ftrpc_server_port(s));
    assert_true(fd >= 0);
    static uint8_t buf[64 + 4 * (9 + 16384)];
    static const uint8_t PING[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    size_t n = shut_window_preface(buf);
    n += echo_request(buf + n, 1, 40 * 1024);
    h_raw_send(fd, buf, n);
    int closed = 0;
    for (int i = 0; i < 30 && !closed; i++) { /* 3 s of pings, 10 idle timeouts */
        h_raw_send(fd, buf, frame(buf, F_PING, 0, 0, PING, sizeof PING));
        closed = h_raw_wait_closed(fd, 100);
    }
    close(fd);
    assert_true(closed);
    assert_true(logged("none of them sent for 300 ms"));
    ftrpc_log_set_sink(NULL, NULL);
    ftrpc_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(grpcio_calls_methods_on_the_baidu_std_port),
        cmocka_unit_test(client_reset_cancels_the_handler),
        cmocka_unit_test(grpcio_over_tls_with_a_token),
        /* the same cases with the gRPC C++ peer */
        {"grpc_cpp_calls_methods_on_the_baidu_std_port", grpcio_calls_methods_on_the_baidu_std_port,
         NULL, NULL, (void *)&GRPC_CPP},
        {"grpc_cpp_reset_cancels_the_handler", client_reset_cancels_the_handler, NULL, NULL,
         (void *)&GRPC_CPP},
        {"grpc_cpp_over_tls_with_a_token", grpcio_over_tls_with_a_token, NULL, NULL,
         (void *)&GRPC_CPP},
        cmocka_unit_test(flooding_peers_are_closed_with_a_reason),
        cmocka_unit_test(unfinished_stream_bodies_count_in_pending_bytes),
        cmocka_unit_test(answers_held_by_a_shut_window_count_in_max_unwritten_bytes),
        cmocka_unit_test(answers_held_without_progress_for_the_idle_timeout_close_the_connection),
        cmocka_unit_test(a_stream_whose_request_never_ends_is_reset_at_read_timeout),
        cmocka_unit_test(malformed_frames_close_the_connection_with_a_logged_reason),
        cmocka_unit_test(streams_past_the_limits_are_reset),
        cmocka_unit_test(a_preface_in_pieces_is_still_recognised),
        cmocka_unit_test(graceful_stop_sends_goaway_then_finishes_the_call_in_flight),
        cmocka_unit_test(grpcio_call_in_flight_is_answered_after_the_goaway_of_a_graceful_stop),
    };
    return cmocka_run_group_tests(tests, h_tls_group_setup, h_tls_group_teardown);
}
