/*
 * slow_client PORT N DURATION PERIOD: slowloris, bench/slowloris.sh's trickler. N connections
 * to 127.0.0.1:PORT each send a request head one byte every PERIOD seconds, never finishing it,
 * for DURATION seconds; then one line says how many the server had closed by then, and how many
 * of those it answered, and with what:
 *   opened N closed C answered_408 A other O open R
 * In C, with epoll and one send per connection per period, so that it takes little of the CPU
 * it shares with wrk (a Python one took a tenth of it at 10,000 connections).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
    int fd;
    unsigned sent, got;
    char first[12]; /* the start of what the server answered */
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: slow_client PORT N DURATION PERIOD\n");
        return 2;
    }
    int port = atoi(argv[1]), n = atoi(argv[2]);
    double duration = atof(argv[3]), period = atof(argv[4]);
    if (port <= 0 || port > 65535 || n <= 0 || duration <= 0 || period <= 0) {
        fprintf(stderr, "slow_client: bad arguments\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    static char head[4096];
    int hlen = snprintf(head, sizeof head, "GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ");
    memset(head + hlen, 's', sizeof head - (size_t)hlen);
    struct conn *c = calloc((size_t)n, sizeof *c);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (!c || ep < 0) {
        perror("slow_client");
        return 1;
    }
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int opened = 0, closed = 0, got408 = 0, other = 0;
    for (int i = 0; i < n; i++) {
        c[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c[i].fd < 0 ||
            (connect(c[i].fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS)) {
            perror("slow_client: connect");
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev);
        opened++;
    }
    double start = now(), next = start;
    struct epoll_event evs[256];
    char buf[4096];
    while (now() - start < duration) {
        if (now() >= next) {
            for (int i = 0; i < n; i++)
                if (c[i].fd >= 0 && c[i].sent < sizeof head &&
                    send(c[i].fd, head + c[i].sent, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1)
                    c[i].sent++;
            next += period;
        }
        double wait = next - now();
        int ms = wait < 0 ? 0 : wait > 0.05 ? 50 : (int)(wait * 1000);
        int k = epoll_wait(ep, evs, sizeof evs / sizeof *evs, ms);
        for (int e = 0; e < k; e++) {
            struct conn *x = &c[evs[e].data.u32];
            if (x->fd < 0) continue;
            ssize_t r = recv(x->fd, buf, sizeof buf, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (r > 0) {
                for (ssize_t j = 0; j < r && x->got < sizeof x->first; j++)
                    x->first[x->got++] = buf[j];
                continue;
            }
            if (x->got == sizeof x->first && !memcmp(x->first, "HTTP/1.1 408", 12))
                got408++;
            else if (x->got)
                other++;
            closed++;
            close(x->fd); /* leaves the epoll set with it */
            x->fd = -1;
        }
    }
    printf("opened %d closed %d answered_408 %d other %d open %d\n", opened, closed, got408, other,
           opened - closed);
    return 0;
}
