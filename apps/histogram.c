/*
 * Log-linear histogram (see histogram.h for units, range and the memory contract).
 *
 * A value v >= 256 with top set bit e falls in slice (v >> (e - 7)) of 128..255 of its power
 * of two, so index(v) = ((e - 7) << 7) + (v >> (e - 7)) is continuous across powers of two and
 * equals v below 256: bucket width is 2^(e-7), at most 1/128 of its lower bound. Only the
 * indexes from index(MIN_NS) to index(MAX_NS) are stored, since values are clamped first.
 * Mean and stddev come from exact running sums, not from buckets.
 */
#include "histogram.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { SUB_BITS = 7, SUB_COUNT = 1 << SUB_BITS };

#define HIST_MAGIC 0x69766868u /* "ivhh" */

static inline unsigned raw_index(uint64_t v)
{
    if (v < 2 * SUB_COUNT) return (unsigned)v;
    unsigned shift = 63 - (unsigned)__builtin_clzll(v) - SUB_BITS;
    return (shift << SUB_BITS) + (unsigned)(v >> shift);
}

/* raw_index at compile time for a v whose top set bit is e, so that the header's size can stay
 * a plain number and still be checked here. */
#define OCTAVE_INDEX(v, e) ((((e)-SUB_BITS) << SUB_BITS) + (unsigned)((v) >> ((e)-SUB_BITS)))
_Static_assert(IVY_HIST_MIN_NS >> 9 == 1 && IVY_HIST_MAX_NS >> 35 == 1, "top bits of the range");
#define FIRST_INDEX OCTAVE_INDEX(IVY_HIST_MIN_NS, 9)
_Static_assert(IVY_HIST_BUCKETS == OCTAVE_INDEX(IVY_HIST_MAX_NS, 35) - FIRST_INDEX + 1,
               "IVY_HIST_BUCKETS must be raw_index(MAX_NS) - raw_index(MIN_NS) + 1");

static inline uint64_t clamp_ns(uint64_t ns)
{
    return ns < IVY_HIST_MIN_NS ? IVY_HIST_MIN_NS : ns > IVY_HIST_MAX_NS ? IVY_HIST_MAX_NS : ns;
}

/* The lowest value and the width of raw bucket i (the inverse of raw_index). */
static void bucket_bounds(unsigned i, uint64_t *lo, uint64_t *width)
{
    if (i < 2 * SUB_COUNT) {
        *lo = i;
        *width = 1;
        return;
    }
    unsigned shift = (i >> SUB_BITS) - 1;
    *lo = (uint64_t)(i - (shift << SUB_BITS)) << shift;
    *width = 1ULL << shift;
}

static int valid(const ivy_hist *h)
{
    return h->magic == HIST_MAGIC && h->buckets == IVY_HIST_BUCKETS;
}

ivy_hist *ivy_hist_new(void)
{
    ivy_hist *h = malloc(sizeof(*h));
    if (!h) {
        errno = ENOMEM;
        return NULL;
    }
    ivy_hist_reset(h);
    return h;
}

void ivy_hist_free(ivy_hist *h)
{
    free(h);
}

void ivy_hist_reset(ivy_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->magic = HIST_MAGIC;
    h->buckets = IVY_HIST_BUCKETS;
    h->min = UINT64_MAX;
}

void ivy_hist_record_n(ivy_hist *h, uint64_t ns, uint64_t n)
{
    if (n == 0) return;
    uint64_t v = clamp_ns(ns);
    h->counts[raw_index(v) - FIRST_INDEX] += n;
    h->count += n;
    if (v < h->min) h->min = v;
    if (v > h->max) h->max = v;
    double d = (double)v;
    h->sum += d * (double)n;
    h->sum_sq += d * d * (double)n;
}

void ivy_hist_record(ivy_hist *h, uint64_t ns)
{
    ivy_hist_record_n(h, ns, 1);
}

int ivy_hist_merge(ivy_hist *dst, const ivy_hist *src)
{
    if (!valid(dst) || !valid(src)) return -EINVAL;
    if (src->count == 0) return 0;
    for (unsigned i = 0; i < IVY_HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->count += src->count;
    if (src->min < dst->min) dst->min = src->min;
    if (src->max > dst->max) dst->max = src->max;
    dst->sum += src->sum;
    dst->sum_sq += src->sum_sq;
    return 0;
}

uint64_t ivy_hist_percentile(const ivy_hist *h, double p)
{
    if (h->count == 0) return 0;
    if (!(p > 0.0)) /* also catches NaN */
        return h->min;
    if (p >= 100.0) return h->max;
    /* Rank of the wanted value, 1-based: the smallest r with r/count >= p/100. */
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->count);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < IVY_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen < rank) continue;
        uint64_t lo, width;
        bucket_bounds(i + FIRST_INDEX, &lo, &width);
        uint64_t v = lo + width / 2;
        /* The exact extremes beat a midpoint: no percentile reads below min or above max. */
        return v < h->min ? h->min : v > h->max ? h->max : v;
    }
    return h->max;
}

uint64_t ivy_hist_count(const ivy_hist *h)
{
    return h->count;
}

uint64_t ivy_hist_min(const ivy_hist *h)
{
    return h->count ? h->min : 0;
}

uint64_t ivy_hist_max(const ivy_hist *h)
{
    return h->max;
}

double ivy_hist_mean(const ivy_hist *h)
{
    return h->count ? h->sum / (double)h->count : 0.0;
}

double ivy_hist_stddev(const ivy_hist *h)
{
    if (h->count == 0) return 0.0;
    double mean = h->sum / (double)h->count;
    double var = h->sum_sq / (double)h->count - mean * mean;
    return var > 0.0 ? sqrt(var) : 0.0; /* rounding can leave a tiny negative variance */
}
