/*
 * Durable store readers (store.h, store_priv.h): threads that answer the
 * owners' questions to MongoDB (a stream's last epoch and offset; history
 * and recovery reads) and post the answers to the owner's mailbox, so no
 * loop thread ever waits for MongoDB. A read that finds the store behind
 * (publications still on their way) goes to a waiting list and is tried
 * again a little later; it never holds a reader thread while it waits.
 */
#include "store/store_priv.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <herald/proto.h>

#include "base/log.h"
#include "base/mem.h"
#include "base/server.h"
#include "core/requests.h"
#include "store/judge.h"
#include "store/retention.h"

/* How long a read waits for publications still on their way to the store
 * (written by the writers meanwhile) before it answers 108. */
#define READ_BEHIND_WAIT_MS 3000
#define READ_BEHIND_POLL_MS 20

typedef struct read_job {
    struct read_job *next;
    uint16_t owner;
    uint16_t len;
    msg *m;                  /* range reads: the request, NULL for a top */
    publist *out;            /* range reads: where the answer goes (in m) */
    int16_t *status;         /* range reads: its status (in m) */
    uint32_t waited;         /* range reads: times it was behind */
    int64_t deadline_ms;     /* range reads: answer 108 when still behind
                                then (monotonic; 0 until the first try) */
    int64_t due_ms;          /* on the waiting list: the next try */
    uint64_t barrier;        /* range reads: publications pushed before
                                the request have store sequence numbers
                                below it (store_pending_before) */
    store_range r;
    uint8_t key_len;         /* key lookups: the idempotency key */
    char key[PROTO_IDEM_KEY_MAX];
    char chan[];
} read_job;

/* store_find_pos on the publications collection through the reader's
 * client; the query's filter and options are freed. */
static int reader_find_pos(store *s, mongoc_client_t *cl, bson_t *filter,
                           bson_t *opts, store_pos *pos, bson_error_t *err)
{
    mongoc_collection_t *coll = mongoc_client_get_collection(cl, s->db,
                                                             s->coll);
    int rc = store_find_pos(coll, filter, opts, pos, err);
    mongoc_collection_destroy(coll);
    bson_destroy(filter);
    bson_destroy(opts);
    return rc;
}

/* Last (epoch, offset) of a channel: the newest document by time, then
 * offset, or the newest in the spill file when that is newer (not written
 * yet; the spill is asked first: what leaves it is in MongoDB already).
 * 1 found, 0 none, -1 error. */
static int store_last(store *s, mongoc_client_t *cl, const read_job *j,
                      char *epoch, uint64_t *offset)
{
    char sp_epoch[IDS_LEN + 1];
    uint64_t sp_offset = 0;
    int64_t sp_time = 0;
    int in_spill = store_spill_last(s, j->chan, j->len, sp_epoch, &sp_offset,
                                    &sp_time);
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, sort;
    bson_append_utf8(&filter, "channel", 7, j->chan, j->len);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, "time", -1);
    BSON_APPEND_INT32(&sort, "offset", -1);
    bson_append_document_end(&opts, &sort);
    store_pos_projection(&opts);
    BSON_APPEND_INT64(&opts, "limit", 1);
    store_pos pos;
    bson_error_t err;
    int rc = reader_find_pos(s, cl, &filter, &opts, &pos, &err);
    if (rc < 0) {
        log_warn("MongoDB: cannot read a stream's last offset",
                 LOG_STRN("channel", j->chan, j->len),
                 LOG_STR("error", err.message));
        return -1;
    }
    if (rc == STORE_POS_INVALID || (rc == 1 && pos.epoch_len != IDS_LEN)) {
        log_warn("MongoDB: a stored publication without a valid epoch, "
                 "offset or time; the stream starts a new epoch",
                 LOG_STRN("channel", j->chan, j->len));
        rc = 0;
    }
    if (rc == 1) {
        memcpy(epoch, pos.epoch, IDS_LEN + 1);
        *offset = (uint64_t)pos.offset;
    }
    if (in_spill &&
        (rc == 0 || (memcmp(sp_epoch, epoch, IDS_LEN) == 0
                         ? sp_offset > *offset
                         : sp_time > pos.time_ms))) {
        memcpy(epoch, sp_epoch, IDS_LEN + 1);
        *offset = sp_offset;
        rc = 1;
    }
    return rc;
}

