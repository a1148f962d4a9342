/* libFuzzer target for the etcd:// response parsers (etcd's answers are outside input: any process
 * on the path, or a wrong server on the port, writes them). The first byte picks the parser, the
 * rest is its input: each parser reads the text with json-c, whose objects cost a dozen mallocs or
 * more per answer under ASan, so one parser an input rather than all of them (docs/reliability.md,
 * Fuzzers). The watch stream splitter gets the text in pieces (pieces.h), as a stream arrives.
 * Beyond "no crash" it checks: a value that parses formats back to one that parses to the same
 * endpoint; what base64-decodes encodes back to the same text (the decoder is strict: one text per
 * bytes); a range answer never yields more than FT_NAMING_MAX_ENDPOINTS endpoints, each valid. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/base64.h"
#include "naming/etcd_json.h"
#include "pieces.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int count_msg(const char *msg, size_t len, void *arg)
{
    ft_etcd_watch_msg m;
    (void)ft_etcd_parse_watch(msg, len, &m, NULL);
    (*(size_t *)arg)++;
    return 0;
}

static void range(const char *buf, size_t len)
{
    const char *why = NULL;
    ft_endpoint_list l = {0};
    ft_etcd_range_info info;
    if (ft_etcd_parse_range(buf, len, "/ftrpc/example.EchoService/", &l, &info, &why) == 0) {
        if (l.n > FT_NAMING_MAX_ENDPOINTS) abort();
        for (size_t i = 0; i < l.n; i++)
            if (ft_addr_check(l.v[i].addr, strlen(l.v[i].addr)) || l.v[i].weight < 1 ||
                l.v[i].weight > FT_WEIGHT_MAX || ft_tags_check(l.v[i].tags, strlen(l.v[i].tags)))
                abort();
    } else if (!why || l.n != 0) {
        abort();
    }
    ft_endpoint_list_fini(&l);
}

static void value(const char *buf, size_t len)
{
    ft_endpoint ep;
    if (ft_etcd_value_parse(buf, len, &ep, NULL) != 0) return;
    char out[FT_ETCD_VALUE_MAX + 1];
    int n = ft_etcd_value_format(&ep, out, sizeof out);
    ft_endpoint back;
    if (n < 0 || ft_etcd_value_parse(out, (size_t)n, &back, NULL) != 0 ||
        memcmp(&ep, &back, sizeof ep) != 0)
        abort();
}

static void base64(const char *buf, size_t len)
{
    uint8_t dec[4096];
    size_t dl;
    if (len > 4096 || ft_b64_decode(buf, len, dec, sizeof dec, &dl) != 0) return;
    char *enc = malloc(ft_b64_len(dl) + 1);
    if (!enc) return;
    ft_b64_encode(dec, dl, enc);
    if (strlen(enc) != len || memcmp(enc, buf, len) != 0) abort();
    free(enc);
}

static void watch_stream(const char *buf, size_t len)
{
    size_t ends[FUZZ_MAX_PIECES];
    size_t npieces = fuzz_pieces((const uint8_t *)buf, len, ends), off = 0, msgs = 0;
    ft_etcd_splitter sp;
    ft_etcd_splitter_init(&sp, 4096);
    for (size_t k = 0; k < npieces; off = ends[k++])
        if (ft_etcd_splitter_feed(&sp, buf + off, ends[k] - off, count_msg, &msgs) != 0) break;
    ft_etcd_splitter_fini(&sp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;
    int64_t a, b;
    char msg[64];
    int code;
    ft_etcd_watch_msg wm;
    switch (data[0] % 9) {
    case 0:
        range(buf, len);
        break;
    case 1:
        (void)ft_etcd_parse_grant(buf, len, &a, &b, NULL);
        break;
    case 2:
        (void)ft_etcd_parse_keepalive(buf, len, &a, NULL);
        break;
    case 3:
        (void)ft_etcd_parse_header(buf, len, &a, NULL);
        break;
    case 4:
        (void)ft_etcd_parse_error(buf, len, msg, sizeof msg, &code);
        break;
    case 5:
        (void)ft_etcd_parse_watch(buf, len, &wm, NULL);
        break;
    case 6:
        value(buf, len);
        break;
    case 7:
        base64(buf, len);
        break;
    default:
        watch_stream(buf, len);
        break;
    }
    return 0;
}
