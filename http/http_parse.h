/* HTTP/1.1 request parsing and response writing for the HTTP server (http/): pure functions over
 * caller buffers, no allocation, no I/O. The parser returns slices into the caller's buffer, so the
 * buffer must outlive the parsed request. Implemented in parse.c (request heads),
 * chunked.c (chunked bodies) and write.c (responses).
 *
 * Errors are negative errnos, each standing for the status the server answers with:
 *   -EBADMSG          400 malformed request (framing, syntax, duplicate Host/Content-Length)
 *   -EFBIG            413 declared or chunked body above the body limit
 *   -EMSGSIZE         431 head above IVY_HTTP_MAX_HEAD bytes or IVY_HTTP_MAX_HEADERS headers
 *   -ENOTSUP          501 a transfer coding other than chunked (e.g. "gzip, chunked")
 *   -EPROTONOSUPPORT  505 an HTTP version other than 1.0 or 1.1
 * After any error the connection's framing is unknown: answer and close.
 *
 * Strictness choices (RFC 9112 allows leniency in places; we take the strict side):
 *   - Lines end in CRLF; a bare LF or a CR not followed by LF is 400.
 *   - Empty lines before the request line are skipped (RFC 9112 §2.2).
 *   - Whitespace around the method or before a header's colon, and obs-fold, are 400.
 *   - The request-target is origin-form ("/p?q"), absolute-form ("http://h/p"; IPv6
 *     literals unsupported) or "*" for OPTIONS; only RFC 3986 characters, and a '%' must be
 *     followed by two hex digits. CONNECT's authority-form is 400: we are not a proxy.
 *   - Only "HTTP/1.0" and "HTTP/1.1" are served; other well-formed versions (HTTP/1.2,
 *     HTTP/2.0) are 505, though RFC 9110 would let 1.2 be treated as 1.1.
 *   - HTTP/1.1 requires exactly one Host header (missing or duplicate is 400), as nginx does.
 *   - Content-Length must be 1*DIGIT below 2^63; any second Content-Length header is 400,
 *     even with an equal value, as is a list ("5, 5").
 *   - Transfer-Encoding: "chunked" is accepted; chunked not last, or applied twice, is 400
 *     (RFC 9112 §6.3); other codings before chunked are 501; with Content-Length, or in an
 *     HTTP/1.0 request, it is 400 (smuggling defences, RFC 9112 §6.1).
 */
#ifndef IVY_HTTP_PARSE_IMPL_H
#define IVY_HTTP_PARSE_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "ivy/http.h"

#define IVY_HTTP_MAX_HEAD    8192 /* request line + headers + blank line */
#define IVY_HTTP_MAX_HEADERS 100
#define IVY_HTTP_NO_LENGTH   ((size_t)-1) /* ivy_http_write_head: no Content-Length */
#define IVY_HTTP_DATE_LEN    29           /* "Sun, 06 Nov 1994 08:49:37 GMT" */

/* The interim reply to "Expect: 100-continue", sent before reading the body. */
#define IVY_HTTP_CONTINUE "HTTP/1.1 100 Continue\r\n\r\n"

struct ivy_http_header {
    struct ivy_http_slice name, value; /* value has surrounding whitespace trimmed */
};

struct ivy_http_request {
    /* In: largest acceptable body in bytes, 0 for IVY_HTTP_BODY_LIMIT. The parser only reads
     * it, so set it once per connection; zero-initialise the struct otherwise. */
    size_t body_limit;

    /* Out, valid only after a positive return. */
    struct ivy_http_slice method;
    struct ivy_http_slice path;  /* "/a/b", "*", or the path of an absolute-form target */
    struct ivy_http_slice query; /* after '?', without it; p is NULL when there is no '?' */
    enum ivy_http_method method_id;
    int version_minor;      /* 0 or 1 */
    int64_t content_length; /* -1 when absent */
    bool chunked;           /* Transfer-Encoding: chunked; decode with ivy_http_chunked */
    bool keep_alive;        /* 1.1 unless "Connection: close"; 1.0 only with keep-alive */
    bool expect_continue;   /* HTTP/1.1 "Expect: 100-continue" */
    unsigned num_headers;
    struct ivy_http_header headers[IVY_HTTP_MAX_HEADERS];
};

