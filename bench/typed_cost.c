/* bench_typed_cost: a fixed number of echo calls, typed or bytes, for counting instructions per
 * call with callgrind (scripts/typed-cost.sh), where bench_echo's timed cells cannot be used.
 *
 * bench_echo runs for a time, so the calls a profile holds depend on the machine's load; this
 * client makes exactly COUNT calls at a fixed number in flight, so that two runs of different
 * counts under callgrind give the marginal instructions per call (start-up and teardown cancel
 * out), whatever else runs on the machine. The servers are bench_echo's own (`ftrpc echo-server`
 * for bytes, `bench_echo --typed-server` for typed), separate processes, so that the script
 * profiles one side at a time.
 *
 *   bench_typed_cost typed|bytes PORT COUNT [INFLIGHT]
 *
 * makes COUNT async echo calls (a 16-byte payload: example.EchoService/Echo of bytes, or
 * benchecho.Echo/Echo of bench/echo.proto), INFLIGHT
 * (default 64) at a time, each re-issued from the previous one's completion, as bench_echo's async
 * shape does: bytes through ftrpc_call_async, typed through the generated stub over
 * ftrpc_typed_client_new. Exit status 1 on any failed call. What it does not do: time anything
 * (bench_echo does).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "echo.pb-c.h"
#include "ftrpc/ftrpc.h"
#include "ftrpc/typed.h"

enum { PAYLOAD = 16 };
static const char PAYLOAD_BYTES[PAYLOAD] = "0123456789abcdef";

/* ---- clients ---- */

typedef struct driver {
    ftrpc_client *client;
    ProtobufCService *typed;
    Benchecho__EchoMsg msg;
    ftrpc_buf *req;
    atomic_long to_issue; /* calls not yet started */
    atomic_long failed;
    atomic_int outstanding; /* slots still running */
    pthread_mutex_t lock;
    pthread_cond_t done;
} driver;

/* A slot ends: the main thread waits for all of them. */
static void slot_end(driver *d)
{
    if (atomic_fetch_sub(&d->outstanding, 1) != 1) return;
    pthread_mutex_lock(&d->lock);
    pthread_cond_signal(&d->done);
    pthread_mutex_unlock(&d->lock);
}

static void on_bytes_done(ftrpc_result *r, void *arg)
{
    driver *d = arg;
    if (r->kind != FTRPC_RESULT_OK || ftrpc_buf_size(r->response) != PAYLOAD)
        atomic_fetch_add(&d->failed, 1);
    if (atomic_fetch_sub(&d->to_issue, 1) > 0 &&
        ftrpc_call_async(d->client, "example.EchoService", "Echo", d->req, NULL, NULL,
                         on_bytes_done, d, NULL) == 0)
        return;
    slot_end(d);
}

static void on_typed_done(const Benchecho__EchoMsg *reply, void *arg)
{
    driver *d = arg;
    if (!reply || reply->data.len != PAYLOAD) atomic_fetch_add(&d->failed, 1);
    if (atomic_fetch_sub(&d->to_issue, 1) > 0) {
        /* the closure runs exactly once: at once, here, when the call cannot start */
        benchecho__echo__echo(d->typed, &d->msg, on_typed_done, d);
        return;
    }
    slot_end(d);
}

static int client_main(int typed, const char *port, long count, int inflight)
{
    driver d = {.req = ftrpc_buf_new()};
    atomic_init(&d.to_issue, count - inflight);
    atomic_init(&d.failed, 0);
    atomic_init(&d.outstanding, inflight);
    pthread_mutex_init(&d.lock, NULL);
    pthread_cond_init(&d.done, NULL);
    ftrpc_buf_append(d.req, PAYLOAD_BYTES, PAYLOAD);
    benchecho__echo_msg__init(&d.msg);
    d.msg.data.data = (uint8_t *)PAYLOAD_BYTES;
    d.msg.data.len = PAYLOAD;
    ftrpc_runtime *rt;
    ftrpc_runtime_options ro = {.io_threads = 1};
    char url[64];
    snprintf(url, sizeof url, "127.0.0.1:%s", port);
    int rc = ftrpc_runtime_new(&ro, &rt);
    if (rc == 0) {
        ftrpc_client_options co = {.runtime = rt, .timeout_ms = 10000};
        rc = ftrpc_client_new(url, &co, &d.client);
    }
    if (rc == 0 && typed)
        rc = ftrpc_typed_client_new(d.client, &benchecho__echo__descriptor, NULL, &d.typed);
    if (rc != 0) {
        fprintf(stderr, "bench_typed_cost client: %s\n", ftrpc_strerror(rc));
        return 1;
    }
    pthread_mutex_lock(&d.lock);
    for (int i = 0; i < inflight; i++) {
        if (typed) {
            benchecho__echo__echo(d.typed, &d.msg, on_typed_done, &d);
        } else if (ftrpc_call_async(d.client, "example.EchoService", "Echo", d.req, NULL, NULL,
                                    on_bytes_done, &d, NULL) != 0) {
            atomic_fetch_add(&d.failed, 1);
            slot_end(&d);
        }
    }
    while (atomic_load(&d.outstanding) > 0)
        pthread_cond_wait(&d.done, &d.lock);
    pthread_mutex_unlock(&d.lock);
    ftrpc_typed_client_free(d.typed);
    ftrpc_client_free(d.client);
    ftrpc_runtime_free(rt);
    ftrpc_buf_free(d.req);
    long failed = atomic_load(&d.failed);
    printf("%ld %s calls, %ld failed\n", count, typed ? "typed" : "bytes", failed);
    return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    int typed = argc > 1 && strcmp(argv[1], "typed") == 0;
    if ((argc == 4 || argc == 5) && (typed || !strcmp(argv[1], "bytes"))) {
        long count = strtol(argv[3], NULL, 10);
        int inflight = argc == 5 ? atoi(argv[4]) : 64;
        if (count > 0 && inflight > 0 && inflight <= count && inflight <= 4096)
            return client_main(typed, argv[2], count, inflight);
    }
    fprintf(stderr, "usage: bench_typed_cost typed|bytes PORT COUNT [INFLIGHT (64)]\n");
    return 2;
}
