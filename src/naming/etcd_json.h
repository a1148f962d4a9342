/* The etcd:// wire pieces: base64, request bodies for etcd v3's JSON gateway, strict parsers of
 * its responses, the registration value, and the splitter that cuts a streaming /v3/watch body
 * into messages.
 *
 * Invariants: everything here is pure (no IO, no logging, no globals) and bounded: responses
 * larger than FT_ETCD_RESPONSE_MAX, JSON nested deeper than FT_ETCD_JSON_DEPTH, NUL bytes, invalid
 * UTF-8 and wrong types are refused with FTRPC_ERESPONSE (and a static reason); nothing an etcd or
 * a man in the middle sends can crash or assert. proto3's JSON omits zero values, so a missing
 * number reads as 0 and a missing array as empty. tests/fuzz/fuzz_etcd_json.c fuzzes every parser.
 *
 * Not here: HTTP (naming_etcd.c does it with libcurl), endpoint selection, retries. */
#ifndef FT_NAMING_ETCD_JSON_H
#define FT_NAMING_ETCD_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "naming/naming.h"

#define FT_ETCD_RESPONSE_MAX ((size_t)8 << 20) /* one response or watch message, bytes */
#define FT_ETCD_JSON_DEPTH 16                  /* etcd's answers nest 5 deep at most */
#define FT_ETCD_KEY_MAX 1024                   /* decoded key bytes */
#define FT_ETCD_VALUE_MAX 1024                 /* decoded registration value bytes */
#define FT_ETCD_TAGS_MAX 16                    /* tags in one value */
#define FT_ETCD_TTL_MAX_MS 86400000LL          /* a value's ttl_ms: at most a day */

/* ---- base64: base/base64.h (ft_b64_*) ---- */

/* "key" with its last byte incremented (dropping trailing 0xff bytes): the range_end that selects
 * every key starting with `key`. 0, or FTRPC_EINVAL when it does not fit in cap (NUL included) or
 * key is all 0xff. */
int ft_etcd_prefix_end(const char *key, char *out, size_t cap);

/* ---- request bodies: malloc'ed NUL-terminated JSON, NULL when out of memory ---- */

/* /v3/kv/range over [key, range_end) (range_end NULL: the one key); limit 0 = no limit. */
char *ft_etcd_req_range(const char *key, const char *range_end, bool count_only, int64_t limit);
/* /v3/kv/put of key=value bound to lease (0: no lease). */
char *ft_etcd_req_put(const char *key, const char *value, int64_t lease);
/* /v3/lease/grant. */
char *ft_etcd_req_grant(int64_t ttl_s);
/* /v3/lease/keepalive and /v3/lease/revoke. */
char *ft_etcd_req_lease(int64_t id);
/* /v3/watch create_request over [key, range_end) from start_rev (0: from now). */
char *ft_etcd_req_watch(const char *key, const char *range_end, int64_t start_rev);

/* ---- response parsers. Each returns 0 or FTRPC_ERESPONSE and, on failure, sets *why (when why
 * is not NULL) to a static reason. Outputs are written only on success. ---- */

/* The result of a range read. */
typedef struct ft_etcd_range_info {
    int64_t revision; /* the store revision the read saw */
    int64_t count;    /* keys in the range (may exceed what was returned, see `more`) */
    bool more;        /* etcd cut the answer at the request's limit */
    size_t skipped;   /* key-values refused one by one (bad key or value) */
    char why[192];    /* the first refusal, for a log line; "" when none */
} ft_etcd_range_info;

/* A /v3/kv/range answer for keys "<key_prefix><addr>": appends one endpoint per acceptable
 * key-value to *out. A bad key-value (key outside the prefix, address invalid, value not a
 * registration, value naming another address) is skipped and counted in info->skipped: one bad
 * entry never hides the others. A bad answer as a whole fails (and leaves *out empty). Also serves
 * count_only answers (out then stays empty). */
