/* Green socket internals shared by io/socket.c, io/accept.c and io/reader.c. */
#ifndef IVY_SOCKET_IMPL_H
#define IVY_SOCKET_IMPL_H

#include "hub_impl.h"
#include "ivy/socket.h"

/*
 * One request that the calling green thread makes and waits for:
 *
 *     struct ivy__call k;
 *     int rc = ivy__op_begin(&k);
 *     if (rc < 0) return rc;
 *     io_uring_prep_send(k.sqe, fd, buf, len, MSG_NOSIGNAL);
 *     return ivy__op_end(&k);
 *
 * ivy__op_begin checks that the caller may block, then takes an SQE; nothing is taken when it
 * fails, so the caller just returns the error. ivy__op_end submits the SQE, parks until its
 * completion and returns the completion's result (io/ring.c's ivy__op_wait).
 */
struct ivy__call {
    struct ivy_hub *h;
    ivy_thread *t;
    struct io_uring_sqe *sqe;
    struct ivy_op op;
};

int ivy__op_begin(struct ivy__call *k);

static inline int ivy__op_end(struct ivy__call *k)
{
    return ivy__op_wait(k->h, k->t, k->sqe, &k->op);
}

/*
 * From now on, ivy_accept on listen_fd takes connections from the kernel's queue one at a time,
 * as it is called, instead of keeping a multishot accept armed: the rest of the queue stays
 * where SO_REUSEPORT siblings (tcp_migrate_req) can still take it if this process dies.
 */
int ivy__accept_one(int listen_fd);

/* ivy_close's hook: drops the accept state of a listening descriptor. */
void ivy__accept_forget(int fd);

/*
 * The receive side (io/recv.c), for the buffered reader: waits until fd has received bytes and
 * points *p at the first of them, returning how many are there (0 at end of stream, or a
 * negative errno); ivy__recv_take then consumes n of them (n <= that count), with no wait in
 * between. ivy__recv_forget is ivy_close's hook: it cancels the socket's receive.
 */
ssize_t ivy__recv_peek(int fd, const char **p);
void ivy__recv_take(int fd, size_t n);
/* Provided-buffer ring buffers this OS thread's sockets hold (for tests and stats). */
unsigned ivy__recv_ring_held(void);
void ivy__recv_forget(int fd);

#endif
