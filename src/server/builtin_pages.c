/* The builtin pages served over HTTP on the server's port (as brpc's builtin services):
 * /health, /status, /vars[/NAME], /metrics, /endpoints, /rpcz, /limits and the console at /; and
 * two POSTs: the operator's switch of an endpoint of this process's clients
 * (POST /endpoints?off=HOST:PORT) and of a concurrency limit (POST /limits, docs/overload.md).
 * docs/observability.md describes every page and variable.
 *
 * Pages are rendered on the connection's IO thread from figures that are read lock-free (counters,
 * gauges) or under short metric locks (latency recorders, the registry, the endpoint reporters):
 * microseconds to a millisecond, meant for a few reads a second, like brpc's.
 *
 * /protobufs (brpc's page of that name) lists the services, their methods and message types, from
 * the method table's descriptors (ft_method.pb_method); ftrpc.Control/ListServices answers the
 * same text over baidu_std (server.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "metrics/endpoint_report.h"
#include "metrics/registry.h"
#include "metrics/rpcz.h"
#include "protocol/http.h"
#include "server/console_html.h"
#include "server/server_internal.h"

#define CDF_POINTS 40

static const char *TEXT = "text/plain; charset=utf-8";
static const char *JSON = "application/json";

static int want_json(const char *query)
{
    char v[16];
    return ft_http_query_param(query, "format", v, sizeof v) && strcmp(v, "json") == 0;
}

static const char *state_name(int state)
{
    switch (state) {
    case FT_SERVER_NEW:
        return "new";
    case FT_SERVER_RUNNING:
        return "running";
    case FT_SERVER_STOPPING:
        return "stopping";
    default:
        return "stopped";
    }
}

static void error_codes_json(ft_method *m, ft_strbuf *o)
{
    ft_method_metrics *mm = &m->metrics;
    int n = atomic_load_explicit(&mm->ncodes, memory_order_acquire);
    ft_strbuf_appends(o, "{");
    for (int i = 0; i < n; i++)
        ft_strbuf_appendf(o, "%s\"%d\":%llu", i ? "," : "", (int)mm->codes[i],
                          (unsigned long long)ft_counter_get(mm->errors[i]));
    uint64_t other = ft_counter_get(&mm->errors_other);
    if (other) ft_strbuf_appendf(o, "%s\"other\":%llu", n ? "," : "", (unsigned long long)other);
    ft_strbuf_appends(o, "}");
}

static void error_codes_text(ft_method *m, ft_strbuf *o)
{
    ft_method_metrics *mm = &m->metrics;
    int n = atomic_load_explicit(&mm->ncodes, memory_order_acquire);
    for (int i = 0; i < n; i++)
        ft_strbuf_appendf(o, " %d=%llu", (int)mm->codes[i],
                          (unsigned long long)ft_counter_get(mm->errors[i]));
    uint64_t other = ft_counter_get(&mm->errors_other);
    if (other) ft_strbuf_appendf(o, " other=%llu", (unsigned long long)other);
}

/* ?series=SECONDS: how far back the series of /status?format=json go; 0 (absent): none. */
static int64_t series_span_ns(const char *query)
{
    char v[16];
    if (!ft_http_query_param(query, "series", v, sizeof v)) return 0;
    long seconds = strtol(v, NULL, 10);
    if (seconds > INT64_MAX / FT_NS_PER_SEC) seconds = INT64_MAX / FT_NS_PER_SEC;
    return seconds > 0 ? (int64_t)seconds * FT_NS_PER_SEC : 0;
}

/* A method's points of the last span_ns as columns (docs/observability.md): ages in seconds before
 * now, calls/s, errors/s and p99 in us. pts has room for FT_METHOD_SERIES_POINTS. */
