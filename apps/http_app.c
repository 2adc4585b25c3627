/*
 * The http app (`ivy serve --app http`): HTTP/1.1 with keep-alive and pipelining on green
 * sockets, one green thread per connection.
 *
 * The hot path is one receive, one parse pass and one send per batch: every complete request
 * in what arrived is parsed (http/parse.c) and answered into one output buffer, which
 * leaves in one send (ivy__http_send); the hello response is prebuilt once per second
 * (its Date changes), so answering it is a memcpy. Nothing is allocated per request: input and
 * output buffers come from per-worker free lists.
 *
 * Buffers and quiet connections (the buffers are apps/http_conn.c's): a connection that had a
 * request within HOT_SECONDS keeps its buffers and receives straight into its input buffer (one
 * plain receive and one timer per batch). Once that wait times out it gives both back and goes
 * cold: it then waits through an ivy_reader, which holds no buffer of ours while nothing
 * arrives, at the cost of an allocation and two copies per receive.
 *
 * Timeouts (the options; seconds, 0 for never). Each wait runs under at most one ivy_timeout
 * scope, the one the hot wait always had, so a request whose bytes arrive together adds no timer.
 * - Keep-alive: a connection waiting for a request with nothing of it received (a new one, or
 *   one whose requests are all answered) is closed, without a response, once keepalive_timeout
 *   has passed since the wait began. At most HOT_SECONDS, that is the hot wait's own timeout;
 *   longer, the cold wait after the hot one takes the rest.
 * - Request: once part of a request is in, its head must be complete within request_timeout of
 *   the first wait for the rest of it, however its bytes trickle in: that clock does not restart
 *   per receive, so a head dripped a byte at a time (slowloris) gains nothing (nginx's
 *   client_header_timeout). A body's clock restarts with each receive: request_timeout without
 *   a byte ends it (nginx's client_body_timeout). Either is answered 408 Request Timeout with
 *   Connection: close, then the lingering close. Only waits for the client's bytes count:
 *   computing a response (/sleep) and sending it do not.
 * - Send: every response byte leaves through ivy__http_send (http_conn.c). A send the kernel
 *   takes whole at once arms no timer; once one cannot (the client does not read), the
 *   connection is closed, without more ado, when send_timeout passes with no byte taken, the
 *   clock restarting with each partial send (nginx's send_timeout).
 *
 * Connection state: `in[off, len)` are received bytes not yet consumed. A request whose body
 * is still arriving is remembered as scalars (route, keep-alive), not as parser slices, because
 * the buffer may move while we wait. Chunked bodies are decoded in place as they arrive.
 *
 * Errors the parser reports are answered with their status and the connection is closed after
 * a lingering half-close (so the peer reads the answer rather than a reset). A draining worker
 * wakes idle connections (their receive fails with -ESHUTDOWN: we close) and the response to
 * a request read while draining carries Connection: close.
 */
#include "http_conn.h"

#include "ivy/hub.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
    SLEEP_MAX_MS = 60000,
    SPIN_MAX_MS = 600000,
};
#define HOT_SECONDS 1.0 /* a connection quiet for longer gives its buffers back */

/* Per worker (per OS thread): the prebuilt hello response, counters. */
static __thread struct {
    char worker_hdr[64]; /* "X-Ivy-Worker: 0/1234\r\n" */
    size_t worker_hdr_len;
    time_t hello_time;
    size_t hello_len;
    char hello[256];
    uint64_t requests, conns_open, conns_total, bytes_in, bytes_out, errors;
    double fresh_wait; /* a new connection's (cold) wait: the keep-alive timeout, 0: none */
    double hot_wait;   /* an idle hot wait: HOT_SECONDS, or the keep-alive timeout if shorter */
    double cold_wait;  /* the cold wait after a hot one: 0 none, < 0: the hot one's end closes */
    double request;    /* the request timeout, 0: none */
    double send;       /* the send timeout, 0: none */
    /* The parsed head: every field we need is copied out before the thread can switch, so
     * one per worker serves all connections, and 3 KiB less stack is touched per connection. */
    struct ivy_http_request req;
} app = {.hello_time = -1};

static const char hello_body[] = "Hello, World!";

/* ---- responses ------------------------------------------------------------------------- */

