/* ivy: greenlets, green threads on io_uring, and a multicore cluster. The whole public API. */
#ifndef IVY_H
#define IVY_H

#include "ivy/cluster.h"
#include "ivy/green.h"
#include "ivy/greenlet.h"
#include "ivy/http.h"
#include "ivy/hub.h"
#include "ivy/offload.h"
#include "ivy/poll.h"
#include "ivy/socket.h"
#include "ivy/sync.h"
#include "ivy/tls.h"
#include "ivy/version.h"

#endif
