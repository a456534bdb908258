/*
 * Retention of durable history (store_priv.h, store_retention.h): one
 * background thread, never a loop thread, deletes what the namespaces'
 * retention_age and retention_count no longer keep, because TTL indexes
 * are not available on every MongoDB-protocol server (FerretDB has none).
 *
 * A pass, every retention_interval seconds after the previous one ended:
 * the stored channel names (an aggregation read through a cursor, after
 * where the last pass stopped), then for each channel whose namespace has
 * retention, at most RET_CHANNELS_PER_PASS of them, the count cut (one
 * find) and one
 * deleteMany that removes both what is too old and what is beyond the
 * newest retention_count. The next pass resumes after the last channel
 * done; past the end it starts over. Channels of other namespaces are
 * never touched. The thread runs only when some durable namespace has
 * retention (the configuration does not change while running).
 */
#include "store/store_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <herald/proto.h>

#include "base/log.h"
#include "base/server.h"
#include "store/retention.h"

/* Channels (with retention) handled by one pass; the rest wait for the
 * next ones, so one pass over a large store stays short. */
#define RET_CHANNELS_PER_PASS 1000

int store_retention_wanted(const config *c)
{
    for (size_t i = 0; i < c->n_namespaces; i++) {
        const config_ns *ns = &c->namespaces[i];
        if (ns->durable && (ns->retention_age || ns->retention_count))
            return 1;
    }
    return 0;
}

int store_retention_of(const config *c, const char *chan, size_t len,
                       uint32_t *age, uint32_t *count)
{
    if (!proto_channel_valid(chan, len))
        return 0;
    const config_ns *ns = config_ns_of_channel(c, chan, len);
    if (!ns || !ns->durable || (!ns->retention_age && !ns->retention_count))
        return 0;
    *age = ns->retention_age;
    *count = ns->retention_count;
    return 1;
}

void store_retention_cut_opts(bson_t *opts, uint32_t count)
{
    bson_t sort;
    bson_init(opts);
    BSON_APPEND_DOCUMENT_BEGIN(opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, "time", -1);
    BSON_APPEND_INT32(&sort, "offset", -1);
    BSON_APPEND_INT32(&sort, "epoch", -1);
    bson_append_document_end(opts, &sort);
    store_pos_projection(opts);
    BSON_APPEND_INT64(opts, "skip", (int64_t)count);
    BSON_APPEND_INT64(opts, "limit", 1);
}

void store_retention_names_pipeline(bson_t *pipeline, const char *after,
                                    size_t after_len)
{
    bson_t stage, doc, cmp;
    int n = 0;
    char key[16];
    const char *k;
    bson_init(pipeline);
    if (after_len) {
        bson_uint32_to_string((uint32_t)n++, &k, key, sizeof(key));
        BSON_APPEND_DOCUMENT_BEGIN(pipeline, k, &stage);
        BSON_APPEND_DOCUMENT_BEGIN(&stage, "$match", &doc);
        BSON_APPEND_DOCUMENT_BEGIN(&doc, "channel", &cmp);
        bson_append_utf8(&cmp, "$gt", 3, after, (int)after_len);
        bson_append_document_end(&doc, &cmp);
        bson_append_document_end(&stage, &doc);
        bson_append_document_end(pipeline, &stage);
    }
    /* Sorted on the indexed key first: MongoDB can then read the names
     * from the (channel, epoch, offset) index, as `distinct` does. */
    bson_uint32_to_string((uint32_t)n++, &k, key, sizeof(key));
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, k, &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$sort", &doc);
    BSON_APPEND_INT32(&doc, "channel", 1);
    bson_append_document_end(&stage, &doc);
    bson_append_document_end(pipeline, &stage);
    bson_uint32_to_string((uint32_t)n++, &k, key, sizeof(key));
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, k, &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$group", &doc);
    BSON_APPEND_UTF8(&doc, "_id", "$channel");
    bson_append_document_end(&stage, &doc);
    bson_append_document_end(pipeline, &stage);
    /* $group's output has no order: byte order for the resume point. */
    bson_uint32_to_string((uint32_t)n++, &k, key, sizeof(key));
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, k, &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$sort", &doc);
    BSON_APPEND_INT32(&doc, "_id", 1);
    bson_append_document_end(&stage, &doc);
    bson_append_document_end(pipeline, &stage);
}

void store_retention_names_opts(bson_t *opts)
{
    bson_init(opts);
    BSON_APPEND_BOOL(opts, "allowDiskUse", true);
    BSON_APPEND_INT32(opts, "batchSize", 1000);
}

/* Opens the next alternative of the $or array (keys "0", "1", ...). */
static void ret_alt_begin(bson_t *or, int *n, bson_t *alt)
{
    char key[16];
    const char *k;
    bson_uint32_to_string((uint32_t)(*n)++, &k, key, sizeof(key));
    BSON_APPEND_DOCUMENT_BEGIN(or, k, alt);
}

/* field: {op: value} */
static void ret_cmp_time(bson_t *alt, const char *op, int64_t ms)
{
    bson_t cmp;
    BSON_APPEND_DOCUMENT_BEGIN(alt, "time", &cmp);
    BSON_APPEND_DATE_TIME(&cmp, op, ms);
    bson_append_document_end(alt, &cmp);
}

