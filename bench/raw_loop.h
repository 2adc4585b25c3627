/*
 * What the two raw io_uring baselines (raw_echo_server.c, raw_http_server.c) share: the ring
 * with the fastest set-up flags the kernel takes, the listener with multishot accept, a
 * signalfd read through the ring so SIGTERM ends the loop without a race, a provided-buffer
 * ring for multishot receives, and the completion loop itself. They are deliberately free of
 * ivy (no greenlets, no hub): they are the peer ivy's abstraction tax is measured against.
 *
 * Static functions in a header because each bench source is built alone into its own executable;
 * each server includes this once and passes its handlers to raw_run, where the compiler can inline
 * them.
 *
 * Connections are direct descriptors: multishot accept puts each socket in a slot of the
 * ring's registered file table and never in the process's fd table, so no request on it pays
 * for a file lookup and reference count, and the servers index their connection tables by slot.
 * A full table makes the kernel drop the connection it has just accepted (-ENFILE) instead of
 * leaving it queued; the table is as large as the fd limit allows, so that happens only where
 * plain accept would have failed with EMFILE. Needs Linux >= 6.0 (multishot recv).
 * user_data packs (op << 32 | slot). A slot is closed only once none of its requests is in
 * flight, so a completion can never name a reused slot.
 */
#ifndef IVY_BENCH_RAW_LOOP_H
#define IVY_BENCH_RAW_LOOP_H

#include <liburing.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

enum raw_op { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_SIGNAL, OP_ACCEPT_RETRY, OP_QUIET };

#define RAW_UD(op, slot) ((uint64_t)(op) << 32 | (uint32_t)(slot))

enum { RAW_SQ_ENTRIES = 4096, RAW_CQ_ENTRIES = 16384, RAW_BGID = 1 };

struct raw_loop {
    struct io_uring ring;
    const char *name;
    int listen_fd, signal_fd;
    struct signalfd_siginfo siginfo;
    struct __kernel_timespec accept_backoff;
    struct io_uring_buf_ring *br;
    char *bufs;
    unsigned buf_count, buf_size;
    unsigned recycled; /* buffers handed back but not yet published to the kernel */
    bool stop;
};

static void raw_die(const struct raw_loop *l, const char *what, int err)
{
    fprintf(stderr, "%s: %s: %s\n", l->name, what, strerror(err));
    exit(1);
}

static struct io_uring_sqe *raw_sqe(struct raw_loop *l)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);
    if (!sqe) {
        /* SQ full mid-batch: flush it early rather than drop work. */
        io_uring_submit(&l->ring);
        sqe = io_uring_get_sqe(&l->ring);
        if (!sqe) raw_die(l, "submission queue full", EBUSY);
    }
    return sqe;
}

/* Tries the flags from fastest to most portable; says on stderr what it had to give up. */
static void raw_ring_init(struct raw_loop *l)
{
    /* DEFER_TASKRUN runs completions only inside our io_uring_enter: no IPIs, no task-work
     * interrupting us mid-batch. SUBMIT_ALL keeps one bad SQE from stalling the rest. */
    static const struct {
        unsigned flags;
        const char *missing;
    } tries[] = {
        {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL, NULL},
        {IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL, "SINGLE_ISSUER|DEFER_TASKRUN"},
        {0, "COOP_TASKRUN"},
    };
    int ret = -EINVAL;
    for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]) && ret == -EINVAL; i++) {
        struct io_uring_params p = {.flags = tries[i].flags | IORING_SETUP_CQSIZE,
                                    .cq_entries = RAW_CQ_ENTRIES};
        ret = io_uring_queue_init_params(RAW_SQ_ENTRIES, &l->ring, &p);
        if (ret == 0 && tries[i].missing)
            fprintf(stderr, "%s: kernel lacks IORING_SETUP_%s, falling back\n", l->name,
                    tries[i].missing);
    }
    if (ret == -ENOSYS || ret == -EPERM)
        raw_die(l, "io_uring unavailable (old kernel, kernel.io_uring_disabled or seccomp)", -ret);
    if (ret < 0) raw_die(l, "io_uring_queue_init_params", -ret);
    /* A registered ring fd saves an fdget/fdput on every io_uring_enter; optional. */
    io_uring_register_ring_fd(&l->ring);
}

