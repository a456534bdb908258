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
 *
 * The registry is bounded (max_channels, history_memory_mb): it keeps its
 * streams without subscribers in a list, least recently used (published
 * to, created, or left by its last subscriber) first, for the owner to
 * evict from; and it walks its streams a bounded number at a time
 * (chanreg_walk) for the owner's periodic expiry.
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
#include "core/idem.h"
#include "core/presence.h"
#include "core/pub.h"

struct broker_stream;

typedef struct chan_state {
    UT_hash_handle hh;
    struct chan_state *iprev, *inext; /* in the registry's idle list while
                                         it has no subscribers (iprev NULL:
                                         not in it) */
    const config_ns *ns;
    char epoch[IDS_LEN + 1];
    uint64_t top;            /* offset of the newest publication, 0 = none */
    history hist;
    uint32_t total;          /* subscribers, all workers */
    uint32_t *wcount;        /* subscribers per worker */
    uint8_t *wcut;           /* per worker: fan-out cut off (its mailbox was
                                full), its subscribers told to recover
                                (core/owner.c); in wcount's allocation */
    presence_set presence;
    msg *waiting;            /* requests parked until the broker has the
                                stream ready (FIFO through msg.next) */
    uint32_t reads;          /* reads in flight (broker window, store) and
                                callbacks running: the stream must stay */
    struct broker_stream *bs;/* the broker's state of this stream, or NULL */
    idem_map *idem;          /* idempotency keys published with, or NULL
                                (core/owner.c, core/idem.h) */
    int64_t born_ms;         /* when the owner made the stream: a map
                                younger than idempotency_window may miss
                                keys a durable store has */
    uint16_t len;
    char name[];             /* NUL-terminated */
} chan_state;

typedef struct chanreg {
    chan_state *chans;
    size_t n;
    size_t bytes;            /* publications retained by every ring */
    size_t max_n;            /* streams kept at most; 0 = no bound */
    size_t max_bytes;        /* ring bytes above which idle streams are
                                evicted; 0 = no bound */
    chan_state *idle;        /* streams without subscribers, least
                                recently used first (utlist DL) */
    chan_state *walk;        /* where chanreg_walk continues (hash order);
                                NULL: at the start of a round */
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

/* 1 when a new stream would go over max_n. */
static inline int chanreg_full(const chanreg *r)
{
    return r->max_n && r->n >= r->max_n;
}

/* 1 while the rings hold more than max_bytes. */
static inline int chanreg_over_bytes(const chanreg *r)
{
    return r->max_bytes && r->bytes > r->max_bytes;
}

/* The least recently used stream without subscribers, or NULL. */
static inline chan_state *chanreg_idle_oldest(const chanreg *r)
{
    return r->idle;
}

/* A stream without subscribers becomes the most recently used one (no-op
 * for a stream with subscribers). */
void chanreg_touch(chanreg *r, chan_state *c);

/* Calls fn on up to `max` streams, continuing where the previous walk
 * stopped; a walk that reaches the last stream stops there, and the next
 * one starts a new round from the first. fn may drop the stream it is
 * given (or others). Streams added during a round are visited in it.
 * Returns how many streams were visited. */
size_t chanreg_walk(chanreg *r, size_t max,
                    void (*fn)(void *ctx, chan_state *c), void *ctx);

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
 * limit applied, appended to the ring, top moved to its offset; the
 * stream is the most recently used one (chanreg_touch). */
void chan_append(chanreg *r, chan_state *c, pub *p, int64_t now_ms);

/* Drops the ring's publications older than the namespace's history_ttl. */
void chan_expire(chan_state *c, int64_t now_ms);

/* The stream continues at (epoch, top) with an empty ring: a position
 * learnt from the broker or the store, or a reset. */
void chan_restart(chan_state *c, const char *epoch, uint64_t top);

/* Subscriber bookkeeping: the first subscriber takes the stream out of
 * the idle list, the last one to leave puts it back as the most recently
 * used. */
void chan_sub_add(chanreg *r, chan_state *c, uint16_t worker);
void chan_sub_del(chanreg *r, chan_state *c, uint16_t worker);

/* Parks a request until the broker has the stream ready. */
void chan_park(chan_state *c, msg *m);
/* Takes the parked requests (FIFO list). */
msg *chan_unpark(chan_state *c);

#endif
