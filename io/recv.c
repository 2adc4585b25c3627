/*
 * Receiving on green sockets: one multishot receive per socket into the hub's provided-buffer
 * ring, armed by the first receive and kept armed for the socket's life.
 *
 * Why: a request/response connection would otherwise make one receive request per message,
 * which the kernel first tries at once (nothing there yet: the answer only just went out), then
 * arms a poll for, then tears down again. Armed once, a receive costs one completion per arrival
 * and no submission at all. Bytes that arrive while nobody receives queue on the socket, in
 * order, in their ring buffers; ivy_recv copies them out and hands each buffer back to the ring
 * as soon as it is drained. A connection waiting for bytes holds no buffer: the kernel picks one
 * only when bytes arrive, so thousands of idle connections pin nothing.
 *
 * Bounds: a socket whose queue reaches QUEUE_BYTES bytes or QUEUE_HIGH chunks (a peer sending
 * faster than the application reads) has its receive cancelled, so further bytes wait in the
 * kernel's socket buffer and TCP flow control pushes back on the peer; the next receive that finds
 * the queue drained arms it again. Bytes, not buffers: a chunk of less than COPY_BELOW bytes that
 * nobody is about to read (no waiter nor ivy__recv_notify callback, or bytes queued before it) is
 * copied into a small heap chunk of the socket's (coalescing with the one before it) and its ring
 * buffer goes straight back, so a peer trickling single bytes to a connection that is not reading
 * holds a few bytes of heap, not a 16 KiB ring buffer per byte: the ring buffers a socket holds
 * are at least half full, bar the one being read. (The kernel's incremental buffer consumption, IOU_PBUF_RING_INC, would pack
 * small arrivals too, but many sockets' bytes then share a buffer, and one parked byte still
 * holds all of it.) When the ring runs dry (-ENOBUFS), a waiting receiver gets one plain
 * receive into a buffer of its own, so nobody spins waiting for buffers to come back; the
 * receive after it tries the ring again. Kernels without multishot receive (< 6.0) or buffer
 * rings (< 5.19) always take that plain path.
 *
 * Lifetime: an armed receive holds a reference to the socket, so close(2) alone would leave the
 * connection open: ivy_close cancels it first (ivy__recv_forget). A socket's state is freed on
 * its requests' final completions, never before, since those point at it.
 */
#include "conns.h"
#include "socket_impl.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum {
    BGID = 0x1f7,
    NBUFS = 1024,
    BUFSZ = 16384,
    QUEUE_HIGH = 8,
    QUEUE_BYTES = QUEUE_HIGH * BUFSZ, /* as many bytes as QUEUE_HIGH full buffers hold */
    COPY_BELOW = BUFSZ / 2,
    SPILL_MIN = 256,
};

struct chunk {
    char *p;
    uint32_t len, cap; /* cap: a heap chunk's size (more bytes may be appended), 0 in the ring */
    int32_t bid;       /* the ring buffer it lives in, or -1: a buffer of its own (malloc) */
};

struct rsock {
    struct ivy_completion multi, once; /* the multishot receive; the plain one */
    int fd;
    bool armed, once_armed;    /* each request in flight */
    bool stopping;             /* the multishot is being cancelled at QUEUE_HIGH */
    bool closing;              /* ivy_close took it out of the table: free on the last completion */
    bool nobufs;               /* the ring ran dry under the last receive: go plain once */
    bool has_end;              /* `end` is due once the queue is drained */
    struct rsock *prev, *next; /* on the table's closing list while closing */
    int end;                   /* 0 (end of stream) or the error that ended the receive */
    char *once_buf;
    struct ivy_waitq waiters;
    void (*notify)(void *arg); /* ivy__recv_notify's, called once bytes or the end arrive */
    void *notify_arg;
    struct chunk *q; /* ring of received chunks; the head one is read from off */
    unsigned qhead, qlen, qcap;
    uint32_t off;
    uint32_t qbytes; /* bytes queued and not yet read */
};

struct ivy_recv_table {
    struct rsock **v; /* by descriptor */
    int cap;
    struct rsock *closing; /* out of v, waiting for their final completions */
};

