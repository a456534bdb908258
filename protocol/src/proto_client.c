/*
 * Decoding of server messages for clients (herald/proto_client.h). Both
 * encodings are read through one small encoding-neutral layer: a value is a
 * byte span of the frame, maps and arrays are walked with iterators, and
 * scalars are decoded from their span. JSON is validated by a strict
 * bounded scanner (no jansson: it cannot hold the uint64 integers a msgpack
 * publisher may put in data, and it cannot give the raw bytes of `data`);
 * msgpack objects are framed with proto__mp_scan() before any byte of them
 * is trusted. Nothing is copied except JSON strings that contain escapes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "herald/proto_client.h"
#include "proto_internal.h"

/* JSON containers nest at most this deep in a server message (data may
 * nest PROTO_DATA_DEPTH_MAX levels inside a history reply, 4 down). */
#define JS_DEPTH_MAX 64

/* --- Unescaped-string memory --------------------------------------------- */

typedef struct chunk {
    struct chunk *next;
    char bytes[];
} chunk;

static void chunks_free(proto_sreader *r)
{
    chunk *c = r->_chunks;
    while (c) {
        chunk *next = c->next;
        free(c);
        c = next;
    }
    r->_chunks = NULL;
}

static char *chunk_alloc(proto_sreader *r, size_t n)
{
    chunk *c = proto__malloc(sizeof(*c) + n + 1);
    c->next = r->_chunks;
    r->_chunks = c;
    return c->bytes;
}

/* --- JSON scanning -------------------------------------------------------- */

static int js_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Whether none of the 8 bytes at p is '"', '\\' or a control character
 * (below 0x20): the bytes a string scan can step over. Word-at-a-time
 * test of "some byte is zero / below a bound" (valid for bounds <= 0x80;
 * bytes >= 0x80 never match). */
static int js_plain8(const char *p)
{
    const uint64_t ones = 0x0101010101010101ull;
    const uint64_t high = 0x8080808080808080ull;
    uint64_t x, q, b, t;
    memcpy(&x, p, 8);
    q = x ^ (ones * '"');
    b = x ^ (ones * '\\');
    t = ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b);
    return (t & high) == 0;
}

/* s[*i] is '"'. Validates the string and moves past it; *esc tells whether
 * it contains escapes. */
