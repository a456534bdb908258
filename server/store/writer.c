/*
 * MongoDB writer pool (see store.h). The queue is a ring guarded by one
 * mutex; `reserved` counts slots promised to owners, so a push never finds
 * the ring full. Writers take up to mongodb_batch publications at a time.
 * The spill file (spill.c) takes ack "broker" publications while the ring
 * is full or writes fail, and, when a write fails, what was queued and the
 * failed batch too, so a crash during an outage loses little; one writer
 * at a time replays it (after the ring's work) and truncates it when it
 * is all written. Publications on their way to the spill wait in the
 * spill queue, in order; one thread at a time (the append token) encodes
 * and writes them without the lock, so moving a full ring costs the lock a
 * pointer copy each, and no publisher waits behind 65,536 writes.
 */
#include "store/store_priv.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mongoc/mongoc.h>

#include "base/log.h"
#include "store/spill.h"
#include "base/mem.h"
#include "base/server.h"

#define STORE_RETRY_MIN_MS 100
#define STORE_RETRY_MAX_MS 2000
#define STORE_DUP_KEY 11000

void store_sleep_ms(uint32_t ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int64_t store_now_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- ack "durable" replies (under s->lock) ---------------------------- */

/* The reply of an ack "durable" publish, owned by its store_item. While
 * m is set it is on s->acks (under lock): the writer that stores the
 * publication takes it and posts it; the ack thread takes it when the
 * deadline passes and posts it as error 108 instead. */
typedef struct store_ack {
    struct store_ack *prev, *next;
    msg *m;                  /* NULL once answered */
    int64_t deadline_ms;     /* CLOCK_MONOTONIC */
    uint16_t to;             /* the worker the reply goes to */
} store_ack;


static store_ack *store_ack_new(store *s, msg *m, uint16_t to)
{
    store_ack *a = calloc(1, sizeof(*a));
    if (!a)
        abort();
    a->m = m;
    a->to = to;
    a->deadline_ms = store_now_mono_ms() + s->cfg->durable_ack_timeout_ms;
    /* Pushed under the lock with a constant timeout: the list stays in
     * deadline order. */
    a->prev = s->acks_tail;
    if (s->acks_tail)
        s->acks_tail->next = a;
    else
        s->acks = a;
    s->acks_tail = a;
    if (s->acks == a)
        pthread_cond_signal(&s->ack_cond);
    return a;
}

/* Takes the reply off the list (NULL when the deadline answered it). */
static msg *store_ack_take(store *s, store_ack *a)
{
    msg *m = a->m;
    if (!m)
        return NULL;
    if (a->prev)
        a->prev->next = a->next;
    else
        s->acks = a->next;
    if (a->next)
        a->next->prev = a->prev;
    else
        s->acks_tail = a->prev;
    a->prev = a->next = NULL;
    a->m = NULL;
    return m;
}

/* Answers the replies whose deadline passed with 108: MongoDB has not
 * confirmed the write in time. Their publications stay queued (the items
 * keep the emptied store_ack) and are written when MongoDB answers. */
static void *store_ack_thread(void *arg)
{
    store *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->ack_stop) {
        store_ack *a = s->acks;
        if (!a) {
            pthread_cond_wait(&s->ack_cond, &s->lock);
            continue;
        }
        if (a->deadline_ms > store_now_mono_ms()) {
            struct timespec ts = { (time_t)(a->deadline_ms / 1000),
                                   (long)(a->deadline_ms % 1000) * 1000000L };
            pthread_cond_timedwait(&s->ack_cond, &s->lock, &ts);
            continue;
        }
        uint16_t to = a->to;
        chan_req *r = (chan_req *)store_ack_take(s, a);
        r->code = PROTO_E_NOT_AVAILABLE;
        r->errmsg = "durable write not confirmed in time";
        pthread_mutex_unlock(&s->lock);
        server_post(s->srv, to, &r->hdr);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* One createIndexes command for one index; 0 when it exists afterwards. */
static int store_index_one(store *s, mongoc_client_t *cl, const char *name,
                           const char *const *fields, int unique)
{
    bson_t cmd = BSON_INITIALIZER, reply, idxs, idx, key;
    bson_error_t err;
    BSON_APPEND_UTF8(&cmd, "createIndexes", s->coll);
    BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &idxs);
    BSON_APPEND_DOCUMENT_BEGIN(&idxs, "0", &idx);
    BSON_APPEND_DOCUMENT_BEGIN(&idx, "key", &key);
    for (const char *const *f = fields; *f; f++)
        BSON_APPEND_INT32(&key, *f, 1);
    bson_append_document_end(&idx, &key);
    BSON_APPEND_UTF8(&idx, "name", name);
    if (unique)
        BSON_APPEND_BOOL(&idx, "unique", true);
    bson_append_document_end(&idxs, &idx);
    bson_append_array_end(&cmd, &idxs);
    mongoc_database_t *db = mongoc_client_get_database(cl, s->db);
    bool ok = mongoc_database_write_command_with_opts(db, &cmd, NULL, &reply,
                                                      &err);
    if (!ok)
        log_warn("MongoDB: cannot create an index yet",
                 LOG_STR("index", name), LOG_STR("error", err.message));
    bson_destroy(&reply);
    bson_destroy(&cmd);
    mongoc_database_destroy(db);
    return ok ? 0 : -1;
}

/* The indexes, one command each (FerretDB 1.24 fails a command that
 * re-creates several existing indexes at once). The unique one makes
 * retried writes idempotent and serves reads by offset; the time one
 * serves a stream's newest document and retention by age; the key one
 * the idempotency key lookups after a restart. */
static int store_index(store *s, mongoc_client_t *cl)
{
    static const char *const by_offset[] = { "channel", "epoch", "offset",
                                             NULL };
    static const char *const by_time[] = { "channel", "time", NULL };
    static const char *const by_key[] = { "channel", "ik", NULL };
    if (store_index_one(s, cl, "channel_epoch_offset", by_offset, 1) < 0 ||
        store_index_one(s, cl, "channel_time", by_time, 0) < 0)
        return -1;
    /* Not unique: a key published again after its window is a new
     * publication; the lookup takes the newest (store/reader.c). */
    return store_index_one(s, cl, "channel_ik", by_key, 0);
}

/* One queued publication; ack is the reply of an ack "durable" publish
 * (posted once the publication is in MongoDB, or as 108 at its
 * deadline), else NULL. */
typedef struct store_item {
    pub *p;
    store_ack *ack;
    uint64_t seq;            /* store_push order (store_pending_before) */
} store_item;

/* One writer thread; busy_min (under lock) is the lowest sequence number
 * in the batch it is writing, UINT64_MAX when it has none. */
typedef struct store_wslot {
    store *s;
    pthread_t th;
    uint64_t busy_min;
} store_wslot;

/* Every write error a duplicate key: the documents are there (an earlier
 * attempt wrote them and its answer was lost). */
static int store_only_duplicates(const bson_t *reply)
{
    bson_iter_t it, errs;
    int any = 0;
    if (!bson_iter_init_find(&it, reply, "writeErrors") ||
        !BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &errs))
        return 0;
    while (bson_iter_next(&errs)) {
        bson_iter_t e;
        if (!BSON_ITER_HOLDS_DOCUMENT(&errs) || !bson_iter_recurse(&errs, &e) ||
            !bson_iter_find(&e, "code") ||
            bson_iter_as_int64(&e) != STORE_DUP_KEY)
            return 0;
        any = 1;
    }
    return any;
}

