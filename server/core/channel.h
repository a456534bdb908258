/*
 * Channel streams, kept by each channel's owner worker (chosen by a hash of
 * the name, so one thread sequences a channel and needs no lock): the
 * epoch, the top offset, the history ring, how many subscribers each worker
 * has (to know where to fan out), and presence. Every function here runs on
 * the owner thread. A stream lives while it has subscribers or retained
 * history; when it is dropped its epoch is gone, so a later stream of the
 * same name gets a new epoch and old positions report recovered:false.
 */
#ifndef HERALD_CHANNEL_H
#define HERALD_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#include <uthash.h>

#include "base/config.h"
#include "core/history.h"
#include "base/ids.h"
#include "core/pub.h"

typedef struct presence_entry {
    UT_hash_handle hh;
    char client[IDS_LEN + 1];
    uint16_t worker;
    uint16_t refs;           /* subscriptions of this client here */
    char *user;              /* NUL-terminated, "" when anonymous */
} presence_entry;

typedef struct chan_state {
    UT_hash_handle hh;
    const config_ns *ns;
    char epoch[IDS_LEN + 1];
    uint64_t top;            /* offset of the newest publication, 0 = none */
    history hist;
    uint32_t total;          /* subscribers, all workers */
    uint32_t *wcount;        /* subscribers per worker */
    presence_entry *presence;
    uint32_t n_presence;
    /* Cluster mode only (server/cluster.c): the stream lives in Redis;
     * epoch and top are what this node has delivered, hist a cache. */
    uint8_t cl_state;        /* enum cl_state */
    uint8_t cl_filling;      /* a read of missed records is in flight */
    uint8_t cl_has_epoch;    /* epoch/top came from Redis */
    uint8_t cl_shard;        /* which Redis server */
    uint32_t cl_busy;        /* recovery reads in flight */
    struct msg *cl_wait;     /* subscribe requests waiting for the stream */
    pub **cl_hold;           /* records ahead of a gap, by offset */
    uint32_t cl_n_hold, cl_cap_hold;
    /* Durable namespaces (server/store.c): the stream's last epoch and
     * offset are being read from the store; requests wait in st_wait. */
    uint8_t st_loading;
    uint32_t st_reads;       /* history/recovery reads in flight */
    struct msg *st_wait;
    uint16_t len;
    char name[];             /* NUL-terminated */
} chan_state;

typedef struct chanreg {
    chan_state *chans;
    size_t n;
    uint32_t n_workers;
    uint32_t min_ring;       /* history ring at least this big (cluster) */
    /* When set and true for a stream, chanreg_gc keeps it (durable streams
     * while their publications may still be on their way to the store). */
    int (*hold)(void *arg, const chan_state *c);
    void *hold_arg;
    ids_rng rng;
} chanreg;

void chanreg_init(chanreg *r, uint32_t n_workers);
void chanreg_free(chanreg *r);

chan_state *chanreg_find(chanreg *r, const char *name, size_t len);
/* Finds or creates (with a new epoch) the stream of a channel. */
chan_state *chanreg_get(chanreg *r, const char *name, size_t len,
                        const config_ns *ns);
/* Drops the stream when it has no subscribers and no retained history.
 * Returns 1 when it was freed. */
int chanreg_gc(chanreg *r, chan_state *c, int64_t now_ms);
/* Drops the stream whatever it holds (cluster mode decides when). */
void chanreg_drop(chanreg *r, chan_state *c);
/* Expires history by age everywhere and drops unused streams. */
void chanreg_expire(chanreg *r, int64_t now_ms);

/* Recovery check for subscribe/history with since. Returns 1 when every
 * publication after `since` in `epoch` is retained (or none is missed) and
 * stores those (references, oldest first) in *out and *n, at most `max`;
 * returns 0 when the position cannot be recovered. *out is malloc'd. */
int chan_recover(chan_state *c, const char *epoch, size_t epoch_len,
                 uint64_t since, uint32_t max, pub ***out, size_t *n);

/* Subscriber bookkeeping. chan_presence_add returns 1 when the client is
 * new in the channel's presence (a join to announce). */
void chan_sub_add(chan_state *c, uint16_t worker);
void chan_sub_del(chan_state *c, uint16_t worker);
int chan_presence_add(chan_state *c, const char *client, const char *user,
                      uint16_t worker);
/* Returns 1 and the user (moved to *user_out, caller frees) when the
 * client left the presence set. */
int chan_presence_del(chan_state *c, const char *client, char **user_out);

/* Sequences a publication: seals offset, epoch and time into the draft
 * (made by pub_new with any epoch of IDS_LEN bytes), appends it to the
 * history ring. */
void chan_publish(chan_state *c, pub *draft, int64_t now_ms);

#endif
