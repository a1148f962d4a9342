/* The registrar: keeps one server instance registered in a naming service that can register
 * (ops->reg_*), on a thread of its own.
 *
 * Every registration carries an instance id (go-micro's Node.Id): the one given, or a UUID v4
 * made at start, so each registrar, and so each server process, has its own.
 *
 * Life: start validates options (interval < TTL, as go-micro requires), registers once on the
 * caller's thread, then the thread wakes every interval: refresh when registered, register again
 * when the last attempt failed. Stop wakes the thread at once (condition variable on the
 * monotonic clock), joins it and deregisters.
 *
 * Invariant: a registry outage never reaches the server: failures are logged by the backend and
 * counted here, and retried every interval; nothing is returned to the caller after start.
 * Why a thread and not the server's IO loops: backend calls may block on the filesystem or the
 * network (etcd), and an IO loop must never block. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "naming/naming.h"

struct ft_registrar {
    const ft_naming_ops *ops;
    ft_naming_reg *reg;
    int64_t interval_ms;
    char id[FT_ID_MAX]; /* the instance id in the registry, given or generated */
    pthread_t thread;
    pthread_mutex_t lock; /* guards `stopping` with `wake` */
    pthread_cond_t wake;
    bool stopping;
    bool registered; /* registrar thread only (and start, before the thread exists) */
    atomic_int status;
    atomic_uint_fast64_t ok, failed;
};

static void attempt(ft_registrar *r)
{
    int rc = r->registered ? r->ops->reg_refresh(r->reg) : r->ops->reg_register(r->reg);
    r->registered = rc == 0;
    atomic_store(&r->status, rc);
    atomic_fetch_add(rc == 0 ? &r->ok : &r->failed, 1);
}

static void *registrar_main(void *p)
{
    ft_registrar *r = p;
    pthread_mutex_lock(&r->lock);
    while (!r->stopping) {
        struct timespec ts = ft_naming_deadline(r->interval_ms);
        while (!r->stopping && pthread_cond_timedwait(&r->wake, &r->lock, &ts) == 0) {
        }
        if (r->stopping) break;
        pthread_mutex_unlock(&r->lock);
        attempt(r);
        pthread_mutex_lock(&r->lock);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

int ft_registrar_start(const ft_registrar_opts *o, ft_registrar **out)
{
    if (!o || !out) return FTRPC_EINVAL;
    int64_t ttl = o->register_ttl_ms ? o->register_ttl_ms : 90000;
    int64_t interval = o->register_interval_ms ? o->register_interval_ms : 30000;
    if (ttl < 0 || interval < 0 || interval >= ttl) {
        FT_ERROR("naming: registrar refused: register_interval_ms (%lld) must be positive and "
                 "below register_ttl_ms (%lld), or the entry would die between refreshes",
                 (long long)interval, (long long)ttl);
        return FTRPC_EINVAL;
    }
    if (!o->addr || ft_addr_check(o->addr, strlen(o->addr)) != 0) {
        FT_ERROR("naming: registrar refused: bad addr \"%.200s\"", o->addr ? o->addr : "(null)");
        return FTRPC_EINVAL;
    }
    if (o->weight > FT_WEIGHT_MAX || (o->tags && ft_tags_check(o->tags, strlen(o->tags)) != 0)) {
        FT_ERROR("naming: registrar refused: weight must be 1..%d and tags a|b of [A-Za-z0-9_.-]",
                 FT_WEIGHT_MAX);
        return FTRPC_EINVAL;
    }
    if (o->id && ft_id_check(o->id, strlen(o->id)) != 0) {
        FT_ERROR("naming: registrar refused: id \"%.80s\" must be 1..63 chars of [A-Za-z0-9_.-]",
                 o->id);
        return FTRPC_EINVAL;
    }
    ft_naming_url url;
    int rc = ft_naming_url_parse(o->url, &url);
    if (rc) return rc;
    const ft_naming_ops *ops = ft_naming_find_ops(url.scheme);
    if (!ops || !ops->reg_open) {
        FT_ERROR("naming: registrar refused: scheme \"%s\" cannot register", url.scheme);
        ft_naming_url_fini(&url);
        return FTRPC_EADDR;
    }
    ft_registrar *r = calloc(1, sizeof *r);
    if (!r) {
        ft_naming_url_fini(&url);
        return FTRPC_ENOMEM;
    }
    if (o->id)
        snprintf(r->id, sizeof r->id, "%s", o->id);
    else
        ft_id_generate(r->id, sizeof r->id);
    ft_registration reg = {
        .addr = o->addr, .weight = o->weight, .tags = o->tags, .ttl_ms = ttl, .id = r->id};
    rc = ops->reg_open(&url, &reg, &r->reg);
    ft_naming_url_fini(&url);
    if (rc) {
        free(r);
        return rc;
    }
    r->reg->ops = ops;
    r->ops = ops;
    r->interval_ms = interval;
    pthread_mutex_init(&r->lock, NULL);
    ft_naming_cond_init(&r->wake);
    attempt(r);
    if (pthread_create(&r->thread, NULL, registrar_main, r) != 0) {
        FT_ERROR("naming: registrar cannot start its thread");
        if (r->registered) ops->reg_deregister(r->reg);
        ops->reg_close(r->reg);
        pthread_cond_destroy(&r->wake);
        pthread_mutex_destroy(&r->lock);
        free(r);
        return FTRPC_ESYS;
    }
    *out = r;
    return 0;
}

void ft_registrar_stop(ft_registrar *r)
{
    if (!r) return;
    pthread_mutex_lock(&r->lock);
    r->stopping = true;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    /* Deregister even after a failed attempt: a refresh may have failed after the file was
     * written (e.g. rename failed once), and removing a missing entry is harmless. */
    r->ops->reg_deregister(r->reg);
    r->ops->reg_close(r->reg);
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

const char *ft_registrar_id(const ft_registrar *r)
{
    return r->id;
}

int ft_registrar_status(const ft_registrar *r)
{
    return atomic_load(&((ft_registrar *)r)->status);
}

void ft_registrar_counts(const ft_registrar *r, uint64_t *ok, uint64_t *failed)
{
    ft_registrar *m = (ft_registrar *)r;
    if (ok) *ok = atomic_load(&m->ok);
    if (failed) *failed = atomic_load(&m->failed);
}
