/*
 * What a handler writes: the response head (the server's own headers, the server-wide ones, the
 * handler's), a whole body, a streamed one (chunked or of a declared length), or a file region;
 * and what the server does once the handler returns (ivy__http_finish): end a streamed body,
 * answer a handler's error, read past a body nobody read, decide whether the connection lives on.
 */
#include "server_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TE_CHUNKED "Transfer-Encoding: chunked\r\n"
#define TEXT_PLAIN "text/plain"

/* Keep-alive after this response? Decided when its head is written. */
static bool keep_alive(ivy_http_req *r)
{
    /* A body the client was not invited to send (100-continue) may or may not come: close. */
    if (r->expect && !r->body_end) r->close_after = true;
    if (!r->h.keep_alive || ivy__conns.draining) r->close_after = true;
    return !r->close_after;
}

/* The head, into out: status line and the server's headers, the server-wide ones, the
 * handler's, and framing (chunked or not). ctype: tlen bytes, or NULL. clen: Content-Length, or
 * IVY_HTTP_NO_LENGTH. */
static int put_head(struct http_conn *c, ivy_http_req *r, int status, const char *ctype,
                    size_t tlen, size_t clen, bool chunked, bool ka, int minor)
{
    size_t flen = chunked ? sizeof TE_CHUNKED - 1 : 0;
    size_t xh = c->srv->headers_len + (r ? r->xh_len : 0) + flen;
    size_t need = 160 + tlen + xh;
    char *o = ivy__http_out_room(c, need);
    if (!o) return need > IVY_HTTP_OUT_SIZE ? -E2BIG : -EPIPE;
    size_t n = ivy__http_write_head(o, c->out_cap - c->out_len, status, ctype, tlen, clen, ka,
                                    minor, c->now);
    if (!n) return -EINVAL;
    /* Our headers go before the blank line that ends the head. */
    char *p = o + n - 2;
    if (c->srv->headers_len) {
        memcpy(p, c->srv->headers, c->srv->headers_len);
        p += c->srv->headers_len;
    }
    if (r && r->xh_len) {
        memcpy(p, r->xh, r->xh_len);
        p += r->xh_len;
    }
    if (chunked) p = (char *)memcpy(p, TE_CHUNKED, flen) + flen;
    *p++ = '\r';
    *p++ = '\n';
    c->out_len += (size_t)(p - o);
    if (status >= 400) ivy__http_totals.errors++;
    return 0;
}

/* Checks a response's start; *tlen: content_type's length (0 for NULL). */
static int begin(ivy_http_req *r, int status, const char *content_type, size_t *tlen)
{
    if (r->resp != RESP_NONE) return -EALREADY;
    if (status < 200 || status > 999) return -EINVAL;
    /* It goes into the head as it is: no CR or LF that would start a header of its own. One
     * pass both checks and measures it. */
    *tlen = content_type ? strcspn(content_type, "\r\n") : 0;
    if (content_type && content_type[*tlen]) return -EINVAL;
    r->status = status;
    if (status == 204 || status == 304) r->no_body = true;
    return 0;
}

int ivy_http_respond(ivy_http_req *r, int status, const char *content_type, const void *body,
                     size_t len)
{
    size_t tlen;
    int rc = begin(r, status, content_type, &tlen);
    if (rc < 0) return rc;
    rc = put_head(r->c, r, status, content_type, tlen, len, false, keep_alive(r),
                  r->h.version_minor);
    if (rc < 0) return rc;
    r->resp = RESP_DONE;
    if (r->no_body || !len) return 0;
    return ivy__http_out_put(r->c, body, len);
}

int ivy_http_error(ivy_http_req *r, int status)
{
    char body[80];
    int n = snprintf(body, sizeof body, "%d %s\n", status, ivy_http_reason(status));
    return ivy_http_respond(r, status, "text/plain", body, (size_t)n);
}