/* One unordered insert_many of n documents (creating the indexes first
 * while they are missing); 0 when all are in MongoDB. */
static int store_insert(store *s, const bson_t **docs, uint32_t n)
{
    mongoc_client_t *cl = mongoc_client_pool_pop(s->pool);
    if (!atomic_load(&s->indexed) && store_index(s, cl) == 0)
        atomic_store(&s->indexed, 1);
    bson_t opts = BSON_INITIALIZER, reply;
    BSON_APPEND_BOOL(&opts, "ordered", false);
    /* Herald builds these documents (UTF-8 checked by the protocol, fixed
     * keys): the driver's validation pass is a fifth of the writer's CPU
     * (bench/RESULTS.md, "Durable history"). */
    BSON_APPEND_BOOL(&opts, "validate", false);
    bson_error_t err;
    mongoc_collection_t *coll = mongoc_client_get_collection(cl, s->db,
                                                             s->coll);
    bool ok = mongoc_collection_insert_many(coll, docs, n, &opts, &reply,
                                            &err);
    int rc = 0;
    if (!ok && !store_only_duplicates(&reply)) {
        rc = -1;
        if (!atomic_exchange(&s->failing, 1))
            log_warn("MongoDB: writes failing, retrying",
                     LOG_STR("error", err.message),
                     LOG_INT("backlog", (int64_t)store_backlog(s)));
    } else if (atomic_exchange(&s->failing, 0)) {
        log_info("MongoDB: writing again",
                 LOG_INT("backlog", (int64_t)store_backlog(s)));
    }
    mongoc_collection_destroy(coll);
    bson_destroy(&reply);
    bson_destroy(&opts);
    mongoc_client_pool_push(s->pool, cl);
    return rc;
}

static int store_write(store *s, const store_item *v, uint32_t n)
{
    bson_t *docs = malloc(sizeof(bson_t) * n);
    const bson_t **ptrs = malloc(sizeof(bson_t *) * n);
    if (!docs || !ptrs)
        abort();
    for (uint32_t i = 0; i < n; i++) {
        store_doc(&docs[i], v[i].p);
        ptrs[i] = &docs[i];
    }
    int rc = store_insert(s, ptrs, n);
    for (uint32_t i = 0; i < n; i++)
        bson_destroy(&docs[i]);
    free(docs);
    free(ptrs);
    return rc;
}

