/* Discovery core: endpoint records and their strict parsers, naming-URL parsing, and the scheme
 * registry that maps a URL's scheme to a backend vtable (see naming.h for how to add one).
 *
 * Invariants: every parser here is pure and bounded (no allocation beyond the URL copy, no IO);
 * outside input only ever produces FTRPC_EADDR/FTRPC_EINVAL and a log line. The scheme table is
 * append-only, so a looked-up vtable stays valid for the life of the process.
 *
 * Not here: the backends (naming_list.c, naming_file.c, naming_dir.c, naming_etcd.c), the folder
 * watcher (naming_watch.c), the registrar thread (naming_registrar.c), the cached view
 * (naming_view.c). */
#include "naming/naming.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/rand.h"

/* ---- endpoint lists ---- */

int ft_endpoint_list_add(ft_endpoint_list *list, const ft_endpoint *ep)
{
    if (list->n >= FT_NAMING_MAX_ENDPOINTS) return FTRPC_EINVAL;
    if (list->n == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 8;
        ft_endpoint *v = realloc(list->v, cap * sizeof *v);
        if (!v) return FTRPC_ENOMEM;
        list->v = v;
        list->cap = cap;
    }
    list->v[list->n++] = *ep;
    return 0;
}

void ft_endpoint_list_fini(ft_endpoint_list *list)
{
    free(list->v);
    list->v = NULL;
    list->n = list->cap = 0;
}

static int cmp_endpoint(const void *a, const void *b)
{
    const ft_endpoint *x = a, *y = b;
    return strcmp(x->addr, y->addr);
}

void ft_endpoint_list_sort(ft_endpoint_list *list)
{
    if (list->n > 1) qsort(list->v, list->n, sizeof *list->v, cmp_endpoint);
}

struct addr_index {
    const char *addr;
    size_t index;
};

static int cmp_addr_index(const void *a, const void *b)
{
    const struct addr_index *x = a, *y = b;
    int c = strcmp(x->addr, y->addr);
    return c ? c : (x->index < y->index ? -1 : x->index > y->index);
}

void ft_endpoint_list_normalize(ft_endpoint_list *list)
{
    /* Order is meaningful (the priority balancer uses it), so duplicates are dropped in place:
     * the first occurrence of an address wins. Sorting an index array finds them in O(n log n). */
    if (list->n < 2) return;
    struct addr_index *ix = malloc(list->n * sizeof *ix);
    bool *drop = calloc(list->n, sizeof *drop);
    if (!ix || !drop) {
        free(ix);
        free(drop);
        return; /* duplicates then stay; the client copes with them, only less tidily */
    }
    for (size_t i = 0; i < list->n; i++)
        ix[i] = (struct addr_index){list->v[i].addr, i};
    qsort(ix, list->n, sizeof *ix, cmp_addr_index);
    for (size_t i = 1; i < list->n; i++)
        if (strcmp(ix[i].addr, ix[i - 1].addr) == 0) drop[ix[i].index] = true;
    size_t w = 0;
    for (size_t i = 0; i < list->n; i++)
        if (!drop[i]) list->v[w++] = list->v[i];
    list->n = w;
    free(ix);
    free(drop);
}

bool ft_endpoint_list_equal(const ft_endpoint_list *a, const ft_endpoint_list *b)
{
    if (a->n != b->n) return false;
    for (size_t i = 0; i < a->n; i++) {
        if (strcmp(a->v[i].addr, b->v[i].addr) != 0 || a->v[i].weight != b->v[i].weight ||
            strcmp(a->v[i].tags, b->v[i].tags) != 0 || strcmp(a->v[i].id, b->v[i].id) != 0 ||
            a->v[i].ttl_ms != b->v[i].ttl_ms)
            return false;
    }
    return true;
}

bool ft_endpoint_has_tag(const ft_endpoint *ep, const char *tag)
{
    size_t tl = strlen(tag);
    if (tl == 0) return false;
    const char *p = ep->tags;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == tl && memcmp(p, tag, tl) == 0) return true;
        if (!bar) break;
        p = bar + 1;
    }
    return false;
}

/* ---- checks ---- */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}
static bool is_alnum(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static bool is_name_char(char c)
{
    return is_alnum(c) || c == '_' || c == '.' || c == '-';
}

/* Parses an unsigned decimal of 1..max_digits digits no larger than max into *out. */
static int parse_uint(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    if (len == 0 || len > 19) return FTRPC_EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(s[i])) return FTRPC_EINVAL;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max) return FTRPC_EINVAL;
    *out = v;
    return 0;
}

