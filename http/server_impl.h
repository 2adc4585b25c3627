/*
 * Internal to the HTTP server: the connection record that server.c (the connection loop,
 * receives and timeouts), request.c (what a handler reads), response.c (what it writes) and
 * conn.c (buffers, sends, the lingering close) share.
 *
 * Buffer invariant: while a handler runs, the connection's input buffer never moves or shrinks,
 * because the request's slices point into it. Body bytes that do not fit after the head are
 * received straight into the handler's buffer (Content-Length) or after the head, in the room
 * the server made before the handler started (chunked: see make_room in server.c).
 */
#ifndef IVY_HTTP_SERVER_IMPL_H
#define IVY_HTTP_SERVER_IMPL_H

#include "conns.h"
#include "http_parse.h"

#include "ivy/http.h"
#include "ivy/socket.h"

#include "hub_impl.h"

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

enum {
    IVY_HTTP_IN_SIZE = 16384,  /* pooled input buffer: a receive, or a head up to the limit */
    IVY_HTTP_OUT_SIZE = 16384, /* pooled output buffer: a batch of responses */
    IVY_HTTP_MAX_PARAMS = 8,   /* router path parameters per request */
};

/* The options of a running server, resolved: seconds (0: none), bytes. */
struct http_server {
    ivy_http_handler handler;
    void *arg;
    const char *headers;
    size_t headers_len;
    size_t body_limit;
    double hot_wait;  /* an idle hot wait: HOT_SECONDS, or the keep-alive timeout if shorter */
    double cold_wait; /* a parked wait after the hot one: 0 none, < 0: the hot one's end closes */
    double request;   /* the request timeout, 0: none */
    double send;      /* the send timeout, 0: none */
    ivy_tls_ctx *tls; /* TLS on every connection, or NULL */
};

enum body_mode { BODY_NONE, BODY_LENGTH, BODY_CHUNKED };
enum resp_state { RESP_NONE, RESP_STARTED, RESP_DONE };

struct ivy_http_req {
    struct http_conn *c;
    size_t head_at; /* where in c->in the head starts */
    size_t body_at; /* and where it ends */

    /* The body. */
    enum body_mode body;
    bool expect;   /* 100-continue asked for and not sent yet */
    bool body_end; /* all of the body is consumed or known (chunked: decoded) */
    uint64_t left; /* BODY_LENGTH: bytes not yet taken from the connection */
    size_t dec_at; /* BODY_CHUNKED: decoded bytes waiting at in[dec_at, dec_at + dec_len) */
    size_t dec_len;
    char *whole; /* ivy_http_body's buffer when the body did not fit in c->in */

    /* The response. */
    enum resp_state resp;
    int status;
    bool chunked_out; /* the body goes in chunks */
    bool until_close; /* HTTP/1.0 with no length: the close ends the body */
    bool close_after; /* the connection closes once this response is out */
    bool no_body;     /* HEAD, 204, 304: the body is not sent */
    int64_t out_left; /* a declared length's bytes still to write; -1: not declared */
    char *xh;         /* headers the handler added, "Name: value\r\n"... */
    size_t xh_len, xh_cap;

    struct {
        struct ivy_http_slice name, value;
    } param[IVY_HTTP_MAX_PARAMS];
    unsigned nparams;
    struct ivy_http_request h; /* the parsed head, slices into c->in: last, see conn_run */
};

struct http_conn {
    struct ivy__conn reg;
    const struct http_server *srv;
    int fd;
    ivy_tls *tls; /* TLS: every receive and send goes through it; NULL: plain */
    char *in;
    size_t cap, off, len;
    char *out;
    size_t out_len, out_cap;
    unsigned nreq; /* answered since the last count */
    uint64_t bytes_in, bytes_out;
    uint64_t head_since; /* ivy_now_ns() of the first wait for the head's rest; 0: none */
    bool send_waits;     /* the last send filled the socket's buffer: batches go synchronously */
    time_t now;          /* the batch's second, for Date */
    struct ivy_http_chunked ch;
    struct ivy_timer idle_timer; /* while parked: the rest of the keep-alive timeout */
    int wake;                    /* why a parked connection was resumed: 0 (bytes), or -errno */
    /* The batch send left in flight while the thread waits for the next request
     * (ivy__http_flush_async): out[0, sent_len) is the kernel's until it answers. */
    struct ivy_completion sent;
    struct ivy_waitq sent_wq; /* the connection's thread, waiting for it */
    uint32_t sent_len;        /* 0: none outstanding */
    uint32_t sent_off;        /* how much of it the kernel took so far */
    int sent_res;             /* its error once answered, or 0 */
    bool sending;             /* not answered yet */
    bool stop_send;           /* cancelled: a short answer is not continued */
    bool fixed;               /* fd is a registered file (ivy__fixed_add) for those sends */
    unsigned char batches;    /* sent so far, up to 2: the second registers fd */
    bool orphaned;            /* ended with the send in flight: its answer frees the record */
    socklen_t peer_len;       /* 0: not asked yet */
    struct sockaddr_storage peer;
    ivy_http_req *req; /* on the stack of the thread serving the connection now */
};

