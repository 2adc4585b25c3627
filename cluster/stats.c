/*
 * Shared-memory stats: the segment's life cycle, the Prometheus text rendering behind
 * --stats-listen, and the `ivy stats` table. The segment is a file named after the
 * supervisor's pid, so `ivy stats` run by the same user finds a running server without being
 * told, in a directory private to that user (ivy__stats_dir), created 0600 and never adopted:
 * the workers write it through the mapping they inherit, and no other user can read or write it.
 */
#include "cluster_impl.h"

#include <dirent.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t ivy__mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Where the segments live: a directory only their owner can enter, so that no one else can
 * have planted, read or written a segment. $IVY_STATS_DIR when set (an absolute path); else
 * /run/ivy for root, whatever the environment (a service and an operator's login shell must
 * agree); else $XDG_RUNTIME_DIR/ivy (the user's own tmpfs) or, without one, /dev/shm/ivy-UID.
 * The directory must be ours: one that another user made first (/dev/shm is world-writable) is
 * refused, never used.
 */
const char *ivy__stats_dir(void)
{
    static char dir[PATH_MAX];
    const char *own = getenv("IVY_STATS_DIR"), *xdg = getenv("XDG_RUNTIME_DIR");
    if (own && own[0] == '/' && strlen(own) < sizeof dir)
        snprintf(dir, sizeof dir, "%s", own);
    else if (geteuid() == 0)
        snprintf(dir, sizeof dir, "/run/ivy");
    else if (xdg && xdg[0] == '/' && strlen(xdg) + 5 < sizeof dir)
        snprintf(dir, sizeof dir, "%s/ivy", xdg);
    else
        snprintf(dir, sizeof dir, "/dev/shm/ivy-%u", (unsigned)geteuid());
    return dir;
}

static void shm_name(char *buf, size_t cap, pid_t pid)
{
    snprintf(buf, cap, "ivy-stats.%d", (int)pid);
}

static size_t shm_size(unsigned nslots)
{
    return sizeof(struct ivy_stats_shm) + nslots * sizeof(struct ivy_stats_slot);
}

/* The stats directory, made private if it is not there; a descriptor on it, or -errno. */
static int private_dir(const char *dir)
{
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) return -errno;
    /* O_NOFOLLOW: a symlink planted in our place is refused, not followed. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) return -errno;
    struct stat st;
    if (fstat(dfd, &st) < 0 || st.st_uid != geteuid()) {
        close(dfd);
        return -EPERM;
    }
    if ((st.st_mode & 07777) != 0700 && fchmod(dfd, 0700) < 0) {
        int err = -errno;
        close(dfd);
        return err;
    }
    return dfd;
}

/* The segment's file, new: O_EXCL so that nothing already there is adopted, 0600. An entry
   with our name can only be a leftover of an earlier process with our pid (no one else can
   write in the directory): it is removed, not reused, and the file made anew. */
static int create_file(int dfd, const char *name)
{
    for (int attempt = 0;; attempt++) {
        int fd = openat(dfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0) {
            if (fchmod(fd, 0600) == 0) return fd; /* whatever the umask */
            int err = -errno;
            close(fd);
            unlinkat(dfd, name, 0);
            return err;
        }
        if (errno != EEXIST || attempt > 0 || unlinkat(dfd, name, 0) < 0) return -errno;
    }
}

/* Segments left by supervisors that died without removing theirs (SIGKILL): only this user's
   processes write here, so whatever names a dead pid can go. */
static void sweep_dead(int dfd)
{
    int fd = dup(dfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0) close(fd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        int p;
        if (sscanf(e->d_name, "ivy-stats.%d", &p) == 1 && p > 0 && kill(p, 0) < 0 && errno == ESRCH)
            unlinkat(dfd, e->d_name, 0);
    }
    closedir(d);
}

struct ivy_stats_shm *ivy__stats_create(unsigned nslots, const char *app, const char *listen)
{
    const char *dir = ivy__stats_dir();
    char name[64];
    shm_name(name, sizeof name, getpid());
    size_t len = shm_size(nslots);
    int dfd = private_dir(dir);
    if (dfd < 0) {
        fprintf(stderr, "ivy: cannot use %s for the stats: %s%s\n", dir, strerror(-dfd),
                dfd == -EPERM ? " (not a directory of this user's own)" : "");
        return NULL;
    }
    sweep_dead(dfd);
    int fd = create_file(dfd, name);
    if (fd < 0 || ftruncate(fd, (off_t)len) < 0) {
        fprintf(stderr, "ivy: cannot create %s/%s: %s\n", dir, name,
                strerror(fd < 0 ? -fd : errno));
        if (fd >= 0) {
            close(fd);
            unlinkat(dfd, name, 0);
        }
        close(dfd);
        return NULL;
    }
    struct ivy_stats_shm *s = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (s == MAP_FAILED) {
        fprintf(stderr, "ivy: cannot map %s/%s: %s\n", dir, name, strerror(errno));
        unlinkat(dfd, name, 0);
        close(dfd);
        return NULL;
    }
    close(dfd);
    s->nslots = nslots;
    s->supervisor_pid = (uint64_t)getpid();
    snprintf(s->app, sizeof s->app, "%s", app ? app : "");
    snprintf(s->listen, sizeof s->listen, "%s", listen ? listen : "");
    __atomic_store_n(&s->magic, IVY_STATS_MAGIC, __ATOMIC_RELEASE);
    return s;
}

void ivy__stats_destroy(struct ivy_stats_shm *s)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/ivy-stats.%d", ivy__stats_dir(), (int)s->supervisor_pid);
    unlink(path);
    munmap(s, shm_size(s->nslots));
}

