/*
 * JWT verification (jwt.h). Order of checks: size and shape, header (alg
 * known, a key of the algorithm's type selected by kid), signature, then
 * the claims' types and bounds, aud/iss/nbf, and exp last, so that only a
 * well-formed, genuine token that has merely run out is "expired" (109).
 */
#include "auth/jwt.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <herald/proto.h>

#include "base/mem.h"

/* Key types; an algorithm names exactly one. */
enum jwt_kt { KT_OCT, KT_RSA, KT_EC256, KT_EC384, KT_ED25519 };

typedef struct jwt_alg {
    const char *name;
    enum jwt_kt kt;
    const char *md;     /* digest name; NULL for EdDSA (pure) */
    size_t ec_len;      /* ECDSA: raw r||s length */
} jwt_alg;

static const jwt_alg jwt_algs[] = {
    { "HS256", KT_OCT, "SHA256", 0 },   { "HS384", KT_OCT, "SHA384", 0 },
    { "HS512", KT_OCT, "SHA512", 0 },   { "RS256", KT_RSA, "SHA256", 0 },
    { "RS384", KT_RSA, "SHA384", 0 },   { "RS512", KT_RSA, "SHA512", 0 },
    { "ES256", KT_EC256, "SHA256", 64 }, { "ES384", KT_EC384, "SHA384", 96 },
    { "EdDSA", KT_ED25519, NULL, 0 },
};
#define N_ALGS (sizeof jwt_algs / sizeof jwt_algs[0])

#define KID_MAX 128
/* RSA keys shorter than this are refused at load (RFC 7518 3.3). */
#define RSA_MIN_BITS 2048
/* Signatures: RSA up to 8192-bit keys. */
#define SIG_MAX 1024
/* Keys in a set: a JWKS with more is refused at load. */
#define KEYS_MAX 64

typedef struct jwt_key {
    enum jwt_kt kt;
    char kid[KID_MAX];  /* "" = none */
    char alg[8];        /* a JWK's "alg": "" = any of the type's */
    unsigned char *secret;
    size_t secret_len;
    EVP_PKEY *pkey;
} jwt_key;

struct jwt_keys {
    jwt_key k[KEYS_MAX];
    size_t n;
    atomic_uint refs;       /* jwt_keys_ref / jwt_keys_free */
};

const char *jwt_algorithms(void)
{
    return "HS256 HS384 HS512 RS256 RS384 RS512 ES256 ES384 EdDSA";
}

jwt_keys *jwt_keys_new(void)
{
    jwt_keys *ks = mem_calloc(1, sizeof(jwt_keys));
    atomic_init(&ks->refs, 1);
    return ks;
}

jwt_keys *jwt_keys_ref(jwt_keys *ks)
{
    if (ks)
        atomic_fetch_add_explicit(&ks->refs, 1, memory_order_relaxed);
    return ks;
}

static void jwt_key_clear(jwt_key *k)
{
    if (k->secret) {
        OPENSSL_cleanse(k->secret, k->secret_len);
        free(k->secret);
    }
    EVP_PKEY_free(k->pkey);
    memset(k, 0, sizeof(*k));
}

