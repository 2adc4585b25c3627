/*
 * Tests for io/tls.c and io/tls_conn.c: real certificates made here with openssl, a green TLS
 * HTTP responder in this process on a free loopback port, and real clients against it: curl,
 * openssl s_client (ALPN, resumption), raw sockets misbehaving, and ivy's own client.
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

#include "tls_test.h"
#include "util.h"

static struct tls_certs certs;
static bool have_openssl;

#define NEED_OPENSSL()                                                                             \
    do {                                                                                           \
        if (!have_openssl) {                                                                       \
            fprintf(stderr, "skipped: the openssl command is missing (Debian: openssl)\n");        \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* ---- a green TLS HTTP responder ---------------------------------------------------------- */

enum { MAXC = 8 };

struct srv {
    ivy_tls_ctx *ctx;
    int lfd, port;
    int max;           /* connections to take, then stop */
    double hs_timeout; /* > 0: each handshake under an ivy_timeout scope of this many seconds */
    int rc[MAXC];      /* handshake result per connection, in accept order */
    char msg[MAXC][256];
    bool resumed[MAXC];
    int requests;
    ivy_thread *threads[MAXC];
};

struct sconn {
    struct srv *s;
    int i, fd;
};

static void *serve_conn(void *arg)
{
    struct sconn *k = arg;
    struct srv *s = k->s;
    ivy_tls *t = ivy_tls_new(s->ctx, k->fd, NULL);
    assert_non_null(t);
    struct ivy_timeout to;
    if (s->hs_timeout > 0) ivy_timeout_begin(&to, s->hs_timeout);
    s->rc[k->i] = ivy_tls_handshake(t);
    if (s->hs_timeout > 0) ivy_timeout_end(&to);
    snprintf(s->msg[k->i], sizeof s->msg[k->i], "%s", ivy_tls_error(t));
    if (s->rc[k->i] == 0) {
        s->resumed[k->i] = ivy_tls_resumed(t);
        s->requests += tls_answer(t);
        ivy_tls_shutdown(t);
    }
    ivy_tls_close(t);
    free(k);
    return NULL;
}

static void *server_main(void *arg)
{
    struct srv *s = arg;
    for (int i = 0; i < s->max; i++) {
        struct ivy_timeout to;
        ivy_timeout_begin(&to, 20);
        int fd = ivy_accept(s->lfd, NULL);
        ivy_timeout_end(&to);
        assert_true(fd >= 0);
        struct sconn *k = malloc(sizeof *k);
        *k = (struct sconn){s, i, fd};
        s->threads[i] = ivy_spawn(serve_conn, k);
    }
    for (int i = 0; i < s->max; i++)
        ivy_join(s->threads[i], NULL);
    return NULL;
}

static ivy_thread *start_server(struct srv *s, const char *cert, const char *key, int max)
{
    char msg[256];
    memset(s, 0, sizeof *s);
    assert_int_equal(ivy_tls_server_new(&s->ctx, cert, key, msg, sizeof msg), 0);
    s->lfd = ivy_listen("127.0.0.1", 0, 64, 0);
    assert_true(s->lfd >= 0);
    s->port = ivy_local_port(s->lfd);
    s->max = max;
    return ivy_spawn(server_main, s);
}

static void stop_server(struct srv *s, ivy_thread *t)
{
    assert_int_equal(ivy_join(t, NULL), 0);
    ivy_close(s->lfd);
    ivy_tls_ctx_free(s->ctx);
}

/* A command line run on the offload pool, so the responder keeps serving meanwhile. */
struct cmd {
    char line[2048];
    char out[16384];
    int status;
};

static void *cmd_fn(void *arg)
{
    struct cmd *c = arg;
    c->status = run_cmd(c->line, c->out, sizeof c->out);
    return NULL;
}

static int shell(struct cmd *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->line, sizeof c->line, fmt, ap);
    va_end(ap);
    assert_int_equal(ivy_offload(cmd_fn, c, NULL), 0);
    return c->status;
}

