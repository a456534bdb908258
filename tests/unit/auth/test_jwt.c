/*
 * Unit tests of server/auth.c: HS256 JWT verification. Tokens are built
 * here with OpenSSL's HMAC and a base64url encoder of our own, independently
 * of the code under test: valid tokens give the user (sub) and exp; expired
 * ones are 109; a bad signature, another algorithm, anything malformed
 * (also when correctly signed) and an empty secret are 101; tokens longer
 * than the protocol's 8 KiB limit are refused.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <herald/proto.h>

#include "auth/jwt.h"

/* The HS256 cases below were written against a function of this shape
 * (secret, token -> user, exp); it is kept as a thin wrapper over
 * jwt_verify with one HMAC key. An anonymous token (no sub) gives "". */
static int auth_verify(const char *secret, const char *tok, size_t len,
                       int64_t now, char **user, int64_t *exp)
{
    *user = NULL;
    *exp = 0;
    jwt_keys *ks = jwt_keys_new();
    char err[128];
    if (secret && secret[0])
        cr_assert_eq(jwt_keys_add_secret(ks, secret, strlen(secret), err,
                                         sizeof(err)), 0);
    jwt_check chk = { .now = now };
    jwt_claims c;
    int rc = jwt_verify(ks, &chk, tok, len, &c);
    jwt_keys_free(ks);
    if (rc == 0) {
        *user = strdup(c.sub ? c.sub : "");
        *exp = c.exp;
        jwt_claims_free(&c);
    }
    return rc;
}

#define NOW 1700000000

static void b64url(const unsigned char *in, size_t n, char *out)
{
    static const char a[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n) v |= in[i + 2];
        out[o++] = a[(v >> 18) & 63];
        out[o++] = a[(v >> 12) & 63];
        if (i + 1 < n) out[o++] = a[(v >> 6) & 63];
        if (i + 2 < n) out[o++] = a[v & 63];
    }
    out[o] = '\0';
}

/* Signs "hseg.pseg" (already encoded, taken as they are) under secret and
 * returns "hseg.pseg.sig" in a static buffer. */
static char *sign_raw(const char *secret, const char *hseg, const char *pseg)
{
    static char tok[16384];
    char sig[128];
    snprintf(tok, sizeof(tok), "%s.%s", hseg, pseg);
    unsigned char mac[32];
    unsigned int ml = 0;
    cr_assert_not_null(HMAC(EVP_sha256(), secret, (int)strlen(secret),
                            (unsigned char *)tok, strlen(tok), mac, &ml));
    cr_assert_eq(ml, 32);
    b64url(mac, ml, sig);
    cr_assert_lt(strlen(tok) + 1 + strlen(sig), sizeof(tok));
    strcat(tok, ".");
    strcat(tok, sig);
    return tok;
}

/* header and claims are JSON text. */
static char *jwt(const char *secret, const char *header, const char *claims)
{
    static char h[1024], c[12000];
    cr_assert_lt(strlen(header) * 4 / 3 + 4, sizeof(h));
    cr_assert_lt(strlen(claims) * 4 / 3 + 4, sizeof(c));
    b64url((const unsigned char *)header, strlen(header), h);
    b64url((const unsigned char *)claims, strlen(claims), c);
    return sign_raw(secret, h, c);
}

#define HS "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static int verify(const char *secret, const char *tok, char **user, int64_t *exp)
{
    return auth_verify(secret, tok, strlen(tok), NOW, user, exp);
}

Test(auth, valid_token_gives_user_and_expiry)
{
    char *user;
    int64_t exp;
    cr_assert_eq(verify("s3cret", jwt("s3cret", HS, "{\"sub\":\"alice\",\"exp\":1700000100}"),
                        &user, &exp), 0);
    cr_assert_str_eq(user, "alice");
    cr_assert_eq(exp, 1700000100);
    free(user);
    cr_assert_eq(verify("s3cret", jwt("s3cret", HS, "{\"sub\":\"bob\"}"), &user, &exp), 0);
    cr_assert_eq(exp, 0, "no exp claim");
    free(user);
    cr_assert_eq(verify("s3cret", jwt("s3cret", HS, "{}"), &user, &exp), 0);
    cr_assert_str_eq(user, "", "no sub: empty user");
    free(user);
}

Test(auth, expired_is_109)
{
    char *user;
    int64_t exp;
    cr_assert_eq(verify("k", jwt("k", HS, "{\"sub\":\"a\",\"exp\":1699999999}"), &user, &exp),
                 PROTO_E_TOKEN_EXPIRED);
    cr_assert_null(user);
    cr_assert_eq(verify("k", jwt("k", HS, "{\"sub\":\"a\",\"exp\":1700000000}"), &user, &exp),
                 PROTO_E_TOKEN_EXPIRED, "exp equal to now is expired");
}

