/* Tests for io/poll.c: readiness through the ring, on real sockets and pipes. */
#include <ivy/ivy.h>

#include "hub_impl.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#define MS 1000000ull

static int sp[2];

static int setup(void **state)
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    return 0;
}

static int teardown(void **state)
{
    close(sp[0]);
    close(sp[1]);
    struct ivy_hub_stats st;
    ivy_hub_stats(&st);
    assert_int_equal(st.inflight, 0); /* every poll request answered, none left armed */
    assert_int_equal(ivy_hub_free(), 0);
    return 0;
}

static void *run_and_int(ivy_fn fn, void *arg)
{
    ivy_thread *t = ivy_spawn(fn, arg);
    assert_non_null(t);
    assert_int_equal(ivy_run(), 0);
    void *v;
    int err = ivy_join(t, &v); /* fn's negative int result reads as an error pointer */
    return err ? (void *)(intptr_t)err : v;
}

static int ticks;
static void *ticker(void *arg)
{
    while (ivy_sleep(0.005) == 0)
        ticks++;
    return NULL;
}

static void *write_later(void *arg)
{
    ivy_sleep(0.03);
    assert_int_equal(write(sp[1], "x", 1), 1);
    return NULL;
}

static void *wait_readable(void *arg)
{
    ivy_thread *tk = ivy_spawn(ticker, NULL);
    ivy_spawn_n(write_later, NULL);
    uint64_t t0 = ivy_now_ns();
    int rc = ivy_wait_fd(sp[0], POLLIN, 5.0);
    uint64_t waited = ivy_now_ns() - t0;
    assert_true(waited >= 25 * MS);
    assert_true(ticks >= 2); /* the hub kept running other threads meanwhile */
    ivy_kill(tk);
    ivy_join(tk, NULL);
    return (void *)(intptr_t)rc;
}

static void wait_fd_wakes_when_the_peer_writes(void **state)
{
    ticks = 0;
    assert_int_equal((intptr_t)run_and_int(wait_readable, NULL), POLLIN);
}

static void *wait_writable(void *arg)
{
    return (void *)(intptr_t)ivy_wait_fd(sp[0], POLLIN | POLLOUT, 5.0);
}

static void wait_fd_reports_only_what_is_ready(void **state)
{
    assert_int_equal((intptr_t)run_and_int(wait_writable, NULL), POLLOUT);
}

static void *wait_timeout(void *arg)
{
    uint64_t t0 = ivy_now_ns();
    int rc = ivy_wait_fd(sp[0], POLLIN, 0.05);
    uint64_t waited = ivy_now_ns() - t0;
    assert_true(waited >= 45 * MS && waited < 1000 * MS);
    return (void *)(intptr_t)rc;
}

static void wait_fd_timeout_returns_zero(void **state)
{
    assert_int_equal((intptr_t)run_and_int(wait_timeout, NULL), 0);
}

static void *poll_many(void *arg)
{
    enum { N = 20 }; /* beyond the on-stack requests */
    int p[N][2];
    struct pollfd fds[N + 1];
    for (int i = 0; i < N; i++) {
        assert_int_equal(pipe(p[i]), 0);
        fds[i] = (struct pollfd){.fd = p[i][0], .events = POLLIN, .revents = 77};
    }
    fds[N] = (struct pollfd){.fd = -1, .events = POLLIN, .revents = 77}; /* ignored */
    assert_int_equal(write(p[3][1], "a", 1), 1);
    assert_int_equal(write(p[15][1], "b", 1), 1);
    int rc = ivy_poll(fds, N + 1, 5.0);
    assert_int_equal(rc, 2);
    for (int i = 0; i <= N; i++)
        assert_int_equal(fds[i].revents, i == 3 || i == 15 ? POLLIN : 0);
    for (int i = 0; i < N; i++) {
        close(p[i][0]);
        close(p[i][1]);
    }
    return NULL;
}

static void poll_reports_each_ready_descriptor_and_ignores_negative_ones(void **state)
{
    run_and_int(poll_many, NULL);
}

