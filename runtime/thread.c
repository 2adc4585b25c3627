/*
 * Green threads: spawn, join, kill, link, sleep.
 *
 * A green thread's struct lives beside its greenlet at the top of its stack, so spawning costs
 * a pooled stack and no allocation. The greenlet's parent is the hub, so when fn returns the
 * hub's pending switch returns fn's value; the hub then records it, runs the links, wakes the
 * joiner, and frees a detached thread's stack at once. A joinable one is freed by ivy_join.
 */
#include "hub_impl.h"
#include "seconds.h"

#include <math.h>
#include <stdlib.h>

struct ivy_link {
    struct ivy_link *next;
    void (*cb)(ivy_thread *t, void *value, int err, void *arg);
    void *arg;
};

static void *thread_main(void *arg)
{
    ivy_thread *t = arg;
    return t->fn(t->arg);
}

static void start_timer_fired(struct ivy_timer *tm)
{
    ivy_thread *t = (ivy_thread *)((char *)tm - offsetof(ivy_thread, timer));
    ivy__ready(t, 0);
}

static ivy_thread *spawn(double delay, ivy_fn fn, void *arg, bool detached)
{
    struct ivy_hub *h = ivy__hub();
    if (!h) return NULL; /* errno from ivy_hub_init's failure is in the message printed */
    if (!fn) {
        errno = EINVAL;
        return NULL;
    }
    ivy_thread *t;
    ivy_greenlet *g = ivy__greenlet_new_ex(thread_main, h->g, 0, sizeof *t, (void **)&t);
    if (!g) return NULL;
    t->g = g;
    t->fn = fn;
    t->arg = arg;
    t->id = ++h->next_id;
    t->detached = detached;
    t->timer.index = IVY_TIMER_IDLE;
    h->stats.threads_alive++;
    h->stats.threads_spawned++;
    if (delay > 0) {
        t->state = IVY_T_WAITING_START;
        t->timer.fire = start_timer_fired;
        t->timer.deadline = ivy__deadline_after(ivy_now_ns(), delay);
        if (ivy__timer_add(&h->timers, &t->timer) < 0) {
            h->stats.threads_alive--;
            ivy_greenlet_free(g);
            errno = ENOMEM;
            return NULL;
        }
    } else {
        ivy__ready(t, 0);
    }
    return t;
}

ivy_thread *ivy_spawn(ivy_fn fn, void *arg)
{
    return spawn(0, fn, arg, false);
}

int ivy_spawn_n(ivy_fn fn, void *arg)
{
    return spawn(0, fn, arg, true) ? 0 : -errno;
}

ivy_thread *ivy_spawn_after(double seconds, ivy_fn fn, void *arg)
{
    if (!(seconds >= 0)) { /* NaN too */
        errno = EINVAL;
        return NULL;
    }
    return spawn(seconds, fn, arg, false);
}

static void free_thread(ivy_thread *t)
{
    ivy_greenlet_free(t->g); /* t lives in g's stack: gone after this */
}

void ivy__thread_finished(struct ivy_hub *h, ivy_thread *t, void *value, int err)
{
    ivy__timeout_end_all(h, t); /* a scope left open would arm a timer into a dead stack */
    t->state = IVY_T_DONE;
    t->value = value;
    t->err = err;
    h->stats.threads_alive--;
    for (struct ivy_link *l = t->links, *next; l; l = next) {
        next = l->next;
        l->cb(t, value, err, l->arg);
        free(l);
    }
    t->links = NULL;
    if (t->joiner) {
        ivy_thread *j = t->joiner;
        t->joiner = NULL;
        j->interrupt = NULL;
        ivy__ready(j, 0);
    }
    if (t->detached) free_thread(t);
}

ivy_thread *ivy_self(void)
{
    return ivy__self();
}

uint64_t ivy_thread_id(const ivy_thread *t)
{
    return t->id;
}

void ivy_thread_set_name(ivy_thread *t, const char *name)
{
    t->name = name;
    ivy_greenlet_set_name(t->g, name);
}

const char *ivy_thread_name(const ivy_thread *t)
{
    return t->name;
}

bool ivy_thread_done(const ivy_thread *t)
{
    return t->state == IVY_T_DONE;
}

static void join_interrupt(ivy_thread *self, int err)
{
    ivy_thread *t = self->wait_obj;
    t->joiner = NULL;
    self->interrupt = NULL;
    ivy__ready(self, err);
}

int ivy_join(ivy_thread *t, void **result)
{
    if (!t) return -EINVAL;
    if (t->state != IVY_T_DONE) {
        ivy_thread *self = ivy__self();
        int rc = ivy__blocking_check(self);
        if (rc < 0) return rc;
        if (t == self) return -EDEADLK;
        if (t->joiner || t->detached) return -EINVAL;
        t->joiner = self;
        self->wait_obj = t;
        self->interrupt = join_interrupt;
        rc = ivy__park(self);
        if (rc < 0) return rc;
    }
    int err = t->err;
    if (result) *result = err ? NULL : t->value;
    free_thread(t);
    return err;
}

void ivy_detach(ivy_thread *t)
{
    if (t->state == IVY_T_DONE)
        free_thread(t);
    else
        t->detached = true;
}

int ivy_kill(ivy_thread *t)
{
    struct ivy_hub *h = ivy__hub_tls;
    if (!t) return -EINVAL;
    if (t->state == IVY_T_DONE) return 0;
    if (t == ivy__self()) return -EDEADLK;
    t->killed = true;
    if (t->state == IVY_T_WAITING_START) {
        ivy__timer_cancel(&h->timers, &t->timer);
        ivy__ready(t, 0); /* the hub finishes it without running it */
    } else {
        ivy__interrupt(t, -ECANCELED);
    }
    return 0;
}

int ivy_link(ivy_thread *t, void (*cb)(ivy_thread *, void *, int, void *), void *arg)
{
    if (!t || !cb) return -EINVAL;
    if (t->state == IVY_T_DONE) {
        cb(t, t->value, t->err, arg);
        return 0;
    }
    struct ivy_link *l = malloc(sizeof *l);
    if (!l) return -ENOMEM;
    *l = (struct ivy_link){t->links, cb, arg};
    t->links = l;
    return 0;
}

/* ---- sleep ------------------------------------------------------------------------------ */

static void sleep_fired(struct ivy_timer *tm)
{
    ivy_thread *t = (ivy_thread *)((char *)tm - offsetof(ivy_thread, timer));
    t->interrupt = NULL;
    ivy__ready(t, 0);
}

static void sleep_interrupt(ivy_thread *t, int err)
{
    ivy__timer_cancel(&ivy__hub_tls->timers, &t->timer);
    t->interrupt = NULL;
    ivy__ready(t, err);
}

int ivy_sleep(double seconds)
{
    ivy_thread *t = ivy__self();
    int rc = ivy__blocking_check(t);
    if (rc < 0) return rc;
    if (isnan(seconds)) return -EINVAL;
    if (seconds <= 0) {
        ivy__ready(t, 0); /* to the back of the queue: everyone ready runs first */
        return ivy__park(t);
    }
    struct ivy_hub *h = ivy__hub_tls;
    t->timer.fire = sleep_fired;
    t->timer.deadline = ivy__deadline_after(ivy_now_ns(), seconds);
    rc = ivy__timer_add(&h->timers, &t->timer);
    if (rc < 0) return rc;
    t->interrupt = sleep_interrupt;
    return ivy__park(t);
}
