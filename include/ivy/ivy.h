/* ivy: greenlets, green threads on io_uring, and a multicore cluster. The whole public API. */
#ifndef IVY_H
#define IVY_H

#include "ivy/greenlet.h"
#include "ivy/hub.h"
#include "ivy/offload.h"
#include "ivy/sync.h"
#include "ivy/socket.h"
#include "ivy/version.h"

#endif
