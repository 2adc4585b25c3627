/*
 * A worker process: pinned to one CPU, named "ivy: worker N", dies with its supervisor
 * (PR_SET_PDEATHSIG), listens on its own SO_REUSEPORT socket (or the inherited systemd one),
 * and runs the app in a green thread under its hub. It takes connections from its listener one
 * at a time, as the app accepts them (ivy__accept_one): a worker killed outright loses only the
 * connections it had accepted, while those still queued move to a sibling (tcp_migrate_req).
 *
 * Started by a root supervisor with a user (--user/--group), it drops to that user once its
 * listener, ring and signalfd are open, before the app runs (cluster/host.c).
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
#include "conns.h"
#include "seconds.h"
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
    uint64_t drain_deadline;
    ivy_thread *app;
    uint64_t max_requests;
    /* The app as this worker runs it: the options', or a module's. */
    struct ivy_http_options http;
    bool is_http;
    ivy_conn_fn conn;
    void *arg;
    int (*init)(void *arg);
    void (*exit)(void *arg);
} w = {.lfd = -1};

bool ivy_worker_draining(void)
{
    return ivy__conns.draining;
}

int ivy_worker_index(void)
{
    return w.slot ? w.slot->index : -1;
}

ivy_tls_ctx *ivy_worker_tls(void)
{
    return ivy__cluster_tls;
}

void ivy_worker_count(uint64_t requests, uint64_t bytes_in, uint64_t bytes_out)
{
    ivy__conns_count(requests, bytes_in, bytes_out);
}

static void drain_start(void)
{
    if (ivy__conns.draining) return;
    ivy__conns.draining = true;
    IVY_STORE(w.slot->state, SLOT_DRAINING);
    double g = w.o->graceful_timeout > 0 ? w.o->graceful_timeout : 30;
    w.drain_deadline = ivy__deadline_after(ivy__mono_ns(), g);
    ivy_accept_stop(w.lfd);
}

/* The hub calls this every loop iteration: a few stores, no syscall. */
static void heartbeat(void *arg)
{
    struct ivy_hub *h = ivy__hub_tls;
    const struct ivy__conns *c = &ivy__conns;
    struct ivy_stats_slot *s = w.slot;
    IVY_STORE(s->heartbeat_ns, ivy__coarse_ns());
    IVY_STORE(s->iterations, h->stats.iterations);
    IVY_STORE(s->threads_alive, h->stats.threads_alive);
    IVY_STORE(s->max_loop_lag_ns, h->stats.max_loop_lag_ns);
    IVY_STORE(s->conns_open, c->open);
    IVY_STORE(s->conns_total, c->total);
    IVY_STORE(s->requests, c->requests);
    IVY_STORE(s->bytes_in, c->bytes_in);
    IVY_STORE(s->bytes_out, c->bytes_out);
    if (w.max_requests && c->requests >= w.max_requests && !IVY_LOAD(s->recycle))
        IVY_STORE(s->recycle, 1); /* the supervisor starts our replacement, then drains us */
}

static void *ticker(void *arg)
{
    double period = w.o->timeout > 0 ? w.o->timeout / 4 : 0.25;
    if (period > 0.25) period = 0.25;
    for (;;) {
        ivy_sleep(ivy__conns.draining ? 0.01 : period);
        if (!ivy__conns.draining) continue;
        ivy__conns_close_idle(DRAIN_IDLE_GRACE_NS);
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
        struct ivy__call k;
        if (ivy__op_begin(&k) < 0) return NULL;
        io_uring_prep_read(k.sqe, sfd, &si, sizeof si, (uint64_t)-1);
        if (ivy__op_end(&k) != (int)sizeof si) continue;
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
    if (w.init && w.init(w.arg) < 0) {
        fprintf(stderr, "ivy: worker %d: worker_init failed\n", w.slot->index);
        fflush(NULL);
        _exit(2);
    }
    int rc = 0;
    if (w.is_http)
        rc = ivy_http_serve(w.lfd, &w.http);
    else if (w.conn && ivy__cluster_tls)
        rc = ivy_tls_tcp_serve(w.lfd, ivy__cluster_tls, w.conn, w.arg);
    else if (w.conn)
        rc = ivy_tcp_serve(w.lfd, w.conn, w.arg);
    else
        w.o->app(w.lfd, w.arg);
    /* Each closed the listener as accepting stopped (an ivy_app_fn must too): that refuses new
       connections at once, and with tcp_migrate_req hands those still queued to a sibling. */
    if (rc < 0) fprintf(stderr, "ivy: worker %d: accept: %s\n", w.slot->index, strerror(-rc));
    return NULL;
}

static void *exit_main(void *arg)
{
    w.exit(w.arg);
    ivy_stop(); /* the signal reader is still waiting */
    return NULL;
}

/* What this worker runs: the module's entry points over the options'. */
static void choose_app(const struct ivy_cluster_options *o)
{
    if (o->http) w.http = *o->http;
    if (!w.http.tls) w.http.tls = ivy__cluster_tls;
    w.is_http = o->http != NULL;
    w.conn = o->conn;
    w.arg = o->app_arg;
    w.init = o->worker_init;
    w.exit = o->worker_exit;
    if (!o->module) return;
    const struct ivy_module *m;
    char err[512];
    if (ivy__module_load(o->module, &m, err, sizeof err) < 0) {
        fprintf(stderr, "ivy: worker %d: module %s: %s\n", w.slot->index, o->module, err);
        fflush(NULL);
        _exit(2);
    }
    w.is_http = m->http != NULL;
    w.http.handler = m->http;
    w.conn = m->tcp;
    w.arg = w.http.arg = m->arg;
    w.init = m->worker_init;
    w.exit = m->worker_exit;
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

    choose_app(o);
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
    if (sfd < 0) {
        fprintf(stderr, "ivy: worker %d: cannot take signals through a signalfd: %s\n", slot->index,
                strerror(errno));
        _exit(3);
    }

    /* Bound, ring and signalfd open: what needed root is done. The kernel clears the
       parent-death signal when credentials change: set it again. */
    if (ivy__privs_drop() < 0) _exit(5);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != supervisor) _exit(1);

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
    if (w.exit && ivy_spawn_n(exit_main, NULL) == 0) ivy_run(); /* after the drain, on the hub */
    fflush(NULL);
    _exit(0);
}
