/*
 * The ring BIO under every TLS connection: reads take bytes straight from the socket's
 * receive queue in the hub (io/recv.c's peek and take: no copy of ours), writes gather records
 * in the connection's buffer. Neither ever waits: a read with nothing offered says "retry",
 * and io/tls_conn.c waits for the socket then calls OpenSSL again. Gathering makes a handshake
 * flight, or a write of many records, one send.
 *
 * Sending double-buffers: records gathered while a send is in flight go to out[], and the
 * green thread that is sending takes them after its own, so a reader's alert and a writer's
 * records never interleave mid-record and no buffer moves under a send in flight.
 */
#include "socket_impl.h"
#include "tls_impl.h"
#include "tls_ktls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { OUT_MIN = 4096 }; /* first allocation of the send buffers */

static bool grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap) return true;
    size_t n = *cap ? *cap : OUT_MIN;
    while (n < need)
        n *= 2;
    char *p = realloc(*buf, n);
    if (!p) return false;
    *buf = p;
    *cap = n;
    return true;
}

int ivy__tls_flush(ivy_tls *c)
{
    if (c->flushing) return 0; /* the sender in flight takes ours after its own */
    c->flushing = true;
    int rc = 0;
    for (;;) {
        if (c->send_off == c->send_len) { /* nothing in flight: take what was gathered */
            if (!c->out_len) break;
            char *b = c->send;
            size_t cap = c->send_cap;
            c->send = c->out;
            c->send_cap = c->out_cap;
            c->send_len = c->out_len;
            c->send_off = 0;
            c->out = b;
            c->out_cap = cap;
            c->out_len = 0;
        }
        ssize_t n = ivy_send(c->fd, c->send + c->send_off, c->send_len - c->send_off);
        if (n < 0) { /* what is unsent stays: a later flush goes on from there */
            rc = c->err = (int)n;
            break;
        }
        c->send_off += (size_t)n;
    }
    c->flushing = false;
    return rc;
}

ssize_t ivy__tls_wait_input(ivy_tls *c)
{
    const char *p;
    ssize_t n = ivy__recv_peek(c->fd, &p);
    if (n > 0) {
        c->view = p;
        c->view_len = (size_t)n;
    } else if (n == 0) {
        c->eof = true;
    } else {
        c->err = (int)n;
    }
    return n;
}

/* kTLS: a record that is not application data goes alone, its type in a control message. The
   one place a send happens inside an OpenSSL call: kTLS kernels only, for alerts and tickets. */
static int ktls_ctrl_write(ivy_tls *c, const char *buf, int len)
{
    int type = c->ctrl_type;
    c->ctrl_type = 0;
    ssize_t n = ivy__tls_flush(c);
    if (n == 0) n = ivy__ktls_send_record(c->fd, type, buf, (size_t)len);
    if (n >= 0) return (int)n;
    c->err = (int)n;
    return -1;
}

static int bio_write(BIO *b, const char *buf, int len)
{
    ivy_tls *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0) return 0;
    if (c->ctrl_type) return ktls_ctrl_write(c, buf, len);
    if (!grow(&c->out, &c->out_cap, c->out_len + (size_t)len)) {
        c->err = -ENOMEM;
        return -1;
    }
    memcpy(c->out + c->out_len, buf, (size_t)len);
    c->out_len += (size_t)len;
    return len;
}

static int bio_read(BIO *b, char *buf, int len)
{
    ivy_tls *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0) return 0;
    if (!c->view_len) {
        if (c->eof) return 0;
        BIO_set_retry_read(b);
        return -1;
    }
    size_t k = c->view_len < (size_t)len ? c->view_len : (size_t)len;
    memcpy(buf, c->view, k);
    ivy__recv_take(c->fd, k);
    c->view += k;
    c->view_len -= k;
    return (int)k;
}

static long bio_ctrl(BIO *b, int cmd, long larg, void *parg)
{
    ivy_tls *c = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH: /* gathered records leave when the OpenSSL call returns */
    case BIO_CTRL_PUSH:
    case BIO_CTRL_POP:
    case BIO_CTRL_DUP:
        return 1;
    case BIO_CTRL_WPENDING:
        return (long)(c->out_len + c->send_len - c->send_off);
    case BIO_CTRL_PENDING:
        return (long)c->view_len;
    case BIO_CTRL_EOF:
        return c->eof && !c->view_len;
    case IVY__BIO_CTRL_SET_KTLS: /* larg: transmit keys (1) or receive keys (0) */
        /* Records gathered so far are encrypted already: out they go, before the kernel
           encrypts everything sent after this (a wait inside the handshake, kTLS only). */
        if (!larg || ivy__tls_flush(c) < 0 || c->flushing || ivy__ktls_tx_start(c->fd, parg) < 0)
            return 0;
        c->ktls_tx = true;
        return 1;
    case BIO_CTRL_GET_KTLS_SEND:
        return c->ktls_tx;
    case IVY__BIO_CTRL_SET_KTLS_TX_SEND_CTRL_MSG:
        c->ctrl_type = (int)larg;
        return 0;
    case IVY__BIO_CTRL_CLEAR_KTLS_TX_CTRL_MSG:
        c->ctrl_type = 0;
        return 0;
    default:
        return 0; /* kTLS receive and the rest: records stay in userspace */
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *method;
static pthread_once_t method_once = PTHREAD_ONCE_INIT;

static void make_method(void)
{
    method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ivy ring");
    if (!method) return;
    BIO_meth_set_write(method, bio_write);
    BIO_meth_set_read(method, bio_read);
    BIO_meth_set_ctrl(method, bio_ctrl);
    BIO_meth_set_create(method, bio_create);
}

BIO_METHOD *ivy__tls_bio_method(void)
{
    pthread_once(&method_once, make_method);
    return method;
}
