/*
 * Cluster internals: the shared-memory stats segment that the supervisor, its workers and
 * `ivy stats` all map. Each worker process owns one slot and is its only writer (relaxed
 * atomic loads and stores: plain moves, no locked instructions on the request path); the
 * supervisor writes a slot only before the worker starts and after it is gone.
 */
#ifndef IVY_CLUSTER_IMPL_H
#define IVY_CLUSTER_IMPL_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <sys/types.h>

#define IVY_STATS_MAGIC 0x69767973u /* "ivys" */

enum ivy_slot_state { SLOT_FREE, SLOT_STARTING, SLOT_READY, SLOT_DRAINING };

struct ivy_stats_slot {
    uint64_t pid;
    int32_t index, cpu;
    uint64_t state;
    uint64_t heartbeat_ns; /* CLOCK_MONOTONIC, stamped by the hub loop */
    uint64_t started_ns;
    uint64_t conns_open, conns_total, requests, bytes_in, bytes_out;
    uint64_t threads_alive, iterations, max_loop_lag_ns, restarts;
    uint64_t recycle; /* the worker asks to be replaced (max_requests) */
} __attribute__((aligned(64)));

struct ivy_stats_shm {
    uint32_t magic, nslots;
    uint64_t supervisor_pid;
    uint64_t failed_replacements; /* replacements that died before they were ready */
    char app[16];
    char listen[64];
    struct ivy_stats_slot slot[];
};

#define IVY_LOAD(x)     __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define IVY_STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define IVY_BUMP(x, n)  IVY_STORE(x, IVY_LOAD(x) + (n))

/* OOM kills, as the kernel counts them (cluster/oom.c). */
struct ivy_oom {
    char path[256];  /* a file with an "oom_kill N" line; empty: not available */
    uint64_t seen;   /* its last value */
    unsigned credit; /* OOM kills counted but not yet matched to a dead worker */
    uint64_t credit_at, next_read;
};
void ivy__oom_setup(struct ivy_oom *o);
/* Takes in the kills counted since the last read; the supervisor calls it each next_read. */
void ivy__oom_read(struct ivy_oom *o, uint64_t now);
/* Whether a worker dead of a SIGKILL that our watchdog did not send was killed by the OOM killer.
 */
bool ivy__oom_killed(struct ivy_oom *o, uint64_t now);

/* The directory of the stats segments, private to the user (cluster/stats.c says which). */
const char *ivy__stats_dir(void);
/* Creates ivy-stats.PID there, sized for nslots; NULL with a message on failure. */
struct ivy_stats_shm *ivy__stats_create(unsigned nslots, const char *app, const char *listen);
void ivy__stats_destroy(struct ivy_stats_shm *s);
/* Maps the newest live supervisor's segment (or pid's, if > 0) read-only. */
struct ivy_stats_shm *ivy__stats_open(pid_t pid, size_t *len);
/* Prometheus text exposition of every live slot into buf; returns its length. */
size_t ivy__stats_prometheus(const struct ivy_stats_shm *s, char *buf, size_t cap);
/* The `ivy stats` table. */
void ivy__stats_table(const struct ivy_stats_shm *s, FILE *out, const uint64_t *prev_requests,
                      double interval);

uint64_t ivy__mono_ns(void);

/* App modules (cluster/module.c): both 0, or -1 with the cause in err. */
struct ivy_module;
int ivy__module_load(const char *path, const struct ivy_module **m, char *err, size_t cap);
int ivy__module_check(const char *path, char *err, size_t cap); /* in a child process */

/* TLS (tls_cert/tls_key): loaded by the supervisor before forking, inherited by workers. */
struct ivy_tls_ctx;
extern struct ivy_tls_ctx *ivy__cluster_tls;

/* Worker side (cluster/worker.c), called by the supervisor in the forked child. */
struct ivy_cluster_options;
void ivy__worker_main(const struct ivy_cluster_options *o, struct ivy_stats_shm *shm,
                      struct ivy_stats_slot *slot, int inherited_fd, int sigfd_parent)
    __attribute__((noreturn));

/* The signals the supervisor and its workers take through a signalfd (SIGCHLD: supervisor). */
static inline void ivy__cluster_sigset(sigset_t *set, bool chld)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGQUIT);
    sigaddset(set, SIGHUP);
    if (chld) sigaddset(set, SIGCHLD);
}

/* The host (cluster/host.c). Reports (and with migrate_req, sets) the protection of connections
   queued in a closing worker's listener: tcp_migrate_req, or an inherited shared listener. */
void ivy__host_protection(bool migrate_req, bool inherited, bool quiet);
/* Privileges: the supervisor resolves --user/--group once (a message and
   -errno when it cannot; a warning when it is root and drops nothing), each worker drops to them
   before its app runs (a message and -errno when it cannot). */
int ivy__privs_setup(const char *user, const char *group, bool quiet);
int ivy__privs_drop(void);

/* A worker exits with this status to say "recycled, not crashed". */
#define IVY_EXIT_RECYCLED 75

#endif
