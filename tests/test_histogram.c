/*
 * apps/histogram.c: counts, percentile accuracy on known distributions, exact extremes, merge
 * (including through a pipe, as workers send theirs to the parent), clamping, empty state.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "histogram.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define US 1000ULL /* values are in ns */

static const double PCTS[] = {1, 10, 25, 50, 75, 90, 99, 99.9, 99.99};

/* Checks each percentile of h against the exact one of the sorted values, within rel. */
static void assert_percentiles_near(const ivy_hist *h, const uint64_t *sorted, size_t n, double rel)
{
    for (size_t i = 0; i < sizeof(PCTS) / sizeof(PCTS[0]); i++) {
        size_t rank = (size_t)ceil(PCTS[i] / 100.0 * (double)n);
        double want = (double)sorted[rank - 1];
        double got = (double)ivy_hist_percentile(h, PCTS[i]);
        if (fabs(got - want) > rel * want)
            fail_msg("p%g: got %.0f, want %.0f (error %.3f%%)", PCTS[i], got, want,
                     100.0 * fabs(got - want) / want);
    }
}

static void counts_every_record_exactly(void **state)
{
    ivy_hist *h = ivy_hist_new();
    assert_non_null(h);
    for (uint64_t v = 1; v <= 1000; v++)
        ivy_hist_record(h, v * US);
    ivy_hist_record_n(h, 5 * US, 250);
    ivy_hist_record_n(h, 7 * US, 0);
    assert_int_equal(ivy_hist_count(h), 1250);
    assert_int_equal(ivy_hist_min(h), 1 * US);
    assert_int_equal(ivy_hist_max(h), 1000 * US);
    ivy_hist_free(h);
}

static void record_n_equals_n_records(void **state)
{
    ivy_hist a, b;
    ivy_hist_reset(&a);
    ivy_hist_reset(&b);
    for (int i = 0; i < 37; i++)
        ivy_hist_record(&a, 12345678);
    ivy_hist_record_n(&b, 12345678, 37);
    assert_memory_equal(&a, &b, sizeof(a));
}

static void uniform_1us_to_1s_percentiles_within_one_percent(void **state)
{
    enum { N = 1000000 };
    uint64_t *vals = malloc(N * sizeof(*vals));
    ivy_hist *h = ivy_hist_new();
    assert_non_null(vals);
    assert_non_null(h);
    for (uint64_t i = 0; i < N; i++) {
        vals[i] = (i + 1) * US;
        ivy_hist_record(h, vals[i]);
    }
    assert_percentiles_near(h, vals, N, 0.01);
    uint64_t p50 = ivy_hist_percentile(h, 50);
    assert_true(p50 > 495000 * US && p50 < 505000 * US);
    assert_true(fabs(ivy_hist_mean(h) - 500000.5 * US) < 1.0);
    /* Uniform on 1..N has stddev sqrt((N^2 - 1) / 12). */
    double sd = sqrt(((double)N * N - 1) / 12.0) * US;
    assert_true(fabs(ivy_hist_stddev(h) - sd) < 1e-6 * sd);
    free(vals);
    ivy_hist_free(h);
}

static void log_uniform_1us_to_60s_percentiles_within_one_percent(void **state)
{
    /* Equal density per decade: every bucket size of the range is exercised. */
    enum { N = 200000 };
    uint64_t *vals = malloc(N * sizeof(*vals));
    ivy_hist *h = ivy_hist_new();
    assert_non_null(vals);
    assert_non_null(h);
    double span = log((double)IVY_HIST_MAX_NS / (double)IVY_HIST_MIN_NS);
    for (size_t i = 0; i < N; i++) {
        vals[i] = (uint64_t)((double)IVY_HIST_MIN_NS * exp(span * (double)i / (N - 1)));
        ivy_hist_record(h, vals[i]);
    }
    assert_percentiles_near(h, vals, N, 0.01);
    free(vals);
    ivy_hist_free(h);
}

static void single_values_read_back_within_one_percent(void **state)
{
    static const uint64_t samples[] = {1000,      1001,       1999,        2047,
                                       33333,     65537,      987654,      123456789,
                                       999999999, 4294967297, 59999999999, IVY_HIST_MAX_NS};
    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        ivy_hist h;
        ivy_hist_reset(&h);
        ivy_hist_record(&h, samples[i]);
        ivy_hist_record(&h, IVY_HIST_MIN_NS);
        ivy_hist_record(&h, IVY_HIST_MAX_NS);
        double got = (double)ivy_hist_percentile(&h, 50);
        assert_true(fabs(got - (double)samples[i]) <= 0.01 * (double)samples[i]);
    }
}

