/* The `ivy serve --app http` application: HTTP/1.1 with keep-alive and pipelining. */
#ifndef IVY_HTTP_APP_H
#define IVY_HTTP_APP_H

#include <stdbool.h>

/* `ivy serve`'s defaults, nginx's: keepalive_timeout 75 s, client_header/body_timeout 60 s,
 * send_timeout 60 s. */
#define IVY_HTTP_KEEPALIVE_TIMEOUT 75.0
#define IVY_HTTP_REQUEST_TIMEOUT   60.0
#define IVY_HTTP_SEND_TIMEOUT      60.0
#define IVY_HTTP_TIMEOUT_MAX       86400.0 /* a day: longer, say 0 */

/* Seconds, 0 for never (the zeroed struct, or NULL options, sets no timeout at all). */
struct ivy_http_app_options {
    bool test_routes; /* /spin?ms=N: computes without yielding, for watchdog tests */
    /* A connection waiting for a request, nothing of it received yet (a new connection, or
     * one between requests), is closed without a response after this long. */
    double keepalive_timeout;
    /* Once bytes of a request are in: the whole head must arrive within this long of the
     * first wait for the rest of it, and each receive of the body within this long of the
     * previous one; otherwise 408 Request Timeout, and the connection is closed. */
    double request_timeout;
    /* A response the kernel cannot take at once (the client is not reading) must make progress:
     * once this long passes with no byte of it taken, the connection is closed, no response
     * possible. The clock restarts with each partial send. */
    double send_timeout;
};

/* An ivy_app_fn: accepts on listen_fd until the worker drains. arg: the options or NULL.
 * The options hold for every connection of the calling worker thread: one app per thread. */
void ivy_http_app(int listen_fd, void *arg);

#endif
