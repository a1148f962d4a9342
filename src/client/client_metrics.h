/* Per-method figures of a client, registered in the process-wide metrics registry with labels
 * client="cN", service, method (docs/observability.md lists them). A call looks its method's
 * figures up once when it is made and records its reported outcome when it ends. */
#ifndef FT_CLIENT_METRICS_H
#define FT_CLIENT_METRICS_H

#include <pthread.h>
#include <stdatomic.h>

#include "ftrpc/client.h"
#include "metrics/counter.h"
#include "metrics/latency_recorder.h"

typedef struct ft_method_metrics {
    char *service;
    char *method;
    ft_counter calls, ok, rpc_errors, business_errors, fallbacks;
    ft_counter attempts, retries, backups, backup_wins;
    ft_counter breaker_rejections; /* calls ended by FTRPC_EBREAKER, before any fallback */
    ft_counter throttled;          /* calls ended by FTRPC_ETHROTTLED, before any fallback */
    ft_counter pushbacks;          /* answers carrying a pushback (ftrpc_retry_after_ms) */
    ft_latency_recorder *latency;
    struct ft_method_metrics *next;
} ft_method_metrics;

typedef struct ft_client_metrics {
    pthread_mutex_t lock;              /* serialises insertions; readers walk the list without it */
    _Atomic(ft_method_metrics *) head; /* push-front only until fini: a reader never sees a
                                        * node change or go away */
    char client_id[16];
} ft_client_metrics;

void ft_client_metrics_init(ft_client_metrics *m);
/* Unregisters and frees every method's figures. */
void ft_client_metrics_fini(ft_client_metrics *m);
/* The figures of service/method, made and registered on first use; NULL on allocation failure
 * (the call then records nothing). Any thread. */
ft_method_metrics *ft_client_metrics_get(ft_client_metrics *m, const char *service,
                                         const char *method);
/* What the figures take from a call's result, as reported (a fallback's success may be reported
 * as one: the report-as-fallback switch); the 400-byte result itself is not copied for it. */
typedef struct ft_call_report {
    ftrpc_result_kind kind;
    int attempts;
    int backups;
    int backup_won;
    int breaker_rejected; /* the call ended with FTRPC_EBREAKER (before any fallback) */
    int throttled;        /* the call ended with FTRPC_ETHROTTLED (before any fallback) */
    int pushbacks;        /* answers of its attempts that carried a pushback */
    int64_t latency_ns;
} ft_call_report;

/* Records one call's reported outcome. */
void ft_method_metrics_record(ft_method_metrics *mm, const ft_call_report *reported, int retries,
                              int fallback_used, int64_t now_ns);

#endif