void jwt_keys_free(jwt_keys *ks)
{
    if (!ks || atomic_fetch_sub_explicit(&ks->refs, 1,
                                         memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < ks->n; i++)
        jwt_key_clear(&ks->k[i]);
    free(ks);
}

size_t jwt_keys_count(const jwt_keys *ks)
{
    return ks ? ks->n : 0;
}

static jwt_key *jwt_key_slot(jwt_keys *ks, char *err, size_t errlen)
{
    if (ks->n >= KEYS_MAX) {
        snprintf(err, errlen, "more than %d token keys", KEYS_MAX);
        return NULL;
    }
    jwt_key *k = &ks->k[ks->n];
    memset(k, 0, sizeof(*k));
    return k;
}

int jwt_keys_add_secret(jwt_keys *ks, const void *secret, size_t len,
                        char *err, size_t errlen)
{
    if (len == 0) {
        snprintf(err, errlen, "empty HMAC secret");
        return -1;
    }
    jwt_key *k = jwt_key_slot(ks, err, errlen);
    if (!k)
        return -1;
    k->kt = KT_OCT;
    k->secret = mem_alloc(len);
    memcpy(k->secret, secret, len);
    k->secret_len = len;
    ks->n++;
    return 0;
}

/* The key type of a public key, or -1 when it is not one we take. */
static int jwt_pkey_kt(EVP_PKEY *p, char *err, size_t errlen)
{
    if (EVP_PKEY_is_a(p, "RSA")) {
        if (EVP_PKEY_get_bits(p) < RSA_MIN_BITS) {
            snprintf(err, errlen, "RSA key shorter than %d bits",
                     RSA_MIN_BITS);
            return -1;
        }
        return KT_RSA;
    }
    if (EVP_PKEY_is_a(p, "ED25519"))
        return KT_ED25519;
    if (EVP_PKEY_is_a(p, "EC")) {
        char grp[64] = "";
        size_t gl = 0;
        if (EVP_PKEY_get_utf8_string_param(p, OSSL_PKEY_PARAM_GROUP_NAME, grp,
                                           sizeof(grp), &gl) == 1) {
            if (strcmp(grp, "prime256v1") == 0 || strcmp(grp, "P-256") == 0)
                return KT_EC256;
            if (strcmp(grp, "secp384r1") == 0 || strcmp(grp, "P-384") == 0)
                return KT_EC384;
        }
        snprintf(err, errlen, "EC key on a curve other than P-256 or P-384");
        return -1;
    }
    snprintf(err, errlen, "not an RSA, EC or Ed25519 public key");
    return -1;
}

int jwt_keys_add_pem(jwt_keys *ks, const char *path, char *err,
                     size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open", path);
        return -1;
    }
    EVP_PKEY *p = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (!p) {
        snprintf(err, errlen, "%s: no PEM public key (\"BEGIN PUBLIC KEY\")",
                 path);
        return -1;
    }
    char why[128];
    int kt = jwt_pkey_kt(p, why, sizeof(why));
    jwt_key *k = kt < 0 ? NULL : jwt_key_slot(ks, why, sizeof(why));
    if (!k) {
        snprintf(err, errlen, "%s: %s", path, why);
        EVP_PKEY_free(p);
        return -1;
    }
    k->kt = (enum jwt_kt)kt;
    k->pkey = p;
    ks->n++;
    return 0;
}

/* -- base64url ------------------------------------------------------------ */

/* base64url without padding -> bytes. Returns the length or -1 (a byte
 * outside the alphabet, an impossible length, or more than outcap). */
static long jwt_b64url(const char *in, size_t len, unsigned char *out,
                       size_t outcap)
{
    if (len % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)in[i];
        int v;
        if (ch >= 'A' && ch <= 'Z')
            v = ch - 'A';
        else if (ch >= 'a' && ch <= 'z')
            v = ch - 'a' + 26;
        else if (ch >= '0' && ch <= '9')
            v = ch - '0' + 52;
        else if (ch == '-')
            v = 62;
        else if (ch == '_')
            v = 63;
        else
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= outcap)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Leftover bits must be zero: one encoding per byte string, so a
     * token cannot be altered in its last character and still verify. */
    if (acc != 0)
        return -1;
    return (long)o;
}

