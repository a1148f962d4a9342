/* `ftrpc demo --quick` shows what it claims, with its own figures: failover keeps more calls than
 * failfast when a node dies, backup requests cut the p99 a slow node causes, the fallback answers
 * every call of a total outage; it writes its HTML report; and no echo server it started survives
 * it, neither after a normal end nor after Ctrl-C (SIGINT) mid-run.
 *
 * Each run gets its own TMPDIR under the scratch folder, so the demo's registry path is unique and
 * a surviving child is found by that path in /proc/PID/cmdline, whoever its parent is now. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static const char *scratch(void)
{
    const char *s = getenv("FTRPC_SCRATCH");
    if (!s || !*s) s = "/tmp";
    mkdir(s, 0755);
    return s;
}

/* A fresh TMPDIR for one demo run, exported so the demo's children carry it in their argv. */
static void fresh_tmpdir(char *buf, size_t len, const char *tag)
{
    snprintf(buf, len, "%s/demo-%s-%d", scratch(), tag, (int)getpid());
    mkdir(buf, 0755);
    setenv("TMPDIR", buf, 1);
}

/* Processes whose command line mentions `needle` (the demo's unique folder). */
static int processes_mentioning(const char *needle)
{
    DIR *proc = opendir("/proc");
    int n = 0;
    struct dirent *e;
    while (proc && (e = readdir(proc)) != NULL) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        char path[300], cmd[4096];
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        ssize_t len = read(fd, cmd, sizeof cmd - 1);
        close(fd);
        if (len <= 0) continue;
        for (ssize_t i = 0; i < len; i++)
            if (cmd[i] == '\0') cmd[i] = ' ';
        cmd[len] = '\0';
        if (strstr(cmd, needle) && strstr(cmd, "echo-server")) n++;
    }
    if (proc) closedir(proc);
    return n;
}

static json_object *row(json_object *root, const char *scenario, const char *policy_prefix)
{
    json_object *rows;
    if (!json_object_object_get_ex(root, "scenarios", &rows)) return NULL;
    for (size_t i = 0; i < json_object_array_length(rows); i++) {
        json_object *r = json_object_array_get_idx(rows, i), *s, *p;
        if (json_object_object_get_ex(r, "scenario", &s) &&
            json_object_object_get_ex(r, "policy", &p) &&
            !strcmp(json_object_get_string(s), scenario) &&
            !strncmp(json_object_get_string(p), policy_prefix, strlen(policy_prefix)))
            return r;
    }
    return NULL;
}

static double num(json_object *r, const char *key)
{
    json_object *v;
    assert_non_null(r);
    assert_true(json_object_object_get_ex(r, key, &v));
    return json_object_get_double(v);
}

