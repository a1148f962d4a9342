/* rpcz: a record of the recent calls of every client and server in the process, shown on the
 * /rpcz page of every server and admin port (brpc's /rpcz and its enable_rpcz flag;
 * docs/observability.md, rpcz).
 *
 * Off by default. When on, each client and each server keeps its last `capacity` calls in a ring
 * of fixed slots: per call its start, latency and outcome and, for a client, every attempt
 * (endpoint, when it was sent, its outcome, whether it was the backup, the winner, or cancelled).
 * Off, a call pays one relaxed atomic load; on, it fills one ring slot (no allocation per call).
 */
#ifndef FTRPC_RPCZ_H
#define FTRPC_RPCZ_H

#include "ftrpc/buf.h"
#include "ftrpc/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The capacity ftrpc_rpcz_enable(0) gives: calls kept per client and per server. */
#define FTRPC_RPCZ_DEFAULT_CAPACITY 256
/* The largest capacity (a call's record is about 1 KiB: 16 MiB per client or server). */
#define FTRPC_RPCZ_MAX_CAPACITY 16384
/* Attempts recorded per client call; a call with more (many retries) keeps its first ones and
 * says how many it made. */
#define FTRPC_RPCZ_MAX_ATTEMPTS 8

/* Turns recording on for every client and server of the process, from their next call on.
 * capacity: calls kept per client and per server, 0 for FTRPC_RPCZ_DEFAULT_CAPACITY, at most
 * FTRPC_RPCZ_MAX_CAPACITY. A client or server takes its ring (capacity x about 1 KiB) at its first
 * call recorded and keeps that size until it is freed: a later capacity applies to rings not yet
 * taken. The environment variable FTRPC_RPCZ=N does the same as ftrpc_rpcz_enable(N) when the
 * process makes its first client or server. 0, or FTRPC_EINVAL for a capacity out of range.
 * Any thread. */
FTRPC_API int ftrpc_rpcz_enable(int capacity);
/* Turns recording off: calls from now on are not recorded; what was recorded stays on the page
 * until its client or server is freed. Any thread. */
FTRPC_API void ftrpc_rpcz_disable(void);
/* The capacity in force while recording is on, 0 while it is off. Any thread. */
FTRPC_API int ftrpc_rpcz_capacity(void);

/* Appends the /rpcz page to out: json 0 for text, 1 for JSON (docs/observability.md shows both).
 * The caller owns out. 0, FTRPC_EINVAL (NULL out) or FTRPC_ENOMEM. Any thread. */
FTRPC_API int ftrpc_rpcz_dump(int json, ftrpc_buf *out);

#ifdef __cplusplus
}
#endif
#endif
