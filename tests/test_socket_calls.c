/*
 * Tests for io/socket.c, io/accept.c, io/reader.c and io/recv.c beside test_socket.c: each public
 * call's documented results and errors that the end-to-end tests there leave out: ivy_listen's
 * address forms (every address, localhost, IPv6, IVY_V6ONLY), ivy_writev, the reader's
 * read/exact, -ENODATA at an early end and accept's -ESHUTDOWN. Real loopback sockets, real ring.
 */
#include <ivy/ivy.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmocka.h>

#include "util.h"

/* ---- ivy_listen's addresses ---------------------------------------------------------------- */

static struct sockaddr_storage bound(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    return ss;
}

/* A plain blocking connect to addr:port of family af: 0 or -errno. */
static int try_connect(int af, const char *addr, int port)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (af == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, addr, &in->sin_addr);
        len = sizeof *in;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        inet_pton(AF_INET6, addr, &in6->sin6_addr);
        len = sizeof *in6;
    }
    int fd = socket(af, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    int rc = connect(fd, (struct sockaddr *)&ss, len) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

/* Listens on host: it must be bound to the IPv4 address want and take a connection. */
static void listen_v4(const char *host, uint32_t want)
{
    int fd = ivy_listen(host, 0, 8, 0);
    assert_true(fd >= 0);
    struct sockaddr_storage ss = bound(fd);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(want));
    assert_int_equal(try_connect(AF_INET, "127.0.0.1", ivy_local_port(fd)), 0);
    close(fd);
}

static void listen_on_every_address_and_on_localhost(void **state)
{
    static const char *const any[] = {NULL, "", "*", "0.0.0.0"};
    for (size_t i = 0; i < sizeof any / sizeof *any; i++)
        listen_v4(any[i], INADDR_ANY);
    listen_v4("localhost", INADDR_LOOPBACK);
    /* Misuse and names that cannot be. */
    assert_int_equal(ivy_listen("127.0.0.1", -1, 8, 0), -EINVAL);
    assert_int_equal(ivy_listen("no-such-host..invalid", 0, 8, 0), -ENOENT); /* no DNS asked */
    int fd = ivy_listen("127.0.0.1", 0, 8, 0);
    assert_int_equal(ivy_listen("127.0.0.1", ivy_local_port(fd), 8, 0), -EADDRINUSE);
    close(fd);
}

static bool ipv6_loopback_works(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0) return false;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void listen_on_ipv6_with_and_without_v6only(void **state)
{
    if (!ipv6_loopback_works()) {
        print_message("no IPv6 loopback on this machine (::1 cannot be bound): skipped\n");
        skip();
    }
    int fd = ivy_listen("::1", 0, 8, 0);
    assert_true(fd >= 0);
    struct sockaddr_storage ss = bound(fd);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_memory_equal(&((struct sockaddr_in6 *)&ss)->sin6_addr, &in6addr_loopback,
                        sizeof in6addr_loopback);
    assert_int_equal(try_connect(AF_INET6, "::1", ivy_local_port(fd)), 0);
    close(fd);
    /* "::" takes IPv4 too, unless IVY_V6ONLY. */
    fd = ivy_listen("::", 0, 8, 0);
    assert_true(fd >= 0);
    int port = ivy_local_port(fd);
    assert_int_equal(try_connect(AF_INET6, "::1", port), 0);
    assert_int_equal(try_connect(AF_INET, "127.0.0.1", port), 0);
    close(fd);
    fd = ivy_listen("::", 0, 8, IVY_V6ONLY);
    assert_true(fd >= 0);
    port = ivy_local_port(fd);
    assert_int_equal(try_connect(AF_INET6, "::1", port), 0);
    assert_int_equal(try_connect(AF_INET, "127.0.0.1", port), -ECONNREFUSED);
    close(fd);
}

/* ---- connected pairs ------------------------------------------------------------------------ */

struct pair {
    int a, b; /* a: accepted, b: connected; both green sockets */
};