static void store_answer_last(store *s, const read_job *j)
{
    char epoch[IDS_LEN + 1];
    uint64_t offset = 0;
    int rc = -1;
    /* Two tries, each bounded by the URI's timeouts. */
    for (int attempt = 0; attempt < 2 && rc < 0; attempt++) {
        mongoc_client_t *cl = mongoc_client_pool_pop(s->pool);
        rc = store_last(s, cl, j, epoch, &offset);
        mongoc_client_pool_push(s->pool, cl);
    }
    store_top_msg *t = store_top_msg_new(j->chan, j->len);
    t->found = rc < 0 ? STORE_TOP_FAILED
               : rc == 1 ? STORE_TOP_FOUND : STORE_TOP_NONE;
    if (rc == 1) {
        memcpy(t->epoch, epoch, IDS_LEN + 1);
        t->offset = offset;
    }
    server_post(s->srv, j->owner, &t->h.hdr);
}

/* The end of a query: an error of the cursor is logged (what: "cannot
 * ..."); everything is freed. 0, or -1 when the cursor failed. */
static int read_done(mongoc_cursor_t *cur, mongoc_collection_t *coll,
                     bson_t *filter, bson_t *opts, const char *what,
                     const read_job *j)
{
    bson_error_t err;
    int rc = 0;
    if (mongoc_cursor_error(cur, &err)) {
        log_warn(what, LOG_STRN("channel", j->chan, j->len),
                 LOG_STR("error", err.message));
        rc = -1;
    }
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(coll);
    bson_destroy(filter);
    bson_destroy(opts);
    return rc;
}

/* The newest publication of the channel with the job's idempotency key:
 * 1 found (f filled), 0 none, -1 error. */
static int store_key(store *s, mongoc_client_t *cl, const read_job *j,
                     idem_found_msg *f)
{
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, sort, proj;
    bson_append_utf8(&filter, "channel", 7, j->chan, j->len);
    bson_append_utf8(&filter, "ik", 2, j->key, j->key_len);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, "time", -1);
    BSON_APPEND_INT32(&sort, "offset", -1);
    bson_append_document_end(&opts, &sort);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &proj);
    BSON_APPEND_INT32(&proj, "_id", 0);
    BSON_APPEND_INT32(&proj, "epoch", 1);
    BSON_APPEND_INT32(&proj, "offset", 1);
    BSON_APPEND_INT32(&proj, "time", 1);
    BSON_APPEND_INT32(&proj, "ih", 1);
    bson_append_document_end(&opts, &proj);
    BSON_APPEND_INT64(&opts, "limit", 1);
    mongoc_collection_t *coll = mongoc_client_get_collection(cl, s->db,
                                                             s->coll);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter,
                                                            &opts, NULL);
    const bson_t *doc;
    int rc = 0;
    if (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        uint32_t elen = 0;
        const char *e = NULL;
        rc = 1;
        if (bson_iter_init_find(&it, doc, "epoch") && BSON_ITER_HOLDS_UTF8(&it))
            e = bson_iter_utf8(&it, &elen);
        if (e && elen == IDS_LEN)
            memcpy(f->epoch, e, IDS_LEN);
        else
            rc = 0;
        if (bson_iter_init_find(&it, doc, "offset") && BSON_ITER_HOLDS_INT(&it))
            f->offset = (uint64_t)bson_iter_as_int64(&it);
        else
            rc = 0;
        if (bson_iter_init_find(&it, doc, "time") &&
            BSON_ITER_HOLDS_DATE_TIME(&it))
            f->time_ms = bson_iter_date_time(&it);
        else
            rc = 0;
        if (bson_iter_init_find(&it, doc, "ih") && BSON_ITER_HOLDS_INT(&it))
            f->hash = (uint64_t)bson_iter_as_int64(&it);
        if (!rc)
            log_warn("MongoDB: a publication with an idempotency key lacks "
                     "its epoch, offset or time; the key counts as unused",
                     LOG_STRN("channel", j->chan, j->len));
    }
    if (read_done(cur, coll, &filter, &opts,
                  "MongoDB: cannot look up an idempotency key", j) < 0)
        rc = -1;
    return rc;
}

