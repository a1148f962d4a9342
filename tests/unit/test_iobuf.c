/* ft_iobuf: appends, sharing without copies, cuts across slices, the read-buffer path
 * (reserve/commit while frames cut from the same block live on), the append rule, the public
 * ftrpc_buf wrappers, blocks released on another thread, and a seeded property test against a
 * plain byte-array model. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/iobuf.h"
#include "ftrpc/buf.h"

static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static size_t rng_below(size_t n)
{
    return n ? (size_t)(rng() % n) : 0;
}

static void fill_pattern(char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)(seed + i * 131 + (i >> 8));
}

/* Every slice is non-empty and inside its block's written bytes; the sizes add up. */
static void check_invariants(const ft_iobuf *b)
{
    size_t sum = 0;
    for (uint32_t i = b->start; i < b->end; i++) {
        const ft_slice *s = &b->slices[i];
        assert_true(s->len > 0);
        assert_true((size_t)s->off + s->len <= s->block->used);
        assert_true(atomic_load(&s->block->refs) >= 1);
        sum += s->len;
    }
    assert_int_equal(sum, b->size);
}

static void expect_contents(const ft_iobuf *b, const void *data, size_t n)
{
    check_invariants(b);
    assert_int_equal(ft_iobuf_size(b), n);
    char *got = malloc(n + 1);
    assert_non_null(got);
    assert_int_equal(ft_iobuf_copy_at(b, 0, got, n + 1), n);
    assert_memory_equal(got, data, n);
    free(got);
}

/* Builds a buffer of user slices of the given lengths over one pattern (known slice layout). */
static void build_slices(ft_iobuf *b, const char *pattern, const size_t *lens, int nlens)
{
    size_t off = 0;
    for (int i = 0; i < nlens; i++) {
        assert_int_equal(ft_iobuf_append_user(b, pattern + off, lens[i], NULL, NULL), 0);
        off += lens[i];
    }
    assert_int_equal(ft_iobuf_slice_count(b), (size_t)nlens);
}

static void append_small_and_large_keeps_bytes_in_order(void **state)
{
    (void)state;
    static const size_t sizes[] = {1,
                                   10,
                                   100,
                                   FT_IOBUF_BLOCK_SIZE - 1,
                                   FT_IOBUF_BLOCK_SIZE,
                                   FT_IOBUF_BLOCK_SIZE + 1,
                                   3 * FT_IOBUF_BLOCK_SIZE + 7};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        total += sizes[i];
    char *model = malloc(total);
    ft_iobuf b;
    ft_iobuf_init(&b);
    size_t off = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        fill_pattern(model + off, sizes[i], (unsigned)i);
        assert_int_equal(ft_iobuf_append(&b, model + off, sizes[i]), 0);
        off += sizes[i];
        expect_contents(&b, model, off);
    }
    ft_iobuf_fini(&b);
    assert_int_equal(ft_iobuf_size(&b), 0);
    free(model);
}

static void small_appends_fill_one_block_before_taking_another(void **state)
{
    (void)state;
    ft_iobuf b;
    ft_iobuf_init(&b);
    char chunk[100];
    fill_pattern(chunk, sizeof chunk, 1);
    for (int i = 0; i < 50; i++)
        assert_int_equal(ft_iobuf_append(&b, chunk, sizeof chunk), 0);
    assert_int_equal(ft_iobuf_slice_count(&b), 1); /* 5000 bytes fit one standard block */
    ft_iobuf_fini(&b);
}

static void large_append_goes_into_one_block(void **state)
{
    (void)state;
    size_t n = 5 * FT_IOBUF_BLOCK_SIZE;
    char *data = malloc(n);
    fill_pattern(data, n, 9);
    ft_iobuf b;
    ft_iobuf_init(&b);
    assert_int_equal(ft_iobuf_append(&b, data, n), 0);
    assert_int_equal(ft_iobuf_slice_count(&b), 1);
    expect_contents(&b, data, n);
    ft_iobuf_fini(&b);
    free(data);
}

