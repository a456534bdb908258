/*
 * Unit tests of the protocol codec beyond the shared vectors: channel-name
 * syntax byte by byte, namespaces, output buffers, data conversion round
 * trips in both directions, float and base64 text, and hostile input
 * (truncation at every byte, deep nesting, huge numbers and counts, invalid
 * UTF-8, overlong fields) ending in a deterministic fuzz loop of mutated
 * frames that must always yield a command or an error code, never a crash,
 * a hang or a leak (run under -DHERALD_SANITIZE=ON as well).
 */
#define _GNU_SOURCE   /* memmem */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "herald/proto.h"
#include "herald/proto_client.h"

static proto_slice S(const char *s)
{
    proto_slice r = { s, strlen(s) };
    return r;
}

/* Decodes a whole frame; returns the number of results, filling rc/code. */
static int decode_all(proto_enc enc, const void *buf, size_t len, int *rcs,
                      int *codes, int max)
{
    proto_reader r;
    proto_cmd c;
    proto_error e;
    int n = 0, rc;

    proto_reader_init(&r, enc, buf, len);
    while ((rc = proto_next(&r, &c, &e)) != 0) {
        cr_assert(n < max, "too many results");
        rcs[n] = rc;
        codes[n] = rc > 0 ? 0 : e.code;
        n++;
        if (rc > 0)
            proto_cmd_free(&c);
    }
    return n;
}

/* Decodes exactly one command that must fail; returns its error. */
static proto_error decode_err(proto_enc enc, const void *buf, size_t len)
{
    proto_reader r;
    proto_cmd c;
    proto_error e;
    int rc;

    proto_reader_init(&r, enc, buf, len);
    rc = proto_next(&r, &c, &e);
    if (rc > 0)
        proto_cmd_free(&c);
    cr_assert_eq(rc, -1, "expected a decode error");
    return e;
}

/* --- Channels ------------------------------------------------------------ */

Test(channel, every_byte)
{
    const char *allowed = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                          "0123456789_.:@/=#-";

    for (int c = 0; c < 256; c++) {
        char s[3] = { 'a', (char)c, 'b' };
        int want = c != 0 && strchr(allowed, c) != NULL;
        cr_expect_eq(proto_channel_valid(s, 3), want, "byte 0x%02x", c);
        cr_expect_eq(proto_channel_valid(s + 1, 1), want, "lone byte 0x%02x", c);
    }
}

Test(channel, lengths)
{
    char buf[300];

    memset(buf, 'x', sizeof(buf));
    cr_expect_not(proto_channel_valid(buf, 0));
    cr_expect_not(proto_channel_valid(NULL, 0));
    cr_expect_not(proto_channel_valid(NULL, 5));
    cr_expect(proto_channel_valid(buf, 1));
    cr_expect(proto_channel_valid(buf, 254));
    cr_expect(proto_channel_valid(buf, 255));
    cr_expect_not(proto_channel_valid(buf, 256));
    cr_expect_not(proto_channel_valid(buf, 300));
    cr_expect(proto_channel_valid("a:b/c@d=e.f-g_h", 15));
}

Test(channel, namespace)
{
    proto_slice ns;

    ns = proto_channel_namespace(S("chat:room:1"));
    cr_expect(ns.len == 4 && !memcmp(ns.ptr, "chat", 4));
    ns = proto_channel_namespace(S("plain"));
    cr_expect_eq(ns.len, 0);
    ns = proto_channel_namespace(S(":x"));
    cr_expect_eq(ns.len, 0);
    ns = proto_channel_namespace(S("ns:"));
    cr_expect(ns.len == 2 && !memcmp(ns.ptr, "ns", 2));
    ns = proto_channel_namespace((proto_slice){ NULL, 0 });
    cr_expect_eq(ns.len, 0);
}

Test(names, ops_and_codes)
{
    cr_expect_str_eq(proto_op_name(PROTO_OP_CONNECT), "connect");
    cr_expect_str_eq(proto_op_name(PROTO_OP_PING), "ping");
    cr_expect_str_eq(proto_op_name((proto_op)0), "unknown");
    cr_expect_str_eq(proto_op_name((proto_op)99), "unknown");
    for (int c = 100; c <= 112; c++)
        cr_expect(strcmp(proto_code_text(c), "error") != 0, "code %d", c);
    cr_expect_str_eq(proto_code_text(107), "bad request");
    cr_expect_str_eq(proto_code_text(999), "error");
}

/* --- Buffers ------------------------------------------------------------- */

Test(buf, headroom_growth_and_separator)
{
    proto_buf b;
    char big[5000];

    proto_buf_init(&b, 16);
    cr_expect_null(proto_buf_data(&b));
    proto_buf_sep(&b, PROTO_JSON);            /* nothing before: no separator */
    cr_expect_eq(b.len, 0);
    proto_buf_append(&b, "ab", 2);
    proto_buf_sep(&b, PROTO_JSON);
    proto_buf_sep(&b, PROTO_MSGPACK);         /* msgpack has no separator */
    cr_expect_eq(b.len, 3);
    memset(big, 'z', sizeof(big));
    proto_buf_append(&b, big, sizeof(big));
    cr_expect_eq(b.len, 3 + sizeof(big));
    cr_expect(b.cap >= b.len);
    cr_expect_eq(proto_buf_data(&b), b.base + 16);
    cr_expect(!memcmp(proto_buf_data(&b), "ab\nzzz", 6));
    char *base = b.base;
    proto_buf_reset(&b);
    cr_expect_eq(b.len, 0);
    cr_expect_eq(b.base, base, "reset keeps the memory");
    proto_buf_free(&b);
    cr_expect_null(b.base);
}

