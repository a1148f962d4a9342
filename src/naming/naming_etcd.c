/* etcd://h:p[,h:p...][/prefix]?service=NAME — discovery through etcd v3's JSON gateway (libcurl for
 * HTTP, loaded with dlopen at the first use; json-c for JSON; the wire pieces are in etcd_json.c).
 *
 * Layout: one key per server instance, "<prefix>/<service>/<host:port>", whose value is
 * {"addr":"host:port","weight":N,"tags":["a","b"]} and which is bound to the instance's lease.
 * The prefix defaults to "/ftrpc".
 *
 * Server side (registrar ops, called from the generic registrar thread one at a time):
 *   register   = lease grant (TTL rounded up to seconds) + put with the lease; then the lease the
 *                previous registration held, if any, is revoked (the key has moved to the new one,
 *                so the revoke deletes nothing: it only spares etcd a dead lease).
 *   refresh    = lease keepalive; TTL 0 in the answer means the lease is gone (expired during a
 *                partition, or etcd lost it): grant and put again at once. Then a count-only read
 *                of the key puts it back if someone deleted it. A transport error is returned: the
 *                registrar registers again (new lease) at the next interval.
 *   deregister = lease revoke, which deletes the key with it. No explicit delete: a successor
 *                on the same address may have put the key under its own lease, and must keep it.
 *
 * Client side: fetch = one range read of "<prefix>/<service>/". The watch is a thread per watch
 * driving a curl multi handle: a streaming POST /v3/watch from the revision after the last full
 * read; any message carrying events triggers a new full read (one read per burst of events:
 * simpler than applying events and never wrong), and a full read happens at least every rescan_ms
 * as a backstop (a silently dead stream, a partition), and every third of the shortest
 * registration TTL listed: a read that takes over half that TTL is told to the view as an outage
 * (watch_read says why). A broken stream is re-opened after a full read, 100 ms later, the delay
 * doubling to 2 s while streams keep breaking before etcd confirms them.
 *
 * Endpoints: every request tries the endpoints in turn, starting with the one that answered
 * last; a transport error, a timeout or a 5xx answer moves to the next. The watch stream follows:
 * when a full read was answered by another member than the stream's, the stream is re-opened there
 * (a member cut off from its peers keeps its streams open and silent, and fails reads). Timeouts:
 * connect 500 ms, request 2 s; the watch stream has no overall timeout (it is meant to stay open)
 * but TCP keepalive. Proxies from the environment are ignored (etcd is reached directly). Only
 * http:// (no TLS, no auth) in this version.
 *
 * Threads: an etcd_ns may be fetched from one thread while its watch thread runs: they use
 * separate curl handles, and share only the atomic "endpoint that answered last". Stop is prompt:
 * an atomic flag checked by curl's progress callback, and curl_multi_wakeup for the poll.
 *
 * Not here: TLS and etcd auth, applying watch events incrementally, a process-wide watcher. */
#include <curl/curl.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/strbuf.h"
#include "naming/etcd_json.h"
#include "naming/naming.h"

#define ETCD_HOSTS_MAX 8
#define ETCD_PREFIX_MAX 256
#define ETCD_PREFIX_DEFAULT "/ftrpc"
#define ETCD_CONNECT_TIMEOUT_MS 500L
#define ETCD_REQUEST_TIMEOUT_MS 2000L
#define ETCD_TTL_MAX_MS 86400000 /* a day, as dir:// */
#define ETCD_BACKOFF_MIN_MS 100
#define ETCD_BACKOFF_MAX_MS 2000
#define ETCD_READ_RETRY_MAX_MS 1000 /* a failed full read is retried at least this often */
#define ETCD_READ_MIN_MS 100        /* full reads paced by a short TTL: never more often */
#define ETCD_KEY_PREFIX_MAX (ETCD_PREFIX_MAX + FT_SERVICE_MAX + 2)

static int64_t mono_ms(void)
{
    return ft_now_ns() / FT_NS_PER_MS;
}

/* ---- configuration from the URL ---- */

typedef struct etcd_cfg {
    char hosts[ETCD_HOSTS_MAX][FT_ADDR_MAX];
    unsigned nhosts;
    char service[FT_SERVICE_MAX];
    /* "<prefix>/<service>/": every key of the service starts with it */
    char key_prefix[ETCD_KEY_PREFIX_MAX];
    char range_end[ETCD_KEY_PREFIX_MAX];
    atomic_uint cur; /* the host that answered last: tried first */
} etcd_cfg;

static const char *const ETCD_PARAMS[] = {"service", NULL};

static bool prefix_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-' || c == '/';
}