static void store_answer_key(store *s, const read_job *j)
{
    idem_found_msg *f = idem_found_msg_new(j->chan, j->len, j->key,
                                           j->key_len);
    int rc = -1;
    for (int attempt = 0; attempt < 2 && rc < 0; attempt++) {
        mongoc_client_t *cl = mongoc_client_pool_pop(s->pool);
        rc = store_key(s, cl, j, f);
        mongoc_client_pool_push(s->pool, cl);
    }
    f->found = rc < 0 ? STORE_TOP_FAILED
               : rc == 1 ? STORE_TOP_FOUND : STORE_TOP_NONE;
    server_post(s->srv, j->owner, &f->h.hdr);
}

static int64_t store_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One query for the job's range; appends what it finds (in query order) to
 * *v. Returns -1 when the store did not answer. */
static int store_query_range(store *s, mongoc_client_t *cl, const read_job *j,
                             publist *v)
{
    if (j->r.n == 0 || j->r.hi <= j->r.lo + 1)
        return 0;   /* nothing asked: MongoDB reads limit 0 as "all" */
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, range, sort;
    bson_append_utf8(&filter, "channel", 7, j->chan, j->len);
    bson_append_utf8(&filter, "epoch", 5, j->r.epoch, IDS_LEN);
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "offset", &range);
    BSON_APPEND_INT64(&range, "$gt", (int64_t)j->r.lo);
    BSON_APPEND_INT64(&range, "$lt", (int64_t)j->r.hi);
    bson_append_document_end(&filter, &range);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, "offset", j->r.reverse ? -1 : 1);
    bson_append_document_end(&opts, &sort);
    /* A positive limit: FerretDB cuts single-batch answers at 101. */
    BSON_APPEND_INT64(&opts, "limit", j->r.n);
    mongoc_collection_t *coll = mongoc_client_get_collection(cl, s->db,
                                                             s->coll);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter,
                                                            &opts, NULL);
    const bson_t *doc;
    while (mongoc_cursor_next(cur, &doc)) {
        pub *p = store_doc_pub(j->chan, j->len, j->r.epoch, doc);
        if (p)
            publist_push(v, p);
    }
    return read_done(cur, coll, &filter, &opts, "MongoDB: cannot read history",
                     j);
}

static int store_read_stopping(store *s)
{
    pthread_mutex_lock(&s->rlock);
    int stop = s->rstop;
    pthread_mutex_unlock(&s->rlock);
    return stop;
}

/* Cluster mode: is the start of the range gone by retention? 1 when the
 * channel's namespace has retention and no document of the epoch at or
 * below lo is stored (retention deletes the oldest first, so one still
 * there means the start was not deleted: it is on its way, or lost in
 * flight); 0 otherwise; -1 when the store did not answer. */
static int store_start_trimmed(store *s, mongoc_client_t *cl, const read_job *j)
{
    uint32_t age, count;
    if (!store_retention_of(s->cfg, j->chan, j->len, &age, &count))
        return 0;
    if (j->r.lo == 0)
        return 1;
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, range;
    bson_append_utf8(&filter, "channel", 7, j->chan, j->len);
    bson_append_utf8(&filter, "epoch", 5, j->r.epoch, IDS_LEN);
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "offset", &range);
    BSON_APPEND_INT64(&range, "$lte", (int64_t)j->r.lo);
    bson_append_document_end(&filter, &range);
    store_pos_projection(&opts);
    BSON_APPEND_INT64(&opts, "limit", 1);
    store_pos pos;
    bson_error_t err;
    int rc = reader_find_pos(s, cl, &filter, &opts, &pos, &err);
    if (rc < 0) {
        log_warn("MongoDB: cannot read history",
                 LOG_STRN("channel", j->chan, j->len),
                 LOG_STR("error", err.message));
        return -1;
    }
    return rc == 0;
}

