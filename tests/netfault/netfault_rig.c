/* The network fault rig (netfault_rig.h): a private network namespace, hosts as loopback
 * addresses with their own uids, and nftables cuts between them.
 *
 * The cuts are kept here and the whole chain is written again on every change, in one `nft -f`
 * transaction: a rule is never half applied, and lifting a cut needs no rule handle. */
#include "netfault_rig.h"

#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define NF_TABLE "inet ftrpc_netfault"
#define NF_MAX_CUTS 32

static struct {
    char a[256], b[256]; /* b "": everything but a */
    int on;
} cuts[NF_MAX_CUTS];

/* Runs a shell line; its output goes to this process's stderr. Its exit code, or -1. */
static int run(const char *line)
{
    int st = system(line);
    if (st == -1 || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

static int lo_up(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    int rc = ioctl(fd, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP;
        rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
    }
    close(fd);
    return rc;
}

int nf_netns_enter(char *why, size_t len)
{
    if (unshare(CLONE_NEWNET) != 0) {
        snprintf(why, len,
                 "cannot make a network namespace: unshare(CLONE_NEWNET): %s (the netfault tests "
                 "run as root, as CI does)",
                 strerror(errno));
        return -1;
    }
    if (lo_up() != 0) {
        snprintf(why, len, "cannot bring up the namespace's loopback: %s", strerror(errno));
        return -1;
    }
    if (run("nft --version >/dev/null 2>&1") != 0 || run("ip -V >/dev/null 2>&1") != 0) {
        snprintf(why, len,
                 "nft or ip is missing: install Debian's nftables and iproute2 "
                 "(scripts/install-deps.sh --test)");
        return -1;
    }
    /* the uid rules of nf_host_add must come before the local table, which matches everything */
    if (run("ip rule add pref 100 lookup local && ip rule del pref 0") != 0 ||
        run("nft add table " NF_TABLE " && nft add chain " NF_TABLE
            " out '{ type filter hook output priority 0; policy accept; }'") != 0) {
        snprintf(why, len,
                 "cannot set up policy routing or the nftables table in the namespace "
                 "(output above)");
        return -1;
    }
    return 0;
}

void nf_host_addr(int n, char *buf, size_t len)
{
    snprintf(buf, len, "127.0.0.%d", n);
}

int nf_host_add(int n)
{
    if (n < 2 || n > 250) return -1;
    char line[256];
    snprintf(line, sizeof line,
             "ip rule add pref %d uidrange %u-%u lookup %d && "
             "ip route add local 127.0.0.0/8 dev lo src 127.0.0.%d table %d",
             10 + n, NF_HOST_UID(n), NF_HOST_UID(n), 1000 + n, n, 1000 + n);
    if (run(line) != 0) {
        fprintf(stderr, "netfault: cannot route host %d: %s\n", n, line);
        return -1;
    }
    return 0;
}

/* Writes the chain again with every cut that is on, in one transaction. */
static int apply(void)
{
    FILE *f = popen("nft -f -", "w");
    if (!f) return -1;
    fprintf(f, "flush chain " NF_TABLE " out\n");
    for (int i = 0; i < NF_MAX_CUTS; i++) {
        if (!cuts[i].on) continue;
        const char *a = cuts[i].a, *b = cuts[i].b[0] ? cuts[i].b : cuts[i].a;
        const char *neg = cuts[i].b[0] ? "" : "!= ";
        fprintf(f, "add rule " NF_TABLE " out ip saddr { %s } ip daddr %s{ %s } drop\n", a, neg, b);
        fprintf(f, "add rule " NF_TABLE " out ip saddr %s{ %s } ip daddr { %s } drop\n", neg, b, a);
    }
    int st = pclose(f);
    return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

int nf_cut_add(const char *a, const char *b)
{
    for (int i = 0; i < NF_MAX_CUTS; i++) {
        if (cuts[i].on) continue;
        snprintf(cuts[i].a, sizeof cuts[i].a, "%s", a);
        snprintf(cuts[i].b, sizeof cuts[i].b, "%s", b ? b : "");
        cuts[i].on = 1;
        if (apply() != 0) {
            cuts[i].on = 0;
            fprintf(stderr, "netfault: nft refused the cut {%s} / {%s}\n", a, b ? b : "rest");
            return -1;
        }
        return i;
    }
    return -1;
}

int nf_cut_remove(int id)
{
    if (id < 0 || id >= NF_MAX_CUTS || !cuts[id].on) return -1;
    cuts[id].on = 0;
    return apply();
}

void nf_cut_clear(void)
{
    for (int i = 0; i < NF_MAX_CUTS; i++)
        cuts[i].on = 0;
    apply();
}
