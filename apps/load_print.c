/*
 * The `ivy load` report: laid out as wrk's (same headings, units and number formats, so a wrk
 * user reads it at a glance), with the percentiles wrk2 adds and the cause of each error kind;
 * or one JSON object for scripts.
 */
#include "load_impl.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const kind_names[IVY_LOAD_NERR] = {"connect", "read",  "write", "timeout",
                                                      "status",  "parse", "tls"};
static const double pcts[] = {50, 75, 90, 99, 99.9, 99.99, 100};

uint64_t ivy_load_succeeded(const struct ivy_load_result *r)
{
    return r->requests - r->errors[IVY_LOAD_ERR_STATUS];
}

/* wrk's format_units: n scaled by `scale` through the unit names, two decimals. */
static const char *units(char *buf, size_t n, double x, double scale, const char *const *u)
{
    while (x >= scale && u[1]) {
        x /= scale;
        u++;
    }
    snprintf(buf, n, "%.2f%s", x, *u);
    return buf;
}

static const char *time_us(char *buf, size_t n, double us)
{
    static const char *const u[] = {"us", "ms", "s", NULL};
    if (us >= 60e6) {
        snprintf(buf, n, "%.2fm", us / 60e6);
        return buf;
    }
    return units(buf, n, us, 1000, u);
}

static const char *metric(char *buf, size_t n, double x)
{
    static const char *const u[] = {"", "k", "M", "G", "T", NULL};
    return units(buf, n, x, 1000, u);
}

static const char *binary(char *buf, size_t n, double x)
{
    static const char *const u[] = {"", "K", "M", "G", "T", "P", NULL};
    return units(buf, n, x, 1024, u);
}

/* wrk's print_units: right-aligned so that the numbers line up whatever the unit's length. */
static void column(const char *s, int width)
{
    size_t len = strlen(s);
    int pad = 2;
    if (len && isalpha((unsigned char)s[len - 1])) pad--;
    if (len > 1 && isalpha((unsigned char)s[len - 2])) pad--;
    printf("%*s%.*s", width - pad, s, pad, "  ");
}

