/* ftrpc logging: one internal logger with levels and a user-settable sink.
 * The default sink writes "LEVEL [ftrpc] message" lines to stderr for WARN and above. */
#ifndef FTRPC_LOG_H
#define FTRPC_LOG_H

#include "ftrpc/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    FTRPC_LOG_DEBUG = 0,
    FTRPC_LOG_INFO = 1,
    FTRPC_LOG_WARN = 2,
    FTRPC_LOG_ERROR = 3,
    FTRPC_LOG_OFF = 4,
} ftrpc_log_level;

/* A log sink. `msg` is valid only during the call. It may run on any thread, concurrently with
 * itself, and must not call back into ftrpc. */
typedef void (*ftrpc_log_cb)(ftrpc_log_level level, const char *msg, void *arg);

/* Sets the sink (NULL restores stderr) and the lowest level passed to it (default WARN; the
 * environment variable FTRPC_LOG_LEVEL=debug|info|warn|error|off sets the default). Any thread. */
FTRPC_API void ftrpc_log_set_sink(ftrpc_log_cb cb, void *arg);
FTRPC_API void ftrpc_log_set_level(ftrpc_log_level level);

#ifdef __cplusplus
}
#endif
#endif
