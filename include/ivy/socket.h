/*
 * Green sockets and files: blocking-style calls that suspend only the calling green thread,
 * each one request through the hub's io_uring ring.
 *
 * Every call returns a count or a new descriptor (>= 0), or a negative errno. Besides the
 * socket's own errors: -EPERM outside a green thread, -ECANCELED when the thread is killed,
 * -ETIMEDOUT when an enclosing ivy_timeout scope expires; the request in flight is cancelled
 * first, and if it completed anyway its result is returned, so no byte is lost or duplicated.
 * Sends never raise SIGPIPE: a peer that went away is -EPIPE or -ECONNRESET.
 */
#ifndef IVY_SOCKET_H
#define IVY_SOCKET_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    IVY_REUSEPORT = 1 << 0, /* SO_REUSEPORT: one listener per worker on the same port */
    IVY_V6ONLY = 1 << 1,    /* an IPv6 listener that does not also take IPv4 */
};

/*
 * A listening TCP socket on host:port (host: a numeric address, "localhost", or NULL/"" /
 * "*" for every address; IPv6 literals without brackets). port 0 picks a free port: read it
 * back with ivy_local_port. May be called outside a green thread. Returns the descriptor.
 */
int ivy_listen(const char *host, int port, int backlog, int flags);
int ivy_local_port(int fd);

/*
 * Accepts a connection. While one thread accepts in a loop, a multishot accept stays armed
 * and connections queue up in the hub, so each further accept costs no request at all.
 * Out of descriptors (EMFILE, ENFILE), accept backs off (10 ms doubling to 1 s) and retries;
 * it never spins and never returns those errors. peer may be NULL.
 */
int ivy_accept(int listen_fd, struct sockaddr_storage *peer);

/*
 * Stops accepting on listen_fd: connections already taken from the kernel are still handed
 * out, then ivy_accept fails with -ESHUTDOWN. Those still in the kernel's queue stay there;
 * closing the socket then lets net.ipv4.tcp_migrate_req move them to a sibling listener.
 */
int ivy_accept_stop(int listen_fd);

/* Connects to host:port (names resolved through the offload pool); timeout < 0: none. */
int ivy_connect(const char *host, int port, double timeout);

/*
 * Receives what has arrived, up to len (0 at end of stream). The first receive on a socket arms
 * a multishot receive that stays armed until ivy_close, so a request/response connection makes
 * no request per message: bytes that arrive while nobody receives wait in the hub, in order (at
 * most 128 KiB, small arrivals copied out of the shared buffer ring so that a few bytes never
 * hold a 16 KiB buffer of it; beyond that TCP holds the peer back), and a waiting socket holds no
 * buffer. Hence: a socket received on is read only through ivy_recv and the reader, and closed
 * with ivy_close, not close(2), which would leave the armed receive holding it open.
 */
ssize_t ivy_recv(int fd, void *buf, size_t len);
ssize_t ivy_recv_exact(int fd, void *buf, size_t len);           /* len, or -ENODATA on early EOF */
ssize_t ivy_send(int fd, const void *buf, size_t len);           /* may send less than len */
ssize_t ivy_sendall(int fd, const void *buf, size_t len);        /* len, partial writes looped */
ssize_t ivy_writev(int fd, const struct iovec *iov, int iovcnt); /* all of it, looped */
int ivy_shutdown(int fd, int how);
/*
 * Closes through the ring, after cancelling the socket's armed receive (threads waiting in
 * ivy_recv or a reader on it get -EBADF); outside a green thread (or once killed), with close(2).
 * As with close(2), another request in flight on fd (a send) keeps the socket open and is not
 * woken: to wake it, ivy_shutdown the socket first or ivy_kill the thread.
 */
int ivy_close(int fd);

/* Files: positional read and write through the ring. */
ssize_t ivy_pread(int fd, void *buf, size_t len, off_t offset);
ssize_t ivy_pwrite(int fd, const void *buf, size_t len, off_t offset);

/*
 * Sends len bytes of file_fd from offset to the socket, zero-copy: the ring splices them from
 * the file into a pipe and from the pipe into the socket, so they never reach user memory.
 * Returns len, or a negative errno: -ENODATA when the file ends first (what was sent is gone).
 * A splice into a socket whose peer has gone raises SIGPIPE: ignore it (ivy's workers do).
 */
ssize_t ivy_sendfile(int sock_fd, int file_fd, off_t offset, size_t len);

/*
 * A TCP server: accepts on listen_fd and runs fn(fd, arg) in a green thread of its own for each
 * connection, closing fd with ivy_close when fn returns. Once accepting stops (ivy_accept_stop:
 * a draining cluster worker does it) it closes listen_fd, waits for its connections to end and
 * returns 0, or accept's error; -EINVAL without fn. Connections are
 * counted in the cluster's stats, and a draining worker closes one whose thread waits to receive
 * with nothing queued: that ivy_recv returns -ESHUTDOWN; fn should then return.
 */
typedef void (*ivy_conn_fn)(int fd, void *arg);
int ivy_tcp_serve(int listen_fd, ivy_conn_fn fn, void *arg);

/*
 * A buffered reader over a socket, eventlet's makefile(): lines of any length up to
 * max_line bytes, exact reads. Its buffer is allocated on the first read that needs it and
 * released whenever it is drained, so an idle connection pins no buffer.
 */
typedef struct ivy_reader ivy_reader;
ivy_reader *ivy_reader_new(int fd, size_t max_line); /* NULL + errno */
void ivy_reader_free(ivy_reader *r);                 /* does not close fd */
/*
 * The next line, '\n' included (the last one may lack it): its length, with *line pointing
 * into the reader's buffer until the next call; 0 at end of stream; -EMSGSIZE when a line
 * exceeds max_line (the reader is then unusable).
 */
ssize_t ivy_readline(ivy_reader *r, const char **line);
ssize_t ivy_reader_read(ivy_reader *r, void *buf, size_t len);  /* buffered bytes first */
ssize_t ivy_reader_exact(ivy_reader *r, void *buf, size_t len); /* len or -ENODATA */

#ifdef __cplusplus
}
#endif
#endif
