/* Per-subscription gap and duplicate accounting: see track.h. */
#include "track.h"

void track_start(track *t, uint64_t offset)
{
    t->last = offset;
    t->flags = TRACK_ACTIVE;
}

void track_resubscribed(track *t, int recovered, uint64_t offset,
                        track_counts *c)
{
    if (recovered == 1 && (t->flags & TRACK_ACTIVE))
        return;              /* the missed publications follow, in order */
    if ((t->flags & TRACK_ACTIVE) && offset > t->last)
        c->lost += offset - t->last;
    t->last = offset;
    t->flags = TRACK_ACTIVE;
}

void track_gap_event(track *t, track_counts *c)
{
    c->gaps++;
    t->flags |= TRACK_RESYNC;
}

int track_pub(track *t, uint64_t offset, track_counts *c)
{
    c->deliveries++;
    if (!(t->flags & TRACK_ACTIVE) || (t->flags & TRACK_RESYNC)) {
        t->last = offset;
        t->flags = TRACK_ACTIVE;
        return 0;
    }
    if (offset == t->last + 1) {
        t->last = offset;
        return 0;
    }
    if (offset <= t->last) {
        c->duplicates++;
        return 2;
    }
    c->gaps += offset - t->last - 1;
    t->last = offset;
    return 1;
}
