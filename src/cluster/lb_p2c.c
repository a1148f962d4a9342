/* "p2c": power of two choices over peak-EWMA cost (Mitzenmacher; Finagle's and linkerd's default).
 *
 * A pick draws two distinct usable, non-excluded endpoints at random and takes the cheaper, where
 * cost = ewma_latency_us x (inflight + 1), read from the figures the health module updates. An
 * endpoint with no latency sample yet costs 0 while idle (so a new node gets traffic and a first
 * measurement) and a large penalty once it has requests in flight (so a burst does not pile onto a
 * node nobody has measured), as Finagle's PeakEwma does. Ties go to the first draw, itself random.
 *
 * Two draws, not a scan: a slow node is avoided whenever it meets a faster one, yet it keeps
 * getting a little traffic when two slow ones meet, so its EWMA can recover; the least loaded of N
 * is never searched for, which keeps picks O(1) and stops every thread from herding onto the same
 * "best" node between two updates of the figures.
 *
 * Failures weigh in: the cost adds failure ratio x FT_LB_P2C_FAILURE_PENALTY_US (1 s), the ratio
 * being the share of the endpoint's recent attempts that failed. Latency alone rewards failing
 * fast: a refused connect or an overload rejection takes microseconds, so a dead or shedding node
 * looked like the fastest one and drew the load (1,000 endpoints, 1 alive: 1 call in 210,614 got
 * through). With the penalty a failing node costs what a slow one does, and loses its draws.
 *
 * The decay of the EWMA (peak sensitivity, half-life) is the health module's business; this file
 * only reads the current values, relaxed: a slightly stale figure only makes one choice less sharp.
 */
#include "cluster/ewma_decay.h"
#include "cluster/lb_impl.h"

/* Finagle's Penalty: Long.MaxValue >> 16, large beside any real cost yet far from overflow. */
#define P2C_PENALTY ((double)(INT64_MAX >> 16))

static int p2c_init(ft_lb *lb, const ft_lb_options *opts)
{
    return 0;
}

static double p2c_cost(const ft_lb_endpoint *ep, int64_t now_ns)
{
    int64_t ewma =
        ep->ewma_latency_us ? atomic_load_explicit(ep->ewma_latency_us, memory_order_relaxed) : 0;
    int inflight = 0;
    for (size_t i = 0; ep->inflight && i < (ep->inflight_shards > 1 ? ep->inflight_shards : 1); i++)
        inflight += atomic_load_explicit(
            (const atomic_int *)((const char *)ep->inflight + i * ep->inflight_stride),
            memory_order_relaxed);
    if (inflight < 0) inflight = 0;
    int64_t ppm = ep->failure_ppm ? atomic_load_explicit(ep->failure_ppm, memory_order_relaxed) : 0;
    if (ewma <= 0 && ppm <= 0) return inflight == 0 ? 0.0 : P2C_PENALTY + inflight;
    /* Decay since the last sample: without it, a node whose one slow answer raised its figure is
     * never picked against faster ones, so no sample ever lowers it (seen in the chaos test). */
    double decay = 1.0;
    if (ep->ewma_stamp_ns && ep->ewma_decay_ns > 0 && now_ns > 0) {
        int64_t stamp = atomic_load_explicit(ep->ewma_stamp_ns, memory_order_relaxed);
        decay = ft_ewma_decay_weight(now_ns - stamp, ep->ewma_decay_ns);
    }
    double failing = ppm > 0 ? (double)ppm / 1e6 * decay * FT_LB_P2C_FAILURE_PENALTY_US : 0.0;
    if (ewma <= 0) return inflight == 0 ? failing : P2C_PENALTY + inflight;
    return (double)ewma * decay * ((double)inflight + 1.0) + failing;
}

/* A random acceptable endpoint other than `skip` (SIZE_MAX: none), or SIZE_MAX. */
static size_t draw_one(const ft_lb *lb, const ft_lb_pick *req, ft_rand *rng, size_t skip)
{
    for (int k = 0; k < FT_LB_PROBES; k++) {
        size_t i;
        if (skip == SIZE_MAX) {
            i = (size_t)ft_rand_below(rng, lb->n);
        } else {
            /* uniform over the n - 1 others: draw below n - 1 and step over skip */
            i = (size_t)ft_rand_below(rng, lb->n - 1);
            if (i >= skip) i++;
        }
        if (ft_lb_ok(req, i)) return i;
    }
    size_t i;
    return ft_lb_scan_pick(lb, req, rng, 0, skip, &i) == 0 ? i : SIZE_MAX;
}

static int p2c_select(ft_lb *lb, const ft_lb_pick *req, ft_rand *rng, size_t *out)
{
    size_t a = draw_one(lb, req, rng, SIZE_MAX);
    if (a == SIZE_MAX) return FTRPC_ENOENDPOINT;
    size_t b = lb->n > 1 ? draw_one(lb, req, rng, a) : SIZE_MAX;
    if (b != SIZE_MAX && p2c_cost(&lb->eps[b], req->now_ns) < p2c_cost(&lb->eps[a], req->now_ns))
        a = b;
    *out = a;
    return 0;
}

const ft_lb_ops ft_lb_p2c_ops = {
    .name = "p2c",
    .init = p2c_init,
    .select = p2c_select,
};
