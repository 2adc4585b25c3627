/*
 * Tests for http/request.c, the head: what a handler reads of its request (method, target,
 * path, query and its parameters, version, headers, peer, declared length). The body is
 * test_http_request_body.c's. Against ivy_http_serve in-process (http_server_test.h), every
 * answer compared byte for byte.
 */
#include "http_server_test.h"

#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/stat.h>

/* ---- the head ------------------------------------------------------------------------------ */

/* Answers with a description of everything the head says. */
static int describe(ivy_http_req *r, void *arg)
{
    (void)arg;
    char out[4096];
    size_t n = 0, cap = sizeof out;
    struct ivy_http_slice m = ivy_http_method_name(r), t = ivy_http_target(r);
    struct ivy_http_slice p = ivy_http_path(r), q = ivy_http_query(r);
    n += (size_t)snprintf(out + n, cap - n, "%d %.*s|%.*s|%.*s|%s%.*s|%d|%lld\n",
                          ivy_http_method(r), SL(m), SL(t), SL(p), q.p ? "?" : "-", SL(q),
                          ivy_http_version(r), (long long)ivy_http_content_length(r));
    unsigned count = ivy_http_header_count(r);
    for (unsigned i = 0; i < count; i++) {
        struct ivy_http_slice hn, hv;
        assert_int_equal(ivy_http_header_at(r, i, &hn, &hv), 0);
        n += (size_t)snprintf(out + n, cap - n, "[%.*s][%.*s]\n", SL(hn), SL(hv));
    }
    struct ivy_http_slice hn = {"x", 1};
    assert_int_equal(ivy_http_header_at(r, count, &hn, NULL), -ENOENT);
    assert_int_equal(ivy_http_header_at(r, count + 100, NULL, NULL), -ENOENT);
    assert_slice(hn, "x"); /* untouched past the end */
    const char *look[] = {"x-test", "X-TEST", "X-Test-", "missing", "host"};
    for (size_t i = 0; i < sizeof look / sizeof *look; i++) {
        const struct ivy_http_slice *v = ivy_http_header(r, look[i]);
        n += (size_t)snprintf(out + n, cap - n, "%s=%s%.*s\n", look[i], v ? "" : "(none)",
                              v ? (int)v->len : 0, v ? v->p : "");
    }
    return ivy_http_respond(r, 200, "text/plain", out, n);
}