static void quick_demo_shows_each_policy_winning_and_leaves_no_process(void **state)
{
    (void)state;
    char tmp[512], json[600], report[600];
    fresh_tmpdir(tmp, sizeof tmp, "quick");
    snprintf(json, sizeof json, "%s/demo.json", tmp);
    snprintf(report, sizeof report, "%s/demo.html", tmp);
    char *out = NULL, *err = NULL;
    const char *args[] = {"demo", "--quick", "--json", json, "--report", report, NULL};
    int64_t t0 = h_now_ms();
    int rc = h_cli_run(args, 120000, &out, &err);
    int64_t took = h_now_ms() - t0;
    if (rc != 0) fprintf(stderr, "demo exit %d\nstdout:\n%s\nstderr:\n%s\n", rc, out, err);
    assert_int_equal(rc, 0);
    print_message("ftrpc demo --quick took %lld ms\n%s", (long long)took, out);
    assert_non_null(strstr(out, "success"));
    assert_non_null(strstr(out, report));

    json_object *root = json_object_from_file(json);
    assert_non_null(root);

    /* a node dies mid-run: failover keeps more calls than failfast */
    double ff = num(row(root, "node killed", "failfast"), "success_rate");
    double fo = num(row(root, "node killed", "failover"), "success_rate");
    assert_true(fo > ff);
    assert_true(fo >= 0.999);

    /* 7 of 10 nodes killed mid-run: failover loses no call (a refused connect suspends its node
     * past the ejection cap), and every call is accounted for */
    json_object *seven = row(root, "7 of 10 killed", "failover");
    assert_true(num(seven, "success_rate") >= 0.999);
    assert_true(num(seven, "calls") == num(row(root, "7 of 10 killed", "failfast"), "calls"));

    /* a node slow on 5% of its calls: a backup at the healthy p95 cuts the p99 */
    double slow_p99 = num(row(root, "slow node", "no backup"), "p99_ms");
    double backup_p99 = num(row(root, "slow node", "backup at"), "p99_ms");
    assert_true(slow_p99 >= 40);
    assert_true(backup_p99 < slow_p99);
    assert_true(num(row(root, "slow node", "backup at"), "backups") > 0);

    /* total outage: nothing succeeds without the fallback, everything with it */
    assert_true(num(row(root, "total outage", "no fallback"), "success_rate") == 0);
    json_object *fb = row(root, "total outage", "fallback");
    assert_true(num(fb, "success_rate") == 1.0);
    assert_true(num(fb, "fallbacks") == num(fb, "calls"));

    /* servers that queue work: tied requests run fewer copies than backups, which run more than
     * the one of a call without them */
    double none = num(row(root, "queued servers", "no backup"), "executed_per_call");
    double backups = num(row(root, "queued servers", "backup at"), "executed_per_call");
    double tied = num(row(root, "queued servers", "tied"), "executed_per_call");
    print_message(
        "queued servers, handler runs per call: no backup %.3f, backups %.3f, tied %.3f\n", none,
        backups, tied);
    assert_true(none >= 0.999 && none <= 1.001);
    assert_true(tied < backups);

    /* the failed failfast calls are counted once each: ok + failures = calls */
    json_object *ffr = row(root, "node killed", "failfast");
    assert_true(num(ffr, "ok") <= num(ffr, "calls"));

    /* every child recorded is gone (reaped: no /proc entry, or a pid reused by someone else) */
    json_object *pids;
    assert_true(json_object_object_get_ex(root, "child_pids", &pids));
    assert_true(json_object_array_length(pids) >= 3);
    for (size_t i = 0; i < json_object_array_length(pids); i++) {
        int pid = json_object_get_int(json_object_array_get_idx(pids, i));
        char path[64], cmd[512] = "";
        snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
        FILE *f = fopen(path, "r");
        if (f) {
            size_t n = fread(cmd, 1, sizeof cmd - 1, f);
            for (size_t k = 0; k < n; k++)
                if (!cmd[k]) cmd[k] = ' ';
            cmd[n] = '\0';
            fclose(f);
        }
        assert_null(strstr(cmd, tmp));
    }
    assert_int_equal(processes_mentioning(tmp), 0);

    /* the report is a self-contained page with one plot per scenario */
    FILE *f = fopen(report, "r");
    assert_non_null(f);
    char *html = calloc(1, 1 << 20);
    size_t n = fread(html, 1, (1 << 20) - 1, f);
    fclose(f);
    assert_true(n > 0);
    int svgs = 0;
    for (const char *p = html; (p = strstr(p, "<svg")) != NULL; p++)
        svgs++;
    assert_true(svgs >= 7);
    assert_null(strstr(html, "<script"));
    free(html);
    json_object_put(root);
    free(out);
    free(err);
}

static void interrupted_demo_leaves_no_process(void **state)
{
    (void)state;
    char tmp[512];
    fresh_tmpdir(tmp, sizeof tmp, "sigint");
    const char *cli = getenv("FTRPC_CLI");
    assert_non_null(cli);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, STDOUT_FILENO);
        dup2(devnull, STDERR_FILENO);
        execl(cli, cli, "demo", "--quick", (char *)NULL);
        _exit(127);
    }
    /* wait until its cluster is up, then interrupt it as Ctrl-C would */
    int64_t deadline = h_now_ms() + 20000;
    while (processes_mentioning(tmp) == 0 && h_now_ms() < deadline) {
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    assert_true(processes_mentioning(tmp) > 0);
    kill(pid, SIGINT);
    int status = 0;
    deadline = h_now_ms() + 10000;
    pid_t w;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && h_now_ms() < deadline) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    assert_int_equal(w, pid);
    /* the children die with it; give the kernel a moment to deliver SIGKILL and reap them */
    deadline = h_now_ms() + 5000;
    while (processes_mentioning(tmp) > 0 && h_now_ms() < deadline) {
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(processes_mentioning(tmp), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(quick_demo_shows_each_policy_winning_and_leaves_no_process),
        cmocka_unit_test(interrupted_demo_leaves_no_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
