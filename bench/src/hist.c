/*
 * Log-linear histogram arithmetic. Bucket i below 2^HIST_BITS holds the
 * value i; above, bucket (2^B + (e - B) * 2^(B-1) + k) holds the values of
 * [2^e + k * 2^(e-B+1), 2^e + (k+1) * 2^(e-B+1)).
 */
#include "hist.h"

#include <string.h>

void hist_reset(hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

uint32_t hist_index(uint64_t v)
{
    if (v < (1u << HIST_BITS))
        return (uint32_t)v;
    uint32_t e = 63u - (uint32_t)__builtin_clzll(v);
    uint32_t sh = e - (HIST_BITS - 1);
    uint32_t sub = (uint32_t)(v >> sh);            /* in [2^(B-1), 2^B) */
    return (1u << HIST_BITS) + (e - HIST_BITS) * HIST_SUB + (sub - HIST_SUB);
}

uint64_t hist_bucket_low(uint32_t i)
{
    if (i < (1u << HIST_BITS))
        return i;
    uint32_t j = i - (1u << HIST_BITS);
    uint32_t e = j / HIST_SUB + HIST_BITS;
    uint64_t sub = (uint64_t)(j % HIST_SUB) + HIST_SUB;
    return sub << (e - (HIST_BITS - 1));
}

uint64_t hist_bucket_high(uint32_t i)
{
    if (i < (1u << HIST_BITS))
        return i;
    uint32_t j = i - (1u << HIST_BITS);
    uint32_t e = j / HIST_SUB + HIST_BITS;
    return hist_bucket_low(i) + ((1ull << (e - (HIST_BITS - 1))) - 1);
}

void hist_record(hist *h, uint64_t v)
{
    h->b[hist_index(v)]++;
    h->count++;
    h->sum += (double)v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void hist_merge(hist *dst, const hist *src)
{
    for (uint32_t i = 0; i < HIST_BUCKETS; i++)
        dst->b[i] += src->b[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->count) {
        if (src->min < dst->min)
            dst->min = src->min;
        if (src->max > dst->max)
            dst->max = src->max;
    }
}

uint64_t hist_percentile(const hist *h, double p)
{
    if (!h->count)
        return 0;
    if (p >= 100.0)
        return h->max;
    uint64_t want = (uint64_t)((p / 100.0) * (double)h->count + 0.999999);
    if (want == 0)
        want = 1;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want) {
            uint64_t v = hist_bucket_high(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

double hist_mean(const hist *h)
{
    return h->count ? h->sum / (double)h->count : 0.0;
}