static void append_buf_shares_blocks_without_copying(void **state)
{
    (void)state;
    char data[3000];
    fill_pattern(data, sizeof data, 3);
    ft_iobuf a, b;
    ft_iobuf_init(&a);
    ft_iobuf_init(&b);
    assert_int_equal(ft_iobuf_append(&a, data, sizeof data), 0);
    assert_int_equal(ft_iobuf_append_buf(&b, &a), 0);
    expect_contents(&b, data, sizeof data);
    assert_int_equal(ft_iobuf_slice_count(&b), 1);
    assert_ptr_equal(b.slices[b.start].block, a.slices[a.start].block);
    assert_int_equal(atomic_load(&a.slices[a.start].block->refs), 2);
    struct iovec va, vb;
    ft_iobuf_to_iovec(&a, &va, 1);
    ft_iobuf_to_iovec(&b, &vb, 1);
    assert_ptr_equal(va.iov_base, vb.iov_base);
    ft_iobuf_fini(&a);
    assert_int_equal(atomic_load(&b.slices[b.start].block->refs), 1);
    expect_contents(&b, data, sizeof data);
    ft_iobuf_fini(&b);
}

static void append_buf_to_itself_doubles_the_content(void **state)
{
    (void)state;
    char pattern[64];
    fill_pattern(pattern, sizeof pattern, 4);
    static const size_t lens[] = {8, 8, 8, 8, 8, 8};
    ft_iobuf b;
    ft_iobuf_init(&b);
    build_slices(&b, pattern, lens, 6);
    ft_iobuf_pop_front(&b, 16); /* live slices no longer start at index 0 */
    assert_int_equal(ft_iobuf_append_buf(&b, &b), 0);
    char want[64];
    memcpy(want, pattern + 16, 32);
    memcpy(want + 32, pattern + 16, 32);
    expect_contents(&b, want, 64);
    ft_iobuf_fini(&b);
}

typedef struct range_case {
    size_t off, len;
} range_case;

static void append_range_shares_exactly_the_window(void **state)
{
    (void)state;
    char pattern[40];
    fill_pattern(pattern, sizeof pattern, 5);
    static const size_t lens[] = {10, 10, 10, 10};
    static const range_case cases[] = {{0, 40},  {0, 0},   {0, 10}, {5, 10}, {9, 2},
                                       {10, 10}, {15, 20}, {39, 1}, {1, 38}};
    ft_iobuf src;
    ft_iobuf_init(&src);
    build_slices(&src, pattern, lens, 4);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ft_iobuf dst;
        ft_iobuf_init(&dst);
        assert_int_equal(ft_iobuf_append_range(&dst, &src, cases[i].off, cases[i].len), 0);
        expect_contents(&dst, pattern + cases[i].off, cases[i].len);
        if (cases[i].len > 0) /* shared, not copied */
            assert_ptr_equal(dst.slices[dst.start].block->data + dst.slices[dst.start].off,
                             pattern + cases[i].off);
        ft_iobuf_fini(&dst);
    }
    expect_contents(&src, pattern, sizeof pattern);
    ft_iobuf_fini(&src);
}

typedef struct free_count {
    int calls;
    void *last_data;
} free_count;

static void count_free(void *data, void *arg)
{
    free_count *fc = arg;
    fc->calls++;
    fc->last_data = data;
}

static void append_user_frees_once_when_the_last_reference_goes(void **state)
{
    (void)state;
    char user[500];
    fill_pattern(user, sizeof user, 6);
    free_count fc = {0, NULL};
    ft_iobuf a, b, c;
    ft_iobuf_init(&a);
    ft_iobuf_init(&b);
    ft_iobuf_init(&c);
    assert_int_equal(ft_iobuf_append_user(&a, user, sizeof user, count_free, &fc), 0);
    assert_ptr_equal(a.slices[a.start].block->data, user); /* no copy */
    assert_int_equal(ft_iobuf_append_buf(&b, &a), 0);
    assert_int_equal(ft_iobuf_cut(&a, &c, 100), 0);
    ft_iobuf_fini(&a);
    ft_iobuf_fini(&b);
    assert_int_equal(fc.calls, 0);
    expect_contents(&c, user, 100);
    ft_iobuf_fini(&c);
    assert_int_equal(fc.calls, 1);
    assert_ptr_equal(fc.last_data, user);
}

