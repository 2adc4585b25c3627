/* Helpers shared by the benches: medians of repeated runs, ratios to a peer. */
#ifndef IVY_BENCH_H
#define IVY_BENCH_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of n samples (sorts v); the mean of the middle two when n is even. */
static inline double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Prints "name: a/b x", or "name: n/a" when the peer's figure b is missing (NaN: it did not
   run) or zero, so that a missing peer never reads as a ratio of 0 or infinity. */
static inline void print_ratio(const char *name, double a, double b)
{
    if (isfinite(a) && isfinite(b) && b > 0)
        printf("%s: %.3f x\n", name, a / b);
    else
        printf("%s: n/a\n", name);
}

#endif
