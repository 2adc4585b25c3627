/*
 * The router: Go 1.22 ServeMux patterns (see http.h) matched segment by segment against the
 * raw path. Routes are few and paths short, so matching is a scan over every route, keeping the
 * most specific match: per segment a literal beats {name}, which beats {name...}; then a method
 * beats none. A request no route matches is 404; one whose path matches routes of other
 * methods only is 405, with those methods in Allow (sorted).
 *
 * Exact routes (literal segments only, or ending in {$}) match one path each, and nothing is
 * more specific for that path: so they are first looked up by path in a hash table, and a hit
 * whose method fits is the answer, with no scan. Anything else (no exact route for the path, or
 * none of its methods fits) takes the scan.
 */
#include "server_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum seg_kind { SEG_REST = 1, SEG_PARAM = 2, SEG_END = 3, SEG_LIT = 4 };

struct seg {
    enum seg_kind kind;
    struct ivy_http_slice text; /* the literal, or the parameter's name (may be empty) */
};

struct route {
    char *pattern;                  /* owns what the segments point into */
    struct ivy_http_slice method;   /* p NULL: any */
    enum ivy_http_method method_id; /* method's, IVY_HTTP_OTHER for one the parser has no id for */
    struct seg *seg;
    unsigned nseg;
    bool params;                 /* some segment is a named {wildcard} */
    struct ivy_http_slice exact; /* p NULL, or the one path an exact route matches */
    unsigned same_path;          /* 1 + index of the next exact route with that path, or 0 */
    ivy_http_handler fn;
    void *arg;
};

struct ivy_http_router {
    struct route *v;
    unsigned n, cap;
    unsigned *exact;     /* by hash of path: 1 + index of the first exact route, 0 empty */
    unsigned exact_mask; /* the table's size - 1 (a power of two), 0 with no table */
};

ivy_http_router *ivy_http_router_new(void)
{
    return calloc(1, sizeof(ivy_http_router));
}

void ivy_http_router_free(ivy_http_router *rt)
{
    if (!rt) return;
    for (unsigned i = 0; i < rt->n; i++) {
        free(rt->v[i].pattern);
        free(rt->v[i].seg);
    }
    free(rt->v);
    free(rt->exact);
    free(rt);
}

static size_t path_hash(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 0x100000001b3ull;
    return (size_t)(h ^ h >> 29);
}

static bool same_slice(struct ivy_http_slice a, struct ivy_http_slice b)
{
    return a.len == b.len && !memcmp(a.p, b.p, a.len);
}

/* The first exact route for path, or NULL. */
static const struct route *exact_first(const ivy_http_router *rt, struct ivy_http_slice path)
{
    if (!rt->exact_mask) return NULL;
    for (size_t i = path_hash(path.p, path.len);; i++) {
        unsigned k = rt->exact[i & rt->exact_mask];
        if (!k) return NULL;
        if (same_slice(rt->v[k - 1].exact, path)) return &rt->v[k - 1];
    }
}

/* Rebuilds the exact routes' table (open addressing, at most half full): on each new route. */
static int exact_index(ivy_http_router *rt)
{
    unsigned n = 0;
    for (unsigned i = 0; i < rt->n; i++)
        n += rt->v[i].exact.p != NULL;
    if (!n) return 0;
    unsigned size = 8;
    while (size < 2 * n)
        size *= 2;
    unsigned *t = calloc(size, sizeof *t);
    if (!t) return -ENOMEM;
    free(rt->exact);
    rt->exact = t;
    rt->exact_mask = size - 1;
    for (unsigned i = 0; i < rt->n; i++)
        rt->v[i].same_path = 0;
    /* One slot per path; a path's other routes hang behind it (in no particular order: on one
     * path no two routes rank alike for any method, see method_rank). */
    for (unsigned i = 0; i < rt->n; i++) {
        struct route *x = &rt->v[i];
        if (!x->exact.p) continue;
        struct route *first = (struct route *)exact_first(rt, x->exact);
        if (first) {
            x->same_path = first->same_path;
            first->same_path = i + 1;
            continue;
        }
        size_t h = path_hash(x->exact.p, x->exact.len);
        while (t[h & rt->exact_mask])
            h++;
        t[h & rt->exact_mask] = i + 1;
    }
    return 0;
}

