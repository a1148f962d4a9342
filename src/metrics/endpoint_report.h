/* The endpoint reporter registry: how the server's /endpoints page and console learn about every
 * client in the process without the server including the client (they are sibling layers,
 * docs/architecture.md, The layer rule).
 *
 * A client registers one reporter (a callback and its argument) when it is made and removes it
 * before it is freed. A page asks every registered reporter, in registration order, to describe
 * its endpoints: the callback calls ft_endpoint_report_add once per endpoint with a row of plain
 * values, and the report formats the rows as text or JSON into an ft_strbuf.
 *
 * Threads: add/remove/render from any thread. One mutex guards the list and is held while the
 * callbacks run, so once ft_endpoint_reporter_remove returns the callback is never called again
 * and its argument may be freed. A callback must be quick, must not block, and must not call
 * add/remove/render itself.
 *
 * A reporter may also offer a switch, through which an operator turns one of its endpoints off
 * and on (ft_endpoint_report_switch); who may do so is the page's business, not this list's.
 *
 * It does not keep history, compute figures or know what an endpoint is beyond the row.
 */
#ifndef FT_METRICS_ENDPOINT_REPORT_H
#define FT_METRICS_ENDPOINT_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "base/strbuf.h"

/* One endpoint as a reporter sees it. Strings are the reporter's, read during the add only. */
typedef struct ft_endpoint_row {
    const char *address;  /* "ip:port" */
    const char *state;    /* "ACTIVE", "TIMEOUT", "SUSPENDED", "PROBING", "OFF" (health's names) */
    int64_t usable_in_ms; /* 0 when usable now; else ms until usable (suspension time left) */
    double ewma_us;       /* peak-EWMA latency, us */
    int inflight;         /* calls in the air to it */
    uint64_t suspensions; /* entries into SUSPENDED so far */
} ft_endpoint_row;

typedef struct ft_endpoint_report ft_endpoint_report;
/* Describes the reporter's endpoints: one ft_endpoint_report_add per endpoint. */
typedef void (*ft_endpoint_report_fn)(ft_endpoint_report *report, void *arg);

typedef struct ft_endpoint_reporter ft_endpoint_reporter;

/* Registers fn(report, arg) under `name` (copied; e.g. the client's naming URL or service).
 * *out is the handle for remove. 0, FTRPC_EINVAL (NULL fn or name) or FTRPC_ENOMEM. */
int ft_endpoint_reporter_add(const char *name, ft_endpoint_report_fn fn, void *arg,
                             ft_endpoint_reporter **out);
/* Unregisters and frees the handle; after it returns fn is not running and never runs again.
 * NULL does nothing. */
void ft_endpoint_reporter_remove(ft_endpoint_reporter *reporter);

/* An operator's switch (the admin page's POST /endpoints): turns the reporter's endpoint `address`
 * off (on = 0) or back on. 0, or FTRPC_ENOENDPOINT when it has no such endpoint. Called under the
 * list's mutex, as the report callbacks are; the same rules apply. */
typedef int (*ft_endpoint_switch_fn)(const char *address, int on, void *arg);
/* Gives the reporter a switch (its `arg` is the reporter's). Any thread. */
void ft_endpoint_reporter_set_switch(ft_endpoint_reporter *reporter, ft_endpoint_switch_fn fn);
/* Asks every reporter named `name` (NULL: every reporter) that has a switch to switch `address`;
 * returns how many did. Any thread. */
size_t ft_endpoint_report_switch(const char *name, const char *address, int on);

/* Called by a reporter's callback: appends one row. */
void ft_endpoint_report_add(ft_endpoint_report *report, const ft_endpoint_row *row);

/* Asks every reporter and appends the result to out: json = 0 gives one line per endpoint
 * ("name address state=... usable_in_ms=... ewma_us=... inflight=... suspensions=..."),
 * json = 1 a JSON array of {"client":..,"endpoints":[{..},..]}. *nrows (may be NULL) gets the
 * row count. 0 or FTRPC_ENOMEM (out hit its bound; what was appended stays). */
int ft_endpoint_report_render(ft_strbuf *out, int json, size_t *nrows);

#endif