/* ---- the spill file (everything under s->lock) ------------------------ */

/* An upper bound of a publication's document size, known before it is
 * sequenced (the epoch has a fixed length). */
static uint64_t store_doc_bound(const pub *p)
{
    uint64_t n = 192 + IDS_LEN + p->view.channel.len + p->view.data.json.len +
                 p->view.data.mp.len;
    if (p->view.info)
        n += p->view.info->client.len + p->view.info->user.len;
    return SPILL_HEADER + n;
}

int store_fits(const pub *p)
{
    return store_doc_bound(p) <= STORE_DOC_MAX;
}

static void store_spill_sync(store *s)
{
    atomic_store(&s->spilled, spill_records(s->spill));
    atomic_store(&s->spill_bytes, spill_size(s->spill));
}

/* While true, ack "broker" publications go to the spill: MongoDB fails,
 * or the spill holds publications not written yet (they must not be
 * overtaken), or some are on their way there. */
static int store_spill_active(store *s)
{
    return atomic_load(&s->failing) || spill_records(s->spill) ||
           atomic_load(&s->spill_promised_n);
}

/* Reserves spill room for p; 1 done. */
static int store_spill_promise(store *s, const pub *p)
{
    uint64_t need = store_doc_bound(p);
    if (s->spill_broken || !spill_fits(s->spill, s->spill_promised + need))
        return 0;
    s->spill_promised += need;
    atomic_fetch_add(&s->spill_promised_n, 1);
    return 1;
}

static void store_ring_put(store *s, pub *p, store_ack *ack, uint64_t seq)
{
    if (s->count == s->alloc) {
        /* Only past `cap`, when the spill failed what it had promised. */
        store_item *r = malloc(sizeof(*r) * s->alloc * 2);
        if (!r)
            abort();
        for (uint32_t i = 0; i < s->count; i++)
            r[i] = s->ring[(s->head + i) % s->alloc];
        free(s->ring);
        s->ring = r;
        s->head = 0;
        s->alloc *= 2;
    }
    s->ring[(s->head + s->count) % s->alloc] =
        (store_item){ .p = p, .ack = ack, .seq = seq };
    s->count++;
}

/* ---- the spill queue (under s->lock) ----------------------------------- */

/* A publication on its way to the spill file. */
typedef struct spill_item {
    pub *p;                  /* a reference of its own */
    uint64_t seq;            /* store_push order */
    uint32_t bound;          /* store_doc_bound(p) */
    uint8_t promised;        /* holds a spill promise (bound bytes, one of
                                spill_promised_n) */
    uint8_t at_stop;         /* shutdown: counted in stop_spilled or
                                stop_lost */
} spill_item;

static void store_spq_room(store *s, uint32_t more)
{
    if (s->spq_n + more <= s->spq_cap)
        return;
    uint32_t cap = s->spq_cap ? s->spq_cap : 64;
    while (cap < s->spq_n + more)
        cap *= 2;
    spill_item *q = malloc(sizeof(*q) * cap);
    if (!q)
        abort();
    for (uint32_t i = 0; i < s->spq_n; i++)
        q[i] = s->spq[(s->spq_head + i) % s->spq_cap];
    free(s->spq);
    s->spq = q;
    s->spq_cap = cap;
    s->spq_head = 0;
}

static void store_spq_note(store *s, const spill_item *it)
{
    if (it->seq < s->spill_min_seq)
        s->spill_min_seq = it->seq;
}

static void store_spq_push(store *s, const spill_item *it)
{
    store_spq_room(s, 1);
    s->spq[(s->spq_head + s->spq_n) % s->spq_cap] = *it;
    s->spq_n++;
    store_spq_note(s, it);
}

/* Puts v[0..n) in front of what waits, in that order (they are older). */
static void store_spq_push_front(store *s, const spill_item *v, uint32_t n)
{
    if (!n)
        return;
    store_spq_room(s, n);
    s->spq_head = (s->spq_head + s->spq_cap - n % s->spq_cap) % s->spq_cap;
    for (uint32_t i = 0; i < n; i++) {
        s->spq[(s->spq_head + i) % s->spq_cap] = v[i];
        store_spq_note(s, &v[i]);
    }
    s->spq_n += n;
}

static spill_item store_spq_pop(store *s)
{
    spill_item it = s->spq[s->spq_head];
    s->spq_head = (s->spq_head + 1) % s->spq_cap;
    s->spq_n--;
    return it;
}

/* Promises spill room for a queued publication that moves to the spill:
 * 1 with *out filled (taking the item's reference), 0 when there is no
 * room (it stays where it is). */
