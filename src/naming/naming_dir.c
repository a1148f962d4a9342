/* dir:///abs/folder?service=NAME[&fsync=1] — the embedded registry for one host, no daemon.
 *
 * Server side (the registrar ops): each instance owns one file "<service>@<addr>.entry" in the
 * folder (format in dir_entry.h), written atomically: a temp file ".<name>.<pid>.<n>.tmp" in the
 * same folder, optionally fsync'd (fsync=1), then rename()d over the entry. Every refresh rewrites
 * it with a new refreshed_ms. Deregistering unlinks it. A missing folder is created (mkdir -p), so
 * a registry wiped by a cleaner comes back at the next refresh.
 *
 * Client side (the reader ops): a scan lists the folder, reads only files named for the service,
 * parses each strictly (garbage is logged and skipped, one file at a time: one bad entry never
 * hides the others), keeps entries refreshed within their TTL, and deletes entries dead for more
 * than 2 x TTL (a crashed server leaves its file behind) and abandoned temp files older than a
 * minute. The watch is ft_folder_watch: inotify on the folder plus a periodic rescan, which is also
 * what notices TTL expiry (no file event happens when a server dies).
 *
 * Races, and why they are harmless: a reader may read an entry just before its refresh rename and
 * see the older (still live) version; a reaper that found a dead file checks, just before
 * unlinking, that the name still points at the inode it read, and in the remaining window may
 * delete a fresh entry, which its registrar rewrites within one interval.
 *
 * Service filter choice: a query parameter rather than a sub-folder per service, so one folder
 * (one inotify watch, one thing to clean) serves every service of the host, and the file name
 * already lets a reader skip other services' files without opening them. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "naming/dir_entry.h"
#include "naming/naming.h"

#define DIR_SCAN_MAX_FILES 65536 /* a folder with more files than this is not a registry */

int64_t ft_dir_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- reading ---- */

/* Reads up to FT_DIR_ENTRY_MAX + 1 bytes; the caller treats more than the max as oversize. */
static ssize_t read_bounded(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    while (len < cap) {
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        len += (size_t)r;
    }
    return (ssize_t)len;
}

/* A registrar that died between writing its temp file and renaming it leaves ".<service>@....tmp"
 * behind; such a file is deleted once its mtime is DIR_TEMP_MAX_AGE_MS old (no live registrar
 * takes that long between open and rename). */
#define DIR_TEMP_MAX_AGE_MS 60000
static void reap_temp(int dfd, const char *folder, const char *name, const char *service,
                      int64_t now_ms)
{
    size_t nl = strlen(name), sl = strlen(service);
    if (nl < sl + 6 || memcmp(name + 1, service, sl) != 0 || name[sl + 1] != '@' ||
        strcmp(name + nl - 4, ".tmp") != 0)
        return;
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) return;
    int64_t mtime_ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
    if (now_ms - mtime_ms > DIR_TEMP_MAX_AGE_MS && unlinkat(dfd, name, 0) == 0)
        FT_LOG_RATELIMITED(FTRPC_LOG_INFO, "naming: dir:// removed abandoned %s/%s", folder, name);
}

