/* Arenas: the memory typed calls unpack messages into (ftrpc_arena, ftrpc/typed.h).
 *
 * Allocations are carved from a chain of blocks and freed all at once, so that a message of any
 * depth costs a few mallocs and one pass of frees, and a call's request or response is freed with
 * the call. The header is public so that a call's context can hold its arena inline (one malloc
 * fewer per call); an arena taken by the user is moved into a header of its own (ft_arena_move).
 * Not thread-safe: one thread at a time.
 */
#ifndef FT_BASE_ARENA_H
#define FT_BASE_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stdalign.h>
#include <stddef.h>

typedef struct ft_arena_block ft_arena_block;

struct ftrpc_arena {
    ProtobufCAllocator allocator; /* first: allocator_data points back at the arena */
    ft_arena_block *blocks;       /* newest first; the bump region is the head's */
    char *cur, *end;
    size_t next_cap; /* the capacity of the next block: doubles up to a bound */
};
typedef struct ftrpc_arena ft_arena;

/* An empty arena (no memory until the first allocation). */
void ft_arena_init(ft_arena *a);
/* One block for a call's own state and its arena: a block holding `head_size` bytes for the
 * caller (returned, aligned for any type, not zeroed: the caller writes every field it reads, as
 * a call's state has them all to write anyway) followed by at least `room` bytes the arena
 * allocates from first (a block from the thread's cache, no malloc, when head and room fit the
 * standard first block of about 1 KiB). *a, which must lie inside the head, becomes an arena whose
 * first block is this one: the head is freed with the arena (ft_arena_fini), or stays with it when
 * it is moved. NULL on allocation failure. */
void *ft_arena_new_with_head(size_t head_size, size_t room, size_t arena_offset);
/* Frees every block (the arena itself first emptied, so that an arena inside its own head block,
 * ft_arena_new_with_head, is never touched after the free); the arena is empty again. */
void ft_arena_fini(ft_arena *a);
/* ft_arena_fini for an arena that is not used again, such as a call's inside its own head block
 * (ft_arena_new_with_head): the blocks freed, the arena itself not emptied first. */
void ft_arena_free_head(ft_arena *a);
/* Moves src's blocks into dst (an empty arena); src ends empty. */
void ft_arena_move(ft_arena *dst, ft_arena *src);
/* ft_arena_alloc when the head block's bump region lacks room (or size is 0): a block more. */
void *ft_arena_alloc_slow(ft_arena *a, size_t size);
/* size bytes aligned for any type, NULL on allocation failure. Inline for the common case, room
 * left in the current block: a typed call makes two or three of these, each a dozen instructions
 * rather than a call that saves and restores registers for the malloc it rarely makes. */
static inline void *ft_arena_alloc(ft_arena *a, size_t size)
{
    size_t room = (size_t)(a->end - a->cur);
    if (size - 1 < room) { /* size in [1, room]: rounding it up cannot overflow */
        size_t rounded = (size + alignof(max_align_t) - 1) & ~(size_t)(alignof(max_align_t) - 1);
        if (rounded <= room) {
            void *p = a->cur;
            a->cur += rounded;
            return p;
        }
    }
    return ft_arena_alloc_slow(a, size);
}

#endif
