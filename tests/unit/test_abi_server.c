/* The ABI rules of ftrpc/common.h ("Versions"): a program built against an older header passes
 * smaller option structs and gets the defaults for the fields it lacks, whatever lies in memory
 * after its struct; a program built against a newer header is accepted when it left the fields
 * this library does not know at zero; structs the library fills are written no further than the
 * caller's size. This file: the server's structs and the typed API's (ftrpc/typed.h; test_abi.c:
 * the rest). An "older header" is
 * simulated by passing the size the struct had before its last fields were appended, with garbage
 * after it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "ftrpc/ftrpc.h"
#include "ftrpc/typed.h"
#include "rpc_meta.pb-c.h" /* message descriptors for a hand-made service */
#include "server/server_internal.h"

#define GARBAGE 0xA5

/* A server made from the first old_size bytes of *old, with garbage after them in memory: what a
 * program built against an older header passes. */
static ftrpc_server *server_from_older_header(const ftrpc_server_options *old, size_t old_size)
{
    unsigned char buf[sizeof(ftrpc_server_options) + 64];
    memset(buf, GARBAGE, sizeof buf);
    memcpy(buf, old, old_size);
    ftrpc_server *s = NULL;
    assert_int_equal(ftrpc_server_new_sized((const ftrpc_server_options *)buf, old_size, &s), 0);
    return s;
}

/* Server options as a header without public_builtin_pages and max_pending_request_bytes (the
 * fields appended last) declared them: those two take their defaults. */
static void older_server_options_get_the_defaults_of_newer_fields(void **state)
{
    (void)state;
    ftrpc_server_options old = {.max_connections = 77, .idle_timeout_ms = 1234};
    ftrpc_server *s =
        server_from_older_header(&old, offsetof(ftrpc_server_options, public_builtin_pages));
    assert_int_equal(s->opts.max_connections, 77);
    assert_int_equal(s->opts.idle_timeout_ms, 1234);
    assert_int_equal(s->opts.public_builtin_pages, 0);
    assert_int_equal(s->opts.max_pending_request_bytes, (size_t)256 << 20);
    ftrpc_server_free(s);
}

/* Server options as a header without max_concurrency (appended last, issue 24) declared them: the
 * garbage past the old end is not read, and the server has no server-wide limit. */
static void older_server_options_have_no_server_wide_limit(void **state)
{
    (void)state;
    unsigned char buf[sizeof(ftrpc_server_options) + 64];
    memset(buf, GARBAGE, sizeof buf);
    size_t old_size = offsetof(ftrpc_server_options, max_concurrency);
    ftrpc_server_options old = {.register_id = NULL, .max_connections = 5};
    memcpy(buf, &old, old_size);
    ftrpc_server *s = NULL;
    assert_int_equal(ftrpc_server_new_sized((const ftrpc_server_options *)buf, old_size, &s), 0);
    int value = -5, effective = -5;
    assert_int_equal(ftrpc_server_get_max_concurrency(s, NULL, NULL, &value, &effective), 0);
    assert_int_equal(value, 0);
    assert_int_equal(effective, 0);
    ftrpc_server_free(s);
}

/* Server options from a header before `grpc`: gRPC on, with its default limits. */
static void server_options_before_grpc_get_its_defaults(void **state)
{
    (void)state;
    ftrpc_server_options old = {.max_inflight_per_connection = 50};
    ftrpc_server *s = server_from_older_header(&old, offsetof(ftrpc_server_options, grpc));
    assert_int_equal(s->opts.grpc.enabled, 0);
    assert_int_equal(s->opts.grpc.max_concurrent_streams, 100);
    assert_int_equal(s->opts.grpc.max_header_list_size, 16384);
    assert_int_equal(s->opts.grpc.initial_window_size, 1u << 20);
    assert_int_equal(s->opts.grpc.rst_stream_burst, 1000);
    assert_int_equal(s->opts.grpc.rst_stream_per_second, 33);
    ftrpc_server_free(s);
    ftrpc_server_options bad = {.grpc = {.enabled = 2}};
    assert_int_equal(ftrpc_server_new(&bad, &s), FTRPC_EINVAL);
}

/* Server options from a header before the dead-connection settings (issue 25): keepalive on with
 * the client's defaults, no user timeout, whatever lies past the old end. */
