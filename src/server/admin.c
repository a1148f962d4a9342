/* ftrpc_admin: the builtin pages on a port of their own, for a process that serves no methods (a
 * client-only process that still wants /metrics, /endpoints and the console). It is an ftrpc_server
 * with no methods: the same sniffing, limits and pages, and nothing new to get wrong. */
#include <stdlib.h>

#include "ftrpc/server.h"

struct ftrpc_admin {
    ftrpc_server *server;
};

int ftrpc_admin_new_sized(const char *listen_addr, const ftrpc_server_options *opts,
                          size_t opts_size, ftrpc_admin **out)
{
    if (!listen_addr || !out) return FTRPC_EINVAL;
    ftrpc_admin *a = calloc(1, sizeof *a);
    if (!a) return FTRPC_ENOMEM;
    int rc = ftrpc_server_new_sized(opts, opts_size, &a->server);
    if (rc == 0) rc = ftrpc_server_start(a->server, listen_addr);
    if (rc != 0) {
        ftrpc_server_free(a->server);
        free(a);
        return rc;
    }
    *out = a;
    return 0;
}

int ftrpc_admin_port(const ftrpc_admin *admin)
{
    return admin ? ftrpc_server_port(admin->server) : 0;
}

void ftrpc_admin_free(ftrpc_admin *admin)
{
    if (!admin) return;
    ftrpc_server_free(admin->server);
    free(admin);
}