/* The buffers, per OS thread; registered with each new hub of the thread (h->pbufs). */
static __thread struct {
    struct io_uring_buf_ring *br;
    char *mem;
    bool no_multishot; /* the kernel refused a multishot receive */
    unsigned held;     /* buffers out of the ring: in completions, queued on sockets */
} pbufs;

unsigned ivy__recv_ring_held(void)
{
    return pbufs.held;
}

static bool pbufs_ready(struct ivy_hub *h)
{
    if (h->pbufs) return h->pbufs > 0;
    h->pbufs = -1;
    if (!pbufs.br) {
        void *br = mmap(NULL, NBUFS * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (br == MAP_FAILED) return false;
        /* Address space only: a page is resident once a receive has written to it. */
        void *mem = mmap(NULL, (size_t)NBUFS * BUFSZ, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (mem == MAP_FAILED) {
            munmap(br, NBUFS * sizeof(struct io_uring_buf));
            return false;
        }
        pbufs.br = br;
        pbufs.mem = mem;
    }
    struct io_uring_buf_reg reg = {
        .ring_addr = (uintptr_t)pbufs.br, .ring_entries = NBUFS, .bgid = BGID};
    if (io_uring_register_buf_ring(&h->ring, &reg, 0) != 0) return false;
    io_uring_buf_ring_init(pbufs.br);
    pbufs.held = 0;
    for (int i = 0; i < NBUFS; i++)
        io_uring_buf_ring_add(pbufs.br, pbufs.mem + (size_t)i * BUFSZ, BUFSZ, (unsigned short)i,
                              io_uring_buf_ring_mask(NBUFS), i);
    io_uring_buf_ring_advance(pbufs.br, NBUFS);
    h->pbufs = 1;
    return true;
}

static void chunk_release(const struct chunk *k)
{
    if (k->bid < 0) {
        /* A receive of its own, made while the ring was dry: in a burst of thousands, their
         * touched pages would stay with the allocator once the burst is over. Not a small
         * chunk copied out of the ring (spill): it is smaller than a page and shares them. */
        if (k->cap == BUFSZ) madvise(k->p, BUFSZ, MADV_DONTNEED);
        free(k->p);
        return;
    }
    pbufs.held--;
    io_uring_buf_ring_add(pbufs.br, pbufs.mem + (size_t)k->bid * BUFSZ, BUFSZ,
                          (unsigned short)k->bid, io_uring_buf_ring_mask(NBUFS), 0);
    io_uring_buf_ring_advance(pbufs.br, 1);
}

static bool push(struct rsock *s, char *p, uint32_t len, uint32_t cap, int32_t bid)
{
    if (s->qlen == s->qcap) {
        unsigned cap = s->qcap ? s->qcap * 2 : QUEUE_HIGH * 2;
        struct chunk *q = malloc(cap * sizeof *q);
        if (!q) return false;
        for (unsigned i = 0; i < s->qlen; i++)
            q[i] = s->q[(s->qhead + i) & (s->qcap - 1)];
        free(s->q);
        s->q = q;
        s->qcap = cap;
        s->qhead = 0;
    }
    s->q[(s->qhead + s->qlen++) & (s->qcap - 1)] = (struct chunk){p, len, cap, bid};
    return true;
}

/* Copies a small arrival to the heap (onto the last chunk if it has room); false: no memory. */
static bool spill(struct rsock *s, const char *p, uint32_t len)
{
    struct chunk *k = s->qlen ? &s->q[(s->qhead + s->qlen - 1) & (s->qcap - 1)] : NULL;
    if (k && k->bid < 0 && k->cap - k->len >= len) {
        memcpy(k->p + k->len, p, len);
        k->len += len;
        return true;
    }
    uint32_t cap = len < SPILL_MIN ? SPILL_MIN : len;
    char *b = malloc(cap);
    if (!b) return false;
    memcpy(b, p, len);
    if (push(s, b, len, cap, -1)) return true;
    free(b);
    return false;
}

static void pop(struct rsock *s)
{
    chunk_release(&s->q[s->qhead]);
    s->qhead = (s->qhead + 1) & (s->qcap - 1);
    s->qlen--;
    s->off = 0;
}

/* Consumes n bytes of the head chunk. */
static void take(struct rsock *s, uint32_t n)
{
    s->off += n;
    s->qbytes -= n;
    if (s->off == s->q[s->qhead].len) pop(s);
}

static void rsock_free(struct rsock *s)
{
    if (s->closing) {
        struct ivy_recv_table *tab = ivy__hub_tls->rtab;
        if (s->prev)
            s->prev->next = s->next;
        else
            tab->closing = s->next;
        if (s->next) s->next->prev = s->prev;
    }
    while (s->qlen)
        pop(s);
    free(s->q);
    free(s->once_buf);
    free(s);
}

static void cancel(struct ivy_hub *h, struct ivy_completion *c)
{
    struct io_uring_sqe *sqe = ivy__sqe(h);
    io_uring_prep_cancel(sqe, c, 0);
    io_uring_sqe_set_data(sqe, NULL);
}

/* Arms the socket's receive: multishot into the ring where it can, else one plain receive. */
static void arm(struct ivy_hub *h, struct rsock *s)
{
    struct io_uring_sqe *sqe;
    if (!s->nobufs && !pbufs.no_multishot && pbufs_ready(h)) {
        sqe = ivy__sqe(h);
        io_uring_prep_recv_multishot(sqe, s->fd, NULL, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = BGID;
        io_uring_sqe_set_data(sqe, &s->multi);
        s->armed = true;
        return;
    }
    if (!s->once_buf && !(s->once_buf = malloc(BUFSZ))) {
        s->end = -ENOMEM;
        s->has_end = true;
        return;
    }
    sqe = ivy__sqe(h);
    io_uring_prep_recv(sqe, s->fd, s->once_buf, BUFSZ, 0);
    io_uring_sqe_set_data(sqe, &s->once);
    s->once_armed = true;
}

/* Hands the socket to whoever asked to be told (ivy__recv_notify): once. */
static void notify(struct rsock *s)
{
    void (*cb)(void *) = s->notify;
    if (!cb) return;
    s->notify = NULL;
    ivy__hub_tls->external--;
    cb(s->notify_arg);
}

static void wake_all(struct rsock *s, int value)
{
    while (ivy__waitq_wake(&s->waiters, value)) {
    }
    notify(s);
}

/* A receive (the multishot one when multi) ended without bytes: res is why. */
static void ended(struct ivy_hub *h, struct rsock *s, int res, bool multi)
{
    if (res == -ENOBUFS) {
        s->nobufs = true;
        h->stats.recv_ring_empty++;
    } else if (res == -EINVAL && multi && !pbufs.no_multishot) {
        pbufs.no_multishot = true; /* a kernel without multishot receive (< 6.0) */
    } else if (res != -ECANCELED) {
        s->end = res; /* end of stream or the socket's error, due after the queued bytes */
        s->has_end = true;
        wake_all(s, 0);
        return;
    }
    /* Cancelled at QUEUE_HIGH, or retrying: re-arm only for someone waiting on an empty queue. */
    if ((s->waiters.head || s->notify) && !s->qlen && !s->armed && !s->once_armed) arm(h, s);
}

static void got(struct rsock *s, char *p, int res, uint32_t cap, int32_t bid)
{
    uint32_t len = (uint32_t)res;
    s->qbytes += len;
    /* Nobody about to read it: a waiter (or ivy__recv_notify's callback) would take it now. */
    bool held = s->qlen || (!s->waiters.head && !s->notify);
    if (bid >= 0 && len < COPY_BELOW && held && spill(s, p, len)) {
        chunk_release(&(struct chunk){p, 0, 0, bid});
    } else if (!push(s, p, len, cap, bid)) {
        chunk_release(&(struct chunk){p, 0, cap, bid});
        s->qbytes -= len;
        s->end = -ENOMEM; /* bytes are lost: the stream cannot go on */
        s->has_end = true;
        wake_all(s, 0);
        return;
    }
    ivy__waitq_wake(&s->waiters, 0);
    notify(s);
}

static void multi_complete(struct ivy_completion *c, int res, uint32_t flags)
{
    struct rsock *s = (struct rsock *)((char *)c - offsetof(struct rsock, multi));
    struct ivy_hub *h = ivy__hub_tls;
    bool more = flags & IORING_CQE_F_MORE;
    if (flags & IORING_CQE_F_BUFFER) pbufs.held++;
    if (!more) s->armed = s->stopping = false;
    if (s->closing) {
        if (flags & IORING_CQE_F_BUFFER)
            chunk_release(&(struct chunk){NULL, 0, 0, (int32_t)(flags >> IORING_CQE_BUFFER_SHIFT)});
        if (!s->armed && !s->once_armed) rsock_free(s);
        return;
    }
    if (res > 0) {
        unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
        got(s, pbufs.mem + (size_t)bid * BUFSZ, res, 0, (int32_t)bid);
        if (more && (s->qlen >= QUEUE_HIGH || s->qbytes >= QUEUE_BYTES) && !s->stopping) {
            s->stopping = true;
            cancel(h, &s->multi);
        }
    } else if (!more) {
        ended(h, s, res, true);
    }
}

static void once_complete(struct ivy_completion *c, int res, uint32_t flags)
{
    struct rsock *s = (struct rsock *)((char *)c - offsetof(struct rsock, once));
    struct ivy_hub *h = ivy__hub_tls;
    s->once_armed = false;
    if (s->closing) {
        if (!s->armed) rsock_free(s);
        return;
    }
    if (res > 0) {
        s->nobufs = false; /* the next receive tries the ring again */
        char *p = s->once_buf;
        s->once_buf = NULL;
        got(s, p, res, BUFSZ, -1);
    } else {
        ended(h, s, res, false);
    }
}

static struct rsock *lookup(struct ivy_hub *h, int fd)
{
    struct ivy_recv_table *tab = h->rtab;
    return tab && fd < tab->cap ? tab->v[fd] : NULL;
}

static struct rsock *rsock_get(struct ivy_hub *h, int fd)
{
    struct ivy_recv_table *tab = h->rtab;
    if (!tab && !(tab = h->rtab = calloc(1, sizeof *tab))) return NULL;
    if (fd >= tab->cap) {
        int cap = tab->cap ? tab->cap : 256;
        while (cap <= fd)
            cap *= 2;
        struct rsock **v = realloc(tab->v, (size_t)cap * sizeof *v);
        if (!v) return NULL;
        memset(v + tab->cap, 0, (size_t)(cap - tab->cap) * sizeof *v);
        tab->v = v;
        tab->cap = cap;
    }
    struct rsock *s = tab->v[fd];
    if (s) return s;
    if (!(s = calloc(1, sizeof *s))) return NULL;
    s->multi.complete = multi_complete;
    s->once.complete = once_complete;
    s->fd = fd;
    tab->v[fd] = s;
    return s;
}

/*
 * Waits until fd has received bytes, or its end: > 0 with *sp the socket, whose queue then holds
 * bytes; 0 at end of stream; or a negative errno (the socket's, or -ECANCELED, -ETIMEDOUT, and
 * -EBADF when it is closed meanwhile).
 */
static int wait_bytes(int fd, struct rsock **sp)
{
    ivy_thread *t = ivy__self();
    int rc = ivy__blocking_check(t);
    if (rc < 0) return rc;
    if (fd < 0) return -EBADF;
    struct ivy_hub *h = ivy__hub_tls;
    struct rsock *s = rsock_get(h, fd);
    if (!s) return -ENOMEM;
    for (;;) {
        if (s->qlen) {
            *sp = s;
            return 1;
        }
        if (s->has_end) {
            s->has_end = false; /* reported once; a further receive asks the kernel again */
            return s->end;
        }
        if (!s->armed && !s->once_armed) arm(h, s);
        if (s->has_end) continue; /* arm found no memory */
        h->external++;            /* the wake-up comes from a request not counted in flight */
        rc = ivy__waitq_wait(&s->waiters, t);
        h->external--;
        if (rc < 0) return rc;
        /* Another thread may have closed fd after we were woken, before we ran. */
        if (!(s = lookup(h, fd))) return -EBADF;
    }
}

ssize_t ivy_recv(int fd, void *buf, size_t len)
{
    struct rsock *s;
    if (len == 0) return 0;
    int rc = wait_bytes(fd, &s);
    if (rc <= 0) return rc;
    /* Everything queued, up to len, as one recv(2) would return what the socket holds. */
    size_t got = 0;
    while (got < len && s->qlen) {
        struct chunk *k = &s->q[s->qhead];
        size_t n = k->len - s->off;
        if (n > len - got) n = len - got;
        memcpy((char *)buf + got, k->p + s->off, n);
        got += n;
        take(s, (uint32_t)n);
    }
    return (ssize_t)got;
}

ssize_t ivy_recv_exact(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = ivy_recv(fd, (char *)buf + got, len - got);
        if (n < 0) return n;
        if (n == 0) return -ENODATA;
        got += (size_t)n;
    }
    return (ssize_t)len;
}

ssize_t ivy__recv_peek(int fd, const char **p)
{
    struct rsock *s;
    int rc = wait_bytes(fd, &s);
    if (rc <= 0) return rc;
    struct chunk *k = &s->q[s->qhead];
    *p = k->p + s->off;
    return k->len - s->off;
}

void ivy__recv_take(int fd, size_t n)
{
    take(lookup(ivy__hub_tls, fd), (uint32_t)n);
}

int ivy__recv_notify(int fd, void (*cb)(void *arg), void *arg)
{
    struct ivy_hub *h = ivy__hub_tls;
    if (!h || fd < 0) return -EBADF;
    struct rsock *s = rsock_get(h, fd);
    if (!s) return -ENOMEM;
    if (s->qlen || s->has_end) return 1;
    if (s->notify) return -EBUSY;
    /* A socket waited on with no thread is a quiet one: its empty queue goes until bytes come. */
    free(s->q);
    s->q = NULL;
    s->qcap = s->qhead = 0;
    if (!s->armed && !s->once_armed) arm(h, s);
    if (s->has_end) return 1; /* arm found no memory */
    s->notify = cb;
    s->notify_arg = arg;
    h->external++; /* a completion will run cb: the hub is not idle for good */
    return 0;
}

void ivy__recv_unnotify(int fd)
{
    struct ivy_hub *h = ivy__hub_tls;
    struct rsock *s = h && fd >= 0 ? lookup(h, fd) : NULL;
    if (!s || !s->notify) return;
    s->notify = NULL;
    h->external--;
}

bool ivy__recv_idle(int fd)
{
    struct ivy_hub *h = ivy__hub_tls;
    struct rsock *s = h && fd >= 0 ? lookup(h, fd) : NULL;
    return s && !s->qlen && !s->has_end && s->waiters.head;
}

void ivy__recv_forget(int fd)
{
    struct ivy_hub *h = ivy__hub_tls;
    struct rsock *s = h && fd >= 0 ? lookup(h, fd) : NULL;
    if (!s) return;
    h->rtab->v[fd] = NULL;
    if (s->notify) { /* nobody is told of a closed socket */
        s->notify = NULL;
        h->external--;
    }
    wake_all(s, -EBADF);
    while (s->qlen)
        pop(s);
    s->qbytes = 0;
    if (!s->armed && !s->once_armed) {
        rsock_free(s);
        return;
    }
    s->closing = true;
    s->next = h->rtab->closing;
    if (s->next) s->next->prev = s;
    h->rtab->closing = s;
    if (s->armed) cancel(h, &s->multi);
    if (s->once_armed) cancel(h, &s->once);
    /* Closed from outside the loop: cancel now, running the task work that drops the socket. */
    if (!h->in_run) io_uring_submit_and_get_events(&h->ring);
}

void ivy__recv_hub_free(struct ivy_hub *h)
{
    struct ivy_recv_table *tab = h->rtab;
    if (!tab) return;
    /* What was armed is cancelled and answered (ivy__ring_cancel_all): only state is left. */
    for (int fd = 0; fd < tab->cap; fd++)
        if (tab->v[fd]) rsock_free(tab->v[fd]);
    while (tab->closing)
        rsock_free(tab->closing);
    free(tab->v);
    free(tab);
    h->rtab = NULL;
}