/* fallback: the registration's service, which must agree with the URL's when both are given. */
static int cfg_parse(const ft_naming_url *url, const char *fallback, etcd_cfg *cfg)
{
    if (ft_naming_url_only_params(url, ETCD_PARAMS)) return FTRPC_EADDR;
    const char *body = url->body;
    const char *slash = strchr(body, '/');
    size_t hl = slash ? (size_t)(slash - body) : strlen(body);
    cfg->nhosts = 0;
    for (size_t i = 0; i < hl;) {
        const char *comma = memchr(body + i, ',', hl - i);
        size_t el = comma ? (size_t)(comma - (body + i)) : hl - i;
        if (cfg->nhosts == ETCD_HOSTS_MAX || ft_addr_check(body + i, el)) {
            FT_WARN("naming: etcd:// needs 1..%d etcd endpoints host:port separated by ',', got "
                    "\"%.*s\"",
                    ETCD_HOSTS_MAX, (int)(hl > 200 ? 200 : hl), body);
            return FTRPC_EADDR;
        }
        memcpy(cfg->hosts[cfg->nhosts], body + i, el);
        cfg->hosts[cfg->nhosts++][el] = '\0';
        i += el + 1;
        if (comma && i == hl) return FTRPC_EADDR; /* trailing ',' */
    }
    if (cfg->nhosts == 0) {
        FT_WARN("naming: etcd:// needs at least one etcd endpoint host:port");
        return FTRPC_EADDR;
    }
    char prefix[ETCD_PREFIX_MAX];
    size_t pl = slash ? strlen(slash) : 0;
    while (pl > 0 && slash[pl - 1] == '/')
        pl--;
    if (pl == 0) {
        strcpy(prefix, ETCD_PREFIX_DEFAULT);
    } else {
        bool ok = pl < sizeof prefix;
        for (size_t i = 0; ok && i < pl; i++)
            ok = prefix_char(slash[i]) && !(slash[i] == '/' && i > 0 && slash[i - 1] == '/');
        if (!ok) {
            FT_WARN("naming: etcd:// prefix must be /segments of [A-Za-z0-9_.-], under %d bytes",
                    ETCD_PREFIX_MAX);
            return FTRPC_EADDR;
        }
        memcpy(prefix, slash, pl);
        prefix[pl] = '\0';
    }
    const char *s = ft_naming_url_param(url, "service");
    if (s && fallback && *fallback && strcmp(s, fallback) != 0) {
        FT_WARN("naming: etcd:// URL names service %s, registration names %s", s, fallback);
        return FTRPC_EINVAL;
    }
    if (!s) s = fallback;
    if (!s || ft_service_check(s, strlen(s))) {
        FT_WARN("naming: etcd:// needs ?service=NAME (1..127 chars of [A-Za-z0-9_.-])");
        return FTRPC_EADDR;
    }
    strcpy(cfg->service, s);
    snprintf(cfg->key_prefix, sizeof cfg->key_prefix, "%s/%s/", prefix, s);
    if (ft_etcd_prefix_end(cfg->key_prefix, cfg->range_end, sizeof cfg->range_end))
        return FTRPC_EADDR;
    atomic_init(&cfg->cur, 0);
    return 0;
}

/* ---- HTTP ---- */

/* libcurl is loaded with dlopen when the first etcd:// client or registrar of the process starts,
 * not linked: a process that never names etcd then maps none of it. libcurl and the libraries it
 * pulls in (gnutls, krb5, ldap, ssh2, nghttp2...) are 3.8 MiB of an idle echo-server's 9.1 MiB RSS
 * (docs/performance.md, issue #26). Everything below calls curl through this table, filled once by
 * curl_init_once; curl_ready() must have returned 0 first. */
static struct {
    CURLcode (*global_init)(long flags);
    const char *(*easy_strerror)(CURLcode code);
    CURLcode (*easy_setopt)(CURL *e, CURLoption option, ...);
    struct curl_slist *(*slist_append)(struct curl_slist *list, const char *s);
    CURL *(*easy_init)(void);
    void (*easy_cleanup)(CURL *e);
    CURLcode (*easy_perform)(CURL *e);
    CURLcode (*easy_getinfo)(CURL *e, CURLINFO info, ...);
    CURLM *(*multi_init)(void);
    CURLMcode (*multi_cleanup)(CURLM *m);
    CURLMcode (*multi_add_handle)(CURLM *m, CURL *e);
    CURLMcode (*multi_remove_handle)(CURLM *m, CURL *e);
    CURLMcode (*multi_perform)(CURLM *m, int *running);
    CURLMsg *(*multi_info_read)(CURLM *m, int *left);
    CURLMcode (*multi_poll)(CURLM *m, struct curl_waitfd fds[], unsigned n, int timeout_ms,
                            int *numfds);
    CURLMcode (*multi_wakeup)(CURLM *m);
} cu;

#undef curl_easy_setopt
#undef curl_easy_getinfo
#define curl_global_init cu.global_init
#define curl_easy_strerror cu.easy_strerror
#define curl_easy_setopt cu.easy_setopt
#define curl_slist_append cu.slist_append
#define curl_easy_init cu.easy_init
#define curl_easy_cleanup cu.easy_cleanup
#define curl_easy_perform cu.easy_perform
#define curl_easy_getinfo cu.easy_getinfo
#define curl_multi_init cu.multi_init
#define curl_multi_cleanup cu.multi_cleanup
#define curl_multi_add_handle cu.multi_add_handle
#define curl_multi_remove_handle cu.multi_remove_handle
#define curl_multi_perform cu.multi_perform
#define curl_multi_info_read cu.multi_info_read
#define curl_multi_poll cu.multi_poll
#define curl_multi_wakeup cu.multi_wakeup

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_init_rc; /* 0, FTRPC_ESYS: libcurl not loaded (logged once) */

/* Fills one slot of `cu` from the loaded library; -1 when the symbol is missing. */
static int curl_sym(void *lib, void *slot, const char *name)
{
    void *f = dlsym(lib, name);
    if (!f) return -1;
    memcpy(slot, &f, sizeof f); /* ISO C has no cast from void * to a function pointer */
    return 0;
}

