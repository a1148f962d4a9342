/* Typed services: protoc-c's generated code over ftrpc (docs/services.md).
 *
 * protoc-c emits, for every `service Foo` of a .proto, a ProtobufCServiceDescriptor
 * (foo__descriptor), a Foo_Service struct of method pointers with FOO__INIT / foo__init, and client
 * stubs foo__method(ProtobufCService *, const Req *, Reply_Closure, void *closure_data). ftrpc
 * plugs into that output and writes no code generator of its own:
 *
 *  - a server registers a Foo_Service (its `base`) with ftrpc_server_add_service: every method is
 *    served as "package.Foo/Method", the request unpacked into the input type, the implementation
 *    called, and the message its closure receives packed as the response;
 *  - a client makes a ProtobufCService over an ftrpc_client with ftrpc_typed_client_new: the
 *    generated stubs then call through ftrpc, with every fault-tolerance feature of the client
 *    (failover, retries, backup requests, fallback), and their closure runs on completion.
 *
 * This header includes <protobuf-c/protobuf-c.h>; ftrpc/ftrpc.h does not include this one, so that
 * a program that passes bytes needs no protobuf-c headers. The CMake package's
 * ftrpc_protobuf_generate() runs protoc-c and links libprotobuf-c (docs/services.md, Build).
 *
 * Memory: a message ftrpc unpacks (a server's request, a client's response) lives in an arena
 * (ftrpc_arena) that belongs to the call and is freed when the call's closure has returned. A
 * program that wants to keep it takes the arena (ftrpc_typed_take_arena in a client's closure,
 * ftrpc_typed_server_take_arena in a server's implementation) and frees it later.
 */
#ifndef FTRPC_TYPED_H
#define FTRPC_TYPED_H

#include <protobuf-c/protobuf-c.h>

#include "ftrpc/client.h"
#include "ftrpc/common.h"
#include "ftrpc/server.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How deep messages may nest in the bytes a typed server or client unpacks (the top message is
 * level 1): protobuf-c's unpack recurses once per level with no bound of its own, so deeper bytes
 * from a peer are refused before they reach it (FTRPC_EREQUEST on the server, FTRPC_ERESPONSE on
 * the client). 100, protobuf C++'s default recursion limit. */
#define FTRPC_TYPED_MAX_DEPTH 100

/* ---- arenas ----
 * A region that messages are unpacked into: allocations are carved from blocks that are freed
 * all at once, so a message of any depth costs a few mallocs and one free. Not thread-safe: one
 * thread at a time may allocate from it (a call's arena is touched by the thread that runs its
 * closure or implementation). */
typedef struct ftrpc_arena ftrpc_arena;

/* Makes an empty arena. NULL on allocation failure. The caller owns it: ftrpc_arena_free(). Any
 * thread. */
FTRPC_API ftrpc_arena *ftrpc_arena_new(void);
/* Frees the arena and everything allocated from it (every message unpacked into it). NULL does
 * nothing. Any thread. */
FTRPC_API void ftrpc_arena_free(ftrpc_arena *arena);
/* Memory from the arena, aligned for any type, valid until the arena is freed. NULL on
 * allocation failure. */
FTRPC_API void *ftrpc_arena_alloc(ftrpc_arena *arena, size_t size);
/* protobuf-c's allocator view of the arena (its free does nothing): pass it to
 * protobuf_c_message_unpack, or to a generated foo__unpack, to unpack into the arena. The pointer
 * stays valid as long as the arena. */
FTRPC_API ProtobufCAllocator *ftrpc_arena_allocator(ftrpc_arena *arena);

/* ---- server: a service implemented with protoc-c's Foo_Service ---- */

