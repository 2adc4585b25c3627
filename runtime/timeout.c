/*
 * Scoped deadlines, eventlet's Timeout as a context.
 *
 * A scope arms a timer for the calling thread. When it fires, the scope is marked expired,
 * the thread's count of expired open scopes goes up (so every later blocking call fails fast
 * with -ETIMEDOUT), and a thread parked at that moment is interrupted. Nested scopes each keep
 * their own timer, so the earliest one fires first; ending a scope disarms it.
 */
#include "hub_impl.h"
#include "seconds.h"

#include <math.h>

struct ivy_deadline {
    struct ivy_timer timer;
    ivy_thread *t;
    struct ivy_deadline *outer;
    bool expired;
};

_Static_assert(sizeof(struct ivy_deadline) <= sizeof(struct ivy_timeout),
               "struct ivy_timeout must hold a struct ivy_deadline");

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
    struct ivy_deadline *d = (struct ivy_deadline *)to;
    *d = (struct ivy_deadline){.t = t, .outer = t->deadline};
    d->timer.index = IVY_TIMER_IDLE;
    d->timer.fire = deadline_fired;
    d->timer.deadline = ivy__deadline_after(ivy_now_ns(), seconds);
    int rc = ivy__timer_add(&ivy__hub_tls->timers, &d->timer);
    if (rc < 0) return rc;
    t->deadline = d;
    return 0;
}

int ivy_timeout_end(struct ivy_timeout *to)
{
    struct ivy_deadline *d = (struct ivy_deadline *)to;
    ivy_thread *t = d->t;
    if (!t || t != ivy__self() || t->deadline != d) return -EINVAL;
    ivy__timer_cancel(&ivy__hub_tls->timers, &d->timer);
    t->deadline = d->outer;
    d->t = NULL;
    if (!d->expired) return 0;
    t->timedout--;
    return -ETIMEDOUT;
}
