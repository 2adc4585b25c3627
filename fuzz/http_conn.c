/*
 * Fuzz target: a whole connection of the HTTP server (http/), fed arbitrary bytes in arbitrary
 * splits. The first byte seeds how the rest is split; a loopback client in one green thread sends
 * the pieces, yielding between them so the server takes them as they come, then half-closes and
 * reads everything to the end; ivy_http_serve runs in another with a router whose handlers read
 * bodies whole and streamed, stream chunked answers and take path and query parameters. The
 * server must never crash, leak or hang (the client's reads are under a timeout), and what it
 * sends must be HTTP/1.1 responses (or nothing).
 */
#include "fuzz.h"

#include "ivy/http.h"
#include "ivy/hub.h"
#include "ivy/socket.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

static ivy_http_router *routes;

static int echo(ivy_http_req *r, void *arg)
{
    const char *body;
    ssize_t n = ivy_http_body(r, &body);
    if (n < 0) return (int)n;
    return ivy_http_respond(r, 200, "application/octet-stream", body, (size_t)n);
}

static int stream(ivy_http_req *r, void *arg)
{
    char buf[512], q[32];
    ssize_t n;
    int rc = ivy_http_start(r, 200, "text/plain", -1);
    if (rc < 0) return rc;
    if (ivy_http_query_param(r, "q", q, sizeof q) >= 0 &&
        (rc = (int)ivy_http_write(r, q, strlen(q))) < 0)
        return rc;
    while ((n = ivy_http_read(r, buf, sizeof buf)) > 0)
        if ((rc = (int)ivy_http_write(r, buf, (size_t)n)) < 0) return rc;
    return n < 0 ? (int)n : 0;
}

static int param(ivy_http_req *r, void *arg)
{
    struct ivy_http_slice id = ivy_http_param(r, "id");
    const struct ivy_http_slice *h = ivy_http_header(r, "x-a");
    char body[128];
    int n = snprintf(body, sizeof body, "%.*s %zu %u", (int)(id.len < 32 ? id.len : 32), id.p,
                     h ? h->len : 0, ivy_http_header_count(r));
    if (h) ivy_http_add_header(r, "X-Seen", "1");
    return ivy_http_respond(r, 200, NULL, body, (size_t)n);
}

struct run {
    const uint8_t *data;
    size_t size;
    int lfd, port;
    char out[1 << 16];
    size_t out_len;
};

static void *server(void *arg)
{
    struct run *r = arg;
    struct ivy_http_options o = {.handler = ivy_http_router_handler,
                                 .arg = routes,
                                 .request_timeout = 0.5,
                                 .keepalive_timeout = 0.5,
                                 .send_timeout = 0.5,
                                 .body_limit = 4096};
    CHECK(ivy_http_serve(r->lfd, &o) == 0);
    return NULL;
}

static void *client(void *arg)
{
    struct run *r = arg;
    int fd = ivy_connect("127.0.0.1", r->port, 1.0);
    CHECK(fd >= 0);
    uint32_t seed = r->data[0];
    for (size_t at = 1; at < r->size;) {
        size_t n = fuzz_piece(&seed, r->size - at);
        if (ivy_sendall(fd, r->data + at, n) < 0) break; /* the server closed: fine */
        at += n;
        ivy_sleep(0); /* let the server take this piece before the next */
    }
    ivy_shutdown(fd, SHUT_WR);
    struct ivy_timeout to;
    CHECK(ivy_timeout_begin(&to, 5.0) == 0);
    ssize_t n;
    while (r->out_len < sizeof r->out &&
           (n = ivy_recv(fd, r->out + r->out_len, sizeof r->out - r->out_len)) > 0)
        r->out_len += (size_t)n;
    CHECK(ivy_timeout_end(&to) == 0); /* the server ended the connection in time */
    /* A reset rather than TIME_WAIT: millions of runs would use up the ephemeral ports. */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &(struct linger){1, 0}, sizeof(struct linger));
    ivy_close(fd);
    ivy_accept_stop(r->lfd); /* ivy_http_serve returns and closes its copy of the listener */
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (!routes) {
        CHECK(ivy_hub_init(&(struct ivy_hub_options){.quiet = true}) == 0);
        CHECK((routes = ivy_http_router_new()));
        CHECK(ivy_http_route(routes, "POST /echo", echo, NULL) == 0);
        CHECK(ivy_http_route(routes, "/stream", stream, NULL) == 0);
        CHECK(ivy_http_route(routes, "GET /p/{id}/{rest...}", param, NULL) == 0);
    }
    static int listener = -1, port;
    if (listener < 0) {
        CHECK((listener = ivy_listen("127.0.0.1", 0, 16, 0)) >= 0);
        port = ivy_local_port(listener);
    }
    static struct run r;
    memset(&r, 0, offsetof(struct run, out));
    r.out_len = 0;
    r.data = data;
    r.size = size;
    CHECK((r.lfd = dup(listener)) >= 0); /* one listener for every run: one port */
    r.port = port;
    CHECK(ivy_spawn_n(server, &r) == 0);
    CHECK(ivy_spawn_n(client, &r) == 0);
    CHECK(ivy_run() == 0);
    CHECK(r.out_len == 0 || (r.out_len >= 9 && !memcmp(r.out, "HTTP/1.1 ", 9)));
    return 0;
}
