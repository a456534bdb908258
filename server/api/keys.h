/*
 * API keys (`api_keys`, `HERALD_API_KEY`): which named key a request's
 * "Authorization: apikey KEY" carries, and each key's rate limit. The
 * configuration keeps only the keys' SHA-256 digests, so a key never sits
 * in memory after loading and cannot end up in a log. Matching compares
 * the presented key's digest with every configured digest (CRYPTO_memcmp,
 * no early exit), so its time tells nothing about which key, or how much
 * of one, matched. Shared by every worker: the digests are read-only, the
 * rate buckets are behind one mutex per key.
 */
#ifndef HERALD_API_KEYS_H
#define HERALD_API_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h"

typedef struct api_keys api_keys;

api_keys *api_keys_new(const config *cfg);
void api_keys_free(api_keys *k);

/* How many keys are configured (none: the API refuses every call). */
size_t api_keys_count(const api_keys *k);

/* The index of the key in an Authorization value ("apikey KEY", the
 * scheme in any case), or -1 when it is absent, malformed or unknown. */
int api_keys_match(const api_keys *k, const char *authorization, size_t len);

/* The configured name of key i (for logs and metrics). */
const char *api_keys_name(const api_keys *k, int i);

/* One request on key i at now_ms (a monotonic clock): 0 when it may run,
 * else the milliseconds until one may (Retry-After). */
uint64_t api_keys_take(api_keys *k, int i, uint64_t now_ms);

#endif
