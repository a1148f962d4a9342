/* The ftrpc command-line tool: one file per command, thin over the public API. */
#ifndef FT_CLI_H
#define FT_CLI_H

#include <stddef.h>
#include <stdio.h>

int ft_cli_echo_server(int argc, char **argv);
int ft_cli_call(int argc, char **argv);
int ft_cli_registry(int argc, char **argv);
int ft_cli_bench(int argc, char **argv);
int ft_cli_demo(int argc, char **argv);
int ft_cli_list(int argc, char **argv);

/* Parses a number option; prints an error naming the option and returns -1 when it is not one. */
int ft_cli_parse_int(const char *opt, const char *text, long min, long max, long *out);
int ft_cli_parse_rate(const char *opt, const char *text, double *out);
/* Splits "package.Service/Method"; returns 0 or -1 with a message. */
int ft_cli_split_method(const char *full, char *service, size_t slen, char *method, size_t mlen);
/* A positional argument the command does not take (argv[first], when first < argc) is a usage
 * error: prints one naming it and returns -1; 0 when there is none. `cmd` names the command. */
int ft_cli_no_stray_args(const char *cmd, int argc, char **argv, int first);
/* Opens an output file named by `flag` for writing, before the work whose results go there: NULL,
 * with a message naming the flag and the cause, when it cannot be. */
FILE *ft_cli_open_output(const char *cmd, const char *flag, const char *path);
/* Closes a file ft_cli_open_output opened: 0, or -1 with a message when a write to it failed. */
int ft_cli_close_output(const char *cmd, FILE *f, const char *path);
/* --tls-cert and --tls-key go together: one without the other prints a message naming the missing
 * flag and returns -1; 0 otherwise. */
int ft_cli_check_tls_pair(const char *cmd, const char *cert_file, const char *key_file);

/* Client policy flags shared by `call` and `bench`: --fail-mode, --retries, --attempt-timeout-ms,
 * --backoff, --lb, --backup-ms, --backup-policy, --auth-token, --tls (no value), --tls-ca,
 * --tls-cert, --tls-key, --tls-server-name (FT_CLI_CLIENT_FLAG_OPTIONS lists them for
 * getopt_long, each with the value 'P'). Returns 1 when `opt` was one of them
 * (applied to *o), 0 when it was not, -1 on a bad value (message printed). */
struct ftrpc_client_options;
int ft_cli_client_flag(const char *opt, const char *value, struct ftrpc_client_options *o);
/* Makes the client of `call` and `bench` from the parsed flags. On failure prints why, naming the
 * flag or the URL at fault, and returns -1 (a usage error: the command exits 2). */
struct ftrpc_client;
int ft_cli_client_new(const char *cmd, const char *url, const struct ftrpc_client_options *o,
                      struct ftrpc_client **out);
/* JSON calls (json_flags.c): --protoset FILE, --proto FILE.proto, --proto-path DIR and
 * --data-json TEXT, shared by `call` and `bench` (FT_CLI_JSON_FLAG_OPTIONS lists them for
 * getopt_long, each with the value 'j'; ft_cli_json_flag files one). */
struct ftrpc_buf;
struct ftrpc_protoset;
struct ProtobufCMethodDescriptor;
typedef struct ft_cli_json_flags {
    const char *protoset, *proto, *proto_path, *data_json;
} ft_cli_json_flags;
void ft_cli_json_flag(const char *opt, const char *value, ft_cli_json_flags *fl);
/* The method's types, from the descriptor set the flags name. */
typedef struct ft_cli_json {
    struct ftrpc_protoset *set; /* NULL: no types given, the call is of bytes */
    const struct ProtobufCMethodDescriptor *method;
} ft_cli_json;
/* Loads the set (running protoc for --proto) and finds service/method in it; with neither flag
 * leaves *out empty. 0, or -1 with one line on stderr (a usage error: exit 2). */
int ft_cli_json_open(const char *cmd, const ft_cli_json_flags *fl, const char *service,
                     const char *method, ft_cli_json *out);
/* Encodes json (NULL: "{}") as the method's request and appends it to req. 0, or -1 with one line
 * on stderr naming the field at fault. */
int ft_cli_json_request(const char *cmd, const ft_cli_json *j, const char *json,
                        struct ftrpc_buf *req);
/* Prints resp as JSON of the method's response type, and a newline. 0, or -1 with a message. */
int ft_cli_json_print(const char *cmd, FILE *out, const ft_cli_json *j,
                      const struct ftrpc_buf *resp);
