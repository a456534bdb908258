/*
 * Fuzzing harness of the client's decoder of server messages
 * (herald/proto_client.h: proto_sreader, proto_snext, the publication and
 * presence iterators, proto_data_to_json): the input is one frame a server
 * sent, in the encoding FUZZ_ENC (fuzz_smsg_json, fuzz_smsg_msgpack). The
 * C client, the bench and herald-cli run this code on whatever a server or
 * a man in the middle sends. Beyond not crashing, leaking or tripping a
 * sanitizer, every result must keep the decoder's promises:
 *  - each call moves through the frame, and a message's slices are
 *    readable (they point into the frame or the reader's memory);
 *  - a message kind is one of the known ones, with the fields its kind
 *    promises (a pub has channel, epoch and data; a disconnect's code is
 *    0..65535);
 *  - the publications and clients of a reply iterate to at most the count
 *    the iterator announced, each readable, and data converts to JSON (or
 *    is refused with 107);
 *  - a pub push, re-encoded by the server's encoder (its data converted to
 *    both encodings first, when the server could hold it), decodes to the
 *    same publication.
 */
#include <herald/proto.h>
#include <herald/proto_client.h>

#include "fuzzkit.h"

#ifndef FUZZ_ENC
#error "FUZZ_ENC must be PROTO_JSON or PROTO_MSGPACK"
#endif

static const proto_enc enc = FUZZ_ENC;

static void touch(proto_slice s)
{
    if (s.ptr)
        fuzz_touch(s.ptr, s.len);
    else
        FUZZ_CHECK(s.len == 0);
}

/* data converts to JSON, or is refused as 107 with nothing appended. */
static void check_data(proto_slice data)
{
    proto_buf j;
    proto_error err;
    proto_buf_init(&j, 0);
    proto_buf_append(&j, "x", 1);
    int rc = proto_data_to_json(enc, data, &j, &err);
    FUZZ_CHECK(rc == PROTO_OK || rc == PROTO_E_BAD_REQUEST);
    if (rc == PROTO_OK) {
        fuzz_touch(proto_buf_data(&j), j.len);
        if (enc == PROTO_JSON)
            FUZZ_CHECK(fuzz_same(proto_buf_data(&j) + 1, j.len - 1,
                                 data.ptr, data.len));
    } else {
        FUZZ_CHECK(err.code == PROTO_E_BAD_REQUEST && j.len == 1);
    }
    proto_buf_free(&j);
}

static void check_spub(const proto_spub *p)
{
    touch(p->channel);
    touch(p->epoch);
    touch(p->data);
    touch(p->info.client);
    touch(p->info.user);
    if (p->data.ptr)
        check_data(p->data);
}

/* The server's encoder, fed what was decoded, writes the same pub. */
static void reencode_pub(const proto_spub *s)
{
    proto_data d;
    void *owned = NULL;
    proto_error err;
    int rc = enc == PROTO_JSON
                 ? proto_data_from_json(s->data.ptr, s->data.len, &d, &owned,
                                        &err)
                 : proto_data_from_msgpack(s->data.ptr, s->data.len, &d,
                                           &owned, &err);
    if (rc != PROTO_OK)
        return;   /* data no publisher could have sent */
    proto_pub p = {
        .channel = s->channel, .offset = s->offset, .epoch = s->epoch,
        .data = d, .info = s->has_info ? &s->info : NULL,
        .time_ms = s->time_ms,
    };
    proto_buf b;
    proto_buf_init(&b, 0);
    proto_enc_push_pub(&b, enc, &p);

    proto_sreader r;
    proto_smsg m;
    proto_sreader_init(&r, enc);
    proto_sreader_frame(&r, proto_buf_data(&b), b.len);
    FUZZ_CHECK(proto_snext(&r, &m, &err) == 1);
    FUZZ_CHECK(m.kind == PROTO_SMSG_PUB);
    FUZZ_CHECK(fuzz_same(m.pub.channel.ptr, m.pub.channel.len,
                         s->channel.ptr, s->channel.len));
    FUZZ_CHECK(m.pub.offset == s->offset);
    FUZZ_CHECK(fuzz_same(m.pub.epoch.ptr, m.pub.epoch.len, s->epoch.ptr,
                         s->epoch.len));
    FUZZ_CHECK(m.pub.time_ms == s->time_ms);
    FUZZ_CHECK(m.pub.has_info == s->has_info);
    FUZZ_CHECK(fuzz_same(m.pub.info.client.ptr, m.pub.info.client.len,
                         s->info.client.ptr, s->info.client.len));
    FUZZ_CHECK(fuzz_same(m.pub.info.user.ptr, m.pub.info.user.len,
                         s->info.user.ptr, s->info.user.len));
    proto_slice want = enc == PROTO_JSON ? d.json : d.mp;
    FUZZ_CHECK(fuzz_same(m.pub.data.ptr, m.pub.data.len, want.ptr, want.len));
    FUZZ_CHECK(proto_snext(&r, &m, &err) == 0);
    proto_sreader_free(&r);
    proto_buf_free(&b);
    free(owned);
}

