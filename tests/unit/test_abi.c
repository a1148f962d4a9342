/* The ABI rules of ftrpc/common.h ("Versions"): a program built against an older header passes
 * smaller option structs and gets the defaults for the fields it lacks, whatever lies in memory
 * after its struct; a program built against a newer header is accepted when it left the fields
 * this library does not know at zero; structs the library fills are written no further than the
 * caller's size (test_abi_server.c: the server's structs). An "older header" is simulated by
 * passing the size the struct had before its last fields were appended, with garbage after it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "client/client_internal.h"
#include "ftrpc/ftrpc.h"

#define GARBAGE 0xA5

static void the_library_reports_the_headers_version(void **state)
{
    (void)state;
    assert_int_equal(ftrpc_version(), FTRPC_VERSION_HEX);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", FTRPC_VERSION_MAJOR, FTRPC_VERSION_MINOR,
             FTRPC_VERSION_PATCH);
    assert_string_equal(ftrpc_version_string(), want);
}

/* A client made from the first old_size bytes of *old, with garbage after them in memory: what a
 * program built against an older header passes. */
static ftrpc_client *client_from_older_header(const ftrpc_client_options *old, size_t old_size)
{
    unsigned char buf[sizeof(ftrpc_client_options) + 64];
    memset(buf, GARBAGE, sizeof buf);
    memcpy(buf, old, old_size);
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new_sized("list://127.0.0.1:1", (const ftrpc_client_options *)buf,
                                            old_size, &c),
                     0);
    return c;
}

/* Client options from a header that ended before `tls`: no TLS, whatever follows in memory. */
static void older_client_options_get_the_defaults_of_newer_fields(void **state)
{
    (void)state;
    ftrpc_client_options old = {.timeout_ms = 4321, .retries = FTRPC_NO_RETRY};
    ftrpc_client *c = client_from_older_header(&old, offsetof(ftrpc_client_options, tls));
    assert_int_equal(c->opts.timeout_ms, 4321);
    assert_int_equal(c->opts.retries, FTRPC_NO_RETRY);
    assert_int_equal(c->opts.tls.enable, 0);
    assert_int_equal(c->opts.naming_max_stale_ms, 0); /* no stale bound, whatever the garbage */
    assert_null(c->tls_ctx);
    ftrpc_client_free(c);
}

/* Client options from a header that ended with `tls`, before backup_budget and
 * backup_counts_as_retry: their defaults, whatever follows in memory (0xA5 bytes would be refused
 * as a budget kind or a flag if they were read). */
static void client_options_before_the_backup_budget_get_its_defaults(void **state)
{
    (void)state;
    unsigned char buf[sizeof(ftrpc_client_options) + 64];
    memset(buf, GARBAGE, sizeof buf);
    size_t old_size = offsetof(ftrpc_client_options, backup_budget);
    ftrpc_client_options old = {.backup_request_ms = 2};
    memcpy(buf, &old, old_size);
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new_sized("list://127.0.0.1:1", (const ftrpc_client_options *)buf,
                                            old_size, &c),
                     0);
    assert_int_equal(c->opts.backup_budget, FTRPC_BACKUP_BUDGET_DEFAULT);
    assert_int_equal(c->opts.backup_counts_as_retry, 0);
    assert_int_equal(c->opts.fail_mode, FTRPC_FAILBACKUP); /* the delay turned backups on */
    ftrpc_client_free(c);
}

/* Client options from a header before `protocol` (gRPC): baidu_std, whatever follows in memory
 * (0xA5 bytes would be refused as a protocol). */
static void client_options_before_the_protocol_speak_baidu_std(void **state)
{
    (void)state;
    ftrpc_client_options old = {.retries = 2};
    ftrpc_client *c = client_from_older_header(&old, offsetof(ftrpc_client_options, protocol));
    assert_int_equal(c->opts.protocol, FTRPC_PROTOCOL_BAIDU_STD);
    assert_int_equal(c->opts.retries, 2);
    ftrpc_client_free(c);
    ftrpc_client_options bad = {.protocol = (ftrpc_protocol)7};
    assert_int_equal(ftrpc_client_new("list://127.0.0.1:1", &bad, &c), FTRPC_EINVAL);
}

/* Call options from a header that ended with `fallback`, before backup_policy: no per-call policy,
 * whatever follows in memory (a garbage pointer there would be called). The call goes to a port
 * nobody listens on and fails at once; a result from a header before backups_refused is written
 * no further than its size. */
