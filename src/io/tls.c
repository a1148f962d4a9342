/* TLS through OpenSSL memory BIOs (see tls.h for the design and its invariants).
 *
 * Why memory BIOs rather than SSL_set_fd: the loop must stay the only owner of the socket, or
 * libuv's readiness, the write batching of conn.c and its unwritten-bytes bound would all be
 * bypassed by OpenSSL's own reads and writes. OpenSSL never blocks here: an empty rbio reads as
 * "retry" (BIO_set_mem_eof_return -1) and the wbio grows as needed until the flush drains it.
 */
#include "io/tls.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/log.h"
#include "ftrpc/common.h"
#include "io/conn.h"

/* ---- OpenSSL, loaded at the first TLS context ----
 *
 * libssl and libcrypto are loaded with dlopen when the process makes its first TLS context
 * (ft_tls_ctx_new: a server or client configured with TLS), not linked: a process that never uses
 * TLS maps neither. Mapped, they cost an idle echo-server 1.7 MiB of its 4.9 MiB RSS, most of it
 * pages that libcrypto's load touches (its symbol tables and relocations, and 0.4 MiB of
 * relocated tables written at load), docs/performance.md, issue #26. libcurl is loaded the same way
 * by src/naming/naming_etcd.c. Every OpenSSL function below is called through `ossl`, filled once;
 * every path that calls one holds an SSL_CTX, which only a loaded table can have made. Never
 * closed: OpenSSL's objects may live until the process ends. The headers are still OpenSSL 3's,
 * so the types, constants and macros are the ones the library was built against. */
/* clang-format off: one function a line */
#define OSSL_FUNCS(X)                                                                              \
    X(BIO_ctrl)                                                                                    \
    X(BIO_ctrl_pending)                                                                            \
    X(BIO_free)                                                                                    \
    X(BIO_new)                                                                                     \
    X(BIO_read)                                                                                    \
    X(BIO_s_mem)                                                                                   \
    X(BIO_write)                                                                                   \
    X(ERR_clear_error)                                                                             \
    X(ERR_error_string_n)                                                                          \
    X(ERR_get_error)                                                                               \
    X(ERR_reason_error_string)                                                                     \
    X(OPENSSL_sk_pop_free)                                                                         \
    X(SSL_CTX_check_private_key)                                                                   \
    X(SSL_CTX_ctrl)                                                                                \
    X(SSL_CTX_free)                                                                                \
    X(SSL_CTX_load_verify_locations)                                                               \
    X(SSL_CTX_new)                                                                                 \
    X(SSL_CTX_set_alpn_protos)                                                                     \
    X(SSL_CTX_set_alpn_select_cb)                                                                  \
    X(SSL_CTX_set_client_CA_list)                                                                  \
    X(SSL_CTX_set_default_verify_paths)                                                            \
    X(SSL_CTX_set_session_id_context)                                                              \
    X(SSL_CTX_set_verify)                                                                          \
    X(SSL_CTX_use_PrivateKey_file)                                                                 \
    X(SSL_CTX_use_certificate_chain_file)                                                          \
    X(SSL_ctrl)                                                                                    \
    X(SSL_free)                                                                                    \
    X(SSL_get0_param)                                                                              \
    X(SSL_get_error)                                                                               \
    X(SSL_get_verify_result)                                                                       \
    X(SSL_is_init_finished)                                                                        \
    X(SSL_load_client_CA_file)                                                                     \
    X(SSL_new)                                                                                     \
    X(SSL_read)                                                                                    \
    X(SSL_set1_host)                                                                               \
    X(SSL_set_accept_state)                                                                        \
    X(SSL_set_bio)                                                                                 \
    X(SSL_set_connect_state)                                                                       \
    X(SSL_set_hostflags)                                                                           \
    X(SSL_shutdown)                                                                                \
    X(SSL_write)                                                                                   \
    X(TLS_client_method)                                                                           \
    X(TLS_server_method)                                                                           \
    X(X509_NAME_free)                                                                              \
    X(X509_VERIFY_PARAM_set1_ip_asc)                                                               \
    X(X509_verify_cert_error_string)
/* clang-format on */

static struct {
#define OSSL_SLOT(f) __typeof__(f) *f;
    OSSL_FUNCS(OSSL_SLOT)
#undef OSSL_SLOT
} ossl;

