/* libFuzzer target for the server's HTTP/2 + gRPC input (src/server/grpc_session.c over nghttp2,
 * src/protocol/grpc.c): every input is what a client sends on one connection of a real ftrpc
 * server in this process, started once on 127.0.0.1 with an echo method and a failing one.
 *
 * Each input is written to a fresh connection, which is then half-closed; the target reads what
 * the server answers until the server closes (bounded: 2 s), so every byte went through the
 * session, its callbacks, the calls it started and their answers. A crash, a sanitizer report or
 * a server that stops closing connections fails the run. The HTTP/2 preface is prepended when an
 * input lacks it, so the fuzzer spends its time past the sniffing (which fuzz_http covers).
 *
 * The seed corpus (tests/fuzz/corpus/grpc/) was recorded from grpcio clients by
 * tests/fuzz/record_grpc_corpus.py: the bytes the server read, one connection a file; beside
 * them, hand-made hostile shapes (shut_window, rapid_reset, continuation_flood, gzip_bomb, ...:
 * docs/grpc.md, "A hostile HTTP/2 peer").
 */
#include <errno.h>
#include <stdio.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "ftrpc/ftrpc.h"
#include "protocol/grpc.h"

static int port;

static void on_echo(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    ftrpc_server_call_reply(call, ftrpc_server_call_request(call), NULL);
}

static void on_fail(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    const char *k, *v;
    size_t n = 0;
    while (ftrpc_server_call_metadata_at(call, n, &k, &v))
        n++;
    ftrpc_server_call_fail(call, n % 2 ? 3005 : FTRPC_ELIMIT, "fuzz\n%");
}

static void start_server(void)
{
    ftrpc_log_set_level(FTRPC_LOG_ERROR); /* bad input is logged at WARN: keep the output short */
    ftrpc_server_options o = {
        .max_body_size = 1 << 20, .auth_token = NULL, .grpc = {.max_concurrent_streams = 16}};
    ftrpc_server *s = NULL;
    ftrpc_method_options worker = {.run_mode = FTRPC_RUN_IN_WORKER};
    if (ftrpc_server_new(&o, &s) != 0 ||
        ftrpc_server_add_method(s, "example.EchoService", "Echo", on_echo, NULL, NULL) != 0 ||
        ftrpc_server_add_method(s, "example.EchoService", "Fail", on_fail, NULL, &worker) != 0 ||
        ftrpc_server_start(s, "127.0.0.1:0") != 0)
        abort();
    port = ftrpc_server_port(s); /* kept for the process's life */
}

static int connect_server(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("fuzz_grpc: connecting to the server");
        abort();
    }
    return fd;
}

/* Writes what the server takes while reading its answers, so neither side blocks the other. */
static void exchange(int fd, const uint8_t *data, size_t size)
{
    size_t off = 0;
    int wr_open = 1;
    char sink[16384];
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN | (wr_open ? POLLOUT : 0)};
        int n = poll(&p, 1, 2000);
        if (n == 0) abort(); /* the server neither answered nor closed in 2 s */
        if (n < 0) {
            if (errno == EINTR) continue;
            abort();
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = read(fd, sink, sizeof sink);
            if (r <= 0) return; /* closed (or reset): done */
        }
        if (wr_open && (p.revents & POLLOUT)) {
            if (off < size) {
                ssize_t w = send(fd, data + off, size - off, MSG_NOSIGNAL);
                if (w < 0) {
                    wr_open = 0; /* the server closed already */
                    continue;
                }
                off += (size_t)w;
            }
            if (off == size) {
                shutdown(fd, SHUT_WR);
                wr_open = 0;
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!port) start_server();
    int fd = connect_server();
    if (size < FT_H2_PREFACE_LEN || memcmp(data, FT_H2_PREFACE, FT_H2_PREFACE_LEN) != 0) {
        uint8_t *buf = malloc(FT_H2_PREFACE_LEN + size);
        if (!buf) abort();
        memcpy(buf, FT_H2_PREFACE, FT_H2_PREFACE_LEN);
        if (size) memcpy(buf + FT_H2_PREFACE_LEN, data, size);
        exchange(fd, buf, FT_H2_PREFACE_LEN + size);
        free(buf);
    } else {
        exchange(fd, data, size);
    }
    close(fd);
    return 0;
}