/* Registers every method of impl->descriptor under the descriptor's full name ("package.Foo",
 * method "Bar"), each with the options mopts (NULL: the defaults; the run mode and concurrency
 * limit then hold for each method). impl is the `base` of a Foo_Service initialised with
 * FOO__INIT(prefix_) or foo__init(): the caller owns it and it must outlive the server. Before
 * ftrpc_server_start only, as ftrpc_server_add_method. FTRPC_EINVAL for a NULL or bad argument,
 * FTRPC_EEXIST when one of the methods is registered already (then none is), FTRPC_ESTOPPED after
 * start, FTRPC_ENOMEM (the methods registered before it stay so). Any non-IO thread, not
 * concurrently with the server's other lifecycle functions.
 *
 * For each request: the payload is unpacked into the method's input type (into the call's
 * arena); a payload that does not parse, or nests deeper than FTRPC_TYPED_MAX_DEPTH, is answered
 * FTRPC_EREQUEST (brpc's EREQUEST, 1003) and the implementation is not called. Otherwise the
 * method's function runs, on the thread of the method's run mode, with `closure_data` naming the
 * call (the accessors below take it). The implementation must run its closure exactly once, on any
 * thread, at once or later:
 *  - closure(message, closure_data): the message is packed and sent as the response; it stays
 *    the implementation's (it may be on its stack: it is packed before the closure returns);
 *  - closure(NULL, closure_data): the call fails with the code given to ftrpc_typed_server_fail,
 *    or FTRPC_EINTERNAL without one (protoc-c's convention: NULL means failure).
 * After the closure returns, closure_data, the request and the call's arena are gone (unless the
 * arena was taken). */
FTRPC_API int ftrpc_server_add_service_sized(ftrpc_server *server, ProtobufCService *impl,
                                             const ftrpc_method_options *mopts, size_t mopts_size);
static inline int ftrpc_server_add_service(ftrpc_server *server, ProtobufCService *impl,
                                           const ftrpc_method_options *mopts)
{
    return ftrpc_server_add_service_sized(server, impl, mopts, sizeof(ftrpc_method_options));
}

/* Inside an implementation, from the closure_data it was given, until its closure runs, on the
 * thread that holds the call (the implementation's, or the one it handed the call to): */
/* The call being served: its deadline (ftrpc_server_call_remaining_ms), peer, identity, request
 * attachment and whether the client cancelled it (ftrpc_server_call_is_canceled). The call is
 * finished by the closure: never pass it to ftrpc_server_call_reply or _fail. */
FTRPC_API ftrpc_server_call *ftrpc_typed_server_call(void *closure_data);
/* The error a closure(NULL, closure_data) sends: a business code (>= FTRPC_BUSINESS_CODE_MIN, or
 * negative) or a brpc framework code, as ftrpc_server_call_fail takes them; text may be NULL and
 * is copied (at most 255 bytes). Call it before the closure. */
FTRPC_API void ftrpc_typed_server_fail(void *closure_data, int code, const char *text);
/* The call's arena, where the request lives: the implementation may build its response there
 * too (it is freed after the response is packed). */
FTRPC_API ftrpc_arena *ftrpc_typed_server_arena(void *closure_data);
/* Takes the call's arena: the request then outlives the closure, and the caller frees the arena
 * with ftrpc_arena_free once the closure has returned (the call's state lives in it until then).
 * NULL when it was taken already. */
FTRPC_API ftrpc_arena *ftrpc_typed_server_take_arena(void *closure_data);

/* ---- client: protoc-c's stubs over an ftrpc_client ---- */

/* Makes a ProtobufCService for `descriptor` (e.g. &foo__descriptor) that sends calls through
 * `client` as "package.Foo/Method". The generated stubs take it unchanged:
 *     foo__bar(service, &request, on_reply, arg);
 * Each such call is an ftrpc_call_async with call options `opts` (NULL: the client's; copied, but
 * the fallback it points to is not: it must outlive the service). The closure runs exactly once:
 * on the call's IO thread when it completes, or on the calling thread before the stub returns when
 * the call could not start (a request that does not pack, a stopped client). It receives the
 * response, or NULL on failure; ftrpc_typed_result() tells why. The message is valid until the
 * closure returns (ftrpc_typed_take_arena keeps it). The closure must not block.
 *
 * client and descriptor must outlive the service; on success *out is the caller's: free it with
 * ftrpc_typed_client_free (or its destroy, protobuf_c_service_destroy). Any thread. */
FTRPC_API int ftrpc_typed_client_new_sized(ftrpc_client *client,
                                           const ProtobufCServiceDescriptor *descriptor,
                                           const ftrpc_call_options *opts, size_t opts_size,
                                           ProtobufCService **out);
