/* Listening socket driven by uv_poll (see listener.h). */
#include "io/listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/list.h"
#include "base/log.h"
#include "io/conn.h"

enum { ACCEPTS_PER_WAKEUP = 64, BACKLOG = 1024, PAUSE_MS = 100 };

static void on_readable(uv_poll_t *p, int status, int events);

static int open_reserve(void)
{
    return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void resume_accepting(ft_timer *t)
{
    ft_listener *l = ft_container_of(t, ft_listener, resume_timer);
    if (l->reserve_fd < 0) l->reserve_fd = open_reserve();
    uv_poll_start(&l->poll, UV_READABLE, on_readable);
}

static void pause_accepting(ft_listener *l)
{
    uv_poll_stop(&l->poll);
    ft_timer_start(l->loop, &l->resume_timer,
                   ft_loop_now(l->loop) + (int64_t)PAUSE_MS * FT_NS_PER_MS, resume_accepting);
}

/* accept() failed with EMFILE or ENFILE. Returns after shedding what waits in the backlog, or
 * after pausing the watcher when there is no reserve to shed with. */
static void out_of_descriptors(ft_listener *l, int err)
{
    int shed = 0;
    if (l->reserve_fd >= 0) {
        close(l->reserve_fd);
        l->reserve_fd = -1;
        int fd;
        while ((fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
            close(fd);
            shed++;
        }
        int again = errno == EAGAIN || errno == EWOULDBLOCK;
        l->reserve_fd = open_reserve();
        l->shed += shed;
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN,
                           "accept on port %d: %s; closed %d waiting connections (%lld so far)",
                           l->port, strerror(err), shed, l->shed);
        if (again && l->reserve_fd >= 0) return; /* the backlog is empty: nothing to spin on */
    }
    /* no reserve (another thread took the descriptor), or the system-wide table is full: wait
     * rather than spin */
    FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "accept on port %d: %s; pausing accepts for %d ms", l->port,
                       strerror(err), PAUSE_MS);
    pause_accepting(l);
}

static void on_readable(uv_poll_t *p, int status, int events)
{
    ft_listener *l = p->data;
    (void)events;
    if (status < 0) return;
    for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) return;
            if (err == ECONNABORTED) continue;
            if (err == EMFILE || err == ENFILE) {
                out_of_descriptors(l, err);
                return;
            }
            /* ENOBUFS, ENOMEM and the like: the next readiness retries, after a pause */
            FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "accept on port %d failed: %s", l->port,
                               strerror(err));
            pause_accepting(l);
            return;
        }
        l->cb(l, fd, l->arg);
    }
}

struct start_args {
    ft_listener *l;
    int rc;
};

static void start_on_loop(void *arg)
{
    struct start_args *a = arg;
    ft_listener *l = a->l;
    if (uv_poll_init(&l->loop->uv, &l->poll, l->fd) != 0) {
        a->rc = FTRPC_ESYS;
        return;
    }
    l->poll.data = l;
    uv_poll_start(&l->poll, UV_READABLE, on_readable);
    a->rc = 0;
}

int ft_listener_start(ft_loop *loop, const char *hostport, ft_accept_cb cb, void *arg,
                      ft_listener **out)
{
    struct sockaddr_storage ss;
    int rc = ft_sockaddr_parse(hostport, &ss);
    if (rc != 0) return rc;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return FTRPC_ESYS;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t alen =
        ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (bind(fd, (struct sockaddr *)&ss, alen) != 0 || listen(fd, BACKLOG) != 0) {
        int err = errno;
        FT_WARN("cannot listen on %s: %s", hostport, strerror(err));
        close(fd);
        /* the caller's message names the cause: a port taken is not a malformed address, and a
         * refusal for another reason (a privileged port, no descriptors left) is neither */
        if (err == EADDRINUSE) return FTRPC_EADDRINUSE;
        if (err == EADDRNOTAVAIL) return FTRPC_EADDR; /* not an address of this host */
        return FTRPC_ESYS;
    }
    ft_listener *l = calloc(1, sizeof *l);
    if (!l) {
        close(fd);
        return FTRPC_ENOMEM;
    }
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    getsockname(fd, (struct sockaddr *)&bound, &blen);
    l->port = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                               : ((struct sockaddr_in6 *)&bound)->sin6_port);
    l->loop = loop;
    l->fd = fd;
    l->reserve_fd = open_reserve();
    l->cb = cb;
    l->arg = arg;
    struct start_args a = {l, 0};
    ft_loop_run_sync(loop, start_on_loop, &a);
    if (a.rc != 0) {
        close(fd);
        if (l->reserve_fd >= 0) close(l->reserve_fd);
        free(l);
        return a.rc;
    }
    *out = l;
    return 0;
}

static void on_poll_closed(uv_handle_t *h)
{
    ft_listener *l = h->data;
    close(l->fd);
    if (l->reserve_fd >= 0) close(l->reserve_fd);
    free(l);
}

static void stop_on_loop(void *arg)
{
    ft_listener *l = arg;
    ft_timer_stop(l->loop, &l->resume_timer);
    uv_poll_stop(&l->poll);
    uv_close((uv_handle_t *)&l->poll, on_poll_closed);
}

void ft_listener_stop(ft_listener *l)
{
    if (!l) return;
    /* the close callback frees l on the loop; nothing touches l after the synchronous step */
    ft_loop_run_sync(l->loop, stop_on_loop, l);
}
