/*
 * The durable store's spill file: an append-only file of publications
 * (their MongoDB documents) that could not wait in the writer queue, kept
 * until a writer has replayed them into MongoDB. A record is
 * [u32 length][u32 crc32 of the payload][payload: one BSON document], both
 * integers little-endian. The file is locked (flock, exclusive) by one
 * process; opening it scans it, drops a torn or corrupt tail (a crash in
 * the middle of an append) and remembers, per channel, the newest
 * publication it holds, so a stream restarted from a store that lags
 * behind the spill never hands out an offset twice.
 *
 * Appends are a write(2) each, without fsync: a process crash loses
 * nothing written, a machine crash can lose what the page cache held.
 *
 * Not thread-safe: the store calls everything under its lock, except
 * spill_read, which reads a range below a size it took under the lock
 * (appends only ever go after it, and only the one replaying writer
 * consumes or truncates), and spill_write, which the one thread appending
 * at a time calls without the lock at the committed end of the file, and
 * commits (spill_commit) under the lock afterwards; meanwhile consuming
 * the last record does not truncate the file (spill_consume's
 * may_truncate), so the write cannot land beyond a cut.
 */
#ifndef HERALD_SPILL_H
#define HERALD_SPILL_H

#include <stddef.h>
#include <stdint.h>

#include "base/ids.h"

typedef struct spill spill;

#define SPILL_OK 0
#define SPILL_ERROR (-1)     /* I/O error, corrupt record (errno-like) */
#define SPILL_FULL (-2)      /* the bound would be exceeded */

#define SPILL_HEADER 8u      /* bytes before each payload */
#define SPILL_MAX_RECORD (64u << 20)

/* Opens (creates) and locks the file, scans it, truncates a bad tail.
 * max_bytes bounds appends (a file already larger is kept, and appends
 * are refused until it is drained). NULL with a message in err. */
spill *spill_open(const char *path, uint64_t max_bytes, char *err,
                  size_t errlen);
/* Flushes (fdatasync) and closes; an empty file is removed. */
void spill_close(spill *sp);

/* Appends one record (SPILL_OK, SPILL_FULL or SPILL_ERROR; on an error
 * the file is cut back to where it was): spill_write at spill_size, then
 * spill_commit. */
int spill_append(spill *sp, const uint8_t *doc, uint32_t len);
/* Writes one record at `at` (the committed size, read under the store's
 * lock) without changing the spill's state, so the store's lock need not
 * be held: SPILL_OK, SPILL_FULL (the bound) or SPILL_ERROR (the file is
 * cut back to `at`). Only one thread may write at a time. */
int spill_write(spill *sp, uint64_t at, const uint8_t *doc, uint32_t len);
/* The record spill_write wrote at the committed size is part of the file
 * now: counted, and its channel's newest publication noted. */
void spill_commit(spill *sp, const uint8_t *doc, uint32_t len);
/* 1 when `bytes` more would fit within the bound. */
int spill_fits(const spill *sp, uint64_t bytes);

/* Records not yet consumed; the file's size; the read position. */
uint64_t spill_records(const spill *sp);
uint64_t spill_size(const spill *sp);
uint64_t spill_read_pos(const spill *sp);
const char *spill_path(const spill *sp);

/* Up to max_n records from [from, to) into b (its buffers grow as
 * needed; spill_batch_free releases them). b->end is where the next read
 * starts. SPILL_OK (b->n may be 0 when from == to) or SPILL_ERROR when a
 * record is unreadable or fails its checksum. */
typedef struct spill_batch {
    uint8_t *buf;
    size_t cap;
    uint32_t n, max;
    uint32_t *off, *len;     /* payload i is buf + off[i], len[i] bytes */
    uint64_t end;
} spill_batch;
int spill_read(spill *sp, uint64_t from, uint64_t to, uint32_t max_n,
               spill_batch *b);
void spill_batch_free(spill_batch *b);

/* The records before `pos` (n of them) are written: the read position
 * moves there; when it reaches the end and may_truncate, the file is
 * truncated to 0 and the channel map emptied (without may_truncate, a
 * record being written after the end, it stays until
 * spill_truncate_consumed). Returns 1 when the file is empty afterwards,
 * -1 when truncating failed. */
int spill_consume(spill *sp, uint64_t pos, uint64_t n, int may_truncate);
/* Truncates a file whose every record is consumed: 1 when it is empty
 * afterwards, 0 when records are left, -1 when truncating failed. */
int spill_truncate_consumed(spill *sp);
/* Drops every record from the read position on (one of them could not be
 * read back): logged, the file is truncated to 0 (when may_truncate; see
 * spill_consume). */
int spill_drop_rest(spill *sp, int may_truncate);

/* The newest publication of a channel in the spill (in the same epoch by
 * offset, across epochs by time): 1 found, 0 none. */
int spill_last(const spill *sp, const char *chan, size_t len,
               char epoch[IDS_LEN + 1], uint64_t *offset, int64_t *time_ms);

#endif
