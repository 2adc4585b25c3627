/* Tests for io/offload.c: the offload pool and getaddrinfo in it, on a real ring. */
#include <ivy/ivy.h>

#include "hub_impl.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define MS 1000000ull

static int teardown(void **state)
{
    assert_int_equal(ivy_offload_shutdown(), 0);
    assert_int_equal(ivy_hub_free(), 0);
    assert_int_equal(ivy_offload_set_threads(4), 0);
    return 0;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static unsigned os_threads(void)
{
    unsigned n = 0;
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* A blocking call, in the pool: sleeps arg milliseconds, returns arg + 1. */
static void *block_ms(void *arg)
{
    sleep_ms((unsigned)(uintptr_t)arg);
    return (void *)((uintptr_t)arg + 1);
}

/* ---- the hub keeps running during an offloaded call ------------------------------------- */

static int ticks;
static bool offload_done;

static void *ticker(void *arg)
{
    while (!offload_done) {
        assert_int_equal(ivy_sleep(0.01), 0);
        ticks++;
    }
    return NULL;
}

static void *offload_200ms(void *arg)
{
    uint64_t t0 = ivy_now_ns();
    void *v = NULL;
    assert_int_equal(ivy_offload(block_ms, (void *)200, &v), 0);
    *(uint64_t *)arg = ivy_now_ns() - t0;
    assert_int_equal((uintptr_t)v, 201);
    offload_done = true;
    return NULL;
}

static void blocking_call_in_pool_lets_other_threads_run(void **state)
{
    uint64_t took = 0;
    ticks = 0;
    offload_done = false;
    ivy_spawn_n(ticker, NULL);
    ivy_spawn_n(offload_200ms, &took);
    assert_int_equal(ivy_run(), 0);
    assert_true(ticks >= 10);
    assert_true(took >= 200 * MS);
    assert_true(took < 600 * MS); /* generous: a loaded CI machine may preempt us */
}

/* ---- many jobs, few threads ------------------------------------------------------------- */

static atomic_int running, max_running;

static void *double_slowly(void *arg)
{
    int now = atomic_fetch_add(&running, 1) + 1;
    for (int m = atomic_load(&max_running); now > m;)
        if (atomic_compare_exchange_weak(&max_running, &m, now)) break;
    sleep_ms(5);
    atomic_fetch_sub(&running, 1);
    return (void *)((uintptr_t)arg * 2);
}

static void *offload_double(void *arg)
{
    void *v;
    int rc = ivy_offload(double_slowly, arg, &v);
    return rc < 0 ? ivy_err_ptr(rc) : v;
}

static void hundred_offloads_on_four_threads_all_return_their_results(void **state)
{
    assert_int_equal(ivy_offload_set_threads(4), 0);
    atomic_store(&max_running, 0);
    unsigned before = os_threads();
    ivy_thread *t[100];
    for (uintptr_t i = 0; i < 100; i++)
        t[i] = ivy_spawn(offload_double, (void *)i);
    uint64_t t0 = ivy_now_ns();
    assert_int_equal(ivy_run(), 0);
    uint64_t took = ivy_now_ns() - t0;
    for (uintptr_t i = 0; i < 100; i++) {
        void *v;
        assert_int_equal(ivy_join(t[i], &v), 0);
        assert_int_equal((uintptr_t)v, 2 * i);
    }
    assert_int_equal(atomic_load(&max_running), 4);
    assert_int_equal(os_threads(), before + 4);
    assert_true(took >= 25 * 5 * MS); /* 100 jobs of 5 ms, 4 at a time */
}

static void *offload_one(void *arg)
{
    assert_int_equal(ivy_offload(block_ms, (void *)1, NULL), 0);
    return NULL;
}

static void pool_threads_start_on_first_use_and_stop_at_shutdown(void **state)
{
    unsigned before = os_threads();
    assert_int_equal(ivy_hub_init(NULL), 0);
    assert_int_equal(os_threads(), before);
    ivy_spawn_n(offload_one, NULL);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(os_threads(), before + 1); /* one job: one thread was enough */
    assert_int_equal(ivy_offload_shutdown(), 0);
    assert_int_equal(os_threads(), before);
}

/* ---- interruptions ---------------------------------------------------------------------- */

struct owned {
    unsigned ms;
    int *released;
};

static void *owned_block(void *arg)
{
    struct owned *o = arg;
    sleep_ms(o->ms);
    return malloc(16); /* a result that owns memory: release must free it */
}

static void owned_release(void *arg, void *result)
{
    struct owned *o = arg;
    (*o->released)++;
    free(result);
    free(o);
}

static int waiter_rc, released;
static uint64_t waiter_took;

static void *offload_owned_ms(void *arg)
{
    struct owned *o = malloc(sizeof *o);
    *o = (struct owned){(unsigned)(uintptr_t)arg, &released};
    uint64_t t0 = ivy_now_ns();
    void *v = NULL;
    waiter_rc = ivy_offload_owned(owned_block, o, &v, owned_release);
    waiter_took = ivy_now_ns() - t0;
    if (waiter_rc == 0) owned_release(o, v);
    return NULL;
}

static void *kill_after_20ms(void *arg)
{
    assert_int_equal(ivy_sleep(0.02), 0);
    assert_int_equal(ivy_kill(arg), 0);
    return NULL;
}

static void kill_of_waiter_returns_ecanceled_at_once_and_job_is_released(void **state)
{
    released = 0;
    ivy_thread *w = ivy_spawn(offload_owned_ms, (void *)200);
    ivy_spawn_n(kill_after_20ms, w);
    uint64_t t0 = ivy_now_ns();
    assert_int_equal(ivy_run(), 0);
    uint64_t run_took = ivy_now_ns() - t0;
    assert_int_equal(waiter_rc, -ECANCELED);
    assert_true(waiter_took >= 20 * MS);
    assert_true(waiter_took < 150 * MS); /* well before the 200 ms job ends */
    /* ivy_run waited for the orphaned job, which was released exactly once. */
    assert_true(run_took >= 200 * MS);
    assert_int_equal(released, 1);
    assert_int_equal(ivy_join(w, NULL), 0);
    struct ivy_hub_stats st;
    ivy_hub_stats(&st);
    assert_int_equal(st.inflight, 0);
    assert_int_equal(ivy__hub_tls->external, 0);
}

static void *offload_under_deadline(void *arg)
{
    struct ivy_timeout to;
    assert_int_equal(ivy_timeout_begin(&to, 0.05), 0);
    uint64_t t0 = ivy_now_ns();
    assert_int_equal(ivy_offload(block_ms, (void *)200, NULL), -ETIMEDOUT);
    *(uint64_t *)arg = ivy_now_ns() - t0;
    /* Later calls in the expired scope fail at once, without reaching the pool. */
    assert_int_equal(ivy_offload(block_ms, (void *)200, NULL), -ETIMEDOUT);
    assert_int_equal(ivy_timeout_end(&to), -ETIMEDOUT);
    return NULL;
}

static void deadline_expires_offload_with_etimedout(void **state)
{
    uint64_t took = 0;
    ivy_spawn_n(offload_under_deadline, &took);
    assert_int_equal(ivy_run(), 0);
    assert_true(took >= 50 * MS);
    assert_true(took < 180 * MS); /* before the 200 ms job ends */
}

/* ---- getaddrinfo ------------------------------------------------------------------------ */

static void *resolve_localhost(void *arg)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    assert_int_equal(ivy_getaddrinfo("localhost", "80", &hints, &res), 0);
    assert_non_null(res);
    bool loopback = false;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            struct sockaddr_in *sin = (struct sockaddr_in *)ai->ai_addr;
            assert_int_equal(ntohs(sin->sin_port), 80);
            loopback |= sin->sin_addr.s_addr == htonl(INADDR_LOOPBACK);
        } else if (ai->ai_family == AF_INET6) {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ai->ai_addr;
            assert_int_equal(ntohs(sin6->sin6_port), 80);
            loopback |= IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
        }
    }
    assert_true(loopback);
    freeaddrinfo(res);
    return NULL;
}

