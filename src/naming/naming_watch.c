/* The folder watcher shared by file:// and dir://: ONE thread per process for every folder watch.
 * It blocks in poll() on a wake-up eventfd and each watch's inotify descriptor, re-reads a naming
 * service after every burst of relevant events in its folder and at least every rescan_ms, and
 * hands each result to that watch's callback.
 *
 * Why one thread: a process may discover tens of services; one sleeping thread serves them all.
 * The cost is that fetches run one after another, so a backend's fetch must be quick (file:// and
 * dir:// read a few small local files; a network backend such as etcd:// runs its own thread and
 * does not use this file). The thread starts with the first watch and then lives as long as the
 * process (it sleeps in poll() when there is nothing to watch). Not fork-safe: a child process
 * must not use watches it did not start after the fork.
 *
 * Invariants:
 *   - callbacks run only on the watcher thread, one at a time; never after ft_folder_watch_stop
 *     returns (stop waits until the thread is neither delivering to nor polling that watch);
 *   - stop never waits for a rescan period (the eventfd wakes poll at once);
 *   - a folder that does not exist yet or vanishes is waited for through a watch on its parent,
 *     and watched again (and re-read) as soon as it appears; a replaced folder is watched again
 *     at once (IN_IGNORED); the rescan covers what inotify misses (queue overflow, a missing
 *     parent, network filesystems). */
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
    int64_t rescan_ns;
    ft_naming_watch_cb cb;
    void *arg;
    int ino_fd;       /* inotify instance, lives as long as the watch */
    int wd;           /* the folder's watch descriptor, -1 when not watched (thread only) */
    int pwd;          /* while wd < 0: a watch on the parent, to see the folder appear */
    char *parent;     /* the parent folder's path, NULL when there is none to watch */
    const char *base; /* the folder's last component, inside `folder` */
    int64_t next_ns;  /* next rescan; 0 = deliver at once (a new watch) */
    bool readable;    /* poll saw ino_fd readable in this round */
    uint64_t served;  /* the last round that served it */
    ft_folder_watch *next;
};

/* The process-wide watcher. `lock` guards every field but `fds` (thread only) and, in each
 * watch, `next`, `next_ns` and `readable`. */
static struct {
    pthread_once_t once;
    int init_rc;
    pthread_mutex_t lock;
    pthread_cond_t round_done; /* broadcast when `round` grows or `current` clears */
    uint64_t round;            /* completed poll-and-deliver rounds */
    ft_folder_watch *head;
    ft_folder_watch *current; /* delivering to this watch right now (lock released) */
    int wake_fd;
    pthread_t thread;
    struct pollfd *fds;
    size_t fds_cap;
} rt = {.once = PTHREAD_ONCE_INIT, .lock = PTHREAD_MUTEX_INITIALIZER, .wake_fd = -1};

/* Watches the folder; while it cannot (it does not exist yet, or was removed), watches its
 * parent so that the folder's creation is seen at once rather than at the next rescan. */
static void arm(ft_folder_watch *w)
{
    if (w->wd >= 0) return;
    w->wd = inotify_add_watch(w->ino_fd, w->folder,
                              IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_CLOSE_WRITE |
                                  IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR);
    if (w->wd >= 0) {
        if (w->pwd >= 0) inotify_rm_watch(w->ino_fd, w->pwd);
        w->pwd = -1;
        return;
    }
    FT_LOG_RATELIMITED(FTRPC_LOG_INFO, "naming: cannot watch %s (%s); waiting for it", w->folder,
                       strerror(errno));
    if (w->pwd < 0 && w->parent)
        w->pwd = inotify_add_watch(w->ino_fd, w->parent, IN_CREATE | IN_MOVED_TO | IN_ONLYDIR);
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
            if (ev->mask & IN_Q_OVERFLOW) {
                relevant = true;
            } else if (w->wd >= 0 && ev->wd == w->wd) {
                if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
                    if (!(ev->mask & IN_IGNORED)) inotify_rm_watch(w->ino_fd, w->wd);
                    w->wd = -1;
                    relevant = true;
                } else if (!is_temp_name(ev)) {
                    relevant = true;
                }
            } else if (w->pwd >= 0 && ev->wd == w->pwd) {
                if (ev->mask & IN_IGNORED)
                    w->pwd = -1;
                else if (ev->len > 0 && strcmp(ev->name, w->base) == 0)
                    relevant = true;
            } /* else: from a watch removed since; it means nothing now */
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

/* Runs one watch's due work with the lock released. Returns the watch's next rescan time. */
static int64_t serve(ft_folder_watch *w, bool readable, int64_t next_ns)
{
    bool due = ft_now_ns() >= next_ns;
    if (readable && drain(w)) {
        if (w->wd < 0) arm(w); /* the folder was replaced, removed or created */
        due = true;
    }
    if (!due) return next_ns;
    arm(w);
    deliver(w);
    return ft_now_ns() + w->rescan_ns;
}