static int js_string(const char *s, size_t n, size_t *i, int *esc)
{
    size_t k = *i + 1;
    *esc = 0;
    while (k < n) {
        while (n - k >= 8 && js_plain8(s + k))
            k += 8;
        if (k >= n)
            break;
        unsigned char c = (unsigned char)s[k];
        if (c == '"') {
            *i = k + 1;
            return 0;
        }
        if (c < 0x20)
            return -1;
        if (c == '\\') {
            *esc = 1;
            if (k + 1 >= n)
                return -1;
            switch (s[k + 1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n':
            case 'r': case 't':
                k += 2;
                break;
            case 'u':
                if (n - k < 6)
                    return -1;
                for (int h = 2; h < 6; h++)
                    if (js_hex(s[k + (size_t)h]) < 0)
                        return -1;
                k += 6;
                break;
            default:
                return -1;
            }
            continue;
        }
        k++;
    }
    return -1;
}

static int js_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int js_number(const char *s, size_t n, size_t *i)
{
    size_t k = *i;
    if (k < n && s[k] == '-')
        k++;
    if (k >= n || !js_digit(s[k]))
        return -1;
    if (s[k] == '0')
        k++;
    else
        while (k < n && js_digit(s[k]))
            k++;
    if (k < n && s[k] == '.') {
        k++;
        if (k >= n || !js_digit(s[k]))
            return -1;
        while (k < n && js_digit(s[k]))
            k++;
    }
    if (k < n && (s[k] == 'e' || s[k] == 'E')) {
        k++;
        if (k < n && (s[k] == '+' || s[k] == '-'))
            k++;
        if (k >= n || !js_digit(s[k]))
            return -1;
        while (k < n && js_digit(s[k]))
            k++;
    }
    *i = k;
    return 0;
}

/* Validates the value at s[*i] (no leading whitespace) and moves past it. */
static int js_value(const char *s, size_t n, size_t *i, int depth)
{
    size_t k = *i;
    int esc;

    if (k >= n)
        return -1;
    switch (s[k]) {
    case '"':
        return js_string(s, n, i, &esc);
    case '{':
    case '[': {
        char close = s[k] == '{' ? '}' : ']';
        int obj = s[k] == '{';
        if (depth >= JS_DEPTH_MAX)
            return -1;
        k = proto__json_skip_ws(s, n, k + 1);
        if (k < n && s[k] == close) {
            *i = k + 1;
            return 0;
        }
        for (;;) {
            if (obj) {
                if (k >= n || s[k] != '"' || js_string(s, n, &k, &esc) < 0)
                    return -1;
                k = proto__json_skip_ws(s, n, k);
                if (k >= n || s[k] != ':')
                    return -1;
                k = proto__json_skip_ws(s, n, k + 1);
            }
            if (js_value(s, n, &k, depth + 1) < 0)
                return -1;
            k = proto__json_skip_ws(s, n, k);
            if (k < n && s[k] == ',') {
                k = proto__json_skip_ws(s, n, k + 1);
                continue;
            }
            if (k < n && s[k] == close) {
                *i = k + 1;
                return 0;
            }
            return -1;
        }
    }
    case 't':
        if (n - k >= 4 && !memcmp(s + k, "true", 4)) {
            *i = k + 4;
            return 0;
        }
        return -1;
    case 'f':
        if (n - k >= 5 && !memcmp(s + k, "false", 5)) {
            *i = k + 5;
            return 0;
        }
        return -1;
    case 'n':
        if (n - k >= 4 && !memcmp(s + k, "null", 4)) {
            *i = k + 4;
            return 0;
        }
        return -1;
    default:
        return js_number(s, n, i);
    }
}

/* Appends code point cp as UTF-8. */
static size_t utf8_put(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static uint32_t hex4(const char *p)
{
    uint32_t v = 0;
    for (int k = 0; k < 4; k++)
        v = v << 4 | (uint32_t)js_hex(p[k]);
    return v;
}

/* Unescapes the already validated string body s[0..n) into owned memory.
 * The result is never longer than the input (\uXXXX is 6 bytes for at
 * most 3, a surrogate pair 12 for 4). Lone surrogates become U+FFFD. */
static proto_slice js_unescape(proto_sreader *r, const char *s, size_t n)
{
    char *o = chunk_alloc(r, n), *start = o;
    size_t i = 0;
    while (i < n) {
        if (s[i] != '\\') {
            *o++ = s[i++];
            continue;
        }
        char c = s[i + 1];
        i += 2;
        switch (c) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            uint32_t cp = hex4(s + i);
            i += 4;
            if (cp >= 0xd800 && cp <= 0xdbff && n - i >= 6 && s[i] == '\\' &&
                s[i + 1] == 'u') {
                uint32_t lo = hex4(s + i + 2);
                if (lo >= 0xdc00 && lo <= 0xdfff) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    i += 6;
                }
            }
            if (cp >= 0xd800 && cp <= 0xdfff)
                cp = 0xfffd;
            o += utf8_put(o, cp);
            break;
        }
        default: *o++ = c; break;   /* '"', '\\', '/' */
        }
    }
    *o = '\0';
    return (proto_slice){ start, (size_t)(o - start) };
}

/* --- Encoding-neutral values ---------------------------------------------- */

typedef struct val {
    const char *p;
    size_t n;
} val;

/* msgpack type byte helpers. */
static uint64_t mp_be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int k = 0; k < n; k++)
        v = v << 8 | p[k];
    return v;
}

/* Header of a msgpack str/bin at v: payload start and length. Framing was
 * checked by proto__mp_scan, so the lengths fit. */
