/* docs/endpoint-health.md, "WSO2's semantics": WSO2's failover example 1 as ftrpc options, a
 * primary and a secondary in this process.
 *
 * The client runs in the WSO2 profile (ftrpc_health_options_wso2) with example 1's
 * markForSuspension and suspendOnFailure values. The primary first answers, then fails every call
 * with FTRPC_EINTERNAL, an error in neither list: WSO2 suspends the endpoint for it ("all the other
 * errors"), so the primary loses the traffic at its first failure, where ftrpc's default would
 * wait for the breaker. It answers again, takes the traffic back once its 1 s suspension ends, and
 * is then switched OFF and ON by hand, as an operator would through the admin page.
 * Run: build/example_wso2_failover */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <ftrpc/ftrpc.h>

static atomic_int failing; /* the primary fails every call while set */

static void primary_handler(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    if (atomic_load(&failing))
        ftrpc_server_call_fail(call, FTRPC_EINTERNAL, "primary is failing");
    else
        ftrpc_server_call_reply(call, ftrpc_server_call_request(call), NULL);
}

static void secondary_handler(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    ftrpc_server_call_reply(call, ftrpc_server_call_request(call), NULL);
}

static ftrpc_server *serve(ftrpc_handler_cb handler, char *addr, size_t len)
{
    ftrpc_server *s = NULL;
    if (ftrpc_server_new(NULL, &s) == 0 &&
        ftrpc_server_add_method(s, "example.EchoService", "Echo", handler, NULL, NULL) == 0 &&
        ftrpc_server_start(s, "127.0.0.1:0") == 0) {
        snprintf(addr, len, "127.0.0.1:%d", ftrpc_server_port(s));
        return s;
    }
    ftrpc_server_free(s);
    return NULL;
}

static const char *state_name(int st)
{
    static const char *const NAMES[] = {"ACTIVE", "TIMEOUT", "SUSPENDED", "PROBING", "OFF"};
    return st >= 0 && st <= 4 ? NAMES[st] : ftrpc_strerror(st);
}

/* `n` calls 10 ms apart; prints who answered them and the primary's state afterwards. */
static void run(ftrpc_client *client, const char *what, int n, const char *primary)
{
    int answered[2] = {0, 0}, failed = 0, attempts = 0;
    for (int i = 0; i < n; i++) {
        ftrpc_result r;
        if (ftrpc_call(client, "example.EchoService", "Echo", NULL, NULL, NULL, &r) == 0)
            answered[strcmp(r.endpoint, primary) == 0 ? 0 : 1]++;
        else
            failed++;
        attempts += r.attempts;
        ftrpc_result_fini(&r);
        nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
    }
    int64_t left = 0;
    int st = ftrpc_client_endpoint_state(client, primary, &left);
    printf("%-34s %3d calls (%3d attempts): primary %3d, secondary %3d, failed %d; primary %s",
           what, n, attempts, answered[0], answered[1], failed, state_name(st));
    if (st == FTRPC_ENDPOINT_SUSPENDED) printf(" for %lld ms more", (long long)left);
    printf("\n");
}

int main(void)
{
    /* both servers register the same method's metrics in this one process: not worth a warning */
    ftrpc_log_set_level(FTRPC_LOG_ERROR);
    char primary[32], secondary[32], url[80];
    ftrpc_server *p = serve(primary_handler, primary, sizeof primary);
    ftrpc_server *s = serve(secondary_handler, secondary, sizeof secondary);
    if (!p || !s) {
        fprintf(stderr, "cannot start the servers\n");
        return 1;
    }
    snprintf(url, sizeof url, "list://%s,%s", primary, secondary);

    ftrpc_health_options h;
    ftrpc_health_options_wso2(&h);
    h.mark_codes[0] = FTRPC_ERPCTIMEDOUT;  /* markForSuspension errorCodes 101504 */
    h.mark_codes[1] = FTRPC_EFAILEDSOCKET; /* 101505 */
    h.mark_codes[2] = FTRPC_EEOF;
    h.retries_before_suspension = 3;
    h.retry_delay_ms = 10;
    h.initial_suspension_ms = 1000; /* suspendOnFailure */
    h.progression_factor = 2;
    h.maximum_suspension_ms = 64000;
    ftrpc_client_options o = {.lb = "priority", .health = h};
    ftrpc_client *client = NULL;
    int rc = ftrpc_client_new(url, &o, &client);
    if (rc != 0) {
        fprintf(stderr, "client: %s\n", ftrpc_strerror(rc));
        return 1;
    }
    printf("WSO2 failover group: primary %s, secondary %s\n", primary, secondary);
    run(client, "healthy", 20, primary);
    atomic_store(&failing, 1);
    run(client, "primary fails with EINTERNAL", 20, primary);
    atomic_store(&failing, 0);
    run(client, "primary answers again (1.2 s)", 120, primary);
    ftrpc_client_endpoint_switch(client, primary, 0);
    run(client, "primary switched OFF", 20, primary);
    ftrpc_client_endpoint_switch(client, primary, 1);
    run(client, "primary switched ON", 20, primary);
    ftrpc_client_free(client);
    ftrpc_server_free(p);
    ftrpc_server_free(s);
    return 0;
}
