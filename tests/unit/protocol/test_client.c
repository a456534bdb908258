/*
 * Tests of the client-side decoder of server messages (protocol/src/
 * proto_client.c): every server-message vector of protocol/vectors/
 * encode.json decoded in both encodings and checked against the vector's
 * arguments; batching in both encodings; escapes; forward compatibility
 * (unknown keys and push kinds); hostile input (truncation at every byte,
 * garbage, deep nesting) never crashes and is reported as malformed.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "herald/proto.h"
#include "herald/proto_client.h"

static unsigned char *unhex(const char *hex, size_t *len)
{
    size_t n = strlen(hex) / 2;
    unsigned char *out = malloc(n + 1);
    cr_assert_not_null(out);
    for (size_t i = 0; i < n; i++) {
        unsigned int byte;
        cr_assert(sscanf(hex + 2 * i, "%2x", &byte) == 1);
        out[i] = (unsigned char)byte;
    }
    *len = n;
    return out;
}

static uint64_t get_u64(const json_t *v)
{
    if (json_is_string(v))
        return strtoull(json_string_value(v), NULL, 10);
    return (uint64_t)json_integer_value(v);
}

static int slice_eq(proto_slice s, const char *want)
{
    size_t n = want ? strlen(want) : 0;
    if (!want || !*want)
        return s.len == 0;
    return s.len == n && memcmp(s.ptr, want, n) == 0;
}

static const char *sget(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The data of a vector publication in the encoding a subscriber gets. */
static void want_data(const json_t *spec, proto_enc enc, proto_buf *out,
                      int *binary)
{
    proto_data d;
    void *owned = NULL;
    proto_error err;
    const char *js = sget(spec, "json");
    int rc;
    if (js) {
        rc = proto_data_from_json(js, strlen(js), &d, &owned, &err);
    } else {
        size_t n;
        unsigned char *mp = unhex(sget(spec, "msgpack_hex"), &n);
        rc = proto_data_from_msgpack(mp, n, &d, &owned, &err);
        free(mp);
    }
    cr_assert_eq(rc, PROTO_OK);
    proto_buf_reset(out);
    if (enc == PROTO_JSON)
        proto_buf_append(out, d.json.ptr, d.json.len);
    else
        proto_buf_append(out, d.mp.ptr, d.mp.len);
    *binary = enc == PROTO_JSON && d.binary;
    free(owned);
}

static void check_pub(const char *name, proto_enc enc, const json_t *w,
                      const proto_spub *p)
{
    proto_buf b;
    int binary;
    const json_t *info = json_object_get(w, "info");

    proto_buf_init(&b, 0);
    cr_expect(slice_eq(p->channel, sget(w, "channel")), "[%s] channel", name);
    cr_expect(slice_eq(p->epoch, sget(w, "epoch")), "[%s] epoch", name);
    cr_expect_eq(p->offset, get_u64(json_object_get(w, "offset")),
                 "[%s] offset", name);
    want_data(json_object_get(w, "data"), enc, &b, &binary);
    cr_expect(p->data.len == b.len &&
              !memcmp(p->data.ptr, proto_buf_data(&b), b.len),
              "[%s/%d] data '%.*s'", name, enc, (int)p->data.len, p->data.ptr);
    cr_expect_eq(p->binary, binary, "[%s] binary", name);
    if (info) {
        cr_expect(p->has_info, "[%s] info", name);
        cr_expect(slice_eq(p->info.client, sget(info, "client")),
                  "[%s] info.client", name);
        cr_expect(slice_eq(p->info.user, sget(info, "user")),
                  "[%s] info.user", name);
    }
    if (json_object_get(w, "time"))
        cr_expect_eq(p->time_ms, json_integer_value(json_object_get(w, "time")));
    proto_buf_free(&b);
}

