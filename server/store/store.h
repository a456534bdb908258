/*
 * Durable history: publications of `durable` namespaces are
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
 * bin data), client, user (publisher, when a client published), ik, ih
 * (the idempotency_key and the data's hash, int64, when it had one) }.
 * Indexes (createIndexes at start, one command each): unique (channel,
 * epoch, offset), (channel, time) and (channel, ik).
 *
 * Streams continue across restarts: a durable channel's stream, when
 * first used, takes its epoch and top offset from the store (a reader
 * thread), requests waiting meanwhile.
 *
 * When the queue is full or MongoDB is failing, ack "broker" publications
 * go to an append-only spill file (spill.h) instead, replayed by a writer
 * when MongoDB answers and at the next start. Publications of ack
 * "durable" namespaces never do: their reply waits until they are in
 * MongoDB (docs/durable-history.md).
 *
 * Reads (store_read.c): history and recovery older than the memory ring
 * (or the Redis window in cluster mode) are read by reader threads and
 * posted back to the owner. Retention (store_retention.c): a background
 * pass deletes by age and count per namespace.
 */
#ifndef HERALD_STORE_H
#define HERALD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "base/ids.h"
#include "base/mailbox.h"
#include "core/requests.h"
#include "core/pub.h"

typedef struct store store;

/* Starts the writer threads (the index is created by the first writer, and
 * again until it succeeds); NULL with a message in err when the URI is
 * invalid. MongoDB need not be up. */
struct server;
store *store_start(const config *cfg, struct server *srv, char *err,
                   size_t errlen);
/* Writes what is queued (for up to timeout_ms, or until store_hurry),
 * stops the threads and appends what is left to the spill file. */
void store_stop(store *s, uint32_t timeout_ms);
/* "Stop now" (a second signal; any thread, before or during store_stop):
 * store_stop waits no longer for MongoDB, but still spills what is left. */
void store_hurry(store *s);
/* Frees a stopped store. */
void store_free(store *s);

/* MongoDB's document limit (16 MiB). A publication carries its data twice
 * (JSON and msgpack), so with max_message_size above about 8 MiB one may
 * not fit: store_fits says so before it is sequenced (the publish gets
 * 112 instead of a write that could never succeed). */
#define STORE_DOC_MAX 16777216u
int store_fits(const pub *p);

/* Where a reserved publication goes (store_reserve's answer). */
#define STORE_REFUSED 0     /* no room: the publish gets 108 */
#define STORE_TO_RING 1     /* the in-memory writer queue */
#define STORE_TO_SPILL 2    /* the spill file (ack "broker" only) */

/* Reserves room for one publication (any thread), before it is sequenced:
 * in the queue, or, for ack "broker" when the queue is full or the spill
 * is in use (MongoDB failing, or the spill not drained yet: per-channel
 * order), in the spill file. A reservation must be followed by
 * store_push with its answer. */
int store_reserve(store *s, const pub *p, int ack_durable);
/* Queues a sequenced publication (takes a reference of its own). ack,
 * for ack "durable", is the publish reply, ready to post: the store posts
 * it to worker ack_to once the publication is in MongoDB, and frees it at
 * shutdown if that never happened. */
void store_push(store *s, int where, pub *p, msg *ack, uint16_t ack_to);
/* Gives a reservation back unused (cluster mode: Redis did not number the
 * publication); p is the draft it was made for. */
void store_unreserve(store *s, int where, const pub *p);

/* The newest publication of a channel that is in the spill file and maybe
 * not in MongoDB yet (store_read.c prefers it when newer): 1 found. */
int store_spill_last(store *s, const char *chan, size_t len, char *epoch,
                     uint64_t *offset, int64_t *time_ms);

/* Asks for the last epoch and offset stored for a channel; the answer
 * comes to worker `owner` as a store_top_msg (core/requests.h: found,
 * none, or failed when the store did not answer in time). */
void store_load_last(store *s, uint16_t owner, const char *chan, size_t len);

/* Asks for the newest stored publication of a channel with an
 * idempotency key (its `ik`); the answer comes to worker `owner` as an
 * idem_found_msg (core/requests.h). Publications still in the spill file
 * are not seen. */
void store_find_key(store *s, uint16_t owner, const char *chan, size_t len,
                    const char *key, size_t key_len);

/* Flags of store_read_range. */
#define STORE_READ_REVERSE 1u   /* newest first (else oldest first) */
#define STORE_READ_STRICT 2u    /* the answer must start at lo + 1
                                   (recovery, history with since) */
#define STORE_READ_OTHERS 4u    /* other nodes write too (cluster): a short
                                   answer may be behind even with no local
                                   backlog */

/* Reads the channel's stored publications of one epoch (IDS_LEN bytes)
 * with offsets in (lo, hi), at most n, on a reader thread: appends them to
 * *out and sets *status to 0 when they are contiguous and complete (or,
 * reverse, end where the retained ones end), PROTO_E_UNRECOVERABLE when
 * the start is gone (retention) and PROTO_E_NOT_AVAILABLE when the store
 * did not answer or stayed behind (publications not yet written); then
 * posts m (a request of the channel, whose type says where it continues;
 * out and status point into it) back to worker `owner`. */
void store_read_range(store *s, uint16_t owner, msg *m, publist *out,
                      int16_t *status, const char *epoch, uint64_t lo,
                      uint64_t hi, uint32_t n, unsigned flags);

/* Publications queued, being written or in the spill file; total
 * written; publications in the spill file and its size in bytes. */
uint64_t store_backlog(const store *s);
uint64_t store_written(const store *s);
uint64_t store_spilled(const store *s);
uint64_t store_spill_bytes(const store *s);
/* Retention passes completed and documents they deleted. */
uint64_t store_retention_passes(const store *s);
uint64_t store_retention_deleted(const store *s);
/* 1 while the last write attempt failed (MongoDB unreachable). */
int store_failing(const store *s);

#endif
