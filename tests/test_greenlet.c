/*
 * Tests for runtime/greenlet.c: switching, run's argument and result, parents, dead greenlets
 * and the states a caller can observe, with the semantics of Python's greenlet as DESIGN.md §1
 * states them, and leak-freedom under ASan/LSan. Throw, the errors a caller can cause and
 * freeing are in test_greenlet_errors.c; depth, volume, the floating-point control words and
 * fault reports in test_greenlet_stack.c.
 */
#include "greenlet_test.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>

/* ---- 1. the seeds' example ------------------------------------------------------------- */

static ivy_greenlet *gr1, *gr2;
static FILE *seeds_out;

static void *seeds_test1(void *arg)
{
    const char **xy = arg;
    char sum[64];
    snprintf(sum, sizeof sum, "%s%s", xy[0], xy[1]);
    void *z;
    ivy_switch(gr2, sum, &z);
    fprintf(seeds_out, "%d\n", (int)(intptr_t)z);
    return NULL;
}

static void *seeds_test2(void *u)
{
    fprintf(seeds_out, "%s\n", (const char *)u);
    ivy_switch(gr1, V(42), NULL);
    return NULL;
}

static void seeds_example_prints_hello_world_then_42(void **state)
{
    (void)state;
    /* The example's logic, in this process, writing to memory. */
    char *text = NULL;
    size_t len = 0;
    seeds_out = open_memstream(&text, &len);
    assert_non_null(seeds_out);
    gr1 = ivy_greenlet_new(seeds_test1, NULL, 0);
    gr2 = ivy_greenlet_new(seeds_test2, NULL, 0);
    assert_non_null(gr1);
    assert_non_null(gr2);
    const char *args[] = {"hello", " world"};
    void *out = SENTINEL;
    assert_int_equal(ivy_switch(gr1, args, &out), 0);
    assert_null(out); /* test1 returned NULL to main, its parent */
    assert_true(ivy_greenlet_dead(gr1));
    assert_true(ivy_greenlet_active(gr2)); /* test2 never finished, as in the seeds */
    assert_int_equal(ivy_greenlet_free(gr2), 0);
    assert_int_equal(ivy_greenlet_free(gr1), 0);
    fclose(seeds_out);
    assert_string_equal(text, "hello world\n42\n");
    free(text);

    /* The built example program, exactly. */
    char path[PATH_MAX];
    const char *dir = getenv("IVY_BUILD_DIR");
    if (dir) {
        snprintf(path, sizeof path, "%s/examples/hello_greenlet", dir);
    } else {
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        assert_true(n > 0);
        self[n] = '\0';
        snprintf(path, sizeof path, "%s/../examples/hello_greenlet", dirname(self));
    }
    char buf[256];
    int status;
    char *argv[] = {path, NULL};
    run_capture(path, argv, 1, buf, sizeof buf, &status);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_string_equal(buf, "hello world\n42\n");
}

/* ---- 2, 3. run's argument and result --------------------------------------------------- */

static void *seen_arg;
static ivy_greenlet *seen_current;

static void *record_arg_return_it(void *arg)
{
    seen_arg = arg;
    seen_current = ivy_current();
    return arg;
}

static void switch_into_new_greenlet_passes_value_as_run_argument(void **state)
{
    (void)state;
    int x;
    ivy_greenlet *g = ivy_greenlet_new(record_arg_return_it, NULL, 0);
    assert_non_null(g);
    void *out = SENTINEL;
    assert_int_equal(ivy_switch(g, &x, &out), 0);
    assert_ptr_equal(seen_arg, &x);
    assert_ptr_equal(seen_current, g);
    assert_ptr_equal(out, &x);
    assert_int_equal(ivy_greenlet_free(g), 0);

    /* NULL is a value like any other, and out may be NULL. */
    g = ivy_greenlet_new(record_arg_return_it, NULL, 0);
    seen_arg = SENTINEL;
    assert_int_equal(ivy_switch(g, NULL, NULL), 0);
    assert_null(seen_arg);
    assert_int_equal(ivy_greenlet_free(g), 0);
}

static ivy_greenlet *ga, *gb, *gc;

