/* Client per-method metrics (see client_metrics.h). */
#include "client/client_metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/aligned_alloc.h"
#include "metrics/registry.h"

static atomic_int next_client_id = 1;

void ft_client_metrics_init(ft_client_metrics *m)
{
    pthread_mutex_init(&m->lock, NULL);
    atomic_init(&m->head, NULL);
    snprintf(m->client_id, sizeof m->client_id, "c%d", atomic_fetch_add(&next_client_id, 1));
}

static void method_free(ft_method_metrics *mm)
{
    ft_metrics_registry *reg = ft_metrics_default_registry();
    ft_counter *cs[] = {&mm->calls,       &mm->ok,
                        &mm->rpc_errors,  &mm->business_errors,
                        &mm->fallbacks,   &mm->attempts,
                        &mm->retries,     &mm->backups,
                        &mm->backup_wins, &mm->breaker_rejections,
                        &mm->throttled,   &mm->pushbacks};
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++)
        ft_metrics_registry_remove(reg, cs[i]);
    if (mm->latency) {
        ft_metrics_registry_remove(reg, mm->latency);
        ft_latency_recorder_free(mm->latency);
    }
    free(mm->service);
    free(mm->method);
    free(mm);
}

void ft_client_metrics_fini(ft_client_metrics *m)
{
    ft_method_metrics *mm = atomic_load(&m->head);
    while (mm) {
        ft_method_metrics *next = mm->next;
        method_free(mm);
        mm = next;
    }
    pthread_mutex_destroy(&m->lock);
}

static ft_method_metrics *method_new(ft_client_metrics *m, const char *service, const char *method)
{
    ft_method_metrics *mm = ft_aligned_calloc(1, sizeof *mm, alignof(ft_method_metrics));
    if (!mm) return NULL;
    mm->service = strdup(service);
    mm->method = strdup(method);
    if (!mm->service || !mm->method || ft_latency_recorder_new(NULL, &mm->latency) != 0) {
        free(mm->service);
        free(mm->method);
        free(mm);
        return NULL;
    }
    static const struct {
        size_t offset;
        const char *name, *help;
    } COUNTERS[] = {
        {offsetof(ft_method_metrics, calls), "rpc_client_calls", "calls completed"},
        {offsetof(ft_method_metrics, ok), "rpc_client_ok", "calls reported as successes"},
        {offsetof(ft_method_metrics, rpc_errors), "rpc_client_rpc_errors",
         "calls reported as RPC errors"},
        {offsetof(ft_method_metrics, business_errors), "rpc_client_business_errors",
         "calls reported as business errors"},
        {offsetof(ft_method_metrics, fallbacks), "rpc_client_fallbacks",
         "calls whose outcome a fallback produced"},
        {offsetof(ft_method_metrics, attempts), "rpc_client_attempts", "requests sent"},
        {offsetof(ft_method_metrics, retries), "rpc_client_retries", "retries sent"},
        {offsetof(ft_method_metrics, backups), "rpc_client_backups", "backup requests sent"},
        {offsetof(ft_method_metrics, backup_wins), "rpc_client_backup_wins",
         "calls answered by their backup request"},
        {offsetof(ft_method_metrics, breaker_rejections), "rpc_client_breaker_rejections",
         "calls rejected because every endpoint was open by its breaker"},
        {offsetof(ft_method_metrics, throttled), "rpc_client_throttled",
         "calls rejected by the client's adaptive throttling (FTRPC_ETHROTTLED)"},
        {offsetof(ft_method_metrics, pushbacks), "rpc_client_pushbacks",
         "answers that carried a server's pushback (ftrpc_retry_after_ms)"},
    };
    ft_metric_label labels[] = {{"client", m->client_id}, {"service", service}, {"method", method}};
    ft_metrics_registry *reg = ft_metrics_default_registry();
    for (size_t i = 0; i < sizeof COUNTERS / sizeof COUNTERS[0]; i++) {
        ft_counter *c = (ft_counter *)((char *)mm + COUNTERS[i].offset);
        ft_counter_init(c);
        ft_metrics_registry_add(reg, FT_METRIC_COUNTER, c, COUNTERS[i].name, COUNTERS[i].help,
                                labels, 3);
    }
    ft_metrics_registry_add(reg, FT_METRIC_LATENCY, mm->latency, "rpc_client_latency",
                            "call latency (us) of reported successes", labels, 3);
    return mm;
}

static ft_method_metrics *find(ft_method_metrics *mm, const char *service, const char *method)
{
    while (mm && (strcmp(mm->method, method) != 0 || strcmp(mm->service, service) != 0))
        mm = mm->next;
    return mm;
}

ft_method_metrics *ft_client_metrics_get(ft_client_metrics *m, const char *service,
                                         const char *method)
{
    /* the common case, a method seen before, takes no lock */
    ft_method_metrics *mm =
        find(atomic_load_explicit(&m->head, memory_order_acquire), service, method);
    if (mm) return mm;
    pthread_mutex_lock(&m->lock);
    mm = find(atomic_load(&m->head), service, method);
    if (!mm) {
        mm = method_new(m, service, method);
        if (mm) {
            mm->next = atomic_load(&m->head);
            atomic_store_explicit(&m->head, mm, memory_order_release);
        }
    }
    pthread_mutex_unlock(&m->lock);
    return mm;
}

void ft_method_metrics_record(ft_method_metrics *mm, const ft_call_report *reported, int retries,
                              int fallback_used, int64_t now_ns)
{
    ft_counter_inc(&mm->calls);
    if (reported->kind == FTRPC_RESULT_OK) {
        ft_counter_inc(&mm->ok);
        ft_latency_recorder_record_at(mm->latency, reported->latency_ns, now_ns);
    } else if (reported->kind == FTRPC_RESULT_BUSINESS_ERROR) {
        ft_counter_inc(&mm->business_errors);
    } else {
        ft_counter_inc(&mm->rpc_errors);
    }
    if (fallback_used) ft_counter_inc(&mm->fallbacks);
    ft_counter_add(&mm->attempts, (uint64_t)reported->attempts);
    /* usually 0: adding nothing would still cost an atomic add each */
    if (retries) ft_counter_add(&mm->retries, (uint64_t)retries);
    if (reported->backups) ft_counter_add(&mm->backups, (uint64_t)reported->backups);
    if (reported->backup_won) ft_counter_inc(&mm->backup_wins);
    if (reported->breaker_rejected) ft_counter_inc(&mm->breaker_rejections);
    if (reported->throttled) ft_counter_inc(&mm->throttled);
    if (reported->pushbacks) ft_counter_add(&mm->pushbacks, (uint64_t)reported->pushbacks);
}
