/* The client policy flags shared by the commands that make calls (see cli.h). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ftrpc/ftrpc.h>

#include "cli.h"

static int parse_backoff(const char *v, ftrpc_backoff *b)
{
    if (!strcmp(v, "none")) {
        *b = (ftrpc_backoff){0};
        return 0;
    }
    if (!strncmp(v, "fixed:", 6)) {
        long ms;
        if (ft_cli_parse_int("--backoff fixed", v + 6, 1, 600000, &ms)) return -1;
        *b = (ftrpc_backoff){.kind = FTRPC_BACKOFF_FIXED, .initial_ms = (int)ms};
        return 0;
    }
    if (!strncmp(v, "exp:", 4)) {
        int initial, max;
        double mult;
        if (sscanf(v + 4, "%d:%lf:%d", &initial, &mult, &max) == 3 && initial > 0 && mult >= 1 &&
            max >= initial) {
            *b = (ftrpc_backoff){.kind = FTRPC_BACKOFF_EXPONENTIAL,
                                 .initial_ms = initial,
                                 .multiplier = mult,
                                 .max_ms = max};
            return 0;
        }
    }
    fprintf(stderr,
            "ftrpc: --backoff wants none, fixed:MS or exp:INITIAL_MS:MULTIPLIER:MAX_MS, "
            "not '%s'\n",
            v);
    return -1;
}

int ft_cli_client_flag(const char *opt, const char *value, struct ftrpc_client_options *o)
{
    long n;
    if (!strcmp(opt, "fail-mode")) {
        static const struct {
            const char *name;
            ftrpc_fail_mode mode;
        } modes[] = {{"failfast", FTRPC_FAILFAST},
                     {"failover", FTRPC_FAILOVER},
                     {"failtry", FTRPC_FAILTRY},
                     {"failbackup", FTRPC_FAILBACKUP}};
        for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
            if (!strcmp(value, modes[i].name)) {
                o->fail_mode = modes[i].mode;
                return 1;
            }
        }
        fprintf(stderr, "ftrpc: --fail-mode wants failfast, failover, failtry or failbackup\n");
        return -1;
    }
    if (!strcmp(opt, "retries")) {
        if (ft_cli_parse_int("--retries", value, 0, 100, &n)) return -1;
        o->retries = n == 0 ? FTRPC_NO_RETRY : (int)n;
        return 1;
    }
    if (!strcmp(opt, "attempt-timeout-ms")) {
        if (ft_cli_parse_int("--attempt-timeout-ms", value, 1, 3600000, &n)) return -1;
        o->attempt_timeout_ms = (int)n;
        return 1;
    }
    if (!strcmp(opt, "auth-token")) {
        o->auth_token = value; /* the client copies it */
        return 1;
    }
    if (!strcmp(opt, "tls")) {
        o->tls.enable = 1;
        return 1;
    }
    /* the files are read by ftrpc_client_new; each of these implies --tls */
    if (!strcmp(opt, "tls-ca") || !strcmp(opt, "tls-cert") || !strcmp(opt, "tls-key") ||
        !strcmp(opt, "tls-server-name")) {
        const char **field = !strcmp(opt, "tls-ca")     ? &o->tls.ca_file
                             : !strcmp(opt, "tls-cert") ? &o->tls.cert_file
                             : !strcmp(opt, "tls-key")  ? &o->tls.key_file
                                                        : &o->tls.server_name;
        *field = value;
        o->tls.enable = 1;
        return 1;
    }
    if (!strcmp(opt, "protocol")) {
        if (!strcmp(value, "baidu_std") || !strcmp(value, "grpc")) {
            o->protocol = value[0] == 'g' ? FTRPC_PROTOCOL_GRPC : FTRPC_PROTOCOL_BAIDU_STD;
            return 1;
        }
        fprintf(stderr, "ftrpc: --protocol wants baidu_std or grpc, not '%s'\n", value);
        return -1;
    }
    if (!strcmp(opt, "backoff")) return parse_backoff(value, &o->backoff) ? -1 : 1;
    if (!strcmp(opt, "lb")) {
        /* checked here so that the message names the flag; the client would only say EINVAL */
        if (!ftrpc_lb_name_valid(value)) {
            fprintf(
                stderr,
                "ftrpc: --lb wants random, rr, wrr, wrandom, chash, p2c or priority, not '%s'\n",
                value);
            return -1;
        }
        o->lb = value;
        return 1;
    }
    /* a delay or a policy turns backups on by itself (under failover, the default), in the
     * library as in brpc: the flags set nothing more */
    if (!strcmp(opt, "backup-ms")) {
        /* fractions for services faster than a millisecond: 0.2 is backup_request_us 200 */
        char *end;
        double ms = strtod(value, &end);
        if (!*value || *end || !(ms >= 0.001 && ms <= 3600000)) {
            fprintf(stderr,
                    "ftrpc: --backup-ms wants a delay in ms in [0.001, 3600000] (0.2 is 200 us), "
                    "not '%s'\n",
                    value);
            return -1;
        }
        int64_t us = llround(ms * 1000);
        o->backup_request_ms = us % 1000 ? 0 : (int)(us / 1000);
        o->backup_request_us = us % 1000 ? us : 0;
        return 1;
    }
    if (!strcmp(opt, "backup-budget")) {
        if (!strcmp(value, "default"))
            o->backup_budget = FTRPC_BACKUP_BUDGET_DEFAULT;
        else if (!strcmp(value, "retry"))
            o->backup_budget = FTRPC_BACKUP_BUDGET_RETRY;
        else if (!strcmp(value, "none"))
            o->backup_budget = FTRPC_BACKUP_BUDGET_NONE;
        else {
            fprintf(stderr, "ftrpc: --backup-budget wants default, retry or none, not '%s'\n",
                    value);
            return -1;
        }
        return 1;
    }
    if (!strcmp(opt, "backup-counts-as-retry")) {
        o->backup_counts_as_retry = 1;
        return 1;
    }
    if (!strcmp(opt, "max-attempts")) {
        if (ft_cli_parse_int("--max-attempts", value, 2, 5, &n)) return -1;
        o->max_attempts = (int)n;
        return 1;
    }
    if (!strcmp(opt, "tied")) {
        o->tied = 1; /* turns backups on by itself, as a delay does */
        return 1;
    }
    if (!strcmp(opt, "retry-budget-ratio")) {
        double r;
        if (!strcmp(value, "-1") || !strcmp(value, "off")) {
            o->retry_budget_ratio = -1;
            return 1;
        }
        if (ft_cli_parse_rate("--retry-budget-ratio", value, &r)) return -1;
        if (r == 0) {
            fprintf(stderr, "ftrpc: --retry-budget-ratio wants a share in (0, 1], or off\n");
            return -1;
        }
        o->retry_budget_ratio = r;
        return 1;
    }
    if (!strcmp(opt, "throttle-k")) {
        if (!strcmp(value, "-1") || !strcmp(value, "off")) {
            o->throttle_k = -1;
            return 1;
        }
        char *end = NULL;
        double k = strtod(value, &end);
        if (end == value || *end != '\0' || !(k >= 1 && k <= 1000)) {
            fprintf(stderr, "ftrpc: --throttle-k wants a number in [1, 1000], or off, not '%s'\n",
                    value);
            return -1;
        }
        o->throttle_k = k;
        return 1;
    }
    if (!strcmp(opt, "retry-budget-min-per-sec")) {
        if (ft_cli_parse_int("--retry-budget-min-per-sec", value, -1, 1000000, &n)) return -1;
        /* 0 is "no floor" on the command line; the option's 0 would mean the default */
        o->retry_budget_min_per_sec = n == 0 ? -1 : (int)n;
        return 1;
    }
    if (!strcmp(opt, "backup-policy")) {
        int rc = 0;
        ftrpc_backup_policy_free(o->backup_policy);
        o->backup_policy = NULL;
        if (!strcmp(value, "ratelimited"))
            rc = ftrpc_backup_policy_ratelimited_new(NULL, &o->backup_policy);
        else if (!strcmp(value, "adaptive"))
            rc = ftrpc_backup_policy_adaptive_new(NULL, &o->backup_policy);
        else if (strcmp(value, "fixed") != 0) {
            fprintf(stderr, "ftrpc: --backup-policy wants fixed, ratelimited or adaptive\n");
            return -1;
        }
        if (rc != 0) return -1;
        return 1;
    }
    return 0;
}

