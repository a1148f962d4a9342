/* A reader and writer for flat messages: the typed calls' fast path past protobuf-c's general
 * unpacker and packer.
 *
 * A flat message type has singular fields only (proto3 fields, or proto2/proto3 `optional`), none
 * in a oneof, each a number, a bool, an enum, a string or bytes: no nested, repeated or required
 * field. Such a message is read in one pass into an arena, to the same struct protobuf-c's
 * unpack makes; bytes the reader does not take on (an unknown field, a wire type that is not its
 * field's, a truncated or over-long value) are left to protobuf-c, which then decides: the reader
 * never refuses what protobuf-c accepts, nor accepts what it refuses. A flat message going out is
 * written as protobuf-c writes it, byte for byte, without its general per-label walk.
 */
#ifndef FT_BASE_PB_FLAT_H
#define FT_BASE_PB_FLAT_H

#include <protobuf-c/protobuf-c.h>

#include "base/arena.h"
#include "base/iobuf.h"

/* 1 when desc is a flat message type (above). Decided once, when a method is registered. */
int ft_pb_is_flat(const ProtobufCMessageDescriptor *desc);

/* Reads in (made contiguous first when it is not) as a message of the flat type desc, allocated
 * from arena. NULL when the bytes are not for this reader, or on allocation failure: unpack them
 * with protobuf-c then (what was allocated stays in the arena until it is freed). */
ProtobufCMessage *ft_pb_unpack_flat(const ProtobufCMessageDescriptor *desc, ft_arena *arena,
                                    ft_iobuf *in);

/* protobuf_c_message_get_packed_size and protobuf_c_message_pack for a message of a flat type
 * (the same bytes). */
size_t ft_pb_flat_packed_size(const ProtobufCMessage *msg);
size_t ft_pb_flat_pack(const ProtobufCMessage *msg, uint8_t *out);
/* ft_pb_flat_pack in one pass, without sizing first, into room bytes at out: the size written, or
 * SIZE_MAX when the message may not fit (out's content is then undefined: size it and pack). */
size_t ft_pb_flat_pack_into(const ProtobufCMessage *msg, uint8_t *out, size_t room);

#endif
