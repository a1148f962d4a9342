/* ft_workpool: jobs run, FIFO on one worker, stop drains what is queued, and submit after stop (or
 * racing it) fails with FTRPC_ESTOPPED for exactly the jobs that never run. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "base/clock.h"
#include "base/workpool.h"
#include "ftrpc/common.h"

typedef struct rec_job {
    ft_job job;
    int id;
    int *order;
    atomic_int *pos;
    atomic_int *ran;
} rec_job;

static void record(ft_job *j)
{
    rec_job *r = ft_container_of(j, rec_job, job);
    if (r->order) r->order[atomic_fetch_add(r->pos, 1)] = r->id;
    atomic_fetch_add(r->ran, 1);
}

static void one_worker_runs_jobs_in_fifo_order(void **state)
{
    (void)state;
    enum { N = 2000 };
    ft_workpool pool;
    assert_int_equal(ft_workpool_start(&pool, 1), 0);
    rec_job *jobs = calloc(N, sizeof *jobs);
    int *order = calloc(N, sizeof *order);
    atomic_int pos = 0, ran = 0;
    for (int i = 0; i < N; i++) {
        jobs[i] = (rec_job){.job.run = record, .id = i, .order = order, .pos = &pos, .ran = &ran};
        assert_int_equal(ft_workpool_submit(&pool, &jobs[i].job), 0);
    }
    ft_workpool_stop(&pool);
    assert_int_equal(atomic_load(&ran), N);
    for (int i = 0; i < N; i++)
        assert_int_equal(order[i], i);
    free(jobs);
    free(order);
}

static void many_workers_run_every_job_once(void **state)
{
    (void)state;
    static const int nthreads[] = {0, 2, 4};
    for (size_t k = 0; k < sizeof nthreads / sizeof nthreads[0]; k++) {
        enum { N = 10000 };
        ft_workpool pool;
        assert_int_equal(ft_workpool_start(&pool, nthreads[k]), 0);
        assert_true(pool.nthreads >= 1);
        rec_job *jobs = calloc(N, sizeof *jobs);
        atomic_int ran = 0;
        for (int i = 0; i < N; i++) {
            jobs[i] = (rec_job){.job.run = record, .id = i, .ran = &ran};
            assert_int_equal(ft_workpool_submit(&pool, &jobs[i].job), 0);
        }
        ft_workpool_stop(&pool);
        assert_int_equal(atomic_load(&ran), N);
        free(jobs);
    }
}

typedef struct gate_job {
    ft_job job;
    ft_workpool *pool;
    atomic_int started;
} gate_job;

/* Holds the only worker until stop has begun, so that everything after it is still queued. */
static void wait_for_stop(ft_job *j)
{
    gate_job *g = ft_container_of(j, gate_job, job);
    atomic_store(&g->started, 1);
    int64_t deadline = ft_now_ns() + 5000 * FT_NS_PER_MS;
    for (;;) {
        pthread_mutex_lock(&g->pool->lock);
        int stopping = g->pool->stopping;
        pthread_mutex_unlock(&g->pool->lock);
        if (stopping || ft_now_ns() > deadline) return;
        sched_yield();
    }
}

static void stop_runs_the_jobs_still_queued(void **state)
{
    (void)state;
    enum { N = 100 };
    ft_workpool pool;
    assert_int_equal(ft_workpool_start(&pool, 1), 0);
    gate_job gate = {.job.run = wait_for_stop, .pool = &pool};
    assert_int_equal(ft_workpool_submit(&pool, &gate.job), 0);
    rec_job jobs[N];
    atomic_int ran = 0;
    for (int i = 0; i < N; i++) {
        jobs[i] = (rec_job){.job.run = record, .id = i, .ran = &ran};
        assert_int_equal(ft_workpool_submit(&pool, &jobs[i].job), 0);
    }
    while (!atomic_load(&gate.started))
        sched_yield();
    assert_int_equal(atomic_load(&ran), 0);
    ft_workpool_stop(&pool);
    assert_int_equal(atomic_load(&ran), N);
}

static void submit_after_stop_fails_with_estopped(void **state)
{
    (void)state;
    ft_workpool pool;
    assert_int_equal(ft_workpool_start(&pool, 2), 0);
    ft_workpool_stop(&pool);
    atomic_int ran = 0;
    rec_job j = {.job.run = record, .ran = &ran};
    assert_int_equal(ft_workpool_submit(&pool, &j.job), FTRPC_ESTOPPED);
    assert_int_equal(ft_workpool_submit(&pool, &j.job), FTRPC_ESTOPPED);
    ft_workpool_stop(&pool); /* stopping twice does nothing */
    assert_int_equal(atomic_load(&ran), 0);
}

enum { SUBMITTERS = 3, PER_SUBMITTER = 20000 };

typedef struct submitter {
    ft_workpool *pool;
    rec_job *jobs;
    atomic_int *ran;
    int accepted;
} submitter;

static void *submit_until_stopped(void *arg)
{
    submitter *s = arg;
    for (int i = 0; i < PER_SUBMITTER; i++) {
        s->jobs[i] = (rec_job){.job.run = record, .id = i, .ran = s->ran};
        int rc = ft_workpool_submit(s->pool, &s->jobs[i].job);
        if (rc == FTRPC_ESTOPPED) break;
        assert_int_equal(rc, 0);
        s->accepted++;
    }
    return NULL;
}

static void jobs_accepted_while_stopping_all_run(void **state)
{
    (void)state;
    ft_workpool pool;
    assert_int_equal(ft_workpool_start(&pool, 2), 0);
    atomic_int ran = 0;
    submitter subs[SUBMITTERS];
    pthread_t threads[SUBMITTERS];
    for (int i = 0; i < SUBMITTERS; i++) {
        subs[i] = (submitter){&pool, calloc(PER_SUBMITTER, sizeof(rec_job)), &ran, 0};
        assert_int_equal(pthread_create(&threads[i], NULL, submit_until_stopped, &subs[i]), 0);
    }
    struct timespec ts = {0, 2 * 1000000};
    nanosleep(&ts, NULL);
    ft_workpool_stop(&pool);
    int accepted = 0;
    for (int i = 0; i < SUBMITTERS; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        accepted += subs[i].accepted;
    }
    assert_int_equal(atomic_load(&ran), accepted);
    for (int i = 0; i < SUBMITTERS; i++)
        free(subs[i].jobs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_worker_runs_jobs_in_fifo_order),
        cmocka_unit_test(many_workers_run_every_job_once),
        cmocka_unit_test(stop_runs_the_jobs_still_queued),
        cmocka_unit_test(submit_after_stop_fails_with_estopped),
        cmocka_unit_test(jobs_accepted_while_stopping_all_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