static void append_user_without_free_fn_leaves_memory_to_the_caller(void **state)
{
    (void)state;
    char user[64];
    fill_pattern(user, sizeof user, 7);
    ft_iobuf b;
    ft_iobuf_init(&b);
    assert_int_equal(ft_iobuf_append_user(&b, user, sizeof user, NULL, NULL), 0);
    /* a user block is never appended into, even with room and a single reference */
    assert_int_equal(ft_iobuf_append(&b, "xyz", 3), 0);
    assert_int_equal(ft_iobuf_slice_count(&b), 2);
    char want[67];
    memcpy(want, user, 64);
    memcpy(want + 64, "xyz", 3);
    expect_contents(&b, want, sizeof want);
    ft_iobuf_fini(&b);
    char check[64];
    fill_pattern(check, sizeof check, 7);
    assert_memory_equal(user, check, sizeof check);
}

static void append_user_of_zero_bytes_frees_at_once(void **state)
{
    (void)state;
    free_count fc = {0, NULL};
    ft_iobuf b;
    ft_iobuf_init(&b);
    assert_int_equal(ft_iobuf_append_user(&b, "x", 0, count_free, &fc), 0);
    assert_int_equal(fc.calls, 1);
    assert_int_equal(ft_iobuf_size(&b), 0);
    ft_iobuf_fini(&b);
    assert_int_equal(fc.calls, 1);
}

static void cut_across_slice_boundaries_moves_the_prefix(void **state)
{
    (void)state;
    char pattern[30];
    fill_pattern(pattern, sizeof pattern, 8);
    static const size_t lens[] = {10, 10, 10};
    static const size_t cuts[] = {0, 1, 9, 10, 11, 20, 25, 29, 30, 31};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        ft_iobuf src, dst;
        ft_iobuf_init(&src);
        ft_iobuf_init(&dst);
        build_slices(&src, pattern, lens, 3);
        assert_int_equal(ft_iobuf_append(&dst, "head", 4), 0);
        size_t n = cuts[i] > 30 ? 30 : cuts[i]; /* past the end: everything */
        assert_int_equal(ft_iobuf_cut(&src, &dst, cuts[i]), 0);
        char want[34];
        memcpy(want, "head", 4);
        memcpy(want + 4, pattern, n);
        expect_contents(&dst, want, 4 + n);
        expect_contents(&src, pattern + n, 30 - n);
        ft_iobuf_fini(&src);
        ft_iobuf_fini(&dst);
    }
}

static void pop_front_drops_the_prefix_across_slices(void **state)
{
    (void)state;
    char pattern[30];
    fill_pattern(pattern, sizeof pattern, 9);
    static const size_t lens[] = {10, 10, 10};
    static const size_t pops[] = {0, 1, 10, 15, 29, 30};
    for (size_t i = 0; i < sizeof pops / sizeof pops[0]; i++) {
        ft_iobuf b;
        ft_iobuf_init(&b);
        build_slices(&b, pattern, lens, 3);
        ft_iobuf_pop_front(&b, pops[i]);
        expect_contents(&b, pattern + pops[i], 30 - pops[i]);
        ft_iobuf_fini(&b);
    }
}

static void move_hands_over_everything_and_empties_the_source(void **state)
{
    (void)state;
    /* inline slice array, then a heap one (more slices than fit inline) */
    static const int nslices[] = {2, FT_IOBUF_INLINE_SLICES * 3};
    char pattern[200];
    fill_pattern(pattern, sizeof pattern, 10);
    size_t lens[FT_IOBUF_INLINE_SLICES * 3];
    for (int i = 0; i < FT_IOBUF_INLINE_SLICES * 3; i++)
        lens[i] = 5;
    free_count fc = {0, NULL};
    for (int k = 0; k < 2; k++) {
        ft_iobuf src, dst;
        ft_iobuf_init(&src);
        ft_iobuf_init(&dst);
        assert_int_equal(ft_iobuf_append_user(&dst, "old", 3, count_free, &fc), 0);
        build_slices(&src, pattern, lens, nslices[k]);
        ft_iobuf_move(&dst, &src);
        assert_int_equal(fc.calls, k + 1); /* dst's old content released */
        expect_contents(&dst, pattern, (size_t)nslices[k] * 5);
        assert_int_equal(ft_iobuf_size(&src), 0);
        assert_int_equal(ft_iobuf_slice_count(&src), 0);
        assert_int_equal(ft_iobuf_append(&src, "new", 3), 0); /* the source stays usable */
        expect_contents(&src, "new", 3);
        ft_iobuf_fini(&src);
        expect_contents(&dst, pattern, (size_t)nslices[k] * 5);
        ft_iobuf_fini(&dst);
    }
}

