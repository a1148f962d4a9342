/* A per-connection allocator for nghttp2 (nghttp2_mem): freed blocks are kept on free lists by
 * size class and handed out again, so that a stream's many small objects (its state, queued
 * frames, header copies, HPACK's reference-counted strings) cost a list pop and push instead of
 * malloc and free (glibc's per-thread cache holds 7 blocks a size: 64 streams in flight overflow
 * it). Blocks above FT_H2_MEM_MAX go to malloc. At most FT_H2_MEM_CACHE_BYTES of freed blocks are
 * kept; beyond that they are freed.
 *
 * Owner and thread: the connection's (one nghttp2 session, one loop thread), no locks. The session
 * frees through it, so ft_h2_mem_fini comes after nghttp2_session_del. Built with
 * AddressSanitizer, nothing is cached (every block goes back to free at once), so a use after
 * free inside nghttp2 is still reported. */
#ifndef FT_PROTOCOL_H2_MEM_H
#define FT_PROTOCOL_H2_MEM_H

#include <nghttp2/nghttp2.h>
#include <stddef.h>

/* size classes 64, 128, ..., 4096 bytes */
#define FT_H2_MEM_CLASSES 7
#define FT_H2_MEM_MAX 4096
#define FT_H2_MEM_CACHE_BYTES (128u << 10)

typedef struct ft_h2_mem {
    nghttp2_mem mem; /* what nghttp2_session_*_new3 takes; mem_user_data is this */
    void *free_list[FT_H2_MEM_CLASSES];
    size_t cached; /* bytes on the free lists */
} ft_h2_mem;

void ft_h2_mem_init(ft_h2_mem *m);
/* Frees the cached blocks. The blocks still handed out stay valid (each carries its class). */
void ft_h2_mem_fini(ft_h2_mem *m);

#endif
