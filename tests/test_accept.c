/*
 * Tests for io/accept.c's two ways of taking connections from the kernel: the default multishot
 * accept, which drains the listen queue into the hub, and one at a time (ivy__accept_one), which
 * leaves it in the kernel. Real loopback sockets; the kernel's queue length is read with
 * TCP_INFO, which reports it for a listening socket in tcpi_unacked.
 */
#include <ivy/ivy.h>

#include "socket_impl.h"
#include "skip.h"
#include "util.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

enum { NCLIENTS = 5, MAX_DIALS = 64 };

/* Connections waiting in the kernel's accept queue of a listening socket. */
static int queued(int lfd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    assert_int_equal(getsockopt(lfd, IPPROTO_TCP, TCP_INFO, &ti, &len), 0);
    return (int)ti.tcpi_unacked;
}

/* The queue length once it reaches want, or what it is after 2 s. Does not yield. */
static int wait_queued(int lfd, int want)
{
    for (int i = 0; i < 200 && queued(lfd) != want; i++)
        sleep_ms(10);
    return queued(lfd);
}

static int listen_any(int port, int flags)
{
    int fd = ivy_listen("127.0.0.1", port, 128, flags);
    assert_true(fd >= 0);
    return fd;
}

struct run {
    int lfd;
    int clients[MAX_DIALS];
    int nclients;
    int fds[MAX_DIALS]; /* accepted */
    int naccepted;
    int queued_after[MAX_DIALS]; /* the kernel's queue after each accept */
    int queued_later;            /* ... after the first, once the hub has run a while */
};

static void dial_n(struct run *r, int port, int n)
{
    for (int i = 0; i < n; i++) {
        r->clients[r->nclients] = dial(port);
        assert_true(r->clients[r->nclients] >= 0);
        r->nclients++;
    }
}

static void *settle(void *arg)
{
    ivy_sleep(0.01);
    return NULL;
}

/* A closed listener with an accept armed is freed by the cancellation's completion, which
 * arrives only while the hub runs: run it once more, so the sanitizer sees nothing left. */
static void close_listener(int lfd)
{
    assert_int_equal(ivy_close(lfd), 0);
    ivy_spawn_n(settle, NULL);
    assert_int_equal(ivy_run(), 0);
}

static void close_all(struct run *r)
{
    for (int i = 0; i < r->naccepted; i++)
        close(r->fds[i]);
    for (int i = 0; i < r->nclients; i++)
        close(r->clients[i]);
    close_listener(r->lfd);
}

/* Accepts every client, noting the kernel's queue after each (and again after the first). */
static void *accept_all(void *arg)
{
    struct run *r = arg;
    while (r->naccepted < r->nclients) {
        int fd = ivy_accept(r->lfd, NULL);
        assert_true(fd >= 0);
        r->fds[r->naccepted] = fd;
        r->queued_after[r->naccepted++] = queued(r->lfd);
        if (r->naccepted == 1) {
            ivy_sleep(0.05); /* the hub waits on the ring: an armed accept would run now */
            r->queued_later = queued(r->lfd);
        }
    }
    return NULL;
}

/* NCLIENTS connections queued in the kernel, then accepted in one green thread. */
static void accept_a_full_queue(struct run *r, bool one_at_a_time)
{
    r->lfd = listen_any(0, 0);
    if (one_at_a_time) assert_int_equal(ivy__accept_one(r->lfd), 0);
    dial_n(r, ivy_local_port(r->lfd), NCLIENTS);
    assert_int_equal(wait_queued(r->lfd, NCLIENTS), NCLIENTS);
    ivy_spawn_n(accept_all, r);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(r->naccepted, NCLIENTS);
}

static void one_at_a_time_leaves_the_rest_in_the_kernel(void **state)
{
    struct run r = {0};
    accept_a_full_queue(&r, true);
    for (int i = 0; i < NCLIENTS; i++)
        assert_int_equal(r.queued_after[i], NCLIENTS - 1 - i);
    assert_int_equal(r.queued_later, NCLIENTS - 1);
    close_all(&r);
}

