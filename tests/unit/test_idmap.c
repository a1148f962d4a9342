/* ft_idmap: put/get/take/take_any, growth, and backward-shift deletion checked against a plain
 * model with many random keys, including keys that share a home slot and chains that wrap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/idmap.h"

static uint64_t rng_state = 0x2545F4914F6CDD1Du;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* The map's hash, restated so that the test can pick colliding keys. */
static size_t home_of(int64_t key, size_t mask)
{
    return (size_t)(((uint64_t)key * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & mask;
}

static void *val(intptr_t v)
{
    return (void *)v;
}

static void put_get_take_round_trip(void **state)
{
    (void)state;
    ft_idmap m;
    ft_idmap_init(&m);
    assert_null(ft_idmap_get(&m, 1));
    assert_null(ft_idmap_take(&m, 1));
    assert_null(ft_idmap_take_any(&m));
    static const int64_t keys[] = {1, -1, 42, INT64_MAX, INT64_MIN, 1 << 20};
    for (int i = 0; i < 6; i++)
        assert_int_equal(ft_idmap_put(&m, keys[i], val(100 + i)), 0);
    assert_int_equal(ft_idmap_count(&m), 6);
    for (int i = 0; i < 6; i++)
        assert_ptr_equal(ft_idmap_get(&m, keys[i]), val(100 + i));
    assert_null(ft_idmap_get(&m, 2));
    assert_ptr_equal(ft_idmap_take(&m, 42), val(102));
    assert_null(ft_idmap_take(&m, 42));
    assert_null(ft_idmap_get(&m, 42));
    assert_int_equal(ft_idmap_count(&m), 5);
    ft_idmap_fini(&m);
    assert_int_equal(ft_idmap_count(&m), 0);
}

static void put_replaces_an_existing_value(void **state)
{
    (void)state;
    ft_idmap m;
    ft_idmap_init(&m);
    assert_int_equal(ft_idmap_put(&m, 7, val(1)), 0);
    assert_int_equal(ft_idmap_put(&m, 7, val(2)), 0);
    assert_int_equal(ft_idmap_count(&m), 1);
    assert_ptr_equal(ft_idmap_get(&m, 7), val(2));
    ft_idmap_fini(&m);
}

static void growth_keeps_every_entry_and_load_at_most_half(void **state)
{
    (void)state;
    ft_idmap m;
    ft_idmap_init(&m);
    enum { N = 20000 };
    for (intptr_t i = 1; i <= N; i++) {
        assert_int_equal(ft_idmap_put(&m, (int64_t)i * 7919, val(i)), 0);
        assert_true(ft_idmap_count(&m) * 2 <= m.mask + 1);
    }
    assert_int_equal(ft_idmap_count(&m), N);
    assert_int_equal((m.mask + 1) & m.mask, 0); /* a power of two */
    for (intptr_t i = 1; i <= N; i++)
        assert_ptr_equal(ft_idmap_get(&m, (int64_t)i * 7919), val(i));
    ft_idmap_fini(&m);
}

static void take_any_drains_each_entry_once(void **state)
{
    (void)state;
    ft_idmap m;
    ft_idmap_init(&m);
    enum { N = 500 };
    static char seen[N + 1];
    memset(seen, 0, sizeof seen);
    for (intptr_t i = 1; i <= N; i++)
        assert_int_equal(ft_idmap_put(&m, i, val(i)), 0);
    for (int i = 0; i < N; i++) {
        intptr_t v = (intptr_t)ft_idmap_take_any(&m);
        assert_true(v >= 1 && v <= N);
        assert_int_equal(seen[v], 0);
        seen[v] = 1;
        assert_int_equal(ft_idmap_count(&m), (size_t)(N - i - 1));
    }
    assert_null(ft_idmap_take_any(&m));
    ft_idmap_fini(&m);
}

/* Keys whose home slot, at the capacities the test goes through, is `home`. */
static int pick_colliding(int64_t *out, int n, size_t mask, size_t home, int64_t from)
{
    int k = 0;
    for (int64_t key = from; k < n; key++) {
        if (key != 0 && home_of(key, mask) == home) out[k++] = key;
    }
    return k;
}

static void random_puts_and_takes_match_a_model(void **state)
{
    (void)state;
    enum { POOL = 400, STEPS = 60000 };
    int64_t keys[POOL];
    intptr_t model[POOL];
    int n = 0;
    /* clusters at the last slot (chains wrap to slot 0), at slot 0 and in the middle, for the
     * capacities 64 and 256 that the map passes through */
    n += pick_colliding(keys + n, 20, 63, 63, 1);
    n += pick_colliding(keys + n, 20, 63, 0, 100000);
    n += pick_colliding(keys + n, 20, 255, 255, 200000);
    n += pick_colliding(keys + n, 20, 255, 128, 300000);
    n += pick_colliding(keys + n, 20, 1023, 1023, 400000);
    while (n < POOL) {
        int64_t k = (int64_t)rng();
        if (n % 3 == 0) k = (int64_t)(rng() % 2000) + 1; /* small ids, as correlation ids are */
        int dup = k == 0;
        for (int i = 0; i < n && !dup; i++)
            dup = keys[i] == k;
        if (!dup) keys[n++] = k;
    }
    memset(model, 0, sizeof model);
    ft_idmap m;
    ft_idmap_init(&m);
    size_t count = 0;
    for (int step = 0; step < STEPS; step++) {
        /* bias towards a mid-sized population so deletions hit long chains */
        int i = (int)(rng() % (step < STEPS / 2 ? 100 : POOL));
        uint64_t op = rng() % 10;
        if (op < 5) {
            intptr_t v = step + 1;
            assert_int_equal(ft_idmap_put(&m, keys[i], val(v)), 0);
            if (!model[i]) count++;
            model[i] = v;
        } else if (op < 9) {
            void *got = ft_idmap_take(&m, keys[i]);
            assert_ptr_equal(got, val(model[i]));
            if (model[i]) count--;
            model[i] = 0;
        } else {
            assert_ptr_equal(ft_idmap_get(&m, keys[i]), val(model[i]));
        }
        assert_int_equal(ft_idmap_count(&m), count);
        if (step % 64 == 0 || op >= 5) {
            for (int j = 0; j < POOL; j++)
                assert_ptr_equal(ft_idmap_get(&m, keys[j]), val(model[j]));
        }
    }
    ft_idmap_fini(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(put_get_take_round_trip),
        cmocka_unit_test(put_replaces_an_existing_value),
        cmocka_unit_test(growth_keeps_every_entry_and_load_at_most_half),
        cmocka_unit_test(take_any_drains_each_entry_once),
        cmocka_unit_test(random_puts_and_takes_match_a_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
