/*
 * raw_echo_server PORT: the best hand-written io_uring echo server we know how to write, with no
 * coroutines, against which ivy's echo app measures its abstraction tax (DESIGN.md §6).
 *
 * One thread, one ring (raw_loop.h). Each connection has one multishot recv into provided
 * buffers, so a message costs one CQE in and one send SQE + CQE out, with no re-arm. Received
 * buffers are echoed in place, without copying: they queue on their connection in arrival
 * order, one send in flight at a time (two sends on one socket may complete out of order), and
 * go back to the buffer ring when fully sent. A connection is closed once the peer has closed
 * (or failed) and its queue has drained, with no request of its own still in flight.
 *
 * If every buffer is queued (a peer that sends and never reads), multishot recv ends with
 * ENOBUFS; that connection waits on the starved list until buffers come back.
 */
#include "raw_loop.h"

enum { NBUFS = 2048, BUFSZ = 4096 };

struct conn {
    int32_t head, tail; /* queue of buffer ids awaiting send, linked through buf_next */
    uint32_t sent;      /* bytes of the head buffer already sent */
    struct raw_state s;
    bool starved; /* on the starved list */
};

static struct conn *conns; /* indexed by direct descriptor slot */
static unsigned max_conns;
static uint32_t buf_len[NBUFS];
static int32_t buf_next[NBUFS];
static unsigned held; /* buffers queued on connections, i.e. not in the ring */
static int *starved_slots;
static unsigned nstarved;

static void release_buf(struct raw_loop *l, unsigned bid)
{
    raw_buf_recycle(l, bid);
    held--;
}

static void send_head(struct raw_loop *l, int slot, struct conn *c)
{
    unsigned bid = (unsigned)c->head;
    raw_send(l, slot, raw_buf(l, bid) + c->sent, buf_len[bid] - c->sent);
    c->s.sending = true;
}

static void drop_queue(struct raw_loop *l, struct conn *c)
{
    while (c->head >= 0) {
        int32_t next = buf_next[c->head];
        release_buf(l, (unsigned)c->head);
        c->head = next;
    }
    c->tail = -1;
    c->sent = 0;
}

static void maybe_close(struct raw_loop *l, int slot, struct conn *c)
{
    if (!raw_can_close(&c->s) || c->starved) return;
    if (c->head >= 0 && !c->s.dead) return; /* the peer half-closed: echo what it sent first */
    drop_queue(l, c);
    raw_close(l, slot);
}

static void on_conn(struct raw_loop *l, int slot, const struct io_uring_cqe *cqe)
{
    conns[slot] = (struct conn){.head = -1, .tail = -1, .s.recv_armed = true};
    raw_arm_recv(l, slot);
}

static void on_recv(struct raw_loop *l, int slot, const struct io_uring_cqe *cqe)
{
    struct conn *c = &conns[slot];
    if (cqe->res > 0) {
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        held++;
        if (c->s.dead) {
            release_buf(l, bid);
        } else {
            buf_len[bid] = (uint32_t)cqe->res;
            buf_next[bid] = -1;
            if (c->tail >= 0)
                buf_next[c->tail] = (int32_t)bid;
            else
                c->head = (int32_t)bid;
            c->tail = (int32_t)bid;
            if (!c->s.sending) send_head(l, slot, c);
        }
    }
    if (cqe->flags & IORING_CQE_F_MORE) return;
    if (raw_recv_ended(l, slot, &c->s, cqe->res)) {
        c->starved = true;
        starved_slots[nstarved++] = slot;
    }
    maybe_close(l, slot, c);
}

static void on_send(struct raw_loop *l, int slot, const struct io_uring_cqe *cqe)
{
    struct conn *c = &conns[slot];
    c->s.sending = false;
    if (cqe->res < 0) {
        raw_send_failed(l, slot, &c->s);
        drop_queue(l, c);
    } else {
        c->sent += (uint32_t)cqe->res;
        if (c->sent == buf_len[c->head]) {
            int32_t next = buf_next[c->head];
            release_buf(l, (unsigned)c->head);
            c->head = next;
            c->sent = 0;
            if (next < 0) c->tail = -1;
        }
        if (c->head >= 0) send_head(l, slot, c);
    }
    maybe_close(l, slot, c);
}

static void rearm_starved(struct raw_loop *l)
{
    if (nstarved == 0 || held >= NBUFS) return;
    unsigned n = nstarved;
    nstarved = 0;
    for (unsigned i = 0; i < n; i++) {
        int slot = starved_slots[i];
        struct conn *c = &conns[slot];
        if (!c->starved) continue; /* closed (and maybe reused) since it was listed */
        c->starved = false;
        if (c->s.dead) {
            maybe_close(l, slot, c);
            continue;
        }
        c->s.recv_armed = true;
        raw_arm_recv(l, slot);
    }
}

int main(int argc, char **argv)
{
    static struct raw_loop loop = {.name = "raw_echo_server"};
    max_conns = raw_max_conns();
    conns = calloc(max_conns, sizeof(*conns));
    starved_slots = calloc(max_conns, sizeof(*starved_slots));
    if (!conns || !starved_slots) raw_die(&loop, "calloc", ENOMEM);
    raw_setup(&loop, argc, argv, max_conns, NBUFS, BUFSZ);
    raw_run(&loop, on_conn, on_recv, on_send, rearm_starved);
    raw_shutdown(&loop);
    free(conns);
    free(starved_slots);
    return 0;
}
