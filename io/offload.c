/*
 * The offload pool (eventlet's tpool): OS threads that run blocking calls for the green threads
 * of one hub, and getaddrinfo on top of it.
 *
 * Wake-up path: an eventfd. A pool thread that finishes a job appends it to the done list and
 * writes the eventfd; the hub keeps one IORING_OP_READ of that eventfd armed while jobs are
 * outstanding, and its completion drains the whole done list, however many jobs finished. Why
 * not IORING_OP_MSG_RING: the hub's ring is IORING_SETUP_SINGLE_ISSUER, so a pool thread
 * cannot submit to it and would need a ring of its own (an fd, mapped queues, set-up per
 * thread) just to post one CQE per job, and it needs Linux 5.18. The eventfd costs one fd per
 * pool and works on any ring; its counter coalesces a burst of completions into one CQE, and a
 * pool thread skips even the write(2) while a wake-up is already pending (wake_pending).
 *
 * The armed read counts in the hub's stats.inflight, so ivy_run does not return while a job
 * is running, even one whose caller left; with no job outstanding nothing is armed, so an idle
 * pool never keeps ivy_run alive. h->external counts outstanding jobs, the hub's record of
 * wake-ups promised from outside the ring.
 *
 * Invariants:
 * - Jobs live on the heap, never on the caller's stack: a caller that is killed or times out
 *   leaves at once while its job still runs. Its job->t goes NULL, and the hub frees the job
 *   (after release()) when it drains it.
 * - job->t, armed, outstanding and waiters belong to the hub thread; the queue, the done list,
 *   the thread count and wake_pending to the mutex. A job's result is written by its pool
 *   thread before it takes the mutex to publish the job, and read by the hub after taking it.
 * - armed implies outstanding > 0, so the read always has a write coming.
 * - The pool is per OS thread (TLS) and bound to the hub whose ring holds its read
 *   (h->offload). A hub freed without ivy_offload_shutdown leaves the pool unbound, and the
 *   next offload binds it to the new hub and re-arms there.
 */
#include "hub_impl.h"
#include "ivy/offload.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct job {
    struct job *next; /* in the queue, then in the done list */
    ivy_fn fn;
    void *arg, *result;
    void (*release)(void *arg, void *result);
    ivy_thread *t; /* the caller; NULL once it left */
};

struct pool {
    struct ivy_completion c; /* the eventfd read's */
    uint64_t counter;        /* the eventfd read's buffer */
    struct ivy_hub *hub;     /* whose ring holds the read */
    int efd;
    bool armed, closing;
    uint64_t outstanding; /* jobs submitted and not drained yet */
    uint64_t waiters;     /* outstanding jobs whose caller still waits */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *queue, *queue_tail, *done, *done_tail;
    unsigned queued, idle, nthreads;
    bool stop, wake_pending;
    pthread_t threads[IVY_OFFLOAD_MAX_THREADS];
};

static __thread struct pool *tls_pool;
static atomic_uint max_threads = 4;

int ivy_offload_set_threads(unsigned n)
{
    if (n < 1 || n > IVY_OFFLOAD_MAX_THREADS) return -EINVAL;
    atomic_store(&max_threads, n);
    return 0;
}

/* ---- pool threads ----------------------------------------------------------------------- */

static void publish(struct pool *p, struct job *j)
{
    pthread_mutex_lock(&p->mu);
    j->next = NULL;
    if (p->done_tail)
        p->done_tail->next = j;
    else
        p->done = j;
    p->done_tail = j;
    /* One write per hub drain: later finishers ride on the wake-up already in flight. */
    bool wake = !p->wake_pending;
    p->wake_pending = true;
    pthread_mutex_unlock(&p->mu);
    if (wake) {
        uint64_t one = 1;
        while (write(p->efd, &one, sizeof one) < 0 && errno == EINTR) {
        }
    }
}

static void *worker(void *arg)
{
    struct pool *p = arg;
    pthread_setname_np(pthread_self(), "ivy-offload");
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->queue && !p->stop) {
            p->idle++;
            pthread_cond_wait(&p->cv, &p->mu);
            p->idle--;
        }
        struct job *j = p->queue;
        if (!j) break; /* stopping, and every queued job has run */
        p->queue = j->next;
        if (!p->queue) p->queue_tail = NULL;
        p->queued--;
        pthread_mutex_unlock(&p->mu);
        j->result = j->fn(j->arg);
        publish(p, j);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Called with mu held. Signals stay with the hub thread: pool threads block them all. */
