/*
 * The seeds' GreenPool "Hello, World" httpd in C: a green thread per connection reads request
 * heads line by line and answers each, with keep-alive and pipelining. curl 127.0.0.1:8080
 */
#include <ivy/ivy.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                            "Content-Length: 13\r\n\r\nHello, World!";

static void *handle(void *arg)
{
    int fd = (int)(intptr_t)arg;
    ivy_reader *in = ivy_reader_new(fd, 8192);
    const char *line;
    int lines = 0, keep_alive = 1;
    while (in && ivy_readline(in, &line) > 0) {
        if (line[0] != '\r' && line[0] != '\n') { /* the request line or a header */
            lines++;
            if (!strncasecmp(line, "Connection: close", 17)) keep_alive = 0;
        } else if (lines) { /* the blank line that ends a request head */
            if (ivy_sendall(fd, reply, sizeof reply - 1) < 0 || !keep_alive) break;
            lines = 0;
        }
    }
    ivy_reader_free(in);
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
    int port = argc > 1 ? atoi(argv[1]) : 8080;
    int listener = ivy_listen("127.0.0.1", port, 0, 0);
    if (listener < 0) {
        fprintf(stderr, "listen on port %d: %s\n", port, strerror(-listener));
        return 1;
    }
    printf("hello_http listening on http://127.0.0.1:%d/\n", ivy_local_port(listener));
    fflush(stdout);
    ivy_spawn_n(serve, (void *)(intptr_t)listener);
    return ivy_run() < 0;
}
