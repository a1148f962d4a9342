/* brpc's auto and timeout concurrency limiters as state machines (concurrency_limiter.h).
 *
 * Every finished call is a sample (brpc samples one per 0.1 ms; the server here feeds them all,
 * under its lock, which costs less than the call). A window closes after max_samples samples, or
 * after window_ns with at least min_samples; a window with fewer is dropped, so that a trickle of
 * calls does not move the limit.
 */
#include "server/concurrency_limiter.h"

#include <math.h>
#include <stddef.h>

#include "base/clock.h"
#include "base/rand.h"

void ft_limiter_params_default(ft_limiter_params *p)
{
    if (p->window_ns <= 0) p->window_ns = 1000 * FT_NS_PER_MS;
    if (p->min_samples <= 0) p->min_samples = 100;
    if (p->max_samples <= 0) p->max_samples = 200;
    if (p->max_samples < p->min_samples) p->max_samples = p->min_samples;
    if (p->alpha <= 0) p->alpha = 0.3;
    if (p->initial_max <= 0) p->initial_max = 40;
    if (p->min_max <= 0) p->min_max = 1;
    if (p->remeasure_ns <= 0) p->remeasure_ns = 50000 * FT_NS_PER_MS;
    if (p->initial_latency_ns <= 0) p->initial_latency_ns = 500 * 1000;
    if (p->ema <= 0 || p->ema > 1) p->ema = 0.1;
}

/* Half the interval plus a random part of the other half, as brpc's NextResetTime. */
static int64_t next_remeasure(ft_limiter *l, int64_t now_ns)
{
    ft_rand r;
    ft_rand_seed(&r, l->rand);
    l->rand = ft_rand_next(&r);
    uint64_t half = (uint64_t)(l->p.remeasure_ns / 2);
    return now_ns + (int64_t)half + (int64_t)ft_rand_below(&r, half ? half : 1);
}

static void window_reset(ft_limiter *l, int64_t now_ns)
{
    l->win_start_ns = now_ns;
    l->win_ok = l->win_failed = 0;
    l->win_ok_ns = l->win_failed_ns = 0;
}

void ft_limiter_init(ft_limiter *l, const ft_limiter_params *p, int64_t now_ns)
{
    ft_limiter_params pp = {0};
    if (p) pp = *p;
    ft_limiter_params_default(&pp);
    *l = (ft_limiter){.p = pp,
                      .max_concurrency = pp.initial_max > pp.min_max ? pp.initial_max : pp.min_max,
                      .min_latency_ns = -1,
                      .max_qps = -1,
                      .avg_latency_ns = pp.initial_latency_ns,
                      .rand = pp.seed ? pp.seed : (uint64_t)now_ns ^ (uint64_t)(uintptr_t)l};
    l->remeasure_at_ns = next_remeasure(l, now_ns);
}

/* Rounded up: the formula's headroom (alpha) is a fraction of a slot at small limits, where
 * truncating it would leave none (2 workers at full speed: 2.6 -> 2, a loss system that idles a
 * slot between a call's end and the next arrival; 3 keeps one call waiting for it). */
static void set_max(ft_limiter *l, double next)
{
    if (!(next >= l->p.min_max)) next = l->p.min_max; /* also NaN */
    if (next > 1e6) next = 1e6;
    l->max_concurrency = (int)ceil(next);
}

/* The window is complete: new figures. */
static void window_close(ft_limiter *l, int64_t now_ns)
{
    l->windows++;
    if (l->win_ok == 0) {
        /* every call failed: halve, and take the latency as twice worse (brpc) */
        set_max(l, l->max_concurrency / 2.0);
        l->avg_latency_ns *= 2;
        return;
    }
    /* failures weigh in on the latency (brpc's fail punishment, ratio 1) */
    int64_t avg = (l->win_ok_ns + l->win_failed_ns + l->win_ok - 1) / l->win_ok;
    if (avg < 1) avg = 1;
    l->avg_latency_ns = avg;
    int64_t span = now_ns - l->win_start_ns;
    double qps = span > 0 ? (double)l->win_ok * 1e9 / (double)span : l->max_qps;
    if (l->min_latency_ns <= 0)
        l->min_latency_ns = avg;
    else if (avg < l->min_latency_ns)
        l->min_latency_ns =
            (int64_t)((double)avg * l->p.ema + (double)l->min_latency_ns * (1 - l->p.ema));
    if (qps >= l->max_qps)
        l->max_qps = qps;
    else /* the best throughput is forgotten slowly (brpc: a tenth of the latency's factor) */
        l->max_qps = qps * l->p.ema / 10 + l->max_qps * (1 - l->p.ema / 10);
    double min_s = (double)l->min_latency_ns / 1e9;
    if (now_ns >= l->remeasure_at_ns) {
        /* check min_latency: lower the limit to 90% of what the throughput needs, let the
         * queue drain for two latencies, then learn min_latency again from scratch. brpc takes
         * the remembered max_qps here; this takes the last window's and forgets the best: after
         * the work got heavier the remembered best is stale, and a limit made of it keeps a
         * queue that the check would then learn as the no-load latency */
        l->forget_min_at_ns = now_ns + 2 * avg;
        l->max_qps = qps;
        set_max(l, ceil(qps * min_s * 0.9));
        return;
    }
    set_max(l, l->max_qps * ((2 + l->p.alpha) * min_s - (double)avg / 1e9));
}

int ft_limiter_on_response(ft_limiter *l, int ok, int64_t latency_ns, int64_t now_ns)
{
    if (latency_ns < 0) latency_ns = 0;
    if (l->forget_min_at_ns != 0) {
        if (now_ns < l->forget_min_at_ns) return 0; /* the queue still drains */
        l->forget_min_at_ns = 0;
        l->min_latency_ns = -1;
        l->remeasure_at_ns = next_remeasure(l, now_ns);
        window_reset(l, now_ns);
    }
    if (l->win_start_ns == 0) window_reset(l, now_ns);
    if (ok) {
        l->win_ok++;
        l->win_ok_ns += latency_ns;
    } else {
        l->win_failed++;
        l->win_failed_ns += latency_ns;
    }
    int n = l->win_ok + l->win_failed;
    int64_t age = now_ns - l->win_start_ns;
    if (n < l->p.min_samples) {
        if (age >= l->p.window_ns) window_reset(l, now_ns); /* too few: dropped */
        return 0;
    }
    if (age < l->p.window_ns && n < l->p.max_samples) return 0;
    window_close(l, now_ns);
    window_reset(l, now_ns);
    return 1;
}

int32_t ft_limiter_retry_after_ms(int64_t avg_latency_ns, int concurrency)
{
    if (concurrency < 1) concurrency = 1;
    int64_t ms = (avg_latency_ns / concurrency + FT_NS_PER_MS - 1) / FT_NS_PER_MS;
    if (ms < 1) ms = 1;
    if (ms > 1000) ms = 1000;
    return (int32_t)ms;
}
