/* The cached view (rules in naming_view.h).
 *
 * Locks, and what each guards:
 *   cur_lock   — the `cur` pointer only, held for a load + retain or a swap: readers never wait
 *                for an update's work (sorting, comparing, listeners).
 *   apply_lock — everything an update touches (state, listeners, stats) and the order of
 *                listener calls; held while listeners run, which is why they must not re-enter.
 * Order: apply_lock before cur_lock.
 *
 * Invariant: `cur` always points at a snapshot (an empty version-0 one at first), sorted and free
 * of duplicate addresses; its version grows by one per published change. */
#include "naming/naming_view.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"

typedef struct listener {
    int id;
    ft_naming_view_cb cb;
    void *arg;
} listener;

struct ft_naming_view {
    const ft_clock *clock;
    int64_t stale_max_ns;
    int64_t grace_ns; /* < 0: accept empty at once */
    int64_t drop_ns;  /* the stale bound; 0: off */
    int64_t hold_ns;  /* outage_hold_ms; < 0: off */
    int64_t rescan_ms;
    ft_naming *ns; /* NULL for a hand-fed view */

    pthread_mutex_t cur_lock;
    ft_naming_snapshot *cur;

    pthread_mutex_t apply_lock;
    pthread_cond_t ready_cond; /* signalled (under apply_lock) on the first good answer */
    bool ready;
    bool stale;
    int64_t stale_since;
    int64_t last_loud;  /* when the last "stale too long" ERROR was logged */
    int64_t listed_at;  /* when the registry last listed the entries of `cur` */
    bool empty_pending; /* a "no endpoints" answer is being distrusted */
    int64_t empty_since;
    bool holding; /* after an outage: removals held until held_since + hold_ns */
    int64_t held_since;
    size_t held_logged; /* how many endpoints the last "keeping" line named */
    listener *listeners;
    size_t nlisteners;
    int next_id;
    ft_naming_view_stats stats;
};

void ft_naming_snapshot_retain(ft_naming_snapshot *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void ft_naming_snapshot_release(ft_naming_snapshot *s)
{
    if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) free(s);
}

static ft_naming_snapshot *snapshot_new(const ft_endpoint_list *list, uint64_t version)
{
    size_t n = list ? list->n : 0;
    ft_naming_snapshot *s = malloc(sizeof *s + n * sizeof(ft_endpoint));
    if (!s) return NULL;
    atomic_init(&s->refs, 1);
    s->version = version;
    s->n = n;
    if (n) memcpy(s->eps, list->v, n * sizeof(ft_endpoint));
    return s;
}

static bool snapshot_equals(const ft_naming_snapshot *s, const ft_endpoint_list *l)
{
    ft_endpoint_list view = {.v = (ft_endpoint *)s->eps, .n = s->n, .cap = s->n};
    return ft_endpoint_list_equal(&view, l);
}

int ft_naming_view_new(const ft_naming_view_opts *opts, ft_naming_view **out)
{
    ft_naming_view_opts o = {0};
    if (opts) o = *opts;
    if (o.stale_max_ms < 0 || o.rescan_ms < 0 || o.stale_drop_ms < -1) {
        FT_ERROR("naming: view refused: stale_max_ms and rescan_ms must not be negative, "
                 "stale_drop_ms not below -1");
        return FTRPC_EINVAL;
    }
    ft_naming_view *v = calloc(1, sizeof *v);
    if (!v) return FTRPC_ENOMEM;
    v->clock = o.clock ? o.clock : ft_clock_monotonic();
    v->stale_max_ns = (o.stale_max_ms ? o.stale_max_ms : 60000) * FT_NS_PER_MS;
    v->grace_ns = o.empty_grace_ms < 0   ? -1
                  : o.empty_grace_ms > 0 ? o.empty_grace_ms * FT_NS_PER_MS
                                         : 30000 * FT_NS_PER_MS;
    v->rescan_ms = o.rescan_ms ? o.rescan_ms : 5000;
    v->drop_ns = o.stale_drop_ms > 0 ? o.stale_drop_ms * FT_NS_PER_MS : 0;
    v->hold_ns = o.outage_hold_ms < 0 || o.empty_grace_ms < 0 ? -1
                 : o.outage_hold_ms > 0                       ? o.outage_hold_ms * FT_NS_PER_MS
                                                              : 15000 * FT_NS_PER_MS;
    v->cur = snapshot_new(NULL, 0);
    if (!v->cur) {
        free(v);
        return FTRPC_ENOMEM;
    }
    pthread_mutex_init(&v->cur_lock, NULL);
    pthread_mutex_init(&v->apply_lock, NULL);
    ft_naming_cond_init(&v->ready_cond);
    *out = v;
    return 0;
}

static void watch_cb(const ft_endpoint_list *list, int err, void *arg)
{
    ft_naming_view_apply(arg, list, err);
}

