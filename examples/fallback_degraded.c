/* docs/fallback.md, example 2: a degraded answer when a response carries a bad status.
 *
 * A price service answers every call, but sometimes with "status=STALE". A call-level fallback of
 * kind FTRPC_FALLBACK_ERRORS_AND_RESPONSES looks inside each successful response: it keeps the
 * last good price and serves it, marked as cached, in place of a stale one. Responses with a good
 * status pass through untouched (the function leaves its output empty).
 * Run: build/example_fallback_degraded */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <ftrpc/ftrpc.h>

#define SVC "example.PriceService"

static atomic_int served;

/* Every third answer is stale. */
static void quote(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    int n = atomic_fetch_add(&served, 1);
    char text[64];
    int len = n % 3 == 2 ? snprintf(text, sizeof text, "status=STALE price=0")
                         : snprintf(text, sizeof text, "status=OK price=%d", 40 + n);
    ftrpc_buf *b = ftrpc_buf_new();
    ftrpc_buf_append(b, text, (size_t)len);
    ftrpc_server_call_reply(call, b, NULL);
    ftrpc_buf_free(b);
}

/* The last good answer. The fallback runs on IO threads, possibly several at once: a short lock. */
typedef struct price_cache {
    pthread_mutex_t lock;
    char last_good[64];
} price_cache;

static void serve_cached_when_stale(const ftrpc_fallback_input *in, ftrpc_fallback_output *out,
                                    void *arg)
{
    price_cache *cache = arg;
    const ftrpc_result *r = in->result;
    char body[64] = {0};
    if (r->kind == FTRPC_RESULT_OK) ftrpc_buf_copy_to(r->response, body, sizeof body - 1);
    pthread_mutex_lock(&cache->lock);
    if (strncmp(body, "status=OK", 9) == 0) {
        snprintf(cache->last_good, sizeof cache->last_good, "%s", body); /* keep it, pass it on */
    } else if (cache->last_good[0]) {
        char text[96];
        int len = snprintf(text, sizeof text, "%s (cached)", cache->last_good);
        out->response = ftrpc_buf_new();
        ftrpc_buf_append(out->response, text, (size_t)len);
    } else {
        out->error_code = FTRPC_EINTERNAL; /* nothing good to fall back on: fail the call */
        snprintf(out->error_text, sizeof out->error_text, "no good price yet");
    }
    pthread_mutex_unlock(&cache->lock);
}

int main(void)
{
    ftrpc_server *server;
    int rc = ftrpc_server_new(NULL, &server);
    if (rc == 0) rc = ftrpc_server_add_method(server, SVC, "Quote", quote, NULL, NULL);
    if (rc == 0) rc = ftrpc_server_start(server, "127.0.0.1:0");
    if (rc != 0) {
        fprintf(stderr, "server: %s\n", ftrpc_strerror(rc));
        return 1;
    }
    char url[64];
    snprintf(url, sizeof url, "list://127.0.0.1:%d", ftrpc_server_port(server));
    ftrpc_client *client;
    rc = ftrpc_client_new(url, &(ftrpc_client_options){.timeout_ms = 500}, &client);
    if (rc != 0) {
        fprintf(stderr, "client: %s\n", ftrpc_strerror(rc));
        return 1;
    }

    price_cache cache = {.lock = PTHREAD_MUTEX_INITIALIZER};
    ftrpc_fallback fb = {
        .kind = FTRPC_FALLBACK_ERRORS_AND_RESPONSES,
        .fn = serve_cached_when_stale,
        .arg = &cache,
    };
    ftrpc_call_options copts = {.fallback =
                                    &fb}; /* this call's fallback: it wins over the client's */
    for (int i = 0; i < 6; i++) {
        ftrpc_result r;
        rc = ftrpc_call(client, SVC, "Quote", NULL, NULL, &copts, &r);
        if (rc == 0)
            printf("rc=0 from_fallback=%d answer=\"%.*s\"\n", r.from_fallback,
                   (int)ftrpc_buf_size(r.response), (const char *)ftrpc_buf_flatten(r.response));
        else
            printf("rc=%s from_fallback=%d (%s)\n", ftrpc_err_name(rc), r.from_fallback,
                   r.error_text);
        ftrpc_result_fini(&r);
    }
    ftrpc_client_free(client);
    ftrpc_server_free(server);
    return 0;
}
