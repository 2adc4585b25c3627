/*
 * The seeds' GreenPool echo server in C: a listener, a pool, and one green thread per
 * connection written as plain blocking code. Each recv or send suspends only its own thread.
 *
 *   build/examples/echo_server [PORT]      then: nc 127.0.0.1 6000
 */
#include <ivy/ivy.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *handle(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    ssize_t n;
    while ((n = ivy_recv(fd, buf, sizeof buf)) > 0)
        if (ivy_sendall(fd, buf, (size_t)n) < 0) break;
    ivy_close(fd);
    return NULL;
}

static void *serve(void *arg)
{
    ivy_pool *pool = ivy_pool_new(10000); /* at most 10,000 clients at once; more wait */
    int fd;
    while ((fd = ivy_accept((int)(intptr_t)arg, NULL)) >= 0)
        ivy_pool_spawn(pool, handle, (void *)(intptr_t)fd, NULL);
    fprintf(stderr, "accept: %s\n", strerror(-fd));
    ivy_pool_waitall(pool);
    ivy_pool_free(pool);
    return NULL;
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 6000;
    int listener = ivy_listen("127.0.0.1", port, 0, 0);
    if (listener < 0) {
        fprintf(stderr, "listen on port %d: %s\n", port, strerror(-listener));
        return 1;
    }
    printf("echo server listening on 127.0.0.1:%d\n", ivy_local_port(listener));
    fflush(stdout);
    ivy_spawn_n(serve, (void *)(intptr_t)listener);
    return ivy_run() < 0;
}
