/*
 * The hub: one per OS thread, living in that thread's main greenlet.
 *
 * Loop: run every thread that was ready when the pass began, in FIFO order (threads readied
 * during the pass wait for the next one, so ivy_sleep(0) yields to all) → fire due timers →
 * one io_uring_submit_and_wait for everything queued, with the earliest timer as its timeout
 * → reap every completion in a batch, each readying the thread it belongs to.
 *
 * A thread that parks switches straight to the next thread of the pass (ivy__park_target)
 * instead of going back to the hub, which would only switch to that same thread: one switch per
 * handover instead of two, same order. At the end of a pass it does the same with the first
 * thread of the next pass when the hub would do nothing else in between (no timer possibly due,
 * nothing for the kernel). Threads come back to the hub when they die (the hub is their parent)
 * and when the hub has work of its own.
 *
 * When threads are ready and nothing was queued for the kernel, passes run back to back without
 * a system call, but never more than IDLE_PASSES in a row while a request is in flight, so
 * completions keep flowing; with none in flight there is nothing to reap and no call at all.
 * Between passes the precise clock (tens of ns in a VM) is read only at the end of such a run
 * or when the coarse clock says a timer may be due.
 *
 * The stall detector reads the coarse clock after each slice (a few ns, no syscall) and
 * reports a thread that ran longer than the threshold without yielding, unless the OS thread
 * spent that time preempted (schedstat's runqueue wait, read at most twice per threshold).
 */
#include "hub_impl.h"
#include "ivy/offload.h"
#include "seconds.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

enum { IDLE_PASSES = 32 };

__thread struct ivy_hub *ivy__hub_tls;

uint64_t ivy_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void mark_wait(struct ivy_hub *h, uint64_t now);

int ivy_hub_init(const struct ivy_hub_options *opts)
{
    if (ivy__hub_tls) return 0;
    if (!ivy_greenlet_is_main(ivy_current())) return -EPERM;
    struct ivy_hub *h = calloc(1, sizeof *h);
    if (!h) return -ENOMEM;
    struct ivy_hub_options o = opts ? *opts : (struct ivy_hub_options){0};
    int rc = ivy__ring_init(h, o.ring_entries ? o.ring_entries : 4096, o.quiet);
    if (rc < 0) {
        free(h);
        return rc;
    }
    h->g = ivy_current();
    struct timespec res;
    clock_getres(CLOCK_MONOTONIC_COARSE, &res);
    h->coarse_slack = 2 * ((uint64_t)res.tv_sec * 1000000000u + (uint64_t)res.tv_nsec);
    h->stall_ns = ivy__seconds_ns(o.stall_threshold > 0 ? o.stall_threshold : 0.1);
    h->schedstat_fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    ivy__hub_tls = h;
    ivy__green_attach(h);
    return 0;
}

struct ivy_hub *ivy__hub_slow(void)
{
    return ivy_hub_init(NULL) < 0 ? NULL : ivy__hub_tls;
}

int ivy_hub_free(void)
{
    struct ivy_hub *h = ivy__hub_tls;
    if (!h) return 0;
    if (h->stats.threads_alive || h->in_run) return -EBUSY;
    if (h->offload) {
        int rc = ivy_offload_shutdown(); /* its read is armed on our ring: stop it first */
        if (rc < 0) return rc;
    }
    ivy__green_detach();
    ivy__ring_cancel_all(h);
    ivy__recv_hub_free(h);
    io_uring_queue_exit(&h->ring);
    if (h->schedstat_fd >= 0) close(h->schedstat_fd);
    ivy__timer_heap_free(&h->timers);
    ivy__timeout_hub_free(h);
    free(h);
    ivy__hub_tls = NULL;
    return 0;
}

void ivy_hub_stats(struct ivy_hub_stats *out)
{
    struct ivy_hub *h = ivy__hub_tls;
    *out = h ? h->stats : (struct ivy_hub_stats){0};
}

