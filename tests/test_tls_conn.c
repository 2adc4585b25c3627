/*
 * Tests for io/tls_conn.c, io/tls_bio.c and io/tls_plain.c through ivy's own client and server
 * in one process: verification and resumption, interrupted reads and handshakes that resume,
 * a bulk transfer, one thread reading while another writes, a plain TCP function over TLS.
 */
#include <ivy/ivy.h>

#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tls_responder.h"
#include "util.h"

static void *client_body(void *arg)
{
    char msg[256];
    ivy_tls_ctx *cl, *insecure;
    assert_int_equal(ivy_tls_client_new(&cl, certs.ca, 0, msg, sizeof msg), 0);
    assert_int_equal(ivy_tls_client_new(&insecure, NULL, IVY_TLS_INSECURE, msg, sizeof msg), 0);
    struct srv good, exp, wrong;
    ivy_thread *tg = start_server(&good, certs.cert, certs.key, 3);
    ivy_thread *te = start_server(&exp, certs.expired, certs.exp_key, 2);
    ivy_thread *tw = start_server(&wrong, certs.wrong, certs.wrong_key, 2);
    bool resumed = true;
    /* The good one, by name and by address; the second connection resumes the first's. */
    assert_int_equal(ivy_get(cl, good.port, "localhost", msg, &resumed), 0);
    assert_false(resumed);
    assert_int_equal(ivy_get(cl, good.port, "localhost", msg, &resumed), 0);
    assert_true(resumed);
    assert_int_equal(ivy_get(cl, good.port, "127.0.0.1", msg, &resumed), 0);
    assert_false(resumed); /* another name: the session is not offered */
    /* Expired and wrong-host certificates are refused, with the reason. */
    assert_int_equal(ivy_get(cl, exp.port, "localhost", msg, NULL), -EPROTO);
    assert_string_equal(msg, "certificate verify failed: certificate has expired");
    assert_int_equal(ivy_get(cl, wrong.port, "localhost", msg, NULL), -EPROTO);
    assert_string_equal(msg, "certificate verify failed: hostname mismatch");
    /* ... unless verification is off. */
    assert_int_equal(ivy_get(insecure, exp.port, "localhost", msg, NULL), 0);
    assert_int_equal(ivy_get(insecure, wrong.port, NULL, msg, NULL), 0);
    stop_server(&good, tg);
    stop_server(&exp, te);
    stop_server(&wrong, tw);
    assert_true(good.resumed[1]);
    assert_int_equal(exp.rc[0], -EPROTO); /* our client's alert */
    assert_non_null(strstr(exp.msg[0], "alert"));
    assert_int_equal(exp.rc[1], 0);
    ivy_tls_ctx_free(cl);
    ivy_tls_ctx_free(insecure);
    return NULL;
}

static void ivy_client_verifies_and_resumes(void **state)
{
    NEED_OPENSSL();
    green(client_body);
}

/* A read interrupted by a deadline or a kill leaves the connection usable. */
struct pair {
    ivy_tls *c;
    ssize_t rc;
};

static void *read_one(void *arg)
{
    struct pair *p = arg;
    char buf[64];
    p->rc = ivy_tls_read(p->c, buf, sizeof buf);
    return NULL;
}

