/* Chained reference-counted buffers (see iobuf.h for the invariants).
 *
 * Standard-size blocks are recycled through a small per-thread cache so that the call path does
 * not reach malloc for every frame; a block freed on another thread than the one that made it
 * simply lands in that thread's cache. Oversized and user blocks go straight back to malloc or to
 * their owner. A thread's cache is freed when the thread exits.
 */
#include "base/iobuf.h"

#include <stdlib.h>
#include <string.h>

#include "base/thread_exit.h"
#include "ftrpc/common.h"

enum { CACHE_MAX = 64 };

static _Thread_local ft_block *block_cache[CACHE_MAX];
static _Thread_local int block_cache_len;
/* 0: no exit hook yet; 1: the cache is drained when the thread exits; 2: no caching (exiting) */
static _Thread_local int block_cache_state;

/* A thread's cache dies with it (IO and worker threads end when a runtime or pool stops): free
 * the blocks then, instead of leaking up to CACHE_MAX of them per thread. */
/* ftrpc_buf structs (two per call result) are recycled the same way */
enum { BUF_CACHE_MAX = 64 };
static _Thread_local ft_iobuf *buf_cache[BUF_CACHE_MAX];
static _Thread_local int buf_cache_len;

static void cache_drain(void)
{
    block_cache_state = 2;
    while (block_cache_len > 0)
        free(block_cache[--block_cache_len]);
    while (buf_cache_len > 0)
        free(buf_cache[--buf_cache_len]);
}

static int cache_usable(void)
{
    return ft_thread_cache_usable(&block_cache_state, cache_drain);
}

static size_t std_storage(void)
{
    return FT_IOBUF_BLOCK_SIZE - sizeof(ft_block);
}

ft_block *ft_block_new(size_t min_cap)
{
    ft_block *blk;
    size_t cap = std_storage();
    if (min_cap <= cap && block_cache_len > 0) {
        blk = block_cache[--block_cache_len];
    } else {
        if (min_cap > cap) cap = min_cap;
        if (cap > UINT32_MAX) return NULL;
        blk = malloc(sizeof(ft_block) + cap);
        if (!blk) return NULL;
        blk->cap = (uint32_t)cap;
    }
    atomic_init(&blk->refs, 1);
    blk->used = 0;
    blk->data = blk->storage;
    blk->free_fn = NULL;
    blk->free_arg = NULL;
    return blk;
}

