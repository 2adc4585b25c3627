/*
 * Tests for runtime/greenlet.c: throw (into suspended, current, unstarted greenlets), errors and
 * exits reaching parents, every error a caller can cause, and freeing live greenlets, all under
 * ASan/LSan for leak-freedom. Switch and parent semantics are in test_greenlet.c.
 */
#include "greenlet_test.h"

#include <errno.h>
#include <pthread.h>

static ivy_greenlet *ga, *gb, *gc;

/* ---- 5, 6. throw --------------------------------------------------------------------------- */

enum throw_mode { HANDLE, PROPAGATE };
static enum throw_mode throw_mode;
static bool ran;

static void *catcher(void *arg)
{
    ran = true;
    void *v = SENTINEL;
    int rc = ivy_switch(main_g, V(1), &v);
    trace("caught:rc=%d,v=%s", rc, v == NULL ? "NULL" : v == SENTINEL ? "untouched" : "set");
    if (rc < 0 && throw_mode == PROPAGATE) return ivy_err_ptr(rc);
    rc = ivy_switch(main_g, V(2), &v);
    trace("caught-again:rc=%d", rc);
    return V(3);
}

/* A catcher in the given mode, started and waiting in its switch to main. */
static ivy_greenlet *start_catcher(enum throw_mode mode)
{
    trace_reset();
    throw_mode = mode;
    ivy_greenlet *g = ivy_greenlet_new(catcher, NULL, 0);
    void *out;
    assert_int_equal(ivy_switch(g, NULL, &out), 0);
    assert_ptr_equal(out, V(1));
    return g;
}

static void throw_into_suspended_greenlet_makes_its_switch_report_error(void **state)
{
    (void)state;
    ivy_greenlet *g = start_catcher(HANDLE);
    void *out = SENTINEL;
    assert_int_equal(ivy_throw(g, -EIO, &out), 0); /* g handled it and switched back */
    assert_ptr_equal(out, V(2));
    assert_string_equal(trace_buf, "caught:rc=-5,v=NULL");
    assert_true(ivy_greenlet_active(g));
    assert_int_equal(ivy_switch(g, NULL, &out), 0);
    assert_ptr_equal(out, V(3));
    assert_string_equal(trace_buf, "caught:rc=-5,v=NULL caught-again:rc=0");
    assert_true(ivy_greenlet_dead(g));
    assert_int_equal(ivy_greenlet_free(g), 0);
}

static void unhandled_error_reaches_parent_as_error(void **state)
{
    (void)state;
    ivy_greenlet *g = start_catcher(PROPAGATE);
    void *out = SENTINEL;
    assert_int_equal(ivy_throw(g, -ECONNRESET, &out), -ECONNRESET);
    assert_null(out);
    assert_true(ivy_greenlet_dead(g));
    assert_string_equal(trace_buf, "caught:rc=-104,v=NULL");
    assert_int_equal(ivy_greenlet_free(g), 0);
}

static void exit_reaches_parent_as_normal_value(void **state)
{
    (void)state;
    ivy_greenlet *g = start_catcher(PROPAGATE);
    void *out = SENTINEL;
    assert_int_equal(ivy_throw(g, IVY_EXIT, &out), 0);
    assert_ptr_equal(out, ivy_err_ptr(IVY_EXIT));
    assert_int_equal(ivy_ptr_err(out), IVY_EXIT);
    assert_true(ivy_greenlet_dead(g));
    assert_string_equal(trace_buf, "caught:rc=-4095,v=NULL");
    assert_int_equal(ivy_greenlet_free(g), 0);
}

static void throw_into_current_greenlet_returns_error_at_once(void **state)
{
    (void)state;
    void *out = SENTINEL;
    assert_int_equal(ivy_throw(ivy_current(), -EAGAIN, &out), -EAGAIN);
    assert_null(out);
    assert_true(ivy_greenlet_active(ivy_current()));
}

