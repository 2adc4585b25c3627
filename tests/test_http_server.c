/*
 * Tests for http/server.c: ivy_http_serve's errors and its end (after ivy_accept_stop, once its
 * connections have ended, the listener closed), pipelined batches and ivy_http_flush, Python's
 * http.client pipelining and hostile requests, and ivy_http_stats.
 */
#include "http_server_test.h"
#include "server_impl.h"

#include <fcntl.h>
#include <signal.h>

static bool is(ivy_http_req *r, const char *path)
{
    struct ivy_http_slice p = ivy_http_path(r);
    return p.len == strlen(path) && !memcmp(p.p, path, p.len);
}

static int hello(ivy_http_req *r, void *arg)
{
    (void)arg;
    return ivy_http_respond(r, 200, "text/plain", "hi", 2);
}

/* ---- ivy_http_serve's errors and its end --------------------------------------------------- */

static void *serve_bad(void *arg)
{
    int fd = *(int *)arg;
    *(int *)arg = ivy_http_serve(fd, &(struct ivy_http_options){.handler = hello});
    return NULL;
}

static void serve_refuses_no_handler_and_reports_accept_errors(void **state)
{
    (void)state;
    int fd = ivy_listen("127.0.0.1", 0, 16, 0);
    assert_true(fd >= 0);
    assert_int_equal(ivy_http_serve(fd, NULL), -EINVAL);
    assert_int_equal(ivy_http_serve(fd, &(struct ivy_http_options){.arg = &fd}), -EINVAL);
    assert_true(fcntl(fd, F_GETFD) >= 0); /* left open */
    close(fd);
    /* accept's error (a socket that does not listen), the socket closed. */
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rc = s;
    assert_true(s >= 0);
    assert_non_null(ivy_spawn(serve_bad, &rc));
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(rc, -EINVAL);
    assert_int_equal(fcntl(s, F_GETFD), -1);
}

static ivy_event *entered;
static bool handler_done;

static int late(ivy_http_req *r, void *arg)
{
    (void)arg;
    ivy_event_set(entered);
    ivy_sleep(0.1);
    handler_done = true;
    return ivy_http_respond(r, 200, "text/plain", "late", 4);
}

struct ending {
    int lfd, port, rc;
    bool returned;
};

static void *ending_server(void *arg)
{
    struct ending *e = arg;
    e->rc = ivy_http_serve(e->lfd, &(struct ivy_http_options){.handler = late});
    e->returned = true;
    return NULL;
}

