/* The registry of named metric variables and their exposition (text, JSON, Prometheus).
 *
 * A registry maps (name, labels) to a variable the caller owns: an ft_counter, an ft_gauge or an
 * ft_latency_recorder. It never frees a variable; the owner removes it (ft_metrics_registry_remove)
 * before freeing it, and once remove returns no dump touches it any more. One mutex guards the
 * table; dumps hold it while they read the variables (and, for latency recorders, take each
 * recorder's own lock inside it; recorders never take the registry's, so the order is fixed).
 *
 * Entries are kept sorted by Prometheus family name, then name, then labels, so every format lists
 * them in a stable order and a Prometheus family with several label sets gets one HELP/TYPE.
 *
 * Names: non-empty, printable, no spaces, braces, quotes or backslashes (FTRPC_EINVAL otherwise).
 * For Prometheus they are sanitized to [a-zA-Z_:][a-zA-Z0-9_:]* (every other byte becomes '_', a
 * leading digit gets a '_' in front); label keys are sanitized the same way, without ':', at
 * registration, and that is the key every format shows. Two names that sanitize to the same
 * family must be of the same kind. Latency values are in microseconds (recorders hold nanoseconds:
 * a value has up to 3 decimals).
 *
 * Formats, per variable (value formatting: integers as integers, other numbers with 3 decimals):
 *   TEXT (brpc /vars):  name{k="v"} : value
 *       a latency recorder gives name_count (all-time), name_qps, name_latency_avg,
 *       name_latency_p50, _p90, _p99, _p999 and name_max_latency (over its window).
 *   JSON: an array with one object per variable:
 *       {"name":..,"type":"counter"|"gauge"|"latency","labels":{..},"value":..} or, for latency,
 *       "count","qps","latency_avg","latency_p50","latency_p90","latency_p99","latency_p999",
 *       "max_latency" in place of "value".
 *   PROMETHEUS (text exposition 0.0.4): counters as counter, gauges as gauge, latency recorders as
 *       summary (quantile 0.5/0.9/0.99/0.999 over the window, _sum and _count all-time) followed by
 *       the gauges name_qps and name_max_latency. Label values escape \ " and newline; HELP text
 *       escapes \ and newline.
 *
 * It does not do histograms-as-buckets for Prometheus, metric expiry, or an HTTP server. */
#ifndef FT_METRICS_REGISTRY_H
#define FT_METRICS_REGISTRY_H

#include <stddef.h>

#include "base/strbuf.h"
#include "metrics/counter.h"
#include "metrics/latency_recorder.h"

typedef enum ft_metric_kind {
    FT_METRIC_COUNTER, /* var is an ft_counter * */
    FT_METRIC_GAUGE,   /* var is an ft_gauge * */
    FT_METRIC_LATENCY, /* var is an ft_latency_recorder * */
} ft_metric_kind;

typedef struct ft_metric_label {
    const char *key;
    const char *value;
} ft_metric_label;

typedef enum ft_metrics_format {
    FT_METRICS_TEXT,
    FT_METRICS_JSON,
    FT_METRICS_PROMETHEUS,
} ft_metrics_format;

/* Which variables a dump shows. Zeroed (or a NULL pointer): all of them. */
typedef struct ft_metrics_filter {
    const char *name;   /* when set, only variables with exactly this name (a /vars/NAME page) */
    const char *prefix; /* when set, only variables whose name starts with it */
} ft_metrics_filter;

/* Threads: every function below may be called from any thread. */
typedef struct ft_metrics_registry ft_metrics_registry;

/* 0 and *out, or FTRPC_ENOMEM. */
int ft_metrics_registry_new(ft_metrics_registry **out);
/* Frees the table (not the variables). No other call may run meanwhile. _free(NULL) is a no-op. */
void ft_metrics_registry_free(ft_metrics_registry *reg);
/* The process-wide registry, made on first use, never freed. */
ft_metrics_registry *ft_metrics_default_registry(void);

/* Registers var under name and labels (copied; the caller keeps its strings). help may be NULL.
 * Returns 0; FTRPC_EINVAL for a bad name, label key, kind or NULL var; FTRPC_EEXIST when the same
 * name and labels are registered already, or the family has another kind; FTRPC_ENOMEM. */
int ft_metrics_registry_add(ft_metrics_registry *reg, ft_metric_kind kind, void *var,
                            const char *name, const char *help, const ft_metric_label *labels,
                            size_t nlabels);
/* Removes every entry pointing at var. 0, or FTRPC_EINVAL when there was none. */
int ft_metrics_registry_remove(ft_metrics_registry *reg, const void *var);
/* How many entries are registered. */
size_t ft_metrics_registry_size(ft_metrics_registry *reg);

/* Appends the matching variables to out in the given format. *matched (may be NULL) gets how many
 * variables were written. 0, FTRPC_EINVAL (bad format) or FTRPC_ENOMEM (out hit its bound; what was
 * appended stays). */
int ft_metrics_registry_dump(ft_metrics_registry *reg, ft_metrics_format format,
                             const ft_metrics_filter *filter, ft_strbuf *out, size_t *matched);

/* Exposed for tests and for other exporters: the Prometheus-sanitized form of name / a label key,
 * and escaping of a label value. 0 or FTRPC_ENOMEM. */
int ft_metrics_prom_name(ft_strbuf *out, const char *name, int allow_colon);
int ft_metrics_prom_escape_label(ft_strbuf *out, const char *value);

#endif
