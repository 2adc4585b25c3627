/*
 * HDR-style latency histogram for `ivy load`.
 *
 * Values are in NANOSECONDS (the load generator reads CLOCK_MONOTONIC in ns; microsecond
 * integers would put 5% of quantisation error on a 20 µs loopback round trip). The tracked
 * range is IVY_HIST_MIN_NS (1 µs) to IVY_HIST_MAX_NS (60 s): a value outside it is clamped to
 * the nearer bound and still counted, so counts always add up and min/max/percentiles show the
 * clamp rather than hiding the sample.
 *
 * Buckets are log-linear: each power of two is cut into 128 equal slices, so a bucket is at
 * most 1/128 of its lower bound wide and a reported percentile (the bucket's midpoint, clamped
 * to the exact min and max) is within 0.4% of a recorded value.
 *
 * The struct is plain memory of fixed size with no pointers: it may live in a caller's
 * variable, in a MAP_SHARED mapping a worker fills and the parent reads, or be sent whole over a
 * pipe (write/read all sizeof(ivy_hist) bytes; only between processes of the same build, since
 * the layout is native-endian). Initialise it with ivy_hist_reset (or take one from
 * ivy_hist_new); ivy_hist_merge checks the magic so it refuses bytes that are not a histogram.
 * Nothing allocates after that. Not thread-safe: one writer per histogram, merge afterwards.
 * The fields are private; use the functions.
 */
#ifndef IVY_APPS_HISTOGRAM_H
#define IVY_APPS_HISTOGRAM_H

#include <stdint.h>

#define IVY_HIST_MIN_NS  1000ULL        /* 1 µs */
#define IVY_HIST_MAX_NS  60000000000ULL /* 60 s */
#define IVY_HIST_BUCKETS 3302           /* buckets from bucket(MIN_NS) to bucket(MAX_NS), see .c */

typedef struct ivy_hist {
    uint32_t magic;
    uint32_t buckets; /* IVY_HIST_BUCKETS, so a reader can tell a different build */
    uint64_t count;
    uint64_t min, max;  /* exact, after clamping; min is UINT64_MAX while empty */
    double sum, sum_sq; /* for the exact mean and stddev; doubles so sums cannot overflow */
    uint64_t counts[IVY_HIST_BUCKETS];
} ivy_hist;

/* One zeroed, initialised histogram from the heap; NULL with errno ENOMEM. */
ivy_hist *ivy_hist_new(void);
void ivy_hist_free(ivy_hist *h);

/* Initialises h (any memory of sizeof(ivy_hist) bytes) or empties it for reuse. */
void ivy_hist_reset(ivy_hist *h);

void ivy_hist_record(ivy_hist *h, uint64_t ns);
/* Records ns n times, as n calls to ivy_hist_record would. */
void ivy_hist_record_n(ivy_hist *h, uint64_t ns, uint64_t n);

/* Adds src into dst: afterwards dst is as if it had recorded every value of both.
 * Returns 0, or -EINVAL when src (or dst) is not an initialised histogram of this build. */
int ivy_hist_merge(ivy_hist *dst, const ivy_hist *src);

/* The value at percentile p (0..100, clamped) in ns: the smallest bucket holding at least
 * p% of the values, reported as its midpoint within [min, max]. 0 when empty. */
uint64_t ivy_hist_percentile(const ivy_hist *h, double p);

/* Summary statistics; each is 0 when the histogram is empty. */
uint64_t ivy_hist_count(const ivy_hist *h);
uint64_t ivy_hist_min(const ivy_hist *h);
uint64_t ivy_hist_max(const ivy_hist *h);
double ivy_hist_mean(const ivy_hist *h);
double ivy_hist_stddev(const ivy_hist *h); /* population standard deviation */

#endif
