/* rpcz rings, their process-wide list, the switch and the page (see rpcz.h). The list is an
 * intrusive list under one mutex: a process has a handful of clients and servers, and the page is
 * read by people, a few times a minute. */
#include "metrics/rpcz.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/list.h"
#include "base/log.h"
#include "ftrpc/common.h"

atomic_int ft_rpcz_capacity_now;

enum { SLOT_FREE, SLOT_WRITING, SLOT_READING };

typedef struct rpcz_slot {
    atomic_uint state; /* SLOT_*: who holds the span */
    ft_rpcz_span span;
} rpcz_slot;

typedef struct rpcz_store {
    size_t capacity;
    atomic_ullong next; /* records claimed so far: the next one is next + 1 */
    rpcz_slot slots[];
} rpcz_store;

struct ft_rpcz_ring {
    ft_list node; /* in `rings`, in creation order */
    int kind;
    char *name;
    _Atomic(rpcz_store *) store; /* NULL until the first record */
    atomic_ullong dropped;
};

static pthread_mutex_t rings_lock = PTHREAD_MUTEX_INITIALIZER; /* guards `rings` */
static ft_list rings = {&rings, &rings};
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

static int capacity_valid(int capacity)
{
    return capacity >= 0 && capacity <= FTRPC_RPCZ_MAX_CAPACITY;
}

int ftrpc_rpcz_enable(int capacity)
{
    if (!capacity_valid(capacity)) return FTRPC_EINVAL;
    atomic_store(&ft_rpcz_capacity_now, capacity ? capacity : FTRPC_RPCZ_DEFAULT_CAPACITY);
    return 0;
}

void ftrpc_rpcz_disable(void)
{
    atomic_store(&ft_rpcz_capacity_now, 0);
}

int ftrpc_rpcz_capacity(void)
{
    return atomic_load(&ft_rpcz_capacity_now);
}

static void read_env(void)
{
    const char *e = getenv("FTRPC_RPCZ");
    if (!e || !*e) return;
    char *end;
    long n = strtol(e, &end, 10);
    if (*end || n < 1 || n > FTRPC_RPCZ_MAX_CAPACITY) {
        FT_LOG(FTRPC_LOG_WARN, "FTRPC_RPCZ=%s ignored: it wants a capacity in 1..%d", e,
               FTRPC_RPCZ_MAX_CAPACITY);
        return;
    }
    ftrpc_rpcz_enable((int)n);
}

int ft_rpcz_ring_new(int kind, const char *name, ft_rpcz_ring **out)
{
    if (!name || !out) return FTRPC_EINVAL;
    pthread_once(&env_once, read_env);
    ft_rpcz_ring *r = calloc(1, sizeof *r);
    if (!r || !(r->name = strdup(name))) {
        free(r);
        return FTRPC_ENOMEM;
    }
    r->kind = kind;
    pthread_mutex_lock(&rings_lock);
    ft_list_push_back(&rings, &r->node);
    pthread_mutex_unlock(&rings_lock);
    *out = r;
    return 0;
}

void ft_rpcz_ring_free(ft_rpcz_ring *ring)
{
    if (!ring) return;
    pthread_mutex_lock(&rings_lock);
    ft_list_remove(&ring->node);
    pthread_mutex_unlock(&rings_lock); /* no page reads it any more */
    free(atomic_load(&ring->store));
    free(ring->name);
    free(ring);
}

/* The ring's slots, made at its first record with the capacity then in force; two first records
 * at once both make one and the loser frees its own. */
static rpcz_store *store_get(ft_rpcz_ring *ring)
{
    rpcz_store *s = atomic_load_explicit(&ring->store, memory_order_acquire);
    if (s) return s;
    int cap = atomic_load_explicit(&ft_rpcz_capacity_now, memory_order_relaxed);
    if (cap <= 0) cap = FTRPC_RPCZ_DEFAULT_CAPACITY; /* turned off meanwhile: still one record */
    rpcz_store *made = calloc(1, sizeof *made + (size_t)cap * sizeof made->slots[0]);
    if (!made) return NULL;
    made->capacity = (size_t)cap;
    rpcz_store *expected = NULL;
    if (atomic_compare_exchange_strong_explicit(&ring->store, &expected, made, memory_order_acq_rel,
                                                memory_order_acquire))
        return made;
    free(made);
    return expected;
}

