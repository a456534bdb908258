/*
 * Connection-token (JWT, RFC 7519 / JWS compact form) verification over a
 * set of keys loaded once at start: an HMAC secret (HS256/384/512), a PEM
 * public key (RSA: RS256/384/512; EC P-256/P-384: ES256/ES384; Ed25519:
 * EdDSA) and the keys of a JWKS file. A key's type decides the algorithms
 * it accepts, so a public key is never used as an HMAC secret. Pure logic
 * on OpenSSL 3 EVP and jansson, no I/O except reading the key files, so
 * the unit tests reach it without a server. Nothing of a token is ever
 * logged or put in an error text.
 */
#ifndef HERALD_AUTH_JWT_H
#define HERALD_AUTH_JWT_H

#include <stddef.h>
#include <stdint.h>

/* Tokens longer than this are refused before anything is decoded. */
#define JWT_MAX_TOKEN 8192
/* Bounds of the `channels` claim (grants kept for later use). */
#define JWT_MAX_CHANNELS 64
#define JWT_MAX_CHANNEL_LEN 255
/* Bound of the `info` claim, as compact JSON text. */
#define JWT_MAX_INFO 4096
/* Bound of sub (which must not contain control characters). */
#define JWT_MAX_SUB 255

typedef struct jwt_keys jwt_keys; /* opaque; read-only once loaded */

/* A set starts with one reference; jwt_keys_ref adds one (any thread),
 * jwt_keys_free drops one and frees the set with the last. */
jwt_keys *jwt_keys_new(void);
jwt_keys *jwt_keys_ref(jwt_keys *ks);
void jwt_keys_free(jwt_keys *ks);
size_t jwt_keys_count(const jwt_keys *ks);

/* Each returns 0, or -1 with a message in err (naming the file or the
 * JWKS member, never key material). */
int jwt_keys_add_secret(jwt_keys *ks, const void *secret, size_t len,
                        char *err, size_t errlen);
int jwt_keys_add_pem(jwt_keys *ks, const char *path, char *err,
                     size_t errlen);
int jwt_keys_add_jwks(jwt_keys *ks, const char *path, size_t *skipped,
                      char *err, size_t errlen);
/* The JWKS document as text (tests and files share this). Keys that are
 * well formed but not for verifying tokens here (use other than "sig", an
 * alg, kty or curve Herald does not verify, RSA under 2048 bits) are left
 * out and counted in *skipped (may be NULL); a malformed key refuses the
 * document, and so does one without any usable key. */
int jwt_keys_add_jwks_text(jwt_keys *ks, const char *text, size_t len,
                           size_t *skipped, char *err, size_t errlen);

/* What a token must satisfy besides its signature. */
typedef struct jwt_check {
    int64_t now;            /* unix seconds */
    int64_t leeway;         /* seconds of clock skew allowed on exp/nbf */
    const char *audience;   /* NULL or "": aud not checked */
    const char *issuer;     /* NULL or "": iss not checked */
    int *unknown_kid;       /* NULL, or set to 1 when the token names a
                               kid no key of the set has (a JWKS that may
                               have rotated: auth/keyring.h) */
} jwt_check;

/* The claims of a verified token. All malloc'd; free with jwt_claims_free. */
typedef struct jwt_claims {
    char *sub;              /* NULL: absent or empty (anonymous) */
    int64_t exp;            /* 0: absent */
    uint32_t n_channels;
    char **channels;        /* the `channels` grants, each NUL-terminated */
    char *info;             /* `info` as compact JSON text, or NULL */
    char *channel;          /* `channel` (channel tokens), or NULL */
} jwt_claims;

void jwt_claims_free(jwt_claims *c);

/* 0 and *out filled, or PROTO_E_UNAUTHORIZED (anything malformed, forged,
 * for another key or audience, not yet valid) or PROTO_E_TOKEN_EXPIRED
 * (exp past, beyond the leeway). On an error *out is empty. */
int jwt_verify(const jwt_keys *ks, const jwt_check *chk, const char *token,
               size_t len, jwt_claims *out);

/* The algorithm names this build verifies, space-separated (EdDSA only
 * when OpenSSL has Ed25519). */
const char *jwt_algorithms(void);

#endif
