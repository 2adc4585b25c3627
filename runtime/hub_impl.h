/*
 * Hub internals shared by the scheduler, timers, sync primitives and the I/O layer.
 *
 * Parking protocol, used by every blocking call:
 *   rc = ivy__blocking_check(t);  // -EPERM outside a green thread, -ECANCELED, -ETIMEDOUT
 *   ...register t where its waker will find it...
 *   t->interrupt = fn;            // how kill or a deadline takes it back out of there
 *   rc = ivy__park(t);            // the value its waker passed to ivy__ready
 * A waker calls ivy__ready(t, value): t joins the back of the run queue. An interruption
 * (ivy_kill, an expired deadline) calls t->interrupt(t, err), which must unregister t and
 * ready it with err, or (I/O) arrange for that to happen when the ring answers.
 */
#ifndef IVY_HUB_IMPL_H
#define IVY_HUB_IMPL_H

#include "greenlet_impl.h"
#include "ivy/hub.h"

#include <errno.h>
#include <liburing.h>
#include <time.h>

/* ---- timers: a 4-ary min-heap with O(log n) insert and cancel (timer.c) ------------------- */

struct ivy_timer {
    uint64_t deadline; /* ivy_now_ns() time; set before ivy__timer_add, fixed while armed */
    uint32_t index;    /* position in the heap, IVY_TIMER_IDLE when not armed */
    void (*fire)(struct ivy_timer *tm);
};
#define IVY_TIMER_IDLE UINT32_MAX

/* A heap entry carries its timer's deadline, so sifting compares without a pointer chase. */
struct ivy_timer_slot {
    uint64_t deadline;
    struct ivy_timer *tm;
};

struct ivy_timer_heap {
    struct ivy_timer_slot *v; /* the four children of v[i] (v[4i+1..4i+4]) share a cache line */
    uint32_t n, cap;
};

int ivy__timer_add(struct ivy_timer_heap *h, struct ivy_timer *tm);
void ivy__timer_cancel(struct ivy_timer_heap *h, struct ivy_timer *tm);
/* Fires every timer due at `now`; returns how many. Timers may re-arm from fire(). */
unsigned ivy__timer_fire_due(struct ivy_timer_heap *h, uint64_t now);
static inline bool ivy__timer_armed(const struct ivy_timer *tm)
{
    return tm->index != IVY_TIMER_IDLE;
}
/* The earliest deadline; only when h->n > 0. */
static inline uint64_t ivy__timer_next(const struct ivy_timer_heap *h)
{
    return h->v[0].deadline;
}
void ivy__timer_heap_free(struct ivy_timer_heap *h);

/* ---- green threads ------------------------------------------------------------------------ */

enum ivy_tstate_kind {
    IVY_T_WAITING_START, /* spawn_after: its timer puts it on the run queue */
    IVY_T_READY,
    IVY_T_RUNNING,
    IVY_T_PARKED,
    IVY_T_DONE,
};

struct ivy_link;
struct ivy_deadline;

struct ivy_thread {
    /* What scheduling touches, in the first cache line. */
    ivy_greenlet *g;
    ivy_thread *next, *prev; /* run queue or wait queue */
    int wake;                /* what ivy__park returns */
    unsigned char state;
    bool killed, detached;
    unsigned timedout; /* expired deadline scopes still open */
    void (*interrupt)(ivy_thread *t, int err);
    void *wait_obj; /* what it is parked on, for interrupt() */
    ivy_fn fn;
    void *arg;
    void *value; /* fn's result once done */
    int err;
    uint64_t id;
    const char *name;
    struct ivy_timer timer;
    ivy_thread *joiner;
    struct ivy_link *links;
    struct ivy_deadline *deadline; /* innermost scoped deadline */
};

/* A FIFO of parked threads with O(1) removal from anywhere. */
struct ivy_waitq {
    ivy_thread *head, *tail;
};

