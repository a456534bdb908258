/* Unit tests of bench/src/track.c: gap and duplicate accounting from the
 * offsets a subscriber receives, and recovery outcomes. */
#include <criterion/criterion.h>
#include <string.h>

#include "track.h"

static track t;
static track_counts c;

static void init(void)
{
    memset(&t, 0, sizeof(t));
    memset(&c, 0, sizeof(c));
}

TestSuite(bench_track, .init = init);

Test(bench_track, in_order_stream_counts_deliveries_only)
{
    track_start(&t, 10);
    for (uint64_t o = 11; o <= 1010; o++)
        cr_assert_eq(track_pub(&t, o, &c), 0);
    cr_assert_eq(c.deliveries, 1000);
    cr_assert_eq(c.gaps, 0);
    cr_assert_eq(c.duplicates, 0);
    cr_assert_eq(t.last, 1010);
}

Test(bench_track, skipped_offsets_are_gaps)
{
    track_start(&t, 0);
    track_pub(&t, 1, &c);
    cr_assert_eq(track_pub(&t, 5, &c), 1);     /* 2, 3, 4 missed */
    cr_assert_eq(c.gaps, 3);
    cr_assert_eq(track_pub(&t, 6, &c), 0);
    /* The first publication after the subscribe reply must be offset+1. */
    init();
    track_start(&t, 7);
    cr_assert_eq(track_pub(&t, 9, &c), 1);
    cr_assert_eq(c.gaps, 1);
}

Test(bench_track, repeated_or_older_offsets_are_duplicates)
{
    track_start(&t, 0);
    track_pub(&t, 1, &c);
    track_pub(&t, 2, &c);
    cr_assert_eq(track_pub(&t, 2, &c), 2);
    cr_assert_eq(track_pub(&t, 1, &c), 2);
    cr_assert_eq(c.duplicates, 2);
    cr_assert_eq(t.last, 2);
    cr_assert_eq(track_pub(&t, 3, &c), 0);
    cr_assert_eq(c.deliveries, 5);
}

Test(bench_track, recovered_resubscribe_continues)
{
    track_start(&t, 0);
    track_pub(&t, 1, &c);
    track_resubscribed(&t, 1, 9, &c);          /* 2..9 follow from history */
    for (uint64_t o = 2; o <= 12; o++)
        cr_assert_eq(track_pub(&t, o, &c), 0);
    cr_assert_eq(c.gaps + c.duplicates + c.lost, 0);
}

Test(bench_track, unrecovered_resubscribe_is_lost_not_gap)
{
    track_start(&t, 0);
    track_pub(&t, 1, &c);
    track_resubscribed(&t, 0, 20, &c);
    cr_assert_eq(c.lost, 19);
    cr_assert_eq(track_pub(&t, 21, &c), 0);
    cr_assert_eq(c.gaps, 0);
    /* A new epoch restarts offsets lower than before: not duplicates. */
    track_resubscribed(&t, 0, 0, &c);
    cr_assert_eq(track_pub(&t, 1, &c), 0);
    cr_assert_eq(c.duplicates, 0);
}

Test(bench_track, library_gap_event_counts_and_resyncs)
{
    track_start(&t, 0);
    track_pub(&t, 1, &c);
    track_gap_event(&t, &c);
    cr_assert_eq(c.gaps, 1);
    cr_assert_eq(track_pub(&t, 1, &c), 0);      /* new epoch: from 1 */
    cr_assert_eq(track_pub(&t, 2, &c), 0);
    cr_assert_eq(c.gaps, 1);
    cr_assert_eq(c.duplicates, 0);
}

Test(bench_track, state_is_a_few_integers)
{
    cr_assert_leq(sizeof(track), 16);
}
