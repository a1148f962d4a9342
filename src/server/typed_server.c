/* Typed services on the server (ftrpc_server_add_service, ftrpc/typed.h): each method of a
 * protoc-c ProtobufCService becomes a method of bytes whose handler unpacks the request, calls the
 * implementation through the service's invoke, and packs what the implementation's closure
 * receives.
 *
 * A call's typed state (typed_call) holds its arena inline, and lives from the handler to the
 * closure: the closure may run on any thread, at once or later, and frees it after the reply is
 * packed. Nothing here is shared between calls but the read-only method entries, so no lock.
 * Not done here: reply attachments (the implementation reads the request's through
 * ftrpc_typed_server_call), streaming.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "base/log.h"
#include "base/pb_codec.h"
#include "base/pb_flat.h"
#include "base/sized_options.h"
#include "ftrpc/typed.h"
#include "protocol/pb_wire.h"
#include "server/server_internal.h"

struct ft_typed_method {
    struct ft_typed_service *service;
    unsigned index; /* in the descriptor's methods */
    int max_depth;  /* for ft_pb_unpack_bounded: 0 when the input type cannot nest too deep */
    int flat;       /* the input type is flat: ft_pb_unpack_flat first */
    int out_flat;   /* the output type is flat: packed by ft_pb_flat_pack */
};

struct ft_typed_service {
    struct ft_typed_service *next;
    ProtobufCService *impl;
    size_t nmethods;
    struct ft_typed_method methods[];
};

typedef struct typed_call {
    ft_arena arena; /* the request, and whatever the implementation allocates there; its first
                     * block holds this struct (ft_arena_new_with_head) */
    ftrpc_server_call *call;
    const ProtobufCMethodDescriptor *md;
    int out_flat;          /* the method's ft_typed_method.out_flat */
    int fail_code;         /* ftrpc_typed_server_fail's, for a closure given NULL */
    const char *fail_text; /* its text, in the arena (NULL: none), so that the head the arena's
                            * block starts with stays small */
} typed_call;

/* Room in the call's own allocation for the request and what the implementation allocates:
 * most small messages need no other malloc. */
enum { CALL_ARENA_ROOM = 512 };

enum { FAIL_TEXT_MAX = 255 }; /* ftrpc_typed_server_fail's text is cut there */

/* A reply of at most this many bytes is packed on the stack (baidu_std copies bodies this small
 * into its frame anyway); a larger one into a buffer whose blocks the frame shares. */
enum { SMALL_REPLY = 256 };

/* The typed call lives in its arena's first block: freeing the arena frees it, unless the arena
 * was taken (then the block goes with the taker's arena). */
static void typed_call_free(typed_call *tc)
{
    ft_arena_free_head(&tc->arena);
}

static void typed_closure(const ProtobufCMessage *msg, void *closure_data)
{
    typed_call *tc = closure_data;
    ftrpc_server_call *call = tc->call;
    if (!msg) {
        ftrpc_server_call_fail(call, tc->fail_code ? tc->fail_code : FTRPC_EINTERNAL,
                               tc->fail_text);
        typed_call_free(tc);
        return;
    }
    if (msg->descriptor != tc->md->output) {
        FT_LOG_RATELIMITED(FTRPC_LOG_ERROR, "%s/%s: the implementation answered a %s, not a %s",
                           ftrpc_server_call_service(call), tc->md->name,
                           msg->descriptor ? msg->descriptor->name : "(no type)",
                           tc->md->output->name);
        ftrpc_server_call_fail(call, FTRPC_EINTERNAL, "the implementation answered a wrong type");
        typed_call_free(tc);
        return;
    }
    uint8_t small[SMALL_REPLY];
    if (tc->out_flat) {
        /* packed on the stack in one pass and copied straight into the frame: no buffer */
        size_t n = ft_pb_flat_pack_into(msg, small, sizeof small);
        if (n != SIZE_MAX) {
            ft_server_call_reply_bytes(call, small, n);
            typed_call_free(tc);
            return;
        }
    } else {
        size_t n = protobuf_c_message_get_packed_size(msg);
        if (n <= sizeof small) {
            if (protobuf_c_message_pack(msg, small) == n)
                ft_server_call_reply_bytes(call, small, n);
            else
                ftrpc_server_call_fail(call, FTRPC_EINTERNAL, "the reply did not pack");
            typed_call_free(tc);
            return;
        }
    }
    ft_iobuf reply;
    ft_iobuf_init(&reply);
    if (ft_pb_pack(msg, tc->out_flat, &reply) == 0)
        ftrpc_server_call_reply(call, &reply, NULL);
    else
        ftrpc_server_call_fail(call, FTRPC_EINTERNAL, "server out of memory");
    ft_iobuf_fini(&reply);
    typed_call_free(tc);
}

