/* ft_metrics_registry: golden TEXT / JSON / Prometheus outputs, escaping and name sanitizing,
 * registration rules, filters, the strbuf bound, and register/remove racing dumps.
 *
 * It also writes its Prometheus golden exposition to metrics_prometheus.txt in the working
 * directory, which tests/unit/check_prometheus.py parses with the reference parser. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "ftrpc/common.h"
#include "metrics/registry.h"

#define SEC INT64_C(1000000000)

typedef struct fixture {
    ft_metrics_registry *reg;
    ft_manual_clock clk;
    ft_counter calls_echo, calls_odd;
    ft_gauge conns, lives;
    ft_latency_recorder *lat1, *lat2;
} fixture;

static int64_t seven(void *arg)
{
    (void)arg;
    return 7;
}

static int setup(void **state)
{
    static fixture f;
    memset(&f, 0, sizeof f);
    assert_int_equal(ft_metrics_registry_new(&f.reg), 0);
    ft_manual_clock_init(&f.clk, 3600 * SEC);
    ft_latency_recorder_options o = {.clock = &f.clk.base, .window = 10, .interval_ns = SEC};
    assert_int_equal(ft_latency_recorder_new(&o, &f.lat1), 0);
    assert_int_equal(ft_latency_recorder_new(&o, &f.lat2), 0);
    for (int v = 100; v <= 1000; v += 100) /* ns: shown as fractions of a microsecond */
        ft_latency_recorder_record(f.lat1, v);
    ft_counter_init(&f.calls_echo);
    ft_counter_init(&f.calls_odd);
    ft_counter_add(&f.calls_echo, 42);
    ft_counter_inc(&f.calls_odd);
    ft_gauge_init(&f.conns);
    ft_gauge_set(&f.conns, -3);
    ft_gauge_init_fn(&f.lives, seven, NULL);

    const char *help = "calls served, by method \\ and\nline two";
    ft_metric_label echo[] = {{"method", "example.EchoService/Echo"}};
    ft_metric_label odd[] = {{"method", "a\"b\\c\nd"}};
    ft_metric_label ep1[] = {{"endpoint", "127.0.0.1:8000"}};
    ft_metric_label ep2[] = {{"endpoint", "127.0.0.2:8000"}};
    /* registered out of order on purpose: dumps are sorted */
    assert_int_equal(ft_metrics_registry_add(f.reg, FT_METRIC_COUNTER, &f.calls_echo,
                                             "rpc_server_calls", help, echo, 1),
                     0);
    assert_int_equal(
        ft_metrics_registry_add(f.reg, FT_METRIC_LATENCY, f.lat2, "rpc_client", NULL, ep2, 1), 0);
    assert_int_equal(ft_metrics_registry_add(f.reg, FT_METRIC_GAUGE, &f.conns,
                                             "process.connections", "open connections", NULL, 0),
                     0);
    assert_int_equal(ft_metrics_registry_add(f.reg, FT_METRIC_COUNTER, &f.calls_odd,
                                             "rpc_server_calls", help, odd, 1),
                     0);
    assert_int_equal(
        ft_metrics_registry_add(f.reg, FT_METRIC_LATENCY, f.lat1, "rpc_client", NULL, ep1, 1), 0);
    assert_int_equal(
        ft_metrics_registry_add(f.reg, FT_METRIC_GAUGE, &f.lives, "9lives-gauge", NULL, NULL, 0),
        0);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    ft_metrics_registry_free(f->reg);
    ft_latency_recorder_free(f->lat1);
    ft_latency_recorder_free(f->lat2);
    return 0;
}

static void expect_dump(fixture *f, ft_metrics_format fmt, const ft_metrics_filter *filter,
                        const char *want, size_t want_matched)
{
    ft_strbuf sb;
    ft_strbuf_init(&sb, 0);
    size_t matched = 999;
    assert_int_equal(ft_metrics_registry_dump(f->reg, fmt, filter, &sb, &matched), 0);
    assert_string_equal(ft_strbuf_cstr(&sb), want);
    assert_int_equal(matched, want_matched);
    ft_strbuf_fini(&sb);
}

