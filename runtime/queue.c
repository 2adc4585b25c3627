/*
 * Queue: a FIFO of void * items, bounded or not, with FIFO-fair getters and putters.
 *
 * Items live in a ring buffer whose capacity is a power of two (index by mask) and doubles
 * when an unbounded queue fills it; a bounded one grows the same way up to its maxsize.
 * Invariants, kept by handing items over directly:
 * - getters wait only while the queue is empty: a put gives its item straight to the first
 *   getter instead of storing it;
 * - putters wait only while it is full: a get that frees a slot moves the first putter's
 *   item into it at once.
 * So a newcomer never takes an item or a slot ahead of a thread already waiting for one.
 */
#include "sync_impl.h"

#include <stdlib.h>

struct ivy_queue {
    void **buf;
    size_t cap; /* 0 or a power of two */
    size_t head, count;
    size_t maxsize; /* 0: unbounded */
    struct ivy_waiters getters, putters;
};

ivy_queue *ivy_queue_new(size_t maxsize)
{
    ivy_queue *q = calloc(1, sizeof *q);
    if (q) q->maxsize = maxsize;
    return q;
}

int ivy_queue_free(ivy_queue *q)
{
    if (!q) return 0;
    if (q->getters.n || q->putters.n) return -EBUSY;
    free(q->buf);
    free(q);
    return 0;
}

static int grow(ivy_queue *q)
{
    size_t cap = q->cap ? q->cap * 2 : 16;
    if (cap < q->cap) return -ENOMEM;
    void **buf = malloc(cap * sizeof *buf);
    if (!buf) return -ENOMEM;
    /* Unwrap: the oldest item goes to index 0. */
    for (size_t i = 0; i < q->count; i++)
        buf[i] = q->buf[(q->head + i) & (q->cap - 1)];
    free(q->buf);
    q->buf = buf;
    q->cap = cap;
    q->head = 0;
    return 0;
}

static bool full(const ivy_queue *q)
{
    return q->maxsize && q->count >= q->maxsize;
}

/* Stores item, or gives it to the first getter; -EAGAIN when full. */
static int put_now(ivy_queue *q, void *item)
{
    ivy_thread *t = ivy__wake(&q->getters, 0);
    if (t) {
        *ivy__wait_slot(t) = item;
        return 0;
    }
    if (full(q)) return -EAGAIN;
    if (q->count == q->cap) {
        int rc = grow(q);
        if (rc < 0) return rc;
    }
    q->buf[(q->head + q->count++) & (q->cap - 1)] = item;
    return 0;
}

/* Takes the oldest item and refills its slot from the first putter; -EAGAIN when empty. */
static int get_now(ivy_queue *q, void **item)
{
    if (!q->count) return -EAGAIN;
    *item = q->buf[q->head];
    q->head = (q->head + 1) & (q->cap - 1);
    q->count--;
    ivy_thread *t = ivy__wake(&q->putters, 0);
    if (t) q->buf[(q->head + q->count++) & (q->cap - 1)] = *ivy__wait_slot(t);
    return 0;
}

int ivy_queue_try_put(ivy_queue *q, void *item)
{
    return q ? put_now(q, item) : -EINVAL;
}

int ivy_queue_try_get(ivy_queue *q, void **item)
{
    return q && item ? get_now(q, item) : -EINVAL;
}

int ivy_queue_put(ivy_queue *q, void *item, double timeout)
{
    if (!q) return -EINVAL;
    ivy_thread *self;
    int rc = ivy__sync_enter(timeout, &self);
    if (rc < 0) return rc;
    rc = put_now(q, item);
    if (rc != -EAGAIN) return rc;
    /* The getter that frees a slot reads the item from here, then readies us with 0. */
    return ivy__wait(&q->putters, self, timeout, &item);
}

int ivy_queue_get(ivy_queue *q, void **item, double timeout)
{
    if (!q || !item) return -EINVAL;
    ivy_thread *self;
    int rc = ivy__sync_enter(timeout, &self);
    if (rc < 0) return rc;
    rc = get_now(q, item);
    if (rc != -EAGAIN) return rc;
    return ivy__wait(&q->getters, self, timeout, item);
}

size_t ivy_queue_size(const ivy_queue *q)
{
    return q ? q->count : 0;
}
