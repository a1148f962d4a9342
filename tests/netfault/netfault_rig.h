/* The network fault rig: "hosts" on one machine, and the faults between them that a real network
 * has and a single loopback address never shows (no RST from a dead peer, packets that vanish).
 *
 * Everything happens inside a private network namespace that the test process makes for itself
 * (nf_netns_enter, before it starts any thread or child): its own loopback, and nothing else.
 * Host N is the address 127.0.0.N together with the uid 60000 + N: a policy-routing rule sends the
 * connections of that uid's sockets out from 127.0.0.N, so that every packet names both of its
 * hosts in its addresses (the test process itself, root, is host 1: 127.0.0.1). Children of a
 * host run as its uid (h_children_run_as, harness.h).
 *
 * Faults between hosts are nftables rules in the namespace's output hook (nf_cut_add): packets
 * between two sets of addresses are dropped, silently, in both directions, and the rule can be
 * lifted while calls run. Latency, stalls, slow links and resets come from the fault proxy
 * (fault_proxy.h) instead.
 *
 * Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN), Debian's nftables (nft) and iproute2 (ip). */
#ifndef FTRPC_TEST_NETFAULT_RIG_H
#define FTRPC_TEST_NETFAULT_RIG_H

#include <stddef.h>

/* The uid of host n (60000 + n), whose children run as it. */
#define NF_HOST_UID(n) (60000u + (unsigned)(n))

/* Moves this process into a new network namespace with its loopback up, and makes the rig's
 * nftables table there. Call it first in main, before any thread or child. 0, or -1 with the
 * reason in why (no privilege, no nft, ...). */
int nf_netns_enter(char *why, size_t len);
/* Routes host n's uid out from 127.0.0.n (2 <= n <= 250). 0 or -1 (printed). */
int nf_host_add(int n);
/* "127.0.0.N" into buf. */
void nf_host_addr(int n, char *buf, size_t len);

/* Drops every packet between the address set a and the address set b (nftables set literals
 * without braces, e.g. "127.0.0.2" or "127.0.0.11, 127.0.0.12"), both ways. b NULL: between a and
 * every address not in a (a host or a group of hosts cut off from the rest). The id for
 * nf_cut_remove, or -1 (printed). */
int nf_cut_add(const char *a, const char *b);
/* Lifts a cut. 0 or -1. */
int nf_cut_remove(int id);
/* Lifts every cut. */
void nf_cut_clear(void);

#endif
