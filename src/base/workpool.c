/* Worker pool (see workpool.h): one mutex-guarded FIFO; workers sleep on a condition variable. */
#include "base/workpool.h"

#include <stdlib.h>
#include <unistd.h>

#include "ftrpc/common.h"

static void *worker_main(void *arg)
{
    ft_workpool *pool = arg;
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (ft_list_empty(&pool->queue) && !pool->stopping)
            pthread_cond_wait(&pool->ready, &pool->lock);
        if (ft_list_empty(&pool->queue)) break; /* stopping and drained */
        ft_list *n = pool->queue.next;
        ft_list_remove(n);
        pthread_mutex_unlock(&pool->lock);
        ft_job *job = ft_container_of(n, ft_job, node);
        job->run(job);
        pthread_mutex_lock(&pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

int ft_workpool_start(ft_workpool *pool, int nthreads)
{
    if (nthreads <= 0) nthreads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (nthreads <= 0) nthreads = 1;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->ready, NULL);
    ft_list_init(&pool->queue);
    pool->stopping = 0;
    pool->threads = calloc((size_t)nthreads, sizeof(pthread_t));
    if (!pool->threads) return FTRPC_ENOMEM;
    pool->nthreads = 0;
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&pool->threads[i], NULL, worker_main, pool) != 0) {
            ft_workpool_stop(pool);
            return FTRPC_ESYS;
        }
        pool->nthreads++;
    }
    return 0;
}

int ft_workpool_submit(ft_workpool *pool, ft_job *job)
{
    pthread_mutex_lock(&pool->lock);
    if (pool->stopping) {
        pthread_mutex_unlock(&pool->lock);
        return FTRPC_ESTOPPED;
    }
    ft_list_push_back(&pool->queue, &job->node);
    pthread_cond_signal(&pool->ready);
    pthread_mutex_unlock(&pool->lock);
    return 0;
}

void ft_workpool_stop(ft_workpool *pool)
{
    pthread_mutex_lock(&pool->lock);
    pool->stopping = 1;
    pthread_cond_broadcast(&pool->ready);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 0; i < pool->nthreads; i++)
        pthread_join(pool->threads[i], NULL);
    free(pool->threads);
    pool->threads = NULL;
    pool->nthreads = 0;
    /* The lock and condition variable stay alive: a later submit must still be able to take the
     * lock to answer FTRPC_ESTOPPED, and a second stop must be harmless. On Linux they hold no
     * resources, so there is nothing to leak. */
}
