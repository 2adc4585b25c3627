/*
 * Tests for io/recv.c: the multishot receive each socket keeps armed, its queue, its bounds and
 * its lifetime, over real loopback sockets and the real ring.
 */
#include <ivy/ivy.h>

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "socket_impl.h"

#include "util.h"

/* A connected pair: `a` from ivy_accept (the side under test), `b` a plain blocking socket. */
struct pair {
    int a, b;
};

/* Runs fn(arg) as a green thread to its end. */
static void run_green(void *(*fn)(void *), void *arg)
{
    assert_int_equal(ivy_spawn_n(fn, arg), 0);
    assert_int_equal(ivy_run(), 0);
}

struct accepting {
    int lfd, fd;
};

static void *accept_one(void *arg)
{
    struct accepting *a = arg;
    a->fd = ivy_accept(a->lfd, NULL);
    return NULL;
}

static struct pair pair_open(void)
{
    struct accepting a = {ivy_listen("127.0.0.1", 0, 16, 0), -1};
    assert_true(a.lfd >= 0);
    int b = dial(ivy_local_port(a.lfd)); /* completes from the backlog */
    assert_true(b >= 0);
    run_green(accept_one, &a);
    assert_true(a.fd >= 0);
    ivy_close(a.lfd);
    return (struct pair){a.fd, b};
}

/* ---- bytes that arrive with nobody receiving --------------------------------------------- */

struct queued {
    struct pair p;
    char got[64];
    ssize_t n[4];
};

static void *queued_reader(void *arg)
{
    struct queued *q = arg;
    char one;
    /* The first receive arms the socket's receive; what comes later queues while we sleep. */
    assert_int_equal(send(q->p.b, "a", 1, 0), 1);
    assert_int_equal(ivy_recv(q->p.a, &one, 1), 1);
    assert_int_equal(one, 'a');
    assert_int_equal(send(q->p.b, "bcd", 3, 0), 3);
    ivy_sleep(0.02);
    assert_int_equal(send(q->p.b, "efgh", 4, 0), 4);
    ivy_sleep(0.02);
    assert_int_equal(send(q->p.b, "ij", 2, 0), 2);
    ivy_sleep(0.02);
    shutdown(q->p.b, SHUT_WR);
    ivy_sleep(0.02);
    /* Small reads take the queued bytes in order, across chunk boundaries, then the end. */
    q->n[0] = ivy_recv(q->p.a, q->got, 2);
    q->n[1] = ivy_recv(q->p.a, q->got + 2, 5);
    q->n[2] = ivy_recv(q->p.a, q->got + 7, 30);
    q->n[3] = ivy_recv(q->p.a, q->got + 9, 30);
    return NULL;
}

static void bytes_received_meanwhile_come_out_in_order(void **state)
{
    struct queued q = {.p = pair_open()};
    run_green(queued_reader, &q);
    assert_int_equal(q.n[0], 2);
    assert_int_equal(q.n[1], 5);
    assert_int_equal(q.n[2], 2);
    assert_int_equal(q.n[3], 0);
    assert_memory_equal(q.got, "bcdefghij", 9);
    ivy_close(q.p.a);
    close(q.p.b);
}

/* ---- deadlines lose nothing --------------------------------------------------------------- */

struct late {
    struct pair p;
    ssize_t timed, after;
    char got[8];
};

static void *late_reader(void *arg)
{
    struct late *l = arg;
    struct ivy_timeout to;
    assert_int_equal(ivy_timeout_begin(&to, 0.02), 0);
    l->timed = ivy_recv(l->p.a, l->got, sizeof l->got);
    ivy_timeout_end(&to);
    assert_int_equal(send(l->p.b, "late", 4, 0), 4);
    l->after = ivy_recv(l->p.a, l->got, sizeof l->got);
    return NULL;
}

static void bytes_after_a_timed_out_receive_are_not_lost(void **state)
{
    struct late l = {.p = pair_open()};
    run_green(late_reader, &l);
    assert_int_equal(l.timed, -ETIMEDOUT);
    assert_int_equal(l.after, 4);
    assert_memory_equal(l.got, "late", 4);
    ivy_close(l.p.a);
    close(l.p.b);
}

/* ---- closing -------------------------------------------------------------------------------- */

static void *recv_one(void *arg)
{
    struct pair *p = arg;
    char c;
    assert_int_equal(ivy_recv(p->a, &c, 1), 1); /* arms the receive, which stays armed */
    return NULL;
}

static void *recv_then_close(void *arg)
{
    recv_one(arg);
    assert_int_equal(ivy_close(((struct pair *)arg)->a), 0);
    return NULL;
}

