/* Tests for runtime/hub.c, runtime/thread.c, runtime/timer.c, runtime/timeout.c: real ring. */
#include <ivy/ivy.h>

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

static char order[256];
static size_t norder;

static void note(char c)
{
    order[norder++] = c;
    order[norder] = 0;
}

static void *append_char(void *arg)
{
    note((char)(intptr_t)arg);
    return arg;
}

static void spawned_threads_run_in_fifo_order(void **state)
{
    norder = 0;
    ivy_thread *t[5];
    for (int i = 0; i < 5; i++)
        t[i] = ivy_spawn(append_char, (void *)(intptr_t)('a' + i));
    assert_int_equal(ivy_run(), 0);
    assert_string_equal(order, "abcde");
    for (int i = 0; i < 5; i++) {
        void *v;
        assert_int_equal(ivy_join(t[i], &v), 0);
        assert_int_equal((intptr_t)v, 'a' + i);
    }
}

static void *yield_three_times(void *arg)
{
    for (int i = 0; i < 3; i++) {
        note((char)(intptr_t)arg);
        assert_int_equal(ivy_sleep(0), 0);
    }
    return NULL;
}

static void sleep0_yields_to_every_ready_thread(void **state)
{
    norder = 0;
    ivy_spawn_n(yield_three_times, (void *)'x');
    ivy_spawn_n(yield_three_times, (void *)'y');
    ivy_spawn_n(yield_three_times, (void *)'z');
    assert_int_equal(ivy_run(), 0);
    assert_string_equal(order, "xyzxyzxyz");
}

static void *sleep_20ms(void *arg)
{
    uint64_t t0 = ivy_now_ns();
    assert_int_equal(ivy_sleep(0.020), 0);
    *(uint64_t *)arg = ivy_now_ns() - t0;
    return NULL;
}

static void *sleep_60ms_then_note(void *arg)
{
    assert_int_equal(ivy_sleep(0.060), 0);
    note('b');
    return NULL;
}

static void *sleep_20ms_then_note(void *arg)
{
    sleep_20ms(arg);
    note('a');
    return NULL;
}

/* Not before its time, and before a later deadline: order, not a wall-clock bound that a
   loaded machine could exceed. */
static void sleep_20ms_wakes_after_20ms_and_before_a_60ms_sleeper(void **state)
{
    uint64_t took = 0;
    norder = 0;
    ivy_spawn_n(sleep_60ms_then_note, NULL);
    ivy_spawn_n(sleep_20ms_then_note, &took);
    assert_int_equal(ivy_run(), 0);
    assert_true(took >= 20000000);
    assert_string_equal(order, "ab");
}

static int woke;
static uint64_t last_deadline_seen;
static int out_of_order;

static void *sleep_ms(void *arg)
{
    uintptr_t ms = (uintptr_t)arg;
    uint64_t deadline = ivy_now_ns() + ms * 1000000;
    assert_int_equal(ivy_sleep((double)ms / 1000.0), 0);
    assert_true(ivy_now_ns() >= deadline);
    /* Wake order follows deadlines. The OS may preempt us between our clock read and sleep's
       own on a loaded machine, inverting two close deadlines: hence 10 ms of slack. */
    if (deadline + 10000000 < last_deadline_seen) out_of_order++;
    if (deadline > last_deadline_seen) last_deadline_seen = deadline;
    woke++;
    return NULL;
}

static void ten_thousand_sleepers_all_wake_in_deadline_order(void **state)
{
    woke = 0;
    last_deadline_seen = 0;
    out_of_order = 0;
    for (uintptr_t i = 0; i < 10000; i++)
        assert_int_equal(ivy_spawn_n(sleep_ms, (void *)((i * 7919) % 50 * 2 + 1)), 0);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(woke, 10000);
    assert_int_equal(out_of_order, 0);
    struct ivy_hub_stats st;
    ivy_hub_stats(&st);
    assert_int_equal(st.threads_alive, 0);
}

static void *sleep_long_report(void *arg)
{
    int rc = ivy_sleep(10);
    *(int *)arg = rc;
    return ivy_err_ptr(rc);
}

