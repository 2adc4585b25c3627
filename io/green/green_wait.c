/*
 * Green libc, waiting: poll, ppoll, select, pselect, sleep, usleep, nanosleep, clock_nanosleep.
 *
 * On a green thread, a wait that may block first looks without waiting (poll(2) with timeout 0:
 * what is ready now is answered at once, as libc would, bad descriptors included), then waits
 * through the ring (ivy_poll), or, with no descriptor, sleeps on the hub's timers. ppoll's and
 * pselect's signal masks are not applied on that path: a green thread shares its OS thread's
 * mask with every other one. Interruptions: ECANCELED (killed) or ETIMEDOUT (an ivy_timeout
 * scope expired), never EINTR, which libraries retry.
 */
#include "green_impl.h"

#include <stdlib.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

GREEN_REAL(poll)
GREEN_REAL(ppoll)
GREEN_REAL(select)
GREEN_REAL(pselect)
GREEN_REAL(sleep)
GREEN_REAL(usleep)
GREEN_REAL(nanosleep)
GREEN_REAL(clock_nanosleep)

#define NS 1000000000LL

/* poll on a green thread, the timeout in ns (< 0: none); -1 with errno on error. */
static int green_poll(struct pollfd *fds, nfds_t n, int64_t timeout_ns)
{
    if (n > UINT32_MAX) {
        errno = EINVAL;
        return -1;
    }
    int rc = REAL(poll)(fds, n, 0);
    if (rc != 0 || timeout_ns == 0) return rc;
    return (int)green_ret(ivy__green_ops->poll(fds, (unsigned)n, timeout_ns));
}

static __attribute__((noinline)) int g_poll(struct pollfd *fds, nfds_t n, int timeout_ms)
{
    return green_poll(fds, n, timeout_ms < 0 ? -1 : (int64_t)timeout_ms * 1000000);
}

int poll(struct pollfd *fds, nfds_t n, int timeout_ms)
{
    if (!green_here() || timeout_ms == 0) return REAL(poll)(fds, n, timeout_ms);
    return g_poll(fds, n, timeout_ms);
}

static bool bad_timespec(const struct timespec *ts)
{
    return ts && (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= NS);
}

static __attribute__((noinline)) int g_ppoll(struct pollfd *fds, nfds_t n,
                                             const struct timespec *ts, const sigset_t *mask)
{
    return green_poll(fds, n, ts ? ts->tv_sec * NS + ts->tv_nsec : -1);
}

int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask)
{
    if (!green_here() || (ts && !ts->tv_sec && !ts->tv_nsec) || bad_timespec(ts))
        return REAL(ppoll)(fds, n, ts, mask);
    return g_ppoll(fds, n, ts, mask);
}

/* The fortified poll and ppoll (_FORTIFY_SOURCE): libc's check first, then the green call. */
int __poll_chk(struct pollfd *fds, nfds_t n, int timeout_ms, size_t fdslen);
int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask,
                size_t fdslen);
GREEN_REAL(__poll_chk)
GREEN_REAL(__ppoll_chk)

int __poll_chk(struct pollfd *fds, nfds_t n, int timeout_ms, size_t fdslen)
{
    if (!green_here() || timeout_ms == 0 || fdslen / sizeof *fds < n)
        return REAL(__poll_chk)(fds, n, timeout_ms, fdslen);
    return g_poll(fds, n, timeout_ms);
}

int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask,
                size_t fdslen)
{
    if (!green_here() || (ts && !ts->tv_sec && !ts->tv_nsec) || bad_timespec(ts) ||
        fdslen / sizeof *fds < n)
        return REAL(__ppoll_chk)(fds, n, ts, mask, fdslen);
    return g_ppoll(fds, n, ts, mask);
}

/* select over poll: the sets become pollfds and back. */
static int green_select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, int64_t timeout_ns)
{
    if (nfds < 0 || nfds > FD_SETSIZE) {
        errno = EINVAL;
        return -1;
    }
    struct pollfd local[64], *p = local;
    unsigned n = 0;
    for (int fd = 0; fd < nfds; fd++) {
        short ev =
            (short)((rd && FD_ISSET(fd, rd) ? POLLIN : 0) | (wr && FD_ISSET(fd, wr) ? POLLOUT : 0) |
                    (ex && FD_ISSET(fd, ex) ? POLLPRI : 0));
        if (!ev) continue;
        if (n == 64 && p == local) {
            if (!(p = malloc(FD_SETSIZE * sizeof *p))) {
                errno = ENOMEM;
                return -1;
            }
            for (unsigned i = 0; i < n; i++)
                p[i] = local[i];
        }
        p[n++] = (struct pollfd){.fd = fd, .events = ev};
    }
    int rc = green_poll(p, n, timeout_ns);
    if (rc > 0) {
        rc = 0;
        for (unsigned i = 0; i < n && rc >= 0; i++)
            if (p[i].revents & POLLNVAL) rc = -1;
        if (rc < 0) errno = EBADF;
    }
    if (rc >= 0) {
        if (rd) FD_ZERO(rd);
        if (wr) FD_ZERO(wr);
        if (ex) FD_ZERO(ex);
        for (unsigned i = 0; i < n; i++) {
            short r = p[i].revents, e = p[i].events;
            /* select(2) reports errors and hang-ups as readable and writable, as Linux does. */
            if ((e & POLLIN) && (r & (POLLIN | POLLHUP | POLLERR))) FD_SET(p[i].fd, rd), rc++;
            if ((e & POLLOUT) && (r & (POLLOUT | POLLERR))) FD_SET(p[i].fd, wr), rc++;
            if ((e & POLLPRI) && (r & POLLPRI)) FD_SET(p[i].fd, ex), rc++;
        }
    }
    if (p != local) free(p);
    return rc;
}

