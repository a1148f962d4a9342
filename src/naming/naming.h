/* Discovery: naming services behind one small interface, chosen by the URL's scheme.
 *
 * A naming URL is `scheme://body[?key=value&key=value]`. Built-in schemes (docs/discovery.md):
 *   list://ADDR[ OPT...][,ADDR[ OPT...]]...   static list; OPT is `w=N` or `tag=a|b`
 *   file:///abs/path                            one endpoint per line, re-read when it changes
 *   dir:///abs/folder?service=NAME              the embedded one-host registry (no daemon)
 *   etcd://h:p[,h:p...][/prefix]?service=NAME   etcd v3 (when built with libcurl and json-c)
 *
 * Three kinds of objects live here:
 *   - ft_naming: one open naming service (a backend instance), used by one thread at a time.
 *   - ft_registrar: keeps one server instance registered (TTL + interval) on its own thread.
 *   - the endpoint record and list that every backend produces.
 * The client's cached view (snapshots, stale and grace rules, listeners) is in naming_view.h.
 *
 * How a new scheme plugs in (e.g. etcd://): write src/naming/naming_<scheme>.c that defines one
 * `const ft_naming_ops ft_naming_<scheme>_ops` (the vtable below), add it to the BUILTIN table in
 * naming.c (or call ft_naming_register_ops() at start-up), and document it in docs/discovery.md.
 * A backend embeds `ft_naming` as the first member of its own struct (and `ft_naming_reg` for its
 * registrations), so the generic code can hand it back (it sets `ops` after open/reg_open
 * return). Everything a backend needs from the URL is in ft_naming_url; everything it owes the
 * caller is spelt out at each vtable slot. A backend on local files can watch with
 * ft_folder_watch (bottom of this file); a network backend (etcd://: long-poll watch, lease
 * keep-alive) runs its own thread in watch_start and stops it in watch_stop. The cached view,
 * its stale/grace rules and the registrar thread then work unchanged on top of it.
 *
 * This module does not balance load, keep endpoint health or open connections (cluster/, io/),
 * and it does not percent-decode URLs: bodies and query values are taken byte for byte. */
#ifndef FT_NAMING_NAMING_H
#define FT_NAMING_NAMING_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "ftrpc/common.h"

/* ---- endpoint records ---- */

#define FT_ADDR_MAX 128       /* "host:port" or "[v6]:port", NUL included */
#define FT_TAGS_MAX 256       /* "a|b|c", NUL included */
#define FT_SERVICE_MAX 128    /* service name, NUL included */
#define FT_ID_MAX 64          /* instance id, NUL included */
#define FT_WEIGHT_DEFAULT 100 /* weight of an endpoint that names none (ftrpc's choice) */
#define FT_WEIGHT_MAX 65535   /* weights are 1..FT_WEIGHT_MAX */
/* The longest list a backend delivers: list:// and file:// refuse a longer one (a typo must not
 * drop servers silently), dir:// and etcd:// keep this many of what the registry holds and log a
 * WARN (a registry is written by others: one writer too many must not hide the rest). */
#define FT_NAMING_MAX_ENDPOINTS 4096

/* One endpoint as discovery knows it. Plain data: copy it freely. */
typedef struct ft_endpoint {
    char addr[FT_ADDR_MAX]; /* "host:port"; host is IPv4, a DNS name, or [IPv6] */
    uint32_t weight;        /* 1..FT_WEIGHT_MAX; FT_WEIGHT_DEFAULT when not given */
    char tags[FT_TAGS_MAX]; /* '|'-separated tags of [A-Za-z0-9_.-], "" for none */
    /* The registration's instance id (go-micro's Node.Id): 1..63 chars of [A-Za-z0-9_.-], unique
     * per registration; "" when the source has none (list://, file://, older registrars). */
    char id[FT_ID_MAX];
    /* The registration's TTL in ms (dir:// ttl_ms, etcd:// the lease's); 0 when the source has
     * none. The view's stale bound drops an entry only once this has passed (naming_view.h). */
    int64_t ttl_ms;
} ft_endpoint;

/* A growable array of endpoints, owned by whoever holds the struct. Zero-initialised is empty. */
typedef struct ft_endpoint_list {
    ft_endpoint *v;
    size_t n;
    size_t cap;
} ft_endpoint_list;

/* Appends a copy of *ep. 0, FTRPC_ENOMEM, or FTRPC_EINVAL past FT_NAMING_MAX_ENDPOINTS. */
int ft_endpoint_list_add(ft_endpoint_list *list, const ft_endpoint *ep);
/* Frees the array and leaves the list empty (reusable). */
void ft_endpoint_list_fini(ft_endpoint_list *list);
/* Drops later duplicates of an address, keeping the order otherwise: the form the view compares
 * and publishes. Order matters to the priority balancer, so backends whose source has no order
 * of its own (a folder, a key range) sort their lists (ft_endpoint_list_sort) to stay stable. */
