/*
 * Helpers for the tests that run a real cluster: a supervisor forked from the test (running
 * ivy_cluster_run with the echo app or the test's own), its workers watched through the
 * shared-memory stats segment it publishes, its stderr read through a pipe.
 */
#ifndef IVY_TESTS_CLUSTER_TEST_H
#define IVY_TESTS_CLUSTER_TEST_H

#include "cluster_impl.h"
#include "echo_app.h"
#include "ivy/cluster.h"
#include "ivy/ivy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "skip.h"
#include "util.h"

struct cluster {
    pid_t pid;
    int port;
    int err_fd; /* the supervisor's stderr */
    struct ivy_stats_shm *shm;
    size_t shm_len;
};

static inline bool cgroup_write(const char *dir, const char *file, const char *value)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = write(fd, value, strlen(value)) == (ssize_t)strlen(value);
    close(fd);
    return ok;
}

/* The descriptor limit the next supervisor (and so its workers) starts with; 0: the test's. */
static rlim_t child_nofile;

/* Starts a supervisor; in the cgroup at dir (when not NULL) before it forks any worker. */
static inline struct cluster start_in(struct ivy_cluster_options o, const char *cgroup)
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
        char self[16];
        snprintf(self, sizeof self, "%d", (int)getpid());
        if (cgroup && !cgroup_write(cgroup, "cgroup.procs", self)) _exit(99);
        struct rlimit rl;
        getrlimit(RLIMIT_NOFILE, &rl);
        rl.rlim_cur = child_nofile ? child_nofile : rl.rlim_cur;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) _exit(98);
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

static inline struct cluster start(struct ivy_cluster_options o)
{
    return start_in(o, NULL);
}

static inline int ready_workers(const struct cluster *c)
{
    int n = 0;
    for (unsigned i = 0; i < c->shm->nslots; i++)
        n += IVY_LOAD(c->shm->slot[i].state) == SLOT_READY;
    return n;
}

static inline void wait_ready(const struct cluster *c, int n)
{
    for (int i = 0; i < 1000 && ready_workers(c) < n; i++)
        sleep_ms(5);
    assert_int_equal(ready_workers(c), n);
}

static inline pid_t worker_pid(const struct cluster *c, int index)
{
    for (unsigned i = 0; i < c->shm->nslots; i++)
        if (IVY_LOAD(c->shm->slot[i].state) == SLOT_READY && c->shm->slot[i].index == index)
            return (pid_t)IVY_LOAD(c->shm->slot[i].pid);
    return 0;
}

/* The newest process of a seat, ready or still starting. */
static inline pid_t any_worker_pid(const struct cluster *c, int index, pid_t not )
{
    for (unsigned i = 0; i < c->shm->nslots; i++) {
        pid_t p = (pid_t)IVY_LOAD(c->shm->slot[i].pid);
        if (p && p != not &&IVY_LOAD(c->shm->slot[i].state) != SLOT_FREE &&
            c->shm->slot[i].index == index)
            return p;
    }
    return 0;
}

static inline int worker_cpu(const struct cluster *c, pid_t pid)
{
    for (unsigned i = 0; i < c->shm->nslots; i++)
        if ((pid_t)IVY_LOAD(c->shm->slot[i].pid) == pid) return c->shm->slot[i].cpu;
    return -1;
}

/* The one CPU a process is pinned to, or -1. */
static inline int pinned_cpu(pid_t pid)
{
    cpu_set_t set;
    if (sched_getaffinity(pid, sizeof set, &set) < 0 || CPU_COUNT(&set) != 1) return -1;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET(cpu, &set)) return cpu;
    return -1;
}

static inline double ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Waits up to timeout_ms for a process other than old in the seat (polled every 0.5 ms);
   returns it, or 0 when none came or (with exited) the supervisor exited, its wait status then
   in *exited; *ms: the milliseconds since t0. */
static inline pid_t wait_respawn(const struct cluster *c, int index, pid_t old,
                                 const struct timespec *t0, int timeout_ms, double *ms, int *exited)
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

static inline bool still_running(const struct cluster *c)
{
    int status;
    return waitpid(c->pid, &status, WNOHANG) == 0;
}

static inline int echo_once(int port, const char *msg)
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

static inline int wait_exit(struct cluster *c, int timeout_ms)
{
    int status;
    for (int i = 0; i < timeout_ms / 5; i++, sleep_ms(5))
        if (waitpid(c->pid, &status, WNOHANG) == c->pid) return status;
    kill(c->pid, SIGKILL);
    waitpid(c->pid, &status, 0);
    fail_msg("supervisor did not exit in %d ms", timeout_ms);
    return -1;
}

static inline void read_stderr(struct cluster *c, char *buf, size_t cap)
{
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(c->err_fd, buf + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = 0;
}

static inline int count(const char *haystack, const char *needle)
{
    int n = 0;
    for (const char *p = haystack; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

static inline void stop(struct cluster *c)
{
    kill(c->pid, SIGTERM);
    int status = wait_exit(c, 5000);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    munmap(c->shm, c->shm_len);
    close(c->err_fd);
}

/* The slot of a process, or NULL. */
static inline const struct ivy_stats_slot *slot_of(const struct cluster *c, pid_t pid)
{
    for (unsigned i = 0; i < c->shm->nslots; i++)
        if ((pid_t)IVY_LOAD(c->shm->slot[i].pid) == pid) return &c->shm->slot[i];
    return NULL;
}

/* The supervisor has reaped pid (it is gone, not a zombie of ours to collect). */
static inline bool reaped(pid_t pid)
{
    for (int i = 0; i < 400 && kill(pid, 0) == 0; i++)
        sleep_ms(5);
    return kill(pid, 0) == -1 && errno == ESRCH;
}

/* Within 2 s, pid is gone or a zombie (whoever reaps orphans here may be slow to). */
static inline bool dies(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    for (int i = 0; i < 400; i++, sleep_ms(5)) {
        int fd = open(path, O_RDONLY);
        if (fd < 0) return true;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) return true;
        buf[n] = 0;
        const char *p = strrchr(buf, ')');
        if (p && p[1] == ' ' && p[2] == 'Z') return true;
    }
    return false;
}

/* Waits up to timeout_ms for needle in the supervisor's stderr, read into err (appended). */
static inline bool wait_stderr(struct cluster *c, char *err, size_t cap, const char *needle,
                               int timeout_ms)
{
    for (int i = 0; i < timeout_ms / 5 && !strstr(err, needle); i++) {
        size_t n = strlen(err);
        ssize_t r = read(c->err_fd, err + n, cap - 1 - n);
        if (r > 0)
            err[n + (size_t)r] = 0;
        else
            sleep_ms(5);
    }
    return strstr(err, needle) != NULL;
}

#endif