static void *kill_after_10ms(void *arg)
{
    ivy_sleep(0.010);
    assert_int_equal(ivy_kill(arg), 0);
    return NULL;
}

static void kill_wakes_sleeper_with_ecanceled(void **state)
{
    int rc = 1;
    uint64_t t0 = ivy_now_ns();
    ivy_thread *t = ivy_spawn(sleep_long_report, &rc);
    ivy_spawn_n(kill_after_10ms, t);
    assert_int_equal(ivy_run(), 0);
    assert_true(ivy_now_ns() - t0 < 1000000000ull);
    assert_int_equal(rc, -ECANCELED);
    void *v = (void *)1;
    assert_int_equal(ivy_join(t, &v), -ECANCELED);
    assert_null(v);
}

/* Seconds too large for a uint64_t of nanoseconds used to wrap into a deadline in the past. */
static void *sleep_huge_report(void *arg)
{
    uint64_t t0 = ivy_now_ns();
    int rc = ivy_sleep(*(double *)arg);
    *(double *)arg = (double)(ivy_now_ns() - t0);
    return ivy_err_ptr(rc);
}

static void huge_sleeps_sleep_until_killed(void **state)
{
    static const double huge[] = {1e11, 1e20, 1e300, INFINITY};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        double v = huge[i];
        ivy_thread *t = ivy_spawn(sleep_huge_report, &v);
        ivy_spawn_n(kill_after_10ms, t);
        assert_int_equal(ivy_run(), 0);
        assert_int_equal(ivy_join(t, NULL), -ECANCELED);
        assert_true(v >= 10e6); /* it slept until the kill, not returned at once */
    }
}

static void *huge_scope_does_not_expire(void *arg)
{
    struct ivy_timeout to;
    assert_int_equal(ivy_timeout_begin(&to, 1e20), 0);
    assert_int_equal(ivy_sleep(0.005), 0);
    assert_int_equal(ivy_timeout_end(&to), 0);
    assert_int_equal(ivy_timeout_begin(&to, NAN), -EINVAL);
    assert_int_equal(ivy_timeout_begin(&to, -1), -EINVAL);
    assert_int_equal(ivy_sleep(NAN), -EINVAL);
    return NULL;
}

static void huge_timeouts_never_expire_and_nan_is_refused(void **state)
{
    ivy_spawn_n(huge_scope_does_not_expire, NULL);
    assert_int_equal(ivy_run(), 0);
    /* A thread due in 1e20 s is not started by a run that has nothing else to do... */
    norder = 0;
    ivy_thread *t = ivy_spawn_after(1e20, append_char, (void *)'z');
    assert_non_null(t);
    ivy_spawn_n(kill_after_10ms, t);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(norder, 0); /* ...and was killed before it ran */
    ivy_join(t, NULL);
    errno = 0;
    assert_null(ivy_spawn_after(NAN, append_char, NULL));
    assert_int_equal(errno, EINVAL);
}

static void kill_before_start_never_runs(void **state)
{
    norder = 0;
    ivy_thread *t = ivy_spawn(append_char, (void *)'k');
    ivy_thread *later = ivy_spawn_after(0.01, append_char, (void *)'l');
    assert_int_equal(ivy_kill(t), 0);
    assert_int_equal(ivy_kill(later), 0);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(norder, 0);
    void *v;
    assert_int_equal(ivy_join(t, &v), 0);
    assert_ptr_equal(v, ivy_err_ptr(IVY_EXIT));
    assert_int_equal(ivy_join(later, &v), 0);
    assert_ptr_equal(v, ivy_err_ptr(IVY_EXIT));
}

static void *kill_self(void *arg)
{
    *(int *)arg = ivy_kill(ivy_self());
    return NULL;
}

static void *join_self(void *arg)
{
    *(int *)arg = ivy_join(ivy_self(), NULL);
    return NULL;
}

static void misuse_is_refused_with_exact_errors(void **state)
{
    assert_int_equal(ivy_sleep(0.001), -EPERM); /* not in a green thread */
    assert_null(ivy_self());
    assert_null(ivy_spawn(NULL, NULL));
    assert_int_equal(errno, EINVAL);
    assert_null(ivy_spawn_after(-1, append_char, NULL));
    assert_int_equal(errno, EINVAL);
    int a = 0, b = 0;
    ivy_spawn_n(kill_self, &a);
    ivy_thread *j = ivy_spawn(join_self, &b);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(a, -EDEADLK);
    assert_int_equal(b, -EDEADLK);
    assert_int_equal(ivy_join(j, NULL), 0);
}