static void call_options_before_the_backup_policy_get_none(void **state)
{
    (void)state;
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new("list://127.0.0.1:1", NULL, &c), 0);
    unsigned char buf[sizeof(ftrpc_call_options) + 64];
    memset(buf, GARBAGE, sizeof buf);
    size_t old_size = offsetof(ftrpc_call_options, backup_policy);
    ftrpc_call_options old = {.backup_request_ms = 1, .timeout_ms = 500};
    memcpy(buf, &old, old_size);
    unsigned char res[sizeof(ftrpc_result) + 16];
    memset(res, GARBAGE, sizeof res);
    size_t res_size = offsetof(ftrpc_result, backups_refused);
    int rc = ftrpc_call_sized(c, "svc.S", "M", NULL, NULL, (const ftrpc_call_options *)buf,
                              old_size, (ftrpc_result *)res, res_size);
    assert_true(rc < 0);
    for (size_t i = res_size; i < sizeof res; i++)
        assert_int_equal(res[i], GARBAGE);
    ftrpc_result_fini((ftrpc_result *)res);
    ftrpc_client_free(c);
}

/* Client options from a header that ended with backup_counts_as_retry, before the overload
 * fields: their defaults (throttling at k = 2, deadline propagation and chain-stop on), whatever
 * follows in memory (0xA5 bytes would be refused as a k or a switch if they were read). */
static void client_options_before_the_overload_fields_get_their_defaults(void **state)
{
    (void)state;
    unsigned char buf[sizeof(ftrpc_client_options) + 64];
    memset(buf, GARBAGE, sizeof buf);
    size_t old_size = offsetof(ftrpc_client_options, throttle_k);
    ftrpc_client_options old = {.timeout_ms = 1234};
    memcpy(buf, &old, old_size);
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new_sized("list://127.0.0.1:1", (const ftrpc_client_options *)buf,
                                            old_size, &c),
                     0);
    assert_true(c->throttle.k == 2 && !c->throttle.off);
    assert_int_equal(c->opts.deadline_propagation, 0);
    assert_int_equal(c->opts.deadline_margin_ms, 0);
    assert_int_equal(c->opts.retry_chain_stop, 0);
    ftrpc_client_free(c);
}

/* Call options from a header that ended with backup_policy, before parent: no parent, whatever
 * follows in memory (a garbage pointer there would be read as a served call). */
static void call_options_before_the_parent_get_none(void **state)
{
    (void)state;
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new("list://127.0.0.1:1", NULL, &c), 0);
    unsigned char buf[sizeof(ftrpc_call_options) + 64];
    memset(buf, GARBAGE, sizeof buf);
    size_t old_size = offsetof(ftrpc_call_options, parent);
    ftrpc_call_options old = {.timeout_ms = 500};
    memcpy(buf, &old, old_size);
    ftrpc_result r;
    int rc = ftrpc_call_sized(c, "svc.S", "M", NULL, NULL, (const ftrpc_call_options *)buf,
                              old_size, &r, sizeof r);
    assert_true(rc < 0 && rc != FTRPC_ERPCTIMEDOUT); /* refused at once, not a parent's deadline */
    ftrpc_result_fini(&r);
    ftrpc_client_free(c);
}

/* A newer header's struct: accepted when what this library does not know is zero. */
static void newer_options_are_accepted_only_with_unknown_fields_at_zero(void **state)
{
    (void)state;
    unsigned char buf[sizeof(ftrpc_runtime_options) + 16];
    memset(buf, 0, sizeof buf);
    ftrpc_runtime_options o = {.io_threads = 1};
    memcpy(buf, &o, sizeof o);
    ftrpc_runtime *rt = NULL;
    assert_int_equal(ftrpc_runtime_new_sized((const ftrpc_runtime_options *)buf, sizeof buf, &rt),
                     0);
    assert_int_equal(ftrpc_runtime_io_threads(rt), 1);
    ftrpc_runtime_free(rt);
    buf[sizeof o + 3] = 1; /* a field this library does not know, set */
    rt = NULL;
    assert_int_equal(ftrpc_runtime_new_sized((const ftrpc_runtime_options *)buf, sizeof buf, &rt),
                     FTRPC_EINVAL);
    assert_null(rt);
}

/* ftrpc_health_options as declared before the WSO2 fields and breaker_reject: the WSO2 fields
 * took the first slot of its reserved room, breaker_reject the second. */
typedef struct health_options_before {
    int64_t initial_suspension_ms;
    double progression_factor;
    int64_t maximum_suspension_ms;
    int retries_before_suspension;
    int64_t retry_delay_ms;
    int mark_codes[FTRPC_MAX_CODES];
    int suspend_codes[FTRPC_MAX_CODES];
    double max_suspended_ratio;
    double breaker_error_ratio;
    int breaker_min_calls;
    int64_t breaker_window_ms;
    int64_t reserved[4];
} health_options_before;

