/* `ftrpc bench NAMING_URL package.Service/Method`: loads a service through one client with any
 * client policy, shows live progress, and ends with a table of throughput, latency percentiles,
 * errors by code and what the policies did (attempts, retries, backups, fallbacks); optionally a
 * JSON file of the same figures and an SVG latency CDF.
 *
 * The load itself is load.c's: completion callbacks start the next call (closed loop), or the
 * main thread paces calls (--rate, open loop). Latency is measured by this command around each
 * call (from its scheduled start in open loop), so it includes client-side queueing.
 */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ftrpc/ftrpc.h>

#include "cli.h"
#include "load.h"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: ftrpc bench NAMING_URL package.Service/Method [options]\n\n"
        "Loads the method through one client and prints QPS, latency percentiles, errors by\n"
        "code and what the client's policies did.\n\n"
        "  NAMING_URL             host:port, list://..., file:///..., dir:///folder?service=S\n"
        "  --concurrency N        async calls in flight (default 8; with --rate: the cap on\n"
        "                         them), started again from each completion callback\n"
        "  --threads N            N blocking callers instead, each making ftrpc_call after\n"
        "                         ftrpc_call through the same client (brpc's\n"
        "                         multi_threaded_echo and rpc_press shape); not with --rate\n"
        "                         or --concurrency\n"
        "  --rate QPS             open loop: start QPS calls per second (default: closed loop)\n"
        "  --duration SECONDS     how long to run (default 5)\n"
        "  --count N              make N calls instead of running for a duration\n"
        "  --payload BYTES        request size (default 16; at most 64 MiB less the request's\n"
        "                         header and meta: the largest frame a server takes by default)\n"
        "  --timeout-ms N         each call's deadline (default 1000)\n"
        "  --fallback-default T   on an error, answer T instead (error-only fallback)\n"
        "  --cdf FILE.svg         write the latency CDF as an SVG plot\n"
        "  --json FILE            write the figures as JSON\n"
        "  --rpcz FILE            record the last 256 calls (rpcz, docs/observability.md) and\n"
        "                         write them as JSON (the /rpcz page) when the run "
        "ends\n" FT_CLI_JSON_FLAG_HELP
        "                         (the request of every call; --payload then does not "
        "apply)\n" FT_CLI_CLIENT_FLAG_HELP);
}

static void fallback_default(const ftrpc_fallback_input *in, ftrpc_fallback_output *out, void *arg)
{
    (void)in;
    const char *text = arg;
    out->response = ftrpc_buf_new();
    if (out->response) ftrpc_buf_append(out->response, text, strlen(text));
}

typedef struct progress {
    int tty;
    double next_s;
    _Atomic int *interrupted;
} progress;

static volatile sig_atomic_t interrupted_flag;
static void on_signal(int sig)
{
    (void)sig;
    interrupted_flag = 1;
}

static void tick(ft_load *load, const ft_load_stats *s, void *arg)
{
    progress *p = arg;
    if (interrupted_flag) ft_load_stop(load);
    double t = ft_load_elapsed(s);
    if (s->end_ns) {
        if (p->tty) fputs("\r\033[K", stderr);
        return;
    }
    if (t < p->next_s) return;
    p->next_s += p->tty ? 0.5 : 1.0;
    ft_load_counts n = ft_load_counts_get(s);
    fprintf(stderr, "%s%6.1fs  %9.0f qps  %8ld calls  %6ld errors  p50 %.3f ms  p99 %.3f ms%s",
            p->tty ? "\r\033[K" : "", t, t > 0 ? (double)n.calls / t : 0, n.calls, n.errors,
            (double)ftrpc_histogram_percentile(s->hist, 0.5) / 1000.0,
            (double)ftrpc_histogram_percentile(s->hist, 0.99) / 1000.0, p->tty ? "" : "\n");
    fflush(stderr);
}

static double ms(const ft_load_stats *s, double q)
{
    return (double)ftrpc_histogram_percentile(s->hist, q) / 1000.0;
}

/* What load ran: the report says it, in text and JSON, since the two closed-loop shapes give
 * different figures for the same number of calls in flight. */
typedef struct shape {
    const char *name; /* "async" (--concurrency), "threads" (--threads), "open_loop" (--rate) */
    long n;           /* calls in flight, blocking callers, or the cap on calls in flight */
} shape;

