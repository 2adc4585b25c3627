/*
 * `ivy load` internals shared by apps/load_*.c and tests/test_load.c: the HTTP response
 * framer (load_resp.c), the plan every worker runs (built once by load_run.c before forking)
 * and the worker itself (load_worker.c).
 */
#ifndef IVY_APPS_LOAD_IMPL_H
#define IVY_APPS_LOAD_IMPL_H

#include "load.h"

#include <stdatomic.h>

/* ---- HTTP/1.x response framing (load_resp.c) -------------------------------------------- */

/* A response head must fit in this many bytes; it is also each connection's receive buffer. */
#define IVY_LOAD_BUF 16384

enum ivy_load_resp_state {
    IVY_RESP_HEAD,
    IVY_RESP_BODY,       /* Content-Length bytes left in remaining */
    IVY_RESP_CHUNK_SIZE, /* before a chunk-size line */
    IVY_RESP_CHUNK_DATA, /* remaining bytes of the chunk */
    IVY_RESP_CHUNK_END,  /* the CRLF after a chunk's data */
    IVY_RESP_TRAILER,    /* trailer lines up to the empty one */
    IVY_RESP_UNTIL_EOF,  /* no framing: the body ends when the connection does */
};

/*
 * The framer only finds where each response ends, its status and whether the server will
 * close: bodies are skipped, never copied, so any body size streams through a small buffer.
 */
struct ivy_load_resp {
    uint64_t remaining;
    int status; /* of the last head parsed */
    bool close; /* the server closes after this response (Connection: close, HTTP/1.0) */
    uint8_t state;
};

void ivy_load_resp_init(struct ivy_load_resp *r);

/*
 * Frames buf[0, len), the unconsumed input. Sets *used to the bytes consumed and returns 1
 * when a response ended there (r->status, r->close describe it; the next one starts at
 * buf + *used), 0 when more input is needed (keep buf[*used, len) and append to it: a partial
 * head or chunk line is re-read whole), or -EBADMSG (not an HTTP/1.x response, or malformed),
 * -EMSGSIZE (head above IVY_LOAD_BUF bytes). Interim 1xx responses are skipped.
 */
int ivy_load_resp_parse(struct ivy_load_resp *r, const char *buf, size_t len, size_t *used);

/* The connection ended: true when that completes a close-delimited response. */
bool ivy_load_resp_eof(struct ivy_load_resp *r);

/* ---- the plan and the worker (load_worker.c) ------------------------------------------- */

#define IVY_LOAD_MAX_WORKERS 4096

/* Rate samples kept per worker for the Req/Sec line: 100 ms each, 10 minutes. */
#define IVY_LOAD_SAMPLES 6000

/* Read-only after ivy_load_run builds it; the workers inherit it through fork. */
struct ivy_load_plan {
    struct ivy_load_opts o;
    char addr[64];    /* host resolved to a numeric address: no lookup per connect */
    char *msg;        /* the bytes one batch sends: pipeline requests, or echo messages */
    size_t msg_len;   /* pipeline x one request */
    unsigned workers; /* after defaults */
    int *cpus;        /* workers[i] runs on cpus[i % ncpus] */
    unsigned ncpus;
    uint64_t t0, deadline;   /* ivy_now_ns() instants shared by every worker */
    struct ivy_tls_ctx *tls; /* https: the client context, made before the fork */
};

/* Published by each worker every 100 ms for the parent's progress line; a line apiece. */
struct ivy_load_progress {
    _Atomic uint64_t requests, errors;
    char pad[48];
};

/* What a worker sends back through its pipe when it is done. */
struct ivy_load_report {
    uint32_t magic;
    uint32_t nsamples;
    struct ivy_load_result r;
    float samples[IVY_LOAD_SAMPLES]; /* requests/s over each 100 ms interval */
};
#define IVY_LOAD_REPORT_MAGIC 0x1a7d10adu

/*
 * The body of worker `index`, in the forked child: pins, runs its share of the connections
 * until the deadline or a stop signal, fills *rep. Returns 0 or a negative errno (hub set-up).
 */
int ivy__load_worker(const struct ivy_load_plan *p, unsigned index,
                     struct ivy_load_progress *progress, struct ivy_load_report *rep);

/* host's first address, numeric, into out; -ENOENT when it does not resolve (load_run.c). */
int ivy__load_resolve(const char *host, char *out, size_t n);

/* The TLS client context opts ask for: 0 and *out, or a negative errno and msg (load_run.c). */
int ivy__load_tls_ctx(const struct ivy_load_opts *o, struct ivy_tls_ctx **out, char *msg,
                      size_t msglen);

/* The number of workers opts ask for, after defaults (load_run.c). */
unsigned ivy__load_workers(const struct ivy_load_opts *o);

/* Set by SIGINT/SIGTERM in a worker (and by ivy_load_main's handler in the parent): stop now. */
extern volatile int ivy__load_stop;

#endif