int ft_addr_check(const char *s, size_t len)
{
    if (len == 0 || len >= FT_ADDR_MAX) return FTRPC_EADDR;
    size_t colon = len;
    while (colon > 0 && s[colon - 1] != ':')
        colon--;
    if (colon == 0) return FTRPC_EADDR; /* no ':' */
    uint64_t port;
    if (parse_uint(s + colon, len - colon, 65535, &port) != 0 || port == 0) return FTRPC_EADDR;
    size_t hl = colon - 1;
    if (hl == 0) return FTRPC_EADDR;
    if (s[0] == '[') {
        if (hl < 3 || s[hl - 1] != ']') return FTRPC_EADDR;
        bool has_colon = false;
        for (size_t i = 1; i < hl - 1; i++) {
            if (s[i] == ':')
                has_colon = true;
            else if (!is_hex(s[i]) && s[i] != '.')
                return FTRPC_EADDR;
        }
        return has_colon ? 0 : FTRPC_EADDR;
    }
    if (hl > 253) return FTRPC_EADDR;
    for (size_t i = 0; i < hl; i++) {
        if (!is_alnum(s[i]) && s[i] != '.' && s[i] != '-') return FTRPC_EADDR;
    }
    if (s[0] == '.' || s[0] == '-' || s[hl - 1] == '.' || s[hl - 1] == '-') return FTRPC_EADDR;
    return 0;
}

int ft_tags_check(const char *s, size_t len)
{
    if (len >= FT_TAGS_MAX) return FTRPC_EINVAL;
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '|') {
            if (run == 0) return FTRPC_EINVAL;
            run = 0;
        } else if (is_name_char(s[i]) && run < 63) {
            run++;
        } else {
            return FTRPC_EINVAL;
        }
    }
    return (len > 0 && run == 0) ? FTRPC_EINVAL : 0;
}

static int name_check(const char *s, size_t len, size_t max)
{
    if (len == 0 || len >= max) return FTRPC_EINVAL;
    for (size_t i = 0; i < len; i++)
        if (!is_name_char(s[i])) return FTRPC_EINVAL;
    return 0;
}

int ft_service_check(const char *s, size_t len)
{
    return name_check(s, len, FT_SERVICE_MAX);
}

int ft_id_check(const char *s, size_t len)
{
    return name_check(s, len, FT_ID_MAX);
}

