/*
 * Connection tokens: JWT signed with HMAC-SHA256 (alg HS256) under the
 * configured secret. Claims used: sub (user id, string of at most 255
 * bytes; absent = ""), exp (unix seconds, optional). The signature is compared in constant time, and
 * nothing of a token is ever logged.
 */
#ifndef HERALD_AUTH_H
#define HERALD_AUTH_H

#include <stddef.h>
#include <stdint.h>

/* Returns 0 and fills *user (malloc'd) and *exp (0 when absent), or an
 * error code: PROTO_E_UNAUTHORIZED (malformed, bad signature, wrong alg),
 * PROTO_E_TOKEN_EXPIRED. */
int auth_verify(const char *secret, const char *token, size_t len,
                int64_t now_s, char **user, int64_t *exp);

#endif
