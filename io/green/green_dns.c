/*
 * Green libc, names: getaddrinfo, gethostbyname_r and gethostbyname run libc's own resolver in
 * the hub's offload pool (include/ivy/offload.h), whose threads have no hub, so the resolver's
 * inner sends, receives and polls there are libc's, unmodified.
 *
 * A job lives on the heap with copies of its names and buffer: a caller that is killed (or
 * whose ivy_timeout scope expires) leaves at once and the pool frees the job when the resolver
 * returns. Such a caller sees EAI_SYSTEM with errno ECANCELED or ETIMEDOUT (getaddrinfo), or
 * that error number (gethostbyname_r, and h_errno NETDB_INTERNAL for gethostbyname).
 */
#include "green_impl.h"

#include <netdb.h>
#include <stdlib.h>
#include <string.h>

GREEN_REAL(getaddrinfo)
GREEN_REAL(gethostbyname_r)
GREEN_REAL(gethostbyname)

struct gai_job {
    const char *node, *service;
    struct addrinfo hints;
    bool has_hints;
    struct addrinfo *res;
    int rc, err;
    char names[];
};

static void *gai_run(void *arg)
{
    struct gai_job *j = arg;
    j->rc = REAL(getaddrinfo)(j->node, j->service, j->has_hints ? &j->hints : NULL, &j->res);
    j->err = errno;
    return NULL;
}

static void gai_release(void *arg, void *result)
{
    struct gai_job *j = arg;
    if (j->rc == 0 && j->res) freeaddrinfo(j->res);
    free(j);
}

static __attribute__((noinline)) int g_getaddrinfo(const char *node, const char *service,
                                                   const struct addrinfo *hints,
                                                   struct addrinfo **res)
{
    size_t nl = node ? strlen(node) + 1 : 0, sl = service ? strlen(service) + 1 : 0;
    struct gai_job *j = calloc(1, sizeof *j + nl + sl);
    if (!j) return EAI_MEMORY;
    j->rc = EAI_SYSTEM; /* what gai_release sees if the resolver never ran */
    if (node) j->node = memcpy(j->names, node, nl);
    if (service) j->service = memcpy(j->names + nl, service, sl);
    if (hints) {
        /* POSIX: the other fields of hints are zero or NULL. */
        j->hints.ai_flags = hints->ai_flags;
        j->hints.ai_family = hints->ai_family;
        j->hints.ai_socktype = hints->ai_socktype;
        j->hints.ai_protocol = hints->ai_protocol;
        j->has_hints = true;
    }
    int rc = ivy__green_ops->offload(gai_run, j, NULL, gai_release);
    if (rc < 0) { /* j is the pool's now */
        errno = -rc;
        return EAI_SYSTEM;
    }
    rc = j->rc;
    if (rc == 0) *res = j->res;
    if (rc == EAI_SYSTEM) errno = j->err;
    free(j);
    return rc;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    if (!green_here()) return REAL(getaddrinfo)(node, service, hints, res);
    return g_getaddrinfo(node, service, hints, res);
}

struct ghbn_job {
    const char *name;
    struct hostent he, *result;
    int rc, herr;
    size_t buflen;
    char *buf; /* buflen bytes in mem, then the name */
    char mem[];
};

static void *ghbn_run(void *arg)
{
    struct ghbn_job *j = arg;
    j->rc = REAL(gethostbyname_r)(j->name, &j->he, j->buf, j->buflen, &j->result, &j->herr);
    return NULL;
}

static void ghbn_release(void *arg, void *result)
{
    free(arg);
}

/* A pointer into the job's buffer, moved to the same place in the caller's. */
static void *rebase(const struct ghbn_job *j, char *buf, const void *p)
{
    return p ? buf + ((const char *)p - j->buf) : NULL;
}

static void rebase_list(const struct ghbn_job *j, char *buf, char ***list)
{
    if (!*list) return;
    *list = rebase(j, buf, *list);
    for (char **e = *list; *e; e++)
        *e = rebase(j, buf, *e);
}

static __attribute__((noinline)) int g_gethostbyname_r(const char *name, struct hostent *ret,
                                                       char *buf, size_t buflen,
                                                       struct hostent **result, int *h_errnop)
{
    size_t nl = strlen(name) + 1;
    *result = NULL;
    /*
     * The job's buffer at the caller's alignment (mod 16), so that the pointer arrays libc
     * aligns in it stay aligned once copied to the same offsets in buf.
     */
    size_t skew = (uintptr_t)buf % 16;
    struct ghbn_job *j = malloc(sizeof *j + 16 + buflen + nl);
    if (!j) {
        *h_errnop = NETDB_INTERNAL;
        return ENOMEM;
    }
    j->buf = (char *)(((uintptr_t)j->mem + 15) & ~(uintptr_t)15) + skew;
    j->name = memcpy(j->buf + buflen, name, nl);
    j->buflen = buflen;
    j->result = NULL;
    j->herr = 0;
    int rc = ivy__green_ops->offload(ghbn_run, j, NULL, ghbn_release);
    if (rc < 0) { /* j is the pool's now */
        *h_errnop = NETDB_INTERNAL;
        return -rc;
    }
    rc = j->rc;
    *h_errnop = j->herr;
    if (rc == 0 && j->result) {
        /* The answer points into the job's buffer: the same bytes, at the same offsets, in buf. */
        memcpy(buf, j->buf, buflen);
        *ret = j->he;
        ret->h_name = rebase(j, buf, j->he.h_name);
        rebase_list(j, buf, &ret->h_aliases);
        rebase_list(j, buf, &ret->h_addr_list);
        *result = ret;
    }
    free(j);
    return rc;
}

int gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t buflen,
                    struct hostent **result, int *h_errnop)
{
    if (!green_here() || !name)
        return REAL(gethostbyname_r)(name, ret, buf, buflen, result, h_errnop);
    return g_gethostbyname_r(name, ret, buf, buflen, result, h_errnop);
}

/* libc's is not reentrant either: one answer per OS thread, overwritten by the next call. */
static __thread struct {
    struct hostent he;
    char *buf;
    size_t len;
} ghbn;

static __attribute__((noinline)) struct hostent *g_gethostbyname(const char *name)
{
    struct hostent *res;
    int herr, rc;
    for (;;) {
        if (!ghbn.buf) {
            ghbn.len = ghbn.len ? ghbn.len * 2 : 1024;
            if (!(ghbn.buf = malloc(ghbn.len))) {
                ghbn.len = 0;
                h_errno = NETDB_INTERNAL;
                errno = ENOMEM;
                return NULL;
            }
        }
        rc = gethostbyname_r(name, &ghbn.he, ghbn.buf, ghbn.len, &res, &herr);
        if (rc != ERANGE || ghbn.len >= 1 << 20) break;
        free(ghbn.buf);
        ghbn.buf = NULL;
    }
    h_errno = herr;
    if (rc) errno = rc;
    return res;
}

struct hostent *gethostbyname(const char *name)
{
    if (!green_here() || !name) return REAL(gethostbyname)(name);
    return g_gethostbyname(name);
}