/* Runs fn as a green thread on a fresh hub run. */
static void green(ivy_fn fn)
{
    ivy_thread *t = ivy_spawn(fn, NULL);
    assert_non_null(t);
    assert_int_equal(ivy_run(), 0);
}

/* ---- contexts: errors name their cause -------------------------------------------------- */

static void context_errors(void **state)
{
    NEED_OPENSSL();
    ivy_tls_ctx *ctx = NULL;
    char msg[512], path[160];
    snprintf(path, sizeof path, "%s/missing.pem", certs.dir);
    assert_int_equal(ivy_tls_server_new(&ctx, path, certs.key, msg, sizeof msg), -ENOENT);
    assert_non_null(strstr(msg, "cannot read certificate file"));
    assert_non_null(strstr(msg, path));
    assert_int_equal(ivy_tls_server_new(&ctx, certs.cert, path, msg, sizeof msg), -ENOENT);
    assert_non_null(strstr(msg, "cannot read key file"));
    /* A key where the certificate should be, and the other way round. */
    assert_int_equal(ivy_tls_server_new(&ctx, certs.key, certs.key, msg, sizeof msg), -EINVAL);
    assert_non_null(strstr(msg, "not a PEM certificate chain"));
    assert_int_equal(ivy_tls_server_new(&ctx, certs.cert, certs.cert, msg, sizeof msg), -EINVAL);
    assert_non_null(strstr(msg, "not a PEM private key"));
    /* A key that belongs to another certificate. */
    assert_int_equal(ivy_tls_server_new(&ctx, certs.cert, certs.wrong_key, msg, sizeof msg),
                     -EINVAL);
    assert_non_null(strstr(msg, "does not match the certificate"));
    assert_int_equal(ivy_tls_server_new(&ctx, NULL, certs.key, msg, sizeof msg), -EINVAL);
    assert_null(ctx);
    /* Client: a missing CA file, and one without a certificate. */
    assert_int_equal(ivy_tls_client_new(&ctx, path, 0, msg, sizeof msg), -ENOENT);
    assert_non_null(strstr(msg, "cannot read CA file"));
    assert_int_equal(ivy_tls_client_new(&ctx, certs.key, 0, msg, sizeof msg), -EINVAL);
    assert_non_null(strstr(msg, "no PEM certificate to trust"));
    /* A client context has nothing to reload; a connection needs a context and a socket. */
    assert_int_equal(ivy_tls_client_new(&ctx, certs.ca, 0, msg, sizeof msg), 0);
    assert_int_equal(ivy_tls_ctx_reload(ctx, msg, sizeof msg), -EINVAL);
    errno = 0;
    assert_null(ivy_tls_new(ctx, 3, NULL)); /* verification on: a server name is required */
    assert_int_equal(errno, EINVAL);
    assert_null(ivy_tls_new(NULL, 3, "localhost"));
    assert_int_equal(errno, EINVAL);
    assert_null(ivy_tls_new(ctx, -1, "localhost"));
    assert_int_equal(errno, EINVAL);
    ivy_tls_ctx_free(ctx);
    assert_int_equal(ivy_tls_ctx_reload(NULL, msg, sizeof msg), -EINVAL);
    /* Messages are optional. */
    assert_int_equal(ivy_tls_server_new(&ctx, path, certs.key, NULL, 0), -ENOENT);
}

static void record_path_is_named(void **state)
{
    const char *p = ivy_tls_path();
    assert_true(!strncmp(p, "userspace", 9) || !strncmp(p, "kTLS", 4));
    assert_string_equal(ivy_tls_path(), p); /* decided once */
}

/* ---- real clients ----------------------------------------------------------------------- */

