/* libFuzzer target for the etcd:// response parsers (etcd's answers are outside input: any process
 * on the path, or a wrong server on the port, writes them). The input goes whole through every
 * parser, and through the watch stream splitter cut at a point chosen by its first byte. Beyond
 * "no crash" it checks: a value that parses formats back to one that parses to the same endpoint;
 * what base64-decodes encodes back to the same text (the decoder is strict: one text per bytes);
 * a range answer never yields more than FT_NAMING_MAX_ENDPOINTS endpoints, each valid. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "naming/etcd_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int count_msg(const char *msg, size_t len, void *arg)
{
    ft_etcd_watch_msg m;
    (void)ft_etcd_parse_watch(msg, len, &m, NULL);
    (*(size_t *)arg)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    const char *why = NULL;

    ft_endpoint_list l = {0};
    ft_etcd_range_info info;
    if (ft_etcd_parse_range(buf, size, "/ftrpc/example.EchoService/", &l, &info, &why) == 0) {
        if (l.n > FT_NAMING_MAX_ENDPOINTS) abort();
        for (size_t i = 0; i < l.n; i++)
            if (ft_addr_check(l.v[i].addr, strlen(l.v[i].addr)) || l.v[i].weight < 1 ||
                l.v[i].weight > FT_WEIGHT_MAX || ft_tags_check(l.v[i].tags, strlen(l.v[i].tags)))
                abort();
    } else if (!why || l.n != 0) {
        abort();
    }
    ft_endpoint_list_fini(&l);

    int64_t a, b;
    (void)ft_etcd_parse_grant(buf, size, &a, &b, NULL);
    (void)ft_etcd_parse_keepalive(buf, size, &a, NULL);
    (void)ft_etcd_parse_header(buf, size, &a, NULL);
    char msg[64];
    int code;
    (void)ft_etcd_parse_error(buf, size, msg, sizeof msg, &code);
    ft_etcd_watch_msg wm;
    (void)ft_etcd_parse_watch(buf, size, &wm, NULL);

    ft_endpoint ep;
    if (ft_etcd_value_parse(buf, size, &ep, NULL) == 0) {
        char out[FT_ETCD_VALUE_MAX + 1];
        int n = ft_etcd_value_format(&ep, out, sizeof out);
        ft_endpoint back;
        if (n < 0 || ft_etcd_value_parse(out, (size_t)n, &back, NULL) != 0 ||
            memcmp(&ep, &back, sizeof ep) != 0)
            abort();
    }

    uint8_t dec[4096];
    size_t dl;
    if (size <= 4096 && ft_etcd_b64_decode(buf, size, dec, sizeof dec, &dl) == 0) {
        char *enc = malloc(ft_etcd_b64_len(dl) + 1);
        if (!enc) return 0;
        ft_etcd_b64_encode(dec, dl, enc);
        if (strlen(enc) != size || memcmp(enc, buf, size) != 0) abort();
        free(enc);
    }

    ft_etcd_splitter sp;
    ft_etcd_splitter_init(&sp, 4096);
    size_t cut = size ? data[0] % (size + 1) : 0, msgs = 0;
    if (ft_etcd_splitter_feed(&sp, buf, cut, count_msg, &msgs) == 0)
        (void)ft_etcd_splitter_feed(&sp, buf + cut, size - cut, count_msg, &msgs);
    ft_etcd_splitter_fini(&sp);
    return 0;
}
