/* Size-class free lists under nghttp2 (see h2_mem.h). Each block starts with a 16-byte header
 * holding its class (FT_H2_MEM_CLASSES: a large block, from malloc as it is), which keeps the
 * payload on malloc's 16-byte alignment; realloc within the class returns the same block. */
#include "protocol/h2_mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define H2_MEM_NO_CACHE 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define H2_MEM_NO_CACHE 1
#endif
#endif

enum { HDR = 16 };

static unsigned class_of(size_t size)
{
    unsigned c = 0;
    size_t cap = 64;
    while (cap < size && c < FT_H2_MEM_CLASSES) {
        cap <<= 1;
        c++;
    }
    return c;
}

static size_t class_size(unsigned c)
{
    return (size_t)64 << c;
}

static void *mem_malloc(size_t size, void *user)
{
    ft_h2_mem *m = user;
    if (size > SIZE_MAX - HDR) return NULL;
    unsigned c = size <= FT_H2_MEM_MAX ? class_of(size) : FT_H2_MEM_CLASSES;
    uint8_t *p;
    if (c < FT_H2_MEM_CLASSES && m->free_list[c]) {
        p = m->free_list[c];
        memcpy(&m->free_list[c], p + HDR, sizeof(void *));
        m->cached -= class_size(c);
    } else {
        p = malloc(HDR + (c < FT_H2_MEM_CLASSES ? class_size(c) : size));
        if (!p) return NULL;
        memcpy(p, &c, sizeof c);
    }
    return p + HDR;
}

static void mem_free(void *ptr, void *user)
{
    ft_h2_mem *m = user;
    if (!ptr) return;
    uint8_t *p = (uint8_t *)ptr - HDR;
    unsigned c;
    memcpy(&c, p, sizeof c);
#ifndef H2_MEM_NO_CACHE
    if (c < FT_H2_MEM_CLASSES && m->cached + class_size(c) <= FT_H2_MEM_CACHE_BYTES) {
        memcpy(p + HDR, &m->free_list[c], sizeof(void *));
        m->free_list[c] = p;
        m->cached += class_size(c);
        return;
    }
#else
    (void)m;
#endif
    free(p);
}

static void *mem_calloc(size_t n, size_t size, void *user)
{
    if (size && n > SIZE_MAX / size) return NULL;
    void *p = mem_malloc(n * size, user);
    if (p) memset(p, 0, n * size);
    return p;
}

static void *mem_realloc(void *ptr, size_t size, void *user)
{
    if (!ptr) return mem_malloc(size, user);
    if (size == 0) {
        mem_free(ptr, user);
        return NULL;
    }
    uint8_t *p = (uint8_t *)ptr - HDR;
    unsigned c;
    memcpy(&c, p, sizeof c);
    if (c == FT_H2_MEM_CLASSES) {
        if (size > SIZE_MAX - HDR) return NULL;
        if (size <= FT_H2_MEM_MAX) {
            /* a large block (above every class) shrinking into a class: a class block, so that it
             * can be cached when freed; its first `size` bytes are the ones kept */
            void *q = mem_malloc(size, user);
            if (!q) return NULL;
            memcpy(q, ptr, size);
            mem_free(ptr, user);
            return q;
        }
        uint8_t *q = realloc(p, HDR + size);
        return q ? q + HDR : NULL;
    }
    if (size <= class_size(c)) return ptr;
    void *q = mem_malloc(size, user);
    if (!q) return NULL;
    memcpy(q, ptr, class_size(c));
    mem_free(ptr, user);
    return q;
}

void ft_h2_mem_init(ft_h2_mem *m)
{
    memset(m, 0, sizeof *m);
    m->mem.mem_user_data = m;
    m->mem.malloc = mem_malloc;
    m->mem.free = mem_free;
    m->mem.calloc = mem_calloc;
    m->mem.realloc = mem_realloc;
}

void ft_h2_mem_fini(ft_h2_mem *m)
{
    for (unsigned c = 0; c < FT_H2_MEM_CLASSES; c++) {
        while (m->free_list[c]) {
            uint8_t *p = m->free_list[c];
            memcpy(&m->free_list[c], p + HDR, sizeof(void *));
            free(p);
        }
    }
    m->cached = 0;
}
