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
 * timeout, and keeps per-worker counters in shared memory (ivy-stats.PID in a directory private
 * to the user, read by `ivy stats`, served as Prometheus text with stats_listen).
 *
 * Signals to the supervisor: SIGTERM/SIGINT drain gracefully (stop accepting, finish what is
 * in flight, up to graceful_timeout, exit 0); SIGQUIT stops at once; SIGHUP replaces the
 * workers one at a time, each new one listening before the old one leaves; a new one that dies
 * before it is ready leaves the old one serving (retried with back-off, never counted toward the
 * crash loop; 5 in a row: "reload failed").
 *
 * Inside a worker, the app runs in a green thread: the HTTP server with a handler (http), a
 * TCP function run per connection (conn, through ivy_tcp_serve), any function given the
 * listening socket (app), or an app module loaded from a shared object (module). The first two
 * register every connection for draining and count it in the stats by themselves.
 *
 * Options follow ivy's one rule (include/ivy/http.h): 0 means the default, a negative number
 * turns a limit off; `ivy serve` takes the same, "off" for a negative number.
 */
#ifndef IVY_CLUSTER_H
#define IVY_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include "ivy/http.h"
#include "ivy/hub.h"
#include "ivy/socket.h"
#include "ivy/tls.h"
#include "ivy/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Runs in a green thread of every worker; owns listen_fd: closes it when it stops accepting
 * (once ivy_accept returns -ESHUTDOWN), as ivy_http_serve and ivy_tcp_serve do. */
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

    /* The app: the first of these that is set. */
    const struct ivy_http_options *http; /* the HTTP server (its handler, timeouts) */
    ivy_conn_fn conn;                    /* a TCP app: conn(fd, app_arg) per connection */
    ivy_app_fn app;                      /* app(listen_fd, app_arg) */
    /*
     * An app module (see struct ivy_module): the shared object at this path is loaded in every
     * worker, afresh in each replacement, so rebuilding it and sending SIGHUP deploys it. Its
     * handler runs with http's options (timeouts), if given. ivy_cluster_run checks it first,
     * in a child process: a missing file, a missing symbol or another ABI returns 2, with one
     * line on stderr naming the cause, before any worker starts.
     */
    const char *module;
    void *app_arg;
    /* In every worker, in a green thread: worker_init after fork and pinning, before the first
     * accept (a negative return ends the worker, as a crash); worker_exit after the drain. */
    int (*worker_init)(void *app_arg);
    void (*worker_exit)(void *app_arg);

    /*
     * TLS on every connection of the http, conn and module apps: a PEM certificate chain and
     * its key. ivy_cluster_run loads them before any worker starts (a missing or unreadable
     * file, a key that does not match: 2, one line on stderr naming the cause) and re-reads
     * them on SIGHUP before replacing the workers (a bad renewal: the running certificate
     * stays, the workers too). An app given the listening socket gets ivy_worker_tls().
     */
    const char *tls_cert, *tls_key;

    char **argv; /* main's argv, rewritten so ps shows "ivy: worker N"; may be NULL */
    bool quiet;  /* no start-up lines */
    /* Sets the system-wide net.ipv4.tcp_migrate_req=1 (and leaves it set: other servers may
       count on it), so that connections queued in a closing worker's listener move to a live
       one instead of being reset. Off: the host's setting stands, reported at start-up. */
    bool migrate_req;
    /* Workers drop to this user (name or uid) and its groups after binding, before the app
       runs; needs root. NULL: they keep the supervisor's (with a warning when that is root). */
    const char *user;
    const char *group; /* and to this group (name or gid) instead of the user's; NULL: its own */
};

/*
 * An app module: a shared object built against include/ivy/ that exports
 *
 *     const struct ivy_module ivy_module = {.abi = IVY_MODULE_ABI, .http = my_handler};
 *
 * and is served with `ivy serve --app ./my.so`. It links nothing of ivy itself: its calls into
 * ivy resolve to the `ivy` process that loaded it (one hub per worker). Build it with
 * `cc -shared -fPIC -o my.so my.c`.
 */
#define IVY_MODULE_ABI    1
#define IVY_MODULE_SYMBOL "ivy_module"
struct ivy_module {
    unsigned abi;          /* IVY_MODULE_ABI of the headers it was built with */
    ivy_http_handler http; /* an HTTP handler, or */
    ivy_conn_fn tcp;       /* a TCP connection function */
    void *arg;             /* for all of these */
    int (*worker_init)(void *arg);
    void (*worker_exit)(void *arg);
};

/* Runs the supervisor until it stops; returns the process exit status (0 after a drain). */
int ivy_cluster_run(const struct ivy_cluster_options *opts);

/* ---- inside a worker (harmless outside a cluster) ------------------------------------- */

/* True once the worker drains: what is answered now carries Connection: close. */
bool ivy_worker_draining(void);
int ivy_worker_index(void); /* 0.., or -1 outside a cluster */
/* The TLS context loaded from tls_cert/tls_key (NULL without): for apps that serve HTTP or TCP
   themselves (ivy_http_options.tls, ivy_tls_tcp_serve). */
ivy_tls_ctx *ivy_worker_tls(void);
/* Counts an app's own requests and bytes (the HTTP server counts its own); may start
 * recycling the worker (max_requests). */
void ivy_worker_count(uint64_t requests, uint64_t bytes_in, uint64_t bytes_out);

#ifdef __cplusplus
}
#endif
#endif