ft_rpcz_span *ft_rpcz_begin(ft_rpcz_ring *ring)
{
    rpcz_store *s = store_get(ring);
    if (!s) {
        atomic_fetch_add_explicit(&ring->dropped, 1, memory_order_relaxed);
        return NULL;
    }
    uint64_t seq = atomic_fetch_add_explicit(&s->next, 1, memory_order_relaxed) + 1;
    rpcz_slot *slot = &s->slots[(seq - 1) % s->capacity];
    unsigned expected = SLOT_FREE;
    if (!atomic_compare_exchange_strong_explicit(&slot->state, &expected, SLOT_WRITING,
                                                 memory_order_acquire, memory_order_relaxed)) {
        atomic_fetch_add_explicit(&ring->dropped, 1, memory_order_relaxed);
        return NULL;
    }
    if (slot->span.seq > seq) { /* a writer a ring ahead got here first: keep its newer record */
        atomic_store_explicit(&slot->state, SLOT_FREE, memory_order_release);
        atomic_fetch_add_explicit(&ring->dropped, 1, memory_order_relaxed);
        return NULL;
    }
    slot->span.seq = seq;
    return &slot->span;
}

void ft_rpcz_commit(ft_rpcz_span *span)
{
    rpcz_slot *slot = (rpcz_slot *)((char *)span - offsetof(rpcz_slot, span));
    atomic_store_explicit(&slot->state, SLOT_FREE, memory_order_release);
}

static int newest_first(const void *a, const void *b)
{
    uint64_t x = ((const ft_rpcz_span *)a)->seq, y = ((const ft_rpcz_span *)b)->seq;
    return x < y ? 1 : x > y ? -1 : 0;
}

size_t ft_rpcz_ring_copy(ft_rpcz_ring *ring, ft_rpcz_span **out)
{
    *out = NULL;
    rpcz_store *s = atomic_load_explicit(&ring->store, memory_order_acquire);
    if (!s) return 0;
    ft_rpcz_span *copy = malloc(s->capacity * sizeof *copy);
    if (!copy) return 0;
    size_t n = 0;
    for (size_t i = 0; i < s->capacity; i++) {
        rpcz_slot *slot = &s->slots[i];
        unsigned expected = SLOT_FREE;
        if (!atomic_compare_exchange_strong_explicit(&slot->state, &expected, SLOT_READING,
                                                     memory_order_acquire, memory_order_relaxed))
            continue; /* being written: it is the newest, the next read shows it */
        if (slot->span.seq) copy[n++] = slot->span;
        atomic_store_explicit(&slot->state, SLOT_FREE, memory_order_release);
    }
    if (n == 0) {
        free(copy);
        return 0;
    }
    qsort(copy, n, sizeof *copy, newest_first);
    *out = copy;
    return n;
}

uint64_t ft_rpcz_ring_dropped(const ft_rpcz_ring *ring)
{
    return atomic_load_explicit(&((ft_rpcz_ring *)ring)->dropped, memory_order_relaxed);
}

void ft_rpcz_set_method(ft_rpcz_span *span, const char *service, size_t service_len,
                        const char *method, size_t method_len)
{
    size_t cap = sizeof span->method - 1;
    size_t sl = service_len < cap ? service_len : cap;
    memcpy(span->method, service, sl);
    size_t n = sl;
    if (n < cap) span->method[n++] = '/';
    size_t ml = method_len < cap - n ? method_len : cap - n;
    memcpy(span->method + n, method, ml);
    span->method[n + ml] = '\0';
}

/* ---- the page ---- */

/* "2026-12-07T19:40:01.123456Z" */
static void wall_text(int64_t us, char *buf, size_t len)
{
    time_t sec = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char day[32];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%06lldZ", day, (long long)(us % 1000000));
}

static const char *kind_name(int32_t kind)
{
    return kind == 0 ? "OK" : kind == 1 ? "RPC_ERROR" : "BUSINESS_ERROR";
}

