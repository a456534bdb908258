/*
 * What a durable store read of a range means, without MongoDB: the reader
 * threads (reader.c) query a channel's stored publications with offsets in
 * (lo, hi) and these rules say whether the answer is complete, whether its
 * start is gone (retention), or whether publications may still be on their
 * way (the store is behind: ask again, then answer 108).
 *
 * Publications do not reach the store in offset order: two writers write
 * two batches at once, a spill file is replayed while newer publications
 * are written, another node writes its own. A missing start is therefore
 * "gone" only when nothing that was queued before the read is still
 * unwritten here (single node: exact), and, in cluster mode, when after
 * waiting for the other nodes' writers there is positive evidence of
 * retention (the namespace has retention and nothing at or below the start
 * is stored). Pure (publist and the range only), for the unit tests.
 */
#ifndef HERALD_STORE_JUDGE_H
#define HERALD_STORE_JUDGE_H

#include <stdint.h>

#include "base/ids.h"
#include "core/pub.h"

/* A range read (store_read_range). */
typedef struct store_range {
    char epoch[IDS_LEN + 1];
    uint64_t lo, hi;         /* offsets in (lo, hi) */
    uint32_t n;              /* at most n of them */
    uint8_t reverse;         /* newest first */
    uint8_t strict;          /* the answer must start at lo + 1 */
    uint8_t others;          /* other nodes write too (cluster) */
} store_range;

/* The shape of a query's answer. */
enum store_shape {
    STORE_SHAPE_OK,          /* contiguous and complete */
    STORE_SHAPE_START,       /* strict, forward: the first is above lo + 1 */
    STORE_SHAPE_SHORT,       /* ends early, or (reverse) lacks the newest */
    STORE_SHAPE_NONE,        /* nothing at all */
};

/* Keeps the contiguous run at the start of l (offsets stepping by one in
 * the query's direction; the rest is released) and says its shape. */
int store_judge_shape(const store_range *r, publist *l);

/* What to do with a shape. */
enum store_answer {
    STORE_ANSWER_OK,          /* status 0: l is the answer */
    STORE_ANSWER_GONE,        /* 111: the start is not retained */
    STORE_ANSWER_UNAVAILABLE, /* 108: behind, or the store cannot say */
    STORE_ANSWER_RETRY,       /* wait a little, query again */
    STORE_ANSWER_CHECK,       /* call again with `trimmed` known */
};

/* pending: publications queued here before the read are still unwritten;
 * timed_out: the read has waited as long as it may; trimmed: -1 unknown,
 * else 1 when the namespace has retention and nothing of the epoch at or
 * below lo is stored (asked for only in cluster mode, after the wait). */
int store_judge_answer(const store_range *r, int shape, int pending,
                       int timed_out, int trimmed);

#endif
