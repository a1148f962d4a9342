/* The client's cached view of one naming service: the endpoint list calls read, kept usable
 * through registry outages.
 *
 * Readers take an immutable, ref-counted snapshot (ft_naming_view_get): cheap (one short lock
 * around a pointer load and an atomic increment) and safe from any thread. Updates (from the
 * naming service's watch thread, or from ft_naming_view_apply in tests) build a new snapshot and
 * swap it in; the old one is freed when its last reader releases it.
 *
 * Outage rules, all timed on the view's ft_clock:
 *   - a registry error keeps the last good list; the view is "stale" (counted, logged once when it
 *     starts and when it ends); after stale_max_ms it logs loudly (ERROR, at most once per
 *     stale_max_ms) but still serves the old list;
 *   - the stale bound (stale_drop_ms, off by default, go-micro's cache "periodically TTLed
 *     out"): once the registry has been unreachable for stale_drop_ms, an entry whose own
 *     registration TTL (ft_endpoint.ttl_ms) has passed since the registry last listed it is
 *     dropped; entries without a TTL (list://, file://) are kept. Dropping publishes at once (no
 *     empty grace: the registry said nothing), and an empty result is an empty view
 *     (FTRPC_ENOENDPOINT for a client);
 *   - a registry that answers "no endpoints" after having some is suspected: the old list is kept
 *     for empty_grace_ms, then the empty list is accepted (0 accepts it at once);
 *   - for outage_hold_ms after an outage, answers add endpoints but remove none: registrations
 *     that expired during the outage come back one registrar at a time;
 *   - before the first good answer the view is empty (version 0).
 * The time rules advance when an update arrives; backends deliver at least every rescan period,
 * so the rules run on the watch thread without a timer of their own.
 *
 * Not here: load balancing, health, connections. Listeners get the new snapshot and decide. */
#ifndef FT_NAMING_VIEW_H
#define FT_NAMING_VIEW_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/clock.h"
#include "naming/naming.h"

/* An immutable endpoint list, in the naming service's order, no duplicate addresses. */
typedef struct ft_naming_snapshot {
    atomic_int refs;
    uint64_t version; /* 0 = nothing discovered yet; +1 on every published change */
    size_t n;
    ft_endpoint eps[];
} ft_naming_snapshot;

/* Takes another reference (any thread). */
void ft_naming_snapshot_retain(ft_naming_snapshot *s);
/* Drops a reference; the last one frees. NULL is a no-op. Any thread. */
void ft_naming_snapshot_release(ft_naming_snapshot *s);

typedef struct ft_naming_view ft_naming_view;

typedef struct ft_naming_view_opts {
    const ft_clock *clock; /* default ft_clock_monotonic() */
    /* Stale for longer than this: loud (rate-limited) ERROR logs, still serving. Default 60000 ms
     * (ftrpc's choice: a minute of outage is worth a page). */
    int64_t stale_max_ms;
    /* How long a sudden "no endpoints" is distrusted. Default 30000 ms (ftrpc's choice: longer
     * than a registrar's restart, shorter than a deploy). Negative: accept empty at once. */
    int64_t empty_grace_ms;
    /* Passed to the watch: a full re-read at least this often. Default 5000 ms. */
    int64_t rescan_ms;
    /* The stale bound (see above): after this long unreachable, entries whose TTL passed are
     * dropped. Default 0 (and -1): never, the last list is served for as long as the outage
     * lasts. Not the same as stale_max_ms, which only logs. */
    int64_t stale_drop_ms;
    /* After an outage, how long the registry's lists may add endpoints but not remove them. A
     * registry cut off for longer than the registrations' TTL lets them all expire; its first
     * answers after the outage list only those registrars that have already registered again, and
     * would shrink the view for no fault of the servers. Default 15000 ms (ftrpc's choice: a
     * registrar's refresh interval plus its requests' timeouts, with room). Negative: off (also
     * when empty_grace_ms is negative: "believe the registry at once"). */
    int64_t outage_hold_ms;
} ft_naming_view_opts;

/* Called with every newly published snapshot, in order, on the thread that published it (the
 * watch thread). `snap` is valid during the call; retain it to keep it. Must not block, and must
 * not call ft_naming_view_listen/unlisten/apply/stop/free (they would deadlock). */
typedef void (*ft_naming_view_cb)(ft_naming_snapshot *snap, void *arg);

typedef struct ft_naming_view_stats {
    uint64_t updates;        /* good answers received */
    uint64_t changes;        /* snapshots published */
    uint64_t errors;         /* registry errors received (each kept the old list) */
    uint64_t empty_rejected; /* "no endpoints" answers ignored during the grace period */
    uint64_t stale_dropped;  /* entries dropped by the stale bound */
    bool stale;              /* the last answer was an error */
    int64_t stale_ms;        /* how long it has been stale, 0 when fresh */
} ft_naming_view_stats;

/* A view fed by hand (ft_naming_view_apply); used by tests and by callers with their own source.
 * opts may be NULL. 0, FTRPC_EINVAL, FTRPC_ENOMEM. */
int ft_naming_view_new(const ft_naming_view_opts *opts, ft_naming_view **out);
/* A view that opens `url` and watches it in the background (file:// and dir:// views of the
 * process share one watcher thread, see naming_watch.c). Returns once the watch runs; the first
 * list arrives shortly after (use ft_naming_view_wait_ready to wait for it). 0, FTRPC_EADDR,
 * FTRPC_EINVAL, FTRPC_ENOMEM, FTRPC_ESYS.
 */
int ft_naming_view_open(const char *url, const ft_naming_view_opts *opts, ft_naming_view **out);
/* Stops the watch (promptly), frees the view. Snapshots still held stay valid. NULL is a no-op.
 * Not from a listener. */
void ft_naming_view_free(ft_naming_view *v);

/* The current snapshot, retained: release it with ft_naming_snapshot_release. Never NULL. Any
 * thread. */
ft_naming_snapshot *ft_naming_view_get(ft_naming_view *v);
/* Waits up to timeout_ms for the first good answer: 0, or FTRPC_ERPCTIMEDOUT. Any thread but a
 * listener. */
int ft_naming_view_wait_ready(ft_naming_view *v, int64_t timeout_ms);

/* Feeds one answer from the naming service: list (err == 0) or an error (list NULL, err < 0),
 * applying the stale and grace rules at the view clock's now. The watch calls this; tests call it
 * directly. Serialised internally; any thread but a listener. */
void ft_naming_view_apply(ft_naming_view *v, const ft_endpoint_list *list, int err);

/* Adds a listener and, if a snapshot has been published, calls it once with the current one
 * before returning (so no change is missed between get and listen). *id identifies it for
 * unlisten. 0, FTRPC_ENOMEM. */
int ft_naming_view_listen(ft_naming_view *v, ft_naming_view_cb cb, void *arg, int *id);
/* Removes a listener; after it returns the listener is not running and never runs again. */
void ft_naming_view_unlisten(ft_naming_view *v, int id);

void ft_naming_view_stats_get(ft_naming_view *v, ft_naming_view_stats *out);

#endif
