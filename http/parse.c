/* HTTP/1.1 request head parser: ivy_http_parse_request, ivy_http_get_header and the error to
 * status mapping. The chunked decoder is in http_chunked.c, the response writer in http_write.c.
 *
 * The parser makes one pass over the head with no per-byte calls: character classes come from
 * one 256-byte table, and header names and values are scanned a block at a time. It never reads
 * past min(len, IVY_HTTP_MAX_HEAD), so a partial head costs at most that much to re-scan, and a
 * client that sends IVY_HTTP_MAX_HEAD bytes without finishing its head gets 431 at once rather
 * than making the server buffer more. Every check is made only on complete syntax elements, so
 * a valid prefix always yields 0, never an error.
 */
#include "http_parse.h"
#include "http_chars.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

static inline uint64_t lower64(const char *s)
{
    uint64_t w;
    memcpy(&w, s, 8);
    return w | 0x2020202020202020ull;
}

static inline uint32_t lower32(const char *s)
{
    uint32_t w;
    memcpy(&w, s, 4);
    return w | 0x20202020u;
}

/* Case-insensitive compare against a lower-case literal of letters, digits, '-', ':' or '/'.
 * Folding with | 0x20 is exact here: the only other bytes it maps onto those are control bytes,
 * which never reach here. A word at a time, ending with an overlapping word: n is a constant at
 * every call, so this unrolls into a few compares against immediates. */
static inline bool eq_lower(const char *s, const char *lit, size_t n)
{
    uint64_t w;
    uint32_t h;
    if (n >= 8) {
        for (size_t i = 0; i + 8 <= n; i += 8)
            if (memcpy(&w, lit + i, 8), lower64(s + i) != w) return false;
        return memcpy(&w, lit + n - 8, 8), lower64(s + n - 8) == w;
    }
    if (n >= 4) {
        if (memcpy(&h, lit, 4), lower32(s) != h) return false;
        return memcpy(&h, lit + n - 4, 4), lower32(s + n - 4) == h;
    }
    for (size_t i = 0; i < n; i++)
        if (((uint8_t)s[i] | 0x20) != (uint8_t)lit[i]) return false;
    return true;
}

#define EQ_LIT(s, n, lit) ((n) == sizeof(lit) - 1 && eq_lower((s), (lit), sizeof(lit) - 1))

/* Block scanners for the two long runs in a head: header values and names. Control bytes are
 * rare and names are mostly letters, so testing a block at once beats a table load per byte. */
#if defined(__SSE2__)
#include <emmintrin.h>
#define BLOCK 16

/* Index in [0, 16] of the first control byte (< 0x20 or DEL) at p. */
static inline unsigned first_ctl(const char *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    __m128i lo = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
    __m128i del = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f));
    return (unsigned)__builtin_ctz((unsigned)_mm_movemask_epi8(_mm_or_si128(lo, del)) | 1u << 16);
}

/* Index in [0, 16] of the first byte at p that is not a letter, digit or '-'. */
static inline unsigned first_not_alnum_dash(const char *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    __m128i l = _mm_sub_epi8(_mm_or_si128(v, _mm_set1_epi8(0x20)), _mm_set1_epi8('a'));
    __m128i d = _mm_sub_epi8(v, _mm_set1_epi8('0'));
    __m128i ok = _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(l, _mm_set1_epi8(25)), l),
                              _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d));
    ok = _mm_or_si128(ok, _mm_cmpeq_epi8(v, _mm_set1_epi8('-')));
    return (unsigned)__builtin_ctz(~(unsigned)_mm_movemask_epi8(ok));
}
#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define BLOCK 8

/* SWAR: the lowest flagged byte of each test is exact (borrows only run upward from a hit). */
static inline unsigned first_ctl(const char *p)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t x, y;
    memcpy(&x, p, 8);
    y = x ^ (0x7f * ones);
    uint64_t hit = ((x - 0x20 * ones) & ~x & highs) | ((y - ones) & ~y & highs);
    return hit ? (unsigned)__builtin_ctzll(hit) >> 3 : 8;
}
#endif

/* First byte of [p, end) that is a control byte other than HTAB (the CR ending a valid value),
 * or end. */
static inline const char *scan_value(const char *p, const char *end)
{
    for (;;) {
#ifdef BLOCK
        unsigned i = BLOCK;
        while (i == BLOCK && end - p >= BLOCK)
            p += i = first_ctl(p);
        if (i == BLOCK)
#endif
            while (p < end && (uint8_t)*p >= 0x20 && *p != 0x7f)
                p++;
        if (p == end || *p != '\t') return p;
        p++;
    }
}

/* First byte of [p, end) that is not a tchar, or end. */
static inline const char *scan_name(const char *p, const char *end)
{
#ifdef __SSE2__
    unsigned i = BLOCK;
    while (i == BLOCK && end - p >= BLOCK)
        p += i = first_not_alnum_dash(p);
#endif
    while (p < end && (cls[(uint8_t)*p] & C_TOKEN))
        p++;
    return p;
}

