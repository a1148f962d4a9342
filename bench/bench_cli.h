/* What the benches that start `ftrpc echo-server` children share: finding the CLI built beside
 * them and reading the port a child listens on. A header of static functions: each bench is one
 * executable of its own. */
#ifndef FT_BENCH_CLI_H
#define FT_BENCH_CLI_H

#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"

/* Writes the path of the `ftrpc` next to this binary into path[PATH_MAX]. 0, or -1 (said on
 * stderr under bench's name) when it is not there. */
static inline int bench_find_cli(char *path, const char *bench)
{
    ssize_t n = readlink("/proc/self/exe", path, PATH_MAX - 16);
    if (n <= 0) return -1;
    path[n] = '\0';
    char *slash = strrchr(path, '/');
    strcpy(slash + 1, "ftrpc");
    if (access(path, X_OK) != 0) {
        fprintf(stderr, "%s: %s not found (build the CLI)\n", bench, path);
        return -1;
    }
    return 0;
}

/* Reads a child's first line from fd, "listening on HOST:PORT", for at most 5 s: the port, or 0.
 * Closes fd. */
static inline int bench_read_port(int fd)
{
    char line[256] = {0};
    size_t n = 0;
    int64_t deadline = ft_now_ns() + 5000 * FT_NS_PER_MS;
    while (n < sizeof line - 1 && !memchr(line, '\n', n)) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int left = (int)((deadline - ft_now_ns()) / FT_NS_PER_MS);
        if (left <= 0 || poll(&pfd, 1, left) <= 0) break;
        ssize_t r = read(fd, line + n, sizeof line - 1 - n);
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    const char *colon = strrchr(line, ':');
    return colon && strstr(line, "listening on") ? atoi(colon + 1) : 0;
}

#endif
