/*
 * What a handler reads of its request: the parsed head's fields, query parameters, the peer,
 * and the body, streamed or whole (see http.h). Body bytes already received after the head are
 * taken first; the rest is received under the request timeout, each receive with its own.
 */
#include "server_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum ivy_http_method ivy_http_method(const ivy_http_req *r)
{
    return r->h.method_id;
}

struct ivy_http_slice ivy_http_method_name(const ivy_http_req *r)
{
    return r->h.method;
}

struct ivy_http_slice ivy_http_target(const ivy_http_req *r)
{
    /* From after the method's space to the space before the version: not to the path's end,
     * which is a constant "/" for an absolute-form target without a path ("http://h"). */
    const char *start = r->h.method.p + r->h.method.len + 1;
    const char *end = memchr(start, ' ', (size_t)(r->c->in + r->body_at - start));
    return (struct ivy_http_slice){start, (size_t)(end - start)};
}

struct ivy_http_slice ivy_http_path(const ivy_http_req *r)
{
    return r->h.path;
}

struct ivy_http_slice ivy_http_query(const ivy_http_req *r)
{
    return r->h.query;
}

int ivy_http_version(const ivy_http_req *r)
{
    return 10 + r->h.version_minor;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

ssize_t ivy_http_unescape(struct ivy_http_slice s, bool plus, char *buf, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < s.len; i++, n++) {
        char ch = s.p[i];
        if (ch == '%') {
            if (i + 2 >= s.len) return -EBADMSG;
            int hi = hexval(s.p[i + 1]), lo = hexval(s.p[i + 2]);
            if (hi < 0 || lo < 0) return -EBADMSG;
            ch = (char)(hi << 4 | lo);
            i += 2;
        } else if (ch == '+' && plus) {
            ch = ' ';
        }
        if (n + 1 >= cap) return -ENOSPC;
        buf[n] = ch;
    }
    if (n >= cap) return -ENOSPC;
    buf[n] = 0;
    return (ssize_t)n;
}

/* Whether the encoded key k decodes to name: compared as it decodes, so any length matches. */
static bool key_is(struct ivy_http_slice k, const char *name)
{
    size_t i = 0;
    for (size_t j = 0; j < k.len; j++, i++) {
        char ch = k.p[j];
        if (ch == '%') {
            int hi = j + 2 < k.len ? hexval(k.p[j + 1]) : -1, lo = hi < 0 ? -1 : hexval(k.p[j + 2]);
            if (lo < 0) return false;
            ch = (char)(hi << 4 | lo);
            j += 2;
        } else if (ch == '+') {
            ch = ' ';
        }
        if (!ch || name[i] != ch) return false;
    }
    return !name[i];
}

ssize_t ivy_http_query_param(const ivy_http_req *r, const char *name, char *buf, size_t cap)
{
    const char *q = r->h.query.p;
    if (!q) return -ENOENT; /* no '?' (and no arithmetic on NULL) */
    const char *end = q + r->h.query.len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(stop - q));
        const char *kend = eq ? eq : stop;
        if (key_is((struct ivy_http_slice){q, (size_t)(kend - q)}, name)) {
            struct ivy_http_slice v = {eq ? eq + 1 : stop, eq ? (size_t)(stop - eq - 1) : 0};
            return ivy_http_unescape(v, true, buf, cap);
        }
        q = stop + 1;
    }
    return -ENOENT;
}

const struct ivy_http_slice *ivy_http_header(const ivy_http_req *r, const char *name)
{
    return ivy_http_get_header(&r->h, name);
}

unsigned ivy_http_header_count(const ivy_http_req *r)
{
    return r->h.num_headers;
}

int ivy_http_header_at(const ivy_http_req *r, unsigned i, struct ivy_http_slice *name,
                       struct ivy_http_slice *value)
{
    if (i >= r->h.num_headers) return -ENOENT;
    if (name) *name = r->h.headers[i].name;
    if (value) *value = r->h.headers[i].value;
    return 0;
}

int ivy_http_peer(ivy_http_req *r, struct sockaddr_storage *addr, socklen_t *len)
{
    struct http_conn *c = r->c;
    if (!c->peer_len) {
        socklen_t l = sizeof c->peer;
        if (getpeername(c->fd, (struct sockaddr *)&c->peer, &l) < 0) return -errno;
        c->peer_len = l;
    }
    memcpy(addr, &c->peer, c->peer_len);
    if (len) *len = c->peer_len;
    return 0;
}

struct ivy_http_slice ivy_http_param(const ivy_http_req *r, const char *name)
{
    size_t n = strlen(name);
    for (unsigned i = 0; i < r->nparams; i++)
        if (r->param[i].name.len == n && !memcmp(r->param[i].name.p, name, n))
            return r->param[i].value;
    return (struct ivy_http_slice){NULL, 0};
}

int64_t ivy_http_content_length(const ivy_http_req *r)
{
    return r->h.chunked ? -1 : r->h.content_length;
}

/* The client waits for this before sending the body (RFC 9110 §10.1.1). */
static int send_continue(ivy_http_req *r)
{
    r->expect = false;
    /* Once the final answer is out, an interim one would follow it: the client was told the
     * connection closes, and may send the body or not. */
    if (r->resp != RESP_NONE) return 0;
    int rc = ivy__http_out_put(r->c, IVY_HTTP_CONTINUE, sizeof IVY_HTTP_CONTINUE - 1);
    return rc < 0 ? rc : ivy__http_flush(r->c);
}

