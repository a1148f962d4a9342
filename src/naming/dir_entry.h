/* The dir:// registry's entry file: format, strict parser, formatter, liveness rule.
 *
 * An entry is a small text file, one "key=value" per line, every line ending in '\n':
 *
 *     ftrpc-dir-entry 1
 *     service=example.EchoService
 *     addr=127.0.0.1:8000
 *     weight=100
 *     tags=a|b
 *     pid=4242
 *     ttl_ms=90000
 *     refreshed_ms=1795000000000
 *     id=0b5c6f2e-6a1d-4c51-9a8e-2f0d3c4b5a69
 *
 * The first line is the magic and version. Every key but `id` is required, exactly once, in any
 * order; `tags=` may be empty. `id` (the instance id, 1..63 chars of [A-Za-z0-9_.-]) is optional,
 * at most once: registrars before it wrote none (their entries have an empty id), and readers
 * before it reject a file that has one (a registry shared by two versions needs the readers
 * upgraded first). Unknown keys, duplicate keys, a missing final '\n' (a truncated file),
 * NUL bytes, blank lines, spaces around '=', numbers with signs or leading '+', and files larger
 * than FT_DIR_ENTRY_MAX are rejected. `refreshed_ms` is wall-clock time (CLOCK_REALTIME, ms since
 * the epoch): entries outlive the processes and boots that wrote them, and monotonic time does not.
 * `ttl_ms` is the writer's TTL: each instance says how long its entry lives.
 *
 * The parser is a pure function over untrusted bytes (a libFuzzer target drives it): bounded by
 * FT_DIR_ENTRY_MAX, no allocation, no IO, no assert on input. It does not log; callers do. */
#ifndef FT_NAMING_DIR_ENTRY_H
#define FT_NAMING_DIR_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "naming/naming.h"

#define FT_DIR_ENTRY_MAX 1024 /* bytes; larger files are rejected unread */
#define FT_DIR_ENTRY_MAGIC "ftrpc-dir-entry 1"
#define FT_DIR_TTL_MAX_MS 86400000LL /* a day: longer TTLs are rejected as garbage */

typedef struct ft_dir_entry {
    char service[FT_SERVICE_MAX];
    ft_endpoint ep; /* addr, weight, tags */
    int32_t pid;    /* 1..INT32_MAX: informational (who wrote it) */
    int64_t ttl_ms; /* 1..FT_DIR_TTL_MAX_MS */
    int64_t refreshed_ms;
} ft_dir_entry; /* ep.id is the instance id ("" when the file has none) */

/* Parses one entry file's bytes. Writes *out only on success. 0 or FTRPC_EINVAL; `why`, when not
 * NULL, receives a static description of the first problem found. Any thread. */
int ft_dir_entry_parse(const char *buf, size_t len, ft_dir_entry *out, const char **why);

/* Formats *e into buf (cap bytes). Returns the length written (no NUL counted) or FTRPC_EINVAL when
 * the entry would not parse back or does not fit. */
int ft_dir_entry_format(const ft_dir_entry *e, char *buf, size_t cap);

/* Age of an entry at wall time now_ms (negative when written "in the future"). */
static inline int64_t ft_dir_entry_age_ms(const ft_dir_entry *e, int64_t now_ms)
{
    return now_ms - e->refreshed_ms;
}
/* Alive: refreshed within its TTL. A time more than one TTL in the future (a clock step, a
 * foreign boot) counts as dead too, so a bogus time cannot pin an entry forever. */
static inline bool ft_dir_entry_alive(const ft_dir_entry *e, int64_t now_ms)
{
    int64_t age = ft_dir_entry_age_ms(e, now_ms);
    return age <= e->ttl_ms && age >= -e->ttl_ms;
}
/* Reapable: dead for long enough that any reader may delete the file (age > 2 x TTL). */
static inline bool ft_dir_entry_reapable(const ft_dir_entry *e, int64_t now_ms)
{
    int64_t age = ft_dir_entry_age_ms(e, now_ms);
    return age > 2 * e->ttl_ms || age < -2 * e->ttl_ms;
}

/* The entry file name of an instance: "<service>@<addr>.entry" with ':' '[' ']' mapped to '_'
 * (so one address registers once per service; a restarted server overwrites its dead entry).
 * 0 or FTRPC_EINVAL when it does not fit. */
int ft_dir_entry_filename(const char *service, const char *addr, char *buf, size_t cap);

/* Scans a registry folder for live entries of `service` at wall time now_ms, appending their
 * endpoints to *out. Garbage entries are logged (rate-limited) and skipped, each file on its own.
 * When `reap` is true, entries past 2 x TTL are deleted (best effort). 0, or FTRPC_ESYS when the
 * folder cannot be read (gone, not a folder, no permission), FTRPC_ENOMEM. */
int ft_dir_scan(const char *folder, const char *service, int64_t now_ms, bool reap,
                ft_endpoint_list *out);

/* Wall-clock now in ms (CLOCK_REALTIME), the time scale of refreshed_ms. */
int64_t ft_dir_wall_ms(void);

#endif
