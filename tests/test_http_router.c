/*
 * Tests for http/router.c: Go 1.22 ServeMux patterns (exact paths, {name}, {name...}, trailing
 * slashes, {$}), the most specific match whatever the order routes were added in, GET serving
 * HEAD, 404 and 405 with Allow, ivy_http_route's errors and ivy_http_param. Served through
 * ivy_http_serve; every answer compared byte for byte.
 */
#include "http_server_test.h"

#include <signal.h>

/* Answers the route's name and the parameters it matched, in a header (so HEAD shows it). */
static int named(ivy_http_req *r, void *arg)
{
    static const char *const names[] = {"id", "file", "a", "b", "rest", "", "nope"};
    char v[512];
    size_t n = (size_t)snprintf(v, sizeof v, "%s", (const char *)arg);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        struct ivy_http_slice p = ivy_http_param(r, names[i]);
        if (p.p) n += (size_t)snprintf(v + n, sizeof v - n, " %s=%.*s", names[i], SL(p));
    }
    assert_int_equal(ivy_http_add_header(r, "X-Route", v), 0);
    return ivy_http_respond(r, 200, NULL, NULL, 0);
}

static const char *const routes[][2] = {
    {"/{$}", "root"},
    {"GET /users", "users"},
    {"GET /users/", "users-tree"},
    {"GET /users/{id}", "user"},
    {"GET /users/me", "me"},
    {"POST /users/{id}", "user-post"},
    {"/users/{id}/files/{file...}", "files"},
    {"/static/{$}", "static-index"},
    {"/static/", "static-tree"},
    {"GET /a/{a}/{b}", "ab"},
    {"GET /a/x/{b}", "ax"},
    {"/a/{a}/y", "ay"},
    {"GET /h", "get"},
    {"HEAD /h", "head"},
    {"PUT /only", "put"},
    {"DELETE /only", "delete"},
    {"GET /m", "m"},
    {"POST /m", "m-post"},
    {"HEAD /m", "m-head"},
    {"/rest/{rest...}", "rest"},
    {"BREW /pot/{id}", "brew"},
    {"brew /pot/{id}", "brew-lower"},
};
enum { NROUTES = sizeof routes / sizeof *routes };

static ivy_http_router *router(bool reversed)
{
    ivy_http_router *rt = ivy_http_router_new();
    assert_non_null(rt);
    for (int i = 0; i < NROUTES; i++) {
        int k = reversed ? NROUTES - 1 - i : i;
        assert_int_equal(ivy_http_route(rt, routes[k][0], named, (void *)routes[k][1]), 0);
    }
    return rt;
}

static void expect_route(int port, const char *method, const char *path, const char *route)
{
    char req[256], want[512];
    snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: a\r\n\r\n", method, path);
    snprintf(want, sizeof want,
             "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\n"
             "Content-Length: 0\r\nX-Route: %s\r\n\r\n",
             route);
    exchange(port, req, want);
}

static void expect_404(int port, const char *method, const char *path)
{
    char req[256];
    snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: a\r\n\r\n", method, path);
    exchange(port, req,
             "HTTP/1.1 404 Not Found\r\nServer: ivy\r\nDate: <date>\r\n"
             "Content-Type: text/plain\r\nContent-Length: 14\r\n\r\n404 Not Found\n");
}

static void expect_405(int port, const char *method, const char *path, const char *allow)
{
    char req[256], want[512];
    snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: a\r\n\r\n", method, path);
    snprintf(
        want, sizeof want,
        "HTTP/1.1 405 Method Not Allowed\r\nServer: ivy\r\n"
        "Date: <date>\r\nContent-Type: text/plain\r\nContent-Length: 23\r\nAllow: %s\r\n\r\n%s",
        allow, strcmp(method, "HEAD") ? "405 Method Not Allowed\n" : "");
    exchange(port, req, want);
}

