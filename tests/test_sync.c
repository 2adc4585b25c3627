/*
 * Tests for runtime/event.c, runtime/semaphore.c, runtime/channel.c and the timed wait under
 * them (runtime/wait.c): exact wake-up orders, error codes and timings. Queue: test_queue.c.
 */
#include "sync_test.h"

#include <limits.h>
#include <math.h>

/* ---- Event -------------------------------------------------------------------------------- */

static ivy_event *ev;
static int wake_log[100], nwake;

static void *event_waiter(void *arg)
{
    assert_int_equal(ivy_event_wait(ev, -1), 0);
    wake_log[nwake++] = I(arg);
    return NULL;
}

static void *event_setter(void *arg)
{
    assert_int_equal(nwake, 0);
    assert_int_equal(ivy_event_free(ev), -EBUSY);
    assert_int_equal(ivy_event_set(ev), 100);
    assert_int_equal(ivy_event_clear(ev), 0); /* too late to take back the wake-ups */
    assert_int_equal(nwake, 0);               /* woken, not yet run */
    return NULL;
}

static void event_set_wakes_all_100_waiters_in_order(void **state)
{
    ev = ivy_event_new();
    nwake = 0;
    for (int i = 0; i < 100; i++)
        assert_int_equal(ivy_spawn_n(event_waiter, P(i)), 0);
    assert_int_equal(ivy_spawn_n(event_setter, NULL), 0);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(nwake, 100);
    for (int i = 0; i < 100; i++)
        assert_int_equal(wake_log[i], i);
    assert_false(ivy_event_is_set(ev));
    assert_int_equal(ivy_event_free(ev), 0);
}

static void *event_wait_set_and_cleared(void *arg)
{
    assert_int_equal(ivy_event_set(ev), 0);
    assert_true(ivy_event_is_set(ev));
    note('a');
    assert_int_equal(ivy_event_wait(ev, -1), 0); /* set: no suspension */
    assert_int_equal(ivy_event_wait(ev, 0), 0);
    note('b');
    assert_int_equal(ivy_event_clear(ev), 0);
    assert_false(ivy_event_is_set(ev));
    assert_int_equal(ivy_event_wait(ev, 0), -ETIMEDOUT); /* 0: never waits */
    return NULL;
}

static void *note_x(void *arg)
{
    note('x');
    return NULL;
}

static void event_wait_on_set_event_returns_without_yielding(void **state)
{
    reset();
    ev = ivy_event_new();
    ivy_spawn_n(event_wait_set_and_cleared, NULL);
    ivy_spawn_n(note_x, NULL);
    assert_int_equal(ivy_run(), 0);
    assert_string_equal(order, "abx");
    assert_int_equal(ivy_event_free(ev), 0);
}

static void *event_wait_30ms(void *arg)
{
    uint64_t t0 = ivy_now_ns();
    assert_int_equal(ivy_event_wait(ev, 0.030), -ETIMEDOUT);
    *(uint64_t *)arg = ivy_now_ns() - t0;
    assert_int_equal(ivy_sleep(0.001), 0); /* still usable: no scope was touched */
    return NULL;
}

static void event_wait_timeout_returns_etimedout_after_the_time(void **state)
{
    ev = ivy_event_new();
    uint64_t took = 0;
    ivy_spawn_n(event_wait_30ms, &took);
    assert_int_equal(ivy_run(), 0);
    assert_true(took >= 30000000);
    assert_true(took < 500000000);
    assert_int_equal(ivy_event_free(ev), 0); /* the timed-out waiter left the queue */
}

static void *event_wait_report(void *arg)
{
    *(int *)arg = ivy_event_wait(ev, 10);
    return NULL;
}

static void *kill_it(void *arg)
{
    assert_int_equal(ivy_kill(arg), 0);
    return NULL;
}

