/* The outputs of `ftrpc demo` (see demo.h): a fixed-width table for the terminal, a self-contained
 * HTML report (no scripts, styles inline, one SVG per scenario) and JSON for tests.
 */
#include <stdlib.h>
#include <string.h>

#include "demo.h"

demo_row *demo_add_row(demo_report *r, const char *scenario, const char *policy,
                       const ft_load_stats *s)
{
    if (r->nrows >= DEMO_MAX_ROWS) return NULL;
    demo_row *row = &r->rows[r->nrows];
    memset(row, 0, sizeof *row);
    if (ftrpc_histogram_new(&row->hist) != 0) return NULL;
    r->nrows++;
    snprintf(row->scenario, sizeof row->scenario, "%s", scenario);
    snprintf(row->policy, sizeof row->policy, "%s", policy);
    ftrpc_histogram_copy(row->hist, s->hist);
    row->calls = atomic_load(&s->done);
    row->ok = atomic_load(&s->ok);
    row->attempts = atomic_load(&s->attempts);
    row->backups = atomic_load(&s->backups);
    row->retries = atomic_load(&s->retries);
    row->backup_wins = atomic_load(&s->backup_wins);
    row->fallbacks = atomic_load(&s->fallbacks);
    row->p50_ms = (double)ftrpc_histogram_percentile(s->hist, 0.5) / 1000.0;
    row->p99_ms = (double)ftrpc_histogram_percentile(s->hist, 0.99) / 1000.0;
    row->p999_ms = (double)ftrpc_histogram_percentile(s->hist, 0.999) / 1000.0;
    row->max_ms = (double)ftrpc_histogram_max(s->hist) / 1000.0;
    size_t len = 0;
    for (size_t i = 0; i < s->ncodes && len < sizeof row->errors; i++) {
        const char *name = s->codes[i].code < 0 ? ftrpc_err_name(s->codes[i].code) : NULL;
        if (name && !strncmp(name, "FTRPC_", 6)) name += 6;
        int w = name ? snprintf(row->errors + len, sizeof row->errors - len, "%s%s %ld",
                                i ? ", " : "", name, s->codes[i].count)
                     : snprintf(row->errors + len, sizeof row->errors - len, "%scode %d: %ld",
                                i ? ", " : "", s->codes[i].code, s->codes[i].count);
        if (w < 0) break;
        len += (size_t)w;
    }
    return row;
}

void demo_report_fini(demo_report *r)
{
    for (size_t i = 0; i < r->nrows; i++)
        ftrpc_histogram_free(r->rows[i].hist);
    r->nrows = 0;
}

static double success(const demo_row *row)
{
    return row->calls ? 100.0 * (double)row->ok / (double)row->calls : 0;
}

/* Requests beyond one per call: retries and backups, as a share of calls. */
static double extra(const demo_row *row)
{
    return row->calls ? 100.0 * (double)(row->attempts - row->calls) / (double)row->calls : 0;
}

void demo_print_table(FILE *f, const demo_report *r)
{
    fprintf(f, "%-22s %-22s %6s %8s %8s %8s %8s %7s  %s\n", "scenario", "policy", "calls",
            "success", "p50 ms", "p99 ms", "p99.9 ms", "extra", "what happened");
    const char *prev = "";
    for (size_t i = 0; i < r->nrows; i++) {
        const demo_row *row = &r->rows[i];
        int first = strcmp(prev, row->scenario) != 0;
        if (first && i) fputc('\n', f);
        fprintf(f, "%-22s %-22s %6ld %7.2f%% %8.2f %8.2f %8.2f %6.1f%%  %s\n",
                first ? row->scenario : "", row->policy, row->calls, success(row), row->p50_ms,
                row->p99_ms, row->p999_ms, extra(row), row->note);
        prev = row->scenario;
    }
}

static void html_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else
            fputc(*s, f);
    }
}