Test(buf, batched_json_frame_splits_into_messages)
{
    proto_buf b;
    proto_data d;
    void *owned;
    const char *p, *nl;
    int lines = 0;

    cr_assert_eq(proto_data_from_json("{\n\"a\": 1\n}", 10, &d, &owned, NULL),
                 PROTO_OK);
    proto_pub pub = { S("c"), 1, S("e"), d, NULL, 0 };
    proto_buf_init(&b, 0);
    for (int i = 0; i < 3; i++) {
        proto_buf_sep(&b, PROTO_JSON);
        proto_enc_push_pub(&b, PROTO_JSON, &pub);
    }
    proto_buf_sep(&b, PROTO_JSON);
    proto_enc_push_disconnect(&b, PROTO_JSON, 4000, "bye\n", 1);
    /* Every line must be one complete JSON object. */
    for (p = proto_buf_data(&b); p < proto_buf_data(&b) + b.len; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(proto_buf_data(&b) + b.len - p));
        if (!nl)
            nl = proto_buf_data(&b) + b.len;
        json_t *v = json_loadb(p, (size_t)(nl - p), 0, NULL);
        cr_expect(json_is_object(v), "line %d: %.*s", lines, (int)(nl - p), p);
        json_decref(v);
        lines++;
    }
    cr_expect_eq(lines, 4);
    proto_buf_free(&b);
    free(owned);
}

/* --- Data conversion ----------------------------------------------------- */

static void roundtrip_json(const char *text)
{
    proto_data a, b2, c;
    void *oa, *ob, *oc;
    proto_error e;

    cr_assert_eq(proto_data_from_json(text, strlen(text), &a, &oa, &e), PROTO_OK,
                 "%s: %s", text, e.message);
    /* msgpack -> JSON -> msgpack must give the same msgpack bytes. */
    cr_assert_eq(proto_data_from_msgpack(a.mp.ptr, a.mp.len, &b2, &ob, &e), PROTO_OK,
                 "%s: %s", text, e.message);
    cr_assert_eq(proto_data_from_json(b2.json.ptr, b2.json.len, &c, &oc, &e),
                 PROTO_OK, "%s -> %s: %s", text, b2.json.ptr, e.message);
    cr_expect(a.mp.len == c.mp.len && !memcmp(a.mp.ptr, c.mp.ptr, a.mp.len),
              "round trip of %s changed msgpack (via %s)", text, b2.json.ptr);
    cr_expect(b2.mp.len == a.mp.len && !memcmp(b2.mp.ptr, a.mp.ptr, a.mp.len));
    /* And the JSON produced from msgpack is a fixed point. */
    cr_expect(b2.json.len == c.json.len && !memcmp(b2.json.ptr, c.json.ptr, c.json.len));
    free(oa);
    free(ob);
    free(oc);
}

Test(data, json_roundtrips)
{
    static const char *const texts[] = {
        "null", "true", "false", "0", "-1", "127", "128", "-32", "-33",
        "9223372036854775807", "-9223372036854775808", "1.5", "-0.0",
        "1e300", "2.2250738585072014e-308", "0.1", "100.0", "\"\"",
        "\"caf\\u00e9 \\ud83d\\ude00\"", "\"tab\\tnl\\nq\\\"bs\\\\\"",
        "[]", "{}", "[1,[2,[3,[4]]]]", "{\"a\":{\"b\":{\"c\":[true,null]}}}",
        "{\"\":1,\"z\":2,\"a\":3}", "[\"\\u0000\\u001f\\u007f\"]",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        roundtrip_json(texts[i]);
}

Test(data, doubles_read_back_exactly)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int checked = 0;

    for (int i = 0; i < 3000; i++) {
        double v;
        char mp[9];
        proto_data d;
        void *o;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(&v, &x, sizeof(v));
        if (!isfinite(v))
            continue;
        mp[0] = (char)0xcb;
        for (int k = 0; k < 8; k++)
            mp[1 + k] = (char)(x >> (56 - 8 * k));
        cr_assert_eq(proto_data_from_msgpack(mp, 9, &d, &o, NULL), PROTO_OK);
        cr_expect_eq(strtod(d.json.ptr, NULL), v, "%.17g printed as %s", v, d.json.ptr);
        cr_expect(strpbrk(d.json.ptr, ".e") != NULL, "%s looks like an int", d.json.ptr);
        cr_expect(d.json.len <= 24, "%s is not short", d.json.ptr);
        free(o);
        checked++;
    }
    cr_expect(checked > 2500);
}

