/*
 * Event: a flag green threads wait for.
 *
 * Invariant: threads wait only while the flag is clear; set wakes them all at once, in the
 * order they came, each with 0, so a clear that follows before they run takes nothing back.
 */
#include "sync_impl.h"

#include <stdlib.h>

struct ivy_event {
    struct ivy_waiters waiters;
    bool set;
};

ivy_event *ivy_event_new(void)
{
    return calloc(1, sizeof(ivy_event));
}

int ivy_event_free(ivy_event *e)
{
    if (!e) return 0;
    if (e->waiters.n) return -EBUSY;
    free(e);
    return 0;
}

int ivy_event_set(ivy_event *e)
{
    if (!e) return -EINVAL;
    e->set = true;
    int woken = 0;
    while (ivy__wake(&e->waiters, 0))
        woken++;
    return woken;
}

int ivy_event_clear(ivy_event *e)
{
    if (!e) return -EINVAL;
    e->set = false;
    return 0;
}

bool ivy_event_is_set(const ivy_event *e)
{
    return e && e->set;
}

int ivy_event_wait(ivy_event *e, double timeout)
{
    if (!e) return -EINVAL;
    ivy_thread *self;
    int rc = ivy__sync_enter(timeout, &self);
    if (rc < 0) return rc;
    if (e->set) return 0;
    return ivy__wait(&e->waiters, self, timeout, NULL);
}
