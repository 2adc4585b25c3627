/*
 * The cluster: a supervisor process and one pinned worker process per CPU, each with its own
 * SO_REUSEPORT listener and hub, running an app.
 *
 * ivy_cluster_run() is what `ivy serve` runs. The supervisor forks the workers and restarts
 * one that dies on the same CPU. A worker's own crashes, error exits and watchdog kills back
 * off (10 ms doubling to 5 s, reset after a healthy minute) and count toward a crash loop (10
 * within 10 s), which stops the supervisor with a message and a non-zero status; a worker
 * SIGKILLed from outside respawns after the minimum 10 ms, without growing the back-off or
 * counting. The supervisor also SIGKILLs a worker whose heartbeat is older than the watchdog
 * timeout, and keeps per-worker counters in shared memory (/dev/shm/ivy-stats.PID, read by
 * `ivy stats`, served as Prometheus text with stats_listen).
 *
 * Signals to the supervisor: SIGTERM/SIGINT drain gracefully (stop accepting, finish what is
 * in flight, up to graceful_timeout, exit 0); SIGQUIT stops at once; SIGHUP replaces the
 * workers one at a time, each new one listening before the old one leaves.
 *
 * Inside a worker, an app is a function run in a green thread with the worker's listening
 * socket. It accepts until ivy_accept fails (-ESHUTDOWN once the worker drains), registers each
 * connection (ivy_conn_open) and marks it idle while it waits between requests, so that a
 * draining worker closes idle connections only between requests.
 */
#ifndef IVY_CLUSTER_H
#define IVY_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include "ivy/hub.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Runs in a green thread of every worker; returns when it has stopped accepting. */
typedef void (*ivy_app_fn)(int listen_fd, void *arg);

struct ivy_cluster_options {
    const char *host;         /* NULL: 127.0.0.1 */
    int port;                 /* 0: 8080 */
    int backlog;              /* 0: 4096 */
    int workers;              /* 0: one per CPU in the affinity mask */
    double timeout;           /* watchdog, seconds; 0: 30; < 0: off */
    double graceful_timeout;  /* seconds to drain; 0: 30 */
    uint64_t max_requests;    /* a worker recycles itself after this many; 0: never */
    const char *stats_listen; /* "HOST:PORT" for Prometheus /metrics, or NULL */
    const char *app_name;     /* for messages: "http", "echo" */
    ivy_app_fn app;
    void *app_arg;
    char **argv; /* main's argv, rewritten so ps shows "ivy: worker N"; may be NULL */
    bool quiet;  /* no start-up lines */
};

/* Runs the supervisor until it stops; returns the process exit status (0 after a drain). */
int ivy_cluster_run(const struct ivy_cluster_options *opts);

/* ---- for apps, inside a worker (harmless no-ops outside a cluster) ---------------------- */

/* A connection, registered for the stats and for draining; lives in the connection thread. */
struct ivy_conn {
    ivy_thread *thread;
    struct ivy_conn *prev, *next;
    bool idle; /* waiting for the next request with nothing half-read */
    uint64_t idle_since;
};

void ivy_conn_open(struct ivy_conn *c);
void ivy_conn_close(struct ivy_conn *c);
/*
 * A draining worker closes connections idle for longer than a short grace (250 ms): their
 * pending call returns -ESHUTDOWN. A client that sends its next request within the grace gets
 * its answer with Connection: close instead, so keep-alive clients lose nothing.
 */
void ivy_conn_set_idle(struct ivy_conn *c, bool idle);
/* Counts served requests and bytes; may start recycling the worker (max_requests). */
void ivy_worker_count(uint64_t requests, uint64_t bytes_in, uint64_t bytes_out);
/* True once the worker drains: answer what was read, with Connection: close. */
bool ivy_worker_draining(void);
int ivy_worker_index(void); /* 0.., or -1 outside a cluster */

#ifdef __cplusplus
}
#endif
#endif
