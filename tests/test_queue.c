/* Tests for runtime/queue.c: FIFO-fair getters and putters, hand-off under kill and timeouts. */
#include "sync_test.h"

static ivy_queue *queue;
static int got[64], ngot;

static void *get_and_log(void *arg)
{
    void *item = NULL;
    assert_int_equal(ivy_queue_get(queue, &item, -1), 0);
    got[ngot++] = I(arg) * 100 + I(item);
    return NULL;
}

static void *put_1_to_5(void *arg)
{
    for (int i = 1; i <= 5; i++)
        assert_int_equal(ivy_queue_put(queue, P(i), -1), 0);
    assert_int_equal(ivy_queue_size(queue), 0); /* each went straight to a getter */
    return NULL;
}

static void queue_getters_are_served_in_fifo_order(void **state)
{
    queue = ivy_queue_new(0);
    ngot = 0;
    for (int g = 1; g <= 5; g++)
        ivy_spawn_n(get_and_log, P(g));
    ivy_spawn_n(put_1_to_5, NULL);
    assert_int_equal(ivy_run(), 0);
    int want[] = {101, 202, 303, 404, 505};
    assert_int_equal(ngot, 5);
    assert_memory_equal(got, want, sizeof want);
    assert_int_equal(ivy_queue_free(queue), 0);
}

static void *producer_1_2_3(void *arg)
{
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(ivy_queue_put(queue, P(i), -1), 0);
        note((char)('0' + i));
    }
    return NULL;
}

static void *consumer_of_3(void *arg)
{
    void *item;
    note('g');
    assert_int_equal(ivy_queue_get(queue, &item, -1), 0);
    assert_int_equal(I(item), 1);
    /* The freed slot went to the blocked producer's item at once: still full, no barging. */
    assert_int_equal(ivy_queue_size(queue), 2);
    assert_int_equal(ivy_queue_try_put(queue, P(99)), -EAGAIN);
    assert_int_equal(ivy_queue_get(queue, &item, -1), 0);
    assert_int_equal(I(item), 2);
    assert_int_equal(ivy_queue_get(queue, &item, -1), 0);
    assert_int_equal(I(item), 3);
    note('G');
    return NULL;
}

static void queue_bounded_put_blocks_until_a_get(void **state)
{
    reset();
    queue = ivy_queue_new(2);
    ivy_spawn_n(producer_1_2_3, NULL);
    ivy_spawn_n(consumer_of_3, NULL);
    assert_int_equal(ivy_run(), 0);
    assert_string_equal(order, "12gG3");
    assert_int_equal(ivy_queue_free(queue), 0);
}

static void *put_and_note(void *arg)
{
    assert_int_equal(ivy_queue_put(queue, arg, -1), 0);
    note((char)I(arg));
    return NULL;
}

static void *drain_three(void *arg)
{
    for (int i = 0; i < 3; i++) {
        void *item;
        assert_int_equal(ivy_queue_get(queue, &item, -1), 0);
        note((char)(I(item) - 'a' + 'A'));
    }
    return NULL;
}

static void queue_putters_are_served_in_fifo_order(void **state)
{
    reset();
    queue = ivy_queue_new(1);
    assert_int_equal(ivy_queue_try_put(queue, P('x')), 0);
    assert_int_equal(ivy_queue_try_put(queue, P('y')), -EAGAIN);
    for (char c = 'a'; c <= 'c'; c++)
        ivy_spawn_n(put_and_note, P(c));
    ivy_spawn_n(drain_three, NULL);
    assert_int_equal(ivy_run(), 0);
    /* X frees the slot for a, A for b, B for c; each putter runs after the drain. */
    assert_string_equal(order, "XABabc");
    void *item;
    assert_int_equal(ivy_queue_try_get(queue, &item), 0);
    assert_int_equal(I(item), 'c');
    assert_int_equal(ivy_queue_try_get(queue, &item), -EAGAIN);
    assert_int_equal(ivy_queue_free(queue), 0);
}

static void *get_timeout_20ms(void *arg)
{
    void *item = P(7);
    uint64_t t0 = ivy_now_ns();
    assert_int_equal(ivy_queue_get(queue, &item, 0.020), -ETIMEDOUT);
    *(uint64_t *)arg = ivy_now_ns() - t0;
    assert_int_equal(I(item), 7); /* untouched */
    assert_int_equal(ivy_queue_get(queue, &item, 0), -ETIMEDOUT);
    assert_int_equal(ivy_queue_try_get(queue, &item), -EAGAIN);
    assert_int_equal(ivy_queue_put(queue, P(1), 0), 0);
    assert_int_equal(ivy_queue_put(queue, P(2), 0.010), -ETIMEDOUT); /* full */
    assert_int_equal(ivy_queue_size(queue), 1);
    return NULL;
}

static void queue_get_times_out_and_leaves_no_waiter_behind(void **state)
{
    queue = ivy_queue_new(1);
    uint64_t took = 0;
    ivy_spawn_n(get_timeout_20ms, &took);
    assert_int_equal(ivy_run(), 0);
    assert_true(took >= 20000000 && took < 500000000);
    void *item;
    assert_int_equal(ivy_queue_try_get(queue, &item), 0);
    assert_int_equal(I(item), 1);
    assert_int_equal(ivy_queue_free(queue), 0);
}

struct getter {
    int rc;
    void *item;
};

static void *get_report(void *arg)
{
    struct getter *g = arg;
    g->rc = ivy_queue_get(queue, &g->item, -1);
    return NULL;
}

static void *kill_then_put(void *arg)
{
    assert_int_equal(ivy_queue_free(queue), -EBUSY); /* two getters wait */
    assert_int_equal(ivy_kill(arg), 0);
    assert_int_equal(ivy_queue_put(queue, P(42), -1), 0);
    return NULL;
}

