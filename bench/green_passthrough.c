/*
 * Green libc's pass-through claim (include/ivy/green.h): outside green threads an interposed
 * call costs at most 5 ns more than libc's own. This program links green libc (the link-time
 * form), so its calls go through the interposers; the peer is libc's function called directly
 * (its address from dlsym(RTLD_NEXT), as a PLT call would reach it), in the same run,
 * interleaved round by round. Thread CPU time; medians of RUNS rounds.
 *   - getaddrinfo(NULL, NULL): libc answers EAI_NONAME without a system call, so the
 *     difference is the interposer alone;
 *   - read(-1): a failing system call, the realistic case;
 * each with no hub on the thread, and on a hub's thread outside any green thread (the second
 * load of the check).
 *
 *   green_passthrough_<call>_<where>_ns: X ns (libc Y ns, overhead Z ns)
 */
#include <ivy/ivy.h>

#include <dlfcn.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

enum { RUNS = 15, GAI_CALLS = 2000000, READ_CALLS = 300000 };

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int (*libc_getaddrinfo)(const char *, const char *, const struct addrinfo *,
                               struct addrinfo **);
static ssize_t (*libc_read)(int, void *, size_t);
/* Through a volatile pointer, so the compiler calls it as often as asked, as for libc's. */
static int (*volatile green_getaddrinfo)(const char *, const char *, const struct addrinfo *,
                                         struct addrinfo **) = getaddrinfo;
static ssize_t (*volatile green_read)(int, void *, size_t) = read;

static double per_call_gai(int (*volatile *fp)(const char *, const char *, const struct addrinfo *,
                                               struct addrinfo **))
{
    struct addrinfo *res;
    double t0 = now_ns();
    for (int i = 0; i < GAI_CALLS; i++)
        (*fp)(NULL, NULL, NULL, &res);
    return (now_ns() - t0) / GAI_CALLS;
}

static double per_call_read(ssize_t (*volatile *fp)(int, void *, size_t))
{
    char c;
    double t0 = now_ns();
    for (int i = 0; i < READ_CALLS; i++)
        (*fp)(-1, &c, 1);
    return (now_ns() - t0) / READ_CALLS;
}

static void measure(const char *where)
{
    static int (*volatile gai_peer)(const char *, const char *, const struct addrinfo *,
                                    struct addrinfo **);
    static ssize_t (*volatile read_peer)(int, void *, size_t);
    gai_peer = libc_getaddrinfo;
    read_peer = libc_read;
    double g[RUNS], l[RUNS], d[RUNS];
    for (int r = 0; r < RUNS; r++) {
        l[r] = per_call_gai(&gai_peer);
        g[r] = per_call_gai(&green_getaddrinfo);
        d[r] = g[r] - l[r];
    }
    double gm = median(g, RUNS), lm = median(l, RUNS), dm = median(d, RUNS);
    printf("green_passthrough_getaddrinfo_%s_ns: %.2f ns (libc %.2f ns, overhead %.2f ns)\n", where,
           gm, lm, dm);
    for (int r = 0; r < RUNS; r++) {
        l[r] = per_call_read(&read_peer);
        g[r] = per_call_read(&green_read);
        d[r] = g[r] - l[r];
    }
    gm = median(g, RUNS), lm = median(l, RUNS), dm = median(d, RUNS);
    printf("green_passthrough_read_%s_ns: %.2f ns (libc %.2f ns, overhead %.2f ns)\n", where, gm,
           lm, dm);
}

int main(void)
{
    libc_getaddrinfo = dlsym(RTLD_NEXT, "getaddrinfo");
    libc_read = dlsym(RTLD_NEXT, "read");
    if (!libc_getaddrinfo || !libc_read) return 1;
    measure("no_hub");
    if (ivy_hub_init(NULL) != 0) return 1;
    measure("hub_thread");
    ivy_hub_free();
    return 0;
}
