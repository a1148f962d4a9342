/* gRPC's wire pieces above HTTP/2 (docs/grpc.md): the HTTP/2 client preface a server port sniffs,
 * the five-byte length prefix of a message, grpc-timeout, the table between ftrpc's codes and
 * gRPC's status codes, grpc-message's percent-encoding, and the token bucket that bounds how often
 * a peer may send SETTINGS, PING and RST_STREAM frames.
 *
 * HTTP/2 itself (frames, HPACK, flow control, SETTINGS) is nghttp2's, driven by the server's and
 * the client's sessions; nothing here knows of connections or calls, and every size is bounded by
 * the caller's limit. Not here: streaming (a body of more than one message is refused by the
 * caller), compression other than identity and gzip.
 */
#ifndef FT_PROTOCOL_GRPC_H
#define FT_PROTOCOL_GRPC_H

#include <stddef.h>
#include <stdint.h>

#include "base/iobuf.h"

/* "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n": RFC 9113 §3.4, a client with prior knowledge sends it first
 */
#define FT_H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define FT_H2_PREFACE_LEN 24

/* How the first bytes of a connection look: 1 = the HTTP/2 preface, 0 = not HTTP/2, -1 = too few
 * bytes to tell. Checked before HTTP/1.1's sniff, to which "PRI " looks like a method. */
int ft_h2_sniff(const ft_iobuf *in);

/* gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html). */
enum ft_grpc_status {
    FT_GRPC_OK = 0,
    FT_GRPC_CANCELLED = 1,
    FT_GRPC_UNKNOWN = 2,
    FT_GRPC_INVALID_ARGUMENT = 3,
    FT_GRPC_DEADLINE_EXCEEDED = 4,
    FT_GRPC_NOT_FOUND = 5,
    FT_GRPC_ALREADY_EXISTS = 6,
    FT_GRPC_PERMISSION_DENIED = 7,
    FT_GRPC_RESOURCE_EXHAUSTED = 8,
    FT_GRPC_FAILED_PRECONDITION = 9,
    FT_GRPC_ABORTED = 10,
    FT_GRPC_OUT_OF_RANGE = 11,
    FT_GRPC_UNIMPLEMENTED = 12,
    FT_GRPC_INTERNAL = 13,
    FT_GRPC_UNAVAILABLE = 14,
    FT_GRPC_DATA_LOSS = 15,
    FT_GRPC_UNAUTHENTICATED = 16,
};

/* The gRPC status a wire code (0, brpc's framework codes, a business code) is sent as: the table
 * of docs/grpc.md, "ftrpc to gRPC". */
int ft_grpc_status_of(int32_t wire_code);
/* The ftrpc wire code a gRPC status is read as (0 for OK): the table of docs/grpc.md, "gRPC to
 * ftrpc". Statuses that say something of the application (NOT_FOUND, ALREADY_EXISTS, ...) become
 * business errors, FT_GRPC_BUSINESS_BASE + status; an unknown status is UNKNOWN's. */
int32_t ft_grpc_wire_code_of(int status);
#define FT_GRPC_BUSINESS_BASE 3000 /* = FTRPC_BUSINESS_CODE_MIN */

/* Reads a grpc-retry-pushback-ms value (gRPC A6) as ftrpc_retry_after_ms: the milliseconds, capped
 * at INT32_MAX; -1 ("do not retry") for a negative or unparsable value, as A6 says. 0 asks for
 * nothing beyond the usual retry. */
int32_t ft_grpc_parse_pushback(const char *v, size_t len);
/* Parses a grpc-timeout value ("1..8 digits" then one of H M S m u n) into milliseconds, rounded
 * up and capped at INT32_MAX. 0, or -1 for a malformed value. */
int ft_grpc_parse_timeout(const char *v, size_t len, int64_t *ms);
/* Writes ms as a grpc-timeout value ("<n>m", or "<n>S" when n would need more than 8 digits) into
 * out (at least 12 bytes); returns its length. */
size_t ft_grpc_format_timeout(int64_t ms, char *out);

/* Cuts the one message of a unary call's body: a 5-byte prefix (compressed flag, big-endian
 * length) then the message. A compressed message is inflated when gzip (the stream's
 * grpc-encoding is gzip), at most max bytes. 0 with the message moved into *msg (body consumed);
 * or -1 with *status (a gRPC status) and *reason (static text): a short or over-long body,
 * a second message (streaming), compression without gzip, a message past max. */
int ft_grpc_unframe(ft_iobuf *body, int gzip, size_t max, ft_iobuf *msg, int *status,
                    const char **reason);
/* Appends msg (shared, not copied) to out behind its 5-byte prefix, uncompressed. 0 or
 * FTRPC_ENOMEM / FTRPC_EINVAL (a message past 4 GiB). */
int ft_grpc_frame(ft_iobuf *out, const ft_iobuf *msg);

/* Percent-encodes text for grpc-message (bytes outside 0x20..0x7e, and '%'), at most cap-1 bytes
 * and NUL-terminated; returns the length. */
size_t ft_grpc_message_encode(const char *text, char *out, size_t cap);
/* Decodes a grpc-message value in place (malformed escapes are kept as they are); returns the
 * length. */
size_t ft_grpc_message_decode(char *text, size_t len);

/* A token bucket on a caller's clock: `burst` tokens at most, `per_second` added each second. */
typedef struct ft_rate_bucket {
    double tokens;
    int64_t last_ns;
    int started;
} ft_rate_bucket;
/* Takes one token at now_ns: 0, or -1 when none is left (the peer exceeds the rate). */
int ft_rate_bucket_take(ft_rate_bucket *b, uint32_t burst, uint32_t per_second, int64_t now_ns);

#endif
