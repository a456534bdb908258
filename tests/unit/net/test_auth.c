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

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <herald/proto.h>

#include "net/auth.h"

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
