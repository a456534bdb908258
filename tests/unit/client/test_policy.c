/*
 * Unit tests of the C client's decision logic (clients/c/src/hc_policy.c):
 * full-jitter backoff bounds and spread, the close-code reconnect policy,
 * and the stream position that de-duplicates publications and reports
 * gaps and epoch changes.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "hc_policy.h"

Test(backoff, within_exponential_cap)
{
    uint64_t st = 42;
    for (unsigned attempt = 0; attempt < 40; attempt++) {
        uint64_t cap = 250ull << (attempt < 20 ? attempt : 20);
        if (cap > 10000)
            cap = 10000;
        for (int i = 0; i < 1000; i++) {
            uint64_t d = hc__backoff_delay(250, 10000, attempt,
                                           hc__rand_next(&st));
            cr_assert_leq(d, cap, "attempt %u: %llu > %llu", attempt,
                          (unsigned long long)d, (unsigned long long)cap);
        }
    }
    cr_expect_eq(hc__backoff_delay(0, 1000, 5, 12345), 0);
    cr_expect_eq(hc__backoff_delay(100, 1000, 0, 100), 100);   /* inclusive */
    cr_expect_eq(hc__backoff_delay(100, 1000, 0, 101), 0);
    /* Huge attempts saturate at max instead of overflowing. */
    cr_expect_leq(hc__backoff_delay(1u << 30, 4000000000u, 1000, UINT64_MAX),
                  4000000000u);
}

Test(backoff, full_jitter_spreads_uniformly)
{
    /* Full jitter: delays cover [0, cap] evenly (no clustering at the cap,
     * which is what makes a thundering herd spread out). */
    uint64_t st = 7, sum = 0;
    unsigned buckets[10] = { 0 };
    const unsigned n = 100000;
    for (unsigned i = 0; i < n; i++) {
        uint64_t d = hc__backoff_delay(1000, 1000, 3, hc__rand_next(&st));
        sum += d;
        buckets[d * 10 / 1001]++;
    }
    cr_expect(sum / n > 450 && sum / n < 550, "mean %llu",
              (unsigned long long)(sum / n));
    for (int b = 0; b < 10; b++)
        cr_expect(buckets[b] > n / 10 * 9 / 10 && buckets[b] < n / 10 * 11 / 10,
                  "bucket %d: %u", b, buckets[b]);
}

Test(backoff, rng_never_sticks)
{
    uint64_t st = 0, a = hc__rand_next(&st), b = hc__rand_next(&st);
    cr_expect_neq(st, 0);
    cr_expect_neq(a, b);
}

Test(close_policy, codes)
{
    int yes[] = { 1001, 1006, 1009, 1011, 4000, 4001, 4002, 4003, 4103 };
    int no[] = { 1000, 4100, 4101, 4102 };
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        cr_expect(hc__close_allows_reconnect(yes[i], 1), "%d", yes[i]);
        cr_expect(!hc__close_allows_reconnect(yes[i], 0),
                  "%d with reconnect:false", yes[i]);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        cr_expect(!hc__close_allows_reconnect(no[i], 1), "%d", no[i]);
    cr_expect(hc__close_needs_backoff(4103));
    cr_expect(!hc__close_needs_backoff(4001));
}

#define PUB(s, e, o) hc__stream_pub((s), (e), strlen(e), (o))

Test(stream, dedup_in_order)
{
    hc__stream s;
    memset(&s, 0, sizeof(s));
    hc__stream_set(&s, "E", 1, 10);
    cr_expect_eq(PUB(&s, "E", 11), HC__DELIVER);
    cr_expect_eq(PUB(&s, "E", 12), HC__DELIVER);
    cr_expect_eq(PUB(&s, "E", 12), HC__DUPLICATE);
    cr_expect_eq(PUB(&s, "E", 5), HC__DUPLICATE);
    cr_expect_eq(PUB(&s, "E", 10), HC__DUPLICATE);
    cr_expect_eq(s.offset, 12);
    cr_expect_eq(PUB(&s, "E", 13), HC__DELIVER);
}

Test(stream, gap_and_epoch_change)
{
    hc__stream s;
    memset(&s, 0, sizeof(s));
    hc__stream_set(&s, "E", 1, 3);
    cr_expect_eq(PUB(&s, "E", 6), HC__GAP);
    cr_expect_eq(s.offset, 6);
    cr_expect_eq(PUB(&s, "E", 7), HC__DELIVER);
    /* A new epoch is a discontinuity even at a low offset... */
    cr_expect_eq(PUB(&s, "F", 1), HC__GAP);
    cr_expect(hc__stream_epoch_is(&s, "F", 1));
    /* ...after which old-epoch offsets are not duplicates of the new one. */
    cr_expect_eq(PUB(&s, "F", 1), HC__DUPLICATE);
    cr_expect_eq(PUB(&s, "F", 2), HC__DELIVER);
}

Test(stream, first_pub_without_position)
{
    hc__stream s;
    memset(&s, 0, sizeof(s));
    cr_expect_eq(PUB(&s, "E", 77), HC__DELIVER);
    cr_expect(s.has_pos);
    cr_expect_eq(PUB(&s, "E", 77), HC__DUPLICATE);
}

Test(stream, epoch_is_bounded)
{
    hc__stream s;
    char big[200];
    memset(&s, 0, sizeof(s));
    memset(big, 'x', sizeof(big));
    hc__stream_set(&s, big, sizeof(big), 1);
    cr_expect_eq(s.epoch_len, HC_EPOCH_MAX);
    cr_expect_eq(s.epoch[HC_EPOCH_MAX], '\0');
}