/* A base64url JSON object, duplicates refused. */
static json_t *jwt_json_part(const char *p, size_t len)
{
    unsigned char buf[JWT_MAX_TOKEN];
    long n = jwt_b64url(p, len, buf, sizeof(buf));
    if (n <= 0)
        return NULL;
    json_t *j = json_loadb((const char *)buf, (size_t)n,
                           JSON_REJECT_DUPLICATES, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* -- JWKS ----------------------------------------------------------------- */

/* Whether v is the string a or b (b may be NULL). */
static int jwt_str_in(json_t *v, const char *a, const char *b)
{
    const char *s = json_string_value(v);
    return s && (strcmp(s, a) == 0 || (b && strcmp(s, b) == 0));
}

/* A JWK member that is base64url; returns its length or -1. */
static long jwt_jwk_bytes(json_t *jwk, const char *name, unsigned char *out,
                          size_t cap)
{
    json_t *v = json_object_get(jwk, name);
    if (!json_is_string(v))
        return -1;
    return jwt_b64url(json_string_value(v), json_string_length(v), out, cap);
}

static EVP_PKEY *jwt_from_params(const char *type, OSSL_PARAM_BLD *b)
{
    EVP_PKEY *p = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(b);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (params && ctx && EVP_PKEY_fromdata_init(ctx) == 1)
        if (EVP_PKEY_fromdata(ctx, &p, EVP_PKEY_PUBLIC_KEY, params) != 1)
            p = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return p;
}

static EVP_PKEY *jwt_jwk_rsa(json_t *jwk, const char **why)
{
    unsigned char n[1024], e[16];
    long nl = jwt_jwk_bytes(jwk, "n", n, sizeof(n));
    long el = jwt_jwk_bytes(jwk, "e", e, sizeof(e));
    if (nl <= 0 || el <= 0) {
        *why = "RSA key without valid n and e";
        return NULL;
    }
    BIGNUM *bn = BN_bin2bn(n, (int)nl, NULL);
    BIGNUM *be = BN_bin2bn(e, (int)el, NULL);
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    EVP_PKEY *p = NULL;
    if (bn && be && b && OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_N, bn) &&
        OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_E, be))
        p = jwt_from_params("RSA", b);
    OSSL_PARAM_BLD_free(b);
    BN_free(bn);
    BN_free(be);
    if (!p)
        *why = "RSA key not accepted by OpenSSL";
    return p;
}

static EVP_PKEY *jwt_jwk_ec(json_t *jwk, const char **why)
{
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    const char *group;
    size_t cl;
    if (crv && strcmp(crv, "P-256") == 0) {
        group = "prime256v1";
        cl = 32;
    } else if (crv && strcmp(crv, "P-384") == 0) {
        group = "secp384r1";
        cl = 48;
    } else {
        *why = "EC key with a crv other than P-256 or P-384";
        return NULL;
    }
    unsigned char pt[1 + 2 * 48];
    pt[0] = 0x04;   /* uncompressed point: 04 || x || y */
    if (jwt_jwk_bytes(jwk, "x", pt + 1, cl) != (long)cl ||
        jwt_jwk_bytes(jwk, "y", pt + 1 + cl, cl) != (long)cl) {
        *why = "EC key whose x or y has the wrong length";
        return NULL;
    }
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    EVP_PKEY *p = NULL;
    if (b && OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME,
                                             group, 0) &&
        OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, pt,
                                         1 + 2 * cl))
        p = jwt_from_params("EC", b);
    OSSL_PARAM_BLD_free(b);
    if (!p)
        *why = "EC point not on the curve";
    return p;
}

static EVP_PKEY *jwt_jwk_okp(json_t *jwk, const char **why)
{
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    unsigned char x[32];
    if (!crv || strcmp(crv, "Ed25519") != 0) {
        *why = "OKP key with a crv other than Ed25519";
        return NULL;
    }
    if (jwt_jwk_bytes(jwk, "x", x, sizeof(x)) != 32) {
        *why = "Ed25519 key whose x is not 32 bytes";
        return NULL;
    }
    EVP_PKEY *p = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, 32);
    if (!p)
        *why = "Ed25519 not supported by this OpenSSL";
    return p;
}

static int jwt_alg_known(const char *name)
{
    for (size_t i = 0; i < N_ALGS; i++)
        if (strcmp(jwt_algs[i].name, name) == 0)
            return 1;
    return 0;
}

/* One JWK into slot k; NULL or the reason it is refused. *skip is set
 * when the key is well formed but not one for verifying tokens here (an
 * encryption key, an algorithm, key type or curve Herald does not verify,
 * a short RSA key): identity providers publish such keys beside their
 * signing keys, so they are left out rather than refusing the document. */
