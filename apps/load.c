/*
 * `ivy load`: the command line. Parses the target and options (wrk's spellings where wrk has
 * one: -c, -d, -t for workers, -H, --timeout, --latency), runs ivy_load_run, prints the report
 * and turns the outcome into an exit status. The generator itself is apps/load_run.c.
 */
#include "load_impl.h"

#include <ivy/tls.h>

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const char usage[] =
    "usage: ivy load HOST:PORT[/path] [options]\n"
    "       ivy load http://HOST[:PORT][/path] [options]\n"
    "       ivy load https://HOST[:PORT][/path] [options]\n"
    "\n"
    "Sends HTTP/1.1 GET requests on keep-alive connections (or, with --echo, raw messages\n"
    "that must come back unchanged) for a fixed time, then reports latency and throughput.\n"
    "\n"
    "  -c, --connections N  connections kept open, over all workers (default 10)\n"
    "  -d, --duration T     how long to run: 10, 10s, 500ms, 2m (default 10s)\n"
    "  -R, --rate R         constant rate over all connections, requests/s (10000, 10k);\n"
    "                       latency is counted from when each request was due (wrk2's\n"
    "                       correction of coordinated omission). Default: closed loop,\n"
    "                       each connection sends again as soon as it is answered\n"
    "  -t, --workers N      worker processes, each pinned to one CPU and running one hub\n"
    "                       (default: the CPUs this process may run on)\n"
    "  -p, --pipeline N     requests sent back to back per connection (closed loop only)\n"
    "  -e, --echo SIZE      raw echo mode: send SIZE bytes (512, 4k, 1M), expect them back\n"
    "  -H, --header H       add a request header, \"Name: value\" (repeatable)\n"
    "      --timeout T      a request unanswered after T counts as a timeout (default 2s)\n"
    "      --json           print one JSON object instead of the report\n"
    "  -k, --insecure       https: accept any certificate for any name\n"
    "      --cacert FILE    https: trust the certificates in FILE (PEM), not the system's\n"
    "      --no-resume      https: a full handshake on every connection (default: resume\n"
    "                       the session the previous connection was given)\n"
    "      --latency        accepted for wrk compatibility: the distribution is always shown\n"
    "  -h, --help           this text\n"
    "\n"
    "Errors are counted by kind: connect, read, write, timeout, status (HTTP >= 400) and\n"
    "bad responses (not HTTP, or echoes that differ). A progress line goes to stderr when\n"
    "stdout is a terminal. Exit status: 0 when some request succeeded, 1 when none did,\n"
    "2 for a usage error.\n";

struct cli {
    struct ivy_load_opts o;
    char host[256], host_hdr[300], path[2048], headers[4096], shown[2400];
    size_t headers_len;
    const char *target;
    bool json, user_host;
};

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "ivy load: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\ntry 'ivy load --help'\n");
    return 2;
}

/* "10", "10s", "250ms", "2m", "1h" -> seconds; -1 when malformed. */
static double parse_time(const char *s)
{
    char *end;
    double x = strtod(s, &end);
    if (end == s || !(x >= 0) || isinf(x)) return -1;
    if (!*end || !strcmp(end, "s")) return x;
    if (!strcmp(end, "ms")) return x / 1e3;
    if (!strcmp(end, "us")) return x / 1e6;
    if (!strcmp(end, "m")) return x * 60;
    if (!strcmp(end, "h")) return x * 3600;
    return -1;
}

/* "100", "10k", "2M" (base 1000, or 1024 when binary) -> value; -1 when malformed. */
static double parse_amount(const char *s, bool binary)
{
    char *end;
    double x = strtod(s, &end), k = binary ? 1024 : 1000;
    if (end == s || !(x >= 0) || isinf(x)) return -1;
    if (*end && end[1] && !(binary && !strcmp(end + 1, "B"))) return -1;
    switch (*end) {
    case 0:
        return x;
    case 'k':
    case 'K':
        return x * k;
    case 'm':
    case 'M':
        return x * k * k;
    case 'g':
    case 'G':
        return x * k * k * k;
    }
    return -1;
}

static bool parse_uint(const char *s, unsigned max, unsigned *out)
{
    double x = parse_amount(s, false);
    if (x < 1 || x > max || x != floor(x)) return false;
    *out = (unsigned)x;
    return true;
}