static int store_spill_take(store *s, const store_item *v, spill_item *out)
{
    uint64_t need = store_doc_bound(v->p);
    if (!s->spill || s->spill_broken ||
        !spill_fits(s->spill, s->spill_promised + need))
        return 0;
    s->spill_promised += need;
    atomic_fetch_add(&s->spill_promised_n, 1);
    *out = (spill_item){ .p = v->p, .seq = v->seq, .bound = (uint32_t)need,
                         .promised = 1 };
    return 1;
}

/* The spill file's state in the counters /healthz reads, and the log line
 * the first record of an outage writes. */
static void store_spilled_one(store *s)
{
    store_spill_sync(s);
    if (!s->spilling_logged) {
        s->spilling_logged = 1;
        log_warn("MongoDB: spilling to file",
                 LOG_STR("path", spill_path(s->spill)),
                 LOG_INT("backlog", (int64_t)store_backlog(s)));
    }
}

/* Writes what waits in the spill queue to the file, in order: called with
 * the lock held and the append token taken, it encodes and writes each
 * record without the lock (spill_write at the committed end: nobody else
 * appends meanwhile, and the replay does not truncate under it) and
 * commits it under the lock. At most max records: an owner thread writes
 * one (the one it pushed, or an older one), a writer thread all of them.
 * Returns with the lock held and the token given back. */
static void store_spill_drain(store *s, uint32_t max)
{
    for (uint32_t done = 0; s->spq_n && done < max; done++) {
        spill_item it = store_spq_pop(s);
        uint64_t at = spill_size(s->spill);
        int broken = s->spill_broken;
        pthread_mutex_unlock(&s->lock);
        bson_t d;
        store_doc(&d, it.p);
        int rc = broken ? SPILL_ERROR
                        : spill_write(s->spill, at, bson_get_data(&d), d.len);
        int err = errno;
        pthread_mutex_lock(&s->lock);
        if (rc == SPILL_OK) {
            /* spilled first, promise given back after: store_backlog may
             * count it twice meanwhile, never not at all */
            spill_commit(s->spill, bson_get_data(&d), d.len);
            store_spilled_one(s);
            if (it.at_stop)
                s->stop_spilled++;
        } else if (rc == SPILL_ERROR && !broken) {
            s->spill_broken = 1;
            log_error("MongoDB: cannot append to the spill file, not spilling "
                      "any more", LOG_STR("path", spill_path(s->spill)),
                      LOG_STR("error", strerror(err)));
        }
        bson_destroy(&d);
        if (it.promised) {
            s->spill_promised -= it.bound;
            atomic_fetch_sub(&s->spill_promised_n, 1);
        }
        if (rc == SPILL_OK) {
            pub_unref(it.p);
        } else if (it.at_stop) {
            s->stop_lost++;
            pub_unref(it.p);
        } else {
            /* Promised, so kept: in memory past the queue's bound. */
            atomic_fetch_add(&s->reserved, 1);
            store_ring_put(s, it.p, NULL, it.seq);
            if (it.seq < s->ring_min_extra)
                s->ring_min_extra = it.seq;
        }
    }
    s->appending = 0;
    /* A writer goes on with what is left, and replays what was written. */
    pthread_cond_signal(&s->more);
    if (!s->spq_n) {
        spill_truncate_consumed(s->spill);
        store_spill_sync(s);
        if (!spill_records(s->spill))
            s->spill_min_seq = UINT64_MAX;
    }
}

/* Takes the append token when it is free: 1 when the caller must drain. */
static int store_spill_token(store *s)
{
    if (s->appending || !s->spq_n)
        return 0;
    s->appending = 1;
    return 1;
}

/* A write failed: the failed batch's and the queue's ack "broker"
 * publications go to the spill (kept in order, in front of what waits for
 * it; the others stay queued in theirs), so that a crash during the outage
 * loses at most what was not written to the file yet. Moving them is a
 * pointer copy each under the lock; the caller then appends them. v[0..n)
 * is the failed batch; returns how many of it stay (compacted in v). */
static uint32_t store_move_to_spill(store *s, store_item *v, uint32_t n)
{
    spill_item *block = malloc(sizeof(*block) * ((size_t)n + s->count + 1));
    if (!block)
        abort();
    uint32_t nb = 0, kept = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (!v[i].ack && store_spill_take(s, &v[i], &block[nb])) {
            nb++;
            s->busy--;
            atomic_fetch_sub(&s->reserved, 1);
        } else {
            v[kept++] = v[i];
        }
    }
    uint32_t rkept = 0;
    for (uint32_t i = 0; i < s->count; i++) {
        store_item it = s->ring[(s->head + i) % s->alloc];
        if (!it.ack && store_spill_take(s, &it, &block[nb])) {
            nb++;
            atomic_fetch_sub(&s->reserved, 1);
            continue;
        }
        s->ring[(s->head + rkept) % s->alloc] = it;
        rkept++;
    }
    s->count = rkept;
    store_spq_push_front(s, block, nb);
    free(block);
    return kept;
}

