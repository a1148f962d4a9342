/* A selective client (docs/backup-requests.md): two clusters of one echo server each, in one
 * process. Cluster A answers in 200 ms, cluster B at once; calls start on A ("priority") and, after
 * 20 ms without an answer, back up into B.
 * Run: build/example_selective
 * Prints, per call: the answer, which cluster and endpoint gave it, and whether a backup won. */
#include <stdio.h>
#include <time.h>

#include <ftrpc/ftrpc.h>

static void echo(ftrpc_server_call *call, void *arg)
{
    int delay_ms = *(const int *)arg;
    struct timespec ts = {0, (long)delay_ms * 1000000};
    nanosleep(&ts, NULL); /* a worker thread: it may block */
    ftrpc_server_call_reply(call, ftrpc_server_call_request(call), NULL);
}

static ftrpc_server *start_server(const int *delay_ms, char *url, size_t len)
{
    ftrpc_server *s;
    ftrpc_method_options mo = {.run_mode = FTRPC_RUN_IN_WORKER};
    if (ftrpc_server_new(NULL, &s) != 0) return NULL;
    if (ftrpc_server_add_method(s, "example.EchoService", "Echo", echo, (void *)delay_ms, &mo) !=
            0 ||
        ftrpc_server_start(s, "127.0.0.1:0") != 0) {
        ftrpc_server_free(s);
        return NULL;
    }
    snprintf(url, len, "list://127.0.0.1:%d", ftrpc_server_port(s));
    return s;
}

int main(void)
{
    static const int slow = 200, fast = 0;
    /* two servers of one method in one process share its metric names: quiet the warning */
    ftrpc_log_set_level(FTRPC_LOG_ERROR);
    char url_a[64], url_b[64];
    ftrpc_server *a = start_server(&slow, url_a, sizeof url_a);
    ftrpc_server *b = start_server(&fast, url_b, sizeof url_b);
    if (!a || !b) {
        fprintf(stderr, "cannot start the servers\n");
        return 1;
    }

    /* one full client per cluster: its own naming URL, balancer and health */
    ftrpc_client *subs[2];
    if (ftrpc_client_new(url_a, NULL, &subs[0]) != 0) return 1;
    if (ftrpc_client_new(url_b, NULL, &subs[1]) != 0) return 1;

    /* the selective client: how calls behave, and the balancer over the clusters */
    ftrpc_client_options o = {
        .timeout_ms = 1000,
        .fail_mode = FTRPC_FAILBACKUP,
        .backup_request_ms = 20,
        .lb = "priority", /* A first; the default "rr" alternates */
    };
    ftrpc_client *client;
    int rc = ftrpc_selective_client_new(subs, 2, &o, &client);
    if (rc != 0) { /* the sub-clients are still ours */
        fprintf(stderr, "selective client: %s\n", ftrpc_strerror(rc));
        ftrpc_client_free(subs[0]);
        ftrpc_client_free(subs[1]);
        return 1;
    }
    /* from here on the selective client owns subs[0] and subs[1] */

    ftrpc_buf *req = ftrpc_buf_new();
    ftrpc_buf_append(req, "hi", 2);
    for (int i = 0; i < 3 && rc == 0; i++) {
        ftrpc_result r;
        rc = ftrpc_call(client, "example.EchoService", "Echo", req, NULL, NULL, &r);
        if (rc == 0)
            printf("%.*s cluster=%d endpoint=%s attempts=%d backups=%d backup_won=%d "
                   "latency_us=%lld\n",
                   (int)ftrpc_buf_size(r.response), (const char *)ftrpc_buf_flatten(r.response),
                   r.cluster, r.endpoint, r.attempts, r.backups, r.backup_won,
                   (long long)r.latency_us);
        else
            fprintf(stderr, "%s: %s\n", ftrpc_err_name(r.code), r.error_text);
        ftrpc_result_fini(&r);
    }
    ftrpc_buf_free(req);
    ftrpc_client_free(client); /* frees subs[0] and subs[1] too */
    ftrpc_server_free(a);
    ftrpc_server_free(b);
    return rc == 0 ? 0 : 1;
}
