/*
 * The connection registry (see conns.h) and the TCP helper built on it, ivy_tcp_serve: an accept
 * loop and one green thread per connection, each registered so that a draining worker closes it
 * while it waits for bytes, and counted for the stats, without the app doing anything.
 */
#include "conns.h"
#include "socket_impl.h"

#include "ivy/tls.h"

#include <stdlib.h>

#include "ivy/sync.h"

__thread struct ivy__conns ivy__conns;

void ivy__conn_open(struct ivy__conn *c, int fd)
{
    struct ivy__conns *r = &ivy__conns;
    *c = (struct ivy__conn){.thread = ivy_self(), .fd = fd, .next = r->head};
    if (r->head) r->head->prev = c;
    r->head = c;
    r->open++;
    r->total++;
}

void ivy__conn_close(struct ivy__conn *c)
{
    struct ivy__conns *r = &ivy__conns;
    if (c->prev)
        c->prev->next = c->next;
    else
        r->head = c->next;
    if (c->next) c->next->prev = c->prev;
    r->open--;
}

void ivy__conns_close_idle(uint64_t grace_ns)
{
    uint64_t now = ivy__coarse_ns();
    for (struct ivy__conn *c = ivy__conns.head; c; c = c->next) {
        if (c->fd >= 0) ivy__conn_set_idle(c, ivy__recv_idle(c->fd));
        /* The thread runs (and unregisters) only after this sweep: the list stays intact. */
        if (!c->idle || now - c->idle_since <= grace_ns) continue;
        if (c->thread)
            ivy__interrupt(c->thread, -ESHUTDOWN);
        else if (c->wake)
            c->wake(c, -ESHUTDOWN);
    }
}

bool ivy__serving_drop(struct ivy__serving *s)
{
    if (--s->refs == 0) {
        ivy_event_free(s->done);
        return true;
    }
    if (s->refs == 1 && s->done) ivy_event_set(s->done); /* only the server's own is left */
    return false;
}

void ivy__serving_wait(struct ivy__serving *s)
{
    while (s->refs > 1 && (s->done || (s->done = ivy_event_new())) &&
           ivy_event_wait(s->done, -1) == 0)
        ivy_event_clear(s->done);
}

struct tcp_server {
    struct ivy__serving serving;
    ivy_conn_fn fn;
    void *arg;
    ivy_tls_ctx *tls; /* NULL: plain */
};

#define TLS_HANDSHAKE_SECONDS 60.0 /* nginx's client_header_timeout */

/* TLS: the handshake, then fn on the plaintext side (io/tls_plain.c). */
static void tls_conn(const struct tcp_server *srv, int fd)
{
    ivy_tls *t = ivy_tls_new(srv->tls, fd, NULL);
    struct ivy_timeout to;
    if (!t || ivy_timeout_begin(&to, TLS_HANDSHAKE_SECONDS) < 0) goto done;
    int rc = ivy_tls_handshake(t);
    ivy_timeout_end(&to);
    if (rc == 0) ivy_tls_run_plain(t, srv->fn, srv->arg);
done:
    ivy_tls_free(t);
}

struct tcp_start {
    struct tcp_server *srv;
    int fd;
};

static void *tcp_conn(void *arg)
{
    struct tcp_start st = *(struct tcp_start *)arg;
    free(arg);
    struct ivy__conn c;
    ivy__conn_open(&c, st.fd);
    if (st.srv->tls)
        tls_conn(st.srv, st.fd);
    else
        st.srv->fn(st.fd, st.srv->arg);
    ivy__conn_close(&c);
    ivy_close(st.fd);
    if (ivy__serving_drop(&st.srv->serving)) free(st.srv);
    return NULL;
}

static int serve_tcp(int listen_fd, ivy_tls_ctx *tls, ivy_conn_fn fn, void *arg)
{
    if (!fn) return -EINVAL;
    struct tcp_server *srv = malloc(sizeof *srv);
    if (!srv) return -ENOMEM;
    *srv = (struct tcp_server){.serving.refs = 1, .fn = fn, .arg = arg, .tls = tls};
    int fd;
    while ((fd = ivy_accept(listen_fd, NULL)) >= 0) {
        struct tcp_start *st = malloc(sizeof *st);
        if (st) *st = (struct tcp_start){srv, fd};
        if (!st || ivy_spawn_n(tcp_conn, st) < 0) {
            free(st);
            ivy_close(fd);
            continue;
        }
        srv->serving.refs++;
    }
    /* Closed now, the listener's queue moves to a sibling (tcp_migrate_req) at once. */
    ivy_close(listen_fd);
    ivy__serving_wait(&srv->serving);
    if (ivy__serving_drop(&srv->serving)) free(srv);
    return fd == -ESHUTDOWN ? 0 : fd;
}

int ivy_tcp_serve(int listen_fd, ivy_conn_fn fn, void *arg)
{
    return serve_tcp(listen_fd, NULL, fn, arg);
}

int ivy_tls_tcp_serve(int listen_fd, ivy_tls_ctx *ctx, ivy_conn_fn fn, void *arg)
{
    return ctx ? serve_tcp(listen_fd, ctx, fn, arg) : -EINVAL;
}
