/* Shared by the tests of apps/http_*.c: a table row for a malformed input, its exact length
 * (it may hold NULs), and the status it must be answered with. */
#ifndef IVY_TESTS_HTTP_TEST_H
#define IVY_TESTS_HTTP_TEST_H

#include <stddef.h>

struct bad {
    const char *s;
    size_t len;
    int status;
};
#define BAD(s, st)                                                                                 \
    {                                                                                              \
        (s), sizeof(s) - 1, (st)                                                                   \
    }

#endif