void ivy_hub_set_stall_threshold(double seconds)
{
    struct ivy_hub *h = ivy__hub();
    if (!h) return;
    h->stall_ns = ivy__seconds_ns(seconds);
    h->slice_start = ivy__coarse_ns(); /* unkept while the detector was off */
    mark_wait(h, h->slice_start);
}

void ivy_stop(void)
{
    if (ivy__hub_tls) ivy__hub_tls->stop = true;
}

/* ---- parking --------------------------------------------------------------------------- */

/* Begins a pass: the threads ready now. Threads readied from here on wait for the next one. */
static inline void begin_pass(struct ivy_hub *h)
{
    /*
     * Two 8-byte loads, not one 16-byte load the compiler would merge them into: ivy__ready has
     * just stored them separately, and a wide load spanning two pending stores stalls.
     */
    h->pass_next = __atomic_load_n(&h->runq.head, __ATOMIC_RELAXED);
    h->pass_last = __atomic_load_n(&h->runq.tail, __ATOMIC_RELAXED);
    h->runq.head = h->runq.tail = NULL;
}

/* The next thread of the running pass, taken off it; NULL once the pass is over. */
static inline ivy_thread *pass_take(struct ivy_hub *h)
{
    ivy_thread *t = h->pass_next;
    if (t) h->pass_next = t == h->pass_last ? NULL : t->next;
    return t;
}

/* A thread killed before it ran never does: the hub finishes it, not a switch. */
static inline bool killed_unstarted(const ivy_thread *t)
{
    return IVY_UNLIKELY(t->killed) && t->g->state == IVY_G_NEW;
}

static void report_stall(struct ivy_hub *h, ivy_thread *t, uint64_t now);

/*
 * How long this OS thread has waited on a runqueue, runnable but preempted (the second field of
 * /proc/thread-self/schedstat). A system call, so read at most twice per stall threshold.
 */
static void mark_wait(struct ivy_hub *h, uint64_t now)
{
    char buf[96];
    unsigned long long on_cpu, waited;
    ssize_t n = h->schedstat_fd >= 0 ? pread(h->schedstat_fd, buf, sizeof buf - 1, 0) : -1;
    if (n > 0) {
        buf[n] = 0;
        if (sscanf(buf, "%llu %llu", &on_cpu, &waited) == 2) h->wait_mark = waited;
    }
    h->wait_mark_at = now;
}

/*
 * Closes t's slice for the stall detector: one coarse clock read (vDSO, a few ns). A slice
 * longer than the threshold is a stall unless most of it was spent preempted, waiting for a CPU
 * (a busy machine, not a thread starving its hub); computing or blocking in a system call both
 * count, as both keep every other green thread waiting.
 */
static inline void end_slice(struct ivy_hub *h, ivy_thread *t)
{
    if (!h->stall_ns) return;
    uint64_t now = ivy__coarse_ns();
    if (IVY_UNLIKELY(now - h->slice_start > h->stall_ns))
        report_stall(h, t, now);
    else if (IVY_UNLIKELY(now - h->wait_mark_at > h->stall_ns / 2))
        mark_wait(h, now);
    h->slice_start = now;
}

/*
 * Whether a timer may be due, judged by the coarse clock, which lags the precise one by at most
 * about its resolution: the precise clock (tens of ns) is read only when this says maybe.
 */
static inline bool timers_maybe_due(struct ivy_hub *h)
{
    if (!h->timers.n) return false;
    uint64_t coarse = h->stall_ns ? h->slice_start : ivy__coarse_ns();
    return ivy__timer_next(&h->timers) <= coarse + h->coarse_slack;
}

/*
 * At the end of a pass: when all the hub would do is begin the next one (threads ready, nothing
 * for the kernel, no timer possibly due, no stop, IDLE_PASSES not reached), the parking thread
 * does it, counting the iteration as the loop does, and returns true.
 */
