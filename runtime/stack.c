/*
 * Greenlet stacks: slabs of mmap'ed stacks with guard pages, recycled per thread.
 *
 * Default-size stacks come from slabs of SLAB_STACKS slots (one mmap each) and go back to a
 * per-thread LIFO when released, so the next greenlet gets a warm stack with no syscall. A
 * thread keeps at most HOT_MAX of them with their pages; beyond that a released stack's pages go
 * back to the kernel (MADV_DONTNEED), every one of them, and it waits on a list of its own held
 * outside the stacks, so that a thread that once ran many green threads (a burst of
 * connections) keeps no page of theirs once they are gone. Stacks of another size have a
 * mapping of their own and are unmapped on release. Every slot is a page below its stack (the
 * guard, when there is one) and the stack; the free-list link lives in the top bytes of a free
 * stack itself.
 *
 * Guard pages: since Linux 6.13, MADV_GUARD_INSTALL makes them page-table markers that cost no
 * kernel mapping, so every stack gets one. Older kernels need mprotect, which splits the slab's
 * mapping at each guard, and vm.max_map_count caps mappings per process (65530 by default): there
 * guarded stacks are handed out while they fit in a budget derived from the sysctl; past it,
 * stacks come without guards and one line on stderr says so and names the sysctl to raise.
 *
 * A slab's syscalls are per slab, not per stack: process_madvise applies one advice to all its
 * guard pages at once, and pre-faults all its top pages (which the free-list links are about to
 * touch anyway) at once, much cheaper than a page fault each. Where process_madvise may not be
 * used on ourselves (before Linux 6.13), madvise does it page by page.
 */
#include "stack.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define IVY_STACK_DEFAULT (512 * 1024) /* ASan frames are several times larger */
#else
#define ASAN_UNPOISON_MEMORY_REGION(a, n) ((void)(a), (void)(n))
#define IVY_STACK_DEFAULT                 (128 * 1024)
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13; Debian 12's headers predate it */
#endif

enum { SLAB_STACKS = 64, HOT_MAX = 1024, MAPS_RESERVED = 8192 };

struct free_stack {
    struct free_stack *next;
    char *base;
    size_t size;
    bool guarded;
};

struct cold_stack {
    char *base;
    bool guarded;
};

struct pool {
    struct free_stack *head; /* linked through their own top pages */
    size_t count;            /* stacks on that list whose pages are still resident */
    struct cold_stack *cold; /* default-size stacks with no page resident */
    size_t ncold, cold_cap;
};

static __thread struct pool pool;
static pthread_key_t pool_key;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static pthread_mutex_t global_lock = PTHREAD_MUTEX_INITIALIZER;
static struct free_stack *depot; /* stacks left by exited threads, pages released */
static size_t default_size = IVY_STACK_DEFAULT;
static size_t guard_budget;
static size_t guarded_stacks; /* guarded by mprotect: each costs a mapping */
static size_t page_size;

/* What the kernel turned out to support: unknown (0) until tried, then yes (1) or no (-1). */
static int guard_markers, self_process_madvise, populate_write;

static int known(int *flag)
{
    return __atomic_load_n(flag, __ATOMIC_RELAXED);
}
static void learn(int *flag, bool yes)
{
    __atomic_store_n(flag, yes ? 1 : -1, __ATOMIC_RELAXED);
}

size_t ivy__page_size(void)
{
    if (!page_size) page_size = (size_t)sysconf(_SC_PAGESIZE);
    return page_size;
}

size_t ivy_stack_default_size(void)
{
    return default_size;
}

int ivy_stack_set_default_size(size_t size)
{
    if (size < 16 * 1024) return -EINVAL;
    size_t pg = ivy__page_size();
    default_size = (size + pg - 1) & ~(pg - 1);
    return 0;
}

static struct free_stack *node_of(char *base, size_t size)
{
    return (struct free_stack *)(base + size - sizeof(struct free_stack));
}

static void release_pages(char *base, size_t size)
{
    /* Keep the top page: it holds the free-list link. */
    size_t pg = ivy__page_size();
    if (size > pg) madvise(base, size - pg, MADV_DONTNEED);
}

/* Thread exit: the thread's free stacks go to the depot, pages released. */
static void pool_destroy(void *unused)
{
    struct free_stack *n = pool.head, *next;
    pthread_mutex_lock(&global_lock);
    for (; n; n = next) {
        next = n->next;
        release_pages(n->base, n->size);
        n->next = depot;
        depot = n;
    }
    for (size_t i = 0; i < pool.ncold; i++) { /* linked again: a page each, once */
        n = node_of(pool.cold[i].base, default_size);
        *n = (struct free_stack){depot, pool.cold[i].base, default_size, pool.cold[i].guarded};
        depot = n;
    }
    pthread_mutex_unlock(&global_lock);
    pool.head = NULL;
    pool.count = 0;
    free(pool.cold);
    pool.cold = NULL;
    pool.ncold = pool.cold_cap = 0;
}