int ft_dir_scan(const char *folder, const char *service, int64_t now_ms, bool reap,
                ft_endpoint_list *out)
{
    DIR *d = opendir(folder);
    if (!d) {
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "naming: dir:// cannot read %s: %s", folder,
                           strerror(errno));
        return FTRPC_ESYS;
    }
    int dfd = dirfd(d);
    size_t sl = strlen(service);
    int files = 0, rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        size_t nl = strlen(name);
        if (reap && name[0] == '.') {
            reap_temp(dfd, folder, name, service, now_ms);
            continue;
        }
        if (name[0] == '.' || nl < sl + 7 || memcmp(name, service, sl) != 0 || name[sl] != '@' ||
            strcmp(name + nl - 6, ".entry") != 0)
            continue;
        if (++files > DIR_SCAN_MAX_FILES) {
            FT_LOG_RATELIMITED(FTRPC_LOG_WARN,
                               "naming: dir:// %s holds over %d entries of %s; "
                               "ignoring the rest",
                               folder, DIR_SCAN_MAX_FILES, service);
            break;
        }
        /* O_NOFOLLOW: a symlink planted in a shared folder must not make us read elsewhere;
         * O_NONBLOCK: nor may a FIFO hang the watcher. */
        int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0) continue; /* deleted since readdir, or not ours to read */
        struct stat st;
        char buf[FT_DIR_ENTRY_MAX + 1];
        ssize_t len = -1;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= FT_DIR_ENTRY_MAX)
            len = read_bounded(fd, buf, sizeof buf);
        close(fd);
        ft_dir_entry e;
        const char *why = "not a regular file under the size limit";
        if (len < 0 || ft_dir_entry_parse(buf, (size_t)len, &e, &why) != 0) {
            FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "naming: dir:// ignoring %s/%s: %s", folder, name,
                               why);
            continue;
        }
        if (strcmp(e.service, service) != 0) {
            FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "naming: dir:// ignoring %s/%s: service is %s",
                               folder, name, e.service);
            continue;
        }
        if (ft_dir_entry_alive(&e, now_ms)) {
            rc = ft_endpoint_list_add(out, &e.ep);
            if (rc == FTRPC_EINVAL) {
                FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "naming: dir:// %s: over %d live entries of %s",
                                   folder, FT_NAMING_MAX_ENDPOINTS, service);
                rc = 0;
                break;
            }
        } else if (reap && ft_dir_entry_reapable(&e, now_ms)) {
            struct stat now_st;
            if (fstatat(dfd, name, &now_st, AT_SYMLINK_NOFOLLOW) == 0 &&
                now_st.st_ino == st.st_ino && now_st.st_dev == st.st_dev &&
                unlinkat(dfd, name, 0) == 0)
                FT_LOG_RATELIMITED(FTRPC_LOG_INFO,
                                   "naming: dir:// removed %s/%s (pid %d, dead for %lld ms)",
                                   folder, name, (int)e.pid,
                                   (long long)(ft_dir_entry_age_ms(&e, now_ms) - e.ttl_ms));
        }
    }
    closedir(d);
    if (rc) ft_endpoint_list_fini(out);
    return rc;
}

typedef struct dir_ns {
    ft_naming base;
    char *folder;
    char service[FT_SERVICE_MAX];
    ft_folder_watch *watch;
} dir_ns;

static const char *const DIR_PARAMS[] = {"service", "fsync", NULL};

/* Folder: absolute, no trailing '/' kept (except "/"). */
static int dir_folder(const ft_naming_url *url, char **out)
{
    const char *p = url->body;
    if (p[0] != '/') {
        FT_WARN("naming: dir:// needs an absolute folder, got \"%.200s\"", p);
        return FTRPC_EADDR;
    }
    char *f = strdup(p);
    if (!f) return FTRPC_ENOMEM;
    size_t l = strlen(f);
    while (l > 1 && f[l - 1] == '/')
        f[--l] = '\0';
    *out = f;
    return 0;
}

static int dir_service(const ft_naming_url *url, const char *fallback, char *out)
{
    const char *s = ft_naming_url_param(url, "service");
    if (s && fallback && *fallback && strcmp(s, fallback) != 0) {
        FT_WARN("naming: dir:// URL names service %s, registration names %s", s, fallback);
        return FTRPC_EINVAL;
    }
    if (!s) s = fallback;
    if (!s || ft_service_check(s, strlen(s))) {
        FT_WARN("naming: dir:// needs ?service=NAME (1..127 chars of [A-Za-z0-9_.-])");
        return FTRPC_EADDR;
    }
    strcpy(out, s);
    return 0;
}

