/*
 * Tests for runtime/timeout.c: scoped deadlines misused. A thread that returns with a scope open
 * and scopes ended out of order must leave no timer armed: the timer would point at memory the
 * next thread on the recycled stack overwrites (a SIGSEGV in the hub before the fix).
 */
#include <ivy/ivy.h>

#include "hub_impl.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static unsigned armed_timers(void)
{
    return ivy__hub_tls ? ivy__hub_tls->timers.n : 0;
}

/* Fills the stack below its own frame the way a busy thread would, then sleeps past 20 ms. */
static __attribute__((noinline)) void scribble(void)
{
    volatile unsigned char junk[8192];
    memset((void *)junk, 0xa5, sizeof junk);
}

static void *scribble_and_sleep(void *arg)
{
    scribble();
    assert_int_equal(ivy_sleep(0.040), 0);
    return NULL;
}

static __attribute__((noinline)) void *return_inside_scope(void *arg)
{
    struct ivy_timeout to;
    assert_int_equal(ivy_timeout_begin(&to, 0.020), 0);
    return NULL; /* the scope is never ended */
}

static void thread_returning_inside_a_scope_leaves_no_timer(void **state)
{
    ivy_thread *t = ivy_spawn(return_inside_scope, NULL);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(ivy_join(t, NULL), 0);
    /* The next thread gets the same stack; the old scope's timer would fire into its frames. */
    ivy_spawn_n(scribble_and_sleep, NULL);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(armed_timers(), 0);
}

static void *misordered_end(void *arg)
{
    int *rc = arg;
    struct ivy_timeout outer, inner;
    assert_int_equal(ivy_timeout_begin(&outer, 0.020), 0);
    assert_int_equal(ivy_timeout_begin(&inner, 0.020), 0);
    rc[0] = ivy_timeout_end(&outer); /* ends outer and inner */
    rc[1] = (int)armed_timers();
    rc[2] = ivy_timeout_end(&inner); /* already ended with outer */
    rc[3] = ivy_timeout_end(&outer); /* already ended */
    rc[4] = ivy_sleep(0.040);        /* no scope left to expire */
    return NULL;
}

static void ending_an_outer_scope_first_ends_it_and_the_inner_ones(void **state)
{
    int rc[5];
    ivy_spawn_n(misordered_end, rc);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(rc[0], -EINVAL);
    assert_int_equal(rc[1], 0);
    assert_int_equal(rc[2], -EINVAL);
    assert_int_equal(rc[3], -EINVAL);
    assert_int_equal(rc[4], 0);
    ivy_spawn_n(scribble_and_sleep, NULL);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(armed_timers(), 0);
}

static void *expired_inner_ended_by_outer(void *arg)
{
    int *rc = arg;
    struct ivy_timeout outer, middle, inner;
    assert_int_equal(ivy_timeout_begin(&outer, 5.0), 0);
    assert_int_equal(ivy_timeout_begin(&middle, 5.0), 0);
    assert_int_equal(ivy_timeout_begin(&inner, 0.010), 0);
    rc[0] = ivy_sleep(1.0);           /* inner expires */
    rc[1] = ivy_timeout_end(&middle); /* ends middle and the expired inner */
    rc[2] = ivy_sleep(0.001);         /* nothing expired is still open */
    rc[3] = (int)armed_timers();      /* outer's only */
    rc[4] = ivy_timeout_end(&outer);  /* in order now: not expired */
    return NULL;
}

static void an_expired_scope_ended_with_its_outer_one_stops_failing_calls(void **state)
{
    int rc[5];
    ivy_spawn_n(expired_inner_ended_by_outer, rc);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(rc[0], -ETIMEDOUT);
    assert_int_equal(rc[1], -EINVAL);
    assert_int_equal(rc[2], 0);
    assert_int_equal(rc[3], 1);
    assert_int_equal(rc[4], 0);
    assert_int_equal(armed_timers(), 0);
}

static struct ivy_timeout shared;

static void *begin_shared_and_wait(void *arg)
{
    ivy_event *e = arg;
    assert_int_equal(ivy_timeout_begin(&shared, 5.0), 0);
    assert_int_equal(ivy_event_wait(e, -1), 0);
    assert_int_equal(ivy_timeout_end(&shared), 0);
    return NULL;
}

static void *end_someone_elses_scope(void *arg)
{
    ivy_event *e = arg;
    assert_int_equal(ivy_timeout_end(&shared), -EINVAL); /* not this thread's */
    assert_int_equal(armed_timers(), 1);                 /* and left alone */
    ivy_event_set(e);
    return NULL;
}

static void *end_never_begun(void *arg)
{
    struct ivy_timeout to;
    memset(&to, 0, sizeof to);
    assert_int_equal(ivy_timeout_end(&to), -EINVAL);
    assert_int_equal(ivy_timeout_begin(&to, -1.0), -EINVAL);
    assert_int_equal(ivy_timeout_begin(&to, 0.0 / 0.0), -EINVAL);
    assert_int_equal(ivy_timeout_end(&to), -EINVAL);
    return NULL;
}

static void misuse_is_refused_and_changes_nothing(void **state)
{
    struct ivy_timeout to;
    assert_int_equal(ivy_timeout_begin(&to, 1.0), -EPERM); /* not a green thread */
    assert_int_equal(ivy_timeout_end(&to), -EINVAL);
    ivy_event *e = ivy_event_new();
    assert_non_null(e);
    ivy_spawn_n(begin_shared_and_wait, e);
    ivy_spawn_n(end_someone_elses_scope, e);
    ivy_spawn_n(end_never_begun, NULL);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(armed_timers(), 0);
    ivy_event_free(e);
}

static void *killed_inside_scopes(void *arg)
{
    struct ivy_timeout a, b;
    assert_int_equal(ivy_timeout_begin(&a, 0.020), 0);
    assert_int_equal(ivy_timeout_begin(&b, 0.020), 0);
    return ivy_err_ptr(ivy_sleep(5.0)); /* killed: returns without ending either */
}

static void *kill_arg(void *arg)
{
    assert_int_equal(ivy_kill(arg), 0);
    return NULL;
}

static void a_killed_thread_leaves_its_scopes_ended(void **state)
{
    ivy_thread *t = ivy_spawn(killed_inside_scopes, NULL);
    ivy_spawn_n(kill_arg, t);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(ivy_join(t, NULL), -ECANCELED); /* its sleep's error, as ivy_err_ptr */
    assert_int_equal(armed_timers(), 0);
    ivy_spawn_n(scribble_and_sleep, NULL);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(ivy_hub_free(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(thread_returning_inside_a_scope_leaves_no_timer),
        cmocka_unit_test(ending_an_outer_scope_first_ends_it_and_the_inner_ones),
        cmocka_unit_test(an_expired_scope_ended_with_its_outer_one_stops_failing_calls),
        cmocka_unit_test(misuse_is_refused_and_changes_nothing),
        cmocka_unit_test(a_killed_thread_leaves_its_scopes_ended),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
