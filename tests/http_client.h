/*
 * A green client of an in-process HTTP server (the tests of apps/http_app.c and of http/): its
 * own buffer, so that pipelined responses can be read one by one, and responses compared byte
 * for byte after normalise() replaces what varies between runs: the Date value and the pid in
 * X-Ivy-Worker.
 */
#ifndef IVY_TEST_HTTP_CLIENT_H
#define IVY_TEST_HTTP_CLIENT_H

#include <ivy/ivy.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- a client with its own buffer, so that pipelined responses can be read one by one ---- */

struct client {
    int fd;
    size_t len;
    char buf[1 << 21];
};

static inline struct client *client_new(int port)
{
    struct client *c = calloc(1, sizeof *c);
    c->fd = ivy_connect("127.0.0.1", port, 5.0);
    assert_true(c->fd >= 0);
    return c;
}

static inline void client_free(struct client *c)
{
    ivy_close(c->fd);
    free(c);
}

static inline void put(struct client *c, const char *s, size_t n)
{
    assert_int_equal(ivy_sendall(c->fd, s, n), (ssize_t)n);
}
#define PUT(c, lit) put((c), (lit), sizeof(lit) - 1)

/* More bytes into the buffer; false at end of stream. */
static inline bool more(struct client *c)
{
    assert_true(c->len < sizeof c->buf);
    ssize_t n = ivy_recv(c->fd, c->buf + c->len, sizeof c->buf - c->len);
    assert_true(n >= 0);
    c->len += (size_t)n;
    return n > 0;
}

/* Date value and worker pid replaced by placeholders, in place; returns the new length. */
static inline size_t normalise(char *s, size_t n)
{
    char pid[32];
    int pl = snprintf(pid, sizeof pid, "-1/%d\r\n", (int)getpid());
    for (size_t i = 0; i + 6 < n; i++) {
        if (!memcmp(s + i, "\r\nDate: ", 8) && i + 8 + 29 <= n) {
            memmove(s + i + 14, s + i + 37, n - i - 37);
            memcpy(s + i + 8, "<date>", 6);
            n -= 23;
        } else if (!memcmp(s + i, pid, (size_t)pl)) {
            memmove(s + i + 10, s + i + pl, n - i - (size_t)pl);
            memcpy(s + i, "-1/<pid>\r\n", 10);
            n = n + 10 - (size_t)pl;
        }
    }
    return n;
}

/* The next complete response (head and, unless it answers a HEAD, Content-Length body),
 * normalised, NUL-terminated, in a buffer the caller frees; NULL if the stream ends first. */
static inline char *read_response(struct client *c, bool head_only)
{
    char *end;
    while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4)))
        if (!more(c)) return NULL;
    size_t head = (size_t)(end - c->buf) + 4, body = 0;
    char *cl = memmem(c->buf, head, "\r\nContent-Length: ", 18);
    if (cl && !head_only) body = strtoul(cl + 18, NULL, 10);
    while (c->len < head + body)
        if (!more(c)) return NULL;
    char *r = malloc(head + body + 1);
    memcpy(r, c->buf, head + body);
    memmove(c->buf, c->buf + head + body, c->len - head - body);
    c->len -= head + body;
    r[normalise(r, head + body)] = 0;
    return r;
}

static inline char *response(struct client *c)
{
    return read_response(c, false);
}

static inline void expect_reply(struct client *c, const char *want, bool head_only)
{
    char *r = read_response(c, head_only);
    assert_non_null(r);
    assert_string_equal(r, want);
    free(r);
}

static inline void expect_eof(struct client *c)
{
    while (more(c)) {
    }
    assert_int_equal(c->len, 0);
}

/* The interim "100 Continue" comes first: it is checked and taken off the buffer. */
static inline void expect_interim_continue(struct client *c)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    while (c->len < sizeof cont - 1)
        assert_true(more(c));
    assert_memory_equal(c->buf, cont, sizeof cont - 1);
    c->len -= sizeof cont - 1;
    memmove(c->buf, c->buf + sizeof cont - 1, c->len);
}

static inline void expect_response(struct client *c, const char *want)
{
    expect_reply(c, want, false);
}

/* One request on a fresh connection, its response compared whole. */
static inline void exchange(int port, const char *req, const char *want)
{
    struct client *c = client_new(port);
    put(c, req, strlen(req));
    expect_reply(c, want, !strncmp(req, "HEAD ", 5));
    client_free(c);
}

/* Everything until the peer closes, appended to the buffer (NUL-terminated, not normalised). */
static inline size_t read_to_eof(struct client *c)
{
    while (more(c)) {
    }
    c->buf[c->len < sizeof c->buf ? c->len : sizeof c->buf - 1] = 0;
    return c->len;
}

/* ---- real clients (curl, python3) in child processes ------------------------------------- */

/* Whether prog is on PATH: tests that need it skip visibly without it. */
static inline bool have_program(const char *prog)
{
    const char *path = getenv("PATH");
    char file[4096];
    for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
        const char *colon = strchr(p, ':');
        size_t n = colon ? (size_t)(colon - p) : strlen(p);
        snprintf(file, sizeof file, "%.*s/%s", (int)n, p, prog);
        if (access(file, X_OK) == 0) return true;
        p += n + (colon != NULL);
    }
    return false;
}

/*
 * Runs argv (looked up on PATH) with its stdout on a socket this green thread receives from,
 * so that the server on the same hub goes on serving meanwhile; waits for its exit. Its stdout,
 * NUL-terminated, into out (at most cap - 1 bytes kept); returns its exit status (-1 if it did
 * not exit normally).
 */
static inline int run_child(const char *const *argv, char *out, size_t cap, size_t *len)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(sv[1], STDOUT_FILENO);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(sv[1]);
    size_t got = 0;
    ssize_t n;
    char sink[4096];
    while ((n = ivy_recv(sv[0], got + 1 < cap ? out + got : sink,
                         got + 1 < cap ? cap - 1 - got : sizeof sink)) > 0)
        if (got + 1 < cap) got += (size_t)n;
    ivy_close(sv[0]);
    out[got] = 0;
    if (len) *len = got;
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid); /* its stdout is closed: it is exiting */
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif
