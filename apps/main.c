/*
 * The `ivy` command: serve (a cluster running the http or echo app), load (the load
 * generator), stats (a live table of a running server's shared-memory counters).
 */
#include "cluster_impl.h"
#include "echo_app.h"
#include "http_app.h"
#include "ivy/cluster.h"
#include "ivy/version.h"
#include "load.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * jemalloc, the allocator of ivy's programs, reads this at start-up: freed pages go back to the
 * kernel at once rather than after a decay that only advances while the program allocates, so
 * a worker that served a burst of connections holds no memory of theirs once they are idle.
 * Nothing on the request path allocates; connections come and go with a few small objects.
 */
const char *malloc_conf = "dirty_decay_ms:0,muzzy_decay_ms:0";

static void usage(FILE *out)
{
    fputs("usage: ivy <command> [options]\n"
          "\n"
          "commands:\n"
          "  serve   run a server: one pinned worker process per CPU under a supervisor\n"
          "  load    generate HTTP or echo load (ivy load --help)\n"
          "  stats   show a running server's counters (ivy stats --help)\n"
          "\n"
          "ivy --version prints the version.\n",
          out);
}

static void serve_usage(FILE *out)
{
    fputs("usage: ivy serve [options]\n"
          "  --app http|echo|./x.so    the application (default http), or an app module: a\n"
          "                            shared object exporting ivy_module (ivy/cluster.h)\n"
          "  --listen HOST:PORT        address to listen on (default 127.0.0.1:8080)\n"
          "  --workers N               worker processes (default: CPUs in the affinity mask)\n"
          "  --timeout S               kill a worker silent for S seconds (default 30, or off)\n"
          "  --graceful-timeout S      drain time on SIGTERM/SIGINT/SIGHUP (default 30)\n"
          "  --max-requests N          recycle a worker after N requests (default never)\n"
          "  --keepalive-timeout S     http: close a connection waiting S seconds for a request\n"
          "                            with nothing of it received, without a response\n"
          "                            (default 75, or off)\n"
          "  --request-timeout S       http: answer 408 and close when a started request stalls:\n"
          "                            its head not complete S seconds after the first wait for\n"
          "                            more of it (the clock does not restart), or its body with\n"
          "                            no byte for S seconds (restarts with each receive)\n"
          "                            (default 60, or off)\n"
          "  --send-timeout S          http: close a connection, without more ado, when sending\n"
          "                            its responses makes no progress for S seconds (the client\n"
          "                            does not read; restarts with each partial send)\n"
          "                            (default 60, or off)\n"
          "  --stats-listen HOST:PORT  serve Prometheus metrics at /metrics\n"
          "  --migrate-req             set net.ipv4.tcp_migrate_req=1 (the whole host's setting,\n"
          "                            left set): connections queued in a closing worker's\n"
          "                            listener move to a live one instead of being reset\n"
          "  --user USER               workers drop to USER and its groups after binding\n"
          "                            (needs root; without it, root's workers keep root)\n"
          "  --group GROUP             workers drop to GROUP instead of USER's own group\n"
          "  --tls-cert FILE           TLS on every connection (http, echo, modules): the\n"
          "  --tls-key FILE            certificate chain and its key, PEM; SIGHUP re-reads them\n"
          "  --quiet                   no start-up lines\n"
          "0 for any limit means its default.\n"
          "signals: TERM/INT drain and exit 0, QUIT stops at once, HUP replaces the workers\n"
          "one at a time.\n",
          out);
}

/* "HOST:PORT", "[V6]:PORT", ":PORT" or "PORT". host points into a static buffer. */
static int parse_listen(const char *s, const char **host, int *port)
{
    static char buf[256];
    const char *colon = strrchr(s, ':');
    const char *p = colon ? colon + 1 : s;
    char *end;
    long v = strtol(p, &end, 10);
    if (*p == 0 || *end || v < 0 || v > 65535) return -EINVAL;
    *port = (int)v;
    if (!colon || colon == s) {
        *host = "0.0.0.0";
        if (!colon) *host = "127.0.0.1";
        return 0;
    }
    size_t n = (size_t)(colon - s);
    if (s[0] == '[' && n >= 2 && s[n - 1] == ']') {
        s++;
        n -= 2;
    }
    if (n >= sizeof buf) return -EINVAL;
    memcpy(buf, s, n);
    buf[n] = 0;
    *host = buf;
    return 0;
}

