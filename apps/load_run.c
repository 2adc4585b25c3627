/*
 * ivy_load_run: the parent side of `ivy load`. Checks the options, resolves the host once,
 * builds the bytes every batch sends, forks the workers (each runs load_worker.c and writes
 * one struct ivy_load_report to its pipe), draws the progress line from a shared page of
 * counters while they run, and merges their reports.
 *
 * A pipe per worker rather than shared memory for the results: a worker that dies shows up as
 * an early end of file, so a crash can never pass for a quiet run.
 */
#include "load_impl.h"

#include <ivy/ivy.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

struct slot {
    pid_t pid;
    int fd;
    size_t got; /* bytes of rep read so far */
    struct ivy_load_report *rep;
};

static int check(struct ivy_load_opts *o)
{
    if (!o->host || !*o->host || o->port <= 0 || o->port > 65535) return -EINVAL;
    if (!o->connections || !(o->duration > 0) || !(o->rate >= 0) || isinf(o->rate)) return -EINVAL;
    if (!(o->timeout >= 0) || isinf(o->duration)) return -EINVAL;
    if (!o->pipeline) o->pipeline = 1;
    if (o->timeout == 0) o->timeout = 2;
    if (!o->path) o->path = "/";
    /* wrk2's rule: a connection has one request in flight, sent when due or when the last
     * answer came, whichever is later; pipelining would make "due" meaningless. */
    if (o->rate > 0 && o->pipeline > 1) return -EINVAL;
    if (o->pipeline > 1024 || o->echo_size > (64u << 20) / o->pipeline) return -EINVAL;
    return 0;
}

int ivy__load_resolve(const char *host, char *out, size_t n)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(host, NULL, &hints, &ai) != 0) return -ENOENT;
    const void *a = ai->ai_family == AF_INET
                        ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                        : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
    int rc = inet_ntop(ai->ai_family, a, out, (socklen_t)n) ? 0 : -ENOENT;
    freeaddrinfo(ai);
    return rc;
}

/* The bytes of one batch: `pipeline` GET requests, or echo messages of a fixed pattern. */
static int build_msg(struct ivy_load_plan *p)
{
    const struct ivy_load_opts *o = &p->o;
    if (o->echo_size) {
        p->msg_len = o->echo_size * o->pipeline;
        if (!(p->msg = malloc(p->msg_len))) return -ENOMEM;
        for (size_t i = 0; i < p->msg_len; i++)
            p->msg[i] = (char)('a' + (i * 7 + i / 26) % 26);
        return 0;
    }
    char host[320] = "";
    if (o->host_hdr && *o->host_hdr)
        snprintf(host, sizeof host, "Host: %s\r\n", o->host_hdr);
    else if (!o->host_hdr)
        snprintf(host, sizeof host, strchr(o->host, ':') ? "Host: [%s]:%d\r\n" : "Host: %s:%d\r\n",
                 o->host, o->port);
    const char *extra = o->headers ? o->headers : "";
    int one = snprintf(NULL, 0, "GET %s HTTP/1.1\r\n%s%s\r\n", o->path, host, extra);
    if (one <= 0) return -EINVAL;
    p->msg_len = (size_t)one * o->pipeline;
    if (!(p->msg = malloc(p->msg_len + 1))) return -ENOMEM;
    snprintf(p->msg, (size_t)one + 1, "GET %s HTTP/1.1\r\n%s%s\r\n", o->path, host, extra);
    for (unsigned i = 1; i < o->pipeline; i++)
        memcpy(p->msg + (size_t)one * i, p->msg, (size_t)one);
    return 0;
}

static int cpus(struct ivy_load_plan *p)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) < 0) CPU_ZERO(&set);
    unsigned n = (unsigned)CPU_COUNT(&set);
    if (!(p->cpus = calloc(n ? n : 1, sizeof *p->cpus))) return -ENOMEM;
    for (int c = 0; c < CPU_SETSIZE && p->ncpus < n; c++)
        if (CPU_ISSET(c, &set)) p->cpus[p->ncpus++] = c;
    if (!p->ncpus) p->cpus[p->ncpus++] = 0;
    return 0;
}

unsigned ivy__load_workers(const struct ivy_load_opts *o)
{
    cpu_set_t set;
    unsigned n = o->workers;
    if (!n) n = sched_getaffinity(0, sizeof set, &set) == 0 ? (unsigned)CPU_COUNT(&set) : 1;
    if (n > o->connections) n = o->connections;
    return n < IVY_LOAD_MAX_WORKERS ? n : IVY_LOAD_MAX_WORKERS;
}