Test(data, base64_rfc4648)
{
    static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
    static const char *const coded[] = { "\"\"", "\"Zg==\"", "\"Zm8=\"", "\"Zm9v\"",
                                         "\"Zm9vYg==\"", "\"Zm9vYmE=\"", "\"Zm9vYmFy\"" };

    for (int i = 0; i < 7; i++) {
        char mp[16];
        size_t n = strlen(plain[i]);
        proto_data d;
        void *o;

        mp[0] = (char)0xc4;
        mp[1] = (char)n;
        memcpy(mp + 2, plain[i], n);
        cr_assert_eq(proto_data_from_msgpack(mp, n + 2, &d, &o, NULL), PROTO_OK);
        cr_expect_str_eq(d.json.ptr, coded[i]);
        cr_expect(d.binary);
        cr_expect(d.mp.len == n + 2 && !memcmp(d.mp.ptr, mp, n + 2));
        free(o);
    }
}

Test(data, big_maps_and_duplicates)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    proto_data d;
    void *o;
    char key[16];

    for (int dup = 0; dup < 2; dup++) {
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 1000);
        for (int i = 0; i < 1000; i++) {
            int k = dup && i == 999 ? 3 : i;
            int n = snprintf(key, sizeof(key), "k%d", k);
            msgpack_pack_str_with_body(&pk, key, (size_t)n);
            msgpack_pack_int(&pk, i);
        }
        int rc = proto_data_from_msgpack(sb.data, sb.size, &d, &o, NULL);
        cr_expect_eq(rc, dup ? PROTO_E_BAD_REQUEST : PROTO_OK, "dup=%d", dup);
        if (rc == PROTO_OK) {
            cr_expect(!strncmp(d.json.ptr, "{\"k0\":0,\"k1\":1,", 15), "order kept");
            free(o);
        }
        msgpack_sbuffer_destroy(&sb);
    }
}

Test(data, invalid_utf8_is_rejected)
{
    static const char *const bad[] = {
        "\x80", "\xbf", "\xc0\xaf", "\xc1\xbf", "\xc2", "\xe0\x80\xaf",
        "\xe0\x9f\xbf", "\xed\xa0\x80", "\xed\xbf\xbf", "\xf0\x80\x80\xaf",
        "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff", "a\xe2\x82", "\xe2\x28\xa1",
    };
    static const char *const good[] = {
        "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf", "\xee\x80\x80",
        "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf", "\x7f", "",
    };
    char mp[16];
    proto_data d;
    void *o;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = strlen(bad[i]);
        mp[0] = (char)(0xa0 | n);
        memcpy(mp + 1, bad[i], n);
        cr_expect_eq(proto_data_from_msgpack(mp, n + 1, &d, &o, NULL),
                     PROTO_E_BAD_REQUEST, "bad #%zu accepted", i);
        /* JSON text with the same bytes is refused by the JSON side too. */
        char js[16];
        js[0] = '"';
        memcpy(js + 1, bad[i], n);
        js[n + 1] = '"';
        cr_expect_eq(proto_data_from_json(js, n + 2, &d, &o, NULL),
                     PROTO_E_BAD_REQUEST, "bad JSON #%zu accepted", i);
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        size_t n = strlen(good[i]);
        mp[0] = (char)(0xa0 | n);
        memcpy(mp + 1, good[i], n);
        cr_expect_eq(proto_data_from_msgpack(mp, n + 1, &d, &o, NULL), PROTO_OK,
                     "good #%zu refused", i);
        if (o) {
            cr_expect(d.json.len == n + 2 && !memcmp(d.json.ptr + 1, good[i], n),
                      "UTF-8 is copied, not escaped");
            free(o);
        }
    }
}

Test(data, null_and_empty_inputs)
{
    proto_data d;
    void *o;
    proto_error e;

    cr_expect_eq(proto_data_from_json(NULL, 0, &d, &o, &e), PROTO_E_BAD_REQUEST);
    cr_expect_eq(e.code, PROTO_E_BAD_REQUEST);
    cr_expect_null(o);
    cr_expect_eq(proto_data_from_msgpack(NULL, 0, &d, &o, NULL), PROTO_E_BAD_REQUEST);
    cr_expect_eq(proto_data_from_json("   ", 3, &d, &o, NULL), PROTO_E_BAD_REQUEST);
}

/* Empty strings, keys and bin: msgpack-c may hand them out as NULL with
 * length 0, which the JSON writer must not do arithmetic on (UBSan in the
 * fuzzing build, found by tests/fuzz/fuzz_cmd_msgpack). */
Test(data, empty_strings_and_bin)
{
    static const struct { const char *mp; size_t n; const char *json; } c[] = {
        { "\xa0", 1, "\"\"" },
        { "\x81\xa0\xa0", 3, "{\"\":\"\"}" },
        { "\x81\xa0\x6b", 3, "{\"\":107}" },
        { "\xc4\x00", 2, "\"\"" },
        { "\x92\xa0\xd9\x00", 4, "[\"\",\"\"]" },
    };
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        proto_data d;
        void *o;
        proto_error e;
        cr_assert_eq(proto_data_from_msgpack(c[i].mp, c[i].n, &d, &o, &e),
                     PROTO_OK, "case %zu: %s", i, e.message);
        cr_expect(d.json.len == strlen(c[i].json) &&
                  !memcmp(d.json.ptr, c[i].json, d.json.len),
                  "case %zu: %.*s", i, (int)d.json.len, d.json.ptr);
        /* And back: what a client converts is the same text. */
        proto_buf b;
        proto_buf_init(&b, 0);
        cr_assert_eq(proto_data_to_json(PROTO_MSGPACK, d.mp, &b, &e), PROTO_OK);
        cr_expect(b.len == d.json.len &&
                  !memcmp(proto_buf_data(&b), d.json.ptr, b.len));
        proto_buf_free(&b);
        free(o);
    }
}

