/* The ABI rules of ftrpc/common.h ("Versions"): a program built against an older header passes
 * smaller option structs and gets the defaults for the fields it lacks, whatever lies in memory
 * after its struct; a program built against a newer header is accepted when it left the fields
 * this library does not know at zero; structs the library fills are written no further than the
 * caller's size. This file: the server's structs (test_abi.c: the rest). An "older header" is
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
#include "server/server_internal.h"

#define GARBAGE 0xA5

/* Server options as a header without public_builtin_pages and max_pending_request_bytes (the
 * fields appended last) declared them: those two take their defaults. */
static void older_server_options_get_the_defaults_of_newer_fields(void **state)
{
    (void)state;
    unsigned char buf[sizeof(ftrpc_server_options) + 64];
    memset(buf, GARBAGE, sizeof buf);
    size_t old_size = offsetof(ftrpc_server_options, public_builtin_pages);
    ftrpc_server_options old = {.max_connections = 77, .idle_timeout_ms = 1234};
    memcpy(buf, &old, old_size);
    ftrpc_server *s = NULL;
    assert_int_equal(ftrpc_server_new_sized((const ftrpc_server_options *)buf, old_size, &s), 0);
    assert_int_equal(s->opts.max_connections, 77);
    assert_int_equal(s->opts.idle_timeout_ms, 1234);
    assert_int_equal(s->opts.public_builtin_pages, 0);
    assert_int_equal(s->opts.max_pending_request_bytes, (size_t)256 << 20);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(older_server_options_get_the_defaults_of_newer_fields),
        cmocka_unit_test(stats_are_written_no_further_than_the_callers_struct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
