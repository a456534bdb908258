/*
 * Publication data in both encodings. A publication is converted once, when
 * it is published, into JSON text and one msgpack object (proto_data), so
 * that pushes to JSON and msgpack subscribers only copy ready bytes. JSON
 * data keeps the publisher's bytes (minus line breaks, which would collide
 * with '\n' batching); msgpack data is re-packed from the parsed object.
 *
 * Mapping, msgpack -> JSON: nil/bool/int/float/str/array/map map to their
 * JSON counterparts; bin becomes a base64 string (RFC 4648, padded) at any
 * depth, but proto_data.binary is set only when the top-level value is bin,
 * because that is all "binary":true beside "data" can describe. Ext types,
 * non-string map keys, duplicate keys, NaN/Infinity and invalid UTF-8 have no
 * faithful JSON form and are rejected with 107, as are NUL bytes in keys
 * (jansson refuses them, so JSON publishers cannot send them either).
 * JSON -> msgpack: integers become ints, reals float64, strings str, and so
 * on; jansson limits JSON integers to int64. Both directions bound nesting
 * by PROTO_DATA_DEPTH_MAX.
 *
 * The JSON text helpers used by the encoders (string escaping, doubles,
 * base64, UTF-8 validation) live here too, with the loader every JSON text
 * from a client goes through (proto__json_loadb).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_internal.h"

/* --- JSON text helpers --------------------------------------------------- */

/* Non-zero for bytes that cannot appear raw in a JSON string: the value is
 * the short escape letter, or 'u' for \u00XX. */
static const char json_esc[256] = {
    [0x00] = 'u', [0x01] = 'u', [0x02] = 'u', [0x03] = 'u', [0x04] = 'u',
    [0x05] = 'u', [0x06] = 'u', [0x07] = 'u', [0x08] = 'b', [0x09] = 't',
    [0x0a] = 'n', [0x0b] = 'u', [0x0c] = 'f', [0x0d] = 'r', [0x0e] = 'u',
    [0x0f] = 'u', [0x10] = 'u', [0x11] = 'u', [0x12] = 'u', [0x13] = 'u',
    [0x14] = 'u', [0x15] = 'u', [0x16] = 'u', [0x17] = 'u', [0x18] = 'u',
    [0x19] = 'u', [0x1a] = 'u', [0x1b] = 'u', [0x1c] = 'u', [0x1d] = 'u',
    [0x1e] = 'u', [0x1f] = 'u', ['"'] = '"', ['\\'] = '\\',
};

void proto__json_str(proto_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;

    proto__buf_byte(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e = json_esc[c];
        if (!e)
            continue;
        /* Copy the plain run before this byte in one go. */
        proto_buf_append(b, s + run, i - run);
        run = i + 1;
        if (e == 'u') {
            char u[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
            proto_buf_append(b, u, sizeof(u));
        } else {
            char two[2] = { '\\', e };
            proto_buf_append(b, two, sizeof(two));
        }
    }
    /* s is NULL for msgpack-c's empty strings: no arithmetic on it then. */
    if (run < n)
        proto_buf_append(b, s + run, n - run);
    proto__buf_byte(b, '"');
}

void proto__json_double(proto_buf *b, double v, int single)
{
    static const int dprec[] = { 15, 16, 17 };
    static const int fprec[] = { 6, 7, 8, 9 };
    const int *prec = single ? fprec : dprec;
    size_t nprec = single ? 4 : 3;
    char tmp[48];
    int n = 0;

    for (size_t k = 0; k < nprec; k++) {
        n = snprintf(tmp, sizeof(tmp), "%.*g", prec[k], v);
        if (single ? strtof(tmp, NULL) == (float)v : strtod(tmp, NULL) == v)
            break;
    }
    /* A locale with a decimal comma must not leak into JSON. */
    int has_frac = 0;
    for (int i = 0; i < n; i++) {
        if (tmp[i] == ',')
            tmp[i] = '.';
        if (tmp[i] == '.' || tmp[i] == 'e')
            has_frac = 1;
    }
    proto_buf_append(b, tmp, (size_t)n);
    /* Keep reals recognisable as reals, so JSON -> msgpack gives a float
     * back instead of an int. */
    if (!has_frac)
        proto__buf_lit(b, ".0");
}

int proto__utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;

    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint32_t cp, min;
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1; cp = c & 0x1f; min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2; cp = c & 0x0f; min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3; cp = c & 0x07; min = 0x10000;
        } else {
            return 0;   /* continuation byte, 0xc0/0xc1 or 0xf5.. */
        }
        if (n - i - 1 < need)
            return 0;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += need + 1;
    }
    return 1;
}