static void close_ends_the_connection_despite_the_armed_receive(void **state)
{
    struct pair p = pair_open();
    assert_int_equal(send(p.b, "x", 1, 0), 1);
    run_green(recv_then_close, &p);
    /* The peer sees the end of stream at once, not when the hub goes. */
    char c;
    assert_int_equal(recv(p.b, &c, 1, 0), 0);
    close(p.b);
}

static void close_outside_the_loop_ends_the_connection_too(void **state)
{
    struct pair p = pair_open();
    assert_int_equal(send(p.b, "x", 1, 0), 1);
    run_green(recv_one, &p);
    assert_int_equal(ivy_close(p.a), 0); /* not in a green thread: close(2) after the cancel */
    char c;
    assert_int_equal(recv(p.b, &c, 1, 0), 0);
    close(p.b);
}

static void *recv_then_plain_close(void *arg)
{
    recv_one(arg);
    close(((struct pair *)arg)->a); /* the misuse: the armed receive keeps the socket open */
    return NULL;
}

struct reuse {
    int lfd, fd;
    ssize_t n;
    char got[4];
};

static void *accept_and_recv(void *arg)
{
    struct reuse *r = arg;
    r->fd = ivy_accept(r->lfd, NULL);
    r->n = ivy_recv(r->fd, r->got, sizeof r->got);
    return NULL;
}

static void a_reused_descriptor_starts_fresh_after_close_2(void **state)
{
    struct pair p = pair_open();
    struct reuse r = {.lfd = ivy_listen("127.0.0.1", 0, 16, 0)};
    int b = dial(ivy_local_port(r.lfd));
    assert_int_equal(send(p.b, "xy", 2, 0), 2);
    run_green(recv_then_plain_close, &p); /* "y" stays queued under p.a's old number */
    assert_int_equal(send(b, "new", 3, 0), 3);
    run_green(accept_and_recv, &r);
    assert_int_equal(r.fd, p.a); /* the lowest free number: the one close(2) freed */
    assert_int_equal(r.n, 3);
    assert_memory_equal(r.got, "new", 3);
    /* Accepting over the stale state cancelled its receive: the old connection has ended. */
    char c;
    assert_int_equal(recv(p.b, &c, 1, 0), 0);
    ivy_close(r.fd);
    ivy_close(r.lfd);
    close(b);
    close(p.b);
}

struct closer {
    struct pair p;
    ssize_t rc;
};

static void *blocked_reader(void *arg)
{
    struct closer *c = arg;
    char buf[8];
    c->rc = ivy_recv(c->p.a, buf, sizeof buf);
    return NULL;
}

static void *close_it(void *arg)
{
    struct closer *c = arg;
    ivy_sleep(0.01);
    assert_int_equal(ivy_close(c->p.a), 0);
    return NULL;
}

static void close_by_another_thread_wakes_the_receiver(void **state)
{
    struct closer c = {.p = pair_open(), .rc = 1};
    ivy_spawn_n(blocked_reader, &c);
    ivy_spawn_n(close_it, &c);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(c.rc, -EBADF);
    char b;
    assert_int_equal(recv(c.p.b, &b, 1, 0), 0);
    close(c.p.b);
}

/* ---- a peer that sends and is not read is held back by TCP, not buffered by ivy ------------- */

struct flood {
    struct pair p;
    size_t len, sent_early, got;
    bool exact;
};

static void *flood_sender(void *arg)
{
    struct flood *f = arg;
    char *buf = malloc(f->len);
    for (size_t i = 0; i < f->len; i++)
        buf[i] = (char)(i * 7 + i / 4096);
    size_t off = 0;
    while (off < f->len) {
        ssize_t n = send(f->p.b, buf + off, f->len - off, MSG_DONTWAIT);
        if (n > 0) off += (size_t)n;
        if (n < 0) ivy_sleep(0.001); /* the socket is full: let the reader run */
        if (!f->sent_early && off < f->len && n < 0) f->sent_early = off;
    }
    free(buf);
    shutdown(f->p.b, SHUT_WR);
    return NULL;
}