/* Percent of recorded values <= x, by bisecting the percentile function. */
static double percent_below(const ivy_hist *h, double x)
{
    if ((double)ivy_hist_max(h) <= x) return 100;
    if ((double)ivy_hist_min(h) > x) return 0;
    double lo = 0, hi = 100;
    for (int i = 0; i < 40; i++) {
        double mid = (lo + hi) / 2;
        if ((double)ivy_hist_percentile(h, mid) <= x)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Why the first error of a kind happened, in words. */
static const char *cause(const struct ivy_load_opts *o, const struct ivy_load_result *r, int kind,
                         int err, char *buf, size_t n)
{
    if (kind == IVY_LOAD_ERR_TLS && r->tls_error[0]) {
        snprintf(buf, n, "%s", r->tls_error);
    } else if (kind == IVY_LOAD_ERR_STATUS) {
        snprintf(buf, n, "first: %d", err);
    } else if (kind == IVY_LOAD_ERR_TIMEOUT) {
        snprintf(buf, n, "no response within %gs", o->timeout);
    } else if (kind == IVY_LOAD_ERR_PARSE) {
        snprintf(buf, n, "%s",
                 o->echo_size       ? "echoed bytes differ from those sent"
                 : err == -EMSGSIZE ? "response head over 16 KiB"
                                    : "not an HTTP/1.x response, or malformed");
    } else if (err == -ENODATA) {
        snprintf(buf, n, "closed by the server");
    } else {
        snprintf(buf, n, "%s", strerror(-err));
    }
    return buf;
}

void ivy_load_print_header(const struct ivy_load_opts *o, const char *target)
{
    double d = o->duration;
    if (d >= 60 && d == (long)d)
        printf("Running %gm test @ %s\n", d / 60, target);
    else
        printf("Running %gs test @ %s\n", d, target);
    printf("  %u workers and %u connections", ivy__load_workers(o), o->connections);
    if (o->rate > 0) printf(", constant rate %g req/s", o->rate);
    if (o->pipeline > 1) printf(", pipeline %u", o->pipeline);
    if (o->echo_size) printf(", echo %zu bytes", o->echo_size);
    printf("\n");
    fflush(stdout);
}

/* Rate mode: requests whose due time fell within the run, i + k * connections < rate * t. */
static double due(const struct ivy_load_opts *o, const struct ivy_load_result *r)
{
    return ceil(o->rate * (r->elapsed > 0 ? r->elapsed : o->duration) - 1e-9);
}

static void print_text(const struct ivy_load_opts *o, const struct ivy_load_result *r,
                       const char *target)
{
    char a[64], b[160];
    const ivy_hist *h = &r->latency;
    printf("  Worker Stats%6s%11s%8s%12s\n", "Avg", "Stdev", "Max", "+/- Stdev");
    double mean = ivy_hist_mean(h), sd = ivy_hist_stddev(h);
    double within = percent_below(h, mean + sd) - percent_below(h, mean - sd);
    printf("    %-10s", "Latency");
    column(time_us(a, sizeof a, mean / 1e3), 8);
    column(time_us(a, sizeof a, sd / 1e3), 10);
    column(time_us(a, sizeof a, (double)ivy_hist_max(h) / 1e3), 9);
    printf("%8.2f%%\n", ivy_hist_count(h) ? within : 0);
    printf("    %-10s", "Req/Sec");
    column(metric(a, sizeof a, r->rps_mean), 8);
    column(metric(a, sizeof a, r->rps_stdev), 10);
    column(metric(a, sizeof a, r->rps_max), 9);
    printf("%8.2f%%\n", r->rps_within_stdev);
    printf("  Latency Distribution%s\n", o->rate > 0 ? " (from when each request was due)" : "");
    for (size_t i = 0; i < sizeof pcts / sizeof pcts[0]; i++) {
        printf("  %8.3f%%", pcts[i]);
        column(time_us(a, sizeof a, (double)ivy_hist_percentile(h, pcts[i]) / 1e3), 10);
        printf("\n");
    }
    double el = r->elapsed > 0 ? r->elapsed : o->duration;
    printf("  %llu requests in %.2fs, %sB read\n", (unsigned long long)r->requests, el,
           binary(a, sizeof a, (double)r->bytes_read));
    if (o->tls)
        printf("  %llu TLS handshakes (%llu resumed), %.2f handshakes/sec\n",
               (unsigned long long)r->handshakes, (unsigned long long)r->resumed,
               (double)r->handshakes / el);
    if (o->rate > 0) /* a generator that fell behind shows here, not in silence */
        printf("  %llu of %.0f requests due were sent\n", (unsigned long long)r->sent, due(o, r));
    const uint64_t *e = r->errors;
    if (e[IVY_LOAD_ERR_CONNECT] || e[IVY_LOAD_ERR_READ] || e[IVY_LOAD_ERR_WRITE] ||
        e[IVY_LOAD_ERR_TIMEOUT]) {
        printf("  Socket errors:");
        for (int k = IVY_LOAD_ERR_CONNECT; k <= IVY_LOAD_ERR_TIMEOUT; k++) {
            printf("%s %s %llu", k ? "," : "", kind_names[k], (unsigned long long)e[k]);
            if (e[k]) printf(" (%s)", cause(o, r, k, r->first_error[k], b, sizeof b));
        }
        printf("\n");
    }
    if (e[IVY_LOAD_ERR_STATUS])
        printf("  Status >= 400 responses: %llu (%s)\n", (unsigned long long)e[IVY_LOAD_ERR_STATUS],
               cause(o, r, IVY_LOAD_ERR_STATUS, r->first_error[IVY_LOAD_ERR_STATUS], b, sizeof b));
    if (e[IVY_LOAD_ERR_PARSE])
        printf("  %s: %llu (%s)\n", o->echo_size ? "Bad echoes" : "Bad responses",
               (unsigned long long)e[IVY_LOAD_ERR_PARSE],
               cause(o, r, IVY_LOAD_ERR_PARSE, r->first_error[IVY_LOAD_ERR_PARSE], b, sizeof b));
    if (e[IVY_LOAD_ERR_TLS])
        printf("  TLS handshake failures: %llu (%s)\n", (unsigned long long)e[IVY_LOAD_ERR_TLS],
               cause(o, r, IVY_LOAD_ERR_TLS, r->first_error[IVY_LOAD_ERR_TLS], b, sizeof b));
    if (r->workers_failed) printf("  Workers failed: %u\n", r->workers_failed);
    printf("Requests/sec: %9.2f\n", (double)r->requests / el);
    printf("Transfer/sec: %10sB\n", binary(a, sizeof a, (double)r->bytes_read / el));
}

/* s as the body of a JSON string. */
static void json_chars(const char *s)
{
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            printf("\\%c", *c);
        else if (*c < 0x20)
            printf("\\u%04x", *c);
        else
            putchar(*c);
    }
}

static void print_json(const struct ivy_load_opts *o, const struct ivy_load_result *r,
                       const char *target)
{
    char b[160];
    const ivy_hist *h = &r->latency;
    double el = r->elapsed > 0 ? r->elapsed : o->duration;
    printf("{\"target\": \"");
    json_chars(target);
    printf("\", \"mode\": \"%s\", \"workers\": %u, \"connections\": %u, \"duration_s\": %g, "
           "\"rate\": %g, \"pipeline\": %u, \"timeout_s\": %g,\n",
           o->echo_size ? "echo" : "http", r->workers, r->connections, o->duration, o->rate,
           o->pipeline, o->timeout);
    printf(" \"requests\": %llu, \"succeeded\": %llu, \"sent\": %llu, \"due\": %.0f, "
           "\"elapsed_s\": %.6f, "
           "\"requests_per_sec\": %.2f, \"bytes_read\": %llu, \"bytes_written\": %llu, "
           "\"transfer_per_sec\": %.2f, \"connects\": %llu, \"workers_failed\": %u,\n",
           (unsigned long long)r->requests, (unsigned long long)ivy_load_succeeded(r),
           (unsigned long long)r->sent, o->rate > 0 ? due(o, r) : 0, el, (double)r->requests / el,
           (unsigned long long)r->bytes_read, (unsigned long long)r->bytes_written,
           (double)r->bytes_read / el, (unsigned long long)r->connects, r->workers_failed);
    printf(" \"latency_us\": {\"min\": %.3f, \"mean\": %.3f, \"stdev\": %.3f, \"max\": %.3f",
           (double)ivy_hist_min(h) / 1e3, ivy_hist_mean(h) / 1e3, ivy_hist_stddev(h) / 1e3,
           (double)ivy_hist_max(h) / 1e3);
    for (size_t i = 0; i + 1 < sizeof pcts / sizeof pcts[0]; i++) {
        snprintf(b, sizeof b, "p%g", pcts[i]);
        for (char *c = b; *c; c++)
            if (*c == '.') *c = '_';
        printf(", \"%s\": %.3f", b, (double)ivy_hist_percentile(h, pcts[i]) / 1e3);
    }
    printf("},\n \"req_per_sec_per_worker\": {\"mean\": %.2f, \"stdev\": %.2f, \"max\": %.2f},\n",
           r->rps_mean, r->rps_stdev, r->rps_max);
    printf(" \"errors\": {");
    for (int k = 0; k < IVY_LOAD_NERR; k++)
        printf("%s\"%s\": %llu", k ? ", " : "", kind_names[k], (unsigned long long)r->errors[k]);
    printf("},\n \"error_causes\": {");
    for (int k = 0, n = 0; k < IVY_LOAD_NERR; k++)
        if (r->errors[k]) {
            printf("%s\"%s\": \"", n++ ? ", " : "", kind_names[k]);
            json_chars(cause(o, r, k, r->first_error[k], b, sizeof b));
            printf("\"");
        }
    printf("},\n \"tls\": ");
    if (o->tls)
        printf("{\"handshakes\": %llu, \"resumed\": %llu, \"handshakes_per_sec\": %.2f}",
               (unsigned long long)r->handshakes, (unsigned long long)r->resumed,
               (double)r->handshakes / el);
    else
        printf("null");
    printf(",\n \"status\": {");
    for (int k = 1; k < 6; k++)
        printf("%s\"%dxx\": %llu", k > 1 ? ", " : "", k, (unsigned long long)r->status_class[k]);
    printf("}}\n");
}

void ivy_load_print(const struct ivy_load_opts *o, const struct ivy_load_result *r,
                    const char *target, bool json)
{
    if (json)
        print_json(o, r, target);
    else
        print_text(o, r, target);
    fflush(stdout);
}
