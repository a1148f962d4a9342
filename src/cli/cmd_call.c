/* `ftrpc call`: one call, its response on stdout, or its error on stderr with a non-zero exit. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ftrpc/ftrpc.h>

#include "cli.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ftrpc call NAMING_URL package.Service/Method [options]\n\n"
            "Calls the method once and prints the response payload on stdout (as JSON with\n"
            "--protoset or --proto). On failure prints the error code and text on stderr and\n"
            "exits 1; a usage error, or JSON that does not fit the request type, exits 2 without\n"
            "calling.\n\n"
            "  NAMING_URL          host:port, list://h:p,h:p, file:///path,\n"
            "                      dir:///folder?service=NAME (docs/discovery.md)\n"
            "  --data TEXT         request payload (default empty)\n"
            "  --attachment TEXT   request attachment (default none)\n"
            "  --timeout-ms N      the call's deadline (default 1000)\n"
            "  --verbose           also print attempts, the endpoint that answered and "
            "latency\n" FT_CLI_JSON_FLAG_HELP
            "  --rpcz              also print the call's rpcz record on stderr: each attempt's\n"
            "                      endpoint, send time, outcome, backup, winner, cancel\n"
            "                      (docs/observability.md, rpcz)\n" FT_CLI_CLIENT_FLAG_HELP);
}

static void print_buf(FILE *out, const ftrpc_buf *b)
{
    size_t n = ftrpc_buf_segment_count(b);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const void *p = ftrpc_buf_segment(b, i, &len);
        fwrite(p, 1, len, out);
    }
}

int ft_cli_call(int argc, char **argv)
{
    static const struct option opts[] = {{"data", required_argument, 0, 'd'},
                                         {"attachment", required_argument, 0, 'a'},
                                         {"timeout-ms", required_argument, 0, 't'},
                                         {"verbose", no_argument, 0, 'v'},
                                         {"rpcz", no_argument, 0, 'z'},
                                         {"help", no_argument, 0, 'h'},
                                         FT_CLI_JSON_FLAG_OPTIONS,
                                         FT_CLI_CLIENT_FLAG_OPTIONS,
                                         {0, 0, 0, 0}};
    ftrpc_client_options copts = {0};
    int index = 0;
    const char *data = NULL, *attachment = NULL;
    ft_cli_json_flags jf = {0};
    long timeout_ms = 1000;
    int verbose = 0, rpcz = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, &index)) != -1) {
        switch (c) {
        case 'P':
            if (ft_cli_client_flag(opts[index].name, optarg, &copts) < 0) return 2;
            break;
        case 'd':
            data = optarg;
            break;
        case 'j':
            ft_cli_json_flag(opts[index].name, optarg, &jf);
            break;
        case 'a':
            attachment = optarg;
            break;
        case 't':
            if (ft_cli_parse_int("--timeout-ms", optarg, 1, 3600000, &timeout_ms)) return 2;
            break;
        case 'v':
            verbose = 1;
            break;
        case 'z':
            rpcz = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (argc - optind < 2) {
        usage(stderr);
        return 2;
    }
    if (ft_cli_no_stray_args("call", argc, argv, optind + 2)) return 2;
    const char *url = argv[optind];
    char service[256], method[256];
    if (ft_cli_split_method(argv[optind + 1], service, sizeof service, method, sizeof method))
        return 2;

    /* the request is made before the client: JSON that does not fit sends nothing */
    ft_cli_json json;
    if (ft_cli_json_open("call", &jf, service, method, &json)) {
        ftrpc_backup_policy_free(copts.backup_policy);
        return 2;
    }
    if (json.set && data) {
        fprintf(stderr, "ftrpc call: --data is bytes; with --protoset or --proto give "
                        "--data-json\n");
        ft_cli_json_close(&json);
        ftrpc_backup_policy_free(copts.backup_policy);
        return 2;
    }
    ftrpc_buf *req = ftrpc_buf_new(), *att = ftrpc_buf_new();
    if (json.set ? ft_cli_json_request("call", &json, jf.data_json, req) != 0
                 : ftrpc_buf_append(req, data ? data : "", data ? strlen(data) : 0) != 0) {
        ftrpc_buf_free(req);
        ftrpc_buf_free(att);
        ft_cli_json_close(&json);
        ftrpc_backup_policy_free(copts.backup_policy);
        return 2;
    }
    ftrpc_client *client = NULL;
    copts.timeout_ms = (int)timeout_ms;
    if (rpcz) ftrpc_rpcz_enable(0);
    if (ft_cli_client_new("call", url, &copts, &client)) {
        ftrpc_buf_free(req);
        ftrpc_buf_free(att);
        ft_cli_json_close(&json);
        ftrpc_backup_policy_free(copts.backup_policy);
        return 2;
    }
    if (attachment) ftrpc_buf_append(att, attachment, strlen(attachment));
    ftrpc_result result;
    int rc = ftrpc_call(client, service, method, req, att, NULL, &result);
    if (rc == 0 && json.set) {
        if (ft_cli_json_print("call", stdout, &json, result.response) != 0) rc = FTRPC_ERESPONSE;
    } else if (rc == 0) {
        print_buf(stdout, result.response);
        if (ftrpc_buf_size(result.attachment) > 0) {
            fputs("\nattachment: ", stdout);
            print_buf(stdout, result.attachment);
        }
        fputc('\n', stdout);
    } else if (result.kind == FTRPC_RESULT_BUSINESS_ERROR) {
        fprintf(stderr, "business error %d: %s\n", result.code, result.error_text);
    } else {
        fprintf(stderr, "error %d %s: %s\n", result.code, ftrpc_err_name(result.code),
                result.error_text);
    }
    if (verbose)
        fprintf(stderr,
                "attempts=%d backups=%d backup_won=%d backups_refused=%d endpoint=%s "
                "latency_us=%lld\n",
                result.attempts, result.backups, result.backup_won, result.backups_refused,
                result.endpoint[0] ? result.endpoint : "-", (long long)result.latency_us);
    if (rpcz) { /* before the client is freed: its record goes with it */
        ftrpc_buf *page = ftrpc_buf_new();
        if (page && ftrpc_rpcz_dump(0, page) == 0) print_buf(stderr, page);
        ftrpc_buf_free(page);
    }
    ftrpc_result_fini(&result);
    ftrpc_buf_free(req);
    ftrpc_buf_free(att);
    ftrpc_client_free(client);
    ft_cli_json_close(&json);
    ftrpc_backup_policy_free(copts.backup_policy);
    return rc == 0 ? 0 : 1;
}
