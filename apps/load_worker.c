/*
 * One `ivy load` worker process: a hub pinned to one CPU, one green thread per connection and
 * a stopper thread that samples the rate, publishes progress and ends the run.
 *
 * Hot path, per batch: one send of bytes built once before the fork, receives straight into a
 * buffer on the connection thread's (pooled) stack, memchr framing, one histogram record per
 * response. No allocation and no system call besides the ring's; the per-batch timeout is a
 * scoped deadline, which is a timer-heap entry, not a timerfd.
 *
 * End of run: at the deadline (or on SIGINT/SIGTERM) the stopper kills every connection
 * thread, so a request in flight is cut where it stands (its I/O cancelled through the ring) and
 * never counted; a response completing after the deadline is not counted either, so every
 * worker reports exactly the same window.
 *
 * https: each connection runs the TLS handshake after connecting (counted, and resumed from the
 * session the previous connection was given unless --no-resume); its pointer is checked once
 * per send or receive, the plain path is untouched otherwise.
 */
#include "load_impl.h"

#include <ivy/ivy.h>

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

enum {
    WINDOW = 65536, /* echo bytes in flight: below socket buffers, so send and recv can't jam */
};
#define BACKOFF_MIN_NS 10000000ull   /* after a failed connect: 10 ms, doubling ... */
#define BACKOFF_MAX_NS 1000000000ull /* ... to 1 s, so a refused port costs no CPU */
#define SAMPLE_NS      100000000ull  /* Req/Sec sampling interval, as wrk's */

/* What a batch tells its connection loop. */
enum { B_OK, B_RECONNECT, B_FAILED, B_STOP };

struct worker;

struct conn {
    struct worker *w;
    ivy_thread *t;
    unsigned index; /* over all workers: its phase in the rate schedule */
    int fd;
    ivy_tls *tls;    /* https only */
    size_t pos, len; /* unconsumed input in the thread's receive buffer */
    uint64_t k;      /* rate mode: requests scheduled so far */
    struct ivy_load_resp resp;
    char buf[IVY_LOAD_BUF]; /* receives: here, not on the green stack (one guard page) */
};

struct worker {
    const struct ivy_load_plan *p;
    struct ivy_load_report *rep;
    struct ivy_load_result *r;
    struct ivy_load_progress *progress;
    struct conn *conns;
    unsigned n;
    bool stopping;
};

volatile int ivy__load_stop;

/* Counts `count` requests as failed with err; -ECANCELED (killed at the end) is no failure. */
static int fail(struct conn *c, enum ivy_load_error kind, int err, uint64_t count)
{
    if (err == -ECANCELED || c->w->stopping) return B_STOP;
    if (err == -ETIMEDOUT && kind != IVY_LOAD_ERR_CONNECT && kind != IVY_LOAD_ERR_TLS)
        kind = IVY_LOAD_ERR_TIMEOUT;
    struct ivy_load_result *r = c->w->r;
    r->errors[kind] += count;
    if (!r->first_error[kind]) r->first_error[kind] = err;
    return B_FAILED;
}

/* A response ended now: counts it with its latency, unless the run is already over. */
static bool done(struct conn *c, uint64_t start)
{
    struct worker *w = c->w;
    uint64_t now = ivy_now_ns();
    if (now > w->p->deadline || w->stopping) return false;
    w->r->requests++;
    ivy_hist_record(&w->r->latency, now - start);
    return true;
}

static ssize_t conn_send(struct conn *c, const void *buf, size_t len, bool all)
{
    if (c->tls) return ivy_tls_write(c->tls, buf, len);
    return all ? ivy_sendall(c->fd, buf, len) : ivy_send(c->fd, buf, len);
}

static ssize_t conn_recv(struct conn *c, void *buf, size_t len)
{
    return c->tls ? ivy_tls_read(c->tls, buf, len) : ivy_recv(c->fd, buf, len);
}

static void conn_close(struct conn *c)
{
    if (c->tls)
        ivy_tls_close(c->tls); /* no close_notify: the server closes on our FIN, as wrk's */
    else
        ivy_close(c->fd);
    c->tls = NULL;
    c->fd = -1;
}

/* The TLS handshake on a new connection: 0, or the error it was counted as. */
static int tls_start(struct conn *c)
{
    struct worker *w = c->w;
    if (!(c->tls = ivy_tls_new(w->p->tls, c->fd, w->p->o.host))) return -errno;
    struct ivy_timeout to;
    int rc = ivy_timeout_begin(&to, w->p->o.timeout);
    if (rc == 0) rc = ivy_tls_handshake(c->tls);
    ivy_timeout_end(&to);
    if (rc == 0) {
        w->r->handshakes++;
        w->r->resumed += ivy_tls_resumed(c->tls);
    } else if (!w->r->tls_error[0] && rc != -ECANCELED) {
        snprintf(w->r->tls_error, sizeof w->r->tls_error, "%s", ivy_tls_error(c->tls));
    }
    return rc;
}