void proto__base64(proto_buf *b, const unsigned char *p, size_t n)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = proto__buf_reserve(b, (n + 2) / 3 * 4);
    size_t i = 0, w = 0;

    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        o[w++] = tab[v >> 18];
        o[w++] = tab[(v >> 12) & 63];
        o[w++] = tab[(v >> 6) & 63];
        o[w++] = tab[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        o[w++] = tab[v >> 18];
        o[w++] = tab[(v >> 12) & 63];
        o[w++] = '=';
        o[w++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        o[w++] = tab[v >> 18];
        o[w++] = tab[(v >> 12) & 63];
        o[w++] = tab[(v >> 6) & 63];
        o[w++] = '=';
    }
    b->len += w;
}

json_t *proto__json_loadb(const char *s, size_t n, size_t flags,
                          json_error_t *je)
{
    /* A raw NUL is never JSON: outside strings it is not a token and inside
     * them control characters must be escaped. jansson refuses it only
     * inside strings. */
    const char *nul = memchr(s, '\0', n);
    if (nul) {
        if (je) {
            memset(je, 0, sizeof(*je));
            je->line = 1;
            je->column = (int)(nul - s) + 1;
            je->position = (int)(nul - s);
            snprintf(je->text, sizeof(je->text), "NUL byte in JSON text");
        }
        return NULL;
    }
    return json_loadb(s, n, flags, je);
}

/* --- Building the owned block -------------------------------------------- */

/* Both encodings live in one allocation: JSON text, a NUL (so the JSON can
 * be used as a C string), then the msgpack bytes. The buffer is shrunk to
 * fit because publications may sit in history for a long time. */
static void data_finish(proto_buf *b, size_t json_len, proto_data *d,
                        void **owned, int binary)
{
    size_t mp_off = json_len + 1;
    size_t mp_len = b->len - mp_off;

    b->base = proto__realloc(b->base, b->len);
    d->json.ptr = b->base;
    d->json.len = json_len;
    d->mp.ptr = b->base + mp_off;
    d->mp.len = mp_len;
    d->binary = binary;
    *owned = b->base;
}

static void data_clear(proto_data *d, void **owned)
{
    memset(d, 0, sizeof(*d));
    if (owned)
        *owned = NULL;
}

/* --- JSON -> msgpack ----------------------------------------------------- */

static int json_to_mp(msgpack_packer *pk, const json_t *v, int depth)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        size_t klen;
        json_t *m;
        if (depth >= PROTO_DATA_DEPTH_MAX)
            return -1;
        msgpack_pack_map(pk, json_object_size(v));
        /* jansson keeps object members in source order. */
        json_object_keylen_foreach((json_t *)v, key, klen, m) {
            msgpack_pack_str_with_body(pk, key, klen);
            if (json_to_mp(pk, m, depth + 1) < 0)
                return -1;
        }
        return 0;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        if (depth >= PROTO_DATA_DEPTH_MAX)
            return -1;
        msgpack_pack_array(pk, n);
        for (size_t i = 0; i < n; i++)
            if (json_to_mp(pk, json_array_get(v, i), depth + 1) < 0)
                return -1;
        return 0;
    }
    case JSON_STRING:
        msgpack_pack_str_with_body(pk, json_string_value(v),
                                   json_string_length(v));
        return 0;
    case JSON_INTEGER:
        msgpack_pack_int64(pk, (int64_t)json_integer_value(v));
        return 0;
    case JSON_REAL:
        msgpack_pack_double(pk, json_real_value(v));
        return 0;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        return 0;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        return 0;
    case JSON_NULL:
        msgpack_pack_nil(pk);
        return 0;
    }
    return -1;
}

