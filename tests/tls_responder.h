/*
 * For the TLS tests that run everything in one process (test_tls.c, test_tls_conn.c): a green
 * TLS HTTP responder on a free loopback port that records each handshake's outcome, command
 * lines run on the offload pool (so the responder serves meanwhile), and ivy's own client
 * making one request. Include after cmocka.h.
 */
#ifndef IVY_TEST_TLS_RESPONDER_H
#define IVY_TEST_TLS_RESPONDER_H

#include "tls_test.h"

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

static inline void *serve_conn(void *arg)
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

static inline void *server_main(void *arg)
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

static inline ivy_thread *start_server(struct srv *s, const char *cert, const char *key, int max)
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

static inline void stop_server(struct srv *s, ivy_thread *t)
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

static inline void *cmd_fn(void *arg)
{
    struct cmd *c = arg;
    c->status = run_cmd(c->line, c->out, sizeof c->out);
    return NULL;
}

static inline int shell(struct cmd *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->line, sizeof c->line, fmt, ap);
    va_end(ap);
    assert_int_equal(ivy_offload(cmd_fn, c, NULL), 0);
    return c->status;
}

/* Runs fn as a green thread on a fresh hub run. */
static inline void green(ivy_fn fn)
{
    ivy_thread *t = ivy_spawn(fn, NULL);
    assert_non_null(t);
    assert_int_equal(ivy_run(), 0);
}

/* ---- ivy's own client ------------------------------------------------------------------- */

/* Connects, handshakes, one request; returns the handshake result, its message in msg. */
static inline int ivy_get(ivy_tls_ctx *cl, int port, const char *name, char *msg, bool *resumed)
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

#endif