static void throw_into_unstarted_greenlet_kills_it_without_running(void **state)
{
    (void)state;
    ran = false;
    ivy_greenlet *g = ivy_greenlet_new(catcher, NULL, 0);
    void *out = SENTINEL;
    assert_int_equal(ivy_throw(g, -EPIPE, &out), -EPIPE);
    assert_null(out);
    assert_false(ran);
    assert_true(ivy_greenlet_dead(g));
    assert_false(ivy_greenlet_active(g));
    assert_true(ivy_greenlet_started(g)); /* dead implies started, as greenlet's .dead */
    /* It stays dead: a switch to it goes to its parent, the caller. */
    assert_int_equal(ivy_switch(g, V(9), &out), 0);
    assert_ptr_equal(out, V(9));
    assert_false(ran);
    assert_int_equal(ivy_greenlet_free(g), 0);

    g = ivy_greenlet_new(catcher, NULL, 0);
    out = SENTINEL;
    assert_int_equal(ivy_throw(g, IVY_EXIT, &out), 0);
    assert_ptr_equal(out, ivy_err_ptr(IVY_EXIT));
    assert_false(ran);
    assert_true(ivy_greenlet_dead(g));
    assert_int_equal(ivy_greenlet_free(g), 0);
}

/* The error goes to the unstarted greenlet's parent, not to the thrower. */
static void *parent_of_unstarted(void *arg)
{
    gb = ivy_greenlet_new(catcher, NULL, 0); /* its parent: this greenlet */
    void *v;
    int rc = ivy_switch(main_g, NULL, &v);
    trace("parent-got:rc=%d", rc);
    rc = ivy_switch(main_g, V(N(v) + 5), &v);
    return ivy_err_ptr(rc);
}

static void throw_into_unstarted_greenlet_hands_error_to_its_parent(void **state)
{
    (void)state;
    trace_reset();
    ran = false;
    ga = ivy_greenlet_new(parent_of_unstarted, NULL, 0);
    assert_int_equal(ivy_switch(ga, NULL, NULL), 0);
    void *out = SENTINEL;
    assert_int_equal(ivy_throw(gb, -ETIMEDOUT, &out), 0); /* ga handled it, sent 5 */
    assert_ptr_equal(out, V(5));
    assert_false(ran);
    assert_true(ivy_greenlet_dead(gb));
    assert_string_equal(trace_buf, "parent-got:rc=-110");
    assert_int_equal(ivy_greenlet_free(gb), 0);
    assert_int_equal(ivy_greenlet_free(ga), 0);
}

/* ---- 7. errors ------------------------------------------------------------------------- */

static void *nop(void *arg)
{
    return arg;
}

static void set_parent_refuses_cycles(void **state)
{
    (void)state;
    ivy_greenlet *m = ivy_current();
    ivy_greenlet *a = ivy_greenlet_new(nop, NULL, 0);
    ivy_greenlet *b = ivy_greenlet_new(nop, NULL, 0);
    ivy_greenlet *c = ivy_greenlet_new(nop, NULL, 0);
    assert_int_equal(ivy_greenlet_set_parent(b, a), 0);
    assert_int_equal(ivy_greenlet_set_parent(c, b), 0);
    assert_ptr_equal(ivy_greenlet_parent(c), b);
    assert_int_equal(ivy_greenlet_set_parent(a, c), -EINVAL); /* a <- b <- c <- a */
    assert_int_equal(ivy_greenlet_set_parent(a, a), -EINVAL);
    assert_int_equal(ivy_greenlet_set_parent(m, a), -EINVAL); /* main has no parent */
    assert_int_equal(ivy_greenlet_set_parent(a, NULL), -EINVAL);
    assert_int_equal(ivy_greenlet_set_parent(NULL, a), -EINVAL);
    assert_ptr_equal(ivy_greenlet_parent(a), m); /* refusals change nothing */
    assert_ptr_equal(ivy_greenlet_parent(b), a);
    assert_null(ivy_greenlet_parent(m));

    /* The new parent is where run's result goes. */
    assert_int_equal(ivy_greenlet_set_parent(c, m), 0);
    void *out;
    assert_int_equal(ivy_switch(c, V(8), &out), 0);
    assert_ptr_equal(out, V(8));
    assert_true(ivy_greenlet_dead(c));
    assert_false(ivy_greenlet_started(a));
    assert_int_equal(ivy_greenlet_free(c), 0);
    assert_int_equal(ivy_greenlet_free(b), 0);
    assert_int_equal(ivy_greenlet_free(a), 0);
}

struct cross {
    ivy_greenlet *g;
    int sw, th, fr, sp, sp2;
    ivy_greenlet *made;
    int made_errno;
    bool other_main_ok;
};

