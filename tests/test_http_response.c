/*
 * Tests for http/response.c: what a handler writes (a whole response, a canned error, added
 * headers, a streamed body chunked, close-delimited or of a declared length, a file region)
 * and what the server does once the handler returns (its error answered or the connection
 * closed, an unanswered request answered 200); HEAD, 204 and 304 without a body; the server's
 * own headers. Raw clients compare bytes exactly; curl downloads a stream and a 10 MiB file.
 */
#include "http_server_test.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

static bool is(ivy_http_req *r, const char *path)
{
    struct ivy_http_slice p = ivy_http_path(r);
    return p.len == strlen(path) && !memcmp(p.p, path, p.len);
}

static int rcs[32]; /* what a handler's calls returned, for the client to check */
static unsigned nrc;
#define RC(call) (rcs[nrc++] = (int)(call))

static void expect_rcs(const int *want, unsigned n)
{
    assert_int_equal(nrc, n);
    for (unsigned i = 0; i < n; i++)
        if (rcs[i] != want[i]) fail_msg("call %u returned %d, not %d", i, rcs[i], want[i]);
    nrc = 0;
}

/* ---- ivy_http_respond, ivy_http_error ------------------------------------------------------ */

static int respond(ivy_http_req *r, void *arg)
{
    (void)arg;
    if (is(r, "/999")) return ivy_http_respond(r, 999, NULL, "x", 1);
    if (is(r, "/503")) return ivy_http_error(r, 503);
    if (is(r, "/404")) return ivy_http_error(r, 404);
    nrc = 0;
    RC(ivy_http_respond(r, 99, NULL, NULL, 0));
    RC(ivy_http_respond(r, 100, NULL, NULL, 0));
    RC(ivy_http_respond(r, 199, NULL, NULL, 0));
    RC(ivy_http_respond(r, 1000, NULL, NULL, 0));
    RC(ivy_http_respond(r, -200, NULL, NULL, 0));
    RC(ivy_http_error(r, 99));
    RC(ivy_http_start(r, 101, NULL, -1));
    RC(ivy_http_write(r, "x", 1)); /* nothing started */
    RC(ivy_http_respond(r, 200, "text/plain\r\nEvil: 1", NULL, 0));
    RC(ivy_http_start(r, 200, "text/plain\nEvil: 1", -1));
    static char big[9000];
    memset(big, 'b', sizeof big - 1);
    RC(ivy_http_add_header(r, "X-Big", big));
    RC(ivy_http_respond(r, 200, "text/plain", "ok", 2));
    RC(ivy_http_respond(r, 200, "text/plain", "ok", 2));
    RC(ivy_http_error(r, 500));
    RC(ivy_http_start(r, 200, NULL, -1));
    RC(ivy_http_sendfile(r, 200, NULL, 0, 0, 1));
    RC(ivy_http_add_header(r, "X-Late", "1"));
    RC(ivy_http_write(r, "x", 1));
    RC(ivy_http_flush(r));
    return 0;
}

