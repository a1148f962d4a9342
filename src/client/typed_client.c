/* Typed clients (ftrpc_typed_client_new, ftrpc/typed.h): a ProtobufCService whose invoke packs
 * the stub's input and makes an ftrpc_call_async of "package.Service/Method", so that protoc-c's
 * generated stubs call through every fault-tolerance feature of the client (the call engine sees
 * bytes, as for any other call); the completion unpacks the response into an arena of the call's
 * and hands it to the stub's closure.
 *
 * The closure's signature is protoc-c's, (message, closure_data), with closure_data the caller's:
 * the call's outcome reaches it through thread-locals set around the closure (ftrpc_typed_result,
 * ftrpc_typed_take_arena), valid on that thread until it returns. Built on the call API: a typed
 * call is exactly a call of bytes, plus a pack and an unpack; the async one packs its request
 * into a block of its own and hands that to the call (ft_call_async_owned), as nothing else holds
 * it: the block becomes the call's request buffer as it is.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "base/pb_codec.h"
#include "base/pb_flat.h"
#include "base/sized_options.h"
#include "client/client_internal.h"
#include "ftrpc/typed.h"
#include "protocol/pb_wire.h"

typedef struct typed_client {
    ProtobufCService base; /* first: the stubs see this */
    ftrpc_client *client;
    ftrpc_call_options opts; /* every stub call's */
    int opts_default;        /* opts are all defaults: the calls pass NULL, which
                              * ftrpc_call_async reads faster */
    struct typed_output {
        int max_depth; /* for ft_pb_unpack_bounded: 0 when the type cannot nest too deep */
        int flat;      /* the type is flat: ft_pb_unpack_flat first */
        int in_flat;   /* the input type is flat: packed by ft_pb_flat_pack */
    } out[];           /* per method, of its output type (and in_flat of its input) */
} typed_client;

/* One call in flight: what its completion needs, and the arena its response is unpacked into,
 * whose first block holds this struct (ft_arena_new_with_head: one malloc per call, none once the
 * thread's cache holds blocks). Every field is written when the call starts (the block is not
 * zeroed). */
typedef struct typed_pending {
    ft_arena arena;
    const ProtobufCMessageDescriptor *output; /* the method's output type */
    struct typed_output out;
    ProtobufCClosure closure;
    void *closure_data;
} typed_pending;

/* What a running closure's thread-local points at: the call's outcome and arena, and whether
 * the closure took the arena. It lives in run_closure's frame, so that a call's closure costs one
 * thread-local written and restored, not one per item. */
typedef struct closure_scope {
    const ftrpc_result *result;
    ft_arena *arena;
    int taken;
} closure_scope;

/* Set while a closure runs, on its thread. */
static _Thread_local closure_scope *tl_scope;

/* Runs the closure; 1 when it took the arena. Then the arena, and the call's state in its first
 * block, are the taker's, who may free them on another thread as soon as the closure has
 * signalled it: the caller must not touch them any more, and learns it here, from its own frame
 * rather than from the call's memory. */
static int run_closure(ProtobufCClosure closure, const ProtobufCMessage *msg, void *closure_data,
                       const ftrpc_result *result, ft_arena *arena)
{
    /* a closure may start a call that fails at once, whose closure runs inside this one */
    closure_scope scope = {result, arena, 0};
    closure_scope *saved = tl_scope;
    tl_scope = &scope;
    closure(msg, closure_data);
    tl_scope = saved;
    return scope.taken;
}

const ftrpc_result *ftrpc_typed_result(void)
{
    closure_scope *s = tl_scope;
    return s ? s->result : NULL;
}

ftrpc_arena *ftrpc_typed_take_arena(void)
{
    closure_scope *s = tl_scope;
    if (!s || !s->arena || !s->arena->blocks) return NULL;
    ftrpc_arena *a = malloc(sizeof *a);
    if (!a) return NULL;
    ft_arena_move(a, s->arena);
    s->taken = 1;
    return a;
}

/* The method named `method` (by name) or numbered `index` (name NULL) of the service, when input
 * is of its input type. */
static const ProtobufCMethodDescriptor *find_method(const ProtobufCServiceDescriptor *d,
                                                    const char *method, unsigned index,
                                                    const ProtobufCMessage *input)
{
    const ProtobufCMethodDescriptor *md =
        method ? protobuf_c_service_descriptor_get_method_by_name(d, method)
               : (index < d->n_methods ? &d->methods[index] : NULL);
    if (!md || !input || input->descriptor != md->input) return NULL;
    return md;
}

