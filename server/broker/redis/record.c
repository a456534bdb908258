/*
 * Records of cluster mode (record.h).
 */
#include "broker/redis/record.h"

#include "base/ids.h"
#include "base/log.h"

void record_body(msgpack_sbuffer *sb, const pub *p)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 6);
    msgpack_pack_int64(&pk, p->time_ms);
    if (p->view.data.binary)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    msgpack_pack_bin(&pk, p->view.data.json.len);
    msgpack_pack_bin_body(&pk, p->view.data.json.ptr, p->view.data.json.len);
    msgpack_pack_bin(&pk, p->view.data.mp.len);
    msgpack_pack_bin_body(&pk, p->view.data.mp.ptr, p->view.data.mp.len);
    proto_slice cl = { "", 0 }, us = { "", 0 };
    if (p->view.info) {
        cl = p->view.info->client;
        us = p->view.info->user;
    }
    msgpack_pack_str(&pk, cl.len);
    msgpack_pack_str_body(&pk, cl.ptr, cl.len);
    msgpack_pack_str(&pk, us.len);
    msgpack_pack_str_body(&pk, us.ptr, us.len);
}

pub *record_parse(const char *chan, size_t clen, const char *rec, size_t len)
{
    uint64_t off = 0;
    size_t i = 0;
    while (i < len && rec[i] >= '0' && rec[i] <= '9' && i < 20) {
        uint64_t d = (uint64_t)(rec[i++] - '0');
        /* 20 digits can spell more than 2^64-1: refused, not wrapped. */
        if (off > (UINT64_MAX - d) / 10)
            goto bad;
        off = off * 10 + d;
    }
    if (i == 0 || off == 0 || i + 2 + IDS_LEN > len || rec[i] != ':' ||
        rec[i + 1 + IDS_LEN] != ':')
        goto bad;
    proto_slice epoch = { rec + i + 1, IDS_LEN };
    const char *body = rec + i + 2 + IDS_LEN;
    size_t blen = len - (i + 2 + IDS_LEN), pos = 0, objlen = 0;
    /* Framed first: a count in a damaged body must not become a
     * many-gigabyte allocation in msgpack-c. The body is one object. */
    if (proto_mp_frame(body, blen, &objlen) < 0 || objlen != blen)
        goto bad;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    pub *p = NULL;
    if (msgpack_unpack_next(&u, body, blen, &pos) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 6) {
        msgpack_object *o = u.data.via.array.ptr;
        if ((o[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
             o[0].type == MSGPACK_OBJECT_NEGATIVE_INTEGER) &&
            o[1].type == MSGPACK_OBJECT_BOOLEAN &&
            o[2].type == MSGPACK_OBJECT_BIN && o[3].type == MSGPACK_OBJECT_BIN &&
            o[4].type == MSGPACK_OBJECT_STR && o[5].type == MSGPACK_OBJECT_STR) {
            proto_data d = {
                .json = { o[2].via.bin.ptr, o[2].via.bin.size },
                .mp = { o[3].via.bin.ptr, o[3].via.bin.size },
                .binary = o[1].via.boolean,
            };
            proto_client_info info = {
                .client = { o[4].via.str.ptr, o[4].via.str.size },
                .user = { o[5].via.str.ptr, o[5].via.str.size },
            };
            p = pub_new((proto_slice){ chan, clen }, off, epoch, &d,
                        info.client.len ? &info : NULL, o[0].via.i64);
        }
    }
    msgpack_unpacked_destroy(&u);
    if (p)
        return p;
bad:
    log_warn("malformed record in Redis: ignored", LOG_STRN("channel", chan,
                                                            clen));
    return NULL;
}

int record_presence_parse(const char *rec, size_t len, record_presence *out)
{
    if (len < 2 + IDS_LEN + 1 || (rec[0] != 'J' && rec[0] != 'L') ||
        rec[1] != ':' || rec[2 + IDS_LEN] != ':')
        return 0;
    out->join = rec[0] == 'J';
    out->client = rec + 2;
    out->user = rec + 3 + IDS_LEN;
    out->user_len = len - (3 + IDS_LEN);
    return 1;
}
