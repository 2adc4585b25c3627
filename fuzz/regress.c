/*
 * The fuzz targets as regression tests, without libFuzzer: feeds every file of the directories
 * (or files) named on the command line to LLVMFuzzerTestOneInput, as libFuzzer replays a corpus.
 * Registered with ctest for the seed corpus and every crash ever found (fuzz/crashes/<target>/,
 * kept), so `make test` replays them under gcc with ASan and UBSan. A missing crash directory is
 * fine (none found yet); an empty corpus is an error, so that the test cannot pass on nothing.
 */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>

static int feed_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    CHECK(buf);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, f)) > 0)
        if ((n += r) == cap) CHECK(buf = realloc(buf, cap *= 2));
    fclose(f);
    /* Exactly n bytes, as libFuzzer hands them: reads past the end are ASan's to see. */
    uint8_t *exact = (uint8_t *)fuzz_dup(buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 1;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Feeds every regular file of dir in name order; the count, or -1. */
static int feed_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : -1;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) CHECK(names = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof *names));
        CHECK(names[n++] = strdup(e->d_name));
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, by_name);
    int fed = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            if (feed_file(path) < 0) return -1;
            fed++;
        }
        free(names[i]);
    }
    free(names);
    return fed;
}

int main(int argc, char **argv)
{
    int total = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        int n =
            stat(argv[i], &st) == 0 && S_ISREG(st.st_mode) ? feed_file(argv[i]) : feed_dir(argv[i]);
        if (n < 0) {
            fprintf(stderr, "%s: cannot read\n", argv[i]);
            return 1;
        }
        printf("%s: %d inputs\n", argv[i], n);
        if (i == 1 && n == 0) {
            fprintf(stderr, "%s: empty corpus\n", argv[i]);
            return 1;
        }
        total += n;
    }
    printf("%d inputs, no crash\n", total);
    return 0;
}
