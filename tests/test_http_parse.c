/* Tests for apps/http_parse.c: request heads (limits, strictness, pipelining, split input) and
 * the errors they map to. Inputs that end early are copied into buffers of their exact size so
 * that ASan catches any read past len. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http_parse.h"
#include "http_test.h"

static struct ivy_http_request req;

/* Moves a slice from copy to s, so that it outlives copy. */
static void rebase(struct ivy_http_slice *sl, const char *copy, size_t len, const char *s)
{
    if (sl->p >= copy && sl->p <= copy + len) sl->p = s + (sl->p - copy);
}

/* Parses a private copy of exactly len bytes. */
static int parse_n(const char *s, size_t len, struct ivy_http_request *r)
{
    char *copy = malloc(len ? len : 1);
    memcpy(copy, s, len);
    memset(r, 0, sizeof *r);
    int rc = ivy_http_parse_request(copy, len, r);
    if (rc > 0) {
        rebase(&r->method, copy, len, s);
        rebase(&r->path, copy, len, s);
        rebase(&r->query, copy, len, s);
        for (unsigned i = 0; i < r->num_headers; i++) {
            rebase(&r->headers[i].name, copy, len, s);
            rebase(&r->headers[i].value, copy, len, s);
        }
    }
    free(copy);
    return rc;
}

static int parse(const char *s)
{
    return parse_n(s, strlen(s), &req);
}

/* Parses s, which must be one whole head: its exact length back. */
static void parse_whole(const char *s)
{
    assert_int_equal(parse(s), strlen(s));
}

static void assert_slice(struct ivy_http_slice sl, const char *want)
{
    assert_non_null(sl.p);
    assert_int_equal(sl.len, strlen(want));
    assert_memory_equal(sl.p, want, sl.len);
}

static void simple_get_fills_every_field(void **state)
{
    const char *s = "GET /index.html?a=1&b=%20 HTTP/1.1\r\nHost: localhost:8080\r\n"
                    "User-Agent: wrk\r\n\r\n";
    assert_int_equal(parse(s), strlen(s));
    assert_slice(req.method, "GET");
    assert_int_equal(req.method_id, IVY_HTTP_GET);
    assert_slice(req.path, "/index.html");
    assert_slice(req.query, "a=1&b=%20");
    assert_int_equal(req.version_minor, 1);
    assert_int_equal(req.num_headers, 2);
    assert_slice(req.headers[0].name, "Host");
    assert_slice(req.headers[0].value, "localhost:8080");
    assert_slice(req.headers[1].name, "User-Agent");
    assert_slice(req.headers[1].value, "wrk");
    assert_int_equal(req.content_length, -1);
    assert_false(req.chunked);
    assert_true(req.keep_alive);
    assert_false(req.expect_continue);
}

static void path_without_query_has_null_query(void **state)
{
    assert_int_equal(parse("GET / HTTP/1.0\r\n\r\n"), 18);
    assert_slice(req.path, "/");
    assert_null(req.query.p);
    assert_int_equal(req.query.len, 0);
    assert_int_equal(req.version_minor, 0);
    assert_int_equal(req.num_headers, 0);
    assert_int_equal(parse("GET /a? HTTP/1.0\r\n\r\n"), 20);
    assert_non_null(req.query.p);
    assert_int_equal(req.query.len, 0);
}

static void other_target_forms(void **state)
{
    parse_whole("GET http://example.com/a/b?x=1 HTTP/1.1\r\nHost: e\r\n\r\n");
    assert_slice(req.path, "/a/b");
    assert_slice(req.query, "x=1");
    parse_whole("GET HTTPS://example.com:8443 HTTP/1.1\r\nHost: e\r\n\r\n");
    assert_slice(req.path, "/");
    assert_null(req.query.p);
    parse_whole("OPTIONS * HTTP/1.1\r\nHost: e\r\n\r\n");
    assert_int_equal(req.method_id, IVY_HTTP_OPTIONS);
    assert_slice(req.path, "*");
}

