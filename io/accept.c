/*
 * Accept: one multishot accept per listening socket, armed while someone accepts.
 *
 * Each listening descriptor that was accepted on gets a listener: its armed request, the
 * threads waiting in ivy_accept (FIFO), and a queue of connections that arrived with nobody
 * waiting. A connection is handed straight to the first waiter, else queued; the multishot is
 * cancelled when the queue reaches QUEUE_HIGH, so connections beyond it stay in the kernel's
 * backlog, where SO_REUSEPORT siblings and tcp_migrate_req can still see them.
 *
 * One at a time (ivy__accept_one, for a worker sharing its port with siblings): a single-shot
 * accept is in flight only while a thread waits in ivy_accept with nothing queued, so the
 * process takes connections from the kernel no faster than it asks for them. What it has
 * taken dies with it; what it left in the kernel's queue migrates with tcp_migrate_req.
 * Kernels without multishot accept (< 5.19) get this mode too.
 *
 * Out of descriptors (EMFILE, ENFILE) or memory, the kernel ends the multishot; a timer re-arms
 * it after a back-off of 10 ms doubling to 1 s, reset by the next success. Never a spin.
 *
 * The armed request is not counted as in flight, so an idle listener does not keep ivy_run
 * going; a waiting acceptor counts as an outside wake-up (h->external) instead, so the
 * deadlock check knows it can be woken.
 *
 * Closing a listener (ivy_close) cancels the request; the listener is freed on its final
 * completion, never before, since that completion points at it.
 */
#include "socket_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { QUEUE_HIGH = 256, BACKOFF_MIN_MS = 10, BACKOFF_MAX_MS = 1000 };

struct listener {
    struct ivy_completion c;
    struct ivy_timer backoff;
    int fd;
    bool armed, closing;
    bool single_shot; /* one connection per request: ivy__accept_one, or an old kernel */
    bool stopping;    /* ivy_accept_stop: hand out what is queued, then -ESHUTDOWN */
    unsigned backoff_ms;
    struct ivy_waitq waiters;
    unsigned nwaiters;
    int *q; /* ring buffer of accepted descriptors */
    unsigned qhead, qlen, qcap;
};

/* Listeners by descriptor; freed once the last is forgotten, so a thread that leaves after
 * closing its listening sockets leaves nothing behind. */
static __thread struct {
    struct listener **v;
    int cap, used;
} table;

static void listener_free(struct listener *l)
{
    for (unsigned i = 0; i < l->qlen; i++)
        close(l->q[(l->qhead + i) & (l->qcap - 1)]);
    free(l->q);
    free(l);
}

static void arm(struct ivy_hub *h, struct listener *l)
{
    struct io_uring_sqe *sqe = ivy__sqe(h);
    if (l->single_shot)
        io_uring_prep_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
    else
        io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data(sqe, &l->c);
    l->armed = true;
}

static void cancel(struct ivy_hub *h, struct listener *l)
{
    struct io_uring_sqe *sqe = ivy__sqe(h);
    io_uring_prep_cancel(sqe, &l->c, 0);
    io_uring_sqe_set_data(sqe, NULL);
}

static bool enqueue(struct listener *l, int fd)
{
    if (l->qlen == l->qcap) {
        unsigned cap = l->qcap ? l->qcap * 2 : 16;
        int *q = malloc(cap * sizeof *q);
        if (!q) return false;
        for (unsigned i = 0; i < l->qlen; i++)
            q[i] = l->q[(l->qhead + i) & (l->qcap - 1)];
        free(l->q);
        l->q = q;
        l->qcap = cap;
        l->qhead = 0;
    }
    l->q[(l->qhead + l->qlen++) & (l->qcap - 1)] = fd;
    return true;
}

static void wake_waiter(struct ivy_hub *h, struct listener *l, int value)
{
    l->nwaiters--;
    h->external--;
    ivy__waitq_wake(&l->waiters, value);
}

static void backoff_fired(struct ivy_timer *tm)
{
    struct listener *l = (struct listener *)((char *)tm - offsetof(struct listener, backoff));
    if (!l->armed && l->nwaiters) arm(ivy__hub_tls, l);
}