/* The parser's head plus our worker header; 0 if it does not fit in cap. */
static size_t put_head(char *out, size_t cap, int status, const char *ctype, size_t clen, bool ka,
                       int minor, time_t now)
{
    size_t n = ivy_http_write_head(out, cap, status, ctype, clen, ka, minor, now);
    if (!n || cap - n < app.worker_hdr_len) return 0;
    /* Insert before the blank line that ends the head. */
    memcpy(out + n - 2, app.worker_hdr, app.worker_hdr_len);
    n += app.worker_hdr_len;
    out[n - 2] = '\r';
    out[n - 1] = '\n';
    return n;
}

static void refresh_hello(time_t now)
{
    size_t n = put_head(app.hello, sizeof app.hello, 200, "text/plain", sizeof hello_body - 1, true,
                        1, now);
    memcpy(app.hello + n, hello_body, sizeof hello_body - 1);
    app.hello_len = n + sizeof hello_body - 1;
    app.hello_time = now;
}

/* Sends what out holds; the batch's counters are reported with it. */
static int flush(struct http_conn *c)
{
    int rc = 0;
    if (c->out_len) {
        ssize_t n = ivy__http_send(c, c->out, c->out_len, app.send);
        if (n < 0) rc = (int)n;
        c->bytes_out += c->out_len;
        c->out_len = 0;
    }
    if (c->nreq || c->bytes_in) {
        ivy_worker_count(c->nreq, c->bytes_in, c->bytes_out);
        app.requests += c->nreq;
        app.bytes_in += c->bytes_in;
        app.bytes_out += c->bytes_out;
        c->nreq = 0;
        c->bytes_in = c->bytes_out = 0;
    }
    return rc;
}

/* Room for n more bytes in out, flushing first when needed; NULL on a send error. */
static char *out_room_slow(struct http_conn *c, size_t n)
{
    if (!c->out) {
        c->out = ivy__http_out_get();
        if (!c->out) return NULL;
        c->out_cap = IVY_HTTP_OUT_SIZE;
    }
    if (c->out_cap - c->out_len < n && flush(c) < 0) return NULL;
    if (n > c->out_cap) return NULL;
    return c->out + c->out_len;
}

static inline char *out_room(struct http_conn *c, size_t n)
{
    if (__builtin_expect(c->out && c->out_cap - c->out_len >= n, 1)) return c->out + c->out_len;
    return out_room_slow(c, n);
}

/* Appends a complete response; a body larger than out goes straight from the caller's bytes. */
static int respond(struct http_conn *c, int status, const char *ctype, const char *body,
                   size_t blen, bool head_only, bool ka, int minor, time_t now)
{
    char *o = out_room(c, 512);
    if (!o) return -ENOMEM;
    size_t n = put_head(o, c->out_cap - c->out_len, status, ctype, blen, ka, minor, now);
    if (!n) return -ENOMEM;
    c->out_len += n;
    if (head_only || !blen) return 0;
    if (c->out_cap - c->out_len >= blen) {
        memcpy(c->out + c->out_len, body, blen);
        c->out_len += blen;
        return 0;
    }
    int rc = flush(c);
    if (rc < 0) return rc;
    ssize_t s = ivy__http_send(c, body, blen, app.send);
    c->bytes_out += blen;
    return s < 0 ? (int)s : 0;
}

static int respond_error(struct http_conn *c, int status, bool head_only, bool ka, time_t now)
{
    char body[64];
    int n = snprintf(body, sizeof body, "%d %s\n", status, ivy_http_reason(status));
    app.errors++;
    return respond(c, status, "text/plain", body, (size_t)n, head_only, ka, 1, now);
}

static int respond_stats(struct http_conn *c, bool ka, int minor, bool head_only, time_t now)
{
    struct ivy_hub_stats hs;
    ivy_hub_stats(&hs);
    char body[512];
    int n =
        snprintf(body, sizeof body,
                 "{\"pid\":%d,\"worker\":%d,\"requests\":%llu,\"conns_open\":%llu,"
                 "\"conns_total\":%llu,\"bytes_in\":%llu,\"bytes_out\":%llu,\"errors\":%llu,"
                 "\"buffers_held\":%llu,\"threads_alive\":%llu,\"loop_iterations\":%llu,"
                 "\"max_loop_lag_ns\":%llu,"
                 "\"draining\":%s}\n",
                 (int)getpid(), ivy_worker_index(), (unsigned long long)app.requests,
                 (unsigned long long)app.conns_open, (unsigned long long)app.conns_total,
                 (unsigned long long)app.bytes_in, (unsigned long long)app.bytes_out,
                 (unsigned long long)app.errors, (unsigned long long)ivy__http_buffers_held(),
                 (unsigned long long)hs.threads_alive, (unsigned long long)hs.iterations,
                 (unsigned long long)hs.max_loop_lag_ns, ivy_worker_draining() ? "true" : "false");
    return respond(c, 200, "application/json", body, (size_t)n, head_only, ka, minor, now);
}

