/*
 * Greenlet stacks: slabs of mmap'ed stacks with guard pages, recycled per thread.
 *
 * Default-size stacks come from slabs of SLAB_STACKS slots (one mmap each) and go back to a
 * per-thread LIFO when released, so the next greenlet gets a warm stack with no syscall. A
 * thread keeps at most HOT_MAX of them with their pages; beyond that a released stack's pages go
 * back to the kernel (MADV_DONTNEED) before it joins the list. Stacks of another size have a
 * mapping of their own and are unmapped on release.
 *
 * Guard pages cost one extra kernel mapping each, and vm.max_map_count caps mappings per process
 * (65530 by default). Guarded stacks are handed out while they fit in a budget derived from the
 * sysctl; past it, stacks come without guards and one line on stderr says so and names the
 * sysctl to raise. The free-list link lives in the top bytes of the free stack itself.
 */
#include "stack.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define IVY_STACK_DEFAULT (512 * 1024) /* ASan frames are several times larger */
#else
#define ASAN_UNPOISON_MEMORY_REGION(a, n) ((void)(a), (void)(n))
#define IVY_STACK_DEFAULT (128 * 1024)
#endif

enum { SLAB_STACKS = 64, HOT_MAX = 1024, MAPS_RESERVED = 8192 };

struct free_stack {
    struct free_stack *next;
    char *base;
    size_t size;
    bool guarded;
};

struct pool {
    struct free_stack *head;
    size_t count; /* stacks on the list whose pages are still resident */
};

static __thread struct pool pool;
static pthread_key_t pool_key;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static pthread_mutex_t global_lock = PTHREAD_MUTEX_INITIALIZER;
static struct free_stack *depot; /* stacks left by exited threads, pages released */
static size_t default_size = IVY_STACK_DEFAULT;
static size_t guard_budget;
static size_t guarded_stacks;
static size_t page_size;

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
    pthread_mutex_unlock(&global_lock);
    pool.head = NULL;
    pool.count = 0;
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

/* Called with global_lock held: may the next n stacks have guard pages? */
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

/* Maps n stacks of size bytes in one mapping, guarded if the budget allows. */
static char *map_stacks(size_t n, size_t size, bool *guarded)
{
    size_t pg = ivy__page_size();
    pthread_mutex_lock(&global_lock);
    *guarded = guards_fit(n);
    if (*guarded) guarded_stacks += n;
    pthread_mutex_unlock(&global_lock);

    size_t slot = size + (*guarded ? pg : 0);
    char *m = mmap(NULL, n * slot, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) return NULL;
    for (size_t i = 0; *guarded && i < n; i++) {
        if (mprotect(m + i * slot, pg, PROT_NONE) != 0) {
            /* Out of mappings despite the budget: keep going without guards. */
            munmap(m, n * slot);
            pthread_mutex_lock(&global_lock);
            guarded_stacks -= n;
            guard_budget = guarded_stacks;
            pthread_mutex_unlock(&global_lock);
            return map_stacks(n, size, guarded);
        }
    }
    return m;
}

static int carve_slab(size_t size)
{
    bool guarded;
    char *m = map_stacks(SLAB_STACKS, size, &guarded);
    if (!m) return -ENOMEM;
    size_t slot = size + (guarded ? ivy__page_size() : 0);
    for (size_t i = SLAB_STACKS; i-- > 0;) {
        char *base = m + i * slot + (guarded ? ivy__page_size() : 0);
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
        st->base = m + (st->guarded ? pg : 0);
        st->size = size;
        st->pooled = false;
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
                munmap(n->base - (n->guarded ? pg : 0), n->size + (n->guarded ? pg : 0));
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

void ivy__stack_release(struct ivy_stack *st)
{
    size_t pg = ivy__page_size();
    if (!st->pooled || st->size != default_size) {
        munmap(st->base - (st->guarded ? pg : 0), st->size + (st->guarded ? pg : 0));
        return;
    }
    ASAN_UNPOISON_MEMORY_REGION(st->base, st->size);
    if (pool.count >= HOT_MAX)
        release_pages(st->base, st->size);
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