/* jansson skips a raw NUL between tokens ("[1\0,2]" loads as [1,2]); the
 * codec refuses it, since the publisher's bytes are passed on as they are
 * and no subscriber's parser would read them (found by
 * tests/fuzz/fuzz_cmd_json). \u0000 inside a string stays valid. */
Test(data, raw_nul_is_not_json)
{
    static const char *const bad[] = { "[1\0,2]", "{\"a\":5\0}", "\0 7",
                                       "7\0", "\"a\0b\"" };
    static const size_t len[] = { 6, 8, 3, 2, 5 };
    proto_data d;
    void *o;
    proto_error e;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_expect_eq(proto_data_from_json(bad[i], len[i], &d, &o, &e),
                     PROTO_E_BAD_REQUEST, "case %zu", i);
        cr_expect_null(o);
    }
    cr_assert_eq(proto_data_from_json("\"a\\u0000b\"", 10, &d, &o, &e),
                 PROTO_OK);
    free(o);

    /* In a command: 107, with the id read before the damage. */
    static const char cmd[] = "{\"id\":9,\"op\":\"publish\",\"channel\":\"a\","
                              "\"data\":{\"k\":5\0,\"j\":6}}";
    e = decode_err(PROTO_JSON, cmd, sizeof(cmd) - 1);
    cr_expect_eq(e.code, PROTO_E_BAD_REQUEST);
    cr_expect_eq(e.id, 9);
}

/* --- Hostile input ------------------------------------------------------- */

Test(hostile, msgpack_truncated_at_every_byte)
{
    proto_buf b;
    proto_cmd_out c = { .id = 77, .op = PROTO_OP_HISTORY, .channel = S("news:x"),
                        .has_since = 1, .since_offset = 1ull << 40,
                        .since_epoch = S("epoch"), .has_limit = 1, .limit = 5,
                        .reverse = 1 };
    int rcs[4], codes[4];

    proto_buf_init(&b, 0);
    proto_enc_cmd(&b, PROTO_MSGPACK, &c);
    for (size_t cut = 1; cut < b.len; cut++) {
        char *copy = malloc(cut);   /* exact size: ASan sees any overread */
        memcpy(copy, proto_buf_data(&b), cut);
        int n = decode_all(PROTO_MSGPACK, copy, cut, rcs, codes, 4);
        cr_expect(n == 1 && rcs[0] == -1 && codes[0] == 107, "cut at %zu", cut);
        free(copy);
    }
    cr_expect_eq(decode_all(PROTO_MSGPACK, proto_buf_data(&b), b.len, rcs, codes, 4), 1);
    cr_expect_eq(rcs[0], 1);
    proto_buf_free(&b);
}

Test(hostile, json_truncated_at_every_byte)
{
    const char *line = "{\"id\":12,\"op\":\"publish\",\"channel\":\"a\","
                       "\"data\":{\"x\":[1,\"two\",{\"3\":null}]}}";
    size_t len = strlen(line);
    int rcs[4], codes[4];

    for (size_t cut = 1; cut < len; cut++) {
        char *copy = malloc(cut);
        memcpy(copy, line, cut);
        int n = decode_all(PROTO_JSON, copy, cut, rcs, codes, 4);
        cr_expect(n == 1 && rcs[0] == -1 && codes[0] == 107, "cut at %zu", cut);
        free(copy);
    }
}

Test(hostile, deep_nesting)
{
    size_t depth = 100000;
    size_t cap = 64 + 2 * depth;
    char *buf = malloc(cap);
    size_t n = 0;
    proto_error e;

    /* JSON: jansson stops at its own depth limit; no stack overflow. */
    n = (size_t)sprintf(buf, "{\"id\":5,\"op\":\"publish\",\"channel\":\"a\",\"data\":");
    memset(buf + n, '[', depth);
    n += depth;
    memset(buf + n, ']', depth);
    n += depth;
    buf[n++] = '}';
    e = decode_err(PROTO_JSON, buf, n);
    cr_expect_eq(e.code, 107);

    /* msgpack: 100000 nested fixarrays of one element. */
    n = 0;
    buf[n++] = (char)0x84;
    memcpy(buf + n, "\xa2id\x05\xa2op\xa7publish\xa7""channel\xa1""a\xa4""data", 30);
    n += 30;
    memset(buf + n, 0x91, depth);
    n += depth;
    buf[n++] = 0x01;
    e = decode_err(PROTO_MSGPACK, buf, n);
    cr_expect_eq(e.code, 107);
    /* The same nesting as bare data. */
    proto_data d;
    void *o;
    cr_expect_eq(proto_data_from_msgpack(buf + 31, n - 31, &d, &o, NULL),
                 PROTO_E_BAD_REQUEST);
    free(buf);
}

