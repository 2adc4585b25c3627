/*
 * Tests for cluster/: a real supervisor forked from the test, real worker processes, real
 * signals. The workers run the echo app (or a misbehaving app defined here); the test watches
 * them through the shared-memory stats segment the supervisor publishes.
 */
#include "cluster_impl.h"
#include "echo_app.h"
#include "ivy/cluster.h"
#include "ivy/ivy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "util.h"

struct cluster {
    pid_t pid;
    int port;
    int err_fd; /* the supervisor's stderr */
    struct ivy_stats_shm *shm;
    size_t shm_len;
};

static void crash_app(int fd, void *arg)
{
    abort();
}

static void spin_app(int fd, void *arg)
{
    for (;;) {
    }
}

/* Echo, except that a worker told "crash" aborts and one told "exit" exits with status 3: a
   death of its own, as the supervisor sees it, unlike a SIGKILL from outside. */
static void *crash_on_request_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[64];
    ssize_t n;
    while ((n = ivy_recv(fd, buf, sizeof buf)) > 0) {
        if (n >= 5 && !memcmp(buf, "crash", 5)) abort();
        if (n >= 4 && !memcmp(buf, "exit", 4)) _exit(3);
        if (ivy_sendall(fd, buf, (size_t)n) < 0) break;
    }
    ivy_close(fd);
    return NULL;
}

static void crash_on_request_app(int listen_fd, void *arg)
{
    int fd;
    while ((fd = ivy_accept(listen_fd, NULL)) >= 0)
        if (ivy_spawn_n(crash_on_request_conn, (void *)(intptr_t)fd) < 0) ivy_close(fd);
}

static struct cluster start(struct ivy_cluster_options o)
{
    struct cluster c = {.port = free_port()};
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    o.host = "127.0.0.1";
    o.port = c.port;
    if (!o.app) o.app = ivy_echo_app;
    o.app_name = "echo";
    o.quiet = false;
    c.pid = fork();
    assert_true(c.pid >= 0);
    if (c.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a test that failed or timed out */
        dup2(pfd[1], STDERR_FILENO);
        close(pfd[0]);
        _exit(ivy_cluster_run(&o));
    }
    close(pfd[1]);
    fcntl(pfd[0], F_SETFL, O_NONBLOCK);
    c.err_fd = pfd[0];
    for (int i = 0; i < 500 && !c.shm; i++, sleep_ms(5))
        c.shm = ivy__stats_open(c.pid, &c.shm_len);
    assert_non_null(c.shm);
    return c;
}

static int ready_workers(const struct cluster *c)
{
    int n = 0;
    for (unsigned i = 0; i < c->shm->nslots; i++)
        n += IVY_LOAD(c->shm->slot[i].state) == SLOT_READY;
    return n;
}

static void wait_ready(const struct cluster *c, int n)
{
    for (int i = 0; i < 1000 && ready_workers(c) < n; i++)
        sleep_ms(5);
    assert_int_equal(ready_workers(c), n);
}

static pid_t worker_pid(const struct cluster *c, int index)
{
    for (unsigned i = 0; i < c->shm->nslots; i++)
        if (IVY_LOAD(c->shm->slot[i].state) == SLOT_READY && c->shm->slot[i].index == index)
            return (pid_t)IVY_LOAD(c->shm->slot[i].pid);
    return 0;
}

/* The newest process of a seat, ready or still starting. */
static pid_t any_worker_pid(const struct cluster *c, int index, pid_t not )
{
    for (unsigned i = 0; i < c->shm->nslots; i++) {
        pid_t p = (pid_t)IVY_LOAD(c->shm->slot[i].pid);
        if (p && p != not &&IVY_LOAD(c->shm->slot[i].state) != SLOT_FREE &&
            c->shm->slot[i].index == index)
            return p;
    }
    return 0;
}

static int worker_cpu(const struct cluster *c, pid_t pid)
{
    for (unsigned i = 0; i < c->shm->nslots; i++)
        if ((pid_t)IVY_LOAD(c->shm->slot[i].pid) == pid) return c->shm->slot[i].cpu;
    return -1;
}

/* The one CPU a process is pinned to, or -1. */
static int pinned_cpu(pid_t pid)
{
    cpu_set_t set;
    if (sched_getaffinity(pid, sizeof set, &set) < 0 || CPU_COUNT(&set) != 1) return -1;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET(cpu, &set)) return cpu;
    return -1;
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Waits up to timeout_ms for a process other than old in the seat (polled every 0.5 ms);
   returns it, or 0 when none came or (with exited) the supervisor exited, its wait status then
   in *exited; *ms: the milliseconds since t0. */
