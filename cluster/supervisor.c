/*
 * The supervisor: forks the workers, watches them, restarts them, replaces them one at a time,
 * and drains or stops them on a signal.
 *
 * It is single-threaded and needs no hub: one ppoll over a signalfd (and the --stats-listen
 * socket) with a 10 ms tick drives everything. Workers are seats (one per CPU slot, keeping
 * its CPU and restart count) filled by processes; during a replacement a seat has two
 * processes, so the shared-memory stats have two slots per seat.
 *
 * A crash loop is CRASH_WINDOW_DEATHS deaths within 10 s, counting crashes, error exits,
 * watchdog kills and OOM kills, but not a SIGKILL from outside: chaos tests kill workers on
 * purpose. Such a kill does not grow the respawn back-off either: the seat is refilled after the
 * minimum delay. The OOM killer also sends SIGKILL; its kills are told apart by a kernel counter
 * (cluster/oom.c).
 *
 * A seat whose process cannot be started (fork fails, no free process slot) stays pending and
 * is retried after a growing delay; the failure is logged once per streak, not every attempt.
 *
 * A replacement (SIGHUP, max_requests) that dies before it is ready is not a worker death: the
 * old process is still serving, so it neither counts toward the crash loop nor restarts the seat.
 * The replacement is retried after 100 ms, doubling; REPLACE_TRIES deaths in a row abandon the
 * reload (every seat keeps its old process), logged as "reload failed" and counted in the stats.
 * A reload never leaves things worse than no reload.
 *
 * Invariants: a seat is refilled only by a respawn (after a death, with back-off) or by a
 * replacement (SIGHUP, max_requests); a process marked retiring was told to leave, so its exit
 * is not a death. The supervisor writes a stats slot only before the worker starts and after
 * it is reaped.
 */
#include "cluster_impl.h"
#include "seconds.h"
#include "ivy/cluster.h"
#include "ivy/socket.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

enum { CRASH_WINDOW_DEATHS = 10, TICK_MS = 10, REPLACE_TRIES = 5 };
#define CRASH_WINDOW_NS (10 * 1000000000ull)
#define HEALTHY_NS      (60 * 1000000000ull)
#define BACKOFF_MIN_NS  (10 * 1000000ull)
#define BACKOFF_MAX_NS  (5 * 1000000000ull)
#define RETRY_MIN_NS    (100 * 1000000ull) /* after a failed fork */

struct proc {
    pid_t pid;
    int seat;
    bool retiring;  /* sent SIGTERM on purpose: its exit is expected */
    bool replacing; /* started to replace the seat's current process */
    bool watchdog;  /* we SIGKILLed it for silence */
    uint64_t started;
};

struct seat {
    int cpu;
    unsigned streak;     /* deaths in a row, for the back-off */
    uint64_t respawn_at; /* 0: nothing pending */
    uint64_t restarts;
    unsigned failed;         /* failed starts in a row */
    uint64_t retry_at;       /* after a failed start, none before this */
    unsigned replace_failed; /* replacements in a row that died before they were ready */
    uint64_t replace_at;     /* after one did, no replacement before this */
};

static struct sup {
    const struct ivy_cluster_options *o;
    struct ivy_stats_shm *shm;
    struct seat *seats;
    struct proc *procs; /* 2 per seat */
    int nseats;
    int inherited_fd;
    int sigfd;
    int stats_fd;
    uint64_t stats_pause_until; /* out of descriptors: the scrape waits rather than spins */
    uint64_t deaths[CRASH_WINDOW_DEATHS]; /* ring of recent death times */
    unsigned ndeaths;
    int *replace_queue, nreplace; /* seats waiting for a rolling replacement */
    bool announced, stopping;
    uint64_t stop_deadline;
    double timeout;
    struct ivy_oom oom;
} S;

static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ivy: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void sd_notify(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || (path[0] != '/' && path[0] != '@')) return;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if (len >= sizeof sa.sun_path) return;
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@') sa.sun_path[0] = 0; /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
           (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
    close(fd);
}

