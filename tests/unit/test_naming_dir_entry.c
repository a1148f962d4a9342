/* dir:// entry files: the strict parser (good, garbage, oversized, truncated), the round trip,
 * liveness at a chosen wall time, and folder scans with entries of chosen ages (TTL expiry and
 * reaping without waiting for real time). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define _XOPEN_SOURCE 700
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ftrpc/log.h"
#include "naming/dir_entry.h"

static void quiet(ftrpc_log_level level, const char *msg, void *arg) {}

static const char GOOD[] = "ftrpc-dir-entry 1\n"
                           "service=example.EchoService\n"
                           "addr=127.0.0.1:8000\n"
                           "weight=50\n"
                           "tags=a|b\n"
                           "pid=4242\n"
                           "ttl_ms=90000\n"
                           "refreshed_ms=1795000000000\n";

static void parse_accepts_a_good_entry(void **state)
{
    ft_dir_entry e;
    assert_int_equal(ft_dir_entry_parse(GOOD, sizeof GOOD - 1, &e, NULL), 0);
    assert_string_equal(e.service, "example.EchoService");
    assert_string_equal(e.ep.addr, "127.0.0.1:8000");
    assert_int_equal(e.ep.weight, 50);
    assert_string_equal(e.ep.tags, "a|b");
    assert_int_equal(e.pid, 4242);
    assert_int_equal(e.ttl_ms, 90000);
    assert_int_equal(e.refreshed_ms, 1795000000000LL);

    /* keys in another order, empty tags */
    const char *other = "ftrpc-dir-entry 1\nrefreshed_ms=0\nttl_ms=1\npid=1\ntags=\nweight=1\n"
                        "addr=[::1]:1\nservice=s\n";
    assert_int_equal(ft_dir_entry_parse(other, strlen(other), &e, NULL), 0);
    assert_string_equal(e.ep.tags, "");
    assert_string_equal(e.ep.addr, "[::1]:1");
}

static void format_round_trips(void **state)
{
    ft_dir_entry e, back;
    assert_int_equal(ft_dir_entry_parse(GOOD, sizeof GOOD - 1, &e, NULL), 0);
    char buf[FT_DIR_ENTRY_MAX + 1];
    int n = ft_dir_entry_format(&e, buf, sizeof buf);
    assert_int_equal(n, (int)(sizeof GOOD - 1));
    assert_memory_equal(buf, GOOD, sizeof GOOD - 1);
    assert_int_equal(ft_dir_entry_parse(buf, (size_t)n, &back, NULL), 0);
    assert_memory_equal(&e, &back, sizeof e);
    /* a buffer too small, or an entry that would not parse back, is refused */
    assert_int_equal(ft_dir_entry_format(&e, buf, 20), FTRPC_EINVAL);
    e.ep.weight = 0;
    assert_int_equal(ft_dir_entry_format(&e, buf, sizeof buf), FTRPC_EINVAL);
}

/* Replaces the first occurrence of `from` in GOOD by `to`. */
static size_t mutate(char *out, const char *from, const char *to)
{
    const char *at = strstr(GOOD, from);
    assert_non_null(at);
    size_t pre = (size_t)(at - GOOD);
    memcpy(out, GOOD, pre);
    strcpy(out + pre, to);
    strcat(out, at + strlen(from));
    return strlen(out);
}

/* go-micro's Node.Id: the id line is optional (older registrars wrote none), checked, at most
 * once, and formats back where the formatter puts it (last). */