void ft_block_release(ft_block *blk)
{
    /* The last reference needs no locked decrement: no other thread holds one to race with (a
     * reference is only taken from a held one), and the acquire load sees everything the other
     * holders did before they let go. */
    if (atomic_load_explicit(&blk->refs, memory_order_acquire) != 1 &&
        atomic_fetch_sub_explicit(&blk->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (blk->free_fn) {
        blk->free_fn(blk->data, blk->free_arg);
    } else if (blk->data == blk->storage && blk->cap == std_storage() &&
               block_cache_len < CACHE_MAX && cache_usable()) {
        block_cache[block_cache_len++] = blk;
        return;
    }
    free(blk);
}

static void block_ref(ft_block *blk)
{
    atomic_fetch_add_explicit(&blk->refs, 1, memory_order_relaxed);
}

void ft_iobuf_clear_blocks(ft_iobuf *b)
{
    for (uint32_t i = b->start; i < b->end; i++)
        ft_block_release(b->slices[i].block);
    b->start = b->end = 0;
    b->size = 0;
}

void ft_iobuf_fini_blocks(ft_iobuf *b)
{
    ft_iobuf_clear_blocks(b);
    if (b->write_block) ft_block_release(b->write_block);
    if (b->slices != b->inline_slices) free(b->slices);
    ft_iobuf_init(b);
}

/* Makes room for one more slice at the end. */
static int ensure_slot(ft_iobuf *b)
{
    if (b->end < b->cap) return 0;
    uint32_t live = b->end - b->start;
    if (b->start > 0 && live < b->cap / 2 + 1) {
        memmove(b->slices, b->slices + b->start, live * sizeof(ft_slice));
        b->start = 0;
        b->end = live;
        if (b->end < b->cap) return 0;
    }
    uint32_t ncap = b->cap * 2;
    ft_slice *ns = malloc(ncap * sizeof(ft_slice));
    if (!ns) return FTRPC_ENOMEM;
    memcpy(ns, b->slices + b->start, live * sizeof(ft_slice));
    if (b->slices != b->inline_slices) free(b->slices);
    b->slices = ns;
    b->cap = ncap;
    b->start = 0;
    b->end = live;
    return 0;
}

/* Appends a slice, taking over one reference the caller holds; merges with the tail slice when
 * the two are adjacent in the same block. */
static int push_slice(ft_iobuf *b, ft_block *blk, uint32_t off, uint32_t len)
{
    if (b->end > b->start) {
        ft_slice *tail = &b->slices[b->end - 1];
        if (tail->block == blk && tail->off + tail->len == off) {
            tail->len += len;
            b->size += len;
            ft_block_release(blk);
            return 0;
        }
    }
    if (ensure_slot(b) != 0) return FTRPC_ENOMEM;
    b->slices[b->end++] = (ft_slice){blk, off, len};
    b->size += len;
    return 0;
}

int ft_iobuf_append(ft_iobuf *b, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        if (b->end > b->start) {
            ft_slice *tail = &b->slices[b->end - 1];
            ft_block *blk = tail->block;
            if (!blk->free_fn && tail->off + tail->len == blk->used && blk->used < blk->cap &&
                blk != b->write_block &&
                atomic_load_explicit(&blk->refs, memory_order_acquire) == 1) {
                size_t n = blk->cap - blk->used;
                if (n > len) n = len;
                memcpy(blk->data + blk->used, p, n);
                blk->used += (uint32_t)n;
                tail->len += (uint32_t)n;
                b->size += n;
                p += n;
                len -= n;
                continue;
            }
        }
        ft_block *blk = ft_block_new(len > std_storage() ? len : 0);
        if (!blk) return FTRPC_ENOMEM;
        size_t n = blk->cap < len ? blk->cap : len;
        memcpy(blk->data, p, n);
        blk->used = (uint32_t)n;
        if (push_slice(b, blk, 0, (uint32_t)n) != 0) {
            ft_block_release(blk);
            return FTRPC_ENOMEM;
        }
        p += n;
        len -= n;
    }
    return 0;
}

int ft_iobuf_append_range(ft_iobuf *dst, const ft_iobuf *src, size_t off, size_t len)
{
    if (dst == src) {
        /* Appending a buffer to itself: pushing slices may move or compact the very array being
         * read, so share the range through a temporary buffer first. */
        ft_iobuf tmp;
        ft_iobuf_init(&tmp);
        int rc = ft_iobuf_append_range(&tmp, src, off, len);
        if (rc == 0) rc = ft_iobuf_append_range(dst, &tmp, 0, tmp.size);
        ft_iobuf_fini(&tmp);
        return rc;
    }
    for (uint32_t i = src->start; i < src->end && len > 0; i++) {
        const ft_slice *s = &src->slices[i];
        if (off >= s->len) {
            off -= s->len;
            continue;
        }
        size_t n = s->len - off;
        if (n > len) n = len;
        block_ref(s->block);
        if (push_slice(dst, s->block, s->off + (uint32_t)off, (uint32_t)n) != 0) {
            ft_block_release(s->block);
            return FTRPC_ENOMEM;
        }
        off = 0;
        len -= n;
    }
    return 0;
}

int ft_iobuf_append_buf(ft_iobuf *dst, const ft_iobuf *src)
{
    return ft_iobuf_append_range(dst, src, 0, src->size);
}

static void noop_free(void *data, void *arg)
{
    (void)data;
    (void)arg;
}

int ft_iobuf_append_user(ft_iobuf *b, const void *data, size_t len,
                         void (*free_fn)(void *data, void *arg), void *arg)
{
    if (len == 0 || len > UINT32_MAX) {
        if (len == 0 && free_fn) free_fn((void *)data, arg);
        return len == 0 ? 0 : FTRPC_EINVAL;
    }
    ft_block *blk = malloc(sizeof(ft_block));
    if (!blk) return FTRPC_ENOMEM;
    atomic_init(&blk->refs, 1);
    blk->cap = blk->used = (uint32_t)len;
    blk->data = (char *)data;
    /* Without an owner callback the memory stays the caller's; a no-op marks the block as
     * foreign so that it is never cached or appended into. */
    blk->free_fn = free_fn ? free_fn : noop_free;
    blk->free_arg = arg;
    if (push_slice(b, blk, 0, (uint32_t)len) != 0) {
        blk->free_fn = NULL;
        free(blk);
        return FTRPC_ENOMEM;
    }
    return 0;
}

void ft_iobuf_pop_front(ft_iobuf *b, size_t n)
{
    while (n > 0 && b->start < b->end) {
        ft_slice *s = &b->slices[b->start];
        if (n < s->len) {
            s->off += (uint32_t)n;
            s->len -= (uint32_t)n;
            b->size -= n;
            return;
        }
        n -= s->len;
        b->size -= s->len;
        ft_block_release(s->block);
        b->start++;
    }
    if (b->start == b->end) b->start = b->end = 0;
}

int ft_iobuf_cut(ft_iobuf *src, ft_iobuf *dst, size_t n)
{
    if (n > src->size) n = src->size;
    while (n > 0) {
        ft_slice *s = &src->slices[src->start];
        if (n < s->len) {
            block_ref(s->block);
            if (push_slice(dst, s->block, s->off, (uint32_t)n) != 0) {
                ft_block_release(s->block);
                return FTRPC_ENOMEM;
            }
            s->off += (uint32_t)n;
            s->len -= (uint32_t)n;
            src->size -= n;
            return 0;
        }
        /* the whole slice moves, with its reference */
        if (push_slice(dst, s->block, s->off, s->len) != 0) return FTRPC_ENOMEM;
        n -= s->len;
        src->size -= s->len;
        src->start++;
    }
    if (src->start == src->end) src->start = src->end = 0;
    return 0;
}

int ft_iobuf_cut_all_coalesced(ft_iobuf *src, ft_iobuf *dst, size_t copy_max)
{
    while (src->start < src->end) {
        ft_slice *s = &src->slices[src->start];
        if (s->len <= copy_max) {
            if (ft_iobuf_append(dst, s->block->data + s->off, s->len) != 0) return FTRPC_ENOMEM;
            ft_block_release(s->block);
        } else if (push_slice(dst, s->block, s->off, s->len) != 0) { /* moves the reference */
            return FTRPC_ENOMEM;
        }
        src->size -= s->len;
        src->start++;
    }
    src->start = src->end = 0;
    return 0;
}

void ft_iobuf_move(ft_iobuf *dst, ft_iobuf *src)
{
    ft_iobuf_fini(dst);
    if (src->slices == src->inline_slices) {
        /* only the live slices, from index 0: a call's payload is one slice, and copying the
         * whole struct was most of a move */
        uint32_t n = src->end - src->start;
        for (uint32_t i = 0; i < n; i++)
            dst->inline_slices[i] = src->slices[src->start + i];
        dst->end = n;
    } else {
        dst->slices = src->slices;
        dst->start = src->start;
        dst->end = src->end;
        dst->cap = src->cap;
    }
    dst->size = src->size;
    ft_block *wb = src->write_block;
    ft_iobuf_init(src);
    src->write_block = wb;
}

/* The slice holding byte `*off`, walking from whichever end is nearer; *off becomes the offset
 * within it. b->end when off is past the data. Readers that resume near the end (the HTTP header
 * scan, once per read) then cost what was appended since, not the number of slices before. */
static uint32_t slice_at(const ft_iobuf *b, size_t *off)
{
    uint32_t i;
    if (*off >= b->size) return b->end;
    if (*off < b->size / 2) {
        for (i = b->start; *off >= b->slices[i].len; i++)
            *off -= b->slices[i].len;
        return i;
    }
    size_t base = b->size; /* offset of the first byte past slice i - 1 */
    for (i = b->end; base > *off;)
        base -= b->slices[--i].len;
    *off -= base;
    return i;
}

size_t ft_iobuf_copy_at(const ft_iobuf *b, size_t off, void *dst, size_t n)
{
    /* the common case, bytes within the first slice (a small call's payload is one slice): one
     * memcpy without the walk, which was most of the encoders' copy (docs/performance.md, issue
     * #26's fast path) */
    if (b->start < b->end) {
        const ft_slice *s = &b->slices[b->start];
        if (off <= s->len && n <= s->len - off) {
            memcpy(dst, s->block->data + s->off + off, n);
            return n;
        }
    }
    char *out = dst;
    size_t copied = 0;
    for (uint32_t i = slice_at(b, &off); i < b->end && copied < n; i++) {
        const ft_slice *s = &b->slices[i];
        size_t k = s->len - off;
        if (k > n - copied) k = n - copied;
        memcpy(out + copied, s->block->data + s->off + off, k);
        copied += k;
        off = 0;
    }
    return copied;
}

const void *ft_iobuf_fetch(const ft_iobuf *b, void *tmp, size_t n)
{
    if (b->start < b->end && b->slices[b->start].len >= n)
        return b->slices[b->start].block->data + b->slices[b->start].off;
    ft_iobuf_copy_at(b, 0, tmp, n);
    return tmp;
}

const void *ft_iobuf_flatten(ft_iobuf *b)
{
    if (b->size == 0) return NULL;
    if (b->end - b->start == 1) return b->slices[b->start].block->data + b->slices[b->start].off;
    ft_block *blk = ft_block_new(b->size);
    if (!blk) return NULL;
    ft_iobuf_copy_at(b, 0, blk->data, b->size);
    blk->used = (uint32_t)b->size;
    size_t size = b->size;
    ft_iobuf_clear(b);
    b->slices[0] = (ft_slice){blk, 0, (uint32_t)size};
    b->start = 0;
    b->end = 1;
    b->size = size;
    return blk->data;
}

int ft_iobuf_to_iovec(const ft_iobuf *b, struct iovec *iov, int max)
{
    int n = 0;
    for (uint32_t i = b->start; i < b->end && n < max; i++, n++) {
        iov[n].iov_base = b->slices[i].block->data + b->slices[i].off;
        iov[n].iov_len = b->slices[i].len;
    }
    return n;
}

int ft_iobuf_reserve(ft_iobuf *b, size_t min, char **ptr, size_t *len)
{
    ft_block *wb = b->write_block;
    if (!wb || wb->cap - wb->used < min) {
        ft_block *nb = ft_block_new(min);
        if (!nb) return FTRPC_ENOMEM;
        if (wb) ft_block_release(wb);
        b->write_block = wb = nb;
    }
    *ptr = wb->data + wb->used;
    *len = wb->cap - wb->used;
    return 0;
}

void ft_iobuf_commit(ft_iobuf *b, size_t n)
{
    ft_block *wb = b->write_block;
    if (n == 0 || !wb) return;
    uint32_t off = wb->used;
    wb->used += (uint32_t)n;
    block_ref(wb);
    if (push_slice(b, wb, off, (uint32_t)n) != 0) {
        /* cannot record the bytes: drop them, the reader treats it as a broken connection */
        ft_block_release(wb);
    }
}

/* ---- public ftrpc_buf API: the same type, allocated on the heap ---- */

ftrpc_buf *ftrpc_buf_new(void)
{
    ft_iobuf *b = buf_cache_len > 0 ? buf_cache[--buf_cache_len] : malloc(sizeof *b);
    if (b) ft_iobuf_init(b);
    return b;
}

void ftrpc_buf_free(ftrpc_buf *buf)
{
    if (!buf) return;
    ft_iobuf_fini(buf);
    if (buf_cache_len < BUF_CACHE_MAX && cache_usable()) {
        buf_cache[buf_cache_len++] = buf;
        return;
    }
    free(buf);
}

size_t ftrpc_buf_size(const ftrpc_buf *buf)
{
    return buf->size;
}

int ftrpc_buf_append(ftrpc_buf *buf, const void *data, size_t len)
{
    return ft_iobuf_append(buf, data, len);
}

int ftrpc_buf_append_buf(ftrpc_buf *dst, const ftrpc_buf *src)
{
    return ft_iobuf_append_buf(dst, src);
}

int ftrpc_buf_append_user(ftrpc_buf *buf, const void *data, size_t len,
                          void (*free_fn)(void *data, void *arg), void *arg)
{
    return ft_iobuf_append_user(buf, data, len, free_fn, arg);
}

size_t ftrpc_buf_copy_to(const ftrpc_buf *buf, void *dst, size_t n)
{
    return ft_iobuf_copy_at(buf, 0, dst, n);
}

const void *ftrpc_buf_flatten(ftrpc_buf *buf)
{
    return ft_iobuf_flatten(buf);
}

void ftrpc_buf_clear(ftrpc_buf *buf)
{
    ft_iobuf_clear(buf);
}

size_t ftrpc_buf_segment_count(const ftrpc_buf *buf)
{
    return buf->end - buf->start;
}

const void *ftrpc_buf_segment(const ftrpc_buf *buf, size_t i, size_t *len)
{
    if (i >= (size_t)(buf->end - buf->start)) {
        *len = 0;
        return NULL;
    }
    const ft_slice *s = &buf->slices[buf->start + i];
    *len = s->len;
    return s->block->data + s->off;
}
