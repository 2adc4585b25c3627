/*
 * HTTP/1.x response framing for `ivy load`: where each response ends, its status, and whether
 * the server closes after it. A load generator needs nothing else, so this is memchr over
 * lines plus a look at three header names, not a full parser; bodies are skipped in place.
 *
 * Framing follows RFC 9112 §6.3: 1xx, 204 and 304 have no body; chunked wins over
 * Content-Length; with neither, the body runs to the end of the connection. A response that
 * does not start with "HTTP/1." is refused at the first byte that differs, so a non-HTTP
 * server is reported at once instead of after a timeout.
 */
#include "load_impl.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

enum { MAX_LINE = 4096 }; /* a chunk-size or trailer line longer than this is malformed */

void ivy_load_resp_init(struct ivy_load_resp *r)
{
    *r = (struct ivy_load_resp){.state = IVY_RESP_HEAD};
}

static bool has_token(const char *v, size_t n, const char *tok, size_t tlen)
{
    for (size_t i = 0; i + tlen <= n; i++)
        if (!strncasecmp(v + i, tok, tlen)) return true;
    return false;
}

/* A header line of length n (CR dropped) at p: the framing headers, by their first letter. */
static int header(struct ivy_load_resp *r, const char *p, size_t n, int64_t *clen, bool *chunked)
{
    const char *v;
    size_t vn;
#define NAMED(name)                                                                                \
    (n >= sizeof name - 1 && !strncasecmp(p, name, sizeof name - 1) &&                             \
     (v = p + sizeof name - 1, vn = n - (sizeof name - 1), true))
    switch (p[0] | 0x20) {
    case 'c':
        if (NAMED("content-length:")) {
            while (vn && (*v == ' ' || *v == '\t'))
                v++, vn--;
            while (vn && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
                vn--;
            if (!vn || vn > 18) return -EBADMSG;
            int64_t x = 0;
            for (size_t i = 0; i < vn; i++) {
                if (v[i] < '0' || v[i] > '9') return -EBADMSG;
                x = x * 10 + (v[i] - '0');
            }
            if (*clen >= 0 && *clen != x) return -EBADMSG;
            *clen = x;
        } else if (NAMED("connection:")) {
            if (has_token(v, vn, "close", 5)) r->close = true;
            if (has_token(v, vn, "keep-alive", 10)) r->close = false;
        }
        break;
    case 't':
        if (NAMED("transfer-encoding:") && has_token(v, vn, "chunked", 7)) *chunked = true;
        break;
    }
#undef NAMED
    return 0;
}

/* One head from buf: 1 with the body state set, 0 for more input, or an error. */
static int head(struct ivy_load_resp *r, const char *buf, size_t len, size_t *used)
{
    static const char proto[] = "HTTP/1.";
    if (memcmp(buf, proto, len < 7 ? len : 7)) return -EBADMSG;
    const char *end = buf + len, *nl = memchr(buf, '\n', len);
    if (!nl) return len >= IVY_LOAD_BUF ? -EMSGSIZE : 0;
    /* "HTTP/1.x 200 ..." */
    if (nl - buf < 12 || buf[8] != ' ' || (buf[7] != '0' && buf[7] != '1')) return -EBADMSG;
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9') return -EBADMSG;
        status = status * 10 + (buf[i] - '0');
    }
    if (status < 100) return -EBADMSG;
    r->status = status;
    r->close = buf[7] == '0'; /* HTTP/1.0 closes unless it says keep-alive */
    int64_t clen = -1;
    bool chunked = false;
    const char *p = nl + 1;
    for (;;) {
        nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) return len >= IVY_LOAD_BUF ? -EMSGSIZE : 0;
        size_t n = (size_t)(nl - p);
        if (n && p[n - 1] == '\r') n--;
        if (n == 0) break;
        int rc = header(r, p, n, &clen, &chunked);
        if (rc < 0) return rc;
        p = nl + 1;
    }
    *used = (size_t)(nl + 1 - buf);
    if (status < 200 || status == 204 || status == 304) {
        if (status == 101) return -EBADMSG; /* we never asked to switch protocols */
        r->state = status < 200 ? IVY_RESP_HEAD : IVY_RESP_BODY;
        r->remaining = 0;
        return status < 200 ? 2 : 1; /* 2: an interim response, the real one follows */
    }
    if (chunked) {
        r->state = IVY_RESP_CHUNK_SIZE;
    } else if (clen >= 0) {
        r->state = IVY_RESP_BODY;
        r->remaining = (uint64_t)clen;
    } else {
        r->state = IVY_RESP_UNTIL_EOF;
        r->close = true;
    }
    return 1;
}