int store_retention_filter(bson_t *f, const char *chan, size_t len,
                           int64_t before_ms, const store_retention_cut *cut)
{
    bson_init(f);
    if (before_ms <= 0 && !cut)
        return 0;
    bson_t or, alt, cmp;
    bson_append_utf8(f, "channel", 7, chan, (int)len);
    BSON_APPEND_ARRAY_BEGIN(f, "$or", &or);
    int n = 0;
    if (before_ms > 0) {
        ret_alt_begin(&or, &n, &alt);
        ret_cmp_time(&alt, "$lt", before_ms);
        bson_append_document_end(&or, &alt);
    }
    if (cut) {
        /* (time, offset, epoch) <= the cut's, lexicographically. */
        ret_alt_begin(&or, &n, &alt);
        ret_cmp_time(&alt, "$lt", cut->time_ms);
        bson_append_document_end(&or, &alt);

        ret_alt_begin(&or, &n, &alt);
        BSON_APPEND_DATE_TIME(&alt, "time", cut->time_ms);
        BSON_APPEND_DOCUMENT_BEGIN(&alt, "offset", &cmp);
        BSON_APPEND_INT64(&cmp, "$lt", cut->offset);
        bson_append_document_end(&alt, &cmp);
        bson_append_document_end(&or, &alt);

        ret_alt_begin(&or, &n, &alt);
        BSON_APPEND_DATE_TIME(&alt, "time", cut->time_ms);
        BSON_APPEND_INT64(&alt, "offset", cut->offset);
        BSON_APPEND_DOCUMENT_BEGIN(&alt, "epoch", &cmp);
        bson_append_utf8(&cmp, "$lte", 4, cut->epoch, (int)cut->epoch_len);
        bson_append_document_end(&alt, &cmp);
        bson_append_document_end(&or, &alt);
    }
    bson_append_array_end(f, &or);
    return 1;
}

/* ---- the pass ----------------------------------------------------------- */

typedef struct ret_name {
    const char *ptr;   /* into the aggregation's current document */
    uint32_t len;
} ret_name;

/* Logs the first failure of a streak with MongoDB's message; -1. */
static int ret_fail(store *s, const char *what, const bson_error_t *err)
{
    if (!s->tfailing)
        log_warn("MongoDB: retention pass failed, retrying next pass",
                 LOG_STR("step", what), LOG_STR("error", err->message));
    s->tfailing = 1;
    return -1;
}

static int ret_stopping(store *s)
{
    pthread_mutex_lock(&s->tlock);
    int stop = s->tstop;
    pthread_mutex_unlock(&s->tlock);
    return stop;
}


/* The count cut of one channel: 1 with *cut filled (epoch copied into
 * epoch_buf), 0 when the channel has `count` documents or fewer, -1 on an
 * error. */
static int ret_find_cut(store *s, mongoc_collection_t *coll, const ret_name *c,
                        uint32_t count, store_retention_cut *cut,
                        char *epoch_buf, size_t epoch_cap)
{
    bson_t filter = BSON_INITIALIZER, opts;
    bson_append_utf8(&filter, "channel", 7, c->ptr, (int)c->len);
    store_retention_cut_opts(&opts, count);
    store_pos pos;
    bson_error_t err;
    int rc = store_find_pos(coll, &filter, &opts, &pos, &err);
    bson_destroy(&opts);
    bson_destroy(&filter);
    if (rc < 0)
        return ret_fail(s, "find the count cut", &err);
    if (rc == STORE_POS_INVALID || (rc == 1 && pos.epoch_len >= epoch_cap)) {
        /* Not a document herald wrote: cutting there would compare
         * across BSON types. The channel keeps its count for now. */
        log_warn("MongoDB: retention skips a channel whose cut document "
                 "lacks a date time, integer offset or string epoch",
                 LOG_STRN("channel", c->ptr, c->len));
        return 0;
    }
    if (rc == 1) {
        cut->time_ms = pos.time_ms;
        cut->offset = pos.offset;
        memcpy(epoch_buf, pos.epoch, pos.epoch_len + 1);
        cut->epoch = epoch_buf;
        cut->epoch_len = pos.epoch_len;
    }
    return rc;
}

/* Applies age and count to one channel; adds what it deleted to *deleted.
 * 0, or -1 on an error (logged). */
static int ret_channel(store *s, mongoc_collection_t *coll, const ret_name *c,
                       uint32_t age, uint32_t count, int64_t now_ms,
                       uint64_t *deleted)
{
    store_retention_cut cut;
    char epoch[128];
    int have_cut = 0;
    if (count) {
        have_cut = ret_find_cut(s, coll, c, count, &cut, epoch, sizeof(epoch));
        if (have_cut < 0)
            return -1;
    }
    int64_t before = age ? now_ms - (int64_t)age * 1000 : 0;
    bson_t filter;
    if (!store_retention_filter(&filter, c->ptr, c->len, before,
                                have_cut ? &cut : NULL)) {
        bson_destroy(&filter);
        return 0;
    }
    bson_t reply;
    bson_error_t err;
    int rc = 0;
    if (mongoc_collection_delete_many(coll, &filter, NULL, &reply, &err)) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, &reply, "deletedCount") &&
            BSON_ITER_HOLDS_NUMBER(&it))
            *deleted += (uint64_t)bson_iter_as_int64(&it);
    } else {
        rc = ret_fail(s, "deleteMany", &err);
    }
    bson_destroy(&reply);
    bson_destroy(&filter);
    return rc;
}

