/*
 * Tests for http/request.c, the body: streamed or whole, Content-Length or chunked, decoded as
 * it arrives, with 100-continue, the body limit, a body nobody reads, a client that leaves and
 * one that stalls; curl uploads 10 MiB with its checksum. Against ivy_http_serve in-process
 * (http_server_test.h), every answer compared byte for byte.
 */
#include "http_server_test.h"

#include <fcntl.h>
#include <signal.h>

/* ---- bodies: streamed ---------------------------------------------------------------------- */

static ivy_event *first_read; /* set once a handler has the first bytes of a body */
static ssize_t last_rc;       /* what the last read of a body returned */

/* Reads the body 7 bytes at a time: answers the sizes read and the body itself. */
static int stream(ivy_http_req *r, void *arg)
{
    (void)arg;
    char body[256], sizes[256] = "", b[7];
    size_t n = 0, sn = 0;
    ssize_t got;
    while ((got = ivy_http_read(r, b, sizeof b)) > 0) {
        assert_true(n + (size_t)got <= sizeof body);
        memcpy(body + n, b, (size_t)got);
        n += (size_t)got;
        sn += (size_t)snprintf(sizes + sn, sizeof sizes - sn, "%zd,", got);
        if (first_read) ivy_event_set(first_read);
    }
    last_rc = got;
    if (got < 0) return (int)got;
    assert_int_equal(ivy_http_read(r, b, sizeof b), 0); /* the end stays the end */
    assert_int_equal(ivy_http_read(r, b, 0), 0);
    char out[600];
    int on = snprintf(out, sizeof out, "%s|%.*s", sizes, (int)n, body);
    return ivy_http_respond(r, 200, "text/plain", out, (size_t)on);
}