/* Per worker thread: what ivy_http_stats reports. */
struct http_totals {
    uint64_t requests, errors, bytes_in, bytes_out;
};
extern __thread struct http_totals ivy__http_totals;

/* Before a thread serves its first connection: 0 or -ENOMEM. */
int ivy__http_conn_setup(void);

/* Takes a pooled input buffer for c, empty: 0 or -ENOMEM. */
int ivy__http_in_get(struct http_conn *c);

/* A hot connection gone quiet: gives its input and output buffers (and their pages) back. */
void ivy__http_go_cold(struct http_conn *c);

/* in is full: doubles it (a pooled buffer is copied out and returned). 0 or -ENOMEM. */
int ivy__http_grow_in(struct http_conn *c);

char *ivy__http_out_get(void); /* a pooled IVY_HTTP_OUT_SIZE output buffer, or NULL */

/* Gives back every buffer the connection holds. */
void ivy__http_conn_release(struct http_conn *c);

/*
 * Sends buf[0, len) whole: len, or a negative error; -ETIMEDOUT once timeout seconds (0: no
 * limit) pass with no byte taken by the kernel, the clock restarting with each partial send.
 * Every wait is timed, the first too (the keep-alive path, ivy__http_flush_async, arms no timer
 * of its own: its send is timed when the buffer is next needed). A short send sets send_waits,
 * which keeps batches synchronous until a send is taken whole again.
 */
ssize_t ivy__http_send(struct http_conn *c, const char *buf, size_t len, double timeout);

/* Sends what out holds and reports the batch's counters. 0 or a negative error. */
int ivy__http_flush(struct http_conn *c);

/*
 * The connection loop's flush, once a batch is answered and the connection reads on: out leaves
 * in a send the thread does not wait for (plain connections whose last send found room;
 * otherwise ivy__http_flush), so a request costs its thread one wake-up, for its bytes, not
 * two. Until the kernel has taken all of it, out is not written (sent_len): a short send goes
 * on from the completion, an error is kept for the loop (the receive fails too, and wakes the
 * thread), and whoever needs out next waits in ivy__http_settle, under the send timeout. So
 * the send timeout of a batch left in flight runs from when the connection next needs its
 * buffer: the next response, the hot wait's end (parking), or the close. 0 or -errno.
 */
int ivy__http_flush_async(struct http_conn *c);

/* Waits until the kernel has taken all of the send ivy__http_flush_async left in flight
 * (within the send timeout, then cancelled): 0, or a negative error (end the connection). */
int ivy__http_settle(struct http_conn *c);

/* The connection ends: a send still in flight (its thread was killed while it waited) is
 * cancelled, and its answer frees c and its output buffer. True if so: c is not to be freed
 * now. */
bool ivy__http_send_abandon(struct http_conn *c);

/* Whether out is ours to write (no send in flight) and has room for n more bytes now. */
static inline bool ivy__http_out_fits(const struct http_conn *c, size_t n)
{
    return c->out && !c->sent_len && c->out_cap - c->out_len >= n;
}

/* Room for n more bytes in out (flushing first when needed), or NULL on a send error. */
char *ivy__http_out_room_slow(struct http_conn *c, size_t n);
static inline char *ivy__http_out_room(struct http_conn *c, size_t n)
{
    if (__builtin_expect(ivy__http_out_fits(c, n), 1)) return c->out + c->out_len;
    return ivy__http_out_room_slow(c, n);
}

/* Appends bytes to out, sending straight from buf when they do not fit. 0 or -errno. */
int ivy__http_out_put(struct http_conn *c, const void *buf, size_t len);

/* After the last response: stops sending and reads what the peer still sends until it closes
 * (at most a second and 1 MiB), so that closing does not reset the connection before the peer
 * has read the response. */
void ivy__http_linger(int fd);

/* Receives into buf within seconds (0: no limit): a count, 0 at end of stream, or -errno. */
ssize_t ivy__http_recv(struct http_conn *c, void *buf, size_t len, double seconds);

/* Reads and drops the rest of the request's body (bounded by the body limit): 0 when the
 * connection can take the next request, or a negative error (close it). */
int ivy__http_discard_body(ivy_http_req *r);
/* Frees what the request allocated. */
void ivy__http_req_end(ivy_http_req *r);

/* Ends the response after the handler returned rc: 0 to go on, < 0 to close the connection. */
int ivy__http_finish(ivy_http_req *r, int rc);
/* An error status the server chose (parser errors, 408): Connection: close. 0 or -errno. */
int ivy__http_error_close(struct http_conn *c, int status);

/* Per-thread bytes nobody reads (lingering and discarded bodies land there). */
char *ivy__http_scratch(size_t *len);

uint64_t ivy__http_buffers_held(void); /* input and output buffers held by this worker's conns */

#endif
