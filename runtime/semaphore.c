/*
 * Semaphore and BoundedSemaphore: one type, a bound of INT_MAX meaning unbounded.
 *
 * Invariant: value > 0 only while nobody waits. A release with waiters hands its unit to the
 * first of them directly instead of raising value, so an acquirer arriving between that
 * release and the waiter's resumption finds 0 and queues behind it: FIFO-fair, no barging.
 */
#include "sync_impl.h"

#include <limits.h>
#include <stdlib.h>

struct ivy_semaphore {
    struct ivy_waiters waiters;
    int value;
    int bound;
};

static ivy_semaphore *semaphore_new(unsigned value, bool bounded)
{
    if (value > INT_MAX) {
        errno = EINVAL;
        return NULL;
    }
    ivy_semaphore *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->value = (int)value;
    s->bound = bounded ? (int)value : INT_MAX;
    return s;
}

ivy_semaphore *ivy_semaphore_new(unsigned value)
{
    return semaphore_new(value, false);
}

ivy_semaphore *ivy_bounded_semaphore_new(unsigned value)
{
    return semaphore_new(value, true);
}

int ivy_semaphore_free(ivy_semaphore *s)
{
    if (!s) return 0;
    if (s->waiters.n) return -EBUSY;
    free(s);
    return 0;
}

int ivy_semaphore_try_acquire(ivy_semaphore *s)
{
    if (!s) return -EINVAL;
    if (s->value == 0) return -EAGAIN;
    s->value--;
    return 0;
}

int ivy_semaphore_acquire(ivy_semaphore *s, double timeout)
{
    if (!s) return -EINVAL;
    ivy_thread *self;
    int rc = ivy__sync_enter(timeout, &self);
    if (rc < 0) return rc;
    if (s->value > 0) {
        s->value--;
        return 0;
    }
    return ivy__wait(&s->waiters, self, timeout, NULL);
}

int ivy_semaphore_release(ivy_semaphore *s)
{
    if (!s) return -EINVAL;
    if (ivy__wake(&s->waiters, 0)) return 0;
    if (s->value >= s->bound) return -EOVERFLOW;
    s->value++;
    return 0;
}

int ivy_semaphore_value(const ivy_semaphore *s)
{
    return s ? s->value : -EINVAL;
}
