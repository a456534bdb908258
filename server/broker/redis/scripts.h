/*
 * Cluster mode's Lua scripts, loaded with SCRIPT LOAD on every connection
 * (link.c) and run with EVALSHA. Keys of a channel share the Redis Cluster
 * hash tag {channel} (keys.h):
 *
 *   SC_PUB      number a publication, append it to the hot window (a
 *               sorted set bounded to the window size), refresh the keys'
 *               TTL, PUBLISH the record; returns {offset, epoch}; with an
 *               idempotency key, first checks {prefix}:{channel}:idem:key
 *               (the publication it made: {offset, epoch, hash}) and sets
 *               it (SET NX PX idempotency_window) after publishing
 *   SC_RANGE    a stream's epoch, top, first offset in the window and a
 *               range of records (creating the stream when missing)
 *   SC_JOIN, SC_LEAVE, SC_REFRESH, SC_QUERY   presence (presence.c)
 *   SC_OCC, SC_LEASE, SC_REAP   webhooks' occupied/vacated across nodes,
 *               members' leases, a dead member's events (occupancy.c)
 */
#ifndef HERALD_BROKER_REDIS_SCRIPTS_H
#define HERALD_BROKER_REDIS_SCRIPTS_H

enum { SC_PUB, SC_RANGE, SC_JOIN, SC_LEAVE, SC_REFRESH, SC_QUERY, SC_OCC,
       SC_LEASE, SC_REAP, SC_N };

/* Expired presence entries one SC_REFRESH call removes at most (it
 * returns how many it removed: this many means there may be more). A
 * literal: it is spliced into the script's text. */
#define SCRIPT_REFRESH_SWEEP 256

extern const char *const redis_scripts[SC_N];

#endif