static void curl_init_once(void)
{
    /* Never closed nor cleaned up: other threads may use curl until the process ends. */
    void *lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (!lib) lib = dlopen("libcurl-gnutls.so.4", RTLD_NOW | RTLD_LOCAL); /* Debian's other build */
    if (!lib) {
        FT_ERROR("naming: etcd:// needs libcurl (libcurl.so.4): %s", dlerror());
        curl_init_rc = FTRPC_ESYS;
        return;
    }
    static const struct {
        const char *name;
        size_t off;
    } syms[] = {
#define CURL_SYM(field, name) {name, offsetof(__typeof__(cu), field)}
        CURL_SYM(global_init, "curl_global_init"),
        CURL_SYM(easy_strerror, "curl_easy_strerror"),
        CURL_SYM(easy_setopt, "curl_easy_setopt"),
        CURL_SYM(slist_append, "curl_slist_append"),
        CURL_SYM(easy_init, "curl_easy_init"),
        CURL_SYM(easy_cleanup, "curl_easy_cleanup"),
        CURL_SYM(easy_perform, "curl_easy_perform"),
        CURL_SYM(easy_getinfo, "curl_easy_getinfo"),
        CURL_SYM(multi_init, "curl_multi_init"),
        CURL_SYM(multi_cleanup, "curl_multi_cleanup"),
        CURL_SYM(multi_add_handle, "curl_multi_add_handle"),
        CURL_SYM(multi_remove_handle, "curl_multi_remove_handle"),
        CURL_SYM(multi_perform, "curl_multi_perform"),
        CURL_SYM(multi_info_read, "curl_multi_info_read"),
        CURL_SYM(multi_poll, "curl_multi_poll"),
        CURL_SYM(multi_wakeup, "curl_multi_wakeup"),
#undef CURL_SYM
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        if (curl_sym(lib, (char *)&cu + syms[i].off, syms[i].name) != 0) {
            FT_ERROR("naming: etcd:// needs %s, which this libcurl lacks (7.68 or later needed)",
                     syms[i].name);
            curl_init_rc = FTRPC_ESYS;
            return;
        }
    }
    CURLcode c = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (c != CURLE_OK) {
        FT_ERROR("naming: etcd:// cannot initialise libcurl: %s", curl_easy_strerror(c));
        curl_init_rc = FTRPC_ESYS;
    }
}

static int curl_ready(void)
{
    pthread_once(&curl_once, curl_init_once);
    return curl_init_rc;
}

/* One HTTP client: a reusable easy handle (keeps its connection), its response body, and an
 * optional multi handle to run transfers on (the watch), so a stop can interrupt them. */
typedef struct etcd_http {
    CURL *easy;
    ft_strbuf body;
    char errbuf[CURL_ERROR_SIZE];
    const atomic_bool *stop;  /* set: transfers abort (NULL: never) */
    struct etcd_watch *watch; /* non-NULL: run transfers on the watch's multi handle */
} etcd_http;

static size_t body_write(char *p, size_t size, size_t n, void *arg)
{
    ft_strbuf *b = arg;
    /* Past FT_ETCD_RESPONSE_MAX the append fails and curl aborts with CURLE_WRITE_ERROR. */
    return ft_strbuf_append(b, p, n) == 0 ? n : 0;
}

static int abort_on_stop(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    const atomic_bool *stop = arg;
    return stop && atomic_load(stop) ? 1 : 0;
}

/* Options common to every handle: bounded connect, http only, no proxy, no signals. */
static void easy_common(CURL *e, char *errbuf, const atomic_bool *stop, struct curl_slist *hdrs)
{
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, ETCD_CONNECT_TIMEOUT_MS);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
#else
    curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)CURLPROTO_HTTP);
#endif
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, abort_on_stop);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, (void *)stop);
}

/* "Content-Type: application/json" and no "Expect: 100-continue" (it costs a round trip). */
static struct curl_slist *json_headers;
static pthread_once_t headers_once = PTHREAD_ONCE_INIT;
static void headers_init(void)
{
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (h) {
        struct curl_slist *h2 = curl_slist_append(h, "Expect:");
        if (h2) h = h2;
    }
    json_headers = h;
}

static int http_init(etcd_http *h, const atomic_bool *stop, struct etcd_watch *watch)
{
    memset(h, 0, sizeof *h);
    int rc = curl_ready();
    if (rc) return rc;
    pthread_once(&headers_once, headers_init);
    h->easy = curl_easy_init();
    if (!h->easy || !json_headers) {
        if (h->easy) curl_easy_cleanup(h->easy);
        return FTRPC_ENOMEM;
    }
    h->stop = stop;
    h->watch = watch;
    ft_strbuf_init(&h->body, FT_ETCD_RESPONSE_MAX + 1);
    easy_common(h->easy, h->errbuf, stop, json_headers);
    curl_easy_setopt(h->easy, CURLOPT_TIMEOUT_MS, ETCD_REQUEST_TIMEOUT_MS);
    curl_easy_setopt(h->easy, CURLOPT_WRITEFUNCTION, body_write);
    curl_easy_setopt(h->easy, CURLOPT_WRITEDATA, &h->body);
    return 0;
}

static void http_fini(etcd_http *h)
{
    if (h->easy) curl_easy_cleanup(h->easy);
    ft_strbuf_fini(&h->body);
    h->easy = NULL;
}