static void pool_init_once(void)
{
    pthread_key_create(&pool_key, pool_destroy);
}

static size_t read_max_map_count(void)
{
    unsigned long v = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f) {
        if (fscanf(f, "%lu", &v) != 1) v = 65530;
        fclose(f);
    }
    return v;
}

/* Called with global_lock held: may the next n stacks have mprotect guard pages? */
static bool guards_fit(size_t n)
{
    static bool warned;
    if (!guard_budget) {
        size_t maps = read_max_map_count();
        guard_budget = maps > 2 * MAPS_RESERVED ? (maps - MAPS_RESERVED) / 2 : maps / 4;
    }
    if (guarded_stacks + n <= guard_budget) return true;
    if (!warned) {
        warned = true;
        fprintf(stderr,
                "ivy: vm.max_map_count (%zu) allows about %zu stacks with guard pages; "
                "further stacks have none. Raise it to keep guards: "
                "sysctl -w vm.max_map_count=%zu\n",
                read_max_map_count(), guard_budget, 4 * read_max_map_count());
    }
    return false;
}

/*
 * Applies advice to the n pages at pages[i]: with one process_madvise where the kernel lets us
 * use it on ourselves with this advice, else with one madvise each. 0 or a negative errno.
 */
static int advise_pages(char *const *pages, size_t n, int advice)
{
    size_t pg = ivy__page_size();
    bool tried = false;
    if (known(&self_process_madvise) >= 0) {
        struct iovec iov[SLAB_STACKS];
        for (size_t i = 0; i < n; i++)
            iov[i] = (struct iovec){pages[i], pg};
        /* A pidfd per call, not one kept: a forked child must not advise its parent. */
        int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
        long done = pidfd < 0 ? -1 : syscall(SYS_process_madvise, pidfd, iov, n, advice, 0);
        if (pidfd >= 0) close(pidfd);
        if (done == (long)(n * pg)) {
            learn(&self_process_madvise, true);
            return 0;
        }
        tried = true; /* and failed: page by page says whether the advice or the call did */
    }
    for (size_t i = 0; i < n; i++)
        if (madvise(pages[i], pg, advice) != 0) return -errno;
    if (tried && known(&self_process_madvise) == 0) learn(&self_process_madvise, false);
    return 0;
}

/* Guard pages (the first page of each slot) by mprotect, within the mapping budget. */
static bool protect_guards(char *m, size_t n, size_t slot)
{
    size_t pg = ivy__page_size();
    pthread_mutex_lock(&global_lock);
    bool fit = guards_fit(n);
    if (fit) guarded_stacks += n;
    pthread_mutex_unlock(&global_lock);
    if (!fit) return false;
    for (size_t i = 0; i < n; i++) {
        if (mprotect(m + i * slot, pg, PROT_NONE) == 0) continue;
        /* Out of mappings despite the budget: undo, and stop trying. */
        while (i-- > 0)
            mprotect(m + i * slot, pg, PROT_READ | PROT_WRITE);
        pthread_mutex_lock(&global_lock);
        guarded_stacks -= n;
        guard_budget = guarded_stacks;
        pthread_mutex_unlock(&global_lock);
        return false;
    }
    return true;
}

/* An unmapped stack's mprotect guard no longer counts against the budget. */
static void forget_guard(bool guarded)
{
    if (!guarded || known(&guard_markers) > 0) return;
    pthread_mutex_lock(&global_lock);
    guarded_stacks--;
    pthread_mutex_unlock(&global_lock);
}

/*
 * Maps n stacks of size bytes in one mapping, n slots of a guard page and a stack, guarded if the
 * kernel and the budget allow; their top pages are faulted in.
 */
static char *map_stacks(size_t n, size_t size, bool *guarded)
{
    size_t pg = ivy__page_size(), slot = size + pg;
    char *m = mmap(NULL, n * slot, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) return NULL;
    char *pages[SLAB_STACKS];
    for (size_t i = 0; i < n; i++)
        pages[i] = m + i * slot;
    *guarded = false;
    if (known(&guard_markers) >= 0) {
        int rc = advise_pages(pages, n, MADV_GUARD_INSTALL);
        if (rc == 0 || rc == -EINVAL) learn(&guard_markers, rc == 0);
        *guarded = rc == 0;
    }
    if (!*guarded) *guarded = protect_guards(m, n, slot);
    if (known(&populate_write) >= 0) {
        for (size_t i = 0; i < n; i++)
            pages[i] = m + (i + 1) * slot - pg;
        int rc = advise_pages(pages, n, MADV_POPULATE_WRITE); /* Linux 5.14 */
        if (rc == 0 || rc == -EINVAL) learn(&populate_write, rc == 0);
    }
    return m;
}