static void streamed(int port)
{
    /* Whole in one send: reads of 7 from what arrived with the head; then the next request. */
    struct client *c = client_new(port);
    PUT(c, "POST /s HTTP/1.1\r\nHost: a\r\nContent-Length: 17\r\n\r\nabcdefghijklmnopq"
           "POST /s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
           "3\r\nabc\r\n9;x=y\r\ndefghijkl\r\n0\r\nT: 1\r\n\r\n"
           "GET /s HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(c, TEXT_200(24, ) "7,7,3,|abcdefghijklmnopq");
    expect_response(c, TEXT_200(17, ) "7,5,|abcdefghijkl"); /* decoded at once */
    expect_response(c, TEXT_200(1, ) "|");
    client_free(c);
}

HTTP_TEST(bodies_are_read_in_pieces_as_asked, streamed, .handler = stream)

/* The handler gets the first piece of a body before the client sends the rest. */
static void as_it_arrives(int port, const char *head, const char *first, const char *rest,
                          const char *want)
{
    first_read = ivy_event_new();
    struct client *c = client_new(port);
    put(c, head, strlen(head));
    put(c, first, strlen(first));
    assert_int_equal(ivy_event_wait(first_read, 5.0), 0);
    put(c, rest, strlen(rest));
    expect_response(c, want);
    client_free(c);
    ivy_event_free(first_read);
    first_read = NULL;
}

static void arriving(int port)
{
    as_it_arrives(port, "POST /s HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", "hello",
                  " world", TEXT_200(16, ) "5,6,|hello world");
    as_it_arrives(port, "POST /s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                  "5\r\nhello\r\n", "6\r\n world\r\n0\r\n\r\n", TEXT_200(16, ) "5,6,|hello world");
    /* A chunk split inside its size line and inside its data. */
    as_it_arrives(port, "POST /s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                  "4\r\nab", "cd\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n",
                  TEXT_200(29, ) "2,7,7,4,|abcd0123456789abcdef");
}

HTTP_TEST(chunked_and_length_bodies_are_handed_over_as_they_arrive, arriving, .handler = stream)

/* ---- bodies: whole ------------------------------------------------------------------------- */

static unsigned handled; /* handler calls */

/* Answers the body's length and checksum, or returns ivy_http_body's error. */
static int whole(ivy_http_req *r, void *arg)
{
    (void)arg;
    handled++;
    const char *b = NULL;
    ssize_t n = ivy_http_body(r, &b);
    last_rc = n;
    if (n < 0) return (int)n;
    assert_non_null(b);
    char out[64];
    int on = snprintf(out, sizeof out, "%zd %016llx", n, (unsigned long long)fnv(FNV_INIT, b, n));
    return ivy_http_respond(r, 200, "text/plain", out, (size_t)on);
}

static void expect_sum(struct client *c, const char *body, size_t len)
{
    char out[64], want[256];
    int on =
        snprintf(out, sizeof out, "%zu %016llx", len, (unsigned long long)fnv(FNV_INIT, body, len));
    snprintf(want, sizeof want, TEXT_200_FMT "%s", (size_t)on, out);
    expect_response(c, want);
}

/* n bytes of a pattern. */
static char *pattern(size_t n)
{
    char *b = malloc(n);
    for (size_t i = 0; i < n; i++)
        b[i] = (char)('A' + (i * 7 + i / 977) % 53);
    return b;
}

/* body as chunks of chunk bytes (the last shorter), with the last chunk; its length in *len. */
static char *chunked(const char *body, size_t n, size_t chunk, size_t *len)
{
    char *o = malloc(n + (n / chunk + 2) * 32);
    size_t l = 0;
    for (size_t at = 0; at < n; at += chunk) {
        size_t k = n - at < chunk ? n - at : chunk;
        l += (size_t)sprintf(o + l, "%zx\r\n", k);
        memcpy(o + l, body + at, k);
        l += k;
        l += (size_t)sprintf(o + l, "\r\n");
    }
    l += (size_t)sprintf(o + l, "0\r\n\r\n");
    *len = l;
    return o;
}

static void whole_bodies(int port)
{
    static const size_t sizes[] = {0, 1, 5000, 16384, 100000, 1 << 20};
    struct client *c = client_new(port);
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = sizes[i], cl;
        char *body = pattern(n), head[128];
        int hl = snprintf(head, sizeof head,
                          "POST /w HTTP/1.1\r\nHost: a\r\nContent-Length: %zu\r\n\r\n", n);
        put(c, head, (size_t)hl);
        put(c, body, n);
        expect_sum(c, body, n);
        /* The same chunked, in chunks of 1000 bytes, with a request pipelined after it. */
        hl = snprintf(head, sizeof head,
                      "POST /w HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
        char *enc = chunked(body, n, 1000, &cl);
        put(c, head, (size_t)hl);
        put(c, enc, cl);
        PUT(c, "GET /w HTTP/1.1\r\nHost: a\r\n\r\n");
        expect_sum(c, body, n);
        expect_sum(c, "", 0);
        free(enc);
        free(body);
    }
    client_free(c);
}

HTTP_TEST(whole_bodies_of_every_size_are_exact, whole_bodies, .handler = whole)

#define TOO_LARGE                                                                                  \
    "HTTP/1.1 413 Content Too Large\r\nServer: ivy\r\nDate: <date>\r\nContent-Type: "              \
    "text/plain\r\n"                                                                               \
    "Content-Length: 22\r\nConnection: close\r\n\r\n413 Content Too Large\n"

static void limits(int port)
{
    char body[101];
    memset(body, 'x', sizeof body);
    /* Exactly the limit passes, whichever way it comes. */
    struct client *c = client_new(port);
    PUT(c, "POST /w HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n");
    put(c, body, 100);
    expect_sum(c, body, 100);
    PUT(c, "POST /w HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n");
    put(c, body, 100);
    PUT(c, "\r\n0\r\n\r\n");
    expect_sum(c, body, 100);
    client_free(c);
    /* One byte more: declared, the parser refuses it before any handler runs. */
    unsigned before = handled;
    c = client_new(port);
    PUT(c, "POST /w HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n");
    expect_response(c, TOO_LARGE);
    expect_eof(c);
    client_free(c);
    assert_int_equal(handled, before);
    /* Chunked, the decoder refuses the chunk that passes it: the handler gets -EFBIG. */
    c = client_new(port);
    PUT(c, "POST /w HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n32\r\n");
    put(c, body, 50);
    PUT(c, "\r\n33\r\n");
    put(c, body, 51);
    PUT(c, "\r\n0\r\n\r\n");
    expect_response(c, TOO_LARGE);
    expect_eof(c);
    client_free(c);
    assert_int_equal(handled, before + 1);
    assert_int_equal(last_rc, -EFBIG);
}

HTTP_TEST(bodies_past_the_limit_are_413, limits, .handler = whole, .body_limit = 100)

/* ---- bodies nobody reads, and 100-continue --------------------------------------------------- */

static int ignore_body(ivy_http_req *r, void *arg)
{
    (void)arg;
    return ivy_http_respond(r, 200, "text/plain", "no", 2);
}

static void unread(int port)
{
    struct client *c = client_new(port);
    PUT(c,
        "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
        "POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        "GET /u HTTP/1.1\r\nHost: a\r\n\r\n");
    for (int i = 0; i < 3; i++)
        expect_response(c, TEXT_200(2, ) "no");
    /* A body arriving after the answer is read past too. */
    PUT(c, "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n");
    expect_response(c, TEXT_200(2, ) "no");
    PUT(c, "helloGET /u HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(c, TEXT_200(2, ) "no");
    /* With 100-continue the body was never invited: no 100, and the connection closes. */
    PUT(c, "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    expect_response(c, TEXT_200(2, "Connection: close\r\n") "no");
    expect_eof(c);
    client_free(c);
}

HTTP_TEST(an_unread_body_is_skipped_or_never_invited, unread, .handler = ignore_body)

static bool reading; /* the handler has begun to read its body */

static int late_reader(ivy_http_req *r, void *arg)
{
    (void)arg;
    ivy_event_set(first_read);
    ivy_sleep(0.2); /* were 100 Continue sent before the handler asked, it would arrive now */
    reading = true;
    return whole(r, arg);
}

static void continue_late(int port)
{
    first_read = ivy_event_new();
    reading = false;
    struct client *c = client_new(port);
    PUT(c, "POST /c HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_int_equal(ivy_event_wait(first_read, 5.0), 0); /* the handler runs */
    struct ivy_timeout to;
    assert_int_equal(ivy_timeout_begin(&to, 0.15), 0);
    assert_int_equal(ivy_recv(c->fd, c->buf, sizeof c->buf), -ETIMEDOUT);
    ivy_timeout_end(&to);
    assert_false(reading);
    while (c->len < 25)
        assert_true(more(c));
    assert_true(reading);
    assert_int_equal(c->len, 25);
    assert_memory_equal(c->buf, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    c->len = 0;
    PUT(c, "hello");
    expect_sum(c, "hello", 5);
    /* Keep-alive goes on; a chunked body is invited the same way. */
    PUT(c, "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
           "Expect: 100-continue\r\n\r\n");
    expect_interim_continue(c);
    PUT(c, "5\r\nhello\r\n0\r\n\r\n");
    expect_sum(c, "hello", 5);
    client_free(c);
    ivy_event_free(first_read);
    first_read = NULL;
}

HTTP_TEST(continue_is_sent_only_when_the_handler_reads, continue_late, .handler = late_reader)

/* Answers first, then reads: no 100 Continue may follow the final answer. */
static int answer_then_read(ivy_http_req *r, void *arg)
{
    (void)arg;
    assert_int_equal(ivy_http_respond(r, 200, "text/plain", "early", 5), 0);
    assert_int_equal(ivy_http_flush(r), 0);
    const char *b;
    last_rc = ivy_http_body(r, &b); /* the client sends it anyway */
    return 0;
}

static void answered_first(int port)
{
    struct client *c = client_new(port);
    PUT(c, "POST /c HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    expect_response(c, TEXT_200(5, "Connection: close\r\n") "early");
    PUT(c, "hello");
    expect_eof(c);
    client_free(c);
    assert_int_equal(last_rc, 5);
}

HTTP_TEST(no_continue_follows_a_final_answer, answered_first, .handler = answer_then_read)

/* ---- clients that leave or stall mid-body --------------------------------------------------- */

static int stream_or_whole(ivy_http_req *r, void *arg)
{
    struct ivy_http_slice p = ivy_http_path(r);
    return p.len == 2 && p.p[1] == 'w' ? whole(r, arg) : stream(r, arg);
}

static void gone(int port)
{
    const char *reqs[] = {
        "POST /s HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc",
        "POST /w HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc",
        "POST /s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
        "POST /w HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
        "POST /w HTTP/1.1\r\nHost: a\r\nContent-Length: 20000\r\n\r\nabc", /* not in a buffer */
    };
    for (size_t i = 0; i < sizeof reqs / sizeof *reqs; i++) {
        last_rc = 0;
        struct client *c = client_new(port);
        put(c, reqs[i], strlen(reqs[i]));
        ivy_shutdown(c->fd, SHUT_WR);
        expect_eof(c); /* nobody to answer: closed without a response */
        client_free(c);
        assert_int_equal(last_rc, -ENODATA);
    }
}

HTTP_TEST(a_client_leaving_mid_body_is_ENODATA, gone, .handler = stream_or_whole)

static void stall(int port)
{
    const char *reqs[] = {
        "POST /s HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc",
        "POST /w HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",
    };
    for (size_t i = 0; i < 2; i++) {
        last_rc = 0;
        struct client *c = client_new(port);
        put(c, reqs[i], strlen(reqs[i]));
        expect_response(c, "HTTP/1.1 408 Request Timeout\r\nServer: ivy\r\nDate: <date>\r\n"
                           "Content-Type: text/plain\r\nContent-Length: 20\r\n"
                           "Connection: close\r\n\r\n408 Request Timeout\n");
        expect_eof(c);
        client_free(c);
        assert_int_equal(last_rc, -ETIMEDOUT);
    }
}

HTTP_TEST(a_stalled_body_is_408, stall, .handler = stream_or_whole, .request_timeout = 0.2)

/* ---- curl uploads 10 MiB ------------------------------------------------------------------- */

enum { UPLOAD = 10 << 20 };

/* Streams the body through a 64 KiB buffer: its length and checksum. */
static int upload(ivy_http_req *r, void *arg)
{
    (void)arg;
    static char b[65536];
    uint64_t h = FNV_INIT;
    size_t n = 0;
    ssize_t got;
    while ((got = ivy_http_read(r, b, sizeof b)) > 0) {
        h = fnv(h, b, (size_t)got);
        n += (size_t)got;
    }
    if (got < 0) return (int)got;
    char out[64];
    int on = snprintf(out, sizeof out, "%zu %016llx\n", n, (unsigned long long)h);
    return ivy_http_respond(r, 200, "text/plain", out, (size_t)on);
}

static void curl_upload(int port)
{
    char path[] = "/tmp/ivy-upload-XXXXXX", url[64], want[64], out[256];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char *body = pattern(UPLOAD);
    assert_int_equal(write(fd, body, UPLOAD), UPLOAD);
    close(fd);
    snprintf(want, sizeof want, "%d %016llx\n", UPLOAD,
             (unsigned long long)fnv(FNV_INIT, body, UPLOAD));
    free(body);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/up", port);
    /* Content-Length with 100-continue, then chunked. */
    const char *const length[] = {"curl", "-sS", "--fail", "-H", "Expect: 100-continue",
                                  "-T",   path,  url,      NULL};
    assert_int_equal(run_child(length, out, sizeof out, NULL), 0);
    assert_string_equal(out, want);
    const char *const chunks[] = {
        "curl", "-sS", "--fail", "-H", "Transfer-Encoding: chunked", "-H", "Expect: 100-continue",
        "-T",   path,  url,      NULL};
    assert_int_equal(run_child(chunks, out, sizeof out, NULL), 0);
    assert_string_equal(out, want);
    unlink(path);
}

HTTP_TEST_NEEDS("curl", curl_uploads_ten_mebibytes_with_their_checksum, curl_upload,
                .handler = upload, .body_limit = 16 << 20)

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bodies_are_read_in_pieces_as_asked),
        cmocka_unit_test(chunked_and_length_bodies_are_handed_over_as_they_arrive),
        cmocka_unit_test(whole_bodies_of_every_size_are_exact),
        cmocka_unit_test(bodies_past_the_limit_are_413),
        cmocka_unit_test(an_unread_body_is_skipped_or_never_invited),
        cmocka_unit_test(continue_is_sent_only_when_the_handler_reads),
        cmocka_unit_test(no_continue_follows_a_final_answer),
        cmocka_unit_test(a_client_leaving_mid_body_is_ENODATA),
        cmocka_unit_test(a_stalled_body_is_408),
        cmocka_unit_test(curl_uploads_ten_mebibytes_with_their_checksum),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
