/* docs/endpoint-health.md: a primary and a standby, and what endpoint health does when the primary
 * freezes, fails every call, stops, and comes back.
 *
 * Both servers run in this process. The client uses the "priority" balancer, so every call goes to
 * the primary while its health lets it, and to the standby otherwise; with failover, a failed
 * attempt on the primary is retried on the standby, so no call fails. One call every 10 ms; for
 * each phase the program prints the health log's lines as they happen (every suspension, every
 * successful probe) and then who answered and how many calls needed more than one attempt.
 * Run: build/example_endpoint_health */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <ftrpc/ftrpc.h>

#define SVC "example.EchoService"

enum { HEALTHY, FROZEN, FAILING };
static atomic_int mode = HEALTHY; /* what the primary does with a call */

/* Calls the frozen primary holds without answering (a handler must finish every call once: they
 * are answered when it thaws, long after the client gave up on them). */
static pthread_mutex_t parked_lock = PTHREAD_MUTEX_INITIALIZER;
static ftrpc_server_call *parked[1024];
static int nparked;

static void primary_echo(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    int m = atomic_load(&mode);
    if (m == FAILING) {
        ftrpc_server_call_fail(call, FTRPC_EINTERNAL, "primary is failing");
        return;
    }
    if (m == FROZEN) {
        pthread_mutex_lock(&parked_lock);
        if (nparked < (int)(sizeof parked / sizeof parked[0])) {
            parked[nparked++] = call;
            call = NULL;
        }
        pthread_mutex_unlock(&parked_lock);
        if (!call) return;
    }
    ftrpc_server_call_reply(call, ftrpc_server_call_request(call), NULL);
}

static void standby_echo(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    ftrpc_server_call_reply(call, ftrpc_server_call_request(call), NULL);
}

/* The health log's debug lines, as "  health: suspended for 200 ms (n=1, code -1008)". Errors are
 * printed too; the rest is left out (among it the warning that the two servers' metrics for the
 * same method clash, which they do because both live in this one process). */
static void log_sink(ftrpc_log_level level, const char *msg, void *arg)
{
    (void)arg;
    const char *h = strstr(msg, "endpoint health ");
    const char *colon = h ? strstr(h, ": ") : NULL;
    if (colon)
        printf("  health: %s\n", colon + 2);
    else if (level >= FTRPC_LOG_ERROR)
        printf("  log: %s\n", msg);
}

static void thaw(void)
{
    atomic_store(&mode, HEALTHY);
    pthread_mutex_lock(&parked_lock);
    for (int i = 0; i < nparked; i++) /* any thread may finish a call */
        ftrpc_server_call_reply(parked[i], ftrpc_server_call_request(parked[i]), NULL);
    nparked = 0;
    pthread_mutex_unlock(&parked_lock);
}

static ftrpc_server *start(const char *addr, ftrpc_handler_cb handler)
{
    ftrpc_server *s;
    if (ftrpc_server_new(NULL, &s) != 0) return NULL;
    if (ftrpc_server_add_method(s, SVC, "Echo", handler, NULL, NULL) != 0 ||
        ftrpc_server_start(s, addr) != 0) {
        ftrpc_server_free(s);
        return NULL;
    }
    return s;
}

/* Makes `n` calls, one every 10 ms, and prints how they went. */
static void phase(ftrpc_client *client, const char *title, int n, const char *primary)
{
    ftrpc_buf *req = ftrpc_buf_new();
    ftrpc_buf_append(req, "hi", 2);
    int by_primary = 0, by_standby = 0, retried = 0, failed = 0, last = -1;
    printf("%s\n", title);
    fflush(stdout);
    for (int i = 0; i < n; i++) {
        ftrpc_result r;
        int rc = ftrpc_call(client, SVC, "Echo", req, NULL, NULL, &r);
        if (rc != 0) {
            failed++;
        } else if (strcmp(r.endpoint, primary) == 0) {
            by_primary++;
            last = 1;
        } else {
            by_standby++;
            last = 0;
        }
        if (r.attempts > 1) retried++;
        ftrpc_result_fini(&r);
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
    }
    printf("  %d calls: primary %d, standby %d, failed %d, more than one attempt %d; last answer: "
           "%s\n",
           n, by_primary, by_standby, failed, retried, last == 1 ? "primary" : "standby");
    ftrpc_buf_free(req);
}

int main(void)
{
    ftrpc_log_set_sink(log_sink, NULL);
    ftrpc_log_set_level(FTRPC_LOG_DEBUG);
    ftrpc_server *primary = start("127.0.0.1:0", primary_echo);
    ftrpc_server *standby = start("127.0.0.1:0", standby_echo);
    if (!primary || !standby) {
        fprintf(stderr, "cannot start the servers\n");
        return 1;
    }
    char paddr[32], url[96];
    snprintf(paddr, sizeof paddr, "127.0.0.1:%d", ftrpc_server_port(primary));
    snprintf(url, sizeof url, "list://%s,127.0.0.1:%d", paddr, ftrpc_server_port(standby));

    ftrpc_health_options health = {
        .initial_suspension_ms = 200,   /* default 1000; the factor stays 2: 200, 400, 800, ... */
        .maximum_suspension_ms = 1600,  /* default 30000 */
        .retries_before_suspension = 1, /* default 0: here the second timeout in a row suspends */
        .breaker_min_calls = 10,        /* default 20 */
        .breaker_window_ms = 1000,      /* default 10000 */
    };
    ftrpc_client_options o = {
        .lb = "priority",         /* the list's order: the primary while it is usable */
        .attempt_timeout_ms = 50, /* a frozen server costs an attempt 50 ms, not the deadline */
        .health = health,
    };
    ftrpc_client *client;
    int rc = ftrpc_client_new(url, &o, &client);
    if (rc != 0) {
        fprintf(stderr, "client: %s\n", ftrpc_strerror(rc));
        return 1;
    }
    printf("primary %s, standby 127.0.0.1:%d\n", paddr, ftrpc_server_port(standby));

    phase(client, "healthy", 50, paddr);
    atomic_store(&mode, FROZEN);
    phase(client, "primary frozen (1 s)", 100, paddr);
    thaw();
    phase(client, "primary thawed", 100, paddr);
    atomic_store(&mode, FAILING);
    phase(client, "primary fails every call (1.5 s)", 150, paddr);
    atomic_store(&mode, HEALTHY);
    phase(client, "primary answers again", 150, paddr);
    ftrpc_server_free(primary);
    phase(client, "primary stopped (1 s)", 100, paddr);
    primary = start(paddr, primary_echo); /* the same port */
    phase(client, "primary restarted", 150, paddr);

    ftrpc_client_free(client);
    ftrpc_server_free(primary);
    ftrpc_server_free(standby);
    return 0;
}