/* ---- routing ----------------------------------------------------------------------------- */

static bool path_is(const struct ivy_http_slice *s, const char *lit, size_t n)
{
    return s->len == n && !memcmp(s->p, lit, n);
}
#define PATH_IS(s, lit) path_is((s), (lit), sizeof(lit) - 1)

/* N of "ms=N" in the query, capped; 0 when absent or malformed. */
static uint64_t query_ms(const struct ivy_http_slice *q, uint64_t cap)
{
    if (!q->p || q->len < 4 || memcmp(q->p, "ms=", 3)) return 0;
    uint64_t v = 0;
    for (size_t i = 3; i < q->len && q->p[i] >= '0' && q->p[i] <= '9'; i++)
        if ((v = v * 10 + (uint64_t)(q->p[i] - '0')) > cap) return cap;
    return v;
}

static enum http_route route_of(const struct http_conn *c, const struct ivy_http_request *r)
{
    bool get = r->method_id == IVY_HTTP_GET || r->method_id == IVY_HTTP_HEAD;
    if (PATH_IS(&r->path, "/")) return get ? R_HELLO : R_NOT_ALLOWED;
    if (PATH_IS(&r->path, "/echo"))
        return r->method_id == IVY_HTTP_POST || r->method_id == IVY_HTTP_PUT ? R_ECHO
                                                                             : R_NOT_ALLOWED;
    if (PATH_IS(&r->path, "/sleep")) return get ? R_SLEEP : R_NOT_ALLOWED;
    if (PATH_IS(&r->path, "/stats")) return get ? R_STATS : R_NOT_ALLOWED;
    if (c->test_routes && PATH_IS(&r->path, "/spin")) return get ? R_SPIN : R_NOT_ALLOWED;
    return R_NOT_FOUND;
}

/* Answers one complete request. ms: the /sleep or /spin argument. */
static int answer(struct http_conn *c, enum http_route rt, bool head_only, bool ka, int minor,
                  uint64_t ms, const char *body, size_t blen, time_t *now)
{
    char msg[64];
    int n;
    c->nreq++;
    switch (rt) {
    case R_HELLO:
        break;
    case R_ECHO:
        return respond(c, 200, "application/octet-stream", body, blen, false, ka, minor, *now);
    case R_SLEEP:
        /* Earlier answers of the batch leave first: the client should not wait for them. */
        if (flush(c) < 0) return -EPIPE;
        ivy_sleep((double)ms / 1000.0);
        *now = time(NULL);
        ka = ka && !ivy_worker_draining();
        n = snprintf(msg, sizeof msg, "slept %llu ms\n", (unsigned long long)ms);
        return respond(c, 200, "text/plain", msg, (size_t)n, head_only, ka, minor, *now);
    case R_SPIN: {
        /* Computes without yielding: the hub (and the worker's heartbeat) stalls meanwhile. */
        uint64_t end = ivy_now_ns() + ms * 1000000u;
        while (ivy_now_ns() < end) {
        }
        n = snprintf(msg, sizeof msg, "spun %llu ms\n", (unsigned long long)ms);
        return respond(c, 200, "text/plain", msg, (size_t)n, head_only, ka, minor, *now);
    }
    case R_STATS:
        return respond_stats(c, ka, minor, head_only, *now);
    case R_NOT_FOUND:
        return respond_error(c, 404, head_only, ka, *now);
    case R_NOT_ALLOWED:
        return respond_error(c, 405, head_only, ka, *now);
    }
    if (!ka || minor == 0 || head_only)
        return respond(c, 200, "text/plain", hello_body, sizeof hello_body - 1, head_only, ka,
                       minor, *now);
    if (app.hello_time != *now) refresh_hello(*now);
    char *o = out_room(c, app.hello_len);
    if (!o) return -EPIPE;
    memcpy(o, app.hello, app.hello_len);
    c->out_len += app.hello_len;
    return 0;
}

/* ---- the connection ---------------------------------------------------------------------- */

/* The body of the pending request, once all of it is in: 1 (body set, off past it), 0 when
 * more bytes are needed, or a parser error. */
