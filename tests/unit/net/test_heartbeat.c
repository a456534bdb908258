/*
 * Unit tests of server/net/heartbeat.c, the one-second timing wheel of
 * liveness checks: a node is taken in the second it is due (and in the
 * slot's later turns, which the caller puts back), removal works at any
 * place in a slot, thousands of nodes spread over the wheel are each
 * taken exactly once per turn, and a late tick (a stalled loop, or two
 * ticks in one second) takes every second since the last one it took.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "net/heartbeat.h"

static int taken(hb_wheel *w, uint64_t now, hb_node **seen, int max)
{
    int n = 0;
    for (hb_node *h = hb_take(w, now); h; h = hb_next(h)) {
        cr_assert_lt(n, max);
        seen[n++] = h;
    }
    return n;
}

Test(heartbeat, taken_in_the_second_due)
{
    hb_wheel w = { .done_s = 0 };
    hb_node a = { .due_s = 10 }, b = { .due_s = 11 }, c = { .due_s = 10 };
    hb_insert(&w, &a);
    hb_insert(&w, &b);
    hb_insert(&w, &c);
    hb_node *seen[4];
    cr_assert_eq(taken(&w, 9, seen, 4), 0);
    cr_assert_eq(taken(&w, 10, seen, 4), 2);
    cr_assert((seen[0] == &a && seen[1] == &c) ||
              (seen[0] == &c && seen[1] == &a));
    cr_assert_null(a.next);
    cr_assert_null(a.prev, "links cleared as the list is walked");
    cr_assert_eq(taken(&w, 10, seen, 4), 0, "the slot was emptied");
    cr_assert_eq(taken(&w, 11, seen, 4), 1);
    cr_assert_eq(seen[0], &b);
}

Test(heartbeat, a_node_more_than_a_turn_away_waits_in_its_slot)
{
    hb_wheel w = { .done_s = 0 };
    hb_node far = { .due_s = 5 + HB_SLOTS * 2 };
    hb_insert(&w, &far);
    hb_node *seen[2];
    cr_assert_eq(taken(&w, 5, seen, 2), 1, "visited early, a turn before");
    cr_assert_eq(seen[0], &far);
    /* The caller sees due_s > now and puts it back. */
    hb_insert(&w, &far);
    cr_assert_eq(taken(&w, 5 + HB_SLOTS, seen, 2), 1);
}

Test(heartbeat, removal_anywhere_in_a_slot)
{
    hb_wheel w = { .done_s = 0 };
    hb_node n[5];
    for (int i = 0; i < 5; i++) {
        n[i] = (hb_node){ .due_s = 3 };
        hb_insert(&w, &n[i]);
    }
    hb_remove(&w, &n[4]);   /* the head (inserted last) */
    hb_remove(&w, &n[2]);   /* the middle */
    hb_remove(&w, &n[0]);   /* the tail */
    hb_remove(&w, &n[0]);   /* again: nothing happens */
    hb_node *seen[5];
    cr_assert_eq(taken(&w, 3, seen, 5), 2);
    int got = 0;
    for (int i = 0; i < 2; i++)
        got |= seen[i] == &n[1] ? 1 : seen[i] == &n[3] ? 2 : 4;
    cr_assert_eq(got, 3);
}

Test(heartbeat, many_nodes_each_taken_once_per_turn)
{
    enum { N = 10000 };
    hb_wheel w = { .done_s = 0 };
    hb_node *n = calloc(N, sizeof(*n));
    int *hits = calloc(N, sizeof(*hits));
    for (int i = 0; i < N; i++) {
        n[i].due_s = 100 + (uint64_t)(i % (HB_SLOTS * 3));
        hb_insert(&w, &n[i]);
    }
    for (uint64_t now = 100; now < 100 + HB_SLOTS * 3; now++) {
        hb_node *h = hb_take(&w, now);
        while (h) {
            hb_node *next = hb_next(h);
            if (h->due_s > now)
                hb_insert(&w, h);   /* a later turn */
            else
                hits[h - n]++;
            h = next;
        }
    }
    for (int i = 0; i < N; i++)
        cr_assert_eq(hits[i], 1, "node %d", i);
    free(n);
    free(hits);
}

Test(heartbeat, a_late_tick_takes_every_second_it_skipped)
{
    hb_wheel w = { .done_s = 0 };
    hb_node a = { .due_s = 10 }, b = { .due_s = 11 }, c = { .due_s = 12 };
    hb_insert(&w, &a);
    hb_insert(&w, &b);
    hb_insert(&w, &c);
    hb_node *seen[4];
    cr_assert_eq(taken(&w, 9, seen, 4), 0);
    /* The loop stalled: no tick in second 10. */
    cr_assert_eq(taken(&w, 11, seen, 4), 2, "10 and 11 are both due");
    cr_assert_eq(seen[0], &a, "oldest second first");
    cr_assert_eq(seen[1], &b);
    cr_assert_eq(taken(&w, 12, seen, 4), 1);
    cr_assert_eq(seen[0], &c);

    /* A stall longer than a turn: every slot is taken once. */
    hb_node d = { .due_s = 20 }, e = { .due_s = 40 };
    hb_insert(&w, &d);
    hb_insert(&w, &e);
    cr_assert_eq(taken(&w, 20 + HB_SLOTS + 5, seen, 4), 2);
}

Test(heartbeat, a_node_inserted_already_due_is_taken_at_the_next_tick)
{
    hb_wheel w = { .done_s = 0 };
    hb_node *seen[2];
    cr_assert_eq(taken(&w, 50, seen, 2), 0);
    hb_node late = { .due_s = 49 }, now = { .due_s = 50 };
    hb_insert(&w, &late);
    hb_insert(&w, &now);
    cr_assert_eq(taken(&w, 51, seen, 2), 2,
                 "due at or before the last second taken: not a turn later");
    hb_insert(&w, &late);   /* due_s is 51 now: removable from its slot */
    hb_remove(&w, &late);
    cr_assert_eq(taken(&w, 52, seen, 2), 0);
}
