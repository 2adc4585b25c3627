/*
 * An app module: a handler that `ivy serve` loads into every worker (gunicorn's module:app).
 *
 *     cc -shared -fPIC -o app_module.so app_module.c
 *     ivy serve --app ./app_module.so --listen 127.0.0.1:8080
 *     curl 127.0.0.1:8080/hello/ada        hello, ada (app_module v1, worker 0)
 *
 * It links nothing of ivy: its calls resolve to the ivy process that loads it. Rebuild it and
 * send the supervisor SIGHUP: each worker is replaced by one that loads the new file, with no
 * request lost. Define APP_VERSION to tell builds apart.
 */
#include <ivy/ivy.h>

#include <stdio.h>

#ifndef APP_VERSION
#define APP_VERSION "v1"
#endif

static ivy_http_router *routes; /* per worker: built in worker_init */

static int hello(ivy_http_req *r, void *arg)
{
    struct ivy_http_slice name = ivy_http_param(r, "name");
    char body[160];
    int n = snprintf(body, sizeof body, "hello, %.*s (app_module %s, worker %d)\n",
                     (int)(name.len < 64 ? name.len : 64), name.p, APP_VERSION, ivy_worker_index());
    return ivy_http_respond(r, 200, "text/plain", body, (size_t)n);
}

static int version(ivy_http_req *r, void *arg)
{
    return ivy_http_respond(r, 200, "text/plain", APP_VERSION "\n", sizeof APP_VERSION);
}

static int serve(ivy_http_req *r, void *arg)
{
    return ivy_http_router_handler(r, routes);
}

static int init(void *arg)
{
    if (!(routes = ivy_http_router_new())) return -1;
    if (ivy_http_route(routes, "GET /hello/{name}", hello, NULL) < 0) return -1;
    return ivy_http_route(routes, "GET /version", version, NULL);
}

static void fini(void *arg)
{
    ivy_http_router_free(routes);
}

const struct ivy_module ivy_module = {
    .abi = IVY_MODULE_ABI,
    .http = serve,
    .worker_init = init,
    .worker_exit = fini,
};