static struct proc *proc_of(pid_t pid)
{
    for (int i = 0; i < 2 * S.nseats; i++)
        if (S.procs[i].pid == pid) return &S.procs[i];
    return NULL;
}

static int live_procs(void)
{
    int n = 0;
    for (int i = 0; i < 2 * S.nseats; i++)
        n += S.procs[i].pid > 0;
    return n;
}

/* The wait before the next try after n failed ones: 100 ms doubling up to the back-off's cap. */
static uint64_t retry_delay(unsigned n)
{
    uint64_t delay = RETRY_MIN_NS << (n - 1 < 10 ? n - 1 : 10);
    return delay < BACKOFF_MAX_NS ? delay : BACKOFF_MAX_NS;
}

/* Logs the first failure of a streak only; the seat's next attempt waits 100 ms, doubling up to
   the back-off's maximum. */
static int spawn_failed(int seat, int err, const char *why)
{
    struct seat *st = &S.seats[seat];
    if (st->failed++ == 0)
        log_line("cannot start worker %d: %s; retrying, less often each time, until it starts",
                 seat, why);
    st->retry_at = ivy__mono_ns() + retry_delay(st->failed);
    return err;
}

static int spawn(int seat, bool replacing)
{
    int k = -1;
    for (int i = 0; i < 2 * S.nseats && k < 0; i++)
        if (S.procs[i].pid == 0) k = i;
    if (k < 0) return spawn_failed(seat, -EAGAIN, "no free process slot");
    struct ivy_stats_slot *slot = &S.shm->slot[k];
    memset(slot, 0, sizeof *slot);
    slot->index = seat;
    slot->cpu = S.seats[seat].cpu;
    slot->restarts = S.seats[seat].restarts;
    slot->heartbeat_ns = slot->started_ns = ivy__mono_ns();
    slot->state = SLOT_STARTING;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int err = -errno;
        slot->state = SLOT_FREE;
        return spawn_failed(seat, err, strerror(-err));
    }
    if (pid == 0) {
        /* The worker is not exec'd, so CLOEXEC does not apply: what it must not hold, close. */
        if (S.stats_fd >= 0) close(S.stats_fd);
        ivy__worker_main(S.o, S.shm, slot, S.inherited_fd, S.sigfd);
    }
    if (S.seats[seat].failed) {
        log_line("worker %d started after %u failed attempts", seat, S.seats[seat].failed);
        S.seats[seat].failed = 0;
    }
    slot->pid = (uint64_t)pid;
    S.procs[k] =
        (struct proc){.pid = pid, .seat = seat, .replacing = replacing, .started = ivy__mono_ns()};
    return 0;
}

static void kill_all(int sig)
{
    for (int i = 0; i < 2 * S.nseats; i++)
        if (S.procs[i].pid > 0) kill(S.procs[i].pid, sig);
}

static void dequeue_replacement(void)
{
    memmove(S.replace_queue, S.replace_queue + 1, (size_t)--S.nreplace * sizeof(int));
}

/* A replacement died before it was ready, its seat's old process still serving: back off, and
   after REPLACE_TRIES in a row give the whole reload up. */
static void replacement_failed(const struct proc *dead, pid_t old, const char *why, uint64_t now)
{
    struct seat *st = &S.seats[dead->seat];
    IVY_BUMP(S.shm->failed_replacements, 1);
    uint64_t delay = retry_delay(++st->replace_failed);
    st->replace_at = now + delay;
    if (st->replace_failed % REPLACE_TRIES) {
        log_line("worker %d: its replacement (pid %d) %s before it was ready; the old one (pid "
                 "%d) serves on; trying again in %llu ms",
                 dead->seat, (int)dead->pid, why, (int)old, (unsigned long long)(delay / 1000000));
        return;
    }
    log_line("reload failed: worker %d: %u replacements in a row died before they were ready "
             "(last: %s); every worker not yet replaced keeps its old process",
             dead->seat, REPLACE_TRIES, why);
    sd_notify("STATUS=reload failed: the old workers serve on");
    S.nreplace = 0; /* a worker that asks to recycle (max_requests) asks again, after the delay */
}