static void server_options_before_keepalive_get_its_defaults(void **state)
{
    (void)state;
    ftrpc_server_options old = {.max_connections = 9};
    ftrpc_server *s =
        server_from_older_header(&old, offsetof(ftrpc_server_options, tcp_keepalive_idle_s));
    assert_int_equal(s->opts.max_connections, 9);
    assert_int_equal(s->opts.tcp_keepalive_idle_s, 10);
    assert_int_equal(s->opts.tcp_keepalive_interval_s, 2);
    assert_int_equal(s->opts.tcp_keepalive_count, 3);
    assert_int_equal(s->opts.tcp_user_timeout_ms, 0);
    ftrpc_server_free(s);
}

/* Stats written into an older, smaller struct stop at its end. */
static void stats_are_written_no_further_than_the_callers_struct(void **state)
{
    (void)state;
    ftrpc_server *s = NULL;
    assert_int_equal(ftrpc_server_new(NULL, &s), 0);
    unsigned char buf[sizeof(ftrpc_server_stats) + 16];
    memset(buf, GARBAGE, sizeof buf);
    size_t old_size = offsetof(ftrpc_server_stats, pending_refused);
    ftrpc_server_stats_get_sized(s, (ftrpc_server_stats *)buf, old_size);
    ftrpc_server_stats st;
    memcpy(&st, buf, old_size);
    assert_int_equal(st.connections, 0);
    assert_int_equal(st.auth_failures, 0);
    for (size_t i = old_size; i < sizeof buf; i++)
        assert_int_equal(buf[i], GARBAGE);
    ftrpc_server_free(s);
}

/* A service descriptor as protoc-c lays one out, two methods on the wire meta's messages. */
static const ProtobufCMethodDescriptor TWO_METHODS[] = {
    {"Ask", &brpc__policy__rpc_request_meta__descriptor,
     &brpc__policy__rpc_response_meta__descriptor},
    {"Bid", &brpc__policy__rpc_response_meta__descriptor,
     &brpc__policy__rpc_request_meta__descriptor},
};
static const unsigned TWO_BY_NAME[] = {0, 1};
static const ProtobufCServiceDescriptor TWO = {PROTOBUF_C__SERVICE_DESCRIPTOR_MAGIC,
                                               "abi.Two",
                                               "Two",
                                               "Abi__Two",
                                               "abi",
                                               2,
                                               TWO_METHODS,
                                               TWO_BY_NAME};

static void never_invoked(ProtobufCService *service, unsigned index, const ProtobufCMessage *in,
                          ProtobufCClosure closure, void *data)
{
    (void)service, (void)index, (void)in;
    closure(NULL, data);
}

/* Method options of an older header (before max_concurrency), garbage after them, for a typed
 * service: every method gets the default limit; the method table keeps each method's
 * descriptor. */
static void older_method_options_of_a_typed_service_get_the_defaults(void **state)
{
    (void)state;
    ProtobufCService impl = {&TWO, never_invoked, NULL};
    unsigned char buf[sizeof(ftrpc_method_options) + 32];
    memset(buf, GARBAGE, sizeof buf);
    ftrpc_method_options old = {.run_mode = FTRPC_RUN_IN_WORKER};
    size_t old_size = offsetof(ftrpc_method_options, max_concurrency);
    memcpy(buf, &old, old_size);
    ftrpc_server *s = NULL;
    assert_int_equal(ftrpc_server_new(NULL, &s), 0);
    assert_int_equal(
        ftrpc_server_add_service_sized(s, &impl, (const ftrpc_method_options *)buf, old_size), 0);
    assert_int_equal(s->nmethods, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(s->methods[i]->service, "abi.Two");
        assert_string_equal(s->methods[i]->method, TWO_METHODS[i].name);
        assert_ptr_equal(s->methods[i]->pb_method, &TWO_METHODS[i]);
        assert_int_equal(s->methods[i]->opts.run_mode, FTRPC_RUN_IN_WORKER);
        assert_int_equal(s->methods[i]->opts.max_concurrency, 0);
    }
    ftrpc_server_free(s);
}

static void bytes_handler(ftrpc_server_call *call, void *arg)
{
    (void)arg;
    ftrpc_server_call_fail(call, FTRPC_EINTERNAL, NULL);
}