static bool begin_pass_here(struct ivy_hub *h)
{
    if (!h->runq.head || h->stop || io_uring_sq_ready(&h->ring) ||
        h->idle_passes + 1 >= IDLE_PASSES || timers_maybe_due(h))
        return false;
    h->idle_passes++;
    h->stats.iterations++;
    if (h->on_iteration) h->on_iteration(h->on_iteration_arg);
    begin_pass(h);
    return true;
}

/*
 * A parking thread t hands over directly to the next thread of the pass, or, at the end of the
 * pass, to the first of the next one when begin_pass_here allows: one switch instead of two
 * through the hub, which would only have switched to that same thread. Order and slices are
 * those the hub would have made. Otherwise t goes back to the hub.
 */
ivy_greenlet *ivy__park_target(ivy_thread *t, ivy_thread **arg)
{
    struct ivy_hub *h = ivy__hub_tls;
    if (t->state == IVY_T_RUNNING) t->state = IVY_T_PARKED;
    end_slice(h, t);
    h->current = NULL;
    ivy_thread *n = h->pass_next;
    if (!n && begin_pass_here(h)) n = h->pass_next;
    if (!n || killed_unstarted(n)) {
        *arg = NULL;
        return h->g;
    }
    pass_take(h);
    n->state = IVY_T_RUNNING;
    h->current = n;
    h->stats.switches++;
    *arg = n; /* thread_main's argument if n has not started */
    return n->g;
}

void ivy__interrupt(ivy_thread *t, int err)
{
    if (t->state == IVY_T_PARKED && t->interrupt) t->interrupt(t, err);
}

/* ---- wait queues ------------------------------------------------------------------------ */

void ivy__waitq_push(struct ivy_waitq *q, ivy_thread *t)
{
    t->next = NULL;
    t->prev = q->tail;
    if (q->tail)
        q->tail->next = t;
    else
        q->head = t;
    q->tail = t;
}

void ivy__waitq_remove(struct ivy_waitq *q, ivy_thread *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        q->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    else
        q->tail = t->prev;
    t->next = t->prev = NULL;
}

ivy_thread *ivy__waitq_pop(struct ivy_waitq *q)
{
    ivy_thread *t = q->head;
    if (t) ivy__waitq_remove(q, t);
    return t;
}

static void waitq_interrupt(ivy_thread *t, int err)
{
    ivy__waitq_remove(t->wait_obj, t);
    t->interrupt = NULL;
    ivy__ready(t, err);
}

int ivy__waitq_wait(struct ivy_waitq *q, ivy_thread *t)
{
    ivy__waitq_push(q, t);
    t->wait_obj = q;
    t->interrupt = waitq_interrupt;
    return ivy__park(t);
}

bool ivy__waitq_wake(struct ivy_waitq *q, int value)
{
    ivy_thread *t = ivy__waitq_pop(q);
    if (!t) return false;
    t->interrupt = NULL;
    ivy__ready(t, value);
    return true;
}

/* ---- the loop --------------------------------------------------------------------------- */

void ivy__thread_finished(struct ivy_hub *h, ivy_thread *t, void *value, int err);

static void report_stall(struct ivy_hub *h, ivy_thread *t, uint64_t now)
{
    uint64_t ns = now - h->slice_start, waited = h->wait_mark;
    mark_wait(h, now);
    waited = h->wait_mark - waited; /* since the mark, taken before the slice began */
    if (ns < waited || ns - waited < h->stall_ns) return; /* preempted, not stalling */
    h->stats.stalls++;
    fprintf(stderr,
            "ivy: stall: green thread %llu%s%s%s ran %.1f ms without yielding "
            "(threshold %.1f ms); the hub and every other thread waited\n",
            (unsigned long long)t->id, t->name ? " '" : "", t->name ? t->name : "",
            t->name ? "'" : "", (double)ns / 1e6, (double)h->stall_ns / 1e6);
}

/*
 * Runs the pass (and the passes threads begin themselves, see ivy__park_target). The hub's
 * switch returns when a thread dies, h->current then, or parks with nobody to hand over to,
 * its slice already ended (h->current NULL).
 */