void ivy__waitq_push(struct ivy_waitq *q, ivy_thread *t);
ivy_thread *ivy__waitq_pop(struct ivy_waitq *q);
void ivy__waitq_remove(struct ivy_waitq *q, ivy_thread *t);
/*
 * Parks the calling thread on q until ivy__waitq_wake hands it a value (>= 0 by convention) or
 * an interruption returns its error.
 */
int ivy__waitq_wait(struct ivy_waitq *q, ivy_thread *t);
/* Wakes the first waiter with value; false when none waited. */
bool ivy__waitq_wake(struct ivy_waitq *q, int value);

/* ---- the hub ------------------------------------------------------------------------------ */

/*
 * Every io_uring request's user_data points to one of these (0: ignore the completion). A request
 * whose completion can wake a thread counts in h->stats.inflight until it completes, or, for
 * one not counted there (the multishot accept), its waiters count in h->external: with both at
 * zero and nothing queued, the hub makes no system call while threads are ready, and with
 * nothing ready and no timer it reports a deadlock.
 */
struct ivy_completion {
    void (*complete)(struct ivy_completion *c, int res, uint32_t flags);
};

struct ivy_hub {
    struct io_uring ring;
    unsigned ring_flags; /* the IORING_SETUP_* flags in force */
    ivy_greenlet *g;     /* the main greenlet the loop runs in */
    ivy_thread *current; /* green thread running, NULL in the hub */
    struct {
        ivy_thread *head, *tail;
    } runq;
    ivy_thread *pass_next, *pass_last; /* the rest of the running pass (see ivy__park) */
    unsigned idle_passes;              /* passes run back to back without polling the ring */
    struct ivy_timer_heap timers;
    uint64_t next_id;
    uint64_t stall_ns;
    uint64_t slice_start;             /* coarse clock: when the running thread was resumed */
    int schedstat_fd;                 /* /proc/thread-self/schedstat, or -1 */
    uint64_t wait_mark, wait_mark_at; /* runqueue wait so far, and when (coarse) it was read */
    uint64_t coarse_slack;            /* how far the coarse clock may lag the precise one */
    struct ivy_hub_stats stats;
    uint64_t external; /* wake-ups promised from outside the ring (offload jobs running) */
    void *offload;     /* io/offload.c's pool bound to this ring; NULL until first offload */
    bool stop, in_run;
    signed char pbufs; /* provided-buffer ring for receives: 0 unknown, 1 registered, -1 none */
    int fixed_slots;   /* registered files (ivy__fixed_add): 0 not made yet, -1 none */
    struct ivy_recv_table *rtab;         /* io/recv.c: receive state by socket descriptor */
    struct ivy_deadline *free_deadlines; /* timeout.c: scope records to reuse */
    void (*on_iteration)(void *arg);     /* the cluster's heartbeat */
    void *on_iteration_arg;
};

extern __thread struct ivy_hub *ivy__hub_tls;

/* timeout.c: ends every scope t still has open (t finished); frees the spare scope records. */
void ivy__timeout_end_all(struct ivy_hub *h, ivy_thread *t);
void ivy__timeout_hub_free(struct ivy_hub *h);

struct ivy_hub *ivy__hub_slow(void);

/* This thread's hub, set up with defaults if needed; NULL when that fails. */
static inline struct ivy_hub *ivy__hub(void)
{
    struct ivy_hub *h = ivy__hub_tls;
    return IVY_LIKELY(h) ? h : ivy__hub_slow();
}

/* The coarse clock (a few ns, no system call), in ns: for what needs milliseconds. */
static inline uint64_t ivy__coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * The coarse clock without reading it, in a green thread: what the stall detector read when the
 * thread was resumed, so it lags by the running slice at most (under the stall threshold). Read
 * afresh when the detector is off or outside a thread.
 */
static inline uint64_t ivy__slice_clock(void)
{
    struct ivy_hub *h = ivy__hub_tls;
    return h && h->stall_ns && h->current ? h->slice_start : ivy__coarse_ns();
}

static inline ivy_thread *ivy__self(void)
{
    struct ivy_hub *h = ivy__hub_tls;
    return h ? h->current : NULL;
}

