/*
 * Encoders for every server message (replies and pushes) and for client
 * commands, in both encodings. The server runs these once per publication
 * per encoding and once per reply, so they write straight into a proto_buf:
 * JSON by hand (no jansson, no intermediate tree) and msgpack through a
 * msgpack_packer whose write callback appends to the same buffer. Each
 * message's JSON and msgpack forms sit side by side here so their keys stay
 * the same and in the order protocol-v1.md lists them. Publication data is
 * copied as ready bytes from proto_data, never re-encoded.
 */
#include <stdlib.h>
#include <string.h>

#include "proto_internal.h"

#define KEY(b, lit) proto__buf_lit((b), lit)
#define MPKEY(pk, lit) msgpack_pack_str_with_body((pk), (lit), sizeof(lit) - 1)

static void jstr(proto_buf *b, proto_slice s)
{
    proto__json_str(b, s.ptr ? s.ptr : "", s.len);
}

/* Error messages and disconnect reasons are free text from the caller and
 * go out in text frames, so bytes that are not valid UTF-8 become '?'.
 * Both are rare, so the check costs nothing that matters. */
static void jcstr(proto_buf *b, const char *s)
{
    size_t n;

    if (!s)
        s = "";
    n = strlen(s);
    if (proto__utf8_valid(s, n)) {
        proto__json_str(b, s, n);
        return;
    }
    char *copy = proto__malloc(n);
    for (size_t i = 0; i < n; i++)
        copy[i] = (unsigned char)s[i] >= 0x80 ? '?' : s[i];
    proto__json_str(b, copy, n);
    free(copy);
}

static void mstr(msgpack_packer *pk, proto_slice s)
{
    msgpack_pack_str_with_body(pk, s.ptr ? s.ptr : "", s.len);
}

static void mcstr(msgpack_packer *pk, const char *s)
{
    size_t n;

    if (!s)
        s = "";
    n = strlen(s);
    if (proto__utf8_valid(s, n)) {
        msgpack_pack_str_with_body(pk, s, n);
        return;
    }
    char *copy = proto__malloc(n);
    for (size_t i = 0; i < n; i++)
        copy[i] = (unsigned char)s[i] >= 0x80 ? '?' : s[i];
    msgpack_pack_str_with_body(pk, copy, n);
    free(copy);
}

static void jbool(proto_buf *b, int v)
{
    if (v)
        proto__buf_lit(b, "true");
    else
        proto__buf_lit(b, "false");
}