int ivy__load_tls_ctx(const struct ivy_load_opts *o, ivy_tls_ctx **out, char *msg, size_t msglen)
{
    int flags = (o->insecure ? IVY_TLS_INSECURE : 0) | (o->no_resume ? IVY_TLS_NO_RESUME : 0);
    return ivy_tls_client_new(out, o->insecure ? NULL : o->ca_file, flags, msg, msglen);
}

static void on_stop(int sig)
{
    ivy__load_stop = 1;
}

/* In the child: never returns. */
static void worker_child(const struct ivy_load_plan *p, unsigned i, struct slot *s,
                         struct ivy_load_progress *progress)
{
    struct sigaction sa = {.sa_handler = on_stop};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* the parent gone: stop rather than run on */
    for (unsigned j = 0; j < i; j++)
        close(s[j].fd);
    ivy__load_stop = 0;
    int rc = ivy__load_worker(p, i, &progress[i], s[i].rep);
    if (rc < 0) {
        fprintf(stderr, "ivy load: worker %u: %s\n", i, strerror(-rc));
        _exit(3);
    }
    const char *b = (const char *)s[i].rep;
    for (size_t off = 0; off < sizeof *s[i].rep;) {
        ssize_t n = write(s[i].fd, b + off, sizeof *s[i].rep - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) _exit(4);
        off += (size_t)n;
    }
    _exit(0); /* not exit: the parent's stdio buffers and atexit handlers are not ours */
}

static void show_progress(const struct ivy_load_plan *p, struct ivy_load_progress *pg,
                          uint64_t *last_n, uint64_t *last_t)
{
    uint64_t n = 0, e = 0, now = ivy_now_ns();
    for (unsigned i = 0; i < p->workers; i++) {
        n += atomic_load_explicit(&pg[i].requests, memory_order_relaxed);
        e += atomic_load_explicit(&pg[i].errors, memory_order_relaxed);
    }
    double dt = (double)(now - *last_t) / 1e9;
    fprintf(stderr, "\r\033[K  %5.1fs/%gs  %10.0f req/s  %12llu requests  %llu errors",
            (double)(now - p->t0) / 1e9, p->o.duration, dt > 0 ? (double)(n - *last_n) / dt : 0,
            (unsigned long long)n, (unsigned long long)e);
    *last_n = n;
    *last_t = now;
}

/* Reads what the workers send until every pipe has closed. */
static void collect(const struct ivy_load_plan *p, struct slot *s,
                    struct ivy_load_progress *progress)
{
    struct pollfd *pfd = calloc(p->workers, sizeof *pfd);
    unsigned open = p->workers;
    bool forwarded = false;
    uint64_t last_n = 0, last_t = p->t0, next_show = p->t0 + 1000000000ull;
    for (unsigned i = 0; i < p->workers; i++)
        pfd[i] = (struct pollfd){s[i].fd, POLLIN, 0};
    while (open) {
        uint64_t now = ivy_now_ns();
        int wait = p->o.progress && next_show > now ? (int)((next_show - now) / 1000000) + 1 : 200;
        int rc = poll(pfd, p->workers, wait);
        if (ivy__load_stop && !forwarded) { /* interrupted: the workers stop and report */
            for (unsigned i = 0; i < p->workers; i++)
                kill(s[i].pid, SIGINT);
            forwarded = true;
        }
        if (p->o.progress && ivy_now_ns() >= next_show) {
            show_progress(p, progress, &last_n, &last_t);
            next_show += 1000000000ull;
        }
        if (rc <= 0) continue;
        for (unsigned i = 0; i < p->workers; i++) {
            if (pfd[i].fd < 0 || !pfd[i].revents) continue;
            ssize_t n = read(s[i].fd, (char *)s[i].rep + s[i].got, sizeof *s[i].rep - s[i].got);
            if (n < 0 && errno == EINTR) continue;
            if (n > 0) {
                s[i].got += (size_t)n;
                continue;
            }
            close(s[i].fd);
            pfd[i].fd = -1;
            open--;
        }
    }
    if (p->o.progress) fprintf(stderr, "\r\033[K");
    free(pfd);
}

