/*
 * TLS connections: handshake, read, write and shutdown as loops around OpenSSL calls that
 * never wait (the BIO of io/tls_bio.c). When OpenSSL wants input, what it produced goes out
 * first (a handshake flight), then the calling green thread waits for the socket and calls
 * again; after every call, what it produced goes out. Waiting only between OpenSSL calls
 * means a kill or a deadline always finds OpenSSL's state whole: the interrupted call returns
 * -ECANCELED or -ETIMEDOUT and a later call resumes it, handshake included. It also means one
 * green thread may read while another writes on the same connection.
 *
 * OpenSSL's error queue is per OS thread, shared by every green thread of the hub: each call
 * clears it before starting and turns what it finds into this connection's message right
 * after, with no switch in between, so no green thread sees another's errors.
 */
#include "tls_buffers.h"
#include "tls_impl.h"

#include "ivy/socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { WRITE_CHUNK = 65536 }; /* plaintext per SSL_write: bounds the gathered records */

static bool ip_literal(const char *name)
{
    unsigned char a[16];
    return inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
}

static int client_setup(ivy_tls *c, ivy_tls_ctx *ctx, const char *name)
{
    bool verify = !(ctx->flags & IVY_TLS_INSECURE);
    if (!name) return verify ? -EINVAL : 0;
    if (!(c->name = strdup(name))) return -ENOMEM;
    SSL_set_app_data(c->ssl, c->name); /* for new_session: where to remember it */
    if (ip_literal(name)) { /* RFC 6066: no SNI for addresses; verify the IP SAN instead */
        if (verify && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name) != 1)
            return -EINVAL;
    } else {
        if (SSL_set_tlsext_host_name(c->ssl, name) != 1) return -EINVAL;
        if (verify && SSL_set1_host(c->ssl, name) != 1) return -EINVAL;
    }
    if (ctx->flags & IVY_TLS_NO_RESUME) return 0;
    /* A copy for each connection: OpenSSL's client updates the session it resumes in place,
       so two handshakes offering the same object at once spoil it for one of them (measured:
       a quarter of resumptions fell back to full handshakes with two connections). */
    SSL_SESSION *copy = NULL;
    pthread_mutex_lock(&ctx->lock);
    if (ctx->session && ctx->session_name && !strcmp(ctx->session_name, name))
        copy = SSL_SESSION_dup(ctx->session);
    pthread_mutex_unlock(&ctx->lock);
    if (copy) {
        SSL_set_session(c->ssl, copy);
        SSL_SESSION_free(copy); /* the connection holds its own reference */
    }
    return 0;
}

ivy_tls *ivy_tls_new(ivy_tls_ctx *ctx, int fd, const char *server_name)
{
    if (!ctx || fd < 0) {
        errno = EINVAL;
        return NULL;
    }
    BIO_METHOD *method = ivy__tls_bio_method();
    ivy_tls *c = calloc(1, sizeof *c);
    if (!c || !method) goto nomem;
    c->fd = fd;
    pthread_mutex_lock(&ctx->lock); /* a reload may swap ctx->ssl */
    c->ssl = SSL_new(ctx->ssl);
    pthread_mutex_unlock(&ctx->lock);
    BIO *b = c->ssl ? BIO_new(method) : NULL;
    if (!b) goto nomem;
    BIO_set_data(b, c);
    SSL_set_bio(c->ssl, b, b);
    int rc = 0;
    if (ctx->server)
        SSL_set_accept_state(c->ssl);
    else if ((rc = client_setup(c, ctx, server_name)) == 0)
        SSL_set_connect_state(c->ssl);
    if (rc == 0) return c;
    ivy_tls_free(c);
    ERR_clear_error();
    errno = -rc;
    return NULL;
nomem:
    ivy_tls_free(c);
    ERR_clear_error();
    errno = ENOMEM;
    return NULL;
}

void ivy__tls_keep_buffers(ivy_tls *c)
{
    SSL_clear_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
}

void ivy__tls_drop_buffers(ivy_tls *c)
{
    /* Fails, harmlessly, while a record is half read; OpenSSL allocates them again when the
       connection next reads or writes. */
    SSL_free_buffers(c->ssl);
}

void ivy_tls_free(ivy_tls *c)
{
    if (!c) return;
    /* OpenSSL marks the session of a connection freed without close_notify unresumable; a
       client that just closes (as load generators and browsers do) should still resume, so
       only a TLS failure loses the session. */
    if (c->ssl && !c->broken && SSL_is_init_finished(c->ssl))
        SSL_set_shutdown(c->ssl, SSL_get_shutdown(c->ssl) | SSL_SENT_SHUTDOWN);
    SSL_free(c->ssl); /* frees the BIO too */
    free(c->out);
    free(c->send);
    free(c->name);
    free(c);
}

int ivy_tls_close(ivy_tls *c)
{
    if (!c) return -EINVAL;
    int fd = c->fd;
    ivy_tls_free(c);
    return ivy_close(fd);
}

static int socket_error(ivy_tls *c, int err)
{
    ERR_clear_error();
    snprintf(c->msg, sizeof c->msg, "%s", strerror(-err));
    return err;
}