static void *watcher_main(void *unused)
{
    pthread_mutex_lock(&rt.lock);
    for (;;) {
        /* the poll set: the wake-up fd, then every watch's inotify fd, in list order */
        size_t n = 1;
        int64_t now = ft_now_ns(), wake_at = INT64_MAX;
        for (ft_folder_watch *w = rt.head; w; w = w->next) {
            n++;
            if (w->next_ns < wake_at) wake_at = w->next_ns;
        }
        if (n > rt.fds_cap) {
            struct pollfd *f = realloc(rt.fds, n * 2 * sizeof *f);
            if (f) {
                rt.fds = f;
                rt.fds_cap = n * 2;
            } else {
                n = rt.fds_cap; /* poll fewer fds; their rescans still run on time */
            }
        }
        rt.fds[0] = (struct pollfd){.fd = rt.wake_fd, .events = POLLIN};
        size_t i = 1;
        for (ft_folder_watch *w = rt.head; w && i < n; w = w->next)
            rt.fds[i++] = (struct pollfd){.fd = w->ino_fd, .events = POLLIN};
        int timeout = -1;
        if (wake_at != INT64_MAX) {
            int64_t ms = (wake_at - now + FT_NS_PER_MS - 1) / FT_NS_PER_MS;
            timeout = ms < 0 ? 0 : ms > 60000 ? 60000 : (int)ms;
        }
        pthread_mutex_unlock(&rt.lock);
        int rc = poll(rt.fds, n, timeout);
        pthread_mutex_lock(&rt.lock);
        if (rc < 0 && errno != EINTR)
            FT_LOG_RATELIMITED(FTRPC_LOG_ERROR, "naming: watcher poll failed: %s", strerror(errno));
        if (rc > 0 && (rt.fds[0].revents & POLLIN)) {
            uint64_t v;
            while (read(rt.wake_fd, &v, sizeof v) < 0 && errno == EINTR) {
            }
        }
        /* Watches stopped during the poll are out of the list; their stop waits for this round
         * to end, so their fds are still open and their structs still allocated. */
        for (ft_folder_watch *w = rt.head; w; w = w->next) {
            w->readable = false;
            for (size_t k = 1; rc > 0 && k < n; k++)
                if (rt.fds[k].fd == w->ino_fd) w->readable = rt.fds[k].revents & POLLIN;
        }
        /* Serve each watch at most once a round; the list may change whenever the lock is
         * released, so start over from the head each time and mark what was served. */
        uint64_t this_round = rt.round + 1;
        for (;;) {
            ft_folder_watch *w = rt.head;
            while (w && (w->served == this_round || !(w->readable || ft_now_ns() >= w->next_ns)))
                w = w->next;
            if (!w) break;
            bool readable = w->readable;
            int64_t next_ns = w->next_ns;
            w->readable = false;
            w->served = this_round;
            rt.current = w;
            pthread_mutex_unlock(&rt.lock);
            next_ns = serve(w, readable, next_ns);
            pthread_mutex_lock(&rt.lock);
            w->next_ns = next_ns;
            rt.current = NULL;
            pthread_cond_broadcast(&rt.round_done);
        }
        rt.round = this_round;
        pthread_cond_broadcast(&rt.round_done);
    }
    return NULL;
}

static void runtime_init(void)
{
    ft_naming_cond_init(&rt.round_done);
    rt.fds = calloc(8, sizeof *rt.fds);
    rt.fds_cap = 8;
    rt.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!rt.fds || rt.wake_fd < 0) {
        rt.init_rc = !rt.fds ? FTRPC_ENOMEM : FTRPC_ESYS;
        return;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&rt.thread, &attr, watcher_main, NULL) != 0) rt.init_rc = FTRPC_ESYS;
    pthread_attr_destroy(&attr);
    if (rt.init_rc) FT_ERROR("naming: cannot start the watcher thread");
}

static void wake(void)
{
    uint64_t one = 1;
    while (write(rt.wake_fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
}

int ft_folder_watch_start(ft_naming *ns, const char *folder, const ft_naming_watch_opts *opts,
                          ft_naming_watch_cb cb, void *arg, ft_folder_watch **out)
{
    pthread_once(&rt.once, runtime_init);
    if (rt.init_rc) return rt.init_rc;
    ft_folder_watch *w = calloc(1, sizeof *w);
    if (!w) return FTRPC_ENOMEM;
    w->ns = ns;
    w->cb = cb;
    w->arg = arg;
    w->rescan_ns = (opts->rescan_ms > 0 ? opts->rescan_ms : 5000) * FT_NS_PER_MS;
    w->wd = w->pwd = -1;
    w->next_ns = 0;
    w->folder = strdup(folder);
    w->parent = strdup(folder);
    w->ino_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (w->folder && w->parent) {
        char *slash = strrchr(w->parent, '/');
        w->base = w->folder + (slash ? slash - w->parent + 1 : 0);
        if (!slash || slash[1] == '\0') {
            free(w->parent); /* "/" or a relative name: no parent to watch */
            w->parent = NULL;
        } else if (slash == w->parent) {
            slash[1] = '\0'; /* "/reg" -> "/" */
        } else {
            *slash = '\0';
        }
    }
    if (!w->folder || w->ino_fd < 0) {
        int rc = !w->folder ? FTRPC_ENOMEM : FTRPC_ESYS;
        if (rc == FTRPC_ESYS) FT_ERROR("naming: inotify_init1 failed: %s", strerror(errno));
        if (w->ino_fd >= 0) close(w->ino_fd);
        free(w->folder);
        free(w->parent);
        free(w);
        return rc;
    }
    pthread_mutex_lock(&rt.lock);
    w->next = rt.head;
    rt.head = w;
    pthread_mutex_unlock(&rt.lock);
    wake();
    *out = w;
    return 0;
}

void ft_folder_watch_stop(ft_folder_watch *w)
{
    if (!w) return;
    /* A callback stopping a watch would wait for itself. */
    if (pthread_equal(pthread_self(), rt.thread)) abort();
    pthread_mutex_lock(&rt.lock);
    for (ft_folder_watch **p = &rt.head; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            break;
        }
    }
    /* Only the round in flight can have w's fd in its poll set or be delivering to w: every
     * later round is built from the list without w. Wait for it to end. */
    uint64_t target = rt.round + 1;
    wake();
    while (rt.current == w || rt.round < target)
        pthread_cond_wait(&rt.round_done, &rt.lock);
    pthread_mutex_unlock(&rt.lock);
    close(w->ino_fd);
    free(w->folder);
    free(w->parent);
    free(w);
}