static int take_body(struct http_conn *c, const char **body, size_t *blen)
{
    struct http_pending *p = &c->p;
    if (!p->chunked) {
        if (c->len - c->off < p->need) return 0;
        *body = c->in + c->off;
        *blen = (size_t)p->need;
        c->off += (size_t)p->need;
        return 1;
    }
    /* Decoded bytes gather at in[off, off + decoded); undecoded ones follow, to len. */
    size_t at = c->off + p->decoded, consumed, n;
    int rc = ivy_http_chunked_decode(&c->ch, c->in + at, c->len - at, &consumed, &n);
    if (rc < 0) return rc;
    p->decoded += n;
    if (rc == 0) {
        c->len = c->off + p->decoded; /* the decoder keeps partial lines: append right here */
        return 0;
    }
    *body = c->in + c->off;
    *blen = p->decoded;
    c->off = at + consumed;
    return 1;
}

/* An error status with Connection: close, then (return 1) the connection closes. */
static int last_word(struct http_conn *c, int status, time_t now)
{
    c->nreq++;
    return respond_error(c, status, false, false, now) < 0 ? -EPIPE : 1;
}

/* A parser or decoder error. */
static int reject(struct http_conn *c, int err, time_t now)
{
    return last_word(c, ivy_http_error_status(err), now);
}

/*
 * Parses and answers every complete request in in[off, len), into out. Returns 0 to read on,
 * 1 once a final response is queued (flush, then close), or a negative error (close at once).
 */
static int process(struct http_conn *c, time_t *now)
{
    for (;;) {
        struct http_pending *p = &c->p;
        if (!p->active) {
            if (c->off == c->len) return 0;
            struct ivy_http_request *r = &app.req;
            int rc = ivy_http_parse_request(c->in + c->off, c->len - c->off, r);
            if (rc == 0) return 0;
            if (rc < 0) return reject(c, rc, *now);
            c->off += (size_t)rc;
            c->head_since = 0; /* the next head's request timeout starts afresh */
            *p = (struct http_pending){
                .keep_alive = r->keep_alive,
                .head_only = r->method_id == IVY_HTTP_HEAD,
                .expect = r->expect_continue,
                .route = route_of(c, r),
                .version_minor = r->version_minor,
            };
            if (p->route == R_SLEEP || p->route == R_SPIN)
                p->ms = query_ms(&r->query, p->route == R_SLEEP ? SLEEP_MAX_MS : SPIN_MAX_MS);
            if (r->chunked) {
                p->active = p->chunked = true;
                ivy_http_chunked_init(&c->ch, 0);
            } else if (r->content_length > 0) {
                p->active = true;
                p->need = (uint64_t)r->content_length;
            }
        }
        const char *body = NULL;
        size_t blen = 0;
        if (p->active) {
            int rc = take_body(c, &body, &blen);
            if (rc < 0) return reject(c, rc, *now);
            if (rc == 0) {
                if (p->expect && !p->continued) {
                    /* The client waits for this before sending the body (RFC 9110 §10.1.1). */
                    p->continued = true;
                    char *o = out_room(c, sizeof IVY_HTTP_CONTINUE - 1);
                    if (!o) return -EPIPE;
                    memcpy(o, IVY_HTTP_CONTINUE, sizeof IVY_HTTP_CONTINUE - 1);
                    c->out_len += sizeof IVY_HTTP_CONTINUE - 1;
                }
                return 0;
            }
            p->active = false;
        }
        bool ka = p->keep_alive && !c->draining;
        if (answer(c, p->route, p->head_only, ka, p->version_minor, p->ms, body, blen, now) < 0)
            return -EPIPE;
        if (!ka) return 1;
    }
}

/* How long to wait for more of an unfinished request: seconds, 0 for no limit, or < 0 when
 * its head's time is already up. */
static double request_wait(struct http_conn *c)
{
    if (app.request == 0 || c->p.active) return app.request; /* a body: restarts per receive */
    uint64_t now = ivy_now_ns();
    if (!c->head_since) c->head_since = now; /* process() clears it as each head parses */
    double left = app.request - (double)(now - c->head_since) / 1e9;
    return left > 0 ? left : -1;
}

/*
 * Receives more bytes after in[len), making room first: a count, 0 at end of stream, or a
 * negative error; -ETIMEDOUT when the keep-alive timeout (idle) or the request timeout (a
 * request begun) expired. Hot, a request costs a plain receive and a timer; cold, it would
 * cost the reader's allocation and two copies.
 */
