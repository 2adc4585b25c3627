/*
 * The switch-cost claim of DESIGN.md §1: one-way switch between two greenlets ping-ponging,
 * against glibc swapcontext doing the same ping-pong in the same run (it makes a sigprocmask
 * syscall on every switch). Each figure is the median of RUNS runs of millions of switches,
 * timed in the thread's CPU time so that other load on a shared machine does not inflate it.
 *
 *   switch_ns: X ns
 *   swapcontext_switch_ns: Y ns
 *   switch_speedup: Z x
 */
#include <ivy/ivy.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <ucontext.h>

#include "bench.h"

enum { RUNS = 7, IVY_ROUNDS = 5000000, UC_ROUNDS = 500000, UC_STACK = 64 * 1024 };

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* ---- greenlets: a pings b, b pongs a; each round trip is two switches ---------------- */

static ivy_greenlet *ping_g, *pong_g;

static void *pong(void *arg)
{
    for (;;)
        if (ivy_switch(ping_g, NULL, NULL) < 0) return NULL; /* IVY_EXIT from the free */
}

static void *ping(void *arg)
{
    long rounds = (long)(intptr_t)arg;
    double t0 = now_ns();
    for (long i = 0; i < rounds; i++)
        ivy_switch(pong_g, NULL, NULL);
    double ns = (now_ns() - t0) / (2.0 * (double)rounds);
    return (void *)(uintptr_t)(ns * 1000.0); /* picoseconds: a value, not an error */
}

static double ivy_switch_ns(long rounds)
{
    ping_g = ivy_greenlet_new(ping, NULL, 0);
    pong_g = ivy_greenlet_new(pong, NULL, 0);
    if (!ping_g || !pong_g) {
        perror("ivy_greenlet_new");
        exit(1);
    }
    void *ps;
    if (ivy_switch(ping_g, (void *)(intptr_t)rounds, &ps) != 0) exit(1);
    ivy_greenlet_free(pong_g);
    ivy_greenlet_free(ping_g);
    return (double)(uintptr_t)ps / 1000.0;
}

/* ---- the peer: the same ping-pong with swapcontext ------------------------------------- */

static ucontext_t uc_main, uc_ping, uc_pong;
static long uc_rounds;
static double uc_ns;

static void uc_pong_fn(void)
{
    for (;;)
        swapcontext(&uc_pong, &uc_ping);
}

static void uc_ping_fn(void)
{
    double t0 = now_ns();
    for (long i = 0; i < uc_rounds; i++)
        swapcontext(&uc_ping, &uc_pong);
    uc_ns = (now_ns() - t0) / (2.0 * (double)uc_rounds);
}

static double swapcontext_switch_ns(long rounds)
{
    static char ping_stack[UC_STACK], pong_stack[UC_STACK];
    getcontext(&uc_ping);
    uc_ping.uc_stack = (stack_t){.ss_sp = ping_stack, .ss_size = sizeof ping_stack};
    uc_ping.uc_link = &uc_main;
    makecontext(&uc_ping, uc_ping_fn, 0);
    getcontext(&uc_pong);
    uc_pong.uc_stack = (stack_t){.ss_sp = pong_stack, .ss_size = sizeof pong_stack};
    uc_pong.uc_link = &uc_main;
    makecontext(&uc_pong, uc_pong_fn, 0);
    uc_rounds = rounds;
    swapcontext(&uc_main, &uc_ping); /* back here when uc_ping_fn returns, via uc_link */
    return uc_ns;
}

int main(void)
{
    double ivy[RUNS], uc[RUNS];
    ivy_switch_ns(IVY_ROUNDS / 10); /* warm up: stacks, caches, branch predictors */
    swapcontext_switch_ns(UC_ROUNDS / 10);
    for (int r = 0; r < RUNS; r++) {
        ivy[r] = ivy_switch_ns(IVY_ROUNDS);
        uc[r] = swapcontext_switch_ns(UC_ROUNDS);
    }
    double s = median(ivy, RUNS), u = median(uc, RUNS);
    printf("switch_ns: %.2f ns\n", s);
    printf("swapcontext_switch_ns: %.2f ns\n", u);
    printf("switch_speedup: %.1f x\n", u / s);
    return 0;
}
