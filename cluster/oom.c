/*
 * Telling the OOM killer's SIGKILLs from an operator's: the supervisor counts a worker's own
 * deaths (crashes, error exits, our watchdog's kills, OOM kills) toward back-off and the crash
 * loop, but not a SIGKILL from outside, and the OOM killer also sends SIGKILL. Its kills are
 * counted by the kernel ("oom_kill N" lines); each new one may explain one worker found dead of
 * SIGKILL within OOM_CREDIT_NS.
 */
#include "cluster_impl.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OOM_CREDIT_NS (5 * 1000000000ull) /* an OOM kill this old explains no later death */
#define OOM_READ_NS   (1000000000ull)

/* The value on the "oom_kill N" line of a /proc or cgroup file, or -1. */
static int64_t read_oom_kills(const char *path)
{
    char buf[16384];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t n = 0;
    ssize_t r;
    while (n + 1 < sizeof buf && (r = read(fd, buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)r;
    close(fd);
    buf[n] = 0;
    const char *line = buf;
    while (strncmp(line, "oom_kill ", 9))
        if (!(line = strchr(line, '\n')) || !*++line) return -1;
    return strtoll(line + 9, NULL, 10);
}

/* Where OOM kills are counted. Best: memory.events of the cgroup v2 that the supervisor, and so
   its workers, are in: it counts the kills inside that cgroup only. Else /proc/vmstat (Linux >=
   4.13), which counts every OOM kill on the machine: an unrelated one a few seconds before an
   outside SIGKILL makes that kill count as the worker's own death (one more back-off step, one
   more toward the crash loop), which we accept. Neither (old kernel): OOM kills look external. */
void ivy__oom_setup(struct ivy_oom *o)
{
    char line[512], *cg = NULL;
    FILE *f = fopen("/proc/self/cgroup", "re");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "0::", 3)) {
            cg = line + 3;
            cg[strcspn(cg, "\n")] = 0;
            break;
        }
    if (f) fclose(f);
    int64_t v = -1;
    int n = cg ? snprintf(o->path, sizeof o->path, "/sys/fs/cgroup%s/memory.events", cg) : -1;
    if (n > 0 && (size_t)n < sizeof o->path) v = read_oom_kills(o->path);
    if (v < 0) {
        strcpy(o->path, "/proc/vmstat");
        v = read_oom_kills(o->path);
    }
    if (v < 0) o->path[0] = 0;
    o->seen = v < 0 ? 0 : (uint64_t)v;
}

/* OOM kills counted since the last read become credit stamped now; credit too old to explain a
   death is dropped. Read each second, so that old kills are not taken for recent ones. */
void ivy__oom_read(struct ivy_oom *o, uint64_t now)
{
    if (!o->path[0]) return;
    o->next_read = now + OOM_READ_NS;
    int64_t v = read_oom_kills(o->path);
    if (v >= 0 && (uint64_t)v > o->seen) {
        o->credit += (unsigned)((uint64_t)v - o->seen);
        o->credit_at = now;
    }
    if (v >= 0) o->seen = (uint64_t)v;
    if (o->credit && now - o->credit_at > OOM_CREDIT_NS) o->credit = 0;
}

/* Whether a worker dead of a SIGKILL that our watchdog did not send was killed by the OOM
   killer: a recent OOM kill not yet matched to another dead worker. The kernel counts a kill
   right after sending the signal, in the killing task; when that task is the victim (the usual
   case: the worker that allocates is the biggest), the count is there before the worker can be
   reaped. When the killer is another task, a reap may in rare cases come first and the kill is
   taken for an outside one. */
bool ivy__oom_killed(struct ivy_oom *o, uint64_t now)
{
    ivy__oom_read(o, now);
    if (!o->credit) return false;
    o->credit--;
    return true;
}
