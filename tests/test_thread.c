/*
 * Tests for runtime/thread.c's accessors and the hub calls test_hub.c leaves out: thread id,
 * name and done; ivy_self; ivy_hub_set_stall_threshold; ivy_hub_free's -EBUSY.
 */
#include <ivy/ivy.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static ivy_thread *seen_self;

static void *note_self(void *arg)
{
    seen_self = ivy_self();
    *(bool *)arg = ivy_thread_done(seen_self); /* false: it is running */
    return NULL;
}

static void id_name_done_and_self(void **state)
{
    bool done_inside = true;
    ivy_thread *a = ivy_spawn(note_self, &done_inside);
    ivy_thread *b = ivy_spawn(note_self, &done_inside);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(ivy_thread_id(b), ivy_thread_id(a) + 1); /* in spawn order, never reused */
    assert_null(ivy_thread_name(a));
    static const char name[] = "conn-42";
    ivy_thread_set_name(a, name);
    assert_ptr_equal(ivy_thread_name(a), name); /* not copied */
    ivy_thread_set_name(a, NULL);
    assert_null(ivy_thread_name(a));
    assert_false(ivy_thread_done(a));
    assert_null(ivy_self()); /* not a green thread */
    assert_int_equal(ivy_run(), 0);
    assert_ptr_equal(seen_self, b);
    assert_false(done_inside);
    assert_true(ivy_thread_done(a));
    assert_true(ivy_thread_done(b));
    uint64_t last = ivy_thread_id(b);
    assert_int_equal(ivy_join(a, NULL), 0);
    assert_int_equal(ivy_join(b, NULL), 0);
    ivy_thread *c = ivy_spawn(note_self, &done_inside);
    assert_int_equal(ivy_thread_id(c), last + 1);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(ivy_join(c, NULL), 0);
}

static void *busy_ms(void *arg)
{
    uint64_t t0 = ivy_now_ns(), ns = (uint64_t)(uintptr_t)arg * 1000000u;
    while (ivy_now_ns() - t0 < ns) {
    }
    return NULL;
}

static uint64_t stalls_of_busy(unsigned ms)
{
    struct ivy_hub_stats a, b;
    ivy_hub_stats(&a);
    ivy_spawn_n(busy_ms, (void *)(uintptr_t)ms);
    assert_int_equal(ivy_run(), 0);
    ivy_hub_stats(&b);
    return b.stalls - a.stalls;
}

static void stall_threshold_is_settable_and_zero_disables(void **state)
{
    assert_int_equal(stalls_of_busy(1), 0); /* hub set up, default threshold (100 ms) */
    assert_int_equal(stalls_of_busy(40), 0);
    ivy_hub_set_stall_threshold(0.020);
    assert_int_equal(stalls_of_busy(60), 1);
    ivy_hub_set_stall_threshold(0);
    assert_int_equal(stalls_of_busy(60), 0);
    ivy_hub_set_stall_threshold(0.1);
}

static void *try_hub_free(void *arg)
{
    *(int *)arg = ivy_hub_free();
    return NULL;
}

static void hub_free_is_ebusy_while_threads_live(void **state)
{
    int inside = 0;
    ivy_thread *t = ivy_spawn(try_hub_free, &inside);
    assert_int_equal(ivy_hub_free(), -EBUSY); /* t is alive (ready, not run) */
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(inside, -EBUSY); /* from inside the running hub */
    assert_int_equal(ivy_join(t, NULL), 0);
    assert_int_equal(ivy_hub_free(), 0);
    assert_int_equal(ivy_hub_free(), 0); /* none left: nothing to do */
    /* The next call that needs a hub makes a new one. */
    t = ivy_spawn(try_hub_free, &inside);
    assert_non_null(t);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(ivy_join(t, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(id_name_done_and_self),
        cmocka_unit_test(stall_threshold_is_settable_and_zero_disables),
        cmocka_unit_test(hub_free_is_ebusy_while_threads_live),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