static void mbool(msgpack_packer *pk, int v)
{
    if (v)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

/* Data in the target encoding; missing bytes become null rather than a
 * malformed message. */
static void jdata(proto_buf *b, const proto_data *d)
{
    if (d->json.len)
        proto_buf_append(b, d->json.ptr, d->json.len);
    else
        proto__buf_lit(b, "null");
}

static void mdata(proto_buf *b, msgpack_packer *pk, const proto_data *d)
{
    if (d->mp.len)
        proto_buf_append(b, d->mp.ptr, d->mp.len);
    else
        msgpack_pack_nil(pk);
}

static void mp_init(msgpack_packer *pk, proto_buf *b)
{
    msgpack_packer_init(pk, b, proto__mp_write);
}

/* --- Client info: {client, user}, empty members omitted ------------------ */

/* conn_info is JSON text the server made (jansson, from a verified
 * token): written as it is in JSON, converted for msgpack. A text that
 * does not convert (never, short of a bug) is left out. */
static void json_info_members(proto_buf *b, proto_slice client,
                              proto_slice user, proto_slice conn_info)
{
    int first = 1;

    if (client.len) {
        KEY(b, "\"client\":");
        jstr(b, client);
        first = 0;
    }
    if (user.len) {
        if (!first)
            proto__buf_byte(b, ',');
        KEY(b, "\"user\":");
        jstr(b, user);
        first = 0;
    }
    if (conn_info.len) {
        if (!first)
            proto__buf_byte(b, ',');
        KEY(b, "\"conn_info\":");
        proto_buf_append(b, conn_info.ptr, conn_info.len);
    }
}

static void json_info(proto_buf *b, const proto_client_info *ci)
{
    static const proto_slice none = { NULL, 0 };
    proto__buf_byte(b, '{');
    if (ci)
        json_info_members(b, ci->client, ci->user, ci->conn_info);
    else
        json_info_members(b, none, none, none);
    proto__buf_byte(b, '}');
}

static void mp_info_members(msgpack_packer *pk, proto_slice client,
                            proto_slice user, proto_slice conn_info)
{
    proto_data d;
    void *owned = NULL;
    proto_error err;
    int has_ci = conn_info.len &&
                 proto_data_from_json(conn_info.ptr, conn_info.len, &d,
                                      &owned, &err) == PROTO_OK;
    msgpack_pack_map(pk, (client.len > 0) + (user.len > 0) + (has_ci != 0));
    if (client.len) {
        MPKEY(pk, "client");
        mstr(pk, client);
    }
    if (user.len) {
        MPKEY(pk, "user");
        mstr(pk, user);
    }
    if (has_ci) {
        MPKEY(pk, "conn_info");
        proto_buf_append((proto_buf *)pk->data, d.mp.ptr, d.mp.len);
    }
    free(owned);
}

static void mp_info(msgpack_packer *pk, const proto_client_info *ci)
{
    static const proto_slice none = { NULL, 0 };
    if (ci)
        mp_info_members(pk, ci->client, ci->user, ci->conn_info);
    else
        mp_info_members(pk, none, none, none);
}

/* --- Publications -------------------------------------------------------- */

/* A rough upper bound of the JSON size, so a push is built with at most one
 * allocation. */
static size_t pub_estimate(const proto_pub *p)
{
    size_t n = 128 + p->channel.len + p->epoch.len + p->data.json.len;

    if (p->info)
        n += 64 + p->info->client.len + p->info->user.len;
    return n;
}

static void json_pub(proto_buf *b, const proto_pub *p, int push)
{
    if (push)
        KEY(b, "{\"push\":\"pub\",\"channel\":");
    else
        KEY(b, "{\"channel\":");
    jstr(b, p->channel);
    KEY(b, ",\"offset\":");
    proto__buf_u64(b, p->offset);
    KEY(b, ",\"epoch\":");
    jstr(b, p->epoch);
    KEY(b, ",\"data\":");
    jdata(b, &p->data);
    if (p->data.binary)
        KEY(b, ",\"binary\":true");
    if (p->info) {
        KEY(b, ",\"info\":");
        json_info(b, p->info);
    }
    if (p->time_ms) {
        KEY(b, ",\"time\":");
        proto__buf_i64(b, p->time_ms);
    }
    proto__buf_byte(b, '}');
}

/* In msgpack the data is itself the (possibly bin) object, so there is no
 * "binary" key. */
static void mp_pub(proto_buf *b, msgpack_packer *pk, const proto_pub *p,
                   int push)
{
    msgpack_pack_map(pk, 4u + (push != 0) + (p->info != NULL) +
                             (p->time_ms != 0));
    if (push) {
        MPKEY(pk, "push");
        MPKEY(pk, "pub");
    }
    MPKEY(pk, "channel");
    mstr(pk, p->channel);
    MPKEY(pk, "offset");
    msgpack_pack_uint64(pk, p->offset);
    MPKEY(pk, "epoch");
    mstr(pk, p->epoch);
    MPKEY(pk, "data");
    mdata(b, pk, &p->data);
    if (p->info) {
        MPKEY(pk, "info");
        mp_info(pk, p->info);
    }
    if (p->time_ms) {
        MPKEY(pk, "time");
        msgpack_pack_int64(pk, p->time_ms);
    }
}

static void json_pubs(proto_buf *b, const proto_pub *pubs, size_t n)
{
    proto__buf_byte(b, '[');
    for (size_t i = 0; i < n; i++) {
        if (i)
            proto__buf_byte(b, ',');
        json_pub(b, &pubs[i], 0);
    }
    proto__buf_byte(b, ']');
}

static void mp_pubs(proto_buf *b, msgpack_packer *pk, const proto_pub *pubs,
                    size_t n)
{
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++)
        mp_pub(b, pk, &pubs[i], 0);
}