static int dir_open(const ft_naming_url *url, ft_naming **out)
{
    if (ft_naming_url_only_params(url, DIR_PARAMS)) return FTRPC_EADDR;
    dir_ns *ns = calloc(1, sizeof *ns);
    if (!ns) return FTRPC_ENOMEM;
    int rc = dir_service(url, NULL, ns->service);
    if (!rc) rc = dir_folder(url, &ns->folder);
    if (rc) {
        free(ns);
        return rc;
    }
    *out = &ns->base;
    return 0;
}

static void dir_close(ft_naming *base)
{
    dir_ns *ns = (dir_ns *)base;
    free(ns->folder);
    free(ns);
}

static int dir_fetch(ft_naming *base, ft_endpoint_list *out)
{
    dir_ns *ns = (dir_ns *)base;
    int rc = ft_dir_scan(ns->folder, ns->service, ft_dir_wall_ms(), true, out);
    if (rc == 0) ft_endpoint_list_sort(out); /* readdir order is arbitrary: keep the view stable */
    return rc;
}

static int dir_watch_start(ft_naming *base, const ft_naming_watch_opts *opts, ft_naming_watch_cb cb,
                           void *arg)
{
    dir_ns *ns = (dir_ns *)base;
    if (ns->watch) return FTRPC_EEXIST;
    return ft_folder_watch_start(base, ns->folder, opts, cb, arg, &ns->watch);
}

static void dir_watch_stop(ft_naming *base)
{
    dir_ns *ns = (dir_ns *)base;
    ft_folder_watch_stop(ns->watch);
    ns->watch = NULL;
}

/* ---- registering ---- */

typedef struct dir_reg {
    ft_naming_reg base;
    char *folder;
    bool fsync;
    ft_dir_entry entry;
    char name[FT_SERVICE_MAX + FT_ADDR_MAX + 16];
    char path[4096];
    int last_errno; /* to log a failure once per kind, not every interval */
} dir_reg;

static int mkdir_p(const char *folder)
{
    char tmp[4096];
    size_t l = strlen(folder);
    if (l >= sizeof tmp) return -1;
    memcpy(tmp, folder, l + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0777) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return (mkdir(tmp, 0777) == 0 || errno == EEXIST) ? 0 : -1;
}

static int dir_reg_open(const ft_naming_url *url, const ft_registration *r, ft_naming_reg **out)
{
    if (ft_naming_url_only_params(url, DIR_PARAMS)) return FTRPC_EADDR;
    const char *fs = ft_naming_url_param(url, "fsync");
    if (fs && strcmp(fs, "0") != 0 && strcmp(fs, "1") != 0) {
        FT_WARN("naming: dir:// fsync must be 0 or 1");
        return FTRPC_EADDR;
    }
    dir_reg *reg = calloc(1, sizeof *reg);
    if (!reg) return FTRPC_ENOMEM;
    reg->fsync = fs && strcmp(fs, "1") == 0;
    int rc = dir_service(url, r->service, reg->entry.service);
    if (!rc) rc = dir_folder(url, &reg->folder);
    if (rc) {
        free(reg);
        return rc;
    }
    snprintf(reg->entry.ep.addr, sizeof reg->entry.ep.addr, "%s", r->addr);
    snprintf(reg->entry.ep.tags, sizeof reg->entry.ep.tags, "%s", r->tags ? r->tags : "");
    reg->entry.ep.weight = r->weight ? r->weight : FT_WEIGHT_DEFAULT;
    reg->entry.pid = (int32_t)getpid();
    reg->entry.ttl_ms = r->ttl_ms;
    reg->entry.ep.ttl_ms = r->ttl_ms;
    snprintf(reg->entry.ep.id, sizeof reg->entry.ep.id, "%s", r->id ? r->id : "");
    char buf[FT_DIR_ENTRY_MAX + 1];
    if (r->ttl_ms > FT_DIR_TTL_MAX_MS || ft_dir_entry_format(&reg->entry, buf, sizeof buf) < 0 ||
        ft_dir_entry_filename(reg->entry.service, r->addr, reg->name, sizeof reg->name) ||
        (size_t)snprintf(reg->path, sizeof reg->path, "%s/%s", reg->folder, reg->name) >=
            sizeof reg->path) {
        FT_WARN("naming: dir:// registration of %s at %s is invalid", reg->entry.service, r->addr);
        free(reg->folder);
        free(reg);
        return FTRPC_EINVAL;
    }
    *out = &reg->base;
    return 0;
}