static int mp_strbin(val v, int want_bin, const char **p, size_t *len)
{
    const unsigned char *s = (const unsigned char *)v.p;
    unsigned char c;
    int lb;
    if (v.n == 0)
        return -1;
    c = s[0];
    if (!want_bin && c >= 0xa0 && c <= 0xbf) {
        *p = v.p + 1;
        *len = c & 0x1f;
        return 0;
    }
    if (!want_bin && c == 0xd9) lb = 1;
    else if (!want_bin && c == 0xda) lb = 2;
    else if (!want_bin && c == 0xdb) lb = 4;
    else if (want_bin && c == 0xc4) lb = 1;
    else if (want_bin && c == 0xc5) lb = 2;
    else if (want_bin && c == 0xc6) lb = 4;
    else return -1;
    *len = (size_t)mp_be(s + 1, lb);
    *p = v.p + 1 + lb;
    return 0;
}

static int v_str(proto_sreader *r, val v, proto_slice *out)
{
    if (r->enc == PROTO_MSGPACK) {
        const char *p;
        size_t len;
        if (mp_strbin(v, 0, &p, &len) < 0)
            return -1;
        out->ptr = p;
        out->len = len;
        return 0;
    }
    if (v.n < 2 || v.p[0] != '"')
        return -1;
    if (memchr(v.p + 1, '\\', v.n - 2))
        *out = js_unescape(r, v.p + 1, v.n - 2);
    else {
        out->ptr = v.p + 1;
        out->len = v.n - 2;
    }
    return 0;
}

/* Integers: *neg set for negative values (then *u holds -value). */
static int v_int(proto_sreader *r, val v, uint64_t *u, int *neg)
{
    *neg = 0;
    if (r->enc == PROTO_MSGPACK) {
        const unsigned char *s = (const unsigned char *)v.p;
        unsigned char c = s[0];
        int64_t i;
        if (c <= 0x7f) { *u = c; return 0; }
        if (c >= 0xe0) { *neg = 1; *u = (uint64_t)(256 - c); return 0; }
        switch (c) {
        case 0xcc: *u = mp_be(s + 1, 1); return 0;
        case 0xcd: *u = mp_be(s + 1, 2); return 0;
        case 0xce: *u = mp_be(s + 1, 4); return 0;
        case 0xcf: *u = mp_be(s + 1, 8); return 0;
        case 0xd0: i = (int8_t)mp_be(s + 1, 1); break;
        case 0xd1: i = (int16_t)mp_be(s + 1, 2); break;
        case 0xd2: i = (int32_t)mp_be(s + 1, 4); break;
        case 0xd3: i = (int64_t)mp_be(s + 1, 8); break;
        default: return -1;
        }
        if (i < 0) {
            *neg = 1;
            *u = (uint64_t)0 - (uint64_t)i;
        } else {
            *u = (uint64_t)i;
        }
        return 0;
    }
    size_t k = 0;
    uint64_t acc = 0;
    if (v.n && v.p[0] == '-') {
        *neg = 1;
        k = 1;
    }
    if (k >= v.n)
        return -1;
    for (; k < v.n; k++) {
        if (!js_digit(v.p[k]))
            return -1;   /* fraction or exponent: not an integer */
        unsigned d = (unsigned)(v.p[k] - '0');
        if (acc > (UINT64_MAX - d) / 10)
            return -1;
        acc = acc * 10 + d;
    }
    *u = acc;
    return 0;
}

static int v_u64(proto_sreader *r, val v, uint64_t *out)
{
    int neg;
    return v_int(r, v, out, &neg) < 0 || neg ? -1 : 0;
}

static int v_i64(proto_sreader *r, val v, int64_t *out)
{
    uint64_t u;
    int neg;
    if (v_int(r, v, &u, &neg) < 0)
        return -1;
    if (neg) {
        if (u > (uint64_t)INT64_MAX + 1)
            return -1;
        *out = u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u;
    } else {
        if (u > INT64_MAX)
            return -1;
        *out = (int64_t)u;
    }
    return 0;
}

