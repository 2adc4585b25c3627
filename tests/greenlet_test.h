/*
 * Shared by the tests of runtime/greenlet.c (test_greenlet*.c): cmocka, small integers as switch
 * values, the trace of what greenlets saw, this thread's main greenlet (found once in each
 * group's setup) and run_capture for the tests that run a program and read its output.
 *
 * cmocka's assertions longjmp out of the test on failure, which must never happen from a
 * greenlet's stack: greenlets only record what they saw (in globals, mostly the trace) and the
 * test body asserts once control is back in the main greenlet.
 */
#ifndef IVY_TESTS_GREENLET_TEST_H
#define IVY_TESTS_GREENLET_TEST_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ivy/ivy.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define V(n) ((void *)(uintptr_t)(n)) /* small integers as switch values */
#define N(p) ((uintptr_t)(p))

static void *const SENTINEL = (void *)(uintptr_t)0x5e5e;

/* ---- the trace: what greenlets saw, in order ------------------------------------------- */

static char trace_buf[8192];

static inline void trace_reset(void)
{
    trace_buf[0] = '\0';
}

static inline void trace(const char *fmt, ...)
{
    size_t n = strlen(trace_buf);
    if (n && n < sizeof trace_buf - 1) trace_buf[n++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(trace_buf + n, sizeof trace_buf - n, fmt, ap);
    va_end(ap);
}

static ivy_greenlet *main_g; /* this thread's main greenlet */

/* Runs path with argv, returns what it wrote on fd (1 or 2) and its wait status. */
static inline void run_capture(const char *path, char *const argv[], int fd, char *buf, size_t cap,
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

static inline int find_main_greenlet(void **state)
{
    (void)state;
    main_g = ivy_current();
    return 0;
}

#endif