static inline int ivy__blocking_check(ivy_thread *t)
{
    if (IVY_UNLIKELY(!t)) return -EPERM;
    if (IVY_UNLIKELY(t->killed)) return -ECANCELED;
    if (IVY_UNLIKELY(t->timedout)) return -ETIMEDOUT;
    return 0;
}

/* Makes t runnable, ivy__park returning value; t must be parked (or running, to yield). */
static inline void ivy__ready(ivy_thread *t, int value)
{
    struct ivy_hub *h = ivy__hub_tls;
    t->wake = value;
    t->state = IVY_T_READY;
    t->next = NULL;
    if (h->runq.tail)
        h->runq.tail->next = t;
    else
        h->runq.head = t;
    h->runq.tail = t;
}

/* For ivy__park: the greenlet to switch to, and the value to pass it. */
ivy_greenlet *ivy__park_target(ivy_thread *t, ivy_thread **arg);

/*
 * Suspends t (the caller) until ivy__ready(t, v); returns v. The next thread of the hub's pass
 * runs next, switched to directly when the hub has nothing else to do first. Inline, so that the
 * switch is made from the blocking call's own frame: each return between a switch and the next call
 * is one the return-stack predictor misses.
 */
static inline int ivy__park(ivy_thread *t)
{
    ivy_thread *arg;
    ivy_greenlet *g = ivy__park_target(t, &arg);
    ivy_switch(g, arg, NULL);
    return t->wake;
}
/* Takes a parked thread out of what it waits on with err (kill, deadline). */
void ivy__interrupt(ivy_thread *t, int err);

/* Green libc (io/green_ops.c): binds this thread's hub to it at init, unbinds at free. */
void ivy__green_attach(struct ivy_hub *h);
void ivy__green_detach(void);

/* ---- the ring (io/ring.c) ----------------------------------------------------------------- */

int ivy__ring_init(struct ivy_hub *h, unsigned entries, bool quiet);
/* A free submission entry; flushes the queue to the kernel when it is full. Never NULL. */
struct io_uring_sqe *ivy__sqe(struct ivy_hub *h);
/* Submits what is queued and reaps completions; waits up to timeout_ns when block. */
int ivy__ring_poll(struct ivy_hub *h, bool block, uint64_t timeout_ns);
/* Before the ring goes: cancels every request still armed (a receive, an accept) and takes
 * their last completions, and empties the registered files, so that nothing the ring holds (a
 * socket) outlives ivy_hub_free: the kernel tears a ring down asynchronously, and until then a
 * socket the application has closed stays open. */
void ivy__ring_cancel_all(struct ivy_hub *h);
/*
 * Registered files, for servers whose sockets no one else sees (the HTTP server's connections:
 * a handler never has the descriptor): slot fd holds descriptor fd, so that a hot send names it
 * with IOSQE_FIXED_FILE and skips the file table lookup and reference count every plain request
 * pays. ivy__fixed_add registers fd (one system call; the table, min(RLIMIT_NOFILE, 16 Ki)
 * sparse slots, is made on first use): true when slot fd now holds fd's file. ivy__fixed_drop
 * queues the slot's removal, which must come before fd's close.
 */
bool ivy__fixed_add(struct ivy_hub *h, int fd);
void ivy__fixed_drop(struct ivy_hub *h, int fd);
/* Frees the receive state of every socket (io/recv.c), before the ring goes. */
void ivy__recv_hub_free(struct ivy_hub *h);

/* A one-shot request made by a green thread that waits for its answer. */
struct ivy_op {
    struct ivy_completion c;
    ivy_thread *t;
    int interrupted; /* the error to report if the kernel says -ECANCELED */
    uint32_t flags;  /* cqe flags */
};

/*
 * Submits sqe on behalf of the calling thread t and parks until its completion; returns the
 * completion's result. Call ivy__blocking_check first, before taking the sqe.
 */
int ivy__op_wait(struct ivy_hub *h, ivy_thread *t, struct io_uring_sqe *sqe, struct ivy_op *op);

#endif