Test(auth, forged_or_malformed_is_101)
{
    char *user;
    int64_t exp;
    const char *good = "{\"sub\":\"a\"}";
    cr_assert_eq(verify("k", jwt("other", HS, good), &user, &exp), PROTO_E_UNAUTHORIZED);
    cr_assert_eq(verify("", jwt("", HS, good), &user, &exp), PROTO_E_UNAUTHORIZED,
                 "no secret configured: no token is valid");
    cr_assert_eq(verify("k", jwt("k", "{\"alg\":\"none\"}", good), &user, &exp),
                 PROTO_E_UNAUTHORIZED);
    cr_assert_eq(verify("k", jwt("k", "{\"alg\":\"RS256\"}", good), &user, &exp),
                 PROTO_E_UNAUTHORIZED);
    cr_assert_eq(verify("k", jwt("k", HS, "{\"sub\":5}"), &user, &exp), PROTO_E_UNAUTHORIZED);
    cr_assert_eq(verify("k", jwt("k", HS, "{\"sub\":\"a\",\"exp\":\"soon\"}"), &user, &exp),
                 PROTO_E_UNAUTHORIZED);
    cr_assert_eq(verify("k", jwt("k", HS, "not json"), &user, &exp), PROTO_E_UNAUTHORIZED);
    cr_assert_eq(verify("k", jwt("k", HS, "[1]"), &user, &exp), PROTO_E_UNAUTHORIZED);
    const char *bad[] = { "", "abc", "a.b", "a.b.c", "..", "!!.??.**",
                          "eyJhbGciOiJIUzI1NiJ9.e30.", NULL };
    for (int i = 0; bad[i]; i++)
        cr_assert_eq(verify("k", bad[i], &user, &exp), PROTO_E_UNAUTHORIZED, "'%s'", bad[i]);

    /* A valid token with one signature character changed. */
    char *t = jwt("k", HS, good);
    size_t n = strlen(t);
    t[n - 2] = t[n - 2] == 'A' ? 'B' : 'A';
    cr_assert_eq(verify("k", t, &user, &exp), PROTO_E_UNAUTHORIZED);

    static char huge[9000];
    memset(huge, 'a', sizeof(huge) - 1);
    cr_assert_eq(auth_verify("k", huge, strlen(huge), NOW, &user, &exp),
                 PROTO_E_UNAUTHORIZED);
}

/* Asserts that tok (NUL-terminated) is refused with code and that no user
 * is handed out. */
static void expect_code(const char *secret, const char *tok, int code,
                        const char *why)
{
    char *user = (char *)"untouched";
    int64_t exp = -1;
    int rc = auth_verify(secret, tok, strlen(tok), NOW, &user, &exp);
    cr_assert_eq(rc, code, "%s: got %d, want %d", why, rc, code);
    cr_assert_null(user, "%s: no user on failure", why);
}

/* base64url of a JSON text, for building segments by hand. */
static const char *seg(const char *json)
{
    static char out[4][1024];
    static int k;
    char *o = out[k++ % 4];
    b64url((const unsigned char *)json, strlen(json), o);
    return o;
}

Test(auth, expiry_boundaries)
{
    char *user;
    int64_t exp;
    cr_assert_eq(verify("k", jwt("k", HS, "{\"sub\":\"a\",\"exp\":1700000001}"),
                        &user, &exp), 0, "one second left");
    cr_assert_eq(exp, NOW + 1);
    free(user);
    expect_code("k", jwt("k", HS, "{\"sub\":\"a\",\"exp\":0}"),
                PROTO_E_TOKEN_EXPIRED, "exp 0");
    expect_code("k", jwt("k", HS, "{\"sub\":\"a\",\"exp\":-5}"),
                PROTO_E_TOKEN_EXPIRED, "negative exp");
    /* An exp that is not an integer is malformed, not expired. */
    expect_code("k", jwt("k", HS, "{\"sub\":\"a\",\"exp\":1700000100.5}"),
                PROTO_E_UNAUTHORIZED, "real exp");
    expect_code("k", jwt("k", HS, "{\"sub\":\"a\",\"exp\":null}"),
                PROTO_E_UNAUTHORIZED, "null exp");
    expect_code("k", jwt("k", HS, "{\"sub\":\"a\",\"exp\":true}"),
                PROTO_E_UNAUTHORIZED, "boolean exp");
    expect_code("k", jwt("k", HS, "{\"sub\":\"a\",\"exp\":\"1700000100\"}"),
                PROTO_E_UNAUTHORIZED, "string exp");
}

Test(auth, claims_and_header_checked_after_a_good_signature)
{
    const char *good = "{\"sub\":\"a\"}";
    expect_code("k", jwt("k", "{\"typ\":\"JWT\"}", good), PROTO_E_UNAUTHORIZED,
                "no alg");
    expect_code("k", jwt("k", "{\"alg\":256}", good), PROTO_E_UNAUTHORIZED,
                "alg not a string");
    expect_code("k", jwt("k", "{\"alg\":\"hs256\"}", good),
                PROTO_E_UNAUTHORIZED, "alg is case-sensitive");
    expect_code("k", jwt("k", "{\"alg\":\"HS512\"}", good),
                PROTO_E_UNAUTHORIZED, "HS512");
    expect_code("k", jwt("k", "{\"alg\":\"none\",\"typ\":\"JWT\"}", good),
                PROTO_E_UNAUTHORIZED, "alg none");
    expect_code("k", jwt("k", "[\"HS256\"]", good), PROTO_E_UNAUTHORIZED,
                "header an array");
    expect_code("k", jwt("k", "HS256", good), PROTO_E_UNAUTHORIZED,
                "header not JSON");
    expect_code("k", jwt("k", HS, "\"alice\""), PROTO_E_UNAUTHORIZED,
                "claims a string");
    expect_code("k", jwt("k", HS, "{\"sub\":\"a\""), PROTO_E_UNAUTHORIZED,
                "truncated JSON");
    expect_code("k", jwt("k", HS, "{\"sub\":null}"), PROTO_E_UNAUTHORIZED,
                "sub null");
    expect_code("k", jwt("k", HS, "{\"sub\":[\"a\"]}"), PROTO_E_UNAUTHORIZED,
                "sub an array");
    expect_code("k", jwt("k", HS, "{\"sub\":{\"id\":\"a\"}}"),
                PROTO_E_UNAUTHORIZED, "sub an object");
    /* Two subs: which one a reader takes differs between libraries, so a
     * token with duplicate claims is refused. */
    expect_code("k", jwt("k", HS, "{\"sub\":\"a\",\"sub\":\"admin\"}"),
                PROTO_E_UNAUTHORIZED, "duplicate sub");
    /* Empty segments, correctly signed. */
    expect_code("k", sign_raw("k", "", seg(good)), PROTO_E_UNAUTHORIZED,
                "empty header");
    expect_code("k", sign_raw("k", seg(HS), ""), PROTO_E_UNAUTHORIZED,
                "empty claims");
}