static void *curl_body(void *arg)
{
    struct srv s;
    ivy_thread *t = start_server(&s, certs.cert, certs.key, 1);
    struct cmd *c = calloc(1, sizeof *c);
    /* Two URLs: curl reuses the connection (keep-alive), so one handshake, two requests. */
    int st =
        shell(c, "curl -sS --max-time 10 --cacert %s https://localhost:%d/ https://localhost:%d/a",
              certs.ca, s.port, s.port);
    assert_int_equal(st, 0);
    assert_string_equal(c->out, "Hello, World!Hello, World!");
    stop_server(&s, t);
    assert_int_equal(s.rc[0], 0);
    assert_int_equal(s.requests, 2);
    free(c);
    return NULL;
}

static void curl_cacert_keepalive(void **state)
{
    NEED_OPENSSL();
    if (!have_program("curl")) skip();
    green(curl_body);
}

static void *curl_bad_body(void *arg)
{
    struct srv s;
    ivy_thread *t = start_server(&s, certs.cert, certs.key, 1);
    struct cmd *c = calloc(1, sizeof *c);
    /* curl trusts only an unrelated certificate: ours does not verify, and it says so. */
    int st =
        shell(c, "curl -sS --max-time 10 --cacert %s https://localhost:%d/", certs.wrong, s.port);
    assert_int_equal(st, 60); /* CURLE_PEER_FAILED_VERIFICATION */
    stop_server(&s, t);
    assert_int_equal(s.rc[0], -EPROTO); /* the client's alert ends our handshake */
    assert_non_null(strstr(s.msg[0], "alert"));
    free(c);
    return NULL;
}

static void curl_untrusted_alert_is_eproto(void **state)
{
    NEED_OPENSSL();
    if (!have_program("curl")) skip();
    green(curl_bad_body);
}

static void *python_body(void *arg)
{
    struct srv s;
    ivy_thread *t = start_server(&s, certs.cert, certs.key, 1);
    struct cmd *c = calloc(1, sizeof *c);
    /* Three pipelined requests in one write, through Python's ssl module. */
    int st = shell(
        c,
        "python3 -c 'import socket,ssl,sys\n"
        "x=ssl.create_default_context(cafile=sys.argv[1])\n"
        "s=x.wrap_socket(socket.create_connection((\"127.0.0.1\",int(sys.argv[2]))),"
        "server_hostname=\"localhost\")\n"
        "r=b\"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n\"\n"
        "s.sendall(r*2+r.replace(b\"\\r\\n\\r\\n\",b\"\\r\\nConnection: close\\r\\n\\r\\n\"))\n"
        "d=b\"\"\n"
        "while True:\n"
        " b=s.recv(65536)\n"
        " if not b: break\n"
        " d+=b\n"
        "print(d.count(b\"Hello, World!\"), s.version(), s.selected_alpn_protocol())' %s %d",
        certs.ca, s.port);
    assert_int_equal(st, 0);
    assert_non_null(strstr(c->out, "3 TLSv1.3"));
    stop_server(&s, t);
    assert_int_equal(s.requests, 3);
    free(c);
    return NULL;
}

static void python_ssl_pipelining(void **state)
{
    NEED_OPENSSL();
    if (!have_program("python3")) skip();
    green(python_body);
}

