/*
 * HS256 JWT verification with OpenSSL (HMAC, constant-time compare) and
 * jansson (header and claims). Tokens are bounded by the protocol codec
 * (8 KiB), so the decode buffers here are bounded too.
 */
#include "net/auth.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <herald/proto.h>

/* base64url without padding -> bytes. Returns length or -1. */
static long auth_b64url_decode(const char *in, size_t len, unsigned char *out,
                               size_t outcap)
{
    size_t padded = (len + 3) / 4 * 4;
    if (len % 4 == 1 || padded / 4 * 3 > outcap)
        return -1;
    char *tmp = malloc(padded + 1);
    if (!tmp)
        abort();
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (ch == '-')
            ch = '+';
        else if (ch == '_')
            ch = '/';
        else if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                   (ch >= '0' && ch <= '9'))) {
            free(tmp);
            return -1;
        }
        tmp[i] = ch;
    }
    for (size_t i = len; i < padded; i++)
        tmp[i] = '=';
    tmp[padded] = '\0';
    int n = EVP_DecodeBlock(out, (unsigned char *)tmp, (int)padded);
    free(tmp);
    if (n < 0)
        return -1;
    return n - (long)(padded - len);   /* DecodeBlock counts padding bytes */
}

static json_t *auth_json_part(const char *p, size_t len)
{
    unsigned char buf[6144];
    long n = auth_b64url_decode(p, len, buf, sizeof(buf));
    if (n < 0)
        return NULL;
    return json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES,
                      NULL);
}

int auth_verify(const char *secret, const char *token, size_t len,
                int64_t now_s, char **user, int64_t *exp)
{
    *user = NULL;
    *exp = 0;
    if (!secret || !secret[0] || len > 8192)
        return PROTO_E_UNAUTHORIZED;
    const char *d1 = memchr(token, '.', len);
    if (!d1)
        return PROTO_E_UNAUTHORIZED;
    const char *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token));
    if (!d2)
        return PROTO_E_UNAUTHORIZED;
    size_t signed_len = (size_t)(d2 - token);
    const char *sig = d2 + 1;
    size_t sig_len = len - signed_len - 1;

    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret),
              (const unsigned char *)token, signed_len, mac, &mac_len))
        return PROTO_E_UNAUTHORIZED;
    unsigned char got[64];
    long gl = auth_b64url_decode(sig, sig_len, got, sizeof(got));
    if (gl != (long)mac_len || CRYPTO_memcmp(got, mac, mac_len) != 0)
        return PROTO_E_UNAUTHORIZED;

    int rc = PROTO_E_UNAUTHORIZED;
    json_t *hdr = auth_json_part(token, (size_t)(d1 - token));
    json_t *claims = auth_json_part(d1 + 1, (size_t)(d2 - d1 - 1));
    if (!hdr || !claims || !json_is_object(hdr) || !json_is_object(claims))
        goto out;
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    if (!alg || strcmp(alg, "HS256") != 0)
        goto out;
    json_t *jexp = json_object_get(claims, "exp");
    if (jexp) {
        if (!json_is_integer(jexp))
            goto out;
        *exp = json_integer_value(jexp);
        if (*exp <= now_s) {
            rc = PROTO_E_TOKEN_EXPIRED;
            goto out;
        }
    }
    json_t *sub = json_object_get(claims, "sub");
    if (sub && !json_is_string(sub))
        goto out;
    const char *u = sub ? json_string_value(sub) : "";
    if (strlen(u) > 255)
        goto out;
    *user = strdup(u);
    if (!*user)
        abort();
    rc = 0;
out:
    json_decref(hdr);
    json_decref(claims);
    return rc;
}