/* The name of an attempt's or a client call's code: "" for 0 and business codes. */
static const char *code_name(int32_t code)
{
    return code < 0 ? ftrpc_err_name(code) : "";
}

/* The name of a server's wire code: "" for 0 and business codes. */
static const char *wire_name(int32_t code)
{
    return code > 0 && code < FTRPC_BUSINESS_CODE_MIN ? ftrpc_err_name(-code) : "";
}

static void span_json(const ft_rpcz_ring *ring, const ft_rpcz_span *sp, int64_t lead_us,
                      ft_strbuf *o)
{
    char when[48];
    int64_t start_us = sp->start_ns / 1000 + lead_us;
    wall_text(start_us, when, sizeof when);
    ft_strbuf_appendf(o, "{\"seq\":%llu,\"start\":\"%s\",\"start_us\":%lld,\"latency_us\":%lld,",
                      (unsigned long long)sp->seq, when, (long long)start_us,
                      (long long)sp->latency_us);
    ft_strbuf_appends(o, "\"method\":");
    ft_strbuf_append_json(o, sp->method);
    if (ring->kind == FT_RPCZ_SERVER) {
        ft_strbuf_appends(o, ",\"peer\":");
        ft_strbuf_append_json(o, sp->peer);
        ft_strbuf_appendf(
            o,
            ",\"protocol\":\"%s\",\"correlation_id\":%lld,\"code\":%d,\"error\":\"%s\","
            "\"replied\":%s,\"cancelled\":%s}",
            sp->http ? "http" : "baidu_std", (long long)sp->id, (int)sp->code, wire_name(sp->code),
            sp->replied ? "true" : "false", sp->cancelled ? "true" : "false");
        return;
    }
    ft_strbuf_appendf(o,
                      ",\"result\":\"%s\",\"code\":%d,\"error\":\"%s\",\"attempts\":%d,"
                      "\"backups\":%d,\"cancelled\":%s,\"call_id\":%llu,\"log_id\":%lld,"
                      "\"spans\":[",
                      kind_name(sp->kind), (int)sp->code, code_name(sp->code), (int)sp->attempts,
                      (int)sp->backups, sp->cancelled ? "true" : "false",
                      (unsigned long long)sp->id, (long long)sp->log_id);
    for (int i = 0; i < sp->nattempts && i < FTRPC_RPCZ_MAX_ATTEMPTS; i++) {
        const ft_rpcz_attempt *a = &sp->attempt[i];
        ft_strbuf_appends(o, i ? ",{\"endpoint\":" : "{\"endpoint\":");
        ft_strbuf_append_json(o, a->endpoint);
        ft_strbuf_appendf(o,
                          ",\"sent_us\":%lld,\"done_us\":%lld,\"code\":%d,\"error\":\"%s\","
                          "\"backup\":%s,\"winner\":%s,\"cancelled\":%s}",
                          (long long)a->sent_us, (long long)a->done_us, (int)a->code,
                          code_name(a->code), a->backup ? "true" : "false",
                          a->winner ? "true" : "false", a->cancelled ? "true" : "false");
    }
    ft_strbuf_appends(o, "]}");
}

static void span_text(const ft_rpcz_ring *ring, const ft_rpcz_span *sp, int64_t lead_us,
                      ft_strbuf *o)
{
    char when[48];
    wall_text(sp->start_ns / 1000 + lead_us, when, sizeof when);
    if (ring->kind == FT_RPCZ_SERVER) {
        ft_strbuf_appendf(o, "%s %s from %s %s cid=%lld latency_us=%lld code=%d%s%s%s%s\n", when,
                          sp->method, sp->peer, sp->http ? "http" : "baidu_std", (long long)sp->id,
                          (long long)sp->latency_us, (int)sp->code, *wire_name(sp->code) ? " " : "",
                          wire_name(sp->code), sp->replied ? "" : " no-reply",
                          sp->cancelled ? " cancelled" : "");
        return;
    }
    ft_strbuf_appendf(o, "%s %s %s code=%d%s%s latency_us=%lld attempts=%d backups=%d%s\n", when,
                      sp->method, kind_name(sp->kind), (int)sp->code,
                      *code_name(sp->code) ? " " : "", code_name(sp->code),
                      (long long)sp->latency_us, (int)sp->attempts, (int)sp->backups,
                      sp->cancelled ? " cancelled" : "");
    for (int i = 0; i < sp->nattempts && i < FTRPC_RPCZ_MAX_ATTEMPTS; i++) {
        const ft_rpcz_attempt *a = &sp->attempt[i];
        ft_strbuf_appendf(o, "    #%d %s sent_us=%lld done_us=%lld code=%d%s%s%s%s%s\n", i,
                          a->endpoint, (long long)a->sent_us, (long long)a->done_us, (int)a->code,
                          *code_name(a->code) ? " " : "", code_name(a->code),
                          a->backup ? " backup" : "", a->winner ? " winner" : "",
                          a->cancelled ? " cancelled" : "");
    }
}

