/* ftrpc_runtime: the IO threads that clients and servers share.
 *
 * A runtime owns N IO threads, each running one libuv loop. Every connection, call and timer lives
 * on one loop for its whole life. Clients and servers created with runtime = NULL share a
 * process-wide default runtime, started on first use with one IO thread per core (or
 * FTRPC_IO_THREADS from the environment) and stopped at exit.
 */
#ifndef FTRPC_RUNTIME_H
#define FTRPC_RUNTIME_H

#include "ftrpc/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ftrpc_runtime ftrpc_runtime;

typedef struct ftrpc_runtime_options {
    int io_threads; /* default 0: one per core (sysconf(_SC_NPROCESSORS_ONLN)), as brpc */
} ftrpc_runtime_options;

/* Starts a runtime. opts may be NULL (all defaults). On success *out is the caller's, to be freed
 * with ftrpc_runtime_free() after every client and server using it has been freed. The first
 * runtime of a process sets SIGPIPE to SIG_IGN if it is still at SIG_DFL (as brpc and gRPC do: a
 * peer's reset must not kill the process); a program's own SIGPIPE handler is left alone. */
FTRPC_API int ftrpc_runtime_new_sized(const ftrpc_runtime_options *opts, size_t opts_size,
                                      ftrpc_runtime **out);
static inline int ftrpc_runtime_new(const ftrpc_runtime_options *opts, ftrpc_runtime **out)
{
    return ftrpc_runtime_new_sized(opts, sizeof(ftrpc_runtime_options), out);
}
/* Stops the IO threads and frees the runtime. NULL does nothing. Never call it from an IO thread.
 */
FTRPC_API void ftrpc_runtime_free(ftrpc_runtime *rt);
/* The shared default runtime (started on first call). Never NULL unless out of memory. */
FTRPC_API ftrpc_runtime *ftrpc_runtime_default(void);
/* Number of IO threads. */
FTRPC_API int ftrpc_runtime_io_threads(const ftrpc_runtime *rt);
/* 1 when the calling thread is one of any runtime's IO threads. */
FTRPC_API int ftrpc_in_io_thread(void);

#ifdef __cplusplus
}
#endif
#endif