static bool crash_loop(uint64_t now)
{
    S.deaths[S.ndeaths++ % CRASH_WINDOW_DEATHS] = now;
    if (S.ndeaths < CRASH_WINDOW_DEATHS) return false;
    uint64_t oldest = S.deaths[S.ndeaths % CRASH_WINDOW_DEATHS];
    return now - oldest < CRASH_WINDOW_NS;
}

static void describe_status(char *buf, size_t cap, int status)
{
    if (WIFSIGNALED(status))
        snprintf(buf, cap, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(status));
}

/* Returns false when the supervisor must stop (crash loop). */
static bool reap(uint64_t now)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        struct proc *p = proc_of(pid);
        if (!p) continue;
        int k = (int)(p - S.procs);
        struct proc dead = *p;
        S.shm->slot[k].state = SLOT_FREE;
        S.shm->slot[k].pid = 0;
        p->pid = 0;
        /* A SIGKILL from outside (an operator, a chaos test) is not the program failing;
           everything else is: a crash, an error exit, our own watchdog's kill, the OOM killer's
           (matched here even for a leaving worker, so that its kill is not matched to another). */
        bool sigkill = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && !dead.watchdog;
        bool oom = sigkill && ivy__oom_killed(&S.oom, now), external = sigkill && !oom;
        if (dead.retiring || S.stopping) continue;
        char why[96];
        if (oom)
            snprintf(why, sizeof why, "killed by the OOM killer (SIGKILL)");
        else
            describe_status(why, sizeof why, status);
        struct seat *st = &S.seats[dead.seat];
        if (dead.replacing) {
            /* The replacement died before taking over: the old process stays, and this was
               no worker's death (not toward the crash loop, no restart). */
            pid_t old = 0;
            for (int i = 0; i < 2 * S.nseats && !old; i++)
                if (S.procs[i].pid > 0 && S.procs[i].seat == dead.seat) old = S.procs[i].pid;
            if (old) {
                replacement_failed(&dead, old, why, now);
                continue;
            }
        }
        log_line("worker %d (pid %d, cpu %d) %s", dead.seat, (int)pid, st->cpu, why);
        if (!external && crash_loop(now)) {
            log_line("crash loop: %d worker deaths within %llu s; stopping (last: worker %d "
                     "%s)",
                     CRASH_WINDOW_DEATHS, CRASH_WINDOW_NS / 1000000000ull, dead.seat, why);
            return false;
        }
        st->restarts++;
        /* The back-off slows a worker that keeps failing; one killed from outside did not
           fail, and while its seat is empty the others carry its load (with every seat empty,
           new connections are refused): it comes back after the minimum delay. */
        if (external) {
            st->respawn_at = now + BACKOFF_MIN_NS;
            continue;
        }
        st->streak = now - dead.started > HEALTHY_NS ? 1 : st->streak + 1;
        uint64_t delay = BACKOFF_MIN_NS << (st->streak - 1 < 20 ? st->streak - 1 : 20);
        st->respawn_at = now + (delay < BACKOFF_MAX_NS ? delay : BACKOFF_MAX_NS);
    }
    return true;
}

static void respawn_due(uint64_t now)
{
    for (int s = 0; s < S.nseats; s++) {
        struct seat *st = &S.seats[s];
        if (!st->respawn_at || now < st->respawn_at) continue;
        st->respawn_at = spawn(s, false) < 0 ? st->retry_at : 0;
    }
}

static void watchdog(uint64_t now)
{
    if (S.timeout <= 0) return;
    uint64_t limit = ivy__seconds_ns(S.timeout);
    for (int i = 0; i < 2 * S.nseats; i++) {
        struct proc *p = &S.procs[i];
        uint64_t hb = IVY_LOAD(S.shm->slot[i].heartbeat_ns);
        if (p->pid <= 0 || p->retiring || now < hb || now - hb <= limit) continue;
        log_line("watchdog: worker %d (pid %d) silent for %.1f s > --timeout %.1f s: killing it",
                 p->seat, (int)p->pid, (double)(now - hb) / 1e9, S.timeout);
        kill(p->pid, SIGKILL);
        p->watchdog = true;
        IVY_STORE(S.shm->slot[i].heartbeat_ns, now); /* once */
    }
}

