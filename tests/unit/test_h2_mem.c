/* nghttp2's per-connection allocator (src/protocol/h2_mem.c): a freed block of a size class is
 * handed out again for the next allocation of that class (no malloc), realloc keeps the contents
 * across classes and into and out of the large blocks, calloc zeroes a reused block, and the free
 * lists never hold more than FT_H2_MEM_CACHE_BYTES. Under ASan nothing is cached (so that a use
 * after free inside nghttp2 is still reported): the reuse checks are skipped there. Then a real
 * nghttp2 session runs on it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "protocol/h2_mem.h"

#if defined(__SANITIZE_ADDRESS__)
#define CACHED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CACHED 0
#endif
#endif
#ifndef CACHED
#define CACHED 1
#endif

static void freed_blocks_are_reused_by_their_class(void **state)
{
    (void)state;
    ft_h2_mem m;
    ft_h2_mem_init(&m);
    nghttp2_mem *a = &m.mem;
    void *p = a->malloc(100, a->mem_user_data); /* class 128 */
    assert_non_null(p);
    memset(p, 0xab, 100);
    a->free(p, a->mem_user_data);
    if (CACHED) assert_int_equal(m.cached, 128);
    void *q = a->malloc(120, a->mem_user_data); /* same class: the same block */
    if (CACHED) assert_ptr_equal(q, p);
    assert_int_equal(m.cached, 0);
    a->free(q, a->mem_user_data);
    uint8_t *z = a->calloc(10, 12, a->mem_user_data); /* reused, and zeroed */
    for (int i = 0; i < 120; i++)
        assert_int_equal(z[i], 0);
    a->free(z, a->mem_user_data);
    a->free(NULL, a->mem_user_data);
    ft_h2_mem_fini(&m);
    assert_int_equal(m.cached, 0);
}

static void realloc_keeps_the_contents_across_classes(void **state)
{
    (void)state;
    ft_h2_mem m;
    ft_h2_mem_init(&m);
    nghttp2_mem *a = &m.mem;
    /* 10 -> 60 (same class) -> 3000 -> 70000 (large) -> 200 (back into a class) */
    static const size_t SIZES[] = {60, 3000, 70000, 200};
    uint8_t *p = a->realloc(NULL, 10, a->mem_user_data);
    assert_non_null(p);
    for (int i = 0; i < 10; i++)
        p[i] = (uint8_t)i;
    size_t have = 10;
    for (size_t k = 0; k < sizeof SIZES / sizeof SIZES[0]; k++) {
        uint8_t *q = a->realloc(p, SIZES[k], a->mem_user_data);
        assert_non_null(q);
        if (k == 0 && CACHED) assert_ptr_equal(q, p); /* 60 still fits the 64-byte block */
        size_t keep = have < SIZES[k] ? have : SIZES[k];
        for (size_t i = 0; i < keep; i++)
            assert_int_equal(q[i], (uint8_t)i);
        for (size_t i = keep; i < SIZES[k]; i++)
            q[i] = (uint8_t)i;
        p = q;
        have = SIZES[k];
    }
    assert_null(a->realloc(p, 0, a->mem_user_data)); /* realloc to 0 frees */
    assert_null(a->malloc(SIZE_MAX - 4, a->mem_user_data));
    assert_null(a->calloc(SIZE_MAX / 2, 4, a->mem_user_data));
    ft_h2_mem_fini(&m);
}

static void the_free_lists_are_bounded(void **state)
{
    (void)state;
    ft_h2_mem m;
    ft_h2_mem_init(&m);
    nghttp2_mem *a = &m.mem;
    enum { N = 200 }; /* 200 blocks of 4096 bytes: 800 KiB, past the bound */
    void *p[N];
    for (int i = 0; i < N; i++)
        assert_non_null(p[i] = a->malloc(4000, a->mem_user_data));
    for (int i = 0; i < N; i++)
        a->free(p[i], a->mem_user_data);
    assert_true(m.cached <= FT_H2_MEM_CACHE_BYTES);
    if (CACHED) assert_int_equal(m.cached, FT_H2_MEM_CACHE_BYTES);
    void *big = a->malloc(FT_H2_MEM_MAX + 1, a->mem_user_data); /* large: never cached */
    a->free(big, a->mem_user_data);
    assert_true(m.cached <= FT_H2_MEM_CACHE_BYTES);
    ft_h2_mem_fini(&m);
}

/* a client session's preface, SETTINGS and a request encoded with its memory from the lists */
static void an_nghttp2_session_runs_on_it(void **state)
{
    (void)state;
    ft_h2_mem m;
    ft_h2_mem_init(&m);
    nghttp2_session_callbacks *cb;
    assert_int_equal(nghttp2_session_callbacks_new(&cb), 0);
    nghttp2_session *s;
    assert_int_equal(nghttp2_session_client_new3(&s, cb, NULL, NULL, &m.mem), 0);
    nghttp2_session_callbacks_del(cb);
    for (int i = 0; i < 100; i++) {
        nghttp2_nv h[] = {{(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},
                          {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
                          {(uint8_t *)":path", (uint8_t *)"/a.B/C", 5, 6, 0},
                          {(uint8_t *)":authority", (uint8_t *)"x", 10, 1, 0}};
        assert_true(nghttp2_submit_request(s, NULL, h, 4, NULL, NULL) > 0);
        const uint8_t *data;
        size_t total = 0;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(s, &data)) > 0)
            total += (size_t)n;
        assert_int_equal(n, 0);
        assert_true(total > 0);
    }
    nghttp2_session_del(s);
    ft_h2_mem_fini(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(freed_blocks_are_reused_by_their_class),
        cmocka_unit_test(realloc_keeps_the_contents_across_classes),
        cmocka_unit_test(the_free_lists_are_bounded),
        cmocka_unit_test(an_nghttp2_session_runs_on_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