void ft_endpoint_list_normalize(ft_endpoint_list *list);
/* Sorts by address. */
void ft_endpoint_list_sort(ft_endpoint_list *list);
/* True when both lists hold the same endpoints (address, weight, tags, id, TTL) in the same order
 * (normalise both first). */
bool ft_endpoint_list_equal(const ft_endpoint_list *a, const ft_endpoint_list *b);
/* True when ep carries `tag` (exact match of one '|'-separated tag). */
bool ft_endpoint_has_tag(const ft_endpoint *ep, const char *tag);

/* Checks "host:port" (len bytes, no NUL needed): port 1..65535; host an IPv4 dotted quad, a DNS
 * name of [A-Za-z0-9.-], or [IPv6] (hex digits, ':' and '.'). 0 or FTRPC_EADDR. Pure. */
int ft_addr_check(const char *s, size_t len);
/* Checks a tags value "a|b" (may be empty): tags are 1..63 chars of [A-Za-z0-9_.-]. 0 or
 * FTRPC_EINVAL. Pure. */
int ft_tags_check(const char *s, size_t len);
/* Checks a service name: 1..127 chars of [A-Za-z0-9_.-]. 0 or FTRPC_EINVAL. Pure. */
int ft_service_check(const char *s, size_t len);
/* Checks an instance id: 1..63 chars of [A-Za-z0-9_.-]. 0 or FTRPC_EINVAL. Pure. */
int ft_id_check(const char *s, size_t len);
/* Writes a new random instance id, a UUID v4 ("8-4-4-4-12" lowercase hex, as go-micro's
 * uuid.New()), into buf (at least 37 bytes). Any thread. */
void ft_id_generate(char *buf, size_t cap);

/* Parses one endpoint spec of list:// and file://, e.g. "127.0.0.1:8000 w=50 tag=a|b":
 * the address, then options separated by spaces, tabs or ';'. Options: `w=N` (alias
 * `weight=N`, 1..65535) and `tag=a|b` (alias `tags=`), each at most once. Leading and trailing
 * blanks are ignored. Writes *out only on success. 0, FTRPC_EADDR (address) or FTRPC_EINVAL. */
int ft_endpoint_parse(const char *s, size_t len, ft_endpoint *out);

/* Parses the text of a file:// list: one endpoint spec (as ft_endpoint_parse) per line; '#'
 * starts a comment; blank lines are skipped; lines end in "\n" or "\r\n". Any bad line fails the
 * whole text (FTRPC_EINVAL, logged with its line number): a half-edited file must not silently
 * drop servers; the view then keeps the last good list. Appends to *out; on error *out is freed.
 * Pure apart from the log line. */
#define FT_FILE_LIST_MAX (1 << 20) /* file:// files larger than 1 MiB are refused */
int ft_file_list_parse(const char *buf, size_t len, ft_endpoint_list *out);

/* ---- naming URLs ---- */

#define FT_URL_MAX 4096     /* longest accepted naming URL */
#define FT_URL_PARAMS_MAX 8 /* most query parameters accepted */

/* A parsed naming URL. Every string points into `buf` (owned by the struct): valid until
 * ft_naming_url_fini(). */
typedef struct ft_naming_url {
    char scheme[16];  /* lowercased, e.g. "dir" */
    const char *body; /* between "://" and '?' (e.g. "/tmp/reg"), never NULL, may be "" */
    size_t nparams;
    struct {
        const char *key;
        const char *value; /* "" for "key" or "key=" */
    } params[FT_URL_PARAMS_MAX];
    char *buf;
} ft_naming_url;

/* Parses `scheme://body[?k=v&...]`. Scheme: 1..15 chars of [a-z0-9+.-] starting with a letter
 * (case-insensitive). Keys: 1..31 chars of [a-z_]. No '?' or '&' inside the body, no control
 * characters anywhere, at most FT_URL_MAX bytes, no duplicate keys. Does not check that the scheme
 * is known (ft_naming_open does). 0, FTRPC_EADDR (with a log line) or FTRPC_ENOMEM. */
int ft_naming_url_parse(const char *url, ft_naming_url *out);
void ft_naming_url_fini(ft_naming_url *url);
/* The value of query key `key`, or NULL when absent. */
const char *ft_naming_url_param(const ft_naming_url *url, const char *key);
/* FTRPC_EADDR (and a log line) when the URL has a key outside `allowed` (NULL-terminated) and
 * FT_URL_PROTOCOL_KEY, or a bad value of the latter. */