static void getaddrinfo_localhost_resolves_to_loopback(void **state)
{
    ivy_spawn_n(resolve_localhost, NULL);
    assert_int_equal(ivy_run(), 0);
}

static void *resolve_unknown(void *arg)
{
    struct addrinfo *res = NULL;
    /* AI_NUMERICHOST: the unknown-name answer without asking a DNS server the sandbox lacks. */
    struct addrinfo numeric = {.ai_flags = AI_NUMERICHOST, .ai_socktype = SOCK_STREAM};
    assert_int_equal(ivy_getaddrinfo("no-such-host.invalid", "80", &numeric, &res), -ENOENT);
    assert_int_equal(ivy_getaddrinfo("127.0.0.1", "no-such-service-ivy", &numeric, &res), -ENOENT);
    struct addrinfo bad_family = {.ai_family = 12345};
    assert_int_equal(ivy_getaddrinfo("127.0.0.1", "80", &bad_family, &res), -EAFNOSUPPORT);
    assert_int_equal(ivy_getaddrinfo("127.0.0.1", "80", NULL, NULL), -EINVAL);
    assert_int_equal(ivy_getaddrinfo(NULL, NULL, NULL, &res), -EINVAL);
    assert_null(res);
    return NULL;
}

static void getaddrinfo_unknown_name_is_enoent(void **state)
{
    ivy_spawn_n(resolve_unknown, NULL);
    assert_int_equal(ivy_run(), 0);
}

/* ---- misuse ----------------------------------------------------------------------------- */

static void free_arg(void *arg, void *result)
{
    released++;
    free(arg);
}

static void *try_shutdown(void *arg)
{
    assert_int_equal(ivy_offload_shutdown(), -EBUSY); /* inside ivy_run */
    return NULL;
}

