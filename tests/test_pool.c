/* Tests for runtime/pool.c (GreenPool) and runtime/pile.c (GreenPile). */
#include "sync_test.h"

static ivy_pool *pool;
static int now_running, peak_running, finished;

static void *counted_sleeper(void *arg)
{
    if (++now_running > peak_running) peak_running = now_running;
    assert_int_equal(ivy_sleep(0.001 + 0.001 * (I(arg) % 3)), 0);
    now_running--;
    finished++;
    return arg;
}

static void *spawn_50_then_waitall(void *arg)
{
    for (int i = 0; i < 50; i++) {
        assert_int_equal(ivy_pool_spawn(pool, counted_sleeper, P(i), NULL), 0);
        assert_true(ivy_pool_running(pool) <= 3);
    }
    assert_int_equal(ivy_pool_waitall(pool), 0);
    assert_int_equal(finished, 50);
    assert_int_equal(ivy_pool_running(pool), 0);
    assert_int_equal(ivy_pool_available(pool), 3);
    return NULL;
}

static void pool_of_3_never_runs_more_than_3_of_50(void **state)
{
    now_running = peak_running = finished = 0;
    pool = ivy_pool_new(3);
    assert_int_equal(ivy_pool_available(pool), 3);
    ivy_spawn_n(spawn_50_then_waitall, NULL);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(peak_running, 3);
    assert_int_equal(finished, 50);
    assert_int_equal(ivy_pool_free(pool), 0);
}

static void *job_note(void *arg)
{
    note((char)I(arg));
    assert_int_equal(ivy_sleep(0.005), 0);
    note((char)(I(arg) - 'a' + 'A'));
    return arg;
}

static void *spawn_two_in_pool_of_one(void *arg)
{
    assert_int_equal(ivy_pool_spawn(pool, job_note, P('a'), NULL), 0);
    assert_int_equal(ivy_pool_available(pool), 0);
    note('1');
    assert_int_equal(ivy_pool_spawn(pool, job_note, P('b'), NULL), 0); /* waits for a */
    note('2');
    return NULL;
}

static void pool_spawn_suspends_the_caller_while_full(void **state)
{
    reset();
    pool = ivy_pool_new(1);
    ivy_spawn_n(spawn_two_in_pool_of_one, NULL);
    assert_int_equal(ivy_run(), 0);
    assert_string_equal(order, "1aA2bB");
    assert_int_equal(ivy_pool_free(pool), 0);
}

static void *spawner(void *arg)
{
    assert_int_equal(ivy_pool_spawn(pool, job_note, arg, NULL), 0);
    return NULL;
}

static void pool_waiting_spawners_start_in_fifo_order(void **state)
{
    reset();
    pool = ivy_pool_new(1);
    for (char c = 'a'; c <= 'd'; c++)
        ivy_spawn_n(spawner, P(c));
    assert_int_equal(ivy_run(), 0);
    assert_string_equal(order, "aAbBcCdD");
    assert_int_equal(ivy_pool_free(pool), 0);
}

static void *return_arg(void *arg)
{
    return arg;
}

static void pool_spawn_with_handle_is_joinable(void **state)
{
    pool = ivy_pool_new(2);
    ivy_thread *t;
    assert_int_equal(ivy_pool_spawn(pool, return_arg, P(77), &t), 0);
    assert_int_equal(ivy_pool_running(pool), 1);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(ivy_pool_running(pool), 0);
    void *v;
    assert_int_equal(ivy_join(t, &v), 0);
    assert_int_equal(I(v), 77);
    assert_int_equal(ivy_pool_free(pool), 0);
}

static void *sleep_long(void *arg)
{
    return ivy_err_ptr(ivy_sleep(10));
}

static void *kill_then_spawn(void *arg)
{
    ivy_thread **t = arg;
    assert_int_equal(ivy_pool_available(pool), 0);
    assert_int_equal(ivy_kill(t[0]), 0); /* sleeping in the pool: wakes with -ECANCELED */
    assert_int_equal(ivy_kill(t[1]), 0); /* not started yet: never runs */
    assert_int_equal(ivy_pool_spawn(pool, return_arg, NULL, NULL), 0); /* gets t[1]'s slot */
    assert_int_equal(ivy_pool_spawn(pool, return_arg, NULL, NULL), 0); /* then t[0]'s */
    note('k');
    return NULL;
}

