/* ft_listener: a listening TCP socket watched by one loop, handing each accepted socket (a raw fd)
 * to its owner, which places it on a loop of its choice. Accepting with accept4() ourselves, rather
 * than through uv_listen, is what lets the owner spread connections over all loops. */
#ifndef FT_IO_LISTENER_H
#define FT_IO_LISTENER_H

#include <uv.h>

#include "io/loop.h"

typedef struct ft_listener ft_listener;
/* On the listener's loop. The callee owns fd. */
typedef void (*ft_accept_cb)(ft_listener *l, int fd, void *arg);

struct ft_listener {
    uv_poll_t poll;
    ft_loop *loop;
    int fd;
    int port;
    ft_accept_cb cb;
    void *arg;
    /* Out of descriptors (EMFILE), a level-triggered watcher would wake at once, for ever, while
     * connections wait in the backlog. A descriptor held in reserve is given up to accept and
     * close what waits (libuv's trick: the peers learn at once instead of timing out); when that
     * cannot help, accepting pauses for a moment (nginx's way). */
    int reserve_fd; /* -1 when it could not be had */
    ft_timer resume_timer;
    long long shed; /* connections accepted and closed for want of descriptors */
};

/* Binds and listens on "host:port" (port 0: any free port) and starts accepting on `loop`.
 * Any non-IO thread. On success *out is the caller's until ft_listener_stop. Errors:
 * FTRPC_EADDR (malformed, unresolvable, or not an address of this host), FTRPC_EADDRINUSE (the
 * port is taken), FTRPC_ESYS (any other refusal; the log line gives errno), FTRPC_ENOMEM. */
int ft_listener_start(ft_loop *loop, const char *hostport, ft_accept_cb cb, void *arg,
                      ft_listener **out);
/* Stops accepting, closes the socket and frees the listener; waits until done. Any non-IO thread.
 */
void ft_listener_stop(ft_listener *l);

#endif
