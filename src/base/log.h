/* Internal logging. FT_LOG(level, fmt, ...) formats only when the level is enabled.
 * FT_LOG_RATELIMITED keeps paths that a bad peer can trigger from flooding the sink: at most a
 * burst of lines per second per call site, with a count of what was dropped. */
#ifndef FT_BASE_LOG_H
#define FT_BASE_LOG_H

#include <stdatomic.h>
#include <stdint.h>
#include "ftrpc/log.h"

extern _Atomic int ft_log_level_current;

void ft_log_write(ftrpc_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

typedef struct ft_log_limiter {
    _Atomic int64_t window_start_ms;
    atomic_int emitted;
    atomic_int dropped;
} ft_log_limiter;

/* True when this call site may log now; lines beyond 10 per second are counted and dropped. */
int ft_log_limiter_allow(ft_log_limiter *limiter, int *dropped_out);

#define FT_LOG(level, ...)                                                                         \
    do {                                                                                           \
        if ((int)(level) >= atomic_load_explicit(&ft_log_level_current, memory_order_relaxed))     \
            ft_log_write((level), __VA_ARGS__);                                                    \
    } while (0)

#define FT_LOG_RATELIMITED(level, ...)                                                             \
    do {                                                                                           \
        static ft_log_limiter ft_lim_;                                                             \
        int ft_dropped_ = 0;                                                                       \
        if ((int)(level) >= atomic_load_explicit(&ft_log_level_current, memory_order_relaxed) &&   \
            ft_log_limiter_allow(&ft_lim_, &ft_dropped_)) {                                        \
            if (ft_dropped_ > 0) ft_log_write((level), "(%d similar lines dropped)", ft_dropped_); \
            ft_log_write((level), __VA_ARGS__);                                                    \
        }                                                                                          \
    } while (0)

#define FT_DEBUG(...) FT_LOG(FTRPC_LOG_DEBUG, __VA_ARGS__)
#define FT_INFO(...) FT_LOG(FTRPC_LOG_INFO, __VA_ARGS__)
#define FT_WARN(...) FT_LOG(FTRPC_LOG_WARN, __VA_ARGS__)
#define FT_ERROR(...) FT_LOG(FTRPC_LOG_ERROR, __VA_ARGS__)

#endif
