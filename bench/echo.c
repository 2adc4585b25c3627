/*
 * echo [--conns N] [--seconds S] [--rounds R] [--only ivy|raw]: the abstraction tax, DESIGN.md §6.
 *
 * 64-byte ping-pong on N loopback connections (default 64), one message in flight on each,
 *  against two servers measured in the same run, alternately (R rounds, default 3, each server
 * first in every other round), with medians:
 *   ivy  ivy's green-thread echo server: a green thread per connection looping ivy_recv and
 *        ivy_sendall, in a forked child;
 *   raw  build/bench/raw_echo_server, the no-coroutine liburing completion loop, exec'd.
 * The server runs pinned to the first CPU of our affinity mask, the client (this process) to the
 * second. The client is one and the same for both servers and written without ivy: a tight
 * io_uring loop (fixed files, multishot receives into provided buffers, sends that post no
 * completion) that spins rather than sleeps, so that no reply waits for it to wake up and the
 * server pays nothing to wake it. It prints the share of its polls that found no reply: near
 * 100%, it was waiting on the server, which is then what was measured.
 *
 * The machine may be shared and noisy, so besides requests per second each run reads the server
 * process's CPU time from /proc/PID/stat and prints CPU microseconds per message, which other
 * load on the machine disturbs far less.
 */
#include "bench.h"
#include "ivy/ivy.h"

#include <liburing.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { MSG = 64, MAX_ROUNDS = 15, BGID = 7, CBUFSZ = 512 };
enum { UD_RECV = 1, UD_SEND = 2 };
#define UD(op, conn) ((uint64_t)(op) << 32 | (uint32_t)(conn))

static const double WARMUP_S = 0.5;

static int server_cpu = -1, client_cpu = -1;
static pid_t server_pid; /* the server running now, killed if we die */

static void die(const char *what, int err)
{
    fprintf(stderr, "echo: %s: %s\n", what, strerror(err));
    if (server_pid > 0) kill(server_pid, SIGKILL);
    exit(1);
}

/* In a server child: die with the bench, however it ends. */
static void die_with_parent(pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1); /* it died before prctl */
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pin(int cpu)
{
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) die("sched_setaffinity", errno);
}

/* Server on the first CPU we may use, client on the second; unpinned on a single CPU. */
static void choose_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) die("sched_getaffinity", errno);
    for (int cpu = 0; cpu < CPU_SETSIZE && client_cpu < 0; cpu++) {
        if (!CPU_ISSET(cpu, &set)) continue;
        if (server_cpu < 0)
            server_cpu = cpu;
        else
            client_cpu = cpu;
    }
    if (client_cpu < 0) {
        fprintf(stderr, "echo: one CPU only: client and server share it, figures are rough\n");
        server_cpu = -1;
    }
}

/* utime + stime of a process, in seconds: fields 14 and 15 of /proc/PID/stat. */
static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long utime, stime;
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/*
 * Seconds the process's main thread has waited, runnable, for a CPU (the second field of
 * /proc/PID/schedstat): how much other load on the machine held the server back.
 */
static double proc_wait_s(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/schedstat", (int)pid);
    FILE *f = fopen(path, "r");
    unsigned long long run, wait;
    int n = f ? fscanf(f, "%llu %llu", &run, &wait) : 0;
    if (f) fclose(f);
    return n == 2 ? (double)wait / 1e9 : NAN;
}

/* ---- the ivy server: what the abstraction costs ------------------------------------------ */

static void *ivy_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    ssize_t n;
    while ((n = ivy_recv(fd, buf, sizeof buf)) > 0)
        if (ivy_sendall(fd, buf, (size_t)n) < 0) break;
    ivy_close(fd);
    return NULL;
}

static void *ivy_acceptor(void *arg)
{
    int fd, listener = (int)(intptr_t)arg;
    while ((fd = ivy_accept(listener, NULL)) >= 0)
        ivy_spawn_n(ivy_conn, (void *)(intptr_t)fd);
    fprintf(stderr, "echo: ivy server: accept: %s\n", strerror(-fd));
    return NULL;
}