/* One pass; 0, or -1 when MongoDB failed (the pass stops there and the
 * next one retries from the last channel done). */
static int ret_pass(store *s, mongoc_client_t *cl)
{
    int64_t start = server_now_ms(s->srv);
    mongoc_collection_t *coll = mongoc_client_get_collection(cl, s->db,
                                                             s->coll);
    bson_t pipeline, opts;
    store_retention_names_pipeline(&pipeline, s->tcursor, s->tcursor_len);
    store_retention_names_opts(&opts);
    mongoc_cursor_t *cur = mongoc_collection_aggregate(
        coll, MONGOC_QUERY_NONE, &pipeline, &opts, NULL);
    bson_error_t err;
    uint64_t deleted = 0;
    uint32_t done_channels = 0;
    int rc = 0, more = 0;
    const bson_t *doc;
    /* The names arrive in byte order, in batches (no 16 MiB reply). */
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        ret_name name;
        if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_UTF8(&it))
            continue;
        name.ptr = bson_iter_utf8(&it, &name.len);
        uint32_t age, count;
        if (!store_retention_of(s->cfg, name.ptr, name.len, &age, &count))
            continue;
        if (done_channels == RET_CHANNELS_PER_PASS || ret_stopping(s)) {
            more = 1;
            break;
        }
        if (ret_channel(s, coll, &name, age, count, start, &deleted) < 0) {
            rc = -1;
            break;
        }
        done_channels++;
        /* Valid channel names are at most 255 bytes (store_retention_of). */
        memcpy(s->tcursor, name.ptr, name.len);
        s->tcursor_len = name.len;
    }
    if (rc == 0 && !more && mongoc_cursor_error(cur, &err))
        rc = ret_fail(s, "list channel names", &err);
    if (rc == 0 && !more)
        s->tcursor_len = 0;    /* the end: the next pass starts over */
    atomic_fetch_add(&s->tdeleted, deleted);
    if (rc == 0) {
        atomic_fetch_add(&s->tpasses, 1);
        if (s->tfailing)
            log_info("MongoDB: retention passes work again");
        s->tfailing = 0;
    }
    log_at(deleted ? LOG_INFO : LOG_DEBUG, "MongoDB: retention pass",
           LOG_INT("deleted", (int64_t)deleted),
           LOG_INT("channels", done_channels),
           LOG_INT("complete", rc == 0 && !more), LOG_INT("failed", rc < 0),
           LOG_INT("ms", server_now_ms(s->srv) - start));
    mongoc_cursor_destroy(cur);
    bson_destroy(&opts);
    bson_destroy(&pipeline);
    mongoc_collection_destroy(coll);
    return rc;
}

static void *ret_thread(void *arg)
{
    store *s = arg;
    uint32_t interval = s->cfg->retention_interval;
    for (;;) {
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_sec += interval;
        pthread_mutex_lock(&s->tlock);
        while (!s->tstop &&
               pthread_cond_timedwait(&s->tstop_cond, &s->tlock, &dl) !=
                   ETIMEDOUT)
            ;
        int stop = s->tstop;
        pthread_mutex_unlock(&s->tlock);
        if (stop)
            break;
        mongoc_client_t *cl = mongoc_client_pool_pop(s->pool);
        ret_pass(s, cl);
        mongoc_client_pool_push(s->pool, cl);
    }
    return NULL;
}

void store_retention_start(store *s)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->tstop_cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->tlock, NULL);
    s->tstop = 0;
    s->tcursor_len = 0;
    s->tfailing = 0;
    if (!store_retention_wanted(s->cfg))
        return;
    s->tstarted = 1;
    pthread_create(&s->retention, NULL, ret_thread, s);
    log_info("MongoDB: retention passes on",
             LOG_INT("interval", s->cfg->retention_interval));
}

/* Wakes the thread (waiting, or between two channels of a pass) and joins
 * it; a MongoDB operation under way ends within the URI's timeouts. */
void store_retention_stop(store *s)
{
    pthread_mutex_lock(&s->tlock);
    s->tstop = 1;
    pthread_cond_broadcast(&s->tstop_cond);
    pthread_mutex_unlock(&s->tlock);
    if (s->tstarted)
        pthread_join(s->retention, NULL);
    s->tstarted = 0;
    pthread_cond_destroy(&s->tstop_cond);
    pthread_mutex_destroy(&s->tlock);
}

uint64_t store_retention_passes(const store *s)
{
    return atomic_load(&((store *)s)->tpasses);
}

uint64_t store_retention_deleted(const store *s)
{
    return atomic_load(&((store *)s)->tdeleted);
}
