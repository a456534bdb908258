/*
 * The token keys in force. Built at start from token_secret,
 * token_public_key and token_jwks; when token_jwks is an http(s) URL, the
 * JWKS is fetched with libcurl by a thread of the keyring's own (never a
 * worker loop): once at start (bounded by token_jwks_timeout_ms; a failure
 * is logged and the server starts with the other keys), then every
 * token_jwks_refresh seconds, and sooner (at most every
 * KEYRING_MIN_REFETCH_S) when a token names a kid the set does not have, a
 * key rotated in. A fetch that fails or brings a bad document keeps the
 * set in force (retried with backoff); a good one replaces the whole JWKS
 * part, so a key removed from the document stops verifying.
 *
 * Workers take a reference to the current set for a verification
 * (keyring_get, then jwt_keys_free): a swap never waits for them and never
 * frees a set in use.
 */
#ifndef HERALD_AUTH_KEYRING_H
#define HERALD_AUTH_KEYRING_H

#include <stddef.h>
#include <stdint.h>

#include "auth/jwt.h"
#include "base/config.h"

/* The largest JWKS document taken from a URL. */
#define KEYRING_MAX_DOC (1024 * 1024)
/* Unknown kids trigger a fetch at most this often. */
#define KEYRING_MIN_REFETCH_S 5

typedef struct keyring keyring;

/* NULL with "herald: <key>: <problem>" in err when a configured key file
 * is bad (a URL that cannot be fetched is not: see above). */
keyring *keyring_start(const config *cfg, char *err, size_t errlen);
/* The same checks of the key files without starting anything or fetching
 * (--check-config): 0 or -1 with err. */
int keyring_check(const config *cfg, char *err, size_t errlen);
/* Stops the fetch thread and frees the keyring (sets still referenced
 * are freed by their last jwt_keys_free). */
void keyring_stop(keyring *kr);

/* A reference to the set in force (never NULL; possibly empty). */
jwt_keys *keyring_get(keyring *kr);
/* A token named a kid the set did not have: fetch the JWKS soon. */
void keyring_stale(keyring *kr);

typedef struct keyring_stats {
    uint64_t fetches;        /* good documents taken */
    uint64_t failures;       /* fetches or documents refused */
    uint32_t keys;           /* keys in force */
    int64_t fetched_ms;      /* wall clock of the last good fetch, 0 */
} keyring_stats;
void keyring_stats_get(keyring *kr, keyring_stats *out);

#endif
