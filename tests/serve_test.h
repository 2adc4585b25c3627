/*
 * Running the real `ivy serve` in a test (test_serve.c, test_serve_tls.c): started with extra
 * arguments and waited for until every worker is ready, as its stats segment says (not for a
 * fixed time), then stopped with SIGTERM, which must end it with status 0.
 */
#ifndef IVY_TEST_SERVE_H
#define IVY_TEST_SERVE_H

#include "cluster_impl.h"
#include "util.h"

#include <sys/mman.h>

/* Every worker of the server whose supervisor is pid is ready (its stats say so). */
static inline void wait_all_ready(pid_t pid)
{
    size_t len = 0;
    struct ivy_stats_shm *shm = NULL;
    for (int i = 0; i < 400 && !shm; i++)
        if (!(shm = ivy__stats_open(pid, &len))) sleep_ms(10);
    assert_non_null(shm);
    unsigned seats = shm->nslots / 2, ready = 0; /* two slots per seat */
    for (int i = 0; i < 1000 && ready < seats; i++) {
        ready = 0;
        for (unsigned k = 0; k < shm->nslots; k++)
            ready += IVY_LOAD(shm->slot[k].state) == SLOT_READY;
        if (ready < seats) sleep_ms(5);
    }
    munmap(shm, len);
    assert_int_equal(ready, seats);
}

/* Starts `ivy serve` with extra arguments; returns the supervisor's pid once every worker is
   ready. */
static inline pid_t serve(int port, const char *const *extra)
{
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    const char *argv[32] = {ivy_binary(), "serve", "--listen", listen, "--quiet"};
    int n = 5;
    for (; extra && *extra; extra++)
        argv[n++] = *extra;
    argv[n] = NULL;
    pid_t pid = spawn_quiet(argv);
    assert_true(pid >= 0);
    assert_true(wait_listening(port, 4000));
    wait_all_ready(pid); /* every worker listening, not just the first */
    return pid;
}

/* SIGTERM: the server drains and exits 0 within 10 s. */
static inline void stop(pid_t pid)
{
    assert_true(terminated_cleanly(pid, 10000));
}

#endif
