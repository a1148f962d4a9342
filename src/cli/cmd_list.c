/* `ftrpc list`: the services a server serves, their methods and message types (what its
 * /protobufs page shows), fetched over baidu_std from the server's ftrpc.Control/ListServices so
 * that the client flags (credential, TLS) apply as to any call. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <ftrpc/ftrpc.h>

#include "cli.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ftrpc list NAMING_URL [options]\n\n"
            "Prints the services the server serves, each with its methods and their input and\n"
            "output message types (\"bytes\" for a method registered with bytes), as the\n"
            "server's /protobufs page does. Exits 1 when the server cannot be asked.\n\n"
            "  NAMING_URL          host:port, list://h:p,h:p, ... (docs/discovery.md); the\n"
            "                      first endpoint that answers is listed\n"
            "  --json              the JSON form (/protobufs?format=json)\n"
            "  --timeout-ms N      the call's deadline (default 1000)\n" FT_CLI_CLIENT_FLAG_HELP);
}

int ft_cli_list(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, 0, 'j'},
                                         {"timeout-ms", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},
                                         FT_CLI_CLIENT_FLAG_OPTIONS,
                                         {0, 0, 0, 0}};
    ftrpc_client_options copts = {0};
    int index = 0, json = 0, c;
    long timeout_ms = 1000;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, &index)) != -1) {
        switch (c) {
        case 'P':
            if (ft_cli_client_flag(opts[index].name, optarg, &copts) < 0) return 2;
            break;
        case 'j':
            json = 1;
            break;
        case 't':
            if (ft_cli_parse_int("--timeout-ms", optarg, 1, 3600000, &timeout_ms)) return 2;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (argc - optind < 1) {
        usage(stderr);
        return 2;
    }
    if (ft_cli_no_stray_args("list", argc, argv, optind + 1)) return 2;
    ftrpc_client *client = NULL;
    copts.timeout_ms = (int)timeout_ms;
    if (ft_cli_client_new("list", argv[optind], &copts, &client)) {
        ftrpc_backup_policy_free(copts.backup_policy);
        return 2;
    }
    ftrpc_buf *req = ftrpc_buf_new();
    if (json) ftrpc_buf_append(req, "json", 4);
    ftrpc_result result;
    int rc = ftrpc_call(client, "ftrpc.Control", "ListServices", req, NULL, NULL, &result);
    if (rc == 0) {
        size_t len = ftrpc_buf_size(result.response);
        if (len) fwrite(ftrpc_buf_flatten(result.response), 1, len, stdout);
        if (json) fputc('\n', stdout);
    } else {
        fprintf(stderr, "ftrpc list: error %d %s: %s\n", result.code, ftrpc_err_name(result.code),
                result.error_text);
    }
    ftrpc_result_fini(&result);
    ftrpc_buf_free(req);
    ftrpc_client_free(client);
    ftrpc_backup_policy_free(copts.backup_policy);
    return rc == 0 ? 0 : 1;
}