static void serve_ends_after_its_connections(void **state)
{
    (void)state;
    struct ending e = {.rc = 1};
    e.lfd = ivy_listen("127.0.0.1", 0, 16, 0);
    e.port = ivy_local_port(e.lfd);
    entered = ivy_event_new();
    handler_done = false;
    ivy_thread *server = ivy_spawn(ending_server, &e);
    struct client *c = client_new(e.port);
    PUT(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    /* Stopped while a handler runs: serve waits for it, and for the connection after it. */
    assert_int_equal(ivy_event_wait(entered, 5.0), 0);
    assert_int_equal(ivy_accept_stop(e.lfd), 0);
    expect_response(c, TEXT_200(4, ) "late");
    assert_true(handler_done);
    PUT(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); /* the connection still serves */
    expect_response(c, TEXT_200(4, ) "late");
    assert_false(e.returned);
    /* A new connection is not accepted any more. */
    client_free(c);
    assert_int_equal(ivy_join(server, NULL), 0);
    assert_true(e.returned);
    assert_int_equal(e.rc, 0);
    assert_int_equal(fcntl(e.lfd, F_GETFD), -1); /* serve closed the listener */
    ivy_event_free(entered);
}

static void *run_in_thread(void *arg)
{
    ((void (*)(void **))arg)(NULL);
    return NULL;
}

static void serve_returns_once_its_connections_end(void **state)
{
    (void)state;
    assert_non_null(ivy_spawn(run_in_thread, (void *)serve_ends_after_its_connections));
    assert_int_equal(ivy_run(), 0);
}

/* ---- pipelined batches and ivy_http_flush -------------------------------------------------- */

static ivy_event *client_got_first;
static int slow_rc;

static int batch(ivy_http_req *r, void *arg)
{
    (void)arg;
    if (is(r, "/slow")) {
        /* The earlier answers leave now, not with this one: the client reads the first and
         * tells us while we wait. */
        assert_int_equal(ivy_http_flush(r), 0);
        slow_rc = ivy_event_wait(client_got_first, 5.0);
        return ivy_http_respond(r, 200, "text/plain", "slow", 4);
    }
    return hello(r, arg);
}

static void flush_client(int port)
{
    client_got_first = ivy_event_new();
    slow_rc = 1;
    struct client *c = client_new(port);
    PUT(c, "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n"
           "GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(c, TEXT_200(2, ) "hi");
    expect_response(c, TEXT_200(2, ) "hi");
    assert_int_equal(slow_rc, 1); /* the slow handler is still waiting */
    ivy_event_set(client_got_first);
    expect_response(c, TEXT_200(4, ) "slow");
    expect_response(c, TEXT_200(2, ) "hi");
    assert_int_equal(slow_rc, 0);
    client_free(c);
    ivy_event_free(client_got_first);
}

HTTP_TEST(flush_sends_earlier_pipelined_answers_first, flush_client, .handler = batch)

/* ---- registered files --------------------------------------------------------------------- */

/* /fixed: whether the connection sends through a registered file; /unregister empties its slot
 * behind the server's back (as a close(2) outside a green thread may, see ivy__fixed_add). */
static int fixed_handler(ivy_http_req *r, void *arg)
{
    struct http_conn *c = r->c;
    if (is(r, "/unregister")) {
        int none = -1;
        int rc = io_uring_register_files_update(&ivy__hub_tls->ring, (unsigned)c->fd, &none, 1);
        return ivy_http_respond(r, 200, "text/plain", rc == 1 ? "gone" : "kept", 4);
    }
    if (is(r, "/fixed")) return ivy_http_respond(r, 200, "text/plain", c->fixed ? "1" : "0", 1);
    return hello(r, arg);
}

static void fixed_client(int port)
{
    struct client *c = client_new(port);
    const char *const order[][2] = {
        {"/fixed", "0"}, /* the first batch: by descriptor */
        {"/", "hi"},     /* the second registers the socket once it is answered */
        {"/fixed", "1"}, /* and from then on it sends through its slot */
        {"/unregister", "gone"},
        {"/", "hi"},     /* that send finds the slot empty: sent again */
        {"/fixed", "0"}, /* by descriptor, for good */
        {"/", "hi"},
    };
    for (size_t i = 0; i < sizeof order / sizeof *order; i++) {
        char req[64], want[256];
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", order[i][0]);
        put(c, req, strlen(req));
        snprintf(want, sizeof want, TEXT_200_FMT "%s", strlen(order[i][1]), order[i][1]);
        expect_response(c, want);
    }
    client_free(c);
}

HTTP_TEST(keepalive_sends_use_a_registered_file_and_survive_losing_it, fixed_client,
          .handler = fixed_handler)

/* ---- Python's http.client: pipelining and hostile requests -------------------------------- */

static int python_handler(ivy_http_req *r, void *arg)
{
    (void)arg;
    if (is(r, "/echo")) {
        const char *b;
        ssize_t n = ivy_http_body(r, &b);
        return n < 0 ? (int)n : ivy_http_respond(r, 200, "text/plain", b, (size_t)n);
    }
    if (is(r, "/stream")) {
        ivy_http_start(r, 200, "text/plain", -1);
        for (int i = 0; i < 3; i++)
            ivy_http_write(r, "chunk ", 6);
        return 0;
    }
    if (is(r, "/slow")) ivy_sleep(0.05);
    struct ivy_http_slice p = ivy_http_path(r);
    return ivy_http_respond(r, 200, "text/plain", p.p, p.len);
}

static const char python_script[] =
    "import http.client, socket, sys\n"
    "port = int(sys.argv[1])\n"
    "class Shared:\n"
    "    # one buffered reader for every response of a connection; http.client closes its fp\n"
    "    def __init__(self, f): self.f = f\n"
    "    def __getattr__(self, n): return getattr(self.f, n)\n"
    "    def close(self): pass\n"
    "class Sock:\n"
    "    def __init__(self, s): self.f = Shared(s.makefile('rb'))\n"
    "    def makefile(self, *a, **k): return self.f\n"
    "def connect():\n"
    "    return socket.create_connection(('127.0.0.1', port), timeout=5)\n"
    "def answers(s, methods):\n"
    "    sk = Sock(s)\n"
    "    for m in methods:\n"
    "        r = http.client.HTTPResponse(sk, method=m)\n"
    "        r.begin()\n"
    "        print(m, r.status, r.reason, r.getheader('Content-Length'),\n"
    "              r.getheader('Transfer-Encoding'), r.getheader('Connection'), r.read())\n"
    "    print('then', sk.f.read(1))\n"
    "s = connect()\n"
    "s.sendall(b'GET /a HTTP/1.1\\r\\nHost: p\\r\\n\\r\\n'\n"
    "          b'POST /echo HTTP/1.1\\r\\nHost: p\\r\\nContent-Length: 5\\r\\n\\r\\nhello'\n"
    "          b'HEAD /h HTTP/1.1\\r\\nHost: p\\r\\n\\r\\n'\n"
    "          b'GET /slow HTTP/1.1\\r\\nHost: p\\r\\n\\r\\n'\n"
    "          b'POST /echo HTTP/1.1\\r\\nHost: p\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n'\n"
    "          b'3\\r\\nabc\\r\\n0\\r\\n\\r\\n'\n"
    "          b'GET /stream HTTP/1.1\\r\\nHost: p\\r\\n\\r\\n'\n"
    "          b'GET /last HTTP/1.1\\r\\nHost: p\\r\\nConnection: close\\r\\n\\r\\n'\n"
    "          b'GET /never HTTP/1.1\\r\\nHost: p\\r\\n\\r\\n')\n"
    "answers(s, ['GET', 'POST', 'HEAD', 'GET', 'POST', 'GET', 'GET'])\n"
    "hostile = [\n"
    "    ('smuggled', b'POST /echo HTTP/1.1\\r\\nHost: p\\r\\nContent-Length: 4\\r\\n'\n"
    "                 b'Transfer-Encoding: chunked\\r\\n\\r\\n0\\r\\n\\r\\n'),\n"
    "    ('te-twice', b'POST /echo HTTP/1.1\\r\\nHost: p\\r\\nTransfer-Encoding: chunked\\r\\n'\n"
    "                 b'Transfer-Encoding: chunked\\r\\n\\r\\n0\\r\\n\\r\\n'),\n"
    "    ('obs-fold', b'GET / HTTP/1.1\\r\\nHost: p\\r\\nX: a\\r\\n b\\r\\n\\r\\n'),\n"
    "    ('nul', b'GET / HTTP/1.1\\r\\nHost: p\\r\\nX: a\\x00b\\r\\n\\r\\n'),\n"
    "    ('space-colon', b'GET / HTTP/1.1\\r\\nHost : p\\r\\n\\r\\n'),\n"
    "    ('two-hosts', b'GET / HTTP/1.1\\r\\nHost: p\\r\\nHost: q\\r\\n\\r\\n'),\n"
    "    ('bad-chunk', b'POST /echo HTTP/1.1\\r\\nHost: p\\r\\nTransfer-Encoding: chunked\\r\\n'\n"
    "                  b'\\r\\n3\\r\\nabcd\\r\\n0\\r\\n\\r\\n'),\n"
    "    ('huge-chunk', b'POST /echo HTTP/1.1\\r\\nHost: p\\r\\nTransfer-Encoding: chunked\\r\\n'\n"
    "                   b'\\r\\nffffffffffffffffff\\r\\n'),\n"
    "    ('headers', b'GET / HTTP/1.1\\r\\nHost: p\\r\\n' + b'X: y\\r\\n' * 120 + b'\\r\\n'),\n"
    "    ('version', b'GET / HTTP/1.2\\r\\nHost: p\\r\\n\\r\\n'),\n"
    "    ('trailers', b'POST /echo HTTP/1.1\\r\\nHost: p\\r\\nTransfer-Encoding: chunked\\r\\n'\n"
    "                 b'\\r\\n0\\r\\nX: ' + b'a' * 9000 + b'\\r\\n\\r\\n'),\n"
    "]\n"
    "for name, req in hostile:\n"
    "    s = connect()\n"
    "    s.sendall(req + b'GET /after HTTP/1.1\\r\\nHost: p\\r\\n\\r\\n')\n"
    "    print(name, end=' ')\n"
    "    answers(s, ['GET'])\n"
    "    s.close()\n"
    "s = connect()\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, "
    "b'\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00')\n"
    "s.sendall(b'GET /slow HTTP/1.1\\r\\nHost: p\\r\\n\\r\\n')\n"
    "s.close()  # a reset before the answer\n"
    "s = connect()\n"
    "s.sendall(b'GET /still HTTP/1.1\\r\\nHost: p\\r\\nConnection: close\\r\\n\\r\\n')\n"
    "answers(s, ['GET'])\n";

static const char python_want[] =
    "GET 200 OK 2 None None b'/a'\n"
    "POST 200 OK 5 None None b'hello'\n"
    "HEAD 200 OK 2 None None b''\n"
    "GET 200 OK 5 None None b'/slow'\n"
    "POST 200 OK 3 None None b'abc'\n"
    "GET 200 OK None chunked None b'chunk chunk chunk '\n"
    "GET 200 OK 5 None close b'/last'\n"
    "then b''\n"
    "smuggled GET 400 Bad Request 16 None close b'400 Bad Request\\n'\nthen b''\n"
    "te-twice GET 400 Bad Request 16 None close b'400 Bad Request\\n'\nthen b''\n"
    "obs-fold GET 400 Bad Request 16 None close b'400 Bad Request\\n'\nthen b''\n"
    "nul GET 400 Bad Request 16 None close b'400 Bad Request\\n'\nthen b''\n"
    "space-colon GET 400 Bad Request 16 None close b'400 Bad Request\\n'\nthen b''\n"
    "two-hosts GET 400 Bad Request 16 None close b'400 Bad Request\\n'\nthen b''\n"
    "bad-chunk GET 400 Bad Request 16 None close b'400 Bad Request\\n'\nthen b''\n"
    "huge-chunk GET 413 Content Too Large 22 None close b'413 Content Too Large\\n'\nthen b''\n"
    "headers GET 431 Request Header Fields Too Large 36 None close "
    "b'431 Request Header Fields Too Large\\n'\nthen b''\n"
    "version GET 505 HTTP Version Not Supported 31 None close "
    "b'505 HTTP Version Not Supported\\n'\nthen b''\n"
    "trailers GET 431 Request Header Fields Too Large 36 None close "
    "b'431 Request Header Fields Too Large\\n'\nthen b''\n"
    "GET 200 OK 6 None close b'/still'\n"
    "then b''\n";

static void python_client(int port)
{
    char path[] = "/tmp/ivy-http-XXXXXX", portstr[16];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, python_script, sizeof python_script - 1),
                     (ssize_t)sizeof python_script - 1);
    close(fd);
    snprintf(portstr, sizeof portstr, "%d", port);
    static char out[8192];
    const char *const argv[] = {"python3", path, portstr, NULL};
    int rc = run_child(argv, out, sizeof out, NULL);
    unlink(path);
    assert_string_equal(out, python_want);
    assert_int_equal(rc, 0);
}