static struct ivy_stats_shm *map_pid(pid_t pid, size_t *len)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/ivy-stats.%d", ivy__stats_dir(), (int)pid);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct stat st;
    void *m = MAP_FAILED;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        (size_t)st.st_size >= sizeof(struct ivy_stats_shm))
        m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return NULL;
    struct ivy_stats_shm *s = m;
    if (s->magic != IVY_STATS_MAGIC || shm_size(s->nslots) > (size_t)st.st_size) {
        munmap(m, (size_t)st.st_size);
        return NULL;
    }
    *len = (size_t)st.st_size;
    return s;
}

struct ivy_stats_shm *ivy__stats_open(pid_t pid, size_t *len)
{
    if (pid > 0) return map_pid(pid, len);
    const char *dir = ivy__stats_dir();
    DIR *d = opendir(dir);
    if (!d) return NULL;
    pid_t best = 0;
    time_t best_time = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int p;
        struct stat st;
        if (sscanf(e->d_name, "ivy-stats.%d", &p) != 1 || p <= 0) continue;
        if (kill(p, 0) != 0 && errno == ESRCH) continue; /* left by a server that died */
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            st.st_mtime >= best_time) {
            best = p;
            best_time = st.st_mtime;
        }
    }
    closedir(d);
    return best ? map_pid(best, len) : NULL;
}

static bool slot_live(const struct ivy_stats_slot *w)
{
    return IVY_LOAD(w->state) != SLOT_FREE && IVY_LOAD(w->pid) != 0;
}

