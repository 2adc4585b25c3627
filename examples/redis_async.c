/*
 * Readiness driving an asynchronous client library: hiredis's async API run by one green thread
 * that waits for the connection's socket with ivy_poll, while another green thread ticks every
 * 10 ms. hiredis says what it waits for through its ev hooks (add/del read/write); the loop
 * waits for exactly that, then lets hiredis read or write without blocking.
 *
 *   redis_async PORT     # a redis-server on 127.0.0.1:PORT
 */
#include <ivy/ivy.h>

#include <errno.h>
#include <hiredis/async.h>
#include <stdio.h>
#include <stdlib.h>

struct loop {
    short want;  /* POLLIN / POLLOUT, as hiredis asked */
    int pending; /* replies still due */
};

static void add_read(void *p)
{
    ((struct loop *)p)->want |= POLLIN;
}
static void del_read(void *p)
{
    ((struct loop *)p)->want &= ~POLLIN;
}
static void add_write(void *p)
{
    ((struct loop *)p)->want |= POLLOUT;
}
static void del_write(void *p)
{
    ((struct loop *)p)->want &= ~POLLOUT;
}
static void cleanup(void *p)
{
    ((struct loop *)p)->want = 0;
}

static void on_reply(redisAsyncContext *ac, void *r, void *what)
{
    redisReply *reply = r;
    struct loop *l = ac->ev.data;
    if (!reply)
        printf("%s: failed: %s\n", (char *)what, ac->errstr);
    else if (reply->type == REDIS_REPLY_NIL)
        printf("%s: (nil) after 0.2 s\n", (char *)what);
    else
        printf("%s: %s\n", (char *)what, reply->str);
    l->pending--;
}

static int ticks;
static void *ticker(void *arg)
{
    while (ivy_sleep(0.01) == 0)
        ticks++;
    return NULL;
}

static void *client(void *arg)
{
    void **a = arg;
    redisAsyncContext *ac = redisAsyncConnect("127.0.0.1", *(int *)a[0]);
    if (!ac || ac->err) {
        ivy_kill(a[1]);
        fprintf(stderr, "connect: %s\n", ac ? ac->errstr : "out of memory");
        return ivy_err_ptr(-ECONNREFUSED);
    }
    struct loop l = {0, 3};
    ac->ev.data = &l;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    redisAsyncCommand(ac, on_reply, "SET", "SET ivy:example hello");
    redisAsyncCommand(ac, on_reply, "GET", "GET ivy:example");
    redisAsyncCommand(ac, on_reply, "BLPOP", "BLPOP ivy:example:empty 0.2");
    int rc = 0;
    while (l.pending > 0) {
        struct pollfd p = {.fd = ac->c.fd, .events = l.want};
        if ((rc = ivy_poll(&p, 1, 5.0)) <= 0) break; /* 0: 5 s without an answer */
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) redisAsyncHandleRead(ac);
        if (p.revents & POLLOUT) redisAsyncHandleWrite(ac);
    }
    redisAsyncFree(ac);
    ivy_kill(a[1]); /* the ticker */
    return rc < 0 ? ivy_err_ptr(rc) : NULL;
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 6379;
    ivy_thread *tk = ivy_spawn(ticker, NULL);
    void *a[2] = {&port, tk};
    ivy_thread *c = ivy_spawn(client, a);
    if (!tk || !c || ivy_run() != 0) return 1; /* runs until the ticker is killed too */
    int err = ivy_join(c, NULL);
    ivy_join(tk, NULL);
    /* 0.2 s of BLPOP at one tick per 10 ms: the hub ran other threads all along. */
    printf("ticker: %s\n", ticks >= 10 ? "kept ticking" : "stalled");
    return err ? 1 : 0;
}