/* Suspends to main, then reports the value its pending switch got and switches back. */
static void *waiter(void *arg)
{
    void *v;
    int rc = ivy_switch(main_g, V(N(arg) + 1), &v);
    trace("waiter:rc=%d,v=%lu", rc, (unsigned long)N(v));
    rc = ivy_switch(main_g, V(N(v) + 1), &v);
    trace("waiter-end:rc=%d", rc);
    return ivy_err_ptr(rc < 0 ? rc : 0);
}

static void *return_arg_times_10(void *arg)
{
    trace("c:%lu", (unsigned long)N(arg));
    return V(N(arg) * 10);
}

static void run_return_resumes_parent_not_the_switcher(void **state)
{
    (void)state;
    trace_reset();
    ga = ivy_greenlet_new(waiter, NULL, 0);
    void *out;
    assert_int_equal(ivy_switch(ga, V(1), &out), 0);
    assert_ptr_equal(out, V(2)); /* ga waits in its switch to main */

    /* gc's parent is ga; main switches into gc, and gc's result goes to ga. */
    gc = ivy_greenlet_new(return_arg_times_10, ga, 0);
    assert_ptr_equal(ivy_greenlet_parent(gc), ga);
    assert_int_equal(ivy_switch(gc, V(7), &out), 0);
    assert_ptr_equal(out, V(71)); /* ga got 70 and sent 71 back to main */
    assert_string_equal(trace_buf, "c:7 waiter:rc=0,v=70");
    assert_true(ivy_greenlet_dead(gc));
    assert_int_equal(ivy_greenlet_free(gc), 0);
    assert_int_equal(ivy_greenlet_free(ga), 0); /* ga is killed in its second switch */
    assert_string_equal(trace_buf, "c:7 waiter:rc=0,v=70 waiter-end:rc=-4095");
}

/* P: starts C (its child), which suspends to main; P then returns what main sends it. */
static void *grand_c(void *arg)
{
    void *v;
    ivy_switch(main_g, V(100), &v);
    trace("c-resumed:%lu", (unsigned long)N(v));
    return V(N(v) + 1);
}

static void *grand_p(void *arg)
{
    gc = ivy_greenlet_new(grand_c, NULL, 0); /* parent: P, the creator */
    trace("c-parent-is-p:%d", ivy_greenlet_parent(gc) == ivy_current());
    void *v;
    ivy_switch(gc, NULL, &v);
    trace("p-resumed:%lu", (unsigned long)N(v));
    return V(N(v) + 1);
}

static void run_return_with_dead_parent_goes_to_grandparent(void **state)
{
    (void)state;
    trace_reset();
    ga = ivy_greenlet_new(grand_p, NULL, 0);
    void *out;
    assert_int_equal(ivy_switch(ga, NULL, &out), 0);
    assert_ptr_equal(out, V(100)); /* from C, straight to main */
    assert_int_equal(ivy_switch(ga, V(5), &out), 0);
    assert_ptr_equal(out, V(6)); /* P returned to main */
    assert_true(ivy_greenlet_dead(ga));
    assert_true(ivy_greenlet_active(gc));
    assert_ptr_equal(ivy_greenlet_parent(gc), ga); /* still P, though dead */

    assert_int_equal(ivy_switch(gc, V(20), &out), 0);
    assert_ptr_equal(out, V(21)); /* C returned: P is dead, so main got it */
    assert_true(ivy_greenlet_dead(gc));
    assert_string_equal(trace_buf, "c-parent-is-p:1 p-resumed:5 c-resumed:20");
    assert_int_equal(ivy_greenlet_free(gc), 0);
    assert_int_equal(ivy_greenlet_free(ga), 0);
}

static void run_return_starts_unstarted_parent_with_value(void **state)
{
    (void)state;
    trace_reset();
    ga = ivy_greenlet_new(return_arg_times_10, NULL, 0);
    gb = ivy_greenlet_new(return_arg_times_10, ga, 0);
    void *out;
    assert_int_equal(ivy_switch(gb, V(3), &out), 0);
    assert_ptr_equal(out, V(300)); /* gb returned 30: ga started with it and returned 300 */
    assert_string_equal(trace_buf, "c:3 c:30");
    assert_true(ivy_greenlet_dead(ga));
    assert_true(ivy_greenlet_dead(gb));
    assert_int_equal(ivy_greenlet_free(gb), 0);
    assert_int_equal(ivy_greenlet_free(ga), 0);
}