void ft_id_generate(char *buf, size_t cap)
{
    /* getrandom: ids must not collide between processes started in the same tick (ft_rand is
     * seedable, not unique); should it fail, the time and pid seed a generator instead */
    uint8_t b[16];
    if (getrandom(b, sizeof b, GRND_NONBLOCK) != (ssize_t)sizeof b) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ft_rand r;
        ft_rand_seed(&r, (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec +
                             ((uint64_t)getpid() << 40));
        uint64_t x[2] = {ft_rand_next(&r), ft_rand_next(&r)};
        memcpy(b, x, sizeof b);
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(buf, cap, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

/* ---- endpoint spec ("addr w=50 tag=a|b") ---- */

static bool is_sep(char c)
{
    return c == ' ' || c == '\t' || c == ';';
}

int ft_endpoint_parse(const char *s, size_t len, ft_endpoint *out)
{
    size_t i = 0;
    while (i < len && is_sep(s[i]))
        i++;
    size_t a0 = i;
    while (i < len && !is_sep(s[i]))
        i++;
    int rc = ft_addr_check(s + a0, i - a0);
    if (rc) return rc;
    ft_endpoint ep;
    memset(&ep, 0, sizeof ep);
    memcpy(ep.addr, s + a0, i - a0);
    ep.weight = FT_WEIGHT_DEFAULT;
    bool saw_w = false, saw_t = false;
    for (;;) {
        while (i < len && is_sep(s[i]))
            i++;
        if (i == len) break;
        size_t o0 = i;
        while (i < len && !is_sep(s[i]))
            i++;
        const char *opt = s + o0;
        size_t ol = i - o0;
        const char *eq = memchr(opt, '=', ol);
        if (!eq) return FTRPC_EINVAL;
        size_t kl = (size_t)(eq - opt);
        const char *val = eq + 1;
        size_t vl = ol - kl - 1;
        if ((kl == 1 && opt[0] == 'w') || (kl == 6 && memcmp(opt, "weight", 6) == 0)) {
            uint64_t w;
            if (saw_w || parse_uint(val, vl, FT_WEIGHT_MAX, &w) != 0 || w == 0) return FTRPC_EINVAL;
            ep.weight = (uint32_t)w;
            saw_w = true;
        } else if ((kl == 3 && memcmp(opt, "tag", 3) == 0) ||
                   (kl == 4 && memcmp(opt, "tags", 4) == 0)) {
            if (saw_t || ft_tags_check(val, vl) != 0) return FTRPC_EINVAL;
            memcpy(ep.tags, val, vl);
            ep.tags[vl] = '\0';
            saw_t = true;
        } else {
            return FTRPC_EINVAL;
        }
    }
    *out = ep;
    return 0;
}

/* ---- URLs ---- */

void ft_naming_url_fini(ft_naming_url *url)
{
    free(url->buf);
    memset(url, 0, sizeof *url);
}

static int url_fail(const char *url, const char *why)
{
    FT_WARN("naming: bad URL \"%.200s\": %s", url, why);
    return FTRPC_EADDR;
}

int ft_naming_url_parse(const char *url, ft_naming_url *out)
{
    if (!url) return FTRPC_EADDR;
    size_t len = strnlen(url, FT_URL_MAX + 1);
    if (len > FT_URL_MAX) return url_fail(url, "too long");
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)url[i] < 0x20 || url[i] == 0x7f)
            return url_fail(url, "control character");
    const char *sep = strstr(url, "://");
    if (!sep) return url_fail(url, "no \"://\"");
    size_t sl = (size_t)(sep - url);
    ft_naming_url u;
    memset(&u, 0, sizeof u);
    if (sl == 0 || sl >= sizeof u.scheme) return url_fail(url, "bad scheme length");
    for (size_t i = 0; i < sl; i++) {
        char c = url[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        bool ok =
            (c >= 'a' && c <= 'z') || (i > 0 && (is_digit(c) || c == '+' || c == '.' || c == '-'));
        if (!ok) return url_fail(url, "bad scheme character");
        u.scheme[i] = c;
    }
    u.buf = strdup(sep + 3);
    if (!u.buf) return FTRPC_ENOMEM;
    u.body = u.buf;
    char *q = strchr(u.buf, '?');
    if (q) {
        *q++ = '\0';
        while (*q) {
            char *amp = strchr(q, '&');
            if (amp) *amp = '\0';
            char *eq = strchr(q, '=');
            if (eq) *eq = '\0';
            const char *val = eq ? eq + 1 : "";
            size_t kl = strlen(q);
            bool kok = kl > 0 && kl < 32;
            for (size_t i = 0; kok && i < kl; i++)
                kok = (q[i] >= 'a' && q[i] <= 'z') || q[i] == '_';
            if (!kok || strchr(val, '?') || strchr(val, '=')) {
                ft_naming_url_fini(&u);
                return url_fail(url, "bad query parameter");
            }
            for (size_t i = 0; i < u.nparams; i++) {
                if (strcmp(u.params[i].key, q) == 0) {
                    ft_naming_url_fini(&u);
                    return url_fail(url, "duplicate query parameter");
                }
            }
            if (u.nparams == FT_URL_PARAMS_MAX) {
                ft_naming_url_fini(&u);
                return url_fail(url, "too many query parameters");
            }
            u.params[u.nparams].key = q;
            u.params[u.nparams].value = val;
            u.nparams++;
            if (!amp) break;
            q = amp + 1;
            if (!*q) {
                ft_naming_url_fini(&u);
                return url_fail(url, "trailing '&'");
            }
        }
    }
    *out = u;
    return 0;
}

const char *ft_naming_url_param(const ft_naming_url *url, const char *key)
{
    for (size_t i = 0; i < url->nparams; i++)
        if (strcmp(url->params[i].key, key) == 0) return url->params[i].value;
    return NULL;
}

int ft_naming_url_protocol(const ft_naming_url *url, ft_url_protocol *out)
{
    const char *v = ft_naming_url_param(url, FT_URL_PROTOCOL_KEY);
    ft_url_protocol p = FT_URL_PROTOCOL_NONE;
    if (v && strcmp(v, "baidu_std") == 0)
        p = FT_URL_PROTOCOL_BAIDU_STD;
    else if (v && strcmp(v, "grpc") == 0)
        p = FT_URL_PROTOCOL_GRPC;
    else if (v) {
        FT_WARN("naming: %s:// URL has protocol=\"%.40s\": it takes baidu_std or grpc", url->scheme,
                v);
        return FTRPC_EADDR;
    }
    *out = p;
    return 0;
}

int ft_naming_url_only_params(const ft_naming_url *url, const char *const *allowed)
{
    ft_url_protocol p;
    if (ft_naming_url_protocol(url, &p) != 0) return FTRPC_EADDR;
    for (size_t i = 0; i < url->nparams; i++) {
        bool ok = strcmp(url->params[i].key, FT_URL_PROTOCOL_KEY) == 0;
        for (const char *const *a = allowed; a && *a && !ok; a++)
            ok = strcmp(*a, url->params[i].key) == 0;
        if (!ok) {
            FT_WARN("naming: %s:// does not take query parameter \"%s\"", url->scheme,
                    url->params[i].key);
            return FTRPC_EADDR;
        }
    }
    return 0;
}

/* ---- thread helpers ---- */

void ft_naming_cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &ca);
    pthread_condattr_destroy(&ca);
}

