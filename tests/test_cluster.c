/*
 * Tests for cluster/supervisor.c: a real supervisor forked from the test, real worker
 * processes, real signals. The workers run the echo app (or a misbehaving app defined here);
 * the test watches them through the shared-memory stats segment the supervisor publishes.
 */
#include "cluster_test.h"

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

/* Allocates and touches memory until the OOM killer stops it. mmap, not malloc: the sanitizer's
   allocator would add its own bookkeeping to what is measured. */
static void hog_app(int fd, void *arg)
{
    for (;;) {
        size_t len = 1 << 20;
        char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED) memset(p, 0x5a, len);
    }
}

/* The cgroup a test made (removed by its teardown, even after a failure), or "". */
static char test_cgroup[128];

static bool cgroup_has(const char *dir, const char *file)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    return access(path, F_OK) == 0;
}

static bool cgroup_make(const char *ctrl, bool *v2)
{
    char on[256] = " ";
    int fd = open("/sys/fs/cgroup/cgroup.subtree_control", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, on + 1, sizeof on - 3);
        close(fd);
        on[n > 0 ? n + 1 : 1] = 0;
    }
    for (char *p = on; *p; p++)
        if (*p == '\n') *p = ' ';
    strcat(on, " ");
    char word[32];
    snprintf(word, sizeof word, " %s ", ctrl);
    *v2 = strstr(on, word) != NULL;
    char v1[64];
    snprintf(v1, sizeof v1, "/sys/fs/cgroup/%s", ctrl);
    if (!*v2 && !cgroup_has(v1, "tasks")) return false; /* tasks: only in a v1 hierarchy */
    snprintf(test_cgroup, sizeof test_cgroup, "%s/ivy-test-%d", *v2 ? "/sys/fs/cgroup" : v1,
             (int)getpid());
    if (mkdir(test_cgroup, 0755) == 0) return true;
    test_cgroup[0] = 0;
    return false;
}

/* Makes test_cgroup, a fresh cgroup with the controller ctrl: cgroup v2 under /sys/fs/cgroup when
   the controller is enabled for its children, else the v1 hierarchy /sys/fs/cgroup/<ctrl>; returns
   whether it is v2. Skips the test when neither is there or we may not create one (not root). */
static bool cgroup_make_or_skip(const char *ctrl)
{
    bool v2;
    if (cgroup_make(ctrl, &v2)) return v2;
    char why[256];
    snprintf(why, sizeof why,
             "cannot make a %s cgroup (needs root and cgroup v2 with the %s controller in "
             "/sys/fs/cgroup/cgroup.subtree_control, or v1)",
             ctrl, ctrl);
    skip_visibly(why);
    return false;
}

static int cgroup_teardown(void **state)
{
    if (!test_cgroup[0]) return 0;
    char path[160], pids[4096] = {0};
    snprintf(path, sizeof path, "%s/cgroup.procs", test_cgroup);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) { /* a failed test may have left its supervisor and workers */
        (void)!read(fd, pids, sizeof pids - 1);
        close(fd);
    }
    for (char *p = pids; *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p))
        kill((pid_t)atoi(p), SIGKILL);
    for (int i = 0; i < 400 && rmdir(test_cgroup) < 0 && errno == EBUSY; i++)
        sleep_ms(5); /* the last exits are still leaving the cgroup */
    test_cgroup[0] = 0;
    return 0;
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
    /* Each pinned to its own CPU of the mask, the one its slot names (the mask's first two). */
    cpu_set_t mask;
    assert_int_equal(sched_getaffinity(0, sizeof mask, &mask), 0);
    int first[2] = {-1, -1};
    for (int cpu = 0, k = 0; cpu < CPU_SETSIZE && k < 2; cpu++)
        if (CPU_ISSET(cpu, &mask)) first[k++] = cpu;
    if (first[1] < 0) first[1] = first[0]; /* one CPU: both seats share it */
    for (int w = 0; w < 2; w++) {
        pid_t pid = worker_pid(&c, w);
        assert_int_equal(worker_cpu(&c, pid), first[w]);
        assert_int_equal(pinned_cpu(pid), first[w]);
    }
    stop(&c);
}

/* A worker killed from outside comes back after the minimum delay (10 ms), without back-off.
   The bound checked is below what a back-off would reach by the 8th death (10 ms << 7 = 1280 ms)
   and above what a loaded 2-core sanitizer run takes to fork: not 100 ms. */
