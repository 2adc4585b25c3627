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
#include "http_client.h"
#include "http_parse.h"

#define HELLO_HEAD(extra)                                                                          \
    "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\nContent-Type: text/plain\r\n"               \
    "Content-Length: 13\r\n" extra "X-Ivy-Worker: -1/<pid>\r\n\r\n"
#define HELLO HELLO_HEAD("") "Hello, World!"
#define ECHO_HEAD(len)                                                                             \
    "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\nContent-Type: application/octet-stream\r\n" \
    "Content-Length: " #len "\r\nX-Ivy-Worker: -1/<pid>\r\n\r\n"

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
