/* docs/fallback.md, example 1: a default answer during a total outage.
 *
 * A recommendation service answers while it runs; once it is gone, a client-level fallback of kind
 * FTRPC_FALLBACK_ERRORS answers every call with a default list instead of an error. The result
 * says which answers came from the fallback. Run: build/example_fallback_outage */
#include <stdio.h>
#include <string.h>

#include <ftrpc/ftrpc.h>

#define SVC "example.RecommendService"

static void top(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    ftrpc_buf *b = ftrpc_buf_new();
    ftrpc_buf_append(b, "live: dune, emma, ulysses", 25);
    ftrpc_server_call_reply(call, b, NULL);
    ftrpc_buf_free(b);
}

/* Runs on an IO thread once the call's retries are spent: must not block. */
static void default_list(const ftrpc_fallback_input *in, ftrpc_fallback_output *out, void *arg)
{
    (void)arg;
    printf("  fallback: %s/%s failed with %s\n", in->service, in->method,
           ftrpc_err_name(in->result->code));
    const char *text = "default: the week's bestsellers";
    out->response = ftrpc_buf_new(); /* the library owns it from here */
    ftrpc_buf_append(out->response, text, strlen(text));
}

static void call_once(ftrpc_client *client)
{
    ftrpc_result r;
    int rc = ftrpc_call(client, SVC, "Top", NULL, NULL, NULL, &r);
    if (rc == 0)
        printf("rc=0 from_fallback=%d attempts=%d answer=\"%.*s\"\n", r.from_fallback, r.attempts,
               (int)ftrpc_buf_size(r.response), (const char *)ftrpc_buf_flatten(r.response));
    else
        printf("rc=%s (%s)\n", ftrpc_err_name(rc), r.error_text);
    ftrpc_result_fini(&r);
}

int main(void)
{
    ftrpc_server *server;
    int rc = ftrpc_server_new(NULL, &server);
    if (rc == 0) rc = ftrpc_server_add_method(server, SVC, "Top", top, NULL, NULL);
    if (rc == 0) rc = ftrpc_server_start(server, "127.0.0.1:0");
    if (rc != 0) {
        fprintf(stderr, "server: %s\n", ftrpc_strerror(rc));
        return 1;
    }
    char url[64];
    snprintf(url, sizeof url, "list://127.0.0.1:%d", ftrpc_server_port(server));

    ftrpc_client_options opts = {
        .timeout_ms = 500,
        .fallback = {.kind = FTRPC_FALLBACK_ERRORS, .fn = default_list},
    };
    ftrpc_client *client;
    rc = ftrpc_client_new(url, &opts, &client);
    if (rc != 0) {
        fprintf(stderr, "client: %s\n", ftrpc_strerror(rc));
        return 1;
    }
    printf("-- service up\n");
    call_once(client);
    ftrpc_server_free(server); /* the outage: nothing listens on the port any more */
    printf("-- service down\n");
    for (int i = 0; i < 2; i++)
        call_once(client);
    ftrpc_client_free(client);
    return 0;
}
