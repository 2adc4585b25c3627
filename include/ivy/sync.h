/*
 * Synchronisation for green threads: Event, Semaphore, Queue, Channel, and the pools
 * GreenPool and GreenPile, after eventlet's (and stackless's channels).
 *
 * Conventions shared by everything here:
 * - Opaque handles. ivy_X_new returns NULL and sets errno (EINVAL, ENOMEM). ivy_X_free(NULL)
 *   is 0; while a thread waits on the object (or, for pools, runs in it) it is -EBUSY and
 *   frees nothing.
 * - Wake-ups are FIFO and direct: a release, a put, a send, a finishing pool job hands what it
 *   frees to the first waiter, which owns it from then on, even if it is killed or times out
 *   before it runs. A later caller cannot barge in ahead of a waiter, and nothing is lost.
 * - Blocking calls (event wait, acquire, put, get, send, receive, pool spawn and waitall, pile
 *   spawn and next), made by a green thread, fail first with -ECANCELED if it was killed and
 *   -ETIMEDOUT if an enclosing ivy_timeout scope expired, as every blocking call in ivy does;
 *   while one waits, a kill or the scope's expiry interrupts it the same way. Outside a green
 *   thread (before ivy_run, in a link callback) they complete when they need not wait and fail
 *   with -EPERM when they would.
 * - `timeout` is per call, in seconds: negative waits forever, 0 never waits, NaN is -EINVAL.
 *   Expiry returns -ETIMEDOUT and leaves the thread and its scopes as they were.
 * - try_ calls never wait and never look at the caller (usable anywhere); -EAGAIN when they
 *   would have to wait.
 */
#ifndef IVY_SYNC_H
#define IVY_SYNC_H

#include "ivy/hub.h"

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Event: a flag threads wait for ------------------------------------------------------- */

typedef struct ivy_event ivy_event;

ivy_event *ivy_event_new(void);
int ivy_event_free(ivy_event *e);
/*
 * Sets the flag and wakes every waiter, in the order they came; each one's wait returns 0 even
 * if the flag is cleared before it runs. Returns how many were woken.
 */
int ivy_event_set(ivy_event *e);
int ivy_event_clear(ivy_event *e);
bool ivy_event_is_set(const ivy_event *e);
/* 0 at once if set, else when set is called. */
int ivy_event_wait(ivy_event *e, double timeout);

/* ---- Semaphore and BoundedSemaphore ------------------------------------------------------- */

typedef struct ivy_semaphore ivy_semaphore;

/* value <= INT_MAX units; releases may raise it up to INT_MAX. */
ivy_semaphore *ivy_semaphore_new(unsigned value);
/* As ivy_semaphore_new, but a release that would raise the value above `value` fails. */
ivy_semaphore *ivy_bounded_semaphore_new(unsigned value);
int ivy_semaphore_free(ivy_semaphore *s);
/* Takes a unit, waiting behind earlier acquirers while none is free. */
int ivy_semaphore_acquire(ivy_semaphore *s, double timeout);
int ivy_semaphore_try_acquire(ivy_semaphore *s);
/* Gives a unit to the first waiter, or back to the count: -EOVERFLOW past the bound. */
int ivy_semaphore_release(ivy_semaphore *s);
/* Units free now (0 while threads wait). */
int ivy_semaphore_value(const ivy_semaphore *s);

/* ---- Queue: FIFO of void * items ---------------------------------------------------------- */

typedef struct ivy_queue ivy_queue;

/* maxsize 0: unbounded (storage grows as needed). */
ivy_queue *ivy_queue_new(size_t maxsize);
/* Items still queued belong to the caller; the queue only drops its pointers. */
int ivy_queue_free(ivy_queue *q);
/* Appends item, waiting while the queue is full; -ENOMEM when unbounded storage can't grow. */
int ivy_queue_put(ivy_queue *q, void *item, double timeout);
/* Takes the oldest item into *item, waiting while the queue is empty. */
int ivy_queue_get(ivy_queue *q, void **item, double timeout);
int ivy_queue_try_put(ivy_queue *q, void *item);
int ivy_queue_try_get(ivy_queue *q, void **item);
size_t ivy_queue_size(const ivy_queue *q);

/* ---- Channel: unbuffered rendezvous, as stackless's --------------------------------------- */

typedef struct ivy_channel ivy_channel;

ivy_channel *ivy_channel_new(void);
int ivy_channel_free(ivy_channel *c);
/*
 * Gives item to a receiver: at once to the first one waiting (which is readied; the sender
 * carries on), else waits until a receiver takes it. On error nobody got the item.
 */
int ivy_channel_send(ivy_channel *c, void *item, double timeout);
/* Takes the first waiting sender's item (readying it), else waits for a sender. */
int ivy_channel_receive(ivy_channel *c, void **item, double timeout);
/* Senders waiting (> 0) or minus the receivers waiting (< 0); never both. */
long ivy_channel_balance(const ivy_channel *c);

/* ---- GreenPool: at most `size` green threads at once -------------------------------------- */

typedef struct ivy_pool ivy_pool;

ivy_pool *ivy_pool_new(unsigned size); /* size >= 1 */
/* -EBUSY while a thread runs in the pool or waits on it. */
int ivy_pool_free(ivy_pool *p);
/*
 * Starts fn(arg) in the pool, first waiting (FIFO) while `size` threads run in it. With out
 * NULL the thread is detached; else *out is its handle, to ivy_join or ivy_detach as usual.
 * A pool thread that spawns into its own full pool waits for a sibling to finish.
 */
int ivy_pool_spawn(ivy_pool *p, ivy_fn fn, void *arg, ivy_thread **out);
/* Waits until no thread runs in the pool (none waits to spawn either). */
int ivy_pool_waitall(ivy_pool *p);
/* New bound; waiting spawners start at once if it grew. Running threads are never stopped. */
int ivy_pool_resize(ivy_pool *p, unsigned size);
unsigned ivy_pool_running(const ivy_pool *p);
/* eventlet's free(): how many more could start now without waiting. */
unsigned ivy_pool_available(const ivy_pool *p);

/* ---- GreenPile: results collected in spawn order ------------------------------------------ */

typedef struct ivy_pile ivy_pile;

/* Runs its jobs in pool, or when pool is NULL in a pool of its own of `size` (0: 1000). */
ivy_pile *ivy_pile_new(ivy_pool *pool, unsigned size);
/* -EBUSY while a job runs or a thread waits in spawn or next; drops uncollected results. */
int ivy_pile_free(ivy_pile *p);
/* Adds a job, waiting as ivy_pool_spawn does. */
int ivy_pile_spawn(ivy_pile *p, ivy_fn fn, void *arg);
/*
 * Stores the result of the oldest job not yet collected in *value and returns 0, waiting for
 * it to finish: fn's return value, or ivy_err_ptr(err) if it failed (ivy_ptr_err tells), or
 * ivy_err_ptr(IVY_EXIT) if it was killed before it started. -ENOENT when every job spawned
 * has been collected (or is claimed by an earlier waiting call). Interrupted, it collects
 * nothing: the result stays for the next call.
 */
int ivy_pile_next(ivy_pile *p, void **value, double timeout);

#ifdef __cplusplus
}
#endif
#endif
