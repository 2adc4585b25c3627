/* TLS internals shared by io/tls.c (contexts) and io/tls_conn.c (the BIO and connections). */
#ifndef IVY_TLS_IMPL_H
#define IVY_TLS_IMPL_H

#include "ivy/tls.h"

#include <openssl/ssl.h>
#include <pthread.h>

struct ivy_tls_ctx {
    pthread_mutex_t lock; /* guards ssl (swapped by reload) and the remembered session */
    SSL_CTX *ssl;
    bool server;
    int flags;
    char *cert_file, *key_file;
    SSL_SESSION *session; /* client: the last session given, for the next connect to ... */
    char *session_name;   /* ... this server name */
};

/*
 * A connection. OpenSSL never waits inside a call: the BIO (io/tls_bio.c) hands it the bytes
 * already received (view) and gathers what it writes (out); the calls of io/tls_conn.c send
 * and wait between OpenSSL calls. So every OpenSSL call runs to its end without a green-thread
 * switch, which is what lets one green thread read while another writes.
 */
struct ivy_tls {
    SSL *ssl;
    int fd;
    int err;          /* the socket error behind the last failure, 0 if none */
    bool eof;         /* the peer closed the TCP stream */
    bool broken;      /* a TLS failure: its session must not be resumed */
    bool flushing;    /* a green thread is sending send[]: others leave it to that one */
    bool ktls_tx;     /* the kernel encrypts what we send (io/tls_ktls.c) */
    int ctrl_type;    /* kTLS: the next write is one record of this type, 0: application data */
    const char *view; /* received bytes OpenSSL may take: the head of io/recv.c's queue */
    size_t view_len;
    char *out; /* records gathered during OpenSSL calls ... */
    size_t out_len, out_cap;
    char *send; /* ... and those on their way out (never moved while a send is in flight) */
    size_t send_off, send_len, send_cap;
    char *name; /* client: the server name its session is remembered under */
    char msg[256];
};

/* The ring BIO's method (created once). */
BIO_METHOD *ivy__tls_bio_method(void);
/* Sends every gathered record (or leaves that to the green thread already sending): 0 or the
   socket's error, also kept in c->err. */
int ivy__tls_flush(ivy_tls *c);
/* Waits until bytes have arrived and offers them to the BIO: their count, 0 at end of stream
   (c->eof), or a negative errno. */
ssize_t ivy__tls_wait_input(ivy_tls *c);

/* SSL_CTX -> its ivy_tls_ctx (the session callback needs it). */
ivy_tls_ctx *ivy__tls_ctx_of(SSL_CTX *ssl);

/* The client context's session slot: takes a reference to sess under name. */
void ivy__tls_remember(ivy_tls_ctx *ctx, const char *name, SSL_SESSION *sess);

/* Formats OpenSSL's error queue (then cleared) after prefix into msg; "" when empty. */
void ivy__tls_errstr(char *msg, size_t msglen, const char *prefix);

#endif
