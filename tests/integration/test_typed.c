/* Typed services (ftrpc/typed.h) over real sockets: protoc-c's generated service and stubs, with
 * no hand-written packing, against in-process servers and against the greeter example's server
 * started as processes.
 *
 * - a stub call reaches the implementation and its reply the closure; the blocking typed call
 *   unpacks into the caller's arena; the method table records each method's descriptor;
 * - bytes that do not parse as the input type get FTRPC_EREQUEST and the server keeps serving;
 *   messages nested past FTRPC_TYPED_MAX_DEPTH are refused on both sides, not unpacked (protobuf-c
 *   recurses once per level: a peer would run the reading thread out of stack);
 * - an implementation may answer from another thread, later, and sees its call (deadline, peer);
 *   its NULL closure sends the error it set;
 * - through the stubs, a call fails over past a killed server process, and a backup request to a
 *   second server wins over a slow first one;
 * - a response taken with ftrpc_typed_take_arena outlives its closure;
 * - /protobufs and `ftrpc list` list the services, methods and message types.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ftrpc/typed.h>

#include "greeter.pb-c.h"
#include "harness.h"
#include "protocol/pb_wire.h"       /* ft_pb_type_depth_bounded */
#include "server/server_internal.h" /* the method table's pb_method */
#include "typed_test.pb-c.h"

#if H_UNDER_VALGRIND
#define SLOW 20
#elif defined(__SANITIZE_ADDRESS__) || H_UNDER_TSAN
#define SLOW 4
#else
#define SLOW 1
#endif

/* ---- the implementation of typedtest.Echo ---- */

typedef struct echo_impl {
    Typedtest__Echo_Service service; /* first: the implementation finds itself from it */
    const char *name;
    atomic_int calls;
    atomic_int delay_ms;     /* added to every request's delay_ms */
    atomic_int other_thread; /* closures run on a thread that was not the handler's */
    atomic_int saw_cancel;   /* delayed calls whose client had cancelled them by their answer */
} echo_impl;

struct late_answer {
    echo_impl *impl;
    const Typedtest__EchoRequest *req; /* in the call's arena: valid until the closure */
    Typedtest__EchoReply_Closure closure;
    void *closure_data;
    pthread_t handler_thread;
    ftrpc_arena *request_arena; /* taken: the request outlives the handler */
};

static void answer(echo_impl *impl, const Typedtest__EchoRequest *req,
                   Typedtest__EchoReply_Closure closure, void *closure_data)
{
    if (req->fail_code) {
        ftrpc_typed_server_fail(closure_data, req->fail_code, "told to fail");
        closure(NULL, closure_data);
        return;
    }
    ftrpc_server_call *call = ftrpc_typed_server_call(closure_data);
    /* built in the call's arena: freed after it is packed */
    ftrpc_arena *arena = ftrpc_typed_server_arena(closure_data);
    Typedtest__EchoReply *reply = ftrpc_arena_alloc(arena, sizeof *reply);
    typedtest__echo_reply__init(reply);
    reply->text = req->text;
    reply->server = (char *)impl->name;
    reply->n_items = req->n_items;
    reply->items = req->items;
    reply->blob = req->blob;
    reply->remaining_ms = ftrpc_server_call_remaining_ms(call);
    reply->peer = (char *)ftrpc_server_call_peer(call);
    closure(reply, closure_data);
}

static void *late_thread(void *arg)
{
    struct late_answer *la = arg;
    if (la->req->delay_ms > 0) h_sleep_ms(la->req->delay_ms);
    if (!pthread_equal(pthread_self(), la->handler_thread))
        atomic_fetch_add(&la->impl->other_thread, 1);
    answer(la->impl, la->req, la->closure, la->closure_data);
    ftrpc_arena_free(la->request_arena); /* after the closure, as the rule says */
    free(la);
    return NULL;
}

static void echo_echo(Typedtest__Echo_Service *service, const Typedtest__EchoRequest *req,
                      Typedtest__EchoReply_Closure closure, void *closure_data)
{
    echo_impl *impl = (echo_impl *)service;
    atomic_fetch_add(&impl->calls, 1);
    if (req->from_thread) {
        struct late_answer *la = malloc(sizeof *la);
        *la = (struct late_answer){impl,           req,
                                   closure,        closure_data,
                                   pthread_self(), ftrpc_typed_server_take_arena(closure_data)};
        assert_non_null(la->request_arena);
        assert_null(ftrpc_typed_server_take_arena(closure_data)); /* taken once */
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, late_thread, la), 0);
        pthread_detach(t);
        return;
    }
    int delay = req->delay_ms + atomic_load(&impl->delay_ms);
    if (delay > 0) h_sleep_ms(delay); /* on a worker: the test's servers use them */
    if (ftrpc_server_call_is_canceled(ftrpc_typed_server_call(closure_data)))
        atomic_fetch_add(&impl->saw_cancel, 1);
    answer(impl, req, closure, closure_data);
}

