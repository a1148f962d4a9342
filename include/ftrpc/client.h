/* ftrpc_client: calls methods of a service reached through a naming URL.
 *
 * A client is long-lived and thread-safe: any thread may call through it concurrently. Each call is
 * pinned to one IO thread (its "home loop") for its whole life; the client keeps at most one
 * connection per endpoint per IO thread, opened lazily and shared by all calls on that loop
 * (multiplexed by correlation id).
 *
 * Naming URLs: "list://host:port,host:port" (or a bare "host:port"). Other schemes come with the
 * discovery layer.
 */
#ifndef FTRPC_CLIENT_H
#define FTRPC_CLIENT_H

#include "ftrpc/buf.h"
#include "ftrpc/common.h"
#include "ftrpc/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ftrpc_client ftrpc_client;

typedef struct ftrpc_client_options {
    ftrpc_runtime *runtime;     /* default NULL: the shared default runtime */
    int timeout_ms;             /* default 1000: the whole call's deadline (brpc: 500 ms) */
    int connect_timeout_ms;     /* default 200, as brpc */
    uint32_t max_body_size;     /* default 64 MiB: larger responses close the connection */
    size_t max_unwritten_bytes; /* default 64 MiB per connection: past it calls fail EOVERCROWDED */
} ftrpc_client_options;

typedef struct ftrpc_call_options {
    int timeout_ms; /* default 0: the client's timeout_ms */
    int64_t log_id; /* default 0: not sent */
} ftrpc_call_options;

typedef enum {
    FTRPC_RESULT_OK = 0,
    FTRPC_RESULT_RPC_ERROR = 1,      /* transport, timeout, no endpoint, overload, protocol... */
    FTRPC_RESULT_BUSINESS_ERROR = 2, /* the handler failed the call with its own code */
} ftrpc_result_kind;

/* The outcome of one call. Filled by the library; release with ftrpc_result_fini(). */
typedef struct ftrpc_result {
    ftrpc_result_kind kind;
    int code;               /* 0; a negative FTRPC_E* (RPC error); or the handler's code (business) */
    char error_text[256];   /* "" on success */
    ftrpc_buf *response;    /* the response payload on success (never NULL then); owned by the
                             * result: steal it by setting the field to NULL */
    ftrpc_buf *attachment;  /* idem, possibly empty */
    int attempts;           /* requests sent for this call (1 without retries) */
    char endpoint[64];      /* "ip:port" of the endpoint that answered, "" if none did */
    int64_t latency_us;     /* from the call's start to its completion */
} ftrpc_result;

/* Frees what the result owns (response, attachment). The struct itself is the caller's. */
FTRPC_API void ftrpc_result_fini(ftrpc_result *result);

/* Makes a client for naming_url. opts may be NULL. On success *out is the caller's. */
FTRPC_API int ftrpc_client_new(const char *naming_url, const ftrpc_client_options *opts,
                               ftrpc_client **out);
/* Frees the client. Calls still in flight complete with FTRPC_ESTOPPED before it returns; their
 * callbacks run on IO threads meanwhile. Never call it from an IO thread or from a callback. */
FTRPC_API void ftrpc_client_free(ftrpc_client *client);

/* Synchronous call: blocks until the call completes and fills *result (always, also on error).
 * Returns 0 on success, the negative FTRPC_E* code on an RPC error, and FTRPC_EBUSINESS on a
 * business error (result->code then holds the handler's code). request and attachment may be
 * NULL; their bytes are shared, not copied. Refused with FTRPC_EIOTHREAD on an IO thread (it would
 * deadlock); *result is filled then too. */
FTRPC_API int ftrpc_call(ftrpc_client *client, const char *service, const char *method,
                         const ftrpc_buf *request, const ftrpc_buf *attachment,
                         const ftrpc_call_options *opts, ftrpc_result *result);

/* Completion of an async call. Runs exactly once, on an IO thread; it must not block. `result` is
 * valid only during the callback (steal its buffers by setting the pointers to NULL). */
typedef void (*ftrpc_call_cb)(ftrpc_result *result, void *arg);

/* Asynchronous call: returns 0 and cb runs exactly once later (success, error, timeout alike), or
 * returns an error at once and cb never runs. request/attachment are shared before it returns:
 * the caller may free its buffers right after. Any thread, including IO threads and callbacks. */
FTRPC_API int ftrpc_call_async(ftrpc_client *client, const char *service, const char *method,
                               const ftrpc_buf *request, const ftrpc_buf *attachment,
                               const ftrpc_call_options *opts, ftrpc_call_cb cb, void *arg);

#ifdef __cplusplus
}
#endif
#endif
