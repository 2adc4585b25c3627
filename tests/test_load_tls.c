/*
 * Tests for `ivy load https://...` (apps/load*.c over io/tls*.c): whole runs of real worker
 * processes against a green TLS HTTP responder forked here, with certificates made by the test:
 * keep-alive (one handshake per connection), reconnects that resume the previous session,
 * --no-resume, a certificate that does not verify (counted, with OpenSSL's reason), --insecure,
 * and the report's handshake figures in text and JSON.
 */
#include "load_impl.h"

#include <ivy/ivy.h>

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tls_test.h"
#include "util.h"

struct server {
    pid_t pid;
    int port;
};

static ivy_tls_ctx *srv_ctx;

static void *serve_conn(void *arg)
{
    ivy_tls *t = ivy_tls_new(srv_ctx, (int)(intptr_t)arg, NULL);
    if (t && ivy_tls_handshake(t) == 0) tls_answer(t);
    if (t) ivy_tls_close(t);
    return NULL;
}

static void *acceptor(void *arg)
{
    int lfd = (int)(intptr_t)arg, fd;
    while ((fd = ivy_accept(lfd, NULL)) >= 0)
        ivy_spawn_n(serve_conn, (void *)(intptr_t)fd);
    return NULL;
}

/* A forked green TLS responder with cert/key on a free port; killed by server_stop. */
static struct server server_start(const char *cert, const char *key)
{
    struct server s = {0};
    int lfd = ivy_listen("127.0.0.1", 0, 512, 0);
    assert_true(lfd >= 0);
    s.port = ivy_local_port(lfd);
    s.pid = fork();
    assert_true(s.pid >= 0);
    if (s.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test must not leave it behind */
        char msg[256];
        if (ivy_tls_server_new(&srv_ctx, cert, key, msg, sizeof msg) < 0) _exit(3);
        ivy_spawn_n(acceptor, (void *)(intptr_t)lfd);
        ivy_run();
        _exit(0);
    }
    close(lfd);
    return s;
}

static void server_stop(struct server *s)
{
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
}

static struct ivy_load_opts opts(const struct server *s, unsigned conns)
{
    return (struct ivy_load_opts){.host = "localhost",
                                  .port = s->port,
                                  .connections = conns,
                                  .duration = 0.5,
                                  .workers = 1,
                                  .tls = true,
                                  .ca_file = certs.ca};
}

static struct ivy_load_result *run(struct ivy_load_opts o)
{
    struct ivy_load_result *r = calloc(1, sizeof *r);
    assert_int_equal(ivy_load_run(&o, r), 0);
    return r;
}

static void assert_no_errors(const struct ivy_load_result *r)
{
    for (int k = 0; k < IVY_LOAD_NERR; k++)
        if (r->errors[k]) fail_msg("%llu errors of kind %d", (unsigned long long)r->errors[k], k);
}

static void keepalive_is_one_handshake_per_connection(void **state)
{
    NEED_OPENSSL();
    struct server s = server_start(certs.cert, certs.key);
    struct ivy_load_result *r = run(opts(&s, 4));
    server_stop(&s);
    assert_no_errors(r);
    assert_true(r->requests > 20);
    assert_int_equal(r->status_class[2], r->requests);
    assert_int_equal(r->connects, 4);
    assert_int_equal(r->handshakes, 4);
    assert_int_equal(r->resumed, 0);
    free(r);
}

static void reconnects_resume_the_previous_session(void **state)
{
    NEED_OPENSSL();
    struct server s = server_start(certs.cert, certs.key);
    struct ivy_load_opts o = opts(&s, 2);
    o.headers = "Connection: close\r\n"; /* the server closes after each response */
    struct ivy_load_result *r = run(o);
    o.no_resume = true;
    struct ivy_load_result *full = run(o);
    server_stop(&s);
    assert_no_errors(r);
    assert_true(r->requests > 10);
    assert_true(r->handshakes >= r->requests);
    assert_int_equal(r->handshakes, r->connects);
    /* Only the first handshake of each connection, before any session exists, is a full one. */
    assert_true(r->handshakes - r->resumed >= 1 && r->handshakes - r->resumed <= 2);
    assert_no_errors(full);
    assert_true(full->handshakes > 10);
    assert_int_equal(full->resumed, 0);
    free(r);
    free(full);
}

static void unverified_certificate_is_a_tls_error(void **state)
{
    NEED_OPENSSL();
    struct server s = server_start(certs.wrong, certs.wrong_key);
    struct ivy_load_result *r = run(opts(&s, 1));
    assert_int_equal(r->requests, 0);
    assert_true(r->errors[IVY_LOAD_ERR_TLS] >= 1);
    assert_int_equal(r->first_error[IVY_LOAD_ERR_TLS], -EPROTO);
    assert_string_equal(r->tls_error, "certificate verify failed: hostname mismatch");
    assert_int_equal(r->errors[IVY_LOAD_ERR_CONNECT], 0);
    struct ivy_load_opts o = opts(&s, 1);
    o.insecure = true;
    struct ivy_load_result *k = run(o);
    server_stop(&s);
    assert_no_errors(k);
    assert_true(k->requests > 10);
    free(r);
    free(k);
}

static void report_shows_handshakes_in_text_and_json(void **state)
{
    NEED_OPENSSL();
    struct server s = server_start(certs.cert, certs.key);
    char cmd[1024], out[8192];
    snprintf(cmd, sizeof cmd,
             "%s load https://localhost:%d/ -c 2 -t 1 -d 0.3 --cacert %s "
             "-H 'Connection: close'",
             ivy_binary(), s.port, certs.ca);
    assert_int_equal(run_cmd(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "Running 0.3s test @ https://localhost:"));
    assert_non_null(strstr(out, "resumed), "));
    assert_non_null(strstr(out, " handshakes/sec\n"));
    strcat(cmd, " --json");
    assert_int_equal(run_cmd(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "\"tls\": {\"handshakes\": "));
    assert_non_null(strstr(out, "\"handshakes_per_sec\": "));
    assert_non_null(strstr(out, "\"tls\": 0}")); /* no TLS errors */
    /* Nothing verifies: exit status 1 with the reason on stderr. */
    snprintf(cmd, sizeof cmd, "%s load https://localhost:%d/ -c 1 -t 1 -d 0.3 --cacert %s",
             ivy_binary(), s.port, certs.wrong);
    assert_int_equal(run_cmd(cmd, out, sizeof out), 1);
    server_stop(&s);
    assert_non_null(strstr(out, "the TLS handshake failed (certificate verify failed: "));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keepalive_is_one_handshake_per_connection),
        cmocka_unit_test(reconnects_resume_the_previous_session),
        cmocka_unit_test(unverified_certificate_is_a_tls_error),
        cmocka_unit_test(report_shows_handshakes_in_text_and_json),
    };
    return ivy_test_exit(cmocka_run_group_tests(tests, tls_setup, tls_teardown));
}