static void event_waiter_killed_returns_ecanceled(void **state)
{
    ev = ivy_event_new();
    int rc = 1;
    uint64_t t0 = ivy_now_ns();
    ivy_thread *t = ivy_spawn(event_wait_report, &rc);
    ivy_spawn_n(kill_it, t);
    assert_int_equal(ivy_run(), 0);
    assert_true(ivy_now_ns() - t0 < 1000000000ull);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ivy_join(t, NULL), 0);
    assert_int_equal(ivy_event_free(ev), 0);
}

/* ---- Semaphore ---------------------------------------------------------------------------- */

static ivy_semaphore *sem;

static void *acquire_and_note(void *arg)
{
    assert_int_equal(ivy_semaphore_acquire(sem, -1), 0);
    note((char)I(arg));
    return NULL;
}

static void *release_five_no_barging(void *arg)
{
    for (int i = 0; i < 5; i++) {
        assert_int_equal(ivy_semaphore_release(sem), 0);
        /* The unit went to the first waiter, not to the count: a newcomer can't take it. */
        assert_int_equal(ivy_semaphore_value(sem), 0);
        assert_int_equal(ivy_semaphore_try_acquire(sem), -EAGAIN);
        assert_int_equal(ivy_semaphore_acquire(sem, 0), -ETIMEDOUT);
        note('r');
        assert_int_equal(ivy_sleep(0), 0);
    }
    return NULL;
}

static void semaphore_release_hands_units_to_waiters_in_fifo_order(void **state)
{
    reset();
    sem = ivy_semaphore_new(0);
    for (char c = 'a'; c <= 'e'; c++)
        ivy_spawn_n(acquire_and_note, P(c));
    ivy_spawn_n(release_five_no_barging, NULL);
    assert_int_equal(ivy_run(), 0);
    assert_string_equal(order, "rarbrcrdre");
    assert_int_equal(ivy_semaphore_value(sem), 0);
    assert_int_equal(ivy_semaphore_free(sem), 0);
}

static int holders, peak_holders;

static void *acquire_with_hold(void *arg)
{
    assert_int_equal(ivy_semaphore_acquire(sem, -1), 0);
    note((char)I(arg));
    if (++holders > peak_holders) peak_holders = holders;
    assert_int_equal(ivy_sleep(0.002), 0);
    holders--;
    assert_int_equal(ivy_semaphore_release(sem), 0);
    return NULL;
}

static void semaphore_of_two_admits_two_at_a_time_in_arrival_order(void **state)
{
    reset();
    holders = peak_holders = 0;
    sem = ivy_bounded_semaphore_new(2);
    for (char c = 'a'; c <= 'f'; c++)
        ivy_spawn_n(acquire_with_hold, P(c));
    assert_int_equal(ivy_run(), 0);
    assert_string_equal(order, "abcdef");
    assert_int_equal(peak_holders, 2);
    assert_int_equal(ivy_semaphore_value(sem), 2);
    assert_int_equal(ivy_semaphore_free(sem), 0);
}

static void bounded_semaphore_over_release_is_eoverflow(void **state)
{
    ivy_semaphore *b = ivy_bounded_semaphore_new(2);
    assert_int_equal(ivy_semaphore_release(b), -EOVERFLOW);
    assert_int_equal(ivy_semaphore_value(b), 2);
    assert_int_equal(ivy_semaphore_try_acquire(b), 0);
    assert_int_equal(ivy_semaphore_value(b), 1);
    assert_int_equal(ivy_semaphore_release(b), 0);
    assert_int_equal(ivy_semaphore_release(b), -EOVERFLOW);
    assert_int_equal(ivy_semaphore_value(b), 2);
    assert_int_equal(ivy_semaphore_free(b), 0);

    ivy_semaphore *u = ivy_semaphore_new(2); /* unbounded: releases raise the count */
    assert_int_equal(ivy_semaphore_release(u), 0);
    assert_int_equal(ivy_semaphore_value(u), 3);
    assert_int_equal(ivy_semaphore_free(u), 0);

    ivy_semaphore *top = ivy_semaphore_new(INT_MAX);
    assert_int_equal(ivy_semaphore_release(top), -EOVERFLOW);
    assert_int_equal(ivy_semaphore_free(top), 0);
    errno = 0;
    assert_null(ivy_semaphore_new((unsigned)INT_MAX + 1));
    assert_int_equal(errno, EINVAL);
}

