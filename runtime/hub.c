/*
 * The hub: one per OS thread, living in that thread's main greenlet.
 *
 * Loop: run every thread that was ready when the pass began, in FIFO order (threads readied
 * during the pass wait for the next one, so ivy_sleep(0) yields to all) → fire due timers →
 * one io_uring_submit_and_wait for everything queued, with the earliest timer as its timeout
 * → reap every completion in a batch, each readying the thread it belongs to.
 *
 * When threads are ready and nothing was queued for the kernel, passes run back to back
 * without a system call, but never more than IDLE_PASSES in a row, so completions keep
 * flowing while threads yield to each other.
 *
 * The stall detector reads the coarse clock after each slice (a few ns, no syscall) and
 * reports a thread that ran longer than the threshold without yielding.
 */
#include "hub_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { IDLE_PASSES = 32 };

__thread struct ivy_hub *ivy__hub_tls;

uint64_t ivy_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

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
    h->stall_ns = (uint64_t)((o.stall_threshold > 0 ? o.stall_threshold : 0.1) * 1e9);
    ivy__hub_tls = h;
    return 0;
}

struct ivy_hub *ivy__hub(void)
{
    if (IVY_UNLIKELY(!ivy__hub_tls) && ivy_hub_init(NULL) < 0) return NULL;
    return ivy__hub_tls;
}

int ivy_hub_free(void)
{
    struct ivy_hub *h = ivy__hub_tls;
    if (!h) return 0;
    if (h->stats.threads_alive || h->in_run) return -EBUSY;
    io_uring_queue_exit(&h->ring);
    ivy__timer_heap_free(&h->timers);
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
    if (h) h->stall_ns = seconds > 0 ? (uint64_t)(seconds * 1e9) : 0;
}

void ivy_stop(void)
{
    if (ivy__hub_tls) ivy__hub_tls->stop = true;
}

/* ---- parking --------------------------------------------------------------------------- */

void ivy__ready(ivy_thread *t, int value)
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

int ivy__park(ivy_thread *t)
{
    if (t->state == IVY_T_RUNNING) t->state = IVY_T_PARKED;
    ivy_switch(ivy__hub_tls->g, NULL, NULL);
    return t->wake;
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

static void report_stall(struct ivy_hub *h, ivy_thread *t, uint64_t ns)
{
    h->stats.stalls++;
    fprintf(stderr,
            "ivy: stall: green thread %llu%s%s%s ran %.1f ms without yielding "
            "(threshold %.1f ms); the hub and every other thread waited\n",
            (unsigned long long)t->id, t->name ? " '" : "", t->name ? t->name : "",
            t->name ? "'" : "", (double)ns / 1e6, (double)h->stall_ns / 1e6);
}

static void resume_thread(struct ivy_hub *h, ivy_thread *t)
{
    if (IVY_UNLIKELY(t->killed && !ivy_greenlet_started(t->g))) {
        /* Killed before it ran: it never will, as greenlet's throw into a new greenlet. */
        ivy__thread_finished(h, t, ivy_err_ptr(IVY_EXIT), 0);
        return;
    }
    void *value;
    t->state = IVY_T_RUNNING;
    h->current = t;
    h->stats.switches++;
    int err = ivy_switch(t->g, t, &value);
    h->current = NULL;
    if (h->stall_ns) {
        uint64_t now = coarse_ns();
        if (IVY_UNLIKELY(now - h->slice_start > h->stall_ns))
            report_stall(h, t, now - h->slice_start);
        h->slice_start = now;
    }
    if (ivy_greenlet_dead(t->g)) ivy__thread_finished(h, t, value, err);
}

static void run_pass(struct ivy_hub *h)
{
    ivy_thread *t = h->runq.head, *last = h->runq.tail;
    if (!t) return;
    h->runq.head = h->runq.tail = NULL;
    h->slice_start = coarse_ns();
    for (;;) {
        ivy_thread *next = t->next;
        bool end = t == last;
        resume_thread(h, t);
        if (end) break;
        t = next;
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
    unsigned idle_passes = 0;
    uint64_t busy_since = ivy_now_ns();
    for (;;) {
        run_pass(h);
        uint64_t now = ivy_now_ns();
        ivy__timer_fire_due(&h->timers, now);
        h->stats.iterations++;
        if (h->on_iteration) h->on_iteration(h->on_iteration_arg);
        if (now - busy_since > h->stats.max_loop_lag_ns) h->stats.max_loop_lag_ns = now - busy_since;
        if (h->stop) break;
        bool ready = h->runq.head != NULL;
        if (!ready && !h->stats.threads_alive && !h->stats.inflight) break;
        if (!ready && !h->timers.n && !h->stats.inflight && !h->external) {
            fprintf(stderr, "ivy: deadlock: %llu green threads wait and nothing can wake them\n",
                    (unsigned long long)h->stats.threads_alive);
            rc = -EDEADLK;
            break;
        }
        if (ready && !io_uring_sq_ready(&h->ring) && ++idle_passes < IDLE_PASSES) continue;
        idle_passes = 0;
        uint64_t timeout = UINT64_MAX;
        if (!ready && h->timers.n)
            timeout = h->timers.v[0]->deadline > now ? h->timers.v[0]->deadline - now : 0;
        rc = ivy__ring_poll(h, !ready && timeout != 0, timeout);
        if (rc < 0) {
            fprintf(stderr, "ivy: io_uring wait failed: %d\n", rc);
            break;
        }
        busy_since = ivy_now_ns();
    }
    /* Hand the kernel what is still queued (a close, a cancel) before returning. */
    io_uring_submit(&h->ring);
    h->in_run = false;
    return rc;
}
