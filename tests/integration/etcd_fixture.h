/* A real etcd (Debian's etcd-server) for the tests that need one: started on free loopback ports
 * with its data in a folder of the test's, restartable on the same ports and data (to play a
 * registry outage), killed at the end. Independent of the etcd:// code under test on purpose: it
 * speaks to etcd with libcurl directly. Header-only (static inline) because the build links each
 * test with harness.c alone. Every wait is bounded. */
#ifndef FTRPC_TEST_ETCD_FIXTURE_H
#define FTRPC_TEST_ETCD_FIXTURE_H

#include <curl/curl.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/strbuf.h"
#include "harness.h"

typedef struct h_etcd {
    char bin[512];  /* the etcd executable */
    char log[600];  /* its stdout and stderr, appended across restarts */
    char data[600]; /* its data folder, kept across restarts */
    int cport, pport;
    pid_t pid; /* 0 when not running */
    /* A member of a cluster (h_etcd_init_member); zero for a lone etcd on 127.0.0.1. */
    char host[32];     /* the address it listens on */
    char name[32];     /* its member name */
    char cluster[512]; /* --initial-cluster: every member's name=peer URL */
    unsigned uid;      /* runs as this uid and gid (its data folder is made theirs) */
} h_etcd;

/* Finds the etcd executable: $FTRPC_ETCD, else etcd on PATH (or /usr/bin, /usr/local/bin). */
static inline int h_etcd_find(h_etcd *e)
{
    const char *env = getenv("FTRPC_ETCD");
    if (env && *env) {
        snprintf(e->bin, sizeof e->bin, "%s", env);
        return access(e->bin, X_OK);
    }
    const char *path = getenv("PATH");
    char buf[4096];
    snprintf(buf, sizeof buf, "%s:/usr/bin:/usr/local/bin", path ? path : "");
    for (char *save = NULL, *d = strtok_r(buf, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(e->bin, sizeof e->bin, "%s/etcd", d);
        if (access(e->bin, X_OK) == 0) return 0;
    }
    return -1;
}

/* Finds etcd and prepares to run it with its log and data in dir (which must exist), on two free
 * ports. Prints why and returns -1 when etcd is not installed. Calls curl_global_init. */
static inline int h_etcd_init(h_etcd *e, const char *dir)
{
    memset(e, 0, sizeof *e);
    if (h_etcd_find(e) != 0) {
        fprintf(stderr, "FAIL: etcd is not installed (no executable etcd at $FTRPC_ETCD or on "
                        "PATH). Install Debian's etcd-server: scripts/install-deps.sh --test\n");
        return -1;
    }
    snprintf(e->log, sizeof e->log, "%s/etcd.log", dir);
    snprintf(e->data, sizeof e->data, "%s/data", dir);
    e->cport = h_free_port();
    do
        e->pport = h_free_port();
    while (e->pport == e->cport);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return 0;
}

/* One member of a cluster: on host (ports 2379 and 2380, as a real member on its own address),
 * named name, in cluster ("n1=http://h1:2380,n2=..."), running as uid (0: as this process), with
 * its log and data in dir (made if missing). Then h_etcd_start as for a lone etcd. */
static inline int h_etcd_init_member(h_etcd *e, const char *dir, const char *host, const char *name,
                                     const char *cluster, unsigned uid)
{
    mkdir(dir, 0755);
    if (h_etcd_init(e, dir) != 0) return -1;
    snprintf(e->host, sizeof e->host, "%s", host);
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->cluster, sizeof e->cluster, "%s", cluster);
    e->cport = 2379;
    e->pport = 2380;
    e->uid = uid;
    mkdir(e->data, 0700);
    if (uid && chown(e->data, uid, uid) != 0) return -1;
    return 0;
}

/* "HOST:PORT" of its client URL. */
static inline void h_etcd_client_addr(const h_etcd *e, char *buf, size_t len)
{
    snprintf(buf, len, "%s:%d", e->host[0] ? e->host : "127.0.0.1", e->cport);
}