static void echo_count(Typedtest__Echo_Service *service, const Typedtest__CountRequest *req,
                       Typedtest__CountReply_Closure closure, void *closure_data)
{
    (void)req;
    Typedtest__CountReply reply = TYPEDTEST__COUNT_REPLY__INIT;
    reply.calls = atomic_load(&((echo_impl *)service)->calls);
    closure(&reply, closure_data);
}

typedef struct srv {
    echo_impl impl;
    ftrpc_server *server;
    char addr[64];
} srv;

static void srv_start(srv *s, const char *name, const ftrpc_server_options *opts)
{
    memset(s, 0, sizeof *s);
    s->impl.service = (Typedtest__Echo_Service)TYPEDTEST__ECHO__INIT(echo_);
    s->impl.name = name;
    assert_int_equal(ftrpc_server_new(opts, &s->server), 0);
    assert_int_equal(
        ftrpc_server_add_service(s->server, &s->impl.service.base,
                                 &(ftrpc_method_options){.run_mode = FTRPC_RUN_IN_WORKER}),
        0);
    assert_int_equal(ftrpc_server_start(s->server, "127.0.0.1:0"), 0);
    snprintf(s->addr, sizeof s->addr, "127.0.0.1:%d", ftrpc_server_port(s->server));
}

static ProtobufCService *typed_client(const char *url, const ftrpc_client_options *opts,
                                      ftrpc_client **client)
{
    assert_int_equal(ftrpc_client_new(url, opts, client), 0);
    ProtobufCService *svc = NULL;
    assert_int_equal(ftrpc_typed_client_new(*client, &typedtest__echo__descriptor, NULL, &svc), 0);
    return svc;
}

/* One server "A" and a typed client of it. */
typedef struct fixture {
    srv s;
    ftrpc_client *client;
    ProtobufCService *svc;
} fixture;

static fixture *fixture_up(int timeout_ms)
{
    fixture *f = calloc(1, sizeof *f);
    srv_start(&f->s, "A", NULL);
    f->svc = typed_client(f->s.addr, &(ftrpc_client_options){.timeout_ms = timeout_ms}, &f->client);
    return f;
}

static void fixture_down(fixture *f)
{
    ftrpc_typed_client_free(f->svc);
    ftrpc_client_free(f->client);
    ftrpc_server_free(f->s.server);
    free(f);
}

/* ---- a closure that records what it got, and a wait for it ---- */

typedef struct outcome {
    sem_t done;
    atomic_int runs;
    int got_message;
    ftrpc_result result; /* copied from ftrpc_typed_result() (its buffers not kept) */
    char text[64], server[32], peer[64];
    size_t nitems;
    int64_t remaining_ms;
    Typedtest__EchoReply *kept; /* when keep: the reply, outliving the closure */
    ftrpc_arena *kept_arena;
    int keep;
} outcome;

static void outcome_init(outcome *o)
{
    memset(o, 0, sizeof *o);
    sem_init(&o->done, 0, 0);
}

static void on_echo(const Typedtest__EchoReply *reply, void *closure_data)
{
    outcome *o = closure_data;
    const ftrpc_result *r = ftrpc_typed_result();
    o->result = *r;
    o->result.response = o->result.attachment = NULL;
    o->got_message = reply != NULL;
    if (reply) {
        snprintf(o->text, sizeof o->text, "%s", reply->text);
        snprintf(o->server, sizeof o->server, "%s", reply->server);
        snprintf(o->peer, sizeof o->peer, "%s", reply->peer);
        o->nitems = reply->n_items;
        o->remaining_ms = reply->remaining_ms;
        if (o->keep) {
            o->kept_arena = ftrpc_typed_take_arena();
            o->kept = (Typedtest__EchoReply *)reply;
        }
    }
    atomic_fetch_add(&o->runs, 1);
    sem_post(&o->done);
}

static int outcome_wait(outcome *o, int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return sem_timedwait(&o->done, &ts) == 0;
}

/* ---- cases ---- */