static int start_thread(struct pool *p)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&p->threads[p->nthreads], NULL, worker, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) return -rc;
    p->nthreads++;
    return 0;
}

/* Queues j, starting a thread when none is idle for it; fails only if no thread exists. */
static int enqueue(struct pool *p, struct job *j)
{
    pthread_mutex_lock(&p->mu);
    j->next = NULL;
    if (p->queue_tail)
        p->queue_tail->next = j;
    else
        p->queue = j;
    p->queue_tail = j;
    p->queued++;
    int rc = 0;
    if (p->idle < p->queued && p->nthreads < atomic_load(&max_threads)) rc = start_thread(p);
    if (rc < 0 && p->nthreads == 0) {
        p->queue = p->queue_tail = NULL; /* j was alone in the queue */
        p->queued = 0;
    } else {
        rc = 0;
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

/* ---- the hub side ----------------------------------------------------------------------- */

static void on_read(struct ivy_completion *c, int res, uint32_t flags);

static void arm(struct pool *p, struct ivy_hub *h)
{
    struct io_uring_sqe *sqe = ivy__sqe(h);
    io_uring_prep_read(sqe, p->efd, &p->counter, sizeof p->counter, 0);
    io_uring_sqe_set_data(sqe, &p->c);
    p->armed = true;
    h->stats.inflight++;
}

/* Hands every finished job to its caller, or frees it if the caller left. h: NULL if unbound. */
static void drain(struct pool *p, struct ivy_hub *h)
{
    pthread_mutex_lock(&p->mu);
    struct job *j = p->done;
    p->done = p->done_tail = NULL;
    p->wake_pending = false;
    pthread_mutex_unlock(&p->mu);
    while (j) {
        struct job *next = j->next;
        p->outstanding--;
        if (h) h->external--;
        if (j->t) {
            p->waiters--;
            j->t->interrupt = NULL;
            ivy__ready(j->t, 0); /* the caller reads the result and frees j */
        } else {
            if (j->release) j->release(j->arg, j->result);
            free(j);
        }
        j = next;
    }
}

/* Any result, even an error, is a reason to look at the done list: it is cheap and lossless. */
static void on_read(struct ivy_completion *c, int res, uint32_t flags)
{
    struct pool *p = (struct pool *)c;
    struct ivy_hub *h = ivy__hub_tls;
    p->armed = false;
    h->stats.inflight--;
    if (p->closing) return; /* ivy_offload_shutdown drains after joining the threads */
    drain(p, h);
    if (p->outstanding) arm(p, h);
}

static int pool_get(struct ivy_hub *h, struct pool **out)
{
    struct pool *p = tls_pool;
    if (!p) {
        p = calloc(1, sizeof *p);
        if (!p) return -ENOMEM;
        /* Blocking on purpose: io_uring then polls it; a non-blocking one answers -EAGAIN. */
        p->efd = eventfd(0, EFD_CLOEXEC);
        if (p->efd < 0) {
            int err = -errno;
            free(p);
            return err;
        }
        p->c.complete = on_read;
        pthread_mutex_init(&p->mu, NULL);
        pthread_cond_init(&p->cv, NULL);
        tls_pool = p;
    }
    if (p->hub != h || h->offload != p) {
        /* First use, or the hub that held the read was freed: that read went with its ring. */
        p->hub = h;
        p->armed = false;
        h->offload = p;
        h->external += p->outstanding;
        if (p->outstanding) arm(p, h);
    }
    *out = p;
    return 0;
}

static void job_interrupt(ivy_thread *t, int err)
{
    struct job *j = t->wait_obj;
    j->t = NULL; /* the job runs on; drain() frees it */
    tls_pool->waiters--;
    t->interrupt = NULL;
    ivy__ready(t, err);
}

int ivy_offload_owned(ivy_fn fn, void *arg, void **result, void (*release)(void *arg, void *result))
{
    ivy_thread *t = ivy__self();
    int rc = fn ? ivy__blocking_check(t) : -EINVAL;
    struct pool *p = NULL;
    struct job *j = NULL;
    if (rc == 0) rc = pool_get(ivy__hub_tls, &p);
    if (rc == 0 && !(j = malloc(sizeof *j))) rc = -ENOMEM;
    if (rc == 0) {
        *j = (struct job){.fn = fn, .arg = arg, .release = release, .t = t};
        rc = enqueue(p, j);
    }
    if (rc < 0) {
        free(j);
        if (release) release(arg, NULL); /* on any error the pool owns arg: fn never ran */
        return rc;
    }
    struct ivy_hub *h = ivy__hub_tls;
    p->outstanding++;
    p->waiters++;
    h->external++;
    if (!p->armed) arm(p, h);
    t->wait_obj = j;
    t->interrupt = job_interrupt;
    rc = ivy__park(t);
    if (rc < 0) return rc; /* interrupted: j is the pool's now */
    if (result) *result = j->result;
    free(j);
    return 0;
}

int ivy_offload(ivy_fn fn, void *arg, void **result)
{
    return ivy_offload_owned(fn, arg, result, NULL);
}

int ivy_offload_shutdown(void)
{
    struct pool *p = tls_pool;
    struct ivy_hub *h = ivy__hub_tls;
    if (h && h->in_run) return -EBUSY;
    if (!p) return 0;
    if (p->waiters) return -EBUSY;
    bool bound = h && p->hub == h && h->offload == p;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    if (bound && p->armed) {
        /* The kernel may still write p->counter: wait for the read's last CQE before free. */
        p->closing = true;
        struct io_uring_sqe *sqe = ivy__sqe(h);
        io_uring_prep_cancel(sqe, &p->c, 0);
        io_uring_sqe_set_data(sqe, NULL);
        while (p->armed && ivy__ring_poll(h, true, UINT64_MAX) == 0) {
        }
    }
    drain(p, bound ? h : NULL);
    tls_pool = NULL;
    if (bound) h->offload = NULL;
    if (p->armed) {
        /* The ring failed under us: leaking the pool beats the kernel writing freed memory. */
        fprintf(stderr, "ivy: offload: ring failed during shutdown; pool leaked\n");
        return -EIO;
    }
    close(p->efd);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
    return 0;
}

/* ---- getaddrinfo ------------------------------------------------------------------------ */

struct gai_req {
    const char *host, *service; /* into names, or NULL */
    struct addrinfo hints, *res;
    bool has_hints;
    int rc, err;
    char names[];
};

static void *gai_run(void *arg)
{
    struct gai_req *r = arg;
    errno = 0;
    r->rc = getaddrinfo(r->host, r->service, r->has_hints ? &r->hints : NULL, &r->res);
    r->err = errno; /* for EAI_SYSTEM; errno is this pool thread's */
    return NULL;
}

static void gai_release(void *arg, void *result)
{
    struct gai_req *r = arg;
    if (r->rc == 0) freeaddrinfo(r->res);
    free(r);
}

static int gai_errno(int rc, int err)
{
    switch (rc) {
    case EAI_NONAME:
    case EAI_SERVICE:
        return -ENOENT;
    case EAI_NODATA:
    case EAI_ADDRFAMILY:
        return -ENODATA;
    case EAI_AGAIN:
        return -EAGAIN;
    case EAI_FAIL:
        return -EIO;
    case EAI_MEMORY:
        return -ENOMEM;
    case EAI_FAMILY:
        return -EAFNOSUPPORT;
    case EAI_SOCKTYPE:
        return -ESOCKTNOSUPPORT;
    case EAI_BADFLAGS:
        return -EINVAL;
    case EAI_OVERFLOW:
        return -EOVERFLOW;
    case EAI_SYSTEM:
        return err > 0 ? -err : -EIO;
    default:
        return -EIO;
    }
}

int ivy_getaddrinfo(const char *host, const char *service, const struct addrinfo *hints,
                    struct addrinfo **res)
{
    if (!res || (!host && !service)) return -EINVAL;
    size_t hl = host ? strlen(host) + 1 : 0, sl = service ? strlen(service) + 1 : 0;
    /* On the heap with its names: if the caller leaves early, the pool thread still reads it. */
    struct gai_req *r = calloc(1, sizeof *r + hl + sl);
    if (!r) return -ENOMEM;
    r->rc = EAI_SYSTEM; /* what gai_release sees if getaddrinfo never ran */
    if (host) r->host = memcpy(r->names, host, hl);
    if (service) r->service = memcpy(r->names + hl, service, sl);
    if (hints) {
        /* POSIX: the other fields of hints must be zero or NULL. */
        r->hints.ai_flags = hints->ai_flags;
        r->hints.ai_family = hints->ai_family;
        r->hints.ai_socktype = hints->ai_socktype;
        r->hints.ai_protocol = hints->ai_protocol;
        r->has_hints = true;
    }
    int rc = ivy_offload_owned(gai_run, r, NULL, gai_release);
    if (rc < 0) return rc; /* r is released by the pool */
    rc = r->rc == 0 ? 0 : gai_errno(r->rc, r->err);
    if (rc == 0) *res = r->res;
    free(r);
    return rc;
}
