/*
 * Fuzzing harness of the server's command decoder (proto_reader_init,
 * proto_next in protocol/): the input is one received frame in the
 * encoding FUZZ_ENC (fuzz_cmd_json: a text frame of '\n'-separated
 * commands; fuzz_cmd_msgpack: concatenated msgpack objects). Beyond not
 * crashing, leaking or tripping a sanitizer, every result must keep the
 * codec's promises:
 *  - each call moves through the frame (no command is read twice);
 *  - an error carries a decoder code (102, 104, 107) and a printable
 *    message, and its reply decodes back (client decoder) to the same id,
 *    code and message;
 *  - a command has an id, a known op, a valid channel where the op needs
 *    one, bounded NUL-free UTF-8 strings, NUL-terminated owned slices, and
 *    publish data in both encodings: one whole msgpack object, JSON text
 *    without line breaks (JSON publishers' text also parses with jansson);
 *  - re-encoding the command (proto_enc_cmd) and decoding it again gives
 *    the same command;
 *  - publish data, pushed to subscribers in both encodings and in a
 *    history reply, reaches the client decoder byte-exact, and a msgpack
 *    publisher's JSON form is what the client's converter makes of it.
 */
#include <jansson.h>
#include <msgpack.h>

#include <herald/proto.h>
#include <herald/proto_client.h>

#include "fuzzkit.h"

#ifndef FUZZ_ENC
#error "FUZZ_ENC must be PROTO_JSON or PROTO_MSGPACK"
#endif

static const proto_enc enc = FUZZ_ENC;

/* A slice the decoder owns: NUL-terminated, readable, length-bounded,
 * UTF-8 and free of NUL (every string field of a command). */
static void check_str(proto_slice s, size_t max)
{
    if (!s.ptr)
        return;
    fuzz_touch(s.ptr, s.len + 1);
    FUZZ_CHECK(s.ptr[s.len] == '\0');
    FUZZ_CHECK(s.len <= max);
    FUZZ_CHECK(!memchr(s.ptr, '\0', s.len));
    FUZZ_CHECK(fuzz_utf8(s.ptr, s.len));
}

/* One whole msgpack object, nothing after it. */
static void check_mp_object(proto_slice mp)
{
    msgpack_unpacked u;
    size_t off = 0;
    msgpack_unpacked_init(&u);
    FUZZ_CHECK(msgpack_unpack_next(&u, mp.ptr, mp.len, &off) ==
               MSGPACK_UNPACK_SUCCESS);
    FUZZ_CHECK(off == mp.len);
    msgpack_unpacked_destroy(&u);
}