static void misuse_is_refused_with_exact_errors(void **state)
{
    void *v = (void *)1;
    released = 0;
    assert_int_equal(ivy_offload(block_ms, NULL, &v), -EPERM);
    assert_ptr_equal(v, (void *)1);
    assert_int_equal(ivy_offload_owned(block_ms, malloc(8), NULL, free_arg), -EPERM);
    assert_int_equal(released, 1); /* fn never ran: arg released at once */
    struct addrinfo *res;
    assert_int_equal(ivy_getaddrinfo("localhost", "80", NULL, &res), -EPERM);
    assert_int_equal(ivy_offload_set_threads(0), -EINVAL);
    assert_int_equal(ivy_offload_set_threads(IVY_OFFLOAD_MAX_THREADS + 1), -EINVAL);
    ivy_spawn_n(try_shutdown, NULL);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(ivy_offload_shutdown(), 0); /* no pool yet: nothing to do */
}

static void *offload_null_fn(void *arg)
{
    assert_int_equal(ivy_offload(NULL, NULL, NULL), -EINVAL);
    return NULL;
}

static void null_fn_is_einval(void **state)
{
    ivy_spawn_n(offload_null_fn, NULL);
    assert_int_equal(ivy_run(), 0);
}

/* ---- ivy_run's end, and the pool across hubs -------------------------------------------- */

static void *sleep_10ms(void *arg)
{
    assert_int_equal(ivy_sleep(0.01), 0);
    return NULL;
}

static void run_returns_once_jobs_finish_and_nothing_stays_armed(void **state)
{
    /* A lone thread waiting on the pool is no deadlock: the job promises a wake-up. */
    ivy_thread *t = ivy_spawn(offload_one, NULL);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(ivy_join(t, NULL), 0);
    struct ivy_hub_stats st;
    ivy_hub_stats(&st);
    assert_int_equal(st.inflight, 0);
    assert_int_equal(ivy__hub_tls->external, 0);
    /* The pool is idle, not gone: nothing of it may keep the next run alive. */
    uint64_t t0 = ivy_now_ns();
    assert_int_equal(ivy_run(), 0);
    ivy_spawn_n(sleep_10ms, NULL);
    assert_int_equal(ivy_run(), 0);
    assert_true(ivy_now_ns() - t0 < 150 * MS); /* no armed read kept it running */
}

/* After the killed waiter has finished, before its job has. */
static void *stop_after_40ms(void *arg)
{
    assert_int_equal(ivy_sleep(0.04), 0);
    ivy_stop();
    return NULL;
}

static void shutdown_waits_for_a_job_whose_caller_left(void **state)
{
    released = 0;
    ivy_thread *w = ivy_spawn(offload_owned_ms, (void *)100);
    ivy_spawn_n(kill_after_20ms, w);
    ivy_spawn_n(stop_after_40ms, NULL);
    assert_int_equal(ivy_run(), 0); /* stopped with the orphan running and its read armed */
    assert_int_equal(waiter_rc, -ECANCELED);
    assert_int_equal(released, 0);
    assert_int_equal(ivy_join(w, NULL), 0);
    assert_int_equal(ivy_offload_shutdown(), 0);
    assert_int_equal(released, 1);
    assert_int_equal(ivy__hub_tls->external, 0);
    struct ivy_hub_stats st;
    ivy_hub_stats(&st);
    assert_int_equal(st.inflight, 0);
}

static void pool_outlives_a_hub_freed_with_a_job_running(void **state)
{
    released = 0;
    ivy_thread *w = ivy_spawn(offload_owned_ms, (void *)100);
    ivy_spawn_n(kill_after_20ms, w);
    ivy_spawn_n(stop_after_40ms, NULL);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(ivy_join(w, NULL), 0);
    assert_int_equal(ivy_hub_free(), 0); /* without ivy_offload_shutdown: the read is gone */
    ivy_spawn_n(offload_200ms, &(uint64_t){0});
    offload_done = false;
    uint64_t t0 = ivy_now_ns();
    assert_int_equal(ivy_run(), 0); /* the new hub re-armed and drained the orphan too */
    assert_true(ivy_now_ns() - t0 >= 200 * MS);
    assert_true(offload_done);
    assert_int_equal(released, 1);
    assert_int_equal(ivy__hub_tls->external, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(blocking_call_in_pool_lets_other_threads_run, teardown),
        cmocka_unit_test_teardown(hundred_offloads_on_four_threads_all_return_their_results,
                                  teardown),
        cmocka_unit_test_teardown(pool_threads_start_on_first_use_and_stop_at_shutdown, teardown),
        cmocka_unit_test_teardown(kill_of_waiter_returns_ecanceled_at_once_and_job_is_released,
                                  teardown),
        cmocka_unit_test_teardown(deadline_expires_offload_with_etimedout, teardown),
        cmocka_unit_test_teardown(getaddrinfo_localhost_resolves_to_loopback, teardown),
        cmocka_unit_test_teardown(getaddrinfo_unknown_name_is_enoent, teardown),
        cmocka_unit_test_teardown(misuse_is_refused_with_exact_errors, teardown),
        cmocka_unit_test_teardown(null_fn_is_einval, teardown),
        cmocka_unit_test_teardown(run_returns_once_jobs_finish_and_nothing_stays_armed, teardown),
        cmocka_unit_test_teardown(shutdown_waits_for_a_job_whose_caller_left, teardown),
        cmocka_unit_test_teardown(pool_outlives_a_hub_freed_with_a_job_running, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