static pid_t wait_respawn(const struct cluster *c, int index, pid_t old, const struct timespec *t0,
                          int timeout_ms, double *ms, int *exited)
{
    pid_t fresh = 0;
    for (int i = 0; i < 2 * timeout_ms && !fresh; i++) {
        fresh = any_worker_pid(c, index, old);
        if (!fresh && exited && waitpid(c->pid, exited, WNOHANG) == c->pid) break;
        if (!fresh) {
            struct timespec ts = {0, 500000};
            nanosleep(&ts, NULL);
        }
    }
    *ms = ms_since(t0);
    return fresh;
}

static bool still_running(const struct cluster *c)
{
    int status;
    return waitpid(c->pid, &status, WNOHANG) == 0;
}

/* SIGKILLs the seat's ready worker from here, as an operator or a chaos test would; returns
   its replacement, checked to have the same CPU, and in *ms how long it took to be forked. */
static pid_t kill_from_outside(struct cluster *c, int index, double *ms)
{
    pid_t old = worker_pid(c, index);
    assert_true(old > 0);
    int cpu = worker_cpu(c, old);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(kill(old, SIGKILL), 0);
    pid_t fresh = wait_respawn(c, index, old, &t0, 6000, ms, NULL); /* past the 5 s back-off cap */
    if (!fresh)
        fail_msg("no worker replaced pid %d in seat %d within 6 s; the supervisor %s", (int)old,
                 index, still_running(c) ? "is running" : "exited");
    assert_int_equal(worker_cpu(c, fresh), cpu);
    return fresh;
}

static int echo_once(int port, const char *msg)
{
    int fd = dial(port);
    int ok = 0;
    if (fd >= 0) {
        size_t len = strlen(msg);
        char buf[256];
        if (send(fd, msg, len, MSG_NOSIGNAL) == (ssize_t)len) {
            size_t got = 0;
            ssize_t n;
            while (got < len && (n = recv(fd, buf + got, sizeof buf - got, 0)) > 0)
                got += (size_t)n;
            ok = got == len && memcmp(buf, msg, len) == 0;
        }
        close(fd);
    }
    return ok;
}

static int wait_exit(struct cluster *c, int timeout_ms)
{
    int status;
    for (int i = 0; i < timeout_ms / 5; i++, sleep_ms(5))
        if (waitpid(c->pid, &status, WNOHANG) == c->pid) return status;
    kill(c->pid, SIGKILL);
    waitpid(c->pid, &status, 0);
    fail_msg("supervisor did not exit in %d ms", timeout_ms);
    return -1;
}