int ivy__http_error_close(struct http_conn *c, int status)
{
    char body[80];
    int n = snprintf(body, sizeof body, "%d %s\n", status, ivy_http_reason(status));
    c->nreq++;
    int rc =
        put_head(c, NULL, status, TEXT_PLAIN, sizeof TEXT_PLAIN - 1, (size_t)n, false, false, 1);
    return rc < 0 ? rc : ivy__http_out_put(c, body, (size_t)n);
}

int ivy_http_start(ivy_http_req *r, int status, const char *content_type, int64_t length)
{
    size_t tlen;
    int rc = begin(r, status, content_type, &tlen);
    if (rc < 0) return rc;
    size_t clen = length >= 0 ? (size_t)length : IVY_HTTP_NO_LENGTH;
    if (length < 0 && r->h.version_minor == 1 && !r->no_body)
        r->chunked_out = true;
    else if (length < 0 && !r->no_body)
        r->until_close = r->close_after = true; /* HTTP/1.0: the close ends the body */
    rc = put_head(r->c, r, status, content_type, tlen, clen, r->chunked_out, keep_alive(r),
                  r->h.version_minor);
    if (rc < 0) return rc;
    r->out_left = length;
    r->resp = RESP_STARTED;
    return 0;
}

ssize_t ivy_http_write(ivy_http_req *r, const void *buf, size_t len)
{
    if (r->resp != RESP_STARTED) return -EINVAL;
    if (r->out_left >= 0) {
        if ((uint64_t)len > (uint64_t)r->out_left) return -EINVAL;
        r->out_left -= (int64_t)len;
    }
    if (r->no_body || !len) return (ssize_t)len;
    struct http_conn *c = r->c;
    int rc;
    if (r->chunked_out) {
        char size[24];
        int n = snprintf(size, sizeof size, "%zx\r\n", len);
        if ((rc = ivy__http_out_put(c, size, (size_t)n)) < 0) return rc;
    }
    if ((rc = ivy__http_out_put(c, buf, len)) < 0) return rc;
    if (r->chunked_out && (rc = ivy__http_out_put(c, "\r\n", 2)) < 0) return rc;
    return (ssize_t)len;
}

/* TLS: the file must be encrypted, so it goes through userspace, a buffer at a time. */
static ssize_t tls_sendfile(struct http_conn *c, int fd, off_t offset, size_t len)
{
    enum { BUF = 65536 };
    char *b = malloc(BUF);
    if (!b) return -ENOMEM;
    ssize_t rc = 0;
    for (size_t done = 0; done < len;) {
        ssize_t n = ivy_pread(fd, b, len - done < BUF ? len - done : BUF, offset + (off_t)done);
        if (n <= 0) { /* 0: the file is shorter than promised */
            rc = n ? n : -ENODATA;
            break;
        }
        if ((rc = ivy__http_send(c, b, (size_t)n, c->srv->send)) < 0) break;
        done += (size_t)n;
    }
    free(b);
    return rc < 0 ? rc : (ssize_t)len;
}

int ivy_http_sendfile(ivy_http_req *r, int status, const char *content_type, int fd, off_t offset,
                      size_t len)
{
    enum { PIECE = 1 << 20 }; /* each piece must progress within the send timeout */
    if (offset < 0) return -EINVAL;
    int rc = ivy_http_start(r, status, content_type, (int64_t)len);
    if (rc < 0 || r->no_body) return rc;
    struct http_conn *c = r->c;
    if ((rc = ivy__http_flush(c)) < 0) return rc;
    for (size_t done = 0; done < len;) {
        size_t n = len - done < PIECE ? len - done : PIECE;
        struct ivy_timeout to;
        bool scoped = c->srv->send > 0;
        if (scoped && (rc = ivy_timeout_begin(&to, c->srv->send)) < 0) return rc;
        ssize_t s = c->tls ? tls_sendfile(c, fd, offset + (off_t)done, n)
                           : ivy_sendfile(c->fd, fd, offset + (off_t)done, n);
        if (scoped) ivy_timeout_end(&to);
        if (s < 0) return (int)s;
        done += n;
        c->bytes_out += n;
        r->out_left -= (int64_t)n;
    }
    return 0;
}

