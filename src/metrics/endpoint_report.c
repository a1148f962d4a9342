/* The process-wide endpoint reporter list (see endpoint_report.h). A plain linked list under one
 * mutex: a process has a handful of clients and pages are read a few times a second. */
#include "metrics/endpoint_report.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ftrpc/common.h"

struct ft_endpoint_reporter {
    struct ft_endpoint_reporter *next;
    char *name;
    ft_endpoint_report_fn fn;
    ft_endpoint_switch_fn switch_fn; /* may be NULL */
    void *arg;
};

struct ft_endpoint_report {
    ft_strbuf *out;
    int json;
    const char *name;
    size_t rows_here; /* rows of the current reporter */
    size_t rows;
    int rc;
};

static pthread_mutex_t reporters_lock = PTHREAD_MUTEX_INITIALIZER; /* guards `reporters` */
static ft_endpoint_reporter *reporters;

int ft_endpoint_reporter_add(const char *name, ft_endpoint_report_fn fn, void *arg,
                             ft_endpoint_reporter **out)
{
    if (!name || !fn || !out) return FTRPC_EINVAL;
    ft_endpoint_reporter *r = calloc(1, sizeof *r);
    if (!r || !(r->name = strdup(name))) {
        free(r);
        return FTRPC_ENOMEM;
    }
    r->fn = fn;
    r->arg = arg;
    pthread_mutex_lock(&reporters_lock);
    ft_endpoint_reporter **pp = &reporters;
    while (*pp)
        pp = &(*pp)->next; /* registration order */
    *pp = r;
    pthread_mutex_unlock(&reporters_lock);
    *out = r;
    return 0;
}

void ft_endpoint_reporter_remove(ft_endpoint_reporter *reporter)
{
    if (!reporter) return;
    pthread_mutex_lock(&reporters_lock);
    for (ft_endpoint_reporter **pp = &reporters; *pp; pp = &(*pp)->next) {
        if (*pp == reporter) {
            *pp = reporter->next;
            break;
        }
    }
    pthread_mutex_unlock(&reporters_lock);
    free(reporter->name);
    free(reporter);
}

void ft_endpoint_reporter_set_switch(ft_endpoint_reporter *reporter, ft_endpoint_switch_fn fn)
{
    pthread_mutex_lock(&reporters_lock);
    reporter->switch_fn = fn;
    pthread_mutex_unlock(&reporters_lock);
}

size_t ft_endpoint_report_switch(const char *name, const char *address, int on)
{
    size_t n = 0;
    pthread_mutex_lock(&reporters_lock);
    for (ft_endpoint_reporter *r = reporters; r; r = r->next)
        if (r->switch_fn && (!name || !strcmp(name, r->name)) &&
            r->switch_fn(address, on, r->arg) == 0)
            n++;
    pthread_mutex_unlock(&reporters_lock);
    return n;
}

void ft_endpoint_report_add(ft_endpoint_report *rep, const ft_endpoint_row *row)
{
    if (rep->rc != 0) return;
    ft_strbuf *o = rep->out;
    const char *addr = row->address ? row->address : "?";
    const char *state = row->state ? row->state : "?";
    int rc;
    if (rep->json) {
        rc = ft_strbuf_appends(o, rep->rows_here ? ",{\"address\":" : "{\"address\":");
        if (rc == 0) rc = ft_strbuf_append_json(o, addr);
        if (rc == 0) rc = ft_strbuf_appends(o, ",\"state\":");
        if (rc == 0) rc = ft_strbuf_append_json(o, state);
        if (rc == 0)
            rc = ft_strbuf_appendf(o,
                                   ",\"usable_in_ms\":%lld,\"ewma_us\":%.1f,\"inflight\":%d,"
                                   "\"suspensions\":%llu}",
                                   (long long)row->usable_in_ms, row->ewma_us, row->inflight,
                                   (unsigned long long)row->suspensions);
    } else {
        rc = ft_strbuf_appendf(o,
                               "%s %s state=%s usable_in_ms=%lld ewma_us=%.1f inflight=%d "
                               "suspensions=%llu\n",
                               rep->name, addr, state, (long long)row->usable_in_ms, row->ewma_us,
                               row->inflight, (unsigned long long)row->suspensions);
    }
    rep->rc = rc;
    rep->rows_here++;
    rep->rows++;
}

int ft_endpoint_report_render(ft_strbuf *out, int json, size_t *nrows)
{
    ft_endpoint_report rep = {.out = out, .json = json};
    pthread_mutex_lock(&reporters_lock);
    if (json) rep.rc = ft_strbuf_appends(out, "[");
    int first = 1;
    for (ft_endpoint_reporter *r = reporters; r && rep.rc == 0; r = r->next) {
        rep.name = r->name;
        rep.rows_here = 0;
        if (json) {
            rep.rc = ft_strbuf_appends(out, first ? "{\"client\":" : ",{\"client\":");
            if (rep.rc == 0) rep.rc = ft_strbuf_append_json(out, r->name);
            if (rep.rc == 0) rep.rc = ft_strbuf_appends(out, ",\"endpoints\":[");
        }
        first = 0;
        if (rep.rc == 0) r->fn(&rep, r->arg);
        if (json && rep.rc == 0) rep.rc = ft_strbuf_appends(out, "]}");
    }
    if (json && rep.rc == 0) rep.rc = ft_strbuf_appends(out, "]");
    pthread_mutex_unlock(&reporters_lock);
    if (nrows) *nrows = rep.rows;
    return rep.rc;
}