Test(hostile, huge_numbers_and_counts)
{
    static const char *const lines[] = {
        "{\"id\":1e400,\"op\":\"ping\"}",
        "{\"id\":184467440737095516150,\"op\":\"ping\"}",
        "{\"id\":1,\"op\":\"publish\",\"channel\":\"a\",\"data\":1e400}",
        "{\"id\":1,\"op\":\"publish\",\"channel\":\"a\",\"data\":-99999999999999999999}",
        "{\"id\":1,\"op\":\"history\",\"channel\":\"a\",\"limit\":1e10}",
        "{\"id\":1,\"op\":\"history\",\"channel\":\"a\",\"since\":{\"offset\":99999999999999999999,\"epoch\":\"\"}}",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        proto_error e = decode_err(PROTO_JSON, lines[i], strlen(lines[i]));
        cr_expect_eq(e.code, 107, "%s", lines[i]);
    }
    /* Containers and strings that claim far more than the frame holds. */
    static const char *const mps[] = {
        "\xdf\xff\xff\xff\xff", "\xdd\xff\xff\xff\xff\x00", "\xdb\xff\xff\xff\xff",
        "\xc6\x7f\xff\xff\xff", "\xc9\xff\xff\xff\xff\x01", "\x81\xa2id\xdc\xff\xff",
    };
    static const size_t mplen[] = { 5, 6, 5, 5, 6, 7 };
    for (size_t i = 0; i < sizeof(mps) / sizeof(mps[0]); i++) {
        proto_error e = decode_err(PROTO_MSGPACK, mps[i], mplen[i]);
        cr_expect_eq(e.code, 107, "mp #%zu", i);
        size_t objlen = 99;
        cr_expect_eq(proto_mp_frame(mps[i], mplen[i], &objlen), -1,
                     "frame mp #%zu", i);
    }
}

/* proto_mp_frame, the same framing for msgpack read outside the codec
 * (the Redis records): where one object ends, what follows left alone. */
Test(hostile, mp_frame)
{
    size_t objlen = 0;
    cr_assert_eq(proto_mp_frame("\x92\x01\xa1x\xc0", 5, &objlen), 0);
    cr_expect_eq(objlen, 4, "[1, \"x\"], then nil");
    cr_assert_eq(proto_mp_frame("\x90", 1, &objlen), 0);
    cr_expect_eq(objlen, 1, "empty array");
    cr_expect_eq(proto_mp_frame("\x92\x01", 2, &objlen), -1, "truncated");
    cr_expect_eq(proto_mp_frame("\xc1", 1, &objlen), -1, "reserved byte");
    cr_expect_eq(proto_mp_frame("", 0, &objlen), -1, "nothing");
    cr_expect_eq(proto_mp_frame(NULL, 4, &objlen), -1, "NULL");
    char deep[40];
    memset(deep, 0x91, sizeof(deep));   /* [[[...]]], 39 deep, then 1 */
    deep[39] = 1;
    cr_expect_eq(proto_mp_frame(deep, sizeof(deep), &objlen), -1, "too deep");
    cr_assert_eq(proto_mp_frame(deep + 8, sizeof(deep) - 8, &objlen), 0,
                 "31 deep");
    cr_expect_eq(objlen, sizeof(deep) - 8);
}

Test(hostile, overlong_fields)
{
    size_t big = 1 << 20;
    char *buf = malloc(big + 128);
    int n;
    proto_error e;
    proto_reader r;
    proto_cmd c;

    /* A megabyte token and channel are refused with the right code. */
    n = sprintf(buf, "{\"id\":3,\"op\":\"connect\",\"token\":\"");
    memset(buf + n, 't', big);
    n += (int)big;
    n += sprintf(buf + n, "\"}");
    e = decode_err(PROTO_JSON, buf, (size_t)n);
    cr_expect(e.code == 107 && e.id == 3);

    n = sprintf(buf, "{\"id\":4,\"op\":\"subscribe\",\"channel\":\"");
    memset(buf + n, 'c', big);
    n += (int)big;
    n += sprintf(buf + n, "\"}");
    e = decode_err(PROTO_JSON, buf, (size_t)n);
    cr_expect(e.code == 102 && e.id == 4);

    /* Large data is the server's business (112), not the codec's. */
    n = sprintf(buf, "{\"id\":5,\"op\":\"publish\",\"channel\":\"a\",\"data\":\"");
    memset(buf + n, 'd', big);
    n += (int)big;
    n += sprintf(buf + n, "\"}");
    proto_reader_init(&r, PROTO_JSON, buf, (size_t)n);
    cr_assert_eq(proto_next(&r, &c, &e), 1);
    cr_expect_eq(c.data.json.len, big + 2);
    cr_expect_eq(c.data.mp.len, big + 5);   /* str32 header */
    proto_cmd_free(&c);
    free(buf);
}

Test(hostile, cmd_free_is_idempotent)
{
    proto_cmd c;

    memset(&c, 0, sizeof(c));
    proto_cmd_free(&c);
    proto_reader r;
    proto_error e;
    proto_reader_init(&r, PROTO_JSON, "{\"id\":1,\"op\":\"ping\"}", 20);
    cr_assert_eq(proto_next(&r, &c, &e), 1);
    proto_cmd_free(&c);
    proto_cmd_free(&c);
    proto_reader_init(&r, PROTO_JSON, NULL, 5);
    cr_expect_eq(proto_next(&r, &c, &e), 0);
}

/* --- Encoders under odd input -------------------------------------------- */