static const char *jwt_jwk_load(json_t *jwk, jwt_key *k, int *skip)
{
    *skip = 0;
    if (!json_is_object(jwk))
        return "not an object";
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    json_t *kid = json_object_get(jwk, "kid");
    json_t *alg = json_object_get(jwk, "alg");
    json_t *use = json_object_get(jwk, "use");
    if (kid && (!json_is_string(kid) || json_string_length(kid) == 0 ||
                json_string_length(kid) >= KID_MAX))
        return "kid is not a string of 1 to 127 bytes";
    if (alg && !json_is_string(alg))
        return "alg is not a string";
    if (use && !json_is_string(use))
        return "use is not a string";
    *skip = 1;
    if (use && strcmp(json_string_value(use), "sig"))
        return "use is not \"sig\"";
    if (alg && (json_string_length(alg) >= sizeof(k->alg) ||
                !jwt_alg_known(json_string_value(alg))))
        return "alg is not one Herald verifies";
    if (kty && strcmp(kty, "oct") && strcmp(kty, "RSA") && strcmp(kty, "EC") &&
        strcmp(kty, "OKP"))
        return "kty is not RSA, EC, OKP or oct";
    if (kty && strcmp(kty, "EC") == 0 &&
        !jwt_str_in(json_object_get(jwk, "crv"), "P-256", "P-384"))
        return "EC key with a crv other than P-256 or P-384";
    if (kty && strcmp(kty, "OKP") == 0 &&
        !jwt_str_in(json_object_get(jwk, "crv"), "Ed25519", NULL))
        return "OKP key with a crv other than Ed25519";
    *skip = 0;
    if (kid)
        snprintf(k->kid, sizeof(k->kid), "%s", json_string_value(kid));
    if (alg)
        snprintf(k->alg, sizeof(k->alg), "%s", json_string_value(alg));
    const char *why = NULL;
    if (!kty)
        return "no kty";
    if (strcmp(kty, "oct") == 0) {
        unsigned char s[1024];
        long sl = jwt_jwk_bytes(jwk, "k", s, sizeof(s));
        if (sl <= 0)
            return "oct key without a valid k (1 to 1024 bytes)";
        k->kt = KT_OCT;
        k->secret = mem_alloc((size_t)sl);
        memcpy(k->secret, s, (size_t)sl);
        k->secret_len = (size_t)sl;
        OPENSSL_cleanse(s, sizeof(s));
    } else if (strcmp(kty, "RSA") == 0) {
        k->pkey = jwt_jwk_rsa(jwk, &why);
    } else if (strcmp(kty, "EC") == 0) {
        k->pkey = jwt_jwk_ec(jwk, &why);
    } else if (strcmp(kty, "OKP") == 0) {
        k->pkey = jwt_jwk_okp(jwk, &why);
    } else {
        return "kty is not RSA, EC, OKP or oct";
    }
    if (!k->secret) {
        if (!k->pkey) {
            *skip = why && strstr(why, "not supported") != NULL;
            return why;
        }
        if (EVP_PKEY_is_a(k->pkey, "RSA") &&
            EVP_PKEY_get_bits(k->pkey) < RSA_MIN_BITS) {
            *skip = 1;
            return "RSA key shorter than 2048 bits";
        }
        char buf[128];
        int kt = jwt_pkey_kt(k->pkey, buf, sizeof(buf));
        if (kt < 0)
            return "not an RSA, EC P-256/P-384 or Ed25519 key";
        k->kt = (enum jwt_kt)kt;
    }
    if (k->alg[0]) {
        for (size_t i = 0; i < N_ALGS; i++)
            if (strcmp(jwt_algs[i].name, k->alg) == 0 &&
                jwt_algs[i].kt == k->kt)
                return NULL;
        return "alg does not fit the key type";
    }
    return NULL;
}

int jwt_keys_add_jwks_text(jwt_keys *ks, const char *text, size_t len,
                           size_t *skipped, char *err, size_t errlen)
{
    size_t added = 0, skips = 0;
    const char *first_skip = NULL;
    size_t first_skip_i = 0;
    json_error_t je;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!doc) {
        snprintf(err, errlen, "not JSON (line %d: %s)", je.line, je.text);
        return -1;
    }
    json_t *keys = json_object_get(doc, "keys");
    int rc = -1;
    if (!json_is_array(keys) || json_array_size(keys) == 0) {
        snprintf(err, errlen, "no \"keys\" array with at least one key");
        goto out;
    }
    size_t i;
    json_t *jwk;
    json_array_foreach(keys, i, jwk) {
        jwt_key *k = jwt_key_slot(ks, err, errlen);
        if (!k)
            goto out;
        int skip;
        const char *why = jwt_jwk_load(jwk, k, &skip);
        for (size_t j = 0; !why && k->kid[0] && j < ks->n; j++)
            if (strcmp(ks->k[j].kid, k->kid) == 0)
                why = "kid used twice";
        if (why && skip) {
            jwt_key_clear(k);
            if (!skips++) {
                first_skip = why;
                first_skip_i = i;
            }
            continue;
        }
        if (why) {
            jwt_key_clear(k);
            snprintf(err, errlen, "keys[%zu]: %s", i, why);
            goto out;
        }
        ks->n++;
        added++;
    }
    if (!added) {
        snprintf(err, errlen, "no key Herald can verify tokens with "
                 "(keys[%zu]: %s)", first_skip_i, first_skip);
        goto out;
    }
    if (skipped)
        *skipped = skips;
    rc = 0;