/* Forks the ivy server on a listener opened here, so that clients may connect at once. */
static pid_t start_ivy(int *port)
{
    int listener = ivy_listen("127.0.0.1", 0, 4096, 0);
    if (listener < 0) die("ivy_listen", -listener);
    int one = 1; /* accepted sockets inherit it, as raw_echo_server's do */
    setsockopt(listener, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    *port = ivy_local_port(listener);
    pid_t parent = getpid(), pid = fork();
    if (pid < 0) die("fork", errno);
    if (pid == 0) {
        die_with_parent(parent);
        pin(server_cpu);
        struct ivy_hub_options o = {.quiet = true};
        if (ivy_hub_init(&o) < 0 || ivy_spawn_n(ivy_acceptor, (void *)(intptr_t)listener) < 0)
            _exit(1);
        _exit(ivy_run() < 0);
    }
    close(listener);
    return pid;
}

/* ---- the raw server: the peer --------------------------------------------------------------- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof sin;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) != 0)
        die("finding a free port", errno);
    close(fd);
    return ntohs(sin.sin_port);
}

static char raw_path[PATH_MAX];

/* raw_echo_server lives next to this binary. */
static void find_raw(void)
{
    ssize_t n = readlink("/proc/self/exe", raw_path, sizeof raw_path - 32);
    if (n < 0) die("readlink /proc/self/exe", errno);
    raw_path[n] = 0;
    char *slash = strrchr(raw_path, '/');
    strcpy(slash ? slash + 1 : raw_path, "raw_echo_server");
    if (access(raw_path, X_OK) != 0) {
        fprintf(stderr, "echo: %s: %s (build the bench/ targets)\n", raw_path, strerror(errno));
        exit(1);
    }
}

/* Execs raw_echo_server and waits for its "listening on" line. */
static pid_t start_raw(int *port)
{
    int pipefd[2];
    *port = free_port();
    if (pipe(pipefd) != 0) die("pipe", errno);
    pid_t parent = getpid(), pid = fork();
    if (pid < 0) die("fork", errno);
    if (pid == 0) {
        char arg[16];
        die_with_parent(parent); /* kept across exec */
        snprintf(arg, sizeof arg, "%d", *port);
        pin(server_cpu);
        dup2(pipefd[1], STDOUT_FILENO);
        close(pipefd[0]);
        close(pipefd[1]);
        execl(raw_path, raw_path, arg, (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    char line[128];
    ssize_t n = read(pipefd[0], line, sizeof line - 1);
    close(pipefd[0]);
    if (n <= 0 || strncmp(line, "listening on", 12) != 0) {
        fprintf(stderr, "echo: %s did not start\n", raw_path);
        exit(1);
    }
    return pid;
}

static void stop_server(pid_t pid)
{
    kill(pid, SIGTERM);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
}

/* ---- the client: the same for both servers ------------------------------------------------ */

struct client {
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    char *bufs;
    unsigned nbufs, recycled;
    int *fds;
    unsigned *got; /* bytes of the current reply received, per connection */
    int conns;
    uint64_t msgs;
};

static const char payload[MSG] = "ivy echo bench: 64 bytes of ping-pong, one message in flight.";

static void client_send(struct client *c, int i)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&c->ring);
    io_uring_prep_send(sqe, i, payload, MSG, MSG_NOSIGNAL | MSG_WAITALL);
    /* Success posts nothing: one CQE per message on our side, the reply. */
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, UD(UD_SEND, i));
}

static void client_arm_recv(struct client *c, int i)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&c->ring);
    io_uring_prep_recv_multishot(sqe, i, NULL, 0, 0);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, UD(UD_RECV, i));
}

static void client_open(struct client *c, int port, int conns)
{
    memset(c, 0, sizeof *c);
    c->conns = conns;
    /* Two SQEs per connection at most in one batch (a send and a re-armed receive). */
    unsigned entries = 64;
    while (entries < 2u * (unsigned)conns)
        entries *= 2;
    struct io_uring_params p = {.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN};
    int rc = io_uring_queue_init_params(entries, &c->ring, &p);
    if (rc == -EINVAL) {
        memset(&p, 0, sizeof p);
        rc = io_uring_queue_init_params(entries, &c->ring, &p);
    }
    if (rc < 0) die("client io_uring_queue_init", -rc);
    io_uring_register_ring_fd(&c->ring);

    c->fds = calloc((size_t)conns, sizeof *c->fds);
    c->got = calloc((size_t)conns, sizeof *c->got);
    if (!c->fds || !c->got) die("calloc", ENOMEM);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < conns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
        if (fd < 0) die("socket", errno);
        if (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) die("connect", errno);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->fds[i] = fd;
    }
    /* Fixed files: no descriptor lookup per request. */
    if ((rc = io_uring_register_files(&c->ring, c->fds, (unsigned)conns)) < 0)
        die("io_uring_register_files", -rc);

    /* At most one reply in flight per connection: 2 buffers each leave room to spare. */
    c->nbufs = 64;
    while (c->nbufs < 2u * (unsigned)conns && c->nbufs < 32768)
        c->nbufs *= 2;
    c->br = mmap(NULL, c->nbufs * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    c->bufs = malloc((size_t)c->nbufs * CBUFSZ);
    if (c->br == MAP_FAILED || !c->bufs) die("client buffers", ENOMEM);
    struct io_uring_buf_reg reg = {
        .ring_addr = (uintptr_t)c->br, .ring_entries = c->nbufs, .bgid = BGID};
    if ((rc = io_uring_register_buf_ring(&c->ring, &reg, 0)) < 0)
        die("io_uring_register_buf_ring", -rc);
    io_uring_buf_ring_init(c->br);
    for (unsigned b = 0; b < c->nbufs; b++)
        io_uring_buf_ring_add(c->br, c->bufs + (size_t)b * CBUFSZ, CBUFSZ, (unsigned short)b,
                              io_uring_buf_ring_mask(c->nbufs), (int)b);
    io_uring_buf_ring_advance(c->br, (int)c->nbufs);
}

