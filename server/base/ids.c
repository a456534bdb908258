/*
 * xorshift128+ seeded from the kernel: fast, and unpredictable enough for
 * identifiers that are not secrets (tokens are what authenticate).
 */
#include "base/ids.h"

#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

void ids_rng_seed(ids_rng *r)
{
    if (getrandom(r->s, sizeof(r->s), 0) != (ssize_t)sizeof(r->s)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r->s[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32);
        r->s[1] = (uint64_t)(uintptr_t)r ^ 0x9e3779b97f4a7c15ull;
    }
    if (!r->s[0] && !r->s[1])
        r->s[1] = 1;
}

uint64_t ids_next(ids_rng *r)
{
    uint64_t x = r->s[0], y = r->s[1];
    r->s[0] = y;
    x ^= x << 23;
    r->s[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
    return r->s[1] + y;
}

void ids_hex(uint64_t v, char out[IDS_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = IDS_LEN - 1; i >= 0; i--) {
        out[i] = hex[v & 15];
        v >>= 4;
    }
    out[IDS_LEN] = '\0';
}
