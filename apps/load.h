/*
 * `ivy load`: a multicore HTTP/1.1 and echo load generator on the ivy runtime.
 *
 * ivy_load_run is the whole generator, callable in-process: it forks `workers` processes, each
 * pinned to one CPU of the caller's affinity mask and running one hub with one green thread per
 * connection, and merges what they send back over a pipe (counts and an HDR histogram) into
 * *out. Nothing of the caller's state is touched besides forking and waiting for its children;
 * the caller must not hold a running hub (a hub it created but is not running is discarded in
 * the children).
 *
 * Two modes of pacing:
 * - closed loop (rate 0), as wrk: each connection sends `pipeline` requests, waits for their
 *   responses and sends again; latency runs from the send to each response.
 * - constant rate (rate > 0), as wrk2: request k of connection i is due at
 *   t0 + (i + k * connections) / rate, so together the connections send every 1/rate seconds;
 *   latency runs from when the request was due, not from when it went out, so a stalled server
 *   is charged for the requests it kept the generator from sending (coordinated omission).
 *
 * The run lasts `duration` seconds from one start instant shared by every worker. At the end the
 * workers stop sending and kill their connection threads, cutting requests still in flight:
 * those are neither counted as done nor as errors (at most connections x pipeline of them).
 * Every failure is counted under one kind (below); a connection that fails is closed and opened
 * again, after a back-off when it was the connect that failed.
 */
#ifndef IVY_APPS_LOAD_H
#define IVY_APPS_LOAD_H

#include "histogram.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ivy_load_opts {
    const char *host;     /* name or numeric address (IPv6 without brackets) */
    int port;             /* 1..65535 */
    const char *path;     /* HTTP request target; NULL: "/" */
    const char *host_hdr; /* Host header value; NULL: host:port; "": none (in headers) */
    const char *headers;  /* extra header lines, each ending in "\r\n"; NULL: none */
    unsigned connections; /* over all workers, >= 1 */
    double duration;      /* seconds, > 0 */
    double rate;          /* requests/s over all connections; 0: closed loop */
    unsigned workers;     /* processes; 0: CPUs in the affinity mask; never > connections */
    unsigned pipeline;    /* requests in flight per connection (closed loop only); 0: 1 */
    size_t echo_size;     /* > 0: raw echo, messages of this many bytes; 0: HTTP GET */
    double timeout;       /* seconds a request may take before it counts as timed out; 0: 2 */
    bool progress;        /* a live progress line on stderr while running */
    /* https: TLS on every connection, with ivy's client (include/ivy/tls.h). */
    bool tls;
    bool insecure;       /* TLS: verify neither the certificate nor the name */
    bool no_resume;      /* TLS: a full handshake on every connection, no session offered */
    const char *ca_file; /* TLS: trust anchors (PEM); NULL: the system's */
};

/* What can go wrong with a request, each counted apart. */
enum ivy_load_error {
    IVY_LOAD_ERR_CONNECT, /* connect failed (refused, unreachable, timed out, out of fds) */
    IVY_LOAD_ERR_READ,    /* receive failed or the peer closed before the response ended */
    IVY_LOAD_ERR_WRITE,   /* send failed */
    IVY_LOAD_ERR_TIMEOUT, /* no complete response within the timeout: one per request */
    IVY_LOAD_ERR_STATUS,  /* a complete HTTP response with status >= 400 (still counted done) */
    IVY_LOAD_ERR_PARSE,   /* not HTTP/1.x, malformed, or (echo) bytes that differ from sent */
    IVY_LOAD_ERR_TLS,     /* the TLS handshake failed (certificate refused, protocol error) */
    IVY_LOAD_NERR,
};

struct ivy_load_result {
    uint64_t requests;      /* responses completed within the duration */
    uint64_t sent;          /* requests written */
    uint64_t bytes_read;    /* every byte received, heads included */
    uint64_t bytes_written; /* every byte sent */
    uint64_t connects;      /* connections established */
    uint64_t handshakes;    /* TLS handshakes completed ... */
    uint64_t resumed;       /* ... of which resumed a session */
    char tls_error[128];    /* the first handshake failure, in OpenSSL's words */
    uint64_t errors[IVY_LOAD_NERR];
    /* The first failure of each kind, to explain the counts: a negative errno, or for
     * IVY_LOAD_ERR_STATUS the first status >= 400. 0 when none. */
    int first_error[IVY_LOAD_NERR];
    uint64_t status_class[6]; /* HTTP responses by status / 100: [2] is 2xx; [0] unused */
    double elapsed;           /* seconds the load ran (duration, less if interrupted) */
    unsigned workers, connections, workers_failed;
    /* Requests/s of each worker over 100 ms intervals, as wrk's per-thread Req/Sec. */
    double rps_mean, rps_stdev, rps_max, rps_within_stdev; /* the last in percent */
    ivy_hist latency; /* ns from send (closed loop) or due time (rate) to the response */
};

/*
 * Runs the load described by opts and fills *out. Returns 0 when it ran, even if every
 * request failed (read out->errors), or a negative errno before starting: -EINVAL for bad
 * options, -ENOENT when host does not resolve, or a fork/pipe/mmap failure.
 */
int ivy_load_run(const struct ivy_load_opts *opts, struct ivy_load_result *out);

/* Responses that succeeded: done with a status < 400 (every completed echo). */
uint64_t ivy_load_succeeded(const struct ivy_load_result *r);

/*
 * The report, as wrk's: the header ("Running 10s test @ ...") before the run, the rest after
 * it; or, with json, one JSON object after the run and no header. target is shown as given.
 */
void ivy_load_print_header(const struct ivy_load_opts *o, const char *target);
void ivy_load_print(const struct ivy_load_opts *o, const struct ivy_load_result *r,
                    const char *target, bool json);

/*
 * `ivy load HOST:PORT[/path] -c CONNS -d SECONDS [-R RATE] [--workers N] [--pipeline N]
 * [--echo SIZE] [--timeout S] [--json]`, or https://HOST[:PORT][/path] with [--insecure]
 * [--cacert FILE] [--no-resume]; argv[0] is "load". Returns the exit status: 0 when
 * some request succeeded, 1 when none did (or a worker died), 2 for a usage error.
 */
int ivy_load_main(int argc, char **argv);

#endif
