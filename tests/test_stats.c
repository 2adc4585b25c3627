/*
 * Tests for cluster/stats.c: where the shared-memory segment is created and how (nothing
 * planted there is followed or adopted, no one else can open it), and that `ivy stats` prints
 * what the segment says without trusting its strings to end.
 *
 * Each test points IVY_STATS_DIR at a fresh directory of its own (base/ivy, not there yet). The
 * segment is named after the creating process's pid, so the creation runs in a forked child whose
 * pid the test knows before it plants anything: the child waits on a pipe until the test has set
 * the scene.
 */
#include "cluster_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "skip.h"
#include "util.h"

static char base[64];      /* a fresh directory of the test's */
static char dir[PATH_MAX]; /* base/ivy: the stats directory */

static int make_base(void **state)
{
    snprintf(base, sizeof base, "/tmp/ivy-test-stats-XXXXXX");
    assert_non_null(mkdtemp(base));
    snprintf(dir, sizeof dir, "%s/ivy", base);
    setenv("IVY_STATS_DIR", dir, 1);
    assert_string_equal(ivy__stats_dir(), dir);
    return 0;
}

static int remove_base(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : -1;
}

struct child {
    pid_t pid;
    int go;                   /* write a byte to let it create */
    char path[PATH_MAX + 32]; /* dir/ivy-stats.PID */
};

/* A child that, once told, creates a 2-slot segment and exits 0 if that worked, 1 if refused.
   It leaves the segment behind for the test to inspect (no destroy). */
static struct child fork_creator(void)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct child c;
    fflush(NULL);
    c.pid = fork();
    assert_true(c.pid >= 0);
    if (c.pid == 0) {
        char b;
        close(p[1]);
        if (read(p[0], &b, 1) != 1) _exit(3);
        _exit(ivy__stats_create(2, "echo", "127.0.0.1:1") ? 0 : 1);
    }
    close(p[0]);
    c.go = p[1];
    snprintf(c.path, sizeof c.path, "%s/ivy-stats.%d", dir, (int)c.pid);
    return c;
}

static int run_creator(struct child *c)
{
    assert_int_equal(write(c->go, "g", 1), 1);
    close(c->go);
    int status;
    assert_int_equal(waitpid(c->pid, &status, 0), c->pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    fchmod(fd, mode);
    close(fd);
}

static void assert_file_is(const char *path, const char *text)
{
    char buf[256] = {0};
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_true(read(fd, buf, sizeof buf - 1) >= 0);
    close(fd);
    assert_string_equal(buf, text);
}

/* The segment the child made: a regular file of ours, 0600, the right size and magic. */
static void assert_private_segment(const char *path)
{
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_uid, geteuid());
    assert_int_equal((size_t)st.st_size,
                     sizeof(struct ivy_stats_shm) + 2 * sizeof(struct ivy_stats_slot));
    assert_int_equal(lstat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0700);
    int fd = open(path, O_RDONLY);
    uint32_t magic = 0;
    assert_int_equal(read(fd, &magic, sizeof magic), (ssize_t)sizeof magic);
    close(fd);
    assert_int_equal(magic, IVY_STATS_MAGIC);
}

static void segment_is_0600_in_a_0700_directory(void **state)
{
    mode_t old = umask(0); /* a permissive umask must not loosen either */
    struct child c = fork_creator();
    assert_int_equal(run_creator(&c), 0);
    umask(old);
    assert_private_segment(c.path);
}

/* A symlink where the segment goes is removed, never followed: its target keeps its bytes. */
static void planted_symlink_is_not_followed(void **state)
{
    char target[PATH_MAX];
    snprintf(target, sizeof target, "%s/precious", base);
    write_file(target, "precious bytes", 0644);
    assert_int_equal(mkdir(dir, 0700), 0);
    struct child c = fork_creator();
    assert_int_equal(symlink(target, c.path), 0);
    assert_int_equal(run_creator(&c), 0);
    assert_file_is(target, "precious bytes");
    struct stat st;
    assert_int_equal(stat(target, &st), 0);
    assert_int_equal(st.st_size, 14);
    assert_private_segment(c.path);
}

/* A file already there (0666, open in someone's hands) is not adopted: the segment is a new
   file, and what the holder of the old one writes reaches nothing. */
static void pre_created_file_is_not_adopted(void **state)
{
    assert_int_equal(mkdir(dir, 0700), 0);
    struct child c = fork_creator();
    write_file(c.path, "planted", 0666);
    int planted = open(c.path, O_RDWR);
    assert_true(planted >= 0);
    struct stat before, after;
    assert_int_equal(fstat(planted, &before), 0);
    assert_int_equal(run_creator(&c), 0);
    assert_int_equal(lstat(c.path, &after), 0);
    assert_true(after.st_ino != before.st_ino);
    assert_private_segment(c.path);
    char buf[16] = {0};
    assert_int_equal(pread(planted, buf, sizeof buf - 1, 0), 7); /* still its own 7 bytes */
    assert_string_equal(buf, "planted");
    close(planted);
}

