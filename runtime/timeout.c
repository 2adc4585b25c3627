/*
 * Scoped deadlines, eventlet's Timeout as a context.
 *
 * A scope arms a timer for the calling thread. When it fires, the scope is marked expired,
 * the thread's count of expired open scopes goes up (so every later blocking call fails fast
 * with -ETIMEDOUT), and a thread parked at that moment is interrupted. Nested scopes each keep
 * their own timer, so the earliest one fires first; ending a scope disarms it.
 *
 * A scope's state (its timer above all) lives in a record the hub owns, not in the caller's
 * struct ivy_timeout, which only names the scope: misuse must not leave the timer heap pointing
 * into a stack frame that is gone. A thread that finishes with scopes open has them ended
 * (ivy__timeout_end_all), and ending a scope out of order ends it and every scope opened after
 * it, so no record outlives its thread. Records are recycled through a per-hub free list: after
 * warm-up a scope costs no allocation. ivy_timeout_end finds its record by the struct's address,
 * innermost first, so ending in order reads one record and never the caller's struct.
 */
#include "hub_impl.h"
#include "seconds.h"

#include <math.h>
#include <stdlib.h>

struct ivy_deadline {
    struct ivy_timer timer;
    ivy_thread *t;
    const struct ivy_timeout *scope; /* the caller's struct: what ivy_timeout_end names */
    struct ivy_deadline *outer;      /* the enclosing scope, or the next free record */
    bool expired;
};

static void deadline_fired(struct ivy_timer *tm)
{
    struct ivy_deadline *d = (struct ivy_deadline *)tm;
    d->expired = true;
    d->t->timedout++;
    ivy__interrupt(d->t, -ETIMEDOUT);
}

int ivy_timeout_begin(struct ivy_timeout *to, double seconds)
{
    ivy_thread *t = ivy__self();
    if (!t) return -EPERM;
    if (isnan(seconds) || seconds < 0) return -EINVAL;
    struct ivy_hub *h = ivy__hub_tls;
    struct ivy_deadline *d = h->free_deadlines;
    if (d)
        h->free_deadlines = d->outer;
    else if (!(d = malloc(sizeof *d)))
        return -ENOMEM;
    *d = (struct ivy_deadline){.t = t, .scope = to, .outer = t->deadline};
    d->timer.index = IVY_TIMER_IDLE;
    d->timer.fire = deadline_fired;
    d->timer.deadline = ivy__deadline_after(ivy_now_ns(), seconds);
    int rc = ivy__timer_add(&h->timers, &d->timer);
    if (rc < 0) {
        d->outer = h->free_deadlines;
        h->free_deadlines = d;
        return rc;
    }
    t->deadline = d;
    return 0;
}

/* Ends t's innermost scope; true if it had expired. */
static bool end_innermost(struct ivy_hub *h, ivy_thread *t)
{
    struct ivy_deadline *d = t->deadline;
    ivy__timer_cancel(&h->timers, &d->timer);
    t->deadline = d->outer;
    if (d->expired) t->timedout--;
    d->outer = h->free_deadlines;
    h->free_deadlines = d;
    return d->expired;
}

int ivy_timeout_end(struct ivy_timeout *to)
{
    ivy_thread *t = ivy__self();
    if (!t) return -EINVAL;
    struct ivy_hub *h = ivy__hub_tls;
    struct ivy_deadline *d = t->deadline;
    if (IVY_LIKELY(d && d->scope == to)) return end_innermost(h, t) ? -ETIMEDOUT : 0;
    while (d && d->scope != to)
        d = d->outer;
    if (!d) return -EINVAL; /* ended already, never begun, or another thread's */
    /* Out of order: the scopes opened inside this one cannot outlive it. */
    while (t->deadline != d)
        end_innermost(h, t);
    end_innermost(h, t);
    return -EINVAL;
}

void ivy__timeout_end_all(struct ivy_hub *h, ivy_thread *t)
{
    while (t->deadline)
        end_innermost(h, t);
}

void ivy__timeout_hub_free(struct ivy_hub *h)
{
    for (struct ivy_deadline *d = h->free_deadlines, *next; d; d = next) {
        next = d->outer;
        free(d);
    }
    h->free_deadlines = NULL;
}
