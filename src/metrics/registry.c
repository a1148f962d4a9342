/* Registry of named metrics and its three exposition formats (see registry.h). */
#include "metrics/registry.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ftrpc/common.h"

typedef struct entry {
    ft_metric_kind kind;
    void *var;
    char *name;   /* as registered */
    char *family; /* Prometheus-sanitized name */
    char *help;   /* NULL: a default is made up */
    size_t nlabels;
    char **keys;     /* sanitized */
    char **values;   /* raw; escaped when written */
    char *label_key; /* keys and values joined with '\0'-free separators: for ordering and dups */
} entry;

struct ft_metrics_registry {
    pthread_mutex_t lock; /* guards items, n, cap and every entry */
    entry **items;        /* sorted: family, name, label_key */
    size_t n, cap;
};

/* ---- names and escaping ---- */

int ft_metrics_prom_name(ft_strbuf *out, const char *name, int allow_colon)
{
    int rc = 0;
    if (name[0] >= '0' && name[0] <= '9') rc = ft_strbuf_append(out, "_", 1);
    for (const char *p = name; *p && rc == 0; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || (allow_colon && c == ':');
        rc = ft_strbuf_append(out, ok ? &c : "_", 1);
    }
    return rc;
}

int ft_metrics_prom_escape_label(ft_strbuf *out, const char *value)
{
    int rc = 0;
    for (const char *p = value; *p && rc == 0; p++) {
        switch (*p) {
        case '\\':
            rc = ft_strbuf_append(out, "\\\\", 2);
            break;
        case '"':
            rc = ft_strbuf_append(out, "\\\"", 2);
            break;
        case '\n':
            rc = ft_strbuf_append(out, "\\n", 2);
            break;
        default:
            rc = ft_strbuf_append(out, p, 1);
        }
    }
    return rc;
}

static int escape_help(ft_strbuf *out, const char *text)
{
    int rc = 0;
    for (const char *p = text; *p && rc == 0; p++) {
        if (*p == '\\')
            rc = ft_strbuf_append(out, "\\\\", 2);
        else if (*p == '\n')
            rc = ft_strbuf_append(out, "\\n", 2);
        else
            rc = ft_strbuf_append(out, p, 1);
    }
    return rc;
}

static int escape_json(ft_strbuf *out, const char *s)
{
    return ft_strbuf_append_json(out, s);
}

static int valid_name(const char *name)
{
    if (!name || !name[0]) return 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (*p <= ' ' || *p == 0x7f || *p == '{' || *p == '}' || *p == '"' || *p == '\\') return 0;
    }
    return 1;
}

/* Integers as integers, anything else with 3 decimals; non-finite values as Prometheus spells
 * them (JSON callers never produce them: qps and means are finite). */
static int append_number(ft_strbuf *out, double v)
{
    if (isnan(v)) return ft_strbuf_appends(out, "NaN");
    if (isinf(v)) return ft_strbuf_appends(out, v > 0 ? "+Inf" : "-Inf");
    if (v == floor(v) && fabs(v) < 1e15) return ft_strbuf_appendf(out, "%.0f", v);
    return ft_strbuf_appendf(out, "%.3f", v);
}

/* ---- the table ---- */

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void entry_free(entry *e)
{
    if (!e) return;
    for (size_t i = 0; i < e->nlabels; i++) {
        if (e->keys) free(e->keys[i]);
        if (e->values) free(e->values[i]);
    }
    free(e->keys);
    free(e->values);
    free(e->name);
    free(e->family);
    free(e->help);
    free(e->label_key);
    free(e);
}

static int entry_cmp(const entry *a, const entry *b)
{
    int c = strcmp(a->family, b->family);
    if (c == 0) c = strcmp(a->name, b->name);
    if (c == 0) c = strcmp(a->label_key, b->label_key);
    return c;
}

static char *sanitized(const char *s, int allow_colon)
{
    ft_strbuf sb;
    ft_strbuf_init(&sb, 0);
    if (ft_metrics_prom_name(&sb, s, allow_colon) != 0) {
        ft_strbuf_fini(&sb);
        return NULL;
    }
    return sb.data;
}