static void run_pass(struct ivy_hub *h)
{
    if (!h->runq.head) return;
    begin_pass(h);
    ivy_thread *t;
    while ((t = pass_take(h))) {
        if (killed_unstarted(t)) {
            /* Killed before it ran: it never will, as greenlet's throw into a new greenlet. */
            ivy__thread_finished(h, t, ivy_err_ptr(IVY_EXIT), 0);
            continue;
        }
        void *value;
        t->state = IVY_T_RUNNING;
        h->current = t;
        h->stats.switches++;
        int err = ivy_switch(t->g, t, &value);
        t = h->current;
        if (!t) continue;
        h->current = NULL;
        end_slice(h, t);
        if (t->g->state == IVY_G_DEAD) ivy__thread_finished(h, t, value, err);
    }
}

/* Restarts the stall detector's clock after hub work that is nobody's slice (a wait, timers). */
static inline void restart_slice(struct ivy_hub *h)
{
    if (h->stall_ns) {
        h->slice_start = ivy__coarse_ns();
        if (h->slice_start - h->wait_mark_at > h->stall_ns / 2) mark_wait(h, h->slice_start);
    }
}

int ivy_run(void)
{
    struct ivy_hub *h = ivy__hub();
    if (!h) return -ENOSYS;
    if (ivy_current() != h->g || h->in_run) return -EPERM;
    h->stop = false;
    h->in_run = true;
    int rc = 0;
    h->idle_passes = 0;
    uint64_t busy_since = ivy_now_ns();
    restart_slice(h);
    for (;;) {
        run_pass(h);
        /*
         * Back-to-back passes while threads stay ready, with no system call and no precise clock
         * read: those come at the end of an iteration, when the ring has work, nothing is ready,
         * or IDLE_PASSES passes have run.
         */
        bool end = !h->runq.head || h->stop || io_uring_sq_ready(&h->ring) ||
                   ++h->idle_passes >= IDLE_PASSES;
        uint64_t now = 0;
        if (end || timers_maybe_due(h)) {
            now = ivy_now_ns();
            if (ivy__timer_fire_due(&h->timers, now)) restart_slice(h);
        }
        h->stats.iterations++;
        if (h->on_iteration) h->on_iteration(h->on_iteration_arg);
        if (!end && !h->stop) continue; /* stop: set by a timer or on_iteration just now */
        if (!now) now = ivy_now_ns();
        h->idle_passes = 0;
        if (now - busy_since > h->stats.max_loop_lag_ns)
            h->stats.max_loop_lag_ns = now - busy_since;
        if (h->stop) break;
        bool ready = h->runq.head != NULL;
        if (!ready && !h->stats.threads_alive && !h->stats.inflight) break;
        if (!ready && !h->timers.n && !h->stats.inflight && !h->external) {
            fprintf(stderr, "ivy: deadlock: %llu green threads wait and nothing can wake them\n",
                    (unsigned long long)h->stats.threads_alive);
            rc = -EDEADLK;
            break;
        }
        if (ready && !io_uring_sq_ready(&h->ring) && !h->stats.inflight && !h->external) {
            /* Nothing queued, nothing awaited: no completion can wake anyone, so no syscall. */
            busy_since = now;
            continue;
        }
        uint64_t timeout = UINT64_MAX;
        if (!ready && h->timers.n) {
            uint64_t next = ivy__timer_next(&h->timers);
            timeout = next > now ? next - now : 0;
        }
        rc = ivy__ring_poll(h, !ready && timeout != 0, timeout);
        if (rc < 0) {
            fprintf(stderr, "ivy: io_uring wait failed: %d\n", rc);
            break;
        }
        busy_since = ivy_now_ns();
        restart_slice(h);
    }
    /* Hand the kernel what is still queued (a close, a cancel) before returning. */
    io_uring_submit(&h->ring);
    h->in_run = false;
    return rc;
}