static void min_max_and_p100_are_exact(void **state)
{
    ivy_hist h;
    ivy_hist_reset(&h);
    ivy_hist_record(&h, 123456789);
    ivy_hist_record(&h, 2345);
    ivy_hist_record(&h, 50 * US);
    assert_int_equal(ivy_hist_max(&h), 123456789);
    assert_int_equal(ivy_hist_min(&h), 2345);
    assert_int_equal(ivy_hist_percentile(&h, 100), 123456789);
    assert_int_equal(ivy_hist_percentile(&h, 0), 2345);
    /* A bucket's midpoint can lie beyond the largest value in it: never reported. */
    assert_true(ivy_hist_percentile(&h, 99.999) <= 123456789);
    assert_true(ivy_hist_percentile(&h, 1) >= 2345);
}

static void mean_and_stddev_are_exact(void **state)
{
    static const uint64_t v[] = {2, 4, 4, 4, 5, 5, 7, 9}; /* mean 5, stddev 2 */
    ivy_hist h;
    ivy_hist_reset(&h);
    for (size_t i = 0; i < 8; i++)
        ivy_hist_record(&h, v[i] * US);
    assert_true(fabs(ivy_hist_mean(&h) - 5.0 * US) < 1e-9);
    assert_true(fabs(ivy_hist_stddev(&h) - 2.0 * US) < 1e-6);
}

static void fill(ivy_hist *h, uint64_t seed, int n)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        ivy_hist_record(h, (seed >> 20) % (2 * IVY_HIST_MAX_NS));
    }
}

static void assert_same_distribution(const ivy_hist *a, const ivy_hist *b)
{
    assert_int_equal(ivy_hist_count(a), ivy_hist_count(b));
    assert_int_equal(ivy_hist_min(a), ivy_hist_min(b));
    assert_int_equal(ivy_hist_max(a), ivy_hist_max(b));
    assert_memory_equal(a->counts, b->counts, sizeof(a->counts));
    for (size_t i = 0; i < sizeof(PCTS) / sizeof(PCTS[0]); i++)
        assert_int_equal(ivy_hist_percentile(a, PCTS[i]), ivy_hist_percentile(b, PCTS[i]));
    assert_true(fabs(ivy_hist_mean(a) - ivy_hist_mean(b)) <= 1e-9 * ivy_hist_mean(b));
    assert_true(fabs(ivy_hist_stddev(a) - ivy_hist_stddev(b)) <= 1e-6 * ivy_hist_stddev(b));
}

static void merge_equals_recording_everything_into_one(void **state)
{
    ivy_hist *all = ivy_hist_new(), *w1 = ivy_hist_new(), *w2 = ivy_hist_new();
    ivy_hist *merged = ivy_hist_new();
    fill(all, 1, 5000);
    fill(all, 2, 7000);
    fill(w1, 1, 5000);
    fill(w2, 2, 7000);
    assert_int_equal(ivy_hist_merge(merged, w1), 0);
    assert_int_equal(ivy_hist_merge(merged, w2), 0);
    assert_same_distribution(merged, all);
    ivy_hist_free(all);
    ivy_hist_free(w1);
    ivy_hist_free(w2);
    ivy_hist_free(merged);
}

static void merge_of_empty_changes_nothing(void **state)
{
    ivy_hist a, before, empty;
    ivy_hist_reset(&a);
    ivy_hist_reset(&empty);
    fill(&a, 3, 100);
    before = a;
    assert_int_equal(ivy_hist_merge(&a, &empty), 0);
    assert_memory_equal(&a, &before, sizeof(a));
    assert_int_equal(ivy_hist_merge(&empty, &a), 0);
    assert_same_distribution(&empty, &a);
}

static void merge_rejects_bytes_that_are_not_a_histogram(void **state)
{
    ivy_hist good, junk;
    ivy_hist_reset(&good);
    memset(&junk, 0, sizeof(junk));
    assert_int_equal(ivy_hist_merge(&good, &junk), -EINVAL);
    assert_int_equal(ivy_hist_merge(&junk, &good), -EINVAL);
    assert_int_equal(ivy_hist_count(&good), 0);
}