static void series_json(ft_method *m, int64_t span_ns, ft_series_point *pts, ft_strbuf *o)
{
    enum { AGE, QPS, ERRORS, P99, COLUMNS };
    static const char *const NAMES[COLUMNS] = {"age_s", "qps", "errors_per_s", "p99_us"};
    static const int DECIMALS[COLUMNS] = {1, 2, 2, 3};
    size_t n = ft_series_points(&m->metrics.series, pts, FT_METHOD_SERIES_POINTS);
    int64_t now_ns = ft_now_ns(); /* after the copy: no point is younger than now */
    size_t first = 0;
    while (first < n && now_ns - pts[first].at_ns > span_ns)
        first++;
    ft_strbuf_appends(o, ",\"series\":{\"interval_s\":1");
    for (int c = 0; c < COLUMNS; c++) {
        ft_strbuf_appendf(o, ",\"%s\":[", NAMES[c]);
        for (size_t k = first; k < n; k++) {
            const ft_series_point *p = &pts[k];
            double v = c == AGE      ? (double)(now_ns - p->at_ns) / (double)FT_NS_PER_SEC
                       : c == QPS    ? p->calls_per_s
                       : c == ERRORS ? p->errors_per_s
                                     : ft_latency_us(p->p99_ns);
            ft_strbuf_appendf(o, "%s%.*f", k > first ? "," : "", DECIMALS[c], v);
        }
        ft_strbuf_appends(o, "]");
    }
    ft_strbuf_appends(o, "}");
}

static void status_page(ftrpc_server *s, int json, const char *query, ft_strbuf *o)
{
    int state = atomic_load(&s->state);
    double uptime = s->started_ns ? (double)(ft_now_ns() - s->started_ns) / 1e9 : 0;
    int64_t span_ns = json ? series_span_ns(query) : 0;
    ft_series_point *pts = span_ns ? malloc(FT_METHOD_SERIES_POINTS * sizeof *pts) : NULL;
    if (json)
        ft_strbuf_appendf(o,
                          "{\"server\":{\"port\":%d,\"state\":\"%s\",\"connections\":%d,"
                          "\"inflight\":%d,\"uptime_s\":%.1f},\"methods\":[",
                          s->port, state_name(state), atomic_load(&s->sessions),
                          ft_server_calls_in_flight(s), uptime);
    else
        ft_strbuf_appendf(o, "server port=%d state=%s connections=%d inflight=%d uptime_s=%.1f\n",
                          s->port, state_name(state), atomic_load(&s->sessions),
                          ft_server_calls_in_flight(s), uptime);
    for (size_t i = 0; i < s->nmethods; i++) {
        ft_method *m = s->methods[i];
        ft_method_metrics *mm = &m->metrics;
        ft_latency_stats st;
        memset(&st, 0, sizeof st);
        ft_latency_recorder_stats(mm->latency, 0, &st);
        uint64_t errors = ft_method_metrics_errors(m);
        unsigned long long rl = ft_counter_get(&mm->rejected[FT_REJECT_LIMIT]),
                           rd = ft_counter_get(&mm->rejected[FT_REJECT_DEADLINE]),
                           rs = ft_counter_get(&mm->rejected[FT_REJECT_STOPPING]);
        int conc = ft_method_concurrency(m);
        if (!json) {
            ft_strbuf_appendf(o,
                              "\n%s/%s\n"
                              "  count: %llu\n  qps: %.1f\n"
                              "  latency_us: avg=%.3f p50=%.3f p90=%.3f p99=%.3f p999=%.3f "
                              "max=%.3f\n"
                              "  errors: %llu",
                              m->service, m->method, (unsigned long long)st.total_count, st.qps,
                              ft_latency_us(st.mean_ns), ft_latency_us(st.p50_ns),
                              ft_latency_us(st.p90_ns), ft_latency_us(st.p99_ns),
                              ft_latency_us(st.p999_ns), ft_latency_us(st.max_ns),
                              (unsigned long long)errors);
            error_codes_text(m, o);
            ft_strbuf_appendf(o,
                              "\n  concurrency: %d (max %d)\n"
                              "  rejected: limit=%llu deadline=%llu stopping=%llu\n",
                              conc, ft_limit_effective(&m->limit), rl, rd, rs);
            continue;
        }
        ft_strbuf_appends(o, i ? ",{\"service\":" : "{\"service\":");
        ft_strbuf_append_json(o, m->service);
        ft_strbuf_appends(o, ",\"method\":");
        ft_strbuf_append_json(o, m->method);
        ft_strbuf_appendf(o,
                          ",\"count\":%llu,\"qps\":%.3f,\"latency_avg_us\":%.3f,\"p50_us\":%.3f,"
                          "\"p90_us\":%.3f,\"p99_us\":%.3f,\"p999_us\":%.3f,\"max_us\":%.3f,"
                          "\"errors\":%llu,\"errors_by_code\":",
                          (unsigned long long)st.total_count, st.qps, ft_latency_us(st.mean_ns),
                          ft_latency_us(st.p50_ns), ft_latency_us(st.p90_ns),
                          ft_latency_us(st.p99_ns), ft_latency_us(st.p999_ns),
                          ft_latency_us(st.max_ns), (unsigned long long)errors);
        error_codes_json(m, o);
        ft_strbuf_appendf(o,
                          ",\"concurrency\":%d,\"max_concurrency\":%d,"
                          "\"rejected\":{\"limit\":%llu,\"deadline\":%llu,\"stopping\":%llu},"
                          "\"cdf\":[",
                          conc, ft_limit_effective(&m->limit), rl, rd, rs);
        ft_cdf_point cdf[CDF_POINTS];
        size_t n = 0;
        if (ft_latency_recorder_cdf(mm->latency, 0, cdf, CDF_POINTS, &n) != 0) n = 0;
        for (size_t k = 0; k < n; k++)
            ft_strbuf_appendf(o, "%s[%.3f,%.4f]", k ? "," : "", ft_latency_us(cdf[k].value),
                              cdf[k].fraction);
        ft_strbuf_appends(o, "]");
        if (pts) series_json(m, span_ns, pts, o);
        ft_strbuf_appends(o, "}");
    }
    if (json) ft_strbuf_appends(o, "]}");
    free(pts);
}