static void raw_bufs_init(struct raw_loop *l, unsigned count, unsigned size)
{
    size_t ring_bytes = count * sizeof(struct io_uring_buf);
    l->br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (l->br == MAP_FAILED) raw_die(l, "mmap buffer ring", errno);
    l->bufs = malloc((size_t)count * size);
    if (!l->bufs) raw_die(l, "malloc buffers", ENOMEM);
    struct io_uring_buf_reg reg = {
        .ring_addr = (uintptr_t)l->br, .ring_entries = count, .bgid = RAW_BGID};
    int ret = io_uring_register_buf_ring(&l->ring, &reg, 0);
    if (ret < 0) raw_die(l, "io_uring_register_buf_ring (kernel < 5.19?)", -ret);
    io_uring_buf_ring_init(l->br);
    l->buf_count = count;
    l->buf_size = size;
    for (unsigned bid = 0; bid < count; bid++)
        io_uring_buf_ring_add(l->br, l->bufs + (size_t)bid * size, size, (unsigned short)bid,
                              io_uring_buf_ring_mask(count), (int)bid);
    io_uring_buf_ring_advance(l->br, (int)count);
}

static inline char *raw_buf(struct raw_loop *l, unsigned bid)
{
    return l->bufs + (size_t)bid * l->buf_size;
}

/* Returns a buffer; raw_run publishes a batch's worth with one release store. */
static inline void raw_buf_recycle(struct raw_loop *l, unsigned bid)
{
    io_uring_buf_ring_add(l->br, raw_buf(l, bid), l->buf_size, (unsigned short)bid,
                          io_uring_buf_ring_mask(l->buf_count), (int)l->recycled++);
}

static void raw_arm_accept(struct raw_loop *l)
{
    struct io_uring_sqe *sqe = raw_sqe(l);
    io_uring_prep_multishot_accept_direct(sqe, l->listen_fd, NULL, NULL, 0);
    io_uring_sqe_set_data64(sqe, RAW_UD(OP_ACCEPT, l->listen_fd));
}

static void raw_arm_signal(struct raw_loop *l)
{
    struct io_uring_sqe *sqe = raw_sqe(l);
    io_uring_prep_read(sqe, l->signal_fd, &l->siginfo, sizeof(l->siginfo), 0);
    io_uring_sqe_set_data64(sqe, RAW_UD(OP_SIGNAL, l->signal_fd));
}

static inline void raw_arm_recv(struct raw_loop *l, int slot)
{
    struct io_uring_sqe *sqe = raw_sqe(l);
    io_uring_prep_recv_multishot(sqe, slot, NULL, 0, 0);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
    sqe->buf_group = RAW_BGID;
    io_uring_sqe_set_data64(sqe, RAW_UD(OP_RECV, slot));
}

/* MSG_WAITALL makes the kernel finish a short send itself; the caller still copes with one. */
static inline void raw_send(struct raw_loop *l, int slot, const void *p, size_t len)
{
    struct io_uring_sqe *sqe = raw_sqe(l);
    io_uring_prep_send(sqe, slot, p, len, MSG_NOSIGNAL | MSG_WAITALL);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, RAW_UD(OP_SEND, slot));
}

static inline void raw_close(struct raw_loop *l, int slot)
{
    struct io_uring_sqe *sqe = raw_sqe(l);
    io_uring_prep_close_direct(sqe, (unsigned)slot);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS; /* nothing to do after a close but see a failure */
    io_uring_sqe_set_data64(sqe, RAW_UD(OP_QUIET, slot));
}

/* Ends a connection's multishot recv (after a failed send) so that it reports and the slot can
 * be closed; the recv's last CQE comes back with -ECANCELED. */
static inline void raw_cancel_recv(struct raw_loop *l, int slot)
{
    struct io_uring_sqe *sqe = raw_sqe(l);
    io_uring_prep_cancel_fd(sqe, slot, IORING_ASYNC_CANCEL_FD_FIXED);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, RAW_UD(OP_QUIET, slot));
}

/* Where a connection stands. Both servers close its slot once nothing of it is in flight (no
 * recv armed, no send) and the stream is over: the peer's FIN or error (eof), or a failed send
 * (dead). */
struct raw_state {
    bool recv_armed, sending, eof, dead;
};

static inline bool raw_can_close(const struct raw_state *s)
{
    return !s->recv_armed && !s->sending && (s->eof || s->dead);
}

/* For a recv CQE without F_MORE: the multishot has ended. A stream that goes on is re-armed,
 * an ended one marked eof. Returns true, having done nothing more, when it ended only for want
 * of provided buffers, which each server handles its own way. */
static inline bool raw_recv_ended(struct raw_loop *l, int slot, struct raw_state *s, int res)
{
    s->recv_armed = false;
    if (res == -ENOBUFS && !s->dead) return true;
    if (res <= 0 || s->dead) {
        s->eof = true; /* 0 is the peer's FIN; an error (reset) ends the stream as well */
        return false;
    }
    s->recv_armed = true; /* the kernel ended the multishot early: keep listening */
    raw_arm_recv(l, slot);
    return false;
}

/* A send failed (reset, broken pipe): end the recv too, so that the slot can be closed. */
static inline void raw_send_failed(struct raw_loop *l, int slot, struct raw_state *s)
{
    s->dead = true;
    if (s->recv_armed) raw_cancel_recv(l, slot);
}