static void multishot_drains_the_queue_into_the_hub(void **state)
{
    struct run r = {0};
    accept_a_full_queue(&r, false);
    for (int i = 0; i < NCLIENTS; i++)
        assert_int_equal(r.queued_after[i], 0);
    assert_int_equal(r.queued_later, 0);
    close_all(&r);
}

/* Several threads wait at once: each gets its own connection, one request in flight. */
struct waiters {
    int lfd;
    int fds[3];
    int nfds;
    int clients[3];
};

static void *wait_one(void *arg)
{
    struct waiters *w = arg;
    int fd = ivy_accept(w->lfd, NULL);
    assert_true(fd >= 0);
    w->fds[w->nfds++] = fd;
    return NULL;
}

static void *connect_three(void *arg)
{
    struct waiters *w = arg;
    for (int i = 0; i < 3; i++) {
        w->clients[i] = ivy_connect("127.0.0.1", ivy_local_port(w->lfd), 5.0);
        assert_true(w->clients[i] >= 0);
    }
    return NULL;
}

static void one_at_a_time_serves_every_waiter(void **state)
{
    struct waiters w = {.lfd = listen_any(0, 0)};
    assert_int_equal(ivy__accept_one(w.lfd), 0);
    for (int i = 0; i < 3; i++)
        ivy_spawn_n(wait_one, &w);
    ivy_spawn_n(connect_three, &w);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(w.nfds, 3);
    assert_true(w.fds[0] != w.fds[1] && w.fds[1] != w.fds[2] && w.fds[0] != w.fds[2]);
    assert_int_equal(queued(w.lfd), 0);
    for (int i = 0; i < 3; i++) {
        close(w.fds[i]);
        ivy_close(w.clients[i]);
    }
    close_listener(w.lfd);
}

/* A multishot accept already armed is cancelled: later connections stay in the kernel. */
static void *switch_then_accept(void *arg)
{
    struct run *r = arg;
    r->fds[r->naccepted++] = ivy_accept(r->lfd, NULL); /* arms the multishot */
    assert_true(r->fds[0] >= 0);
    assert_int_equal(ivy__accept_one(r->lfd), 0);
    ivy_sleep(0.02); /* the cancellation completes */
    dial_n(r, ivy_local_port(r->lfd), 3);
    assert_int_equal(wait_queued(r->lfd, 3), 3);
    ivy_sleep(0.05); /* a multishot still armed would take them now */
    r->queued_later = queued(r->lfd);
    r->fds[r->naccepted] = ivy_accept(r->lfd, NULL);
    assert_true(r->fds[r->naccepted] >= 0);
    r->queued_after[r->naccepted++] = queued(r->lfd);
    return NULL;
}

static void switching_to_one_at_a_time_cancels_the_multishot(void **state)
{
    struct run r = {.lfd = listen_any(0, 0)};
    dial_n(&r, ivy_local_port(r.lfd), 1);
    ivy_spawn_n(switch_then_accept, &r);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(r.naccepted, 2);
    assert_int_equal(r.queued_later, 3);
    assert_int_equal(r.queued_after[1], 2);
    close_all(&r);
}

/*
 * The point of the mode: a listener closed (its process killed) with connections still queued
 * hands them to a SO_REUSEPORT sibling when net.ipv4.tcp_migrate_req=1, so every client
 * is answered, the one accepted before the close by its acceptor, the rest by the sibling.
 */
struct pair {
    int a, b;
    struct run r; /* clients, and every connection accepted from a or b */
    int queued_b_after_close;
};