static void copy_at_copies_from_any_offset_and_stops_at_the_end(void **state)
{
    (void)state;
    char pattern[30];
    fill_pattern(pattern, sizeof pattern, 11);
    static const size_t lens[] = {7, 13, 10};
    /* offsets in the back half are found from the last slice backwards */
    static const range_case cases[] = {{0, 30},  {3, 5},  {6, 2},    {7, 13}, {14, 9}, {16, 10},
                                       {19, 11}, {20, 3}, {25, 100}, {29, 1}, {30, 5}, {40, 5}};
    ft_iobuf b;
    ft_iobuf_init(&b);
    build_slices(&b, pattern, lens, 3);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[128];
        size_t avail = cases[i].off >= 30 ? 0 : 30 - cases[i].off;
        size_t want = cases[i].len < avail ? cases[i].len : avail;
        assert_int_equal(ft_iobuf_copy_at(&b, cases[i].off, out, cases[i].len), want);
        if (want) assert_memory_equal(out, pattern + cases[i].off, want);
    }
    ft_iobuf_fini(&b);
}

static void fetch_points_into_the_first_slice_or_gathers(void **state)
{
    (void)state;
    char pattern[30];
    fill_pattern(pattern, sizeof pattern, 12);
    static const size_t lens[] = {10, 20};
    ft_iobuf b;
    ft_iobuf_init(&b);
    build_slices(&b, pattern, lens, 2);
    char tmp[30];
    assert_ptr_equal(ft_iobuf_fetch(&b, tmp, 10), pattern); /* contiguous: no copy */
    const void *p = ft_iobuf_fetch(&b, tmp, 25);
    assert_ptr_equal(p, tmp);
    assert_memory_equal(p, pattern, 25);
    ft_iobuf_fini(&b);
}

static void flatten_keeps_one_segment_and_gathers_many(void **state)
{
    (void)state;
    ft_iobuf b;
    ft_iobuf_init(&b);
    assert_null(ft_iobuf_flatten(&b));
    char pattern[3 * FT_IOBUF_BLOCK_SIZE];
    fill_pattern(pattern, sizeof pattern, 13);
    assert_int_equal(ft_iobuf_append_user(&b, pattern, 100, NULL, NULL), 0);
    assert_ptr_equal(ft_iobuf_flatten(&b), pattern);
    assert_int_equal(ft_iobuf_append_user(&b, pattern + 100, sizeof pattern - 100, NULL, NULL), 0);
    const char *flat = ft_iobuf_flatten(&b);
    assert_non_null(flat);
    assert_ptr_not_equal(flat, pattern);
    assert_memory_equal(flat, pattern, sizeof pattern);
    assert_int_equal(ft_iobuf_slice_count(&b), 1);
    expect_contents(&b, pattern, sizeof pattern);
    assert_ptr_equal(ft_iobuf_flatten(&b), flat); /* already flat */
    ft_iobuf_fini(&b);
}

static void to_iovec_lists_slices_up_to_max(void **state)
{
    (void)state;
    char pattern[40];
    fill_pattern(pattern, sizeof pattern, 14);
    static const size_t lens[] = {10, 5, 20, 5};
    ft_iobuf b;
    ft_iobuf_init(&b);
    build_slices(&b, pattern, lens, 4);
    struct iovec iov[8];
    assert_int_equal(ft_iobuf_to_iovec(&b, iov, 8), 4);
    size_t off = 0;
    for (int i = 0; i < 4; i++) {
        assert_ptr_equal(iov[i].iov_base, pattern + off);
        assert_int_equal(iov[i].iov_len, lens[i]);
        off += lens[i];
    }
    assert_int_equal(ft_iobuf_to_iovec(&b, iov, 2), 2);
    assert_int_equal(ft_iobuf_to_iovec(&b, iov, 0), 0);
    ft_iobuf_fini(&b);
}

