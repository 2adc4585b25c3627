/*
 * The HTTP server's connection buffers and their I/O (the connection loop, its receives and
 * timeouts are server.c's): per-worker pools of input and output buffers, growing
 * an input buffer, giving both back when a connection goes quiet, sending under the send
 * timeout, the lingering close.
 *
 * A quiet connection gives both buffers back (and their pages), then waits with no green
 * thread at all (server.c): what it holds while idle is its record and the socket's receive
 * state, a few hundred bytes.
 */
#include "server_impl.h"
#include "tls_buffers.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum {
    POOL_KEEP = 256,        /* buffers of each kind kept for reuse per worker */
    LINGER_BYTES = 1 << 20, /* read and dropped after our last response, before close */
};
#define LINGER_SECONDS 1.0

struct pool {
    char *v[POOL_KEEP];
    unsigned n;
};

/* Per worker (per OS thread), allocated by the first server: on the heap rather than in
 * thread-local storage, so that libivy.so's TLS stays small enough to be dlopen()ed. */
struct bufs {
    struct pool in, out;
    char dropped[4096]; /* what lingering connections read, shared: nobody looks at it */
    size_t page;
    uint64_t buffers_held;
};
static __thread struct bufs *bufs;

int ivy__http_conn_setup(void)
{
    if (!bufs && !(bufs = calloc(1, sizeof *bufs))) return -ENOMEM;
    bufs->page = (size_t)sysconf(_SC_PAGESIZE);
    return 0;
}

static char *pool_get(struct pool *p, size_t size)
{
    char *b = p->n ? p->v[--p->n] : malloc(size);
    bufs->buffers_held += b != NULL;
    return b;
}

/* size: the buffer's, which goes back to the pool only when it is the pool's size. */
static void pool_put(struct pool *p, char *b, size_t size, size_t pool_size)
{
    if (!b) return;
    bufs->buffers_held--;
    if (size == pool_size && p->n < POOL_KEEP)
        p->v[p->n++] = b;
    else
        free(b);
}

char *ivy__http_out_get(void)
{
    return pool_get(&bufs->out, IVY_HTTP_OUT_SIZE);
}

uint64_t ivy__http_buffers_held(void)
{
    return bufs ? bufs->buffers_held : 0;
}

