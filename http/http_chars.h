/* Character classes shared by the request parser (http_parse.c) and the chunked decoder
 * (http_chunked.c): one 256-byte table, so that a class test is one load and no call. Each file
 * that includes this gets its own copy of the table, which keeps it a compile-time constant.
 */
#ifndef IVY_APPS_HTTP_CHARS_H
#define IVY_APPS_HTTP_CHARS_H

#include <stdbool.h>
#include <stdint.h>

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

#endif
