/* --protoset, --proto and --data-json, shared by `call` and `bench` (see cli.h): the method's types
 * from a descriptor set (or from a .proto that protoc compiles into one in a temporary file), the
 * request encoded from JSON, the response printed as JSON (docs/json.md). Every mistake is one
 * line on stderr naming the flag and, for JSON, the field; the command then exits 2 without
 * sending anything. */
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ftrpc/ftrpc.h>

#include "cli.h"

extern char **environ;

/* a descriptor set larger than this is refused by the library anyway */
#define PROTOSET_READ_MAX ((size_t)16 << 20)

/* The whole file, malloc'ed; NULL with a message naming the flag. */
static uint8_t *read_all(const char *cmd, const char *flag, const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "ftrpc %s: %s %s: %s\n", cmd, flag, path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap || cap > PROTOSET_READ_MAX) break;
        uint8_t *grown = realloc(buf, cap * 2);
        if (!grown) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        fprintf(stderr, "ftrpc %s: %s %s: cannot read it\n", cmd, flag, path);
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* Runs protoc on a .proto into a descriptor set in a temporary file and reads it back. */
static uint8_t *compile_proto(const char *cmd, const char *proto, const char *proto_path,
                              size_t *len)
{
    const char *tmpdir = getenv("TMPDIR");
    char out[512];
    snprintf(out, sizeof out, "%s/ftrpc-protoset-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    int fd = mkstemp(out);
    if (fd < 0) {
        fprintf(stderr, "ftrpc %s: --proto: cannot make a temporary file: %s\n", cmd,
                strerror(errno));
        return NULL;
    }
    close(fd);
    /* the file's own folder is an import root unless --proto-path names one */
    char dir[512];
    if (!proto_path) {
        snprintf(dir, sizeof dir, "%s", proto);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        else
            snprintf(dir, sizeof dir, ".");
        proto_path = dir;
    }
    char set_out[600], include[600];
    snprintf(set_out, sizeof set_out, "--descriptor_set_out=%s", out);
    snprintf(include, sizeof include, "-I%s", proto_path);
    char *args[] = {"protoc", "--include_imports", set_out, include, (char *)proto, NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, "protoc", NULL, NULL, args, environ);
    int status = 0;
    if (rc == 0)
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
    uint8_t *data = NULL;
    if (rc == ENOENT) {
        fprintf(stderr,
                "ftrpc %s: --proto needs protoc (Debian: protobuf-compiler); or give a descriptor "
                "set: protoc --include_imports --descriptor_set_out=FILE ..., then --protoset "
                "FILE\n",
                cmd);
    } else if (rc != 0) {
        fprintf(stderr, "ftrpc %s: --proto: cannot run protoc: %s\n", cmd, strerror(rc));
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        /* protoc said why on stderr */
        fprintf(stderr, "ftrpc %s: --proto: protoc could not compile %s\n", cmd, proto);
    } else {
        data = read_all(cmd, "--proto", out, len);
    }
    unlink(out);
    return data;
}

int ft_cli_json_open(const char *cmd, const ft_cli_json_flags *fl, const char *service,
                     const char *method, ft_cli_json *out)
{
    memset(out, 0, sizeof *out);
    if (fl->protoset && fl->proto) {
        fprintf(stderr, "ftrpc %s: give --protoset or --proto, not both\n", cmd);
        return -1;
    }
    if (!fl->protoset && !fl->proto) {
        if (fl->data_json) {
            fprintf(stderr,
                    "ftrpc %s: --data-json needs the method's types: --protoset FILE or "
                    "--proto FILE.proto\n",
                    cmd);
            return -1;
        }
        return 0; /* bytes, as without JSON */
    }
    size_t len = 0;
    uint8_t *data = fl->protoset ? read_all(cmd, "--protoset", fl->protoset, &len)
                                 : compile_proto(cmd, fl->proto, fl->proto_path, &len);
    if (!data) return -1;
    char err[300];
    int rc = ftrpc_protoset_new(data, len, &out->set, err, sizeof err);
    free(data);
    const char *flag = fl->protoset ? "--protoset" : "--proto";
    const char *file = fl->protoset ? fl->protoset : fl->proto;
    if (rc != 0) {
        fprintf(stderr, "ftrpc %s: %s %s: %s\n", cmd, flag, file,
                rc == FTRPC_EINVAL ? err : ftrpc_strerror(rc));
        return -1;
    }
    out->method = ftrpc_protoset_method(out->set, service, method);
    if (!out->method) {
        fprintf(stderr, "ftrpc %s: %s %s has no method %s/%s\n", cmd, flag, file, service, method);
        ft_cli_json_close(out);
        return -1;
    }
    return 0;
}

int ft_cli_json_request(const char *cmd, const ft_cli_json *j, const char *json, ftrpc_buf *req)
{
    char err[300];
    if (!json) json = "{}";
    int rc = ftrpc_json_to_pb(j->method->input, json, strlen(json), req, err, sizeof err);
    if (rc == 0) return 0;
    fprintf(stderr, "ftrpc %s: --data-json: %s\n", cmd,
            rc == FTRPC_EINVAL ? err : ftrpc_strerror(rc));
    return -1;
}

int ft_cli_json_print(const char *cmd, FILE *out, const ft_cli_json *j, const ftrpc_buf *resp)
{
    char err[300], *json = NULL;
    int rc = ftrpc_pb_to_json(j->method->output, resp, &json, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "ftrpc %s: the response: %s\n", cmd,
                rc == FTRPC_EINVAL ? err : ftrpc_strerror(rc));
        return -1;
    }
    fputs(json, out);
    fputc('\n', out);
    free(json);
    return 0;
}

void ft_cli_json_close(ft_cli_json *j)
{
    ftrpc_protoset_free(j->set);
    memset(j, 0, sizeof *j);
}

void ft_cli_json_flag(const char *opt, const char *value, ft_cli_json_flags *fl)
{
    const char **field = !strcmp(opt, "protoset")     ? &fl->protoset
                         : !strcmp(opt, "proto")      ? &fl->proto
                         : !strcmp(opt, "proto-path") ? &fl->proto_path
                                                      : &fl->data_json;
    *field = value;
}