static int entry_make(ft_metric_kind kind, void *var, const char *name, const char *help,
                      const ft_metric_label *labels, size_t nlabels, entry **out)
{
    entry *e = calloc(1, sizeof *e);
    if (!e) return FTRPC_ENOMEM;
    e->kind = kind;
    e->var = var;
    e->nlabels = nlabels;
    e->name = dup_str(name);
    e->family = sanitized(name, 1);
    e->help = help ? dup_str(help) : NULL;
    e->keys = calloc(nlabels ? nlabels : 1, sizeof *e->keys);
    e->values = calloc(nlabels ? nlabels : 1, sizeof *e->values);
    ft_strbuf key;
    ft_strbuf_init(&key, 0);
    int rc = (!e->name || !e->family || (help && !e->help) || !e->keys || !e->values)
                 ? FTRPC_ENOMEM
                 : ft_strbuf_append(&key, "", 0);
    for (size_t i = 0; i < nlabels && rc == 0; i++) {
        e->keys[i] = sanitized(labels[i].key, 0);
        e->values[i] = dup_str(labels[i].value);
        if (!e->keys[i] || !e->values[i])
            rc = FTRPC_ENOMEM;
        else
            rc = ft_strbuf_appendf(&key, "%s\x01%s\x02", e->keys[i], e->values[i]);
    }
    if (rc) {
        ft_strbuf_fini(&key);
        entry_free(e);
        return rc;
    }
    e->label_key = key.data;
    *out = e;
    return 0;
}

int ft_metrics_registry_new(ft_metrics_registry **out)
{
    ft_metrics_registry *reg = calloc(1, sizeof *reg);
    if (!reg || pthread_mutex_init(&reg->lock, NULL) != 0) {
        free(reg);
        return FTRPC_ENOMEM;
    }
    *out = reg;
    return 0;
}

void ft_metrics_registry_free(ft_metrics_registry *reg)
{
    if (!reg) return;
    for (size_t i = 0; i < reg->n; i++)
        entry_free(reg->items[i]);
    free(reg->items);
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}

static ft_metrics_registry *default_registry;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void make_default(void)
{
    if (ft_metrics_registry_new(&default_registry) != 0) default_registry = NULL;
}

ft_metrics_registry *ft_metrics_default_registry(void)
{
    pthread_once(&default_once, make_default);
    return default_registry;
}

int ft_metrics_registry_add(ft_metrics_registry *reg, ft_metric_kind kind, void *var,
                            const char *name, const char *help, const ft_metric_label *labels,
                            size_t nlabels)
{
    if (!reg || !var || !valid_name(name) || (nlabels && !labels)) return FTRPC_EINVAL;
    if (kind != FT_METRIC_COUNTER && kind != FT_METRIC_GAUGE && kind != FT_METRIC_LATENCY)
        return FTRPC_EINVAL;
    for (size_t i = 0; i < nlabels; i++) {
        if (!labels[i].key || !labels[i].key[0] || !labels[i].value) return FTRPC_EINVAL;
        /* a summary's own label */
        if (kind == FT_METRIC_LATENCY && strcmp(labels[i].key, "quantile") == 0)
            return FTRPC_EINVAL;
    }
    entry *e;
    int rc = entry_make(kind, var, name, help, labels, nlabels, &e);
    if (rc) return rc;

    pthread_mutex_lock(&reg->lock);
    size_t pos = 0;
    for (; pos < reg->n; pos++) {
        const entry *o = reg->items[pos];
        if (strcmp(o->family, e->family) == 0 && o->kind != e->kind) {
            rc = FTRPC_EEXIST;
            break;
        }
        int c = entry_cmp(o, e);
        if (c == 0) {
            rc = FTRPC_EEXIST;
            break;
        }
        if (c > 0) break;
    }
    /* Entries after pos in the same family must be checked for a kind clash too. */
    for (size_t j = pos; rc == 0 && j < reg->n && strcmp(reg->items[j]->family, e->family) == 0;
         j++) {
        if (reg->items[j]->kind != e->kind) rc = FTRPC_EEXIST;
    }
    if (rc == 0 && reg->n == reg->cap) {
        size_t cap = reg->cap ? reg->cap * 2 : 16;
        entry **items = realloc(reg->items, cap * sizeof *items);
        if (!items) {
            rc = FTRPC_ENOMEM;
        } else {
            reg->items = items;
            reg->cap = cap;
        }
    }
    if (rc == 0) {
        memmove(&reg->items[pos + 1], &reg->items[pos], (reg->n - pos) * sizeof *reg->items);
        reg->items[pos] = e;
        reg->n++;
    }
    pthread_mutex_unlock(&reg->lock);
    if (rc) entry_free(e);
    return rc;
}