Test(encode, error_text_is_always_valid_utf8)
{
    proto_buf b;
    proto_error e;
    const char *line = "{\"id\":3,\"op\":\xff\xfe}";

    /* jansson quotes the offending bytes; the message must not carry them. */
    e = decode_err(PROTO_JSON, line, strlen(line));
    cr_expect_eq(e.id, 3);
    for (const char *p = e.message; *p; p++)
        cr_expect((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f,
                  "byte 0x%02x in message", (unsigned char)*p);
    /* A caller's message with bad UTF-8 is repaired on output. */
    proto_buf_init(&b, 0);
    proto_enc_error(&b, PROTO_JSON, 0, 100, "bad \xc3 byte \xe9");
    cr_expect(b.len == strlen("{\"error\":{\"code\":100,\"message\":\"bad ? byte ?\"}}") &&
              !memcmp(proto_buf_data(&b),
                      "{\"error\":{\"code\":100,\"message\":\"bad ? byte ?\"}}", b.len),
              "%.*s", (int)b.len, proto_buf_data(&b));
    proto_buf_reset(&b);
    proto_enc_push_disconnect(&b, PROTO_MSGPACK, 4101, "\xff", 0);
    cr_expect(memmem(proto_buf_data(&b), b.len, "\xa1?", 2) != NULL);
    proto_buf_free(&b);
}

Test(encode, strings_are_always_escaped)
{
    char nasty[64];
    proto_buf b;
    json_t *v;

    for (int i = 0; i < 32; i++)
        nasty[i] = (char)i;
    memcpy(nasty + 32, "\"\\/\x7f\xc3\xa9", 7);
    proto_slice s = { nasty, 39 };
    proto_client_info ci = { .client = s, .user = s };
    proto_pub p = { s, 1, s, { { NULL, 0 }, { NULL, 0 }, 0 }, &ci, -5 };

    proto_buf_init(&b, 0);
    proto_enc_push_pub(&b, PROTO_JSON, &p);
    v = json_loadb(proto_buf_data(&b), b.len, JSON_ALLOW_NUL, NULL);
    cr_assert(json_is_object(v), "%.*s", (int)b.len, proto_buf_data(&b));
    cr_expect(json_string_length(json_object_get(v, "channel")) == 39 &&
              !memcmp(json_string_value(json_object_get(v, "channel")), nasty, 39));
    cr_expect(json_is_null(json_object_get(v, "data")), "missing data is null");
    cr_expect_eq(json_integer_value(json_object_get(v, "time")), -5);
    cr_expect_null(memchr(proto_buf_data(&b), '\n', b.len), "no raw newline");
    json_decref(v);

    /* The same message in msgpack is one well-formed object. */
    msgpack_unpacked u;
    size_t off = 0;
    proto_buf_reset(&b);
    proto_enc_push_pub(&b, PROTO_MSGPACK, &p);
    msgpack_unpacked_init(&u);
    cr_expect_eq(msgpack_unpack_next(&u, proto_buf_data(&b), b.len, &off),
                 MSGPACK_UNPACK_SUCCESS);
    cr_expect_eq(off, b.len);
    cr_expect_eq(u.data.type, MSGPACK_OBJECT_MAP);
    cr_expect_eq(u.data.via.map.size, 7);
    msgpack_unpacked_destroy(&u);
    proto_buf_free(&b);
}

Test(encode, commands_decode_back)
{
    proto_buf b;
    proto_data d;
    void *o;

    cr_assert_eq(proto_data_from_json("[1,{\"k\":\"v\"}]", 13, &d, &o, NULL), PROTO_OK);
    for (int enc = 0; enc < 2; enc++) {
        proto_cmd_out out[] = {
            { .id = 1, .op = PROTO_OP_CONNECT, .token = S("tok"), .name = S("n"),
              .version = S("v") },
            /* jansson reads JSON integers up to 2^63-1 only. */
            { .id = 2, .op = PROTO_OP_SUBSCRIBE, .channel = S("x:y"), .has_since = 1,
              .since_offset = enc ? UINT64_MAX : INT64_MAX, .since_epoch = S("ep") },
            { .id = 3, .op = PROTO_OP_PUBLISH, .channel = S("x"),
              .data = enc ? d.mp : d.json },
            { .id = 4, .op = PROTO_OP_HISTORY, .channel = S("x"), .has_limit = 1,
              .limit = UINT32_MAX, .reverse = 1 },
            { .id = 5, .op = PROTO_OP_PRESENCE, .channel = S("x") },
            { .id = 6, .op = PROTO_OP_UNSUBSCRIBE, .channel = S("x") },
            { .id = UINT32_MAX, .op = PROTO_OP_PING },
        };
        size_t n = sizeof(out) / sizeof(out[0]);
        proto_reader r;
        proto_cmd c;
        proto_error e;

        proto_buf_init(&b, 0);
        for (size_t i = 0; i < n; i++) {
            proto_buf_sep(&b, (proto_enc)enc);
            proto_enc_cmd(&b, (proto_enc)enc, &out[i]);
        }
        proto_reader_init(&r, (proto_enc)enc, proto_buf_data(&b), b.len);
        for (size_t i = 0; i < n; i++) {
            cr_assert_eq(proto_next(&r, &c, &e), 1, "enc %d cmd %zu: %s", enc, i,
                         e.message);
            cr_expect_eq(c.id, out[i].id);
            cr_expect_eq(c.op, out[i].op);
            cr_expect_eq(c.channel.len, out[i].channel.len);
            cr_expect_eq(c.has_since, out[i].has_since);
            cr_expect_eq(c.since_offset, out[i].since_offset);
            cr_expect_eq(c.limit, out[i].limit);
            cr_expect_eq(c.reverse, out[i].reverse);
            if (out[i].op == PROTO_OP_PUBLISH) {
                cr_expect(c.data.json.len == d.json.len &&
                          !memcmp(c.data.json.ptr, d.json.ptr, d.json.len));
                cr_expect(c.data.mp.len == d.mp.len &&
                          !memcmp(c.data.mp.ptr, d.mp.ptr, d.mp.len));
            }
            proto_cmd_free(&c);
        }
        cr_expect_eq(proto_next(&r, &c, &e), 0);
        proto_buf_free(&b);
    }
    free(o);
}

/* --- Fuzz ---------------------------------------------------------------- */

static uint64_t rng_state;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* Bytes that make interesting mutations for either encoding. */
static const unsigned char interesting[] = {
    0x00, 0x0a, 0x0d, '"', '\\', '{', '}', '[', ']', ',', ':', '0', '9', '-',
    'e', 0x7f, 0x80, 0xc0, 0xc1, 0xc3, 0xc4, 0xca, 0xcb, 0xcf, 0xd3, 0xd9,
    0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xed, 0xf4, 0xff, 0x90, 0x9f, 0x8f,
};

static size_t mutate(unsigned char *buf, size_t len, size_t cap)
{
    int rounds = 1 + (int)(rnd() % 4);

    for (int k = 0; k < rounds; k++) {
        size_t at = len ? rnd() % len : 0;
        switch (rnd() % 7) {
        case 0: /* flip a bit */
            if (len)
                buf[at] ^= (unsigned char)(1u << (rnd() % 8));
            break;
        case 1: /* replace with an interesting byte */
            if (len)
                buf[at] = interesting[rnd() % sizeof(interesting)];
            break;
        case 2: /* insert a byte */
            if (len < cap) {
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = interesting[rnd() % sizeof(interesting)];
                len++;
            }
            break;
        case 3: { /* delete a range */
            size_t n = len ? rnd() % (len - at + 1) : 0;
            if (n > 8)
                n = 1 + n % 8;
            memmove(buf + at, buf + at + n, len - at - n);
            len -= n;
            break;
        }
        case 4: /* truncate */
            len = at;
            break;
        case 5: { /* duplicate a range (batching, repeated keys) */
            size_t n = len ? 1 + rnd() % (len - at) : 0;
            if (len + n <= cap) {
                memmove(buf + at + n, buf + at, len - at);
                len += n;
            }
            break;
        }
        case 6: /* random byte */
            if (len)
                buf[at] = (unsigned char)rnd();
            break;
        }
    }
    return len;
}

static int fuzz_cmds, fuzz_errs;

static void check_frame(proto_enc enc, const unsigned char *frame, size_t len)
{
    proto_reader r;
    proto_cmd c;
    proto_error e;
    int rc, guard = 0;
    size_t last = 0;

    proto_reader_init(&r, enc, frame, len);
    while ((rc = proto_next(&r, &c, &e)) != 0) {
        cr_assert(rc == 1 || rc == -1, "rc %d", rc);
        /* The reader always makes progress, so a frame cannot stall it. */
        cr_assert(r.pos > last || (r.pos == len && last == len), "no progress");
        last = r.pos;
        cr_assert(++guard <= (int)len + 1, "too many results");
        if (rc == -1) {
            fuzz_errs++;
            cr_assert(e.code == 102 || e.code == 104 || e.code == 107,
                      "code %d (%s)", e.code, e.message);
            cr_assert(e.message[0] != '\0');
            continue;
        }
        fuzz_cmds++;
        cr_assert(c.id >= 1);
        cr_assert(c.op >= PROTO_OP_CONNECT && c.op <= PROTO_OP_PING);
        if (c.op != PROTO_OP_CONNECT && c.op != PROTO_OP_PING)
            cr_assert(proto_channel_valid(c.channel.ptr, c.channel.len));
        if (c.has_since)
            cr_assert(c.since_epoch.len <= PROTO_EPOCH_MAX);
        cr_assert(c.token.len <= PROTO_TOKEN_MAX);
        if (c.op == PROTO_OP_PUBLISH) {
            /* Whatever got through is valid in both encodings. */
            json_t *v = json_loadb(c.data.json.ptr, c.data.json.len,
                                   JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
            cr_assert_not_null(v, "data json %.*s", (int)c.data.json.len,
                               c.data.json.ptr);
            json_decref(v);
            cr_assert_null(memchr(c.data.json.ptr, '\n', c.data.json.len));
            proto_data d2;
            void *o2;
            cr_assert_eq(proto_data_from_msgpack(c.data.mp.ptr, c.data.mp.len, &d2,
                                                 &o2, NULL), PROTO_OK);
            free(o2);
        }
        proto_cmd_free(&c);
    }
    cr_assert_eq(r.pos, len);
}

Test(fuzz, mutated_frames)
{
    static const char *const seeds_json[] = {
        "{\"id\":1,\"op\":\"connect\",\"token\":\"a.b.c\",\"name\":\"n\",\"version\":\"1\"}",
        "{\"id\":2,\"op\":\"subscribe\",\"channel\":\"ns:ch\",\"since\":{\"offset\":5,\"epoch\":\"e\"}}",
        "{\"id\":3,\"op\":\"publish\",\"channel\":\"c\",\"data\":{\"a\":[1,2.5,\"x\\u00e9\",null,true]}}\n{\"id\":4,\"op\":\"ping\"}",
        "{\"id\":5,\"op\":\"history\",\"channel\":\"c\",\"limit\":3,\"reverse\":false}\r\n",
        "{\"id\":6,\"op\":\"presence\",\"channel\":\"p\"}\n{\"id\":7,\"op\":\"unsubscribe\",\"channel\":\"p\"}\n",
    };
    unsigned char seeds_mp[5][256];
    size_t seeds_mp_len[5];
    proto_buf b;
    unsigned char frame[1024];
    proto_data d;
    void *o;

    /* msgpack seeds: the same commands through the client encoder. */
    cr_assert_eq(proto_data_from_json("{\"a\":[1,-2.5,\"x\",null,false]}", 29, &d, &o, NULL),
                 PROTO_OK);
    proto_cmd_out mp_cmds[] = {
        { .id = 1, .op = PROTO_OP_CONNECT, .token = S("a.b.c"), .name = S("n") },
        { .id = 2, .op = PROTO_OP_SUBSCRIBE, .channel = S("ns:ch"), .has_since = 1,
          .since_offset = 5, .since_epoch = S("e") },
        { .id = 3, .op = PROTO_OP_PUBLISH, .channel = S("c"), .data = d.mp },
        { .id = 5, .op = PROTO_OP_HISTORY, .channel = S("c"), .has_limit = 1, .limit = 3 },
        { .id = 6, .op = PROTO_OP_PRESENCE, .channel = S("p") },
    };
    for (int i = 0; i < 5; i++) {
        proto_buf_init(&b, 0);
        proto_enc_cmd(&b, PROTO_MSGPACK, &mp_cmds[i]);
        if (i == 2) /* a batched frame */
            proto_enc_cmd(&b, PROTO_MSGPACK, &mp_cmds[0]);
        cr_assert(b.len <= sizeof(seeds_mp[i]));
        memcpy(seeds_mp[i], proto_buf_data(&b), b.len);
        seeds_mp_len[i] = b.len;
        proto_buf_free(&b);
    }
    free(o);

    rng_state = 0x2545f4914f6cdd1dull;
    for (int iter = 0; iter < 4000; iter++) {
        proto_enc enc = (iter & 1) ? PROTO_MSGPACK : PROTO_JSON;
        int s = (int)(rnd() % 5);
        size_t len;

        if (enc == PROTO_JSON) {
            len = strlen(seeds_json[s]);
            memcpy(frame, seeds_json[s], len);
        } else {
            len = seeds_mp_len[s];
            memcpy(frame, seeds_mp[s], len);
        }
        len = mutate(frame, len, sizeof(frame));
        /* Decode from an exact-size copy so ASan sees any overread. */
        unsigned char *copy = malloc(len ? len : 1);
        memcpy(copy, frame, len);
        check_frame(enc, copy, len);
        free(copy);
    }
    /* The mutations must exercise both outcomes, not only the parse error. */
    cr_expect(fuzz_cmds > 500 && fuzz_errs > 500, "cmds %d errs %d", fuzz_cmds,
              fuzz_errs);
}

Test(fuzz, random_bytes)
{
    unsigned char buf[256];

    rng_state = 0x853c49e6748fea9bull;
    for (int iter = 0; iter < 2000; iter++) {
        size_t len = rnd() % sizeof(buf);
        for (size_t i = 0; i < len; i++)
            buf[i] = (iter & 2) ? interesting[rnd() % sizeof(interesting)]
                                : (unsigned char)rnd();
        unsigned char *copy = malloc(len ? len : 1);
        memcpy(copy, buf, len);
        check_frame((iter & 1) ? PROTO_MSGPACK : PROTO_JSON, copy, len);
        proto_data d;
        void *o;
        if (proto_data_from_msgpack(copy, len, &d, &o, NULL) == PROTO_OK)
            free(o);
        if (proto_data_from_json(copy, len, &d, &o, NULL) == PROTO_OK)
            free(o);
        free(copy);
    }
}

/* proto_json_member: the raw bytes of a top-level member, its name
 * matched after unescaping; nested members of the same name are not it. */
Test(json_member, raw_bytes_of_top_level_members)
{
    static const char doc[] =
        "{\"x\":{\"data\":0}, \"d\\u0061ta\" : [1.50, \"a,}\"] ,\"z\":null}";
    proto_slice v;
    cr_assert_eq(proto_json_member(doc, strlen(doc), "data", &v), 0);
    cr_assert_eq(v.len, strlen("[1.50, \"a,}\"]"));
    cr_assert_eq(memcmp(v.ptr, "[1.50, \"a,}\"]", v.len), 0);
    cr_assert_eq(proto_json_member(doc, strlen(doc), "z", &v), 0);
    cr_assert_eq(v.len, 4);
    cr_assert_eq(proto_json_member(doc, strlen(doc), "y", &v), -1);
    cr_assert_eq(proto_json_member("[1]", 3, "data", &v), -1);
    cr_assert_eq(proto_json_member(NULL, 0, "data", &v), -1);
    /* truncated text stops the scan, never reads past len */
    cr_assert_eq(proto_json_member(doc, 20, "data", &v), -1);
}