static void check_vector(const json_t *v, proto_enc enc)
{
    const char *name = sget(v, "name"), *kind = sget(v, "kind");
    const json_t *a = json_object_get(v, "args");
    unsigned char *buf;
    size_t len;
    proto_sreader r;
    proto_smsg m;
    proto_error err;
    int rc;

    if (enc == PROTO_JSON) {
        len = strlen(sget(v, "json"));
        buf = malloc(len + 1);
        memcpy(buf, sget(v, "json"), len);
    } else {
        buf = unhex(sget(v, "msgpack_hex"), &len);
    }
    proto_sreader_init(&r, enc);
    proto_sreader_frame(&r, buf, len);
    rc = proto_snext(&r, &m, &err);
    cr_assert_eq(rc, 1, "[%s/%d] decode failed: %s", name, enc, err.message);
    cr_expect(m.raw.len == len, "[%s] raw spans the message", name);

    if (!strcmp(kind, "error")) {
        cr_expect_eq(m.kind, PROTO_SMSG_ERROR, "[%s]", name);
        cr_expect_eq(m.id, get_u64(json_object_get(a, "id")), "[%s] id", name);
        cr_expect_eq(m.code, json_integer_value(json_object_get(a, "code")));
        if (sget(a, "message"))
            cr_expect(slice_eq(m.message, sget(a, "message")),
                      "[%s/%d] message '%.*s'", name, enc, (int)m.message.len,
                      m.message.ptr);
    } else if (!strncmp(kind, "ok_", 3)) {
        cr_expect_eq(m.kind, PROTO_SMSG_OK, "[%s]", name);
        cr_expect_eq(m.id, get_u64(json_object_get(a, "id")), "[%s] id", name);
        cr_expect(m.ok.len > 0);
        if (!strcmp(kind, "ok_connect")) {
            cr_expect(slice_eq(m.client, sget(a, "client")));
            cr_expect(slice_eq(m.node, sget(a, "node")));
            cr_expect_eq(m.ping, json_integer_value(json_object_get(a, "ping")));
            cr_expect_eq(m.expires, json_integer_value(json_object_get(a, "expires")));
        }
        if (!strcmp(kind, "ok_expires"))
            cr_expect_eq(m.expires, json_integer_value(json_object_get(a, "expires")),
                         "[%s] expires", name);
        if (json_object_get(a, "offset")) {
            cr_expect(m.has_offset && m.has_epoch, "[%s]", name);
            cr_expect_eq(m.offset, get_u64(json_object_get(a, "offset")));
            cr_expect(slice_eq(m.epoch, sget(a, "epoch")), "[%s] epoch", name);
        }
        if (!strcmp(kind, "ok_subscribe")) {
            const json_t *rec = json_object_get(a, "recovered");
            cr_expect_eq(m.recovered, json_is_boolean(rec) ? json_is_true(rec) : -1,
                         "[%s] recovered", name);
            cr_expect_eq(m.has_pubs, json_is_boolean(rec), "[%s] pubs", name);
        }
        const json_t *pubs = json_object_get(a, "publications");
        if (json_is_array(pubs) && m.has_pubs) {
            proto_siter it;
            proto_spub p;
            size_t i = 0;
            cr_expect_eq(proto_siter_pubs(&it, &r, m.pubs),
                         (long)json_array_size(pubs), "[%s] count", name);
            while ((rc = proto_siter_next_pub(&it, &p, &err)) == 1) {
                cr_assert(i < json_array_size(pubs));
                check_pub(name, enc, json_array_get(pubs, i), &p);
                i++;
            }
            cr_expect_eq(rc, 0, "[%s] %s", name, err.message);
            cr_expect_eq(i, json_array_size(pubs));
        }
        if (!strcmp(kind, "ok_presence")) {
            proto_siter it;
            proto_presence_entry e;
            const json_t *cl = json_object_get(a, "clients");
            size_t i = 0;
            cr_assert(m.has_clients);
            cr_expect_eq(proto_siter_clients(&it, &r, m.clients),
                         (long)json_array_size(cl));
            while ((rc = proto_siter_next_client(&it, &e, &err)) == 1) {
                const json_t *w = json_array_get(cl, i++);
                cr_expect(slice_eq(e.client, sget(w, "client")));
                cr_expect(slice_eq(e.user, sget(w, "user")), "[%s] user", name);
            }
            cr_expect_eq(rc, 0);
            cr_expect_eq(i, json_array_size(cl));
        }
    } else if (!strcmp(kind, "push_pub")) {
        cr_expect_eq(m.kind, PROTO_SMSG_PUB, "[%s]", name);
        check_pub(name, enc, a, &m.pub);
    } else if (!strcmp(kind, "push_join")) {
        const json_t *info = json_object_get(a, "info");
        cr_expect_eq(m.kind, json_is_true(json_object_get(a, "join"))
                                 ? PROTO_SMSG_JOIN : PROTO_SMSG_LEAVE);
        cr_expect(slice_eq(m.pub.channel, sget(a, "channel")));
        cr_expect(slice_eq(m.pub.info.client, sget(info, "client")));
        cr_expect(slice_eq(m.pub.info.user, sget(info, "user")));
    } else if (!strcmp(kind, "push_unsubscribe")) {
        cr_expect_eq(m.kind, PROTO_SMSG_UNSUBSCRIBE);
        cr_expect(slice_eq(m.pub.channel, sget(a, "channel")));
        cr_expect_eq(m.code, json_integer_value(json_object_get(a, "code")));
        cr_expect(slice_eq(m.message, sget(a, "reason")));
    } else if (!strcmp(kind, "push_disconnect")) {
        cr_expect_eq(m.kind, PROTO_SMSG_DISCONNECT);
        cr_expect_eq(m.code, json_integer_value(json_object_get(a, "code")));
        cr_expect(slice_eq(m.message, sget(a, "reason")));
        cr_expect_eq(m.reconnect, json_is_true(json_object_get(a, "reconnect")));
    } else {
        cr_assert_fail("unknown kind %s", kind);
    }
    cr_expect_eq(proto_snext(&r, &m, &err), 0, "[%s] frame exhausted", name);
    proto_sreader_free(&r);
    free(buf);
}

