/* A growable, NUL-terminated text buffer for building output (metrics exposition, console pages).
 *
 * Invariants: when data is not NULL, data[len] == '\0' and len < cap. Growth doubles the capacity
 * but never beyond `max` bytes (the limit a caller sets so that a runaway dump cannot eat memory);
 * an append that would exceed it, or whose allocation fails, returns FTRPC_ENOMEM and leaves the
 * buffer exactly as it was. It does not do binary data, ropes or zero-copy; use iobuf for those.
 *
 * Threads: a strbuf belongs to one thread at a time; nothing here is synchronised. */
#ifndef FT_BASE_STRBUF_H
#define FT_BASE_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

/* Default growth bound when ft_strbuf_init gets 0: 64 MiB. */
#define FT_STRBUF_DEFAULT_MAX ((size_t)64 << 20)

typedef struct ft_strbuf {
    char *data; /* NULL until the first append; then always NUL-terminated */
    size_t len; /* bytes of text, not counting the NUL */
    size_t cap; /* bytes allocated */
    size_t max; /* bound on cap */
} ft_strbuf;

/* max_bytes: largest capacity the buffer may grow to, NUL included; 0 = FT_STRBUF_DEFAULT_MAX. */
void ft_strbuf_init(ft_strbuf *sb, size_t max_bytes);
/* Frees the memory; the buffer may be init'ed again. */
void ft_strbuf_fini(ft_strbuf *sb);
/* Empties the text but keeps the memory for reuse. */
void ft_strbuf_reset(ft_strbuf *sb);

/* Append n bytes / a C string / printf-formatted text. 0, or FTRPC_ENOMEM (buffer unchanged). */
int ft_strbuf_append(ft_strbuf *sb, const char *s, size_t n);
int ft_strbuf_appends(ft_strbuf *sb, const char *s);
int ft_strbuf_appendf(ft_strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ft_strbuf_vappendf(ft_strbuf *sb, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Appends s as a quoted JSON string (", \ and control bytes escaped; other bytes as they are).
 * 0 or FTRPC_ENOMEM (the buffer may then hold part of the string). */
int ft_strbuf_append_json(ft_strbuf *sb, const char *s);

/* The text, never NULL ("" when empty). Valid until the next append, reset or fini. */
static inline const char *ft_strbuf_cstr(const ft_strbuf *sb)
{
    return sb->data ? sb->data : "";
}

#endif
