/*
 * The Redis broker (broker/broker.h): cluster mode. Several Herald nodes
 * share channels through Redis (docs/cluster.md). Each worker keeps, per
 * configured Redis server, a command connection and a pub/sub connection
 * (hiredis async on the worker's libuv loop), and for the channels it
 * owns:
 *
 * - publish: one Lua script assigns the offset (creating the epoch on
 *   first use), appends the record to the channel's bounded hot window and
 *   PUBLISHes it; the record comes back through pub/sub to every node
 *   that has subscribers, this one included, and is delivered from there,
 *   so every node sees one order;
 * - the node SUBSCRIBEs in Redis only to channels with local subscribers,
 *   and delivers in offset order (order.h), repairing gaps from the hot
 *   window;
 * - Redis down (closed, or no answer within redis_timeout_ms): clients
 *   stay connected and subscribed, requests get error 108 "broker
 *   unavailable", the link reconnects with exponential backoff and full
 *   jitter, resubscribes and repairs every channel;
 * - presence: per channel a sorted set of client ids scored by expiry and
 *   a hash of users, refreshed by the owning node every presence_ttl/3;
 *   entries of a dead node expire and their leave is announced.
 */
#ifndef HERALD_BROKER_REDIS_H
#define HERALD_BROKER_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/server.h"
#include "broker/broker.h"

/* A Redis broker for the owner of worker `worker`, on its loop. */
broker *broker_redis_new(server *srv, uint16_t worker, uv_loop_t *loop);

/* Which Redis server holds a channel: FNV-1a 32 of the name modulo n. */
uint32_t redis_shard(const char *chan, size_t len, uint32_t n);

#endif
