/* ft_workpool: a fixed pool of worker threads running queued jobs in FIFO order.
 * For server handlers that block or compute, so that they do not stall an IO thread. Jobs are
 * intrusive (ft_job embedded in the caller's struct): submitting never allocates. */
#ifndef FT_BASE_WORKPOOL_H
#define FT_BASE_WORKPOOL_H

#include <pthread.h>

#include "base/list.h"

typedef struct ft_job ft_job;
typedef void (*ft_job_fn)(ft_job *job);
struct ft_job {
    ft_list node;
    ft_job_fn run;
};

typedef struct ft_workpool {
    pthread_mutex_t lock; /* guards queue and stopping */
    pthread_cond_t ready;
    ft_list queue;
    int stopping;
    int nthreads;
    pthread_t *threads;
} ft_workpool;

/* Starts nthreads workers (0: one per core). 0 or a negative FTRPC_E* code. */
int ft_workpool_start(ft_workpool *pool, int nthreads);
/* Any thread. FTRPC_ESTOPPED once stopping. */
int ft_workpool_submit(ft_workpool *pool, ft_job *job);
/* Runs what is queued, then joins the workers. Not from a worker. Later submits fail with
 * FTRPC_ESTOPPED; stopping twice does nothing. */
void ft_workpool_stop(ft_workpool *pool);

#endif
