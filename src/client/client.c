/* ftrpc_client: lifecycle, the service's endpoints and their health, and the per-loop connections.
 * The call engine (attempts, fail modes, retries) is in call.c.
 *
 * Each loop keeps, per endpoint, at most one connection (ft_cconn) shared by every call homed on
 * that loop, with a map from correlation id to the attempt waiting on it. An attempt is in exactly
 * one connection's map while it waits and in none otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "client/client_internal.h"

/* Decrements a counter ftrpc_client_free may wait on; under free_lock once stopping, so that the
 * waiter cannot see zero and free the client while this thread still touches it. */
void ft_client_count_down(ftrpc_client *c, atomic_int *counter)
{
    if (!atomic_load_explicit(&c->stopping, memory_order_acquire)) {
        atomic_fetch_sub(counter, 1);
        return;
    }
    pthread_mutex_lock(&c->free_lock);
    if (atomic_fetch_sub(counter, 1) == 1) pthread_cond_broadcast(&c->free_cond);
    pthread_mutex_unlock(&c->free_lock);
}

/* ---- connections ---- */

static int cconn_on_read(ft_conn *conn);
static void cconn_on_close(ft_conn *conn, int reason);
static const ft_conn_handler CCONN_HANDLER = {cconn_on_read, NULL, cconn_on_close};

ft_cconn *ft_client_get_conn(ftrpc_client *c, ft_loop *loop, int endpoint, int *err)
{
    ft_client_loop *cl = &c->loops[loop->index];
    ft_cconn *cc = cl->conns[endpoint];
    if (cc && ft_conn_is_open(cc->conn)) return cc;
    /* a closing connection leaves the table when its close completes; open a fresh one meanwhile */
    cl->conns[endpoint] = NULL;
    cc = calloc(1, sizeof *cc);
    if (!cc) {
        *err = FTRPC_ENOMEM;
        return NULL;
    }
    cc->client = c;
    cc->loop = loop;
    cc->endpoint = endpoint;
    ft_idmap_init(&cc->pending);
    int rc = ft_conn_connect(loop, (struct sockaddr *)&c->endpoints[endpoint]->sa,
                             c->opts.connect_timeout_ms, c->opts.max_unwritten_bytes,
                             &CCONN_HANDLER, cc, &cc->conn);
    if (rc != 0) {
        ft_idmap_fini(&cc->pending);
        free(cc);
        *err = rc;
        return NULL;
    }
    atomic_fetch_add(&c->open_conns, 1);
    cl->conns[endpoint] = cc;
    return cc;
}

static int cconn_on_read(ft_conn *conn)
{
    ft_cconn *cc = conn->owner;
    while (conn->state == FT_CONN_OPEN) {
        ft_rpc_frame f;
        const char *reason = NULL;
        ft_rpc_frame_init(&f);
        ft_parse_status st =
            ft_baidu_std_parse(&conn->in, cc->client->opts.max_body_size, &f, &reason);
        if (st == FT_PARSE_NEED_MORE) break;
        if (st == FT_PARSE_CLOSE || (st == FT_PARSE_OK && f.is_request)) {
            FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "closing connection to %s: %s", conn->peer,
                               st == FT_PARSE_OK ? "server sent a request frame" : reason);
            ft_rpc_frame_fini(&f);
            return FTRPC_ERESPONSE;
        }
        ft_attempt *a = f.correlation_id > 0 ? ft_idmap_take(&cc->pending, f.correlation_id) : NULL;
        if (a) {
            a->cc = NULL;
            ft_call_on_response(a, st, &f, reason);
        }
        /* else: a late answer to an attempt that already ended; nothing waits for it */
        ft_rpc_frame_fini(&f);
    }
    return 0;
}

static void cconn_on_close(ft_conn *conn, int reason)
{
    ft_cconn *cc = conn->owner;
    ftrpc_client *c = cc->client;
    ft_client_loop *cl = &c->loops[cc->loop->index];
    if (cl->conns[cc->endpoint] == cc) cl->conns[cc->endpoint] = NULL;
    if (reason) FT_DEBUG("connection to %s closed: %s", conn->peer, ftrpc_strerror(reason));
    ft_attempt *a;
    while ((a = ft_idmap_take_any(&cc->pending)) != NULL) {
        a->cc = NULL;
        ft_call_on_conn_lost(a, reason ? reason : FTRPC_ESTOPPED);
    }
    ft_idmap_fini(&cc->pending);
    free(cc);
    ft_client_count_down(c, &c->open_conns);
}

/* ---- options ---- */

static void to_health_options(const ftrpc_health_options *in, ft_health_options *out)
{
    memset(out, 0, sizeof *out);
    memcpy(out->mark_codes, in->mark_codes, sizeof out->mark_codes);
    memcpy(out->suspend_codes, in->suspend_codes, sizeof out->suspend_codes);
    out->retries_before_suspension = in->retries_before_suspension;
    out->retry_delay_ms = in->retry_delay_ms;
    out->initial_duration_ms = in->initial_suspension_ms;
    out->progression_factor = in->progression_factor;
    out->maximum_duration_ms = in->maximum_suspension_ms;
    out->breaker.error_ratio = in->breaker_error_ratio;
    out->breaker.min_calls = in->breaker_min_calls;
    out->breaker.window_ms = in->breaker_window_ms;
}

