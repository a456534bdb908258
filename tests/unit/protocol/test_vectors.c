/*
 * Runs the shared protocol test vectors (the JSON files in protocol/vectors,
 * see the README there) against the C codec: every decode vector through
 * proto_next(), every encode vector through the matching proto_enc_*()
 * in both encodings, every data vector through proto_data_from_*(). The
 * same files drive the JavaScript SDK's tests, so a failure here means the
 * codec and the written contract disagree. Checks are non-fatal and name
 * the vector, so one run lists every disagreement.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "herald/proto.h"

#ifndef HERALD_VECTORS_DIR
#error "HERALD_VECTORS_DIR must name protocol/vectors"
#endif

/* --- Helpers ------------------------------------------------------------- */

static json_t *load_vectors(const char *file)
{
    char path[1024];
    json_error_t je;
    json_t *root, *v;

    snprintf(path, sizeof(path), "%s/%s", HERALD_VECTORS_DIR, file);
    root = json_load_file(path, 0, &je);
    cr_assert_not_null(root, "%s: %s (line %d)", path, je.text, je.line);
    v = json_object_get(root, "vectors");
    cr_assert(json_is_array(v) && json_array_size(v) > 0, "%s: no vectors", path);
    json_incref(v);
    json_decref(root);
    return v;
}

/* Decodes hex into a malloc'd buffer (never NULL, even for ""). */
static unsigned char *unhex(const char *hex, size_t *len)
{
    size_t n = strlen(hex) / 2;
    unsigned char *out = malloc(n + 1);

    cr_assert_not_null(out);
    for (size_t i = 0; i < n; i++) {
        unsigned int byte;
        cr_assert(sscanf(hex + 2 * i, "%2x", &byte) == 1, "bad hex %s", hex);
        out[i] = (unsigned char)byte;
    }
    *len = n;
    return out;
}

static char *tohex(const void *p, size_t n)
{
    char *out = malloc(2 * n + 1);

    cr_assert_not_null(out);
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", ((const unsigned char *)p)[i]);
    out[2 * n] = '\0';
    return out;
}

/* Integers beyond 2^53 are decimal strings in the vectors. */
static uint64_t get_u64(const json_t *v)
{
    if (json_is_string(v))
        return strtoull(json_string_value(v), NULL, 10);
    return (uint64_t)json_integer_value(v);
}

