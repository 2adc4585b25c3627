/*
 * The cost of a greenlet's life, and of many at once (DESIGN.md §1: stacks pooled, memory only
 * what a stack touched, a plan for vm.max_map_count):
 *
 *   create_run_free_ns: ivy_greenlet_new, switch in, run returns, ivy_greenlet_free; the stack
 *                       comes back warm from the per-thread pool (median of RUNS runs, in the
 *                       thread's CPU time, so that other load on the machine does not count)
 *   million_create_s:   1,000,000 greenlets, each started and suspended after touching its stack
 *   million_rss_mib:    what that added to the resident set (VmRSS; VmHWM for the peak;
 *                       VmPTE, the page tables, is kernel memory outside it)
 *   million_guarded_stacks: how many of them got a guard page; past a budget derived from
 *                       vm.max_map_count the rest have none (the stack allocator says so once)
 *   million_maps:       the process's kernel mappings then (/proc/self/maps lines)
 *   million_free_s:     freeing them all, each killed with IVY_EXIT
 *   million_page_touch_s: a reference, what the machine charges for the pages: one write to
 *                       each of 1,000,000 fresh pages laid out as the stacks are, mapped as
 *                       ivy maps them (MAP_STACK: no transparent huge pages). Not a lower
 *                       bound on million_create_s: ivy pre-faults a slab's top pages in one
 *                       MADV_POPULATE_WRITE call, cheaper than a page fault each.
 */
#include <ivy/ivy.h>

#include "greenlet_impl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

enum { RUNS = 7, CYCLES = 1000000, MILLION = 1000000 };

static double clock_s(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double now_s(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A field of /proc/self/status, in KiB. */
static long status_kib(const char *field)
{
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static long count_maps(void)
{
    long n = 0;
    int c;
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return -1;
    while ((c = getc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

/* One write to the top page of each of MILLION slots of a default stack and a guard page, in a
   mapping made as runtime/stack.c makes its slabs. */
static double page_touch_s(void)
{
    size_t slot = ivy_stack_default_size() + (size_t)sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, MILLION * slot, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) return -1;
    double t0 = now_s();
    for (size_t i = 0; i < MILLION; i++)
        ((volatile char *)m)[(i + 1) * slot - 64] = 1;
    double t = now_s() - t0;
    munmap(m, MILLION * slot);
    return t;
}

static void *return_at_once(void *arg)
{
    return arg;
}

static double create_run_free_ns(void)
{
    double t0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
    for (int i = 0; i < CYCLES; i++) {
        ivy_greenlet *g = ivy_greenlet_new(return_at_once, NULL, 0);
        if (!g || ivy_switch(g, NULL, NULL) != 0 || ivy_greenlet_free(g) != 0) {
            perror("create_run_free");
            exit(1);
        }
    }
    return (clock_s(CLOCK_THREAD_CPUTIME_ID) - t0) * 1e9 / CYCLES;
}

static ivy_greenlet *main_g;

/* Touches its stack once, then waits in a switch until freed. */
static void *touch_and_wait(void *arg)
{
    volatile char scratch[256];
    scratch[0] = 1;
    scratch[sizeof scratch - 1] = scratch[0];
    return ivy_err_ptr(ivy_switch(main_g, NULL, NULL));
}

int main(void)
{
    double r[RUNS];
    create_run_free_ns(); /* warm up: the pool's first stacks, caches */
    for (int i = 0; i < RUNS; i++)
        r[i] = create_run_free_ns();
    qsort(r, RUNS, sizeof *r, cmp_double);
    printf("create_run_free_ns: %.1f ns\n", r[RUNS / 2]);
    fflush(stdout);

    main_g = ivy_current();
    /* The handle array is mapped and touched before the baseline, so it is not counted. */
    ivy_greenlet **gs = mmap(NULL, MILLION * sizeof *gs, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (gs == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    long rss0 = status_kib("VmRSS"), hwm0 = status_kib("VmHWM"), pte0 = status_kib("VmPTE");
    double t0 = now_s();
    for (int i = 0; i < MILLION; i++) {
        gs[i] = ivy_greenlet_new(touch_and_wait, NULL, 0);
        if (!gs[i] || ivy_switch(gs[i], NULL, NULL) != 0) {
            fprintf(stderr, "greenlet %d: %s\n", i, gs[i] ? "switch failed" : "no memory");
            return 1;
        }
    }
    double create_s = now_s() - t0;
    long rss1 = status_kib("VmRSS"), hwm1 = status_kib("VmHWM"), pte1 = status_kib("VmPTE");
    long maps = count_maps();
    size_t guarded = 0;
    for (int i = 0; i < MILLION; i++)
        guarded += gs[i]->stack.guarded;

    t0 = now_s();
    for (int i = 0; i < MILLION; i++)
        ivy_greenlet_free(gs[i]);
    double free_s = now_s() - t0;

    printf("million_create_s: %.3f s\n", create_s);
    printf("million_rss_mib: %.0f MiB\n", (double)(rss1 - rss0) / 1024.0);
    printf("million_hwm_mib: %.0f MiB\n", (double)(hwm1 - hwm0) / 1024.0);
    printf("million_pte_mib: %.0f MiB\n", (double)(pte1 - pte0) / 1024.0);
    printf("million_guarded_stacks: %zu count\n", guarded);
    printf("million_maps: %ld count\n", maps);
    printf("million_free_s: %.3f s\n", free_s);
    munmap(gs, MILLION * sizeof *gs);
    printf("million_page_touch_s: %.3f s\n", page_touch_s());
    return 0;
}