/* The line at buf, or NULL for more input; *n excludes CRLF, *next is past it. */
static const char *line(const char *buf, size_t len, size_t *n, size_t *next)
{
    const char *nl = memchr(buf, '\n', len);
    if (!nl) return NULL;
    *n = (size_t)(nl - buf);
    if (*n && buf[*n - 1] == '\r') (*n)--;
    *next = (size_t)(nl + 1 - buf);
    return buf;
}

static int chunk_size(const char *p, size_t n, uint64_t *size)
{
    uint64_t x = 0;
    size_t i = 0;
    for (; i < n; i++) {
        int c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            d = (c | 0x20) - 'a' + 10;
        else
            break;
        if (i >= 15) return -EBADMSG;
        x = x << 4 | (uint64_t)d;
    }
    if (i == 0 || (i < n && p[i] != ';' && p[i] != ' ' && p[i] != '\t')) return -EBADMSG;
    *size = x;
    return 0;
}

int ivy_load_resp_parse(struct ivy_load_resp *r, const char *buf, size_t len, size_t *used)
{
    size_t off = 0, n, next;
    int rc = 0;
    for (;;) {
        const char *p = buf + off;
        size_t left = len - off;
        switch (r->state) {
        case IVY_RESP_HEAD:
            if (!left) { /* rc may still be 2, from an interim response just consumed */
                rc = 0;
                goto out;
            }
            n = 0;
            rc = head(r, p, left, &n);
            off += n;
            if (rc <= 0) goto out;
            if (rc == 2) continue; /* 1xx: the final head comes next */
            break;
        case IVY_RESP_BODY:
        case IVY_RESP_CHUNK_DATA:
            n = left < r->remaining ? left : (size_t)r->remaining;
            off += n;
            r->remaining -= n;
            if (r->remaining) {
                rc = 0;
                goto out;
            }
            if (r->state == IVY_RESP_BODY) goto done;
            r->state = IVY_RESP_CHUNK_END;
            break;
        case IVY_RESP_CHUNK_SIZE:
        case IVY_RESP_CHUNK_END:
        case IVY_RESP_TRAILER:
            if (!line(p, left, &n, &next)) {
                rc = left > MAX_LINE ? -EBADMSG : 0;
                goto out;
            }
            off += next;
            if (r->state == IVY_RESP_CHUNK_END) {
                if (n) {
                    rc = -EBADMSG;
                    goto out;
                }
                r->state = IVY_RESP_CHUNK_SIZE;
            } else if (r->state == IVY_RESP_TRAILER) {
                if (!n) goto done;
            } else {
                if ((rc = chunk_size(p, n, &r->remaining)) < 0) goto out;
                r->state = r->remaining ? IVY_RESP_CHUNK_DATA : IVY_RESP_TRAILER;
            }
            break;
        case IVY_RESP_UNTIL_EOF:
            off = len;
            rc = 0;
            goto out;
        }
    }
done:
    r->state = IVY_RESP_HEAD;
    rc = 1;
out:
    *used = off;
    return rc;
}

bool ivy_load_resp_eof(struct ivy_load_resp *r)
{
    if (r->state != IVY_RESP_UNTIL_EOF) return false;
    r->state = IVY_RESP_HEAD;
    return true;
}