int ft_metrics_registry_remove(ft_metrics_registry *reg, const void *var)
{
    if (!reg || !var) return FTRPC_EINVAL;
    size_t removed = 0;
    pthread_mutex_lock(&reg->lock);
    size_t k = 0;
    for (size_t i = 0; i < reg->n; i++) {
        if (reg->items[i]->var == var) {
            entry_free(reg->items[i]);
            removed++;
        } else {
            reg->items[k++] = reg->items[i];
        }
    }
    reg->n = k;
    pthread_mutex_unlock(&reg->lock);
    return removed ? 0 : FTRPC_EINVAL;
}

size_t ft_metrics_registry_size(ft_metrics_registry *reg)
{
    pthread_mutex_lock(&reg->lock);
    size_t n = reg->n;
    pthread_mutex_unlock(&reg->lock);
    return n;
}

/* ---- exposition ---- */

static int matches(const entry *e, const ft_metrics_filter *f)
{
    if (!f) return 1;
    if (f->name && strcmp(e->name, f->name) != 0) return 0;
    if (f->prefix && strncmp(e->name, f->prefix, strlen(f->prefix)) != 0) return 0;
    return 1;
}

/* {k="v",...} with escaped values, plus an extra pair (quantile) when extra_key is set; nothing
 * at all when there are no pairs. */
static int append_labels(ft_strbuf *out, const entry *e, const char *extra_key,
                         const char *extra_value)
{
    if (e->nlabels == 0 && !extra_key) return 0;
    int rc = ft_strbuf_append(out, "{", 1);
    for (size_t i = 0; i < e->nlabels && rc == 0; i++) {
        rc = ft_strbuf_appendf(out, "%s%s=\"", i ? "," : "", e->keys[i]);
        if (rc == 0) rc = ft_metrics_prom_escape_label(out, e->values[i]);
        if (rc == 0) rc = ft_strbuf_append(out, "\"", 1);
    }
    if (rc == 0 && extra_key)
        rc = ft_strbuf_appendf(out, "%s%s=\"%s\"", e->nlabels ? "," : "", extra_key, extra_value);
    return rc ? rc : ft_strbuf_append(out, "}", 1);
}

typedef struct latency_row {
    const char *suffix;
    double value;
} latency_row;

/* The expanded values of a latency recorder, in the order TEXT and JSON list them. */
static size_t latency_rows(const entry *e, latency_row rows[8])
{
    ft_latency_stats s;
    memset(&s, 0, sizeof s);
    (void)ft_latency_recorder_stats(e->var, 0, &s); /* window 0 is always valid */
    rows[0] = (latency_row){"count", (double)s.total_count};
    rows[1] = (latency_row){"qps", s.qps};
    rows[2] = (latency_row){"latency_avg", ft_latency_us(s.mean_ns)};
    rows[3] = (latency_row){"latency_p50", ft_latency_us(s.p50_ns)};
    rows[4] = (latency_row){"latency_p90", ft_latency_us(s.p90_ns)};
    rows[5] = (latency_row){"latency_p99", ft_latency_us(s.p99_ns)};
    rows[6] = (latency_row){"latency_p999", ft_latency_us(s.p999_ns)};
    rows[7] = (latency_row){"max_latency", ft_latency_us(s.max_ns)};
    return 8;
}

static double scalar_value(const entry *e)
{
    if (e->kind == FT_METRIC_COUNTER) return (double)ft_counter_get(e->var);
    return (double)ft_gauge_get(e->var);
}

static int append_scalar(ft_strbuf *out, const entry *e)
{
    if (e->kind == FT_METRIC_COUNTER)
        return ft_strbuf_appendf(out, "%llu", (unsigned long long)ft_counter_get(e->var));
    return ft_strbuf_appendf(out, "%lld", (long long)ft_gauge_get(e->var));
}

