/* list:// — a static endpoint list in the URL itself:
 *   list://ADDR[ OPT...][,ADDR[ OPT...]]...   OPT = w=N | tag=a|b, separated by ' ', '\t' or ';'
 * e.g. "list://127.0.0.1:8000 w=50 tag=a|b,127.0.0.1:8001". The list is parsed once at open (a
 * bad element fails the open: a typo must not silently drop a server) and never changes, so the
 * watch delivers it once, inside watch_start, and needs no thread. No query parameters. */
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "naming/naming.h"

typedef struct list_ns {
    ft_naming base;
    ft_endpoint_list list;
} list_ns;

static int list_open(const ft_naming_url *url, ft_naming **out)
{
    if (ft_naming_url_only_params(url, NULL)) return FTRPC_EADDR;
    list_ns *ns = calloc(1, sizeof *ns);
    if (!ns) return FTRPC_ENOMEM;
    const char *p = url->body;
    int rc = 0;
    if (!*p) rc = FTRPC_EADDR;
    while (!rc && *p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        ft_endpoint ep;
        rc = ft_endpoint_parse(p, len, &ep);
        if (rc) {
            FT_WARN("naming: list:// bad element \"%.*s\": %s", (int)(len > 200 ? 200 : len), p,
                    ftrpc_strerror(rc));
            rc = FTRPC_EADDR;
            break;
        }
        rc = ft_endpoint_list_add(&ns->list, &ep);
        if (!comma) break;
        p = comma + 1;
        if (!*p) rc = FTRPC_EADDR; /* trailing ',' */
    }
    if (rc) {
        ft_endpoint_list_fini(&ns->list);
        free(ns);
        return rc;
    }
    *out = &ns->base;
    return 0;
}

static void list_close(ft_naming *base)
{
    list_ns *ns = (list_ns *)base;
    ft_endpoint_list_fini(&ns->list);
    free(ns);
}

static int list_fetch(ft_naming *base, ft_endpoint_list *out)
{
    list_ns *ns = (list_ns *)base;
    for (size_t i = 0; i < ns->list.n; i++) {
        int rc = ft_endpoint_list_add(out, &ns->list.v[i]);
        if (rc) {
            ft_endpoint_list_fini(out);
            return rc;
        }
    }
    return 0;
}

static int list_watch_start(ft_naming *base, const ft_naming_watch_opts *opts,
                            ft_naming_watch_cb cb, void *arg)
{
    list_ns *ns = (list_ns *)base;
    cb(&ns->list, 0, arg);
    return 0;
}

static void list_watch_stop(ft_naming *base) {}

const ft_naming_ops ft_naming_list_ops = {
    .scheme = "list",
    .open = list_open,
    .close = list_close,
    .fetch = list_fetch,
    .watch_start = list_watch_start,
    .watch_stop = list_watch_stop,
};