/* HOST:PORT[/path], [V6]:PORT[/path], or http[s]://HOST[:PORT][/path]. */
static int parse_target(struct cli *c, const char *t)
{
    bool scheme = false;
    if (!strncasecmp(t, "https://", 8)) {
        t += 8;
        scheme = c->o.tls = true;
    } else if (!strncasecmp(t, "http://", 7)) {
        t += 7;
        scheme = true;
    }
    const char *slash = strchr(t, '/');
    size_t alen = slash ? (size_t)(slash - t) : strlen(t);
    snprintf(c->path, sizeof c->path, "%s", slash ? slash : "/");
    if (alen == 0 || alen >= sizeof c->host) return usage_error("%s: no host in the target", t);
    snprintf(c->host_hdr, sizeof c->host_hdr, "%.*s", (int)alen, t);
    const char *h = t, *colon;
    size_t hlen;
    if (*t == '[') { /* an IPv6 literal */
        const char *close = memchr(t, ']', alen);
        if (!close) return usage_error("%s: unterminated [IPv6] address", t);
        h = t + 1;
        hlen = (size_t)(close - h);
        colon = close + 1 < t + alen && close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = memchr(t, ':', alen);
        hlen = colon ? (size_t)(colon - t) : alen;
    }
    snprintf(c->host, sizeof c->host, "%.*s", (int)hlen, h);
    if (!colon) {
        if (!scheme) return usage_error("%s: give the port, as HOST:PORT", t);
        c->o.port = c->o.tls ? 443 : 80;
    } else {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (end != t + alen || port <= 0 || port > 65535)
            return usage_error("%s: the port must be 1..65535", t);
        c->o.port = (int)port;
    }
    c->o.host = c->host;
    return 0;
}

static int add_header(struct cli *c, const char *h)
{
    if (!strchr(h, ':') || strpbrk(h, "\r\n"))
        return usage_error("-H '%s': want \"Name: value\"", h);
    int n = snprintf(c->headers + c->headers_len, sizeof c->headers - c->headers_len, "%s\r\n", h);
    if (n < 0 || (size_t)n >= sizeof c->headers - c->headers_len)
        return usage_error("-H '%s': headers too long", h);
    c->headers_len += (size_t)n;
    if (!strncasecmp(h, "host:", 5)) c->user_host = true; /* it replaces ours */
    return 0;
}

enum { OPT_TIMEOUT = 256, OPT_JSON, OPT_LATENCY, OPT_CACERT, OPT_NO_RESUME };