static struct pair pair_open(void)
{
    int lfd = ivy_listen("127.0.0.1", 0, 8, 0);
    assert_true(lfd >= 0);
    struct pair p = {-1, ivy_connect("127.0.0.1", ivy_local_port(lfd), 5)};
    assert_true(p.b >= 0);
    p.a = ivy_accept(lfd, NULL);
    assert_true(p.a >= 0);
    ivy_close(lfd);
    return p;
}

/* ---- ivy_writev ---------------------------------------------------------------------------- */

enum { IOVS = 40, PIECE = 64 << 10 }; /* more iovecs than writev keeps on its stack; 2.5 MiB */

static unsigned char byte_at(size_t k)
{
    return (unsigned char)(k * 7 + k / 65536);
}

struct drain {
    int fd;
    size_t got; /* bytes received, 0 if any differed */
};

static void *drain_slowly(void *arg)
{
    struct drain *d = arg;
    unsigned char buf[4096];
    size_t k = 0;
    bool exact = true;
    ssize_t n;
    while ((n = ivy_recv(d->fd, buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < n; i++, k++)
            exact = exact && buf[i] == byte_at(k);
    d->got = exact ? k : 0;
    return NULL;
}

static void *writev_all(void *arg)
{
    struct pair p = pair_open();
    unsigned char *data = malloc((size_t)IOVS * PIECE);
    for (size_t k = 0; k < (size_t)IOVS * PIECE; k++)
        data[k] = byte_at(k);
    /* Pieces of uneven sizes, some empty, covering data exactly. */
    struct iovec iov[IOVS];
    size_t off = 0;
    for (int i = 0; i < IOVS; i++) {
        size_t len = i % 5 == 3      ? 0
                     : i == IOVS - 1 ? (size_t)IOVS * PIECE - off
                                     : (size_t)(PIECE + i);
        iov[i] = (struct iovec){data + off, len};
        off += len;
    }
    assert_int_equal(off, (size_t)IOVS * PIECE);
    struct drain d = {p.a, 0};
    ivy_thread *reader = ivy_spawn(drain_slowly, &d);
    int small = 16 << 10; /* partial writes for sure */
    setsockopt(p.b, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    assert_int_equal(ivy_writev(p.b, iov, IOVS), (ssize_t)IOVS * PIECE);
    assert_int_equal(ivy_writev(p.b, iov, 0), 0);
    assert_int_equal(ivy_writev(p.b, iov, -1), -EINVAL);
    assert_int_equal(ivy_writev(p.b, iov, IOV_MAX + 1), -EINVAL);
    ivy_shutdown(p.b, SHUT_WR);
    assert_int_equal(ivy_join(reader, NULL), 0);
    assert_int_equal(d.got, (size_t)IOVS * PIECE);
    /* The peer gone: -EPIPE or -ECONNRESET, never SIGPIPE. */
    ivy_close(p.a);
    ssize_t rc = 0;
    for (int i = 0; i < 100 && rc >= 0; i++)
        rc = ivy_writev(p.b, iov, 2);
    assert_true(rc == -EPIPE || rc == -ECONNRESET);
    ivy_close(p.b);
    free(data);
    return NULL;
}

static void writev_sends_every_iovec_in_order_across_partial_writes(void **state)
{
    ivy_spawn_n(writev_all, NULL);
    assert_int_equal(ivy_run(), 0);
    struct iovec iov = {"x", 1};
    assert_int_equal(ivy_writev(0, &iov, 1), -EPERM); /* not a green thread */
}

/* ---- the reader's read and exact, recv_exact's early end ----------------------------------- */

static void *reader_calls(void *arg)
{
    struct pair p = pair_open();
    ivy_reader *r = ivy_reader_new(p.a, 64);
    assert_non_null(r);
    assert_int_equal(ivy_sendall(p.b, "line one\nrest of it", 19), 19);
    const char *line;
    assert_int_equal(ivy_readline(r, &line), 9);
    assert_memory_equal(line, "line one\n", 9);
    char buf[32];
    /* Buffered bytes first, no more than asked, then what arrives next. */
    assert_int_equal(ivy_reader_read(r, buf, 4), 4);
    assert_memory_equal(buf, "rest", 4);
    assert_int_equal(ivy_reader_read(r, buf, sizeof buf), 6);
    assert_memory_equal(buf, " of it", 6);
    assert_int_equal(ivy_sendall(p.b, "0123456789", 10), 10);
    assert_int_equal(ivy_reader_exact(r, buf, 3), 3);
    assert_memory_equal(buf, "012", 3);
    assert_int_equal(ivy_reader_read(r, buf, 0), 0);
    /* exact across two sends, then an end before len: -ENODATA. */
    assert_int_equal(ivy_sendall(p.b, "abc", 3), 3);
    assert_int_equal(ivy_reader_exact(r, buf, 10), 10);
    assert_memory_equal(buf, "3456789abc", 10);
    assert_int_equal(ivy_sendall(p.b, "xy", 2), 2);
    ivy_shutdown(p.b, SHUT_WR);
    assert_int_equal(ivy_reader_exact(r, buf, 3), -ENODATA);
    assert_int_equal(ivy_reader_read(r, buf, sizeof buf), 0); /* the end, after the bytes */
    ivy_reader_free(r);
    /* The same for ivy_recv_exact on the other direction. */
    assert_int_equal(ivy_sendall(p.a, "pq", 2), 2);
    ivy_shutdown(p.a, SHUT_WR);
    assert_int_equal(ivy_recv_exact(p.b, buf, 3), -ENODATA);
    assert_int_equal(ivy_recv(p.b, buf, sizeof buf), 0);
    ivy_close(p.a);
    ivy_close(p.b);
    return NULL;
}

static void reader_read_and_exact_and_enodata_at_an_early_end(void **state)
{
    ivy_spawn_n(reader_calls, NULL);
    assert_int_equal(ivy_run(), 0);
}

/* ---- accept after ivy_accept_stop ---------------------------------------------------------- */

struct stopping {
    int lfd, first, second, waiter;
};

static void *accept_and_note(void *arg)
{
    struct stopping *s = arg;
    s->waiter = ivy_accept(s->lfd, NULL); /* parked: nothing queued */
    return NULL;
}

static void *stop_accepting(void *arg)
{
    struct stopping *s = arg;
    s->lfd = ivy_listen("127.0.0.1", 0, 8, 0);
    int port = ivy_local_port(s->lfd);
    int c = ivy_connect("127.0.0.1", port, 5);
    s->first = ivy_accept(s->lfd, NULL); /* arms the multishot; the connection is handed out */
    ivy_thread *w = ivy_spawn(accept_and_note, s);
    assert_int_equal(ivy_sleep(0), 0); /* it runs and parks: nothing to accept */
    assert_int_equal(ivy_accept_stop(s->lfd), 0);
    assert_int_equal(ivy_join(w, NULL), 0);
    s->second = ivy_accept(s->lfd, NULL);
    ivy_close(s->first);
    ivy_close(c);
    ivy_close(s->lfd);
    return NULL;
}

static void accept_after_stop_is_eshutdown(void **state)
{
    struct stopping s = {-1, -1, -1, -1};
    ivy_spawn_n(stop_accepting, &s);
    assert_int_equal(ivy_run(), 0);
    assert_true(s.first >= 0);
    assert_int_equal(s.waiter, -ESHUTDOWN); /* the parked accept is woken with it */
    assert_int_equal(s.second, -ESHUTDOWN); /* and every later one */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(listen_on_every_address_and_on_localhost),
        cmocka_unit_test(listen_on_ipv6_with_and_without_v6only),
        cmocka_unit_test(writev_sends_every_iovec_in_order_across_partial_writes),
        cmocka_unit_test(reader_read_and_exact_and_enodata_at_an_early_end),
        cmocka_unit_test(accept_after_stop_is_eshutdown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