/* s_client: ALPN, then a second connection offering the saved session, TLS 1.3 and 1.2. */
static void *s_client_body(void *arg)
{
    static const char *const versions[] = {"-tls1_3", "-tls1_2"};
    struct srv s;
    ivy_thread *t = start_server(&s, certs.cert, certs.key, 4);
    struct cmd *c = calloc(1, sizeof *c);
    char sess[160];
    for (int v = 0; v < 2; v++) {
        snprintf(sess, sizeof sess, "%s/sess%d", certs.dir, v);
        for (int round = 0; round < 2; round++) {
            /* -ign_eof: read until the server closes, so the TLS 1.3 ticket is taken in. */
            int st = shell(c,
                           "printf 'GET / HTTP/1.1\\r\\nConnection: close\\r\\n\\r\\n' | "
                           "timeout 10 openssl s_client -ign_eof -connect 127.0.0.1:%d "
                           "-servername localhost -CAfile %s -alpn http/1.1 %s -sess_%s %s",
                           s.port, certs.ca, versions[v], round ? "in" : "out", sess);
            assert_int_equal(st, 0);
            assert_non_null(strstr(c->out, "ALPN protocol: http/1.1"));
            assert_non_null(strstr(c->out, "Verify return code: 0 (ok)"));
            assert_non_null(strstr(c->out, "Hello, World!"));
            assert_non_null(strstr(c->out, round ? "Reused, TLSv1." : "New, TLSv1."));
        }
    }
    stop_server(&s, t);
    for (int i = 0; i < 4; i++)
        assert_int_equal(s.rc[i], 0);
    assert_false(s.resumed[0]);
    assert_true(s.resumed[1]);
    assert_false(s.resumed[2]);
    assert_true(s.resumed[3]);
    free(c);
    return NULL;
}

static void s_client_alpn_and_resumption(void **state)
{
    NEED_OPENSSL();
    green(s_client_body);
}

/* ---- misbehaving peers ------------------------------------------------------------------ */