static void check_pubs(proto_sreader *r, proto_slice pubs)
{
    proto_siter it;
    proto_spub p;
    proto_error err;
    long n = proto_siter_pubs(&it, r, pubs), got = 0;
    int rc;
    FUZZ_CHECK(n >= 0);   /* read_ok already refused anything else */
    while ((rc = proto_siter_next_pub(&it, &p, &err)) == 1) {
        FUZZ_CHECK(++got <= n);
        check_spub(&p);
    }
    FUZZ_CHECK(rc == 0 || rc == -1);
}

static void check_clients(proto_sreader *r, proto_slice clients)
{
    proto_siter it;
    proto_presence_entry e;
    proto_error err;
    long n = proto_siter_clients(&it, r, clients), got = 0;
    int rc;
    if (n < 0)
        return;
    while ((rc = proto_siter_next_client(&it, &e, &err)) == 1) {
        FUZZ_CHECK(++got <= n);
        touch(e.client);
        touch(e.user);
    }
    FUZZ_CHECK(rc == 0 || rc == -1);
}

static void check_msg(proto_sreader *r, const proto_smsg *m)
{
    touch(m->raw);
    FUZZ_CHECK(m->raw.ptr && m->raw.len > 0);
    touch(m->message);
    touch(m->ok);
    touch(m->client);
    touch(m->node);
    touch(m->epoch);
    touch(m->push);
    FUZZ_CHECK(m->recovered >= -1 && m->recovered <= 1);
    switch (m->kind) {
    case PROTO_SMSG_OK:
        FUZZ_CHECK(m->id != 0 && m->ok.ptr);
        if (m->has_pubs)
            check_pubs(r, m->pubs);
        if (m->has_clients)
            check_clients(r, m->clients);
        break;
    case PROTO_SMSG_ERROR:
        break;
    case PROTO_SMSG_PUB:
        FUZZ_CHECK(m->pub.channel.ptr && m->pub.epoch.ptr && m->pub.data.ptr);
        check_spub(&m->pub);
        reencode_pub(&m->pub);
        break;
    case PROTO_SMSG_JOIN:
    case PROTO_SMSG_LEAVE:
        FUZZ_CHECK(m->pub.channel.ptr);
        check_spub(&m->pub);
        break;
    case PROTO_SMSG_DISCONNECT:
        FUZZ_CHECK(m->code >= 0 && m->code <= 65535);
        break;
    case PROTO_SMSG_OTHER:
        FUZZ_CHECK(m->push.ptr);
        break;
    default:
        FUZZ_CHECK(!"unknown message kind");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    proto_sreader r;
    proto_smsg m;
    proto_error err;
    size_t last = 0;
    int rc;

    proto_sreader_init(&r, enc);
    proto_sreader_frame(&r, data, size);
    while ((rc = proto_snext(&r, &m, &err)) != 0) {
        FUZZ_CHECK(r.pos > last && r.pos <= r.len);
        last = r.pos;
        if (rc < 0) {
            FUZZ_CHECK(err.code == PROTO_E_BAD_REQUEST && err.message[0]);
            continue;
        }
        FUZZ_CHECK(rc == 1);
        check_msg(&r, &m);
    }
    FUZZ_CHECK(r.pos == r.len);
    proto_sreader_free(&r);
    return 0;
}
