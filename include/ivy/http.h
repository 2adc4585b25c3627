/*
 * The HTTP/1.1 server, as a library: eventlet's wsgi.server, Go's net/http.
 *
 * ivy_http_serve() runs in a green thread on a listening socket and owns every connection's
 * life: keep-alive and pipelining, the strict parser and its limits (8 KiB of head, 100 headers;
 * 400/408/413/431/501/505), the keep-alive, request and send timeouts, the lingering close, the
 * drain of a cluster worker (Connection: close, idle connections closed), and the stats. For each
 * request it calls the handler, in the connection's own green thread, so a handler may block:
 * ivy_sleep, sockets, offload, the sync primitives.
 *
 *     static int hello(ivy_http_req *r, void *arg)
 *     {
 *         return ivy_http_respond(r, 200, "text/plain", "hi\n", 3);
 *     }
 *     ...  ivy_http_serve(ivy_listen("127.0.0.1", 8080, 128, 0),
 *                         &(struct ivy_http_options){.handler = hello});
 *
 * A handler answers exactly once: ivy_http_respond (a whole body), ivy_http_start then
 * ivy_http_write (a streamed body: chunked, or of a declared length), or ivy_http_sendfile (a
 * file region, spliced by the ring). The server writes Server, Date, Content-Length or
 * Transfer-Encoding, and Connection; it sends no body for HEAD. A handler returns 0, or a
 * negative errno: before anything was sent that is answered with its status (-EFBIG 413,
 * -EBADMSG 400, -ETIMEDOUT 408, -EMSGSIZE 431, anything else 500); after, the connection is
 * closed, since its framing is broken (a chunked body is left without its last chunk). A handler
 * that returns 0 without answering sends 200 with an empty body.
 *
 * Responses to requests that arrived together (pipelined) leave together, in one send, once
 * the last of them is answered; call ivy_http_flush before blocking for long, so that the
 * earlier answers do not wait for it.
 *
 * Everything a handler gets from a request (slices, the body) stays valid until the handler
 * returns, and not after. Strings are slices, not NUL-terminated.
 *
 * The number 0 in every ivy option struct means "the default", as an option left out of the
 * command line does; a negative number turns a limit off (on the command line: "off").
 */
#ifndef IVY_HTTP_H
#define IVY_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "ivy/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A run of bytes inside the request; p is NULL for an absent one. */
struct ivy_http_slice {
    const char *p;
    size_t len;
};

enum ivy_http_method {
    IVY_HTTP_OTHER = 0, /* any other token; methods are case-sensitive */
    IVY_HTTP_GET,
    IVY_HTTP_HEAD,
    IVY_HTTP_POST,
    IVY_HTTP_PUT,
    IVY_HTTP_DELETE,
    IVY_HTTP_OPTIONS,
    IVY_HTTP_PATCH,
};

/* One request and its response, alive while the handler runs. */
typedef struct ivy_http_req ivy_http_req;
typedef int (*ivy_http_handler)(ivy_http_req *r, void *arg);

/* `ivy serve`'s defaults, nginx's: keepalive_timeout 75 s, client_header/body_timeout 60 s,
 * send_timeout 60 s, client_max_body_size 1 MiB. */
#define IVY_HTTP_KEEPALIVE_TIMEOUT 75.0
#define IVY_HTTP_REQUEST_TIMEOUT   60.0
#define IVY_HTTP_SEND_TIMEOUT      60.0
#define IVY_HTTP_BODY_LIMIT        (1 << 20)

