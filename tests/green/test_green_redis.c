/*
 * Green libc proof: hiredis's synchronous API, unmodified, against redis-server's BLPOP with a
 * 0.2 s timeout, from 100 green threads (link-time form: this program links the interposers).
 * Also runs examples/redis_async (hiredis's async API driven by ivy_poll) against the server.
 */
#include "proof.h"
#include "servers.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

static struct server srv;

static void *redis_connect(int i)
{
    redisContext *c = redisConnect("127.0.0.1", srv.port);
    if (!c || c->err) {
        if (c) redisFree(c);
        return NULL;
    }
    return c;
}

static int redis_call(void *arg, int i)
{
    redisContext *c = arg;
    redisReply *r = redisCommand(c, "BLPOP ivy:proof:%d 0.2", i);
    bool ok = r && r->type == REDIS_REPLY_NIL; /* nothing pushed: the timeout's answer */
    if (r) freeReplyObject(r);
    r = redisCommand(c, "ECHO %d", i); /* and the connection still answers in order */
    char want[16];
    snprintf(want, sizeof want, "%d", i);
    ok = ok && r && r->type == REDIS_REPLY_STRING && !strcmp(r->str, want);
    if (r) freeReplyObject(r);
    return ok ? 0 : -1;
}

static void redis_disconnect(void *c)
{
    redisFree(c);
}

static const struct proof redis_proof = {redis_connect, redis_call, redis_disconnect};

static void hundred_green_threads_overlap_their_hiredis_calls(void **state)
{
    run_proof(&redis_proof);
}

static void the_same_calls_work_outside_green_threads(void **state)
{
    uint64_t t0 = ivy_now_ns();
    run_outside(&redis_proof, 3);
    assert_true(ivy_now_ns() - t0 >= 3 * 195000000ull); /* libc's: one after the other */
}

static void the_async_example_runs_on_ivy_poll(void **state)
{
    const char *dir = getenv("IVY_BUILD_DIR");
    char cmd[600], out[512] = "";
    snprintf(cmd, sizeof cmd, "%s/examples/redis_async %d", dir ? dir : "build", srv.port);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = 0;
    assert_int_equal(pclose(f), 0);
    assert_string_equal(out, "SET: OK\nGET: hello\nBLPOP: (nil) after 0.2 s\n"
                             "ticker: kept ticking\n");
}

static int start(void **state)
{
    redis_start(&srv);
    return 0;
}

static int stop(void **state)
{
    server_stop(&srv, SIGTERM);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hundred_green_threads_overlap_their_hiredis_calls),
        cmocka_unit_test(the_same_calls_work_outside_green_threads),
        cmocka_unit_test(the_async_example_runs_on_ivy_poll),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
