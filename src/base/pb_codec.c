/* Messages to and from buffers (pb_codec.h).
 *
 * Packing writes straight into a buffer block (one get_packed_size pass, one pack pass, no copy);
 * unpacking reads the payload in place when it is one slice, which is how a frame cut from a read
 * buffer usually arrives.
 */
#include "base/pb_codec.h"

#include <stdint.h>

#include "base/pb_flat.h"
#include "ftrpc/common.h"

/* A flat message straight into the buffer's write block, with no sizing pass: 0, or 1 when it
 * may not fit there (nothing committed then). */
static int pack_flat_at_once(const ProtobufCMessage *msg, ft_iobuf *out)
{
    char *p;
    size_t room;
    if (ft_iobuf_reserve(out, 256, &p, &room) != 0) return 1;
    if (room > UINT32_MAX) room = UINT32_MAX;
    size_t n = ft_pb_flat_pack_into(msg, (uint8_t *)p, room);
    if (n == SIZE_MAX) return 1;
    ft_iobuf_commit(out, n);
    return 0;
}

int ft_pb_pack(const ProtobufCMessage *msg, int flat, ft_iobuf *out)
{
    if (flat && ft_iobuf_size(out) == 0 && pack_flat_at_once(msg, out) == 0) return 0;
    size_t n = flat ? ft_pb_flat_packed_size(msg) : protobuf_c_message_get_packed_size(msg);
    if (n == 0) return 0;
    if (n > UINT32_MAX) return FTRPC_ENOMEM;
    size_t before = ft_iobuf_size(out);
    char *p;
    size_t room;
    if (ft_iobuf_reserve(out, n, &p, &room) != 0) return FTRPC_ENOMEM;
    size_t packed =
        flat ? ft_pb_flat_pack(msg, (uint8_t *)p) : protobuf_c_message_pack(msg, (uint8_t *)p);
    ft_iobuf_commit(out, packed);
    return packed == n && ft_iobuf_size(out) == before + n ? 0 : FTRPC_ENOMEM;
}

int ft_pb_pack_block(const ProtobufCMessage *msg, int flat, ft_block **out, uint32_t *len)
{
    ft_block *blk = NULL;
    size_t n = SIZE_MAX;
    if (flat) {
        /* most requests fit a standard block: written in one pass, no sizing */
        if (!(blk = ft_block_new(0))) return FTRPC_ENOMEM;
        n = ft_pb_flat_pack_into(msg, (uint8_t *)blk->data, blk->cap);
    }
    if (n == SIZE_MAX) {
        size_t size = flat ? ft_pb_flat_packed_size(msg) : protobuf_c_message_get_packed_size(msg);
        if (size > UINT32_MAX || (blk && size > blk->cap)) {
            if (blk) ft_block_release(blk);
            blk = NULL;
            if (size > UINT32_MAX) return FTRPC_ENOMEM;
        }
        if (!blk && !(blk = ft_block_new(size))) return FTRPC_ENOMEM;
        n = flat ? ft_pb_flat_pack(msg, (uint8_t *)blk->data)
                 : protobuf_c_message_pack(msg, (uint8_t *)blk->data);
        if (n != size) {
            ft_block_release(blk);
            return FTRPC_ENOMEM;
        }
    }
    if (n == 0) {
        ft_block_release(blk);
        blk = NULL;
    } else {
        blk->used = (uint32_t)n;
    }
    *out = blk;
    *len = (uint32_t)n;
    return 0;
}

ProtobufCMessage *ft_pb_unpack(const ProtobufCMessageDescriptor *desc, ft_iobuf *in,
                               ProtobufCAllocator *alloc)
{
    static const uint8_t EMPTY[1];
    size_t n = ft_iobuf_size(in);
    const uint8_t *data = n ? ft_iobuf_flatten(in) : EMPTY;
    if (!data) return NULL;
    return protobuf_c_message_unpack(desc, alloc, n, data);
}