static void merge(const struct ivy_load_plan *p, struct slot *s, struct ivy_load_result *out)
{
    memset(out, 0, sizeof *out);
    ivy_hist_reset(&out->latency);
    double sum = 0, sum_sq = 0, n = 0;
    for (unsigned i = 0; i < p->workers; i++) {
        const struct ivy_load_report *rep = s[i].rep;
        const struct ivy_load_result *r = &rep->r;
        int status;
        waitpid(s[i].pid, &status, 0);
        if (s[i].got != sizeof *rep || rep->magic != IVY_LOAD_REPORT_MAGIC ||
            ivy_hist_merge(&out->latency, &r->latency) < 0) {
            if (WIFSIGNALED(status))
                fprintf(stderr, "ivy load: worker %u died of signal %d (%s)\n", i, WTERMSIG(status),
                        strsignal(WTERMSIG(status)));
            out->workers_failed++;
            continue;
        }
        out->requests += r->requests;
        out->sent += r->sent;
        out->bytes_read += r->bytes_read;
        out->bytes_written += r->bytes_written;
        out->connects += r->connects;
        out->handshakes += r->handshakes;
        out->resumed += r->resumed;
        if (!out->tls_error[0]) memcpy(out->tls_error, r->tls_error, sizeof out->tls_error);
        for (int k = 0; k < IVY_LOAD_NERR; k++) {
            out->errors[k] += r->errors[k];
            if (!out->first_error[k]) out->first_error[k] = r->first_error[k];
        }
        for (int k = 0; k < 6; k++)
            out->status_class[k] += r->status_class[k];
        if (r->elapsed > out->elapsed) out->elapsed = r->elapsed;
        out->connections += r->connections;
        out->workers++;
        for (uint32_t j = 0; j < rep->nsamples && j < IVY_LOAD_SAMPLES; j++) {
            double x = rep->samples[j];
            sum += x;
            sum_sq += x * x;
            n++;
            if (x > out->rps_max) out->rps_max = x;
        }
    }
    if (n > 0) {
        out->rps_mean = sum / n;
        double var = sum_sq / n - out->rps_mean * out->rps_mean;
        out->rps_stdev = var > 0 ? sqrt(var) : 0;
        double within = 0;
        for (unsigned i = 0; i < p->workers; i++)
            for (uint32_t j = 0; j < s[i].rep->nsamples && j < IVY_LOAD_SAMPLES; j++)
                within += fabs(s[i].rep->samples[j] - out->rps_mean) <= out->rps_stdev;
        out->rps_within_stdev = 100 * within / n;
    }
}

static int fork_workers(struct ivy_load_plan *p, struct slot *s, struct ivy_load_progress *pg)
{
    fflush(stdout); /* the children _exit, but a buffered line must not be printed twice */
    fflush(stderr);
    p->t0 = ivy_now_ns();
    p->deadline = p->t0 + (uint64_t)(p->o.duration * 1e9);
    for (unsigned i = 0; i < p->workers; i++) {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) < 0) return -errno;
        pid_t pid = fork();
        if (pid < 0) {
            close(fds[0]);
            close(fds[1]);
            return -errno;
        }
        s[i].fd = fds[pid ? 0 : 1];
        close(fds[pid ? 1 : 0]);
        if (!pid) worker_child(p, i, s, pg);
        s[i].pid = pid;
    }
    return 0;
}

int ivy_load_run(const struct ivy_load_opts *opts, struct ivy_load_result *out)
{
    struct ivy_load_plan p = {.o = *opts};
    int rc = check(&p.o);
    if (rc < 0) return rc;
    if ((rc = ivy__load_resolve(p.o.host, p.addr, sizeof p.addr)) < 0) return rc;
    if ((rc = cpus(&p)) < 0) return rc;
    p.workers = ivy__load_workers(&p.o);
    struct slot *s = calloc(p.workers, sizeof *s);
    size_t pg_len = p.workers * sizeof(struct ivy_load_progress);
    struct ivy_load_progress *pg =
        mmap(NULL, pg_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    rc = (!s || pg == MAP_FAILED) ? -ENOMEM : build_msg(&p);
    if (rc == 0 && p.o.tls) rc = ivy__load_tls_ctx(&p.o, &p.tls, NULL, 0);
    for (unsigned i = 0; rc == 0 && i < p.workers; i++)
        if (!(s[i].rep = calloc(1, sizeof *s[i].rep))) rc = -ENOMEM;
    unsigned slots = p.workers;
    if (rc == 0) {
        rc = fork_workers(&p, s, pg);
        unsigned started = 0;
        while (started < slots && s[started].pid > 0)
            started++;
        if (rc < 0) /* a partial start: stop those that run, then reap them */
            for (unsigned i = 0; i < started; i++)
                kill(s[i].pid, SIGINT);
        p.workers = started;
        collect(&p, s, pg);
        merge(&p, s, out);
    }
    for (unsigned i = 0; s && i < slots; i++)
        free(s[i].rep);
    free(s);
    if (pg != MAP_FAILED) munmap(pg, pg_len);
    free(p.msg);
    free(p.cpus);
    ivy_tls_ctx_free(p.tls);
    return rc;
}