void demo_write_html(FILE *f, const demo_report *r)
{
    fprintf(f, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>ftrpc demo</title>"
               "</head>\n<body style=\"font-family:sans-serif;max-width:1100px;margin:auto\">\n"
               "<h1>ftrpc demo: fault tolerance at work</h1>\n");
    fprintf(f,
            "<p>Run at %s on %s, %s mode, %.1f s. Every figure below was measured in this run: "
            "a local cluster of echo servers registered in an embedded <code>dir://</code> "
            "registry, loaded with a fixed number of calls per row. <i>extra</i> = requests "
            "per call beyond the first (retries and backups).</p>\n",
            r->started_at, r->host, r->quick ? "quick" : "full", r->elapsed_s);
    fputs("<table style=\"border-collapse:collapse\" border=\"1\" cellpadding=\"4\">\n<tr>"
          "<th>scenario</th><th>policy</th><th>calls</th><th>success</th><th>p50 ms</th>"
          "<th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>extra</th><th>what happened</th>"
          "</tr>\n",
          f);
    for (size_t i = 0; i < r->nrows; i++) {
        const demo_row *row = &r->rows[i];
        fputs("<tr><td>", f);
        html_text(f, row->scenario);
        fputs("</td><td>", f);
        html_text(f, row->policy);
        fprintf(f,
                "</td><td align=right>%ld</td><td align=right>%.2f%%</td><td align=right>%.2f</td>"
                "<td align=right>%.2f</td><td align=right>%.2f</td><td align=right>%.2f</td>"
                "<td align=right>%.1f%%</td><td>",
                row->calls, success(row), row->p50_ms, row->p99_ms, row->p999_ms, row->max_ms,
                extra(row));
        html_text(f, row->note);
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);
    for (size_t i = 0; i < r->nrows;) {
        size_t j = i;
        ft_cdf_series series[DEMO_MAX_ROWS];
        while (j < r->nrows && !strcmp(r->rows[j].scenario, r->rows[i].scenario)) {
            series[j - i] = (ft_cdf_series){.label = r->rows[j].policy, .hist = r->rows[j].hist};
            j++;
        }
        fputs("<h2>", f);
        html_text(f, r->rows[i].scenario);
        fputs("</h2>\n", f);
        char title[128];
        snprintf(title, sizeof title, "%s: latency CDF", r->rows[i].scenario);
        ft_cdf_svg(f, title, series, j - i, 760, 380);
        i = j;
    }
    fputs("</body></html>\n", f);
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

void demo_write_json(FILE *f, const demo_report *r, const char *html_path)
{
    fprintf(f, "{\n  \"quick\": %s,\n  \"elapsed_s\": %.2f,\n  \"ttl_s\": %.1f,\n",
            r->quick ? "true" : "false", r->elapsed_s, r->ttl_s);
    fprintf(f, "  \"registry_expiry_s\": %.2f,\n  \"report\": ", r->expiry_s);
    json_string(f, html_path ? html_path : "");
    fputs(",\n  \"child_pids\": [", f);
    for (size_t i = 0; i < r->npids; i++)
        fprintf(f, "%s%d", i ? ", " : "", (int)r->pids[i]);
    fputs("],\n  \"scenarios\": [\n", f);
    for (size_t i = 0; i < r->nrows; i++) {
        const demo_row *row = &r->rows[i];
        fputs("    {\"scenario\": ", f);
        json_string(f, row->scenario);
        fputs(", \"policy\": ", f);
        json_string(f, row->policy);
        fprintf(
            f,
            ", \"calls\": %ld, \"ok\": %ld, \"success_rate\": %.6f, \"p50_ms\": %.3f, "
            "\"p99_ms\": %.3f, \"p999_ms\": %.3f, \"max_ms\": %.3f, \"attempts\": %ld, "
            "\"extra_requests\": %.4f, \"retries\": %ld, \"backups\": %ld, \"backup_wins\": %ld, "
            "\"fallbacks\": %ld, \"note\": ",
            row->calls, row->ok, row->calls ? (double)row->ok / (double)row->calls : 0, row->p50_ms,
            row->p99_ms, row->p999_ms, row->max_ms, row->attempts, extra(row) / 100.0, row->retries,
            row->backups, row->backup_wins, row->fallbacks);
        json_string(f, row->note);
        if (row->executed_per_call > 0)
            fprintf(f, ", \"executed_per_call\": %.4f", row->executed_per_call);
        fprintf(f, "}%s\n", i + 1 < r->nrows ? "," : "");
    }
    fputs("  ]\n}\n", f);
}