static void pool_killed_threads_give_their_slots_back(void **state)
{
    reset();
    pool = ivy_pool_new(2);
    ivy_thread *t[2];
    uint64_t t0 = ivy_now_ns();
    assert_int_equal(ivy_pool_spawn(pool, sleep_long, NULL, &t[0]), 0);
    assert_int_equal(ivy_spawn_n(kill_then_spawn, t), 0);
    assert_int_equal(ivy_pool_spawn(pool, sleep_long, NULL, &t[1]), 0);
    assert_int_equal(ivy_run(), 0);
    assert_true(ivy_now_ns() - t0 < 1000000000ull);
    assert_string_equal(order, "k");
    assert_int_equal(ivy_join(t[0], NULL), -ECANCELED);
    void *v;
    assert_int_equal(ivy_join(t[1], &v), 0);
    assert_ptr_equal(v, ivy_err_ptr(IVY_EXIT));
    assert_int_equal(ivy_pool_running(pool), 0);
    assert_int_equal(ivy_pool_free(pool), 0);
}

static void *spawn_in_full_pool(void *arg)
{
    note('s');
    assert_int_equal(ivy_pool_spawn(pool, job_note, arg, NULL), 0);
    note('S');
    return NULL;
}

static void *resize_to_3(void *arg)
{
    assert_int_equal(ivy_pool_available(pool), 0);
    assert_int_equal(ivy_pool_resize(pool, 3), 0);
    assert_int_equal(ivy_pool_running(pool), 3); /* slots handed to both waiting spawners */
    assert_int_equal(ivy_pool_available(pool), 0);
    note('r');
    return NULL;
}

static void pool_resize_up_starts_waiting_spawners(void **state)
{
    reset();
    pool = ivy_pool_new(1);
    assert_int_equal(ivy_pool_spawn(pool, job_note, P('z'), NULL), 0);
    ivy_spawn_n(spawn_in_full_pool, P('a'));
    ivy_spawn_n(spawn_in_full_pool, P('b'));
    ivy_spawn_n(resize_to_3, NULL);
    assert_int_equal(ivy_run(), 0);
    assert_string_equal(order, "zssrSSabZAB");
    assert_int_equal(ivy_pool_available(pool), 3);
    assert_int_equal(ivy_pool_free(pool), 0);
}

static void *shrink_while_full(void *arg)
{
    assert_int_equal(ivy_pool_resize(pool, 1), 0);
    assert_int_equal(ivy_pool_running(pool), 3); /* running threads are never stopped */
    assert_int_equal(ivy_pool_available(pool), 0);
    assert_int_equal(ivy_pool_spawn(pool, counted_sleeper, P(0), NULL), 0);
    /* Started only once the other three were gone. */
    assert_int_equal(finished, 3);
    assert_int_equal(ivy_pool_waitall(pool), 0);
    return NULL;
}

static void pool_resize_down_waits_for_the_excess_to_finish(void **state)
{
    now_running = peak_running = finished = 0;
    pool = ivy_pool_new(3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ivy_pool_spawn(pool, counted_sleeper, P(i), NULL), 0);
    ivy_spawn_n(shrink_while_full, NULL);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(finished, 4);
    assert_int_equal(ivy_pool_free(pool), 0);
}

static void *waitall_and_note(void *arg)
{
    assert_int_equal(ivy_pool_waitall(pool), 0);
    assert_int_equal(ivy_pool_running(pool), 0);
    note((char)I(arg));
    return NULL;
}

