/*
 * Green libc, eventlet's monkey-patching: unmodified blocking C code (a database driver, an
 * HTTP or cache client) run in green threads suspends only its own green thread.
 *
 * Two forms, the same interposers:
 *   - LD_PRELOAD=libivy_green.so ./program      a whole program and every library it loads;
 *   - linking the CMake target ivy_green_link   a program that links ivy itself.
 * Either way the hub finds green libc when it starts (ivy_green_enabled says whether it did).
 *
 * Greened, when and only when called on a green thread of a running hub:
 *   connect, accept, accept4, read, readv, write, writev, recv, recvfrom, recvmsg, send, sendto,
 *   sendmsg, poll, ppoll, select, pselect, sleep, usleep, nanosleep, clock_nanosleep,
 *   getaddrinfo, gethostbyname, gethostbyname_r (the last three run libc's resolver in the
 *   offload pool, include/ivy/offload.h), and the fortified __read_chk, __recv_chk,
 *   __recvfrom_chk, __poll_chk and __ppoll_chk that _FORTIFY_SOURCE builds call instead.
 * Anywhere else (no hub, the hub's main greenlet, another OS thread, an offload worker) every
 * call is libc's, at the cost of one thread-local load (bench/green_passthrough.c).
 *
 * Semantics are libc's, as the program sees them: -1 and errno (clock_nanosleep and
 * gethostbyname_r return the error, getaddrinfo EAI_SYSTEM with errno).
 *   - A descriptor the program made non-blocking (fcntl O_NONBLOCK, SOCK_NONBLOCK, ioctl
 *     FIONBIO, MSG_DONTWAIT) gets EAGAIN as before. Green calls read these settings from the
 *     kernel when they are about to wait, so fcntl, ioctl and setsockopt need no interposer.
 *   - SO_RCVTIMEO / SO_SNDTIMEO still expire: EAGAIN (connect: EINPROGRESS), as on Linux.
 *   - Blocking sends send everything (or return what went out before an error or a timeout).
 *   - close(2) drops the state ivy's own receive (ivy_recv) may hold on the descriptor.
 * Interruptions: a green thread killed (ivy_kill) sees errno ECANCELED, one whose ivy_timeout
 * scope expires ETIMEDOUT, in the call that was waiting and every later one that would wait.
 * Never EINTR: libraries retry on EINTR, and the thread would never leave. A call that finds
 * its data or room at once still succeeds. ppoll's and pselect's signal masks are not applied
 * on green threads (they share their OS thread's mask).
 *
 * What cannot be interposed is listed in the README ("Green libc"): calls libc makes to
 * itself, direct system calls, statically linked programs, and calls not listed above.
 */
#ifndef IVY_GREEN_H
#define IVY_GREEN_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Whether green libc is in this process (preloaded or linked) and greens green threads' calls. */
bool ivy_green_enabled(void);

#ifdef __cplusplus
}
#endif
#endif
