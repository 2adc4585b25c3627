/*
 * Green libc, sockets: connect, accept, the read/recv and write/send families, and close.
 *
 * On a green thread of a running hub these suspend only the calling thread; anywhere else they
 * are libc's (see green_impl.h for the check). Transfers try the system call non-blocking first
 * (MSG_DONTWAIT: one system call when data or room is there, as with libc), and only when it
 * would block read what the program set on the descriptor, straight from the kernel, so fcntl,
 * ioctl(FIONBIO), SOCK_NONBLOCK and setsockopt need no interposer of their own to stay
 * consistent: a non-blocking descriptor gets EAGAIN, a blocking one waits for readiness through
 * the ring within its SO_RCVTIMEO/SO_SNDTIMEO (EAGAIN when that runs out, as Linux says), then
 * tries again. Blocking sends send everything, as libc's do. Descriptors that are not sockets
 * (pipes, terminals, files) are read and written through the ring at their file position.
 * These never use ivy's multishot receive, so close(2) has nothing to cancel for them; close
 * only drops the state ivy's own calls may have left on the descriptor.
 */
#include "green_impl.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

__thread void *const *ivy__green_cur;
const struct ivy__green_ops *ivy__green_ops;

void ivy__green_bind(void *const *current, const struct ivy__green_ops *ops)
{
    if (ops && (ops->abi != IVY_GREEN_ABI || ops->size < sizeof *ops)) {
        fprintf(stderr,
                "ivy: green libc: the program's ivy speaks another interface (%u); "
                "its calls stay libc's\n",
                ops->abi);
        return;
    }
    if (ops) __atomic_store_n(&ivy__green_ops, ops, __ATOMIC_RELEASE);
    ivy__green_cur = current;
}

void *ivy__green_next(const char *name)
{
    void *f = dlsym(RTLD_NEXT, name);
    if (!f) {
        fprintf(stderr, "ivy: green libc: libc has no %s\n", name);
        abort();
    }
    return f;
}

bool ivy__green_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl >= 0 && (fl & O_NONBLOCK);
}

int64_t ivy__green_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t ivy__green_deadline(int fd, int opt)
{
    struct timeval tv;
    socklen_t len = sizeof tv;
    if (getsockopt(fd, SOL_SOCKET, opt, &tv, &len) < 0 || (!tv.tv_sec && !tv.tv_usec)) return -1;
    return ivy__green_now() + (int64_t)tv.tv_sec * 1000000000 + (int64_t)tv.tv_usec * 1000;
}

GREEN_REAL(recvmsg)
GREEN_REAL(sendmsg)
GREEN_REAL(read)
GREEN_REAL(readv)
GREEN_REAL(write)
GREEN_REAL(writev)
GREEN_REAL(recv)
GREEN_REAL(recvfrom)
GREEN_REAL(send)
GREEN_REAL(sendto)
GREEN_REAL(connect)
GREEN_REAL(accept)
GREEN_REAL(accept4)
GREEN_REAL(close)

#define NOT_SOCKET (-2) /* a transfer's answer for a descriptor that is not a socket */
#define UNREAD     (-2) /* a deadline not read from the socket yet */

/*
 * Waits until fd is ready for ev, within the socket's timeout opt (read on the first wait):
 * 0, or -1 with errno: EAGAIN when the timeout ran out, ECANCELED (killed), ETIMEDOUT (an
 * ivy_timeout scope expired).
 */
static int wait_ready(int fd, short ev, int opt, int64_t *deadline)
{
    if (*deadline == UNREAD) *deadline = ivy__green_deadline(fd, opt);
    int64_t left = -1;
    if (*deadline >= 0 && (left = *deadline - ivy__green_now()) <= 0) {
        errno = EAGAIN;
        return -1;
    }
    struct pollfd p = {.fd = fd, .events = ev};
    int rc = ivy__green_ops->poll(&p, 1, left);
    if (rc > 0) return 0;
    errno = rc == 0 ? EAGAIN : -rc;
    return -1;
}