static int dump_text(const entry *e, ft_strbuf *out)
{
    int rc = 0;
    if (e->kind != FT_METRIC_LATENCY) {
        rc = ft_strbuf_appends(out, e->name);
        if (rc == 0) rc = append_labels(out, e, NULL, NULL);
        if (rc == 0) rc = ft_strbuf_appends(out, " : ");
        if (rc == 0) rc = append_scalar(out, e);
        return rc ? rc : ft_strbuf_append(out, "\n", 1);
    }
    latency_row rows[8];
    size_t n = latency_rows(e, rows);
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = ft_strbuf_appendf(out, "%s_%s", e->name, rows[i].suffix);
        if (rc == 0) rc = append_labels(out, e, NULL, NULL);
        if (rc == 0) rc = ft_strbuf_appends(out, " : ");
        if (rc == 0) rc = append_number(out, rows[i].value);
        if (rc == 0) rc = ft_strbuf_append(out, "\n", 1);
    }
    return rc;
}

static const char *kind_name(ft_metric_kind k)
{
    return k == FT_METRIC_COUNTER ? "counter" : k == FT_METRIC_GAUGE ? "gauge" : "latency";
}

static int dump_json(const entry *e, int first, ft_strbuf *out)
{
    int rc = ft_strbuf_appends(out, first ? "\n{\"name\":" : ",\n{\"name\":");
    if (rc == 0) rc = escape_json(out, e->name);
    if (rc == 0) rc = ft_strbuf_appendf(out, ",\"type\":\"%s\",\"labels\":{", kind_name(e->kind));
    for (size_t i = 0; i < e->nlabels && rc == 0; i++) {
        if (i) rc = ft_strbuf_append(out, ",", 1);
        if (rc == 0) rc = escape_json(out, e->keys[i]);
        if (rc == 0) rc = ft_strbuf_append(out, ":", 1);
        if (rc == 0) rc = escape_json(out, e->values[i]);
    }
    if (rc == 0) rc = ft_strbuf_append(out, "}", 1);
    if (e->kind != FT_METRIC_LATENCY) {
        if (rc == 0) rc = ft_strbuf_appends(out, ",\"value\":");
        if (rc == 0) rc = append_scalar(out, e);
    } else {
        latency_row rows[8];
        size_t n = latency_rows(e, rows);
        for (size_t i = 0; i < n && rc == 0; i++) {
            rc = ft_strbuf_appendf(out, ",\"%s\":", rows[i].suffix);
            if (rc == 0) rc = append_number(out, rows[i].value);
        }
    }
    return rc ? rc : ft_strbuf_append(out, "}", 1);
}

static int prom_header(ft_strbuf *out, const char *family, const char *help, const char *type)
{
    int rc = ft_strbuf_appendf(out, "# HELP %s ", family);
    if (rc == 0) rc = escape_help(out, help);
    if (rc == 0) rc = ft_strbuf_appendf(out, "\n# TYPE %s %s\n", family, type);
    return rc;
}

static int prom_sample(ft_strbuf *out, const entry *e, const char *suffix, const char *qkey,
                       const char *qval, double v)
{
    int rc = ft_strbuf_appendf(out, "%s%s", e->family, suffix);
    if (rc == 0) rc = append_labels(out, e, qkey, qval);
    if (rc == 0) rc = ft_strbuf_append(out, " ", 1);
    if (rc == 0) rc = append_number(out, v);
    return rc ? rc : ft_strbuf_append(out, "\n", 1);
}