/* A latency recorder named X shows in /vars as X_count, X_qps, X_latency_p99, ...: /vars/X_qps
 * finds those lines (text), or the recorder X (JSON). */
static void expanded_var(const char *name, int json, ft_page *out, size_t *matched)
{
    static const char *const SUFFIXES[] = {"_count",        "_qps",         "_latency_avg",
                                           "_latency_p50",  "_latency_p90", "_latency_p99",
                                           "_latency_p999", "_max_latency"};
    size_t nl = strlen(name);
    for (size_t i = 0; i < sizeof SUFFIXES / sizeof SUFFIXES[0]; i++) {
        size_t sl = strlen(SUFFIXES[i]);
        if (nl <= sl || strcmp(name + nl - sl, SUFFIXES[i]) != 0 || nl - sl >= 256) continue;
        char base[256];
        memcpy(base, name, nl - sl);
        base[nl - sl] = '\0';
        ft_metrics_filter f = {.name = base};
        if (json) {
            ft_metrics_registry_dump(ft_metrics_default_registry(), FT_METRICS_JSON, &f, &out->body,
                                     matched);
            return;
        }
        ft_strbuf all;
        ft_strbuf_init(&all, (size_t)16 << 20);
        ft_metrics_registry_dump(ft_metrics_default_registry(), FT_METRICS_TEXT, &f, &all, NULL);
        size_t count = 0;
        for (const char *line = ft_strbuf_cstr(&all); *line;) {
            const char *eol = strchr(line, '\n');
            size_t len = eol ? (size_t)(eol - line + 1) : strlen(line);
            if (strncmp(line, name, nl) == 0 && (line[nl] == '{' || line[nl] == ' ')) {
                ft_strbuf_append(&out->body, line, len);
                count++;
            }
            line += len;
        }
        ft_strbuf_fini(&all);
        *matched = count;
        return;
    }
}

