/* CRC32C: the published vectors (RFC 3720 B.4, leveldb's crc32c tests), chaining, and brpc's
 * mask, on both the hardware and the table path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/crc32c.h"

typedef struct vector {
    uint8_t data[32];
    size_t len;
    uint32_t crc;
} vector;

static void fill_vectors(vector *v)
{
    memset(v, 0, 4 * sizeof *v);
    memcpy(v[0].data, "123456789", 9);
    v[0].len = 9;
    v[0].crc = 0xE3069283u;
    v[1].len = 32; /* 32 zero bytes */
    v[1].crc = 0x8A9136AAu;
    memset(v[2].data, 0xff, 32);
    v[2].len = 32;
    v[2].crc = 0x62A8AB43u;
    for (int i = 0; i < 32; i++)
        v[3].data[i] = (uint8_t)i;
    v[3].len = 32;
    v[3].crc = 0x46DD794Eu;
}

static void known_vectors_match_on_both_paths(void **state)
{
    (void)state;
    vector v[4];
    fill_vectors(v);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(ft_crc32c(v[i].data, v[i].len), v[i].crc);
        assert_int_equal(ft_crc32c_extend_sw(0, v[i].data, v[i].len), v[i].crc);
    }
    assert_int_equal(ft_crc32c("", 0), 0);
}

static void extend_chains_over_any_split_and_alignment(void **state)
{
    (void)state;
    uint8_t buf[300];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 31 + 7);
    uint32_t whole = ft_crc32c_extend_sw(0, buf, sizeof buf);
    assert_int_equal(ft_crc32c(buf, sizeof buf), whole);
    for (size_t cut = 0; cut <= sizeof buf; cut += 13) {
        uint32_t c = ft_crc32c(buf, cut);
        assert_int_equal(ft_crc32c_extend(c, buf + cut, sizeof buf - cut), whole);
        uint32_t s = ft_crc32c_extend_sw(0, buf, cut);
        assert_int_equal(ft_crc32c_extend_sw(s, buf + cut, sizeof buf - cut), whole);
    }
    /* unaligned starts give the same as the table path */
    for (size_t off = 1; off < 9; off++)
        assert_int_equal(ft_crc32c(buf + off, 100), ft_crc32c_extend_sw(0, buf + off, 100));
}

static void mask_rotates_and_adds_delta_and_unmask_inverts_it(void **state)
{
    (void)state;
    uint32_t c = 0xE3069283u;
    uint32_t expect = ((c >> 15) | (c << 17)) + 0xa282ead8u;
    assert_int_equal(ft_crc32c_mask(c), expect);
    assert_int_not_equal(ft_crc32c_mask(c), c);
    assert_int_not_equal(ft_crc32c_mask(ft_crc32c_mask(c)), c);
    assert_int_equal(ft_crc32c_unmask(ft_crc32c_mask(c)), c);
    assert_int_equal(ft_crc32c_unmask(ft_crc32c_mask(0)), 0);
    assert_int_equal(ft_crc32c_mask(0), 0xa282ead8u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(known_vectors_match_on_both_paths),
        cmocka_unit_test(extend_chains_over_any_split_and_alignment),
        cmocka_unit_test(mask_rotates_and_adds_delta_and_unmask_inverts_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