Test(auth, bad_base64_with_a_good_signature)
{
    char bad[1024];
    const char *h = seg(HS), *c = seg("{\"sub\":\"a\"}");

    snprintf(bad, sizeof(bad), "%s!", c);
    expect_code("k", sign_raw("k", h, bad), PROTO_E_UNAUTHORIZED,
                "'!' in claims");
    snprintf(bad, sizeof(bad), "%s*", h);
    expect_code("k", sign_raw("k", bad, c), PROTO_E_UNAUTHORIZED,
                "'*' in header");
    /* base64 proper ('+' '/') is not base64url. */
    expect_code("k", sign_raw("k", h, "eyJzdWIiOiJhIn0+"), PROTO_E_UNAUTHORIZED,
                "'+' in claims");
    expect_code("k", sign_raw("k", h, "eyJzdWIiOiJhIn0/"), PROTO_E_UNAUTHORIZED,
                "'/' in claims");
    /* Padding is not part of a JWT segment. */
    snprintf(bad, sizeof(bad), "%s=", c);
    expect_code("k", sign_raw("k", h, bad), PROTO_E_UNAUTHORIZED,
                "padded claims");
    /* A length of 4n+1 characters encodes no whole byte. */
    expect_code("k", sign_raw("k", h, "eyJzd"), PROTO_E_UNAUTHORIZED,
                "5-character segment");
    /* A NUL inside the token. */
    char tok[1024];
    snprintf(tok, sizeof(tok), "%s", jwt("k", HS, "{\"sub\":\"a\"}"));
    size_t len = strlen(tok);
    tok[3] = '\0';
    char *user;
    int64_t exp;
    cr_assert_eq(auth_verify("k", tok, len, NOW, &user, &exp),
                 PROTO_E_UNAUTHORIZED, "NUL in the header");
    cr_assert_null(user);
}

Test(auth, signature_must_match_exactly)
{
    char t[1024];
    snprintf(t, sizeof(t), "%s", jwt("k", HS, "{\"sub\":\"a\"}"));
    size_t n = strlen(t);
    char *user;
    int64_t exp;
    cr_assert_eq(verify("k", t, &user, &exp), 0, "the unmodified token");
    free(user);

    char m[2048];
    /* The signature of a different token. */
    const char *other = jwt("k", HS, "{\"sub\":\"b\"}");
    const char *other_sig = strrchr(other, '.');
    memcpy(m, t, (size_t)(strrchr(t, '.') - t));
    strcpy(m + (strrchr(t, '.') - t), other_sig);
    expect_code("k", m, PROTO_E_UNAUTHORIZED, "signature of another token");
    /* Signature one character short, one longer, padded. */
    snprintf(m, sizeof(m), "%.*s", (int)(n - 1), t);
    expect_code("k", m, PROTO_E_UNAUTHORIZED, "truncated signature");
    snprintf(m, sizeof(m), "%sA", t);
    expect_code("k", m, PROTO_E_UNAUTHORIZED, "extended signature");
    snprintf(m, sizeof(m), "%s=", t);
    expect_code("k", m, PROTO_E_UNAUTHORIZED, "padded signature");
    /* A fourth segment. */
    snprintf(m, sizeof(m), "%s.e30", t);
    expect_code("k", m, PROTO_E_UNAUTHORIZED, "four segments");
    /* Claims changed after signing. */
    const char *dot1 = strchr(t, '.');
    snprintf(m, sizeof(m), "%.*s.%s%s", (int)(dot1 - t), t,
             seg("{\"sub\":\"root\"}"), strrchr(t, '.'));
    expect_code("k", m, PROTO_E_UNAUTHORIZED, "claims replaced");
    /* Secrets are compared whole. */
    expect_code("k2", t, PROTO_E_UNAUTHORIZED, "longer secret");
    expect_code("K", t, PROTO_E_UNAUTHORIZED, "other case");
    user = (char *)"untouched";
    cr_assert_eq(auth_verify(NULL, t, n, NOW, &user, &exp),
                 PROTO_E_UNAUTHORIZED, "no secret at all");
    cr_assert_null(user);
}

Test(auth, token_is_read_by_length)
{
    /* The codec hands the token as a slice of a larger buffer. */
    char buf[2048];
    const char *t = jwt("k", HS, "{\"sub\":\"carol\",\"exp\":1800000000}");
    size_t n = strlen(t);
    snprintf(buf, sizeof(buf), "%s.garbage-after-the-token", t);
    char *user;
    int64_t exp;
    cr_assert_eq(auth_verify("k", buf, n, NOW, &user, &exp), 0);
    cr_assert_str_eq(user, "carol");
    cr_assert_eq(exp, 1800000000);
    free(user);
    cr_assert_eq(auth_verify("k", buf, n - 1, NOW, &user, &exp),
                 PROTO_E_UNAUTHORIZED, "cut inside the signature");
    cr_assert_null(user);
    cr_assert_eq(auth_verify("k", buf, 0, NOW, &user, &exp),
                 PROTO_E_UNAUTHORIZED, "empty");
}

/* A correctly signed token of exactly `want` bytes, padded with a claim
 * of its own; NULL when no padding length gives exactly that size. */
static char *token_of_size(size_t want)
{
    static char claims[12000];
    for (size_t pad = 1; pad < 9000; pad++) {
        int k = snprintf(claims, sizeof(claims), "{\"sub\":\"big\",\"pad\":\"");
        memset(claims + k, 'p', pad);
        strcpy(claims + k + pad, "\"}");
        char *t = jwt("k", HS, claims);
        size_t n = strlen(t);
        if (n == want)
            return t;
        if (n > want)
            return NULL;
    }
    return NULL;
}