int ft_rpcz_render(ft_strbuf *o, int json)
{
    struct timespec wall, mono;
    clock_gettime(CLOCK_REALTIME, &wall);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    int64_t lead_us = ((int64_t)wall.tv_sec - (int64_t)mono.tv_sec) * 1000000 +
                      (wall.tv_nsec - mono.tv_nsec) / 1000;
    return ft_rpcz_render_at(o, json, lead_us);
}

int ft_rpcz_render_at(ft_strbuf *o, int json, int64_t lead_us)
{
    int cap = ftrpc_rpcz_capacity();
    if (json)
        ft_strbuf_appendf(o, "{\"enabled\":%s,\"capacity\":%d,\"rings\":[", cap ? "true" : "false",
                          cap);
    else if (cap)
        ft_strbuf_appendf(o, "rpcz is on: the last %d calls of each client and server\n", cap);
    else
        ft_strbuf_appends(o, "rpcz is off: nothing is recorded (turn it on with "
                             "ftrpc_rpcz_enable, FTRPC_RPCZ=N or --rpcz)\n");
    pthread_mutex_lock(&rings_lock); /* no ring is freed meanwhile */
    int first = 1, truncated = 0;
    for (ft_list *node = rings.next; node != &rings; node = node->next) {
        ft_rpcz_ring *r = ft_container_of(node, ft_rpcz_ring, node);
        ft_rpcz_span *spans;
        size_t n = ft_rpcz_ring_copy(r, &spans);
        const char *kind = r->kind == FT_RPCZ_SERVER ? "server" : "client";
        unsigned long long dropped = (unsigned long long)ft_rpcz_ring_dropped(r);
        if (json) {
            ft_strbuf_appendf(o, "%s{\"kind\":\"%s\",\"name\":", first ? "" : ",", kind);
            ft_strbuf_append_json(o, r->name);
            ft_strbuf_appendf(o, ",\"dropped\":%llu,\"calls\":[", dropped);
        } else if (n || dropped) {
            ft_strbuf_appendf(o, "\n%s %s: %zu call%s kept, newest first; %llu dropped\n", kind,
                              r->name, n, n == 1 ? "" : "s", dropped);
        }
        first = 0;
        for (size_t i = 0; i < n; i++) {
            /* a record takes under 4 KiB: stop while the closing brackets still fit */
            if (o->len + 4096 > o->max) {
                truncated = 1;
                break;
            }
            if (json && i) ft_strbuf_appends(o, ",");
            if (json)
                span_json(r, &spans[i], lead_us, o);
            else
                span_text(r, &spans[i], lead_us, o);
        }
        if (json) ft_strbuf_appends(o, "]}");
        free(spans);
    }
    pthread_mutex_unlock(&rings_lock);
    if (json) return ft_strbuf_appendf(o, "],\"truncated\":%s}", truncated ? "true" : "false");
    return truncated ? ft_strbuf_appends(o, "\n(truncated: the page reached its size bound)\n") : 0;
}

int ftrpc_rpcz_dump(int json, ftrpc_buf *out)
{
    if (!out) return FTRPC_EINVAL;
    ft_strbuf sb;
    ft_strbuf_init(&sb, 0);
    int rc = ft_rpcz_render(&sb, json);
    if (rc == 0) rc = ftrpc_buf_append(out, ft_strbuf_cstr(&sb), sb.len);
    ft_strbuf_fini(&sb);
    return rc;
}
