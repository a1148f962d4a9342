/* bench_metrics: the cost of recording a metric on the hot path, from 1 and 2 threads, beside a
 * baseline measured in the same run: a relaxed atomic_fetch_add on one shared variable (what a
 * naive counter does). Prints ns per operation per thread and the ratio to the baseline with the
 * same thread count. Usage: bench_metrics [million ops per thread, default 3]. A few seconds. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "metrics/counter.h"
#include "metrics/histogram.h"
#include "metrics/latency_recorder.h"
#include "metrics/rpcz.h"

typedef void (*op_fn)(uint64_t i);

static _Alignas(64) _Atomic uint64_t shared_word;
static ft_counter counter;
static ft_counter owned_counter;
static ft_histogram hist;
static ft_latency_recorder *rec;
static const ft_clock *mono;
static volatile int64_t sink;

static int64_t latency_of(uint64_t i)
{
    /* spread over 0..100 ms of buckets, in the recorder's nanoseconds */
    return (int64_t)((i * 2654435761u) % 100000) * FT_NS_PER_US;
}

static void op_baseline(uint64_t i)
{
    (void)i;
    atomic_fetch_add_explicit(&shared_word, 1, memory_order_relaxed);
}

static void op_counter(uint64_t i)
{
    (void)i;
    ft_counter_add(&counter, 1);
}

static void op_counter_owned(uint64_t i)
{
    (void)i;
    ft_counter_add(&owned_counter, 1);
}

static void op_clock(uint64_t i)
{
    (void)i;
    sink = ft_clock_now_ns(mono);
}

static void op_histogram(uint64_t i)
{
    ft_histogram_record(&hist, latency_of(i));
}

static void op_recorder(uint64_t i)
{
    ft_latency_recorder_record(rec, latency_of(i));
}

/* rpcz while off: all a call pays (metrics/rpcz.h) */
static void op_rpcz_off(uint64_t i)
{
    sink += ft_rpcz_on() + (int64_t)i;
}

/* rpcz on: one call of two attempts recorded as call.c records it (slot claimed, filled with the
 * names copied, released) */
static ft_rpcz_ring *rpcz_ring;
static void op_rpcz_record(uint64_t i)
{
    ft_rpcz_span *sp = ft_rpcz_begin(rpcz_ring);
    if (!sp) return;
    sp->start_ns = (int64_t)i;
    sp->latency_us = (int64_t)(i & 1023);
    ft_rpcz_set_method(sp, "example.EchoService", 19, "Echo", 4);
    sp->kind = sp->code = 0;
    sp->attempts = sp->nattempts = 2;
    sp->backups = 1;
    for (int k = 0; k < 2; k++) {
        static const char name[64] = "127.0.0.1:8000";
        memcpy(sp->attempt[k].endpoint, name, sizeof name);
        sp->attempt[k].sent_us = k * 50000;
        sp->attempt[k].done_us = 60000;
        sp->attempt[k].code = 0;
        sp->attempt[k].backup = sp->attempt[k].winner = (uint8_t)k;
        sp->attempt[k].cancelled = (uint8_t)!k;
    }
    ft_rpcz_commit(sp);
}

static int64_t fixed_now;
static void op_recorder_at(uint64_t i)
{
    /* the caller already holds the time (it just computed the latency from it); refreshed every
     * 1024 records so that rotations still happen */
    if ((i & 1023) == 0) fixed_now = ft_now_ns();
    ft_latency_recorder_record_at(rec, latency_of(i), fixed_now);
}

typedef struct run {
    op_fn op;
    int own_stripe; /* the thread owns a stripe, as an IO thread does (counter.h) */
    uint64_t n;
    pthread_barrier_t *start;
    int64_t cpu_ns; /* this thread's CPU time for its loop */
} run;

static int64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *worker(void *arg)
{
    run *r = arg;
    if (r->own_stripe && !ft_metrics_own_stripe()) {
        fprintf(stderr, "bench_metrics: no stripe to own\n");
        exit(1);
    }
    pthread_barrier_wait(r->start);
    int64_t t0 = thread_cpu_ns();
    for (uint64_t i = 0; i < r->n; i++)
        r->op(i);
    r->cpu_ns = thread_cpu_ns() - t0;
    return NULL;
}