struct ivy_http_options {
    ivy_http_handler handler; /* required */
    void *arg;                /* handed to every call of handler */
    /* Seconds; 0: the default above; < 0: never. */
    double keepalive_timeout; /* a connection waiting for a request with nothing of it received
                                 is closed, without a response, after this long */
    double request_timeout;   /* a request's head must be complete this long after its first
                                 byte was waited for, and each receive of its body must come
                                 within this long of the last; else 408 and close */
    double send_timeout;      /* a response the client does not read is abandoned (the
                                 connection closed) once this long passes with no byte taken */
    size_t body_limit;        /* largest request body in bytes: 0: 1 MiB; larger is 413 */
    const char *headers;      /* added to every response: "Name: value\r\n" lines, or NULL */
    /* TLS on every connection (include/ivy/tls.h), or NULL for plain TCP. The handshake must
       finish within request_timeout; responses are encrypted, sendfile's file read through. */
    ivy_tls_ctx *tls;
};

/*
 * Serves HTTP on listen_fd in the calling green thread until accepting stops (ivy_accept_stop:
 * a draining cluster worker does it); then closes listen_fd, as Go's Serve does, waits for every
 * connection it took to end, and returns 0 (so what opts points to, the handler's arg included,
 * need live only until then). -EINVAL without a handler (listen_fd is left open), or accept's
 * error.
 */
int ivy_http_serve(int listen_fd, const struct ivy_http_options *opts);

/* ---- the request ---------------------------------------------------------------------------- */

enum ivy_http_method ivy_http_method(const ivy_http_req *r);
struct ivy_http_slice ivy_http_method_name(const ivy_http_req *r); /* "GET", "PROPFIND" */
struct ivy_http_slice ivy_http_target(const ivy_http_req *r);      /* as sent: "/a%20b?x=1" */
struct ivy_http_slice ivy_http_path(const ivy_http_req *r);        /* "/a%20b", still encoded */
struct ivy_http_slice ivy_http_query(const ivy_http_req *r);       /* "x=1"; p NULL without '?' */
int ivy_http_version(const ivy_http_req *r);                       /* 10 or 11 */

/*
 * The query parameter name (the first one), decoded (%XX, '+' as space) into buf and
 * NUL-terminated: its length, -ENOENT when absent, -ENOSPC when buf is too small (cap must
 * hold the NUL too), -EBADMSG for a malformed escape.
 */
ssize_t ivy_http_query_param(const ivy_http_req *r, const char *name, char *buf, size_t cap);
/* Decodes %XX escapes (and '+' as space when plus) of s into buf, as ivy_http_query_param. */
ssize_t ivy_http_unescape(struct ivy_http_slice s, bool plus, char *buf, size_t cap);

/* The first header of that name (case-insensitive), value trimmed; NULL when absent. */
const struct ivy_http_slice *ivy_http_header(const ivy_http_req *r, const char *name);
/* Headers in the order they came: 0 and name/value for i < count, -ENOENT past the end. */
unsigned ivy_http_header_count(const ivy_http_req *r);
int ivy_http_header_at(const ivy_http_req *r, unsigned i, struct ivy_http_slice *name,
                       struct ivy_http_slice *value);

/* The client's address (a system call on the first use per connection); 0 or -errno. */
int ivy_http_peer(ivy_http_req *r, struct sockaddr_storage *addr, socklen_t *len);

/* A path parameter the router matched, "{id}" or "{rest...}" (still %-encoded); p NULL if none. */
struct ivy_http_slice ivy_http_param(const ivy_http_req *r, const char *name);

/*
 * The body. Content-Length or chunked (decoded as it arrives); "Expect: 100-continue" is
 * answered by the first read, never before, so a handler that refuses a request without reading
 * its body never invites it (the connection then closes after the response).
 *   ivy_http_read: up to len bytes as they arrive, 0 at the end of the body.
 *   ivy_http_body: the whole body (up to body_limit: -EFBIG past it), *body valid until the
 *                  handler returns; its length.
 * Both: -EBADMSG for a malformed chunked body, -EMSGSIZE for its trailers above 8 KiB,
 * -EFBIG for a chunked body past body_limit, -ETIMEDOUT when it stalls past request_timeout,
 * -ENODATA when the client closes before its end. Returning that error answers the request
 * with the matching status.
 */
int64_t ivy_http_content_length(const ivy_http_req *r); /* -1: chunked or none declared */
ssize_t ivy_http_read(ivy_http_req *r, void *buf, size_t len);
ssize_t ivy_http_body(ivy_http_req *r, const char **body);

