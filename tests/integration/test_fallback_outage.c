/* A total outage answered by a fallback: three echo-server children serve, then are all killed;
 * with an errors-only fallback every call still returns the default answer, flagged as a
 * fallback's, while the metrics registry keeps showing the RPC errors (the original outcome is
 * what is reported by default) and counts the fallbacks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_internal.h"
#include "harness.h"
#include "metrics/registry.h"

enum { NSERVERS = 3, NCALLS = 40 };

#define SVC "example.EchoService"

static atomic_int fallback_runs;

static void default_answer(const ftrpc_fallback_input *in, ftrpc_fallback_output *out, void *arg)
{
    (void)arg;
    (void)in;
    atomic_fetch_add(&fallback_runs, 1);
    out->response = ftrpc_buf_new();
    ftrpc_buf_append(out->response, "default", 7);
}

/* The value of `name` for this client's Echo figures, read from the registry's text dump. */
static long long registry_value(const ftrpc_client *c, const char *name)
{
    ft_strbuf sb;
    ft_strbuf_init(&sb, 0);
    ft_metrics_filter f = {.name = name};
    assert_int_equal(
        ft_metrics_registry_dump(ft_metrics_default_registry(), FT_METRICS_TEXT, &f, &sb, NULL), 0);
    char want[64];
    snprintf(want, sizeof want, "client=\"%s\"", c->metrics.client_id);
    long long v = -1;
    for (const char *line = ft_strbuf_cstr(&sb); line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[512];
        snprintf(buf, sizeof buf, "%.*s", (int)len, line);
        const char *colon = strstr(buf, " : ");
        if (strstr(buf, want) && strstr(buf, "method=\"Echo\"") && colon) v = atoll(colon + 3);
        line = end ? end + 1 : NULL;
    }
    ft_strbuf_fini(&sb);
    return v;
}

static int call_echo(ftrpc_client *c, ftrpc_result *r)
{
    ftrpc_buf *req = ftrpc_buf_new();
    ftrpc_buf_append(req, "hello", 5);
    int rc = ftrpc_call(c, SVC, "Echo", req, NULL, NULL, r);
    ftrpc_buf_free(req);
    return rc;
}

static int body_is(const ftrpc_result *r, const char *want)
{
    char got[32] = {0};
    if (!r->response) return 0;
    ftrpc_buf_copy_to(r->response, got, sizeof got - 1);
    return strcmp(got, want) == 0;
}

static void
all_servers_down_every_call_gets_the_default_answer_and_metrics_show_rpc_errors(void **state)
{
    (void)state;
    h_server srv[NSERVERS];
    char url[256] = "list://";
    for (int i = 0; i < NSERVERS; i++) {
        assert_int_equal(h_server_start(&srv[i], NULL), 0);
        char ep[64];
        h_server_url(&srv[i], ep, sizeof ep);
        if (i) strcat(url, ",");
        strcat(url, ep);
    }
    ftrpc_client_options o = {
        /* under memcheck a call to a healthy server can take over a second: the fallback would
         * answer it (10 s there, H_VG) */
        .timeout_ms = 1000 * H_VG,
        .fallback = {.kind = FTRPC_FALLBACK_ERRORS, .fn = default_answer},
    };
    ftrpc_client *c = NULL;
    assert_int_equal(ftrpc_client_new(url, &o, &c), 0);

    /* while the servers serve, the fallback stays out of the way */
    for (int i = 0; i < 5; i++) {
        ftrpc_result r;
        assert_int_equal(call_echo(c, &r), 0);
        assert_true(body_is(&r, "hello"));
        assert_int_equal(r.from_fallback, 0);
        ftrpc_result_fini(&r);
    }
    assert_int_equal(atomic_load(&fallback_runs), 0);

    for (int i = 0; i < NSERVERS; i++)
        h_server_kill(&srv[i]);

    int64_t t0 = h_now_ms();
    int max_attempts = 0;
    for (int i = 0; i < NCALLS; i++) {
        ftrpc_result r;
        assert_int_equal(call_echo(c, &r), 0);
        assert_int_equal(r.kind, FTRPC_RESULT_OK);
        assert_true(body_is(&r, "default"));
        assert_int_equal(r.from_fallback, 1);
        if (r.attempts > max_attempts) max_attempts = r.attempts;
        ftrpc_result_fini(&r);
    }
    print_message("%d calls answered by the fallback in %lld ms, up to %d attempts each\n", NCALLS,
                  (long long)(h_now_ms() - t0), max_attempts);
    assert_int_equal(atomic_load(&fallback_runs), NCALLS);
    assert_true(max_attempts > 1); /* failover tried other endpoints before the fallback ran */

    /* what the registry shows: the outage as it was, and the fallbacks that hid it */
    assert_int_equal(registry_value(c, "rpc_client_calls"), 5 + NCALLS);
    assert_int_equal(registry_value(c, "rpc_client_ok"), 5);
    assert_int_equal(registry_value(c, "rpc_client_rpc_errors"), NCALLS);
    assert_int_equal(registry_value(c, "rpc_client_business_errors"), 0);
    assert_int_equal(registry_value(c, "rpc_client_fallbacks"), NCALLS);
    assert_true(registry_value(c, "rpc_client_attempts") > 5 + NCALLS);
    ftrpc_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            all_servers_down_every_call_gets_the_default_answer_and_metrics_show_rpc_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