static int map_curl(CURLcode c)
{
    switch (c) {
    case CURLE_OK:
        return 0;
    case CURLE_OPERATION_TIMEDOUT:
        return FTRPC_ERPCTIMEDOUT;
    case CURLE_ABORTED_BY_CALLBACK:
        return FTRPC_ECANCELED;
    case CURLE_WRITE_ERROR:
        return FTRPC_ERESPONSE; /* over the size limit */
    case CURLE_OUT_OF_MEMORY:
        return FTRPC_ENOMEM;
    default:
        return FTRPC_ECONNECT;
    }
}

static CURLcode watch_perform(struct etcd_watch *w, CURL *easy);

/* POSTs `req` to `path` on each host in turn, starting with the last that answered, until one
 * answers with a status below 500. 0 with *status and h->body set, or the last transport error. */
static int http_post(etcd_cfg *cfg, etcd_http *h, const char *path, const char *req, long *status)
{
    if (!req) return FTRPC_ENOMEM;
    unsigned first = atomic_load(&cfg->cur) % cfg->nhosts;
    int rc = FTRPC_ECONNECT;
    curl_easy_setopt(h->easy, CURLOPT_COPYPOSTFIELDS, req);
    for (unsigned i = 0; i < cfg->nhosts; i++) {
        unsigned k = (first + i) % cfg->nhosts;
        char url[FT_ADDR_MAX + 64];
        snprintf(url, sizeof url, "http://%s%s", cfg->hosts[k], path);
        curl_easy_setopt(h->easy, CURLOPT_URL, url);
        ft_strbuf_reset(&h->body);
        h->errbuf[0] = '\0';
        CURLcode c = h->watch ? watch_perform(h->watch, h->easy) : curl_easy_perform(h->easy);
        rc = map_curl(c);
        if (rc == FTRPC_ECANCELED) return rc;
        long code = 0;
        if (rc == 0) curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &code);
        if (rc == 0 && code < 500) {
            atomic_store(&cfg->cur, k);
            *status = code;
            return 0;
        }
        if (rc == 0) rc = FTRPC_ERESPONSE;
        if (code)
            FT_LOG_RATELIMITED(FTRPC_LOG_WARN,
                               "naming: etcd:// %s%s answered HTTP %ld; trying the "
                               "next endpoint",
                               cfg->hosts[k], path, code);
        else
            FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "naming: etcd:// %s%s failed: %s", cfg->hosts[k],
                               path, h->errbuf[0] ? h->errbuf : curl_easy_strerror(c));
    }
    return rc;
}

/* http_post, then: 200 is 0; another status is FTRPC_ERESPONSE with etcd's message logged. */
static int http_call(etcd_cfg *cfg, etcd_http *h, const char *path, char *req, long *status_out)
{
    long status = 0;
    int rc = http_post(cfg, h, path, req, &status);
    free(req);
    if (rc) return rc;
    if (status_out) *status_out = status;
    if (status == 200) return 0;
    char msg[256] = "";
    int code = -1;
    ft_etcd_parse_error(ft_strbuf_cstr(&h->body), h->body.len, msg, sizeof msg, &code);
    if (!status_out)
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "naming: etcd:// %s answered HTTP %ld: %s", path, status,
                           msg[0] ? msg : "(no message)");
    return FTRPC_ERESPONSE;
}

/* One range read of the service's keys. */
static int range_read(etcd_cfg *cfg, etcd_http *h, ft_endpoint_list *out, int64_t *revision)
{
    int rc = http_call(
        cfg, h, "/v3/kv/range",
        ft_etcd_req_range(cfg->key_prefix, cfg->range_end, false, FT_NAMING_MAX_ENDPOINTS + 1),
        NULL);
    if (rc) return rc;
    ft_etcd_range_info info;
    const char *why = "bad answer";
    rc = ft_etcd_parse_range(ft_strbuf_cstr(&h->body), h->body.len, cfg->key_prefix, out, &info,
                             &why);
    if (rc) {
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "naming: etcd:// range of %s: bad answer (%s)",
                           cfg->key_prefix, why);
        return rc;
    }
    if (info.skipped)
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "naming: etcd:// ignoring %zu bad entries under %s: %s",
                           info.skipped, cfg->key_prefix, info.why);
    if (info.more)
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN,
                           "naming: etcd:// more than %d entries under %s; "
                           "ignoring the rest",
                           FT_NAMING_MAX_ENDPOINTS, cfg->key_prefix);
    if (revision) *revision = info.revision;
    return 0;
}

/* ---- reading ---- */

typedef struct etcd_ns {
    ft_naming base;
    etcd_cfg cfg;
    struct etcd_watch *watch;
} etcd_ns;

static int etcd_open(const ft_naming_url *url, ft_naming **out)
{
    etcd_ns *ns = calloc(1, sizeof *ns);
    if (!ns) return FTRPC_ENOMEM;
    int rc = cfg_parse(url, NULL, &ns->cfg);
    if (!rc) rc = curl_ready();
    if (rc) {
        free(ns);
        return rc;
    }
    *out = &ns->base;
    return 0;
}

static void etcd_close(ft_naming *base)
{
    free(base);
}

static int etcd_fetch(ft_naming *base, ft_endpoint_list *out)
{
    etcd_ns *ns = (etcd_ns *)base;
    etcd_http h;
    int rc = http_init(&h, NULL, NULL);
    if (rc) return rc;
    rc = range_read(&ns->cfg, &h, out, NULL);
    http_fini(&h);
    return rc;
}

/* ---- watching ---- */

