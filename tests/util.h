/* Helpers shared by the tests that drive real processes over loopback. */
#ifndef IVY_TEST_UTIL_H
#define IVY_TEST_UTIL_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* A port nothing listens on right now (the kernel's choice, released at once). */
static inline int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static inline void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A blocking loopback connection with a 5 s receive timeout, or -1. */
static inline int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
    close(fd);
    return -1;
}

/* Reads until the peer closes (or the receive timeout); NUL-terminates; returns the length. */
static inline size_t read_all(int fd, char *buf, size_t cap)
{
    size_t got = 0;
    ssize_t n;
    while (got + 1 < cap && (n = recv(fd, buf + got, cap - 1 - got, 0)) > 0)
        got += (size_t)n;
    buf[got] = 0;
    return got;
}

/* The `ivy` command of the build under test (ctest sets IVY_BUILD_DIR). */
static inline const char *ivy_binary(void)
{
    static char path[512];
    if (!path[0]) {
        const char *dir = getenv("IVY_BUILD_DIR");
        snprintf(path, sizeof path, "%s/apps/ivy", dir ? dir : "build");
    }
    return path;
}
/* Starts argv[0] with stdout and stderr appended to log (a new file); returns its pid. */
static inline pid_t spawn_logged(const char *const *argv, const char *log)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execv(argv[0], (char **)argv);
        _exit(127);
    }
    return pid;
}

/* Starts argv[0] with its stdout on /dev/null (stderr kept); returns its pid. */
static inline pid_t spawn_quiet(const char *const *argv)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(open("/dev/null", O_WRONLY), STDOUT_FILENO);
        execv(argv[0], (char **)argv);
        _exit(127);
    }
    return pid;
}

/* Waits up to ms for something to accept on the loopback port: true once it did. */
static inline bool wait_listening(int port, int ms)
{
    for (int i = 0; i < ms / 10; i++, sleep_ms(10)) {
        int fd = dial(port);
        if (fd >= 0) {
            close(fd);
            return true;
        }
    }
    return false;
}

/* The whole of a file (NUL-terminated, static buffer), "" if absent. */
static inline const char *slurp(const char *path)
{
    static char buf[1 << 16];
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[n] = 0;
    if (f) fclose(f);
    return buf;
}

/* Waits up to ms for needle to appear in the file at path: true when it did. */
static inline bool wait_for_text(const char *path, const char *needle, int ms)
{
    for (int i = 0; i < ms / 10; i++, sleep_ms(10))
        if (strstr(slurp(path), needle)) return true;
    return strstr(slurp(path), needle) != NULL;
}

/* A shell command's standard output (static buffer, NUL-terminated; "" if it cannot run). */
static inline const char *command_output(const char *cmd)
{
    static char out[65536];
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[n] = 0;
    if (p) pclose(p);
    return out;
}

/* Waits up to ms for pid to exit: its wait status, or -1 (then it is killed). */
static inline int wait_exit_ms(pid_t pid, int ms)
{
    int status;
    for (int i = 0; i < ms / 10; i++, sleep_ms(10))
        if (waitpid(pid, &status, WNOHANG) == pid) return status;
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

/* SIGTERM, then true once pid exited 0 within ms (a drained server). */
static inline bool terminated_cleanly(pid_t pid, int ms)
{
    kill(pid, SIGTERM);
    int status = wait_exit_ms(pid, ms);
    return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}
#endif