static void print_shape(FILE *f, const shape *sh)
{
    if (!strcmp(sh->name, "threads"))
        fprintf(f, "%ld blocking callers (ftrpc_call), one call in flight each", sh->n);
    else if (!strcmp(sh->name, "async"))
        fprintf(f, "async, %ld in flight (ftrpc_call_async)", sh->n);
    else
        fprintf(f, "open loop, at most %ld in flight (ftrpc_call_async)", sh->n);
}

static void write_json(FILE *f, const ft_load_stats *s, const shape *sh)
{
    double t = ft_load_elapsed(s);
    ft_load_counts n = ft_load_counts_get(s);
    long attempts = atomic_load(&s->attempts);
    fprintf(f, "{\n  \"shape\": \"%s\",\n  \"%s\": %ld,\n", sh->name,
            strcmp(sh->name, "threads") ? "concurrency" : "threads", sh->n);
    fprintf(f,
            "  \"calls\": %ld,\n  \"ok\": %ld,\n  \"errors\": %ld,\n  \"seconds\": %.3f,\n"
            "  \"qps\": %.1f,\n  \"p50_ms\": %.3f,\n  \"p90_ms\": %.3f,\n  \"p99_ms\": %.3f,\n"
            "  \"p999_ms\": %.3f,\n  \"max_ms\": %.3f,\n  \"attempts\": %ld,\n"
            "  \"retries\": %ld,\n  \"backups\": %ld,\n  \"backup_wins\": %ld,\n"
            "  \"backups_refused\": %ld,\n  \"fallbacks\": %ld,\n  \"errors_by_code\": {",
            n.calls, n.ok, n.errors, t, t > 0 ? (double)n.calls / t : 0, ms(s, 0.5), ms(s, 0.9),
            ms(s, 0.99), ms(s, 0.999), (double)ftrpc_histogram_max(s->hist) / 1000.0, attempts,
            atomic_load(&s->retries), atomic_load(&s->backups), atomic_load(&s->backup_wins),
            atomic_load(&s->backups_refused), atomic_load(&s->fallbacks));
    for (size_t i = 0; i < s->ncodes; i++)
        fprintf(f, "%s\"%d\": %ld", i ? ", " : "", s->codes[i].code, s->codes[i].count);
    fputs("}\n}\n", f);
}

static void print_table(const ft_load_stats *s, const shape *sh)
{
    double t = ft_load_elapsed(s);
    ft_load_counts n = ft_load_counts_get(s);
    long attempts = atomic_load(&s->attempts), backups = atomic_load(&s->backups);
    printf("shape       ");
    print_shape(stdout, sh);
    printf("\n");
    printf("calls       %ld in %.2f s: %ld ok, %ld errors\n", n.calls, t, n.ok, n.errors);
    printf("qps         %.0f\n", t > 0 ? (double)n.calls / t : 0);
    printf("latency ms  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n", ms(s, 0.5),
           ms(s, 0.9), ms(s, 0.99), ms(s, 0.999), (double)ftrpc_histogram_max(s->hist) / 1000.0);
    /* a retry is a request that was neither a call's first attempt nor a backup; the extra share
     * is over first attempts: a call the breaker or a fallback answered sent none */
    long retries = atomic_load(&s->retries), first = attempts - retries - backups;
    printf("attempts    %ld (retries %ld, extra requests %.2f%%)\n", attempts, retries,
           first > 0 ? 100.0 * (double)(retries + backups) / (double)first : 0);
    printf("backups     %ld sent, %ld won, %ld refused by the retry budget\n", backups,
           atomic_load(&s->backup_wins), atomic_load(&s->backups_refused));
    printf("fallbacks   %ld\n", atomic_load(&s->fallbacks));
    if (s->ncodes == 0) printf("errors      none\n");
    for (size_t i = 0; i < s->ncodes; i++)
        printf("errors      %-22s %ld\n",
               s->codes[i].code < 0 ? ftrpc_err_name(s->codes[i].code) : "business",
               s->codes[i].count);
    fflush(stdout);
}

