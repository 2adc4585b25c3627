/*
 * The hub's side of green libc (io/green/): the operations greened calls need, and binding
 * them to green libc, wherever it lives, when a hub starts on a thread (see green/green_abi.h).
 * Without green libc in the process, binding costs one dlsym per process and nothing after.
 */
#include "green/green_abi.h"
#include "poll_impl.h"
#include "socket_impl.h"

#include <dlfcn.h>
#include <pthread.h>

#include "ivy/green.h"
#include "ivy/offload.h"

static int g_sleep(int64_t ns)
{
    int rc = ivy_sleep((double)ns / 1e9);
    return rc < 0 ? rc : 0;
}

static ssize_t g_rw(int fd, const struct iovec *iov, int iovcnt, bool write)
{
    struct ivy__call k;
    int rc = ivy__op_begin(&k);
    if (rc < 0) return rc;
    /* Offset -1: at the file position, advancing it, as read(2) and write(2) do. */
    if (write)
        io_uring_prep_writev(k.sqe, fd, iov, (unsigned)iovcnt, (uint64_t)-1);
    else
        io_uring_prep_readv(k.sqe, fd, iov, (unsigned)iovcnt, (uint64_t)-1);
    return ivy__op_end(&k);
}

/* A socket timeout (SO_SNDTIMEO/SO_RCVTIMEO) running out: the thread's own timer. */
static void connect_timer_fired(struct ivy_timer *tm)
{
    ivy__interrupt((ivy_thread *)((char *)tm - offsetof(ivy_thread, timer)), -EINPROGRESS);
}

static void accept_timer_fired(struct ivy_timer *tm)
{
    ivy__interrupt((ivy_thread *)((char *)tm - offsetof(ivy_thread, timer)), -EAGAIN);
}

/* ivy__op_end, the request cancelled (answering what fire gives) after timeout_ns >= 0. */
static int op_end_timed(struct ivy__call *k, int64_t timeout_ns, void (*fire)(struct ivy_timer *))
{
    bool timed = timeout_ns >= 0;
    if (timed) {
        k->t->timer.fire = fire;
        k->t->timer.deadline = ivy_now_ns() + (uint64_t)timeout_ns;
        if (ivy__timer_add(&k->h->timers, &k->t->timer) < 0) timed = false;
    }
    int rc = ivy__op_end(k);
    if (timed) ivy__timer_cancel(&k->h->timers, &k->t->timer);
    return rc;
}

static int g_connect(int fd, const struct sockaddr *sa, socklen_t len, int64_t timeout_ns)
{
    struct ivy__call k;
    int rc = ivy__op_begin(&k);
    if (rc < 0) return rc;
    ivy__recv_forget(fd); /* state left by a socket of that number closed behind ivy's back */
    io_uring_prep_connect(k.sqe, fd, sa, len);
    return op_end_timed(&k, timeout_ns, connect_timer_fired);
}

static int g_accept(int fd, struct sockaddr *sa, socklen_t *len, int flags, int64_t timeout_ns)
{
    struct ivy__call k;
    int rc = ivy__op_begin(&k);
    if (rc < 0) return rc;
    io_uring_prep_accept(k.sqe, fd, sa, len, flags);
    rc = op_end_timed(&k, timeout_ns, accept_timer_fired);
    if (rc >= 0) ivy__recv_forget(rc);
    return rc;
}

static void g_forget(int fd)
{
    ivy__accept_forget(fd);
    ivy__recv_forget(fd);
}

static const struct ivy__green_ops ops = {
    .abi = IVY_GREEN_ABI,
    .size = sizeof ops,
    .poll = ivy__poll_ns,
    .sleep = g_sleep,
    .offload = ivy_offload_owned,
    .rw = g_rw,
    .connect = g_connect,
    .accept = g_accept,
    .forget = g_forget,
};

static pthread_once_t bind_once = PTHREAD_ONCE_INIT;
static ivy__green_bind_fn *bind_fn;

static void find_bind(void)
{
    bind_fn = (ivy__green_bind_fn *)dlsym(RTLD_DEFAULT, "ivy__green_bind");
}

void ivy__green_attach(struct ivy_hub *h)
{
    pthread_once(&bind_once, find_bind);
    if (bind_fn) bind_fn((void *const *)&h->current, &ops);
}

void ivy__green_detach(void)
{
    if (bind_fn) bind_fn(NULL, NULL);
}

bool ivy_green_enabled(void)
{
    pthread_once(&bind_once, find_bind);
    return bind_fn != NULL;
}
