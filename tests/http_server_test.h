/*
 * The harness of the tests of the public HTTP server (test_http_request.c, test_http_response.c,
 * test_http_server.c, test_http_router.c): ivy_http_serve with a test's handler on a listener of
 * an ephemeral port, in a green thread, and the test's client body in another; the client ends
 * the server with ivy_accept_stop, so ivy_run returns once every connection has closed, and
 * ivy_http_serve (which closed the listener itself) must have returned 0.
 */
#ifndef IVY_TEST_HTTP_SERVER_H
#define IVY_TEST_HTTP_SERVER_H

#include "http_client.h"

#include <errno.h>

/* A response head as the server writes it; extra: headers after Content-Length. */
#define HEAD_200(type, len, extra)                                                                 \
    "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\nContent-Type: " type "\r\n"                 \
    "Content-Length: " #len "\r\n" extra "\r\n"
#define TEXT_200(len, extra) HEAD_200("text/plain", len, extra)
/* The head of a text/plain 200, for printf with its length (a size_t). */
#define TEXT_200_FMT                                                                               \
    "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\nContent-Type: text/plain\r\n"               \
    "Content-Length: %zu\r\n\r\n"

struct serve_run {
    void (*client)(int port);
    int lfd, port, rc;
    struct ivy_http_options opts;
    bool done;
};

static inline void *serve_main(void *arg)
{
    struct serve_run *r = arg;
    r->rc = ivy_http_serve(r->lfd, &r->opts);
    return NULL;
}

static inline void *serve_client_main(void *arg)
{
    struct serve_run *r = arg;
    r->client(r->port);
    r->done = true;
    ivy_accept_stop(r->lfd);
    return NULL;
}

static inline void serve_with(void (*client)(int port), struct ivy_http_options opts)
{
    struct serve_run r = {.client = client, .opts = opts, .rc = 1};
    r.lfd = ivy_listen("127.0.0.1", 0, 128, 0);
    assert_true(r.lfd >= 0);
    r.port = ivy_local_port(r.lfd);
    assert_non_null(ivy_spawn(serve_main, &r));
    ivy_detach(ivy_spawn(serve_client_main, &r));
    assert_int_equal(ivy_run(), 0);
    assert_true(r.done);
    assert_int_equal(r.rc, 0);
}

/* A test: client run against a fresh server; the rest: its ivy_http_options fields. */
#define HTTP_TEST(test, client, ...)                                                               \
    static void test(void **state)                                                                 \
    {                                                                                              \
        (void)state;                                                                               \
        serve_with(client, (struct ivy_http_options){__VA_ARGS__});                                \
    }

/* As HTTP_TEST, skipped (visibly) without prog on PATH. */
#define HTTP_TEST_NEEDS(prog, test, client, ...)                                                   \
    static void test(void **state)                                                                 \
    {                                                                                              \
        (void)state;                                                                               \
        if (!have_program(prog)) {                                                                 \
            print_message("  " prog " not found: skipped\n");                                      \
            skip();                                                                                \
        }                                                                                          \
        serve_with(client, (struct ivy_http_options){__VA_ARGS__});                                \
    }

/* FNV-1a, 64 bits: the checksum both ends of a large transfer compute. */
static inline uint64_t fnv(uint64_t h, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}
#define FNV_INIT 0xcbf29ce484222325ull

/* A slice's bytes for printf's "%.*s". */
#define SL(s) (int)(s).len, (s).p ? (s).p : ""

/* A slice equal to a C string. */
#define assert_slice(s, str)                                                                       \
    do {                                                                                           \
        struct ivy_http_slice s_ = (s);                                                            \
        assert_non_null(s_.p);                                                                     \
        assert_int_equal(s_.len, strlen(str));                                                     \
        assert_memory_equal(s_.p, (str), s_.len);                                                  \
    } while (0)

#endif