static void routed(int port)
{
    expect_route(port, "GET", "/", "root");
    expect_route(port, "OPTIONS", "/", "root");
    expect_404(port, "GET", "/nope");
    expect_404(port, "GET", "//");
    /* Exact paths, a trailing slash's subtree, a parameter, a literal over a parameter. */
    expect_route(port, "GET", "/users", "users");
    expect_route(port, "GET", "/users/", "users-tree");
    expect_route(port, "GET", "/users/42", "user id=42");
    expect_route(port, "GET", "/users/42?x=1", "user id=42");
    expect_route(port, "GET", "/users/a%2Fb", "user id=a%2Fb"); /* still encoded */
    expect_route(port, "GET", "/users/me", "me");
    /* An exact path whose routes' methods do not fit: the other routes still match it. */
    expect_route(port, "POST", "/users/me", "user-post id=me");
    expect_405(port, "PUT", "/users", "GET, HEAD");
    expect_route(port, "GET", "/users/42/", "users-tree"); /* {id} is one whole segment */
    expect_route(port, "GET", "/users/42/x/y", "users-tree");
    expect_route(port, "POST", "/users/42", "user-post id=42");
    expect_route(port, "HEAD", "/users/42", "user id=42"); /* GET serves HEAD */
    expect_405(port, "DELETE", "/users/42", "GET, HEAD, POST");
    expect_405(port, "DELETE", "/users/42/x", "GET, HEAD");
    /* {name...}: the rest of the path, possibly empty, but after the slash. */
    expect_route(port, "GET", "/users/42/files/a/b%20c.txt", "files id=42 file=a/b%20c.txt");
    expect_route(port, "PUT", "/users/42/files/", "files id=42 file=");
    expect_route(port, "GET", "/users/42/files", "users-tree");
    expect_route(port, "GET", "/rest/", "rest rest=");
    expect_route(port, "GET", "/rest/x/", "rest rest=x/");
    expect_404(port, "GET", "/rest");
    /* {$}: the slash alone, not the subtree. */
    expect_route(port, "GET", "/static/", "static-index");
    expect_route(port, "GET", "/static/x/y", "static-tree");
    expect_404(port, "GET", "/static");
    /* Per segment, in order: a literal over {name}. */
    expect_route(port, "GET", "/a/x/y", "ax b=y");
    expect_route(port, "GET", "/a/q/y", "ay a=q");
    expect_route(port, "GET", "/a/q/r", "ab a=q b=r");
    expect_route(port, "POST", "/a/x/y", "ay a=x");
    expect_405(port, "POST", "/a/q/r", "GET, HEAD");
    /* A method's own route over GET's for HEAD. */
    expect_route(port, "GET", "/h", "get");
    expect_route(port, "HEAD", "/h", "head");
    expect_405(port, "POST", "/h", "GET, HEAD");
    expect_405(port, "GET", "/only", "DELETE, PUT");
    expect_405(port, "HEAD", "/only", "DELETE, PUT");
    expect_405(port, "DELETE", "/m", "GET, HEAD, POST"); /* HEAD once */
    expect_route(port, "HEAD", "/m", "m-head");
    /* Methods the parser has no name for, case-sensitive as all methods are. */
    expect_route(port, "BREW", "/pot/1", "brew id=1");
    expect_route(port, "brew", "/pot/1", "brew-lower id=1");
    expect_405(port, "Brew", "/pot/1", "BREW, brew");
}

static ivy_http_router *the_router;

static void routes_match_most_specific_first(void **state)
{
    (void)state;
    for (int reversed = 0; reversed < 2; reversed++) {
        the_router = router(reversed);
        serve_with(routed, (struct ivy_http_options){.handler = ivy_http_router_handler,
                                                     .arg = the_router});
        ivy_http_router_free(the_router);
    }
}

/* The same request through an empty router and a catch-all. */
static void empty(int port)
{
    expect_404(port, "GET", "/");
}

static void catch_all(int port)
{
    expect_route(port, "GET", "/", "any");
    expect_route(port, "BREW", "/pot/1", "any");
}

static void an_empty_router_is_404_and_a_slash_catches_all(void **state)
{
    (void)state;
    the_router = ivy_http_router_new();
    serve_with(empty,
               (struct ivy_http_options){.handler = ivy_http_router_handler, .arg = the_router});
    assert_int_equal(ivy_http_route(the_router, "/", named, "any"), 0);
    serve_with(catch_all,
               (struct ivy_http_options){.handler = ivy_http_router_handler, .arg = the_router});
    ivy_http_router_free(the_router);
    ivy_http_router_free(NULL);
}

/* Many exact routes (the table grows and its slots collide), each method of a path its own. */
enum { MANY = 300 };
static char many_names[MANY][16];

