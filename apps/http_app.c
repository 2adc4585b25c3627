/*
 * The http app (`ivy serve --app http`): a few handlers on the HTTP library's router, exactly
 * as a user's service would be written (include/ivy/http.h), run by ivy_http_serve.
 *   GET /          Hello, World!
 *   POST|PUT /echo the body back
 *   GET /sleep?ms=N a green sleep of N ms (at most 60 s), then "slept N ms"
 *   GET /users/{id} {"id":N} for a decimal id: a path parameter through the router, as JSON
 *   GET /stats     this worker's counters as JSON
 *   GET /spin?ms=N with test_routes: computes N ms without yielding (watchdog tests)
 * Every response names its worker in X-Ivy-Worker: index/pid.
 */
#include "http_app.h"

#include "ivy/cluster.h"
#include "ivy/http.h"
#include "ivy/hub.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    SLEEP_MAX_MS = 60000,
    SPIN_MAX_MS = 600000,
};

/* N of "ms=N" in the query, capped; 0 when absent or malformed. */
static uint64_t query_ms(ivy_http_req *r, uint64_t cap)
{
    char buf[24];
    if (ivy_http_query_param(r, "ms", buf, sizeof buf) <= 0) return buf[0] = 0, 0;
    uint64_t v = 0;
    for (const char *p = buf; *p >= '0' && *p <= '9'; p++)
        if ((v = v * 10 + (uint64_t)(*p - '0')) > cap) return cap;
    return v;
}

static int hello(ivy_http_req *r, void *arg)
{
    static const char body[] = "Hello, World!";
    return ivy_http_respond(r, 200, "text/plain", body, sizeof body - 1);
}

static int echo(ivy_http_req *r, void *arg)
{
    const char *body;
    ssize_t n = ivy_http_body(r, &body);
    if (n < 0) return (int)n;
    return ivy_http_respond(r, 200, "application/octet-stream", body, (size_t)n);
}

static int sleep_route(ivy_http_req *r, void *arg)
{
    uint64_t ms = query_ms(r, SLEEP_MAX_MS);
    /* Earlier answers of the batch leave first: the client should not wait for them. */
    int rc = ivy_http_flush(r);
    if (rc < 0) return rc;
    ivy_sleep((double)ms / 1000.0);
    char msg[64];
    int n = snprintf(msg, sizeof msg, "slept %llu ms\n", (unsigned long long)ms);
    return ivy_http_respond(r, 200, "text/plain", msg, (size_t)n);
}

static int spin(ivy_http_req *r, void *arg)
{
    uint64_t ms = query_ms(r, SPIN_MAX_MS);
    /* Computes without yielding: the hub (and the worker's heartbeat) stalls meanwhile. */
    uint64_t end = ivy_now_ns() + ms * 1000000u;
    while (ivy_now_ns() < end) {
    }
    char msg[64];
    int n = snprintf(msg, sizeof msg, "spun %llu ms\n", (unsigned long long)ms);
    return ivy_http_respond(r, 200, "text/plain", msg, (size_t)n);
}

static int user(ivy_http_req *r, void *arg)
{
    struct ivy_http_slice id = ivy_http_param(r, "id");
    uint64_t v = 0;
    if (id.len > 18) return ivy_http_error(r, 404);
    for (size_t i = 0; i < id.len; i++) {
        if (id.p[i] < '0' || id.p[i] > '9') return ivy_http_error(r, 404);
        v = v * 10 + (uint64_t)(id.p[i] - '0');
    }
    char body[40];
    int n = snprintf(body, sizeof body, "{\"id\":%llu}", (unsigned long long)v);
    return ivy_http_respond(r, 200, "application/json", body, (size_t)n);
}

static int stats(ivy_http_req *r, void *arg)
{
    struct ivy_hub_stats hs;
    struct ivy_http_stats st;
    ivy_hub_stats(&hs);
    ivy_http_stats(&st);
    char body[512];
    int n =
        snprintf(body, sizeof body,
                 "{\"pid\":%d,\"worker\":%d,\"requests\":%llu,\"conns_open\":%llu,"
                 "\"conns_total\":%llu,\"bytes_in\":%llu,\"bytes_out\":%llu,\"errors\":%llu,"
                 "\"buffers_held\":%llu,\"threads_alive\":%llu,\"loop_iterations\":%llu,"
                 "\"max_loop_lag_ns\":%llu,\"draining\":%s}\n",
                 (int)getpid(), ivy_worker_index(), (unsigned long long)st.requests,
                 (unsigned long long)st.conns_open, (unsigned long long)st.conns_total,
                 (unsigned long long)st.bytes_in, (unsigned long long)st.bytes_out,
                 (unsigned long long)st.errors, (unsigned long long)st.buffers_held,
                 (unsigned long long)hs.threads_alive, (unsigned long long)hs.iterations,
                 (unsigned long long)hs.max_loop_lag_ns, ivy_worker_draining() ? "true" : "false");
    return ivy_http_respond(r, 200, "application/json", body, (size_t)n);
}

void ivy_http_app(int listen_fd, void *arg)
{
    const struct ivy_http_app_options *o = arg;
    ivy_http_router *rt = ivy_http_router_new();
    if (!rt) {
        fprintf(stderr, "ivy: http: %s\n", strerror(errno));
        return;
    }
    ivy_http_route(rt, "GET /{$}", hello, NULL);
    ivy_http_route(rt, "POST /echo", echo, NULL);
    ivy_http_route(rt, "PUT /echo", echo, NULL);
    ivy_http_route(rt, "GET /sleep", sleep_route, NULL);
    ivy_http_route(rt, "GET /stats", stats, NULL);
    ivy_http_route(rt, "GET /users/{id}", user, NULL);
    if (o && o->test_routes) ivy_http_route(rt, "GET /spin", spin, NULL);
    char worker[64];
    snprintf(worker, sizeof worker, "X-Ivy-Worker: %d/%d\r\n", ivy_worker_index(), (int)getpid());
    struct ivy_http_options ho = {
        .handler = ivy_http_router_handler,
        .arg = rt,
        .headers = worker,
        .tls = ivy_worker_tls(), /* ivy serve --tls-cert */
    };
    if (o) {
        ho.keepalive_timeout = o->keepalive_timeout;
        ho.request_timeout = o->request_timeout;
        ho.send_timeout = o->send_timeout;
    }
    int rc = ivy_http_serve(listen_fd, &ho);
    if (rc < 0) fprintf(stderr, "ivy: http: accept: %s\n", strerror(-rc));
    ivy_http_router_free(rt);
}