/* A body that cannot go on: the connection closes after the response. */
static ssize_t broken(ivy_http_req *r, ssize_t err)
{
    r->close_after = true;
    r->body_end = true;
    r->dec_len = 0;
    return err == 0 ? -ENODATA : err;
}

static ssize_t read_length(ivy_http_req *r, void *buf, size_t len)
{
    struct http_conn *c = r->c;
    size_t want = len < r->left ? len : (size_t)r->left, n = c->len - c->off;
    if (n) {
        n = n < want ? n : want;
        memcpy(buf, c->in + c->off, n);
        c->off += n;
    } else {
        ssize_t got = ivy__http_recv(c, buf, want, c->srv->request);
        if (got <= 0) return broken(r, got);
        n = (size_t)got;
        c->bytes_in += n;
    }
    if (!(r->left -= n)) r->body_end = true;
    return (ssize_t)n;
}

static ssize_t read_chunked(ivy_http_req *r, void *buf, size_t len)
{
    struct http_conn *c = r->c;
    for (;;) {
        if (r->dec_len) {
            size_t n = len < r->dec_len ? len : r->dec_len;
            memcpy(buf, c->in + r->dec_at, n);
            r->dec_at += n;
            r->dec_len -= n;
            return (ssize_t)n;
        }
        if (r->body_end) return 0;
        if (c->off < c->len) {
            /* Decoded in place: the body bytes land at in[off, off + n). */
            size_t consumed, n;
            int rc =
                ivy_http_chunked_decode(&c->ch, c->in + c->off, c->len - c->off, &consumed, &n);
            if (rc < 0) return broken(r, rc);
            r->dec_at = c->off;
            r->dec_len = n;
            c->off += consumed; /* the whole input unless the body ended: the next request */
            if (rc == 1) r->body_end = true;
            continue;
        }
        /* Everything after the head is consumed: receive right after it, where run() made
         * room (the head and the slices into it stay where they are). */
        c->off = c->len = r->body_at;
        ssize_t got = ivy__http_recv(c, c->in + c->len, c->cap - c->len, c->srv->request);
        if (got <= 0) return broken(r, got);
        c->len += (size_t)got;
        c->bytes_in += (uint64_t)got;
    }
}

ssize_t ivy_http_read(ivy_http_req *r, void *buf, size_t len)
{
    if (r->body == BODY_NONE || !len) return 0;
    if (r->expect) {
        int rc = send_continue(r);
        if (rc < 0) return broken(r, rc);
    }
    if (r->body == BODY_LENGTH) return r->body_end ? 0 : read_length(r, buf, len);
    return read_chunked(r, buf, len);
}

ssize_t ivy_http_body(ivy_http_req *r, const char **body)
{
    struct http_conn *c = r->c;
    *body = "";
    if (r->body == BODY_NONE) return 0;
    if (r->expect) {
        int rc = send_continue(r);
        if (rc < 0) return broken(r, rc);
    }
    if (r->body == BODY_LENGTH && c->off + r->left <= c->cap) {
        /* It fits after what is buffered: receive it there, no copy. */
        while (c->len - c->off < r->left) {
            ssize_t got = ivy__http_recv(c, c->in + c->len, c->cap - c->len, c->srv->request);
            if (got <= 0) return broken(r, got);
            c->len += (size_t)got;
            c->bytes_in += (uint64_t)got;
        }
        *body = c->in + c->off;
        size_t n = (size_t)r->left;
        c->off += n;
        r->left = 0;
        r->body_end = true;
        return (ssize_t)n;
    }
    size_t cap = r->body == BODY_LENGTH ? (size_t)r->left : IVY_HTTP_IN_SIZE, len = 0;
    char *b = malloc(cap ? cap : 1);
    if (!b) return -ENOMEM;
    free(r->whole);
    r->whole = b;
    for (;;) {
        if (len == cap) {
            /* Chunked: the decoder refuses what passes the limit, so this stays bounded. */
            if (!(b = realloc(r->whole, cap *= 2))) return -ENOMEM;
            r->whole = b;
        }
        ssize_t n = ivy_http_read(r, b + len, cap - len);
        if (n < 0) return n;
        if (n == 0) break;
        len += (size_t)n;
    }
    *body = b;
    return (ssize_t)len;
}

int ivy__http_discard_body(ivy_http_req *r)
{
    size_t cap;
    char *scratch = ivy__http_scratch(&cap);
    ssize_t n;
    /* The answer goes first when the rest of the body must be waited for: a client may wait
     * for it before sending the body (a refused upload), and would otherwise wait for the
     * request timeout. A body already buffered (pipelined) keeps the batch in one send. */
    struct http_conn *c = r->c;
    if ((r->body == BODY_CHUNKED || c->len - c->off < r->left) && ivy__http_flush(c) < 0)
        return -EPIPE;
    while ((n = ivy_http_read(r, scratch, cap)) > 0) {
    }
    return n < 0 ? (int)n : 0;
}

void ivy__http_req_end(ivy_http_req *r)
{
    if (r->whole) { /* most requests read no whole body: not even a call */
        free(r->whole);
        r->whole = NULL;
    }
}