static int validate_and_default(ftrpc_client_options *o)
{
    if (o->timeout_ms < 0 || o->connect_timeout_ms < 0 || o->attempt_timeout_ms < 0 ||
        o->retries < FTRPC_NO_RETRY || o->fail_mode < FTRPC_FAIL_DEFAULT ||
        o->fail_mode > FTRPC_FAILBACKUP || o->backoff.kind < FTRPC_BACKOFF_NONE ||
        o->backoff.kind > FTRPC_BACKOFF_EXPONENTIAL || o->backoff.initial_ms < 0 ||
        o->backoff.max_ms < 0 || (o->backoff.multiplier != 0 && o->backoff.multiplier < 1)) {
        FT_WARN("client options: a value is out of range (negative timeout, retries, backoff?)");
        return FTRPC_EINVAL;
    }
    if (o->lb && !ft_lb_name_valid(o->lb)) {
        FT_WARN("client options: unknown load balancer '%s'", o->lb);
        return FTRPC_EINVAL;
    }
    if (o->timeout_ms == 0) o->timeout_ms = 1000;
    if (o->connect_timeout_ms == 0) o->connect_timeout_ms = 200;
    if (o->max_body_size == 0) o->max_body_size = FT_BAIDU_STD_DEFAULT_MAX_BODY;
    if (o->max_unwritten_bytes == 0) o->max_unwritten_bytes = (size_t)64 << 20;
    if (o->fail_mode == FTRPC_FAIL_DEFAULT) o->fail_mode = FTRPC_FAILOVER;
    if (o->retries == 0) o->retries = 3;
    if (o->backoff.initial_ms == 0) o->backoff.initial_ms = 10;
    if (o->backoff.multiplier == 0) o->backoff.multiplier = 2;
    if (o->backoff.max_ms == 0) o->backoff.max_ms = 1000;
    if (!o->lb) o->lb = ft_lb_default_name();
    ft_health_options ho;
    to_health_options(&o->health, &ho);
    if (ft_health_options_validate(&ho) != 0) return FTRPC_EINVAL;
    ft_health_set_options so = {.max_suspended_ratio = o->health.max_suspended_ratio};
    if (ft_health_set_options_validate(&so) != 0) return FTRPC_EINVAL;
    ft_retry_budget_options bo = {.ratio = o->retry_budget_ratio,
                                  .min_per_sec = o->retry_budget_min_per_sec};
    if (ft_retry_budget_options_validate(&bo) != 0) return FTRPC_EINVAL;
    return 0;
}

/* ---- endpoints ---- */

static void free_endpoints(ftrpc_client *c)
{
    for (int i = 0; i < c->nendpoints; i++) {
        ft_health_fini(&c->endpoints[i]->health);
        free(c->endpoints[i]);
    }
    free(c->endpoints);
    c->endpoints = NULL;
    c->nendpoints = 0;
}

static int add_endpoint(ftrpc_client *c, const char *addr, uint32_t weight)
{
    ft_client_endpoint *e = calloc(1, sizeof *e);
    if (!e) return FTRPC_ENOMEM;
    if (strlen(addr) >= sizeof e->name || ft_sockaddr_parse(addr, &e->sa) != 0) {
        FT_WARN("bad endpoint address '%s'", addr);
        free(e);
        return FTRPC_EADDR;
    }
    ft_health_options ho;
    to_health_options(&c->opts.health, &ho);
    if (ft_health_init(&e->health, &ho) != 0) {
        free(e);
        return FTRPC_EINVAL;
    }
    snprintf(e->name, sizeof e->name, "%s", addr);
    e->weight = weight;
    e->index = c->nendpoints;
    c->endpoints[c->nendpoints++] = e;
    return 0;
}

static int parse_endpoints(ftrpc_client *c, const char *url)
{
    const char *list = url;
    if (strncmp(url, "list://", 7) == 0) list = url + 7;
    else if (strstr(url, "://")) return FTRPC_EADDR; /* other schemes: the discovery layer */
    char *copy = strdup(list);
    if (!copy) return FTRPC_ENOMEM;
    int n = 1;
    for (const char *p = copy; *p; p++) n += *p == ',';
    c->endpoints = calloc((size_t)n, sizeof *c->endpoints);
    int rc = c->endpoints ? 0 : FTRPC_ENOMEM;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); rc == 0 && tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        if (*tok) rc = add_endpoint(c, tok, 0);
    }
    free(copy);
    if (rc == 0 && c->nendpoints == 0) rc = FTRPC_EADDR;
    return rc;
}

