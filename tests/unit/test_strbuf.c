/* ft_strbuf: append, appendf (short and long), growth, the bound, reset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "base/strbuf.h"
#include "ftrpc/common.h"

static void empty_buffer_reads_as_empty_string(void **state)
{
    (void)state;
    ft_strbuf sb;
    ft_strbuf_init(&sb, 0);
    assert_string_equal(ft_strbuf_cstr(&sb), "");
    assert_int_equal(sb.len, 0);
    ft_strbuf_reset(&sb);
    ft_strbuf_fini(&sb);
    ft_strbuf_fini(&sb); /* twice is fine */
}

static void appends_grow_and_stay_terminated(void **state)
{
    (void)state;
    ft_strbuf sb;
    ft_strbuf_init(&sb, 0);
    assert_int_equal(ft_strbuf_appends(&sb, "abc"), 0);
    assert_int_equal(ft_strbuf_append(&sb, "defXX", 3), 0);
    assert_int_equal(ft_strbuf_appendf(&sb, "-%d-%s", 42, "x"), 0);
    assert_string_equal(ft_strbuf_cstr(&sb), "abcdef-42-x");
    for (int i = 0; i < 1000; i++)
        assert_int_equal(ft_strbuf_appends(&sb, "0123456789"), 0);
    assert_int_equal(sb.len, 11 + 10000);
    assert_int_equal(strlen(sb.data), sb.len);
    /* longer than appendf's stack buffer */
    char big[1000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ft_strbuf_reset(&sb);
    assert_int_equal(sb.len, 0);
    assert_int_equal(ft_strbuf_appendf(&sb, "<%s>", big), 0);
    assert_int_equal(sb.len, 1001);
    assert_int_equal(sb.data[0], '<');
    assert_int_equal(sb.data[1000], '>');
    assert_int_equal(sb.data[1001], '\0');
    ft_strbuf_fini(&sb);
}

static void the_bound_refuses_and_keeps_contents(void **state)
{
    (void)state;
    ft_strbuf sb;
    ft_strbuf_init(&sb, 16); /* 15 characters and the NUL */
    assert_int_equal(ft_strbuf_appends(&sb, "0123456789"), 0);
    assert_int_equal(ft_strbuf_appends(&sb, "abcdef"), FTRPC_ENOMEM);
    assert_string_equal(ft_strbuf_cstr(&sb), "0123456789");
    assert_int_equal(ft_strbuf_appendf(&sb, "%s", "abcdef"), FTRPC_ENOMEM);
    assert_string_equal(ft_strbuf_cstr(&sb), "0123456789");
    char big[600];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(ft_strbuf_appendf(&sb, "%s", big), FTRPC_ENOMEM);
    assert_string_equal(ft_strbuf_cstr(&sb), "0123456789");
    assert_int_equal(ft_strbuf_appends(&sb, "abcde"), 0); /* exactly fills it */
    assert_int_equal(sb.len, 15);
    assert_true(sb.cap <= 16);
    assert_int_equal(ft_strbuf_append(&sb, "", 0), 0);
    assert_int_equal(ft_strbuf_append(&sb, "x", 1), FTRPC_ENOMEM);
    assert_string_equal(ft_strbuf_cstr(&sb), "0123456789abcde");
    ft_strbuf_fini(&sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_buffer_reads_as_empty_string),
        cmocka_unit_test(appends_grow_and_stay_terminated),
        cmocka_unit_test(the_bound_refuses_and_keeps_contents),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