static pthread_once_t ossl_once = PTHREAD_ONCE_INIT;
static char ossl_error[256]; /* why loading failed; "" when it did not (set once, by ossl_load) */

static void ossl_load(void)
{
    void *lib = dlopen("libssl.so.3", RTLD_NOW | RTLD_LOCAL); /* and libcrypto.so.3, its need */
    if (!lib) {
        snprintf(ossl_error, sizeof ossl_error, "cannot load OpenSSL 3: %s", dlerror());
        return;
    }
    void *f;
#define OSSL_LOAD(name)                                                                            \
    if ((f = dlsym(lib, #name)) == NULL) {                                                         \
        snprintf(ossl_error, sizeof ossl_error, "OpenSSL lacks %s", #name);                        \
        return;                                                                                    \
    }                                                                                              \
    memcpy(&ossl.name, &f, sizeof f); /* ISO C has no cast from void * to a function pointer */
    OSSL_FUNCS(OSSL_LOAD)
#undef OSSL_LOAD
}

/* 0 once OpenSSL is loaded; FTRPC_ETLS, with the reason in err[errlen] and the log, when it cannot
 * be. Any thread. */
static int ossl_ready(char *err, size_t errlen)
{
    pthread_once(&ossl_once, ossl_load);
    if (ossl_error[0] == '\0') return 0;
    FT_ERROR("TLS: %s", ossl_error);
    if (err) snprintf(err, errlen, "%s", ossl_error);
    return FTRPC_ETLS;
}

#define BIO_ctrl ossl.BIO_ctrl
#define BIO_ctrl_pending ossl.BIO_ctrl_pending
#define BIO_free ossl.BIO_free
#define BIO_new ossl.BIO_new
#define BIO_read ossl.BIO_read
#define BIO_s_mem ossl.BIO_s_mem
#define BIO_write ossl.BIO_write
#define ERR_clear_error ossl.ERR_clear_error
#define ERR_error_string_n ossl.ERR_error_string_n
#define ERR_get_error ossl.ERR_get_error
#define ERR_reason_error_string ossl.ERR_reason_error_string
#define OPENSSL_sk_pop_free ossl.OPENSSL_sk_pop_free
#define SSL_CTX_check_private_key ossl.SSL_CTX_check_private_key
#define SSL_CTX_ctrl ossl.SSL_CTX_ctrl
#define SSL_CTX_free ossl.SSL_CTX_free
#define SSL_CTX_load_verify_locations ossl.SSL_CTX_load_verify_locations
#define SSL_CTX_new ossl.SSL_CTX_new
#define SSL_CTX_set_alpn_protos ossl.SSL_CTX_set_alpn_protos
#define SSL_CTX_set_alpn_select_cb ossl.SSL_CTX_set_alpn_select_cb
#define SSL_CTX_set_client_CA_list ossl.SSL_CTX_set_client_CA_list
#define SSL_CTX_set_default_verify_paths ossl.SSL_CTX_set_default_verify_paths
#define SSL_CTX_set_session_id_context ossl.SSL_CTX_set_session_id_context
#define SSL_CTX_set_verify ossl.SSL_CTX_set_verify
#define SSL_CTX_use_PrivateKey_file ossl.SSL_CTX_use_PrivateKey_file
#define SSL_CTX_use_certificate_chain_file ossl.SSL_CTX_use_certificate_chain_file
#define SSL_ctrl ossl.SSL_ctrl
#define SSL_free ossl.SSL_free
#define SSL_get0_param ossl.SSL_get0_param
#define SSL_get_error ossl.SSL_get_error
#define SSL_get_verify_result ossl.SSL_get_verify_result
#define SSL_is_init_finished ossl.SSL_is_init_finished
#define SSL_load_client_CA_file ossl.SSL_load_client_CA_file
#define SSL_new ossl.SSL_new
#define SSL_read ossl.SSL_read
#define SSL_set1_host ossl.SSL_set1_host
#define SSL_set_accept_state ossl.SSL_set_accept_state
#define SSL_set_bio ossl.SSL_set_bio
#define SSL_set_connect_state ossl.SSL_set_connect_state
#define SSL_set_hostflags ossl.SSL_set_hostflags
#define SSL_shutdown ossl.SSL_shutdown
#define SSL_write ossl.SSL_write
#define TLS_client_method ossl.TLS_client_method
#define TLS_server_method ossl.TLS_server_method
#define X509_NAME_free ossl.X509_NAME_free
#define X509_VERIFY_PARAM_set1_ip_asc ossl.X509_VERIFY_PARAM_set1_ip_asc
#define X509_verify_cert_error_string ossl.X509_verify_cert_error_string

/* Plaintext is handed to SSL_write in chunks of one full record: a loop turn's many small frames
 * then cost one record (one MAC, one header) per 16 KiB, not one per frame. */
enum { RECORD_CHUNK = 16384, READ_BUFFER = 32768, READ_MIN_SPACE = 2048 };

struct ft_tls_ctx {
    SSL_CTX *ssl_ctx; /* reference-counted by OpenSSL: every SSL made from it holds one */
    int is_server;
};

/* One connection's TLS; its loop thread only. */
struct ft_tls {
    SSL *ssl; /* owns rbio and wbio */
    BIO *rbio, *wbio;
    int failed;    /* the handshake or a record failed: nothing more is encrypted or decrypted */
    int shut;      /* a close_notify is queued: c->out holds ciphertext only */
    ft_iobuf wire; /* empty between calls: ciphertext lands here (reserve/commit) on its way to
                    * c->out, and its write block is reused from one flush to the next */
    char error[320];
};

/* OpenSSL's reason for the latest failure (and the certificate verification error, when there is
 * one) into buf; empties the thread's error queue. */
static void describe_error(SSL *ssl, char *buf, size_t len)
{
    unsigned long e = ERR_get_error(); /* the earliest: the cause, not its consequences */
    char code[128];
    const char *reason = NULL;
    if (e) {
        reason = ERR_reason_error_string(e);
        if (!reason) {
            ERR_error_string_n(e, code, sizeof code);
            reason = code;
        }
    }
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (vr != X509_V_OK)
        snprintf(buf, len, "%s (%s)", reason ? reason : "certificate verify failed",
                 X509_verify_cert_error_string(vr));
    else
        snprintf(buf, len, "%s", reason ? reason : "protocol error");
    ERR_clear_error();
}

/* ---- contexts ---- */

/* ALPN on a server (RFC 7301): gRPC clients offer "h2" alone, browsers and curl "h2" and
 * "http/1.1". HTTP/2 on this port serves gRPC only (the builtin pages are HTTP/1.1's), so "h2" is
 * chosen only when it is all that is offered, "http/1.1" whenever it is, and otherwise the
 * handshake goes on without ALPN. The bytes that follow are sniffed either way. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    const unsigned char *h2 = NULL, *h1 = NULL;
    for (unsigned i = 0; i < inlen && i + 1u + in[i] <= inlen; i += 1u + in[i]) {
        if (in[i] == 2 && memcmp(in + i + 1, "h2", 2) == 0) h2 = in + i;
        if (in[i] == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) h1 = in + i;
    }
    const unsigned char *pick = h1 ? h1 : h2;
    if (!pick) return SSL_TLSEXT_ERR_NOACK;
    *out = pick + 1;
    *outlen = pick[0];
    return SSL_TLSEXT_ERR_OK;
}

int ft_tls_ctx_new(const ft_tls_ctx_options *o, ft_tls_ctx **out, char *err, size_t errlen)
{
    if ((o->is_server && (!o->cert_file || !o->key_file)) || !o->cert_file != !o->key_file ||
        (o->is_server && o->peer_cert != FT_TLS_PEER_CERT_NONE && !o->ca_file)) {
        if (err) snprintf(err, errlen, "a certificate needs its key (and a client CA its mode)");
        return FTRPC_EINVAL;
    }
    int loaded = ossl_ready(err, errlen);
    if (loaded != 0) return loaded;
    ft_tls_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return FTRPC_ENOMEM;
    ctx->is_server = o->is_server;
    ERR_clear_error();
    const char *step = "a TLS context";
    SSL_CTX *sc = SSL_CTX_new(o->is_server ? TLS_server_method() : TLS_client_method());
    if (!sc) goto fail;
    SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION);
    /* an idle connection keeps no 34 KiB of record buffers */
    SSL_CTX_set_mode(sc, SSL_MODE_RELEASE_BUFFERS);
    if (o->cert_file) {
        step = o->cert_file;
        if (SSL_CTX_use_certificate_chain_file(sc, o->cert_file) != 1) goto fail;
        step = o->key_file;
        if (SSL_CTX_use_PrivateKey_file(sc, o->key_file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(sc) != 1)
            goto fail;
    }
    if (o->is_server) {
        if (o->peer_cert != FT_TLS_PEER_CERT_NONE) {
            step = o->ca_file;
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca_file);
            if (!names || SSL_CTX_load_verify_locations(sc, o->ca_file, NULL) != 1) {
                sk_X509_NAME_pop_free(names, X509_NAME_free);
                goto fail;
            }
            SSL_CTX_set_client_CA_list(sc, names); /* takes names */
            int mode = SSL_VERIFY_PEER;
            if (o->peer_cert == FT_TLS_PEER_CERT_REQUIRED) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
            SSL_CTX_set_verify(sc, mode, NULL);
            /* OpenSSL refuses to resume a session with a verified peer without one */
            static const unsigned char sid[] = "ftrpc";
            SSL_CTX_set_session_id_context(sc, sid, sizeof sid - 1);
        }
        SSL_CTX_set_alpn_select_cb(sc, alpn_select, NULL);
    } else {
        step = o->ca_file ? o->ca_file : "the system's trust store";
        if ((o->ca_file ? SSL_CTX_load_verify_locations(sc, o->ca_file, NULL)
                        : SSL_CTX_set_default_verify_paths(sc)) != 1)
            goto fail;
        SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, NULL);
        static const unsigned char H2[] = "\x02h2";
        if (o->alpn_h2 && SSL_CTX_set_alpn_protos(sc, H2, sizeof H2 - 1) != 0) goto fail;
    }
    ctx->ssl_ctx = sc;
    *out = ctx;
    return 0;
fail : {
    char reason[200];
    describe_error(NULL, reason, sizeof reason);
    FT_ERROR("TLS: cannot use %s: %s", step, reason);
    if (err) snprintf(err, errlen, "cannot use %s: %s", step, reason);
    SSL_CTX_free(sc);
    free(ctx);
    return FTRPC_ETLS;
}
}

void ft_tls_ctx_free(ft_tls_ctx *ctx)
{
    if (!ctx) return;
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
}

/* ---- per connection ---- */

/* Moves everything OpenSSL wrote (handshake records, alerts, ciphertext) to the end of dst.
 * BIO_read straight into iobuf blocks: one copy, and the wbio empties by reading, which is cheap
 * (BIO_reset would clear the BIO's whole high-water buffer on every flush). */
static int drain(ft_tls *t, ft_iobuf *dst)
{
    size_t pending;
    while ((pending = BIO_ctrl_pending(t->wbio)) > 0) {
        char *p;
        size_t len;
        if (ft_iobuf_reserve(&t->wire, pending < 512 ? pending : 512, &p, &len) != 0)
            return FTRPC_ENOMEM;
        if (len > pending) len = pending;
        int n = BIO_read(t->wbio, p, len > INT_MAX ? INT_MAX : (int)len);
        if (n <= 0) break;
        ft_iobuf_commit(&t->wire, (size_t)n);
    }
    return ft_iobuf_cut(&t->wire, dst, ft_iobuf_size(&t->wire));
}

/* Decrypts what the rbio holds into c->in (driving the handshake on the way). 0 when OpenSSL
 * wants more bytes, FTRPC_EEOF on the peer's close_notify, FTRPC_ETLS on a failure. */
static int pump(ft_conn *c)
{
    ft_tls *t = c->tls;
    ERR_clear_error();
    for (;;) {
        char *p;
        size_t len;
        if (ft_iobuf_reserve(&c->in, READ_MIN_SPACE, &p, &len) != 0) return FTRPC_ENOMEM;
        int n = SSL_read(t->ssl, p, len > INT_MAX ? INT_MAX : (int)len);
        if (n > 0) {
            ft_iobuf_commit(&c->in, (size_t)n);
            continue;
        }
        switch (SSL_get_error(t->ssl, n)) {
        case SSL_ERROR_WANT_READ:
            return 0;
        case SSL_ERROR_ZERO_RETURN:
            return FTRPC_EEOF;
        default:
            return FTRPC_ETLS;
        }
    }
}

/* Records why the TLS of c failed (why, or OpenSSL's error queue) and logs it, once. */
static void note_failure(ft_conn *c, const char *why)
{
    ft_tls *t = c->tls;
    if (!t->failed) {
        char reason[200];
        if (why)
            snprintf(reason, sizeof reason, "%s", why);
        else
            describe_error(t->ssl, reason, sizeof reason);
        snprintf(t->error, sizeof t->error, "TLS %swith %s failed: %s",
                 SSL_is_init_finished(t->ssl) ? "" : "handshake ", c->peer, reason);
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "%s", t->error);
        t->failed = 1;
    }
    ERR_clear_error();
}