/* How many connections (direct descriptor slots) there can be: the kernel caps a file table at
 * the fd limit, which we raise to its hard cap first. */
static unsigned raw_max_conns(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max > (1u << 20) ? (1u << 20) : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur > (1u << 20) ? (1u << 20) : (unsigned)rl.rlim_cur;
}

/* Parses `NAME PORT`, opens everything and arms accept and the signal read; connection slots
 * will be below max_conns. */
static void raw_setup(struct raw_loop *l, int argc, char **argv, unsigned max_conns, unsigned nbufs,
                      unsigned bufsz)
{
    char *end;
    long port = argc == 2 ? strtol(argv[1], &end, 10) : -1;
    if (argc != 2 || *end || port < 1 || port > 65535) {
        fprintf(stderr, "usage: %s PORT\n", l->name);
        exit(2);
    }
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    l->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (l->signal_fd < 0) raw_die(l, "signalfd", errno);

    l->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l->listen_fd < 0) raw_die(l, "socket", errno);
    int one = 1;
    setsockopt(l->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* Accepted sockets inherit TCP_NODELAY on Linux: one setsockopt here, none per accept. */
    setsockopt(l->listen_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(l->listen_fd, (struct sockaddr *)&sin, sizeof(sin)) != 0)
        raw_die(l, "bind 127.0.0.1", errno);
    if (listen(l->listen_fd, 4096) != 0) raw_die(l, "listen", errno);

    raw_ring_init(l);
    int ret = io_uring_register_files_sparse(&l->ring, max_conns);
    if (ret < 0) raw_die(l, "io_uring_register_files_sparse", -ret);
    raw_bufs_init(l, nbufs, bufsz);
    raw_arm_accept(l);
    raw_arm_signal(l);
    printf("listening on %ld\n", port);
    fflush(stdout);
}

/* A multishot accept that ended is re-armed; after ENFILE (file table full) and the like it
 * waits 10 ms first, since re-arming at once would spin on the same error, and an error that
 * no retry can cure (a kernel without direct multishot accept) ends the program. Returns the
 * new connection's slot, or a negative errno. */
static inline int raw_on_accept(struct raw_loop *l, const struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        int err = -cqe->res;
        if (err == EINVAL || err == EBADF || err == ENOTSOCK || err == EOPNOTSUPP)
            raw_die(l, "multishot accept", err);
        if (err == EMFILE || err == ENFILE || err == ENOMEM || err == ENOBUFS) {
            l->accept_backoff = (struct __kernel_timespec){.tv_nsec = 10 * 1000 * 1000};
            struct io_uring_sqe *sqe = raw_sqe(l);
            io_uring_prep_timeout(sqe, &l->accept_backoff, 0, 0);
            io_uring_sqe_set_data64(sqe, RAW_UD(OP_ACCEPT_RETRY, 0));
        } else {
            raw_arm_accept(l);
        }
    }
    return cqe->res;
}

typedef void (*raw_handler)(struct raw_loop *l, int slot, const struct io_uring_cqe *cqe);

/* The completion loop: submit everything queued and wait in one syscall, reap every CQE there
 * is, publish recycled buffers once per batch, call after_batch. Returns on SIGTERM/SIGINT. */
static inline void raw_run(struct raw_loop *l, raw_handler on_conn, raw_handler on_recv,
                           raw_handler on_send, void (*after_batch)(struct raw_loop *l))
{
    while (!l->stop) {
        int ret = io_uring_submit_and_wait(&l->ring, 1);
        if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
            raw_die(l, "io_uring_submit_and_wait", -ret);
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&l->ring, head, cqe)
        {
            int slot = (int)(uint32_t)cqe->user_data;
            seen++;
            switch (cqe->user_data >> 32) {
            case OP_RECV:
                on_recv(l, slot, cqe);
                break;
            case OP_SEND:
                on_send(l, slot, cqe);
                break;
            case OP_ACCEPT:
                slot = raw_on_accept(l, cqe);
                if (slot >= 0) on_conn(l, slot, cqe);
                break;
            case OP_ACCEPT_RETRY:
                raw_arm_accept(l);
                break;
            case OP_SIGNAL:
                l->stop = true;
                break;
            case OP_QUIET: /* close and cancel post only failures, and need nothing done */
                break;
            }
        }
        io_uring_cq_advance(&l->ring, seen);
        if (l->recycled) {
            io_uring_buf_ring_advance(l->br, (int)l->recycled);
            l->recycled = 0;
        }
        if (after_batch) after_batch(l);
    }
}

static void raw_shutdown(struct raw_loop *l)
{
    close(l->listen_fd);
    io_uring_queue_exit(&l->ring);
    close(l->signal_fd);
    free(l->bufs);
    munmap(l->br, l->buf_count * sizeof(struct io_uring_buf));
}

#endif