static const char TEXT_GOLDEN[] = "9lives-gauge : 7\n"
                                  "process.connections : -3\n"
                                  "rpc_client_count{endpoint=\"127.0.0.1:8000\"} : 10\n"
                                  "rpc_client_qps{endpoint=\"127.0.0.1:8000\"} : 10\n"
                                  "rpc_client_latency_avg{endpoint=\"127.0.0.1:8000\"} : 0.550\n"
                                  "rpc_client_latency_p50{endpoint=\"127.0.0.1:8000\"} : 0.501\n"
                                  "rpc_client_latency_p90{endpoint=\"127.0.0.1:8000\"} : 0.902\n"
                                  "rpc_client_latency_p99{endpoint=\"127.0.0.1:8000\"} : 1\n"
                                  "rpc_client_latency_p999{endpoint=\"127.0.0.1:8000\"} : 1\n"
                                  "rpc_client_max_latency{endpoint=\"127.0.0.1:8000\"} : 1\n"
                                  "rpc_client_count{endpoint=\"127.0.0.2:8000\"} : 0\n"
                                  "rpc_client_qps{endpoint=\"127.0.0.2:8000\"} : 0\n"
                                  "rpc_client_latency_avg{endpoint=\"127.0.0.2:8000\"} : 0\n"
                                  "rpc_client_latency_p50{endpoint=\"127.0.0.2:8000\"} : 0\n"
                                  "rpc_client_latency_p90{endpoint=\"127.0.0.2:8000\"} : 0\n"
                                  "rpc_client_latency_p99{endpoint=\"127.0.0.2:8000\"} : 0\n"
                                  "rpc_client_latency_p999{endpoint=\"127.0.0.2:8000\"} : 0\n"
                                  "rpc_client_max_latency{endpoint=\"127.0.0.2:8000\"} : 0\n"
                                  "rpc_server_calls{method=\"a\\\"b\\\\c\\nd\"} : 1\n"
                                  "rpc_server_calls{method=\"example.EchoService/Echo\"} : 42\n";

static const char JSON_GOLDEN[] =
    "[\n"
    "{\"name\":\"9lives-gauge\",\"type\":\"gauge\",\"labels\":{},\"value\":7},\n"
    "{\"name\":\"process.connections\",\"type\":\"gauge\",\"labels\":{},\"value\":-3},\n"
    "{\"name\":\"rpc_client\",\"type\":\"latency\",\"labels\":{\"endpoint\":\"127.0.0.1:8000\"},"
    "\"count\":10,\"qps\":10,\"latency_avg\":0.550,\"latency_p50\":0.501,\"latency_p90\":0.902,"
    "\"latency_p99\":1,\"latency_p999\":1,\"max_latency\":1},\n"
    "{\"name\":\"rpc_client\",\"type\":\"latency\",\"labels\":{\"endpoint\":\"127.0.0.2:8000\"},"
    "\"count\":0,\"qps\":0,\"latency_avg\":0,\"latency_p50\":0,\"latency_p90\":0,"
    "\"latency_p99\":0,\"latency_p999\":0,\"max_latency\":0},\n"
    "{\"name\":\"rpc_server_calls\",\"type\":\"counter\",\"labels\":{\"method\":"
    "\"a\\\"b\\\\c\\nd\"},"
    "\"value\":1},\n"
    "{\"name\":\"rpc_server_calls\",\"type\":\"counter\","
    "\"labels\":{\"method\":\"example.EchoService/Echo\"},\"value\":42}\n"
    "]\n";