/* "{name}", "{name...}" or "{$}" at s[0, n): its kind, 0 if malformed. */
static enum seg_kind wildcard(const char *s, size_t n, struct ivy_http_slice *name)
{
    if (n < 3 || s[0] != '{' || s[n - 1] != '}') return 0;
    const char *p = s + 1;
    size_t len = n - 2;
    enum seg_kind k = SEG_PARAM;
    if (len == 1 && *p == '$') return SEG_END;
    if (len >= 3 && !memcmp(p + len - 3, "...", 3)) {
        k = SEG_REST;
        len -= 3;
    }
    if (!len) return 0; /* "{}", "{...}": a wildcard needs a name (a bare "/x/" is unnamed) */
    for (size_t i = 0; i < len; i++)
        if (!(p[i] == '_' || (p[i] >= '0' && p[i] <= '9') ||
              ((p[i] | 0x20) >= 'a' && (p[i] | 0x20) <= 'z')))
            return 0;
    *name = (struct ivy_http_slice){p, len};
    return k;
}

static int parse_pattern(struct route *rt, char *pat)
{
    char *path = strchr(pat, '/');
    if (!path) return -EINVAL;
    if (path != pat) {
        char *sp = path - 1;
        if (*sp != ' ' || sp == pat || memchr(pat, ' ', (size_t)(sp - pat))) return -EINVAL;
        rt->method = (struct ivy_http_slice){pat, (size_t)(sp - pat)};
        rt->method_id = ivy__http_method_id(pat, (size_t)(sp - pat));
    }
    unsigned cap = 1;
    for (const char *p = path; *p; p++)
        cap += *p == '/';
    if (!(rt->seg = calloc(cap, sizeof *rt->seg))) return -ENOMEM;
    const char *p = path + 1;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        struct seg *s = &rt->seg[rt->nseg++];
        bool last = !slash;
        if (!n && last) {
            s->kind = SEG_REST; /* "/x/": the rest of the path, unnamed */
            break;
        }
        if (n && p[0] == '{') {
            if (!(s->kind = wildcard(p, n, &s->text))) return -EINVAL;
            for (unsigned i = 0; s->kind != SEG_END && i + 1 < rt->nseg; i++)
                if (rt->seg[i].kind != SEG_LIT && rt->seg[i].text.len == s->text.len &&
                    !memcmp(rt->seg[i].text.p, s->text.p, s->text.len))
                    return -EINVAL; /* the same name twice: ivy_http_param could see one */
            if ((s->kind == SEG_REST || s->kind == SEG_END) && !last) return -EINVAL;
        } else {
            if (!n || memchr(p, '{', n) || memchr(p, '}', n)) return -EINVAL;
            s->kind = SEG_LIT;
            s->text = (struct ivy_http_slice){p, n};
        }
        if (last) break;
        p = slash + 1;
    }
    return 0;
}

static bool same_shape(const struct route *a, const struct route *b)
{
    if (a->nseg != b->nseg || (a->method.p == NULL) != (b->method.p == NULL)) return false;
    if (a->method.p &&
        (a->method.len != b->method.len || memcmp(a->method.p, b->method.p, a->method.len)))
        return false;
    for (unsigned i = 0; i < a->nseg; i++) {
        const struct seg *x = &a->seg[i], *y = &b->seg[i];
        if (x->kind != y->kind) return false;
        if (x->kind == SEG_LIT &&
            (x->text.len != y->text.len || memcmp(x->text.p, y->text.p, x->text.len)))
            return false;
    }
    return true;
}

