/*
 * Tests for io/tls.c (contexts, reload, the record path) and the handshake against real
 * clients: certificates made here with openssl, a green TLS HTTP responder in this process on a
 * free loopback port, and curl, openssl s_client (ALPN, resumption), Python's ssl, and raw
 * sockets misbehaving. io/tls_conn.c's own calls are tests/test_tls_conn.c's.
 */
#include <ivy/ivy.h>

#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tls_responder.h"
#include "util.h"

/* ---- contexts: errors name their cause -------------------------------------------------- */

static void context_errors(void **state)
{
    NEED_OPENSSL();
    ivy_tls_ctx *ctx = NULL;
    char msg[512], path[160];
    snprintf(path, sizeof path, "%s/missing.pem", certs.dir);
    assert_int_equal(ivy_tls_server_new(&ctx, path, certs.key, msg, sizeof msg), -ENOENT);
    assert_non_null(strstr(msg, "cannot read certificate file"));
    assert_non_null(strstr(msg, path));
    assert_int_equal(ivy_tls_server_new(&ctx, certs.cert, path, msg, sizeof msg), -ENOENT);
    assert_non_null(strstr(msg, "cannot read key file"));
    /* A key where the certificate should be, and the other way round. */
    assert_int_equal(ivy_tls_server_new(&ctx, certs.key, certs.key, msg, sizeof msg), -EINVAL);
    assert_non_null(strstr(msg, "not a PEM certificate chain"));
    assert_int_equal(ivy_tls_server_new(&ctx, certs.cert, certs.cert, msg, sizeof msg), -EINVAL);
    assert_non_null(strstr(msg, "not a PEM private key"));
    /* A key that belongs to another certificate. */
    assert_int_equal(ivy_tls_server_new(&ctx, certs.cert, certs.wrong_key, msg, sizeof msg),
                     -EINVAL);
    assert_non_null(strstr(msg, "does not match the certificate"));
    assert_int_equal(ivy_tls_server_new(&ctx, NULL, certs.key, msg, sizeof msg), -EINVAL);
    assert_null(ctx);
    /* Client: a missing CA file, and one without a certificate. */
    assert_int_equal(ivy_tls_client_new(&ctx, path, 0, msg, sizeof msg), -ENOENT);
    assert_non_null(strstr(msg, "cannot read CA file"));
    assert_int_equal(ivy_tls_client_new(&ctx, certs.key, 0, msg, sizeof msg), -EINVAL);
    assert_non_null(strstr(msg, "no PEM certificate to trust"));
    /* A client context has nothing to reload; a connection needs a context and a socket. */
    assert_int_equal(ivy_tls_client_new(&ctx, certs.ca, 0, msg, sizeof msg), 0);
    assert_int_equal(ivy_tls_ctx_reload(ctx, msg, sizeof msg), -EINVAL);
    errno = 0;
    assert_null(ivy_tls_new(ctx, 3, NULL)); /* verification on: a server name is required */
    assert_int_equal(errno, EINVAL);
    assert_null(ivy_tls_new(NULL, 3, "localhost"));
    assert_int_equal(errno, EINVAL);
    assert_null(ivy_tls_new(ctx, -1, "localhost"));
    assert_int_equal(errno, EINVAL);
    ivy_tls_ctx_free(ctx);
    assert_int_equal(ivy_tls_ctx_reload(NULL, msg, sizeof msg), -EINVAL);
    /* Messages are optional. */
    assert_int_equal(ivy_tls_server_new(&ctx, path, certs.key, NULL, 0), -ENOENT);
}

static void record_path_is_named(void **state)
{
    const char *p = ivy_tls_path();
    assert_true(!strncmp(p, "userspace", 9) || !strncmp(p, "kTLS", 4));
    assert_string_equal(ivy_tls_path(), p); /* decided once */
}

/* ---- real clients ----------------------------------------------------------------------- */

static void *curl_body(void *arg)
{
    struct srv s;
    ivy_thread *t = start_server(&s, certs.cert, certs.key, 1);
    struct cmd *c = calloc(1, sizeof *c);
    /* Two URLs: curl reuses the connection (keep-alive), so one handshake, two requests. */
    int st =
        shell(c, "curl -sS --max-time 10 --cacert %s https://localhost:%d/ https://localhost:%d/a",
              certs.ca, s.port, s.port);
    assert_int_equal(st, 0);
    assert_string_equal(c->out, "Hello, World!Hello, World!");
    stop_server(&s, t);
    assert_int_equal(s.rc[0], 0);
    assert_int_equal(s.requests, 2);
    free(c);
    return NULL;
}

