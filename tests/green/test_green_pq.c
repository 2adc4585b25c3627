/*
 * Green libc proof: libpq, unmodified, against a PostgreSQL server initialised by the test in
 * a temporary directory and run as an unprivileged user: SELECT pg_sleep(0.2) from 100 green
 * threads (link-time form: this program links the interposers).
 */
#include "proof.h"
#include "servers.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

static struct server srv;
static char conninfo[200];

static void *pq_connect(int i)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "connect: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    return c;
}

static int pq_call(void *arg, int i)
{
    char q[64];
    snprintf(q, sizeof q, "SELECT pg_sleep(0.2), %d", i);
    PGresult *r = PQexec(arg, q);
    char want[16];
    snprintf(want, sizeof want, "%d", i);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
              !strcmp(PQgetvalue(r, 0, 1), want);
    PQclear(r);
    return ok ? 0 : -1;
}

static const struct proof pq_proof = {pq_connect, pq_call, (void (*)(void *))PQfinish};

static void hundred_green_threads_overlap_their_libpq_calls(void **state)
{
    run_proof(&pq_proof);
}

static void the_same_calls_work_outside_green_threads(void **state)
{
    uint64_t t0 = ivy_now_ns();
    run_outside(&pq_proof, 3);
    assert_true(ivy_now_ns() - t0 >= 3 * 195000000ull); /* libc's: one after the other */
}

static int start(void **state)
{
    pg_start(&srv);
    snprintf(conninfo, sizeof conninfo, "host=%s port=%d user=postgres dbname=postgres", srv.dir,
             srv.port);
    /* The socket exists before the server accepts sessions: wait until it does. */
    for (int i = 0; i < 2000 && PQping(conninfo) != PQPING_OK; i++)
        sleep_ms(10);
    return PQping(conninfo) == PQPING_OK ? 0 : -1;
}

static int stop(void **state)
{
    server_stop(&srv, SIGINT); /* postgres's fast shutdown */
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hundred_green_threads_overlap_their_libpq_calls),
        cmocka_unit_test(the_same_calls_work_outside_green_threads),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
