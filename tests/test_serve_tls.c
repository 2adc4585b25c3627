/*
 * End-to-end tests of `ivy serve --tls-cert FILE --tls-key FILE`: the real binary, certificates
 * made by the test with openssl, real clients (curl, openssl s_client, Python's ssl), bad files,
 * a handshake that stalls, SIGHUP re-reading a renewed certificate, and a TCP app (echo).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "serve_test.h"
#include "tls_test.h"
#include "util.h"

/* Starts `ivy serve` over TLS with cert/key and extra arguments; returns once every worker is
 * ready. */
static pid_t serve_tls(int port, const char *cert, const char *key, const char *const *extra)
{
    const char *args[32] = {"--tls-cert", cert, "--tls-key", key};
    int n = 4;
    for (; extra && *extra; extra++)
        args[n++] = *extra;
    args[n] = NULL;
    return serve(port, args);
}

static int sh(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return run_cmd(cmd, out, cap);
}

static void bad_files_exit_2_with_one_line(void **state)
{
    NEED_OPENSSL();
    static char out[4096];
    const char *ivy = ivy_binary();
    int port = free_port();
    /* Without --quiet: a worker that started would print a line; none may. */
    assert_int_equal(sh(out, sizeof out,
                        "%s serve --listen 127.0.0.1:%d --tls-cert %s/nope.pem "
                        "--tls-key %s",
                        ivy, port, certs.dir, certs.key),
                     2);
    assert_non_null(strstr(out, "cannot read certificate file"));
    assert_non_null(strstr(out, "nope.pem: No such file or directory"));
    assert_null(strstr(out, "worker"));
    assert_int_equal(strchr(out, '\n') - out + 1, (long)strlen(out)); /* one line */
    assert_int_equal(sh(out, sizeof out,
                        "%s serve --listen 127.0.0.1:%d --tls-cert %s --tls-key %s", ivy, port,
                        certs.cert, certs.wrong_key),
                     2);
    assert_non_null(strstr(out, "does not match the certificate"));
    assert_null(strstr(out, "worker"));
    assert_int_equal(sh(out, sizeof out,
                        "%s serve --listen 127.0.0.1:%d --tls-cert %s --tls-key %s", ivy, port,
                        certs.key, certs.key),
                     2);
    assert_non_null(strstr(out, "not a PEM certificate chain"));
    assert_int_equal(
        sh(out, sizeof out, "%s serve --listen 127.0.0.1:%d --tls-cert %s", ivy, port, certs.cert),
        2);
    assert_non_null(strstr(out, "--tls-cert and --tls-key"));
}

static void curl_keepalive_and_python_pipelining(void **state)
{
    NEED_OPENSSL();
    int port = free_port();
    pid_t sup = serve_tls(port, certs.cert, certs.key, (const char *[]){"--workers", "1", NULL});
    static char out[16384];
    assert_int_equal(sh(out, sizeof out,
                        "curl -sS --max-time 10 --cacert %s https://localhost:%d/ "
                        "https://localhost:%d/",
                        certs.ca, port, port),
                     0);
    assert_string_equal(out, "Hello, World!Hello, World!");
    assert_int_equal(sh(out, sizeof out, PYTHON_TLS_PIPELINE, certs.ca, port), 0);
    assert_non_null(strstr(out, "3 TLSv1.3"));
    stop(sup);
}

/* A keep-alive connection quiet for longer than the hot wait parks with no thread (the HTTP
   server's rule); its TLS state waits with it, and its next request is answered. */
static void quiet_connection_parks_and_answers_over_tls(void **state)
{
    NEED_OPENSSL();
    int port = free_port();
    pid_t sup = serve_tls(port, certs.cert, certs.key, (const char *[]){"--workers", "1", NULL});
    static char out[4096];
    assert_int_equal(
        sh(out, sizeof out,
           "python3 -c 'import socket,ssl,sys,time\n"
           "x=ssl.create_default_context(cafile=sys.argv[1])\n"
           "s=x.wrap_socket(socket.create_connection((\"127.0.0.1\",int(sys.argv[2]))),"
           "server_hostname=\"localhost\")\n"
           "n=0\n"
           "for i in range(2):\n"
           " s.sendall(b\"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n\"); d=b\"\"\n"
           " while not d.endswith(b\"Hello, World!\"): d+=s.recv(4096)\n"
           " n+=1; time.sleep(1.6)\n"
           "print(n)' %s %d",
           certs.ca, port),
        0);
    assert_string_equal(out, "2\n");
    stop(sup);
}