void proto_enc_push_pub(proto_buf *b, proto_enc enc, const proto_pub *p)
{
    msgpack_packer pk;

    proto__buf_reserve(b, pub_estimate(p));
    if (enc == PROTO_JSON) {
        json_pub(b, p, 1);
    } else {
        mp_init(&pk, b);
        mp_pub(b, &pk, p, 1);
    }
}

/* --- Replies ------------------------------------------------------------- */

/* {"id":N,"ok":  (the caller writes the ok map and closes with '}'). */
static void json_ok_head(proto_buf *b, uint32_t id)
{
    KEY(b, "{\"id\":");
    proto__buf_u64(b, id);
    KEY(b, ",\"ok\":");
}

static void mp_ok_head(msgpack_packer *pk, uint32_t id)
{
    msgpack_pack_map(pk, 2);
    MPKEY(pk, "id");
    msgpack_pack_uint32(pk, id);
    MPKEY(pk, "ok");
}

void proto_enc_error(proto_buf *b, proto_enc enc, uint32_t id, int code,
                     const char *message)
{
    msgpack_packer pk;

    if (!message)
        message = proto_code_text(code);
    if (enc == PROTO_JSON) {
        proto__buf_byte(b, '{');
        if (id) {
            KEY(b, "\"id\":");
            proto__buf_u64(b, id);
            proto__buf_byte(b, ',');
        }
        KEY(b, "\"error\":{\"code\":");
        proto__buf_i64(b, code);
        KEY(b, ",\"message\":");
        jcstr(b, message);
        KEY(b, "}}");
    } else {
        mp_init(&pk, b);
        msgpack_pack_map(&pk, id ? 2 : 1);
        if (id) {
            MPKEY(&pk, "id");
            msgpack_pack_uint32(&pk, id);
        }
        MPKEY(&pk, "error");
        msgpack_pack_map(&pk, 2);
        MPKEY(&pk, "code");
        msgpack_pack_int(&pk, code);
        MPKEY(&pk, "message");
        mcstr(&pk, message);
    }
}

void proto_enc_ok_empty(proto_buf *b, proto_enc enc, uint32_t id)
{
    msgpack_packer pk;

    if (enc == PROTO_JSON) {
        json_ok_head(b, id);
        KEY(b, "{}}");
    } else {
        mp_init(&pk, b);
        mp_ok_head(&pk, id);
        msgpack_pack_map(&pk, 0);
    }
}

void proto_enc_ok_connect(proto_buf *b, proto_enc enc, uint32_t id,
                          proto_slice client, proto_slice node,
                          uint32_t ping_s, int64_t expires)
{
    msgpack_packer pk;

    if (enc == PROTO_JSON) {
        json_ok_head(b, id);
        KEY(b, "{\"client\":");
        jstr(b, client);
        KEY(b, ",\"node\":");
        jstr(b, node);
        KEY(b, ",\"ping\":");
        proto__buf_u64(b, ping_s);
        if (expires) {
            KEY(b, ",\"expires\":");
            proto__buf_i64(b, expires);
        }
        KEY(b, "}}");
    } else {
        mp_init(&pk, b);
        mp_ok_head(&pk, id);
        msgpack_pack_map(&pk, expires ? 4 : 3);
        MPKEY(&pk, "client");
        mstr(&pk, client);
        MPKEY(&pk, "node");
        mstr(&pk, node);
        MPKEY(&pk, "ping");
        msgpack_pack_uint32(&pk, ping_s);
        if (expires) {
            MPKEY(&pk, "expires");
            msgpack_pack_int64(&pk, expires);
        }
    }
}