static int v_bool(proto_sreader *r, val v, int *out)
{
    if (r->enc == PROTO_MSGPACK) {
        unsigned char c = (unsigned char)v.p[0];
        if (c != 0xc2 && c != 0xc3)
            return -1;
        *out = c == 0xc3;
        return 0;
    }
    if (v.n == 4 && !memcmp(v.p, "true", 4)) { *out = 1; return 0; }
    if (v.n == 5 && !memcmp(v.p, "false", 5)) { *out = 0; return 0; }
    return -1;
}

static int v_null(proto_sreader *r, val v)
{
    if (r->enc == PROTO_MSGPACK)
        return v.n == 1 && (unsigned char)v.p[0] == 0xc0;
    return v.n == 4 && !memcmp(v.p, "null", 4);
}

/* Container iteration. For JSON, `pos` is the index after '{'/'[' or after
 * the previous element; for msgpack, after the header or previous element.
 * Container types: 1 map, 2 array. */
enum { IT_MAP = 1, IT_ARRAY = 2 };

static long it_begin(proto_siter *it, proto_sreader *r, val v, int kind)
{
    memset(it, 0, sizeof(*it));
    it->r = r;
    it->p = v.p;
    it->n = v.n;
    it->kind = kind;
    if (v.n == 0)
        return -1;
    if (r->enc == PROTO_MSGPACK) {
        const unsigned char *s = (const unsigned char *)v.p;
        unsigned char c = s[0];
        if (kind == IT_MAP && c >= 0x80 && c <= 0x8f) {
            it->left = c & 0x0f;
            it->pos = 1;
        } else if (kind == IT_ARRAY && c >= 0x90 && c <= 0x9f) {
            it->left = c & 0x0f;
            it->pos = 1;
        } else if ((kind == IT_MAP && c == 0xde) ||
                   (kind == IT_ARRAY && c == 0xdc)) {
            it->left = mp_be(s + 1, 2);
            it->pos = 3;
        } else if ((kind == IT_MAP && c == 0xdf) ||
                   (kind == IT_ARRAY && c == 0xdd)) {
            it->left = mp_be(s + 1, 4);
            it->pos = 5;
        } else {
            return -1;
        }
        return (long)it->left;
    }
    if (v.p[0] != (kind == IT_MAP ? '{' : '['))
        return -1;
    it->pos = 1;
    /* Count the elements: the value was validated, so a shallow scan that
     * counts top-level commas is exact. */
    {
        size_t k = proto__json_skip_ws(v.p, v.n, 1);
        long count = 0;
        if (v.p[k] == (kind == IT_MAP ? '}' : ']'))
            return 0;
        while (k < v.n) {
            if (kind == IT_MAP) {
                int esc;
                if (js_string(v.p, v.n, &k, &esc) < 0)
                    return -1;
                k = proto__json_skip_ws(v.p, v.n, k) + 1;
                k = proto__json_skip_ws(v.p, v.n, k);
            }
            if (js_value(v.p, v.n, &k, 1) < 0)
                return -1;
            count++;
            k = proto__json_skip_ws(v.p, v.n, k);
            if (k >= v.n || v.p[k] != ',')
                break;
            k = proto__json_skip_ws(v.p, v.n, k + 1);
        }
        return count;
    }
}

/* Next element: for maps *key is the key's raw string value and *v the
 * value; for arrays only *v. Returns 1, 0 at the end, -1 malformed. */
