/* JSON <-> protobuf, driven by a message descriptor: protobuf's canonical JSON mapping, as brpc's
 * json2pb/pb2json do over HTTP. One transcoder serves the server (JSON bodies on the HTTP port,
 * src/server/http_session.c) and the CLI (--data-json, through include/ftrpc/json.h); the
 * descriptor may be protoc-c's generated one or one built at run time (pb_descset.h).
 *
 * The mapping (docs/json.md): a message is an object; keys are the field's lowerCamelCase JSON name
 * or its proto name on input, the JSON name on output; enums by name (numbers accepted on input);
 * bytes as base64 (standard, padded on output; URL-safe and unpadded accepted on input); 64-bit
 * integers as strings on output (numbers or strings on input); float and double as numbers, or
 * "NaN", "Infinity", "-Infinity"; repeated fields as arrays; map fields (a repeated field of a
 * `<Field>Entry` message with key = 1, value = 2, as protoc makes them) as objects; null as the
 * field's default. Output omits fields at their default (proto3) or absent (proto2 optional).
 *
 * Invariants: pure (no IO, no logging, no globals), bounded (FT_JSON_PB_MAX_BYTES of JSON,
 * FT_JSON_PB_DEPTH of nesting in JSON and in messages), and every refusal is FTRPC_EINVAL with a
 * one-line reason naming the field's path ("items[2].name: expected a string"); outside input never
 * reaches an assert. Unknown fields are refused, not skipped. Thread-safe: any thread.
 *
 * Not here: the well-known types' special forms (Timestamp, Duration, wrappers, Struct, Any are
 * plain messages here), custom json_name options, proto2 defaults on output. */
#ifndef FT_PROTOCOL_JSON_PB_H
#define FT_PROTOCOL_JSON_PB_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#include "base/iobuf.h"
#include "base/strbuf.h"

#define FT_JSON_PB_MAX_BYTES ((size_t)64 << 20) /* JSON text in */
#define FT_JSON_PB_DEPTH 64                     /* JSON nesting in, message nesting in and out */

/* JSON text (len bytes, no NUL needed) into a new message of type desc, its memory from alloc
 * (NULL: malloc). 0 and *out, which the caller frees with
 * protobuf_c_message_free_unpacked(*out, alloc); or FTRPC_EINVAL with the reason in err (errlen
 * bytes, NUL included; may be NULL), or FTRPC_ENOMEM. */
int ft_json_to_pb(const ProtobufCMessageDescriptor *desc, const char *json, size_t len,
                  ProtobufCAllocator *alloc, ProtobufCMessage **out, char *err, size_t errlen);
/* A message as JSON text, appended to out. 0, FTRPC_EINVAL (a string that is not UTF-8, nesting
 * past FT_JSON_PB_DEPTH; reason in err) or FTRPC_ENOMEM (out past its bound). */
int ft_pb_to_json(const ProtobufCMessage *msg, ft_strbuf *out, char *err, size_t errlen);

/* The same between JSON text and a message's wire bytes. ft_json_to_pb_bytes appends the packed
 * message to out. ft_pb_bytes_to_json unpacks data (FTRPC_EINVAL "not a <type>" when it is not
 * one) and appends its JSON to out. */
int ft_json_to_pb_bytes(const ProtobufCMessageDescriptor *desc, const char *json, size_t len,
                        ft_iobuf *out, char *err, size_t errlen);
int ft_pb_bytes_to_json(const ProtobufCMessageDescriptor *desc, const void *data, size_t len,
                        ft_strbuf *out, char *err, size_t errlen);

#endif