int ivy_http_route(ivy_http_router *rt, const char *pattern, ivy_http_handler fn, void *arg)
{
    if (!rt || !pattern || !fn) return -EINVAL;
    struct route r = {.fn = fn, .arg = arg};
    if (!(r.pattern = strdup(pattern))) return -ENOMEM;
    int rc = parse_pattern(&r, r.pattern);
    for (unsigned i = 0; rc == 0 && i < rt->n; i++)
        if (same_shape(&rt->v[i], &r)) rc = -EEXIST;
    if (rc == 0 && rt->n == rt->cap) {
        unsigned cap = rt->cap ? rt->cap * 2 : 8;
        struct route *v = realloc(rt->v, cap * sizeof *v);
        if (!v)
            rc = -ENOMEM;
        else {
            rt->v = v;
            rt->cap = cap;
        }
    }
    if (rc < 0) {
        free(r.pattern);
        free(r.seg);
        return rc;
    }
    bool exact = true;
    for (unsigned i = 0; i < r.nseg; i++) {
        if (r.seg[i].kind == SEG_PARAM || (r.seg[i].kind == SEG_REST && r.seg[i].text.len))
            r.params = true;
        exact &= r.seg[i].kind == SEG_LIT || r.seg[i].kind == SEG_END;
    }
    if (exact) { /* the pattern's path, less a final "{$}": "/a/{$}" matches "/a/" */
        const char *path = strchr(r.pattern, '/');
        size_t len = strlen(path);
        r.exact = (struct ivy_http_slice){path, r.seg[r.nseg - 1].kind == SEG_END ? len - 3 : len};
    }
    rt->v[rt->n++] = r;
    if (exact && exact_index(rt) < 0) {
        rt->n--;
        free(r.pattern);
        free(r.seg);
        return -ENOMEM;
    }
    return 0;
}

/*
 * Matches path against rt's segments: true with the parameters in req (when given) and the
 * match's specificity in score[] (a kind per segment, compared in order).
 */
static bool match(const struct route *rt, struct ivy_http_slice path, ivy_http_req *req,
                  uint8_t *score)
{
    const char *p = path.p + 1, *end = path.p + path.len;
    unsigned np = 0;
    if (!path.len || path.p[0] != '/') return false;
    for (unsigned i = 0; i < rt->nseg; i++) {
        const struct seg *s = &rt->seg[i];
        score[i] = (uint8_t)s->kind;
        if (s->kind == SEG_REST) {
            if (p > end) return false; /* "/x/" needs the slash: "/x" is not under it */
            if (req && s->text.len && np < IVY_HTTP_MAX_PARAMS) {
                req->param[np].name = s->text;
                req->param[np++].value = (struct ivy_http_slice){p, (size_t)(end - p)};
            }
            goto matched;
        }
        if (p > end) return false;
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *stop = slash ? slash : end;
        size_t n = (size_t)(stop - p);
        if (s->kind == SEG_END) {
            if (n || slash) return false;
        } else if (s->kind == SEG_LIT) {
            if (n != s->text.len || memcmp(p, s->text.p, n)) return false;
        } else {
            if (!n) return false;
            if (req && np < IVY_HTTP_MAX_PARAMS) {
                req->param[np].name = s->text;
                req->param[np++].value = (struct ivy_http_slice){p, n};
            }
        }
        p = stop + 1;
    }
    if (p <= end) return false; /* path segments left over */
matched:
    if (req) req->nparams = np;
    return true;
}

/* How well rt's method fits r's: -1 not at all, 0 any method, 1 GET serving a HEAD, 2 the same
 * method (so that "HEAD /x" wins a HEAD over "GET /x", whatever their order). */
static int method_rank(const struct route *rt, const ivy_http_req *r)
{
    if (!rt->method.p) return 0;
    if (rt->method_id != IVY_HTTP_OTHER) {
        if (rt->method_id == r->h.method_id) return 2;
        return r->h.method_id == IVY_HTTP_HEAD && rt->method_id == IVY_HTTP_GET ? 1 : -1;
    }
    struct ivy_http_slice m = r->h.method; /* other methods: by name */
    return rt->method.len == m.len && !memcmp(rt->method.p, m.p, m.len) ? 2 : -1;
}

