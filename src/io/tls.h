/* TLS as a transport of ft_conn: OpenSSL 3 driven through a pair of memory BIOs.
 *
 * The loop keeps reading and writing the socket itself (so write batching, back-pressure and
 * timers work as for plain TCP); OpenSSL only turns bytes into other bytes:
 *  - read:  ciphertext from the socket -> rbio -> SSL_read -> plaintext appended to c->in, then the
 *           owner's on_read runs as for a plain connection (the layers above never know);
 *  - write: plaintext frames queue in c->out as usual; when the loop flushes the connection they
 *           are encrypted (SSL_write -> wbio) and the ciphertext takes their place in c->out, so
 *           the max_unwritten bound counts bytes queued either way and one writev still carries
 *           every frame of the loop turn. While the handshake runs, plaintext is held back and
 *           only handshake records go out.
 *
 * Invariants: outside conn.c's flush, c->out holds only plaintext (or, once a close_notify was
 * queued, only ciphertext); plaintext never reaches the socket unencrypted: when the handshake
 * fails, what is queued is dropped and only OpenSSL's alert is sent. Every SSL object is touched on
 * its connection's loop thread only. An ft_tls_ctx is shared by all threads (OpenSSL's SSL_CTX is
 * safe for that once set up) and reference-counted by the SSL objects made from it, so freeing it
 * while connections still use it is safe.
 *
 * Not here: deciding whether a connection is TLS (the server sniffs the first byte, the client
 * asks for it; both call ft_conn_start_tls), certificates reloading, session resumption.
 */
#ifndef FT_IO_TLS_H
#define FT_IO_TLS_H

#include <stddef.h>
#include <uv.h>

#include "base/iobuf.h"

struct ft_conn;
typedef struct ft_tls ft_tls;         /* one connection's TLS state */
typedef struct ft_tls_ctx ft_tls_ctx; /* certificates, keys and verification settings */

/* A TLS record of type handshake starts with this byte: how a server tells a ClientHello from
 * the first bytes of a plain protocol ("PRPC", an HTTP method). */
#define FT_TLS_HANDSHAKE_BYTE 0x16

enum ft_tls_peer_cert {
    FT_TLS_PEER_CERT_NONE = 0,     /* server: do not ask the client for a certificate */
    FT_TLS_PEER_CERT_OPTIONAL = 1, /* server: ask, verify when sent, accept a client without one */
    FT_TLS_PEER_CERT_REQUIRED = 2, /* server: a client without a valid certificate is refused;
                                    * client: always (the server's certificate is verified) */
};

typedef struct ft_tls_ctx_options {
    int is_server;
    const char *cert_file; /* PEM chain, leaf first; server: required; client: optional (mTLS) */
    const char *key_file;  /* PEM private key of cert_file */
    const char *ca_file;   /* server: CA of client certificates; client: CA of the server's
                            * certificate, NULL: the system's trust store */
    enum ft_tls_peer_cert peer_cert; /* server only (see above) */
    int alpn_h2; /* client: offer ALPN "h2" (gRPC); a server always answers ALPN (tls.c) */
} ft_tls_ctx_options;

/* Reads the files and makes a context. 0, FTRPC_EINVAL (missing file names), or FTRPC_ETLS when
 * OpenSSL refuses a file or key (its reason is logged, and copied into err[errlen] when err is not
 * NULL). Any thread. On success *out is the caller's (ft_tls_ctx_free). */
int ft_tls_ctx_new(const ft_tls_ctx_options *o, ft_tls_ctx **out, char *err, size_t errlen);
/* Drops the caller's reference; connections made from it keep theirs. NULL does nothing. */
void ft_tls_ctx_free(ft_tls_ctx *ctx);

/* Turns c into a TLS connection (loop thread). Server side (verify_name NULL and the ctx a
 * server's): the bytes already in c->in are taken as the start of the ClientHello. Client side:
 * verify_name, when not NULL, is the host name or IP literal the server's certificate must match
 * (sent as SNI too, unless an IP); the ClientHello goes out as soon as the socket is connected.
 * 0, or FTRPC_ENOMEM / FTRPC_ETLS (then the connection is unchanged and the caller closes it). */
int ft_conn_start_tls(struct ft_conn *c, ft_tls_ctx *ctx, const char *verify_name);
/* Why the TLS of c failed ("" when it did not): OpenSSL's reason and, for a certificate, the
 * verification error. Valid until c is freed. Loop thread. */
const char *ft_conn_tls_error(const struct ft_conn *c);
/* 1 once c's handshake completed. */
int ft_conn_tls_established(const struct ft_conn *c);

/* ---- hooks for conn.c (loop thread) ---- */

/* Where the socket's next read lands (a per-thread buffer: the bytes are consumed at once). */
void ft_tls_read_buffer(uv_buf_t *buf);
/* n bytes of ciphertext arrived: decrypt into c->in, run the owner's on_read when plaintext came,
 * close the connection on a TLS failure (FTRPC_ETLS, after sending OpenSSL's alert) or on the
 * peer's close_notify (FTRPC_EEOF). */
void ft_tls_on_read(struct ft_conn *c, const char *data, size_t n);
/* Before a flush: replaces c->out's plaintext with its ciphertext, preceded by any handshake
 * records; during the handshake the plaintext moves to *held instead (conn.c puts it back after
 * the flush). 0, or FTRPC_ETLS / FTRPC_ENOMEM: close the connection. */
int ft_tls_encrypt(struct ft_conn *c, ft_iobuf *held);
/* An orderly close: encrypts what is queued and queues a close_notify after it. */
void ft_tls_shutdown(struct ft_conn *c);
/* The socket ended (EOF, a failed read or write) with `reason`: FTRPC_ETLS instead when the
 * peer's last bytes were an alert, or when the handshake had not completed (the peer does not
 * speak TLS, or refused ours), so the owner sees a TLS failure and its reason. */
int ft_tls_close_reason(struct ft_conn *c, int reason);
void ft_tls_free(ft_tls *t);

#endif