static int it_next(proto_siter *it, val *key, val *v)
{
    const char *s = it->p;
    size_t n = it->n;
    if (it->r->enc == PROTO_MSGPACK) {
        size_t len;
        if (it->left == 0)
            return 0;
        if (it->kind == IT_MAP) {
            if (proto__mp_scan(s + it->pos, n - it->pos, &len) != PROTO__MP_OK)
                return -1;
            key->p = s + it->pos;
            key->n = len;
            it->pos += len;
        }
        if (proto__mp_scan(s + it->pos, n - it->pos, &len) != PROTO__MP_OK)
            return -1;
        v->p = s + it->pos;
        v->n = len;
        it->pos += len;
        it->left--;
        return 1;
    }
    size_t k = proto__json_skip_ws(s, n, it->pos);
    char close = it->kind == IT_MAP ? '}' : ']';
    if (k >= n)
        return -1;
    if (s[k] == close)
        return 0;
    if (s[k] == ',')
        k = proto__json_skip_ws(s, n, k + 1);
    if (it->kind == IT_MAP) {
        int esc;
        size_t ks = k;
        if (k >= n || s[k] != '"' || js_string(s, n, &k, &esc) < 0)
            return -1;
        key->p = s + ks;
        key->n = k - ks;
        k = proto__json_skip_ws(s, n, k);
        if (k >= n || s[k] != ':')
            return -1;
        k = proto__json_skip_ws(s, n, k + 1);
    }
    size_t vs = k;
    if (js_value(s, n, &k, 1) < 0)
        return -1;
    v->p = s + vs;
    v->n = k - vs;
    it->pos = k;
    return 1;
}

/* Whether a map key (raw value span) is the string `want`. Keys written
 * by Herald are plain ASCII; an escaped key is unescaped first. */
static int key_is(proto_sreader *r, val key, const char *want)
{
    proto_slice k;
    size_t wl = strlen(want);
    if (r->enc == PROTO_JSON && key.n >= 2 &&
        !memchr(key.p + 1, '\\', key.n - 2))
        return key.n - 2 == wl && !memcmp(key.p + 1, want, wl);
    if (v_str(r, key, &k) < 0)
        return 0;
    return k.len == wl && !memcmp(k.ptr, want, wl);
}

/* --- Messages ------------------------------------------------------------- */

static int fail(proto_error *err, const char *what)
{
    proto__err(err, 0, PROTO_E_BAD_REQUEST, "%s", what);
    return -1;
}

static int client_info(proto_sreader *r, val v, proto_client_info *ci,
                       proto_error *err)
{
    proto_siter it;
    val k, x;
    int rc;
    if (it_begin(&it, r, v, IT_MAP) < 0)
        return fail(err, "info must be a map");
    while ((rc = it_next(&it, &k, &x)) == 1) {
        if (v_null(r, x))
            continue;
        if (key_is(r, k, "client")) {
            if (v_str(r, x, &ci->client) < 0)
                return fail(err, "info.client must be a string");
        } else if (key_is(r, k, "user")) {
            if (v_str(r, x, &ci->user) < 0)
                return fail(err, "info.user must be a string");
        }
    }
    return rc < 0 ? fail(err, "malformed info") : 0;
}

/* Reads the publication fields that appear in the map `v` (a pub push, or
 * an element of `publications`). `kind`, when not NULL, receives the push
 * kind, and `dm` the disconnect fields. */
typedef struct pub_extra {
    int has_push;
    proto_slice push;
    int has_code, has_reconnect;
    int64_t code;
    proto_slice reason;
    int reconnect;
    int has_data, has_offset, has_channel, has_epoch;
    int has_id, has_ok, has_error;
    uint64_t id;
    val ok, error;
} pub_extra;