static void vars_page(const char *name, const char *query, ft_page *out)
{
    int json = want_json(query);
    ft_metrics_filter f = {0};
    char prefix[256];
    size_t nl = strlen(name);
    if (nl > 0 && name[nl - 1] == '*' && nl < sizeof prefix) {
        /* /vars/rpc_server* : every variable whose name starts so */
        memcpy(prefix, name, nl - 1);
        prefix[nl - 1] = '\0';
        f.prefix = prefix;
    } else if (nl > 0) {
        f.name = name;
    }
    size_t matched = 0;
    ft_metrics_format fmt = json ? FT_METRICS_JSON : FT_METRICS_TEXT;
    ft_metrics_registry_dump(ft_metrics_default_registry(), fmt, &f, &out->body, &matched);
    if (f.name && matched == 0) expanded_var(name, json, out, &matched);
    out->content_type = json ? JSON : TEXT;
    if (nl > 0 && matched == 0) {
        ft_strbuf_reset(&out->body);
        ft_strbuf_appendf(&out->body, "no variable named %s\n", name);
        out->content_type = TEXT;
        out->status = 404;
    }
}

/* A method's message type: its full name, or "bytes" for a method of bytes. */
static const char *message_type(const ft_method *m, int output)
{
    if (!m->pb_method) return "bytes";
    return output ? m->pb_method->output->name : m->pb_method->input->name;
}

void ft_server_list_services(const ftrpc_server *s, int json, ft_strbuf *o)
{
    /* methods are grouped by service in the order their services were first registered */
    if (json) ft_strbuf_appends(o, "{\"services\":[");
    int nservices = 0;
    for (size_t i = 0; i < s->nmethods; i++) {
        const ft_method *first = s->methods[i];
        int seen = 0;
        for (size_t k = 0; k < i && !seen; k++)
            seen = strcmp(s->methods[k]->service, first->service) == 0;
        if (seen) continue;
        if (json) {
            ft_strbuf_appends(o, nservices ? ",{\"name\":" : "{\"name\":");
            ft_strbuf_append_json(o, first->service);
            ft_strbuf_appends(o, ",\"methods\":[");
        } else {
            ft_strbuf_appendf(o, "%s%s\n", nservices ? "\n" : "", first->service);
        }
        nservices++;
        int nmethods = 0;
        for (size_t k = i; k < s->nmethods; k++) {
            const ft_method *m = s->methods[k];
            if (strcmp(m->service, first->service) != 0) continue;
            if (json) {
                ft_strbuf_appends(o, nmethods ? ",{\"name\":" : "{\"name\":");
                ft_strbuf_append_json(o, m->method);
                ft_strbuf_appends(o, ",\"input\":");
                ft_strbuf_append_json(o, message_type(m, 0));
                ft_strbuf_appends(o, ",\"output\":");
                ft_strbuf_append_json(o, message_type(m, 1));
                ft_strbuf_appends(o, "}");
            } else {
                ft_strbuf_appendf(o, "  %s(%s) returns (%s)\n", m->method, message_type(m, 0),
                                  message_type(m, 1));
            }
            nmethods++;
        }
        if (json) ft_strbuf_appends(o, "]}");
    }
    if (json) ft_strbuf_appends(o, "]}");
}

static void limits_page(ftrpc_server *s, ft_strbuf *o);

int ft_builtin_page_known(const char *path)
{
    static const char *const PAGES[] = {"/health", "/status",    "/vars", "/metrics", "/endpoints",
                                        "/rpcz",   "/protobufs", "/",     "/console", "/limits"};
    for (size_t i = 0; i < sizeof PAGES / sizeof PAGES[0]; i++)
        if (strcmp(path, PAGES[i]) == 0) return 1;
    return strncmp(path, "/vars/", 6) == 0;
}