static void curl_cacert_keepalive(void **state)
{
    NEED_OPENSSL();
    if (!have_program("curl")) skip_visibly("curl is missing (Debian: curl)");
    green(curl_body);
}

static void *curl_bad_body(void *arg)
{
    struct srv s;
    ivy_thread *t = start_server(&s, certs.cert, certs.key, 1);
    struct cmd *c = calloc(1, sizeof *c);
    /* curl trusts only an unrelated certificate: ours does not verify, and it says so. */
    int st =
        shell(c, "curl -sS --max-time 10 --cacert %s https://localhost:%d/", certs.wrong, s.port);
    assert_int_equal(st, 60); /* CURLE_PEER_FAILED_VERIFICATION */
    stop_server(&s, t);
    assert_int_equal(s.rc[0], -EPROTO); /* the client's alert ends our handshake */
    assert_non_null(strstr(s.msg[0], "alert"));
    free(c);
    return NULL;
}

static void curl_untrusted_alert_is_eproto(void **state)
{
    NEED_OPENSSL();
    if (!have_program("curl")) skip_visibly("curl is missing (Debian: curl)");
    green(curl_bad_body);
}

static void *python_body(void *arg)
{
    struct srv s;
    ivy_thread *t = start_server(&s, certs.cert, certs.key, 1);
    struct cmd *c = calloc(1, sizeof *c);
    /* Three pipelined requests in one write, through Python's ssl module. */
    int st = shell(c, PYTHON_TLS_PIPELINE, certs.ca, s.port);
    assert_int_equal(st, 0);
    assert_non_null(strstr(c->out, "3 TLSv1.3"));
    stop_server(&s, t);
    assert_int_equal(s.requests, 3);
    free(c);
    return NULL;
}

static void python_ssl_pipelining(void **state)
{
    NEED_OPENSSL();
    if (!have_program("python3")) skip_visibly("python3 is missing (Debian: python3)");
    green(python_body);
}

/* s_client: ALPN, then a second connection offering the saved session, TLS 1.3 and 1.2. */
static void *s_client_body(void *arg)
{
    static const char *const versions[] = {"-tls1_3", "-tls1_2"};
    struct srv s;
    ivy_thread *t = start_server(&s, certs.cert, certs.key, 4);
    struct cmd *c = calloc(1, sizeof *c);
    char sess[160];
    for (int v = 0; v < 2; v++) {
        snprintf(sess, sizeof sess, "%s/sess%d", certs.dir, v);
        for (int round = 0; round < 2; round++) {
            /* -ign_eof: read until the server closes, so the TLS 1.3 ticket is taken in. */
            int st = shell(c,
                           "printf 'GET / HTTP/1.1\\r\\nConnection: close\\r\\n\\r\\n' | "
                           "timeout 10 openssl s_client -ign_eof -connect 127.0.0.1:%d "
                           "-servername localhost -CAfile %s -alpn http/1.1 %s -sess_%s %s",
                           s.port, certs.ca, versions[v], round ? "in" : "out", sess);
            assert_int_equal(st, 0);
            assert_non_null(strstr(c->out, "ALPN protocol: http/1.1"));
            assert_non_null(strstr(c->out, "Verify return code: 0 (ok)"));
            assert_non_null(strstr(c->out, "Hello, World!"));
            assert_non_null(strstr(c->out, round ? "Reused, TLSv1." : "New, TLSv1."));
        }
    }
    stop_server(&s, t);
    for (int i = 0; i < 4; i++)
        assert_int_equal(s.rc[i], 0);
    assert_false(s.resumed[0]);
    assert_true(s.resumed[1]);
    assert_false(s.resumed[2]);
    assert_true(s.resumed[3]);
    free(c);
    return NULL;
}

static void s_client_alpn_and_resumption(void **state)
{
    NEED_OPENSSL();
    green(s_client_body);
}

/* ---- misbehaving peers ------------------------------------------------------------------ */

