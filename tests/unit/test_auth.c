/* Unit tests of server/auth.c: HS256 JWT verification. Tokens are built
 * here with OpenSSL, independently of the code under test. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <herald/proto.h>

#include "auth.h"

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

/* header and claims are JSON text. */
static char *jwt(const char *secret, const char *header, const char *claims)
{
    static char tok[4096];
    char h[1024], c[2048], sig[128];
    b64url((const unsigned char *)header, strlen(header), h);
    b64url((const unsigned char *)claims, strlen(claims), c);
    snprintf(tok, sizeof(tok), "%s.%s", h, c);
    unsigned char mac[32];
    unsigned int ml = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)tok,
         strlen(tok), mac, &ml);
    b64url(mac, ml, sig);
    strcat(tok, ".");
    strcat(tok, sig);
    return tok;
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