static void instance_id_is_optional_checked_and_round_trips(void **state)
{
    char buf[2048];
    size_t len = mutate(buf, "pid=4242\n", "id=0b5c6f2e-6a1d-4c51-9a8e-2f0d3c4b5a69\npid=4242\n");
    ft_dir_entry e, back;
    assert_int_equal(ft_dir_entry_parse(buf, len, &e, NULL), 0);
    assert_string_equal(e.ep.id, "0b5c6f2e-6a1d-4c51-9a8e-2f0d3c4b5a69");
    assert_int_equal(e.ep.ttl_ms, 90000);
    char out[FT_DIR_ENTRY_MAX + 1];
    int n = ft_dir_entry_format(&e, out, sizeof out);
    assert_true(n > 0);
    assert_non_null(
        strstr(out, "refreshed_ms=1795000000000\nid=0b5c6f2e-6a1d-4c51-9a8e-2f0d3c4b5a69\n"));
    assert_int_equal(ft_dir_entry_parse(out, (size_t)n, &back, NULL), 0);
    assert_memory_equal(&e.ep, &back.ep, sizeof e.ep);
    /* without one: an empty id, and none written back */
    assert_int_equal(ft_dir_entry_parse(GOOD, sizeof GOOD - 1, &e, NULL), 0);
    assert_string_equal(e.ep.id, "");
    n = ft_dir_entry_format(&e, out, sizeof out);
    assert_null(strstr(out, "\nid="));
    /* the last: an id of 64 characters, one past the longest */
    static const char too_long[] =
        "id=0123456789012345678901234567890123456789012345678901234567890123\n";
    static const char *const bad[] = {"id=\n", "id=a b\n", "id=a/b\n", "id=x\nid=x\n", too_long};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char with[64 + 200];
        snprintf(with, sizeof with, "%spid=4242\n", bad[i]);
        len = mutate(buf, "pid=4242\n", with);
        const char *why = NULL;
        if (ft_dir_entry_parse(buf, len, &e, &why) != FTRPC_EINVAL)
            fail_msg("accepted bad id case %zu", i);
    }
    snprintf(e.ep.id, sizeof e.ep.id, "a b");
    assert_int_equal(ft_dir_entry_format(&e, out, sizeof out), FTRPC_EINVAL);
}

static void parse_rejects_garbage(void **state)
{
    static const struct {
        const char *from, *to;
    } cases[] = {
        {"ftrpc-dir-entry 1\n", "ftrpc-dir-entry 2\n"},
        {"ftrpc-dir-entry 1\n", ""},
        {"weight=50\n", ""},                        /* missing key */
        {"weight=50\n", "weight=50\nweight=50\n"},  /* duplicate key */
        {"weight=50\n", "weight=50\ncolour=red\n"}, /* unknown key */
        {"weight=50\n", "weight=50\n\n"},           /* blank line */
        {"weight=50\n", "weight = 50\n"},           /* spaces */
        {"weight=50\n", "weight=+50\n"},
        {"weight=50\n", "weight=050\n"},
        {"weight=50\n", "weight=0\n"},
        {"weight=50\n", "weight=65536\n"},
        {"weight=50\n", "weight\n"},
        {"pid=4242\n", "pid=-1\n"},
        {"pid=4242\n", "pid=2147483648\n"},
        {"ttl_ms=90000\n", "ttl_ms=0\n"},
        {"ttl_ms=90000\n", "ttl_ms=86400001\n"},
        {"refreshed_ms=1795000000000\n", "refreshed_ms=9999999999999999999\n"},
        {"refreshed_ms=1795000000000\n", "refreshed_ms=12x\n"},
        {"addr=127.0.0.1:8000\n", "addr=127.0.0.1\n"},
        {"addr=127.0.0.1:8000\n", "addr=/etc/passwd:1\n"},
        {"service=example.EchoService\n", "service=\n"},
        {"service=example.EchoService\n", "service=a/b\n"},
        {"tags=a|b\n", "tags=a||b\n"},
        {"tags=a|b\n", "tags=a\rb\n"},
        {"addr=127.0.0.1:8000\n", "addr=127.0.0.1:8000\r\n"}, /* CRLF is not the format */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[2048];
        size_t len = mutate(buf, cases[i].from, cases[i].to);
        ft_dir_entry e;
        memset(&e, 0x5a, sizeof e);
        const char *why = NULL;
        int rc = ft_dir_entry_parse(buf, len, &e, &why);
        if (rc != FTRPC_EINVAL) fail_msg("accepted garbage case %zu (%s)", i, cases[i].to);
        assert_non_null(why);
        assert_int_equal((unsigned char)e.service[0], 0x5a);
    }
    const char *junk[] = {"", "\n", "hello", "\xff\xfe\x00\x01", "ftrpc-dir-entry 1\n"};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        ft_dir_entry e;
        assert_int_equal(ft_dir_entry_parse(junk[i], strlen(junk[i]), &e, NULL), FTRPC_EINVAL);
    }
    ft_dir_entry e;
    assert_int_equal(ft_dir_entry_parse(NULL, 0, &e, NULL), FTRPC_EINVAL);
    char nul[sizeof GOOD];
    memcpy(nul, GOOD, sizeof GOOD);
    nul[30] = '\0';
    assert_int_equal(ft_dir_entry_parse(nul, sizeof GOOD - 1, &e, NULL), FTRPC_EINVAL);
}