int ft_etcd_parse_range(const char *buf, size_t len, const char *key_prefix, ft_endpoint_list *out,
                        ft_etcd_range_info *info, const char **why);
/* A /v3/lease/grant answer: the lease id (non-zero) and the TTL etcd granted (> 0). */
int ft_etcd_parse_grant(const char *buf, size_t len, int64_t *id, int64_t *ttl_s, const char **why);
/* A /v3/lease/keepalive answer ({"result":{...}}): the remaining TTL; 0 means the lease is gone. */
int ft_etcd_parse_keepalive(const char *buf, size_t len, int64_t *ttl_s, const char **why);
/* Any answer with a header (put, revoke, deleterange): its revision. */
int ft_etcd_parse_header(const char *buf, size_t len, int64_t *revision, const char **why);
/* An error answer {"error":"..","message":"..","code":N}, or a stream's {"error":{...}}: copies
 * the message (truncated, NUL-terminated) and the gRPC code (-1 when absent). */
int ft_etcd_parse_error(const char *buf, size_t len, char *msg, size_t cap, int *code);

/* One message of a /v3/watch stream. */
typedef struct ft_etcd_watch_msg {
    int64_t revision;         /* header revision */
    int64_t compact_revision; /* > 0: the start revision was compacted away */
    bool created;             /* the watch was created */
    bool canceled;            /* etcd ended the watch (compaction, error) */
    size_t events;            /* changes carried */
} ft_etcd_watch_msg;
/* A watch stream message ({"result":{...}}). An {"error":...} message is FTRPC_ERESPONSE. */
int ft_etcd_parse_watch(const char *buf, size_t len, ft_etcd_watch_msg *out, const char **why);

/* ---- the registration value: {"addr":"h:p","weight":N,"tags":["a","b"],"id":"...","ttl_ms":N}
 * ---- */

/* Formats ep into buf (cap bytes, NUL included); "id" and "ttl_ms" only when set. Length, or
 * FTRPC_EINVAL (invalid ep or too long). */
int ft_etcd_value_format(const ft_endpoint *ep, char *buf, size_t cap);
/* Parses a value: addr required and valid; weight 1..65535 (default 100); tags an array of at
 * most FT_ETCD_TAGS_MAX valid tags (default none); id, the instance id, 1..63 chars of
 * [A-Za-z0-9_.-] (default ""); ttl_ms, the lease's TTL, 1..FT_ETCD_TTL_MAX_MS (default 0: not
 * known). Unknown keys are ignored, so a newer writer may add fields. 0 or FTRPC_ERESPONSE. */
int ft_etcd_value_parse(const char *buf, size_t len, ft_endpoint *out, const char **why);

/* ---- the watch stream splitter ---- */

/* Cuts a byte stream into top-level JSON objects (the gateway writes one per message, followed by
 * "\n"; the splitter does not rely on the newline). Only whitespace may separate objects. A
 * message over `max` bytes or garbage between objects is an error: the caller drops the stream. */
typedef struct ft_etcd_splitter {
    char *buf; /* the message being collected */
    size_t len, cap, max;
    int depth; /* brace/bracket depth of the message so far, 0 between messages */
    bool in_str, esc;
} ft_etcd_splitter;

void ft_etcd_splitter_init(ft_etcd_splitter *sp, size_t max);
void ft_etcd_splitter_fini(ft_etcd_splitter *sp);
/* Feeds bytes; calls on_msg(msg, len, arg) for every complete object. 0, FTRPC_ERESPONSE
 * (garbage or oversize: the splitter must be reset), FTRPC_ENOMEM, or on_msg's non-zero return
 * (feeding stops there). */
int ft_etcd_splitter_feed(ft_etcd_splitter *sp, const char *data, size_t len,
                          int (*on_msg)(const char *msg, size_t len, void *arg), void *arg);
/* Forgets any partial message. */
void ft_etcd_splitter_reset(ft_etcd_splitter *sp);

#endif