static void *fail_with_eio(void *arg)
{
    ivy_sleep(0.001);
    return ivy_err_ptr(-EIO);
}

static void *join_it(void *arg)
{
    void *v = (void *)1;
    int rc = ivy_join(arg, &v);
    assert_null(v);
    return ivy_err_ptr(rc);
}

static void join_returns_the_threads_error(void **state)
{
    ivy_thread *t = ivy_spawn(fail_with_eio, NULL);
    ivy_thread *j = ivy_spawn(join_it, t);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(ivy_join(j, NULL), -EIO);
}

static int links_seen;
static void on_exit_cb(ivy_thread *t, void *value, int err, void *arg)
{
    assert_int_equal((intptr_t)value, 'q');
    assert_int_equal(err, 0);
    links_seen += (int)(intptr_t)arg;
}

static void link_callbacks_run_on_exit(void **state)
{
    links_seen = 0;
    ivy_thread *t = ivy_spawn(append_char, (void *)'q');
    assert_int_equal(ivy_link(t, on_exit_cb, (void *)1), 0);
    assert_int_equal(ivy_link(t, on_exit_cb, (void *)10), 0);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(links_seen, 11);
    assert_int_equal(ivy_link(t, on_exit_cb, (void *)100), 0); /* already done: at once */
    assert_int_equal(links_seen, 111);
    assert_int_equal(ivy_join(t, NULL), 0);
}

static void spawn_after_starts_later(void **state)
{
    norder = 0;
    uint64_t t0 = ivy_now_ns();
    ivy_thread *t = ivy_spawn_after(0.030, append_char, (void *)'b');
    ivy_spawn_n(append_char, (void *)'a');
    assert_int_equal(ivy_run(), 0);
    assert_true(ivy_now_ns() - t0 >= 30000000);
    assert_string_equal(order, "ab");
    assert_int_equal(ivy_join(t, NULL), 0);
}

struct nested {
    int inner_sleep, inner_end, outer_end, after;
    uint64_t took;
};

static void *nested_deadlines(void *arg)
{
    struct nested *n = arg;
    struct ivy_timeout outer, inner;
    uint64_t t0 = ivy_now_ns();
    assert_int_equal(ivy_timeout_begin(&outer, 0.030), 0);
    assert_int_equal(ivy_timeout_begin(&inner, 5.0), 0); /* later: the outer one wins */
    n->inner_sleep = ivy_sleep(10);
    n->took = ivy_now_ns() - t0;
    n->after = ivy_sleep(0.001); /* the outer scope is still open and expired */
    n->inner_end = ivy_timeout_end(&inner);
    n->outer_end = ivy_timeout_end(&outer);
    assert_int_equal(ivy_sleep(0.001), 0); /* no scope left */
    return NULL;
}

static void nested_deadline_earliest_wins(void **state)
{
    struct nested n = {0};
    ivy_spawn_n(nested_deadlines, &n);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(n.inner_sleep, -ETIMEDOUT);
    assert_int_equal(n.after, -ETIMEDOUT);
    assert_int_equal(n.inner_end, 0);
    assert_int_equal(n.outer_end, -ETIMEDOUT);
    assert_true(n.took >= 30000000 && n.took < 1000000000ull);
}

static void *deadline_not_reached(void *arg)
{
    struct ivy_timeout to;
    assert_int_equal(ivy_timeout_begin(&to, 1.0), 0);
    assert_int_equal(ivy_sleep(0.005), 0);
    *(int *)arg = ivy_timeout_end(&to);
    return NULL;
}

static void deadline_cancelled_when_scope_ends(void **state)
{
    int rc = 1;
    ivy_spawn_n(deadline_not_reached, &rc);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(rc, 0);
    struct ivy_hub_stats st;
    ivy_hub_stats(&st);
    assert_int_equal(st.threads_alive, 0);
}

static void *empty(void *arg)
{
    return arg;
}