/* Shutdown: a publication that could not be written goes to the spill
 * (an ack "durable" one too: its client got no reply); store_stop
 * appends what waits once the writers are gone. */
static void store_keep_at_stop(store *s, store_item *it)
{
    if (s->spill) {
        spill_item sp = { .p = it->p, .seq = it->seq, .at_stop = 1 };
        store_spq_push(s, &sp);
    } else {
        s->stop_lost++;
        pub_unref(it->p);
    }
    if (it->ack) {
        requests_free(store_ack_take(s, it->ack));
        free(it->ack);
    }
    it->p = NULL;
    it->ack = NULL;
}

static int store_replay_due(store *s)
{
    return s->spill && !s->replaying &&
           spill_read_pos(s->spill) < spill_size(s->spill);
}

/* Nothing left to write, append or replay. */
static int store_all_done(store *s)
{
    return !s->count && !s->busy && !s->replaying && !store_replay_due(s) &&
           !s->spq_n && !s->appending;
}

static void store_check_idle(store *s)
{
    if (store_all_done(s))
        pthread_cond_broadcast(&s->idle);
}

/* ---- writers ---------------------------------------------------------- */

/* The lowest sequence number of a batch (in push order, except what an
 * append that failed put back into the ring). */
static uint64_t store_min_seq(const store_item *v, uint32_t n)
{
    uint64_t m = UINT64_MAX;
    for (uint32_t i = 0; i < n; i++)
        if (v[i].seq < m)
            m = v[i].seq;
    return m;
}

/* Writes a batch taken from the ring, retrying with backoff; on a failure
 * its ack "broker" publications and the queue's move to the spill. */
static void store_write_batch(store_wslot *w, store_item *v, uint32_t n)
{
    store *s = w->s;
    uint32_t delay = STORE_RETRY_MIN_MS;
    while (n) {
        if (store_write(s, v, n) == 0) {
            atomic_fetch_add(&s->written, n);
            /* The replies not answered by their deadline yet, then posted
             * outside the lock (in the items' own slots). */
            pthread_mutex_lock(&s->lock);
            for (uint32_t i = 0; i < n; i++) {
                store_ack *a = v[i].ack;
                if (a) {
                    msg *m = store_ack_take(s, a);
                    a->m = m;        /* now only this thread holds it */
                }
            }
            pthread_mutex_unlock(&s->lock);
            for (uint32_t i = 0; i < n; i++) {
                if (v[i].ack) {
                    if (v[i].ack->m)
                        server_post(s->srv, v[i].ack->to, v[i].ack->m);
                    free(v[i].ack);
                }
                pub_unref(v[i].p);
            }
            pthread_mutex_lock(&s->lock);
            s->busy -= n;
            w->busy_min = UINT64_MAX;
            atomic_fetch_sub(&s->reserved, n);
            store_check_idle(s);
            pthread_mutex_unlock(&s->lock);
            return;
        }
        pthread_mutex_lock(&s->lock);
        if (s->abandon) {
            for (uint32_t i = 0; i < n; i++)
                store_keep_at_stop(s, &v[i]);
            s->busy -= n;
            atomic_fetch_sub(&s->reserved, n);
            n = 0;
        } else if (s->spill) {
            n = store_move_to_spill(s, v, n);
        }
        w->busy_min = store_min_seq(v, n);
        /* This thread appends what moved (the lock is not held while it
         * writes), unless another one is appending already. */
        if (!s->abandon && store_spill_token(s))
            store_spill_drain(s, UINT32_MAX);
        store_check_idle(s);
        pthread_mutex_unlock(&s->lock);
        if (!n)
            return;
        store_sleep_ms(delay);
        delay = delay * 2 > STORE_RETRY_MAX_MS ? STORE_RETRY_MAX_MS : delay * 2;
        pthread_mutex_lock(&s->lock);
        if (s->abandon) {
            /* Shutdown during the backoff: no further attempt. */
            for (uint32_t i = 0; i < n; i++)
                store_keep_at_stop(s, &v[i]);
            s->busy -= n;
            w->busy_min = UINT64_MAX;
            atomic_fetch_sub(&s->reserved, n);
            store_check_idle(s);
            n = 0;
        }
        pthread_mutex_unlock(&s->lock);
    }
}

/* Replays spilled records [from, to) in batches of mongodb_batch, each
 * retried until written (duplicates count as written), then consumes
 * them; the file is truncated when all of it is written. */