Test(auth, size_limit_is_the_protocol_token_limit)
{
    char *user;
    int64_t exp;
    cr_assert_eq(PROTO_TOKEN_MAX, 8192);
    /* The largest token the protocol lets through is verified. */
    char *t = token_of_size(PROTO_TOKEN_MAX);
    if (!t)
        t = token_of_size(PROTO_TOKEN_MAX - 1);
    if (!t)
        t = token_of_size(PROTO_TOKEN_MAX - 2);
    cr_assert_not_null(t);
    cr_assert_eq(verify("k", t, &user, &exp), 0,
                 "a %zu-byte token is within the limit", strlen(t));
    cr_assert_str_eq(user, "big");
    free(user);

    /* Anything longer is refused, however well signed. */
    size_t over = 0;
    for (size_t want = PROTO_TOKEN_MAX + 1; want < PROTO_TOKEN_MAX + 4 && !over;
         want++)
        if ((t = token_of_size(want)) != NULL)
            over = want;
    cr_assert_neq(over, 0);
    expect_code("k", t, PROTO_E_UNAUTHORIZED, "over the limit");

    static char huge[65536];
    memset(huge, 'a', sizeof(huge) - 1);
    huge[100] = '.';
    huge[200] = '.';
    expect_code("k", huge, PROTO_E_UNAUTHORIZED, "64 KiB of junk");
}

/* -- public-key algorithms, JWKS, claims ----------------------------------
 * Keys are generated here with OpenSSL, tokens signed here with
 * EVP_DigestSign (ECDSA's DER turned into JWS's raw r || s by this file),
 * so the verifier is checked against an independent signer. */

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

static EVP_PKEY *keygen(const char *type, const char *param)
{
    EVP_PKEY *k;
    if (strcmp(type, "RSA") == 0)
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)atoi(param));
    else if (strcmp(type, "EC") == 0)
        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", param);
    else
        k = EVP_PKEY_Q_keygen(NULL, NULL, type);
    cr_assert_not_null(k, "keygen %s", type);
    return k;
}

/* Signs header.claims (JSON texts) with alg under k; static buffer. */
static char *pk_jwt(EVP_PKEY *k, const char *alg, const char *header,
                    const char *claims)
{
    static char tok[16384];
    char h[2048], c[12000], s[2048];
    b64url((const unsigned char *)header, strlen(header), h);
    b64url((const unsigned char *)claims, strlen(claims), c);
    snprintf(tok, sizeof(tok), "%s.%s", h, c);
    const char *md = strstr(alg, "256") ? "SHA256"
                     : strstr(alg, "384") ? "SHA384"
                     : strstr(alg, "512") ? "SHA512" : NULL;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    cr_assert_eq(EVP_DigestSignInit_ex(ctx, &pctx, md, NULL, NULL, k, NULL), 1);
    if (alg[0] == 'R')
        cr_assert_eq(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING), 1);
    unsigned char sig[1024];
    size_t sl = sizeof(sig);
    cr_assert_eq(EVP_DigestSign(ctx, sig, &sl, (unsigned char *)tok,
                                strlen(tok)), 1);
    EVP_MD_CTX_free(ctx);
    if (alg[0] == 'E' && alg[1] == 'S') {
        size_t half = strstr(alg, "256") ? 32 : 48;
        const unsigned char *p = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)sl);
        cr_assert_not_null(es);
        unsigned char raw[96];
        BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, (int)half);
        BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + half, (int)half);
        ECDSA_SIG_free(es);
        memcpy(sig, raw, 2 * half);
        sl = 2 * half;
    }
    b64url(sig, sl, s);
    strcat(tok, ".");
    strcat(tok, s);
    return tok;
}

static char *hdr(const char *alg, const char *kid)
{
    static char b[256];
    if (kid)
        snprintf(b, sizeof(b), "{\"alg\":\"%s\",\"kid\":\"%s\"}", alg, kid);
    else
        snprintf(b, sizeof(b), "{\"alg\":\"%s\"}", alg);
    return b;
}

/* A key set holding k's public key, through a PEM file. */
static jwt_keys *pem_keys(EVP_PKEY *k)
{
    char path[] = "/tmp/herald-jwt-test-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    cr_assert_eq(PEM_write_PUBKEY(f, k), 1);
    fclose(f);
    jwt_keys *ks = jwt_keys_new();
    char err[256];
    int rc = jwt_keys_add_pem(ks, path, err, sizeof(err));
    unlink(path);
    cr_assert_eq(rc, 0, "%s", err);
    return ks;
}

static int pk_verify(jwt_keys *ks, const char *tok, jwt_claims *c)
{
    jwt_check chk = { .now = NOW };
    return jwt_verify(ks, &chk, tok, strlen(tok), c);
}

#define CLAIMS "{\"sub\":\"u1\",\"exp\":1700000600}"