int ft_builtin_page(ftrpc_server *s, const char *path, const char *query, ft_page *out)
{
    ft_strbuf *o = &out->body;
    out->status = 200;
    out->content_type = TEXT;
    if (strcmp(path, "/health") == 0) {
        int running = atomic_load(&s->state) == FT_SERVER_RUNNING;
        out->status = running ? 200 : 503;
        ft_strbuf_appends(o, running ? "OK" : "stopping");
    } else if (strcmp(path, "/status") == 0) {
        int json = want_json(query);
        out->content_type = json ? JSON : TEXT;
        status_page(s, json, query, o);
    } else if (strcmp(path, "/vars") == 0) {
        vars_page("", query, out);
    } else if (strncmp(path, "/vars/", 6) == 0) {
        vars_page(path + 6, query, out);
    } else if (strcmp(path, "/metrics") == 0) {
        out->content_type = "text/plain; version=0.0.4; charset=utf-8";
        ft_metrics_registry_dump(ft_metrics_default_registry(), FT_METRICS_PROMETHEUS, NULL, o,
                                 NULL);
    } else if (strcmp(path, "/limits") == 0) {
        if (ft_http_query_param(query, "max_concurrency", NULL, 0)) {
            out->status = 405;
            ft_strbuf_appends(o, "changing a limit changes state: POST /limits?max_concurrency=V "
                                 "[&service=S&method=M], with the server's credential\n");
        } else {
            limits_page(s, o);
        }
    } else if (strcmp(path, "/endpoints") == 0 && (ft_http_query_param(query, "off", NULL, 0) ||
                                                   ft_http_query_param(query, "on", NULL, 0))) {
        out->status = 405;
        ft_strbuf_appends(o, "switching an endpoint changes state: POST /endpoints?off=HOST:PORT "
                             "(or ?on=), with the server's credential\n");
    } else if (strcmp(path, "/endpoints") == 0) {
        int json = want_json(query);
        out->content_type = json ? JSON : TEXT;
        ft_endpoint_report_render(o, json, NULL);
    } else if (strcmp(path, "/rpcz") == 0) {
        int json = want_json(query);
        out->content_type = json ? JSON : TEXT;
        ft_rpcz_render(o, json);
    } else if (strcmp(path, "/protobufs") == 0) {
        int json = want_json(query);
        out->content_type = json ? JSON : TEXT;
        ft_server_list_services(s, json, o);
    } else if (strcmp(path, "/") == 0 || strcmp(path, "/console") == 0) {
        out->content_type = "text/html; charset=utf-8";
        ft_strbuf_appends(o, FT_CONSOLE_HTML);
    } else {
        return 0;
    }
    return 1;
}

/* Copies a query value, decoding %XX (a naming URL's ':' '/' ',' may come escaped). 0 when the
 * value is too long or malformed. */
static int query_value(const char *query, const char *key, char *buf, size_t len)
{
    char raw[512];
    if (!ft_http_query_param(query, key, raw, sizeof raw) || strlen(raw) >= sizeof raw - 1)
        return 0;
    size_t n = 0;
    for (const char *p = raw; *p; p++) {
        char c = *p;
        if (c == '%') {
            char hex[3] = {p[1], p[1] ? p[2] : 0, 0};
            char *end;
            long v = strtol(hex, &end, 16);
            if (end != hex + 2 || v <= 0) return 0;
            c = (char)v;
            p += 2;
        }
        if (n + 1 >= len) return 0;
        buf[n++] = c;
    }
    buf[n] = '\0';
    return n > 0;
}

