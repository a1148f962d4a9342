/* etcd:// wire pieces (see etcd_json.h): base64, request bodies, strict response parsers, the
 * registration value and the watch stream splitter.
 *
 * Request bodies are built with snprintf: every string put in them is base64 or a number, so no
 * JSON escaping is needed. Responses are parsed with json-c in strict mode with a depth limit,
 * after a size check and a NUL check of our own; every field is type-checked before use, because
 * etcd's answers are outside input (the strict reading is base/json_text.c, base64 base/base64.c).
 * The gateway writes int64 fields as JSON strings; numbers are accepted too. json-c's strict mode
 * still takes single-quoted strings and NaN; neither gets past the type checks into an endpoint, so
 * they are not refused separately. */
#include "naming/etcd_json.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base64.h"
#include "base/json_text.h"

int ft_etcd_prefix_end(const char *key, char *out, size_t cap)
{
    size_t n = strlen(key);
    if (n + 1 > cap) return FTRPC_EINVAL;
    memcpy(out, key, n + 1);
    while (n > 0) {
        unsigned char c = (unsigned char)out[n - 1];
        if (c < 0xff) {
            out[n - 1] = (char)(c + 1);
            return 0;
        }
        out[--n] = '\0';
    }
    return FTRPC_EINVAL;
}

/* ---- request bodies ---- */

static char *b64_str(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(ft_b64_len(n) + 1);
    if (o) ft_b64_encode(s, n, o);
    return o;
}

/* printf into a fresh buffer of exactly the right size. */
static char *format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *format(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

char *ft_etcd_req_range(const char *key, const char *range_end, bool count_only, int64_t limit)
{
    char *k = b64_str(key), *e = range_end ? b64_str(range_end) : NULL, *s = NULL;
    if (k && (e || !range_end))
        s = format("{\"key\":\"%s\"%s%s%s%s,\"limit\":\"%lld\"}", k, e ? ",\"range_end\":\"" : "",
                   e ? e : "", e ? "\"" : "", count_only ? ",\"count_only\":true" : "",
                   (long long)limit);
    free(k);
    free(e);
    return s;
}

char *ft_etcd_req_put(const char *key, const char *value, int64_t lease)
{
    char *k = b64_str(key), *v = b64_str(value), *s = NULL;
    if (k && v)
        s = format("{\"key\":\"%s\",\"value\":\"%s\",\"lease\":\"%lld\"}", k, v, (long long)lease);
    free(k);
    free(v);
    return s;
}

char *ft_etcd_req_grant(int64_t ttl_s)
{
    return format("{\"TTL\":\"%lld\"}", (long long)ttl_s);
}

char *ft_etcd_req_lease(int64_t id)
{
    return format("{\"ID\":\"%lld\"}", (long long)id);
}

char *ft_etcd_req_watch(const char *key, const char *range_end, int64_t start_rev)
{
    char *k = b64_str(key), *e = b64_str(range_end), *s = NULL;
    if (k && e)
        s = format("{\"create_request\":{\"key\":\"%s\",\"range_end\":\"%s\","
                   "\"start_revision\":\"%lld\"}}",
                   k, e, (long long)start_rev);
    free(k);
    free(e);
    return s;
}

/* ---- JSON helpers ---- */

#define WHY(text)                                                                                  \
    do {                                                                                           \
        if (why) *why = (text);                                                                    \
    } while (0)

/* Parses buf as exactly one JSON object (whitespace around it allowed). NULL on any failure. */
static json_object *parse_object(const char *buf, size_t len, const char **why)
{
    if (len > FT_ETCD_RESPONSE_MAX) {
        WHY("response too large");
        return NULL;
    }
    return ft_json_parse_object(buf, len, FT_ETCD_JSON_DEPTH, why);
}

/* The member `key` of object o, or NULL when absent or JSON null. */
static json_object *member(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v)) return NULL;
    return v;
}

/* An int64 field: absent or null reads as 0 (proto3 JSON omits zero values). */
static int get_i64(json_object *o, const char *key, int64_t *out)
{
    json_object *v = member(o, key);
    if (!v) {
        *out = 0;
        return 0;
    }
    if (json_object_is_type(v, json_type_string))
        return ft_json_i64_text(json_object_get_string(v), (size_t)json_object_get_string_len(v),
                                out);
    if (json_object_is_type(v, json_type_int)) {
        *out = json_object_get_int64(v);
        return 0;
    }
    return -1;
}