static void a_stub_call_reaches_the_implementation_and_its_reply_the_closure(void **state)
{
    (void)state;
    fixture *f = fixture_up(3000);
    ProtobufCService *svc = f->svc;

    char *items[] = {"x", "yy", "zzz"};
    Typedtest__EchoRequest req = TYPEDTEST__ECHO_REQUEST__INIT;
    req.text = "hello";
    req.n_items = 3;
    req.items = items;
    outcome o;
    outcome_init(&o);
    typedtest__echo__echo(svc, &req, on_echo, &o);
    assert_true(outcome_wait(&o, 5000 * H_VG));
    assert_true(o.got_message);
    assert_int_equal(o.result.code, 0);
    assert_string_equal(o.text, "hello");
    assert_string_equal(o.server, "A");
    assert_int_equal(o.nitems, 3);
    assert_string_equal(o.result.endpoint, f->s.addr);
    assert_int_equal(o.result.attempts, 1);
    /* the implementation saw its call: the client's deadline and its address */
    assert_true(o.remaining_ms > 0 && o.remaining_ms <= 3000);
    assert_true(strncmp(o.peer, "127.0.0.1:", 10) == 0);

    /* the blocking call, into the caller's arena */
    ftrpc_arena *arena = ftrpc_arena_new();
    ProtobufCMessage *out = NULL;
    ftrpc_result r;
    assert_int_equal(ftrpc_typed_call(svc, "Echo", &req.base, NULL, arena, &out, &r), 0);
    Typedtest__EchoReply *reply = (Typedtest__EchoReply *)out;
    assert_string_equal(reply->text, "hello");
    assert_string_equal(reply->items[2], "zzz");
    assert_null(r.response);
    assert_int_equal(r.attempts, 1);
    ftrpc_result_fini(&r);
    /* and with protobuf-c's allocator, which the caller frees */
    Typedtest__CountRequest creq = TYPEDTEST__COUNT_REQUEST__INIT;
    assert_int_equal(ftrpc_typed_call(svc, "Count", &creq.base, NULL, NULL, &out, NULL), 0);
    assert_int_equal(((Typedtest__CountReply *)out)->calls, 2);
    protobuf_c_message_free_unpacked(out, NULL);
    /* a method the service lacks, an input of another type */
    assert_int_equal(ftrpc_typed_call(svc, "Nope", &req.base, NULL, arena, &out, NULL),
                     FTRPC_EINVAL);
    assert_int_equal(ftrpc_typed_call(svc, "Count", &req.base, NULL, arena, &out, NULL),
                     FTRPC_EINVAL);
    ftrpc_arena_free(arena);

    /* the method table knows each method's descriptor; a method of bytes has none */
    const ft_method *m = NULL;
    for (size_t i = 0; i < f->s.server->nmethods; i++)
        if (!strcmp(f->s.server->methods[i]->method, "Count")) m = f->s.server->methods[i];
    assert_non_null(m);
    assert_ptr_equal(m->pb_method, &typedtest__echo__descriptor.methods[1]);
    assert_string_equal(m->service, "typedtest.Echo");
    sem_destroy(&o.done);
    fixture_down(f);
}

static void bytes_that_do_not_parse_get_erequest_and_the_server_keeps_serving(void **state)
{
    (void)state;
    fixture *f = fixture_up(3000);
    ProtobufCService *svc = f->svc;
    /* field 1 (text), length-delimited, claims 100 bytes and has 2 */
    static const uint8_t bad[] = {0x0a, 0x64, 'h', 'i'};
    ftrpc_buf *req = ftrpc_buf_new();
    ftrpc_buf_append(req, bad, sizeof bad);
    for (int i = 0; i < 3; i++) {
        ftrpc_result r;
        assert_int_equal(ftrpc_call(f->client, "typedtest.Echo", "Echo", req, NULL, NULL, &r),
                         FTRPC_EREQUEST);
        assert_int_equal(r.kind, FTRPC_RESULT_RPC_ERROR);
        assert_non_null(strstr(r.error_text, "typedtest.EchoRequest"));
        assert_int_equal(r.attempts, 1); /* not retried: the request itself is at fault */
        ftrpc_result_fini(&r);
    }
    ftrpc_buf_free(req);
    assert_int_equal(atomic_load(&f->s.impl.calls), 0); /* the implementation never saw them */
    Typedtest__EchoRequest good = TYPEDTEST__ECHO_REQUEST__INIT;
    good.text = "still here";
    ProtobufCMessage *out = NULL;
    ftrpc_arena *arena = ftrpc_arena_new();
    assert_int_equal(ftrpc_typed_call(svc, "Echo", &good.base, NULL, arena, &out, NULL), 0);
    assert_string_equal(((Typedtest__EchoReply *)out)->text, "still here");
    ftrpc_arena_free(arena);
    fixture_down(f);
}

/* The bytes of an EchoRequest (or EchoReply) with `levels` messages nested in field 7, the
 * innermost empty: what a peer sends to run a recursive unpack out of stack. */
static ftrpc_buf *nested_bytes(int levels)
{
    size_t *inner = calloc((size_t)levels + 1, sizeof *inner); /* inner[k]: level k's content */
    assert_non_null(inner);
    for (int k = 0; k < levels; k++) {
        size_t v = inner[k], vn = 1;
        while (v >= 0x80) {
            v >>= 7;
            vn++;
        }
        inner[k + 1] = 1 + vn + inner[k];
    }
    uint8_t *bytes = malloc(inner[levels] ? inner[levels] : 1), *p = bytes;
    assert_non_null(bytes);
    for (int k = levels - 1; k >= 0; k--) {
        *p++ = 7 << 3 | 2;
        for (size_t v = inner[k];; v >>= 7) {
            *p++ = (uint8_t)(v >= 0x80 ? (v & 0x7f) | 0x80 : v);
            if (v < 0x80) break;
        }
    }
    ftrpc_buf *b = ftrpc_buf_new();
    ftrpc_buf_append(b, bytes, (size_t)(p - bytes));
    free(bytes);
    free(inner);
    return b;
}

