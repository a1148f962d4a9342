/* The public discovery API (ftrpc/naming.h): one read through a naming backend (naming.h), or the
 * client's cached view (naming_view.h) with a listener, so that a watch sees exactly the lists a
 * client would. */
#include "base/sized_options.h"
#include "ftrpc/naming.h"

#include <stdlib.h>

#include "naming/naming.h"
#include "naming/naming_view.h"

struct ftrpc_endpoint_list {
    const ft_endpoint *eps;
    size_t n;
    ft_endpoint_list owned; /* ftrpc_naming_list's endpoints; a watch's list borrows a snapshot's */
};

struct ftrpc_naming_watch {
    ft_naming_view *view;
    int listener;
    ftrpc_naming_watch_cb cb;
    void *arg;
};

size_t ftrpc_endpoint_list_size(const ftrpc_endpoint_list *list)
{
    return list->n;
}

const char *ftrpc_endpoint_list_addr(const ftrpc_endpoint_list *list, size_t i)
{
    return i < list->n ? list->eps[i].addr : NULL;
}

uint32_t ftrpc_endpoint_list_weight(const ftrpc_endpoint_list *list, size_t i)
{
    return i < list->n ? list->eps[i].weight : 0;
}

const char *ftrpc_endpoint_list_tags(const ftrpc_endpoint_list *list, size_t i)
{
    return i < list->n ? list->eps[i].tags : NULL;
}

const char *ftrpc_endpoint_list_id(const ftrpc_endpoint_list *list, size_t i)
{
    return i < list->n ? list->eps[i].id : NULL;
}

int64_t ftrpc_endpoint_list_ttl_ms(const ftrpc_endpoint_list *list, size_t i)
{
    return i < list->n ? list->eps[i].ttl_ms : 0;
}

void ftrpc_endpoint_list_free(ftrpc_endpoint_list *list)
{
    if (!list) return;
    ft_endpoint_list_fini(&list->owned);
    free(list);
}

int ftrpc_naming_list(const char *naming_url, ftrpc_endpoint_list **out)
{
    if (!naming_url || !out) return FTRPC_EINVAL;
    ftrpc_endpoint_list *list = calloc(1, sizeof *list);
    if (!list) return FTRPC_ENOMEM;
    ft_naming *ns = NULL;
    int rc = ft_naming_open(naming_url, &ns);
    if (rc == 0) rc = ft_naming_fetch(ns, &list->owned);
    ft_naming_close(ns);
    if (rc != 0) {
        ftrpc_endpoint_list_free(list);
        return rc;
    }
    /* the form a client's view publishes */
    ft_endpoint_list_normalize(&list->owned);
    list->eps = list->owned.v;
    list->n = list->owned.n;
    *out = list;
    return 0;
}

static void on_snapshot(ft_naming_snapshot *snap, void *arg)
{
    ftrpc_naming_watch *w = arg;
    ftrpc_endpoint_list list = {.eps = snap->eps, .n = snap->n};
    w->cb(&list, snap->version, w->arg);
}

int ftrpc_naming_watch_new_sized(const char *naming_url, const ftrpc_naming_watch_options *opts_in,
                                 size_t opts_size, ftrpc_naming_watch_cb cb, void *arg,
                                 ftrpc_naming_watch **out)
{
    ftrpc_naming_watch_options wo;
    if (!naming_url || !cb || !out ||
        ft_sized_options_read(&wo, sizeof wo, opts_in, opts_size) != 0)
        return FTRPC_EINVAL;
    const ftrpc_naming_watch_options *opts = &wo;
    ftrpc_naming_watch *w = calloc(1, sizeof *w);
    if (!w) return FTRPC_ENOMEM;
    w->cb = cb;
    w->arg = arg;
    ft_naming_view_opts vo = {.empty_grace_ms = opts ? opts->empty_grace_ms : 0,
                              .rescan_ms = opts ? opts->rescan_ms : 0,
                              .stale_drop_ms = opts ? opts->max_stale_ms : 0};
    int rc = ft_naming_view_open(naming_url, &vo, &w->view);
    if (rc == 0) rc = ft_naming_view_listen(w->view, on_snapshot, w, &w->listener);
    if (rc != 0) {
        ft_naming_view_free(w->view);
        free(w);
        return rc;
    }
    *out = w;
    return 0;
}

void ftrpc_naming_watch_free(ftrpc_naming_watch *w)
{
    if (!w) return;
    ft_naming_view_unlisten(w->view, w->listener);
    ft_naming_view_free(w->view);
    free(w);
}