void ft_cli_json_close(ft_cli_json *j);
#define FT_CLI_JSON_FLAG_HELP                                                                      \
    "  --protoset FILE        the method's types: a descriptor set (protoc --include_imports\n"    \
    "                         --descriptor_set_out=FILE) for JSON requests and responses\n"        \
    "  --proto FILE.proto     the same from a .proto, compiled with protoc (must be installed)\n"  \
    "  --proto-path DIR       the import root for --proto (default: the file's folder)\n"          \
    "  --data-json JSON       the request as JSON (needs --protoset or --proto; default {})\n"
#define FT_CLI_JSON_FLAG_OPTIONS                                                                   \
    {"protoset", required_argument, 0, 'j'}, {"proto", required_argument, 0, 'j'},                 \
        {"proto-path", required_argument, 0, 'j'},                                                 \
    {                                                                                              \
        "data-json", required_argument, 0, 'j'                                                     \
    }

#define FT_CLI_CLIENT_FLAG_HELP                                                                    \
    "  --fail-mode MODE       failfast | failover (default) | failtry | failbackup\n"              \
    "  --retries N            retries after the first attempt (default 3; 0: none)\n"              \
    "  --attempt-timeout-ms N per-attempt timeout inside the deadline (default: none)\n"           \
    "  --backoff SPEC         none | fixed:MS | exp:INITIAL_MS:MULTIPLIER:MAX_MS\n"                \
    "  --lb NAME              random | rr | wrr | wrandom | chash | p2c (default) | priority\n"    \
    "  --backup-ms N          backup request after N ms, 0.2 = 200 us (turns backups on)\n"        \
    "  --backup-policy P      fixed (--backup-ms) | ratelimited | adaptive\n"                      \
    "  --backup-budget B      default (fixed delay: none; policy: retry) | retry | none\n"         \
    "  --backup-counts-as-retry  a backup uses up one of --retries (brpc's accounting)\n"          \
    "  --max-attempts N       hedging: up to N copies (2-5, default 2), one every backup delay\n"  \
    "  --tied                 tied requests: two copies at once, the first to start cancels\n"     \
    "                         the other\n"                                                         \
    "  --retry-budget-ratio R retries (and budgeted backups) per call, (0, 1] or off\n"            \
    "                         (default 0.2)\n"                                                     \
    "  --retry-budget-min-per-sec N  the budget's floor per second (default 10; 0: none)\n"        \
    "  --throttle-k K         adaptive throttling's k, >= 1 (default 2); off: no throttling\n"     \
    "  --auth-token TEXT      credential sent on each connection's first request\n"                \
    "  --tls                  TLS to the endpoints (the server's certificate is verified)\n"       \
    "  --tls-ca FILE          CA bundle (PEM) for the server's certificate (default: the\n"        \
    "                         system's trust store); implies --tls\n"                              \
    "  --tls-cert FILE        client certificate chain (PEM) for mutual TLS; implies --tls\n"      \
    "  --tls-key FILE         its private key (PEM)\n"                                             \
    "  --tls-server-name NAME the name or IP the certificate must carry (default: the\n"           \
    "                         endpoint's host)\n"                                                  \
    "  --protocol P           baidu_std (default) | grpc: unary gRPC over HTTP/2\n"
#define FT_CLI_CLIENT_FLAG_OPTIONS                                                                 \
    {"fail-mode", required_argument, 0, 'P'}, {"retries", required_argument, 0, 'P'},              \
        {"attempt-timeout-ms", required_argument, 0, 'P'}, {"backoff", required_argument, 0, 'P'}, \
        {"lb", required_argument, 0, 'P'}, {"backup-ms", required_argument, 0, 'P'},               \
        {"backup-policy", required_argument, 0, 'P'}, {"auth-token", required_argument, 0, 'P'},   \
        {"backup-budget", required_argument, 0, 'P'},                                              \
        {"backup-counts-as-retry", no_argument, 0, 'P'},                                           \
        {"max-attempts", required_argument, 0, 'P'}, {"tied", no_argument, 0, 'P'},                \
        {"retry-budget-ratio", required_argument, 0, 'P'},                                         \
        {"retry-budget-min-per-sec", required_argument, 0, 'P'}, {"tls", no_argument, 0, 'P'},     \
        {"throttle-k", required_argument, 0, 'P'}, {"tls-ca", required_argument, 0, 'P'},          \
        {"tls-cert", required_argument, 0, 'P'}, {"tls-key", required_argument, 0, 'P'},           \
        {"protocol", required_argument, 0, 'P'},                                                   \
    {                                                                                              \
        "tls-server-name", required_argument, 0, 'P'                                               \
    }

#endif