static void a_request_nested_past_the_bound_gets_erequest_and_the_server_keeps_serving(void **state)
{
    (void)state;
    /* only a recursive type is walked before its unpack: the greeter's never nests */
    assert_true(
        ft_pb_type_depth_bounded(&helloworld__hello_request__descriptor, FTRPC_TYPED_MAX_DEPTH));
    assert_false(
        ft_pb_type_depth_bounded(&typedtest__echo_request__descriptor, FTRPC_TYPED_MAX_DEPTH));
    fixture *f = fixture_up(10000);
    /* within the bound: unpacked and answered */
    ftrpc_buf *req = nested_bytes(FTRPC_TYPED_MAX_DEPTH - 1);
    ftrpc_result r;
    assert_int_equal(ftrpc_call(f->client, "typedtest.Echo", "Echo", req, NULL, NULL, &r), 0);
    ftrpc_result_fini(&r);
    ftrpc_buf_free(req);
    /* far past it (protobuf-c alone overflows the stack there), and one past it */
    const int deep[] = {200000, FTRPC_TYPED_MAX_DEPTH};
    for (size_t i = 0; i < sizeof deep / sizeof deep[0]; i++) {
        req = nested_bytes(deep[i]);
        assert_int_equal(ftrpc_call(f->client, "typedtest.Echo", "Echo", req, NULL, NULL, &r),
                         FTRPC_EREQUEST);
        assert_non_null(strstr(r.error_text, "nested deeper than"));
        ftrpc_result_fini(&r);
        ftrpc_buf_free(req);
    }
    assert_int_equal(atomic_load(&f->s.impl.calls), 1);
    fixture_down(f);
}

/* A server of bytes under the typed service's name, answering a reply nested 200000 deep. */
static void deep_reply(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    ftrpc_buf *b = nested_bytes(200000);
    ftrpc_server_call_reply(call, b, NULL);
    ftrpc_buf_free(b);
}

static void a_response_nested_past_the_bound_gets_eresponse(void **state)
{
    (void)state;
    ftrpc_server *server = NULL;
    assert_int_equal(ftrpc_server_new(NULL, &server), 0);
    assert_int_equal(
        ftrpc_server_add_method(server, "typedtest.Echo", "Echo", deep_reply, NULL, NULL), 0);
    assert_int_equal(ftrpc_server_start(server, "127.0.0.1:0"), 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ftrpc_server_port(server));
    ftrpc_client *client = NULL;
    ProtobufCService *svc =
        typed_client(addr, &(ftrpc_client_options){.timeout_ms = 10000}, &client);
    Typedtest__EchoRequest req = TYPEDTEST__ECHO_REQUEST__INIT;
    /* blocking: unpacked on the caller's thread */
    ftrpc_arena *arena = ftrpc_arena_new();
    ProtobufCMessage *out = NULL;
    ftrpc_result r;
    assert_int_equal(ftrpc_typed_call(svc, "Echo", &req.base, NULL, arena, &out, &r),
                     FTRPC_ERESPONSE);
    assert_null(out);
    ftrpc_result_fini(&r);
    ftrpc_arena_free(arena);
    /* async: unpacked on the IO thread */
    outcome o;
    outcome_init(&o);
    assert_int_equal(
        ftrpc_typed_call_async(svc, "Echo", &req.base, NULL, (ProtobufCClosure)on_echo, &o, NULL),
        0);
    assert_true(outcome_wait(&o, 10000 * SLOW));
    assert_false(o.got_message);
    assert_int_equal(o.result.code, FTRPC_ERESPONSE);
    sem_destroy(&o.done);
    ftrpc_typed_client_free(svc);
    ftrpc_client_free(client);
    ftrpc_server_free(server);
}

static void an_implementation_answers_later_from_another_thread(void **state)
{
    (void)state;
    fixture *f = fixture_up(5000);
    ProtobufCService *svc = f->svc;
    enum { N = 8 };
    outcome o[N];
    Typedtest__EchoRequest req = TYPEDTEST__ECHO_REQUEST__INIT;
    req.from_thread = 1;
    req.delay_ms = 50;
    uint8_t blob[3000];
    for (size_t i = 0; i < sizeof blob; i++)
        blob[i] = (uint8_t)(i * 7);
    req.blob.data = blob;
    req.blob.len = sizeof blob;
    for (int i = 0; i < N; i++) {
        outcome_init(&o[i]);
        req.text = i % 2 ? "odd" : "even";
        typedtest__echo__echo(svc, &req, on_echo, &o[i]); /* the request is packed at once */
    }
    for (int i = 0; i < N; i++) {
        assert_true(outcome_wait(&o[i], 5000 * H_VG));
        assert_true(o[i].got_message);
        assert_string_equal(o[i].text, i % 2 ? "odd" : "even");
        assert_int_equal(atomic_load(&o[i].runs), 1);
        sem_destroy(&o[i].done);
    }
    assert_int_equal(atomic_load(&f->s.impl.other_thread), N);
    /* a NULL closure sends the implementation's error: a business code stays one */
    outcome failed;
    outcome_init(&failed);
    Typedtest__EchoRequest fail = TYPEDTEST__ECHO_REQUEST__INIT;
    fail.from_thread = 1;
    fail.fail_code = 4242;
    typedtest__echo__echo(svc, &fail, on_echo, &failed);
    assert_true(outcome_wait(&failed, 5000 * H_VG));
    assert_false(failed.got_message);
    assert_int_equal(failed.result.kind, FTRPC_RESULT_BUSINESS_ERROR);
    assert_int_equal(failed.result.code, 4242);
    assert_string_equal(failed.result.error_text, "told to fail");
    sem_destroy(&failed.done);
    fixture_down(f);
}

