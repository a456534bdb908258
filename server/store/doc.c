/*
 * The document of a stored publication (the schema is in store.h): built
 * from a publication by the writers and the spill file, read back into one
 * by the readers, and its place in its stream (epoch, offset, time) for a
 * stream's top and retention's cut. The field names are written here once.
 */
#include "store/store_priv.h"

#include <string.h>

#include "base/log.h"

void store_doc(bson_t *d, const pub *p)
{
    bson_init(d);
    bson_append_utf8(d, "channel", 7, p->view.channel.ptr,
                     (int)p->view.channel.len);
    bson_append_utf8(d, "epoch", 5, p->view.epoch.ptr, (int)p->view.epoch.len);
    BSON_APPEND_INT64(d, "offset", (int64_t)p->offset);
    BSON_APPEND_DATE_TIME(d, "time", p->time_ms);
    bson_append_utf8(d, "json", 4, p->view.data.json.ptr,
                     (int)p->view.data.json.len);
    bson_append_binary(d, "mp", 2, BSON_SUBTYPE_BINARY,
                       (const uint8_t *)p->view.data.mp.ptr,
                       (uint32_t)p->view.data.mp.len);
    BSON_APPEND_BOOL(d, "binary", p->view.data.binary != 0);
    if (p->view.info) {
        bson_append_utf8(d, "client", 6, p->view.info->client.ptr,
                         (int)p->view.info->client.len);
        bson_append_utf8(d, "user", 4, p->view.info->user.ptr,
                         (int)p->view.info->user.len);
    }
    if (p->ikey.len) {
        bson_append_utf8(d, "ik", 2, p->ikey.ptr, (int)p->ikey.len);
        BSON_APPEND_INT64(d, "ih", (int64_t)p->ihash);
    }
}

pub *store_doc_pub(const char *chan, size_t chan_len, const char *epoch,
                   const bson_t *doc)
{
    bson_iter_t it;
    proto_data d = { { NULL, 0 }, { NULL, 0 }, 0 };
    proto_client_info info = { { NULL, 0 }, { NULL, 0 }, { NULL, 0 } };
    uint32_t len = 0;
    int64_t offset = 0, time_ms = 0;
    const uint8_t *bin = NULL;
    bson_subtype_t st;

    if (!bson_iter_init_find(&it, doc, "offset") || !BSON_ITER_HOLDS_INT(&it))
        goto bad;
    offset = bson_iter_as_int64(&it);
    if (bson_iter_init_find(&it, doc, "time") &&
        BSON_ITER_HOLDS_DATE_TIME(&it))
        time_ms = bson_iter_date_time(&it);
    if (!bson_iter_init_find(&it, doc, "json") || !BSON_ITER_HOLDS_UTF8(&it))
        goto bad;
    d.json.ptr = bson_iter_utf8(&it, &len);
    d.json.len = len;
    if (!bson_iter_init_find(&it, doc, "mp") || !BSON_ITER_HOLDS_BINARY(&it))
        goto bad;
    bson_iter_binary(&it, &st, &len, &bin);
    d.mp.ptr = (const char *)bin;
    d.mp.len = len;
    if (bson_iter_init_find(&it, doc, "binary") && BSON_ITER_HOLDS_BOOL(&it))
        d.binary = bson_iter_bool(&it);
    int has_info = 0;
    if (bson_iter_init_find(&it, doc, "client") && BSON_ITER_HOLDS_UTF8(&it)) {
        info.client.ptr = bson_iter_utf8(&it, &len);
        info.client.len = len;
        has_info = 1;
    }
    if (bson_iter_init_find(&it, doc, "user") && BSON_ITER_HOLDS_UTF8(&it)) {
        info.user.ptr = bson_iter_utf8(&it, &len);
        info.user.len = len;
    }
    if (offset <= 0 || d.json.len == 0 || d.mp.len == 0)
        goto bad;
    return pub_new((proto_slice){ chan, chan_len }, (uint64_t)offset,
                   (proto_slice){ epoch, IDS_LEN }, &d,
                   has_info ? &info : NULL, time_ms);
bad:
    log_warn("MongoDB: a stored publication lacks a field herald writes; "
             "it is not returned",
             LOG_STRN("channel", chan, chan_len), LOG_INT("offset", offset));
    return NULL;
}

/* The place of a document in its stream; 1 when epoch (a string),
 * offset (an integer) and time (a date) are all there. */
static int store_doc_pos(const bson_t *doc, store_pos *pos)
{
    bson_iter_t it;
    uint32_t elen = 0;
    const char *e = NULL;
    if (!bson_iter_init_find(&it, doc, "time") ||
        !BSON_ITER_HOLDS_DATE_TIME(&it))
        return 0;
    pos->time_ms = bson_iter_date_time(&it);
    if (!bson_iter_init_find(&it, doc, "offset") || !BSON_ITER_HOLDS_INT(&it))
        return 0;
    pos->offset = bson_iter_as_int64(&it);
    if (bson_iter_init_find(&it, doc, "epoch") && BSON_ITER_HOLDS_UTF8(&it))
        e = bson_iter_utf8(&it, &elen);
    if (!e || elen >= sizeof(pos->epoch))
        return 0;
    memcpy(pos->epoch, e, elen);
    pos->epoch[elen] = '\0';
    pos->epoch_len = elen;
    return 1;
}

void store_pos_projection(bson_t *opts)
{
    bson_t proj;
    BSON_APPEND_DOCUMENT_BEGIN(opts, "projection", &proj);
    BSON_APPEND_INT32(&proj, "_id", 0);
    BSON_APPEND_INT32(&proj, "time", 1);
    BSON_APPEND_INT32(&proj, "offset", 1);
    BSON_APPEND_INT32(&proj, "epoch", 1);
    bson_append_document_end(opts, &proj);
}

int store_find_pos(mongoc_collection_t *coll, const bson_t *filter,
                   const bson_t *opts, store_pos *pos, bson_error_t *err)
{
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts,
                                                            NULL);
    const bson_t *doc;
    int rc = 0;
    if (mongoc_cursor_next(cur, &doc))
        rc = store_doc_pos(doc, pos) ? 1 : STORE_POS_INVALID;
    if (mongoc_cursor_error(cur, err))
        rc = -1;
    mongoc_cursor_destroy(cur);
    return rc;
}