static const char PROM_GOLDEN[] =
    "# HELP _9lives_gauge 9lives-gauge\n"
    "# TYPE _9lives_gauge gauge\n"
    "_9lives_gauge 7\n"
    "# HELP process_connections open connections\n"
    "# TYPE process_connections gauge\n"
    "process_connections -3\n"
    "# HELP rpc_client rpc_client (microseconds)\n"
    "# TYPE rpc_client summary\n"
    "rpc_client{endpoint=\"127.0.0.1:8000\",quantile=\"0.5\"} 0.501\n"
    "rpc_client{endpoint=\"127.0.0.1:8000\",quantile=\"0.9\"} 0.902\n"
    "rpc_client{endpoint=\"127.0.0.1:8000\",quantile=\"0.99\"} 1\n"
    "rpc_client{endpoint=\"127.0.0.1:8000\",quantile=\"0.999\"} 1\n"
    "rpc_client_sum{endpoint=\"127.0.0.1:8000\"} 5.500\n"
    "rpc_client_count{endpoint=\"127.0.0.1:8000\"} 10\n"
    "rpc_client{endpoint=\"127.0.0.2:8000\",quantile=\"0.5\"} 0\n"
    "rpc_client{endpoint=\"127.0.0.2:8000\",quantile=\"0.9\"} 0\n"
    "rpc_client{endpoint=\"127.0.0.2:8000\",quantile=\"0.99\"} 0\n"
    "rpc_client{endpoint=\"127.0.0.2:8000\",quantile=\"0.999\"} 0\n"
    "rpc_client_sum{endpoint=\"127.0.0.2:8000\"} 0\n"
    "rpc_client_count{endpoint=\"127.0.0.2:8000\"} 0\n"
    "# HELP rpc_client_qps calls per second over the window\n"
    "# TYPE rpc_client_qps gauge\n"
    "rpc_client_qps{endpoint=\"127.0.0.1:8000\"} 10\n"
    "rpc_client_qps{endpoint=\"127.0.0.2:8000\"} 0\n"
    "# HELP rpc_client_max_latency largest latency over the window (microseconds)\n"
    "# TYPE rpc_client_max_latency gauge\n"
    "rpc_client_max_latency{endpoint=\"127.0.0.1:8000\"} 1\n"
    "rpc_client_max_latency{endpoint=\"127.0.0.2:8000\"} 0\n"
    "# HELP rpc_server_calls calls served, by method \\\\ and\\nline two\n"
    "# TYPE rpc_server_calls counter\n"
    "rpc_server_calls{method=\"a\\\"b\\\\c\\nd\"} 1\n"
    "rpc_server_calls{method=\"example.EchoService/Echo\"} 42\n";

static void text_golden(void **state)
{
    expect_dump(*state, FT_METRICS_TEXT, NULL, TEXT_GOLDEN, 6);
}

static void json_golden(void **state)
{
    expect_dump(*state, FT_METRICS_JSON, NULL, JSON_GOLDEN, 6);
}

static void prometheus_golden_one_type_per_family(void **state)
{
    fixture *f = *state;
    expect_dump(f, FT_METRICS_PROMETHEUS, NULL, PROM_GOLDEN, 6);
    /* What the registry wrote, for the reference parser (check_prometheus.py). */
    ft_strbuf sb;
    ft_strbuf_init(&sb, 0);
    assert_int_equal(ft_metrics_registry_dump(f->reg, FT_METRICS_PROMETHEUS, NULL, &sb, NULL), 0);
    FILE *fp = fopen("metrics_prometheus.txt", "w");
    assert_non_null(fp);
    assert_int_equal(fwrite(sb.data, 1, sb.len, fp), sb.len);
    assert_int_equal(fclose(fp), 0);
    ft_strbuf_fini(&sb);
}

static void window_moves_the_exposed_values(void **state)
{
    fixture *f = *state;
    ft_manual_clock_advance(&f->clk, 11 * SEC); /* lat1's samples leave its 10 s window */
    ft_metrics_filter only = {.name = "rpc_client"};
    ft_strbuf sb;
    ft_strbuf_init(&sb, 0);
    assert_int_equal(ft_metrics_registry_dump(f->reg, FT_METRICS_TEXT, &only, &sb, NULL), 0);
    assert_non_null(
        strstr(ft_strbuf_cstr(&sb), "rpc_client_count{endpoint=\"127.0.0.1:8000\"} : 10\n"));
    assert_non_null(
        strstr(ft_strbuf_cstr(&sb), "rpc_client_qps{endpoint=\"127.0.0.1:8000\"} : 0\n"));
    assert_non_null(
        strstr(ft_strbuf_cstr(&sb), "rpc_client_latency_p99{endpoint=\"127.0.0.1:8000\"} : 0\n"));
    ft_strbuf_fini(&sb);
}

