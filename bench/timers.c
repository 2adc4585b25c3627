/*
 * The timer heap (runtime/timer.c) under a million pending timers, through its internal API,
 * each figure the median of RUNS runs:
 *
 *   timer_insert_cancel_ns: with PENDING timers armed at random deadlines, arm one more at a
 *     random deadline and cancel it (a per-call timeout that did not expire), per pair.
 *   timer_add_ns: arming the PENDING timers at random deadlines into an empty heap, per timer.
 *   timer_fire_ns: firing all PENDING timers in deadline order, per timer.
 *
 * One heap serves every run, as the hub's does: a first run, not counted, grows its array, so
 * the figures are the heap's own work and not the page faults of fresh memory.
 */
#include "hub_impl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

enum { RUNS = 5, PENDING = 1000000, PAIRS = 4000000, SPARE = 4096 };

static const uint64_t SPAN_NS = 60ull * 1000000000u; /* deadlines within a minute */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static unsigned fired, out_of_order;
static uint64_t last_fired;
static void on_fire(struct ivy_timer *tm)
{
    if (tm->deadline < last_fired) out_of_order++;
    last_fired = tm->deadline;
    fired++;
}

/* Timers live in a shuffled array, as threads' timers live scattered over their stacks. */
static struct ivy_timer *timers;
static struct ivy_timer **order;
static uint64_t *deadlines;

static void fill(uint64_t base)
{
    for (uint32_t i = 0; i < PENDING; i++)
        deadlines[i] = base + next_random() % SPAN_NS;
    for (uint32_t i = 0; i < PENDING; i++) {
        timers[i] = (struct ivy_timer){.index = IVY_TIMER_IDLE, .fire = on_fire};
        order[i] = &timers[i];
    }
    for (uint32_t i = PENDING - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(next_random() % (i + 1));
        struct ivy_timer *t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

int main(void)
{
    timers = malloc(PENDING * sizeof *timers);
    order = malloc(PENDING * sizeof *order);
    deadlines = malloc(PENDING * sizeof *deadlines);
    struct ivy_timer *spare = calloc(SPARE, sizeof *spare);
    uint64_t *pair_deadlines = malloc(PAIRS * sizeof *pair_deadlines);
    if (!timers || !order || !deadlines || !spare || !pair_deadlines) return 1;

    double add[RUNS + 1], ic[RUNS + 1], fire[RUNS + 1];
    struct ivy_timer_heap h = {0};
    for (int r = 0; r <= RUNS; r++) { /* run 0 warms up */
        uint64_t base = ivy_now_ns();
        fill(base);

        uint64_t t0 = ivy_now_ns();
        for (uint32_t i = 0; i < PENDING; i++) {
            order[i]->deadline = deadlines[i];
            if (ivy__timer_add(&h, order[i]) < 0) return 1;
        }
        add[r] = (double)(ivy_now_ns() - t0) / PENDING;

        for (uint32_t i = 0; i < PAIRS; i++)
            pair_deadlines[i] = base + next_random() % SPAN_NS;
        for (uint32_t i = 0; i < SPARE; i++)
            spare[i].index = IVY_TIMER_IDLE;
        t0 = ivy_now_ns();
        for (uint32_t i = 0; i < PAIRS; i++) {
            struct ivy_timer *tm = &spare[i % SPARE];
            tm->deadline = pair_deadlines[i];
            if (ivy__timer_add(&h, tm) < 0) return 1;
            ivy__timer_cancel(&h, tm);
        }
        ic[r] = (double)(ivy_now_ns() - t0) / PAIRS;
        if (h.n != PENDING) {
            fprintf(stderr, "heap holds %u timers, expected %u\n", h.n, (unsigned)PENDING);
            return 1;
        }

        fired = out_of_order = 0;
        last_fired = 0;
        t0 = ivy_now_ns();
        ivy__timer_fire_due(&h, UINT64_MAX);
        fire[r] = (double)(ivy_now_ns() - t0) / PENDING;
        if (fired != PENDING || h.n != 0 || out_of_order) {
            fprintf(stderr, "fired %u of %u timers, %u out of order\n", fired, (unsigned)PENDING,
                    out_of_order);
            return 1;
        }
    }
    ivy__timer_heap_free(&h);
    printf("timer_insert_cancel_ns: %.1f ns\n", median(ic + 1, RUNS));
    printf("timer_add_ns: %.1f ns\n", median(add + 1, RUNS));
    printf("timer_fire_ns: %.1f ns\n", median(fire + 1, RUNS));
    printf("pending_timers: %u timers\n", (unsigned)PENDING);
    return 0;
}