int ft_naming_url_only_params(const ft_naming_url *url, const char *const *allowed);

/* The one query key every scheme takes beside its own: protocol=baidu_std|grpc, the wire protocol
 * of the clients that use the URL. Names the servers' protocol where their list lives. The naming
 * layer checks the value and carries it; the client acts on it (docs/discovery.md). */
#define FT_URL_PROTOCOL_KEY "protocol"
typedef enum ft_url_protocol {
    FT_URL_PROTOCOL_NONE = 0, /* no protocol= */
    FT_URL_PROTOCOL_BAIDU_STD,
    FT_URL_PROTOCOL_GRPC,
} ft_url_protocol;
/* *out = the URL's protocol= (FT_URL_PROTOCOL_NONE when absent). 0, or FTRPC_EADDR (and a log
 * line naming the values it takes) for another value. */
int ft_naming_url_protocol(const ft_naming_url *url, ft_url_protocol *out);

/* ---- the backend interface ---- */

typedef struct ft_naming ft_naming;
typedef struct ft_naming_reg ft_naming_reg;
typedef struct ft_naming_ops ft_naming_ops;

/* Watch callback. Exactly one of: `list` non-NULL and err == 0 (the complete current list,
 * valid only during the call; copy what you keep), or list == NULL and err < 0 (the registry
 * could not be read this time). Runs on the backend's watch thread (or inside watch_start for
 * backends that never change), never concurrently with itself for one watch; must not block long
 * and must not call watch_stop (on any ft_naming: folder watches share one thread). */
typedef void (*ft_naming_watch_cb)(const ft_endpoint_list *list, int err, void *arg);

typedef struct ft_naming_watch_opts {
    /* A full re-read at least this often even without change notifications, so that missed
     * events, TTL expiry and outages are noticed; every re-read is delivered to the callback,
     * changed or not (the view's time rules advance on it). Default 5000 ms (ftrpc's choice). */
    int64_t rescan_ms;
} ft_naming_watch_opts;

/* What a server instance registers. Strings are copied by reg_open. */
typedef struct ft_registration {
    const char *service; /* required for dir://; a backend may take it from the URL instead */
    const char *addr;    /* required, "host:port" */
    uint32_t weight;     /* 0 = FT_WEIGHT_DEFAULT */
    const char *tags;    /* "a|b", NULL or "" for none */
    int64_t ttl_ms;      /* validated by ft_registrar_start before it reaches a backend */
    const char *id;      /* the instance id, checked and never NULL (ft_registrar_start) */
} ft_registration;

/* The vtable of one scheme. Slots a scheme cannot serve are NULL (list:// and file:// have no
 * registrar). All slots return 0 or a negative FTRPC_E* code; none may block for more than a few
 * seconds (bounded timeouts are the backend's job). */
struct ft_naming_ops {
    const char *scheme; /* lowercase, e.g. "dir" */

    /* Opens a naming service for `url` (scheme already matched). Validates the body and the
     * query (unknown keys are an error: FTRPC_EADDR). Does no IO that may block long. */
    int (*open)(const ft_naming_url *url, ft_naming **out);
    /* Frees what open made. The watch, if any, has been stopped first. */
    void (*close)(ft_naming *ns);
    /* Reads the current list once into *out (an empty list on entry). On error *out is left
     * empty. An empty list is a valid answer (no endpoints), not an error. */
    int (*fetch)(ft_naming *ns, ft_endpoint_list *out);
    /* Starts delivering lists to cb until watch_stop. Delivers the first list (or error) promptly
     * and then on every change and at least every opts->rescan_ms. At most one watch per ns. */
    int (*watch_start)(ft_naming *ns, const ft_naming_watch_opts *opts, ft_naming_watch_cb cb,
                       void *arg);
    /* Stops the watch promptly (no waiting for the rescan period); after it returns the callback
     * never runs again. No-op when not watching. */
    void (*watch_stop)(ft_naming *ns);

    /* Registrar side. reg_open prepares one registration (no IO that may block long);
     * reg_register creates it in the registry; reg_refresh extends its life (it may return an
     * error that means "gone, register again"); reg_deregister removes it; reg_close frees.
     * The generic ft_registrar calls these from its own thread, one at a time. */
    int (*reg_open)(const ft_naming_url *url, const ft_registration *r, ft_naming_reg **out);
    int (*reg_register)(ft_naming_reg *reg);
    int (*reg_refresh)(ft_naming_reg *reg);
    int (*reg_deregister)(ft_naming_reg *reg);
    void (*reg_close)(ft_naming_reg *reg);
};

/* The common head of every backend instance. */
struct ft_naming {
    const ft_naming_ops *ops;
};
struct ft_naming_reg {
    const ft_naming_ops *ops;
};