/* Copies the publisher's JSON text without CR and LF bytes. In valid JSON
 * they can only be insignificant whitespace (inside strings they must be
 * escaped), and a raw '\n' inside a push would split it in two for a
 * client that reads '\n'-batched frames. */
static void append_without_newlines(proto_buf *b, const char *s, size_t n)
{
    size_t run = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n' || s[i] == '\r') {
            proto_buf_append(b, s + run, i - run);
            run = i + 1;
        }
    }
    proto_buf_append(b, s + run, n - run);
}

int proto__data_from_json_value(const char *raw, size_t rawlen,
                                const json_t *v, proto_data *d, void **owned,
                                uint32_t id, proto_error *err)
{
    proto_buf b;
    msgpack_packer pk;
    size_t json_len;

    proto_buf_init(&b, 0);
    proto__buf_reserve(&b, rawlen * 2 + 16);
    append_without_newlines(&b, raw, rawlen);
    json_len = b.len;
    proto__buf_byte(&b, '\0');
    msgpack_packer_init(&pk, &b, proto__mp_write);
    if (json_to_mp(&pk, v, 0) < 0) {
        proto_buf_free(&b);
        data_clear(d, owned);
        proto__err(err, id, PROTO_E_BAD_REQUEST,
                   "data nested deeper than %d levels", PROTO_DATA_DEPTH_MAX);
        return PROTO_E_BAD_REQUEST;
    }
    data_finish(&b, json_len, d, owned, 0);
    return PROTO_OK;
}

static int is_json_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int proto_data_from_json(const void *json, size_t len, proto_data *d,
                         void **owned, proto_error *err)
{
    const char *s = json;
    json_error_t je;
    json_t *v;
    int rc;

    if (!s && len)
        len = 0;
    v = proto__json_loadb(s ? s : "", len,
                          JSON_DECODE_ANY | JSON_REJECT_DUPLICATES |
                              JSON_ALLOW_NUL,
                          &je);
    if (!v) {
        data_clear(d, owned);
        proto__err(err, 0, PROTO_E_BAD_REQUEST, "invalid JSON data: %s",
                   je.text);
        return PROTO_E_BAD_REQUEST;
    }
    /* Surrounding whitespace is not part of the value. */
    while (len && is_json_ws(s[0])) {
        s++;
        len--;
    }
    while (len && is_json_ws(s[len - 1]))
        len--;
    rc = proto__data_from_json_value(s, len, v, d, owned, 0, err);
    json_decref(v);
    return rc;
}

/* --- msgpack -> JSON ----------------------------------------------------- */

