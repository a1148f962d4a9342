/* Arenas (arena.h): bump allocation from a chain of blocks, freed at once.
 *
 * The first block is small (about 1 KiB: it fits the allocator's per-thread cache, and most
 * requests and responses fit it); each next one doubles up to 64 KiB. An allocation larger than a
 * quarter of the next block gets a block of its own, kept behind the head, so that a big string
 * does not waste the rest of the current bump region. protobuf-c's free through the allocator
 * does nothing: the memory goes with the arena.
 *
 * A call's arena (ft_arena_new_with_head) starts with a block of one size, HEAD_BLOCK, and blocks
 * of that size are recycled through a small per-thread cache, as iobuf blocks are: a typed call
 * then reaches malloc only when its messages outgrow that block. A block freed on another thread
 * lands in that thread's cache; a thread's cache is freed when the thread exits.
 */
#include "base/arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>

#include "base/thread_exit.h"
#include "ftrpc/typed.h"

enum { FIRST_CAP = 1024 - 64, MAX_CAP = 64 * 1024, ALIGN = alignof(max_align_t) };

struct ft_arena_block {
    ft_arena_block *next;
    size_t cap;
    alignas(max_align_t) char data[];
};

/* A call's first block, head and room: 1 KiB with the block's header, within glibc's per-thread
 * cache sizes; 64 of them cached per thread cover a loop turn's batch of calls at 64 in flight. */
enum { HEAD_CAP = 1024 - sizeof(ft_arena_block), HEAD_CACHE_MAX = 64 };

static _Thread_local ft_arena_block *head_cache[HEAD_CACHE_MAX];
static _Thread_local int head_cache_len;
/* 0: no exit hook yet; 1: the cache is drained when the thread exits; 2: no caching (exiting) */
static _Thread_local int head_cache_state;

static void head_cache_drain(void)
{
    head_cache_state = 2;
    while (head_cache_len > 0)
        free(head_cache[--head_cache_len]);
}

/* Frees a block, or keeps it in the thread's cache when it has the first block's size (any block
 * of that size will do: they are all malloc'ed as sizeof header + HEAD_CAP). */
static void block_free(ft_arena_block *b)
{
    if (b->cap == HEAD_CAP && head_cache_len < HEAD_CACHE_MAX &&
        ft_thread_cache_usable(&head_cache_state, head_cache_drain)) {
        head_cache[head_cache_len++] = b;
        return;
    }
    free(b);
}

static void *pb_alloc(void *data, size_t size)
{
    return ft_arena_alloc(data, size);
}

static void pb_free(void *data, void *p)
{
    (void)data;
    (void)p;
}

void ft_arena_init(ft_arena *a)
{
    a->allocator.alloc = pb_alloc;
    a->allocator.free = pb_free;
    a->allocator.allocator_data = a;
    a->blocks = NULL;
    a->cur = a->end = NULL;
    a->next_cap = FIRST_CAP;
}

static void free_chain(ft_arena_block *b)
{
    while (b) {
        ft_arena_block *next = b->next;
        block_free(b);
        b = next;
    }
}

void ft_arena_fini(ft_arena *a)
{
    ft_arena_block *b = a->blocks;
    ft_arena_init(a); /* before the frees: `a` may live in one of the blocks */
    free_chain(b);
}

void ft_arena_free_head(ft_arena *a)
{
    free_chain(a->blocks); /* `a` is not read again: it may go with the blocks */
}

void *ft_arena_new_with_head(size_t head_size, size_t room, size_t arena_offset)
{
    size_t head = (head_size + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    ft_arena_block *b;
    if (head + room <= HEAD_CAP) {
        /* the standard first block, from the cache when it has one; the room is then all that
         * the head leaves of it */
        b = head_cache_len > 0 ? head_cache[--head_cache_len] : malloc(sizeof *b + HEAD_CAP);
        room = HEAD_CAP - head;
    } else {
        b = malloc(sizeof *b + head + room);
    }
    if (!b) return NULL;
    b->next = NULL;
    b->cap = head + room;
    ft_arena *a = (ft_arena *)(b->data + arena_offset);
    ft_arena_init(a);
    a->blocks = b;
    a->cur = b->data + head;
    a->end = b->data + head + room;
    return b->data;
}

void ft_arena_move(ft_arena *dst, ft_arena *src)
{
    ft_arena_init(dst);
    dst->blocks = src->blocks;
    dst->cur = src->cur;
    dst->end = src->end;
    dst->next_cap = src->next_cap;
    ft_arena_init(src);
}

void *ft_arena_alloc_slow(ft_arena *a, size_t size)
{
    if (size == 0) size = 1;
    if (size > SIZE_MAX - ALIGN - sizeof(ft_arena_block)) return NULL;
    size = (size + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if ((size_t)(a->end - a->cur) >= size) {
        void *p = a->cur;
        a->cur += size;
        return p;
    }
    if (a->blocks && size > a->next_cap / 4) {
        /* a block of its own, behind the head: the head's bump region stays in use */
        ft_arena_block *b = malloc(sizeof *b + size);
        if (!b) return NULL;
        b->cap = size;
        b->next = a->blocks->next;
        a->blocks->next = b;
        return b->data;
    }
    size_t cap = a->next_cap > size ? a->next_cap : size;
    ft_arena_block *b = malloc(sizeof *b + cap);
    if (!b) return NULL;
    b->cap = cap;
    b->next = a->blocks;
    a->blocks = b;
    a->cur = b->data + size;
    a->end = b->data + cap;
    if (a->next_cap < MAX_CAP) a->next_cap *= 2;
    return b->data;
}

/* ---- the public arena (ftrpc/typed.h) ---- */

ftrpc_arena *ftrpc_arena_new(void)
{
    ft_arena *a = malloc(sizeof *a);
    if (a) ft_arena_init(a);
    return a;
}

void ftrpc_arena_free(ftrpc_arena *a)
{
    if (!a) return;
    ft_arena_fini(a);
    free(a);
}

void *ftrpc_arena_alloc(ftrpc_arena *a, size_t size)
{
    return a ? ft_arena_alloc(a, size) : NULL;
}

ProtobufCAllocator *ftrpc_arena_allocator(ftrpc_arena *a)
{
    return a ? &a->allocator : NULL;
}