/* Whether score a (of na segments, method rank ma) is more specific than b. */
static bool better(const uint8_t *a, unsigned na, int ma, const uint8_t *b, unsigned nb, int mb)
{
    for (unsigned i = 0; i < na && i < nb; i++)
        if (a[i] != b[i]) return a[i] > b[i];
    if (na != nb) return na > nb;
    return ma > mb;
}

static int by_name(const void *a, const void *b)
{
    const struct ivy_http_slice *x = a, *y = b;
    int c = memcmp(x->p, y->p, x->len < y->len ? x->len : y->len);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* 405, Allow listing the methods of the routes whose path matches, sorted (as Go does: the
 * same whatever the order routes were added in), each once, HEAD with GET. */
static int not_allowed(ivy_http_req *r, const ivy_http_router *rt)
{
    struct ivy_http_slice m[64];
    unsigned nm = 0;
    uint8_t score[64];
    for (unsigned i = 0; i < rt->n && nm + 2 <= sizeof m / sizeof *m; i++) {
        const struct route *x = &rt->v[i];
        if (!x->method.p || x->nseg > sizeof score || !match(x, r->h.path, NULL, score)) continue;
        m[nm++] = x->method;
        if (x->method.len == 3 && !memcmp(x->method.p, "GET", 3))
            m[nm++] = (struct ivy_http_slice){"HEAD", 4};
    }
    qsort(m, nm, sizeof *m, by_name);
    char allow[512];
    size_t n = 0;
    for (unsigned i = 0; i < nm; i++) {
        if ((i && !by_name(&m[i - 1], &m[i])) || n + m[i].len + 2 >= sizeof allow) continue;
        if (n) {
            memcpy(allow + n, ", ", 2);
            n += 2;
        }
        memcpy(allow + n, m[i].p, m[i].len);
        n += m[i].len;
    }
    allow[n] = 0;
    int rc = ivy_http_add_header(r, "Allow", allow);
    return rc < 0 ? rc : ivy_http_error(r, 405);
}

/* Whether route x can match a path whose first segment is first: a literal first segment must
 * be it. A cheap test that spares most routes the full match. */
static bool may_match(const struct route *x, struct ivy_http_slice first)
{
    const struct seg *s0 = &x->seg[0];
    return s0->kind != SEG_LIT ||
           (s0->text.len == first.len && !memcmp(s0->text.p, first.p, first.len));
}

int ivy_http_router_handler(ivy_http_req *r, void *arg)
{
    const ivy_http_router *rt = arg;
    int rank, best_rank = -1;
    const struct route *best = NULL;
    for (const struct route *x = exact_first(rt, r->h.path); x;
         x = x->same_path ? &rt->v[x->same_path - 1] : NULL)
        if ((rank = method_rank(x, r)) > best_rank) {
            best = x;
            best_rank = rank;
        }
    if (best) return best->fn(r, best->arg);
    uint8_t score[64], best_score[64];
    bool path_seen = false;
    struct ivy_http_slice path = r->h.path, first = {path.p + 1, 0};
    if (path.len) {
        const char *slash = memchr(path.p + 1, '/', path.len - 1);
        first.len = (size_t)((slash ? slash : path.p + path.len) - first.p);
    }
    for (unsigned i = 0; i < rt->n; i++) {
        const struct route *x = &rt->v[i];
        if (!may_match(x, first)) continue;
        if (x->nseg > sizeof score || !match(x, r->h.path, NULL, score)) continue;
        path_seen = true;
        if ((rank = method_rank(x, r)) < 0) continue;
        if (best && !better(score, x->nseg, rank, best_score, best->nseg, best_rank)) continue;
        best = x;
        best_rank = rank;
        memcpy(best_score, score, x->nseg);
    }
    if (!best) return path_seen ? not_allowed(r, rt) : ivy_http_error(r, 404);
    if (best->params) match(best, r->h.path, r, score); /* again, to take its parameters */
    return best->fn(r, best->arg);
}
