/*
 * The hub's io_uring ring: set-up with the best flags the kernel has, submission entries,
 * the one system call per loop iteration, and completion dispatch.
 *
 * Every request's user_data is a struct ivy_completion (or 0 for requests whose answer nobody
 * needs, such as cancellations); reaping calls its complete() for each CQE in one batch.
 */
#include "hub_impl.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

static int read_io_uring_disabled(void)
{
    int v = -1;
    FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "r");
    if (f) {
        if (fscanf(f, "%d", &v) != 1) v = -1;
        fclose(f);
    }
    return v;
}

static void explain_unavailable(int rc)
{
    int disabled = read_io_uring_disabled();
    if (rc == -EPERM && disabled > 0)
        fprintf(stderr,
                "ivy: io_uring is disabled on this machine (kernel.io_uring_disabled=%d); "
                "enable it with: sysctl -w kernel.io_uring_disabled=0\n",
                disabled);
    else if (rc == -EPERM)
        fprintf(stderr, "ivy: io_uring is not permitted here (a seccomp filter or container "
                        "policy refuses io_uring_setup)\n");
    else if (rc == -ENOSYS)
        fprintf(stderr, "ivy: io_uring is unavailable: the kernel lacks it or a seccomp filter "
                        "hides it (io_uring_setup: ENOSYS); ivy needs Linux >= 5.19\n");
    else
        fprintf(stderr, "ivy: io_uring set-up failed: %s\n", strerror(-rc));
}

int ivy__ring_init(struct ivy_hub *h, unsigned entries, bool quiet)
{
    /* Best first: one issuer, task work deferred to our own wait (no IPIs, batched). */
    static const struct {
        unsigned flags;
        const char *missing;
    } tries[] = {
        {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, NULL},
        {IORING_SETUP_COOP_TASKRUN, "IORING_SETUP_DEFER_TASKRUN (Linux 6.1)"},
        {0, "IORING_SETUP_COOP_TASKRUN (Linux 5.19)"},
    };
    int rc = -EINVAL;
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = tries[i].flags | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
        p.cq_entries = entries * 4;
        rc = io_uring_queue_init_params(entries, &h->ring, &p);
        if (rc == -EINVAL) {
            p.flags &= ~IORING_SETUP_SUBMIT_ALL;
            rc = io_uring_queue_init_params(entries, &h->ring, &p);
        }
        if (rc == 0) {
            h->ring_flags = p.flags;
            /*
             * Enter through a registered ring index: each io_uring_enter then skips the fd table
             * lookup and file reference count. Optional (Linux >= 5.18, 16 per thread); the
             * ring is this thread's alone anyway, and io_uring_queue_exit unregisters it.
             */
            io_uring_register_ring_fd(&h->ring);
            if (tries[i].missing && !quiet)
                fprintf(stderr, "ivy: io_uring: %s unavailable, falling back to %s\n",
                        tries[i].missing, tries[i].flags ? "IORING_SETUP_COOP_TASKRUN" : "defaults");
            return 0;
        }
        if (rc != -EINVAL) break;
    }
    explain_unavailable(rc);
    return rc;
}

struct io_uring_sqe *ivy__sqe(struct ivy_hub *h)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&h->ring);
    while (IVY_UNLIKELY(!sqe)) {
        io_uring_submit(&h->ring); /* queue full: hand it to the kernel, then go on */
        sqe = io_uring_get_sqe(&h->ring);
    }
    return sqe;
}

bool ivy__fixed_add(struct ivy_hub *h, int fd)
{
    enum { FIXED_MAX = 16384 };
    if (!h->fixed_slots) {
        struct rlimit rl;
        rlim_t n = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 1024;
        int slots = n < FIXED_MAX ? (int)n : FIXED_MAX;
        bool made = io_uring_register_files_sparse(&h->ring, (unsigned)slots) == 0;
        h->fixed_slots = made ? slots : -1;
    }
    return fd >= 0 && fd < h->fixed_slots &&
           io_uring_register_files_update(&h->ring, (unsigned)fd, &fd, 1) == 1;
}

