/*
 * Fuzz target: the HTTP request-head parser (http/parse.c), as the server calls it on a
 * connection's bytes: one head, then the pipelined heads after it, skipping Content-Length
 * bodies. Beyond "no crash, no undefined behaviour", it checks what the header promises: the
 * error is one of the documented ones; a parsed head spans at most the input, its slices lie
 * inside it; the same bytes alone parse to the same length, and one byte fewer is a valid
 * prefix (0), so the answer never depends on what follows a head or on where a read ended.
 */
#include "fuzz.h"

#include "http_parse.h"

#include <errno.h>
#include <stdbool.h>

static bool inside(struct ivy_http_slice s, const char *buf, size_t len)
{
    if (!s.p) return s.len == 0;
    return s.p >= buf && s.len <= len && (size_t)(s.p - buf) <= len - s.len;
}

static bool documented(int rc)
{
    return rc == 0 || rc == -EBADMSG || rc == -EFBIG || rc == -EMSGSIZE || rc == -ENOTSUP ||
           rc == -EPROTONOSUPPORT;
}

static const char *const names[] = {NULL,  "GET",    "HEAD",    "POST",
                                    "PUT", "DELETE", "OPTIONS", "PATCH"};

static void check_request(const struct ivy_http_request *q, const char *buf, size_t n)
{
    CHECK(inside(q->method, buf, n) && q->method.len > 0);
    /* An absolute-form target without a path ("http://h?q") has the path "/", not in buf. */
    CHECK((inside(q->path, buf, n) && q->path.len > 0) ||
          (q->path.len == 1 && q->path.p[0] == '/'));
    CHECK(inside(q->query, buf, n));
    CHECK(q->version_minor == 0 || q->version_minor == 1);
    CHECK(q->content_length >= -1);
    CHECK(!(q->chunked && q->content_length >= 0));
    CHECK(q->num_headers <= IVY_HTTP_MAX_HEADERS);
    for (unsigned i = 0; i < q->num_headers; i++) {
        CHECK(inside(q->headers[i].name, buf, n) && q->headers[i].name.len > 0);
        CHECK(inside(q->headers[i].value, buf, n));
    }
    CHECK(q->method_id >= IVY_HTTP_OTHER && q->method_id <= IVY_HTTP_PATCH);
    if (q->method_id != IVY_HTTP_OTHER) {
        const char *m = names[q->method_id];
        CHECK(q->method.len == strlen(m) && !memcmp(q->method.p, m, q->method.len));
    }
    if (q->version_minor == 1) CHECK(ivy_http_get_header(q, "host") != NULL);
}

/* Parses buf[0, n) from an exact-size copy; with `prefix`, n is known to end a valid head. */
static int parse_copy(const char *buf, size_t n, struct ivy_http_request *q)
{
    char *b = fuzz_dup(buf, n);
    memset(q, 0, sizeof *q);
    int rc = ivy_http_parse_request(b, n, q);
    free(b);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    static struct ivy_http_request q, again; /* ~3 KiB each: off the stack */
    size_t off = 0;
    for (int heads = 0; heads < 16 && off < size; heads++) {
        size_t n = size - off;
        memset(&q, 0, sizeof q);
        int rc = ivy_http_parse_request(buf + off, n, &q);
        CHECK(rc > 0 || documented(rc));
        CHECK(ivy_http_error_status(rc) >= 400 || rc >= 0);
        if (rc == 0) CHECK(n < IVY_HTTP_MAX_HEAD);
        if (rc <= 0) break;
        CHECK((size_t)rc <= n && rc <= IVY_HTTP_MAX_HEAD);
        check_request(&q, buf + off, (size_t)rc);
        /* The head alone: the same length; one byte short of it: a valid prefix. */
        CHECK(parse_copy(buf + off, (size_t)rc, &again) == rc);
        CHECK(again.num_headers == q.num_headers && again.content_length == q.content_length &&
              again.chunked == q.chunked && again.keep_alive == q.keep_alive);
        CHECK(parse_copy(buf + off, (size_t)rc - 1, &again) == 0);
        off += (size_t)rc;
        if (q.chunked) break; /* the chunked decoder has its own target */
        if (q.content_length > 0) {
            if ((uint64_t)q.content_length > size - off) break;
            off += (size_t)q.content_length;
        }
    }
    return 0;
}