Test(jwt, every_public_key_algorithm_verifies_and_refuses_another_key)
{
    static const struct { const char *type, *param, *alg; } cases[] = {
        { "RSA", "2048", "RS256" }, { "RSA", "2048", "RS384" },
        { "RSA", "3072", "RS512" }, { "EC", "P-256", "ES256" },
        { "EC", "P-384", "ES384" }, { "ED25519", NULL, "EdDSA" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        EVP_PKEY *k = keygen(cases[i].type, cases[i].param);
        EVP_PKEY *other = keygen(cases[i].type, cases[i].param);
        jwt_keys *ks = pem_keys(k);
        jwt_claims c;
        const char *alg = cases[i].alg;
        cr_assert_eq(pk_verify(ks, pk_jwt(k, alg, hdr(alg, NULL), CLAIMS), &c),
                     0, "%s", alg);
        cr_assert_str_eq(c.sub, "u1");
        cr_assert_eq(c.exp, 1700000600);
        jwt_claims_free(&c);
        cr_assert_eq(pk_verify(ks, pk_jwt(other, alg, hdr(alg, NULL), CLAIMS),
                               &c), PROTO_E_UNAUTHORIZED, "%s wrong key", alg);
        /* The same key's token under a name of another type is refused. */
        const char *wrong = alg[0] == 'R' ? "ES256" : "RS256";
        char *t = pk_jwt(k, alg, hdr(wrong, NULL), CLAIMS);
        cr_assert_eq(pk_verify(ks, t, &c), PROTO_E_UNAUTHORIZED, "%s as %s",
                     alg, wrong);
        /* A flipped signature bit. */
        t = pk_jwt(k, alg, hdr(alg, NULL), CLAIMS);
        size_t n = strlen(t);
        t[n - 3] = t[n - 3] == 'A' ? 'B' : 'A';
        cr_assert_eq(pk_verify(ks, t, &c), PROTO_E_UNAUTHORIZED, "%s flipped",
                     alg);
        jwt_keys_free(ks);
        EVP_PKEY_free(k);
        EVP_PKEY_free(other);
    }
}

Test(jwt, hs384_and_hs512)
{
    jwt_keys *ks = jwt_keys_new();
    char err[128];
    cr_assert_eq(jwt_keys_add_secret(ks, "s3cret", 6, err, sizeof(err)), 0);
    static const struct { const char *alg; const EVP_MD *(*md)(void); } hs[] = {
        { "HS384", EVP_sha384 }, { "HS512", EVP_sha512 },
    };
    for (int i = 0; i < 2; i++) {
        char h[1024], c[1024], tok[4096], sig[200];
        b64url((const unsigned char *)hdr(hs[i].alg, NULL),
               strlen(hdr(hs[i].alg, NULL)), h);
        b64url((const unsigned char *)CLAIMS, strlen(CLAIMS), c);
        snprintf(tok, sizeof(tok), "%s.%s", h, c);
        unsigned char mac[64];
        unsigned int ml;
        HMAC(hs[i].md(), "s3cret", 6, (unsigned char *)tok, strlen(tok), mac,
             &ml);
        b64url(mac, ml, sig);
        strcat(tok, ".");
        strcat(tok, sig);
        jwt_claims cl;
        cr_assert_eq(pk_verify(ks, tok, &cl), 0, "%s", hs[i].alg);
        jwt_claims_free(&cl);
    }
    jwt_keys_free(ks);
}

Test(jwt, public_key_text_is_never_an_hmac_secret)
{
    EVP_PKEY *k = keygen("RSA", "2048");
    jwt_keys *ks = pem_keys(k);
    /* The classic confusion: the public key's PEM as the HS256 secret. */
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, k);
    char *pem;
    long pl = BIO_get_mem_data(b, &pem);
    char h[256], c[256], tok[4096], sig[100];
    b64url((const unsigned char *)HS, strlen(HS), h);
    b64url((const unsigned char *)CLAIMS, strlen(CLAIMS), c);
    snprintf(tok, sizeof(tok), "%s.%s", h, c);
    unsigned char mac[32];
    unsigned int ml;
    HMAC(EVP_sha256(), pem, (int)pl, (unsigned char *)tok, strlen(tok), mac, &ml);
    b64url(mac, ml, sig);
    strcat(tok, ".");
    strcat(tok, sig);
    jwt_claims cl;
    cr_assert_eq(pk_verify(ks, tok, &cl), PROTO_E_UNAUTHORIZED);
    BIO_free(b);
    jwt_keys_free(ks);
    EVP_PKEY_free(k);
}

Test(jwt, ecdsa_signature_must_be_raw_of_the_curve_size)
{
    EVP_PKEY *k = keygen("EC", "P-256");
    jwt_keys *ks = pem_keys(k);
    char *t = pk_jwt(k, "ES256", hdr("ES256", NULL), CLAIMS);
    char tok[4096];
    snprintf(tok, sizeof(tok), "%s", t);
    /* One byte short (last signature char dropped is 6 bits: cut 4 chars
     * = 3 bytes) and one byte more. */
    jwt_claims c;
    size_t n = strlen(tok);
    tok[n - 4] = '\0';
    cr_assert_eq(pk_verify(ks, tok, &c), PROTO_E_UNAUTHORIZED);
    snprintf(tok, sizeof(tok), "%sAAAA", t);
    cr_assert_eq(pk_verify(ks, tok, &c), PROTO_E_UNAUTHORIZED);
    /* An ES384 name on a P-256 key. */
    cr_assert_eq(pk_verify(ks, pk_jwt(k, "ES256", hdr("ES384", NULL), CLAIMS),
                           &c), PROTO_E_UNAUTHORIZED);
    jwt_keys_free(ks);
    EVP_PKEY_free(k);
}

static void jwk_b64bn(EVP_PKEY *k, const char *param, size_t pad, char *out)
{
    BIGNUM *bn = NULL;
    cr_assert_eq(EVP_PKEY_get_bn_param(k, param, &bn), 1, "%s", param);
    unsigned char buf[1024];
    int n = pad ? BN_bn2binpad(bn, buf, (int)pad) : BN_bn2bin(bn, buf);
    b64url(buf, (size_t)n, out);
    BN_free(bn);
}