static void queue_killed_getter_returns_ecanceled_and_loses_nothing(void **state)
{
    queue = ivy_queue_new(0);
    struct getter g1 = {1, P(-1)}, g2 = {1, NULL};
    ivy_thread *t1 = ivy_spawn(get_report, &g1);
    ivy_thread *t2 = ivy_spawn(get_report, &g2);
    ivy_spawn_n(kill_then_put, t1);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(g1.rc, -ECANCELED);
    assert_ptr_equal(g1.item, P(-1));
    assert_int_equal(g2.rc, 0);
    assert_int_equal(I(g2.item), 42);
    assert_int_equal(ivy_queue_size(queue), 0);
    assert_int_equal(ivy_join(t1, NULL), 0);
    assert_int_equal(ivy_join(t2, NULL), 0);
    assert_int_equal(ivy_queue_free(queue), 0);
}

static void *put_then_kill(void *arg)
{
    assert_int_equal(ivy_queue_put(queue, P(42), -1), 0); /* handed to the getter */
    assert_int_equal(ivy_kill(arg), 0);                   /* before it runs */
    return NULL;
}

static void queue_item_handed_to_getter_survives_a_kill(void **state)
{
    queue = ivy_queue_new(0);
    struct getter g = {1, NULL};
    ivy_thread *t = ivy_spawn(get_report, &g);
    ivy_spawn_n(put_then_kill, t);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(g.rc, 0);
    assert_int_equal(I(g.item), 42);
    assert_int_equal(ivy_join(t, NULL), 0);
    assert_int_equal(ivy_queue_free(queue), 0);
}

static int consume_one(void)
{
    void *item;
    return ivy_queue_get(queue, &item, -1);
}

static void *deadline_around_nested_get(void *arg)
{
    int *rc = arg;
    struct ivy_timeout to;
    assert_int_equal(ivy_timeout_begin(&to, 0.020), 0);
    rc[0] = consume_one();
    rc[1] = consume_one(); /* the scope is still open and expired: fails at once */
    rc[2] = ivy_timeout_end(&to);
    /* Usable again, and the queue holds no stale waiter: this put is stored. */
    rc[3] = ivy_queue_put(queue, P(5), -1);
    return NULL;
}

static void queue_deadline_expiring_in_nested_get(void **state)
{
    queue = ivy_queue_new(0);
    int rc[4] = {1, 1, 1, 1};
    ivy_spawn_n(deadline_around_nested_get, rc);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(rc[0], -ETIMEDOUT);
    assert_int_equal(rc[1], -ETIMEDOUT);
    assert_int_equal(rc[2], -ETIMEDOUT);
    assert_int_equal(rc[3], 0);
    assert_int_equal(ivy_queue_size(queue), 1);
    void *item;
    assert_int_equal(ivy_queue_try_get(queue, &item), 0);
    assert_int_equal(I(item), 5);
    assert_int_equal(ivy_queue_free(queue), 0);
}

static void *per_call_timeout_inside_scope(void *arg)
{
    struct ivy_timeout to;
    void *item;
    assert_int_equal(ivy_timeout_begin(&to, 5.0), 0);
    assert_int_equal(ivy_queue_get(queue, &item, 0.005), -ETIMEDOUT);
    assert_int_equal(ivy_sleep(0.001), 0);
    *(int *)arg = ivy_timeout_end(&to);
    return NULL;
}

static void queue_per_call_timeout_leaves_the_scope_alone(void **state)
{
    queue = ivy_queue_new(0);
    int rc = 1;
    ivy_spawn_n(per_call_timeout_inside_scope, &rc);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(rc, 0);
    assert_int_equal(ivy_queue_free(queue), 0);
}

static void queue_unbounded_grows_and_keeps_fifo_across_wraparound(void **state)
{
    queue = ivy_queue_new(0);
    void *item;
    int next_in = 0, next_out = 0;
    /* Wrap the ring before each growth so the unwrapping copy is exercised. */
    for (int round = 0; round < 12; round++) {
        for (int i = 0; i < 3 << round; i++)
            assert_int_equal(ivy_queue_try_put(queue, P(next_in++)), 0);
        for (int i = 0; i < 1 << round; i++) {
            assert_int_equal(ivy_queue_try_get(queue, &item), 0);
            assert_int_equal(I(item), next_out++);
        }
        assert_int_equal(ivy_queue_size(queue), (size_t)(next_in - next_out));
    }
    /* Blocking put/get complete outside a green thread when they need not wait. */
    assert_int_equal(ivy_queue_put(queue, P(next_in++), -1), 0);
    while (next_out < next_in) {
        assert_int_equal(ivy_queue_get(queue, &item, -1), 0);
        assert_int_equal(I(item), next_out++);
    }
    assert_int_equal(ivy_queue_get(queue, &item, -1), -EPERM); /* would wait */
    assert_int_equal(ivy_queue_free(queue), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(queue_getters_are_served_in_fifo_order),
        cmocka_unit_test(queue_bounded_put_blocks_until_a_get),
        cmocka_unit_test(queue_putters_are_served_in_fifo_order),
        cmocka_unit_test(queue_get_times_out_and_leaves_no_waiter_behind),
        cmocka_unit_test(queue_killed_getter_returns_ecanceled_and_loses_nothing),
        cmocka_unit_test(queue_item_handed_to_getter_survives_a_kill),
        cmocka_unit_test(queue_deadline_expiring_in_nested_get),
        cmocka_unit_test(queue_per_call_timeout_leaves_the_scope_alone),
        cmocka_unit_test(queue_unbounded_grows_and_keeps_fifo_across_wraparound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