/* ---- the response --------------------------------------------------------------------------- */

/*
 * Adds a response header, before the response starts (-EALREADY after). name and value are
 * copied; CR, LF or NUL in either is -EINVAL, as are the headers the server writes itself
 * (Content-Length, Transfer-Encoding, Date, Server) and Connection with any value but "close":
 * "Connection: close" is honoured, the connection closes after this response. -E2BIG past
 * 8 KiB of added headers.
 */
int ivy_http_add_header(ivy_http_req *r, const char *name, const char *value);

/* The whole response: status (100..999, not 1xx), content type (or NULL), body. 0 or -errno;
 * -EALREADY if a response was started, -EINVAL for a bad status or a CR or LF in the content
 * type (as in ivy_http_start and ivy_http_sendfile). */
int ivy_http_respond(ivy_http_req *r, int status, const char *content_type, const void *body,
                     size_t len);
/* A canned error response, "<status> <reason>\n" as text/plain. */
int ivy_http_error(ivy_http_req *r, int status);

/*
 * Starts a streamed response of length bytes, or chunked when length < 0 (an HTTP/1.0 client
 * gets the body delimited by the connection's close instead). Then ivy_http_write the body; it
 * ends when the handler returns. Writing more than a declared length is -EINVAL; writing less
 * closes the connection after the handler returns.
 */
int ivy_http_start(ivy_http_req *r, int status, const char *content_type, int64_t length);
ssize_t ivy_http_write(ivy_http_req *r, const void *buf, size_t len); /* len, or -errno */

/* The whole response, its body len bytes of fd from offset, spliced by the ring (zero-copy). */
int ivy_http_sendfile(ivy_http_req *r, int status, const char *content_type, int fd, off_t offset,
                      size_t len);

/* Sends what is queued now (earlier pipelined answers, a started response). 0 or -errno. */
int ivy_http_flush(ivy_http_req *r);

/* ---- the router ----------------------------------------------------------------------------- */

/*
 * Go 1.22 ServeMux patterns: "[METHOD ]/path", whose segments are literal, "{name}" (one
 * segment) or, last, "{name...}" (the rest of the path, possibly empty) or "{$}" (the path
 * ends there: "/{$}" is "/" alone, "/x/{$}" is "/x/" alone); "/x/" matches as "/x/{rest...}"
 * does, naming nothing. A name is letters, digits and '_', once per pattern.
 * The most specific pattern wins (a literal segment over {name} over {name...}, a method over
 * none); GET also matches HEAD (a HEAD route wins over it). No match: 404; the path matches,
 * the method not: 405 with Allow, the methods sorted. Cost: a path that an exact pattern
 * (literal segments only, or ending in "{$}") names is found by hashing, however many routes
 * there are; other paths are matched against every pattern, so keep those few.
 */
typedef struct ivy_http_router ivy_http_router;
ivy_http_router *ivy_http_router_new(void); /* NULL + errno */
void ivy_http_router_free(ivy_http_router *rt);
/* 0, -EINVAL for a malformed pattern, -EEXIST for one already routed, -ENOMEM. */
int ivy_http_route(ivy_http_router *rt, const char *pattern, ivy_http_handler fn, void *arg);
/* The router as a handler: .handler = ivy_http_router_handler, .arg = rt. */
int ivy_http_router_handler(ivy_http_req *r, void *rt);

/* ---- stats ---------------------------------------------------------------------------------- */

/* This thread's servers (a cluster worker's own), since the thread started serving. */
struct ivy_http_stats {
    uint64_t requests, errors; /* answered; of them with a status of 400 or more */
    uint64_t conns_open, conns_total, bytes_in, bytes_out;
    uint64_t buffers_held; /* input and output buffers held by connections */
};
void ivy_http_stats(struct ivy_http_stats *out);

#ifdef __cplusplus
}
#endif
#endif
