/* The rows of `ftrpc demo` and their outputs: the terminal table, the HTML report (the table and
 * one inline SVG CDF per scenario) and the JSON figures read by tests/integration/test_demo.c.
 * Every figure in a row comes from a load run of the demo (cmd_demo.c); nothing here invents one.
 */
#ifndef FT_CLI_DEMO_H
#define FT_CLI_DEMO_H

#include <stdio.h>
#include <sys/types.h>

#include "load.h"

#define DEMO_MAX_ROWS 32

typedef struct demo_row {
    char scenario[64]; /* rows of one scenario share it and one CDF plot */
    char policy[64];
    char note[200];
    char errors[120]; /* "ECONNREFUSED 2, EEOF 1": the run's errors by code, "" when none */
    long calls, ok, attempts, retries, backups, backup_wins, fallbacks;
    double p50_ms, p99_ms, p999_ms, max_ms;
    double executed_per_call; /* handler runs per call, counted by the servers; 0: not counted */
    ftrpc_histogram *hist;    /* a copy of the run's latencies, owned by the row */
} demo_row;

typedef struct demo_report {
    demo_row rows[DEMO_MAX_ROWS];
    size_t nrows;
    int quick;
    double elapsed_s;
    double expiry_s; /* registry entry of a killed node gone after this long; < 0: never seen */
    double ttl_s;
    pid_t pids[64]; /* every child started, for the record and for tests */
    size_t npids;
    char started_at[64]; /* UTC, ISO 8601 */
    char host[128];
} demo_report;

/* Adds a row made from a finished run. Returns the row, or NULL when the table is full. */
demo_row *demo_add_row(demo_report *r, const char *scenario, const char *policy,
                       const ft_load_stats *s);
void demo_report_fini(demo_report *r);

void demo_print_table(FILE *f, const demo_report *r);
/* Write the report to f (the caller opened it before the run, and closes it). */
void demo_write_html(FILE *f, const demo_report *r);
void demo_write_json(FILE *f, const demo_report *r, const char *html_path);

#endif
