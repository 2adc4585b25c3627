/*
 * A small JSON API on the HTTP library, served by a cluster of pinned workers (ivy serve for
 * your own handlers):
 *
 *     GET  /users/{id}   {"id":42,"name":"user-42"}     (404 unless id is a number)
 *     POST /users        {"name":"ada"} -> 201 {"id":1,"name":"ada","worker":0}
 *     GET  /health       ok
 *
 * Run: json_api [PORT [WORKERS]] (8080, one worker per CPU), then
 *     curl 127.0.0.1:8080/users/42
 *     curl -d '{"name":"ada"}' 127.0.0.1:8080/users
 * SIGTERM drains and exits 0; SIGHUP replaces the workers one at a time.
 */
#include <ivy/ivy.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t next_id; /* per worker: each is its own process */

static int get_user(ivy_http_req *r, void *arg)
{
    struct ivy_http_slice id = ivy_http_param(r, "id");
    char *end, digits[24];
    if (id.len == 0 || id.len >= sizeof digits) return ivy_http_error(r, 404);
    memcpy(digits, id.p, id.len);
    digits[id.len] = 0;
    unsigned long long v = strtoull(digits, &end, 10);
    if (*end || digits[0] == '-') return ivy_http_error(r, 404);
    char body[96];
    int n = snprintf(body, sizeof body, "{\"id\":%llu,\"name\":\"user-%llu\"}", v, v);
    return ivy_http_respond(r, 200, "application/json", body, (size_t)n);
}

/* The string value of "name" in a flat JSON object, without escapes: enough for an example. */
static int json_name(const char *body, size_t len, char *out, size_t cap)
{
    const char *p = body, *end = body + len;
    while (p + 6 <= end && memcmp(p, "\"name\"", 6))
        p++;
    if (p + 6 > end) return -1;
    for (p += 6; p < end && (*p == ' ' || *p == ':'); p++) {
    }
    if (p >= end || *p++ != '"') return -1;
    const char *q = memchr(p, '"', (size_t)(end - p));
    if (!q || memchr(p, '\\', (size_t)(q - p)) || (size_t)(q - p) >= cap) return -1;
    memcpy(out, p, (size_t)(q - p));
    out[q - p] = 0;
    return 0;
}

static int post_user(ivy_http_req *r, void *arg)
{
    const char *body;
    ssize_t len = ivy_http_body(r, &body); /* whole, up to the server's body limit */
    if (len < 0) return (int)len;          /* the server answers 413, 400 or 408 */
    char name[64], out[160];
    if (json_name(body, (size_t)len, name, sizeof name) < 0)
        return ivy_http_respond(r, 400, "application/json", "{\"error\":\"name\"}", 16);
    int n = snprintf(out, sizeof out, "{\"id\":%llu,\"name\":\"%s\",\"worker\":%d}",
                     (unsigned long long)++next_id, name, ivy_worker_index());
    ivy_http_add_header(r, "Location", "/users");
    return ivy_http_respond(r, 201, "application/json", out, (size_t)n);
}

static int health(ivy_http_req *r, void *arg)
{
    return ivy_http_respond(r, 200, "text/plain", "ok\n", 3);
}

int main(int argc, char **argv)
{
    ivy_http_router *rt = ivy_http_router_new();
    if (!rt || ivy_http_route(rt, "GET /users/{id}", get_user, NULL) < 0 ||
        ivy_http_route(rt, "POST /users", post_user, NULL) < 0 ||
        ivy_http_route(rt, "GET /health", health, NULL) < 0) {
        fprintf(stderr, "json_api: cannot set up the routes\n");
        return 1;
    }
    /* 0 everywhere means ivy's default: 75 s keep-alive, 60 s request and send timeouts. */
    struct ivy_http_options http = {.handler = ivy_http_router_handler, .arg = rt};
    struct ivy_cluster_options o = {
        .port = argc > 1 ? atoi(argv[1]) : 8080,
        .workers = argc > 2 ? atoi(argv[2]) : 0,
        .app_name = "json_api",
        .http = &http,
        .argv = argv,
    };
    int status = ivy_cluster_run(&o);
    ivy_http_router_free(rt);
    return status;
}
