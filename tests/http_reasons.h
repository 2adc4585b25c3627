/* The reason phrase each status must carry (RFC 9110 §15), from the tests' own table, so that a
 * wrong phrase in ivy_http_reason() cannot also be what the tests expect. */
#ifndef IVY_TESTS_HTTP_REASONS_H
#define IVY_TESTS_HTTP_REASONS_H

#include <stddef.h>

/* The phrase for status, "" for a status ivy has no phrase for, "?" for one not in the table. */
static inline const char *reason_phrase(int status)
{
    static const struct {
        int status;
        const char *reason;
    } t[] = {{100, "Continue"},
             {200, "OK"},
             {204, "No Content"},
             {304, "Not Modified"},
             {400, "Bad Request"},
             {404, "Not Found"},
             {408, "Request Timeout"},
             {413, "Content Too Large"},
             {431, "Request Header Fields Too Large"},
             {500, "Internal Server Error"},
             {501, "Not Implemented"},
             {503, "Service Unavailable"},
             {505, "HTTP Version Not Supported"},
             {299, ""},
             {432, ""},
             {600, ""},
             {-1, ""}};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        if (t[i].status == status) return t[i].reason;
    return "?";
}

#endif
