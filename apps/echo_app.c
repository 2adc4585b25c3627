/*
 * The echo app: every byte back as it comes, one green thread per connection. A connection
 * is idle whenever it waits to receive (echo has no requests to finish), so a draining worker
 * closes it once it has been quiet for a moment.
 */
#include "echo_app.h"

#include "ivy/cluster.h"
#include "ivy/ivy.h"

#include <stdint.h>

enum { BUF = 16384 };

static void *echo_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    struct ivy_conn c;
    char buf[BUF];
    ivy_conn_open(&c);
    for (;;) {
        ivy_conn_set_idle(&c, true);
        ssize_t n = ivy_recv(fd, buf, sizeof buf);
        ivy_conn_set_idle(&c, false);
        if (n <= 0 || ivy_sendall(fd, buf, (size_t)n) < 0) break;
        ivy_worker_count(1, (uint64_t)n, (uint64_t)n);
    }
    ivy_conn_close(&c);
    ivy_close(fd);
    return NULL;
}

void ivy_echo_app(int listen_fd, void *arg)
{
    int fd;
    while ((fd = ivy_accept(listen_fd, NULL)) >= 0)
        if (ivy_spawn_n(echo_conn, (void *)(intptr_t)fd) < 0) ivy_close(fd);
}
