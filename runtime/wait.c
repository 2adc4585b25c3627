/*
 * The timed wait under every sync primitive and pool.
 *
 * A per-call timeout arms the waiting thread's own timer (struct ivy_thread.timer, idle while
 * the thread runs: only sleep and spawn_after use it, never during another wait), so it costs
 * no scope, leaves t->timedout alone and ends with the wait. Kill, a scope's expiry and that
 * timer all come in through t->interrupt, which only fires while the thread is still parked:
 * once a waker has readied it, the hand-off stands.
 */
#include "sync_impl.h"
#include "seconds.h"

#include <math.h>

/* Beyond this a timeout is forever (no timer armed at all). */
#define FOREVER_S 1e9

int ivy__sync_enter(double timeout, ivy_thread **self)
{
    if (isnan(timeout)) return -EINVAL;
    ivy_thread *t = ivy__self();
    *self = t;
    return t ? ivy__blocking_check(t) : 0;
}

static void wait_interrupt(ivy_thread *t, int err)
{
    struct ivy_wait *w = t->wait_obj;
    ivy__waitq_remove(&w->ws->q, t);
    w->ws->n--;
    if (w->timed) ivy__timer_cancel(&ivy__hub_tls->timers, &t->timer);
    t->interrupt = NULL;
    ivy__ready(t, err);
}

static void wait_timer_fired(struct ivy_timer *tm)
{
    ivy_thread *t = (ivy_thread *)((char *)tm - offsetof(ivy_thread, timer));
    ivy__interrupt(t, -ETIMEDOUT);
}

int ivy__wait(struct ivy_waiters *ws, ivy_thread *self, double timeout, void **slot)
{
    if (!self) return -EPERM;
    if (timeout == 0) return -ETIMEDOUT;
    struct ivy_wait w = {ws, slot, timeout > 0 && timeout < FOREVER_S};
    if (w.timed) {
        uint64_t ns = ivy__seconds_ns(timeout);
        self->timer.fire = wait_timer_fired;
        self->timer.deadline = ivy_now_ns() + (ns ? ns : 1);
        int rc = ivy__timer_add(&ivy__hub_tls->timers, &self->timer);
        if (rc < 0) return rc;
    }
    ivy__waitq_push(&ws->q, self);
    ws->n++;
    self->wait_obj = &w;
    self->interrupt = wait_interrupt;
    int rc = ivy__park(self);
    if (w.timed) ivy__timer_cancel(&ivy__hub_tls->timers, &self->timer);
    return rc;
}

ivy_thread *ivy__wake(struct ivy_waiters *ws, int value)
{
    ivy_thread *t = ivy__waitq_pop(&ws->q);
    if (!t) return NULL;
    ws->n--;
    t->interrupt = NULL;
    ivy__ready(t, value);
    return t;
}