static void unmap_stack(char *base, size_t size, bool guarded)
{
    size_t pg = ivy__page_size();
    munmap(base - pg, size + pg);
    forget_guard(guarded);
}

static int carve_slab(size_t size)
{
    bool guarded;
    char *m = map_stacks(SLAB_STACKS, size, &guarded);
    if (!m) return -ENOMEM;
    size_t slot = size + ivy__page_size();
    for (size_t i = SLAB_STACKS; i-- > 0;) {
        char *base = m + i * slot + ivy__page_size();
        struct free_stack *n = node_of(base, size);
        *n = (struct free_stack){pool.head, base, size, guarded};
        pool.head = n;
    }
    return 0;
}

static bool refill_from_depot(void)
{
    pthread_mutex_lock(&global_lock);
    struct free_stack *n = depot;
    if (n) depot = n->next;
    pthread_mutex_unlock(&global_lock);
    if (!n) return false;
    n->next = pool.head;
    pool.head = n;
    return true;
}

int ivy__stack_alloc(struct ivy_stack *st, size_t size)
{
    size_t pg = ivy__page_size();
    if (size == 0) size = default_size;
    size = (size + pg - 1) & ~(pg - 1);

    if (size != default_size) {
        char *m = map_stacks(1, size, &st->guarded);
        if (!m) return -ENOMEM;
        st->base = m + pg;
        st->size = size;
        st->pooled = false;
        return 0;
    }
    if ((!pool.head || pool.head->size != size) && pool.ncold) {
        struct cold_stack c = pool.cold[--pool.ncold];
        *st = (struct ivy_stack){c.base, size, c.guarded, true};
        ASAN_UNPOISON_MEMORY_REGION(st->base, st->size);
        return 0;
    }
    if (!pool.head || pool.head->size != size) {
        pthread_once(&pool_once, pool_init_once);
        pthread_setspecific(pool_key, &pool); /* so pool_destroy runs at thread exit */
        while (!pool.head || pool.head->size != size) {
            if (!refill_from_depot()) {
                int rc = carve_slab(size);
                if (rc < 0) return rc;
            } else if (pool.head->size != size) {
                struct free_stack *n = pool.head; /* old default size: drop it */
                pool.head = n->next;
                unmap_stack(n->base, n->size, n->guarded);
            }
        }
    }
    struct free_stack *n = pool.head;
    pool.head = n->next;
    if (pool.count) pool.count--;
    *st = (struct ivy_stack){n->base, n->size, n->guarded, true};
    ASAN_UNPOISON_MEMORY_REGION(st->base, st->size);
    return 0;
}

/* Releases every page of st and keeps it on the cold list; false without memory for that. */
static bool push_cold(const struct ivy_stack *st)
{
    if (pool.ncold == pool.cold_cap) {
        size_t cap = pool.cold_cap ? pool.cold_cap * 2 : 256;
        struct cold_stack *v = realloc(pool.cold, cap * sizeof *v);
        if (!v) return false;
        pool.cold = v;
        pool.cold_cap = cap;
    }
    pthread_once(&pool_once, pool_init_once);
    pthread_setspecific(pool_key, &pool); /* pool_destroy frees the list at thread exit */
    madvise(st->base, st->size, MADV_DONTNEED);
    pool.cold[pool.ncold++] = (struct cold_stack){st->base, st->guarded};
    return true;
}

void ivy__stack_release(struct ivy_stack *st)
{
    if (!st->pooled || st->size != default_size) {
        unmap_stack(st->base, st->size, st->guarded);
        return;
    }
    ASAN_UNPOISON_MEMORY_REGION(st->base, st->size);
    if (pool.count >= HOT_MAX && push_cold(st)) return;
    if (pool.count >= HOT_MAX)
        release_pages(st->base, st->size); /* no room on the cold list: keep the top page */
    else
        pool.count++;
    struct free_stack *n = node_of(st->base, st->size);
    *n = (struct free_stack){pool.head, st->base, st->size, st->guarded};
    pool.head = n;
}

bool ivy__stack_guard_hit(const struct ivy_stack *st, const void *addr)
{
    uintptr_t a = (uintptr_t)addr, b = (uintptr_t)st->base;
    return st->guarded && a < b && a >= b - ivy__page_size();
}