static ssize_t fill(struct http_conn *c)
{
    if (!c->in) return ivy__http_fill_cold(c, app.fresh_wait);
    bool idle = c->off == c->len && !c->p.active;
    if (c->off && c->off == c->len) {
        c->off = c->len = 0;
    } else if (c->off && c->cap - c->len < c->cap / 4) {
        /* Keep the unconsumed tail at the front so a head or body can grow in place. */
        memmove(c->in, c->in + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    if (c->len == c->cap && ivy__http_grow_in(c) < 0) return -ENOMEM;
    size_t room = c->cap - c->len;
    ssize_t n;
    if (c->rd_more) {
        /* A read that returns less than asked has emptied the reader. */
        n = ivy_reader_read(c->rd, c->in + c->len, room);
        c->rd_more = n > 0 && (size_t)n == room;
        return n;
    }
    double wait = app.hot_wait;
    if (!idle) {
        wait = request_wait(c);
        if (wait == 0) return ivy_recv(c->fd, c->in + c->len, room);
        if (wait < 0) return -ETIMEDOUT;
    }
    struct ivy_timeout to;
    if ((n = ivy_timeout_begin(&to, wait)) < 0) return n;
    n = ivy_recv(c->fd, c->in + c->len, room);
    ivy_timeout_end(&to);
    if (n != -ETIMEDOUT || !idle || app.cold_wait < 0) return n;
    ivy__http_go_cold(c);
    return ivy__http_fill_cold(c, app.cold_wait);
}

static void serve(struct http_conn *c)
{
    for (;;) {
        /* Idle: waiting for a request with nothing half-read; a draining worker wakes us. */
        bool idle = c->off == c->len && !c->p.active;
        ivy_conn_set_idle(&c->reg, idle);
        ssize_t n = fill(c);
        ivy_conn_set_idle(&c->reg, false);
        int rc;
        if (n > 0) {
            c->len += (size_t)n;
            c->bytes_in += (uint64_t)n;
            time_t now = time(NULL);
            c->draining = ivy_worker_draining();
            rc = process(c, &now);
        } else if (n == -ETIMEDOUT && !idle) {
            rc = last_word(c, 408, time(NULL)); /* a request stalled past request_timeout */
        } else {
            return; /* the peer closed, an error, the keep-alive timeout, or -ESHUTDOWN: drained
                       while idle */
        }
        if (rc < 0 || flush(c) < 0) return;
        if (rc > 0) {
            ivy__http_linger(c->fd);
            return;
        }
    }
}

static void *conn_main(void *arg)
{
    struct http_conn c;
    memset(&c, 0, sizeof c);
    c.fd = (int)((intptr_t)arg >> 1);
    c.test_routes = (intptr_t)arg & 1;
    ivy_conn_open(&c.reg);
    app.conns_open++;
    app.conns_total++;
    serve(&c);
    flush(&c);
    app.conns_open--;
    ivy_conn_close(&c.reg);
    ivy__http_conn_release(&c);
    ivy_close(c.fd);
    return NULL;
}

void ivy_http_app(int listen_fd, void *arg)
{
    const struct ivy_http_app_options *o = arg;
    intptr_t test_routes = o && o->test_routes;
    app.worker_hdr_len =
        (size_t)snprintf(app.worker_hdr, sizeof app.worker_hdr, "X-Ivy-Worker: %d/%d\r\n",
                         ivy_worker_index(), (int)getpid());
    app.hello_time = -1;
    double ka = o ? o->keepalive_timeout : 0;
    app.request = o ? o->request_timeout : 0;
    app.send = o ? o->send_timeout : 0;
    app.fresh_wait = ka;
    app.hot_wait = ka > 0 && ka < HOT_SECONDS ? ka : HOT_SECONDS;
    app.cold_wait = ka > 0 ? (ka > HOT_SECONDS ? ka - HOT_SECONDS : -1) : 0;
    ivy__http_conn_setup();
    /* Accepted sockets inherit TCP_NODELAY: one system call here rather than one per accept;
     * without it a response that leaves in two sends would wait for a delayed ACK. */
    int one = 1;
    setsockopt(listen_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* HTTP clients speak first: the kernel keeps a connection until its request arrives (a silent
     * one for about a second), so a worker holds no connection it cannot answer yet, and one
     * that dies leaves those in its queue, which tcp_migrate_req moves to a sibling. */
    setsockopt(listen_fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &one, sizeof one);
    int fd;
    while ((fd = ivy_accept(listen_fd, NULL)) >= 0) {
        /* The descriptor and the flag travel in the pointer: nothing to allocate or free. */
        if (ivy_spawn_n(conn_main, (void *)((intptr_t)fd << 1 | test_routes)) < 0) ivy_close(fd);
    }
    if (fd != -ESHUTDOWN) fprintf(stderr, "ivy: http: accept: %s\n", strerror(-fd));
}