static int get_bool(json_object *o, const char *key, bool *out)
{
    json_object *v = member(o, key);
    if (!v) {
        *out = false;
        return 0;
    }
    if (!json_object_is_type(v, json_type_boolean)) return -1;
    *out = json_object_get_boolean(v) != 0;
    return 0;
}

/* The "header" object's revision; the header itself is required. */
static int header_revision(json_object *o, int64_t *rev)
{
    json_object *h = member(o, "header");
    if (!h || !json_object_is_type(h, json_type_object)) return -1;
    if (get_i64(h, "revision", rev) || *rev < 0) return -1;
    return 0;
}

/* A base64 string field, decoded into out (cap bytes; a NUL is added, so cap - 1 bytes at most).
 * Absent reads as empty. */
static int get_b64(json_object *o, const char *key, char *out, size_t cap, size_t *len)
{
    json_object *v = member(o, key);
    if (!v) {
        out[0] = '\0';
        *len = 0;
        return 0;
    }
    if (!json_object_is_type(v, json_type_string)) return -1;
    if (ft_b64_decode(json_object_get_string(v), (size_t)json_object_get_string_len(v), out,
                      cap - 1, len))
        return -1;
    out[*len] = '\0';
    return 0;
}

/* ---- the registration value ---- */

int ft_etcd_value_format(const ft_endpoint *ep, char *buf, size_t cap)
{
    if (ft_addr_check(ep->addr, strlen(ep->addr)) || ep->weight < 1 || ep->weight > FT_WEIGHT_MAX ||
        ft_tags_check(ep->tags, strlen(ep->tags)) ||
        (ep->id[0] && ft_id_check(ep->id, strnlen(ep->id, FT_ID_MAX))) || ep->ttl_ms < 0 ||
        ep->ttl_ms > FT_ETCD_TTL_MAX_MS)
        return FTRPC_EINVAL;
    /* Addresses, tags and ids are of [A-Za-z0-9_.:|[\]-]: nothing to escape. */
    size_t n = 0;
    int w = snprintf(buf, cap, "{\"addr\":\"%s\",\"weight\":%u,\"tags\":[", ep->addr,
                     (unsigned)ep->weight);
    if (w < 0 || (size_t)w >= cap) return FTRPC_EINVAL;
    n = (size_t)w;
    const char *p = ep->tags;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t tl = bar ? (size_t)(bar - p) : strlen(p);
        w = snprintf(buf + n, cap - n, "%s\"%.*s\"", p == ep->tags ? "" : ",", (int)tl, p);
        if (w < 0 || (size_t)w >= cap - n) return FTRPC_EINVAL;
        n += (size_t)w;
        if (!bar) break;
        p = bar + 1;
    }
    char ttl[32] = "";
    if (ep->ttl_ms) snprintf(ttl, sizeof ttl, ",\"ttl_ms\":%lld", (long long)ep->ttl_ms);
    w = snprintf(buf + n, cap - n, "]%s%s%s%s}", ep->id[0] ? ",\"id\":\"" : "", ep->id,
                 ep->id[0] ? "\"" : "", ttl);
    if (w < 0 || (size_t)w >= cap - n) return FTRPC_EINVAL;
    return (int)(n + (size_t)w);
}

