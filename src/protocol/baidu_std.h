/* baidu_std: brpc's native binary protocol (docs/protocol.md).
 *
 * Frame: "PRPC" | u32 body_size | u32 meta_size | RpcMeta | payload | attachment (big-endian).
 * This module cuts frames out of a connection's read buffer and packs frames into write buffers.
 * It knows nothing about connections, calls or servers: the caller decides what a parse error
 * does (the server closes the connection and logs the reason this module gives).
 *
 * Payload and attachment are sliced out of the read buffer without copying.
 */
#ifndef FT_PROTOCOL_BAIDU_STD_H
#define FT_PROTOCOL_BAIDU_STD_H

#include <stdint.h>

#include "base/iobuf.h"
#include "ftrpc/common.h"

#define FT_BAIDU_STD_HEADER_SIZE 12

/* ftrpc's cancel extension (docs/protocol.md, Cancellation): a request to this builtin method whose
 * payload is the 8-byte big-endian correlation id to cancel, sent on the same connection. */
#define FT_CONTROL_SERVICE "ftrpc.Control"
#define FT_CONTROL_CANCEL "Cancel"
/* answers the server's services, methods and message types (the /protobufs page; a request payload
 * "json" asks for its JSON form): what `ftrpc list` prints */
#define FT_CONTROL_LIST "ListServices"
/* ftrpc's health check (docs/protocol.md, Health check): a request to this builtin method, any
 * payload, is answered at once with a plain success on the server's IO thread. A client sends it
 * on a connection where requests wait and nothing arrives, to tell a dead connection from a slow
 * handler. */
#define FT_CONTROL_PING "Ping"
#define FT_BAIDU_STD_DEFAULT_MAX_BODY FTRPC_DEFAULT_MAX_BODY_SIZE

/* compress_type values */
enum { FT_COMPRESS_NONE = 0, FT_COMPRESS_SNAPPY = 1, FT_COMPRESS_GZIP = 2, FT_COMPRESS_ZLIB = 3 };

typedef enum {
    FT_PARSE_OK = 0,        /* one frame cut from the buffer into *out */
    FT_PARSE_NEED_MORE = 1, /* no complete frame yet; nothing consumed */
    FT_PARSE_CLOSE = 2,     /* the stream cannot be trusted: close the connection (reason set) */
    FT_PARSE_BAD_FRAME = 3, /* the frame was consumed but is invalid; the stream is still in sync:
                             * a server answers FTRPC_EREQUEST for its correlation_id (set in *out
                             * when it could be read) and keeps the connection (reason set) */
} ft_parse_status;

/* One decoded frame. Strings point into memory the frame owns until ft_rpc_frame_fini. */
typedef struct ft_rpc_frame {
    int is_request;         /* meta carried `request` (1) or not (0: a response) */
    int64_t correlation_id; /* -1 when the meta did not carry one */
    /* request fields (is_request) */
    const char *service; /* full name, e.g. "example.EchoService" */
    const char *method;
    int32_t timeout_ms; /* 0 when absent */
    int64_t log_id;
    int tied; /* ftrpc_tied (1001): the client wants a "started" notice (docs/protocol.md) */
    const uint8_t *auth_data; /* authentication_data, NULL when absent */
    size_t auth_len;
    int32_t attempt; /* ftrpc_attempt: 0 when absent (a first attempt) */
    /* response fields (!is_request) */
    int32_t error_code;     /* 0 on success */
    const char *error_text; /* "" when absent */
    /* ftrpc_retry_after_ms (docs/protocol.md, Pushback): 0 when absent; > 0: do not send to this
     * server again before N ms; -1: do not retry this call */
    int32_t retry_after_ms;
    int started; /* ftrpc_started (1001): a tied copy's "started" notice, not its answer */
    /* both */
    int32_t compress_type;
    ft_iobuf payload;    /* decompressed when compress_type was gzip or zlib */
    ft_iobuf attachment; /* never compressed */
    void *meta_owner;    /* internal: the unpacked meta */
} ft_rpc_frame;

void ft_rpc_frame_init(ft_rpc_frame *f);

/* 1 (default): the common meta fields are decoded and encoded by hand (protobuf-c for the rest);
 * 0: protobuf-c for every meta. For tests and the fuzz target, which check that both agree. */
extern int ft_baidu_std_fast_meta;
void ft_rpc_frame_fini(ft_rpc_frame *f);

/* Tries to cut one frame from the front of `in`. *out is initialized first, whatever the result
 * (the caller need not ft_rpc_frame_init it). On FT_PARSE_OK and FT_PARSE_BAD_FRAME the frame's
 * bytes have been consumed from `in` and *out must be fini'ed by the caller; on FT_PARSE_CLOSE and
 * FT_PARSE_BAD_FRAME *reason points to a static description. max_body bounds body_size. */
