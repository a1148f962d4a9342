/* libFuzzer target for discovery's text parsers other than the dir:// entry: naming URLs
 * (configuration, possibly from a user), list:// / file:// endpoint specs, and whole file://
 * texts (a file anyone with write access to it can edit). The first byte picks the parser.
 * Checks, beyond "no crash": an accepted endpoint holds a valid address, weight and tags. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ftrpc/log.h"
#include "naming/naming.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void quiet(ftrpc_log_level level, const char *msg, void *arg) {}

static void check(const ft_endpoint *ep)
{
    if (ft_addr_check(ep->addr, strlen(ep->addr)) != 0 || ep->weight == 0 ||
        ep->weight > FT_WEIGHT_MAX || ft_tags_check(ep->tags, strlen(ep->tags)) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ftrpc_log_set_sink(quiet, NULL);
    if (size == 0) return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    switch (data[0] % 3) {
    case 0: {
        char *s = malloc(len + 1);
        if (!s) return 0;
        memcpy(s, text, len);
        s[len] = '\0';
        ft_naming_url u;
        if (ft_naming_url_parse(s, &u) == 0) {
            for (size_t i = 0; i < u.nparams; i++)
                if (ft_naming_url_param(&u, u.params[i].key) != u.params[i].value) abort();
            ft_naming_url_fini(&u);
        }
        ft_naming *ns;
        if (ft_naming_open(s, &ns) == 0) ft_naming_close(ns); /* no IO: open only parses */
        free(s);
        break;
    }
    case 1: {
        ft_endpoint ep;
        if (ft_endpoint_parse(text, len, &ep) == 0) check(&ep);
        break;
    }
    default: {
        ft_endpoint_list l = {0};
        if (ft_file_list_parse(text, len, &l) == 0) {
            for (size_t i = 0; i < l.n; i++)
                check(&l.v[i]);
            ft_endpoint_list_normalize(&l);
        }
        ft_endpoint_list_fini(&l);
        break;
    }
    }
    return 0;
}