static int parse_args(struct cli *c, int argc, char **argv)
{
    static const struct option longs[] = {
        {"connections", required_argument, NULL, 'c'},
        {"duration", required_argument, NULL, 'd'},
        {"rate", required_argument, NULL, 'R'},
        {"workers", required_argument, NULL, 't'},
        {"threads", required_argument, NULL, 't'},
        {"pipeline", required_argument, NULL, 'p'},
        {"echo", required_argument, NULL, 'e'},
        {"header", required_argument, NULL, 'H'},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"json", no_argument, NULL, OPT_JSON},
        {"latency", no_argument, NULL, OPT_LATENCY},
        {"insecure", no_argument, NULL, 'k'},
        {"cacert", required_argument, NULL, OPT_CACERT},
        {"no-resume", no_argument, NULL, OPT_NO_RESUME},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    c->o.connections = 10;
    c->o.duration = 10;
    c->o.timeout = 2;
    c->o.pipeline = 1;
    optind = 0; /* glibc: start afresh, whoever parsed before us */
    opterr = 0;
    int opt;
    double x;
    while ((opt = getopt_long(argc, argv, ":c:d:R:t:w:p:e:H:hk", longs, NULL)) != -1) {
        switch (opt) {
        case 'c':
            if (!parse_uint(optarg, 1000000, &c->o.connections))
                return usage_error("-c %s: want a number of connections >= 1", optarg);
            break;
        case 'd':
            if (!((c->o.duration = parse_time(optarg)) > 0))
                return usage_error("-d %s: want a duration such as 10s, 500ms or 2m", optarg);
            break;
        case 'R':
            if (!((c->o.rate = parse_amount(optarg, false)) > 0))
                return usage_error("-R %s: want a rate in requests/s > 0", optarg);
            break;
        case 't':
        case 'w':
            if (!parse_uint(optarg, 4096, &c->o.workers))
                return usage_error("--workers %s: want a number of processes >= 1", optarg);
            break;
        case 'p':
            if (!parse_uint(optarg, 1024, &c->o.pipeline))
                return usage_error("--pipeline %s: want 1..1024", optarg);
            break;
        case 'e':
            if (!((x = parse_amount(optarg, true)) >= 1) || x > (64 << 20) || x != floor(x))
                return usage_error("--echo %s: want a message size of 1 byte to 64M", optarg);
            c->o.echo_size = (size_t)x;
            break;
        case 'H':
            if (add_header(c, optarg)) return 2;
            break;
        case OPT_TIMEOUT:
            if (!((c->o.timeout = parse_time(optarg)) > 0))
                return usage_error("--timeout %s: want a duration such as 2s or 500ms", optarg);
            break;
        case OPT_JSON:
            c->json = true;
            break;
        case OPT_LATENCY:
            break;
        case 'k':
            c->o.insecure = true;
            break;
        case OPT_CACERT:
            c->o.ca_file = optarg;
            break;
        case OPT_NO_RESUME:
            c->o.no_resume = true;
            break;
        case 'h':
            fputs(usage, stdout);
            return -1;
        case ':':
            return usage_error("%s needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return usage_error("%s", optind >= argc ? "no target given" : "one target only, please");
    c->target = argv[optind];
    if (parse_target(c, c->target)) return 2;
    if (c->o.rate > 0 && c->o.pipeline > 1)
        return usage_error("%s", "--pipeline and -R don't mix: at a constant rate each "
                                 "connection has one request in flight (wrk2's rule)");
    if (c->o.echo_size > (64u << 20) / c->o.pipeline)
        return usage_error("%s", "--echo SIZE x --pipeline N must stay within 64M");
    c->o.host_hdr = c->user_host ? "" : c->host_hdr;
    c->o.path = c->path;
    c->o.headers = c->headers_len ? c->headers : NULL;
    if (c->o.echo_size)
        snprintf(c->shown, sizeof c->shown, "%s (echo%s)", c->host_hdr,
                 c->o.tls ? " over TLS" : "");
    else
        snprintf(c->shown, sizeof c->shown, "%s://%s%s", c->o.tls ? "https" : "http", c->host_hdr,
                 c->path);
    if ((c->o.insecure || c->o.ca_file || c->o.no_resume) && !c->o.tls)
        return usage_error("%s", "--insecure, --cacert and --no-resume are for https:// targets");
    if (c->o.tls) { /* a bad CA file is a usage error, said before anything runs */
        char msg[512];
        struct ivy_tls_ctx *ctx;
        if (ivy__load_tls_ctx(&c->o, &ctx, msg, sizeof msg) < 0) return usage_error("%s", msg);
        ivy_tls_ctx_free(ctx);
    }
    return 0;
}

static void on_signal(int sig)
{
    ivy__load_stop = 1; /* load_run.c passes it on to the workers, which stop and report */
}

/* Names the failure that left nothing succeeding: the kind with the most errors. */
static void explain(const struct cli *c, const struct ivy_load_result *r)
{
    int worst = -1;
    for (int k = 0; k < IVY_LOAD_NERR; k++)
        if (r->errors[k] && (worst < 0 || r->errors[k] > r->errors[worst])) worst = k;
    static const char *const what[IVY_LOAD_NERR] = {"could not connect",
                                                    "the connection failed while reading",
                                                    "the connection failed while writing",
                                                    "the server did not answer in time",
                                                    "every response had status >= 400",
                                                    "the server does not speak HTTP/1.x",
                                                    "the TLS handshake failed"};
    fprintf(stderr, "ivy load: no request to %s succeeded", c->target);
    if (worst >= 0) fprintf(stderr, ": %s", what[worst]);
    if (worst == IVY_LOAD_ERR_TLS && r->tls_error[0])
        fprintf(stderr, " (%s)", r->tls_error);
    else if (worst == IVY_LOAD_ERR_PARSE && c->o.echo_size)
        fprintf(stderr, " (the echoes differ from what was sent)");
    else if (worst >= IVY_LOAD_ERR_CONNECT && worst <= IVY_LOAD_ERR_WRITE &&
             r->first_error[worst] < 0)
        fprintf(stderr, " (%s)",
                r->first_error[worst] == -ENODATA ? "closed by the server"
                                                  : strerror(-r->first_error[worst]));
    fprintf(stderr, "\n");
}

int ivy_load_main(int argc, char **argv)
{
    struct cli *c = calloc(1, sizeof *c);
    struct ivy_load_result *r = calloc(1, sizeof *r);
    int rc = (!c || !r) ? 1 : parse_args(c, argc, argv);
    if (rc) {
        free(c);
        free(r);
        return rc < 0 ? 0 : rc; /* -1: --help, which is a success */
    }
    c->o.progress = !c->json && isatty(STDOUT_FILENO);
    struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    ivy__load_stop = 0;
    char addr[64];
    if (ivy__load_resolve(c->host, addr, sizeof addr) < 0) {
        rc = -ENOENT; /* said before the header, not after */
    } else {
        if (!c->json) ivy_load_print_header(&c->o, c->shown);
        rc = ivy_load_run(&c->o, r);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (rc == -ENOENT) {
        fprintf(stderr, "ivy load: cannot resolve host '%s'\n", c->host);
        rc = 1;
    } else if (rc < 0) {
        fprintf(stderr, "ivy load: %s\n", strerror(-rc));
        rc = 1;
    } else {
        ivy_load_print(&c->o, r, c->shown, c->json);
        rc = r->workers_failed ? 1 : 0;
        if (!ivy_load_succeeded(r)) {
            explain(c, r);
            rc = 1;
        }
    }
    free(c);
    free(r);
    return rc;
}