static void commits_extend_the_tail_slice(void **state)
{
    (void)state;
    ft_iobuf rd;
    ft_iobuf_init(&rd);
    char *p;
    size_t len;
    char want[300];
    fill_pattern(want, sizeof want, 15);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ft_iobuf_reserve(&rd, 100, &p, &len), 0);
        assert_true(len >= 100);
        memcpy(p, want + i * 100, 100);
        ft_iobuf_commit(&rd, 100);
    }
    assert_int_equal(ft_iobuf_slice_count(&rd), 1); /* consecutive commits merge */
    expect_contents(&rd, want, 300);
    ft_iobuf_commit(&rd, 0);
    expect_contents(&rd, want, 300);
    ft_iobuf_fini(&rd);
}

static void reserve_takes_a_new_block_when_the_write_block_lacks_room(void **state)
{
    (void)state;
    ft_iobuf rd;
    ft_iobuf_init(&rd);
    char *p, *p2;
    size_t len, len2;
    assert_int_equal(ft_iobuf_reserve(&rd, 1, &p, &len), 0);
    memset(p, 'a', len - 10);
    ft_iobuf_commit(&rd, len - 10);
    assert_int_equal(ft_iobuf_reserve(&rd, 100, &p2, &len2), 0);
    assert_true(len2 >= 100);
    assert_true(p2 < p || p2 >= p + len); /* a different block */
    memset(p2, 'b', 100);
    ft_iobuf_commit(&rd, 100);
    assert_int_equal(ft_iobuf_size(&rd), len - 10 + 100);
    /* a reservation larger than a standard block gets one big enough */
    assert_int_equal(ft_iobuf_reserve(&rd, 3 * FT_IOBUF_BLOCK_SIZE, &p, &len), 0);
    assert_true(len >= 3 * FT_IOBUF_BLOCK_SIZE);
    ft_iobuf_fini(&rd);
}

/* The core invariant: frames cut out of the write block stay intact while the reader keeps
 * filling the same block, and appending to such a frame never writes into that block. */
static void frames_cut_from_the_write_block_survive_further_reads(void **state)
{
    (void)state;
    ft_iobuf rd;
    ft_iobuf_init(&rd);
    enum { NFRAMES = 40, FRAME = 300 };
    ft_iobuf frames[NFRAMES];
    char want[NFRAMES][FRAME];
    for (int i = 0; i < NFRAMES; i++) {
        char *p;
        size_t len;
        fill_pattern(want[i], FRAME, (unsigned)(100 + i));
        assert_int_equal(ft_iobuf_reserve(&rd, 64, &p, &len), 0);
        size_t first = len < FRAME ? len : FRAME;
        memcpy(p, want[i], first);
        ft_iobuf_commit(&rd, first);
        if (first < FRAME) {
            assert_int_equal(ft_iobuf_reserve(&rd, FRAME - first, &p, &len), 0);
            memcpy(p, want[i] + first, FRAME - first);
            ft_iobuf_commit(&rd, FRAME - first);
        }
        ft_iobuf_init(&frames[i]);
        assert_int_equal(ft_iobuf_cut(&rd, &frames[i], FRAME), 0);
        assert_int_equal(ft_iobuf_size(&rd), 0);
        /* a handler appends to its frame: must not land in the reader's block */
        assert_int_equal(ft_iobuf_append(&frames[i], "TAIL", 4), 0);
    }
    for (int i = 0; i < NFRAMES; i++) {
        char got[FRAME + 4];
        assert_int_equal(ft_iobuf_copy_at(&frames[i], 0, got, sizeof got), FRAME + 4);
        assert_memory_equal(got, want[i], FRAME);
        assert_memory_equal(got + FRAME, "TAIL", 4);
        check_invariants(&frames[i]);
        ft_iobuf_fini(&frames[i]);
    }
    ft_iobuf_fini(&rd);
}

static void appending_never_writes_into_a_shared_block(void **state)
{
    (void)state;
    ft_iobuf a, b;
    ft_iobuf_init(&a);
    ft_iobuf_init(&b);
    assert_int_equal(ft_iobuf_append(&a, "hello", 5), 0);
    assert_int_equal(ft_iobuf_append_buf(&b, &a), 0);
    ft_block *shared = a.slices[a.start].block;
    uint32_t used = shared->used;
    assert_int_equal(ft_iobuf_append(&b, " world", 6), 0);
    assert_int_equal(ft_iobuf_append(&a, " there", 6), 0);
    assert_int_equal(shared->used, used);
    expect_contents(&a, "hello there", 11);
    expect_contents(&b, "hello world", 11);
    ft_iobuf_fini(&a);
    /* now b is the block's only holder and its tail ends at `used`: appending in place is fine */
    ft_iobuf_fini(&b);
}