Test(proto_client, encode_vectors_decode_back)
{
    char path[1024];
    json_error_t je;
    json_t *root, *vecs, *v;
    size_t i, done = 0;

    snprintf(path, sizeof(path), "%s/encode.json", HERALD_VECTORS_DIR);
    root = json_load_file(path, 0, &je);
    cr_assert_not_null(root, "%s: %s", path, je.text);
    vecs = json_object_get(root, "vectors");
    json_array_foreach(vecs, i, v) {
        if (!strcmp(sget(v, "kind"), "cmd"))
            continue;
        check_vector(v, PROTO_JSON);
        check_vector(v, PROTO_MSGPACK);
        done++;
    }
    cr_expect(done >= 20, "only %zu vectors", done);
    json_decref(root);
}

/* Decodes all messages of one frame; returns how many decoded (-1 entries
 * counted in *bad). */
static int decode_all(proto_enc enc, const void *buf, size_t len, int *bad,
                      proto_smsg *out, int max)
{
    proto_sreader r;
    proto_smsg m;
    proto_error err;
    int rc, n = 0;
    *bad = 0;
    proto_sreader_init(&r, enc);
    proto_sreader_frame(&r, buf, len);
    while ((rc = proto_snext(&r, &m, &err)) != 0) {
        if (rc < 0) {
            (*bad)++;
            continue;
        }
        if (n < max)
            out[n] = m;   /* scalar fields only are used after the loop */
        n++;
    }
    proto_sreader_free(&r);
    return n;
}

Test(proto_client, json_batching)
{
    const char *f = "{\"id\":1,\"ok\":{}}\n{\"push\":\"pub\",\"channel\":\"a\","
                    "\"offset\":7,\"epoch\":\"e\",\"data\":[1,2]}\r\n"
                    "{\"id\":2,\"error\":{\"code\":105,\"message\":\"x\"}}\n";
    proto_smsg m[4];
    int bad, n = decode_all(PROTO_JSON, f, strlen(f), &bad, m, 4);
    cr_assert_eq(n, 3);
    cr_expect_eq(bad, 0);
    cr_expect_eq(m[0].kind, PROTO_SMSG_OK);
    cr_expect_eq(m[0].id, 1);
    cr_expect_eq(m[1].kind, PROTO_SMSG_PUB);
    cr_expect_eq(m[1].pub.offset, 7);
    cr_expect_eq(m[2].kind, PROTO_SMSG_ERROR);
    cr_expect_eq(m[2].code, 105);

    /* A bad line in the middle does not affect its neighbours. */
    const char *g = "{\"id\":1,\"ok\":{}}\n{bad\n\n{\"id\":3,\"ok\":{}}";
    n = decode_all(PROTO_JSON, g, strlen(g), &bad, m, 4);
    cr_expect_eq(n, 2);
    cr_expect_eq(bad, 2);
    cr_expect_eq(m[1].id, 3);
}

