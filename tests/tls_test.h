/*
 * Test certificates, made by the test itself with `openssl req` / `openssl x509` (ECDSA P-256)
 * in a fresh temporary directory: a CA, a server certificate for localhost and 127.0.0.1, an
 * expired one and one for another host, all signed by the CA. Plus running a command line and
 * capturing its output.
 */
#ifndef IVY_TEST_TLS_H
#define IVY_TEST_TLS_H

#include <ivy/ivy.h>

#include "skip.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* For sh/shell with (CA file, port): three pipelined GETs in one write through Python's ssl
 * module, the last with Connection: close; prints how many answers came, the TLS version and the
 * ALPN protocol ("3 TLSv1.3 http/1.1"). The answers must end with the server's close_notify: an
 * end of stream without it fails (SSLEOFError). */
#define PYTHON_TLS_PIPELINE                                                                        \
    "python3 -c 'import socket,ssl,sys\n"                                                          \
    "x=ssl.create_default_context(cafile=sys.argv[1])\n"                                           \
    "s=x.wrap_socket(socket.create_connection((\"127.0.0.1\",int(sys.argv[2]))),"                  \
    "server_hostname=\"localhost\",suppress_ragged_eofs=False)\n"                                  \
    "r=b\"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n\"\n"                                             \
    "s.sendall(r*2+r.replace(b\"\\r\\n\\r\\n\",b\"\\r\\nConnection: close\\r\\n\\r\\n\"))\n"       \
    "d=b\"\"\n"                                                                                    \
    "while True:\n"                                                                                \
    " b=s.recv(65536)\n"                                                                           \
    " if not b: break\n"                                                                           \
    " d+=b\n"                                                                                      \
    "print(d.count(b\"Hello, World!\"), s.version(), s.selected_alpn_protocol())' %s %d"

struct tls_certs {
    char dir[64];
    char ca[96], cert[96], key[96], expired[96], wrong[96], wrong_key[96], exp_key[96];
};

/* Runs cmd with sh, its stdout and stderr into out (NUL-terminated); returns the exit status. */
static inline int run_cmd(const char *cmd, char *out, size_t cap)
{
    char full[8192];
    snprintf(full, sizeof full, "( %s ) 2>&1", cmd);
    FILE *f = popen(full, "r");
    if (!f) return -1;
    size_t got = 0, n;
    if (out && cap) {
        while (got + 1 < cap && (n = fread(out + got, 1, cap - 1 - got, f)) > 0)
            got += n;
        out[got] = 0;
    }
    char sink[4096];
    while (fread(sink, 1, sizeof sink, f) > 0) {
    }
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static inline bool have_program(const char *name)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null", name);
    return run_cmd(cmd, NULL, 0) == 0;
}

/* One leaf certificate signed by the CA: name's key in NAME.key, certificate in NAME.pem. */
static inline int sign_leaf(const struct tls_certs *c, const char *name, const char *cn,
                            const char *san, int days)
{
    char cmd[2048], out[4096];
    snprintf(cmd, sizeof cmd,
             "cd %s && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout %s.key -out %s.csr -subj /CN=%s && printf 'subjectAltName=%s\\n' > %s.ext "
             "&& openssl x509 -req -in %s.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-days %d -extfile %s.ext -out %s.pem",
             c->dir, name, name, cn, san, name, name, days, name, name);
    int rc = run_cmd(cmd, out, sizeof out);
    if (rc) fprintf(stderr, "%s\n", out);
    return rc;
}

/* Makes every certificate; 0, or non-zero with openssl's complaint on stderr. */
static inline int make_certs(struct tls_certs *c)
{
    snprintf(c->dir, sizeof c->dir, "/tmp/ivy-tls-XXXXXX");
    if (!mkdtemp(c->dir)) return -1;
    snprintf(c->ca, sizeof c->ca, "%s/ca.pem", c->dir);
    snprintf(c->cert, sizeof c->cert, "%s/server.pem", c->dir);
    snprintf(c->key, sizeof c->key, "%s/server.key", c->dir);
    snprintf(c->expired, sizeof c->expired, "%s/expired.pem", c->dir);
    snprintf(c->exp_key, sizeof c->exp_key, "%s/expired.key", c->dir);
    snprintf(c->wrong, sizeof c->wrong, "%s/wrong.pem", c->dir);
    snprintf(c->wrong_key, sizeof c->wrong_key, "%s/wrong.key", c->dir);
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd,
             "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
             "-nodes -keyout ca.key -out ca.pem -subj /CN=ivy-test-ca -days 2",
             c->dir);
    if (run_cmd(cmd, out, sizeof out)) {
        fprintf(stderr, "%s\n", out);
        return -1;
    }
    /* -days -1: valid from now until yesterday, i.e. expired already. */
    return sign_leaf(c, "server", "localhost", "DNS:localhost,IP:127.0.0.1", 2) ||
           sign_leaf(c, "expired", "localhost", "DNS:localhost,IP:127.0.0.1", -1) ||
           sign_leaf(c, "wrong", "wrong.example", "DNS:wrong.example", 2);
}

static const char hello[] = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!";
static const char hello_close[] =
    "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 13\r\n\r\nHello, World!";

/*
 * Answers every request head on t with hello until the peer closes or sends
 * "Connection: close" (answered first, with hello_close); returns how many it answered.
 */
static inline int tls_answer(ivy_tls *t)
{
    char buf[16384];
    size_t len = 0;
    ssize_t n;
    int count = 0;
    bool close = false;
    while (!close && (n = ivy_tls_read(t, buf + len, sizeof buf - 1 - len)) > 0) {
        len += (size_t)n;
        buf[len] = 0;
        char *end;
        while (!close && (end = strstr(buf, "\r\n\r\n"))) { /* each complete head */
            *end = 0;
            close = strstr(buf, "Connection: close") != NULL;
            count++;
            const char *r = close ? hello_close : hello;
            if (ivy_tls_write(t, r, strlen(r)) < 0) return count;
            len -= (size_t)(end + 4 - buf);
            memmove(buf, end + 4, len + 1);
        }
    }
    return count;
}

/* The certificates of a test program, made once by its group setup. */
static struct tls_certs certs;
static bool have_openssl;

/* Without the openssl command no certificate can be made: a visible skip (tests/skip.h). */
#define NEED_OPENSSL()                                                                             \
    do {                                                                                           \
        if (!have_openssl) skip_visibly("the openssl command is missing (Debian: openssl)");       \
    } while (0)

static inline void remove_certs(struct tls_certs *c)
{
    char cmd[256];
    if (!c->dir[0] || strncmp(c->dir, "/tmp/ivy-tls-", 13)) return;
    snprintf(cmd, sizeof cmd, "rm -rf %s", c->dir);
    run_cmd(cmd, NULL, 0);
}

/* cmocka group setup and teardown: the certificates, or a visible skip of every test. */
static inline int tls_setup(void **state)
{
    have_openssl = have_program("openssl") && make_certs(&certs) == 0;
    return 0;
}

static inline int tls_teardown(void **state)
{
    remove_certs(&certs);
    return 0;
}
#endif
