/* ft_iobuf: chained, reference-counted byte buffers (the public ftrpc_buf is this type).
 *
 * A buffer is a list of slices; a slice is a range of a block; a block is reference-counted and
 * shared by every slice that points into it, from any number of buffers on any threads. Moving
 * bytes between buffers (cut, append_buf) moves or shares slices, never bytes.
 *
 * Invariants: a slice is never empty; `size` is the sum of slice lengths; a block's bytes below
 * its `used` mark never change again, which is what makes sharing safe. Only two writers advance
 * `used`: ft_iobuf_append, into a tail block no one else references (refs == 1), and the
 * reserve/commit pair, which a connection's read buffer uses to fill the block it reads into even
 * while frames cut from that block are alive elsewhere (only that one buffer writes to it).
 */
#ifndef FT_BASE_IOBUF_H
#define FT_BASE_IOBUF_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "ftrpc/buf.h"

#define FT_IOBUF_BLOCK_SIZE 8192
#define FT_IOBUF_INLINE_SLICES 4

typedef struct ft_block {
    atomic_int refs;
    uint32_t cap;  /* bytes of storage at data */
    uint32_t used; /* bytes written; below this mark nothing changes */
    char *data;
    void (*free_fn)(void *data, void *arg); /* user memory: how to give it back */
    void *free_arg;
    char storage[]; /* own blocks: data == storage */
} ft_block;

typedef struct ft_slice {
    ft_block *block;
    uint32_t off;
    uint32_t len;
} ft_slice;

typedef struct ftrpc_buf {
    ft_slice *slices; /* inline_slices, or a heap array once more are needed */
    uint32_t start;   /* index of the first live slice */
    uint32_t end;     /* one past the last live slice */
    uint32_t cap;
    size_t size;
    ft_block *write_block; /* reserve/commit target (read buffers only), holds a reference */
    ft_slice inline_slices[FT_IOBUF_INLINE_SLICES];
} ft_iobuf;

/* init, fini and clear are inline for the empty buffer, the common case of a call's
 * attachments and of buffers already moved out: a call touches a dozen of them. */
static inline void ft_iobuf_init(ft_iobuf *b)
{
    b->slices = b->inline_slices;
    b->start = b->end = 0;
    b->cap = FT_IOBUF_INLINE_SLICES;
    b->size = 0;
    b->write_block = NULL;
}
/* Makes b (empty) hold the first len bytes (0 < len <= blk->used) of blk, taking over the caller's
 * reference: a block filled in place (a message packed for one call) becomes a buffer with no
 * reserve, commit or move. */
static inline void ft_iobuf_init_block(ft_iobuf *b, ft_block *blk, uint32_t len)
{
    ft_iobuf_init(b);
    b->slices[0] = (ft_slice){blk, 0, len};
    b->end = 1;
    b->size = len;
}
void ft_iobuf_fini_blocks(ft_iobuf *b);
void ft_iobuf_clear_blocks(ft_iobuf *b);
/* Releases every block; the buffer can be init'ed again. */
static inline void ft_iobuf_fini(ft_iobuf *b)
{
    if (b->start != b->end || b->write_block || b->slices != b->inline_slices)
        ft_iobuf_fini_blocks(b);
    else
        ft_iobuf_init(b);
}
static inline void ft_iobuf_clear(ft_iobuf *b)
{
    if (b->start != b->end) ft_iobuf_clear_blocks(b);
    b->start = b->end = 0;
    b->size = 0;
}
static inline size_t ft_iobuf_size(const ft_iobuf *b)
{
    return b->size;
}
static inline size_t ft_iobuf_slice_count(const ft_iobuf *b)
{
    return b->end - b->start;
}

/* Copies bytes in. 0 or FTRPC_ENOMEM. */
int ft_iobuf_append(ft_iobuf *b, const void *data, size_t len);
/* Shares all of src's blocks at the end of dst. */
int ft_iobuf_append_buf(ft_iobuf *dst, const ft_iobuf *src);
/* Shares [off, off+len) of src at the end of dst; the range must lie within src. */
int ft_iobuf_append_range(ft_iobuf *dst, const ft_iobuf *src, size_t off, size_t len);
/* Wraps user memory without copying (see ftrpc_buf_append_user). */
int ft_iobuf_append_user(ft_iobuf *b, const void *data, size_t len,
                         void (*free_fn)(void *data, void *arg), void *arg);
/* Moves the first n bytes (n <= size) of src to the end of dst. */
int ft_iobuf_cut(ft_iobuf *src, ft_iobuf *dst, size_t n);
/* Moves everything from src to the end of dst, as ft_iobuf_cut(src, dst, size) does, except that
 * a slice of at most copy_max bytes is copied into dst's tail block instead of shared: small frames
 * queued one after another then form one contiguous run (one iovec for the kernel) instead of two
 * or more slices each. src ends empty. 0, or FTRPC_ENOMEM with part of src already moved. */
int ft_iobuf_cut_all_coalesced(ft_iobuf *src, ft_iobuf *dst, size_t copy_max);
/* Moves everything from src to dst (dst's old content is released first). src ends empty. */
void ft_iobuf_move(ft_iobuf *dst, ft_iobuf *src);
/* Drops the first n bytes (n <= size). */
void ft_iobuf_pop_front(ft_iobuf *b, size_t n);
/* Copies n bytes starting at offset off to dst; returns the count copied (less at the end). */
size_t ft_iobuf_copy_at(const ft_iobuf *b, size_t off, void *dst, size_t n);
/* A pointer to the first n bytes (n <= size), contiguous: into the buffer when the first slice
 * holds them, else copied into tmp (which must hold n bytes). */
const void *ft_iobuf_fetch(const ft_iobuf *b, void *tmp, size_t n);
/* Contiguous view of everything (see ftrpc_buf_flatten). */
const void *ft_iobuf_flatten(ft_iobuf *b);
/* Fills up to max iovecs from the front; returns how many. */
int ft_iobuf_to_iovec(const ft_iobuf *b, struct iovec *iov, int max);

/* Reader side: writable space of at least min bytes at the end (a new block when the current
 * write block lacks room), then commit the n bytes actually written. One reader per buffer. */
int ft_iobuf_reserve(ft_iobuf *b, size_t min, char **ptr, size_t *len);
void ft_iobuf_commit(ft_iobuf *b, size_t n);

/* Blocks live in per-thread caches; ft_block_release frees or caches. Exposed for tests. */
ft_block *ft_block_new(size_t min_cap);
void ft_block_release(ft_block *block);

#endif
