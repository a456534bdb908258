/*
 * Unit tests of server/broker/redis/order.c, the delivery of a channel in
 * offset order through Redis pub/sub, without Redis: records held until
 * the stream is synced, in-order delivery, duplicates dropped, a gap held
 * while the window is read (fill) and delivered from it, a gap the window
 * no longer covers and a new epoch reset the stream (the local subscribers
 * recover), repair after an outage, the hold bound, failed fills.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "broker/redis/order.h"

static const char *E = "eeeeeeeeeeeeeeee", *F = "ffffffffffffffff";

/* What the machine asked for, in order. */
enum { EV_DELIVER, EV_RESET, EV_POSITION, EV_FILL };
typedef struct event {
    int kind;
    uint64_t offset;         /* deliver, fill (from), reset/position (top) */
    char epoch[IDS_LEN + 1];
    const char *why;
} event;

static event ev[200000];
static size_t n_ev;
static int fill_rc;          /* what fill answers: 0 sent, -1 not */

static void on_deliver(void *ctx, pub *p)
{
    (void)ctx;
    ev[n_ev].kind = EV_DELIVER;
    ev[n_ev].offset = p->offset;
    memcpy(ev[n_ev].epoch, p->view.epoch.ptr, IDS_LEN);
    n_ev++;
}

static void on_reset(void *ctx, const char *epoch, uint64_t top,
                     const char *why)
{
    (void)ctx;
    ev[n_ev] = (event){ .kind = EV_RESET, .offset = top, .why = why };
    memcpy(ev[n_ev].epoch, epoch, IDS_LEN);
    n_ev++;
}

static void on_position(void *ctx, const char *epoch, uint64_t top)
{
    (void)ctx;
    ev[n_ev] = (event){ .kind = EV_POSITION, .offset = top };
    memcpy(ev[n_ev].epoch, epoch, IDS_LEN);
    n_ev++;
}

static int on_fill(void *ctx, uint64_t from)
{
    (void)ctx;
    ev[n_ev++] = (event){ .kind = EV_FILL, .offset = from };
    return fill_rc;
}

static const order_out out = { NULL, on_deliver, on_reset, on_position,
                               on_fill };

static void reset_events(void)
{
    n_ev = 0;
    fill_rc = 0;
}

static pub *rec(const char *epoch, uint64_t offset)
{
    proto_data d = { { "1", 1 }, { "\x01", 1 }, 0 };
    return pub_new((proto_slice){ "c", 1 }, offset,
                   (proto_slice){ epoch, IDS_LEN }, &d, NULL, 0);
}

static void expect(size_t i, int kind, uint64_t offset)
{
    cr_assert_lt(i, n_ev, "event %zu happened (%zu events)", i, n_ev);
    cr_assert_eq(ev[i].kind, kind, "event %zu: kind %d, want %d", i,
                 ev[i].kind, kind);
    cr_assert_eq(ev[i].offset, offset, "event %zu: offset %llu, want %llu",
                 i, (unsigned long long)ev[i].offset,
                 (unsigned long long)offset);
}

static void expect_delivered(size_t from_event, uint64_t first, uint64_t last)
{
    for (uint64_t o = first; o <= last; o++)
        expect(from_event + (o - first), EV_DELIVER, o);
}

/* A live machine at (E, top). */
static void live_at(order *o, uint64_t top)
{
    order_init(o);
    order_sync(o, E, top, &out);
    reset_events();
}

Test(order, records_wait_for_the_sync_then_go_in_order)
{
    order o;
    order_init(&o);
    reset_events();
    cr_assert_not(order_ready(&o));
    order_record(&o, rec(E, 3), &out);
    order_record(&o, rec(E, 1), &out);
    order_record(&o, rec(E, 2), &out);
    cr_assert_eq(n_ev, 0, "nothing before the stream's position is known");
    order_sync(&o, E, 0, &out);
    expect(0, EV_POSITION, 0);
    cr_assert_eq(memcmp(ev[0].epoch, E, IDS_LEN), 0);
    expect_delivered(1, 1, 3);
    cr_assert_eq(n_ev, 4);
    cr_assert(order_ready(&o));
    order_record(&o, rec(E, 4), &out);
    order_record(&o, rec(E, 5), &out);
    expect_delivered(4, 4, 5);
    cr_assert_eq(o.top, 5);
    order_free(&o);
}

