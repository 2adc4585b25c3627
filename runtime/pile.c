/*
 * GreenPile: jobs run in a GreenPool; their results are collected in spawn order.
 *
 * Each job has a record in a FIFO, filled by a link callback when the job ends (however it
 * ends, so a killed job still yields a result and next never waits forever). Invariants:
 * - callers of next wait only while the oldest record is not done: when it completes, the
 *   callback hands it to the first of them, then keeps going while the new oldest is done;
 * - each waiting next has claimed one record (records - waiters.n are free to claim), so
 *   -ENOENT is exact even with several collectors.
 */
#include "sync_impl.h"

#include <stdlib.h>

struct job {
    struct job *next;
    ivy_pile *pile;
    void *value;
    bool done;
};

struct ivy_pile {
    ivy_pool *pool;
    bool own_pool;
    struct job *head, *tail;
    size_t records, running;
    size_t spawning; /* threads in ivy_pile_spawn, which touch the pile when they resume */
    struct ivy_waiters waiters;
};

ivy_pile *ivy_pile_new(ivy_pool *pool, unsigned size)
{
    ivy_pile *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->pool = pool;
    if (!pool) {
        p->pool = ivy_pool_new(size ? size : 1000);
        p->own_pool = true;
        if (!p->pool) {
            free(p);
            return NULL;
        }
    }
    return p;
}

int ivy_pile_free(ivy_pile *p)
{
    if (!p) return 0;
    if (p->running || p->spawning || p->waiters.n) return -EBUSY;
    for (struct job *j = p->head, *next; j; j = next) {
        next = j->next;
        free(j);
    }
    if (p->own_pool) ivy_pool_free(p->pool);
    free(p);
    return 0;
}

static void *pop_head(ivy_pile *p)
{
    struct job *j = p->head;
    void *value = j->value;
    p->head = j->next;
    if (!p->head) p->tail = NULL;
    p->records--;
    free(j);
    return value;
}

static void job_done(ivy_thread *t, void *value, int err, void *arg)
{
    struct job *j = arg;
    ivy_pile *p = j->pile;
    j->value = err ? ivy_err_ptr(err) : value;
    j->done = true;
    p->running--;
    while (p->head && p->head->done && p->waiters.n) {
        ivy_thread *w = ivy__wake(&p->waiters, 0);
        *ivy__wait_slot(w) = pop_head(p);
    }
}

int ivy_pile_spawn(ivy_pile *p, ivy_fn fn, void *arg)
{
    if (!p || !fn) return -EINVAL;
    struct job *j = calloc(1, sizeof *j);
    if (!j) return -ENOMEM;
    j->pile = p;
    ivy_thread *t;
    p->spawning++;
    int rc = ivy_pool_spawn(p->pool, fn, arg, &t);
    p->spawning--;
    if (rc < 0) {
        free(j);
        return rc;
    }
    rc = ivy_link(t, job_done, j);
    if (rc < 0) {
        ivy_kill(t); /* not started: it never runs, and the pool gets its slot back */
        ivy_detach(t);
        free(j);
        return rc;
    }
    ivy_detach(t);
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    p->records++;
    p->running++;
    return 0;
}

int ivy_pile_next(ivy_pile *p, void **value, double timeout)
{
    if (!p || !value) return -EINVAL;
    ivy_thread *self;
    int rc = ivy__sync_enter(timeout, &self);
    if (rc < 0) return rc;
    if (p->records <= p->waiters.n) return -ENOENT;
    if (p->head->done && !p->waiters.n) {
        *value = pop_head(p);
        return 0;
    }
    return ivy__wait(&p->waiters, self, timeout, value);
}
