/*
 * App modules: a shared object exporting `const struct ivy_module ivy_module` (cluster.h).
 *
 * The supervisor never maps a module: it checks one in a short-lived child (ivy__module_check),
 * so that each worker it forks later loads the file as it is then (dlopen would hand a process
 * that already has it the old copy). A worker loads it after pinning, before its hub serves.
 * Symbols the module leaves undefined resolve, at load, to those the `ivy` executable exports:
 * one runtime, one hub per worker.
 */
#include "cluster_impl.h"
#include "ivy/cluster.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int fail(char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return -1;
}

int ivy__module_load(const char *path, const struct ivy_module **out, char *err, size_t cap)
{
    struct stat st;
    if (stat(path, &st) < 0) return fail(err, cap, "%s", strerror(errno));
    if (!S_ISREG(st.st_mode)) return fail(err, cap, "not a regular file");
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) return fail(err, cap, "cannot load it: %s", dlerror());
    const struct ivy_module *m = dlsym(h, IVY_MODULE_SYMBOL);
    if (!m)
        return fail(err, cap,
                    "exports no '" IVY_MODULE_SYMBOL
                    "' (define const struct ivy_module " IVY_MODULE_SYMBOL
                    " = {.abi = IVY_MODULE_ABI, ...})");
    if (m->abi != IVY_MODULE_ABI)
        return fail(err, cap, "built for module ABI %u, this ivy has ABI %u: rebuild it", m->abi,
                    IVY_MODULE_ABI);
    if (!m->http == !m->tcp)
        return fail(err, cap, "ivy_module must set exactly one of .http and .tcp");
    *out = m; /* the module stays loaded for the process's life */
    return 0;
}

int ivy__module_check(const char *path, char *err, size_t cap)
{
    int p[2];
    if (pipe(p) < 0) return fail(err, cap, "pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return fail(err, cap, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        close(p[0]);
        const struct ivy_module *m;
        char msg[512];
        int rc = ivy__module_load(path, &m, msg, sizeof msg);
        if (rc < 0 && write(p[1], msg, strlen(msg)) < 0) _exit(3);
        _exit(rc < 0 ? 1 : 0);
    }
    close(p[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(p[0], err + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    err[n] = 0;
    close(p[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    if (!n) {
        if (WIFSIGNALED(status))
            fail(err, cap, "loading it killed the process (%s)", strsignal(WTERMSIG(status)));
        else
            fail(err, cap, "loading it failed");
    }
    return -1;
}
