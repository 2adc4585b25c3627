/*
 * What dist/systemd's units rely on, done as systemd does it: `ivy serve` started with a
 * listener inherited as fd 3 (LISTEN_PID, LISTEN_FDS: socket activation) and a NOTIFY_SOCKET
 * (Type=notify) serves on that listener, says READY=1, pings WATCHDOG=1 at half of
 * WATCHDOG_USEC and says STOPPING=1 when SIGTERM has drained it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "util.h"

struct activated {
    pid_t pid;
    int notify; /* the datagram socket the server notifies */
    int port;   /* of the listener it inherited */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * Starts `ivy serve --workers 2` as systemd would start ivy.service. The listener has no
 * SO_REUSEPORT, so a worker that opened its own would fail: answers prove the inherited one.
 */
static void activate(struct activated *a, const char *watchdog_usec)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(lfd, 128), 0);
    getsockname(lfd, (struct sockaddr *)&sin, &len);
    a->port = ntohs(sin.sin_port);

    char name[64];
    snprintf(name, sizeof name, "@ivy-test-notify-%d", (int)getpid());
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path + 1, name + 1, strlen(name) - 1); /* abstract: sun_path[0] is 0 */
    a->notify = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(a->notify, (struct sockaddr *)&sun,
                          (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name))),
                     0);
    struct timeval tv = {10, 0};
    setsockopt(a->notify, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

    char listen_arg[32];
    snprintf(listen_arg, sizeof listen_arg, "127.0.0.1:%d", a->port);
    a->pid = fork();
    assert_true(a->pid >= 0);
    if (a->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (lfd != 3) {
            dup2(lfd, 3);
            close(lfd);
        }
        char pid[16];
        snprintf(pid, sizeof pid, "%d", (int)getpid());
        setenv("LISTEN_PID", pid, 1);
        setenv("LISTEN_FDS", "1", 1);
        setenv("NOTIFY_SOCKET", name, 1);
        if (watchdog_usec) setenv("WATCHDOG_USEC", watchdog_usec, 1);
        execl(ivy_binary(), ivy_binary(), "serve", "--workers", "2", "--listen", listen_arg,
              "--quiet", (char *)NULL);
        _exit(127);
    }
    close(lfd);
}

/* The next notification, NUL-terminated, or fails after 10 s. */
static const char *notification(struct activated *a)
{
    static char msg[256];
    ssize_t n = recv(a->notify, msg, sizeof msg - 1, 0);
    if (n < 0) fail_msg("no notification from ivy serve: %s", strerror(errno));
    msg[n] = 0;
    return msg;
}

/* SIGTERM: the next notification is STOPPING=1 and the exit status 0. */
static void stop(struct activated *a)
{
    kill(a->pid, SIGTERM);
    const char *m;
    while (!strcmp(m = notification(a), "WATCHDOG=1"))
        ;
    assert_string_equal(m, "STOPPING=1");
    int status;
    assert_int_equal(waitpid(a->pid, &status, 0), a->pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    close(a->notify);
}

static void serves_the_inherited_listener_after_ready(void **state)
{
    struct activated a;
    activate(&a, NULL);
    assert_string_equal(notification(&a), "READY=1"); /* no watchdog asked: the first one */
    for (int i = 0; i < 4; i++) {
        int fd = dial(a.port);
        assert_true(fd >= 0);
        const char *req = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        assert_int_equal(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
        char buf[4096];
        read_all(fd, buf, sizeof buf);
        close(fd);
        assert_memory_equal(buf, "HTTP/1.1 200 OK\r\n", 17);
        assert_non_null(strstr(buf, "\r\n\r\nHello, World!"));
    }
    stop(&a);
}

static void pings_the_watchdog_at_half_its_period(void **state)
{
    struct activated a;
    activate(&a, "1000000"); /* WatchdogSec=1: a ping every 0.5 s */
    double first = 0, last = 0, gap_max = 0;
    int pings = 0;
    bool ready = false;
    while (pings < 5 || !ready) {
        const char *m = notification(&a);
        if (!strcmp(m, "READY=1")) {
            assert_false(ready);
            ready = true;
            continue;
        }
        assert_string_equal(m, "WATCHDOG=1");
        double t = now_s();
        if (pings++ == 0) first = t;
        if (pings > 1 && t - last > gap_max) gap_max = t - last;
        last = t;
    }
    /* Arrival times carry this process's own scheduling delays, so: on average not faster than
     * half the period, and never as late as the period, after which systemd would kill it. */
    assert_true((last - first) / (pings - 1) >= 0.45);
    assert_true(gap_max < 1.0);
    stop(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(serves_the_inherited_listener_after_ready),
        cmocka_unit_test(pings_the_watchdog_at_half_its_period),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