/* Writes o as JSON. On failure returns -1 and points *why at the reason. */
static int mp_to_json(proto_buf *b, const msgpack_object *o, int depth,
                      const char **why)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        proto__buf_lit(b, "null");
        return 0;
    case MSGPACK_OBJECT_BOOLEAN:
        if (o->via.boolean)
            proto__buf_lit(b, "true");
        else
            proto__buf_lit(b, "false");
        return 0;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        proto__buf_u64(b, o->via.u64);
        return 0;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        proto__buf_i64(b, o->via.i64);
        return 0;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (!isfinite(o->via.f64)) {
            *why = "NaN and Infinity have no JSON form";
            return -1;
        }
        proto__json_double(b, o->via.f64, o->type == MSGPACK_OBJECT_FLOAT32);
        return 0;
    case MSGPACK_OBJECT_STR:
        if (!proto__utf8_valid(o->via.str.ptr, o->via.str.size)) {
            *why = "str is not valid UTF-8";
            return -1;
        }
        proto__json_str(b, o->via.str.ptr, o->via.str.size);
        return 0;
    case MSGPACK_OBJECT_BIN:
        proto__buf_byte(b, '"');
        proto__base64(b, (const unsigned char *)o->via.bin.ptr,
                      o->via.bin.size);
        proto__buf_byte(b, '"');
        return 0;
    case MSGPACK_OBJECT_ARRAY:
        if (depth >= PROTO_DATA_DEPTH_MAX) {
            *why = "data nested too deep";
            return -1;
        }
        proto__buf_byte(b, '[');
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i)
                proto__buf_byte(b, ',');
            if (mp_to_json(b, &o->via.array.ptr[i], depth + 1, why) < 0)
                return -1;
        }
        proto__buf_byte(b, ']');
        return 0;
    case MSGPACK_OBJECT_MAP:
        if (depth >= PROTO_DATA_DEPTH_MAX) {
            *why = "data nested too deep";
            return -1;
        }
        if ((*why = proto__mp_keys_bad(&o->via.map)) != NULL)
            return -1;
        /* jansson, and so a JSON publisher, cannot have NUL in a key;
         * keep what msgpack publishers may send the same. */
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_str *k = &o->via.map.ptr[i].key.via.str;
            if (k->size && memchr(k->ptr, '\0', k->size)) {
                *why = "map key contains NUL";
                return -1;
            }
        }
        proto__buf_byte(b, '{');
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            if (i)
                proto__buf_byte(b, ',');
            if (mp_to_json(b, &o->via.map.ptr[i].key, depth + 1, why) < 0)
                return -1;
            proto__buf_byte(b, ':');
            if (mp_to_json(b, &o->via.map.ptr[i].val, depth + 1, why) < 0)
                return -1;
        }
        proto__buf_byte(b, '}');
        return 0;
    case MSGPACK_OBJECT_EXT:
        *why = "ext types have no JSON form";
        return -1;
    }
    *why = "unknown msgpack type";
    return -1;
}

int proto__data_from_mp_object(const msgpack_object *o, proto_data *d,
                               void **owned, uint32_t id, proto_error *err)
{
    proto_buf b;
    msgpack_packer pk;
    const char *why = NULL;
    size_t json_len;

    proto_buf_init(&b, 0);
    if (mp_to_json(&b, o, 0, &why) < 0) {
        proto_buf_free(&b);
        data_clear(d, owned);
        proto__err(err, id, PROTO_E_BAD_REQUEST, "data: %s", why);
        return PROTO_E_BAD_REQUEST;
    }
    json_len = b.len;
    proto__buf_byte(&b, '\0');
    msgpack_packer_init(&pk, &b, proto__mp_write);
    msgpack_pack_object(&pk, *o);
    data_finish(&b, json_len, d, owned, o->type == MSGPACK_OBJECT_BIN);
    return PROTO_OK;
}

int proto_data_from_msgpack(const void *mp, size_t len, proto_data *d,
                            void **owned, proto_error *err)
{
    msgpack_unpacked u;
    size_t objlen = 0, off = 0;
    int rc;

    if (!mp)
        len = 0;
    rc = proto__mp_scan(mp, len, &objlen);
    if (rc != PROTO__MP_OK || objlen != len) {
        data_clear(d, owned);
        proto__err(err, 0, PROTO_E_BAD_REQUEST, "invalid msgpack data: %s",
                   rc != PROTO__MP_OK ? proto__mp_scan_text(rc)
                                      : "bytes after the object");
        return PROTO_E_BAD_REQUEST;
    }
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, mp, len, &off) != MSGPACK_UNPACK_SUCCESS) {
        msgpack_unpacked_destroy(&u);
        data_clear(d, owned);
        proto__err(err, 0, PROTO_E_BAD_REQUEST, "invalid msgpack data");
        return PROTO_E_BAD_REQUEST;
    }
    rc = proto__data_from_mp_object(&u.data, d, owned, 0, err);
    msgpack_unpacked_destroy(&u);
    return rc;
}