/* A supervisor SIGKILLed leaves its segment; the next one to start removes it, and leaves the
   segment of a live one alone. */
static void segments_of_dead_supervisors_are_swept(void **state)
{
    struct child dead = fork_creator();
    assert_int_equal(run_creator(&dead), 0); /* exited (and reaped) without destroying */
    assert_int_equal(access(dead.path, F_OK), 0);
    struct child live = fork_creator(); /* alive until told: stands for a running server */
    char live_path[PATH_MAX + 32];
    snprintf(live_path, sizeof live_path, "%s/ivy-stats.%d", dir, (int)getpid());
    write_file(live_path, "ours", 0600);
    assert_int_equal(run_creator(&live), 0);
    assert_int_equal(access(dead.path, F_OK), -1);
    assert_int_equal(access(live.path, F_OK), 0);
    assert_file_is(live_path, "ours");
}

/* The stats directory itself planted as a symlink to a place of the planter's choosing: refused. */
static void planted_directory_symlink_is_refused(void **state)
{
    char elsewhere[PATH_MAX];
    snprintf(elsewhere, sizeof elsewhere, "%s/elsewhere", base);
    assert_int_equal(mkdir(elsewhere, 0777), 0);
    assert_int_equal(symlink(elsewhere, dir), 0);
    struct child c = fork_creator();
    assert_int_equal(run_creator(&c), 1);
    char inside[PATH_MAX + 32];
    snprintf(inside, sizeof inside, "%s/ivy-stats.%d", elsewhere, (int)c.pid);
    assert_int_equal(access(inside, F_OK), -1);
}

static const struct passwd *nobody_or_skip(void)
{
    const struct passwd *pw = getpwnam("nobody");
    if (geteuid() != 0 || !pw || pw->pw_uid == 0) {
        skip_visibly("needs root and a user 'nobody' to act as another user");
        return NULL;
    }
    return pw;
}

/* A directory someone else made first (as they could in /dev/shm): refused, never used. */
static void directory_of_another_user_is_refused(void **state)
{
    const struct passwd *pw = nobody_or_skip();
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(chown(dir, pw->pw_uid, pw->pw_gid), 0);
    struct child c = fork_creator();
    assert_int_equal(run_creator(&c), 1);
    assert_int_equal(access(c.path, F_OK), -1);
}

/* Another user, for real (a child that has dropped to 'nobody'), can open neither the segment
   nor the directory. */
static void another_user_cannot_open_the_segment(void **state)
{
    const struct passwd *pw = nobody_or_skip();
    struct child c = fork_creator();
    assert_int_equal(run_creator(&c), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (setgroups(0, NULL) || setgid(pw->pw_gid) || setuid(pw->pw_uid)) _exit(10);
        if (open(c.path, O_RDONLY) >= 0 || errno != EACCES) _exit(11);
        if (open(c.path, O_RDWR) >= 0 || errno != EACCES) _exit(12);
        if (open(dir, O_RDONLY) >= 0 || errno != EACCES) _exit(13);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* The segment is writable by every worker: its strings may lack their NUL. */
static void table_stops_at_the_end_of_strings_without_a_nul(void **state)
{
    size_t len = sizeof(struct ivy_stats_shm) + sizeof(struct ivy_stats_slot);
    struct ivy_stats_shm *s = calloc(1, len);
    s->magic = IVY_STATS_MAGIC;
    s->nslots = 1;
    s->supervisor_pid = 42;
    memset(s->app, 'A', sizeof s->app);
    memset(s->listen, 'B', sizeof s->listen);
    s->slot[0].pid = 0; /* no live slot: the header line only, then the column names */
    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    ivy__stats_table(s, f, NULL, 1);
    fclose(f);
    char expect[256];
    snprintf(expect, sizeof expect, "ivy %.16s on %.64s (supervisor 42)\n",
             "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
             "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB");
    assert_memory_equal(out, expect, strlen(expect));
    free(out);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(segment_is_0600_in_a_0700_directory, make_base,
                                        remove_base),
        cmocka_unit_test_setup_teardown(planted_symlink_is_not_followed, make_base, remove_base),
        cmocka_unit_test_setup_teardown(pre_created_file_is_not_adopted, make_base, remove_base),
        cmocka_unit_test_setup_teardown(segments_of_dead_supervisors_are_swept, make_base,
                                        remove_base),
        cmocka_unit_test_setup_teardown(planted_directory_symlink_is_refused, make_base,
                                        remove_base),
        cmocka_unit_test_setup_teardown(directory_of_another_user_is_refused, make_base,
                                        remove_base),
        cmocka_unit_test_setup_teardown(another_user_cannot_open_the_segment, make_base,
                                        remove_base),
        cmocka_unit_test(table_stops_at_the_end_of_strings_without_a_nul),
    };
    return ivy_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