static int read_fields(proto_sreader *r, val v, proto_spub *p, pub_extra *x,
                       proto_error *err)
{
    proto_siter it;
    val k, f;
    int rc;
    memset(p, 0, sizeof(*p));
    memset(x, 0, sizeof(*x));
    if (it_begin(&it, r, v, IT_MAP) < 0)
        return fail(err, "message must be a map");
    while ((rc = it_next(&it, &k, &f)) == 1) {
        if (key_is(r, k, "channel")) {
            if (v_str(r, f, &p->channel) < 0)
                return fail(err, "channel must be a string");
            x->has_channel = 1;
        } else if (key_is(r, k, "offset")) {
            if (v_u64(r, f, &p->offset) < 0)
                return fail(err, "offset must be a non-negative integer");
            x->has_offset = 1;
        } else if (key_is(r, k, "epoch")) {
            if (v_str(r, f, &p->epoch) < 0)
                return fail(err, "epoch must be a string");
            x->has_epoch = 1;
        } else if (key_is(r, k, "data")) {
            p->data.ptr = f.p;
            p->data.len = f.n;
            x->has_data = 1;
        } else if (key_is(r, k, "binary")) {
            if (v_bool(r, f, &p->binary) < 0)
                return fail(err, "binary must be a boolean");
        } else if (key_is(r, k, "info")) {
            if (v_null(r, f))
                continue;
            if (client_info(r, f, &p->info, err) < 0)
                return -1;
            p->has_info = 1;
        } else if (key_is(r, k, "time")) {
            if (!v_null(r, f) && v_i64(r, f, &p->time_ms) < 0)
                return fail(err, "time must be an integer");
        } else if (key_is(r, k, "push")) {
            if (v_str(r, f, &x->push) < 0)
                return fail(err, "push must be a string");
            x->has_push = 1;
        } else if (key_is(r, k, "code")) {
            if (v_i64(r, f, &x->code) < 0)
                return fail(err, "code must be an integer");
            x->has_code = 1;
        } else if (key_is(r, k, "reason")) {
            if (!v_null(r, f) && v_str(r, f, &x->reason) < 0)
                return fail(err, "reason must be a string");
        } else if (key_is(r, k, "reconnect")) {
            if (v_bool(r, f, &x->reconnect) < 0)
                return fail(err, "reconnect must be a boolean");
            x->has_reconnect = 1;
        } else if (key_is(r, k, "id")) {
            if (v_u64(r, f, &x->id) < 0 || x->id == 0 || x->id > UINT32_MAX)
                return fail(err, "id must be an integer in 1..2^32-1");
            x->has_id = 1;
        } else if (key_is(r, k, "ok")) {
            x->ok = f;
            x->has_ok = 1;
        } else if (key_is(r, k, "error")) {
            x->error = f;
            x->has_error = 1;
        }
    }
    return rc < 0 ? fail(err, "malformed map") : 0;
}

static int read_error(proto_sreader *r, val v, proto_smsg *m,
                      proto_error *err)
{
    proto_siter it;
    val k, f;
    int rc, has_code = 0;
    int64_t code;
    if (it_begin(&it, r, v, IT_MAP) < 0)
        return fail(err, "error must be a map");
    while ((rc = it_next(&it, &k, &f)) == 1) {
        if (key_is(r, k, "code")) {
            if (v_i64(r, f, &code) < 0 || code < INT32_MIN || code > INT32_MAX)
                return fail(err, "error.code must be an integer");
            m->code = (int)code;
            has_code = 1;
        } else if (key_is(r, k, "message")) {
            if (!v_null(r, f) && v_str(r, f, &m->message) < 0)
                return fail(err, "error.message must be a string");
        }
    }
    if (rc < 0)
        return fail(err, "malformed error");
    return has_code ? 0 : fail(err, "error without code");
}

static int read_ok(proto_sreader *r, val v, proto_smsg *m, proto_error *err)
{
    proto_siter it;
    val k, f;
    int rc;
    uint64_t u;
    if (it_begin(&it, r, v, IT_MAP) < 0)
        return fail(err, "ok must be a map");
    while ((rc = it_next(&it, &k, &f)) == 1) {
        if (v_null(r, f))
            continue;
        if (key_is(r, k, "client")) {
            if (v_str(r, f, &m->client) < 0)
                return fail(err, "client must be a string");
        } else if (key_is(r, k, "node")) {
            if (v_str(r, f, &m->node) < 0)
                return fail(err, "node must be a string");
        } else if (key_is(r, k, "ping")) {
            if (v_u64(r, f, &u) < 0 || u > UINT32_MAX)
                return fail(err, "ping must be an integer");
            m->ping = (uint32_t)u;
        } else if (key_is(r, k, "expires")) {
            if (v_i64(r, f, &m->expires) < 0)
                return fail(err, "expires must be an integer");
        } else if (key_is(r, k, "offset")) {
            if (v_u64(r, f, &m->offset) < 0)
                return fail(err, "offset must be a non-negative integer");
            m->has_offset = 1;
        } else if (key_is(r, k, "epoch")) {
            if (v_str(r, f, &m->epoch) < 0)
                return fail(err, "epoch must be a string");
            m->has_epoch = 1;
        } else if (key_is(r, k, "recovered")) {
            if (v_bool(r, f, &m->recovered) < 0)
                return fail(err, "recovered must be a boolean");
        } else if (key_is(r, k, "publications")) {
            proto_siter a;
            if (it_begin(&a, r, f, IT_ARRAY) < 0)
                return fail(err, "publications must be an array");
            m->pubs.ptr = f.p;
            m->pubs.len = f.n;
            m->has_pubs = 1;
        } else if (key_is(r, k, "clients")) {
            if (r->enc == PROTO_MSGPACK
                    ? ((unsigned char)f.p[0] & 0xf0) != 0x80 &&
                      (unsigned char)f.p[0] != 0xde &&
                      (unsigned char)f.p[0] != 0xdf
                    : f.p[0] != '{')
                return fail(err, "clients must be a map");
            m->clients.ptr = f.p;
            m->clients.len = f.n;
            m->has_clients = 1;
        }
    }
    return rc < 0 ? fail(err, "malformed ok") : 0;
}