static int value_from(json_object *o, ft_endpoint *out, const char **why)
{
    ft_endpoint ep = {.weight = FT_WEIGHT_DEFAULT};
    json_object *a = member(o, "addr");
    if (!a || !json_object_is_type(a, json_type_string)) {
        WHY("value has no \"addr\" string");
        return FTRPC_ERESPONSE;
    }
    size_t al = (size_t)json_object_get_string_len(a);
    if (ft_addr_check(json_object_get_string(a), al)) {
        WHY("value's \"addr\" is not host:port");
        return FTRPC_ERESPONSE;
    }
    memcpy(ep.addr, json_object_get_string(a), al);
    ep.addr[al] = '\0';
    json_object *w = member(o, "weight");
    if (w) {
        int64_t v;
        if (!json_object_is_type(w, json_type_int) || (v = json_object_get_int64(w)) < 1 ||
            v > FT_WEIGHT_MAX) {
            WHY("value's \"weight\" is not an integer 1..65535");
            return FTRPC_ERESPONSE;
        }
        ep.weight = (uint32_t)v;
    }
    json_object *t = member(o, "tags");
    if (t) {
        size_t n = json_object_is_type(t, json_type_array) ? json_object_array_length(t) : 0;
        if (!json_object_is_type(t, json_type_array) || n > FT_ETCD_TAGS_MAX) {
            WHY("value's \"tags\" is not an array of at most 16 tags");
            return FTRPC_ERESPONSE;
        }
        size_t used = 0;
        for (size_t i = 0; i < n; i++) {
            json_object *e = json_object_array_get_idx(t, i);
            size_t el = e && json_object_is_type(e, json_type_string)
                            ? (size_t)json_object_get_string_len(e)
                            : 0;
            if (el == 0 || strchr(json_object_get_string(e), '|') ||
                ft_tags_check(json_object_get_string(e), el) || used + el + 1 >= sizeof ep.tags) {
                WHY("value's \"tags\" holds a bad tag");
                return FTRPC_ERESPONSE;
            }
            if (used) ep.tags[used++] = '|';
            memcpy(ep.tags + used, json_object_get_string(e), el);
            used += el;
            ep.tags[used] = '\0';
        }
    }
    json_object *id = member(o, "id");
    if (id) {
        size_t il =
            json_object_is_type(id, json_type_string) ? (size_t)json_object_get_string_len(id) : 0;
        if (il == 0 || ft_id_check(json_object_get_string(id), il)) {
            WHY("value's \"id\" is not 1..63 chars of [A-Za-z0-9_.-]");
            return FTRPC_ERESPONSE;
        }
        memcpy(ep.id, json_object_get_string(id), il);
        ep.id[il] = '\0';
    }
    json_object *ttl = member(o, "ttl_ms");
    if (ttl) {
        int64_t v;
        if (!json_object_is_type(ttl, json_type_int) || (v = json_object_get_int64(ttl)) < 1 ||
            v > FT_ETCD_TTL_MAX_MS) {
            WHY("value's \"ttl_ms\" is not an integer 1..86400000");
            return FTRPC_ERESPONSE;
        }
        ep.ttl_ms = v;
    }
    *out = ep;
    return 0;
}

int ft_etcd_value_parse(const char *buf, size_t len, ft_endpoint *out, const char **why)
{
    if (len > FT_ETCD_VALUE_MAX) {
        WHY("value too long");
        return FTRPC_ERESPONSE;
    }
    json_object *o = parse_object(buf, len, why);
    if (!o) return FTRPC_ERESPONSE;
    int rc = value_from(o, out, why);
    json_object_put(o);
    return rc;
}

/* ---- responses ---- */

/* One key-value of a range answer: 0 and *ep, or a reason in `why`. */
static int range_kv(json_object *kv, const char *key_prefix, size_t pl, ft_endpoint *ep,
                    const char **why)
{
    char key[FT_ETCD_KEY_MAX + 1], val[FT_ETCD_VALUE_MAX + 1];
    size_t kl, vl;
    if (!kv || !json_object_is_type(kv, json_type_object)) {
        WHY("a kvs element is not an object");
        return -1;
    }
    if (get_b64(kv, "key", key, sizeof key, &kl) || memchr(key, '\0', kl)) {
        WHY("a key is not base64 of at most 1024 bytes");
        return -1;
    }
    if (kl <= pl || memcmp(key, key_prefix, pl) != 0 || ft_addr_check(key + pl, kl - pl)) {
        WHY("a key is not <prefix>/<service>/<host:port>");
        return -1;
    }
    if (get_b64(kv, "value", val, sizeof val, &vl)) {
        WHY("a value is not base64 of at most 1024 bytes");
        return -1;
    }
    if (ft_etcd_value_parse(val, vl, ep, why)) return -1;
    if (strcmp(ep->addr, key + pl) != 0) {
        WHY("a value's addr differs from its key's");
        return -1;
    }
    return 0;
}