static void check_data(const proto_data *d)
{
    FUZZ_CHECK(d->json.ptr && d->json.len > 0 && d->mp.ptr && d->mp.len > 0);
    fuzz_touch(d->json.ptr, d->json.len);
    /* Pushes are '\n'-batched: data must never carry a line break. */
    FUZZ_CHECK(!memchr(d->json.ptr, '\n', d->json.len));
    FUZZ_CHECK(!memchr(d->json.ptr, '\r', d->json.len));
    check_mp_object(d->mp);
    unsigned char first = (unsigned char)d->mp.ptr[0];
    FUZZ_CHECK(d->binary == (first >= 0xc4 && first <= 0xc6));
    if (enc == PROTO_JSON) {
        /* The publisher's own text, so still JSON to jansson. */
        json_t *v = json_loadb(d->json.ptr, d->json.len,
                               JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        FUZZ_CHECK(v != NULL);
        json_decref(v);
        FUZZ_CHECK(!d->binary);
    }
}

static void check_cmd(const proto_cmd *c)
{
    FUZZ_CHECK(c->id != 0);
    FUZZ_CHECK(c->op >= PROTO_OP_CONNECT && c->op <= PROTO_OP_PING);
    int chan = c->op != PROTO_OP_CONNECT && c->op != PROTO_OP_PING;
    FUZZ_CHECK(chan == (c->channel.ptr != NULL));
    if (chan) {
        check_str(c->channel, PROTO_CHANNEL_MAX);
        FUZZ_CHECK(proto_channel_valid(c->channel.ptr, c->channel.len));
    }
    check_str(c->token, PROTO_TOKEN_MAX);
    check_str(c->name, PROTO_NAME_MAX);
    check_str(c->version, PROTO_NAME_MAX);
    FUZZ_CHECK(c->has_since == (c->since_epoch.ptr != NULL));
    check_str(c->since_epoch, PROTO_EPOCH_MAX);
    if (c->has_since)
        FUZZ_CHECK(c->op == PROTO_OP_SUBSCRIBE || c->op == PROTO_OP_HISTORY);
    if (c->has_limit || c->reverse)
        FUZZ_CHECK(c->op == PROTO_OP_HISTORY);
    FUZZ_CHECK((c->op == PROTO_OP_PUBLISH) == (c->data.json.ptr != NULL));
    if (c->op == PROTO_OP_PUBLISH)
        check_data(&c->data);
}

static int same_slice(proto_slice a, proto_slice b)
{
    return (a.ptr == NULL) == (b.ptr == NULL) &&
           fuzz_same(a.ptr, a.len, b.ptr, b.len);
}

/* proto_enc_cmd, then proto_next: the same command comes back. */
static void roundtrip_cmd(const proto_cmd *c)
{
    proto_cmd_out o = {
        .id = c->id, .op = c->op, .channel = c->channel, .token = c->token,
        .name = c->name, .version = c->version, .has_since = c->has_since,
        .since_offset = c->since_offset, .since_epoch = c->since_epoch,
        .has_limit = c->has_limit, .limit = c->limit, .reverse = c->reverse,
    };
    if (c->op == PROTO_OP_PUBLISH)
        o.data = enc == PROTO_JSON ? c->data.json : c->data.mp;
    proto_buf b;
    proto_buf_init(&b, 0);
    proto_enc_cmd(&b, enc, &o);

    proto_reader r;
    proto_cmd d;
    proto_error err;
    proto_reader_init(&r, enc, proto_buf_data(&b), b.len);
    int rc = proto_next(&r, &d, &err);
    if (rc != 1)
        fprintf(stderr, "re-encoded command refused: %d %s\n", err.code,
                err.message);
    FUZZ_CHECK(rc == 1);
    FUZZ_CHECK(r.pos == r.len);
    FUZZ_CHECK(d.id == c->id && d.op == c->op);
    FUZZ_CHECK(same_slice(d.channel, c->channel));
    FUZZ_CHECK(same_slice(d.token, c->token));
    FUZZ_CHECK(same_slice(d.name, c->name));
    FUZZ_CHECK(same_slice(d.version, c->version));
    FUZZ_CHECK(d.has_since == c->has_since &&
               d.since_offset == c->since_offset);
    FUZZ_CHECK(same_slice(d.since_epoch, c->since_epoch));
    FUZZ_CHECK(d.has_limit == c->has_limit && d.limit == c->limit);
    FUZZ_CHECK(d.reverse == c->reverse);
    FUZZ_CHECK(same_slice(d.data.json, c->data.json));
    FUZZ_CHECK(same_slice(d.data.mp, c->data.mp));
    FUZZ_CHECK(d.data.binary == c->data.binary);
    proto_cmd_free(&d);
    proto_buf_free(&b);
}

/* One decoded publication against what was encoded. */
static void check_spub(const proto_spub *s, const proto_pub *p,
                       proto_enc e)
{
    FUZZ_CHECK(same_slice(s->channel, p->channel));
    FUZZ_CHECK(s->offset == p->offset);
    FUZZ_CHECK(same_slice(s->epoch, p->epoch));
    FUZZ_CHECK(s->time_ms == p->time_ms);
    FUZZ_CHECK(s->has_info == (p->info != NULL));
    if (p->info) {
        FUZZ_CHECK(fuzz_same(s->info.client.ptr, s->info.client.len,
                             p->info->client.ptr, p->info->client.len));
        FUZZ_CHECK(fuzz_same(s->info.user.ptr, s->info.user.len,
                             p->info->user.ptr, p->info->user.len));
    }
    if (e == PROTO_JSON) {
        FUZZ_CHECK(same_slice(s->data, p->data.json));
        FUZZ_CHECK(s->binary == p->data.binary);
    } else {
        FUZZ_CHECK(same_slice(s->data, p->data.mp));
    }
    /* What a client makes of the data as JSON. */
    proto_buf j;
    proto_error err;
    proto_buf_init(&j, 0);
    FUZZ_CHECK(proto_data_to_json(e, s->data, &j, &err) == PROTO_OK);
    if (enc == PROTO_MSGPACK)
        /* A msgpack publisher's JSON form is that same conversion. */
        FUZZ_CHECK(fuzz_same(proto_buf_data(&j), j.len, p->data.json.ptr,
                             p->data.json.len));
    proto_buf_free(&j);
}

/* A publish as subscribers get it: a pub push and a history reply of two,
 * batched in one frame, in each encoding. */
static void deliver(const proto_cmd *c)
{
    static const proto_client_info info = {
        .client = { "c0ffee0123456789", 16 }, .user = { "user", 4 } };
    proto_slice epoch = c->since_epoch.ptr ? c->since_epoch
                                           : (proto_slice){ "e", 1 };
    proto_pub p = {
        .channel = c->channel, .offset = (uint64_t)c->id << 31 | c->id,
        .epoch = epoch, .data = c->data,
        .info = c->id & 1 ? &info : NULL,
        .time_ms = c->id & 2 ? 1700000000123 : 0,
    };
    proto_pub two[2] = { p, p };
    two[1].offset++;

    for (int e = PROTO_JSON; e <= PROTO_MSGPACK; e++) {
        proto_buf b;
        proto_buf_init(&b, 0);
        proto_enc_push_pub(&b, e, &p);
        proto_buf_sep(&b, e);
        proto_enc_ok_history(&b, e, c->id, epoch, two[1].offset, two, 2);

        proto_sreader r;
        proto_smsg m;
        proto_error err;
        proto_sreader_init(&r, e);
        proto_sreader_frame(&r, proto_buf_data(&b), b.len);
        FUZZ_CHECK(proto_snext(&r, &m, &err) == 1);
        FUZZ_CHECK(m.kind == PROTO_SMSG_PUB);
        check_spub(&m.pub, &p, e);
        FUZZ_CHECK(proto_snext(&r, &m, &err) == 1);
        FUZZ_CHECK(m.kind == PROTO_SMSG_OK && m.id == c->id && m.has_pubs);
        proto_siter it;
        FUZZ_CHECK(proto_siter_pubs(&it, &r, m.pubs) == 2);
        for (int k = 0; k < 2; k++) {
            proto_spub s;
            FUZZ_CHECK(proto_siter_next_pub(&it, &s, &err) == 1);
            check_spub(&s, &two[k], e);
        }
        proto_spub s;
        FUZZ_CHECK(proto_siter_next_pub(&it, &s, &err) == 0);
        FUZZ_CHECK(proto_snext(&r, &m, &err) == 0);
        proto_sreader_free(&r);
        proto_buf_free(&b);
    }

    if (enc == PROTO_JSON) {
        /* JSON data always has a msgpack form that converts back. */
        proto_data d;
        void *owned = NULL;
        proto_error err;
        FUZZ_CHECK(proto_data_from_msgpack(c->data.mp.ptr, c->data.mp.len,
                                           &d, &owned, &err) == PROTO_OK);
        free(owned);
    }
}

/* The error reply the server would send decodes back to the same error. */
static void check_error(const proto_error *err)
{
    FUZZ_CHECK(err->code == PROTO_E_BAD_REQUEST ||
               err->code == PROTO_E_BAD_CHANNEL ||
               err->code == PROTO_E_UNKNOWN_OP);
    size_t n = strnlen(err->message, sizeof err->message);
    FUZZ_CHECK(n > 0 && n < sizeof err->message);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(err->message[i] >= 0x20 && err->message[i] < 0x7f);

    proto_buf b;
    proto_buf_init(&b, 0);
    proto_enc_error(&b, enc, err->id, err->code, err->message);
    proto_sreader r;
    proto_smsg m;
    proto_error e2;
    proto_sreader_init(&r, enc);
    proto_sreader_frame(&r, proto_buf_data(&b), b.len);
    FUZZ_CHECK(proto_snext(&r, &m, &e2) == 1);
    FUZZ_CHECK(m.kind == PROTO_SMSG_ERROR && m.id == err->id &&
               m.code == err->code);
    FUZZ_CHECK(fuzz_same(m.message.ptr, m.message.len, err->message, n));
    proto_sreader_free(&r);
    proto_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    proto_reader r;
    proto_cmd cmd;
    proto_error err;
    size_t last = 0;
    int rc;

    proto_reader_init(&r, enc, data, size);
    while ((rc = proto_next(&r, &cmd, &err)) != 0) {
        FUZZ_CHECK(r.pos > last && r.pos <= r.len);
        last = r.pos;
        if (rc < 0) {
            check_error(&err);
            continue;
        }
        FUZZ_CHECK(rc == 1);
        check_cmd(&cmd);
        roundtrip_cmd(&cmd);
        if (cmd.op == PROTO_OP_PUBLISH)
            deliver(&cmd);
        proto_cmd_free(&cmd);
    }
    FUZZ_CHECK(r.pos == r.len || size == 0);
    return 0;
}
