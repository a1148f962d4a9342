/* The README's example: an echo server and a client calling it, in one process.
 * Run: build/example_echo [PORT]   (default 8000; 0 picks a free one) */
#include <stdio.h>
#include <stdlib.h>

#include <ftrpc/ftrpc.h>

static void echo(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    /* reply with the request's bytes: shared, not copied */
    ftrpc_server_call_reply(call, ftrpc_server_call_request(call), NULL);
}

int main(int argc, char **argv)
{
    char listen_addr[64], url[80];
    snprintf(listen_addr, sizeof listen_addr, "127.0.0.1:%s", argc > 1 ? argv[1] : "8000");

    ftrpc_server *server;
    int rc = ftrpc_server_new(NULL, &server);
    if (rc == 0)
        rc = ftrpc_server_add_method(server, "example.EchoService", "Echo", echo, NULL, NULL);
    if (rc == 0) rc = ftrpc_server_start(server, listen_addr);
    if (rc != 0) {
        fprintf(stderr, "server: %s\n", ftrpc_strerror(rc));
        return 1;
    }
    snprintf(url, sizeof url, "list://127.0.0.1:%d", ftrpc_server_port(server));

    ftrpc_client *client;
    rc = ftrpc_client_new(url, &(ftrpc_client_options){.timeout_ms = 500}, &client);
    if (rc != 0) {
        fprintf(stderr, "client: %s\n", ftrpc_strerror(rc));
        return 1;
    }
    ftrpc_buf *req = ftrpc_buf_new();
    ftrpc_buf_append(req, "hi", 2);
    ftrpc_result result;
    rc = ftrpc_call(client, "example.EchoService", "Echo", req, NULL, NULL, &result);
    if (rc == 0)
        printf("%.*s\n", (int)ftrpc_buf_size(result.response),
               (const char *)ftrpc_buf_flatten(result.response));
    else
        fprintf(stderr, "%s: %s\n", ftrpc_err_name(result.code), result.error_text);
    ftrpc_result_fini(&result);
    ftrpc_buf_free(req);
    ftrpc_client_free(client);
    ftrpc_server_free(server); /* stops gracefully first */
    return rc == 0 ? 0 : 1;
}
