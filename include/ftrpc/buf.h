/* ftrpc_buf: a chained, reference-counted byte buffer (an "iobuf").
 *
 * Requests, responses and attachments travel as ftrpc_buf so that bytes read from a socket reach
 * the handler, and a handler's reply reaches the socket, without copies: appending one buffer to
 * another shares the underlying blocks. A buffer is a value owned by whoever holds it; it is not
 * thread-safe, but the blocks it shares are (their counts are atomic), so two buffers that share
 * blocks may live on different threads.
 */
#ifndef FTRPC_BUF_H
#define FTRPC_BUF_H

#include "ftrpc/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ftrpc_buf ftrpc_buf;

/* Makes an empty buffer. NULL on allocation failure. The caller owns it: ftrpc_buf_free(). */
FTRPC_API ftrpc_buf *ftrpc_buf_new(void);
/* Frees the buffer and releases its blocks. NULL does nothing. */
FTRPC_API void ftrpc_buf_free(ftrpc_buf *buf);
/* Bytes in the buffer. */
FTRPC_API size_t ftrpc_buf_size(const ftrpc_buf *buf);
/* Copies len bytes from data to the end. 0 or FTRPC_ENOMEM. */
FTRPC_API int ftrpc_buf_append(ftrpc_buf *buf, const void *data, size_t len);
/* Appends src's bytes to dst without copying them (the blocks are shared). 0 or FTRPC_ENOMEM. */
FTRPC_API int ftrpc_buf_append_buf(ftrpc_buf *dst, const ftrpc_buf *src);
/* Frees user memory a buffer no longer refers to (ftrpc_buf_append_user). Any thread. */
typedef void (*ftrpc_buf_free_cb)(void *data, void *arg);
/* Appends user memory without copying it: free_cb(data, arg) runs (on any thread) when the last
 * buffer referring to it is freed; until then the memory must stay valid and unchanged. */
FTRPC_API int ftrpc_buf_append_user(ftrpc_buf *buf, const void *data, size_t len,
                                    ftrpc_buf_free_cb free_cb, void *arg);
/* Copies up to n bytes from the start of the buffer into dst; returns how many were copied. */
FTRPC_API size_t ftrpc_buf_copy_to(const ftrpc_buf *buf, void *dst, size_t n);
/* Returns a pointer to all the buffer's bytes, contiguous. Zero-copy when the buffer holds one
 * segment; otherwise the bytes are gathered once into a new block. Valid until the buffer is next
 * changed or freed. NULL when empty or on allocation failure. */
FTRPC_API const void *ftrpc_buf_flatten(ftrpc_buf *buf);
/* Removes all bytes. */
FTRPC_API void ftrpc_buf_clear(ftrpc_buf *buf);
/* Segment count, and the address and length of segment i (i < count): for zero-copy readers. */
FTRPC_API size_t ftrpc_buf_segment_count(const ftrpc_buf *buf);
FTRPC_API const void *ftrpc_buf_segment(const ftrpc_buf *buf, size_t i, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
