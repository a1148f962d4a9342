/* ftrpc: the command-line tool. `ftrpc COMMAND --help` describes each command. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ftrpc COMMAND [options]\n\n"
            "commands:\n"
            "  echo-server   serve example.EchoService/Echo, with injectable faults\n"
            "  call          call a method once and print the response\n"
            "  registry      list or watch what a naming service holds\n"
            "  list          the services, methods and message types a server serves\n"
            "  bench         load a method with any client policy; latency and errors\n"
            "  demo          fault tolerance at work on a local cluster, scenario by scenario\n\n"
            "`ftrpc COMMAND --help` for a command's options.\n");
}

int ft_cli_parse_int(const char *opt, const char *text, long min, long max, long *out)
{
    char *end;
    long v = strtol(text, &end, 10);
    if (!*text || *end || v < min || v > max) {
        fprintf(stderr, "ftrpc: %s wants a whole number in [%ld, %ld], not '%s'\n", opt, min, max,
                text);
        return -1;
    }
    *out = v;
    return 0;
}

int ft_cli_parse_rate(const char *opt, const char *text, double *out)
{
    char *end;
    double v = strtod(text, &end);
    if (!*text || *end || v < 0 || v > 1) {
        fprintf(stderr, "ftrpc: %s wants a share in [0, 1], not '%s'\n", opt, text);
        return -1;
    }
    *out = v;
    return 0;
}

int ft_cli_split_method(const char *full, char *service, size_t slen, char *method, size_t mlen)
{
    const char *slash = strrchr(full, '/');
    if (!slash || slash == full || !slash[1] || (size_t)(slash - full) >= slen ||
        strlen(slash + 1) >= mlen) {
        fprintf(stderr, "ftrpc: '%s' is not of the form package.Service/Method\n", full);
        return -1;
    }
    memcpy(service, full, (size_t)(slash - full));
    service[slash - full] = '\0';
    strcpy(method, slash + 1);
    return 0;
}

int ft_cli_no_stray_args(const char *cmd, int argc, char **argv, int first)
{
    if (first >= argc) return 0;
    fprintf(stderr, "ftrpc %s: unexpected argument '%s' (`ftrpc %s --help` lists what it takes)\n",
            cmd, argv[first], cmd);
    return -1;
}

FILE *ft_cli_open_output(const char *cmd, const char *flag, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        fprintf(stderr, "ftrpc %s: %s %s: cannot write: %s\n", cmd, flag, path, strerror(errno));
    return f;
}

int ft_cli_close_output(const char *cmd, FILE *f, const char *path)
{
    int failed = ferror(f);
    if (fclose(f) != 0) failed = 1;
    if (failed) fprintf(stderr, "ftrpc %s: cannot write %s\n", cmd, path);
    return failed ? -1 : 0;
}

int ft_cli_check_tls_pair(const char *cmd, const char *cert_file, const char *key_file)
{
    if (!cert_file == !key_file) return 0;
    fprintf(stderr, "ftrpc %s: %s needs %s\n", cmd, cert_file ? "--tls-cert" : "--tls-key",
            cert_file ? "--tls-key (its private key)"
                      : "--tls-cert (the certificate it signs for)");
    return -1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "echo-server")) return ft_cli_echo_server(argc - 1, argv + 1);
    if (!strcmp(cmd, "call")) return ft_cli_call(argc - 1, argv + 1);
    if (!strcmp(cmd, "registry")) return ft_cli_registry(argc - 1, argv + 1);
    if (!strcmp(cmd, "list")) return ft_cli_list(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return ft_cli_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "demo")) return ft_cli_demo(argc - 1, argv + 1);
    fprintf(stderr, "ftrpc: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