typedef struct etcd_watch {
    etcd_ns *ns;
    ft_naming_watch_cb cb;
    void *arg;
    int64_t rescan_ms;
    atomic_bool stop;
    pthread_t thread;
    CURLM *multi;
    etcd_http read; /* full reads, run on `multi` */
    bool read_done;
    CURLcode read_rc;
    /* the stream; all fields below are the watch thread's */
    CURL *stream;
    unsigned stream_host; /* the member the stream is open on */
    char stream_err[CURL_ERROR_SIZE];
    bool stream_done;
    bool stream_created; /* etcd confirmed the watch */
    bool stream_bad;     /* a message was garbage or an error: the stream was dropped */
    bool changed;        /* events arrived since the last full read */
    ft_etcd_splitter split;
    int64_t rev;    /* revision of the last full read */
    int64_t ttl_ms; /* the shortest registration TTL of the last list that had one (0: none) */
} etcd_watch;

/* Runs curl_multi_perform once and notes which of our transfers finished. */
static void watch_pump(etcd_watch *w)
{
    int running;
    curl_multi_perform(w->multi, &running);
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(w->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE) continue;
        if (m->easy_handle == w->read.easy) {
            w->read_done = true;
            w->read_rc = m->data.result;
        } else if (m->easy_handle == w->stream) {
            w->stream_done = true;
        }
    }
}

static void watch_wait(etcd_watch *w, int timeout_ms)
{
    if (timeout_ms > 0 && !atomic_load(&w->stop))
        curl_multi_poll(w->multi, NULL, 0, timeout_ms, NULL);
}

/* A blocking transfer on the watch's multi handle, so the stream keeps flowing meanwhile and a
 * stop interrupts it (curl_multi_wakeup ends the poll; the progress callback aborts). */
static CURLcode watch_perform(etcd_watch *w, CURL *easy)
{
    w->read_done = false;
    if (curl_multi_add_handle(w->multi, easy) != CURLM_OK) return CURLE_OUT_OF_MEMORY;
    for (;;) {
        watch_pump(w);
        if (w->read_done || atomic_load(&w->stop)) break;
        watch_wait(w, 100);
    }
    curl_multi_remove_handle(w->multi, easy);
    return w->read_done ? w->read_rc : CURLE_ABORTED_BY_CALLBACK;
}

static int stream_msg(const char *msg, size_t len, void *arg)
{
    etcd_watch *w = arg;
    ft_etcd_watch_msg m;
    const char *why = "bad message";
    if (ft_etcd_parse_watch(msg, len, &m, &why)) {
        char text[256] = "";
        ft_etcd_parse_error(msg, len, text, sizeof text, NULL);
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "naming: etcd:// watch of %s: %s%s%s; re-opening it",
                           w->ns->cfg.key_prefix, why, text[0] ? ": " : "", text);
        w->stream_bad = true;
        return FTRPC_ERESPONSE;
    }
    if (m.created) w->stream_created = true;
    if (m.events > 0) w->changed = true;
    if (m.canceled || m.compact_revision > 0) {
        /* Compacted past our start, or ended by etcd: read everything again, then re-open. */
        w->changed = true;
        w->stream_bad = true;
        return FTRPC_ECANCELED;
    }
    return 0;
}

static size_t stream_write(char *p, size_t size, size_t n, void *arg)
{
    etcd_watch *w = arg;
    return ft_etcd_splitter_feed(&w->split, p, n, stream_msg, w) == 0 ? n : 0;
}

static void stream_close(etcd_watch *w)
{
    if (!w->stream) return;
    curl_multi_remove_handle(w->multi, w->stream);
    curl_easy_cleanup(w->stream);
    w->stream = NULL;
}

static int stream_open(etcd_watch *w)
{
    etcd_cfg *cfg = &w->ns->cfg;
    char *req = ft_etcd_req_watch(cfg->key_prefix, cfg->range_end, w->rev + 1);
    CURL *e = req ? curl_easy_init() : NULL;
    if (!e) {
        free(req);
        return FTRPC_ENOMEM;
    }
    char url[FT_ADDR_MAX + 64];
    w->stream_host = atomic_load(&cfg->cur) % cfg->nhosts;
    snprintf(url, sizeof url, "http://%s/v3/watch", cfg->hosts[w->stream_host]);
    easy_common(e, w->stream_err, &w->stop, json_headers);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, req);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, stream_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, w);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 10L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 5L);
    free(req);
    ft_etcd_splitter_reset(&w->split);
    w->stream_done = w->stream_created = w->stream_bad = false;
    if (curl_multi_add_handle(w->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        return FTRPC_ENOMEM;
    }
    w->stream = e;
    return 0;
}

/* The shortest registration TTL in `l` (ms), 0 when none has one. */
static int64_t min_ttl_ms(const ft_endpoint_list *l)
{
    int64_t m = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].ttl_ms > 0 && (m == 0 || l->v[i].ttl_ms < m)) m = l->v[i].ttl_ms;
    return m;
}

/* How often to read while the view lists registrations with a TTL: a third of the shortest, so
 * that a registry cut off for longer than it meets a read (see watch_read). */
static int64_t read_interval_ms(const etcd_watch *w)
{
    int64_t d = w->ttl_ms / 3;
    if (d < ETCD_READ_MIN_MS) d = ETCD_READ_MIN_MS;
    return w->ttl_ms > 0 && d < w->rescan_ms ? d : w->rescan_ms;
}