static void *bad_peers_body(void *arg)
{
    struct srv s;
    ivy_thread *t = start_server(&s, certs.cert, certs.key, 3);
    /* 1: the first bytes of a ClientHello record (announcing 512 bytes), then a reset. */
    int fd = ivy_connect("127.0.0.1", s.port, 5);
    assert_true(fd >= 0);
    static const char part[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    assert_int_equal(ivy_sendall(fd, part, sizeof part - 1), sizeof part - 1);
    ivy_sleep(0.05);
    struct linger lg = {1, 0}; /* close with RST */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    ivy_close(fd);
    /* 2: plain HTTP instead of a ClientHello: refused as a protocol error. */
    fd = ivy_connect("127.0.0.1", s.port, 5);
    static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(ivy_sendall(fd, http, sizeof http - 1), sizeof http - 1);
    char buf[256];
    ivy_recv(fd, buf, sizeof buf); /* the server closes */
    ivy_close(fd);
    /* 3: random bytes that look like nothing. */
    fd = ivy_connect("127.0.0.1", s.port, 5);
    static const char junk[] = "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c";
    assert_int_equal(ivy_sendall(fd, junk, sizeof junk - 1), sizeof junk - 1);
    ivy_recv(fd, buf, sizeof buf);
    ivy_close(fd);
    stop_server(&s, t);
    assert_int_equal(s.rc[0], -ECONNRESET);
    assert_int_equal(s.rc[1], -EPROTO);
    assert_non_null(strstr(s.msg[1], "http request"));
    assert_int_equal(s.rc[2], -EPROTO);
    assert_true(strlen(s.msg[2]) > 4);
    return NULL;
}

static void reset_and_garbage_handshakes(void **state)
{
    NEED_OPENSSL();
    green(bad_peers_body);
}

static void *stall_body(void *arg)
{
    struct srv s;
    ivy_thread *t = start_server(&s, certs.cert, certs.key, 1);
    s.hs_timeout = 0.2;
    int fd = ivy_connect("127.0.0.1", s.port, 5); /* connects, then says nothing */
    assert_true(fd >= 0);
    uint64_t t0 = ivy_now_ns();
    stop_server(&s, t);
    uint64_t waited = ivy_now_ns() - t0;
    assert_int_equal(s.rc[0], -ETIMEDOUT);
    assert_true(waited >= 150000000ull && waited < 5000000000ull);
    ivy_close(fd);
    return NULL;
}

static void stalled_handshake_times_out(void **state)
{
    NEED_OPENSSL();
    green(stall_body);
}

static void *reload_body(void *arg)
{
    char msg[512], cert[160], key[160];
    snprintf(cert, sizeof cert, "%s/live.pem", certs.dir);
    snprintf(key, sizeof key, "%s/live.key", certs.dir);
    struct cmd *c = calloc(1, sizeof *c);
    assert_int_equal(shell(c, "cp %s %s && cp %s %s", certs.wrong, cert, certs.wrong_key, key), 0);
    struct srv s;
    ivy_thread *t = start_server(&s, cert, key, 2);
    ivy_tls_ctx *cl;
    assert_int_equal(ivy_tls_client_new(&cl, certs.ca, 0, msg, sizeof msg), 0);
    assert_int_equal(ivy_get(cl, s.port, "localhost", msg, NULL), -EPROTO);
    /* A half-renewed pair (new certificate, old key) is refused; the old one keeps serving. */
    assert_int_equal(shell(c, "cp %s %s", certs.cert, cert), 0);
    assert_int_equal(ivy_tls_ctx_reload(s.ctx, msg, sizeof msg), -EINVAL);
    assert_non_null(strstr(msg, "does not match the certificate"));
    assert_int_equal(shell(c, "cp %s %s", certs.key, key), 0);
    assert_int_equal(ivy_tls_ctx_reload(s.ctx, msg, sizeof msg), 0);
    assert_int_equal(ivy_get(cl, s.port, "localhost", msg, NULL), 0);
    stop_server(&s, t);
    ivy_tls_ctx_free(cl);
    free(c);
    return NULL;
}

static void reload_rereads_certificate(void **state)
{
    NEED_OPENSSL();
    green(reload_body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(context_errors),
        cmocka_unit_test(record_path_is_named),
        cmocka_unit_test(curl_cacert_keepalive),
        cmocka_unit_test(curl_untrusted_alert_is_eproto),
        cmocka_unit_test(python_ssl_pipelining),
        cmocka_unit_test(s_client_alpn_and_resumption),
        cmocka_unit_test(reset_and_garbage_handshakes),
        cmocka_unit_test(stalled_handshake_times_out),
        cmocka_unit_test(reload_rereads_certificate),
    };
    return ivy_test_exit(cmocka_run_group_tests(tests, tls_setup, tls_teardown));
}
