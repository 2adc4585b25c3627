/* The `ivy serve --app http` application: a few routes on the HTTP library (http_app.c). */
#ifndef IVY_HTTP_APP_H
#define IVY_HTTP_APP_H

#include <stdbool.h>

#define IVY_HTTP_TIMEOUT_MAX 86400.0 /* a day: the longest timeout the command line takes */

/* The timeouts are struct ivy_http_options' (include/ivy/http.h): seconds, 0 for the default,
 * < 0 for never. */
struct ivy_http_app_options {
    bool test_routes; /* /spin?ms=N: computes without yielding, for watchdog tests */
    double keepalive_timeout, request_timeout, send_timeout;
};

/* An ivy_app_fn: serves on listen_fd until the worker drains. arg: the options or NULL. */
void ivy_http_app(int listen_fd, void *arg);

#endif