static void *interrupt_body(void *arg)
{
    struct srv s;
    char msg[256];
    ivy_thread *t = start_server(&s, certs.cert, certs.key, 1);
    ivy_tls_ctx *cl;
    assert_int_equal(ivy_tls_client_new(&cl, certs.ca, 0, msg, sizeof msg), 0);
    int fd = ivy_connect("127.0.0.1", s.port, 5);
    ivy_tls *c = ivy_tls_new(cl, fd, "localhost");
    assert_int_equal(ivy_tls_handshake(c), 0);
    char buf[512];
    struct ivy_timeout to;
    ivy_timeout_begin(&to, 0.05);
    assert_int_equal(ivy_tls_read(c, buf, sizeof buf), -ETIMEDOUT); /* nothing was asked */
    ivy_timeout_end(&to);
    struct pair p = {c, 1};
    ivy_thread *r = ivy_spawn(read_one, &p);
    ivy_sleep(0.02);
    assert_int_equal(ivy_kill(r), 0);
    ivy_join(r, NULL);
    assert_int_equal(p.rc, -ECANCELED);
    /* The same connection still works. */
    static const char req[] = "GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
    assert_int_equal(ivy_tls_write(c, req, sizeof req - 1), sizeof req - 1);
    size_t got = 0;
    ssize_t n;
    while ((n = ivy_tls_read(c, buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)n;
    buf[got] = 0;
    assert_string_equal(buf, hello_close);
    assert_string_equal(ivy_tls_error(c), "");
    ivy_tls_close(c);
    stop_server(&s, t);
    ivy_tls_ctx_free(cl);
    return NULL;
}

static void interrupted_read_resumes(void **state)
{
    NEED_OPENSSL();
    green(interrupt_body);
}

/* Megabytes each way: many records per write, the peer reading while we write. */
struct bulk {
    ivy_tls_ctx *ctx, *cl;
    int lfd, fd; /* the listener; the server's end of the connection */
    size_t got;
    uint64_t sum;
};

/* A loopback connection: b->fd the server's end (TLS not started), the client's returned. */
static ivy_tls *pair_open(struct bulk *b, const char *name)
{
    char msg[256];
    assert_int_equal(ivy_tls_server_new(&b->ctx, certs.cert, certs.key, msg, sizeof msg), 0);
    assert_int_equal(ivy_tls_client_new(&b->cl, certs.ca, 0, msg, sizeof msg), 0);
    b->lfd = ivy_listen("127.0.0.1", 0, 8, 0);
    int fd = ivy_connect("127.0.0.1", ivy_local_port(b->lfd), 5);
    b->fd = ivy_accept(b->lfd, NULL);
    ivy_tls *c = ivy_tls_new(b->cl, fd, name);
    assert_non_null(c);
    return c;
}

static void pair_close(struct bulk *b, ivy_tls *c)
{
    ivy_tls_close(c);
    ivy_close(b->lfd);
    ivy_tls_ctx_free(b->cl);
    ivy_tls_ctx_free(b->ctx);
}

static void *bulk_reader(void *arg)
{
    struct bulk *b = arg;
    ivy_tls *t = ivy_tls_new(b->ctx, b->fd, NULL);
    assert_int_equal(ivy_tls_handshake(t), 0);
    unsigned char buf[20000];
    ssize_t n;
    while ((n = ivy_tls_read(t, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++)
            b->sum += buf[i] * (uint64_t)(b->got + (size_t)i + 1);
        b->got += (size_t)n;
    }
    assert_int_equal(n, 0); /* close_notify */
    ivy_tls_close(t);
    return NULL;
}

static void *bulk_body(void *arg)
{
    enum { LEN = 3 << 20 };
    struct bulk b = {0};
    ivy_tls *c = pair_open(&b, "127.0.0.1");
    ivy_thread *r = ivy_spawn(bulk_reader, &b);
    unsigned char *data = malloc(LEN);
    uint64_t sum = 0;
    for (size_t i = 0; i < LEN; i++) {
        data[i] = (unsigned char)(i * 7 + (i >> 12));
        sum += data[i] * (uint64_t)(i + 1);
    }
    /* The handshake runs implicitly in the first write. */
    assert_int_equal(ivy_tls_write(c, data, 1), 1);
    assert_int_equal(ivy_tls_write(c, data + 1, LEN - 1), LEN - 1);
    assert_int_equal(ivy_tls_shutdown(c), 0);
    ivy_join(r, NULL);
    assert_int_equal(b.got, LEN);
    assert_true(b.sum == sum);
    assert_int_equal(ivy_tls_read(c, data, 0), 0);
    pair_close(&b, c);
    free(data);
    return NULL;
}

static void bulk_transfer_arrives_whole(void **state)
{
    NEED_OPENSSL();
    green(bulk_body);
}

/* One green thread reads while another writes on the same connection; a handshake interrupted
   by a deadline resumes where it stood. */
static void *duplex_peer(void *arg)
{
    struct bulk *b = arg; /* echoes everything back, reading and writing in one thread */
    ivy_tls *t = ivy_tls_new(b->ctx, b->fd, NULL);
    assert_int_equal(ivy_tls_handshake(t), 0);
    char buf[8192];
    ssize_t n;
    while ((n = ivy_tls_read(t, buf, sizeof buf)) > 0) {
        assert_int_equal(ivy_tls_write(t, buf, (size_t)n), n);
        b->got += (size_t)n;
    }
    ivy_tls_shutdown(t);
    ivy_tls_close(t);
    return NULL;
}

struct writer {
    ivy_tls *c;
    const char *data;
    size_t len;
};

static void *duplex_writer(void *arg)
{
    struct writer *w = arg;
    for (size_t off = 0; off < w->len; off += 1000) /* many writes, each a record */
        assert_int_equal(ivy_tls_write(w->c, w->data + off, 1000), 1000);
    return NULL;
}

static void *duplex_body(void *arg)
{
    enum { LEN = 1000 * 1000 };
    struct bulk b = {0};
    ivy_tls *c = pair_open(&b, "localhost");
    /* The server is not running yet: the first flight goes out, no answer comes in time. */
    struct ivy_timeout to;
    ivy_timeout_begin(&to, 0.05);
    assert_int_equal(ivy_tls_handshake(c), -ETIMEDOUT);
    ivy_timeout_end(&to);
    ivy_thread *peer = ivy_spawn(duplex_peer, &b);
    assert_int_equal(ivy_tls_handshake(c), 0); /* resumed from where it stood */
    char *data = malloc(LEN), *back = malloc(LEN);
    for (size_t i = 0; i < LEN; i++)
        data[i] = (char)(i % 251);
    struct writer w = {c, data, LEN};
    ivy_thread *wr = ivy_spawn(duplex_writer, &w);
    size_t got = 0;
    while (got < LEN) {
        ssize_t n = ivy_tls_read(c, back + got, LEN - got);
        assert_true(n > 0);
        got += (size_t)n;
    }
    ivy_join(wr, NULL);
    assert_memory_equal(back, data, LEN);
    assert_int_equal(ivy_tls_shutdown(c), 0);
    char x;
    assert_int_equal(ivy_tls_read(c, &x, 1), 0); /* the peer's close_notify */
    assert_int_equal(ivy_tls_write(c, "x", 1), -EPIPE);
    ivy_join(peer, NULL);
    assert_int_equal(b.got, LEN);
    pair_close(&b, c);
    free(data);
    free(back);
    return NULL;
}

static void duplex_and_resumed_handshake(void **state)
{
    NEED_OPENSSL();
    green(duplex_body);
}

/* A plain TCP function (echo) served over TLS through ivy_tls_run_plain. */
static int plain_calls;

static void plain_echo(int fd, void *arg)
{
    char buf[4096];
    ssize_t n;
    plain_calls++;
    while ((n = ivy_recv(fd, buf, sizeof buf)) > 0)
        if (ivy_sendall(fd, buf, (size_t)n) < 0) break;
}

static void *plain_server(void *arg)
{
    struct bulk *b = arg;
    ivy_tls *t = ivy_tls_new(b->ctx, b->fd, NULL);
    b->sum = (uint64_t)ivy_tls_run_plain(t, plain_echo, NULL);
    ivy_tls_close(t);
    return NULL;
}

static void *plain_body(void *arg)
{
    struct bulk b = {0};
    ivy_tls *c = pair_open(&b, "localhost");
    ivy_thread *srv = ivy_spawn(plain_server, &b);
    char buf[64] = "";
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ivy_tls_write(c, "hello", 5), 5);
        assert_int_equal(ivy_tls_read(c, buf, sizeof buf), 5);
        assert_memory_equal(buf, "hello", 5);
    }
    /* Our close_notify is the app's end of stream; its return, our close_notify. */
    assert_int_equal(ivy_tls_shutdown(c), 0);
    assert_int_equal(ivy_tls_read(c, buf, sizeof buf), 0);
    ivy_join(srv, NULL);
    assert_int_equal(b.sum, 0);
    assert_int_equal(plain_calls, 1);
    pair_close(&b, c);
    /* A client that is not TLS: the handshake's error, and fn never runs. */
    char msg[256];
    assert_int_equal(ivy_tls_server_new(&b.ctx, certs.cert, certs.key, msg, sizeof msg), 0);
    int lfd = ivy_listen("127.0.0.1", 0, 8, 0);
    int cfd = ivy_connect("127.0.0.1", ivy_local_port(lfd), 5);
    b.fd = ivy_accept(lfd, NULL);
    srv = ivy_spawn(plain_server, &b);
    static const char junk[] = "GET / HTTP/1.0\r\n\r\n";
    assert_int_equal(ivy_sendall(cfd, junk, sizeof junk - 1), sizeof junk - 1);
    ivy_join(srv, NULL);
    assert_int_equal((int)b.sum, -EPROTO);
    assert_int_equal(plain_calls, 1);
    assert_int_equal(ivy_tls_run_plain(NULL, plain_echo, NULL), -EINVAL);
    /* The TCP helper over TLS: a context and a function are required; outside a cluster
       there is no worker context. */
    assert_int_equal(ivy_tls_tcp_serve(lfd, NULL, plain_echo, NULL), -EINVAL);
    assert_int_equal(ivy_tls_tcp_serve(lfd, b.ctx, NULL, NULL), -EINVAL);
    assert_null(ivy_worker_tls());
    ivy_close(cfd);
    ivy_close(lfd);
    ivy_tls_ctx_free(b.ctx);
    return NULL;
}

static void plain_tcp_function_over_tls(void **state)
{
    NEED_OPENSSL();
    green(plain_body);
}

/* Reload: new connections get the new certificate; a bad one leaves the old in place. */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ivy_client_verifies_and_resumes),
        cmocka_unit_test(interrupted_read_resumes),
        cmocka_unit_test(bulk_transfer_arrives_whole),
        cmocka_unit_test(duplex_and_resumed_handshake),
        cmocka_unit_test(plain_tcp_function_over_tls),
    };
    return ivy_test_exit(cmocka_run_group_tests(tests, tls_setup, tls_teardown));
}
