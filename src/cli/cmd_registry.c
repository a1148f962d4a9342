/* `ftrpc registry ls|watch NAMING_URL`: what discovery sees, once or as it changes. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "naming/naming.h"
#include "naming/naming_view.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: ftrpc registry ls NAMING_URL\n"
                 "       ftrpc registry watch NAMING_URL\n\n"
                 "ls prints the endpoints a naming service lists now (one per line: address,\n"
                 "weight, tags); watch prints the list again on every change until interrupted.\n"
                 "NAMING_URL: list://..., file:///path, dir:///folder?service=NAME, etcd://...\n");
}

static void print_list(const ft_endpoint *eps, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf("%s weight=%u%s%s\n", eps[i].addr, eps[i].weight, eps[i].tags[0] ? " tags=" : "",
               eps[i].tags);
}

static void on_change(ft_naming_snapshot *snap, void *arg)
{
    (void)arg;
    printf("-- version %llu: %zu endpoint(s)\n", (unsigned long long)snap->version, snap->n);
    print_list(snap->eps, snap->n);
    fflush(stdout);
}

int ft_cli_registry(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc < 3) {
        usage(stderr);
        return 2;
    }
    if (ft_cli_no_stray_args("registry", argc, argv, 3)) return 2;
    const char *verb = argv[1], *url = argv[2];
    if (!strcmp(verb, "ls")) {
        ft_naming *ns = NULL;
        int rc = ft_naming_open(url, &ns);
        ft_endpoint_list list = {0};
        if (rc == 0) rc = ft_naming_fetch(ns, &list);
        if (rc != 0) {
            fprintf(stderr, "ftrpc registry: cannot read %s: %s\n", url, ftrpc_strerror(rc));
            ft_naming_close(ns);
            return 1;
        }
        print_list(list.v, list.n);
        ft_endpoint_list_fini(&list);
        ft_naming_close(ns);
        return 0;
    }
    if (!strcmp(verb, "watch")) {
        sigset_t sigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGINT);
        sigaddset(&sigs, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &sigs, NULL);
        ft_naming_view *view = NULL;
        /* No grace for "no endpoints": this command shows what the naming service holds, and
         * the last server leaving must show at once, not 30 s later as a client would see it. */
        ft_naming_view_opts vo = {.empty_grace_ms = -1};
        int id, rc = ft_naming_view_open(url, &vo, &view);
        if (rc == 0) rc = ft_naming_view_listen(view, on_change, NULL, &id);
        if (rc != 0) {
            fprintf(stderr, "ftrpc registry: cannot watch %s: %s\n", url, ftrpc_strerror(rc));
            ft_naming_view_free(view);
            return 1;
        }
        int sig;
        sigwait(&sigs, &sig);
        ft_naming_view_unlisten(view, id);
        ft_naming_view_free(view);
        return 0;
    }
    usage(stderr);
    return 2;
}