static void store_replay(store *s, spill_batch *b, uint64_t from, uint64_t to)
{
    int rc = spill_read(s->spill, from, to, s->batch, b);
    if (b->n) {
        bson_t *docs = malloc(sizeof(bson_t) * b->n);
        const bson_t **ptrs = malloc(sizeof(bson_t *) * b->n);
        if (!docs || !ptrs)
            abort();
        for (uint32_t i = 0; i < b->n; i++) {
            if (!bson_init_static(&docs[i], b->buf + b->off[i], b->len[i]))
                abort();   /* spill_read checked the length prefix */
            ptrs[i] = &docs[i];
        }
        uint32_t delay = STORE_RETRY_MIN_MS;
        int done = 0;
        for (;;) {
            if (store_insert(s, ptrs, b->n) == 0) {
                done = 1;
                break;
            }
            store_sleep_ms(delay);
            delay = delay * 2 > STORE_RETRY_MAX_MS ? STORE_RETRY_MAX_MS
                                                   : delay * 2;
            pthread_mutex_lock(&s->lock);
            int give_up = s->abandon;
            pthread_mutex_unlock(&s->lock);
            if (give_up)
                break;
        }
        free(docs);
        free(ptrs);
        if (!done) {
            /* Shutdown: the records stay in the file for the next start. */
            pthread_mutex_lock(&s->lock);
            s->replaying = 0;
            store_check_idle(s);
            pthread_mutex_unlock(&s->lock);
            return;
        }
        atomic_fetch_add(&s->written, b->n);
    }
    pthread_mutex_lock(&s->lock);
    /* Not truncated under a record being appended (the appender does it
     * when it is done). */
    spill_consume(s->spill, b->end, b->n, !s->appending);
    if (rc != SPILL_OK)
        spill_drop_rest(s->spill, !s->appending);
    if (!spill_records(s->spill) && !s->spq_n && !s->appending)
        s->spill_min_seq = UINT64_MAX;
    store_spill_sync(s);
    if (!spill_records(s->spill) && s->spilling_logged) {
        s->spilling_logged = 0;
        log_info("MongoDB: spill drained",
                 LOG_INT("backlog", (int64_t)store_backlog(s)));
    }
    s->replaying = 0;
    if (store_replay_due(s))
        pthread_cond_signal(&s->more);
    store_check_idle(s);
    pthread_mutex_unlock(&s->lock);
}

static void *store_writer(void *arg)
{
    store_wslot *w = arg;
    store *s = w->s;
    store_item *v = malloc(sizeof(*v) * s->batch);
    if (!v)
        abort();
    spill_batch b = { 0 };
    for (;;) {
        pthread_mutex_lock(&s->lock);
        while (!s->count && !store_replay_due(s) &&
               !(s->spq_n && !s->appending) && !s->stopping)
            pthread_cond_wait(&s->more, &s->lock);
        if (s->abandon) {
            pthread_mutex_unlock(&s->lock);
            break;
        }
        if (store_spill_token(s)) {
            /* First: what is in the file survives a crash. */
            store_spill_drain(s, UINT32_MAX);
            store_check_idle(s);
            pthread_mutex_unlock(&s->lock);
            continue;
        }
        if (s->count) {
            uint32_t n = s->count < s->batch ? s->count : s->batch;
            for (uint32_t i = 0; i < n; i++) {
                v[i] = s->ring[s->head];
                s->head = (s->head + 1) % s->alloc;
            }
            s->count -= n;
            s->busy += n;
            w->busy_min = store_min_seq(v, n);
            if (!s->count)
                s->ring_min_extra = UINT64_MAX;
            pthread_mutex_unlock(&s->lock);
            store_write_batch(w, v, n);
            continue;
        }
        if (store_replay_due(s)) {
            s->replaying = 1;
            uint64_t from = spill_read_pos(s->spill);
            uint64_t to = spill_size(s->spill);
            pthread_mutex_unlock(&s->lock);
            store_replay(s, &b, from, to);
            continue;
        }
        pthread_mutex_unlock(&s->lock);   /* stopping, nothing left */
        break;
    }
    spill_batch_free(&b);
    free(v);
    return NULL;
}