int ft_etcd_parse_range(const char *buf, size_t len, const char *key_prefix, ft_endpoint_list *out,
                        ft_etcd_range_info *info, const char **why)
{
    json_object *o = parse_object(buf, len, why);
    if (!o) return FTRPC_ERESPONSE;
    ft_etcd_range_info ri = {0};
    int rc = FTRPC_ERESPONSE;
    json_object *kvs = member(o, "kvs");
    if (header_revision(o, &ri.revision)) {
        WHY("no valid header");
    } else if (get_i64(o, "count", &ri.count) || ri.count < 0 || get_bool(o, "more", &ri.more)) {
        WHY("bad count or more");
    } else if (kvs && !json_object_is_type(kvs, json_type_array)) {
        WHY("kvs is not an array");
    } else {
        rc = 0;
        size_t n = kvs ? json_object_array_length(kvs) : 0;
        size_t pl = strlen(key_prefix);
        for (size_t i = 0; i < n && rc == 0; i++) {
            ft_endpoint ep;
            const char *kwhy = "bad key-value";
            if (range_kv(json_object_array_get_idx(kvs, i), key_prefix, pl, &ep, &kwhy)) {
                if (ri.skipped++ == 0) snprintf(ri.why, sizeof ri.why, "%s", kwhy);
                continue;
            }
            rc = ft_endpoint_list_add(out, &ep);
            if (rc == FTRPC_EINVAL) {
                /* Over FT_NAMING_MAX_ENDPOINTS: keep what fits, say so like a cut answer. */
                ri.more = true;
                rc = 0;
                break;
            }
        }
        if (rc) {
            ft_endpoint_list_fini(out);
            WHY("out of memory");
        }
    }
    json_object_put(o);
    if (rc == 0 && info) *info = ri;
    return rc;
}

int ft_etcd_parse_grant(const char *buf, size_t len, int64_t *id, int64_t *ttl_s, const char **why)
{
    json_object *o = parse_object(buf, len, why);
    if (!o) return FTRPC_ERESPONSE;
    int64_t rev, i, t;
    json_object *err = member(o, "error");
    int rc = FTRPC_ERESPONSE;
    if (header_revision(o, &rev) || get_i64(o, "ID", &i) || get_i64(o, "TTL", &t))
        WHY("no valid header, ID or TTL");
    else if (err && json_object_get_string_len(err) > 0)
        WHY("grant refused");
    else if (i == 0 || t <= 0)
        WHY("no lease granted");
    else
        rc = 0;
    json_object_put(o);
    if (rc == 0) {
        *id = i;
        *ttl_s = t;
    }
    return rc;
}

int ft_etcd_parse_keepalive(const char *buf, size_t len, int64_t *ttl_s, const char **why)
{
    json_object *o = parse_object(buf, len, why);
    if (!o) return FTRPC_ERESPONSE;
    json_object *r = member(o, "result");
    int64_t rev, t;
    int rc = FTRPC_ERESPONSE;
    if (!r || !json_object_is_type(r, json_type_object))
        WHY("no result object");
    else if (header_revision(r, &rev) || get_i64(r, "TTL", &t) || t < 0)
        WHY("no valid header or TTL");
    else
        rc = 0;
    json_object_put(o);
    if (rc == 0) *ttl_s = t;
    return rc;
}

int ft_etcd_parse_header(const char *buf, size_t len, int64_t *revision, const char **why)
{
    json_object *o = parse_object(buf, len, why);
    if (!o) return FTRPC_ERESPONSE;
    int64_t rev;
    int rc = header_revision(o, &rev) ? FTRPC_ERESPONSE : 0;
    if (rc) WHY("no valid header");
    json_object_put(o);
    if (rc == 0) *revision = rev;
    return rc;
}

int ft_etcd_parse_error(const char *buf, size_t len, char *msg, size_t cap, int *code)
{
    json_object *o = parse_object(buf, len, NULL);
    if (!o) return FTRPC_ERESPONSE;
    json_object *e = member(o, "error");
    /* A unary error is {"error":"..","message":"..","code":N}; a stream's is {"error":{...}}. */
    json_object *holder = e && json_object_is_type(e, json_type_object) ? e : o;
    json_object *m = member(holder, "message");
    if (!m || !json_object_is_type(m, json_type_string)) m = e;
    int rc = FTRPC_ERESPONSE;
    int64_t c = -1;
    json_object *cv = member(holder, "code") ? member(holder, "code") : member(holder, "grpc_code");
    if (m && json_object_is_type(m, json_type_string) &&
        (!cv || (json_object_is_type(cv, json_type_int) && (c = json_object_get_int64(cv)) >= 0 &&
                 c <= 1000))) {
        if (cap > 0) snprintf(msg, cap, "%s", json_object_get_string(m));
        if (code) *code = cv ? (int)c : -1;
        rc = 0;
    }
    json_object_put(o);
    return rc;
}

