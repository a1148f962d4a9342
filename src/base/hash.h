/* 64-bit non-cryptographic hashing: XXH64 (xxHash's 64-bit variant, reimplemented from its
 * specification), used by the consistent-hash balancer for ring points and request keys alike, so a
 * key and a node land on the same scale. The output is stable across platforms and releases: rings
 * built by different processes agree. It is not a MAC and resists no adversary; never hash secrets
 * with it or trust it against chosen-key flooding. */
#ifndef FT_BASE_HASH_H
#define FT_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>

/* XXH64 of len bytes at data (data may be NULL when len is 0) with the given seed. Any thread. */
uint64_t ft_hash64(const void *data, size_t len, uint64_t seed);

/* XXH64 of a NUL-terminated string, seed 0. */
uint64_t ft_hash64_str(const char *s);

#endif