int ft_naming_view_open(const char *url, const ft_naming_view_opts *opts, ft_naming_view **out)
{
    ft_naming_view *v;
    int rc = ft_naming_view_new(opts, &v);
    if (rc) return rc;
    rc = ft_naming_open(url, &v->ns);
    if (rc == 0) {
        ft_naming_watch_opts wo = {.rescan_ms = v->rescan_ms};
        rc = ft_naming_watch_start(v->ns, &wo, watch_cb, v);
    }
    if (rc) {
        ft_naming_view_free(v);
        return rc;
    }
    *out = v;
    return 0;
}

void ft_naming_view_free(ft_naming_view *v)
{
    if (!v) return;
    ft_naming_close(v->ns); /* stops the watch first: no apply runs after this */
    ft_naming_snapshot_release(v->cur);
    free(v->listeners);
    pthread_cond_destroy(&v->ready_cond);
    pthread_mutex_destroy(&v->apply_lock);
    pthread_mutex_destroy(&v->cur_lock);
    free(v);
}

ft_naming_snapshot *ft_naming_view_get(ft_naming_view *v)
{
    pthread_mutex_lock(&v->cur_lock);
    ft_naming_snapshot *s = v->cur;
    ft_naming_snapshot_retain(s);
    pthread_mutex_unlock(&v->cur_lock);
    return s;
}

int ft_naming_view_wait_ready(ft_naming_view *v, int64_t timeout_ms)
{
    struct timespec ts = ft_naming_deadline(timeout_ms < 0 ? 0 : timeout_ms);
    pthread_mutex_lock(&v->apply_lock);
    while (!v->ready && pthread_cond_timedwait(&v->ready_cond, &v->apply_lock, &ts) == 0) {
    }
    bool ready = v->ready;
    pthread_mutex_unlock(&v->apply_lock);
    return ready ? 0 : FTRPC_ERPCTIMEDOUT;
}

/* Swaps in a new snapshot and tells listeners. Called with apply_lock held. */
static void publish(ft_naming_view *v, const ft_endpoint_list *list)
{
    ft_naming_snapshot *s = snapshot_new(list, v->cur->version + 1);
    if (!s) {
        FT_LOG_RATELIMITED(FTRPC_LOG_ERROR, "naming: out of memory; keeping the old endpoint list");
        return;
    }
    pthread_mutex_lock(&v->cur_lock);
    ft_naming_snapshot *old = v->cur;
    v->cur = s;
    pthread_mutex_unlock(&v->cur_lock);
    ft_naming_snapshot_release(old);
    v->stats.changes++;
    for (size_t i = 0; i < v->nlisteners; i++)
        v->listeners[i].cb(s, v->listeners[i].arg);
}

/* The stale bound: with the registry unreachable for drop_ns, drops the entries whose own TTL has
 * passed since it last listed them. Called with apply_lock held, while stale. */
static void drop_expired(ft_naming_view *v, int64_t now)
{
    if (v->drop_ns <= 0 || now - v->stale_since < v->drop_ns || v->cur->n == 0) return;
    ft_endpoint_list keep = {0};
    size_t dropped = 0;
    for (size_t i = 0; i < v->cur->n; i++) {
        const ft_endpoint *ep = &v->cur->eps[i];
        if (ep->ttl_ms > 0 && now - v->listed_at >= ep->ttl_ms * FT_NS_PER_MS) {
            dropped++;
            continue;
        }
        if (ft_endpoint_list_add(&keep, ep) != 0) {
            ft_endpoint_list_fini(&keep);
            FT_LOG_RATELIMITED(FTRPC_LOG_ERROR, "naming: out of memory; keeping the old list");
            return;
        }
    }
    if (dropped) {
        FT_ERROR("naming: registry unreachable for %lld ms: dropping %zu of %zu endpoints whose "
                 "registration TTL has passed (stale bound %lld ms)",
                 (long long)((now - v->stale_since) / FT_NS_PER_MS), dropped, v->cur->n,
                 (long long)(v->drop_ns / FT_NS_PER_MS));
        v->stats.stale_dropped += dropped;
        publish(v, &keep);
    }
    ft_endpoint_list_fini(&keep);
}

static void apply_error(ft_naming_view *v, int err, int64_t now)
{
    v->stats.errors++;
    if (!v->stale) {
        v->stale = true;
        v->stale_since = now;
        v->last_loud = now;
        FT_WARN("naming: registry error (%s); serving the last good list of %zu endpoints",
                ftrpc_strerror(err), v->cur->n);
        return;
    }
    drop_expired(v, now);
    if (now - v->stale_since >= v->stale_max_ns && now - v->last_loud >= v->stale_max_ns) {
        v->last_loud = now;
        FT_ERROR("naming: registry unreachable for %lld ms (%s); STILL serving a stale list of %zu "
                 "endpoints",
                 (long long)((now - v->stale_since) / FT_NS_PER_MS), ftrpc_strerror(err),
                 v->cur->n);
    }
}

/* After an outage: appends to l the endpoints of the current list that l lacks (l keeps its own
 * entries first, and their weights and tags). 0 or FTRPC_ENOMEM. */
