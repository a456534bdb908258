/*
 * Fuzzing harness of the connection token check (server/net/jwt.c,
 * jwt_verify, HS256 JWTs) under a fixed secret. A random token almost
 * never carries a valid signature, and then the header and claims parsers
 * are never reached; so the first byte of the input picks how the rest
 * becomes a token:
 *   0  the token as it is (the signature check and the splitting);
 *   1  "HEADER.CLAIMS" as they are (base64url text), signed here;
 *   2  header JSON, a NUL, claims JSON: encoded in base64url and signed
 *      here (the JSON parsers and the claim rules get the mutations).
 * (Other values: the same, modulo 3.) Beyond not crashing, leaking or
 * tripping a sanitizer: the result is 0, 101 or 109; an accepted token has
 * a user of at most 255 bytes without NUL and an expiry after "now"; a
 * refused one hands out no user; and a token the secret accepts is refused
 * under any other secret.
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <herald/proto.h>

#include "auth/jwt.h"

#include "fuzzkit.h"

#define FUZZ_NOW 1700000000
#define FUZZ_TOKEN_MAX JWT_MAX_TOKEN   /* jwt_verify refuses longer ones */

static const char secret[] = "fuzz-secret";

/* jwt_verify under one HMAC secret, the keys made once per secret. */
static int auth_verify(const char *key, const char *tok, size_t n,
                       int64_t now, char **user, int64_t *exp)
{
    static jwt_keys *ks[2];
    int i = strcmp(key, secret) != 0;
    if (!ks[i]) {
        char err[128];
        ks[i] = jwt_keys_new();
        FUZZ_CHECK(jwt_keys_add_secret(ks[i], key, strlen(key), err,
                                       sizeof(err)) == 0);
    }
    jwt_check chk = { .now = now };
    jwt_claims c;
    int rc = jwt_verify(ks[i], &chk, tok, n, &c);
    *user = NULL;
    *exp = 0;
    if (rc == 0) {
        *user = strdup(c.sub ? c.sub : "");
        *exp = c.exp;
        FUZZ_CHECK(c.n_channels <= JWT_MAX_CHANNELS);
        jwt_claims_free(&c);
    }
    return rc;
}

/* base64url without padding; returns the length written (no NUL). */
static size_t b64url(const uint8_t *in, size_t n, char *out)
{
    static const char a[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = a[v >> 6 & 63];
        if (i + 2 < n)
            out[o++] = a[v & 63];
    }
    return o;
}

/* Appends ".SIGNATURE" (HMAC-SHA256 of tok[0..n) under secret). */
static size_t sign(char *tok, size_t n)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int ml = 0;
    FUZZ_CHECK(HMAC(EVP_sha256(), secret, (int)strlen(secret),
                    (const unsigned char *)tok, n, mac, &ml) != NULL);
    tok[n++] = '.';
    return n + b64url(mac, ml, tok + n);
}

static void check(const char *tok, size_t n)
{
    char *user = (char *)"unset";
    int64_t exp = -1;
    int rc = auth_verify(secret, tok, n, FUZZ_NOW, &user, &exp);
    FUZZ_CHECK(rc == 0 || rc == PROTO_E_UNAUTHORIZED ||
               rc == PROTO_E_TOKEN_EXPIRED);
    if (rc != 0) {
        FUZZ_CHECK(user == NULL);
        return;
    }
    FUZZ_CHECK(user != NULL && strlen(user) <= 255);
    FUZZ_CHECK(exp == 0 || exp > FUZZ_NOW);
    free(user);
    /* Only the secret that signed it accepts it. */
    rc = auth_verify("fuzz-secreT", tok, n, FUZZ_NOW, &user, &exp);
    FUZZ_CHECK(rc == PROTO_E_UNAUTHORIZED && user == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Room for two parts grown by base64 (4/3) and a signature. */
    static char tok[3 * FUZZ_TOKEN_MAX];
    if (size == 0 || size > FUZZ_TOKEN_MAX)
        return 0;
    const uint8_t *in = data + 1;
    size_t n = size - 1;

    switch (data[0] % 3) {
    case 0:
        check((const char *)in, n);   /* exactly n bytes, not a C string */
        break;
    case 1:
        memcpy(tok, in, n);
        check(tok, sign(tok, n));
        break;
    case 2: {
        const uint8_t *nul = memchr(in, '\0', n);
        size_t hl = nul ? (size_t)(nul - in) : n;
        size_t at = b64url(in, hl, tok);
        tok[at++] = '.';
        if (nul)
            at += b64url(nul + 1, n - hl - 1, tok + at);
        check(tok, sign(tok, at));
        break;
    }
    }
    return 0;
}
