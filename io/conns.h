/*
 * The connection registry of a service (io/conns.c): the connections a thread's servers hold,
 * so that a draining worker can close the idle ones between requests, and the counters the
 * cluster publishes (requests, bytes, connections). The HTTP server (http/) and the TCP helper
 * (ivy_tcp_serve) register every connection they run; cluster/ drains and reads them. Nothing
 * here is shared between OS threads: one registry per thread, like the hub.
 */
#ifndef IVY_IO_CONNS_H
#define IVY_IO_CONNS_H

#include "hub_impl.h"
#include "ivy/hub.h"

#include <stdbool.h>
#include <stdint.h>

struct ivy__conn {
    ivy_thread *thread; /* NULL while the connection waits with no thread of its own */
    void (*wake)(struct ivy__conn *c, int err); /* then: how to end that wait */
    struct ivy__conn *prev, *next;
    const void *owner; /* the server it belongs to (for that server's own sweeps) */
    int fd;    /* >= 0: idle whenever its thread waits to receive on fd with nothing queued */
    bool idle; /* waiting for the next request with nothing half-read */
    uint64_t idle_since;
};

struct ivy__conns {
    struct ivy__conn *head;
    bool draining; /* stop keeping connections alive: answer with Connection: close */
    uint64_t open, total, requests, bytes_in, bytes_out;
};
extern __thread struct ivy__conns ivy__conns;

/* Registers c, run by the calling thread. fd: see struct ivy__conn; -1 to mark idleness by hand. */
void ivy__conn_open(struct ivy__conn *c, int fd);
void ivy__conn_close(struct ivy__conn *c);

static inline void ivy__conn_set_idle(struct ivy__conn *c, bool idle)
{
    if (idle && !c->idle) c->idle_since = ivy__slice_clock();
    c->idle = idle;
}

static inline void ivy__conns_count(uint64_t requests, uint64_t bytes_in, uint64_t bytes_out)
{
    ivy__conns.requests += requests;
    ivy__conns.bytes_in += bytes_in;
    ivy__conns.bytes_out += bytes_out;
}

/* Draining: wakes every connection idle for longer than grace_ns (its wait fails -ESHUTDOWN). */
void ivy__conns_close_idle(uint64_t grace_ns);

/*
 * What a server (ivy_http_serve, ivy_tcp_serve) shares with its connection threads, on the heap:
 * the server holds one reference and each connection one. Once accepting stops, the server waits
 * for the others to go (ivy__serving_wait); killed meanwhile, it leaves the last connection to
 * free it. ivy__serving_drop returns true to the one that must free it.
 */
struct ivy__serving {
    unsigned refs;
    struct ivy_event *done;
};
bool ivy__serving_drop(struct ivy__serving *s);
void ivy__serving_wait(struct ivy__serving *s);

/* Whether fd's receive has a thread waiting and nothing queued (io/recv.c). */
bool ivy__recv_idle(int fd);

/*
 * A wait with no green thread (io/recv.c): calls cb(arg) from the hub, once, when fd has bytes
 * queued or its end; cb must not block (it may spawn a thread to receive them). Returns 0 once
 * armed, 1 when bytes or the end are there already (cb is not called), -EBUSY if another is
 * armed, -EBADF, -ENOMEM. ivy__recv_unnotify, and closing fd, drop it uncalled.
 */
int ivy__recv_notify(int fd, void (*cb)(void *arg), void *arg);
void ivy__recv_unnotify(int fd);

#endif
