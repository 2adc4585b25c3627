/* Green socket internals shared by io/socket.c, io/accept.c and io/reader.c. */
#ifndef IVY_SOCKET_IMPL_H
#define IVY_SOCKET_IMPL_H

#include "hub_impl.h"
#include "ivy/socket.h"

/*
 * The first half of every request: checks that the caller may block, then takes an SQE.
 * Nothing is taken when it fails, so the caller just returns the error.
 */
int ivy__op_begin(struct ivy_hub **h, ivy_thread **t, struct io_uring_sqe **sqe);

/* ivy_close's hook: drops the accept state of a listening descriptor. */
void ivy__accept_forget(int fd);

#endif
