/* Option and result structs across versions: every public struct that a caller fills or the library
 * fills for the caller travels with its size, the size the caller's header declared (the static
 * inline wrappers in include/ftrpc/ pass sizeof). Fields are only ever appended, so a struct from
 * an older header is a prefix of today's: the library reads that prefix and takes the defaults
 * (zero) for the rest, and writes no further than the prefix. A struct from a newer header (a
 * binary built against a newer ftrpc, run with this one) is accepted when the fields this library
 * does not know are all zero, i.e. left at their defaults (the rule of Linux's clone3 and
 * openat2). */
#ifndef FT_BASE_SIZED_OPTIONS_H
#define FT_BASE_SIZED_OPTIONS_H

#include <stddef.h>
#include <string.h>

#include "ftrpc/common.h"

/* Copies the caller's struct (src, src_size bytes; NULL: all defaults) into dst (dst_size bytes,
 * this library's layout), zero-filling what the caller's layout lacks. 0, or FTRPC_EINVAL when
 * src is larger and a field this library does not know is set. */
static inline int ft_sized_options_read(void *dst, size_t dst_size, const void *src,
                                        size_t src_size)
{
    memset(dst, 0, dst_size);
    if (!src) return 0;
    if (src_size > dst_size) {
        const unsigned char *extra = (const unsigned char *)src + dst_size;
        for (size_t i = 0; i < src_size - dst_size; i++)
            if (extra[i]) return FTRPC_EINVAL;
        src_size = dst_size;
    }
    memcpy(dst, src, src_size);
    return 0;
}

/* The caller's struct as this library's layout, for paths that run per call: the caller's own
 * struct when its size is today's (nothing copied), else a copy in buf (ft_sized_options_read).
 * NULL stays NULL. *bad is set (and NULL returned) when the copy is refused. */
static inline const void *ft_sized_options_view(void *buf, size_t size, const void *src,
                                                size_t src_size, int *bad)
{
    *bad = 0;
    if (!src || src_size == size) return src;
    if (ft_sized_options_read(buf, size, src, src_size) != 0) {
        *bad = 1;
        return NULL;
    }
    return buf;
}

/* Writes this library's struct (src, src_size bytes) into the caller's (dst, dst_size bytes):
 * the prefix the caller's layout has room for. */
static inline void ft_sized_result_write(void *dst, size_t dst_size, const void *src,
                                         size_t src_size)
{
    memcpy(dst, src, dst_size < src_size ? dst_size : src_size);
}

#endif
