/* A walk over protobuf wire bytes without a descriptor: the length-delimited fields of a message,
 * handed one by one to a callback. The JSON transcoder and the descriptor-set reader use it to
 * measure how deep messages nest before protobuf-c's unpack, which recurses once per level and has
 * no bound of its own, sees the bytes.
 *
 * Invariants: pure, never reads outside [p, end). Malformed bytes (a truncated varint or field, a
 * group, a reserved wire type) end the walk quietly with 0: the unpack that follows refuses them.
 */
#ifndef FT_PROTOCOL_PB_WIRE_H
#define FT_PROTOCOL_PB_WIRE_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "base/iobuf.h"

/* Called for each length-delimited field (number, its bytes); non-zero stops the walk. */
typedef int (*ft_pb_wire_len_cb)(uint64_t field, const uint8_t *p, size_t len, void *arg);

/* Walks the fields of the message in [p, end): 0, or the callback's first non-zero return. */
int ft_pb_wire_each_len(const uint8_t *p, const uint8_t *end, ft_pb_wire_len_cb cb, void *arg);

/* 1 when a message in the len bytes at p, read as an md, nests deeper than max_depth levels (the
 * top message is level 1), else 0. */
int ft_pb_wire_too_deep(const ProtobufCMessageDescriptor *md, const void *p, size_t len,
                        int max_depth);

/* 1 when no message of type md can nest deeper than max_depth, whatever the bytes: the message
 * fields below it reach no deeper (no recursive type). 0 when one may, or when the types below are
 * too many to tell in a few thousand steps. Depends on the types alone: callers compute it once. */
int ft_pb_type_depth_bounded(const ProtobufCMessageDescriptor *md, int max_depth);

/* ft_pb_unpack (base/pb_codec.h) of bytes a peer sent, refused first when they nest deeper than
 * max_depth: NULL then, with *too_deep set to 1 (0 otherwise). max_depth 0: no walk (the type is
 * bounded, ft_pb_type_depth_bounded). */
ProtobufCMessage *ft_pb_unpack_bounded(const ProtobufCMessageDescriptor *md, ft_iobuf *in,
                                       ProtobufCAllocator *alloc, int max_depth, int *too_deep);

#endif