int ft_cli_client_new(const char *cmd, const char *url, const ftrpc_client_options *o,
                      ftrpc_client **out)
{
    /* the client refuses a lone certificate or key with EINVAL, which cannot say which flag */
    if (ft_cli_check_tls_pair(cmd, o->tls.cert_file, o->tls.key_file)) return -1;
    if ((o->backup_request_ms > 0 || o->backup_request_us > 0 || o->backup_policy || o->tied) &&
        (o->fail_mode == FTRPC_FAILFAST || o->fail_mode == FTRPC_FAILTRY)) {
        fprintf(stderr,
                "ftrpc %s: --backup-ms, --backup-policy and --tied need --fail-mode failover (the "
                "default) or failbackup: %s sends no backup\n",
                cmd, o->fail_mode == FTRPC_FAILFAST ? "failfast" : "failtry");
        return -1;
    }
    int rc = ftrpc_client_new(url, o, out);
    if (rc == 0) return 0;
    if (rc == FTRPC_ETLS) /* the log line above said which file and why */
        fprintf(stderr, "ftrpc %s: cannot set up TLS: %s\n", cmd, ftrpc_strerror(rc));
    else if (rc == FTRPC_EADDR)
        fprintf(stderr, "ftrpc %s: bad naming URL '%s': %s\n", cmd, url, ftrpc_strerror(rc));
    else
        fprintf(stderr, "ftrpc %s: cannot make a client for '%s': %s\n", cmd, url,
                ftrpc_strerror(rc));
    return -1;
}
