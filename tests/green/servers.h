/* Real servers for the green libc proofs, each started on a free port and stopped by the test. */
#ifndef IVY_TEST_GREEN_SERVERS_H
#define IVY_TEST_GREEN_SERVERS_H

#include "../util.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define SKIP_CODE 77 /* ctest's SKIP_RETURN_CODE for these tests */

struct server {
    pid_t pid;
    int port;
    char dir[64]; /* its temporary directory, "" if none */
};

/* Exits the test as skipped when path is not an executable: a missing package. */
static inline void need_program(const char *path, const char *package)
{
    if (access(path, X_OK) != 0) {
        printf("SKIP: %s missing: install the Debian package '%s'\n", path, package);
        exit(SKIP_CODE);
    }
}

/* Waits up to 20 s until something accepts on 127.0.0.1:port (the server is up). */
static inline bool wait_port(int port, pid_t pid)
{
    for (int i = 0; i < 2000; i++) {
        int fd = dial(port);
        if (fd >= 0) {
            close(fd);
            return true;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) return false; /* it died */
        sleep_ms(10);
    }
    return false;
}

static inline pid_t spawn_argv(char *const argv[], uid_t uid, gid_t gid, const char *quiet_to)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (quiet_to) {
            int fd = open(quiet_to, O_WRONLY | O_CREAT | O_APPEND, 0644);
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (uid && (setgid(gid) != 0 || setuid(uid) != 0)) _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static inline void server_stop(struct server *s, int sig)
{
    if (s->pid > 0) {
        kill(s->pid, sig);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
    if (s->dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", s->dir);
        s->dir[0] = 0;
    }
}

static inline void redis_start(struct server *s)
{
    need_program("/usr/bin/redis-server", "redis-server");
    snprintf(s->dir, sizeof s->dir, "/tmp/ivy-redis-XXXXXX");
    if (!mkdtemp(s->dir)) exit(1);
    s->port = free_port();
    char port[16], log[96];
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(log, sizeof log, "%s/log", s->dir);
    char *argv[] = {
        "/usr/bin/redis-server", "--port", port,    "--bind", "127.0.0.1",    "--save", "",
        "--appendonly",          "no",     "--dir", s->dir,   "--maxclients", "1000",   NULL};
    s->pid = spawn_argv(argv, 0, 0, log);
    if (!wait_port(s->port, s->pid)) {
        fprintf(stderr, "redis-server did not come up (see %s)\n", log);
        exit(1);
    }
}

/* `ivy serve` (the build's) with one worker, for /sleep?ms=N. */
static inline void ivy_serve_start(struct server *s)
{
    s->dir[0] = 0;
    s->port = free_port();
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
    char *argv[] = {(char *)ivy_binary(), "serve", "--app", "http", "--listen", listen,
                    "--workers",          "1",     NULL};
    s->pid = spawn_argv(argv, 0, 0, "/dev/null");
    if (!wait_port(s->port, s->pid)) {
        fprintf(stderr, "ivy serve did not come up\n");
        exit(1);
    }
}

/*
 * A PostgreSQL cluster initialised in a temporary directory, listening only on a unix socket
 * there (port s->port names it), run as an unprivileged user: `nobody` when we are root.
 */
static inline void pg_start(struct server *s)
{
    glob_t g;
    if (glob("/usr/lib/postgresql/*/bin/postgres", 0, NULL, &g) != 0) {
        printf("SKIP: no PostgreSQL server: install the Debian package 'postgresql'\n");
        exit(SKIP_CODE);
    }
    char bin[256];
    snprintf(bin, sizeof bin, "%s", g.gl_pathv[g.gl_pathc - 1]);
    globfree(&g);
    *strrchr(bin, '/') = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("nobody");
        if (!pw) exit(1);
        uid = pw->pw_uid;
        gid = pw->pw_gid;
    }
    snprintf(s->dir, sizeof s->dir, "/tmp/ivy-pg-XXXXXX");
    if (!mkdtemp(s->dir) || (uid && chown(s->dir, uid, gid) != 0)) exit(1);
    s->port = free_port();
    char initdb[300], postgres[300], data[96], log[96], port[16];
    snprintf(initdb, sizeof initdb, "%s/initdb", bin);
    snprintf(postgres, sizeof postgres, "%s/postgres", bin);
    snprintf(data, sizeof data, "%s/data", s->dir);
    snprintf(log, sizeof log, "%s/log", s->dir);
    snprintf(port, sizeof port, "%d", s->port);
    char *init_argv[] = {initdb,      "-D", data,   "-A",       "trust", "-U", "postgres",
                         "--no-sync", "-E", "UTF8", "--locale", "C",     NULL};
    pid_t pid = spawn_argv(init_argv, uid, gid, log);
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "initdb failed (see %s)\n", log);
        exit(1);
    }
    char *argv[] = {postgres,
                    "-D",
                    data,
                    "-k",
                    s->dir,
                    "-p",
                    port,
                    "-c",
                    "listen_addresses=",
                    "-c",
                    "max_connections=200",
                    "-c",
                    "fsync=off",
                    "-c",
                    "shared_buffers=16MB",
                    NULL};
    s->pid = spawn_argv(argv, uid, gid, log);
    char sock[128];
    snprintf(sock, sizeof sock, "%s/.s.PGSQL.%d", s->dir, s->port);
    for (int i = 0; i < 2000 && access(sock, F_OK) != 0; i++) {
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid) break;
        sleep_ms(10);
    }
    if (access(sock, F_OK) != 0) {
        fprintf(stderr, "postgres did not come up (see %s)\n", log);
        exit(1);
    }
}

#endif