static void method_ids_are_case_sensitive(void **state)
{
    static const struct {
        const char *m;
        enum ivy_http_method id;
    } t[] = {
        {"GET", IVY_HTTP_GET},         {"HEAD", IVY_HTTP_HEAD},     {"POST", IVY_HTTP_POST},
        {"PUT", IVY_HTTP_PUT},         {"DELETE", IVY_HTTP_DELETE}, {"PATCH", IVY_HTTP_PATCH},
        {"OPTIONS", IVY_HTTP_OPTIONS}, {"get", IVY_HTTP_OTHER},     {"PROPFIND", IVY_HTTP_OTHER}};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        char s[64];
        snprintf(s, sizeof s, "%s / HTTP/1.0\r\n\r\n", t[i].m);
        assert_int_equal(parse(s), strlen(s));
        assert_int_equal(req.method_id, t[i].id);
        assert_slice(req.method, t[i].m);
    }
}

static void keep_alive_follows_version_and_connection(void **state)
{
    static const struct {
        const char *s;
        bool keep;
    } t[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: ,keep-alive , \r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", false},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        assert_int_equal(parse(t[i].s), strlen(t[i].s));
        assert_int_equal(req.keep_alive, t[i].keep);
    }
}

static void expect_continue_only_in_http11(void **state)
{
    parse_whole("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                "Expect: 100-Continue\r\n\r\n");
    assert_true(req.expect_continue);
    assert_int_equal(req.content_length, 5);
    parse_whole("POST / HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_false(req.expect_continue);
}

static void values_are_trimmed_and_may_hold_tabs_and_obs_text(void **state)
{
    const char *s = "GET / HTTP/1.1\r\nhost:a\r\nX-A: \t v \t\r\nX-Empty:\r\n"
                    "X-Long: 0123456789\tabcdef\xc3\xa9ghijklmnopq\r\n\r\n";
    assert_int_equal(parse(s), strlen(s));
    assert_slice(*ivy_http_get_header(&req, "x-a"), "v");
    assert_slice(req.headers[0].value, "a");
    assert_int_equal(ivy_http_get_header(&req, "X-EMPTY")->len, 0);
    assert_slice(*ivy_http_get_header(&req, "X-Long"), "0123456789\tabcdef\xc3\xa9ghijklmnopq");
    assert_null(ivy_http_get_header(&req, "X-Missing"));
}

static void leading_empty_lines_are_skipped(void **state)
{
    assert_int_equal(parse("\r\n\r\nGET / HTTP/1.0\r\n\r\n"), 22);
    assert_slice(req.path, "/");
    assert_int_equal(parse("\r\n"), 0);
    assert_int_equal(parse("\r"), 0);
}

static void content_length_and_chunked_are_reported(void **state)
{
    parse_whole("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n");
    assert_int_equal(req.content_length, 7);
    parse_whole("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(req.content_length, 0);
    parse_whole("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n");
    assert_true(req.chunked);
    assert_int_equal(req.content_length, -1);
    parse_whole("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n");
    assert_int_equal(req.content_length, 1048576);
}

static void body_limit_is_configurable(void **state)
{
    const char *s = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n";
    memset(&req, 0, sizeof req);
    req.body_limit = 10;
    assert_int_equal(ivy_http_parse_request(s, strlen(s), &req), -EFBIG);
    req.body_limit = 11;
    assert_int_equal(ivy_http_parse_request(s, strlen(s), &req), strlen(s));
    assert_int_equal(req.body_limit, 11);
}

static void pipelined_requests_parse_back_to_back(void **state)
{
    static const char buf[] = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"                       /* 28 */
                              "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n" /* 48 */
                              "hello"
                              "GET /c?d HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" /* 49 */
                              "GET /partial HTTP/1.1\r\nHo";
    size_t len = sizeof buf - 1, off = 0;
    struct ivy_http_request r = {0};
    assert_int_equal(ivy_http_parse_request(buf + off, len - off, &r), 28);
    assert_slice(r.path, "/a");
    off += 28;
    assert_int_equal(ivy_http_parse_request(buf + off, len - off, &r), 48);
    assert_slice(r.path, "/b");
    assert_int_equal(r.content_length, 5);
    off += 48 + 5;
    assert_int_equal(ivy_http_parse_request(buf + off, len - off, &r), 49);
    assert_slice(r.path, "/c");
    assert_slice(r.query, "d");
    assert_false(r.keep_alive);
    off += 49;
    assert_int_equal(ivy_http_parse_request(buf + off, len - off, &r), 0);
}

/* Every proper prefix of a valid head needs more bytes; the whole head parses the same. */
static void split_at_every_byte_needs_more_until_complete(void **state)
{
    static const char *const heads[] = {
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
        ("\r\nPOST /echo?x=%41 HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\nX-Tab: a\tb\r\n"
         "Connection: keep-alive\r\nTransfer-Encoding-X: y\r\nAccept: */*\r\n\r\n"),
        "OPTIONS * HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    };
    for (size_t h = 0; h < sizeof heads / sizeof *heads; h++) {
        size_t n = strlen(heads[h]);
        struct ivy_http_request whole;
        assert_int_equal(parse_n(heads[h], n, &whole), n);
        for (size_t k = 0; k < n; k++)
            assert_int_equal(parse_n(heads[h], k, &req), 0);
        assert_int_equal(parse_n(heads[h], n, &req), n);
        assert_memory_equal(&req, &whole, sizeof req);
    }
}

static void malformed_heads_map_to_exact_statuses(void **state)
{
    static const struct bad t[] = {
        /* method and request line */
        BAD("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        BAD(" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        BAD("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        BAD("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        BAD("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
        BAD("GET /\r\n\r\n", 400),
        BAD("\r\n\r\n\n", 400),
        /* line endings */
        BAD("GET / HTTP/1.1\nHost: a\n\n", 400),
        BAD("GET / HTTP/1.1\r\nHost: a\n\r\n", 400),
        BAD("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", 400),
        BAD("GET / HTTP/1.1\r\nHost: a\r\n\rX", 400),
        BAD("GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
        BAD("\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        /* request-target */
        BAD("GET a HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        BAD("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        BAD("GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        BAD("GET /a%4 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        BAD("GET /<x> HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        BAD("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        BAD("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        BAD("GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        BAD("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        BAD("GET http://u@h/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        BAD("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        BAD("GET ftp://h/x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        BAD("CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        /* version */
        BAD("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        BAD("GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505),
        BAD("GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505),
        BAD("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
        BAD("GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400),
        BAD("GET / http/1.1\r\nHost: a\r\n\r\n", 400),
        BAD("GET / HTTP/1\r\nHost: a\r\n\r\n", 400),
        BAD("GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400),
        /* header fields */
        BAD("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
        BAD("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
        BAD("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n  folded\r\n\r\n", 400),
        BAD("GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 400),
        BAD("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400),
        BAD("GET / HTTP/1.1\r\nHost: a\r\nX\x80: b\r\n\r\n", 400),
        BAD("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01z\r\n\r\n", 400),
        BAD("GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789abc\x7f\r\n\r\n", 400),
        BAD("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 400),
        BAD("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
        /* Host */
        BAD("GET / HTTP/1.1\r\n\r\n", 400),
        BAD("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400),
        /* Content-Length */
        BAD("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400),
        BAD("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
        BAD("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", 400),
        BAD("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400),
        BAD("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", 400),
        BAD("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400),
        BAD("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", 400),
        BAD("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n", 400),
        BAD("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
        BAD("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
        BAD("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400),
        BAD("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2097152\r\n\r\n", 413),
        BAD("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n", 413),
        BAD("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n", 413),
        /* Transfer-Encoding */
        BAD("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        BAD("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
        BAD("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
        BAD("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
            "Transfer-Encoding: chunked\r\n\r\n",
            400),
        BAD("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 400),
        BAD("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            400),
        BAD("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            400),
        BAD("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        BAD("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        BAD("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n"
            "Transfer-Encoding: chunked\r\n\r\n",
            501),
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        int rc = parse_n(t[i].s, t[i].len, &req);
        if (rc >= 0 || ivy_http_error_status(rc) != t[i].status)
            fail_msg("case %zu (%.*s): got %d, want status %d", i, (int)t[i].len, t[i].s, rc,
                     t[i].status);
    }
}

/* Builds "GET / HTTP/1.1\r\nHost: a\r\nX: <pad>\r\n\r\n" of exactly total bytes. */
static size_t head_of_size(char *buf, size_t total)
{
    const char *pre = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
    size_t n = strlen(pre);
    memcpy(buf, pre, n);
    memset(buf + n, 'v', total - n - 4);
    memcpy(buf + total - 4, "\r\n\r\n", 4);
    return total;
}

static void head_size_limit_is_8k_and_enforced_before_completion(void **state)
{
    static char buf[16384];
    assert_int_equal(parse_n(buf, head_of_size(buf, IVY_HTTP_MAX_HEAD), &req), IVY_HTTP_MAX_HEAD);
    assert_int_equal(parse_n(buf, head_of_size(buf, IVY_HTTP_MAX_HEAD + 1), &req), -EMSGSIZE);
    assert_int_equal(parse_n(buf, head_of_size(buf, 9 * 1024), &req), -EMSGSIZE);
    assert_int_equal(ivy_http_error_status(-EMSGSIZE), 431);
    /* No terminator yet: wait below the limit, refuse at it, in a value or in the request line. */
    head_of_size(buf, 9 * 1024);
    assert_int_equal(parse_n(buf, IVY_HTTP_MAX_HEAD - 1, &req), 0);
    assert_int_equal(parse_n(buf, IVY_HTTP_MAX_HEAD, &req), -EMSGSIZE);
    memcpy(buf, "GET /", 5);
    memset(buf + 5, 'a', sizeof buf - 5);
    assert_int_equal(parse_n(buf, IVY_HTTP_MAX_HEAD - 1, &req), 0);
    assert_int_equal(parse_n(buf, IVY_HTTP_MAX_HEAD, &req), -EMSGSIZE);
    /* A complete small head followed by lots of body is fine. */
    size_t n = strlen("GET / HTTP/1.0\r\n\r\n");
    memcpy(buf, "GET / HTTP/1.0\r\n\r\n", n);
    assert_int_equal(parse_n(buf, sizeof buf, &req), n);
}

static void at_most_100_headers(void **state)
{
    static char buf[4096];
    size_t n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < IVY_HTTP_MAX_HEADERS - 1; i++)
        n += (size_t)sprintf(buf + n, "H%d: v\r\n", i);
    n += (size_t)sprintf(buf + n, "Host: a\r\n");
    memcpy(buf + n, "\r\n", 2);
    assert_int_equal(parse_n(buf, n + 2, &req), n + 2);
    assert_int_equal(req.num_headers, IVY_HTTP_MAX_HEADERS);
    assert_slice(req.headers[99].name, "Host");
    n += (size_t)sprintf(buf + n, "H101: v\r\n\r\n");
    assert_int_equal(parse_n(buf, n, &req), -EMSGSIZE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(simple_get_fills_every_field),
        cmocka_unit_test(path_without_query_has_null_query),
        cmocka_unit_test(other_target_forms),
        cmocka_unit_test(method_ids_are_case_sensitive),
        cmocka_unit_test(keep_alive_follows_version_and_connection),
        cmocka_unit_test(expect_continue_only_in_http11),
        cmocka_unit_test(values_are_trimmed_and_may_hold_tabs_and_obs_text),
        cmocka_unit_test(leading_empty_lines_are_skipped),
        cmocka_unit_test(content_length_and_chunked_are_reported),
        cmocka_unit_test(body_limit_is_configurable),
        cmocka_unit_test(pipelined_requests_parse_back_to_back),
        cmocka_unit_test(split_at_every_byte_needs_more_until_complete),
        cmocka_unit_test(malformed_heads_map_to_exact_statuses),
        cmocka_unit_test(head_size_limit_is_8k_and_enforced_before_completion),
        cmocka_unit_test(at_most_100_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