static void *acquire_report(void *arg)
{
    *(int *)arg = ivy_semaphore_acquire(sem, 10);
    return NULL;
}

static void *kill_first_then_release(void *arg)
{
    ivy_thread **t = arg;
    assert_int_equal(ivy_kill(t[0]), 0);
    assert_int_equal(ivy_semaphore_release(sem), 0); /* to the second waiter */
    assert_int_equal(ivy_semaphore_value(sem), 0);
    return NULL;
}

static void semaphore_killed_waiter_leaves_the_unit_to_the_next(void **state)
{
    sem = ivy_semaphore_new(0);
    int rc[2] = {1, 1};
    ivy_thread *t[2] = {ivy_spawn(acquire_report, &rc[0]), ivy_spawn(acquire_report, &rc[1])};
    ivy_spawn_n(kill_first_then_release, t);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(rc[0], -ECANCELED);
    assert_int_equal(rc[1], 0);
    assert_int_equal(ivy_join(t[0], NULL), 0);
    assert_int_equal(ivy_join(t[1], NULL), 0);
    assert_int_equal(ivy_semaphore_free(sem), 0);
}

static void *acquire_timeout(void *arg)
{
    uint64_t t0 = ivy_now_ns();
    assert_int_equal(ivy_semaphore_acquire(sem, 0.020), -ETIMEDOUT);
    *(uint64_t *)arg = ivy_now_ns() - t0;
    return NULL;
}

static void semaphore_acquire_times_out(void **state)
{
    sem = ivy_semaphore_new(0);
    uint64_t took = 0;
    ivy_spawn_n(acquire_timeout, &took);
    assert_int_equal(ivy_run(), 0);
    assert_true(took >= 20000000 && took < 500000000);
    assert_int_equal(ivy_semaphore_release(sem), 0); /* nobody waits any more: to the count */
    assert_int_equal(ivy_semaphore_value(sem), 1);
    assert_int_equal(ivy_semaphore_free(sem), 0);
}

static ivy_queue *queue; /* for the misuse test; tests/test_queue.c has the rest */

/* ---- Channel ------------------------------------------------------------------------------ */

static ivy_channel *chan;

static void *send_and_note(void *arg)
{
    note((char)I(arg));
    assert_int_equal(ivy_channel_send(chan, arg, -1), 0);
    note((char)(I(arg) - 'a' + 'A'));
    return NULL;
}

static void *receive_three(void *arg)
{
    assert_int_equal(ivy_channel_balance(chan), 3);
    for (int i = 0; i < 3; i++) {
        void *item;
        assert_int_equal(ivy_channel_receive(chan, &item, -1), 0);
        note((char)I(item));
    }
    assert_int_equal(ivy_channel_balance(chan), 0);
    note('.');
    return NULL;
}

static void channel_senders_first_hand_off_in_order(void **state)
{
    reset();
    chan = ivy_channel_new();
    for (char c = 'a'; c <= 'c'; c++)
        ivy_spawn_n(send_and_note, P(c));
    ivy_spawn_n(receive_three, NULL);
    assert_int_equal(ivy_run(), 0);
    /* Receives never wait; each readies its sender, which resumes after the receiver. */
    assert_string_equal(order, "abcabc.ABC");
    assert_int_equal(ivy_channel_free(chan), 0);
}

static void *receive_and_note(void *arg)
{
    void *item;
    note((char)I(arg));
    assert_int_equal(ivy_channel_receive(chan, &item, -1), 0);
    note((char)I(arg));
    note((char)I(item));
    return NULL;
}

static void *send_three(void *arg)
{
    assert_int_equal(ivy_channel_balance(chan), -3);
    for (char c = '1'; c <= '3'; c++)
        assert_int_equal(ivy_channel_send(chan, P(c), -1), 0);
    assert_int_equal(ivy_channel_balance(chan), 0);
    note('.');
    return NULL;
}

