/*
 * Green libc internals shared by its files: the per-thread binding to a hub, the operations,
 * and libc's own functions (dlsym(RTLD_NEXT)) that every call falls through to.
 */
#ifndef IVY_GREEN_IMPL_H
#define IVY_GREEN_IMPL_H

#include "green_abi.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#define GREEN_HIDDEN      __attribute__((visibility("hidden")))
#define GREEN_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* &hub->current of this thread's hub, NULL without one. initial-exec: a %fs-relative load. */
extern __thread void *const *ivy__green_cur GREEN_HIDDEN __attribute__((tls_model("initial-exec")));
extern const struct ivy__green_ops *ivy__green_ops GREEN_HIDDEN;

/*
 * The whole fast path: a thread-local load, and only on a thread that has a hub a second load
 * through it; everywhere else every call goes straight to libc.
 */
static inline bool green_here(void)
{
    void *const *cur = ivy__green_cur;
    return GREEN_UNLIKELY(cur != NULL) && *cur != NULL;
}

/* libc's function of that name, looked up once (lazily: a constructor may call us first). */
void *ivy__green_next(const char *name) GREEN_HIDDEN;
#define GREEN_REAL(name)                                                                           \
    static __typeof__(name) *real_##name;                                                          \
    static inline __typeof__(name) *next_##name(void)                                              \
    {                                                                                              \
        __typeof__(name) *f = __atomic_load_n(&real_##name, __ATOMIC_RELAXED);                     \
        if (GREEN_UNLIKELY(!f)) {                                                                  \
            f = (__typeof__(name) *)ivy__green_next(#name);                                        \
            __atomic_store_n(&real_##name, f, __ATOMIC_RELAXED);                                   \
        }                                                                                          \
        return f;                                                                                  \
    }
#define REAL(name) (next_##name())

/* -1 with errno for an operation's negative result; the result otherwise. */
static inline long green_ret(long rc)
{
    if (rc >= 0) return rc;
    errno = (int)-rc;
    return -1;
}

/* Whether the program made fd non-blocking (O_NONBLOCK by fcntl, SOCK_NONBLOCK, FIONBIO). */
bool ivy__green_nonblocking(int fd) GREEN_HIDDEN;
/* The socket's SO_RCVTIMEO or SO_SNDTIMEO as a deadline on the monotonic clock; -1: none. */
int64_t ivy__green_deadline(int fd, int opt) GREEN_HIDDEN;
int64_t ivy__green_now(void) GREEN_HIDDEN;

#endif