static void client_close(struct client *c)
{
    io_uring_queue_exit(&c->ring);
    for (int i = 0; i < c->conns; i++)
        close(c->fds[i]);
    munmap(c->br, c->nbufs * sizeof(struct io_uring_buf));
    free(c->bufs);
    free(c->fds);
    free(c->got);
}

/* Handles one completion; false when the server failed us. */
static bool client_cqe(struct client *c, const struct io_uring_cqe *cqe)
{
    int i = (int)(uint32_t)cqe->user_data;
    if (cqe->user_data >> 32 == UD_SEND) { /* only failures post */
        fprintf(stderr, "echo: send on connection %d: %s\n", i, strerror(-cqe->res));
        return false;
    }
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        unsigned b = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        io_uring_buf_ring_add(c->br, c->bufs + (size_t)b * CBUFSZ, CBUFSZ, (unsigned short)b,
                              io_uring_buf_ring_mask(c->nbufs), (int)c->recycled++);
    }
    if (cqe->res > 0) {
        c->got[i] += (unsigned)cqe->res;
        if (c->got[i] >= MSG) { /* the whole reply: ping again */
            c->got[i] -= MSG;
            c->msgs++;
            client_send(c, i);
        }
    } else if (cqe->res != -ENOBUFS) {
        fprintf(stderr, "echo: connection %d: %s\n", i,
                cqe->res ? strerror(-cqe->res) : "closed by the server");
        return false;
    }
    if (!(cqe->flags & IORING_CQE_F_MORE)) client_arm_recv(c, i);
    return true;
}

/* Says whether a silent server was starved of CPU (state R) or waits for what never came. */
static void server_silent(pid_t pid)
{
    char path[64], buf[512] = "";
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
        fclose(f);
    }
    char *p = strrchr(buf, ')');
    fprintf(stderr, "echo: no reply for 5 s; server %d in state %c, %.2f CPU-s so far\n", (int)pid,
            p ? p[2] : '?', proc_cpu_s(pid));
    die("the server stopped answering", ETIME);
}

struct result {
    double rps, server_cpu_us, server_busy, client_busy;
    double server_starved; /* share of the time the server waited, runnable, for its CPU */
    double client_idle;    /* share of the client's polls that found no reply: its headroom */
};

/* Ping-pongs until `seconds` after the warm-up; what the server did in that window. */
static struct result client_run(struct client *c, pid_t server, double seconds)
{
    for (int i = 0; i < c->conns; i++) {
        client_arm_recv(c, i);
        client_send(c, i);
    }
    double t = now_s(), t0 = t + WARMUP_S, t1 = t0 + seconds, cpu0 = 0, wait0 = 0, mine0 = 0;
    double last_reply = t;
    uint64_t msgs0 = 0, polls = 0, empty = 0;
    bool measuring = false;
    while (t < t1) {
        /* Spin: never sleep, so that the server pays nothing to wake us (with DEFER_TASKRUN
         * its replies only queue work for our next enter) and no reply waits on our wake-up. */
        int rc = io_uring_submit_and_get_events(&c->ring);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
            die("io_uring_submit_and_get_events", -rc);
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        bool ok = true;
        io_uring_for_each_cqe(&c->ring, head, cqe)
        {
            seen++;
            ok &= client_cqe(c, cqe);
        }
        io_uring_cq_advance(&c->ring, seen);
        if (c->recycled) {
            io_uring_buf_ring_advance(c->br, (int)c->recycled);
            c->recycled = 0;
        }
        if (!ok) exit(1);
        t = now_s();
        polls++;
        if (seen)
            last_reply = t;
        else if (t - last_reply > 5)
            server_silent(server);
        empty += !seen;
        if (!measuring && t >= t0) {
            measuring = true;
            t0 = t;
            msgs0 = c->msgs;
            cpu0 = proc_cpu_s(server);
            wait0 = proc_wait_s(server);
            mine0 = proc_cpu_s(getpid());
            polls = empty = 0;
        }
    }
    double msgs = (double)(c->msgs - msgs0), cpu = proc_cpu_s(server) - cpu0;
    double wall = t - t0, mine = proc_cpu_s(getpid()) - mine0;
    return (struct result){.rps = msgs / wall,
                           .server_cpu_us = cpu * 1e6 / msgs,
                           .server_busy = cpu / wall,
                           .server_starved = (proc_wait_s(server) - wait0) / wall,
                           .client_busy = mine / wall,
                           .client_idle = (double)empty / (double)(polls ? polls : 1)};
}