#define NO_BACKOFF_MS 1000

static void killed_worker_returns_on_same_cpu(void **state)
{
    struct cluster c = start((struct ivy_cluster_options){.workers = 2});
    wait_ready(&c, 2);
    int cpu = worker_cpu(&c, worker_pid(&c, 1));
    double ms;
    pid_t fresh = kill_from_outside(&c, 1, &ms);
    assert_true(ms < NO_BACKOFF_MS);
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
static void repeated_outside_kills_each_respawn_without_back_off(void **state)
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
        assert_true(ms[i] < NO_BACKOFF_MS);
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
        assert_true(ms < NO_BACKOFF_MS);
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
    assert_int_equal(count(err, "killed by signal 9"), KILLS);
    munmap(c.shm, c.shm_len);
    close(c.err_fd);
}

/* The OOM killer's SIGKILL is the worker's own death, not a kill from outside: a worker that
   outgrows its cgroup's memory limit again and again backs off (10 ms doubling) and the 10th
   such death within 10 s stops the supervisor. Needs a memory cgroup this test can make (root;
   cgroup v2 with the memory controller enabled for children, or v1); skipped otherwise. */
static void oom_kills_back_off_and_stop_supervisor(void **state)
{
    bool v2 = cgroup_make_or_skip("memory");
    /* 64 MiB and no swap: the worker is killed within milliseconds instead of swapping. */
    bool limited = v2 ? cgroup_write(test_cgroup, "memory.max", "64M") &&
                            (!cgroup_has(test_cgroup, "memory.swap.max") ||
                             cgroup_write(test_cgroup, "memory.swap.max", "0"))
                      : cgroup_write(test_cgroup, "memory.limit_in_bytes", "64M") &&
                            (!cgroup_has(test_cgroup, "memory.memsw.limit_in_bytes") ||
                             cgroup_write(test_cgroup, "memory.memsw.limit_in_bytes", "64M"));
    assert_true(limited);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct cluster c =
        start_in((struct ivy_cluster_options){.workers = 1, .app = hog_app}, test_cgroup);
    int status = wait_exit(&c, 20000); /* a hang guard: loaded machines are slow to OOM */
    double ms = ms_since(&t0);
    char err[16384];
    read_stderr(&c, err, sizeof err);
    print_message("10 OOM kills stopped the supervisor after %.0f ms (cgroup v%d)\n", ms,
                  v2 ? 2 : 1);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    assert_int_equal(count(err, "worker 0 (pid "), 10);
    assert_int_equal(count(err, "killed by the OOM killer (SIGKILL)"), 11); /* + the last */
    assert_null(strstr(err, "killed by signal 9"));
    assert_non_null(strstr(err, "crash loop: 10 worker deaths within 10 s; stopping (last: "
                                "worker 0 killed by the OOM killer (SIGKILL))"));
    assert_true(ms >= 5110); /* 10 + 20 + ... + 2560 ms of back-off before the 10th death */
    munmap(c.shm, c.shm_len);
    close(c.err_fd);
}

/* A seat whose worker cannot be forked stays pending and is retried (after 100 ms, then 200,
   400 ...), logged once, until fork works again. fork fails for real: the supervisor is in a
   pids cgroup whose pids.max is lowered to 1 (itself) before its worker is killed, and raised
   again 300 ms later. Skipped where no pids cgroup can be made. */
static void failed_respawn_is_retried_until_fork_works(void **state)
{
    cgroup_make_or_skip("pids");
    struct cluster c = start_in((struct ivy_cluster_options){.workers = 1}, test_cgroup);
    wait_ready(&c, 1);
    pid_t old = worker_pid(&c, 0);
    assert_true(cgroup_write(test_cgroup, "pids.max", "1"));
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(kill(old, SIGKILL), 0);
    sleep_ms(300);
    assert_int_equal(any_worker_pid(&c, 0, old), 0); /* fork keeps failing: the seat is empty */
    assert_true(still_running(&c));
    assert_true(cgroup_write(test_cgroup, "pids.max", "max"));
    double ms;
    pid_t fresh = wait_respawn(&c, 0, old, &t0, 3000, &ms, NULL);
    print_message("seat refilled %.0f ms after the kill; fork failed for the first 300 ms\n", ms);
    assert_true(fresh > 0);
    assert_true(ms < 1500); /* attempts at about 10, 110, 310, 710 ms */
    wait_ready(&c, 1);
    assert_int_equal(echo_once(c.port, "back"), 1);
    char err[8192];
    read_stderr(&c, err, sizeof err);
    assert_int_equal(count(err, "cannot start worker 0: Resource temporarily unavailable"), 1);
    assert_non_null(strstr(err, "worker 0 started after "));
    assert_null(strstr(err, "crash loop"));
    stop(&c);
}