static int http_batch(struct conn *c, char *buf, uint64_t start)
{
    struct worker *w = c->w;
    struct ivy_load_result *r = w->r;
    const struct ivy_load_plan *p = w->p;
    unsigned left = p->o.pipeline;
    ssize_t n = conn_send(c, p->msg, p->msg_len, true);
    if (n < 0) return fail(c, IVY_LOAD_ERR_WRITE, (int)n, left);
    r->sent += left;
    r->bytes_written += (uint64_t)n;
    while (left) {
        size_t used = 0;
        int rc = 0;
        if (c->len > c->pos)
            rc = ivy_load_resp_parse(&c->resp, buf + c->pos, c->len - c->pos, &used);
        c->pos += used;
        if (rc < 0) return fail(c, IVY_LOAD_ERR_PARSE, rc, left);
        if (rc == 0) {
            if (c->pos == c->len) {
                c->pos = c->len = 0;
            } else if (c->len == IVY_LOAD_BUF) { /* a partial head at the end: to the front */
                memmove(buf, buf + c->pos, c->len - c->pos);
                c->len -= c->pos;
                c->pos = 0;
            }
            n = conn_recv(c, buf + c->len, IVY_LOAD_BUF - c->len);
            if (n > 0) {
                c->len += (size_t)n;
                r->bytes_read += (uint64_t)n;
                continue;
            }
            if (n < 0 || !ivy_load_resp_eof(&c->resp))
                return fail(c, IVY_LOAD_ERR_READ, n ? (int)n : -ENODATA, left);
        }
        /* A response ended. */
        left--;
        if (!done(c, start)) return B_STOP;
        int status = c->resp.status;
        r->status_class[status < 600 ? status / 100 : 0]++;
        if (status >= 400) {
            r->errors[IVY_LOAD_ERR_STATUS]++;
            if (!r->first_error[IVY_LOAD_ERR_STATUS]) r->first_error[IVY_LOAD_ERR_STATUS] = status;
        }
        /* The server closes: requests left in the pipeline will never be answered. */
        if (c->resp.close) return B_RECONNECT;
    }
    return B_OK;
}

static int echo_batch(struct conn *c, char *buf, uint64_t start)
{
    struct worker *w = c->w;
    struct ivy_load_result *r = w->r;
    const struct ivy_load_plan *p = w->p;
    size_t total = p->msg_len, size = p->o.echo_size, sent = 0, got = 0, next = size;
    unsigned left = p->o.pipeline;
    while (got < total) {
        ssize_t n;
        if (sent < total && sent - got < WINDOW) {
            size_t k = total - sent;
            if (k > WINDOW - (sent - got)) k = WINDOW - (sent - got);
            n = conn_send(c, p->msg + sent, k, false);
            if (n < 0) return fail(c, IVY_LOAD_ERR_WRITE, (int)n, left);
            r->sent += (sent + (size_t)n) / size - sent / size;
            sent += (size_t)n;
            r->bytes_written += (uint64_t)n;
            continue;
        }
        size_t want = sent - got < IVY_LOAD_BUF ? sent - got : IVY_LOAD_BUF;
        n = conn_recv(c, buf, want);
        if (n <= 0) return fail(c, IVY_LOAD_ERR_READ, n ? (int)n : -ENODATA, left);
        r->bytes_read += (uint64_t)n;
        if (memcmp(buf, p->msg + got, (size_t)n))
            return fail(c, IVY_LOAD_ERR_PARSE, -EBADMSG, left);
        got += (size_t)n;
        for (; got >= next; next += size) {
            left--;
            if (!done(c, start)) return B_STOP;
        }
    }
    return B_OK;
}

/* Rate mode: when request k of this connection is due (computed afresh: no drift). */
static uint64_t due(const struct conn *c)
{
    const struct ivy_load_plan *p = c->w->p;
    double at = ((double)c->index + (double)c->k * p->o.connections) / p->o.rate;
    return p->t0 + (uint64_t)(at * 1e9);
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    struct worker *w = c->w;
    const struct ivy_load_plan *p = w->p;
    char *buf = c->buf;
    uint64_t backoff = BACKOFF_MIN_NS;
    int rc;
    while (!w->stopping) {
        if (c->fd < 0) {
            int fd = ivy_connect(p->addr, p->o.port, p->o.timeout);
            if (fd < 0) {
                if (fail(c, IVY_LOAD_ERR_CONNECT, fd, 1) == B_STOP) break;
                if (ivy_sleep((double)backoff / 1e9) < 0) break;
                backoff = backoff * 2 < BACKOFF_MAX_NS ? backoff * 2 : BACKOFF_MAX_NS;
                continue;
            }
            c->fd = fd;
            if (p->tls && (rc = tls_start(c)) < 0) {
                conn_close(c);
                if (fail(c, IVY_LOAD_ERR_TLS, rc, 1) == B_STOP) break;
                if (ivy_sleep((double)backoff / 1e9) < 0) break;
                backoff = backoff * 2 < BACKOFF_MAX_NS ? backoff * 2 : BACKOFF_MAX_NS;
                continue;
            }
            backoff = BACKOFF_MIN_NS;
            c->pos = c->len = 0;
            ivy_load_resp_init(&c->resp);
            w->r->connects++;
        }
        uint64_t start;
        if (p->o.rate > 0) {
            start = due(c);
            if (start >= p->deadline) break;
            uint64_t now = ivy_now_ns();
            if (start > now && ivy_sleep((double)(start - now) / 1e9) < 0) break;
            c->k++;
        } else {
            start = ivy_now_ns();
        }
        struct ivy_timeout to;
        rc = ivy_timeout_begin(&to, p->o.timeout);
        if (rc < 0) break;
        rc = p->o.echo_size ? echo_batch(c, buf, start) : http_batch(c, buf, start);
        ivy_timeout_end(&to);
        if (rc == B_STOP) break;
        if (rc != B_OK) conn_close(c);
    }
    if (c->fd >= 0) conn_close(c); /* killed: falls back to close(2) */
    return NULL;
}

