/*
 * runtime/version.c and include/ivy/version.h: the runtime reports the version the headers
 * were generated with, and `ivy --version` prints it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "ivy/ivy.h"
#include "util.h"
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

static void runtime_version_is_the_headers(void **state)
{
    assert_int_equal(ivy_version(), IVY_VERSION);
    assert_string_equal(ivy_version_string(), IVY_VERSION_STRING);
}

static void version_number_orders_major_minor_patch(void **state)
{
    assert_int_equal(IVY_VERSION,
                     (IVY_VERSION_MAJOR << 16) | (IVY_VERSION_MINOR << 8) | IVY_VERSION_PATCH);
    char s[32];
    snprintf(s, sizeof s, "%d.%d.%d", IVY_VERSION_MAJOR, IVY_VERSION_MINOR, IVY_VERSION_PATCH);
    assert_string_equal(IVY_VERSION_STRING, s);
}

static void command_prints_its_version(void **state)
{
    char cmd[600], out[128];
    snprintf(cmd, sizeof cmd, "%s --version 2>&1", ivy_binary());
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    int st = pclose(p);
    assert_string_equal(out, "ivy " IVY_VERSION_STRING "\n");
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(runtime_version_is_the_headers),
        cmocka_unit_test(version_number_orders_major_minor_patch),
        cmocka_unit_test(command_prints_its_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