static bool parse_seconds(const char *s, double *out);

/* Seconds, or "off" (a negative number: ivy's rule for options, include/ivy/http.h). */
static bool parse_limit(const char *s, double *out)
{
    if (!strcmp(s, "off")) {
        *out = -1;
        return true;
    }
    return parse_seconds(s, out);
}

static bool parse_seconds(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= 0)) return false;
    *out = v;
    return true;
}

/* An http timeout option's seconds, up to IVY_HTTP_TIMEOUT_MAX, or off. */
static bool parse_http_timeout(const char *name, const char *s, double *out)
{
    if (parse_limit(s, out) && *out <= IVY_HTTP_TIMEOUT_MAX) return true;
    fprintf(stderr, "ivy serve: bad --%s '%s': seconds up to %.0f, 0 for the default, or off\n",
            name, s, IVY_HTTP_TIMEOUT_MAX);
    return false;
}

static int cmd_serve(int argc, char **argv, char **main_argv)
{
    static struct ivy_http_app_options http_opts; /* 0: the defaults */
    struct ivy_cluster_options o = {.app_name = "http", .argv = main_argv};
    enum {
        O_APP = 256,
        O_LISTEN,
        O_WORKERS,
        O_TIMEOUT,
        O_GRACE,
        O_MAXREQ,
        O_STATS,
        O_QUIET,
        O_TEST,
        O_KEEPALIVE,
        O_REQUEST,
        O_SEND,
        O_MIGRATE,
        O_USER,
        O_GROUP,
        O_TLS_CERT,
        O_TLS_KEY
    };
    static const struct option opts[] = {
        {"app", required_argument, 0, O_APP},
        {"listen", required_argument, 0, O_LISTEN},
        {"workers", required_argument, 0, O_WORKERS},
        {"timeout", required_argument, 0, O_TIMEOUT},
        {"graceful-timeout", required_argument, 0, O_GRACE},
        {"max-requests", required_argument, 0, O_MAXREQ},
        {"stats-listen", required_argument, 0, O_STATS},
        {"quiet", no_argument, 0, O_QUIET},
        {"test-routes", no_argument, 0, O_TEST},
        {"keepalive-timeout", required_argument, 0, O_KEEPALIVE},
        {"request-timeout", required_argument, 0, O_REQUEST},
        {"send-timeout", required_argument, 0, O_SEND},
        {"migrate-req", no_argument, 0, O_MIGRATE},
        {"user", required_argument, 0, O_USER},
        {"group", required_argument, 0, O_GROUP},
        {"tls-cert", required_argument, 0, O_TLS_CERT},
        {"tls-key", required_argument, 0, O_TLS_KEY},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case O_APP:
            if (strchr(optarg, '/')) { /* an app module */
                /* A copy: the workers overwrite argv with their titles. */
                static char path[PATH_MAX];
                if (!realpath(optarg, path)) snprintf(path, sizeof path, "%s", optarg);
                o.module = path;
                o.app_name = strrchr(path, '/') + 1;
            } else if (!strcmp(optarg, "http") || !strcmp(optarg, "echo")) {
                o.app_name = strcmp(optarg, "http") ? "echo" : "http";
            } else {
                fprintf(stderr,
                        "ivy serve: unknown app '%s' (http, echo, or a module's path: ./x.so)\n",
                        optarg);
                return 2;
            }
            break;
        case O_LISTEN:
            if (parse_listen(optarg, &o.host, &o.port) < 0) {
                fprintf(stderr, "ivy serve: bad --listen '%s' (HOST:PORT)\n", optarg);
                return 2;
            }
            if (o.port == 0) {
                fprintf(stderr, "ivy serve: --listen needs a port other than 0: every worker "
                                "must bind the same one\n");
                return 2;
            }
            break;
        case O_WORKERS:
            o.workers = (int)strtol(optarg, &end, 10);
            if (*end || o.workers < 1 || o.workers > 4096) {
                fprintf(stderr, "ivy serve: bad --workers '%s'\n", optarg);
                return 2;
            }
            break;
        case O_TIMEOUT:
            if (!parse_limit(optarg, &o.timeout)) goto bad_seconds;
            break;
        case O_GRACE:
            if (!parse_seconds(optarg, &o.graceful_timeout)) goto bad_seconds;
            break;
        case O_MAXREQ:
            o.max_requests = strtoull(optarg, &end, 10);
            if (*end || optarg[0] == '-') {
                fprintf(stderr, "ivy serve: bad --max-requests '%s'\n", optarg);
                return 2;
            }
            break;
        case O_STATS:
            o.stats_listen = optarg;
            break;
        case O_QUIET:
            o.quiet = true;
            break;
        case O_TEST:
            http_opts.test_routes = true;
            break;
        case O_KEEPALIVE:
            if (!parse_http_timeout("keepalive-timeout", optarg, &http_opts.keepalive_timeout))
                return 2;
            break;
        case O_REQUEST:
            if (!parse_http_timeout("request-timeout", optarg, &http_opts.request_timeout))
                return 2;
            break;
        case O_SEND:
            if (!parse_http_timeout("send-timeout", optarg, &http_opts.send_timeout)) return 2;
            break;
        case O_MIGRATE:
            o.migrate_req = true;
            break;
        case O_USER:
            o.user = optarg;
            break;
        case O_GROUP:
            o.group = optarg;
            break;
        case O_TLS_CERT:
            o.tls_cert = optarg;
            break;
        case O_TLS_KEY:
            o.tls_key = optarg;
            break;
        case 'h':
            serve_usage(stdout);
            return 0;
        default:
            serve_usage(stderr);
            return 2;
        }
        continue;
    bad_seconds:
        fprintf(stderr, "ivy serve: bad number of seconds '%s'\n", optarg);
        return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "ivy serve: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    static struct ivy_http_options module_http;
    if (o.module) {
        /* The module's handler (if it is an HTTP one) runs with the command line's timeouts. */
        module_http.keepalive_timeout = http_opts.keepalive_timeout;
        module_http.request_timeout = http_opts.request_timeout;
        module_http.send_timeout = http_opts.send_timeout;
        o.http = &module_http;
    } else if (!strcmp(o.app_name, "echo")) {
        o.app = ivy_echo_app;
    } else {
        o.app = ivy_http_app;
        o.app_arg = &http_opts;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    return ivy_cluster_run(&o);
}

static int cmd_stats(int argc, char **argv)
{
    pid_t pid = 0;
    bool once = false;
    double interval = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--once")) {
            once = true;
        } else if (!strcmp(argv[i], "--interval") && i + 1 < argc) {
            if (!parse_seconds(argv[++i], &interval) || interval <= 0) return 2;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            puts("usage: ivy stats [PID] [--once] [--interval S]\n"
                 "Shows the counters of this user's running server whose supervisor is PID "
                 "(default: the newest one).");
            return 0;
        } else {
            pid = (pid_t)atoi(argv[i]);
            if (pid <= 0) {
                fprintf(stderr, "ivy stats: bad argument '%s'\n", argv[i]);
                return 2;
            }
        }
    }
    size_t len;
    struct ivy_stats_shm *s = ivy__stats_open(pid, &len);
    if (!s) {
        fprintf(stderr, "ivy stats: no running ivy server of this user found%s (in %s)\n",
                pid ? " with that pid" : "", ivy__stats_dir());
        return 1;
    }
    uint64_t *prev = calloc(s->nslots, sizeof *prev);
    bool tty = isatty(STDOUT_FILENO);
    for (int round = 0;; round++) {
        if (tty && !once) fputs("\033[H\033[2J", stdout);
        ivy__stats_table(s, stdout, round ? prev : NULL, interval);
        fflush(stdout);
        if (once) break;
        for (unsigned i = 0; i < s->nslots; i++)
            prev[i] = IVY_LOAD(s->slot[i].requests);
        usleep((useconds_t)(interval * 1e6));
        if (kill((pid_t)s->supervisor_pid, 0) != 0) {
            fprintf(stderr, "ivy stats: the server stopped\n");
            break;
        }
    }
    free(prev);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("ivy %s\n", ivy_version_string());
        return 0;
    }
    if (!strcmp(argv[1], "serve")) return cmd_serve(argc - 1, argv + 1, argv);
    if (!strcmp(argv[1], "load")) return ivy_load_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "stats")) return cmd_stats(argc - 1, argv + 1);
    fprintf(stderr, "ivy: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