static int hold_removals(ft_naming_view *v, ft_endpoint_list *l)
{
    size_t listed = l->n;
    for (size_t i = 0; i < v->cur->n; i++)
        if (ft_endpoint_list_add(l, &v->cur->eps[i]) != 0) return FTRPC_ENOMEM;
    ft_endpoint_list_normalize(l);
    size_t held = l->n - listed;
    if (held > 0 && held != v->held_logged)
        FT_WARN("naming: after the outage the registry lists %zu endpoints; keeping %zu more it "
                "no longer lists for up to %lld ms (their registrations may have expired during "
                "the outage)",
                listed, held, (long long)(v->hold_ns / FT_NS_PER_MS));
    v->held_logged = held;
    return 0;
}

static void apply_list(ft_naming_view *v, const ft_endpoint_list *in, int64_t now)
{
    v->stats.updates++;
    if (v->stale) {
        FT_WARN("naming: registry answers again after %lld ms",
                (long long)((now - v->stale_since) / FT_NS_PER_MS));
        v->stale = false;
        if (v->hold_ns >= 0 && v->cur->n > 0) {
            v->holding = true;
            v->held_since = now;
            v->held_logged = 0;
        }
    }
    if (!v->ready) {
        v->ready = true;
        pthread_cond_broadcast(&v->ready_cond);
    }
    ft_endpoint_list l = {0};
    for (size_t i = 0; i < in->n; i++) {
        if (ft_endpoint_list_add(&l, &in->v[i]) != 0) {
            ft_endpoint_list_fini(&l);
            FT_LOG_RATELIMITED(FTRPC_LOG_ERROR, "naming: out of memory; keeping the old list");
            return;
        }
    }
    ft_endpoint_list_normalize(&l);
    if (v->holding && now - v->held_since >= v->hold_ns) v->holding = false;
    if (v->holding && hold_removals(v, &l) != 0) {
        ft_endpoint_list_fini(&l);
        FT_LOG_RATELIMITED(FTRPC_LOG_ERROR, "naming: out of memory; keeping the old list");
        return;
    }
    if (l.n == 0 && v->cur->n > 0 && v->grace_ns >= 0) {
        if (!v->empty_pending) {
            v->empty_pending = true;
            v->empty_since = now;
            FT_WARN("naming: registry suddenly lists no endpoints; keeping %zu for %lld ms",
                    v->cur->n, (long long)(v->grace_ns / FT_NS_PER_MS));
        }
        if (now - v->empty_since < v->grace_ns) {
            v->stats.empty_rejected++;
            ft_endpoint_list_fini(&l);
            return;
        }
        FT_WARN("naming: registry still lists no endpoints after the grace period; accepting it");
    }
    v->empty_pending = false;
    v->listed_at = now;
    /* The first good answer publishes even when empty, so version > 0 means "discovered". */
    if (v->cur->version == 0 || !snapshot_equals(v->cur, &l)) publish(v, &l);
    ft_endpoint_list_fini(&l);
}

void ft_naming_view_apply(ft_naming_view *v, const ft_endpoint_list *list, int err)
{
    int64_t now = ft_clock_now_ns(v->clock);
    pthread_mutex_lock(&v->apply_lock);
    if (list && err == 0)
        apply_list(v, list, now);
    else
        apply_error(v, err ? err : FTRPC_EINVAL, now);
    pthread_mutex_unlock(&v->apply_lock);
}

int ft_naming_view_listen(ft_naming_view *v, ft_naming_view_cb cb, void *arg, int *id)
{
    pthread_mutex_lock(&v->apply_lock);
    listener *l = realloc(v->listeners, (v->nlisteners + 1) * sizeof *l);
    if (!l) {
        pthread_mutex_unlock(&v->apply_lock);
        return FTRPC_ENOMEM;
    }
    v->listeners = l;
    int my = ++v->next_id;
    l[v->nlisteners++] = (listener){.id = my, .cb = cb, .arg = arg};
    if (v->cur->version > 0) cb(v->cur, arg);
    pthread_mutex_unlock(&v->apply_lock);
    if (id) *id = my;
    return 0;
}

void ft_naming_view_unlisten(ft_naming_view *v, int id)
{
    pthread_mutex_lock(&v->apply_lock);
    for (size_t i = 0; i < v->nlisteners; i++) {
        if (v->listeners[i].id == id) {
            memmove(&v->listeners[i], &v->listeners[i + 1],
                    (v->nlisteners - i - 1) * sizeof *v->listeners);
            v->nlisteners--;
            break;
        }
    }
    pthread_mutex_unlock(&v->apply_lock);
}

void ft_naming_view_stats_get(ft_naming_view *v, ft_naming_view_stats *out)
{
    int64_t now = ft_clock_now_ns(v->clock);
    pthread_mutex_lock(&v->apply_lock);
    *out = v->stats;
    out->stale = v->stale;
    out->stale_ms = v->stale ? (now - v->stale_since) / FT_NS_PER_MS : 0;
    pthread_mutex_unlock(&v->apply_lock);
}
