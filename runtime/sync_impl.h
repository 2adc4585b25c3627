/*
 * Internals shared by the sync primitives and pools: a counted FIFO of parked threads, each
 * waiting with a hand-off slot, and the one timed wait they all use (wait.c).
 *
 * Hand-off protocol: a waker takes the first waiter off the FIFO (ivy__wake), moves the item or
 * unit through its slot and readies it; from then on the waiter owns what it was given, since
 * a kill or an expiry only interrupts threads still parked. A woken waiter never touches the
 * object again, so the object may be freed as soon as nobody is parked on it.
 */
#ifndef IVY_SYNC_IMPL_H
#define IVY_SYNC_IMPL_H

#include "hub_impl.h"
#include "ivy/sync.h"

struct ivy_waiters {
    struct ivy_waitq q;
    size_t n;
};

/* What a parked thread's wait_obj points to; lives on the waiter's stack. */
struct ivy_wait {
    struct ivy_waiters *ws;
    void **slot;
    bool timed; /* the thread's own timer is armed for this wait */
};

/*
 * Entry check of every blocking call: -EINVAL for a NaN timeout; in a green thread -ECANCELED
 * or -ETIMEDOUT if it was killed or its scope expired. *self is NULL outside a green thread.
 */
int ivy__sync_enter(double timeout, ivy_thread **self);

/*
 * Parks self on ws until a waker readies it (returns the waker's value) or it is interrupted:
 * -ECANCELED (kill), -ETIMEDOUT (scope or `timeout` seconds; < 0 waits forever, 0 fails at
 * once). -EPERM when self is NULL. The waker reads or writes *slot.
 */
int ivy__wait(struct ivy_waiters *ws, ivy_thread *self, double timeout, void **slot);

/* Takes the first waiter off ws and readies it with value; NULL when none waits. */
ivy_thread *ivy__wake(struct ivy_waiters *ws, int value);

static inline void **ivy__wait_slot(ivy_thread *t)
{
    return ((struct ivy_wait *)t->wait_obj)->slot;
}

#endif