static int dir_reg_fail(dir_reg *reg, const char *what)
{
    int e = errno;
    if (e != reg->last_errno)
        FT_ERROR("naming: dir:// cannot %s %s: %s (the server keeps serving; retrying)", what,
                 reg->path, strerror(e));
    reg->last_errno = e;
    return FTRPC_ESYS;
}

static int dir_reg_write(ft_naming_reg *base)
{
    dir_reg *reg = (dir_reg *)base;
    static atomic_uint seq;
    reg->entry.refreshed_ms = ft_dir_wall_ms();
    char buf[FT_DIR_ENTRY_MAX + 1];
    int len = ft_dir_entry_format(&reg->entry, buf, sizeof buf);
    if (len < 0) return FTRPC_EINVAL;
    char tmp[4096 + 64];
    snprintf(tmp, sizeof tmp, "%s/.%s.%d.%u.tmp", reg->folder, reg->name, (int)getpid(),
             atomic_fetch_add(&seq, 1));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0 && errno == ENOENT && mkdir_p(reg->folder) == 0)
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) return dir_reg_fail(reg, "write");
    ssize_t w = 0;
    while (w < len) {
        ssize_t r = write(fd, buf + w, (size_t)(len - w));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        w += r;
    }
    bool ok = w == len && (!reg->fsync || fsync(fd) == 0);
    if (close(fd) != 0) ok = false;
    if (!ok || rename(tmp, reg->path) != 0) {
        int rc = dir_reg_fail(reg, "write");
        unlink(tmp);
        return rc;
    }
    if (reg->last_errno) FT_WARN("naming: dir:// %s registered again", reg->path);
    reg->last_errno = 0;
    return 0;
}

static int dir_reg_deregister(ft_naming_reg *base)
{
    dir_reg *reg = (dir_reg *)base;
    /* Leave alone an entry another process has written since (a successor on the same address,
     * started before this one finished stopping): removing it would hide a live server. */
    int fd = open(reg->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd >= 0) {
        char buf[FT_DIR_ENTRY_MAX + 1];
        ssize_t len = read_bounded(fd, buf, sizeof buf);
        close(fd);
        ft_dir_entry e;
        if (len > 0 && ft_dir_entry_parse(buf, (size_t)len, &e, NULL) == 0 &&
            e.pid != reg->entry.pid) {
            FT_INFO("naming: dir:// %s now belongs to pid %d; not removing it", reg->path,
                    (int)e.pid);
            return 0;
        }
    }
    if (unlink(reg->path) != 0 && errno != ENOENT) return dir_reg_fail(reg, "remove");
    return 0;
}

static void dir_reg_close(ft_naming_reg *base)
{
    dir_reg *reg = (dir_reg *)base;
    free(reg->folder);
    free(reg);
}

const ft_naming_ops ft_naming_dir_ops = {
    .scheme = "dir",
    .open = dir_open,
    .close = dir_close,
    .fetch = dir_fetch,
    .watch_start = dir_watch_start,
    .watch_stop = dir_watch_stop,
    .reg_open = dir_reg_open,
    .reg_register = dir_reg_write,
    .reg_refresh = dir_reg_write,
    .reg_deregister = dir_reg_deregister,
    .reg_close = dir_reg_close,
};
