/*
 * The HTTP server's connection loop (ivy_http_serve): HTTP/1.1 keep-alive and pipelining on
 * green sockets, one green thread per connection, a handler called for each request.
 *
 * The hot path is one receive, one parse pass and one send per batch: every complete request in
 * what arrived is parsed (parse.c) and handed to the handler, whose response goes into one
 * output buffer, which leaves in one send once the batch is answered (conn.c). The thread does
 * not wait for that send: it goes back to receiving while the kernel sends, so a request costs
 * it one wake-up; and from its second batch a connection sends through a registered file.
 * Nothing is allocated per request: input and output buffers come from per-worker free lists.
 *
 * Buffers and quiet connections (conn.c): a connection that had a request within HOT_SECONDS
 * keeps its buffers and its green thread and receives straight into its input buffer (one plain
 * receive per batch, no timer: the server's sweeper ends that hot wait). Once it has been quiet
 * that long it gives both buffers back and parks: its record waits with no thread at all for
 * bytes, its keep-alive timer or a drain, and whichever comes first starts a thread again.
 *
 * Timeouts (seconds, 0 for never). Every wait for the client's bytes is bounded, whatever the
 * sizes involved: the hot wait by the sweeper, a head or body wait by one ivy_timeout scope, a
 * parked connection by its timer.
 * - Keep-alive: a connection waiting for a request with nothing of it received (a new one, or
 *   one whose requests are all answered) is closed, without a response, once keepalive_timeout
 *   has passed since the wait began. At most HOT_SECONDS, the hot wait ends it; longer, the
 *   parked connection's timer takes the rest.
 * - Request: once part of a head is in, the head must be complete within request_timeout of
 *   the first wait for the rest of it, however its bytes trickle in: that clock does not restart
 *   per receive, so a head dripped a byte at a time (slowloris) gains nothing (nginx's
 *   client_header_timeout). A body's receives each have request_timeout (request.c, nginx's
 *   client_body_timeout). Either is answered 408 with Connection: close, then the lingering
 *   close. Computing a response and sending it do not count.
 * - Send: every response byte leaves through ivy__http_send (conn.c), closed when send_timeout
 *   passes with no byte taken (nginx's send_timeout); the rest of a batch left in flight must
 *   leave within send_timeout of when the connection next needs its buffer (the next response,
 *   parking after the hot wait, or the close).
 *
 * Errors the parser reports are answered with their status and the connection is closed after a
 * lingering half-close (so the peer reads the answer rather than a reset). A draining worker
 * wakes idle connections (their receive fails with -ESHUTDOWN: we close), and the response to a
 * request read while draining carries Connection: close.
 */
#include "server_impl.h"
#include "tls_buffers.h"

#include "ivy/hub.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define HOT_SECONDS 1.0 /* a connection quiet for longer gives its buffers back */

/* How long to wait for the rest of a head: seconds, 0 for no limit, < 0 when it is up. */
static double head_wait(struct http_conn *c)
{
    double limit = c->srv->request;
    if (limit == 0) return 0;
    uint64_t now = ivy_now_ns();
    if (!c->head_since) c->head_since = now; /* process() clears it as each head parses */
    double left = limit - (double)(now - c->head_since) / 1e9;
    return left > 0 ? left : -1;
}

/*
 * Receives more bytes after in[len), making room first: a count, 0 at end of stream, or a
 * negative error; -ETIMEDOUT when the hot wait (idle) or the request timeout (a head begun)
 * expired. A request costs a plain receive and a timer.
 */