static void channel_receivers_first_hand_off_in_order(void **state)
{
    reset();
    chan = ivy_channel_new();
    for (char c = 'x'; c <= 'z'; c++)
        ivy_spawn_n(receive_and_note, P(c));
    ivy_spawn_n(send_three, NULL);
    assert_int_equal(ivy_run(), 0);
    assert_string_equal(order, "xyz.x1y2z3");
    assert_int_equal(ivy_channel_free(chan), 0);
}

static void *ping(void *arg)
{
    void *item;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ivy_channel_send(chan, P('a' + i), -1), 0);
        assert_int_equal(ivy_channel_receive(chan, &item, -1), 0);
        note((char)I(item));
    }
    return NULL;
}

static void *pong(void *arg)
{
    void *item;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ivy_channel_receive(chan, &item, -1), 0);
        note((char)I(item));
        assert_int_equal(ivy_channel_send(chan, P(I(item) - 'a' + 'A'), -1), 0);
    }
    return NULL;
}

static void channel_ping_pong_both_directions(void **state)
{
    reset();
    chan = ivy_channel_new();
    ivy_spawn_n(ping, NULL);
    ivy_spawn_n(pong, NULL);
    assert_int_equal(ivy_run(), 0);
    assert_string_equal(order, "aAbBcC");
    assert_int_equal(ivy_channel_free(chan), 0);
}

static void *send_timeout(void *arg)
{
    int *rc = arg;
    rc[0] = ivy_channel_send(chan, P(1), 0.005);
    rc[1] = ivy_channel_send(chan, P(1), 0);
    return NULL;
}

static void *receive_report(void *arg)
{
    void *item = P(9);
    *(int *)arg = ivy_channel_receive(chan, &item, -1);
    assert_int_equal(I(item), 9);
    return NULL;
}

static void *check_balance_and_kill(void *arg)
{
    assert_int_equal(ivy_channel_balance(chan), -1);
    assert_int_equal(ivy_kill(arg), 0);
    assert_int_equal(ivy_channel_balance(chan), 0);
    return NULL;
}

static void channel_timeout_and_kill_leave_balance_zero(void **state)
{
    chan = ivy_channel_new();
    int rc[2] = {1, 1}, rrc = 1;
    ivy_spawn_n(send_timeout, rc);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(rc[0], -ETIMEDOUT);
    assert_int_equal(rc[1], -ETIMEDOUT);
    assert_int_equal(ivy_channel_balance(chan), 0);
    ivy_thread *t = ivy_spawn(receive_report, &rrc);
    ivy_spawn_n(check_balance_and_kill, t);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(rrc, -ECANCELED);
    assert_int_equal(ivy_join(t, NULL), 0);
    assert_int_equal(ivy_channel_free(chan), 0);
}

/* ---- misuse ------------------------------------------------------------------------------- */

static void *killed_caller(void *arg)
{
    ivy_sleep(10); /* killed here */
    void *item;
    int *rc = arg;
    rc[0] = ivy_event_wait(ev, -1); /* set, but the thread was killed: fails first */
    rc[1] = ivy_queue_get(queue, &item, -1);
    rc[2] = ivy_semaphore_acquire(sem, -1);
    rc[3] = ivy_queue_try_get(queue, &item); /* try_ never looks at the caller */
    return NULL;
}

static void *free_busy_objects(void *arg)
{
    assert_int_equal(ivy_channel_free(chan), -EBUSY);
    assert_int_equal(ivy_semaphore_free(sem), -EBUSY);
    assert_int_equal(ivy_kill(arg), 0);
    assert_int_equal(ivy_semaphore_release(sem), 0);
    return NULL;
}

static void *receive_forever(void *arg)
{
    void *item;
    assert_int_equal(ivy_channel_receive(chan, &item, -1), -ECANCELED);
    return NULL;
}

