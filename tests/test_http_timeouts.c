/*
 * Tests for the http app's timeouts (apps/http_app.c): keep-alive (a connection waiting for a
 * request, nothing of it received, is closed without a response), request (a head not
 * complete within the timeout of its first wait, or a body with no byte for that long, gets
 * 408 and a close) and send (a response that makes no progress for that long: a close). Small
 * values (0.3 s) against the in-process server of test_http_app.h;
 * then `ivy serve`'s options: their validation, and that they reach the workers.
 *
 * Times are asserted as windows: never before the timeout (less a little for the time the
 * response takes to reach the client), and well within a generous bound after it.
 */
#include "test_http_app.h"

#include "util.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#define T 0.3 /* the timeout under test */

#define TIMEOUT_408                                                                                \
    "HTTP/1.1 408 Request Timeout\r\nServer: ivy\r\nDate: <date>\r\nContent-Type: text/plain\r\n"  \
    "Content-Length: 20\r\nConnection: close\r\nX-Ivy-Worker: -1/<pid>\r\n\r\n"                    \
    "408 Request Timeout\n"

static double since(uint64_t t0)
{
    return (double)(ivy_now_ns() - t0) / 1e9;
}

/* The connection ends with no further byte, between lo and hi seconds after t0. */
static void expect_eof_between(struct client *c, uint64_t t0, double lo, double hi)
{
    expect_eof(c);
    double t = since(t0);
    print_message("  closed after %.3f s\n", t);
    assert_true(t >= lo);
    assert_true(t <= hi);
}

