/* The folder watcher shared by file:// and dir://: one thread that blocks in poll() on an inotify
 * descriptor (the folder) and an eventfd (stop), re-reads the naming service after every burst of
 * events and at least every rescan_ms, and hands each result to the watch callback.
 *
 * Why a thread per watch and not one for the process: each watch's only blocking point is its own
 * poll(), so a thread per view is the simplest correct thing, costs one mostly-sleeping thread per
 * discovered service, and keeps a slow fetch of one service from delaying another. A process-wide
 * loop would be better with hundreds of services; the ft_naming_ops interface does not change if
 * this file is replaced by one.
 *
 * Invariants: the callback runs only on this thread, never after ft_folder_watch_stop returns;
 * stop never waits for the rescan period (the eventfd wakes poll at once); a folder that does not
 * exist yet, vanishes or is replaced is watched again at the next rescan (inotify drops the watch
 * with IN_IGNORED), and the periodic rescan covers anything inotify missed (queue overflow,
 * network filesystems). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "naming/naming.h"

struct ft_folder_watch {
    ft_naming *ns;
    char *folder;
    int64_t rescan_ms;
    ft_naming_watch_cb cb;
    void *arg;
    int stop_fd; /* eventfd: written once by stop */
    int ino_fd;  /* inotify instance, lives as long as the watch */
    int wd;      /* the folder's watch descriptor, -1 when not watched */
    pthread_t thread;
};

static void arm(ft_folder_watch *w)
{
    if (w->wd >= 0) return;
    w->wd = inotify_add_watch(w->ino_fd, w->folder,
                              IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_CLOSE_WRITE |
                                  IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR);
    if (w->wd < 0)
        FT_LOG_RATELIMITED(FTRPC_LOG_INFO, "naming: cannot watch %s (%s); rescanning every %lld ms",
                           w->folder, strerror(errno), (long long)w->rescan_ms);
}

/* A registrar's temp file (".<name>.<pid>.<n>.tmp") changes nothing a reader sees: its rename
 * does, and that event is reported under the final name. Skipping them saves two scans per
 * refresh per server. */
static bool is_temp_name(const struct inotify_event *ev)
{
    if (ev->len == 0 || ev->name[0] != '.') return false;
    size_t n = strlen(ev->name);
    return n > 4 && strcmp(ev->name + n - 4, ".tmp") == 0;
}

/* Reads every queued event; forgets the watch when the kernel dropped it. True when an event
 * may have changed what a fetch returns. */
static bool drain(ft_folder_watch *w)
{
    _Alignas(struct inotify_event) char buf[4096];
    bool relevant = false;
    for (;;) {
        ssize_t n = read(w->ino_fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return relevant;
        for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= n;) {
            const struct inotify_event *ev = (const struct inotify_event *)(buf + off);
            if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
                if (w->wd >= 0 && !(ev->mask & IN_IGNORED)) inotify_rm_watch(w->ino_fd, w->wd);
                w->wd = -1;
                relevant = true;
            } else if ((ev->mask & IN_Q_OVERFLOW) || !is_temp_name(ev)) {
                relevant = true;
            }
            off += (ssize_t)sizeof *ev + ev->len;
        }
    }
}

static void deliver(ft_folder_watch *w)
{
    ft_endpoint_list list = {0};
    int rc = w->ns->ops->fetch(w->ns, &list);
    if (rc)
        w->cb(NULL, rc, w->arg);
    else
        w->cb(&list, 0, w->arg);
    ft_endpoint_list_fini(&list);
}

static void *watch_main(void *p)
{
    ft_folder_watch *w = p;
    arm(w);
    deliver(w);
    int64_t next = ft_now_ns() + w->rescan_ms * FT_NS_PER_MS;
    for (;;) {
        int64_t left_ms = (next - ft_now_ns() + FT_NS_PER_MS - 1) / FT_NS_PER_MS;
        if (left_ms < 0) left_ms = 0;
        struct pollfd fds[2] = {{.fd = w->stop_fd, .events = POLLIN},
                                {.fd = w->ino_fd, .events = POLLIN}};
        int n = poll(fds, 2, left_ms > INT32_MAX ? INT32_MAX : (int)left_ms);
        if (n < 0 && errno != EINTR) {
            FT_ERROR("naming: watch poll failed: %s", strerror(errno));
            break;
        }
        if (n > 0 && (fds[0].revents & POLLIN)) break;
        bool had_wd = w->wd >= 0;
        if (n > 0 && (fds[1].revents & POLLIN)) {
            if (drain(w)) {
                if (had_wd && w->wd < 0) arm(w); /* replaced folder: watch the new one now */
                deliver(w);
                next = ft_now_ns() + w->rescan_ms * FT_NS_PER_MS;
            }
        } else if (ft_now_ns() >= next) {
            arm(w);
            deliver(w);
            next = ft_now_ns() + w->rescan_ms * FT_NS_PER_MS;
        }
    }
    return NULL;
}

int ft_folder_watch_start(ft_naming *ns, const char *folder, const ft_naming_watch_opts *opts,
                          ft_naming_watch_cb cb, void *arg, ft_folder_watch **out)
{
    ft_folder_watch *w = calloc(1, sizeof *w);
    if (!w) return FTRPC_ENOMEM;
    w->ns = ns;
    w->cb = cb;
    w->arg = arg;
    w->rescan_ms = opts->rescan_ms > 0 ? opts->rescan_ms : 5000;
    w->wd = -1;
    w->folder = strdup(folder);
    w->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    w->ino_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    int rc = 0;
    if (!w->folder)
        rc = FTRPC_ENOMEM;
    else if (w->stop_fd < 0 || w->ino_fd < 0)
        rc = FTRPC_ESYS;
    else if (pthread_create(&w->thread, NULL, watch_main, w) != 0)
        rc = FTRPC_ESYS;
    if (rc) {
        if (rc == FTRPC_ESYS) FT_ERROR("naming: cannot start watcher: %s", strerror(errno));
        if (w->stop_fd >= 0) close(w->stop_fd);
        if (w->ino_fd >= 0) close(w->ino_fd);
        free(w->folder);
        free(w);
        return rc;
    }
    *out = w;
    return 0;
}

void ft_folder_watch_stop(ft_folder_watch *w)
{
    if (!w) return;
    uint64_t one = 1;
    while (write(w->stop_fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
    pthread_join(w->thread, NULL);
    close(w->stop_fd);
    close(w->ino_fd);
    free(w->folder);
    free(w);
}