static void *other_thread(void *arg)
{
    struct cross *x = arg;
    void *out = SENTINEL;
    x->sw = ivy_switch(x->g, NULL, &out);
    x->th = ivy_throw(x->g, -EIO, NULL);
    x->fr = ivy_greenlet_free(x->g);
    x->sp = ivy_greenlet_set_parent(x->g, ivy_current());
    ivy_greenlet *t = ivy_greenlet_new(nop, NULL, 0); /* this thread's own greenlet is fine */
    x->sp2 = ivy_greenlet_set_parent(t, x->g);
    if (t) ivy_greenlet_free(t);
    errno = 0;
    x->made = ivy_greenlet_new(nop, x->g, 0);
    x->made_errno = errno;
    ivy_greenlet *m = ivy_current();
    x->other_main_ok = ivy_greenlet_is_main(m) && m != x->g && out == SENTINEL;
    return NULL;
}

static void calls_from_another_thread_are_refused(void **state)
{
    (void)state;
    struct cross x = {.g = ivy_greenlet_new(nop, NULL, 0)};
    assert_non_null(x.g);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, other_thread, &x), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(x.sw, -EPERM);
    assert_int_equal(x.th, -EPERM);
    assert_int_equal(x.fr, -EPERM);
    assert_int_equal(x.sp, -EPERM);
    assert_int_equal(x.sp2, -EPERM);
    assert_null(x.made);
    assert_int_equal(x.made_errno, EPERM);
    assert_true(x.other_main_ok);
    assert_false(ivy_greenlet_started(x.g)); /* untouched */
    assert_ptr_equal(ivy_greenlet_parent(x.g), ivy_current());
    assert_int_equal(ivy_greenlet_free(x.g), 0);
}

static int free_self_rc, free_main_rc;

static void *free_self_and_main(void *arg)
{
    free_self_rc = ivy_greenlet_free(ivy_current());
    free_main_rc = ivy_greenlet_free(main_g);
    return NULL;
}

static void free_refuses_current_and_main(void **state)
{
    (void)state;
    assert_int_equal(ivy_greenlet_free(main_g), -EINVAL);
    ivy_greenlet *g = ivy_greenlet_new(free_self_and_main, NULL, 0);
    assert_int_equal(ivy_switch(g, NULL, NULL), 0);
    assert_int_equal(free_self_rc, -EBUSY);
    assert_int_equal(free_main_rc, -EINVAL);
    assert_int_equal(ivy_greenlet_free(g), 0);
    assert_int_equal(ivy_greenlet_free(NULL), 0);
}

static void throw_refuses_non_negative_or_unknown_errors(void **state)
{
    (void)state;
    ran = false;
    ivy_greenlet *g = ivy_greenlet_new(catcher, NULL, 0);
    void *out = SENTINEL;
    assert_int_equal(ivy_throw(g, 0, &out), -EINVAL);
    assert_int_equal(ivy_throw(g, 1, &out), -EINVAL);
    assert_int_equal(ivy_throw(g, IVY_EXIT - 1, &out), -EINVAL);
    assert_ptr_equal(out, SENTINEL);
    assert_false(ivy_greenlet_started(g)); /* nothing happened to it */
    assert_false(ran);
    assert_int_equal(ivy_greenlet_free(g), 0);
    assert_false(ran); /* freeing an unstarted greenlet does not run it */
}

static void new_refuses_null_run_and_tiny_stacks(void **state)
{
    (void)state;
    errno = 0;
    assert_null(ivy_greenlet_new(NULL, NULL, 0));
    assert_int_equal(errno, EINVAL);
    size_t def = ivy_stack_default_size();
    assert_int_equal(ivy_stack_set_default_size(16 * 1024 - 1), -EINVAL);
    assert_int_equal(ivy_stack_default_size(), def);
}

/* ---- 11. freeing ----------------------------------------------------------------------- */

static void *kid(void *arg)
{
    void *v;
    int rc = ivy_switch(main_g, V(1), &v);
    trace("kid:rc=%d", rc);
    return V(N(v) + 1);
}

/* Starts a kid (its child), then suspends to main; reports how its pending switch ended. */
static void *doomed(void *arg)
{
    gc = ivy_greenlet_new(kid, NULL, 0);
    gb = ivy_greenlet_new(nop, NULL, 0); /* never started */
    ivy_switch(gc, NULL, NULL);
    void *v = SENTINEL;
    int rc = ivy_switch(main_g, V(2), &v);
    trace("doomed:rc=%d,v=%s", rc, v ? "set" : "NULL");
    return ivy_err_ptr(rc);
}