static void hello(struct client *c)
{
    PUT(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(c, HELLO);
}

/* ---- keep-alive ------------------------------------------------------------------------- */

static void idle_close(int port)
{
    struct client *c = client_new(port);
    hello(c);
    expect_eof_between(c, ivy_now_ns(), T - 0.05, 1.5);
    client_free(c);
    /* A new connection that never sends is waiting for a request too. */
    uint64_t t0 = ivy_now_ns();
    c = client_new(port);
    expect_eof_between(c, t0, T - 0.05, 1.5);
    client_free(c);
}

SERVED(idle_keepalive_connection_closes_after_the_timeout_not_before, idle_close,
       .keepalive_timeout = T)

/* Longer than the hot wait (1 s): the connection still gives its buffers back after that, and
 * the cold wait that follows closes it on time. */
static void idle_close_cold(int port)
{
    struct client *c = client_new(port);
    hello(c);
    uint64_t t0 = ivy_now_ns();
    ivy_sleep(1.25); /* the hot wait (1 s) and the sweep that ends it (every 0.1 s) */
    struct client *s = client_new(port);
    PUT(s, "GET /stats HTTP/1.1\r\nHost: a\r\n\r\n");
    char *r = response(s);
    assert_non_null(strstr(r, "\"conns_open\":2,"));
    assert_non_null(strstr(r, "\"buffers_held\":1,")); /* the one /stats is answered from */
    free(r);
    client_free(s);
    expect_eof_between(c, t0, 1.35, 3.0);
    client_free(c);
    t0 = ivy_now_ns();
    c = client_new(port);
    expect_eof_between(c, t0, 1.35, 3.0);
    client_free(c);
}

SERVED(keepalive_longer_than_the_hot_wait_closes_from_the_cold_one, idle_close_cold,
       .keepalive_timeout = 1.4)

/* 12 requests 0.1 s apart: 1.2 s on one connection, each wait shorter than the timeout. */
static void busy(int port)
{
    struct client *c = client_new(port);
    uint64_t t0 = ivy_now_ns();
    for (int i = 0; i < 12; i++) {
        hello(c);
        ivy_sleep(0.1);
    }
    assert_true(since(t0) > 1.0);
    hello(c);
    expect_eof_between(c, ivy_now_ns(), T - 0.05, 1.5);
    client_free(c);
}

SERVED(requests_every_100ms_keep_the_connection_open, busy, .keepalive_timeout = T)

/* Part of a request is in: the keep-alive timeout is over, and no request timeout is set. */
static void started(int port)
{
    struct client *c = client_new(port);
    PUT(c, "GET / HTTP/1.1\r\nHo");
    ivy_sleep(2 * T);
    PUT(c, "st: a\r\n\r\n");
    expect_response(c, HELLO);
    client_free(c);
}

SERVED(keepalive_timeout_spares_a_started_request, started, .keepalive_timeout = T)

/* ---- request ---------------------------------------------------------------------------- */

static void stalled_head(int port)
{
    struct client *c = client_new(port);
    hello(c);
    PUT(c, "GET / HTTP/1.1\r\nHo");
    uint64_t t0 = ivy_now_ns();
    expect_response(c, TIMEOUT_408);
    assert_true(since(t0) >= T - 0.05);
    expect_eof_between(c, t0, T - 0.05, 1.5);
    client_free(c);
}

SERVED(stalled_head_gets_408_then_eof, stalled_head, .request_timeout = T, .keepalive_timeout = 5)

static void stalled_body(int port)
{
    struct client *c = client_new(port);
    PUT(c, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc");
    uint64_t t0 = ivy_now_ns();
    expect_response(c, TIMEOUT_408);
    expect_eof_between(c, t0, T - 0.05, 1.5);
    client_free(c);
}

SERVED(stalled_body_gets_408_then_eof, stalled_body, .request_timeout = T, .keepalive_timeout = 5)

/* A head dripped a byte every 50 ms makes progress, but its clock runs from its first wait. */
static bool drip_done;

static void *drip(void *arg)
{
    struct client *c = arg;
    while (!drip_done && ivy_send(c->fd, "x", 1) == 1)
        ivy_sleep(0.05);
    return NULL;
}

static void trickled_head(int port)
{
    struct client *c = client_new(port);
    PUT(c, "GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ");
    uint64_t t0 = ivy_now_ns();
    drip_done = false;
    ivy_thread *t = ivy_spawn(drip, c);
    expect_response(c, TIMEOUT_408);
    double at = since(t0);
    drip_done = true;
    assert_int_equal(ivy_join(t, NULL), 0);
    assert_true(at >= T - 0.05);
    assert_true(at < 3 * T); /* not restarted by each byte */
    expect_eof(c);
    client_free(c);
}

SERVED(trickled_head_times_out_from_its_first_wait, trickled_head, .request_timeout = T)

/* A body a byte every 0.1 s for 1.2 s: each receive restarts its clock. */
static void trickled_body(int port)
{
    struct client *c = client_new(port);
    static const char body[] = "hello world!";
    PUT(c, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n");
    for (int i = 0; i < 12; i++) {
        ivy_sleep(0.1);
        put(c, body + i, 1);
    }
    expect_response(c, ECHO_HEAD(12) "hello world!");
    client_free(c);
}

SERVED(trickled_body_restarts_its_clock_with_each_receive, trickled_body, .request_timeout = T,
       .keepalive_timeout = T)

/* While one connection stalls mid-head, the worker answers another at once. */
static void slowloris(int port)
{
    struct client *s = client_new(port);
    PUT(s, "GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ");
    uint64_t t0 = ivy_now_ns();
    for (int i = 0; i < 10; i++)
        exchange(port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", HELLO);
    double others = since(t0);
    expect_response(s, TIMEOUT_408);
    double stalled = since(t0);
    assert_true(others < T - 0.05); /* not held up until the stalled one ended */
    assert_true(stalled >= T - 0.05);
    expect_eof(s);
    client_free(s);
}

SERVED(slowloris_does_not_hold_up_other_clients, slowloris, .request_timeout = T,
       .keepalive_timeout = T)

/* A slow response is not a slow request; nor does the time spent computing it count against a
 * head that arrived with it. */
static void slow_response(int port)
{
    struct client *c = client_new(port);
    PUT(c, "GET /sleep?ms=500 HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n");
    expect_response(c, "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\n"
                       "Content-Type: text/plain\r\nContent-Length: 13\r\n"
                       "X-Ivy-Worker: -1/<pid>\r\n\r\nslept 500 ms\n");
    ivy_sleep(0.1);
    PUT(c, "Host: a\r\n\r\n");
    expect_response(c, HELLO);
    client_free(c);
}

SERVED(sleep_longer_than_the_request_timeout_still_answers, slow_response, .request_timeout = T,
       .keepalive_timeout = T)

/* ---- send --------------------------------------------------------------------------------- */

enum { ECHO_BODY = 1 << 20 };

/* Pipelined POST /echo requests of ECHO_BODY bytes each, byte i of a body echo_byte(i). */
struct echoes {
    int fd, count;
    char *req;
    size_t len;
    ivy_thread *sender;
};

static char echo_byte(size_t i)
{
    return (char)(i * 7 % 251);
}

static void *put_echoes(void *arg)
{
    struct echoes *e = arg;
    ivy_sendall(e->fd, e->req, e->len); /* fails if the server closes first: one test's aim */
    return NULL;
}

/* A client with a receive buffer of rcvbuf bytes, read (if at all) with recv(2), not ivy_recv,
 * so that what the kernel holds for it stays there. Its requests leave from a thread of their
 * own: the server stops reading while its sends wait, and then so must they. */
/* body 0: GET / instead, whose responses are small. */
static void send_echoes(struct echoes *e, int count, size_t body, int port, int rcvbuf)
{
    e->count = count;
    e->fd = ivy_connect("127.0.0.1", port, 5.0);
    assert_true(e->fd >= 0);
    assert_int_equal(setsockopt(e->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf), 0);
    char head[128];
    int hn = body ? snprintf(head, sizeof head,
                             "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %zu\r\n\r\n", body)
                  : snprintf(head, sizeof head, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    e->len = (size_t)count * ((size_t)hn + body);
    char *p = e->req = malloc(e->len);
    for (int k = 0; k < count; k++) {
        memcpy(p, head, (size_t)hn);
        p += hn;
        for (size_t i = 0; i < body; i++)
            *p++ = echo_byte(i);
    }
    assert_non_null(e->sender = ivy_spawn(put_echoes, e));
}

static void end_echoes(struct echoes *e)
{
    assert_int_equal(ivy_join(e->sender, NULL), 0);
    ivy_close(e->fd);
    free(e->req);
}

/* conns_open of the worker's /stats, asked on c. */
static int conns_open(struct client *c)
{
    PUT(c, "GET /stats HTTP/1.1\r\nHost: a\r\n\r\n");
    char *r = response(c);
    assert_non_null(r);
    char *at = strstr(r, "\"conns_open\":");
    assert_non_null(at);
    int n = atoi(at + 13);
    free(r);
    return n;
}

/* A client that never reads its responses: once the server's sends stop making progress, its
 * connection is closed after the timeout, while another client is answered all along. With
 * large responses (full 64 KiB segments) the stall cannot have begun before bytes last reached
 * the client (strict): nothing reads them, so what the server sent after its receive queue
 * stopped growing is still in the server's buffer. Small segments the client's kernel may
 * compact later and take more, so then only the start bounds the stall from below. */
static void never_reads(int port, int count, size_t body, bool strict)
{
    struct client *s = client_new(port);
    assert_int_equal(conns_open(s), 1);
    struct echoes e;
    send_echoes(&e, count, body, port, 64 << 10);
    int queued = -1, q, open = 0, asked = 0;
    bool seen = false;
    uint64_t t0 = ivy_now_ns(), last_growth = t0;
    while (!(seen && open == 1) && since(t0) < 5.0) {
        ivy_sleep(0.02);
        assert_int_equal(ioctl(e.fd, FIONREAD, &q), 0);
        if (q != queued) {
            queued = q;
            last_growth = ivy_now_ns();
        }
        open = conns_open(s); /* answered at once while the other connection waits */
        seen = seen || open == 2;
        asked++;
    }
    double at = since(last_growth), total = since(t0);
    print_message("  closed %.3f s after the client last received, %.3f s after the start (%d KiB "
                  "queued), %d /stats\n",
                  at, total, queued >> 10, asked);
    assert_int_equal(open, 1);
    assert_true(queued > 0);
    assert_true((strict ? at : total) >= T - 0.05);
    assert_true(at <= 2.0);
    end_echoes(&e);
    client_free(s);
}

/* 10 MiB to answer, more than the kernel buffers: sends end partial. */
static void never_reads_echoes(int port)
{
    never_reads(port, 10, ECHO_BODY, true);
}

SERVED(send_timeout_closes_a_connection_that_never_reads, never_reads_echoes, .send_timeout = T)

/* 64 Ki hellos, 10 MiB of responses in 16 KiB batches: each send is taken whole until the
 * buffers are full, then one finds no room at all (the wait that must not be without a limit). */
static void never_reads_hellos(int port)
{
    never_reads(port, 1 << 16, 0, false);
}

SERVED(send_timeout_closes_a_connection_whose_small_responses_fill_its_buffers, never_reads_hellos,
       .send_timeout = T)

/* A reader slower than the server but steady, 256 KiB every 0.1 s (well within the timeout),
 * from a server whose send buffer holds 512 KiB: each chunk read lets the server send more, so
 * nothing times out, though the transfer takes several times the timeout, and so does each
 * response's send (a 1 MiB body). (The kernel wakes a blocked sender once a third or so of its
 * buffer is free: a reader must free that much within the timeout, as with nginx's.) */
static void slow_reader(int port)
{
    struct echoes e;
    send_echoes(&e, 4, ECHO_BODY, port, 128 << 10);
    size_t cap = (size_t)e.count * (ECHO_BODY + 4096), got = 0, hl = 0;
    char *buf = malloc(cap), *end;
    uint64_t t0 = ivy_now_ns();
    while (!hl || got < e.count * (hl + ECHO_BODY)) {
        ivy_sleep(0.1);
        ssize_t n =
            recv(e.fd, buf + got, cap - got < 256 << 10 ? cap - got : 256 << 10, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN))
            fail_msg("closed after %zu bytes, %.2f s: %s", got, since(t0),
                     n ? strerror(errno) : "eof");
        got += n > 0 ? (size_t)n : 0;
        if (!hl && (end = memmem(buf, got, "\r\n\r\n", 4))) hl = (size_t)(end - buf) + 4;
        assert_true(since(t0) < 20);
    }
    print_message("  %zu bytes in %.2f s\n", got, since(t0));
    assert_int_equal(got, e.count * (hl + ECHO_BODY));
    assert_true(since(t0) > 3 * T);
    for (int k = 0; k < e.count; k++) {
        char *r = buf + k * (hl + ECHO_BODY), head[512];
        memcpy(head, r, hl);
        head[normalise(head, hl)] = 0;
        assert_string_equal(head, ECHO_HEAD(1048576));
        for (size_t i = 0; i < ECHO_BODY; i++)
            if (r[hl + i] != echo_byte(i)) fail_msg("response %d: byte %zu differs", k, i);
    }
    free(buf);
    end_echoes(&e);
}

/* 64 Ki pipelined hellos from a client that reads nothing for 0.3 s, then everything: the
 * batches the server left in flight while reading on (ivy__http_flush_async) end short once the
 * buffers are full and go on when the client reads (the server's send buffer is small, so a
 * batch often fits only in part), so every response arrives whole, in order,
 * within the 1 s send timeout. */
static void paused_reader(int port)
{
    enum { COUNT = 1 << 16 };
    struct echoes e;
    send_echoes(&e, COUNT, 0, port, 64 << 10);
    ivy_sleep(0.3);
    static char buf[COUNT * 160];
    size_t got = 0, one = 0;
    struct ivy_timeout to;
    assert_int_equal(ivy_timeout_begin(&to, 10.0), 0);
    while (!one || got < COUNT * one) {
        ssize_t n = ivy_recv(e.fd, buf + got, sizeof buf - got);
        if (n <= 0) fail_msg("after %zu bytes: %s", got, n ? strerror((int)-n) : "eof");
        got += (size_t)n;
        char *end = one ? NULL : memmem(buf, got, "Hello, World!", 13);
        if (end) one = (size_t)(end - buf) + 13;
    }
    assert_int_equal(ivy_timeout_end(&to), 0);
    assert_int_equal(got, COUNT * one);
    for (size_t k = 0; k < COUNT; k++)
        if (memcmp(buf + k * one, "HTTP/1.1 200 OK\r\n", 17) ||
            memcmp(buf + (k + 1) * one - 13, "Hello, World!", 13))
            fail_msg("response %zu is not whole", k);
    end_echoes(&e);
}

/* A small send buffer, so that a batch (up to 16 KiB) often fits only in part. */
static void a_reader_that_pauses_gets_every_small_response(void **state)
{
    serve_while_sndbuf(paused_reader, (struct ivy_http_app_options){.send_timeout = 1.0}, 8 << 10);
}

static void send_timeout_spares_a_slow_but_steady_reader(void **state)
{
    serve_while_sndbuf(slow_reader, (struct ivy_http_app_options){.send_timeout = T}, 256 << 10);
}

/* ---- ivy serve's options ------------------------------------------------------------------ */

/* `ivy serve ARGS`: its exit status, with its stdout and stderr in out. */
static int serve_cli(const char *args, char *out, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s serve %s 2>&1", ivy_binary(), args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void serve_rejects_bad_timeouts_with_status_2(void **state)
{
    static const char *bad[] = {"-1", "abc", "", "1s", "nan", "inf", "86401"};
    char out[4096], args[128];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (int which = 0; which < 3; which++) {
            static const char *opts[] = {"--keepalive-timeout", "--request-timeout",
                                         "--send-timeout"};
            const char *opt = opts[which];
            snprintf(args, sizeof args, "%s '%s'", opt, bad[i]);
            assert_int_equal(serve_cli(args, out, sizeof out), 2);
            char want[128];
            snprintf(want, sizeof want,
                     "ivy serve: bad %s '%s': seconds up to 86400, 0 for the default, or off\n",
                     opt, bad[i]);
            assert_string_equal(out, want);
        }
    }
    assert_int_equal(serve_cli("--help", out, sizeof out), 0);
    assert_non_null(strstr(out, "  --keepalive-timeout S "));
    assert_non_null(strstr(out, "  --request-timeout S "));
    assert_non_null(strstr(out, "  --send-timeout S "));
}

/* A real `ivy serve` with both at 0.3 s: the options reach the worker. */
static void serve_applies_both_timeouts(void **state)
{
    int port = free_port();
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(open("/dev/null", O_WRONLY), STDOUT_FILENO);
        execl(ivy_binary(), ivy_binary(), "serve", "--listen", listen, "--workers", "1", "--quiet",
              "--keepalive-timeout", "0.3", "--request-timeout", "0.3", (char *)NULL);
        _exit(127);
    }
    int idle = -1;
    for (int i = 0; i < 400 && idle < 0; i++)
        if ((idle = dial(port)) < 0) sleep_ms(10);
    assert_true(idle >= 0);
    int slow = dial(port);
    assert_true(slow >= 0);
    assert_int_equal(send(slow, "GET / HTTP/1.1\r\nHo", 18, 0), 18);
    char buf[1024];
    uint64_t t0 = ivy_now_ns();
    assert_int_equal(read_all(idle, buf, sizeof buf), 0);
    double t = since(t0);
    assert_true(t >= T - 0.05 && t <= 1.5);
    size_t n = read_all(slow, buf, sizeof buf);
    assert_true(n > 0);
    assert_memory_equal(buf, "HTTP/1.1 408 Request Timeout\r\n", 30);
    assert_non_null(strstr(buf, "\r\nConnection: close\r\n"));
    assert_non_null(strstr(buf, "\r\n\r\n408 Request Timeout\n"));
    close(idle);
    close(slow);
    kill(pid, SIGTERM);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(idle_keepalive_connection_closes_after_the_timeout_not_before),
        cmocka_unit_test(keepalive_longer_than_the_hot_wait_closes_from_the_cold_one),
        cmocka_unit_test(requests_every_100ms_keep_the_connection_open),
        cmocka_unit_test(keepalive_timeout_spares_a_started_request),
        cmocka_unit_test(stalled_head_gets_408_then_eof),
        cmocka_unit_test(stalled_body_gets_408_then_eof),
        cmocka_unit_test(trickled_head_times_out_from_its_first_wait),
        cmocka_unit_test(trickled_body_restarts_its_clock_with_each_receive),
        cmocka_unit_test(slowloris_does_not_hold_up_other_clients),
        cmocka_unit_test(sleep_longer_than_the_request_timeout_still_answers),
        cmocka_unit_test(send_timeout_closes_a_connection_that_never_reads),
        cmocka_unit_test(send_timeout_closes_a_connection_whose_small_responses_fill_its_buffers),
        cmocka_unit_test(send_timeout_spares_a_slow_but_steady_reader),
        cmocka_unit_test(a_reader_that_pauses_gets_every_small_response),
        cmocka_unit_test(serve_rejects_bad_timeouts_with_status_2),
        cmocka_unit_test(serve_applies_both_timeouts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
