/* The greeter's client (docs/services.md): calls helloworld.Greeter/SayHello through the stub
 * protoc-c generates, over an ftrpc client (failover, retries and backup requests apply).
 * Run: greeter_client NAMING_URL [NAME]   e.g. greeter_client list://127.0.0.1:8000 world
 * Prints the reply ("Hello, world"); on failure the error, and exits 1. */
#define _POSIX_C_SOURCE 200809L /* sigwait, semaphores: POSIX, outside strict C11 */
#include <semaphore.h>
#include <stdio.h>

#include <ftrpc/ftrpc.h>
#include <ftrpc/typed.h>

#include "greeter.pb-c.h"

struct outcome {
    sem_t done;
    int ok;
};

/* Runs once, on an IO thread: the reply, or NULL on failure (ftrpc_typed_result() says why). The
 * reply is freed when this returns. */
static void on_reply(const Helloworld__HelloReply *reply, void *closure_data)
{
    struct outcome *out = closure_data;
    const ftrpc_result *r = ftrpc_typed_result();
    if (reply) {
        printf("%s\n", reply->message);
        out->ok = 1;
    } else if (r->kind == FTRPC_RESULT_BUSINESS_ERROR) {
        fprintf(stderr, "error %d: %s\n", r->code, r->error_text); /* the server's own code */
    } else {
        fprintf(stderr, "%s: %s\n", ftrpc_err_name(r->code), r->error_text);
    }
    sem_post(&out->done);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: greeter_client NAMING_URL [NAME]\n");
        return 2;
    }
    ftrpc_client *client;
    int rc = ftrpc_client_new(argv[1], &(ftrpc_client_options){.timeout_ms = 1000}, &client);
    ProtobufCService *greeter = NULL;
    if (rc == 0)
        rc = ftrpc_typed_client_new(client, &helloworld__greeter__descriptor, NULL, &greeter);
    if (rc != 0) {
        fprintf(stderr, "greeter_client: %s\n", ftrpc_strerror(rc));
        return 1;
    }
    Helloworld__HelloRequest req = HELLOWORLD__HELLO_REQUEST__INIT;
    req.name = argc > 2 ? argv[2] : "world";
    struct outcome out = {.ok = 0};
    sem_init(&out.done, 0, 0);
    helloworld__greeter__say_hello(greeter, &req, on_reply, &out);
    sem_wait(&out.done);
    sem_destroy(&out.done);
    ftrpc_typed_client_free(greeter);
    ftrpc_client_free(client);
    return out.ok ? 0 : 1;
}
