/*
 * Tests for runtime/greenlet.c below its semantics: a tree 10000 greenlets deep, a million
 * switches, the floating-point control words each greenlet keeps across switches, and the
 * reports of faults on a greenlet's stack. Fault reports run in a child process started from
 * this very binary (--crash MODE), so that the runtime installs its SIGSEGV handler in a fresh
 * process, exactly as a user's program would, and no cmocka handler stands in the way.
 */
#include "greenlet_test.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>

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

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--crash") == 0) return crash_child(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(deep_tree_of_10000_nested_greenlets_unwinds),
        cmocka_unit_test(million_switches_ping_pong),
#if defined(__x86_64__)
        cmocka_unit_test(floating_point_control_words_are_per_greenlet),
#endif
        cmocka_unit_test(stack_overflow_names_greenlet_and_stack_size_then_aborts),
        cmocka_unit_test(wild_write_reported_as_fatal_sigsegv),
    };
    return cmocka_run_group_tests(tests, find_main_greenlet, NULL);
}
