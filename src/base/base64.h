/* Base64, standard alphabet and padded (RFC 4648 section 4): what etcd's JSON gateway and
 * protobuf's JSON mapping write for bytes.
 *
 * Invariants: pure functions; the decoder is strict (length a multiple of 4, '=' only as final
 * padding, zero pad bits), so every decodable text is the one encoding of its bytes, and it never
 * writes past the capacity it is given. Not here: line breaks, the URL-safe alphabet (a caller that
 * accepts it maps '-' and '_' to '+' and '/' first). */
#ifndef FT_BASE_BASE64_H
#define FT_BASE_BASE64_H

#include <stddef.h>

/* Encoded length of n bytes, without the NUL. */
size_t ft_b64_len(size_t n);
/* Writes ft_b64_len(n) characters and a NUL into out. */
void ft_b64_encode(const void *in, size_t n, char *out);
/* Strict decode of n characters into at most cap bytes: 0 and *out_len, or FTRPC_EINVAL (bad text,
 * or more than cap bytes). */
int ft_b64_decode(const char *in, size_t n, void *out, size_t cap, size_t *out_len);

#endif
