/*
 * The buffered reader (eventlet's makefile) over a socket's receive queue (io/recv.c).
 *
 * A reader waiting for data must not pin a buffer: with thousands of idle keep-alive
 * connections that would be thousands of buffers. So it waits on the socket's queue, whose
 * buffers the kernel picks from the hub's ring only when bytes arrive, and copies what came into
 * a buffer of its own sized to it. That buffer exists only while it holds unread bytes: it is
 * freed (or kept on a short per-thread list) on the first call that finds it drained.
 */
#include "socket_impl.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { BUFSZ = 16384 };

struct ivy_reader {
    int fd;
    bool eof;
    size_t max_line;
    char *buf;
    size_t cap, start, end;
};

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
    const char *p;
    ssize_t n = ivy__recv_peek(r->fd, &p);
    if (n <= 0) return n;
    int rc = reserve(r, (size_t)n);
    if (rc < 0) return rc;
    memcpy(r->buf + r->end, p, (size_t)n);
    ivy__recv_take(r->fd, (size_t)n);
    r->end += (size_t)n;
    return n;
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
