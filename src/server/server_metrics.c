/* Per-method server metrics: a latency recorder (QPS, percentiles, CDF), errors by wire code,
 * rejections by reason and the concurrency level, registered in the process-wide registry with
 * labels (service, method) so that /vars, /metrics and the console show them; and the series of
 * the last minutes the console charts (QPS, errors/s, p99), sampled from those once a second.
 *
 * Why errors by code grow lazily: the codes a handler uses are not known in advance; a table of
 * FT_METHOD_ERROR_CODES counters, appended under a lock the first time a code is seen and read
 * lock-free afterwards, keeps the hot path (a code seen before) at one relaxed add, and bounds
 * what a handler that invents codes can cost (the rest are counted as code="other").
 */
#include <stdio.h>
#include <stdlib.h>

#include "base/aligned_alloc.h"
#include "base/log.h"
#include "metrics/registry.h"
#include "server/server_internal.h"

static int64_t concurrency_of(void *arg)
{
    ft_method *m = arg;
    return ft_method_concurrency(m);
}

int ft_method_metrics_init(ft_method *m)
{
    ft_method_metrics *mm = &m->metrics;
    int rc = ft_latency_recorder_new(NULL, &mm->latency);
    if (rc != 0) return rc;
    rc = ft_series_init(&mm->series, FT_METHOD_SERIES_POINTS);
    if (rc != 0) {
        ft_latency_recorder_free(mm->latency);
        mm->latency = NULL;
        return rc;
    }
    for (int i = 0; i < FT_REJECT_KINDS; i++)
        ft_counter_init(&mm->rejected[i]);
    ft_gauge_init_fn(&mm->concurrency, concurrency_of, m);
    pthread_mutex_init(&mm->codes_lock, NULL);
    atomic_init(&mm->ncodes, 0);
    ft_counter_init(&mm->errors_other);
    return 0;
}

void ft_method_metrics_fini(ft_method *m)
{
    ft_method_metrics *mm = &m->metrics;
    ft_method_metrics_unregister(m);
    int n = atomic_load(&mm->ncodes);
    for (int i = 0; i < n; i++)
        free(mm->errors[i]);
    ft_latency_recorder_free(mm->latency);
    mm->latency = NULL;
    ft_series_fini(&mm->series);
    pthread_mutex_destroy(&mm->codes_lock);
}

static const char *const REJECT_NAMES[FT_REJECT_KINDS] = {"limit", "deadline", "stopping"};

static void add_var(ft_method *m, ft_metric_kind kind, void *var, const char *name,
                    const char *help, const char *k3, const char *v3)
{
    ft_metric_label l[3] = {{"service", m->service}, {"method", m->method}, {k3, v3}};
    int rc = ft_metrics_registry_add(ft_metrics_default_registry(), kind, var, name, help, l,
                                     k3 ? 3 : 2);
    if (rc != 0)
        FT_WARN("metrics: %s{%s/%s} not registered (%s); it shows on this server's /status only",
                name, m->service, m->method, ftrpc_strerror(rc));
}

static void register_code(ft_method *m, int i)
{
    char code[16];
    snprintf(code, sizeof code, "%d", (int)m->metrics.codes[i]);
    add_var(m, FT_METRIC_COUNTER, m->metrics.errors[i], "rpc_server_errors",
            "calls answered with an error, by wire code", "code", code);
}

void ft_method_metrics_register(ft_method *m)
{
    ft_method_metrics *mm = &m->metrics;
    pthread_mutex_lock(&mm->codes_lock);
    mm->registered = 1;
    add_var(m, FT_METRIC_LATENCY, mm->latency, "rpc_server",
            "latency (us) of calls that reached their handler", NULL, NULL);
    add_var(m, FT_METRIC_GAUGE, &mm->concurrency, "rpc_server_concurrency",
            "calls of the method in flight", NULL, NULL);
    for (int i = 0; i < FT_REJECT_KINDS; i++)
        add_var(m, FT_METRIC_COUNTER, &mm->rejected[i], "rpc_server_rejected",
                "requests refused before their handler ran, by reason", "reason", REJECT_NAMES[i]);
    add_var(m, FT_METRIC_COUNTER, &mm->errors_other, "rpc_server_errors",
            "calls answered with an error, by wire code", "code", "other");
    for (int i = 0; i < atomic_load(&mm->ncodes); i++)
        register_code(m, i);
    pthread_mutex_unlock(&mm->codes_lock);
}

void ft_method_metrics_unregister(ft_method *m)
{
    ft_method_metrics *mm = &m->metrics;
    pthread_mutex_lock(&mm->codes_lock);
    if (mm->registered) {
        ft_metrics_registry *reg = ft_metrics_default_registry();
        /* remove fails harmlessly for a variable whose add clashed */
        ft_metrics_registry_remove(reg, mm->latency);
        ft_metrics_registry_remove(reg, &mm->concurrency);
        for (int i = 0; i < FT_REJECT_KINDS; i++)
            ft_metrics_registry_remove(reg, &mm->rejected[i]);
        ft_metrics_registry_remove(reg, &mm->errors_other);
        for (int i = 0; i < atomic_load(&mm->ncodes); i++)
            ft_metrics_registry_remove(reg, mm->errors[i]);
        mm->registered = 0;
    }
    pthread_mutex_unlock(&mm->codes_lock);
}

