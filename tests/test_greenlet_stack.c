/*
 * Tests for runtime/greenlet.c below its semantics: a tree 10000 greenlets deep, a million
 * switches, the floating-point control words each greenlet keeps across switches (or, built
 * with IVY_SHARED_FPENV, shares: tests/CMakeLists.txt builds this file a second time so, as
 * test_greenlet_stack_shared_fpenv), and the reports of faults on a greenlet's stack. Fault reports
 * run in a child process started from this very binary (--crash MODE), so that the runtime installs
 * its SIGSEGV handler in a fresh process, exactly as a user's program would, and no cmocka handler
 * stands in the way.
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

/* ---- the floating-point control words: each greenlet's own, or shared by opt-in -------- */

/*
 * One value for a thread's FP control words, and three changes to it: the first two touch one
 * word each (the x86-64 switch compares its two words separately), the third both.
 * x86-64: MXCSR's control bits (its flags are status, not kept) and, above them, the x87
 * control word; the changes: MXCSR flush-to-zero and round-up, x87 precision down to single.
 * aarch64: FPCR; the changes: round-up, flush-to-zero.
 */
#if defined(__x86_64__)
#include <xmmintrin.h>

static uint64_t fpctl_get(void)
{
    unsigned short cw;
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    return (_mm_getcsr() & 0xffc0u) | (uint64_t)cw << 32;
}

static void fpctl_set(uint64_t v)
{
    unsigned short cw = (unsigned short)(v >> 32);
    _mm_setcsr((_mm_getcsr() & 0x3fu) | ((unsigned)v & 0xffc0u));
    __asm__ volatile("fldcw %0" : : "m"(cw));
}

static const uint64_t fp_change[3] = {0xc000, (uint64_t)0x0300 << 32,
                                      0xc000 | (uint64_t)0x0300 << 32};
#elif defined(__aarch64__)
static uint64_t fpctl_get(void)
{
    uint64_t v;
    __asm__ volatile("mrs %0, fpcr" : "=r"(v));
    return v;
}

static void fpctl_set(uint64_t v)
{
    __asm__ volatile("msr fpcr, %0" : : "r"(v));
}

static const uint64_t fp_change[3] = {1u << 22, 1u << 24, 1u << 22 | 1u << 24};
#endif

#if defined(__x86_64__) || defined(__aarch64__)
static uint64_t fp_seen[3];

#if !defined(IVY_SHARED_FPENV)
/* Makes each change in turn, switching to main after each, and records what it finds back. */
static void *fp_changer(void *arg)
{
    uint64_t mine = fpctl_get();
    for (int i = 0; i < 3; i++) {
        fpctl_set(mine ^ fp_change[i]);
        ivy_switch(main_g, NULL, NULL);
        fp_seen[i] = fpctl_get();
    }
    fpctl_set(mine);
    return NULL;
}

static void floating_point_control_words_are_per_greenlet(void **state)
{
    (void)state;
    uint64_t mine = fpctl_get();
    ivy_greenlet *g = ivy_greenlet_new(fp_changer, NULL, 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ivy_switch(g, NULL, NULL), 0);
        assert_int_equal(fpctl_get(), mine); /* g's change stayed in g */
    }
    assert_int_equal(ivy_switch(g, NULL, NULL), 0);
    assert_true(ivy_greenlet_dead(g));
    for (int i = 0; i < 3; i++)
        assert_int_equal(fp_seen[i], mine ^ fp_change[i]); /* and g got its own back */
    assert_int_equal(fpctl_get(), mine);
    assert_int_equal(ivy_greenlet_free(g), 0);
}
#else
/* Records main's words, changes them, then records main's again. */
static void *fp_sharer(void *arg)
{
    fp_seen[0] = fpctl_get();
    fpctl_set(fp_seen[0] ^ fp_change[2]);
    ivy_switch(main_g, NULL, NULL);
    fp_seen[2] = fpctl_get();
    return NULL;
}

/* The opt-in build: one set of control words for the thread, whichever greenlet sets them. */
static void floating_point_control_words_are_shared_with_ivy_shared_fpenv(void **state)
{
    (void)state;
    uint64_t mine = fpctl_get();
    ivy_greenlet *g = ivy_greenlet_new(fp_sharer, NULL, 0);
    fpctl_set(mine ^ fp_change[0]); /* after g was made */
    assert_int_equal(ivy_switch(g, NULL, NULL), 0);
    fp_seen[1] = fpctl_get();
    fpctl_set(mine);
    assert_int_equal(ivy_switch(g, NULL, NULL), 0);
    assert_true(ivy_greenlet_dead(g));
    assert_int_equal(fp_seen[0], mine ^ fp_change[0]); /* main's, set after g was made */
    assert_int_equal(fp_seen[1], mine ^ fp_change[1]); /* g's, across its switch back */
    assert_int_equal(fp_seen[2], mine);                /* main's restored ones */
    assert_int_equal(ivy_greenlet_free(g), 0);
}
#endif
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

/*
 * One frame larger than the whole stack: its far end lies two pages below the guard. Without
 * stack-clash protection that write lands in whatever is mapped below (another stack); with it,
 * the compiler probes every page on the way down and the first probe faults in the guard.
 */
enum { CLASH_STACK = 64 * 1024, CLASH_FRAME = CLASH_STACK + 8192 };

