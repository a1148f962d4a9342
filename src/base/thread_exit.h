/* Work to do when a thread exits, for per-thread caches (iobuf blocks, meta arenas, a blocking
 * caller's eventfd): IO and worker threads end when their runtime or pool stops, and user threads
 * that make blocking calls end whenever they like; a cache that is not freed with its thread leaks.
 */
#ifndef FT_BASE_THREAD_EXIT_H
#define FT_BASE_THREAD_EXIT_H

typedef void (*ft_thread_exit_fn)(void);

/* Has fn run (once) when the calling thread exits, after the functions registered after it.
 * Register once per thread and cache, keeping a thread-local "registered" flag. Returns 0, or -1
 * when it cannot: the thread is already exiting (its exit functions are running), too many
 * functions (FT_THREAD_EXIT_MAX), or no thread-specific key; do not cache then. */
int ft_thread_at_exit(ft_thread_exit_fn fn);

enum { FT_THREAD_EXIT_MAX = 8 };

/* For a per-thread cache whose thread-local `state` starts at 0: 1 when the calling thread may
 * cache, registering `drain` for its exit on first use; 0 when it may not (see above). `drain`
 * sets the state to 2, so that nothing is cached after it. */
static inline int ft_thread_cache_usable(int *state, ft_thread_exit_fn drain)
{
    if (*state == 0) *state = ft_thread_at_exit(drain) == 0 ? 1 : 2;
    return *state == 1;
}

#endif
