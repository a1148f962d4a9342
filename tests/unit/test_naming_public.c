/* The public discovery API (ftrpc/naming.h): ftrpc_naming_list reads a URL once (order kept,
 * duplicates dropped, weights and tags), refuses bad URLs and unreadable registries without
 * touching *out; a watch on a file:// list delivers the first list and each change with a growing
 * version, and nothing once freed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ftrpc/log.h"
#include "ftrpc/naming.h"

static void quiet(ftrpc_log_level level, const char *msg, void *arg) {}

static int setup(void **state)
{
    ftrpc_log_set_sink(quiet, NULL); /* the bad URLs below are logged */
    return 0;
}

static void list_keeps_order_weights_and_tags_and_drops_duplicates(void **state)
{
    ftrpc_endpoint_list *l;
    assert_int_equal(
        ftrpc_naming_list("list://127.0.0.1:8002 w=50 tag=a|b,127.0.0.1:8001,127.0.0.1:8002", &l),
        0);
    assert_int_equal(ftrpc_endpoint_list_size(l), 2);
    assert_string_equal(ftrpc_endpoint_list_addr(l, 0), "127.0.0.1:8002");
    assert_int_equal(ftrpc_endpoint_list_weight(l, 0), 50);
    assert_string_equal(ftrpc_endpoint_list_tags(l, 0), "a|b");
    assert_string_equal(ftrpc_endpoint_list_addr(l, 1), "127.0.0.1:8001");
    assert_int_equal(ftrpc_endpoint_list_weight(l, 1), 100);
    assert_string_equal(ftrpc_endpoint_list_tags(l, 1), "");
    assert_null(ftrpc_endpoint_list_addr(l, 2));
    assert_int_equal(ftrpc_endpoint_list_weight(l, 2), 0);
    assert_null(ftrpc_endpoint_list_tags(l, 2));
    ftrpc_endpoint_list_free(l);
    ftrpc_endpoint_list_free(NULL);
}

static void list_refuses_bad_urls_and_unreadable_registries(void **state)
{
    ftrpc_endpoint_list *l = NULL;
    assert_int_equal(ftrpc_naming_list("nope://127.0.0.1:8000", &l), FTRPC_EADDR);
    assert_int_equal(ftrpc_naming_list("list://127.0.0.1:99999", &l), FTRPC_EADDR);
    assert_true(ftrpc_naming_list("file:///nonexistent/ftrpc/list", &l) < 0);
    assert_int_equal(ftrpc_naming_list(NULL, &l), FTRPC_EINVAL);
    assert_null(l);
}

/* ---- a watch on a file:// list ---- */

typedef struct seen {
    pthread_mutex_t lock;
    uint64_t version;
    size_t n;
    char first[64];
    int calls;
} seen;

static void on_list(const ftrpc_endpoint_list *list, uint64_t version, void *arg)
{
    seen *s = arg;
    pthread_mutex_lock(&s->lock);
    s->version = version;
    s->n = ftrpc_endpoint_list_size(list);
    snprintf(s->first, sizeof s->first, "%s", s->n ? ftrpc_endpoint_list_addr(list, 0) : "");
    s->calls++;
    pthread_mutex_unlock(&s->lock);
}

static void write_list(const char *dir, const char *path, const char *text)
{
    /* written aside and renamed over, as deploy tools do: a reader never sees half a file */
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s/list.tmp", dir);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0);
}

/* Waits up to 5 s for the watch to have delivered `version`. */
static seen wait_version(seen *s, uint64_t version)
{
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&s->lock);
        seen now = *s;
        pthread_mutex_unlock(&s->lock);
        if (now.version >= version) return now;
        nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
    }
    fail_msg("the watch did not deliver version %llu", (unsigned long long)version);
    return *s;
}

static void watch_delivers_each_change_until_freed(void **state)
{
    char dir[] = "/tmp/ftrpc-naming-public-XXXXXX", path[256], url[300];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/list", dir);
    snprintf(url, sizeof url, "file://%s", path);
    write_list(dir, path, "127.0.0.1:8001\n");

    seen s = {.lock = PTHREAD_MUTEX_INITIALIZER};
    ftrpc_naming_watch *w = NULL;
    assert_int_equal(ftrpc_naming_watch_new("nope://x", NULL, on_list, &s, &w), FTRPC_EADDR);
    assert_int_equal(ftrpc_naming_watch_new(url, NULL, NULL, &s, &w), FTRPC_EINVAL);
    assert_null(w);
    /* no grace: the emptied list below shows at once */
    ftrpc_naming_watch_options o = {.empty_grace_ms = -1};
    assert_int_equal(ftrpc_naming_watch_new(url, &o, on_list, &s, &w), 0);
    seen v = wait_version(&s, 1);
    assert_int_equal(v.version, 1);
    assert_int_equal(v.n, 1);
    assert_string_equal(v.first, "127.0.0.1:8001");

    write_list(dir, path, "127.0.0.1:8002\n127.0.0.1:8001\n");
    v = wait_version(&s, 2);
    assert_int_equal(v.n, 2);
    assert_string_equal(v.first, "127.0.0.1:8002");
    write_list(dir, path, "");
    v = wait_version(&s, 3);
    assert_int_equal(v.n, 0);

    ftrpc_naming_watch_free(w);
    pthread_mutex_lock(&s.lock);
    int calls = s.calls;
    pthread_mutex_unlock(&s.lock);
    write_list(dir, path, "127.0.0.1:8003\n");
    nanosleep(&(struct timespec){.tv_nsec = 300000000}, NULL);
    pthread_mutex_lock(&s.lock);
    assert_int_equal(s.calls, calls);
    pthread_mutex_unlock(&s.lock);
    ftrpc_naming_watch_free(NULL);

    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(list_keeps_order_weights_and_tags_and_drops_duplicates),
        cmocka_unit_test(list_refuses_bad_urls_and_unreadable_registries),
        cmocka_unit_test(watch_delivers_each_change_until_freed),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