static __attribute__((noinline)) int g_select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex,
                                              struct timeval *tv)
{
    int64_t ns = tv ? (int64_t)tv->tv_sec * NS + (int64_t)tv->tv_usec * 1000 : -1;
    int64_t start = ivy__green_now();
    int rc = green_select(nfds, rd, wr, ex, ns);
    if (tv) { /* Linux leaves the time not slept in *tv */
        int64_t left = ns - (ivy__green_now() - start);
        if (left < 0) left = 0;
        tv->tv_sec = (time_t)(left / NS);
        tv->tv_usec = (suseconds_t)(left % NS / 1000);
    }
    return rc;
}

int select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv)
{
    if (!green_here() || (tv && !tv->tv_sec && !tv->tv_usec) ||
        (tv && (tv->tv_sec < 0 || tv->tv_usec < 0 || tv->tv_usec >= 1000000)))
        return REAL(select)(nfds, rd, wr, ex, tv);
    return g_select(nfds, rd, wr, ex, tv);
}

static __attribute__((noinline)) int g_pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex,
                                               const struct timespec *ts, const sigset_t *mask)
{
    return green_select(nfds, rd, wr, ex, ts ? ts->tv_sec * NS + ts->tv_nsec : -1);
}

int pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *ts,
            const sigset_t *mask)
{
    if (!green_here() || (ts && !ts->tv_sec && !ts->tv_nsec) || bad_timespec(ts))
        return REAL(pselect)(nfds, rd, wr, ex, ts, mask);
    return g_pselect(nfds, rd, wr, ex, ts, mask);
}

/* A green sleep of ns; 0, or the negative errno that cut it short, *left the time not slept. */
static int green_sleep(int64_t ns, int64_t *left)
{
    int64_t start = ivy__green_now();
    int rc = ivy__green_ops->sleep(ns);
    if (left) {
        int64_t l = ns - (ivy__green_now() - start);
        *left = rc < 0 && l > 0 ? l : 0;
    }
    return rc;
}

static __attribute__((noinline)) unsigned int g_sleep(unsigned int seconds)
{
    int64_t left;
    int rc = green_sleep((int64_t)seconds * NS, &left);
    if (rc == 0) return 0;
    errno = -rc;
    return (unsigned)((left + NS - 1) / NS);
}

unsigned int sleep(unsigned int seconds)
{
    if (!green_here() || !seconds) return REAL(sleep)(seconds);
    return g_sleep(seconds);
}

static __attribute__((noinline)) int g_usleep(useconds_t us)
{
    return (int)green_ret(green_sleep((int64_t)us * 1000, NULL));
}

int usleep(useconds_t us)
{
    if (!green_here() || !us) return REAL(usleep)(us);
    return g_usleep(us);
}

static __attribute__((noinline)) int g_nanosleep(const struct timespec *req, struct timespec *rem)
{
    int64_t left;
    int rc = green_sleep(req->tv_sec * NS + req->tv_nsec, &left);
    if (rc == 0) return 0;
    if (rem) *rem = (struct timespec){.tv_sec = (time_t)(left / NS), .tv_nsec = (long)(left % NS)};
    errno = -rc;
    return -1;
}

int nanosleep(const struct timespec *req, struct timespec *rem)
{
    if (!green_here() || !req || bad_timespec(req) || (!req->tv_sec && !req->tv_nsec))
        return REAL(nanosleep)(req, rem);
    return g_nanosleep(req, rem);
}

int clock_nanosleep(clockid_t clk, int flags, const struct timespec *req, struct timespec *rem)
{
    bool known = clk == CLOCK_MONOTONIC || clk == CLOCK_REALTIME || clk == CLOCK_BOOTTIME;
    if (!green_here() || !known || !req || bad_timespec(req))
        return REAL(clock_nanosleep)(clk, flags, req, rem);
    int64_t ns = req->tv_sec * NS + req->tv_nsec;
    if (flags & TIMER_ABSTIME) {
        struct timespec now;
        clock_gettime(clk, &now);
        ns -= now.tv_sec * NS + now.tv_nsec;
        if (ns <= 0) return 0;
        rem = NULL; /* an absolute sleep has nothing to report */
    } else if (!ns) {
        return 0;
    }
    int64_t left;
    int rc = green_sleep(ns, &left);
    if (rc < 0 && rem)
        *rem = (struct timespec){.tv_sec = (time_t)(left / NS), .tv_nsec = (long)(left % NS)};
    return -rc; /* clock_nanosleep returns its error rather than setting errno */
}
