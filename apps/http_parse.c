/* HTTP/1.1 request head parser, chunked body decoder, response head writer.
 *
 * The parser makes one pass over the head with no per-byte calls: character classes come from
 * one 256-byte table, and header names and values are scanned a block at a time. It never reads
 * past min(len, IVY_HTTP_MAX_HEAD), so a partial head costs at most that much to re-scan, and a
 * client that sends IVY_HTTP_MAX_HEAD bytes without finishing its head gets 431 at once rather
 * than making the server buffer more. Every check is made only on complete syntax elements, so
 * a valid prefix always yields 0, never an error.
 */
#include "http_parse.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

enum { C_TOKEN = 1, C_TARGET = 2, C_HEX = 4 };

#define ALNUM(f) ['0' ... '9'] = (f) | C_HEX, ['A' ... 'Z'] = (f), ['a' ... 'z'] = (f)
#define TK       C_TOKEN | C_TARGET
/* tchar (RFC 9110 §5.6.2) and the characters of an RFC 3986 path/query. '%' and '?' are handled
 * apart: '%' must start a pct-encoding, and the first '?' ends the path. */
static const uint8_t cls[256] = {
    ALNUM(TK),        ['!'] = TK,       ['$'] = TK,       ['&'] = TK,       ['\''] = TK,
    ['*'] = TK,       ['+'] = TK,       ['-'] = TK,       ['.'] = TK,       ['_'] = TK,
    ['~'] = TK,       ['#'] = C_TOKEN,  ['%'] = C_TOKEN,  ['^'] = C_TOKEN,  ['`'] = C_TOKEN,
    ['|'] = C_TOKEN,  ['('] = C_TARGET, [')'] = C_TARGET, [','] = C_TARGET, [';'] = C_TARGET,
    ['='] = C_TARGET, [':'] = C_TARGET, ['@'] = C_TARGET, ['/'] = C_TARGET,
};
#undef TK
#undef ALNUM

static inline bool is_hex(uint8_t c)
{
    return (cls[c] & C_HEX) || (unsigned)((c | 0x20) - 'a') < 6;
}

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

static enum ivy_http_method method_id(const char *m, size_t n)
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
        req->method_id = method_id(m, p - m);
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

/* Chunked decoder states, in the order a body goes through them; trailer states last. */
enum {
    S_SIZE0, /* first hex digit of a chunk size */
    S_SIZE,  /* more digits, or what ends the size */
    S_BWS,   /* whitespace after the size, before ';' */
    S_EXT,   /* a chunk extension, skipped */
    S_SIZE_LF,
    S_DATA,
    S_DATA_CR,
    S_DATA_LF,
    S_TRAILER, /* start of a trailer line, or the final CRLF */
    S_TNAME,
    S_TVALUE,
    S_TLF,
    S_END_LF,
    S_DONE,
};

/* A size line with extensions: bounds what a client can make us skip. */
#define CHUNK_LINE_MAX 4096

void ivy_http_chunked_init(struct ivy_http_chunked *st, size_t body_limit)
{
    *st = (struct ivy_http_chunked){.limit = body_limit ? body_limit : IVY_HTTP_BODY_LIMIT};
}

