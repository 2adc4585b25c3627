/*
 * Tests for cluster/worker.c, the worker process as the kernel sees it: which descriptors it
 * holds, and how it behaves out of them. A real cluster, real clients, /proc.
 */
#include "cluster_test.h"

#include <dirent.h>

/* The inode of the socket listening on a TCP port, from /proc/net/tcp; 0 if none. */
static unsigned long listening_inode(int port)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    char line[512];
    unsigned long inode = 0;
    while (f && !inode && fgets(line, sizeof line, f)) {
        unsigned lport, st;
        unsigned long ino;
        if (sscanf(line, " %*d: %*x:%x %*x:%*x %x %*x:%*x %*x:%*x %*x %*u %*d %lu", &lport, &st,
                   &ino) == 3 &&
            (int)lport == port && st == 0x0A)
            inode = ino;
    }
    if (f) fclose(f);
    return inode;
}

/* Whether a process holds the socket of that inode. */
static bool holds_socket(pid_t pid, unsigned long inode)
{
    char dir[64], path[320], link[128], want[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    snprintf(want, sizeof want, "socket:[%lu]", inode);
    DIR *d = opendir(dir);
    assert_non_null(d);
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n > 0) {
            link[n] = 0;
            found = !strcmp(link, want);
        }
    }
    closedir(d);
    return found;
}

/* Workers are forked, not exec'd: CLOEXEC does not keep the supervisor's --stats-listen
   socket out of them; they must close it. */
static void workers_do_not_hold_the_stats_socket(void **state)
{
    int sport = free_port();
    char spec[32];
    snprintf(spec, sizeof spec, "127.0.0.1:%d", sport);
    struct cluster c = start((struct ivy_cluster_options){.workers = 2, .stats_listen = spec});
    wait_ready(&c, 2);
    unsigned long inode = listening_inode(sport);
    assert_true(inode != 0);
    assert_true(holds_socket(c.pid, inode));
    assert_false(holds_socket(worker_pid(&c, 0), inode));
    assert_false(holds_socket(worker_pid(&c, 1), inode));
    stop(&c);
}

/* Clock ticks of CPU (user + system) a process has used. */
static unsigned long long cpu_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    assert_true(n > 0);
    buf[n] = 0;
    unsigned long long ut, st;
    /* After the command name's closing parenthesis: state, then fields 4..13, then utime,
       stime (fields 14 and 15). */
    const char *p = strrchr(buf, ')');
    assert_int_equal(
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st), 2);
    return ut + st;
}

/* A worker limited to 256 descriptors, 1,000 clients connected: it accepts what it can, then
   backs off without spinning (its CPU over a second of exhaustion is measured), nothing
   crashes, and once the clients leave it serves again. */
static void descriptor_exhaustion_backs_off_and_recovers(void **state)
{
    enum { CLIENTS = 1000 };
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_max < CLIENTS + 64)
        skip_visibly("the test itself needs 1,064 descriptors (hard RLIMIT_NOFILE)");
    rlim_t old_cur = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    child_nofile = 256;
    struct cluster c = start((struct ivy_cluster_options){.workers = 1});
    child_nofile = 0;
    wait_ready(&c, 1);
    pid_t w = worker_pid(&c, 0);
    static int fds[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        assert_true(fds[i] >= 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)c.port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int rc = connect(fds[i], (struct sockaddr *)&a, sizeof a);
        assert_true(rc == 0 || errno == EINPROGRESS);
    }
    /* Exhausted: accept says so, and what it holds stops growing, short of every client. */
    static char err[16384];
    err[0] = 0;
    assert_true(wait_stderr(&c, err, sizeof err, "Too many open files; backing off", 10000));
    const struct ivy_stats_slot *s = slot_of(&c, w);
    uint64_t seen = 0;
    for (int stable = 0, i = 0; stable < 40 && i < 2000; i++, sleep_ms(5)) {
        uint64_t now = IVY_LOAD(s->conns_open);
        stable = now == seen && now > 0 ? stable + 1 : 0;
        seen = now;
    }
    assert_true(seen > 100 && seen < 256);
    unsigned long long t0 = cpu_ticks(w);
    uint64_t it0 = IVY_LOAD(s->iterations);
    sleep_ms(1000);
    unsigned long long ticks = cpu_ticks(w) - t0;
    uint64_t iterations = IVY_LOAD(s->iterations) - it0;
    long hz = sysconf(_SC_CLK_TCK);
    print_message("exhausted at %llu connections: over 1 s, %llu ticks of CPU (of %ld) and %llu "
                  "hub iterations\n",
                  (unsigned long long)seen, ticks, hz, (unsigned long long)iterations);
    assert_true(ticks * 10 <= (unsigned long long)hz); /* at most 10% of a CPU */
    assert_true(iterations < 1000);                    /* a spinning hub makes millions */
    assert_int_equal(worker_pid(&c, 0), w);            /* nothing crashed */
    for (int i = 0; i < CLIENTS; i++)
        close(fds[i]);
    /* Descriptors free again: it serves (the back-off is 1 s at most). */
    int ok = 0;
    for (int i = 0; i < 400 && !ok; i++)
        if (!(ok = echo_once(c.port, "back"))) sleep_ms(10);
    assert_int_equal(ok, 1);
    assert_int_equal(worker_pid(&c, 0), w);
    size_t n = strlen(err);
    read_stderr(&c, err + n, sizeof err - n);
    assert_null(strstr(err, "worker 0 (pid ")); /* no death */
    stop(&c);
    rl.rlim_cur = old_cur;
    setrlimit(RLIMIT_NOFILE, &rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(workers_do_not_hold_the_stats_socket),
        cmocka_unit_test(descriptor_exhaustion_backs_off_and_recovers),
    };
    if (getenv("IVY_TEST_FILTER")) cmocka_set_test_filter(getenv("IVY_TEST_FILTER"));
    return ivy_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
