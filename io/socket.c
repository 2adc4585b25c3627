/*
 * Green sockets: listen, connect, send, shutdown, close, and positional file I/O, each a
 * single io_uring request made by the calling green thread (io/ring.c's ivy__op_wait), which
 * therefore inherits kill and deadline handling from the ring layer.
 *
 * Accept lives in io/accept.c, receiving in io/recv.c and the buffered reader in io/reader.c.
 */
#include "socket_impl.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ivy/offload.h"

int ivy__op_begin(struct ivy__call *k)
{
    k->t = ivy__self();
    int rc = ivy__blocking_check(k->t);
    if (rc < 0) return rc;
    k->h = ivy__hub_tls;
    k->sqe = ivy__sqe(k->h);
    return 0;
}

/* Parses host into addr without any lookup; false when host is a name. */
static bool numeric_addr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (!host || !*host || !strcmp(host, "*") || !strcmp(host, "0.0.0.0")) {
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (!strcmp(host, "localhost") || inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        if (!strcmp(host, "localhost")) in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof *in6;
        return true;
    } else {
        return false;
    }
    in->sin_port = htons((uint16_t)port);
    *len = sizeof *in;
    return true;
}

int ivy_listen(const char *host, int port, int backlog, int flags)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (port < 0 || port > 65535) return -EINVAL;
    if (!numeric_addr(host, port, &ss, &len)) {
        /* A name: resolved once, at start-up, with the blocking resolver. */
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
        char svc[8];
        snprintf(svc, sizeof svc, "%d", port);
        if (getaddrinfo(host, svc, &hints, &ai) != 0) return -ENOENT;
        memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
        len = ai->ai_addrlen;
        freeaddrinfo(ai);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if ((flags & IVY_REUSEPORT) && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one))
        goto fail;
    if (ss.ss_family == AF_INET6) {
        int v6only = !!(flags & IVY_V6ONLY);
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
    }
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, backlog > 0 ? backlog : 511) < 0)
        goto fail;
    return fd;
fail:;
    int err = -errno;
    close(fd);
    return err;
}

int ivy_local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return -errno;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -EAFNOSUPPORT;
}

static int connect_addr(const struct sockaddr *sa, socklen_t len)
{
    struct ivy__call k;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    ivy__recv_forget(fd); /* state left by a socket of that number closed with close(2) */
    int rc = ivy__op_begin(&k);
    if (rc == 0) {
        io_uring_prep_connect(k.sqe, fd, sa, len);
        rc = ivy__op_end(&k);
    }
    if (rc < 0) {
        close(fd);
        return rc;
    }
    int one = 1; /* request/response traffic: no Nagle delay on small writes */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int connect_any(const char *host, int port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (numeric_addr(host, port, &ss, &len)) return connect_addr((struct sockaddr *)&ss, len);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    char svc[8];
    snprintf(svc, sizeof svc, "%d", port);
    int rc = ivy_getaddrinfo(host, svc, &hints, &res);
    if (rc < 0) return rc;
    rc = -ENOENT;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        rc = connect_addr(ai->ai_addr, ai->ai_addrlen);
        if (rc >= 0 || rc == -ETIMEDOUT || rc == -ECANCELED) break;
    }
    freeaddrinfo(res);
    return rc;
}

int ivy_connect(const char *host, int port, double timeout)
{
    if (port <= 0 || port > 65535) return -EINVAL;
    if (timeout < 0) return connect_any(host, port);
    struct ivy_timeout to;
    int rc = ivy_timeout_begin(&to, timeout);
    if (rc < 0) return rc;
    rc = connect_any(host, port);
    ivy_timeout_end(&to);
    return rc;
}

ssize_t ivy_send(int fd, const void *buf, size_t len)
{
    struct ivy__call k;
    int rc = ivy__op_begin(&k);
    if (rc < 0) return rc;
    io_uring_prep_send(k.sqe, fd, buf, len, MSG_NOSIGNAL);
    return ivy__op_end(&k);
}

ssize_t ivy_sendall(int fd, const void *buf, size_t len)
{
    size_t sent = 0;
    while (sent < len) {
        ssize_t n = ivy_send(fd, (const char *)buf + sent, len - sent);
        if (n < 0) return n;
        sent += (size_t)n;
    }
    return (ssize_t)len;
}