enum { RESPONSE_ARENA_ROOM = 512 }; /* most small responses need no other malloc */

/* The response unpacked from r->response (into arena; NULL: protobuf-c's default allocator) by
 * protobuf-c (the flat reader tried first unless flat_tried), or NULL with r turned into
 * FTRPC_ERESPONSE. */
static ProtobufCMessage *unpack_response(const ProtobufCMessageDescriptor *output,
                                         struct typed_output how, int flat_tried, ftrpc_result *r,
                                         ft_arena *arena)
{
    int too_deep = 0;
    ProtobufCMessage *msg =
        how.flat && arena && !flat_tried ? ft_pb_unpack_flat(output, arena, r->response) : NULL;
    if (!msg)
        msg = ft_pb_unpack_bounded(output, r->response, arena ? &arena->allocator : NULL,
                                   how.max_depth, &too_deep);
    if (msg) return msg;
    r->kind = FTRPC_RESULT_RPC_ERROR;
    r->code = FTRPC_ERESPONSE;
    if (too_deep)
        snprintf(r->error_text, sizeof r->error_text,
                 "the response's messages are nested deeper than %d", FTRPC_TYPED_MAX_DEPTH);
    else
        snprintf(r->error_text, sizeof r->error_text, "the response does not parse as %s",
                 output->name);
    return NULL;
}

static void on_complete(ftrpc_result *r, void *arg)
{
    typed_pending *p = arg;
    ProtobufCMessage *msg = NULL;
    if (r->kind == FTRPC_RESULT_OK) {
        /* a flat reply read here, protobuf-c (and the error) out of line */
        if (p->out.flat) msg = ft_pb_unpack_flat(p->output, &p->arena, r->response);
        if (!msg) msg = unpack_response(p->output, p->out, 1, r, &p->arena);
    }
    /* frees p, unless the closure took the arena (and p with it) */
    if (!run_closure(p->closure, msg, p->closure_data, r, msg ? &p->arena : NULL))
        ft_arena_free_head(&p->arena);
}

/* The call of method `index` (checked by the caller). */
static inline int start_call(typed_client *tc, unsigned index, const ProtobufCMessage *input,
                             const ftrpc_call_options *opts, size_t opts_size,
                             ProtobufCClosure closure, void *closure_data, ftrpc_call_id *id)
{
    if (!closure) return FTRPC_EINVAL;
    const ProtobufCMethodDescriptor *md = &tc->base.descriptor->methods[index];
    typed_pending *p =
        ft_arena_new_with_head(sizeof *p, RESPONSE_ARENA_ROOM, offsetof(typed_pending, arena));
    if (!p) return FTRPC_ENOMEM;
    p->output = md->output;
    p->out = tc->out[index];
    p->closure = closure;
    p->closure_data = closure_data;
    ft_block *req;
    uint32_t len;
    int rc = ft_pb_pack_block(input, p->out.in_flat, &req, &len);
    if (rc == 0) {
        if (!opts && !tc->opts_default) {
            opts = &tc->opts;
            opts_size = sizeof tc->opts;
        }
        rc = ft_call_async_owned(tc->client, tc->base.descriptor->name, md->name, req, len, opts,
                                 opts_size, on_complete, p, id);
        if (rc != 0 && req) ft_block_release(req);
    }
    if (rc != 0) ft_arena_free_head(&p->arena);
    return rc;
}

/* The stubs' entry (ProtobufCService.invoke): the closure runs exactly once, here at once when the
 * call cannot start. */
static void typed_invoke(ProtobufCService *service, unsigned index, const ProtobufCMessage *input,
                         ProtobufCClosure closure, void *closure_data)
{
    typed_client *tc = (typed_client *)service;
    /* protoc-c's stub passes the method's index: no lookup by name */
    const ProtobufCMethodDescriptor *md = find_method(service->descriptor, NULL, index, input);
    int rc = md ? start_call(tc, index, input, NULL, 0, closure, closure_data, NULL) : FTRPC_EINVAL;
    if (rc == 0 || !closure) return;
    ftrpc_result r;
    memset(&r, 0, sizeof r);
    r.kind = FTRPC_RESULT_RPC_ERROR;
    r.code = rc;
    r.cluster = -1;
    snprintf(r.error_text, sizeof r.error_text, "%s",
             md ? ftrpc_strerror(rc) : "no such method, or an input of another type");
    (void)run_closure(closure, NULL, closure_data, &r, NULL);
}

static void typed_destroy(ProtobufCService *service)
{
    free(service);
}

