/* Listening socket driven by uv_poll (see listener.h). */
#include "io/listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "io/conn.h"

enum { ACCEPTS_PER_WAKEUP = 64, BACKLOG = 1024 };

static void on_readable(uv_poll_t *p, int status, int events)
{
    ft_listener *l = p->data;
    (void)events;
    if (status < 0) return;
    for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
            if (errno == ECONNABORTED) continue;
            /* EMFILE and friends: log and let the next readiness retry */
            FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "accept on port %d failed: %s", l->port,
                               strerror(errno));
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
    socklen_t alen = ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
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
    l->cb = cb;
    l->arg = arg;
    struct start_args a = {l, 0};
    ft_loop_run_sync(loop, start_on_loop, &a);
    if (a.rc != 0) {
        close(fd);
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
    free(l);
}

static void stop_on_loop(void *arg)
{
    ft_listener *l = arg;
    uv_poll_stop(&l->poll);
    uv_close((uv_handle_t *)&l->poll, on_poll_closed);
}

void ft_listener_stop(ft_listener *l)
{
    if (!l) return;
    /* the close callback frees l on the loop; nothing touches l after the synchronous step */
    ft_loop_run_sync(l->loop, stop_on_loop, l);
}
