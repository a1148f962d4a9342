/* dir:// entry files: the strict parser and the formatter (format in dir_entry.h).
 *
 * Invariants: ft_dir_entry_parse reads at most `len` bytes, never past FT_DIR_ENTRY_MAX, allocates
 * nothing, and answers FTRPC_EINVAL for anything that is not exactly the format; what it accepts,
 * ft_dir_entry_format writes back identically (round trip). No IO here: scanning the folder is in
 * naming_dir.c. */
#include "naming/dir_entry.h"

#include <stdio.h>
#include <string.h>

enum { K_SERVICE, K_ADDR, K_WEIGHT, K_TAGS, K_PID, K_TTL, K_REFRESHED, K_ID, K_COUNT };
static const char *const KEYS[K_COUNT] = {"service", "addr",   "weight",       "tags",
                                          "pid",     "ttl_ms", "refreshed_ms", "id"};
#define K_REQUIRED K_ID /* keys before it are required; K_ID is optional */

/* Strict unsigned decimal: 1..18 digits (cannot overflow int64), no sign, no leading zero unless
 * the number is 0. */
static int parse_num(const char *s, size_t len, int64_t min, int64_t max, int64_t *out)
{
    if (len == 0 || len > 18 || (len > 1 && s[0] == '0')) return -1;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max) return -1;
    *out = v;
    return 0;
}

static int fail(const char **why, const char *msg)
{
    if (why) *why = msg;
    return FTRPC_EINVAL;
}

int ft_dir_entry_parse(const char *buf, size_t len, ft_dir_entry *out, const char **why)
{
    if (!buf || len == 0) return fail(why, "empty");
    if (len > FT_DIR_ENTRY_MAX) return fail(why, "too large");
    if (buf[len - 1] != '\n') return fail(why, "truncated (no final newline)");
    if (memchr(buf, '\0', len)) return fail(why, "NUL byte");
    const size_t ml = sizeof FT_DIR_ENTRY_MAGIC - 1;
    if (len < ml + 1 || memcmp(buf, FT_DIR_ENTRY_MAGIC, ml) != 0 || buf[ml] != '\n')
        return fail(why, "bad magic line");
    ft_dir_entry e;
    memset(&e, 0, sizeof e);
    bool seen[K_COUNT] = {false};
    size_t pos = ml + 1;
    while (pos < len) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', len - pos); /* found: buf ends in '\n' */
        size_t ll = (size_t)(nl - line);
        pos += ll + 1;
        const char *eq = memchr(line, '=', ll);
        if (!eq) return fail(why, "line without '='");
        size_t kl = (size_t)(eq - line);
        const char *v = eq + 1;
        size_t vl = ll - kl - 1;
        int k = -1;
        for (int i = 0; i < K_COUNT; i++)
            if (strlen(KEYS[i]) == kl && memcmp(KEYS[i], line, kl) == 0) k = i;
        if (k < 0) return fail(why, "unknown key");
        if (seen[k]) return fail(why, "duplicate key");
        seen[k] = true;
        int64_t n = 0;
        switch (k) {
        case K_SERVICE:
            if (ft_service_check(v, vl)) return fail(why, "bad service");
            memcpy(e.service, v, vl);
            break;
        case K_ADDR:
            if (ft_addr_check(v, vl)) return fail(why, "bad addr");
            memcpy(e.ep.addr, v, vl);
            break;
        case K_WEIGHT:
            if (parse_num(v, vl, 1, FT_WEIGHT_MAX, &n)) return fail(why, "bad weight");
            e.ep.weight = (uint32_t)n;
            break;
        case K_TAGS:
            if (ft_tags_check(v, vl)) return fail(why, "bad tags");
            memcpy(e.ep.tags, v, vl);
            break;
        case K_PID:
            if (parse_num(v, vl, 1, INT32_MAX, &n)) return fail(why, "bad pid");
            e.pid = (int32_t)n;
            break;
        case K_TTL:
            if (parse_num(v, vl, 1, FT_DIR_TTL_MAX_MS, &n)) return fail(why, "bad ttl_ms");
            e.ttl_ms = n;
            break;
        case K_REFRESHED:
            if (parse_num(v, vl, 0, INT64_C(999999999999999999), &n))
                return fail(why, "bad refreshed_ms");
            e.refreshed_ms = n;
            break;
        case K_ID:
            if (ft_id_check(v, vl)) return fail(why, "bad id");
            memcpy(e.ep.id, v, vl);
            break;
        }
    }
    for (int i = 0; i < K_REQUIRED; i++)
        if (!seen[i]) return fail(why, "missing key");
    e.ep.ttl_ms = e.ttl_ms;
    *out = e;
    return 0;
}

int ft_dir_entry_format(const ft_dir_entry *e, char *buf, size_t cap)
{
    if (ft_service_check(e->service, strnlen(e->service, FT_SERVICE_MAX)) ||
        ft_addr_check(e->ep.addr, strnlen(e->ep.addr, FT_ADDR_MAX)) ||
        ft_tags_check(e->ep.tags, strnlen(e->ep.tags, FT_TAGS_MAX)) || e->ep.weight == 0 ||
        e->ep.weight > FT_WEIGHT_MAX || e->pid <= 0 || e->ttl_ms <= 0 ||
        e->ttl_ms > FT_DIR_TTL_MAX_MS || e->refreshed_ms < 0 ||
        e->refreshed_ms > INT64_C(999999999999999999) ||
        (e->ep.id[0] && ft_id_check(e->ep.id, strnlen(e->ep.id, FT_ID_MAX))))
        return FTRPC_EINVAL;
    int n = snprintf(buf, cap,
                     FT_DIR_ENTRY_MAGIC "\nservice=%s\naddr=%s\nweight=%u\ntags=%s\npid=%d\n"
                                        "ttl_ms=%lld\nrefreshed_ms=%lld\n%s%s%s",
                     e->service, e->ep.addr, (unsigned)e->ep.weight, e->ep.tags, (int)e->pid,
                     (long long)e->ttl_ms, (long long)e->refreshed_ms, e->ep.id[0] ? "id=" : "",
                     e->ep.id, e->ep.id[0] ? "\n" : "");
    if (n < 0 || (size_t)n >= cap || n > FT_DIR_ENTRY_MAX) return FTRPC_EINVAL;
    return n;
}

int ft_dir_entry_filename(const char *service, const char *addr, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s@%s.entry", service, addr);
    if (n < 0 || (size_t)n >= cap) return FTRPC_EINVAL;
    for (char *p = buf; *p; p++)
        if (*p == ':' || *p == '[' || *p == ']') *p = '_';
    return 0;
}
