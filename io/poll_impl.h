/* Readiness internals (io/poll.c), for green libc's operations (io/green_ops.c). */
#ifndef IVY_POLL_IMPL_H
#define IVY_POLL_IMPL_H

#include "hub_impl.h"
#include "ivy/poll.h"

#include <stdint.h>

/* ivy_poll with a timeout in nanoseconds (< 0: none) and no timeout-0 shortcut. */
int ivy__poll_ns(struct pollfd *fds, unsigned n, int64_t timeout_ns);

#endif
