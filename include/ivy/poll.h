/*
 * Readiness: wait until descriptors can be read or written, through the hub's ring
 * (IORING_OP_POLL_ADD), suspending only the calling green thread. This is what drives the
 * asynchronous interfaces of client libraries (hiredis async, curl multi, libpq's non-blocking
 * mode, c-ares) from green threads: the library says which descriptor it waits on, the thread
 * waits for it here, then lets the library do its non-blocking I/O.
 *
 * Semantics are poll(2)'s: events and revents are POLLIN, POLLOUT, POLLPRI, POLLRDHUP; POLLERR
 * and POLLHUP are always reported; a descriptor that is not open reports POLLNVAL; a negative
 * fd is ignored (revents 0). Timeouts are in seconds, < 0 for none. Errors, as in socket.h:
 * -EPERM outside a green thread, -ECANCELED when the thread is killed, -ETIMEDOUT when an
 * enclosing ivy_timeout scope expires (readiness seen meanwhile is dropped: nothing was
 * consumed, so nothing is lost), -EINVAL for bad arguments, -ENOMEM.
 *
 * A hiredis async context driven by one green thread (examples/redis_async.c is the whole
 * program):
 *
 *     while (pending) {                      // replies still due, counted by the callbacks
 *         struct pollfd p = {ac->c.fd, want}; // want: POLLIN/POLLOUT, set by ac->ev hooks
 *         if (ivy_poll(&p, 1, 5.0) <= 0) break;
 *         if (p.revents & (POLLIN | POLLHUP | POLLERR)) redisAsyncHandleRead(ac);
 *         if (p.revents & POLLOUT) redisAsyncHandleWrite(ac);
 *     }
 */
#ifndef IVY_POLL_H
#define IVY_POLL_H

#include <poll.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Waits until one of fds[0..n) has an event of its events (or an error or hang-up), or timeout
 * seconds pass. Fills every revents and returns how many have revents != 0 (> 0), or 0 when
 * the timeout passed first. timeout 0 only looks (a poll(2) that never waits, allowed outside
 * green threads too); n 0 just sleeps for timeout (-EINVAL if it is forever).
 */
int ivy_poll(struct pollfd *fds, unsigned n, double timeout);

/* One descriptor: its revents (> 0), 0 when timeout passed first, or a negative errno
   (-EBADF for fd < 0). */
int ivy_wait_fd(int fd, short events, double timeout);

#ifdef __cplusplus
}
#endif
#endif