/* One full read, delivered to the view. A read that took more than half the shortest TTL is told
 * to the view as an outage first (an error, then the list): while the registry was out of reach
 * its leases may have expired, and its answer just after the heal may list only the servers that
 * have registered again; the view holds removals for a while after an outage (outage_hold_ms).
 * With reads every third of the TTL, a registry cut off from this client for longer than the TTL
 * meets a read that either fails or hangs until the heal, more than two thirds of the TTL: the
 * view always hears of the outage before the first list read after it. */
static int watch_read(etcd_watch *w)
{
    ft_endpoint_list list = {0};
    int64_t rev = 0;
    int64_t t0 = mono_ms();
    int rc = range_read(&w->ns->cfg, &w->read, &list, &rev);
    if (atomic_load(&w->stop)) {
        ft_endpoint_list_fini(&list);
        return FTRPC_ECANCELED;
    }
    int64_t took = mono_ms() - t0;
    if (rc == 0 && w->ttl_ms > 0 && took > w->ttl_ms / 2) {
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN,
                           "naming: etcd:// a read of %s took %lld ms, over half the shortest "
                           "registration TTL (%lld ms): counted as a registry outage, whose "
                           "expired registrations may still be coming back",
                           w->ns->cfg.key_prefix, (long long)took, (long long)w->ttl_ms);
        w->cb(NULL, FTRPC_ERPCTIMEDOUT, w->arg);
    }
    if (rc == 0) {
        w->rev = rev;
        /* a list that lost its registrations keeps the TTL it had: the pace must not drop to
         * rescan_ms just when expiries are coming back */
        int64_t ttl = min_ttl_ms(&list);
        if (ttl > 0) w->ttl_ms = ttl;
        w->cb(&list, 0, w->arg);
    } else {
        w->cb(NULL, rc, w->arg);
    }
    ft_endpoint_list_fini(&list);
    return rc;
}

static void *watch_main(void *p)
{
    etcd_watch *w = p;
    int64_t next_read = 0; /* due now */
    int64_t read_backoff = ETCD_BACKOFF_MIN_MS;
    int64_t stream_backoff = ETCD_BACKOFF_MIN_MS;
    int64_t stream_at = 0; /* when a closed stream may be re-opened */
    bool last_read_ok = false;
    while (!atomic_load(&w->stop)) {
        int64_t now = mono_ms();
        if (w->changed || now >= next_read) {
            w->changed = false;
            int rc = watch_read(w);
            if (rc == FTRPC_ECANCELED && atomic_load(&w->stop)) break;
            now = mono_ms();
            last_read_ok = rc == 0;
            if (rc == 0) {
                read_backoff = ETCD_BACKOFF_MIN_MS;
                next_read = now + read_interval_ms(w);
                /* The read went to another member than the stream's: the stream's member failed
                 * the read (down, or cut off from its peers, where a stream stays open and stays
                 * silent). Follow the member that answers. */
                unsigned cur = atomic_load(&w->ns->cfg.cur) % w->ns->cfg.nhosts;
                if (w->stream && cur != w->stream_host) {
                    FT_LOG_RATELIMITED(FTRPC_LOG_WARN,
                                       "naming: etcd:// moving the watch of %s from %s to %s, "
                                       "which answered the last read",
                                       w->ns->cfg.key_prefix, w->ns->cfg.hosts[w->stream_host],
                                       w->ns->cfg.hosts[cur]);
                    stream_close(w);
                    stream_at = now;
                }
            } else {
                /* A stream to an etcd that no read reaches is likely dead too (a partition
                 * leaves it open): re-open it after the next good read. */
                stream_close(w);
                /* Retry sooner than rescan_ms while the registry is down, so the stream is back
                 * soon after it is. */
                int64_t d = read_backoff < read_interval_ms(w) ? read_backoff : read_interval_ms(w);
                next_read = now + d;
                read_backoff = read_backoff * 2 > ETCD_READ_RETRY_MAX_MS ? ETCD_READ_RETRY_MAX_MS
                                                                         : read_backoff * 2;
            }
        }
        if (!w->stream && last_read_ok && now >= stream_at && stream_open(w) != 0)
            stream_at = now + ETCD_BACKOFF_MAX_MS;
        watch_pump(w);
        if (w->stream && w->stream_done) {
            long code = 0;
            curl_easy_getinfo(w->stream, CURLINFO_RESPONSE_CODE, &code);
            if (!w->stream_bad)
                FT_LOG_RATELIMITED(FTRPC_LOG_INFO,
                                   "naming: etcd:// watch of %s ended (HTTP %ld, %s); "
                                   "re-opening it",
                                   w->ns->cfg.key_prefix, code,
                                   w->stream_err[0] ? w->stream_err : "closed by etcd");
            /* A stream that worked is re-opened soon; one that keeps failing, with backoff. */
            stream_backoff = w->stream_created
                                 ? ETCD_BACKOFF_MIN_MS
                                 : (stream_backoff * 2 > ETCD_BACKOFF_MAX_MS ? ETCD_BACKOFF_MAX_MS
                                                                             : stream_backoff * 2);
            stream_at = mono_ms() + stream_backoff;
            stream_close(w);
            /* Changes may have been missed while it was down, and the read says whether etcd
             * is still there. */
            w->changed = true;
            continue;
        }
        if (w->changed) continue;
        now = mono_ms();
        int64_t until = next_read;
        if (!w->stream && last_read_ok && stream_at < until) until = stream_at;
        int64_t t = until - now;
        if (t > 1000) t = 1000;
        watch_wait(w, (int)(t < 1 ? 1 : t));
    }
    stream_close(w);
    return NULL;
}

