/* Unit tests of bench/src/hist.c: bucket arithmetic, error bound,
 * percentiles, merging. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "hist.h"

static hist h;

Test(hist, small_values_are_exact)
{
    for (uint64_t v = 0; v < (1u << HIST_BITS); v++) {
        cr_assert_eq(hist_index(v), v);
        cr_assert_eq(hist_bucket_low((uint32_t)v), v);
        cr_assert_eq(hist_bucket_high((uint32_t)v), v);
    }
}

Test(hist, buckets_tile_the_range_with_bounded_error)
{
    /* Consecutive buckets are adjacent, and every bucket's width is at most
     * 2^(1-HIST_BITS) of its low bound. */
    for (uint32_t i = 1; i < HIST_BUCKETS; i++) {
        uint64_t lo = hist_bucket_low(i), hi = hist_bucket_high(i);
        cr_assert_eq(lo, hist_bucket_high(i - 1) + 1, "gap before bucket %u", i);
        cr_assert_geq(hi, lo);
        cr_assert_leq((double)(hi - lo), (double)lo / (double)HIST_SUB,
                      "bucket %u too wide", i);
        cr_assert_eq(hist_index(lo), i);
        cr_assert_eq(hist_index(hi), i);
    }
    cr_assert_eq(hist_bucket_high(HIST_BUCKETS - 1), UINT64_MAX);
    cr_assert_eq(hist_index(UINT64_MAX), HIST_BUCKETS - 1);
}

Test(hist, percentiles_of_a_uniform_sequence)
{
    hist_reset(&h);
    for (uint64_t v = 1; v <= 100000; v++)
        hist_record(&h, v * 1000);      /* 1 us .. 100 ms in ns */
    cr_assert_eq(h.count, 100000);
    cr_assert_eq(h.min, 1000);
    cr_assert_eq(h.max, 100000000);
    double ps[] = { 50, 90, 99, 99.9 };
    for (size_t i = 0; i < 4; i++) {
        double exact = ps[i] / 100.0 * 100000 * 1000;
        double got = (double)hist_percentile(&h, ps[i]);
        cr_assert_geq(got, exact, "p%.1f below exact", ps[i]);
        cr_assert_leq(got, exact * (1 + 1.0 / HIST_SUB) + 1000,
                      "p%.1f = %.0f, exact %.0f", ps[i], got, exact);
    }
    cr_assert_eq(hist_percentile(&h, 100), h.max);
    cr_assert_float_eq(hist_mean(&h), 50000.5 * 1000, 1e-3);
}

Test(hist, empty_and_single)
{
    hist_reset(&h);
    cr_assert_eq(hist_percentile(&h, 50), 0);
    cr_assert_eq(hist_mean(&h), 0);
    hist_record(&h, 123456789);
    for (double p = 1; p <= 100; p += 9.9)
        cr_assert_eq(hist_percentile(&h, p), 123456789,
                     "single value capped at max for p%.1f", p);
}

Test(hist, merge_equals_recording_together)
{
    static hist a, b, all;
    hist_reset(&a);
    hist_reset(&b);
    hist_reset(&all);
    srand(7);
    for (int i = 0; i < 50000; i++) {
        uint64_t v = ((uint64_t)rand() << 20) ^ (uint64_t)rand();
        hist_record(i % 3 ? &a : &b, v);
        hist_record(&all, v);
    }
    hist_merge(&a, &b);
    cr_assert_eq(a.count, all.count);
    cr_assert_eq(a.min, all.min);
    cr_assert_eq(a.max, all.max);
    cr_assert_eq(memcmp(a.b, all.b, sizeof(a.b)), 0);
    cr_assert_eq(hist_percentile(&a, 99.9), hist_percentile(&all, 99.9));
}