out:
    json_decref(doc);
    return rc;
}

int jwt_keys_add_jwks(jwt_keys *ks, const char *path, size_t *skipped,
                      char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open", path);
        return -1;
    }
    /* A JWKS of KEYS_MAX large RSA keys stays well under this. */
    size_t cap = 1 << 20;
    char *buf = mem_alloc(cap);
    size_t n = fread(buf, 1, cap, f);
    int too_big = n == cap;
    fclose(f);
    char why[256];
    int rc = -1;
    if (too_big)
        snprintf(why, sizeof(why), "larger than 1 MiB");
    else
        rc = jwt_keys_add_jwks_text(ks, buf, n, skipped, why, sizeof(why));
    free(buf);
    if (rc < 0)
        snprintf(err, errlen, "%s: %s", path, why);
    return rc;
}

/* -- verification ---------------------------------------------------------- */

static const jwt_alg *jwt_alg_find(const char *name)
{
    for (size_t i = 0; i < N_ALGS; i++)
        if (strcmp(jwt_algs[i].name, name) == 0)
            return &jwt_algs[i];
    return NULL;
}

static int jwt_key_fits(const jwt_key *k, const jwt_alg *a)
{
    return k->kt == a->kt && (!k->alg[0] || strcmp(k->alg, a->name) == 0);
}

/* The key for a token: with a kid, the key of that kid (or, when no key
 * has it, the only kid-less key of the type: a secret or PEM key); without
 * one, the only key of the type. NULL when none or ambiguous. */
static int jwt_kid_known(const jwt_keys *ks, const char *kid)
{
    for (size_t i = 0; i < ks->n; i++)
        if (strcmp(ks->k[i].kid, kid) == 0)
            return 1;
    return 0;
}

static const jwt_key *jwt_key_pick(const jwt_keys *ks, const jwt_alg *a,
                                   const char *kid)
{
    if (kid) {
        for (size_t i = 0; i < ks->n; i++)
            if (strcmp(ks->k[i].kid, kid) == 0)
                return jwt_key_fits(&ks->k[i], a) ? &ks->k[i] : NULL;
    }
    const jwt_key *found = NULL;
    for (size_t i = 0; i < ks->n; i++) {
        if (!jwt_key_fits(&ks->k[i], a) || (kid && ks->k[i].kid[0]))
            continue;
        if (found)
            return NULL;
        found = &ks->k[i];
    }
    return found;
}

static int jwt_check_hmac(const jwt_key *k, const jwt_alg *a,
                          const char *in, size_t inlen,
                          const unsigned char *sig, size_t siglen)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int ml = 0;
    const EVP_MD *md = EVP_get_digestbyname(a->md);
    if (!md || !HMAC(md, k->secret, (int)k->secret_len,
                     (const unsigned char *)in, inlen, mac, &ml))
        return 0;
    return siglen == ml && CRYPTO_memcmp(sig, mac, ml) == 0;
}

/* JWS ECDSA signatures are r || s, each the curve's size; OpenSSL
 * verifies the DER ECDSA-Sig-Value. Returns the DER length or 0. */