/* Drops the whole pages of b[0, size) (their contents do not matter: the buffer is free). */
static void shed(char *b, size_t size)
{
    uintptr_t pg = (uintptr_t)bufs->page, lo = ((uintptr_t)b + pg - 1) & ~(pg - 1);
    uintptr_t hi = ((uintptr_t)b + size) & ~(pg - 1);
    if (b && hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

static void release_in(struct http_conn *c)
{
    pool_put(&bufs->in, c->in, c->cap, IVY_HTTP_IN_SIZE);
    c->in = NULL;
    c->cap = c->off = c->len = 0;
}

static void release_out(struct http_conn *c)
{
    pool_put(&bufs->out, c->out, IVY_HTTP_OUT_SIZE, IVY_HTTP_OUT_SIZE);
    c->out = NULL;
}

void ivy__http_conn_release(struct http_conn *c)
{
    release_in(c);
    if (!c->sending) release_out(c); /* in flight, the send's answer gives it back */
}

int ivy__http_in_get(struct http_conn *c)
{
    if (!(c->in = pool_get(&bufs->in, IVY_HTTP_IN_SIZE))) return -ENOMEM;
    c->cap = IVY_HTTP_IN_SIZE;
    c->off = c->len = 0;
    return 0;
}

int ivy__http_grow_in(struct http_conn *c)
{
    size_t cap = c->cap * 2;
    char *b = c->cap == IVY_HTTP_IN_SIZE ? malloc(cap) : realloc(c->in, cap);
    if (!b) return -ENOMEM;
    if (c->cap == IVY_HTTP_IN_SIZE) { /* a pooled buffer stays the pool's size */
        memcpy(b, c->in, c->len);
        pool_put(&bufs->in, c->in, IVY_HTTP_IN_SIZE, IVY_HTTP_IN_SIZE);
        bufs->buffers_held++;
    }
    c->in = b;
    c->cap = cap;
    return 0;
}

void ivy__http_go_cold(struct http_conn *c)
{
    if (c->tls) ivy__tls_drop_buffers(c->tls);
    /* The pages these buffers touched go back to the kernel now. Freed, they would stay
     * resident in the allocator, which gives memory back only as it allocates more. */
    shed(c->in, c->cap);
    shed(c->out, c->out ? IVY_HTTP_OUT_SIZE : 0);
    release_in(c);
    release_out(c);
}

__thread struct http_totals ivy__http_totals;

/* Reports the batch's counters. */
static void count(struct http_conn *c)
{
    if (c->nreq || c->bytes_in || c->bytes_out) {
        ivy__conns_count(c->nreq, c->bytes_in, c->bytes_out);
        struct http_totals *t = &ivy__http_totals;
        t->requests += c->nreq;
        t->bytes_in += c->bytes_in;
        t->bytes_out += c->bytes_out;
        c->nreq = 0;
        c->bytes_in = c->bytes_out = 0;
    }
}

/* TLS: the records of each piece must leave within the send timeout. */
static ssize_t tls_send(struct http_conn *c, const char *buf, size_t len, double timeout)
{
    enum { PIECE = 65536 };
    for (size_t sent = 0; sent < len;) {
        size_t n = len - sent < PIECE ? len - sent : PIECE;
        struct ivy_timeout to;
        int rc = timeout > 0 ? ivy_timeout_begin(&to, timeout) : 0;
        if (rc < 0) return rc;
        ssize_t w = ivy_tls_write(c->tls, buf + sent, n);
        if (timeout > 0) ivy_timeout_end(&to);
        if (w < 0) return w;
        sent += n;
    }
    return (ssize_t)len;
}

ssize_t ivy__http_send(struct http_conn *c, const char *buf, size_t len, double timeout)
{
    if (c->tls) return tls_send(c, buf, len, timeout);
    if (timeout <= 0) return ivy_sendall(c->fd, buf, len);
    size_t sent = 0;
    do {
        /* ivy_send returns once the kernel takes some bytes: each scope times one wait for
         * progress, so the clock restarts with every partial send. A send right after one that
         * was taken whole is timed too: that one may have filled the buffer to the last byte,
         * leaving this one no room at all. */
        struct ivy_timeout to;
        ssize_t n = ivy_timeout_begin(&to, timeout);
        if (n < 0) return n;
        n = ivy_send(c->fd, buf + sent, len - sent);
        ivy_timeout_end(&to);
        if (n < 0) return n;
        if ((size_t)n < len - sent)
            c->send_waits = true; /* the buffer is full: batches go synchronously for now */
        else if (!sent)
            c->send_waits = false; /* taken whole: room again */
        sent += (size_t)n;
    } while (sent < len);
    return (ssize_t)len;
}

void ivy__http_linger(int fd)
{
    size_t dropped = 0;
    struct ivy_timeout to;
    if (ivy_shutdown(fd, SHUT_WR) < 0 || ivy_timeout_begin(&to, LINGER_SECONDS) < 0) return;
    ssize_t n;
    while (dropped < LINGER_BYTES && (n = ivy_recv(fd, bufs->dropped, sizeof bufs->dropped)) > 0)
        dropped += (size_t)n;
    ivy_timeout_end(&to);
}

/* Sends out[sent_off, sent_len) with the answer to sent_complete. */
static void sent_submit(struct http_conn *c)
{
    struct io_uring_sqe *sqe = ivy__sqe(ivy__hub_tls);
    io_uring_prep_send(sqe, c->fd, c->out + c->sent_off, c->sent_len - c->sent_off, MSG_NOSIGNAL);
    if (c->fixed) sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data(sqe, &c->sent);
}

/* The kernel's answer to the send ivy__http_flush_async left in flight (in the hub). */
static void sent_complete(struct ivy_completion *k, int res, uint32_t flags)
{
    struct http_conn *c = (struct http_conn *)((char *)k - offsetof(struct http_conn, sent));
    (void)flags;
    if (c->orphaned) {
        ivy__hub_tls->stats.inflight--;
        pool_put(&bufs->out, c->out, IVY_HTTP_OUT_SIZE, IVY_HTTP_OUT_SIZE);
        free(c);
        return;
    }
    if (res == -EBADF && c->fixed) {
        c->fixed = false; /* the slot was emptied under us (see ivy__fixed_add): by descriptor */
        sent_submit(c);
        return;
    }
    if (res == 0) res = -EPIPE; /* no progress on a non-empty send: never loop on it */
    if (res > 0 && c->sent_off + (uint32_t)res < c->sent_len) {
        /* Short: the socket's buffer is full. The rest goes on without the thread, and later
         * sends are timed from their first byte (send_waits). */
        c->send_waits = true;
        c->sent_off += (uint32_t)res;
        if (!c->stop_send) {
            sent_submit(c);
            return;
        }
        res = -ECANCELED;
    }
    ivy__hub_tls->stats.inflight--;
    c->sending = false;
    if (res < 0)
        c->sent_res = res; /* the connection is broken: its receive ends too, and wakes it */
    else
        c->out_len = c->sent_len = c->sent_off = 0; /* all of it taken */
    ivy__waitq_wake(&c->sent_wq, 0);
}

int ivy__http_flush_async(struct http_conn *c)
{
    if (c->tls || c->send_waits || c->sent_len || !c->out_len) return ivy__http_flush(c);
    /* A connection on its second batch is likely to make many: worth a registered file. */
    if (c->batches < 2 && ++c->batches == 2) c->fixed = ivy__fixed_add(ivy__hub_tls, c->fd);
    c->sent.complete = sent_complete;
    c->sent_len = (uint32_t)c->out_len; /* out holds at most IVY_HTTP_OUT_SIZE */
    c->sent_off = 0;
    c->sent_res = 0;
    c->stop_send = false;
    c->sending = true;
    ivy__hub_tls->stats.inflight++;
    c->bytes_out += c->out_len; /* out_len stays: out is the kernel's until it answers */
    count(c);
    sent_submit(c);
    return 0;
}

/* Asks the kernel to stop the send in flight; its answer comes to sent_complete. */
static void sent_cancel(struct http_conn *c)
{
    c->stop_send = true;
    struct io_uring_sqe *sqe = ivy__sqe(ivy__hub_tls);
    io_uring_prep_cancel(sqe, &c->sent, 0);
    io_uring_sqe_set_data(sqe, NULL);
}

int ivy__http_settle(struct http_conn *c)
{
    if (!c->sent_len) return 0;
    ivy_thread *self = ivy__self();
    int rc = 0;
    if (c->sending) {
        /* The rest of the batch (16 KiB at most) must leave within the send timeout. */
        struct ivy_timeout to;
        bool scoped = c->srv->send > 0 && ivy_timeout_begin(&to, c->srv->send) == 0;
        while (c->sending && (rc = ivy__blocking_check(self)) == 0)
            ivy__waitq_wait(&c->sent_wq, self);
        if (scoped && ivy_timeout_end(&to) == -ETIMEDOUT && c->sending) {
            /* Ours expired (not a handler's own deadline): the connection is done. */
            sent_cancel(c); /* answered promptly: wait for it, out is still the kernel's */
            while (c->sending && (rc = ivy__blocking_check(self)) == 0)
                ivy__waitq_wait(&c->sent_wq, self);
        }
        /* Killed, or an enclosing deadline: the send goes on; the caller fails, and the
         * connection's end waits for the send again (or abandons it, killed). */
        if (c->sending) return rc;
    }
    if (!c->sent_len) return 0; /* all taken */
    rc = c->sent_res == -ECANCELED && c->stop_send ? -ETIMEDOUT : c->sent_res;
    c->out_len = c->sent_len = c->sent_off = 0;
    return rc;
}

bool ivy__http_send_abandon(struct http_conn *c)
{
    if (!c->sending) return false;
    if (!c->stop_send) sent_cancel(c);
    c->orphaned = true;
    return true;
}

int ivy__http_flush(struct http_conn *c)
{
    int rc = ivy__http_settle(c);
    if (rc == 0 && c->out_len) {
        ssize_t n = ivy__http_send(c, c->out, c->out_len, c->srv->send);
        if (n < 0) rc = (int)n;
        c->bytes_out += c->out_len;
        c->out_len = 0;
    }
    count(c);
    return rc;
}

char *ivy__http_out_room_slow(struct http_conn *c, size_t n)
{
    if (c->sent_len && ivy__http_settle(c) < 0) return NULL;
    if (!c->out) {
        if (!(c->out = ivy__http_out_get())) return NULL;
        c->out_cap = IVY_HTTP_OUT_SIZE;
    }
    if (c->out_cap - c->out_len < n && ivy__http_flush(c) < 0) return NULL;
    if (n > c->out_cap) return NULL;
    return c->out + c->out_len;
}

int ivy__http_out_put(struct http_conn *c, const void *buf, size_t len)
{
    if (ivy__http_out_fits(c, len)) {
        memcpy(c->out + c->out_len, buf, len);
        c->out_len += len;
        return 0;
    }
    /* Larger than what is left: what is queued goes first, then these straight from buf. */
    int rc = ivy__http_flush(c);
    if (rc < 0) return rc;
    if (len <= IVY_HTTP_OUT_SIZE / 4 && ivy__http_out_room(c, len)) {
        memcpy(c->out + c->out_len, buf, len);
        c->out_len += len;
        return 0;
    }
    ssize_t n = ivy__http_send(c, buf, len, c->srv->send);
    c->bytes_out += len;
    return n < 0 ? (int)n : 0;
}

/* One receive, decrypted when the connection is TLS. */
static ssize_t recv_one(struct http_conn *c, void *buf, size_t len)
{
    return c->tls ? ivy_tls_read(c->tls, buf, len) : ivy_recv(c->fd, buf, len);
}

ssize_t ivy__http_recv(struct http_conn *c, void *buf, size_t len, double seconds)
{
    if (seconds <= 0) return recv_one(c, buf, len);
    struct ivy_timeout to;
    ssize_t n = ivy_timeout_begin(&to, seconds);
    if (n < 0) return n;
    n = recv_one(c, buf, len);
    ivy_timeout_end(&to);
    return n;
}

char *ivy__http_scratch(size_t *len)
{
    *len = sizeof bufs->dropped;
    return bufs->dropped;
}