/* The JWK (JSON object text) of k's public key with kid. */
static char *jwk(EVP_PKEY *k, const char *kid)
{
    static char out[4][2048];
    static int i;
    char *o = out[i++ % 4];
    char a[1400], b[200];
    if (EVP_PKEY_is_a(k, "RSA")) {
        jwk_b64bn(k, OSSL_PKEY_PARAM_RSA_N, 0, a);
        jwk_b64bn(k, OSSL_PKEY_PARAM_RSA_E, 0, b);
        snprintf(o, 2048, "{\"kty\":\"RSA\",\"kid\":\"%s\",\"n\":\"%s\",\"e\":\"%s\"}",
                 kid, a, b);
    } else if (EVP_PKEY_is_a(k, "EC")) {
        size_t half = EVP_PKEY_get_bits(k) == 256 ? 32 : 48;
        jwk_b64bn(k, OSSL_PKEY_PARAM_EC_PUB_X, half, a);
        jwk_b64bn(k, OSSL_PKEY_PARAM_EC_PUB_Y, half, b);
        snprintf(o, 2048, "{\"kty\":\"EC\",\"kid\":\"%s\",\"crv\":\"P-%zu\","
                 "\"x\":\"%s\",\"y\":\"%s\"}", kid, half * 8, a, b);
    } else {
        unsigned char raw[32];
        size_t rl = sizeof(raw);
        cr_assert_eq(EVP_PKEY_get_raw_public_key(k, raw, &rl), 1);
        b64url(raw, rl, a);
        snprintf(o, 2048, "{\"kty\":\"OKP\",\"kid\":\"%s\",\"crv\":\"Ed25519\","
                 "\"x\":\"%s\"}", kid, a);
    }
    return o;
}

static jwt_keys *jwks_keys(const char *doc)
{
    jwt_keys *ks = jwt_keys_new();
    char err[256];
    cr_assert_eq(jwt_keys_add_jwks_text(ks, doc, strlen(doc), NULL, err, sizeof(err)),
                 0, "%s", err);
    return ks;
}

Test(jwt, jwks_kid_selection)
{
    EVP_PKEY *r1 = keygen("RSA", "2048"), *r2 = keygen("RSA", "2048");
    EVP_PKEY *e1 = keygen("EC", "P-384"), *d1 = keygen("ED25519", NULL);
    char doc[9000];
    snprintf(doc, sizeof(doc),
             "{\"keys\":[%s,%s,%s,%s,{\"kty\":\"oct\",\"kid\":\"h\",\"k\":\"%s\"}]}",
             jwk(r1, "r1"), jwk(r2, "r2"), jwk(e1, "e1"), jwk(d1, "d1"),
             "czNjcmV0");   /* "s3cret" */
    jwt_keys *ks = jwks_keys(doc);
    cr_assert_eq(jwt_keys_count(ks), 5);
    jwt_claims c;
    cr_assert_eq(pk_verify(ks, pk_jwt(r1, "RS256", hdr("RS256", "r1"), CLAIMS), &c), 0);
    jwt_claims_free(&c);
    cr_assert_eq(pk_verify(ks, pk_jwt(r2, "RS256", hdr("RS256", "r2"), CLAIMS), &c), 0);
    jwt_claims_free(&c);
    /* r2's token claiming r1's kid, an unknown kid, no kid among two RSA
     * keys: refused. */
    cr_assert_eq(pk_verify(ks, pk_jwt(r2, "RS256", hdr("RS256", "r1"), CLAIMS), &c),
                 PROTO_E_UNAUTHORIZED);
    cr_assert_eq(pk_verify(ks, pk_jwt(r1, "RS256", hdr("RS256", "zz"), CLAIMS), &c),
                 PROTO_E_UNAUTHORIZED);
    cr_assert_eq(pk_verify(ks, pk_jwt(r1, "RS256", hdr("RS256", NULL), CLAIMS), &c),
                 PROTO_E_UNAUTHORIZED);
    /* No kid, the only key of its type: taken. */
    cr_assert_eq(pk_verify(ks, pk_jwt(e1, "ES384", hdr("ES384", NULL), CLAIMS), &c), 0);
    jwt_claims_free(&c);
    cr_assert_eq(pk_verify(ks, pk_jwt(d1, "EdDSA", hdr("EdDSA", "d1"), CLAIMS), &c), 0);
    jwt_claims_free(&c);
    /* A kid of another key type. */
    cr_assert_eq(pk_verify(ks, pk_jwt(r1, "RS256", hdr("RS256", "e1"), CLAIMS), &c),
                 PROTO_E_UNAUTHORIZED);
    /* The oct key by kid. */
    char h[256], cl[256], tok[1024], sig[100];
    b64url((const unsigned char *)hdr("HS256", "h"), strlen(hdr("HS256", "h")), h);
    b64url((const unsigned char *)CLAIMS, strlen(CLAIMS), cl);
    snprintf(tok, sizeof(tok), "%s.%s", h, cl);
    unsigned char mac[32];
    unsigned int ml;
    HMAC(EVP_sha256(), "s3cret", 6, (unsigned char *)tok, strlen(tok), mac, &ml);
    b64url(mac, ml, sig);
    strcat(tok, ".");
    strcat(tok, sig);
    cr_assert_eq(pk_verify(ks, tok, &c), 0);
    jwt_claims_free(&c);
    jwt_keys_free(ks);
    EVP_PKEY_free(r1);
    EVP_PKEY_free(r2);
    EVP_PKEY_free(e1);
    EVP_PKEY_free(d1);
}