static void filters_by_name_and_prefix(void **state)
{
    fixture *f = *state;
    ft_metrics_filter by_name = {.name = "process.connections"};
    expect_dump(f, FT_METRICS_TEXT, &by_name, "process.connections : -3\n", 1);
    ft_metrics_filter by_prefix = {.prefix = "rpc_server"};
    expect_dump(f, FT_METRICS_TEXT, &by_prefix,
                "rpc_server_calls{method=\"a\\\"b\\\\c\\nd\"} : 1\n"
                "rpc_server_calls{method=\"example.EchoService/Echo\"} : 42\n",
                2);
    ft_metrics_filter none = {.name = "no.such.var"};
    expect_dump(f, FT_METRICS_TEXT, &none, "", 0);
    expect_dump(f, FT_METRICS_JSON, &none, "[]\n", 0);
    expect_dump(f, FT_METRICS_PROMETHEUS, &none, "", 0);
    /* a prefix that takes part of a Prometheus family keeps one TYPE line */
    ft_metrics_filter one = {.name = "rpc_server_calls"};
    ft_strbuf sb;
    ft_strbuf_init(&sb, 0);
    assert_int_equal(ft_metrics_registry_dump(f->reg, FT_METRICS_PROMETHEUS, &one, &sb, NULL), 0);
    const char *p = strstr(ft_strbuf_cstr(&sb), "# TYPE");
    assert_non_null(p);
    assert_null(strstr(p + 1, "# TYPE"));
    ft_strbuf_fini(&sb);
}

static void registration_rules(void **state)
{
    fixture *f = *state;
    ft_counter c;
    ft_counter_init(&c);
    ft_metric_label echo[] = {{"method", "example.EchoService/Echo"}};
    ft_metric_label other[] = {{"method", "example.EchoService/Other"}};
    /* same name and labels: taken */
    assert_int_equal(
        ft_metrics_registry_add(f->reg, FT_METRIC_COUNTER, &c, "rpc_server_calls", NULL, echo, 1),
        FTRPC_EEXIST);
    /* a family of another kind, even through sanitizing: taken */
    assert_int_equal(
        ft_metrics_registry_add(f->reg, FT_METRIC_GAUGE, &c, "rpc.server.calls", NULL, NULL, 0),
        FTRPC_EEXIST);
    assert_int_equal(
        ft_metrics_registry_add(f->reg, FT_METRIC_GAUGE, &c, "process_connections", NULL, NULL, 0),
        0);
    assert_int_equal(ft_metrics_registry_remove(f->reg, &c), 0);
    /* bad names, keys, kinds, pointers */
    const char *bad_names[] = {"", "a b", "x{y}", "q\"", "back\\slash", "tab\t", NULL};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++)
        assert_int_equal(
            ft_metrics_registry_add(f->reg, FT_METRIC_COUNTER, &c, bad_names[i], NULL, NULL, 0),
            FTRPC_EINVAL);
    ft_metric_label empty_key[] = {{"", "v"}};
    ft_metric_label quantile[] = {{"quantile", "0.5"}};
    assert_int_equal(
        ft_metrics_registry_add(f->reg, FT_METRIC_COUNTER, &c, "ok", NULL, empty_key, 1),
        FTRPC_EINVAL);
    assert_int_equal(
        ft_metrics_registry_add(f->reg, FT_METRIC_LATENCY, f->lat1, "ok", NULL, quantile, 1),
        FTRPC_EINVAL);
    assert_int_equal(ft_metrics_registry_add(f->reg, (ft_metric_kind)9, &c, "ok", NULL, NULL, 0),
                     FTRPC_EINVAL);
    assert_int_equal(ft_metrics_registry_add(f->reg, FT_METRIC_COUNTER, NULL, "ok", NULL, NULL, 0),
                     FTRPC_EINVAL);
    /* remove takes every entry of the variable; a second remove finds none */
    size_t before = ft_metrics_registry_size(f->reg);
    assert_int_equal(
        ft_metrics_registry_add(f->reg, FT_METRIC_COUNTER, &c, "rpc_server_calls", NULL, other, 1),
        0);
    assert_int_equal(ft_metrics_registry_add(f->reg, FT_METRIC_COUNTER, &c, "aaa", NULL, NULL, 0),
                     0);
    assert_int_equal(ft_metrics_registry_size(f->reg), before + 2);
    assert_int_equal(ft_metrics_registry_remove(f->reg, &c), 0);
    assert_int_equal(ft_metrics_registry_size(f->reg), before);
    assert_int_equal(ft_metrics_registry_remove(f->reg, &c), FTRPC_EINVAL);
    expect_dump(f, FT_METRICS_TEXT, NULL, TEXT_GOLDEN, 6);
    ft_strbuf sb;
    ft_strbuf_init(&sb, 0);
    assert_int_equal(ft_metrics_registry_dump(f->reg, (ft_metrics_format)7, NULL, &sb, NULL),
                     FTRPC_EINVAL);
    ft_strbuf_fini(&sb);
}