static int build_cluster(ftrpc_client *c)
{
    ft_endpoint_health **hs = calloc((size_t)c->nendpoints, sizeof *hs);
    ft_lb_endpoint *eps = calloc((size_t)c->nendpoints, sizeof *eps);
    int rc = hs && eps ? 0 : FTRPC_ENOMEM;
    for (int i = 0; rc == 0 && i < c->nendpoints; i++) {
        ft_client_endpoint *e = c->endpoints[i];
        hs[i] = &e->health;
        eps[i] = (ft_lb_endpoint){.id = e, .addr = e->name, .weight = e->weight,
                                  .ewma_latency_us = &e->ewma_us, .inflight = &e->health.inflight};
    }
    ft_health_set_options so = {.max_suspended_ratio = c->opts.health.max_suspended_ratio};
    if (rc == 0) rc = ft_health_set_init(&c->health_set, &so, hs, (size_t)c->nendpoints);
    ft_lb *lb = NULL;
    if (rc == 0) rc = ft_lb_new(c->opts.lb, eps, (size_t)c->nendpoints, NULL, &lb);
    if (rc == 0) ft_lb_holder_replace(&c->lb, lb);
    free(hs);
    free(eps);
    return rc;
}

/* ---- lifecycle ---- */

int ftrpc_client_new(const char *naming_url, const ftrpc_client_options *opts, ftrpc_client **out)
{
    if (!naming_url || !out) return FTRPC_EINVAL;
    ftrpc_client_options o = opts ? *opts : (ftrpc_client_options){0};
    int rc = validate_and_default(&o);
    if (rc != 0) return rc;
    ftrpc_client *c = calloc(1, sizeof *c);
    if (!c) return FTRPC_ENOMEM;
    c->opts = o;
    c->rt = ft_runtime_or_default(o.runtime);
    ft_lb_holder_init(&c->lb);
    ft_retry_budget_options bo = {.ratio = o.retry_budget_ratio,
                                  .min_per_sec = o.retry_budget_min_per_sec};
    ft_retry_budget_init(&c->budget, &bo);
    rc = c->rt ? parse_endpoints(c, naming_url) : FTRPC_ENOMEM;
    if (rc == 0) rc = build_cluster(c);
    if (rc == 0) {
        c->loops = calloc((size_t)c->rt->nloops, sizeof *c->loops);
        if (!c->loops) rc = FTRPC_ENOMEM;
    }
    for (int i = 0; rc == 0 && i < c->rt->nloops; i++) {
        ft_list_init(&c->loops[i].calls);
        c->loops[i].conns = calloc((size_t)c->nendpoints, sizeof(ft_cconn *));
        if (!c->loops[i].conns) rc = FTRPC_ENOMEM;
    }
    if (rc != 0) {
        for (int i = 0; c->loops && i < c->rt->nloops; i++) free(c->loops[i].conns);
        free(c->loops);
        ft_lb_holder_fini(&c->lb);
        if (c->health_set.endpoints) ft_health_set_fini(&c->health_set);
        free_endpoints(c);
        ft_retry_budget_fini(&c->budget);
        free(c);
        return rc;
    }
    pthread_mutex_init(&c->free_lock, NULL);
    pthread_cond_init(&c->free_cond, NULL);
    *out = c;
    return 0;
}

struct stop_args {
    ftrpc_client *client;
    int index;
};

static void stop_on_loop(void *arg)
{
    struct stop_args *a = arg;
    ft_client_loop *cl = &a->client->loops[a->index];
    ft_call_stop_all(cl);
    for (int e = 0; e < a->client->nendpoints; e++)
        if (cl->conns[e]) ft_conn_close(cl->conns[e]->conn, 0, 1);
}

static void wait_zero(ftrpc_client *c, atomic_int *counter)
{
    pthread_mutex_lock(&c->free_lock);
    while (atomic_load(counter) > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000;
        ts.tv_sec += ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        pthread_cond_timedwait(&c->free_cond, &c->free_lock, &ts);
    }
    pthread_mutex_unlock(&c->free_lock);
}

void ftrpc_client_free(ftrpc_client *c)
{
    if (!c) return;
    atomic_store(&c->stopping, 1);
    for (int i = 0; i < c->rt->nloops; i++) {
        struct stop_args a = {c, i};
        ft_loop_run_sync(&c->rt->loops[i], stop_on_loop, &a);
    }
    /* calls posted before `stopping` was seen still start, fail ESTOPPED and finish */
    wait_zero(c, &c->inflight);
    wait_zero(c, &c->open_conns);
    for (int i = 0; i < c->rt->nloops; i++) free(c->loops[i].conns);
    free(c->loops);
    ft_lb_holder_fini(&c->lb);
    ft_health_set_fini(&c->health_set);
    free_endpoints(c);
    ft_retry_budget_fini(&c->budget);
    pthread_cond_destroy(&c->free_cond);
    pthread_mutex_destroy(&c->free_lock);
    free(c);
}