static void nested_health_options_keep_their_size_and_layout(void **state)
{
    (void)state;
    assert_int_equal(sizeof(ftrpc_health_options), sizeof(health_options_before));
    assert_int_equal(offsetof(ftrpc_health_options, suspend_other_errors),
                     offsetof(health_options_before, reserved));
    assert_int_equal(offsetof(ftrpc_health_options, breaker_reject),
                     offsetof(health_options_before, reserved) + 8);
    assert_int_equal(offsetof(ftrpc_health_options, breaker_window_ms),
                     offsetof(health_options_before, breaker_window_ms));
}

/* A policy that sets only the hooks it knows leaves the reserved slots zero. */
static void a_backup_policy_initialised_by_name_has_zero_reserved_slots(void **state)
{
    (void)state;
    ftrpc_backup_policy p = {.backup_delay_ms = NULL};
    for (size_t i = 0; i < sizeof p.reserved / sizeof p.reserved[0]; i++)
        assert_null(p.reserved[i]);
}

/* backup_delay_us took the first reserved slot of ftrpc_backup_policy: a policy built against the
 * header before it has the same size and the same hooks at the same places, and its zeroed slot
 * reads as "no us hook" (the engine then asks backup_delay_ms). */
static void backup_delay_us_took_a_reserved_slot_of_the_policy(void **state)
{
    (void)state;
    struct policy_before {
        int (*backup_delay_ms)(ftrpc_backup_policy *, const char *, const char *);
        int (*should_backup)(ftrpc_backup_policy *, const char *, const char *);
        void (*on_call_end)(ftrpc_backup_policy *, const ftrpc_result *);
        void (*destroy)(ftrpc_backup_policy *);
        void (*on_backup_refused)(ftrpc_backup_policy *, const char *, const char *);
        void (*reserved[6])(void);
    };
    assert_int_equal(sizeof(ftrpc_backup_policy), sizeof(struct policy_before));
    assert_int_equal(offsetof(ftrpc_backup_policy, on_backup_refused),
                     offsetof(struct policy_before, on_backup_refused));
    assert_int_equal(offsetof(ftrpc_backup_policy, backup_delay_us),
                     offsetof(struct policy_before, reserved));
    assert_int_equal(offsetof(ftrpc_backup_policy, reserved),
                     offsetof(struct policy_before, reserved) + sizeof(void (*)(void)));
}

/* Client options from a header before backup_request_us: backup_request_ms alone decides,
 * whatever follows in memory. */
static void client_options_before_backup_request_us_keep_the_ms_delay(void **state)
{
    (void)state;
    ftrpc_client_options old = {.backup_request_ms = 7};
    ftrpc_client *c =
        client_from_older_header(&old, offsetof(ftrpc_client_options, backup_request_us));
    assert_int_equal(c->opts.backup_request_us, 0);
    assert_int_equal(c->opts.backup_request_ms, 7);
    assert_int_equal(c->opts.fail_mode, FTRPC_FAILBACKUP);
    ftrpc_client_free(c);
}

/* The WSO2 fields took a reserved slot of the nested health options (whose size, and so every
 * offset after it in ftrpc_client_options, is unchanged); the client-level ones were appended.
 * Options cut before them get ftrpc's defaults whatever lies after. */
static void wso2_options_keep_the_health_size_and_default_when_cut(void **state)
{
    (void)state;
    assert_int_equal(sizeof(ftrpc_health_options),
                     offsetof(ftrpc_health_options, breaker_window_ms) + 8 + 4 * 8);
    ftrpc_client_options old = {.lb = "priority"};
    ftrpc_client *c =
        client_from_older_header(&old, offsetof(ftrpc_client_options, endpoint_codes));
    assert_int_equal(c->opts.n_endpoint_codes, 0);
    assert_int_equal(c->opts.priority_sticky, 0);
    assert_int_equal(c->opts.health.suspend_other_errors, 0);
    ftrpc_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_library_reports_the_headers_version),
        cmocka_unit_test(older_client_options_get_the_defaults_of_newer_fields),
        cmocka_unit_test(newer_options_are_accepted_only_with_unknown_fields_at_zero),
        cmocka_unit_test(client_options_before_the_backup_budget_get_its_defaults),
        cmocka_unit_test(client_options_before_the_protocol_speak_baidu_std),
        cmocka_unit_test(call_options_before_the_backup_policy_get_none),
        cmocka_unit_test(client_options_before_the_overload_fields_get_their_defaults),
        cmocka_unit_test(call_options_before_the_parent_get_none),
        cmocka_unit_test(a_backup_policy_initialised_by_name_has_zero_reserved_slots),
        cmocka_unit_test(backup_delay_us_took_a_reserved_slot_of_the_policy),
        cmocka_unit_test(client_options_before_backup_request_us_keep_the_ms_delay),
        cmocka_unit_test(wso2_options_keep_the_health_size_and_default_when_cut),
        cmocka_unit_test(nested_health_options_keep_their_size_and_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