/* Parses one request head from buf. Returns the bytes it spans (request line through the blank
 * line, plus any empty lines before it), 0 if buf holds only a valid prefix of a head shorter
 * than IVY_HTTP_MAX_HEAD, or a negative error (see above). For pipelining, call again at
 * buf + returned + body length. Cost is one pass over the head; a caller re-trying after each
 * read re-scans at most IVY_HTTP_MAX_HEAD bytes. */
int ivy_http_parse_request(const char *buf, size_t len, struct ivy_http_request *req);

/* The method named by m[0, n) (case-sensitive, as methods are), IVY_HTTP_OTHER for the rest. */
enum ivy_http_method ivy__http_method_id(const char *m, size_t n);

/* The status to answer for a parser or decoder error; 500 for any other value. */
int ivy_http_error_status(int err);

/* The first header named name (case-insensitive), or NULL. */
const struct ivy_http_slice *ivy_http_get_header(const struct ivy_http_request *req,
                                                 const char *name);

/* Incremental, in-place decoder of a chunked body (RFC 9112 §7.1). Chunk extensions are checked
 * for stray control bytes and skipped; trailer fields are checked and discarded. */
struct ivy_http_chunked {
    uint64_t remaining; /* bytes left in the current chunk, or its size while parsing it */
    uint64_t total;     /* body bytes decoded so far */
    uint64_t limit;
    uint32_t line; /* bytes in the current size line or in the trailers, to bound them */
    uint8_t state;
};

/* body_limit 0 means IVY_HTTP_BODY_LIMIT. */
void ivy_http_chunked_init(struct ivy_http_chunked *st, size_t body_limit);

/* Decodes buf[0, len) in place: the body bytes it holds are moved to buf[0, *out_len), and
 * *consumed encoded bytes were used. Returns 1 when the body ended (the final CRLF included; the
 * next request starts at buf + *consumed), 0 when more input is needed (then *consumed == len:
 * partial lines are kept in st, so new bytes may be appended right after the decoded ones and
 * decoded from there), or -EBADMSG (400), -EFBIG (413, body above the limit), or -EMSGSIZE
 * (431, trailers above IVY_HTTP_MAX_HEAD). */
int ivy_http_chunked_decode(struct ivy_http_chunked *st, char *buf, size_t len, size_t *consumed,
                            size_t *out_len);

/* "Wed, 25 Nov 2026 12:00:00 GMT" for now, NUL-terminated, IVY_HTTP_DATE_LEN chars. Formatted
 * once per second per thread; the pointer stays valid in this thread until a call with a
 * different second. */
const char *ivy_http_date(time_t now);

/* The reason phrase for status ("Not Found"), "" when we have none. */
const char *ivy_http_reason(int status);

/* Writes "HTTP/1.1 <status> <reason>", Server, Date, Content-Type (unless NULL), Content-Length
 * (except for 1xx and 204, or when content_length is IVY_HTTP_NO_LENGTH), Connection ("close" when
 * !keep_alive, "keep-alive" when keeping an HTTP/1.0 client alive) and the blank line. Returns the
 * bytes written, or 0 if they do not fit in cap or status is outside 100..999. */
size_t ivy_http_write_head(char *out, size_t cap, int status, const char *content_type,
                           size_t content_length, bool keep_alive, int version_minor, time_t now);
/* The same with content_type's length given (type_len bytes; content_type need not end there). */
size_t ivy__http_write_head(char *out, size_t cap, int status, const char *content_type,
                            size_t type_len, size_t content_length, bool keep_alive,
                            int version_minor, time_t now);

/* A complete canned response: the head for status with a text/plain body "<status> <reason>\n"
 * (e.g. "404 Not Found\n"). Same return as ivy_http_write_head. */
size_t ivy_http_write_error(char *out, size_t cap, int status, bool keep_alive, time_t now);

#endif