static void pool_waitall_wakes_every_waiter(void **state)
{
    reset();
    pool = ivy_pool_new(2);
    assert_int_equal(ivy_pool_waitall(pool), 0); /* nothing running: at once, anywhere */
    assert_int_equal(ivy_pool_spawn(pool, job_note, P('a'), NULL), 0);
    assert_int_equal(ivy_pool_waitall(pool), -EPERM); /* would wait, outside a thread */
    ivy_spawn_n(waitall_and_note, P('1'));
    ivy_spawn_n(waitall_and_note, P('2'));
    assert_int_equal(ivy_run(), 0);
    assert_string_equal(order, "aA12");
    assert_int_equal(ivy_pool_free(pool), 0);
}

static void *spawn_then_free(void *arg)
{
    assert_int_equal(ivy_pool_free(pool), -EBUSY);
    return NULL;
}

static void pool_misuse_is_refused_with_exact_errors(void **state)
{
    errno = 0;
    assert_null(ivy_pool_new(0));
    assert_int_equal(errno, EINVAL);
    assert_int_equal(ivy_pool_free(NULL), 0);
    pool = ivy_pool_new(2);
    assert_int_equal(ivy_pool_spawn(NULL, return_arg, NULL, NULL), -EINVAL);
    assert_int_equal(ivy_pool_spawn(pool, NULL, NULL, NULL), -EINVAL);
    assert_int_equal(ivy_pool_resize(pool, 0), -EINVAL);
    assert_int_equal(ivy_pool_waitall(NULL), -EINVAL);
    /* Outside a green thread spawn starts at once while there is room, else is refused. */
    assert_int_equal(ivy_pool_spawn(pool, return_arg, NULL, NULL), 0);
    assert_int_equal(ivy_pool_spawn(pool, spawn_then_free, NULL, NULL), 0);
    assert_int_equal(ivy_pool_spawn(pool, return_arg, NULL, NULL), -EPERM);
    assert_int_equal(ivy_pool_free(pool), -EBUSY);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(ivy_pool_free(pool), 0);
}

/* ---- GreenPile ---------------------------------------------------------------------------- */

static ivy_pile *pile;

static void *sleep_reverse(void *arg)
{
    assert_int_equal(ivy_sleep(0.004 * (10 - I(arg))), 0);
    note((char)('0' + I(arg)));
    return arg;
}

static void *collect_ten(void *arg)
{
    for (int i = 0; i < 10; i++)
        assert_int_equal(ivy_pile_spawn(pile, sleep_reverse, P(i)), 0);
    for (int i = 0; i < 10; i++) {
        void *v;
        assert_int_equal(ivy_pile_next(pile, &v, -1), 0);
        assert_int_equal(I(v), i);
    }
    void *v = P(-1);
    assert_int_equal(ivy_pile_next(pile, &v, -1), -ENOENT);
    assert_ptr_equal(v, P(-1));
    return NULL;
}

static void pile_results_come_in_spawn_order_though_jobs_end_in_reverse(void **state)
{
    reset();
    pile = ivy_pile_new(NULL, 10);
    ivy_spawn_n(collect_ten, NULL);
    assert_int_equal(ivy_run(), 0);
    assert_string_equal(order, "9876543210");
    assert_int_equal(ivy_pile_free(pile), 0);
}

static void *fail_eio(void *arg)
{
    return ivy_err_ptr(-EIO);
}

static void *sleep_30ms_return(void *arg)
{
    assert_int_equal(ivy_sleep(0.030), 0);
    return arg;
}

static void *next_with_timeout(void *arg)
{
    void *v = P(-1);
    assert_int_equal(ivy_pile_next(pile, &v, 0.005), -ETIMEDOUT);
    assert_ptr_equal(v, P(-1));
    assert_int_equal(ivy_pile_next(pile, &v, 0), -ETIMEDOUT);
    assert_int_equal(ivy_pile_next(pile, &v, -1), 0); /* the result stayed */
    assert_int_equal(I(v), 5);
    assert_int_equal(ivy_pile_next(pile, &v, -1), 0);
    assert_int_equal(ivy_ptr_err(v), -EIO);
    assert_int_equal(ivy_pile_next(pile, &v, -1), -ENOENT);
    return NULL;
}

