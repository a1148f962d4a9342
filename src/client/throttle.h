/* Adaptive throttling: a client that sees its service reject most of what it sends rejects calls
 * itself, before they use a connection, a server's parser or its admission control (Google SRE
 * book, "Handling Overload", client-side throttling; docs/overload-client.md).
 *
 * Rule: over a sliding window, a new call is rejected locally with probability
 *     max(0, (requests - k * accepts) / (requests + 1))
 * where `requests` counts the attempts a server answered and the calls rejected locally, and
 * `accepts` the attempts answered with anything but an overload rejection (FTRPC_ELIMIT). With
 * k = 2 nothing is rejected until more than half of the answers are refusals for overload; as the
 * refusals grow, so does the local rejection, and as the server recovers the accepts pull it back
 * to 0. Attempts that got no answer (a refused connection, a timeout) are not counted at all:
 * the throttle follows the servers' own overload signal, and leaves dead or silent endpoints to
 * endpoint health and the breaker (the SRE book counts every request; ftrpc differs so that an
 * outage shows as its own error, not as FTRPC_ETHROTTLED).
 *
 * Invariants: the window slides in `buckets` steps (a bucket older than the window counts for
 * nothing); both counts of a bucket change together under `lock`, which guards the ring and its
 * running sums and nothing else; the sums equal the ring's whenever sum_epoch is now's bucket. Time
 * comes from the caller (now_ns) and the random draw too (u), so that tests drive it on a manual
 * clock with chosen draws (tests/unit/test_throttle.c).
 *
 * Not here: what counts as an accept (call.c decides), nor any error reporting.
 *
 * Threads: any thread after init; init/fini by the owner while no other thread uses it.
 */
#ifndef FT_CLIENT_THROTTLE_H
#define FT_CLIENT_THROTTLE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define FT_THROTTLE_BUCKETS 30
/* k value for "off": every call is admitted and nothing is counted. */
#define FT_THROTTLE_OFF (-1.0)

/* Zero means default. */
typedef struct ft_throttle_options {
    double k;          /* default 2 (SRE book); >= 1 (below, a healthy service is throttled);
                        * FT_THROTTLE_OFF: off */
    int64_t window_ms; /* default 30000 (gRPC's adaptive throttler looks back 30 s); >= 30 */
} ft_throttle_options;

typedef struct ft_throttle_bucket {
    int64_t epoch; /* which bucket of time these counts are for */
    uint32_t requests, accepts;
} ft_throttle_bucket;

typedef struct ft_throttle {
    double k;
    bool off;
    int64_t bucket_ns;
    pthread_mutex_t lock; /* guards ring and the sums below */
    ft_throttle_bucket ring[FT_THROTTLE_BUCKETS];
    /* The window's counts as of bucket sum_epoch (the buckets of (sum_epoch - BUCKETS,
     * sum_epoch]), kept up to date by every count of that bucket; summed again from the ring only
     * when time has moved to another bucket (sum_epoch INT64_MIN: not summed yet). Every call
     * asks for the probability: a sum over the ring each time was ~5 % of a client's
     * instructions per call (docs/performance.md). */
    int64_t sum_epoch;
    double sum_requests, sum_accepts;
    /* FT_THROTTLE_ZERO_BIT | the bucket of time e (its low 62 bits) when, as of the last change
     * under `lock`, the probability in bucket e is 0; 0 when not known. Written under `lock`, read
     * without it: ft_throttle_admit admits at once when it names now's bucket, the common case of a
     * healthy service, with no lock and no arithmetic (the lock's pair was ~110 instructions of
     * every call, docs/performance.md). */
    _Atomic uint64_t zero_hint;
} ft_throttle;

/* 0, or FTRPC_EINVAL with the reason logged. `o` may be NULL (defaults). */
int ft_throttle_options_validate(const ft_throttle_options *o);
/* 0 or FTRPC_EINVAL. `t` is the caller's (embedded in the client). */
int ft_throttle_init(ft_throttle *t, const ft_throttle_options *o);
void ft_throttle_fini(ft_throttle *t);

/* A new call: decides from the window so far. u in [0, 1) is a uniform draw; the call is
 * rejected (false, and counted as a request) when u < the rejection probability. */
bool ft_throttle_admit(ft_throttle *t, int64_t now_ns, double u);
/* An attempt a server answered: one request, and one accept unless the answer was an overload
 * rejection (accepted false). */
void ft_throttle_on_answer(ft_throttle *t, int64_t now_ns, bool accepted);
/* The rejection probability now, in [0, 1). */
double ft_throttle_probability(ft_throttle *t, int64_t now_ns);

#endif