static void a_taken_reply_outlives_its_closure(void **state)
{
    (void)state;
    fixture *f = fixture_up(3000);
    ProtobufCService *svc = f->svc;
    char *items[64];
    char names[64][16];
    for (int i = 0; i < 64; i++) {
        snprintf(names[i], sizeof names[i], "item-%d", i);
        items[i] = names[i];
    }
    Typedtest__EchoRequest req = TYPEDTEST__ECHO_REQUEST__INIT;
    req.text = "keep me";
    req.n_items = 64;
    req.items = items;
    outcome o;
    outcome_init(&o);
    o.keep = 1;
    typedtest__echo__echo(svc, &req, on_echo, &o);
    assert_true(outcome_wait(&o, 5000 * H_VG));
    assert_non_null(o.kept_arena);
    /* after the closure returned: still there (an ASan build sees a use after free otherwise) */
    assert_string_equal(o.kept->text, "keep me");
    assert_int_equal(o.kept->n_items, 64);
    assert_string_equal(o.kept->items[63], "item-63");
    ftrpc_arena_free(o.kept_arena);
    sem_destroy(&o.done);
    fixture_down(f);
}

/* A closure that starts a call which fails at once runs that call's closure inside its own: the
 * inner one sees its own outcome and no arena; back in the outer one, ftrpc_typed_result and
 * ftrpc_typed_take_arena are the outer call's again. */
typedef struct nested_closures {
    ProtobufCService *svc;
    outcome inner;
    int outer_code_after, outer_kind_after, inner_took;
    ftrpc_arena *outer_arena;
    Typedtest__EchoReply *outer_reply;
    sem_t done;
} nested_closures;

static void on_inner(const Typedtest__EchoReply *reply, void *closure_data)
{
    nested_closures *n = closure_data;
    n->inner_took = ftrpc_typed_take_arena() != NULL; /* it got NULL: no arena to take */
    on_echo(reply, &n->inner);
}

static void on_outer(const Typedtest__EchoReply *reply, void *closure_data)
{
    nested_closures *n = closure_data;
    Typedtest__EchoRequest req = TYPEDTEST__ECHO_REQUEST__INIT;
    /* method 1 with an EchoRequest: the wrong input type, refused at once */
    n->svc->invoke(n->svc, 1, &req.base, (ProtobufCClosure)on_inner, n);
    const ftrpc_result *r = ftrpc_typed_result();
    n->outer_kind_after = r ? (int)r->kind : -1;
    n->outer_code_after = r ? r->code : -1;
    n->outer_arena = ftrpc_typed_take_arena();
    n->outer_reply = (Typedtest__EchoReply *)reply;
    sem_post(&n->done);
}

static void a_closure_inside_a_closure_leaves_the_outer_result_and_arena(void **state)
{
    (void)state;
    fixture *f = fixture_up(3000);
    nested_closures n;
    memset(&n, 0, sizeof n);
    n.svc = f->svc;
    outcome_init(&n.inner);
    sem_init(&n.done, 0, 0);
    Typedtest__EchoRequest req = TYPEDTEST__ECHO_REQUEST__INIT;
    req.text = "outer";
    typedtest__echo__echo(f->svc, &req, on_outer, &n);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 5 * H_VG;
    assert_int_equal(sem_timedwait(&n.done, &ts), 0);
    assert_int_equal(atomic_load(&n.inner.runs), 1);
    assert_false(n.inner.got_message);
    assert_int_equal(n.inner.result.code, FTRPC_EINVAL);
    assert_false(n.inner_took);
    assert_int_equal(n.outer_kind_after, FTRPC_RESULT_OK);
    assert_int_equal(n.outer_code_after, 0);
    assert_non_null(n.outer_arena);
    assert_non_null(n.outer_reply);
    assert_string_equal(n.outer_reply->text, "outer"); /* kept: the arena was the outer call's */
    ftrpc_arena_free(n.outer_arena);
    sem_destroy(&n.inner.done);
    sem_destroy(&n.done);
    fixture_down(f);
}