static const char *get_str(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static proto_slice slice_of(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    proto_slice s = { NULL, 0 };

    if (json_is_string(v)) {
        s.ptr = json_string_value(v);
        s.len = json_string_length(v);
    }
    return s;
}

/* Expected string field: absent in the vector means an unset slice. */
static void expect_slice(const char *vec, const char *field, proto_slice got,
                         const json_t *want)
{
    if (!want) {
        cr_expect(got.ptr == NULL && got.len == 0,
                  "[%s] %s should be absent, got %zu bytes", vec, field,
                  got.len);
        return;
    }
    size_t wl = json_string_length(want);
    cr_expect(got.ptr != NULL && got.len == wl &&
              memcmp(got.ptr, json_string_value(want), wl) == 0,
              "[%s] %s: got '%.*s', want '%s'", vec, field,
              (int)(got.len > 80 ? 80 : got.len), got.ptr ? got.ptr : "",
              json_string_value(want));
    /* Decoded strings are owned, NUL-terminated copies. */
    if (got.ptr)
        cr_expect(got.ptr[got.len] == '\0', "[%s] %s not NUL-terminated",
                  vec, field);
}

/* Converts a vector's data description ({"json":..} or {"msgpack_hex":..}). */
static void data_of(const json_t *spec, proto_data *d, void **owned)
{
    proto_error err;
    const char *js = get_str(spec, "json");
    const char *mh = get_str(spec, "msgpack_hex");
    int rc;

    if (js) {
        rc = proto_data_from_json(js, strlen(js), d, owned, &err);
    } else {
        size_t n;
        unsigned char *mp = unhex(mh, &n);
        rc = proto_data_from_msgpack(mp, n, d, owned, &err);
        free(mp);
    }
    cr_assert_eq(rc, PROTO_OK, "vector data rejected: %s", err.message);
}

/* --- decode.json --------------------------------------------------------- */

#define MAX_CMDS 16

Test(vectors, decode)
{
    json_t *vectors = load_vectors("decode.json");
    size_t idx;
    json_t *vec;

    json_array_foreach(vectors, idx, vec) {
        const char *name = get_str(vec, "name");
        const char *enc = get_str(vec, "enc");
        const json_t *expect = json_object_get(vec, "expect");
        const char *text = get_str(vec, "input");
        unsigned char *in;
        size_t len;
        proto_reader r;
        proto_cmd cmds[MAX_CMDS];
        proto_error errs[MAX_CMDS];
        int rcs[MAX_CMDS];
        int n = 0, rc;

        cr_assert(name && enc && json_is_array(expect), "malformed vector %zu", idx);
        if (text) {
            len = json_string_length(json_object_get(vec, "input"));
            in = malloc(len + 1);
            memcpy(in, text, len);
        } else {
            in = unhex(get_str(vec, "input_hex"), &len);
        }
        proto_reader_init(&r, strcmp(enc, "msgpack") ? PROTO_JSON : PROTO_MSGPACK,
                          in, len);
        while (n < MAX_CMDS &&
               (rc = proto_next(&r, &cmds[n], &errs[n])) != 0)
            rcs[n++] = rc;
        /* Commands must not point into the frame: scribble over it and
         * free it before looking at them (ASan catches any stale pointer). */
        memset(in, 0xa5, len);
        free(in);

        cr_expect_eq((size_t)n, json_array_size(expect),
                     "[%s] %d results, want %zu", name, n,
                     json_array_size(expect));
        for (int k = 0; k < n && (size_t)k < json_array_size(expect); k++) {
            const json_t *e = json_array_get(expect, (size_t)k);
            const json_t *ecode = json_object_get(e, "error");
            proto_cmd *c = &cmds[k];

            if (ecode) {
                cr_expect_eq(rcs[k], -1, "[%s] #%d should fail", name, k);
                if (rcs[k] != -1)
                    continue;
                cr_expect_eq(errs[k].code, json_integer_value(ecode),
                             "[%s] #%d code %d, want %lld (%s)", name, k,
                             errs[k].code, json_integer_value(ecode),
                             errs[k].message);
                cr_expect_eq(errs[k].id, get_u64(json_object_get(e, "id")),
                             "[%s] #%d error id %u, want %llu (%s)", name, k,
                             errs[k].id,
                             (unsigned long long)get_u64(json_object_get(e, "id")),
                             errs[k].message);
                cr_expect(errs[k].message[0] != '\0', "[%s] no message", name);
                continue;
            }
            cr_expect_eq(rcs[k], 1, "[%s] #%d failed: %d %s", name, k,
                         errs[k].code, errs[k].message);
            if (rcs[k] != 1)
                continue;
            cr_expect_eq(c->id, get_u64(json_object_get(e, "id")),
                         "[%s] id %u", name, c->id);
            cr_expect_str_eq(proto_op_name(c->op), get_str(e, "op"),
                             "[%s] op", name);
            expect_slice(name, "channel", c->channel, json_object_get(e, "channel"));
            expect_slice(name, "token", c->token, json_object_get(e, "token"));
            expect_slice(name, "name", c->name, json_object_get(e, "name"));
            expect_slice(name, "version", c->version, json_object_get(e, "version"));
            expect_slice(name, "idempotency_key", c->idempotency_key,
                         json_object_get(e, "idempotency_key"));

            const json_t *since = json_object_get(e, "since");
            cr_expect_eq(c->has_since, since != NULL, "[%s] has_since", name);
            if (since && c->has_since) {
                cr_expect_eq(c->since_offset, get_u64(json_object_get(since, "offset")),
                             "[%s] since.offset %llu", name,
                             (unsigned long long)c->since_offset);
                expect_slice(name, "since.epoch", c->since_epoch,
                             json_object_get(since, "epoch"));
            } else {
                cr_expect(c->since_epoch.ptr == NULL, "[%s] stray epoch", name);
            }
            const json_t *limit = json_object_get(e, "limit");
            cr_expect_eq(c->has_limit, limit != NULL, "[%s] has_limit", name);
            if (limit)
                cr_expect_eq(c->limit, get_u64(limit), "[%s] limit %u", name, c->limit);
            cr_expect_eq(c->reverse, json_is_true(json_object_get(e, "reverse")),
                         "[%s] reverse", name);

            const char *dj = get_str(e, "data_json");
            if (dj) {
                size_t ml;
                unsigned char *mp = unhex(get_str(e, "data_msgpack_hex"), &ml);
                char *gothex = tohex(c->data.mp.ptr, c->data.mp.len);
                cr_expect(c->data.json.len == strlen(dj) &&
                          memcmp(c->data.json.ptr, dj, strlen(dj)) == 0,
                          "[%s] data json '%.*s', want '%s'", name,
                          (int)c->data.json.len, c->data.json.ptr, dj);
                cr_expect_str_eq(gothex, get_str(e, "data_msgpack_hex"),
                                 "[%s] data msgpack", name);
                cr_expect_eq(c->data.binary,
                             json_is_true(json_object_get(e, "binary")),
                             "[%s] binary", name);
                free(gothex);
                free(mp);
            } else {
                cr_expect(c->data.json.len == 0 && c->data.mp.len == 0,
                          "[%s] stray data", name);
            }
        }
        for (int k = 0; k < n; k++)
            if (rcs[k] == 1)
                proto_cmd_free(&cmds[k]);
    }
    json_decref(vectors);
}

/* --- encode.json --------------------------------------------------------- */

typedef struct owned_list {
    void *p[64];
    int n;
} owned_list;

static void pub_of(const json_t *o, proto_pub *p, proto_client_info *ci,
                   owned_list *ol)
{
    const json_t *info = json_object_get(o, "info");

    memset(p, 0, sizeof(*p));
    p->channel = slice_of(o, "channel");
    p->offset = get_u64(json_object_get(o, "offset"));
    p->epoch = slice_of(o, "epoch");
    data_of(json_object_get(o, "data"), &p->data, &ol->p[ol->n++]);
    if (info) {
        memset(ci, 0, sizeof(*ci));
        ci->client = slice_of(info, "client");
        ci->user = slice_of(info, "user");
        p->info = ci;
    }
    if (json_object_get(o, "time"))
        p->time_ms = json_integer_value(json_object_get(o, "time"));
}

static void encode_one(const char *kind, const json_t *a, proto_enc enc,
                       proto_buf *b)
{
    uint32_t id = (uint32_t)get_u64(json_object_get(a, "id"));
    owned_list ol = { .n = 0 };
    proto_pub pubs[8];
    proto_client_info cis[8];
    size_t npub = 0;
    const json_t *jp = json_object_get(a, "publications");

    if (json_is_array(jp)) {
        size_t i;
        json_t *x;
        json_array_foreach(jp, i, x) {
            cr_assert(npub < 8);
            pub_of(x, &pubs[npub], &cis[npub], &ol);
            npub++;
        }
    }

    if (!strcmp(kind, "error")) {
        proto_enc_error(b, enc, id, (int)json_integer_value(json_object_get(a, "code")),
                        get_str(a, "message"));
    } else if (!strcmp(kind, "ok_empty")) {
        proto_enc_ok_empty(b, enc, id);
    } else if (!strcmp(kind, "ok_connect")) {
        proto_enc_ok_connect(b, enc, id, slice_of(a, "client"), slice_of(a, "node"),
                             (uint32_t)json_integer_value(json_object_get(a, "ping")),
                             json_integer_value(json_object_get(a, "expires")));
    } else if (!strcmp(kind, "ok_subscribe")) {
        const json_t *rec = json_object_get(a, "recovered");
        proto_enc_ok_subscribe(b, enc, id, slice_of(a, "epoch"),
                               get_u64(json_object_get(a, "offset")),
                               json_is_boolean(rec) ? json_is_true(rec) : -1,
                               npub ? pubs : NULL, npub);
    } else if (!strcmp(kind, "ok_publish")) {
        proto_enc_ok_publish_dup(b, enc, id, get_u64(json_object_get(a, "offset")),
                                 slice_of(a, "epoch"),
                                 json_is_true(json_object_get(a, "duplicate")));
    } else if (!strcmp(kind, "ok_history")) {
        proto_enc_ok_history(b, enc, id, slice_of(a, "epoch"),
                             get_u64(json_object_get(a, "offset")),
                             npub ? pubs : NULL, npub);
    } else if (!strcmp(kind, "ok_presence")) {
        proto_presence_entry e[8];
        size_t n = 0, i;
        json_t *x;
        memset(e, 0, sizeof(e));
        json_array_foreach(json_object_get(a, "clients"), i, x) {
            cr_assert(n < 8);
            e[n].client = slice_of(x, "client");
            e[n].user = slice_of(x, "user");
            e[n].conn_info = slice_of(x, "conn_info");
            n++;
        }
        proto_enc_ok_presence(b, enc, id, n ? e : NULL, n);
    } else if (!strcmp(kind, "push_pub")) {
        proto_pub p;
        proto_client_info ci;
        pub_of(a, &p, &ci, &ol);
        proto_enc_push_pub(b, enc, &p);
    } else if (!strcmp(kind, "push_join")) {
        proto_client_info ci;
        const json_t *info = json_object_get(a, "info");
        memset(&ci, 0, sizeof(ci));
        ci.client = slice_of(info, "client");
        ci.user = slice_of(info, "user");
        ci.conn_info = slice_of(info, "conn_info");
        proto_enc_push_join(b, enc, json_is_true(json_object_get(a, "join")),
                            slice_of(a, "channel"), &ci);
    } else if (!strcmp(kind, "push_disconnect")) {
        proto_enc_push_disconnect(b, enc,
                                  (int)json_integer_value(json_object_get(a, "code")),
                                  get_str(a, "reason"),
                                  json_is_true(json_object_get(a, "reconnect")));
    } else if (!strcmp(kind, "ok_expires")) {
        proto_enc_ok_expires(b, enc, id,
                             json_integer_value(json_object_get(a, "expires")));
    } else if (!strcmp(kind, "push_unsubscribe")) {
        proto_enc_push_unsubscribe(b, enc, slice_of(a, "channel"),
                                   (int)json_integer_value(json_object_get(a, "code")),
                                   get_str(a, "reason"));
    } else if (!strcmp(kind, "cmd")) {
        proto_cmd_out c;
        const json_t *since = json_object_get(a, "since");
        unsigned char *mp = NULL;
        static const char *const ops[] = { "", "connect", "subscribe", "unsubscribe",
                                           "publish", "history", "presence", "ping",
                                           "refresh", "sub_refresh" };
        memset(&c, 0, sizeof(c));
        c.id = id;
        for (int k = 1; k <= PROTO_OP_LAST; k++)
            if (!strcmp(ops[k], get_str(a, "op")))
                c.op = (proto_op)k;
        c.channel = slice_of(a, "channel");
        c.token = slice_of(a, "token");
        c.name = slice_of(a, "name");
        c.version = slice_of(a, "version");
        if (since) {
            c.has_since = 1;
            c.since_offset = get_u64(json_object_get(since, "offset"));
            c.since_epoch = slice_of(since, "epoch");
        }
        if (json_object_get(a, "limit")) {
            c.has_limit = 1;
            c.limit = (uint32_t)get_u64(json_object_get(a, "limit"));
        }
        c.reverse = json_is_true(json_object_get(a, "reverse"));
        if (enc == PROTO_JSON && get_str(a, "data_json")) {
            c.data = slice_of(a, "data_json");
        } else if (enc == PROTO_MSGPACK && get_str(a, "data_msgpack_hex")) {
            size_t n;
            mp = unhex(get_str(a, "data_msgpack_hex"), &n);
            c.data.ptr = (const char *)mp;
            c.data.len = n;
        }
        proto_enc_cmd(b, enc, &c);
        free(mp);
    } else {
        cr_assert_fail("unknown kind %s", kind);
    }
    for (int k = 0; k < ol.n; k++)
        free(ol.p[k]);
}

Test(vectors, encode)
{
    json_t *vectors = load_vectors("encode.json");
    size_t idx;
    json_t *vec;

    json_array_foreach(vectors, idx, vec) {
        const char *name = get_str(vec, "name");
        const char *kind = get_str(vec, "kind");
        const json_t *args = json_object_get(vec, "args");
        const char *want_json = get_str(vec, "json");
        const char *want_hex = get_str(vec, "msgpack_hex");
        proto_buf b;
        char *got;

        cr_assert(name && kind && args && want_json && want_hex,
                  "malformed vector %zu", idx);
        /* A headroom like the server's LWS_PRE must not shift the payload. */
        proto_buf_init(&b, 16);
        encode_one(kind, args, PROTO_JSON, &b);
        cr_expect(b.len == strlen(want_json) &&
                  memcmp(proto_buf_data(&b), want_json, b.len) == 0,
                  "[%s] json\n got: %.*s\nwant: %s", name, (int)b.len,
                  proto_buf_data(&b), want_json);
        cr_expect(proto_buf_data(&b) == b.base + 16, "[%s] headroom", name);

        proto_buf_reset(&b);
        encode_one(kind, args, PROTO_MSGPACK, &b);
        got = tohex(proto_buf_data(&b), b.len);
        cr_expect_str_eq(got, want_hex, "[%s] msgpack\n got: %s\nwant: %s", name,
                         got, want_hex);
        free(got);
        proto_buf_free(&b);
    }
    json_decref(vectors);
}

/* --- data.json ----------------------------------------------------------- */

Test(vectors, data)
{
    json_t *vectors = load_vectors("data.json");
    size_t idx;
    json_t *vec;

    json_array_foreach(vectors, idx, vec) {
        const char *name = get_str(vec, "name");
        const char *from = get_str(vec, "from");
        const json_t *want_err = json_object_get(vec, "error");
        proto_data d;
        proto_error err;
        void *owned = (void *)1;
        int rc;

        cr_assert(name && from, "malformed vector %zu", idx);
        if (!strcmp(from, "json")) {
            const char *in = get_str(vec, "input");
            size_t n = json_string_length(json_object_get(vec, "input"));
            /* Heap copy without a terminator: the codec must not read past len. */
            char *copy = malloc(n ? n : 1);
            memcpy(copy, in, n);
            rc = proto_data_from_json(copy, n, &d, &owned, &err);
            free(copy);
        } else {
            size_t n;
            unsigned char *in = unhex(get_str(vec, "input_hex"), &n);
            rc = proto_data_from_msgpack(in, n, &d, &owned, &err);
            free(in);
        }
        if (want_err) {
            cr_expect_eq(rc, json_integer_value(want_err), "[%s] rc %d", name, rc);
            cr_expect(owned == NULL && d.json.len == 0 && d.mp.len == 0,
                      "[%s] failed conversion left data behind", name);
            cr_expect(err.code == rc && err.message[0], "[%s] err not filled", name);
            continue;
        }
        cr_expect_eq(rc, PROTO_OK, "[%s] rc %d: %s", name, rc, err.message);
        if (rc != PROTO_OK)
            continue;
        const char *wj = get_str(vec, "json");
        char *gothex = tohex(d.mp.ptr, d.mp.len);
        cr_expect(d.json.len == strlen(wj) && memcmp(d.json.ptr, wj, d.json.len) == 0,
                  "[%s] json\n got: %.*s\nwant: %s", name, (int)d.json.len,
                  d.json.ptr, wj);
        cr_expect(d.json.ptr[d.json.len] == '\0', "[%s] json not terminated", name);
        cr_expect_str_eq(gothex, get_str(vec, "msgpack_hex"), "[%s] msgpack", name);
        cr_expect_eq(d.binary, json_is_true(json_object_get(vec, "binary")),
                     "[%s] binary", name);
        free(gothex);
        free(owned);
    }
    json_decref(vectors);
}