static void respond_client(int port)
{
    exchange(port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", TEXT_200(2, ) "ok");
    const int want[] = {-EINVAL,   -EINVAL,   -EINVAL,   -EINVAL, -EINVAL, -EINVAL,   -EINVAL,
                        -EINVAL,   -EINVAL,   -EINVAL,   -E2BIG,  0,       -EALREADY, -EALREADY,
                        -EALREADY, -EALREADY, -EALREADY, -EINVAL, 0};
    expect_rcs(want, sizeof want / sizeof *want);
    exchange(port, "GET /999 HTTP/1.1\r\nHost: a\r\n\r\n",
             "HTTP/1.1 999 \r\nServer: ivy\r\nDate: <date>\r\nContent-Length: 1\r\n\r\nx");
    exchange(port, "GET /503 HTTP/1.1\r\nHost: a\r\n\r\n",
             "HTTP/1.1 503 Service Unavailable\r\nServer: ivy\r\nDate: <date>\r\n"
             "Content-Type: text/plain\r\nContent-Length: 24\r\n\r\n503 Service Unavailable\n");
    exchange(port, "GET /404 HTTP/1.1\r\nHost: a\r\n\r\n",
             "HTTP/1.1 404 Not Found\r\nServer: ivy\r\nDate: <date>\r\n"
             "Content-Type: text/plain\r\nContent-Length: 14\r\n\r\n404 Not Found\n");
}

HTTP_TEST(respond_checks_its_status_and_answers_once, respond_client, .handler = respond)

/* ---- ivy_http_add_header ------------------------------------------------------------------- */

static int headers(ivy_http_req *r, void *arg)
{
    (void)arg;
    nrc = 0;
    RC(ivy_http_add_header(r, "X-A", "1"));
    RC(ivy_http_add_header(r, "x-b", "two words, and: more"));
    RC(ivy_http_add_header(r, "X-Empty", ""));
    const char *own[] = {"Content-Length", "content-length", "Transfer-Encoding", "DATE", "Server"};
    for (size_t i = 0; i < sizeof own / sizeof *own; i++)
        RC(ivy_http_add_header(r, own[i], "1"));
    RC(ivy_http_add_header(r, "X-C\r\nEvil: 1", "1"));
    RC(ivy_http_add_header(r, "X-C", "1\r\nEvil: 1"));
    RC(ivy_http_add_header(r, "X-C", "1\nEvil: 1"));
    RC(ivy_http_add_header(r, "X-C", "1\r"));
    RC(ivy_http_add_header(r, "", "1"));
    RC(ivy_http_add_header(r, "X:C", "1"));
    RC(ivy_http_add_header(r, "X C", "1"));
    RC(ivy_http_add_header(r, NULL, "1"));
    RC(ivy_http_add_header(r, "X-C", NULL));
    RC(ivy_http_add_header(r, "Connection", "keep-alive"));
    if (is(r, "/close")) RC(ivy_http_add_header(r, "connection", "Close"));
    RC(ivy_http_start(r, 200, "text/plain", 2));
    RC(ivy_http_add_header(r, "X-Late", "1"));
    RC(ivy_http_write(r, "ok", 2));
    return 0;
}

static void headers_client(int port)
{
    const int want[] = {0,       0,       0,       -EINVAL, -EINVAL, -EINVAL,   -EINVAL,
                        -EINVAL, -EINVAL, -EINVAL, -EINVAL, -EINVAL, -EINVAL,   -EINVAL,
                        -EINVAL, -EINVAL, -EINVAL, -EINVAL, 0,       -EALREADY, 2};
    const int close_want[] = {0,       0,       0,         -EINVAL, -EINVAL, -EINVAL,
                              -EINVAL, -EINVAL, -EINVAL,   -EINVAL, -EINVAL, -EINVAL,
                              -EINVAL, -EINVAL, -EINVAL,   -EINVAL, -EINVAL, -EINVAL,
                              0,       0,       -EALREADY, 2};
    struct client *c = client_new(port);
    PUT(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(c, TEXT_200(2, "X-A: 1\r\nx-b: two words, and: more\r\nX-Empty: \r\n") "ok");
    expect_rcs(want, sizeof want / sizeof *want);
    /* Connection: close is honoured: what was sent after the request is never answered. */
    PUT(c, "GET /close HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(c, TEXT_200(2, "Connection: close\r\nX-A: 1\r\nx-b: two words, and: more\r\n"
                                   "X-Empty: \r\n") "ok");
    expect_eof(c);
    client_free(c);
    expect_rcs(close_want, sizeof close_want / sizeof *close_want);
}

HTTP_TEST(added_headers_are_checked_and_sent, headers_client, .handler = headers)

/* ---- streamed bodies ----------------------------------------------------------------------- */

static ivy_event *client_saw; /* the client has what the handler flushed */

static int streamed(ivy_http_req *r, void *arg)
{
    (void)arg;
    nrc = 0;
    if (is(r, "/length") || is(r, "/short")) {
        RC(ivy_http_start(r, 200, "text/plain", 10));
        RC(ivy_http_write(r, "abcd", 4));
        if (is(r, "/short")) return 0; /* 6 bytes short: the connection must close */
        RC(ivy_http_write(r, "efghijk", 7));
        RC(ivy_http_write(r, "efghij", 6));
        RC(ivy_http_write(r, "k", 1));
        RC(ivy_http_write(r, "", 0));
        return 0;
    }
    RC(ivy_http_start(r, 200, "text/plain", -1));
    RC(ivy_http_write(r, "first", 5));
    RC(ivy_http_write(r, "", 0)); /* no chunk: an empty one would end the body */
    RC(ivy_http_flush(r));
    if (client_saw) RC(ivy_event_wait(client_saw, 5.0)); /* it left before the handler ends */
    RC(ivy_http_write(r, " and second", 11));
    return 0;
}

/* Receives until the buffer ends with s. */
static void until(struct client *c, const char *s)
{
    size_t n = strlen(s);
    while (c->len < n || memcmp(c->buf + c->len - n, s, n))
        assert_true(more(c));
}

static void streamed_client(int port)
{
    client_saw = ivy_event_new();
    struct client *c = client_new(port);
    PUT(c, "GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n");
    until(c, "5\r\nfirst\r\n");
    ivy_event_set(client_saw);
    until(c, "0\r\n\r\n");
    c->buf[c->len] = 0;
    c->len = normalise(c->buf, c->len);
    c->buf[c->len] = 0;
    assert_string_equal(c->buf, "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\n"
                                "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "5\r\nfirst\r\nb\r\n and second\r\n0\r\n\r\n");
    c->len = 0;
    const int chunked_want[] = {0, 5, 0, 0, 0, 11};
    expect_rcs(chunked_want, 6);
    ivy_event_free(client_saw);
    client_saw = NULL;
    /* A declared length: writing past it is refused; the connection lives on. */
    PUT(c, "GET /length HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(c, TEXT_200(10, ) "abcdefghij");
    const int length_want[] = {0, 4, -EINVAL, 6, -EINVAL, 0};
    expect_rcs(length_want, 6);
    /* HTTP/1.0 without a length: the body ends with the connection. */
    PUT(c, "GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    read_to_eof(c);
    c->len = normalise(c->buf, c->len);
    c->buf[c->len] = 0;
    assert_string_equal(c->buf, "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\n"
                                "Content-Type: text/plain\r\nConnection: close\r\n\r\n"
                                "first and second");
    client_free(c);
    /* Shorter than declared: the connection closes after what was written. */
    c = client_new(port);
    PUT(c, "GET /short HTTP/1.1\r\nHost: a\r\n\r\nGET /length HTTP/1.1\r\nHost: a\r\n\r\n");
    read_to_eof(c);
    c->len = normalise(c->buf, c->len);
    c->buf[c->len] = 0;
    assert_string_equal(c->buf, TEXT_200(10, ) "abcd");
    client_free(c);
}

HTTP_TEST(streamed_bodies_are_chunked_delimited_or_of_their_length, streamed_client,
          .handler = streamed)

/* ---- no body: HEAD, 204, 304 --------------------------------------------------------------- */

static char file_path[] = "/tmp/ivy-file-XXXXXX";
static int file_fd = -1;
enum { FILE_SIZE = 10 << 20 };

/* The test file: FILE_SIZE bytes of a pattern, made once. */
static char *file_bytes(void)
{
    static char *bytes;
    if (!bytes) {
        bytes = malloc(FILE_SIZE);
        for (size_t i = 0; i < FILE_SIZE; i++)
            bytes[i] = (char)('a' + (i * 13 + i / 4093) % 26);
        file_fd = mkstemp(file_path);
        assert_true(file_fd >= 0);
        assert_int_equal(write(file_fd, bytes, FILE_SIZE), FILE_SIZE);
    }
    return bytes;
}

static int bodiless(ivy_http_req *r, void *arg)
{
    (void)arg;
    nrc = 0;
    if (is(r, "/respond")) return ivy_http_respond(r, 200, "text/plain", "hello", 5);
    if (is(r, "/chunked") || is(r, "/length")) {
        RC(ivy_http_start(r, 200, "text/plain", is(r, "/length") ? 5 : -1));
        RC(ivy_http_write(r, "hello", 5));
        return 0;
    }
    if (is(r, "/file")) return ivy_http_sendfile(r, 200, "text/plain", file_fd, 3, 5);
    if (is(r, "/204")) return ivy_http_respond(r, 204, "text/plain", "hello", 5);
    if (is(r, "/304")) return ivy_http_respond(r, 304, "text/plain", "hello", 5);
    if (is(r, "/204s")) {
        RC(ivy_http_start(r, 204, NULL, -1));
        RC(ivy_http_write(r, "hello", 5));
        return 0;
    }
    return ivy_http_respond(r, 200, NULL, "tail", 4);
}

static void bodiless_client(int port)
{
    file_bytes();
    struct client *c = client_new(port);
    /* All pipelined: a body sent where none belongs would garble the next answer. */
    PUT(c, "HEAD /respond HTTP/1.1\r\nHost: a\r\n\r\nHEAD /chunked HTTP/1.1\r\nHost: a\r\n\r\n"
           "HEAD /length HTTP/1.1\r\nHost: a\r\n\r\nHEAD /file HTTP/1.1\r\nHost: a\r\n\r\n"
           "GET /204 HTTP/1.1\r\nHost: a\r\n\r\nGET /304 HTTP/1.1\r\nHost: a\r\n\r\n"
           "GET /204s HTTP/1.1\r\nHost: a\r\n\r\nGET /file HTTP/1.1\r\nHost: a\r\n\r\n"
           "GET /end HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_reply(c, TEXT_200(5, ), true);
    expect_reply(
        c, "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\nContent-Type: text/plain\r\n\r\n",
        true);
    expect_reply(c, TEXT_200(5, ), true);
    expect_reply(c, TEXT_200(5, ), true);
    expect_reply(c,
                 "HTTP/1.1 204 No Content\r\nServer: ivy\r\nDate: <date>\r\n"
                 "Content-Type: text/plain\r\n\r\n",
                 true);
    expect_reply(c,
                 "HTTP/1.1 304 Not Modified\r\nServer: ivy\r\nDate: <date>\r\n"
                 "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\n",
                 true);
    expect_reply(c, "HTTP/1.1 204 No Content\r\nServer: ivy\r\nDate: <date>\r\n\r\n", true);
    char want[256];
    snprintf(want, sizeof want, TEXT_200(5, ) "%.5s", file_bytes() + 3);
    expect_response(c, want);
    expect_response(c, "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\nContent-Length: 4\r\n\r\n"
                       "tail");
    client_free(c);
}

HTTP_TEST(head_204_and_304_have_no_body, bodiless_client, .handler = bodiless)

/* ---- ivy_http_sendfile --------------------------------------------------------------------- */

static int sendfile_handler(ivy_http_req *r, void *arg)
{
    (void)arg;
    if (is(r, "/all"))
        return ivy_http_sendfile(r, 200, "application/octet-stream", file_fd, 0, FILE_SIZE);
    if (is(r, "/region")) return ivy_http_sendfile(r, 200, NULL, file_fd, 1000, 5000);
    if (is(r, "/past-end")) /* the file ends first: the head is out, so the connection closes */
        return ivy_http_sendfile(r, 200, NULL, file_fd, FILE_SIZE - 10, 100);
    nrc = 0;
    RC(ivy_http_sendfile(r, 200, NULL, file_fd, -1, 5));
    return ivy_http_respond(r, 200, NULL, "after", 5);
}

static void sendfile_client(int port)
{
    char *bytes = file_bytes(), want[6000];
    struct client *c = client_new(port);
    PUT(c, "GET /region HTTP/1.1\r\nHost: a\r\n\r\nGET /bad HTTP/1.1\r\nHost: a\r\n\r\n");
    int h = snprintf(want, sizeof want,
                     "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\n"
                     "Content-Length: 5000\r\n\r\n");
    memcpy(want + h, bytes + 1000, 5000);
    want[h + 5000] = 0;
    expect_response(c, want);
    expect_response(c, "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\nContent-Length: 5\r\n\r\n"
                       "after");
    const int bad_want[] = {-EINVAL};
    expect_rcs(bad_want, 1);
    PUT(c, "GET /past-end HTTP/1.1\r\nHost: a\r\n\r\nGET /region HTTP/1.1\r\nHost: a\r\n\r\n");
    read_to_eof(c);
    c->len = normalise(c->buf, c->len);
    h = snprintf(want, sizeof want,
                 "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\n"
                 "Content-Length: 100\r\n\r\n");
    memcpy(want + h, bytes + FILE_SIZE - 10, 10);
    assert_int_equal(c->len, h + 10);
    assert_memory_equal(c->buf, want, c->len);
    client_free(c);
    /* 10 MiB to curl, compared byte for byte. */
    if (!have_program("curl")) {
        print_message("  curl not found: the 10 MiB download is not tested\n");
        return;
    }
    char out[] = "/tmp/ivy-download-XXXXXX", url[64];
    int fd = mkstemp(out);
    assert_true(fd >= 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/all", port);
    const char *const argv[] = {"curl", "-sS", "--fail", "-o", out, url, NULL};
    assert_int_equal(run_child(argv, want, sizeof want, NULL), 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, FILE_SIZE);
    char *got = malloc(FILE_SIZE);
    assert_int_equal(pread(fd, got, FILE_SIZE, 0), FILE_SIZE);
    assert_true(!memcmp(got, bytes, FILE_SIZE));
    free(got);
    close(fd);
    unlink(out);
}

HTTP_TEST(sendfile_sends_file_regions_exactly, sendfile_client, .handler = sendfile_handler)

/* A client that never reads a file: the send timeout abandons it, others are served. */
static ivy_event *file_done;
static int file_rc;

static int sendfile_recorded(ivy_http_req *r, void *arg)
{
    if (!is(r, "/all")) return sendfile_handler(r, arg);
    file_rc = sendfile_handler(r, arg);
    ivy_event_set(file_done);
    return file_rc;
}

/* Asks for path on a connection whose tiny receive window it never reads, while another client
 * is answered, until the handler says it is done (file_done; 5 s at most). Returns the seconds
 * that took; the stalled connection is reset, as what its kernel holds would take long to drain
 * at this window. */
static double stall(int port, const char *path)
{
    file_done = ivy_event_new();
    struct client *c = client_new(port);
    int small = 4096;
    assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    char req[128];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", path);
    PUT(c, req);
    uint64_t t0 = ivy_now_ns();
    while (!ivy_event_is_set(file_done) && ivy_now_ns() - t0 < 5000000000ull)
        exchange(port, "GET /bad HTTP/1.1\r\nHost: a\r\n\r\n",
                 "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\nContent-Length: 5\r\n\r\n"
                 "after");
    double took = (double)(ivy_now_ns() - t0) / 1e9;
    assert_true(ivy_event_is_set(file_done));
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    client_free(c);
    ivy_event_free(file_done);
    file_done = NULL;
    return took;
}

static void sendfile_stalled(int port)
{
    file_bytes();
    stall(port, "/all");
    assert_int_equal(file_rc, -ETIMEDOUT);
}

HTTP_TEST(sendfile_to_a_client_that_never_reads_is_abandoned, sendfile_stalled,
          .handler = sendfile_recorded, .send_timeout = 0.3)

/* A chunked body in small writes to a client that never reads: the sends, taken whole while
 * the socket's buffer has room, stop making progress once it is full, and the send timeout ends
 * the body (the handler's write fails) while another client is answered. */
static uint64_t stream_sent;

static int stream_forever(ivy_http_req *r, void *arg)
{
    (void)arg;
    if (!is(r, "/forever")) return ivy_http_respond(r, 200, NULL, "after", 5);
    static char piece[1000];
    memset(piece, 'x', sizeof piece);
    int rc = ivy_http_start(r, 200, "text/plain", -1);
    ssize_t n = 0;
    for (stream_sent = 0; rc == 0 && (n = ivy_http_write(r, piece, sizeof piece)) >= 0;)
        stream_sent += (uint64_t)n;
    file_rc = rc < 0 ? rc : (int)n;
    ivy_event_set(file_done);
    return file_rc;
}

static void stream_stalled(int port)
{
    double took = stall(port, "/forever");
    print_message("  the write failed after %.2f s, %llu bytes written\n", took,
                  (unsigned long long)stream_sent);
    assert_int_equal(file_rc, -ETIMEDOUT);
    assert_true(took >= 0.3 && took < 2.0);
    assert_true(stream_sent > 0);
}

HTTP_TEST(a_chunked_body_to_a_client_that_never_reads_times_out, stream_stalled,
          .handler = stream_forever, .send_timeout = 0.3)

/* ---- what the server does once the handler returns ---------------------------------------- */

static int failing(ivy_http_req *r, void *arg)
{
    (void)arg;
    if (is(r, "/eio")) {
        assert_int_equal(ivy_http_add_header(r, "X-Dropped", "1"), 0); /* not on the 500 */
        return -EIO;
    }
    if (is(r, "/enotsup")) return -ENOTSUP;
    if (is(r, "/ebadmsg")) return -EBADMSG;
    if (is(r, "/efbig")) return -EFBIG;
    if (is(r, "/etimedout")) return -ETIMEDOUT;
    if (is(r, "/started")) {
        assert_int_equal(ivy_http_start(r, 200, "text/plain", -1), 0);
        assert_int_equal(ivy_http_write(r, "abc", 3), 3);
        return -EIO;
    }
    if (is(r, "/answered")) {
        assert_int_equal(ivy_http_respond(r, 200, "text/plain", "ok", 2), 0);
        return -EIO;
    }
    return 0; /* unanswered */
}

static void error_client(int port)
{
    struct client *c = client_new(port);
    /* Before anything was sent: 500, and the connection goes on (its framing is intact). */
    PUT(c, "GET /eio HTTP/1.1\r\nHost: a\r\n\r\nGET /enotsup HTTP/1.1\r\nHost: a\r\n\r\n"
           "POST /eio HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
           "GET /none HTTP/1.1\r\nHost: a\r\n\r\n");
    for (int i = 0; i < 3; i++)
        expect_response(c, "HTTP/1.1 500 Internal Server Error\r\nServer: ivy\r\nDate: <date>\r\n"
                           "Content-Type: text/plain\r\nContent-Length: 26\r\n\r\n"
                           "500 Internal Server Error\n");
    expect_response(c,
                    "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\nContent-Length: 0\r\n\r\n");
    client_free(c);
    /* The errors that name a status get it, and a close (the request is in doubt). */
    const char *paths[] = {"/ebadmsg", "/efbig", "/etimedout"};
    const char *answers[] = {
        "HTTP/1.1 400 Bad Request\r\nServer: ivy\r\nDate: <date>\r\nContent-Type: text/plain\r\n"
        "Content-Length: 16\r\nConnection: close\r\n\r\n400 Bad Request\n",
        "HTTP/1.1 413 Content Too Large\r\nServer: ivy\r\nDate: <date>\r\n"
        "Content-Type: text/plain\r\nContent-Length: 22\r\nConnection: close\r\n\r\n"
        "413 Content Too Large\n",
        "HTTP/1.1 408 Request Timeout\r\nServer: ivy\r\nDate: <date>\r\nContent-Type: "
        "text/plain\r\n"
        "Content-Length: 20\r\nConnection: close\r\n\r\n408 Request Timeout\n",
    };
    for (int i = 0; i < 3; i++) {
        char req[128];
        snprintf(req, sizeof req,
                 "GET %s HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", paths[i]);
        c = client_new(port);
        put(c, req, strlen(req));
        expect_response(c, answers[i]);
        expect_eof(c);
        client_free(c);
    }
    /* A body not sent yet when the handler fails: the 500 goes first, then the body is read
     * past as after any answer. */
    c = client_new(port);
    PUT(c, "POST /eio HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n");
    expect_response(c, "HTTP/1.1 500 Internal Server Error\r\nServer: ivy\r\nDate: <date>\r\n"
                       "Content-Type: text/plain\r\nContent-Length: 26\r\n\r\n"
                       "500 Internal Server Error\n");
    PUT(c, "helloGET /none HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(c,
                    "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\nContent-Length: 0\r\n\r\n");
    client_free(c);
    /* After the head went out: the connection closes, and a chunked body is left unfinished
     * (no last chunk), so that the client cannot take it for complete. */
    c = client_new(port);
    PUT(c, "GET /started HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    read_to_eof(c);
    c->len = normalise(c->buf, c->len);
    c->buf[c->len] = 0;
    assert_string_equal(c->buf, "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\n"
                                "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "3\r\nabc\r\n");
    client_free(c);
    c = client_new(port);
    PUT(c, "GET /answered HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    read_to_eof(c);
    c->len = normalise(c->buf, c->len);
    c->buf[c->len] = 0;
    assert_string_equal(c->buf, TEXT_200(2, ) "ok");
    client_free(c);
}

HTTP_TEST(handler_errors_are_answered_or_close_the_connection, error_client, .handler = failing)

/* ---- the headers option -------------------------------------------------------------------- */

static void server_headers(int port)
{
    exchange(port, "GET /none HTTP/1.1\r\nHost: a\r\n\r\n",
             "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\nContent-Length: 0\r\n"
             "X-Srv: 1\r\nX-Two: 2\r\n\r\n");
    exchange(port, "GET /eio HTTP/1.1\r\nHost: a\r\n\r\n",
             "HTTP/1.1 500 Internal Server Error\r\nServer: ivy\r\nDate: <date>\r\n"
             "Content-Type: text/plain\r\nContent-Length: 26\r\nX-Srv: 1\r\nX-Two: 2\r\n\r\n"
             "500 Internal Server Error\n");
    exchange(port, "GET /started HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
             "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\nContent-Type: text/plain\r\n"
             "Connection: close\r\nX-Srv: 1\r\nX-Two: 2\r\nTransfer-Encoding: chunked\r\n\r\n");
    /* The parser's own answers carry them too. */
    exchange(
        port, "GET / HTTP/1.1\r\n\r\n",
        "HTTP/1.1 400 Bad Request\r\nServer: ivy\r\nDate: <date>\r\nContent-Type: text/plain\r\n"
        "Content-Length: 16\r\nConnection: close\r\nX-Srv: 1\r\nX-Two: 2\r\n\r\n"
        "400 Bad Request\n");
}

HTTP_TEST(the_headers_option_is_on_every_response, server_headers, .handler = failing,
          .headers = "X-Srv: 1\r\nX-Two: 2\r\n")

/* ---- curl: a streamed download, HEAD ------------------------------------------------------- */

static int download(ivy_http_req *r, void *arg)
{
    (void)arg;
    if (ivy_http_start(r, 200, "text/plain", -1) < 0) return -EIO;
    char line[64];
    for (int i = 0; i < 2000; i++) {
        int n = snprintf(line, sizeof line, "line %d of a streamed download\n", i);
        if (ivy_http_write(r, line, (size_t)n) != n) return -EIO;
        if (i % 100 == 99 && ivy_http_flush(r) < 0) return -EIO;
    }
    return 0;
}

static void curl_client(int port)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/d", port);
    size_t cap = 1 << 17, len, n = 0;
    char *out = malloc(cap), *want = malloc(cap);
    for (int i = 0; i < 2000; i++)
        n += (size_t)snprintf(want + n, cap - n, "line %d of a streamed download\n", i);
    const char *const get[] = {"curl", "-sS", "--fail", url, NULL};
    assert_int_equal(run_child(get, out, cap, &len), 0);
    assert_int_equal(len, n);
    assert_memory_equal(out, want, n);
    const char *const head[] = {"curl", "-sS", "--fail", "-I", url, NULL};
    assert_int_equal(run_child(head, out, cap, &len), 0);
    len = normalise(out, len);
    out[len] = 0;
    assert_string_equal(out, "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\n"
                             "Content-Type: text/plain\r\n\r\n");
    free(out);
    free(want);
}

HTTP_TEST_NEEDS("curl", curl_streams_a_chunked_download_and_heads_it, curl_client,
                .handler = download)

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(respond_checks_its_status_and_answers_once),
        cmocka_unit_test(added_headers_are_checked_and_sent),
        cmocka_unit_test(streamed_bodies_are_chunked_delimited_or_of_their_length),
        cmocka_unit_test(head_204_and_304_have_no_body),
        cmocka_unit_test(sendfile_sends_file_regions_exactly),
        cmocka_unit_test(sendfile_to_a_client_that_never_reads_is_abandoned),
        cmocka_unit_test(a_chunked_body_to_a_client_that_never_reads_times_out),
        cmocka_unit_test(handler_errors_are_answered_or_close_the_connection),
        cmocka_unit_test(the_headers_option_is_on_every_response),
        cmocka_unit_test(curl_streams_a_chunked_download_and_heads_it),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (file_fd >= 0) unlink(file_path);
    return rc;
}