static void expect_described(int port, const char *req, const char *desc)
{
    char want[4096];
    snprintf(want, sizeof want,
             "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\n"
             "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(desc), desc);
    exchange(port, req, want);
}

#define NO_LOOKUPS "x-test=(none)\nX-TEST=(none)\nX-Test-=(none)\nmissing=(none)\nhost=a\n"

static void accessors(int port)
{
    expect_described(port,
                     "GET /p%20q/r?a=1&b HTTP/1.1\r\nHost: a\r\nX-Test:  v 1 \r\n"
                     "x-other:two\r\nX-TEST: second\r\n\r\n",
                     "1 GET|/p%20q/r?a=1&b|/p%20q/r|?a=1&b|11|-1\n[Host][a]\n[X-Test][v 1]\n"
                     "[x-other][two]\n[X-TEST][second]\n"
                     "x-test=v 1\nX-TEST=v 1\nX-Test-=(none)\nmissing=(none)\nhost=a\n");
    /* No query, an empty one, a '?' inside it; HTTP/1.0 (closed after the answer). */
    expect_described(port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                     "1 GET|/|/|-|11|-1\n[Host][a]\n" NO_LOOKUPS);
    expect_described(port, "DELETE /x? HTTP/1.1\r\nHost: a\r\n\r\n",
                     "5 DELETE|/x?|/x|?|11|-1\n[Host][a]\n" NO_LOOKUPS);
    expect_described(port, "GET /x?a?b=/c HTTP/1.1\r\nHost: a\r\n\r\n",
                     "1 GET|/x?a?b=/c|/x|?a?b=/c|11|-1\n[Host][a]\n" NO_LOOKUPS);
    struct client *c = client_new(port);
    PUT(c, "GET /old HTTP/1.0\r\n\r\n");
    const char *d = "1 GET|/old|/old|-|10|-1\nx-test=(none)\nX-TEST=(none)\nX-Test-=(none)\n"
                    "missing=(none)\nhost=(none)\n";
    char want[512];
    snprintf(want, sizeof want,
             "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\n"
             "Content-Type: text/plain\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
             strlen(d), d);
    expect_response(c, want);
    expect_eof(c);
    client_free(c);
    /* Absolute-form: the target as sent, the path without the authority ("/" when none). */
    expect_described(port, "GET http://h.example/a/b?q=1 HTTP/1.1\r\nHost: h.example\r\n\r\n",
                     "1 GET|http://h.example/a/b?q=1|/a/b|?q=1|11|-1\n[Host][h.example]\n"
                     "x-test=(none)\nX-TEST=(none)\nX-Test-=(none)\nmissing=(none)\n"
                     "host=h.example\n");
    expect_described(port, "GET http://h.example HTTP/1.1\r\nHost: h.example\r\n\r\n",
                     "1 GET|http://h.example|/|-|11|-1\n[Host][h.example]\n"
                     "x-test=(none)\nX-TEST=(none)\nX-Test-=(none)\nmissing=(none)\n"
                     "host=h.example\n");
    /* Empty lines before the request line are skipped: the target still starts after it. */
    expect_described(port, "\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
                     "6 OPTIONS|*|*|-|11|-1\n[Host][a]\n" NO_LOOKUPS);
    /* Declared lengths: 0, 5, chunked (-1). */
    expect_described(port, "PUT /l HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
                     "4 PUT|/l|/l|-|11|0\n[Host][a]\n[Content-Length][0]\n" NO_LOOKUPS);
    expect_described(port, "POST /l HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
                     "3 POST|/l|/l|-|11|5\n[Host][a]\n[Content-Length][5]\n" NO_LOOKUPS);
    expect_described(port,
                     "PATCH /l HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "3\r\nabc\r\n0\r\n\r\n",
                     "7 PATCH|/l|/l|-|11|-1\n[Host][a]\n[Transfer-Encoding][chunked]\n" NO_LOOKUPS);
}

HTTP_TEST(every_head_accessor_reports_the_request, accessors, .handler = describe)

/* Each method's id and name, in a header (so that HEAD shows it too). */
static int method_header(ivy_http_req *r, void *arg)
{
    (void)arg;
    char v[64];
    struct ivy_http_slice m = ivy_http_method_name(r);
    snprintf(v, sizeof v, "%d %.*s", ivy_http_method(r), SL(m));
    assert_int_equal(ivy_http_add_header(r, "X-Method", v), 0);
    return ivy_http_respond(r, 200, NULL, NULL, 0);
}

static void methods(int port)
{
    const char *m[] = {"PROPFIND", "GET",   "HEAD", "POST", "PUT",    "DELETE",
                       "OPTIONS",  "PATCH", "get",  "GETS", "PATCHES"};
    int id[] = {0, 1, 2, 3, 4, 5, 6, 7, 0, 0, 0}; /* case-sensitive, whole tokens */
    for (size_t i = 0; i < sizeof m / sizeof *m; i++) {
        char req[128], want[256];
        snprintf(req, sizeof req, "%s /m HTTP/1.1\r\nHost: a\r\n\r\n", m[i]);
        snprintf(want, sizeof want,
                 "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\n"
                 "Content-Length: 0\r\nX-Method: %d %s\r\n\r\n",
                 id[i], m[i]);
        exchange(port, req, want);
    }
}

HTTP_TEST(methods_are_named_and_identified, methods, .handler = method_header)

/* ---- query parameters ---------------------------------------------------------------------- */

static int params(ivy_http_req *r, void *arg)
{
    (void)arg;
    const char *names[] = {"a", "b", "empty", "flag", "sp ace", "x+y", "missing", "A", ""};
    char out[1024], v[64];
    size_t n = 0;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        ssize_t l = ivy_http_query_param(r, names[i], v, sizeof v);
        if (l >= 0) {
            assert_int_equal(strlen(v), (size_t)l); /* NUL-terminated (no NUL inside here) */
            n += (size_t)snprintf(out + n, sizeof out - n, "%s=[%s]\n", names[i], v);
        } else {
            n += (size_t)snprintf(out + n, sizeof out - n, "%s=%zd\n", names[i], l);
        }
    }
    if (ivy_http_query_param(r, "a", v, sizeof v) == 5) {
        /* "1+2 3": the buffer must hold the NUL as well. */
        assert_int_equal(ivy_http_query_param(r, "a", v, 5), -ENOSPC);
        assert_int_equal(ivy_http_query_param(r, "a", v, 0), -ENOSPC);
        assert_int_equal(ivy_http_query_param(r, "a", v, 6), 5);
        assert_string_equal(v, "1+2 3");
        char longer[301];
        memset(longer, 'k', 300);
        longer[300] = 0;
        assert_int_equal(ivy_http_query_param(r, longer, v, sizeof v), 4); /* any length */
        assert_string_equal(v, "long");
        longer[299] = 0;
        assert_int_equal(ivy_http_query_param(r, longer, v, sizeof v), -ENOENT);
    }
    assert_int_equal(ivy_http_query_param(r, "missing", v, 0), -ENOENT);
    return ivy_http_respond(r, 200, "text/plain", out, n);
}

static void expect_text(int port, const char *req, const char *body)
{
    char want[1024];
    snprintf(want, sizeof want, TEXT_200_FMT "%s", strlen(body), body);
    exchange(port, req, want);
}