Test(jwt, bad_jwks_documents_are_refused_with_the_member)
{
    EVP_PKEY *small = keygen("RSA", "1024");
    EVP_PKEY *ec = keygen("EC", "P-256");
    char good_ec[2048];
    snprintf(good_ec, sizeof(good_ec), "%s", jwk(ec, "a"));
    char off_curve[2048];
    snprintf(off_curve, sizeof(off_curve), "%s", good_ec);
    char *y = strstr(off_curve, "\"y\":\"") + 5;
    y[0] = y[0] == 'A' ? 'B' : 'A';
    static char docs[8][8192];
    snprintf(docs[0], 8192, "nope");
    snprintf(docs[1], 8192, "{\"keys\":[]}");
    snprintf(docs[2], 8192, "{\"keys\":[{\"kty\":\"XYZ\"}]}");
    snprintf(docs[3], 8192, "{\"keys\":[%s,%s]}", good_ec, good_ec);
    snprintf(docs[4], 8192, "{\"keys\":[%s]}", jwk(small, "s"));
    snprintf(docs[5], 8192, "{\"keys\":[%s]}", off_curve);
    snprintf(docs[6], 8192, "{\"keys\":[{\"kty\":\"oct\",\"k\":\"czNjcmV0\",\"alg\":\"RS256\"}]}");
    snprintf(docs[7], 8192, "{\"keys\":[{\"kty\":\"oct\",\"k\":\"czNjcmV0\",\"use\":\"enc\"}]}");
    for (int i = 0; i < 8; i++) {
        jwt_keys *ks = jwt_keys_new();
        char err[256] = "";
        cr_assert_eq(jwt_keys_add_jwks_text(ks, docs[i], strlen(docs[i]), NULL,
                                            err, sizeof(err)), -1, "doc %d", i);
        cr_assert_neq(err[0], '\0');
        if (i >= 2)
            cr_assert_not_null(strstr(err, "keys["), "doc %d: %s", i, err);
        jwt_keys_free(ks);
    }
    EVP_PKEY_free(small);
    EVP_PKEY_free(ec);
}

Test(jwt, keys_not_for_verifying_are_left_out)
{
    /* An identity provider's JWKS: a signing key beside an encryption key,
     * a PS256 key, a short RSA key, a P-521 key and an unknown kty. */
    EVP_PKEY *ec = keygen("EC", "P-256");
    EVP_PKEY *small = keygen("RSA", "1024");
    static char doc[16384];
    snprintf(doc, sizeof(doc),
             "{\"keys\":[%s,"
             "{\"kty\":\"RSA\",\"use\":\"enc\",\"alg\":\"RSA-OAEP\",\"n\":\"AQAB\",\"e\":\"AQAB\"},"
             "{\"kty\":\"RSA\",\"alg\":\"PS256\",\"n\":\"AQAB\",\"e\":\"AQAB\"},"
             "%s,"
             "{\"kty\":\"EC\",\"crv\":\"P-521\",\"x\":\"AA\",\"y\":\"AA\"},"
             "{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"AA\"},"
             "{\"kty\":\"XYZ\"}]}", jwk(ec, "sig1"), jwk(small, "short"));
    jwt_keys *ks = jwt_keys_new();
    char err[256] = "";
    size_t skipped = 0;
    cr_assert_eq(jwt_keys_add_jwks_text(ks, doc, strlen(doc), &skipped, err,
                                        sizeof(err)), 0, "%s", err);
    cr_assert_eq(skipped, 6);
    cr_assert_eq(jwt_keys_count(ks), 1);
    jwt_keys_free(ks);
    /* a malformed key among them still refuses the document */
    snprintf(doc, sizeof(doc), "{\"keys\":[%s,{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}]}",
             jwk(ec, "sig1"));
    ks = jwt_keys_new();
    cr_assert_eq(jwt_keys_add_jwks_text(ks, doc, strlen(doc), NULL, err, sizeof(err)), -1);
    cr_assert_not_null(strstr(err, "keys[1]"), "%s", err);
    jwt_keys_free(ks);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(small);
}

static int claims_rc(jwt_keys *ks, const jwt_check *chk, const char *claims,
                     jwt_claims *c)
{
    char *t = jwt("k", HS, claims);
    return jwt_verify(ks, chk, t, strlen(t), c);
}