/* One family: items[from, to) share e->family and kind. */
static int dump_prom_family(entry **items, size_t from, size_t to, ft_strbuf *out)
{
    const entry *head = items[from];
    ft_strbuf help;
    ft_strbuf_init(&help, 0);
    int rc = head->help
                 ? ft_strbuf_appends(&help, head->help)
                 : ft_strbuf_appendf(&help, "%s%s", head->name,
                                     head->kind == FT_METRIC_LATENCY ? " (microseconds)" : "");
    if (rc) {
        ft_strbuf_fini(&help);
        return rc;
    }
    if (head->kind != FT_METRIC_LATENCY) {
        rc = prom_header(out, head->family, ft_strbuf_cstr(&help),
                         head->kind == FT_METRIC_COUNTER ? "counter" : "gauge");
        for (size_t i = from; i < to && rc == 0; i++)
            rc = prom_sample(out, items[i], "", NULL, NULL, scalar_value(items[i]));
        ft_strbuf_fini(&help);
        return rc;
    }

    /* Read every recorder once so that the summary and its gauges agree. */
    size_t n = to - from;
    ft_latency_stats *st = calloc(n, sizeof *st);
    if (!st) {
        ft_strbuf_fini(&help);
        return FTRPC_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        (void)ft_latency_recorder_stats(items[from + i]->var, 0, &st[i]);

    rc = prom_header(out, head->family, ft_strbuf_cstr(&help), "summary");
    for (size_t i = 0; i < n && rc == 0; i++) {
        const entry *e = items[from + i];
        rc = prom_sample(out, e, "", "quantile", "0.5", ft_latency_us(st[i].p50_ns));
        if (rc == 0) rc = prom_sample(out, e, "", "quantile", "0.9", ft_latency_us(st[i].p90_ns));
        if (rc == 0) rc = prom_sample(out, e, "", "quantile", "0.99", ft_latency_us(st[i].p99_ns));
        if (rc == 0)
            rc = prom_sample(out, e, "", "quantile", "0.999", ft_latency_us(st[i].p999_ns));
        if (rc == 0)
            rc = prom_sample(out, e, "_sum", NULL, NULL, ft_latency_us(st[i].total_sum_ns));
        if (rc == 0) rc = prom_sample(out, e, "_count", NULL, NULL, (double)st[i].total_count);
    }
    static const char *const extra[2] = {"_qps", "_max_latency"};
    static const char *const extra_help[2] = {"calls per second over the window",
                                              "largest latency over the window (microseconds)"};
    for (int k = 0; k < 2 && rc == 0; k++) {
        ft_strbuf fam;
        ft_strbuf_init(&fam, 0);
        rc = ft_strbuf_appendf(&fam, "%s%s", head->family, extra[k]);
        if (rc == 0) rc = prom_header(out, ft_strbuf_cstr(&fam), extra_help[k], "gauge");
        ft_strbuf_fini(&fam);
        for (size_t i = 0; i < n && rc == 0; i++) {
            double v = k == 0 ? st[i].qps : ft_latency_us(st[i].max_ns);
            rc = prom_sample(out, items[from + i], extra[k], NULL, NULL, v);
        }
    }
    free(st);
    ft_strbuf_fini(&help);
    return rc;
}

int ft_metrics_registry_dump(ft_metrics_registry *reg, ft_metrics_format format,
                             const ft_metrics_filter *filter, ft_strbuf *out, size_t *matched)
{
    if (!reg || !out ||
        (format != FT_METRICS_TEXT && format != FT_METRICS_JSON && format != FT_METRICS_PROMETHEUS))
        return FTRPC_EINVAL;
    size_t count = 0;
    int rc = 0;
    pthread_mutex_lock(&reg->lock);
    if (format == FT_METRICS_JSON) rc = ft_strbuf_append(out, "[", 1);
    for (size_t i = 0; i < reg->n && rc == 0;) {
        if (format == FT_METRICS_PROMETHEUS) {
            /* Gather the matching members of this family, in place: they are adjacent. */
            size_t j = i;
            while (j < reg->n && strcmp(reg->items[j]->family, reg->items[i]->family) == 0)
                j++;
            entry *stack[32];
            entry **sel = j - i <= 32 ? stack : malloc((j - i) * sizeof *sel);
            if (!sel) {
                rc = FTRPC_ENOMEM;
                break;
            }
            size_t k = 0;
            for (size_t m = i; m < j; m++) {
                if (matches(reg->items[m], filter)) sel[k++] = reg->items[m];
            }
            if (k) rc = dump_prom_family(sel, 0, k, out);
            count += k;
            if (sel != stack) free(sel);
            i = j;
            continue;
        }
        const entry *e = reg->items[i++];
        if (!matches(e, filter)) continue;
        rc = format == FT_METRICS_TEXT ? dump_text(e, out) : dump_json(e, count == 0, out);
        count++;
    }
    if (rc == 0 && format == FT_METRICS_JSON) rc = ft_strbuf_appends(out, count ? "\n]\n" : "]\n");
    pthread_mutex_unlock(&reg->lock);
    if (matched) *matched = count;
    return rc;
}
