/* The greeter's server (docs/services.md): helloworld.Greeter/SayHello implemented with the
 * Helloworld__Greeter_Service that protoc-c generates from greeter.proto.
 * Run: greeter_server [HOST:PORT]   (default 127.0.0.1:0: a free port)
 * Prints "listening on HOST:PORT", serves until SIGINT or SIGTERM, then stops gracefully. */
#define _POSIX_C_SOURCE 200809L /* sigwait, semaphores: POSIX, outside strict C11 */
#include <signal.h>
#include <stdio.h>

#include <ftrpc/ftrpc.h>
#include <ftrpc/typed.h>

#include "greeter.pb-c.h"

/* The implementation: answers at once, so the reply may live on the stack (it is packed before
 * the closure returns). closure_data names the call: ftrpc_typed_server_call(closure_data) gives
 * its deadline, peer and cancellation. */
static void greeter_say_hello(Helloworld__Greeter_Service *service,
                              const Helloworld__HelloRequest *req,
                              Helloworld__HelloReply_Closure closure, void *closure_data)
{
    (void)service;
    if (req->name[0] == '\0') {
        ftrpc_typed_server_fail(closure_data, 3001, "a name, please");
        closure(NULL, closure_data); /* NULL: the call fails with the code above */
        return;
    }
    char text[256];
    snprintf(text, sizeof text, "Hello, %s", req->name);
    Helloworld__HelloReply reply = HELLOWORLD__HELLO_REPLY__INIT;
    reply.message = text;
    closure(&reply, closure_data);
}

static Helloworld__Greeter_Service greeter = HELLOWORLD__GREETER__INIT(greeter_);

int main(int argc, char **argv)
{
    /* the signals are taken by sigwait below: blocked before any ftrpc thread starts */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    ftrpc_server *server;
    int rc = ftrpc_server_new(NULL, &server);
    if (rc == 0) rc = ftrpc_server_add_service(server, &greeter.base, NULL);
    if (rc == 0) rc = ftrpc_server_start(server, argc > 1 ? argv[1] : "127.0.0.1:0");
    if (rc != 0) {
        fprintf(stderr, "greeter_server: %s\n", ftrpc_strerror(rc));
        return 1;
    }
    printf("listening on 127.0.0.1:%d\n", ftrpc_server_port(server));
    fflush(stdout);
    int sig;
    sigwait(&stop, &sig);
    ftrpc_server_free(server); /* stops gracefully first */
    return 0;
}