int ft_cli_bench(int argc, char **argv)
{
    static const struct option opts[] = {{"concurrency", required_argument, 0, 'c'},
                                         {"threads", required_argument, 0, 'T'},
                                         {"rate", required_argument, 0, 'r'},
                                         {"duration", required_argument, 0, 'd'},
                                         {"count", required_argument, 0, 'n'},
                                         {"payload", required_argument, 0, 'p'},
                                         {"timeout-ms", required_argument, 0, 't'},
                                         {"fallback-default", required_argument, 0, 'F'},
                                         {"cdf", required_argument, 0, 'C'},
                                         {"json", required_argument, 0, 'J'},
                                         {"rpcz", required_argument, 0, 'z'},
                                         {"help", no_argument, 0, 'h'},
                                         FT_CLI_JSON_FLAG_OPTIONS,
                                         FT_CLI_CLIENT_FLAG_OPTIONS,
                                         {0, 0, 0, 0}};
    ftrpc_client_options copts = {0};
    long concurrency = 8, threads = 0, count = 0, payload = 16, timeout_ms = 1000;
    double rate = 0, duration = 5;
    const char *fallback_text = NULL, *cdf_path = NULL, *json_path = NULL, *rpcz_path = NULL;
    FILE *json_file = NULL, *cdf_file = NULL, *rpcz_file = NULL;
    int index = 0, c, status = 2, rpcz_failed = 0, payload_given = 0, concurrency_given = 0;
    ft_cli_json_flags jf = {0};
    ft_cli_json json = {0};
    ftrpc_buf *request = NULL;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, &index)) != -1) {
        switch (c) {
        case 'P':
            if (ft_cli_client_flag(opts[index].name, optarg, &copts) < 0) goto out;
            break;
        case 'c':
            if (ft_cli_parse_int("--concurrency", optarg, 1, 100000, &concurrency)) goto out;
            concurrency_given = 1;
            break;
        case 'T':
            /* each caller is a thread with its own stack: a bound a machine can hold */
            if (ft_cli_parse_int("--threads", optarg, 1, 4096, &threads)) goto out;
            break;
        case 'n':
            if (ft_cli_parse_int("--count", optarg, 1, 1000000000L, &count)) goto out;
            break;
        case 'p':
            /* the upper bound depends on the method: checked once it is known */
            if (ft_cli_parse_int("--payload", optarg, 0, LONG_MAX, &payload)) goto out;
            payload_given = 1;
            break;
        case 'j':
            ft_cli_json_flag(opts[index].name, optarg, &jf);
            break;
        case 't':
            if (ft_cli_parse_int("--timeout-ms", optarg, 1, 3600000, &timeout_ms)) goto out;
            break;
        case 'r':
        case 'd': {
            char *end;
            double v = strtod(optarg, &end);
            if (!*optarg || *end || !(v > 0) || v > 1e9) {
                fprintf(stderr, "ftrpc: --%s wants a positive number, not '%s'\n",
                        c == 'r' ? "rate" : "duration", optarg);
                goto out;
            }
            *(c == 'r' ? &rate : &duration) = v;
            break;
        }
        case 'F':
            fallback_text = optarg;
            break;
        case 'C':
            cdf_path = optarg;
            break;
        case 'J':
            json_path = optarg;
            break;
        case 'z':
            rpcz_path = optarg;
            break;
        case 'h':
            usage(stdout);
            status = 0;
            goto out;
        default:
            usage(stderr);
            goto out;
        }
    }
    if (argc - optind < 2) {
        usage(stderr);
        goto out;
    }
    if (ft_cli_no_stray_args("bench", argc, argv, optind + 2)) goto out;
    if (threads > 0 && (rate > 0 || concurrency_given)) {
        fprintf(stderr, "ftrpc bench: --threads is its own shape (N blocking callers, closed "
                        "loop): it takes neither --rate nor --concurrency\n");
        goto out;
    }
    shape sh = {threads > 0 ? "threads"
                : rate > 0  ? "open_loop"
                            : "async",
                threads > 0 ? threads : concurrency};
    const char *url = argv[optind];
    char service[256], method[256];
    if (ft_cli_split_method(argv[optind + 1], service, sizeof service, method, sizeof method))
        goto out;
    /* beyond it a server with the default max_body_size closes the connection, and the
     * client's default max_unwritten_bytes refuses the frame (EOVERCROWDED): every call fails */
    size_t max_payload = 0;
    int rc = ftrpc_max_request_payload(service, method, 0, &max_payload);
    if (rc != 0) {
        fprintf(stderr, "ftrpc bench: %s\n", ftrpc_strerror(rc));
        status = 1;
        goto out;
    }
    if ((size_t)payload > max_payload) {
        fprintf(stderr,
                "ftrpc bench: --payload wants at most %zu bytes for %s/%s (the request frame, "
                "header and meta included, must fit in the 64 MiB a server accepts by default), "
                "not %ld\n",
                max_payload, service, method, payload);
        goto out;
    }
    /* JSON that does not fit the request type costs no run */
    if (ft_cli_json_open("bench", &jf, service, method, &json)) goto out;
    if (json.set) {
        if (payload_given) {
            fprintf(stderr, "ftrpc bench: --payload and --data-json are two ways of making the "
                            "request: give one\n");
            goto out;
        }
        if (!(request = ftrpc_buf_new()) ||
            ft_cli_json_request("bench", &json, jf.data_json, request) != 0)
            goto out;
    }
    /* before the run, so that a path that cannot be written costs no run */
    if (json_path && !(json_file = ft_cli_open_output("bench", "--json", json_path))) goto out;
    if (cdf_path && !(cdf_file = ft_cli_open_output("bench", "--cdf", cdf_path))) goto out;
    if (rpcz_path && !(rpcz_file = ft_cli_open_output("bench", "--rpcz", rpcz_path))) goto out;
    if (rpcz_path) ftrpc_rpcz_enable(0);
    copts.timeout_ms = (int)timeout_ms;
    if (fallback_text)
        copts.fallback = (ftrpc_fallback){
            .kind = FTRPC_FALLBACK_ERRORS, .fn = fallback_default, .arg = (void *)fallback_text};
    ftrpc_client *client = NULL;
    if (ft_cli_client_new("bench", url, &copts, &client)) goto out;
    ft_load_stats stats;
    if (ft_load_stats_init(&stats) != 0) {
        ftrpc_client_free(client);
        status = 1;
        goto out;
    }
    progress prog = {.tty = isatty(STDERR_FILENO), .next_s = 0.5};
    if (!prog.tty) prog.next_s = 1.0;
    /* Ctrl-C ends the run early but still prints the figures of the calls made. */
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    fprintf(stderr, "bench %s %s/%s: ", url, service, method);
    print_shape(stderr, &sh);
    fprintf(stderr, ", %s %g%s\n", count ? "count" : "duration", count ? (double)count : duration,
            count ? "" : " s");
    ft_load_opts lo = {.client = client,
                       .service = service,
                       .method = method,
                       .concurrency = (int)concurrency,
                       .threads = (int)threads,
                       .rate = rate,
                       .count = count,
                       .duration_s = duration,
                       .payload = (size_t)payload,
                       .request = request,
                       .tick = tick,
                       .tick_arg = &prog};
    rc = ft_load_run(&lo, &stats);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (rpcz_file) { /* before the client is freed: its record goes with it */
        ftrpc_buf *page = ftrpc_buf_new();
        if (page && ftrpc_rpcz_dump(1, page) == 0) {
            for (size_t i = 0; i < ftrpc_buf_segment_count(page); i++) {
                size_t len;
                const void *p = ftrpc_buf_segment(page, i, &len);
                fwrite(p, 1, len, rpcz_file);
            }
        }
        ftrpc_buf_free(page);
        rpcz_failed = ft_cli_close_output("bench", rpcz_file, rpcz_path) != 0;
        rpcz_file = NULL;
    }
    ftrpc_client_free(client);
    status = rpcz_failed ? 1 : 0;
    if (rc != 0) {
        fprintf(stderr, "ftrpc bench: %s\n", ftrpc_strerror(rc));
        status = 1;
    } else {
        print_table(&stats, &sh);
        if (json_file) {
            write_json(json_file, &stats, &sh);
            if (ft_cli_close_output("bench", json_file, json_path)) status = 1;
            json_file = NULL;
        }
        if (cdf_file) {
            char title[600];
            snprintf(title, sizeof title, "%s/%s latency CDF (%ld calls)", service, method,
                     ft_load_counts_get(&stats).calls);
            ft_cdf_svg(cdf_file, title, &(ft_cdf_series){.label = "all calls", .hist = stats.hist},
                       1, 720, 420);
            if (ft_cli_close_output("bench", cdf_file, cdf_path)) status = 1;
            cdf_file = NULL;
        }
    }
    ft_load_stats_fini(&stats);
out:
    /* still open when the run did not happen: left empty */
    if (json_file) fclose(json_file);
    if (cdf_file) fclose(cdf_file);
    if (rpcz_file) fclose(rpcz_file);
    ftrpc_buf_free(request);
    ft_cli_json_close(&json);
    ftrpc_backup_policy_free(copts.backup_policy);
    return status;
}
