/* Tests for apps/http_write.c: the Date header, reason phrases (with the parser's error to status
 * mapping they answer), response heads and canned error responses, byte for byte. */
#include <errno.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "http_parse.h"
#include "http_reasons.h"

#define NOV25 ((time_t)1795608000) /* Wed, 25 Nov 2026 12:00:00 GMT */

static void error_statuses_and_reasons(void **state)
{
    assert_int_equal(ivy_http_error_status(-EBADMSG), 400);
    assert_int_equal(ivy_http_error_status(-EFBIG), 413);
    assert_int_equal(ivy_http_error_status(-EMSGSIZE), 431);
    assert_int_equal(ivy_http_error_status(-ENOTSUP), 501);
    assert_int_equal(ivy_http_error_status(-EPROTONOSUPPORT), 505);
    assert_int_equal(ivy_http_error_status(-ENOMEM), 500);
    static const int statuses[] = {100, 200, 204, 304, 400, 404, 408, 413, 431,
                                   500, 501, 503, 505, 299, 432, 600, -1};
    for (size_t i = 0; i < sizeof statuses / sizeof *statuses; i++)
        assert_string_equal(ivy_http_reason(statuses[i]), reason_phrase(statuses[i]));
}

static void date_is_imf_fixdate(void **state)
{
    assert_string_equal(ivy_http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_string_equal(ivy_http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_string_equal(ivy_http_date(1709208000), "Thu, 29 Feb 2024 12:00:00 GMT");
    assert_string_equal(ivy_http_date(253402300799), "Fri, 31 Dec 9999 23:59:59 GMT");
    const char *d = ivy_http_date(NOV25);
    assert_string_equal(d, "Wed, 25 Nov 2026 12:00:00 GMT");
    assert_ptr_equal(ivy_http_date(NOV25), d); /* cached within the second */

    regex_t re;
    assert_int_equal(regcomp(&re,
                             "^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-3][0-9] "
                             "(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
                             "[0-2][0-9]:[0-5][0-9]:[0-6][0-9] GMT$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    d = ivy_http_date(time(NULL));
    assert_int_equal(strlen(d), IVY_HTTP_DATE_LEN);
    assert_int_equal(regexec(&re, d, 0, NULL, 0), 0);
    regfree(&re);
}

static void assert_written(size_t n, const char *out, const char *want)
{
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
}

static void response_head_bytes_are_exact(void **state)
{
    char out[512];
    assert_written(ivy_http_write_head(out, sizeof out, 200, "text/plain", 13, true, 1, NOV25), out,
                   "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: Wed, 25 Nov 2026 12:00:00 GMT\r\n"
                   "Content-Type: text/plain\r\nContent-Length: 13\r\n\r\n");
    assert_written(
        ivy_http_write_head(out, sizeof out, 404, NULL, 0, false, 1, NOV25), out,
        "HTTP/1.1 404 Not Found\r\nServer: ivy\r\nDate: Wed, 25 Nov 2026 12:00:00 GMT\r\n"
        "Content-Length: 0\r\nConnection: close\r\n\r\n");
    assert_written(
        ivy_http_write_head(out, sizeof out, 200, "application/json", SIZE_MAX - 1, true, 0, NOV25),
        out,
        "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: Wed, 25 Nov 2026 12:00:00 GMT\r\n"
        "Content-Type: application/json\r\nContent-Length: 18446744073709551614\r\n"
        "Connection: keep-alive\r\n\r\n");
    /* IVY_HTTP_NO_LENGTH: the caller frames the body itself (chunked, or until the close). */
    assert_written(
        ivy_http_write_head(out, sizeof out, 200, NULL, IVY_HTTP_NO_LENGTH, false, 0, NOV25), out,
        "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: Wed, 25 Nov 2026 12:00:00 GMT\r\n"
        "Connection: close\r\n\r\n");
    assert_written(
        ivy_http_write_head(out, sizeof out, 204, "text/plain", 5, false, 0, NOV25), out,
        "HTTP/1.1 204 No Content\r\nServer: ivy\r\nDate: Wed, 25 Nov 2026 12:00:00 GMT\r\n"
        "Content-Type: text/plain\r\nConnection: close\r\n\r\n");
    assert_written(ivy_http_write_head(out, sizeof out, 299, NULL, 1, true, 1, NOV25), out,
                   "HTTP/1.1 299 \r\nServer: ivy\r\nDate: Wed, 25 Nov 2026 12:00:00 GMT\r\n"
                   "Content-Length: 1\r\n\r\n");
    /* The status line and Date are built once per status and second: the next second, and
     * the same status again after another, are each their own. */
    assert_written(ivy_http_write_head(out, sizeof out, 299, NULL, 1, true, 1, NOV25 + 1), out,
                   "HTTP/1.1 299 \r\nServer: ivy\r\nDate: Wed, 25 Nov 2026 12:00:01 GMT\r\n"
                   "Content-Length: 1\r\n\r\n");
    assert_written(ivy_http_write_head(out, sizeof out, 200, NULL, 2, true, 1, NOV25 + 1), out,
                   "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: Wed, 25 Nov 2026 12:00:01 GMT\r\n"
                   "Content-Length: 2\r\n\r\n");
    assert_written(ivy_http_write_head(out, sizeof out, 200, NULL, 2, true, 1, NOV25), out,
                   "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: Wed, 25 Nov 2026 12:00:00 GMT\r\n"
                   "Content-Length: 2\r\n\r\n");
    /* The server passes the content type's length: only that much of it is written. */
    assert_written(
        ivy__http_write_head(out, sizeof out, 200, "text/html; junk", 9, 3, true, 1, NOV25), out,
        "HTTP/1.1 200 OK\r\nServer: ivy\r\nDate: Wed, 25 Nov 2026 12:00:00 GMT\r\n"
        "Content-Type: text/html\r\nContent-Length: 3\r\n\r\n");
}

static void response_head_respects_cap_and_status_range(void **state)
{
    char out[256];
    size_t n = ivy_http_write_head(out, sizeof out, 200, "text/plain", 13, true, 1, NOV25);
    assert_int_equal(ivy_http_write_head(out, n, 200, "text/plain", 13, true, 1, NOV25), n);
    assert_int_equal(ivy_http_write_head(out, n - 1, 200, "text/plain", 13, true, 1, NOV25), 0);
    assert_int_equal(ivy_http_write_head(out, sizeof out, 99, NULL, 0, true, 1, NOV25), 0);
    assert_int_equal(ivy_http_write_head(out, sizeof out, 1000, NULL, 0, true, 1, NOV25), 0);
    n = ivy_http_write_error(out, sizeof out, 400, false, NOV25);
    assert_int_equal(ivy_http_write_error(out, n, 400, false, NOV25), n);
    assert_int_equal(ivy_http_write_error(out, n - 1, 400, false, NOV25), 0);
}

static void canned_error_responses_are_exact(void **state)
{
    static const int codes[] = {400, 404, 413, 431, 500, 501, 505};
    char out[512], want[512];
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
        const char *r = reason_phrase(codes[i]);
        snprintf(want, sizeof want,
                 "HTTP/1.1 %d %s\r\nServer: ivy\r\nDate: Wed, 25 Nov 2026 12:00:00 GMT\r\n"
                 "Content-Type: text/plain\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n"
                 "%d %s\n",
                 codes[i], r, strlen(r) + 5, codes[i], r);
        assert_written(ivy_http_write_error(out, sizeof out, codes[i], false, NOV25), out, want);
    }
    assert_written(
        ivy_http_write_error(out, sizeof out, 404, true, NOV25), out,
        "HTTP/1.1 404 Not Found\r\nServer: ivy\r\nDate: Wed, 25 Nov 2026 12:00:00 GMT\r\n"
        "Content-Type: text/plain\r\nContent-Length: 14\r\n\r\n404 Not Found\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(error_statuses_and_reasons),
        cmocka_unit_test(date_is_imf_fixdate),
        cmocka_unit_test(response_head_bytes_are_exact),
        cmocka_unit_test(response_head_respects_cap_and_status_range),
        cmocka_unit_test(canned_error_responses_are_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