void proto_enc_ok_expires(proto_buf *b, proto_enc enc, uint32_t id,
                          int64_t expires)
{
    msgpack_packer pk;

    if (enc == PROTO_JSON) {
        json_ok_head(b, id);
        if (expires) {
            KEY(b, "{\"expires\":");
            proto__buf_i64(b, expires);
            KEY(b, "}}");
        } else {
            KEY(b, "{}}");
        }
    } else {
        mp_init(&pk, b);
        mp_ok_head(&pk, id);
        msgpack_pack_map(&pk, expires ? 1 : 0);
        if (expires) {
            MPKEY(&pk, "expires");
            msgpack_pack_int64(&pk, expires);
        }
    }
}

void proto_enc_ok_subscribe(proto_buf *b, proto_enc enc, uint32_t id,
                            proto_slice epoch, uint64_t offset,
                            int recovered, const proto_pub *pubs, size_t n)
{
    msgpack_packer pk;

    if (recovered < 0)
        n = 0;
    if (enc == PROTO_JSON) {
        json_ok_head(b, id);
        KEY(b, "{\"epoch\":");
        jstr(b, epoch);
        KEY(b, ",\"offset\":");
        proto__buf_u64(b, offset);
        if (recovered >= 0) {
            KEY(b, ",\"recovered\":");
            jbool(b, recovered);
            KEY(b, ",\"publications\":");
            json_pubs(b, pubs, n);
        }
        KEY(b, "}}");
    } else {
        mp_init(&pk, b);
        mp_ok_head(&pk, id);
        msgpack_pack_map(&pk, recovered >= 0 ? 4 : 2);
        MPKEY(&pk, "epoch");
        mstr(&pk, epoch);
        MPKEY(&pk, "offset");
        msgpack_pack_uint64(&pk, offset);
        if (recovered >= 0) {
            MPKEY(&pk, "recovered");
            mbool(&pk, recovered);
            MPKEY(&pk, "publications");
            mp_pubs(b, &pk, pubs, n);
        }
    }
}

void proto_enc_ok_publish_dup(proto_buf *b, proto_enc enc, uint32_t id,
                              uint64_t offset, proto_slice epoch,
                              int duplicate)
{
    msgpack_packer pk;

    if (enc == PROTO_JSON) {
        json_ok_head(b, id);
        KEY(b, "{\"offset\":");
        proto__buf_u64(b, offset);
        KEY(b, ",\"epoch\":");
        jstr(b, epoch);
        if (duplicate)
            KEY(b, ",\"duplicate\":true");
        KEY(b, "}}");
    } else {
        mp_init(&pk, b);
        mp_ok_head(&pk, id);
        msgpack_pack_map(&pk, duplicate ? 3 : 2);
        MPKEY(&pk, "offset");
        msgpack_pack_uint64(&pk, offset);
        MPKEY(&pk, "epoch");
        mstr(&pk, epoch);
        if (duplicate) {
            MPKEY(&pk, "duplicate");
            mbool(&pk, 1);
        }
    }
}

void proto_enc_ok_publish(proto_buf *b, proto_enc enc, uint32_t id,
                          uint64_t offset, proto_slice epoch)
{
    proto_enc_ok_publish_dup(b, enc, id, offset, epoch, 0);
}

void proto_enc_history_result(proto_buf *b, proto_enc enc, proto_slice epoch,
                              uint64_t offset, const proto_pub *pubs,
                              size_t n)
{
    msgpack_packer pk;

    if (enc == PROTO_JSON) {
        KEY(b, "{\"publications\":");
        json_pubs(b, pubs, n);
        KEY(b, ",\"epoch\":");
        jstr(b, epoch);
        KEY(b, ",\"offset\":");
        proto__buf_u64(b, offset);
        proto__buf_byte(b, '}');
    } else {
        mp_init(&pk, b);
        msgpack_pack_map(&pk, 3);
        MPKEY(&pk, "publications");
        mp_pubs(b, &pk, pubs, n);
        MPKEY(&pk, "epoch");
        mstr(&pk, epoch);
        MPKEY(&pk, "offset");
        msgpack_pack_uint64(&pk, offset);
    }
}

