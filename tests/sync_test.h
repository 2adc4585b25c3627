/*
 * Shared by the tests of the sync primitives and pools: cmocka, an order log that green
 * threads append to (exact interleavings are what these tests pin), and int <-> item casts.
 */
#ifndef IVY_TESTS_SYNC_TEST_H
#define IVY_TESTS_SYNC_TEST_H

#include <ivy/ivy.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static char order[256];
static size_t norder;

static inline void note(char c)
{
    order[norder++] = c;
    order[norder] = 0;
}

static inline void reset(void)
{
    norder = 0;
    order[0] = 0;
}

#define P(x)  ((void *)(intptr_t)(x))
#define I(pt) ((int)(intptr_t)(pt))

#endif
