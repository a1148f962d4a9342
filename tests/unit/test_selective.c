/* Making a selective client (ftrpc/selective.h): what it refuses with FTRPC_EINVAL, that a refusal
 * takes nothing (the caller still owns and frees every sub-client), and that on success it owns
 * them (a sub-client's own free is refused; the selective client's free frees them, which ASan
 * checks: no leak, no double free). No call is made: the endpoints are never connected to. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "ftrpc/ftrpc.h"

static ftrpc_client *sub_on(ftrpc_runtime *rt, const char *url)
{
    ftrpc_client_options o = {.runtime = rt};
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(url, &o, &c), 0);
    return c;
}

static void invalid_construction_is_refused_and_takes_nothing(void **state)
{
    (void)state;
    ftrpc_client *a = sub_on(NULL, "list://127.0.0.1:1");
    ftrpc_client *b = sub_on(NULL, "list://127.0.0.1:2");
    ftrpc_client *sentinel = (ftrpc_client *)&a;
    ftrpc_client *out = sentinel;
    ftrpc_client *two[] = {a, b};
    ftrpc_client *with_null[] = {a, NULL};
    ftrpc_client *twice[] = {a, b, a};

    assert_int_equal(ftrpc_selective_client_new(NULL, 2, NULL, &out), FTRPC_EINVAL);
    assert_int_equal(ftrpc_selective_client_new(two, 0, NULL, &out), FTRPC_EINVAL);
    assert_int_equal(ftrpc_selective_client_new(two, 2, NULL, NULL), FTRPC_EINVAL);
    assert_int_equal(ftrpc_selective_client_new(with_null, 2, NULL, &out), FTRPC_EINVAL);
    assert_int_equal(ftrpc_selective_client_new(twice, 3, NULL, &out), FTRPC_EINVAL);
    assert_int_equal(ftrpc_selective_client_new(two, FTRPC_SELECTIVE_MAX_CLUSTERS + 1, NULL, &out),
                     FTRPC_EINVAL);
    /* bad options, checked as ftrpc_client_new checks them */
    static const ftrpc_client_options bad[] = {
        {.lb = "no-such-balancer"},
        {.timeout_ms = -1},
        {.backup_request_ms = -2},
        {.retries = -5},
        {.fail_mode = (ftrpc_fail_mode)99},
        {.fallback = {.kind = FTRPC_FALLBACK_ERRORS}}, /* no function */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(ftrpc_selective_client_new(two, 2, &bad[i], &out), FTRPC_EINVAL);
    assert_ptr_equal(out, sentinel); /* written only on success */

    /* another runtime than the sub-clients' */
    ftrpc_runtime *rt = NULL;
    assert_int_equal(ftrpc_runtime_new(&(ftrpc_runtime_options){.io_threads = 1}, &rt), 0);
    ftrpc_client *other = sub_on(rt, "list://127.0.0.1:3");
    ftrpc_client *mixed[] = {a, other};
    assert_int_equal(ftrpc_selective_client_new(mixed, 2, NULL, &out), FTRPC_EINVAL);
    ftrpc_client_options on_rt = {.runtime = rt};
    assert_int_equal(ftrpc_selective_client_new(two, 2, &on_rt, &out), FTRPC_EINVAL);

    /* refusals took nothing: the caller frees its sub-clients */
    ftrpc_client_free(other);
    ftrpc_runtime_free(rt);
    ftrpc_client_free(a);
    ftrpc_client_free(b);
}

static void a_selective_client_owns_its_sub_clients(void **state)
{
    (void)state;
    ftrpc_client *a = sub_on(NULL, "list://127.0.0.1:1");
    ftrpc_client *b = sub_on(NULL, "list://127.0.0.1:2,127.0.0.1:3");
    ftrpc_client *two[] = {a, b};
    ftrpc_client *sel = NULL;
    assert_int_equal(ftrpc_selective_client_new(two, 2, NULL, &sel), 0);
    assert_non_null(sel);
    /* a sub-client belongs to one selective client, which cannot itself be a sub-client */
    ftrpc_client *c = sub_on(NULL, "list://127.0.0.1:4");
    ftrpc_client *steal[] = {c, b};
    ftrpc_client *out = NULL;
    assert_int_equal(ftrpc_selective_client_new(steal, 2, NULL, &out), FTRPC_EINVAL);
    ftrpc_client *nested[] = {sel, c};
    assert_int_equal(ftrpc_selective_client_new(nested, 2, NULL, &out), FTRPC_EINVAL);
    assert_null(out);
    /* c was taken back when b could not be had: it is still the caller's, free or reusable */
    ftrpc_client *one[] = {c};
    ftrpc_client *sel2 = NULL;
    assert_int_equal(ftrpc_selective_client_new(one, 1, NULL, &sel2), 0);
    ftrpc_client_free(a); /* refused: sel owns it (logged) */
    ftrpc_client_free(sel2);
    ftrpc_client_free(sel); /* frees a and b */
    ftrpc_client_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(invalid_construction_is_refused_and_takes_nothing),
        cmocka_unit_test(a_selective_client_owns_its_sub_clients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