/* Small slices are copied into one contiguous run, large ones move by reference, and a block
 * someone else still holds is never written into. */
static void coalesced_cut_copies_small_slices_and_moves_large_ones(void **state)
{
    (void)state;
    static char big[1000];
    fill_pattern(big, sizeof big, 7);
    ft_iobuf out, f1, f2, shared;
    ft_iobuf_init(&out);
    ft_iobuf_init(&f1);
    ft_iobuf_init(&f2);
    ft_iobuf_init(&shared);
    assert_int_equal(ft_iobuf_append(&shared, "payload", 7), 0);
    assert_int_equal(ft_iobuf_append(&f1, "head1", 5), 0);
    assert_int_equal(ft_iobuf_append_buf(&f1, &shared), 0); /* a slice of a shared block */
    assert_int_equal(ft_iobuf_append(&f2, "head2", 5), 0);
    assert_int_equal(ft_iobuf_append_user(&f2, big, sizeof big, NULL, NULL), 0);
    ft_block *shared_block = shared.slices[shared.start].block;
    uint32_t shared_used = shared_block->used;

    assert_int_equal(ft_iobuf_cut_all_coalesced(&f1, &out, 512), 0);
    assert_int_equal(ft_iobuf_size(&f1), 0);
    assert_int_equal(ft_iobuf_slice_count(&out), 1); /* "head1payload", one run */
    assert_int_equal(ft_iobuf_cut_all_coalesced(&f2, &out, 512), 0);
    assert_int_equal(ft_iobuf_size(&f2), 0);
    assert_int_equal(ft_iobuf_slice_count(&out), 2); /* the run grew; the big slice moved */
    assert_ptr_equal(out.slices[out.start + 1].block->data, big);
    assert_int_equal(shared_block->used, shared_used);

    char want[17 + sizeof big];
    memcpy(want, "head1payloadhead2", 17);
    memcpy(want + 17, big, sizeof big);
    expect_contents(&out, want, sizeof want);
    expect_contents(&shared, "payload", 7);
    ft_iobuf_fini(&out);
    ft_iobuf_fini(&f1);
    ft_iobuf_fini(&f2);
    ft_iobuf_fini(&shared);
}

static void public_buf_api_wraps_the_iobuf(void **state)
{
    (void)state;
    ftrpc_buf_free(NULL);
    ftrpc_buf *a = ftrpc_buf_new();
    ftrpc_buf *b = ftrpc_buf_new();
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(ftrpc_buf_size(a), 0);
    assert_int_equal(ftrpc_buf_segment_count(a), 0);
    assert_null(ftrpc_buf_flatten(a));
    assert_int_equal(ftrpc_buf_append(a, "abc", 3), 0);
    free_count fc = {0, NULL};
    static const char user[] = "defgh";
    assert_int_equal(ftrpc_buf_append_user(a, user, 5, count_free, &fc), 0);
    assert_int_equal(ftrpc_buf_size(a), 8);
    assert_int_equal(ftrpc_buf_segment_count(a), 2);
    size_t len;
    const char *seg = ftrpc_buf_segment(a, 1, &len);
    assert_ptr_equal(seg, user);
    assert_int_equal(len, 5);
    assert_null(ftrpc_buf_segment(a, 2, &len));
    assert_int_equal(len, 0);
    assert_int_equal(ftrpc_buf_append_buf(b, a), 0);
    char out[16];
    assert_int_equal(ftrpc_buf_copy_to(b, out, sizeof out), 8);
    assert_memory_equal(out, "abcdefgh", 8);
    assert_int_equal(ftrpc_buf_copy_to(b, out, 2), 2);
    ftrpc_buf_clear(a);
    assert_int_equal(ftrpc_buf_size(a), 0);
    assert_int_equal(fc.calls, 0); /* b still holds the user block */
    const char *flat = ftrpc_buf_flatten(b);
    assert_memory_equal(flat, "abcdefgh", 8);
    assert_int_equal(fc.calls, 1); /* flattening copied it out and let go */
    ftrpc_buf_free(a);
    ftrpc_buf_free(b);
}