/* ---- 4. dead greenlets ----------------------------------------------------------------- */

static void *chain_b(void *arg)
{
    return V(2);
}

static void *chain_a(void *arg)
{
    gb = ivy_greenlet_new(chain_b, NULL, 0);
    void *v;
    ivy_switch(gb, NULL, &v);
    trace("a-got:%lu", (unsigned long)N(v));
    return V(1);
}

static void *chain_p(void *arg)
{
    ga = ivy_greenlet_new(chain_a, NULL, 0);
    void *v;
    ivy_switch(ga, NULL, &v);
    trace("p-got:%lu", (unsigned long)N(v));
    int rc = ivy_switch(main_g, V(10), &v);
    trace("p-resumed:rc=%d,v=%lu", rc, (unsigned long)N(v));
    rc = ivy_switch(main_g, V(N(v) + 1), &v);
    trace("p-end:rc=%d", rc);
    return ivy_err_ptr(rc);
}

static void switch_to_dead_greenlet_goes_to_nearest_live_ancestor(void **state)
{
    (void)state;
    trace_reset();
    gc = ivy_greenlet_new(chain_p, NULL, 0); /* P: main <- P <- A <- B */
    void *out;
    assert_int_equal(ivy_switch(gc, NULL, &out), 0);
    assert_ptr_equal(out, V(10));
    assert_true(ivy_greenlet_dead(ga));
    assert_true(ivy_greenlet_dead(gb));
    assert_true(ivy_greenlet_active(gc));

    /* B and A are dead: the value goes to P's pending switch. */
    assert_int_equal(ivy_switch(gb, V(40), &out), 0);
    assert_ptr_equal(out, V(41));
    assert_string_equal(trace_buf, "a-got:2 p-got:1 p-resumed:rc=0,v=40");

    /* A dead greenlet whose nearest live ancestor is the caller: the switch returns at once. */
    ivy_greenlet *d = ivy_greenlet_new(chain_b, NULL, 0);
    assert_int_equal(ivy_switch(d, NULL, &out), 0);
    assert_ptr_equal(out, V(2));
    out = SENTINEL;
    assert_int_equal(ivy_switch(d, V(77), &out), 0);
    assert_ptr_equal(out, V(77));
    assert_int_equal(ivy_greenlet_free(d), 0);

    /* A throw into a dead greenlet reaches its nearest live ancestor as the error. */
    out = SENTINEL;
    assert_int_equal(ivy_throw(gb, -EIO, &out), -EIO); /* P got it, died of it: main gets it */
    assert_null(out);
    assert_string_equal(trace_buf, "a-got:2 p-got:1 p-resumed:rc=0,v=40 p-end:rc=-5");
    assert_int_equal(ivy_greenlet_free(gb), 0);
    assert_int_equal(ivy_greenlet_free(ga), 0);
    assert_int_equal(ivy_greenlet_free(gc), 0);
}

static void *fail_enoent(void *arg)
{
    return ivy_err_ptr(-ENOENT);
}

static void run_returning_error_pointer_reaches_parent_as_error(void **state)
{
    (void)state;
    ivy_greenlet *g = ivy_greenlet_new(fail_enoent, NULL, 0);
    void *out = SENTINEL;
    assert_int_equal(ivy_switch(g, NULL, &out), -ENOENT);
    assert_null(out);
    assert_true(ivy_greenlet_dead(g));
    assert_int_equal(ivy_greenlet_free(g), 0);

    /* Through a dead parent, to the grandparent, still as an error. */
    ga = ivy_greenlet_new(chain_b, NULL, 0);
    assert_int_equal(ivy_switch(ga, NULL, NULL), 0);
    g = ivy_greenlet_new(fail_enoent, ga, 0);
    assert_int_equal(ivy_switch(g, NULL, &out), -ENOENT);
    assert_int_equal(ivy_greenlet_free(g), 0);
    assert_int_equal(ivy_greenlet_free(ga), 0);
}

/* ---- 8. states ------------------------------------------------------------------------- */