static size_t jwt_ec_der(const unsigned char *raw, size_t len,
                         unsigned char *der, size_t cap)
{
    ECDSA_SIG *s = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, (int)(len / 2), NULL);
    BIGNUM *sv = BN_bin2bn(raw + len / 2, (int)(len / 2), NULL);
    size_t out = 0;
    if (s && r && sv && ECDSA_SIG_set0(s, r, sv) == 1) {
        r = sv = NULL;  /* owned by s now */
        int n = i2d_ECDSA_SIG(s, NULL);
        if (n > 0 && (size_t)n <= cap) {
            unsigned char *p = der;
            out = (size_t)i2d_ECDSA_SIG(s, &p);
        }
    }
    BN_free(r);
    BN_free(sv);
    ECDSA_SIG_free(s);
    return out;
}

static int jwt_check_pkey(const jwt_key *k, const jwt_alg *a,
                          const char *in, size_t inlen,
                          const unsigned char *sig, size_t siglen)
{
    unsigned char der[160];
    if (a->ec_len) {
        if (siglen != a->ec_len)
            return 0;
        siglen = jwt_ec_der(sig, siglen, der, sizeof(der));
        if (!siglen)
            return 0;
        sig = der;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    int ok = 0;
    if (ctx && EVP_DigestVerifyInit_ex(ctx, &pctx, a->md, NULL, NULL, k->pkey,
                                       NULL) == 1 &&
        (a->kt != KT_RSA ||
         EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1))
        ok = EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)in,
                              inlen) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

void jwt_claims_free(jwt_claims *c)
{
    free(c->sub);
    for (uint32_t i = 0; i < c->n_channels; i++)
        free(c->channels[i]);
    free(c->channels);
    free(c->info);
    free(c->channel);
    memset(c, 0, sizeof(*c));
}

/* A string without NUL of at most max bytes, or NULL. */
static const char *jwt_str(json_t *v, size_t max)
{
    if (!json_is_string(v))
        return NULL;
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n > max || strlen(s) != n)
        return NULL;
    return s;
}

/* Control characters in a user id would end up in logs, metrics and the
 * presence identity (core/presence.h uses one as a separator). */
static int jwt_has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

/* A NumericDate, which here must be an integer (seconds): 1 when absent
 * (*has 0) or an integer (*has 1), 0 for anything else. */
static int jwt_date(json_t *claims, const char *name, int64_t *out, int *has)
{
    json_t *v = json_object_get(claims, name);
    *out = 0;
    *has = v != NULL;
    if (!v)
        return 1;
    if (!json_is_integer(v))
        return 0;
    *out = json_integer_value(v);
    return 1;
}

static int jwt_aud_ok(json_t *aud, const char *want)
{
    if (!aud)
        return !want;
    if (json_is_string(aud))
        return !want || strcmp(json_string_value(aud), want) == 0;
    if (!json_is_array(aud))
        return 0;
    size_t i;
    json_t *v;
    int hit = 0;
    json_array_foreach(aud, i, v) {
        if (!json_is_string(v))
            return 0;
        if (want && strcmp(json_string_value(v), want) == 0)
            hit = 1;
    }
    return !want || hit;
}

static int jwt_channels(json_t *v, jwt_claims *out)
{
    if (!v)
        return 1;
    if (!json_is_array(v) || json_array_size(v) > JWT_MAX_CHANNELS)
        return 0;
    size_t n = json_array_size(v);
    out->channels = mem_calloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        const char *s = jwt_str(json_array_get(v, i), JWT_MAX_CHANNEL_LEN);
        if (!s || !s[0])
            return 0;
        out->channels[i] = mem_strdup(s);
        out->n_channels = (uint32_t)(i + 1);
    }
    return 1;
}

