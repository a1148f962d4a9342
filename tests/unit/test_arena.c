/* Arenas (src/base/arena.c): what typed calls unpack messages into. Allocations are aligned for any
 * type and do not overlap, whatever their sizes (small ones share a block, large ones get their
 * own); a moved arena keeps every allocation, the head block included; protobuf-c unpacks into
 * one through its allocator view; a call's arena block is recycled through the thread's cache.
 * Run under ASan or valgrind, a freed arena that still held a
 * live allocation, or a write past a block, shows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <malloc.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "ftrpc/typed.h"
#include "rpc_meta.pb-c.h"

static void allocations_are_aligned_and_apart_whatever_their_sizes(void **state)
{
    (void)state;
    ftrpc_arena *a = ftrpc_arena_new();
    assert_non_null(a);
    /* sizes from 1 byte to past the largest block, in an order that mixes small and large */
    static const size_t SIZES[] = {1, 7, 16, 100, 479, 481, 960, 961, 2000, 70000, 3, 65536, 5};
    enum { N = sizeof SIZES / sizeof SIZES[0] };
    unsigned char *p[N];
    for (size_t i = 0; i < N; i++) {
        p[i] = ftrpc_arena_alloc(a, SIZES[i]);
        assert_non_null(p[i]);
        assert_int_equal((uintptr_t)p[i] % alignof(max_align_t), 0);
        memset(p[i], (int)i + 1, SIZES[i]);
    }
    for (size_t i = 0; i < N; i++)
        for (size_t k = 0; k < SIZES[i]; k++)
            assert_int_equal(p[i][k], (unsigned char)(i + 1)); /* no later allocation overlapped */
    assert_non_null(ftrpc_arena_alloc(a, 0));
    ftrpc_arena_free(a);
    ftrpc_arena_free(NULL);
    assert_null(ftrpc_arena_alloc(NULL, 8));
    assert_null(ftrpc_arena_allocator(NULL));
}

typedef struct head {
    int before;
    ft_arena arena;
    int after;
} head;

static void a_moved_arena_keeps_its_head_block_and_every_allocation(void **state)
{
    (void)state;
    head *h = ft_arena_new_with_head(sizeof *h, 256, offsetof(head, arena));
    assert_non_null(h);
    h->before = 0;
    h->after = 42;
    char *small = ft_arena_alloc(&h->arena, 100); /* from the head block's room */
    char *big = ft_arena_alloc(&h->arena, 5000);  /* a block of its own */
    assert_true(small > (char *)h && small < (char *)h + sizeof *h + 256);
    strcpy(small, "small");
    memset(big, 'b', 5000);
    ft_arena taken;
    ft_arena_move(&taken, &h->arena);
    assert_null(h->arena.blocks); /* emptied: the head's own arena frees nothing now */
    ft_arena_fini(&h->arena);
    assert_int_equal(h->after, 42); /* the head lives on, in the taken arena's first block */
    assert_string_equal(small, "small");
    assert_int_equal(big[4999], 'b');
    ft_arena_fini(&taken); /* frees the head too */
}

static void protobuf_c_unpacks_into_an_arena(void **state)
{
    (void)state;
    Brpc__Policy__RpcRequestMeta meta = BRPC__POLICY__RPC_REQUEST_META__INIT;
    meta.service_name = "a.Service";
    meta.method_name = "Method";
    uint8_t buf[64];
    size_t n = brpc__policy__rpc_request_meta__pack(&meta, buf);
    ftrpc_arena *a = ftrpc_arena_new();
    Brpc__Policy__RpcRequestMeta *m =
        brpc__policy__rpc_request_meta__unpack(ftrpc_arena_allocator(a), n, buf);
    assert_non_null(m);
    assert_string_equal(m->service_name, "a.Service");
    assert_string_equal(m->method_name, "Method");
    /* freeing through the allocator does nothing: the arena frees it all */
    brpc__policy__rpc_request_meta__free_unpacked(m, ftrpc_arena_allocator(a));
    ftrpc_arena_free(a);
}

/* Bytes in use in glibc's main arena (the main thread's mallocs), or -1 when that cannot be seen
 * (ASan and valgrind replace malloc, and mallinfo2 then reports nothing). */
static long heap_in_use(void)
{
    static int usable = -1;
    if (usable < 0) {
        size_t before = mallinfo2().uordblks;
        void *probe = malloc(32768);
        usable = probe && mallinfo2().uordblks >= before + 32768;
        free(probe);
    }
    return usable ? (long)mallinfo2().uordblks : -1;
}

/* A call's arena block goes back to the thread's cache when the arena is freed, and the next call
 * takes it from there: a loop turn's batch of typed calls reaches malloc once, not per call. */
static void call_arena_blocks_are_reused_from_the_threads_cache(void **state)
{
    (void)state;
    if (heap_in_use() < 0) skip();
    enum { N = 32 };
    struct head {
        ft_arena arena;
        int x;
    } * h[N];
    long m0 = heap_in_use();
    for (int i = 0; i < N; i++) {
        h[i] = ft_arena_new_with_head(sizeof *h[i], 512, offsetof(struct head, arena));
        assert_non_null(h[i]);
        assert_non_null(ft_arena_alloc(&h[i]->arena, 400)); /* the room asked for is there */
    }
    long m1 = heap_in_use();
    for (int i = 0; i < N; i++)
        ft_arena_fini(&h[i]->arena);
    long m2 = heap_in_use();
    assert_true(m2 >= m1); /* kept, not freed */
    for (int i = 0; i < N; i++) {
        h[i] = ft_arena_new_with_head(sizeof *h[i], 512, offsetof(struct head, arena));
        assert_non_null(h[i]);
        h[i]->x = 1; /* the head is the caller's to write (not zeroed) */
    }
    assert_true(heap_in_use() <= m2); /* no malloc: every block came from the cache */
    for (int i = 0; i < N; i++) {
        assert_non_null(ft_arena_alloc(&h[i]->arena, 5000)); /* and a block of its own */
        ft_arena_free_head(&h[i]->arena); /* the arena inside its head: not emptied, all freed */
    }
    long m3 = heap_in_use();
    for (int i = 0; i < N; i++)
        h[i] = ft_arena_new_with_head(sizeof *h[i], 512, offsetof(struct head, arena));
    assert_true(heap_in_use() <= m3); /* the heads went back to the cache */
    for (int i = 0; i < N; i++)
        ft_arena_free_head(&h[i]->arena);
    assert_true(m1 - m0 >= N * 512);
    /* a head with more room than the cached block holds still gets it, from malloc */
    struct head *big = ft_arena_new_with_head(sizeof *big, 4096, offsetof(struct head, arena));
    assert_non_null(big);
    memset(ft_arena_alloc(&big->arena, 4000), 1, 4000);
    ft_arena_fini(&big->arena);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(allocations_are_aligned_and_apart_whatever_their_sizes),
        cmocka_unit_test(a_moved_arena_keeps_its_head_block_and_every_allocation),
        cmocka_unit_test(protobuf_c_unpacks_into_an_arena),
        cmocka_unit_test(call_arena_blocks_are_reused_from_the_threads_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