HTTP_TEST_NEEDS("python3", python_pipelines_and_hostile_requests, python_client,
                .handler = python_handler)

/* ---- a parked connection (quiet past the hot wait: no thread, no buffer) wakes whole ---- */

static void parked_client(int port)
{
    struct client *c = client_new(port);
    PUT(c, "GET /first HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(c, TEXT_200(6, ) "/first");
    ivy_sleep(1.2); /* parked */
    PUT(c, "GET /sp");
    ivy_sleep(0.02); /* a head split across the wake-up */
    PUT(c, "lit HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(c, TEXT_200(6, ) "/split");
    ivy_sleep(1.2);
    PUT(c, "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
           "Expect: 100-continue\r\n\r\n");
    expect_interim_continue(c);
    PUT(c, "5\r\nhello\r\n0\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(c, TEXT_200(5, ) "hello");
    expect_response(c, TEXT_200(6, ) "/after");
    client_free(c);
}

HTTP_TEST(a_parked_connection_wakes_to_split_heads_and_bodies, parked_client,
          .handler = python_handler)

/* ---- handlers block: offload, sockets ---------------------------------------------------- */

static void *square(void *arg)
{
    return (void *)((intptr_t)arg * (intptr_t)arg); /* in an offload thread */
}

static int server_port;

static int blocking(ivy_http_req *r, void *arg)
{
    char out[64];
    int n;
    if (is(r, "/offload")) {
        void *res = NULL;
        assert_int_equal(ivy_offload(square, (void *)(intptr_t)7, &res), 0);
        n = snprintf(out, sizeof out, "%d", (int)(intptr_t)res);
    } else if (is(r, "/proxy")) {
        /* A request of our own, to this very server, from inside a handler. */
        struct client *up = client_new(server_port);
        PUT(up, "GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        n = (int)read_to_eof(up) > 0
                ? snprintf(out, sizeof out, "upstream said %.2s", up->buf + up->len - 2)
                : 0;
        client_free(up);
    } else {
        return hello(r, arg);
    }
    return ivy_http_respond(r, 200, "text/plain", out, (size_t)n);
}

static void blocking_client(int port)
{
    server_port = port;
    struct client *c = client_new(port);
    PUT(c, "GET /offload HTTP/1.1\r\nHost: a\r\n\r\nGET /proxy HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(c, TEXT_200(2, ) "49");
    expect_response(c, TEXT_200(16, ) "upstream said hi");
    client_free(c);
}

HTTP_TEST(handlers_may_block_on_offload_and_sockets, blocking_client, .handler = blocking)

/* ---- ivy_http_stats ------------------------------------------------------------------------ */

static struct ivy_http_stats before;
static size_t sent, received;

static int counted(ivy_http_req *r, void *arg)
{
    if (is(r, "/missing")) return ivy_http_error(r, 404);
    if (is(r, "/echo")) {
        const char *b;
        ssize_t n = ivy_http_body(r, &b);
        return n < 0 ? (int)n : ivy_http_respond(r, 200, "text/plain", b, (size_t)n);
    }
    return hello(r, arg);
}

static void send_counted(struct client *c, const char *s)
{
    put(c, s, strlen(s));
    sent += strlen(s);
}

static void stats_client(int port)
{
    struct ivy_http_stats now;
    struct client *c = client_new(port);
    send_counted(c, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n");
    while (!memmem(c->buf, c->len, "hi", 2))
        assert_true(more(c));
    ivy_http_stats(&now);
    assert_int_equal(now.conns_open, before.conns_open + 1);
    assert_int_equal(now.conns_total, before.conns_total + 1);
    assert_int_equal(now.buffers_held, before.buffers_held + 2); /* hot: input and output */
    send_counted(c, "GET /missing HTTP/1.1\r\nHost: a\r\n\r\n"
                    "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
                    "GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    received += read_to_eof(c);
    c->len = normalise(c->buf, c->len);
    c->buf[c->len] = 0;
    assert_string_equal(
        c->buf,
        TEXT_200(
            2, ) "hi"
                 "HTTP/1.1 404 Not Found\r\nServer: ivy\r\nDate: <date>\r\n"
                 "Content-Type: text/plain\r\nContent-Length: 14\r\n\r\n404 Not Found\n" TEXT_200(
                     5, ) "hello" TEXT_200(2, "Connection: close\r\n") "hi");
    client_free(c);
    c = client_new(port);
    send_counted(c, "GET / HTTP/1.1\r\n\r\n"); /* no Host: the parser's 400 */
    received += read_to_eof(c);
    client_free(c);
}

static void stats_count_requests_errors_and_bytes(void **state)
{
    (void)state;
    ivy_http_stats(&before);
    sent = received = 0;
    serve_with(stats_client, (struct ivy_http_options){.handler = counted});
    struct ivy_http_stats after;
    ivy_http_stats(&after);
    assert_int_equal(after.requests - before.requests, 5);
    assert_int_equal(after.errors - before.errors, 2); /* the 404 and the 400 */
    assert_int_equal(after.conns_total - before.conns_total, 2);
    assert_int_equal(after.conns_open, before.conns_open);
    assert_int_equal(after.bytes_in - before.bytes_in, sent);
    assert_int_equal(after.bytes_out - before.bytes_out, received);
    assert_int_equal(after.buffers_held, before.buffers_held);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(serve_refuses_no_handler_and_reports_accept_errors),
        cmocka_unit_test(serve_returns_once_its_connections_end),
        cmocka_unit_test(flush_sends_earlier_pipelined_answers_first),
        cmocka_unit_test(keepalive_sends_use_a_registered_file_and_survive_losing_it),
        cmocka_unit_test(python_pipelines_and_hostile_requests),
        cmocka_unit_test(a_parked_connection_wakes_to_split_heads_and_bodies),
        cmocka_unit_test(handlers_may_block_on_offload_and_sockets),
        cmocka_unit_test(stats_count_requests_errors_and_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
