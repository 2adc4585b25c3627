/* The `ivy serve --app echo` application: bytes back as they come. */
#ifndef IVY_ECHO_APP_H
#define IVY_ECHO_APP_H

/* An ivy_app_fn: accepts on listen_fd until the worker drains. */
void ivy_echo_app(int listen_fd, void *arg);

#endif
