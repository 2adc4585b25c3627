/*
 * Tests for runtime/greenlet.c: the semantics of Python's greenlet as DESIGN.md §1 states them,
 * every error a caller can cause, the fault reports, and leak-freedom under ASan/LSan.
 *
 * cmocka's assertions longjmp out of the test on failure, which must never happen from a
 * greenlet's stack: greenlets only record what they saw (in globals, mostly a trace string) and
 * the test body asserts once control is back in the main greenlet. Fault reports run in a child
 * process started from this very binary (--crash MODE), so that the runtime installs its
 * SIGSEGV handler in a fresh process, exactly as a user's program would, and no cmocka handler
 * stands in the way.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ivy/ivy.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define V(n) ((void *)(uintptr_t)(n)) /* small integers as switch values */
#define N(p) ((uintptr_t)(p))

static void *const SENTINEL = (void *)(uintptr_t)0x5e5e;

/* ---- the trace: what greenlets saw, in order ------------------------------------------- */

static char trace_buf[8192];

static void trace_reset(void)
{
    trace_buf[0] = '\0';
}

static void trace(const char *fmt, ...)
{
    size_t n = strlen(trace_buf);
    if (n && n < sizeof trace_buf - 1) trace_buf[n++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(trace_buf + n, sizeof trace_buf - n, fmt, ap);
    va_end(ap);
}

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

/* Runs path with argv, returns what it wrote on fd (1 or 2) and its wait status. */
static void run_capture(const char *path, char *const argv[], int fd, char *buf, size_t cap,
                        int *status)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, fd == 1 ? 2 : 1);
        dup2(p[1], fd);
        close(p[0]);
        close(p[1]);
        execv(path, argv);
        _exit(127);
    }
    close(p[1]);
    size_t n = 0;
    ssize_t r;
    while ((r = read(p[0], buf + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(p[0]);
    assert_int_equal(waitpid(pid, status, 0), pid);
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

static ivy_greenlet *main_g, *ga, *gb, *gc; /* main_g: this thread's main greenlet */

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

/* ---- 9. depth and volume --------------------------------------------------------------- */

enum { DEEP = 10000, PINGPONG = 1000000 };
static size_t deep_ancestors;
static int deep_leaf_err;
static unsigned deep_mismatch;

static void *deep_run(void *arg)
{
    uintptr_t depth = N(arg);
    ivy_greenlet *self = ivy_current();
    if (depth == DEEP) {
        size_t n = 0;
        for (ivy_greenlet *g = self; g; g = ivy_greenlet_parent(g))
            n++;
        deep_ancestors = n;
        return deep_leaf_err ? ivy_err_ptr(deep_leaf_err) : V(depth);
    }
    ivy_greenlet *child = ivy_greenlet_new(deep_run, NULL, 0);
    if (!child) return ivy_err_ptr(-errno);
    void *out;
    int rc = ivy_switch(child, V(depth + 1), &out);
    if (!ivy_greenlet_dead(child) || ivy_greenlet_parent(child) != self || ivy_current() != self)
        deep_mismatch++;
    ivy_greenlet_free(child);
    if (rc < 0) return ivy_err_ptr(rc);
    return V(N(out) + depth);
}

static void deep_tree_of_10000_nested_greenlets_unwinds(void **state)
{
    (void)state;
    deep_mismatch = 0;
    deep_leaf_err = 0;
    ivy_greenlet *top = ivy_greenlet_new(deep_run, NULL, 0);
    void *out;
    assert_int_equal(ivy_switch(top, V(1), &out), 0);
    assert_int_equal(deep_ancestors, DEEP + 1); /* with main */
    assert_int_equal(N(out), (uintptr_t)DEEP * (DEEP + 1) / 2);
    assert_int_equal(deep_mismatch, 0);
    assert_int_equal(ivy_greenlet_free(top), 0);

    /* The same depth unwound by an error from the leaf, propagated at every level. */
    deep_leaf_err = -EOVERFLOW;
    deep_ancestors = 0;
    top = ivy_greenlet_new(deep_run, NULL, 0);
    out = SENTINEL;
    assert_int_equal(ivy_switch(top, V(1), &out), -EOVERFLOW);
    assert_null(out);
    assert_int_equal(deep_ancestors, DEEP + 1);
    assert_int_equal(deep_mismatch, 0);
    assert_int_equal(ivy_greenlet_free(top), 0);
    assert_ptr_equal(ivy_current(), main_g);
}

static unsigned pong_mismatch;

static void *pong(void *arg)
{
    uintptr_t expect = N(arg);
    void *v;
    for (;;) {
        int rc = ivy_switch(main_g, V(expect + 1), &v);
        if (rc < 0) return ivy_err_ptr(rc);
        if (N(v) == UINTPTR_MAX) return V(expect);
        expect += 2;
        if (N(v) != expect) pong_mismatch++;
    }
}

static void million_switches_ping_pong(void **state)
{
    (void)state;
    pong_mismatch = 0;
    ivy_greenlet *g = ivy_greenlet_new(pong, NULL, 0);
    unsigned mismatch = 0;
    void *v;
    uintptr_t i = 0;
    /* Each round trip is two switches. */
    for (; i < PINGPONG; i += 2) {
        if (ivy_switch(g, V(i), &v) != 0 || N(v) != i + 1) mismatch++;
    }
    assert_int_equal(ivy_switch(g, V(UINTPTR_MAX), &v), 0);
    assert_int_equal(N(v), PINGPONG - 2);
    assert_int_equal(mismatch, 0);
    assert_int_equal(pong_mismatch, 0);
    assert_true(ivy_greenlet_dead(g));
    assert_int_equal(ivy_greenlet_free(g), 0);
}

/* ---- the floating-point control words are each greenlet's own ------------------------ */

#if defined(__x86_64__)
#include <xmmintrin.h>

static unsigned short fpucw_get(void)
{
    unsigned short cw;
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    return cw;
}

static void fpucw_set(unsigned short cw)
{
    __asm__ volatile("fldcw %0" : : "m"(cw));
}

enum { MXCSR_RC_UP = 0x4000, MXCSR_FTZ = 0x8000, FPUCW_PC_SINGLE_MASK = 0x0300 };
static unsigned fp_seen[4];

/* Changes MXCSR only, then the x87 word only, then both, switching to main after each. */
static void *fp_changer(void *arg)
{
    unsigned mxcsr = _mm_getcsr();
    unsigned short cw = fpucw_get();
    _mm_setcsr(mxcsr | MXCSR_FTZ | MXCSR_RC_UP);
    ivy_switch(main_g, NULL, NULL);
    fp_seen[0] = _mm_getcsr();
    fpucw_set((unsigned short)(cw & ~FPUCW_PC_SINGLE_MASK)); /* precision: single */
    ivy_switch(main_g, NULL, NULL);
    fp_seen[1] = fpucw_get();
    fp_seen[2] = _mm_getcsr();
    ivy_switch(main_g, NULL, NULL);
    fp_seen[3] = fpucw_get();
    _mm_setcsr(mxcsr);
    fpucw_set(cw);
    return NULL;
}

static void floating_point_control_words_are_per_greenlet(void **state)
{
    (void)state;
    unsigned mxcsr = _mm_getcsr();
    unsigned short cw = fpucw_get();
    ivy_greenlet *g = ivy_greenlet_new(fp_changer, NULL, 0);
    assert_int_equal(ivy_switch(g, NULL, NULL), 0);
    assert_int_equal(_mm_getcsr() & 0xffc0, mxcsr & 0xffc0); /* control bits; flags may differ */
    assert_int_equal(fpucw_get(), cw);
    assert_int_equal(ivy_switch(g, NULL, NULL), 0);
    assert_int_equal(_mm_getcsr() & 0xffc0, mxcsr & 0xffc0);
    assert_int_equal(fpucw_get(), cw);
    assert_int_equal(ivy_switch(g, NULL, NULL), 0);
    assert_int_equal(ivy_switch(g, NULL, NULL), 0);
    assert_true(ivy_greenlet_dead(g));
    assert_int_equal(fp_seen[0] & 0xffc0, (mxcsr | MXCSR_FTZ | MXCSR_RC_UP) & 0xffc0);
    assert_int_equal(fp_seen[1], cw & ~FPUCW_PC_SINGLE_MASK);
    assert_int_equal(fp_seen[2] & 0xffc0, (mxcsr | MXCSR_FTZ | MXCSR_RC_UP) & 0xffc0);
    assert_int_equal(fp_seen[3], cw & ~FPUCW_PC_SINGLE_MASK);
    assert_int_equal(_mm_getcsr() & 0xffc0, mxcsr & 0xffc0);
    assert_int_equal(fpucw_get(), cw);
    assert_int_equal(ivy_greenlet_free(g), 0);
}
#endif

/* ---- 10. faults, in a child process ---------------------------------------------------- */

static volatile unsigned long recursion_limit = ULONG_MAX;

static unsigned long recurse(unsigned long n)
{
    volatile char pad[256];
    pad[0] = (char)n;
    if (n >= recursion_limit) return pad[0];
    return recurse(n + 1) + pad[0];
}

static void *overflow_run(void *arg)
{
    return V(recurse(0));
}

static volatile int *volatile wild_address = (volatile int *)(uintptr_t)0x10; /* opaque */

static void *wild_write_run(void *arg)
{
    *wild_address = 1;
    return NULL;
}

/* The child side: never returns normally if the runtime does its job. */
static int crash_child(const char *mode)
{
    bool overflow = strcmp(mode, "overflow") == 0;
    ivy_greenlet *g =
        ivy_greenlet_new(overflow ? overflow_run : wild_write_run, NULL, overflow ? 64 * 1024 : 0);
    if (!g) return 3;
    ivy_greenlet_set_name(g, overflow ? "deep-diver" : "wild-writer");
    ivy_switch(g, NULL, NULL);
    fprintf(stderr, "crash child: greenlet returned\n");
    return 4;
}

static void run_crash_child(const char *mode, char *buf, size_t cap, int *status)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(n > 0);
    self[n] = '\0';
    char *argv[] = {self, "--crash", (char *)mode, NULL};
    run_capture(self, argv, 2, buf, cap, status);
}

static void stack_overflow_names_greenlet_and_stack_size_then_aborts(void **state)
{
    (void)state;
    char buf[4096];
    int status;
    run_crash_child("overflow", buf, sizeof buf, &status);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    assert_non_null(strstr(buf, "ivy: stack overflow in greenlet 'deep-diver': its stack of "
                                "65536 bytes ran into the guard page; give it a larger stack\n"));
}

static void wild_write_reported_as_fatal_sigsegv(void **state)
{
    (void)state;
    char buf[4096];
    int status;
    run_crash_child("wild", buf, sizeof buf, &status);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGSEGV);
    assert_non_null(strstr(buf, "ivy: fatal SIGSEGV at address 0x10 in greenlet 'wild-writer'\n"));
    assert_null(strstr(buf, "stack overflow"));
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

static int find_main_greenlet(void **state)
{
    (void)state;
    main_g = ivy_current();
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--crash") == 0) return crash_child(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(seeds_example_prints_hello_world_then_42),
        cmocka_unit_test(switch_into_new_greenlet_passes_value_as_run_argument),
        cmocka_unit_test(run_return_resumes_parent_not_the_switcher),
        cmocka_unit_test(run_return_with_dead_parent_goes_to_grandparent),
        cmocka_unit_test(run_return_starts_unstarted_parent_with_value),
        cmocka_unit_test(switch_to_dead_greenlet_goes_to_nearest_live_ancestor),
        cmocka_unit_test(throw_into_suspended_greenlet_makes_its_switch_report_error),
        cmocka_unit_test(unhandled_error_reaches_parent_as_error),
        cmocka_unit_test(run_returning_error_pointer_reaches_parent_as_error),
        cmocka_unit_test(exit_reaches_parent_as_normal_value),
        cmocka_unit_test(throw_into_current_greenlet_returns_error_at_once),
        cmocka_unit_test(throw_into_unstarted_greenlet_kills_it_without_running),
        cmocka_unit_test(throw_into_unstarted_greenlet_hands_error_to_its_parent),
        cmocka_unit_test(set_parent_refuses_cycles),
        cmocka_unit_test(calls_from_another_thread_are_refused),
        cmocka_unit_test(free_refuses_current_and_main),
        cmocka_unit_test(throw_refuses_non_negative_or_unknown_errors),
        cmocka_unit_test(new_refuses_null_run_and_tiny_stacks),
        cmocka_unit_test(states_are_observable_at_each_step),
        cmocka_unit_test(deep_tree_of_10000_nested_greenlets_unwinds),
        cmocka_unit_test(million_switches_ping_pong),
#if defined(__x86_64__)
        cmocka_unit_test(floating_point_control_words_are_per_greenlet),
#endif
        cmocka_unit_test(stack_overflow_names_greenlet_and_stack_size_then_aborts),
        cmocka_unit_test(wild_write_reported_as_fatal_sigsegv),
        cmocka_unit_test(free_suspended_greenlet_kills_it_with_exit_and_reparents_children),
        cmocka_unit_test(free_of_suspended_ancestor_from_descendant_makes_no_cycle),
    };
    return cmocka_run_group_tests(tests, find_main_greenlet, NULL);
}