static void histogram_survives_a_pipe_and_merges(void **state)
{
    /* What a worker does: write its histogram to the parent, who merges it. */
    ivy_hist *sent = ivy_hist_new(), *recvd = ivy_hist_new(), *total = ivy_hist_new();
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fill(sent, 4, 3000);
    const char *p = (const char *)sent;
    for (size_t off = 0; off < sizeof(*sent);) {
        ssize_t n = write(fds[1], p + off, sizeof(*sent) - off);
        assert_true(n > 0);
        off += (size_t)n;
    }
    for (size_t off = 0; off < sizeof(*recvd);) {
        ssize_t n = read(fds[0], (char *)recvd + off, sizeof(*recvd) - off);
        assert_true(n > 0);
        off += (size_t)n;
    }
    close(fds[0]);
    close(fds[1]);
    assert_int_equal(ivy_hist_merge(total, recvd), 0);
    assert_same_distribution(total, sent);
    ivy_hist_free(sent);
    ivy_hist_free(recvd);
    ivy_hist_free(total);
}

static void out_of_range_values_clamp_and_are_counted(void **state)
{
    ivy_hist h;
    ivy_hist_reset(&h);
    ivy_hist_record(&h, 0);
    ivy_hist_record(&h, 999);
    assert_int_equal(ivy_hist_count(&h), 2);
    assert_int_equal(ivy_hist_min(&h), IVY_HIST_MIN_NS);
    assert_int_equal(ivy_hist_max(&h), IVY_HIST_MIN_NS);
    assert_int_equal(ivy_hist_percentile(&h, 50), IVY_HIST_MIN_NS);

    ivy_hist_record(&h, IVY_HIST_MAX_NS + 1);
    ivy_hist_record_n(&h, UINT64_MAX, 3);
    assert_int_equal(ivy_hist_count(&h), 6);
    assert_int_equal(ivy_hist_max(&h), IVY_HIST_MAX_NS);
    assert_int_equal(ivy_hist_percentile(&h, 100), IVY_HIST_MAX_NS);
    /* Clamped values land in the end buckets, so percentiles read the bounds to within 1%. */
    assert_true(ivy_hist_percentile(&h, 90) >= IVY_HIST_MAX_NS / 100 * 99);
    assert_true(ivy_hist_percentile(&h, 33) <= IVY_HIST_MIN_NS / 100 * 101);
}

static void empty_histogram_reports_zeros(void **state)
{
    ivy_hist h;
    ivy_hist_reset(&h);
    assert_int_equal(ivy_hist_count(&h), 0);
    assert_int_equal(ivy_hist_min(&h), 0);
    assert_int_equal(ivy_hist_max(&h), 0);
    assert_int_equal(ivy_hist_percentile(&h, 50), 0);
    assert_int_equal(ivy_hist_percentile(&h, 100), 0);
    assert_true(ivy_hist_mean(&h) == 0.0);
    assert_true(ivy_hist_stddev(&h) == 0.0);
}

static void reset_empties_a_used_histogram(void **state)
{
    ivy_hist h, fresh;
    ivy_hist_reset(&h);
    ivy_hist_reset(&fresh);
    fill(&h, 5, 1000);
    ivy_hist_reset(&h);
    assert_memory_equal(&h, &fresh, sizeof(h));
    assert_int_equal(ivy_hist_percentile(&h, 99), 0);
}

static void percentile_argument_outside_0_100_is_clamped(void **state)
{
    ivy_hist h;
    ivy_hist_reset(&h);
    ivy_hist_record(&h, 5 * US);
    ivy_hist_record(&h, 9 * US);
    assert_int_equal(ivy_hist_percentile(&h, -3), 5 * US);
    assert_int_equal(ivy_hist_percentile(&h, NAN), 5 * US);
    assert_int_equal(ivy_hist_percentile(&h, 250), 9 * US);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(counts_every_record_exactly),
        cmocka_unit_test(record_n_equals_n_records),
        cmocka_unit_test(uniform_1us_to_1s_percentiles_within_one_percent),
        cmocka_unit_test(log_uniform_1us_to_60s_percentiles_within_one_percent),
        cmocka_unit_test(single_values_read_back_within_one_percent),
        cmocka_unit_test(min_max_and_p100_are_exact),
        cmocka_unit_test(mean_and_stddev_are_exact),
        cmocka_unit_test(merge_equals_recording_everything_into_one),
        cmocka_unit_test(merge_of_empty_changes_nothing),
        cmocka_unit_test(merge_rejects_bytes_that_are_not_a_histogram),
        cmocka_unit_test(histogram_survives_a_pipe_and_merges),
        cmocka_unit_test(out_of_range_values_clamp_and_are_counted),
        cmocka_unit_test(empty_histogram_reports_zeros),
        cmocka_unit_test(reset_empties_a_used_histogram),
        cmocka_unit_test(percentile_argument_outside_0_100_is_clamped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