int ftrpc_typed_client_new_sized(ftrpc_client *client, const ProtobufCServiceDescriptor *d,
                                 const ftrpc_call_options *opts, size_t opts_size,
                                 ProtobufCService **out)
{
    if (!client || !d || !out || d->magic != PROTOBUF_C__SERVICE_DESCRIPTOR_MAGIC || !d->name ||
        !*d->name)
        return FTRPC_EINVAL;
    typed_client *tc = calloc(1, sizeof *tc + d->n_methods * sizeof tc->out[0]);
    if (!tc) return FTRPC_ENOMEM;
    for (unsigned i = 0; i < d->n_methods; i++) {
        tc->out[i].max_depth = ft_pb_type_depth_bounded(d->methods[i].output, FTRPC_TYPED_MAX_DEPTH)
                                   ? 0
                                   : FTRPC_TYPED_MAX_DEPTH;
        tc->out[i].flat = ft_pb_is_flat(d->methods[i].output);
        tc->out[i].in_flat = ft_pb_is_flat(d->methods[i].input);
    }
    if (ft_sized_options_read(&tc->opts, sizeof tc->opts, opts, opts_size) != 0) {
        free(tc);
        return FTRPC_EINVAL;
    }
    static const ftrpc_call_options defaults; /* padding included: compared as bytes */
    tc->opts_default = memcmp(&tc->opts, &defaults, sizeof defaults) == 0;
    tc->base.descriptor = d;
    tc->base.invoke = typed_invoke;
    tc->base.destroy = typed_destroy;
    tc->client = client;
    *out = &tc->base;
    return 0;
}

void ftrpc_typed_client_free(ProtobufCService *service)
{
    if (service) typed_destroy(service);
}

static typed_client *as_typed_client(ProtobufCService *service)
{
    return service && service->invoke == typed_invoke ? (typed_client *)service : NULL;
}

int ftrpc_typed_call_async_sized(ProtobufCService *service, const char *method,
                                 const ProtobufCMessage *input, const ftrpc_call_options *opts,
                                 size_t opts_size, ProtobufCClosure closure, void *closure_data,
                                 ftrpc_call_id *id)
{
    typed_client *tc = as_typed_client(service);
    const ProtobufCMethodDescriptor *md =
        tc && method ? find_method(service->descriptor, method, 0, input) : NULL;
    if (!md) return FTRPC_EINVAL;
    return start_call(tc, (unsigned)(md - service->descriptor->methods), input, opts, opts_size,
                      closure, closure_data, id);
}

int ftrpc_typed_call_sized(ProtobufCService *service, const char *method,
                           const ProtobufCMessage *input, const ftrpc_call_options *opts,
                           size_t opts_size, ftrpc_arena *arena, ProtobufCMessage **output,
                           ftrpc_result *result, size_t result_size)
{
    typed_client *tc = as_typed_client(service);
    const ProtobufCMethodDescriptor *md =
        tc && method ? find_method(service->descriptor, method, 0, input) : NULL;
    ftrpc_result r;
    int rc;
    if (!md || !output) {
        memset(&r, 0, sizeof r);
        r.kind = FTRPC_RESULT_RPC_ERROR;
        r.code = rc = FTRPC_EINVAL;
        r.cluster = -1;
        snprintf(r.error_text, sizeof r.error_text, "no such method, or an input of another type");
    } else {
        ft_iobuf req;
        ft_iobuf_init(&req);
        rc = ft_pb_pack(input, tc->out[md - service->descriptor->methods].in_flat, &req);
        if (!opts && !tc->opts_default) {
            opts = &tc->opts;
            opts_size = sizeof tc->opts;
        }
        if (rc == 0)
            rc = ftrpc_call_sized(tc->client, service->descriptor->name, md->name, &req, NULL, opts,
                                  opts_size, &r, sizeof r);
        else {
            memset(&r, 0, sizeof r);
            r.kind = FTRPC_RESULT_RPC_ERROR;
            r.code = rc;
            r.cluster = -1;
            snprintf(r.error_text, sizeof r.error_text, "%s", ftrpc_strerror(rc));
        }
        ft_iobuf_fini(&req);
    }
    if (rc == 0) {
        ProtobufCMessage *msg =
            unpack_response(md->output, tc->out[md - service->descriptor->methods], 0, &r, arena);
        if (msg)
            *output = msg;
        else
            rc = r.code;
    }
    ftrpc_buf_free(r.response);
    r.response = NULL;
    if (result && result_size >= offsetof(ftrpc_result, attempts)) {
        ft_sized_result_write(result, result_size, &r, sizeof r);
    } else {
        ftrpc_result_fini(&r);
    }
    return rc;
}
