/*
 * Tests for apps/http_app.c: routes, keep-alive and pipelining, request bodies, malformed
 * requests, green sleep, and curl in a child process, against the in-process server of
 * test_http_app.h. The timeouts are test_http_timeouts.c's.
 */
#include "http_reasons.h"
#include "test_http_app.h"

#include <spawn.h>
#include <sys/wait.h>

extern char **environ;

/* ---- routes ----------------------------------------------------------------------------- */

static void routes(int port)
{
    exchange(port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", HELLO);
    exchange(port, "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", HELLO_HEAD(""));
    exchange(port, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
             "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\n"
             "Content-Type: application/octet-stream\r\nContent-Length: 5\r\n"
             "X-Ivy-Worker: -1/<pid>\r\n\r\nhello");
    exchange(port, "GET /sleep?ms=20 HTTP/1.1\r\nHost: a\r\n\r\n",
             "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\nContent-Type: text/plain\r\n"
             "Content-Length: 12\r\nX-Ivy-Worker: -1/<pid>\r\n\r\nslept 20 ms\n");
    exchange(port, "GET /nope HTTP/1.1\r\nHost: a\r\n\r\n",
             "HTTP/1.1 404 Not Found\r\nServer: ivy\r\nDate: <date>\r\n"
             "Content-Type: text/plain\r\nContent-Length: 14\r\n"
             "X-Ivy-Worker: -1/<pid>\r\n\r\n404 Not Found\n");
    exchange(port, "DELETE / HTTP/1.1\r\nHost: a\r\n\r\n",
             "HTTP/1.1 405 Method Not Allowed\r\nServer: ivy\r\nDate: <date>\r\n"
             "Content-Type: text/plain\r\nContent-Length: 23\r\n"
             "X-Ivy-Worker: -1/<pid>\r\nAllow: GET, HEAD\r\n\r\n405 Method Not Allowed\n");
    exchange(port, "GET /spin?ms=5 HTTP/1.1\r\nHost: a\r\n\r\n",
             "HTTP/1.1 404 Not Found\r\nServer: ivy\r\nDate: <date>\r\n"
             "Content-Type: text/plain\r\nContent-Length: 14\r\n"
             "X-Ivy-Worker: -1/<pid>\r\n\r\n404 Not Found\n");
    /* HTTP/1.0: closed after the answer unless it asks for keep-alive. */
    struct client *c = client_new(port);
    PUT(c, "GET / HTTP/1.0\r\n\r\n");
    expect_response(c, HELLO_HEAD("Connection: close\r\n") "Hello, World!");
    expect_eof(c);
    client_free(c);
    exchange(port, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
             HELLO_HEAD("Connection: keep-alive\r\n") "Hello, World!");
}

SERVED(each_route_answers_exactly, routes)

static void spin(int port)
{
    exchange(port, "GET /spin?ms=5 HTTP/1.1\r\nHost: a\r\n\r\n",
             "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\nContent-Type: text/plain\r\n"
             "Content-Length: 10\r\nX-Ivy-Worker: -1/<pid>\r\n\r\nspun 5 ms\n");
}

SERVED(spin_route_only_with_test_routes, spin, .test_routes = true)

static void stats(int port)
{
    struct client *c = client_new(port);
    PUT(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /stats HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(c, HELLO);
    char *r = response(c);
    assert_non_null(r);
    char want[64];
    snprintf(want, sizeof want, "{\"pid\":%d,\"worker\":-1,", (int)getpid());
    assert_non_null(strstr(r, "Content-Type: application/json\r\n"));
    assert_non_null(strstr(r, want));
    assert_non_null(strstr(r, "\"conns_open\":1,"));
    assert_non_null(strstr(r, "\"draining\":false}"));
    free(r);
    client_free(c);
}

SERVED(stats_route_reports_this_worker, stats)

/* 50 keep-alive connections wait between requests. Hot (a request within the last second) each
 * holds its input and output buffers; then each gives them back. The one asking for /stats holds
 * one then, the input it is answered from. */
static void idle(int port)
{
    enum { N = 50 };
    struct client *c[N];
    for (int i = 0; i < N; i++) {
        c[i] = client_new(port);
        PUT(c[i], "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        expect_response(c[i], HELLO);
    }
    struct client *s = client_new(port);
    PUT(s, "GET /stats HTTP/1.1\r\nHost: a\r\n\r\n");
    char *r = response(s);
    assert_non_null(strstr(r, "\"conns_open\":51,"));
    assert_non_null(strstr(r, "\"buffers_held\":101,"));
    /* This client's thread, the server's, its sweeper and one per connection. */
    assert_non_null(strstr(r, "\"threads_alive\":54,"));
    free(r);
    ivy_sleep(1.4); /* the hot wait (1 s), then the sweep that ends it (every 0.1 s) */
    PUT(s, "GET /stats HTTP/1.1\r\nHost: a\r\n\r\n");
    r = response(s);
    /* Parked: the 50 quiet connections hold neither buffer nor thread; the one asking was
     * parked too, and its request started a thread that took one input buffer. */
    assert_non_null(strstr(r, "\"conns_open\":51,"));
    assert_non_null(strstr(r, "\"buffers_held\":1,"));
    assert_non_null(strstr(r, "\"threads_alive\":4,"));
    free(r);
    client_free(s);
    for (int i = 0; i < N; i++) { /* each wakes on its bytes and answers */
        PUT(c[i], "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        expect_response(c[i], HELLO);
        client_free(c[i]);
    }
}

SERVED(quiet_connections_park_with_no_buffer_and_no_thread, idle)

/* ---- keep-alive and pipelining ------------------------------------------------------------ */

static void keep_alive(int port)
{
    struct client *c = client_new(port);
    for (int i = 0; i < 5; i++) {
        PUT(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        expect_response(c, HELLO);
    }
    PUT(c, "HEAD / HTTP/1.1\r\nHost: a\r\n\r\nHEAD /x HTTP/1.1\r\nHost: a\r\n\r\n"
           "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_reply(c, HELLO_HEAD(""), true);
    expect_reply(c,
                 "HTTP/1.1 404 Not Found\r\nServer: ivy\r\nDate: <date>\r\n"
                 "Content-Type: text/plain\r\nContent-Length: 14\r\n"
                 "X-Ivy-Worker: -1/<pid>\r\n\r\n",
                 true);
    expect_response(c, HELLO); /* the HEADs sent no body that would garble this one */
    client_free(c);
}

SERVED(keep_alive_serves_several_requests, keep_alive)

/* 16 requests (hello, echo of their index, 404) in one send, or trickled in 7-byte pieces. */
static void pipeline(int port, size_t piece)
{
    char reqs[4096], want[16][512];
    size_t n = 0;
    for (int i = 0; i < 16; i++) {
        if (i % 3 == 0) {
            n += (size_t)snprintf(reqs + n, sizeof reqs - n, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
            snprintf(want[i], sizeof want[i], "%s", HELLO);
        } else if (i % 3 == 1) {
            n += (size_t)snprintf(reqs + n, sizeof reqs - n,
                                  "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%d",
                                  i < 10 ? 1 : 2, i);
            snprintf(want[i], sizeof want[i],
                     "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\n"
                     "Content-Type: application/octet-stream\r\nContent-Length: %d\r\n"
                     "X-Ivy-Worker: -1/<pid>\r\n\r\n%d",
                     i < 10 ? 1 : 2, i);
        } else {
            n += (size_t)snprintf(reqs + n, sizeof reqs - n, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
            snprintf(want[i], sizeof want[i], "%s",
                     "HTTP/1.1 404 Not Found\r\nServer: ivy\r\nDate: <date>\r\n"
                     "Content-Type: text/plain\r\nContent-Length: 14\r\n"
                     "X-Ivy-Worker: -1/<pid>\r\n\r\n404 Not Found\n");
        }
    }
    struct client *c = client_new(port);
    for (size_t off = 0; off < n; off += piece) {
        put(c, reqs + off, n - off < piece ? n - off : piece);
        if (piece < n) ivy_sleep(0.001); /* let each piece arrive alone */
    }
    for (int i = 0; i < 16; i++)
        expect_response(c, want[i]);
    client_free(c);
}

static void pipeline_whole(int port)
{
    pipeline(port, 1 << 20);
}

static void pipeline_trickled(int port)
{
    pipeline(port, 7);
}

SERVED(sixteen_pipelined_requests_answered_in_order, pipeline_whole)

SERVED(pipelined_requests_split_anywhere, pipeline_trickled)

/* 1000 requests in one write: 40 KiB in, 150 KiB out, more than one buffer of each. */
static void deep(int port)
{
    enum { N = 1000 };
    static const char one[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    char *reqs = malloc(N * (sizeof one - 1));
    for (int i = 0; i < N; i++)
        memcpy(reqs + i * (sizeof one - 1), one, sizeof one - 1);
    struct client *c = client_new(port);
    put(c, reqs, N * (sizeof one - 1));
    for (int i = 0; i < N; i++)
        expect_response(c, HELLO);
    client_free(c);
    free(reqs);
}

SERVED(thousand_pipelined_requests_overflow_the_buffers, deep)

/* ---- request bodies ------------------------------------------------------------------------ */

static void chunked(int port)
{
    struct client *c = client_new(port);
    PUT(c, "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
    ivy_sleep(0.005);
    PUT(c, "lo\r\n1;ext=1\r\n \r\n");
    ivy_sleep(0.005);
    PUT(c, "6\r\nworld!\r\n0\r\nX-Trailer: 1\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(c, ECHO_HEAD(12) "hello world!");
    expect_response(c, HELLO);
    client_free(c);
}

SERVED(chunked_echo_decodes_across_reads, chunked)

static void expect_continue(int port)
{
    struct client *c = client_new(port);
    PUT(c, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    while (c->len < 25)
        assert_true(more(c));
    assert_int_equal(c->len, 25);
    assert_memory_equal(c->buf, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    c->len = 0;
    PUT(c, "hello");
    expect_response(c, ECHO_HEAD(5) "hello");
    client_free(c);
}

SERVED(expect_100_continue_before_the_body, expect_continue)

/* 1 MiB (the limit) comes back byte for byte, in one connection with a second request. */
static void big_echo(int port)
{
    enum { N = 1 << 20 };
    char *req = malloc(N + 128);
    int h = snprintf(req, 128, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", N);
    for (int i = 0; i < N; i++)
        req[h + i] = (char)('a' + i % 23);
    struct client *c = client_new(port);
    put(c, req, (size_t)h + N);
    PUT(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    char *r = response(c);
    assert_non_null(r);
    char *body = strstr(r, "\r\n\r\n") + 4;
    assert_non_null(strstr(r, "Content-Length: 1048576\r\n"));
    assert_memory_equal(body, req + h, N);
    free(r);
    expect_response(c, HELLO);
    client_free(c);
    free(req);
}

SERVED(one_mebibyte_echo_is_exact, big_echo)

/* ---- malformed requests: the status (or a bare close), then the worker still serves ---------- */

struct bad {
    const char *name;
    char *req; /* sent whole; the client then half-closes */
    size_t len;
    int status; /* 0: closed without an answer */
};

static char *repeat(const char *head, const char *unit, int n, const char *tail, size_t *len)
{
    size_t hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
    char *s = malloc(hl + ul * (size_t)n + tl + 1);
    memcpy(s, head, hl);
    for (int i = 0; i < n; i++)
        memcpy(s + hl + ul * (size_t)i, unit, ul);
    memcpy(s + hl + ul * (size_t)n, tail, tl + 1);
    *len = hl + ul * (size_t)n + tl;
    return s;
}

#define BAD(name, req, status)                                                                     \
    {                                                                                              \
        name, strdup(req), sizeof(req) - 1, status                                                 \
    }

static void malformed(int port)
{
    struct bad t[] = {
        BAD("bad method", "G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        BAD("bare LF, no CR", "GET / HTTP/1.1\nHost: a\n\n", 400),
        BAD("CR without LF", "GET / HTTP/1.1\rHost: a\r\n\r\n", 400),
        BAD("no Host in 1.1", "GET / HTTP/1.1\r\n\r\n", 400),
        BAD("bad Content-Length", "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n",
            400),
        BAD("two Content-Lengths",
            "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
            400),
        BAD("body above the limit",
            "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n", 413),
        BAD("bad chunk size",
            "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n", 400),
        BAD("gzip coding",
            "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        BAD("HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        BAD("head cut short", "GET / HTTP/1.1\r\nHost: a\r\n", 0),
        BAD("body cut short", "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nabc", 0),
        {"9 KiB header", NULL, 0, 431},
        {"101 headers", NULL, 0, 431},
    };
    enum { N = sizeof t / sizeof t[0] };
    t[N - 2].req =
        repeat("GET / HTTP/1.1\r\nHost: a\r\nX-Big: ", "a", 9 * 1024, "\r\n\r\n", &t[N - 2].len);
    t[N - 1].req =
        repeat("GET / HTTP/1.1\r\nHost: a\r\n", "X-H: v\r\n", 100, "\r\n", &t[N - 1].len);
    for (int i = 0; i < N; i++) {
        print_message("  %s\n", t[i].name);
        struct client *c = client_new(port);
        put(c, t[i].req, t[i].len);
        ivy_shutdown(c->fd, SHUT_WR);
        if (t[i].status) {
            char want[512], body[64];
            const char *reason = reason_phrase(t[i].status);
            int n = snprintf(body, sizeof body, "%d %s\n", t[i].status, reason);
            snprintf(want, sizeof want,
                     "HTTP/1.1 %d %s\r\nServer: ivy\r\nDate: <date>\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %d\r\nConnection: close\r\nX-Ivy-Worker: -1/<pid>\r\n\r\n%s",
                     t[i].status, reason, n, body);
            expect_response(c, want);
        }
        expect_eof(c);
        client_free(c);
        free(t[i].req);
        exchange(port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", HELLO);
    }
    /* Bytes after "Connection: close" are never answered. */
    struct client *c = client_new(port);
    PUT(c,
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(c, HELLO_HEAD("Connection: close\r\n") "Hello, World!");
    expect_eof(c);
    client_free(c);
}

SERVED(malformed_requests_get_their_status_and_a_close, malformed)

/* A peer that resets mid-request hurts nobody else. */
static void reset(int port)
{
    struct client *c = client_new(port);
    PUT(c, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc");
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    client_free(c);
    exchange(port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", HELLO);
}

SERVED(peer_reset_mid_request_leaves_the_server_serving, reset)

/* ---- green sleep: one connection sleeps, another is answered meanwhile ------------------- */

static uint64_t slept_at, hello_at;

static void *sleeper(void *arg)
{
    exchange((int)(intptr_t)arg, "GET /sleep?ms=200 HTTP/1.1\r\nHost: a\r\n\r\n",
             "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\nContent-Type: text/plain\r\n"
             "Content-Length: 13\r\nX-Ivy-Worker: -1/<pid>\r\n\r\nslept 200 ms\n");
    slept_at = ivy_now_ns();
    return NULL;
}

static void sleep_concurrently(int port)
{
    uint64_t t0 = ivy_now_ns();
    ivy_thread *t = ivy_spawn(sleeper, (void *)(intptr_t)port);
    ivy_sleep(0.02);
    exchange(port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", HELLO);
    hello_at = ivy_now_ns();
    assert_int_equal(ivy_join(t, NULL), 0);
    assert_true(slept_at - t0 >= 200000000u);
    assert_true(hello_at < slept_at);
}

SERVED(sleep_blocks_only_its_connection, sleep_concurrently)

/* ---- curl, a real client, in a child process ----------------------------------------------- */

static char curl_out[8192];

static void run_curl(const char *const *args)
{
    char path[] = "/tmp/ivy-curl-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd, 1);
    pid_t pid;
    assert_int_equal(posix_spawnp(&pid, "curl", &fa, NULL, (char *const *)args, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    int st;
    while (waitpid(pid, &st, WNOHANG) == 0)
        ivy_sleep(0.005); /* the server runs on this hub: wait without blocking it */
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ssize_t n = pread(fd, curl_out, sizeof curl_out - 1, 0);
    assert_true(n > 0);
    curl_out[normalise(curl_out, (size_t)n)] = 0;
    close(fd);
    unlink(path);
}

static void curl(int port)
{
    char u1[64], u2[64];
    snprintf(u1, sizeof u1, "http://127.0.0.1:%d/", port);
    snprintf(u2, sizeof u2, "http://127.0.0.1:%d/stats", port);
    /* Two URLs: curl reuses the connection, so /stats sees one connection open. */
    run_curl((const char *const[]){"curl", "-sS", "-i", u1, u2, NULL});
    assert_memory_equal(curl_out, HELLO, strlen(HELLO));
    assert_non_null(strstr(curl_out, "\"conns_open\":1,"));
    snprintf(u1, sizeof u1, "http://127.0.0.1:%d/echo", port);
    run_curl((const char *const[]){"curl", "-sS", "-i", "-H", "Transfer-Encoding: chunked", "-H",
                                   "Expect: 100-continue", "--data-binary", "ivy via curl", u1,
                                   NULL});
    assert_non_null(strstr(curl_out, "HTTP/1.1 100 Continue\r\n\r\n"));
    assert_non_null(strstr(curl_out, ECHO_HEAD(12) "ivy via curl"));
}

SERVED(curl_gets_hello_stats_and_chunked_echo, curl)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(each_route_answers_exactly),
        cmocka_unit_test(spin_route_only_with_test_routes),
        cmocka_unit_test(stats_route_reports_this_worker),
        cmocka_unit_test(quiet_connections_park_with_no_buffer_and_no_thread),
        cmocka_unit_test(keep_alive_serves_several_requests),
        cmocka_unit_test(sixteen_pipelined_requests_answered_in_order),
        cmocka_unit_test(pipelined_requests_split_anywhere),
        cmocka_unit_test(thousand_pipelined_requests_overflow_the_buffers),
        cmocka_unit_test(chunked_echo_decodes_across_reads),
        cmocka_unit_test(expect_100_continue_before_the_body),
        cmocka_unit_test(one_mebibyte_echo_is_exact),
        cmocka_unit_test(malformed_requests_get_their_status_and_a_close),
        cmocka_unit_test(peer_reset_mid_request_leaves_the_server_serving),
        cmocka_unit_test(sleep_blocks_only_its_connection),
        cmocka_unit_test(curl_gets_hello_stats_and_chunked_echo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