static void prometheus_names_and_labels_are_sanitized_and_escaped(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int colon;
        const char *want;
    } names[] = {
        {"rpc_server_calls", 1, "rpc_server_calls"},
        {"a.b-c/d", 1, "a_b_c_d"},
        {"9lives", 1, "_9lives"},
        {"ns:sub_total", 1, "ns:sub_total"},
        {"ns:sub", 0, "ns_sub"}, /* label keys take no colon */
        {"caf\xc3\xa9", 1, "caf__"},
        {"_x", 1, "_x"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        ft_strbuf sb;
        ft_strbuf_init(&sb, 0);
        assert_int_equal(ft_metrics_prom_name(&sb, names[i].in, names[i].colon), 0);
        assert_string_equal(ft_strbuf_cstr(&sb), names[i].want);
        ft_strbuf_fini(&sb);
    }
    static const struct {
        const char *in;
        const char *want;
    } values[] = {
        {"plain", "plain"},          {"q\"uote", "q\\\"uote"},  {"back\\slash", "back\\\\slash"},
        {"new\nline", "new\\nline"}, {"\\\"\n", "\\\\\\\"\\n"}, {"", ""},
    };
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        ft_strbuf sb;
        ft_strbuf_init(&sb, 0);
        assert_int_equal(ft_metrics_prom_escape_label(&sb, values[i].in), 0);
        assert_string_equal(ft_strbuf_cstr(&sb), values[i].want);
        ft_strbuf_fini(&sb);
    }
    /* a label key is sanitized at registration and every format shows that form */
    ft_metrics_registry *reg;
    assert_int_equal(ft_metrics_registry_new(&reg), 0);
    ft_gauge g;
    ft_gauge_init(&g);
    ft_gauge_set(&g, 5);
    ft_metric_label l[] = {{"peer-addr", "x"}, {"a:b", "y"}};
    assert_int_equal(ft_metrics_registry_add(reg, FT_METRIC_GAUGE, &g, "up", "h", l, 2), 0);
    ft_strbuf sb;
    ft_strbuf_init(&sb, 0);
    assert_int_equal(ft_metrics_registry_dump(reg, FT_METRICS_PROMETHEUS, NULL, &sb, NULL), 0);
    assert_string_equal(ft_strbuf_cstr(&sb), "# HELP up h\n# TYPE up gauge\n"
                                             "up{peer_addr=\"x\",a_b=\"y\"} 5\n");
    ft_strbuf_fini(&sb);
    ft_metrics_registry_free(reg);
}

