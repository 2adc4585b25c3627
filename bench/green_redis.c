/*
 * Green libc's throughput claim (issue 11): an HTTP server whose handler makes one Redis GET
 * per request through hiredis's blocking API, three ways, measured in the same run:
 *   green    one ivy hub; hiredis's calls greened by green libc (this program links it);
 *   offload  one ivy hub; each GET run in the offload pool (ivy_offload, OFFLOAD_THREADS);
 *   threads  a thread per connection (pthreads), the classic blocking server.
 * Every server runs on CPU 0 with redis-server (green and offload: one hub; threads: as many
 * threads as connections, all on that CPU), wrk -t1 -c CONNS alone on the other CPU. CPU per
 * request is the server process's own (user + system, every thread) over the requests wrk
 * counted. Rounds interleave the servers; figures are medians over rounds.
 *
 * green and offload serve HTTP with ivy's server library (include/ivy/http.h), a handler making
 * the GET on a Redis connection from a pool; threads is a minimal keep-alive responder.
 * Env: DURATION (seconds per run, 3), ROUNDS (3), CONNS (50).
 *   green_redis_<server>_rps: X req/s
 *   green_redis_<server>_cpu_us_per_req: Y us
 *   green_redis_green_vs_<peer>_rps: Z x
 */
#include <ivy/ivy.h>

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

enum { OFFLOAD_THREADS = 8, MAX_ROUNDS = 15 };

static int redis_port;

static int redis_get(redisContext *c, char *out, size_t cap)
{
    redisReply *r = redisCommand(c, "GET ivy:bench");
    int n = -1;
    if (r && r->type == REDIS_REPLY_STRING && r->len < cap) {
        memcpy(out, r->str, r->len);
        n = (int)r->len;
    }
    if (r) freeReplyObject(r);
    return n;
}

/*
 * The thread-per-connection server's loop: a minimal keep-alive responder (GET, no pipelining,
 * what wrk sends), one GET to Redis per request, until the client closes.
 */
static void serve_conn(int fd, redisContext *rc)
{
    char buf[8192], resp[512], val[128];
    size_t have = 0;
    for (;;) {
        char *end = memmem(buf, have, "\r\n\r\n", 4);
        if (!end) {
            if (have == sizeof buf) return;
            ssize_t n = recv(fd, buf + have, sizeof buf - have, 0);
            if (n <= 0) return;
            have += (size_t)n;
            continue;
        }
        int vl = redis_get(rc, val, sizeof val);
        int n = vl < 0 ? snprintf(resp, sizeof resp,
                                  "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                       : snprintf(resp, sizeof resp,
                                  "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                  "Content-Length: %d\r\n\r\n%.*s",
                                  vl, vl, val);
        if (send(fd, resp, (size_t)n, MSG_NOSIGNAL) != n) return;
        size_t used = (size_t)(end + 4 - buf);
        memmove(buf, buf + used, have - used);
        have -= used;
    }
}

/* ---- green and offload: one hub, the HTTP server library (include/ivy/http.h) -------------- */

static void *offloaded_get(void *arg)
{
    void **a = arg;
    return (void *)(intptr_t)redis_get(a[0], a[1], 128);
}

static void *offloaded_connect(void *arg)
{
    return redisConnect("127.0.0.1", redis_port);
}

static bool offload_mode;

/* Idle Redis connections: as many as requests ever ran at once (the hub is single-threaded). */
static redisContext *idle[4096];
static int nidle;

static redisContext *take(void)
{
    if (nidle) return idle[--nidle];
    redisContext *c = NULL;
    if (offload_mode) /* hiredis's connect blocks too: in the pool, as its commands */
        ivy_offload(offloaded_connect, NULL, (void **)&c);
    else
        c = redisConnect("127.0.0.1", redis_port); /* greened */
    if (c && c->err) {
        redisFree(c);
        c = NULL;
    }
    return c;
}

static void give(redisContext *c)
{
    if (c->err || nidle == (int)(sizeof idle / sizeof idle[0]))
        redisFree(c);
    else
        idle[nidle++] = c;
}

static int handler(ivy_http_req *r, void *arg)
{
    redisContext *c = take();
    if (!c) return -ECONNREFUSED; /* answered 500 */
    char val[128];
    int n;
    if (offload_mode) {
        void *a[2] = {c, val}, *res;
        n = ivy_offload(offloaded_get, a, &res) == 0 ? (int)(intptr_t)res : -1;
    } else {
        n = redis_get(c, val, sizeof val);
    }
    give(c);
    if (n < 0) return ivy_http_respond(r, 502, "text/plain", NULL, 0);
    return ivy_http_respond(r, 200, "text/plain", val, (size_t)n);
}

static void *http_server(void *arg)
{
    static const struct ivy_http_options opts = {.handler = handler};
    ivy_http_serve((int)(intptr_t)arg, &opts);
    return NULL;
}

static void run_hub(int lfd, bool offload)
{
    offload_mode = offload;
    ivy_offload_set_threads(OFFLOAD_THREADS);
    ivy_spawn_n(http_server, (void *)(intptr_t)lfd);
    ivy_run();
}

/* ---- threads: one per connection --------------------------------------------------------- */

static void *thread_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    redisContext *rc = redisConnect("127.0.0.1", redis_port);
    if (rc && !rc->err) serve_conn(fd, rc);
    if (rc) redisFree(rc);
    close(fd);
    return NULL;
}

static void run_threads(int lfd)
{
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, 256 * 1024);
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) continue;
        pthread_t t;
        if (pthread_create(&t, &a, thread_conn, (void *)(intptr_t)fd) != 0) close(fd);
    }
}

