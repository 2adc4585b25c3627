/*
 * The green libc proofs' harness: N green threads each connect with an unmodified blocking
 * client library, then all at once make one call that takes 200 ms on the server's side, while
 * a ticker green thread ticks every 10 ms. Greened, the calls overlap: all N answers arrive in
 * little more than 200 ms, and the ticker never stops.
 */
#ifndef IVY_TEST_GREEN_PROOF_H
#define IVY_TEST_GREEN_PROOF_H

#include <ivy/ivy.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#define PROOF_N 100

struct proof {
    void *(*connect)(int i);     /* a connected client, NULL on failure */
    int (*call)(void *c, int i); /* the 200 ms call; 0 when its answer checked out */
    void (*disconnect)(void *c);
};

static struct {
    const struct proof *p;
    ivy_event *go;
    int connected, answered, ticks;
    bool stop;
} proof_state;

static void *proof_ticker(void *arg)
{
    while (!proof_state.stop && ivy_sleep(0.01) == 0)
        proof_state.ticks++;
    return NULL;
}

static void *proof_worker(void *arg)
{
    int i = (int)(intptr_t)arg;
    void *c = proof_state.p->connect(i);
    assert_non_null(c);
    proof_state.connected++;
    assert_int_equal(ivy_event_wait(proof_state.go, 30.0), 0);
    int rc = proof_state.p->call(c, i);
    assert_int_equal(rc, 0);
    proof_state.answered++;
    proof_state.p->disconnect(c);
    return NULL;
}

static void *proof_driver(void *arg)
{
    ivy_thread *w[PROOF_N];
    for (int i = 0; i < PROOF_N; i++)
        assert_non_null(w[i] = ivy_spawn(proof_worker, (void *)(intptr_t)i));
    while (proof_state.connected < PROOF_N)
        ivy_sleep(0.001);
    int ticks0 = proof_state.ticks;
    uint64_t t0 = ivy_now_ns();
    ivy_event_set(proof_state.go);
    for (int i = 0; i < PROOF_N; i++)
        assert_int_equal(ivy_join(w[i], NULL), 0);
    double wall = (double)(ivy_now_ns() - t0) / 1e9;
    int ticks = proof_state.ticks - ticks0;
    proof_state.stop = true;
    printf("proof: %d calls of 200 ms in %.3f s, ticker ticked %d times\n", PROOF_N, wall, ticks);
    assert_int_equal(proof_state.answered, PROOF_N);
    assert_true(wall >= 0.19 && wall <= 0.5);
    assert_true(ticks >= 10); /* every 10 ms over >= 200 ms: the hub never stalled for long */
    return NULL;
}

/* Runs the proof with p on a fresh hub. */
static void run_proof(const struct proof *p)
{
    proof_state.p = p;
    proof_state.connected = proof_state.answered = proof_state.ticks = 0;
    proof_state.stop = false;
    assert_non_null(proof_state.go = ivy_event_new());
    ivy_thread *tk = ivy_spawn(proof_ticker, NULL);
    ivy_thread *d = ivy_spawn(proof_driver, NULL);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(ivy_join(d, NULL), 0);
    assert_int_equal(ivy_join(tk, NULL), 0);
    ivy_event_free(proof_state.go);
    assert_int_equal(ivy_offload_shutdown(), 0);
    assert_int_equal(ivy_hub_free(), 0);
}

/* The same calls on the main greenlet, outside any green thread: libc's, one after the other. */
static void run_outside(const struct proof *p, int n)
{
    for (int i = 0; i < n; i++) {
        void *c = p->connect(i);
        assert_non_null(c);
        assert_int_equal(p->call(c, i), 0);
        p->disconnect(c);
    }
}

#endif
