/* Growable text buffer (see strbuf.h). */
#include "base/strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ftrpc/common.h"

void ft_strbuf_init(ft_strbuf *sb, size_t max_bytes)
{
    sb->data = NULL;
    sb->len = 0;
    sb->cap = 0;
    sb->max = max_bytes ? max_bytes : FT_STRBUF_DEFAULT_MAX;
}

void ft_strbuf_fini(ft_strbuf *sb)
{
    free(sb->data);
    sb->data = NULL;
    sb->len = 0;
    sb->cap = 0;
}

void ft_strbuf_reset(ft_strbuf *sb)
{
    sb->len = 0;
    if (sb->data) sb->data[0] = '\0';
}

/* Makes room for `extra` more bytes of text plus the NUL. */
static int reserve(ft_strbuf *sb, size_t extra)
{
    if (extra >= sb->max || sb->len >= sb->max - extra) return FTRPC_ENOMEM;
    size_t need = sb->len + extra + 1;
    if (need <= sb->cap) return 0;
    size_t cap = sb->cap ? sb->cap : (sb->max < 64 ? sb->max : 64);
    while (cap < need)
        cap = cap > sb->max / 2 ? sb->max : cap * 2;
    char *p = realloc(sb->data, cap);
    if (!p) return FTRPC_ENOMEM;
    if (!sb->data) p[0] = '\0';
    sb->data = p;
    sb->cap = cap;
    return 0;
}

int ft_strbuf_append(ft_strbuf *sb, const char *s, size_t n)
{
    int rc = reserve(sb, n);
    if (rc) return rc;
    memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
    return 0;
}

int ft_strbuf_appends(ft_strbuf *sb, const char *s)
{
    return ft_strbuf_append(sb, s, strlen(s));
}

int ft_strbuf_vappendf(ft_strbuf *sb, const char *fmt, va_list ap)
{
    char small[256];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0) return FTRPC_EINVAL;
    if ((size_t)n < sizeof small) return ft_strbuf_append(sb, small, (size_t)n);
    /* Too long for the stack buffer: format straight into the reserved tail. */
    int rc = reserve(sb, (size_t)n);
    if (rc) return rc;
    vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
    sb->len += (size_t)n;
    return 0;
}

int ft_strbuf_appendf(ft_strbuf *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = ft_strbuf_vappendf(sb, fmt, ap);
    va_end(ap);
    return rc;
}

int ft_strbuf_append_json(ft_strbuf *sb, const char *s)
{
    int rc = ft_strbuf_append(sb, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p && rc == 0; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            rc = ft_strbuf_append(sb, esc, 2);
        } else if (*p == '\n') {
            rc = ft_strbuf_append(sb, "\\n", 2);
        } else if (*p < 0x20 || *p == 0x7f) {
            rc = ft_strbuf_appendf(sb, "\\u%04x", *p);
        } else {
            rc = ft_strbuf_append(sb, (const char *)p, 1);
        }
    }
    return rc ? rc : ft_strbuf_append(sb, "\"", 1);
}
