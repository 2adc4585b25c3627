/*
 * Timers: a 4-ary min-heap of pointers to caller-owned timers, keyed by deadline.
 *
 * Each timer remembers its heap index, so cancel is O(log n) from anywhere in the heap. Four
 * children per node halve the depth of a binary heap, and the children of a node share a cache
 * line, which is what matters with a million pending timers. Ties fire in no promised order.
 * The hub turns the earliest deadline into the timeout of its io_uring wait: no timerfd.
 */
#include "hub_impl.h"

#include <stdlib.h>

#define ARITY 4

static inline void place(struct ivy_timer_heap *h, uint32_t i, struct ivy_timer *tm)
{
    h->v[i] = tm;
    tm->index = i;
}

static void sift_up(struct ivy_timer_heap *h, uint32_t i, struct ivy_timer *tm)
{
    while (i > 0) {
        uint32_t p = (i - 1) / ARITY;
        if (h->v[p]->deadline <= tm->deadline) break;
        place(h, i, h->v[p]);
        i = p;
    }
    place(h, i, tm);
}

static void sift_down(struct ivy_timer_heap *h, uint32_t i, struct ivy_timer *tm)
{
    for (;;) {
        uint32_t c = i * ARITY + 1, end = c + ARITY, best = UINT32_MAX;
        if (c >= h->n) break;
        if (end > h->n) end = h->n;
        uint64_t bd = tm->deadline;
        for (; c < end; c++) {
            if (h->v[c]->deadline < bd) {
                bd = h->v[c]->deadline;
                best = c;
            }
        }
        if (best == UINT32_MAX) break;
        place(h, i, h->v[best]);
        i = best;
    }
    place(h, i, tm);
}

int ivy__timer_add(struct ivy_timer_heap *h, struct ivy_timer *tm)
{
    if (h->n == h->cap) {
        uint32_t cap = h->cap ? h->cap * 2 : 256;
        struct ivy_timer **v = realloc(h->v, cap * sizeof *v);
        if (!v) return -ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    sift_up(h, h->n++, tm);
    return 0;
}

void ivy__timer_cancel(struct ivy_timer_heap *h, struct ivy_timer *tm)
{
    uint32_t i = tm->index;
    if (i == IVY_TIMER_IDLE) return;
    tm->index = IVY_TIMER_IDLE;
    struct ivy_timer *last = h->v[--h->n];
    if (last == tm) return;
    /* The last timer fills the hole and moves whichever way its deadline says. */
    if (i > 0 && last->deadline < h->v[(i - 1) / ARITY]->deadline)
        sift_up(h, i, last);
    else
        sift_down(h, i, last);
}

unsigned ivy__timer_fire_due(struct ivy_timer_heap *h, uint64_t now)
{
    unsigned fired = 0;
    while (h->n && h->v[0]->deadline <= now) {
        struct ivy_timer *tm = h->v[0];
        ivy__timer_cancel(h, tm);
        tm->fire(tm);
        fired++;
    }
    return fired;
}

void ivy__timer_heap_free(struct ivy_timer_heap *h)
{
    free(h->v);
    *h = (struct ivy_timer_heap){0};
}