int ivy_http_flush(ivy_http_req *r)
{
    return ivy__http_flush(r->c);
}

static bool bad_token(const char *s, bool value)
{
    if (!value && !*s) return true;
    for (; *s; s++)
        if (*s == '\r' || *s == '\n' || (!value && (*s == ':' || *s == ' '))) return true;
    return false;
}

int ivy_http_add_header(ivy_http_req *r, const char *name, const char *value)
{
    static const char *const own[] = {"Content-Length", "Transfer-Encoding", "Date", "Server"};
    if (r->resp != RESP_NONE) return -EALREADY;
    if (!name || !value || bad_token(name, false) || bad_token(value, true)) return -EINVAL;
    for (size_t i = 0; i < sizeof own / sizeof *own; i++)
        if (!strcasecmp(name, own[i])) return -EINVAL;
    if (!strcasecmp(name, "Connection")) {
        if (strcasecmp(value, "close")) return -EINVAL;
        r->close_after = true;
        return 0;
    }
    size_t nl = strlen(name), vl = strlen(value), need = r->xh_len + nl + vl + 4;
    if (need > IVY_HTTP_OUT_SIZE / 2) return -E2BIG;
    if (need > r->xh_cap) {
        size_t cap = r->xh_cap ? r->xh_cap * 2 : 256;
        while (cap < need)
            cap *= 2;
        char *b = realloc(r->xh, cap);
        if (!b) return -ENOMEM;
        r->xh = b;
        r->xh_cap = cap;
    }
    char *p = r->xh + r->xh_len;
    memcpy(p, name, nl);
    memcpy(p + nl, ": ", 2);
    memcpy(p + nl + 2, value, vl);
    memcpy(p + nl + 2 + vl, "\r\n", 2);
    r->xh_len = need;
    return 0;
}

/* The client is gone: nothing to answer. */
static bool peer_gone(int rc)
{
    return rc == -ENODATA || rc == -ECONNRESET || rc == -EPIPE || rc == -ESHUTDOWN ||
           rc == -EBADF || rc == -ECANCELED;
}

/* The status that answers a handler's error (http.h): only the body's own errors name one;
 * any other errno, -ENOTSUP included, is the handler's failure. */
static int handler_status(int rc)
{
    switch (rc) {
    case -EBADMSG:
        return 400;
    case -ETIMEDOUT:
        return 408;
    case -EFBIG:
        return 413;
    case -EMSGSIZE: /* chunked trailers above the head's limit */
        return 431;
    }
    return 500;
}

int ivy__http_finish(ivy_http_req *r, int rc)
{
    struct http_conn *c = r->c;
    bool fail = false;
    c->nreq++;
    if (rc < 0 && r->resp == RESP_NONE && !peer_gone(rc)) {
        int status = handler_status(rc);
        /* Only a handler's own failure leaves the request's framing intact; a body it did
         * not read is read past below, as after any answer. */
        if (status != 500) r->close_after = true;
        r->xh_len = 0;
        fail = ivy_http_error(r, status) < 0;
    } else if (rc < 0) {
        fail = true; /* the head went out (or the client left): the framing is broken */
    } else if (r->resp == RESP_NONE) {
        fail = ivy_http_respond(r, 200, NULL, NULL, 0) < 0;
    }
    if (r->resp == RESP_STARTED) {
        /* A failed chunked body gets no last chunk: the close must not look like its end. */
        if (r->chunked_out && !fail)
            fail = ivy__http_out_put(c, "0\r\n\r\n", 5) < 0;
        else if (r->out_left > 0 && !r->no_body)
            fail = true; /* shorter than declared */
        r->resp = RESP_DONE;
    }
    if (!fail && !r->close_after && !r->body_end) fail = ivy__http_discard_body(r) < 0;
    ivy__http_req_end(r);
    if (fail) return -EPIPE;
    return r->close_after ? 1 : 0;
}
