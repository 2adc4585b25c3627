/*
 * A worker process: pinned to one CPU, named "ivy: worker N", dies with its supervisor
 * (PR_SET_PDEATHSIG), listens on its own SO_REUSEPORT socket (or the inherited systemd one),
 * and runs the app in a green thread under its hub. It takes connections from its listener one
 * at a time, as the app accepts them (ivy__accept_one): a worker killed outright loses only the
 * connections it had accepted, while those still queued move to a sibling (tcp_migrate_req).
 *
 * Beside the app, two green threads: one reads signals from a signalfd through the ring (no
 * async handlers), one ticks so the heartbeat stays fresh when the hub is idle and checks the
 * drain. The hub stamps the heartbeat in shared memory on every loop iteration, so a green
 * thread that computes without yielding stops it and the supervisor's watchdog notices.
 *
 * Draining (SIGTERM/SIGINT, or the supervisor replacing us): stop accepting (connections
 * already taken from the kernel are still served; those in the kernel's queue migrate when the
 * socket closes), answer every request still coming with Connection: close, close connections
 * idle for longer than a short grace (so a keep-alive client's next request, already on its
 * way, is answered rather than reset), and leave when none is left or graceful_timeout passed.
 */
#include "cluster_impl.h"
#include "socket_impl.h"
#include "ivy/cluster.h"
#include "ivy/socket.h"

#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define DRAIN_IDLE_GRACE_NS (250 * 1000000ull)

static struct {
    const struct ivy_cluster_options *o;
    struct ivy_stats_slot *slot;
    int lfd;
    bool draining;
    uint64_t drain_deadline;
    struct ivy_conn *conns;
    ivy_thread *app;
    uint64_t max_requests;
} w = {.lfd = -1};

bool ivy_worker_draining(void)
{
    return w.draining;
}

int ivy_worker_index(void)
{
    return w.slot ? w.slot->index : -1;
}

void ivy_conn_open(struct ivy_conn *c)
{
    c->thread = ivy_self();
    c->idle = false;
    c->prev = NULL;
    c->next = w.conns;
    if (w.conns) w.conns->prev = c;
    w.conns = c;
    if (w.slot) {
        IVY_BUMP(w.slot->conns_open, 1);
        IVY_BUMP(w.slot->conns_total, 1);
    }
}

void ivy_conn_close(struct ivy_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        w.conns = c->next;
    if (c->next) c->next->prev = c->prev;
    if (w.slot) IVY_STORE(w.slot->conns_open, IVY_LOAD(w.slot->conns_open) - 1);
}

/* The coarse clock (a few ns, no syscall): the grace is 250 ms, and this is per request. */
static uint64_t coarse_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void ivy_conn_set_idle(struct ivy_conn *c, bool idle)
{
    if (idle && !c->idle) c->idle_since = coarse_now();
    c->idle = idle;
}

/* Draining: close connections quiet for longer than the grace, between requests only. */
static void close_idle(void)
{
    uint64_t now = coarse_now();
    for (struct ivy_conn *c = w.conns; c; c = c->next)
        if (c->idle && now - c->idle_since > DRAIN_IDLE_GRACE_NS)
            ivy__interrupt(c->thread, -ESHUTDOWN);
}

void ivy_worker_count(uint64_t requests, uint64_t bytes_in, uint64_t bytes_out)
{
    if (!w.slot) return;
    IVY_BUMP(w.slot->requests, requests);
    IVY_BUMP(w.slot->bytes_in, bytes_in);
    IVY_BUMP(w.slot->bytes_out, bytes_out);
    if (w.max_requests && IVY_LOAD(w.slot->requests) >= w.max_requests &&
        !IVY_LOAD(w.slot->recycle))
        IVY_STORE(w.slot->recycle, 1); /* the supervisor starts our replacement, then drains us */
}

static void drain_start(void)
{
    if (w.draining) return;
    w.draining = true;
    IVY_STORE(w.slot->state, SLOT_DRAINING);
    double g = w.o->graceful_timeout > 0 ? w.o->graceful_timeout : 30;
    w.drain_deadline = ivy__mono_ns() + (uint64_t)(g * 1e9);
    ivy_accept_stop(w.lfd);
}

/* The hub calls this every loop iteration: a store or four, no syscall. */
static void heartbeat(void *arg)
{
    struct ivy_hub *h = ivy__hub_tls;
    IVY_STORE(w.slot->heartbeat_ns, coarse_now());
    IVY_STORE(w.slot->iterations, h->stats.iterations);
    IVY_STORE(w.slot->threads_alive, h->stats.threads_alive);
    IVY_STORE(w.slot->max_loop_lag_ns, h->stats.max_loop_lag_ns);
}