/* a call that cannot start runs its closure at once, with NULL and the reason */
static void a_stub_call_that_cannot_start_gets_null_at_once(void **state)
{
    (void)state;
    fixture *f = fixture_up(0);
    ProtobufCService *svc = f->svc;
    Typedtest__EchoRequest req = TYPEDTEST__ECHO_REQUEST__INIT;
    outcome o;
    outcome_init(&o);
    /* the stub of another method with this request: the wrong input type */
    svc->invoke(svc, 1, &req.base, (ProtobufCClosure)on_echo, &o);
    assert_int_equal(atomic_load(&o.runs), 1);
    assert_false(o.got_message);
    assert_int_equal(o.result.code, FTRPC_EINVAL);
    sem_destroy(&o.done);
    assert_null(ftrpc_typed_result()); /* outside a closure */
    fixture_down(f);
}

/* the handle of ftrpc_typed_call_async cancels the call: its closure gets NULL and ECANCELED, and
 * the implementation sees the cancel through its call */
static void a_typed_call_is_cancelled_through_its_handle(void **state)
{
    (void)state;
    fixture *f = fixture_up(10000 * SLOW);
    atomic_store(&f->s.impl.delay_ms, 500 * SLOW);
    Typedtest__EchoRequest req = TYPEDTEST__ECHO_REQUEST__INIT;
    req.text = "never answered";
    outcome o;
    outcome_init(&o);
    ftrpc_call_id id = 0;
    assert_int_equal(
        ftrpc_typed_call_async(f->svc, "Echo", &req.base, NULL, (ProtobufCClosure)on_echo, &o, &id),
        0);
    assert_true(h_wait_atomic_ge(&f->s.impl.calls, 1, 5000 * H_VG)); /* it is running */
    assert_int_equal(ftrpc_call_cancel(f->client, id), 0);
    assert_true(outcome_wait(&o, 5000 * H_VG));
    assert_false(o.got_message);
    assert_int_equal(o.result.code, FTRPC_ECANCELED);
    assert_int_equal(atomic_load(&o.runs), 1);
    assert_true(h_wait_atomic_ge(&f->s.impl.saw_cancel, 1, 5000 * SLOW * H_VG));
    sem_destroy(&o.done);
    fixture_down(f);
}

/* ---- fault tolerance through the generated stubs ---- */

struct greet_outcome {
    sem_t done;
    int ok;
    char message[64];
    int attempts;
    char endpoint[64];
};

static void on_greet(const Helloworld__HelloReply *reply, void *closure_data)
{
    struct greet_outcome *g = closure_data;
    const ftrpc_result *r = ftrpc_typed_result();
    g->ok = reply != NULL;
    if (reply) snprintf(g->message, sizeof g->message, "%s", reply->message);
    g->attempts = r->attempts;
    snprintf(g->endpoint, sizeof g->endpoint, "%s", r->endpoint);
    sem_post(&g->done);
}

static void stub_calls_fail_over_past_a_killed_greeter_process(void **state)
{
    (void)state;
    char path[1024];
    const char *build = getenv("FTRPC_BUILD_DIR");
    snprintf(path, sizeof path, "%s/example_greeter_server", build ? build : ".");
    h_server a, b;
    assert_int_equal(h_program_start(&a, path, NULL), 0);
    assert_int_equal(h_program_start(&b, path, NULL), 0);
    char url[256], b_addr[64];
    h_server_url(&b, b_addr, sizeof b_addr);
    snprintf(url, sizeof url, "list://127.0.0.1:%d,127.0.0.1:%d", a.port, b.port);
    ftrpc_client *client;
    assert_int_equal(
        ftrpc_client_new(
            url,
            &(ftrpc_client_options){.timeout_ms = 3000, .fail_mode = FTRPC_FAILOVER, .lb = "rr"},
            &client),
        0);
    ProtobufCService *greeter;
    assert_int_equal(
        ftrpc_typed_client_new(client, &helloworld__greeter__descriptor, NULL, &greeter), 0);
    Helloworld__HelloRequest req = HELLOWORLD__HELLO_REQUEST__INIT;
    req.name = "failover";
    /* both answer, then a is killed (SIGKILL: no goodbye) */
    for (int i = 0; i < 4; i++) {
        struct greet_outcome g = {.ok = 0};
        sem_init(&g.done, 0, 0);
        helloworld__greeter__say_hello(greeter, &req, on_greet, &g);
        sem_wait(&g.done);
        assert_true(g.ok);
        sem_destroy(&g.done);
    }
    h_server_kill(&a);
    int total_attempts = 0;
    enum { N = 10 };
    for (int i = 0; i < N; i++) {
        struct greet_outcome g = {.ok = 0};
        sem_init(&g.done, 0, 0);
        helloworld__greeter__say_hello(greeter, &req, on_greet, &g);
        sem_wait(&g.done);
        sem_destroy(&g.done);
        assert_true(g.ok);
        assert_string_equal(g.message, "Hello, failover");
        assert_string_equal(g.endpoint, b_addr);
        total_attempts += g.attempts;
    }
    /* at least one call was sent to the dead server first, and went on to b */
    assert_true(total_attempts > N);
    ftrpc_typed_client_free(greeter);
    ftrpc_client_free(client);
    assert_int_equal(h_server_stop(&b, 5000 * H_VG), 0);
}