static void misuse_is_refused_with_exact_errors(void **state)
{
    void *item;
    assert_null(ivy_semaphore_new(UINT_MAX));
    assert_int_equal(ivy_event_free(NULL), 0);
    assert_int_equal(ivy_event_set(NULL), -EINVAL);
    assert_int_equal(ivy_event_wait(NULL, 1), -EINVAL);
    assert_int_equal(ivy_semaphore_acquire(NULL, 1), -EINVAL);
    assert_int_equal(ivy_semaphore_release(NULL), -EINVAL);
    assert_int_equal(ivy_queue_put(NULL, NULL, 1), -EINVAL);
    assert_int_equal(ivy_channel_send(NULL, NULL, 1), -EINVAL);

    ev = ivy_event_new();
    sem = ivy_semaphore_new(0);
    queue = ivy_queue_new(1);
    chan = ivy_channel_new();
    assert_int_equal(ivy_queue_get(queue, NULL, 1), -EINVAL);
    assert_int_equal(ivy_event_wait(ev, NAN), -EINVAL);
    /* Outside a green thread, a call that would wait is refused. */
    assert_int_equal(ivy_event_wait(ev, 1), -EPERM);
    assert_int_equal(ivy_semaphore_acquire(sem, -1), -EPERM);
    assert_int_equal(ivy_channel_send(chan, NULL, -1), -EPERM);
    assert_int_equal(ivy_channel_receive(chan, &item, -1), -EPERM);
    assert_int_equal(ivy_queue_get(queue, &item, -1), -EPERM);
    assert_int_equal(ivy_queue_put(queue, P(1), -1), 0);
    assert_int_equal(ivy_queue_put(queue, P(2), -1), -EPERM);
    assert_int_equal(ivy_event_set(ev), 0);

    int rc[4] = {1, 1, 1, 1}, acquired = 1;
    ivy_thread *t = ivy_spawn(killed_caller, rc);
    ivy_spawn_n(kill_it, t);
    ivy_thread *r = ivy_spawn(receive_forever, NULL);
    ivy_thread *s = ivy_spawn(acquire_report, &acquired);
    ivy_spawn_n(free_busy_objects, r);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(acquired, 0); /* the unit released while it waited */
    assert_int_equal(rc[0], -ECANCELED);
    assert_int_equal(rc[1], -ECANCELED);
    assert_int_equal(rc[2], -ECANCELED);
    assert_int_equal(rc[3], 0);
    assert_int_equal(ivy_join(t, NULL), 0);
    assert_int_equal(ivy_join(r, NULL), 0);
    assert_int_equal(ivy_join(s, NULL), 0);
    assert_int_equal(ivy_event_free(ev), 0);
    assert_int_equal(ivy_semaphore_free(sem), 0);
    assert_int_equal(ivy_queue_free(queue), 0);
    assert_int_equal(ivy_channel_free(chan), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(event_set_wakes_all_100_waiters_in_order),
        cmocka_unit_test(event_wait_on_set_event_returns_without_yielding),
        cmocka_unit_test(event_wait_timeout_returns_etimedout_after_the_time),
        cmocka_unit_test(event_waiter_killed_returns_ecanceled),
        cmocka_unit_test(semaphore_release_hands_units_to_waiters_in_fifo_order),
        cmocka_unit_test(semaphore_of_two_admits_two_at_a_time_in_arrival_order),
        cmocka_unit_test(bounded_semaphore_over_release_is_eoverflow),
        cmocka_unit_test(semaphore_killed_waiter_leaves_the_unit_to_the_next),
        cmocka_unit_test(semaphore_acquire_times_out),
        cmocka_unit_test(channel_senders_first_hand_off_in_order),
        cmocka_unit_test(channel_receivers_first_hand_off_in_order),
        cmocka_unit_test(channel_ping_pong_both_directions),
        cmocka_unit_test(channel_timeout_and_kill_leave_balance_zero),
        cmocka_unit_test(misuse_is_refused_with_exact_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
