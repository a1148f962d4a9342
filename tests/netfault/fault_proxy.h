/* A TCP fault proxy for the tests: placed between a client and a server, it forwards both ways and
 * plays, on command and while calls run, what a bad link or middlebox does: latency, a stall (it
 * stops forwarding but keeps every connection open, so the kernel still acknowledges and TCP sees
 * nothing wrong), a slow link, and resets. One thread in the test process, plain poll(2); the
 * controls are atomics that any thread may set, and each setter returns once the thread acts on
 * the new value. Used by tests/netfault and, on 127.0.0.1, by tests/integration. */
#ifndef FTRPC_TEST_FAULT_PROXY_H
#define FTRPC_TEST_FAULT_PROXY_H

#include <stdint.h>

typedef struct nf_proxy nf_proxy;

/* Listens on listen_host, any free port (nf_proxy_port), and forwards each accepted connection to
 * a new connection to upstream ("host:port", IPv4). 0 or -1. */
int nf_proxy_start(const char *listen_host, const char *upstream, nf_proxy **out);
/* Stops the thread and closes every connection. NULL does nothing. */
void nf_proxy_stop(nf_proxy *p);
int nf_proxy_port(const nf_proxy *p);

/* Each byte is held this long in each direction before it goes on (0: none). */
void nf_proxy_set_delay_ms(nf_proxy *p, int ms);
/* 1: forward nothing, accept and hold new connections; 0: forward again what was held. */
void nf_proxy_set_stall(nf_proxy *p, int on);
/* At most this many bytes a second in each direction of each connection (0: no limit). */
void nf_proxy_set_rate(nf_proxy *p, int64_t bytes_per_s);
/* Resets every connection now, both sides (RST), dropping what it held. */
void nf_proxy_reset_all(nf_proxy *p);
/* Connections accepted so far. */
int64_t nf_proxy_accepted(const nf_proxy *p);

#endif