/* ---- the driver -------------------------------------------------------------------------- */

static void pin(int cpu)
{
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    sched_setaffinity(0, sizeof s, &s);
}

static int ncpu;

/* A server in a fresh process of this program (serve MODE PORT REDIS_PORT), on CPU 0. */
static pid_t start_server(const char *mode, int *port)
{
    int lfd = ivy_listen("127.0.0.1", 0, 1, 0); /* a free port */
    *port = ivy_local_port(lfd);
    close(lfd);
    pid_t pid = fork();
    if (pid == 0) {
        pin(0);
        char p[16], rp[16];
        snprintf(p, sizeof p, "%d", *port);
        snprintf(rp, sizeof rp, "%d", redis_port);
        execl("/proc/self/exe", "green_redis", "serve", mode, p, rp, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) { /* up once it accepts */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)*port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
        close(fd);
        if (rc == 0) return pid;
        usleep(10000);
    }
    fprintf(stderr, "green_redis: the %s server did not start\n", mode);
    exit(1);
}

/* The process's CPU time (all its threads), in seconds. */
static double proc_cpu(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
     */
    if (p) sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* wrk's requests per second against port, for seconds; -1 on failure. */
static double wrk(int port, int conns, int seconds)
{
    char cmd[256], line[512];
    snprintf(cmd, sizeof cmd, "taskset -c %d wrk -t1 -c%d -d%ds http://127.0.0.1:%d/ 2>&1",
             ncpu - 1, conns, seconds, port);
    FILE *f = popen(cmd, "r");
    double rps = -1;
    bool errors = false;
    while (f && fgets(line, sizeof line, f)) {
        sscanf(line, "Requests/sec: %lf", &rps);
        if (strstr(line, "Non-2xx") || strstr(line, "Socket errors")) errors = true;
    }
    if (f) pclose(f);
    if (errors) fprintf(stderr, "green_redis: wrk saw errors against port %d\n", port);
    return errors ? -1 : rps;
}

static pid_t start_redis(char *dir)
{
    strcpy(dir, "/tmp/ivy-bench-redis-XXXXXX");
    if (!mkdtemp(dir)) exit(1);
    int lfd = ivy_listen("127.0.0.1", 0, 1, 0); /* a free port */
    redis_port = ivy_local_port(lfd);
    close(lfd);
    pid_t pid = fork();
    if (pid == 0) {
        pin(0); /* beside the server: wrk alone on the other CPU */
        char port[16];
        snprintf(port, sizeof port, "%d", redis_port);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        execl("/usr/bin/redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
              "--save", "", "--appendonly", "no", "--dir", dir, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        redisContext *c = redisConnect("127.0.0.1", redis_port);
        bool up = c && !c->err;
        if (up) {
            freeReplyObject(redisCommand(c, "SET ivy:bench hello-from-redis"));
            redisFree(c);
            return pid;
        }
        if (c) redisFree(c);
        usleep(10000);
    }
    fprintf(stderr, "green_redis: redis-server did not start\n");
    exit(1);
}

static int env_int(const char *name, int def)
{
    const char *v = getenv(name);
    return v && atoi(v) > 0 ? atoi(v) : def;
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "serve")) { /* by hand: serve MODE PORT REDIS_PORT */
        redis_port = atoi(argv[4]);
        int lfd = ivy_listen("127.0.0.1", atoi(argv[3]), 1024, 0);
        if (lfd < 0) return 1;
        if (!strcmp(argv[2], "threads")) run_threads(lfd);
        run_hub(lfd, !strcmp(argv[2], "offload"));
        return 0;
    }
    if (access("/usr/bin/redis-server", X_OK) != 0 || access("/usr/bin/wrk", X_OK) != 0) {
        printf("green_redis: skipped: needs redis-server and wrk (make bench installs them)\n");
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
    int seconds = env_int("DURATION", 3), rounds = env_int("ROUNDS", 3),
        conns = env_int("CONNS", 50);
    if (rounds > MAX_ROUNDS) rounds = MAX_ROUNDS;
    char dir[64];
    pid_t redis = start_redis(dir);
    static const char *modes[] = {"green", "offload", "threads"};
    double rps[3][MAX_ROUNDS], cpu[3][MAX_ROUNDS];
    for (int r = 0; r < rounds; r++)
        for (int m = 0; m < 3; m++) {
            int port;
            pid_t pid = start_server(modes[m], &port);
            wrk(port, conns, 1); /* warm-up: connections, the pool, page faults */
            double c0 = proc_cpu(pid);
            double x = wrk(port, conns, seconds);
            double c1 = proc_cpu(pid);
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            rps[m][r] = x;
            cpu[m][r] = x > 0 ? (c1 - c0) * 1e6 / (x * seconds) : 0;
        }
    double mr[3], mc[3];
    for (int m = 0; m < 3; m++) {
        mr[m] = median(rps[m], rounds);
        mc[m] = median(cpu[m], rounds);
        printf("green_redis_%s_rps: %.0f req/s\n", modes[m], mr[m]);
        printf("green_redis_%s_cpu_us_per_req: %.1f us\n", modes[m], mc[m]);
    }
    printf("green_redis_green_vs_offload_rps: %.2f x\n", mr[0] / mr[1]);
    printf("green_redis_green_vs_threads_rps: %.2f x\n", mr[0] / mr[2]);
    printf("green_redis_green_vs_offload_cpu: %.2f x less\n", mc[1] / mc[0]);
    printf("green_redis_green_vs_threads_cpu: %.2f x less\n", mc[2] / mc[0]);
    kill(redis, SIGTERM);
    waitpid(redis, NULL, 0);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
