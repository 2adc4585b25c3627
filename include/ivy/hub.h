/*
 * The hub and green threads.
 *
 * A green thread is a greenlet whose parent is the hub. The hub is the thread's main greenlet:
 * ivy_run() turns it into the loop that runs ready green threads in FIFO order, fires due
 * timers, submits every queued io_uring request with one system call and resumes the threads
 * whose requests completed. Blocking-style calls (ivy_sleep, the sync primitives, the socket
 * calls) suspend only the calling green thread; made outside a green thread they fail with
 * -EPERM.
 *
 * Interruptions. A blocking call returns -ECANCELED when its thread is killed and -ETIMEDOUT
 * when an enclosing deadline (ivy_timeout_begin) expires; an I/O request in flight is cancelled
 * through the ring first, and if it completed anyway its result is returned, so no data is lost.
 */
#ifndef IVY_HUB_H
#define IVY_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ivy_thread ivy_thread;
typedef void *(*ivy_fn)(void *arg);

struct ivy_hub_options {
    unsigned ring_entries;  /* submission queue size; 0: 4096 */
    double stall_threshold; /* seconds a green thread may run without yielding; 0: 0.1 */
    bool quiet;             /* no set-up log line (ring fallbacks) */
};

/*
 * Sets up this thread's hub (ivy_run and the first spawn do it implicitly with defaults).
 * Fails with a message on stderr naming the cause when io_uring is unavailable:
 * -EPERM (kernel.io_uring_disabled or a seccomp filter), -ENOSYS (kernel without io_uring).
 */
int ivy_hub_init(const struct ivy_hub_options *opts);
/* Frees the hub of this thread and its offload pool; only when no green thread is alive
   (-EBUSY otherwise). */
int ivy_hub_free(void);

/*
 * Runs the hub until no green thread is alive (0), ivy_stop() is called (0), or every live
 * thread waits on something nothing can deliver (-EDEADLK). Only from the main greenlet.
 */
int ivy_run(void);
void ivy_stop(void);

/* Starts fn(arg) in a new green thread, scheduled after those already ready. NULL + errno. */
ivy_thread *ivy_spawn(ivy_fn fn, void *arg);
/* As ivy_spawn, detached: nothing to join, the cheapest way to start a thread. */
int ivy_spawn_n(ivy_fn fn, void *arg);
/* As ivy_spawn, started after `seconds`. */
ivy_thread *ivy_spawn_after(double seconds, ivy_fn fn, void *arg);

/*
 * Waits for t to finish and frees it. Returns 0 and fn's value in *result, or fn's error if it
 * returned ivy_err_ptr(err). A thread killed before it started returns 0 with
 * ivy_err_ptr(IVY_EXIT), greenlet's GreenletExit as a value. Exactly one join per handle.
 */
int ivy_join(ivy_thread *t, void **result);
/* Lets t free itself when it finishes; the handle is invalid afterwards. */
void ivy_detach(ivy_thread *t);
/*
 * Kills t: a thread not started yet never runs; a blocked one is woken and its call returns
 * -ECANCELED (an I/O request is cancelled in the ring), as does every later blocking call it
 * makes. Returns at once; join to wait for the end. Killing oneself is -EDEADLK.
 */
int ivy_kill(ivy_thread *t);
/* Calls cb(t, value, err, arg) in the hub when t finishes. cb must not block. */
int ivy_link(ivy_thread *t, void (*cb)(ivy_thread *t, void *value, int err, void *arg), void *arg);

/* Suspends the calling green thread; ivy_sleep(0) lets every ready thread run first. NaN is
   -EINVAL; seconds beyond 2^62 ns (146 years, INFINITY too) sleep until the thread is killed. */
int ivy_sleep(double seconds);

ivy_thread *ivy_self(void); /* NULL outside a green thread */
uint64_t ivy_thread_id(const ivy_thread *t);
void ivy_thread_set_name(ivy_thread *t, const char *name); /* not copied */
const char *ivy_thread_name(const ivy_thread *t);
bool ivy_thread_done(const ivy_thread *t);

/*
 * A scoped deadline, eventlet's Timeout: between begin and end, every blocking call of the
 * calling thread fails with -ETIMEDOUT once `seconds` have passed (its pending I/O cancelled).
 * Scopes nest; the earliest deadline wins. The struct lives on the caller's stack and names the
 * scope (the hub keeps its state); end them in reverse order. end returns -ETIMEDOUT if this scope
 * expired, else 0. Misuse leaves nothing armed: ending an outer scope while inner ones are open
 * ends it and every scope opened inside it and returns -EINVAL; a thread that finishes with
 * scopes open has them ended; ending a scope that is not the caller's open one is -EINVAL.
 * begin is -EPERM outside a green thread, -EINVAL for a negative or NaN time.
 */
struct ivy_timeout {
    uint64_t opaque[10];
};
int ivy_timeout_begin(struct ivy_timeout *to, double seconds);
int ivy_timeout_end(struct ivy_timeout *to);

/* Monotonic clock in nanoseconds, as the hub's timers see it. */
uint64_t ivy_now_ns(void);

struct ivy_hub_stats {
    uint64_t iterations;      /* loop iterations */
    uint64_t switches;        /* green thread resumptions */
    uint64_t threads_alive;   /* started or ready, not finished */
    uint64_t threads_spawned; /* total */
    uint64_t max_loop_lag_ns; /* longest loop iteration */
    uint64_t stalls;          /* stall reports */
    uint64_t inflight;        /* io_uring requests awaiting completion */
    uint64_t recv_ring_empty; /* receives that found the provided-buffer ring empty */
};
void ivy_hub_stats(struct ivy_hub_stats *out);
/* Seconds a green thread may compute without yielding before it is reported; 0 disables. */
void ivy_hub_set_stall_threshold(double seconds);

#ifdef __cplusplus
}
#endif
#endif
