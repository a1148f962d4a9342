/* The logger: a level, a sink, and a per-call-site rate limiter. The sink pointer and its argument
 * are swapped under a lock so that a sink never sees another sink's argument. */
#include "base/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/clock.h"

static int level_from_env(void)
{
    const char *e = getenv("FTRPC_LOG_LEVEL");
    if (!e) return FTRPC_LOG_WARN;
    static const char *names[] = {"debug", "info", "warn", "error", "off"};
    for (int i = 0; i < 5; i++)
        if (strcasecmp(e, names[i]) == 0) return i;
    return FTRPC_LOG_WARN;
}

_Atomic int ft_log_level_current = FTRPC_LOG_WARN;
static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;
static ftrpc_log_cb sink_cb;
static void *sink_arg;

static void read_env(void)
{
    atomic_store(&ft_log_level_current, level_from_env());
}

__attribute__((constructor)) static void log_init(void)
{
    pthread_once(&env_once, read_env);
}

void ftrpc_log_set_sink(ftrpc_log_cb cb, void *arg)
{
    pthread_mutex_lock(&sink_lock);
    sink_cb = cb;
    sink_arg = arg;
    pthread_mutex_unlock(&sink_lock);
}

void ftrpc_log_set_level(ftrpc_log_level level)
{
    atomic_store(&ft_log_level_current, (int)level);
}

void ft_log_write(ftrpc_log_level level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&sink_lock);
    if (sink_cb) {
        sink_cb(level, msg, sink_arg);
    } else {
        static const char *tags[] = {"DEBUG", "INFO", "WARN", "ERROR", "OFF"};
        fprintf(stderr, "%s [ftrpc] %s\n", tags[level > FTRPC_LOG_OFF ? FTRPC_LOG_OFF : level],
                msg);
    }
    pthread_mutex_unlock(&sink_lock);
}

int ft_log_limiter_allow(ft_log_limiter *limiter, int *dropped_out)
{
    enum { BURST_PER_SECOND = 10 };
    int64_t now = ft_clock_real_ms();
    int64_t start = atomic_load(&limiter->window_start_ms);
    if (now - start >= 1000 &&
        atomic_compare_exchange_strong(&limiter->window_start_ms, &start, now)) {
        *dropped_out = atomic_exchange(&limiter->dropped, 0);
        atomic_store(&limiter->emitted, 0);
    }
    if (atomic_fetch_add(&limiter->emitted, 1) < BURST_PER_SECOND) return 1;
    atomic_fetch_add(&limiter->dropped, 1);
    return 0;
}