static inline bool is_ctl(uint8_t c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

/* One byte of framing (anything but chunk data): 0 to go on, 1 at the end of the body, or an
 * error. Framing is a few bytes per chunk, so byte-at-a-time costs nothing that matters. */
static inline int chunk_byte(struct ivy_http_chunked *st, uint8_t c)
{
    switch (st->state) {
    case S_SIZE0:
    case S_SIZE:
        if (is_hex(c)) {
            if (st->remaining >> 60) return -EBADMSG;
            st->remaining = st->remaining << 4 | (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
            if (st->remaining > st->limit - st->total) return -EFBIG;
            st->state = S_SIZE;
        } else if (st->state == S_SIZE0) {
            return -EBADMSG;
        } else if (c == '\r') {
            st->state = S_SIZE_LF;
        } else if (c == ';') {
            st->state = S_EXT;
        } else if (c == ' ' || c == '\t') {
            st->state = S_BWS;
        } else {
            return -EBADMSG;
        }
        break;
    case S_BWS:
        if (c == ';')
            st->state = S_EXT;
        else if (c != ' ' && c != '\t')
            return -EBADMSG;
        break;
    case S_EXT:
    case S_TVALUE: /* skipped up to the CR, but no stray control bytes */
        if (c == '\r')
            st->state = st->state == S_EXT ? S_SIZE_LF : S_TLF;
        else if (is_ctl(c))
            return -EBADMSG;
        break;
    case S_SIZE_LF:
        if (c != '\n') return -EBADMSG;
        st->line = 0;
        st->total += st->remaining;
        st->state = st->remaining ? S_DATA : S_TRAILER;
        return 0;
    case S_DATA_CR:
    case S_DATA_LF:
        if (c != (st->state == S_DATA_CR ? '\r' : '\n')) return -EBADMSG;
        st->state = st->state == S_DATA_CR ? S_DATA_LF : S_SIZE0;
        return 0;
    case S_TRAILER:
        if (c == '\r')
            st->state = S_END_LF;
        else if (cls[c] & C_TOKEN)
            st->state = S_TNAME;
        else
            return -EBADMSG; /* includes obs-fold */
        break;
    case S_TNAME:
        if (c == ':')
            st->state = S_TVALUE;
        else if (!(cls[c] & C_TOKEN))
            return -EBADMSG;
        break;
    case S_TLF:
        if (c != '\n') return -EBADMSG;
        st->state = S_TRAILER;
        break;
    case S_END_LF:
        if (c != '\n') return -EBADMSG;
        st->state = S_DONE;
        return 1;
    }
    if (st->state >= S_TRAILER) return ++st->line > IVY_HTTP_MAX_HEAD ? -EMSGSIZE : 0;
    return ++st->line > CHUNK_LINE_MAX ? -EBADMSG : 0;
}

int ivy_http_chunked_decode(struct ivy_http_chunked *st, char *buf, size_t len, size_t *consumed,
                            size_t *out_len)
{
    size_t i = 0, o = 0;
    int rc = st->state == S_DONE;
    while (i < len && !rc) {
        if (st->state == S_DATA) { /* the bulk of a body: one memmove per chunk and read */
            size_t n = len - i < st->remaining ? len - i : st->remaining;
            if (o != i) memmove(buf + o, buf + i, n);
            i += n;
            o += n;
            if (!(st->remaining -= n)) st->state = S_DATA_CR;
            continue;
        }
        rc = chunk_byte(st, (uint8_t)buf[i++]);
    }
    *consumed = i;
    *out_len = o;
    return rc;
}

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

size_t ivy_http_write_head(char *out, size_t cap, int status, const char *content_type,
                           size_t content_length, bool keep_alive, int version_minor, time_t now)
{
    if (status < 100 || status > 999) return 0;
    const char *reason = ivy_http_reason(status);
    /* RFC 9110 §8.6: no Content-Length on 1xx or 204. */
    bool has_cl = status >= 200 && status != 204;
    const char *conn = !keep_alive          ? "Connection: close\r\n"
                       : version_minor == 0 ? "Connection: keep-alive\r\n"
                                            : "";
    size_t rlen = strlen(reason), tlen = content_type ? strlen(content_type) : 0;
    size_t clen = digits(content_length), connlen = strlen(conn);
    size_t need = LIT_LEN("HTTP/1.1 200 \r\nServer: ivy\r\nDate: \r\n\r\n") + rlen +
                  IVY_HTTP_DATE_LEN + connlen +
                  (content_type ? LIT_LEN("Content-Type: \r\n") + tlen : 0) +
                  (has_cl ? LIT_LEN("Content-Length: \r\n") + clen : 0);
    if (need > cap) return 0;

    char *p = PUT_LIT(out, "HTTP/1.1 ");
    *p++ = (char)('0' + status / 100);
    *p++ = (char)('0' + status / 10 % 10);
    *p++ = (char)('0' + status % 10);
    *p++ = ' ';
    p = put(p, reason, rlen);
    p = PUT_LIT(p, "\r\nServer: ivy\r\nDate: ");
    p = put(p, ivy_http_date(now), IVY_HTTP_DATE_LEN);
    p = PUT_LIT(p, "\r\n");
    if (content_type) {
        p = PUT_LIT(p, "Content-Type: ");
        p = put(p, content_type, tlen);
        p = PUT_LIT(p, "\r\n");
    }
    if (has_cl) {
        p = PUT_LIT(p, "Content-Length: ");
        uint64_t v = content_length;
        for (size_t i = clen; i--; v /= 10)
            p[i] = (char)('0' + v % 10);
        p = PUT_LIT(p + clen, "\r\n");
    }
    p = put(p, conn, connlen);
    p = PUT_LIT(p, "\r\n");
    return (size_t)(p - out);
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
