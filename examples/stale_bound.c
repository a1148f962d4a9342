/* docs/discovery.md, "Bounding a stale list": a client's cached view with a stale bound.
 *
 * A server registers in a dir:// registry with go-micro's TTL 30 s / interval 15 s scaled down to
 * 1 s / 0.5 s, under an instance id of its own. A client sets naming_max_stale_ms = 1000. The
 * registry folder is then swapped for a plain file: neither the registrar nor the client can read
 * it, the server runs on. The client serves its last list (stale) until the outage is 1 s old and
 * the entry's TTL has passed, noticed at the watch's next re-read (every 5 s), and its calls then
 * fail with FTRPC_ENOENDPOINT; when the folder is back, the registrar writes its entry again and
 * the calls work. Only a change of outcome is printed. Run: build/example_stale_bound */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* renameat2 */
#endif
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h> /* mkdtemp */
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ftrpc/ftrpc.h>

#define SVC "example.EchoService"

static void echo(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    ftrpc_server_call_reply(call, ftrpc_server_call_request(call), NULL);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Calls every 100 ms until the outcome is `until` or `limit_s` passed; prints each change. */
static void call_until(ftrpc_client *client, double t0, int until, double limit_s)
{
    int last = 1;
    double start = now_s();
    while (now_s() - start < limit_s) {
        ftrpc_result r;
        int rc = ftrpc_call(client, SVC, "Echo", NULL, NULL, NULL, &r);
        if (rc != last)
            printf("  t=%4.1f s  %s%s%s\n", now_s() - t0, rc ? ftrpc_err_name(rc) : "ok",
                   rc ? "" : " from ", rc ? "" : r.endpoint);
        last = rc;
        ftrpc_result_fini(&r);
        if (rc == until) return;
        usleep(100 * 1000);
    }
}

int main(void)
{
    char dir[] = "/tmp/ftrpc-stale-XXXXXX", away[64], reg[128], url[128];
    if (!mkdtemp(dir)) return 1;
    snprintf(away, sizeof away, "%s.away", dir);
    snprintf(reg, sizeof reg, "dir://%s?service=" SVC, dir);
    ftrpc_server_options so = {.register_url = reg,
                               .register_ttl_ms = 1000,     /* go-micro: 30 s */
                               .register_interval_ms = 500, /* go-micro: 15 s */
                               .register_id = "echo-1"};
    ftrpc_server *server = NULL;
    int rc = ftrpc_server_new(&so, &server);
    rc = rc ? rc : ftrpc_server_add_method(server, SVC, "Echo", echo, NULL, NULL);
    rc = rc ? rc : ftrpc_server_start(server, "127.0.0.1:0");
    snprintf(url, sizeof url, "dir://%s?service=" SVC, dir);
    ftrpc_client_options co = {.naming_max_stale_ms = 1000}; /* default 0: no bound */
    ftrpc_client *client = NULL;
    rc = rc ? rc : ftrpc_client_new(url, &co, &client);
    if (rc != 0) {
        fprintf(stderr, "cannot start: %s\n", ftrpc_strerror(rc));
        return 1;
    }
    printf("server 127.0.0.1:%d registered as id=%s (TTL 1 s, interval 0.5 s)\n",
           ftrpc_server_port(server), ftrpc_server_register_id(server));
    double t0 = now_s();
    printf("-- registry up\n");
    call_until(client, t0, -999, 0.3);
    printf("-- registry unreachable (the folder swapped for a file); the server runs on\n");
    FILE *f = fopen(away, "w");
    if (f) fclose(f);
    if (!f || renameat2(AT_FDCWD, dir, AT_FDCWD, away, RENAME_EXCHANGE) != 0) return 1;
    t0 = now_s();
    call_until(client, t0, FTRPC_ENOENDPOINT, 15);
    printf("-- registry back\n");
    if (renameat2(AT_FDCWD, away, AT_FDCWD, dir, RENAME_EXCHANGE) != 0) return 1;
    unlink(away);
    t0 = now_s();
    call_until(client, t0, 0, 5);
    ftrpc_client_free(client);
    ftrpc_server_free(server); /* removes its entry: the folder is empty again */
    rmdir(dir);
    return 0;
}