static void limit_line(ft_strbuf *o, const char *name, const ft_limit *l)
{
    int v = ft_limit_value(l);
    ft_strbuf_appendf(o, "%s max_concurrency=", name);
    if (v == FTRPC_CONCURRENCY_AUTO)
        ft_strbuf_appends(o, "auto");
    else if (v == FTRPC_CONCURRENCY_TIMEOUT)
        ft_strbuf_appends(o, "timeout");
    else if (v > 0)
        ft_strbuf_appendf(o, "%d", v);
    else
        ft_strbuf_appends(o, "none");
    ft_strbuf_appendf(o, " effective=%d inflight=%d avg_latency_us=%lld\n", ft_limit_effective(l),
                      atomic_load(&((ft_limit *)l)->inflight),
                      (long long)atomic_load(&((ft_limit *)l)->avg_latency_ns) / 1000);
}

/* GET /limits: the server-wide limit and each method's. */
static void limits_page(ftrpc_server *s, ft_strbuf *o)
{
    limit_line(o, "server", &s->limit);
    for (size_t i = 0; i < s->nmethods; i++) {
        char name[600];
        snprintf(name, sizeof name, "%s/%s", s->methods[i]->service, s->methods[i]->method);
        limit_line(o, name, &s->methods[i]->limit);
    }
}

/* POST /limits?max_concurrency=V[&service=S&method=M]: ftrpc_server_set_max_concurrency from the
 * operator's seat (docs/overload.md). */
static void limits_post(ftrpc_server *s, const char *query, ft_page *out)
{
    ft_strbuf *o = &out->body;
    char value[32], service[256], method[256];
    int v = 0;
    int named = query_value(query, "service", service, sizeof service);
    int has_method = query_value(query, "method", method, sizeof method);
    if (!query_value(query, "max_concurrency", value, sizeof value) ||
        ftrpc_max_concurrency_parse(value, &v) != 0 || named != has_method) {
        out->status = 400;
        ft_strbuf_appends(o, "POST /limits?max_concurrency=N|auto|timeout|none "
                             "[&service=NAME&method=NAME] (without them: server-wide)\n");
        return;
    }
    int rc = ftrpc_server_set_max_concurrency(s, named ? service : NULL, named ? method : NULL, v);
    if (rc == FTRPC_ENOMETHOD) {
        out->status = 404;
        ft_strbuf_appendf(o, "no method %s/%s\n", service, method);
        return;
    }
    if (rc != 0) {
        out->status = 400;
        ft_strbuf_appendf(o, "%s\n", ftrpc_strerror(rc));
        return;
    }
    limits_page(s, o);
}

int ft_builtin_post(ftrpc_server *s, const char *path, const char *query, ft_page *out)
{
    int limits = strcmp(path, "/limits") == 0;
    if (!limits && strcmp(path, "/endpoints") != 0) return 0;
    ft_strbuf *o = &out->body;
    out->status = 200;
    out->content_type = TEXT;
    if (!ft_server_needs_auth(s)) {
        /* anyone who reaches the port could take a service's endpoints away, or its limits */
        out->status = 403;
        ft_strbuf_appendf(o,
                          "%s needs a server with authentication (auth_token or authenticator)\n",
                          limits ? "changing limits" : "switching endpoints");
        return 1;
    }
    if (limits) {
        limits_post(s, query, out);
        return 1;
    }
    char addr[64], client[256];
    int off = query_value(query, "off", addr, sizeof addr);
    int on = !off && query_value(query, "on", addr, sizeof addr);
    int named = query_value(query, "client", client, sizeof client);
    if (!off && !on) {
        out->status = 400;
        ft_strbuf_appends(o, "POST /endpoints?off=HOST:PORT or ?on=HOST:PORT [&client=NAME]\n");
        return 1;
    }
    size_t n = ft_endpoint_report_switch(named ? client : NULL, addr, on);
    if (n == 0) {
        out->status = 404;
        ft_strbuf_appendf(o, "no client of this process lists %s%s%s\n", addr,
                          named ? " under " : "", named ? client : "");
        return 1;
    }
    ft_strbuf_appendf(o, "%s switched %s in %zu client%s\n", addr, on ? "ON" : "OFF", n,
                      n == 1 ? "" : "s");
    return 1;
}
