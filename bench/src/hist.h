/*
 * Latency histogram, log-linear like HdrHistogram: values below 2^HIST_BITS
 * are counted exactly; above, each power-of-two range is split into
 * 2^(HIST_BITS-1) equal buckets, so any reported value is within
 * 2^(1-HIST_BITS) (0.78 %) of a recorded one, over the whole uint64 range,
 * in a fixed 58 KiB table. Recording is a few instructions and never
 * allocates, so a load generator can record every delivery. Not
 * thread-safe: keep one per thread and merge.
 */
#ifndef HERALD_BENCH_HIST_H
#define HERALD_BENCH_HIST_H

#include <stdint.h>

#define HIST_BITS 8
#define HIST_SUB (1u << (HIST_BITS - 1))
#define HIST_BUCKETS ((1u << HIST_BITS) + (64u - HIST_BITS) * HIST_SUB)

typedef struct hist {
    uint64_t count;
    uint64_t min, max;
    double sum;
    uint64_t b[HIST_BUCKETS];
} hist;

void hist_reset(hist *h);
void hist_record(hist *h, uint64_t v);
void hist_merge(hist *dst, const hist *src);

/* The value at percentile p (0..100]: the smallest recorded bucket whose
 * cumulative count reaches p% of all, reported as that bucket's highest
 * value (capped by the maximum recorded). 0 when empty. */
uint64_t hist_percentile(const hist *h, double p);
double hist_mean(const hist *h);

/* Bucket arithmetic, exposed for tests. */
uint32_t hist_index(uint64_t v);
uint64_t hist_bucket_low(uint32_t i);
uint64_t hist_bucket_high(uint32_t i);

#endif
