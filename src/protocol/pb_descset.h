/* Message descriptors built at run time from a FileDescriptorSet (what `protoc
 * --descriptor_set_out` writes), for programs that have no generated code for a .proto: the CLI's
 * --protoset. The descriptors are the structs protobuf-c's generated code defines
 * (ProtobufCMessageDescriptor and its fields, enums, services), laid out so that
 * protobuf_c_message_pack, _unpack and _free_unpacked work on them, and so that the JSON
 * transcoder (json_pb.h) reads them as it reads generated ones.
 *
 * Invariants: a set is immutable once built and owns every descriptor it hands out (valid until
 * ft_descset_free); any thread may read it. Building is bounded: more than FT_DESCSET_MAX_BYTES of
 * input, types nested deeper than FT_DESCSET_MAX_NESTING, more than FT_DESCSET_MAX_TYPES types,
 * a type name that resolves to nothing (every file the set's files import must be in the set:
 * protoc --include_imports), duplicate names or field numbers, groups and extensions are refused
 * with a reason, never asserted on.
 *
 * Not here: proto2 default values (fields start at zero), custom json_name options, the
 * well-known types' special JSON forms, extensions. */
#ifndef FT_PROTOCOL_PB_DESCSET_H
#define FT_PROTOCOL_PB_DESCSET_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#define FT_DESCSET_MAX_BYTES ((size_t)16 << 20) /* a serialized set */
#define FT_DESCSET_MAX_NESTING 32               /* message types declared inside others */
#define FT_DESCSET_MAX_TYPES 65536              /* messages and enums, over every file */
#define FT_DESCSET_MAX_FIELDS 65536             /* fields of one message */

typedef struct ft_descset ft_descset;

/* Builds the descriptors of every message, enum and service of a serialized FileDescriptorSet.
 * 0 and *out (the caller frees it with ft_descset_free), or FTRPC_EINVAL with a one-line reason in
 * err (errlen bytes, NUL included; may be NULL), or FTRPC_ENOMEM. */
int ft_descset_new(const void *data, size_t len, ft_descset **out, char *err, size_t errlen);
/* NULL does nothing. */
void ft_descset_free(ft_descset *set);
/* The message type of that full name ("package.Outer.Inner", no leading dot), or NULL. */
const ProtobufCMessageDescriptor *ft_descset_message(const ft_descset *set, const char *name);
/* The i-th message type of the set (in name order), or NULL past the last: to walk them all. */
const ProtobufCMessageDescriptor *ft_descset_message_at(const ft_descset *set, size_t i);
/* The method of a service ("package.Service", "Method"), or NULL. */
const ProtobufCMethodDescriptor *ft_descset_method(const ft_descset *set, const char *service,
                                                   const char *method);

#endif