static void hundred_thousand_spawns_leave_nothing_behind(void **state)
{
    struct ivy_hub_stats before, after;
    ivy_hub_stats(&before);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(ivy_spawn_n(empty, NULL), 0);
    assert_int_equal(ivy_run(), 0);
    ivy_hub_stats(&after);
    assert_int_equal(after.threads_alive, 0);
    assert_int_equal(after.threads_spawned - before.threads_spawned, 100000);
}

static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* 150 ms of CPU, not of wall time: on a loaded machine the OS may preempt us, and time spent
   preempted is not the thread's stall (the detector subtracts it). */
static void *busy_150ms(void *arg)
{
    uint64_t t0 = cpu_ns();
    while (cpu_ns() - t0 < 150000000) {
    }
    return NULL;
}

static void *polite_150ms(void *arg)
{
    uint64_t t0 = ivy_now_ns();
    while (ivy_now_ns() - t0 < 150000000)
        ivy_sleep(0.005);
    return NULL;
}

static void stall_detector_fires_on_busy_loop_only(void **state)
{
    struct ivy_hub_stats a, b, c;
    ivy_hub_stats(&a);
    ivy_spawn_n(polite_150ms, NULL);
    ivy_spawn_n(polite_150ms, NULL);
    assert_int_equal(ivy_run(), 0);
    ivy_hub_stats(&b);
    assert_int_equal(b.stalls, a.stalls);
    ivy_spawn_n(busy_150ms, NULL);
    assert_int_equal(ivy_run(), 0);
    ivy_hub_stats(&c);
    assert_int_equal(c.stalls, b.stalls + 1);
    assert_true(c.max_loop_lag_ns >= 150000000);
}

static ivy_thread *pair[2];

static void *join_partner(void *arg)
{
    return ivy_err_ptr(ivy_join(pair[(intptr_t)arg ^ 1], NULL));
}

static void deadlock_is_reported_and_recoverable(void **state)
{
    pair[0] = ivy_spawn(join_partner, (void *)0);
    pair[1] = ivy_spawn(join_partner, (void *)1);
    assert_int_equal(ivy_run(), -EDEADLK);
    assert_int_equal(ivy_kill(pair[0]), 0);
    assert_int_equal(ivy_run(), 0);
    /* pair[0]'s join was cancelled; pair[1]'s join saw it finish with that error */
    assert_int_equal(ivy_join(pair[1], NULL), -ECANCELED);
}

/* ---- a parking thread hands over to the next one of the pass: same order, same checks ---- */

static void *note_then_exit(void *arg)
{
    note((char)(intptr_t)arg);
    return NULL;
}

static void *spawn_d_then_yield(void *arg)
{
    note('a');
    ivy_spawn_n(note_then_exit, (void *)'d'); /* ready during the pass: runs in the next one */
    assert_int_equal(ivy_sleep(0), 0);
    note('A');
    return NULL;
}

static void threads_readied_during_a_pass_wait_for_the_next(void **state)
{
    norder = 0;
    ivy_spawn_n(spawn_d_then_yield, NULL);
    ivy_spawn_n(note_then_exit, (void *)'b');
    ivy_spawn_n(note_then_exit, (void *)'c');
    assert_int_equal(ivy_run(), 0);
    assert_string_equal(order, "abcdA");
}

static ivy_thread *victim;

static void *kill_victim_then_yield(void *arg)
{
    note('a');
    assert_int_equal(ivy_kill(victim), 0);
    assert_int_equal(ivy_sleep(0), 0); /* hands over to b, which hands over past the victim */
    note('A');
    return NULL;
}

static void *yield_once(void *arg)
{
    note((char)(intptr_t)arg);
    assert_int_equal(ivy_sleep(0), 0);
    note((char)((intptr_t)arg - 'a' + 'A'));
    return NULL;
}

static void handover_never_starts_a_killed_thread(void **state)
{
    norder = 0;
    ivy_spawn_n(kill_victim_then_yield, NULL);
    ivy_spawn_n(yield_once, (void *)'b');
    victim = ivy_spawn(append_char, (void *)'v');
    ivy_spawn_n(yield_once, (void *)'c');
    assert_int_equal(ivy_run(), 0);
    assert_string_equal(order, "abcABC");
    void *v;
    assert_int_equal(ivy_join(victim, &v), 0);
    assert_ptr_equal(v, ivy_err_ptr(IVY_EXIT));
}