size_t ivy__stats_prometheus(const struct ivy_stats_shm *s, char *buf, size_t cap)
{
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } metrics[] = {
#define M(field, type, help) {"ivy_" #field, type, help, offsetof(struct ivy_stats_slot, field)}
        M(conns_open, "gauge", "Connections open"),
        M(conns_total, "counter", "Connections accepted"),
        M(requests, "counter", "Requests served"),
        M(bytes_in, "counter", "Bytes received"),
        M(bytes_out, "counter", "Bytes sent"),
        M(threads_alive, "gauge", "Green threads alive"),
        M(iterations, "counter", "Hub loop iterations"),
        M(max_loop_lag_ns, "gauge", "Longest hub loop iteration, ns"),
        M(restarts, "counter", "Restarts of this worker slot"),
#undef M
    };
    size_t n = 0;
    for (size_t m = 0; m < sizeof metrics / sizeof metrics[0]; m++) {
        n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "# HELP %s %s\n# TYPE %s %s\n",
                              metrics[m].name, metrics[m].help, metrics[m].name, metrics[m].type);
        for (unsigned i = 0; i < s->nslots; i++) {
            const struct ivy_stats_slot *w = &s->slot[i];
            if (!slot_live(w)) continue;
            uint64_t v = __atomic_load_n((const uint64_t *)((const char *)w + metrics[m].off),
                                         __ATOMIC_RELAXED);
            n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0,
                                  "%s{worker=\"%d\",pid=\"%llu\",cpu=\"%d\"} %llu\n",
                                  metrics[m].name, w->index, (unsigned long long)w->pid, w->cpu,
                                  (unsigned long long)v);
        }
    }
    n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0,
                          "# HELP ivy_failed_replacements Replacements (SIGHUP, max_requests) that "
                          "died before they were ready\n"
                          "# TYPE ivy_failed_replacements counter\nivy_failed_replacements %llu\n",
                          (unsigned long long)IVY_LOAD(s->failed_replacements));
    return n < cap ? n : cap;
}

static void human(char *out, size_t cap, double v)
{
    const char *units = " KMGT";
    int u = 0;
    while (v >= 1000 && u < 4) {
        v /= 1000;
        u++;
    }
    snprintf(out, cap, u ? "%.1f%c" : "%.0f", v, units[u]);
}

void ivy__stats_table(const struct ivy_stats_shm *s, FILE *out, const uint64_t *prev_requests,
                      double interval)
{
    /* The strings are in memory that every worker can write: bounded, a NUL or not. */
    fprintf(out, "ivy %.*s on %.*s (supervisor %llu)\n", (int)strnlen(s->app, sizeof s->app),
            s->app, (int)strnlen(s->listen, sizeof s->listen), s->listen,
            (unsigned long long)s->supervisor_pid);
    uint64_t failed = IVY_LOAD(s->failed_replacements);
    if (failed)
        fprintf(out,
                "failed replacements: %llu (a reload or recycle that could not start its "
                "worker; the old one served on)\n",
                (unsigned long long)failed);
    fprintf(out, "%-6s %-8s %-4s %-8s %-9s %-9s %-9s %-8s %-8s %-8s %-9s %-8s\n", "worker", "pid",
            "cpu", "conns", "total", "requests", "req/s", "in", "out", "threads", "lag_ms",
            "restarts");
    for (unsigned i = 0; i < s->nslots; i++) {
        const struct ivy_stats_slot *w = &s->slot[i];
        if (!slot_live(w)) continue;
        uint64_t req = IVY_LOAD(w->requests);
        double rate =
            prev_requests && interval > 0 ? (double)(req - prev_requests[i]) / interval : 0;
        char total[16], reqs[16], rps[16], in[16], outb[16];
        human(total, sizeof total, (double)IVY_LOAD(w->conns_total));
        human(reqs, sizeof reqs, (double)req);
        human(rps, sizeof rps, rate);
        human(in, sizeof in, (double)IVY_LOAD(w->bytes_in));
        human(outb, sizeof outb, (double)IVY_LOAD(w->bytes_out));
        fprintf(out, "%-6d %-8llu %-4d %-8llu %-9s %-9s %-9s %-8s %-8s %-8llu %-9.1f %-8llu\n",
                w->index, (unsigned long long)w->pid, w->cpu,
                (unsigned long long)IVY_LOAD(w->conns_open), total, reqs, rps, in, outb,
                (unsigned long long)IVY_LOAD(w->threads_alive),
                (double)IVY_LOAD(w->max_loop_lag_ns) / 1e6,
                (unsigned long long)IVY_LOAD(w->restarts));
    }
}
