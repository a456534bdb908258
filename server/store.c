/*
 * MongoDB writer pool (see store.h). The queue is a ring guarded by one
 * mutex; `reserved` counts slots promised to owners, so a push never finds
 * the ring full. Writers take up to mongodb_batch publications at a time.
 */
#include "store_priv.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mongoc/mongoc.h>

#include "log.h"
#include "mailbox.h"
#include "server.h"
#include "worker.h"

#define STORE_RETRY_MIN_MS 100
#define STORE_RETRY_MAX_MS 2000
#define STORE_DUP_KEY 11000

void store_sleep_ms(uint32_t ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
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
 * serves a stream's newest document and retention by age. */
static int store_index(store *s, mongoc_client_t *cl)
{
    static const char *const by_offset[] = { "channel", "epoch", "offset",
                                             NULL };
    static const char *const by_time[] = { "channel", "time", NULL };
    if (store_index_one(s, cl, "channel_epoch_offset", by_offset, 1) < 0)
        return -1;
    return store_index_one(s, cl, "channel_time", by_time, 0);
}

static void store_doc(bson_t *d, const pub *p)
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
}

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

static int store_write(store *s, mongoc_client_t *cl, pub **v, uint32_t n)
{
    bson_t *docs = malloc(sizeof(bson_t) * n);
    const bson_t **ptrs = malloc(sizeof(bson_t *) * n);
    if (!docs || !ptrs)
        abort();
    for (uint32_t i = 0; i < n; i++) {
        store_doc(&docs[i], v[i]);
        ptrs[i] = &docs[i];
    }
    bson_t opts = BSON_INITIALIZER, reply;
    BSON_APPEND_BOOL(&opts, "ordered", false);
    bson_error_t err;
    mongoc_collection_t *coll = mongoc_client_get_collection(cl, s->db,
                                                             s->coll);
    bool ok = mongoc_collection_insert_many(coll, ptrs, n, &opts, &reply,
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
    for (uint32_t i = 0; i < n; i++)
        bson_destroy(&docs[i]);
    free(docs);
    free(ptrs);
    return rc;
}

static void *store_writer(void *arg)
{
    store *s = arg;
    pub **v = malloc(sizeof(pub *) * s->batch);
    if (!v)
        abort();
    for (;;) {
        pthread_mutex_lock(&s->lock);
        while (!s->count && !s->stopping)
            pthread_cond_wait(&s->more, &s->lock);
        if (!s->count || s->abandon) {
            pthread_mutex_unlock(&s->lock);
            break;
        }
        uint32_t n = s->count < s->batch ? s->count : s->batch;
        for (uint32_t i = 0; i < n; i++) {
            v[i] = s->ring[s->head];
            s->head = (s->head + 1) % s->cap;
        }
        s->count -= n;
        s->busy += n;
        pthread_mutex_unlock(&s->lock);

        uint32_t delay = STORE_RETRY_MIN_MS;
        int done = 0;
        for (;;) {
            mongoc_client_t *cl = mongoc_client_pool_pop(s->pool);
            int rc = 0;
            if (!atomic_load(&s->indexed) && store_index(s, cl) == 0)
                atomic_store(&s->indexed, 1);
            rc = store_write(s, cl, v, n);
            mongoc_client_pool_push(s->pool, cl);
            if (rc == 0) {
                done = 1;
                break;
            }
            pthread_mutex_lock(&s->lock);
            int give_up = s->abandon;
            pthread_mutex_unlock(&s->lock);
            if (give_up)
                break;
            store_sleep_ms(delay);
            delay = delay * 2 > STORE_RETRY_MAX_MS ? STORE_RETRY_MAX_MS
                                                   : delay * 2;
        }
        for (uint32_t i = 0; i < n; i++)
            pub_unref(v[i]);
        if (done)
            atomic_fetch_add(&s->written, n);
        pthread_mutex_lock(&s->lock);
        s->busy -= n;
        atomic_fetch_sub(&s->reserved, n);
        if (!s->count && !s->busy)
            pthread_cond_broadcast(&s->idle);
        pthread_mutex_unlock(&s->lock);
    }
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
    s->ring = calloc(s->cap, sizeof(pub *));
    if (!s->ring)
        abort();
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->more, NULL);
    pthread_cond_init(&s->idle, NULL);
    s->n_threads = cfg->mongodb_writers;
    s->threads = calloc(s->n_threads, sizeof(pthread_t));
    if (!s->threads)
        abort();
    for (uint32_t i = 0; i < s->n_threads; i++)
        pthread_create(&s->threads[i], NULL, store_writer, s);
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
    pthread_cond_broadcast(&s->more);
    while ((s->count || s->busy) &&
           pthread_cond_timedwait(&s->idle, &s->lock, &dl) == 0)
        ;
    uint64_t left = s->count + s->busy;
    s->abandon = 1;
    pthread_cond_broadcast(&s->more);
    pthread_mutex_unlock(&s->lock);
    if (left)
        log_warn("MongoDB: publications not written at shutdown",
                 LOG_INT("count", (int64_t)left));
    store_retention_stop(s);
    store_read_stop(s);
    for (uint32_t i = 0; i < s->n_threads; i++)
        pthread_join(s->threads[i], NULL);
    while (s->count) {
        pub_unref(s->ring[s->head]);
        s->head = (s->head + 1) % s->cap;
        s->count--;
    }
    free(s->threads);
    free(s->ring);
    pthread_cond_destroy(&s->more);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->lock);
    mongoc_client_pool_destroy(s->pool);
    mongoc_uri_destroy(s->uri);
    free(s);
}

int store_reserve(store *s)
{
    unsigned r = atomic_load(&s->reserved);
    do {
        if (r >= s->cap)
            return 0;
    } while (!atomic_compare_exchange_weak(&s->reserved, &r, r + 1));
    return 1;
}

void store_push(store *s, pub *p)
{
    pthread_mutex_lock(&s->lock);
    s->ring[(s->head + s->count) % s->cap] = pub_ref(p);
    s->count++;
    pthread_cond_signal(&s->more);
    pthread_mutex_unlock(&s->lock);
}

uint64_t store_backlog(const store *s)
{
    return atomic_load(&((store *)s)->reserved);
}

uint64_t store_written(const store *s)
{
    return atomic_load(&((store *)s)->written);
}

int store_failing(const store *s)
{
    return atomic_load(&((store *)s)->failing);
}
