/* Messages to and from buffers: the two steps the typed server and the typed client share. */
#ifndef FT_BASE_PB_CODEC_H
#define FT_BASE_PB_CODEC_H

#include <protobuf-c/protobuf-c.h>

#include "base/arena.h"
#include "base/iobuf.h"

/* Appends msg, packed, to out (by ft_pb_flat_pack when flat: msg's type is flat, ft_pb_is_flat).
 * 0 or FTRPC_ENOMEM. */
int ft_pb_pack(const ProtobufCMessage *msg, int flat, ft_iobuf *out);
/* msg packed into a block of its own, for a call to take (ft_call_async_owned): *out holds the
 * caller's reference to it and *len its size, or is NULL (and *len 0) for a message that packs to
 * no bytes. Flat messages (flat as for ft_pb_pack) are written at once into a standard block, and
 * sized first only when they may not fit. 0 or FTRPC_ENOMEM (nothing to release then). */
int ft_pb_pack_block(const ProtobufCMessage *msg, int flat, ft_block **out, uint32_t *len);
/* Unpacks in (made contiguous first, when it is not) as a desc message, allocated from alloc
 * (NULL: protobuf-c's default allocator). NULL when the bytes do not parse as one. */
ProtobufCMessage *ft_pb_unpack(const ProtobufCMessageDescriptor *desc, ft_iobuf *in,
                               ProtobufCAllocator *alloc);

#endif