static void free_suspended_greenlet_kills_it_with_exit_and_reparents_children(void **state)
{
    (void)state;
    trace_reset();
    ivy_greenlet *p = ivy_greenlet_new(nop, NULL, 0); /* doomed's parent, other than main */
    ga = ivy_greenlet_new(doomed, p, 0);
    void *out;
    assert_int_equal(ivy_switch(ga, NULL, &out), 0);
    assert_ptr_equal(out, V(1)); /* from kid, suspended */
    assert_int_equal(ivy_switch(ga, NULL, &out), 0);
    assert_ptr_equal(out, V(2)); /* doomed, suspended */
    assert_ptr_equal(ivy_greenlet_parent(gc), ga);
    assert_ptr_equal(ivy_greenlet_parent(gb), ga);

    assert_int_equal(ivy_greenlet_free(ga), 0);
    assert_string_equal(trace_buf, "doomed:rc=-4095,v=NULL");
    /* Its children now hang under its parent, and p never ran. */
    assert_ptr_equal(ivy_greenlet_parent(gc), p);
    assert_ptr_equal(ivy_greenlet_parent(gb), p);
    assert_false(ivy_greenlet_started(p));
    assert_true(ivy_greenlet_active(gc));

    /* The kid goes on; its result starts p, whose result comes to main. */
    assert_int_equal(ivy_switch(gc, V(30), &out), 0);
    assert_ptr_equal(out, V(31));
    assert_true(ivy_greenlet_dead(p));
    assert_string_equal(trace_buf, "doomed:rc=-4095,v=NULL kid:rc=0");
    assert_int_equal(ivy_greenlet_free(gc), 0);
    assert_int_equal(ivy_greenlet_free(gb), 0);
    assert_int_equal(ivy_greenlet_free(p), 0);
}

/* A greenlet frees its own suspended parent: the kill must come back here, with no cycle. */
static int free_parent_rc;

static void *frees_its_parent(void *arg)
{
    free_parent_rc = ivy_greenlet_free(ga);
    trace("after-free:parent-is-main=%d", ivy_greenlet_parent(ivy_current()) == main_g);
    return V(5);
}

static void *suspends_under_child(void *arg)
{
    gb = ivy_greenlet_new(frees_its_parent, NULL, 0);
    void *v;
    ivy_switch(main_g, NULL, &v);
    int rc = ivy_switch(gb, NULL, &v);
    trace("parent:rc=%d", rc);
    return ivy_err_ptr(rc);
}

static void free_of_suspended_ancestor_from_descendant_makes_no_cycle(void **state)
{
    (void)state;
    trace_reset();
    ga = ivy_greenlet_new(suspends_under_child, NULL, 0);
    assert_int_equal(ivy_switch(ga, NULL, NULL), 0);
    void *out;
    assert_int_equal(ivy_switch(ga, NULL, &out), 0); /* ga -> gb, gb frees ga, returns 5 */
    assert_ptr_equal(out, V(5));
    assert_int_equal(free_parent_rc, 0);
    assert_string_equal(trace_buf, "parent:rc=-4095 after-free:parent-is-main=1");
    assert_true(ivy_greenlet_dead(gb));
    assert_int_equal(ivy_greenlet_free(gb), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(throw_into_suspended_greenlet_makes_its_switch_report_error),
        cmocka_unit_test(unhandled_error_reaches_parent_as_error),
        cmocka_unit_test(exit_reaches_parent_as_normal_value),
        cmocka_unit_test(throw_into_current_greenlet_returns_error_at_once),
        cmocka_unit_test(throw_into_unstarted_greenlet_kills_it_without_running),
        cmocka_unit_test(throw_into_unstarted_greenlet_hands_error_to_its_parent),
        cmocka_unit_test(set_parent_refuses_cycles),
        cmocka_unit_test(calls_from_another_thread_are_refused),
        cmocka_unit_test(free_refuses_current_and_main),
        cmocka_unit_test(throw_refuses_non_negative_or_unknown_errors),
        cmocka_unit_test(new_refuses_null_run_and_tiny_stacks),
        cmocka_unit_test(free_suspended_greenlet_kills_it_with_exit_and_reparents_children),
        cmocka_unit_test(free_of_suspended_ancestor_from_descendant_makes_no_cycle),
    };
    return cmocka_run_group_tests(tests, find_main_greenlet, NULL);
}