/* The descriptor would block: true when the program wants to hear so (EAGAIN) at once. */
static bool wants_eagain(int fd, int flags)
{
    return (flags & MSG_DONTWAIT) || ivy__green_nonblocking(fd);
}

/* One receive as a blocking recvmsg would make it; NOT_SOCKET when any_fd and fd is none. */
static ssize_t sock_in(int fd, struct msghdr *m, int flags, bool any_fd)
{
    int64_t deadline = UNREAD;
    for (;;) {
        ssize_t n = REAL(recvmsg)(fd, m, flags | MSG_DONTWAIT);
        if (n >= 0) return n;
        int e = errno;
        if (e == ENOTSOCK && any_fd) return NOT_SOCKET;
        if (e == EINTR) continue;
        if (e != EAGAIN || wants_eagain(fd, flags)) {
            errno = e;
            return -1;
        }
        if (wait_ready(fd, POLLIN, SO_RCVTIMEO, &deadline) < 0) return -1;
    }
}

/* Skips n bytes of m's iovecs; false once nothing is left. */
static bool advance(struct msghdr *m, size_t n)
{
    while (m->msg_iovlen && n >= m->msg_iov->iov_len) {
        n -= m->msg_iov->iov_len;
        m->msg_iov++;
        m->msg_iovlen--;
    }
    if (!m->msg_iovlen) return false;
    m->msg_iov->iov_base = (char *)m->msg_iov->iov_base + n;
    m->msg_iov->iov_len -= n;
    return true;
}

/*
 * Sends all of m as a blocking sendmsg would (m's iovecs are the caller's copy: partial sends
 * advance them); what was sent when the timeout or an interruption came, if anything was.
 */
static ssize_t sock_out(int fd, struct msghdr *m, int flags, bool any_fd)
{
    int64_t deadline = UNREAD;
    ssize_t total = 0;
    for (;;) {
        ssize_t n = REAL(sendmsg)(fd, m, flags | MSG_DONTWAIT);
        if (n >= 0) {
            total += n;
            if (!advance(m, (size_t)n) || wants_eagain(fd, flags)) return total;
        } else {
            int e = errno;
            if (e == ENOTSOCK && any_fd) return NOT_SOCKET;
            if (e == EINTR) continue;
            if (e != EAGAIN || wants_eagain(fd, flags)) {
                errno = e;
                return total ? total : -1;
            }
        }
        if (wait_ready(fd, POLLOUT, SO_SNDTIMEO, &deadline) < 0) return total ? total : -1;
    }
}

/* read/readv/write/writev on a descriptor that is not a socket. */
static ssize_t file_io(int fd, const struct iovec *iov, int cnt, bool write)
{
    if (ivy__green_nonblocking(fd))
        return write ? REAL(writev)(fd, iov, cnt) : REAL(readv)(fd, iov, cnt);
    return green_ret(ivy__green_ops->rw(fd, iov, cnt, write));
}

/* The caller's iovecs, copied so that partial sends can advance them. */
struct iov_copy {
    struct iovec local[16], *v;
};

static struct iovec *iov_copy(struct iov_copy *c, const struct iovec *iov, int cnt)
{
    if (cnt < 0 || cnt > IOV_MAX) return NULL;
    c->v = cnt <= 16 ? c->local : malloc((size_t)cnt * sizeof *iov);
    if (c->v && cnt) memcpy(c->v, iov, (size_t)cnt * sizeof *iov);
    return c->v;
}

static void iov_free(struct iov_copy *c)
{
    if (c->v != c->local) free(c->v);
}

static __attribute__((noinline)) ssize_t g_read(int fd, void *buf, size_t n)
{
    struct iovec v = {buf, n};
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
    ssize_t rc = sock_in(fd, &m, 0, true);
    return rc != NOT_SOCKET ? rc : file_io(fd, &v, 1, false);
}

