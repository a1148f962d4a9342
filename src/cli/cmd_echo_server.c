/* `ftrpc echo-server`: serves example.EchoService/Echo, answering with the request's payload and
 * attachment unchanged (so a brpc echo client, whose EchoRequest and EchoResponse share field 1,
 * can call it), with faults injected on demand for tests and demos.
 *
 * Delayed replies are held by one timer thread of this command (a handler on an IO thread must
 * not sleep); hung calls are held until the server stops, then dropped with their connections.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ftrpc/ftrpc.h>

#include "cli.h"

typedef struct fault_config {
    long delay_ms;
    double delay_rate;
    long delay_every; /* > 0: delay exactly every delay_every-th request received (brpc's example:
                       * 2, every other one), instead of a random share */
    double error_rate;
    long error_code;
    double hang_rate;
} fault_config;

/* Calls waiting for their delay to pass, or hung: a small list guarded by one lock. */
typedef struct held_call {
    ftrpc_server_call *call;
    int64_t due_ns; /* INT64_MAX: hung */
    struct held_call *next;
} held_call;

static fault_config faults;
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t held_cond = PTHREAD_COND_INITIALIZER;
static held_call *held;
static int delay_thread_stop;
static long work_ms; /* --work-ms: the handler holds its thread this long */
/* Requests the handler answered with their echo (--stats-on-exit prints it): the server's side of
 * the chaos suite's accounting, where every call a client counts OK was answered here once. */
static atomic_long answered;
/* Echo requests received (--delay-every counts them: backups and retries included). */
static atomic_long received;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double uniform(void)
{
    static _Thread_local uint64_t s;
    if (!s) s = (uint64_t)now_ns() ^ ((uint64_t)(uintptr_t)&s << 16) ^ (uint64_t)getpid();
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return (double)(s >> 11) / (double)(UINT64_C(1) << 53);
}

static void echo(ftrpc_server_call *call)
{
    atomic_fetch_add_explicit(&answered, 1, memory_order_relaxed);
    ftrpc_server_call_reply(call, ftrpc_server_call_request(call),
                            ftrpc_server_call_attachment(call));
}

static void hold(ftrpc_server_call *call, int64_t due_ns)
{
    held_call *h = malloc(sizeof *h);
    if (!h) {
        echo(call);
        return;
    }
    h->call = call;
    h->due_ns = due_ns;
    pthread_mutex_lock(&held_lock);
    h->next = held;
    held = h;
    pthread_cond_signal(&held_cond);
    pthread_mutex_unlock(&held_lock);
}

static void *delay_thread(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&held_lock);
    while (!delay_thread_stop) {
        int64_t now = now_ns(), next = INT64_MAX;
        for (held_call **pp = &held; *pp;) {
            held_call *h = *pp;
            if (h->due_ns <= now) {
                *pp = h->next;
                echo(h->call); /* replying from any thread is allowed */
                free(h);
                continue;
            }
            if (h->due_ns < next) next = h->due_ns;
            pp = &h->next;
        }
        if (next == INT64_MAX) {
            pthread_cond_wait(&held_cond, &held_lock);
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t wait = next - now;
            ts.tv_sec += wait / 1000000000;
            ts.tv_nsec += wait % 1000000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&held_cond, &held_lock, &ts);
        }
    }
    pthread_mutex_unlock(&held_lock);
    return NULL;
}

