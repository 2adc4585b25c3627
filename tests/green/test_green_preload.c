/*
 * Green libc's LD_PRELOAD form, libivy_green.so: the same unmodified program (it links ivy and
 * libcurl, not green libc) serialises its green threads' curl calls without it and overlaps
 * them with it; and an unmodified program that never starts a hub (curl(1)) runs under it as
 * under libc, every call passing through.
 */
#include "servers.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static struct server srv;
static char preload[600];

/* Runs cmd (its output in out) with LD_PRELOAD=pre (NULL: none), for 30 s at most. */
static int run(const char *cmd, const char *pre, char *out, size_t cap)
{
    char full[1400];
    snprintf(full, sizeof full, "timeout 30 env %s%s%s %s", pre ? "LD_PRELOAD='" : "",
             pre ? pre : "", pre ? "'" : "", cmd);
    FILE *f = popen(full, "r");
    assert_non_null(f);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = 0;
    return pclose(f);
}

static double helper_wall(bool with_preload, int n)
{
    char cmd[700], out[256];
    snprintf(cmd, sizeof cmd, "%s %d %d", IVY_GREEN_HELPER, srv.port, n);
    assert_int_equal(run(cmd, with_preload ? preload : NULL, out, sizeof out), 0);
    int answers;
    double wall;
    char green[8];
    assert_int_equal(sscanf(out, "answers: %d wall: %lf green: %7s", &answers, &wall, green), 3);
    assert_int_equal(answers, n);
    assert_string_equal(green, with_preload ? "yes" : "no");
    return wall;
}

static void without_the_preload_the_calls_serialise(void **state)
{
    assert_true(helper_wall(false, 5) >= 5 * 0.195);
}

static void with_the_preload_the_calls_overlap(void **state)
{
    double wall = helper_wall(true, 20);
    printf("preloaded: 20 calls of 200 ms in %.3f s\n", wall);
    assert_true(wall >= 0.195 && wall <= 0.5);
}

static void a_program_without_a_hub_passes_straight_through(void **state)
{
    need_program("/usr/bin/curl", "curl");
    char cmd[200], out[256];
    snprintf(cmd, sizeof cmd, "/usr/bin/curl -s http://127.0.0.1:%d/sleep?ms=10", srv.port);
    /* Green libc alone: curl(1) has no sanitizer runtime to put first. */
    assert_int_equal(run(cmd, IVY_GREEN_SO, out, sizeof out), 0);
    assert_string_equal(out, "slept 10 ms\n");
}

/*
 * Under AddressSanitizer its runtime must come first: preload it ahead of green libc when this
 * test (built like the helper) has it mapped.
 */
static void find_preload(void)
{
    char asan[400] = "";
    FILE *m = fopen("/proc/self/maps", "r");
    char line[600];
    while (m && fgets(line, sizeof line, m))
        if (strstr(line, "/libasan.so")) {
            char *p = strchr(line, '/');
            p[strcspn(p, "\n")] = 0;
            snprintf(asan, sizeof asan, "%s", p);
            break;
        }
    if (m) fclose(m);
    snprintf(preload, sizeof preload, "%s%s%s", asan, asan[0] ? ":" : "", IVY_GREEN_SO);
}

static int start(void **state)
{
    find_preload();
    ivy_serve_start(&srv);
    return 0;
}

static int stop(void **state)
{
    server_stop(&srv, SIGTERM);
    return 0;
}

int main(void)
{
    need_program(ivy_binary(), "(the build's ivy command)");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(without_the_preload_the_calls_serialise),
        cmocka_unit_test(with_the_preload_the_calls_overlap),
        cmocka_unit_test(a_program_without_a_hub_passes_straight_through),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
