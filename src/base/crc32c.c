/* CRC32C: slicing-by-8 tables, and the SSE4.2 `crc32` instruction when the CPU has it.
 *
 * The tables (8 x 256 words) are built once, on first use, under pthread_once; the hardware path
 * is picked at the same time. Both paths keep the CRC in its inverted form internally and invert
 * on entry and exit, so that ft_crc32c_extend chains across calls.
 */
#include "base/crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FT_CRC32C_HAVE_SSE42 1
#include <nmmintrin.h>
#endif

#define POLY 0x82F63B78u

static uint32_t table[8][256];
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static uint32_t (*extend_impl)(uint32_t crc, const uint8_t *p, size_t n);

static uint32_t extend_table(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    /* byte at a time until 8-byte aligned, then 8 bytes per step */
    while (n > 0 && ((uintptr_t)p & 7) != 0) {
        crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        n--;
    }
    while (n >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        lo = __builtin_bswap32(lo);
        hi = __builtin_bswap32(hi);
#endif
        lo ^= crc;
        crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^
              table[4][lo >> 24] ^ table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
              table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n-- > 0)
        crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#ifdef FT_CRC32C_HAVE_SSE42
__attribute__((target("sse4.2"))) static uint32_t extend_sse42(uint32_t crc, const uint8_t *p,
                                                               size_t n)
{
    uint64_t c = ~crc;
    while (n > 0 && ((uintptr_t)p & 7) != 0) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        n--;
    }
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        n -= 8;
    }
    while (n-- > 0)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
#endif

static void init_tables(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            table[t][i] = table[0][table[t - 1][i] & 0xff] ^ (table[t - 1][i] >> 8);
    extend_impl = extend_table;
#ifdef FT_CRC32C_HAVE_SSE42
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) extend_impl = extend_sse42;
#endif
}

uint32_t ft_crc32c_extend(uint32_t crc, const void *data, size_t n)
{
    pthread_once(&init_once, init_tables);
    return extend_impl(crc, data, n);
}

uint32_t ft_crc32c_extend_sw(uint32_t crc, const void *data, size_t n)
{
    pthread_once(&init_once, init_tables);
    return extend_table(crc, data, n);
}