static void queue_replacement(int seat)
{
    for (int i = 0; i < S.nreplace; i++)
        if (S.replace_queue[i] == seat) return;
    S.replace_queue[S.nreplace++] = seat;
}

/* Rolling replacement: one seat at a time, the new process ready before the old one leaves. */
static void replace_step(uint64_t now)
{
    for (int i = 0; i < 2 * S.nseats; i++)
        if (S.procs[i].pid > 0 && IVY_LOAD(S.shm->slot[i].recycle) && !S.procs[i].retiring)
            queue_replacement(S.procs[i].seat);
    if (!S.nreplace) return;
    int seat = S.replace_queue[0];
    struct proc *old = NULL, *fresh = NULL;
    for (int i = 0; i < 2 * S.nseats; i++) {
        struct proc *p = &S.procs[i];
        if (p->pid <= 0 || p->seat != seat) continue;
        if (p->replacing)
            fresh = p;
        else if (!p->retiring)
            old = p;
        else
            return; /* the old one is still leaving */
    }
    struct seat *st = &S.seats[seat];
    if (!old && !fresh) { /* the seat is empty (a respawn is pending): nothing to replace */
        dequeue_replacement();
        return;
    }
    if (!fresh) {
        if (old && now >= st->retry_at && now >= st->replace_at) spawn(seat, true);
        return;
    }
    if (IVY_LOAD(S.shm->slot[fresh - S.procs].state) != SLOT_READY) return;
    if (old) {
        old->retiring = true;
        kill(old->pid, SIGTERM);
    }
    fresh->replacing = false;
    if (st->replace_failed)
        log_line("worker %d replaced after %u failed tries", seat, st->replace_failed);
    st->replace_failed = 0;
    st->replace_at = 0;
    dequeue_replacement();
}

static void announce_ready(void)
{
    if (S.announced) return;
    int ready = 0;
    for (int i = 0; i < 2 * S.nseats; i++)
        ready += S.procs[i].pid > 0 && IVY_LOAD(S.shm->slot[i].state) == SLOT_READY;
    if (ready < S.nseats) return;
    S.announced = true;
    if (!S.o->quiet)
        log_line("ready: %d workers serving %s on %s", S.nseats, S.shm->app, S.shm->listen);
    sd_notify("READY=1");
}

static void serve_stats(void)
{
    int fd = accept4(S.stats_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS))
        S.stats_pause_until = ivy__mono_ns() + RETRY_MIN_NS; /* still readable: poll would spin */
    if (fd < 0) return;
    struct timeval tv = {0, 200000}; /* a scrape is tiny: never let one stall the supervisor */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    char req[1024];
    ssize_t n = recv(fd, req, sizeof req - 1, 0);
    static char body[64 * 1024];
    char head[256];
    if (n > 0) {
        req[n] = 0;
        bool metrics = !strncmp(req, "GET /metrics ", 13) || !strncmp(req, "GET / ", 6);
        size_t blen = metrics ? ivy__stats_prometheus(S.shm, body, sizeof body) : 0;
        int hlen = snprintf(head, sizeof head,
                            "HTTP/1.1 %s\r\nContent-Type: text/plain; version=0.0.4\r\n"
                            "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                            metrics ? "200 OK" : "404 Not Found", blen);
        if (send(fd, head, (size_t)hlen, MSG_NOSIGNAL) == hlen && blen)
            (void)!send(fd, body, blen, MSG_NOSIGNAL);
    }
    close(fd);
}