static void many(int port)
{
    char path[32];
    for (int i = 0; i < MANY; i++) {
        snprintf(path, sizeof path, "/r%d", i);
        expect_route(port, i % 3 ? "GET" : "POST", path, many_names[i]);
    }
    expect_route(port, "GET", "/r0", "param id=r0"); /* only POST /r0 is exact */
    expect_route(port, "GET", "/r300", "param id=r300");
    expect_route(port, "GET", "/r1/", "tree");
}

static void exact_paths_are_found_among_many(void **state)
{
    (void)state;
    the_router = ivy_http_router_new();
    assert_non_null(the_router);
    /* A catch-all and a parameter first: exact routes win whatever the order. */
    assert_int_equal(ivy_http_route(the_router, "/", named, "tree"), 0);
    assert_int_equal(ivy_http_route(the_router, "GET /{id}", named, "param"), 0);
    char pattern[32];
    for (int i = 0; i < MANY; i++) {
        snprintf(many_names[i], sizeof many_names[i], "r%d", i);
        snprintf(pattern, sizeof pattern, "%s /r%d", i % 3 ? "GET" : "POST", i);
        assert_int_equal(ivy_http_route(the_router, pattern, named, many_names[i]), 0);
    }
    serve_with(many,
               (struct ivy_http_options){.handler = ivy_http_router_handler, .arg = the_router});
    ivy_http_router_free(the_router);
}

/* ---- ivy_http_route's errors --------------------------------------------------------------- */

static void route_refuses_malformed_and_duplicate_patterns(void **state)
{
    (void)state;
    ivy_http_router *rt = ivy_http_router_new();
    assert_non_null(rt);
    assert_int_equal(ivy_http_route(NULL, "/", named, NULL), -EINVAL);
    assert_int_equal(ivy_http_route(rt, NULL, named, NULL), -EINVAL);
    assert_int_equal(ivy_http_route(rt, "/", NULL, NULL), -EINVAL);
    const char *bad[] = {
        "",          "x",        "GET",
        "GET/a",     " /a",      "GET  /a",
        "G T /a",    "/a//b",    "//",
        "/a/{x",     "/a/x}",    "/a/{x}y",
        "/a/y{x}",   "/{}",      "/{a-b}",
        "/{x...}/b", "/{$}/a",   "/a/{x}/{$}{$}",
        "/{x.}",     "/{ x}",    "host.example/a",
        "/{...}",    "/{a}/{a}", "/{a}/x/{a...}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (ivy_http_route(rt, bad[i], named, NULL) != -EINVAL)
            fail_msg("pattern \"%s\" was accepted", bad[i]);
    const char *good[] = {"/a/{x}", "GET /a",        "/a",   "POST /a", "/d/",
                          "/d/{$}", "/p/{x}/{y...}", "/{_9}"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        assert_int_equal(ivy_http_route(rt, good[i], named, NULL), 0);
    /* The same shape again, whatever its parameters are called. */
    const char *dup[] = {"/a/{y}", "GET /a", "/a", "/d/{rest...}", "/d/{$}", "/p/{a}/{b...}"};
    for (size_t i = 0; i < sizeof dup / sizeof *dup; i++)
        if (ivy_http_route(rt, dup[i], named, NULL) != -EEXIST)
            fail_msg("duplicate \"%s\" was accepted", dup[i]);
    ivy_http_router_free(rt);
}

/* ---- ivy_http_param without the router ----------------------------------------------------- */

static int plain(ivy_http_req *r, void *arg)
{
    (void)arg;
    assert_null(ivy_http_param(r, "id").p);
    assert_int_equal(ivy_http_param(r, "").len, 0);
    return ivy_http_respond(r, 200, NULL, NULL, 0);
}

static void plain_client(int port)
{
    exchange(port, "GET /users/42 HTTP/1.1\r\nHost: a\r\n\r\n",
             "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: <date>\r\nContent-Length: 0\r\n\r\n");
}

HTTP_TEST(params_are_absent_without_a_route, plain_client, .handler = plain)

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(routes_match_most_specific_first),
        cmocka_unit_test(an_empty_router_is_404_and_a_slash_catches_all),
        cmocka_unit_test(exact_paths_are_found_among_many),
        cmocka_unit_test(route_refuses_malformed_and_duplicate_patterns),
        cmocka_unit_test(params_are_absent_without_a_route),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