static void a_backup_request_wins_through_the_stubs(void **state)
{
    (void)state;
    srv slow, fast;
    srv_start(&slow, "slow", NULL);
    srv_start(&fast, "fast", NULL);
    /* far longer than the backup delay, whatever the machine's load */
    atomic_store(&slow.impl.delay_ms, 1000 * SLOW);
    char url[160];
    snprintf(url, sizeof url, "list://%s,%s", slow.addr, fast.addr);
    ftrpc_client *client;
    ProtobufCService *svc = typed_client(url,
                                         &(ftrpc_client_options){.timeout_ms = 5000 * SLOW,
                                                                 .fail_mode = FTRPC_FAILBACKUP,
                                                                 .backup_request_ms = 30,
                                                                 .lb = "rr"},
                                         &client);
    Typedtest__EchoRequest req = TYPEDTEST__ECHO_REQUEST__INIT;
    req.text = "race";
    int wins = 0;
    for (int i = 0; i < 4; i++) {
        outcome o;
        outcome_init(&o);
        typedtest__echo__echo(svc, &req, on_echo, &o);
        assert_true(outcome_wait(&o, 10000 * H_VG));
        assert_true(o.got_message);
        assert_string_equal(o.server, "fast");
        assert_string_equal(o.result.endpoint, fast.addr);
        if (o.result.backup_won) {
            assert_int_equal(o.result.backups, 1);
            assert_true(o.result.latency_us < 1000000 * SLOW);
            wins++;
        }
        sem_destroy(&o.done);
    }
    assert_true(wins >= 1); /* "rr" sends a fresh client's first call to the slow server */
    /* per-call options through the typed call: no backup, failfast, a short deadline. Of two calls
     * in a row "rr" sends one to each server: the slow one's times out, with no backup */
    int timed_out = 0;
    for (int i = 0; i < 2; i++) {
        outcome o;
        outcome_init(&o);
        ftrpc_call_id id = 0;
        assert_int_equal(ftrpc_typed_call_async(svc, "Echo", &req.base,
                                                &(ftrpc_call_options){.timeout_ms = 200 * SLOW,
                                                                      .backup_request_ms = -1,
                                                                      .fail_mode = FTRPC_FAILFAST},
                                                (ProtobufCClosure)on_echo, &o, &id),
                         0);
        assert_true(id != 0);
        assert_true(outcome_wait(&o, 10000 * H_VG));
        assert_int_equal(o.result.backups, 0);
        if (!o.got_message) {
            assert_int_equal(o.result.code, FTRPC_ERPCTIMEDOUT);
            timed_out++;
        }
        sem_destroy(&o.done);
    }
    assert_int_equal(timed_out, 1);
    ftrpc_typed_client_free(svc);
    ftrpc_client_free(client);
    ftrpc_server_free(slow.server);
    ftrpc_server_free(fast.server);
}

/* ---- listing ---- */

static void bytes_echo(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    ftrpc_server_call_reply(call, ftrpc_server_call_request(call), NULL);
}

static void the_protobufs_page_and_ftrpc_list_name_services_methods_and_types(void **state)
{
    (void)state;
    srv s;
    memset(&s, 0, sizeof s);
    s.impl.service = (Typedtest__Echo_Service)TYPEDTEST__ECHO__INIT(echo_);
    s.impl.name = "A";
    assert_int_equal(ftrpc_server_new(&(ftrpc_server_options){.auth_token = "sesame"}, &s.server),
                     0);
    assert_int_equal(ftrpc_server_add_service(s.server, &s.impl.service.base, NULL), 0);
    assert_int_equal(ftrpc_server_add_service(s.server, &s.impl.service.base, NULL), FTRPC_EEXIST);
    assert_int_equal(
        ftrpc_server_add_method(s.server, "example.EchoService", "Echo", bytes_echo, NULL, NULL),
        0);
    assert_int_equal(ftrpc_server_start(s.server, "127.0.0.1:0"), 0);
    int port = ftrpc_server_port(s.server);
    char addr[64], args[256];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);

    static const char *const want[] = {
        "typedtest.Echo\n", "  Echo(typedtest.EchoRequest) returns (typedtest.EchoReply)",
        "  Count(typedtest.CountRequest) returns (typedtest.CountReply)", "example.EchoService\n",
        "  Echo(bytes) returns (bytes)"};
    /* the page follows the builtin pages' rule: with a credential configured, it wants it */
    char *out = NULL;
    snprintf(args, sizeof args, "http://%s/protobufs", addr);
    h_curl(args, &out);
    assert_null(strstr(out, "typedtest"));
    free(out);
    snprintf(args, sizeof args, "-H 'Authorization: Bearer sesame' http://%s/protobufs", addr);
    assert_int_equal(h_curl(args, &out), 0);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_non_null(strstr(out, want[i]));
    free(out);
    snprintf(args, sizeof args,
             "-H 'Authorization: Bearer sesame' 'http://%s/protobufs?format=json'", addr);
    assert_int_equal(h_curl(args, &out), 0);
    assert_non_null(strstr(out,
                           "{\"services\":[{\"name\":\"typedtest.Echo\",\"methods\":[{\"name\":"
                           "\"Echo\",\"input\":\"typedtest.EchoRequest\",\"output\":"
                           "\"typedtest.EchoReply\"}"));
    free(out);

    /* ftrpc list: the same, over baidu_std with the client's flags */
    char *err = NULL;
    const char *const list[] = {"list", addr, "--auth-token", "sesame", NULL};
    assert_int_equal(h_cli_run(list, 10000 * H_VG, &out, &err), 0);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_non_null(strstr(out, want[i]));
    free(out);
    free(err);
    const char *const refused[] = {"list", addr, NULL};
    assert_int_equal(h_cli_run(refused, 10000 * H_VG, &out, &err), 1);
    assert_null(strstr(out, "typedtest"));
    free(out);
    free(err);
    ftrpc_server_free(s.server);
}

