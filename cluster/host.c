/*
 * What the supervisor asks of the host: the system setting that keeps connections queued in a
 * closing worker's listener (tcp_migrate_req, only when asked), and the workers' privileges.
 *
 * Dropping the workers' privileges (nginx's `user`): a worker parses what any client sends, so
 * when the supervisor runs as root, its workers should not. The supervisor resolves the user
 * and group once, at start-up, where a typo is reported before anything is forked; each worker
 * drops to them after it has bound its listener and opened what it needs (ring, signalfd), just
 * before the app runs: supplementary groups, then the group, then the user, in that order (the
 * group can no longer be changed once the user is not root), each call checked, and the result
 * verified (no way back to root). The supervisor itself keeps root: it must bind again for
 * replacements and signal every worker.
 */
#include "cluster_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* tcp_migrate_req moves connections queued in a closing listener to a live sibling. It is the
   whole host's setting: changed only when asked (migrate_req), and what is in force is said. */
void ivy__host_protection(bool migrate_req, bool inherited, bool quiet)
{
    const char *path = "/proc/sys/net/ipv4/tcp_migrate_req";
    bool ask = migrate_req && !inherited;
    char v = '0';
    int err = 0;
    int fd = open(path, (ask ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) {
        err = errno;
    } else {
        if (read(fd, &v, 1) != 1) v = '0';
        if (ask && v != '1') {
            if (pwrite(fd, "1", 1, 0) == 1)
                v = '1';
            else
                err = errno;
        }
        close(fd);
    }
    if (ask && v != '1') {
        fprintf(stderr,
                "ivy: warning: protection: none: cannot set net.ipv4.tcp_migrate_req=1 (%s); "
                "connections queued in a closing worker's listener will be reset\n",
                strerror(err ? err : EOPNOTSUPP));
        return;
    }
    if (quiet) return;
    if (inherited)
        fprintf(stderr, "ivy: protection: one inherited listener shared by every worker (socket "
                        "activation): nothing is queued per worker\n");
    else if (v == '1')
        fprintf(stderr,
                "ivy: protection: net.ipv4.tcp_migrate_req=1 (%s): connections queued in a closing "
                "worker's listener migrate to a live one\n",
                ask ? "set by --migrate-req" : "the host's setting");
    else
        fprintf(
            stderr,
            "ivy: protection: none: connections queued in a closing worker's listener are reset "
            "(--migrate-req sets net.ipv4.tcp_migrate_req=1 for the whole host)\n");
}

static struct {
    bool drop, set_uid;
    uid_t uid;
    gid_t gid;
    int ngroups;
    gid_t *groups;
} P;

/* A name, or a number for an id that has no name; false when neither. */
static bool parse_id(const char *s, unsigned long *id)
{
    char *end;
    errno = 0;
    *id = strtoul(s, &end, 10);
    return s[0] >= '0' && s[0] <= '9' && !*end && !errno && *id < (unsigned long)(uid_t)-1;
}

int ivy__privs_setup(const char *user, const char *group, bool quiet)
{
    free(P.groups);
    memset(&P, 0, sizeof P);
    if (!user && !group) {
        if (geteuid() == 0)
            fprintf(stderr, "ivy: warning: serving as root: the workers, which parse what "
                            "clients send, keep every privilege; --user USER drops them after "
                            "binding\n");
        return 0;
    }
    if (geteuid() != 0) {
        fprintf(stderr,
                "ivy: --user/--group need the supervisor to run as root (it runs as uid "
                "%u)\n",
                (unsigned)geteuid());
        return -EPERM;
    }
    unsigned long id;
    const char *name = NULL;
    if (user) {
        struct passwd *pw = getpwnam(user);
        if (!pw && parse_id(user, &id)) pw = getpwuid((uid_t)id);
        if (!pw) {
            fprintf(stderr, "ivy: unknown user '%s'\n", user);
            return -ENOENT;
        }
        P.set_uid = true;
        P.uid = pw->pw_uid;
        P.gid = pw->pw_gid;
        name = pw->pw_name;
    }
    if (group) {
        struct group *gr = getgrnam(group);
        if (gr)
            P.gid = gr->gr_gid;
        else if (parse_id(group, &id))
            P.gid = (gid_t)id;
        else {
            fprintf(stderr, "ivy: unknown group '%s'\n", group);
            return -ENOENT;
        }
    }
    /* The user's supplementary groups, as initgroups would set them; with --group alone, that
       group only. */
    int n = 1;
    P.groups = malloc(sizeof *P.groups);
    if (P.groups && name && getgrouplist(name, P.gid, P.groups, &n) < 0) {
        gid_t *more = realloc(P.groups, (size_t)n * sizeof *P.groups);
        if (more) P.groups = more;
        if (!more || getgrouplist(name, P.gid, P.groups, &n) < 0) n = -1;
    }
    if (!P.groups || n < 0) {
        fprintf(stderr, "ivy: cannot list the groups of user '%s'\n", name);
        return -ENOMEM;
    }
    if (!name) P.groups[0] = P.gid;
    P.ngroups = n;
    P.drop = true;
    if (!quiet)
        fprintf(stderr, "ivy: workers drop to uid %u, gid %u and %d group%s after binding\n",
                (unsigned)(P.set_uid ? P.uid : geteuid()), (unsigned)P.gid, n, n == 1 ? "" : "s");
    return 0;
}

int ivy__privs_drop(void)
{
    if (!P.drop) return 0;
    const char *what = "setgroups";
    if (setgroups((size_t)P.ngroups, P.groups) < 0) goto fail;
    what = "setgid";
    if (setgid(P.gid) < 0) goto fail;
    what = "setuid";
    if (P.set_uid && setuid(P.uid) < 0) goto fail;
    /* Verify rather than trust: every id changed, and root is out of reach. */
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    what = "the check of the new ids";
    if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0) goto fail;
    errno = EPERM;
    if (rg != P.gid || eg != P.gid || sg != P.gid) goto fail;
    if (P.set_uid && (ru != P.uid || eu != P.uid || su != P.uid)) goto fail;
    if (P.set_uid && P.uid != 0 && setuid(0) == 0) goto fail;
    return 0;
fail:;
    int err = errno;
    fprintf(stderr, "ivy: worker: cannot drop privileges: %s failed: %s\n", what, strerror(err));
    return -err;
}