static void publish(struct worker *w)
{
    uint64_t errors = 0;
    for (int k = 0; k < IVY_LOAD_NERR; k++)
        errors += w->r->errors[k];
    atomic_store_explicit(&w->progress->requests, w->r->requests, memory_order_relaxed);
    atomic_store_explicit(&w->progress->errors, errors, memory_order_relaxed);
}

/* Samples Req/Sec every 100 ms until the deadline or a stop signal, then ends every
 * connection thread. */
static void *stopper_main(void *arg)
{
    struct worker *w = arg;
    const struct ivy_load_plan *p = w->p;
    struct ivy_load_report *rep = w->rep;
    uint64_t last_t = p->t0, last_n = 0, now = ivy_now_ns();
    while (now < p->deadline && !ivy__load_stop) {
        uint64_t next = p->t0 + ((now - p->t0) / SAMPLE_NS + 1) * SAMPLE_NS;
        if (next > p->deadline) next = p->deadline;
        ivy_sleep((double)(next - now) / 1e9);
        now = ivy_now_ns();
        if (now - last_t >= SAMPLE_NS / 2 && rep->nsamples < IVY_LOAD_SAMPLES) {
            double dt = (double)(now - last_t) / 1e9;
            rep->samples[rep->nsamples++] = (float)((double)(w->r->requests - last_n) / dt);
            last_t = now;
            last_n = w->r->requests;
        }
        publish(w);
    }
    w->stopping = true;
    w->r->elapsed = (double)((now < p->deadline ? now : p->deadline) - p->t0) / 1e9;
    for (unsigned i = 0; i < w->n; i++)
        ivy_kill(w->conns[i].t);
    for (unsigned i = 0; i < w->n; i++)
        ivy_join(w->conns[i].t, NULL);
    publish(w);
    return NULL;
}

static void pin(const struct ivy_load_plan *p, unsigned index)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(p->cpus[index % p->ncpus], &set);
    sched_setaffinity(0, sizeof set, &set); /* best effort: unpinned still works */
    struct rlimit rl; /* a connection per descriptor: take all the hard limit allows */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int ivy__load_worker(const struct ivy_load_plan *p, unsigned index,
                     struct ivy_load_progress *progress, struct ivy_load_report *rep)
{
    struct worker w = {.p = p, .rep = rep, .r = &rep->r, .progress = progress};
    memset(rep, 0, sizeof *rep);
    rep->magic = IVY_LOAD_REPORT_MAGIC;
    ivy_hist_reset(&rep->r.latency);
    pin(p, index);
    /* A hub inherited through fork shares the parent's ring: never ours to use. */
    if (ivy_hub_free() < 0) return -EBUSY;
    struct ivy_hub_options ho = {.quiet = index != 0};
    int rc = ivy_hub_init(&ho);
    if (rc < 0) return rc;
    /* Connection i belongs to worker i % workers. */
    w.n = (p->o.connections - index + p->workers - 1) / p->workers;
    w.conns = calloc(w.n, sizeof *w.conns);
    if (!w.conns) return -ENOMEM;
    for (unsigned i = 0; i < w.n; i++) {
        struct conn *c = &w.conns[i];
        *c = (struct conn){.w = &w, .index = index + i * p->workers, .fd = -1};
        if (!(c->t = ivy_spawn(conn_main, c))) {
            rc = -errno;
            w.n = i;
            break;
        }
    }
    if (rc == 0 && ivy_spawn_n(stopper_main, &w) < 0) rc = -ENOMEM;
    if (rc < 0) { /* out of memory for stacks: end what started, report the failure */
        w.stopping = true;
        for (unsigned i = 0; i < w.n; i++)
            ivy_kill(w.conns[i].t);
    }
    int run = ivy_run();
    free(w.conns);
    ivy_hub_free();
    rep->r.workers = 1;
    rep->r.connections = w.n;
    return rc < 0 ? rc : run;
}