/* Options of a newer header with an unknown field set refuse the service, and no method of it is
 * registered; a method of bytes has no descriptor. */
static void newer_method_options_of_a_typed_service_are_refused(void **state)
{
    (void)state;
    ProtobufCService impl = {&TWO, never_invoked, NULL};
    unsigned char buf[sizeof(ftrpc_method_options) + 8];
    memset(buf, 0, sizeof buf);
    buf[sizeof(ftrpc_method_options) + 2] = 1;
    ftrpc_server *s = NULL;
    assert_int_equal(ftrpc_server_new(NULL, &s), 0);
    assert_int_equal(
        ftrpc_server_add_service_sized(s, &impl, (const ftrpc_method_options *)buf, sizeof buf),
        FTRPC_EINVAL);
    assert_int_equal(s->nmethods, 0);
    ProtobufCService not_a_service = {NULL, never_invoked, NULL};
    assert_int_equal(ftrpc_server_add_service(s, &not_a_service, NULL), FTRPC_EINVAL);
    assert_int_equal(ftrpc_server_add_method(s, "abi.Bytes", "Echo", bytes_handler, NULL, NULL), 0);
    assert_null(s->methods[0]->pb_method);
    ftrpc_server_free(s);
}

/* A typed client's call options from a newer header with an unknown field set are refused; from an
 * older one (before `fallback`), garbage after them, they are accepted. The blocking typed
 * call writes its result no further than the caller's struct, also when it fails at once. */
static void typed_client_options_and_results_travel_with_their_size(void **state)
{
    (void)state;
    ftrpc_client *client = NULL;
    assert_int_equal(
        ftrpc_client_new("127.0.0.1:1", &(ftrpc_client_options){.naming_wait_ms = 1}, &client), 0);
    unsigned char buf[sizeof(ftrpc_call_options) + 16];
    memset(buf, 0, sizeof buf);
    buf[sizeof(ftrpc_call_options) + 1] = 1;
    ProtobufCService *svc = NULL;
    assert_int_equal(ftrpc_typed_client_new_sized(client, &TWO, (const ftrpc_call_options *)buf,
                                                  sizeof buf, &svc),
                     FTRPC_EINVAL);
    assert_null(svc);
    memset(buf, GARBAGE, sizeof buf);
    ftrpc_call_options old = {.timeout_ms = 250};
    size_t old_size = offsetof(ftrpc_call_options, fallback);
    memcpy(buf, &old, old_size);
    assert_int_equal(
        ftrpc_typed_client_new_sized(client, &TWO, (const ftrpc_call_options *)buf, old_size, &svc),
        0);
    unsigned char res[sizeof(ftrpc_result) + 16];
    memset(res, GARBAGE, sizeof res);
    size_t res_size = offsetof(ftrpc_result, cluster);
    ProtobufCMessage *out = NULL;
    Brpc__Policy__RpcRequestMeta req = BRPC__POLICY__RPC_REQUEST_META__INIT;
    /* "Bid" takes the response meta: an input of another type, refused before any IO */
    assert_int_equal(ftrpc_typed_call_sized(svc, "Bid", &req.base, NULL, 0, NULL, &out,
                                            (ftrpc_result *)res, res_size),
                     FTRPC_EINVAL);
    assert_null(out);
    ftrpc_result r;
    memcpy(&r, res, res_size);
    assert_int_equal(r.code, FTRPC_EINVAL);
    for (size_t i = res_size; i < sizeof res; i++)
        assert_int_equal(res[i], GARBAGE);
    ftrpc_typed_client_free(svc);
    ftrpc_client_free(client);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(typed_client_options_and_results_travel_with_their_size),
        cmocka_unit_test(older_method_options_of_a_typed_service_get_the_defaults),
        cmocka_unit_test(newer_method_options_of_a_typed_service_are_refused),
        cmocka_unit_test(older_server_options_get_the_defaults_of_newer_fields),
        cmocka_unit_test(older_server_options_have_no_server_wide_limit),
        cmocka_unit_test(server_options_before_grpc_get_its_defaults),
        cmocka_unit_test(server_options_before_keepalive_get_its_defaults),
        cmocka_unit_test(stats_are_written_no_further_than_the_callers_struct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