static void *release_blocks(void *arg)
{
    ft_iobuf *b = arg;
    ft_iobuf_fini(b);
    /* and this thread makes and drops blocks of its own */
    for (int i = 0; i < 100; i++) {
        ft_block *blk = ft_block_new(0);
        ft_block_release(blk);
    }
    return NULL;
}

static void blocks_freed_on_another_thread_are_fine(void **state)
{
    (void)state;
    for (int round = 0; round < 4; round++) {
        ft_iobuf a, b;
        ft_iobuf_init(&a);
        ft_iobuf_init(&b);
        char chunk[1000];
        fill_pattern(chunk, sizeof chunk, 16);
        for (int i = 0; i < 200; i++)
            assert_int_equal(ft_iobuf_append(&a, chunk, sizeof chunk), 0);
        assert_int_equal(ft_iobuf_append_buf(&b, &a), 0);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, release_blocks, &b), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
        for (int i = 0; i < 200; i++) {
            char got[1000];
            assert_int_equal(ft_iobuf_copy_at(&a, (size_t)i * 1000, got, 1000), 1000);
            assert_memory_equal(got, chunk, 1000);
        }
        ft_iobuf_fini(&a);
        /* the blocks now sit in caches of threads that exited or in this one's: reuse them */
        assert_int_equal(ft_iobuf_append(&a, chunk, sizeof chunk), 0);
        ft_iobuf_fini(&a);
    }
}

/* ---- property test ---- */

typedef struct model {
    char *data;
    size_t len, cap;
} model;

/* p may point into m itself (a buffer appended to itself) */
static void model_append(model *m, const void *p, size_t n)
{
    char *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    if (n) memcpy(copy, p, n);
    if (m->len + n > m->cap) {
        m->cap = (m->len + n) * 2 + 16;
        m->data = realloc(m->data, m->cap);
        assert_non_null(m->data);
    }
    if (n) memcpy(m->data + m->len, copy, n);
    m->len += n;
    free(copy);
}

static void model_pop(model *m, size_t n)
{
    if (n == 0) return;
    memmove(m->data, m->data + n, m->len - n);
    m->len -= n;
}

static void free_user(void *data, void *arg)
{
    (void)arg;
    free(data);
}

static size_t random_len(void)
{
    switch (rng_below(4)) {
    case 0:
        return rng_below(16);
    case 1:
        return rng_below(600);
    case 2:
        return rng_below(3 * FT_IOBUF_BLOCK_SIZE);
    default:
        return FT_IOBUF_BLOCK_SIZE - sizeof(ft_block) - 8 + rng_below(16);
    }
}