struct seen_state {
    bool started, active, dead, is_main, current_is_g, parent_is_main, main_active;
};
static struct seen_state inside[2];

static void *observe(void *arg)
{
    ivy_greenlet *g = arg;
    for (int i = 0; i < 2; i++) {
        inside[i] = (struct seen_state){
            .started = ivy_greenlet_started(g),
            .active = ivy_greenlet_active(g),
            .dead = ivy_greenlet_dead(g),
            .is_main = ivy_greenlet_is_main(g),
            .current_is_g = ivy_current() == g,
            .parent_is_main = ivy_greenlet_parent(g) == main_g,
            .main_active = ivy_greenlet_active(main_g) && !ivy_greenlet_dead(main_g),
        };
        if (i == 0) ivy_switch(main_g, NULL, NULL);
    }
    return NULL;
}

static void states_are_observable_at_each_step(void **state)
{
    (void)state;
    assert_non_null(main_g);
    assert_true(ivy_greenlet_is_main(main_g));
    assert_true(ivy_greenlet_started(main_g));
    assert_true(ivy_greenlet_active(main_g));
    assert_false(ivy_greenlet_dead(main_g));
    assert_null(ivy_greenlet_parent(main_g));
    assert_string_equal(ivy_greenlet_name(main_g), "main");

    ivy_greenlet *g = ivy_greenlet_new(observe, NULL, 0);
    assert_false(ivy_greenlet_started(g));
    assert_false(ivy_greenlet_active(g));
    assert_false(ivy_greenlet_dead(g));
    assert_false(ivy_greenlet_is_main(g));
    assert_ptr_equal(ivy_greenlet_parent(g), main_g);
    assert_null(ivy_greenlet_name(g));
    ivy_greenlet_set_name(g, "observer");
    assert_string_equal(ivy_greenlet_name(g), "observer");
    assert_int_equal(ivy_greenlet_stack_size(g), ivy_stack_default_size());
    assert_ptr_equal(ivy_current(), main_g);

    /* Running. */
    assert_int_equal(ivy_switch(g, g, NULL), 0);
    assert_true(inside[0].started);
    assert_true(inside[0].active);
    assert_false(inside[0].dead);
    assert_false(inside[0].is_main);
    assert_true(inside[0].current_is_g);
    assert_true(inside[0].parent_is_main);
    assert_true(inside[0].main_active);
    /* Suspended. */
    assert_ptr_equal(ivy_current(), main_g);
    assert_true(ivy_greenlet_started(g));
    assert_true(ivy_greenlet_active(g));
    assert_false(ivy_greenlet_dead(g));
    /* Resumed, then dead. */
    assert_int_equal(ivy_switch(g, NULL, NULL), 0);
    assert_true(inside[1].started && inside[1].active && !inside[1].dead);
    assert_true(inside[1].current_is_g);
    assert_true(ivy_greenlet_started(g));
    assert_false(ivy_greenlet_active(g));
    assert_true(ivy_greenlet_dead(g));
    assert_ptr_equal(ivy_current(), main_g);
    assert_int_equal(ivy_greenlet_free(g), 0);

    /* A stack size of one's own, rounded up to pages. */
    g = ivy_greenlet_new(observe, NULL, 64 * 1024 + 1);
    assert_int_equal(ivy_greenlet_stack_size(g), 64 * 1024 + sysconf(_SC_PAGESIZE));
    assert_int_equal(ivy_greenlet_free(g), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(seeds_example_prints_hello_world_then_42),
        cmocka_unit_test(switch_into_new_greenlet_passes_value_as_run_argument),
        cmocka_unit_test(run_return_resumes_parent_not_the_switcher),
        cmocka_unit_test(run_return_with_dead_parent_goes_to_grandparent),
        cmocka_unit_test(run_return_starts_unstarted_parent_with_value),
        cmocka_unit_test(switch_to_dead_greenlet_goes_to_nearest_live_ancestor),
        cmocka_unit_test(run_returning_error_pointer_reaches_parent_as_error),
        cmocka_unit_test(states_are_observable_at_each_step),
    };
    return cmocka_run_group_tests(tests, find_main_greenlet, NULL);
}
