/* dir:// end to end on a real folder: the registrar writes, refreshes and removes its entry,
 * refuses interval >= TTL, rides out a registry outage and re-registers; a watching view sees a new
 * entry within a second through inotify (with a rescan period far longer than that); a forked
 * child that registers and dies without deregistering is dropped after its TTL and reaped later.
 * TTLs are a few hundred ms and every wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "ftrpc/log.h"
#include "naming/dir_entry.h"
#include "naming/naming_view.h"

static atomic_int error_lines;
static char last_error[1024];
static void sink(ftrpc_log_level level, const char *msg, void *arg)
{
    if (level == FTRPC_LOG_ERROR) {
        atomic_fetch_add(&error_lines, 1);
        snprintf(last_error, sizeof last_error, "%s", msg);
    }
}

static int64_t mono_ms(void)
{
    return ft_now_ns() / FT_NS_PER_MS;
}

typedef struct {
    char dir[64];
    char url[256];
} fixture;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/ftrpc-dir-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->url, sizeof f->url, "dir://%s/reg?service=example.EchoService", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static bool read_entry(const fixture *f, const char *addr, ft_dir_entry *e)
{
    char name[256], path[512], buf[FT_DIR_ENTRY_MAX + 1];
    assert_int_equal(ft_dir_entry_filename("example.EchoService", addr, name, sizeof name), 0);
    snprintf(path, sizeof path, "%s/reg/%s", f->dir, name);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return false;
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    return n > 0 && ft_dir_entry_parse(buf, (size_t)n, e, NULL) == 0;
}

static void interval_not_below_ttl_is_refused(void **state)
{
    fixture *f = *state;
    static const struct {
        int64_t ttl, interval;
    } bad[] = {{300, 300}, {300, 301}, {0, 90000}, {100, 0}, {-5, 1}, {300, -1}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ft_registrar_opts o = {.url = f->url,
                               .addr = "127.0.0.1:8000",
                               .register_ttl_ms = bad[i].ttl,
                               .register_interval_ms = bad[i].interval};
        ft_registrar *r = NULL;
        atomic_store(&error_lines, 0);
        assert_int_equal(ft_registrar_start(&o, &r), FTRPC_EINVAL);
        assert_null(r);
        assert_int_equal(atomic_load(&error_lines), 1);
        assert_non_null(strstr(last_error, "register_interval_ms"));
    }
}

static void bad_registrations_are_refused(void **state)
{
    fixture *f = *state;
    char nosvc[300];
    snprintf(nosvc, sizeof nosvc, "dir://%s/reg", f->dir);
    static const char *const bad_addr[] = {NULL, "", "nohost", "h:0"};
    for (size_t i = 0; i < sizeof bad_addr / sizeof bad_addr[0]; i++) {
        ft_registrar_opts o = {.url = f->url, .addr = bad_addr[i]};
        ft_registrar *r = NULL;
        assert_int_equal(ft_registrar_start(&o, &r), FTRPC_EINVAL);
    }
    ft_registrar *r = NULL;
    ft_registrar_opts o = {.url = f->url, .addr = "h:1", .tags = "a||b"};
    assert_int_equal(ft_registrar_start(&o, &r), FTRPC_EINVAL);
    o = (ft_registrar_opts){.url = f->url, .addr = "h:1", .weight = 70000};
    assert_int_equal(ft_registrar_start(&o, &r), FTRPC_EINVAL);
    o = (ft_registrar_opts){.url = "list://h:1", .addr = "h:1"};
    assert_int_equal(ft_registrar_start(&o, &r), FTRPC_EADDR);
    o = (ft_registrar_opts){.url = nosvc, .addr = "h:1"};
    assert_int_equal(ft_registrar_start(&o, &r), FTRPC_EADDR);
    o = (ft_registrar_opts){.url = "dir://relative?service=s", .addr = "h:1"};
    assert_int_equal(ft_registrar_start(&o, &r), FTRPC_EADDR);
    assert_null(r);
    ft_registrar_stop(NULL);
}

static void registrar_writes_refreshes_and_removes(void **state)
{
    fixture *f = *state;
    ft_registrar_opts o = {.url = f->url,
                           .addr = "127.0.0.1:8000",
                           .weight = 40,
                           .tags = "blue|v2",
                           .register_ttl_ms = 400,
                           .register_interval_ms = 50};
    ft_registrar *r;
    assert_int_equal(ft_registrar_start(&o, &r), 0);
    assert_int_equal(ft_registrar_status(r), 0);
    ft_dir_entry e;
    assert_true(read_entry(f, "127.0.0.1:8000", &e)); /* written before start returned */
    assert_string_equal(e.service, "example.EchoService");
    assert_string_equal(e.ep.addr, "127.0.0.1:8000");
    assert_int_equal(e.ep.weight, 40);
    assert_string_equal(e.ep.tags, "blue|v2");
    assert_int_equal(e.pid, getpid());
    assert_int_equal(e.ttl_ms, 400);
    int64_t first = e.refreshed_ms;
    int64_t wall0 = ft_dir_wall_ms();
    assert_true(first <= wall0 && first > wall0 - 1000);

    /* refreshed within a few intervals; the registrar renames the entry into place before it
     * counts the write, so the count is waited for too (a loaded machine once showed the new entry
     * with ok still 1) */
    int64_t end = mono_ms() + 2000;
    bool refreshed = false;
    uint64_t ok = 0, failed = 0;
    while (!(refreshed && ok >= 2) && mono_ms() < end) {
        usleep(10000);
        refreshed = read_entry(f, "127.0.0.1:8000", &e) && e.refreshed_ms > first;
        ft_registrar_counts(r, &ok, &failed);
    }
    assert_true(refreshed);
    assert_true(ok >= 2);
    assert_int_equal(failed, 0);

    /* no temp files left behind */
    char path[300];
    snprintf(path, sizeof path, "%s/reg", f->dir);
    ft_endpoint_list l = {0};
    assert_int_equal(ft_dir_scan(path, "example.EchoService", ft_dir_wall_ms(), false, &l), 0);
    assert_int_equal(l.n, 1);
    ft_endpoint_list_fini(&l);

    ft_registrar_stop(r);
    assert_false(read_entry(f, "127.0.0.1:8000", &e));

    /* with go-micro's defaults (30 s interval), stop still returns at once */
    o.register_ttl_ms = o.register_interval_ms = 0;
    assert_int_equal(ft_registrar_start(&o, &r), 0);
    usleep(20000); /* let the thread reach its wait */
    int64_t t0 = mono_ms();
    ft_registrar_stop(r);
    assert_true(mono_ms() - t0 < 5000);
    assert_false(read_entry(f, "127.0.0.1:8000", &e));
}

