/*
 * Readiness through the ring: one IORING_OP_POLL_ADD per descriptor, all owned by a poll set on
 * the waiting thread's stack.
 *
 * The first completion that reports an event (or the timer, a kill, a deadline) wakes the
 * thread; it then cancels the requests still armed and parks once more until the last of them
 * has answered, since every request points into its stack. While it drains, nothing interrupts
 * it (t->interrupt is NULL): a kill or an expired deadline is remembered by the thread itself
 * and fails its next blocking call. A per-call timeout uses the thread's own timer, idle
 * during any wait (as in runtime/wait.c).
 */
#include "poll_impl.h"

#include <math.h>
#include <stdlib.h>

/* Beyond this a timeout is forever; also keeps seconds * 1e9 inside int64_t. */
#define FOREVER_S 1e9
/* t->wake's value when the call's own timeout fired: not an error, poll returns the count. */
#define OWN_TIMEOUT 1

struct preq {
    struct ivy_completion c;
    struct pset *set;
    unsigned i;
    bool armed;
};

struct pset {
    ivy_thread *t;
    struct pollfd *fds;
    struct preq *reqs;
    unsigned armed; /* requests in flight */
    unsigned ready; /* descriptors with revents != 0 */
    bool woken;     /* t has been readied (or is draining) */
    bool draining;  /* t waits for the last completion */
};

static void wake(struct pset *s, int value)
{
    s->woken = true;
    s->t->interrupt = NULL;
    ivy__ready(s->t, value);
}

static void preq_complete(struct ivy_completion *c, int res, uint32_t flags)
{
    struct preq *r = (struct preq *)c;
    struct pset *s = r->set;
    struct pollfd *p = &s->fds[r->i];
    ivy__hub_tls->stats.inflight--;
    r->armed = false;
    s->armed--;
    short rev;
    if (res >= 0)
        rev = (short)(res & (p->events | POLLERR | POLLHUP | POLLNVAL));
    else
        rev = res == -ECANCELED ? 0 : res == -EBADF ? POLLNVAL : POLLERR;
    p->revents = rev;
    if (rev) s->ready++;
    if (s->draining) {
        if (!s->armed) ivy__ready(s->t, 0);
    } else if (!s->woken && rev) {
        wake(s, 0);
    }
}

/* Kill, deadline or the call's own timer, while the thread waits for its first event. */
static void pset_interrupt(ivy_thread *t, int err)
{
    wake(t->wait_obj, err);
}

static void poll_timer_fired(struct ivy_timer *tm)
{
    ivy_thread *t = (ivy_thread *)((char *)tm - offsetof(ivy_thread, timer));
    ivy__interrupt(t, OWN_TIMEOUT);
}

static int sleep_ns(int64_t ns)
{
    int rc = ivy_sleep((double)ns / 1e9);
    return rc < 0 ? rc : 0;
}

int ivy__poll_ns(struct pollfd *fds, unsigned n, int64_t timeout_ns)
{
    ivy_thread *t = ivy__self();
    int rc = ivy__blocking_check(t);
    if (rc < 0) return rc;
    if (n && !fds) return -EINVAL;
    enum { ON_STACK = 8 };
    struct preq local[ON_STACK], *reqs = local;
    if (n > ON_STACK && !(reqs = malloc((size_t)n * sizeof *reqs))) return -ENOMEM;
    struct ivy_hub *h = ivy__hub_tls;
    struct pset s = {.t = t, .fds = fds, .reqs = reqs};
    for (unsigned i = 0; i < n; i++) {
        fds[i].revents = 0;
        reqs[i] = (struct preq){.c.complete = preq_complete, .set = &s, .i = i};
        if (fds[i].fd < 0) continue;
        struct io_uring_sqe *sqe = ivy__sqe(h);
        unsigned mask = (unsigned short)fds[i].events | POLLERR | POLLHUP;
        io_uring_prep_poll_add(sqe, fds[i].fd, mask);
        io_uring_sqe_set_data(sqe, &reqs[i]);
        reqs[i].armed = true;
        s.armed++;
        h->stats.inflight++;
    }
    if (!s.armed) {
        if (reqs != local) free(reqs);
        if (timeout_ns < 0) return -EINVAL; /* nothing could ever end the wait */
        return sleep_ns(timeout_ns);
    }
    bool timed = timeout_ns >= 0;
    if (timed) {
        t->timer.fire = poll_timer_fired;
        t->timer.deadline = ivy_now_ns() + (uint64_t)timeout_ns;
        rc = ivy__timer_add(&h->timers, &t->timer);
        if (rc < 0) timed = false; /* out of memory: the requests are armed, so wait unbounded */
    }
    t->wait_obj = &s;
    t->interrupt = pset_interrupt;
    int woke = ivy__park(t);
    if (timed) ivy__timer_cancel(&h->timers, &t->timer);
    if (s.armed) {
        for (unsigned i = 0; i < n; i++) {
            if (!reqs[i].armed) continue;
            struct io_uring_sqe *sqe = ivy__sqe(h);
            io_uring_prep_cancel(sqe, &reqs[i], 0);
            io_uring_sqe_set_data(sqe, NULL);
        }
        s.draining = true;
        ivy__park(t);
    }
    if (reqs != local) free(reqs);
    if (woke < 0) return woke;
    return (int)s.ready;
}

static int64_t seconds_ns(double timeout)
{
    return timeout < 0 || timeout >= FOREVER_S ? -1 : (int64_t)(timeout * 1e9);
}

int ivy_poll(struct pollfd *fds, unsigned n, double timeout)
{
    if (isnan(timeout) || (n && !fds)) return -EINVAL;
    if (timeout == 0) {
        int rc = poll(fds, n, 0);
        return rc < 0 ? -errno : rc;
    }
    return ivy__poll_ns(fds, n, seconds_ns(timeout));
}

int ivy_wait_fd(int fd, short events, double timeout)
{
    if (fd < 0) return -EBADF;
    struct pollfd p = {.fd = fd, .events = events};
    int rc = ivy_poll(&p, 1, timeout);
    return rc > 0 ? p.revents : rc;
}
