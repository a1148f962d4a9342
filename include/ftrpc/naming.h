/* Discovery from the application's side (docs/discovery.md): what a naming URL lists, once or as
 * it changes. A client does this by itself; these are for tools, dashboards and tests that want
 * to see the endpoints a client would get.
 *
 * Naming URLs: "list://host:port[,...]", "file:///path", "dir:///folder?service=NAME" (the
 * embedded registry), "etcd://host:port[,...][/prefix]?service=NAME". A server registers itself
 * with ftrpc_server_options.register_url.
 */
#ifndef FTRPC_NAMING_H
#define FTRPC_NAMING_H

#include "ftrpc/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Endpoints in the naming service's order, each address once (a later duplicate is dropped, as a
 * client drops it). Not thread-safe, but immutable: any number of threads may read one list. */
typedef struct ftrpc_endpoint_list ftrpc_endpoint_list;

FTRPC_API size_t ftrpc_endpoint_list_size(const ftrpc_endpoint_list *list);
/* Endpoint i: its address "host:port" (host an IPv4 address, a DNS name or [IPv6]), its weight
 * (1..65535, 100 when the registry names none) and its tags ("a|b", "" for none). The strings
 * belong to the list. For i >= size: NULL, 0 and NULL. */
FTRPC_API const char *ftrpc_endpoint_list_addr(const ftrpc_endpoint_list *list, size_t i);
FTRPC_API uint32_t ftrpc_endpoint_list_weight(const ftrpc_endpoint_list *list, size_t i);
FTRPC_API const char *ftrpc_endpoint_list_tags(const ftrpc_endpoint_list *list, size_t i);
/* Endpoint i's instance id, the one its server registered with (go-micro's Node.Id: a UUID made
 * at registration, or ftrpc_server_options.register_id), "" when the source has none (list://,
 * file://, a registrar older than ids); and its registration's TTL in ms, 0 when none. The
 * string belongs to the list. For i >= size: NULL and 0. */
FTRPC_API const char *ftrpc_endpoint_list_id(const ftrpc_endpoint_list *list, size_t i);
FTRPC_API int64_t ftrpc_endpoint_list_ttl_ms(const ftrpc_endpoint_list *list, size_t i);
/* Frees a list from ftrpc_naming_list. NULL does nothing. */
FTRPC_API void ftrpc_endpoint_list_free(ftrpc_endpoint_list *list);

/* Reads what naming_url lists now, once, on the calling thread: a file read for list://, file://
 * and dir://; for etcd:// one range read, bounded by etcd://'s own timeouts (connect 500 ms,
 * request 2 s, per etcd endpoint tried). On success *out is the caller's
 * (ftrpc_endpoint_list_free); an empty list means the service has no endpoints now. Errors:
 * FTRPC_EADDR for a bad URL or an unknown scheme (logged), or the registry's error (a file
 * that cannot be read or has a bad line, etcd unreachable), FTRPC_ENOMEM. Any thread. */
FTRPC_API int ftrpc_naming_list(const char *naming_url, ftrpc_endpoint_list **out);

/* A watch: the list of a naming URL as a client sees it, delivered on every change. */
typedef struct ftrpc_naming_watch ftrpc_naming_watch;

/* Told each new list, in order, with its version (1 for the first list, +1 on every change).
 * `list` is valid during the call only. Runs on the watch's thread (for file:// and dir://, one
 * thread shared by every watch of the process), and once on the caller's thread inside
 * ftrpc_naming_watch_new when the first list is there already: it must not block, and must not
 * call ftrpc_naming_watch_free. */
typedef void (*ftrpc_naming_watch_cb)(const ftrpc_endpoint_list *list, uint64_t version, void *arg);

/* Zero means the default shown. A registry that cannot be read keeps the last list (no call). */
typedef struct ftrpc_naming_watch_options {
    /* How long a list suddenly empty is distrusted (the last one is kept meanwhile): default
     * 30000, as a client's naming_empty_grace_ms; -1: believed at once */
    int empty_grace_ms;
    int rescan_ms; /* default 5000: a full re-read at least this often, besides change events */
    /* The stale bound, as a client's naming_max_stale_ms: once the registry has been unreachable
     * this long, entries whose registration TTL has passed are dropped (a new list is
     * delivered). Default 0 (and -1): off. */
    int max_stale_ms;
} ftrpc_naming_watch_options;

/* Starts watching naming_url; cb(list, version, arg) runs with the first list and every change
 * until ftrpc_naming_watch_free. opts may be NULL. Returns once the watch runs, which may be
 * before the first list arrives. On success *out is the caller's. FTRPC_EADDR for a bad URL or
 * an unknown scheme, FTRPC_EINVAL for a NULL cb or a bad option, FTRPC_ENOMEM, FTRPC_ESYS (a
 * thread or inotify could not be had). Any thread but a watch callback. */
FTRPC_API int ftrpc_naming_watch_new_sized(const char *naming_url,
                                           const ftrpc_naming_watch_options *opts, size_t opts_size,
                                           ftrpc_naming_watch_cb cb, void *arg,
                                           ftrpc_naming_watch **out);
static inline int ftrpc_naming_watch_new(const char *naming_url,
                                         const ftrpc_naming_watch_options *opts,
                                         ftrpc_naming_watch_cb cb, void *arg,
                                         ftrpc_naming_watch **out)
{
    return ftrpc_naming_watch_new_sized(naming_url, opts, sizeof(ftrpc_naming_watch_options), cb,
                                        arg, out);
}
/* Stops the watch: once it returns cb is not running and never runs again. NULL does nothing.
 * Any thread but a watch callback. */
FTRPC_API void ftrpc_naming_watch_free(ftrpc_naming_watch *w);

#ifdef __cplusplus
}
#endif
#endif