ssize_t read(int fd, void *buf, size_t n)
{
    if (!green_here()) return REAL(read)(fd, buf, n);
    return g_read(fd, buf, n);
}

static __attribute__((noinline)) ssize_t g_readv(int fd, const struct iovec *iov, int cnt)
{
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)cnt};
    ssize_t rc = sock_in(fd, &m, 0, true);
    return rc != NOT_SOCKET ? rc : file_io(fd, iov, cnt, false);
}

ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
    if (!green_here() || cnt < 0 || cnt > IOV_MAX) return REAL(readv)(fd, iov, cnt);
    return g_readv(fd, iov, cnt);
}

static __attribute__((noinline)) ssize_t g_recv(int fd, void *buf, size_t n, int flags)
{
    size_t got = 0;
    do { /* MSG_WAITALL on a blocking socket: until n bytes, end of stream or an error */
        struct iovec v = {(char *)buf + got, n - got};
        struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
        ssize_t rc = sock_in(fd, &m, flags & ~MSG_WAITALL, false);
        if (rc < 0) return got ? (ssize_t)got : -1;
        if (rc == 0) break;
        got += (size_t)rc;
    } while ((flags & MSG_WAITALL) && got < n && !wants_eagain(fd, flags));
    return (ssize_t)got;
}

ssize_t recv(int fd, void *buf, size_t n, int flags)
{
    if (!green_here()) return REAL(recv)(fd, buf, n, flags);
    return g_recv(fd, buf, n, flags);
}

static __attribute__((noinline)) ssize_t g_recvfrom(int fd, void *buf, size_t n, int flags,
                                                    struct sockaddr *addr, socklen_t *alen)
{
    struct iovec v = {buf, n};
    struct msghdr m = {
        .msg_iov = &v, .msg_iovlen = 1, .msg_name = addr, .msg_namelen = addr && alen ? *alen : 0};
    if (!addr) return sock_in(fd, &m, flags, false);
    ssize_t rc = sock_in(fd, &m, flags, false);
    if (rc >= 0 && alen) *alen = m.msg_namelen;
    return rc;
}

ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *alen)
{
    if (!green_here()) return REAL(recvfrom)(fd, buf, n, flags, addr, alen);
    return g_recvfrom(fd, buf, n, flags, addr, alen);
}

static __attribute__((noinline)) ssize_t g_recvmsg(int fd, struct msghdr *msg, int flags)
{
    return sock_in(fd, msg, flags, false);
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    if (!green_here()) return REAL(recvmsg)(fd, msg, flags);
    return g_recvmsg(fd, msg, flags);
}

/*
 * The fortified entry points (_FORTIFY_SOURCE) a program calls instead when the compiler knows
 * its buffer's size: libc's own check first (it aborts on an overflow), then the green call.
 */
ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags, struct sockaddr *addr,
                       socklen_t *alen);
GREEN_REAL(__read_chk)
GREEN_REAL(__recv_chk)
GREEN_REAL(__recvfrom_chk)

ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
    if (!green_here() || n > buflen) return REAL(__read_chk)(fd, buf, n, buflen);
    return g_read(fd, buf, n);
}

ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
    if (!green_here() || n > buflen) return REAL(__recv_chk)(fd, buf, n, buflen, flags);
    return g_recv(fd, buf, n, flags);
}

ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags, struct sockaddr *addr,
                       socklen_t *alen)
{
    if (!green_here() || n > buflen)
        return REAL(__recvfrom_chk)(fd, buf, n, buflen, flags, addr, alen);
    return g_recvfrom(fd, buf, n, flags, addr, alen);
}

/* write/writev/send/sendto/sendmsg: one path over a copy of the iovecs. */
static ssize_t out(int fd, const struct msghdr *msg, int flags, bool any_fd)
{
    struct iov_copy c;
    struct msghdr m = *msg;
    if (!(m.msg_iov = iov_copy(&c, msg->msg_iov, (int)msg->msg_iovlen))) {
        errno = msg->msg_iovlen > IOV_MAX ? EINVAL : ENOMEM;
        return -1;
    }
    ssize_t rc = sock_out(fd, &m, flags, any_fd);
    iov_free(&c);
    if (rc == NOT_SOCKET) return file_io(fd, msg->msg_iov, (int)msg->msg_iovlen, true);
    return rc;
}

