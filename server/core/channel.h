/*
 * Channel streams as a channel's owner worker keeps them (chosen by a hash
 * of the name, so one thread handles a channel and needs no lock): the
 * epoch and the newest offset delivered here, the history ring (the whole
 * history on a single node; in cluster mode a cache of what this node
 * delivered), how many subscribers each worker has (to know where to fan
 * out), this node's presence, requests waiting for the broker to have the
 * stream ready, and the broker's own per-stream state (opaque here).
 * Everything here runs on the owner thread.
 *
 * When a stream is dropped its epoch is gone, so a later stream of the
 * same name gets a new epoch and old positions report recovered:false
 * (unless the broker knows the stream: Redis, or the durable store).
 */
#ifndef HERALD_CORE_CHANNEL_H
#define HERALD_CORE_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#include <uthash.h>

#include "base/config.h"
#include "base/ids.h"
#include "base/mailbox.h"
#include "core/history.h"
#include "core/presence.h"
#include "core/pub.h"

struct broker_stream;

typedef struct chan_state {
    UT_hash_handle hh;
    const config_ns *ns;
    char epoch[IDS_LEN + 1];
    uint64_t top;            /* offset of the newest publication, 0 = none */
    history hist;
    uint32_t total;          /* subscribers, all workers */
    uint32_t *wcount;        /* subscribers per worker */
    presence_set presence;
    msg *waiting;            /* requests parked until the broker has the
                                stream ready (FIFO through msg.next) */
    uint32_t reads;          /* reads in flight (broker window, store) and
                                callbacks running: the stream must stay */
    struct broker_stream *bs;/* the broker's state of this stream, or NULL */
    uint16_t len;
    char name[];             /* NUL-terminated */
} chan_state;

typedef struct chanreg {
    chan_state *chans;
    size_t n;
    uint32_t n_workers;
    uint32_t min_ring;       /* history ring at least this big (cluster) */
    msg_free_fn free_msg;    /* frees parked requests of a dropped stream */
    ids_rng rng;
} chanreg;

void chanreg_init(chanreg *r, uint32_t n_workers, msg_free_fn free_msg);
/* Frees every stream; their broker state must be gone (bs NULL). */
void chanreg_free(chanreg *r);

chan_state *chanreg_find(chanreg *r, const char *name, size_t len);
/* Finds or creates (with a new epoch) the stream of a channel. */
chan_state *chanreg_get(chanreg *r, const char *name, size_t len,
                        const config_ns *ns);
/* Frees a stream (its parked requests too); bs must be NULL. */
void chanreg_drop(chanreg *r, chan_state *c);

/* The offset the history ring starts at: its oldest, or top + 1 when it
 * is empty (it covers [start, top]). */
static inline uint64_t chan_ring_start(const chan_state *c)
{
    uint64_t first = history_first_offset(&c->hist);
    return first ? first : c->top + 1;
}

/* Recovery from the ring for subscribe with since. Returns 1 when every
 * publication after `since` in `epoch` is in the ring (or none is missed)
 * and appends those (references, oldest first) to out, at most `max`;
 * returns 0 when the ring cannot recover the position. */
int chan_recover(chan_state *c, const char *epoch, size_t epoch_len,
                 uint64_t since, uint32_t max, publist *out);

/* Appends to out the ring's publications after `after`, at most `limit`
 * (newest first when reverse; history_select). */
void chan_ring_take(chan_state *c, uint64_t after, uint32_t limit,
                    int reverse, publist *out);

/* A sequenced publication becomes the newest of the stream: history age
 * limit applied, appended to the ring, top moved to its offset. */
void chan_append(chan_state *c, pub *p, int64_t now_ms);

/* The stream continues at (epoch, top) with an empty ring: a position
 * learnt from the broker or the store, or a reset. */
void chan_restart(chan_state *c, const char *epoch, uint64_t top);

/* Subscriber bookkeeping. */
void chan_sub_add(chan_state *c, uint16_t worker);
void chan_sub_del(chan_state *c, uint16_t worker);

/* Parks a request until the broker has the stream ready. */
void chan_park(chan_state *c, msg *m);
/* Takes the parked requests (FIFO list). */
msg *chan_unpark(chan_state *c);

#endif