static void s_client_alpn_and_resumption_across_workers(void **state)
{
    NEED_OPENSSL();
    int port = free_port();
    pid_t sup = serve_tls(port, certs.cert, certs.key, (const char *[]){"--workers", "2", NULL});
    static char out[16384];
    char sess[160];
    snprintf(sess, sizeof sess, "%s/serve.sess", certs.dir);
    for (int round = 0; round < 4; round++) { /* 3 resumptions: both workers, whichever answers */
        assert_int_equal(
            sh(out, sizeof out,
               "printf 'GET / HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' | "
               "timeout 10 openssl s_client -ign_eof -connect 127.0.0.1:%d "
               "-servername localhost -CAfile %s -alpn http/1.1 -sess_%s %s",
               port, certs.ca, round ? "in" : "out", sess),
            0);
        assert_non_null(strstr(out, "ALPN protocol: http/1.1"));
        assert_non_null(strstr(out, "Verify return code: 0 (ok)"));
        assert_non_null(strstr(out, "Hello, World!"));
        assert_non_null(strstr(out, round ? "Reused, TLSv1.3" : "New, TLSv1.3"));
    }
    stop(sup);
}

static void stalled_handshake_is_closed_by_request_timeout(void **state)
{
    NEED_OPENSSL();
    int port = free_port();
    pid_t sup = serve_tls(port, certs.cert, certs.key,
                          (const char *[]){"--workers", "1", "--request-timeout", "1", NULL});
    int fd = dial(port);
    assert_true(fd >= 0);
    /* The start of a ClientHello record, then silence. */
    static const char part[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    assert_int_equal(send(fd, part, sizeof part - 1, 0), (ssize_t)(sizeof part - 1));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char buf[256];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) {
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(n == 0 || (n < 0 && errno == ECONNRESET)); /* closed, not our 5 s timeout */
    assert_true(waited > 0.8 && waited < 4.5);
    close(fd);
    stop(sup);
}

/* Verifies localhost through curl with our CA: 0 on success, curl's status otherwise. */
static int curl_ok(int port)
{
    static char out[4096];
    return sh(out, sizeof out, "curl -sS --max-time 5 --cacert %s https://localhost:%d/", certs.ca,
              port);
}

static void sighup_rereads_a_renewed_certificate(void **state)
{
    NEED_OPENSSL();
    char cert[160], key[160];
    static char out[4096];
    snprintf(cert, sizeof cert, "%s/live.pem", certs.dir);
    snprintf(key, sizeof key, "%s/live.key", certs.dir);
    assert_int_equal(
        sh(out, sizeof out, "cp %s %s && cp %s %s", certs.wrong, cert, certs.wrong_key, key), 0);
    int port = free_port();
    pid_t sup = serve_tls(port, cert, key, (const char *[]){"--workers", "2", NULL});
    assert_int_equal(curl_ok(port), 60); /* wrong.example: refused for localhost */
    assert_int_equal(sh(out, sizeof out, "cp %s %s && cp %s %s", certs.cert, cert, certs.key, key),
                     0);
    kill(sup, SIGHUP);
    int rc = -1;
    for (int i = 0; i < 100 && rc != 0; i++) { /* the workers are replaced one at a time */
        sleep_ms(100);
        rc = curl_ok(port);
    }
    assert_int_equal(rc, 0);
    /* A broken renewal (the key of another certificate): refused, the running one stays. */
    assert_int_equal(sh(out, sizeof out, "cp %s %s", certs.wrong_key, key), 0);
    kill(sup, SIGHUP);
    sleep_ms(1500);
    assert_int_equal(curl_ok(port), 0);
    assert_int_equal(kill(sup, 0), 0); /* still running */
    stop(sup);
}

static void echo_app_over_tls(void **state)
{
    NEED_OPENSSL();
    int port = free_port();
    pid_t sup = serve_tls(port, certs.cert, certs.key,
                          (const char *[]){"--app", "echo", "--workers", "1", NULL});
    static char out[4096];
    assert_int_equal(
        sh(out, sizeof out,
           "python3 -c 'import socket,ssl,sys\n"
           "x=ssl.create_default_context(cafile=sys.argv[1])\n"
           "s=x.wrap_socket(socket.create_connection((\"127.0.0.1\",int(sys.argv[2]))),"
           "server_hostname=\"localhost\")\n"
           "got=b\"\"\n"
           "for m in (b\"ping\", b\"x\"*100000):\n"
           " s.sendall(m); d=b\"\"\n"
           " while len(d) < len(m): d+=s.recv(65536)\n"
           " got+=d[:8]\n"
           "print(got)' %s %d",
           certs.ca, port),
        0);
    assert_string_equal(out, "b'pingxxxxxxxx'\n");
    stop(sup);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_files_exit_2_with_one_line),
        cmocka_unit_test(curl_keepalive_and_python_pipelining),
        cmocka_unit_test(quiet_connection_parks_and_answers_over_tls),
        cmocka_unit_test(s_client_alpn_and_resumption_across_workers),
        cmocka_unit_test(stalled_handshake_is_closed_by_request_timeout),
        cmocka_unit_test(sighup_rereads_a_renewed_certificate),
        cmocka_unit_test(echo_app_over_tls),
    };
    return ivy_test_exit(cmocka_run_group_tests(tests, tls_setup, tls_teardown));
}