static void dump_stops_at_the_buffer_bound(void **state)
{
    fixture *f = *state;
    ft_strbuf sb;
    ft_strbuf_init(&sb, 200);
    assert_int_equal(ft_metrics_registry_dump(f->reg, FT_METRICS_PROMETHEUS, NULL, &sb, NULL),
                     FTRPC_ENOMEM);
    assert_true(sb.len < 200);
    assert_int_equal(strncmp(ft_strbuf_cstr(&sb), PROM_GOLDEN, sb.len), 0);
    ft_strbuf_fini(&sb);
}

static void default_registry_is_one_per_process(void **state)
{
    (void)state;
    ft_metrics_registry *a = ft_metrics_default_registry();
    assert_non_null(a);
    assert_ptr_equal(a, ft_metrics_default_registry());
    ft_counter c;
    ft_counter_init(&c);
    assert_int_equal(
        ft_metrics_registry_add(a, FT_METRIC_COUNTER, &c, "default_test", NULL, NULL, 0), 0);
    assert_int_equal(ft_metrics_registry_remove(a, &c), 0);
}

/* ---- register and remove from several threads while another dumps ---- */

#define CHURN_THREADS 3
#define CHURN_ROUNDS 300

static ft_metrics_registry *churn_reg;
static _Atomic int churning;

static void *churner(void *arg)
{
    int id = (int)(intptr_t)arg;
    ft_counter c;
    ft_counter_init(&c);
    ft_latency_recorder *r;
    assert_int_equal(ft_latency_recorder_new(NULL, &r), 0);
    char label[16];
    snprintf(label, sizeof label, "t%d", id);
    ft_metric_label l[] = {{"thread", label}};
    for (int i = 0; i < CHURN_ROUNDS; i++) {
        assert_int_equal(
            ft_metrics_registry_add(churn_reg, FT_METRIC_COUNTER, &c, "churn_calls", NULL, l, 1),
            0);
        assert_int_equal(
            ft_metrics_registry_add(churn_reg, FT_METRIC_LATENCY, r, "churn_lat", NULL, l, 1), 0);
        ft_counter_inc(&c);
        ft_latency_recorder_record(r, i);
        assert_int_equal(ft_metrics_registry_remove(churn_reg, &c), 0);
        assert_int_equal(ft_metrics_registry_remove(churn_reg, r), 0);
    }
    ft_latency_recorder_free(r);
    atomic_fetch_sub(&churning, 1);
    return NULL;
}

static void register_and_remove_race_dumps_safely(void **state)
{
    (void)state;
    assert_int_equal(ft_metrics_registry_new(&churn_reg), 0);
    atomic_store(&churning, CHURN_THREADS);
    pthread_t t[CHURN_THREADS];
    for (int i = 0; i < CHURN_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, churner, (void *)(intptr_t)i), 0);
    ft_strbuf sb;
    ft_strbuf_init(&sb, 0);
    int dumps = 0;
    while (atomic_load(&churning) > 0 || dumps == 0) {
        ft_strbuf_reset(&sb);
        assert_int_equal(
            ft_metrics_registry_dump(churn_reg, (ft_metrics_format)(dumps % 3), NULL, &sb, NULL),
            0);
        dumps++;
    }
    for (int i = 0; i < CHURN_THREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(ft_metrics_registry_size(churn_reg), 0);
    ft_strbuf_fini(&sb);
    ft_metrics_registry_free(churn_reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(text_golden, setup, teardown),
        cmocka_unit_test_setup_teardown(json_golden, setup, teardown),
        cmocka_unit_test_setup_teardown(prometheus_golden_one_type_per_family, setup, teardown),
        cmocka_unit_test_setup_teardown(window_moves_the_exposed_values, setup, teardown),
        cmocka_unit_test_setup_teardown(filters_by_name_and_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(registration_rules, setup, teardown),
        cmocka_unit_test(prometheus_names_and_labels_are_sanitized_and_escaped),
        cmocka_unit_test_setup_teardown(dump_stops_at_the_buffer_bound, setup, teardown),
        cmocka_unit_test(default_registry_is_one_per_process),
        cmocka_unit_test(register_and_remove_race_dumps_safely),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
