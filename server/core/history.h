/*
 * History ring of one channel: its last `capacity` publications (each one
 * reference), oldest first, with optional age limit. Owned by the channel's
 * owner worker. The ring grows by doubling up to its capacity, so a channel
 * configured for 1000 entries that saw 3 publications holds 4 slots.
 */
#ifndef HERALD_HISTORY_H
#define HERALD_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "core/pub.h"

typedef struct history {
    pub **ring;
    uint32_t capacity;   /* configured size; 0 = history off */
    uint32_t slots;      /* allocated slots (power of two) */
    uint32_t head;       /* index of the oldest */
    uint32_t count;
    size_t bytes;        /* sizes of the retained publications (pub.size) */
    size_t *total;       /* also kept here when not NULL (an owner's sum
                            over its rings) */
} history;

/* An empty ring (total NULL: set it after, to account elsewhere too). */
void history_init(history *h, uint32_t capacity);
/* Releases every publication and the ring; capacity and total stay (the
 * ring may be used again). */
void history_free(history *h);

/* Appends p (takes a reference of its own); evicts the oldest when full. */
void history_push(history *h, pub *p);

/* Drops publications older than now_ms - ttl_ms (ttl_ms 0: no age limit). */
void history_expire(history *h, int64_t now_ms, int64_t ttl_ms);

static inline uint32_t history_count(const history *h) { return h->count; }
/* The i-th oldest retained publication (no reference taken). */
pub *history_at(const history *h, uint32_t i);
/* Offset of the oldest retained publication, 0 when empty. */
uint64_t history_first_offset(const history *h);

/* Selects publications for a reply: those with offset > after (after = 0:
 * from the oldest), at most limit of them; oldest first, or newest first
 * when reverse (then: the newest `limit` with offset > after). Stores up to
 * limit references in out (caller releases them) and returns how many. */
size_t history_select(const history *h, uint64_t after, uint32_t limit,
                      int reverse, pub **out);

#endif
