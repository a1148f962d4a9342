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

#include <stddef.h>
#include <stdint.h>

/* Called for each length-delimited field (number, its bytes); non-zero stops the walk. */
typedef int (*ft_pb_wire_len_cb)(uint64_t field, const uint8_t *p, size_t len, void *arg);

/* Walks the fields of the message in [p, end): 0, or the callback's first non-zero return. */
int ft_pb_wire_each_len(const uint8_t *p, const uint8_t *end, ft_pb_wire_len_cb cb, void *arg);

#endif
