/* rpcz rings: the recent calls of each client and server, for the /rpcz page (brpc's /rpcz;
 * the public switch is include/ftrpc/rpcz.h, the page docs/observability.md, rpcz).
 *
 * A ring sits in the metrics layer, below client and server, so that the server's page reads the
 * clients' records without including the client (the same reason as endpoint_report.h). Each
 * client and each server makes one ring (ft_rpcz_ring_new, which puts it in the process-wide
 * list the page walks) and frees it when it is freed.
 *
 * Cost: ft_rpcz_on() is one relaxed atomic load, the only price of a call while rpcz is off. On,
 * a call claims a slot with one atomic add on the ring's counter and a compare-and-swap on the
 * slot, fills the slot in place, and releases it with a store: no lock, no allocation (the slots
 * are allocated once, at the ring's first record). The ring keeps the newest `capacity` calls;
 * older slots are overwritten.
 *
 * Threads: any number of writers (a client's calls complete on every IO thread; a server's on its
 * loops) and readers at once. A slot is held by one writer or one reader at a time (its `state`):
 * a writer that finds its slot held (a reader copying it, or a writer a whole ring behind), or
 * already holding a newer record (it was that writer a ring behind), drops its record and counts
 * it in `dropped`; a reader skips a held slot. So a record is never seen half written, a newer
 * one is never replaced by an older one, and nobody waits.
 *
 * It records what its callers hand it; it does not time calls or know what an attempt is beyond
 * the fields below.
 */
#ifndef FT_METRICS_RPCZ_H
#define FT_METRICS_RPCZ_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "base/strbuf.h"
#include "ftrpc/rpcz.h"

enum ft_rpcz_kind { FT_RPCZ_CLIENT, FT_RPCZ_SERVER };

/* One attempt of a client call. Times in microseconds after the call's start. */
typedef struct ft_rpcz_attempt {
    char endpoint[64];
    int64_t sent_us;
    int64_t done_us;   /* when its outcome was known (answer, error, or abandoned) */
    int32_t code;      /* 0 success, > 0 a business code, < 0 an RPC error (FTRPC_E*) */
    uint8_t backup;    /* it was the backup request of failbackup */
    uint8_t winner;    /* its answer became the call's result */
    uint8_t cancelled; /* the call gave up on it before its answer (a Control/Cancel was sent) */
} ft_rpcz_attempt;

/* One call, as its client or server records it. */
typedef struct ft_rpcz_span {
    uint64_t seq; /* 1, 2, ... in the ring's order of records (0: empty slot) */
    /* the call's start, CLOCK_MONOTONIC in ns as its loop read it: the page turns it into UTC,
     * so that a record reads no wall clock */
    int64_t start_ns;
    int64_t latency_us;
    char method[128]; /* "service/method" (cut to fit) */
    /* client: the result kind (ftrpc_result_kind) and code of ftrpc_result, before any fallback;
     * server: kind 0 and the wire code of the reply (0 success; docs/protocol.md) */
    int32_t kind;
    int32_t code;
    int32_t attempts; /* client: attempts sent (may exceed nattempts) */
    int32_t backups;  /* client: backups sent */
    int64_t log_id;
    uint64_t id;   /* client: the async call's handle (0: none); server: the correlation id */
    char peer[64]; /* server: the caller's address */
    uint8_t nattempts;
    uint8_t cancelled; /* client: ftrpc_call_cancel ended it; server: the client cancelled it */
    uint8_t replied;   /* server: a reply was sent (not: dropped, cancelled before its handler) */
    uint8_t http;      /* server: it came over HTTP */
    ft_rpcz_attempt attempt[FTRPC_RPCZ_MAX_ATTEMPTS];
} ft_rpcz_span;

typedef struct ft_rpcz_ring ft_rpcz_ring;

/* 1 when calls are recorded: one relaxed load, for every call. */
extern atomic_int ft_rpcz_capacity_now;
static inline int ft_rpcz_on(void)
{
    return atomic_load_explicit(&ft_rpcz_capacity_now, memory_order_relaxed) > 0;
}

/* Makes a ring named `name` (copied: "c1 list://...", "server 127.0.0.1:8000") and lists it for
 * the page. Reads FTRPC_RPCZ the first time any ring is made. 0, FTRPC_EINVAL, FTRPC_ENOMEM. */
int ft_rpcz_ring_new(int kind, const char *name, ft_rpcz_ring **out);
/* Unlists and frees it; no writer may run during or after. NULL does nothing. */
void ft_rpcz_ring_free(ft_rpcz_ring *ring);

/* Claims the slot of the next record (allocating the ring's slots at its first record) and
 * returns its span to fill, with seq set and the rest as the previous record left it; NULL when
 * the slot was held or memory short (the record is dropped). Every non-NULL begin is followed by
 * ft_rpcz_commit with the same span, soon, on the same thread. */
ft_rpcz_span *ft_rpcz_begin(ft_rpcz_ring *ring);
void ft_rpcz_commit(ft_rpcz_span *span);

/* The ring's records, newest first, copied into *out (malloc'ed, the caller's to free; NULL when
 * there are none); returns how many. A slot held by a writer at that moment is left out. */
size_t ft_rpcz_ring_copy(ft_rpcz_ring *ring, ft_rpcz_span **out);
/* Records lost to a held slot or to memory. */
uint64_t ft_rpcz_ring_dropped(const ft_rpcz_ring *ring);

/* Appends the page (every listed ring, in order of creation) as text or JSON. 0 or FTRPC_ENOMEM
 * (out reached its bound). */
int ft_rpcz_render(ft_strbuf *out, int json);

/* The same with the wall clock's lead over CLOCK_MONOTONIC given (in us), for tests. */
int ft_rpcz_render_at(ft_strbuf *out, int json, int64_t wall_minus_mono_us);

/* Sets span->method to "service/method", cut to fit, from names whose lengths the caller knows
 * (a snprintf, or a strlen of each, was half of what a record cost). */
void ft_rpcz_set_method(ft_rpcz_span *span, const char *service, size_t service_len,
                        const char *method, size_t method_len);

#endif
