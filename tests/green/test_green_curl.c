/*
 * Green libc proof: libcurl's blocking easy interface, unmodified, against `ivy serve`'s
 * /sleep?ms=200, from 100 green threads (link-time form: this program links the interposers).
 */
#include "proof.h"
#include "servers.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

static struct server srv;

struct conn {
    CURL *h;
    char body[256];
    size_t len;
};

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    struct conn *c = arg;
    size_t len = size * n;
    if (c->len + len < sizeof c->body) {
        memcpy(c->body + c->len, p, len);
        c->len += len;
        c->body[c->len] = 0;
    }
    return len;
}

/* One GET on the handle's (kept-alive) connection: 0 when it answered 200 with want. */
static int get(struct conn *c, const char *path, const char *want)
{
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", srv.port, path);
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    c->len = 0;
    c->body[0] = 0;
    if (curl_easy_perform(c->h) != CURLE_OK) return -1;
    long status = 0;
    curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
    return status == 200 && strstr(c->body, want) ? 0 : -1;
}

/* Connected first: a quick GET / opens the keep-alive connection the timed call reuses. */
static void *curl_connect(int i)
{
    struct conn *c = calloc(1, sizeof *c);
    c->h = curl_easy_init();
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c->h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->h, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
    if (get(c, "/", "") != 0) {
        curl_easy_cleanup(c->h);
        free(c);
        return NULL;
    }
    return c;
}

static int curl_call(void *arg, int i)
{
    struct conn *c = arg;
    long before = 0, after = 0;
    curl_easy_getinfo(c->h, CURLINFO_NUM_CONNECTS, &before);
    int rc = get(c, "/sleep?ms=200", "slept 200 ms");
    curl_easy_getinfo(c->h, CURLINFO_NUM_CONNECTS, &after);
    return rc == 0 && after == 0 ? 0 : -1; /* answered, on the connection made first */
}

static void curl_disconnect(void *arg)
{
    struct conn *c = arg;
    curl_easy_cleanup(c->h);
    free(c);
}

static const struct proof curl_proof = {curl_connect, curl_call, curl_disconnect};

static void hundred_green_threads_overlap_their_curl_calls(void **state)
{
    run_proof(&curl_proof);
}

static void the_same_calls_work_outside_green_threads(void **state)
{
    uint64_t t0 = ivy_now_ns();
    run_outside(&curl_proof, 3);
    assert_true(ivy_now_ns() - t0 >= 3 * 195000000ull); /* libc's: one after the other */
}

static int start(void **state)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ivy_serve_start(&srv);
    return 0;
}

static int stop(void **state)
{
    server_stop(&srv, SIGTERM);
    curl_global_cleanup();
    return 0;
}

int main(void)
{
    need_program(ivy_binary(), "(the build's ivy command)");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hundred_green_threads_overlap_their_curl_calls),
        cmocka_unit_test(the_same_calls_work_outside_green_threads),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