static void on_echo(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    if (faults.hang_rate > 0 && uniform() < faults.hang_rate) {
        hold(call, INT64_MAX);
        return;
    }
    if (faults.error_rate > 0 && uniform() < faults.error_rate) {
        ftrpc_server_call_fail(call, (int)faults.error_code, "injected fault");
        return;
    }
    if (work_ms > 0) {
        struct timespec ts = {work_ms / 1000, (work_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    long nth = atomic_fetch_add_explicit(&received, 1, memory_order_relaxed) + 1;
    if (faults.delay_ms > 0 &&
        (faults.delay_every > 0 ? nth % faults.delay_every == 0 : uniform() < faults.delay_rate)) {
        hold(call, now_ns() + faults.delay_ms * 1000000);
        return;
    }
    echo(call);
}

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: ftrpc echo-server --listen HOST:PORT [options]\n\n"
        "Serves example.EchoService/Echo: answers with the request's payload and attachment.\n"
        "Prints 'listening on HOST:PORT' once ready; SIGTERM or SIGINT stops it gracefully.\n\n"
        "  --listen HOST:PORT   address to listen on (port 0: any free port)\n"
        "  --delay-ms N         delay replies by N ms ...\n"
        "  --delay-rate P       ... for a share P of calls (default 1 when --delay-ms is set)\n"
        "  --delay-every N      ... for every N-th request received instead (2: every other\n"
        "                       one, backups included, as brpc's backup-request example)\n"
        "  --error-rate P       fail a share P of calls ...\n"
        "  --error-code C       ... with code C (default 2001, EINTERNAL: an RPC error;\n"
        "                       codes >= 3000 are business errors)\n"
        "  --hang-rate P        never answer a share P of calls\n"
        "  --workers            run the handler on the worker pool instead of the IO thread\n"
        "  --worker-threads N   the worker pool's threads (default: one per core)\n"
        "  --work-ms N          the handler holds its thread N ms before answering (a sleep:\n"
        "                       with --workers, a pool of N threads serves N/work-ms calls/s)\n"
        "  --max-concurrency V  server-wide limit: a count, auto (brpc's adaptive limiter),\n"
        "                       timeout, or none (default); ELIMIT past it (docs/overload.md)\n"
        "  --grace-ms N         graceful stop waits N ms for calls in flight (default 5000)\n"
        "  --stats-on-exit      print 'answered N' (echo replies sent) to stderr on exit\n"
        "  --rpcz[=N]           record the last N calls (default 256) for the /rpcz page\n"
        "                       (docs/observability.md, rpcz)\n\n"
        "Discovery (docs/discovery.md):\n"
        "  --register URL       register in a naming service, e.g. dir:///tmp/reg\n"
        "  --service NAME       service name to register under (added to URL as ?service=)\n"
        "  --ttl S              entry lifetime without refresh (default 90)\n"
        "  --interval S         refresh period, < ttl (default 30); fractions allowed\n"
        "  --weight W           load-balancing weight (default 100)\n"
        "  --tags T             tags, a|b\n"
        "  --id ID              instance id in the registry (default: a new UUID per start)\n\n"
        "Security and limits (docs/security.md):\n"
        "  --auth-token TEXT    accept only connections whose first request carries TEXT\n"
        "                       as authentication_data; others get ERPCAUTH and are closed.\n"
        "                       HTTP requests send \"Authorization: Bearer TEXT\" (else 401)\n"
        "  --public-pages       serve the builtin pages without the token (/health always is)\n"
        "  --max-connections N  past N open connections new ones close at once (default 10000)\n"
        "  --idle-timeout-ms N  close a connection silent for N ms (default 600000; -1 never)\n"
        "  --read-timeout-ms N  a started frame must complete within N ms (default 10000;\n"
        "                       -1 never)\n"
        "  --max-inflight-per-connection N\n"
        "                       past N unfinished requests on one connection, more get ELIMIT\n"
        "                       (default 1024)\n"
        "  --max-pending-request-bytes N\n"
        "                       bytes all unfinished requests may hold together; a read past\n"
        "                       it closes its connection (default 268435456)\n\n"
        "TLS (docs/security.md); plain and TLS share the port unless --force-tls:\n"
        "  --tls-cert FILE      certificate chain (PEM, leaf first): turns TLS on\n"
        "  --tls-key FILE       its private key (PEM)\n"
        "  --tls-client-ca FILE mutual TLS: clients must present a certificate this CA\n"
        "                       bundle (PEM) verifies\n"
        "  --tls-ca FILE        the same, but a client without a certificate is still served\n"
        "  --force-tls          refuse plain connections (closed at their first byte)\n");
}

int ft_cli_echo_server(int argc, char **argv)
{
    static const struct option opts[] = {{"listen", required_argument, 0, 'l'},
                                         {"delay-ms", required_argument, 0, 'd'},
                                         {"delay-rate", required_argument, 0, 'D'},
                                         {"delay-every", required_argument, 0, 'E'},
                                         {"error-rate", required_argument, 0, 'e'},
                                         {"error-code", required_argument, 0, 'c'},
                                         {"hang-rate", required_argument, 0, 'H'},
                                         {"workers", no_argument, 0, 'w'},
                                         {"worker-threads", required_argument, 0, 'j'},
                                         {"work-ms", required_argument, 0, 'k'},
                                         {"max-concurrency", required_argument, 0, 'y'},
                                         {"grace-ms", required_argument, 0, 'g'},
                                         {"register", required_argument, 0, 'R'},
                                         {"service", required_argument, 0, 'S'},
                                         {"ttl", required_argument, 0, 'T'},
                                         {"interval", required_argument, 0, 'I'},
                                         {"weight", required_argument, 0, 'W'},
                                         {"tags", required_argument, 0, 'G'},
                                         {"id", required_argument, 0, 'N'},
                                         {"auth-token", required_argument, 0, 'A'},
                                         {"max-connections", required_argument, 0, 'M'},
                                         {"idle-timeout-ms", required_argument, 0, 'i'},
                                         {"read-timeout-ms", required_argument, 0, 'r'},
                                         {"max-inflight-per-connection", required_argument, 0, 'F'},
                                         {"max-pending-request-bytes", required_argument, 0, 'B'},
                                         {"stats-on-exit", no_argument, 0, 'x'},
                                         {"tls-cert", required_argument, 0, 'C'},
                                         {"tls-key", required_argument, 0, 'K'},
                                         {"tls-ca", required_argument, 0, 'a'},
                                         {"tls-client-ca", required_argument, 0, 'Q'},
                                         {"force-tls", no_argument, 0, 'f'},
                                         {"public-pages", no_argument, 0, 'P'},
                                         {"rpcz", optional_argument, 0, 'z'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *auth_token = NULL;
    ftrpc_server_tls_options tls = {0};
    long max_connections = 0, idle_timeout_ms = 0, read_timeout_ms = 0, max_inflight = 0;
    long max_pending = 0;
    const char *reg_url = NULL, *reg_service = NULL, *reg_tags = NULL, *reg_id = NULL;
    double ttl_s = 90, interval_s = 30;
    long weight = 0;
    const char *listen_addr = NULL;
    int delay_rate_set = 0, workers = 0, stats_on_exit = 0, public_pages = 0;
    long grace_ms = 5000, worker_threads = 0;
    int max_concurrency = 0;
    faults = (fault_config){.error_code = 2001};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            listen_addr = optarg;
            break;
        case 'd':
            if (ft_cli_parse_int("--delay-ms", optarg, 0, 3600000, &faults.delay_ms)) return 2;
            break;
        case 'D':
            if (ft_cli_parse_rate("--delay-rate", optarg, &faults.delay_rate)) return 2;
            delay_rate_set = 1;
            break;
        case 'E':
            if (ft_cli_parse_int("--delay-every", optarg, 1, 1000000, &faults.delay_every))
                return 2;
            break;
        case 'e':
            if (ft_cli_parse_rate("--error-rate", optarg, &faults.error_rate)) return 2;
            break;
        case 'c':
            if (ft_cli_parse_int("--error-code", optarg, -2147483647L, 2147483647L,
                                 &faults.error_code))
                return 2;
            if (faults.error_code == 0) {
                fprintf(stderr, "ftrpc: --error-code 0 means success; pick another code\n");
                return 2;
            }
            break;
        case 'H':
            if (ft_cli_parse_rate("--hang-rate", optarg, &faults.hang_rate)) return 2;
            break;
        case 'w':
            workers = 1;
            break;
        case 'j':
            if (ft_cli_parse_int("--worker-threads", optarg, 1, 1024, &worker_threads)) return 2;
            break;
        case 'k':
            if (ft_cli_parse_int("--work-ms", optarg, 0, 60000, &work_ms)) return 2;
            break;
        case 'y':
            if (ftrpc_max_concurrency_parse(optarg, &max_concurrency) != 0) {
                fprintf(stderr,
                        "ftrpc: --max-concurrency wants a count, auto, timeout or none, "
                        "not '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 'x':
            stats_on_exit = 1;
            break;
        case 'g':
            if (ft_cli_parse_int("--grace-ms", optarg, 0, 600000, &grace_ms)) return 2;
            break;
        case 'R':
            reg_url = optarg;
            break;
        case 'S':
            reg_service = optarg;
            break;
        case 'G':
            reg_tags = optarg;
            break;
        case 'T':
        case 'I': {
            char *end;
            double v = strtod(optarg, &end);
            if (*end || v <= 0 || v > 86400) {
                fprintf(stderr, "ftrpc: --%s wants seconds in (0, 86400]\n",
                        c == 'T' ? "ttl" : "interval");
                return 2;
            }
            *(c == 'T' ? &ttl_s : &interval_s) = v;
            break;
        }
        case 'W':
            if (ft_cli_parse_int("--weight", optarg, 1, 65535, &weight)) return 2;
            break;
        case 'N':
            reg_id = optarg; /* checked by ftrpc_server_start */
            break;
        case 'A':
            if (!*optarg) {
                fprintf(stderr, "ftrpc: --auth-token wants a non-empty token\n");
                return 2;
            }
            auth_token = optarg;
            break;
        case 'M':
            if (ft_cli_parse_int("--max-connections", optarg, 1, 10000000, &max_connections))
                return 2;
            break;
        case 'i':
        case 'r':
            if (ft_cli_parse_int(c == 'i' ? "--idle-timeout-ms" : "--read-timeout-ms", optarg, -1,
                                 86400000, c == 'i' ? &idle_timeout_ms : &read_timeout_ms))
                return 2;
            if ((c == 'i' ? idle_timeout_ms : read_timeout_ms) == 0) {
                fprintf(stderr, "ftrpc: --%s wants milliseconds > 0, or -1 for never\n",
                        c == 'i' ? "idle-timeout-ms" : "read-timeout-ms");
                return 2;
            }
            break;
        case 'F':
            if (ft_cli_parse_int("--max-inflight-per-connection", optarg, 1, 10000000,
                                 &max_inflight))
                return 2;
            break;
        case 'B':
            if (ft_cli_parse_int("--max-pending-request-bytes", optarg, 1, LONG_MAX, &max_pending))
                return 2;
            break;
        case 'C':
            tls.cert_file = optarg;
            break;
        case 'K':
            tls.key_file = optarg;
            break;
        case 'a':
        case 'Q':
            tls.client_ca_file = optarg;
            tls.client_cert =
                c == 'Q' ? FTRPC_TLS_CLIENT_CERT_REQUIRED : FTRPC_TLS_CLIENT_CERT_OPTIONAL;
            break;
        case 'f':
            tls.force = 1;
            break;
        case 'P':
            public_pages = 1;
            break;
        case 'z': {
            long n = 0;
            if (optarg && ft_cli_parse_int("--rpcz", optarg, 1, FTRPC_RPCZ_MAX_CAPACITY, &n))
                return 2;
            ftrpc_rpcz_enable((int)n);
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    /* e.g. `--workers 2`: --workers takes no number, and a silently ignored "2" would mislead */
    if (ft_cli_no_stray_args("echo-server", argc, argv, optind)) return 2;
    char reg_full[4096];
    if (reg_url) {
        int has_query = strchr(reg_url, '?') != NULL;
        if (reg_service && !strstr(reg_url, "service="))
            snprintf(reg_full, sizeof reg_full, "%s%cservice=%s", reg_url, has_query ? '&' : '?',
                     reg_service);
        else
            snprintf(reg_full, sizeof reg_full, "%s", reg_url);
    }
    if (!listen_addr) {
        fprintf(stderr, "ftrpc echo-server: --listen is required\n");
        usage(stderr);
        return 2;
    }
    if (ft_cli_check_tls_pair("echo-server", tls.cert_file, tls.key_file)) return 2;
    if ((tls.client_ca_file || tls.force) && !tls.cert_file) {
        fprintf(stderr, "ftrpc echo-server: TLS options need --tls-cert and --tls-key\n");
        return 2;
    }
    if (faults.delay_ms > 0 && !delay_rate_set) faults.delay_rate = 1.0;

    /* Signals are taken by sigwait below; every thread started from here on inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* only a server told to delay answers holds calls: no thread otherwise (issue #26, the idle
     * server's threads) */
    pthread_t delayer;
    int delaying = faults.delay_ms > 0 && pthread_create(&delayer, NULL, delay_thread, NULL) == 0;
    if (faults.delay_ms > 0 && !delaying) {
        fprintf(stderr, "ftrpc echo-server: cannot start the thread of --delay-ms\n");
        return 1;
    }

    ftrpc_server *server = NULL;
    ftrpc_method_options mo = {.run_mode = workers ? FTRPC_RUN_IN_WORKER : FTRPC_RUN_IN_IO_THREAD};
    ftrpc_server_options so = {.stop_grace_ms = (int)grace_ms,
                               .worker_threads = (int)worker_threads,
                               .max_concurrency = max_concurrency,
                               .auth_token = auth_token,
                               .max_connections = (int)max_connections,
                               .idle_timeout_ms = (int)idle_timeout_ms,
                               .read_timeout_ms = (int)read_timeout_ms,
                               .max_inflight_per_connection = (int)max_inflight,
                               .max_pending_request_bytes = (size_t)max_pending,
                               .tls = tls,
                               .public_builtin_pages = public_pages};
    if (reg_url) {
        so.register_url = reg_full;
        so.register_weight = (uint32_t)weight;
        so.register_tags = reg_tags;
        so.register_id = reg_id;
        so.register_ttl_ms = (int64_t)(ttl_s * 1000);
        so.register_interval_ms = (int64_t)(interval_s * 1000);
    }
    int rc = ftrpc_server_new(&so, &server);
    if (rc == 0)
        rc = ftrpc_server_add_method(server, "example.EchoService", "Echo", on_echo, NULL, &mo);
    if (rc == 0) rc = ftrpc_server_start(server, listen_addr);
    if (rc != 0) {
        fprintf(stderr, "ftrpc echo-server: cannot serve on %s: %s\n", listen_addr,
                ftrpc_strerror(rc));
        ftrpc_server_free(server);
        return 1;
    }
    char host[256];
    snprintf(host, sizeof host, "%s", listen_addr);
    char *colon = strrchr(host, ':');
    if (colon) *colon = '\0';
    printf("listening on %s:%d\n", host, ftrpc_server_port(server));
    fflush(stdout);
    if (reg_url)
        fprintf(stderr, "ftrpc echo-server: registered as id=%s\n",
                ftrpc_server_register_id(server));

    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "ftrpc echo-server: signal %d, stopping\n", sig);

    /* Delayed calls are answered when due, which is within the grace period for any sane delay;
     * hung calls never are: they are dropped with their connections below. */
    rc = ftrpc_server_stop(server, -1);
    pthread_mutex_lock(&held_lock);
    delay_thread_stop = 1;
    pthread_cond_signal(&held_cond);
    pthread_mutex_unlock(&held_lock);
    if (delaying) pthread_join(delayer, NULL);
    while (held) {
        held_call *h = held;
        held = h->next;
        ftrpc_server_call_fail(h->call, FTRPC_ELOGOFF, "server stopped");
        free(h);
    }
    /* one line for tools that measure what cancellation saved (bench/tail.c reads it) */
    ftrpc_method_stats st;
    if (ftrpc_server_method_stats(server, "example.EchoService", "Echo", &st) == 0)
        fprintf(stderr, "ftrpc echo-server: calls=%lld canceled_unstarted=%lld rejected=%lld\n",
                (long long)st.calls, (long long)st.canceled_unstarted, (long long)st.rejected);
    ftrpc_server_free(server); /* waits for the replies above to be discarded */
    if (stats_on_exit)
        fprintf(stderr, "ftrpc echo-server: answered %ld\n",
                atomic_load_explicit(&answered, memory_order_relaxed));
    return rc == 0 ? 0 : 1;
}
