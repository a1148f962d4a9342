/* Strict JSON reading (see json_text.h). */
#include "base/json_text.h"

#include <stdbool.h>
#include <string.h>

#define WHY(text)                                                                                  \
    do {                                                                                           \
        if (why) *why = (text);                                                                    \
    } while (0)

/* The 4 hex digits at s as a code unit, or -1. */
static long hex4(const char *s)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int c = (unsigned char)s[i], d = c >= '0' && c <= '9'   ? c - '0'
                                         : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                                : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* 1 when the string holding buf[i] (inside it) is an object key: a ':' follows its end, whose
 * index goes to *end. */
static int in_key(const char *buf, size_t len, size_t i, size_t *end)
{
    while (i < len && buf[i] != '"')
        i += buf[i] == '\\' ? 2 : 1;
    *end = i;
    for (i++; i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' || buf[i] == '\r');)
        i++;
    return i < len && buf[i] == ':';
}

/* What json-c would let through in buf's \uXXXX escapes, or NULL: a surrogate without its pair
 * (json-c quietly makes it U+FFFD, where protobuf's JSON parsers refuse the text), and U+0000 in
 * an object key (json-c keeps keys as C strings: "a\u0000b" would be the key "a"; in a value its
 * length is kept, and the caller decides). A backslash can only stand in a string of valid JSON,
 * so the text is read escape by escape without tracking strings. */
static const char *bad_escape(const char *buf, size_t len)
{
    size_t str_end = 0; /* the end of the last string in_key measured: each is measured once */
    for (size_t i = 0; i + 1 < len; i++) {
        if (buf[i] != '\\') continue;
        if (buf[i + 1] != 'u' || len - i < 6) {
            i++; /* \" \\ \n ...: the escaped character is no escape itself */
            continue;
        }
        long u = hex4(buf + i + 2);
        i += 5;
        if (u == 0 && i + 1 > str_end && in_key(buf, len, i + 1, &str_end))
            return "U+0000 in an object key";
        if (u < 0xd800 || u > 0xdfff) continue;
        if (u >= 0xdc00) return "unpaired surrogate in a \\u escape";
        long low = i + 7 <= len && buf[i + 1] == '\\' && buf[i + 2] == 'u' ? hex4(buf + i + 3) : -1;
        if (low < 0xdc00 || low > 0xdfff) return "unpaired surrogate in a \\u escape";
        i += 6;
    }
    return NULL;
}

json_object *ft_json_parse_object(const char *buf, size_t len, int depth, const char **why)
{
    if (len == 0 || memchr(buf, '\0', len)) {
        WHY(len == 0 ? "empty JSON text" : "NUL byte in JSON text");
        return NULL;
    }
    if (len > INT32_MAX) {
        WHY("JSON text too large");
        return NULL;
    }
    json_tokener *tok = json_tokener_new_ex(depth);
    if (!tok) {
        WHY("out of memory");
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8 |
                                    JSON_TOKENER_ALLOW_TRAILING_CHARS);
    json_object *o = json_tokener_parse_ex(tok, buf, (int)len);
    size_t end = json_tokener_get_parse_end(tok);
    enum json_tokener_error err = json_tokener_get_error(tok);
    json_tokener_free(tok);
    if (!o) {
        WHY(err == json_tokener_continue      ? "truncated JSON"
            : err == json_tokener_error_depth ? "JSON nested too deep"
                                              : "not JSON");
        return NULL;
    }
    const char *bad = bad_escape(buf, end);
    if (bad) {
        json_object_put(o);
        WHY(bad);
        return NULL;
    }
    for (size_t i = end; i < len; i++) {
        if (buf[i] != ' ' && buf[i] != '\n' && buf[i] != '\r' && buf[i] != '\t') {
            json_object_put(o);
            WHY("trailing bytes after the JSON object");
            return NULL;
        }
    }
    if (!json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        WHY("not a JSON object");
        return NULL;
    }
    return o;
}

/* The digits of s[i..n) as a uint64 no larger than max: 0, or -1 (empty, a non-digit, a leading
 * zero, too large). */
static int digits(const char *s, size_t i, size_t n, uint64_t max, uint64_t *out)
{
    if (i == n || n - i > 20 || (s[i] == '0' && n - i > 1)) return -1;
    uint64_t v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (max - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int ft_json_i64_text(const char *s, size_t n, int64_t *out)
{
    bool neg = n > 0 && s[0] == '-';
    uint64_t v;
    if (digits(s, neg ? 1 : 0, n, (uint64_t)INT64_MAX + (neg ? 1u : 0u), &v)) return -1;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

int ft_json_u64_text(const char *s, size_t n, uint64_t *out)
{
    return digits(s, 0, n, UINT64_MAX, out);
}
