/* Messages packed for a call (src/base/pb_codec.c): ft_pb_pack_block, the typed client's request,
 * holds protobuf-c's bytes in a block of its own, whether the message is flat (written at once,
 * or sized first when it outgrows a standard block) or not (protobuf-c's pack), and an empty one
 * holds no block; ft_iobuf_init_block makes such a block a buffer. Types: pb_flat_test.proto. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "base/iobuf.h"
#include "base/pb_codec.h"
#include "base/pb_flat.h"
#include "pb_flat_test.pb-c.h"

/* Packs m into a block (flat as given) and checks the block's bytes against protobuf-c's pack,
 * through the buffer the block becomes. */
static void assert_block_holds_protobuf_c_bytes(const ProtobufCMessage *m, int flat)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *want = malloc(n ? n : 1);
    assert_non_null(want);
    assert_int_equal(protobuf_c_message_pack(m, want), n);
    ft_block *blk = (ft_block *)1;
    uint32_t len = 1;
    assert_int_equal(ft_pb_pack_block(m, flat, &blk, &len), 0);
    assert_int_equal(len, n);
    if (n == 0) {
        assert_null(blk); /* no slice may be empty: no block for no bytes */
    } else {
        assert_non_null(blk);
        assert_int_equal(blk->used, n);
        assert_true(blk->cap >= n);
        ft_iobuf b;
        ft_iobuf_init_block(&b, blk, len); /* takes the reference */
        assert_int_equal(ft_iobuf_size(&b), n);
        assert_int_equal(ft_iobuf_slice_count(&b), 1);
        assert_memory_equal(ft_iobuf_flatten(&b), want, n);
        ft_iobuf_fini(&b);
    }
    free(want);
}

static void packed_blocks_hold_protobuf_c_bytes(void **state)
{
    (void)state;
    Flattest__Flat3 m = FLATTEST__FLAT3__INIT;
    assert_block_holds_protobuf_c_bytes(&m.base, 1); /* nothing to send */
    assert_block_holds_protobuf_c_bytes(&m.base, 0);
    static uint8_t small[16] = "0123456789abcdef";
    m.data = (ProtobufCBinaryData){sizeof small, small};
    m.i32 = -1;
    m.text = "text";
    assert_block_holds_protobuf_c_bytes(&m.base, 1); /* at once, in a standard block */
    assert_block_holds_protobuf_c_bytes(&m.base, 0);
    /* larger than a standard block: sized first, then a block of its size */
    enum { BIG = 3 * FT_IOBUF_BLOCK_SIZE };
    uint8_t *big = malloc(BIG);
    assert_non_null(big);
    for (size_t i = 0; i < BIG; i++)
        big[i] = (uint8_t)(i * 7);
    m.data = (ProtobufCBinaryData){BIG, big};
    assert_block_holds_protobuf_c_bytes(&m.base, 1);
    assert_block_holds_protobuf_c_bytes(&m.base, 0);
    /* a message that is not flat: protobuf-c's pack */
    Flattest__Outer outer = FLATTEST__OUTER__INIT;
    outer.inner = &m;
    assert_int_equal(ft_pb_is_flat(outer.base.descriptor), 0);
    assert_block_holds_protobuf_c_bytes(&outer.base, 0);
    m.data = (ProtobufCBinaryData){sizeof small, small};
    assert_block_holds_protobuf_c_bytes(&outer.base, 0);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(packed_blocks_hold_protobuf_c_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