static void *flood_reader(void *arg)
{
    struct flood *f = arg;
    char c;
    assert_int_equal(ivy_recv(f->p.a, &c, 1), 1); /* arm, then do not read for a while */
    f->got = 1;
    ivy_sleep(0.1);
    char buf[65536];
    ssize_t n;
    f->exact = c == 0;
    while ((n = ivy_recv(f->p.a, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++, f->got++)
            if (buf[i] != (char)(f->got * 7 + f->got / 4096)) f->exact = false;
    }
    assert_int_equal(n, 0);
    return NULL;
}

static void unread_bytes_stay_in_the_kernel_and_arrive_exact(void **state)
{
    struct flood f = {.p = pair_open(), .len = 16 << 20};
    int small = 64 << 10;
    setsockopt(f.p.a, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    setsockopt(f.p.b, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    ivy_spawn_n(flood_reader, &f);
    ivy_spawn_n(flood_sender, &f);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(f.got, f.len);
    assert_true(f.exact);
    /* The sender stalled after the socket buffers and at most 8 queued 16 KiB chunks. */
    assert_true(f.sent_early > 0);
    assert_true(f.sent_early < 2u << 20);
    ivy_close(f.p.a);
    close(f.p.b);
}

/* ---- the ring running dry ------------------------------------------------------------------- */

enum { MANY = 160, EACH = 256 << 10 };

/* One connection: a sender green thread on c, our side (read later) on a. */
struct one {
    int a, c, i;
    size_t got;
    bool exact;
};

static char pattern(size_t k, int i)
{
    return (char)(k * 3 + (size_t)i);
}

static void *many_sender(void *arg)
{
    struct one *o = arg;
    char *buf = malloc(EACH);
    for (size_t k = 0; k < EACH; k++)
        buf[k] = pattern(k, o->i);
    assert_int_equal(ivy_sendall(o->c, "s", 1), 1);
    assert_int_equal(ivy_sendall(o->c, buf, EACH), EACH);
    free(buf);
    ivy_close(o->c);
    return NULL;
}

static void *many_reader(void *arg)
{
    struct one *o = arg;
    char buf[4096];
    ssize_t n;
    while ((n = ivy_recv(o->a, buf, sizeof buf)) > 0)
        for (ssize_t k = 0; k < n; k++, o->got++)
            if (buf[k] != pattern(o->got, o->i)) o->exact = false;
    return NULL;
}

static void *many_main(void *arg)
{
    struct one *v = arg;
    int lfd = ivy_listen("127.0.0.1", 0, MANY, 0);
    for (int i = 0; i < MANY; i++) {
        v[i] = (struct one){.c = ivy_connect("127.0.0.1", ivy_local_port(lfd), 5), .i = i};
        v[i].a = ivy_accept(lfd, NULL);
        v[i].exact = true;
        assert_true(v[i].a >= 0 && v[i].c >= 0);
        ivy_spawn_n(many_sender, &v[i]);
    }
    ivy_close(lfd);
    /* Every socket armed, none read: between them they want more buffers than the ring has. */
    char c;
    for (int i = 0; i < MANY; i++)
        assert_int_equal(ivy_recv(v[i].a, &c, 1), 1);
    ivy_sleep(0.2);
    for (int i = 0; i < MANY; i++)
        ivy_spawn_n(many_reader, &v[i]);
    return NULL;
}

static void a_dry_buffer_ring_delays_but_loses_nothing(void **state)
{
    struct one *v = calloc(MANY, sizeof *v);
    struct ivy_hub_stats before, after;
    ivy_hub_stats(&before);
    run_green(many_main, v);
    ivy_hub_stats(&after);
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(v[i].got, EACH);
        assert_true(v[i].exact);
        ivy_close(v[i].a);
    }
    assert_true(after.recv_ring_empty > before.recv_ring_empty);
    free(v);
}

/* ---- a few bytes each on many unread sockets ------------------------------------------------ */

enum { TRICKLE = 160, SEGMENTS = 8 };

struct trickle {
    int a[TRICKLE], c[TRICKLE];
    unsigned armed, in_order;
    ivy_event *all_armed, *go;
    unsigned held_max;
};

static unsigned char trickle_byte(int i, int k)
{
    return (unsigned char)(i * 13 + k + 1);
}

struct trickle_conn {
    struct trickle *t;
    int i;
};

static void *trickle_conn_reader(void *arg)
{
    struct trickle_conn *tc = arg;
    struct trickle *t = tc->t;
    unsigned char got[SEGMENTS + 1];
    assert_int_equal(ivy_recv(t->a[tc->i], got, 1), 1); /* arms the receive */
    if (++t->armed == TRICKLE) ivy_event_set(t->all_armed);
    assert_int_equal(ivy_event_wait(t->go, -1), 0); /* nobody receives meanwhile */
    assert_int_equal(ivy_recv_exact(t->a[tc->i], got, SEGMENTS), SEGMENTS);
    bool ok = true;
    for (int k = 0; k < SEGMENTS; k++)
        ok = ok && got[k] == trickle_byte(tc->i, k);
    t->in_order += ok;
    return NULL;
}

static void *trickle_main(void *arg)
{
    struct trickle *t = arg;
    struct trickle_conn tc[TRICKLE];
    int lfd = ivy_listen("127.0.0.1", 0, TRICKLE, 0);
    assert_true(lfd >= 0);
    for (int i = 0; i < TRICKLE; i++) {
        t->c[i] = ivy_connect("127.0.0.1", ivy_local_port(lfd), 5);
        t->a[i] = ivy_accept(lfd, NULL);
        assert_true(t->a[i] >= 0 && t->c[i] >= 0);
        int one = 1; /* each byte its own segment */
        setsockopt(t->c[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        assert_int_equal(send(t->c[i], "x", 1, 0), 1);
        tc[i] = (struct trickle_conn){t, i};
        ivy_spawn_n(trickle_conn_reader, &tc[i]);
    }
    ivy_close(lfd);
    assert_int_equal(ivy_event_wait(t->all_armed, 10), 0);
    for (int k = 0; k < SEGMENTS; k++) {
        for (int i = 0; i < TRICKLE; i++) {
            unsigned char b = trickle_byte(i, k);
            assert_int_equal(send(t->c[i], &b, 1, 0), 1);
        }
        ivy_sleep(0.002); /* pacing, so that each byte arrives on its own: the hub reaps */
        unsigned held = ivy__recv_ring_held();
        if (held > t->held_max) t->held_max = held;
    }
    ivy_event_set(t->go);
    return NULL;
}

/* 160 connections x 8 one-byte segments, unread: 1280 arrivals, more than the ring's 1024. */
static void one_byte_segments_on_unread_sockets_hold_no_ring_buffer(void **state)
{
    struct trickle *t = calloc(1, sizeof *t);
    t->all_armed = ivy_event_new();
    t->go = ivy_event_new();
    struct ivy_hub_stats before, after;
    ivy_hub_stats(&before);
    run_green(trickle_main, t);
    ivy_hub_stats(&after);
    printf("recv: %d connections x %d unread one-byte segments: at most %u ring buffers held "
           "(of 1024), ring empty %llu times\n",
           TRICKLE, SEGMENTS, t->held_max,
           (unsigned long long)(after.recv_ring_empty - before.recv_ring_empty));
    assert_int_equal(t->in_order, TRICKLE);
    assert_int_equal(after.recv_ring_empty, before.recv_ring_empty);
    assert_int_equal(t->held_max, 0); /* every arrival copied out, its buffer back at once */
    assert_int_equal(ivy__recv_ring_held(), 0);
    for (int i = 0; i < TRICKLE; i++) {
        ivy_close(t->a[i]);
        close(t->c[i]);
    }
    ivy_event_free(t->all_armed);
    ivy_event_free(t->go);
    free(t);
}

/* ---- the hub goes with sockets still armed -------------------------------------------------- */

static void *own_hub(void *arg)
{
    struct pair p = pair_open();
    assert_int_equal(send(p.b, "yz", 2, 0), 2);
    run_green(recv_one, &p);
    /* One byte still queued, the receive armed: the hub's end frees both (LSan checks). */
    assert_int_equal(ivy_hub_free(), 0);
    close(p.a);
    /* Closed for good, not held open by the armed receive: end of stream, or a reset when the
     * "z" was still in the kernel's buffer rather than the hub's queue at close. */
    char c;
    ssize_t n = recv(p.b, &c, 1, 0);
    assert_true(n == 0 || (n < 0 && errno == ECONNRESET));
    close(p.b);
    return NULL;
}

static void hub_free_releases_armed_sockets(void **state)
{
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, own_hub, NULL), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bytes_received_meanwhile_come_out_in_order),
        cmocka_unit_test(bytes_after_a_timed_out_receive_are_not_lost),
        cmocka_unit_test(close_ends_the_connection_despite_the_armed_receive),
        cmocka_unit_test(close_outside_the_loop_ends_the_connection_too),
        cmocka_unit_test(close_by_another_thread_wakes_the_receiver),
        cmocka_unit_test(a_reused_descriptor_starts_fresh_after_close_2),
        cmocka_unit_test(unread_bytes_stay_in_the_kernel_and_arrive_exact),
        cmocka_unit_test(a_dry_buffer_ring_delays_but_loses_nothing),
        cmocka_unit_test(one_byte_segments_on_unread_sockets_hold_no_ring_buffer),
        cmocka_unit_test(hub_free_releases_armed_sockets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
