/* Zeroed allocations for types whose alignment is above malloc's (16 bytes on x86-64 glibc): the
 * metrics' striped cells are _Alignas(64) so that two threads' stripes never share a cache line,
 * and an object holding them must start on a 64-byte boundary too, or each cell straddles two
 * lines and the padding buys nothing (and the access is, formally, misaligned).
 *
 * Owner: the caller; free the memory with free(). */
#ifndef FT_BASE_ALIGNED_ALLOC_H
#define FT_BASE_ALIGNED_ALLOC_H

#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* `count` zeroed objects of `size` bytes (a multiple of `align`, as sizeof of an aligned type is)
 * on an `align` boundary, or NULL (out of memory, or count * size overflows). */
static inline void *ft_aligned_calloc(size_t count, size_t size, size_t align)
{
    if (align < alignof(max_align_t)) align = alignof(max_align_t);
    if (size && count > SIZE_MAX / size) return NULL;
    size_t bytes = count * size;
    bytes = bytes ? (bytes + align - 1) / align * align : align; /* aligned_alloc's size rule */
    void *p = aligned_alloc(align, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

/* Whether p sits on an `align` boundary (for asserts in the init functions of aligned types). */
static inline int ft_is_aligned(const void *p, size_t align)
{
    return ((uintptr_t)p & (align - 1)) == 0;
}

#endif
