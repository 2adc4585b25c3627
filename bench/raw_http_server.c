/*
 * raw_http_server PORT: a bare io_uring completion-loop HTTP/1.1 server with no coroutines, the
 * physical limit of ivy's design: ivy's http app is measured against it, as against nginx.
 *
 * One thread, one ring (raw_loop.h), keep-alive and pipelining. Each connection has one
 * multishot recv into provided buffers. A received buffer is only scanned for the "\r\n\r\n"
 * ending each request (a match may straddle two buffers; requests are taken to be GETs without
 * a body, as wrk sends) and goes straight back to the ring, so idle connections hold no buffer.
 * The connection then owes that many responses: they are written back to back into its output
 * buffer and leave in one send, so a pipelined batch costs one syscall-free SQE. While a send is
 * in flight, newly counted requests just raise the debt.
 *
 * Every response is the same but for the Date header, which, as nginx does, is formatted once
 * per second; it is copied into the connection's buffer rather than sent from a shared one, so
 * a slow send can never see it change under it.
 */
#include "raw_loop.h"

#include <time.h>

enum { NBUFS = 1024, BUFSZ = 4096, MAX_BATCH = 32, RESP_MAX = 192 };

struct conn {
    char *out; /* MAX_BATCH responses; kept for the next connection on this slot */
    uint32_t owed, sent, out_len;
    uint8_t match; /* how much of "\r\n\r\n" the bytes so far end with */
    struct raw_state s;
};

static struct conn *conns; /* indexed by direct descriptor slot */
static unsigned max_conns;
static char resp[RESP_MAX];
static size_t resp_len;
static time_t resp_time = -1;

static void refresh_response(void)
{
    time_t now = time(NULL); /* vDSO, no syscall */
    if (now == resp_time) return;
    struct tm tm;
    char date[40];
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    resp_len = (size_t)snprintf(resp, sizeof(resp),
                                "HTTP/1.1 200 OK\r\nServer: raw\r\nDate: %s\r\n"
                                "Content-Length: 13\r\nContent-Type: text/plain\r\n\r\n"
                                "Hello, World!",
                                date);
    resp_time = now;
}

/* Counts the request ends in p[0..n), carrying a partial match over in c->match. memchr skips
 * to each '\r' so header bytes are not looked at one by one. */
static unsigned count_requests(struct conn *c, const char *p, size_t n)
{
    static const char term[4] = "\r\n\r\n";
    const char *end = p + n;
    unsigned reqs = 0, m = c->match;
    while (p < end) {
        if (m == 0) {
            p = memchr(p, '\r', (size_t)(end - p));
            if (!p) break;
        }
        char ch = *p++;
        if (ch == term[m]) {
            if (++m == 4) {
                reqs++;
                m = 0;
            }
        } else {
            m = ch == '\r'; /* "\r" is the only prefix of the terminator that restarts it */
        }
    }
    c->match = (uint8_t)m;
    return reqs;
}

static void flush(struct raw_loop *l, int slot, struct conn *c)
{
    refresh_response();
    uint32_t k = c->owed < MAX_BATCH ? c->owed : MAX_BATCH;
    for (uint32_t i = 0; i < k; i++)
        memcpy(c->out + i * resp_len, resp, resp_len);
    c->owed -= k;
    c->out_len = k * (uint32_t)resp_len;
    c->sent = 0;
    c->s.sending = true;
    raw_send(l, slot, c->out, c->out_len);
}

static void maybe_close(struct raw_loop *l, int slot, struct conn *c)
{
    /* Nothing is owed when not sending: every recv that adds to the debt starts a send. */
    if (raw_can_close(&c->s)) raw_close(l, slot);
}

static void on_conn(struct raw_loop *l, int slot, const struct io_uring_cqe *cqe)
{
    struct conn *c = &conns[slot];
    char *out = c->out ? c->out : malloc(MAX_BATCH * RESP_MAX);
    if (!out) {
        raw_close(l, slot);
        return;
    }
    *c = (struct conn){.out = out, .s.recv_armed = true};
    raw_arm_recv(l, slot);
}

static void on_recv(struct raw_loop *l, int slot, const struct io_uring_cqe *cqe)
{
    struct conn *c = &conns[slot];
    if (cqe->res > 0) {
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        unsigned reqs = count_requests(c, raw_buf(l, bid), (size_t)cqe->res);
        raw_buf_recycle(l, bid);
        if (!c->s.dead) {
            c->owed += reqs;
            if (c->owed && !c->s.sending) flush(l, slot, c);
        }
    }
    if (cqe->flags & IORING_CQE_F_MORE) return;
    if (raw_recv_ended(l, slot, &c->s, cqe->res)) {
        /* Buffers come back within this batch, before the re-armed recv is submitted. */
        c->s.recv_armed = true;
        raw_arm_recv(l, slot);
    }
    maybe_close(l, slot, c);
}

static void on_send(struct raw_loop *l, int slot, const struct io_uring_cqe *cqe)
{
    struct conn *c = &conns[slot];
    c->s.sending = false;
    if (cqe->res < 0) {
        raw_send_failed(l, slot, &c->s);
    } else if ((c->sent += (uint32_t)cqe->res) < c->out_len) {
        c->s.sending = true;
        raw_send(l, slot, c->out + c->sent, c->out_len - c->sent);
    } else if (c->owed) {
        flush(l, slot, c);
    }
    maybe_close(l, slot, c);
}

int main(int argc, char **argv)
{
    static struct raw_loop loop = {.name = "raw_http_server"};
    max_conns = raw_max_conns();
    conns = calloc(max_conns, sizeof(*conns));
    if (!conns) raw_die(&loop, "calloc", ENOMEM);
    refresh_response();
    raw_setup(&loop, argc, argv, max_conns, NBUFS, BUFSZ);
    raw_run(&loop, on_conn, on_recv, on_send, NULL);
    raw_shutdown(&loop);
    for (unsigned slot = 0; slot < max_conns; slot++)
        free(conns[slot].out);
    free(conns);
    return 0;
}
