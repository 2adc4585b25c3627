/* Tests for apps/http_chunked.c: the chunked body decoder whole, split at every byte, against
 * the body limit and malformed framing, and right after its request head in one buffer. Input is
 * copied into buffers of its exact size so that ASan catches any read past len. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http_parse.h"
#include "http_test.h"

#define LIT(s) (s), (sizeof(s) - 1)

/* Decodes enc in two pieces split at k, appending the second after the first's output as a
 * server does; returns the decoder's last result and leaves the body in out. */
static int decode_split(const char *enc, size_t n, size_t k, size_t limit, char *out,
                        size_t *out_len, size_t *used)
{
    struct ivy_http_chunked st;
    ivy_http_chunked_init(&st, limit);
    char *w = malloc(n ? n : 1);
    size_t c1, o1, c2 = 0, o2 = 0;
    memcpy(w, enc, k);
    int rc = ivy_http_chunked_decode(&st, w, k, &c1, &o1);
    if (rc == 0) {
        assert_int_equal(c1, k);
        memcpy(w + o1, enc + k, n - k);
        rc = ivy_http_chunked_decode(&st, w + o1, n - k, &c2, &o2);
    }
    memcpy(out, w, o1 + o2);
    *out_len = o1 + o2;
    *used = c1 + c2;
    free(w);
    return rc;
}

static void chunked_body_decodes_in_place(void **state)
{
    char buf[] = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET /next";
    struct ivy_http_chunked st;
    size_t used, out;
    ivy_http_chunked_init(&st, 0);
    assert_int_equal(ivy_http_chunked_decode(&st, buf, sizeof buf - 1, &used, &out), 1);
    assert_int_equal(used, sizeof buf - 1 - strlen("GET /next"));
    assert_int_equal(out, 11);
    assert_memory_equal(buf, "hello world", 11);
    assert_string_equal(buf + used, "GET /next");
    /* Done stays done and consumes nothing more. */
    assert_int_equal(ivy_http_chunked_decode(&st, buf + used, 9, &used, &out), 1);
    assert_int_equal(used, 0);
    assert_int_equal(out, 0);
}

static void chunked_extensions_and_trailers_are_skipped(void **state)
{
    static const char enc[] = "A;name=\"q v\"\r\n0123456789\r\n2 ; a=b\r\nxy\r\n"
                              "0;last\r\nTrailer-A: 1\r\nT2:\r\n\r\n";
    char out[64];
    size_t n, used;
    assert_int_equal(decode_split(enc, sizeof enc - 1, sizeof enc - 1, 0, out, &n, &used), 1);
    assert_int_equal(used, sizeof enc - 1);
    assert_int_equal(n, 12);
    assert_memory_equal(out, "0123456789xy", 12);
}

static void chunked_split_at_every_byte_decodes_the_same(void **state)
{
    static const char enc[] = "3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\n";
    size_t len = sizeof enc - 1;
    for (size_t k = 0; k <= len; k++) {
        char out[64];
        size_t n, used;
        assert_int_equal(decode_split(enc, len, k, 0, out, &n, &used), 1);
        assert_int_equal(used, len);
        assert_int_equal(n, 19);
        assert_memory_equal(out, "abc0123456789abcdef", 19);
    }
    /* Byte at a time, each new byte appended right after the decoded ones. */
    char w[sizeof enc];
    struct ivy_http_chunked st;
    size_t dec = 0, used, out;
    int rc = 0;
    ivy_http_chunked_init(&st, 0);
    for (size_t i = 0; i < len; i++) {
        assert_int_equal(rc, 0);
        w[dec] = enc[i];
        rc = ivy_http_chunked_decode(&st, w + dec, 1, &used, &out);
        assert_int_equal(used, 1);
        dec += out;
    }
    assert_int_equal(rc, 1);
    assert_int_equal(dec, 19);
    assert_memory_equal(w, "abc0123456789abcdef", 19);
}