static void *bad_peers_body(void *arg)
{
    struct srv s;
    ivy_thread *t = start_server(&s, certs.cert, certs.key, 3);
    /* 1: the first bytes of a ClientHello record (announcing 512 bytes), then a reset. */
    int fd = ivy_connect("127.0.0.1", s.port, 5);
    assert_true(fd >= 0);
    static const char part[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    assert_int_equal(ivy_sendall(fd, part, sizeof part - 1), sizeof part - 1);
    ivy_sleep(0.05);
    struct linger lg = {1, 0}; /* close with RST */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    ivy_close(fd);
    /* 2: plain HTTP instead of a ClientHello: refused as a protocol error. */
    fd = ivy_connect("127.0.0.1", s.port, 5);
    static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(ivy_sendall(fd, http, sizeof http - 1), sizeof http - 1);
    char buf[256];
    ivy_recv(fd, buf, sizeof buf); /* the server closes */
    ivy_close(fd);
    /* 3: random bytes that look like nothing. */
    fd = ivy_connect("127.0.0.1", s.port, 5);
    static const char junk[] = "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c";
    assert_int_equal(ivy_sendall(fd, junk, sizeof junk - 1), sizeof junk - 1);
    ivy_recv(fd, buf, sizeof buf);
    ivy_close(fd);
    stop_server(&s, t);
    assert_int_equal(s.rc[0], -ECONNRESET);
    assert_int_equal(s.rc[1], -EPROTO);
    assert_non_null(strstr(s.msg[1], "http request"));
    assert_int_equal(s.rc[2], -EPROTO);
    assert_true(strlen(s.msg[2]) > 4);
    return NULL;
}

static void reset_and_garbage_handshakes(void **state)
{
    NEED_OPENSSL();
    green(bad_peers_body);
}

static void *stall_body(void *arg)
{
    struct srv s;
    ivy_thread *t = start_server(&s, certs.cert, certs.key, 1);
    s.hs_timeout = 0.2;
    int fd = ivy_connect("127.0.0.1", s.port, 5); /* connects, then says nothing */
    assert_true(fd >= 0);
    uint64_t t0 = ivy_now_ns();
    stop_server(&s, t);
    uint64_t waited = ivy_now_ns() - t0;
    assert_int_equal(s.rc[0], -ETIMEDOUT);
    assert_true(waited >= 150000000ull && waited < 5000000000ull);
    ivy_close(fd);
    return NULL;
}

static void stalled_handshake_times_out(void **state)
{
    NEED_OPENSSL();
    green(stall_body);
}

/* ---- ivy's own client ------------------------------------------------------------------- */

/* Connects, handshakes, one request; returns the handshake result, its message in msg. */
static int ivy_get(ivy_tls_ctx *cl, int port, const char *name, char *msg, bool *resumed)
{
    int fd = ivy_connect("127.0.0.1", port, 5);
    assert_true(fd >= 0);
    ivy_tls *c = ivy_tls_new(cl, fd, name);
    assert_non_null(c);
    int rc = ivy_tls_handshake(c);
    snprintf(msg, 256, "%s", ivy_tls_error(c));
    if (rc == 0) {
        assert_string_equal(ivy_tls_alpn(c), "http/1.1");
        assert_string_equal(ivy_tls_version(c), "TLSv1.3");
        if (resumed) *resumed = ivy_tls_resumed(c);
        static const char req[] = "GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
        assert_int_equal(ivy_tls_write(c, req, sizeof req - 1), sizeof req - 1);
        char buf[512];
        size_t got = 0;
        ssize_t n;
        while ((n = ivy_tls_read(c, buf + got, sizeof buf - 1 - got)) > 0)
            got += (size_t)n;
        assert_int_equal(n, 0);
        buf[got] = 0;
        assert_string_equal(buf, hello_close);
        ivy_tls_shutdown(c);
    }
    ivy_tls_close(c);
    return rc;
}

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
static void *reload_body(void *arg)
{
    char msg[512], cert[160], key[160];
    snprintf(cert, sizeof cert, "%s/live.pem", certs.dir);
    snprintf(key, sizeof key, "%s/live.key", certs.dir);
    struct cmd *c = calloc(1, sizeof *c);
    assert_int_equal(shell(c, "cp %s %s && cp %s %s", certs.wrong, cert, certs.wrong_key, key), 0);
    struct srv s;
    ivy_thread *t = start_server(&s, cert, key, 2);
    ivy_tls_ctx *cl;
    assert_int_equal(ivy_tls_client_new(&cl, certs.ca, 0, msg, sizeof msg), 0);
    assert_int_equal(ivy_get(cl, s.port, "localhost", msg, NULL), -EPROTO);
    /* A half-renewed pair (new certificate, old key) is refused; the old one keeps serving. */
    assert_int_equal(shell(c, "cp %s %s", certs.cert, cert), 0);
    assert_int_equal(ivy_tls_ctx_reload(s.ctx, msg, sizeof msg), -EINVAL);
    assert_non_null(strstr(msg, "does not match the certificate"));
    assert_int_equal(shell(c, "cp %s %s", certs.key, key), 0);
    assert_int_equal(ivy_tls_ctx_reload(s.ctx, msg, sizeof msg), 0);
    assert_int_equal(ivy_get(cl, s.port, "localhost", msg, NULL), 0);
    stop_server(&s, t);
    ivy_tls_ctx_free(cl);
    free(c);
    return NULL;
}

static void reload_rereads_certificate(void **state)
{
    NEED_OPENSSL();
    green(reload_body);
}

static int setup(void **state)
{
    have_openssl = have_program("openssl") && make_certs(&certs) == 0;
    return 0;
}

static int teardown(void **state)
{
    remove_certs(&certs);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(context_errors),
        cmocka_unit_test(record_path_is_named),
        cmocka_unit_test(curl_cacert_keepalive),
        cmocka_unit_test(curl_untrusted_alert_is_eproto),
        cmocka_unit_test(python_ssl_pipelining),
        cmocka_unit_test(s_client_alpn_and_resumption),
        cmocka_unit_test(reset_and_garbage_handshakes),
        cmocka_unit_test(stalled_handshake_times_out),
        cmocka_unit_test(ivy_client_verifies_and_resumes),
        cmocka_unit_test(interrupted_read_resumes),
        cmocka_unit_test(bulk_transfer_arrives_whole),
        cmocka_unit_test(duplex_and_resumed_handshake),
        cmocka_unit_test(plain_tcp_function_over_tls),
        cmocka_unit_test(reload_rereads_certificate),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
