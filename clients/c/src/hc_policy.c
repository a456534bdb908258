/*
 * Reconnect backoff, close-code policy and stream positions (hc_policy.h).
 */
#include <string.h>

#include "hc_policy.h"

uint64_t hc__backoff_delay(unsigned base_ms, unsigned max_ms,
                           unsigned attempt, uint64_t rnd)
{
    uint64_t cap = base_ms;
    if (base_ms == 0)
        return 0;
    for (unsigned i = 0; i < attempt && cap < max_ms; i++)
        cap <<= 1;
    if (cap > max_ms)
        cap = max_ms;
    return rnd % (cap + 1);
}

uint64_t hc__rand_next(uint64_t *state)
{
    uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

int hc__close_allows_reconnect(int code, int push_reconnect)
{
    if (!push_reconnect)
        return 0;
    switch (code) {
    case 1000: case 4100: case 4101: case 4102:
        return 0;
    }
    return 1;
}

int hc__close_needs_backoff(int code)
{
    return code == 4103;
}

int hc__stream_epoch_is(const hc__stream *s, const char *epoch, size_t len)
{
    return s->epoch_len == len && (len == 0 || !memcmp(s->epoch, epoch, len));
}

void hc__stream_set(hc__stream *s, const char *epoch, size_t epoch_len,
                    uint64_t offset)
{
    if (epoch_len > HC_EPOCH_MAX)
        epoch_len = HC_EPOCH_MAX;
    memcpy(s->epoch, epoch, epoch_len);
    s->epoch[epoch_len] = '\0';
    s->epoch_len = epoch_len;
    s->offset = offset;
    s->has_pos = 1;
}

hc__verdict hc__stream_pub(hc__stream *s, const char *epoch, size_t epoch_len,
                           uint64_t offset)
{
    hc__verdict v = HC__DELIVER;
    if (s->has_pos && hc__stream_epoch_is(s, epoch, epoch_len)) {
        if (offset <= s->offset)
            return HC__DUPLICATE;
        if (offset != s->offset + 1)
            v = HC__GAP;
    } else if (s->has_pos) {
        v = HC__GAP;      /* a new epoch: the old stream's tail is lost */
    }
    hc__stream_set(s, epoch, epoch_len, offset);
    return v;
}