static void watch_free(etcd_watch *w)
{
    http_fini(&w->read);
    if (w->multi) curl_multi_cleanup(w->multi);
    ft_etcd_splitter_fini(&w->split);
    free(w);
}

static int etcd_watch_start(ft_naming *base, const ft_naming_watch_opts *opts,
                            ft_naming_watch_cb cb, void *arg)
{
    etcd_ns *ns = (etcd_ns *)base;
    if (ns->watch) return FTRPC_EEXIST;
    etcd_watch *w = calloc(1, sizeof *w);
    if (!w) return FTRPC_ENOMEM;
    w->ns = ns;
    w->cb = cb;
    w->arg = arg;
    w->rescan_ms = opts && opts->rescan_ms > 0 ? opts->rescan_ms : 5000;
    atomic_init(&w->stop, false);
    ft_etcd_splitter_init(&w->split, FT_ETCD_RESPONSE_MAX);
    int rc = http_init(&w->read, &w->stop, w);
    if (!rc && !(w->multi = curl_multi_init())) rc = FTRPC_ENOMEM;
    if (!rc && pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        FT_ERROR("naming: etcd:// cannot start its watch thread");
        rc = FTRPC_ESYS;
    }
    if (rc) {
        watch_free(w);
        return rc;
    }
    ns->watch = w;
    return 0;
}

static void etcd_watch_stop(ft_naming *base)
{
    etcd_ns *ns = (etcd_ns *)base;
    etcd_watch *w = ns->watch;
    if (!w) return;
    atomic_store(&w->stop, true);
    curl_multi_wakeup(w->multi);
    pthread_join(w->thread, NULL);
    watch_free(w);
    ns->watch = NULL;
}

/* ---- registering ---- */

typedef struct etcd_reg {
    ft_naming_reg base;
    etcd_cfg cfg;
    etcd_http http;
    char key[ETCD_KEY_PREFIX_MAX + FT_ADDR_MAX];
    char value[FT_ETCD_VALUE_MAX + 1];
    ft_endpoint ep; /* what value holds; its ttl_ms follows the lease etcd granted */
    int64_t ttl_s;  /* asked for */
    int64_t lease;  /* held now, 0 for none */
    int last_rc;    /* to log a failure once per kind, not every interval */
    bool told_ttl;  /* logged that etcd raised the TTL */
} etcd_reg;

static int etcd_reg_open(const ft_naming_url *url, const ft_registration *r, ft_naming_reg **out)
{
    etcd_reg *reg = calloc(1, sizeof *reg);
    if (!reg) return FTRPC_ENOMEM;
    int rc = cfg_parse(url, r->service, &reg->cfg);
    ft_endpoint ep = {.weight = r->weight ? r->weight : FT_WEIGHT_DEFAULT};
    if (!rc && r->ttl_ms >= 1 && r->ttl_ms <= ETCD_TTL_MAX_MS)
        ep.ttl_ms = (r->ttl_ms + 999) / 1000 * 1000;
    if (!rc && r->id) snprintf(ep.id, sizeof ep.id, "%s", r->id);
    if (!rc && (r->ttl_ms < 1 || r->ttl_ms > ETCD_TTL_MAX_MS || !r->addr ||
                (size_t)snprintf(ep.addr, sizeof ep.addr, "%s", r->addr) >= sizeof ep.addr ||
                (size_t)snprintf(ep.tags, sizeof ep.tags, "%s", r->tags ? r->tags : "") >=
                    sizeof ep.tags ||
                ft_etcd_value_format(&ep, reg->value, sizeof reg->value) < 0)) {
        FT_WARN("naming: etcd:// registration of %s is invalid (ttl 1 ms..1 day, addr, tags)",
                r->addr ? r->addr : "(null)");
        rc = FTRPC_EINVAL;
    }
    if (!rc) {
        snprintf(reg->key, sizeof reg->key, "%s%s", reg->cfg.key_prefix, ep.addr);
        reg->ep = ep;
        reg->ttl_s = (r->ttl_ms + 999) / 1000;
        rc = http_init(&reg->http, NULL, NULL);
    }
    if (rc) {
        free(reg);
        return rc;
    }
    *out = &reg->base;
    return 0;
}

/* Logs a failure once per kind; returns rc. */
static int reg_fail(etcd_reg *reg, const char *what, int rc)
{
    if (rc != reg->last_rc)
        FT_ERROR("naming: etcd:// cannot %s %s: %s (the server keeps serving; retrying)", what,
                 reg->key, ftrpc_strerror(rc));
    reg->last_rc = rc;
    return rc;
}

static int put_key(etcd_reg *reg, int64_t lease)
{
    int64_t rev;
    int rc = http_call(&reg->cfg, &reg->http, "/v3/kv/put",
                       ft_etcd_req_put(reg->key, reg->value, lease), NULL);
    if (!rc)
        rc = ft_etcd_parse_header(ft_strbuf_cstr(&reg->http.body), reg->http.body.len, &rev, NULL);
    return rc;
}

/* Revokes a lease, which deletes the keys still bound to it. A lease etcd no longer has (404) is
 * as good as revoked. */
