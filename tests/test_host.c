/*
 * Tests for cluster/host.c: started as root with a user, a cluster's workers drop to it (and its
 * groups) after binding, checked in /proc; without one, a warning. Real users: 'nobody'. And the
 * protection line says what the host gives.
 */
#include "cluster_test.h"

#include <grp.h>
#include <pwd.h>

/* The value of one "Key:" line of /proc/PID/status, tabs and all. */
static bool proc_status_line(pid_t pid, const char *key, char *out, size_t cap)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    bool found = false;
    while (f && !found && fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key)) && line[strlen(key)] == ':') {
            snprintf(out, cap, "%s", line + strlen(key) + 1);
            out[strcspn(out, "\n")] = 0;
            found = true;
        }
    if (f) fclose(f);
    return found;
}

/* Started as root with a user, the workers run as that user and its groups (the supervisor
   stays root), still pinned and still tied to their supervisor. Needs root and 'nobody'. */
static void workers_drop_to_the_user_after_binding(void **state)
{
    const struct passwd *pw = getpwnam("nobody");
    if (geteuid() != 0 || !pw || pw->pw_uid == 0)
        skip_visibly("needs root and a user 'nobody' to drop to");
    uid_t uid = pw->pw_uid;
    gid_t gid = pw->pw_gid, groups[64];
    int ngroups = 64;
    assert_true(getgrouplist("nobody", gid, groups, &ngroups) >= 1);
    struct cluster c = start((struct ivy_cluster_options){.workers = 2, .user = "nobody"});
    wait_ready(&c, 2);
    for (int i = 0; i < 8; i++)
        assert_int_equal(echo_once(c.port, "unprivileged"), 1);
    char want_uid[64], want_gid[64], want_groups[512] = "", v[512];
    snprintf(want_uid, sizeof want_uid, "\t%u\t%u\t%u\t%u", uid, uid, uid, uid);
    snprintf(want_gid, sizeof want_gid, "\t%u\t%u\t%u\t%u", gid, gid, gid, gid);
    /* The kernel lists supplementary groups sorted, each followed by a space. */
    for (int i = 1; i < ngroups; i++)
        for (int j = i; j > 0 && groups[j] < groups[j - 1]; j--) {
            gid_t t = groups[j];
            groups[j] = groups[j - 1];
            groups[j - 1] = t;
        }
    for (int i = 0; i < ngroups; i++)
        snprintf(want_groups + strlen(want_groups), sizeof want_groups - strlen(want_groups),
                 "%s%u ", i ? "" : "\t", groups[i]);
    for (int w = 0; w < 2; w++) {
        pid_t pid = worker_pid(&c, w);
        assert_true(proc_status_line(pid, "Uid", v, sizeof v));
        assert_string_equal(v, want_uid);
        assert_true(proc_status_line(pid, "Gid", v, sizeof v));
        assert_string_equal(v, want_gid);
        assert_true(proc_status_line(pid, "Groups", v, sizeof v));
        assert_string_equal(v, want_groups);
        assert_int_equal(pinned_cpu(pid), worker_cpu(&c, pid)); /* pinned before dropping */
    }
    assert_true(proc_status_line(c.pid, "Uid", v, sizeof v));
    assert_string_equal(v, "\t0\t0\t0\t0");
    /* A worker that drops still dies with its supervisor (the kernel cleared PDEATHSIG). */
    pid_t w0 = worker_pid(&c, 0);
    char err[8192];
    read_stderr(&c, err, sizeof err);
    assert_null(strstr(err, "warning: serving as root"));
    assert_non_null(strstr(err, "workers drop to uid "));
    kill(c.pid, SIGKILL);
    waitpid(c.pid, NULL, 0);
    assert_true(dies(w0));
    munmap(c.shm, c.shm_len);
    close(c.err_fd);
}

/* --group alone: the group changes, the user stays. */
static void a_group_alone_changes_the_group_only(void **state)
{
    const struct group *gr = getgrnam("nogroup");
    if (geteuid() != 0 || !gr || gr->gr_gid == 0)
        skip_visibly("needs root and a group 'nogroup' to drop to");
    gid_t gid = gr->gr_gid;
    struct cluster c = start((struct ivy_cluster_options){.workers = 1, .group = "nogroup"});
    wait_ready(&c, 1);
    assert_int_equal(echo_once(c.port, "grouped"), 1);
    char want[64], v[512];
    pid_t pid = worker_pid(&c, 0);
    assert_true(proc_status_line(pid, "Uid", v, sizeof v));
    assert_string_equal(v, "\t0\t0\t0\t0");
    snprintf(want, sizeof want, "\t%u\t%u\t%u\t%u", gid, gid, gid, gid);
    assert_true(proc_status_line(pid, "Gid", v, sizeof v));
    assert_string_equal(v, want);
    snprintf(want, sizeof want, "\t%u ", gid);
    assert_true(proc_status_line(pid, "Groups", v, sizeof v));
    assert_string_equal(v, want);
    stop(&c);
}

static void serving_as_root_without_a_user_warns(void **state)
{
    if (geteuid() != 0) skip_visibly("needs root");
    struct cluster c = start((struct ivy_cluster_options){.workers = 1});
    wait_ready(&c, 1);
    char err[8192];
    read_stderr(&c, err, sizeof err);
    assert_non_null(strstr(err, "ivy: warning: serving as root: the workers"));
    /* And, not asked to, it says honestly which protection the host gives. */
    FILE *f = fopen("/proc/sys/net/ipv4/tcp_migrate_req", "r");
    int v = 0;
    if (f) {
        if (fscanf(f, "%d", &v) != 1) v = 0;
        fclose(f);
    }
    assert_non_null(strstr(err, v == 1 ? "protection: net.ipv4.tcp_migrate_req=1 (the host's "
                                         "setting)"
                                       : "protection: none: connections queued"));
    stop(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(workers_drop_to_the_user_after_binding),
        cmocka_unit_test(a_group_alone_changes_the_group_only),
        cmocka_unit_test(serving_as_root_without_a_user_warns),
    };
    if (getenv("IVY_TEST_FILTER")) cmocka_set_test_filter(getenv("IVY_TEST_FILTER"));
    return ivy_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