/* Records why, drops the plaintext still queued (it must never leave unencrypted), and closes
 * once OpenSSL's alert is out, so that the peer learns why too. */
static void fail(ft_conn *c, const char *why)
{
    note_failure(c, why);
    ft_iobuf_clear(&c->out);
    if (drain(c->tls, &c->out) != 0) ft_iobuf_clear(&c->out);
    ft_conn_close(c, FTRPC_ETLS, 0);
}

static int set_peer_name(SSL *ssl, const char *name)
{
    unsigned char addr[16];
    if (inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1)
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1 ? 0 : -1;
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (SSL_set_tlsext_host_name(ssl, name) != 1) return -1;
    return SSL_set1_host(ssl, name) == 1 ? 0 : -1;
}

int ft_conn_start_tls(ft_conn *c, ft_tls_ctx *ctx, const char *verify_name)
{
    if (c->tls) return FTRPC_EINVAL;
    ft_tls *t = calloc(1, sizeof *t);
    if (!t) return FTRPC_ENOMEM;
    ft_iobuf_init(&t->wire);
    ERR_clear_error();
    t->ssl = SSL_new(ctx->ssl_ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return FTRPC_ENOMEM;
    }
    BIO_set_mem_eof_return(t->rbio, -1); /* empty means "wait for more", not end of stream */
    BIO_set_mem_eof_return(t->wbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    if (ctx->is_server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (verify_name && set_peer_name(t->ssl, verify_name) != 0) {
            char reason[200];
            describe_error(NULL, reason, sizeof reason);
            FT_WARN("TLS: cannot check the name '%s': %s", verify_name, reason);
            SSL_free(t->ssl);
            free(t);
            return FTRPC_ETLS;
        }
    }
    c->tls = t;
    /* server: the bytes read in plain mode are the beginning of the ClientHello */
    while (ft_iobuf_size(&c->in) > 0) {
        struct iovec iov[16];
        int k = ft_iobuf_to_iovec(&c->in, iov, 16);
        size_t taken = 0;
        for (int i = 0; i < k; i++) {
            if (BIO_write(t->rbio, iov[i].iov_base, (int)iov[i].iov_len) != (int)iov[i].iov_len) {
                fail(c, "out of memory");
                return 0;
            }
            taken += iov[i].iov_len;
        }
        ft_iobuf_pop_front(&c->in, taken);
    }
    /* the client's ClientHello (sent once connected), or the server's first answer */
    int rc = pump(c);
    if (rc != 0) {
        fail(c, NULL);
        return 0;
    }
    if (BIO_ctrl_pending(t->wbio) > 0) ft_conn_flush_soon(c);
    return 0;
}

const char *ft_conn_tls_error(const ft_conn *c)
{
    return c->tls ? c->tls->error : "";
}

int ft_conn_tls_established(const ft_conn *c)
{
    return c->tls && SSL_is_init_finished(c->tls->ssl);
}

/* ---- hooks for conn.c ---- */

void ft_tls_read_buffer(uv_buf_t *buf)
{
    static _Thread_local char bytes[READ_BUFFER];
    buf->base = bytes;
    buf->len = sizeof bytes;
}

void ft_tls_on_read(ft_conn *c, const char *data, size_t n)
{
    ft_tls *t = c->tls;
    if (c->state != FT_CONN_OPEN || t->failed) return;
    if (BIO_write(t->rbio, data, (int)n) != (int)n) {
        fail(c, "out of memory");
        return;
    }
    size_t before = ft_iobuf_size(&c->in);
    int rc = pump(c);
    if (rc == FTRPC_ETLS || rc == FTRPC_ENOMEM) {
        fail(c, rc == FTRPC_ENOMEM ? "out of memory" : NULL);
        return;
    }
    /* handshake records to answer, or frames held back until the handshake completed */
    if (BIO_ctrl_pending(t->wbio) > 0 ||
        (ft_iobuf_size(&c->out) > 0 && SSL_is_init_finished(t->ssl)))
        ft_conn_flush_soon(c);
    if (ft_iobuf_size(&c->in) > before) {
        int r = c->handler->on_read(c);
        if (r < 0 && c->state != FT_CONN_CLOSED) ft_conn_close(c, r, 1);
    }
    if (rc == FTRPC_EEOF && c->state == FT_CONN_OPEN) ft_conn_close(c, FTRPC_EEOF, 1);
}

/* Encrypts all of c->out in place (plaintext in, ciphertext out). */
static int seal(ft_conn *c)
{
    ft_tls *t = c->tls;
    ft_iobuf plain;
    ft_iobuf_init(&plain);
    ft_iobuf_move(&plain, &c->out);
    char chunk[RECORD_CHUNK];
    int rc = 0;
    while (rc == 0 && ft_iobuf_size(&plain) > 0) {
        size_t n = ft_iobuf_size(&plain) < RECORD_CHUNK ? ft_iobuf_size(&plain) : RECORD_CHUNK;
        const void *p = ft_iobuf_fetch(&plain, chunk, n);
        if (SSL_write(t->ssl, p, (int)n) != (int)n)
            rc = FTRPC_ETLS;
        else
            ft_iobuf_pop_front(&plain, n);
    }
    ft_iobuf_fini(&plain);
    if (rc == 0) rc = drain(t, &c->out);
    return rc;
}

int ft_tls_encrypt(ft_conn *c, ft_iobuf *held)
{
    ft_tls *t = c->tls;
    if (t->failed || t->shut) return drain(t, &c->out); /* c->out is ciphertext already */
    if (!SSL_is_init_finished(t->ssl)) {
        ft_iobuf_move(held, &c->out);
        return drain(t, &c->out);
    }
    ERR_clear_error();
    int rc = seal(c);
    if (rc == FTRPC_ETLS) {
        char reason[200];
        describe_error(t->ssl, reason, sizeof reason);
        snprintf(t->error, sizeof t->error, "TLS with %s failed: %s", c->peer, reason);
        FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "%s", t->error);
        t->failed = 1;
    }
    return rc;
}

