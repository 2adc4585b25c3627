/*
 * Every wait for a client's bytes is under its timeout, whatever the sizes involved (issue 13,
 * defect 1: a first packet of exactly the reader's size, 16383 bytes, or a 16384-byte partial
 * request, once kept a connection open for ever). For sizes around each buffer the server uses
 * (the 16 KiB input buffer, the 8 KiB head limit, twice the buffer), in one send: pipelined
 * requests whose bytes add up to that size are all answered and the connection then closes on
 * the keep-alive timeout; a request cut off at that size gets 408 on the request timeout. The
 * in-process server of test_http_app.h, timeouts of 0.3 s.
 */
#include "test_http_app.h"

#define T 0.3

static const size_t sizes[] = {8191, 8192, 8193, 16383, 16384, 16385, 32767, 32768, 32769};

static double since(uint64_t t0)
{
    return (double)(ivy_now_ns() - t0) / 1e9;
}

/* Three GETs padded by a header of the first so that they make exactly n bytes together. */
static size_t three_gets(char *buf, size_t n)
{
    static const char tail[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    size_t fixed = 2 * (sizeof tail - 1) + strlen("GET / HTTP/1.1\r\nHost: a\r\nX-Pad: \r\n\r\n");
    size_t pad = n - fixed, at = 0;
    /* A head holds 8 KiB at most: pad with a body instead past that (POST /echo). */
    if (pad > 7000) {
        int h = snprintf(buf, 128, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %zu\r\n\r\n",
                         (size_t)0);
        size_t body = n - 2 * (sizeof tail - 1) - (size_t)h;
        h = snprintf(buf, 128, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %zu\r\n\r\n",
                     body);
        body = n - 2 * (sizeof tail - 1) - (size_t)h; /* the length's digits may have grown */
        h = snprintf(buf, 128, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %zu\r\n\r\n",
                     body);
        at = (size_t)h;
        memset(buf + at, 'b', body);
        at += body;
    } else {
        at = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ");
        memset(buf + at, 'p', pad);
        at += pad;
        at += (size_t)sprintf(buf + at, "\r\n\r\n");
    }
    memcpy(buf + at, tail, sizeof tail - 1);
    memcpy(buf + at + sizeof tail - 1, tail, sizeof tail - 1);
    return at + 2 * (sizeof tail - 1);
}

static void pipelined_then_idle(int port)
{
    static char buf[40000];
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = three_gets(buf, sizes[i]);
        assert_int_equal(n, sizes[i]);
        struct client *c = client_new(port);
        put(c, buf, n);
        for (int k = 0; k < 3; k++) {
            char *r = response(c);
            assert_non_null(r);
            assert_memory_equal(r, "HTTP/1.1 200 OK\r\n", 17);
            free(r);
        }
        uint64_t t0 = ivy_now_ns();
        expect_eof(c);
        double t = since(t0);
        print_message("  %zu bytes: answered, then closed after %.3f s idle\n", n, t);
        assert_true(t >= T - 0.05 && t <= 2.0);
        client_free(c);
    }
}

SERVED(pipelined_batches_of_any_size_then_close_on_the_keepalive_timeout, pipelined_then_idle,
       .keepalive_timeout = T, .request_timeout = T)

static void cut_off(int port)
{
    static char buf[40000];
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        /* A head announcing more body than comes: the first n bytes of the request, no more. */
        int h =
            snprintf(buf, 128, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n");
        memset(buf + h, 'b', sizes[i] - (size_t)h);
        struct client *c = client_new(port);
        uint64_t t0 = ivy_now_ns();
        put(c, buf, sizes[i]);
        char *r = response(c);
        double t = since(t0);
        assert_non_null(r);
        print_message("  %zu bytes: %.3f s to the 408\n", sizes[i], t);
        assert_memory_equal(r, "HTTP/1.1 408 Request Timeout\r\n", 30);
        assert_non_null(strstr(r, "\r\nConnection: close\r\n"));
        free(r);
        assert_true(t >= T - 0.05 && t <= 2.0);
        expect_eof(c);
        client_free(c);
    }
}

SERVED(requests_cut_off_at_any_size_get_408_on_the_request_timeout, cut_off, .keepalive_timeout = T,
       .request_timeout = T)

/* A head cut off at each size under the head limit: 408 on the request timeout as well. */
static void head_cut_off(int port)
{
    static char buf[8192];
    static const size_t head_sizes[] = {1, 4095, 4096, 4097, 8190};
    for (size_t i = 0; i < sizeof head_sizes / sizeof *head_sizes; i++) {
        size_t n = head_sizes[i];
        int h = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ");
        if ((size_t)h > n) h = (int)n;
        memset(buf + h, 'p', n - (size_t)h);
        struct client *c = client_new(port);
        uint64_t t0 = ivy_now_ns();
        put(c, buf, n);
        char *r = response(c);
        double t = since(t0);
        assert_non_null(r);
        assert_memory_equal(r, "HTTP/1.1 408 Request Timeout\r\n", 30);
        free(r);
        assert_true(t >= T - 0.05 && t <= 2.0);
        client_free(c);
    }
}

SERVED(heads_cut_off_at_any_size_get_408_on_the_request_timeout, head_cut_off,
       .keepalive_timeout = T, .request_timeout = T)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pipelined_batches_of_any_size_then_close_on_the_keepalive_timeout),
        cmocka_unit_test(requests_cut_off_at_any_size_get_408_on_the_request_timeout),
        cmocka_unit_test(heads_cut_off_at_any_size_get_408_on_the_request_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