/* One attempt at a range read: answers it (posts the request back to its
 * owner; returns 1), or, when publications may still be on their way,
 * returns 0 and the caller puts the job on the waiting list, to be tried
 * again READ_BEHIND_POLL_MS later: a read that waits holds no reader
 * thread, so it does not delay other channels' reads. */
static int store_answer_range(store *s, read_job *j)
{
    publist v = { 0 };
    int64_t now = store_mono_ms();
    if (!j->deadline_ms)
        j->deadline_ms = now + READ_BEHIND_WAIT_MS;
    int code = PROTO_E_NOT_AVAILABLE, failures = 0;
    for (;;) {
        /* Taken before the query: every publication of the range that
         * this node writes was pushed before the request (below the
         * barrier), so when none of those is unwritten any more, what the
         * query misses is not on its way from here. */
        int pending = store_pending_before(s, j->barrier);
        int timed_out = store_mono_ms() >= j->deadline_ms ||
                        store_read_stopping(s);
        mongoc_client_t *cl = mongoc_client_pool_pop(s->pool);
        int rc = store_query_range(s, cl, j, &v);
        int shape = 0, answer = STORE_ANSWER_UNAVAILABLE;
        if (rc == 0) {
            shape = store_judge_shape(&j->r, &v);
            answer = store_judge_answer(&j->r, shape, pending, timed_out, -1);
            if (answer == STORE_ANSWER_CHECK) {
                int trimmed = store_start_trimmed(s, cl, j);
                if (trimmed < 0)
                    rc = -1;
                else
                    answer = store_judge_answer(&j->r, shape, pending,
                                                timed_out, trimmed);
            }
        }
        mongoc_client_pool_push(s->pool, cl);
        if (rc < 0) {
            publist_clear(&v);
            if (++failures < 2)
                continue;
            break;
        }
        if (answer == STORE_ANSWER_RETRY) {
            if (!j->waited++)
                log_debug("MongoDB: a read waits for publications on their "
                          "way to the store",
                          LOG_STRN("channel", j->chan, j->len),
                          LOG_INT("pending_here", pending));
            publist_free(&v);
            return 0;
        }
        code = answer == STORE_ANSWER_OK ? 0
               : answer == STORE_ANSWER_GONE ? PROTO_E_UNRECOVERABLE
                                             : PROTO_E_NOT_AVAILABLE;
        break;
    }
    if (code != 0)
        publist_clear(&v);
    publist_move(j->out, &v);
    publist_free(&v);
    *j->status = (int16_t)code;
    msg *m = j->m;
    j->m = NULL;
    server_post(s->srv, j->owner, m);
    return 1;
}

/* The next job under rlock: a waiting read whose time has come first (it
 * is older), else a new one; NULL when stopping. Sleeps meanwhile. */
static read_job *store_next_job(store *s)
{
    for (;;) {
        if (s->rstop)
            return NULL;
        read_job *j;
        if (s->waits && s->waits->due_ms <= store_mono_ms()) {
            j = s->waits;
            s->waits = j->next;
            if (!s->waits)
                s->waits_tail = NULL;
        } else if (s->reads) {
            j = s->reads;
            s->reads = j->next;
            if (!s->reads)
                s->reads_tail = NULL;
        } else if (s->waits) {
            int64_t due = s->waits->due_ms;
            struct timespec ts = { (time_t)(due / 1000),
                                   (long)(due % 1000) * 1000000L };
            pthread_cond_timedwait(&s->rmore, &s->rlock, &ts);
            continue;
        } else {
            pthread_cond_wait(&s->rmore, &s->rlock);
            continue;
        }
        j->next = NULL;
        return j;
    }
}