store *store_start(const config *cfg, server *srv, char *err, size_t errlen)
{
    bson_error_t berr;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(cfg->mongodb, &berr);
    if (!uri) {
        /* The driver's message may quote the URI: say only where. */
        snprintf(err, errlen, "mongodb: invalid URI (check its syntax and "
                 "options)");
        return NULL;
    }
    /* Our own bounded waits unless the URI says otherwise. */
    if (!mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS,
                                       2000);
    if (!mongoc_uri_has_option(uri, MONGOC_URI_CONNECTTIMEOUTMS))
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, 2000);
    if (!mongoc_uri_has_option(uri, MONGOC_URI_SOCKETTIMEOUTMS))
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SOCKETTIMEOUTMS, 5000);
    store *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    s->uri = uri;
    s->srv = srv;
    s->cfg = cfg;
    s->pool = mongoc_client_pool_new(uri);
    if (!s->pool) {
        snprintf(err, errlen, "mongodb: cannot create a client pool");
        mongoc_uri_destroy(uri);
        free(s);
        return NULL;
    }
    mongoc_client_pool_set_error_api(s->pool, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_pool_set_appname(s->pool, "herald");
    snprintf(s->db, sizeof(s->db), "%s", cfg->mongodb_database);
    snprintf(s->coll, sizeof(s->coll), "%s", cfg->mongodb_collection);
    s->batch = cfg->mongodb_batch;
    s->cap = cfg->mongodb_queue_max;
    s->alloc = s->cap;
    s->ring = calloc(s->alloc, sizeof(store_item));
    if (!s->ring)
        abort();
    s->spill_min_seq = UINT64_MAX;
    s->ring_min_extra = UINT64_MAX;
    if (cfg->mongodb_spill_mb) {
        s->spill = spill_open(cfg->mongodb_spill_path,
                              (uint64_t)cfg->mongodb_spill_mb << 20, err,
                              errlen);
        if (!s->spill) {
            free(s->ring);
            mongoc_client_pool_destroy(s->pool);
            mongoc_uri_destroy(uri);
            free(s);
            return NULL;
        }
        store_spill_sync(s);
        if (spill_records(s->spill)) {
            /* Left by a crash, or by a shutdown that could not write
             * everything: replayed first thing (streams wait for it in
             * memory, and their tops take it into account). */
            s->spilling_logged = 1;
            s->spill_min_seq = 0;   /* older than anything pushed now */
            log_warn("MongoDB: replaying the spill file of an earlier run",
                     LOG_STR("path", cfg->mongodb_spill_path),
                     LOG_INT("count", (int64_t)spill_records(s->spill)),
                     LOG_INT("bytes", (int64_t)spill_size(s->spill)));
        }
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->more, NULL);
    pthread_cond_init(&s->idle, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->ack_cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_create(&s->ack_thread, NULL, store_ack_thread, s);
    s->n_threads = cfg->mongodb_writers;
    s->wslots = calloc(s->n_threads, sizeof(store_wslot));
    if (!s->wslots)
        abort();
    for (uint32_t i = 0; i < s->n_threads; i++) {
        s->wslots[i].s = s;
        s->wslots[i].busy_min = UINT64_MAX;
        pthread_create(&s->wslots[i].th, NULL, store_writer, &s->wslots[i]);
    }
    store_read_start(s);
    store_retention_start(s);
    return s;
}

void store_stop(store *s, uint32_t timeout_ms)
{
    if (!s)
        return;
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    log_info("MongoDB: writing what is queued before exit",
             LOG_INT("backlog", (int64_t)store_backlog(s)),
             LOG_INT("timeout_ms", timeout_ms));
    pthread_cond_broadcast(&s->more);
    while (!store_all_done(s) && !s->hurry &&
           pthread_cond_timedwait(&s->idle, &s->lock, &dl) == 0)
        ;
    if (s->hurry && !store_all_done(s))
        log_warn("MongoDB: told to stop now: what is not written goes to the "
                 "spill file", LOG_INT("backlog", (int64_t)store_backlog(s)));
    s->abandon = 1;
    pthread_cond_broadcast(&s->more);
    /* The workers are gone: no reply can reach a client any more. */
    s->ack_stop = 1;
    pthread_cond_signal(&s->ack_cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->ack_thread, NULL);
    store_retention_stop(s);
    store_read_stop(s);
    for (uint32_t i = 0; i < s->n_threads; i++)
        pthread_join(s->wslots[i].th, NULL);
    /* The writers are gone: what is still queued goes to the spill. */
    pthread_mutex_lock(&s->lock);
    while (s->count) {
        store_keep_at_stop(s, &s->ring[s->head]);
        s->head = (s->head + 1) % s->alloc;
        s->count--;
    }
    if (s->spill && store_spill_token(s))
        store_spill_drain(s, UINT32_MAX);
    pthread_mutex_unlock(&s->lock);
    if (s->spill && spill_records(s->spill))
        log_warn("MongoDB: publications not written at shutdown are in the "
                 "spill file, written at the next start",
                 LOG_INT("count", (int64_t)spill_records(s->spill)),
                 LOG_INT("added_now", (int64_t)s->stop_spilled),
                 LOG_STR("path", spill_path(s->spill)));
    if (s->stop_lost)
        log_error("MongoDB: publications not written at shutdown and lost "
                  "(no spill file, or it cannot take them)",
                  LOG_INT("count", (int64_t)s->stop_lost));
    spill_close(s->spill);
    s->spill = NULL;
}

void store_hurry(store *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->hurry = 1;
    pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->lock);
}

void store_free(store *s)
{
    if (!s)
        return;
    free(s->wslots);
    free(s->ring);
    free(s->spq);
    pthread_cond_destroy(&s->more);
    pthread_cond_destroy(&s->idle);
    pthread_cond_destroy(&s->ack_cond);
    pthread_mutex_destroy(&s->lock);
    mongoc_client_pool_destroy(s->pool);
    mongoc_uri_destroy(s->uri);
    free(s);
}

