/*
 * The echo app: every byte back as it comes, one green thread per connection, on the TCP
 * helper (ivy_tcp_serve), which registers each connection: a draining worker closes it once it
 * has waited quietly for a moment, since echo has no requests to finish. The receive buffer is
 * the connection's, on the heap (one allocation per connection, not per message): a 16 KiB frame
 * would span four pages of a green stack that has one guard page.
 */
#include "echo_app.h"

#include "ivy/cluster.h"
#include "ivy/ivy.h"

#include <stdint.h>
#include <stdlib.h>

enum { BUF = 16384 };

static void echo_conn(int fd, void *arg)
{
    char *buf = malloc(BUF);
    if (!buf) return; /* ivy_tcp_serve closes fd */
    ssize_t n;
    while ((n = ivy_recv(fd, buf, BUF)) > 0 && ivy_sendall(fd, buf, (size_t)n) >= 0)
        ivy_worker_count(1, (uint64_t)n, (uint64_t)n);
    free(buf);
}

void ivy_echo_app(int listen_fd, void *arg)
{
    ivy_tls_ctx *tls = ivy_worker_tls(); /* ivy serve --tls-cert */
    if (tls)
        ivy_tls_tcp_serve(listen_fd, tls, echo_conn, arg);
    else
        ivy_tcp_serve(listen_fd, echo_conn, arg);
}