static void *store_reader(void *arg)
{
    store *s = arg;
    pthread_mutex_lock(&s->rlock);
    read_job *j;
    while ((j = store_next_job(s))) {
        pthread_mutex_unlock(&s->rlock);
        int done = 1;
        if (j->m)
            done = store_answer_range(s, j);
        else if (j->key_len)
            store_answer_key(s, j);
        else
            store_answer_last(s, j);
        pthread_mutex_lock(&s->rlock);
        if (done) {
            free(j);
            continue;
        }
        /* Behind: again in READ_BEHIND_POLL_MS, after the others waiting
         * (the list stays in order of due time). */
        j->due_ms = store_mono_ms() + READ_BEHIND_POLL_MS;
        if (s->waits_tail)
            s->waits_tail->next = j;
        else
            s->waits = j;
        s->waits_tail = j;
    }
    pthread_mutex_unlock(&s->rlock);
    return NULL;
}

static void store_enqueue(store *s, read_job *j)
{
    pthread_mutex_lock(&s->rlock);
    if (s->reads_tail)
        s->reads_tail->next = j;
    else
        s->reads = j;
    s->reads_tail = j;
    pthread_cond_signal(&s->rmore);
    pthread_mutex_unlock(&s->rlock);
}

static read_job *store_job(uint16_t owner, const char *chan, size_t len)
{
    read_job *j = calloc(1, sizeof(*j) + len);
    if (!j)
        abort();
    j->owner = owner;
    j->len = (uint16_t)len;
    memcpy(j->chan, chan, len);
    return j;
}

void store_load_last(store *s, uint16_t owner, const char *chan, size_t len)
{
    store_enqueue(s, store_job(owner, chan, len));
}

void store_find_key(store *s, uint16_t owner, const char *chan, size_t len,
                    const char *key, size_t key_len)
{
    read_job *j = store_job(owner, chan, len);
    memcpy(j->key, key, key_len);
    j->key_len = (uint8_t)key_len;
    store_enqueue(s, j);
}

void store_read_range(store *s, uint16_t owner, msg *m, publist *out,
                      int16_t *status, const char *epoch, uint64_t lo,
                      uint64_t hi, uint32_t n, unsigned flags)
{
    const chan_req *r = (const chan_req *)m;
    read_job *j = store_job(owner, r->chan, r->chan_len);
    j->m = m;
    j->out = out;
    j->status = status;
    memcpy(j->r.epoch, epoch, IDS_LEN);
    j->r.epoch[IDS_LEN] = '\0';
    j->r.lo = lo;
    j->r.hi = hi;
    j->r.n = n;
    j->r.reverse = (flags & STORE_READ_REVERSE) != 0;
    j->r.strict = (flags & STORE_READ_STRICT) != 0;
    j->r.others = (flags & STORE_READ_OTHERS) != 0;
    j->barrier = store_push_seq(s);
    store_enqueue(s, j);
}

void store_read_start(store *s)
{
    pthread_mutex_init(&s->rlock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->rmore, &ca);
    pthread_condattr_destroy(&ca);
    s->n_readers = s->cfg->mongodb_readers;
    s->readers = calloc(s->n_readers, sizeof(pthread_t));
    if (!s->readers)
        abort();
    for (uint32_t i = 0; i < s->n_readers; i++)
        pthread_create(&s->readers[i], NULL, store_reader, s);
}

/* Jobs not started are dropped: their owners are gone (the workers stop
 * before the store). */
void store_read_stop(store *s)
{
    pthread_mutex_lock(&s->rlock);
    s->rstop = 1;
    pthread_cond_broadcast(&s->rmore);
    pthread_mutex_unlock(&s->rlock);
    for (uint32_t i = 0; i < s->n_readers; i++)
        pthread_join(s->readers[i], NULL);
    for (int list = 0; list < 2; list++) {
        read_job *j = list ? s->waits : s->reads;
        while (j) {
            read_job *next = j->next;
            requests_free(j->m);
            free(j);
            j = next;
        }
    }
    s->reads = s->reads_tail = s->waits = s->waits_tail = NULL;
    free(s->readers);
    pthread_cond_destroy(&s->rmore);
    pthread_mutex_destroy(&s->rlock);
}


