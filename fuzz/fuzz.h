/*
 * Shared by the fuzz targets: a check that aborts (libFuzzer and the regression driver both
 * report an abort as a crash, with the input that caused it), exact-size copies (so that ASan
 * sees a read one byte past what the code under test was given), and the splits in which a
 * target feeds its input, derived from the input itself so that a crash replays exactly.
 */
#ifndef IVY_FUZZ_H
#define IVY_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A malloc'd copy of p[0, n) with nothing after it (one byte for n == 0). */
static inline char *fuzz_dup(const void *p, size_t n)
{
    char *b = malloc(n ? n : 1);
    CHECK(b);
    if (n) memcpy(b, p, n);
    return b;
}

/* The length of the next piece of input, 1..left, from a small generator seeded by the input. */
static inline size_t fuzz_piece(uint32_t *seed, size_t left)
{
    *seed = *seed * 1103515245u + 12345u;
    uint32_t r = *seed >> 16;
    size_t n = (r & 3) == 0 ? 1 : (r & 3) == 1 ? 1 + (r >> 2) % 8 : 1 + (r >> 2) % 512;
    return n < left ? n : left;
}

#endif