static __attribute__((noinline)) ssize_t g_write(int fd, const void *buf, size_t n)
{
    struct iovec v = {(void *)buf, n};
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
    return out(fd, &m, 0, true);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    if (!green_here()) return REAL(write)(fd, buf, n);
    return g_write(fd, buf, n);
}

static __attribute__((noinline)) ssize_t g_writev(int fd, const struct iovec *iov, int cnt)
{
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)cnt};
    return out(fd, &m, 0, true);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    if (!green_here() || cnt < 0 || cnt > IOV_MAX) return REAL(writev)(fd, iov, cnt);
    return g_writev(fd, iov, cnt);
}

static __attribute__((noinline)) ssize_t g_send(int fd, const void *buf, size_t n, int flags)
{
    struct iovec v = {(void *)buf, n};
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
    return out(fd, &m, flags, false);
}

ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    if (!green_here()) return REAL(send)(fd, buf, n, flags);
    return g_send(fd, buf, n, flags);
}

static __attribute__((noinline)) ssize_t g_sendto(int fd, const void *buf, size_t n, int flags,
                                                  const struct sockaddr *to, socklen_t tolen)
{
    struct iovec v = {(void *)buf, n};
    struct msghdr m = {
        .msg_iov = &v, .msg_iovlen = 1, .msg_name = (void *)to, .msg_namelen = tolen};
    return out(fd, &m, flags, false);
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *to,
               socklen_t tolen)
{
    if (!green_here()) return REAL(sendto)(fd, buf, n, flags, to, tolen);
    return g_sendto(fd, buf, n, flags, to, tolen);
}

static __attribute__((noinline)) ssize_t g_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    return out(fd, msg, flags, false);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    if (!green_here()) return REAL(sendmsg)(fd, msg, flags);
    return g_sendmsg(fd, msg, flags);
}

/* A socket timeout's time left, for the ring's connect and accept: -1 none, else >= 0. */
static int64_t time_left(int fd, int opt)
{
    int64_t d = ivy__green_deadline(fd, opt);
    if (d < 0) return -1;
    int64_t left = d - ivy__green_now();
    return left > 0 ? left : 0;
}

static __attribute__((noinline)) int g_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
    return (int)green_ret(ivy__green_ops->connect(fd, sa, len, time_left(fd, SO_SNDTIMEO)));
}

int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
    if (!green_here() || ivy__green_nonblocking(fd)) return REAL(connect)(fd, sa, len);
    return g_connect(fd, sa, len);
}

static __attribute__((noinline)) int g_accept4(int fd, struct sockaddr *sa, socklen_t *len,
                                               int flags)
{
    return (int)green_ret(ivy__green_ops->accept(fd, sa, len, flags, time_left(fd, SO_RCVTIMEO)));
}

int accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
    if (!green_here() || ivy__green_nonblocking(fd)) return REAL(accept4)(fd, sa, len, flags);
    return g_accept4(fd, sa, len, flags);
}

static __attribute__((noinline)) int g_accept(int fd, struct sockaddr *sa, socklen_t *len)
{
    return accept4(fd, sa, len, 0);
}

int accept(int fd, struct sockaddr *sa, socklen_t *len)
{
    if (!green_here() || ivy__green_nonblocking(fd)) return REAL(accept)(fd, sa, len);
    return g_accept(fd, sa, len);
}

int close(int fd)
{
    /* On a thread with a hub, even outside green threads: ivy's own receive may hold fd. */
    if (GREEN_UNLIKELY(ivy__green_cur != NULL)) ivy__green_ops->forget(fd);
    return REAL(close)(fd);
}
