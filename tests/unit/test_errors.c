/* Error codes: every FTRPC_E* code has its own name and a description; unknown codes get the
 * fallbacks. A second check reads include/ftrpc/common.h itself, so that a code added to the
 * header without a table entry fails here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ftrpc/common.h"

#define CODE(c)                                                                                    \
    {                                                                                              \
        c, #c                                                                                      \
    }
static const struct {
    int code;
    const char *name;
} CODES[] = {
    CODE(FTRPC_OK),           CODE(FTRPC_EINVAL),
    CODE(FTRPC_ENOMEM),       CODE(FTRPC_EIOTHREAD),
    CODE(FTRPC_ESTOPPED),     CODE(FTRPC_EADDR),
    CODE(FTRPC_ECONNREFUSED), CODE(FTRPC_ENOENDPOINT),
    CODE(FTRPC_ECANCELED),    CODE(FTRPC_ESYS),
    CODE(FTRPC_ECONNECT),     CODE(FTRPC_EEXIST),
    CODE(FTRPC_ETLS),         CODE(FTRPC_EBUSINESS),
    CODE(FTRPC_EADDRINUSE),   CODE(FTRPC_ENOSERVICE),
    CODE(FTRPC_ENOMETHOD),    CODE(FTRPC_EREQUEST),
    CODE(FTRPC_ERPCAUTH),     CODE(FTRPC_EBACKUPREQUEST),
    CODE(FTRPC_ERPCTIMEDOUT), CODE(FTRPC_EFAILEDSOCKET),
    CODE(FTRPC_EOVERCROWDED), CODE(FTRPC_EEOF),
    CODE(FTRPC_EINTERNAL),    CODE(FTRPC_ERESPONSE),
    CODE(FTRPC_ELOGOFF),      CODE(FTRPC_ELIMIT),
    CODE(FTRPC_EBREAKER),     CODE(FTRPC_ETHROTTLED),
};
enum { NCODES = sizeof CODES / sizeof CODES[0] };

static void every_code_has_its_name_and_a_text(void **state)
{
    (void)state;
    for (int i = 0; i < NCODES; i++) {
        assert_string_equal(ftrpc_err_name(CODES[i].code), CODES[i].name);
        const char *text = ftrpc_strerror(CODES[i].code);
        assert_non_null(text);
        assert_true(strlen(text) > 0);
        assert_string_not_equal(text, "unknown error");
    }
}

static void texts_are_distinct(void **state)
{
    (void)state;
    for (int i = 0; i < NCODES; i++)
        for (int j = i + 1; j < NCODES; j++)
            assert_string_not_equal(ftrpc_strerror(CODES[i].code), ftrpc_strerror(CODES[j].code));
}

static void brpc_codes_keep_brpc_numbers(void **state)
{
    (void)state;
    static const struct {
        int code, brpc;
    } cases[] = {
        {FTRPC_ENOSERVICE, 1001},    {FTRPC_ENOMETHOD, 1002},      {FTRPC_EREQUEST, 1003},
        {FTRPC_ERPCAUTH, 1004},      {FTRPC_EBACKUPREQUEST, 1007}, {FTRPC_ERPCTIMEDOUT, 1008},
        {FTRPC_EFAILEDSOCKET, 1009}, {FTRPC_EOVERCROWDED, 1011},   {FTRPC_EEOF, 1014},
        {FTRPC_EINTERNAL, 2001},     {FTRPC_ERESPONSE, 2002},      {FTRPC_ELOGOFF, 2003},
        {FTRPC_ELIMIT, 2004}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(cases[i].code, -cases[i].brpc);
}

static void unknown_codes_get_the_fallbacks(void **state)
{
    (void)state;
    static const int unknown[] = {1, -17, -999, -1005, -3000, 12345, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        assert_string_equal(ftrpc_strerror(unknown[i]), "unknown error");
        assert_string_equal(ftrpc_err_name(unknown[i]), "FTRPC_EUNKNOWN");
    }
}

/* Every "FTRPC_Exxx = -n," line of the public header has a table entry under its own name. */
static void every_code_in_the_header_is_in_the_table(void **state)
{
    (void)state;
    char path[4096];
    const char *here = __FILE__; /* .../tests/unit/test_errors.c */
    const char *cut = strstr(here, "tests/unit/");
    if (!cut) skip();
    snprintf(path, sizeof path, "%.*sinclude/ftrpc/common.h", (int)(cut - here), here);
    FILE *f = fopen(path, "r");
    if (!f) skip();
    char line[512];
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        char name[64];
        int value;
        if (sscanf(line, " %63[A-Z_] = %d", name, &value) != 2) continue;
        if (strncmp(name, "FTRPC_E", 7) != 0) continue;
        found++;
        assert_string_equal(ftrpc_err_name(value), name);
        assert_string_not_equal(ftrpc_strerror(value), "unknown error");
    }
    fclose(f);
    assert_int_equal(found, NCODES - 1); /* all but FTRPC_OK */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_code_has_its_name_and_a_text),
        cmocka_unit_test(texts_are_distinct),
        cmocka_unit_test(brpc_codes_keep_brpc_numbers),
        cmocka_unit_test(unknown_codes_get_the_fallbacks),
        cmocka_unit_test(every_code_in_the_header_is_in_the_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
