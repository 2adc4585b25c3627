/*
 * A million concurrent green threads (DESIGN.md §1-§2). A spawner thread starts THREADS threads
 * in batches of BATCH, letting each batch run between them as a server's threads run while
 * connections keep arriving; each thread goes to sleep for SLEEP_S at once (and, should creation
 * outlast SLEEP_S, back to sleep until all are asleep). Once all are asleep together they wake,
 * in the order they fell asleep, and finish. One round per process (run it several times for a
 * median): the resident-memory figure needs a fresh process.
 *
 *   create_s: from the first spawn until the last thread is asleep, all THREADS asleep at once
 *   create_per_thread_ns: the same, per thread
 *   page_first_touch_ns: a reference, measured in the same run: writing one byte into a fresh
 *     page of each of PROBE_PAGES slots of a stack's size, mapped as ivy maps stacks (MAP_STACK:
 *     no transparent huge pages), as every new thread's stack top page must be touched once.
 *     Not a lower bound on create_per_thread_ns: ivy pre-faults a slab's top pages in one
 *     MADV_POPULATE_WRITE call, cheaper than a page fault each
 *   rss_mib: resident memory added by then (VmRSS in /proc/self/status), stacks included
 *   rss_per_thread_kib: the same, per thread
 *   pte_mib: page tables added (VmPTE, not part of VmRSS)
 *   wake_lag_s: from the last thread's deadline until the last thread has finished
 *   finished: threads that woke from their sleep with 0 and returned
 *   early_wakeups: printed only if creation outlasted SLEEP_S, counting the sleeps repeated
 *   stack_guard_warning: printed only if stacks ran out of guard pages (vm.max_map_count on
 *     kernels before 6.13); runtime/stack.c's own warning then follows on stderr
 *
 * Arguments, for profiling: [THREADS [BATCH [SLEEP_S]]]; BATCH 0 spawns all from the main
 * greenlet before ivy_run.
 */
#include <ivy/ivy.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum { PROBE_PAGES = 50000 };
static long THREADS = 1000000;
static long BATCH = 1024;
static double SLEEP_S = 10.0;

static long status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') v = strtol(line + n + 1, NULL, 10);
    if (f) fclose(f);
    return v;
}

static long sleeping, early_wakeups, finished;
static uint64_t t_start, t_all_asleep, t_last_deadline, t_last_done;
static long rss_asleep_kib, pte_asleep_kib;

static void *sleeper(void *arg)
{
    for (;;) {
        uint64_t deadline = ivy_now_ns() + (uint64_t)(SLEEP_S * 1e9);
        if (deadline > t_last_deadline) t_last_deadline = deadline;
        if (++sleeping == THREADS && !t_all_asleep) {
            /* The last one to go to sleep: every other thread sleeps now. */
            t_all_asleep = ivy_now_ns();
            rss_asleep_kib = status_kib("VmRSS");
            pte_asleep_kib = status_kib("VmPTE");
        }
        int rc = ivy_sleep(SLEEP_S);
        sleeping--;
        if (rc != 0) return ivy_err_ptr(rc);
        if (t_all_asleep) break;
        early_wakeups++; /* creation outlasted SLEEP_S: back to sleep until all are asleep */
    }
    finished++;
    t_last_done = ivy_now_ns();
    return NULL;
}

static void spawn_or_die(long i)
{
    if (ivy_spawn_n(sleeper, NULL) != 0) {
        fprintf(stderr, "ivy_spawn_n failed after %ld threads: ", i);
        perror(NULL);
        exit(1);
    }
}

static void *spawner(void *arg)
{
    for (long i = 0; i < THREADS; i++) {
        spawn_or_die(i);
        if (i % BATCH == BATCH - 1) ivy_sleep(0); /* the batch runs and falls asleep */
    }
    return NULL;
}

/* Nanoseconds to write into a fresh page of each of n slots of `stride` bytes, per page. */
static double page_first_touch_ns(size_t n, size_t stride)
{
    char *m = mmap(NULL, n * stride, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) return -1;
    uint64_t t0 = ivy_now_ns();
    for (size_t i = 0; i < n; i++)
        ((volatile char *)m)[(i + 1) * stride - 64] = 1;
    double ns = (double)(ivy_now_ns() - t0) / (double)n;
    munmap(m, n * stride);
    return ns;
}

/* stderr goes to a file while threads are made, to learn whether stack.c ran out of guards. */
static FILE *capture_stderr(int *saved)
{
    FILE *f = tmpfile();
    fflush(stderr);
    *saved = dup(STDERR_FILENO);
    if (f && *saved >= 0) dup2(fileno(f), STDERR_FILENO);
    return f;
}

static bool release_stderr(FILE *f, int saved, const char *needle)
{
    bool found = false;
    char line[1024];
    fflush(stderr);
    if (saved >= 0) dup2(saved, STDERR_FILENO);
    if (!f) return false;
    rewind(f);
    while (fgets(line, sizeof line, f)) {
        fputs(line, stderr); /* replayed */
        if (strstr(line, needle)) found = true;
    }
    fclose(f);
    return found;
}

int main(int argc, char **argv)
{
    if (argc > 1) THREADS = atol(argv[1]);
    if (argc > 2) BATCH = atol(argv[2]);
    if (argc > 3) SLEEP_S = atof(argv[3]);
    if (THREADS <= 0 || BATCH < 0 || !(SLEEP_S > 0)) return 2;
    if (ivy_hub_init(&(struct ivy_hub_options){.quiet = true}) < 0) return 1;
    long rss0 = status_kib("VmRSS"), pte0 = status_kib("VmPTE");
    int saved;
    FILE *cap = capture_stderr(&saved);

    t_start = ivy_now_ns();
    if (BATCH) {
        ivy_spawn_n(spawner, NULL);
    } else {
        for (long i = 0; i < THREADS; i++)
            spawn_or_die(i);
    }
    int rc = ivy_run();
    bool unguarded = release_stderr(cap, saved, "max_map_count");
    if (rc != 0) {
        fprintf(stderr, "ivy_run: %d\n", rc);
        return 1;
    }
    double create_ns = (double)(t_all_asleep - t_start);
    double probe = page_first_touch_ns(PROBE_PAGES, ivy_stack_default_size() + 4096);

    printf("threads: %ld threads\n", THREADS);
    printf("create_s: %.3f s\n", create_ns / 1e9);
    printf("create_per_thread_ns: %.0f ns\n", create_ns / (double)THREADS);
    printf("page_first_touch_ns: %.0f ns\n", probe);
    printf("rss_mib: %.1f MiB\n", (double)(rss_asleep_kib - rss0) / 1024);
    printf("rss_per_thread_kib: %.2f KiB\n", (double)(rss_asleep_kib - rss0) / (double)THREADS);
    printf("pte_mib: %.1f MiB\n", (double)(pte_asleep_kib - pte0) / 1024);
    printf("wake_lag_s: %.3f s\n", (double)(t_last_done - t_last_deadline) / 1e9);
    printf("finished: %ld of %ld threads\n", finished, THREADS);
    if (unguarded)
        printf("stack_guard_warning: 1 (vm.max_map_count: later stacks have no guard page)\n");
    if (early_wakeups) printf("early_wakeups: %ld wakeups\n", early_wakeups);
    return finished == THREADS ? 0 : 1;
}
