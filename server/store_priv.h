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

#include "store.h"

struct server;
struct read_job;

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
    pub **ring;
    uint32_t cap, head, count;
    uint32_t busy;             /* publications taken by writers, unwritten */
    int stopping;
    int abandon;               /* stop now, even with work left */
    atomic_uint reserved;      /* queued + promised */
    atomic_ullong written;
    atomic_int failing;
    atomic_int indexed;
    pthread_t *threads;
    uint32_t n_threads;

    /* ---- readers (store_read.c) ---- */
    pthread_mutex_t rlock;
    pthread_cond_t rmore;
    struct read_job *reads, *reads_tail;   /* under rlock */
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

/* Sleeps ms milliseconds (any thread; EINTR resumed). */
void store_sleep_ms(uint32_t ms);

/* Reader threads: started after the pool exists, stopped before it goes. */
void store_read_start(store *s);
void store_read_stop(store *s);

/* The retention thread (one pass every retention_interval seconds). */
void store_retention_start(store *s);
void store_retention_stop(store *s);

#endif