static inline size_t h_etcd_collect(char *p, size_t size, size_t n, void *arg)
{
    (void)size;
    return ft_strbuf_append(arg, p, n) == 0 ? n : 0;
}

/* POSTs body (NULL: a GET) to path on the test etcd; its 200 answer (malloc'ed) or NULL. */
static inline char *h_etcd_post(const h_etcd *e, const char *path, const char *body)
{
    CURL *c = curl_easy_init();
    ft_strbuf b;
    ft_strbuf_init(&b, 1 << 20);
    char url[128], addr[64];
    h_etcd_client_addr(e, addr, sizeof addr);
    snprintf(url, sizeof url, "http://%s%s", addr, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 1000L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 300L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_etcd_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    char *out = NULL;
    if (rc == CURLE_OK && code == 200) out = strdup(ft_strbuf_cstr(&b));
    ft_strbuf_fini(&b);
    return out;
}

static inline int h_etcd_healthy(const h_etcd *e)
{
    char *r = h_etcd_post(e, "/health", NULL);
    int ok = r && strstr(r, "\"health\":\"true\"") != NULL;
    free(r);
    return ok;
}

/* Starts etcd (the same ports and data folder every time) without waiting for it: the members
 * of a cluster serve only once a quorum of them runs. 0 or -1. */
static inline int h_etcd_spawn(h_etcd *e)
{
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(e->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        /* before PR_SET_PDEATHSIG, which a change of credentials clears */
        if (e->uid && (setgroups(0, NULL) != 0 || setgid(e->uid) != 0 || setuid(e->uid) != 0))
            _exit(126);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        const char *host = e->host[0] ? e->host : "127.0.0.1", *name = e->name[0] ? e->name : "t";
        char curl_[64], purl[64], cluster[600];
        snprintf(curl_, sizeof curl_, "http://%s:%d", host, e->cport);
        snprintf(purl, sizeof purl, "http://%s:%d", host, e->pport);
        if (e->cluster[0])
            snprintf(cluster, sizeof cluster, "%s", e->cluster);
        else
            snprintf(cluster, sizeof cluster, "%s=%s", name, purl);
        execl(e->bin, e->bin, "--name", name, "--data-dir", e->data, "--listen-client-urls", curl_,
              "--advertise-client-urls", curl_, "--listen-peer-urls", purl,
              "--initial-advertise-peer-urls", purl, "--initial-cluster", cluster,
              "--initial-cluster-state", "new", "--initial-cluster-token", "ftrpc-test",
              (char *)NULL);
        _exit(127);
    }
    e->pid = pid;
    return 0;
}

/* Waits until a spawned etcd serves (a member: until its cluster has a leader), at most 20 s.
 * 0, or -1 if it exited or never became healthy. */
static inline int h_etcd_wait_healthy(h_etcd *e)
{
    pid_t pid = e->pid;
    int64_t deadline = h_now_ms() + 20000;
    while (h_now_ms() < deadline) {
        if (h_etcd_healthy(e)) return 0;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            e->pid = 0;
            return -1;
        }
        h_sleep_ms(50);
    }
    return -1;
}

/* h_etcd_spawn, then h_etcd_wait_healthy. */
static inline int h_etcd_start(h_etcd *e)
{
    return h_etcd_spawn(e) != 0 ? -1 : h_etcd_wait_healthy(e);
}

/* SIGKILL, then reaps it. A no-op when it is not running. */
static inline void h_etcd_kill(h_etcd *e)
{
    if (e->pid <= 0) return;
    kill(e->pid, SIGKILL);
    waitpid(e->pid, NULL, 0);
    e->pid = 0;
}

/* The last 30 lines of etcd's log, on stderr (after a failure). */
static inline void h_etcd_dump_log(const h_etcd *e)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "tail -n 30 '%s' >&2", e->log);
    if (system(cmd) != 0) fprintf(stderr, "(no etcd log)\n");
}

#endif
