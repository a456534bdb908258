/*
 * Cluster mode: several Herald nodes share channels through Redis
 * (docs/cluster.md). Each worker keeps, per configured Redis server, a
 * command connection and a pub/sub connection (hiredis async on the
 * worker's libuv loop) and does for the channels it owns what the owner
 * side does in memory on a single node:
 *
 * - publish: one Lua script assigns the offset (creating the epoch on
 *   first use), appends the record to the channel's bounded hot window and
 *   PUBLISHes it; the record comes back through pub/sub to every node
 *   that has subscribers, this one included, and is delivered from there,
 *   so every node sees one order;
 * - the node SUBSCRIBEs in Redis only to channels with local subscribers,
 *   and delivers in offset order: a record ahead of the next expected
 *   offset waits while the missed ones are read from the hot window; a
 *   gap the window cannot fill closes the channel's local subscribers with
 *   4003 so they recover with since;
 * - Redis down (closed, or no answer within redis_timeout_ms): clients
 *   stay connected and subscribed, publish/subscribe/history/presence get
 *   error 108 "broker unavailable", the link reconnects with exponential
 *   backoff and full jitter, resubscribes and repairs every channel;
 * - presence: per channel a sorted set of client ids scored by expiry and
 *   a hash of users, refreshed by the owning node every presence_ttl/3;
 *   entries of a dead node expire and their leave is announced.
 *
 * Everything here runs on the owning worker's thread.
 */
#ifndef HERALD_CLUSTER_H
#define HERALD_CLUSTER_H

#include "base/mailbox.h"

struct worker;

enum cl_state {
    CL_IDLE = 0,      /* not subscribed in Redis */
    CL_SUBSCRIBING,   /* SUBSCRIBE sent */
    CL_SYNC,          /* subscribed; reading epoch and top */
    CL_LIVE,          /* delivering */
    CL_UNSUBSCRIBING, /* UNSUBSCRIBE sent (the last subscriber left) */
    CL_DOWN,          /* the link is down; subscribers kept, repaired later */
};

/* Starts the links of worker w (on its thread, its loop about to run). */
int cluster_start(struct worker *w);
/* Closes the links (worker stopping); pending requests fail. */
void cluster_stop(struct worker *w);
/* Frees what cluster_start allocated (after the loop ended). */
void cluster_free(struct worker *w);

/* Owner-side requests in cluster mode (like owner_handle). */
void cluster_handle(struct worker *w, msg *m);
/* Periodic (each tick): history-cache expiry. */
void cluster_expire(struct worker *w);

/* Which Redis server holds a channel: FNV-1a 32 of the name modulo n. */
uint32_t cluster_shard(const char *chan, size_t len, uint32_t n);

#endif
