/*
 * The buffered reader (eventlet's makefile) over a provided-buffer ring.
 *
 * A reader waiting for data must not pin a buffer: with thousands of idle keep-alive
 * connections that would be thousands of buffers. So its receives pick a buffer from the hub's
 * provided-buffer ring (IOSQE_BUFFER_SELECT) only when data arrives; the bytes are copied into
 * the reader's own buffer and the ring buffer goes straight back. The reader's buffer exists
 * only while it holds unread bytes: it is freed on the first call that finds it drained.
 *
 * The ring runs out (-ENOBUFS) only when more receives complete in one batch than it has
 * buffers; the threads that got one return it within their slice, so the receive is simply
 * made again. Kernels without buffer rings (< 5.19) get plain receives into the reader's
 * buffer. Large reads bypass the buffer entirely.
 */
#include "socket_impl.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum { BGID = 0x1f7, NBUFS = 128, BUFSZ = 16384 };

struct ivy_reader {
    int fd;
    bool eof;
    size_t max_line;
    char *buf;
    size_t cap, start, end;
};

/* The buffers, per thread; registered with each new hub of the thread (h->pbufs). */
static __thread struct {
    struct io_uring_buf_ring *br;
    char *mem;
} pbufs;

static bool pbufs_ready(struct ivy_hub *h)
{
    if (h->pbufs) return h->pbufs > 0;
    h->pbufs = -1;
    if (!pbufs.br) {
        void *br = mmap(NULL, NBUFS * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        void *mem = mmap(NULL, (size_t)NBUFS * BUFSZ, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (br == MAP_FAILED || mem == MAP_FAILED) return false;
        pbufs.br = br;
        pbufs.mem = mem;
    }
    struct io_uring_buf_reg reg = {
        .ring_addr = (uintptr_t)pbufs.br, .ring_entries = NBUFS, .bgid = BGID};
    if (io_uring_register_buf_ring(&h->ring, &reg, 0) != 0) return false;
    io_uring_buf_ring_init(pbufs.br);
    for (int i = 0; i < NBUFS; i++)
        io_uring_buf_ring_add(pbufs.br, pbufs.mem + (size_t)i * BUFSZ, BUFSZ, (unsigned short)i,
                              io_uring_buf_ring_mask(NBUFS), i);
    io_uring_buf_ring_advance(pbufs.br, NBUFS);
    h->pbufs = 1;
    return true;
}

static void pbuf_return(unsigned bid)
{
    io_uring_buf_ring_add(pbufs.br, pbufs.mem + (size_t)bid * BUFSZ, BUFSZ, (unsigned short)bid,
                          io_uring_buf_ring_mask(NBUFS), 0);
    io_uring_buf_ring_advance(pbufs.br, 1);
}

ivy_reader *ivy_reader_new(int fd, size_t max_line)
{
    if (fd < 0 || max_line == 0) {
        errno = EINVAL;
        return NULL;
    }
    ivy_reader *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->fd = fd;
    r->max_line = max_line;
    return r;
}

/*
 * Buffers of the first size (BUFSZ) are what nearly every fill needs: a few drained ones wait
 * on a per-thread list for the next fill instead of going through malloc and free each time.
 * The list is bounded, so idle connections still pin nothing.
 */
enum { SPARE_MAX = 64 };
static __thread struct {
    void *v[SPARE_MAX];
    unsigned n;
} spare;

static char *buf_get(size_t cap)
{
    if (cap == BUFSZ && spare.n) return spare.v[--spare.n];
    return malloc(cap);
}

static pthread_key_t spare_key;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;

/* Thread exit: the list goes with the thread. */
static void spare_drop(void *unused)
{
    while (spare.n)
        free(spare.v[--spare.n]);
}

static void spare_key_init(void)
{
    pthread_key_create(&spare_key, spare_drop);
}

static void buf_put(char *b, size_t cap)
{
    if (!b || cap != BUFSZ || spare.n >= SPARE_MAX) {
        free(b);
        return;
    }
    if (!spare.n) {
        pthread_once(&spare_once, spare_key_init);
        pthread_setspecific(spare_key, &spare); /* non-NULL, so spare_drop runs at exit */
    }
    spare.v[spare.n++] = b;
}

void ivy_reader_free(ivy_reader *r)
{
    if (!r) return;
    buf_put(r->buf, r->cap);
    free(r);
}

/* Room for n more bytes after end, compacting or growing the buffer. */
static int reserve(ivy_reader *r, size_t n)
{
    size_t used = r->end - r->start;
    if (r->cap - r->end >= n) return 0;
    if (r->start && r->cap - used >= n) {
        memmove(r->buf, r->buf + r->start, used);
    } else {
        size_t cap = r->cap ? r->cap * 2 : BUFSZ;
        while (cap < used + n)
            cap *= 2;
        char *b = buf_get(cap);
        if (!b) return -ENOMEM;
        if (used) memcpy(b, r->buf + r->start, used);
        buf_put(r->buf, r->cap);
        r->buf = b;
        r->cap = cap;
    }
    r->start = 0;
    r->end = used;
    return 0;
}

static void drop_if_drained(ivy_reader *r)
{
    if (r->start != r->end || !r->buf) return;
    buf_put(r->buf, r->cap);
    r->buf = NULL;
    r->cap = r->start = r->end = 0;
}

/* Receives more bytes into the buffer: their count, 0 at end of stream, or an error. */
static ssize_t fill(ivy_reader *r)
{
    for (;;) {
        struct ivy_hub *h = ivy__hub_tls;
        ivy_thread *t;
        struct io_uring_sqe *sqe;
        struct ivy_op op;
        bool ring = h && pbufs_ready(h);
        int rc = ring ? 0 : reserve(r, BUFSZ);
        if (rc < 0) return rc;
        if ((rc = ivy__op_begin(&h, &t, &sqe)) < 0) return rc;
        if (!ring) {
            io_uring_prep_recv(sqe, r->fd, r->buf + r->end, BUFSZ, 0);
            rc = ivy__op_wait(h, t, sqe, &op);
            if (rc > 0) r->end += (size_t)rc;
            return rc;
        }
        io_uring_prep_recv(sqe, r->fd, NULL, BUFSZ, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = BGID;
        rc = ivy__op_wait(h, t, sqe, &op);
        if (rc == -ENOBUFS) continue;
        if (op.flags & IORING_CQE_F_BUFFER) {
            unsigned bid = op.flags >> IORING_CQE_BUFFER_SHIFT;
            if (rc > 0) {
                int err = reserve(r, (size_t)rc);
                if (err == 0) {
                    memcpy(r->buf + r->end, pbufs.mem + (size_t)bid * BUFSZ, (size_t)rc);
                    r->end += (size_t)rc;
                }
                rc = err ? err : rc;
            }
            pbuf_return(bid);
        }
        return rc;
    }
}

ssize_t ivy_readline(ivy_reader *r, const char **line)
{
    drop_if_drained(r);
    size_t scanned = 0;
    for (;;) {
        size_t avail = r->end - r->start;
        char *p = r->buf + r->start;
        char *nl = avail > scanned ? memchr(p + scanned, '\n', avail - scanned) : NULL;
        size_t len = nl ? (size_t)(nl - p) + 1 : avail;
        if (len > r->max_line) return -EMSGSIZE;
        if (nl || (r->eof && len)) {
            *line = p;
            r->start += len;
            return (ssize_t)len;
        }
        if (r->eof) return 0;
        scanned = avail;
        ssize_t n = fill(r);
        if (n < 0) return n;
        if (n == 0) r->eof = true;
    }
}

ssize_t ivy_reader_read(ivy_reader *r, void *buf, size_t len)
{
    drop_if_drained(r);
    if (len == 0) return 0;
    if (r->end == r->start) {
        if (r->eof) return 0;
        if (len >= BUFSZ) return ivy_recv(r->fd, buf, len); /* no point copying twice */
        ssize_t n = fill(r);
        if (n <= 0) {
            if (n == 0) r->eof = true;
            return n;
        }
    }
    size_t n = r->end - r->start;
    if (n > len) n = len;
    memcpy(buf, r->buf + r->start, n);
    r->start += n;
    return (ssize_t)n;
}

ssize_t ivy_reader_exact(ivy_reader *r, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = ivy_reader_read(r, (char *)buf + got, len - got);
        if (n < 0) return n;
        if (n == 0) return -ENODATA;
        got += (size_t)n;
    }
    return (ssize_t)len;
}