int ft_etcd_parse_watch(const char *buf, size_t len, ft_etcd_watch_msg *out, const char **why)
{
    json_object *o = parse_object(buf, len, why);
    if (!o) return FTRPC_ERESPONSE;
    ft_etcd_watch_msg m = {0};
    json_object *r = member(o, "result");
    json_object *ev = r ? member(r, "events") : NULL;
    int rc = FTRPC_ERESPONSE;
    if (member(o, "error"))
        WHY("the watch stream reported an error");
    else if (!r || !json_object_is_type(r, json_type_object))
        WHY("no result object");
    else if (header_revision(r, &m.revision) ||
             get_i64(r, "compact_revision", &m.compact_revision) || m.compact_revision < 0 ||
             get_bool(r, "created", &m.created) || get_bool(r, "canceled", &m.canceled))
        WHY("bad header, created, canceled or compact_revision");
    else if (ev && !json_object_is_type(ev, json_type_array))
        WHY("events is not an array");
    else {
        m.events = ev ? json_object_array_length(ev) : 0;
        rc = 0;
    }
    json_object_put(o);
    if (rc == 0) *out = m;
    return rc;
}

/* ---- the splitter ---- */

void ft_etcd_splitter_init(ft_etcd_splitter *sp, size_t max)
{
    memset(sp, 0, sizeof *sp);
    sp->max = max;
}

void ft_etcd_splitter_fini(ft_etcd_splitter *sp)
{
    free(sp->buf);
    memset(sp, 0, sizeof *sp);
}

void ft_etcd_splitter_reset(ft_etcd_splitter *sp)
{
    sp->len = 0;
    sp->depth = 0;
    sp->in_str = sp->esc = false;
}

static int sp_push(ft_etcd_splitter *sp, const char *p, size_t n)
{
    if (n == 0) return 0;
    if (sp->len + n > sp->max) return FTRPC_ERESPONSE;
    if (sp->len + n > sp->cap) {
        size_t cap = sp->cap ? sp->cap : 4096;
        while (cap < sp->len + n)
            cap *= 2;
        if (cap > sp->max) cap = sp->max;
        char *b = realloc(sp->buf, cap);
        if (!b) return FTRPC_ENOMEM;
        sp->buf = b;
        sp->cap = cap;
    }
    memcpy(sp->buf + sp->len, p, n);
    sp->len += n;
    return 0;
}

int ft_etcd_splitter_feed(ft_etcd_splitter *sp, const char *data, size_t len,
                          int (*on_msg)(const char *msg, size_t len, void *arg), void *arg)
{
    size_t start = 0; /* first byte of data not yet copied into sp->buf */
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (sp->depth == 0) {
            if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
                start = i + 1;
                continue;
            }
            if (c != '{') return FTRPC_ERESPONSE;
            start = i;
            sp->depth = 1;
            continue;
        }
        if (sp->in_str) {
            if (sp->esc)
                sp->esc = false;
            else if (c == '\\')
                sp->esc = true;
            else if (c == '"')
                sp->in_str = false;
            continue;
        }
        if (c == '"') {
            sp->in_str = true;
        } else if (c == '{' || c == '[') {
            if (++sp->depth > FT_ETCD_JSON_DEPTH * 4) return FTRPC_ERESPONSE;
        } else if (c == '}' || c == ']') {
            if (--sp->depth == 0) {
                int rc = sp_push(sp, data + start, i + 1 - start);
                if (rc) return rc;
                size_t mlen = sp->len;
                sp->len = 0;
                start = i + 1;
                rc = on_msg(sp->buf, mlen, arg);
                if (rc) return rc;
            }
        }
    }
    if (sp->depth > 0) return sp_push(sp, data + start, len - start);
    return 0;
}