/* The head of an ok reply whose value follows (an ok_close after it). */
static void ok_open(proto_buf *b, proto_enc enc, uint32_t id)
{
    msgpack_packer pk;

    if (enc == PROTO_JSON) {
        json_ok_head(b, id);
    } else {
        mp_init(&pk, b);
        mp_ok_head(&pk, id);
    }
}

static void ok_close(proto_buf *b, proto_enc enc)
{
    if (enc == PROTO_JSON)
        proto__buf_byte(b, '}');
}

void proto_enc_ok_history(proto_buf *b, proto_enc enc, uint32_t id,
                          proto_slice epoch, uint64_t offset,
                          const proto_pub *pubs, size_t n)
{
    ok_open(b, enc, id);
    proto_enc_history_result(b, enc, epoch, offset, pubs, n);
    ok_close(b, enc);
}

void proto_enc_presence_result(proto_buf *b, proto_enc enc,
                               const proto_presence_entry *e, size_t n)
{
    msgpack_packer pk;

    if (enc == PROTO_JSON) {
        KEY(b, "{\"clients\":{");
        for (size_t i = 0; i < n; i++) {
            if (i)
                proto__buf_byte(b, ',');
            jstr(b, e[i].client);
            KEY(b, ":{");
            json_info_members(b, (proto_slice){ NULL, 0 }, e[i].user,
                              e[i].conn_info);
            proto__buf_byte(b, '}');
        }
        KEY(b, "}}");
    } else {
        mp_init(&pk, b);
        msgpack_pack_map(&pk, 1);
        MPKEY(&pk, "clients");
        msgpack_pack_map(&pk, n);
        for (size_t i = 0; i < n; i++) {
            mstr(&pk, e[i].client);
            mp_info_members(&pk, (proto_slice){ NULL, 0 }, e[i].user,
                            e[i].conn_info);
        }
    }
}

void proto_enc_ok_presence(proto_buf *b, proto_enc enc, uint32_t id,
                           const proto_presence_entry *e, size_t n)
{
    ok_open(b, enc, id);
    proto_enc_presence_result(b, enc, e, n);
    ok_close(b, enc);
}

/* --- Other pushes -------------------------------------------------------- */

void proto_enc_push_join(proto_buf *b, proto_enc enc, int join,
                         proto_slice channel, const proto_client_info *info)
{
    msgpack_packer pk;

    if (enc == PROTO_JSON) {
        if (join)
            KEY(b, "{\"push\":\"join\",\"channel\":");
        else
            KEY(b, "{\"push\":\"leave\",\"channel\":");
        jstr(b, channel);
        KEY(b, ",\"info\":");
        json_info(b, info);
        proto__buf_byte(b, '}');
    } else {
        mp_init(&pk, b);
        msgpack_pack_map(&pk, 3);
        MPKEY(&pk, "push");
        if (join)
            MPKEY(&pk, "join");
        else
            MPKEY(&pk, "leave");
        MPKEY(&pk, "channel");
        mstr(&pk, channel);
        MPKEY(&pk, "info");
        mp_info(&pk, info);
    }
}

void proto_enc_push_disconnect(proto_buf *b, proto_enc enc, int code,
                               const char *reason, int reconnect)
{
    msgpack_packer pk;

    if (enc == PROTO_JSON) {
        KEY(b, "{\"push\":\"disconnect\",\"code\":");
        proto__buf_i64(b, code);
        KEY(b, ",\"reason\":");
        jcstr(b, reason);
        KEY(b, ",\"reconnect\":");
        jbool(b, reconnect);
        proto__buf_byte(b, '}');
    } else {
        mp_init(&pk, b);
        msgpack_pack_map(&pk, 4);
        MPKEY(&pk, "push");
        MPKEY(&pk, "disconnect");
        MPKEY(&pk, "code");
        msgpack_pack_int(&pk, code);
        MPKEY(&pk, "reason");
        mcstr(&pk, reason);
        MPKEY(&pk, "reconnect");
        mbool(&pk, reconnect);
    }
}

