/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as brpc and leveldb compute it.
 *
 * ft_crc32c_extend chains: crc32c(a ++ b) == ft_crc32c_extend(ft_crc32c(a), b), so a checksum over
 * a chained buffer is computed slice by slice without copying. The hardware path (SSE4.2 `crc32`
 * instruction, chosen once at run time) and the slicing-by-8 table path give identical results.
 * Every function is pure and callable from any thread.
 */
#ifndef FT_BASE_CRC32C_H
#define FT_BASE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* The CRC32C of (the data that gave `crc`) followed by data[0..n). Start with crc = 0. */
uint32_t ft_crc32c_extend(uint32_t crc, const void *data, size_t n);

/* The same, always through the portable table path (exposed so tests can compare both paths). */
uint32_t ft_crc32c_extend_sw(uint32_t crc, const void *data, size_t n);

static inline uint32_t ft_crc32c(const void *data, size_t n)
{
    return ft_crc32c_extend(0, data, n);
}

/* brpc's (and leveldb's) masking of a stored CRC, so that a CRC over data that itself embeds CRCs
 * does not degenerate: rotate right by 15 and add a constant. */
#define FT_CRC32C_MASK_DELTA 0xa282ead8u
static inline uint32_t ft_crc32c_mask(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + FT_CRC32C_MASK_DELTA;
}
static inline uint32_t ft_crc32c_unmask(uint32_t masked)
{
    uint32_t rot = masked - FT_CRC32C_MASK_DELTA;
    return (rot >> 17) | (rot << 15);
}

#endif