static int store_ring_reserve(store *s)
{
    unsigned r = atomic_load(&s->reserved);
    do {
        if (r >= s->cap)
            return 0;
    } while (!atomic_compare_exchange_weak(&s->reserved, &r, r + 1));
    return 1;
}

int store_reserve(store *s, const pub *p, int ack_durable)
{
    int spill_ok = !ack_durable && s->spill;
    if (spill_ok) {
        pthread_mutex_lock(&s->lock);
        int rc = (store_spill_active(s) ||
                  atomic_load(&s->reserved) >= s->cap) &&
                 store_spill_promise(s, p);
        pthread_mutex_unlock(&s->lock);
        if (rc)
            return STORE_TO_SPILL;
    }
    if (store_ring_reserve(s))
        return STORE_TO_RING;
    if (spill_ok) {
        /* The ring filled up meanwhile. */
        pthread_mutex_lock(&s->lock);
        int rc = store_spill_promise(s, p);
        pthread_mutex_unlock(&s->lock);
        if (rc)
            return STORE_TO_SPILL;
    }
    return STORE_REFUSED;
}

void store_unreserve(store *s, int where, const pub *p)
{
    if (where == STORE_TO_SPILL) {
        pthread_mutex_lock(&s->lock);
        s->spill_promised -= store_doc_bound(p);
        atomic_fetch_sub(&s->spill_promised_n, 1);
        pthread_mutex_unlock(&s->lock);
    } else if (where == STORE_TO_RING) {
        atomic_fetch_sub(&s->reserved, 1);
    }
}

void store_push(store *s, int where, pub *p, msg *ack, uint16_t ack_to)
{
    uint32_t bound = (uint32_t)store_doc_bound(p);
    pthread_mutex_lock(&s->lock);
    uint64_t seq = atomic_fetch_add(&s->pushed, 1);
    store_item it = { .p = p, .seq = seq };
    spill_item sp;
    if (where == STORE_TO_SPILL) {
        /* Promised at store_reserve: the promise goes with it. */
        sp = (spill_item){ .p = pub_ref(p), .seq = seq, .bound = bound,
                           .promised = 1 };
        store_spq_push(s, &sp);
    } else if (!ack && s->spill && store_spill_active(s) &&
               store_spill_take(s, &it, &sp)) {
        /* The spill filled in while this one was reserved: after them. */
        sp.p = pub_ref(p);
        atomic_fetch_sub(&s->reserved, 1);
        store_spq_push(s, &sp);
    } else {
        store_ring_put(s, pub_ref(p), ack ? store_ack_new(s, ack, ack_to) : NULL,
                       seq);
    }
    /* The owner appends one record itself (its own, unless older ones
     * wait) when nobody is appending: what is acknowledged is in the file
     * as before; while a writer appends (a queue moving after a failure)
     * it leaves it to that writer and does not wait. */
    if (store_spill_token(s))
        store_spill_drain(s, 1);
    pthread_cond_signal(&s->more);
    pthread_mutex_unlock(&s->lock);
}

uint64_t store_push_seq(store *s)
{
    return atomic_load(&s->pushed);
}

int store_pending_before(store *s, uint64_t barrier)
{
    pthread_mutex_lock(&s->lock);
    int pending = s->count && (s->ring[s->head].seq < barrier ||
                               s->ring_min_extra < barrier);
    for (uint32_t i = 0; i < s->n_threads && !pending; i++)
        pending = s->wslots[i].busy_min < barrier;
    if (!pending && s->spill &&
        (spill_records(s->spill) || s->spq_n || s->appending))
        pending = s->spill_min_seq < barrier;
    pthread_mutex_unlock(&s->lock);
    return pending;
}

int store_spill_last(store *s, const char *chan, size_t len, char *epoch,
                     uint64_t *offset, int64_t *time_ms)
{
    if (!s->spill)
        return 0;
    pthread_mutex_lock(&s->lock);
    int rc = spill_last(s->spill, chan, len, epoch, offset, time_ms);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

uint64_t store_backlog(const store *s)
{
    /* Publications move from `reserved` or `spill_promised_n` to
     * `spilled`: reading `spilled` last may count one twice, never none. */
    store *m = (store *)s;
    uint64_t n = atomic_load(&m->reserved);
    n += atomic_load(&m->spill_promised_n);
    return n + atomic_load(&m->spilled);
}

uint64_t store_written(const store *s)
{
    return atomic_load(&((store *)s)->written);
}

uint64_t store_spilled(const store *s)
{
    return atomic_load(&((store *)s)->spilled);
}

uint64_t store_spill_bytes(const store *s)
{
    return atomic_load(&((store *)s)->spill_bytes);
}

int store_failing(const store *s)
{
    return atomic_load(&((store *)s)->failing);
}