static void pile_next_times_out_and_keeps_the_result(void **state)
{
    pile = ivy_pile_new(NULL, 0);
    assert_int_equal(ivy_pile_spawn(pile, sleep_30ms_return, P(5)), 0);
    assert_int_equal(ivy_pile_spawn(pile, fail_eio, NULL), 0);
    ivy_spawn_n(next_with_timeout, NULL);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(ivy_pile_free(pile), 0);
}

static void *collector(void *arg)
{
    void *v;
    assert_int_equal(ivy_pile_next(pile, &v, -1), 0);
    note((char)I(arg));
    note((char)I(v));
    return NULL;
}

static void *third_collector(void *arg)
{
    void *v;
    /* Two results, both claimed by the collectors waiting before us. */
    assert_int_equal(ivy_pile_next(pile, &v, -1), -ENOENT);
    note('-');
    return NULL;
}

static void *sleep_5ms_return(void *arg)
{
    assert_int_equal(ivy_sleep(0.005), 0);
    return arg;
}

static void pile_collectors_take_results_in_turn(void **state)
{
    reset();
    pile = ivy_pile_new(NULL, 2);
    assert_int_equal(ivy_pile_spawn(pile, sleep_30ms_return, P('a')), 0);
    assert_int_equal(ivy_pile_spawn(pile, sleep_5ms_return, P('b')), 0);
    ivy_spawn_n(collector, P('1'));
    ivy_spawn_n(collector, P('2'));
    ivy_spawn_n(third_collector, NULL);
    assert_int_equal(ivy_run(), 0);
    /* b finishes first but is the second result: both are handed over when a is done. */
    assert_string_equal(order, "-1a2b");
    assert_int_equal(ivy_pile_free(pile), 0);
}

static void *pile_free_busy(void *arg)
{
    assert_int_equal(ivy_pile_free(pile), -EBUSY);
    return NULL;
}

static void pile_in_a_shared_pool_respects_its_bound(void **state)
{
    now_running = peak_running = finished = 0;
    pool = ivy_pool_new(2);
    pile = ivy_pile_new(pool, 0);
    assert_int_equal(ivy_pile_spawn(pile, counted_sleeper, P(0)), 0);
    assert_int_equal(ivy_pile_spawn(pile, counted_sleeper, P(1)), 0);
    /* Full, and the caller is not a green thread. */
    assert_int_equal(ivy_pile_spawn(pile, counted_sleeper, P(2)), -EPERM);
    ivy_spawn_n(pile_free_busy, NULL);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(peak_running, 2);
    void *v;
    assert_int_equal(ivy_pile_next(pile, &v, -1), 0); /* done: no need to wait */
    assert_int_equal(I(v), 0);
    /* One result left uncollected: free drops it, and leaves the shared pool alone. */
    assert_int_equal(ivy_pile_free(pile), 0);
    assert_int_equal(ivy_pool_available(pool), 2);
    assert_int_equal(ivy_pool_free(pool), 0);
    assert_int_equal(ivy_pile_next(NULL, &v, -1), -EINVAL);
    assert_int_equal(ivy_pile_spawn(NULL, return_arg, NULL), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pool_of_3_never_runs_more_than_3_of_50),
        cmocka_unit_test(pool_spawn_suspends_the_caller_while_full),
        cmocka_unit_test(pool_waiting_spawners_start_in_fifo_order),
        cmocka_unit_test(pool_spawn_with_handle_is_joinable),
        cmocka_unit_test(pool_killed_threads_give_their_slots_back),
        cmocka_unit_test(pool_resize_up_starts_waiting_spawners),
        cmocka_unit_test(pool_resize_down_waits_for_the_excess_to_finish),
        cmocka_unit_test(pool_waitall_wakes_every_waiter),
        cmocka_unit_test(pool_misuse_is_refused_with_exact_errors),
        cmocka_unit_test(pile_results_come_in_spawn_order_though_jobs_end_in_reverse),
        cmocka_unit_test(pile_next_times_out_and_keeps_the_result),
        cmocka_unit_test(pile_collectors_take_results_in_turn),
        cmocka_unit_test(pile_in_a_shared_pool_respects_its_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