static void accept_complete(struct ivy_completion *c, int res, uint32_t flags)
{
    struct listener *l = (struct listener *)c;
    struct ivy_hub *h = ivy__hub_tls;
    if (!(flags & IORING_CQE_F_MORE)) l->armed = false;
    if (l->closing) {
        if (res >= 0) close(res);
        if (!l->armed) listener_free(l);
        return;
    }
    if (res >= 0) {
        l->backoff_ms = 0;
        if (l->nwaiters)
            wake_waiter(h, l, res);
        else if (!enqueue(l, res))
            close(res); /* out of memory: the peer sees a reset rather than a hang */
        if (l->armed && l->qlen >= QUEUE_HIGH && !l->stopping) cancel(h, l);
    } else if (l->stopping) {
        /* the cancellation of ivy_accept_stop, or a late error: nothing more will come */
    } else if (res == -EMFILE || res == -ENFILE || res == -ENOMEM || res == -ENOBUFS) {
        l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : BACKOFF_MIN_MS;
        if (l->backoff_ms > BACKOFF_MAX_MS) l->backoff_ms = BACKOFF_MAX_MS;
        if (l->backoff_ms == BACKOFF_MIN_MS)
            fprintf(stderr, "ivy: accept on fd %d: %s; backing off and retrying\n", l->fd,
                    strerror(-res));
        if (!ivy__timer_armed(&l->backoff)) {
            l->backoff.deadline = ivy_now_ns() + l->backoff_ms * 1000000ull;
            ivy__timer_add(&h->timers, &l->backoff);
        }
        return;
    } else if (res == -EINVAL && !l->single_shot) {
        l->single_shot = true; /* kernel without multishot accept (< 5.19) */
    } else if (res != -ECANCELED && res != -ECONNABORTED && res != -EAGAIN && res != -EINTR) {
        /* The socket itself failed (not listening, closed under us): tell the waiters. */
        while (l->nwaiters)
            wake_waiter(h, l, res);
        return;
    }
    if (l->stopping) {
        if (!l->armed && !l->qlen)
            while (l->nwaiters)
                wake_waiter(h, l, -ESHUTDOWN);
        return;
    }
    if (!l->armed && l->nwaiters && !ivy__timer_armed(&l->backoff)) arm(h, l);
}

static struct listener *listener_get(int fd)
{
    if (fd >= table.cap) {
        int cap = table.cap ? table.cap : 64;
        while (cap <= fd)
            cap *= 2;
        struct listener **v = realloc(table.v, (size_t)cap * sizeof *v);
        if (!v) return NULL;
        memset(v + table.cap, 0, (size_t)(cap - table.cap) * sizeof *v);
        table.v = v;
        table.cap = cap;
    }
    struct listener *l = table.v[fd];
    if (!l) {
        l = calloc(1, sizeof *l);
        if (!l) return NULL;
        l->c.complete = accept_complete;
        l->fd = fd;
        l->backoff.index = IVY_TIMER_IDLE;
        l->backoff.fire = backoff_fired;
        table.v[fd] = l;
        table.used++;
    }
    return l;
}

int ivy__accept_one(int listen_fd)
{
    if (listen_fd < 0) return -EBADF;
    struct listener *l = listener_get(listen_fd);
    if (!l) return -ENOMEM;
    if (l->armed && !l->single_shot) cancel(ivy__hub_tls, l); /* its end arms a single shot */
    l->single_shot = true;
    return 0;
}

void ivy__accept_forget(int fd)
{
    if (fd < 0 || fd >= table.cap || !table.v[fd]) return;
    struct listener *l = table.v[fd];
    struct ivy_hub *h = ivy__hub_tls;
    table.v[fd] = NULL;
    if (--table.used == 0) {
        free(table.v);
        table.v = NULL;
        table.cap = 0;
    }
    if (ivy__timer_armed(&l->backoff)) ivy__timer_cancel(&h->timers, &l->backoff);
    while (l->nwaiters)
        wake_waiter(h, l, -EBADF);
    if (!l->armed) {
        listener_free(l);
        return;
    }
    l->closing = true;
    cancel(h, l);
}

int ivy_accept_stop(int listen_fd)
{
    struct ivy_hub *h = ivy__hub_tls;
    if (!h) return -EPERM;
    struct listener *l = listener_get(listen_fd);
    if (!l) return -ENOMEM;
    if (l->stopping) return 0;
    l->stopping = true;
    if (ivy__timer_armed(&l->backoff)) ivy__timer_cancel(&h->timers, &l->backoff);
    if (l->armed)
        cancel(h, l); /* its final completion fails the waiters */
    else
        while (l->nwaiters)
            wake_waiter(h, l, -ESHUTDOWN);
    return 0;
}

static void accept_interrupt(ivy_thread *t, int err)
{
    struct listener *l =
        (struct listener *)((char *)t->wait_obj - offsetof(struct listener, waiters));
    ivy__waitq_remove(&l->waiters, t);
    l->nwaiters--;
    ivy__hub_tls->external--;
    t->interrupt = NULL;
    ivy__ready(t, err);
}

int ivy_accept(int listen_fd, struct sockaddr_storage *peer)
{
    ivy_thread *t = ivy__self();
    int rc = ivy__blocking_check(t);
    if (rc < 0) return rc;
    if (listen_fd < 0) return -EBADF;
    struct ivy_hub *h = ivy__hub_tls;
    struct listener *l = listener_get(listen_fd);
    if (!l) return -ENOMEM;
    int fd;
    if (l->qlen) {
        fd = l->q[l->qhead];
        l->qhead = (l->qhead + 1) & (l->qcap - 1);
        l->qlen--;
    } else if (l->stopping && !l->armed) {
        return -ESHUTDOWN;
    } else {
        if (!l->armed && !l->stopping && !ivy__timer_armed(&l->backoff)) arm(h, l);
        l->nwaiters++;
        h->external++;
        ivy__waitq_push(&l->waiters, t);
        t->wait_obj = &l->waiters;
        t->interrupt = accept_interrupt;
        fd = ivy__park(t);
        if (fd < 0) return fd;
    }
    ivy__recv_forget(fd); /* state left by a socket of that number closed with close(2) */
    if (peer) {
        socklen_t len = sizeof *peer;
        getpeername(fd, (struct sockaddr *)peer, &len);
    }
    return fd;
}
