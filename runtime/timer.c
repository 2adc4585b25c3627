/*
 * Timers: a 4-ary min-heap of (deadline, timer) entries, keyed by deadline.
 *
 * Each timer remembers its heap index, so cancel is O(log n) from anywhere in the heap. Four
 * children per node halve the depth of a binary heap. An entry carries a copy of its timer's
 * deadline, so choosing among children reads one cache line of the array instead of chasing four
 * pointers into timers scattered over thread stacks; the array is laid out so that each group of
 * four siblings is one aligned cache line. What matters with a million pending timers is cache
 * misses, and this leaves one per level moved (the moved timer's index). Ties fire in no
 * promised order. The hub turns the earliest deadline into the timeout of its io_uring wait: no
 * timerfd.
 */
#include "hub_impl.h"

#include <stdlib.h>
#include <string.h>

#define ARITY 4
/* v[1] starts a cache line when the allocation does and v sits PAD entries into it. */
#define PAD 3

static inline void place(struct ivy_timer_slot *v, uint32_t i, struct ivy_timer_slot e)
{
    v[i] = e;
    e.tm->index = i;
}

static void sift_up(struct ivy_timer_slot *v, uint32_t i, struct ivy_timer_slot e)
{
    while (i > 0) {
        uint32_t p = (i - 1) / ARITY;
        if (v[p].deadline <= e.deadline) break;
        place(v, i, v[p]);
        i = p;
    }
    place(v, i, e);
}

static void sift_down(struct ivy_timer_slot *v, uint32_t n, uint32_t i, struct ivy_timer_slot e)
{
    for (;;) {
        uint32_t c = i * ARITY + 1, best = c;
        if (c >= n) break;
        uint64_t bd = v[c].deadline;
        if (IVY_LIKELY(c + ARITY <= n)) {
            /*
             * Whichever child wins, its children lie in the next four lines (the grandchildren
             * of i are contiguous): ask for them now, so a deep sift does not wait on one cache
             * miss per level in turn.
             */
            struct ivy_timer_slot *g = &v[c * ARITY + 1];
            if (c * ARITY + 1 < n) {
                __builtin_prefetch(g);
                __builtin_prefetch(g + 4);
                __builtin_prefetch(g + 8);
                __builtin_prefetch(g + 12);
            }
            /* Full group, the common case: compare without bounds checks. */
            for (uint32_t k = c + 1; k < c + ARITY; k++) {
                if (v[k].deadline < bd) {
                    best = k;
                    bd = v[k].deadline;
                }
            }
        } else {
            for (uint32_t k = c + 1; k < n; k++) {
                if (v[k].deadline < bd) {
                    best = k;
                    bd = v[k].deadline;
                }
            }
        }
        if (bd >= e.deadline) break;
        place(v, i, v[best]);
        i = best;
    }
    place(v, i, e);
}

static int grow(struct ivy_timer_heap *h)
{
    uint32_t cap = h->cap ? h->cap * 2 : 256;
    void *mem;
    if (posix_memalign(&mem, 64, ((size_t)cap + PAD) * sizeof *h->v) != 0) return -ENOMEM;
    struct ivy_timer_slot *v = (struct ivy_timer_slot *)mem + PAD;
    if (h->v) {
        memcpy(v, h->v, (size_t)h->n * sizeof *v);
        free(h->v - PAD);
    }
    h->v = v;
    h->cap = cap;
    return 0;
}

int ivy__timer_add(struct ivy_timer_heap *h, struct ivy_timer *tm)
{
    if (IVY_UNLIKELY(h->n == h->cap) && grow(h) < 0) return -ENOMEM;
    sift_up(h->v, h->n++, (struct ivy_timer_slot){tm->deadline, tm});
    return 0;
}

void ivy__timer_cancel(struct ivy_timer_heap *h, struct ivy_timer *tm)
{
    uint32_t i = tm->index;
    if (i == IVY_TIMER_IDLE) return;
    tm->index = IVY_TIMER_IDLE;
    struct ivy_timer_slot last = h->v[--h->n];
    if (i == h->n) return;
    /* The last entry fills the hole and moves whichever way its deadline says. */
    if (i > 0 && last.deadline < h->v[(i - 1) / ARITY].deadline)
        sift_up(h->v, i, last);
    else
        sift_down(h->v, h->n, i, last);
}

unsigned ivy__timer_fire_due(struct ivy_timer_heap *h, uint64_t now)
{
    unsigned fired = 0;
    while (h->n && h->v[0].deadline <= now) {
        struct ivy_timer *tm = h->v[0].tm;
        ivy__timer_cancel(h, tm);
        tm->fire(tm);
        fired++;
    }
    return fired;
}

void ivy__timer_heap_free(struct ivy_timer_heap *h)
{
    if (h->v) free(h->v - PAD);
    *h = (struct ivy_timer_heap){0};
}
