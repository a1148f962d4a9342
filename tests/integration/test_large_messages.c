/* Large messages over real sockets without copies (docs/performance.md, "Large messages"): once a
 * frame's header says its body is large, the connection reads the rest into one block of that
 * size, so the handler gets the request in a few segments (not one 8 KiB block each), and the reply
 * the handler hands back is written from those same blocks and read by the client the same way.
 * The bytes round-trip exactly, at sizes around the block bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static atomic_size_t request_segments, request_size;

static void echo_counting(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    const ftrpc_buf *req = ftrpc_server_call_request(call);
    atomic_store(&request_segments, ftrpc_buf_segment_count(req));
    atomic_store(&request_size, ftrpc_buf_size(req));
    ftrpc_server_call_reply(call, req, NULL);
}

typedef struct pair {
    ftrpc_server *server;
    ftrpc_client *client;
} pair;

static void pair_start(pair *p)
{
    assert_int_equal(ftrpc_server_new(&(ftrpc_server_options){0}, &p->server), 0);
    assert_int_equal(
        ftrpc_server_add_method(p->server, "test.Svc", "Echo", echo_counting, NULL, NULL), 0);
    assert_int_equal(ftrpc_server_start(p->server, "127.0.0.1:0"), 0);
    char url[64];
    snprintf(url, sizeof url, "127.0.0.1:%d", ftrpc_server_port(p->server));
    assert_int_equal(
        ftrpc_client_new(url, &(ftrpc_client_options){.timeout_ms = 10000 * H_VG}, &p->client), 0);
}

static void pair_stop(pair *p)
{
    ftrpc_client_free(p->client);
    assert_int_equal(ftrpc_server_stop(p->server, 3000 * H_VG), 0);
    ftrpc_server_free(p->server);
}

static unsigned char *pattern(size_t n, unsigned seed)
{
    unsigned char *b = malloc(n);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)((i * 131u + seed) ^ (i >> 11));
    return b;
}

static int equal_to(const ftrpc_buf *buf, const unsigned char *want, size_t n)
{
    if (ftrpc_buf_size(buf) != n) return 0;
    size_t off = 0;
    for (size_t i = 0; i < ftrpc_buf_segment_count(buf); i++) {
        size_t len;
        const void *seg = ftrpc_buf_segment(buf, i, &len);
        if (memcmp(seg, want + off, len) != 0) return 0;
        off += len;
    }
    return off == n;
}

/* The request and the response of a large call each arrive in at most 3 segments: the block the
 * header was read into, the block sized for the rest, and at most one more when a read had already
 * run past the frame. With 8 KiB reads a 1 MiB body was 128 or more. */
static void large_bodies_arrive_in_a_few_blocks_both_ways(void **state)
{
    (void)state;
    pair p;
    pair_start(&p);
    static const size_t sizes[] = {40 << 10, 64 << 10, 1 << 20, (4 << 20) - 100};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        unsigned char *data = pattern(n, (unsigned)k);
        ftrpc_buf *req = ftrpc_buf_new();
        assert_int_equal(ftrpc_buf_append_user(req, data, n, NULL, NULL), 0);
        for (int round = 0; round < 3;
             round++) { /* later calls find the connection's blocks used */
            ftrpc_result r;
            assert_int_equal(ftrpc_call(p.client, "test.Svc", "Echo", req, NULL, NULL, &r), 0);
            assert_int_equal(r.code, 0);
            assert_int_equal(atomic_load(&request_size), n);
            assert_true(equal_to(r.response, data, n));
            if (atomic_load(&request_segments) > 3 || ftrpc_buf_segment_count(r.response) > 3)
                fail_msg("%zu bytes: request in %zu segments, response in %zu (want <= 3)", n,
                         atomic_load(&request_segments), ftrpc_buf_segment_count(r.response));
            ftrpc_result_fini(&r);
        }
        ftrpc_buf_free(req);
        free(data);
    }
    pair_stop(&p);
}

/* Past FT_CONN_READ_BLOCK_MAX (4 MiB) a body comes in blocks of that size: 9 MiB in a handful. */
static void bodies_past_the_largest_block_still_round_trip(void **state)
{
    (void)state;
    pair p;
    pair_start(&p);
    size_t n = (size_t)9 << 20;
    unsigned char *data = pattern(n, 99);
    ftrpc_buf *req = ftrpc_buf_new();
    assert_int_equal(ftrpc_buf_append_user(req, data, n, NULL, NULL), 0);
    ftrpc_result r;
    assert_int_equal(ftrpc_call(p.client, "test.Svc", "Echo", req, NULL, NULL, &r), 0);
    assert_int_equal(r.code, 0);
    assert_true(equal_to(r.response, data, n));
    if (atomic_load(&request_segments) > 5)
        fail_msg("9 MiB request in %zu segments (want <= 5)", atomic_load(&request_segments));
    ftrpc_result_fini(&r);
    ftrpc_buf_free(req);
    free(data);
    pair_stop(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(large_bodies_arrive_in_a_few_blocks_both_ways),
        cmocka_unit_test(bodies_past_the_largest_block_still_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
