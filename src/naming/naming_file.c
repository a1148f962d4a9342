/* file:///abs/path — an endpoint list kept in a file, one endpoint per line (syntax of
 * ft_file_list_parse), re-read when it changes.
 *
 * The watch is on the file's folder, not the file: editors and config tools replace a file by
 * renaming a new one over it, which an inotify watch on the old inode would never report. A
 * missing, unreadable or oversized file, or one with a bad line, is an error delivered to the
 * watcher (the view keeps its last good list); it is never a crash. No query parameters. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "naming/naming.h"

typedef struct file_ns {
    ft_naming base;
    char *path;
    char *folder;
    ft_folder_watch *watch;
} file_ns;

int ft_file_list_parse(const char *buf, size_t len, ft_endpoint_list *out)
{
    if (len > FT_FILE_LIST_MAX) return FTRPC_EINVAL;
    size_t pos = 0;
    int lineno = 0;
    while (pos < len) {
        lineno++;
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - line) : len - pos;
        pos += ll + (nl ? 1 : 0);
        const char *hash = memchr(line, '#', ll);
        if (hash) ll = (size_t)(hash - line);
        if (ll > 0 && line[ll - 1] == '\r') ll--;
        size_t b = 0;
        while (b < ll && (line[b] == ' ' || line[b] == '\t'))
            b++;
        if (b == ll) continue;
        if (memchr(line, '\0', ll)) {
            FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "naming: file:// line %d holds a NUL byte", lineno);
            ft_endpoint_list_fini(out);
            return FTRPC_EINVAL;
        }
        ft_endpoint ep;
        int rc = ft_endpoint_parse(line, ll, &ep);
        if (rc == 0) rc = ft_endpoint_list_add(out, &ep);
        if (rc) {
            FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "naming: file:// line %d rejected (%s): \"%.*s\"",
                               lineno, ftrpc_strerror(rc), (int)(ll > 120 ? 120 : ll), line);
            ft_endpoint_list_fini(out);
            return rc == FTRPC_ENOMEM ? rc : FTRPC_EINVAL;
        }
    }
    return 0;
}

static int file_open(const ft_naming_url *url, ft_naming **out)
{
    if (ft_naming_url_only_params(url, NULL)) return FTRPC_EADDR;
    const char *p = url->body;
    size_t len = strlen(p);
    if (len < 2 || p[0] != '/' || p[len - 1] == '/') {
        FT_WARN("naming: file:// needs an absolute file path, got \"%.200s\"", p);
        return FTRPC_EADDR;
    }
    file_ns *ns = calloc(1, sizeof *ns);
    if (!ns) return FTRPC_ENOMEM;
    ns->path = strdup(p);
    ns->folder = strdup(p);
    if (!ns->path || !ns->folder) {
        free(ns->path);
        free(ns->folder);
        free(ns);
        return FTRPC_ENOMEM;
    }
    char *slash = strrchr(ns->folder, '/');
    if (slash == ns->folder)
        slash[1] = '\0'; /* "/file" -> "/" */
    else
        *slash = '\0';
    *out = &ns->base;
    return 0;
}

static void file_close(ft_naming *base)
{
    file_ns *ns = (file_ns *)base;
    free(ns->path);
    free(ns->folder);
    free(ns);
}

static int file_fetch(ft_naming *base, ft_endpoint_list *out)
{
    file_ns *ns = (file_ns *)base;
    /* O_NONBLOCK: a FIFO planted at the path must not hang the watcher. */
    int fd = open(ns->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "naming: file:// cannot open %s: %s", ns->path,
                           strerror(errno));
        return FTRPC_ESYS;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > FT_FILE_LIST_MAX) {
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN,
                           "naming: file:// %s is not a regular file under %d bytes", ns->path,
                           FT_FILE_LIST_MAX);
        close(fd);
        return FTRPC_EINVAL;
    }
    size_t cap = (size_t)st.st_size + 1;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return FTRPC_ENOMEM;
    }
    size_t len = 0;
    while (len < cap) {
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        len += (size_t)r;
    }
    close(fd);
    int rc = len >= cap ? FTRPC_EINVAL /* grew while read: next event re-reads it */
                        : ft_file_list_parse(buf, len, out);
    free(buf);
    return rc;
}

static int file_watch_start(ft_naming *base, const ft_naming_watch_opts *opts,
                            ft_naming_watch_cb cb, void *arg)
{
    file_ns *ns = (file_ns *)base;
    if (ns->watch) return FTRPC_EEXIST;
    return ft_folder_watch_start(base, ns->folder, opts, cb, arg, &ns->watch);
}

static void file_watch_stop(ft_naming *base)
{
    file_ns *ns = (file_ns *)base;
    ft_folder_watch_stop(ns->watch);
    ns->watch = NULL;
}

const ft_naming_ops ft_naming_file_ops = {
    .scheme = "file",
    .open = file_open,
    .close = file_close,
    .fetch = file_fetch,
    .watch_start = file_watch_start,
    .watch_stop = file_watch_stop,
};
