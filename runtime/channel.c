/*
 * Channel: an unbuffered rendezvous, stackless's channel. An item passes from a sender to a
 * receiver directly; nothing is stored.
 *
 * Invariant: senders and receivers never wait at the same time, since whichever side arrives
 * second completes the exchange at once with the first waiter of the other side. The waiter
 * is readied and the arriving side carries on (stackless's default preference for the
 * receiver is not kept: with a run queue, readying is the fair equivalent).
 */
#include "sync_impl.h"

#include <stdlib.h>

struct ivy_channel {
    struct ivy_waiters senders, receivers;
};

ivy_channel *ivy_channel_new(void)
{
    return calloc(1, sizeof(ivy_channel));
}

int ivy_channel_free(ivy_channel *c)
{
    if (!c) return 0;
    if (c->senders.n || c->receivers.n) return -EBUSY;
    free(c);
    return 0;
}

int ivy_channel_send(ivy_channel *c, void *item, double timeout)
{
    if (!c) return -EINVAL;
    ivy_thread *self;
    int rc = ivy__sync_enter(timeout, &self);
    if (rc < 0) return rc;
    ivy_thread *t = ivy__wake(&c->receivers, 0);
    if (t) {
        *ivy__wait_slot(t) = item;
        return 0;
    }
    return ivy__wait(&c->senders, self, timeout, &item);
}

int ivy_channel_receive(ivy_channel *c, void **item, double timeout)
{
    if (!c || !item) return -EINVAL;
    ivy_thread *self;
    int rc = ivy__sync_enter(timeout, &self);
    if (rc < 0) return rc;
    ivy_thread *t = ivy__wake(&c->senders, 0);
    if (t) {
        *item = *ivy__wait_slot(t);
        return 0;
    }
    return ivy__wait(&c->receivers, self, timeout, item);
}

long ivy_channel_balance(const ivy_channel *c)
{
    return c ? (long)c->senders.n - (long)c->receivers.n : 0;
}
