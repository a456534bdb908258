/*
 * Durable store readers (store.h, store_priv.h): threads that answer the
 * owners' questions to MongoDB (a stream's last epoch and offset; history
 * and recovery reads) and post the answers to the owner's mailbox, so no
 * loop thread ever waits for MongoDB.
 */
#include "store_priv.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mailbox.h"
#include "server.h"
#include "worker.h"

typedef struct read_job {
    struct read_job *next;
    uint16_t owner;
    uint16_t len;
    char chan[];
} read_job;

/* Last (epoch, offset) of a channel: the newest document by time, then
 * offset. 1 found, 0 none, -1 error. */
static int store_last(store *s, mongoc_client_t *cl, const read_job *j,
                      char *epoch, uint64_t *offset)
{
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, sort, proj;
    bson_append_utf8(&filter, "channel", 7, j->chan, j->len);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, "time", -1);
    BSON_APPEND_INT32(&sort, "offset", -1);
    bson_append_document_end(&opts, &sort);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &proj);
    BSON_APPEND_INT32(&proj, "epoch", 1);
    BSON_APPEND_INT32(&proj, "offset", 1);
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
        if (bson_iter_init_find(&it, doc, "epoch") && BSON_ITER_HOLDS_UTF8(&it))
            e = bson_iter_utf8(&it, &elen);
        if (e && elen == IDS_LEN && bson_iter_init_find(&it, doc, "offset") &&
            BSON_ITER_HOLDS_INT(&it)) {
            memcpy(epoch, e, IDS_LEN);
            epoch[IDS_LEN] = '\0';
            *offset = (uint64_t)bson_iter_as_int64(&it);
            rc = 1;
        } else {
            log_warn("MongoDB: a stored publication without a valid epoch "
                     "or offset; the stream starts a new epoch",
                     LOG_STRN("channel", j->chan, j->len));
        }
    }
    bson_error_t err;
    if (mongoc_cursor_error(cur, &err)) {
        log_warn("MongoDB: cannot read a stream's last offset",
                 LOG_STRN("channel", j->chan, j->len),
                 LOG_STR("error", err.message));
        rc = -1;
    }
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(coll);
    bson_destroy(&filter);
    bson_destroy(&opts);
    return rc;
}

static void *store_reader(void *arg)
{
    store *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->rlock);
        while (!s->reads && !s->rstop)
            pthread_cond_wait(&s->rmore, &s->rlock);
        read_job *j = s->reads;
        if (s->rstop) {
            pthread_mutex_unlock(&s->rlock);
            break;
        }
        s->reads = j->next;
        if (!s->reads)
            s->reads_tail = NULL;
        pthread_mutex_unlock(&s->rlock);

        char epoch[IDS_LEN + 1];
        uint64_t offset = 0;
        int rc = -1;
        /* Two tries, each bounded by the URI's timeouts. */
        for (int attempt = 0; attempt < 2 && rc < 0; attempt++) {
            mongoc_client_t *cl = mongoc_client_pool_pop(s->pool);
            rc = store_last(s, cl, j, epoch, &offset);
            mongoc_client_pool_push(s->pool, cl);
        }
        msg *m = msg_new(MSG_STORE_LAST, j->chan, j->len, NULL, 0);
        m->flag = rc < 0 ? 2 : (uint8_t)rc;
        if (rc == 1) {
            memcpy(m->epoch, epoch, IDS_LEN + 1);
            m->epoch_len = IDS_LEN;
            m->offset = offset;
        }
        worker_post(s->srv, j->owner, m);
        free(j);
    }
    return NULL;
}

void store_load_last(store *s, uint16_t owner, const char *chan, size_t len)
{
    read_job *j = malloc(sizeof(*j) + len);
    if (!j)
        abort();
    j->next = NULL;
    j->owner = owner;
    j->len = (uint16_t)len;
    memcpy(j->chan, chan, len);
    pthread_mutex_lock(&s->rlock);
    if (s->reads_tail)
        s->reads_tail->next = j;
    else
        s->reads = j;
    s->reads_tail = j;
    pthread_cond_signal(&s->rmore);
    pthread_mutex_unlock(&s->rlock);
}

void store_read_start(store *s)
{
    pthread_mutex_init(&s->rlock, NULL);
    pthread_cond_init(&s->rmore, NULL);
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
    while (s->reads) {
        read_job *j = s->reads;
        s->reads = j->next;
        free(j);
    }
    free(s->readers);
    pthread_cond_destroy(&s->rmore);
    pthread_mutex_destroy(&s->rlock);
}