static int decode_message(proto_sreader *r, val v, proto_smsg *m,
                          proto_error *err)
{
    pub_extra x;
    proto_spub p;
    if (read_fields(r, v, &p, &x, err) < 0)
        return -1;
    if (x.has_push) {
        m->push = x.push;
        if (x.push.len == 3 && !memcmp(x.push.ptr, "pub", 3)) {
            if (!x.has_channel || !x.has_offset || !x.has_epoch || !x.has_data)
                return fail(err, "pub without channel, offset, epoch or data");
            m->kind = PROTO_SMSG_PUB;
            m->pub = p;
        } else if ((x.push.len == 4 && !memcmp(x.push.ptr, "join", 4)) ||
                   (x.push.len == 5 && !memcmp(x.push.ptr, "leave", 5))) {
            if (!x.has_channel)
                return fail(err, "join/leave without channel");
            m->kind = x.push.len == 4 ? PROTO_SMSG_JOIN : PROTO_SMSG_LEAVE;
            m->pub.channel = p.channel;
            m->pub.has_info = p.has_info;
            m->pub.info = p.info;
        } else if (x.push.len == 10 && !memcmp(x.push.ptr, "disconnect", 10)) {
            if (!x.has_code || x.code < 0 || x.code > 65535)
                return fail(err, "disconnect without code");
            m->kind = PROTO_SMSG_DISCONNECT;
            m->code = (int)x.code;
            m->message = x.reason;
            m->reconnect = x.has_reconnect ? x.reconnect : 1;
        } else if (x.push.len == 11 && !memcmp(x.push.ptr, "unsubscribe", 11)) {
            if (!x.has_channel || !x.has_code || x.code < 0 || x.code > 65535)
                return fail(err, "unsubscribe without channel or code");
            m->kind = PROTO_SMSG_UNSUBSCRIBE;
            m->code = (int)x.code;
            m->message = x.reason;
            m->pub.channel = p.channel;
        } else {
            m->kind = PROTO_SMSG_OTHER;
        }
        return 0;
    }
    m->id = (uint32_t)x.id;
    if (x.has_error) {
        m->kind = PROTO_SMSG_ERROR;
        return read_error(r, x.error, m, err);
    }
    if (x.has_ok) {
        if (!x.has_id)
            return fail(err, "ok reply without id");
        m->kind = PROTO_SMSG_OK;
        m->ok.ptr = x.ok.p;
        m->ok.len = x.ok.n;
        return read_ok(r, x.ok, m, err);
    }
    return fail(err, "neither push, ok nor error");
}

void proto_sreader_init(proto_sreader *r, proto_enc enc)
{
    memset(r, 0, sizeof(*r));
    r->enc = enc;
}

void proto_sreader_frame(proto_sreader *r, const void *buf, size_t len)
{
    chunks_free(r);
    r->buf = buf;
    r->len = buf ? len : 0;
    r->pos = 0;
}

