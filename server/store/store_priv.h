/*
 * Inside the durable store (store.h): the state shared by its parts.
 * store.c owns the writer queue and threads, store_read.c the reader
 * threads (stream tops, history and recovery reads), store_retention.c the
 * retention pass. Nothing outside server/store*.c includes this.
 */
#ifndef HERALD_STORE_PRIV_H
#define HERALD_STORE_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <mongoc/mongoc.h>

#include "store/store.h"

struct server;
struct read_job;
struct store_item;
struct store_wslot;
struct store_ack;
struct spill_item;
struct spill;

struct store {
    struct server *srv;
    const config *cfg;
    mongoc_client_pool_t *pool;
    mongoc_uri_t *uri;
    char db[64], coll[64];

    /* ---- writers (store.c) ---- */
    uint32_t batch;
    pthread_mutex_t lock;
    pthread_cond_t more;       /* writers wait for publications */
    pthread_cond_t idle;       /* store_stop waits for an empty queue */
    struct store_item *ring;   /* under lock */
    uint32_t cap;              /* mongodb_queue_max: ring reservations */
    uint32_t alloc;            /* ring slots; beyond cap only when the
                                * spill file cannot take what was promised
                                * to it (an I/O error) */
    uint32_t head, count;      /* under lock */
    uint32_t busy;             /* publications taken by writers, unwritten */
    int stopping;
    int hurry;                 /* store_hurry: stop waiting for MongoDB */
    int abandon;               /* stop now, even with work left */
    atomic_uint reserved;      /* ring: queued + taken + promised (owners
                                * add by CAS, writers subtract) */
    atomic_ullong written;
    atomic_int failing;
    atomic_int indexed;
    /* Every pushed publication gets the next sequence number (under lock;
     * read without it by store_push_seq). What is still unwritten has
     * the lowest ones at the ring's head, in each writer's batch
     * (wslots[i].busy_min) and, for the spill file, at most spill_min_seq:
     * store_pending_before answers a read's question "is anything pushed
     * before me still on its way?" from these. */
    atomic_ullong pushed;
    uint64_t spill_min_seq;    /* lowest sequence number that went to the
                                * spill file since it was last empty
                                * (0 for an earlier run's records) */
    struct store_wslot *wslots;
    uint32_t n_threads;
    /* ack "durable" replies not sent yet, oldest (first deadline) first,
     * under lock; the ack thread answers those whose deadline passed with
     * 108 (durable_ack_timeout_ms) and leaves their publications queued. */
    struct store_ack *acks, *acks_tail;
    pthread_cond_t ack_cond;   /* CLOCK_MONOTONIC, with lock */
    pthread_t ack_thread;
    int ack_stop;              /* under lock */
    /* The spill file (NULL: mongodb_spill_mb = 0); spill.c is called under
     * lock, except the replaying writer's reads and the appender's writes.
     * What goes to the spill waits in the spill queue (spq, in order,
     * under lock) for the one thread at a time that holds the append
     * token (appending): it encodes and writes each record without the
     * lock and commits it under the lock, so a move of the whole writer
     * queue never holds the lock for more than a pointer copy each. */
    struct spill *spill;
    struct spill_item *spq;    /* ring of spq_cap, under lock */
    uint32_t spq_head, spq_n, spq_cap;
    int appending;             /* the append token is taken (under lock) */
    uint64_t ring_min_extra;   /* lowest sequence number put back into the
                                * ring out of order (an append failed),
                                * UINT64_MAX when none; under lock */
    int spill_broken;          /* an append failed: no more spilling */
    int spilling_logged;       /* "spilling to" said, "drained" not yet */
    int replaying;             /* one writer replays the spill at a time */
    uint64_t spill_promised;   /* bytes reserved in the spill, under lock */
    atomic_ullong spill_promised_n;  /* publications those bytes are for */
    atomic_ullong spilled;     /* records in the spill, unwritten */
    atomic_ullong spill_bytes; /* the spill file's size */
    uint64_t stop_spilled;     /* at shutdown: kept in the spill (under lock) */
    uint64_t stop_lost;        /* at shutdown: neither written nor spilled */

    /* ---- readers (store_read.c) ---- */
    pthread_mutex_t rlock;
    pthread_cond_t rmore;      /* CLOCK_MONOTONIC */
    struct read_job *reads, *reads_tail;   /* new jobs, under rlock */
    struct read_job *waits, *waits_tail;   /* reads that found the store
                                              behind, by due time, under
                                              rlock */
    int rstop;                             /* under rlock */
    pthread_t *readers;
    uint32_t n_readers;

    /* ---- retention (store_retention.c) ---- */
    pthread_t retention;
    pthread_mutex_t tlock;
    pthread_cond_t tstop_cond;  /* CLOCK_MONOTONIC: the wait between passes */
    int tstop;                 /* under tlock */
    int tstarted;              /* the thread runs (some namespace has
                                  retention); set before it starts */
    /* Owned by the retention thread alone: where the next pass resumes
     * (channels after tcursor), and whether the last pass failed. */
    char tcursor[256];
    size_t tcursor_len;
    int tfailing;
    /* Totals, for /healthz or tests (any thread may read). */
    atomic_ullong tpasses;     /* passes completed */
    atomic_ullong tdeleted;    /* documents deleted */
};

/* ---- the stored document (doc.c) ---- */

/* The document of a sequenced publication. */
void store_doc(bson_t *d, const pub *p);
/* A stored document as a publication of channel chan in epoch (IDS_LEN
 * bytes); NULL when a field is missing or of the wrong type (logged: the
 * document was not written by herald). */
pub *store_doc_pub(const char *chan, size_t chan_len, const char *epoch,
                   const bson_t *doc);

/* A stored document's place in its stream. Herald writes IDS_LEN-byte
 * epochs; other documents may hold others (retention still orders them). */
typedef struct store_pos {
    char epoch[128];
    size_t epoch_len;
    int64_t offset;
    int64_t time_ms;
} store_pos;

/* Appends to find options the projection of those three fields. */
void store_pos_projection(bson_t *opts);

#define STORE_POS_INVALID 2
/* The place of the first document find(filter, opts) returns: 1 found, 0
 * none, STORE_POS_INVALID when the document lacks a field (not written by
 * herald), -1 when the query failed (err set). */
int store_find_pos(mongoc_collection_t *coll, const bson_t *filter,
                   const bson_t *opts, store_pos *pos, bson_error_t *err);

/* Sleeps ms milliseconds (any thread; EINTR resumed). */
void store_sleep_ms(uint32_t ms);

/* The sequence number the next pushed publication gets (any thread). */
uint64_t store_push_seq(store *s);
/* 1 while a publication pushed with a sequence number below `barrier` is
 * not in MongoDB yet (queued, being written, or in the spill file). */
int store_pending_before(store *s, uint64_t barrier);

/* Reader threads: started after the pool exists, stopped before it goes. */
void store_read_start(store *s);
void store_read_stop(store *s);

/* The retention thread (one pass every retention_interval seconds). */
void store_retention_start(store *s);
void store_retention_stop(store *s);

#endif