void ft_tls_shutdown(ft_conn *c)
{
    ft_tls *t = c->tls;
    if (t->failed || t->shut || !SSL_is_init_finished(t->ssl)) return;
    ERR_clear_error();
    if (seal(c) != 0) {
        ERR_clear_error();
        return; /* the close goes on without a close_notify */
    }
    (void)SSL_shutdown(t->ssl); /* queues close_notify; never waits for the peer's */
    t->shut = 1;
    (void)drain(t, &c->out);
    ERR_clear_error();
}

/* The socket broke: read what the peer sent last, which the kernel still holds after a reset.
 * A peer that refuses this side (a TLS 1.3 server that wanted a client certificate) sends its
 * alert and closes; when this side wrote meanwhile, the write fails before the alert is read,
 * and only the alert says why. */
static void read_last_words(ft_conn *c)
{
    ft_tls *t = c->tls;
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) return;
    uv_buf_t b;
    ft_tls_read_buffer(&b);
    for (int i = 0; i < 4; i++) { /* bounded: an alert is a few bytes */
        ssize_t n = recv(fd, b.base, b.len, MSG_DONTWAIT);
        if (n <= 0 || BIO_write(t->rbio, b.base, (int)n) != (int)n) break;
    }
    if (pump(c) == FTRPC_ETLS) note_failure(c, NULL);
    ERR_clear_error();
}

int ft_tls_close_reason(ft_conn *c, int reason)
{
    ft_tls *t = c->tls;
    if (!t->failed) read_last_words(c);
    if (t->failed) return FTRPC_ETLS;
    if (SSL_is_init_finished(t->ssl)) return reason;
    snprintf(t->error, sizeof t->error,
             "TLS handshake with %s failed: the connection closed during the handshake (does the "
             "peer speak TLS, and accept this side's certificate?)",
             c->peer);
    FT_LOG_RATELIMITED(FTRPC_LOG_WARN, "%s", t->error);
    t->failed = 1;
    return FTRPC_ETLS;
}

void ft_tls_free(ft_tls *t)
{
    if (!t) return;
    SSL_free(t->ssl);
    ft_iobuf_fini(&t->wire);
    free(t);
}