struct timespec ft_naming_deadline(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t ns = ts.tv_nsec + (ms % 1000) * 1000000;
    ts.tv_sec += (time_t)(ms / 1000 + ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    return ts;
}

/* ---- scheme registry ---- */

extern const ft_naming_ops ft_naming_list_ops;
extern const ft_naming_ops ft_naming_file_ops;
extern const ft_naming_ops ft_naming_dir_ops;
#ifdef FTRPC_HAVE_ETCD
extern const ft_naming_ops ft_naming_etcd_ops; /* built when libcurl and json-c are found */
#endif

static const ft_naming_ops *const BUILTIN[] = {
    &ft_naming_list_ops,
    &ft_naming_file_ops,
    &ft_naming_dir_ops,
#ifdef FTRPC_HAVE_ETCD
    &ft_naming_etcd_ops,
#endif
};

enum { EXTRA_MAX = 16 };
/* Guards `extra` and `nextra`; the table only grows. */
static pthread_mutex_t extra_lock = PTHREAD_MUTEX_INITIALIZER;
static const ft_naming_ops *extra[EXTRA_MAX];
static size_t nextra;

const ft_naming_ops *ft_naming_find_ops(const char *scheme)
{
    for (size_t i = 0; i < sizeof BUILTIN / sizeof BUILTIN[0]; i++)
        if (strcmp(BUILTIN[i]->scheme, scheme) == 0) return BUILTIN[i];
    const ft_naming_ops *found = NULL;
    pthread_mutex_lock(&extra_lock);
    for (size_t i = 0; i < nextra && !found; i++)
        if (strcmp(extra[i]->scheme, scheme) == 0) found = extra[i];
    pthread_mutex_unlock(&extra_lock);
    return found;
}

int ft_naming_register_ops(const ft_naming_ops *ops)
{
    if (!ops || !ops->scheme || !ops->open || !ops->close || !ops->fetch || !ops->watch_start ||
        !ops->watch_stop)
        return FTRPC_EINVAL;
    if (ft_naming_find_ops(ops->scheme)) return FTRPC_EEXIST;
    int rc = 0;
    pthread_mutex_lock(&extra_lock);
    if (nextra == EXTRA_MAX)
        rc = FTRPC_ENOMEM;
    else
        extra[nextra++] = ops;
    pthread_mutex_unlock(&extra_lock);
    return rc;
}

int ft_naming_open(const char *url, ft_naming **out)
{
    ft_naming_url u;
    int rc = ft_naming_url_parse(url, &u);
    if (rc) return rc;
    const ft_naming_ops *ops = ft_naming_find_ops(u.scheme);
    if (!ops) {
        FT_WARN("naming: unknown scheme \"%s\" in \"%.200s\"", u.scheme, url);
        ft_naming_url_fini(&u);
        return FTRPC_EADDR;
    }
    ft_naming *ns = NULL;
    rc = ops->open(&u, &ns);
    ft_naming_url_fini(&u);
    if (rc) return rc;
    ns->ops = ops;
    *out = ns;
    return 0;
}

void ft_naming_close(ft_naming *ns)
{
    if (!ns) return;
    ns->ops->watch_stop(ns);
    ns->ops->close(ns);
}

int ft_naming_fetch(ft_naming *ns, ft_endpoint_list *out)
{
    return ns->ops->fetch(ns, out);
}

int ft_naming_watch_start(ft_naming *ns, const ft_naming_watch_opts *opts, ft_naming_watch_cb cb,
                          void *arg)
{
    ft_naming_watch_opts o = {0};
    if (opts) o = *opts;
    if (o.rescan_ms < 0) return FTRPC_EINVAL;
    if (o.rescan_ms == 0) o.rescan_ms = 5000;
    if (!cb) return FTRPC_EINVAL;
    return ns->ops->watch_start(ns, &o, cb, arg);
}

void ft_naming_watch_stop(ft_naming *ns)
{
    ns->ops->watch_stop(ns);
}