/* Adds a scheme at run time (the built-in ones need no call). `ops` must outlive the process.
 * 0, FTRPC_EEXIST (scheme taken), FTRPC_EINVAL, or FTRPC_ENOMEM. Any thread. */
int ft_naming_register_ops(const ft_naming_ops *ops);
/* The vtable of a scheme, or NULL. Any thread. */
const ft_naming_ops *ft_naming_find_ops(const char *scheme);

/* Opens the naming service a URL names. 0, FTRPC_EADDR (bad URL or unknown scheme, logged),
 * FTRPC_ENOMEM, or the backend's error. The caller owns *out and frees it with ft_naming_close. */
int ft_naming_open(const char *url, ft_naming **out);
/* Stops any watch and frees. NULL is a no-op. */
void ft_naming_close(ft_naming *ns);
/* One synchronous read (see ops->fetch). */
int ft_naming_fetch(ft_naming *ns, ft_endpoint_list *out);
/* See ops->watch_start / watch_stop. opts may be NULL (defaults). */
int ft_naming_watch_start(ft_naming *ns, const ft_naming_watch_opts *opts, ft_naming_watch_cb cb,
                          void *arg);
void ft_naming_watch_stop(ft_naming *ns);

/* ---- registrar (server side) ---- */

typedef struct ft_registrar ft_registrar;

typedef struct ft_registrar_opts {
    const char *url;  /* required: e.g. "dir:///tmp/reg?service=example.EchoService" */
    const char *addr; /* required: the address clients should dial, "host:port" */
    uint32_t weight;  /* default FT_WEIGHT_DEFAULT (100) */
    const char *tags; /* default none; "a|b" */
    /* An entry not refreshed for this long is dead. Default 90000 ms (go-micro's 90 s). */
    int64_t register_ttl_ms;
    /* Refresh period, and the retry period after a failure. Must be < register_ttl_ms
     * (otherwise FTRPC_EINVAL). Default 30000 ms (go-micro's 30 s). */
    int64_t register_interval_ms;
    /* The instance id written in the entry: 1..63 chars of [A-Za-z0-9_.-]. Default NULL: a new
     * UUID v4 per registrar (go-micro: uuid.New() per server), see ft_registrar_id. */
    const char *id;
} ft_registrar_opts;

/* Validates the options, registers once synchronously (a failure is logged, not returned: the
 * server must serve through a registry outage), then refreshes every interval on a thread of
 * its own, re-registering after any failure. Returns FTRPC_EINVAL for bad options (interval >= ttl,
 * missing addr, bad weight or tags), FTRPC_EADDR for a bad URL or a scheme without a registrar,
 * FTRPC_ENOMEM or FTRPC_ESYS (thread). The caller owns *out. Any thread. */
int ft_registrar_start(const ft_registrar_opts *opts, ft_registrar **out);
/* Stops the thread promptly, deregisters (a clean stop removes the entry), frees. NULL is a
 * no-op. Any thread except a registrar callback (there are none). */
void ft_registrar_stop(ft_registrar *r);
/* 0 when the last attempt succeeded, else its error. Any thread. */
int ft_registrar_status(const ft_registrar *r);
/* The instance id the registrar writes (given or generated); valid until stop. Any thread. */
const char *ft_registrar_id(const ft_registrar *r);
/* How many register/refresh attempts succeeded and failed so far. Any thread. */
void ft_registrar_counts(const ft_registrar *r, uint64_t *ok, uint64_t *failed);

/* ---- small thread helpers shared by the registrar and the view ---- */

/* Initialises *cond to time its waits on CLOCK_MONOTONIC (wall-clock steps must not stretch or
 * cut a refresh interval). */
void ft_naming_cond_init(pthread_cond_t *cond);
/* The CLOCK_MONOTONIC time `ms` from now, for pthread_cond_timedwait on such a cond. */
struct timespec ft_naming_deadline(int64_t ms);

/* ---- shared helper for folder-watching backends (file://, dir://) ---- */

/* Watches one folder with inotify (re-armed when the folder appears, vanishes or is replaced) and
 * calls ns's `fetch` then `cb` at start, after every burst of relevant events and every rescan_ms.
 * All folder watches of the process share one watcher thread (naming_watch.c says why), so
 * `fetch` must be quick and `cb` must not block. Stop is prompt (an eventfd wakes the poll) and
 * must not be called from a watch callback (it aborts: it would wait for itself). Any thread. */
typedef struct ft_folder_watch ft_folder_watch;
int ft_folder_watch_start(ft_naming *ns, const char *folder, const ft_naming_watch_opts *opts,
                          ft_naming_watch_cb cb, void *arg, ft_folder_watch **out);
void ft_folder_watch_stop(ft_folder_watch *w);

#endif