/* Claims of a genuine token: 0 or a PROTO_E_* code. */
static int jwt_claims_read(json_t *claims, const jwt_check *chk,
                           jwt_claims *out)
{
    int64_t exp, nbf, iat;
    int has_exp, has_nbf, has_iat;
    if (!jwt_date(claims, "exp", &exp, &has_exp) ||
        !jwt_date(claims, "nbf", &nbf, &has_nbf) ||
        !jwt_date(claims, "iat", &iat, &has_iat))
        return PROTO_E_UNAUTHORIZED;
    (void)iat;      /* iat is informative: only its type is checked */
    (void)has_iat;
    json_t *sub = json_object_get(claims, "sub");
    const char *user = sub ? jwt_str(sub, JWT_MAX_SUB) : "";
    if (!user || jwt_has_control(user))
        return PROTO_E_UNAUTHORIZED;
    json_t *iss = json_object_get(claims, "iss");
    if (iss && !json_is_string(iss))
        return PROTO_E_UNAUTHORIZED;
    const char *want_iss = chk->issuer && chk->issuer[0] ? chk->issuer : NULL;
    if (want_iss && (!iss || strcmp(json_string_value(iss), want_iss) != 0))
        return PROTO_E_UNAUTHORIZED;
    const char *want_aud =
        chk->audience && chk->audience[0] ? chk->audience : NULL;
    if (!jwt_aud_ok(json_object_get(claims, "aud"), want_aud))
        return PROTO_E_UNAUTHORIZED;
    json_t *info = json_object_get(claims, "info");
    if (info && !json_is_object(info))
        return PROTO_E_UNAUTHORIZED;
    if (!jwt_channels(json_object_get(claims, "channels"), out))
        return PROTO_E_UNAUTHORIZED;
    json_t *chan = json_object_get(claims, "channel");
    const char *chan_s = chan ? jwt_str(chan, JWT_MAX_CHANNEL_LEN) : NULL;
    if (chan && (!chan_s || !chan_s[0]))
        return PROTO_E_UNAUTHORIZED;
    if (info) {
        out->info = json_dumps(info, JSON_COMPACT);
        if (!out->info || strlen(out->info) > JWT_MAX_INFO)
            return PROTO_E_UNAUTHORIZED;
    }
    if (has_nbf && nbf > chk->now + chk->leeway)
        return PROTO_E_UNAUTHORIZED;
    /* exp is the first second the token is no longer valid. Compared
     * without overflow: exp may be any int64. */
    if (has_exp && exp <= chk->now - chk->leeway)
        return PROTO_E_TOKEN_EXPIRED;
    out->exp = exp;
    if (chan_s)
        out->channel = mem_strdup(chan_s);
    if (user[0])
        out->sub = mem_strdup(user);
    return 0;
}

int jwt_verify(const jwt_keys *ks, const jwt_check *chk, const char *token,
               size_t len, jwt_claims *out)
{
    memset(out, 0, sizeof(*out));
    if (!ks || ks->n == 0 || len == 0 || len > JWT_MAX_TOKEN)
        return PROTO_E_UNAUTHORIZED;
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token))
                        : NULL;
    if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
        return PROTO_E_UNAUTHORIZED;
    size_t signed_len = (size_t)(d2 - token);

    int rc = PROTO_E_UNAUTHORIZED;
    json_t *claims = NULL;
    json_t *hdr = jwt_json_part(token, (size_t)(d1 - token));
    if (!hdr)
        goto out;
    /* Extensions we do not understand must not be ignored (RFC 7515
     * 4.1.11): crit refuses the token. */
    json_t *kidv = json_object_get(hdr, "kid");
    json_t *typ = json_object_get(hdr, "typ");
    if (json_object_get(hdr, "crit") || (typ && !json_is_string(typ)) ||
        (kidv && !jwt_str(kidv, KID_MAX - 1)))
        goto out;
    const char *algname = jwt_str(json_object_get(hdr, "alg"), 16);
    const jwt_alg *a = algname ? jwt_alg_find(algname) : NULL;
    const jwt_key *k = a ? jwt_key_pick(ks, a, json_string_value(kidv)) : NULL;
    if (!k) {
        if (kidv && chk->unknown_kid && !jwt_kid_known(ks, json_string_value(kidv)))
            *chk->unknown_kid = 1;
        goto out;
    }

    unsigned char sig[SIG_MAX];
    long sl = jwt_b64url(d2 + 1, len - signed_len - 1, sig, sizeof(sig));
    if (sl <= 0)
        goto out;
    int good = a->kt == KT_OCT
                   ? jwt_check_hmac(k, a, token, signed_len, sig, (size_t)sl)
                   : jwt_check_pkey(k, a, token, signed_len, sig, (size_t)sl);
    if (!good)
        goto out;
    claims = jwt_json_part(d1 + 1, (size_t)(d2 - d1 - 1));
    if (!claims)
        goto out;
    rc = jwt_claims_read(claims, chk, out);
out:
    if (rc)
        jwt_claims_free(out);
    json_decref(hdr);
    json_decref(claims);
    return rc;
}
