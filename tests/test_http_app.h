/*
 * The harness of the http app's tests (test_http_app.c, test_http_timeouts.c): the app served
 * in-process (ivy_listen on an ephemeral port, ivy_http_app in a green thread) to clients that
 * are green threads on the same hub. Each test ends the server with ivy_accept_stop, so ivy_run
 * returns once every connection has closed.
 *
 * Responses are compared byte for byte after normalise() replaces what varies between runs:
 * the Date value and the pid in X-Ivy-Worker.
 */
#ifndef IVY_TEST_HTTP_APP_H
#define IVY_TEST_HTTP_APP_H

#include <ivy/ivy.h>

#include <errno.h>
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

#include "http_app.h"
#include "http_parse.h"

#define HELLO_HEAD(extra)                                                                          \
    "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\nContent-Type: text/plain\r\n"               \
    "Content-Length: 13\r\n" extra "X-Ivy-Worker: -1/<pid>\r\n\r\n"
#define HELLO HELLO_HEAD("") "Hello, World!"
#define ECHO_HEAD(len)                                                                             \
    "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\nContent-Type: application/octet-stream\r\n" \
    "Content-Length: " #len "\r\nX-Ivy-Worker: -1/<pid>\r\n\r\n"

/* ---- a client with its own buffer, so that pipelined responses can be read one by one ---- */

struct client {
    int fd;
    size_t len;
    char buf[1 << 21];
};

static inline struct client *client_new(int port)
{
    struct client *c = calloc(1, sizeof *c);
    c->fd = ivy_connect("127.0.0.1", port, 5.0);
    assert_true(c->fd >= 0);
    return c;
}

static inline void client_free(struct client *c)
{
    ivy_close(c->fd);
    free(c);
}

static inline void put(struct client *c, const char *s, size_t n)
{
    assert_int_equal(ivy_sendall(c->fd, s, n), (ssize_t)n);
}
#define PUT(c, lit) put((c), (lit), sizeof(lit) - 1)

/* More bytes into the buffer; false at end of stream. */
static inline bool more(struct client *c)
{
    assert_true(c->len < sizeof c->buf);
    ssize_t n = ivy_recv(c->fd, c->buf + c->len, sizeof c->buf - c->len);
    assert_true(n >= 0);
    c->len += (size_t)n;
    return n > 0;
}

/* Date value and worker pid replaced by placeholders, in place; returns the new length. */
static inline size_t normalise(char *s, size_t n)
{
    char pid[32];
    int pl = snprintf(pid, sizeof pid, "-1/%d\r\n", (int)getpid());
    for (size_t i = 0; i + 6 < n; i++) {
        if (!memcmp(s + i, "\r\nDate: ", 8) && i + 8 + 29 <= n) {
            memmove(s + i + 14, s + i + 37, n - i - 37);
            memcpy(s + i + 8, "<date>", 6);
            n -= 23;
        } else if (!memcmp(s + i, pid, (size_t)pl)) {
            memmove(s + i + 10, s + i + pl, n - i - (size_t)pl);
            memcpy(s + i, "-1/<pid>\r\n", 10);
            n = n + 10 - (size_t)pl;
        }
    }
    return n;
}

/* The next complete response (head and, unless it answers a HEAD, Content-Length body),
 * normalised, NUL-terminated, in a buffer the caller frees; NULL if the stream ends first. */
static inline char *read_response(struct client *c, bool head_only)
{
    char *end;
    while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4)))
        if (!more(c)) return NULL;
    size_t head = (size_t)(end - c->buf) + 4, body = 0;
    char *cl = memmem(c->buf, head, "\r\nContent-Length: ", 18);
    if (cl && !head_only) body = strtoul(cl + 18, NULL, 10);
    while (c->len < head + body)
        if (!more(c)) return NULL;
    char *r = malloc(head + body + 1);
    memcpy(r, c->buf, head + body);
    memmove(c->buf, c->buf + head + body, c->len - head - body);
    c->len -= head + body;
    r[normalise(r, head + body)] = 0;
    return r;
}

static inline char *response(struct client *c)
{
    return read_response(c, false);
}

static inline void expect_reply(struct client *c, const char *want, bool head_only)
{
    char *r = read_response(c, head_only);
    assert_non_null(r);
    assert_string_equal(r, want);
    free(r);
}

static inline void expect_eof(struct client *c)
{
    while (more(c)) {
    }
    assert_int_equal(c->len, 0);
}

static inline void expect_response(struct client *c, const char *want)
{
    expect_reply(c, want, false);
}

/* One request on a fresh connection, its response compared whole. */
static inline void exchange(int port, const char *req, const char *want)
{
    struct client *c = client_new(port);
    put(c, req, strlen(req));
    expect_reply(c, want, !strncmp(req, "HEAD ", 5));
    client_free(c);
}

/* ---- the server, and a client body run against it ----------------------------------------- */

struct run {
    void (*fn)(int port);
    int lfd, port;
    struct ivy_http_app_options opts;
    bool done;
};

static inline void *server_main(void *arg)
{
    struct run *r = arg;
    ivy_http_app(r->lfd, &r->opts);
    return NULL;
}

static inline void *client_main(void *arg)
{
    struct run *r = arg;
    r->fn(r->port);
    r->done = true;
    ivy_accept_stop(r->lfd);
    return NULL;
}

/* sndbuf: the SO_SNDBUF of the listener, which accepted sockets inherit (0: the system's). */
static inline void serve_while_sndbuf(void (*fn)(int port), struct ivy_http_app_options opts,
                                      int sndbuf)
{
    struct run r = {.fn = fn, .opts = opts};
    r.lfd = ivy_listen("127.0.0.1", 0, 128, 0);
    assert_true(r.lfd >= 0);
    if (sndbuf)
        assert_int_equal(setsockopt(r.lfd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf), 0);
    r.port = ivy_local_port(r.lfd);
    assert_non_null(ivy_spawn(server_main, &r));
    ivy_detach(ivy_spawn(client_main, &r));
    assert_int_equal(ivy_run(), 0);
    assert_true(r.done); /* ivy_http_app closed the listener */
}

static inline void serve_while(void (*fn)(int port), struct ivy_http_app_options opts)
{
    serve_while_sndbuf(fn, opts, 0);
}

/* A test: fn run as a client of a fresh server; the rest: the server's option fields. */
#define SERVED(test, fn, ...)                                                                      \
    static void test(void **state)                                                                 \
    {                                                                                              \
        serve_while(fn, (struct ivy_http_app_options){__VA_ARGS__});                               \
    }

#endif
