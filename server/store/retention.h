/*
 * Retention of durable history, the decisions without MongoDB: which
 * channels a pass looks at, and which documents of a channel it deletes.
 * store_retention.c runs the passes (store_priv.h); these helpers are pure
 * (config and libbson only), so the unit tests check them directly.
 */
#ifndef HERALD_STORE_RETENTION_H
#define HERALD_STORE_RETENTION_H

#include <stddef.h>
#include <stdint.h>

#include <bson/bson.h>

#include "base/config.h"

/* 1 when some durable namespace has retention_age or retention_count. */
int store_retention_wanted(const config *c);

/* The retention of a stored channel: 1 with its namespace's age (seconds,
 * 0 = none) and count (0 = none) when the channel's namespace (the rule of
 * config_ns_of_channel) is configured, durable and has either; 0 for any
 * other name, including ones that are not valid channel names. */
int store_retention_of(const config *c, const char *chan, size_t len,
                       uint32_t *age, uint32_t *count);

/* The aggregation that lists the stored channel names after `after`
 * (after_len 0: from the start), each once, in byte order: { $match
 * channel > after }, { $sort channel }, { $group _id channel }, { $sort
 * _id }. Read through a cursor, in batches: unlike the `distinct` command,
 * whose one reply document must stay under MongoDB's 16 MiB limit, it
 * works whatever the number of channels. And its options (allowDiskUse:
 * the $group of a very large store may exceed the 100 MB stage limit). */
void store_retention_names_pipeline(bson_t *pipeline, const char *after,
                                    size_t after_len);
void store_retention_names_opts(bson_t *opts);

/* The newest document a count cut deletes: the (count+1)-th newest of the
 * channel in the order time, offset, epoch (all descending). The epoch only
 * breaks a tie of time and offset, so the order is total and the cut exact
 * whatever number of publications share a millisecond. */
typedef struct store_retention_cut {
    int64_t time_ms;
    int64_t offset;
    const char *epoch;
    size_t epoch_len;
} store_retention_cut;

/* The find options that locate the cut of a channel keeping `count`
 * documents: sort (time, offset, epoch descending), skip count, limit 1 (a
 * positive limit: FerretDB drops documents for singleBatch), projection. */
void store_retention_cut_opts(bson_t *opts, uint32_t count);

/* The deleteMany filter of one channel: documents older than before_ms
 * (when before_ms > 0) or at or after `cut` in the order above (when cut is
 * not NULL). Returns 0, leaving *f empty, when there is nothing to delete
 * (neither given); 1 otherwise. *f is initialised either way. */
int store_retention_filter(bson_t *f, const char *chan, size_t len,
                           int64_t before_ms, const store_retention_cut *cut);

#endif