static struct result measure(const char *name, bool ivy, int conns, double seconds)
{
    int port;
    pid_t pid = server_pid = ivy ? start_ivy(&port) : start_raw(&port);
    struct client c;
    client_open(&c, port, conns);
    struct result r = client_run(&c, pid, seconds);
    client_close(&c);
    stop_server(pid);
    server_pid = 0;
    printf("  %-4s %9.0f req/s   server: %5.2f CPU-us/msg, %3.0f%% busy, %3.0f%% runnable "
           "waiting for its CPU   client: %3.0f%% busy, %3.0f%% of polls idle   (server pid %d)\n",
           name, r.rps, r.server_cpu_us, 100 * r.server_busy, 100 * r.server_starved,
           100 * r.client_busy, 100 * r.client_idle, (int)pid);
    fflush(stdout);
    return r;
}

static void usage(void)
{
    fprintf(stderr, "usage: echo [--conns N] [--seconds S] [--rounds R] [--only ivy|raw]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int conns = 64, rounds = 3;
    const char *only = ""; /* one server alone, to profile it */
    double seconds = 5;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) usage();
        if (!strcmp(argv[i], "--conns"))
            conns = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--rounds"))
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") &&
                 (!strcmp(argv[i + 1], "ivy") || !strcmp(argv[i + 1], "raw")))
            only = argv[++i];
        else
            usage();
    }
    if (conns < 1 || conns > 16000 || !(seconds > 0) || rounds < 1 || rounds > MAX_ROUNDS) usage();
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl; /* two descriptors per connection while the ivy server is forked off */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    find_raw();
    choose_cpus();
    pin(client_cpu);
    printf("echo: %d connections, %d-byte ping-pong, %d rounds of %.1f s; server on CPU %d, "
           "client on CPU %d\n",
           conns, MSG, rounds, seconds, server_cpu, client_cpu);

    double ivy_rps[MAX_ROUNDS], raw_rps[MAX_ROUNDS], ivy_cpu[MAX_ROUNDS], raw_cpu[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) {
        printf("round %d\n", r + 1);
        struct result none = {.rps = NAN, .server_cpu_us = NAN}, a = none, b = none;
        /* Alternately first, so that a drift in the machine's state (caches, frequency, other
           load) does not always favour the same server. */
        for (int k = 0; k < 2; k++) {
            if ((k == 0) == (r % 2 == 0)) {
                if (strcmp(only, "raw")) a = measure("ivy", true, conns, seconds);
            } else {
                if (strcmp(only, "ivy")) b = measure("raw", false, conns, seconds);
            }
        }
        ivy_rps[r] = a.rps;
        ivy_cpu[r] = a.server_cpu_us;
        raw_rps[r] = b.rps;
        raw_cpu[r] = b.server_cpu_us;
    }
    double irps = median(ivy_rps, rounds), rrps = median(raw_rps, rounds);
    double icpu = median(ivy_cpu, rounds), rcpu = median(raw_cpu, rounds);
    printf("ivy_echo_rps: %.0f req/s\n", irps);
    printf("raw_uring_echo_rps: %.0f req/s\n", rrps);
    print_ratio("echo_ratio", irps, rrps);
    printf("ivy_echo_cpu_us: %.3f us/msg\n", icpu);
    printf("raw_echo_cpu_us: %.3f us/msg\n", rcpu);
    print_ratio("echo_cpu_ratio", rcpu, icpu); /* raw's cost over ivy's: 1 is no tax */
    return 0;
}
