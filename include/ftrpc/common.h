/* ftrpc common definitions: the export macro and the error codes.
 *
 * Every fallible public function returns 0 or a negative FTRPC_E* code; ftrpc_strerror() names it.
 * Codes whose meaning matches brpc's (docs/protocol.md, Error codes) carry brpc's number, negated:
 * FTRPC_ELIMIT is -2004 because brpc's ELIMIT is 2004, and that positive number is what travels in
 * RpcResponseMeta.error_code. Codes of ftrpc's own sit between -1 and -99.
 */
#ifndef FTRPC_COMMON_H
#define FTRPC_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Versions ----
 * FTRPC_VERSION_* is the version of these headers; ftrpc_version() that of the library a program
 * runs with (FTRPC_VERSION_HEX layout: 0x00MMmmpp). Within a major version the ABI only grows:
 *  - option structs a caller fills (ftrpc_client_options, ftrpc_call_options, ...) and structs the
 *    library fills for the caller (ftrpc_result from ftrpc_call, the stats structs) gain fields at
 *    their end only, and travel with their size: each such function has a `_sized` form that takes
 *    sizeof the struct as the caller's header declared it, and a static inline wrapper of the usual
 *    name that passes it. A binary built against an older header passes a smaller struct: the
 *    library reads (or writes) that prefix only and takes the defaults for the fields it lacks;
 *  - structs nested in options (TLS, health, backoff, fallback) keep reserved space at their end,
 *    which must be zero, so that they can grow without moving the fields after them;
 *  - ftrpc_backup_policy, which users embed and the library reads, keeps reserved hook slots;
 *  - in every option struct zero means "the default", and -1 means "off" (or "never") where a
 *    field can be turned off; the field's comment says which.
 * tests/unit/test_abi.c holds the library to it. */
#define FTRPC_VERSION_MAJOR 0
#define FTRPC_VERSION_MINOR 3
#define FTRPC_VERSION_PATCH 0
#define FTRPC_VERSION_HEX                                                                          \
    ((FTRPC_VERSION_MAJOR << 16) | (FTRPC_VERSION_MINOR << 8) | FTRPC_VERSION_PATCH)

#if defined(FTRPC_BUILDING)
#define FTRPC_API __attribute__((visibility("default")))
#else
#define FTRPC_API
#endif

enum {
    FTRPC_OK = 0,
    /* ftrpc's own codes */
    FTRPC_EINVAL = -1,       /* an argument or option is invalid */
    FTRPC_ENOMEM = -2,       /* out of memory */
    FTRPC_EIOTHREAD = -3,    /* a blocking call was made on an IO thread (it would deadlock) */
    FTRPC_ESTOPPED = -4,     /* the runtime, server or client is stopping or stopped */
    FTRPC_EADDR = -5,        /* an address or naming URL could not be parsed or resolved */
    FTRPC_ECONNREFUSED = -6, /* the peer refused the connection (nothing listens there) */
    FTRPC_ENOENDPOINT = -7,  /* no endpoint to send the call to */
    FTRPC_ECANCELED = -8,    /* the operation was cancelled */
    FTRPC_ESYS = -9,         /* a system call failed (see the log for errno) */
    FTRPC_ECONNECT = -10,    /* connecting failed for another reason (unreachable, reset, ...) */
    FTRPC_EEXIST = -11,      /* the thing is registered already */
    FTRPC_ETLS = -12,        /* TLS handshake or verification failed */
    FTRPC_EBUSINESS = -13,   /* the call failed with a business error (see the result's code) */
    FTRPC_EADDRINUSE = -14,  /* the address to listen on is taken (another process listens) */
    FTRPC_EBREAKER = -15,    /* circuit breaker open: every endpoint of the service was suspended
                              * by its breaker, so the call was rejected without being sent
                              * (client side only, never on the wire; docs/endpoint-health.md) */
    FTRPC_ETHROTTLED = -16,  /* adaptive throttling: the service refused most recent calls for
                              * overload, so the client rejected this one without sending it
                              * (client side only, never on the wire; docs/overload-client.md) */
    /* brpc's codes, negated (docs/protocol.md, Error codes) */
    FTRPC_ENOSERVICE = -1001,     /* unknown service */
    FTRPC_ENOMETHOD = -1002,      /* unknown method */
    FTRPC_EREQUEST = -1003,       /* the request could not be parsed, or bad sizes */
    FTRPC_ERPCAUTH = -1004,       /* authentication failed */
    FTRPC_EBACKUPREQUEST = -1007, /* the backup timer fired (internal to a call) */
    FTRPC_ERPCTIMEDOUT = -1008,   /* the call's deadline passed */
    FTRPC_EFAILEDSOCKET = -1009,  /* the connection broke */
    FTRPC_EOVERCROWDED = -1011,   /* too much unwritten data queued on a connection */
    FTRPC_EEOF = -1014,           /* the peer closed the connection */
    FTRPC_EINTERNAL = -2001,      /* the handler failed without a code */
    FTRPC_ERESPONSE = -2002,      /* the response could not be parsed */
    FTRPC_ELOGOFF = -2003,        /* the server is stopping */
    FTRPC_ELIMIT = -2004,         /* the server's concurrency limit was reached */
};

/* Business error codes set by handlers travel in the same wire field as brpc's framework codes.
 * ftrpc keeps them apart by range: a wire code in [1, FTRPC_BUSINESS_CODE_MIN) is an RPC error
 * (system errno values as brpc sends them, and brpc's 1xxx/2xxx codes); a code at or above
 * FTRPC_BUSINESS_CODE_MIN, or a negative one, is a business error. */
#define FTRPC_BUSINESS_CODE_MIN 3000

/* The library's version, FTRPC_VERSION_HEX as it was built (compare with the header's to detect
 * a mismatch). Any thread. */
FTRPC_API unsigned ftrpc_version(void);
/* The same as "MAJOR.MINOR.PATCH", static. Any thread. */
FTRPC_API const char *ftrpc_version_string(void);

/* 64 MiB, as brpc's max_body_size: the default of ftrpc_server_options.max_body_size (larger
 * frames close the connection) and of ftrpc_client_options.max_body_size. */
#define FTRPC_DEFAULT_MAX_BODY_SIZE (64u * 1024 * 1024)

/* A static, never-NULL description of an FTRPC_E* code (or "unknown error"). Any thread. */
FTRPC_API const char *ftrpc_strerror(int code);
/* The symbolic name of an FTRPC_E* code, e.g. "FTRPC_ELIMIT" (or "FTRPC_EUNKNOWN"). Any thread. */
FTRPC_API const char *ftrpc_err_name(int code);

#ifdef __cplusplus
}
#endif
#endif
