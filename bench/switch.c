/*
 * The switch-cost claim of DESIGN.md §1: one-way switch between two greenlets ping-ponging,
 * against, in the same run, the two things a user would pick instead:
 * - Boost.Context's bare jump_fcontext ping-pong (Debian's libboost_context, C-callable): the
 *   fastest coroutine switch in common use. It saves MXCSR and the x87 control word as ivy's
 *   default does, and keeps no state at all beyond the stack pointer. The bench prints n/a
 *   when the library was absent at configure time.
 * - glibc swapcontext, which makes a sigprocmask syscall on every switch.
 * Each figure is the median of RUNS runs of millions of switches, the peers interleaved round
 * by round, timed in the thread's CPU time so that other load on a shared machine inflates
 * them less.
 *
 *   switch_ns: X ns                 (switch_shared_fpenv_ns under IVY_SHARED_FPENV)
 *   boost_context_switch_ns: B ns
 *   switch_vs_boost_context: X/B x  (below 1: ivy is faster)
 *   swapcontext_switch_ns: Y ns
 *   switch_speedup: Y/X x
 */
#include <ivy/ivy.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <ucontext.h>

#include "bench.h"

enum { RUNS = 9, ROUNDS = 5000000, UC_ROUNDS = 500000, PEER_STACK = 64 * 1024 };

#if defined(IVY_SHARED_FPENV)
#define SWITCH_NAME "switch_shared_fpenv"
#else
#define SWITCH_NAME "switch"
#endif

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

/* ---- Boost.Context: the same ping-pong with jump_fcontext ------------------------------ */

#if defined(IVY_BENCH_BOOST_CONTEXT)
/* Boost.Context's C ABI (boost/context/detail/fcontext.hpp), declared here so that the bench
   needs the library only, not its C++ headers. noplt: called through the GOT directly, as a
   program linking it statically or with -fno-plt would, so the peer pays no PLT stub. */
typedef void *fcontext_t;
typedef struct {
    fcontext_t fctx;
    void *data;
} transfer_t;
extern transfer_t jump_fcontext(fcontext_t const to, void *vp) __attribute__((noplt));
extern fcontext_t make_fcontext(void *sp, size_t size, void (*fn)(transfer_t))
    __attribute__((noplt));

static char boost_stacks[2][PEER_STACK] __attribute__((aligned(64)));
static double boost_ns;

static void boost_pong(transfer_t t)
{
    for (;;)
        t = jump_fcontext(t.fctx, NULL);
}

static void boost_ping(transfer_t t)
{
    fcontext_t back = t.fctx;
    long rounds = (long)(intptr_t)t.data;
    fcontext_t peer = make_fcontext(boost_stacks[1] + PEER_STACK, PEER_STACK, boost_pong);
    double t0 = now_ns();
    for (long i = 0; i < rounds; i++)
        peer = jump_fcontext(peer, NULL).fctx;
    boost_ns = (now_ns() - t0) / (2.0 * (double)rounds);
    jump_fcontext(back, NULL); /* never resumed: the next run makes fresh contexts */
    abort();
}

static double boost_switch_ns(long rounds)
{
    fcontext_t c = make_fcontext(boost_stacks[0] + PEER_STACK, PEER_STACK, boost_ping);
    jump_fcontext(c, (void *)(intptr_t)rounds);
    return boost_ns;
}
#endif

/* ---- glibc: the same ping-pong with swapcontext ---------------------------------------- */

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
    static char ping_stack[PEER_STACK], pong_stack[PEER_STACK];
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
    ivy_switch_ns(ROUNDS / 10); /* warm up: stacks, caches, branch predictors */
    swapcontext_switch_ns(UC_ROUNDS / 10);
#if defined(IVY_BENCH_BOOST_CONTEXT)
    double bc[RUNS];
    boost_switch_ns(ROUNDS / 10);
#endif
    for (int r = 0; r < RUNS; r++) {
        ivy[r] = ivy_switch_ns(ROUNDS);
#if defined(IVY_BENCH_BOOST_CONTEXT)
        bc[r] = boost_switch_ns(ROUNDS);
#endif
        uc[r] = swapcontext_switch_ns(UC_ROUNDS);
    }
    double s = median(ivy, RUNS), u = median(uc, RUNS);
    printf(SWITCH_NAME "_ns: %.2f ns\n", s);
#if defined(IVY_BENCH_BOOST_CONTEXT)
    double b = median(bc, RUNS);
    printf("boost_context_switch_ns: %.2f ns\n", b);
    printf(SWITCH_NAME "_vs_boost_context: %.2f x\n", s / b);
#else
    printf("boost_context_switch_ns: n/a (libboost_context was not found at configure time)\n");
    printf(SWITCH_NAME "_vs_boost_context: n/a\n");
#endif
    printf("swapcontext_switch_ns: %.2f ns\n", u);
    printf(SWITCH_NAME "_speedup: %.1f x\n", u / s);
    return 0;
}
