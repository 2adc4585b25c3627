/*
 * Internal to the http app: the connection record that http_app.c (the connection loop,
 * receives and timeouts, parsing, responses) and http_conn.c (its buffers) share.
 */
#ifndef IVY_APPS_HTTP_CONN_H
#define IVY_APPS_HTTP_CONN_H

#include "http_app.h"
#include "http_parse.h"

#include "ivy/cluster.h"
#include "ivy/socket.h"

#include <stdbool.h>
#include <stdint.h>

enum {
    IVY_HTTP_IN_SIZE = 16384,  /* pooled input buffer: a receive, or a head up to the limit */
    IVY_HTTP_OUT_SIZE = 16384, /* pooled output buffer: a batch of responses */
};

enum http_route { R_HELLO, R_ECHO, R_SLEEP, R_STATS, R_SPIN, R_NOT_FOUND, R_NOT_ALLOWED };

/* A request whose head is parsed and whose body is still arriving at in[off...). */
struct http_pending {
    bool active, chunked, keep_alive, head_only, expect, continued;
    enum http_route route;
    int version_minor;
    uint64_t ms;    /* /sleep or /spin argument */
    uint64_t need;  /* Content-Length */
    size_t decoded; /* chunked: body bytes decoded so far, at in[off, off + decoded) */
};

struct http_conn {
    struct ivy_conn reg;
    int fd;
    bool test_routes;
    bool draining;  /* the worker's, read once per batch: it can change only while we wait */
    ivy_reader *rd; /* for cold waits; created on the first */
    bool rd_more;   /* the reader may hold bytes not yet taken */
    char *in;
    size_t cap, off, len;
    char *out;
    size_t out_len, out_cap;
    unsigned nreq; /* answered since the last ivy_worker_count */
    uint64_t bytes_in, bytes_out;
    uint64_t head_since;        /* ivy_now_ns() of the first wait for the head's rest; 0: none */
    bool send_waits;            /* the last send waited for room: scope sends from the first byte */
    struct http_pending p;      /* rewritten per request: small, so that costs a few stores */
    struct ivy_http_chunked ch; /* set up only for a chunked body */
};

void ivy__http_conn_setup(void); /* once per worker thread, before its first connection */

/*
 * Cold: a connection idle with nothing buffered waits through its reader (created on the first
 * such wait), whose receive takes a ring buffer only once bytes arrive (handing them over in
 * the worker's landing buffer); only then does it take an input buffer, holding what arrived
 * at in[0, n). Returns n, 0 at end of stream, or a negative error: -ETIMEDOUT once seconds
 * have passed (0: no limit).
 */
ssize_t ivy__http_fill_cold(struct http_conn *c, double seconds);

/* A hot connection gone quiet: gives its input and output buffers (and their pages) back. */
void ivy__http_go_cold(struct http_conn *c);

/* in is full: doubles it (a pooled buffer is copied out and returned). 0 or -ENOMEM. */
int ivy__http_grow_in(struct http_conn *c);

char *ivy__http_out_get(void); /* a pooled IVY_HTTP_OUT_SIZE output buffer, or NULL */

/* Gives back every buffer the connection holds, and frees its reader. */
void ivy__http_conn_release(struct http_conn *c);

/*
 * Sends buf[0, len) whole: len, or a negative error; -ETIMEDOUT once timeout seconds (0: no
 * limit) pass with no byte taken by the kernel, the clock restarting with each partial send.
 * Hot, a send arms no timer: the first ivy_send goes without one, and only what it leaves waits
 * under a scope. After a send that had to wait (send_waits), sends are scoped from their first
 * byte until one is taken whole at once. The corner left: a send taken whole that leaves the
 * socket with no room at all (the kernel fills its last segment before it checks its limit)
 * makes the next one wait unscoped; closing it needs a ring send that answers -EAGAIN rather
 * than waiting (io/).
 */
ssize_t ivy__http_send(struct http_conn *c, const char *buf, size_t len, double timeout);

/* After the last response: stops sending and reads what the peer still sends until it closes
 * (at most a second and 1 MiB), so that closing does not reset the connection before the peer
 * has read the response. */
void ivy__http_linger(int fd);

uint64_t ivy__http_buffers_held(void); /* input and output buffers held by this worker's conns */

#endif