ft_parse_status ft_baidu_std_parse(ft_iobuf *in, uint32_t max_body, ft_rpc_frame *out,
                                   const char **reason);

/* The size of the frame at the front of `in` (header included) once its 12-byte header is there
 * and valid (body_size <= max_body, 0 = the default); 0 when it is not yet known or the header is
 * bad (the next ft_baidu_std_parse says why). A reader uses it to read the rest of a large frame
 * into one block of that size (ft_conn.read_want) instead of many small ones. */
size_t ft_baidu_std_frame_size(const ft_iobuf *in, uint32_t max_body);

/* Inflates src (gzip framing when gzip, else zlib) into dst, at most `limit` bytes: 0, or -1 with
 * *reason a static description (dst then empty). Shared with gRPC's grpc-encoding gzip. */
int ft_inflate_iobuf(const ft_iobuf *src, int gzip, size_t limit, ft_iobuf *dst,
                     const char **reason);

/* How the first bytes of a connection look: 1 = baidu_std ("PRPC"), 0 = not baidu_std,
 * -1 = too few bytes to tell. */
int ft_baidu_std_sniff(const ft_iobuf *in);

typedef struct ft_request_header {
    const char *service;
    const char *method;
    int64_t correlation_id;
    int32_t timeout_ms;       /* always sent (the caller's remaining deadline); <= 0 is sent as 1 */
    int64_t log_id;           /* 0: not sent */
    const uint8_t *auth_data; /* NULL: not sent */
    size_t auth_len;
    int32_t attempt; /* ftrpc_attempt; 0: not sent (a first attempt) */
    int tied; /* 1: ftrpc_tied is sent (through protobuf-c: the fast encoder leaves it out) */
    /* strlen(service), strlen(method) when the caller knows them (a client's call keeps them), so
     * the encoder need not count again; 0: counted here (names are never empty) */
    size_t service_len, method_len;
} ft_request_header;

/* Appends one request frame to `out`: meta, then payload and attachment shared (not copied).
 * payload/attachment may be NULL (empty). 0 or a negative FTRPC_E* code. */
int ft_baidu_std_pack_request(ft_iobuf *out, const ft_request_header *h, const ft_iobuf *payload,
                              const ft_iobuf *attachment);

/* Appends one response frame. error_code 0 (success) is still sent, as brpc does; error_text may
 * be NULL. */
int ft_baidu_std_pack_response(ft_iobuf *out, int64_t correlation_id, int32_t error_code,
                               const char *error_text, const ft_iobuf *payload,
                               const ft_iobuf *attachment);

/* Appends an error response with no body that carries the server's pushback hint
 * (ftrpc_retry_after_ms; 0: none, the frame ft_baidu_std_pack_response makes). */
int ft_baidu_std_pack_pushback(ft_iobuf *out, int64_t correlation_id, int32_t error_code,
                               const char *error_text, int32_t retry_after_ms);
/* Appends a tied copy's "started" notice (docs/protocol.md, Tied requests): a response meta with
 * the call's correlation id, ftrpc_started set and no error code, and no body. Only for a request
 * that carried ftrpc_tied: any other client would take it for an empty success. */
int ft_baidu_std_pack_started(ft_iobuf *out, int64_t correlation_id);

/* The common small frame (short names, bodies of at most 256 bytes together) written whole into a
 * caller's buffer of FT_BAIDU_STD_SMALL_FRAME bytes, so that it can be copied straight into a
 * connection's output with no frame buffer in between. Return the frame's size, the bytes exactly
 * those pack_request / pack_response append; or 0 when the frame does not fit (or the arguments
 * are not valid, or the fast encoder is off): use the pack functions then. */
#define FT_BAIDU_STD_SMALL_FRAME 512
size_t ft_baidu_std_encode_request(uint8_t *buf, const ft_request_header *h,
                                   const ft_iobuf *payload, const ft_iobuf *attachment);
size_t ft_baidu_std_encode_response(uint8_t *buf, int64_t correlation_id, int32_t error_code,
                                    const char *error_text, const ft_iobuf *payload,
                                    const ft_iobuf *attachment);
/* ft_baidu_std_encode_response of a success whose payload is len bytes of the caller's memory (a
 * typed reply packed on the stack) and no attachment: copied into the frame, no buffer between. */
size_t ft_baidu_std_encode_reply_bytes(uint8_t *buf, int64_t correlation_id, const void *payload,
                                       size_t len);

#endif