static void *busy_150ms_then_yield(void *arg)
{
    busy_150ms(NULL);
    assert_int_equal(ivy_sleep(0), 0); /* the slice ends here, handing over to the next */
    return NULL;
}

static void stall_detector_sees_a_slice_that_ends_in_a_handover(void **state)
{
    struct ivy_hub_stats a, b;
    ivy_hub_stats(&a);
    ivy_spawn_n(busy_150ms_then_yield, NULL);
    ivy_spawn_n(yield_once, (void *)'x');
    assert_int_equal(ivy_run(), 0);
    ivy_hub_stats(&b);
    assert_int_equal(b.stalls, a.stalls + 1);
}

static void stall_detector_sees_a_lone_thread_that_yields(void **state)
{
    struct ivy_hub_stats a, b;
    ivy_hub_stats(&a);
    ivy_spawn_n(busy_150ms_then_yield, NULL); /* its yield begins the next pass itself */
    assert_int_equal(ivy_run(), 0);
    ivy_hub_stats(&b);
    assert_int_equal(b.stalls, a.stalls + 1);
}

static bool sleeper_woke;

static void *yield_until_sleeper_wakes(void *arg)
{
    uint64_t t0 = ivy_now_ns();
    while (!sleeper_woke && ivy_now_ns() - t0 < 2000000000ull)
        ivy_sleep(0);
    assert_true(sleeper_woke);
    return NULL;
}

static void *sleep_10ms_and_flag(void *arg)
{
    uint64_t t0 = ivy_now_ns();
    assert_int_equal(ivy_sleep(0.010), 0);
    *(uint64_t *)arg = ivy_now_ns() - t0;
    sleeper_woke = true;
    return NULL;
}

static void timers_fire_while_threads_keep_yielding(void **state)
{
    uint64_t took = 0;
    sleeper_woke = false;
    ivy_spawn_n(yield_until_sleeper_wakes, NULL);
    ivy_spawn_n(yield_until_sleeper_wakes, NULL);
    ivy_spawn_n(sleep_10ms_and_flag, &took);
    assert_int_equal(ivy_run(), 0);
    /* No I/O in flight, yet the timer is not starved: the yielders gave up after 2 s if it
       were (asserted there), a bound no load reaches, unlike the 100 ms this said once. */
    assert_true(took >= 10000000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(spawned_threads_run_in_fifo_order),
        cmocka_unit_test(sleep0_yields_to_every_ready_thread),
        cmocka_unit_test(sleep_20ms_wakes_after_20ms_and_before_a_60ms_sleeper),
        cmocka_unit_test(huge_sleeps_sleep_until_killed),
        cmocka_unit_test(huge_timeouts_never_expire_and_nan_is_refused),
        cmocka_unit_test(ten_thousand_sleepers_all_wake_in_deadline_order),
        cmocka_unit_test(kill_wakes_sleeper_with_ecanceled),
        cmocka_unit_test(kill_before_start_never_runs),
        cmocka_unit_test(misuse_is_refused_with_exact_errors),
        cmocka_unit_test(join_returns_the_threads_error),
        cmocka_unit_test(link_callbacks_run_on_exit),
        cmocka_unit_test(spawn_after_starts_later),
        cmocka_unit_test(nested_deadline_earliest_wins),
        cmocka_unit_test(deadline_cancelled_when_scope_ends),
        cmocka_unit_test(hundred_thousand_spawns_leave_nothing_behind),
        cmocka_unit_test(stall_detector_fires_on_busy_loop_only),
        cmocka_unit_test(deadlock_is_reported_and_recoverable),
        cmocka_unit_test(threads_readied_during_a_pass_wait_for_the_next),
        cmocka_unit_test(handover_never_starts_a_killed_thread),
        cmocka_unit_test(stall_detector_sees_a_slice_that_ends_in_a_handover),
        cmocka_unit_test(stall_detector_sees_a_lone_thread_that_yields),
        cmocka_unit_test(timers_fire_while_threads_keep_yielding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
