/*
 * A plaintext TCP connection function over TLS: the function gets one end of a socketpair and
 * two green threads pump between the other end and the TLS connection, one each way. So any
 * TCP app (echo, a module's tcp function) serves TLS unchanged, at the cost of a copy and a
 * local socket hop each way; HTTP does not go through here (the server reads TLS itself).
 *
 * Ends: the client's close_notify or EOF becomes the function's EOF (SHUT_WR on the pair);
 * the function's return (or its own shutdown) becomes our close_notify.
 */
#include "tls_impl.h"

#include "ivy/hub.h"
#include "ivy/socket.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

enum { PUMP_BUF = 16384 };

struct pump {
    ivy_tls *c;
    int fd; /* our end of the pair */
};

/* Each pump's buffer is on the heap: green stacks stay small (-Wframe-larger-than). */
static void *tls_to_app(void *arg)
{
    struct pump *p = arg;
    char *buf = malloc(PUMP_BUF);
    ssize_t n;
    while (buf && (n = ivy_tls_read(p->c, buf, PUMP_BUF)) > 0)
        if (ivy_sendall(p->fd, buf, (size_t)n) < 0) break;
    free(buf);
    ivy_shutdown(p->fd, SHUT_WR); /* the app reads its end of stream */
    return NULL;
}

static void *app_to_tls(void *arg)
{
    struct pump *p = arg;
    char *buf = malloc(PUMP_BUF);
    ssize_t n = -ENOMEM;
    while (buf && (n = ivy_recv(p->fd, buf, PUMP_BUF)) > 0)
        if (ivy_tls_write(p->c, buf, (size_t)n) < 0) break;
    free(buf);
    if (n == 0) ivy_tls_shutdown(p->c); /* the app is done: close_notify */
    return NULL;
}

int ivy_tls_run_plain(ivy_tls *c, ivy_conn_fn fn, void *arg)
{
    if (!c || !fn) return -EINVAL;
    int rc = ivy_tls_handshake(c);
    if (rc < 0) return rc;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return -errno;
    struct pump p = {c, sv[0]};
    ivy_thread *in = ivy_spawn(tls_to_app, &p);
    ivy_thread *out = in ? ivy_spawn(app_to_tls, &p) : NULL;
    if (out)
        fn(sv[1], arg);
    else
        rc = -ENOMEM;
    ivy_close(sv[1]); /* app_to_tls reads the end and says close_notify */
    if (out) ivy_join(out, NULL);
    if (in) { /* the client may say nothing more: stop waiting for it */
        ivy_kill(in);
        ivy_join(in, NULL);
    }
    ivy_close(sv[0]);
    return rc;
}