static void parse_rejects_truncated_entries(void **state)
{
    /* every strict prefix of a good entry is refused */
    for (size_t len = 0; len < sizeof GOOD - 1; len++) {
        ft_dir_entry e;
        if (ft_dir_entry_parse(GOOD, len, &e, NULL) == 0)
            fail_msg("accepted a prefix of %zu bytes", len);
    }
}

static void parse_rejects_oversized_entries(void **state)
{
    char big[FT_DIR_ENTRY_MAX + 2];
    size_t n = sizeof GOOD - 1;
    memcpy(big, GOOD, n);
    /* a padded but otherwise valid-looking entry past the limit */
    memset(big + n, '\n', sizeof big - n);
    ft_dir_entry e;
    const char *why = NULL;
    assert_int_equal(ft_dir_entry_parse(big, sizeof big, &e, &why), FTRPC_EINVAL);
    assert_string_equal(why, "too large");
}

static void liveness_follows_ttl(void **state)
{
    ft_dir_entry e;
    assert_int_equal(ft_dir_entry_parse(GOOD, sizeof GOOD - 1, &e, NULL), 0);
    int64_t t = e.refreshed_ms;
    assert_true(ft_dir_entry_alive(&e, t));
    assert_true(ft_dir_entry_alive(&e, t + 90000));
    assert_false(ft_dir_entry_alive(&e, t + 90001));
    assert_false(ft_dir_entry_reapable(&e, t + 180000));
    assert_true(ft_dir_entry_reapable(&e, t + 180001));
    /* a time far in the future does not pin an entry forever */
    assert_true(ft_dir_entry_alive(&e, t - 1000));
    assert_false(ft_dir_entry_alive(&e, t - 90001));
}

static void filename_maps_address_characters(void **state)
{
    char buf[256];
    assert_int_equal(ft_dir_entry_filename("svc", "[::1]:80", buf, sizeof buf), 0);
    assert_string_equal(buf, "svc@___1__80.entry");
    assert_int_equal(ft_dir_entry_filename("svc", "10.0.0.1:80", buf, 8), FTRPC_EINVAL);
}