static void registrar_survives_outage_and_reregisters(void **state)
{
    fixture *f = *state;
    char reg[300];
    snprintf(reg, sizeof reg, "%s/reg", f->dir);
    /* the registry path is a regular file: nothing can be written under it */
    FILE *blocker = fopen(reg, "w");
    assert_non_null(blocker);
    fclose(blocker);
    ft_registrar_opts o = {.url = f->url,
                           .addr = "127.0.0.1:8001",
                           .register_ttl_ms = 400,
                           .register_interval_ms = 40};
    ft_registrar *r;
    atomic_store(&error_lines, 0);
    assert_int_equal(ft_registrar_start(&o, &r), 0); /* the server goes on */
    assert_int_not_equal(ft_registrar_status(r), 0);
    assert_true(atomic_load(&error_lines) >= 1);
    uint64_t ok, failed;
    int64_t end = mono_ms() + 5000;
    do {
        usleep(10000);
        ft_registrar_counts(r, &ok, &failed);
    } while (failed < 3 && mono_ms() < end);
    assert_int_equal(ok, 0);
    assert_true(failed >= 3);                    /* retried every interval */
    assert_true(atomic_load(&error_lines) <= 2); /* the same failure is not logged every time */

    /* recovery: the folder is back (the registrar creates it) and the entry reappears */
    assert_int_equal(unlink(reg), 0);
    /* the registrar renames the entry into place, then records its status: wait for both (TSan's
     * slowdown on a loaded machine once showed the entry with the status still FTRPC_ESYS) */
    end = mono_ms() + 2000;
    ft_dir_entry e;
    while ((!read_entry(f, "127.0.0.1:8001", &e) || ft_registrar_status(r) != 0) && mono_ms() < end)
        usleep(10000);
    assert_true(read_entry(f, "127.0.0.1:8001", &e));
    assert_int_equal(ft_registrar_status(r), 0);

    /* the registry is wiped while registered: rewritten at the next refresh */
    char name[256], path[600];
    ft_dir_entry_filename("example.EchoService", "127.0.0.1:8001", name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", reg, name);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(reg), 0);
    end = mono_ms() + 2000;
    while (!read_entry(f, "127.0.0.1:8001", &e) && mono_ms() < end)
        usleep(10000);
    assert_true(read_entry(f, "127.0.0.1:8001", &e));
    ft_registrar_stop(r);
    assert_false(read_entry(f, "127.0.0.1:8001", &e));
}

static void stop_leaves_a_successors_entry_alone(void **state)
{
    fixture *f = *state;
    ft_registrar_opts o = {.url = f->url,
                           .addr = "127.0.0.1:8006",
                           .register_ttl_ms = 5000,
                           .register_interval_ms = 1000};
    ft_registrar *r;
    assert_int_equal(ft_registrar_start(&o, &r), 0);
    ft_dir_entry e;
    assert_true(read_entry(f, "127.0.0.1:8006", &e));
    /* a successor on the same address overwrites the entry with its own pid */
    e.pid = getpid() + 1;
    char buf[FT_DIR_ENTRY_MAX + 1], name[256], path[600];
    int n = ft_dir_entry_format(&e, buf, sizeof buf);
    assert_true(n > 0);
    ft_dir_entry_filename("example.EchoService", "127.0.0.1:8006", name, sizeof name);
    snprintf(path, sizeof path, "%s/reg/%s", f->dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fwrite(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    ft_registrar_stop(r);
    assert_true(read_entry(f, "127.0.0.1:8006", &e));
    assert_int_equal(e.pid, getpid() + 1);
}

/* Waits until the view holds n endpoints (and `addr` among them when not NULL). */
static bool view_wait(ft_naming_view *v, size_t n, const char *addr, int64_t ms)
{
    int64_t end = mono_ms() + ms;
    for (;;) {
        ft_naming_snapshot *s = ft_naming_view_get(v);
        bool ok = s->n == n;
        if (ok && addr) {
            ok = false;
            for (size_t i = 0; i < s->n; i++)
                ok = ok || strcmp(s->eps[i].addr, addr) == 0;
        }
        ft_naming_snapshot_release(s);
        if (ok) return true;
        if (mono_ms() >= end) return false;
        usleep(5000);
    }
}

static void watch_sees_new_entry_within_a_second(void **state)
{
    fixture *f = *state;
    /* rescan once a minute: anything seen within a second came through inotify */
    ft_naming_view_opts vo = {.rescan_ms = 60000, .empty_grace_ms = -1};
    ft_naming_view *v;
    assert_int_equal(ft_naming_view_open(f->url, &vo, &v), 0);
    /* the folder does not exist yet: an error, the view is not ready */
    assert_int_equal(ft_naming_view_wait_ready(v, 50), FTRPC_ERPCTIMEDOUT);
    ft_naming_view_free(v);

    char reg[300];
    snprintf(reg, sizeof reg, "%s/reg", f->dir);
    assert_int_equal(mkdir(reg, 0755), 0);
    assert_int_equal(ft_naming_view_open(f->url, &vo, &v), 0);
    assert_int_equal(ft_naming_view_wait_ready(v, 1000), 0);
    assert_true(view_wait(v, 0, NULL, 10));

    ft_registrar_opts o = {.url = f->url,
                           .addr = "127.0.0.1:8002",
                           .tags = "x",
                           .register_ttl_ms = 5000,
                           .register_interval_ms = 1000};
    ft_registrar *r1, *r2;
    assert_int_equal(ft_registrar_start(&o, &r1), 0);
    assert_true(view_wait(v, 1, "127.0.0.1:8002", 1000));
    o.addr = "127.0.0.1:8003";
    assert_int_equal(ft_registrar_start(&o, &r2), 0);
    assert_true(view_wait(v, 2, "127.0.0.1:8003", 1000));
    /* another service in the same folder is not ours */
    char other[300];
    snprintf(other, sizeof other, "dir://%s/reg?service=other.Svc", f->dir);
    ft_registrar_opts oo = {.url = other, .addr = "127.0.0.1:9999"};
    ft_registrar *r3;
    assert_int_equal(ft_registrar_start(&oo, &r3), 0);
    /* a clean stop is seen at once too */
    ft_registrar_stop(r1);
    assert_true(view_wait(v, 1, "127.0.0.1:8003", 1000));
    ft_registrar_stop(r2);
    ft_registrar_stop(r3);
    assert_true(view_wait(v, 0, NULL, 1000));
    ft_naming_view_free(v);
}

/* A child registers and dies without deregistering: its entry must be ignored after its TTL
 * (seen through the rescan, since no file event happens) and deleted after 2 x TTL. */
/* The "server" child is forked at the start of main, while the process has one thread (forking
 * a process with threads, such as the watcher, is unsafe and ThreadSanitizer refuses it). It waits
 * for a registry URL on a pipe, registers, refreshes for a while, then _exit()s without
 * deregistering: a crash. */
static pid_t child_pid = -1;
static int to_child = -1, from_child = -1;

static void child_main(int in, int out)
{
    char url[256];
    ssize_t n = read(in, url, sizeof url - 1);
    if (n <= 0) _exit(0); /* the test did not run */
    url[n] = '\0';
    ft_registrar_opts o = {
        .url = url, .addr = "127.0.0.1:8004", .register_ttl_ms = 400, .register_interval_ms = 100};
    ft_registrar *r;
    char c = ft_registrar_start(&o, &r) == 0 && ft_registrar_status(r) == 0 ? 'y' : 'n';
    usleep(250000); /* a couple of refreshes */
    if (write(out, &c, 1) != 1) _exit(2);
    _exit(0); /* crash: no ft_registrar_stop */
}

static void fork_child(void)
{
    int a[2], b[2];
    if (pipe(a) != 0 || pipe(b) != 0) abort();
    child_pid = fork();
    if (child_pid < 0) abort();
    if (child_pid == 0) {
        close(a[1]);
        close(b[0]);
        child_main(a[0], b[1]);
    }
    close(a[0]);
    close(b[1]);
    to_child = a[1];
    from_child = b[0];
}

static void crashed_server_expires_after_ttl(void **state)
{
    fixture *f = *state;
    assert_true(child_pid > 0);
    pid_t pid = child_pid;
    assert_int_equal(write(to_child, f->url, strlen(f->url)), (ssize_t)strlen(f->url));
    char c = 0;
    assert_int_equal(read(from_child, &c, 1), 1);
    assert_int_equal(c, 'y');
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    child_pid = -1;
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    ft_dir_entry e;
    assert_true(read_entry(f, "127.0.0.1:8004", &e)); /* left behind */
    assert_int_equal(e.pid, pid);

    ft_naming_view_opts vo = {.rescan_ms = 50, .empty_grace_ms = -1};
    ft_naming_view *v;
    assert_int_equal(ft_naming_view_open(f->url, &vo, &v), 0);
    assert_int_equal(ft_naming_view_wait_ready(v, 1000), 0);
    /* still listed while within its TTL (checked only when the machine was quick enough for
     * "within" to be certain: the entry's last refresh is well under a TTL old) */
    ft_dir_entry last;
    if (read_entry(f, "127.0.0.1:8004", &last) && ft_dir_wall_ms() - last.refreshed_ms < 200)
        assert_true(view_wait(v, 1, "127.0.0.1:8004", 0));
    /* dropped after the TTL (400 ms since its last refresh), not before it is due */
    assert_true(view_wait(v, 0, NULL, 5000));
    /* reaped once dead for 2 x TTL */
    int64_t end = mono_ms() + 2000;
    while (read_entry(f, "127.0.0.1:8004", &e) && mono_ms() < end)
        usleep(10000);
    assert_false(read_entry(f, "127.0.0.1:8004", &e));
    ft_naming_view_free(v);
}

static int thread_count(void)
{
    FILE *fp = fopen("/proc/self/status", "r");
    assert_non_null(fp);
    char line[256];
    int n = -1;
    while (fgets(line, sizeof line, fp))
        if (sscanf(line, "Threads: %d", &n) == 1) break;
    fclose(fp);
    return n;
}

/* Many views, one watcher thread: each still sees its own service's changes promptly, and each
 * stops promptly and independently. */
static void views_share_one_watcher_thread(void **state)
{
    fixture *f = *state;
    enum { N = 12 };
    ft_naming_view *v[N];
    ft_naming_view_opts vo = {.rescan_ms = 60000, .empty_grace_ms = -1};
    /* make sure the watcher thread exists before counting */
    ft_naming_view *first;
    assert_int_equal(ft_naming_view_open(f->url, &vo, &first), 0);
    int before = thread_count();
    for (int i = 0; i < N; i++) {
        char url[300];
        snprintf(url, sizeof url, "dir://%s/reg?service=svc%d", f->dir, i);
        assert_int_equal(ft_naming_view_open(url, &vo, &v[i]), 0);
    }
    assert_int_equal(thread_count(), before);
    char url[300];
    snprintf(url, sizeof url, "dir://%s/reg?service=svc7", f->dir);
    ft_registrar_opts o = {.url = url,
                           .addr = "127.0.0.1:8007",
                           .register_ttl_ms = 5000,
                           .register_interval_ms = 1000};
    ft_registrar *r;
    assert_int_equal(ft_registrar_start(&o, &r), 0);
    assert_true(view_wait(v[7], 1, "127.0.0.1:8007", 1000));
    assert_true(view_wait(v[6], 0, NULL, 10));
    int64_t t0 = mono_ms();
    for (int i = 0; i < N; i += 2) /* stop half, out of order */
        ft_naming_view_free(v[i]);
    ft_registrar_stop(r);
    assert_true(view_wait(v[7], 0, NULL, 1000));
    for (int i = 1; i < N; i += 2)
        ft_naming_view_free(v[i]);
    ft_naming_view_free(first);
    assert_true(mono_ms() - t0 < 5000); /* rescans are a minute apart: stops did not wait */
}

/* The registry folder goes away (an outage): the view keeps its list and says it is stale; the
 * folder comes back: the watch re-arms through the parent and the view is fresh again. */
static void view_keeps_list_through_registry_outage(void **state)
{
    fixture *f = *state;
    ft_registrar_opts o = {.url = f->url,
                           .addr = "127.0.0.1:8008",
                           .register_ttl_ms = 20000,
                           .register_interval_ms = 10000}; /* no refresh during the test */
    ft_registrar *r;
    assert_int_equal(ft_registrar_start(&o, &r), 0);
    ft_naming_view_opts vo = {.rescan_ms = 60000};
    ft_naming_view *v;
    assert_int_equal(ft_naming_view_open(f->url, &vo, &v), 0);
    assert_true(view_wait(v, 1, "127.0.0.1:8008", 1000));

    char reg[300], off[300];
    snprintf(reg, sizeof reg, "%s/reg", f->dir);
    snprintf(off, sizeof off, "%s/reg.off", f->dir);
    assert_int_equal(rename(reg, off), 0);
    ft_naming_view_stats st = {0};
    int64_t end = mono_ms() + 1000;
    do {
        usleep(5000);
        ft_naming_view_stats_get(v, &st);
    } while (!st.stale && mono_ms() < end);
    assert_true(st.stale);
    assert_true(view_wait(v, 1, "127.0.0.1:8008", 0)); /* still serving */

    assert_int_equal(rename(off, reg), 0);
    end = mono_ms() + 1000;
    do {
        usleep(5000);
        ft_naming_view_stats_get(v, &st);
    } while (st.stale && mono_ms() < end);
    assert_false(st.stale);
    assert_true(view_wait(v, 1, "127.0.0.1:8008", 0));
    ft_naming_view_free(v);
    ft_registrar_stop(r);
}

static void garbage_entry_never_breaks_the_watch(void **state)
{
    fixture *f = *state;
    char reg[300], path[600];
    snprintf(reg, sizeof reg, "%s/reg", f->dir);
    assert_int_equal(mkdir(reg, 0755), 0);
    ft_registrar_opts o = {.url = f->url,
                           .addr = "127.0.0.1:8005",
                           .register_ttl_ms = 5000,
                           .register_interval_ms = 1000};
    ft_registrar *r;
    assert_int_equal(ft_registrar_start(&o, &r), 0);
    ft_naming_view_opts vo = {.rescan_ms = 60000};
    ft_naming_view *v;
    assert_int_equal(ft_naming_view_open(f->url, &vo, &v), 0);
    assert_true(view_wait(v, 1, "127.0.0.1:8005", 1000));
    snprintf(path, sizeof path, "%s/example.EchoService@junk.entry", reg);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("ftrpc-dir-entry 1\nservice=example.EchoService\naddr=\n", fp);
    fclose(fp);
    usleep(100000);
    assert_true(view_wait(v, 1, "127.0.0.1:8005", 10));
    ft_naming_view_stats st;
    ft_naming_view_stats_get(v, &st);
    assert_false(st.stale); /* one bad file is not a registry error */
    ft_naming_view_free(v);
    ft_registrar_stop(r);
}

int main(void)
{
    fork_child();
    ftrpc_log_set_sink(sink, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(interval_not_below_ttl_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_registrations_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(registrar_writes_refreshes_and_removes, setup, teardown),
        cmocka_unit_test_setup_teardown(registrar_survives_outage_and_reregisters, setup, teardown),
        cmocka_unit_test_setup_teardown(watch_sees_new_entry_within_a_second, setup, teardown),
        cmocka_unit_test_setup_teardown(crashed_server_expires_after_ttl, setup, teardown),
        cmocka_unit_test_setup_teardown(garbage_entry_never_breaks_the_watch, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_leaves_a_successors_entry_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(views_share_one_watcher_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(view_keeps_list_through_registry_outage, setup, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    close(to_child); /* a child still waiting reads EOF and exits */
    if (child_pid > 0) waitpid(child_pid, NULL, 0);
    return failed;
}