/* A failed OpenSSL call that will not succeed by retrying: a negative errno, 0 for EOF. */
static int failure(ivy_tls *c, int e, bool reading)
{
    if (e == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        return 0;
    }
    if (c->err && (e == SSL_ERROR_SYSCALL || !ERR_peek_error())) return socket_error(c, c->err);
    if (c->eof && !SSL_is_init_finished(c->ssl)) {
        ERR_clear_error();
        snprintf(c->msg, sizeof c->msg, "the peer closed the connection during the handshake");
        return -ECONNRESET;
    }
    if (e == SSL_ERROR_SYSCALL && reading && c->eof) {
        ERR_clear_error();
        return 0;
    }
    long v = SSL_get_verify_result(c->ssl);
    if (v != X509_V_OK) {
        ERR_clear_error();
        snprintf(c->msg, sizeof c->msg, "certificate verify failed: %s",
                 X509_verify_cert_error_string(v));
    } else {
        ivy__tls_errstr(c->msg, sizeof c->msg, "TLS");
    }
    c->broken = true;
    ivy__tls_flush(c); /* best effort: the alert OpenSSL queued tells the peer why */
    return -EPROTO;
}

enum { AGAIN = 1 };

/*
 * After an OpenSSL call that returned ret (ok: it succeeded): sends what it produced, and
 * when it wants input waits for some. AGAIN: call it again; 0: done; else a negative errno
 * (0 also for a read's end of stream, *eof set).
 */
static int settle(ivy_tls *c, bool ok, int ret, bool reading, bool *eof)
{
    int e = ok ? SSL_ERROR_NONE : SSL_get_error(c->ssl, ret);
    if (e == SSL_ERROR_NONE || e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        int rc = ivy__tls_flush(c);
        if (rc < 0) return socket_error(c, rc);
        if (e == SSL_ERROR_NONE) return 0;
        if (e == SSL_ERROR_WANT_WRITE) return AGAIN; /* the BIO never says so; harmless */
        ssize_t n = ivy__tls_wait_input(c);
        return n < 0 ? socket_error(c, (int)n) : AGAIN; /* 0: EOF, which OpenSSL judges */
    }
    int rc = failure(c, e, reading);
    if (rc == 0 && eof) *eof = true;
    return rc;
}

static void start(ivy_tls *c)
{
    /* OpenSSL's queue must be empty for SSL_get_error; clearing even an empty one walks all
       its slots, 32 free() calls in OpenSSL 3.0 (counted), so only clear one that is not. */
    if (ERR_peek_error()) ERR_clear_error();
    c->err = 0;
    c->msg[0] = 0;
    c->view_len = 0; /* a view from an earlier call may be stale: peek again */
}

int ivy_tls_handshake(ivy_tls *c)
{
    if (!c) return -EINVAL;
    start(c);
    int rc;
    do {
        int ret = SSL_do_handshake(c->ssl);
        rc = settle(c, ret == 1, ret, false, NULL);
    } while (rc == AGAIN);
    return rc;
}

ssize_t ivy_tls_read(ivy_tls *c, void *buf, size_t len)
{
    if (!c) return -EINVAL;
    if (!len) return 0;
    start(c);
    int rc;
    size_t n;
    do {
        n = 0;
        int ok = SSL_read_ex(c->ssl, buf, len > INT_MAX ? INT_MAX : len, &n);
        rc = settle(c, ok == 1, ok, true, NULL);
    } while (rc == AGAIN);
    return rc < 0 ? rc : (ssize_t)n;
}

ssize_t ivy_tls_write(ivy_tls *c, const void *buf, size_t len)
{
    if (!c) return -EINVAL;
    start(c);
    if (SSL_get_shutdown(c->ssl)) { /* either side's close_notify: nothing more goes out */
        snprintf(c->msg, sizeof c->msg, "the TLS connection is shut down");
        return -EPIPE;
    }
    size_t done = 0;
    while (done < len) {
        size_t k = len - done < WRITE_CHUNK ? len - done : WRITE_CHUNK, n = 0;
        bool eof = false;
        int ok = SSL_write_ex(c->ssl, (const char *)buf + done, k, &n);
        int rc = settle(c, ok == 1, ok, false, &eof);
        if (rc == AGAIN) continue; /* the same buffer again, as OpenSSL requires */
        if (rc < 0) return rc;
        if (eof) return -EPIPE; /* close_notify received: nothing more goes out */
        done += n;
    }
    return (ssize_t)len;
}

int ivy_tls_shutdown(ivy_tls *c)
{
    if (!c) return -EINVAL;
    start(c);
    if (!SSL_is_init_finished(c->ssl)) return 0; /* nothing agreed on, nothing to close */
    /* 0: our close_notify is written, the peer's not seen: we do not wait for it. */
    int ret = SSL_shutdown(c->ssl);
    int rc = settle(c, ret >= 0, ret, false, NULL);
    return rc == AGAIN ? ivy__tls_flush(c) : rc;
}

const char *ivy_tls_error(const ivy_tls *c)
{
    return c ? c->msg : "";
}

const char *ivy_tls_alpn(const ivy_tls *c)
{
    const unsigned char *p;
    unsigned len;
    SSL_get0_alpn_selected(c->ssl, &p, &len);
    /* Our contexts offer and select http/1.1 only, so that is the one answer there can be. */
    return len == 8 && !memcmp(p, "http/1.1", 8) ? "http/1.1" : "";
}

bool ivy_tls_resumed(const ivy_tls *c)
{
    return SSL_session_reused(c->ssl) == 1;
}

const char *ivy_tls_version(const ivy_tls *c)
{
    return SSL_get_version(c->ssl);
}