ssize_t ivy_writev(int fd, const struct iovec *iov, int iovcnt)
{
    enum { ON_STACK = 16 };
    struct iovec local[ON_STACK], *v = local;
    if (iovcnt < 0 || iovcnt > IOV_MAX) return -EINVAL;
    if (iovcnt > ON_STACK && !(v = malloc((size_t)iovcnt * sizeof *v))) return -ENOMEM;
    memcpy(v, iov, (size_t)iovcnt * sizeof *v);
    size_t total = 0;
    ssize_t rc = 0;
    struct iovec *cur = v;
    int left = iovcnt;
    while (left > 0) {
        struct ivy__call k;
        struct msghdr msg = {.msg_iov = cur, .msg_iovlen = (size_t)left};
        rc = ivy__op_begin(&k);
        if (rc < 0) break;
        io_uring_prep_sendmsg(k.sqe, fd, &msg, MSG_NOSIGNAL);
        rc = ivy__op_end(&k);
        if (rc < 0) break;
        total += (size_t)rc;
        /* Partial write: skip what went out and send the rest. */
        size_t n = (size_t)rc;
        while (left > 0 && n >= cur->iov_len) {
            n -= cur->iov_len;
            cur++;
            left--;
        }
        if (left > 0) {
            cur->iov_base = (char *)cur->iov_base + n;
            cur->iov_len -= n;
        }
        rc = 0;
    }
    if (v != local) free(v);
    return rc < 0 ? rc : (ssize_t)total;
}

int ivy_shutdown(int fd, int how)
{
    struct ivy__call k;
    int rc = ivy__op_begin(&k);
    if (rc < 0) return shutdown(fd, how) < 0 ? -errno : 0; /* cleanup works when killed too */
    io_uring_prep_shutdown(k.sqe, fd, how);
    return ivy__op_end(&k);
}

int ivy_close(int fd)
{
    ivy__accept_forget(fd);
    ivy__recv_forget(fd);
    struct ivy__call k;
    int rc = ivy__op_begin(&k);
    if (rc < 0) return close(fd) < 0 ? -errno : 0; /* not in a green thread, or killed */
    io_uring_prep_close(k.sqe, fd);
    return ivy__op_end(&k);
}

/* One positional read or write; Linux caps a single transfer at 0x7ffff000 bytes. */
static ssize_t file_rw(int fd, void *buf, size_t len, off_t offset, bool write)
{
    struct ivy__call k;
    if (offset < 0) return -EINVAL;
    int rc = ivy__op_begin(&k);
    if (rc < 0) return rc;
    unsigned n = (unsigned)(len > 0x7ffff000 ? 0x7ffff000 : len);
    if (write)
        io_uring_prep_write(k.sqe, fd, buf, n, (uint64_t)offset);
    else
        io_uring_prep_read(k.sqe, fd, buf, n, (uint64_t)offset);
    return ivy__op_end(&k);
}

ssize_t ivy_pread(int fd, void *buf, size_t len, off_t offset)
{
    return file_rw(fd, buf, len, offset, false);
}

ssize_t ivy_pwrite(int fd, const void *buf, size_t len, off_t offset)
{
    return file_rw(fd, (void *)buf, len, offset, true);
}

/* One splice through the ring; off -1: the descriptor's own position (a pipe's). */
static ssize_t splice_op(int in, int64_t in_off, int out, size_t len)
{
    struct ivy__call k;
    int rc = ivy__op_begin(&k);
    if (rc < 0) return rc;
    io_uring_prep_splice(k.sqe, in, in_off, out, -1, (unsigned)len, SPLICE_F_MOVE);
    return ivy__op_end(&k);
}

ssize_t ivy_sendfile(int sock_fd, int file_fd, off_t offset, size_t len)
{
    enum { PIPE_SIZE = 1 << 20 };
    if (offset < 0) return -EINVAL;
    if (!len) return 0;
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) return -errno;
    /* A larger pipe moves more per splice; the default 64 KiB still works if refused. */
    long cap = fcntl(p[1], F_SETPIPE_SZ, PIPE_SIZE);
    if (cap <= 0) cap = 65536;
    size_t done = 0;
    ssize_t rc = 0;
    while (done < len) {
        size_t want = len - done < (size_t)cap ? len - done : (size_t)cap;
        ssize_t in = splice_op(file_fd, offset + (int64_t)done, p[1], want);
        if (in <= 0) {
            rc = in < 0 ? in : -ENODATA;
            break;
        }
        for (ssize_t left = in; left > 0;) {
            ssize_t out = splice_op(p[0], -1, sock_fd, (size_t)left);
            if (out <= 0) {
                rc = out < 0 ? out : -EPIPE;
                goto out;
            }
            left -= out;
        }
        done += (size_t)in;
    }
out:
    close(p[0]);
    close(p[1]);
    return rc < 0 ? rc : (ssize_t)len;
}