Test(proto_client, msgpack_concatenation)
{
    proto_buf b;
    proto_pub p;
    proto_data d;
    void *owned;
    proto_error err;
    proto_smsg m[4];
    int bad, n;

    proto_buf_init(&b, 0);
    cr_assert_eq(proto_data_from_json("{\"k\":\"v\"}", 9, &d, &owned, &err), 0);
    memset(&p, 0, sizeof(p));
    p.channel = (proto_slice){ "ch", 2 };
    p.epoch = (proto_slice){ "E", 1 };
    p.offset = UINT64_MAX;
    p.data = d;
    size_t ends[3];
    proto_enc_ok_publish(&b, PROTO_MSGPACK, 9, 5, (proto_slice){ "E", 1 });
    ends[0] = b.len;
    proto_enc_push_pub(&b, PROTO_MSGPACK, &p);
    ends[1] = b.len;
    proto_enc_push_disconnect(&b, PROTO_MSGPACK, 4001, "slow", 1);
    ends[2] = b.len;
    n = decode_all(PROTO_MSGPACK, proto_buf_data(&b), b.len, &bad, m, 4);
    cr_assert_eq(n, 3);
    cr_expect_eq(bad, 0);
    cr_expect_eq(m[0].offset, 5);
    cr_expect_eq(m[1].pub.offset, UINT64_MAX);
    cr_expect_eq(m[2].code, 4001);
    cr_expect_eq(m[2].reconnect, 1);

    /* Truncated at every byte: never crashes; a cut object is malformed. */
    for (size_t cut = 0; cut < b.len; cut++) {
        int whole = (cut >= ends[0]) + (cut >= ends[1]) + (cut >= ends[2]);
        int at_end = cut == 0 || cut == ends[0] || cut == ends[1];
        n = decode_all(PROTO_MSGPACK, proto_buf_data(&b), cut, &bad, m, 4);
        cr_expect(n == whole && bad == !at_end, "cut %zu: %d ok %d bad", cut,
                  n, bad);
    }
    free(owned);
    proto_buf_free(&b);
}

Test(proto_client, json_truncation_and_garbage)
{
    const char *full = "{\"push\":\"pub\",\"channel\":\"a\",\"offset\":1,"
                       "\"epoch\":\"e\",\"data\":{\"x\":[1,\"\\u00e9\",null]},"
                       "\"info\":{\"client\":\"c\",\"user\":\"u\\\"q\"}}";
    proto_smsg m[2];
    int bad, n;
    size_t len = strlen(full);
    for (size_t cut = 1; cut < len; cut++) {
        n = decode_all(PROTO_JSON, full, cut, &bad, m, 2);
        cr_expect(n == 0 && bad == 1, "cut at %zu decoded", cut);
    }
    n = decode_all(PROTO_JSON, full, len, &bad, m, 2);
    cr_expect_eq(n, 1);

    const char *junk[] = { "[]", "1", "\"x\"", "{}", "{\"id\":0,\"ok\":{}}",
                           "{\"ok\":{}}", "{\"push\":\"pub\"}",
                           "{\"id\":1,\"ok\":[]}", "{\"id\":1,\"ok\":{}} x",
                           "{\"id\":1.5,\"ok\":{}}", "{\"id\":\"1\",\"ok\":{}}",
                           "{\"id\":1,\"ok\":{\"offset\":-1}}",
                           "{\"id\":1,\"ok\":{\"recovered\":1}}",
                           "{\"a\":\"\x01\"}", "{\"a\":\"\\x\"}", "nul",
                           "{\"push\":\"disconnect\"}" };
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        n = decode_all(PROTO_JSON, junk[i], strlen(junk[i]), &bad, m, 2);
        cr_expect(n == 0 && bad == 1, "accepted %s", junk[i]);
    }

    /* Deep nesting is refused, not recursed into without bound. */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 64);
    size_t k = (size_t)sprintf(deep, "{\"id\":1,\"ok\":{\"x\":");
    memset(deep + k, '[', depth);
    memset(deep + k + depth, ']', depth);
    strcpy(deep + k + 2 * depth, "}}");
    n = decode_all(PROTO_JSON, deep, strlen(deep), &bad, m, 2);
    cr_expect(n == 0 && bad == 1);
    free(deep);
}