static int open_stats_listener(const char *spec)
{
    char host[128];
    const char *colon = strrchr(spec, ':');
    if (!colon || (size_t)(colon - spec) >= sizeof host) return -EINVAL;
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = 0;
    int fd = ivy_listen(host, atoi(colon + 1), 64, 0);
    if (fd >= 0) fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static int cpus_in_mask(int *cpus, int max)
{
    cpu_set_t set;
    int n = 0;
    if (sched_getaffinity(0, sizeof set, &set) < 0) return 0;
    for (int c = 0; c < CPU_SETSIZE && n < max; c++)
        if (CPU_ISSET(c, &set)) cpus[n++] = c;
    return n;
}

static int handle_signals(uint64_t now)
{
    struct signalfd_siginfo si;
    char err[512];
    while (read(S.sigfd, &si, sizeof si) == sizeof si) {
        switch (si.ssi_signo) {
        case SIGTERM:
        case SIGINT:
            if (!S.stopping) {
                if (!S.o->quiet) log_line("%s: draining", strsignal((int)si.ssi_signo));
                S.stopping = true;
                double g = S.o->graceful_timeout > 0 ? S.o->graceful_timeout : 30;
                S.stop_deadline = ivy__deadline_after(now, g + 2);
                kill_all(SIGTERM);
            }
            break;
        case SIGQUIT:
            if (!S.o->quiet) log_line("SIGQUIT: stopping now");
            kill_all(SIGKILL);
            return 1;
        case SIGHUP:
            if (S.o->module && ivy__module_check(S.o->module, err, sizeof err) < 0) {
                log_line("SIGHUP: not reloading: module %s: %s", S.o->module, err);
                break;
            }
            /* The replacements fork from us: they get what this reads. */
            if (ivy__cluster_tls && ivy_tls_ctx_reload(ivy__cluster_tls, err, sizeof err) < 0) {
                log_line("SIGHUP: not reloading: TLS: %s", err);
                break;
            }
            if (!S.o->quiet) log_line("SIGHUP: replacing workers one at a time");
            for (int s = 0; s < S.nseats; s++) {
                S.seats[s].replace_failed = 0; /* a new reload: the operator may have fixed it */
                S.seats[s].replace_at = 0;
                queue_replacement(s);
            }
            break;
        }
    }
    return 0;
}

struct ivy_tls_ctx *ivy__cluster_tls;

/* Loads tls_cert/tls_key, before any worker: 0, or 2 with one line naming the cause. */
static int tls_setup(const struct ivy_cluster_options *o)
{
    char err[512];
    if (!o->tls_cert && !o->tls_key) return 0;
    if (!o->tls_cert || !o->tls_key) {
        fprintf(stderr, "ivy: TLS needs both a certificate and its key (--tls-cert and "
                        "--tls-key)\n");
        return 2;
    }
    ivy_tls_ctx_free(ivy__cluster_tls);
    ivy__cluster_tls = NULL;
    if (ivy_tls_server_new(&ivy__cluster_tls, o->tls_cert, o->tls_key, err, sizeof err) < 0) {
        fprintf(stderr, "ivy: TLS: %s\n", err);
        return 2;
    }
    return 0;
}

int ivy_cluster_run(const struct ivy_cluster_options *o)
{
    char err[512];
    if (o->module && ivy__module_check(o->module, err, sizeof err) < 0) {
        fprintf(stderr, "ivy: module %s: %s\n", o->module, err);
        return 2;
    }
    if (tls_setup(o)) return 2;
    int cpus[CPU_SETSIZE];
    int ncpus = cpus_in_mask(cpus, CPU_SETSIZE);
    if (ncpus <= 0) cpus[ncpus++] = 0;
    memset(&S, 0, sizeof S);
    S.o = o;
    S.nseats = o->workers > 0 ? o->workers : ncpus;
    S.timeout = o->timeout == 0 ? 30 : o->timeout;
    S.inherited_fd = -1;
    S.stats_fd = -1;
    const char *lp = getenv("LISTEN_PID"), *lf = getenv("LISTEN_FDS");
    if (lp && lf && atoi(lp) == getpid() && atoi(lf) >= 1) {
        S.inherited_fd = 3; /* systemd socket activation: SD_LISTEN_FDS_START */
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
    }
    if (ivy__privs_setup(o->user, o->group, o->quiet) < 0) return 2;
    char listen[96];
    snprintf(listen, sizeof listen, "%s:%d", o->host ? o->host : "127.0.0.1",
             o->port ? o->port : 8080);
    S.shm = ivy__stats_create((unsigned)(2 * S.nseats), o->app_name, listen);
    S.seats = calloc((size_t)S.nseats, sizeof *S.seats);
    S.procs = calloc((size_t)(2 * S.nseats), sizeof *S.procs);
    S.replace_queue = calloc((size_t)S.nseats, sizeof *S.replace_queue);
    if (!S.shm || !S.seats || !S.procs || !S.replace_queue) return 1;
    if (o->stats_listen && (S.stats_fd = open_stats_listener(o->stats_listen)) < 0) {
        log_line("cannot listen for stats on %s: %s", o->stats_listen, strerror(-S.stats_fd));
        return 1;
    }

    sigset_t mask;
    ivy__cluster_sigset(&mask, true);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN); /* a closed log pipe must not take the server down */
    S.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (S.sigfd < 0) {
        log_line("cannot take signals through a signalfd: %s", strerror(errno));
        sigprocmask(SIG_UNBLOCK, &mask, NULL);
        if (S.stats_fd >= 0) close(S.stats_fd);
        ivy__stats_destroy(S.shm);
        return 1;
    }

    if (!o->quiet)
        log_line("serving %s on %s: %d workers, watchdog %g s, graceful timeout %g s", o->app_name,
                 listen, S.nseats, S.timeout, o->graceful_timeout > 0 ? o->graceful_timeout : 30);
    ivy__host_protection(o->migrate_req, S.inherited_fd >= 0, o->quiet);
    if (ivy__cluster_tls && !o->quiet)
        log_line("TLS: %s, records: %s", o->tls_cert, ivy_tls_path());
    ivy__oom_setup(&S.oom);
    for (int s = 0; s < S.nseats; s++) {
        S.seats[s].cpu = cpus[s % ncpus];
        if (spawn(s, false) < 0) S.seats[s].respawn_at = S.seats[s].retry_at;
    }

    int status = 0;
    uint64_t next_watchdog_ping = 0;
    const char *wd = getenv("WATCHDOG_USEC");
    uint64_t wd_ns = wd ? strtoull(wd, NULL, 10) * 500 : 0; /* ping at half the period */
    for (;;) {
        struct pollfd pfd[2] = {{S.sigfd, POLLIN, 0}, {S.stats_fd, POLLIN, 0}};
        bool scrape = S.stats_fd >= 0 && ivy__mono_ns() >= S.stats_pause_until;
        poll(pfd, scrape ? 2 : 1, TICK_MS);
        uint64_t now = ivy__mono_ns();
        if (handle_signals(now)) break;
        if (scrape && (pfd[1].revents & POLLIN)) serve_stats();
        if (!reap(now)) {
            kill_all(SIGKILL);
            status = 1;
            break;
        }
        if (S.stopping) {
            if (!live_procs()) break;
            if (now > S.stop_deadline) {
                log_line("graceful timeout: killing %d workers still running", live_procs());
                kill_all(SIGKILL);
                S.stop_deadline = UINT64_MAX;
            }
            continue;
        }
        if (now >= S.oom.next_read) ivy__oom_read(&S.oom, now);
        respawn_due(now);
        watchdog(now);
        replace_step(now);
        announce_ready();
        if (wd_ns && now >= next_watchdog_ping) {
            sd_notify("WATCHDOG=1");
            next_watchdog_ping = now + wd_ns;
        }
    }
    while (live_procs()) { /* collect what is left so nothing outlives us */
        int st;
        pid_t pid = waitpid(-1, &st, 0);
        if (pid < 0) break;
        struct proc *p = proc_of(pid);
        if (p) p->pid = 0;
    }
    sd_notify("STOPPING=1");
    ivy__stats_destroy(S.shm);
    if (S.stats_fd >= 0) close(S.stats_fd);
    close(S.sigfd);
    free(S.seats);
    free(S.procs);
    free(S.replace_queue);
    sigprocmask(SIG_UNBLOCK, &mask, NULL);
    return status;
}