static void query(int port)
{
    char req[1024];
    snprintf(
        req, sizeof req,
        "GET /q?a=1%%2B2+3&b=x&a=second&empty=&flag&sp+ace=%%41&x%%2By=%%3D&=anon&&A&%0300d=long"
        " HTTP/1.1\r\nHost: a\r\n\r\n",
        0);
    for (char *p = strstr(req, "&000"); *++p == '0';)
        *p = 'k';
    expect_text(port, req,
                "a=[1+2 3]\nb=[x]\nempty=[]\nflag=[]\nsp ace=[A]\nx+y=[=]\nmissing=-2\nA=[]\n"
                "=[anon]\n");
    /* Without a query, and with an empty one, every name is absent. */
    const char *none = "a=-2\nb=-2\nempty=-2\nflag=-2\nsp ace=-2\nx+y=-2\nmissing=-2\nA=-2\n=-2\n";
    expect_text(port, "GET /q HTTP/1.1\r\nHost: a\r\n\r\n", none);
    expect_text(port, "GET /q? HTTP/1.1\r\nHost: a\r\n\r\n", none);
}

static void query_bad_escape(int port)
{
    struct client *c = client_new(port);
    PUT(c, "GET /q?a=%4x HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(c, "HTTP/1.1 400 Bad Request\r\nServer: ivy\r\nDate: <date>\r\n"
                       "Content-Type: text/plain\r\nContent-Length: 16\r\nConnection: close\r\n"
                       "\r\n400 Bad Request\n");
    expect_eof(c);
    client_free(c);
}

HTTP_TEST(query_parameters_are_decoded, query, .handler = params)
HTTP_TEST(a_bad_escape_in_the_query_is_refused_before_the_handler, query_bad_escape,
          .handler = describe)

static void unescape_decodes_and_checks(void **state)
{
    (void)state;
    char b[16];
    struct ivy_http_slice s = {"a%41%62+c%2b", 12};
    assert_int_equal(ivy_http_unescape(s, true, b, sizeof b), 6);
    assert_string_equal(b, "aAb c+");
    assert_int_equal(ivy_http_unescape(s, false, b, sizeof b), 6);
    assert_string_equal(b, "aAb+c+");
    assert_int_equal(ivy_http_unescape(s, true, b, 7), 6); /* exactly the room with the NUL */
    assert_int_equal(ivy_http_unescape(s, true, b, 6), -ENOSPC);
    assert_int_equal(ivy_http_unescape(s, true, b, 0), -ENOSPC);
    assert_int_equal(ivy_http_unescape((struct ivy_http_slice){"%00z", 4}, false, b, 4), 2);
    assert_memory_equal(b, "\0z", 3);
    assert_int_equal(ivy_http_unescape((struct ivy_http_slice){NULL, 0}, true, b, 1), 0);
    assert_string_equal(b, "");
    const char *bad[] = {"%", "%4", "a%4", "%G1", "%1G", "%%41", "x%"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(
            ivy_http_unescape((struct ivy_http_slice){bad[i], strlen(bad[i])}, true, b, sizeof b),
            -EBADMSG);
}

/* ---- the peer ------------------------------------------------------------------------------ */

static int peer(ivy_http_req *r, void *arg)
{
    (void)arg;
    struct sockaddr_storage a, b;
    socklen_t la = 0, lb = 0;
    assert_int_equal(ivy_http_peer(r, &a, &la), 0);
    assert_int_equal(ivy_http_peer(r, &b, &lb), 0); /* the second answer is the first's */
    assert_int_equal(la, sizeof(struct sockaddr_in));
    assert_int_equal(lb, la);
    assert_memory_equal(&a, &b, la);
    assert_int_equal(ivy_http_peer(r, &b, NULL), 0);
    const struct sockaddr_in *in = (const struct sockaddr_in *)&a;
    char out[64];
    int n = snprintf(out, sizeof out, "%d %s:%d", in->sin_family == AF_INET,
                     inet_ntoa(in->sin_addr), ntohs(in->sin_port));
    return ivy_http_respond(r, 200, "text/plain", out, (size_t)n);
}

static void peer_client(int port)
{
    struct client *c = client_new(port);
    struct sockaddr_in me;
    socklen_t len = sizeof me;
    assert_int_equal(getsockname(c->fd, (struct sockaddr *)&me, &len), 0);
    char body[64], want[256];
    int n = snprintf(body, sizeof body, "1 127.0.0.1:%d", ntohs(me.sin_port));
    snprintf(want, sizeof want, TEXT_200_FMT "%s", (size_t)n, body);
    for (int i = 0; i < 2; i++) { /* asked again on the same connection */
        PUT(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        expect_response(c, want);
    }
    client_free(c);
}

HTTP_TEST(peer_is_the_clients_address_and_port, peer_client, .handler = peer)

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_head_accessor_reports_the_request),
        cmocka_unit_test(methods_are_named_and_identified),
        cmocka_unit_test(query_parameters_are_decoded),
        cmocka_unit_test(a_bad_escape_in_the_query_is_refused_before_the_handler),
        cmocka_unit_test(unescape_decodes_and_checks),
        cmocka_unit_test(peer_is_the_clients_address_and_port),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