static void chunked_body_limit_gives_413(void **state)
{
    char out[64];
    size_t n, used;
    assert_int_equal(decode_split(LIT("a\r\n0123456789\r\n0\r\n\r\n"), 5, 10, out, &n, &used), 1);
    assert_int_equal(decode_split(LIT("b\r\n0123456789a\r\n0\r\n\r\n"), 5, 10, out, &n, &used),
                     -EFBIG);
    assert_int_equal(
        decode_split(LIT("6\r\n012345\r\n5\r\n01234\r\n0\r\n\r\n"), 12, 10, out, &n, &used),
        -EFBIG);
    assert_int_equal(decode_split(LIT("100001\r\n"), 8, 0, out, &n, &used), -EFBIG);
    assert_int_equal(ivy_http_error_status(-EFBIG), 413);
}

static void malformed_chunked_bodies_map_to_exact_statuses(void **state)
{
    static char huge[2 * IVY_HTTP_MAX_HEAD];
    static const struct bad t[] = {
        BAD("\r\n", 400),
        BAD("g\r\n", 400),
        BAD(";x\r\n", 400),
        BAD("5\nhello\r\n0\r\n\r\n", 400),
        BAD("5\r\nhelloX\r\n0\r\n\r\n", 400),
        BAD("5\r\nhello\n0\r\n\r\n", 400),
        BAD("5 x\r\nhello\r\n", 400),
        BAD("5 \r\nhello\r\n", 400),
        BAD("5;a\x01\r\nhello\r\n", 400),
        BAD("5\rhello", 400),
        BAD("0\r\nBad Name: v\r\n\r\n", 400),
        BAD("0\r\n folded\r\n\r\n", 400),
        BAD("0\r\nT: a\x7f\r\n\r\n", 400),
        BAD("0\r\nT: a\nb\r\n\r\n", 400),
        BAD("0\r\n\rx", 400),
        BAD("-1\r\n", 400),
        BAD("fffffffffffffffff\r\n", 400), /* 17 digits overflow even an unlimited body */
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        char out[64];
        size_t n, used;
        int rc = decode_split(t[i].s, t[i].len, t[i].len, SIZE_MAX, out, &n, &used);
        if (rc >= 0 || ivy_http_error_status(rc) != t[i].status)
            fail_msg("case %zu: got %d, want status %d", i, rc, t[i].status);
    }
    /* A size line or a trailer section that never ends is bounded. */
    struct ivy_http_chunked st;
    size_t used, out;
    memset(huge, 'a', sizeof huge);
    memcpy(huge, "1;", 2);
    ivy_http_chunked_init(&st, 0);
    assert_int_equal(ivy_http_chunked_decode(&st, huge, sizeof huge, &used, &out), -EBADMSG);
    memcpy(huge, "0\r\nX: ", 6);
    ivy_http_chunked_init(&st, 0);
    assert_int_equal(ivy_http_chunked_decode(&st, huge, sizeof huge, &used, &out), -EMSGSIZE);
}

static void chunked_request_then_body_from_one_buffer(void **state)
{
    char buf[] = "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"
                 "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    size_t len = sizeof buf - 1, used, out;
    struct ivy_http_request r = {0};
    struct ivy_http_chunked st;
    int head = ivy_http_parse_request(buf, len, &r);
    assert_int_equal(head, 60);
    assert_true(r.chunked);
    ivy_http_chunked_init(&st, r.body_limit);
    assert_int_equal(ivy_http_chunked_decode(&st, buf + head, len - head, &used, &out), 1);
    assert_int_equal(out, 9);
    assert_memory_equal(buf + head, "Wikipedia", 9);
    assert_int_equal(ivy_http_parse_request(buf + head + used, len - head - used, &r), 27);
    assert_int_equal(head + used + 27, len);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(chunked_body_decodes_in_place),
        cmocka_unit_test(chunked_extensions_and_trailers_are_skipped),
        cmocka_unit_test(chunked_split_at_every_byte_decodes_the_same),
        cmocka_unit_test(chunked_body_limit_gives_413),
        cmocka_unit_test(malformed_chunked_bodies_map_to_exact_statuses),
        cmocka_unit_test(chunked_request_then_body_from_one_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