static ssize_t fill(struct http_conn *c)
{
    bool idle = c->off == c->len;
    if (idle) {
        c->off = c->len = 0;
    } else if (c->off && c->cap - c->len < c->cap / 4) {
        /* Keep the unconsumed tail at the front so a head can grow in place. */
        memmove(c->in, c->in + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    if (c->len == c->cap && ivy__http_grow_in(c) < 0) return -ENOMEM;
    size_t room = c->cap - c->len;
    /* Idle, the hot wait's end comes from the server's sweeper (a timer here would cost two
     * heap operations and a clock read per batch). */
    double wait = idle ? 0 : head_wait(c);
    if (wait < 0) return -ETIMEDOUT;
    return ivy__http_recv(c, c->in + c->len, room, wait);
}

/* Sets up the request whose head_len-byte head starts at in[off] and runs its handler. */
static int run(struct http_conn *c, size_t head_len)
{
    ivy_http_req *r = c->req;
    const struct ivy_http_request *h = &r->h;
    uint64_t buffered = c->len - c->off - head_len;
    bool partial = h->chunked || (h->content_length > 0 && (uint64_t)h->content_length > buffered);
    if (partial && c->off) {
        /* The body will arrive after the head while the handler holds slices into it: move the
         * request to the front, so the room after it is as large as it can be, and parse it
         * again there (one pass over at most 8 KiB, and only for requests with a body). */
        memmove(c->in, c->in + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
        ivy_http_parse_request(c->in, c->len, &r->h);
    }
    r->head_at = c->off;
    c->off += head_len;
    r->body_at = c->off;
    r->body = h->chunked ? BODY_CHUNKED : h->content_length > 0 ? BODY_LENGTH : BODY_NONE;
    r->body_end = r->body == BODY_NONE;
    r->left = h->content_length > 0 ? (uint64_t)h->content_length : 0;
    r->expect = h->expect_continue && r->body != BODY_NONE;
    r->dec_at = r->dec_len = 0;
    r->whole = NULL;
    r->resp = RESP_NONE;
    r->status = 0;
    r->chunked_out = r->until_close = r->close_after = false;
    r->no_body = h->method_id == IVY_HTTP_HEAD;
    r->out_left = -1;
    r->xh_len = 0;
    r->nparams = 0;
    if (h->chunked) ivy_http_chunked_init(&c->ch, c->srv->body_limit);
    int rc = c->srv->handler(r, c->srv->arg);
    return ivy__http_finish(r, rc);
}

/*
 * Parses and answers every complete request in in[off, len). Returns 0 to read on, 1 once a
 * final response is queued (flush, then close), or a negative error (close at once).
 */
static int process(struct http_conn *c)
{
    while (c->off < c->len) {
        int rc = ivy_http_parse_request(c->in + c->off, c->len - c->off, &c->req->h);
        if (rc == 0) return 0;
        if (rc < 0) return ivy__http_error_close(c, ivy_http_error_status(rc)) < 0 ? -EPIPE : 1;
        c->head_since = 0; /* the next head's request timeout starts afresh */
        if ((rc = run(c, (size_t)rc)) != 0) return rc;
    }
    return 0;
}

enum { SERVED, PARK };

/* TLS: our close_notify, under the send timeout like every other byte we send (a client that
 * stopped reading may have left no room for it). */
static void tls_close_notify(struct http_conn *c)
{
    struct ivy_timeout to;
    bool scoped = c->srv->send > 0 && ivy_timeout_begin(&to, c->srv->send) == 0;
    ivy_tls_shutdown(c->tls);
    if (scoped) ivy_timeout_end(&to);
}

/* Serves c until it closes (SERVED) or has been quiet for the hot wait (PARK). */
static int serve(struct http_conn *c)
{
    for (;;) {
        if (!c->in && ivy__http_in_get(c) < 0) return SERVED;
        /* The last batch's send failed. */
        if (c->sent_len && !c->sending && ivy__http_settle(c) < 0) return SERVED;
        /* Idle: waiting for a request with nothing half-read; a draining worker wakes us. */
        bool idle = c->off == c->len;
        ivy__conn_set_idle(&c->reg, idle);
        ssize_t n = fill(c);
        ivy__conn_set_idle(&c->reg, false);
        int rc;
        if (n > 0) {
            c->len += (size_t)n;
            c->bytes_in += (uint64_t)n;
            c->now = time(NULL);
            rc = process(c);
        } else if (n == -ETIMEDOUT && !idle) {
            c->now = time(NULL); /* a head stalled past request_timeout */
            rc = ivy__http_error_close(c, 408) < 0 ? -EPIPE : 1;
        } else if (n == -ETIMEDOUT && c->srv->cold_wait >= 0) {
            if (ivy__http_settle(c) < 0) return SERVED; /* out must be ours to give back */
            ivy__http_go_cold(c); /* quiet for the hot wait: wait on with no thread */
            return PARK;
        } else {
            return SERVED; /* the peer closed, an error, the keep-alive timeout, or -ESHUTDOWN:
                              drained while idle */
        }
        if (rc < 0) return SERVED;
        if (rc == 0 && ivy__http_flush_async(c) < 0) return SERVED; /* and read on */
        if (rc > 0) {
            if (ivy__http_flush(c) < 0) return SERVED;
            if (c->tls) tls_close_notify(c); /* then the TCP half-close */
            ivy__http_linger(c->fd);
            return SERVED;
        }
    }
}

/* The options, resolved once per ivy_http_serve, shared with its connections. */
struct http_server_ref {
    struct ivy__serving serving;
    struct http_server s;
};

static void unref(const struct http_server *s)
{
    struct http_server_ref *ref =
        (struct http_server_ref *)((char *)s - offsetof(struct http_server_ref, s));
    if (ivy__serving_drop(&ref->serving)) free(ref);
}

static void conn_end(struct http_conn *c)
{
    ivy__http_flush(c);
    ivy__conn_close(&c->reg);
    bool orphan = ivy__http_send_abandon(c); /* a send still in flight frees c when answered */
    ivy__http_conn_release(c);
    ivy_tls_free(c->tls);
    if (c->fixed) ivy__fixed_drop(ivy__hub_tls, c->fd); /* before the close, in the ring's order */
    ivy_close(c->fd);
    unref(c->srv);
    if (!orphan) free(c);
}

/* TLS: the handshake, within the request timeout (a client stalling in it is closed). */
static int tls_start(struct http_conn *c)
{
    if (!(c->tls = ivy_tls_new(c->srv->tls, c->fd, NULL))) return -errno;
    ivy__tls_keep_buffers(c->tls); /* until the connection goes quiet (ivy__http_go_cold) */
    double t = c->srv->request;
    struct ivy_timeout to;
    int rc = t > 0 ? ivy_timeout_begin(&to, t) : 0;
    if (rc == 0) rc = ivy_tls_handshake(c->tls);
    if (t > 0) ivy_timeout_end(&to);
    return rc;
}

/*
 * Parked connections. One quiet for the hot wait holds no buffer and no green thread: its
 * record waits for the socket's receive to report bytes (ivy__recv_notify), for its keep-alive
 * timer, or for a draining worker, and whichever comes first starts a thread to go on (a new
 * thread takes a warm stack from the hub's pool, so that costs a spawn, not page faults).
 */
static void *conn_run(void *arg);

static void resume(struct http_conn *c, int why)
{
    struct ivy_hub *h = ivy__hub_tls;
    if (ivy__timer_armed(&c->idle_timer)) ivy__timer_cancel(&h->timers, &c->idle_timer);
    if (why) ivy__recv_unnotify(c->fd);
    c->wake = why;
    c->reg.wake = NULL;
    c->reg.idle = false;                           /* not woken twice by a drain's sweeps */
    if (ivy_spawn_n(conn_run, c) < 0) conn_end(c); /* outside a thread: close(2) */
}

static void on_bytes(void *arg)
{
    resume(arg, 0);
}

static void on_timeout(struct ivy_timer *tm)
{
    resume((struct http_conn *)((char *)tm - offsetof(struct http_conn, idle_timer)), -ETIMEDOUT);
}

static void on_drain(struct ivy__conn *reg, int err)
{
    resume((struct http_conn *)((char *)reg - offsetof(struct http_conn, reg)), err);
}

/* 0: parked (the thread may end); 1: bytes are there already, serve on; < 0: close. */
static int park(struct http_conn *c)
{
    int rc = ivy__recv_notify(c->fd, on_bytes, c);
    if (rc != 0) return rc;
    double wait = c->srv->cold_wait;
    if (wait > 0) {
        c->idle_timer.deadline = ivy_now_ns() + (uint64_t)(wait * 1e9);
        c->idle_timer.fire = on_timeout;
        if ((rc = ivy__timer_add(&ivy__hub_tls->timers, &c->idle_timer)) < 0) {
            ivy__recv_unnotify(c->fd);
            return rc;
        }
    }
    c->reg.thread = NULL;
    c->reg.wake = on_drain;
    ivy__conn_set_idle(&c->reg, true);
    return 0;
}

static void *conn_run(void *arg)
{
    struct http_conn *c = arg;
    ivy_http_req req;
    /* All but the parsed head (last): the parser writes it, and its 3 KiB of header slots are
     * touched only as far as a request has headers. */
    memset(&req, 0, offsetof(struct ivy_http_req, h));
    req.c = c;
    req.h.body_limit = c->srv->body_limit;
    c->req = &req;
    c->reg.thread = ivy_self();
    bool parked = false;
    if (c->srv->tls && !c->tls && tls_start(c) < 0) c->wake = -EPROTO; /* closes, below */
    /* c->wake: a parked connection's keep-alive timeout, or a drain: it just closes. */
    while (!c->wake && serve(c) == PARK) {
        int rc = park(c);
        if (rc < 0) break;
        if ((parked = rc == 0)) break; /* 1: bytes came meanwhile: serve on */
    }
    free(req.xh);
    c->req = NULL;
    if (!parked) conn_end(c); /* parked, the record waits without us */
    return NULL;
}

/* An option's seconds: 0 is the default, < 0 never (0 here). */
static double seconds(double v, double dflt)
{
    return v == 0 ? dflt : v < 0 ? 0 : v;
}

/*
 * The hot wait's clock, one green thread per server: a connection idle (waiting for a request
 * with nothing of it received) for longer than hot_wait is woken with -ETIMEDOUT, and parks or
 * closes. The idle stamps come from the coarse clock the registry already keeps, so a batch
 * costs no timer; the sweep runs every eighth of hot_wait, at most every 0.1 s.
 */
static void *sweeper(void *arg)
{
    const struct http_server *s = arg;
    uint64_t hot = (uint64_t)(s->hot_wait * 1e9);
    double period = s->hot_wait / 8 < 0.1 ? s->hot_wait / 8 : 0.1;
    while (ivy_sleep(period) == 0) {
        uint64_t now = ivy__coarse_ns();
        for (struct ivy__conn *c = ivy__conns.head; c; c = c->next) {
            if (c->owner != s || !c->thread || !c->idle || now - c->idle_since <= hot) continue;
            c->idle = false; /* woken once: it runs, and marks itself again, after this sweep */
            ivy__interrupt(c->thread, -ETIMEDOUT);
        }
    }
    return NULL;
}

int ivy_http_serve(int listen_fd, const struct ivy_http_options *o)
{
    if (!o || !o->handler) return -EINVAL;
    struct http_server_ref *ref = calloc(1, sizeof *ref);
    if (!ref || ivy__http_conn_setup() < 0) {
        free(ref);
        return -ENOMEM;
    }
    struct http_server *s = &ref->s;
    ref->serving.refs = 1;
    s->handler = o->handler;
    s->arg = o->arg;
    s->headers = o->headers;
    s->headers_len = o->headers ? strlen(o->headers) : 0;
    s->body_limit = o->body_limit ? o->body_limit : IVY_HTTP_BODY_LIMIT;
    s->tls = o->tls;
    double ka = seconds(o->keepalive_timeout, IVY_HTTP_KEEPALIVE_TIMEOUT);
    s->request = seconds(o->request_timeout, IVY_HTTP_REQUEST_TIMEOUT);
    s->send = seconds(o->send_timeout, IVY_HTTP_SEND_TIMEOUT);
    s->hot_wait = ka > 0 && ka < HOT_SECONDS ? ka : HOT_SECONDS;
    s->cold_wait = ka > 0 ? (ka > HOT_SECONDS ? ka - HOT_SECONDS : -1) : 0;
    /* Accepted sockets inherit TCP_NODELAY: one system call here rather than one per accept;
     * without it a response that leaves in two sends would wait for a delayed ACK. */
    int one = 1;
    setsockopt(listen_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* HTTP clients speak first: the kernel keeps a connection until its request arrives (a silent
     * one for about a second), so a worker holds no connection it cannot answer yet, and one
     * that dies leaves those in its queue, which tcp_migrate_req moves to a sibling. */
    setsockopt(listen_fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &one, sizeof one);
    ivy_thread *sweep = ivy_spawn(sweeper, s);
    if (!sweep) {
        free(ref);
        return -ENOMEM;
    }
    int fd;
    while ((fd = ivy_accept(listen_fd, NULL)) >= 0) {
        struct http_conn *c = calloc(1, sizeof *c);
        if (!c) {
            ivy_close(fd);
            continue;
        }
        c->srv = s;
        c->fd = fd;
        c->idle_timer.index = IVY_TIMER_IDLE;
        ivy__conn_open(&c->reg, -1);
        c->reg.owner = s;
        ref->serving.refs++;
        if (ivy_spawn_n(conn_run, c) < 0) conn_end(c);
    }
    /* Closed now, the listener's queue moves to a sibling (tcp_migrate_req) at once. */
    ivy_close(listen_fd);
    ivy__serving_wait(&ref->serving);
    ivy_kill(sweep);
    if (ivy_join(sweep, NULL) < 0) ivy_detach(sweep); /* we were killed: it ends on its own */
    unref(s);
    return fd == -ESHUTDOWN ? 0 : fd;
}

void ivy_http_stats(struct ivy_http_stats *out)
{
    const struct http_totals *t = &ivy__http_totals;
    *out = (struct ivy_http_stats){
        .requests = t->requests,
        .errors = t->errors,
        .conns_open = ivy__conns.open,
        .conns_total = ivy__conns.total,
        .bytes_in = t->bytes_in,
        .bytes_out = t->bytes_out,
        .buffers_held = ivy__http_buffers_held(),
    };
}
