/*
 * Fuzz target: the chunked body decoder (http/chunked.c). The first two input bytes choose the
 * body limit and how the rest is split; the rest is decoded twice, whole and in those pieces
 * (each appended right after the bytes decoded so far, as the server does). Both must agree:
 * the same result, the same encoded bytes consumed, the same body bytes out. Every call must
 * keep its promises: consumed <= given, out <= consumed, consumed == given when it needs more.
 */
#include "fuzz.h"

#include "http_parse.h"

#include <errno.h>

static bool documented(int rc)
{
    return rc == 0 || rc == 1 || rc == -EBADMSG || rc == -EFBIG || rc == -EMSGSIZE;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    size_t limit = data[0] & 1 ? 0 : (size_t)(data[0] >> 1) * 16; /* 0: the default limit */
    uint32_t seed = data[1];
    const char *in = (const char *)data + 2;
    size_t n = size - 2;

    /* Whole. */
    struct ivy_http_chunked st;
    ivy_http_chunked_init(&st, limit);
    char *whole = fuzz_dup(in, n);
    size_t consumed1 = 0, out1 = 0;
    int rc1 = ivy_http_chunked_decode(&st, whole, n, &consumed1, &out1);
    CHECK(documented(rc1));
    if (rc1 >= 0) {
        CHECK(consumed1 <= n && out1 <= consumed1);
        if (rc1 == 0) CHECK(consumed1 == n);
    }

    /* In pieces, each in an exact-size buffer after the body decoded so far. */
    ivy_http_chunked_init(&st, limit);
    char *body = malloc(n ? n : 1);
    CHECK(body);
    size_t decoded = 0, pos = 0;
    int rc2 = 0;
    while (pos < n) {
        size_t k = fuzz_piece(&seed, n - pos);
        char *b = malloc(decoded + k);
        CHECK(b);
        memcpy(b, body, decoded);
        memcpy(b + decoded, in + pos, k);
        size_t consumed = 0, out = 0;
        rc2 = ivy_http_chunked_decode(&st, b + decoded, k, &consumed, &out);
        CHECK(documented(rc2));
        if (rc2 >= 0) {
            CHECK(consumed <= k && out <= consumed);
            if (rc2 == 0) CHECK(consumed == k);
            memcpy(body + decoded, b + decoded, out);
            decoded += out;
            pos += consumed;
        }
        free(b);
        if (rc2 != 0) break;
    }
    CHECK(rc2 == rc1);
    if (rc1 >= 0) {
        CHECK(pos == consumed1 && decoded == out1);
        CHECK(!memcmp(body, whole, out1));
        if (rc1 == 1) CHECK(st.total == out1); /* total counts sizes as they are read */
    }
    free(body);
    free(whole);
    return 0;
}
