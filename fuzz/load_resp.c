/*
 * Fuzz target: the load generator's response framer (apps/load_resp.c). The first input byte
 * chooses how the rest is split; the rest is framed twice, whole and as it would arrive in
 * those pieces (unconsumed bytes kept and appended to, as the worker does). Both must see the
 * same responses (status, close), the same verdict at the end of input and the same answer
 * when the connection then closes. Inputs are kept below the framer's head limit
 * (IVY_LOAD_BUF), where a head's acceptance depends on the buffer the worker has, not the input.
 */
#include "fuzz.h"

#include "load_impl.h"

#include <errno.h>

enum { MAX_RESPONSES = 64 };

struct run {
    int status[MAX_RESPONSES];
    bool close[MAX_RESPONSES];
    int n, rc;
    bool eof;
};

/* Frames what buf[0, len) holds from its start (in one exact-size copy); the bytes consumed. */
static size_t frame(struct ivy_load_resp *r, struct run *out, const char *buf, size_t len)
{
    char *b = fuzz_dup(buf, len);
    size_t pos = 0;
    for (;;) {
        size_t used = 0;
        int rc = ivy_load_resp_parse(r, b + pos, len - pos, &used);
        CHECK(rc == 0 || rc == 1 || rc == -EBADMSG || rc == -EMSGSIZE);
        out->rc = rc;
        if (rc < 0) break;
        CHECK(used <= len - pos);
        pos += used;
        if (rc == 0) break;
        CHECK(r->status >= 100 && r->status <= 999);
        if (out->n < MAX_RESPONSES) {
            out->status[out->n] = r->status;
            out->close[out->n] = r->close;
        }
        out->n++;
    }
    free(b);
    return pos;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > IVY_LOAD_BUF / 2) return 0;
    uint32_t seed = data[0];
    const char *in = (const char *)data + 1;
    size_t n = size - 1;

    struct ivy_load_resp r;
    struct run whole = {0}, split = {0};
    ivy_load_resp_init(&r);
    frame(&r, &whole, in, n);
    if (whole.rc == 0) whole.eof = ivy_load_resp_eof(&r);

    ivy_load_resp_init(&r);
    size_t base = 0, fed = 0; /* unconsumed input: in[base, fed) */
    while (fed < n) {
        fed += fuzz_piece(&seed, n - fed);
        base += frame(&r, &split, in + base, fed - base);
        if (split.rc < 0) break;
    }
    if (split.rc == 0) split.eof = ivy_load_resp_eof(&r);

    CHECK(split.n == whole.n);
    for (int i = 0; i < whole.n && i < MAX_RESPONSES; i++)
        CHECK(split.status[i] == whole.status[i] && split.close[i] == whole.close[i]);
    CHECK(split.rc == whole.rc);
    CHECK(split.eof == whole.eof);
    return 0;
}