static void typed_handler(ftrpc_server_call *call, void *arg)
{
    const struct ft_typed_method *tm = arg;
    ProtobufCService *impl = tm->service->impl;
    const ProtobufCMethodDescriptor *md = &impl->descriptor->methods[tm->index];
    typed_call *tc =
        ft_arena_new_with_head(sizeof *tc, CALL_ARENA_ROOM, offsetof(typed_call, arena));
    if (!tc) {
        ftrpc_server_call_fail(call, FTRPC_EINTERNAL, "server out of memory");
        return;
    }
    tc->call = call; /* every field: the block is not zeroed */
    tc->md = md;
    tc->out_flat = tm->out_flat;
    tc->fail_code = 0;
    tc->fail_text = NULL;
    int too_deep = 0;
    ProtobufCMessage *req =
        tm->flat ? ft_pb_unpack_flat(md->input, &tc->arena, &call->request) : NULL;
    if (!req)
        req = ft_pb_unpack_bounded(md->input, &call->request, &tc->arena.allocator, tm->max_depth,
                                   &too_deep);
    if (!req) {
        char text[256];
        if (too_deep)
            snprintf(text, sizeof text, "the request's messages are nested deeper than %d",
                     FTRPC_TYPED_MAX_DEPTH);
        else
            snprintf(text, sizeof text, "the request does not parse as %s", md->input->name);
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "%s/%s from %s: %s", impl->descriptor->name, md->name,
                           ftrpc_server_call_peer(call), text);
        typed_call_free(tc);
        ftrpc_server_call_fail(call, FTRPC_EREQUEST, text);
        return;
    }
    impl->invoke(impl, tm->index, req, typed_closure, tc);
}

int ftrpc_server_add_service_sized(ftrpc_server *s, ProtobufCService *impl,
                                   const ftrpc_method_options *mopts, size_t mopts_size)
{
    ftrpc_method_options mo;
    if (!s || !impl || !impl->invoke || !impl->descriptor ||
        ft_sized_options_read(&mo, sizeof mo, mopts, mopts_size) != 0)
        return FTRPC_EINVAL;
    const ProtobufCServiceDescriptor *d = impl->descriptor;
    if (d->magic != PROTOBUF_C__SERVICE_DESCRIPTOR_MAGIC || !d->name || !*d->name ||
        d->n_methods == 0) {
        FT_WARN("ftrpc_server_add_service: not a protoc-c service descriptor with methods");
        return FTRPC_EINVAL;
    }
    if (atomic_load(&s->state) != FT_SERVER_NEW) return FTRPC_ESTOPPED;
    for (unsigned i = 0; i < d->n_methods; i++)
        if (ft_server_has_method(s, d->name, d->methods[i].name)) return FTRPC_EEXIST;
    struct ft_typed_service *ts =
        calloc(1, sizeof *ts + d->n_methods * sizeof(struct ft_typed_method));
    if (!ts) return FTRPC_ENOMEM;
    ts->impl = impl;
    ts->nmethods = d->n_methods;
    /* linked first: a failure half-way leaves registered methods that point into it */
    ts->next = s->typed;
    s->typed = ts;
    for (unsigned i = 0; i < d->n_methods; i++) {
        ts->methods[i] = (struct ft_typed_method){
            ts, i,
            ft_pb_type_depth_bounded(d->methods[i].input, FTRPC_TYPED_MAX_DEPTH)
                ? 0
                : FTRPC_TYPED_MAX_DEPTH,
            ft_pb_is_flat(d->methods[i].input), ft_pb_is_flat(d->methods[i].output)};
        int rc = ft_server_add_method(s, d->name, d->methods[i].name, typed_handler,
                                      &ts->methods[i], &mo, &d->methods[i]);
        if (rc != 0) return rc;
    }
    return 0;
}

void ft_typed_services_free(ftrpc_server *s)
{
    while (s->typed) {
        struct ft_typed_service *next = s->typed->next;
        free(s->typed);
        s->typed = next;
    }
}

ftrpc_server_call *ftrpc_typed_server_call(void *closure_data)
{
    return closure_data ? ((typed_call *)closure_data)->call : NULL;
}

void ftrpc_typed_server_fail(void *closure_data, int code, const char *text)
{
    typed_call *tc = closure_data;
    if (!tc) return;
    tc->fail_code = code;
    /* an arena taken already left tc->arena empty: the text then gets a block of its own there,
     * freed with the call after the closure */
    size_t len = text ? strnlen(text, FAIL_TEXT_MAX) : 0;
    char *copy = len ? ft_arena_alloc(&tc->arena, len + 1) : NULL;
    if (copy) {
        memcpy(copy, text, len);
        copy[len] = '\0';
    }
    tc->fail_text = copy;
}

ftrpc_arena *ftrpc_typed_server_arena(void *closure_data)
{
    return closure_data ? &((typed_call *)closure_data)->arena : NULL;
}

ftrpc_arena *ftrpc_typed_server_take_arena(void *closure_data)
{
    typed_call *tc = closure_data;
    /* the taker's arena keeps this struct's block: the closure still reads it, which is why the
     * taker frees it only once the closure has returned (the implementation calls the closure, so
     * it knows when) */
    if (!tc || !tc->arena.blocks) return NULL;
    ftrpc_arena *a = malloc(sizeof *a);
    if (a) ft_arena_move(a, &tc->arena);
    return a;
}
