/*
 * TLS contexts: the server's (certificate chain, key, ALPN, tickets, session cache), the
 * client's (trust anchors, verification, one remembered session for resumption), reload, and
 * which record path the kernel allows.
 *
 * Every file is opened by us first, so a missing or unreadable one is reported with its own
 * errno and name rather than as an OpenSSL parse failure. A reload builds a complete new
 * SSL_CTX and swaps it in under the lock only when everything loaded: a bad renewal leaves the
 * running certificate in place. The new SSL_CTX takes over the old ticket keys, so tickets
 * issued before a reload still resume after it.
 */
#include "tls_impl.h"
#include "tls_ktls.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const unsigned char alpn_http11[] = "\x08http/1.1";

static int ctx_index = -1;
static pthread_once_t ctx_index_once = PTHREAD_ONCE_INIT;

static void make_ctx_index(void)
{
    ctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

ivy_tls_ctx *ivy__tls_ctx_of(SSL_CTX *ssl)
{
    return SSL_CTX_get_ex_data(ssl, ctx_index);
}

void ivy__tls_errstr(char *msg, size_t msglen, const char *prefix)
{
    unsigned long e = ERR_get_error(); /* the earliest: the root cause, the rest restate it */
    ERR_clear_error();
    if (!msg || !msglen) return;
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(msg, msglen, "%s%s%s", prefix, r ? ": " : "", r ? r : "");
}

static int say(char *msg, size_t msglen, int err, const char *fmt, const char *a, const char *b)
{
    if (msg && msglen) snprintf(msg, msglen, fmt, a, b ? b : "", strerror(-err));
    ERR_clear_error();
    return err;
}

/* A file we can open for reading, or its errno with a message naming it. */
static int readable(const char *what, const char *path, char *msg, size_t msglen)
{
    if (!path || !*path) return say(msg, msglen, -EINVAL, "no %s file given%s", what, NULL);
    FILE *f = fopen(path, "r");
    if (!f) return say(msg, msglen, -errno, "cannot read %s file %s: %s", what, path);
    fclose(f);
    return 0;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, alpn_http11, sizeof alpn_http11 - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* no http/1.1 on offer: go on without ALPN */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *new_ssl_ctx(ivy_tls_ctx *c, const SSL_METHOD *method)
{
    pthread_once(&ctx_index_once, make_ctx_index);
    SSL_CTX *s = SSL_CTX_new(method);
    if (!s) return NULL;
    SSL_CTX_set_ex_data(s, ctx_index, c);
    SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION);
    /* Clients (curl, wrk, browsers) often close without close_notify: that is end of stream,
       not an error, once the handshake is done. */
    long opts = SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION;
    if (strncmp(ivy_tls_path(), "kTLS", 4) == 0) opts |= SSL_OP_ENABLE_KTLS;
    SSL_CTX_set_options(s, opts);
    /* Records are read ahead into OpenSSL's buffer: one receive per burst, not two per record
       (header, then body). */
    SSL_CTX_set_read_ahead(s, 1);
    SSL_CTX_set_mode(s, SSL_MODE_RELEASE_BUFFERS);
    return s;
}

/* A server SSL_CTX from the files, or NULL with the cause in msg and *err. */
static SSL_CTX *load_server(ivy_tls_ctx *c, const char *cert, const char *key, int *err, char *msg,
                            size_t msglen)
{
    if ((*err = readable("certificate", cert, msg, msglen)) < 0) return NULL;
    if ((*err = readable("key", key, msg, msglen)) < 0) return NULL;
    SSL_CTX *s = new_ssl_ctx(c, TLS_server_method());
    if (!s) {
        *err = say(msg, msglen, -ENOMEM, "out of memory for a TLS context%s%s", "", NULL);
        return NULL;
    }
    char prefix[600];
    if (SSL_CTX_use_certificate_chain_file(s, cert) != 1) {
        snprintf(prefix, sizeof prefix, "%s: not a PEM certificate chain", cert);
        goto bad;
    }
    BIO *kb = BIO_new_file(key, "r");
    EVP_PKEY *pkey = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
    BIO_free(kb);
    if (!pkey) {
        snprintf(prefix, sizeof prefix, "%s: not a PEM private key", key);
        goto bad;
    }
    int match = X509_check_private_key(SSL_CTX_get0_certificate(s), pkey);
    if (match == 1) match = SSL_CTX_use_PrivateKey(s, pkey);
    EVP_PKEY_free(pkey);
    if (match != 1) {
        snprintf(prefix, sizeof prefix, "%s does not match the certificate in %s", key, cert);
        goto bad;
    }
    /* The file is the chain we send: no store walk per full handshake to build another (as
       nginx does). */
    SSL_CTX_set_mode(s, SSL_MODE_NO_AUTO_CHAIN);
    SSL_CTX_set_alpn_select_cb(s, alpn_select, NULL);
    /* Both resumption forms: tickets (stateless, shared by forked workers) and the cache. */
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_session_id_context(s, (const unsigned char *)"ivy", 3);
    SSL_CTX_sess_set_cache_size(s, 20480);
    SSL_CTX_set_num_tickets(s, 1); /* TLS 1.3: one ticket per full handshake, not two */
    return s;
bad:
    ivy__tls_errstr(msg, msglen, prefix);
    SSL_CTX_free(s);
    *err = -EINVAL;
    return NULL;
}

static ivy_tls_ctx *ctx_alloc(bool server, int flags)
{
    ivy_tls_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    pthread_mutex_init(&c->lock, NULL);
    c->server = server;
    c->flags = flags;
    return c;
}

int ivy_tls_server_new(ivy_tls_ctx **out, const char *cert_file, const char *key_file, char *msg,
                       size_t msglen)
{
    int err = -ENOMEM;
    ivy_tls_ctx *c = ctx_alloc(true, 0);
    if (!c || !(c->cert_file = strdup(cert_file ? cert_file : "")) ||
        !(c->key_file = strdup(key_file ? key_file : "")))
        goto fail;
    if (!(c->ssl = load_server(c, cert_file, key_file, &err, msg, msglen))) goto fail;
    *out = c;
    return 0;
fail:
    if (err == -ENOMEM) say(msg, msglen, err, "out of memory%s%s: %s", "", NULL);
    ivy_tls_ctx_free(c);
    return err;
}

static int new_session(SSL *ssl, SSL_SESSION *sess)
{
    ivy_tls_ctx *c = ivy__tls_ctx_of(SSL_get_SSL_CTX(ssl));
    const char *name = SSL_get_app_data(ssl);
    if (!c || !name) return 0;
    ivy__tls_remember(c, name, sess);
    return 1; /* we keep the reference OpenSSL gave us */
}

int ivy_tls_client_new(ivy_tls_ctx **out, const char *ca_file, int flags, char *msg, size_t msglen)
{
    int err = -ENOMEM;
    ivy_tls_ctx *c = ctx_alloc(false, flags);
    if (!c) goto fail;
    if (ca_file && (err = readable("CA", ca_file, msg, msglen)) < 0) goto fail;
    err = -ENOMEM;
    if (!(c->ssl = new_ssl_ctx(c, TLS_client_method()))) goto fail;
    if (!(flags & IVY_TLS_INSECURE)) {
        int ok = ca_file ? SSL_CTX_load_verify_locations(c->ssl, ca_file, NULL)
                         : SSL_CTX_set_default_verify_paths(c->ssl);
        if (ok != 1) {
            char prefix[600];
            snprintf(prefix, sizeof prefix, "%s: no PEM certificate to trust",
                     ca_file ? ca_file : "the system trust store");
            ivy__tls_errstr(msg, msglen, prefix);
            err = -EINVAL;
            goto fail;
        }
        SSL_CTX_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
    }
    SSL_CTX_set_alpn_protos(c->ssl, alpn_http11, sizeof alpn_http11 - 1);
    /* We keep the session ourselves (new_session): OpenSSL's client cache is never looked up. */
    SSL_CTX_set_session_cache_mode(c->ssl,
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(c->ssl, new_session);
    *out = c;
    return 0;
fail:
    if (err == -ENOMEM) say(msg, msglen, err, "out of memory%s%s: %s", "", NULL);
    ivy_tls_ctx_free(c);
    return err;
}

void ivy__tls_remember(ivy_tls_ctx *c, const char *name, SSL_SESSION *sess)
{
    pthread_mutex_lock(&c->lock);
    if (c->session) SSL_SESSION_free(c->session);
    c->session = sess;
    if (!c->session_name || strcmp(c->session_name, name)) {
        free(c->session_name);
        c->session_name = strdup(name);
    }
    pthread_mutex_unlock(&c->lock);
}

int ivy_tls_ctx_reload(ivy_tls_ctx *c, char *msg, size_t msglen)
{
    if (!c || !c->server) return -EINVAL;
    int err;
    SSL_CTX *s = load_server(c, c->cert_file, c->key_file, &err, msg, msglen);
    if (!s) return err;
    unsigned char keys[80]; /* name, HMAC and AES keys: old tickets keep resuming */
    pthread_mutex_lock(&c->lock);
    SSL_CTX *old = c->ssl;
    if (SSL_CTX_get_tlsext_ticket_keys(old, keys, sizeof keys) == 1)
        SSL_CTX_set_tlsext_ticket_keys(s, keys, sizeof keys);
    c->ssl = s;
    pthread_mutex_unlock(&c->lock);
    OPENSSL_cleanse(keys, sizeof keys);
    SSL_CTX_free(old); /* open connections hold their own references */
    return 0;
}

void ivy_tls_ctx_free(ivy_tls_ctx *c)
{
    if (!c) return;
    SSL_CTX_free(c->ssl);
    if (c->session) SSL_SESSION_free(c->session);
    free(c->session_name);
    free(c->cert_file);
    free(c->key_file);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static const char *path_line;
static pthread_once_t path_once = PTHREAD_ONCE_INIT;

/*
 * Asking for the "tls" ULP on an unconnected socket tells the cases apart without side
 * effects: ENOENT, no such ULP (and none loadable: the kernel autoloads the module here);
 * ENOTCONN, it exists but wants an established connection.
 */
static void probe_path(void)
{
    path_line = "userspace (kernel without the tls ULP: CONFIG_TLS)";
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    if (setsockopt(fd, SOL_TCP, TCP_ULP, "tls", 3) < 0 && errno == ENOTCONN)
        path_line = ivy__ktls_wanted()
                        ? "kTLS transmit (kernel tls ULP), userspace receive"
                        : "userspace (the kernel has the tls ULP, but IVY_TLS_KTLS=0)";
    close(fd);
}

const char *ivy_tls_path(void)
{
    pthread_once(&path_once, probe_path);
    return path_line;
}