static void read_stderr(struct cluster *c, char *buf, size_t cap)
{
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(c->err_fd, buf + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = 0;
}

static void stop(struct cluster *c)
{
    kill(c->pid, SIGTERM);
    int status = wait_exit(c, 5000);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    munmap(c->shm, c->shm_len);
    close(c->err_fd);
}

static void both_workers_answer_and_are_pinned(void **state)
{
    struct cluster c = start((struct ivy_cluster_options){.workers = 2});
    wait_ready(&c, 2);
    for (int i = 0; i < 64; i++)
        assert_int_equal(echo_once(c.port, "ping"), 1);
    uint64_t a = 0, b = 0;
    for (unsigned i = 0; i < c.shm->nslots; i++) {
        if (c.shm->slot[i].index == 0) a += IVY_LOAD(c.shm->slot[i].conns_total);
        if (c.shm->slot[i].index == 1) b += IVY_LOAD(c.shm->slot[i].conns_total);
    }
    assert_int_equal(a + b, 64);
    assert_true(a > 0 && b > 0); /* SO_REUSEPORT spreads connections over both */
    char comm[64] = {0}, path[64];
    snprintf(path, sizeof path, "/proc/%d/comm", (int)worker_pid(&c, 1));
    int fd = open(path, O_RDONLY);
    assert_true(read(fd, comm, sizeof comm - 1) > 0);
    close(fd);
    assert_string_equal(comm, "ivy: worker 1\n");
    stop(&c);
}

static void killed_worker_returns_on_same_cpu_within_100ms(void **state)
{
    struct cluster c = start((struct ivy_cluster_options){.workers = 2});
    wait_ready(&c, 2);
    int cpu = worker_cpu(&c, worker_pid(&c, 1));
    double ms;
    pid_t fresh = kill_from_outside(&c, 1, &ms);
    assert_true(ms < 100); /* forked after the 10 ms back-off */
    wait_ready(&c, 2);
    assert_int_equal(worker_pid(&c, 1), fresh);
    assert_int_equal(pinned_cpu(fresh), cpu);
    assert_int_equal(echo_once(c.port, "after"), 1);
    char err[4096];
    read_stderr(&c, err, sizeof err);
    assert_non_null(strstr(err, "killed by signal 9"));
    stop(&c);
}

/* A kill from outside is not the worker failing: each one is followed by the minimum delay,
   never a back-off doubled by the kills before it (which would reach 1.28 s by the 8th). */
static void repeated_outside_kills_each_respawn_within_100ms(void **state)
{
    enum { KILLS = 8 };
    struct cluster c = start((struct ivy_cluster_options){.workers = 2});
    wait_ready(&c, 2);
    int cpu = worker_cpu(&c, worker_pid(&c, 1));
    double ms[KILLS], max = 0;
    for (int i = 0; i < KILLS; i++) {
        /* The same seat each time: the back-off is per seat. */
        pid_t fresh = kill_from_outside(&c, 1, &ms[i]);
        if (ms[i] > max) max = ms[i];
        wait_ready(&c, 2);
        assert_int_equal(worker_pid(&c, 1), fresh);
        assert_int_equal(pinned_cpu(fresh), cpu);
    }
    print_message("respawn after each outside kill (ms):");
    for (int i = 0; i < KILLS; i++)
        print_message(" %.1f", ms[i]);
    print_message("; max %.1f\n", max);
    for (int i = 0; i < KILLS; i++)
        assert_true(ms[i] <= 100);
    assert_true(still_running(&c));
    assert_int_equal(echo_once(c.port, "still here"), 1);
    char err[8192];
    read_stderr(&c, err, sizeof err);
    assert_null(strstr(err, "crash loop"));
    stop(&c); /* exits 0: not a crash-loop stop */
}

static void crash_loop_stops_supervisor(void **state)
{
    struct cluster c = start((struct ivy_cluster_options){.workers = 2, .app = crash_app});
    int status = wait_exit(&c, 10000);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    char err[16384];
    read_stderr(&c, err, sizeof err);
    assert_non_null(strstr(err, "crash loop: 10 worker deaths within 10 s"));
    munmap(c.shm, c.shm_len);
    close(c.err_fd);
}

/* The supervisor tells the two apart by the wait status: SIGKILL not sent by its own watchdog
   is from outside; any other signal or exit status is the worker's own doing. More outside
   kills than a crash loop needs do not stop it; then the worker's own deaths back off (10 ms
   doubling) and the 10th within 10 s stops it. */
static void own_crashes_back_off_and_stop_supervisor_outside_kills_do_not(void **state)
{
    enum { KILLS = 12, LOOP = 10 };
    struct cluster c =
        start((struct ivy_cluster_options){.workers = 1, .app = crash_on_request_app});
    wait_ready(&c, 1);
    for (int i = 0; i < KILLS; i++) {
        double ms;
        kill_from_outside(&c, 0, &ms);
        assert_true(ms <= 100);
        wait_ready(&c, 1);
    }
    assert_true(still_running(&c));

    struct timespec first;
    clock_gettime(CLOCK_MONOTONIC, &first);
    int deaths = 0, status = -1;
    while (deaths <= LOOP) {
        wait_ready(&c, 1);
        pid_t old = worker_pid(&c, 0);
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int fd = dial(c.port);
        assert_true(fd >= 0);
        const char *how = deaths % 2 ? "exit" : "crash"; /* an abort, then an error exit */
        assert_int_equal(send(fd, how, strlen(how), MSG_NOSIGNAL), (ssize_t)strlen(how));
        char buf[16];
        assert_true(recv(fd, buf, sizeof buf, 0) <= 0); /* it died instead of echoing */
        close(fd);
        deaths++;
        double ms;
        if (!wait_respawn(&c, 0, old, &t0, 4000, &ms, &status)) break;
        /* t0 was before the death: what was measured includes the whole back-off. */
        assert_true(ms >= (double)(10 << (deaths - 1)));
    }
    double total = ms_since(&first);
    print_message("%d own deaths stopped the supervisor after %.0f ms\n", deaths, total);
    assert_int_equal(deaths, LOOP);
    assert_true(total >= 5110); /* 10 + 20 + ... + 2560 ms of back-off before the 10th death */
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    char err[16384];
    read_stderr(&c, err, sizeof err);
    assert_non_null(strstr(err, "crash loop: 10 worker deaths within 10 s"));
    assert_non_null(strstr(err, "(last: worker 0 exited with status 3)"));
    int killed = 0;
    for (const char *p = err; (p = strstr(p, "killed by signal 9")); p++)
        killed++;
    assert_int_equal(killed, KILLS);
    munmap(c.shm, c.shm_len);
    close(c.err_fd);
}

static void watchdog_kills_hung_worker(void **state)
{
    struct cluster c =
        start((struct ivy_cluster_options){.workers = 1, .app = spin_app, .timeout = 0.3});
    char err[8192] = {0};
    for (int i = 0; i < 300 && !strstr(err, "watchdog: worker"); i++) {
        sleep_ms(10);
        size_t n = strlen(err);
        ssize_t r = read(c.err_fd, err + n, sizeof err - 1 - n);
        if (r > 0) err[n + (size_t)r] = 0;
    }
    assert_non_null(strstr(err, "watchdog: worker 0"));
    assert_non_null(strstr(err, "> --timeout 0.3 s: killing it"));
    kill(c.pid, SIGQUIT); /* it would only hang again */
    int status = wait_exit(&c, 5000);
    assert_true(WIFEXITED(status));
    munmap(c.shm, c.shm_len);
    close(c.err_fd);
}

static void sighup_replaces_every_worker_without_refusing(void **state)
{
    struct cluster c = start((struct ivy_cluster_options){.workers = 2});
    wait_ready(&c, 2);
    pid_t old0 = worker_pid(&c, 0), old1 = worker_pid(&c, 1);
    kill(c.pid, SIGHUP);
    int failures = 0, rounds = 0;
    for (; rounds < 400; rounds++) {
        failures += !echo_once(c.port, "rolling");
        pid_t p0 = worker_pid(&c, 0), p1 = worker_pid(&c, 1);
        if (p0 && p1 && p0 != old0 && p1 != old1 && ready_workers(&c) == 2) break;
        sleep_ms(2);
    }
    assert_true(rounds < 400);
    assert_int_equal(failures, 0);
    for (int i = 0; i < 400 && (kill(old0, 0) == 0 || kill(old1, 0) == 0); i++)
        sleep_ms(5);
    assert_int_equal(kill(old0, 0), -1); /* both old workers drained and were reaped */
    assert_int_equal(kill(old1, 0), -1);
    stop(&c);
}

static void max_requests_recycles_a_worker(void **state)
{
    struct cluster c = start((struct ivy_cluster_options){.workers = 1, .max_requests = 5});
    wait_ready(&c, 1);
    pid_t old = worker_pid(&c, 0);
    int failures = 0;
    for (int i = 0; i < 40; i++) {
        failures += !echo_once(c.port, "count me");
        sleep_ms(5);
    }
    assert_int_equal(failures, 0);
    pid_t now = worker_pid(&c, 0);
    assert_true(now > 0 && now != old);
    stop(&c);
}

static void prometheus_metrics_are_served(void **state)
{
    int sport = free_port();
    char spec[32];
    snprintf(spec, sizeof spec, "127.0.0.1:%d", sport);
    struct cluster c = start((struct ivy_cluster_options){.workers = 2, .stats_listen = spec});
    wait_ready(&c, 2);
    for (int i = 0; i < 10; i++)
        assert_int_equal(echo_once(c.port, "m"), 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)sport),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const char *req = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    send(fd, req, strlen(req), 0);
    static char buf[65536];
    read_all(fd, buf, sizeof buf);
    close(fd);
    assert_non_null(strstr(buf, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(buf, "# TYPE ivy_requests counter"));
    assert_non_null(strstr(buf, "ivy_requests{worker=\"0\""));
    assert_non_null(strstr(buf, "ivy_requests{worker=\"1\""));
    uint64_t total = 0;
    for (char *p = buf; (p = strstr(p, "\nivy_conns_total{")); p++)
        total += strtoull(strchr(p, '}') + 2, NULL, 10);
    assert_int_equal(total, 10);
    stop(&c);
}

static void sigterm_exits_zero_and_closes_port(void **state)
{
    struct cluster c = start((struct ivy_cluster_options){.workers = 2});
    wait_ready(&c, 2);
    int port = c.port;
    stop(&c);
    assert_int_equal(echo_once(port, "gone"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(both_workers_answer_and_are_pinned),
        cmocka_unit_test(killed_worker_returns_on_same_cpu_within_100ms),
        cmocka_unit_test(repeated_outside_kills_each_respawn_within_100ms),
        cmocka_unit_test(crash_loop_stops_supervisor),
        cmocka_unit_test(own_crashes_back_off_and_stop_supervisor_outside_kills_do_not),
        cmocka_unit_test(watchdog_kills_hung_worker),
        cmocka_unit_test(sighup_replaces_every_worker_without_refusing),
        cmocka_unit_test(max_requests_recycles_a_worker),
        cmocka_unit_test(prometheus_metrics_are_served),
        cmocka_unit_test(sigterm_exits_zero_and_closes_port),
    };
    if (getenv("IVY_TEST_FILTER")) cmocka_set_test_filter(getenv("IVY_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
