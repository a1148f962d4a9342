/* A load generator shared by `ftrpc bench` and `ftrpc demo`: sends calls through one client and
 * counts every outcome exactly once.
 *
 * Blocking callers (threads > 0): `threads` threads each make blocking ftrpc_call's one after
 * another through the same client until the count or the duration is reached: the shape of brpc's
 * multi_threaded_echo client and rpc_press, where every caller holds one call in flight and the
 * calls of all callers share the client's connections. Closed loop only.
 *
 * Closed loop (rate 0): `concurrency` calls are started, and each completion callback starts the
 * next one (on the IO thread, no hop through the caller's thread), until the count or the duration
 * is reached. Open loop (rate > 0): the caller's thread starts calls on a schedule of `rate` per
 * second and each call's latency runs from its scheduled start, so a stalled server shows as
 * latency instead of a slower schedule (no coordinated omission); `concurrency` then only caps the
 * calls in flight. A call that ftrpc_call_async refuses at once is counted as an error with the
 * refusal's code. The caller's thread waits in ft_load_run, calling `tick` every few ms (progress
 * lines, fault injection at a given point of the run).
 *
 * It does not own the client: the caller makes it with the options it wants to show.
 */
#ifndef FT_CLI_LOAD_H
#define FT_CLI_LOAD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <ftrpc/ftrpc.h>

#define FT_LOAD_MAX_CODES 32
#define FT_LOAD_MAX_ENDPOINTS 32

/* Figures of one run. Counters are written by IO threads (atomics); the code and endpoint tables
 * by IO threads under `lock`; read them after ft_load_run returns, or with the lock meanwhile
 * (ft_load_counts_get for calls and their outcomes). */
typedef struct ft_load_stats {
    _Atomic long started, done, ok, errors, attempts, backups, backup_wins, fallbacks;
    _Atomic long backups_refused; /* calls whose backup the retry budget refused */
    _Atomic long retries;         /* attempts that were neither a call's first nor its backup */
    _Atomic long unsent;          /* calls that failed without sending a request (attempts 0) */
    pthread_mutex_t lock;         /* guards codes[] and endpoints[] */
    struct {
        int code;
        long count;
    } codes[FT_LOAD_MAX_CODES]; /* errors by code (business codes as the handler sent them) */
    size_t ncodes;
    struct {
        char addr[64];
        long count;
        int64_t first_ms; /* when (ms after the run's start) this endpoint first answered */
    } endpoints[FT_LOAD_MAX_ENDPOINTS]; /* successful answers by endpoint */
    size_t nendpoints;
    ftrpc_histogram *hist;    /* latency of every call, ok or not, in us */
    ftrpc_histogram *ok_hist; /* latency of the calls that succeeded (served), in us */
    int64_t start_ns, end_ns;
} ft_load_stats;

typedef struct ft_load ft_load;

typedef struct ft_load_opts {
    ftrpc_client *client;
    const char *service, *method;
    int concurrency;          /* calls in flight (closed loop) or the cap on them (open loop) */
    int threads;              /* > 0: that many blocking callers instead (concurrency unused) */
    double rate;              /* calls per second; 0: closed loop */
    long count;               /* calls to make; 0: run for duration_s */
    double duration_s;        /* used when count is 0 */
    size_t payload;           /* request bytes (of filler), when request is NULL */
    const ftrpc_buf *request; /* when not NULL: every call sends these bytes (a copy is taken) */
    const ftrpc_call_options *call_opts; /* may be NULL */
    /* Open loop: latency from the call's actual start instead of its scheduled one. For runs that
     * are about what the client does, not about what a user waits, on a machine whose scheduler
     * may wake the pacing thread late. */
    int latency_from_send;
    /* Called on the caller's thread about every 5 ms while the run goes on. May be NULL. */
    void (*tick)(ft_load *load, const ft_load_stats *stats, void *arg);
    void *tick_arg;
} ft_load_opts;

int ft_load_stats_init(ft_load_stats *s);
void ft_load_stats_fini(ft_load_stats *s);

/* Runs the load to the end (every call completed) and fills *stats (initialized by the caller).
 * 0, or a negative FTRPC_E* code when nothing could start. */
int ft_load_run(const ft_load_opts *opts, ft_load_stats *stats);
/* Ends the run early: no new call starts; those in flight complete. From tick or any thread. */
void ft_load_stop(ft_load *load);
/* Calls completed and how they ended. */
typedef struct ft_load_counts {
    long calls, ok, errors;
} ft_load_counts;
/* The counts so far, safe while the run goes on: ok + errors never exceeds calls, and once
 * ft_load_run has returned they add up to it. */
ft_load_counts ft_load_counts_get(const ft_load_stats *stats);
/* Seconds since the run's start. */
double ft_load_elapsed(const ft_load_stats *stats);
/* Successful answers from `addr` so far; safe while the run goes on (from tick, say). */
long ft_load_answers_from(const ft_load_stats *stats, const char *addr);

/* Monotonic clock in ns. */
int64_t ft_load_now_ns(void);

/* One latency series of a CDF plot. */
typedef struct ft_cdf_series {
    const char *label;
    const ftrpc_histogram *hist;
} ft_cdf_series;

/* Writes an SVG CDF plot of the series (log-scale latency in ms on x, cumulative fraction on y)
 * to f: a self-contained <svg> element with its xmlns, usable alone or inline in HTML. */
void ft_cdf_svg(FILE *f, const char *title, const ft_cdf_series *series, size_t n, int width,
                int height);

#endif