void ivy__fixed_drop(struct ivy_hub *h, int fd)
{
    static const int none = -1; /* read when the kernel takes the entry */
    struct io_uring_sqe *sqe = ivy__sqe(h);
    io_uring_prep_files_update(sqe, (int *)&none, 1, fd);
    io_uring_sqe_set_data(sqe, NULL);
}

static unsigned reap(struct ivy_hub *h)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&h->ring, head, cqe)
    {
        struct ivy_completion *c = io_uring_cqe_get_data(cqe);
        n++;
        if (c) c->complete(c, cqe->res, cqe->flags);
    }
    io_uring_cq_advance(&h->ring, n);
    return n;
}

int ivy__ring_poll(struct ivy_hub *h, bool block, uint64_t timeout_ns)
{
    int rc;
    if (!block) {
        rc = io_uring_submit_and_get_events(&h->ring);
    } else if (timeout_ns != UINT64_MAX) {
        struct __kernel_timespec ts = {.tv_sec = (long long)(timeout_ns / 1000000000u),
                                       .tv_nsec = (long long)(timeout_ns % 1000000000u)};
        struct io_uring_cqe *cqe;
        rc = io_uring_submit_and_wait_timeout(&h->ring, &cqe, 1, &ts, NULL);
    } else {
        rc = io_uring_submit_and_wait(&h->ring, 1);
    }
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) return rc;
    reap(h);
    return 0;
}

struct cancel_all {
    struct ivy_completion c;
    bool done;
    int res;
};

static void cancel_all_complete(struct ivy_completion *c, int res, uint32_t flags)
{
    struct cancel_all *k = (struct cancel_all *)c;
    (void)flags;
    k->done = true;
    k->res = res;
}

void ivy__ring_cancel_all(struct ivy_hub *h)
{
    /* A completion handler may arm a request again (a receive someone is notified on): a few
     * rounds, until a cancellation finds nothing. */
    for (int round = 0; round < 8; round++) {
        struct cancel_all k = {.c.complete = cancel_all_complete};
        struct io_uring_sqe *sqe = ivy__sqe(h);
        io_uring_prep_cancel(sqe, NULL, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data(sqe, &k);
        while (!k.done) {
            if (io_uring_submit_and_wait(&h->ring, 1) < 0)
                return; /* a broken ring: it goes next, unreaped */
            reap(h);
        }
        /* The cancelled requests' last completions may come as task work after the cancel's
         * own: one more pass for those. */
        io_uring_get_events(&h->ring);
        reap(h);
        if (k.res <= 0) break; /* -ENOENT: nothing was left to cancel */
    }
    if (h->fixed_slots > 0) io_uring_unregister_files(&h->ring);
}

static void op_complete(struct ivy_completion *c, int res, uint32_t flags)
{
    struct ivy_op *op = (struct ivy_op *)c;
    struct ivy_hub *h = ivy__hub_tls;
    h->stats.inflight--;
    op->flags = flags;
    if (res == -ECANCELED && op->interrupted) res = op->interrupted;
    op->t->interrupt = NULL;
    ivy__ready(op->t, res);
}

/* Kill or deadline: ask the kernel to cancel; the thread wakes when the request answers. */
static void op_interrupt(ivy_thread *t, int err)
{
    struct ivy_op *op = t->wait_obj;
    struct ivy_hub *h = ivy__hub_tls;
    if (op->interrupted) return;
    op->interrupted = err;
    struct io_uring_sqe *sqe = ivy__sqe(h);
    io_uring_prep_cancel(sqe, op, 0);
    io_uring_sqe_set_data(sqe, NULL);
}

int ivy__op_wait(struct ivy_hub *h, ivy_thread *t, struct io_uring_sqe *sqe, struct ivy_op *op)
{
    op->c.complete = op_complete;
    op->t = t;
    op->interrupted = 0;
    op->flags = 0;
    io_uring_sqe_set_data(sqe, op);
    h->stats.inflight++;
    t->wait_obj = op;
    t->interrupt = op_interrupt;
    return ivy__park(t);
}
