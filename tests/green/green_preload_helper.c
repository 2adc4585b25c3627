/*
 * An unmodified program for the LD_PRELOAD test: it starts a hub and makes blocking libcurl
 * calls from green threads, linking ivy but not green libc. Only a preloaded libivy_green.so
 * makes those calls overlap. Prints the wall time of N concurrent /sleep?ms=200 calls.
 *   green_preload_helper PORT N
 */
#include <ivy/ivy.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int port, ok;

static size_t sink(char *p, size_t size, size_t n, void *arg)
{
    if (memmem(p, size * n, "slept 200 ms", 12)) ok++;
    return size * n;
}

static void *get(void *arg)
{
    CURL *h = curl_easy_init();
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/sleep?ms=200", port);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
    curl_easy_perform(h);
    curl_easy_cleanup(h);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) return 2;
    port = atoi(argv[1]);
    int n = atoi(argv[2]);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct ivy_hub_options o = {.stall_threshold = 10.0, .quiet = true}; /* stalls are expected */
    if (ivy_hub_init(&o) != 0) return 1;
    for (int i = 0; i < n; i++)
        ivy_spawn_n(get, NULL);
    uint64_t t0 = ivy_now_ns();
    if (ivy_run() != 0) return 1;
    printf("answers: %d wall: %.3f green: %s\n", ok, (double)(ivy_now_ns() - t0) / 1e9,
           ivy_green_enabled() ? "yes" : "no");
    curl_global_cleanup();
    return ok == n ? 0 : 1;
}