static void *ticker(void *arg)
{
    double period = w.o->timeout > 0 ? w.o->timeout / 4 : 0.25;
    if (period > 0.25) period = 0.25;
    for (;;) {
        ivy_sleep(w.draining ? 0.01 : period);
        if (!w.draining) continue;
        close_idle();
        /* Done when only this thread and the signal reader are left: counting live threads
           rather than registered connections also covers one spawned but not started yet. */
        struct ivy_hub_stats st;
        ivy_hub_stats(&st);
        if (st.threads_alive <= 2 && ivy_thread_done(w.app)) break;
        if (ivy__mono_ns() > w.drain_deadline) {
            fprintf(stderr, "ivy: worker %d: graceful timeout, closing connections still open\n",
                    w.slot->index);
            break;
        }
    }
    ivy_stop();
    return NULL;
}

static void *signals(void *arg)
{
    int sfd = (int)(intptr_t)arg;
    struct signalfd_siginfo si;
    for (;;) {
        struct ivy_hub *h;
        ivy_thread *t;
        struct io_uring_sqe *sqe;
        struct ivy_op op;
        if (ivy__op_begin(&h, &t, &sqe) < 0) return NULL;
        io_uring_prep_read(sqe, sfd, &si, sizeof si, (uint64_t)-1);
        if (ivy__op_wait(h, t, sqe, &op) != (int)sizeof si) continue;
        if (si.ssi_signo == SIGQUIT) {
            fflush(NULL);
            _exit(0);
        }
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) drain_start();
        /* SIGHUP is the supervisor's business: a terminal hang-up must not stop workers. */
    }
}

static void *app_main(void *arg)
{
    w.o->app(w.lfd, w.o->app_arg);
    /* Accepting is over: closing the socket now refuses new connections at once, and with
       tcp_migrate_req hands those still queued in the kernel to a live sibling. */
    ivy_close(w.lfd);
    return NULL;
}

static void set_title(char **argv, const char *title)
{
    prctl(PR_SET_NAME, title);
    if (!argv || !argv[0]) return;
    /* The argv strings are contiguous: overwrite them so ps shows the title. */
    char *start = argv[0], *end = argv[0] + strlen(argv[0]);
    for (int i = 1; argv[i] && argv[i] == end + 1; i++)
        end = argv[i] + strlen(argv[i]);
    size_t room = (size_t)(end - start);
    memset(start, 0, room);
    memcpy(start, title, strlen(title) < room ? strlen(title) : room);
    for (int i = 1; argv[i]; i++)
        argv[i] = NULL;
}

void ivy__worker_main(const struct ivy_cluster_options *o, struct ivy_stats_shm *shm,
                      struct ivy_stats_slot *slot, int inherited_fd, int sigfd_parent)
{
    w.o = o;
    w.slot = slot;
    w.max_requests = o->max_requests;
    pid_t supervisor = (pid_t)shm->supervisor_pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGPIPE, SIG_IGN);
    if (getppid() != supervisor) _exit(1); /* it died before we could ask */
    close(sigfd_parent);

    char title[32];
    snprintf(title, sizeof title, "ivy: worker %d", slot->index);
    set_title(o->argv, title);
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(slot->cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0)
        fprintf(stderr, "ivy: worker %d: cannot pin to cpu %d: %s\n", slot->index, slot->cpu,
                strerror(errno));

    const char *host = o->host ? o->host : "127.0.0.1";
    int port = o->port ? o->port : 8080;
    w.lfd = inherited_fd >= 0
                ? inherited_fd
                : ivy_listen(host, port, o->backlog ? o->backlog : 4096, IVY_REUSEPORT);
    if (w.lfd < 0) {
        fprintf(stderr, "ivy: worker %d: cannot listen on %s:%d: %s\n", slot->index, host, port,
                strerror(-w.lfd));
        _exit(2);
    }
    int rc = ivy_hub_init(&(struct ivy_hub_options){.quiet = slot->index != 0});
    if (rc < 0) _exit(3);
    /* What this process takes from the kernel dies with it; what it leaves there migrates. */
    ivy__accept_one(w.lfd);
    sigset_t mask;
    ivy__cluster_sigset(&mask, false);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC);

    ivy__hub_tls->on_iteration = heartbeat;
    heartbeat(NULL);
    w.app = ivy_spawn(app_main, NULL);
    if (!w.app) _exit(4);
    ivy_spawn_n(ticker, NULL);
    ivy_spawn_n(signals, (void *)(intptr_t)sfd);
    IVY_STORE(slot->state, SLOT_READY);
    if (!o->quiet)
        printf("ivy: worker %d (pid %d) listening on %s:%d, cpu %d\n", slot->index, (int)getpid(),
               host, port, slot->cpu);
    fflush(stdout);
    ivy_run();
    fflush(NULL);
    _exit(0);
}