static inline int ftrpc_typed_client_new(ftrpc_client *client,
                                         const ProtobufCServiceDescriptor *descriptor,
                                         const ftrpc_call_options *opts, ProtobufCService **out)
{
    return ftrpc_typed_client_new_sized(client, descriptor, opts, sizeof(ftrpc_call_options), out);
}
/* Frees a service made by ftrpc_typed_client_new. Calls in flight keep what they need: their
 * closures still run. NULL does nothing. Any thread. */
FTRPC_API void ftrpc_typed_client_free(ProtobufCService *service);

/* Inside a client closure (on the thread running it, until it returns): the call's outcome, as
 * ftrpc_call_cb receives it: kind, code, error_text, attempts, endpoint, latency, backups,
 * backup_won, from_fallback (its `response` holds the packed bytes). NULL outside a closure. When
 * the closure got NULL, `code` is non-zero: an RPC error (negative FTRPC_E*; FTRPC_ERESPONSE when
 * the response did not unpack) or a business error (kind FTRPC_RESULT_BUSINESS_ERROR). */
FTRPC_API const ftrpc_result *ftrpc_typed_result(void);
/* Inside a client closure: takes the arena its message lives in, so that the message outlives
 * the closure; the caller frees it with ftrpc_arena_free, from any thread, at any time (also
 * before the closure returns: ftrpc no longer touches it once taken). NULL when the closure got
 * NULL, or when the arena was taken already. */
FTRPC_API ftrpc_arena *ftrpc_typed_take_arena(void);

/* The stubs' call with options of its own and a handle: `method` names one of the service's
 * methods ("Bar"), input must be of its input type. opts (NULL: the service's) are read before it
 * returns. id may be NULL, else it receives the handle for ftrpc_call_cancel on the service's
 * client. Returns 0 and the closure runs exactly once later, or an error at once (FTRPC_EINVAL for
 * an unknown method or a wrong input type, or what ftrpc_call_async returns) and the closure never
 * runs. Any thread, including closures. */
FTRPC_API int ftrpc_typed_call_async_sized(ProtobufCService *service, const char *method,
                                           const ProtobufCMessage *input,
                                           const ftrpc_call_options *opts, size_t opts_size,
                                           ProtobufCClosure closure, void *closure_data,
                                           ftrpc_call_id *id);
static inline int ftrpc_typed_call_async(ProtobufCService *service, const char *method,
                                         const ProtobufCMessage *input,
                                         const ftrpc_call_options *opts, ProtobufCClosure closure,
                                         void *closure_data, ftrpc_call_id *id)
{
    return ftrpc_typed_call_async_sized(service, method, input, opts, sizeof(ftrpc_call_options),
                                        closure, closure_data, id);
}

/* The blocking typed call: sends input to `method` of the service and blocks until the call
 * completes, as ftrpc_call does (refused with FTRPC_EIOTHREAD on an IO thread). On success
 * *output is the response, unpacked into `arena` (the caller's; the message lives until the arena
 * is freed), or with protobuf-c's default allocator when arena is NULL (then free it with
 * protobuf_c_message_free_unpacked(*output, NULL)). *output is written on success only. Returns
 * what ftrpc_call returns, FTRPC_ERESPONSE when the response does not unpack, FTRPC_EINVAL for an
 * unknown method or a wrong input type. result may be NULL; else it is filled as ftrpc_call fills
 * it (always, with `response` already freed) and the caller calls ftrpc_result_fini. */
FTRPC_API int ftrpc_typed_call_sized(ProtobufCService *service, const char *method,
                                     const ProtobufCMessage *input, const ftrpc_call_options *opts,
                                     size_t opts_size, ftrpc_arena *arena,
                                     ProtobufCMessage **output, ftrpc_result *result,
                                     size_t result_size);
static inline int ftrpc_typed_call(ProtobufCService *service, const char *method,
                                   const ProtobufCMessage *input, const ftrpc_call_options *opts,
                                   ftrpc_arena *arena, ProtobufCMessage **output,
                                   ftrpc_result *result)
{
    return ftrpc_typed_call_sized(service, method, input, opts, sizeof(ftrpc_call_options), arena,
                                  output, result, sizeof(ftrpc_result));
}

#ifdef __cplusplus
}
#endif
#endif