/* ns per op: each thread's CPU time over its op count, averaged over threads. CPU time rather than
 * wall time because the machine is shared: a descheduled thread costs wall time but no CPU time,
 * while cache-line contention between the threads does show up as CPU time. */
static double measure(op_fn op, int own_stripe, int threads, uint64_t n)
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    pthread_t t[8];
    run r[8];
    for (int i = 0; i < threads; i++) {
        r[i] = (run){op, own_stripe, n, &start, 0};
        pthread_create(&t[i], NULL, worker, &r[i]);
    }
    double total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        total += (double)r[i].cpu_ns / (double)n;
    }
    pthread_barrier_destroy(&start);
    return total / threads;
}

int main(int argc, char **argv)
{
    uint64_t n = (argc > 1 ? strtoull(argv[1], NULL, 10) : 3) * 1000000ull;
    if (n == 0) n = 1000000;
    mono = ft_clock_monotonic();
    ft_counter_init(&counter);
    ft_counter_init(&owned_counter);
    ft_histogram_init(&hist);
    if (ft_latency_recorder_new(NULL, &rec) != 0) return 1;
    ftrpc_rpcz_enable(0);
    if (ft_rpcz_ring_new(FT_RPCZ_CLIENT, "bench", &rpcz_ring) != 0) return 1;

    static const struct {
        const char *name;
        op_fn op;
        int own_stripe;
    } cases[] = {
        {"baseline: atomic_fetch_add, one shared word", op_baseline, 0},
        {"ft_counter_add (8 striped cells)", op_counter, 0},
        {"ft_counter_add, thread owns its stripe", op_counter_owned, 1},
        {"clock read (ft_clock_monotonic)", op_clock, 0},
        {"ft_histogram_record", op_histogram, 0},
        {"ft_histogram_record, thread owns its stripe", op_histogram, 1},
        {"ft_latency_recorder_record (reads clock)", op_recorder, 0},
        {"ft_latency_recorder_record_at", op_recorder_at, 0},
        {"rpcz off: the switch's relaxed load", op_rpcz_off, 0},
        {"rpcz on: a call of 2 attempts recorded", op_rpcz_record, 0},
    };
    const size_t ncases = sizeof cases / sizeof cases[0];
    printf("%-46s %12s %8s %12s %8s\n", "operation", "1 thr ns/op", "ratio", "2 thr ns/op",
           "ratio");
    double base[3] = {0};
    for (size_t c = 0; c < ncases; c++) {
        double ns[3];
        for (int threads = 1; threads <= 2; threads++) {
            ns[threads] = measure(cases[c].op, cases[c].own_stripe, threads, n);
            if (c == 0) base[threads] = ns[threads];
        }
        printf("%-46s %12.2f %8.2f %12.2f %8.2f\n", cases[c].name, ns[1], ns[1] / base[1], ns[2],
               ns[2] / base[2]);
    }
    /* sanity: nothing was lost */
    uint64_t want = 3 * n;
    if (ft_counter_get(&counter) != want || ft_counter_get(&owned_counter) != want ||
        ft_histogram_count(&hist) != 2 * want || ft_latency_recorder_count(rec) != 2 * want) {
        fprintf(stderr, "bench_metrics: lost records\n");
        return 1;
    }
    ft_latency_stats s;
    ft_latency_recorder_stats(rec, 0, &s);
    printf("recorder window: count %llu, p50 %lld ns, p99 %lld ns, max %lld ns\n",
           (unsigned long long)s.count, (long long)s.p50_ns, (long long)s.p99_ns,
           (long long)s.max_ns);
    printf("rpcz records dropped (slot held by the other thread): %llu\n",
           (unsigned long long)ft_rpcz_ring_dropped(rpcz_ring));
    ft_rpcz_ring_free(rpcz_ring);
    ft_latency_recorder_free(rec);
    return 0;
}
