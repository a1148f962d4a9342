/* One pthread key for all of ftrpc's per-thread caches: its destructor runs the thread's list. */
#include "base/thread_exit.h"

#include <pthread.h>

static pthread_key_t exit_key;
static int exit_key_ok;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;

static _Thread_local ft_thread_exit_fn exit_fns[FT_THREAD_EXIT_MAX];
static _Thread_local int exit_fns_len;
static _Thread_local int exiting;

static void run_exit_fns(void *arg)
{
    (void)arg;
    exiting = 1; /* a cache used by an exit function must not register again */
    while (exit_fns_len > 0)
        exit_fns[--exit_fns_len]();
}

static void exit_key_create(void)
{
    exit_key_ok = pthread_key_create(&exit_key, run_exit_fns) == 0;
}

int ft_thread_at_exit(ft_thread_exit_fn fn)
{
    if (exiting || exit_fns_len == FT_THREAD_EXIT_MAX) return -1;
    if (exit_fns_len == 0) {
        pthread_once(&exit_key_once, exit_key_create);
        /* the value only has to be non-NULL for the destructor to run */
        if (!exit_key_ok || pthread_setspecific(exit_key, &exiting) != 0) return -1;
    }
    exit_fns[exit_fns_len++] = fn;
    return 0;
}
