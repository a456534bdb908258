/*
 * The channel owner: every channel has one owner worker (server_owner),
 * and its owner is the only thread that touches the channel's stream.
 * Every channel rule that needs the stream is here, once, for every
 * broker: subscribe (limits, recovery from the ring, the broker's window
 * and the durable store), unsubscribe, publish (back-pressure, durable
 * reservation and acks), history (ring or window, then the store),
 * presence and join/leave, fan-out to the workers with subscribers, and
 * when a stream may be dropped. The broker (broker/broker.h) numbers and
 * carries publications; the owner is its sink.
 *
 * Requests arrive in the worker's mailbox (core/requests.h) and are
 * answered through the requester's; fan-out is one message per worker
 * that has subscribers, never per subscriber.
 */
#ifndef HERALD_CORE_OWNER_H
#define HERALD_CORE_OWNER_H

#include <stdint.h>

#include "base/mailbox.h"
#include "base/server.h"
#include "core/channel.h"

struct broker;
struct store;
struct metrics_worker;

typedef struct owner {
    server *srv;
    uint16_t index;          /* this worker */
    chanreg reg;             /* the streams of the channels it owns */
    struct broker *b;
    struct store *st;        /* durable store, or NULL */
    int64_t full_logged_ms;  /* last "too many channels" warning */
    uint64_t cuts;           /* fan-out cut-offs not yet logged */
    int64_t cut_logged_ms;   /* the last "fan-out cut off" line */
    struct metrics_worker *m;/* this worker's counters; NULL: metrics off */
} owner;

/* Sets up the owner of worker `index` over broker b (whose sink it
 * becomes). */
void owner_init(owner *o, server *srv, uint16_t index, struct broker *b);
/* Frees the streams (after the broker stopped). */
void owner_free(owner *o);

/* A message for the owner side (OWN_*); takes it. */
void owner_receive(owner *o, msg *m);

/* Streams the periodic walk (history expiry, dropping unused streams)
 * visits per tick: a bounded pause of the owner's loop, whatever the
 * number of streams (a million streams on one owner: a round in about
 * four minutes; a stream in use is expired when used, too). */
#define OWNER_WALK_PER_TICK 4096

/* Once a second: history expiry by age and dropping unused streams, for
 * a bounded number of streams per call (the walk resumes where it
 * stopped); eviction while the rings are over history_memory_mb. */
void owner_tick(owner *o);

#endif