static __attribute__((noinline)) int big_frame(volatile char *sink)
{
    volatile char big[CLASH_FRAME];
    big[0] = 1; /* the far end, written first */
    big[CLASH_FRAME - 1] = 2;
    *sink = big[0];
    return big[CLASH_FRAME - 1];
}

static void *clash_run(void *arg)
{
    static volatile char sink;
    return V(big_frame(&sink));
}

/* A handler installed before ivy's, as a crash reporter would be: says what it got and exits 42. */
static void earlier_handler(int sig, siginfo_t *si, void *uctx)
{
    static const char yes[] = "earlier handler: SIGSEGV at 0x10\n", no[] = "earlier handler: ?\n";
    bool ours = sig == SIGSEGV && si->si_addr == (void *)0x10;
    (void)!write(STDERR_FILENO, ours ? yes : no, ours ? sizeof yes - 1 : sizeof no - 1);
    _exit(42);
}

/* The child side: never returns normally if the runtime does its job. Modes: overflow, wild,
   clash (one frame larger than the stack), and with "chain-" in front, an earlier SIGSEGV
   handler; "long" names the greenlet 2000 x's. */
static int crash_child(const char *mode)
{
    if (!strncmp(mode, "chain-", 6)) {
        struct sigaction sa = {.sa_sigaction = earlier_handler, .sa_flags = SA_SIGINFO};
        sigaction(SIGSEGV, &sa, NULL);
        mode += 6;
    }
    static char long_name[2001];
    memset(long_name, 'x', sizeof long_name - 1);
    bool overflow = strcmp(mode, "overflow") == 0, clash = strcmp(mode, "clash") == 0;
    ivy_greenlet *g = ivy_greenlet_new(overflow ? overflow_run
                                       : clash  ? clash_run
                                                : wild_write_run,
                                       NULL, overflow || clash ? CLASH_STACK : 0);
    if (!g) return 3;
    ivy_greenlet_set_name(g, !strcmp(mode, "long") ? long_name
                             : overflow            ? "deep-diver"
                             : clash               ? "big-frame"
                                                   : "wild-writer");
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
    /* ASan's own SIGSEGV handler would be the earlier one that ivy's chains to: leave it out. */
    setenv("ASAN_OPTIONS", "handle_segv=0:handle_sigbus=0", 1);
    run_capture(self, argv, 2, buf, cap, status);
}

/* The child of `mode` must abort with the guard-page report naming greenlet `name`. */
static void expect_guard_report(const char *mode, const char *name)
{
    char buf[4096], want[256];
    int status;
    run_crash_child(mode, buf, sizeof buf, &status);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    snprintf(want, sizeof want,
             "ivy: stack overflow in greenlet '%s': its stack of 65536 bytes ran into the guard "
             "page; give it a larger stack\n",
             name);
    assert_non_null(strstr(buf, want));
}

static void stack_overflow_names_greenlet_and_stack_size_then_aborts(void **state)
{
    (void)state;
    expect_guard_report("overflow", "deep-diver");
}

static void frame_larger_than_the_guard_faults_in_its_own_guard(void **state)
{
    (void)state;
    expect_guard_report("clash", "big-frame");
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

/* Not a guard-page hit: the fault belongs to the handler that was there first. */
static void earlier_handler_gets_other_faults(void **state)
{
    char buf[4096];
    int status;
    run_crash_child("chain-wild", buf, sizeof buf, &status);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 42);
    assert_string_equal(buf, "earlier handler: SIGSEGV at 0x10\n");
}

/* A guard-page hit is ivy's own: reported, not handed on. */
static void earlier_handler_does_not_get_a_stack_overflow(void **state)
{
    char buf[4096];
    int status;
    run_crash_child("chain-overflow", buf, sizeof buf, &status);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    assert_non_null(strstr(buf, "ivy: stack overflow in greenlet 'deep-diver'"));
    assert_null(strstr(buf, "earlier handler"));
}

/* The name is the user's, of any length; the message's buffer is not. */
static void a_long_greenlet_name_is_cut_in_the_fault_message(void **state)
{
    char buf[8192], expect[256];
    int status;
    run_crash_child("long", buf, sizeof buf, &status);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGSEGV);
    int n = snprintf(expect, sizeof expect, "ivy: fatal SIGSEGV at address 0x10 in greenlet '");
    memset(expect + n, 'x', 128);
    strcpy(expect + n + 128, "...'\n");
    assert_string_equal(buf, expect);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--crash") == 0) return crash_child(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(deep_tree_of_10000_nested_greenlets_unwinds),
        cmocka_unit_test(million_switches_ping_pong),
#if (defined(__x86_64__) || defined(__aarch64__)) && !defined(IVY_SHARED_FPENV)
        cmocka_unit_test(floating_point_control_words_are_per_greenlet),
#elif defined(__x86_64__) || defined(__aarch64__)
        cmocka_unit_test(floating_point_control_words_are_shared_with_ivy_shared_fpenv),
#endif
        cmocka_unit_test(stack_overflow_names_greenlet_and_stack_size_then_aborts),
        cmocka_unit_test(frame_larger_than_the_guard_faults_in_its_own_guard),
        cmocka_unit_test(wild_write_reported_as_fatal_sigsegv),
        cmocka_unit_test(earlier_handler_gets_other_faults),
        cmocka_unit_test(earlier_handler_does_not_get_a_stack_overflow),
        cmocka_unit_test(a_long_greenlet_name_is_cut_in_the_fault_message),
    };
    return cmocka_run_group_tests(tests, find_main_greenlet, NULL);
}
