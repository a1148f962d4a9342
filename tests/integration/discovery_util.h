/* Helpers shared by the discovery integration tests: registry folders, registered echo-servers,
 * and what a client's cached view holds. Header-only (static inline) because the build links each
 * integration test with harness.c alone. */
#ifndef FTRPC_TEST_DISCOVERY_UTIL_H
#define FTRPC_TEST_DISCOVERY_UTIL_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/client_internal.h"
#include "harness.h"

#define D_SERVICE "example.EchoService"

/* A fresh empty folder under /tmp; path into buf. */
static inline void d_tmpdir(char *buf, size_t len, const char *what)
{
    snprintf(buf, len, "/tmp/ftrpc-%s-XXXXXX", what);
    if (!mkdtemp(buf)) abort();
}

/* Removes every file of a folder, then the folder (one level: registries are flat). */
static inline void d_rmdir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[1024];
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* The folder of the running test and the naming URL its client uses. */
static char d_dir[256], d_url[600];

/* cmocka setup: a fresh registry folder, d_url = its dir:// URL for D_SERVICE. */
static inline int d_setup_registry(void **state)
{
    (void)state;
    d_tmpdir(d_dir, sizeof d_dir, "reg");
    snprintf(d_url, sizeof d_url, "dir://%s?service=" D_SERVICE, d_dir);
    return 0;
}

/* cmocka teardown: removes d_dir. */
static inline int d_teardown(void **state)
{
    (void)state;
    d_rmdir(d_dir);
    return 0;
}

/* Starts an echo-server registered in dir:// `dir` with the given TTL and interval (seconds, as
 * the CLI takes them) and extra args (NULL-terminated, may be NULL). 0 on success. */
static inline int d_server_start(h_server *s, const char *dir, const char *ttl,
                                 const char *interval, const char *const *extra)
{
    char url[600];
    snprintf(url, sizeof url, "dir://%s", dir);
    const char *args[32] = {"--register", url, "--service",  D_SERVICE,
                            "--ttl",      ttl, "--interval", interval};
    int n = 8;
    for (int i = 0; extra && extra[i] && n < 31; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    return h_server_start(s, args);
}

static inline ftrpc_client *d_client(const char *url, const char *lb)
{
    ftrpc_client *c = NULL;
    ftrpc_client_options o = {.lb = lb, .timeout_ms = 2000 * H_VG};
    if (ftrpc_client_new(url, &o, &c) != 0) return NULL;
    return c;
}

/* 1 when the client's cached view lists addr. */
static inline int d_view_has(ftrpc_client *c, const char *addr)
{
    ft_naming_snapshot *s = ft_naming_view_get(c->view);
    int found = 0;
    for (size_t i = 0; s && i < s->n && !found; i++)
        found = !strcmp(s->eps[i].addr, addr);
    ft_naming_snapshot_release(s);
    return found;
}

/* Number of endpoints in the client's current view. */
static inline size_t d_view_size(ftrpc_client *c)
{
    ft_naming_snapshot *s = ft_naming_view_get(c->view);
    size_t n = s ? s->n : 0;
    ft_naming_snapshot_release(s);
    return n;
}

/* Polls (1 ms) until the view's having addr equals `want`, at most timeout_ms. Returns the time
 * it took in ms, or -1 on timeout. */
static inline int64_t d_wait_view(ftrpc_client *c, const char *addr, int want, int timeout_ms)
{
    int64_t t0 = h_now_us(), deadline = h_now_ms() + timeout_ms;
    while (d_view_has(c, addr) != want) {
        if (h_now_ms() >= deadline) return -1;
        usleep(1000);
    }
    return (h_now_us() - t0) / 1000;
}

/* One sync Echo call; returns its code, the answering endpoint into ep (may be NULL). */
static inline int d_call(ftrpc_client *c, char *ep, size_t eplen)
{
    ftrpc_result r;
    int rc = ftrpc_call(c, D_SERVICE, "Echo", NULL, NULL, NULL, &r);
    if (ep) snprintf(ep, eplen, "%s", r.endpoint);
    if (rc != 0) fprintf(stderr, "call failed: %s (%s)\n", ftrpc_err_name(rc), r.error_text);
    ftrpc_result_fini(&r);
    return rc;
}

#endif