static void watchdog_kills_hung_worker(void **state)
{
    struct cluster c =
        start((struct ivy_cluster_options){.workers = 1, .app = spin_app, .timeout = 0.3});
    pid_t hung = 0;
    for (int i = 0; i < 400 && !hung; i++, sleep_ms(5))
        hung = any_worker_pid(&c, 0, 0);
    assert_true(hung > 0);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char err[8192] = {0};
    for (int i = 0; i < 300 && !strstr(err, "watchdog: worker"); i++) {
        sleep_ms(10);
        size_t n = strlen(err);
        ssize_t r = read(c.err_fd, err + n, sizeof err - 1 - n);
        if (r > 0) err[n + (size_t)r] = 0;
    }
    assert_non_null(strstr(err, "watchdog: worker 0"));
    assert_non_null(strstr(err, "> --timeout 0.3 s: killing it"));
    char line[64];
    snprintf(line, sizeof line, "watchdog: worker 0 (pid %d) silent for ", (int)hung);
    assert_non_null(strstr(err, line));
    /* Killed for real, and replaced: a new process in the seat, its restart counted. */
    double ms;
    pid_t fresh = wait_respawn(&c, 0, hung, &t0, 3000, &ms, NULL);
    assert_true(fresh > 0 && fresh != hung);
    assert_true(reaped(hung));
    const struct ivy_stats_slot *s = slot_of(&c, fresh);
    assert_non_null(s);
    assert_int_equal(IVY_LOAD(s->restarts), 1);
    kill(c.pid, SIGQUIT); /* it would only hang again */
    int status = wait_exit(&c, 5000);
    assert_true(WIFEXITED(status));
    munmap(c.shm, c.shm_len);
    close(c.err_fd);
}

