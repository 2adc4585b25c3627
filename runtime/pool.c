/*
 * GreenPool: runs at most `size` green threads at once; spawn waits (FIFO) for a free slot.
 *
 * `running` counts slots taken: threads started in the pool and not finished, plus slots a
 * finishing thread handed to a woken spawner that has not started its thread yet. A thread
 * gives its slot back from a link callback, which runs in the hub on every kind of exit
 * (return, error, killed before it started), so no slot leaks. Invariant: spawners wait only
 * while running >= size; waitall waiters only while running > 0.
 */
#include "sync_impl.h"

#include <stdlib.h>

struct ivy_pool {
    unsigned size, running;
    struct ivy_waiters spawners, idle;
};

ivy_pool *ivy_pool_new(unsigned size)
{
    if (!size) {
        errno = EINVAL;
        return NULL;
    }
    ivy_pool *p = calloc(1, sizeof *p);
    if (p) p->size = size;
    return p;
}

int ivy_pool_free(ivy_pool *p)
{
    if (!p) return 0;
    if (p->running || p->spawners.n || p->idle.n) return -EBUSY;
    free(p);
    return 0;
}

/* A slot comes free: to the first spawner if the bound allows, else back to the pool. */
static void release_slot(ivy_pool *p)
{
    if (p->running <= p->size && ivy__wake(&p->spawners, 0)) return;
    if (--p->running == 0)
        while (ivy__wake(&p->idle, 0)) {
        }
}

static void job_done(ivy_thread *t, void *value, int err, void *arg)
{
    release_slot(arg);
}

int ivy_pool_spawn(ivy_pool *p, ivy_fn fn, void *arg, ivy_thread **out)
{
    if (!p || !fn) return -EINVAL;
    ivy_thread *self;
    int rc = ivy__sync_enter(-1, &self);
    if (rc < 0) return rc;
    if (p->running < p->size) {
        p->running++;
    } else {
        rc = ivy__wait(&p->spawners, self, -1, NULL);
        if (rc < 0) return rc; /* woken with 0: the slot is ours */
    }
    errno = 0;
    ivy_thread *t = ivy_spawn(fn, arg);
    if (!t) {
        rc = errno ? -errno : -ENOMEM;
        release_slot(p);
        return rc;
    }
    rc = ivy_link(t, job_done, p);
    if (rc < 0) {
        ivy_kill(t); /* not started: it never runs */
        ivy_detach(t);
        release_slot(p);
        return rc;
    }
    if (out)
        *out = t;
    else
        ivy_detach(t);
    return 0;
}

int ivy_pool_waitall(ivy_pool *p)
{
    if (!p) return -EINVAL;
    ivy_thread *self;
    int rc = ivy__sync_enter(-1, &self);
    if (rc < 0) return rc;
    if (!p->running) return 0;
    return ivy__wait(&p->idle, self, -1, NULL);
}

int ivy_pool_resize(ivy_pool *p, unsigned size)
{
    if (!p || !size) return -EINVAL;
    p->size = size;
    while (p->running < p->size && ivy__wake(&p->spawners, 0))
        p->running++;
    return 0;
}

unsigned ivy_pool_running(const ivy_pool *p)
{
    return p ? p->running : 0;
}

unsigned ivy_pool_available(const ivy_pool *p)
{
    return p && p->running < p->size ? p->size - p->running : 0;
}
