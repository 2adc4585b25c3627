/*
 * The interface between ivy's hub (io/green_ops.c, in libivy) and green libc (io/green/, in
 * libivy_green.so or linked into a program): green libc needs no ivy symbol at link time, so
 * one libivy_green.so serves every program, whether it links ivy statically or not at all.
 *
 * When a hub starts on an OS thread, ivy looks up ivy__green_bind (dlsym(RTLD_DEFAULT), so it
 * finds a preloaded library and a program's own exported copy alike) and hands it the address
 * of the hub's "running green thread" pointer and a table of operations; green libc keeps the
 * address in a thread-local, so "am I on a green thread of a running hub" is that thread-local
 * and one load through it. The hub unbinds (NULL, NULL) when it is freed.
 */
#ifndef IVY_GREEN_ABI_H
#define IVY_GREEN_ABI_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#define IVY_GREEN_ABI 1

/* Every operation returns a count or 0, or a negative errno (-ECANCELED, -ETIMEDOUT ...). */
struct ivy__green_ops {
    unsigned abi, size; /* IVY_GREEN_ABI, sizeof the struct */
    /* ivy_poll with a timeout in ns (< 0: none): the count ready, 0 at the timeout. */
    int (*poll)(struct pollfd *fds, unsigned n, int64_t timeout_ns);
    int (*sleep)(int64_t ns);
    int (*offload)(void *(*fn)(void *), void *arg, void **result,
                   void (*release)(void *arg, void *result));
    /* readv/writev at the file position, through the ring (descriptors that are not sockets). */
    ssize_t (*rw)(int fd, const struct iovec *iov, int iovcnt, bool write);
    /* Through the ring, on a blocking socket; -EINPROGRESS once timeout_ns (>= 0) passed. */
    int (*connect)(int fd, const struct sockaddr *sa, socklen_t len, int64_t timeout_ns);
    /* Through the ring; -EAGAIN once timeout_ns (>= 0) passed. */
    int (*accept)(int fd, struct sockaddr *sa, socklen_t *len, int flags, int64_t timeout_ns);
    /* close(2)'s hook: drops the hub's receive and accept state of fd. */
    void (*forget)(int fd);
};

typedef void ivy__green_bind_fn(void *const *current, const struct ivy__green_ops *ops);
ivy__green_bind_fn ivy__green_bind;

#endif