static void sighup_replaces_every_worker_without_refusing(void **state)
{
    /* Without migration, what is queued in a leaving worker's listener is reset. */
    struct cluster c = start((struct ivy_cluster_options){.workers = 2, .migrate_req = true});
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

/* Recycled, not crashed: a crash would also change the pid, but counts a restart, is logged
   as a death, and loses the connection that was being served. */
static void max_requests_recycles_a_worker(void **state)
{
    struct cluster c =
        start((struct ivy_cluster_options){.workers = 1, .max_requests = 5, .migrate_req = true});
    wait_ready(&c, 1);
    pid_t old = worker_pid(&c, 0);
    int failures = 0;
    for (int i = 0; i < 40; i++) {
        failures += !echo_once(c.port, "count me");
        sleep_ms(5);
    }
    assert_int_equal(failures, 0);
    /* A recycle may be under way (two ready for a moment): wait until one is left. */
    for (int i = 0; i < 1000 && (ready_workers(&c) != 1 || worker_pid(&c, 0) == old); i++)
        sleep_ms(5);
    assert_int_equal(ready_workers(&c), 1);
    pid_t now = worker_pid(&c, 0);
    assert_true(now > 0 && now != old);
    assert_true(reaped(old));
    const struct ivy_stats_slot *s = slot_of(&c, now);
    assert_non_null(s);
    assert_int_equal(IVY_LOAD(s->restarts), 0);
    char err[8192];
    read_stderr(&c, err, sizeof err);
    assert_null(strstr(err, "worker 0 (pid ")); /* no death logged */
    assert_non_null(strstr(err, "protection: net.ipv4.tcp_migrate_req=1 (set by --migrate-req)"));
    stop(&c);
}

/* Echoes on fresh connections until the log says needle; returns how many failed. */
static int echo_until(struct cluster *c, char *err, size_t cap, const char *needle, int *rounds)
{
    int failures = 0;
    for (*rounds = 0; *rounds < 2000 && !wait_stderr(c, err, cap, needle, 5); (*rounds)++)
        failures += !echo_once(c->port, "reload");
    return failures;
}

/* A replacement that cannot start (here: the supervisor's descriptor limit lowered to 4 with
   prlimit, as an operator's mistake would, so a new worker has no room for its listener and
   ring) must leave the old workers serving: each death backs off, none counts toward the crash
   loop (two failed reloads are 10 deaths), and the reload is reported as failed. With the limit
   back, the next SIGHUP replaces every worker. */
static void failed_reload_keeps_the_old_workers_serving(void **state)
{
    struct cluster c = start((struct ivy_cluster_options){.workers = 2, .migrate_req = true});
    wait_ready(&c, 2);
    pid_t old0 = worker_pid(&c, 0), old1 = worker_pid(&c, 1);
    struct rlimit saved, tight;
    assert_int_equal(prlimit(c.pid, RLIMIT_NOFILE, NULL, &saved), 0);
    tight = (struct rlimit){4, saved.rlim_max};
    assert_int_equal(prlimit(c.pid, RLIMIT_NOFILE, &tight, NULL), 0);
    static char err[65536];
    err[0] = 0;
    int rounds, failures = 0;
    for (int reload = 1; reload <= 2; reload++) {
        kill(c.pid, SIGHUP);
        char want[64];
        snprintf(want, sizeof want, "reload failed: worker 0: 5 replacements");
        err[0] = 0; /* each reload's own lines */
        failures += echo_until(&c, err, sizeof err, want, &rounds);
        assert_non_null(strstr(err, want));
        assert_int_equal(count(err, "its replacement (pid "), 4);
        /* Backed off: 100 ms doubling, not the 10 ms re-fork that made a crash loop. */
        const char *a = strstr(err, "trying again in 100 ms"), *b = strstr(err, "in 200 ms"),
                   *d = strstr(err, "in 400 ms"), *e = strstr(err, "in 800 ms");
        assert_true(a && b && d && e && a < b && b < d && d < e);
        assert_non_null(strstr(err, "before it was ready; the old one (pid "));
        assert_null(strstr(err, "crash loop"));
        assert_int_equal(worker_pid(&c, 0), old0);
        assert_int_equal(worker_pid(&c, 1), old1);
        assert_int_equal(IVY_LOAD(c.shm->failed_replacements), 5 * reload);
    }
    print_message("two failed reloads: 10 replacement deaths, %d failed requests\n", failures);
    assert_int_equal(failures, 0);
    assert_true(still_running(&c));
    for (unsigned i = 0; i < c.shm->nslots; i++)
        if (IVY_LOAD(c.shm->slot[i].pid)) assert_int_equal(IVY_LOAD(c.shm->slot[i].restarts), 0);

    assert_int_equal(prlimit(c.pid, RLIMIT_NOFILE, &saved, NULL), 0);
    kill(c.pid, SIGHUP);
    for (int i = 0; i < 1000; i++, sleep_ms(5)) {
        pid_t p0 = worker_pid(&c, 0), p1 = worker_pid(&c, 1);
        if (p0 && p1 && p0 != old0 && p1 != old1 && ready_workers(&c) == 2) break;
    }
    assert_true(worker_pid(&c, 0) != old0 && worker_pid(&c, 1) != old1);
    assert_true(reaped(old0) && reaped(old1));
    assert_int_equal(echo_once(c.port, "after"), 1);
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
    assert_non_null(
        strstr(buf, "# TYPE ivy_failed_replacements counter\nivy_failed_replacements 0\n"));
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
        cmocka_unit_test(killed_worker_returns_on_same_cpu),
        cmocka_unit_test(repeated_outside_kills_each_respawn_without_back_off),
        cmocka_unit_test(crash_loop_stops_supervisor),
        cmocka_unit_test(own_crashes_back_off_and_stop_supervisor_outside_kills_do_not),
        cmocka_unit_test_teardown(oom_kills_back_off_and_stop_supervisor, cgroup_teardown),
        cmocka_unit_test_teardown(failed_respawn_is_retried_until_fork_works, cgroup_teardown),
        cmocka_unit_test(watchdog_kills_hung_worker),
        cmocka_unit_test(sighup_replaces_every_worker_without_refusing),
        cmocka_unit_test(max_requests_recycles_a_worker),
        cmocka_unit_test(failed_reload_keeps_the_old_workers_serving),
        cmocka_unit_test(prometheus_metrics_are_served),
        cmocka_unit_test(sigterm_exits_zero_and_closes_port),
    };
    if (getenv("IVY_TEST_FILTER")) cmocka_set_test_filter(getenv("IVY_TEST_FILTER"));
    return ivy_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