static ft_counter *error_counter(ft_method *m, int32_t code)
{
    ft_method_metrics *mm = &m->metrics;
    int n = atomic_load_explicit(&mm->ncodes, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (mm->codes[i] == code) return mm->errors[i];
    ft_counter *c = &mm->errors_other;
    pthread_mutex_lock(&mm->codes_lock);
    n = atomic_load_explicit(&mm->ncodes, memory_order_relaxed);
    int i;
    for (i = 0; i < n; i++)
        if (mm->codes[i] == code) break;
    if (i < n) {
        c = mm->errors[i];
    } else if (n < FT_METHOD_ERROR_CODES &&
               (mm->errors[n] = ft_aligned_calloc(1, sizeof(ft_counter), alignof(ft_counter)))) {
        ft_counter_init(mm->errors[n]);
        mm->codes[n] = code;
        c = mm->errors[n];
        atomic_store_explicit(&mm->ncodes, n + 1, memory_order_release);
        if (mm->registered) register_code(m, n);
    }
    pthread_mutex_unlock(&mm->codes_lock);
    return c;
}

void ft_method_metrics_on_reply(ft_method *m, int32_t wire_code, int64_t start_ns, int64_t now_ns)
{
    if (start_ns) ft_latency_recorder_record_at(m->metrics.latency, now_ns - start_ns, now_ns);
    if (wire_code != 0) ft_counter_inc(error_counter(m, wire_code));
}

void ft_method_metrics_on_reject(ft_method *m, enum ft_reject_reason why, int32_t wire_code)
{
    ft_counter_inc(&m->metrics.rejected[why]);
    ft_counter_inc(error_counter(m, wire_code));
}

uint64_t ft_method_metrics_errors(ft_method *m)
{
    ft_method_metrics *mm = &m->metrics;
    uint64_t total = ft_counter_get(&mm->errors_other);
    int n = atomic_load_explicit(&mm->ncodes, memory_order_acquire);
    for (int i = 0; i < n; i++)
        total += ft_counter_get(mm->errors[i]);
    return total;
}

/* ---- the series: a point per method once a second ---- */

/* Ticks fall this long after each whole second of the monotonic clock, where the recorders' 1 s
 * intervals start: the one-interval window p99 is read from is then the second that just ended
 * plus these few milliseconds, not up to two seconds. */
#define SERIES_TICK_LAG_NS (5 * FT_NS_PER_MS)

static int64_t next_tick(int64_t now_ns)
{
    return (now_ns / FT_NS_PER_SEC + 1) * FT_NS_PER_SEC + SERIES_TICK_LAG_NS;
}

/* Reads what the call path keeps anyway (the recorder's all-time count and its last second, the
 * error counters): a few bucket walks per method, once a second, on the loop; nothing per call. */
static void sample_methods(ftrpc_server *s, int64_t now_ns)
{
    static const double P99 = 0.99;
    for (size_t i = 0; i < s->nmethods; i++) {
        ft_method *m = s->methods[i];
        ft_method_metrics *mm = &m->metrics;
        int64_t p99_ns = 0;
        (void)ft_latency_recorder_percentiles(mm->latency, 1, &P99, &p99_ns, 1);
        ft_series_sample(&mm->series, now_ns, ft_latency_recorder_count(mm->latency),
                         ft_method_metrics_errors(m), p99_ns);
    }
}

static void series_tick(ft_timer *t);

/* Adds a point to every method's series (the first call: the base) and arms the next tick. */
static void sample_and_rearm(ftrpc_server *s)
{
    ft_loop *loop = &s->rt->loops[0];
    int64_t now = ft_loop_now_ns(loop);
    sample_methods(s, now);
    ft_timer_start(loop, &s->series_timer, next_tick(now), series_tick);
}

static void series_tick(ft_timer *t)
{
    sample_and_rearm(ft_container_of(t, ftrpc_server, series_timer));
}

static void arm_series(void *arg)
{
    sample_and_rearm(arg);
}

static void disarm_series(void *arg)
{
    ftrpc_server *s = arg;
    ft_timer_stop(&s->rt->loops[0], &s->series_timer);
}

void ft_server_series_start(ftrpc_server *s)
{
    if (s->nmethods) ft_loop_run_sync(&s->rt->loops[0], arm_series, s);
}

void ft_server_series_stop(ftrpc_server *s)
{
    if (s->nmethods) ft_loop_run_sync(&s->rt->loops[0], disarm_series, s);
}