static void *poll_bad_and_hup(void *arg)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    close(p[1]);
    int bad = dup(p[0]);
    close(bad);
    struct pollfd fds[2] = {{.fd = bad, .events = POLLIN}, {.fd = p[0], .events = POLLIN}};
    assert_int_equal(ivy_poll(fds, 2, 5.0), 2);
    assert_int_equal(fds[0].revents, POLLNVAL);
    assert_true(fds[1].revents & POLLHUP);
    close(p[0]);
    return NULL;
}

static void poll_reports_pollnval_and_pollhup(void **state)
{
    run_and_int(poll_bad_and_hup, NULL);
}

static int killed_rc;
static void *wait_forever(void *arg)
{
    killed_rc = ivy_wait_fd(sp[0], POLLIN, -1);
    return NULL;
}

static void *kill_waiter(void *arg)
{
    ivy_thread *w = ivy_spawn(wait_forever, NULL);
    ivy_sleep(0.01);
    assert_int_equal(ivy_kill(w), 0);
    assert_int_equal(ivy_join(w, NULL), 0); /* its fn returned normally */ /* the thread's exit */
    return (void *)(intptr_t)killed_rc;
}

static void kill_wakes_a_waiter_with_ecanceled(void **state)
{
    assert_int_equal((intptr_t)run_and_int(kill_waiter, NULL), -ECANCELED);
}

static void *scoped_wait(void *arg)
{
    struct ivy_timeout to;
    assert_int_equal(ivy_timeout_begin(&to, 0.02), 0);
    int rc = ivy_wait_fd(sp[0], POLLIN, 10.0);
    assert_int_equal(ivy_timeout_end(&to), -ETIMEDOUT);
    return (void *)(intptr_t)rc;
}

static void an_expired_timeout_scope_gives_etimedout(void **state)
{
    assert_int_equal((intptr_t)run_and_int(scoped_wait, NULL), -ETIMEDOUT);
}

static void *misuse(void *arg)
{
    assert_int_equal(ivy_poll(NULL, 1, 1.0), -EINVAL);
    struct pollfd p = {.fd = sp[0], .events = POLLIN};
    assert_int_equal(ivy_poll(&p, 1, NAN), -EINVAL);
    assert_int_equal(ivy_poll(NULL, 0, -1), -EINVAL); /* nothing could end it */
    assert_int_equal(ivy_wait_fd(-1, POLLIN, 1.0), -EBADF);
    uint64_t t0 = ivy_now_ns();
    assert_int_equal(ivy_poll(NULL, 0, 0.02), 0); /* no descriptor: a sleep */
    assert_true(ivy_now_ns() - t0 >= 19 * MS);
    return NULL;
}

static void bad_arguments_are_refused_with_exact_errors(void **state)
{
    run_and_int(misuse, NULL);
}

static void outside_a_green_thread_only_a_zero_timeout_works(void **state)
{
    assert_int_equal(ivy_wait_fd(sp[0], POLLIN, 1.0), -EPERM);
    assert_int_equal(ivy_wait_fd(sp[0], POLLOUT, 0), POLLOUT);
    assert_int_equal(ivy_wait_fd(sp[0], POLLIN, 0), 0);
    assert_int_equal(write(sp[1], "x", 1), 1);
    struct pollfd p = {.fd = sp[0], .events = POLLIN};
    assert_int_equal(ivy_poll(&p, 1, 0), 1);
    assert_int_equal(p.revents, POLLIN);
}

static void without_green_libc_linked_it_is_not_enabled(void **state)
{
    assert_false(ivy_green_enabled()); /* this program links ivy alone */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(wait_fd_wakes_when_the_peer_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(wait_fd_reports_only_what_is_ready, setup, teardown),
        cmocka_unit_test_setup_teardown(wait_fd_timeout_returns_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(
            poll_reports_each_ready_descriptor_and_ignores_negative_ones, setup, teardown),
        cmocka_unit_test_setup_teardown(poll_reports_pollnval_and_pollhup, setup, teardown),
        cmocka_unit_test_setup_teardown(kill_wakes_a_waiter_with_ecanceled, setup, teardown),
        cmocka_unit_test_setup_teardown(an_expired_timeout_scope_gives_etimedout, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_arguments_are_refused_with_exact_errors, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(outside_a_green_thread_only_a_zero_timeout_works, setup,
                                        teardown),
        cmocka_unit_test(without_green_libc_linked_it_is_not_enabled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
