/*
 * Per-subscription stream accounting for herald-bench: from the offsets a
 * subscriber receives it counts gaps (offsets skipped silently),
 * duplicates (an offset at or below one already seen) and deliveries. The
 * state is two integers so that a bench holding 100k subscribers stays
 * small. The C client already de-duplicates and announces gaps; the bench
 * counts independently so that a bug on either side shows up.
 */
#ifndef HERALD_BENCH_TRACK_H
#define HERALD_BENCH_TRACK_H

#include <stdint.h>

typedef struct track {
    uint64_t last;       /* last offset seen (the position) */
    uint32_t flags;      /* TRACK_* */
} track;

#define TRACK_ACTIVE 1u  /* a position is known */
#define TRACK_RESYNC 2u  /* take the next offset as the position */

typedef struct track_counts {
    uint64_t deliveries;
    uint64_t gaps;           /* publications missed without notice */
    uint64_t duplicates;
    uint64_t lost;           /* missed, announced with recovered:false */
} track_counts;

/* The subscription's position became `offset` (subscribe reply). */
void track_start(track *t, uint64_t offset);
/* A resubscribe answered: recovered = 1 continues the stream; 0 jumps to
 * `offset`, counting what was missed as lost (announced, not a gap). */
void track_resubscribed(track *t, int recovered, uint64_t offset,
                        track_counts *c);
/* The client library announced a gap (or an epoch change): one gap at
 * least, and the next offset becomes the position. */
void track_gap_event(track *t, track_counts *c);
/* One delivered publication. Returns 0 in order, 1 after a gap, 2 for a
 * duplicate. */
int track_pub(track *t, uint64_t offset, track_counts *c);

#endif