Test(order, held_records_older_than_the_synced_top_are_dropped)
{
    order o;
    order_init(&o);
    reset_events();
    order_record(&o, rec(E, 6), &out);
    order_record(&o, rec(E, 7), &out);
    order_sync(&o, E, 6, &out);   /* 6 was published before the read */
    expect(0, EV_POSITION, 6);
    expect(1, EV_DELIVER, 7);
    cr_assert_eq(n_ev, 2);
    order_free(&o);
}

Test(order, duplicates_are_dropped)
{
    order o;
    live_at(&o, 0);
    order_record(&o, rec(E, 1), &out);
    order_record(&o, rec(E, 2), &out);
    order_record(&o, rec(E, 2), &out);
    order_record(&o, rec(E, 1), &out);
    expect_delivered(0, 1, 2);
    cr_assert_eq(n_ev, 2, "each offset once");
    order_free(&o);
}

Test(order, a_gap_is_held_and_filled_from_the_window)
{
    order o;
    live_at(&o, 5);
    order_record(&o, rec(E, 8), &out);
    expect(0, EV_FILL, 6);
    cr_assert_not(order_ready(&o), "filling");
    order_record(&o, rec(E, 9), &out);
    order_record(&o, rec(E, 8), &out);   /* a duplicate while held */
    cr_assert_eq(n_ev, 1, "held while the window is read");
    publist recs = { 0 };
    publist_push(&recs, rec(E, 6));
    publist_push(&recs, rec(E, 7));
    publist_push(&recs, rec(E, 8));
    order_filled(&o, E, 8, &recs, &out);
    cr_assert_eq(recs.n, 0, "the machine took the records");
    expect_delivered(1, 6, 9);
    cr_assert_eq(n_ev, 5);
    cr_assert(order_ready(&o));
    publist_free(&recs);
    order_free(&o);
}

Test(order, a_gap_the_window_no_longer_covers_resets_the_stream)
{
    order o;
    live_at(&o, 5);
    order_record(&o, rec(E, 8), &out);
    expect(0, EV_FILL, 6);
    publist recs = { 0 };
    publist_push(&recs, rec(E, 7));   /* 6 is gone from the window */
    order_filled(&o, E, 8, &recs, &out);
    expect(1, EV_RESET, 6);
    cr_assert_eq(memcmp(ev[1].epoch, E, IDS_LEN), 0);
    cr_assert_str_eq(ev[1].why,
                     "missed records are no longer in the hot window");
    expect_delivered(2, 7, 8);
    cr_assert_eq(n_ev, 4);
    publist_free(&recs);
    order_free(&o);
}

Test(order, a_window_shorter_than_its_top_resets_after_what_it_has)
{
    order o;
    live_at(&o, 5);
    order_record(&o, rec(E, 9), &out);
    publist recs = { 0 };
    publist_push(&recs, rec(E, 6));   /* 7 and 8 are gone, 9 held */
    order_filled(&o, E, 10, &recs, &out);
    expect(1, EV_DELIVER, 6);
    expect(2, EV_RESET, 8);
    expect(3, EV_DELIVER, 9);
    expect(4, EV_RESET, 10);
    cr_assert_eq(n_ev, 5);
    publist_free(&recs);
    order_free(&o);
}

Test(order, a_new_epoch_resets_the_stream)
{
    order o;
    live_at(&o, 5);
    order_record(&o, rec(F, 1), &out);
    expect(0, EV_RESET, 0);
    cr_assert_eq(memcmp(ev[0].epoch, F, IDS_LEN), 0);
    cr_assert_str_eq(ev[0].why, "epoch changed in Redis");
    expect(1, EV_DELIVER, 1);
    order_record(&o, rec(F, 2), &out);
    expect(2, EV_DELIVER, 2);
    cr_assert_eq(memcmp(o.epoch, F, IDS_LEN), 0);

    /* A fill that finds another epoch: Redis lost the stream. */
    order_record(&o, rec(F, 5), &out);
    expect(3, EV_FILL, 3);
    publist recs = { 0 };
    publist_push(&recs, rec(E, 1));
    order_filled(&o, E, 1, &recs, &out);
    expect(4, EV_RESET, 1);
    cr_assert_str_eq(ev[4].why, "Redis lost the stream");
    publist_free(&recs);
    order_free(&o);
}

