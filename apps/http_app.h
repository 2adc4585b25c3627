/* The `ivy serve --app http` application: HTTP/1.1 with keep-alive and pipelining. */
#ifndef IVY_HTTP_APP_H
#define IVY_HTTP_APP_H

#include <stdbool.h>

struct ivy_http_app_options {
    bool test_routes; /* /spin?ms=N: computes without yielding, for watchdog tests */
};

/* An ivy_app_fn: accepts on listen_fd until the worker drains. arg: the options or NULL. */
void ivy_http_app(int listen_fd, void *arg);

#endif
