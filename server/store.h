/*
 * Durable history, write side: publications of `durable` namespaces are
 * written to MongoDB (one document each) by a pool of writer threads, never
 * on a loop thread. The channel owner reserves room before it sequences a
 * publication, so a full queue refuses the publish (error 108) instead of
 * dropping a publication that was acknowledged; writes are batched
 * (insert_many, unordered) and retried until they succeed, and a retry
 * that meets its own earlier write (duplicate key on channel, epoch,
 * offset) counts as written.
 *
 * Document: { channel, epoch, offset (int64), time (date), json (the data
 * as JSON text), mp (the data as msgpack, binary), binary (bool: msgpack
 * bin data), client, user (publisher, when a client published) }.
 * Indexes (createIndexes at start): unique (channel, epoch, offset).
 *
 * Streams continue across restarts: a durable channel's stream, when
 * first used, takes its epoch and top offset from the store (a reader
 * thread), requests waiting meanwhile.
 *
 * Not yet (issue 5): history and recovery read from MongoDB, the spill
 * file, retention, ack=durable, cluster mode (docs/durable-history.md).
 */
#ifndef HERALD_STORE_H
#define HERALD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "ids.h"
#include "mailbox.h"
#include "pub.h"

typedef struct store store;

/* Starts the writer threads (the index is created by the first writer, and
 * again until it succeeds); NULL with a message in err when the URI is
 * invalid. MongoDB need not be up. */
struct server;
store *store_start(const config *cfg, struct server *srv, char *err,
                   size_t errlen);
/* Writes what is queued (for up to timeout_ms), stops the threads, frees. */
void store_stop(store *s, uint32_t timeout_ms);

/* Reserves room for one publication (any thread); 0 when the queue is
 * full. A reservation must be followed by store_push. */
int store_reserve(store *s);
/* Queues a sequenced publication (takes a reference of its own). */
void store_push(store *s, pub *p);

/* Asks for the last epoch and offset stored for a channel; the answer
 * comes to worker `owner` as MSG_STORE_LAST (flag 1: found, 0: none, 2:
 * the store did not answer in time). */
void store_load_last(store *s, uint16_t owner, const char *chan, size_t len);

/* A read of stored publications of one channel in one epoch, offsets in
 * (lo, hi), at most n, oldest first (newest first when reverse). strict:
 * the answer must start at lo + 1 (recovery, history with since). */
typedef struct store_range {
    char epoch[IDS_LEN + 1];
    uint64_t lo, hi;
    uint32_t n;
    uint8_t reverse, strict;
} store_range;

/* Reads r on a reader thread and posts m (a SUB_REQ or HIST_REQ of the
 * channel) back to worker `owner` as MSG_STORE_READ, with the publications
 * appended to m->pubs and m->code 0 when they are contiguous and complete
 * (or, reverse, end where the retained ones end), PROTO_E_UNRECOVERABLE
 * when the start is gone (retention) and PROTO_E_NOT_AVAILABLE when the
 * store did not answer or stayed behind (publications not yet written). */
void store_read_range(store *s, uint16_t owner, msg *m, const store_range *r);

/* Publications queued or being written; total written. */
uint64_t store_backlog(const store *s);
uint64_t store_written(const store *s);
/* 1 while the last write attempt failed (MongoDB unreachable). */
int store_failing(const store *s);

#endif
