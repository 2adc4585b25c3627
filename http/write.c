/* HTTP/1.1 response writing: the Date header's IMF-fixdate, reason phrases, response heads and
 * canned error responses. Nothing here allocates or does I/O: each writer measures what it
 * needs first and returns 0, rather than a truncated response, when the caller's buffer is too
 * small.
 */
#include "http_parse.h"

#include <stdio.h>
#include <string.h>

const char *ivy_http_date(time_t now)
{
    static const char days[] = "SunMonTueWedThuFriSat";
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    static __thread struct {
        bool valid;
        time_t t;
        char s[64];
    } c;
    if (c.valid && c.t == now) return c.s;
    struct tm tm;
    if (!gmtime_r(&now, &tm) || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900) {
        time_t epoch = 0; /* unrepresentable in four digits: say something well-formed */
        gmtime_r(&epoch, &tm);
    }
    snprintf(c.s, sizeof c.s, "%.3s, %02d %.3s %04d %02d:%02d:%02d GMT", days + 3 * tm.tm_wday,
             tm.tm_mday, months + 3 * tm.tm_mon, tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec);
    c.t = now;
    c.valid = true;
    return c.s;
}

/* Indexed by status: one load on the response path, for 4 KiB of mostly empty table. */
/* clang-format off */
static const char *const reasons[506] = {
    [100] = "Continue", [101] = "Switching Protocols", [200] = "OK", [201] = "Created",
    [202] = "Accepted", [204] = "No Content", [206] = "Partial Content",
    [301] = "Moved Permanently", [302] = "Found", [303] = "See Other", [304] = "Not Modified",
    [307] = "Temporary Redirect", [308] = "Permanent Redirect", [400] = "Bad Request",
    [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
    [405] = "Method Not Allowed", [408] = "Request Timeout", [409] = "Conflict",
    [411] = "Length Required", [413] = "Content Too Large", [414] = "URI Too Long",
    [415] = "Unsupported Media Type", [417] = "Expectation Failed", [429] = "Too Many Requests",
    [431] = "Request Header Fields Too Large", [500] = "Internal Server Error",
    [501] = "Not Implemented", [502] = "Bad Gateway", [503] = "Service Unavailable",
    [504] = "Gateway Timeout", [505] = "HTTP Version Not Supported",
};
/* clang-format on */

const char *ivy_http_reason(int status)
{
    const char *r = (unsigned)status < sizeof reasons / sizeof *reasons ? reasons[status] : NULL;
    return r ? r : "";
}

static inline char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define PUT_LIT(p, lit) put((p), (lit), sizeof(lit) - 1)
#define LIT_LEN(lit)    (sizeof(lit) - 1)

static size_t digits(uint64_t v)
{
    size_t n = 1;
    for (; v >= 10; v /= 10)
        n++;
    return n;
}

/*
 * The start of every head, "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: ...\r\n", for the
 * status and second last written: built once, then copied whole (the longest reason phrase is
 * 31 bytes, so it is at most 9 + 4 + 31 + 2 + 13 + 6 + 29 + 2 = 96).
 */
static const char *lead(int status, time_t now, size_t *len)
{
    static __thread struct {
        time_t t;
        int status;
        unsigned len;
        char s[96];
    } c;
    if (c.status == status && c.t == now) {
        *len = c.len;
        return c.s;
    }
    const char *reason = ivy_http_reason(status);
    size_t rlen = strlen(reason);
    char *p = PUT_LIT(c.s, "HTTP/1.1 ");
    *p++ = (char)('0' + status / 100);
    *p++ = (char)('0' + status / 10 % 10);
    *p++ = (char)('0' + status % 10);
    *p++ = ' ';
    p = put(p, reason, rlen);
    p = PUT_LIT(p, "\r\nServer: ivy\r\nDate: ");
    p = put(p, ivy_http_date(now), IVY_HTTP_DATE_LEN);
    p = PUT_LIT(p, "\r\n");
    c.len = (unsigned)(p - c.s);
    c.status = status;
    c.t = now;
    *len = c.len;
    return c.s;
}

size_t ivy__http_write_head(char *out, size_t cap, int status, const char *content_type,
                            size_t type_len, size_t content_length, bool keep_alive,
                            int version_minor, time_t now)
{
    static const struct {
        const char *s;
        size_t len;
    } conns[] = {
        {"Connection: close\r\n", LIT_LEN("Connection: close\r\n")},
        {"Connection: keep-alive\r\n", LIT_LEN("Connection: keep-alive\r\n")},
        {"", 0},
    };
    if (status < 100 || status > 999) return 0;
    /* RFC 9110 §8.6: no Content-Length on 1xx or 204. */
    bool has_cl = status >= 200 && status != 204 && content_length != IVY_HTTP_NO_LENGTH;
    const size_t ci = !keep_alive ? 0 : version_minor == 0 ? 1 : 2;
    size_t llen;
    const char *start = lead(status, now, &llen);
    size_t clen = digits(content_length);
    size_t need = llen + LIT_LEN("\r\n") + conns[ci].len +
                  (content_type ? LIT_LEN("Content-Type: \r\n") + type_len : 0) +
                  (has_cl ? LIT_LEN("Content-Length: \r\n") + clen : 0);
    if (need > cap) return 0;

    char *p = put(out, start, llen);
    if (content_type) {
        p = PUT_LIT(p, "Content-Type: ");
        p = put(p, content_type, type_len);
        p = PUT_LIT(p, "\r\n");
    }
    if (has_cl) {
        p = PUT_LIT(p, "Content-Length: ");
        uint64_t v = content_length;
        for (size_t i = clen; i--; v /= 10)
            p[i] = (char)('0' + v % 10);
        p = PUT_LIT(p + clen, "\r\n");
    }
    if (conns[ci].len) p = put(p, conns[ci].s, conns[ci].len); /* mostly none: no call */
    p = PUT_LIT(p, "\r\n");
    return (size_t)(p - out);
}

size_t ivy_http_write_head(char *out, size_t cap, int status, const char *content_type,
                           size_t content_length, bool keep_alive, int version_minor, time_t now)
{
    return ivy__http_write_head(out, cap, status, content_type,
                                content_type ? strlen(content_type) : 0, content_length, keep_alive,
                                version_minor, now);
}

size_t ivy_http_write_error(char *out, size_t cap, int status, bool keep_alive, time_t now)
{
    if (status < 100 || status > 999) return 0;
    const char *reason = ivy_http_reason(status);
    size_t body = 4 + strlen(reason) + 1; /* "404 " reason "\n" */
    size_t n = ivy_http_write_head(out, cap, status, "text/plain", body, keep_alive, 1, now);
    if (!n || cap - n < body) return 0;
    memcpy(out + n, out + LIT_LEN("HTTP/1.1 "), body - 1); /* the status line says it already */
    out[n + body - 1] = '\n';
    return n + body;
}