/* Splits the request-target [t, e), its characters already checked and its first '?' at q (or
 * NULL), into path and query. */
static int split_target(const char *t, const char *e, const char *q, struct ivy_http_request *req)
{
    const char *s = t;
    if (*t == '*') {
        if (e - t != 1 || req->method_id != IVY_HTTP_OPTIONS) return -EBADMSG;
    } else if (*t != '/') { /* absolute-form: scheme "://" authority [path] */
        if (e - t > 7 && eq_lower(t, "http://", 7))
            s = t + 7;
        else if (e - t > 8 && eq_lower(t, "https://", 8))
            s = t + 8;
        else
            return -EBADMSG;
        const char *a = s;
        while (s < e && *s != '/' && *s != '?')
            s++;
        if (s == a || memchr(a, '@', s - a)) return -EBADMSG; /* RFC 9110 §4.2.4: no userinfo */
    }
    const char *pe = q ? q : e;
    req->path = pe > s ? (struct ivy_http_slice){s, pe - s} : (struct ivy_http_slice){"/", 1};
    req->query = q ? (struct ivy_http_slice){q + 1, e - q - 1} : (struct ivy_http_slice){NULL, 0};
    return 0;
}

enum ivy_http_method ivy__http_method_id(const char *m, size_t n)
{
    static const char names[][8] = {"", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
    for (unsigned i = 1; n < 8 && i < sizeof names / sizeof *names; i++)
        if (!names[i][n] && !memcmp(names[i], m, n)) return (enum ivy_http_method)i;
    return IVY_HTTP_OTHER;
}

#define MORE 1 /* parse_request_line ran out of bytes */

/* Parses the request line at *pp in one pass, leaving *pp after its CRLF: 0, MORE or an error. */
static int parse_request_line(const char **pp, const char *end, struct ivy_http_request *req)
{
    const char *p = *pp, *m = p;
    if (end - p >= 4 && !memcmp(p, "GET ", 4)) { /* most requests: one compare */
        p += 3;
        req->method_id = IVY_HTTP_GET;
    } else {
        while (p < end && (cls[(uint8_t)*p] & C_TOKEN))
            p++;
        if (p == end) return MORE;
        if (p == m || *p != ' ') return -EBADMSG;
        req->method_id = ivy__http_method_id(m, p - m);
    }
    req->method = (struct ivy_http_slice){m, p - m};

    const char *t = ++p, *q = NULL;
    for (;; p++) {
        if (p == end) return MORE;
        if (cls[(uint8_t)*p] & C_TARGET) continue;
        if (*p == '?') {
            q = q ? q : p;
        } else if (*p == '%') {
            if (end - p < 3) return MORE;
            if (!is_hex(p[1]) || !is_hex(p[2])) return -EBADMSG;
            p += 2;
        } else {
            break;
        }
    }
    const char *te = p;
    if (te == t || *p++ != ' ') return -EBADMSG;

    /* The version before the target's form, so that an HTTP/2 preface ("PRI * HTTP/2.0") is
     * told 505. One 8-byte compare covers the usual case. */
    if (end - p < 10) return MORE;
    uint64_t v, v11, v10;
    memcpy(&v, p, 8);
    memcpy(&v11, "HTTP/1.1", 8);
    memcpy(&v10, "HTTP/1.0", 8);
    if (v == v11 || v == v10) {
        req->version_minor = p[7] - '0';
    } else {
        if (memcmp(p, "HTTP/", 5) || p[6] != '.' || (unsigned)(p[5] - '0') > 9 ||
            (unsigned)(p[7] - '0') > 9)
            return -EBADMSG;
        return p[8] == '\r' ? -EPROTONOSUPPORT : -EBADMSG;
    }
    if (p[8] != '\r' || p[9] != '\n') return -EBADMSG;
    *pp = p + 10;
    return split_target(t, te, q, req);
}

/* What the framing headers said, checked once the head is complete. */
enum {
    F_HOST = 1,
    F_CL = 2,
    F_TE = 4,
    F_TE_CHUNKED = 8,
    F_TE_OTHER = 16,
    F_CLOSE = 32,
    F_KEEP = 64
};

/* The next non-empty, OWS-trimmed element of the comma-separated list at *s, or NULL. */
static const char *next_element(const char **s, const char *e, size_t *n)
{
    while (*s < e) {
        const char *a = *s, *b = memchr(a, ',', e - a);
        if (!b) b = e;
        *s = b < e ? b + 1 : e;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (b > a) {
            *n = b - a;
            return a;
        }
    }
    return NULL;
}

/* Acts on the few headers the parser itself must understand; dispatch on length first so that
 * ordinary headers cost one switch. */
static int field(const char *n, size_t nl, const char *v, const char *ve, unsigned *f,
                 struct ivy_http_request *req)
{
    size_t len;
    switch (nl) {
    case 4:
        if (!EQ_LIT(n, nl, "host")) break;
        if (*f & F_HOST) return -EBADMSG; /* RFC 9112 §3.2 */
        *f |= F_HOST;
        break;
    case 6:
        if (EQ_LIT(n, nl, "expect") && EQ_LIT(v, (size_t)(ve - v), "100-continue"))
            req->expect_continue = req->version_minor == 1; /* RFC 9110 §10.1.1 */
        break;
    case 10:
        if (!EQ_LIT(n, nl, "connection")) break;
        for (const char *s = v, *el; (el = next_element(&s, ve, &len));) {
            if (EQ_LIT(el, len, "close")) *f |= F_CLOSE;
            if (EQ_LIT(el, len, "keep-alive")) *f |= F_KEEP;
        }
        break;
    case 14: {
        if (!EQ_LIT(n, nl, "content-length")) break;
        if ((*f & F_CL) || v == ve) return -EBADMSG;
        uint64_t x = 0;
        for (const char *s = v; s < ve; s++) {
            unsigned d = (unsigned)(*s - '0');
            if (d > 9 || __builtin_mul_overflow(x, 10, &x) || __builtin_add_overflow(x, d, &x) ||
                x > INT64_MAX)
                return -EBADMSG;
        }
        *f |= F_CL;
        req->content_length = (int64_t)x;
        break;
    }
    case 17:
        if (!EQ_LIT(n, nl, "transfer-encoding")) break;
        *f |= F_TE;
        for (const char *s = v, *el; (el = next_element(&s, ve, &len));) {
            if (*f & F_TE_CHUNKED) return -EBADMSG; /* chunked must be applied last, and once */
            if (EQ_LIT(el, len, "chunked"))
                *f |= F_TE_CHUNKED;
            else
                *f |= F_TE_OTHER;
        }
        break;
    }
    return 0;
}

static int check_framing(unsigned f, struct ivy_http_request *req)
{
    if (req->version_minor == 1 && !(f & F_HOST)) return -EBADMSG;
    if (f & F_TE) {
        if ((f & F_CL) || req->version_minor == 0 || !(f & F_TE_CHUNKED)) return -EBADMSG;
        if (f & F_TE_OTHER) return -ENOTSUP;
        req->chunked = true;
    }
    size_t limit = req->body_limit ? req->body_limit : IVY_HTTP_BODY_LIMIT;
    if (req->content_length > 0 && (uint64_t)req->content_length > limit) return -EFBIG;
    req->keep_alive = !(f & F_CLOSE) && (req->version_minor == 1 || (f & F_KEEP));
    return 0;
}

int ivy_http_parse_request(const char *buf, size_t len, struct ivy_http_request *req)
{
    const char *p = buf, *end = buf + (len < IVY_HTTP_MAX_HEAD ? len : IVY_HTTP_MAX_HEAD);
    /* Running out of bytes means "need more" until the window is full, then "too large". */
    const int more = len >= IVY_HTTP_MAX_HEAD ? -EMSGSIZE : 0;

    while (p < end && *p == '\r') { /* RFC 9112 §2.2: skip CRLFs left after a body */
        if (end - p < 2) return more;
        if (p[1] != '\n') return -EBADMSG;
        p += 2;
    }
    int err = parse_request_line(&p, end, req);
    if (err) return err == MORE ? more : err;
    req->content_length = -1;
    req->chunked = req->expect_continue = false;

    unsigned f = 0;
    unsigned n = 0;
    for (;;) {
        if (p == end) return more;
        if (*p == '\r') {
            if (end - p < 2) return more;
            if (p[1] != '\n') return -EBADMSG;
            p += 2;
            break;
        }
        if (n == IVY_HTTP_MAX_HEADERS) return -EMSGSIZE;
        const char *name = p;
        p = scan_name(p, end);
        if (p == end) return more;
        /* An empty name also catches obs-fold and whitespace before the first field. */
        if (p == name || *p != ':') return -EBADMSG;
        size_t name_len = p - name;
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *v = p;
        p = scan_value(p, end);
        if (p == end) return more;
        if (*p != '\r') return -EBADMSG;
        if (end - p < 2) return more;
        if (p[1] != '\n') return -EBADMSG;
        const char *ve = p;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        p += 2;
        req->headers[n].name = (struct ivy_http_slice){name, name_len};
        req->headers[n].value = (struct ivy_http_slice){v, ve - v};
        n++;
        if ((err = field(name, name_len, v, ve, &f, req))) return err;
    }
    req->num_headers = n;
    if ((err = check_framing(f, req))) return err;
    return (int)(p - buf);
}

int ivy_http_error_status(int err)
{
    switch (err) {
    case -EBADMSG:
        return 400;
    case -EFBIG:
        return 413;
    case -EMSGSIZE:
        return 431;
    case -ENOTSUP:
        return 501;
    case -EPROTONOSUPPORT:
        return 505;
    }
    return 500;
}

const struct ivy_http_slice *ivy_http_get_header(const struct ivy_http_request *req,
                                                 const char *name)
{
    size_t n = strlen(name);
    for (unsigned i = 0; i < req->num_headers; i++) {
        const struct ivy_http_slice *h = &req->headers[i].name;
        if (h->len == n && !strncasecmp(h->p, name, n)) return &req->headers[i].value;
    }
    return NULL;
}