static void *accept_one_close_then_sibling(void *arg)
{
    struct pair *p = arg;
    int fd = ivy_accept(p->a, NULL);
    assert_true(fd >= 0);
    p->r.fds[p->r.naccepted++] = fd;
    assert_int_equal(ivy_close(p->a), 0);
    p->queued_b_after_close = queued(p->b);
    struct ivy_timeout to; /* a connection lost with a would leave us waiting: fail instead */
    assert_int_equal(ivy_timeout_begin(&to, 2.0), 0);
    while (p->r.naccepted < p->r.nclients && (fd = ivy_accept(p->b, NULL)) >= 0)
        p->r.fds[p->r.naccepted++] = fd;
    ivy_timeout_end(&to);
    assert_int_equal(p->r.naccepted, p->r.nclients);
    for (int i = 0; i < p->r.naccepted; i++)
        assert_int_equal(ivy_sendall(p->r.fds[i], "ok", 2), 2);
    return NULL;
}

/* What the test needs, set up as `ivy serve --migrate-req` does (the host's setting, left at
   1: other servers on the host may count on it); false where it cannot be (not root, a kernel
   before 5.14). */
static bool enable_migrate_req(void)
{
    int fd = open("/proc/sys/net/ipv4/tcp_migrate_req", O_RDWR | O_CLOEXEC);
    char v = '0';
    if (fd < 0) return false;
    if (read(fd, &v, 1) == 1 && v != '1' && pwrite(fd, "1", 1, 0) == 1) v = '1';
    close(fd);
    return v == '1';
}

static void queued_connections_migrate_to_a_sibling(void **state)
{
    if (!enable_migrate_req())
        skip_visibly("cannot set net.ipv4.tcp_migrate_req=1 (needs root and Linux 5.14)");
    struct pair p = {.a = listen_any(0, IVY_REUSEPORT)};
    int port = ivy_local_port(p.a);
    p.b = listen_any(port, IVY_REUSEPORT);
    p.r.lfd = p.b;
    assert_int_equal(ivy__accept_one(p.a), 0);
    /* The kernel hashes each connection to one listener: dial until a holds a few. */
    while (p.r.nclients < MAX_DIALS && queued(p.a) < 3) {
        dial_n(&p.r, port, 1);
        for (int i = 0; i < 200 && queued(p.a) + queued(p.b) != p.r.nclients; i++)
            sleep_ms(10);
    }
    assert_true(queued(p.a) >= 3);
    assert_int_equal(queued(p.a) + queued(p.b), p.r.nclients);
    ivy_spawn_n(accept_one_close_then_sibling, &p);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(p.queued_b_after_close, p.r.nclients - 1);
    assert_int_equal(p.r.naccepted, p.r.nclients);
    for (int i = 0; i < p.r.nclients; i++) { /* a reset client would fail here */
        char buf[2];
        assert_int_equal(recv(p.r.clients[i], buf, sizeof buf, MSG_WAITALL), 2);
        assert_memory_equal(buf, "ok", 2);
    }
    close_all(&p.r);
}

/* A thread whose listeners are all closed leaves nothing of accept's behind (LSan checks). */
static void *own_hub(void *arg)
{
    struct run r = {0};
    accept_a_full_queue(&r, true);
    close_all(&r);
    assert_int_equal(ivy_hub_free(), 0);
    return NULL;
}

static void a_thread_leaves_no_listener_state(void **state)
{
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, own_hub, NULL), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
}

static void misuse(void **state)
{
    assert_int_equal(ivy__accept_one(-1), -EBADF);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_at_a_time_leaves_the_rest_in_the_kernel),
        cmocka_unit_test(multishot_drains_the_queue_into_the_hub),
        cmocka_unit_test(one_at_a_time_serves_every_waiter),
        cmocka_unit_test(switching_to_one_at_a_time_cancels_the_multishot),
        cmocka_unit_test(queued_connections_migrate_to_a_sibling),
        cmocka_unit_test(a_thread_leaves_no_listener_state),
        cmocka_unit_test(misuse),
    };
    return ivy_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
