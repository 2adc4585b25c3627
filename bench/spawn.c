/*
 * Green-thread scheduling costs through the hub (DESIGN.md §2), each the median of RUNS runs:
 *
 *   spawn_join_ns: a green thread spawns an empty green thread and joins it, in a loop: one
 *     spawn (pooled stack, greenlet set-up), its run and death, the joiner's wake-up and the
 *     free, all through the hub's run queue.
 *   spawn_n_ns: the main greenlet spawns a batch of detached empty threads, then ivy_run runs
 *     them all: the cheapest way to start threads, per thread.
 *   sleep0_yield_ns: THREADS threads each call ivy_sleep(0) in a loop, so every yield goes
 *     round-robin through the whole run queue; per yield.
 */
#include <ivy/ivy.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

enum {
    RUNS = 5,
    SPAWN_JOINS = 1000000,
    SPAWN_N_BATCH = 1000, /* within the stack pool's warm stacks */
    SPAWN_N_BATCHES = 1000,
    THREADS = 1000,
    YIELDS = 1000, /* per thread */
};

static void run_or_die(void)
{
    int rc = ivy_run();
    if (rc != 0) {
        fprintf(stderr, "ivy_run: %d\n", rc);
        exit(1);
    }
}

static void *empty(void *arg)
{
    return arg;
}

/* ---- spawn + join, from a green thread -------------------------------------------------- */

static double spawn_join_result;

static void *spawn_join_loop(void *arg)
{
    long n = (long)(intptr_t)arg;
    uint64_t t0 = ivy_now_ns();
    for (long i = 0; i < n; i++) {
        ivy_thread *t = ivy_spawn(empty, NULL);
        if (!t || ivy_join(t, NULL) != 0) {
            perror("spawn/join");
            exit(1);
        }
    }
    spawn_join_result = (double)(ivy_now_ns() - t0) / (double)n;
    return NULL;
}

static double spawn_join_ns(long n)
{
    if (ivy_spawn_n(spawn_join_loop, (void *)(intptr_t)n) != 0) exit(1);
    run_or_die();
    return spawn_join_result;
}

/* ---- spawn_n batches, run by the hub ---------------------------------------------------- */

static double spawn_n_ns(void)
{
    uint64_t total = 0;
    for (int b = 0; b < SPAWN_N_BATCHES; b++) {
        uint64_t t0 = ivy_now_ns();
        for (int i = 0; i < SPAWN_N_BATCH; i++) {
            if (ivy_spawn_n(empty, NULL) != 0) {
                perror("ivy_spawn_n");
                exit(1);
            }
        }
        run_or_die();
        total += ivy_now_ns() - t0;
    }
    return (double)total / ((double)SPAWN_N_BATCH * SPAWN_N_BATCHES);
}

/* ---- ivy_sleep(0) round-robin --------------------------------------------------------------- */

static uint64_t yield_t0, yield_t1;
static long yields_timed;

static void *yielder(void *arg)
{
    bool first = arg != NULL;
    for (int i = 0; i < YIELDS; i++) {
        /* The clock starts once every thread has run: at the first thread's second slice. */
        if (first && i == 1) yield_t0 = ivy_now_ns();
        if (yield_t0) yields_timed++;
        if (ivy_sleep(0) != 0) exit(1);
    }
    yield_t1 = ivy_now_ns();
    return NULL;
}

static double sleep0_yield_ns(void)
{
    yield_t0 = 0;
    yields_timed = 0;
    for (int i = 0; i < THREADS; i++)
        if (ivy_spawn_n(yielder, i == 0 ? (void *)1 : NULL) != 0) exit(1);
    run_or_die();
    return (double)(yield_t1 - yield_t0) / (double)yields_timed;
}

int main(int argc, char **argv)
{
    /* An argument names the one figure to measure, for profiling: spawn_join, spawn_n, sleep0. */
    const char *only = argc > 1 ? argv[1] : NULL;
    bool sj_on = !only || !strcmp(only, "spawn_join"), sn_on = !only || !strcmp(only, "spawn_n"),
         y_on = !only || !strcmp(only, "sleep0");
    double sj[RUNS], sn[RUNS], y[RUNS];
    spawn_join_ns(SPAWN_JOINS / 10); /* warm up: stacks, caches, branch predictors */
    for (int r = 0; r < RUNS; r++) {
        if (sj_on) sj[r] = spawn_join_ns(SPAWN_JOINS);
        if (sn_on) sn[r] = spawn_n_ns();
        if (y_on) y[r] = sleep0_yield_ns();
    }
    if (sj_on) printf("spawn_join_ns: %.1f ns\n", median(sj, RUNS));
    if (sn_on) printf("spawn_n_ns: %.1f ns\n", median(sn, RUNS));
    if (y_on) printf("sleep0_yield_ns: %.1f ns\n", median(y, RUNS));
    return 0;
}