void proto_enc_push_unsubscribe(proto_buf *b, proto_enc enc,
                                proto_slice channel, int code,
                                const char *reason)
{
    msgpack_packer pk;

    if (enc == PROTO_JSON) {
        KEY(b, "{\"push\":\"unsubscribe\",\"channel\":");
        jstr(b, channel);
        KEY(b, ",\"code\":");
        proto__buf_i64(b, code);
        KEY(b, ",\"reason\":");
        jcstr(b, reason);
        proto__buf_byte(b, '}');
    } else {
        mp_init(&pk, b);
        msgpack_pack_map(&pk, 4);
        MPKEY(&pk, "push");
        MPKEY(&pk, "unsubscribe");
        MPKEY(&pk, "channel");
        mstr(&pk, channel);
        MPKEY(&pk, "code");
        msgpack_pack_int(&pk, code);
        MPKEY(&pk, "reason");
        mcstr(&pk, reason);
    }
}

/* --- Commands (client side) ---------------------------------------------- */

void proto_enc_cmd(proto_buf *b, proto_enc enc, const proto_cmd_out *c)
{
    const proto_slice *strs[] = { &c->channel, &c->token, &c->name,
                                  &c->version };
    static const char *const names[] = { "channel", "token", "name",
                                         "version" };
    msgpack_packer pk;

    if (enc == PROTO_JSON) {
        KEY(b, "{\"id\":");
        proto__buf_u64(b, c->id);
        KEY(b, ",\"op\":");
        jcstr(b, proto_op_name(c->op));
        for (size_t k = 0; k < 4; k++) {
            if (!strs[k]->ptr)
                continue;
            KEY(b, ",\"");
            proto_buf_append(b, names[k], strlen(names[k]));
            KEY(b, "\":");
            jstr(b, *strs[k]);
        }
        if (c->has_since) {
            KEY(b, ",\"since\":{\"offset\":");
            proto__buf_u64(b, c->since_offset);
            KEY(b, ",\"epoch\":");
            jstr(b, c->since_epoch);
            proto__buf_byte(b, '}');
        }
        if (c->has_limit) {
            KEY(b, ",\"limit\":");
            proto__buf_u64(b, c->limit);
        }
        if (c->reverse)
            KEY(b, ",\"reverse\":true");
        if (c->data.ptr) {
            KEY(b, ",\"data\":");
            if (c->data.len)
                proto_buf_append(b, c->data.ptr, c->data.len);
            else
                KEY(b, "null");
        }
        proto__buf_byte(b, '}');
        return;
    }

    size_t n = 2 + (c->has_since != 0) + (c->has_limit != 0) +
               (c->reverse != 0) + (c->data.ptr != NULL);
    for (size_t k = 0; k < 4; k++)
        n += strs[k]->ptr != NULL;
    mp_init(&pk, b);
    msgpack_pack_map(&pk, n);
    MPKEY(&pk, "id");
    msgpack_pack_uint32(&pk, c->id);
    MPKEY(&pk, "op");
    mcstr(&pk, proto_op_name(c->op));
    for (size_t k = 0; k < 4; k++) {
        if (!strs[k]->ptr)
            continue;
        mcstr(&pk, names[k]);
        mstr(&pk, *strs[k]);
    }
    if (c->has_since) {
        MPKEY(&pk, "since");
        msgpack_pack_map(&pk, 2);
        MPKEY(&pk, "offset");
        msgpack_pack_uint64(&pk, c->since_offset);
        MPKEY(&pk, "epoch");
        mstr(&pk, c->since_epoch);
    }
    if (c->has_limit) {
        MPKEY(&pk, "limit");
        msgpack_pack_uint32(&pk, c->limit);
    }
    if (c->reverse) {
        MPKEY(&pk, "reverse");
        msgpack_pack_true(&pk);
    }
    if (c->data.ptr) {
        MPKEY(&pk, "data");
        if (c->data.len)
            proto_buf_append(b, c->data.ptr, c->data.len);
        else
            msgpack_pack_nil(&pk);
    }
}
