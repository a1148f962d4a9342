/* docs/fallback.md and docs/endpoint-health.md: the breaker's rejection seen by a fallback (Kitex's
 * TimeoutAndCBFallback).
 *
 * A quote service is overloaded: it fails every call with FTRPC_ELIMIT. After 10 such errors its
 * only endpoint's breaker opens (breaker_min_calls 10, half of them errors), and the next calls are
 * rejected at once with FTRPC_EBREAKER, without being sent: the client's fallback of kind
 * FTRPC_FALLBACK_TIMEOUTS_AND_BREAKER answers them with a cached quote. The errors themselves are
 * not its kind, so they reach the caller. Once the service recovers and the 300 ms suspension has
 * ended, one call goes through as the probe (the half-open step) and closes the breaker.
 * Run: build/example_fallback_breaker */
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include <ftrpc/ftrpc.h>

#define SVC "example.QuoteService"

static atomic_int overloaded = 1;

static void quote(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    if (atomic_load(&overloaded)) {
        ftrpc_server_call_fail(call, -FTRPC_ELIMIT, "overloaded"); /* 2004 on the wire */
        return;
    }
    ftrpc_buf *b = ftrpc_buf_new();
    ftrpc_buf_append(b, "live: 42.10", 11);
    ftrpc_server_call_reply(call, b, NULL);
    ftrpc_buf_free(b);
}

/* Runs on an IO thread, for timeouts and the breaker's rejections only: must not block. */
static void cached_quote(const ftrpc_fallback_input *in, ftrpc_fallback_output *out, void *arg)
{
    (void)arg;
    printf("  (fallback for %s)\n", ftrpc_err_name(in->result->code));
    out->response = ftrpc_buf_new(); /* the library owns it from here */
    ftrpc_buf_append(out->response, "cached: 41.95", 13);
}

/* n calls, one line each: the outcome's name, how many requests it sent, and its answer. */
static void phase(ftrpc_client *client, const char *title, int n)
{
    printf("-- %s\n", title);
    for (int i = 0; i < n; i++) {
        ftrpc_result r;
        int rc = ftrpc_call(client, SVC, "Quote", NULL, NULL, NULL, &r);
        char answer[32] = "";
        if (rc == 0) answer[ftrpc_buf_copy_to(r.response, answer, sizeof answer - 1)] = '\0';
        printf("%-14s attempts=%d from_fallback=%d %s\n", rc ? ftrpc_err_name(rc) : "ok",
               r.attempts, r.from_fallback, answer);
        ftrpc_result_fini(&r);
    }
}

int main(void)
{
    ftrpc_server *server = NULL;
    ftrpc_client *client = NULL;
    char url[64];
    ftrpc_client_options opts = {
        .retries = FTRPC_NO_RETRY, /* one attempt per call keeps the count plain */
        .health = {.initial_suspension_ms = 300, .breaker_min_calls = 10},
        .fallback = {.kind = FTRPC_FALLBACK_TIMEOUTS_AND_BREAKER, .fn = cached_quote},
        /* the breaker alone: adaptive throttling (docs/overload-client.md), on by default, would
         * shed most of these overloaded calls with FTRPC_ETHROTTLED before the breaker opens */
        .throttle_k = -1,
    };
    int rc = ftrpc_server_new(NULL, &server);
    rc = rc ? rc : ftrpc_server_add_method(server, SVC, "Quote", quote, NULL, NULL);
    rc = rc ? rc : ftrpc_server_start(server, "127.0.0.1:0");
    if (rc == 0) {
        snprintf(url, sizeof url, "list://127.0.0.1:%d", ftrpc_server_port(server));
        rc = ftrpc_client_new(url, &opts, &client);
    }
    if (rc != 0) {
        fprintf(stderr, "cannot start: %s\n", ftrpc_strerror(rc));
        ftrpc_server_free(server);
        return 1;
    }
    phase(client, "service overloaded: 10 errors open the breaker", 10);
    phase(client, "breaker open: rejected without being sent", 2);
    atomic_store(&overloaded, 0);
    struct timespec ts = {0, 400 * 1000000L}; /* past the 300 ms suspension */
    nanosleep(&ts, NULL);
    phase(client, "service recovered, suspension over: the probe closes the breaker", 2);
    ftrpc_client_free(client);
    ftrpc_server_free(server);
    return 0;
}