/* A typed service answers plain HTTP clients too: curl with JSON gets JSON back (brpc's json2pb
 * over HTTP), an unknown field a 400 naming it, and a client sending application/proto (brpc's
 * HTTP client) gets application/proto back. */
static void curl_with_json_and_with_application_proto_get_answers_from_a_typed_service(void **state)
{
    (void)state;
    fixture *f = fixture_up(2000);
    char args[512];
    char *out = NULL;
    snprintf(args, sizeof args,
             "-i -X POST -H 'Content-Type: application/json' -d '{\"text\":\"hi\",\"items\":"
             "[\"a\",\"b\"]}' http://%s/typedtest.Echo/Echo",
             f->s.addr);
    assert_int_equal(h_curl(args, &out), 0);
    assert_non_null(strstr(out, "200 OK"));
    assert_non_null(strstr(out, "Content-Type: application/json"));
    assert_non_null(strstr(out, "\"text\":\"hi\""));
    assert_non_null(strstr(out, "\"items\":[\"a\",\"b\"]"));
    assert_non_null(strstr(out, "\"server\":\"A\""));
    free(out);
    snprintf(args, sizeof args,
             "-i -X POST -H 'Content-Type: application/json' -d '{\"txt\":\"hi\"}' "
             "http://%s/typedtest.Echo/Echo",
             f->s.addr);
    assert_int_equal(h_curl(args, &out), 0);
    assert_non_null(strstr(out, "400 Bad Request"));
    assert_non_null(strstr(out, "unknown field \"txt\""));
    free(out);
    /* EchoRequest{text: "hi"} is 0a 02 68 69; the reply carries text (0a 02 68 69) first */
    char body[] = "/tmp/test_typed_proto.XXXXXX";
    int fd = mkstemp(body);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "\x0a\x02hi", 4), 4);
    close(fd);
    snprintf(args, sizeof args,
             "-i -X POST -H 'Content-Type: application/proto' --data-binary @%s "
             "http://%s/typedtest.Echo/Echo",
             body, f->s.addr);
    assert_int_equal(h_curl(args, &out), 0);
    assert_non_null(strstr(out, "200 OK"));
    assert_non_null(strstr(out, "Content-Type: application/proto"));
    assert_non_null(strstr(out, "\n\x02hi"));
    free(out);
    unlink(body);
    fixture_down(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_stub_call_reaches_the_implementation_and_its_reply_the_closure),
        cmocka_unit_test(bytes_that_do_not_parse_get_erequest_and_the_server_keeps_serving),
        cmocka_unit_test(
            a_request_nested_past_the_bound_gets_erequest_and_the_server_keeps_serving),
        cmocka_unit_test(a_response_nested_past_the_bound_gets_eresponse),
        cmocka_unit_test(a_closure_inside_a_closure_leaves_the_outer_result_and_arena),
        cmocka_unit_test(an_implementation_answers_later_from_another_thread),
        cmocka_unit_test(a_taken_reply_outlives_its_closure),
        cmocka_unit_test(a_stub_call_that_cannot_start_gets_null_at_once),
        cmocka_unit_test(a_typed_call_is_cancelled_through_its_handle),
        cmocka_unit_test(stub_calls_fail_over_past_a_killed_greeter_process),
        cmocka_unit_test(a_backup_request_wins_through_the_stubs),
        cmocka_unit_test(the_protobufs_page_and_ftrpc_list_name_services_methods_and_types),
        cmocka_unit_test(
            curl_with_json_and_with_application_proto_get_answers_from_a_typed_service),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
