/* Incremental, in-place decoder of chunked request bodies (RFC 9112 §7.1).
 *
 * All state lives in struct ivy_http_chunked, so input may arrive split anywhere, even inside a
 * size line or a trailer. Chunk data, the bulk of a body, is moved down over the framing with
 * one memmove per chunk and read; framing is handled a byte at a time. Size lines and the
 * trailer section are bounded, so a client cannot make us skip unbounded input, and the size is
 * checked against the body limit as each digit arrives.
 */
#include "http_parse.h"
#include "http_chars.h"

#include <errno.h>
#include <string.h>

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
