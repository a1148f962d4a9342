/* `ftrpc registry ls|watch NAMING_URL`: what discovery sees, once or as it changes. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <ftrpc/ftrpc.h>

#include "cli.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: ftrpc registry ls NAMING_URL\n"
                 "       ftrpc registry watch NAMING_URL\n\n"
                 "ls prints the endpoints a naming service lists now (one per line: address,\n"
                 "weight, tags, instance id); watch prints the list again on every change until\n"
                 "interrupted.\n"
                 "NAMING_URL: list://..., file:///path, dir:///folder?service=NAME, etcd://...\n");
}

static void print_list(const ftrpc_endpoint_list *list)
{
    for (size_t i = 0; i < ftrpc_endpoint_list_size(list); i++) {
        const char *tags = ftrpc_endpoint_list_tags(list, i);
        const char *id = ftrpc_endpoint_list_id(list, i);
        printf("%s weight=%u%s%s%s%s\n", ftrpc_endpoint_list_addr(list, i),
               (unsigned)ftrpc_endpoint_list_weight(list, i), tags[0] ? " tags=" : "", tags,
               id[0] ? " id=" : "", id);
    }
}

static void on_change(const ftrpc_endpoint_list *list, uint64_t version, void *arg)
{
    (void)arg;
    printf("-- version %llu: %zu endpoint(s)\n", (unsigned long long)version,
           ftrpc_endpoint_list_size(list));
    print_list(list);
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
        ftrpc_endpoint_list *list;
        int rc = ftrpc_naming_list(url, &list);
        if (rc != 0) {
            fprintf(stderr, "ftrpc registry: cannot read %s: %s\n", url, ftrpc_strerror(rc));
            return 1;
        }
        print_list(list);
        ftrpc_endpoint_list_free(list);
        return 0;
    }
    if (!strcmp(verb, "watch")) {
        sigset_t sigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGINT);
        sigaddset(&sigs, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &sigs, NULL);
        ftrpc_naming_watch *watch;
        /* No grace for "no endpoints": this command shows what the naming service holds, and
         * the last server leaving must show at once, not 30 s later as a client would see it. */
        ftrpc_naming_watch_options wo = {.empty_grace_ms = -1};
        int rc = ftrpc_naming_watch_new(url, &wo, on_change, NULL, &watch);
        if (rc != 0) {
            fprintf(stderr, "ftrpc registry: cannot watch %s: %s\n", url, ftrpc_strerror(rc));
            return 1;
        }
        int sig;
        sigwait(&sigs, &sig);
        ftrpc_naming_watch_free(watch);
        return 0;
    }
    usage(stderr);
    return 2;
}