Test(proto_client, escapes_unknown_keys_and_pushes)
{
    proto_sreader r;
    proto_smsg m;
    proto_error err;
    const char *f =
        "{\"push\":\"pub\",\"future\":{\"a\":[1]},\"channel\":\"a\",\"offset\":"
        "18446744073709551615,\"epoch\":\"e\",\"data\":18446744073709551615,"
        "\"info\":{\"client\":\"c\",\"user\":\"\\ud83d\\ude00\\n\\u00e9\"}}\n"
        "{\"push\":\"sparkle\",\"x\":1}\n"
        "{\"id\":4,\"error\":{\"code\":102,\"message\":\"a\\\\b\\\"c\"}}";
    proto_sreader_init(&r, PROTO_JSON);
    proto_sreader_frame(&r, f, strlen(f));
    cr_assert_eq(proto_snext(&r, &m, &err), 1, "%s", err.message);
    cr_expect_eq(m.pub.offset, UINT64_MAX);
    cr_expect(slice_eq(m.pub.data, "18446744073709551615"));
    cr_expect(slice_eq(m.pub.info.user, "\xf0\x9f\x98\x80\n\xc3\xa9"));
    cr_assert_eq(proto_snext(&r, &m, &err), 1);
    cr_expect_eq(m.kind, PROTO_SMSG_OTHER);
    cr_expect(slice_eq(m.push, "sparkle"));
    cr_assert_eq(proto_snext(&r, &m, &err), 1);
    cr_expect(slice_eq(m.message, "a\\b\"c"));
    cr_expect_eq(proto_snext(&r, &m, &err), 0);
    proto_sreader_free(&r);
}

Test(proto_client, data_to_json)
{
    proto_buf b;
    proto_error err;
    const unsigned char bin[] = { 0xc4, 0x03, 'a', 'b', 'c' };
    const unsigned char map[] = { 0x81, 0xa1, 'k', 0xcf, 0xff, 0xff, 0xff,
                                  0xff, 0xff, 0xff, 0xff, 0xff };
    proto_buf_init(&b, 0);
    cr_assert_eq(proto_data_to_json(PROTO_MSGPACK,
                                    (proto_slice){ (const char *)bin, 5 }, &b,
                                    &err), PROTO_OK);
    cr_expect(b.len == 6 && !memcmp(proto_buf_data(&b), "\"YWJj\"", 6));
    proto_buf_reset(&b);
    cr_assert_eq(proto_data_to_json(PROTO_MSGPACK,
                                    (proto_slice){ (const char *)map, 12 }, &b,
                                    &err), PROTO_OK);
    cr_expect(b.len == 26 &&
              !memcmp(proto_buf_data(&b), "{\"k\":18446744073709551615}", 26),
              "%.*s", (int)b.len, proto_buf_data(&b));
    proto_buf_reset(&b);
    cr_assert_eq(proto_data_to_json(PROTO_JSON, (proto_slice){ "[1]", 3 }, &b,
                                    &err), PROTO_OK);
    cr_expect(b.len == 3);
    proto_buf_free(&b);
}

/* The string scan steps over 8 plain bytes at a time: a quote, an escape or
 * a control byte at any position of a long string must still be seen, and
 * bytes >= 0x80 (UTF-8) are plain. The data slice is the JSON value as
 * sent (quotes included). */
Test(proto_client, string_scan_every_position)
{
    static const char *const inserts[] = { "\\\"", "\x01", "\xc3\xa9",
                                           "\\\\", "\\u00e9" };
    char data[96], frame[256];
    for (size_t pos = 0; pos < 40; pos++) {
        for (size_t kind = 0; kind < 5; kind++) {
            proto_sreader r;
            proto_smsg m;
            proto_error err;
            snprintf(data, sizeof(data), "%.*s%s%.*s", (int)pos,
                     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", inserts[kind],
                     (int)(40 - pos), "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
            snprintf(frame, sizeof(frame),
                     "{\"push\":\"pub\",\"channel\":\"c\",\"offset\":1,"
                     "\"epoch\":\"e\",\"data\":\"%s\"}", data);
            proto_sreader_init(&r, PROTO_JSON);
            proto_sreader_frame(&r, frame, strlen(frame));
            int rc = proto_snext(&r, &m, &err);
            if (kind == 1) {
                cr_expect_eq(rc, -1, "control byte at %zu accepted", pos);
            } else {
                cr_expect_eq(rc, 1, "pos %zu kind %zu: %s", pos, kind,
                             err.message);
                if (rc == 1)
                    cr_expect_eq(m.pub.data.len, strlen(data) + 2,
                                 "pos %zu kind %zu", pos, kind);
            }
            proto_sreader_free(&r);
        }
    }
}
