/*
 * The offload pool, eventlet's tpool: a few OS threads per hub that run calls which must block
 * (getaddrinfo, a library without a non-blocking interface) while the hub goes on running
 * every other green thread. The calling green thread just blocks, as in any ivy call.
 *
 * Each hub (one per OS thread) has its own pool. Its threads start on first use, up to the
 * size set by ivy_offload_set_threads, and stop at ivy_offload_shutdown. While jobs run, the
 * hub counts them as pending work: ivy_run neither reports a deadlock nor returns before they
 * finish, even a job whose caller has left.
 *
 * Interruptions: a caller that is killed returns -ECANCELED at once, one whose ivy_timeout
 * scope expires -ETIMEDOUT. The job cannot be stopped: fn runs to completion on its pool
 * thread and its result is dropped. So fn and arg must stay valid until fn returns, whatever
 * happens to the caller (arg must not point into the caller's stack if it can be interrupted);
 * ivy_offload_owned hands arg over to the pool for exactly that case.
 *
 * A forked child must not use a pool its parent started (its threads did not survive the
 * fork): call ivy_offload_shutdown before forking, or offload only after.
 */
#ifndef IVY_OFFLOAD_H
#define IVY_OFFLOAD_H

#include "ivy/hub.h"

#include <netdb.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IVY_OFFLOAD_MAX_THREADS 256

/*
 * How many threads each hub's pool may start (default 4, at most IVY_OFFLOAD_MAX_THREADS), for
 * every hub of the process. Threads already running stay; call it before the first offload to
 * size pools exactly. Returns 0 or -EINVAL.
 */
int ivy_offload_set_threads(unsigned n);

/*
 * Runs fn(arg) on a pool thread and suspends the calling green thread until it returns:
 * 0 and fn's value in *result (result may be NULL). Errors: -EINVAL (fn NULL), -EPERM outside
 * a green thread, -ECANCELED (killed), -ETIMEDOUT (deadline), -ENOMEM, or the error of
 * creating the pool's eventfd or first thread. fn runs in another OS thread: it must not call
 * ivy functions of this hub.
 */
int ivy_offload(ivy_fn fn, void *arg, void **result);

/*
 * As ivy_offload, for a call whose arg or result holds resources. On success the caller keeps
 * arg and the result, and release is not called. On any error the pool owns arg: release(arg,
 * NULL) has run already if fn never started, else release(arg, fn's value) runs once fn
 * returns. release runs in the hub, not in a green thread: it must not block.
 */
int ivy_offload_owned(ivy_fn fn, void *arg, void **result,
                      void (*release)(void *arg, void *result));

/*
 * Stops this hub's pool: waits for jobs still running whose callers left (fn cannot be
 * interrupted), joins the threads, closes the eventfd. The next offload starts a new pool.
 * Call it outside ivy_run, before ivy_hub_free. Returns 0; -EBUSY inside ivy_run or while a
 * green thread waits on a job.
 */
int ivy_offload_shutdown(void);

/*
 * getaddrinfo(3) run in the pool: 0 and *res (free it with freeaddrinfo), or a negative
 * error. Besides ivy_offload's errors, the EAI_* codes map to errno values:
 *   EAI_NONAME, EAI_SERVICE           -ENOENT      unknown host or service name
 *   EAI_NODATA, EAI_ADDRFAMILY        -ENODATA     the name exists but has no such address
 *   EAI_AGAIN                         -EAGAIN      temporary resolver failure: retry later
 *   EAI_FAIL                          -EIO         the resolver failed for good
 *   EAI_MEMORY                        -ENOMEM
 *   EAI_FAMILY                        -EAFNOSUPPORT
 *   EAI_SOCKTYPE                      -ESOCKTNOSUPPORT
 *   EAI_BADFLAGS                      -EINVAL      as are res NULL, or host and service NULL
 *   EAI_OVERFLOW                      -EOVERFLOW
 *   EAI_SYSTEM                        -errno       of the resolver's failed system call
 *   anything else                     -EIO
 * host, service and hints are copied: they need to live only until the call returns.
 */
int ivy_getaddrinfo(const char *host, const char *service, const struct addrinfo *hints,
                    struct addrinfo **res);

#ifdef __cplusplus
}
#endif
#endif
