/*
 * Visible skips. cmocka's skip() alone leaves the program's exit status 0, so ctest shows a
 * skipped test as passed. A test that lacks what it needs calls skip_visibly(why); main returns
 * ivy_test_exit(failures), which is 77 when something was skipped and nothing failed, and
 * tests/CMakeLists.txt makes 77 ctest's SKIP_RETURN_CODE: the file is reported as skipped,
 * with the reason in its output.
 */
#ifndef IVY_TEST_SKIP_H
#define IVY_TEST_SKIP_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define IVY_TEST_SKIPPED 77

static int ivy_test_skips;

#define skip_visibly(why)                                                                          \
    do {                                                                                           \
        print_message("skipped: %s\n", why);                                                       \
        ivy_test_skips++;                                                                          \
        skip();                                                                                    \
    } while (0)

static inline int ivy_test_exit(int failures)
{
    return failures ? failures : ivy_test_skips ? IVY_TEST_SKIPPED : 0;
}
#endif