Test(jwt, claims_aud_iss_nbf_leeway_channels_info)
{
    jwt_keys *ks = jwt_keys_new();
    char err[64];
    cr_assert_eq(jwt_keys_add_secret(ks, "k", 1, err, sizeof(err)), 0);
    jwt_check chk = { .now = NOW, .audience = "app", .issuer = "me" };
    jwt_claims c;
    static const struct { const char *claims; int rc; } t[] = {
        { "{\"sub\":\"a\",\"aud\":\"app\",\"iss\":\"me\"}", 0 },
        { "{\"sub\":\"a\",\"aud\":[\"x\",\"app\"],\"iss\":\"me\"}", 0 },
        { "{\"sub\":\"a\",\"aud\":\"other\",\"iss\":\"me\"}", 101 },
        { "{\"sub\":\"a\",\"aud\":[\"x\"],\"iss\":\"me\"}", 101 },
        { "{\"sub\":\"a\",\"aud\":[1],\"iss\":\"me\"}", 101 },
        { "{\"sub\":\"a\",\"iss\":\"me\"}", 101 },
        { "{\"sub\":\"a\",\"aud\":\"app\",\"iss\":\"you\"}", 101 },
        { "{\"sub\":\"a\",\"aud\":\"app\"}", 101 },
        { "{\"sub\":\"a\",\"aud\":\"app\",\"iss\":7}", 101 },
        /* within the 30 s leeway */
        { "{\"sub\":\"a\",\"aud\":\"app\",\"iss\":\"me\",\"nbf\":1700000020}", 0 },
        { "{\"sub\":\"a\",\"aud\":\"app\",\"iss\":\"me\",\"nbf\":1700000031}", 101 },
        { "{\"sub\":\"a\",\"aud\":\"app\",\"iss\":\"me\",\"exp\":1699999980}", 0 },
        { "{\"sub\":\"a\",\"aud\":\"app\",\"iss\":\"me\",\"exp\":1699999970}", 109 },
        { "{\"sub\":\"a\",\"aud\":\"app\",\"iss\":\"me\",\"iat\":\"x\"}", 101 },
        { "{\"sub\":\"a\",\"aud\":\"app\",\"iss\":\"me\",\"nbf\":null}", 101 },
        { "{\"sub\":\"a\",\"sub\":\"b\",\"aud\":\"app\",\"iss\":\"me\"}", 101 },
        { "{\"sub\":5,\"aud\":\"app\",\"iss\":\"me\"}", 101 },
        { "{\"sub\":\"a\\u0000b\",\"aud\":\"app\",\"iss\":\"me\"}", 101 },
        { "{\"sub\":\"a\",\"aud\":\"app\",\"iss\":\"me\",\"channels\":\"x\"}", 101 },
        { "{\"sub\":\"a\",\"aud\":\"app\",\"iss\":\"me\",\"channels\":[1]}", 101 },
        { "{\"sub\":\"a\",\"aud\":\"app\",\"iss\":\"me\",\"channels\":[\"\"]}", 101 },
        { "{\"sub\":\"a\",\"aud\":\"app\",\"iss\":\"me\",\"info\":[1]}", 101 },
    };
    chk.leeway = 30;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        int rc = claims_rc(ks, &chk, t[i].claims, &c);
        cr_assert_eq(rc, t[i].rc, "%s: got %d", t[i].claims, rc);
        if (rc == 0)
            jwt_claims_free(&c);
        else
            cr_assert_null(c.sub);
    }
    /* Channels: 64 of 255 bytes are fine, 65 or 256 bytes are not; info
     * comes back as compact JSON; an empty sub is anonymous (NULL). */
    jwt_check plain = { .now = NOW };
    char name[256];
    memset(name, 'c', 255);
    name[255] = '\0';
    char small[4096];
    size_t o = (size_t)snprintf(small, sizeof(small),
                                "{\"sub\":\"\",\"info\":{\"a\": 1},\"channels\":[");
    for (int i = 0; i < 64; i++)
        o += (size_t)snprintf(small + o, sizeof(small) - o, "%s\"c%d\"", i ? "," : "", i);
    snprintf(small + o, sizeof(small) - o, "]}");
    cr_assert_eq(claims_rc(ks, &plain, small, &c), 0);
    cr_assert_null(c.sub);
    cr_assert_eq(c.n_channels, 64);
    cr_assert_str_eq(c.channels[63], "c63");
    cr_assert_str_eq(c.info, "{\"a\":1}");
    jwt_claims_free(&c);
    snprintf(small + o, sizeof(small) - o, ",\"c64\"]}");
    cr_assert_eq(claims_rc(ks, &plain, small, &c), PROTO_E_UNAUTHORIZED);
    snprintf(small, sizeof(small), "{\"sub\":\"a\",\"channels\":[\"%s\"]}", name);
    cr_assert_eq(claims_rc(ks, &plain, small, &c), 0);
    jwt_claims_free(&c);
    snprintf(small, sizeof(small), "{\"sub\":\"a\",\"channels\":[\"%sx\"]}", name);
    cr_assert_eq(claims_rc(ks, &plain, small, &c), PROTO_E_UNAUTHORIZED);
    jwt_keys_free(ks);
}

Test(jwt, channel_claim_of_channel_tokens)
{
    jwt_keys *ks = jwt_keys_new();
    char err[64];
    cr_assert_eq(jwt_keys_add_secret(ks, "k", 1, err, sizeof(err)), 0);
    jwt_check chk = { .now = NOW };
    jwt_claims c;
    cr_assert_eq(claims_rc(ks, &chk, "{\"sub\":\"a\",\"channel\":\"p:x#a\"}", &c), 0);
    cr_assert_str_eq(c.channel, "p:x#a");
    jwt_claims_free(&c);
    cr_assert_null(c.channel);
    cr_assert_eq(claims_rc(ks, &chk, "{\"sub\":\"a\"}", &c), 0);
    cr_assert_null(c.channel, "absent");
    jwt_claims_free(&c);
    static const char *const bad[] = {
        "{\"sub\":\"a\",\"channel\":\"\"}",
        "{\"sub\":\"a\",\"channel\":5}",
        "{\"sub\":\"a\",\"channel\":[\"x\"]}",
        "{\"sub\":\"a\",\"channel\":null}",
        "{\"sub\":\"a\",\"channel\":\"x\",\"channel\":\"y\"}",
        "{\"sub\":\"a\",\"channel\":\"x\\u0000y\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(claims_rc(ks, &chk, bad[i], &c), PROTO_E_UNAUTHORIZED, "%s", bad[i]);
        cr_assert_null(c.channel);
    }
    char big[400];
    memset(big, 0, sizeof(big));
    int o = snprintf(big, sizeof(big), "{\"channel\":\"");
    memset(big + o, 'c', 256);
    snprintf(big + o + 256, sizeof(big) - (size_t)o - 256, "\"}");
    cr_assert_eq(claims_rc(ks, &chk, big, &c), PROTO_E_UNAUTHORIZED, "256 bytes");
    jwt_keys_free(ks);
}

Test(jwt, header_shape)
{
    jwt_keys *ks = jwt_keys_new();
    char err[64];
    cr_assert_eq(jwt_keys_add_secret(ks, "k", 1, err, sizeof(err)), 0);
    jwt_claims c;
    const char *bad[] = {
        "{\"alg\":\"HS256\",\"crit\":[\"b64\"]}",
        "{\"alg\":\"HS256\",\"kid\":5}",
        "{\"alg\":\"HS256\",\"typ\":5}",
        "{\"alg\":\"HS256\",\"alg\":\"HS256\"}",
        "[\"HS256\"]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(pk_verify(ks, jwt("k", bad[i], CLAIMS), &c),
                     PROTO_E_UNAUTHORIZED, "%s", bad[i]);
    /* Four parts. */
    char tok[4096];
    snprintf(tok, sizeof(tok), "%s.x", jwt("k", HS, CLAIMS));
    cr_assert_eq(pk_verify(ks, tok, &c), PROTO_E_UNAUTHORIZED);
    /* An empty key set refuses everything. */
    jwt_keys *none = jwt_keys_new();
    cr_assert_eq(pk_verify(none, jwt("k", HS, CLAIMS), &c), PROTO_E_UNAUTHORIZED);
    jwt_keys_free(none);
    jwt_keys_free(ks);
}