static void random_operations_match_a_byte_array_model(void **state)
{
    (void)state;
    rng_state = 0x9E3779B97F4A7C15u;
    enum { NBUF = 3, STEPS = 4000 };
    ft_iobuf bufs[NBUF];
    model models[NBUF];
    memset(models, 0, sizeof models);
    for (int i = 0; i < NBUF; i++)
        ft_iobuf_init(&bufs[i]);
    char *scratch = malloc(4 * FT_IOBUF_BLOCK_SIZE);
    for (int step = 0; step < STEPS; step++) {
        int x = (int)rng_below(NBUF), y = (int)rng_below(NBUF);
        ft_iobuf *a = &bufs[x], *b = &bufs[y];
        model *ma = &models[x], *mb = &models[y];
        size_t n = random_len();
        fill_pattern(scratch, n, (unsigned)step);
        switch (rng_below(12)) {
        case 0:
        case 1:
            assert_int_equal(ft_iobuf_append(a, scratch, n), 0);
            model_append(ma, scratch, n);
            break;
        case 2: {
            char *user = malloc(n ? n : 1);
            memcpy(user, scratch, n);
            assert_int_equal(ft_iobuf_append_user(a, user, n, free_user, NULL), 0);
            model_append(ma, scratch, n);
            break;
        }
        case 3: {
            /* sizes are bounded so that repeated sharing does not explode */
            if (ma->len + mb->len > 200000) break;
            size_t old = ma->len;
            assert_int_equal(ft_iobuf_append_buf(b, a), 0);
            model_append(mb, ma->data, old);
            break;
        }
        case 4: {
            if (mb->len > 200000) break;
            size_t off = rng_below(ma->len + 1);
            size_t len = rng_below(ma->len - off + 1);
            assert_int_equal(ft_iobuf_append_range(b, a, off, len), 0);
            model_append(mb, ma->data + off, len);
            break;
        }
        case 5: {
            if (x == y) break;
            size_t k = rng_below(ma->len + 1);
            assert_int_equal(ft_iobuf_cut(a, b, k), 0);
            model_append(mb, ma->data, k);
            model_pop(ma, k);
            break;
        }
        case 6: {
            size_t k = rng_below(ma->len + 1);
            ft_iobuf_pop_front(a, k);
            model_pop(ma, k);
            break;
        }
        case 7: {
            if (x == y) break;
            ft_iobuf_move(b, a);
            mb->len = 0;
            model_append(mb, ma->data, ma->len);
            ma->len = 0;
            break;
        }
        case 8: {
            const char *flat = ft_iobuf_flatten(a);
            if (ma->len == 0)
                assert_null(flat);
            else
                assert_memory_equal(flat, ma->data, ma->len);
            break;
        }
        case 9: {
            /* the read path: reserve, fill part of it, commit */
            char *p;
            size_t len;
            size_t min = rng_below(4) == 0 ? rng_below(2 * FT_IOBUF_BLOCK_SIZE) + 1 : 1;
            assert_int_equal(ft_iobuf_reserve(a, min, &p, &len), 0);
            assert_true(len >= min);
            size_t k = rng_below(len + 1);
            if (k > 4 * FT_IOBUF_BLOCK_SIZE) k = 4 * FT_IOBUF_BLOCK_SIZE;
            fill_pattern(scratch, k, (unsigned)step);
            memcpy(p, scratch, k);
            ft_iobuf_commit(a, k);
            model_append(ma, scratch, k);
            break;
        }
        case 10: {
            size_t k = rng_below(ma->len + 1);
            if (k > 4 * FT_IOBUF_BLOCK_SIZE) k = 4 * FT_IOBUF_BLOCK_SIZE;
            const void *p = ft_iobuf_fetch(a, scratch, k);
            if (k) assert_memory_equal(p, ma->data, k);
            break;
        }
        default:
            if (rng_below(8) == 0) {
                ft_iobuf_clear(a);
                ma->len = 0;
            }
            break;
        }
        for (int i = 0; i < NBUF; i++) {
            if (step % 16 == 0 || i == x || i == y)
                expect_contents(&bufs[i], models[i].data, models[i].len);
        }
    }
    for (int i = 0; i < NBUF; i++) {
        ft_iobuf_fini(&bufs[i]);
        free(models[i].data);
    }
    free(scratch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(append_small_and_large_keeps_bytes_in_order),
        cmocka_unit_test(small_appends_fill_one_block_before_taking_another),
        cmocka_unit_test(large_append_goes_into_one_block),
        cmocka_unit_test(append_buf_shares_blocks_without_copying),
        cmocka_unit_test(append_buf_to_itself_doubles_the_content),
        cmocka_unit_test(append_range_shares_exactly_the_window),
        cmocka_unit_test(append_user_frees_once_when_the_last_reference_goes),
        cmocka_unit_test(append_user_without_free_fn_leaves_memory_to_the_caller),
        cmocka_unit_test(append_user_of_zero_bytes_frees_at_once),
        cmocka_unit_test(cut_across_slice_boundaries_moves_the_prefix),
        cmocka_unit_test(pop_front_drops_the_prefix_across_slices),
        cmocka_unit_test(move_hands_over_everything_and_empties_the_source),
        cmocka_unit_test(copy_at_copies_from_any_offset_and_stops_at_the_end),
        cmocka_unit_test(fetch_points_into_the_first_slice_or_gathers),
        cmocka_unit_test(flatten_keeps_one_segment_and_gathers_many),
        cmocka_unit_test(to_iovec_lists_slices_up_to_max),
        cmocka_unit_test(commits_extend_the_tail_slice),
        cmocka_unit_test(reserve_takes_a_new_block_when_the_write_block_lacks_room),
        cmocka_unit_test(frames_cut_from_the_write_block_survive_further_reads),
        cmocka_unit_test(appending_never_writes_into_a_shared_block),
        cmocka_unit_test(coalesced_cut_copies_small_slices_and_moves_large_ones),
        cmocka_unit_test(public_buf_api_wraps_the_iobuf),
        cmocka_unit_test(blocks_freed_on_another_thread_are_fine),
        cmocka_unit_test(random_operations_match_a_byte_array_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