/* ---- scans of a real folder, with entries of chosen ages ---- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup_dir(void **state)
{
    char *d = strdup("/tmp/ftrpc-dirent-XXXXXX");
    if (!mkdtemp(d)) return -1;
    *state = d;
    return 0;
}

static int teardown_dir(void **state)
{
    nftw(*state, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(*state);
    return 0;
}

static void put_file(const char *dir, const char *name, const char *text, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

static void put_entry(const char *dir, const char *service, const char *addr, int64_t refreshed,
                      int64_t ttl)
{
    ft_dir_entry e = {.pid = 1, .ttl_ms = ttl, .refreshed_ms = refreshed};
    strcpy(e.service, service);
    strcpy(e.ep.addr, addr);
    e.ep.weight = 10;
    char buf[FT_DIR_ENTRY_MAX + 1], name[256];
    int n = ft_dir_entry_format(&e, buf, sizeof buf);
    assert_true(n > 0);
    assert_int_equal(ft_dir_entry_filename(service, addr, name, sizeof name), 0);
    put_file(dir, name, buf, (size_t)n);
}

static bool exists(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

static void scan_keeps_live_entries_of_the_service_only(void **state)
{
    const char *dir = *state;
    int64_t now = 1800000000000LL;
    put_entry(dir, "svc", "127.0.0.1:1", now - 100, 1000);  /* live */
    put_entry(dir, "svc", "127.0.0.1:2", now - 1500, 1000); /* dead, not yet reapable */
    put_entry(dir, "svc", "127.0.0.1:3", now - 2500, 1000); /* dead and reapable */
    put_entry(dir, "other", "127.0.0.1:4", now - 10, 1000); /* another service */
    put_file(dir, "svc@garbage.entry", "garbage\n", 8);     /* skipped, logged */
    put_file(dir, ".svc@127.0.0.1_5.entry.1.0.tmp", GOOD, sizeof GOOD - 1); /* abandoned */
    put_file(dir, ".svc@127.0.0.1_6.entry.1.0.tmp", GOOD, sizeof GOOD - 1); /* being written */
    char young[512];
    snprintf(young, sizeof young, "%s/.svc@127.0.0.1_6.entry.1.0.tmp", dir);
    struct timespec times[2] = {{.tv_sec = (now + 950 - 1000) / 1000},
                                {.tv_sec = (now + 950 - 1000) / 1000}};
    assert_int_equal(utimensat(AT_FDCWD, young, times, 0), 0);
    /* an entry whose file name says svc but content says another service */
    ft_dir_entry e;
    assert_int_equal(ft_dir_entry_parse(GOOD, sizeof GOOD - 1, &e, NULL), 0);
    put_file(dir, "svc@lie.entry", GOOD, sizeof GOOD - 1);
    char big[FT_DIR_ENTRY_MAX * 2];
    memset(big, 'x', sizeof big);
    put_file(dir, "svc@big.entry", big, sizeof big);
    mkdir(strcat(strcpy(big, dir), "/svc@dir.entry"), 0700); /* not a regular file */
    char link[512];
    snprintf(link, sizeof link, "%s/svc@link.entry", dir);
    assert_int_equal(symlink("/etc/hostname", link), 0);

    ft_endpoint_list l = {0};
    assert_int_equal(ft_dir_scan(dir, "svc", now, false, &l), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.v[0].addr, "127.0.0.1:1");
    assert_int_equal(l.v[0].weight, 10);
    ft_endpoint_list_fini(&l);
    assert_true(exists(dir, "svc@127.0.0.1_3.entry"));

    /* TTL expiry: later, the live one is dead too; reaping removes what is past 2 x TTL */
    assert_int_equal(ft_dir_scan(dir, "svc", now + 950, true, &l), 0);
    assert_int_equal(l.n, 0);
    assert_true(exists(dir, "svc@127.0.0.1_1.entry"));  /* dead 50 ms: kept */
    assert_false(exists(dir, "svc@127.0.0.1_2.entry")); /* 2450 ms old: past 2 x TTL */
    assert_false(exists(dir, "svc@127.0.0.1_3.entry"));
    assert_true(exists(dir, "svc@garbage.entry")); /* garbage is never deleted by readers */
    assert_true(exists(dir, "other@127.0.0.1_4.entry"));
    assert_false(exists(dir, ".svc@127.0.0.1_5.entry.1.0.tmp")); /* mtime far before now */
    assert_true(exists(dir, ".svc@127.0.0.1_6.entry.1.0.tmp"));  /* a second old: kept */
    ft_endpoint_list_fini(&l);
}

static void scan_of_a_missing_folder_is_an_error(void **state)
{
    char path[512];
    snprintf(path, sizeof path, "%s/nope", (const char *)*state);
    ft_endpoint_list l = {0};
    assert_int_equal(ft_dir_scan(path, "svc", 0, true, &l), FTRPC_ESYS);
    assert_int_equal(l.n, 0);
}

int main(void)
{
    ftrpc_log_set_sink(quiet, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_accepts_a_good_entry),
        cmocka_unit_test(format_round_trips),
        cmocka_unit_test(instance_id_is_optional_checked_and_round_trips),
        cmocka_unit_test(parse_rejects_garbage),
        cmocka_unit_test(parse_rejects_truncated_entries),
        cmocka_unit_test(parse_rejects_oversized_entries),
        cmocka_unit_test(liveness_follows_ttl),
        cmocka_unit_test(filename_maps_address_characters),
        cmocka_unit_test_setup_teardown(scan_keeps_live_entries_of_the_service_only, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(scan_of_a_missing_folder_is_an_error, setup_dir,
                                        teardown_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