static int revoke(etcd_reg *reg, int64_t lease)
{
    long status = 0;
    int rc =
        http_call(&reg->cfg, &reg->http, "/v3/lease/revoke", ft_etcd_req_lease(lease), &status);
    if (rc == FTRPC_ERESPONSE && status == 404) return 0;
    return rc;
}

static int etcd_reg_register(ft_naming_reg *base)
{
    etcd_reg *reg = (etcd_reg *)base;
    int64_t id = 0, ttl = 0;
    const char *why = "bad answer";
    int rc =
        http_call(&reg->cfg, &reg->http, "/v3/lease/grant", ft_etcd_req_grant(reg->ttl_s), NULL);
    if (!rc &&
        ft_etcd_parse_grant(ft_strbuf_cstr(&reg->http.body), reg->http.body.len, &id, &ttl, &why)) {
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "naming: etcd:// lease grant: %s", why);
        rc = FTRPC_ERESPONSE;
    }
    if (rc) return reg_fail(reg, "get a lease for", rc);
    if (ttl != reg->ttl_s && !reg->told_ttl) {
        FT_INFO("naming: etcd:// asked for a %lld s lease, etcd granted %lld s (its minimum TTL)",
                (long long)reg->ttl_s, (long long)ttl);
        reg->told_ttl = true;
    }
    /* the value tells readers the TTL the key really lives by (their stale bound reads it) */
    if (ttl > 0 && ttl * 1000 != reg->ep.ttl_ms && ttl * 1000 <= FT_ETCD_TTL_MAX_MS) {
        reg->ep.ttl_ms = ttl * 1000;
        if (ft_etcd_value_format(&reg->ep, reg->value, sizeof reg->value) < 0) {
            FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "naming: etcd:// value of %s does not fit",
                               reg->key);
            revoke(reg, id);
            return reg_fail(reg, "put", FTRPC_EINVAL);
        }
    }
    rc = put_key(reg, id);
    if (rc) {
        revoke(reg, id);
        return reg_fail(reg, "put", rc);
    }
    int64_t old = reg->lease;
    reg->lease = id;
    if (old && old != id) revoke(reg, old); /* the key left it: this deletes nothing */
    if (reg->last_rc)
        FT_WARN("naming: etcd:// %s registered again (lease %lld)", reg->key, (long long)id);
    else
        FT_DEBUG("naming: etcd:// %s registered (lease %lld, ttl %lld s)", reg->key, (long long)id,
                 (long long)ttl);
    reg->last_rc = 0;
    return 0;
}

static int etcd_reg_refresh(ft_naming_reg *base)
{
    etcd_reg *reg = (etcd_reg *)base;
    if (!reg->lease) return etcd_reg_register(base);
    int64_t ttl = 0;
    const char *why = "bad answer";
    int rc = http_call(&reg->cfg, &reg->http, "/v3/lease/keepalive", ft_etcd_req_lease(reg->lease),
                       NULL);
    if (!rc &&
        ft_etcd_parse_keepalive(ft_strbuf_cstr(&reg->http.body), reg->http.body.len, &ttl, &why)) {
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "naming: etcd:// keepalive: %s", why);
        rc = FTRPC_ERESPONSE;
    }
    if (rc) return reg_fail(reg, "keep alive the lease of", rc);
    if (ttl <= 0) {
        FT_WARN("naming: etcd:// lease %lld of %s is gone (expired or lost); registering again",
                (long long)reg->lease, reg->key);
        reg->lease = 0; /* nothing to revoke */
        return etcd_reg_register(base);
    }
    /* The key may have been deleted by hand while the lease lives: put it back. */
    rc = http_call(&reg->cfg, &reg->http, "/v3/kv/range",
                   ft_etcd_req_range(reg->key, NULL, true, 0), NULL);
    ft_etcd_range_info info;
    ft_endpoint_list none = {0};
    bool missing = !rc &&
                   ft_etcd_parse_range(ft_strbuf_cstr(&reg->http.body), reg->http.body.len,
                                       reg->cfg.key_prefix, &none, &info, NULL) == 0 &&
                   info.count == 0;
    ft_endpoint_list_fini(&none);
    if (missing) {
        FT_WARN("naming: etcd:// %s was deleted while its lease lives; putting it back", reg->key);
        rc = put_key(reg, reg->lease);
        if (rc) return reg_fail(reg, "put", rc);
    }
    reg->last_rc = 0;
    return 0;
}

static int etcd_reg_deregister(ft_naming_reg *base)
{
    etcd_reg *reg = (etcd_reg *)base;
    if (!reg->lease) return 0;
    int rc = revoke(reg, reg->lease);
    if (rc) {
        FT_WARN("naming: etcd:// cannot revoke lease %lld of %s (%s); it expires after its TTL",
                (long long)reg->lease, reg->key, ftrpc_strerror(rc));
        return rc;
    }
    reg->lease = 0;
    return 0;
}

static void etcd_reg_close(ft_naming_reg *base)
{
    etcd_reg *reg = (etcd_reg *)base;
    http_fini(&reg->http);
    free(reg);
}

const ft_naming_ops ft_naming_etcd_ops = {
    .scheme = "etcd",
    .open = etcd_open,
    .close = etcd_close,
    .fetch = etcd_fetch,
    .watch_start = etcd_watch_start,
    .watch_stop = etcd_watch_stop,
    .reg_open = etcd_reg_open,
    .reg_register = etcd_reg_register,
    .reg_refresh = etcd_reg_refresh,
    .reg_deregister = etcd_reg_deregister,
    .reg_close = etcd_reg_close,
};