void proto_sreader_free(proto_sreader *r)
{
    chunks_free(r);
    r->buf = NULL;
    r->len = r->pos = 0;
}

int proto_snext(proto_sreader *r, proto_smsg *m, proto_error *err)
{
    val v;
    memset(m, 0, sizeof(*m));
    m->recovered = -1;
    if (err) {
        err->id = 0;
        err->code = PROTO_OK;
        err->message[0] = '\0';
    }
    chunks_free(r);
    if (r->pos >= r->len)
        return 0;
    if (r->enc == PROTO_MSGPACK) {
        size_t objlen;
        int rc = proto__mp_scan(r->buf + r->pos, r->len - r->pos, &objlen);
        if (rc != PROTO__MP_OK) {
            r->pos = r->len;
            return fail(err, proto__mp_scan_text(rc));
        }
        v.p = r->buf + r->pos;
        v.n = objlen;
        r->pos += objlen;
    } else {
        const char *line = r->buf + r->pos;
        size_t rest = r->len - r->pos;
        const char *nl = memchr(line, '\n', rest);
        size_t n = nl ? (size_t)(nl - line) : rest, k;
        r->pos += nl ? n + 1 : n;
        if (n && line[n - 1] == '\r')
            n--;
        k = proto__json_skip_ws(line, n, 0);
        v.p = line + k;
        if (js_value(line, n, &k, 0) < 0)
            return fail(err, "invalid JSON");
        v.n = (size_t)(line + k - v.p);
        if (proto__json_skip_ws(line, n, k) != n)
            return fail(err, "trailing bytes after the JSON value");
    }
    m->raw.ptr = v.p;
    m->raw.len = v.n;
    if (decode_message(r, v, m, err) < 0) {
        proto_slice raw = m->raw;
        memset(m, 0, sizeof(*m));
        m->raw = raw;
        m->recovered = -1;
        return -1;
    }
    return 1;
}

long proto_siter_pubs(proto_siter *it, proto_sreader *r, proto_slice array)
{
    return it_begin(it, r, (val){ array.ptr, array.len }, IT_ARRAY);
}

long proto_siter_clients(proto_siter *it, proto_sreader *r, proto_slice map)
{
    return it_begin(it, r, (val){ map.ptr, map.len }, IT_MAP);
}

int proto_siter_next_pub(proto_siter *it, proto_spub *pub, proto_error *err)
{
    val k, v;
    pub_extra x;
    int rc = it_next(it, &k, &v);
    if (rc <= 0)
        return rc < 0 ? fail(err, "malformed publications") : 0;
    if (read_fields(it->r, v, pub, &x, err) < 0)
        return -1;
    if (!x.has_offset || !x.has_data)
        return fail(err, "publication without offset or data");
    return 1;
}

int proto_siter_next_client(proto_siter *it, proto_presence_entry *e,
                            proto_error *err)
{
    val k, v;
    proto_client_info ci;
    int rc = it_next(it, &k, &v);
    if (rc <= 0)
        return rc < 0 ? fail(err, "malformed clients") : 0;
    memset(&ci, 0, sizeof(ci));
    memset(e, 0, sizeof(*e));
    if (v_str(it->r, k, &e->client) < 0)
        return fail(err, "client id must be a string");
    if (!v_null(it->r, v) && client_info(it->r, v, &ci, err) < 0)
        return -1;
    e->user = ci.user;
    return 1;
}

int proto_data_to_json(proto_enc enc, proto_slice data, proto_buf *out,
                       proto_error *err)
{
    proto_data d;
    void *owned = NULL;
    int rc;
    if (enc == PROTO_JSON) {
        proto_buf_append(out, data.ptr, data.len);
        return PROTO_OK;
    }
    rc = proto_data_from_msgpack(data.ptr, data.len, &d, &owned, err);
    if (rc == PROTO_OK)
        proto_buf_append(out, d.json.ptr, d.json.len);
    free(owned);
    return rc;
}