Test(order, after_an_outage_the_sync_repairs_what_was_missed)
{
    order o;
    live_at(&o, 5);
    order_stop(&o);
    cr_assert_not(order_ready(&o));
    order_record(&o, rec(E, 9), &out);   /* arrives before the sync */
    order_sync(&o, E, 8, &out);
    expect(0, EV_FILL, 6);
    publist recs = { 0 };
    publist_push(&recs, rec(E, 6));
    publist_push(&recs, rec(E, 7));
    publist_push(&recs, rec(E, 8));
    order_filled(&o, E, 8, &recs, &out);
    expect_delivered(1, 6, 9);
    cr_assert(order_ready(&o));
    publist_free(&recs);

    /* Redis came back without the stream, or rolled back. */
    order_stop(&o);
    reset_events();
    order_sync(&o, F, 2, &out);
    expect(0, EV_RESET, 2);
    cr_assert_str_eq(ev[0].why, "Redis lost the stream");
    order_stop(&o);
    reset_events();
    order_sync(&o, F, 1, &out);
    expect(0, EV_RESET, 1);
    order_free(&o);
}

Test(order, forgetting_starts_afresh_at_the_next_sync)
{
    order o;
    live_at(&o, 5);
    order_forget(&o);
    order_sync(&o, F, 100, &out);
    expect(0, EV_POSITION, 100);
    cr_assert_eq(n_ev, 1, "no reset: a new follow, not a lost stream");
    order_free(&o);
}

Test(order, a_failed_fill_is_tried_again_with_the_next_record)
{
    order o;
    live_at(&o, 5);
    fill_rc = -1;   /* the link is going down */
    order_record(&o, rec(E, 8), &out);
    expect(0, EV_FILL, 6);
    cr_assert(order_ready(&o), "no fill in flight");
    fill_rc = 0;
    order_record(&o, rec(E, 9), &out);
    expect(1, EV_FILL, 6);
    cr_assert_not(order_ready(&o));
    order_fill_failed(&o);   /* an error reply */
    cr_assert(order_ready(&o));
    order_record(&o, rec(E, 10), &out);
    expect(2, EV_FILL, 6);
    publist recs = { 0 };
    publist_push(&recs, rec(E, 6));
    publist_push(&recs, rec(E, 7));
    order_filled(&o, E, 10, &recs, &out);
    expect_delivered(3, 6, 10);
    publist_free(&recs);
    order_free(&o);
}

Test(order, an_answer_nobody_waits_for_is_dropped)
{
    order o;
    live_at(&o, 5);
    publist recs = { 0 };
    publist_push(&recs, rec(E, 6));
    order_filled(&o, E, 6, &recs, &out);   /* not filling */
    cr_assert_eq(n_ev, 0);
    cr_assert_eq(recs.n, 0, "released");
    publist_free(&recs);
    order_free(&o);
}

Test(order, the_hold_is_bounded, .timeout = 60)
{
    order o;
    live_at(&o, 0);
    order_record(&o, rec(E, 2), &out);   /* fill asked, never answered */
    expect(0, EV_FILL, 1);
    for (uint64_t i = 3; i < ORDER_HOLD_MAX + 2; i++)
        order_record(&o, rec(E, i), &out);
    cr_assert_eq(o.hold.n, ORDER_HOLD_MAX);
    cr_assert_eq(n_ev, 1);
    /* One more: this stretch is given up, and the record starts over. */
    order_record(&o, rec(E, ORDER_HOLD_MAX + 2), &out);
    expect(1, EV_RESET, ORDER_HOLD_MAX + 1);
    cr_assert_str_eq(ev[1].why, "hold buffer full");
    cr_assert_eq(o.hold.n, 1);
    order_free(&o);
}
